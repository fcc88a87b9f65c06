#include "lib/core/running_total.h"

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace spillway::internal {
namespace {

using Pair = RunningTotal::Pair;

// The reader was delayed between its loads: it read a count of 100, the
// writer then added 1500 samples of 5 each, and the reader read `packed`
// and the count again. The pair is the 1600 samples in `packed`, not 100
// samples with the sum of 1600 (the two-word totals' 16x average).
TEST(RunningTotalTest, PairsTheSumWithItsOwnCount) {
  Pair p;
  ASSERT_TRUE(
      RunningTotal::Decode(100, RunningTotal::Pack(1600, 1600 * 5), 1600, &p));
  EXPECT_EQ(p.count, 1600u);
  EXPECT_EQ(p.sum, 1600u * 5);
}

// A writer between its two stores: `packed` has one sample more than the
// count words on either side. The pair includes it.
TEST(RunningTotalTest, IncludesASampleWhoseCountIsNotStoredYet) {
  Pair p;
  ASSERT_TRUE(
      RunningTotal::Decode(41, RunningTotal::Pack(42, 42 * 7 + 3), 41, &p));
  EXPECT_EQ(p.count, 42u);
  EXPECT_EQ(p.sum, 42u * 7 + 3);
}

// Counts past 2^kCountBits carry into the sum bits of `packed`; the pair
// still comes out right, on both sides of a multiple of 4096.
TEST(RunningTotalTest, CountsBeyondTheLowBits) {
  for (uint64_t n :
       {uint64_t{4095}, uint64_t{4096}, uint64_t{4097}, uint64_t{1} << 40}) {
    Pair p;
    ASSERT_TRUE(
        RunningTotal::Decode(n - 1, RunningTotal::Pack(n, 123456789), n, &p))
        << n;
    EXPECT_EQ(p.count, n);
    EXPECT_EQ(p.sum, 123456789u);
  }
}

// The sum wraps at 2^52 and the difference across the wrap is exact.
TEST(RunningTotalTest, DifferencesAcrossTheSumsWrap) {
  const uint64_t near_wrap = RunningTotal::kSumMask - 10;
  Pair before, after;
  ASSERT_TRUE(
      RunningTotal::Decode(7, RunningTotal::Pack(7, near_wrap), 7, &before));
  ASSERT_TRUE(RunningTotal::Decode(9, RunningTotal::Pack(9, near_wrap + 30), 9,
                                   &after));
  const Pair added = after.Since(before);
  EXPECT_EQ(added.count, 2u);
  EXPECT_EQ(added.sum, 30u);
}

// Both sides of the bracket's edge: count words 2047 apart still decode,
// 2048 apart are refused (the low bits could name two counts).
TEST(RunningTotalTest, RefusesABracketTooWideToTell) {
  const uint64_t half = (RunningTotal::kCountMask + 1) / 2;
  Pair p;
  EXPECT_TRUE(RunningTotal::Decode(1000, RunningTotal::Pack(1000 + half - 1, 0),
                                   1000 + half - 1, &p));
  EXPECT_EQ(p.count, 1000 + half - 1);
  EXPECT_FALSE(RunningTotal::Decode(1000, RunningTotal::Pack(1000 + half, 0),
                                    1000 + half, &p));
}

// Values above an hour count as an hour, so one huge RTT cannot overflow
// the sum's bits.
TEST(RunningTotalTest, ClampsHugeValues) {
  std::atomic<uint64_t> packed{0}, count{0};
  RunningTotal total(packed, count);
  EXPECT_EQ(total.Add(~uint64_t{0}, /*exclusive=*/true), 0u);
  EXPECT_EQ(total.Add(5, /*exclusive=*/false), 1u);
  Pair p;
  ASSERT_TRUE(total.Read(&p));
  EXPECT_EQ(p.count, 2u);
  EXPECT_EQ(p.sum, RunningTotal::kMaxValue + 5);
}

// Four writers share one total while a reader reads it: every pair read is
// consistent (each sample adds 1 + its index mod 4, so a sum below the
// count or above four times it is a torn pair), and the final pair is exact.
TEST(RunningTotalTest, ReadsArePairsWhileWritersRun) {
  std::atomic<uint64_t> packed{0}, count{0};
  constexpr int kWriters = 4;
  constexpr int kPerWriter = 50000;
  std::atomic<bool> done{false};
  std::thread reader([&] {
    RunningTotal total(packed, count);
    int reads = 0;
    while (!done.load() || reads == 0) {
      Pair p;
      if (!total.Read(&p)) continue;
      ++reads;
      ASSERT_GE(p.sum, p.count);
      ASSERT_LE(p.sum, 4 * p.count);
    }
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < kWriters; ++t) {
    writers.emplace_back([&] {
      RunningTotal total(packed, count);
      for (int i = 0; i < kPerWriter; ++i) {
        total.Add(1 + i % 4, /*exclusive=*/false);
      }
    });
  }
  for (std::thread& w : writers) w.join();
  done.store(true);
  reader.join();
  Pair p;
  ASSERT_TRUE(RunningTotal(packed, count).Read(&p));
  EXPECT_EQ(p.count, uint64_t{kWriters} * kPerWriter);
  EXPECT_EQ(p.sum, uint64_t{kWriters} * kPerWriter / 4 * (1 + 2 + 3 + 4));
}

}  // namespace
}  // namespace spillway::internal
