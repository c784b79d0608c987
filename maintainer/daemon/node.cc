#include "maintainer/daemon/node.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>

#include "crdt/endpoints.h"
#include "proto/org.pb.h"

namespace fm::maintainer {
namespace {

namespace wire = ::fortmesh::wire;

// Endpoint records live in the store's meta entries under this prefix.
constexpr std::string_view kRecordPrefix = "ep/";
// The pending-buffer quota of ops that came by hand-over (gossip peers count up from 1).
constexpr uint32_t kHandoverSource = UINT32_MAX;
constexpr crdt::Millis kHandoverEarly = 5'000, kHandoverLater = 30'000, kHandoverEarlyPeriod = 60'000;
constexpr size_t kHandoverTargets = 8;

uint64_t seconds(crdt::Millis now) { return now / 1000; }

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// "name (AbCdEfGh)": how logs name a member.
std::string label(const crdt::Member& m) { return m.name + " (" + netauth::to_base64(m.key).substr(0, 8) + ")"; }

// Why an Enroll of an active member changed nothing (docs/crdt.md "Role, name
// and endpoints", "Terms nest").
std::string unchanged_enroll(const crdt::Member& m) {
  std::string term = "never expires";
  if (m.expires_at != 0) {
    const time_t tt = static_cast<time_t>(m.expires_at);
    char buf[32];
    std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%SZ", std::gmtime(&tt));
    term = std::string("expires at ") + buf;
  }
  return "nothing changed: " + label(m) + " stays " + crdt::to_string(m.role) + ", " + term +
         " (a key's name and role come from its most privileged valid Enroll, the newest among equals, and its "
         "term from the longest: a lower role or a shorter term changes nothing; to demote a key, revoke it and "
         "enroll a new one); no bundle written";
}

}  // namespace

Node::Node(netauth::KeyPair key, crdt::OpStore* store, wg::Backend* wireguard, DatagramSink* sink,
           NodeOptions options, crdt::Replica replica)
    : key_(std::move(key)),
      store_(store),
      backend_(wireguard),
      sink_(sink),
      options_(options),
      replica_(std::move(replica)),
      directory_(this) {
  engine_ = std::make_unique<crdt::GossipEngine>(key_, &replica_, &directory_, options_.gossip, options_.seed);
}

Node::~Node() = default;

Result<std::unique_ptr<Node>> Node::open(netauth::KeyPair key, crdt::OpStore* store, wg::Backend* wireguard,
                                         DatagramSink* sink, NodeOptions options, crdt::Millis now) {
  auto ops = store->load_all();
  if (!ops) return ops.status();
  crdt::Replica replica;
  if (Status st = replica.load_verified(*ops); !st) {
    return Status::error(Code::corrupt, "the op store is damaged: " + st.message());
  }
  std::unique_ptr<Node> node(new Node(std::move(key), store, wireguard, sink, options, std::move(replica)));
  if (auto records = store->scan_meta(kRecordPrefix)) {
    for (const auto& [name, record] : *records) node->engine_->restore_record(bytes_of(record), now);
  }
  node->digest_ = node->replica_.digest(seconds(now));
  return node;
}

Status Node::start(const HostAddresses& addresses, crdt::Millis now) {
  if (!replica_.has_org()) {
    return Status::error(Code::conflict, "this node is not in an org yet (run `fortmesh org init` or `fortmesh join`)");
  }
  addresses_ = addresses;
  if (backend_ != nullptr) {
    wireguard_ = std::make_unique<WireGuardSync>(backend_, key_, &replica_, &engine_->endpoints(), options_.listen_port);
    if (relay_offer_) wireguard_->set_relay_offer(relay_offer_);
    wireguard_->set_local_networks(addresses_.networks);
    if (Status st = wireguard_->start(now, members(now)); !st) return st;
  }
  started_at_ = now;
  next_unreachable_warning_ = now + options_.unreachable_warning;
  next_handover_ = now + kHandoverEarly;  // a node its peers know needs none
  next_repair_ = now + options_.repair_interval;
  membership_changed(now);
  announce_record(now);
  after_event(now);
  return Status::ok();
}

// ---- Admin commands ---------------------------------------------------------

Status Node::require_admin(uint64_t now_sec) const {
  if (!replica_.has_org()) {
    return Status::error(Code::conflict, "this node is not in an org (run `fortmesh org init` or `fortmesh join`)");
  }
  auto me = replica_.member(key_.public_key, now_sec);
  if (!me || me->standing != crdt::Standing::active ||
      (me->role != crdt::Role::root && me->role != crdt::Role::admin)) {
    return Status::error(Code::permission_denied, "this node is not an active admin of org " + replica_.org().name);
  }
  return Status::ok();
}

Result<AdminOutcome> Node::submit(const EnrollCommand& c, crdt::Millis now) {
  const uint64_t t = seconds(now);
  if (Status st = require_admin(t); !st) return st;
  if (c.subject == replica_.org().root) {
    return Status::error(Code::conflict, "that is the root key; it is always a member");
  }
  if (auto m = replica_.member(c.subject, t); m && m->standing == crdt::Standing::revoked) {
    return Status::error(Code::conflict,
                         "that key was revoked; revocation is permanent: the node must generate a new key");
  }
  crdt::EnrollSpec spec{c.subject, c.name, c.role, c.endpoints, c.expires_at};
  const std::string op = crdt::make_enroll(key_, replica_.org().id, crdt::choose_parents(replica_, key_.public_key), spec, t);
  const auto before = replica_.member(c.subject, t);
  auto done = commit_admin_op(op, c.subject, [&](const crdt::Replica& r) {
    auto after = r.member(c.subject, t);
    if (!after || after->standing != crdt::Standing::active) {
      return Status::error(Code::no_effect, "the Enroll had no effect (is this node still an admin?)");
    }
    if (before && before->standing == crdt::Standing::active && before->name == after->name &&
        before->role == after->role && before->expires_at == after->expires_at && before->endpoints == after->endpoints) {
      return Status::error(Code::no_effect, unchanged_enroll(*after));
    }
    return Status::ok();
  }, now);
  if (!done) return done;

  // The bundle: every op (the new member's replica starts from them) and the
  // lighthouses it can reach first.
  wire::JoinBundle bundle;
  bundle.set_version(1);
  bundle.set_org_id(replica_.org().id.data(), replica_.org().id.size());
  bundle.set_subject(c.subject.data(), c.subject.size());
  for (const auto& id : replica_.all_ops()) bundle.add_ops(*replica_.op_bytes(id));
  for (const auto& m : members(now)) {
    if (m.role != crdt::Role::lighthouse || m.standing != crdt::Standing::active || m.key == c.subject) continue;
    auto* lh = bundle.add_lighthouses();
    lh->set_key(m.key.data(), m.key.size());
    lh->set_name(m.name);
    for (const auto& e : m.endpoints) lh->add_endpoints(e);
  }
  for (const auto* rec : engine_->endpoints().all()) bundle.add_endpoint_records(rec->wire);
  done->bundle = bundle.SerializeAsString();
  return done;
}

Result<AdminOutcome> Node::submit(const RevokeCommand& c, crdt::Millis now) {
  const uint64_t t = seconds(now);
  if (!replica_.has_org()) return Status::error(Code::conflict, "this node is not in an org");
  auto target = find_member(c.target, now);
  if (!target) return target.status();
  const crdt::Member& m = *target;
  if (m.role == crdt::Role::root) return Status::error(Code::conflict, "the root cannot be revoked");
  if (m.standing == crdt::Standing::revoked) return Status::error(Code::conflict, m.name + " is already revoked");
  if (m.key != key_.public_key) {
    if (Status st = require_admin(t); !st) return st;
  }
  const std::string op = crdt::make_revoke(key_, replica_.org().id, crdt::choose_parents(replica_, key_.public_key), m.key, c.reason, t);
  return commit_admin_op(op, m.key, [&](const crdt::Replica& r) {
    auto after = r.member(m.key, t);
    return after && after->standing == crdt::Standing::revoked
               ? Status::ok()
               : Status::error(Code::no_effect, "the Revoke had no effect (" + m.name + " is senior to this node?)");
  }, now);
}

Result<AdminOutcome> Node::commit_admin_op(const std::string& op, const crdt::PublicKey& subject,
                                           const std::function<Status(const crdt::Replica&)>& took_effect,
                                           crdt::Millis now) {
  auto ids = store_and_keep(std::span(&op, 1), took_effect);
  if (!ids) return ids.status();
  auto after = replica_.member(subject, seconds(now));
  if (!after) return Status::error("the subject is not a member after the command");
  spdlog::info("admin: {} {} is now {} ({} ops){}; gossiping", crdt::to_string(after->role), label(*after),
               crdt::to_string(after->standing), replica_.op_count(), describe(*ids, now));
  announce(*ids, now);
  return AdminOutcome{std::move(*after), {}};
}

Result<std::vector<crdt::OpId>> Node::commit(std::span<const std::string> ops,
                                             const std::function<Status(const crdt::Replica&)>& acceptable,
                                             crdt::Millis now) {
  auto ids = store_and_keep(ops, acceptable);
  if (ids) announce(*ids, now);
  return ids;
}

Result<std::vector<crdt::OpId>> Node::store_and_keep(std::span<const std::string> ops,
                                                     const std::function<Status(const crdt::Replica&)>& acceptable) {
  auto trial = replica_.try_apply(ops);
  if (!trial) return trial.status();
  if (Status st = acceptable(replica_); !st) return st;  // the trial is undone
  std::vector<std::string> fresh;
  for (const auto& id : trial->added()) fresh.push_back(*replica_.op_bytes(id));
  // Synced before anything is reported or sent: a signed revocation is never
  // lost to a crash.
  if (Status st = store_->append(fresh, /*sync=*/true); !st) {
    return Status::error(Code::unavailable, "cannot store the op: " + st.message());
  }
  const std::vector<crdt::OpId> added = trial->added();
  std::vector<crdt::OpId> applied = trial->keep();
  if (applied.size() > added.size()) {
    // Pending ops that waited for these came from gossip: stored unsynced.
    std::vector<std::string> released;
    for (size_t i = added.size(); i < applied.size(); ++i) released.push_back(*replica_.op_bytes(applied[i]));
    if (Status st = store_->append(released, /*sync=*/false); !st) spdlog::error("store: {}", st.message());
  }
  return added;
}

std::string Node::describe(std::span<const crdt::OpId> ops, crdt::Millis now) const {
  if (ops.size() > 4) return "";  // a catch-up: the count says enough
  auto name = [&](const crdt::PublicKey& k) {
    auto m = replica_.member(k, seconds(now));
    return (m ? m->name : std::string("?")) + " (" + netauth::to_base64(k).substr(0, 8) + ")";
  };
  std::string out;
  for (const auto& id : ops) {
    crdt::Op op;
    const std::string* b = replica_.op_bytes(id);
    if (b == nullptr || crdt::parse_op(bytes_of(*b), &op) != crdt::Reject::none) continue;
    std::string one = op.kind == crdt::OpKind::genesis ? "the Genesis"
                      : op.kind == crdt::OpKind::enroll
                          ? "Enroll of " + name(op.subject) + " as " + crdt::to_string(op.role) + " by " + name(op.author)
                          : "Revoke of " + name(op.subject) + " by " + name(op.author);
    if (!replica_.is_valid(id)) one += " (not valid here)";
    out += (out.empty() ? ": " : "; ") + one;
  }
  return out;
}

bool Node::note_revocations(std::span<const crdt::OpId> applied, crdt::Millis now) {
  bool any = false;
  for (const auto& id : applied) {
    crdt::Op op;
    const std::string* b = replica_.op_bytes(id);
    if (b == nullptr || crdt::parse_op(bytes_of(*b), &op) != crdt::Reject::none || op.kind != crdt::OpKind::revoke ||
        !replica_.is_valid(id)) {
      continue;
    }
    any = true;
    auto m = replica_.member(op.subject, seconds(now));
    if (!m || m->standing != crdt::Standing::revoked) continue;
    ++revocations_applied_;
    last_revocation_applied_ = now;
    last_revocation_delay_ms_ = static_cast<int64_t>(now) - static_cast<int64_t>(op.created_at) * 1000;
    last_revocation_subject_ = label(*m);
    spdlog::info("revocation of {} applied here, {} ms after its author made it (by its clock)", label(*m),
                 last_revocation_delay_ms_);
  }
  return any;
}

void Node::announce(const std::vector<crdt::OpId>& ops, crdt::Millis now) {
  note_revocations(ops, now);
  // Gossip first: the other nodes are most of "enforced everywhere".
  if (replica_.has_org()) engine_->publish(ops, now);
  after_event(now);
  membership_changed(now);
}

// ---- Gossip and timers --------------------------------------------------------

size_t Node::import_records(std::span<const std::string> records, crdt::Millis now) {
  if (!replica_.has_org()) return 0;
  size_t kept = 0;
  for (const auto& wire : records) {
    crdt::EndpointRecord rec;
    if (!crdt::parse_endpoint_record(bytes_of(wire), replica_.org().id, &rec)) continue;
    engine_->restore_record(bytes_of(wire), now);
    const auto* held = engine_->endpoints().find(rec.key);
    if (held == nullptr || held->id != rec.id) continue;  // not a member, or older than the one held
    const std::string name = std::string(kRecordPrefix) + netauth::to_base64(rec.key);
    if (Status st = store_->put_meta(name, wire, /*sync=*/false); !st) spdlog::error("store: {}", st.message());
    ++kept;
  }
  return kept;
}

void Node::on_datagram(const crdt::PublicKey& from, std::span<const uint8_t> bytes, crdt::Millis now) {
  // It came through WireGuard, so the device has an endpoint for it now (it
  // reached us first): read it, or the answers would be held back.
  if (no_endpoint(from, now)) {
    sync_wireguard(now);
  } else if (reflection_due(from, now)) {
    next_early_reflect_ = now + 250;
    sync_wireguard(now);
  }
  engine_->on_datagram(from, bytes, now);
  after_event(now);
}

void Node::on_handover(const std::string& source, std::span<const uint8_t> bytes, crdt::Millis now) {
  ++handovers_in_;
  if (!replica_.has_org() || !handover_budget_.take(source, bytes.size(), now)) {
    ++handovers_refused_;
    return;
  }
  auto ops = crdt::parse_handover(bytes, replica_.org().id);
  if (!ops) {
    ++handovers_refused_;
    return;
  }
  std::vector<crdt::OpId> applied;
  for (const auto& op : *ops) {
    auto r = replica_.ingest(bytes_of(op), kHandoverSource);
    applied.insert(applied.end(), r.applied.begin(), r.applied.end());
  }
  if (applied.empty()) return;
  handover_ops_applied_ += applied.size();
  std::vector<std::string> stored;
  for (const auto& id : applied) stored.push_back(*replica_.op_bytes(id));
  if (Status st = store_->append(stored, /*sync=*/false); !st) spdlog::error("store: {}", st.message());
  spdlog::info("hand-over from {}: {} op(s) applied{}; {} ops", source.find(':') == std::string::npos ? source : "[" + source + "]",
               applied.size(), describe(applied, now), replica_.op_count());
  announce(applied, now);
}

size_t Node::reachable_peers(const wg::Device& device, crdt::Millis now) {
  const auto t = static_cast<int64_t>(seconds(now));
  size_t n = 0;
  for (const auto& p : device.peers) {
    n += p.last_handshake_sec != 0 && t - p.last_handshake_sec < wg::kHandshakeFreshSec;
  }
  return n;
}

void Node::hand_over(crdt::Millis now) {
  if (!wireguard_ || sink_ == nullptr || now < next_handover_) return;
  next_handover_ = now + (now - started_at_ < kHandoverEarlyPeriod ? kHandoverEarly : kHandoverLater);
  auto device = wireguard_->device();  // now, not as of the last sync
  if (!device || device->peers.empty() || reachable_peers(*device, now) > 0) return;
  // Where: lighthouses first (public by definition), then what members' records say.
  std::vector<wg::Endpoint> targets;
  auto add = [&](wg::Endpoint e) {
    e.port = crdt::kHandoverPort;
    if (targets.size() < kHandoverTargets && std::find(targets.begin(), targets.end(), e) == targets.end()) {
      targets.push_back(e);
    }
  };
  for (const auto& p : wireguard_->last_read().peers) {
    const auto* path = wireguard_->paths().find(p.public_key);
    auto id = identity_of(p.public_key, now);
    auto m = id ? member_status(*id, now) : std::nullopt;
    if (path && m && m->role == crdt::Role::lighthouse) {
      for (const auto& c : path->candidates) add(c);
    }
  }
  for (const auto& p : wireguard_->last_read().peers) {
    if (const auto* path = wireguard_->paths().find(p.public_key)) {
      for (const auto& c : path->candidates) add(c);
    }
  }
  if (targets.empty()) return;
  const auto datagrams = crdt::make_handover(replica_);
  for (const auto& t : targets) {
    for (const auto& d : datagrams) sink_->send_handover(t, d);
  }
  handovers_out_ += targets.size() * datagrams.size();
  std::string where;
  for (const auto& t : targets) where += (where.empty() ? "" : ", ") + t.to_string();
  spdlog::info("hand-over: our newest {} op(s) to {} endpoint(s) outside the tunnel, as no peer answers: {}",
               std::min(replica_.op_count(), crdt::kHandoverOps), targets.size(), where);
}

void Node::set_addresses(const HostAddresses& addresses, crdt::Millis now) {
  addresses_ = addresses;
  reflections_.clear();  // they saw the old addresses' mappings
  if (wireguard_) {
    wireguard_->set_local_networks(addresses_.networks);
    wireguard_->verify_paths(now);
  }
  announce_record(now);
  sync_wireguard(now);
  after_event(now);
}

void Node::set_advertise(std::vector<std::string> advertise, crdt::Millis now) {
  options_.advertise = std::move(advertise);
  announce_record(now);
  after_event(now);
}

void Node::announce_record(crdt::Millis now) {
  if (!replica_.has_org()) return;
  crdt::EndpointSet set;
  auto add = [&](std::vector<std::string>& to, const std::string& e) {
    const auto& all = {&set.local, &set.advertised, &set.reflected};
    const bool held = std::any_of(all.begin(), all.end(), [&](const auto* v) {
      return std::find(v->begin(), v->end(), e) != v->end();
    });
    if (!held && set.size() < crdt::kMaxEndpoints) to.push_back(e);
  };
  for (const auto& e : options_.advertise) add(set.advertised, e);
  for (const auto& e : reflections_.endpoints(addresses_.endpoints)) add(set.reflected, e);
  for (const auto& e : addresses_.endpoints) add(set.local, e);
  set.nat = reflections_.nat(addresses_.endpoints);
  if (is_lighthouse(now)) {
    set.relay_udp_port = options_.relay_udp_port;
    set.relay_tcp_port = options_.relay_tcp_port;
  }
  if (announced_ == set) return;
  const bool nat_changed = !announced_ || announced_->nat != set.nat;
  announced_ = set;
  engine_->set_endpoints(set, options_.listen_port, now);
  if (wireguard_ && nat_changed) {
    wireguard_->set_own_nat(set.nat);  // which peers can only be relayed
    sync_wireguard(now);
  }
  std::string listed;
  for (const auto* list : {&set.advertised, &set.reflected, &set.local}) {
    for (const auto& e : *list) listed += (listed.empty() ? "" : ", ") + e;
  }
  spdlog::info("announcing {} endpoint(s) for WireGuard port {}: {} local, {} advertised, {} reflected; NAT {}{}{}",
               set.size(), options_.listen_port, set.local.size(), set.advertised.size(), set.reflected.size(),
               crdt::to_string(set.nat), listed.empty() ? "" : ": ", listed);
}

std::vector<std::string> Node::names_to_resolve(crdt::Millis now) const {
  return WireGuardSync::names_of(members(now));
}

void Node::set_resolved(const std::string& name, const std::vector<std::string>& endpoints, crdt::Millis now) {
  if (!wireguard_) return;
  std::vector<wg::Endpoint> parsed;
  for (const auto& e : endpoints) {
    if (auto ep = wg::Endpoint::parse(e)) parsed.push_back(*ep);
  }
  wireguard_->set_resolved(name, std::move(parsed));
  sync_wireguard(now);
  after_event(now);
}

void Node::on_tick(crdt::Millis now) {
  if (now >= engine_->next_deadline()) engine_->on_tick(now);
  after_event(now);
  if ((next_expiry_ && seconds(now) >= *next_expiry_) || (membership_due_ && now >= *membership_due_)) {
    membership_changed(now);
  }
  if (now >= next_repair_) {
    // Drift made by hand, a lost interface; on a lighthouse, reflections.
    next_repair_ = now + (is_lighthouse(now) ? options_.reflect_interval : options_.repair_interval);
    if (reflections_.expire(lighthouses(now), now)) announce_record(now);
    sync_wireguard(now);
  } else if (wireguard_ && now >= wireguard_->next_path_deadline()) {
    sync_wireguard(now);  // a path timer: read the device, maybe try the next candidate
  }
  warn_if_unreachable(now);
  if (now >= next_standing_warning_) {
    next_standing_warning_ = now + 60'000;
    if (const std::string st = standing(now); st != "active") {
      spdlog::warn("this node is not an active member of org {}: {}; it gets no peers", replica_.org().name, st);
    }
  }
  hand_over(now);
  after_event(now);
}

crdt::Millis Node::next_deadline() const {
  crdt::Millis due = engine_->next_deadline();
  if (next_expiry_) due = std::min(due, *next_expiry_ * 1000);
  if (membership_due_) due = std::min(due, *membership_due_);
  if (wireguard_) {
    due = std::min({due, next_repair_, wireguard_->next_path_deadline(), next_unreachable_warning_, next_handover_});
  }
  return due;
}

bool Node::is_lighthouse(crdt::Millis now) const {
  const auto& all = members(now);
  auto it = std::lower_bound(all.begin(), all.end(), key_.public_key,
                             [](const crdt::Member& m, const crdt::PublicKey& k) { return m.key < k; });
  return it != all.end() && it->key == key_.public_key && it->role == crdt::Role::lighthouse &&
         it->standing == crdt::Standing::active;
}

void Node::set_relay_offer(std::function<std::optional<wg::Endpoint>(const crdt::PublicKey&)> offer) {
  relay_offer_ = std::move(offer);
  if (wireguard_) wireguard_->set_relay_offer(relay_offer_);
}

void Node::relay_changed(crdt::Millis now) {
  sync_wireguard(now);
  after_event(now);
}

std::vector<RelayTargetInfo> Node::relay_targets(crdt::Millis now) const {
  std::vector<RelayTargetInfo> out;
  auto host_of = [](const std::string& text) -> std::string {
    auto e = wg::Endpoint::parse(text);
    if (!e) return "";
    std::string t = e->to_string();
    t = t.substr(0, t.rfind(':'));
    if (!t.empty() && t.front() == '[') t = t.substr(1, t.size() - 2);
    return t;
  };
  for (const auto& m : members(now)) {
    if (m.role != crdt::Role::lighthouse || m.standing != crdt::Standing::active || m.key == key_.public_key) continue;
    RelayTargetInfo t;
    t.key = m.key;
    t.name = m.name;
    for (const auto& e : m.endpoints) {
      if (t.host.empty()) t.host = host_of(e);
    }
    const auto* rec = engine_->endpoints().find(m.key);
    if (rec != nullptr) {
      for (const auto* list : {&rec->advertised, &rec->endpoints}) {
        for (const auto& e : *list) {
          if (t.host.empty()) t.host = host_of(e);
        }
      }
    }
    t.udp_port = 51822;
    t.tcp_port = 443;
    if (rec != nullptr && (rec->relay_udp_port != 0 || rec->relay_tcp_port != 0)) {
      t.udp_port = rec->relay_udp_port;
      t.tcp_port = rec->relay_tcp_port;
    }
    if (!t.host.empty()) out.push_back(std::move(t));
  }
  return out;
}

std::vector<crdt::PublicKey> Node::lighthouses(crdt::Millis now) const {
  std::vector<crdt::PublicKey> out;
  for (const auto& m : members(now)) {
    if (m.role == crdt::Role::lighthouse && m.standing == crdt::Standing::active) out.push_back(m.key);
  }
  return out;  // sorted: members() is
}

void Node::refresh_wg_keys(crdt::Millis now) const {
  const auto& all = members(now);
  if (by_wg_version_ == members_version_) return;
  // A key's WireGuard key never changes, and converting one costs a field
  // inversion (about 30 us): each key is converted once while it is a member.
  std::map<crdt::PublicKey, wg::Key> next;
  by_wg_.clear();
  for (const auto& m : all) {
    auto held = wg_of_.find(m.key);
    std::optional<wg::Key> k;
    if (held != wg_of_.end()) {
      k = held->second;
    } else if (auto converted = netauth::wg_public_key(m.key)) {
      k = *converted;
    }
    if (!k) continue;
    by_wg_.emplace(*k, m.key);
    next.emplace_hint(next.end(), m.key, *k);  // members() is sorted by key
  }
  wg_of_ = std::move(next);
  by_wg_version_ = members_version_;
}

std::optional<crdt::PublicKey> Node::identity_of(const wg::Key& wg_key, crdt::Millis now) const {
  refresh_wg_keys(now);
  auto it = by_wg_.find(wg_key);
  if (it == by_wg_.end()) return std::nullopt;
  return it->second;
}

std::optional<wg::Key> Node::wg_key_of(const crdt::PublicKey& identity, crdt::Millis now) const {
  refresh_wg_keys(now);
  auto it = wg_of_.find(identity);
  if (it == wg_of_.end()) return std::nullopt;
  return it->second;
}

bool Node::no_endpoint(const crdt::PublicKey& to, crdt::Millis now) const {
  if (!wireguard_) return false;
  const auto k = wg_key_of(to, now);
  const wg::PeerPath* path = k ? wireguard_->paths().find(*k) : nullptr;
  return path != nullptr && !path->endpoint;  // not on the device yet: WireGuard drops it, costing nothing
}

void Node::follow_paths(crdt::Millis now) {
  for (const auto& k : wireguard_->take_pokes()) {
    if (auto id = identity_of(k, now)) engine_->poke(*id);
  }
  if (wireguard_->reads() != reads_seen_) {
    reads_seen_ = wireguard_->reads();
    if (is_lighthouse(now)) reflect(now);
  }
}

bool Node::reflection_due(const crdt::PublicKey& member, crdt::Millis now) const {
  if (!wireguard_ || reflector_.told(member) || now < next_early_reflect_ || !is_lighthouse(now)) return false;
  refresh_wg_keys(now);
  auto k = wg_of_.find(member);
  if (k == wg_of_.end()) return false;
  // One reached through the relay is not reflected (its endpoint here is our proxy's).
  const auto* path = wireguard_->paths().find(k->second);
  return path == nullptr || !path->endpoint || !wg::is_loopback(path->endpoint->address);
}

void Node::reflect(crdt::Millis now) {
  std::vector<lighthouse::Sighting> seen;
  const auto t = static_cast<int64_t>(seconds(now));
  for (const auto& p : wireguard_->last_read().peers) {
    if (!p.endpoint || p.last_handshake_sec == 0 || t - p.last_handshake_sec >= wg::kHandshakeFreshSec) continue;
    // A member that reaches us through the relay is at our proxy address:
    // that says nothing of its NAT mapping.
    if (wg::is_loopback(p.endpoint->address)) continue;
    if (auto id = identity_of(p.public_key, now)) seen.push_back({*id, p.endpoint->to_string()});
  }
  for (const auto& s : reflector_.due(seen, now)) engine_->send_reflection(s.member, s.endpoint);
}

void Node::take_reflections(crdt::Millis now) {
  auto heard = engine_->take_reflections();
  if (heard.empty()) return;  // the common case: no list of lighthouses built per event
  bool changed = false;
  const auto from_lighthouses = lighthouses(now);
  for (auto& r : heard) {
    if (!std::binary_search(from_lighthouses.begin(), from_lighthouses.end(), r.from)) continue;
    // A lighthouse that saw us through the relay (older ones did) tells nothing.
    if (auto e = wg::Endpoint::parse(r.endpoint); !e || wg::is_loopback(e->address)) continue;
    std::string lighthouse_ip;  // where this node reaches it: two lighthouses at one address tell nothing
    if (wireguard_) {
      const auto wg_key = netauth::wg_public_key(r.from);
      for (const auto& p : wireguard_->last_read().peers) {
        if (wg_key && p.public_key == *wg_key && p.endpoint && !wg::is_loopback(p.endpoint->address)) {
          lighthouse_ip = netauth::format_address(p.endpoint->address);
        }
      }
    }
    changed |= reflections_.offer(r.from, std::move(lighthouse_ip), std::move(r.endpoint), now);
  }
  if (changed) announce_record(now);
}

void Node::warn_if_unreachable(crdt::Millis now) {
  if (!wireguard_ || now < next_unreachable_warning_) return;
  next_unreachable_warning_ = now + 60'000;
  auto device = wireguard_->device();
  if (!device || device->peers.empty() || reachable_peers(*device, now) > 0) return;  // alone, or fine
  std::string tried;
  for (const auto& p : device->peers) {
    std::string name = netauth::to_base64(p.public_key).substr(0, 8);
    if (auto id = identity_of(p.public_key, now)) {
      if (auto m = member_status(*id, now)) name = m->name;
    }
    std::string candidates;
    if (const auto* path = wireguard_->paths().find(p.public_key)) {
      for (const auto& c : path->candidates) candidates += (candidates.empty() ? "" : " ") + c.to_string();
    }
    tried += (tried.empty() ? "" : "; ") + name + " at " + (candidates.empty() ? "no known endpoint" : candidates);
  }
  spdlog::warn("no peer reachable {} s after start: tried {}", (now - started_at_) / 1000, tried);
}

void Node::after_event(crdt::Millis now) {
  bool changed = false;
  std::vector<std::string> ops;
  const auto applied = engine_->take_applied_ops();
  for (const auto& id : applied) ops.push_back(*replica_.op_bytes(id));
  const bool revoked = note_revocations(applied, now);
  if (!ops.empty()) {
    // Ops from peers exist elsewhere too: written without sync.
    if (Status st = store_->append(ops, /*sync=*/false); !st) spdlog::error("store: {}", st.message());
    spdlog::info("applied {} op(s) from gossip{}; {} ops", ops.size(), describe(applied, now), replica_.op_count());
    changed = true;
  }
  for (const auto& record : engine_->take_changed_records()) {
    crdt::EndpointRecord rec;
    if (!replica_.has_org() || !crdt::parse_endpoint_record(bytes_of(record), replica_.org().id, &rec)) continue;
    const std::string name = std::string(kRecordPrefix) + netauth::to_base64(rec.key);
    if (Status st = store_->put_meta(name, record, /*sync=*/false); !st) spdlog::error("store: {}", st.message());
    changed = true;
  }
  take_reflections(now);
  send_datagrams(now);
  if (!changed) return;
  // In a burst (a catch-up brings ops in many datagrams a few ms apart) the
  // members are listed again and WireGuard follows at most every
  // kMembershipCoalesce, at its end at the latest. A Revoke is followed at once.
  const crdt::Millis due = membership_due_.value_or(last_membership_change_ + kMembershipCoalesce);
  if (revoked || now >= due) {
    membership_changed(now);
    send_datagrams(now);  // the pokes of paths that changed: their handshakes start now
  } else {
    membership_due_ = due;
  }
}

void Node::send_datagrams(crdt::Millis now) {
  if (sink_ == nullptr) {
    (void)engine_->take_datagrams();
    return;
  }
  for (const auto& d : engine_->take_datagrams()) {
    if (!no_endpoint(d.to, now)) sink_->send(d);
  }
}

void Node::membership_changed(crdt::Millis now) {
  last_membership_change_ = now;
  membership_due_.reset();
  sync_wireguard(now);
  const auto digest = crdt::membership_digest(members(now));
  if (digest == digest_) return;
  size_t active = 0;
  for (const auto& m : members(now)) active += m.standing == crdt::Standing::active;
  spdlog::info("membership digest {} -> {} ({} active members)", netauth::to_hex(digest_).substr(0, 16),
               netauth::to_hex(digest).substr(0, 16), active);
  digest_ = digest;
  if (membership_listener_) membership_listener_(digest);
}

void Node::sync_wireguard(crdt::Millis now) {
  if (!wireguard_) return;
  ++reconcile_runs_;
  if (auto r = wireguard_->sync(now, members(now)); !r) {
    ++reconcile_errors_;
    spdlog::error("WireGuard {}: {}", wireguard_->ifname(), r.message());
  } else {
    reconcile_changes_ += *r;
  }
  follow_paths(now);
}

const std::vector<crdt::Member>& Node::members(crdt::Millis now) const {
  const uint64_t t = seconds(now);
  if (members_ops_ == replica_.op_count() && members_reevaluations_ == replica_.reevaluations() &&
      (!next_expiry_ || t < *next_expiry_)) {
    return members_;
  }
  members_ = replica_.members(t);
  members_ops_ = replica_.op_count();
  members_reevaluations_ = replica_.reevaluations();
  ++members_version_;
  next_expiry_.reset();
  for (const auto& m : members_) {
    if (m.standing == crdt::Standing::active && m.expires_at != 0 && (!next_expiry_ || m.expires_at < *next_expiry_)) {
      next_expiry_ = m.expires_at;
    }
  }
  return members_;
}

const std::vector<crdt::PublicKey>& Node::Directory::peers(crdt::Millis now) {
  // While a burst's membership change waits (after_event), the push sample
  // takes the members of at most kMembershipCoalesce ago: a member enrolled
  // since misses one eager push, and anti-entropy brings it the ops.
  if (node_->membership_due_ && seen_version_ == node_->members_version_) return peers_;
  const auto& members = node_->members(now);
  if (seen_version_ == node_->members_version_) return peers_;
  seen_version_ = node_->members_version_;
  peers_.clear();
  for (const auto& m : members) {
    if (m.standing == crdt::Standing::active && m.key != node_->key_.public_key) peers_.push_back(m.key);
  }
  return peers_;
}

// ---- Queries ------------------------------------------------------------------

std::string Node::standing(crdt::Millis now) const {
  if (!replica_.has_org()) return "not in an org";
  auto me = replica_.member(key_.public_key, seconds(now));
  if (!me) return "not a member";
  auto utc = [](uint64_t t) {
    const time_t tt = static_cast<time_t>(t);
    char buf[32];
    std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%SZ", std::gmtime(&tt));
    return std::string(buf);
  };
  switch (me->standing) {
    case crdt::Standing::active: return "active";
    case crdt::Standing::expired: return "expired at " + utc(me->expires_at);
    case crdt::Standing::revoked: break;
  }
  const auto all = revocations(now);
  auto it = all.find(key_.public_key);
  if (it == all.end()) return "revoked";
  const Revocation& r = it->second;
  return "revoked by " + r.author_name + " at " + utc(r.created_at) + (r.reason.empty() ? "" : ": " + r.reason);
}

std::map<crdt::PublicKey, Revocation> Node::revocations(crdt::Millis now) const {
  std::map<crdt::PublicKey, Revocation> out;
  for (const auto& id : replica_.all_ops()) {
    crdt::Op op;
    const std::string* b = replica_.op_bytes(id);
    if (b == nullptr || !replica_.is_valid(id) || crdt::parse_op(bytes_of(*b), &op) != crdt::Reject::none ||
        op.kind != crdt::OpKind::revoke || out.contains(op.subject)) {
      continue;
    }
    Revocation r{op.author, op.author == op.subject ? "itself" : netauth::to_base64(op.author).substr(0, 8),
                 op.created_at, op.reason};
    if (op.author != op.subject) {
      if (auto author = replica_.member(op.author, seconds(now))) r.author_name = author->name;
    }
    out.emplace(op.subject, std::move(r));
  }
  return out;
}

NodeStatus Node::status(crdt::Millis now) const {
  NodeStatus s;
  s.key = key_.public_key;
  s.self = member_status(key_.public_key, now);
  s.standing = standing(now);
  if (replica_.has_org()) {
    s.org_name = replica_.org().name;
    if (auto a = netauth::overlay_address_of(replica_.org().prefix, key_.public_key)) s.address = *a;
  }
  s.ops = replica_.op_count();
  s.pending_ops = replica_.pending_count();
  s.digest = crdt::membership_digest(members(now));
  for (const auto& m : members(now)) s.active_members += m.standing == crdt::Standing::active;
  if (wireguard_) {
    s.interface = wireguard_->ifname();
    s.wireguard_restarts = wireguard_->restarts();
    if (auto dev = wireguard_->device()) {
      s.peers = dev->peers.size();
      s.reachable_peers = reachable_peers(*dev, now);
    }
  }
  s.gossip = engine_->stats();
  s.last_revocation_applied = last_revocation_applied_;
  s.last_revocation_delay_ms = last_revocation_delay_ms_;
  s.revocations_applied = revocations_applied_;
  s.last_revocation_subject = last_revocation_subject_;
  s.rejected = replica_.reject_counts();
  s.reconcile_runs = reconcile_runs_;
  s.reconcile_changes = reconcile_changes_;
  s.reconcile_errors = reconcile_errors_;
  s.handovers_in = handovers_in_;
  s.handover_ops_applied = handover_ops_applied_;
  s.handovers_refused = handovers_refused_;
  s.handovers_out = handovers_out_;
  if (announced_) s.endpoints = *announced_;
  return s;
}

Result<std::vector<PeerStatus>> Node::peers(crdt::Millis now) const {
  if (!wireguard_) {
    return Status::error(Code::unavailable, "this daemon runs without WireGuard (--wg-backend none)");
  }
  auto dev = wireguard_->device();
  if (!dev) return dev.status();
  const auto& all = members(now);
  std::vector<PeerStatus> out;
  for (auto& p : dev->peers) {
    PeerStatus ps{std::move(p), std::nullopt, std::nullopt, {}};
    if (auto id = identity_of(ps.peer.public_key, now)) {
      auto it = std::lower_bound(all.begin(), all.end(), *id,
                                 [](const crdt::Member& m, const crdt::PublicKey& k) { return m.key < k; });
      if (it != all.end() && it->key == *id) ps.member = *it;
    }
    if (const auto* path = wireguard_->paths().find(ps.peer.public_key)) ps.path = *path;
    if (ps.path && ps.path->state == wg::PathState::relayed && ps.member && relay_describer_) {
      ps.relay = relay_describer_(ps.member->key);
    }
    out.push_back(std::move(ps));
  }
  return out;
}

std::optional<crdt::Member> Node::member_status(const crdt::PublicKey& key, crdt::Millis now) const {
  return replica_.member(key, seconds(now));
}

Result<crdt::Member> Node::find_member(const std::string& target, crdt::Millis now) const {
  const uint64_t t = seconds(now);
  if (auto key = netauth::key_from_base64(target)) {
    if (auto m = replica_.member(*key, t)) return *m;
    return Status::error(Code::not_found, target + " is not a member of org " + replica_.org().name);
  }
  std::vector<crdt::Member> found;
  for (const auto& m : members(now)) {
    if (m.name == target) found.push_back(m);
  }
  if (found.empty()) return Status::error(Code::not_found, "no member is named \"" + target + "\"");
  if (found.size() > 1) {
    std::string keys;
    for (const auto& m : found) keys += " " + netauth::to_base64(m.key);
    return Status::error(Code::invalid_argument,
                         "\"" + target + "\" names " + std::to_string(found.size()) + " members; give the key:" + keys);
  }
  return found.front();
}

}  // namespace fm::maintainer
