// Gradient2Limit: a concurrency limit driven by the ratio of a long-term
// average RTT to the current RTT.
//
// Gradient2 keeps an exponential moving average of the RTT over a long
// window (600 windows by default) as its baseline, and compares each
// window's RTT with it. While the current RTT stays within a tolerance of
// the baseline the gradient is 1 and the limit grows by a fixed queue
// allowance; when the RTT rises above it the gradient falls (to at most
// half) and the limit shrinks in proportion. Averages rather than minimums
// keep a bursty workload from pinning the baseline to an unrepresentative
// fast write.
//
//   auto gradient2 = spillway::Gradient2Limit::Create({.max_limit = 500});
//   auto limit = spillway::WindowedLimit::Create(std::move(*gradient2), {});
//
// The algorithm (Netflix concurrency-limits, Gradient2Limit.java,
// https://github.com/Netflix/concurrency-limits/blob/master/concurrency-limits-core/src/main/java/com/netflix/concurrency/limits/limit/Gradient2Limit.java),
// per window, with `limit` the double estimate (Netflix's estimatedLimit):
//     queue    = queue_size (or queue_size_function(floor(limit)))
//     long_rtt = long_avg.Add(rtt)   // mean of the first 10 windows, then
//                                    // EMA with factor 2 / (long_window + 1)
//     if long_rtt / rtt > 2: long_avg *= 0.95   // recover after overload
//     if max_in_flight < limit / 2: return floor(limit)    (app-limited)
//     gradient = clamp(rtt_tolerance * long_rtt / rtt, 0.5, 1.0)
//     new   = limit * gradient + queue
//     new   = limit * (1 - smoothing) + new * smoothing
//     limit = clamp(new, min_limit, max_limit)
//     return floor(limit)
// As in Netflix, the 0.95 decay rewrites only the average's value: during
// the 10-window warm-up the next window recomputes the plain mean and the
// decay is lost.
//
// Sampling: one step per closed window (WindowedLimit). Netflix's
// onSample(start, rtt, inflight, didDrop) is the window {.rtt = rtt,
// .min_rtt = rtt, .max_in_flight = inflight, .samples = 1, .dropped =
// didDrop}, so a window of one sample reproduces Netflix's per-sample
// behaviour exactly. Netflix ignores didDrop; so does the default here. A
// window whose rtt is not positive is ignored entirely (Netflix would divide
// by it).
//
// Known faults, and the options that fix them (off by default, so the
// default behaviour is Netflix's):
//   * Drops are ignored (Netflix issue #176, "Why does gradient2 ignore the
//     effect of didDrop on latency"). A dropped write is often fast (an
//     immediate overload error), so a window of drops reads as low latency:
//     the gradient stays at 1 and the limit keeps growing into the overload.
//     With `decrease_on_drop`, a window with any drop multiplies the limit
//     by `drop_backoff_ratio` (then clamps it; no smoothing, no queue
//     allowance, no app-limited exemption) and skips the gradient step; its
//     rtt still feeds the long average if at least one write of the window
//     succeeded (the rtt is then the successful writes' aggregate), and not
//     if every write was dropped (the rtt is then the drops' time: a timeout
//     or a rejection, not a latency).
//   * The limit creeps upward under moderate overload (Netflix pull request
//     #134 and its 2024 discussion). The queue allowance is added even when
//     the gradient is below 1, so with gradient g the step has a fixed
//     point at queue / (1 - g) (40 for g = 0.9 and queue 4): a limit below
//     it rises while the latency says the database is already slower, and
//     as the long average absorbs the higher RTT, g and the fixed point rise
//     further. With `add_queue_size_only_when_gradient_is_one`, the
//     allowance is added only when the gradient is 1 (the RTT within
//     tolerance); below 1 the step is new = limit * gradient, so any
//     measured slowdown shrinks the limit.
//
// Locking: none. Update is called by one thread at a time (WindowedLimit
// serializes it); the estimate and the RTT averages are plain members.
//
// Thread safety: not thread-safe (see LimitAlgorithm); Create and
// ValidateGradient2LimitOptions are thread-safe.

#ifndef SPILLWAY_GRADIENT2_LIMIT_H_
#define SPILLWAY_GRADIENT2_LIMIT_H_

#include <chrono>
#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "spillway/limit_algorithm.h"

namespace spillway {

// Windows averaged plainly before the long RTT becomes an exponential moving
// average (Netflix's ExpAvgMeasurement(longWindow, 10)).
inline constexpr int kGradient2LongRttWarmupWindows = 10;

// Defaults are Netflix concurrency-limits' Gradient2Limit defaults; the
// options that fix Netflix's known faults default to off.
struct Gradient2LimitOptions {
  // Limit before any window. Default: 20.
  // REQUIRES: min_limit <= initial_limit <= max_limit.
  int initial_limit = 20;

  // Floor of the limit. Default: 20. REQUIRES: >= 1.
  int min_limit = 20;

  // Ceiling of the limit (Netflix's maxConcurrency). Default: 200.
  // REQUIRES: min_limit <= max_limit <= kMaxConcurrencyLimit.
  int max_limit = 200;

  // Weight of a new estimate against the current one. Default: 0.2.
  // REQUIRES: 0 < smoothing <= 1.
  double smoothing = 0.2;

  // How much the limit may grow per step while the RTT is within tolerance
  // (the queue allowance). Default: 4. REQUIRES: >= 0.
  int queue_size = 4;

  // When set, replaces `queue_size` with a function of floor(limit) (for
  // example a square root, as in Netflix's first gradient algorithm).
  // Default: empty (use queue_size).
  std::function<int(int)> queue_size_function;

  // Windows of the long RTT average: its factor is 2 / (long_window + 1)
  // after the first kGradient2LongRttWarmupWindows windows. Default: 600.
  // REQUIRES: >= 1.
  int long_window = 600;

  // How much slower than the long average the current RTT may be before
  // the limit shrinks: 2.0 accepts twice the latency. Default: 1.5.
  // REQUIRES: finite and >= 1.
  double rtt_tolerance = 1.5;

  // Fix for ignored drops (Netflix issue #176; see the file comment): when
  // true, a window with any dropped write multiplies the limit by
  // drop_backoff_ratio instead of taking the gradient step.
  // Default: false (off: Netflix's behaviour).
  bool decrease_on_drop = false;

  // The factor applied on a drop when decrease_on_drop is true.
  // Default: 0.9 (AimdLimit's and Netflix GradientLimit's backoff ratio).
  // REQUIRES: 0.5 <= drop_backoff_ratio < 1.
  double drop_backoff_ratio = 0.9;

  // Fix for the upward creep under moderate overload (Netflix pull request
  // #134; see the file comment): when true, the queue allowance is added
  // only when the gradient is 1. Default: false (off: Netflix's behaviour).
  bool add_queue_size_only_when_gradient_is_one = false;
};

// Checks every field; the error names the field and its value. Thread-safe.
absl::Status ValidateGradient2LimitOptions(
    const Gradient2LimitOptions& options);

class Gradient2Limit final : public LimitAlgorithm {
 public:
  // Validates `options` and builds the algorithm. Thread-safe.
  static absl::StatusOr<std::unique_ptr<Gradient2Limit>> Create(
      const Gradient2LimitOptions& options);

  // options().initial_limit, min_limit and max_limit. Not thread-safe.
  int initial_limit() const override { return options_.initial_limit; }
  int min_limit() const override { return options_.min_limit; }
  int max_limit() const override { return options_.max_limit; }

  // One Gradient2 step (file comment); returns floor of the new estimate.
  // `limit` is not read: the double estimate is the state, and its floor is
  // what the previous call returned. Not thread-safe.
  int Update(const WindowSample& window, int limit) override;

  // The unrounded estimate (Netflix's estimatedLimit). Not thread-safe.
  double estimated_limit() const { return estimated_limit_; }
  // The long RTT average, in nanoseconds (Netflix's getRttNoLoad); zero
  // before the first window. Not thread-safe.
  double long_rtt_nanos() const { return long_rtt_.value; }
  // The rtt of the last window used (Netflix's getLastRtt). Not thread-safe.
  std::chrono::nanoseconds last_rtt() const { return last_rtt_; }

  // The options it was built with. Not thread-safe.
  const Gradient2LimitOptions& options() const { return options_; }

 private:
  // Netflix's ExpAvgMeasurement: the plain mean of the first
  // kGradient2LongRttWarmupWindows samples, then an exponential moving
  // average. `value` may be rewritten (decayed) independently of `sum`.
  struct LongRttAverage {
    // Adds a sample in nanoseconds and returns the new value.
    double Add(double sample, int window);

    double value = 0.0;
    double sum = 0.0;
    int count = 0;
  };

  explicit Gradient2Limit(const Gradient2LimitOptions& options);

  // Feeds `rtt` to the long average (with the 0.95 recovery decay) and
  // returns the average after the add, before the decay.
  double AddToLongRtt(std::chrono::nanoseconds rtt);

  const Gradient2LimitOptions options_;
  // Netflix's estimatedLimit: the limit as a double, in [min, max].
  double estimated_limit_;
  // The long-term RTT baseline.
  LongRttAverage long_rtt_;
  // The rtt of the last window used.
  std::chrono::nanoseconds last_rtt_{0};
};

}  // namespace spillway

#endif  // SPILLWAY_GRADIENT2_LIMIT_H_
