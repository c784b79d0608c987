// The gossip engine's op index (crdt/op_index.h): it follows the replica, and
// what it finds a peer lacks is exactly what the replica says, from the band
// of the peer's heads up.
#include "crdt/op_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "tests/util/org_builder.h"
#include "tests/util/testutil.h"

namespace fm::crdt {
namespace {

using test::bytes_of;

constexpr uint64_t kUnix = 1'700'000'000;

OpId id_of(const std::string& op) {
  Op o;
  EXPECT_EQ(parse_op(bytes_of(op), &o), Reject::none);
  return o.id;
}

// A DAG with branches: each op's parents are some of the current heads, and
// now and then an old op (a branch that stayed behind, merged much later).
struct Dag {
  explicit Dag(size_t n, uint64_t seed) : rng(seed) {
    root = test::test_key(1);
    ops.push_back(make_genesis(root, "idx", netauth::ula_prefix({1, 2, 3, 4, 5}), kUnix));
    org = id_of(ops[0]);
    ids.push_back(org);
    std::vector<OpId> heads{org};
    for (size_t i = 1; i < n; ++i) {
      std::vector<OpId> parents;
      const auto roll = rng() % 10;
      if (roll < 6 || heads.size() == 1) {
        parents.push_back(heads[rng() % heads.size()]);  // one head: a branch goes on
      } else if (roll < 9) {
        parents = heads;  // a merge of everything
        if (parents.size() > kMaxParents) parents.resize(kMaxParents);
      } else {
        parents.push_back(ids[rng() % ids.size()]);  // off an old op
      }
      std::sort(parents.begin(), parents.end());
      parents.erase(std::unique(parents.begin(), parents.end()), parents.end());
      ops.push_back(make_enroll(root, org, parents,
                                EnrollSpec{test::test_key(2).public_key, "r" + std::to_string(i), Role::member, {}, 0},
                                kUnix));
      const OpId id = id_of(ops.back());
      ids.push_back(id);
      std::erase_if(heads, [&](const OpId& h) { return std::find(parents.begin(), parents.end(), h) != parents.end(); });
      heads.push_back(id);
      children_of[id];
      for (const auto& p : parents) children_of[p].push_back(id);
    }
  }
  Replica replica(size_t upto = SIZE_MAX) const {
    Replica r(org);
    std::vector<std::string> some(ops.begin(), ops.begin() + static_cast<ptrdiff_t>(std::min(upto, ops.size())));
    EXPECT_TRUE(r.load_verified(some).is_ok());
    return r;
  }
  // A replica that lacks `cut` and everything above it.
  std::set<OpId> without(const std::vector<OpId>& cut) const {
    std::set<OpId> gone;
    std::vector<OpId> stack = cut;
    while (!stack.empty()) {
      const OpId id = stack.back();
      stack.pop_back();
      if (!gone.insert(id).second) continue;
      for (const auto& c : children_of.at(id)) stack.push_back(c);
    }
    return gone;
  }
  // The heads of what is left when `gone` goes.
  std::vector<OpId> heads_without(const std::set<OpId>& gone) const {
    std::vector<OpId> out;
    for (const auto& id : ids) {
      if (gone.count(id)) continue;
      const auto& cs = children_of.at(id);
      if (std::all_of(cs.begin(), cs.end(), [&](const OpId& c) { return gone.count(c) > 0; })) out.push_back(id);
    }
    return out;
  }
  std::mt19937_64 rng;
  netauth::KeyPair root;
  std::vector<std::string> ops;
  std::vector<OpId> ids;
  std::map<OpId, std::vector<OpId>> children_of;
  OpId org{};
};

// At most `n` ops in a batch.
OpIndex::Limits up_to(size_t n, size_t count_to = SIZE_MAX) {
  OpIndex::Limits l;
  l.cost = [](const OpId&) { return size_t{1}; };
  l.max_bytes = n;
  l.count_to = count_to;
  return l;
}

TEST(OpIndexTest, ParentsAreReadStraightFromTheEncoding) {
  Dag dag(200, 1);
  for (const auto& w : dag.ops) {
    Op op;
    ASSERT_EQ(parse_op(bytes_of(w), &op), Reject::none);
    std::vector<OpId> ps;
    ASSERT_TRUE(parents_of(w, &ps));
    EXPECT_EQ(ps, op.parents);
  }
  std::vector<OpId> ps;
  EXPECT_FALSE(parents_of(std::string("\x0a\xff"), &ps));  // a length past the end
  EXPECT_FALSE(parents_of(std::string("\x0b"), &ps));       // a group: not ours
}

TEST(OpIndexTest, TheSetFollowsTheReplicaAsOpsAreNoted) {
  Dag dag(300, 2);
  Replica r = dag.replica(150);
  OpIndex index(&r);
  ASSERT_EQ(index.set().size(), 150u);  // built from the replica
  for (size_t i = 150; i < dag.ops.size(); i += 7) {
    std::vector<OpId> applied;
    for (size_t j = i; j < std::min(i + 7, dag.ops.size()); ++j) {
      auto res = r.ingest(bytes_of(dag.ops[j]));
      ASSERT_EQ(res.outcome, Ingest::applied);
      applied.insert(applied.end(), res.applied.begin(), res.applied.end());
    }
    const auto noted = index.note_applied(applied);
    ASSERT_EQ(noted.size(), applied.size());
    EXPECT_EQ(noted[0].kind, OpKind::enroll);
    EXPECT_EQ(noted[0].author, dag.root.public_key);
    EXPECT_EQ(noted[0].subject, test::test_key(2).public_key);
  }
  const SyncSet fresh(r.sync_items());
  ASSERT_EQ(index.set().size(), fresh.size());
  EXPECT_TRUE(std::equal(index.set().items().begin(), index.set().items().end(), fresh.items().begin()));
  // Ops that reach the replica unnoted: the next use rebuilds.
  Replica other = dag.replica(100);
  OpIndex behind(&other);
  ASSERT_EQ(behind.set().size(), 100u);
  for (size_t j = 100; j < 120; ++j) other.ingest(bytes_of(dag.ops[j]));
  EXPECT_EQ(behind.set().size(), 120u);
}

// Against the replica's own answer, on DAGs with branches: from the band up
// the index finds exactly what the peer lacks, parents first, and stops where
// an op hangs on one further down.
TEST(OpIndexTest, WhatAPeerLacksIsExactFromTheBandUp) {
  for (uint64_t seed = 3; seed < 9; ++seed) {
    Dag dag(600, seed);
    Replica r = dag.replica();
    OpIndex index(&r);
    const SyncSet& set = index.set();
    for (int trial = 0; trial < 10; ++trial) {
      std::vector<OpId> cut;
      for (int k = 0; k < 1 + trial % 4; ++k) cut.push_back(dag.ids[300 + dag.rng() % 300]);
      const auto gone = dag.without(cut);
      const auto heads = dag.heads_without(gone);
      const auto expected = r.ops_not_below(heads);
      ASSERT_EQ(std::set<OpId>(expected.begin(), expected.end()), gone);
      const auto got = index.not_below(heads, r.op_count() - gone.size(), nullptr, {});
      // The band's floor: the found ops start there; everything lacking at
      // or above it is found, in (depth, id) order.
      uint64_t shallowest = UINT64_MAX;
      for (const auto& h : heads) shallowest = std::min(shallowest, *set.key_of(h));
      const uint64_t floor = shallowest > OpIndex::kSlackDepth ? shallowest - OpIndex::kSlackDepth : 0;
      std::vector<SyncItem> want;
      for (const auto& id : gone) {
        if (*set.key_of(id) >= floor) want.push_back(SyncItem{*set.key_of(id), id});
      }
      std::sort(want.begin(), want.end());
      // ... up to the first that names a parent under the band, if the peer
      // lacks any op there: which, is not known here.
      const bool lacks_under = want.size() < gone.size();
      std::vector<OpId> want_ids;
      bool deeper = false;
      for (const auto& it : want) {
        std::vector<OpId> ps;
        ASSERT_TRUE(parents_of(*r.op_bytes(it.id), &ps));
        if (lacks_under &&
            std::any_of(ps.begin(), ps.end(), [&](const OpId& p) { return *set.key_of(p) < floor; })) {
          deeper = true;
          break;
        }
        want_ids.push_back(it.id);
      }
      EXPECT_EQ(got.batch, want_ids) << "seed " << seed << " trial " << trial;
      EXPECT_EQ(got.deeper, deeper);
      EXPECT_EQ(got.more, deeper);
      EXPECT_EQ(got.count, want.size());
      // And so the peer can apply every op of the batch as it comes.
      std::set<OpId> has;
      for (const auto& id : dag.ids) {
        if (!gone.count(id)) has.insert(id);
      }
      for (const auto& id : got.batch) {
        std::vector<OpId> ps;
        ASSERT_TRUE(parents_of(*r.op_bytes(id), &ps));
        for (const auto& p : ps) EXPECT_TRUE(has.count(p)) << "seed " << seed << " trial " << trial;
        has.insert(id);
      }
    }
  }
}

// A chain of 300 ops, a branch `b` off op 10, and `m` merging it into the
// chain's head: m names a parent far under any band near the head.
TEST(OpIndexTest, AnOpHangingOnOneFarDownStopsTheBatchUnlessTheCountShowsItHeld) {
  test::OrgBuilder org(test::test_key(1), kUnix, "deep");
  const auto member = test::test_key(2);
  std::vector<OpId> chain{org.org()};
  for (int i = 1; i <= 300; ++i) chain.push_back(org.enroll(org.root(), member));  // each on the last
  const OpId b = org.enroll(org.root(), member, Role::member, 0, std::vector<OpId>{chain[10]});
  std::vector<OpId> both{chain.back(), b};
  std::sort(both.begin(), both.end());
  const OpId m = org.enroll(org.root(), member, Role::member, 0, both);
  Replica r = org.reloaded();
  OpIndex index(&r);
  // The peer lacks b and m: m hangs on b, far under the band at its head,
  // and the peer's count says it lacks one op more than the band shows.
  const std::vector<OpId> at_head{chain.back()};
  const auto lacks_both = index.not_below(at_head, r.op_count() - 2, nullptr, {});
  EXPECT_TRUE(lacks_both.batch.empty());
  EXPECT_TRUE(lacks_both.deeper);
  // It holds b (a head of its own, so far down that the band, at most
  // kMaxBand ops under the deepest head, leaves it out): its count says it
  // lacks only m, so b is there.
  const std::vector<OpId> with_b{chain.back(), b};
  const auto holds_b = index.not_below(with_b, r.op_count() - 1, nullptr, {});
  EXPECT_FALSE(holds_b.deeper);
  EXPECT_EQ(holds_b.batch, std::vector<OpId>{m});
  // A count that does not add up proves nothing.
  for (uint64_t lie : {r.op_count() - 2, r.op_count() + 5}) {
    const auto lied = index.not_below(with_b, lie, nullptr, {});
    EXPECT_TRUE(lied.batch.empty());
    EXPECT_TRUE(lied.deeper);
  }
}

TEST(OpIndexTest, ABatchGoesOnAfterTheOneInFlight) {
  Dag dag(400, 10);
  Replica r = dag.replica();
  OpIndex index(&r);
  const auto gone = dag.without({dag.ids[200]});
  const auto heads = dag.heads_without(gone);
  const auto first = index.not_below(heads, r.op_count() - gone.size(), nullptr, up_to(20, 0));
  ASSERT_EQ(first.batch.size(), 20u);
  EXPECT_TRUE(first.more);
  const auto all = index.not_below(heads, r.op_count() - gone.size(), nullptr, {});
  const auto next = index.not_below(heads, r.op_count() - gone.size(), &first.batch.back(), {});
  EXPECT_TRUE(next.after_lacking);
  ASSERT_EQ(next.batch.size(), all.batch.size() - 20);
  EXPECT_TRUE(std::equal(next.batch.begin(), next.batch.end(), all.batch.begin() + 20));
  EXPECT_EQ(next.count, all.count);  // those in flight still count
  // An `after` the peer is not lacking: from its heads again.
  const auto again = index.not_below(heads, r.op_count() - gone.size(), &heads.front(), {});
  EXPECT_FALSE(again.after_lacking);
  EXPECT_EQ(again.batch, all.batch);
}

TEST(OpIndexTest, WorkStopsAtItsBudgetAndCountingAtItsLimit) {
  Dag dag(2000, 11);
  Replica r = dag.replica();
  OpIndex index(&r);
  const std::vector<OpId> genesis{dag.org};
  // Everything above the Genesis is lacking; a batch of 10 is asked for.
  const auto few = index.not_below(genesis, 1, nullptr, up_to(10, 256));
  EXPECT_EQ(few.batch.size(), 10u);
  EXPECT_TRUE(few.more);
  EXPECT_EQ(few.count, 257u);  // counted one past the limit, not to the end
  EXPECT_LE(few.examined, 300u);
  for (size_t budget : {size_t{0}, size_t{5}, size_t{100}}) {
    OpIndex::Limits l;
    l.max_examined = budget;
    const auto cut = index.not_below(genesis, 1, nullptr, l);
    EXPECT_LE(cut.examined, budget);
    EXPECT_TRUE(cut.more);
  }
  // Heads spread over the whole history: only the top of the band is walked.
  std::vector<OpId> spread;
  for (size_t k = 1; k <= 16; ++k) spread.push_back(dag.ids[k * 110]);
  const auto band = index.not_below(spread, 1, nullptr, up_to(0, 0));
  EXPECT_LE(band.examined, 2 * OpIndex::kMaxBand + 64);
}

}  // namespace
}  // namespace fm::crdt
