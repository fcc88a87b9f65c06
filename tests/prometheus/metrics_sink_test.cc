// PrometheusMetricsSink: what Collect() and the exposition text hold for
// counters, gauges and histograms bound from the table, and exact totals
// under concurrent updates.

#include "spillway/prometheus/metrics_sink.h"

#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spillway/metric_names.h"

namespace spillway::prometheus {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const ::prometheus::MetricFamily* Find(
    const std::vector<::prometheus::MetricFamily>& families,
    const std::string& name) {
  for (const auto& f : families) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

TEST(PrometheusMetricsSinkTest, CountersAndGaugesCarryTheirValues) {
  auto sink = PrometheusMetricsSink::Create();
  CounterHandle* admitted = sink->Counter(
      metrics::kAdmitted, {"orders", "concurrency_limit", "normal"});
  admitted->Increment();
  admitted->Increment(2.5);
  admitted->Increment(-7);  // Counters never go down.
  // The same definition and labels: the same series.
  EXPECT_EQ(sink->Counter(metrics::kAdmitted,
                          {"orders", "concurrency_limit", "normal"}),
            admitted);
  GaugeHandle* limit = sink->Gauge(metrics::kLimit, {"orders"});
  limit->Set(12);
  limit->Set(7);

  const auto families = sink->Collect();
  ASSERT_EQ(families.size(), 2u);
  const auto* a = Find(families, "spillway_admitted_total");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->type, ::prometheus::MetricType::Counter);
  EXPECT_EQ(a->help, std::string(metrics::kAdmitted.help));
  ASSERT_EQ(a->metric.size(), 1u);
  EXPECT_EQ(a->metric[0].counter.value, 3.5);
  ASSERT_EQ(a->metric[0].label.size(), 3u);
  EXPECT_EQ(a->metric[0].label[1].name, "gate");
  EXPECT_EQ(a->metric[0].label[1].value, "concurrency_limit");
  const auto* l = Find(families, "spillway_limit");
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(l->type, ::prometheus::MetricType::Gauge);
  EXPECT_EQ(l->metric[0].gauge.value, 7);

  const std::string text = ExpositionText(*sink);
  EXPECT_THAT(text, HasSubstr("# TYPE spillway_admitted_total counter\n"));
  EXPECT_THAT(text, HasSubstr("spillway_admitted_total{throttle=\"orders\","
                              "gate=\"concurrency_limit\",priority=\"normal\"}"
                              " 3.5"));
  EXPECT_THAT(text, HasSubstr("spillway_limit{throttle=\"orders\"} 7"));
}

TEST(PrometheusMetricsSinkTest, HistogramBucketsAreCumulativeWithUpperBounds) {
  auto sink = PrometheusMetricsSink::Create();
  HistogramHandle* h =
      sink->Histogram(metrics::kLatency, {"orders", "success"});
  h->Observe(0.0005);  // Exactly on the first bound: le="0.0005".
  h->Observe(0.0006);  // Next bucket.
  h->Observe(0.003);
  h->Observe(60);  // Beyond the last bound: +Inf only.
  const auto families = sink->Collect();
  const auto* f = Find(families, "spillway_write_latency_seconds");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->type, ::prometheus::MetricType::Histogram);
  const auto& hist = f->metric[0].histogram;
  ASSERT_EQ(hist.bucket.size(), metrics::kLatency.buckets.size() + 1);
  EXPECT_EQ(hist.bucket[0].upper_bound, 0.0005);
  EXPECT_EQ(hist.bucket[0].cumulative_count, 1u);
  EXPECT_EQ(hist.bucket[1].cumulative_count, 2u);  // le=0.001
  EXPECT_EQ(hist.bucket[2].cumulative_count, 2u);  // le=0.0025
  EXPECT_EQ(hist.bucket[3].cumulative_count, 3u);  // le=0.005
  EXPECT_EQ(hist.bucket[hist.bucket.size() - 2].cumulative_count, 3u);
  EXPECT_EQ(hist.bucket.back().upper_bound,
            std::numeric_limits<double>::infinity());
  EXPECT_EQ(hist.bucket.back().cumulative_count, 4u);
  EXPECT_EQ(hist.sample_count, 4u);
  EXPECT_DOUBLE_EQ(hist.sample_sum, 0.0005 + 0.0006 + 0.003 + 60);
  EXPECT_THAT(ExpositionText(*sink),
              HasSubstr("spillway_write_latency_seconds_bucket{throttle="
                        "\"orders\",outcome=\"success\",le=\"+Inf\"} 4"));
}

TEST(PrometheusMetricsSinkTest, CallerMistakesDoNotCrashOrMixTypes) {
  auto sink = PrometheusMetricsSink::Create();
  // Too few labels: padded with empty values; too many: truncated.
  sink->Gauge(metrics::kLimit, {})->Set(1);
  sink->Gauge(metrics::kInFlight, {"a", "extra"})->Set(2);
  // A handle of the wrong type for a name reports into nothing.
  sink->Counter(metrics::kLimit, {"b"})->Increment(5);
  sink->Histogram(metrics::kLimit, {"c"})->Observe(5);
  const std::string text = ExpositionText(*sink);
  EXPECT_THAT(text, HasSubstr("spillway_limit{throttle=\"\"} 1"));
  EXPECT_THAT(text, HasSubstr("spillway_in_flight{throttle=\"a\"} 2"));
  EXPECT_THAT(text, Not(HasSubstr("extra")));
  EXPECT_THAT(text, HasSubstr("# TYPE spillway_limit gauge"));
  EXPECT_THAT(text, Not(HasSubstr("spillway_limit_bucket")));
}

TEST(PrometheusMetricsSinkTest, ConcurrentUpdatesLoseNothing) {
  auto sink = PrometheusMetricsSink::Create();
  CounterHandle* c = sink->Counter(metrics::kOutcomes, {"t", "success"});
  HistogramHandle* h = sink->Histogram(metrics::kLatency, {"t", "success"});
  constexpr int kThreads = 4;
  constexpr int kEach = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        c->Increment();
        h->Observe(0.002);
      }
    });
  }
  // Scrapes race the updates; each sees buckets and count agree.
  for (int i = 0; i < 50; ++i) {
    const auto f = sink->Collect();
    const auto& hist =
        Find(f, "spillway_write_latency_seconds")->metric[0].histogram;
    EXPECT_EQ(hist.bucket.back().cumulative_count, hist.sample_count);
  }
  for (auto& t : threads) t.join();
  const auto f = sink->Collect();
  EXPECT_EQ(Find(f, "spillway_outcomes_total")->metric[0].counter.value,
            kThreads * kEach);
  const auto& hist =
      Find(f, "spillway_write_latency_seconds")->metric[0].histogram;
  EXPECT_EQ(hist.sample_count, static_cast<uint64_t>(kThreads * kEach));
  EXPECT_NEAR(hist.sample_sum, 0.002 * kThreads * kEach, 1e-6);
}

}  // namespace
}  // namespace spillway::prometheus
