#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"
#include "spillway/aimd_limit.h"
#include "spillway/fixed_limit.h"

namespace spillway {

absl::StatusOr<std::unique_ptr<FixedLimit>> FixedLimit::Create(int limit) {
  if (limit < 1 || limit > kMaxConcurrencyLimit) {
    return absl::InvalidArgumentError(
        absl::StrFormat("FixedLimit limit must be in [1, %d]; got %d",
                        kMaxConcurrencyLimit, limit));
  }
  return std::unique_ptr<FixedLimit>(new FixedLimit(limit));
}

absl::Status ValidateAimdLimitOptions(const AimdLimitOptions& o) {
  if (o.min_limit < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "AimdLimitOptions.min_limit must be >= 1; got %d", o.min_limit));
  }
  if (o.max_limit < o.min_limit || o.max_limit > kMaxConcurrencyLimit) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "AimdLimitOptions.max_limit must be in [min_limit=%d, %d]; got %d",
        o.min_limit, kMaxConcurrencyLimit, o.max_limit));
  }
  if (o.initial_limit < o.min_limit || o.initial_limit > o.max_limit) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "AimdLimitOptions.initial_limit must be in [min_limit=%d, "
        "max_limit=%d]; got %d",
        o.min_limit, o.max_limit, o.initial_limit));
  }
  if (!(o.backoff_ratio >= 0.5 && o.backoff_ratio < 1.0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "AimdLimitOptions.backoff_ratio must be in [0.5, 1); got %g",
        o.backoff_ratio));
  }
  if (o.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("AimdLimitOptions.timeout must be > 0; got %s",
                        absl::FormatDuration(o.timeout)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<AimdLimit>> AimdLimit::Create(
    const AimdLimitOptions& options) {
  if (absl::Status s = ValidateAimdLimitOptions(options); !s.ok()) return s;
  return std::unique_ptr<AimdLimit>(new AimdLimit(options));
}

AimdLimit::AimdLimit(const AimdLimitOptions& options)
    : Limit(options.initial_limit),
      options_(options),
      timeout_(absl::ToChronoNanoseconds(options.timeout)) {}

int AimdLimit::Step(int limit, const LimitSample& sample) const {
  if (sample.dropped || sample.rtt > timeout_) {
    limit = static_cast<int>(limit * options_.backoff_ratio);
  } else if (static_cast<int64_t>(sample.in_flight) * 2 >= limit) {
    limit = limit + 1;
  }
  return std::clamp(limit, options_.min_limit, options_.max_limit);
}

void AimdLimit::OnSample(const LimitSample& sample) {
  int limit = current();
  for (;;) {
    const int next = Step(limit, sample);
    if (next == limit || CompareExchangeLimit(limit, next)) return;
  }
}

}  // namespace spillway
