#include "spillway/metrics.h"

namespace spillway {
namespace {

class NoopCounter final : public CounterHandle {
 public:
  void Increment(double) override {}
};
class NoopGauge final : public GaugeHandle {
 public:
  void Set(double) override {}
};
class NoopHistogram final : public HistogramHandle {
 public:
  void Observe(double) override {}
};

class NoopSink final : public MetricsSink {
 public:
  CounterHandle* Counter(const MetricDef&, const LabelValues&) override {
    return &counter_;
  }
  GaugeHandle* Gauge(const MetricDef&, const LabelValues&) override {
    return &gauge_;
  }
  HistogramHandle* Histogram(const MetricDef&, const LabelValues&) override {
    return &histogram_;
  }

 private:
  NoopCounter counter_;
  NoopGauge gauge_;
  NoopHistogram histogram_;
};

}  // namespace

MetricsSink& NoopMetricsSink() {
  static NoopSink* const sink = new NoopSink();
  return *sink;
}

}  // namespace spillway
