// One instance of a fleet, as a separate OS process, for the fleet accuracy
// test: shares a GlobalBudget through Redis, offers writes at a fixed pace
// from a common start time for a fixed duration, and prints what it
// admitted:
//
//   budget_worker PORT KEY RATE BURST OFFERED_PER_S START_UNIX_MS DURATION_MS
//   -> "admitted=<n> offered=<n> max_lease=<n> mode_changes=<n>"
//
// Only loopback; the loop is bounded by DURATION_MS.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "spillway/redis/global_budget.h"

int main(int argc, char** argv) {
  if (argc != 8) {
    std::fprintf(stderr,
                 "usage: %s PORT KEY RATE BURST OFFERED_PER_S START_UNIX_MS "
                 "DURATION_MS\n",
                 argv[0]);
    return 2;
  }
  spillway::redis::GlobalBudgetOptions options;
  options.redis.port = std::atoi(argv[1]);
  const std::string key = argv[2];
  const double rate = std::atof(argv[3]);
  const double burst = std::atof(argv[4]);
  const double offered_per_s = std::atof(argv[5]);
  const auto start = std::chrono::system_clock::time_point(
      std::chrono::milliseconds(std::atoll(argv[6])));
  const auto duration = std::chrono::milliseconds(std::atoll(argv[7]));
  if (options.redis.port <= 0 || offered_per_s <= 0 || duration.count() <= 0 ||
      duration > std::chrono::minutes(1)) {
    std::fprintf(stderr, "budget_worker: bad arguments\n");
    return 2;
  }

  auto fleet = spillway::redis::GlobalBudget::Create(options);
  if (!fleet.ok()) {
    std::fprintf(stderr, "budget_worker: %s\n",
                 fleet.status().ToString().c_str());
    return 1;
  }
  auto budget = (*fleet)->Budget(key, {.spec = {.rate = rate, .burst = burst}});
  if (!budget.ok()) {
    std::fprintf(stderr, "budget_worker: %s\n",
                 budget.status().ToString().c_str());
    return 1;
  }
  spillway::LeasedBudget& b = **budget;

  // Offer writes at a fixed pace, in steps of 1 ms, from the common start.
  std::this_thread::sleep_until(start);
  long long offered = 0;
  long long admitted = 0;
  const auto steady_start = std::chrono::steady_clock::now();
  const auto end = steady_start + duration;
  for (auto step = steady_start; step < end;
       step += std::chrono::milliseconds(1)) {
    std::this_thread::sleep_until(step);
    const double elapsed_s =
        std::chrono::duration<double>(step - steady_start).count() + 0.001;
    const long long due = static_cast<long long>(elapsed_s * offered_per_s);
    for (; offered < due; ++offered) admitted += b.TryAcquire() ? 1 : 0;
  }
  std::printf("admitted=%lld offered=%lld max_lease=%lld mode=%d\n", admitted,
              offered, static_cast<long long>(b.max_lease()),
              static_cast<int>(b.mode()));
  return 0;
}
