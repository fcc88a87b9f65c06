// spillway_sim: the overload simulator's command line.
//
// Runs every selected scenario (scenario.h) for every selected contender
// (contenders.h) and prints a markdown report on stdout; optionally writes
// the results as CSV and the incident as an SVG plot.
//
//   spillway_sim                                  # everything, seed 1
//   spillway_sim --scenario=incident --contender=none,fixed
//   spillway_sim --csv results.csv --svg incident.svg
//   spillway_sim --duration_scale=0.25            # 4x shorter phases
//   spillway_sim --sweep_fixed                    # how `fixed` was chosen
//
// Output depends only on the flags: two runs with one seed print the same
// bytes.

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "bench/sim/contenders.h"
#include "bench/sim/report.h"
#include "bench/sim/runner.h"

ABSL_FLAG(std::string, scenario, "all",
          "Comma-separated scenarios (steady, incident, slowdown, recovery, "
          "priorities) or 'all'.");
ABSL_FLAG(std::string, contender, "all",
          "Comma-separated registered contenders or 'all'.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of each run's random engine.");
ABSL_FLAG(double, duration_scale, 1.0,
          "Multiplies every phase length and window.");
ABSL_FLAG(std::string, csv, "", "Write the results as CSV to this file.");
ABSL_FLAG(std::string, svg, "",
          "Write an SVG plot of the incident scenario to this file.");

ABSL_FLAG(int, instances, 8, "Service instances behind the balancer.");
ABSL_FLAG(double, db_lambda, 200.0,
          "USL lambda: throughput of one write alone, writes/s.");
ABSL_FLAG(double, db_sigma, 0.05, "USL sigma: contention.");
ABSL_FLAG(double, db_kappa, 0.002, "USL kappa: coherency.");
ABSL_FLAG(bool, exponential_work, false,
          "Draw each write's work from an exponential (mean 1) instead of 1.");
ABSL_FLAG(bool, cancel_abandoned, false,
          "Remove a write from the database when its client gives up.");

ABSL_FLAG(absl::Duration, deadline, absl::Seconds(1),
          "Client deadline per attempt.");
ABSL_FLAG(int, max_retries, 3, "Client retries after the first attempt.");
ABSL_FLAG(absl::Duration, backoff_base, absl::Milliseconds(50),
          "Backoff before retry k is Uniform(0, base * 2^(k-1)).");

ABSL_FLAG(double, base_load, 0.7, "Offered load outside incidents, x peak.");
ABSL_FLAG(double, incident_load, 3.0, "Offered load in the incident, x peak.");
ABSL_FLAG(int, incident_group, 2,
          "Instances the misrouted balancer overweights.");
ABSL_FLAG(double, incident_weight, 3.0,
          "Weight multiplier of the misrouted group.");
ABSL_FLAG(double, slowdown_factor, 0.5,
          "Database capacity factor after the slowdown.");
ABSL_FLAG(double, critical_load, 0.3,
          "Critical load in the priorities scenario, x peak.");
ABSL_FLAG(double, batch_load, 3.0,
          "Batch load in the priorities scenario, x peak.");

ABSL_FLAG(bool, sweep_fixed, false,
          "Sweep FixedLimit(1..sweep_max) per instance over `steady`, print "
          "the table and the best limit, and exit.");
ABSL_FLAG(int, sweep_max, 16, "Largest limit of --sweep_fixed.");
ABSL_FLAG(bool, list_contenders, false,
          "Print the registered contenders and exit.");

namespace spillway::sim {
namespace {

std::vector<std::string> Selection(const std::string& flag) {
  if (flag == "all" || flag.empty()) return {};
  return absl::StrSplit(flag, ',', absl::SkipEmpty());
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

RunnerOptions OptionsFromFlags() {
  RunnerOptions o;
  o.simulation.database.lambda = absl::GetFlag(FLAGS_db_lambda);
  o.simulation.database.sigma = absl::GetFlag(FLAGS_db_sigma);
  o.simulation.database.kappa = absl::GetFlag(FLAGS_db_kappa);
  o.simulation.client.deadline = absl::GetFlag(FLAGS_deadline);
  o.simulation.client.max_retries = absl::GetFlag(FLAGS_max_retries);
  o.simulation.client.backoff_base = absl::GetFlag(FLAGS_backoff_base);
  o.simulation.instances = absl::GetFlag(FLAGS_instances);
  o.simulation.exponential_work = absl::GetFlag(FLAGS_exponential_work);
  o.simulation.cancel_abandoned = absl::GetFlag(FLAGS_cancel_abandoned);
  o.simulation.seed = absl::GetFlag(FLAGS_seed);
  o.scenario.duration_scale = absl::GetFlag(FLAGS_duration_scale);
  o.scenario.base_load = absl::GetFlag(FLAGS_base_load);
  o.scenario.incident_load = absl::GetFlag(FLAGS_incident_load);
  o.scenario.incident_group = absl::GetFlag(FLAGS_incident_group);
  o.scenario.incident_weight = absl::GetFlag(FLAGS_incident_weight);
  o.scenario.slowdown_factor = absl::GetFlag(FLAGS_slowdown_factor);
  o.scenario.critical_load = absl::GetFlag(FLAGS_critical_load);
  o.scenario.batch_load = absl::GetFlag(FLAGS_batch_load);
  o.scenarios = Selection(absl::GetFlag(FLAGS_scenario));
  o.contenders = Selection(absl::GetFlag(FLAGS_contender));
  return o;
}

std::string Preamble(const RunnerOptions& o) {
  const DatabaseOptions& db = o.simulation.database;
  const ClientOptions& client = o.simulation.client;
  return absl::StrFormat(
      "Database: USL lambda=%g/s sigma=%g kappa=%g: N* = %.1f, peak = %.1f "
      "writes/s%s%s.\n"
      "Clients: deadline %s per attempt, up to %d retries, backoff base %s "
      "with full jitter. %d instances. Seed %d, duration scale %g.\n",
      db.lambda, db.sigma, db.kappa, UslPeakConcurrency(db), UslPeak(db),
      o.simulation.exponential_work ? ", exponential work" : "",
      o.simulation.cancel_abandoned ? ", abandoned writes cancelled" : "",
      absl::FormatDuration(client.deadline), client.max_retries,
      absl::FormatDuration(client.backoff_base), o.simulation.instances,
      o.simulation.seed, o.scenario.duration_scale);
}

int Sweep(const RunnerOptions& options) {
  int best = 0;
  absl::StatusOr<std::vector<SweepRow>> rows =
      SweepFixedLimits(options, absl::GetFlag(FLAGS_sweep_max), &best);
  if (!rows.ok()) {
    std::fprintf(stderr, "spillway_sim: %s\n",
                 rows.status().ToString().c_str());
    return 1;
  }
  std::string out = absl::StrCat(
      "# Fixed-limit sweep over `steady`\n\n", Preamble(options), "\n",
      "| limit per instance | goodput % of peak | p50 ms | p99 ms | rejected % "
      "| given up |\n|---:|---:|---:|---:|---:|---:|\n");
  for (const SweepRow& r : *rows) {
    absl::StrAppendFormat(&out, "| %d | %.2f | %.1f | %.1f | %.2f | %d |\n",
                          r.limit, r.metrics.goodput_pct, r.metrics.p50_ms,
                          r.metrics.p99_ms, r.metrics.rejected_pct,
                          r.metrics.gave_up);
  }
  absl::StrAppendFormat(&out, "\nBest fixed limit per instance: %d\n", best);
  std::fputs(out.c_str(), stdout);
  return 0;
}

int Main() {
  RunnerOptions options = OptionsFromFlags();
  if (absl::GetFlag(FLAGS_list_contenders)) {
    for (const Contender& c : Contenders()) {
      std::printf("%s\t%s\n", c.name.c_str(), c.description.c_str());
    }
    return 0;
  }
  if (absl::GetFlag(FLAGS_sweep_fixed)) return Sweep(options);

  const std::string svg_path = absl::GetFlag(FLAGS_svg);
  options.keep_incident_runs = !svg_path.empty();
  absl::StatusOr<Report> report = RunScenarios(options);
  if (!report.ok()) {
    std::fprintf(stderr, "spillway_sim: %s\n",
                 report.status().ToString().c_str());
    return 1;
  }

  std::string out =
      absl::StrCat("# spillway overload simulation\n\n", Preamble(options),
                   "\n", MarkdownTable(report->rows), "\n## Details\n\n",
                   DetailsTable(report->rows), "\nContenders:\n");
  for (const Contender& c : Contenders()) {
    absl::StrAppend(&out, "- ", c.name, ": ", c.description, "\n");
  }
  std::fputs(out.c_str(), stdout);

  const std::string csv_path = absl::GetFlag(FLAGS_csv);
  if (!csv_path.empty()) {
    if (absl::Status s = WriteFile(csv_path, Csv(report->rows)); !s.ok()) {
      std::fprintf(stderr, "spillway_sim: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  if (!svg_path.empty()) {
    // The incident scenario's window is the incident itself.
    ScenarioSpec incident;
    for (const ScenarioSpec& s : BuildScenarios(options.scenario)) {
      if (s.name == "incident") incident = s;
    }
    const std::string svg =
        IncidentSvg(report->incident_runs, incident.from, incident.to);
    if (absl::Status s = WriteFile(svg_path, svg); !s.ok()) {
      std::fprintf(stderr, "spillway_sim: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace spillway::sim

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "spillway's overload simulator: scenarios x contenders on a simulated "
      "database with a knee. See bench/sim/*.h.");
  absl::ParseCommandLine(argc, argv);
  return spillway::sim::Main();
}
