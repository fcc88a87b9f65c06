// Baselines for spillway_bench: the same two operations as TokenBucket and
// ConcurrencyLimiter, written the straightforward way with one std::mutex.
// They read the same Clock, so the comparison isolates synchronization.

#ifndef SPILLWAY_BENCH_MUTEX_BASELINES_H_
#define SPILLWAY_BENCH_MUTEX_BASELINES_H_

#include <algorithm>
#include <chrono>
#include <mutex>

#include "spillway/clock.h"

namespace spillway::bench {

// Token bucket: tokens and the time of the last refill under a mutex.
class MutexTokenBucket {
 public:
  MutexTokenBucket(Clock& clock, double rate, double burst)
      : clock_(clock),
        rate_(rate),
        burst_(burst),
        tokens_(burst),
        last_(clock.Now()) {}

  bool TryConsume(double n) {
    const MonotonicTime now = clock_.Now();
    std::lock_guard<std::mutex> lock(mu_);
    if (now > last_) {
      tokens_ = std::min(
          burst_,
          tokens_ + std::chrono::duration<double>(now - last_).count() * rate_);
      last_ = now;
    }
    if (tokens_ < n) return false;
    tokens_ -= n;
    return true;
  }

 private:
  Clock& clock_;
  const double rate_;
  const double burst_;
  std::mutex mu_;
  double tokens_;
  MonotonicTime last_;
};

// Concurrency limiter: in-flight count and an AIMD limit under a mutex.
class MutexLimiter {
 public:
  MutexLimiter(Clock& clock, int limit) : clock_(clock), limit_(limit) {}

  // Admits if in-flight is below the limit: returns true and the admission
  // time and in-flight count through the out-parameters.
  bool Acquire(MonotonicTime* start, int* in_flight) {
    const MonotonicTime now = clock_.Now();
    std::lock_guard<std::mutex> lock(mu_);
    if (in_flight_ >= limit_) return false;
    *in_flight = ++in_flight_;
    *start = now;
    return true;
  }

  void Success(MonotonicTime start, int in_flight) {
    const MonotonicTime now = clock_.Now();
    std::lock_guard<std::mutex> lock(mu_);
    --in_flight_;
    // AIMD step (no drop): grow when at least half the limit is used.
    if (now - start < std::chrono::seconds(5) && in_flight * 2 >= limit_) {
      limit_ = std::min(limit_ + 1, 200);
    }
  }

 private:
  Clock& clock_;
  std::mutex mu_;
  int limit_;
  int in_flight_ = 0;
};

}  // namespace spillway::bench

#endif  // SPILLWAY_BENCH_MUTEX_BASELINES_H_
