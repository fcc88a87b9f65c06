// Contenders: the overload protections the simulator compares.
//
// A contender is a name and a factory. The simulation calls the factory
// once per service instance and builds a real spillway::ConcurrencyLimiter
// from the options it returns (the simulation sets `name`, `clock` and
// `metrics` itself; everything else — the limit algorithm, partitions — is
// the contender's). Every instance gets its own limit object: limits are
// local to a process, as in production.
//
// Registered contenders, in report order:
//
//   none   No protection: FixedLimit(kMaxConcurrencyLimit) — every write is
//          admitted, the limiter only measures.
//   fixed  FixedLimit(kBestFixedLimit) per instance: the best fixed limit
//          for the `steady` scenario, found by the sweep below.
//   aimd   AimdLimit with timeout = deadline / 10 (100 ms with the default
//          1 s deadline) and min_limit = 1; other fields at their defaults
//          (initial 20, max 200, backoff 0.9). A tenth of the deadline is
//          20 times the unloaded write time (5 ms), so normal variation does
//          not trip it, and it backs off long before clients give up. A
//          timeout of the whole deadline would let AIMD grow until
//          clients time out, which is the collapse itself.
//
// The fixed-limit sweep (`spillway_sim --sweep_fixed`): run `steady` (70%
// of peak, even weights, seed 1) with FixedLimit(L) on every instance for
// L = 1..16, and pick the L with the best goodput, where goodputs within
// 0.5% (relative) of the sweep's best count as equal (that is Poisson
// noise), then the lowest p99, then the lowest L. With the default database,
// clients and 8 instances the result is kBestFixedLimit; rerun the sweep and
// update the constant when those defaults change. The sweep's table:
//
//   L          1     2     3     4     6     8    >= 9
//   goodput %  56.3  69.2  69.8  69.6  69.5  69.6  69.5-69.6
//   p99 ms     7.0   9.2   10.9  11.9  12.7  14.3  13.6-13.9
//   rejected % 66.8  27.5  7.8   2.2   0.6   0.04  0
//
// L = 1 and 2 lose goodput (writes give up after four rejections); from
// L = 3 on goodput is flat and p99 grows with L, so L = 3 (24 in all, about
// N*) wins. Rejected writes are retried, so its 7.8% rejections cost
// latency the table does not show (admitted latency only). Note that with
// the default partitions a limit L leaves floor(0.2 L) slots reserved for
// critical writes, so normal writes see L - floor(0.2 L): L = 5 behaves as
// L = 4.
//
// Adding a contender is one line in the table in contenders.cc:
//
//   {"aimd_fast", "AimdLimit, backoff 0.5", [](const ContenderContext&) {
//      return WithLimit(AimdLimit::Create({.backoff_ratio = 0.5}));
//    }},
//
// (a factory function works as well as a lambda). A factory sees the
// ContenderContext, so a limit may depend on the deadline or the fleet size.
//
// Thread safety: the registry is immutable after first use; thread-safe.

#ifndef SPILLWAY_BENCH_SIM_CONTENDERS_H_
#define SPILLWAY_BENCH_SIM_CONTENDERS_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "spillway/concurrency_limiter.h"
#include "spillway/limit.h"
#include "spillway/write_rate.h"

namespace spillway::sim {

// The per-instance limit of the `fixed` contender (see the sweep above).
inline constexpr int kBestFixedLimit = 3;

// What a factory may know about the system it protects.
struct ContenderContext {
  // Which instance the limiter is for, in [0, instances).
  int instance = 0;
  int instances = 1;
  // The database's peak at full capacity (writes/s) and N*.
  double database_peak = 0.0;
  double peak_concurrency = 0.0;
  // The clients' deadline per attempt.
  absl::Duration deadline = absl::Seconds(1);
  // The database's count of completed writes from every instance (what
  // pqxx::TransactionCounter reads from PostgreSQL), for limits that ask
  // what throughput a step bought.
  std::shared_ptr<const DatabaseWriteRate> database_rate;
};

using ContenderFactory =
    std::function<absl::StatusOr<ConcurrencyLimiterOptions>(
        const ContenderContext&)>;

struct Contender {
  // Name in reports and on the command line.
  std::string name;
  // One line for the report's legend.
  std::string description;
  ContenderFactory factory;
};

// Every registered contender, in report order. Thread-safe.
const std::vector<Contender>& Contenders();

// The registered contender called `name`, or nullptr. Thread-safe.
const Contender* FindContender(absl::string_view name);

// A contender with FixedLimit(per_instance_limit) on every instance, named
// "fixed<limit>": the sweep's candidates. Thread-safe.
Contender FixedContender(int per_instance_limit);

// Limiter options with default partitions and `limit` as the algorithm: a
// factory's one-liner. Passes an error through. Thread-safe.
template <typename L>
absl::StatusOr<ConcurrencyLimiterOptions> WithLimit(
    absl::StatusOr<std::unique_ptr<L>> limit) {
  if (!limit.ok()) return limit.status();
  ConcurrencyLimiterOptions options;
  options.limit = std::shared_ptr<Limit>(std::move(*limit));
  return options;
}

}  // namespace spillway::sim

#endif  // SPILLWAY_BENCH_SIM_CONTENDERS_H_
