// Tests of the concurrency-limit algorithms: FixedLimit and AimdLimit, each
// on its own, then one typed suite of the properties every Limit must have.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spillway/aimd_limit.h"
#include "spillway/fixed_limit.h"
#include "spillway/limit.h"

namespace spillway {
namespace {

// Samples take their round-trip time as an absl::Duration, as the options'
// timeout is one; the sample itself carries std::chrono nanoseconds.
LimitSample Success(int in_flight,
                    absl::Duration rtt = absl::Milliseconds(10)) {
  LimitSample sample;
  sample.rtt = absl::ToChronoNanoseconds(rtt);
  sample.in_flight = in_flight;
  return sample;
}

LimitSample Drop(int in_flight = 1) {
  LimitSample sample;
  sample.rtt = std::chrono::milliseconds(10);
  sample.in_flight = in_flight;
  sample.dropped = true;
  return sample;
}

AimdLimitOptions Aimd(int initial, int min, int max) {
  AimdLimitOptions options;
  options.initial_limit = initial;
  options.min_limit = min;
  options.max_limit = max;
  return options;
}

// Builds a limit; a failure is reported and yields nullptr, which the caller
// checks with ASSERT_NE.
template <typename T>
std::unique_ptr<T> Unwrap(absl::StatusOr<std::unique_ptr<T>> limit) {
  if (!limit.ok()) {
    ADD_FAILURE() << limit.status();
    return nullptr;
  }
  return *std::move(limit);
}

std::unique_ptr<AimdLimit> MakeAimd(const AimdLimitOptions& options) {
  return Unwrap(AimdLimit::Create(options));
}

// --- FixedLimit -------------------------------------------------------------

TEST(FixedLimitTest, IsTheConfiguredValue) {
  std::unique_ptr<FixedLimit> limit = Unwrap(FixedLimit::Create(16));
  ASSERT_NE(limit, nullptr);
  EXPECT_EQ(limit->current(), 16);
  EXPECT_EQ(limit->max_limit(), 16);
}

TEST(FixedLimitTest, IgnoresEverySample) {
  std::unique_ptr<FixedLimit> limit = Unwrap(FixedLimit::Create(16));
  ASSERT_NE(limit, nullptr);
  limit->OnSample(Drop());
  EXPECT_EQ(limit->current(), 16);
  limit->OnSample(Success(16, absl::Hours(1)));  // A timeout for AIMD.
  EXPECT_EQ(limit->current(), 16);
  for (int i = 0; i < 100; ++i) limit->OnSample(Success(1000));
  EXPECT_EQ(limit->current(), 16);
  EXPECT_EQ(limit->max_limit(), 16);
}

TEST(FixedLimitTest, AcceptsTheExtremes) {
  std::unique_ptr<FixedLimit> one = Unwrap(FixedLimit::Create(1));
  ASSERT_NE(one, nullptr);
  EXPECT_EQ(one->current(), 1);
  std::unique_ptr<FixedLimit> most =
      Unwrap(FixedLimit::Create(kMaxConcurrencyLimit));
  ASSERT_NE(most, nullptr);
  EXPECT_EQ(most->current(), kMaxConcurrencyLimit);
  EXPECT_EQ(most->max_limit(), kMaxConcurrencyLimit);
}

// --- AimdLimit --------------------------------------------------------------

TEST(AimdLimitTest, DefaultsAreNetflixDefaults) {
  const AimdLimitOptions defaults;
  EXPECT_EQ(defaults.initial_limit, 20);
  EXPECT_EQ(defaults.min_limit, 20);
  EXPECT_EQ(defaults.max_limit, 200);
  EXPECT_EQ(defaults.backoff_ratio, 0.9);
  EXPECT_EQ(defaults.timeout, absl::Seconds(5));

  std::unique_ptr<AimdLimit> limit = MakeAimd(AimdLimitOptions());
  ASSERT_NE(limit, nullptr);
  EXPECT_EQ(limit->current(), 20);
  EXPECT_EQ(limit->max_limit(), 200);
  EXPECT_EQ(limit->options().initial_limit, 20);
  EXPECT_EQ(limit->options().min_limit, 20);
  EXPECT_EQ(limit->options().max_limit, 200);
  EXPECT_EQ(limit->options().backoff_ratio, 0.9);
  EXPECT_EQ(limit->options().timeout, absl::Seconds(5));
}

TEST(AimdLimitTest, DefaultsStayAtTheFloorOnDrop) {
  std::unique_ptr<AimdLimit> limit = MakeAimd(AimdLimitOptions());
  ASSERT_NE(limit, nullptr);
  limit->OnSample(Drop());
  EXPECT_EQ(limit->current(), 20);
  limit->OnSample(Success(10));
  EXPECT_EQ(limit->current(), 21);
}

// +1 needs in_flight * 2 >= limit: both sides of that edge, at an even and
// an odd limit.
TEST(AimdLimitTest, GrowsOnlyWhenTheLimitIsUsed) {
  std::unique_ptr<AimdLimit> limit = MakeAimd(Aimd(20, 1, 200));
  ASSERT_NE(limit, nullptr);
  limit->OnSample(Success(9));  // 18 < 20.
  EXPECT_EQ(limit->current(), 20);
  limit->OnSample(Success(10));  // 20 >= 20.
  EXPECT_EQ(limit->current(), 21);
  limit->OnSample(Success(10));  // 20 < 21.
  EXPECT_EQ(limit->current(), 21);
  limit->OnSample(Success(11));  // 22 >= 21.
  EXPECT_EQ(limit->current(), 22);
}

TEST(AimdLimitTest, IdleSamplesNeverChangeTheLimit) {
  std::unique_ptr<AimdLimit> limit = MakeAimd(Aimd(50, 1, 200));
  ASSERT_NE(limit, nullptr);
  for (int in_flight = 0; in_flight < 25; ++in_flight) {
    limit->OnSample(Success(in_flight));
    EXPECT_EQ(limit->current(), 50) << "in_flight " << in_flight;
  }
}

TEST(AimdLimitTest, HugeInFlightDoesNotOverflow) {
  std::unique_ptr<AimdLimit> limit = MakeAimd(Aimd(50, 1, 200));
  ASSERT_NE(limit, nullptr);
  limit->OnSample(Success(std::numeric_limits<int>::max()));
  EXPECT_EQ(limit->current(), 51);
}

TEST(AimdLimitTest, DropMultipliesAndFloors) {
  std::unique_ptr<AimdLimit> limit = MakeAimd(Aimd(100, 1, 200));
  ASSERT_NE(limit, nullptr);
  const int expected[] = {90, 81, 72, 64, 57, 51, 45, 40, 36, 32,
                          28, 25, 22, 19, 17, 15, 13, 11, 9,  8,
                          7,  6,  5,  4,  3,  2,  1,  1,  1};
  for (int want : expected) {
    limit->OnSample(Drop());
    EXPECT_EQ(limit->current(), want);
  }
}

TEST(AimdLimitTest, DropIsClampedToMin) {
  std::unique_ptr<AimdLimit> limit = MakeAimd(Aimd(23, 20, 200));
  ASSERT_NE(limit, nullptr);
  limit->OnSample(Drop());  // floor(20.7) = 20.
  EXPECT_EQ(limit->current(), 20);
  limit->OnSample(Drop());  // floor(18) = 18 -> 20.
  EXPECT_EQ(limit->current(), 20);

  std::unique_ptr<AimdLimit> just_above = MakeAimd(Aimd(22, 20, 200));
  ASSERT_NE(just_above, nullptr);
  just_above->OnSample(Drop());  // floor(19.8) = 19 -> 20.
  EXPECT_EQ(just_above->current(), 20);
}

TEST(AimdLimitTest, DropWinsOverHighInFlight) {
  std::unique_ptr<AimdLimit> limit = MakeAimd(Aimd(100, 1, 200));
  ASSERT_NE(limit, nullptr);
  limit->OnSample(Drop(/*in_flight=*/1000));
  EXPECT_EQ(limit->current(), 90);
}

TEST(AimdLimitTest, CustomBackoffRatio) {
  AimdLimitOptions options = Aimd(100, 1, 200);
  options.backoff_ratio = 0.5;
  std::unique_ptr<AimdLimit> limit = MakeAimd(options);
  ASSERT_NE(limit, nullptr);
  for (int want : {50, 25, 12, 6, 3, 1, 1}) {
    limit->OnSample(Drop());
    EXPECT_EQ(limit->current(), want);
  }
}

TEST(AimdLimitTest, SlowerThanTimeoutIsADrop) {
  std::unique_ptr<AimdLimit> limit = MakeAimd(Aimd(100, 1, 200));
  ASSERT_NE(limit, nullptr);
  // Exactly the timeout is a success.
  limit->OnSample(Success(100, absl::Seconds(5)));
  EXPECT_EQ(limit->current(), 101);
  // One nanosecond more is a drop, however high in_flight is.
  limit->OnSample(Success(100, absl::Seconds(5) + absl::Nanoseconds(1)));
  EXPECT_EQ(limit->current(), 90);  // floor(101 * 0.9) = floor(90.9).
}

TEST(AimdLimitTest, CustomTimeout) {
  AimdLimitOptions options = Aimd(100, 1, 200);
  options.timeout = absl::Milliseconds(50);
  std::unique_ptr<AimdLimit> limit = MakeAimd(options);
  ASSERT_NE(limit, nullptr);
  limit->OnSample(Success(100, absl::Milliseconds(50)));
  EXPECT_EQ(limit->current(), 101);
  limit->OnSample(Success(100, absl::Milliseconds(50) + absl::Nanoseconds(1)));
  EXPECT_EQ(limit->current(), 90);
}

TEST(AimdLimitTest, ClampsAtMax) {
  std::unique_ptr<AimdLimit> limit = MakeAimd(Aimd(198, 1, 200));
  ASSERT_NE(limit, nullptr);
  limit->OnSample(Success(1000));
  EXPECT_EQ(limit->current(), 199);
  limit->OnSample(Success(1000));
  EXPECT_EQ(limit->current(), 200);
  limit->OnSample(Success(1000));
  EXPECT_EQ(limit->current(), 200);
}

TEST(AimdLimitTest, TwentySuccessesAddTwenty) {
  std::unique_ptr<AimdLimit> limit = MakeAimd(Aimd(100, 1, 200));
  ASSERT_NE(limit, nullptr);
  for (int i = 0; i < 20; ++i) limit->OnSample(Success(100));
  EXPECT_EQ(limit->current(), 120);
}

TEST(AimdLimitTest, ExactMixedSequence) {
  std::unique_ptr<AimdLimit> limit = MakeAimd(Aimd(100, 1, 200));
  ASSERT_NE(limit, nullptr);
  limit->OnSample(Drop());
  EXPECT_EQ(limit->current(), 90);
  limit->OnSample(Drop());
  EXPECT_EQ(limit->current(), 81);
  limit->OnSample(Drop());
  EXPECT_EQ(limit->current(), 72);
  limit->OnSample(Success(35));  // 70 < 72: no change.
  EXPECT_EQ(limit->current(), 72);
  limit->OnSample(Success(36));  // 72 >= 72.
  EXPECT_EQ(limit->current(), 73);
  limit->OnSample(Success(36));  // 72 < 73: no change.
  EXPECT_EQ(limit->current(), 73);
  limit->OnSample(Success(37, absl::Seconds(6)));  // Timeout: floor(65.7).
  EXPECT_EQ(limit->current(), 65);
}

TEST(AimdLimitTest, MinEqualsMaxNeverMoves) {
  std::unique_ptr<AimdLimit> limit = MakeAimd(Aimd(7, 7, 7));
  ASSERT_NE(limit, nullptr);
  limit->OnSample(Success(100));
  EXPECT_EQ(limit->current(), 7);
  limit->OnSample(Drop());
  EXPECT_EQ(limit->current(), 7);
}

TEST(AimdLimitTest, ThreadsClampAtMax) {
  std::unique_ptr<AimdLimit> limit = MakeAimd(AimdLimitOptions());
  ASSERT_NE(limit, nullptr);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&limit] {
      for (int i = 0; i < 1000; ++i) limit->OnSample(Success(1000));
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(limit->current(), 200);
}

// --- Every Limit ------------------------------------------------------------

// How the typed suite builds each algorithm, and what N identical
// successes at high in-flight do to it.
template <typename T>
struct LimitFactory;

template <>
struct LimitFactory<FixedLimit> {
  static std::unique_ptr<Limit> Make() {
    return Unwrap(FixedLimit::Create(37));
  }
  static int AfterSuccesses(int /*n*/) { return 37; }
};

template <>
struct LimitFactory<AimdLimit> {
  static constexpr int kInitial = 20;
  static constexpr int kMax = 50000;
  static std::unique_ptr<Limit> Make() {
    return Unwrap(AimdLimit::Create(Aimd(kInitial, 1, kMax)));
  }
  static int AfterSuccesses(int n) { return std::min(kMax, kInitial + n); }
};

template <typename T>
class EveryLimitTest : public ::testing::Test {};

using LimitTypes = ::testing::Types<FixedLimit, AimdLimit>;
TYPED_TEST_SUITE(EveryLimitTest, LimitTypes);

TYPED_TEST(EveryLimitTest, StartsWithinBounds) {
  std::unique_ptr<Limit> limit = LimitFactory<TypeParam>::Make();
  ASSERT_NE(limit, nullptr);
  EXPECT_GE(limit->current(), 1);
  EXPECT_LE(limit->current(), limit->max_limit());
  EXPECT_LE(limit->max_limit(), kMaxConcurrencyLimit);
}

TYPED_TEST(EveryLimitTest, StaysWithinBoundsUnderAnySampleSequence) {
  std::unique_ptr<Limit> limit = LimitFactory<TypeParam>::Make();
  ASSERT_NE(limit, nullptr);
  std::mt19937 rng(20240611);
  std::uniform_int_distribution<int> kind(0, 9);
  std::uniform_int_distribution<int> in_flight(0, 2 * kMaxConcurrencyLimit);
  std::uniform_int_distribution<int64_t> rtt_ms(0, 10000);
  int lowest = limit->current();
  int highest = limit->current();
  for (int i = 0; i < 20000; ++i) {
    // Alternate runs of 2000 samples: growth (successes within the default
    // timeout), then backoff (80% drops, half of the rest timeouts), so an
    // adaptive limit reaches both ends.
    const bool backoff = (i / 2000) % 2 == 1;
    LimitSample sample;
    sample.in_flight = in_flight(rng);
    const int64_t ms = rtt_ms(rng);
    sample.rtt = std::chrono::milliseconds(backoff ? ms : ms / 2);
    sample.dropped = backoff && kind(rng) < 8;
    limit->OnSample(sample);
    ASSERT_GE(limit->current(), 1) << "sample " << i;
    ASSERT_LE(limit->current(), limit->max_limit()) << "sample " << i;
    lowest = std::min(lowest, limit->current());
    highest = std::max(highest, limit->current());
  }
  // The sequence moved an adaptive limit both ways (and a fixed one not).
  if constexpr (std::is_same_v<TypeParam, AimdLimit>) {
    EXPECT_EQ(lowest, 1);
    EXPECT_GT(highest, 1000);
  } else {
    EXPECT_EQ(lowest, highest);
  }
}

TYPED_TEST(EveryLimitTest, ConcurrentSuccessesApplyExactlyOnceEach) {
  std::unique_ptr<Limit> limit = LimitFactory<TypeParam>::Make();
  ASSERT_NE(limit, nullptr);
  constexpr int kThreads = 4;
  constexpr int kSamplesPerThread = 10000;
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      for (int i = 0; i < kSamplesPerThread; ++i) {
        limit->OnSample(Success(kMaxConcurrencyLimit));
        // Readers may look at any time: always within bounds.
        const int now = limit->current();
        if (now < 1 || now > limit->max_limit()) {
          ADD_FAILURE() << "current() out of bounds: " << now;
          return;
        }
      }
    });
  }
  go.store(true, std::memory_order_release);
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(limit->current(), LimitFactory<TypeParam>::AfterSuccesses(
                                  kThreads * kSamplesPerThread));
}

// Identical samples from several threads end where the same samples applied
// one after another end: each is applied exactly once, whatever the
// interleaving.
TYPED_TEST(EveryLimitTest, ConcurrentDropsMatchSequentialDrops) {
  std::unique_ptr<Limit> sequential = LimitFactory<TypeParam>::Make();
  std::unique_ptr<Limit> concurrent = LimitFactory<TypeParam>::Make();
  ASSERT_NE(sequential, nullptr);
  ASSERT_NE(concurrent, nullptr);
  constexpr int kThreads = 4;
  constexpr int kSamplesPerThread = 2000;
  // Grow first so there is room to back off.
  for (int i = 0; i < 30000; ++i) {
    sequential->OnSample(Success(kMaxConcurrencyLimit));
    concurrent->OnSample(Success(kMaxConcurrencyLimit));
  }
  // Too few drops to hit the floor: floor(30020 * 0.9^k) for k = 1..40.
  constexpr int kDrops = 40;
  for (int i = 0; i < kDrops; ++i) sequential->OnSample(Drop());
  std::atomic<int> next{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kSamplesPerThread; ++i) {
        if (next.fetch_add(1) >= kDrops) return;
        concurrent->OnSample(Drop());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(concurrent->current(), sequential->current());
}

}  // namespace
}  // namespace spillway
