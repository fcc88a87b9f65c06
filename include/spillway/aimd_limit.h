// AimdLimit: additive-increase / multiplicative-decrease concurrency limit.
//
// Loss-based, as TCP's congestion window: grow by one while writes succeed
// and the limit is actually being used, shrink by a ratio when a write is
// dropped or takes longer than a timeout.
//
//   auto limit = spillway::AimdLimit::Create({.initial_limit = 20});
//
// The algorithm (Netflix concurrency-limits, AIMDLimit.java,
// https://github.com/Netflix/concurrency-limits), per sample:
//     if dropped or rtt > timeout:   limit = floor(limit * backoff_ratio)
//     else if in_flight * 2 >= limit: limit = limit + 1
//     limit = clamp(limit, min_limit, max_limit)
// The `in_flight * 2 >= limit` test keeps the limit still while the
// application does not use it (no growth on an idle limiter).
//
// Sampling: every sample (no windowing); drops and timeouts decrease.
//
// Locking: none. The update is a compare-exchange loop on the published
// limit, so concurrent samples each apply their step exactly once.
//
// Thread safety: all methods are thread-safe and lock-free.

#ifndef SPILLWAY_AIMD_LIMIT_H_
#define SPILLWAY_AIMD_LIMIT_H_

#include <chrono>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "spillway/limit.h"

namespace spillway {

// Defaults are Netflix concurrency-limits' AIMDLimit defaults.
struct AimdLimitOptions {
  // Limit before any sample. Default: 20.
  // REQUIRES: min_limit <= initial_limit <= max_limit.
  int initial_limit = 20;

  // Floor of the limit. Default: 20. REQUIRES: >= 1.
  int min_limit = 20;

  // Ceiling of the limit. Default: 200.
  // REQUIRES: min_limit <= max_limit <= kMaxConcurrencyLimit.
  int max_limit = 200;

  // Factor applied on a drop or timeout. Default: 0.9.
  // REQUIRES: 0.5 <= backoff_ratio < 1.
  double backoff_ratio = 0.9;

  // A successful write slower than this counts as a drop. Default: 5 s.
  // REQUIRES: > 0.
  absl::Duration timeout = absl::Seconds(5);
};

// Checks every field; the error names the field and its value. Thread-safe.
absl::Status ValidateAimdLimitOptions(const AimdLimitOptions& options);

class AimdLimit final : public Limit {
 public:
  // Validates `options` and builds the algorithm. Thread-safe.
  static absl::StatusOr<std::unique_ptr<AimdLimit>> Create(
      const AimdLimitOptions& options);

  // Applies one AIMD step. Thread-safe; lock-free.
  void OnSample(const LimitSample& sample) override;
  // options().max_limit. Thread-safe.
  int max_limit() const override { return options_.max_limit; }
  int min_limit() const override { return options_.min_limit; }

  // The options it was built with. Thread-safe.
  const AimdLimitOptions& options() const { return options_; }

 private:
  explicit AimdLimit(const AimdLimitOptions& options);

  // The next limit after `limit` for `sample`.
  int Step(int limit, const LimitSample& sample) const;

  const AimdLimitOptions options_;
  // options_.timeout, converted once.
  const std::chrono::nanoseconds timeout_;
};

}  // namespace spillway

#endif  // SPILLWAY_AIMD_LIMIT_H_
