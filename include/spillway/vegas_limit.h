// VegasLimit: a delay-based concurrency limit after TCP Vegas.
//
// Vegas compares the round-trip time of a window with the no-load RTT (the
// smallest seen since the last probe) and turns the difference into an
// estimate of how many writes are queued at the database:
//     queue = ceil(limit * (1 - rtt_noload / rtt))
// A short queue grows the limit, a long one shrinks it, and a dropped write
// (timeout, overload error) always shrinks it. The no-load RTT is re-probed
// now and then so the limit can follow a database whose latency changed.
//
//   auto vegas = spillway::VegasLimit::Create({.initial_limit = 20});
//   auto limit = spillway::WindowedLimit::Create(std::move(*vegas), {});
//
// The algorithm (Netflix concurrency-limits, VegasLimit.java,
// https://github.com/Netflix/concurrency-limits/blob/master/concurrency-limits-core/src/main/java/com/netflix/concurrency/limits/limit/VegasLimit.java),
// per window, with `limit` the double estimate (Netflix's estimatedLimit):
//     if ++probe_count >= jitter * probe_multiplier * limit:     (probe)
//         rtt_noload = rtt; probe_count = 0; jitter = U[0.5, 1); keep limit
//     else if rtt_noload == 0 or rtt < rtt_noload:
//         rtt_noload = rtt; keep limit
//     else:
//         queue = ceil(limit * (1 - rtt_noload / rtt))
//         if dropped:                      new = decrease(limit)
//         else if max_in_flight * 2 < limit: keep limit     (app-limited)
//         else if queue <= threshold(L):   new = limit + beta(L)
//         else if queue < alpha(L):        new = increase(limit)
//         else if queue > beta(L):         new = decrease(limit)
//         else:                            keep limit
//         new = clamp(new, min_limit, max_limit)
//         limit = (1 - smoothing) * limit + smoothing * new
//     return floor(limit)
// where L = floor(limit) and, by default, with Log10Root(L) =
// max(1, floor(log10(L))): alpha = 3 * Log10Root, beta = 6 * Log10Root,
// threshold = Log10Root, increase(x) = x + Log10Root(floor(x)),
// decrease(x) = x - Log10Root(floor(x)). "Keep limit" returns floor(limit)
// and changes no state but the RTT bookkeeping.
//
// Sampling: one step per closed window (WindowedLimit). Netflix's
// onSample(start, rtt, inflight, didDrop) is the window {.rtt = rtt,
// .min_rtt = rtt, .max_in_flight = inflight, .samples = 1, .dropped =
// didDrop}, so a window of one sample reproduces Netflix's per-sample
// behaviour exactly. `window.rtt` (the window's aggregated RTT) is Netflix's
// rtt, `window.max_in_flight` its inflight, `window.any_dropped()` its
// didDrop. A window whose rtt is not positive is ignored entirely (Netflix
// throws IllegalArgumentException for it before counting it).
//
// Known fault, and the option that fixes it (off by default, so the default
// behaviour is Netflix's):
//   The no-load RTT drifts upward under sustained load (Netflix issue #165,
//   "VegasLimit manually setting rtt_noload"). A probe sets rtt_noload to the
//   probing window's rtt, whatever it is; under load that is a loaded RTT
//   (with windows, a loaded *average*). Vegas then sees no queue, grows the
//   limit by beta, which loads the database further, and the next probe
//   ratchets the baseline up again: the limit and the latency climb together
//   and never come back. With `rtt_noload_probe_windows = N > 0`, a probe
//   instead re-measures the baseline as the smallest `window.min_rtt` of the
//   last N windows, the probing window included (for a window whose min_rtt
//   is not positive, its rtt counts instead). Between probes nothing changes:
//   the baseline still falls to any window rtt below it. So the probe still
//   lets the baseline rise (to follow a database that really got slower),
//   but only to the fastest single write of the last N windows, not to a
//   loaded average. A larger N remembers fast writes for longer (and follows
//   a real slowdown later); N >= jitter * probe_multiplier * limit windows
//   covers the whole interval since the previous probe. The test
//   VegasLimitTest.ProbeRemeasuresBaselineFromRecentWindowMinimums shows the
//   ratchet with the option off (limit 20 -> 87, baseline 10 -> 41 ms in
//   300 windows) and a steady limit with it on (26, baseline 10 ms). A probe
//   that sees no fast write at all in N windows still takes a loaded
//   baseline: telling a slower database from an overloaded one would take
//   draining the queue, which an observer cannot do.
//
// Locking: none. Update is called by one thread at a time (WindowedLimit
// serializes it); the estimate, the no-load RTT and the probe state are
// plain members.
//
// Thread safety: not thread-safe (see LimitAlgorithm); Create and
// ValidateVegasLimitOptions are thread-safe.

#ifndef SPILLWAY_VEGAS_LIMIT_H_
#define SPILLWAY_VEGAS_LIMIT_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "spillway/limit_algorithm.h"

namespace spillway {

// max(1, floor(log10(limit))): 1 below 100, 2 below 1000, 3 below 10000.
// Netflix's Log10RootIntFunction.create(0), the unit of Vegas' default
// thresholds and steps. Thread-safe.
int VegasLog10Root(int limit);

// The largest VegasLimitOptions::rtt_noload_probe_windows.
inline constexpr int kMaxVegasProbeWindows = 4096;

// Defaults are Netflix concurrency-limits' VegasLimit defaults; the options
// that fix Netflix's known faults default to off.
struct VegasLimitOptions {
  // Limit before any window. Default: 20.
  // REQUIRES: min_limit <= initial_limit <= max_limit.
  int initial_limit = 20;

  // Floor of the limit. Default: 1 (Netflix's fixed floor).
  // REQUIRES: >= 1.
  int min_limit = 1;

  // Ceiling of the limit (Netflix's maxConcurrency). Default: 1000.
  // REQUIRES: min_limit <= max_limit <= kMaxConcurrencyLimit.
  int max_limit = 1000;

  // Weight of a new estimate against the current one: 1 replaces the limit
  // with each step's result, 0.5 moves it half way. Default: 1.0.
  // REQUIRES: 0 < smoothing <= 1.
  double smoothing = 1.0;

  // A probe of the no-load RTT happens after jitter * probe_multiplier *
  // limit windows since the last one. Default: 30. REQUIRES: >= 1.
  int probe_multiplier = 30;

  // Draws the probe jitter, once at construction and again after each probe.
  // Called only from Create and Update. Values are clamped to [0.5, 1].
  // Default: empty, meaning uniform in [0.5, 1) (Netflix's
  // ThreadLocalRandom.nextDouble(0.5, 1)) from a std::mt19937_64 seeded once
  // by std::random_device. Tests pass a constant for determinism.
  std::function<double()> probe_jitter;

  // Queue sizes, as functions of floor(limit): below `threshold` the limit
  // grows by `beta`; below `alpha` it grows by `increase`; above `beta` it
  // shrinks by `decrease`. Default: empty, meaning 3 * VegasLog10Root(limit)
  // for alpha, 6 * VegasLog10Root(limit) for beta and VegasLog10Root(limit)
  // for threshold (Netflix's defaults).
  std::function<int(int)> alpha;
  std::function<int(int)> beta;
  std::function<int(int)> threshold;

  // The next limit from the current estimate when growing (queue < alpha) or
  // shrinking (queue > beta, or a drop). Default: empty, meaning
  // x + VegasLog10Root(floor(x)) and x - VegasLog10Root(floor(x)).
  std::function<double(double)> increase;
  std::function<double(double)> decrease;

  // Fix for the no-load RTT drift (Netflix issue #165; see the file
  // comment): when > 0, a probe sets the no-load RTT to the smallest
  // window.min_rtt of the last this-many windows instead of the probing
  // window's rtt. Default: 0 (off: Netflix's behaviour).
  // REQUIRES: 0 <= rtt_noload_probe_windows <= kMaxVegasProbeWindows.
  int rtt_noload_probe_windows = 0;
};

// Checks every field; the error names the field and its value. Thread-safe.
absl::Status ValidateVegasLimitOptions(const VegasLimitOptions& options);

class VegasLimit final : public LimitAlgorithm {
 public:
  // Validates `options` and builds the algorithm. Thread-safe.
  static absl::StatusOr<std::unique_ptr<VegasLimit>> Create(
      const VegasLimitOptions& options);

  // options().initial_limit, min_limit and max_limit. Not thread-safe.
  int initial_limit() const override { return options_.initial_limit; }
  int min_limit() const override { return options_.min_limit; }
  int max_limit() const override { return options_.max_limit; }

  // One Vegas step (file comment); returns floor of the new estimate.
  // `limit` is not read: the double estimate is the state, and its floor is
  // what the previous call returned. Not thread-safe.
  int Update(const WindowSample& window, int limit) override;

  // The unrounded estimate (Netflix's estimatedLimit). Not thread-safe.
  double estimated_limit() const { return estimated_limit_; }
  // The no-load RTT; zero before the first window. Not thread-safe.
  std::chrono::nanoseconds rtt_noload() const { return rtt_noload_; }

  // The options it was built with. Not thread-safe.
  const VegasLimitOptions& options() const { return options_; }

 private:
  explicit VegasLimit(const VegasLimitOptions& options);

  // A fresh jitter from options_.probe_jitter (or the default source),
  // clamped to [0.5, 1].
  double NextJitter();
  // Records a window's minimum in the ring of rtt_noload_probe_windows.
  void RecordWindowMinimum(std::chrono::nanoseconds min_rtt);
  // The smallest minimum in the ring. REQUIRES: at least one recorded.
  std::chrono::nanoseconds RecentMinimum() const;
  // The estimate after a window that passed the probe and new-minimum
  // checks; returns floor of it.
  int UpdateEstimate(const WindowSample& window);

  const VegasLimitOptions options_;
  // The jitter source: options_.probe_jitter, or the default generator.
  std::function<double()> jitter_source_;

  // Netflix's estimatedLimit: the limit as a double, in [min, max].
  double estimated_limit_;
  // The no-load RTT; zero until the first window.
  std::chrono::nanoseconds rtt_noload_{0};
  // Windows since the last probe, and the jitter of the next one.
  int64_t probe_count_ = 0;
  double probe_jitter_ = 1.0;
  // Ring of the last rtt_noload_probe_windows window minimums (empty when
  // the option is off); next slot to write, and how many are filled.
  std::vector<std::chrono::nanoseconds> recent_min_rtt_;
  size_t recent_next_ = 0;
  size_t recent_filled_ = 0;
};

}  // namespace spillway

#endif  // SPILLWAY_VEGAS_LIMIT_H_
