// Gradient2Limit: see include/spillway/gradient2_limit.h for the algorithm
// and its source (Netflix concurrency-limits, Gradient2Limit.java).

#include "spillway/gradient2_limit.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>

#include "absl/strings/str_format.h"
#include "spillway/limit.h"

namespace spillway {

absl::Status ValidateGradient2LimitOptions(const Gradient2LimitOptions& o) {
  if (o.min_limit < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Gradient2LimitOptions.min_limit must be >= 1; got %d", o.min_limit));
  }
  if (o.max_limit < o.min_limit || o.max_limit > kMaxConcurrencyLimit) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Gradient2LimitOptions.max_limit must be in [min_limit=%d, %d]; "
        "got %d",
        o.min_limit, kMaxConcurrencyLimit, o.max_limit));
  }
  if (o.initial_limit < o.min_limit || o.initial_limit > o.max_limit) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Gradient2LimitOptions.initial_limit must be in [min_limit=%d, "
        "max_limit=%d]; got %d",
        o.min_limit, o.max_limit, o.initial_limit));
  }
  if (!(o.smoothing > 0.0 && o.smoothing <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Gradient2LimitOptions.smoothing must be in (0, 1]; got %g",
        o.smoothing));
  }
  if (o.queue_size < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Gradient2LimitOptions.queue_size must be >= 0; got %d", o.queue_size));
  }
  if (o.long_window < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Gradient2LimitOptions.long_window must be >= 1; got %d",
        o.long_window));
  }
  if (!(o.rtt_tolerance >= 1.0 && std::isfinite(o.rtt_tolerance))) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Gradient2LimitOptions.rtt_tolerance must be finite and >= 1; got %g",
        o.rtt_tolerance));
  }
  if (!(o.drop_backoff_ratio >= 0.5 && o.drop_backoff_ratio < 1.0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Gradient2LimitOptions.drop_backoff_ratio must be in [0.5, 1); "
        "got %g",
        o.drop_backoff_ratio));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Gradient2Limit>> Gradient2Limit::Create(
    const Gradient2LimitOptions& options) {
  if (absl::Status s = ValidateGradient2LimitOptions(options); !s.ok()) {
    return s;
  }
  return std::unique_ptr<Gradient2Limit>(new Gradient2Limit(options));
}

Gradient2Limit::Gradient2Limit(const Gradient2LimitOptions& options)
    : options_(options), estimated_limit_(options.initial_limit) {}

double Gradient2Limit::LongRttAverage::Add(double sample, int window) {
  if (count < kGradient2LongRttWarmupWindows) {
    ++count;
    sum += sample;
    value = sum / count;
  } else {
    const double factor = 2.0 / (window + 1);
    value = value * (1 - factor) + sample * factor;
  }
  return value;
}

double Gradient2Limit::AddToLongRtt(std::chrono::nanoseconds rtt) {
  const double short_rtt = static_cast<double>(rtt.count());
  const double long_rtt = long_rtt_.Add(short_rtt, options_.long_window);
  // Latency came back down after a long overload: pull the baseline down
  // faster than the moving average alone would.
  if (long_rtt / short_rtt > 2) long_rtt_.value *= 0.95;
  return long_rtt;
}

int Gradient2Limit::Update(const WindowSample& window, int /*limit*/) {
  if (window.rtt.count() <= 0) return static_cast<int>(estimated_limit_);
  const double limit = estimated_limit_;

  if (options_.decrease_on_drop && window.any_dropped()) {
    // The rtt of a window that had successes is theirs, a real latency; the
    // rtt of an all-dropped window is a timeout or a rejection time.
    if (window.dropped < window.samples) {
      last_rtt_ = window.rtt;
      AddToLongRtt(window.rtt);
    }
    estimated_limit_ =
        std::max<double>(options_.min_limit,
                         std::min<double>(options_.max_limit,
                                          limit * options_.drop_backoff_ratio));
    return static_cast<int>(estimated_limit_);
  }

  const int floor_limit = static_cast<int>(limit);
  const double queue =
      options_.queue_size_function
          ? static_cast<double>(options_.queue_size_function(floor_limit))
          : static_cast<double>(options_.queue_size);

  last_rtt_ = window.rtt;
  const double short_rtt = static_cast<double>(window.rtt.count());
  const double long_rtt = AddToLongRtt(window.rtt);

  // The application uses less than half the limit: no evidence either way.
  if (window.max_in_flight < limit / 2) return floor_limit;

  // Above 1 the RTT is within tolerance (no queuing); the floor of 0.5
  // keeps one outlier from halving the limit at once.
  const double gradient = std::max(
      0.5, std::min(1.0, options_.rtt_tolerance * long_rtt / short_rtt));
  double next = limit * gradient;
  if (gradient >= 1.0 || !options_.add_queue_size_only_when_gradient_is_one) {
    next += queue;
  }
  next = limit * (1 - options_.smoothing) + next * options_.smoothing;
  next = std::max<double>(options_.min_limit,
                          std::min<double>(options_.max_limit, next));
  estimated_limit_ = next;
  return static_cast<int>(next);
}

}  // namespace spillway
