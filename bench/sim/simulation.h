// Simulate: one deterministic discrete-event run of clients, a load
// balancer, service instances that each run a real spillway WriteThrottle
// (its ConcurrencyLimiter and its overload detector), and a database with a
// knee.
//
// The system:
//
//   clients ──► balancer ──► instance i: WriteThrottle::Admit
//     ▲  (Poisson,   (weights      │ rejected ─► client backs off, retries
//     │  retries)     schedule)    ▼ admitted
//     │                        UslDatabase (processor sharing, USL knee)
//     └──── success / timeout ◄────┘
//
// Clients: each traffic stream of the RunSpec is a Poisson process whose
// rate is its offered-load schedule times the database's peak. Arrivals
// with a piecewise-constant rate are exact: a gap that would cross a rate
// change is redrawn at the change (the exponential is memoryless). Every
// logical write makes up to 1 + max_retries attempts. An attempt has its own
// deadline (`deadline` after it is sent). It ends as
//   - success: the database finished it within its deadline (goodput);
//   - rejected: the instance's limiter refused it (at once);
//   - timeout: its deadline passed first.
// After a rejection or a timeout the client waits a backoff with full jitter
// (AWS, "Exponential Backoff And Jitter", 2015): before retry k (1-based)
// it sleeps Uniform(0, backoff_base * 2^(k-1)) — 0-50, 0-100, 0-200 ms by
// default — and sends the retry through the balancer again. A logical write
// whose last attempt fails is given up. Retries are what turn an overload
// into a storm: a timed-out attempt keeps loading the database while its
// retry adds more.
//
// Balancer: picks instance i with probability weight_i / sum of weights,
// per attempt, from the weights in force at the time.
//
// Instances: each owns a WriteThrottle whose only gate is a
// ConcurrencyLimiter made from the contender's factory, on the simulation's
// one SimulatedClock. Admit is called without a deadline, so the limiter
// never queues (the simulation is single-threaded; a wait would block it).
// Every sample_interval the series records each throttle's overload cause
// (RunResult::instance_cause). An admitted
// attempt is submitted to the database; the instance also enforces the
// deadline: when the database finishes in time the permit is released with
// Success() (its latency feeds the limit algorithm); at the deadline the
// instance gives up with Dropped() — a timeout is the congestion signal —
// while the database keeps working on the write (unless
// `cancel_abandoned`).
//
// Determinism: one event heap ordered by (time, sequence number); the
// database's next completion is handled before an event at the same time;
// one Rng (random.h) seeded from `seed`; no unordered containers, no wall
// clock. The SimulatedClock is moved to each event's time before it is
// handled, so the limiters see simulated latencies.
//
//   RunSpec run = BuildRuns(ScenarioOptions(), 8)[1];  // incident
//   absl::StatusOr<RunResult> r =
//       Simulate(SimulationOptions(), run, *FindContender("fixed"));
//
// Thread safety: Simulate is thread-safe (each call owns all its state).

#ifndef SPILLWAY_BENCH_SIM_SIMULATION_H_
#define SPILLWAY_BENCH_SIM_SIMULATION_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/sim/contenders.h"
#include "bench/sim/scenario.h"
#include "bench/sim/sim_time.h"
#include "bench/sim/usl_database.h"
#include "spillway/concurrency_limiter.h"
#include "spillway/overload_cause.h"
#include "spillway/throttle.h"

namespace spillway::sim {

struct ClientOptions {
  // Deadline of each attempt, from when it is sent. Default: 1 s.
  // REQUIRES: > 0.
  absl::Duration deadline = absl::Seconds(1);
  // Retries after the first attempt. Default: 3. REQUIRES: in [0, 100].
  int max_retries = 3;
  // Backoff before retry k is Uniform(0, backoff_base * 2^(k-1)).
  // Default: 50 ms. REQUIRES: >= 0.
  absl::Duration backoff_base = absl::Milliseconds(50);
};

struct SimulationOptions {
  DatabaseOptions database;
  ClientOptions client;
  // Service instances behind the balancer. Default: 8. REQUIRES: in
  // [1, 1024].
  int instances = 8;
  // Work per write: false gives every write 1 unit (1 / lambda seconds
  // alone); true draws it from an exponential with mean 1. Default: false.
  bool exponential_work = false;
  // True removes a write from the database when its client gives up (a
  // database that notices); false keeps it running to completion, the
  // realistic default. Default: false.
  bool cancel_abandoned = false;
  // How often the instances' limits and the database's concurrency are
  // sampled for the time series. Default: 100 ms. REQUIRES: > 0.
  absl::Duration sample_interval = absl::Milliseconds(100);
  // Seed of the run's one random engine. Default: 1.
  uint64_t seed = 1;
  // Each instance's overload detector (WriteThrottle::overload; name, clock
  // and log are the simulation's). Default: the library's defaults.
  OverloadDetectorOptions overload;
};

// Checks every field (and the database's); the error names the field and
// its value. Thread-safe.
absl::Status ValidateSimulationOptions(const SimulationOptions& options);

// Width of the per-second bins of RunResult.
inline constexpr SimTime kBinWidth{1.0};

// Counts of one priority per 1-second bin of the run; bin b covers
// [b, b + 1) seconds. An attempt counts in the bin of the event named.
struct Bins {
  // Logical writes arriving (first attempts).
  std::vector<int64_t> arrivals;
  // Attempts reaching an instance (first attempts and retries).
  std::vector<int64_t> attempts;
  // Attempts the limiter rejected, by rejection time.
  std::vector<int64_t> rejected;
  // Attempts finished within their deadline (goodput), by finish time.
  std::vector<int64_t> successes;
  // Admitted attempts that reached their deadline, by deadline.
  std::vector<int64_t> timeouts;
  // Logical writes whose last attempt failed, by that failure's time.
  std::vector<int64_t> gave_up;
};

// The outcome of one admitted attempt as its client saw it.
struct LatencySample {
  // When the attempt ended: the database finished it or its deadline came.
  // Seconds since the start of the run (float: 8 bytes a sample).
  float at_s;
  // From admission to that end: the database's time, or the deadline for a
  // timeout.
  float latency_s;
};

// A point of the run's time series, every sample_interval.
struct SeriesPoint {
  SimTime at{0};
  // Sum over instances of the limiter's current limit.
  int64_t limit_sum = 0;
  // Writes in the database, abandoned ones included.
  int in_service = 0;
};

// Everything one run recorded; metrics.h turns it into results.
struct RunResult {
  std::string run;
  std::string contender;
  // The database's peak at full capacity and N*.
  double peak = 0.0;
  double peak_concurrency = 0.0;
  int instances = 0;
  SimTime duration{0};
  // Per priority, indexed by Priority.
  std::array<Bins, kNumPriorities> bins;
  std::array<std::vector<LatencySample>, kNumPriorities> latencies;
  // Per instance, per bin: attempts reaching it and attempts it rejected.
  std::vector<std::vector<int64_t>> instance_attempts;
  std::vector<std::vector<int64_t>> instance_rejected;
  // Per instance, per series point: the overload cause its throttle named.
  std::vector<std::vector<OverloadCause>> instance_cause;
  std::vector<SeriesPoint> series;
  // Writes the database finished after their client had given up: wasted
  // work.
  int64_t abandoned_completions = 0;
  // Events handled (arrivals, retries, deadlines, completions, samples).
  int64_t events = 0;
};

// Runs `run` with `contender` on every instance. Errors: invalid options,
// or a contender factory's error. Thread-safe.
absl::StatusOr<RunResult> Simulate(const SimulationOptions& options,
                                   const RunSpec& run,
                                   const Contender& contender);

}  // namespace spillway::sim

#endif  // SPILLWAY_BENCH_SIM_SIMULATION_H_
