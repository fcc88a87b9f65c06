#include "spillway/knee_limit.h"

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <utility>

#include "absl/strings/str_format.h"

namespace spillway {
namespace {
// How far above target latency must stay at the floor before the baseline
// is re-measured. Fleet equilibrium hovers around target, with some
// instances at their floor while others hold more: that must not look like
// a slower database.
constexpr double kRebaselineMargin = 1.25;
}  // namespace

absl::Status ValidateKneeLimitOptions(const KneeLimitOptions& o) {
  if (o.min_limit < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KneeLimitOptions.min_limit must be >= 1; got %d", o.min_limit));
  }
  if (o.max_limit < o.min_limit || o.max_limit > kMaxConcurrencyLimit) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KneeLimitOptions.max_limit must be in [min_limit=%d, %d]; got %d",
        o.min_limit, kMaxConcurrencyLimit, o.max_limit));
  }
  if (o.initial_limit < o.min_limit || o.initial_limit > o.max_limit) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KneeLimitOptions.initial_limit must be in [min_limit=%d, "
        "max_limit=%d]; got %d",
        o.min_limit, o.max_limit, o.initial_limit));
  }
  if (!(std::isfinite(o.latency_tolerance) && o.latency_tolerance > 1)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KneeLimitOptions.latency_tolerance must be finite and > 1; got %g",
        o.latency_tolerance));
  }
  if (!(o.drop_backoff >= 0.5 && o.drop_backoff < 1)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KneeLimitOptions.drop_backoff must be in [0.5, 1); got %g",
        o.drop_backoff));
  }
  if (o.baseline_horizon <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("KneeLimitOptions.baseline_horizon must be > 0; got %s",
                        absl::FormatDuration(o.baseline_horizon)));
  }
  if (!(std::isfinite(o.max_latency_tolerance) &&
        o.max_latency_tolerance >= o.latency_tolerance)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KneeLimitOptions.max_latency_tolerance must be finite and >= "
        "latency_tolerance=%g; got %g",
        o.latency_tolerance, o.max_latency_tolerance));
  }
  if (!(o.min_rate_gain > 0 && o.min_rate_gain < 1)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KneeLimitOptions.min_rate_gain must be in (0, 1); got %g",
        o.min_rate_gain));
  }
  if (o.rebaseline_windows < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "KneeLimitOptions.rebaseline_windows must be >= 1; got %d",
        o.rebaseline_windows));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<KneeLimit>> KneeLimit::Create(
    const KneeLimitOptions& options) {
  if (absl::Status s = ValidateKneeLimitOptions(options); !s.ok()) return s;
  return std::unique_ptr<KneeLimit>(new KneeLimit(options));
}

KneeLimit::KneeLimit(const KneeLimitOptions& options)
    : options_(options),
      bucket_ns_(std::max<int64_t>(
          1, absl::ToInt64Nanoseconds(options.baseline_horizon) / kBuckets)),
      limit_(options.initial_limit),
      tolerance_(options.latency_tolerance),
      trial_tolerance_(options.latency_tolerance) {
  period_.fill(-1);
  min_ns_.fill(0);
}

void KneeLimit::RecordBaseline(std::chrono::nanoseconds min_rtt) {
  if (min_rtt.count() <= 0) return;
  // Buckets are periods of calm time (see Update), not of wall time.
  const int64_t period = calm_ns_ / bucket_ns_;
  latest_period_ = std::max(latest_period_, period);
  const int i = static_cast<int>(period % kBuckets);
  if (period_[i] != period) {
    period_[i] = period;
    min_ns_[i] = min_rtt.count();
  } else {
    min_ns_[i] = std::min(min_ns_[i], min_rtt.count());
  }
}

std::chrono::nanoseconds KneeLimit::baseline() const {
  int64_t best = 0;
  for (int i = 0; i < kBuckets; ++i) {
    // Only buckets within the horizon: the last kBuckets periods.
    if (period_[i] < 0 || period_[i] <= latest_period_ - kBuckets) continue;
    if (best == 0 || min_ns_[i] < best) best = min_ns_[i];
  }
  // The lowest window is the luckiest one, not a typical write alone: the
  // alone floor (see the header) lifts it, within the horizon.
  if (best > 0 && alone_floor_ns_ > 0 &&
      calm_ns_ - alone_floor_calm_ns_ <
          absl::ToInt64Nanoseconds(options_.baseline_horizon)) {
    best = std::max(best, alone_floor_ns_);
  }
  return std::chrono::nanoseconds(best);
}

bool KneeLimit::CollectAlone(const WindowSample& window) {
  if (alone_windows_ >= kAloneWindows) return false;
  if (window.any_dropped() || window.max_in_flight > 1 ||
      window.rtt.count() <= 0) {
    // The limit has grown (or the database is congested) before all the
    // alone windows were in: no floor, the lowest window stands alone.
    alone_windows_ = kAloneWindows;
    return false;
  }
  alone_rtt_ns_[alone_windows_++] = window.rtt.count();
  if (alone_windows_ < kAloneWindows) return true;
  std::array<int64_t, kAloneWindows> sorted = alone_rtt_ns_;
  std::sort(sorted.begin(), sorted.end());
  alone_floor_ns_ = sorted[kAloneWindows / 2];
  alone_floor_calm_ns_ = calm_ns_;
  return false;
}

int KneeLimit::Update(const WindowSample& window, int limit) {
  // Follow the published limit if it differs by more than rounding (the
  // first call, or a limit changed by someone else).
  if (std::abs(limit_ - limit) >= 1.0) limit_ = limit;
  const double rtt = static_cast<double>(window.rtt.count());
  {
    // Calm time: the baseline ages only in windows that were calm (no
    // drops, latency within target, less than half the limit used: the
    // state KneeLimit holds in at moderate load) under the baseline of the
    // previous window. Under sustained overload no window is
    // calm, so old low windows never expire and loaded ones never become
    // the baseline: with wall-time aging, a 240 s incident in the simulator
    // raised the baseline once per horizon and the fleet's p99 with it
    // (goodput 78% of peak, p99 198 ms, against 99% and 15 ms).
    const int64_t end_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               window.end.time_since_epoch())
                               .count();
    const double previous = static_cast<double>(baseline().count());
    const bool calm = !window.any_dropped() && previous > 0 &&
                      rtt <= trial_tolerance_ * previous &&
                      window.max_in_flight * 2 < limit;
    if (calm && last_end_ns_ != INT64_MIN && end_ns > last_end_ns_) {
      calm_ns_ += end_ns - last_end_ns_;
    }
    last_end_ns_ = end_ns;
  }
  RecordBaseline(window.rtt);
  // While the first windows measure writes alone, slow start waits for them.
  const bool hold_alone = CollectAlone(window);
  const double base = static_cast<double>(baseline().count());
  const double target = trial_tolerance_ * base;

  if (hold_alone) {
    // Limit unchanged.
  } else if (window.any_dropped()) {
    slow_start_ = false;
    limit_ *= options_.drop_backoff;
  } else if (base > 0 && rtt > target) {
    slow_start_ = false;
    limit_ *= std::max(0.5, target / rtt);
  } else if (window.max_in_flight * 2 >= limit) {
    if (slow_start_) {
      limit_ *= rtt > 0 ? std::min(2.0, target / rtt) : 2.0;
    } else {
      limit_ += 1.0;
    }
  }
  limit_ = std::clamp(limit_, static_cast<double>(options_.min_limit),
                      static_cast<double>(options_.max_limit));

  // Pinned at the floor and still slow: the database itself got slower.
  // Re-measure the baseline from here.
  const bool pinned = limit_ <= options_.min_limit && base > 0 &&
                      rtt > kRebaselineMargin * target;
  windows_pinned_ = pinned ? windows_pinned_ + 1 : 0;
  // A slowdown hint: the database is slower at the same demand, so latency
  // above target at the floor is the new unloaded latency, not queueing.
  const bool hinted = slowdown_windows_ > 0 && limit_ <= options_.min_limit &&
                      base > 0 && rtt > target;
  if (slowdown_windows_ > 0) --slowdown_windows_;
  if (hinted || windows_pinned_ >= options_.rebaseline_windows) {
    period_.fill(-1);
    RecordBaseline(window.rtt);
    // The re-measured baseline is the window at the floor, not the alone
    // floor measured before the database changed.
    alone_floor_ns_ = 0;
    windows_pinned_ = 0;
    slowdown_windows_ = 0;
  }
  Probe(window, limit);
  return static_cast<int>(limit_);
}

void KneeLimit::EndProbe(int rest_windows) {
  trial_tolerance_ = tolerance_;
  narrow_passes_ = 0;
  stage_ = Stage::kBase;
  stage_windows_ = 0;
  measure_from_.reset();
  last_reading_.reset();
  rest_windows_ = rest_windows;
}

void KneeLimit::Probe(const WindowSample& window, int limit_in_force) {
  if (options_.database_rate == nullptr) return;
  // Slow start and the alone windows find the band's limit first.
  if (slow_start_ || alone_windows_ < kAloneWindows) return;
  if (rest_windows_ > 0) {
    --rest_windows_;
    return;
  }
  // A window without demand says nothing about the band; a drop ends the
  // probe at the band it started from (the drop backoff has run).
  if (window.any_dropped() || window.max_in_flight * 2 < limit_in_force) {
    if (stage_ == Stage::kTrial || stage_windows_ > 0) {
      EndProbe(kRestWindows);
    }
    return;
  }
  ++stage_windows_;
  if (stage_windows_ < kSettleWindows) return;
  // Every window of a measurement reads the count: a missing reading or a
  // count that went backwards (a restarted server) on the way ends it.
  const std::optional<WriteCountReading> to = options_.database_rate->Latest();
  if (!to || (last_reading_ && (to->writes < last_reading_->writes ||
                                to->at < last_reading_->at))) {
    EndProbe(kRestWindows);
    return;
  }
  last_reading_ = to;
  if (stage_windows_ == kSettleWindows) {
    measure_from_ = to;
    return;
  }
  if (stage_windows_ < kSettleWindows + kMeasureWindows) return;
  if (!measure_from_ || to->at <= measure_from_->at) {
    EndProbe(kRestWindows);
    return;
  }
  const double rate =
      static_cast<double>(to->writes - measure_from_->writes) /
      std::chrono::duration<double>(to->at - measure_from_->at).count();
  stage_windows_ = 0;
  measure_from_.reset();
  last_reading_.reset();
  // The band one step from the accepted one, within the options' bounds.
  const auto step = [this](bool up) {
    return up ? std::min(options_.max_latency_tolerance,
                         tolerance_ * kProbeStep)
              : std::max(options_.latency_tolerance, tolerance_ / kProbeStep);
  };

  if (stage_ == Stage::kBase) {
    base_rate_ = rate;
    if (step(probe_up_) == tolerance_) probe_up_ = !probe_up_;
    trial_tolerance_ = step(probe_up_);
    if (trial_tolerance_ == tolerance_) {
      EndProbe(kRestWindows);  // max_latency_tolerance == latency_tolerance.
    } else {
      stage_ = Stage::kTrial;
    }
    return;
  }

  const bool up = trial_tolerance_ > tolerance_;
  const double g = options_.min_rate_gain;
  // Wider must buy g; narrower is kept only if it costs less than g / 5
  // (the same throughput at lower latency), so noise seldom narrows a
  // band that pays.
  const bool keep =
      up ? rate >= base_rate_ * (1 + g) : rate >= base_rate_ * (1 - g / 5);
  if (keep && !up && ++narrow_passes_ < kNarrowTrials) {
    // A narrower band must pass again, against a fresh measurement of the
    // accepted band: measure the pair once more, without a rest.
    trial_tolerance_ = tolerance_;
    stage_ = Stage::kBase;
    return;
  }
  narrow_passes_ = 0;
  if (keep) {
    // The trial band is the new band, and `rate` its rate: try the next
    // step the same way at once.
    tolerance_ = trial_tolerance_;
    base_rate_ = rate;
    if (up) failed_ups_ = 0;
    const double next = step(up);
    if (next != tolerance_) {
      trial_tolerance_ = next;  // Stays in Stage::kTrial.
      return;
    }
    probe_up_ = !up;
    EndProbe(kRestWindows);
    return;
  }
  // The step did not pay: back, and the other way next time. Wider trials
  // that fail in a row rest twice as long each time (up to 16x), so a
  // database whose rate is flat beyond the knee spends little time in
  // trial bands.
  probe_up_ = !up;
  if (!up) {
    EndProbe(kRestWindows);
    return;
  }
  failed_ups_ = std::min(failed_ups_ + 1, 5);
  EndProbe(kRestWindows << (failed_ups_ - 1));
}

WindowOptions DefaultKneeWindowOptions() {
  WindowOptions options;
  options.min_samples = 30;
  return options;
}

absl::StatusOr<std::shared_ptr<Limit>> MakeDefaultLimit(
    const KneeLimitOptions& knee, const WindowOptions& window) {
  absl::StatusOr<std::unique_ptr<KneeLimit>> algorithm =
      KneeLimit::Create(knee);
  if (!algorithm.ok()) return algorithm.status();
  absl::StatusOr<std::unique_ptr<WindowedLimit>> limit =
      WindowedLimit::Create(std::move(*algorithm), window);
  if (!limit.ok()) return limit.status();
  return std::shared_ptr<Limit>(std::move(*limit));
}

}  // namespace spillway
