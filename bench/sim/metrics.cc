#include "bench/sim/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace spillway::sim {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Whole 1-second bins inside [from, to): [first, last).
struct BinRange {
  int first;
  int last;
  int size() const { return std::max(0, last - first); }
};

BinRange Inside(SimTime from, SimTime to, int bins) {
  BinRange r;
  r.first = std::clamp(static_cast<int>(std::ceil(from / kBinWidth)), 0, bins);
  r.last = std::clamp(static_cast<int>(std::floor(to / kBinWidth)), 0, bins);
  return r;
}

int64_t Sum(const std::vector<int64_t>& v, BinRange r) {
  int64_t sum = 0;
  for (int b = r.first; b < r.last; ++b) sum += v[b];
  return sum;
}

// The sum over the selected priorities of one Bins field.
std::vector<int64_t> Select(const RunResult& run,
                            std::optional<Priority> priority,
                            std::vector<int64_t> Bins::*field) {
  std::vector<int64_t> out((run.bins[0].*field).size(), 0);
  for (int p = 0; p < kNumPriorities; ++p) {
    if (priority.has_value() && static_cast<int>(*priority) != p) continue;
    const std::vector<int64_t>& v = run.bins[p].*field;
    for (size_t b = 0; b < v.size(); ++b) out[b] += v[b];
  }
  return out;
}

double Mean(const std::vector<double>& g, BinRange r) {
  if (r.size() == 0) return kNaN;
  double sum = 0.0;
  for (int b = r.first; b < r.last; ++b) sum += g[b];
  return sum / r.size();
}

// Centered 3-bin mean of g at b, not reaching outside `range`.
double Smoothed(const std::vector<double>& g, BinRange range, int b) {
  const int lo = std::max(b - 1, range.first);
  const int hi = std::min(b + 1, range.last - 1);
  double sum = 0.0;
  for (int i = lo; i <= hi; ++i) sum += g[i];
  return sum / (hi - lo + 1);
}

// Seconds from `change` to the start of the first bin of `range` from which
// `in_band` holds for the smoothed goodput to the end; +inf if the last bin
// is out of the band.
template <typename InBand>
double SettleTime(const std::vector<double>& g, BinRange range, SimTime change,
                  InBand in_band) {
  if (range.size() == 0) return kNaN;
  int settled = range.first;
  for (int b = range.first; b < range.last; ++b) {
    if (!in_band(Smoothed(g, range, b))) settled = b + 1;
  }
  if (settled >= range.last) return kInf;
  return std::max(0.0, settled * kBinWidth.count() - change.count());
}

}  // namespace

double NearestRank(std::vector<double>& values, double q) {
  if (values.empty()) return kNaN;
  const size_t n = values.size();
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(n)));
  rank = std::clamp<size_t>(rank, 1, n);
  std::nth_element(values.begin(), values.begin() + (rank - 1), values.end());
  return values[rank - 1];
}

std::vector<double> GoodputPerSecond(const RunResult& run,
                                     std::optional<Priority> priority) {
  const std::vector<int64_t> successes =
      Select(run, priority, &Bins::successes);
  std::vector<double> g(successes.size());
  for (size_t b = 0; b < g.size(); ++b) {
    g[b] = static_cast<double>(successes[b]) / kBinWidth.count();
  }
  return g;
}

ScenarioMetrics Measure(const RunResult& run, const ScenarioSpec& scenario,
                        std::optional<Priority> priority) {
  ScenarioMetrics m;
  m.scenario = scenario.name;
  m.contender = priority.has_value()
                    ? absl::StrCat(run.contender, ":", PriorityName(*priority))
                    : run.contender;

  const int bins = static_cast<int>(run.bins[0].attempts.size());
  const BinRange window = Inside(scenario.from, scenario.to, bins);
  const double seconds = window.size() * kBinWidth.count();
  const double peak = run.peak * scenario.peak_factor;

  const int64_t arrivals = Sum(Select(run, priority, &Bins::arrivals), window);
  m.attempts = Sum(Select(run, priority, &Bins::attempts), window);
  m.successes = Sum(Select(run, priority, &Bins::successes), window);
  m.gave_up = Sum(Select(run, priority, &Bins::gave_up), window);
  m.timeouts = Sum(Select(run, priority, &Bins::timeouts), window);
  const int64_t rejected = Sum(Select(run, priority, &Bins::rejected), window);

  if (priority.has_value()) {
    m.goodput_pct = arrivals > 0 ? 100.0 * m.successes / arrivals : kNaN;
  } else {
    m.goodput_pct = seconds > 0 ? 100.0 * m.successes / seconds / peak : kNaN;
  }
  m.offered_pct = seconds > 0 ? 100.0 * arrivals / seconds / peak : kNaN;
  m.rejected_pct = m.attempts > 0 ? 100.0 * rejected / m.attempts : 0.0;

  // Latency percentiles over attempts ending inside the window.
  const double from_s = window.first * kBinWidth.count();
  const double to_s = window.last * kBinWidth.count();
  std::vector<double> latencies_ms;
  for (int p = 0; p < kNumPriorities; ++p) {
    if (priority.has_value() && static_cast<int>(*priority) != p) continue;
    for (const LatencySample& s : run.latencies[p]) {
      if (s.at_s >= from_s && s.at_s < to_s) {
        latencies_ms.push_back(1000.0 * s.latency_s);
      }
    }
  }
  m.p50_ms = NearestRank(latencies_ms, 0.50);
  m.p99_ms = NearestRank(latencies_ms, 0.99);

  // Convergence.
  const std::vector<double> g = GoodputPerSecond(run, priority);
  const BinRange after = {Inside(scenario.change, scenario.to, bins).first,
                          window.last};
  if (scenario.converge_rule == ConvergeRule::kPlateau) {
    const int tail = std::max(1, std::min(10, after.size() / 3));
    const double plateau = Mean(g, {after.last - tail, after.last});
    const double band = 0.05 * peak;
    m.converge_s = SettleTime(g, after, scenario.change, [&](double s) {
      return std::abs(s - plateau) <= band;
    });
  } else {
    const double baseline =
        Mean(g, Inside(scenario.baseline_from, scenario.baseline_to, bins));
    m.converge_s = SettleTime(g, after, scenario.change,
                              [&](double s) { return s >= 0.95 * baseline; });
  }

  // Per instance, all priorities (the run does not keep them by priority).
  for (int i = 0; !priority.has_value() && i < run.instances; ++i) {
    const int64_t a = Sum(run.instance_attempts[i], window);
    const int64_t r = Sum(run.instance_rejected[i], window);
    m.instance_rejected_pct.push_back(a > 0 ? 100.0 * r / a : 0.0);
  }

  // Time series means.
  int64_t points = 0;
  double limit_sum = 0.0;
  double in_service = 0.0;
  for (const SeriesPoint& p : run.series) {
    if (p.at.count() >= from_s && p.at.count() < to_s) {
      ++points;
      limit_sum += static_cast<double>(p.limit_sum);
      in_service += p.in_service;
    }
  }
  if (points > 0) {
    m.mean_limit_sum = limit_sum / points;
    m.mean_in_service = in_service / points;
  }
  return m;
}

}  // namespace spillway::sim
