// Limit: the interface of concurrency-limit algorithms.
//
// A limit algorithm watches completed writes and decides how many may be in
// flight at once. The `ConcurrencyLimiter` owns admission; it feeds each
// completed write to `OnSample` and reads `current()` on every admission.
//
//   std::shared_ptr<spillway::Limit> limit =
//       *spillway::AimdLimit::Create({.min_limit = 4, .max_limit = 64});
//   limit->OnSample({.rtt = std::chrono::milliseconds(3), .in_flight = 10});
//   int now_allowed = limit->current();
//
// Samples: only writes that completed as `Success` or `Dropped` are samples.
// `Ignore`d and rejected writes never reach the algorithm. A sample carries
// its round-trip time, the in-flight count when the write was admitted
// (including itself), whether it was dropped (a congestion signal: timeout,
// overload error), and the times it started and ended, so algorithms that
// aggregate samples into time windows can be added without changing callers.
//
// Implementations: `FixedLimit` (fixed_limit.h), `AimdLimit` (aimd_limit.h).
//
// Thread safety: `current()` is a single relaxed atomic load, lock-free and
// safe from any thread. `OnSample` is called concurrently from every thread
// that releases a permit; implementations must be thread-safe and must not
// block (lock-free, or at most a try-lock for once-per-window work).

#ifndef SPILLWAY_LIMIT_H_
#define SPILLWAY_LIMIT_H_

#include <atomic>
#include <chrono>

#include "spillway/clock.h"

namespace spillway {

// The largest limit any algorithm may produce: the ConcurrencyLimiter packs
// per-priority in-flight counts into one 64-bit word, 21 bits each.
inline constexpr int kMaxConcurrencyLimit = (1 << 21) - 1;

// A completed write. Times are std::chrono values (as MonotonicTime): the
// sample is built on every release, and chrono durations are plain integers.
struct LimitSample {
  // Time from admission to release.
  std::chrono::nanoseconds rtt{0};
  // In-flight writes when this one was admitted, itself included.
  int in_flight = 0;
  // True when the write failed because the database is congested.
  bool dropped = false;
  // When the write was admitted and released.
  MonotonicTime start{};
  MonotonicTime end{};
};

class Limit {
 public:
  virtual ~Limit() = default;

  // Feeds one completed write. Thread-safe; must not block.
  virtual void OnSample(const LimitSample& sample) = 0;

  // The largest value `current()` can take; the limiter validates it against
  // kMaxConcurrencyLimit. Thread-safe.
  virtual int max_limit() const = 0;

  // The smallest value `current()` can take (reported as
  // `spillway_limit_min`, so an alert can see a limit pinned at its floor).
  // Default: 1. Thread-safe.
  virtual int min_limit() const { return 1; }

  // A hint from the owner: the database got slower at unchanged demand
  // (WriteThrottle calls it when its OverloadDetector names
  // database_slowdown). An algorithm that compares latency with a baseline
  // may re-measure it. Default: ignored. Thread-safe; must not block.
  virtual void OnDatabaseSlowdown() {}

  // The limit now. Thread-safe; lock-free; the value may be stale at once.
  int current() const { return limit_.load(std::memory_order_relaxed); }

  // The latency the algorithm holds the database within, as a multiple of
  // its baseline (KneeLimit: latency_tolerance, or wider after its
  // throughput probe); reported as `spillway_latency_band`. Default: 0, an
  // algorithm without such a band. Thread-safe; lock-free; the value may be
  // stale at once.
  virtual double latency_band() const { return 0; }

 protected:
  explicit Limit(int initial) : limit_(initial) {}

  // For implementations: replace the limit if it still equals `expected`
  // (compare-exchange); on failure `expected` receives the current value.
  bool CompareExchangeLimit(int& expected, int desired) {
    return limit_.compare_exchange_weak(expected, desired,
                                        std::memory_order_relaxed);
  }
  void StoreLimit(int value) { limit_.store(value, std::memory_order_relaxed); }

 private:
  // The published limit. Atomic: written by whichever thread completes a
  // sample, read on every admission.
  std::atomic<int> limit_;
};

}  // namespace spillway

#endif  // SPILLWAY_LIMIT_H_
