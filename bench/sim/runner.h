// Runner: every selected scenario for every selected contender, and the
// fixed-limit sweep.
//
// Scenarios that measure one run share it: `incident` and `recovery` are
// two windows of one simulated run, simulated once per contender. Runs are
// independent and each starts its random engine from the same seed, so a
// contender's result does not depend on which others were selected.
//
//   RunnerOptions options;
//   options.scenarios = {"incident"};
//   options.contenders = {"none", "fixed"};
//   absl::StatusOr<Report> report = RunScenarios(options);
//   // report->rows: one ScenarioMetrics per scenario and contender.
//
// Thread safety: thread-safe (no shared state).

#ifndef SPILLWAY_BENCH_SIM_RUNNER_H_
#define SPILLWAY_BENCH_SIM_RUNNER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/sim/metrics.h"
#include "bench/sim/scenario.h"
#include "bench/sim/simulation.h"

namespace spillway::sim {

struct RunnerOptions {
  SimulationOptions simulation;
  ScenarioOptions scenario;
  // Scenario names (ScenarioNames()); empty means all, in report order.
  std::vector<std::string> scenarios;
  // Registered contender names (Contenders()); empty means all.
  std::vector<std::string> contenders;
  // Also keep the incident run of each contender (for the SVG plot),
  // simulating it even when neither `incident` nor `recovery` is selected.
  bool keep_incident_runs = false;
};

struct Report {
  // One row per scenario and contender, scenario-major in report order,
  // plus a "<contender>:<priority>" row after each contender of a scenario
  // with a breakdown.
  std::vector<ScenarioMetrics> rows;
  // The incident run per contender, in contender order, when asked for.
  std::vector<RunResult> incident_runs;
  // The scenarios measured, in report order.
  std::vector<ScenarioSpec> scenarios;
};

// Errors: an unknown scenario or contender name, invalid options.
// Thread-safe.
absl::StatusOr<Report> RunScenarios(const RunnerOptions& options);

// One row of the fixed-limit sweep.
struct SweepRow {
  int limit = 0;
  ScenarioMetrics metrics;
};

// Runs `steady` with FixedContender(L) for L = 1..max_limit and marks the
// best (contenders.h: best goodput, goodputs within 0.5% relative counting
// as equal, then lowest p99, then lowest L). Thread-safe.
absl::StatusOr<std::vector<SweepRow>> SweepFixedLimits(
    const RunnerOptions& options, int max_limit, int* best_limit);

}  // namespace spillway::sim

#endif  // SPILLWAY_BENCH_SIM_RUNNER_H_
