#include "spillway/concurrency_limiter.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spillway/aimd_limit.h"
#include "spillway/fixed_limit.h"
#include "spillway/knee_limit.h"
#include "spillway/limit_algorithm.h"
#include "spillway/testing/in_memory_metrics.h"
#include "spillway/testing/simulated_clock.h"
#include "spillway/windowed_limit.h"
#include "tests/common/eventually.h"

namespace spillway {
namespace {

using ::spillway::testing::InMemoryMetricsSink;
using ::spillway::testing::SimulatedClock;

using ::spillway::test::Eventually;

// Partitions that do not interfere: everything shared, no caps.
constexpr std::array<PartitionOptions, kNumPriorities> kNoPartitions = {
    PartitionOptions{0, 1}, PartitionOptions{0, 1}, PartitionOptions{0, 1}};

class LimiterTest : public ::testing::Test {
 protected:
  std::unique_ptr<ConcurrencyLimiter> Make(
      std::shared_ptr<Limit> limit,
      std::array<PartitionOptions, kNumPriorities> partitions = kNoPartitions,
      int max_queued = 16, QueueOrder order = QueueOrder::kFifo) {
    ConcurrencyLimiterOptions o;
    o.name = "orders";
    o.limit = std::move(limit);
    o.partitions = partitions;
    o.max_queued = max_queued;
    o.queue_order = order;
    o.clock = &clock_;
    o.metrics = &sink_;
    absl::StatusOr<std::unique_ptr<ConcurrencyLimiter>> l =
        ConcurrencyLimiter::Create(std::move(o));
    EXPECT_TRUE(l.ok()) << l.status();
    return std::move(*l);
  }
  static std::shared_ptr<Limit> Fixed(int n) { return *FixedLimit::Create(n); }

  double Counter(const LabelValues& labels, bool admitted) {
    return sink_
        .CounterValue(
            admitted ? "spillway_admitted_total" : "spillway_rejected_total",
            labels)
        .value_or(-1);
  }

  SimulatedClock clock_;
  InMemoryMetricsSink sink_;
};

TEST_F(LimiterTest, AdmitsExactlyUpToTheLimitThenRejects) {
  auto limiter = Make(Fixed(3));
  std::vector<Permit> permits;
  for (int i = 0; i < 3; ++i) {
    Admission a = limiter->TryAcquire();
    ASSERT_TRUE(a.ok()) << i;
    EXPECT_EQ(a.permit().in_flight_at_admission(), i + 1);
    permits.push_back(std::move(a).permit());
  }
  Admission rejected = limiter->TryAcquire();
  ASSERT_FALSE(rejected.ok());
  EXPECT_EQ(rejected.rejection().gate, Gate::kConcurrencyLimit);
  EXPECT_EQ(rejected.rejection().reason, Reason::kLimitReached);
  // No latency seen yet: the documented 1 ms hint.
  EXPECT_EQ(rejected.rejection().retry_after, absl::Milliseconds(1));
  EXPECT_EQ(limiter->in_flight(), 3);
  permits.pop_back();  // Destruction releases.
  EXPECT_EQ(limiter->in_flight(), 2);
  EXPECT_TRUE(limiter->TryAcquire().ok());
}

TEST_F(LimiterTest, DestructionIsIgnoreAndFeedsNoSample) {
  auto aimd = std::shared_ptr<Limit>(*AimdLimit::Create(
      {.initial_limit = 10, .min_limit = 1, .max_limit = 100}));
  auto limiter = Make(aimd);
  { Permit p = std::move(limiter->TryAcquire()).permit(); }
  EXPECT_EQ(limiter->in_flight(), 0);
  EXPECT_EQ(aimd->current(), 10);
  EXPECT_EQ(
      sink_.CounterValue("spillway_outcomes_total", {"orders", "ignored"}), 1);
  EXPECT_EQ(sink_
                .HistogramValue("spillway_write_latency_seconds",
                                {"orders", "success"})
                ->count,
            0);
}

TEST_F(LimiterTest, MovedPermitReleasesOnce) {
  auto limiter = Make(Fixed(2));
  Permit a = std::move(limiter->TryAcquire()).permit();
  Permit b = std::move(a);
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): tested.
  EXPECT_TRUE(b.valid());
  Permit c;
  c = std::move(b);
  EXPECT_EQ(limiter->in_flight(), 1);
  c.Success();
  EXPECT_FALSE(c.valid());
  c.Success();  // A second release of an empty permit is a no-op.
  EXPECT_EQ(limiter->in_flight(), 0);
  EXPECT_EQ(
      sink_.CounterValue("spillway_outcomes_total", {"orders", "success"}), 1);
}

TEST_F(LimiterTest, SuccessRecordsLatencyAndSetsTheRetryHint) {
  auto limiter = Make(Fixed(2));
  Permit p = std::move(limiter->TryAcquire()).permit();
  clock_.Advance(absl::Milliseconds(8));
  p.Success();
  auto h = sink_.HistogramValue("spillway_write_latency_seconds",
                                {"orders", "success"});
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->count, 1);
  EXPECT_DOUBLE_EQ(h->sum, 0.008);
  EXPECT_EQ(limiter->retry_after(), absl::Milliseconds(8));
  // EWMA with weight 1/8: 8 ms then 16 ms -> 9 ms.
  Permit q = std::move(limiter->TryAcquire()).permit();
  clock_.Advance(absl::Milliseconds(16));
  q.Success();
  EXPECT_EQ(limiter->retry_after(), absl::Milliseconds(9));
  // At most one sample per millisecond: a write that ends 0.5 ms after the
  // last sample leaves it; one that ends a millisecond after it counts.
  Permit r = std::move(limiter->TryAcquire()).permit();
  clock_.Advance(absl::Microseconds(500));
  r.Success();
  EXPECT_EQ(limiter->retry_after(), absl::Milliseconds(9));
  Permit t = std::move(limiter->TryAcquire()).permit();
  clock_.Advance(absl::Microseconds(500));
  t.Success();
  // 9 ms + (0.5 ms - 9 ms) / 8 = 7.9375 ms.
  EXPECT_EQ(limiter->retry_after(), absl::Microseconds(7937.5));
}

TEST_F(LimiterTest, DroppedIsACongestionSignalIgnoreIsNoSignal) {
  auto aimd = std::shared_ptr<Limit>(*AimdLimit::Create(
      {.initial_limit = 20, .min_limit = 1, .max_limit = 100}));
  auto limiter = Make(aimd);
  Permit p = std::move(limiter->TryAcquire()).permit();
  p.Ignore();
  EXPECT_EQ(limiter->limit(), 20);
  Permit q = std::move(limiter->TryAcquire()).permit();
  q.Dropped();
  EXPECT_EQ(limiter->limit(), 18);
  EXPECT_EQ(sink_.GaugeValue("spillway_limit", {"orders"}), 18);
  EXPECT_EQ(
      sink_.CounterValue("spillway_outcomes_total", {"orders", "dropped"}), 1);
  EXPECT_EQ(sink_
                .HistogramValue("spillway_write_latency_seconds",
                                {"orders", "dropped"})
                ->count,
            1);
}

TEST_F(LimiterTest, LoweredLimitAdmitsNothingUntilInFlightDropsBelowIt) {
  auto aimd =
      std::shared_ptr<Limit>(*AimdLimit::Create({.initial_limit = 10,
                                                 .min_limit = 1,
                                                 .max_limit = 100,
                                                 .backoff_ratio = 0.5}));
  auto limiter = Make(aimd);
  std::vector<Permit> permits;
  for (int i = 0; i < 10; ++i) {
    permits.push_back(std::move(limiter->TryAcquire()).permit());
  }
  permits.back().Dropped();  // 10 -> 5, with 9 in flight.
  permits.pop_back();
  EXPECT_EQ(limiter->limit(), 5);
  for (int i = 0; i < 4; ++i) {
    EXPECT_FALSE(limiter->TryAcquire(Priority::kCritical).ok()) << i;
    permits.pop_back();  // Ignore: the limit stays 5.
  }
  EXPECT_EQ(limiter->in_flight(), 5);
  EXPECT_FALSE(limiter->TryAcquire().ok());
  permits.pop_back();
  clock_.Advance(absl::Milliseconds(100));  // Critical's pressure is over.
  EXPECT_TRUE(limiter->TryAcquire().ok());
}

// Limit 10, defaults: critical reserves 2, normal 1, batch none and may hold
// at most 5; the shared pool is 10 - 3 = 7.
TEST_F(LimiterTest, DefaultPartitionSharesAtLimitTen) {
  auto limiter = Make(Fixed(10), ConcurrencyLimiterOptions().partitions);
  EXPECT_EQ(limiter->reserved(Priority::kCritical, 10), 2);
  EXPECT_EQ(limiter->reserved(Priority::kNormal, 10), 1);
  EXPECT_EQ(limiter->reserved(Priority::kBatch, 10), 0);
  EXPECT_EQ(limiter->cap(Priority::kBatch, 10), 5);
  EXPECT_EQ(limiter->cap(Priority::kCritical, 10), 10);
  // Rounding: floor(0.2 * 21) = 4, floor(0.5 * 1) = 0 but at least 1.
  EXPECT_EQ(limiter->reserved(Priority::kCritical, 21), 4);
  EXPECT_EQ(limiter->cap(Priority::kBatch, 1), 1);
}

TEST_F(LimiterTest, GuaranteedShareIsAvailableAtOnceUnderSaturation) {
  auto limiter = Make(Fixed(10), ConcurrencyLimiterOptions().partitions);
  std::vector<Permit> held;
  // A batch flood takes its cap, 5.
  for (int i = 0; i < 5; ++i) {
    Admission a = limiter->TryAcquire(Priority::kBatch);
    ASSERT_TRUE(a.ok()) << i;
    held.push_back(std::move(a).permit());
  }
  Admission batch = limiter->TryAcquire(Priority::kBatch);
  ASSERT_FALSE(batch.ok());
  EXPECT_EQ(batch.rejection().reason, Reason::kPartitionLimit);
  // Normal: its reserved 1 plus the 2 left in the shared pool.
  for (int i = 0; i < 3; ++i) {
    Admission a = limiter->TryAcquire(Priority::kNormal);
    ASSERT_TRUE(a.ok()) << i;
    held.push_back(std::move(a).permit());
  }
  Admission normal = limiter->TryAcquire(Priority::kNormal);
  ASSERT_FALSE(normal.ok());
  EXPECT_EQ(normal.rejection().reason, Reason::kLimitReached);
  // Everything borrowable is taken; critical still gets its 2 at once.
  for (int i = 0; i < 2; ++i) {
    Admission a = limiter->TryAcquire(Priority::kCritical);
    ASSERT_TRUE(a.ok()) << i;
    held.push_back(std::move(a).permit());
  }
  EXPECT_EQ(limiter->in_flight(), 10);
  EXPECT_FALSE(limiter->TryAcquire(Priority::kCritical).ok());
  EXPECT_EQ(limiter->in_flight(Priority::kCritical), 2);
  EXPECT_EQ(limiter->in_flight(Priority::kNormal), 3);
  EXPECT_EQ(limiter->in_flight(Priority::kBatch), 5);
  EXPECT_EQ(Counter({"orders", "concurrency_limit", "batch", "partition_limit"},
                    false),
            1);
  EXPECT_EQ(Counter({"orders", "concurrency_limit", "critical"}, true), 2);
}

// Limits above the precomputed share table (4096) compute the shares per
// admission; the semantics are the same.
TEST_F(LimiterTest, SharesHoldAboveThePrecomputedTable) {
  auto limiter = Make(Fixed(5000), ConcurrencyLimiterOptions().partitions);
  EXPECT_EQ(limiter->reserved(Priority::kCritical, 5000), 1000);
  EXPECT_EQ(limiter->reserved(Priority::kNormal, 5000), 500);
  EXPECT_EQ(limiter->cap(Priority::kBatch, 5000), 2500);
  std::vector<Permit> held;
  held.reserve(5000);
  auto take = [&](Priority p, int n) {
    for (int i = 0; i < n; ++i) {
      Admission a = limiter->TryAcquire(p);
      if (!a.ok()) return i;
      held.push_back(std::move(a).permit());
    }
    return n;
  };
  EXPECT_EQ(take(Priority::kBatch, 3000), 2500);  // Its cap.
  // Normal: the limit less critical's reserved 1000 and batch's 2500.
  EXPECT_EQ(take(Priority::kNormal, 3000), 1500);
  Admission normal = limiter->TryAcquire(Priority::kNormal);
  ASSERT_FALSE(normal.ok());
  EXPECT_EQ(normal.rejection().reason, Reason::kLimitReached);
  EXPECT_EQ(take(Priority::kCritical, 3000), 1000);  // Its reserved share.
  EXPECT_EQ(limiter->in_flight(), 5000);
}

TEST_F(LimiterTest, UnreservedCapacityIsBorrowableByAnyPartition) {
  auto limiter = Make(Fixed(10), ConcurrencyLimiterOptions().partitions);
  std::vector<Permit> held;
  // Critical alone may use everything except normal's reserved 1: its own
  // 2 and the whole shared pool of 7. Reserved slots are never lent.
  for (int i = 0; i < 9; ++i) {
    Admission a = limiter->TryAcquire(Priority::kCritical);
    ASSERT_TRUE(a.ok()) << i;
    held.push_back(std::move(a).permit());
  }
  EXPECT_FALSE(limiter->TryAcquire(Priority::kCritical).ok());
  EXPECT_TRUE(limiter->TryAcquire(Priority::kNormal).ok());  // Reserved.
  held.clear();
  clock_.Advance(absl::Milliseconds(100));  // Critical's pressure is over.
  // Normal alone may use everything except critical's reserved 2.
  for (int i = 0; i < 8; ++i) {
    Admission a = limiter->TryAcquire(Priority::kNormal);
    ASSERT_TRUE(a.ok()) << i;
    held.push_back(std::move(a).permit());
  }
  EXPECT_FALSE(limiter->TryAcquire(Priority::kNormal).ok());
  EXPECT_TRUE(limiter->TryAcquire(Priority::kCritical).ok());
}

// Runs Acquire on another thread; the result lands in `out`.
class AsyncAcquire {
 public:
  AsyncAcquire(ConcurrencyLimiter* limiter, MonotonicTime deadline,
               Priority priority = Priority::kNormal,
               std::atomic<int>* order = nullptr)
      : thread_([this, limiter, deadline, priority, order] {
          Admission a = limiter->Acquire(deadline, priority);
          if (order != nullptr) served_at_ = order->fetch_add(1);
          ok_ = a.ok();
          if (a.ok()) {
            permit_ = std::move(a).permit();
          } else {
            rejection_ = a.rejection();
          }
          done_.store(true);
        }) {}
  ~AsyncAcquire() {
    if (thread_.joinable()) thread_.join();
  }
  void Join() { thread_.join(); }
  bool done() const { return done_.load(); }
  bool ok() const { return ok_; }
  int served_at() const { return served_at_; }
  Permit& permit() { return permit_; }
  const Rejection& rejection() const { return rejection_; }

 private:
  std::atomic<bool> done_{false};
  bool ok_ = false;
  int served_at_ = -1;
  Permit permit_;
  Rejection rejection_;
  std::thread thread_;
};

TEST_F(LimiterTest, WaiterIsServedOnRelease) {
  auto limiter = Make(Fixed(1));
  Permit held = std::move(limiter->TryAcquire()).permit();
  AsyncAcquire waiter(limiter.get(),
                      clock_.Now() + absl::ToChronoSeconds(absl::Seconds(1)));
  // In WaitUntil: queued and reported.
  ASSERT_TRUE(Eventually([&] { return clock_.waiters() == 1; }));
  EXPECT_EQ(limiter->queued(), 1);
  EXPECT_EQ(sink_.GaugeValue("spillway_queued", {"orders"}), 1);
  EXPECT_FALSE(waiter.done());
  held.Success();
  waiter.Join();
  ASSERT_TRUE(waiter.ok());
  EXPECT_EQ(limiter->in_flight(), 1);
  EXPECT_EQ(limiter->queued(), 0);
  EXPECT_EQ(waiter.permit().in_flight_at_admission(), 1);
}

TEST_F(LimiterTest, WaiterIsRejectedAtItsDeadlineOnSimulatedTime) {
  auto limiter = Make(Fixed(1));
  Permit held = std::move(limiter->TryAcquire()).permit();
  const MonotonicTime deadline = clock_.Now() + std::chrono::milliseconds(100);
  AsyncAcquire waiter(limiter.get(), deadline);
  ASSERT_TRUE(Eventually([&] { return clock_.waiters() == 1; }));
  clock_.Advance(absl::Milliseconds(99));
  // Not yet: the waiter re-checks and keeps waiting. Give it the chance to
  // run, then check it is still queued.
  ASSERT_TRUE(Eventually([&] { return clock_.waiters() == 1; }));
  EXPECT_FALSE(waiter.done());
  clock_.Advance(absl::Milliseconds(1));
  waiter.Join();
  ASSERT_FALSE(waiter.ok());
  EXPECT_EQ(waiter.rejection().reason, Reason::kDeadlineExceeded);
  EXPECT_EQ(limiter->queued(), 0);
  EXPECT_EQ(limiter->in_flight(), 1);
  EXPECT_EQ(
      Counter({"orders", "concurrency_limit", "normal", "deadline_exceeded"},
              false),
      1);
}

TEST_F(LimiterTest, QueueIsFifoByDefault) {
  auto limiter = Make(Fixed(1));
  Permit held = std::move(limiter->TryAcquire()).permit();
  const MonotonicTime deadline = clock_.Now() + std::chrono::seconds(10);
  std::atomic<int> order{0};
  AsyncAcquire first(limiter.get(), deadline, Priority::kNormal, &order);
  ASSERT_TRUE(Eventually([&] { return limiter->queued() == 1; }));
  AsyncAcquire second(limiter.get(), deadline, Priority::kNormal, &order);
  ASSERT_TRUE(Eventually([&] { return limiter->queued() == 2; }));
  held.Success();
  first.Join();
  EXPECT_TRUE(first.ok());
  EXPECT_EQ(first.served_at(), 0);
  EXPECT_FALSE(second.done());
  first.permit().Success();
  second.Join();
  EXPECT_TRUE(second.ok());
  EXPECT_EQ(second.served_at(), 1);
}

TEST_F(LimiterTest, QueueIsLifoWhenAsked) {
  auto limiter = Make(Fixed(1), kNoPartitions, 16, QueueOrder::kLifo);
  Permit held = std::move(limiter->TryAcquire()).permit();
  const MonotonicTime deadline = clock_.Now() + std::chrono::seconds(10);
  std::atomic<int> order{0};
  AsyncAcquire first(limiter.get(), deadline, Priority::kNormal, &order);
  ASSERT_TRUE(Eventually([&] { return limiter->queued() == 1; }));
  AsyncAcquire second(limiter.get(), deadline, Priority::kNormal, &order);
  ASSERT_TRUE(Eventually([&] { return limiter->queued() == 2; }));
  held.Success();
  second.Join();
  EXPECT_TRUE(second.ok());
  EXPECT_EQ(second.served_at(), 0);
  EXPECT_FALSE(first.done());
  second.permit().Success();
  first.Join();
  EXPECT_TRUE(first.ok());
}

TEST_F(LimiterTest, HigherPriorityWaiterIsServedFirst) {
  auto limiter = Make(Fixed(1));
  Permit held = std::move(limiter->TryAcquire()).permit();
  const MonotonicTime deadline = clock_.Now() + std::chrono::seconds(10);
  std::atomic<int> order{0};
  AsyncAcquire batch(limiter.get(), deadline, Priority::kBatch, &order);
  ASSERT_TRUE(Eventually([&] { return limiter->queued() == 1; }));
  AsyncAcquire critical(limiter.get(), deadline, Priority::kCritical, &order);
  ASSERT_TRUE(Eventually([&] { return limiter->queued() == 2; }));
  held.Success();
  critical.Join();
  EXPECT_EQ(critical.served_at(), 0);
  critical.permit().Success();
  batch.Join();
  EXPECT_EQ(batch.served_at(), 1);
}

TEST_F(LimiterTest, FullQueueRejectsAtOnce) {
  auto limiter = Make(Fixed(1), kNoPartitions, /*max_queued=*/1);
  Permit held = std::move(limiter->TryAcquire()).permit();
  const MonotonicTime deadline = clock_.Now() + std::chrono::seconds(10);
  AsyncAcquire waiter(limiter.get(), deadline);
  ASSERT_TRUE(Eventually([&] { return limiter->queued() == 1; }));
  Admission a = limiter->Acquire(deadline);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.rejection().reason, Reason::kQueueFull);
  held.Success();
  waiter.Join();
  EXPECT_TRUE(waiter.ok());
}

TEST_F(LimiterTest, NoQueueMeansAcquireIsTryAcquire) {
  auto limiter = Make(Fixed(1), kNoPartitions, /*max_queued=*/0);
  Permit held = std::move(limiter->TryAcquire()).permit();
  Admission a = limiter->Acquire(clock_.Now() + std::chrono::seconds(10));
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.rejection().reason, Reason::kLimitReached);
  EXPECT_EQ(clock_.waiters(), 0);
}

TEST_F(LimiterTest, TryAcquireDoesNotOvertakeWaitersOfItsPriority) {
  // Limit 10 with batch capped at 5: a batch waiter queues on its cap while
  // the limit has room.
  auto limiter = Make(Fixed(10), ConcurrencyLimiterOptions().partitions);
  std::vector<Permit> held;
  for (int i = 0; i < 5; ++i) {
    held.push_back(std::move(limiter->TryAcquire(Priority::kBatch)).permit());
  }
  AsyncAcquire waiter(limiter.get(), clock_.Now() + std::chrono::seconds(10),
                      Priority::kBatch);
  ASSERT_TRUE(Eventually([&] { return limiter->queued() == 1; }));
  // Same priority: refused, it would jump the queue.
  EXPECT_FALSE(limiter->TryAcquire(Priority::kBatch).ok());
  // Higher priorities are not held back by a batch waiter.
  EXPECT_TRUE(limiter->TryAcquire(Priority::kNormal).ok());
  EXPECT_TRUE(limiter->TryAcquire(Priority::kCritical).ok());
  held.pop_back();
  waiter.Join();
  EXPECT_TRUE(waiter.ok());
}

// Limit 4: critical reserves 1, everything else is shared.
constexpr std::array<PartitionOptions, kNumPriorities> kCriticalQuarter = {
    PartitionOptions{0.25, 1}, PartitionOptions{0, 1}, PartitionOptions{0, 1}};

TEST_F(LimiterTest, RefusedHigherPriorityStopsLowerOnesBorrowing) {
  auto limiter = Make(Fixed(4), kCriticalQuarter);
  std::vector<Permit> batch;
  for (int i = 0; i < 3; ++i) {
    batch.push_back(std::move(limiter->TryAcquire(Priority::kBatch)).permit());
  }
  Permit critical =
      std::move(limiter->TryAcquire(Priority::kCritical)).permit();
  ASSERT_TRUE(critical.valid());  // Its reserved slot.
  EXPECT_FALSE(limiter->TryAcquire(Priority::kCritical).ok());  // Full.
  // A batch slot frees: it is kept for critical, not borrowed by batch.
  batch.pop_back();
  Admission b = limiter->TryAcquire(Priority::kBatch);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.rejection().reason, Reason::kPriorityPressure);
  EXPECT_EQ(
      Counter({"orders", "concurrency_limit", "batch", "priority_pressure"},
              false),
      1);
  EXPECT_TRUE(limiter->TryAcquire(Priority::kCritical).ok());
  // 99 ms later the pressure still holds; at 100 ms it is over.
  clock_.Advance(absl::Milliseconds(99));
  EXPECT_EQ(limiter->TryAcquire(Priority::kBatch).rejection().reason,
            Reason::kPriorityPressure);
  clock_.Advance(absl::Milliseconds(1));
  Permit borrowed = std::move(limiter->TryAcquire(Priority::kBatch)).permit();
  ASSERT_TRUE(borrowed.valid());
  // The expired hold was cleared; the next refusal of critical starts a new
  // one, as the first did.
  EXPECT_FALSE(limiter->TryAcquire(Priority::kCritical).ok());
  borrowed = Permit();
  EXPECT_EQ(limiter->TryAcquire(Priority::kBatch).rejection().reason,
            Reason::kPriorityPressure);
  clock_.Advance(absl::Milliseconds(100));
  EXPECT_TRUE(limiter->TryAcquire(Priority::kBatch).ok());
}

TEST_F(LimiterTest, PriorityHoldZeroDisablesThePressure) {
  ConcurrencyLimiterOptions o;
  o.limit = Fixed(4);
  o.partitions = kCriticalQuarter;
  o.priority_hold = absl::ZeroDuration();
  o.clock = &clock_;
  auto limiter = std::move(*ConcurrencyLimiter::Create(std::move(o)));
  std::vector<Permit> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(std::move(limiter->TryAcquire(Priority::kBatch)).permit());
  }
  held.push_back(std::move(limiter->TryAcquire(Priority::kCritical)).permit());
  EXPECT_FALSE(limiter->TryAcquire(Priority::kCritical).ok());
  held.erase(held.begin());
  EXPECT_TRUE(limiter->TryAcquire(Priority::kBatch).ok());
}

// Raises the limit by one each window; its band is scripted.
class BandAlgorithm final : public LimitAlgorithm {
 public:
  int initial_limit() const override { return 4; }
  int min_limit() const override { return 1; }
  int max_limit() const override { return 100; }
  int Update(const WindowSample&, int limit) override { return limit + 1; }
  double latency_band() const override { return band; }
  double band = 2.0;
};

TEST_F(LimiterTest, ReportsTheLatencyBandWithTheLimit) {
  auto algorithm = std::make_unique<BandAlgorithm>();
  BandAlgorithm* raw = algorithm.get();
  auto windowed = WindowedLimit::Create(std::move(algorithm),
                                        {.min_window = absl::Milliseconds(1),
                                         .max_window = absl::Milliseconds(1),
                                         .min_samples = 1});
  ASSERT_TRUE(windowed.ok());
  auto limiter = Make(std::shared_ptr<Limit>(std::move(*windowed)));
  EXPECT_EQ(sink_.GaugeValue("spillway_latency_band", {"orders"}), 2.0);
  raw->band = 4.5;  // The probe widened the band.
  for (int i = 0; i < 2; ++i) {
    Permit p = std::move(limiter->TryAcquire()).permit();
    clock_.Advance(absl::Milliseconds(2));
    p.Success();  // The second closes the window the first opened.
  }
  EXPECT_EQ(sink_.GaugeValue("spillway_limit", {"orders"}), 5);
  EXPECT_EQ(sink_.GaugeValue("spillway_latency_band", {"orders"}), 4.5);

  // The default algorithm starts at its 2x band.
  auto knee = Make(*MakeDefaultLimit());
  EXPECT_EQ(sink_.GaugeValue("spillway_latency_band", {"orders"}), 2.0);
}

TEST_F(LimiterTest, MetricsReportDecisionsInFlightAndLimit) {
  auto limiter = Make(Fixed(2));
  Permit a = std::move(limiter->TryAcquire()).permit();
  Permit b = std::move(limiter->TryAcquire(Priority::kBatch)).permit();
  EXPECT_FALSE(limiter->TryAcquire().ok());
  EXPECT_EQ(Counter({"orders", "concurrency_limit", "normal"}, true), 1);
  EXPECT_EQ(Counter({"orders", "concurrency_limit", "batch"}, true), 1);
  EXPECT_EQ(Counter({"orders", "concurrency_limit", "normal", "limit_reached"},
                    false),
            1);
  EXPECT_EQ(sink_.GaugeValue("spillway_in_flight", {"orders"}), 2);
  EXPECT_EQ(sink_.GaugeValue("spillway_limit", {"orders"}), 2);
  // A FixedLimit has no latency band.
  EXPECT_EQ(sink_.GaugeValue("spillway_latency_band", {"orders"}), 0);
  a.Success();
  EXPECT_EQ(sink_.GaugeValue("spillway_in_flight", {"orders"}), 1);
}

}  // namespace
}  // namespace spillway
