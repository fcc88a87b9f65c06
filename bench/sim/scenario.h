// Scenarios of the overload simulator: what load arrives, how the balancer
// spreads it, how the database behaves, and over which window each result
// is measured.
//
// A `RunSpec` is one simulated run: traffic streams (Poisson arrivals with a
// piecewise-constant rate and one priority each), the balancer's weight
// schedule and the database's capacity schedule. A `ScenarioSpec` is a
// measurement over one run: a window, the moment after which convergence is
// timed, and what goodput is relative to. Two scenarios may share a run:
// `incident` and `recovery` measure different windows of one run.
//
// Loads are multiples of the database's peak at full capacity (X(N*),
// usl_database.h), so "0.7" is 70% of what the database can do at best.
// Every time below is multiplied by ScenarioOptions::duration_scale.
//
//   scenario    run         offered load (x peak)        window     change
//   steady      steady      0.7, even weights; 30 s      [5, 30)    0
//   incident    incident    0.7; from 10 s 3.0 with      [10, 70)   10
//                           instances 0-1 at 3x weight;
//                           from 70 s 0.7 even; 130 s
//   recovery    incident    (the same run)               [70, 130)  70
//   slowdown    slowdown    0.7; capacity 1 -> 0.5 at    [10, 70)   10
//                           10 s; 70 s
//   priorities  priorities  critical 0.3 + batch 3.0;    [5, 40)    0
//                           40 s
//
// `change` is the time convergence is measured from (metrics.h).
//
// Goodput is relative to the peak in force during the window: the halved
// peak in `slowdown`. `priorities` also reports the critical writes alone.
//
// Thread safety: value types and pure functions; thread-safe.

#ifndef SPILLWAY_BENCH_SIM_SCENARIO_H_
#define SPILLWAY_BENCH_SIM_SCENARIO_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bench/sim/sim_time.h"
#include "spillway/concurrency_limiter.h"

namespace spillway::sim {

// Knobs of the scenario table above; the defaults are the table.
struct ScenarioOptions {
  // Multiplies every phase length and window. Default: 1.
  // REQUIRES: > 0. Tests use 0.25 to run in well under a second.
  double duration_scale = 1.0;
  // Offered load outside the incident, x peak. Default: 0.7.
  double base_load = 0.7;
  // Total offered load during the incident, x peak. Default: 3.0.
  double incident_load = 3.0;
  // The misrouted group: the first `incident_group` instances get
  // `incident_weight` times their normal weight during the incident.
  // Defaults: 2 instances, 3x. REQUIRES: incident_group <= instances.
  int incident_group = 2;
  double incident_weight = 3.0;
  // Capacity factor after the slowdown. Default: 0.5. REQUIRES: > 0.
  double slowdown_factor = 0.5;
  // Loads of the priorities scenario, x peak. Defaults: 0.3 and 3.0.
  double critical_load = 0.3;
  double batch_load = 3.0;
};

// Checks every field; the error names the field and its value. Thread-safe.
absl::Status ValidateScenarioOptions(const ScenarioOptions& options,
                                     int instances);

// One Poisson stream of logical writes.
struct TrafficStream {
  // Label in reports: "writes", "critical", "batch".
  std::string name;
  Priority priority = Priority::kNormal;
  // Arrival rate as a multiple of the database's peak at full capacity.
  Schedule<double> offered;
};

// One simulated run.
struct RunSpec {
  // "steady", "incident", "slowdown", "priorities".
  std::string name;
  // The run stops here; events after it are not handled.
  SimTime duration{0};
  std::vector<TrafficStream> streams;
  // Relative weight of each instance at the balancer; an empty vector means
  // even weights.
  Schedule<std::vector<double>> weights;
  // The database's capacity factor (usl_database.h).
  Schedule<double> capacity;
};

// How convergence is timed (metrics.h has the formulas).
enum class ConvergeRule {
  // Time until goodput settles within a band around its final plateau.
  kPlateau,
  // Time until goodput is back to >= 95% of a baseline window's.
  kRecovery,
};

// One measurement over one run.
struct ScenarioSpec {
  // "steady", "incident", "slowdown", "recovery", "priorities".
  std::string name;
  // The RunSpec measured.
  std::string run;
  // Everything but convergence is measured over [from, to).
  SimTime from{0};
  SimTime to{0};
  // The change after which convergence is timed.
  SimTime change{0};
  ConvergeRule converge_rule = ConvergeRule::kPlateau;
  // kRecovery: the goodput to return to is the mean over [baseline_from,
  // baseline_to).
  SimTime baseline_from{0};
  SimTime baseline_to{0};
  // Goodput is reported as a percentage of peak * peak_factor: the peak in
  // force during the window.
  double peak_factor = 1.0;
  // When set, the report adds a row for this priority alone, named
  // "<contender>:<priority>", whose goodput is the share of that priority's
  // demand served.
  std::optional<Priority> breakdown;
};

// The runs and scenarios of the table above, in report order.
// REQUIRES: ValidateScenarioOptions(options, instances) is OK. Thread-safe.
std::vector<RunSpec> BuildRuns(const ScenarioOptions& options, int instances);
std::vector<ScenarioSpec> BuildScenarios(const ScenarioOptions& options);

// "steady", "incident", "slowdown", "recovery", "priorities". Thread-safe.
std::vector<std::string> ScenarioNames();

}  // namespace spillway::sim

#endif  // SPILLWAY_BENCH_SIM_SCENARIO_H_
