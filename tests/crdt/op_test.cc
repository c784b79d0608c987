#include <gtest/gtest.h>

#include <sodium.h>

#include "crdt/op.h"
#include "proto/org.pb.h"
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

}  // namespace
}  // namespace fm::crdt
