// spillway_redis_bench: a fleet-wide budget admitted from a local lease,
// against the usual approach of one Redis round trip per write.
//
//   BM_GlobalBudget_Admit      GlobalBudget: admit from the lease; a
//                              background thread refreshes it from Redis
//                              every 100 ms.
//   BM_EvalshaPerWrite_Admit   one EVALSHA of the same GCRA script per
//                              write, as go-redis/redis_rate does.
//
// Each row reports items_per_second (admitted writes per second) and
// redis_rtt_per_admit (Redis round trips per admitted write). The argument
// is the budget's rate: 1e9/s never binds, so the row measures the
// admission path at saturation; 1e5/s binds, so most calls are refused and
// admitted writes run at the budget's rate.
//
// Redis address: SPILLWAY_REDIS_ADDR ("host:port"; default 127.0.0.1:6379).
// scripts/with_redis.sh starts a throwaway redis-server on loopback and
// sets it:   scripts/with_redis.sh build-plain/bench/spillway_redis_bench
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "redis/connection.h"
#include "redis/scripts.h"
#include "spillway/redis/global_budget.h"
#include "spillway/testing/in_memory_metrics.h"

namespace spillway::bench {
namespace {

redis::RedisOptions RedisFromEnv() {
  redis::RedisOptions o;
  const char* addr = std::getenv("SPILLWAY_REDIS_ADDR");
  if (addr != nullptr && *addr != '\0') {
    std::pair<std::string, std::string> hp =
        absl::StrSplit(addr, absl::MaxSplits(':', 1));
    o.host = hp.first;
    if (!absl::SimpleAtoi(hp.second, &o.port)) o.port = 0;  // Refused below.
  }
  // A benchmark on loopback may see a scheduling hiccup; do not let one
  // reply slower than 25 ms flip the budget into its fail mode.
  o.command_timeout = absl::Milliseconds(50);
  return o;
}

void BM_GlobalBudget_Admit(benchmark::State& state) {
  const double rate = static_cast<double>(state.range(0));
  testing::InMemoryMetricsSink sink;
  redis::GlobalBudgetOptions o;
  o.redis = RedisFromEnv();
  o.refresh_interval = absl::Milliseconds(100);
  o.metrics = &sink;
  auto fleet = redis::GlobalBudget::Create(o);
  if (!fleet.ok()) {
    state.SkipWithError(fleet.status().ToString().c_str());
    return;
  }
  const std::string key = absl::StrCat("bench-global-", state.range(0));
  auto budget = (*fleet)->Budget(
      key, {.spec = {.rate = rate, .burst = std::min(1e9, rate / 10)}});
  if (!budget.ok()) {
    state.SkipWithError(budget.status().ToString().c_str());
    return;
  }
  LeasedBudget& b = **budget;
  if (!(*fleet)->RefreshNow().ok() || b.mode() != BudgetMode::kShared) {
    state.SkipWithError(
        absl::StrCat("Redis unreachable at ", o.redis.host, ":", o.redis.port)
            .c_str());
    return;
  }
  const double calls_before =
      sink.CounterSum("spillway_budget_refreshes_total", {{"throttle", key}});
  int64_t admitted = 0;
  for (auto _ : state) {
    admitted += b.TryAcquire() ? 1 : 0;
  }
  const double calls =
      sink.CounterSum("spillway_budget_refreshes_total", {{"throttle", key}}) -
      calls_before;
  state.SetItemsProcessed(admitted);
  state.counters["redis_rtt_per_admit"] =
      admitted > 0 ? calls / static_cast<double>(admitted) : 0;
  state.counters["admitted_pct"] = 100.0 * static_cast<double>(admitted) /
                                   static_cast<double>(state.iterations());
  if (b.mode() != BudgetMode::kShared) {
    state.SkipWithError("the budget left shared mode during the run");
  }
}

void BM_EvalshaPerWrite_Admit(benchmark::State& state) {
  const redis::RedisOptions o = RedisFromEnv();
  internal::RedisConnection conn(o, SteadyClock::Default());
  if (absl::Status s = conn.Connect(); !s.ok()) {
    state.SkipWithError(s.ToString().c_str());
    return;
  }
  internal::RedisScript script{std::string(internal::kGcraScript)};
  const std::string keys[] = {absl::StrCat(o.key_prefix, ":{bench-evalsha-",
                                           state.range(0), "}:budget")};
  const double rate = static_cast<double>(state.range(0));
  const std::string args[] = {absl::StrCat(rate),
                              absl::StrCat(std::min(1e9, rate / 10)), "1"};
  int64_t admitted = 0;
  int64_t calls = 0;
  for (auto _ : state) {
    absl::StatusOr<internal::RedisReply> reply = conn.Eval(script, keys, args);
    ++calls;
    if (!reply.ok()) {
      state.SkipWithError(reply.status().ToString().c_str());
      break;
    }
    admitted += reply->elements.empty() ? 0 : reply->elements[0].integer;
  }
  state.SetItemsProcessed(admitted);
  state.counters["redis_rtt_per_admit"] =
      admitted > 0 ? static_cast<double>(calls) / admitted : 0;
  state.counters["admitted_pct"] =
      calls > 0 ? 100.0 * static_cast<double>(admitted) / calls : 0;
}

BENCHMARK(BM_GlobalBudget_Admit)
    ->ArgName("rate")
    ->Arg(1000000000)
    ->Arg(100000)
    ->UseRealTime();
BENCHMARK(BM_EvalshaPerWrite_Admit)
    ->ArgName("rate")
    ->Arg(1000000000)
    ->Arg(100000)
    ->UseRealTime();

}  // namespace
}  // namespace spillway::bench

BENCHMARK_MAIN();
