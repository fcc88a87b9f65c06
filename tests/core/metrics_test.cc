// The metric table is the contract: every entry is reported by the core
// components, and every name follows Prometheus conventions.
#include "spillway/metrics.h"

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "spillway/concurrency_limiter.h"
#include "spillway/fixed_limit.h"
#include "spillway/metric_names.h"
#include "spillway/testing/in_memory_metrics.h"
#include "spillway/testing/simulated_clock.h"
#include "spillway/token_bucket.h"

namespace spillway {
namespace {

TEST(MetricNamesTest, NamesFollowPrometheusConventions) {
  std::set<absl::string_view> seen;
  for (const MetricDef* def : metrics::kAll) {
    EXPECT_TRUE(seen.insert(def->name).second) << "duplicate " << def->name;
    EXPECT_TRUE(absl::StartsWith(def->name, "spillway_")) << def->name;
    EXPECT_FALSE(def->help.empty()) << def->name;
    EXPECT_FALSE(def->labels.empty()) << def->name;
    EXPECT_EQ(def->labels[0], "throttle") << def->name;
    EXPECT_EQ(absl::EndsWith(def->name, "_total"),
              def->type == MetricType::kCounter)
        << def->name;
    if (def->type == MetricType::kHistogram) {
      EXPECT_TRUE(absl::EndsWith(def->name, "_seconds")) << def->name;
      EXPECT_TRUE(std::is_sorted(def->buckets.begin(), def->buckets.end()));
      EXPECT_FALSE(def->buckets.empty());
    } else {
      EXPECT_TRUE(def->buckets.empty()) << def->name;
    }
  }
}

TEST(MetricNamesTest, EveryTableEntryIsReportedByTheCore) {
  testing::SimulatedClock clock;
  testing::InMemoryMetricsSink sink;
  ConcurrencyLimiterOptions lo;
  lo.limit = *FixedLimit::Create(4);
  lo.clock = &clock;
  lo.metrics = &sink;
  auto limiter = ConcurrencyLimiter::Create(std::move(lo));
  ASSERT_TRUE(limiter.ok());
  auto bucket = TokenBucket::Create({.clock = &clock, .metrics = &sink});
  ASSERT_TRUE(bucket.ok());

  std::vector<std::string> expected;
  for (const MetricDef* def : metrics::kAll) expected.emplace_back(def->name);
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(sink.MetricNames(), expected);
}

TEST(MetricsSinkTest, NoopSinkHandlesAreSafeToUse) {
  MetricsSink& sink = NoopMetricsSink();
  sink.Counter(metrics::kAdmitted, {"a", "b", "c"})->Increment();
  sink.Gauge(metrics::kLimit, {"a"})->Set(3);
  sink.Histogram(metrics::kLatency, {"a", "success"})->Observe(0.1);
  SUCCEED();
}

TEST(MetricsSinkTest, InMemorySinkBindsOneSeriesPerLabelSet) {
  testing::InMemoryMetricsSink sink;
  CounterHandle* a = sink.Counter(metrics::kAdmitted, {"x", "g", "normal"});
  CounterHandle* b = sink.Counter(metrics::kAdmitted, {"x", "g", "normal"});
  EXPECT_EQ(a, b);
  a->Increment(2);
  b->Increment();
  sink.Counter(metrics::kAdmitted, {"x", "g", "batch"})->Increment(5);
  EXPECT_EQ(sink.CounterValue("spillway_admitted_total", {"x", "g", "normal"}),
            3);
  EXPECT_EQ(sink.CounterSum("spillway_admitted_total"), 8);
  EXPECT_EQ(sink.CounterSum("spillway_admitted_total", {{"priority", "batch"}}),
            5);
  HistogramHandle* h = sink.Histogram(metrics::kLatency, {"x", "success"});
  h->Observe(0.0007);  // Bucket 0.001.
  h->Observe(20);      // +Inf.
  auto snap =
      sink.HistogramValue("spillway_write_latency_seconds", {"x", "success"});
  ASSERT_TRUE(snap.has_value());
  EXPECT_EQ(snap->count, 2);
  EXPECT_EQ(snap->cumulative[0], 0);
  EXPECT_EQ(snap->cumulative[1], 1);
  EXPECT_EQ(snap->cumulative.back(), 2);
  EXPECT_FALSE(sink.GaugeValue("spillway_limit", {"nope"}).has_value());
}

}  // namespace
}  // namespace spillway
