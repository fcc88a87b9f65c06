#include "spillway/prometheus/metrics_sink.h"

#include <atomic>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/mutex.h"
#include "prometheus/text_serializer.h"

namespace spillway::prometheus {
namespace {

// Adds with a compare-exchange loop: std::atomic<double>::fetch_add is
// C++20, and the library builds as C++17. Lock-free on every platform with
// a 64-bit compare-exchange.
void AtomicAdd(std::atomic<double>& a, double v) {
  double old = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(old, old + v, std::memory_order_relaxed)) {
  }
}

class AtomicCounter final : public CounterHandle {
 public:
  void Increment(double v) override {
    if (v > 0) AtomicAdd(value_, v);  // Counters never go down.
  }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class AtomicGauge final : public GaugeHandle {
 public:
  void Set(double v) override { value_.store(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class AtomicHistogram final : public HistogramHandle {
 public:
  explicit AtomicHistogram(absl::Span<const double> bounds)
      : bounds_(bounds), counts_(bounds.size() + 1) {}

  void Observe(double v) override {
    // Linear scan: spillway's bucket tables are short (14 bounds).
    size_t i = 0;
    while (i < bounds_.size() && v > bounds_[i]) ++i;
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    AtomicAdd(sum_, v);
  }

  ::prometheus::ClientMetric::Histogram Snapshot() const {
    ::prometheus::ClientMetric::Histogram h;
    uint64_t cumulative = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      cumulative += counts_[i].load(std::memory_order_relaxed);
      ::prometheus::ClientMetric::Bucket b;
      b.cumulative_count = cumulative;
      b.upper_bound = i < bounds_.size()
                          ? bounds_[i]
                          : std::numeric_limits<double>::infinity();
      h.bucket.push_back(b);
    }
    h.sample_count = cumulative;
    h.sample_sum = sum_.load(std::memory_order_relaxed);
    return h;
  }

 private:
  const absl::Span<const double> bounds_;     // The table's: static storage.
  std::deque<std::atomic<uint64_t>> counts_;  // Last: the +Inf bucket.
  std::atomic<double> sum_{0.0};
};

::prometheus::MetricType TypeOf(MetricType t) {
  switch (t) {
    case MetricType::kCounter:
      return ::prometheus::MetricType::Counter;
    case MetricType::kGauge:
      return ::prometheus::MetricType::Gauge;
    case MetricType::kHistogram:
      return ::prometheus::MetricType::Histogram;
  }
  return ::prometheus::MetricType::Untyped;
}

// One series: its labels and exactly one of the three handles.
struct Series {
  std::vector<::prometheus::ClientMetric::Label> labels;
  std::unique_ptr<AtomicCounter> counter;
  std::unique_ptr<AtomicGauge> gauge;
  std::unique_ptr<AtomicHistogram> histogram;
};

struct Family {
  const MetricDef* def;
  std::vector<std::unique_ptr<Series>> series;  // In binding order.
};

}  // namespace

struct PrometheusMetricsSink::State {
  mutable internal::Mutex mu;
  // Families in order of first binding; the map finds a family by name and
  // a series by "name\0label\0label...".
  std::vector<std::unique_ptr<Family>> families ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, Family*> by_name ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, Series*> by_key ABSL_GUARDED_BY(mu);

  Series* Bind(const MetricDef& def, const LabelValues& values) {
    LabelValues v = values;
    v.resize(def.labels.size());
    const std::string name(def.name);
    const std::string key = absl::StrCat(
        name, std::string(1, '\0'), absl::StrJoin(v, std::string(1, '\0')));
    internal::MutexLock lock(&mu);
    if (auto it = by_key.find(key); it != by_key.end()) return it->second;
    Family*& family = by_name[name];
    if (family == nullptr) {
      families.push_back(std::make_unique<Family>(Family{&def, {}}));
      family = families.back().get();
    }
    auto series = std::make_unique<Series>();
    for (size_t i = 0; i < v.size(); ++i) {
      series->labels.push_back({std::string(def.labels[i]), v[i]});
    }
    // The family's first definition decides the type, so one name is never
    // exposed with two types.
    switch (family->def->type) {
      case MetricType::kCounter:
        series->counter = std::make_unique<AtomicCounter>();
        break;
      case MetricType::kGauge:
        series->gauge = std::make_unique<AtomicGauge>();
        break;
      case MetricType::kHistogram:
        series->histogram =
            std::make_unique<AtomicHistogram>(family->def->buckets);
        break;
    }
    Series* out = series.get();
    family->series.push_back(std::move(series));
    by_key.emplace(key, out);
    return out;
  }
};

// Handles of the wrong type for a family (a caller asking for a gauge of a
// counter's name) report into these, which nothing exposes.
namespace {
AtomicCounter& DiscardCounter() {
  static AtomicCounter* const c = new AtomicCounter();
  return *c;
}
AtomicGauge& DiscardGauge() {
  static AtomicGauge* const g = new AtomicGauge();
  return *g;
}
AtomicHistogram& DiscardHistogram() {
  static AtomicHistogram* const h = new AtomicHistogram({});
  return *h;
}
}  // namespace

std::shared_ptr<PrometheusMetricsSink> PrometheusMetricsSink::Create() {
  return std::shared_ptr<PrometheusMetricsSink>(new PrometheusMetricsSink());
}

PrometheusMetricsSink::PrometheusMetricsSink()
    : state_(std::make_unique<State>()) {}

PrometheusMetricsSink::~PrometheusMetricsSink() = default;

CounterHandle* PrometheusMetricsSink::Counter(const MetricDef& def,
                                              const LabelValues& labels) {
  Series* s = state_->Bind(def, labels);
  return s->counter != nullptr ? s->counter.get() : &DiscardCounter();
}

GaugeHandle* PrometheusMetricsSink::Gauge(const MetricDef& def,
                                          const LabelValues& labels) {
  Series* s = state_->Bind(def, labels);
  return s->gauge != nullptr ? s->gauge.get() : &DiscardGauge();
}

HistogramHandle* PrometheusMetricsSink::Histogram(const MetricDef& def,
                                                  const LabelValues& labels) {
  Series* s = state_->Bind(def, labels);
  return s->histogram != nullptr ? s->histogram.get() : &DiscardHistogram();
}

std::vector<::prometheus::MetricFamily> PrometheusMetricsSink::Collect() const {
  std::vector<::prometheus::MetricFamily> out;
  internal::MutexLock lock(&state_->mu);
  for (const auto& family : state_->families) {
    ::prometheus::MetricFamily f;
    f.name = std::string(family->def->name);
    f.help = std::string(family->def->help);
    f.type = TypeOf(family->def->type);
    for (const auto& s : family->series) {
      ::prometheus::ClientMetric m;
      m.label = s->labels;
      if (s->counter != nullptr) m.counter.value = s->counter->value();
      if (s->gauge != nullptr) m.gauge.value = s->gauge->value();
      if (s->histogram != nullptr) m.histogram = s->histogram->Snapshot();
      f.metric.push_back(std::move(m));
    }
    out.push_back(std::move(f));
  }
  return out;
}

std::string ExpositionText(const ::prometheus::Collectable& collectable) {
  return ::prometheus::TextSerializer().Serialize(collectable.Collect());
}

}  // namespace spillway::prometheus
