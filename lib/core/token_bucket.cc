#include "spillway/token_bucket.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include "absl/base/attributes.h"
#include "absl/strings/str_format.h"
#include "core/backoff.h"
#include "spillway/rejection.h"

namespace spillway {
namespace {

constexpr double kMaxRate = 1e9;
constexpr double kMaxBurst = 1e9;
constexpr double kMaxFillSeconds = 1e8;
constexpr double kUnitsPerSecond = 16e9;

absl::Status CheckRate(absl::string_view field, double rate) {
  if (!std::isfinite(rate) || rate <= 0 || rate > kMaxRate) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s must be finite, > 0 and <= %g tokens per second; got %g", field,
        kMaxRate, rate));
  }
  return absl::OkStatus();
}

absl::Status CheckBurst(absl::string_view field, double burst) {
  if (!std::isfinite(burst) || burst < 1 || burst > kMaxBurst) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s must be finite, >= 1 and <= %g tokens; got %g",
                        field, kMaxBurst, burst));
  }
  return absl::OkStatus();
}

absl::Status CheckFillTime(absl::string_view what, double rate, double burst) {
  if (burst / rate > kMaxFillSeconds) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: burst / rate (the time to fill the bucket) must be <= %g s; got "
        "burst=%g, rate=%g (%g s)",
        what, kMaxFillSeconds, burst, rate, burst / rate));
  }
  return absl::OkStatus();
}

// `tokens` worth of time in units, rounded to the nearest even unit count
// (the low bit of the state is the generation tag; see token_bucket.h).
int64_t EvenUnits(double tokens, double half_units_per_token) {
  return 2 * std::llround(tokens * half_units_per_token);
}

// Rounds a non-negative unit count up to whole nanoseconds.
absl::Duration CeilNanoseconds(int64_t units, int64_t units_per_ns) {
  return absl::Nanoseconds((units + units_per_ns - 1) / units_per_ns);
}

}  // namespace

absl::Status ValidateTokenBucketOptions(const TokenBucketOptions& options) {
  if (absl::Status s = CheckRate("TokenBucketOptions.rate", options.rate);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckBurst("TokenBucketOptions.burst", options.burst);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckFillTime("TokenBucketOptions", options.rate, options.burst);
      !s.ok()) {
    return s;
  }
  if (options.initial_tokens.has_value()) {
    const double t = *options.initial_tokens;
    if (!(t >= 0 && t <= options.burst)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "TokenBucketOptions.initial_tokens must be in [0, burst=%g]; got %g",
          options.burst, t));
    }
  }
  if (options.name.empty()) {
    return absl::InvalidArgumentError(
        "TokenBucketOptions.name must not be empty");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TokenBucket>> TokenBucket::Create(
    const TokenBucketOptions& options) {
  if (absl::Status s = ValidateTokenBucketOptions(options); !s.ok()) {
    return s;
  }
  return std::unique_ptr<TokenBucket>(new TokenBucket(options));
}

TokenBucket::TokenBucket(const TokenBucketOptions& options)
    : clock_(options.clock != nullptr ? *options.clock
                                      : SteadyClock::Default()),
      origin_(clock_.Now()) {
  MetricsSink& sink =
      options.metrics != nullptr ? *options.metrics : NoopMetricsSink();
  report_ = &sink != &NoopMetricsSink();
  const std::string gate(GateName(Gate::kTokenBucket));
  admitted_ = sink.Counter(metrics::kAdmitted, {options.name, gate, "any"});
  rejected_ = sink.Counter(metrics::kRejected,
                           {options.name, gate, "any",
                            std::string(ReasonName(Reason::kRateLimited))});
  rate_gauge_ = sink.Gauge(metrics::kBucketRate, {options.name});
  burst_gauge_ = sink.Gauge(metrics::kBucketBurst, {options.name});

  State::Slot& slot = state_.slots[0];
  const double half_units_per_token = kUnitsPerSecond / options.rate / 2;
  slot.rate.store(options.rate, std::memory_order_relaxed);
  slot.burst.store(options.burst, std::memory_order_relaxed);
  slot.half_units_per_token.store(half_units_per_token,
                                  std::memory_order_relaxed);
  slot.burst_units.store(EvenUnits(options.burst, half_units_per_token),
                         std::memory_order_relaxed);
  // Generation 0: slot 0, tag 0.
  const double initial = options.initial_tokens.value_or(options.burst);
  state_.zero_time.store(-EvenUnits(initial, half_units_per_token),
                         std::memory_order_relaxed);
  state_.generation.store(0, std::memory_order_release);
  rate_gauge_->Set(options.rate);
  burst_gauge_->Set(options.burst);
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline int64_t TokenBucket::Units(
    MonotonicTime now) const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(now - origin_)
             .count() *
         kUnitsPerNanosecond;
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline int64_t TokenBucket::Need(
    double n, const Params& params) {
  // n <= burst here, so this is at most burst_units: no overflow. Adding 0.5
  // and truncating rounds a non-negative value to nearest without a libm
  // call; doubling keeps the tag bit of whatever it is added to.
  return 2 * static_cast<int64_t>(n * params.half_units_per_token + 0.5);
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline TokenBucket::Params TokenBucket::LoadParams(
    uint64_t gen) const {
  const State::Slot& slot = state_.slots[Tag(gen)];
  return Params{slot.rate.load(std::memory_order_relaxed),
                slot.burst.load(std::memory_order_relaxed),
                slot.half_units_per_token.load(std::memory_order_relaxed),
                slot.burst_units.load(std::memory_order_relaxed)};
}

// Every operation reads a consistent (generation, parameters, zero_time)
// triple: generation, then the slot and zero_time, then generation again
// after an acquire fence (a seqlock reader). Returns false if the generation
// moved in between; the caller retries. SetRate makes the generation odd
// before it rebases zero_time, so a rebased zero_time is never paired with
// the old parameters.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool TokenBucket::ReadState(
    uint64_t* gen, Params* params, int64_t* zero_time) const {
  *gen = state_.generation.load(std::memory_order_acquire);
  *params = LoadParams(*gen);
  *zero_time = state_.zero_time.load(std::memory_order_acquire);
  std::atomic_thread_fence(std::memory_order_acquire);
  return state_.generation.load(std::memory_order_relaxed) == *gen;
}

TokenBucket::Snapshot TokenBucket::ReadStable() const {
  for (;;) {
    Snapshot snap;
    if (!ReadState(&snap.gen, &snap.params, &snap.zero_time)) continue;
    if ((snap.gen & 1) == 0) return snap;
    std::this_thread::yield();  // SetRate is applying its three stores.
  }
}

bool TokenBucket::TryConsume(double n, absl::Duration* retry_after) {
  const int64_t now = Units(clock_.Now());
  for (;;) {
    const uint64_t gen = state_.generation.load(std::memory_order_acquire);
    const Params params = LoadParams(gen);
    if ((gen & 1) || n > params.burst) {
      if (state_.generation.load(std::memory_order_acquire) != gen) continue;
      // A SetRate mid-flight (refuse rather than mix parameters), or a
      // request no wait can satisfy.
      if (retry_after != nullptr) {
        *retry_after =
            (gen & 1) ? absl::Microseconds(1) : absl::InfiniteDuration();
      }
      if (report_) rejected_->Increment();
      return false;
    }
    // Everything that does not depend on zero_time is computed before it is
    // read, so the window between the read and the compare-exchange (where
    // another core can take the cache line) stays a few instructions.
    // In time units:
    //   tokens(now) >= n  <=>  zero_time + need <= now
    //   next = max(zero_time + need, now - burst_units + need)
    // next > zero_time for n > 0: a consume never moves zero_time back.
    // Both candidates carry the generation's tag (need and burst_units are
    // even), and the tag never changes a comparison with `now` (see
    // token_bucket.h).
    const int64_t need = Need(n, params);
    const int64_t full_next = now - Tag(gen) - params.burst_units + need;
    int64_t zero_time = state_.zero_time.load(std::memory_order_acquire);
    internal::Backoff backoff;
    for (;;) {
      // The seqlock check: zero_time (read above, or by a failed
      // compare-exchange) belongs to generation `gen`.
      std::atomic_thread_fence(std::memory_order_acquire);
      if (state_.generation.load(std::memory_order_relaxed) != gen) break;
      const int64_t ready_at = zero_time + need;
      if (ready_at > now) {
        if (retry_after != nullptr) {
          *retry_after = CeilNanoseconds(ready_at - now, kUnitsPerNanosecond);
        }
        if (report_) rejected_->Increment();
        return false;
      }
      if (state_.zero_time.compare_exchange_strong(
              zero_time, std::max(ready_at, full_next),
              std::memory_order_acq_rel, std::memory_order_acquire)) {
        if (report_) admitted_->Increment();
        return true;
      }
      // Another core won the line: let it run a streak, then re-read.
      backoff.Pause();
      zero_time = state_.zero_time.load(std::memory_order_acquire);
    }
  }
}

std::optional<absl::Duration> TokenBucket::ConsumeWithBorrow(double n) {
  const int64_t now = Units(clock_.Now());
  internal::Backoff backoff;
  for (;;) {
    Snapshot snap = ReadStable();
    const Params& params = snap.params;
    int64_t& zero_time = snap.zero_time;
    if (n > params.burst) {
      if (report_) rejected_->Increment();
      return std::nullopt;
    }
    // As TryConsume, without the refusal: next may lie in the future (debt).
    const int64_t need = Need(n, params);
    const int64_t next = std::max(
        zero_time + need, now - Tag(snap.gen) - params.burst_units + need);
    if (state_.zero_time.compare_exchange_strong(zero_time, next,
                                                 std::memory_order_acq_rel,
                                                 std::memory_order_relaxed)) {
      if (report_) admitted_->Increment();
      // The balance is back at zero when the clock reaches next.
      if (next <= now) return absl::ZeroDuration();
      return CeilNanoseconds(next - now, kUnitsPerNanosecond);
    }
    backoff.Pause();
  }
}

void TokenBucket::Return(double n) {
  const int64_t now = Units(clock_.Now());
  internal::Backoff backoff;
  for (;;) {
    Snapshot snap = ReadStable();
    const Params& params = snap.params;
    int64_t& zero_time = snap.zero_time;
    // Never above burst: zero_time no earlier than now - burst_units.
    const int64_t give = Need(std::min(n, params.burst), params);
    const int64_t next =
        std::max(zero_time - give, now - Tag(snap.gen) - params.burst_units);
    if (state_.zero_time.compare_exchange_strong(zero_time, next,
                                                 std::memory_order_acq_rel,
                                                 std::memory_order_relaxed)) {
      return;
    }
    backoff.Pause();
  }
}

double TokenBucket::Available() const {
  const int64_t now = Units(clock_.Now());
  const Snapshot snap = ReadStable();
  const int64_t accrued = now - (snap.zero_time + Tag(snap.gen));
  if (accrued >= snap.params.burst_units) return snap.params.burst;
  return static_cast<double>(accrued) / 2 / snap.params.half_units_per_token;
}

absl::Status TokenBucket::SetRate(double rate, double burst) {
  if (absl::Status s = CheckRate("TokenBucket::SetRate rate", rate); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckBurst("TokenBucket::SetRate burst", burst);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckFillTime("TokenBucket::SetRate", rate, burst);
      !s.ok()) {
    return s;
  }
  std::lock_guard<std::mutex> lock(set_rate_mu_);
  const uint64_t gen = state_.generation.load(std::memory_order_relaxed);
  const Params old = LoadParams(gen);
  const double half_units_per_token = kUnitsPerSecond / rate / 2;
  const int64_t burst_units = EvenUnits(burst, half_units_per_token);

  // 1. Mark the change (odd generation): consumers stop pairing the old
  //    parameters with zero_time. 2. Rebase zero_time: the balance now,
  //    computed with the old parameters and capped at the new burst,
  //    expressed in the new rate and tagged with the new slot: a consume
  //    that read the old parameters can no longer compare-exchange, even
  //    where the rebased time equals the old (at a balance of exactly
  //    zero). 3. Fill the inactive slot and publish it.
  state_.generation.store(gen + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  const int64_t now = Units(clock_.Now());
  const int64_t old_tag = Tag(gen);
  const int64_t new_tag = Tag(gen + 2);
  int64_t zero_time = state_.zero_time.load(std::memory_order_acquire);
  for (;;) {
    const int64_t accrued = now - (zero_time + old_tag);
    const double tokens = std::min(
        burst, static_cast<double>(std::min(accrued, old.burst_units)) / 2 /
                   old.half_units_per_token);
    const int64_t next =
        now - EvenUnits(tokens, half_units_per_token) - new_tag;
    if (state_.zero_time.compare_exchange_weak(zero_time, next,
                                               std::memory_order_acq_rel,
                                               std::memory_order_acquire)) {
      break;
    }
  }
  State::Slot& slot = state_.slots[new_tag];
  slot.rate.store(rate, std::memory_order_relaxed);
  slot.burst.store(burst, std::memory_order_relaxed);
  slot.half_units_per_token.store(half_units_per_token,
                                  std::memory_order_relaxed);
  slot.burst_units.store(burst_units, std::memory_order_relaxed);
  state_.generation.store(gen + 2, std::memory_order_release);
  rate_gauge_->Set(rate);
  burst_gauge_->Set(burst);
  return absl::OkStatus();
}

double TokenBucket::rate() const {
  std::lock_guard<std::mutex> lock(set_rate_mu_);
  return LoadParams(state_.generation.load(std::memory_order_relaxed)).rate;
}

double TokenBucket::burst() const {
  std::lock_guard<std::mutex> lock(set_rate_mu_);
  return LoadParams(state_.generation.load(std::memory_order_relaxed)).burst;
}

}  // namespace spillway
