#include "spillway/leased_budget.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <utility>

#include "absl/base/attributes.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/mutex.h"

namespace spillway {
namespace {

// The bounds of TokenBucketOptions, which the safe-share bucket must meet.
constexpr double kMaxRate = 1e9;
constexpr double kMaxBurst = 1e9;
constexpr double kMaxFillSeconds = 1e8;
constexpr size_t kMaxKeyLength = 200;
constexpr int64_t kMaxLeaseTokens = 1'000'000'000;
constexpr double kMinHeadroom = 1.0;
constexpr double kMaxHeadroom = 10.0;
constexpr absl::Duration kMinRefreshInterval = absl::Milliseconds(1);
constexpr absl::Duration kMaxRefreshInterval = absl::Seconds(10);
// Time constant of the demand EWMA.
constexpr double kDemandTimeConstantSeconds = 1.0;

// ceil(x) for a token count computed in floating point, forgiving the last
// bits of rounding: 2000 * 0.1 * 1.5 may come out as 300.00000000000006,
// which is a target of 300, not 301.
int64_t CeilTokens(double x) {
  return static_cast<int64_t>(std::ceil(x - std::max(1.0, x) * 1e-12));
}

// The default max_lease: max(min_lease, min(floor(burst), ceil(rate *
// refresh_interval))). floor(burst): the store never grants more than whole
// tokens of its burst at once.
int64_t DefaultMaxLease(const LeasedBudgetOptions& o) {
  const double per_interval =
      o.spec.rate *
      static_cast<double>(absl::ToInt64Nanoseconds(o.refresh_interval)) / 1e9;
  const int64_t cap = std::min(static_cast<int64_t>(std::floor(o.spec.burst)),
                               CeilTokens(per_interval));
  return std::max(o.min_lease, cap);
}

// Safe-share bucket parameters for fleet size `n`: rate / n and
// max(1, burst / n). The bucket refuses a fill time (burst / rate) above
// 1e8 s; for absurd fleet sizes at tiny rates the share's rate is raised to
// meet it rather than fail.
struct Share {
  double rate;
  double burst;
};
Share SafeShare(const BudgetSpec& spec, int n) {
  Share s{spec.rate / n, std::max(1.0, spec.burst / n)};
  if (s.burst / s.rate > kMaxFillSeconds) s.rate = s.burst / kMaxFillSeconds;
  return s;
}

BudgetMode FallbackMode(FailMode fail_mode) {
  switch (fail_mode) {
    case FailMode::kSafeShare:
      return BudgetMode::kSafeShare;
    case FailMode::kFailOpen:
      return BudgetMode::kFailOpen;
    case FailMode::kFailClosed:
      return BudgetMode::kFailClosed;
  }
  return BudgetMode::kSafeShare;  // Validation refuses other values.
}

}  // namespace

absl::string_view BudgetModeName(BudgetMode mode) {
  switch (mode) {
    case BudgetMode::kShared:
      return "shared";
    case BudgetMode::kSafeShare:
      return "safe_share";
    case BudgetMode::kFailOpen:
      return "fail_open";
    case BudgetMode::kFailClosed:
      return "fail_closed";
  }
  return "unknown";
}

absl::Status ValidateLeasedBudgetOptions(const LeasedBudgetOptions& o) {
  if (o.key.empty() || o.key.size() > kMaxKeyLength) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "LeasedBudgetOptions.key must be 1 to %d printable ASCII characters; "
        "got %d characters",
        kMaxKeyLength, o.key.size()));
  }
  for (size_t i = 0; i < o.key.size(); ++i) {
    if (!absl::ascii_isprint(static_cast<unsigned char>(o.key[i]))) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "LeasedBudgetOptions.key must be 1 to %d printable ASCII "
          "characters; got \"%s\" (byte %d is 0x%02x)",
          kMaxKeyLength, absl::CHexEscape(o.key), i,
          static_cast<unsigned char>(o.key[i])));
    }
  }
  const double rate = o.spec.rate;
  if (!std::isfinite(rate) || rate <= 0 || rate > kMaxRate) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "LeasedBudgetOptions.spec.rate must be finite, > 0 and <= %g tokens "
        "per second; got %g",
        kMaxRate, rate));
  }
  const double burst = o.spec.burst;
  if (!std::isfinite(burst) || burst < 1 || burst > kMaxBurst) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "LeasedBudgetOptions.spec.burst must be finite, >= 1 and <= %g "
        "tokens; got %g",
        kMaxBurst, burst));
  }
  if (burst / rate > kMaxFillSeconds) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "LeasedBudgetOptions.spec: burst / rate (the time to fill the budget) "
        "must be <= %g s; got burst=%g, rate=%g (%g s)",
        kMaxFillSeconds, burst, rate, burst / rate));
  }
  if (o.refresh_interval < kMinRefreshInterval ||
      o.refresh_interval > kMaxRefreshInterval) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "LeasedBudgetOptions.refresh_interval must be in [%s, %s]; got %s",
        absl::FormatDuration(kMinRefreshInterval),
        absl::FormatDuration(kMaxRefreshInterval),
        absl::FormatDuration(o.refresh_interval)));
  }
  if (o.min_lease < 1 || o.min_lease > kMaxLeaseTokens) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "LeasedBudgetOptions.min_lease must be in [1, %d] tokens; got %d",
        kMaxLeaseTokens, o.min_lease));
  }
  if (o.max_lease != 0 &&
      (o.max_lease < o.min_lease || o.max_lease > kMaxLeaseTokens)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "LeasedBudgetOptions.max_lease must be 0 (automatic) or in "
        "[min_lease=%d, %d] tokens; got %d",
        o.min_lease, kMaxLeaseTokens, o.max_lease));
  }
  if (!(o.lease_headroom >= kMinHeadroom && o.lease_headroom <= kMaxHeadroom)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "LeasedBudgetOptions.lease_headroom must be in [%g, %g]; got %g",
        kMinHeadroom, kMaxHeadroom, o.lease_headroom));
  }
  if (o.fail_mode != FailMode::kSafeShare &&
      o.fail_mode != FailMode::kFailOpen &&
      o.fail_mode != FailMode::kFailClosed) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "LeasedBudgetOptions.fail_mode must be kSafeShare, kFailOpen or "
        "kFailClosed; got %d",
        static_cast<int>(o.fail_mode)));
  }
  if (o.fallback_fleet_size < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "LeasedBudgetOptions.fallback_fleet_size must be >= 1; got %d",
        o.fallback_fleet_size));
  }
  return absl::OkStatus();
}

// The cold state. Two mutexes, so that SetFleetSize and last_error() never
// wait for a store call:
//   refresh_mu  serializes Refresh and guards its bookkeeping; held across
//               the store call and the mode-switch log line;
//   state_mu    guards what SetFleetSize and the getters share with
//               Refresh; held for a few stores only. Taken after refresh_mu
//               when both are held.
struct LeasedBudget::Control {
  Control(const LeasedBudgetOptions& options, MetricsSink& sink)
      : min_lease(options.min_lease),
        headroom(options.lease_headroom),
        fallback(FallbackMode(options.fail_mode)),
        log(options.log != nullptr ? *options.log : DefaultLogSink()) {
    const std::string& key = options.key;
    lease_gauge = sink.Gauge(metrics::kLeaseTokens, {key});
    target_gauge = sink.Gauge(metrics::kLeaseTarget, {key});
    max_lease_gauge = sink.Gauge(metrics::kMaxLease, {key});
    overshoot_gauge = sink.Gauge(metrics::kOvershootBound, {key});
    for (int m = 0; m < kNumBudgetModes; ++m) {
      mode_gauges[m] = sink.Gauge(
          metrics::kBudgetMode,
          {key, std::string(BudgetModeName(static_cast<BudgetMode>(m)))});
    }
    granted = sink.Counter(metrics::kBudgetRefreshes, {key, "granted"});
    exhausted = sink.Counter(metrics::kBudgetRefreshes, {key, "exhausted"});
    errors = sink.Counter(metrics::kBudgetRefreshes, {key, "error"});
  }

  void SetModeGauges(BudgetMode mode) {
    for (int m = 0; m < kNumBudgetModes; ++m) {
      mode_gauges[m]->Set(m == static_cast<int>(mode) ? 1 : 0);
    }
  }

  const int64_t min_lease;
  const double headroom;
  const BudgetMode fallback;
  LogSink& log;

  internal::Mutex refresh_mu;
  // Start of the current demand measurement, and the tokens asked for
  // (admitted + refused) at that instant.
  MonotonicTime measured_at ABSL_GUARDED_BY(refresh_mu);
  uint64_t offered_at ABSL_GUARDED_BY(refresh_mu) = 0;
  // False until the first measurement: demand is then the fair share,
  // rate / fleet size, with the fleet size current at each refresh.
  bool measured ABSL_GUARDED_BY(refresh_mu) = false;
  // EWMA of the measured demand, tokens per second (it starts at the fair
  // share); and the demand estimate of the last measurement, max(rate,
  // ewma).
  double ewma ABSL_GUARDED_BY(refresh_mu) = 0;
  double demand ABSL_GUARDED_BY(refresh_mu) = 0;
  // Until when the store said it holds no more tokens (from the last grant
  // short of its `want`); in the past otherwise.
  MonotonicTime store_ready ABSL_GUARDED_BY(refresh_mu);
  // When the budget fell back to its fail mode (while in one).
  MonotonicTime failed_at ABSL_GUARDED_BY(refresh_mu);

  internal::Mutex state_mu ABSL_ACQUIRED_AFTER(refresh_mu);
  absl::Status last_error ABSL_GUARDED_BY(state_mu);

  // Handles bound once at construction. The lease, target and mode gauges
  // are set by Refresh only (under refresh_mu), the overshoot gauge by
  // SetFleetSize only (under state_mu).
  GaugeHandle* lease_gauge;
  GaugeHandle* target_gauge;
  GaugeHandle* max_lease_gauge;
  GaugeHandle* overshoot_gauge;
  GaugeHandle* mode_gauges[kNumBudgetModes];
  CounterHandle* granted;
  CounterHandle* exhausted;
  CounterHandle* errors;
};

absl::StatusOr<std::unique_ptr<LeasedBudget>> LeasedBudget::Create(
    const LeasedBudgetOptions& options, BudgetStore* store) {
  if (absl::Status s = ValidateLeasedBudgetOptions(options); !s.ok()) {
    return s;
  }
  if (store == nullptr) {
    return absl::InvalidArgumentError(
        "LeasedBudget::Create: store must not be null");
  }
  const Share share = SafeShare(options.spec, options.fallback_fleet_size);
  TokenBucketOptions bucket_options;
  bucket_options.rate = share.rate;
  bucket_options.burst = share.burst;
  bucket_options.name = options.key;
  bucket_options.clock = options.clock;
  bucket_options.metrics = &NoopMetricsSink();
  absl::StatusOr<std::unique_ptr<TokenBucket>> bucket =
      TokenBucket::Create(bucket_options);
  if (!bucket.ok()) {
    // SafeShare() keeps the parameters in the bucket's bounds.
    return absl::InternalError(
        absl::StrCat("LeasedBudget::Create: safe-share bucket: ",
                     bucket.status().message()));
  }
  const int64_t max_lease =
      options.max_lease != 0 ? options.max_lease : DefaultMaxLease(options);
  return std::unique_ptr<LeasedBudget>(
      new LeasedBudget(options, store, max_lease, *std::move(bucket)));
}

LeasedBudget::LeasedBudget(const LeasedBudgetOptions& options,
                           BudgetStore* store, int64_t max_lease,
                           std::unique_ptr<TokenBucket> safe_share)
    : key_(options.key),
      spec_(options.spec),
      refresh_interval_(options.refresh_interval),
      max_lease_(max_lease),
      clock_(options.clock != nullptr ? *options.clock
                                      : SteadyClock::Default()),
      store_(*store),
      safe_share_(std::move(safe_share)),
      report_(options.metrics != nullptr &&
              options.metrics != &NoopMetricsSink()),
      admitted_metric_(
          (options.metrics != nullptr ? *options.metrics : NoopMetricsSink())
              .Counter(metrics::kAdmitted,
                       {options.key, std::string(GateName(Gate::kGlobalBudget)),
                        "any"})),
      exhausted_metric_(
          (options.metrics != nullptr ? *options.metrics : NoopMetricsSink())
              .Counter(
                  metrics::kRejected,
                  {options.key, std::string(GateName(Gate::kGlobalBudget)),
                   "any", std::string(ReasonName(Reason::kBudgetExhausted))})),
      unavailable_metric_(
          (options.metrics != nullptr ? *options.metrics : NoopMetricsSink())
              .Counter(metrics::kRejected,
                       {options.key, std::string(GateName(Gate::kGlobalBudget)),
                        "any",
                        std::string(ReasonName(Reason::kBudgetUnavailable))})),
      fleet_size_(options.fallback_fleet_size),
      control_(std::make_unique<Control>(options, options.metrics != nullptr
                                                      ? *options.metrics
                                                      : NoopMetricsSink())) {
  Control& c = *control_;
  const MonotonicTime now = clock_.Now();
  {
    internal::MutexLock lock(&c.refresh_mu);
    c.measured_at = now;
    c.store_ready = now;
    c.failed_at = now;
    c.SetModeGauges(BudgetMode::kShared);
    c.lease_gauge->Set(0);
    c.target_gauge->Set(0);
  }
  // Until the first refresh a refused caller waits for it: at once.
  retry_at_ns_.store(Nanos(now), std::memory_order_relaxed);
  c.max_lease_gauge->Set(static_cast<double>(max_lease_));
  internal::MutexLock lock(&c.state_mu);
  c.overshoot_gauge->Set(static_cast<double>(OvershootBound()));
}

LeasedBudget::~LeasedBudget() = default;

ABSL_ATTRIBUTE_ALWAYS_INLINE inline int64_t LeasedBudget::Nanos(
    MonotonicTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             t.time_since_epoch())
      .count();
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool LeasedBudget::Admit(int64_t n) {
  admitted_tokens_.fetch_add(static_cast<uint64_t>(n),
                             std::memory_order_relaxed);
  if (report_) admitted_metric_->Increment();
  return true;
}

bool LeasedBudget::Refuse(int64_t n, Reason reason, absl::Duration retry_after,
                          Rejection* rejection) {
  refused_tokens_.fetch_add(static_cast<uint64_t>(n),
                            std::memory_order_relaxed);
  if (report_) {
    (reason == Reason::kBudgetUnavailable ? unavailable_metric_
                                          : exhausted_metric_)
        ->Increment();
  }
  if (rejection != nullptr) {
    rejection->gate = Gate::kGlobalBudget;
    rejection->reason = reason;
    rejection->retry_after = std::max(retry_after, absl::ZeroDuration());
  }
  return false;
}

absl::Duration LeasedBudget::RetryAfterNow() const {
  const int64_t wait =
      retry_at_ns_.load(std::memory_order_relaxed) - Nanos(clock_.Now());
  // An overdue refresh is imminent, but a zero hint would have every
  // refused caller spin, taking the CPU the refresh thread needs: suggest a
  // tenth of an interval.
  return wait > 0 ? absl::Nanoseconds(wait) : refresh_interval_ / 10;
}

bool LeasedBudget::TryAcquire(int64_t n, Rejection* rejection) {
  switch (mode_.load(std::memory_order_acquire)) {
    case BudgetMode::kShared: {
      int64_t lease = lease_.load(std::memory_order_relaxed);
      while (lease >= n) {
        if (lease_.compare_exchange_weak(lease, lease - n,
                                         std::memory_order_relaxed,
                                         std::memory_order_relaxed)) {
          return Admit(n);
        }
      }
      absl::Duration retry_after = absl::ZeroDuration();
      if (rejection != nullptr) {
        // No lease ever holds more than max_lease.
        retry_after =
            n > max_lease_ ? absl::InfiniteDuration() : RetryAfterNow();
      }
      return Refuse(n, Reason::kBudgetExhausted, retry_after, rejection);
    }
    case BudgetMode::kSafeShare: {
      absl::Duration retry_after = absl::ZeroDuration();
      if (safe_share_->TryConsume(static_cast<double>(n), rejection != nullptr
                                                              ? &retry_after
                                                              : nullptr)) {
        return Admit(n);
      }
      return Refuse(n, Reason::kBudgetExhausted, retry_after, rejection);
    }
    case BudgetMode::kFailOpen:
      return Admit(n);
    case BudgetMode::kFailClosed:
      return Refuse(
          n, Reason::kBudgetUnavailable,
          rejection != nullptr ? RetryAfterNow() : absl::ZeroDuration(),
          rejection);
  }
  return Refuse(n, Reason::kBudgetUnavailable, absl::ZeroDuration(), rejection);
}

void LeasedBudget::Return(int64_t n) {
  switch (mode_.load(std::memory_order_acquire)) {
    case BudgetMode::kShared: {
      int64_t lease = lease_.load(std::memory_order_relaxed);
      for (;;) {
        const int64_t next = std::min(lease + n, max_lease_);
        if (next <= lease) return;  // Full already.
        if (lease_.compare_exchange_weak(lease, next, std::memory_order_relaxed,
                                         std::memory_order_relaxed)) {
          return;
        }
      }
    }
    case BudgetMode::kSafeShare:
      safe_share_->Return(static_cast<double>(n));
      return;
    case BudgetMode::kFailOpen:
    case BudgetMode::kFailClosed:
      return;
  }
}

absl::Status LeasedBudget::Refresh() {
  Control& c = *control_;
  internal::MutexLock lock(&c.refresh_mu);
  const MonotonicTime now = clock_.Now();

  // 1. Demand: tokens asked for per second since the last measurement, once
  //    it spans at least half an interval.
  const uint64_t offered_now = offered();
  if (!c.measured) {
    c.ewma = spec_.rate / fleet_size();
    c.demand = c.ewma;
  }
  const absl::Duration measured = ToDuration(now - c.measured_at);
  if (measured >= refresh_interval_ / 2) {
    c.measured = true;
    const double seconds = absl::ToDoubleSeconds(measured);
    const double rate =
        static_cast<double>(offered_now - c.offered_at) / seconds;
    c.ewma +=
        (1 - std::exp(-seconds / kDemandTimeConstantSeconds)) * (rate - c.ewma);
    c.demand = std::max(rate, c.ewma);
    c.measured_at = now;
    c.offered_at = offered_now;
  }

  // 2. Target.
  const double interval_seconds =
      static_cast<double>(absl::ToInt64Nanoseconds(refresh_interval_)) / 1e9;
  const int64_t target =
      std::clamp(CeilTokens(std::min(c.demand * interval_seconds * c.headroom,
                                     static_cast<double>(max_lease_))),
                 c.min_lease, max_lease_);
  target_.store(target, std::memory_order_relaxed);
  c.target_gauge->Set(static_cast<double>(target));
  const MonotonicTime next_refresh = now + ToChrono(refresh_interval_);

  // 3. Ask the store for what the lease lacks. In a fail mode the lease is
  //    empty (dropped on the switch; anything a racing Return put back is
  //    dropped again) and the probe asks for a full target.
  const BudgetMode mode = mode_.load(std::memory_order_relaxed);
  int64_t want;
  if (mode == BudgetMode::kShared) {
    const int64_t lease = lease_.load(std::memory_order_relaxed);
    if (lease >= target) {
      c.lease_gauge->Set(static_cast<double>(lease));
      retry_at_ns_.store(Nanos(std::max(next_refresh, c.store_ready)),
                         std::memory_order_relaxed);
      return absl::OkStatus();
    }
    want = target - lease;
  } else {
    lease_.store(0, std::memory_order_relaxed);
    want = target;
  }
  absl::StatusOr<BudgetStore::Grant> grant = store_.Take(key_, spec_, want);
  const MonotonicTime answered = clock_.Now();
  if (grant.ok() && (grant->tokens < 0 || grant->tokens > want)) {
    grant = absl::InternalError(absl::StrFormat(
        "store granted %d tokens of %d asked for", grant->tokens, want));
  }

  if (!grant.ok()) {
    c.errors->Increment();
    {
      internal::MutexLock state(&c.state_mu);
      c.last_error = grant.status();
    }
    c.store_ready = answered;
    retry_at_ns_.store(Nanos(next_refresh), std::memory_order_relaxed);
    if (mode == BudgetMode::kShared) {
      // Fall back: admissions switch first, then the lease is dropped.
      mode_.store(c.fallback, std::memory_order_release);
      lease_.store(0, std::memory_order_relaxed);
      c.failed_at = now;
      c.SetModeGauges(c.fallback);
      c.lease_gauge->Set(0);
      std::string how;
      if (c.fallback == BudgetMode::kSafeShare) {
        const int fleet = fleet_size();
        const Share share = SafeShare(spec_, fleet);
        how = absl::StrFormat(" at %g/s (rate %g/s over %d instance%s)",
                              share.rate, spec_.rate, fleet,
                              fleet == 1 ? "" : "s");
      } else if (c.fallback == BudgetMode::kFailOpen) {
        how = " (admitting every write)";
      } else {
        how = " (refusing every write)";
      }
      c.log.Log(LogLevel::kWarning,
                absl::StrFormat("fleet budget '%s': store failed (%s); "
                                "falling back to %s%s",
                                key_, grant.status().ToString(),
                                BudgetModeName(c.fallback), how));
    }
    return grant.status();
  }

  // 4. Granted (possibly nothing).
  const int64_t tokens = grant->tokens;
  const int64_t lease =
      lease_.fetch_add(tokens, std::memory_order_relaxed) + tokens;
  if (mode != BudgetMode::kShared) {
    // The tokens are in the lease before admissions switch to it.
    mode_.store(BudgetMode::kShared, std::memory_order_release);
    c.SetModeGauges(BudgetMode::kShared);
    c.log.Log(LogLevel::kInfo,
              absl::StrFormat(
                  "fleet budget '%s': store answers again after "
                  "%s in %s; back to the shared budget",
                  key_, absl::FormatDuration(ToDuration(now - c.failed_at)),
                  BudgetModeName(mode)));
  }
  {
    internal::MutexLock state(&c.state_mu);
    c.last_error = absl::OkStatus();
  }
  (tokens > 0 ? c.granted : c.exhausted)->Increment();
  c.lease_gauge->Set(static_cast<double>(lease));
  c.store_ready = tokens < want
                      ? answered + ToChrono(std::max(grant->retry_after,
                                                     absl::ZeroDuration()))
                      : answered;
  retry_at_ns_.store(Nanos(std::max(next_refresh, c.store_ready)),
                     std::memory_order_relaxed);
  return absl::OkStatus();
}

void LeasedBudget::SetFleetSize(int fleet_size) {
  const int n = std::max(1, fleet_size);
  Control& c = *control_;
  internal::MutexLock lock(&c.state_mu);
  if (fleet_size_.load(std::memory_order_relaxed) == n) return;
  fleet_size_.store(n, std::memory_order_relaxed);
  const Share share = SafeShare(spec_, n);
  // SafeShare() keeps the parameters in the bucket's bounds.
  safe_share_->SetRate(share.rate, share.burst).IgnoreError();
  c.overshoot_gauge->Set(static_cast<double>(OvershootBound()));
}

BudgetMode LeasedBudget::mode() const {
  return mode_.load(std::memory_order_acquire);
}

int64_t LeasedBudget::lease_tokens() const {
  return lease_.load(std::memory_order_relaxed);
}

int64_t LeasedBudget::lease_target() const {
  return target_.load(std::memory_order_relaxed);
}

int LeasedBudget::fleet_size() const {
  return fleet_size_.load(std::memory_order_relaxed);
}

int64_t LeasedBudget::OvershootBound() const {
  return static_cast<int64_t>(std::ceil(spec_.burst)) +
         int64_t{fleet_size()} * max_lease_;
}

uint64_t LeasedBudget::offered() const {
  return admitted_tokens_.load(std::memory_order_relaxed) +
         refused_tokens_.load(std::memory_order_relaxed);
}

uint64_t LeasedBudget::admitted() const {
  return admitted_tokens_.load(std::memory_order_relaxed);
}

absl::Status LeasedBudget::last_error() const {
  internal::MutexLock lock(&control_->state_mu);
  return control_->last_error;
}

}  // namespace spillway
