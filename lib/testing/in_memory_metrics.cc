#include "spillway/testing/in_memory_metrics.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace spillway::testing {
namespace {

void AtomicAdd(std::atomic<double>& target, double v) {
  double old = target.load(std::memory_order_relaxed);
  while (
      !target.compare_exchange_weak(old, old + v, std::memory_order_relaxed)) {
  }
}

std::string Key(absl::string_view name, const LabelValues& labels) {
  return absl::StrCat(name, "{", absl::StrJoin(labels, "\x1f"), "}");
}

}  // namespace

struct InMemoryMetricsSink::Series final : CounterHandle,
                                           GaugeHandle,
                                           HistogramHandle {
  Series(const MetricDef& d, MetricType t, LabelValues l)
      : def(d), type(t), labels(std::move(l)), buckets(d.buckets.size() + 1) {}

  void Increment(double v) override { AtomicAdd(value, v); }
  void Set(double v) override { value.store(v, std::memory_order_relaxed); }
  void Observe(double v) override {
    count.fetch_add(1, std::memory_order_relaxed);
    AtomicAdd(value, v);
    const auto it = std::lower_bound(def.buckets.begin(), def.buckets.end(), v);
    buckets[it - def.buckets.begin()].fetch_add(1, std::memory_order_relaxed);
  }

  const MetricDef& def;
  const MetricType type;
  const LabelValues labels;
  // Counter or gauge value; histogram sum.
  std::atomic<double> value{0};
  std::atomic<int64_t> count{0};
  // Non-cumulative per-bucket counts, +Inf last.
  std::vector<std::atomic<int64_t>> buckets;
};

InMemoryMetricsSink::InMemoryMetricsSink() = default;
InMemoryMetricsSink::~InMemoryMetricsSink() = default;

InMemoryMetricsSink::Series* InMemoryMetricsSink::Bind(
    const MetricDef& def, MetricType type, const LabelValues& labels) {
  if (def.type != type || labels.size() != def.labels.size()) {
    std::fprintf(stderr,
                 "InMemoryMetricsSink: %s bound as type %d with %zu labels; "
                 "its definition says type %d with %zu labels\n",
                 std::string(def.name).c_str(), static_cast<int>(type),
                 labels.size(), static_cast<int>(def.type), def.labels.size());
    std::abort();
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::unique_ptr<Series>& slot = series_[Key(def.name, labels)];
  if (slot == nullptr) slot = std::make_unique<Series>(def, type, labels);
  return slot.get();
}

CounterHandle* InMemoryMetricsSink::Counter(const MetricDef& def,
                                            const LabelValues& labels) {
  return Bind(def, MetricType::kCounter, labels);
}
GaugeHandle* InMemoryMetricsSink::Gauge(const MetricDef& def,
                                        const LabelValues& labels) {
  return Bind(def, MetricType::kGauge, labels);
}
HistogramHandle* InMemoryMetricsSink::Histogram(const MetricDef& def,
                                                const LabelValues& labels) {
  return Bind(def, MetricType::kHistogram, labels);
}

const InMemoryMetricsSink::Series* InMemoryMetricsSink::Find(
    absl::string_view name, const LabelValues& labels) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = series_.find(Key(name, labels));
  return it == series_.end() ? nullptr : it->second.get();
}

std::optional<double> InMemoryMetricsSink::CounterValue(
    absl::string_view name, const LabelValues& labels) const {
  const Series* s = Find(name, labels);
  if (s == nullptr || s->type != MetricType::kCounter) return std::nullopt;
  return s->value.load(std::memory_order_relaxed);
}

std::optional<double> InMemoryMetricsSink::GaugeValue(
    absl::string_view name, const LabelValues& labels) const {
  const Series* s = Find(name, labels);
  if (s == nullptr || s->type != MetricType::kGauge) return std::nullopt;
  return s->value.load(std::memory_order_relaxed);
}

std::optional<HistogramSnapshot> InMemoryMetricsSink::HistogramValue(
    absl::string_view name, const LabelValues& labels) const {
  const Series* s = Find(name, labels);
  if (s == nullptr || s->type != MetricType::kHistogram) return std::nullopt;
  HistogramSnapshot snap;
  snap.count = s->count.load(std::memory_order_relaxed);
  snap.sum = s->value.load(std::memory_order_relaxed);
  int64_t running = 0;
  for (const std::atomic<int64_t>& b : s->buckets) {
    running += b.load(std::memory_order_relaxed);
    snap.cumulative.push_back(running);
  }
  return snap;
}

double InMemoryMetricsSink::CounterSum(absl::string_view name,
                                       const LabelMatch& match) const {
  std::lock_guard<std::mutex> lock(mu_);
  double sum = 0;
  for (const auto& [key, s] : series_) {
    if (s->def.name != name || s->type != MetricType::kCounter) continue;
    bool matches = true;
    for (const auto& [label, value] : match) {
      const auto it =
          std::find(s->def.labels.begin(), s->def.labels.end(), label);
      if (it == s->def.labels.end() ||
          s->labels[it - s->def.labels.begin()] != value) {
        matches = false;
        break;
      }
    }
    if (matches) sum += s->value.load(std::memory_order_relaxed);
  }
  return sum;
}

std::vector<std::string> InMemoryMetricsSink::MetricNames() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> names;
  for (const auto& [key, s] : series_) names.emplace_back(s->def.name);
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

}  // namespace spillway::testing
