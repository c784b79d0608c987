// The join bundle: any bytes as a .join file, taken the way `fortmesh join`
// takes it (maintainer/cli/org_commands.cc, join(): parse, version 1, 32-byte
// org id and subject, the subject must be this node's key, the node must not
// be in another org; then Node::commit of the bundle's ops, accepted only if
// they hold the org's Genesis and make this node an active member). No files:
// the node's store is in memory.
//
// Each bundle is given to two nodes whose key is the bundle's subject when
// that is one of the fuzz org's keys (else dave's): a new node with an empty
// store, and a node that already holds the fuzz org (a member joining again).
//
// Checked: a refused bundle changes nothing (no ops stored or applied, still
// no org on the new node); an accepted one leaves the node an active member of
// the bundle's org, holding every op of the bundle, with the store holding
// exactly the replica's ops in order; a node re-opened from the store (a
// restart) has the same heads, members and digest.
#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "crdt/store.h"
#include "maintainer/daemon/node.h"
#include "proto/org.pb.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_org.h"

namespace {

using namespace fm;
using fm::fuzz::same_members;
constexpr crdt::Millis kNow = (fuzz::kFuzzUnix + 60) * 1000;
constexpr uint64_t kNowSec = kNow / 1000;

// org_commands.cc's join() after reading the file: Status of the join.
Status join(maintainer::Node& n, const std::string& data) {
  fortmesh::wire::JoinBundle bundle;
  if (!bundle.ParseFromString(data)) return Status::error(Code::invalid_argument, "not a join bundle");
  if (bundle.version() != 1) return Status::error(Code::invalid_argument, "unsupported bundle version");
  crdt::OpId org_id;
  crdt::PublicKey subject;
  if (bundle.org_id().size() != 32 || bundle.subject().size() != 32) {
    return Status::error(Code::invalid_argument, "not a join bundle");
  }
  std::memcpy(org_id.data(), bundle.org_id().data(), 32);
  std::memcpy(subject.data(), bundle.subject().data(), 32);
  if (subject != n.key().public_key) return Status::error(Code::invalid_argument, "enrolls another node");
  if (n.replica().has_org() && n.replica().org().id != org_id) {
    return Status::error(Code::conflict, "already in another org");
  }
  std::vector<std::string> ops(bundle.ops().begin(), bundle.ops().end());
  auto done = n.commit(ops, [&](const crdt::Replica& r) {
    if (!r.has_org() || r.org().id != org_id) return Status::error("the bundle does not hold its org's Genesis");
    if (!r.is_active_member(subject, kNowSec)) return Status::error("the bundle does not make this node an active member");
    return Status::ok();
  }, kNow);
  if (!done) return done.status();
  // Checked here, where the bundle is at hand: it is all in the replica now.
  for (const auto& op : ops) {
    crdt::Op parsed;
    FUZZ_CHECK(crdt::parse_op(fuzz::bytes_of(op), &parsed) == crdt::Reject::none);
    FUZZ_CHECK(n.replica().contains(parsed.id));
  }
  FUZZ_CHECK(n.replica().org().id == org_id && n.replica().is_active_member(subject, kNowSec));
  return Status::ok();
}

void join_checked(const fuzz::FuzzOrg& org, const netauth::KeyPair& key, bool member_already, const std::string& data) {
  crdt::MemoryStore store;
  if (member_already && !store.append(org.ops, true)) __builtin_trap();
  auto opened = maintainer::Node::open(key, &store, nullptr, nullptr, maintainer::NodeOptions{}, kNow);
  FUZZ_CHECK(opened.is_ok());
  maintainer::Node& n = **opened;
  const auto heads = n.replica().heads();
  const auto members = n.replica().members(kNowSec);
  const size_t ops = n.replica().op_count();
  const Status st = join(n, data);
  const auto stored = store.load_all();
  FUZZ_CHECK(stored.is_ok());
  if (!st) {
    FUZZ_CHECK(st.code() != Code::ok && !st.message().empty());
    FUZZ_CHECK(n.replica().op_count() == ops && n.replica().heads() == heads);
    FUZZ_CHECK(same_members(n.replica().members(kNowSec), members));
    FUZZ_CHECK(stored->size() == ops && n.replica().has_org() == member_already);
    return;
  }
  const auto all = n.replica().all_ops();
  FUZZ_CHECK(stored->size() == all.size());
  for (size_t i = 0; i < all.size(); ++i) FUZZ_CHECK((*stored)[i] == *n.replica().op_bytes(all[i]));
  auto again = maintainer::Node::open(key, &store, nullptr, nullptr, maintainer::NodeOptions{}, kNow);
  FUZZ_CHECK(again.is_ok());
  FUZZ_CHECK((*again)->replica().heads() == n.replica().heads());
  FUZZ_CHECK((*again)->replica().digest(kNowSec) == n.replica().digest(kNowSec));
  FUZZ_CHECK(same_members((*again)->replica().members(kNowSec), n.replica().members(kNowSec)));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::FuzzOrg org = [] {
    spdlog::set_level(spdlog::level::off);
    return fuzz::FuzzOrg();
  }();
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  // The node is the bundle's subject when that is one of ours.
  const netauth::KeyPair* key = &org.keys[5];
  fortmesh::wire::JoinBundle bundle;
  if (bundle.ParseFromString(bytes) && bundle.subject().size() == 32) {
    for (const auto& k : org.keys) {
      if (std::memcmp(k.public_key.data(), bundle.subject().data(), 32) == 0) key = &k;
    }
  }
  join_checked(org, *key, false, bytes);
  join_checked(org, *key, true, bytes);
  return 0;
}

std::vector<std::string> fuzz_seed_corpus() {
  static const fuzz::FuzzOrg org = [] {
    spdlog::set_level(spdlog::level::off);
    return fuzz::FuzzOrg();
  }();
  // Bundles the admin path makes (Node::submit), as `fortmesh enroll` writes them.
  std::vector<std::string> out;
  crdt::MemoryStore store;
  (void)store.append(org.ops, true);
  auto node = maintainer::Node::open(org.keys[0], &store, nullptr, nullptr, maintainer::NodeOptions{}, kNow);
  if (!node) return out;
  auto dave = (*node)->submit(maintainer::EnrollCommand{org.keys[5].public_key, "dave", crdt::Role::member, {}, 0}, kNow);
  if (dave) out.push_back(dave->bundle);
  auto lh = (*node)->submit(
      maintainer::EnrollCommand{org.keys[4].public_key, "lh", crdt::Role::lighthouse, {"192.0.2.4:51820"}, 0}, kNow);
  if (lh) out.push_back(lh->bundle);
  // carol's from the org's own ops (she is active until an hour in), and the
  // same with a version this build does not know.
  fortmesh::wire::JoinBundle b;
  b.set_version(1);
  b.set_org_id(org.org_id.data(), 32);
  b.set_subject(org.keys[3].public_key.data(), 32);
  for (const auto& op : org.ops) b.add_ops(op);
  out.push_back(b.SerializeAsString());
  b.set_version(2);
  out.push_back(b.SerializeAsString());
  return out;
}
