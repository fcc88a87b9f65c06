// Report: the overload simulator's output formats.
//
//   MarkdownTable  the results table printed on stdout: one row per scenario
//                  and contender, the columns of metrics.h.
//   DetailsTable   a second markdown table with what explains the first:
//                  offered load, attempts, writes given up, mean sum of
//                  limits, mean writes in the database, rejections per
//                  instance.
//   Csv            the same rows for scripts, with the header exactly
//                  `scenario,contender,goodput_pct,p50_ms,p99_ms,
//                  rejected_pct,timeouts,converge_s` (one line); "inf" for
//                  a convergence that never happened, "nan" for an
//                  undefined percentile.
//   IncidentSvg    a self-contained SVG: goodput per second (% of peak) and
//                  the sum of the instances' limits over the incident run,
//                  one line per contender, with axes, the incident shaded,
//                  N* marked and a legend. Contenders without a limit
//                  (FixedLimit at kMaxConcurrencyLimit) appear only in the
//                  goodput panel.
//
// Every number is formatted with a fixed precision, so equal results print
// equal text.
//
// Thread safety: pure functions; thread-safe.

#ifndef SPILLWAY_BENCH_SIM_REPORT_H_
#define SPILLWAY_BENCH_SIM_REPORT_H_

#include <string>
#include <vector>

#include "bench/sim/metrics.h"
#include "bench/sim/sim_time.h"
#include "bench/sim/simulation.h"

namespace spillway::sim {

// The exact CSV header line (without the newline).
inline constexpr char kCsvHeader[] =
    "scenario,contender,goodput_pct,p50_ms,p99_ms,rejected_pct,timeouts,"
    "converge_s";

std::string MarkdownTable(const std::vector<ScenarioMetrics>& rows);
std::string DetailsTable(const std::vector<ScenarioMetrics>& rows);
std::string Csv(const std::vector<ScenarioMetrics>& rows);

// `runs`: the incident run of each contender, all of one RunSpec.
// `incident_from`, `incident_to`: the incident, shaded on both panels.
std::string IncidentSvg(const std::vector<RunResult>& runs,
                        SimTime incident_from, SimTime incident_to);

}  // namespace spillway::sim

#endif  // SPILLWAY_BENCH_SIM_REPORT_H_
