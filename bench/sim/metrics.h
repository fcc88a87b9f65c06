// Metrics: what the overload simulator reports for a scenario and a
// contender, computed from a RunResult over the scenario's window.
//
// Definitions (window [from, to) of the ScenarioSpec, rounded inward to
// whole 1-second bins; all priorities unless a priority is given):
//
//   goodput_pct   attempts finished within their deadline per second over
//                 the window, as % of peak * peak_factor (the peak in force:
//                 the halved peak in `slowdown`). For a priority breakdown
//                 (`<contender>:critical`) it is instead the share of that
//                 priority's demand served: its successes / its logical
//                 writes arriving in the window, in %.
//   p50_ms,       nearest-rank percentiles of the latency of admitted
//   p99_ms        attempts ending in the window, from admission to the end
//                 the client saw: the database's finish, or the deadline for
//                 an attempt that timed out (so timeouts count as the full
//                 deadline, not as missing samples). NaN when there are none.
//   rejected_pct  rejected attempts / attempts reaching an instance, %.
//   timeouts      admitted attempts that reached their deadline.
//   converge_s    seconds from the scenario's change until goodput settles,
//                 on per-second goodput g(b) smoothed by a centered 3-bin
//                 mean that never reaches across the change or the window's
//                 end:
//                   kPlateau:  the plateau P is the mean of g over the last
//                              min(10 s, a third) of [change, to); converge_s
//                              is the start of the first bin from which the
//                              smoothed goodput stays within 5% of the
//                              database's peak of P, minus the change time.
//                              (The band is 5% of peak rather than of P: a
//                              collapsed plateau near zero would make a
//                              relative band meaningless.)
//                   kRecovery: the baseline B is the mean of g over
//                              [baseline_from, baseline_to); converge_s is
//                              the start of the first bin from which the
//                              smoothed goodput stays >= 95% of B until the
//                              window's end, minus the change time.
//                 +inf when it never settles within the window; 0 when it
//                 never leaves the band.
//
// Thread safety: pure functions; thread-safe.

#ifndef SPILLWAY_BENCH_SIM_METRICS_H_
#define SPILLWAY_BENCH_SIM_METRICS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bench/sim/scenario.h"
#include "bench/sim/simulation.h"
#include "spillway/concurrency_limiter.h"

namespace spillway::sim {

struct ScenarioMetrics {
  // The scenario's name: "steady", "incident", ...
  std::string scenario;
  // The contender's name, or "<contender>:<priority>" for a breakdown.
  std::string contender;
  double goodput_pct = 0.0;
  double p50_ms = 0.0;
  double p99_ms = 0.0;
  double rejected_pct = 0.0;
  int64_t timeouts = 0;
  double converge_s = 0.0;

  // More detail for the report, same window.
  int64_t attempts = 0;
  int64_t successes = 0;
  int64_t gave_up = 0;
  // Offered load (first attempts) as % of the same peak as goodput_pct.
  double offered_pct = 0.0;
  // Per instance: rejected attempts / attempts reaching it, %, all
  // priorities. Empty in a priority breakdown.
  std::vector<double> instance_rejected_pct;
  // Mean over the window of the sum of the instances' limits, and of the
  // writes in the database.
  double mean_limit_sum = 0.0;
  double mean_in_service = 0.0;
};

// The metrics of `scenario` over `run`, for all priorities or, with
// `priority`, for that priority alone (see the file comment).
// REQUIRES: run is the scenario's run. Thread-safe.
ScenarioMetrics Measure(const RunResult& run, const ScenarioSpec& scenario,
                        std::optional<Priority> priority = std::nullopt);

// Successes per 1-second bin over the whole run, for all priorities or one,
// in writes/s. Thread-safe.
std::vector<double> GoodputPerSecond(
    const RunResult& run, std::optional<Priority> priority = std::nullopt);

// The nearest-rank q-quantile of `values` (reordered): the value at index
// ceil(q * n) - 1 after sorting. NaN when empty. REQUIRES: q in (0, 1].
// Thread-safe.
double NearestRank(std::vector<double>& values, double q);

}  // namespace spillway::sim

#endif  // SPILLWAY_BENCH_SIM_METRICS_H_
