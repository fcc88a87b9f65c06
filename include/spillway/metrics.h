// MetricsSink: where spillway reports its decisions.
//
// A sink hands out handles — a counter, a gauge or a histogram bound to one
// metric definition (from `spillway/metric_names.h`) and one set of label
// values. Components bind every handle they need once, at construction; the
// hot path then only calls `Increment`, `Set` or `Observe` on a handle it
// already holds: no lock, no allocation and no name lookup, as with
// prometheus-cpp's families.
//
//   spillway::MetricsSink& sink = ...;  // e.g. a Prometheus sink
//   spillway::CounterHandle* admitted = sink.Counter(
//       spillway::metrics::kAdmitted, {"orders", "token_bucket", "any"});
//   admitted->Increment();
//
// `NoopMetricsSink()` is the default of every component: its handles do
// nothing. `spillway::testing::InMemoryMetricsSink` records values for tests.
//
// Thread safety: binding (`Counter`, `Gauge`, `Histogram`) is thread-safe but
// may lock and allocate; handle methods are thread-safe and must be cheap
// (lock-free, allocation-free) in every implementation.

#ifndef SPILLWAY_METRICS_H_
#define SPILLWAY_METRICS_H_

#include <string>
#include <vector>

#include "spillway/metric_names.h"

namespace spillway {

class CounterHandle {
 public:
  virtual ~CounterHandle() = default;
  // Adds `v` (>= 0). Thread-safe.
  virtual void Increment(double v = 1.0) = 0;
};

class GaugeHandle {
 public:
  virtual ~GaugeHandle() = default;
  // Sets the value. Thread-safe.
  virtual void Set(double v) = 0;
};

class HistogramHandle {
 public:
  virtual ~HistogramHandle() = default;
  // Records one observation. Thread-safe.
  virtual void Observe(double v) = 0;
};

// Label values, in the order of `MetricDef::labels`.
using LabelValues = std::vector<std::string>;

class MetricsSink {
 public:
  virtual ~MetricsSink() = default;

  // Binds a handle to `def` with `labels` (one value per label name of
  // `def`). Binding the same definition and labels twice returns a handle to
  // the same series. The handle lives as long as the sink; the sink must
  // outlive every component that reports into it. Thread-safe.
  virtual CounterHandle* Counter(const MetricDef& def,
                                 const LabelValues& labels) = 0;
  virtual GaugeHandle* Gauge(const MetricDef& def,
                             const LabelValues& labels) = 0;
  virtual HistogramHandle* Histogram(const MetricDef& def,
                                     const LabelValues& labels) = 0;
};

// A sink whose handles do nothing. Stateless; the process-wide instance is
// the default of every component. Thread-safe.
MetricsSink& NoopMetricsSink();

}  // namespace spillway

#endif  // SPILLWAY_METRICS_H_
