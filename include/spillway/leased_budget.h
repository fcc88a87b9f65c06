// LeasedBudget: a fleet-wide write budget, admitted from a local lease.
//
// Every instance of a service holds one LeasedBudget per budget key. The
// budget itself — `rate` writes per second with bursts of `burst`, for the
// whole fleet — lives in a shared store (`spillway/budget_store.h`; Redis
// through `spillway::redis::GlobalBudget`). An instance never asks the store
// per write: it takes tokens in chunks (a lease) and admits from the lease
// with one compare-exchange. A refresh thread calls `Refresh()` every
// `refresh_interval` to top the lease up before it runs dry.
//
//   // Usually built for you by spillway::redis::GlobalBudget::Budget().
//   auto budget = spillway::LeasedBudget::Create(
//       {.key = "orders", .spec = {.rate = 5000, .burst = 500}}, &store);
//   spillway::Rejection why;
//   if (!(*budget)->TryAcquire(1, &why)) return Unavailable(why.ToString());
//
// The algorithm (lease sizing): at each refresh the budget measures its
// demand — tokens asked for per second, admitted or refused: what the
// instance would use (admit calls per second when every write costs 1) —
// and tops the lease up to
//     target = clamp(ceil(demand * refresh_interval * lease_headroom),
//                    min_lease, max_lease)
// where
//     rate   = tokens asked for since the last measurement / its duration
//     ewma  += (1 - exp(-duration / 1 s)) * (rate - ewma)
//     demand = max(rate, ewma)
// so demand rises at once and decays smoothly (1 s time constant). Before
// the first measurement demand is the fair share, rate / fleet size, so a
// cold instance's first lease is already useful. A lease already at its
// target costs no store call, so an idle instance makes none; a lease is
// never topped up above its target.
//
// Sampling: demand is measured at a refresh once at least half a refresh
// interval has passed since the previous measurement; an earlier refresh
// (say a RefreshNow() just after the scheduled one) reuses the previous
// estimate rather than measure a burst over a few microseconds.
//
// Overshoot bound: the store grants at most rate * T + burst tokens over any
// time T (a token bucket). Admitted writes in T are those grants plus what
// the instances held at the start, at most max_lease each, so in shared
// mode the fleet admits at most
//     rate * T + burst + fleet_size * max_lease
// writes in any T. `OvershootBound()` returns ceil(burst) + fleet_size *
// max_lease and the gauge `spillway_budget_overshoot_bound_tokens` exports
// it. A request of cost above max_lease can never be admitted from a lease:
// it is refused with an infinite retry-after.
//
// Fail modes: any store error (unreachable, slower than its timeout, a key of
// the wrong type, refused credentials, a grant outside [0, want]) switches
// the budget at that refresh — so within one refresh interval plus the
// store's command timeout of the store failing — to `fail_mode`:
//   kSafeShare (default)  admit from a local token bucket of rate / N and
//                         burst / N (at least 1), N the last known fleet size
//                         (`SetFleetSize`, fed by the fleet registry;
//                         `fallback_fleet_size` until then);
//   kFailOpen             admit everything (local gates still apply);
//   kFailClosed           refuse everything (reason budget_unavailable).
// The lease is dropped on the switch (its tokens are lost, never admitted
// twice). Refreshes keep probing the store, asking for a full target; the
// first that succeeds resumes the shared budget. Each switch is one log line
// (a warning on the way down, naming the key, the error and the new mode;
// an info line on the way back, with how long the fallback lasted) and the
// gauge `spillway_budget_mode{mode=...}`; errors while already failed log
// nothing.
//
// Metrics: admitted and rejected with gate="global_budget", priority="any",
// one per call whatever its cost; lease tokens, lease target, max lease,
// overshoot bound, mode, refreshes by result (names in
// spillway/metric_names.h; `throttle` = `key`). Every series is bound at
// construction.
//
// Locking: `TryAcquire` and `Return` are lock-free and allocation-free: in
// shared mode a compare-exchange on the lease plus one counter increment on
// the same cache line; in safe-share mode the token bucket's
// compare-exchange. The clock is read only to compute a refusal's
// retry-after (and by the safe-share bucket). `Refresh` serializes on one
// mutex, held across the store call; `SetFleetSize` and `last_error` take a
// second one, never held across the store call, so they never wait on the
// store. The hot path touches neither.
//
// Thread safety: all methods are thread-safe. `Refresh` is meant for one
// refresh thread; concurrent calls are serialized.

#ifndef SPILLWAY_LEASED_BUDGET_H_
#define SPILLWAY_LEASED_BUDGET_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "spillway/budget_store.h"
#include "spillway/clock.h"
#include "spillway/log.h"
#include "spillway/metrics.h"
#include "spillway/rejection.h"
#include "spillway/token_bucket.h"

namespace spillway {

// What a budget does while its store is unreachable.
enum class FailMode : uint8_t {
  kSafeShare = 0,
  kFailOpen = 1,
  kFailClosed = 2
};

// The mode a budget admits in now.
enum class BudgetMode : uint8_t {
  kShared = 0,      // From the lease (the store answers).
  kSafeShare = 1,   // Fallback: rate / fleet size, locally.
  kFailOpen = 2,    // Fallback: admit all.
  kFailClosed = 3,  // Fallback: refuse all.
};
inline constexpr int kNumBudgetModes = 4;

// "shared", "safe_share", "fail_open", "fail_closed": the `mode` metric
// label. Thread-safe.
absl::string_view BudgetModeName(BudgetMode mode);

struct LeasedBudgetOptions {
  // The budget's key in the store, and its `throttle` metric label.
  // Default: "default". REQUIRES: 1 to 200 printable ASCII characters.
  std::string key = "default";

  // Fleet-wide rate and burst. Default: 1000/s, burst 100.
  // REQUIRES: see BudgetSpec.
  BudgetSpec spec;

  // How often the owner calls Refresh(). Default: 100 ms.
  // REQUIRES: in [1 ms, 10 s].
  absl::Duration refresh_interval = absl::Milliseconds(100);

  // Smallest lease target, tokens. Default: 1. REQUIRES: in [1, 1e9].
  int64_t min_lease = 1;

  // Largest lease, tokens. Default: 0, meaning max(min_lease,
  // min(burst, ceil(rate * refresh_interval))): no instance holds more than
  // one refresh interval of the whole fleet's budget.
  // REQUIRES: 0, or in [min_lease, 1e9].
  int64_t max_lease = 0;

  // Lease target as a multiple of one refresh interval of demand.
  // Default: 1.5. REQUIRES: in [1, 10].
  double lease_headroom = 1.5;

  // What to do while the store is unreachable. Default: kSafeShare.
  FailMode fail_mode = FailMode::kSafeShare;

  // Fleet size assumed by kSafeShare until SetFleetSize() is called.
  // Default: 1 (each instance may admit the whole budget while the store is
  // down: set it, or attach a FleetRegistry). REQUIRES: >= 1.
  int fallback_fleet_size = 1;

  // Time source. Default: nullptr, meaning SteadyClock::Default().
  // REQUIRES: when set, outlives the budget.
  Clock* clock = nullptr;

  // Where decisions and state are reported. Default: nullptr, meaning
  // NoopMetricsSink(). REQUIRES: when set, outlives the budget.
  MetricsSink* metrics = nullptr;

  // Where mode switches are logged. Default: nullptr, meaning
  // DefaultLogSink(). REQUIRES: when set, outlives the budget.
  LogSink* log = nullptr;
};

// Checks every field; the error names the field and its value. Thread-safe.
absl::Status ValidateLeasedBudgetOptions(const LeasedBudgetOptions& options);

class LeasedBudget {
 public:
  // Validates `options` and builds a budget in shared mode with an empty
  // lease (the first Refresh() fills it). `store` must outlive the budget.
  // Thread-safe.
  static absl::StatusOr<std::unique_ptr<LeasedBudget>> Create(
      const LeasedBudgetOptions& options, BudgetStore* store);

  ~LeasedBudget();
  LeasedBudget(const LeasedBudget&) = delete;
  LeasedBudget& operator=(const LeasedBudget&) = delete;

  // Admits a write of cost `n` (>= 1) and returns true, or refuses it,
  // returns false and fills `*rejection` (if not null) with gate
  // global_budget, reason budget_exhausted (or budget_unavailable in
  // kFailClosed) and a retry-after: in shared and fail-closed mode the time
  // to the next refresh, or the store's own wait if longer (a tenth of the
  // refresh interval when the refresh is overdue, so refused callers do not
  // spin; infinite when `n > max_lease()`); in safe-share mode the local
  // bucket's exact wait. Never waits on the store. Thread-safe; lock-free.
  bool TryAcquire(int64_t n = 1, Rejection* rejection = nullptr);

  // Gives back `n` tokens of an admitted write that a later gate refused:
  // to the lease in shared mode (never above max_lease), to the local bucket
  // in safe-share mode, nowhere in fail-open and fail-closed mode.
  // Thread-safe; lock-free.
  void Return(int64_t n = 1);

  // One refresh step: measures demand, sizes the lease and, if the lease is
  // below its target (or the budget is in a fail mode), asks the store.
  // Switches mode on failure or recovery. Returns the store's error, or OK.
  // Thread-safe (serialized); for the owner's refresh thread.
  absl::Status Refresh();

  // The live fleet size, for kSafeShare and the overshoot bound.
  // REQUIRES: >= 1 (smaller values are taken as 1). Thread-safe; never
  // waits on the store.
  void SetFleetSize(int fleet_size);

  // State. Thread-safe; the value may be stale at once.
  BudgetMode mode() const;
  int64_t lease_tokens() const;
  int64_t lease_target() const;
  int64_t max_lease() const { return max_lease_; }
  int fleet_size() const;
  // ceil(burst) + fleet size * max_lease.
  int64_t OvershootBound() const;
  // Tokens asked for so far (admitted or refused), and those admitted: the
  // demand the lease is sized from. Admit calls when every write costs 1.
  uint64_t offered() const;
  uint64_t admitted() const;
  // The last store error; OK after a successful refresh. Thread-safe; never
  // waits on the store.
  absl::Status last_error() const;

  const std::string& key() const { return key_; }
  const BudgetSpec& spec() const { return spec_; }
  absl::Duration refresh_interval() const { return refresh_interval_; }

 private:
  // The refresh bookkeeping, its mutexes and the handles only Refresh and
  // SetFleetSize use (lib/core/leased_budget.cc): cold state, kept out of
  // this header so its ABSL_GUARDED_BY annotations can name the library's
  // private mutex type.
  struct Control;

  LeasedBudget(const LeasedBudgetOptions& options, BudgetStore* store,
               int64_t max_lease, std::unique_ptr<TokenBucket> safe_share);

  // Counts an admission of `n` tokens; returns true.
  bool Admit(int64_t n);
  // Counts a refusal of `n` tokens, fills `*rejection` (if not null) and
  // returns false. `retry_after` is only read when `rejection` is set.
  bool Refuse(int64_t n, Reason reason, absl::Duration retry_after,
              Rejection* rejection);
  // Time from now to `retry_at_ns_`, never negative. Reads the clock.
  absl::Duration RetryAfterNow() const;
  // Clock time as nanoseconds since the clock's epoch.
  static int64_t Nanos(MonotonicTime t);

  // Immutable after construction; read by every call, so they share no
  // cache line with a member written per call.
  const std::string key_;
  const BudgetSpec spec_;
  const absl::Duration refresh_interval_;
  const int64_t max_lease_;
  Clock& clock_;
  BudgetStore& store_;
  // The kSafeShare fallback: rate / N, burst / N (at least 1), reporting to
  // the no-op sink (this budget reports its decisions itself). Its own
  // atomics are lock-free; SetFleetSize changes its rate.
  const std::unique_ptr<TokenBucket> safe_share_;
  // False for the no-op sink: the hot path then skips reporting with one
  // predictable branch instead of virtual calls that do nothing.
  const bool report_;
  // Decision counters, bound once at construction: admitted, rejected as
  // budget_exhausted, rejected as budget_unavailable.
  CounterHandle* const admitted_metric_;
  CounterHandle* const exhausted_metric_;
  CounterHandle* const unavailable_metric_;

  // Read by every call, written only by Refresh (at most once per refresh):
  // the line stays shared in every core's cache.
  //   mode_         the mode admissions use now (a BudgetMode). Atomic
  //                 because the hot path reads it without a lock; Refresh
  //                 stores it with release after filling the lease.
  //   retry_at_ns_  clock time (ns) a refused caller should wait for: the
  //                 next refresh, or the store's own wait if later. Read
  //                 only on refusals.
  alignas(128) std::atomic<BudgetMode> mode_{BudgetMode::kShared};
  std::atomic<int64_t> retry_at_ns_{0};

  // Written by every admission in shared mode, so alone on their line:
  //   lease_            tokens held locally; compare-exchanged down by
  //                     TryAcquire and up by Return (capped at max_lease),
  //                     raised by Refresh's grants, set to 0 on a fall-back
  //                     and before each probe while failed.
  //   admitted_tokens_  tokens admitted so far, in every mode. A relaxed
  //                     fetch_add on the line the compare-exchange just took
  //                     exclusive: one cache-line transfer per admission,
  //                     not two (a line of its own would travel too).
  alignas(128) std::atomic<int64_t> lease_{0};
  std::atomic<uint64_t> admitted_tokens_{0};

  // Tokens refused so far, in every mode (relaxed fetch_add). On its own
  // line: refusals happen while the lease is dry, and must not invalidate
  // the lease's line in the cores still admitting from it.
  alignas(128) std::atomic<uint64_t> refused_tokens_{0};

  // Written by Refresh / SetFleetSize only, read by the getters; atomic so
  // the getters need no lock. Apart from the hot lines above.
  //   target_      the lease target of the last refresh.
  //   fleet_size_  the last known fleet size (SetFleetSize), >= 1.
  alignas(128) std::atomic<int64_t> target_{0};
  std::atomic<int> fleet_size_{1};
  const std::unique_ptr<Control> control_;
};

}  // namespace spillway

#endif  // SPILLWAY_LEASED_BUDGET_H_
