#include "crdt/token_bucket.h"

#include <gtest/gtest.h>

namespace fm::crdt {
namespace {

constexpr Millis kT0 = 1'700'000'000'000;

TEST(TokenBucketTest, StartsFullAndTakesAllOrNothing) {
  TokenBucket b(100, 50, kT0);
  EXPECT_EQ(b.available(), 50);
  EXPECT_TRUE(b.take(30));
  EXPECT_EQ(b.available(), 20);
  EXPECT_FALSE(b.take(21));  // not partly either
  EXPECT_EQ(b.available(), 20);
  EXPECT_TRUE(b.take(20));
  EXPECT_FALSE(b.take(1));
}

TEST(TokenBucketTest, RefillsAtItsRateUpToTheBurst) {
  TokenBucket b(1000, 500, kT0);  // 1 token per ms
  ASSERT_TRUE(b.take(500));
  b.refill(kT0 + 120);
  EXPECT_DOUBLE_EQ(b.available(), 120);
  b.refill(kT0 + 10'000);
  EXPECT_DOUBLE_EQ(b.available(), 500);
}

TEST(TokenBucketTest, AnEarlierTimeRefillsNothing) {
  TokenBucket b(1000, 500, kT0);
  ASSERT_TRUE(b.take(500));
  b.refill(kT0 + 100);
  b.refill(kT0 + 50);   // a clock that went back
  b.refill(kT0 + 100);  // and the same instant again
  EXPECT_DOUBLE_EQ(b.available(), 100);
  b.refill(kT0 + 150);  // counts from the latest refill
  EXPECT_DOUBLE_EQ(b.available(), 150);
}

TEST(TokenBucketTest, TimeUntilEnoughTokens) {
  TokenBucket b(2000, 1000, kT0);  // 2 per ms
  EXPECT_EQ(b.time_until(1000), 0u);
  ASSERT_TRUE(b.take(1000));
  EXPECT_EQ(b.time_until(0), 0u);
  EXPECT_EQ(b.time_until(200), 100u);
  EXPECT_EQ(b.time_until(1000), 500u);
  EXPECT_EQ(b.time_until(1001), kNever);  // more than it ever holds
  b.refill(kT0 + b.time_until(200));
  EXPECT_TRUE(b.take(200));
}

TEST(TokenBucketTest, DrainTakesWhatThereIsForWorkDone) {
  TokenBucket b(1000, 100, kT0);
  b.drain(30);
  EXPECT_DOUBLE_EQ(b.available(), 70);
  b.drain(500);  // more than there is: empty, not negative
  EXPECT_DOUBLE_EQ(b.available(), 0);
  b.refill(kT0 + 10);
  EXPECT_DOUBLE_EQ(b.available(), 10);
}

TEST(TokenBucketTest, ADefaultBucketHoldsNothing) {
  TokenBucket b;
  b.refill(kT0);
  EXPECT_FALSE(b.take(1));
  EXPECT_TRUE(b.take(0));
  EXPECT_EQ(b.time_until(1), kNever);
}

}  // namespace
}  // namespace fm::crdt
