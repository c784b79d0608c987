// The control protocol: any bytes as the requests a client writes to the
// daemon's control socket, answered by maintainer::handle_control on a Node
// that holds the fuzz org (fuzz_org.h) in an in-memory store, with no
// WireGuard backend and no gossip sink. In-process: no socket, no file.
//
// Input: one byte choosing the node's key (keys[b % 6]: the root, an admin, a
// junior admin, a member, a lighthouse, a non-member) and the clock (b >> 3
// quarter hours after the org was made: carol expires at one hour), then up to
// 8 requests framed as on the socket (a 4-byte big-endian length, at most
// 64 KiB, and a ControlRequest). As the server does, a frame that does not
// parse gets no handler call and a watch request is not given to it. Each
// request is handled one second after the one before, on the same node.
//
// Checked after every request: a reply is an error exactly when it carries a
// code; an error, and any query, changes nothing (ops, heads, pending, the
// stored ops, the members, the digest); a successful enroll or revoke stores
// exactly the one op it applied, which becomes the only head, and leaves its
// subject active (enroll, with the requested name and role, and a join bundle
// holding every op) or revoked; queries report what the node holds. At the
// end, a node re-opened from the store (a restart) has the same heads,
// members and digest: every acknowledged op was stored.
#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>

#include "crdt/store.h"
#include "maintainer/daemon/control_handler.h"
#include "proto/org.pb.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_org.h"

namespace {

using namespace fm;
namespace wire = ::fortmesh::wire;
using fm::fuzz::same_members;

constexpr size_t kMaxRequests = 8;
constexpr uint32_t kMaxRequest = 64 << 10;  // maintainer/control/control.cc

struct Snapshot {
  size_t ops, pending, stored;
  std::vector<crdt::OpId> heads;
  std::vector<crdt::Member> members;
};

Snapshot snapshot(const maintainer::Node& node, const crdt::MemoryStore& store, crdt::Millis now) {
  return {node.replica().op_count(), node.replica().pending_count(), store.load_all()->size(),
          node.replica().heads(), node.replica().members(now / 1000)};
}

bool unchanged(const Snapshot& a, const Snapshot& b) {
  return a.ops == b.ops && a.pending == b.pending && a.stored == b.stored && a.heads == b.heads &&
         same_members(a.members, b.members);
}

std::string b64(const crdt::PublicKey& k) { return netauth::to_base64(k); }

void check_reply(const maintainer::Node& node, const crdt::MemoryStore& store, const wire::ControlRequest& req,
                 const wire::ControlReply& reply, const Snapshot& before, crdt::Millis now) {
  const Snapshot after = snapshot(node, store, now);
  const uint64_t t = now / 1000;
  // Clients decide by the error text (control_ask): an error without text
  // would read as a success.
  FUZZ_CHECK(reply.error().empty() == (reply.code() == 0));
  const bool admin = req.request_case() == wire::ControlRequest::kEnroll ||
                     req.request_case() == wire::ControlRequest::kRevoke;
  if (!reply.error().empty() || !admin) {
    FUZZ_CHECK(unchanged(before, after));
  }
  if (!reply.error().empty()) return;
  const auto& r = node.replica();
  switch (req.request_case()) {
    case wire::ControlRequest::kEnroll:
    case wire::ControlRequest::kRevoke: {
      FUZZ_CHECK(after.ops == before.ops + 1 && after.stored == before.stored + 1 && after.pending == before.pending);
      const auto stored = store.load_all();
      crdt::Op op;
      FUZZ_CHECK(crdt::parse_op(fuzz::bytes_of(stored->back()), &op) == crdt::Reject::none);
      FUZZ_CHECK(r.contains(op.id) && after.heads == std::vector<crdt::OpId>{op.id});
      FUZZ_CHECK(op.author == node.key().public_key && op.parents == before.heads);
      FUZZ_CHECK(reply.has_admin() && reply.admin().subject_key() == b64(op.subject));
      const auto m = r.member(op.subject, t);
      FUZZ_CHECK(m.has_value());
      if (req.has_enroll()) {
        FUZZ_CHECK(op.kind == crdt::OpKind::enroll && m->standing == crdt::Standing::active);
        FUZZ_CHECK(op.name == req.enroll().name());
        FUZZ_CHECK(crdt::to_string(op.role) == req.enroll().role() ||
                   (req.enroll().role().empty() && op.role == crdt::Role::member));
        wire::JoinBundle bundle;
        FUZZ_CHECK(bundle.ParseFromString(reply.admin().bundle()) && bundle.version() == 1);
        FUZZ_CHECK(bundle.subject() == req.enroll().subject());
        FUZZ_CHECK(bundle.org_id() == std::string(reinterpret_cast<const char*>(r.org().id.data()), 32));
        FUZZ_CHECK(static_cast<size_t>(bundle.ops_size()) == r.op_count());
        for (const auto& lh : bundle.lighthouses()) {
          crdt::PublicKey k;
          FUZZ_CHECK(lh.key().size() == 32);
          std::memcpy(k.data(), lh.key().data(), 32);
          const auto l = r.member(k, t);
          FUZZ_CHECK(l && l->role == crdt::Role::lighthouse && l->standing == crdt::Standing::active &&
                     k != op.subject);
        }
      } else {
        FUZZ_CHECK(op.kind == crdt::OpKind::revoke && m->standing == crdt::Standing::revoked);
        FUZZ_CHECK(op.reason == req.revoke().reason());
        FUZZ_CHECK(req.revoke().target() == b64(op.subject) || req.revoke().target() == m->name);
      }
      break;
    }
    case wire::ControlRequest::kMembers: {
      const auto& members = node.members(now);
      FUZZ_CHECK(static_cast<size_t>(reply.members().members_size()) == members.size());
      FUZZ_CHECK(reply.members().digest() == netauth::to_hex(crdt::membership_digest(members)));
      for (int i = 0; i < reply.members().members_size(); ++i) {
        FUZZ_CHECK(reply.members().members(i).key() == b64(members[static_cast<size_t>(i)].key));
      }
      break;
    }
    case wire::ControlRequest::kStatus:
      FUZZ_CHECK(reply.status().ops() == r.op_count());
      FUZZ_CHECK(reply.status().digest() == netauth::to_hex(r.digest(t)));
      FUZZ_CHECK(reply.status().interface().empty() && reply.status().key() == b64(node.key().public_key));
      break;
    case wire::ControlRequest::kMemberStatus: {
      const auto& s = reply.member_status();
      FUZZ_CHECK(s == "active" || s == "expired" || s == "revoked" || s == "not_member");
      crdt::PublicKey k;
      std::memcpy(k.data(), req.member_status().data(), 32);
      FUZZ_CHECK((s == "active") == r.is_active_member(k, t));
      break;
    }
    case wire::ControlRequest::kLog:
      // One entry per stored op, the Genesis first.
      FUZZ_CHECK(static_cast<size_t>(reply.log().entries_size()) == r.op_count());
      FUZZ_CHECK(reply.log().entries_size() == 0 || reply.log().entries(0).kind() == "genesis");
      break;
    default:
      FUZZ_CHECK(false);  // peers needs a WireGuard backend; anything else is unknown
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::FuzzOrg org = [] {
    spdlog::set_level(spdlog::level::off);
    return fuzz::FuzzOrg();
  }();
  if (size == 0) return 0;
  const auto& key = org.keys[data[0] % fuzz::kFuzzKeys];
  crdt::Millis now = (fuzz::kFuzzUnix + static_cast<uint64_t>(data[0] >> 3) * 900) * 1000;
  crdt::MemoryStore store;
  if (!store.append(org.ops, true)) __builtin_trap();
  auto opened = maintainer::Node::open(key, &store, nullptr, nullptr, maintainer::NodeOptions{}, now);
  FUZZ_CHECK(opened.is_ok());
  maintainer::Node& node = **opened;
  FUZZ_CHECK(node.start(maintainer::HostAddresses{{"192.0.2.9:51820"}, {}}, now).is_ok());

  size_t at = 1;
  for (size_t i = 0; i < kMaxRequests && size - at >= 4; ++i) {
    const uint32_t n = uint32_t{data[at]} << 24 | uint32_t{data[at + 1]} << 16 | uint32_t{data[at + 2]} << 8 |
                       data[at + 3];
    at += 4;
    if (n > kMaxRequest || n > size - at) break;  // the server drops the connection
    wire::ControlRequest req;
    const bool parsed = req.ParseFromArray(data + at, static_cast<int>(n));
    at += n;
    if (!parsed || req.has_watch()) continue;
    now += 1000;
    const Snapshot before = snapshot(node, store, now);
    const wire::ControlReply reply = maintainer::handle_control(node, req, now);
    check_reply(node, store, req, reply, before, now);
  }

  // A restart: the node re-opened from its store holds the same org.
  auto again = maintainer::Node::open(key, &store, nullptr, nullptr, maintainer::NodeOptions{}, now);
  FUZZ_CHECK(again.is_ok());
  FUZZ_CHECK((*again)->replica().heads() == node.replica().heads());
  FUZZ_CHECK((*again)->replica().digest(now / 1000) == node.replica().digest(now / 1000));
  FUZZ_CHECK(same_members((*again)->replica().members(now / 1000), node.replica().members(now / 1000)));
  return 0;
}

std::vector<std::string> fuzz_seed_corpus() {
  const fuzz::FuzzOrg org;
  auto frame = [](const wire::ControlRequest& r) {
    const std::string body = r.SerializeAsString();
    const auto n = static_cast<uint32_t>(body.size());
    return std::string{static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
                       static_cast<char>(n)} +
           body;
  };
  auto enroll = [&](size_t who, const char* name, const char* role, uint64_t expires,
                    std::vector<std::string> endpoints = {}) {
    wire::ControlRequest r;
    auto* e = r.mutable_enroll();
    e->set_subject(org.keys[who].public_key.data(), 32);
    e->set_name(name);
    e->set_role(role);
    e->set_expires_at(expires);
    for (auto& ep : endpoints) e->add_endpoints(ep);
    return frame(r);
  };
  auto revoke = [&](const std::string& target, const char* reason = "fuzz") {
    wire::ControlRequest r;
    r.mutable_revoke()->set_target(target);
    r.mutable_revoke()->set_reason(reason);
    return frame(r);
  };
  auto query = [&](int which, size_t who = 0) {
    wire::ControlRequest r;
    switch (which) {
      case 0: r.set_status(true); break;
      case 1: r.set_peers(true); break;
      case 2: r.set_members(true); break;
      case 3: r.set_member_status(std::string(reinterpret_cast<const char*>(org.keys[who].public_key.data()), 32)); break;
      default: r.set_watch(true); break;
    }
    return frame(r);
  };
  auto key_of = [&](size_t who) { return netauth::to_base64(org.keys[who].public_key); };
  const std::string as_root(1, 0), as_alice(1, 1), as_bob(1, 2), as_carol(1, 3), as_dave(1, 5);
  std::vector<std::string> out;
  out.push_back(as_root + enroll(5, "dave", "member", 0) + query(3, 5) + revoke("dave") + query(3, 5) +
                enroll(5, "dave", "admin", 0));
  out.push_back(as_root + enroll(5, "dave", "lighthouse", fuzz::kFuzzUnix + 7200, {"203.0.113.5:51820"}) +
                query(2) + revoke(key_of(5), "lost"));
  out.push_back(as_bob + revoke("alice") + revoke("carol") + enroll(3, "carol", "member", 0) + query(0));
  out.push_back(as_alice + revoke(key_of(0)) + revoke("nobody") + enroll(0, "root", "admin", 0) +
                enroll(2, "bob", "superuser", 0));
  out.push_back(as_carol + revoke("carol") + query(0) + query(1) + query(4));
  out.push_back(as_dave + enroll(5, "dave", "member", 0) + revoke("dave") + query(2));
  out.push_back(std::string(1, 1 + (8 << 3)) + query(3, 3) + enroll(3, "carol", "member", fuzz::kFuzzUnix + 60) +
                query(2));
  out.push_back(as_root + enroll(5, "lh", "lighthouse", 0, {"198.51.100.1:51820"}) + revoke("lh"));
  return out;
}
