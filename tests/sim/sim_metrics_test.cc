// The overload simulator's measurements (metrics.h) on hand-built runs, and
// its schedules and output formats.

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "bench/sim/metrics.h"
#include "bench/sim/report.h"
#include "bench/sim/sim_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace spillway::sim {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(ScheduleTest, PiecewiseConstant) {
  const Schedule<double> s(
      {{SimTime(0), 0.7}, {SimTime(10), 3.0}, {SimTime(70), 0.7}});
  EXPECT_EQ(s.At(SimTime(0)), 0.7);
  EXPECT_EQ(s.At(SimTime(9.999)), 0.7);
  EXPECT_EQ(s.At(SimTime(10)), 3.0);
  EXPECT_EQ(s.At(SimTime(69.999)), 3.0);
  EXPECT_EQ(s.At(SimTime(70)), 0.7);
  EXPECT_EQ(s.At(SimTime(1e9)), 0.7);
  EXPECT_EQ(s.NextChangeAfter(SimTime(0)), SimTime(10));
  EXPECT_EQ(s.NextChangeAfter(SimTime(10)), SimTime(70));
  EXPECT_EQ(s.NextChangeAfter(SimTime(70)), kNever);
}

TEST(NearestRankTest, PicksTheRankedValue) {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);
  EXPECT_EQ(NearestRank(v, 0.50), 50);
  EXPECT_EQ(NearestRank(v, 0.99), 99);
  EXPECT_EQ(NearestRank(v, 1.0), 100);
  std::vector<double> one = {7};
  EXPECT_EQ(NearestRank(one, 0.99), 7);
  std::vector<double> none;
  EXPECT_TRUE(std::isnan(NearestRank(none, 0.5)));
}

// A run of 20 one-second bins with peak 100 writes/s: normal-priority
// successes per second 70 for bins 0-4, a dip to 20 for bins 5-9, then 95.
RunResult HandRun() {
  RunResult run;
  run.run = "hand";
  run.contender = "c";
  run.peak = 100;
  run.instances = 2;
  run.duration = SimTime(20);
  for (Bins& b : run.bins) {
    for (std::vector<int64_t>* v : {&b.arrivals, &b.attempts, &b.rejected,
                                    &b.successes, &b.timeouts, &b.gave_up}) {
      v->assign(20, 0);
    }
  }
  Bins& normal = run.bins[static_cast<int>(Priority::kNormal)];
  for (int b = 0; b < 20; ++b) {
    normal.successes[b] = b < 5 ? 70 : b < 10 ? 20 : 95;
    normal.arrivals[b] = 100;
    normal.attempts[b] = 100;
    normal.rejected[b] = 10;
    normal.timeouts[b] = 1;
  }
  Bins& critical = run.bins[static_cast<int>(Priority::kCritical)];
  critical.arrivals[12] = 10;
  critical.attempts[12] = 10;
  critical.successes[12] = 8;
  run.instance_attempts = {std::vector<int64_t>(20, 60),
                           std::vector<int64_t>(20, 50)};
  run.instance_rejected = {std::vector<int64_t>(20, 6),
                           std::vector<int64_t>(20, 4)};
  // Latencies 1..100 ms ending at 12.5 s, one ending outside the window.
  auto& latencies = run.latencies[static_cast<int>(Priority::kNormal)];
  for (int ms = 1; ms <= 100; ++ms) {
    latencies.push_back({12.5f, static_cast<float>(ms / 1000.0)});
  }
  latencies.push_back({25.0f, 5.0f});
  return run;
}

ScenarioSpec HandScenario(ConvergeRule rule) {
  ScenarioSpec s;
  s.name = "hand";
  s.run = "hand";
  s.from = SimTime(0);
  s.to = SimTime(20);
  s.change = SimTime(5);
  s.converge_rule = rule;
  s.baseline_from = SimTime(0);
  s.baseline_to = SimTime(5);
  return s;
}

TEST(MeasureTest, WindowTotals) {
  const ScenarioMetrics m =
      Measure(HandRun(), HandScenario(ConvergeRule::kPlateau));
  EXPECT_EQ(m.scenario, "hand");
  EXPECT_EQ(m.contender, "c");
  // (5 * 70 + 5 * 20 + 10 * 95 + 8) / 20 s / 100.
  EXPECT_DOUBLE_EQ(m.goodput_pct, 100.0 * 1408 / 20 / 100);
  EXPECT_EQ(m.attempts, 2010);
  EXPECT_DOUBLE_EQ(m.rejected_pct, 100.0 * 200 / 2010);
  EXPECT_EQ(m.timeouts, 20);
  EXPECT_NEAR(m.p50_ms, 50.0, 1e-4);
  EXPECT_NEAR(m.p99_ms, 99.0, 1e-4);
  EXPECT_THAT(m.instance_rejected_pct, ElementsAre(10.0, 8.0));
}

TEST(MeasureTest, PriorityBreakdownIsTheShareOfDemandServed) {
  const ScenarioMetrics m = Measure(
      HandRun(), HandScenario(ConvergeRule::kPlateau), Priority::kCritical);
  EXPECT_EQ(m.contender, "c:critical");
  EXPECT_DOUBLE_EQ(m.goodput_pct, 80.0);
  EXPECT_TRUE(std::isnan(m.p50_ms));
  EXPECT_TRUE(m.instance_rejected_pct.empty());
}

// After the change at 5 s: plateau = mean of the last 5 bins (a third of
// 15) = 95, band +-5. Centered means: bin 9 (20+20+95)/3 = 45, bin 10
// (20+95+95)/3 = 70: out; from bin 11 on 95: in. Settled at 11 s: 6 s.
TEST(MeasureTest, ConvergeToPlateau) {
  EXPECT_DOUBLE_EQ(
      Measure(HandRun(), HandScenario(ConvergeRule::kPlateau)).converge_s, 6.0);
}

// Baseline [0, 5) = 70; 95% = 66.5. Bin 9 (45) is below, bin 10 (70) is
// above and so is everything after: recovered at 10 s, 5 s after the change.
TEST(MeasureTest, ConvergeToBaseline) {
  EXPECT_DOUBLE_EQ(
      Measure(HandRun(), HandScenario(ConvergeRule::kRecovery)).converge_s,
      5.0);
}

TEST(MeasureTest, NeverConvergesIsInfinite) {
  RunResult run = HandRun();
  // A dip in the last two bins never recovers within the window.
  run.bins[static_cast<int>(Priority::kNormal)].successes[18] = 0;
  run.bins[static_cast<int>(Priority::kNormal)].successes[19] = 0;
  const ScenarioMetrics m = Measure(run, HandScenario(ConvergeRule::kRecovery));
  EXPECT_TRUE(std::isinf(m.converge_s));
}

TEST(ReportTest, CsvHeaderAndRows) {
  ScenarioMetrics m;
  m.scenario = "incident";
  m.contender = "fixed";
  m.goodput_pct = 99.8;
  m.p50_ms = 15.55;
  m.p99_ms = 16.0;
  m.rejected_pct = 90.25;
  m.timeouts = 3;
  m.converge_s = INFINITY;
  const std::vector<std::string> lines =
      absl::StrSplit(Csv({m}), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0],
            "scenario,contender,goodput_pct,p50_ms,p99_ms,rejected_pct,"
            "timeouts,converge_s");
  EXPECT_EQ(lines[1], "incident,fixed,99.80,15.55,16.00,90.25,3,inf");
  EXPECT_THAT(MarkdownTable({m}), HasSubstr("| incident | fixed | 99.8 |"));
}

TEST(ReportTest, SvgHasAxesLegendAndOneLinePerContender) {
  RunResult a = HandRun();
  a.contender = "alpha";
  a.peak_concurrency = 21.8;
  a.series = {{SimTime(0), 24, 3}, {SimTime(10), 30, 4}};
  RunResult b = a;
  b.contender = "beta";
  const std::string svg = IncidentSvg({a, b}, SimTime(5), SimTime(10));
  EXPECT_THAT(svg, StartsWith("<svg xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_THAT(svg, HasSubstr("time (s)"));
  EXPECT_THAT(svg, HasSubstr(">alpha<"));
  EXPECT_THAT(svg, HasSubstr(">beta<"));
  // Two goodput lines, two limit lines, two reference lines.
  size_t polylines = 0;
  for (size_t at = svg.find("<polyline"); at != std::string::npos;
       at = svg.find("<polyline", at + 1)) {
    ++polylines;
  }
  EXPECT_EQ(polylines, 6u);
  EXPECT_THAT(svg, HasSubstr("</svg>"));
}

}  // namespace
}  // namespace spillway::sim
