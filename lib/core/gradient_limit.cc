#include "spillway/gradient_limit.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "absl/strings/str_format.h"
#include "spillway/limit.h"

namespace spillway {

absl::Status ValidateGradientLimitOptions(const GradientLimitOptions& o) {
  if (o.min_concurrency < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GradientLimitOptions.min_concurrency must be >= 1; got %d",
        o.min_concurrency));
  }
  if (o.max_limit < o.min_concurrency || o.max_limit > kMaxConcurrencyLimit) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GradientLimitOptions.max_limit must be in [min_concurrency=%d, %d]; "
        "got %d",
        o.min_concurrency, kMaxConcurrencyLimit, o.max_limit));
  }
  if (o.request_count < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GradientLimitOptions.request_count must be >= 1; got %d",
        o.request_count));
  }
  if (!(std::isfinite(o.buffer) && o.buffer >= 0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GradientLimitOptions.buffer must be finite and >= 0; got %g",
        o.buffer));
  }
  if (o.min_rtt_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("GradientLimitOptions.min_rtt_interval must be > 0; "
                        "got %s",
                        absl::FormatDuration(o.min_rtt_interval)));
  }
  if (!(o.jitter >= 0 && o.jitter <= 1)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GradientLimitOptions.jitter must be in [0, 1]; got %g", o.jitter));
  }
  if (!(o.drop_backoff >= 0.5 && o.drop_backoff <= 1)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GradientLimitOptions.drop_backoff must be in [0.5, 1]; got %g",
        o.drop_backoff));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<GradientLimit>> GradientLimit::Create(
    const GradientLimitOptions& options) {
  if (absl::Status s = ValidateGradientLimitOptions(options); !s.ok()) {
    return s;
  }
  return std::unique_ptr<GradientLimit>(new GradientLimit(options));
}

GradientLimit::GradientLimit(const GradientLimitOptions& options)
    : options_(options),
      random_(options.seed != 0
                  ? options.seed
                  : static_cast<uint64_t>(reinterpret_cast<uintptr_t>(this))) {}

int GradientLimit::StartMeasurement(MonotonicTime now, int limit) {
  measuring_ = true;
  deferred_limit_ = limit;
  measured_samples_ = 0;
  measured_rtt_sum_ns_ = 0;
  discard_before_ = now;  // Samples admitted before the pin do not count.
  windows_at_min_ = 0;
  return options_.min_concurrency;
}

int GradientLimit::Update(const WindowSample& window, int limit) {
  if (!started_) {
    // Envoy enters its first minRTT window at construction.
    started_ = true;
    return StartMeasurement(window.end, limit);
  }
  if (measuring_) {
    const int successes = window.samples - window.dropped;
    if (successes > 0) {
      measured_samples_ += successes;
      measured_rtt_sum_ns_ +=
          static_cast<double>(window.rtt.count()) * successes;
    }
    if (measured_samples_ < options_.request_count) {
      return options_.min_concurrency;
    }
    min_rtt_ = std::chrono::nanoseconds(static_cast<int64_t>(
        measured_rtt_sum_ns_ / static_cast<double>(measured_samples_)));
    measuring_ = false;
    const int64_t interval_ns =
        absl::ToInt64Nanoseconds(options_.min_rtt_interval);
    const int64_t jitter_range = static_cast<int64_t>(
        std::ceil(static_cast<double>(interval_ns) * options_.jitter));
    const int64_t jitter =
        jitter_range > 0 ? static_cast<int64_t>(random_() % jitter_range) : 0;
    next_measurement_ =
        window.end + std::chrono::nanoseconds(interval_ns + jitter);
    return std::clamp(deferred_limit_, options_.min_concurrency,
                      options_.max_limit);
  }
  if (window.end >= next_measurement_) {
    return StartMeasurement(window.end, limit);
  }
  if (window.any_dropped() && options_.drop_backoff < 1) {
    return std::clamp(static_cast<int>(limit * options_.drop_backoff),
                      options_.min_concurrency, options_.max_limit);
  }
  if (window.rtt.count() <= 0) return limit;

  const double buffered =
      static_cast<double>(min_rtt_.count()) * (1.0 + options_.buffer);
  const double gradient =
      std::clamp(buffered / static_cast<double>(window.rtt.count()), 0.5, 2.0);
  if (options_.hold_when_unused && gradient >= 1 &&
      window.max_in_flight * 2 < limit) {
    return limit;
  }
  const double scaled = limit * gradient;
  const int next = std::clamp(static_cast<int>(scaled + std::sqrt(scaled)),
                              options_.min_concurrency, options_.max_limit);
  // As Envoy: 5 consecutive windows at the floor suggest a wrong minRTT.
  windows_at_min_ =
      (limit == options_.min_concurrency && next == options_.min_concurrency)
          ? windows_at_min_ + 1
          : 0;
  if (windows_at_min_ >= 5) return StartMeasurement(window.end, next);
  return next;
}

}  // namespace spillway
