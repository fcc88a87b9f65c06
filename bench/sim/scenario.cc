#include "bench/sim/scenario.h"

#include <cmath>

#include "absl/strings/str_format.h"

namespace spillway::sim {
namespace {

bool PositiveFinite(double x) { return x > 0.0 && std::isfinite(x); }

}  // namespace

absl::Status ValidateScenarioOptions(const ScenarioOptions& o, int instances) {
  const struct {
    const char* name;
    double value;
  } positive[] = {{"duration_scale", o.duration_scale},
                  {"base_load", o.base_load},
                  {"incident_load", o.incident_load},
                  {"incident_weight", o.incident_weight},
                  {"slowdown_factor", o.slowdown_factor},
                  {"critical_load", o.critical_load},
                  {"batch_load", o.batch_load}};
  for (const auto& field : positive) {
    if (!PositiveFinite(field.value)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("ScenarioOptions.%s must be finite and > 0; got %g",
                          field.name, field.value));
    }
  }
  if (o.incident_group < 1 || o.incident_group > instances) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ScenarioOptions.incident_group must be in [1, instances=%d]; got %d",
        instances, o.incident_group));
  }
  return absl::OkStatus();
}

std::vector<RunSpec> BuildRuns(const ScenarioOptions& o, int instances) {
  const auto at = [&o](double seconds) {
    return SimTime(seconds * o.duration_scale);
  };
  const Schedule<std::vector<double>> even({{at(0), {}}});
  const Schedule<double> full_capacity({{at(0), 1.0}});

  std::vector<RunSpec> runs;

  RunSpec steady;
  steady.name = "steady";
  steady.duration = at(30);
  steady.streams.push_back(
      {"writes", Priority::kNormal, Schedule<double>({{at(0), o.base_load}})});
  steady.weights = even;
  steady.capacity = full_capacity;
  runs.push_back(steady);

  RunSpec incident;
  incident.name = "incident";
  incident.duration = at(130);
  incident.streams.push_back({"writes", Priority::kNormal,
                              Schedule<double>({{at(0), o.base_load},
                                                {at(10), o.incident_load},
                                                {at(70), o.base_load}})});
  std::vector<double> misrouted(instances, 1.0);
  for (int i = 0; i < o.incident_group; ++i) misrouted[i] = o.incident_weight;
  incident.weights = Schedule<std::vector<double>>(
      {{at(0), {}}, {at(10), misrouted}, {at(70), {}}});
  incident.capacity = full_capacity;
  runs.push_back(incident);

  RunSpec slowdown;
  slowdown.name = "slowdown";
  slowdown.duration = at(70);
  slowdown.streams.push_back(
      {"writes", Priority::kNormal, Schedule<double>({{at(0), o.base_load}})});
  slowdown.weights = even;
  slowdown.capacity =
      Schedule<double>({{at(0), 1.0}, {at(10), o.slowdown_factor}});
  runs.push_back(slowdown);

  RunSpec priorities;
  priorities.name = "priorities";
  priorities.duration = at(40);
  priorities.streams.push_back({"critical", Priority::kCritical,
                                Schedule<double>({{at(0), o.critical_load}})});
  priorities.streams.push_back(
      {"batch", Priority::kBatch, Schedule<double>({{at(0), o.batch_load}})});
  priorities.weights = even;
  priorities.capacity = full_capacity;
  runs.push_back(priorities);

  return runs;
}

std::vector<ScenarioSpec> BuildScenarios(const ScenarioOptions& o) {
  const auto at = [&o](double seconds) {
    return SimTime(seconds * o.duration_scale);
  };
  return {
      {.name = "steady",
       .run = "steady",
       .from = at(5),
       .to = at(30),
       .change = at(0)},
      {.name = "incident",
       .run = "incident",
       .from = at(10),
       .to = at(70),
       .change = at(10)},
      {.name = "slowdown",
       .run = "slowdown",
       .from = at(10),
       .to = at(70),
       .change = at(10),
       .peak_factor = o.slowdown_factor},
      // Pre-incident goodput, after a 2 s warm-up, is what to return to.
      {.name = "recovery",
       .run = "incident",
       .from = at(70),
       .to = at(130),
       .change = at(70),
       .converge_rule = ConvergeRule::kRecovery,
       .baseline_from = at(2),
       .baseline_to = at(10)},
      {.name = "priorities",
       .run = "priorities",
       .from = at(5),
       .to = at(40),
       .change = at(0),
       .breakdown = Priority::kCritical},
  };
}

std::vector<std::string> ScenarioNames() {
  std::vector<std::string> names;
  for (const ScenarioSpec& s : BuildScenarios(ScenarioOptions())) {
    names.push_back(s.name);
  }
  return names;
}

}  // namespace spillway::sim
