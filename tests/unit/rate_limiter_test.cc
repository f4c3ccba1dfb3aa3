// Tests of the token buckets behind device rate limits, on a fake clock.
#include "devices/rate_limiter.h"

#include <gtest/gtest.h>

namespace kdom::devices {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;

const RateClock::time_point kStart{};

TEST(TokenBucketTest, FullBucketAllowsOneSecondsWorthThenWaits) {
  TokenBucket bucket(100, kStart);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(bucket.try_take(1, kStart)) << i;
  EXPECT_FALSE(bucket.try_take(1, kStart));
  EXPECT_EQ(bucket.wait_for(1, kStart), milliseconds(10));
  EXPECT_FALSE(bucket.try_take(1, kStart + milliseconds(9)));
  EXPECT_TRUE(bucket.try_take(1, kStart + milliseconds(10)));
}

TEST(TokenBucketTest, RefillStopsAtCapacity) {
  TokenBucket bucket(10, kStart);
  ASSERT_TRUE(bucket.try_take(10, kStart));
  // An hour later the bucket holds one second's worth, no more.
  const auto later = kStart + std::chrono::hours(1);
  EXPECT_TRUE(bucket.try_take(10, later));
  EXPECT_FALSE(bucket.try_take(1, later));
}

TEST(TokenBucketTest, CostAboveCapacityPassesWhenFullAndLeavesDebt) {
  TokenBucket bucket(1000, kStart);
  EXPECT_TRUE(bucket.try_take(3000, kStart));  // never refused for ever
  // 2000 tokens of debt plus 1 needed: about 2 s.
  EXPECT_EQ(bucket.wait_for(1, kStart), nanoseconds(2'001'000'000));
  EXPECT_FALSE(bucket.try_take(1, kStart + milliseconds(2000)));
  EXPECT_TRUE(bucket.try_take(1, kStart + milliseconds(2001)));
}

TEST(RateLimiterTest, UnlimitedNeverWaits) {
  RateLimiter limiter(RateLimit{}, kStart);
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(limiter.try_take(1 << 20, kStart));
  EXPECT_EQ(limiter.wait_for(1 << 20, kStart), nanoseconds(0));
}

TEST(RateLimiterTest, BothBucketsMustAllowAndNeitherIsTakenAlone) {
  RateLimiter limiter(RateLimit{4096, 2}, kStart);
  EXPECT_TRUE(limiter.try_take(1024, kStart));
  EXPECT_TRUE(limiter.try_take(1024, kStart));
  // Bytes remain (2048) but operations are spent.
  EXPECT_FALSE(limiter.try_take(1024, kStart));
  EXPECT_EQ(limiter.wait_for(1024, kStart), milliseconds(500));
  // Half a second later: one operation and 2048 + 2048 bytes.
  const auto later = kStart + milliseconds(500);
  EXPECT_TRUE(limiter.try_take(4096, later));
  EXPECT_FALSE(limiter.try_take(0, later));
}

TEST(RateLimiterTest, BytesLimitPacesLargeTransfers) {
  RateLimiter limiter(RateLimit{1 << 20, 0}, kStart);  // 1 MiB/s
  ASSERT_TRUE(limiter.try_take(1 << 20, kStart));
  EXPECT_FALSE(limiter.try_take(4096, kStart));
  EXPECT_EQ(limiter.wait_for(1 << 19, kStart), milliseconds(500));
  EXPECT_TRUE(limiter.try_take(1 << 19, kStart + milliseconds(500)));
}

}  // namespace
}  // namespace kdom::devices
