#include "spillway/windowed_limit.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/core/shard.h"
#include "tests/common/slot_holder.h"

namespace spillway {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

// Records every window; returns a scripted limit (or the current one).
class RecordingAlgorithm final : public LimitAlgorithm {
 public:
  explicit RecordingAlgorithm(std::vector<WindowSample>* windows, int next = -1)
      : windows_(windows), next_(next) {}
  int initial_limit() const override { return 10; }
  int min_limit() const override { return 2; }
  int max_limit() const override { return 50; }
  int Update(const WindowSample& window, int limit) override {
    windows_->push_back(window);
    hinted_at_update.push_back(hinted_);
    hinted_ = false;
    return next_ < 0 ? limit : next_;
  }
  void OnDatabaseSlowdown() override { hinted_ = true; }
  double latency_band() const override { return band; }
  // Per Update: whether a slowdown hint arrived since the previous one.
  std::vector<bool> hinted_at_update;
  // What latency_band() returns.
  double band = 2.0;

 private:
  bool hinted_ = false;
  std::vector<WindowSample>* windows_;
  int next_;
};

constexpr MonotonicTime kT0 = MonotonicTime() + std::chrono::hours(1);

LimitSample Sample(milliseconds at, milliseconds rtt, int in_flight = 1,
                   bool dropped = false) {
  return LimitSample{rtt, in_flight, dropped, kT0 + at - rtt, kT0 + at};
}

std::unique_ptr<WindowedLimit> Make(std::vector<WindowSample>* windows,
                                    WindowOptions options = {}, int next = -1) {
  auto limit = WindowedLimit::Create(
      std::make_unique<RecordingAlgorithm>(windows, next), options);
  EXPECT_TRUE(limit.ok()) << limit.status();
  return std::move(*limit);
}

// The algorithm's band is published at construction and after each window.
TEST(WindowedLimitTest, PublishesTheAlgorithmsLatencyBand) {
  std::vector<WindowSample> windows;
  auto algorithm = std::make_unique<RecordingAlgorithm>(&windows);
  RecordingAlgorithm* raw = algorithm.get();
  auto limit = WindowedLimit::Create(
      std::move(algorithm),
      {.min_window = absl::Milliseconds(100), .min_samples = 1});
  ASSERT_TRUE(limit.ok());
  EXPECT_EQ((*limit)->latency_band(), 2.0);
  raw->band = 4.5;
  (*limit)->OnSample(Sample(milliseconds(0), milliseconds(4)));
  EXPECT_EQ((*limit)->latency_band(), 2.0);  // No window closed yet.
  (*limit)->OnSample(Sample(milliseconds(100), milliseconds(4)));
  ASSERT_EQ(windows.size(), 1u);
  EXPECT_EQ((*limit)->latency_band(), 4.5);
}

TEST(WindowedLimitTest, ClosesByTimeAndAggregatesExactly) {
  std::vector<WindowSample> windows;
  auto limit =
      Make(&windows, {.min_window = absl::Milliseconds(100), .min_samples = 3});
  EXPECT_EQ(limit->current(), 10);
  limit->OnSample(Sample(milliseconds(0), milliseconds(4), 3));  // Opens.
  limit->OnSample(Sample(milliseconds(10), milliseconds(6), 7));
  limit->OnSample(Sample(milliseconds(50), milliseconds(20), 5, true));
  limit->OnSample(Sample(milliseconds(99), milliseconds(8), 2));
  EXPECT_TRUE(windows.empty());  // 99 ms < 100 ms.
  limit->OnSample(Sample(milliseconds(100), milliseconds(2), 1));
  ASSERT_EQ(windows.size(), 1u);
  const WindowSample& w = windows[0];
  EXPECT_EQ(w.samples, 5);
  EXPECT_EQ(w.dropped, 1);
  EXPECT_EQ(w.rtt, milliseconds(5));  // (4 + 6 + 8 + 2) / 4 successes.
  EXPECT_EQ(w.min_rtt, milliseconds(2));
  EXPECT_EQ(w.max_in_flight, 7);
  EXPECT_EQ(w.end, kT0 + milliseconds(100));
  EXPECT_EQ(limit->windows_closed(), 1);
}

TEST(WindowedLimitTest, SlowdownHintReachesTheAlgorithmBeforeTheNextUpdate) {
  std::vector<WindowSample> windows;
  auto algorithm = std::make_unique<RecordingAlgorithm>(&windows);
  RecordingAlgorithm* seen = algorithm.get();
  auto limit = *WindowedLimit::Create(
      std::move(algorithm),
      {.min_window = absl::Milliseconds(100), .min_samples = 1});
  limit->OnSample(Sample(milliseconds(0), milliseconds(1)));
  limit->OnSample(Sample(milliseconds(100), milliseconds(1)));  // Window 1.
  limit->OnDatabaseSlowdown();  // Any thread, between windows.
  limit->OnDatabaseSlowdown();  // Twice before a window: delivered once.
  limit->OnSample(Sample(milliseconds(200), milliseconds(1)));  // Window 2.
  limit->OnSample(Sample(milliseconds(300), milliseconds(1)));  // Window 3.
  EXPECT_THAT(seen->hinted_at_update,
              ::testing::ElementsAre(false, true, false));
}

TEST(WindowedLimitTest, QuietWindowStaysOpenUntilMinSamples) {
  std::vector<WindowSample> windows;
  auto limit =
      Make(&windows, {.min_window = absl::Milliseconds(100), .min_samples = 4});
  limit->OnSample(Sample(milliseconds(0), milliseconds(1)));
  limit->OnSample(Sample(milliseconds(500), milliseconds(1)));
  limit->OnSample(Sample(milliseconds(900), milliseconds(1)));
  EXPECT_TRUE(windows.empty());  // Due, but 3 < 4 samples.
  limit->OnSample(Sample(milliseconds(950), milliseconds(1)));
  ASSERT_EQ(windows.size(), 1u);
  EXPECT_EQ(windows[0].samples, 4);
}

TEST(WindowedLimitTest, NextWindowLastsTwiceTheMinimumRtt) {
  std::vector<WindowSample> windows;
  auto limit = Make(&windows, {.min_window = absl::Milliseconds(50),
                               .max_window = absl::Milliseconds(1000),
                               .min_samples = 1});
  limit->OnSample(Sample(milliseconds(0), milliseconds(300)));
  limit->OnSample(Sample(milliseconds(50), milliseconds(300)));  // Closes #1.
  ASSERT_EQ(windows.size(), 1u);
  // Window 2 lasts max(50 ms, 2 * 300 ms) = 600 ms from 50 ms.
  limit->OnSample(Sample(milliseconds(649), milliseconds(100)));
  EXPECT_EQ(windows.size(), 1u);
  limit->OnSample(Sample(milliseconds(650), milliseconds(100)));
  ASSERT_EQ(windows.size(), 2u);
  EXPECT_EQ(windows[1].samples, 2);
  // Window 3: 2 * 100 ms = 200 ms; and max_window caps a long one.
  limit->OnSample(Sample(milliseconds(849), milliseconds(1)));
  EXPECT_EQ(windows.size(), 2u);
  limit->OnSample(Sample(milliseconds(850), milliseconds(900)));
  ASSERT_EQ(windows.size(), 3u);
  limit->OnSample(Sample(milliseconds(900), milliseconds(1)));  // 50 ms.
  EXPECT_EQ(windows.size(), 4u);
}

TEST(WindowedLimitTest, PercentileAggregation) {
  std::vector<WindowSample> windows;
  auto limit = Make(&windows, {.min_window = absl::Milliseconds(100),
                               .min_samples = 10,
                               .aggregation = Aggregation::kPercentile,
                               .percentile = 0.9});
  for (int i = 1; i <= 10; ++i) {
    limit->OnSample(Sample(milliseconds(i), milliseconds(i)));
  }
  limit->OnSample(
      Sample(milliseconds(101), milliseconds(11)));  // Opened at 1 ms.
  ASSERT_EQ(windows.size(), 1u);
  // 11 successes, 1..11 ms: the 90th percentile is the 10th, 10 ms.
  EXPECT_EQ(windows[0].rtt, milliseconds(10));
  EXPECT_EQ(windows[0].min_rtt, milliseconds(1));
}

TEST(WindowedLimitTest, AllDroppedWindowAveragesTheDrops) {
  std::vector<WindowSample> windows;
  auto limit =
      Make(&windows, {.min_window = absl::Milliseconds(10), .min_samples = 2});
  limit->OnSample(Sample(milliseconds(0), milliseconds(100), 4, true));
  limit->OnSample(Sample(milliseconds(10), milliseconds(300), 4, true));
  ASSERT_EQ(windows.size(), 1u);
  EXPECT_EQ(windows[0].rtt, milliseconds(200));
  EXPECT_EQ(windows[0].dropped, 2);
  EXPECT_TRUE(windows[0].any_dropped());
}

TEST(WindowedLimitTest, IgnoresSamplesBelowTheThreshold) {
  std::vector<WindowSample> windows;
  auto limit = Make(&windows, {.min_window = absl::Milliseconds(10),
                               .min_samples = 1,
                               .min_rtt_threshold = absl::Milliseconds(1)});
  limit->OnSample(LimitSample{std::chrono::microseconds(999), 1, false, kT0,
                              kT0 + milliseconds(20)});
  EXPECT_EQ(limit->windows_closed(), 0);
  limit->OnSample(Sample(milliseconds(0), milliseconds(1)));
  limit->OnSample(Sample(milliseconds(20), milliseconds(1)));
  ASSERT_EQ(windows.size(), 1u);
  EXPECT_EQ(windows[0].samples, 2);
}

TEST(WindowedLimitTest, PublishesTheAlgorithmsLimitClamped) {
  std::vector<WindowSample> windows;
  auto limit =
      Make(&windows, {.min_window = absl::Milliseconds(10), .min_samples = 1},
           /*next=*/500);
  limit->OnSample(Sample(milliseconds(0), milliseconds(1)));
  limit->OnSample(Sample(milliseconds(10), milliseconds(1)));
  EXPECT_EQ(limit->current(), 50);  // Clamped to max_limit.
  EXPECT_EQ(limit->max_limit(), 50);
}

TEST(WindowedLimitTest, SamplesFromManyThreadsAreCountedExactly) {
  std::vector<WindowSample> windows;
  auto limit = Make(&windows,
                    {.min_window = absl::Milliseconds(1000), .min_samples = 1});
  limit->OnSample(Sample(milliseconds(0), milliseconds(1)));  // Opens.
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Inside the window: no thread closes it.
        limit->OnSample(Sample(milliseconds(1 + i % 900), milliseconds(2),
                               t + 1, i % 10 == 0));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_TRUE(windows.empty());
  limit->OnSample(Sample(milliseconds(1000), milliseconds(2)));
  ASSERT_EQ(windows.size(), 1u);
  EXPECT_EQ(windows[0].samples, kThreads * kPerThread + 2);
  EXPECT_EQ(windows[0].dropped, kThreads * kPerThread / 10);
  EXPECT_EQ(windows[0].max_in_flight, kThreads);
}

TEST(WindowedLimitTest, ConcurrentClosingNeverDoubleCounts) {
  std::vector<WindowSample> windows;
  auto limit =
      Make(&windows, {.min_window = absl::Milliseconds(10), .min_samples = 1});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        limit->OnSample(Sample(milliseconds(i), milliseconds(1)));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  int64_t counted = 0;
  for (const WindowSample& w : windows) counted += w.samples;
  EXPECT_LE(counted, kThreads * kPerThread);
  EXPECT_GT(counted, 0);
  EXPECT_EQ(limit->windows_closed(), static_cast<int64_t>(windows.size()));
  // A sample that raced a close counts in the next window: one more window
  // takes every one left, so nothing was lost either (the threads have
  // shards of their own).
  limit->OnSample(Sample(milliseconds(kPerThread + 10000), milliseconds(1)));
  counted = 0;
  for (const WindowSample& w : windows) counted += w.samples;
  EXPECT_EQ(counted, kThreads * kPerThread + 1);
}

// Threads with an exclusive slot write their shard with plain stores;
// threads beyond the exclusive slots share shards and fetch-add. Here an
// exclusive owner and two threads on one shared shard run at once (on two
// cores) while windows close under them. Every sample is counted once, in
// some window, and every window is sane.
TEST(WindowedLimitTest, OwnersAndThreadsSharingAShardLoseNothing) {
  std::vector<WindowSample> windows;
  auto limit =
      Make(&windows, {.min_window = absl::Milliseconds(1), .min_samples = 1});
  limit->OnSample(Sample(milliseconds(0), milliseconds(4)));  // Opens.
  constexpr int kPerThread = 400000;
  std::atomic<bool> go{false};
  // Starts a thread that takes its slot, stores it in *slot, waits for `go`
  // and samples.
  auto start = [&](int t, std::atomic<int>* slot) {
    return std::thread([&, t, slot] {
      slot->store(internal::ThreadSlot());
      while (!go.load()) std::this_thread::yield();
      for (int i = 1; i < kPerThread; ++i) {
        limit->OnSample(Sample(milliseconds(i / 100),
                               milliseconds(2 + (i + t) % 5), 1, i % 7 == 0));
      }
    });
  };
  auto wait_for = [](std::atomic<int>& slot) {
    while (slot.load() < 0) std::this_thread::yield();
    return slot.load();
  };
  std::atomic<int> owner_slot{-1}, first_slot{-1}, second_slot{-1};
  std::thread owner = start(0, &owner_slot);
  ASSERT_TRUE(internal::IsExclusiveSlot(wait_for(owner_slot)));
  const auto holders = test::HoldAllExclusiveSlots();
  std::thread first = start(1, &first_slot);
  ASSERT_FALSE(internal::IsExclusiveSlot(wait_for(first_slot)));
  // Shared slots go round-robin: the seven after `first`'s, then its own.
  for (int i = 0; i < internal::kSharedSlots - 1; ++i) {
    test::SlotHolder spacer;
    ASSERT_NE(spacer.slot(), first_slot.load());
  }
  std::thread second = start(2, &second_slot);
  ASSERT_EQ(wait_for(second_slot), first_slot.load());
  go.store(true);
  owner.join();
  first.join();
  second.join();
  // One more window takes whatever raced the last close.
  limit->OnSample(Sample(milliseconds(kPerThread), milliseconds(4)));
  int64_t counted = 0;
  for (const WindowSample& w : windows) {
    ASSERT_GE(w.samples, 1);
    ASSERT_LE(w.dropped, w.samples);
    ASSERT_GE(w.rtt, milliseconds(2));
    ASSERT_LE(w.rtt, milliseconds(6));
    counted += w.samples;
  }
  // The opening sample, the threads' loops, the last.
  EXPECT_EQ(counted, 3 * int64_t{kPerThread - 1} + 2);
}

TEST(WindowedLimitTest, EachWindowAggregatesOnlyItsOwnSamples) {
  std::vector<WindowSample> windows;
  auto limit =
      Make(&windows, {.min_window = absl::Milliseconds(100), .min_samples = 1});
  limit->OnSample(Sample(milliseconds(0), milliseconds(10), 4));  // Opens.
  limit->OnSample(Sample(milliseconds(50), milliseconds(30), 6, true));
  limit->OnSample(Sample(milliseconds(100), milliseconds(20), 2));  // #1.
  limit->OnSample(Sample(milliseconds(150), milliseconds(3), 1));
  limit->OnSample(Sample(milliseconds(200), milliseconds(5), 3));  // #2.
  ASSERT_EQ(windows.size(), 2u);
  EXPECT_EQ(windows[0].samples, 3);
  EXPECT_EQ(windows[0].dropped, 1);
  EXPECT_EQ(windows[0].rtt, milliseconds(15));  // (10 + 20) / 2.
  EXPECT_EQ(windows[1].samples, 2);
  EXPECT_EQ(windows[1].dropped, 0);
  EXPECT_EQ(windows[1].rtt, milliseconds(4));  // (3 + 5) / 2.
  EXPECT_EQ(windows[1].min_rtt, milliseconds(3));
  EXPECT_EQ(windows[1].max_in_flight, 3);
}

TEST(WindowedLimitTest, InvalidOptionsNameTheField) {
  std::vector<WindowSample> windows;
  struct Case {
    WindowOptions options;
    const char* field;
  } cases[] = {
      {{.min_window = absl::ZeroDuration()}, "min_window"},
      {{.min_window = absl::Seconds(2), .max_window = absl::Seconds(1)},
       "max_window"},
      {{.min_rtt_multiple = 0.5}, "min_rtt_multiple"},
      {{.min_samples = 0}, "min_samples"},
      {{.percentile = 0}, "percentile"},
      {{.percentile = 1.5}, "percentile"},
      {{.min_rtt_threshold = -absl::Milliseconds(1)}, "min_rtt_threshold"},
  };
  for (const Case& c : cases) {
    absl::Status s = ValidateWindowOptions(c.options);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.field));
    EXPECT_FALSE(WindowedLimit::Create(
                     std::make_unique<RecordingAlgorithm>(&windows), c.options)
                     .ok());
  }
  EXPECT_TRUE(ValidateWindowOptions({}).ok());
  EXPECT_FALSE(WindowedLimit::Create(nullptr, {}).ok());
}

}  // namespace
}  // namespace spillway
