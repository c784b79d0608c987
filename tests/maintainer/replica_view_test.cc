// The in-process membership view: conn_auth against a real replica, whose
// answer changes the moment a Revoke is applied.
#include <gtest/gtest.h>

#include "crdt/replica.h"
#include "maintainer/daemon/replica_view.h"
#include "tests/util/testutil.h"

namespace fm::maintainer {
namespace {

TEST(ReplicaView, FollowsTheReplica) {
  const auto root = test::test_key(1), alice = test::test_key(2), bob = test::test_key(3);
  const uint64_t now = static_cast<uint64_t>(std::time(nullptr));
  crdt::Replica r;
  auto g = r.ingest(test::bytes_of(crdt::make_genesis(root, "v", netauth::ula_prefix({1, 2, 3, 4, 5}), now)));
  const auto org = g.applied.front();
  r.ingest(test::bytes_of(crdt::make_enroll(root, org, r.heads(), {alice.public_key, "alice", crdt::Role::member, {}, 0}, now)));
  r.ingest(test::bytes_of(crdt::make_enroll(root, org, r.heads(), {bob.public_key, "bob", crdt::Role::member, {}, now - 1}, now)));
  ReplicaView view(&r);
  EXPECT_EQ(view.status(alice.public_key), netauth::MemberStatus::active);
  EXPECT_EQ(view.status(bob.public_key), netauth::MemberStatus::expired);
  EXPECT_EQ(view.status(test::test_key(4).public_key), netauth::MemberStatus::not_member);
  r.ingest(test::bytes_of(crdt::make_revoke(root, org, r.heads(), alice.public_key, "gone", now)));
  EXPECT_EQ(view.status(alice.public_key), netauth::MemberStatus::revoked);
}

}  // namespace
}  // namespace fm::maintainer
