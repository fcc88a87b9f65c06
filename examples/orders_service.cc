// orders_service: a small service loop that writes orders to PostgreSQL
// through spillway, as a service would.
//
//   scripts/with_postgres.sh build-plain/examples/orders_service --threads=32
//   scripts/with_redis.sh scripts/with_postgres.sh
//       build-plain/examples/orders_service --fleet_rate=500
//
// Each worker thread owns one connection (a spillway::pqxx::ThrottledWriter)
// and writes orders in a closed loop: insert the order, then update the
// running total of one of a few hot products (real row contention). All
// workers share one spillway::WriteThrottle with the default adaptive limit
// (given the server's write count, for its throughput probe) and, with
// --fleet_rate, a fleet-wide budget shared through Redis
// (spillway::redis::GlobalBudget; start several copies to share it). A
// refused write waits its retry-after, as a well-behaved client would.
// Once a second it prints what happened: writes, refusals by gate, errors,
// the current limit and the overload cause. spillway's metrics are served
// for Prometheus on http://127.0.0.1:9464/metrics
// (spillway::prometheus::PrometheusMetricsSink on a prometheus::Exposer).
//
// Flags: --pg=CONNINFO (default $SPILLWAY_PG_CONN), --threads=16,
// --seconds=10, --fleet_rate=0 (0: no fleet budget), --redis=HOST:PORT
// (default $SPILLWAY_REDIS_ADDR or 127.0.0.1:6379), --metrics_port=9464
// (0: no /metrics), --metrics_bind=127.0.0.1. Loopback servers only.
// Exit codes: 0 done, 1 a runtime error, 2 a bad flag or a busy metrics
// port.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <pqxx/pqxx>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "prometheus/exposer.h"
#include "spillway/knee_limit.h"
#include "spillway/pqxx/throttled_writer.h"
#include "spillway/prometheus/metrics_sink.h"
#include "spillway/redis/global_budget.h"
#include "spillway/throttle.h"
#include "spillway/write_rate.h"

namespace {

struct Flags {
  std::string pg;
  std::string redis = "127.0.0.1:6379";
  int threads = 16;
  int seconds = 10;
  double fleet_rate = 0;
  int metrics_port = 9464;
  std::string metrics_bind = "127.0.0.1";
};

bool Parse(int argc, char** argv, Flags& f) {
  if (const char* env = std::getenv("SPILLWAY_PG_CONN")) f.pg = env;
  if (const char* env = std::getenv("SPILLWAY_REDIS_ADDR"); env && *env) {
    f.redis = env;
  }
  for (int i = 1; i < argc; ++i) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(argv[i], absl::MaxSplits('=', 1));
    bool ok = true;
    if (kv.first == "--pg") {
      f.pg = kv.second;
    } else if (kv.first == "--redis") {
      f.redis = kv.second;
    } else if (kv.first == "--threads") {
      ok = absl::SimpleAtoi(kv.second, &f.threads) && f.threads >= 1 &&
           f.threads <= 256;
    } else if (kv.first == "--seconds") {
      ok = absl::SimpleAtoi(kv.second, &f.seconds) && f.seconds >= 1 &&
           f.seconds <= 3600;
    } else if (kv.first == "--metrics_port") {
      ok = absl::SimpleAtoi(kv.second, &f.metrics_port) &&
           f.metrics_port >= 0 && f.metrics_port <= 65535;
    } else if (kv.first == "--metrics_bind") {
      f.metrics_bind = kv.second;
      ok = !kv.second.empty();
    } else if (kv.first == "--fleet_rate") {
      ok = absl::SimpleAtod(kv.second, &f.fleet_rate) && f.fleet_rate >= 0;
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "orders_service: bad flag %s\n", argv[i]);
      return false;
    }
  }
  if (f.pg.empty()) {
    std::fprintf(stderr,
                 "orders_service: no database: pass --pg=CONNINFO or run "
                 "under scripts/with_postgres.sh\n");
    return false;
  }
  return true;
}

struct Counters {
  std::atomic<long long> ok{0};
  std::array<std::atomic<long long>, spillway::kNumGates> refused{};
  std::atomic<long long> errors{0};
};

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (!Parse(argc, argv, flags)) return 2;

  // Metrics first: a busy port is a configuration error, reported before
  // any database work. prometheus-cpp's Exposer throws (CivetException) when
  // it cannot bind; that must not abort the service.
  auto sink = spillway::prometheus::PrometheusMetricsSink::Create();
  std::unique_ptr<prometheus::Exposer> exposer;
  if (flags.metrics_port > 0) {
    const std::string address =
        absl::StrCat(flags.metrics_bind, ":", flags.metrics_port);
    try {
      exposer = std::make_unique<prometheus::Exposer>(address);
    } catch (const std::exception& e) {
      std::fprintf(stderr,
                   "orders_service: cannot serve /metrics on %s (%s); is the "
                   "port in use? Pick another --metrics_port, or 0 for none\n",
                   address.c_str(), e.what());
      return 2;
    }
    exposer->RegisterCollectable(sink);
    std::printf("metrics: http://%s/metrics\n", address.c_str());
  }

  // The schema.
  try {
    pqxx::connection c(flags.pg);
    pqxx::work tx(c);
    tx.exec(
        "CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, "
        "product int NOT NULL, amount int NOT NULL, created timestamptz "
        "DEFAULT now())");
    tx.exec(
        "CREATE TABLE IF NOT EXISTS products (id int PRIMARY KEY, "
        "sold bigint NOT NULL DEFAULT 0)");
    tx.exec(
        "INSERT INTO products (id) SELECT g FROM generate_series(1, 8) g "
        "ON CONFLICT DO NOTHING");
    tx.commit();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "orders_service: cannot prepare the schema: %s\n",
                 e.what());
    return 1;
  }

  // Optional fleet budget through Redis.
  std::unique_ptr<spillway::redis::GlobalBudget> fleet;
  spillway::LeasedBudget* budget = nullptr;
  if (flags.fleet_rate > 0) {
    spillway::redis::GlobalBudgetOptions o;
    std::pair<std::string, std::string> hp =
        absl::StrSplit(flags.redis, absl::MaxSplits(':', 1));
    o.redis.host = hp.first;
    if (!absl::SimpleAtoi(hp.second, &o.redis.port)) o.redis.port = 0;
    o.metrics = sink.get();
    auto made = spillway::redis::GlobalBudget::Create(o);
    if (!made.ok()) {
      std::fprintf(stderr, "orders_service: %s\n",
                   made.status().ToString().c_str());
      return 1;
    }
    fleet = *std::move(made);
    auto b = fleet->Budget(
        "orders", {.spec = {.rate = flags.fleet_rate,
                            .burst = std::max(1.0, flags.fleet_rate / 10)}});
    if (!b.ok()) {
      std::fprintf(stderr, "orders_service: %s\n",
                   b.status().ToString().c_str());
      return 1;
    }
    budget = *b;
  }

  // The default limit, given the server's write count: PostgreSQL with
  // fsync commits in groups, so its throughput keeps climbing past the
  // latency band KneeLimit starts with, and the throughput probe widens the
  // band while that pays (see the README).
  auto monitor =
      spillway::pqxx::MonitorWriteRate(flags.pg, {.name = "orders database"});
  auto limit = spillway::MakeDefaultLimit(
      {.max_limit = flags.threads,
       .database_rate = monitor.ok() ? std::move(*monitor) : nullptr});
  if (!monitor.ok() || !limit.ok()) {
    std::fprintf(
        stderr, "orders_service: %s\n",
        (monitor.ok() ? limit.status() : monitor.status()).ToString().c_str());
    return 1;
  }

  spillway::WriteThrottleOptions options;
  options.name = "orders";
  options.limiter.limit = *std::move(limit);
  options.budget = budget;
  options.metrics = sink.get();
  auto throttle = spillway::WriteThrottle::Create(std::move(options));
  if (!throttle.ok()) {
    std::fprintf(stderr, "orders_service: %s\n",
                 throttle.status().ToString().c_str());
    return 1;
  }

  Counters counters;
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < flags.threads; ++t) {
    workers.emplace_back([&, t] {
      auto writer = spillway::pqxx::ThrottledWriter::Create(
          {.connection_string = flags.pg, .throttle = throttle->get()});
      if (!writer.ok()) {
        std::fprintf(stderr, "orders_service: %s\n",
                     writer.status().ToString().c_str());
        counters.errors.fetch_add(1);
        return;
      }
      std::minstd_rand rng(t + 1);
      while (!stop.load(std::memory_order_relaxed)) {
        const int product = static_cast<int>(rng() % 8) + 1;
        const int amount = static_cast<int>(rng() % 100) + 1;
        spillway::WriteRequest request;
        request.deadline =
            std::chrono::steady_clock::now() + std::chrono::seconds(1);
        absl::Status s = (*writer)->Write(
            [&](pqxx::work& tx) {
              tx.exec_params(
                  "INSERT INTO orders (product, amount) VALUES ($1, $2)",
                  product, amount);
              tx.exec_params(
                  "UPDATE products SET sold = sold + $1 WHERE id = $2", amount,
                  product);
            },
            request);
        if (s.ok()) {
          counters.ok.fetch_add(1, std::memory_order_relaxed);
        } else if (auto r = spillway::RejectionOf(s)) {
          counters.refused[static_cast<int>(r->gate)].fetch_add(1);
          std::this_thread::sleep_for(std::min(
              absl::ToChronoNanoseconds(r->retry_after),
              std::chrono::nanoseconds(std::chrono::milliseconds(50))));
        } else {
          counters.errors.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }

  // Once a second: what happened in that second.
  long long last_ok = 0, last_limit = 0, last_budget = 0, last_errors = 0;
  for (int second = 1; second <= flags.seconds; ++second) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    const long long ok = counters.ok.load();
    const long long by_limit =
        counters.refused[static_cast<int>(spillway::Gate::kConcurrencyLimit)]
            .load();
    const long long by_budget =
        counters.refused[static_cast<int>(spillway::Gate::kGlobalBudget)]
            .load();
    const long long errors = counters.errors.load();
    std::printf(
        "t=%2ds  %5lld writes/s  refused/s: limit %lld, fleet budget %lld  "
        "errors/s %lld  limit %d, in flight %d  cause %s\n",
        second, ok - last_ok, by_limit - last_limit, by_budget - last_budget,
        errors - last_errors, (*throttle)->limiter().limit(),
        (*throttle)->limiter().in_flight(),
        std::string(spillway::OverloadCauseName((*throttle)->overload_cause()))
            .c_str());
    std::fflush(stdout);
    last_ok = ok;
    last_limit = by_limit;
    last_budget = by_budget;
    last_errors = errors;
  }
  stop.store(true);
  for (std::thread& w : workers) w.join();
  return 0;
}
