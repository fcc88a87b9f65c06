// The hot path allocates nothing: admit and release on the limiter, consume
// and return on the bucket, with metrics reported into a real sink. This
// binary replaces global operator new to count allocations.
#include <atomic>
#include <cstdlib>
#include <new>
#include <utility>

#include "gtest/gtest.h"
#include "spillway/concurrency_limiter.h"
#include "spillway/fixed_limit.h"
#include "spillway/testing/in_memory_metrics.h"
#include "spillway/testing/simulated_clock.h"
#include "spillway/throttle.h"
#include "spillway/token_bucket.h"

namespace {
std::atomic<int64_t> g_allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace spillway {
namespace {

TEST(HotPathTest, AdmitAndReleaseAllocateNothing) {
  testing::SimulatedClock clock;
  testing::InMemoryMetricsSink sink;  // Every report goes to real handles.
  ConcurrencyLimiterOptions o;
  o.limit = *FixedLimit::Create(4);
  o.clock = &clock;
  o.metrics = &sink;
  auto limiter = std::move(*ConcurrencyLimiter::Create(std::move(o)));
  auto bucket = std::move(
      *TokenBucket::Create({.rate = 1e6, .clock = &clock, .metrics = &sink}));

  const int64_t before = g_allocations.load();
  for (int i = 0; i < 1000; ++i) {
    Admission a = limiter->TryAcquire(static_cast<Priority>(i % 3));
    Admission b = limiter->TryAcquire();
    clock.Advance(absl::Microseconds(10));
    if (i % 3 == 0) a.permit().Success();
    if (i % 3 == 1) a.permit().Dropped();
    b.permit().Ignore();
    absl::Duration retry_after;
    bucket->TryConsume(1, &retry_after);
    bucket->Return(1);
    bucket->ConsumeWithBorrow(1);
  }
  // The clock's Advance is test machinery and allocates nothing either.
  EXPECT_EQ(g_allocations.load() - before, 0);
  EXPECT_GT(sink.CounterSum("spillway_admitted_total"), 0);
}

TEST(HotPathTest, ThrottleAdmitAndReleaseAllocateNothing) {
  // The facade adds the overload detector; its intervals close on the hot
  // path (every 1 ms here) and allocate nothing while the cause holds.
  testing::SimulatedClock clock;
  testing::InMemoryMetricsSink sink;
  WriteThrottleOptions o;
  o.limiter.limit = *FixedLimit::Create(4);
  o.bucket = TokenBucketOptions{.rate = 1e6};
  o.overload.interval = absl::Milliseconds(1);
  o.overload.baseline_window = absl::Milliseconds(100);
  o.clock = &clock;
  o.metrics = &sink;
  auto throttle = std::move(*WriteThrottle::Create(std::move(o)));

  const int64_t before = g_allocations.load();
  for (int i = 0; i < 1000; ++i) {
    ThrottleAdmission a = throttle->Admit({.attempt = 1 + i % 2});
    ThrottleAdmission b = throttle->Admit();
    clock.Advance(absl::Microseconds(100));
    if (i % 3 == 0) a.permit().Success();
    if (i % 3 == 1) a.permit().Dropped();
    b.permit().Ignore();
  }
  EXPECT_EQ(g_allocations.load() - before, 0);
  EXPECT_GT(sink.CounterSum("spillway_admitted_total"), 0);
}

TEST(HotPathTest, CounterIsLive) {
  // The replacement operator new is in effect: allocating counts.
  const int64_t before = g_allocations.load();
  int* volatile p = new int(3);  // volatile: the allocation cannot be elided.
  delete p;
  EXPECT_EQ(g_allocations.load() - before, 1);
}

}  // namespace
}  // namespace spillway
