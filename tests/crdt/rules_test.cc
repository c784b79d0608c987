// One test per validity and state rule of docs/crdt.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "crdt/replica.h"
#include "proto/org.pb.h"
#include "tests/util/org_builder.h"
#include "tests/util/testutil.h"

namespace fm::crdt {
namespace {

using netauth::KeyPair;
using test::bytes_of;
using test::test_key;

constexpr uint64_t kNow = 1'000'000;

// Authors ops for one org and feeds them to `replica_` as it goes: the
// shared OrgBuilder, with the argument order these tests were written in.
class OrgFixture : public ::testing::Test {
 protected:
  // Applies `op` (the test fails if it is not) and keeps it in ops_.
  OpId add(const std::string& op) { return org_.apply(op); }
  // Builds without ingesting, for tests that control delivery.
  std::string enroll_op(const KeyPair& by, const KeyPair& who, Role role, std::vector<OpId> parents,
                        uint64_t expires_at = 0, std::string name = "n") {
    EnrollSpec spec{who.public_key, std::move(name), role, {}, expires_at};
    if (role == Role::lighthouse) spec.endpoints = {"203.0.113.7:51820"};
    return org_.enroll_op(by, spec, std::move(parents));
  }
  std::string revoke_op(const KeyPair& by, const KeyPair& who, std::vector<OpId> parents) {
    return org_.revoke_op(by, who.public_key, std::move(parents));
  }
  // Without parents: the current heads, as an up-to-date author takes them.
  OpId enroll(const KeyPair& by, const KeyPair& who, Role role = Role::member,
              std::optional<std::vector<OpId>> parents = std::nullopt, uint64_t expires_at = 0) {
    return org_.enroll(by, who, role, expires_at, std::move(parents));
  }
  OpId revoke(const KeyPair& by, const KeyPair& who, std::optional<std::vector<OpId>> parents = std::nullopt) {
    return org_.revoke(by, who, std::move(parents));
  }
  // An op refused for admission: its author has no standing in its past.
  void inadmissible(const std::string& op) {
    auto res = replica_.ingest(bytes_of(op));
    EXPECT_EQ(res.outcome, Ingest::rejected);
    EXPECT_EQ(res.reject, Reject::inadmissible);
  }

  const OpId& org() const { return genesis_; }
  bool active(const KeyPair& k, uint64_t now = kNow) const {
    return replica_.is_active_member(k.public_key, now);
  }
  Standing standing(const KeyPair& k) const { return replica_.member(k.public_key, kNow)->standing; }

  // The state every replica must reach, whatever the delivery order.
  void expect_order_independent(unsigned seed = 1) {
    auto want = replica_.digest(kNow);
    Replica full;
    ASSERT_TRUE(full.load_verified(ops_).is_ok());
    EXPECT_EQ(full.digest(kNow), want) << "full evaluation differs from incremental";
    std::mt19937 rng(seed);
    for (int round = 0; round < 5; ++round) {
      auto shuffled = ops_;
      std::shuffle(shuffled.begin(), shuffled.end(), rng);
      Replica r(org());
      for (const auto& op : shuffled) r.ingest(bytes_of(op));
      EXPECT_EQ(r.pending_count(), 0u);
      EXPECT_EQ(r.digest(kNow), want) << "delivery order changed the state (round " << round << ")";
      EXPECT_EQ(r.heads(), replica_.heads());
    }
  }

  test::OrgBuilder org_{test_key(1), kNow, "acme"};
  const KeyPair& root_ = org_.root();
  const netauth::Prefix& prefix_ = org_.prefix();
  Replica& replica_ = org_.replica();
  const std::vector<std::string>& ops_ = org_.ops();  // every op applied, in order
  const OpId genesis_ = org_.org();
  KeyPair admin_a_ = test_key(10), admin_b_ = test_key(11), admin_c_ = test_key(12);
  KeyPair alice_ = test_key(20), bob_ = test_key(21), carol_ = test_key(22);
  KeyPair stranger_ = test_key(99);
};

TEST_F(OrgFixture, GenesisMakesItsAuthorTheRootAndTheOrgIdItsId) {
  ASSERT_TRUE(replica_.has_org());
  EXPECT_EQ(replica_.org().id, genesis_);
  EXPECT_EQ(replica_.org().name, "acme");
  EXPECT_EQ(replica_.org().prefix, prefix_);
  auto m = replica_.member(root_.public_key, kNow);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->role, Role::root);
  EXPECT_EQ(m->standing, Standing::active);
  EXPECT_EQ(m->address, *netauth::overlay_address_of(prefix_, root_.public_key));
}

TEST_F(OrgFixture, RootAndAdminsEnrollMembersOthersCannot) {
  enroll(root_, admin_a_, Role::admin);
  enroll(admin_a_, alice_);
  inadmissible(enroll_op(alice_, bob_, Role::member, replica_.heads()));       // a plain member may not enroll
  inadmissible(enroll_op(stranger_, carol_, Role::member, replica_.heads()));  // nor may a key nobody enrolled
  EXPECT_TRUE(active(admin_a_));
  EXPECT_TRUE(active(alice_));
  EXPECT_FALSE(active(bob_));
  EXPECT_FALSE(replica_.member(bob_.public_key, kNow));
  EXPECT_FALSE(active(carol_));
  EXPECT_EQ(replica_.member(admin_a_.public_key, kNow)->role, Role::admin);
  expect_order_independent();
}

TEST_F(OrgFixture, AdminAuthorityMustBeInTheOpsCausalPast) {
  OpId g = genesis_;
  OpId a = enroll(root_, admin_a_, Role::admin);
  // admin_a's Enroll that does not have its own admin Enroll as an ancestor
  // is not even admitted.
  inadmissible(enroll_op(admin_a_, alice_, Role::member, {g}));
  EXPECT_FALSE(active(alice_));
  enroll(admin_a_, bob_, Role::member, std::vector<OpId>{a});
  EXPECT_TRUE(active(bob_));
  // One on top of an admin Enroll of admin_a that is invalid (by a revoked
  // admin) is admitted, and invalid: authority is a valid Enroll.
  OpId c = enroll(root_, admin_c_, Role::admin, std::vector<OpId>{g});
  OpId rc = revoke(root_, admin_c_, std::vector<OpId>{c});
  OpId bogus = enroll(admin_c_, admin_a_, Role::admin, std::vector<OpId>{rc});
  enroll(admin_a_, carol_, Role::member, std::vector<OpId>{bogus});
  EXPECT_FALSE(active(carol_));
  expect_order_independent();
}

TEST_F(OrgFixture, AdminRevokedWhileConcurrentlyEnrollingLosesThatEnrollment) {
  OpId a = enroll(root_, admin_a_, Role::admin);
  auto enroll_alice = enroll_op(admin_a_, alice_, Role::member, {a});
  auto revoke_a = revoke_op(root_, admin_a_, {a});
  // The admin's Enroll arrives first and takes effect ...
  add(enroll_alice);
  EXPECT_TRUE(active(alice_));
  uint64_t before = replica_.reevaluations();
  // ... until the concurrent Revoke, which had not seen it, arrives.
  add(revoke_a);
  EXPECT_FALSE(active(alice_));
  EXPECT_EQ(standing(admin_a_), Standing::revoked);
  EXPECT_EQ(replica_.reevaluations(), before + 1);
  expect_order_independent();
}

TEST_F(OrgFixture, BackdatedOpOfARevokedAdminHasNoEffect) {
  OpId a = enroll(root_, admin_a_, Role::admin);
  enroll(admin_a_, alice_);
  OpId before_revoke = replica_.heads().front();
  revoke(root_, admin_a_);
  // Parents chosen to look older than the revocation.
  enroll(admin_a_, bob_, Role::member, std::vector<OpId>{a});
  enroll(admin_a_, carol_, Role::member, std::vector<OpId>{before_revoke});
  revoke(admin_a_, alice_, std::vector<OpId>{a});
  EXPECT_FALSE(active(bob_));
  EXPECT_FALSE(active(carol_));
  EXPECT_TRUE(active(alice_));
  expect_order_independent();
}

TEST_F(OrgFixture, MembersEnrolledBeforeTheirAdminsRevocationStay) {
  enroll(root_, admin_a_, Role::admin);
  enroll(admin_a_, alice_);
  enroll(admin_a_, bob_);
  revoke(root_, admin_a_);  // saw both Enrolls
  EXPECT_TRUE(active(alice_));
  EXPECT_TRUE(active(bob_));
  EXPECT_FALSE(active(admin_a_));
  expect_order_independent();
}

TEST_F(OrgFixture, RevocationWinsOverAConcurrentRevokeByTheRevokedAdmin) {
  OpId a = enroll(root_, admin_a_, Role::admin);
  OpId m = enroll(root_, alice_);
  auto a_revokes_alice = revoke_op(admin_a_, alice_, {a, m});
  revoke(root_, admin_a_);
  add(a_revokes_alice);
  EXPECT_TRUE(active(alice_));
  expect_order_independent();
}

TEST_F(OrgFixture, CutOffCascadesThroughAdminsTheRevokedAdminMade) {
  OpId a = enroll(root_, admin_a_, Role::admin);
  auto a_makes_b = enroll_op(admin_a_, admin_b_, Role::admin, {a});
  auto root_revokes_a = revoke_op(root_, admin_a_, {a});
  OpId b = add(a_makes_b);
  enroll(admin_b_, alice_, Role::member, std::vector<OpId>{b});
  EXPECT_TRUE(active(admin_b_));
  EXPECT_TRUE(active(alice_));
  add(root_revokes_a);
  EXPECT_FALSE(active(admin_b_));
  EXPECT_FALSE(active(alice_));
  expect_order_independent();
}

TEST_F(OrgFixture, JuniorAdminCannotRevokeASenior) {
  enroll(root_, admin_a_, Role::admin);   // rank 1
  enroll(admin_a_, admin_b_, Role::admin);  // rank 2
  revoke(admin_b_, admin_a_);
  EXPECT_TRUE(active(admin_a_));
  enroll(admin_a_, alice_);  // admin_a still acts
  EXPECT_TRUE(active(alice_));
  revoke(admin_a_, admin_b_);  // the senior can revoke the junior
  EXPECT_FALSE(active(admin_b_));
  expect_order_independent();
}

TEST_F(OrgFixture, EqualRankAdminsRevokingEachOtherOnlyTheSeniorCounts) {
  OpId ea = enroll(root_, admin_a_, Role::admin);
  OpId eb = enroll(root_, admin_b_, Role::admin);
  auto heads = replica_.heads();
  auto a_revokes_b = revoke_op(admin_a_, admin_b_, heads);
  auto b_revokes_a = revoke_op(admin_b_, admin_a_, heads);
  add(b_revokes_a);
  add(a_revokes_b);
  // Same rank (1): the smaller Enroll id is senior.
  const KeyPair& senior = ea < eb ? admin_a_ : admin_b_;
  const KeyPair& junior = ea < eb ? admin_b_ : admin_a_;
  EXPECT_TRUE(active(senior));
  EXPECT_FALSE(active(junior));
  expect_order_independent();
}

TEST_F(OrgFixture, NobodyRevokesTheRoot) {
  enroll(root_, admin_a_, Role::admin);
  revoke(admin_a_, root_);
  revoke(root_, root_);
  EXPECT_TRUE(active(root_));
  enroll(root_, alice_);
  EXPECT_TRUE(active(alice_));
  expect_order_independent();
}

TEST_F(OrgFixture, RevocationIsPermanentReEnrollingHasNoEffect) {
  enroll(root_, alice_);
  revoke(root_, alice_);
  enroll(root_, alice_);
  EXPECT_EQ(standing(alice_), Standing::revoked);
  // Nor as an admin, by any admin junior to the revoker.
  enroll(root_, admin_a_, Role::admin);
  enroll(admin_a_, admin_b_, Role::admin);
  enroll(admin_a_, bob_);
  revoke(admin_a_, bob_);
  enroll(admin_b_, bob_, Role::admin);
  EXPECT_EQ(standing(bob_), Standing::revoked);
  enroll(bob_, carol_);  // and it cannot act as one
  EXPECT_FALSE(active(carol_));
  expect_order_independent();
}

// The other side of deciding in seniority order (docs/crdt.md "Promotions
// after a Revoke"): a promotion ranking a key above the admin who revoked it
// is decided before that admin, so it stands, and the Revoke then names an
// admin senior to its author (rule 4). `fortmesh enroll` refuses to sign one.
TEST_F(OrgFixture, APromotionAboveTheRevokerOverrulesAJuniorsRevoke) {
  enroll(root_, admin_a_, Role::admin);
  enroll(admin_a_, admin_b_, Role::admin);  // rank 2
  enroll(admin_b_, bob_);
  OpId r = revoke(admin_b_, bob_);
  EXPECT_EQ(standing(bob_), Standing::revoked);
  enroll(root_, bob_, Role::admin);  // rank 1
  EXPECT_EQ(standing(bob_), Standing::active);
  EXPECT_FALSE(replica_.is_valid(r));
  enroll(bob_, carol_);
  EXPECT_TRUE(active(carol_));
  expect_order_independent();
}

TEST_F(OrgFixture, AnyMemberMayRevokeItselfButNotOthers) {
  enroll(root_, alice_);
  enroll(root_, bob_);
  inadmissible(revoke_op(alice_, bob_, replica_.heads()));
  EXPECT_TRUE(active(bob_));
  revoke(alice_, alice_);
  EXPECT_EQ(standing(alice_), Standing::revoked);
  expect_order_independent();
}

TEST_F(OrgFixture, AdminSelfRevocationCutsOffItsConcurrentOps) {
  OpId a = enroll(root_, admin_a_, Role::admin);
  auto concurrent = enroll_op(admin_a_, alice_, Role::member, {a});
  revoke(admin_a_, admin_a_, std::vector<OpId>{a});
  add(concurrent);
  EXPECT_FALSE(active(alice_));
  EXPECT_FALSE(active(admin_a_));
  expect_order_independent();
}

TEST_F(OrgFixture, ExpiryMakesAMemberInactiveAndReEnrollingRenews) {
  enroll(root_, alice_, Role::member, std::nullopt, kNow + 100);
  EXPECT_TRUE(active(alice_, kNow + 99));
  EXPECT_FALSE(active(alice_, kNow + 100));
  EXPECT_EQ(replica_.member(alice_.public_key, kNow + 100)->standing, Standing::expired);
  enroll(root_, alice_, Role::member, std::nullopt, kNow + 500);
  EXPECT_TRUE(active(alice_, kNow + 499));
  EXPECT_EQ(replica_.member(alice_.public_key, kNow)->expires_at, kNow + 500);
  enroll(root_, bob_, Role::member, std::nullopt, kNow + 10);
  enroll(root_, bob_, Role::member, std::nullopt, 0);  // one Enroll without expiry
  EXPECT_TRUE(active(bob_, kNow + 1'000'000));
  EXPECT_NE(replica_.digest(kNow), replica_.digest(kNow + 500));  // alice expired
  expect_order_independent();
}

TEST_F(OrgFixture, LighthouseEndpointsComeFromItsMostRecentEnroll) {
  auto lh = test_key(30);
  add(make_enroll(root_, org(), replica_.heads(),
                  EnrollSpec{lh.public_key, "lh1", Role::lighthouse, {"198.51.100.1:51820"}, 0}, kNow));
  add(make_enroll(root_, org(), replica_.heads(),
                  EnrollSpec{lh.public_key, "lh1", Role::lighthouse, {"lh.example.net:51820", "[2001:db8::1]:51820"}, 0},
                  kNow));
  auto m = replica_.member(lh.public_key, kNow);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->role, Role::lighthouse);
  EXPECT_EQ(m->endpoints, (std::vector<std::string>{"lh.example.net:51820", "[2001:db8::1]:51820"}));
  expect_order_independent();
}

TEST_F(OrgFixture, AddressCollisionGoesToTheSmallerEnrollId) {
  std::vector<Member> ms(3);
  ms[0].key = alice_.public_key;
  ms[1].key = bob_.public_key;
  ms[2].key = carol_.public_key;
  ms[0].address = ms[1].address = ms[2].address = netauth::Address{0xfd, 1};
  ms[2].standing = Standing::revoked;  // not a contender
  OpId small{}, big{};
  small[0] = 1;
  big[0] = 2;
  detail::mark_address_conflicts(ms, {big, small, OpId{}});
  EXPECT_TRUE(ms[0].address_conflict);
  EXPECT_FALSE(ms[1].address_conflict);
  EXPECT_FALSE(ms[2].address_conflict);
}

TEST_F(OrgFixture, SubjectThatIsNotAnEd25519PointNeverBecomesAPeer) {
  netauth::KeyPair bad = alice_;
  bad.public_key.fill(0);
  bad.public_key[0] = 2;  // y = 2 is not on the curve
  ASSERT_FALSE(netauth::wg_public_key(bad.public_key).is_ok());
  enroll(root_, bad);
  auto m = replica_.member(bad.public_key, kNow);
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->no_wireguard_key);
  EXPECT_FALSE(replica_.member(root_.public_key, kNow)->no_wireguard_key);
  expect_order_independent();
}

TEST_F(OrgFixture, ForgedSignatureIsRejectedAndCounted) {
  auto op = enroll_op(root_, alice_, Role::member, replica_.heads());
  fortmesh::wire::SignedOp signed_op;
  ASSERT_TRUE(signed_op.ParseFromString(op));
  std::string sig = signed_op.signature();
  sig[5] ^= 1;
  signed_op.set_signature(sig);
  auto digest = replica_.digest(kNow);
  auto res = replica_.ingest(bytes_of(signed_op.SerializeAsString()));
  EXPECT_EQ(res.outcome, Ingest::rejected);
  EXPECT_EQ(res.reject, Reject::bad_signature);
  EXPECT_EQ(replica_.reject_counts()[static_cast<size_t>(Reject::bad_signature)], 1u);
  EXPECT_FALSE(active(alice_));
  EXPECT_EQ(replica_.digest(kNow), digest);
  // Signed by someone other than the author it names.
  fortmesh::wire::SignedOp other;
  other.ParseFromString(enroll_op(stranger_, alice_, Role::member, replica_.heads()));
  signed_op.set_signature(other.signature());
  EXPECT_EQ(replica_.ingest(bytes_of(signed_op.SerializeAsString())).reject, Reject::bad_signature);
}

TEST_F(OrgFixture, OpOfAnotherOrgIsRejected) {
  OpId other_org{};
  other_org[0] = 7;
  auto op = make_enroll(root_, other_org, replica_.heads(),
                        EnrollSpec{alice_.public_key, "a", Role::member, {}, 0}, kNow);
  EXPECT_EQ(replica_.ingest(bytes_of(op)).reject, Reject::wrong_org);
  EXPECT_FALSE(active(alice_));
  // A replica bound to an org refuses another org's Genesis too.
  Replica bound(genesis_);
  auto foreign = make_genesis(test_key(2), "other", prefix_, kNow);
  EXPECT_EQ(bound.ingest(bytes_of(foreign)).reject, Reject::wrong_org);
  EXPECT_FALSE(bound.has_org());
}

TEST_F(OrgFixture, SecondGenesisIsRejected) {
  auto again = make_genesis(stranger_, "acme", prefix_, kNow);
  auto res = replica_.ingest(bytes_of(again));
  EXPECT_EQ(res.reject, Reject::second_genesis);
  EXPECT_EQ(replica_.org().root, root_.public_key);
  EXPECT_EQ(replica_.ingest(bytes_of(ops_.front())).outcome, Ingest::duplicate);
}

TEST_F(OrgFixture, OversizedOpsAreRejected) {
  auto heads = replica_.heads();
  EnrollSpec long_name{alice_.public_key, std::string(65, 'x'), Role::member, {}, 0};
  EXPECT_EQ(replica_.ingest(bytes_of(make_enroll(root_, org(), heads, long_name, kNow))).reject,
            Reject::oversized);
  std::vector<OpId> parents(17);
  for (size_t i = 0; i < parents.size(); ++i) parents[i][0] = static_cast<uint8_t>(i + 1);
  EXPECT_EQ(replica_.ingest(bytes_of(enroll_op(root_, alice_, Role::member, parents))).reject,
            Reject::oversized);
  EnrollSpec big{alice_.public_key, "a", Role::lighthouse, {}, 0};
  for (int i = 0; i < 5; ++i) big.endpoints.push_back(std::string(240, 'a') + ".example:1");
  EXPECT_EQ(replica_.ingest(bytes_of(make_enroll(root_, org(), heads, big, kNow))).reject,
            Reject::oversized);
  std::string huge(100'000, 'x');
  EXPECT_EQ(replica_.ingest(bytes_of(huge)).reject, Reject::oversized);
  EXPECT_FALSE(active(alice_));
  EXPECT_EQ(replica_.op_count(), 1u);
}

TEST_F(OrgFixture, MalformedBytesAreRejected) {
  for (std::string junk : {std::string(), std::string("\xff\xff\xff"), std::string(300, '\x0a')}) {
    auto res = replica_.ingest(bytes_of(junk));
    EXPECT_EQ(res.outcome, Ingest::rejected);
  }
  // Endpoints only on lighthouses, and well formed.
  auto with_ep = make_enroll(root_, org(), replica_.heads(),
                             EnrollSpec{alice_.public_key, "a", Role::member, {"1.2.3.4:5"}, 0}, kNow);
  EXPECT_EQ(replica_.ingest(bytes_of(with_ep)).reject, Reject::malformed);
  auto bad_ep = make_enroll(root_, org(), replica_.heads(),
                            EnrollSpec{alice_.public_key, "a", Role::lighthouse, {"1.2.3.4:0"}, 0}, kNow);
  EXPECT_EQ(replica_.ingest(bytes_of(bad_ep)).reject, Reject::malformed);
  auto ctrl = make_enroll(root_, org(), replica_.heads(),
                          EnrollSpec{alice_.public_key, "a\x1b[2J", Role::member, {}, 0}, kNow);
  EXPECT_EQ(replica_.ingest(bytes_of(ctrl)).reject, Reject::malformed);
  EXPECT_EQ(replica_.op_count(), 1u);
}

TEST_F(OrgFixture, OpWhoseParentsArriveLaterWaitsThenApplies) {
  auto e1 = enroll_op(root_, admin_a_, Role::admin, replica_.heads());
  Op p1;
  parse_op(bytes_of(e1), &p1);
  auto e2 = enroll_op(admin_a_, alice_, Role::member, {p1.id});
  Op p2;
  parse_op(bytes_of(e2), &p2);
  auto e3 = enroll_op(admin_a_, bob_, Role::member, {p2.id});

  auto r3 = replica_.ingest(bytes_of(e3));
  EXPECT_EQ(r3.outcome, Ingest::pending);
  EXPECT_EQ(r3.missing, std::vector<OpId>{p2.id});
  auto r2 = replica_.ingest(bytes_of(e2));
  EXPECT_EQ(r2.outcome, Ingest::pending);
  EXPECT_EQ(r2.missing, std::vector<OpId>{p1.id});
  EXPECT_EQ(replica_.missing_parents(), std::vector<OpId>{p1.id});
  EXPECT_EQ(replica_.ingest(bytes_of(e3)).outcome, Ingest::duplicate);
  EXPECT_FALSE(active(alice_));

  auto r1 = replica_.ingest(bytes_of(e1));
  EXPECT_EQ(r1.outcome, Ingest::applied);
  EXPECT_EQ(r1.applied.size(), 3u);
  EXPECT_EQ(r1.applied.front(), p1.id);
  EXPECT_TRUE(active(alice_));
  EXPECT_TRUE(active(bob_));
  EXPECT_EQ(replica_.pending_count(), 0u);
  EXPECT_TRUE(replica_.missing_parents().empty());
}

TEST_F(OrgFixture, PendingBufferIsBounded) {
  Replica small(genesis_, ReplicaLimits{.max_pending_ops = 2, .max_pending_bytes = 1 << 20});
  std::vector<std::string> orphans;
  for (int i = 0; i < 3; ++i) {
    OpId unknown{};
    unknown[0] = static_cast<uint8_t>(i + 1);
    orphans.push_back(enroll_op(root_, test_key(static_cast<uint8_t>(40 + i)), Role::member, {unknown}));
  }
  EXPECT_EQ(small.ingest(bytes_of(orphans[0])).outcome, Ingest::pending);
  EXPECT_EQ(small.ingest(bytes_of(orphans[1])).outcome, Ingest::pending);
  EXPECT_EQ(small.ingest(bytes_of(orphans[2])).reject, Reject::pending_full);
  EXPECT_EQ(small.pending_count(), 2u);
  // Unsigned junk never takes a place in the buffer.
  auto forged = orphans[2];
  forged[forged.size() - 3] ^= 1;  // a signature byte
  EXPECT_EQ(small.ingest(bytes_of(forged)).reject, Reject::bad_signature);
  EXPECT_EQ(small.pending_count(), 2u);
}

TEST_F(OrgFixture, UnjoinedReplicaWithoutOrgRefusesOps) {
  Replica blank;
  auto op = enroll_op(root_, alice_, Role::member, replica_.heads());
  EXPECT_EQ(blank.ingest(bytes_of(op)).reject, Reject::no_org);
  EXPECT_EQ(blank.ingest(bytes_of(ops_.front())).outcome, Ingest::applied);
  EXPECT_EQ(blank.ingest(bytes_of(op)).outcome, Ingest::applied);
}

TEST_F(OrgFixture, OpsExtendingTheHeadsAreAppliedWithoutReevaluation) {
  enroll(root_, admin_a_, Role::admin);
  const uint64_t base = replica_.reevaluations();
  for (int i = 0; i < 200; ++i) enroll(admin_a_, test_key(static_cast<uint8_t>(50 + i % 40)));
  revoke(root_, test_key(50));
  revoke(admin_a_, test_key(51));
  enroll(root_, admin_b_, Role::admin);
  enroll(admin_b_, alice_);
  EXPECT_EQ(replica_.reevaluations(), base);
  // Beside history, but touching nothing the new op can affect.
  auto h = replica_.heads();
  auto side1 = enroll_op(admin_a_, bob_, Role::member, h);
  auto side2 = enroll_op(root_, carol_, Role::member, h);
  add(side1);
  add(side2);
  EXPECT_EQ(replica_.reevaluations(), base);
  EXPECT_TRUE(active(bob_));
  EXPECT_TRUE(active(carol_));
  expect_order_independent();
}

TEST_F(OrgFixture, LoadVerifiedRebuildsTheSameStateAndRefusesADamagedStore) {
  enroll(root_, admin_a_, Role::admin);
  enroll(admin_a_, alice_);
  revoke(root_, admin_a_);
  Replica reloaded;
  ASSERT_TRUE(reloaded.load_verified(ops_).is_ok());
  EXPECT_EQ(reloaded.digest(kNow), replica_.digest(kNow));
  EXPECT_EQ(reloaded.heads(), replica_.heads());
  EXPECT_EQ(reloaded.members(kNow).size(), replica_.members(kNow).size());
  std::vector<std::string> missing_parent(ops_.begin() + 2, ops_.end());
  missing_parent.insert(missing_parent.begin(), ops_.front());
  Replica damaged;
  EXPECT_FALSE(damaged.load_verified(missing_parent).is_ok());
  EXPECT_FALSE(damaged.has_org());
}

// ---- The adversarial review (issue 14), on OrgBuilder ---------------------

using test::OrgBuilder;

size_t rejected(const Replica& r, Reject why) { return r.reject_counts()[static_cast<size_t>(why)]; }

// Every replica that gets `ops` in any order (and a reload) shows the state
// of `org`'s reference replica.
void expect_same_state_in_any_order(const OrgBuilder& org, unsigned seed = 1) {
  const auto want = org.replica().members(kNow + 50);
  const auto want_digest = org.replica().digest(kNow);
  auto same = [&](const Replica& r, const std::string& how) {
    EXPECT_EQ(r.heads(), org.replica().heads()) << how;
    EXPECT_EQ(r.digest(kNow), want_digest) << how;
    auto got = r.members(kNow + 50);
    ASSERT_EQ(got.size(), want.size()) << how;
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].key, want[i].key) << how;
      EXPECT_EQ(got[i].role, want[i].role) << how;
      EXPECT_EQ(got[i].standing, want[i].standing) << how;
      EXPECT_EQ(got[i].expires_at, want[i].expires_at) << how;
    }
  };
  same(org.reloaded(), "load_verified");
  std::mt19937 rng(seed);
  for (int round = 0; round < 4; ++round) {
    auto shuffled = org.ops();
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    Replica r(org.org());
    for (const auto& op : shuffled) r.ingest(bytes_of(op));
    EXPECT_EQ(r.pending_count(), 0u);
    same(r, "delivery order " + std::to_string(round));
  }
}

// What gossip needs to push wide only valid Revokes (docs/gossip.md).
TEST(IsValid, ReportsAStoredOpsValidityAsItStandsNow) {
  OrgBuilder org;
  const auto admin = test_key(10), alice = test_key(20), bob = test_key(21);
  const OpId ea = org.admin(org.root(), admin);
  const OpId enroll_alice = org.enroll(admin, alice);
  EXPECT_TRUE(org.replica().is_valid(ea));
  EXPECT_TRUE(org.replica().is_valid(enroll_alice));
  EXPECT_TRUE(org.replica().is_valid(org.org()));
  // Revoked, the admin's concurrent op loses its validity when the Revoke lands.
  const auto concurrent = org.enroll_op(admin, bob.public_key, Role::member, 0, std::vector<OpId>{enroll_alice});
  const auto revoke = org.revoke_op(org.root(), admin.public_key, std::vector<OpId>{enroll_alice});
  const OpId eb = org.apply(concurrent);
  EXPECT_TRUE(org.replica().is_valid(eb));
  const OpId r = org.apply(revoke);
  EXPECT_TRUE(org.replica().is_valid(r));
  EXPECT_FALSE(org.replica().is_valid(eb));
  EXPECT_TRUE(org.replica().is_valid(enroll_alice));  // the Revoke saw it
  // Stored but invalid: the revoked admin's later Revoke.
  const OpId late = org.revoke(admin, alice);
  EXPECT_TRUE(org.replica().contains(late));
  EXPECT_FALSE(org.replica().is_valid(late));
  // Not stored.
  OpId unknown{};
  unknown[0] = 1;
  EXPECT_FALSE(org.replica().is_valid(unknown));
  EXPECT_TRUE(org.reloaded().is_valid(r));
  EXPECT_FALSE(org.reloaded().is_valid(eb));
}

TEST(Admission, AnOpWhoseAuthorHasNoStandingInItsPastIsRejectedAndNeverStored) {
  OrgBuilder org;
  const auto admin = test_key(10), member = test_key(20), stranger = test_key(99), other = test_key(21);
  const OpId g = org.org();
  const OpId ea = org.admin(org.root(), admin);
  org.enroll(admin, member);
  const auto heads = org.replica().heads();
  const size_t ops = org.replica().op_count();
  struct Case {
    const char* what;
    std::string op;
  };
  const Case refused[] = {
      {"a stranger's Enroll of itself as admin", org.enroll_op(stranger, stranger.public_key, Role::admin)},
      {"a stranger's Revoke of the root", org.revoke_op(stranger, org.root().public_key)},
      {"a stranger's self-Revoke", org.revoke_op(stranger, stranger.public_key)},
      {"a member's Enroll", org.enroll_op(member, other.public_key)},
      {"a member's Revoke of another key", org.revoke_op(member, other.public_key)},
      {"an admin's Enroll beside its own admin Enroll", org.enroll_op(admin, other.public_key, Role::member, 0, std::vector<OpId>{g})},
      {"a member's self-Revoke beside its Enroll", org.revoke_op(member, member.public_key, std::vector<OpId>{ea})},
  };
  for (const auto& c : refused) {
    auto res = org.add(c.op);
    EXPECT_EQ(res.outcome, Ingest::rejected) << c.what;
    EXPECT_EQ(res.reject, Reject::inadmissible) << c.what;
  }
  EXPECT_EQ(rejected(org.replica(), Reject::inadmissible), std::size(refused));
  EXPECT_EQ(org.replica().op_count(), ops);
  EXPECT_EQ(org.replica().heads(), heads);
  // Standing is structural: a revoked admin's op and a member's self-Revoke on
  // top of its Enroll are admitted (and decided invalid or valid later).
  org.revoke(org.root(), admin);
  org.enroll(admin, other);
  EXPECT_FALSE(org.replica().is_active_member(other.public_key, kNow));
  org.revoke(member, member);
  EXPECT_EQ(org.replica().member(member.public_key, kNow)->standing, Standing::revoked);
  expect_same_state_in_any_order(org);
}

TEST(Admission, RunsBeforeTheSignatureCheck) {
  OrgBuilder org;
  auto op = org.enroll_op(test_key(99), test_key(99).public_key, Role::admin);
  op[op.size() - 3] ^= 1;  // a signature byte
  EXPECT_EQ(org.add(op).reject, Reject::inadmissible);
  EXPECT_EQ(rejected(org.replica(), Reject::bad_signature), 0u);
}

TEST(Admission, AnInadmissibleOpIsNeverAParentItsWaitingChildrenAreDropped) {
  OrgBuilder org;
  const auto stranger = test_key(99);
  const auto bad = org.enroll_op(stranger, stranger.public_key, Role::admin);
  const OpId bad_id = OrgBuilder::id_of(bad);
  // The root's op on top of it: admissible by itself, but its parent never will be.
  const auto child = org.enroll_op(org.root(), test_key(20).public_key, Role::member, 0,
                                   std::vector<OpId>{org.org(), bad_id});
  const auto grandchild = org.enroll_op(org.root(), test_key(21).public_key, Role::member, 0,
                                        std::vector<OpId>{OrgBuilder::id_of(child)});
  EXPECT_EQ(org.add(grandchild).outcome, Ingest::pending);
  EXPECT_EQ(org.add(child).outcome, Ingest::pending);
  EXPECT_EQ(org.replica().pending_count(), 2u);
  auto res = org.add(bad);
  EXPECT_EQ(res.outcome, Ingest::rejected);
  EXPECT_EQ(res.reject, Reject::inadmissible);
  EXPECT_TRUE(res.applied.empty());
  EXPECT_EQ(org.replica().pending_count(), 0u);
  EXPECT_TRUE(org.replica().missing_parents().empty());
  EXPECT_EQ(rejected(org.replica(), Reject::inadmissible), 3u);
  EXPECT_EQ(org.replica().op_count(), 1u);
  // Sent again after it: refused at once, not kept waiting for a parent that
  // will never be stored.
  EXPECT_EQ(org.add(child).reject, Reject::inadmissible);
  EXPECT_EQ(org.replica().pending_count(), 0u);
}

TEST(Admission, LoadVerifiedAndTryApplyAdmitTheSameOps) {
  OrgBuilder org;
  const auto admin = test_key(10), stranger = test_key(99);
  org.admin(org.root(), admin);
  org.enroll(admin, test_key(20));
  // A store written before admission existed may hold a stranger's op and
  // ops on top of it.
  auto stored = org.ops();
  const auto bad = org.enroll_op(stranger, stranger.public_key, Role::admin);
  const auto on_bad = org.enroll_op(org.root(), test_key(21).public_key, Role::member, 0,
                                    std::vector<OpId>{OrgBuilder::id_of(bad)});
  stored.push_back(bad);
  stored.push_back(on_bad);
  Replica reloaded;
  ASSERT_TRUE(reloaded.load_verified(stored).is_ok());
  EXPECT_EQ(reloaded.op_count(), org.replica().op_count());
  EXPECT_EQ(reloaded.heads(), org.replica().heads());
  EXPECT_EQ(reloaded.digest(kNow), org.replica().digest(kNow));
  EXPECT_EQ(rejected(reloaded, Reject::inadmissible), 2u);
  // A trial refuses it too, and changes nothing.
  const auto digest = org.replica().digest(kNow);
  const auto good = org.enroll_op(admin, test_key(22).public_key);
  std::vector<std::string> batch{good, bad};
  auto trial = org.replica().try_apply(batch);
  ASSERT_FALSE(trial.is_ok());
  EXPECT_NE(trial.message().find("inadmissible"), std::string::npos) << trial.message();
  EXPECT_EQ(org.replica().digest(kNow), digest);
  EXPECT_FALSE(org.replica().contains(OrgBuilder::id_of(good)));
  {
    std::vector<std::string> one{good};
    auto ok = org.replica().try_apply(one);
    ASSERT_TRUE(ok.is_ok());
    EXPECT_TRUE(org.replica().is_active_member(test_key(22).public_key, kNow));
  }  // undone
  EXPECT_FALSE(org.replica().contains(OrgBuilder::id_of(good)));
}

TEST(Admission, AFloodOfStrangersOpsLeavesNoHeadsAndNoState) {
  OrgBuilder org;
  org.admin(org.root(), test_key(10));
  for (int i = 0; i < 20; ++i) org.enroll(test_key(10), test_key(static_cast<uint8_t>(30 + i)));
  const auto heads = org.replica().heads();
  const auto reevaluations = org.replica().reevaluations();
  const auto ids = org.replica().all_ops();
  std::mt19937 rng(7);
  for (uint32_t i = 0; i < 2000; ++i) {
    const auto k = test::test_key(static_cast<uint8_t>(100 + i % 150));
    const std::vector<OpId> parents{ids[rng() % ids.size()]};
    org.add(i % 2 ? org.enroll_op(k, k.public_key, Role::admin, 0, parents)
                  : org.revoke_op(k, org.root().public_key, parents));
  }
  EXPECT_EQ(org.replica().heads(), heads);
  EXPECT_EQ(org.replica().op_count(), ids.size());
  EXPECT_EQ(org.replica().reevaluations(), reevaluations);
  EXPECT_EQ(rejected(org.replica(), Reject::inadmissible), 2000u);
}

TEST(Reevaluation, InvalidOpsNeverCauseOne) {
  OrgBuilder org;
  const auto admin = test_key(10), revoked = test_key(11);
  org.admin(org.root(), admin);
  org.admin(org.root(), revoked);
  for (int i = 0; i < 10; ++i) org.enroll(admin, test_key(static_cast<uint8_t>(30 + i)));
  org.revoke(org.root(), revoked);
  const uint64_t base = org.replica().reevaluations();
  // Never-enrolled keys: [Revoke(root), Enroll(itself as admin)].
  for (uint8_t i = 0; i < 50; ++i) {
    const auto k = test_key(static_cast<uint8_t>(100 + i));
    const auto r = org.revoke_op(k, org.root().public_key);
    org.add(r);
    org.add(org.enroll_op(k, k.public_key, Role::admin, 0, std::vector<OpId>{OrgBuilder::id_of(r)}));
  }
  EXPECT_EQ(org.replica().reevaluations(), base);
  // Admitted but invalid: a revoked admin enrolls admins, they revoke and
  // enroll, and revoke the admin and the root.
  for (uint8_t i = 0; i < 20; ++i) {
    const auto k = test_key(static_cast<uint8_t>(160 + i));
    const OpId e = org.admin(revoked, k);
    org.revoke(k, admin, std::vector<OpId>{e});
    org.revoke(k, org.root(), std::vector<OpId>{e});
    org.admin(k, test_key(static_cast<uint8_t>(200 + i)), 0, std::vector<OpId>{e});
    org.admin(revoked, test_key(static_cast<uint8_t>(200 + i)));
  }
  EXPECT_EQ(org.replica().reevaluations(), base);
  EXPECT_TRUE(org.replica().is_active_member(admin.public_key, kNow));
  expect_same_state_in_any_order(org);
}

TEST(InvalidOpsAreInert, AnInvalidRevokeBlocksNoPromotion) {
  // The review's case: a stranger's self-Enroll as admin and its Revoke of T.
  OrgBuilder org;
  const auto stranger = test_key(99), t = test_key(10), alice = test_key(20), bob = test_key(21);
  const auto self_enroll = org.enroll_op(stranger, stranger.public_key, Role::admin);
  org.add(self_enroll);
  org.add(org.revoke_op(stranger, t.public_key, std::vector<OpId>{OrgBuilder::id_of(self_enroll)}));
  org.admin(org.root(), t);
  org.enroll(t, alice);
  EXPECT_TRUE(org.replica().is_active_member(alice.public_key, kNow)) << "t is an admin whose ops are all invalid";
  // The same through admitted ops: a revoked admin's (invalid) admin Enroll
  // of k, and k's (invalid) Revoke of t2 before t2's promotion.
  const auto revoked = test_key(11), k = test_key(12), t2 = test_key(13);
  org.admin(org.root(), revoked);
  org.revoke(org.root(), revoked);
  const OpId ek = org.admin(revoked, k);
  org.revoke(k, t2, std::vector<OpId>{ek});
  org.enroll(org.root(), t2);
  org.admin(org.root(), t2);
  org.enroll(t2, bob);
  EXPECT_TRUE(org.replica().is_active_member(bob.public_key, kNow));
  EXPECT_EQ(org.replica().member(t2.public_key, kNow)->standing, Standing::active);
  expect_same_state_in_any_order(org);
}

// A promotion that saw a valid Revoke of its subject by a key senior to the
// rank it offers grants no rank: re-enrolling a revoked key does not change
// what its earlier ops may do. The same with an invalid Revoke: it blocks
// nothing.
TEST(InvalidOpsAreInert, OnlyAValidRevokeBlocksAPromotion) {
  for (const bool valid_revoke : {true, false}) {
    SCOPED_TRACE(valid_revoke ? "a valid Revoke" : "an invalid Revoke");
    OrgBuilder org;
    const auto bob = test_key(20), z = test_key(21), gone = test_key(13);
    // Rank 1 admins, seniority by Enroll id: z before bob.
    const OpId ez = org.admin(org.root(), z);
    std::string e1 = org.enroll_op(org.root(), bob.public_key, Role::admin);
    while (!(ez < OrgBuilder::id_of(e1))) e1 = org.enroll_op(org.root(), bob.public_key, Role::admin);
    org.apply(e1);
    const OpId bob_revokes_z = org.revoke(bob, z);  // refused: z is senior (rule 4)
    EXPECT_FALSE(org.replica().is_valid(bob_revokes_z));
    if (valid_revoke) {
      org.revoke(org.root(), bob);
    } else {
      org.admin(org.root(), gone);
      org.revoke(org.root(), gone);
      org.revoke(gone, bob);  // after its own revocation: invalid
    }
    // The root enrolls bob again, with an id that would rank it before z.
    std::string e2 = org.enroll_op(org.root(), bob.public_key, Role::admin);
    while (!(OrgBuilder::id_of(e2) < ez)) e2 = org.enroll_op(org.root(), bob.public_key, Role::admin);
    org.apply(e2);
    EXPECT_EQ(org.replica().is_valid(bob_revokes_z), !valid_revoke);
    EXPECT_EQ(org.replica().member(z.public_key, kNow)->standing, valid_revoke ? Standing::active : Standing::revoked);
    EXPECT_EQ(org.replica().member(bob.public_key, kNow)->standing, valid_revoke ? Standing::revoked : Standing::active);
    expect_same_state_in_any_order(org);
  }
}

TEST(PendingFairness, AFullBufferEvictsFromTheSourceHoldingTheMost) {
  // Four sources fill the buffer; an honest Revoke from a fifth still waits
  // for its parent and applies when it comes.
  OrgBuilder org;
  const auto alice = test_key(20);
  const OpId ea = OrgBuilder::id_of(org.enroll_op(org.root(), alice.public_key));
  const auto enroll_alice = org.enroll_op(org.root(), alice.public_key, Role::member, 0, std::vector<OpId>{org.org()});
  const OpId ea_id = OrgBuilder::id_of(enroll_alice);
  (void)ea;
  Replica r(org.org(), ReplicaLimits{.max_pending_ops = 8, .max_pending_bytes = 1 << 20, .max_pending_per_source = 2});
  ASSERT_EQ(r.ingest(bytes_of(org.ops().front())).outcome, Ingest::applied);
  for (uint32_t source = 1; source <= 4; ++source) {
    for (int i = 0; i < 2; ++i) {
      OpId unknown{};
      unknown[0] = static_cast<uint8_t>(source);
      unknown[1] = static_cast<uint8_t>(i);
      auto orphan = org.enroll_op(org.root(), test_key(static_cast<uint8_t>(40 + 2 * source + i)).public_key,
                                  Role::member, 0, std::vector<OpId>{unknown});
      ASSERT_EQ(r.ingest(bytes_of(orphan), source).outcome, Ingest::pending);
    }
  }
  EXPECT_EQ(r.pending_count(), 8u);
  const auto revoke_alice = org.revoke_op(org.root(), alice.public_key, std::vector<OpId>{ea_id});
  auto res = r.ingest(bytes_of(revoke_alice), 5);
  EXPECT_EQ(res.outcome, Ingest::pending) << to_string(res.reject);
  EXPECT_EQ(r.pending_count(), 8u);
  // The fifth source now holds its fair share (8 / 5): a second op from it is
  // refused rather than taken from a source within its share.
  OpId unknown{};
  unknown[0] = 0xee;
  auto more = org.enroll_op(org.root(), test_key(90).public_key, Role::member, 0, std::vector<OpId>{unknown});
  EXPECT_EQ(r.ingest(bytes_of(more), 5).reject, Reject::pending_full);
  EXPECT_EQ(r.pending_count(), 8u);
  // The parent arrives: alice is enrolled and revoked.
  auto applied = r.ingest(bytes_of(enroll_alice), 6);
  EXPECT_EQ(applied.applied.size(), 2u);
  EXPECT_EQ(r.member(alice.public_key, kNow)->standing, Standing::revoked);
}

TEST(TermsNest, AnEnrollGrantsNoLongerThanItsAuthorsTerm) {
  OrgBuilder org;
  const auto a = test_key(10), b = test_key(11), m = test_key(20), m2 = test_key(21), lone = test_key(22);
  auto term = [&](const netauth::KeyPair& k) { return org.replica().member(k.public_key, kNow)->expires_at; };
  org.admin(org.root(), a, kNow + 100);
  org.enroll(a, m);               // no expiry of its own: a's term
  org.enroll(a, m2, Role::member, kNow + 50);
  EXPECT_EQ(term(m), kNow + 100);
  EXPECT_EQ(term(m2), kNow + 50);
  EXPECT_TRUE(org.replica().is_active_member(m.public_key, kNow + 99));
  EXPECT_FALSE(org.replica().is_active_member(m.public_key, kNow + 100));
  EXPECT_EQ(org.replica().member(m.public_key, kNow + 100)->standing, Standing::expired);
  // An admin cannot renew itself: an Enroll naming its own author is invalid.
  org.admin(a, a, kNow + 10'000);
  EXPECT_EQ(term(a), kNow + 100);
  // Renewing the admin renews what it granted.
  org.admin(org.root(), a, kNow + 300);
  EXPECT_EQ(term(a), kNow + 300);
  EXPECT_EQ(term(m), kNow + 300);
  // Admins enrolling each other: the widest path from the root.
  org.admin(org.root(), b, kNow + 200);
  org.admin(a, b);  // b: max(200, min(300, never)) = 300
  EXPECT_EQ(term(b), kNow + 300);
  org.admin(b, a);  // a: max(300, min(300, never)) = 300
  EXPECT_EQ(term(a), kNow + 300);
  org.enroll(b, lone);
  EXPECT_EQ(term(lone), kNow + 300);
  // The root's term never ends.
  org.enroll(org.root(), m2);
  EXPECT_EQ(term(m2), 0u);
  EXPECT_EQ(term(org.root()), 0u);
  expect_same_state_in_any_order(org);
}

TEST(TermsNest, ExpiryDoesNotTakeAnAdminsAuthorityToRevoke) {
  OrgBuilder org;
  const auto a = test_key(10), m = test_key(20);
  org.admin(org.root(), a, kNow + 100);
  org.enroll(org.root(), m);
  org.revoke(a, m);  // validity reads no clock: a's term is a value
  EXPECT_EQ(org.replica().member(m.public_key, kNow + 1000)->standing, Standing::revoked);
  EXPECT_EQ(org.replica().member(a.public_key, kNow + 1000)->standing, Standing::expired);
  expect_same_state_in_any_order(org);
}

}  // namespace
}  // namespace fm::crdt
