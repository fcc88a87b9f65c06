// Tests of TokenBucket on simulated time: the clock only moves when a test
// advances it, so every refill edge, wait and total is asserted exactly.

#include "spillway/token_bucket.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spillway/metric_names.h"
#include "spillway/testing/in_memory_metrics.h"
#include "spillway/testing/simulated_clock.h"

namespace spillway {
namespace {

using ::spillway::testing::InMemoryMetricsSink;
using ::spillway::testing::SimulatedClock;
using ::testing::HasSubstr;

// Options for a bucket on `clock`. `initial` unset means a full bucket.
TokenBucketOptions BucketOptions(double rate, double burst,
                                 std::optional<double> initial,
                                 SimulatedClock* clock,
                                 MetricsSink* metrics = nullptr) {
  TokenBucketOptions options;
  options.rate = rate;
  options.burst = burst;
  options.initial_tokens = initial;
  options.clock = clock;
  options.metrics = metrics;
  return options;
}

// Builds a bucket; a failure is reported and yields nullptr, which the
// caller checks with ASSERT_NE.
std::unique_ptr<TokenBucket> MakeBucket(const TokenBucketOptions& options) {
  absl::StatusOr<std::unique_ptr<TokenBucket>> bucket =
      TokenBucket::Create(options);
  if (!bucket.ok()) {
    ADD_FAILURE() << "TokenBucket::Create: " << bucket.status();
    return nullptr;
  }
  return *std::move(bucket);
}

// `actual` within `tolerance` of `expected`; the default tolerance absorbs
// the floating-point seconds of the bucket's math.
::testing::AssertionResult DurationNear(
    absl::Duration actual, absl::Duration expected,
    absl::Duration tolerance = absl::Microseconds(1)) {
  if (absl::AbsDuration(actual - expected) <= tolerance) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "got " << actual << ", expected "
                                       << expected << " +/- " << tolerance;
}

// Token counts are compared up to the bucket's documented tolerance of 1e-9
// tokens, which absorbs floating-point rounding; every expected value below
// differs from its neighbours by far more.
constexpr double kTokenTolerance = 1e-9;

// A sentinel no refusal can produce, so a test sees that TryConsume wrote
// its out-parameter.
const absl::Duration kUnset = -absl::Hours(12345);

// --- Refill edges -----------------------------------------------------------

TEST(TokenBucketTest, OneTokenPerSecondEdge) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket =
      MakeBucket(BucketOptions(/*rate=*/1, /*burst=*/1, /*initial=*/0, &clock));
  ASSERT_NE(bucket, nullptr);

  absl::Duration retry_after = kUnset;
  EXPECT_FALSE(bucket->TryConsume(1, &retry_after));
  EXPECT_TRUE(DurationNear(retry_after, absl::Seconds(1)));

  clock.Advance(absl::Milliseconds(999));
  retry_after = kUnset;
  EXPECT_FALSE(bucket->TryConsume(1, &retry_after));
  EXPECT_TRUE(DurationNear(retry_after, absl::Milliseconds(1)));

  clock.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(bucket->TryConsume(1));

  // The token just taken is gone: the next one is a full second away.
  retry_after = kUnset;
  EXPECT_FALSE(bucket->TryConsume(1, &retry_after));
  EXPECT_TRUE(DurationNear(retry_after, absl::Seconds(1)));
}

TEST(TokenBucketTest, AvailableOnBothSidesOfTheEdge) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket =
      MakeBucket(BucketOptions(/*rate=*/1, /*burst=*/1, /*initial=*/0, &clock));
  ASSERT_NE(bucket, nullptr);
  clock.Advance(absl::Milliseconds(999));
  EXPECT_NEAR(bucket->Available(), 0.999, kTokenTolerance);
  clock.Advance(absl::Milliseconds(1));
  EXPECT_NEAR(bucket->Available(), 1.0, kTokenTolerance);
  // Capped at burst from then on.
  clock.Advance(absl::Milliseconds(1));
  EXPECT_NEAR(bucket->Available(), 1.0, kTokenTolerance);
}

TEST(TokenBucketTest, MillionPerSecondEdge) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(
      BucketOptions(/*rate=*/1e6, /*burst=*/1, /*initial=*/0, &clock));
  ASSERT_NE(bucket, nullptr);

  clock.Advance(absl::Nanoseconds(999));
  absl::Duration retry_after = kUnset;
  EXPECT_FALSE(bucket->TryConsume(1, &retry_after));
  EXPECT_TRUE(DurationNear(retry_after, absl::Nanoseconds(1),
                           /*tolerance=*/absl::Nanoseconds(1) / 4));

  clock.Advance(absl::Nanoseconds(1));
  EXPECT_TRUE(bucket->TryConsume(1));
  retry_after = kUnset;
  EXPECT_FALSE(bucket->TryConsume(1, &retry_after));
  EXPECT_TRUE(DurationNear(retry_after, absl::Microseconds(1),
                           /*tolerance=*/absl::Nanoseconds(1) / 4));
}

TEST(TokenBucketTest, HighestRateOneTokenPerNanosecond) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(
      BucketOptions(/*rate=*/1e9, /*burst=*/1, /*initial=*/0, &clock));
  ASSERT_NE(bucket, nullptr);
  absl::Duration retry_after = kUnset;
  EXPECT_FALSE(bucket->TryConsume(1, &retry_after));
  EXPECT_TRUE(DurationNear(retry_after, absl::Nanoseconds(1),
                           /*tolerance=*/absl::Nanoseconds(1) / 4));
  clock.Advance(absl::Nanoseconds(1));
  EXPECT_TRUE(bucket->TryConsume(1));
  EXPECT_FALSE(bucket->TryConsume(1));
}

TEST(TokenBucketTest, HalfPerSecondEdge) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(
      BucketOptions(/*rate=*/0.5, /*burst=*/1, /*initial=*/0, &clock));
  ASSERT_NE(bucket, nullptr);
  clock.Advance(absl::Milliseconds(1999));
  absl::Duration retry_after = kUnset;
  EXPECT_FALSE(bucket->TryConsume(1, &retry_after));
  EXPECT_TRUE(DurationNear(retry_after, absl::Milliseconds(1)));
  clock.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(bucket->TryConsume(1));
}

TEST(TokenBucketTest, TenthPerSecondEdge) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(
      BucketOptions(/*rate=*/0.1, /*burst=*/1, /*initial=*/0, &clock));
  ASSERT_NE(bucket, nullptr);
  // rate() returns the stored value, which may be rounded.
  EXPECT_FLOAT_EQ(bucket->rate(), 0.1f);

  clock.Advance(absl::Milliseconds(9999));
  absl::Duration retry_after = kUnset;
  EXPECT_FALSE(bucket->TryConsume(1, &retry_after));
  EXPECT_TRUE(DurationNear(retry_after, absl::Milliseconds(1)));
  clock.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(bucket->TryConsume(1));
  retry_after = kUnset;
  EXPECT_FALSE(bucket->TryConsume(1, &retry_after));
  EXPECT_TRUE(DurationNear(retry_after, absl::Seconds(10)));
}

// --- Long uptime ------------------------------------------------------------

// The edges, waits and totals must hold however long the bucket has been
// running, not only near its construction: each row first idles the bucket
// for `uptime`.
struct UptimeCase {
  std::string name;
  double rate;
  absl::Duration uptime;
};

std::ostream& operator<<(std::ostream& os, const UptimeCase& c) {
  return os << c.name;
}

class TokenBucketUptimeTest : public ::testing::TestWithParam<UptimeCase> {
 protected:
  // The time one token takes at the row's rate (a whole number of ns).
  absl::Duration Period() const {
    return absl::Nanoseconds(static_cast<int64_t>(1e9 / GetParam().rate));
  }
};

// 1000 consecutive edges: refused 1 ns before the token is complete,
// admitted at the instant it is.
TEST_P(TokenBucketUptimeTest, EveryEdgeIsExact) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(BucketOptions(
      GetParam().rate, /*burst=*/1, /*initial=*/std::nullopt, &clock));
  ASSERT_NE(bucket, nullptr);
  clock.Advance(GetParam().uptime);
  ASSERT_TRUE(bucket->TryConsume(1));
  int early = 0;
  int refused_at_edge = 0;
  for (int i = 0; i < 1000; ++i) {
    clock.Advance(Period() - absl::Nanoseconds(1));
    if (bucket->TryConsume(1)) ++early;
    clock.Advance(absl::Nanoseconds(1));
    if (!bucket->TryConsume(1)) {
      ++refused_at_edge;
      // Take the late token one nanosecond later so the next edge starts
      // from an empty bucket again.
      clock.Advance(absl::Nanoseconds(1));
      if (!bucket->TryConsume(1)) {
        FAIL() << "still refused 1 ns after edge " << i;
      }
    }
  }
  EXPECT_EQ(early, 0);
  EXPECT_EQ(refused_at_edge, 0) << "of 1000 edges";
}

// A refusal's retry_after is positive, and waiting it (rounded up to the
// clock's nanosecond) is enough.
TEST_P(TokenBucketUptimeTest, WaitingRetryAfterIsEnough) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(BucketOptions(
      GetParam().rate, /*burst=*/1, /*initial=*/std::nullopt, &clock));
  ASSERT_NE(bucket, nullptr);
  clock.Advance(GetParam().uptime);
  ASSERT_TRUE(bucket->TryConsume(1));
  int refusals = 0;
  int zero_retry_after = 0;
  int refused_after_waiting = 0;
  for (int i = 0; i < 1000; ++i) {
    // Half a period, then as long as the bucket says.
    clock.Advance(Period() / 2);
    absl::Duration retry_after = kUnset;
    if (bucket->TryConsume(1, &retry_after)) continue;
    ++refusals;
    if (retry_after <= absl::ZeroDuration()) ++zero_retry_after;
    clock.Advance(absl::Ceil(retry_after, absl::Nanoseconds(1)));
    retry_after = kUnset;
    if (bucket->TryConsume(1, &retry_after)) continue;
    ++refused_after_waiting;
    if (retry_after <= absl::ZeroDuration()) ++zero_retry_after;
    clock.Advance(absl::Nanoseconds(1));
    if (!bucket->TryConsume(1)) {
      FAIL() << "still refused 1 ns after retry_after, round " << i;
    }
  }
  EXPECT_EQ(refusals, 1000);
  EXPECT_EQ(zero_retry_after, 0) << "refusals with retry_after <= 0";
  EXPECT_EQ(refused_after_waiting, 0) << "refused after waiting retry_after";
}

// A full bucket drains to exactly zero at one instant: `burst` admitted, no
// token lost and no fraction of one minted.
TEST_P(TokenBucketUptimeTest, FullBucketDrainsExactlyAtOneInstant) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(BucketOptions(
      GetParam().rate, /*burst=*/100, /*initial=*/std::nullopt, &clock));
  ASSERT_NE(bucket, nullptr);
  clock.Advance(GetParam().uptime);
  int admitted = 0;
  while (admitted < 1000 && bucket->TryConsume(1)) ++admitted;
  EXPECT_EQ(admitted, 100);
  EXPECT_NEAR(bucket->Available(), 0.0, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(
    All, TokenBucketUptimeTest,
    ::testing::ValuesIn(std::vector<UptimeCase>{
        {"ThousandPerSecondAfterTenSeconds", 1e3, absl::Seconds(10)},
        {"ThousandPerSecondAfterAnHour", 1e3, absl::Hours(1)},
        {"ThousandPerSecondAfterThirtyDays", 1e3, absl::Hours(24 * 30)},
        {"MillionPerSecondAfterTenSeconds", 1e6, absl::Seconds(10)},
        {"MillionPerSecondAfterAnHour", 1e6, absl::Hours(1)},
        {"MillionPerSecondAfterThirtyDays", 1e6, absl::Hours(24 * 30)},
    }),
    [](const ::testing::TestParamInfo<UptimeCase>& param_info) {
      return param_info.param.name;
    });

// Over a long run, the bucket admits exactly what accrued: never more (no
// token minted), never less (no token lost). Each row idles the bucket for
// `uptime`, then runs 1000 steps of 100 / rate seconds (100 tokens each,
// with burst 100), offering 300 requests per step. Each step refills the
// bucket exactly, so each admits exactly 100: 100 * 1001 in all, the bound
// burst + rate * time itself.
class TokenBucketLongRunTest : public ::testing::TestWithParam<UptimeCase> {};

TEST_P(TokenBucketLongRunTest, AdmitsExactlyWhatAccrued) {
  const double rate = GetParam().rate;
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(
      BucketOptions(rate, /*burst=*/100, /*initial=*/std::nullopt, &clock));
  ASSERT_NE(bucket, nullptr);
  clock.Advance(GetParam().uptime);
  const absl::Duration step =
      absl::Nanoseconds(static_cast<int64_t>(100 * 1e9 / rate));
  constexpr int kSteps = 1000;
  int64_t admitted = 0;
  for (int s = 0; s <= kSteps; ++s) {
    if (s > 0) clock.Advance(step);
    for (int i = 0; i < 300; ++i) {
      if (bucket->TryConsume(1)) ++admitted;
    }
  }
  const int64_t accrued = 100 + int64_t{100} * kSteps;  // burst + rate * time
  EXPECT_LE(admitted, accrued) << "tokens minted";
  EXPECT_GE(admitted, accrued) << "tokens lost";
}

INSTANTIATE_TEST_SUITE_P(
    All, TokenBucketLongRunTest,
    ::testing::ValuesIn(std::vector<UptimeCase>{
        {"ThousandPerSecondFresh", 1e3, absl::ZeroDuration()},
        {"ThousandPerSecondAfterAnHour", 1e3, absl::Hours(1)},
        {"MillionPerSecondFresh", 1e6, absl::ZeroDuration()},
        {"MillionPerSecondAfterThirtyDays", 1e6, absl::Hours(24 * 30)},
        {"BillionPerSecondFresh", 1e9, absl::ZeroDuration()},
        {"BillionPerSecondAfterThirtyDays", 1e9, absl::Hours(24 * 30)},
        {"BillionPerSecondAfterAYear", 1e9, absl::Hours(24 * 365)},
    }),
    [](const ::testing::TestParamInfo<UptimeCase>& param_info) {
      return param_info.param.name;
    });

TEST(TokenBucketTest, FractionalRequestEdge) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket =
      MakeBucket(BucketOptions(/*rate=*/4, /*burst=*/2, /*initial=*/0, &clock));
  ASSERT_NE(bucket, nullptr);
  // 0.5 tokens accrue in 125 ms.
  clock.Advance(absl::Microseconds(124999));
  absl::Duration retry_after = kUnset;
  EXPECT_FALSE(bucket->TryConsume(0.5, &retry_after));
  EXPECT_TRUE(DurationNear(retry_after, absl::Microseconds(1)));
  clock.Advance(absl::Microseconds(1));
  EXPECT_TRUE(bucket->TryConsume(0.5));
  EXPECT_NEAR(bucket->Available(), 0.0, kTokenTolerance);
}

TEST(TokenBucketTest, ConsumingZeroAlwaysSucceedsAndTakesNothing) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket =
      MakeBucket(BucketOptions(/*rate=*/4, /*burst=*/2, /*initial=*/0, &clock));
  ASSERT_NE(bucket, nullptr);
  EXPECT_TRUE(bucket->TryConsume(0));
  EXPECT_NEAR(bucket->Available(), 0.0, kTokenTolerance);
}

// --- Burst ------------------------------------------------------------------

TEST(TokenBucketTest, BurstCapsAccumulation) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(
      BucketOptions(/*rate=*/10, /*burst=*/5, /*initial=*/0, &clock));
  ASSERT_NE(bucket, nullptr);
  clock.Advance(absl::Hours(1));
  EXPECT_NEAR(bucket->Available(), 5.0, kTokenTolerance);
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(bucket->TryConsume(1)) << "consume " << i;
  }
  absl::Duration retry_after = kUnset;
  EXPECT_FALSE(bucket->TryConsume(1, &retry_after));
  EXPECT_TRUE(DurationNear(retry_after, absl::Milliseconds(100)));
}

TEST(TokenBucketTest, FullBucketByDefault) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(BucketOptions(
      /*rate=*/10, /*burst=*/3, /*initial=*/std::nullopt, &clock));
  ASSERT_NE(bucket, nullptr);
  EXPECT_NEAR(bucket->Available(), 3.0, kTokenTolerance);
  EXPECT_TRUE(bucket->TryConsume(3));
  EXPECT_FALSE(bucket->TryConsume(1));
}

TEST(TokenBucketTest, FractionalBurstCapsAccumulation) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(
      BucketOptions(/*rate=*/4, /*burst=*/2.5, /*initial=*/0, &clock));
  ASSERT_NE(bucket, nullptr);
  clock.Advance(absl::Hours(1));
  EXPECT_NEAR(bucket->Available(), 2.5, kTokenTolerance);
  EXPECT_TRUE(bucket->TryConsume(1));
  EXPECT_TRUE(bucket->TryConsume(1));
  absl::Duration retry_after = kUnset;
  EXPECT_FALSE(bucket->TryConsume(1, &retry_after));
  // Half a token is left; the other half takes 125 ms at 4/s.
  EXPECT_TRUE(DurationNear(retry_after, absl::Milliseconds(125)));
}

TEST(TokenBucketTest, RequestAboveBurstFailsWithInfiniteRetry) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(BucketOptions(
      /*rate=*/10, /*burst=*/5, /*initial=*/std::nullopt, &clock));
  ASSERT_NE(bucket, nullptr);
  absl::Duration retry_after = kUnset;
  EXPECT_FALSE(bucket->TryConsume(5.5, &retry_after));
  EXPECT_EQ(retry_after, absl::InfiniteDuration());
  clock.Advance(absl::Hours(1));
  retry_after = kUnset;
  EXPECT_FALSE(bucket->TryConsume(6, &retry_after));
  EXPECT_EQ(retry_after, absl::InfiniteDuration());
  // Nothing was taken, and exactly `burst` is satisfiable.
  EXPECT_NEAR(bucket->Available(), 5.0, kTokenTolerance);
  EXPECT_TRUE(bucket->TryConsume(5));
}

TEST(TokenBucketTest, RequestAboveBurstOnEmptyBucketIsStillInfinite) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(
      BucketOptions(/*rate=*/10, /*burst=*/5, /*initial=*/0, &clock));
  ASSERT_NE(bucket, nullptr);
  absl::Duration retry_after = kUnset;
  EXPECT_FALSE(bucket->TryConsume(6, &retry_after));
  EXPECT_EQ(retry_after, absl::InfiniteDuration());
  retry_after = kUnset;
  EXPECT_FALSE(bucket->TryConsume(5, &retry_after));
  EXPECT_TRUE(DurationNear(retry_after, absl::Milliseconds(500)));
}

// --- Borrowing --------------------------------------------------------------

TEST(TokenBucketTest, BorrowReturnsZeroWhenTokensAreThere) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(BucketOptions(
      /*rate=*/8, /*burst=*/5, /*initial=*/std::nullopt, &clock));
  ASSERT_NE(bucket, nullptr);
  EXPECT_EQ(bucket->ConsumeWithBorrow(1), absl::ZeroDuration());
  EXPECT_EQ(bucket->ConsumeWithBorrow(4), absl::ZeroDuration());
  EXPECT_NEAR(bucket->Available(), 0.0, kTokenTolerance);
}

TEST(TokenBucketTest, BorrowReturnsExactWait) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(
      BucketOptions(/*rate=*/10, /*burst=*/5, /*initial=*/0, &clock));
  ASSERT_NE(bucket, nullptr);
  std::optional<absl::Duration> wait = bucket->ConsumeWithBorrow(1);
  ASSERT_TRUE(wait.has_value());
  EXPECT_TRUE(DurationNear(*wait, absl::Milliseconds(100)));
  wait = bucket->ConsumeWithBorrow(1);
  ASSERT_TRUE(wait.has_value());
  EXPECT_TRUE(DurationNear(*wait, absl::Milliseconds(200)));
  EXPECT_NEAR(bucket->Available(), -2.0, kTokenTolerance);
}

TEST(TokenBucketTest, BorrowCountsTheTokensThatAreThere) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(
      BucketOptions(/*rate=*/4, /*burst=*/4, /*initial=*/0.5, &clock));
  ASSERT_NE(bucket, nullptr);
  // Half a token is there; the other half takes 125 ms.
  std::optional<absl::Duration> wait = bucket->ConsumeWithBorrow(1);
  ASSERT_TRUE(wait.has_value());
  EXPECT_TRUE(DurationNear(*wait, absl::Milliseconds(125)));
  EXPECT_NEAR(bucket->Available(), -0.5, kTokenTolerance);
}

TEST(TokenBucketTest, BorrowAboveBurstReturnsNulloptAndTakesNothing) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket =
      MakeBucket(BucketOptions(/*rate=*/4, /*burst=*/4, /*initial=*/2, &clock));
  ASSERT_NE(bucket, nullptr);
  EXPECT_EQ(bucket->ConsumeWithBorrow(4.5), std::nullopt);
  EXPECT_NEAR(bucket->Available(), 2.0, kTokenTolerance);
  // Exactly burst is satisfiable (on credit).
  std::optional<absl::Duration> wait = bucket->ConsumeWithBorrow(4);
  ASSERT_TRUE(wait.has_value());
  EXPECT_TRUE(DurationNear(*wait, absl::Milliseconds(500)));
}

TEST(TokenBucketTest, TryConsumeFailsUntilTheDebtIsPaid) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket =
      MakeBucket(BucketOptions(/*rate=*/4, /*burst=*/4, /*initial=*/0, &clock));
  ASSERT_NE(bucket, nullptr);
  std::optional<absl::Duration> wait = bucket->ConsumeWithBorrow(2);
  ASSERT_TRUE(wait.has_value());
  EXPECT_TRUE(DurationNear(*wait, absl::Milliseconds(500)));
  EXPECT_NEAR(bucket->Available(), -2.0, kTokenTolerance);
  EXPECT_LT(bucket->Available(), 0);

  // The debt is paid at 500 ms; one more token needs another 250 ms.
  absl::Duration retry_after = kUnset;
  EXPECT_FALSE(bucket->TryConsume(1, &retry_after));
  EXPECT_TRUE(DurationNear(retry_after, absl::Milliseconds(750)));
  clock.Advance(absl::Milliseconds(500));
  EXPECT_NEAR(bucket->Available(), 0.0, kTokenTolerance);
  clock.Advance(absl::Milliseconds(249));
  retry_after = kUnset;
  EXPECT_FALSE(bucket->TryConsume(1, &retry_after));
  EXPECT_TRUE(DurationNear(retry_after, absl::Milliseconds(1)));
  clock.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(bucket->TryConsume(1));
}

// --- Return -----------------------------------------------------------------

TEST(TokenBucketTest, ReturnGivesTokensBackUpToBurst) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(BucketOptions(
      /*rate=*/4, /*burst=*/5, /*initial=*/std::nullopt, &clock));
  ASSERT_NE(bucket, nullptr);
  ASSERT_TRUE(bucket->TryConsume(3));
  EXPECT_NEAR(bucket->Available(), 2.0, kTokenTolerance);
  bucket->Return(2);
  EXPECT_NEAR(bucket->Available(), 4.0, kTokenTolerance);
  bucket->Return(10);
  EXPECT_NEAR(bucket->Available(), 5.0, kTokenTolerance);
  // The cap is real: only burst can be taken, not 4 + 10.
  EXPECT_TRUE(bucket->TryConsume(5));
  EXPECT_FALSE(bucket->TryConsume(1));
}

TEST(TokenBucketTest, ReturnPaysOffBorrowedTokens) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket =
      MakeBucket(BucketOptions(/*rate=*/4, /*burst=*/4, /*initial=*/0, &clock));
  ASSERT_NE(bucket, nullptr);
  ASSERT_TRUE(bucket->ConsumeWithBorrow(2).has_value());
  EXPECT_NEAR(bucket->Available(), -2.0, kTokenTolerance);
  bucket->Return(1);
  EXPECT_NEAR(bucket->Available(), -1.0, kTokenTolerance);
  bucket->Return(2);
  EXPECT_NEAR(bucket->Available(), 1.0, kTokenTolerance);
  EXPECT_TRUE(bucket->TryConsume(1));
  EXPECT_FALSE(bucket->TryConsume(1));
}

TEST(TokenBucketTest, ReturnOnFullBucketChangesNothing) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(BucketOptions(
      /*rate=*/4, /*burst=*/2, /*initial=*/std::nullopt, &clock));
  ASSERT_NE(bucket, nullptr);
  bucket->Return(1);
  EXPECT_NEAR(bucket->Available(), 2.0, kTokenTolerance);
  clock.Advance(absl::Seconds(10));
  EXPECT_NEAR(bucket->Available(), 2.0, kTokenTolerance);
  EXPECT_TRUE(bucket->TryConsume(2));
  EXPECT_FALSE(bucket->TryConsume(1));
}

// --- Exact balance over a sequence -----------------------------------------

// Available() after every step of a sequence of idles, consumes and
// refusals. Idle time past a full bucket is lost, never stored: the zero
// time only moves forward, and a refusal takes nothing.
TEST(TokenBucketTest, AvailableFollowsAnExactSequence) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket =
      MakeBucket(BucketOptions(/*rate=*/4, /*burst=*/8, /*initial=*/0, &clock));
  ASSERT_NE(bucket, nullptr);
  struct Step {
    absl::Duration advance;
    double consume;
    bool admitted;
    double available_after;
  };
  const Step steps[] = {
      {absl::ZeroDuration(), 1, false, 0},
      {absl::Milliseconds(250), 0, true, 1},
      {absl::Milliseconds(250), 1, true, 1},
      {absl::ZeroDuration(), 1, true, 0},
      {absl::ZeroDuration(), 1, false, 0},
      {absl::Milliseconds(500), 3, false, 2},
      {absl::Milliseconds(250), 3, true, 0},
      {absl::Seconds(10), 0, true, 8},  // 40 tokens' worth of idle, capped.
      {absl::ZeroDuration(), 0.5, true, 7.5},
      {absl::Milliseconds(125), 0, true, 8},
      {absl::Seconds(1), 8, true, 0},
      {absl::Milliseconds(1750), 7, true, 0},
      {absl::Milliseconds(250), 2, false, 1},
      {absl::ZeroDuration(), 1, true, 0},
      {absl::Hours(24), 8, true, 0},
  };
  int i = 0;
  for (const Step& step : steps) {
    clock.Advance(step.advance);
    EXPECT_EQ(bucket->TryConsume(step.consume), step.admitted) << "step " << i;
    EXPECT_NEAR(bucket->Available(), step.available_after, kTokenTolerance)
        << "step " << i;
    ++i;
  }
}

TEST(TokenBucketTest, RefusalTakesNothing) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket =
      MakeBucket(BucketOptions(/*rate=*/4, /*burst=*/8, /*initial=*/2, &clock));
  ASSERT_NE(bucket, nullptr);
  for (int i = 0; i < 100; ++i) {
    EXPECT_FALSE(bucket->TryConsume(3));
  }
  EXPECT_NEAR(bucket->Available(), 2.0, kTokenTolerance);
  EXPECT_TRUE(bucket->TryConsume(2));
}

// --- Threads ----------------------------------------------------------------

// Starts `n` threads running `body(thread_index)` together and joins them.
template <typename Body>
void RunThreads(int n, Body body) {
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (int t = 0; t < n; ++t) {
    threads.emplace_back([&go, &body, t] {
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      body(t);
    });
  }
  go.store(true, std::memory_order_release);
  for (std::thread& thread : threads) thread.join();
}

TEST(TokenBucketThreadsTest, FrozenClockAdmitsExactlyBurst) {
  SimulatedClock clock;
  InMemoryMetricsSink sink;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(BucketOptions(
      /*rate=*/1000, /*burst=*/100, /*initial=*/std::nullopt, &clock, &sink));
  ASSERT_NE(bucket, nullptr);
  constexpr int kThreads = 4;
  constexpr int kAttempts = 1000;
  std::atomic<int64_t> admitted{0};
  RunThreads(kThreads, [&](int) {
    int64_t mine = 0;
    for (int i = 0; i < kAttempts; ++i) {
      if (bucket->TryConsume(1)) ++mine;
    }
    admitted.fetch_add(mine);
  });
  EXPECT_EQ(admitted.load(), 100);
  EXPECT_EQ(sink.CounterValue("spillway_admitted_total",
                              {"default", "token_bucket", "any"}),
            100);
  EXPECT_EQ(
      sink.CounterValue("spillway_rejected_total",
                        {"default", "token_bucket", "any", "rate_limited"}),
      kThreads * kAttempts - 100);
}

TEST(TokenBucketThreadsTest, AdvancingClockNeverAdmitsMoreThanBurstPlusRefill) {
  SimulatedClock clock;
  InMemoryMetricsSink sink;
  constexpr double kRate = 1000;
  constexpr double kBurst = 10;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(
      BucketOptions(kRate, kBurst, /*initial=*/std::nullopt, &clock, &sink));
  ASSERT_NE(bucket, nullptr);
  constexpr int kThreads = 3;
  constexpr int kAttempts = 200000;
  constexpr int kSteps = 200;
  const absl::Duration kStep = absl::Milliseconds(1);

  std::atomic<bool> go{false};
  std::atomic<bool> done{false};
  std::atomic<int64_t> admitted{0};
  std::atomic<int64_t> attempted{0};
  std::atomic<int64_t> progress{0};  // Attempts so far, all threads.
  std::atomic<int> finished{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      int64_t mine = 0;
      int i = 0;
      for (; i < kAttempts && !done.load(std::memory_order_relaxed); ++i) {
        if (bucket->TryConsume(1)) ++mine;
        progress.fetch_add(1, std::memory_order_relaxed);
      }
      admitted.fetch_add(mine);
      attempted.fetch_add(i);
      finished.fetch_add(1);
    });
  }
  go.store(true, std::memory_order_release);
  // Real time only as a safety timeout: the steps wait for the consumers to
  // make progress, so consuming and advancing really interleave.
  const auto safety_deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (int s = 0; s < kSteps; ++s) {
    clock.Advance(kStep);
    const int64_t target =
        progress.load(std::memory_order_relaxed) + 4 * kThreads;
    while (progress.load(std::memory_order_relaxed) < target &&
           finished.load() < kThreads &&
           std::chrono::steady_clock::now() < safety_deadline) {
      std::this_thread::yield();
    }
  }
  done.store(true, std::memory_order_relaxed);
  for (std::thread& thread : threads) thread.join();
  ASSERT_LT(std::chrono::steady_clock::now(), safety_deadline)
      << "consumers made no progress";

  // Exact bound: what the bucket held plus what accrued in 200 ms at 1000/s.
  const int64_t bound = static_cast<int64_t>(kBurst) + kSteps;  // 210
  EXPECT_LE(admitted.load(), bound);
  // Whatever is left plus what was taken never exceeds the bound either.
  EXPECT_LE(static_cast<double>(admitted.load()) + bucket->Available(),
            bound + 1e-6);
  EXPECT_EQ(sink.CounterValue("spillway_admitted_total",
                              {"default", "token_bucket", "any"}),
            admitted.load());
  EXPECT_EQ(
      sink.CounterValue("spillway_rejected_total",
                        {"default", "token_bucket", "any", "rate_limited"}),
      attempted.load() - admitted.load());
}

// Every value is a multiple of 1/128 s at a rate of 128/s, so the math is
// exact and the totals do not depend on the interleaving.
TEST(TokenBucketThreadsTest, ConcurrentBorrowsAddUpExactly) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(BucketOptions(
      /*rate=*/128, /*burst=*/64, /*initial=*/std::nullopt, &clock));
  ASSERT_NE(bucket, nullptr);
  constexpr int kThreads = 4;
  constexpr int kBorrows = 50;
  std::vector<absl::Duration> total_wait(kThreads, absl::ZeroDuration());
  std::vector<absl::Duration> max_wait(kThreads, absl::ZeroDuration());
  std::atomic<int> refused{0};
  RunThreads(kThreads, [&](int t) {
    for (int i = 0; i < kBorrows; ++i) {
      std::optional<absl::Duration> wait = bucket->ConsumeWithBorrow(1);
      if (!wait.has_value()) {
        refused.fetch_add(1);
        continue;
      }
      total_wait[t] += *wait;
      max_wait[t] = std::max(max_wait[t], *wait);
    }
  });
  EXPECT_EQ(refused.load(), 0);
  // 200 tokens taken from 64: a debt of 136.
  EXPECT_NEAR(bucket->Available(), -136.0, kTokenTolerance);
  // Borrow k (k = 1..136) waits k/128 s: 136*137/2 = 9316 of them in total.
  absl::Duration sum = absl::ZeroDuration();
  absl::Duration longest = absl::ZeroDuration();
  for (int t = 0; t < kThreads; ++t) {
    sum += total_wait[t];
    longest = std::max(longest, max_wait[t]);
  }
  EXPECT_TRUE(DurationNear(sum, absl::Seconds(9316) / 128,
                           /*tolerance=*/absl::Nanoseconds(136)));
  EXPECT_TRUE(DurationNear(longest, absl::Seconds(136) / 128,
                           /*tolerance=*/absl::Nanoseconds(1)));
}

TEST(TokenBucketThreadsTest, ConcurrentBorrowAndReturnRestoresTheBalance) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(BucketOptions(
      /*rate=*/128, /*burst=*/16, /*initial=*/std::nullopt, &clock));
  ASSERT_NE(bucket, nullptr);
  RunThreads(4, [&](int) {
    for (int i = 0; i < 1000; ++i) {
      if (bucket->ConsumeWithBorrow(2).has_value()) bucket->Return(2);
    }
  });
  EXPECT_NEAR(bucket->Available(), 16.0, kTokenTolerance);
  EXPECT_TRUE(bucket->TryConsume(16));
  EXPECT_FALSE(bucket->TryConsume(1));
}

// Sizes 1 and 3 contend on a frozen clock, so a consume often finds the word
// changed between its read and its compare-exchange, and the last tokens
// fit one size but not the other. Every token is accounted for: what was
// admitted plus what is left is exactly the burst, nothing lost and nothing
// minted.
TEST(TokenBucketThreadsTest, MixedSizesOnAFrozenClockAccountForEveryToken) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(BucketOptions(
      /*rate=*/1000, /*burst=*/1000, /*initial=*/std::nullopt, &clock));
  ASSERT_NE(bucket, nullptr);
  constexpr int kThreads = 4;
  std::atomic<int64_t> taken{0};
  RunThreads(kThreads, [&](int t) {
    const int size = t % 2 == 0 ? 1 : 3;
    int64_t mine = 0;
    for (int i = 0; i < 2000; ++i) {
      if (bucket->TryConsume(size)) mine += size;
    }
    taken.fetch_add(mine);
  });
  EXPECT_LE(taken.load(), 1000);
  EXPECT_GE(taken.load(), 998) << "tokens left that no size could take";
  EXPECT_NEAR(static_cast<double>(taken.load()) + bucket->Available(), 1000.0,
              kTokenTolerance);
}

// --- SetRate ----------------------------------------------------------------

TEST(TokenBucketTest, SetRateKeepsTheBalanceAndAppliesTheNewRate) {
  SimulatedClock clock;
  InMemoryMetricsSink sink;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(
      BucketOptions(/*rate=*/4, /*burst=*/8, /*initial=*/0, &clock, &sink));
  ASSERT_NE(bucket, nullptr);
  clock.Advance(absl::Milliseconds(500));
  ASSERT_NEAR(bucket->Available(), 2.0, kTokenTolerance);

  ASSERT_TRUE(bucket->SetRate(16, 16).ok());
  EXPECT_EQ(bucket->rate(), 16.0);
  EXPECT_EQ(bucket->burst(), 16.0);
  EXPECT_NEAR(bucket->Available(), 2.0, kTokenTolerance);

  // At 16/s a token takes 62.5 ms (at the old 4/s it took 250 ms).
  ASSERT_TRUE(bucket->TryConsume(2));
  clock.Advance(absl::Microseconds(62499));
  absl::Duration retry_after = kUnset;
  EXPECT_FALSE(bucket->TryConsume(1, &retry_after));
  EXPECT_TRUE(DurationNear(retry_after, absl::Microseconds(1)));
  clock.Advance(absl::Microseconds(1));
  EXPECT_TRUE(bucket->TryConsume(1));
  // And the new burst holds: a long idle gives 16, not 8.
  clock.Advance(absl::Hours(1));
  EXPECT_NEAR(bucket->Available(), 16.0, kTokenTolerance);
}

TEST(TokenBucketTest, SetRateCapsTheBalanceAtTheNewBurst) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(BucketOptions(
      /*rate=*/10, /*burst=*/10, /*initial=*/std::nullopt, &clock));
  ASSERT_NE(bucket, nullptr);
  ASSERT_TRUE(bucket->SetRate(10, 3).ok());
  EXPECT_NEAR(bucket->Available(), 3.0, kTokenTolerance);
  EXPECT_TRUE(bucket->TryConsume(1));
  EXPECT_TRUE(bucket->TryConsume(1));
  EXPECT_TRUE(bucket->TryConsume(1));
  EXPECT_FALSE(bucket->TryConsume(1));
}

TEST(TokenBucketTest, RaisingBurstDoesNotMintTokens) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket =
      MakeBucket(BucketOptions(/*rate=*/4, /*burst=*/4, /*initial=*/1, &clock));
  ASSERT_NE(bucket, nullptr);
  ASSERT_TRUE(bucket->SetRate(4, 64).ok());
  EXPECT_NEAR(bucket->Available(), 1.0, kTokenTolerance);
  EXPECT_TRUE(bucket->TryConsume(1));
  EXPECT_FALSE(bucket->TryConsume(1));
}

TEST(TokenBucketTest, SetRateKeepsTheDebt) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket =
      MakeBucket(BucketOptions(/*rate=*/4, /*burst=*/4, /*initial=*/0, &clock));
  ASSERT_NE(bucket, nullptr);
  ASSERT_TRUE(bucket->ConsumeWithBorrow(2).has_value());
  ASSERT_TRUE(bucket->SetRate(64, 4).ok());
  EXPECT_NEAR(bucket->Available(), -2.0, kTokenTolerance);
  // Two tokens of debt plus one token at 64/s: 46.875 ms.
  clock.Advance(absl::Microseconds(46874));
  absl::Duration retry_after = kUnset;
  EXPECT_FALSE(bucket->TryConsume(1, &retry_after));
  EXPECT_TRUE(DurationNear(retry_after, absl::Microseconds(1)));
  clock.Advance(absl::Microseconds(1));
  EXPECT_TRUE(bucket->TryConsume(1));
}

// Consumers race rate changes on a frozen clock. SetRate keeps the balance
// and the two rates are powers of two apart, so every balance is a whole
// number of tokens in either unit: the tokens admitted plus the tokens left
// add up to the burst exactly. A consume that computed with one rate and
// landed after the switch to the other would break the sum by a factor of
// 4; the generation check, and the generation's tag in the word the
// compare-exchange compares, make it retry instead.
//
// The rate changer of these tests: alternates the rate between 4096 and 1024
// tokens per second, at `burst`, until all `consumers` have finished.
void AlternateRate(TokenBucket& bucket, double burst, int consumers,
                   const std::atomic<int>& consumers_done,
                   std::atomic<int64_t>& rate_changes) {
  for (int i = 0; consumers_done.load() < consumers; ++i) {
    ASSERT_TRUE(bucket.SetRate(i % 2 == 0 ? 4096 : 1024, burst).ok());
    rate_changes.fetch_add(1);
  }
}

TEST(TokenBucketThreadsTest, ConsumesRacingSetRateAreChargedExactly) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(BucketOptions(
      /*rate=*/1024, /*burst=*/100000, /*initial=*/std::nullopt, &clock));
  ASSERT_NE(bucket, nullptr);
  constexpr int kConsumers = 3;
  std::atomic<int> consumers_done{0};
  std::atomic<int64_t> taken{0};
  std::atomic<int64_t> rate_changes{0};
  RunThreads(kConsumers + 1, [&](int t) {
    if (t == kConsumers) {
      AlternateRate(*bucket, 100000, kConsumers, consumers_done, rate_changes);
      return;
    }
    // At least 20,000 rounds, and on until the changer has switched the
    // rate 200 times (bounded: the threads may be scheduled one by one).
    int64_t mine = 0;
    for (int i = 0; i < 10'000'000 && (i < 20'000 || rate_changes.load() < 200);
         ++i) {
      if (bucket->TryConsume(1)) ++mine;
      if (bucket->ConsumeWithBorrow(1).has_value()) ++mine;
    }
    taken.fetch_add(mine);
    consumers_done.fetch_add(1);
  });
  EXPECT_GE(rate_changes.load(), 200);
  EXPECT_GT(taken.load(), 0);
  EXPECT_NEAR(static_cast<double>(taken.load()) + bucket->Available(), 100000.0,
              kTokenTolerance);
}

// A rate change rebases the balance into the new rate's units. At a balance
// of exactly zero the rebased state is the state it replaced, so a consume
// that read the old rate just before the change could still land after it
// and be charged the old rate's worth of time (a quarter or four tokens
// here, not one). Each consumer borrows one token and returns it, so the
// balance hovers at zero while the rate alternates; every token taken must
// be given back exactly.
TEST(TokenBucketThreadsTest,
     BorrowsAtZeroBalanceRacingSetRateAreChargedExactly) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(
      BucketOptions(/*rate=*/1024, /*burst=*/1000, /*initial=*/0, &clock));
  ASSERT_NE(bucket, nullptr);
  constexpr int kConsumers = 2;
  std::atomic<int> consumers_done{0};
  std::atomic<int64_t> rate_changes{0};
  RunThreads(kConsumers + 1, [&](int t) {
    if (t == kConsumers) {
      AlternateRate(*bucket, 1000, kConsumers, consumers_done, rate_changes);
      return;
    }
    // At least 50,000 rounds, and on until the changer has switched the
    // rate 2,000 times (bounded: the threads may be scheduled one by one).
    for (int i = 0;
         i < 10'000'000 && (i < 50'000 || rate_changes.load() < 2'000); ++i) {
      if (!bucket->ConsumeWithBorrow(1).has_value()) {
        ADD_FAILURE() << "a borrow of 1 token was refused";
        break;  // On to consumers_done, so the changer stops.
      }
      bucket->Return(1);
    }
    consumers_done.fetch_add(1);
  });
  EXPECT_GE(rate_changes.load(), 2'000);
  EXPECT_NEAR(bucket->Available(), 0.0, kTokenTolerance);
}

struct InvalidSetRate {
  std::string name;
  double rate;
  double burst;
  std::string field;  // In the message.
  std::string value;  // In the message, as the library prints it.
};

class TokenBucketSetRateInvalidTest
    : public ::testing::TestWithParam<InvalidSetRate> {};

TEST_P(TokenBucketSetRateInvalidTest, RejectsAndChangesNothing) {
  const InvalidSetRate& p = GetParam();
  SimulatedClock clock;
  InMemoryMetricsSink sink;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(
      BucketOptions(/*rate=*/4, /*burst=*/8, /*initial=*/2, &clock, &sink));
  ASSERT_NE(bucket, nullptr);

  const absl::Status status = bucket->SetRate(p.rate, p.burst);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(p.field));
  EXPECT_THAT(std::string(status.message()), HasSubstr("got " + p.value));

  EXPECT_EQ(bucket->rate(), 4.0);
  EXPECT_EQ(bucket->burst(), 8.0);
  EXPECT_NEAR(bucket->Available(), 2.0, kTokenTolerance);
  EXPECT_EQ(sink.GaugeValue("spillway_bucket_rate", {"default"}), 4.0);
  EXPECT_EQ(sink.GaugeValue("spillway_bucket_burst", {"default"}), 8.0);
  // The old rate still applies: the next token is 250 ms away.
  ASSERT_TRUE(bucket->TryConsume(2));
  clock.Advance(absl::Milliseconds(249));
  EXPECT_FALSE(bucket->TryConsume(1));
  clock.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(bucket->TryConsume(1));
}

INSTANTIATE_TEST_SUITE_P(
    All, TokenBucketSetRateInvalidTest,
    ::testing::ValuesIn(std::vector<InvalidSetRate>{
        {"RateZero", 0, 8, "rate", "0"},
        {"RateNegative", -1, 8, "rate", "-1"},
        {"RateNaN", std::numeric_limits<double>::quiet_NaN(), 8, "rate", "nan"},
        {"RateInfinite", std::numeric_limits<double>::infinity(), 8, "rate",
         "inf"},
        {"RateAboveMax", 2e9, 8, "rate", "2e+09"},
        {"BurstBelowOne", 4, 0.5, "burst", "0.5"},
        {"BurstNaN", 4, std::numeric_limits<double>::quiet_NaN(), "burst",
         "nan"},
        {"BurstInfinite", 4, std::numeric_limits<double>::infinity(), "burst",
         "inf"},
        {"BurstAboveMax", 4, 2e9, "burst", "2e+09"},
    }),
    [](const ::testing::TestParamInfo<InvalidSetRate>& param_info) {
      return param_info.param.name;
    });

TEST(TokenBucketTest, SetRateAcceptsTheLimits) {
  SimulatedClock clock;
  std::unique_ptr<TokenBucket> bucket =
      MakeBucket(BucketOptions(/*rate=*/4, /*burst=*/8, /*initial=*/2, &clock));
  ASSERT_NE(bucket, nullptr);
  EXPECT_TRUE(bucket->SetRate(1e9, 1e9).ok());
  EXPECT_EQ(bucket->rate(), 1e9);
  EXPECT_EQ(bucket->burst(), 1e9);
  EXPECT_TRUE(bucket->SetRate(0.5, 1).ok());
  EXPECT_EQ(bucket->rate(), 0.5);
  EXPECT_EQ(bucket->burst(), 1.0);
}

// --- Simulation table -------------------------------------------------------

// Simulates 10 s in 1 ms steps: attempts at t = 0, 1, ..., 10000 ms, each
// offering `offered` single-token requests. The bucket starts full.
struct SimulationCase {
  std::string name;
  double rate;
  double burst;
  int offered;  // Requests per step.
};

std::ostream& operator<<(std::ostream& os, const SimulationCase& c) {
  return os << c.name << "{rate=" << c.rate << ", burst=" << c.burst
            << ", offered/ms=" << c.offered << "}";
}

constexpr int kSimSteps = 10000;           // 1 ms each: 10 s.
constexpr int kSimPoints = kSimSteps + 1;  // Attempts at both ends.
constexpr double kSimSeconds = 10.0;

struct AdmittedBounds {
  int64_t lower;
  int64_t upper;
};

// The admitted total in exact arithmetic. With r = rate per step (rate/1000)
// and B = burst:
//  * offered <= r and offered <= B: the bucket never runs short (it starts at
//    B >= offered and gains r >= offered per step), so every request is
//    admitted: offered * 10001.
//  * r >= B: every step refills the bucket completely, so each step admits
//    min(offered, floor(B)): exactly that times 10001.
//  * offered > r and B >= r + 1: the bucket drains (by offered - r per step)
//    and, once drained, holds less than one token after every step and less
//    than 1 + r <= B before it, so no refill is ever capped away. Then
//    admitted = B + 10 * rate - leftover with leftover in [0, 1): admitted is
//    exactly floor(B + 10 * rate). Requires the drain to finish in time.
// Rows outside these regimes are a mistake in the table.
std::optional<AdmittedBounds> DeriveBounds(const SimulationCase& c) {
  const double r = c.rate / 1000.0;
  const double k = c.offered;
  if (k <= r && k <= c.burst) {
    const int64_t all = int64_t{c.offered} * kSimPoints;
    return AdmittedBounds{all, all};
  }
  if (r >= c.burst) {
    const int64_t per_step =
        std::min<int64_t>(c.offered, static_cast<int64_t>(c.burst));
    return AdmittedBounds{per_step * kSimPoints, per_step * kSimPoints};
  }
  if (k > r && c.burst >= r + 1 && c.burst / (k - r) < kSimSteps / 2) {
    const int64_t n =
        static_cast<int64_t>(std::floor(c.burst + kSimSeconds * c.rate));
    return AdmittedBounds{n, n};
  }
  return std::nullopt;
}

class TokenBucketSimulationTest
    : public ::testing::TestWithParam<SimulationCase> {};

TEST_P(TokenBucketSimulationTest, AdmittedLiesWithinDerivedBounds) {
  const SimulationCase& c = GetParam();
  const std::optional<AdmittedBounds> bounds = DeriveBounds(c);
  ASSERT_TRUE(bounds.has_value()) << "no derivation for " << c;
  // Never more than what the bucket held plus what accrued, nor more than
  // was offered: the derivation itself must respect that.
  ASSERT_LE(bounds->upper,
            static_cast<int64_t>(std::floor(c.burst + kSimSeconds * c.rate)));
  ASSERT_LE(bounds->upper, int64_t{c.offered} * kSimPoints);

  SimulatedClock clock;
  InMemoryMetricsSink sink;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(
      BucketOptions(c.rate, c.burst, /*initial=*/std::nullopt, &clock, &sink));
  ASSERT_NE(bucket, nullptr);
  int64_t admitted = 0;
  for (int step = 0; step <= kSimSteps; ++step) {
    if (step > 0) clock.Advance(absl::Milliseconds(1));
    for (int i = 0; i < c.offered; ++i) {
      if (bucket->TryConsume(1)) ++admitted;
    }
  }
  EXPECT_GE(admitted, bounds->lower) << c;
  EXPECT_LE(admitted, bounds->upper) << c;
  EXPECT_EQ(sink.CounterValue("spillway_admitted_total",
                              {"default", "token_bucket", "any"}),
            admitted);
  EXPECT_EQ(
      sink.CounterValue("spillway_rejected_total",
                        {"default", "token_bucket", "any", "rate_limited"}),
      int64_t{c.offered} * kSimPoints - admitted);
}

INSTANTIATE_TEST_SUITE_P(
    All, TokenBucketSimulationTest,
    ::testing::ValuesIn(std::vector<SimulationCase>{
        // Saturated: offered above the rate.
        {"HalfPerSecond", 0.5, 2, 1},             // 2 + 5 = 7
        {"HalfPerSecondHeavy", 0.5, 2, 50},       // 7
        {"TenPerSecond", 10, 5, 1},               // 5 + 100 = 105
        {"FractionalBurst", 10, 2.5, 1},          // floor(102.5) = 102
        {"ThousandPerSecond", 1000, 10, 2},       // 10 + 10000
        {"ThousandPerSecondHeavy", 1000, 10, 7},  // 10 + 10000
        {"MillionPerSecond", 1e6, 2000, 1500},    // 2000 + 1e7
        // Below the rate: everything is admitted.
        {"BelowRate", 1500, 20, 1},      // 10001
        {"AtRate", 1000, 100, 1},        // 10001
        {"WellBelowRate", 1e6, 1e6, 3},  // 30003
        // The refill of one step fills the bucket: burst per step.
        {"MillionPerSecondSmallBurst", 1e6, 100, 200},  // 100 * 10001
        {"MillionPerSecondBurstOne", 1e6, 1, 1},        // 10001
        {"BillionPerSecond", 1e9, 50, 60},              // 50 * 10001
    }),
    [](const ::testing::TestParamInfo<SimulationCase>& param_info) {
      return param_info.param.name;
    });

// --- Metrics ----------------------------------------------------------------

TEST(TokenBucketMetricsTest, CountsEveryDecision) {
  SimulatedClock clock;
  InMemoryMetricsSink sink;
  TokenBucketOptions options = BucketOptions(
      /*rate=*/4, /*burst=*/2, /*initial=*/std::nullopt, &clock, &sink);
  options.name = "orders";
  std::unique_ptr<TokenBucket> bucket = MakeBucket(options);
  ASSERT_NE(bucket, nullptr);
  const LabelValues admitted = {"orders", "token_bucket", "any"};
  const LabelValues rejected = {"orders", "token_bucket", "any",
                                "rate_limited"};
  EXPECT_EQ(sink.CounterValue("spillway_admitted_total", admitted), 0);
  EXPECT_EQ(sink.CounterValue("spillway_rejected_total", rejected), 0);

  EXPECT_TRUE(bucket->TryConsume(1));
  EXPECT_TRUE(bucket->TryConsume(1));
  EXPECT_FALSE(bucket->TryConsume(1));
  EXPECT_FALSE(bucket->TryConsume(3));  // Above burst.
  EXPECT_EQ(sink.CounterValue("spillway_admitted_total", admitted), 2);
  EXPECT_EQ(sink.CounterValue("spillway_rejected_total", rejected), 2);

  EXPECT_TRUE(bucket->ConsumeWithBorrow(1).has_value());
  EXPECT_FALSE(bucket->ConsumeWithBorrow(3).has_value());
  EXPECT_EQ(sink.CounterValue("spillway_admitted_total", admitted), 3);
  EXPECT_EQ(sink.CounterValue("spillway_rejected_total", rejected), 3);

  // Returning and reading are not decisions.
  bucket->Return(1);
  EXPECT_NEAR(bucket->Available(), 0.0, kTokenTolerance);
  EXPECT_EQ(sink.CounterValue("spillway_admitted_total", admitted), 3);
  EXPECT_EQ(sink.CounterValue("spillway_rejected_total", rejected), 3);

  // Nothing is reported under another throttle name.
  EXPECT_EQ(sink.CounterSum("spillway_admitted_total"), 3);
  EXPECT_EQ(sink.CounterSum("spillway_rejected_total"), 3);
}

TEST(TokenBucketMetricsTest, GaugesFollowSetRate) {
  SimulatedClock clock;
  InMemoryMetricsSink sink;
  TokenBucketOptions options = BucketOptions(
      /*rate=*/500, /*burst=*/50, /*initial=*/std::nullopt, &clock, &sink);
  options.name = "orders";
  std::unique_ptr<TokenBucket> bucket = MakeBucket(options);
  ASSERT_NE(bucket, nullptr);
  EXPECT_EQ(sink.GaugeValue("spillway_bucket_rate", {"orders"}), 500.0);
  EXPECT_EQ(sink.GaugeValue("spillway_bucket_burst", {"orders"}), 50.0);

  ASSERT_TRUE(bucket->SetRate(250, 25).ok());
  EXPECT_EQ(sink.GaugeValue("spillway_bucket_rate", {"orders"}), 250.0);
  EXPECT_EQ(sink.GaugeValue("spillway_bucket_burst", {"orders"}), 25.0);

  EXPECT_FALSE(bucket->SetRate(-1, 25).ok());
  EXPECT_EQ(sink.GaugeValue("spillway_bucket_rate", {"orders"}), 250.0);
  EXPECT_EQ(sink.GaugeValue("spillway_bucket_burst", {"orders"}), 25.0);
}

TEST(TokenBucketMetricsTest, ReportsUnderTheDocumentedNames) {
  SimulatedClock clock;
  InMemoryMetricsSink sink;
  std::unique_ptr<TokenBucket> bucket = MakeBucket(BucketOptions(
      /*rate=*/4, /*burst=*/2, /*initial=*/std::nullopt, &clock, &sink));
  ASSERT_NE(bucket, nullptr);
  EXPECT_THAT(sink.MetricNames(),
              ::testing::ElementsAre(
                  "spillway_admitted_total", "spillway_bucket_burst",
                  "spillway_bucket_rate", "spillway_rejected_total"));
  EXPECT_EQ(metrics::kAdmitted.name, "spillway_admitted_total");
  EXPECT_EQ(metrics::kRejected.name, "spillway_rejected_total");
}

}  // namespace
}  // namespace spillway
