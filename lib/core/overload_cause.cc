#include "spillway/overload_cause.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/mutex.h"
#include "core/shard.h"

namespace spillway {

// The last judged interval, for snapshot(): written by the closer, read by
// anyone, under the lock (never on the hot path).
struct OverloadDetector::Published {
  mutable internal::Mutex mu;
  OverloadSnapshot snapshot ABSL_GUARDED_BY(mu);
};

namespace {

int64_t Nanos(MonotonicTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             t.time_since_epoch())
      .count();
}

absl::Status Invalid(absl::string_view field, absl::string_view want,
                     absl::string_view got) {
  return absl::InvalidArgumentError(absl::StrCat(
      "OverloadDetectorOptions.", field, " must be ", want, "; got ", got));
}

std::string Ms(double seconds) {
  return absl::StrFormat("%.3g ms", seconds * 1e3);
}

}  // namespace

absl::string_view OverloadCauseName(OverloadCause cause) {
  switch (cause) {
    case OverloadCause::kNone:
      return "none";
    case OverloadCause::kOfferedLoadSurge:
      return "offered_load_surge";
    case OverloadCause::kDatabaseSlowdown:
      return "database_slowdown";
  }
  return "unknown";
}

absl::Status ValidateOverloadDetectorOptions(const OverloadDetectorOptions& o) {
  if (o.name.empty()) return Invalid("name", "not empty", "\"\"");
  if (o.interval <= absl::ZeroDuration() ||
      o.interval == absl::InfiniteDuration()) {
    return Invalid("interval", "finite and > 0",
                   absl::FormatDuration(o.interval));
  }
  if (o.baseline_window < o.interval ||
      o.baseline_window == absl::InfiniteDuration()) {
    return Invalid("baseline_window",
                   absl::StrCat("finite and >= interval (",
                                absl::FormatDuration(o.interval), ")"),
                   absl::FormatDuration(o.baseline_window));
  }
  if (o.warmup < absl::ZeroDuration() || o.warmup == absl::InfiniteDuration()) {
    return Invalid("warmup", "finite and >= 0", absl::FormatDuration(o.warmup));
  }
  if (!(o.surge_ratio > 1.0) || !std::isfinite(o.surge_ratio)) {
    return Invalid("surge_ratio", "finite and > 1",
                   absl::StrCat(o.surge_ratio));
  }
  if (!(o.shed_ratio > 0.0 && o.shed_ratio <= 1.0)) {
    return Invalid("shed_ratio", "in (0, 1]", absl::StrCat(o.shed_ratio));
  }
  if (!(o.latency_ratio > 1.0) || !std::isfinite(o.latency_ratio)) {
    return Invalid("latency_ratio", "finite and > 1",
                   absl::StrCat(o.latency_ratio));
  }
  if (o.confirm_intervals < 1) {
    return Invalid("confirm_intervals", ">= 1",
                   absl::StrCat(o.confirm_intervals));
  }
  if (o.min_writes < 1) {
    return Invalid("min_writes", ">= 1", absl::StrCat(o.min_writes));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<OverloadDetector>> OverloadDetector::Create(
    OverloadDetectorOptions options) {
  if (absl::Status s = ValidateOverloadDetectorOptions(options); !s.ok()) {
    return s;
  }
  return std::unique_ptr<OverloadDetector>(
      new OverloadDetector(std::move(options)));
}

OverloadDetector::OverloadDetector(OverloadDetectorOptions options)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? *options_.clock
                                       : SteadyClock::Default()),
      log_(options_.log != nullptr ? *options_.log : DefaultLogSink()),
      interval_ns_(absl::ToInt64Nanoseconds(options_.interval)),
      published_(std::make_unique<Published>()) {
  const int64_t now_ns = Nanos(clock_.Now());
  opened_ns_ = now_ns;
  close_at_ns_.store(now_ns + interval_ns_, std::memory_order_relaxed);
  MetricsSink& sink =
      options_.metrics != nullptr ? *options_.metrics : NoopMetricsSink();
  for (int c = 0; c < kNumOverloadCauses; ++c) {
    cause_gauge_[c] = sink.Gauge(
        metrics::kOverloadCause,
        {options_.name,
         std::string(OverloadCauseName(static_cast<OverloadCause>(c)))});
    cause_gauge_[c]->Set(c == 0 ? 1.0 : 0.0);
  }
  offered_ratio_gauge_ = sink.Gauge(metrics::kOfferedRatio, {options_.name});
  latency_ratio_gauge_ = sink.Gauge(metrics::kLatencyRatio, {options_.name});
}

OverloadDetector::~OverloadDetector() = default;

void OverloadDetector::OnOffered(MonotonicTime now, Refusal refusal,
                                 bool retry) {
  Shard& s = shards_[internal::ThreadSlot() % kShards];
  s.offered.fetch_add(1, std::memory_order_relaxed);
  if (retry) s.retries.fetch_add(1, std::memory_order_relaxed);
  if (refusal != Refusal::kAdmitted) {
    s.refused.fetch_add(1, std::memory_order_relaxed);
    if (refusal == Refusal::kByLimiter) {
      s.refused_by_limiter.fetch_add(1, std::memory_order_relaxed);
    }
  }
  MaybeClose(Nanos(now));
}

void OverloadDetector::OnCompleted(MonotonicTime now,
                                   std::chrono::nanoseconds latency) {
  Shard& s = shards_[internal::ThreadSlot() % kShards];
  s.completed.fetch_add(1, std::memory_order_relaxed);
  const int64_t ns = latency.count();
  s.latency_sum_ns.fetch_add(static_cast<uint64_t>(std::max<int64_t>(0, ns)),
                             std::memory_order_relaxed);
  MaybeClose(Nanos(now));
}

void OverloadDetector::MaybeClose(int64_t now_ns) {
  if (now_ns < close_at_ns_.load(std::memory_order_relaxed)) return;
  if (closing_.exchange(true, std::memory_order_acquire)) return;
  // Re-check under the flag: another closer may have just moved it on.
  if (now_ns >= close_at_ns_.load(std::memory_order_relaxed)) Close(now_ns);
  closing_.store(false, std::memory_order_release);
}

void OverloadDetector::Close(int64_t now_ns) {
  uint64_t offered = 0, retries = 0, refused = 0, by_limiter = 0, completed = 0,
           latency_sum = 0;
  for (Shard& s : shards_) {
    offered += s.offered.exchange(0, std::memory_order_relaxed);
    retries += s.retries.exchange(0, std::memory_order_relaxed);
    refused += s.refused.exchange(0, std::memory_order_relaxed);
    by_limiter += s.refused_by_limiter.exchange(0, std::memory_order_relaxed);
    completed += s.completed.exchange(0, std::memory_order_relaxed);
    latency_sum += s.latency_sum_ns.exchange(0, std::memory_order_relaxed);
  }
  const double seconds = static_cast<double>(now_ns - opened_ns_) * 1e-9;
  opened_ns_ = now_ns;
  close_at_ns_.store(now_ns + interval_ns_, std::memory_order_relaxed);

  const OverloadCause seen = Judge(seconds, offered, std::min(retries, offered),
                                   refused, by_limiter, completed, latency_sum);
  if (seen == candidate_) {
    ++candidate_intervals_;
  } else {
    candidate_ = seen;
    candidate_intervals_ = 1;
  }
  if (candidate_ != cause() &&
      candidate_intervals_ >= options_.confirm_intervals) {
    Publish(candidate_);
  }
}

OverloadCause OverloadDetector::Judge(double seconds, uint64_t offered,
                                      uint64_t retries, uint64_t refused,
                                      uint64_t refused_by_limiter,
                                      uint64_t completed,
                                      uint64_t latency_sum_ns) {
  if (seconds <= 0.0) return cause();
  // Demand is first attempts: retries of refused writes are a consequence
  // of overload, not its cause (a slowdown with retrying clients multiplies
  // the attempts).
  const double rate = static_cast<double>(offered - retries) / seconds;
  const double shed =
      offered > 0 ? static_cast<double>(refused) / static_cast<double>(offered)
                  : 0.0;
  const double limiter_shed = offered > 0
                                  ? static_cast<double>(refused_by_limiter) /
                                        static_cast<double>(offered)
                                  : 0.0;
  // No completion in the interval: latency is unknown, not zero.
  const bool have_latency = completed > 0;
  const double latency_s = have_latency
                               ? static_cast<double>(latency_sum_ns) * 1e-9 /
                                     static_cast<double>(completed)
                               : 0.0;
  const double warmup_s = absl::ToDoubleSeconds(options_.warmup);
  const bool warm = calm_seconds_ >= warmup_s && offered_baseline_ > 0.0 &&
                    latency_baseline_s_ > 0.0;

  const bool judged = offered >= static_cast<uint64_t>(options_.min_writes);
  const bool slow = warm && have_latency &&
                    latency_s >= options_.latency_ratio * latency_baseline_s_;
  const bool shedding = shed >= options_.shed_ratio;
  const bool limiter_shedding = limiter_shed >= options_.shed_ratio;
  const bool overloaded = judged && (shedding || slow);
  const double offered_ratio = warm ? rate / offered_baseline_ : 0.0;
  const double latency_ratio =
      warm && have_latency ? latency_s / latency_baseline_s_ : 0.0;

  OverloadCause seen = OverloadCause::kNone;
  if (overloaded && warm) {
    if (offered_ratio >= options_.surge_ratio) {
      seen = OverloadCause::kOfferedLoadSurge;
    } else if (limiter_shedding || slow) {
      seen = OverloadCause::kDatabaseSlowdown;
    }
  }

  // Baselines learn from calm intervals only. The weight of an interval is
  // 1 - exp(-seconds / window), the exact decay of an EWMA with time
  // constant `window` over an interval of that length; the first calm
  // interval seeds them.
  if (!overloaded) {
    const double alpha =
        1.0 -
        std::exp(-seconds / absl::ToDoubleSeconds(options_.baseline_window));
    offered_baseline_ =
        offered_baseline_ > 0.0
            ? offered_baseline_ + alpha * (rate - offered_baseline_)
            : rate;
    if (have_latency &&
        completed >= static_cast<uint64_t>(options_.min_writes)) {
      latency_baseline_s_ =
          latency_baseline_s_ > 0.0
              ? latency_baseline_s_ + alpha * (latency_s - latency_baseline_s_)
              : latency_s;
    }
    if (judged) calm_seconds_ += seconds;
  }

  offered_ratio_gauge_->Set(offered_ratio);
  latency_ratio_gauge_->Set(latency_ratio);
  {
    internal::MutexLock lock(&published_->mu);
    OverloadSnapshot& s = published_->snapshot;
    s.cause = cause();
    s.offered_per_second = rate;
    s.offered_baseline = warm ? offered_baseline_ : 0.0;
    s.shed = shed;
    s.limiter_shed = limiter_shed;
    s.latency = absl::Seconds(latency_s);
    s.latency_baseline = absl::Seconds(latency_baseline_s_);
    s.warm = warm;
  }
  return seen;
}

void OverloadDetector::Publish(OverloadCause next) {
  const OverloadCause prev = cause();
  cause_.store(static_cast<uint8_t>(next), std::memory_order_relaxed);
  cause_gauge_[static_cast<int>(prev)]->Set(0.0);
  cause_gauge_[static_cast<int>(next)]->Set(1.0);
  OverloadSnapshot s;
  {
    internal::MutexLock lock(&published_->mu);
    published_->snapshot.cause = next;
    s = published_->snapshot;
  }
  const std::string detail = absl::StrFormat(
      "offered %.0f/s = %.2gx baseline %.0f/s, %.0f%% shed (%.0f%% by the "
      "concurrency limit), latency %s = %.2gx baseline %s",
      s.offered_per_second,
      s.offered_baseline > 0 ? s.offered_per_second / s.offered_baseline : 0.0,
      s.offered_baseline, s.shed * 100, s.limiter_shed * 100,
      Ms(absl::ToDoubleSeconds(s.latency)),
      s.latency_baseline > absl::ZeroDuration()
          ? absl::ToDoubleSeconds(s.latency) /
                absl::ToDoubleSeconds(s.latency_baseline)
          : 0.0,
      Ms(absl::ToDoubleSeconds(s.latency_baseline)));
  if (next == OverloadCause::kNone) {
    log_.Log(
        LogLevel::kInfo,
        absl::StrCat("throttle ", options_.name, ": overload cause none (was ",
                     OverloadCauseName(prev), "; ", detail, ")"));
  } else {
    const absl::string_view hint =
        next == OverloadCause::kOfferedLoadSurge
            ? "look upstream first: load balancer weights, clients, retries"
            : "the database absorbs less at the usual load: look at the "
              "database first";
    log_.Log(LogLevel::kWarning,
             absl::StrCat("throttle ", options_.name, ": overload cause ",
                          OverloadCauseName(next), " (", detail, "); ", hint));
  }
  if (options_.on_change) options_.on_change(next);
}

OverloadSnapshot OverloadDetector::snapshot() const {
  internal::MutexLock lock(&published_->mu);
  return published_->snapshot;
}

}  // namespace spillway
