#include "maintainer/daemon/control_handler.h"

#include <algorithm>
#include <cstring>
#include <map>

#ifndef FORTMESH_VERSION
#error "FORTMESH_VERSION is set by CMake (the project's version)"
#endif

namespace fm::maintainer {
namespace {

namespace wire = ::fortmesh::wire;

Result<crdt::Role> parse_role(const std::string& text) {
  if (text == "member" || text.empty()) return crdt::Role::member;
  if (text == "admin") return crdt::Role::admin;
  if (text == "lighthouse") return crdt::Role::lighthouse;
  return Status::error(Code::invalid_argument, "role must be member, admin or lighthouse");
}

Result<EnrollCommand> enroll_command(const wire::EnrollRequest& r) {
  if (r.subject().size() != 32) return Status::error(Code::invalid_argument, "enroll wants a 32-byte identity key");
  auto role = parse_role(r.role());
  if (!role) return role.status();
  EnrollCommand c;
  std::memcpy(c.subject.data(), r.subject().data(), 32);
  c.name = r.name();
  c.role = *role;
  c.endpoints.assign(r.endpoints().begin(), r.endpoints().end());
  c.expires_at = r.expires_at();
  return c;
}

void fill_status(const NodeStatus& s, const ShellStats& shell, wire::StatusReply* out) {
  out->set_key(netauth::to_base64(s.key));
  out->set_org_name(s.org_name);
  out->set_address(netauth::format_address(s.address));
  out->set_ops(s.ops);
  out->set_digest(netauth::to_hex(s.digest));
  out->set_active_members(static_cast<uint32_t>(s.active_members));
  out->set_uptime_sec(shell.uptime_sec);
  out->set_pending_ops(s.pending_ops);
  out->set_gossip_datagrams_in(s.gossip.datagrams_in);
  out->set_gossip_datagrams_out(s.gossip.datagrams_out);
  out->set_gossip_junk(s.gossip.junk);
  out->set_gossip_throttled(s.gossip.throttled);
  out->set_gossip_unknown_sources(shell.gossip_unknown_sources);
  out->set_gossip_wrong_interface(shell.gossip_wrong_interface);
  for (const auto* list : {&s.endpoints.advertised, &s.endpoints.reflected, &s.endpoints.local}) {
    for (const auto& e : *list) out->add_endpoints(e);
  }
  for (const auto& e : s.endpoints.reflected) out->add_reflected(e);
  out->set_nat(crdt::to_string(s.endpoints.nat));
  out->set_reachable_peers(static_cast<uint32_t>(s.reachable_peers));
  if (s.self) {
    out->set_self_name(s.self->name);
    out->set_self_role(crdt::to_string(s.self->role));
  }
  out->set_standing(s.standing);
  if (shell.relay) *out->mutable_relay() = *shell.relay;
  out->set_handovers_in(s.handovers_in);
  out->set_handover_ops_applied(s.handover_ops_applied);
  out->set_handovers_refused(s.handovers_refused);
  out->set_handovers_out(s.handovers_out);
  out->set_interface(s.interface);
  out->set_peers(static_cast<uint32_t>(s.peers));
  out->set_wireguard_restarts(s.wireguard_restarts);
  out->set_version(FORTMESH_VERSION);
  out->set_last_revocation_applied_ms(s.last_revocation_applied);
  out->set_last_revocation_subject(s.last_revocation_subject);
  out->set_last_revocation_delay_ms(s.last_revocation_delay_ms);
  out->set_revocations_applied(s.revocations_applied);
  for (size_t i = 1; i < s.rejected.size(); ++i) {
    (*out->mutable_ops_rejected())[reject_label(static_cast<crdt::Reject>(i))] = s.rejected[i];
  }
  out->set_gossip_bytes_in(s.gossip.bytes_in);
  out->set_gossip_bytes_out(s.gossip.bytes_out);
  out->set_gossip_ops_applied(s.gossip.ops_applied);
  out->set_reconcile_runs(s.reconcile_runs);
  out->set_reconcile_changes(s.reconcile_changes);
  out->set_reconcile_errors(s.reconcile_errors);
}

void fill_peers(const std::vector<PeerStatus>& peers, crdt::Millis now, wire::PeersReply* out) {
  const auto t = static_cast<int64_t>(now / 1000);
  for (const auto& ps : peers) {
    const auto& p = ps.peer;
    auto* pi = out->add_peers();
    pi->set_wg_key(netauth::to_base64(p.public_key));
    if (ps.member) {
      pi->set_name(ps.member->name);
      pi->set_key(netauth::to_base64(ps.member->key));
      pi->set_address(netauth::format_address(ps.member->address));
    }
    if (p.endpoint) pi->set_endpoint(p.endpoint->to_string());
    pi->set_handshake_age_sec(p.last_handshake_sec == 0 ? -1 : t - p.last_handshake_sec);
    pi->set_rx_bytes(p.rx_bytes);
    pi->set_tx_bytes(p.tx_bytes);
    if (ps.path) {
      pi->set_path(wg::to_string(ps.path->state));
      pi->set_path_reason(ps.path->reason);
      pi->set_path_age_sec(now >= ps.path->changed_at ? (now - ps.path->changed_at) / 1000 : 0);
      for (const auto& c : ps.path->candidates) pi->add_candidates(c.to_string());
      if (!ps.relay.empty()) pi->set_relay(ps.relay);
    }
  }
}

void fill_members(const Node& node, crdt::Millis now, wire::MembersReply* reply) {
  const auto& org = node.replica().org();
  const auto& members = node.members(now);
  reply->set_org_id(netauth::to_hex(org.id));
  reply->set_org_name(org.name);
  reply->set_prefix(netauth::format_prefix(org.prefix));
  reply->set_digest(netauth::to_hex(crdt::membership_digest(members)));
  const bool any_revoked = std::any_of(members.begin(), members.end(),
                                       [](const crdt::Member& m) { return m.standing == crdt::Standing::revoked; });
  const auto revocations = any_revoked ? node.revocations(now) : std::map<crdt::PublicKey, Revocation>{};  // a scan
  for (const auto& m : members) {
    auto* mi = reply->add_members();
    mi->set_key(netauth::to_base64(m.key));
    mi->set_name(m.name);
    mi->set_role(crdt::to_string(m.role));
    mi->set_status(crdt::to_string(m.standing));
    mi->set_address(m.no_wireguard_key ? "" : netauth::format_address(m.address));
    mi->set_expires_at(m.expires_at);
    for (const auto& e : m.endpoints) mi->add_endpoints(e);
    mi->set_address_conflict(m.address_conflict);
    mi->set_no_wireguard_key(m.no_wireguard_key);
    if (auto r = revocations.find(m.key); r != revocations.end() && m.standing == crdt::Standing::revoked) {
      mi->set_revoked_by(r->second.author_name);
      mi->set_revoked_by_key(netauth::to_base64(r->second.author));
      mi->set_revoked_at(r->second.created_at);
      mi->set_revoke_reason(r->second.reason);
    }
  }
}

void fill_log(const Node& node, crdt::Millis now, wire::LogReply* reply) {
  const crdt::Replica& r = node.replica();
  reply->set_org_name(r.org().name);
  std::map<crdt::PublicKey, std::string> names;
  for (const auto& m : node.members(now)) names[m.key] = m.name;
  names.try_emplace(r.org().root, "root");
  auto name_of = [&](const crdt::PublicKey& k) {
    auto it = names.find(k);
    return it == names.end() ? std::string() : it->second;
  };
  for (const auto& id : r.all_ops()) {
    const std::string* bytes = r.op_bytes(id);
    crdt::Op op;
    if (bytes == nullptr || crdt::parse_op({reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size()}, &op) !=
                                crdt::Reject::none) {
      continue;  // verified before it was stored: cannot happen
    }
    auto* e = reply->add_entries();
    e->set_id(netauth::to_hex(id));
    e->set_kind(op.kind == crdt::OpKind::genesis ? "genesis" : op.kind == crdt::OpKind::enroll ? "enroll" : "revoke");
    e->set_author_key(netauth::to_base64(op.author));
    e->set_author_name(name_of(op.author));
    e->set_created_at(op.created_at);
    const bool valid = r.is_valid(id);
    e->set_valid(valid);
    if (!valid) {
      e->set_note("not valid here: its author had no standing to make it in its causal past "
                  "(not an admin, revoked or expired concurrently, or junior to its subject)");
    }
    if (op.kind == crdt::OpKind::genesis) continue;
    e->set_subject_key(netauth::to_base64(op.subject));
    e->set_subject_name(op.kind == crdt::OpKind::enroll ? op.name : name_of(op.subject));
    if (op.kind == crdt::OpKind::enroll) {
      e->set_role(crdt::to_string(op.role));
      e->set_expires_at(op.expires_at);
      for (const auto& ep : op.endpoints) e->add_endpoints(ep);
    } else {
      e->set_reason(op.reason);
    }
  }
}

}  // namespace

const char* reject_label(crdt::Reject reason) {
  switch (reason) {
    case crdt::Reject::none: return "none";
    case crdt::Reject::malformed: return "malformed";
    case crdt::Reject::oversized: return "oversized";
    case crdt::Reject::bad_signature: return "bad_signature";
    case crdt::Reject::wrong_org: return "wrong_org";
    case crdt::Reject::second_genesis: return "second_genesis";
    case crdt::Reject::no_org: return "no_org";
    case crdt::Reject::pending_full: return "pending_full";
    case crdt::Reject::inadmissible: return "inadmissible";
    case crdt::Reject::kCount: break;
  }
  return "other";
}

wire::ControlReply error_reply(const Status& status) {
  wire::ControlReply reply;
  reply.set_error(status.message());
  reply.set_code(static_cast<uint32_t>(status.code()));
  return reply;
}

wire::AdminReply to_wire(const AdminOutcome& outcome, const crdt::Replica& replica) {
  wire::AdminReply a;
  a.set_subject_key(netauth::to_base64(outcome.subject.key));
  a.set_subject_name(outcome.subject.name);
  a.set_role(crdt::to_string(outcome.subject.role));
  if (replica.has_org()) {
    if (auto address = netauth::overlay_address_of(replica.org().prefix, outcome.subject.key)) {
      a.set_address(netauth::format_address(*address));
    }
  }
  a.set_bundle(outcome.bundle);
  return a;
}

wire::ControlReply handle_control(Node& node, const wire::ControlRequest& req, crdt::Millis now,
                                  const ShellStats& shell) {
  wire::ControlReply reply;
  switch (req.request_case()) {
    case wire::ControlRequest::kEnroll: {
      auto command = enroll_command(req.enroll());
      if (!command) return error_reply(command.status());
      auto done = node.submit(*command, now);
      if (!done) return error_reply(done.status());
      *reply.mutable_admin() = to_wire(*done, node.replica());
      break;
    }
    case wire::ControlRequest::kRevoke: {
      auto done = node.submit(RevokeCommand{req.revoke().target(), req.revoke().reason()}, now);
      if (!done) return error_reply(done.status());
      *reply.mutable_admin() = to_wire(*done, node.replica());
      break;
    }
    case wire::ControlRequest::kMembers:
      if (!node.replica().has_org()) return error_reply(Status::error(Code::conflict, "this node is not in an org"));
      fill_members(node, now, reply.mutable_members());
      break;
    case wire::ControlRequest::kLog:
      if (!node.replica().has_org()) return error_reply(Status::error(Code::conflict, "this node is not in an org"));
      fill_log(node, now, reply.mutable_log());
      break;
    case wire::ControlRequest::kStatus:
      fill_status(node.status(now), shell, reply.mutable_status());
      break;
    case wire::ControlRequest::kPeers: {
      auto peers = node.peers(now);
      if (!peers) return error_reply(peers.status());
      fill_peers(*peers, now, reply.mutable_peers());
      break;
    }
    case wire::ControlRequest::kMemberStatus: {
      if (req.member_status().size() != 32) {
        return error_reply(Status::error(Code::invalid_argument, "member_status wants a 32-byte identity key"));
      }
      crdt::PublicKey key;
      std::memcpy(key.data(), req.member_status().data(), 32);
      auto m = node.member_status(key, now);
      reply.set_member_status(m ? crdt::to_string(m->standing) : "not_member");
      break;
    }
    default:
      return error_reply(Status::error(Code::invalid_argument, "unknown control request"));
  }
  return reply;
}

}  // namespace fm::maintainer
