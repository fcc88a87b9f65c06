// VegasLimit: see include/spillway/vegas_limit.h for the algorithm and its
// source (Netflix concurrency-limits, VegasLimit.java).

#include "spillway/vegas_limit.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>

#include "absl/strings/str_format.h"
#include "spillway/limit.h"

namespace spillway {

int VegasLog10Root(int limit) {
  // floor(log10(limit)) by counting digits: exact at powers of ten, as
  // Java's Math.log10 is.
  int log10 = 0;
  for (int rest = limit; rest >= 10; rest /= 10) ++log10;
  return std::max(1, log10);
}

absl::Status ValidateVegasLimitOptions(const VegasLimitOptions& o) {
  if (o.min_limit < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "VegasLimitOptions.min_limit must be >= 1; got %d", o.min_limit));
  }
  if (o.max_limit < o.min_limit || o.max_limit > kMaxConcurrencyLimit) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "VegasLimitOptions.max_limit must be in [min_limit=%d, %d]; got %d",
        o.min_limit, kMaxConcurrencyLimit, o.max_limit));
  }
  if (o.initial_limit < o.min_limit || o.initial_limit > o.max_limit) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "VegasLimitOptions.initial_limit must be in [min_limit=%d, "
        "max_limit=%d]; got %d",
        o.min_limit, o.max_limit, o.initial_limit));
  }
  if (!(o.smoothing > 0.0 && o.smoothing <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "VegasLimitOptions.smoothing must be in (0, 1]; got %g", o.smoothing));
  }
  if (o.probe_multiplier < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("VegasLimitOptions.probe_multiplier must be >= 1; "
                        "got %d",
                        o.probe_multiplier));
  }
  if (o.rtt_noload_probe_windows < 0 ||
      o.rtt_noload_probe_windows > kMaxVegasProbeWindows) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "VegasLimitOptions.rtt_noload_probe_windows must be in [0, %d]; "
        "got %d",
        kMaxVegasProbeWindows, o.rtt_noload_probe_windows));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<VegasLimit>> VegasLimit::Create(
    const VegasLimitOptions& options) {
  if (absl::Status s = ValidateVegasLimitOptions(options); !s.ok()) return s;
  return std::unique_ptr<VegasLimit>(new VegasLimit(options));
}

namespace {

// Netflix's default jitter: uniform in [0.5, 1), here from a generator
// seeded once per algorithm (never from the clock).
std::function<double()> DefaultJitterSource() {
  return [generator = std::mt19937_64(std::random_device{}()),
          uniform = std::uniform_real_distribution<double>(
              0.5, 1.0)]() mutable { return uniform(generator); };
}

}  // namespace

VegasLimit::VegasLimit(const VegasLimitOptions& options)
    : options_(options),
      jitter_source_(options.probe_jitter ? options.probe_jitter
                                          : DefaultJitterSource()),
      estimated_limit_(options.initial_limit),
      recent_min_rtt_(static_cast<size_t>(options.rtt_noload_probe_windows)) {
  probe_jitter_ = NextJitter();
}

double VegasLimit::NextJitter() {
  const double jitter = jitter_source_();
  // NaN becomes 1: the longest interval, the least surprising.
  if (!(jitter >= 0.5)) return jitter < 0.5 ? 0.5 : 1.0;
  return std::min(jitter, 1.0);
}

void VegasLimit::RecordWindowMinimum(std::chrono::nanoseconds min_rtt) {
  recent_min_rtt_[recent_next_] = min_rtt;
  recent_next_ = (recent_next_ + 1) % recent_min_rtt_.size();
  recent_filled_ = std::min(recent_filled_ + 1, recent_min_rtt_.size());
}

std::chrono::nanoseconds VegasLimit::RecentMinimum() const {
  return *std::min_element(recent_min_rtt_.begin(),
                           recent_min_rtt_.begin() + recent_filled_);
}

int VegasLimit::Update(const WindowSample& window, int /*limit*/) {
  const std::chrono::nanoseconds rtt = window.rtt;
  if (rtt.count() <= 0) return static_cast<int>(estimated_limit_);

  if (!recent_min_rtt_.empty()) {
    RecordWindowMinimum(window.min_rtt.count() > 0 ? window.min_rtt : rtt);
  }

  ++probe_count_;
  if (probe_jitter_ * options_.probe_multiplier * estimated_limit_ <=
      static_cast<double>(probe_count_)) {
    probe_jitter_ = NextJitter();
    probe_count_ = 0;
    rtt_noload_ = recent_min_rtt_.empty() ? rtt : RecentMinimum();
    return static_cast<int>(estimated_limit_);
  }

  if (rtt_noload_.count() == 0 || rtt < rtt_noload_) {
    rtt_noload_ = rtt;
    return static_cast<int>(estimated_limit_);
  }
  return UpdateEstimate(window);
}

int VegasLimit::UpdateEstimate(const WindowSample& window) {
  const double limit = estimated_limit_;
  const int queue = static_cast<int>(
      std::ceil(limit * (1.0 - static_cast<double>(rtt_noload_.count()) /
                                   static_cast<double>(window.rtt.count()))));
  const int floor_limit = static_cast<int>(limit);

  double next;
  if (window.any_dropped()) {
    // A drop (timeout, overload error) always shrinks the limit.
    next = options_.decrease ? options_.decrease(limit)
                             : limit - VegasLog10Root(floor_limit);
  } else if (static_cast<double>(int64_t{window.max_in_flight} * 2) < limit) {
    // The application uses less than half the limit: no evidence to grow.
    return floor_limit;
  } else {
    const int alpha = options_.alpha ? options_.alpha(floor_limit)
                                     : 3 * VegasLog10Root(floor_limit);
    const int beta = options_.beta ? options_.beta(floor_limit)
                                   : 6 * VegasLog10Root(floor_limit);
    const int threshold = options_.threshold ? options_.threshold(floor_limit)
                                             : VegasLog10Root(floor_limit);
    if (queue <= threshold) {
      // No queuing: grow fast.
      next = limit + beta;
    } else if (queue < alpha) {
      next = options_.increase ? options_.increase(limit)
                               : limit + VegasLog10Root(floor_limit);
    } else if (queue > beta) {
      next = options_.decrease ? options_.decrease(limit)
                               : limit - VegasLog10Root(floor_limit);
    } else {
      // Between alpha and beta: the sweet spot.
      return floor_limit;
    }
  }

  next = std::max<double>(options_.min_limit,
                          std::min<double>(options_.max_limit, next));
  next = (1.0 - options_.smoothing) * limit + options_.smoothing * next;
  estimated_limit_ = next;
  return static_cast<int>(next);
}

}  // namespace spillway
