// PrometheusMetricsSink: spillway's metrics in Prometheus, through
// prometheus-cpp.
//
// A MetricsSink (spillway/metrics.h) that is also a prometheus::Collectable:
// give it to spillway components as their `metrics`, and register it on a
// prometheus::Exposer next to your own registry. Every metric comes from the
// one table in spillway/metric_names.h, with its help text, type, labels and
// histogram buckets.
//
//   auto sink = spillway::prometheus::PrometheusMetricsSink::Create();
//   auto throttle = spillway::WriteThrottle::Create(
//       {.name = "orders", .metrics = sink.get()});
//   prometheus::Exposer exposer("127.0.0.1:9464");
//   exposer.RegisterCollectable(sink);  // GET /metrics
//   // or, without HTTP: spillway::prometheus::ExpositionText(*sink)
//
// Why not prometheus-cpp's own families: in prometheus-cpp 1.0,
// Histogram::Observe takes a mutex, and spillway's hot path (admit and
// release) takes no lock. The sink keeps its own series instead: counters
// and gauges are one atomic double each, a histogram is one atomic count
// per bucket plus an atomic sum, all updated with relaxed atomics (a
// compare-exchange loop for the doubles). Collect() converts them to
// prometheus::MetricFamily values, which prometheus-cpp serializes.
//
// A scrape reads each atomic once; a histogram's count is the sum of its
// bucket counts read in that scrape, so buckets and count always agree,
// while its sum may lag by the observations racing the scrape.
//
// Thread safety: binding (Counter, Gauge, Histogram) and Collect take one
// mutex; handle methods are lock-free and allocation-free. All methods are
// thread-safe. The sink must outlive every component bound to it (hold the
// shared_ptr); the Exposer holds only a weak_ptr.

#ifndef SPILLWAY_PROMETHEUS_METRICS_SINK_H_
#define SPILLWAY_PROMETHEUS_METRICS_SINK_H_

#include <memory>
#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "spillway/metrics.h"

namespace spillway::prometheus {

class PrometheusMetricsSink final : public MetricsSink,
                                    public ::prometheus::Collectable {
 public:
  // An empty sink. Thread-safe.
  static std::shared_ptr<PrometheusMetricsSink> Create();

  ~PrometheusMetricsSink() override;
  PrometheusMetricsSink(const PrometheusMetricsSink&) = delete;
  PrometheusMetricsSink& operator=(const PrometheusMetricsSink&) = delete;

  // MetricsSink. A label list shorter than the definition's is padded with
  // empty values and a longer one truncated, so a caller's mistake shows as
  // an odd series rather than a crash. Thread-safe.
  CounterHandle* Counter(const MetricDef& def,
                         const LabelValues& labels) override;
  GaugeHandle* Gauge(const MetricDef& def, const LabelValues& labels) override;
  HistogramHandle* Histogram(const MetricDef& def,
                             const LabelValues& labels) override;

  // prometheus::Collectable: one family per bound definition, in the order
  // of the first binding, with every series bound so far. Thread-safe.
  std::vector<::prometheus::MetricFamily> Collect() const override;

 private:
  PrometheusMetricsSink();
  struct State;
  std::unique_ptr<State> state_;
};

// The Prometheus text exposition format (version 0.0.4) of `collectable`'s
// metrics, as served on /metrics. Thread-safe.
std::string ExpositionText(const ::prometheus::Collectable& collectable);

}  // namespace spillway::prometheus

#endif  // SPILLWAY_PROMETHEUS_METRICS_SINK_H_
