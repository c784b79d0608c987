#include <gtest/gtest.h>

#include <sodium.h>

#include <algorithm>
#include <random>

#include "crdt/op.h"
#include "crdt/replica.h"
#include "proto/org.pb.h"
#include "tests/util/org_builder.h"
#include "tests/util/testutil.h"

namespace fm::crdt {
namespace {

using test::bytes_of;
using test::test_key;

TEST(OpTest, BuildParseVerifyRoundTrip) {
  auto root = test_key(1);
  auto prefix = netauth::ula_prefix({9, 9, 9, 9, 9});
  auto g = make_genesis(root, "acme", prefix, 1234);
  Op genesis;
  ASSERT_EQ(parse_op(bytes_of(g), &genesis), Reject::none);
  EXPECT_EQ(genesis.kind, OpKind::genesis);
  EXPECT_EQ(genesis.author, root.public_key);
  EXPECT_EQ(genesis.org_name, "acme");
  EXPECT_EQ(genesis.prefix, prefix);
  EXPECT_EQ(genesis.created_at, 1234u);
  EXPECT_TRUE(genesis.parents.empty());
  EXPECT_TRUE(verify_op(genesis));
  // The id is BLAKE2b-256 of the body bytes exactly as signed.
  fortmesh::wire::SignedOp wire;
  ASSERT_TRUE(wire.ParseFromString(g));
  OpId want;
  crypto_generichash(want.data(), want.size(), reinterpret_cast<const uint8_t*>(wire.body().data()),
                     wire.body().size(), nullptr, 0);
  EXPECT_EQ(genesis.id, want);

  auto alice = test_key(2);
  auto e = make_enroll(root, genesis.id, std::vector<OpId>{genesis.id},
                       EnrollSpec{alice.public_key, "alice", Role::admin, {}, 99}, 5);
  Op enroll;
  ASSERT_EQ(parse_op(bytes_of(e), &enroll), Reject::none);
  EXPECT_EQ(enroll.kind, OpKind::enroll);
  EXPECT_EQ(enroll.org_id, genesis.id);
  EXPECT_EQ(enroll.parents, std::vector<OpId>{genesis.id});
  EXPECT_EQ(enroll.subject, alice.public_key);
  EXPECT_EQ(enroll.role, Role::admin);
  EXPECT_EQ(enroll.expires_at, 99u);
  EXPECT_TRUE(verify_op(enroll));

  auto r = make_revoke(root, genesis.id, std::vector<OpId>{enroll.id}, alice.public_key, "left", 6);
  Op revoke;
  ASSERT_EQ(parse_op(bytes_of(r), &revoke), Reject::none);
  EXPECT_EQ(revoke.kind, OpKind::revoke);
  EXPECT_EQ(revoke.reason, "left");
  EXPECT_TRUE(verify_op(revoke));
}

TEST(OpTest, SignatureIsDomainSeparated) {
  auto root = test_key(1);
  auto g = make_genesis(root, "acme", netauth::ula_prefix({1, 1, 1, 1, 1}), 1);
  fortmesh::wire::SignedOp wire;
  ASSERT_TRUE(wire.ParseFromString(g));
  // A plain Ed25519 signature of the body (no domain) must not verify as an op.
  netauth::Signature plain;
  crypto_sign_detached(plain.data(), nullptr, reinterpret_cast<const uint8_t*>(wire.body().data()),
                       wire.body().size(), root.secret_key.bytes().data());
  wire.set_signature(plain.data(), plain.size());
  Op op;
  ASSERT_EQ(parse_op(bytes_of(wire.SerializeAsString()), &op), Reject::none);
  EXPECT_FALSE(verify_op(op));
}

TEST(OpTest, StructuralRules) {
  auto root = test_key(1);
  fortmesh::wire::OpBody body;
  body.set_author(std::string(32, 'a'));
  auto wrap = [](const fortmesh::wire::OpBody& b) {
    fortmesh::wire::SignedOp s;
    s.set_body(b.SerializeAsString());
    s.set_signature(std::string(64, 's'));
    return s.SerializeAsString();
  };
  Op op;
  EXPECT_EQ(parse_op(bytes_of(wrap(body)), &op), Reject::malformed) << "no kind";
  body.mutable_revoke()->set_subject(std::string(32, 'b'));
  EXPECT_EQ(parse_op(bytes_of(wrap(body)), &op), Reject::malformed) << "no parents";
  body.add_parents(std::string(32, 'p'));
  body.set_org_id(std::string(32, 'o'));
  EXPECT_EQ(parse_op(bytes_of(wrap(body)), &op), Reject::none);
  body.add_parents(std::string(32, 'p'));
  EXPECT_EQ(parse_op(bytes_of(wrap(body)), &op), Reject::malformed) << "parent named twice";
  body.mutable_parents()->RemoveLast();
  body.add_parents(std::string(31, 'q'));
  EXPECT_EQ(parse_op(bytes_of(wrap(body)), &op), Reject::malformed) << "short parent id";
  body.mutable_parents()->RemoveLast();
  body.set_org_id(std::string(31, 'o'));
  EXPECT_EQ(parse_op(bytes_of(wrap(body)), &op), Reject::malformed) << "short org id";
  body.set_org_id(std::string(32, 'o'));
  body.set_author(std::string(33, 'a'));
  EXPECT_EQ(parse_op(bytes_of(wrap(body)), &op), Reject::malformed) << "long author";

  fortmesh::wire::OpBody genesis;
  genesis.set_author(std::string(32, 'a'));
  genesis.mutable_genesis()->set_org_name("x");
  genesis.mutable_genesis()->set_prefix(std::string("\xfd\1\2\3\4\5", 6));
  EXPECT_EQ(parse_op(bytes_of(wrap(genesis)), &op), Reject::none);
  genesis.add_parents(std::string(32, 'p'));
  EXPECT_EQ(parse_op(bytes_of(wrap(genesis)), &op), Reject::malformed) << "genesis with parents";
  genesis.clear_parents();
  genesis.mutable_genesis()->set_prefix(std::string("\xfc\1\2\3\4\5", 6));
  EXPECT_EQ(parse_op(bytes_of(wrap(genesis)), &op), Reject::malformed) << "non-ULA prefix";
}

TEST(OpTest, EndpointText) {
  for (const char* ok : {"1.2.3.4:51820", "lh.example.net:1", "[2001:db8::1]:65535", "a:9"}) {
    EXPECT_TRUE(valid_endpoint(ok)) << ok;
  }
  for (const char* bad : {"", ":51820", "host", "host:", "host:0", "host:65536", "host:12x",
                          "2001:db8::1:51820x", "[2001:db8::1]", "[]:1", "ho st:1", "h\n:1",
                          "[2001:zz::1]:1"}) {
    EXPECT_FALSE(valid_endpoint(bad)) << bad;
  }
  EXPECT_FALSE(valid_endpoint(std::string(254, 'a') + ":1"));
}

// ---- choose_parents (docs/crdt.md "Choosing parents") ---------------------

using test::kOrgNow;
using test::OrgBuilder;

// Twenty heads made by a revoked admin (admitted, invalid): an op on all the
// heads would name more than 16 parents, and be refused as oversized.
TEST(ChooseParents, NamesAtMostSixteenHeadsAndLaterOpsMergeTheRest) {
  OrgBuilder org;
  const auto admin = test_key(10), revoked = test_key(11);
  org.admin(org.root(), admin);
  org.admin(org.root(), revoked);
  const OpId gone = org.revoke(org.root(), revoked);
  for (uint8_t i = 0; i < 20; ++i) {
    org.enroll(revoked, test_key(static_cast<uint8_t>(40 + i)), Role::member, 0, std::vector<OpId>{gone});
  }
  ASSERT_EQ(org.replica().heads().size(), 20u);
  EXPECT_EQ(org.add(make_enroll(admin, org.org(), org.replica().heads(), {test_key(30).public_key, "x", Role::member, {}, 0},
                                kOrgNow)).reject,
            Reject::oversized);

  const auto parents = choose_parents(org.replica(), admin.public_key);
  EXPECT_EQ(parents.size(), kMaxParents);
  EXPECT_TRUE(std::is_sorted(parents.begin(), parents.end()));
  const OpId op = org.enroll(admin, test_key(30), Role::member, 0, parents);
  EXPECT_TRUE(org.replica().is_valid(op));
  // The heads left out are merged by the next op.
  org.enroll(admin, test_key(31), Role::member, 0, choose_parents(org.replica(), admin.public_key));
  EXPECT_EQ(org.replica().heads().size(), 1u);
  // At most 16 heads: all of them.
  EXPECT_EQ(choose_parents(org.replica(), admin.public_key), org.replica().heads());
}

// The heads of valid ops by admins come first, deepest first; but an admin
// whose own authority is only below a shallow head still gets that head, or
// its op would not even be admitted.
TEST(ChooseParents, AlwaysKeepsAHeadWithTheAuthorsAuthority) {
  OrgBuilder org;
  const auto busy = test_key(10), late = test_key(11), member = test_key(12);
  const OpId g = org.org();
  const OpId eb = org.admin(org.root(), busy);
  OpId last = eb;
  for (uint8_t i = 0; i < 10; ++i) last = org.enroll(busy, test_key(static_cast<uint8_t>(40 + i)), Role::member, 0, std::vector<OpId>{last});
  for (uint8_t i = 0; i < 20; ++i) org.enroll(busy, test_key(static_cast<uint8_t>(60 + i)), Role::member, 0, std::vector<OpId>{last});
  // Made beside all that: the only ops with `late`'s and `member`'s Enrolls below them.
  const OpId el = org.admin(org.root(), late, 0, std::vector<OpId>{g});
  org.enroll(org.root(), member, Role::member, 0, std::vector<OpId>{el});
  ASSERT_EQ(org.replica().heads().size(), 21u);

  // The 16 deepest heads carry no authority of `late`'s.
  std::vector<OpId> deepest = org.replica().heads();
  const auto items = org.replica().sync_items();
  std::sort(deepest.begin(), deepest.end(), [&](const OpId& a, const OpId& b) {
    auto depth = [&](const OpId& id) {
      return std::find_if(items.begin(), items.end(), [&](const SyncItem& s) { return s.id == id; })->key;  // the depth
    };
    return depth(a) > depth(b);
  });
  deepest.resize(kMaxParents);
  EXPECT_EQ(org.add(org.enroll_op(late, test_key(90).public_key, Role::member, 0, deepest)).reject, Reject::inadmissible);

  const auto for_late = choose_parents(org.replica(), late.public_key);
  ASSERT_EQ(for_late.size(), kMaxParents);
  const OpId op = org.enroll(late, test_key(91), Role::member, 0, for_late);
  EXPECT_TRUE(org.replica().is_valid(op));
  // A member's self-Revoke needs an Enroll naming it below.
  const OpId leave = org.revoke(member, member, choose_parents(org.replica(), member.public_key));
  EXPECT_TRUE(org.replica().is_valid(leave));
  EXPECT_EQ(org.replica().member(member.public_key, kOrgNow)->standing, Standing::revoked);
}

TEST(ChooseParents, IsDeterministicWhateverTheDeliveryOrder) {
  OrgBuilder org;
  const auto admin = test_key(10), other = test_key(11);
  org.admin(org.root(), admin);
  const OpId eo = org.admin(org.root(), other);
  for (uint8_t i = 0; i < 30; ++i) {
    org.enroll(i % 2 ? admin : other, test_key(static_cast<uint8_t>(40 + i)), Role::member, 0, std::vector<OpId>{eo});
  }
  const auto want = choose_parents(org.replica(), admin.public_key);
  std::mt19937 rng(3);
  for (int round = 0; round < 3; ++round) {
    auto ops = org.ops();
    std::shuffle(ops.begin(), ops.end(), rng);
    Replica r(org.org());
    for (const auto& op : ops) r.ingest(bytes_of(op));
    ASSERT_EQ(r.op_count(), org.replica().op_count());
    EXPECT_EQ(choose_parents(r, admin.public_key), want);
  }
}

}  // namespace
}  // namespace fm::crdt
