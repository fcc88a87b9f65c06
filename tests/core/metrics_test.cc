// The metric table is the contract: every entry is reported by the core
// components, and every name follows Prometheus conventions.
#include "spillway/metrics.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "spillway/budget_store.h"
#include "spillway/concurrency_limiter.h"
#include "spillway/fixed_limit.h"
#include "spillway/leased_budget.h"
#include "spillway/log.h"
#include "spillway/metric_names.h"
#include "spillway/testing/in_memory_metrics.h"
#include "spillway/testing/simulated_clock.h"
#include "spillway/throttle.h"
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
    // A component's metrics carry its name; the fleet registry's, the
    // fleet's.
    EXPECT_TRUE(def->labels[0] == "throttle" || def->labels[0] == "fleet")
        << def->name;
    EXPECT_EQ(def->labels[0] == "fleet",
              absl::StartsWith(def->name, "spillway_fleet_"))
        << def->name;
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

// Grants every request in full, or fails while `fail` is set.
class FlakyStore final : public BudgetStore {
 public:
  absl::StatusOr<Grant> Take(absl::string_view, const BudgetSpec&,
                             int64_t want) override {
    if (fail) return absl::UnavailableError("store down");
    return Grant{want, absl::ZeroDuration()};
  }
  bool fail = false;
};

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
  // A fleet budget, refreshed once, then through a store failure (a
  // fall-back) and back: every series it has is in use.
  FlakyStore store;
  auto budget = LeasedBudget::Create({.key = "orders",
                                      .clock = &clock,
                                      .metrics = &sink,
                                      .log = &NullLogSink()},
                                     &store);
  ASSERT_TRUE(budget.ok()) << budget.status();
  ASSERT_TRUE((*budget)->Refresh().ok());
  ASSERT_TRUE((*budget)->TryAcquire());
  store.fail = true;
  EXPECT_FALSE((*budget)->Refresh().ok());
  store.fail = false;
  EXPECT_TRUE((*budget)->Refresh().ok());
  // The facade binds its shadow-mode counters.
  auto throttle = WriteThrottle::Create({.clock = &clock, .metrics = &sink});
  ASSERT_TRUE(throttle.ok()) << throttle.status();

  // Everything but what spillway::redis reports (Redis errors, the fleet
  // registry).
  std::vector<std::string> expected;
  for (const MetricDef* def : metrics::kAll) {
    if (absl::StartsWith(def->name, "spillway_redis_") ||
        absl::StartsWith(def->name, "spillway_fleet_")) {
      continue;
    }
    expected.emplace_back(def->name);
  }
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
