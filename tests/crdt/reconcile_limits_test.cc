// Range-based set reconciliation (crdt/reconcile.h): exchanges between two
// sets find exactly their difference, answers respect their limits, and bad
// messages are refused whole.
#include "crdt/reconcile.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "proto/gossip.pb.h"
#include "tests/util/testutil.h"

namespace fm::crdt {
namespace {

namespace wire = ::fortmesh::wire;

constexpr size_t kMaxMessage = 1190;

ItemId random_id(std::mt19937_64& rng) {
  ItemId id;
  for (auto& b : id) b = static_cast<uint8_t>(rng());
  return id;
}

// `n` items with keys 0..n/3 (several per key, as ops of one DAG depth).
std::vector<SyncItem> random_items(std::mt19937_64& rng, size_t n) {
  std::vector<SyncItem> out;
  for (size_t i = 0; i < n; ++i) out.push_back(SyncItem{i / 3, random_id(rng)});
  return out;
}

wire::RangeSync parse(const std::string& s) {
  wire::RangeSync m;
  EXPECT_TRUE(m.ParseFromString(s));
  return m;
}

struct Exchange {
  std::set<ItemId> a_lacks, b_lacks;  // as found by the two sides
  size_t messages = 0, rounds = 0;
  bool oversized = false;
};

// A opens; the two answer each other until neither has anything to say.
Exchange reconcile(const SyncSet& a, const SyncSet& b, const ReplyLimits& limits = {}) {
  Reconciler r(kMaxMessage);
  Exchange x;
  std::vector<std::string> to_b{r.initiate(0, a)}, to_a;
  while ((!to_b.empty() || !to_a.empty()) && x.rounds < 100) {
    ++x.rounds;
    std::vector<std::string> next_a, next_b;
    for (const auto& m : to_b) {
      ++x.messages;
      auto res = r.respond(b, parse(m), limits);
      x.a_lacks.insert(res.they_lack.begin(), res.they_lack.end());
      x.b_lacks.insert(res.we_lack.begin(), res.we_lack.end());
      for (auto& reply : res.replies) {
        x.oversized = x.oversized || reply.size() > kMaxMessage;
        next_a.push_back(std::move(reply));
      }
    }
    for (const auto& m : to_a) {
      ++x.messages;
      auto res = r.respond(a, parse(m), limits);
      x.b_lacks.insert(res.they_lack.begin(), res.they_lack.end());
      x.a_lacks.insert(res.we_lack.begin(), res.we_lack.end());
      for (auto& reply : res.replies) {
        x.oversized = x.oversized || reply.size() > kMaxMessage;
        next_b.push_back(std::move(reply));
      }
    }
    to_a = std::move(next_a);
    to_b = std::move(next_b);
  }
  return x;
}

std::set<ItemId> ids_of(std::span<const SyncItem> items) {
  std::set<ItemId> out;
  for (const auto& it : items) out.insert(it.id);
  return out;
}

TEST(ReconcileTest, TwoSetsFindExactlyTheirDifference) {
  std::mt19937_64 rng(test::test_seed(41));
  for (const auto& [common, only_a, only_b] : {std::tuple{1000, 30, 20}, std::tuple{5000, 1, 0},
                                               std::tuple{5000, 0, 1}, std::tuple{0, 40, 0},
                                               std::tuple{300, 300, 300}}) {
    auto shared = random_items(rng, common);
    std::vector<SyncItem> a = shared, b = shared;
    for (int i = 0; i < only_a; ++i) a.push_back(SyncItem{rng() % 400, random_id(rng)});
    for (int i = 0; i < only_b; ++i) b.push_back(SyncItem{rng() % 400, random_id(rng)});
    const SyncSet sa(a), sb(b);
    const auto x = reconcile(sa, sb);
    std::set<ItemId> want_a, want_b;  // what each lacks
    const auto ia = ids_of(sa.items()), ib = ids_of(sb.items());
    std::set_difference(ib.begin(), ib.end(), ia.begin(), ia.end(), std::inserter(want_a, want_a.end()));
    std::set_difference(ia.begin(), ia.end(), ib.begin(), ib.end(), std::inserter(want_b, want_b.end()));
    EXPECT_EQ(x.a_lacks, want_a) << common << "/" << only_a << "/" << only_b;
    EXPECT_EQ(x.b_lacks, want_b) << common << "/" << only_a << "/" << only_b;
    EXPECT_FALSE(x.oversized);
  }
}

TEST(ReconcileTest, EqualSetsNeedNoAnswer) {
  std::mt19937_64 rng(7);
  const SyncSet s(random_items(rng, 2000));
  Reconciler r(kMaxMessage);
  auto res = r.respond(s, parse(r.initiate(0, s)));
  EXPECT_FALSE(res.malformed);
  EXPECT_TRUE(res.replies.empty());
  EXPECT_TRUE(res.they_lack.empty());
  EXPECT_TRUE(res.we_lack.empty());
  // Two empty sets too.
  const SyncSet empty;
  EXPECT_TRUE(r.respond(empty, parse(r.initiate(0, empty))).replies.empty());
}

TEST(ReconcileTest, AnEmptySetIsSentEverything) {
  std::mt19937_64 rng(8);
  const SyncSet full(random_items(rng, 100));
  const auto x = reconcile(SyncSet(), full);
  EXPECT_EQ(x.a_lacks, ids_of(full.items()));
  EXPECT_TRUE(x.b_lacks.empty());
}

TEST(ReconcileTest, TheSetKeepsOneItemPerIdAndLooksThemUp) {
  std::mt19937_64 rng(9);
  auto items = random_items(rng, 50);
  auto twice = items;
  twice.insert(twice.end(), items.begin(), items.begin() + 10);
  const SyncSet s(twice);
  EXPECT_EQ(s.size(), 50u);
  EXPECT_TRUE(std::is_sorted(s.items().begin(), s.items().end()));
  for (const auto& it : items) EXPECT_EQ(s.key_of(it.id), it.key);
  EXPECT_FALSE(s.key_of(random_id(rng)));
  EXPECT_EQ(s.lower_bound(uint64_t{0}), 0u);
  EXPECT_EQ(s.lower_bound(uint64_t{1000}), s.size());
  EXPECT_EQ(s.items()[s.lower_bound(uint64_t{5})].key, 5u);
}

// Inserting into a set leaves it as if it had been built with everything:
// same order, same fingerprints.
TEST(ReconcileTest, InsertingMatchesBuildingFromScratch) {
  std::mt19937_64 rng(10);
  auto base = random_items(rng, 300);
  SyncSet grown(base);
  std::vector<SyncItem> all = base;
  std::vector<SyncItem> deeper{{500, random_id(rng)}, {501, random_id(rng)}};  // the usual: new ops on top
  std::vector<SyncItem> middle{{50, random_id(rng)}, {3, random_id(rng)}, base[7]};  // and concurrent ones
  for (const auto& batch : {deeper, middle}) {
    grown.insert(batch);
    all.insert(all.end(), batch.begin(), batch.end());
    const SyncSet built(all);
    ASSERT_EQ(std::vector<SyncItem>(grown.items().begin(), grown.items().end()),
              std::vector<SyncItem>(built.items().begin(), built.items().end()));
    Reconciler r(kMaxMessage);
    EXPECT_EQ(r.initiate(0, grown), r.initiate(0, built));
    EXPECT_TRUE(r.respond(grown, parse(r.initiate(0, built))).replies.empty());
  }
  EXPECT_EQ(grown.key_of(middle[0].id), 50u);
}

TEST(ReconcileTest, ADifferingRangeIsSplitOrListed) {
  std::mt19937_64 rng(11);
  const SyncSet big(random_items(rng, 1000)), small(random_items(rng, 10));
  Reconciler r(kMaxMessage);
  wire::RangeSync wrong;
  auto* range = wrong.add_ranges();
  range->set_upper_key(UINT64_MAX);
  range->set_fingerprint(std::string(16, 'x'));
  const auto split = r.respond(big, wrong);
  ASSERT_EQ(split.replies.size(), 1u);
  const auto m = parse(split.replies[0]);
  EXPECT_EQ(m.ranges_size(), static_cast<int>(Reconciler::kSplit));
  for (const auto& sub : m.ranges()) EXPECT_EQ(sub.fingerprint().size(), 16u);
  const auto listed = r.respond(small, wrong);
  ASSERT_EQ(listed.replies.size(), 1u);
  const auto l = parse(listed.replies[0]);
  ASSERT_EQ(l.ranges_size(), 1);
  EXPECT_EQ(l.ranges(0).ids().ids_size(), 10);
}

// ---- Bad input --------------------------------------------------------------

wire::RangeSync whole_range_with_ids(std::span<const ItemId> ids) {
  wire::RangeSync m;
  auto* r = m.add_ranges();
  r->set_upper_key(UINT64_MAX);
  r->mutable_ids();
  for (const auto& id : ids) r->mutable_ids()->add_ids(id.data(), id.size());
  return m;
}

TEST(ReconcileTest, MalformedMessagesAreRefusedWhole) {
  std::mt19937_64 rng(12);
  const SyncSet s(random_items(rng, 200));
  Reconciler r(kMaxMessage);
  std::vector<std::pair<std::string, wire::RangeSync>> bad;
  auto base = [] {
    wire::RangeSync m;
    m.add_ranges()->set_upper_key(UINT64_MAX);
    m.mutable_ranges(0)->set_fingerprint(std::string(16, 'f'));
    return m;
  };
  {
    auto m = base();
    m.mutable_ranges(0)->set_upper_key(5);
    m.mutable_ranges(0)->set_upper_id(std::string(9, 'i'));  // a bound's id prefix is 8 bytes at most
    bad.emplace_back("upper id of 9 bytes", m);
  }
  {
    auto m = base();
    m.set_lower_key(3);
    m.set_lower_id(std::string(12, 'i'));
    bad.emplace_back("lower id of 12 bytes", m);
  }
  {
    auto m = base();
    m.set_lower_key(UINT64_MAX);  // the lower bound at the end
    bad.emplace_back("lower bound at the end", m);
  }
  {
    wire::RangeSync m;
    m.add_ranges()->set_upper_key(50);
    m.mutable_ranges(0)->set_skip(true);
    m.add_ranges()->set_upper_key(20);  // going back
    m.mutable_ranges(1)->set_fingerprint(std::string(16, 'f'));
    bad.emplace_back("bounds going back", m);
  }
  {
    auto m = base();
    m.set_lower_key(60);
    m.mutable_ranges(0)->set_upper_key(40);
    m.mutable_ranges(0)->set_upper_id("");
    bad.emplace_back("an upper bound below the lower", m);
  }
  {
    auto m = base();
    m.mutable_ranges(0)->set_fingerprint(std::string(15, 'f'));
    bad.emplace_back("a 15-byte fingerprint", m);
  }
  {
    wire::RangeSync m;
    m.add_ranges()->set_upper_key(UINT64_MAX);  // no kind
    bad.emplace_back("a range of no kind", m);
  }
  {
    std::vector<ItemId> ids(Reconciler::kIdListMax + 1);
    for (auto& id : ids) id = random_id(rng);
    bad.emplace_back("17 ids in a range", whole_range_with_ids(ids));
  }
  {
    auto m = whole_range_with_ids({});
    m.mutable_ranges(0)->mutable_ids()->add_ids(std::string(31, 'x'));
    bad.emplace_back("a 31-byte id", m);
  }
  for (const auto& [what, m] : bad) {
    auto res = r.respond(s, m);
    EXPECT_TRUE(res.malformed) << what;
    EXPECT_TRUE(res.replies.empty() && res.they_lack.empty() && res.we_lack.empty()) << what;
    EXPECT_EQ(res.examined, 0u) << what;
  }
}

TEST(ReconcileTest, EqualBoundsMakeAnEmptyRangeNotAnError) {
  std::mt19937_64 rng(13);
  const SyncSet s(random_items(rng, 60));
  Reconciler r(kMaxMessage);
  wire::RangeSync m;
  for (int i = 0; i < 2; ++i) {
    auto* range = m.add_ranges();
    range->set_upper_key(10);
    range->set_upper_id(std::string(8, '\0'));
    range->set_skip(true);
  }
  m.add_ranges()->set_upper_key(UINT64_MAX);
  m.mutable_ranges(2)->set_skip(true);
  EXPECT_FALSE(r.respond(s, m).malformed);
}

TEST(ReconcileTest, RangesAfterTheEndAreIgnored) {
  std::mt19937_64 rng(14);
  const SyncSet s(random_items(rng, 60));
  Reconciler r(kMaxMessage);
  auto m = parse(r.initiate(0, s));
  m.add_ranges()->set_upper_key(3);  // after the end, and of no kind
  const auto res = r.respond(s, m);
  EXPECT_FALSE(res.malformed);
  EXPECT_TRUE(res.replies.empty());
}

// ---- Limits -----------------------------------------------------------------

// An id list is answered by looking each listed id up and walking ours only
// as far as they are sent: not by comparing every pair.
TEST(ReconcileTest, AnIdListCostsWhatIsListedAndSent) {
  std::mt19937_64 rng(15);
  const SyncSet s(random_items(rng, 20'000));
  Reconciler r(kMaxMessage);
  std::vector<ItemId> ids{s.items()[0].id, s.items()[1].id};
  for (int i = 0; i < 14; ++i) ids.push_back(random_id(rng));
  ReplyLimits lim;
  lim.send_cost = [](const ItemId&) { return size_t{230}; };
  lim.max_bytes = 100 * 230 + 640;  // 100 items and the reserve for one range's answer
  const auto res = r.respond(s, whole_range_with_ids(ids), lim);
  EXPECT_EQ(res.we_lack.size(), 14u);
  EXPECT_EQ(res.they_lack.size(), 100u);
  EXPECT_TRUE(res.they_lack_cut);
  EXPECT_EQ(res.they_lack.front(), s.items()[2].id);  // in key order, skipping the two it holds
  EXPECT_LE(res.bytes, lim.max_bytes);
  EXPECT_LE(res.examined, 1 + 16 + 2 + 100);
  // Unlimited, it is everything but those two.
  EXPECT_EQ(r.respond(s, whole_range_with_ids(ids)).they_lack.size(), s.size() - 2);
}

// 100 ranges with wrong fingerprints over 20,000 items: each answered in
// full would be 8 sub-ranges, 900 fingerprints in all.
wire::RangeSync hundred_wrong_ranges() {
  wire::RangeSync m;
  for (uint64_t k = 1; k <= 100; ++k) {
    auto* range = m.add_ranges();
    range->set_upper_key(k == 100 ? UINT64_MAX : k * 60);
    range->set_fingerprint(std::string(16, static_cast<char>(k)));
  }
  return m;
}

TEST(ReconcileTest, AnAnswerComputesBoundedFingerprintsAndSumsUpTheRest) {
  std::mt19937_64 rng(16);
  const SyncSet s(random_items(rng, 20'000));
  Reconciler r(kMaxMessage);
  const auto res = r.respond(s, hundred_wrong_ranges());
  EXPECT_TRUE(res.ranges_cut);
  size_t ranges = 0;
  wire::Range last;
  for (const auto& reply : res.replies) {
    const auto m = parse(reply);
    ranges += static_cast<size_t>(m.ranges_size());
    last = m.ranges(m.ranges_size() - 1);
  }
  // Seven ranges split, then one fingerprint over everything after them.
  const size_t split = (Reconciler::kMaxFingerprints) / (1 + Reconciler::kSplit);
  EXPECT_EQ(ranges, split * Reconciler::kSplit + 1);
  EXPECT_EQ(last.upper_key(), UINT64_MAX);
  EXPECT_EQ(last.fingerprint().size(), 16u);
  EXPECT_LE(res.examined, split * (1 + Reconciler::kSplit) + 1);
}

// Differences spread everywhere: many ranges differ in every message, and the
// capped answers still get to exactly the difference.
TEST(ReconcileTest, SpreadDifferencesAreFoundThroughCappedAnswers) {
  std::mt19937_64 rng(17);
  auto shared = random_items(rng, 6000);
  std::vector<SyncItem> a = shared, b = shared;
  for (int i = 0; i < 600; ++i) a.push_back(SyncItem{rng() % 2000, random_id(rng)});
  for (int i = 0; i < 600; ++i) b.push_back(SyncItem{rng() % 2000, random_id(rng)});
  const SyncSet sa(a), sb(b);
  const auto x = reconcile(sa, sb);
  EXPECT_EQ(x.a_lacks.size(), 600u);
  EXPECT_EQ(x.b_lacks.size(), 600u);
  for (const auto& id : x.a_lacks) EXPECT_TRUE(sb.key_of(id) && !sa.key_of(id));
  for (const auto& id : x.b_lacks) EXPECT_TRUE(sa.key_of(id) && !sb.key_of(id));
  EXPECT_LT(x.rounds, 100u);
}

TEST(ReconcileTest, AnswersStopAtTheirByteAndWorkLimits) {
  std::mt19937_64 rng(18);
  const SyncSet s(random_items(rng, 20'000));
  Reconciler r(kMaxMessage);
  const auto m = hundred_wrong_ranges();
  const auto all = r.respond(s, m);
  size_t sum = 0;
  for (const auto& reply : all.replies) sum += reply.size();
  EXPECT_EQ(all.bytes, sum);
  ASSERT_GT(all.bytes, 1500u);
  for (size_t max_bytes : {size_t{0}, size_t{100}, size_t{700}, size_t{1500}}) {
    ReplyLimits lim;
    lim.max_bytes = max_bytes;
    lim.message_overhead = 3;
    const auto res = r.respond(s, m, lim);
    size_t total = 0;
    for (const auto& reply : res.replies) total += reply.size() + 3;
    EXPECT_TRUE(res.ranges_cut) << max_bytes;
    EXPECT_EQ(res.bytes, total) << max_bytes;
    EXPECT_LE(res.bytes, max_bytes);
  }
  for (size_t max_examined : {size_t{0}, size_t{10}, size_t{30}}) {
    ReplyLimits lim;
    lim.max_examined = max_examined;
    const auto res = r.respond(s, m, lim);
    EXPECT_TRUE(res.ranges_cut);
    EXPECT_LE(res.examined, max_examined);
  }
}

}  // namespace
}  // namespace fm::crdt
