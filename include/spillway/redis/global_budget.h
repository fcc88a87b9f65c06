// GlobalBudget: fleet-wide write budgets shared through one Redis.
//
// A service fleet that writes to one database needs one write budget for
// all of its instances, or a misrouted balancer overloads the database even
// though every instance respects its local limits. GlobalBudget keeps such
// budgets — `rate` writes per second with bursts of `burst`, per key (a
// table, a tenant) — in Redis, and hands each key out as a `LeasedBudget`
// (spillway/leased_budget.h): writes are admitted from a local lease with
// one compare-exchange, and a background thread tops the lease up from
// Redis before it runs dry. No write ever waits on Redis.
//
//   auto fleet = spillway::redis::GlobalBudget::Create(
//       {.redis = {.host = "10.0.0.7"}, .registry = registry.get()});
//   spillway::LeasedBudget* orders =
//       *(*fleet)->Budget("orders", {.spec = {.rate = 5000, .burst = 500}});
//   spillway::Rejection why;
//   if (!orders->TryAcquire(1, &why)) return Unavailable(why.ToString());
//
// The shared state: a GCRA (generic cell rate algorithm, the token bucket
// written as one "theoretical arrival time"; ATM Forum TM 4.0, and
// Brandur Leach's "Rate limiting, cells and GCRA") in the Redis string
// `<prefix>:{<key>}:budget`, run by a Lua script that reads Redis `TIME` —
// the server's clock, never the clients'. With emission interval T = 1/rate
// and tolerance tau = burst * T, a request for `want` tokens at server time
// `now` grants
//     room  = floor((now + tau - max(tat, now)) / T)
//     grant = min(want, max(room, 0)),  tat' = max(tat, now) + grant * T,
// so the fleet is granted at most rate * t + burst tokens in any time t.
// The key expires once the bucket would be full again (idle budgets cost
// Redis nothing). The script runs by EVALSHA and is reloaded transparently
// on NOSCRIPT (first use, SCRIPT FLUSH, a restarted or failed-over Redis).
// Commands are argv vectors, never formatted strings.
//
// Overshoot: leases are taken ahead of use, so over any time t the fleet
// admits at most rate * t + burst + fleet_size * max_lease writes;
// `LeasedBudget::OvershootBound()` and the gauge
// `spillway_budget_overshoot_bound_tokens` give burst + fleet_size *
// max_lease. max_lease defaults to one refresh interval of the whole
// budget (at most burst).
//
// Sizing: one refresh takes at most min(burst, max_lease) tokens, so an
// instance admits at most that many per refresh interval. Choose burst >=
// rate * refresh_interval (one interval of the whole fleet's rate; 100 ms
// by default): a smaller burst caps each instance at burst /
// refresh_interval writes per second, and a fleet of N below N times that.
//
// Failure: when Redis is unreachable, slower than `redis.command_timeout`,
// or the key holds a value of another type, the budget falls back at that
// refresh (within refresh_interval + command_timeout of the failure) to
// its fail mode: SafeShare (default; rate / live instances from the
// FleetRegistry), FailOpen or FailClosed — one log line and the gauge
// `spillway_budget_mode`. The connection reconnects with backoff
// (25 ms doubling to 500 ms by default), and the first refresh that
// succeeds resumes the shared budget.
//
// Keys: up to `max_budgets` per GlobalBudget, all refreshed by its one
// thread over its one connection. Each budget is a few hundred bytes here
// and one small string in Redis while in use.
//
// Threads: Create starts one refresh thread (its own Redis connection); the
// destructor stops and joins it (at most one Redis timeout).
//
// Thread safety: all methods are thread-safe. `Budget` locks: call it once
// per key and keep the pointer; the LeasedBudget's admit path is lock-free.

#ifndef SPILLWAY_REDIS_GLOBAL_BUDGET_H_
#define SPILLWAY_REDIS_GLOBAL_BUDGET_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "spillway/budget_store.h"
#include "spillway/clock.h"
#include "spillway/leased_budget.h"
#include "spillway/log.h"
#include "spillway/metrics.h"
#include "spillway/redis/redis_options.h"

namespace spillway::redis {

class FleetRegistry;

// Per-key settings; see LeasedBudgetOptions for each field's meaning.
struct BudgetOptions {
  // Fleet-wide rate and burst. Default: 1000/s, burst 100.
  BudgetSpec spec;
  // Default: 1. REQUIRES: >= 1.
  int64_t min_lease = 1;
  // Default: 0, meaning min(burst, one refresh interval of `rate`).
  int64_t max_lease = 0;
  // Default: 1.5. REQUIRES: in [1, 10].
  double lease_headroom = 1.5;
};

struct GlobalBudgetOptions {
  // Redis connection. Default: see RedisOptions (127.0.0.1:6379).
  RedisOptions redis;

  // Value of the `throttle` label of `spillway_redis_errors_total`.
  // Default: "global_budget". REQUIRES: not empty.
  std::string name = "global_budget";

  // Time between lease refreshes. Default: 100 ms.
  // REQUIRES: in [1 ms, 10 s], and > redis.command_timeout.
  absl::Duration refresh_interval = absl::Milliseconds(100);

  // What budgets do while Redis is unreachable. Default: kSafeShare.
  FailMode fail_mode = FailMode::kSafeShare;

  // Fleet size for kSafeShare while the registry knows none (or there is no
  // registry). Default: 1. REQUIRES: >= 1.
  int fallback_fleet_size = 1;

  // Most keys this GlobalBudget serves; Budget() refuses more with
  // ResourceExhausted. Default: 1024. REQUIRES: in [1, 1000000].
  int max_budgets = 1024;

  // Optional fleet registry: gives the live fleet size for kSafeShare and
  // the overshoot bound, and receives this instance's admit counts (summed
  // over every key) at each refresh. Default: nullptr.
  // REQUIRES: when set, outlives the GlobalBudget.
  FleetRegistry* registry = nullptr;

  // Time source. Default: nullptr, meaning SteadyClock::Default().
  // REQUIRES: when set, outlives the GlobalBudget.
  Clock* clock = nullptr;

  // Default: nullptr, meaning NoopMetricsSink(). REQUIRES: outlives it.
  MetricsSink* metrics = nullptr;

  // Default: nullptr, meaning DefaultLogSink(). REQUIRES: outlives it.
  LogSink* log = nullptr;
};

// Checks every field; the error names the field and its value. Thread-safe.
absl::Status ValidateGlobalBudgetOptions(const GlobalBudgetOptions& options);

class GlobalBudget {
 public:
  // Validates `options`, connects to Redis (authenticating and selecting
  // the database) and starts the refresh thread. Errors: InvalidArgument
  // for options, Unauthenticated when Redis refuses the credentials,
  // InvalidArgument when it refuses the database. An unreachable Redis is
  // not an error: budgets start in their fail mode and recover when Redis
  // answers. Thread-safe.
  static absl::StatusOr<std::unique_ptr<GlobalBudget>> Create(
      const GlobalBudgetOptions& options);

  // Stops and joins the refresh thread. Every LeasedBudget pointer handed
  // out dies with it.
  ~GlobalBudget();
  GlobalBudget(const GlobalBudget&) = delete;
  GlobalBudget& operator=(const GlobalBudget&) = delete;

  // The budget for `key`, created on first use (its first lease is taken at
  // once by the refresh thread). Asking again for the same key returns the
  // same budget; with different options it is InvalidArgument naming the
  // key. ResourceExhausted past max_budgets. The pointer lives as long as
  // this GlobalBudget. Thread-safe; locks.
  absl::StatusOr<LeasedBudget*> Budget(absl::string_view key,
                                       const BudgetOptions& options);

  // Refreshes every budget now, on the caller's thread (the refresh thread
  // does this every refresh_interval). Returns the first error. Thread-safe
  // (serialized with the refresh thread).
  absl::Status RefreshNow();

  // Refresh rounds completed by the thread and RefreshNow so far.
  // Thread-safe.
  int64_t refresh_rounds() const;

  // The Redis key holding `key`'s budget: "<prefix>:{<key>}:budget".
  // Thread-safe.
  std::string RedisKey(absl::string_view key) const;

 private:
  struct State;
  explicit GlobalBudget(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace spillway::redis

#endif  // SPILLWAY_REDIS_GLOBAL_BUDGET_H_
