// A rejection: the value an admission gate returns when it turns a write away.
//
// Rejections are values, not exceptions. Each names the gate that refused,
// why, and when a retry has a fair chance:
//
//   spillway::Admission a = limiter->TryAcquire(spillway::Priority::kNormal);
//   if (!a.ok()) {
//     return Unavailable(a.rejection().ToString());  // "concurrency_limit:
//   }                                                 //  limit_reached, ..."
//
// `retry_after` is exact for the token bucket (the time until enough tokens
// have accrued) and an estimate for the concurrency limiter (the smoothed
// latency of recent writes: the time in which the writes now in flight are
// expected to finish).
//
// Thread safety: a plain value type.

#ifndef SPILLWAY_REJECTION_H_
#define SPILLWAY_REJECTION_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace spillway {

// Which admission gate refused.
enum class Gate : uint8_t {
  kConcurrencyLimit = 0,  // ConcurrencyLimiter: too many writes in flight.
  kTokenBucket = 1,       // TokenBucket: local rate or burst exhausted.
  kGlobalBudget = 2,      // Fleet-wide budget (spillway::redis).
};
inline constexpr int kNumGates = 3;

// Why the gate refused.
enum class Reason : uint8_t {
  kLimitReached = 0,       // In-flight writes are at the limit.
  kPartitionLimit = 1,     // The priority's partition is at its maximum share.
  kQueueFull = 2,          // Acquire(): the wait queue is full.
  kDeadlineExceeded = 3,   // Acquire(): the deadline passed while queued.
  kRateLimited = 4,        // Not enough tokens.
  kBudgetExhausted = 5,    // Fleet-wide budget exhausted.
  kPriorityPressure = 6,   // A higher priority was refused moments ago: this
                           // one may not borrow unreserved capacity now.
  kBudgetUnavailable = 7,  // The fleet-wide budget's store is unreachable
                           // and its fail mode is FailClosed.
};
inline constexpr int kNumReasons = 8;

// Stable lower_snake_case names, used as metric label values and in
// `Rejection::ToString()`. Thread-safe.
absl::string_view GateName(Gate gate);
absl::string_view ReasonName(Reason reason);

struct Rejection {
  Gate gate = Gate::kConcurrencyLimit;
  Reason reason = Reason::kLimitReached;
  // When a retry has a fair chance of being admitted. Never negative.
  absl::Duration retry_after = absl::ZeroDuration();

  // "<gate>: <reason>, retry after <duration>". Thread-safe.
  std::string ToString() const;
};

}  // namespace spillway

#endif  // SPILLWAY_REJECTION_H_
