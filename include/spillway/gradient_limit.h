// GradientLimit: Envoy's adaptive-concurrency gradient controller, as a
// LimitAlgorithm.
//
// The limit follows the ratio of an ideal latency to the latency seen now.
// The ideal latency (minRTT) is measured periodically by pinning the limit
// to a small concurrency for a while and aggregating the writes admitted
// during that time.
//
//   auto envoy = spillway::GradientLimit::Create({.seed = 7});
//   auto limit = spillway::WindowedLimit::Create(
//       std::move(*envoy), {.min_window = absl::Milliseconds(100),
//                           .max_window = absl::Milliseconds(100),
//                           .aggregation = spillway::Aggregation::kPercentile,
//                           .percentile = 0.5});
//
// The algorithm (Envoy, source/extensions/filters/http/adaptive_concurrency/
// controller/gradient_controller.cc, https://github.com/envoyproxy/envoy),
// per window with aggregated RTT `sample_rtt`:
//     gradient  = clamp(minRTT * (1 + buffer) / sample_rtt, 0.5, 2.0)
//     limit'    = limit * gradient
//     new limit = clamp(limit' + sqrt(limit'), min_concurrency, max_limit)
// The minRTT measurement: the limit is pinned to `min_concurrency`, samples
// of writes admitted before the measurement began are discarded
// (discard_before()), and once `request_count` samples are in, minRTT is
// their aggregated RTT and the limit returns to its value before the pin.
// The next measurement starts `min_rtt_interval` later, plus a random
// jitter of up to `jitter` of the interval; also, as in Envoy, when the
// limit has been at `min_concurrency` for 5 consecutive windows. The first
// measurement starts with the first window.
//
// Sampling: one call per window; configure the WindowedLimit as Envoy's
// sample window (a fixed `concurrency_update_interval`, 100 ms in Envoy's
// examples, and the 50th percentile: the example above). minRTT is the
// sample-weighted mean of the measurement windows' aggregated RTTs (Envoy
// takes the percentile of all measurement samples at once). Drops are not a
// signal, as in Envoy (it records the latency of every completed request).
//
// Locking: none; WindowedLimit serializes calls.
//
// Thread safety: not thread-safe (a LimitAlgorithm).

#ifndef SPILLWAY_GRADIENT_LIMIT_H_
#define SPILLWAY_GRADIENT_LIMIT_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <random>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "spillway/limit_algorithm.h"

namespace spillway {

// Defaults are Envoy's (GradientControllerConfig), except min_rtt_interval,
// which Envoy requires to be set (its documentation's example: 60 s).
struct GradientLimitOptions {
  // The pinned concurrency of minRTT measurements, and the floor of the
  // limit. Default: 3. REQUIRES: >= 1.
  int min_concurrency = 3;

  // Ceiling of the limit. Default: 1000.
  // REQUIRES: min_concurrency <= max_limit <= kMaxConcurrencyLimit.
  int max_limit = 1000;

  // Samples aggregated into one minRTT measurement. Default: 50.
  // REQUIRES: >= 1.
  int request_count = 50;

  // Latency allowed above minRTT before the gradient falls below 1, as a
  // fraction of minRTT. Default: 0.25. REQUIRES: finite, >= 0.
  double buffer = 0.25;

  // Time between the end of one minRTT measurement and the next.
  // Default: 60 s. REQUIRES: > 0.
  absl::Duration min_rtt_interval = absl::Seconds(60);

  // Random extra delay of the next measurement, as a fraction of the
  // interval. Default: 0.15. REQUIRES: in [0, 1].
  double jitter = 0.15;

  // Not in Envoy. When true, a window whose writes used less than half the
  // limit leaves it unchanged (Envoy grows it by sqrt(limit) regardless).
  // Default: false.
  bool hold_when_unused = false;

  // Not in Envoy. Factor applied for a window with drops; 1 ignores drops,
  // as Envoy does. Default: 1. REQUIRES: in [0.5, 1].
  double drop_backoff = 1.0;

  // Seed of the jitter. Default: 0, meaning seeded from the object's
  // address, so that the instances of a fleet measure at different times;
  // tests and the simulator pass their own.
  uint64_t seed = 0;
};

// Checks every field; the error names the field and its value. Thread-safe.
absl::Status ValidateGradientLimitOptions(const GradientLimitOptions& options);

class GradientLimit final : public LimitAlgorithm {
 public:
  // Validates `options`. Thread-safe.
  static absl::StatusOr<std::unique_ptr<GradientLimit>> Create(
      const GradientLimitOptions& options);

  // Envoy starts at min_concurrency, measuring minRTT. Not thread-safe.
  int initial_limit() const override { return options_.min_concurrency; }
  // min_concurrency and max_limit. Not thread-safe.
  int min_limit() const override { return options_.min_concurrency; }
  int max_limit() const override { return options_.max_limit; }
  // One window: measurement or gradient step (see above). Not thread-safe.
  int Update(const WindowSample& window, int limit) override;
  // The start of the current or last minRTT measurement. Not thread-safe.
  MonotonicTime discard_before() const override { return discard_before_; }

  // The last minRTT measured (zero before the first). Not thread-safe.
  std::chrono::nanoseconds min_rtt() const { return min_rtt_; }
  // Whether a minRTT measurement is in progress. Not thread-safe.
  bool measuring() const { return measuring_; }

 private:
  explicit GradientLimit(const GradientLimitOptions& options);
  int StartMeasurement(MonotonicTime now, int limit);

  const GradientLimitOptions options_;
  std::mt19937_64 random_;
  bool started_ = false;
  bool measuring_ = false;
  // Limit to restore after a measurement.
  int deferred_limit_ = 0;
  // Samples and sample-weighted RTT sum of the measurement so far.
  int64_t measured_samples_ = 0;
  double measured_rtt_sum_ns_ = 0;
  std::chrono::nanoseconds min_rtt_{0};
  MonotonicTime next_measurement_{};
  MonotonicTime discard_before_ = MonotonicTime::min();
  int windows_at_min_ = 0;
};

}  // namespace spillway

#endif  // SPILLWAY_GRADIENT_LIMIT_H_
