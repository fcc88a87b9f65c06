#include "spillway/token_bucket.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>

#include "absl/strings/str_format.h"
#include "spillway/rejection.h"

namespace spillway {
namespace {

constexpr uint64_t kChangingBit = uint64_t{1} << 63;
// Tolerance when comparing token counts, to absorb rounding in the
// time-times-rate products.
constexpr double kEpsilon = 1e-9;
constexpr double kMaxRate = 1e9;
constexpr double kMaxBurst = 1e9;

uint64_t Pack(double rate, double burst) {
  const float r = static_cast<float>(rate);
  const float b = static_cast<float>(burst);
  uint32_t ri;
  uint32_t bi;
  std::memcpy(&ri, &r, sizeof(ri));
  std::memcpy(&bi, &b, sizeof(bi));
  return (uint64_t{ri} << 32) | bi;
}

void Unpack(uint64_t packed, double* rate, double* burst) {
  const uint32_t ri = static_cast<uint32_t>((packed & ~kChangingBit) >> 32);
  const uint32_t bi = static_cast<uint32_t>(packed);
  float r;
  float b;
  std::memcpy(&r, &ri, sizeof(r));
  std::memcpy(&b, &bi, sizeof(b));
  *rate = r;
  *burst = b;
}

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
  const std::string gate(GateName(Gate::kTokenBucket));
  admitted_ = sink.Counter(metrics::kAdmitted, {options.name, gate, "any"});
  rejected_ = sink.Counter(
      metrics::kRejected,
      {options.name, gate, "any", std::string(ReasonName(Reason::kRateLimited))});
  rate_gauge_ = sink.Gauge(metrics::kBucketRate, {options.name});
  burst_gauge_ = sink.Gauge(metrics::kBucketBurst, {options.name});

  const uint64_t packed = Pack(options.rate, options.burst);
  double rate;
  double burst;
  Unpack(packed, &rate, &burst);
  const double initial = options.initial_tokens.value_or(burst);
  state_.zero_time.store(-std::min(initial, burst) / rate,
                         std::memory_order_relaxed);
  state_.params.store(packed, std::memory_order_release);
  rate_gauge_->Set(rate);
  burst_gauge_->Set(burst);
}

double TokenBucket::Seconds(MonotonicTime now) const {
  return std::chrono::duration<double>(now - origin_).count();
}

bool TokenBucket::TryConsume(double n, absl::Duration* retry_after) {
  const double now = Seconds(clock_.Now());
  for (;;) {
    const uint64_t params = state_.params.load(std::memory_order_acquire);
    if (params & kChangingBit) {
      // A SetRate is mid-flight: refuse rather than mix parameters.
      if (retry_after != nullptr) *retry_after = absl::Microseconds(1);
      rejected_->Increment();
      return false;
    }
    double zero_time = state_.zero_time.load(std::memory_order_acquire);
    if (state_.params.load(std::memory_order_acquire) != params) continue;
    double rate;
    double burst;
    Unpack(params, &rate, &burst);
    const double tokens = std::min(burst, (now - zero_time) * rate);
    if (tokens + kEpsilon < n) {
      if (retry_after != nullptr) {
        *retry_after = n > burst ? absl::InfiniteDuration()
                                 : absl::Seconds((n - tokens) / rate);
      }
      rejected_->Increment();
      return false;
    }
    const double next = now - (tokens - n) / rate;
    if (state_.zero_time.compare_exchange_weak(zero_time, next,
                                               std::memory_order_acq_rel,
                                               std::memory_order_acquire)) {
      admitted_->Increment();
      return true;
    }
  }
}

std::optional<absl::Duration> TokenBucket::ConsumeWithBorrow(double n) {
  const double now = Seconds(clock_.Now());
  for (;;) {
    const uint64_t params = state_.params.load(std::memory_order_acquire);
    if (params & kChangingBit) {
      std::this_thread::yield();
      continue;
    }
    double zero_time = state_.zero_time.load(std::memory_order_acquire);
    if (state_.params.load(std::memory_order_acquire) != params) continue;
    double rate;
    double burst;
    Unpack(params, &rate, &burst);
    if (n > burst) {
      rejected_->Increment();
      return std::nullopt;
    }
    const double tokens = std::min(burst, (now - zero_time) * rate);
    const double next = now - (tokens - n) / rate;
    if (state_.zero_time.compare_exchange_weak(zero_time, next,
                                               std::memory_order_acq_rel,
                                               std::memory_order_acquire)) {
      admitted_->Increment();
      if (tokens + kEpsilon >= n) return absl::ZeroDuration();
      return absl::Seconds((n - tokens) / rate);
    }
  }
}

void TokenBucket::Return(double n) {
  const double now = Seconds(clock_.Now());
  for (;;) {
    const uint64_t params = state_.params.load(std::memory_order_acquire);
    if (params & kChangingBit) {
      std::this_thread::yield();
      continue;
    }
    double zero_time = state_.zero_time.load(std::memory_order_acquire);
    if (state_.params.load(std::memory_order_acquire) != params) continue;
    double rate;
    double burst;
    Unpack(params, &rate, &burst);
    const double next = std::max(zero_time - n / rate, now - burst / rate);
    if (state_.zero_time.compare_exchange_weak(zero_time, next,
                                               std::memory_order_acq_rel,
                                               std::memory_order_acquire)) {
      return;
    }
  }
}

double TokenBucket::Available() const {
  const double now = Seconds(clock_.Now());
  double rate;
  double burst;
  for (;;) {
    const uint64_t params = state_.params.load(std::memory_order_acquire);
    const double zero_time = state_.zero_time.load(std::memory_order_acquire);
    if (state_.params.load(std::memory_order_acquire) != params ||
        (params & kChangingBit)) {
      std::this_thread::yield();
      continue;
    }
    Unpack(params, &rate, &burst);
    return std::min(burst, (now - zero_time) * rate);
  }
}

absl::Status TokenBucket::SetRate(double rate, double burst) {
  if (absl::Status s = CheckRate("TokenBucket::SetRate rate", rate); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckBurst("TokenBucket::SetRate burst", burst);
      !s.ok()) {
    return s;
  }
  std::lock_guard<std::mutex> lock(set_rate_mu_);
  const uint64_t old_params = state_.params.load(std::memory_order_acquire);
  const uint64_t new_params = Pack(rate, burst);
  double old_rate;
  double old_burst;
  Unpack(old_params, &old_rate, &old_burst);
  double new_rate;
  double new_burst;
  Unpack(new_params, &new_rate, &new_burst);

  // 1. Mark the change, so consumers stop using the old parameters with a
  //    rebased zero time. 2. Rebase zero time: the balance now, computed
  //    with the old parameters, expressed in the new rate. 3. Publish.
  state_.params.store(old_params | kChangingBit, std::memory_order_release);
  const double now = Seconds(clock_.Now());
  double zero_time = state_.zero_time.load(std::memory_order_acquire);
  for (;;) {
    const double tokens =
        std::min(new_burst, std::min(old_burst, (now - zero_time) * old_rate));
    const double next = now - tokens / new_rate;
    if (state_.zero_time.compare_exchange_weak(zero_time, next,
                                               std::memory_order_acq_rel,
                                               std::memory_order_acquire)) {
      break;
    }
  }
  state_.params.store(new_params, std::memory_order_release);
  rate_gauge_->Set(new_rate);
  burst_gauge_->Set(new_burst);
  return absl::OkStatus();
}

double TokenBucket::rate() const {
  double rate;
  double burst;
  Unpack(state_.params.load(std::memory_order_acquire), &rate, &burst);
  return rate;
}

double TokenBucket::burst() const {
  double rate;
  double burst;
  Unpack(state_.params.load(std::memory_order_acquire), &rate, &burst);
  return burst;
}

}  // namespace spillway
