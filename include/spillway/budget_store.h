// BudgetStore: the shared store behind a fleet-wide write budget.
//
// A fleet-wide budget (`LeasedBudget`) keeps a rate and burst shared by every
// instance of a service in a store all of them reach — Redis, through
// `spillway::redis::GlobalBudget`. The store is asked for tokens in chunks
// (leases), never per write; this interface is the one call the lease
// machinery makes, so the core stays free of any client library and the
// lease logic is tested against a fake store on simulated time.
//
//   class MyStore final : public spillway::BudgetStore {
//     absl::StatusOr<Grant> Take(absl::string_view key,
//                                const spillway::BudgetSpec& spec,
//                                int64_t want) override { ... }
//   };
//
// Thread safety: `LeasedBudget` calls `Take` from its refresh thread only
// (one call at a time per budget); an implementation shared by several
// budgets refreshed from one thread need not lock.

#ifndef SPILLWAY_BUDGET_STORE_H_
#define SPILLWAY_BUDGET_STORE_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace spillway {

// A fleet-wide rate budget: `rate` writes per second with bursts of up to
// `burst`, as a token bucket (or the equivalent GCRA) kept by the store.
struct BudgetSpec {
  // Writes per second for the whole fleet. REQUIRES: finite, > 0, <= 1e9.
  double rate = 1000.0;
  // Largest burst, writes. REQUIRES: finite, >= 1, <= 1e9.
  double burst = 100.0;
};

class BudgetStore {
 public:
  virtual ~BudgetStore() = default;

  struct Grant {
    // Tokens granted, in [0, want]: the store grants what it holds, so a
    // partial grant is normal near the budget's limit.
    int64_t tokens = 0;
    // When `tokens < want`: how long until the store holds one more token,
    // by its own clock. Zero otherwise.
    absl::Duration retry_after = absl::ZeroDuration();
  };

  // Takes up to `want` (>= 1) tokens of the budget `key` with parameters
  // `spec`, by the store's clock. Errors:
  //   Unavailable / DeadlineExceeded  the store is unreachable or too slow;
  //   FailedPrecondition              the key holds something else (e.g. a
  //                                   Redis key of the wrong type);
  //   Unauthenticated                 the store refused our credentials;
  //   Internal                        an error reply (e.g. from a script);
  //   DataLoss                        a reply that makes no sense.
  // Any error switches the budget to its fail mode until a later call
  // succeeds. Thread safety: see the file comment.
  virtual absl::StatusOr<Grant> Take(absl::string_view key,
                                     const BudgetSpec& spec, int64_t want) = 0;
};

}  // namespace spillway

#endif  // SPILLWAY_BUDGET_STORE_H_
