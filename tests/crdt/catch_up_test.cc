#include "crdt/catch_up.h"

#include <gtest/gtest.h>

namespace fm::crdt {
namespace {

constexpr Millis kT0 = 1'700'000'000'000;
constexpr Millis kSettle = 1000;

HeadsHash hash(uint8_t b) {
  HeadsHash h;
  h.fill(b);
  return h;
}

OpId op(uint8_t b) {
  OpId id;
  id.fill(b);
  return id;
}

using Start = CatchUpFeed::Start;

TEST(CatchUpFeedTest, AFreshFeedStartsFromTheHeadsAndHasNothingDue) {
  CatchUpFeed f;
  EXPECT_EQ(f.round(), 0u);
  EXPECT_EQ(f.start(0, hash(1), kT0), Start::from_heads);
  EXPECT_EQ(f.start(7, hash(1), kT0), Start::from_heads);  // an echo means nothing yet
  EXPECT_EQ(f.next_deadline(), kNever);
  EXPECT_FALSE(f.waiting());
  auto due = f.take_due(kT0 + 100'000);
  EXPECT_FALSE(due.ask);
  EXPECT_FALSE(due.resume);
}

TEST(CatchUpFeedTest, WhileABatchIsInFlightOnlyTheReplyToItsSummaryCounts) {
  CatchUpFeed f;
  f.sent(op(9), hash(1), kT0, kSettle);
  EXPECT_EQ(f.round(), 1u);
  EXPECT_EQ(f.last(), op(9));
  // A Summary that crossed the batch (an older round, or none) is not the answer.
  EXPECT_EQ(f.start(0, hash(2), kT0 + 10), Start::ignore);
  EXPECT_EQ(f.start(0, hash(1), kT0 + 10), Start::ignore);
  // The answer: heads moved, so the rest is arriving; go on after the batch.
  EXPECT_EQ(f.start(1, hash(2), kT0 + 10), Start::after_last);
  // The answer with the same heads: the batch's front was lost; again from them.
  EXPECT_EQ(f.start(1, hash(1), kT0 + 10), Start::from_heads);
  // Once it has settled, anything starts from the heads it names.
  EXPECT_EQ(f.start(0, hash(2), kT0 + kSettle), Start::from_heads);
  EXPECT_EQ(f.start(1, hash(2), kT0 + kSettle), Start::from_heads);
}

TEST(CatchUpFeedTest, EachBatchIsANewRound) {
  CatchUpFeed f;
  f.sent(op(1), hash(1), kT0, kSettle);
  f.sent(op(2), hash(2), kT0 + 100, kSettle);
  EXPECT_EQ(f.round(), 2u);
  EXPECT_EQ(f.last(), op(2));
  EXPECT_EQ(f.start(1, hash(3), kT0 + 150), Start::ignore);  // the previous round's reply
  EXPECT_EQ(f.start(2, hash(3), kT0 + 150), Start::after_last);
  EXPECT_EQ(f.start(2, hash(2), kT0 + 150), Start::from_heads);
}

TEST(CatchUpFeedTest, TheSummaryAfterABatchFallsDueOnce) {
  CatchUpFeed f;
  f.sent(op(1), hash(1), kT0, kSettle);
  f.ask_at(kT0 + 50);
  EXPECT_EQ(f.next_deadline(), kT0 + 50);
  EXPECT_FALSE(f.take_due(kT0 + 49).ask);
  EXPECT_TRUE(f.take_due(kT0 + 60).ask);
  EXPECT_FALSE(f.take_due(kT0 + 70).ask);
  EXPECT_EQ(f.next_deadline(), kNever);
}

TEST(CatchUpFeedTest, ABatchWaitingForBudgetResumesFromTheHeadsItWasGiven) {
  CatchUpFeed f;
  f.wait_until(kT0 + 200, {{op(4), op(5)}, 12});
  EXPECT_TRUE(f.waiting());
  EXPECT_EQ(f.next_deadline(), kT0 + 200);
  EXPECT_FALSE(f.take_due(kT0 + 199).resume);
  auto due = f.take_due(kT0 + 200);
  ASSERT_TRUE(due.resume);
  EXPECT_EQ(due.resume->ids, (std::vector<OpId>{op(4), op(5)}));
  EXPECT_EQ(due.resume->op_count, 12u);
  EXPECT_FALSE(f.waiting());
  EXPECT_FALSE(f.take_due(kT0 + 300).resume);
}

TEST(CatchUpFeedTest, ABatchFoundWhileWaitingGoesUnlessNewsOfTheHeadsCame) {
  CatchUpFeed f;
  f.wait_until(kT0 + 100, {{op(1)}, 5}, {{op(7), op(8)}, true, 300});
  auto due = f.take_due(kT0 + 100);
  ASSERT_TRUE(due.resume);
  EXPECT_EQ(due.found.ops, (std::vector<OpId>{op(7), op(8)}));
  EXPECT_TRUE(due.found.more);
  EXPECT_EQ(due.found.count, 300u);
  // News of its heads while it waits: the batch is found again from them.
  f.wait_until(kT0 + 200, {{op(1)}, 5}, {{op(7)}, false, 1});
  f.wait_from({{op(7)}, 6});
  due = f.take_due(kT0 + 200);
  ASSERT_TRUE(due.resume);
  EXPECT_EQ(due.resume->ids, std::vector<OpId>{op(7)});
  EXPECT_TRUE(due.found.ops.empty());
}

TEST(CatchUpFeedTest, BothCanFallDueTogetherAndTheDeadlineIsTheEarlier) {
  CatchUpFeed f;
  f.ask_at(kT0 + 80);
  f.wait_until(kT0 + 30, {{op(1)}, 1});
  EXPECT_EQ(f.next_deadline(), kT0 + 30);
  auto first = f.take_due(kT0 + 30);
  EXPECT_FALSE(first.ask);
  EXPECT_TRUE(first.resume);
  EXPECT_EQ(f.next_deadline(), kT0 + 80);
  f.wait_until(kT0 + 90, {{op(9)}, 1});
  f.wait_from({{op(2)}, 2});  // newer news of its heads
  auto both = f.take_due(kT0 + 100);
  EXPECT_TRUE(both.ask);
  ASSERT_TRUE(both.resume);
  EXPECT_EQ(both.resume->ids, std::vector<OpId>{op(2)});
  EXPECT_EQ(both.resume->op_count, 2u);
  EXPECT_EQ(f.next_deadline(), kNever);
}

}  // namespace
}  // namespace fm::crdt
