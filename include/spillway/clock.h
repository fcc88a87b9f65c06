// A monotonic clock, injected into every stateful spillway component.
//
// No spillway code reads the system clock directly: each component takes a
// `Clock&` (or a `Clock*` in its options), so tests can run on a simulated
// clock (`spillway::testing::SimulatedClock`) and never sleep to make logic
// happen. Production code uses `SteadyClock::Default()`, a thin wrapper over
// `std::chrono::steady_clock`.
//
//   spillway::Clock& clock = spillway::SteadyClock::Default();
//   spillway::MonotonicTime start = clock.Now();
//   ... write ...
//   absl::Duration took = spillway::ToDuration(clock.Now() - start);
//
// A clock also knows how to wait: `WaitUntil` blocks a thread on a condition
// variable until it is notified or the clock reaches a deadline. A simulated
// clock wakes such waiters when it is advanced past their deadline, which is
// what lets blocking admission be tested on simulated time.
//
// Thread safety: every method of every implementation is thread-safe.

#ifndef SPILLWAY_CLOCK_H_
#define SPILLWAY_CLOCK_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "absl/functional/function_ref.h"
#include "absl/time/time.h"

namespace spillway {

// A point on a monotonic time line. Only differences between two points of
// the same clock are meaningful.
using MonotonicTime = std::chrono::steady_clock::time_point;

// Converts between the chrono durations of `MonotonicTime` arithmetic and the
// `absl::Duration` used in spillway's options and results. Thread-safe.
inline absl::Duration ToDuration(MonotonicTime::duration d) {
  return absl::Nanoseconds(
      std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
}
inline MonotonicTime::duration ToChrono(absl::Duration d) {
  return std::chrono::duration_cast<MonotonicTime::duration>(
      absl::ToChronoNanoseconds(d));
}

class Clock {
 public:
  virtual ~Clock() = default;

  // The current time. Never decreases. Thread-safe.
  virtual MonotonicTime Now() const = 0;

  // Waits until `ready()` returns true or `Now() >= deadline`, and returns
  // the final value of `ready()`. `lock` must hold `*lock.mutex()` on entry
  // and holds it again on return; `ready` is only ever evaluated with it
  // held. Whoever makes `ready()` true must do so while holding that mutex
  // and then notify `cv`. The implementation may release and re-acquire the
  // mutex while waiting. Thread-safe.
  virtual bool WaitUntil(std::condition_variable& cv,
                         std::unique_lock<std::mutex>& lock,
                         MonotonicTime deadline,
                         absl::FunctionRef<bool()> ready) = 0;
};

// The real clock: `std::chrono::steady_clock`. Stateless.
class SteadyClock final : public Clock {
 public:
  // The process-wide instance. Stateless, so sharing it is safe.
  // Thread-safe.
  static SteadyClock& Default();

  MonotonicTime Now() const override {
    return std::chrono::steady_clock::now();
  }
  bool WaitUntil(std::condition_variable& cv,
                 std::unique_lock<std::mutex>& lock, MonotonicTime deadline,
                 absl::FunctionRef<bool()> ready) override;
};

}  // namespace spillway

#endif  // SPILLWAY_CLOCK_H_
