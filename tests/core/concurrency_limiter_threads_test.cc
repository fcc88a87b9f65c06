// Many-thread tests of the ConcurrencyLimiter: exact totals, the hard limit,
// partition guarantees under contention, and no lost wake-ups. Real time
// appears only as a safety timeout.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "spillway/aimd_limit.h"
#include "spillway/concurrency_limiter.h"
#include "spillway/fixed_limit.h"
#include "spillway/testing/in_memory_metrics.h"
#include "spillway/testing/simulated_clock.h"

namespace spillway {
namespace {

using ::spillway::testing::InMemoryMetricsSink;
using ::spillway::testing::SimulatedClock;

constexpr int kThreads = 8;
constexpr int kIterations = 20000;

void AtomicMax(std::atomic<int>& target, int v) {
  int old = target.load();
  while (old < v && !target.compare_exchange_weak(old, v)) {
  }
}

std::unique_ptr<ConcurrencyLimiter> MakeLimiter(
    std::shared_ptr<Limit> limit, Clock* clock, MetricsSink* sink,
    std::array<PartitionOptions, kNumPriorities> partitions =
        {PartitionOptions{0, 1}, PartitionOptions{0, 1},
         PartitionOptions{0, 1}},
    int max_queued = 1024) {
  ConcurrencyLimiterOptions o;
  o.name = "t";
  o.limit = std::move(limit);
  o.partitions = partitions;
  o.max_queued = max_queued;
  o.clock = clock;
  o.metrics = sink;
  return std::move(*ConcurrencyLimiter::Create(std::move(o)));
}

TEST(LimiterThreadsTest, InFlightNeverExceedsTheLimitAndTotalsAreExact) {
  SimulatedClock clock;
  InMemoryMetricsSink sink;
  constexpr int kLimit = 3;
  auto limiter = MakeLimiter(*FixedLimit::Create(kLimit), &clock, &sink);
  std::atomic<int> active{0};
  std::atomic<int> max_active{0};
  std::atomic<int> max_in_flight_seen{0};
  std::atomic<int64_t> admitted{0};
  std::atomic<int64_t> rejected{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const Priority priority = static_cast<Priority>(t % kNumPriorities);
      for (int i = 0; i < kIterations; ++i) {
        Admission a = limiter->TryAcquire(priority);
        if (!a.ok()) {
          rejected.fetch_add(1);
          continue;
        }
        admitted.fetch_add(1);
        AtomicMax(max_active, active.fetch_add(1) + 1);
        AtomicMax(max_in_flight_seen, limiter->in_flight());
        AtomicMax(max_in_flight_seen, a.permit().in_flight_at_admission());
        active.fetch_sub(1);
        if (i % 3 == 0) {
          a.permit().Success();
        } else if (i % 3 == 1) {
          a.permit().Dropped();
        }  // else: destruction, Ignore().
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_LE(max_active.load(), kLimit);
  EXPECT_LE(max_in_flight_seen.load(), kLimit);
  EXPECT_EQ(admitted.load() + rejected.load(), int64_t{kThreads} * kIterations);
  EXPECT_GT(admitted.load(), 0);
  EXPECT_EQ(limiter->in_flight(), 0);
  EXPECT_EQ(sink.CounterSum("spillway_admitted_total"), admitted.load());
  EXPECT_EQ(sink.CounterSum("spillway_rejected_total"), rejected.load());
  EXPECT_EQ(sink.CounterSum("spillway_outcomes_total"), admitted.load());
}

TEST(LimiterThreadsTest, AdaptiveLimitIsNeverExceededWhileItMoves) {
  SimulatedClock clock;
  auto aimd = std::shared_ptr<Limit>(*AimdLimit::Create(
      {.initial_limit = 8, .min_limit = 1, .max_limit = 16}));
  auto limiter = MakeLimiter(aimd, &clock, nullptr);
  std::atomic<int> violations{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIterations; ++i) {
        Admission a = limiter->TryAcquire();
        if (!a.ok()) continue;
        // The limit never exceeds its max, so neither may admissions.
        if (a.permit().in_flight_at_admission() > 16) violations.fetch_add(1);
        if ((i + t) % 7 == 0) {
          a.permit().Dropped();
        } else {
          a.permit().Success();
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(limiter->in_flight(), 0);
  EXPECT_GE(limiter->limit(), 1);
  EXPECT_LE(limiter->limit(), 16);
}

TEST(LimiterThreadsTest, ReservedShareIsAlwaysAvailableUnderContention) {
  SimulatedClock clock;
  // Limit 20: critical reserves 4, normal 2; batch capped at 10.
  auto limiter = MakeLimiter(*FixedLimit::Create(20), &clock, nullptr,
                             ConcurrencyLimiterOptions().partitions);
  std::atomic<bool> stop{false};
  std::vector<std::thread> flood;
  for (int t = 0; t < kThreads - 1; ++t) {
    flood.emplace_back([&, t] {
      const Priority p = t % 2 == 0 ? Priority::kBatch : Priority::kNormal;
      std::vector<Permit> held;
      while (!stop.load(std::memory_order_relaxed)) {
        Admission a = limiter->TryAcquire(p);
        if (a.ok()) held.push_back(std::move(a).permit());
        if (held.size() > 4) held.erase(held.begin());
      }
    });
  }
  int failures = 0;
  for (int round = 0; round < 5000; ++round) {
    std::vector<Permit> mine;
    for (int i = 0; i < 4; ++i) {
      Admission a = limiter->TryAcquire(Priority::kCritical);
      if (!a.ok()) {
        ++failures;
        break;
      }
      mine.push_back(std::move(a).permit());
    }
  }
  stop.store(true);
  for (std::thread& t : flood) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(limiter->in_flight(), 0);
}

// Blocking Acquire from many threads with no clock movement at all: every
// caller must be served by releases alone, or it would wait forever (a lost
// wake-up). The simulated clock never reaches the deadline; if a thread is
// still stuck after a generous real-time safety margin, the test moves the
// clock past the deadline to free it and fails.
void RunNoLostWakeups(QueueOrder order) {
  SimulatedClock clock;
  ConcurrencyLimiterOptions o;
  o.limit = *FixedLimit::Create(2);
  o.max_queued = kThreads;
  o.queue_order = order;
  o.clock = &clock;
  auto limiter = std::move(*ConcurrencyLimiter::Create(std::move(o)));
  const MonotonicTime deadline = clock.Now() + std::chrono::hours(1);
  constexpr int kPerThread = 2000;
  std::atomic<int> served{0};
  std::atomic<int> rejected{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const Priority p = static_cast<Priority>(t % kNumPriorities);
      for (int i = 0; i < kPerThread; ++i) {
        Admission a = limiter->Acquire(deadline, p);
        if (a.ok()) {
          served.fetch_add(1);
        } else {
          rejected.fetch_add(1);
        }
      }
    });
  }
  const auto give_up =
      std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (served.load() + rejected.load() < kThreads * kPerThread &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::yield();
  }
  const int stuck = kThreads * kPerThread - served.load() - rejected.load();
  if (stuck > 0) clock.Advance(absl::Hours(2));
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(stuck, 0);
  EXPECT_EQ(rejected.load(), 0);
  EXPECT_EQ(served.load(), kThreads * kPerThread);
  EXPECT_EQ(limiter->in_flight(), 0);
  EXPECT_EQ(limiter->queued(), 0);
}

TEST(LimiterThreadsTest, NoLostWakeupsFifo) {
  RunNoLostWakeups(QueueOrder::kFifo);
}
TEST(LimiterThreadsTest, NoLostWakeupsLifo) {
  RunNoLostWakeups(QueueOrder::kLifo);
}

TEST(LimiterThreadsTest, RealClockAcquireServesEveryCaller) {
  ConcurrencyLimiterOptions o;
  o.limit = *FixedLimit::Create(2);
  o.max_queued = kThreads;
  auto limiter = std::move(*ConcurrencyLimiter::Create(std::move(o)));
  constexpr int kPerThread = 1000;
  std::atomic<int> served{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        // Safety margin only: a lost wake-up would time out and show up as
        // a missing admission.
        Admission a = limiter->Acquire(std::chrono::steady_clock::now() +
                                       std::chrono::seconds(60));
        if (a.ok()) served.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(served.load(), kThreads * kPerThread);
  EXPECT_EQ(limiter->in_flight(), 0);
}

}  // namespace
}  // namespace spillway
