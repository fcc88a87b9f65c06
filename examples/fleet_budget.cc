// fleet_budget: N copies of a service share one write budget through Redis.
//
// Start several copies against one Redis; give one of them more traffic, as
// a misrouted load balancer would:
//
//   scripts/with_redis.sh bash -c '
//     for i in 1 2 3; do build-plain/examples/fleet_budget --id=i$i & done
//     build-plain/examples/fleet_budget --id=hot --offered=3000; wait'
//
// Each copy offers writes at --offered per second for --seconds, admits them
// through the shared budget (--rate for the whole fleet), and prints once a
// second what it admitted and how the fleet looks from here: live
// instances, its own share of the fleet's offered writes, and the skew
// (largest share over the fair share) that flags the misrouted balancer.
//
// Flags: --redis=HOST:PORT (default $SPILLWAY_REDIS_ADDR or
// 127.0.0.1:6379), --id=NAME, --key=orders, --rate=2000, --offered=1000,
// --seconds=15. Only ever point it at a Redis you own.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "spillway/redis/fleet_registry.h"
#include "spillway/redis/global_budget.h"

namespace {

struct Flags {
  std::string redis = "127.0.0.1:6379";
  std::string id;
  std::string key = "orders";
  double rate = 2000;
  double offered = 1000;
  int seconds = 15;
};

bool Parse(int argc, char** argv, Flags& f) {
  if (const char* env = std::getenv("SPILLWAY_REDIS_ADDR"); env && *env) {
    f.redis = env;
  }
  for (int i = 1; i < argc; ++i) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(argv[i], absl::MaxSplits('=', 1));
    const std::string& v = kv.second;
    bool ok = true;
    if (kv.first == "--redis") {
      f.redis = v;
    } else if (kv.first == "--id") {
      f.id = v;
    } else if (kv.first == "--key") {
      f.key = v;
    } else if (kv.first == "--rate") {
      ok = absl::SimpleAtod(v, &f.rate);
    } else if (kv.first == "--offered") {
      ok = absl::SimpleAtod(v, &f.offered) && f.offered > 0;
    } else if (kv.first == "--seconds") {
      ok =
          absl::SimpleAtoi(v, &f.seconds) && f.seconds > 0 && f.seconds <= 3600;
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "fleet_budget: bad flag %s\n", argv[i]);
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (!Parse(argc, argv, flags)) return 2;
  spillway::redis::RedisOptions redis;
  {
    std::pair<std::string, std::string> hp =
        absl::StrSplit(flags.redis, absl::MaxSplits(':', 1));
    redis.host = hp.first;
    if (!absl::SimpleAtoi(hp.second, &redis.port)) {
      std::fprintf(stderr, "fleet_budget: --redis must be HOST:PORT; got %s\n",
                   flags.redis.c_str());
      return 2;
    }
  }

  auto registry = spillway::redis::FleetRegistry::Create(
      {.redis = redis, .fleet = flags.key, .instance_id = flags.id});
  if (!registry.ok()) {
    std::fprintf(stderr, "fleet_budget: %s\n",
                 registry.status().ToString().c_str());
    return 1;
  }
  auto fleet = spillway::redis::GlobalBudget::Create(
      {.redis = redis, .registry = registry->get()});
  if (!fleet.ok()) {
    std::fprintf(stderr, "fleet_budget: %s\n",
                 fleet.status().ToString().c_str());
    return 1;
  }
  auto budget = (*fleet)->Budget(
      flags.key, {.spec = {.rate = flags.rate, .burst = flags.rate / 10}});
  if (!budget.ok()) {
    std::fprintf(stderr, "fleet_budget: %s\n",
                 budget.status().ToString().c_str());
    return 1;
  }
  spillway::LeasedBudget& writes = **budget;
  const std::string& me = (*registry)->instance_id();

  // Offer writes at a steady pace in 1 ms steps; report once a second.
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  long long offered = 0;
  long long admitted = 0;
  long long admitted_last = 0;
  for (int second = 1; second <= flags.seconds; ++second) {
    for (int ms = 0; ms < 1000; ++ms) {
      const auto step =
          start + std::chrono::milliseconds((second - 1) * 1000 + ms);
      std::this_thread::sleep_until(step);
      const double elapsed =
          std::chrono::duration<double>(step - start).count() + 0.001;
      for (; offered < static_cast<long long>(elapsed * flags.offered);
           ++offered) {
        spillway::Rejection why;
        if (writes.TryAcquire(1, &why)) ++admitted;  // ...write here...
      }
    }
    const spillway::redis::FleetView view = (*registry)->View();
    std::printf(
        "%-8s t=%2ds admitted %5lld/s (%s)  fleet: %d live, my share %3.0f%%, "
        "skew %.2f%s\n",
        me.c_str(), second, admitted - admitted_last,
        std::string(spillway::BudgetModeName(writes.mode())).c_str(),
        view.live_instances, 100 * view.self_share, view.skew,
        view.skewed ? ("  SKEWED: " + view.busiest + " gets too much").c_str()
                    : "");
    std::fflush(stdout);
    admitted_last = admitted;
  }
  return 0;
}
