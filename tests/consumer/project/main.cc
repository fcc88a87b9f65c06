// A consumer of an installed spillway: admits one write through each gate.
#include <cstdio>
#include <utility>

#include "spillway/concurrency_limiter.h"
#include "spillway/token_bucket.h"
#ifdef CONSUMER_WITH_REDIS
#include "spillway/redis/global_budget.h"
#endif
#ifdef CONSUMER_WITH_PQXX
#include "spillway/pqxx/throttled_writer.h"
#endif
#ifdef CONSUMER_WITH_TESTING
#include <chrono>

#include "spillway/testing/simulated_clock.h"
#endif
#ifdef CONSUMER_WITH_PROMETHEUS
#include <string>

#include "spillway/prometheus/metrics_sink.h"
#include "spillway/throttle.h"
#endif

int main() {
  auto bucket = spillway::TokenBucket::Create({});
  auto limiter = spillway::ConcurrencyLimiter::Create({});
  if (!bucket.ok() || !limiter.ok()) {
    std::fprintf(stderr, "create failed\n");
    return 1;
  }
  if (!(*bucket)->TryConsume()) return 1;
  spillway::Admission a = (*limiter)->TryAcquire();
  if (!a.ok()) return 1;
  spillway::Permit permit = std::move(a).permit();
  permit.Success();
  std::printf("consumer: admitted one write, limit %d\n", (*limiter)->limit());
#ifdef CONSUMER_WITH_REDIS
  // Links spillway::redis (and hiredis through it); no server needed.
  spillway::redis::GlobalBudgetOptions fleet;
  fleet.redis.port = 0;
  if (spillway::redis::ValidateGlobalBudgetOptions(fleet).ok()) return 1;
  std::printf("consumer: spillway::redis linked\n");
#endif
#ifdef CONSUMER_WITH_PQXX
  // Links spillway::pqxx (and libpqxx through it); no server needed.
  if (spillway::pqxx::ValidateThrottledWriterOptions({}).ok()) return 1;
  std::printf("consumer: spillway::pqxx linked\n");
#endif
#ifdef CONSUMER_WITH_TESTING
  spillway::testing::SimulatedClock clock;
  const spillway::MonotonicTime t0 = clock.Now();
  clock.Advance(absl::Seconds(1));
  if (clock.Now() - t0 != std::chrono::seconds(1)) return 1;
  std::printf("consumer: spillway::testing linked\n");
#endif
#ifdef CONSUMER_WITH_PROMETHEUS
  // Links spillway::prometheus (and prometheus-cpp through it).
  auto sink = spillway::prometheus::PrometheusMetricsSink::Create();
  spillway::WriteThrottleOptions options;
  options.name = "consumer";
  options.metrics = sink.get();
  auto throttle = spillway::WriteThrottle::Create(std::move(options));
  if (!throttle.ok()) return 1;
  (*throttle)->Admit().permit().Success();
  const std::string text = spillway::prometheus::ExpositionText(*sink);
  if (text.find("spillway_admitted_total{") == std::string::npos) return 1;
  std::printf("consumer: spillway::prometheus linked\n");
#endif
  return (*limiter)->in_flight() == 0 ? 0 : 1;
}
