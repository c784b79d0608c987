// Range-based set reconciliation (crdt/reconcile.h): two sets driven to
// completion find exactly their difference, within the message bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "crdt/reconcile.h"
#include "proto/gossip.pb.h"
#include "tests/util/testutil.h"

namespace fm::crdt {
namespace {

ItemId random_id(std::mt19937_64& rng) {
  ItemId id;
  for (auto& b : id) b = static_cast<uint8_t>(rng());
  return id;
}

struct Outcome {
  std::set<ItemId> a_lacks, b_lacks;  // what each side learned it must get
  size_t rounds = 0, messages = 0, largest = 0;
};

// Drives the exchange: A opens, each side answers the other's messages until
// none are left.
Outcome reconcile(const std::vector<SyncItem>& a, const std::vector<SyncItem>& b, size_t max_bytes) {
  const SyncSet sa(a), sb(b);
  const Reconciler rec(max_bytes);
  Outcome out;
  std::vector<std::string> to_b{rec.initiate(7, sa)}, to_a;
  while (!to_b.empty() || !to_a.empty()) {
    ++out.rounds;
    EXPECT_LT(out.rounds, 40u) << "does not converge";
    if (out.rounds >= 40) break;
    std::vector<std::string> next_a, next_b;
    for (const auto& m : to_b) {
      fortmesh::wire::RangeSync msg;
      EXPECT_TRUE(msg.ParseFromString(m));
      EXPECT_EQ(msg.set(), 7u);
      auto res = rec.respond(sb, msg);
      for (const auto& id : res.they_lack) out.a_lacks.insert(id);
      for (const auto& id : res.we_lack) out.b_lacks.insert(id);
      next_a.insert(next_a.end(), res.replies.begin(), res.replies.end());
    }
    for (const auto& m : to_a) {
      fortmesh::wire::RangeSync msg;
      EXPECT_TRUE(msg.ParseFromString(m));
      auto res = rec.respond(sa, msg);
      for (const auto& id : res.they_lack) out.b_lacks.insert(id);
      for (const auto& id : res.we_lack) out.a_lacks.insert(id);
      next_b.insert(next_b.end(), res.replies.begin(), res.replies.end());
    }
    for (const auto* list : {&next_a, &next_b}) {
      out.messages += list->size();
      for (const auto& m : *list) out.largest = std::max(out.largest, m.size());
    }
    to_a = std::move(next_a);
    to_b = std::move(next_b);
  }
  return out;
}

std::set<ItemId> minus(const std::vector<SyncItem>& x, const std::vector<SyncItem>& y) {
  std::set<ItemId> ys;
  for (const auto& i : y) ys.insert(i.id);
  std::set<ItemId> out;
  for (const auto& i : x) {
    if (!ys.contains(i.id)) out.insert(i.id);
  }
  return out;
}

TEST(Reconcile, EqualSetsNeedNoReply) {
  std::mt19937_64 rng(1);
  std::vector<SyncItem> items;
  for (uint64_t k = 0; k < 500; ++k) items.push_back({k / 3, random_id(rng)});
  auto out = reconcile(items, items, 1200);
  EXPECT_EQ(out.messages, 0u);
  EXPECT_TRUE(out.a_lacks.empty());
  EXPECT_TRUE(out.b_lacks.empty());
  // Two empty sets agree too.
  EXPECT_EQ(reconcile({}, {}, 1200).messages, 0u);
}

TEST(Reconcile, FindsExactlyTheDifferenceWithinTheMessageBound) {
  const uint64_t seed = test::test_seed(11);
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 60; ++round) {
    SCOPED_TRACE("round " + std::to_string(round) + " (FORTMESH_TEST_SEED=" + std::to_string(seed) + ")");
    const size_t common = std::uniform_int_distribution<size_t>(0, round % 3 == 0 ? 3000 : 300)(rng);
    const size_t only_a = std::uniform_int_distribution<size_t>(0, round % 4 == 0 ? 400 : 30)(rng);
    const size_t only_b = std::uniform_int_distribution<size_t>(0, 30)(rng);
    std::vector<SyncItem> a, b;
    // Keys like DAG depths: many items share one, and what differs is mostly late.
    for (size_t i = 0; i < common; ++i) {
      SyncItem it{i / 4, random_id(rng)};
      a.push_back(it);
      b.push_back(it);
    }
    for (size_t i = 0; i < only_a; ++i) {
      // Some beside the common items, not after them.
      const uint64_t key = i % 5 == 0 ? rng() % (common / 4 + 1) : (common + i) / 4;
      a.push_back({key, random_id(rng)});
    }
    for (size_t i = 0; i < only_b; ++i) b.push_back({(common + i) / 4, random_id(rng)});
    const size_t max_bytes = round % 2 ? 1200 : 700;
    auto out = reconcile(a, b, max_bytes);
    EXPECT_EQ(out.a_lacks, minus(b, a));
    EXPECT_EQ(out.b_lacks, minus(a, b));
    EXPECT_LE(out.largest, max_bytes);
  }
}

TEST(Reconcile, DuplicatesInASetCountOnce) {
  std::mt19937_64 rng(2);
  const SyncItem x{5, random_id(rng)}, y{5, random_id(rng)};
  const SyncSet twice({x, y, x, x});
  EXPECT_EQ(twice.size(), 2u);
  EXPECT_TRUE(std::is_sorted(twice.items().begin(), twice.items().end()));
  auto out = reconcile({x, y, x}, {y, x}, 1200);
  EXPECT_EQ(out.messages, 0u);
}

TEST(Reconcile, MalformedMessagesYieldNothing) {
  std::mt19937_64 rng(3);
  std::vector<SyncItem> items;
  for (uint64_t k = 0; k < 50; ++k) items.push_back({k, random_id(rng)});
  const SyncSet set(items);
  const Reconciler rec(1200);
  auto expect_nothing = [&](const fortmesh::wire::RangeSync& m, const char* what) {
    auto res = rec.respond(set, m);
    EXPECT_TRUE(res.replies.empty()) << what;
    EXPECT_TRUE(res.they_lack.empty()) << what;
    EXPECT_TRUE(res.we_lack.empty()) << what;
  };
  fortmesh::wire::RangeSync long_bound;
  auto* r = long_bound.add_ranges();
  r->set_upper_key(10);
  r->set_upper_id(std::string(9, 'x'));  // bounds carry at most 8 id bytes
  r->set_fingerprint(std::string(16, 'f'));
  expect_nothing(long_bound, "bound id of 9 bytes");

  fortmesh::wire::RangeSync short_id;
  auto* s = short_id.add_ranges();
  s->set_upper_key(UINT64_MAX);
  s->mutable_ids()->add_ids(std::string(31, 'i'));
  expect_nothing(short_id, "an id of 31 bytes");

  fortmesh::wire::RangeSync lower_end;
  lower_end.set_lower_key(UINT64_MAX);
  auto* t = lower_end.add_ranges();
  t->set_upper_key(UINT64_MAX);
  t->set_fingerprint(std::string(16, 'f'));
  expect_nothing(lower_end, "a lower bound past the end");
}

}  // namespace
}  // namespace fm::crdt
