#include "spillway/rejection.h"

#include "absl/strings/str_format.h"

namespace spillway {

absl::string_view GateName(Gate gate) {
  switch (gate) {
    case Gate::kConcurrencyLimit:
      return "concurrency_limit";
    case Gate::kTokenBucket:
      return "token_bucket";
    case Gate::kGlobalBudget:
      return "global_budget";
  }
  return "unknown";
}

absl::string_view ReasonName(Reason reason) {
  switch (reason) {
    case Reason::kLimitReached:
      return "limit_reached";
    case Reason::kPartitionLimit:
      return "partition_limit";
    case Reason::kQueueFull:
      return "queue_full";
    case Reason::kDeadlineExceeded:
      return "deadline_exceeded";
    case Reason::kRateLimited:
      return "rate_limited";
    case Reason::kBudgetExhausted:
      return "budget_exhausted";
    case Reason::kPriorityPressure:
      return "priority_pressure";
    case Reason::kBudgetUnavailable:
      return "budget_unavailable";
  }
  return "unknown";
}

std::string Rejection::ToString() const {
  return absl::StrFormat("%s: %s, retry after %s", GateName(gate),
                         ReasonName(reason), absl::FormatDuration(retry_after));
}

}  // namespace spillway
