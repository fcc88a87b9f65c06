// The overload simulator end to end: determinism, accounting, and what each
// contender does in the incident. Fixed seeds and simulated time only;
// phases are shortened with duration_scale so that each test takes well
// under a second in an optimized build.

#include "bench/sim/simulation.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/sim/contenders.h"
#include "bench/sim/metrics.h"
#include "bench/sim/report.h"
#include "bench/sim/runner.h"
#include "bench/sim/scenario.h"
#include "gtest/gtest.h"

namespace spillway::sim {
namespace {

// The incident at a quarter length: 2.5 s before, 15 s of incident, 15 s
// after.
constexpr double kIncidentScale = 0.25;

RunnerOptions Options(double scale, uint64_t seed = 1) {
  RunnerOptions o;
  o.scenario.duration_scale = scale;
  o.simulation.seed = seed;
  return o;
}

RunSpec FindRun(const RunnerOptions& o, const std::string& name) {
  for (const RunSpec& r : BuildRuns(o.scenario, o.simulation.instances)) {
    if (r.name == name) return r;
  }
  ADD_FAILURE() << "no run " << name;
  return RunSpec();
}

RunResult MustSimulate(const RunnerOptions& o, const std::string& run,
                       const std::string& contender) {
  const Contender* c = FindContender(contender);
  EXPECT_NE(c, nullptr) << contender;
  absl::StatusOr<RunResult> r = Simulate(o.simulation, FindRun(o, run), *c);
  EXPECT_TRUE(r.ok()) << r.status();
  return *std::move(r);
}

int64_t Total(const std::vector<int64_t>& v) {
  int64_t sum = 0;
  for (int64_t x : v) sum += x;
  return sum;
}

// ---- Determinism ------------------------------------------------------------

bool SameRun(const RunResult& a, const RunResult& b) {
  for (int p = 0; p < kNumPriorities; ++p) {
    const Bins& x = a.bins[p];
    const Bins& y = b.bins[p];
    if (x.arrivals != y.arrivals || x.attempts != y.attempts ||
        x.rejected != y.rejected || x.successes != y.successes ||
        x.timeouts != y.timeouts || x.gave_up != y.gave_up) {
      return false;
    }
    if (a.latencies[p].size() != b.latencies[p].size()) return false;
    for (size_t i = 0; i < a.latencies[p].size(); ++i) {
      if (a.latencies[p][i].at_s != b.latencies[p][i].at_s ||
          a.latencies[p][i].latency_s != b.latencies[p][i].latency_s) {
        return false;
      }
    }
  }
  if (a.series.size() != b.series.size()) return false;
  for (size_t i = 0; i < a.series.size(); ++i) {
    if (a.series[i].at != b.series[i].at ||
        a.series[i].limit_sum != b.series[i].limit_sum ||
        a.series[i].in_service != b.series[i].in_service) {
      return false;
    }
  }
  return a.instance_attempts == b.instance_attempts &&
         a.instance_rejected == b.instance_rejected &&
         a.abandoned_completions == b.abandoned_completions &&
         a.events == b.events;
}

TEST(DeterminismTest, SameSeedGivesTheSameRun) {
  const RunnerOptions o = Options(0.1, /*seed=*/42);
  // AIMD: its limit depends on every latency, so any divergence shows.
  const RunResult a = MustSimulate(o, "incident", "aimd");
  const RunResult b = MustSimulate(o, "incident", "aimd");
  EXPECT_GT(a.events, 10000);
  EXPECT_TRUE(SameRun(a, b));
}

TEST(DeterminismTest, AnotherSeedGivesAnotherRun) {
  const RunResult a = MustSimulate(Options(0.1, 1), "incident", "aimd");
  const RunResult b = MustSimulate(Options(0.1, 2), "incident", "aimd");
  EXPECT_FALSE(SameRun(a, b));
}

TEST(DeterminismTest, SameSeedGivesTheSameReport) {
  const RunnerOptions o = Options(0.05, /*seed=*/7);
  absl::StatusOr<Report> a = RunScenarios(o);
  absl::StatusOr<Report> b = RunScenarios(o);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(Csv(a->rows), Csv(b->rows));
  EXPECT_EQ(MarkdownTable(a->rows) + DetailsTable(a->rows),
            MarkdownTable(b->rows) + DetailsTable(b->rows));
}

// ---- The report's shape -----------------------------------------------------

TEST(RunnerTest, OneRowPerScenarioAndContenderPlusCriticalRows) {
  absl::StatusOr<Report> report = RunScenarios(Options(0.05));
  ASSERT_TRUE(report.ok()) << report.status();
  std::vector<std::string> keys;
  for (const ScenarioMetrics& m : report->rows) {
    keys.push_back(m.scenario + "/" + m.contender);
  }
  std::vector<std::string> expected;
  for (const std::string& s : ScenarioNames()) {
    for (const Contender& c : Contenders()) {
      expected.push_back(s + "/" + c.name);
      if (s == "priorities") expected.push_back(s + "/" + c.name + ":critical");
    }
  }
  EXPECT_EQ(keys, expected);
}

TEST(RunnerTest, UnknownNamesAreErrors) {
  RunnerOptions o = Options(0.05);
  o.scenarios = {"steady", "typo"};
  EXPECT_FALSE(RunScenarios(o).ok());
  o = Options(0.05);
  o.contenders = {"typo"};
  EXPECT_FALSE(RunScenarios(o).ok());
}

// ---- Accounting -------------------------------------------------------------

// Every attempt ends exactly once — rejected, succeeded or timed out — or
// is still in flight when the run stops, which the limit bounds; no logical
// write makes more than 1 + max_retries attempts.
TEST(AccountingTest, EveryAttemptEndsOnce) {
  const RunnerOptions o = Options(kIncidentScale);
  const RunResult r = MustSimulate(o, "incident", "fixed");
  const int limit_sum = kBestFixedLimit * o.simulation.instances;
  const Bins& b = r.bins[static_cast<int>(Priority::kNormal)];
  const int64_t attempts = Total(b.attempts);
  const int64_t ended =
      Total(b.rejected) + Total(b.successes) + Total(b.timeouts);
  EXPECT_GE(attempts - ended, 0);
  EXPECT_LE(attempts - ended, limit_sum);
  EXPECT_LE(attempts,
            Total(b.arrivals) * (1 + o.simulation.client.max_retries));
  EXPECT_GT(attempts, Total(b.arrivals));  // Rejections were retried.
  EXPECT_LE(Total(b.gave_up), Total(b.arrivals));
  int64_t by_instance = 0;
  for (const auto& v : r.instance_attempts) by_instance += Total(v);
  EXPECT_EQ(by_instance, attempts);
}

// A fixed limit with no timeouts keeps the database at or below the sum of
// the limits, all run long: the limiter is really in the path.
TEST(AccountingTest, FixedLimitBoundsTheDatabase) {
  const RunnerOptions o = Options(kIncidentScale);
  const RunResult r = MustSimulate(o, "incident", "fixed");
  ASSERT_EQ(Total(r.bins[static_cast<int>(Priority::kNormal)].timeouts), 0);
  for (const SeriesPoint& p : r.series) {
    EXPECT_EQ(p.limit_sum, kBestFixedLimit * o.simulation.instances);
    EXPECT_LE(p.in_service, p.limit_sum) << "at " << p.at.count();
  }
}

// The misrouted group gets 3x its share: 6 of 12 weight units for 2 of 8
// instances, i.e. 25% of attempts each instead of 12.5%.
TEST(AccountingTest, BalancerFollowsTheWeights) {
  const RunnerOptions o = Options(kIncidentScale);
  const RunResult r = MustSimulate(o, "incident", "fixed");
  int64_t all = 0;
  for (const auto& v : r.instance_attempts) {
    all += Total({v.begin() + 3, v.begin() + 17});  // Inside the incident.
  }
  const auto& first = r.instance_attempts[0];
  const auto& last = r.instance_attempts[7];
  const double first_share =
      static_cast<double>(Total({first.begin() + 3, first.begin() + 17})) / all;
  const double last_share =
      static_cast<double>(Total({last.begin() + 3, last.begin() + 17})) / all;
  EXPECT_NEAR(first_share, 0.25, 0.01);
  EXPECT_NEAR(last_share, 1.0 / 12, 0.01);
}

TEST(SteadyTest, WithoutProtectionTheDatabaseServesTheOfferedLoad) {
  RunnerOptions o = Options(0.5);
  o.scenarios = {"steady"};
  o.contenders = {"none"};
  absl::StatusOr<Report> report = RunScenarios(o);
  ASSERT_TRUE(report.ok()) << report.status();
  const ScenarioMetrics& m = report->rows.at(0);
  EXPECT_NEAR(m.goodput_pct, 70.0, 3.0);
  EXPECT_EQ(m.rejected_pct, 0.0);
  EXPECT_EQ(m.timeouts, 0);
  // About 7 writes in the database: 5 ms alone, about 7.5 ms at N = 7.
  EXPECT_GT(m.p50_ms, 5.0);
  EXPECT_LT(m.p99_ms, 30.0);
}

// ---- The incident, by contender ---------------------------------------------

// Goodput during the 60 s (here 15 s) of the incident, % of peak. Add a row
// per contender; bounds say what the contender must achieve, with room for
// seeds.
struct IncidentCase {
  const char* contender;
  double min_goodput_pct;
  double max_goodput_pct;
};

const IncidentCase kIncidentCases[] = {
    // Unprotected, the database collapses past its knee and stays there.
    {"none", 0.0, 50.0},
    // The best fixed limit for steady keeps the database near N*.
    {"fixed", 85.0, 100.5},
    // AIMD backs off on 100 ms latencies: far better than nothing, well
    // below the peak (it settles where latency is ~100 ms, N ~ 80).
    {"aimd", 50.0, 80.0},
    // Netflix's Vegas and Gradient2 and Envoy's gradient, at their sources'
    // defaults: each keeps far more than N* in flight (or, for Envoy's and
    // Gradient2, lets abandoned writes pile up), well below the peak.
    {"vegas", 0.0, 80.0},
    {"gradient2", 0.0, 50.0},
    {"envoy_gradient", 0.0, 50.0},
    // spillway's default holds the database near its knee.
    {"spillway", 95.0, 100.5},
    // The same given the database's write count: its probe finds no
    // throughput beyond the knee worth a wider band for long.
    {"spillway_rate", 95.0, 100.5},
};

// Names the case in test output by its contender.
void PrintTo(const IncidentCase& c, std::ostream* os) { *os << c.contender; }

class IncidentTest : public ::testing::TestWithParam<IncidentCase> {};

TEST_P(IncidentTest, GoodputDuringTheIncident) {
  const IncidentCase& c = GetParam();
  RunnerOptions o = Options(kIncidentScale);
  o.scenarios = {"incident"};
  o.contenders = {c.contender};
  absl::StatusOr<Report> report = RunScenarios(o);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->rows.size(), 1u);
  const ScenarioMetrics& m = report->rows[0];
  EXPECT_EQ(m.scenario, "incident");
  EXPECT_NEAR(m.offered_pct, 300.0, 10.0);
  EXPECT_GE(m.goodput_pct, c.min_goodput_pct);
  EXPECT_LE(m.goodput_pct, c.max_goodput_pct);
}

INSTANTIATE_TEST_SUITE_P(
    Contenders, IncidentTest, ::testing::ValuesIn(kIncidentCases),
    [](const ::testing::TestParamInfo<IncidentCase>& param_info) {
      return std::string(param_info.param.contender);
    });

// Every registered contender has a row above.
TEST(IncidentCasesTest, EveryContenderHasAnExpectation) {
  for (const Contender& c : Contenders()) {
    EXPECT_TRUE(std::any_of(
        std::begin(kIncidentCases), std::end(kIncidentCases),
        [&c](const IncidentCase& k) { return c.name == k.contender; }))
        << c.name;
  }
}

// Without protection the collapse outlives its cause: abandoned writes keep
// the database past its knee after the balancer is fixed.
TEST(RecoveryTest, UnprotectedDoesNotRecover) {
  RunnerOptions o = Options(kIncidentScale);
  o.scenarios = {"recovery"};
  o.contenders = {"none", "fixed"};
  absl::StatusOr<Report> report = RunScenarios(o);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->rows.size(), 2u);
  EXPECT_LT(report->rows[0].goodput_pct, 10.0);
  EXPECT_TRUE(std::isinf(report->rows[0].converge_s));
  EXPECT_NEAR(report->rows[1].goodput_pct, 70.0, 3.0);
  EXPECT_LE(report->rows[1].converge_s, 2.0);
}

// spillway's default algorithm against the figures it must reach, every
// scenario at full length, seed 1.
TEST(SpillwayDefaultTest, ShedsBeforeTheCascade) {
  RunnerOptions o = Options(1.0);
  o.contenders = {"spillway"};
  absl::StatusOr<Report> report = RunScenarios(o);
  ASSERT_TRUE(report.ok()) << report.status();
  auto row = [&](const std::string& scenario) -> const ScenarioMetrics& {
    for (const ScenarioMetrics& m : report->rows) {
      if (m.scenario == scenario && m.contender == "spillway") return m;
    }
    ADD_FAILURE() << "no row " << scenario;
    return report->rows[0];
  };
  const ScenarioMetrics& steady = row("steady");
  const ScenarioMetrics& incident = row("incident");
  // The incident: 3x peak, one group misrouted. Goodput >= 95% of peak,
  // p99 within 2x of the steady p99, nobody times out.
  EXPECT_GE(incident.goodput_pct, 95.0);
  EXPECT_LE(incident.p99_ms, 2.0 * steady.p99_ms);
  EXPECT_EQ(incident.timeouts, 0);
  // The database at half capacity: >= 90% of what it can still do. The
  // fleet first falls to its floor (latency at one write per instance is
  // above the old target); the overload detector names database_slowdown
  // (demand unchanged) and the hint re-measures each KneeLimit's baseline
  // once, so the fleet climbs back to the database's best concurrency.
  // Without the hint it served 70%.
  EXPECT_GE(row("slowdown").goodput_pct, 90.0);
  // After the balancer is fixed: back within 10 s.
  EXPECT_LE(row("recovery").converge_s, 10.0);
  // Priorities: the goal is 100% of critical demand; with seed 1 it serves
  // 99.9% (99.7% to 99.9% over seeds 1-3): a few critical writes still fail
  // all four attempts, refused on instances whose limit fell to 1 or 2 and
  // is filled by critical writes (or, at limit 1, by the one batch write
  // its cap allows). Pinned here.
  for (const ScenarioMetrics& m : report->rows) {
    if (m.contender == "spillway:critical") {
      EXPECT_GE(m.goodput_pct, 99.5);
    }
  }
}

// Real incidents last longer than a minute (the seed incident: an hour).
// The same scenarios at 4x length (a 240 s incident, a 240 s slowdown) must
// hold as well as the short ones: KneeLimit's baseline ages only in calm
// windows, so a long overload cannot ratchet it up. With wall-time aging the
// 240 s incident ended at 78% of peak with p99 198 ms (14x steady).
TEST(SpillwayDefaultTest, LongOverloadsDoNotRatchetTheBaseline) {
  RunnerOptions o = Options(4.0);
  o.scenarios = {"steady", "incident", "slowdown"};
  o.contenders = {"spillway"};
  absl::StatusOr<Report> report = RunScenarios(o);
  ASSERT_TRUE(report.ok()) << report.status();
  const ScenarioMetrics* steady = nullptr;
  for (const ScenarioMetrics& m : report->rows) {
    if (m.scenario == "steady") steady = &m;
  }
  ASSERT_NE(steady, nullptr);
  for (const ScenarioMetrics& m : report->rows) {
    SCOPED_TRACE(m.scenario);
    if (m.scenario == "incident") {
      EXPECT_GE(m.goodput_pct, 95.0);
      EXPECT_LE(m.p99_ms, 2.0 * steady->p99_ms);
    }
    if (m.scenario == "slowdown") {
      EXPECT_GE(m.goodput_pct, 90.0);
    }
    EXPECT_EQ(m.timeouts, 0);
  }
}

// Write latencies that vary (exponential service times, as real databases
// have) must not read as congestion: at 70% of peak the default sheds
// nothing, and the incident and slowdown still keep most of the peak. A
// baseline taken from the fastest single write, compared with window
// averages, shed two thirds of the writes at steady load here.
TEST(ServiceTimeVarianceTest, NoSheddingAtSteadyLoadAndTheIncidentHolds) {
  RunnerOptions o = Options(1.0);
  o.simulation.exponential_work = true;
  o.contenders = {"spillway"};
  absl::StatusOr<Report> report = RunScenarios(o);
  ASSERT_TRUE(report.ok()) << report.status();
  for (const ScenarioMetrics& m : report->rows) {
    SCOPED_TRACE(m.scenario + " " + m.contender);
    if (m.contender != "spillway") continue;
    if (m.scenario == "steady") {
      EXPECT_LE(m.rejected_pct, 1.0);
      EXPECT_NEAR(m.goodput_pct, 70.0, 2.0);
    }
    if (m.scenario == "incident" || m.scenario == "slowdown") {
      EXPECT_GE(m.goodput_pct, 90.0);
    }
    EXPECT_EQ(m.timeouts, 0);
  }
}

}  // namespace
}  // namespace spillway::sim
