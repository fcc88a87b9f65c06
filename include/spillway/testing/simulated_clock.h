// SimulatedClock: a clock that moves only when told to.
//
// Tests (spillway's and its users') drive time explicitly instead of
// sleeping: advance the clock and assert exactly. Advancing also wakes every
// thread waiting in `WaitUntil` so it can see whether its deadline passed —
// which is how a blocking `ConcurrencyLimiter::Acquire` times out on
// simulated time.
//
//   spillway::testing::SimulatedClock clock;
//   auto bucket = spillway::TokenBucket::Create({.rate = 1, .burst = 1,
//                                                .initial_tokens = 0,
//                                                .clock = &clock});
//   clock.Advance(absl::Milliseconds(999));
//   // (*bucket)->TryConsume() is false: 0.999 tokens.
//   clock.Advance(absl::Milliseconds(1));
//   // (*bucket)->TryConsume() is true.
//
// `Now()` is one atomic load, so the simulated clock is also the cheap clock
// of spillway's benchmarks, isolating the cost of synchronization.
//
// Thread safety: all methods are thread-safe.

#ifndef SPILLWAY_TESTING_SIMULATED_CLOCK_H_
#define SPILLWAY_TESTING_SIMULATED_CLOCK_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

#include "absl/time/time.h"
#include "spillway/clock.h"

namespace spillway::testing {

class SimulatedClock final : public Clock {
 public:
  // Starts at `start`. Default: one hour after the steady clock's epoch, so
  // that code subtracting durations from `Now()` stays positive.
  explicit SimulatedClock(MonotonicTime start = MonotonicTime() +
                                                std::chrono::hours(1));
  SimulatedClock(const SimulatedClock&) = delete;
  SimulatedClock& operator=(const SimulatedClock&) = delete;

  // Thread-safe; lock-free.
  MonotonicTime Now() const override;

  // Moves time forward by `d` and wakes every waiter. REQUIRES: d >= 0.
  // Thread-safe.
  void Advance(absl::Duration d);

  // Moves time to `t` if it is later than now (time never goes back) and
  // wakes every waiter. Thread-safe.
  void AdvanceTo(MonotonicTime t);

  // Threads currently blocked in WaitUntil. Thread-safe; the value may be
  // stale at once.
  int waiters() const;

  bool WaitUntil(std::condition_variable& cv,
                 std::unique_lock<std::mutex>& lock, MonotonicTime deadline,
                 absl::FunctionRef<bool()> ready) override;

 private:
  struct Registration {
    std::condition_variable* cv;
    std::mutex* mu;
  };
  void WakeAll();

  std::atomic<int64_t> now_ns_;
  // Waiters to wake on Advance. Lock order: registry_mu_, then a waiter's
  // mutex; a waiter never holds its mutex while taking registry_mu_.
  mutable std::mutex registry_mu_;
  std::vector<Registration> registry_;
};

}  // namespace spillway::testing

#endif  // SPILLWAY_TESTING_SIMULATED_CLOCK_H_
