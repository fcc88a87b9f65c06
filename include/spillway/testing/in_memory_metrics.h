// InMemoryMetricsSink: a MetricsSink that keeps every value for tests.
//
// Bind it into a component and read the metrics back by name and labels,
// exactly as a dashboard would:
//
//   spillway::testing::InMemoryMetricsSink sink;
//   auto limiter = spillway::ConcurrencyLimiter::Create(
//       {.name = "orders", .metrics = &sink});
//   ...
//   EXPECT_EQ(sink.CounterValue("spillway_admitted_total",
//                               {"orders", "concurrency_limit", "normal"}),
//             3);
//
// Binding checks the label count and the type against the definition and
// aborts with a message on a mismatch (a programming error in the caller).
//
// Thread safety: all methods are thread-safe. Handle updates are lock-free
// (atomics); binding and reading take a mutex.

#ifndef SPILLWAY_TESTING_IN_MEMORY_METRICS_H_
#define SPILLWAY_TESTING_IN_MEMORY_METRICS_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "spillway/metrics.h"

namespace spillway::testing {

struct HistogramSnapshot {
  int64_t count = 0;
  double sum = 0;
  // Cumulative counts per bucket upper bound, as in Prometheus, with the
  // +Inf bucket last (equal to `count`).
  std::vector<int64_t> cumulative;
};

// Label name and value pairs a series must carry to match.
using LabelMatch = std::vector<std::pair<std::string, std::string>>;

class InMemoryMetricsSink final : public MetricsSink {
 public:
  InMemoryMetricsSink();
  ~InMemoryMetricsSink() override;

  CounterHandle* Counter(const MetricDef& def,
                         const LabelValues& labels) override;
  GaugeHandle* Gauge(const MetricDef& def, const LabelValues& labels) override;
  HistogramHandle* Histogram(const MetricDef& def,
                             const LabelValues& labels) override;

  // The value of one series; nullopt if it was never bound. Thread-safe.
  std::optional<double> CounterValue(absl::string_view name,
                                     const LabelValues& labels) const;
  std::optional<double> GaugeValue(absl::string_view name,
                                   const LabelValues& labels) const;
  std::optional<HistogramSnapshot> HistogramValue(
      absl::string_view name, const LabelValues& labels) const;

  // Sum of a counter over every series whose labels include `match`.
  // Thread-safe.
  double CounterSum(absl::string_view name, const LabelMatch& match = {}) const;

  // Names of every metric bound so far, sorted, without repeats.
  // Thread-safe.
  std::vector<std::string> MetricNames() const;

 private:
  struct Series;
  Series* Bind(const MetricDef& def, MetricType type,
               const LabelValues& labels);
  const Series* Find(absl::string_view name, const LabelValues& labels) const;

  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Series>> series_;
};

}  // namespace spillway::testing

#endif  // SPILLWAY_TESTING_IN_MEMORY_METRICS_H_
