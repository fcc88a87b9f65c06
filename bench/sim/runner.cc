#include "bench/sim/runner.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bench/sim/contenders.h"

namespace spillway::sim {
namespace {

const RunSpec* FindRun(const std::vector<RunSpec>& runs,
                       const std::string& name) {
  for (const RunSpec& r : runs) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

bool Selected(const std::vector<std::string>& selection,
              const std::string& name) {
  return selection.empty() ||
         std::find(selection.begin(), selection.end(), name) != selection.end();
}

}  // namespace

absl::StatusOr<Report> RunScenarios(const RunnerOptions& options) {
  if (absl::Status s = ValidateSimulationOptions(options.simulation); !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateScenarioOptions(options.scenario,
                                               options.simulation.instances);
      !s.ok()) {
    return s;
  }
  const std::vector<std::string> names = ScenarioNames();
  for (const std::string& s : options.scenarios) {
    if (std::find(names.begin(), names.end(), s) == names.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown scenario '", s, "'; known: ", absl::StrJoin(names, ", ")));
    }
  }
  std::vector<const Contender*> contenders;
  if (options.contenders.empty()) {
    for (const Contender& c : Contenders()) contenders.push_back(&c);
  } else {
    for (const std::string& name : options.contenders) {
      const Contender* c = FindContender(name);
      if (c == nullptr) {
        std::vector<std::string> known;
        for (const Contender& k : Contenders()) known.push_back(k.name);
        return absl::InvalidArgumentError(
            absl::StrCat("unknown contender '", name,
                         "'; known: ", absl::StrJoin(known, ", ")));
      }
      contenders.push_back(c);
    }
  }

  const std::vector<RunSpec> runs =
      BuildRuns(options.scenario, options.simulation.instances);
  Report report;
  for (const ScenarioSpec& s : BuildScenarios(options.scenario)) {
    if (Selected(options.scenarios, s.name)) report.scenarios.push_back(s);
  }

  // The runs needed, in order of first use.
  std::vector<std::string> needed;
  for (const ScenarioSpec& s : report.scenarios) {
    if (std::find(needed.begin(), needed.end(), s.run) == needed.end()) {
      needed.push_back(s.run);
    }
  }
  if (options.keep_incident_runs &&
      std::find(needed.begin(), needed.end(), "incident") == needed.end()) {
    needed.push_back("incident");
  }

  // rows[scenario][contender]: measured as soon as a run ends, so that only
  // the incident runs kept for the plot stay in memory.
  std::vector<std::vector<std::vector<ScenarioMetrics>>> rows(
      report.scenarios.size(),
      std::vector<std::vector<ScenarioMetrics>>(contenders.size()));
  for (size_t c = 0; c < contenders.size(); ++c) {
    for (const std::string& run_name : needed) {
      absl::StatusOr<RunResult> run = Simulate(
          options.simulation, *FindRun(runs, run_name), *contenders[c]);
      if (!run.ok()) return run.status();
      for (size_t i = 0; i < report.scenarios.size(); ++i) {
        const ScenarioSpec& s = report.scenarios[i];
        if (s.run != run_name) continue;
        rows[i][c].push_back(Measure(*run, s));
        if (s.breakdown.has_value()) {
          rows[i][c].push_back(Measure(*run, s, s.breakdown));
        }
      }
      if (options.keep_incident_runs && run_name == "incident") {
        report.incident_runs.push_back(*std::move(run));
      }
    }
  }
  for (auto& by_contender : rows) {
    for (auto& contender_rows : by_contender) {
      for (ScenarioMetrics& m : contender_rows) {
        report.rows.push_back(std::move(m));
      }
    }
  }
  return report;
}

absl::StatusOr<std::vector<SweepRow>> SweepFixedLimits(
    const RunnerOptions& options, int max_limit, int* best_limit) {
  if (absl::Status s = ValidateSimulationOptions(options.simulation); !s.ok()) {
    return s;
  }
  const std::vector<RunSpec> runs =
      BuildRuns(options.scenario, options.simulation.instances);
  ScenarioSpec steady;
  for (const ScenarioSpec& s : BuildScenarios(options.scenario)) {
    if (s.name == "steady") steady = s;
  }
  std::vector<SweepRow> rows;
  for (int limit = 1; limit <= max_limit; ++limit) {
    absl::StatusOr<RunResult> r = Simulate(
        options.simulation, *FindRun(runs, "steady"), FixedContender(limit));
    if (!r.ok()) return r.status();
    rows.push_back({limit, Measure(*r, steady)});
  }
  double best_goodput = 0.0;
  for (const SweepRow& row : rows) {
    best_goodput = std::max(best_goodput, row.metrics.goodput_pct);
  }
  std::optional<SweepRow> best;
  for (const SweepRow& row : rows) {
    if (row.metrics.goodput_pct < best_goodput * 0.995) continue;
    if (!best.has_value() || row.metrics.p99_ms < best->metrics.p99_ms) {
      best = row;
    }
  }
  if (best_limit != nullptr) *best_limit = best.has_value() ? best->limit : 0;
  return rows;
}

}  // namespace spillway::sim
