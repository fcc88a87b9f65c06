// The live exposition text of a running throttle: a WriteThrottle with its
// limiter, token bucket and fleet budget (GlobalBudget on a real Redis), a
// FleetRegistry, all reporting into one PrometheusMetricsSink. Every metric
// of the table (metric_names.h) must appear in the text with its type and
// help, and `promtool check metrics` must accept the text (when the test
// command provides promtool, through $SPILLWAY_PROMTOOL).

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spillway/metric_names.h"
#include "spillway/prometheus/metrics_sink.h"
#include "spillway/redis/fleet_registry.h"
#include "spillway/redis/global_budget.h"
#include "spillway/throttle.h"
#include "tests/common/capture_log.h"
#include "tests/common/eventually.h"
#include "tests/redis/redis_server.h"

namespace spillway {
namespace {

using ::testing::HasSubstr;

absl::string_view TypeName(MetricType t) {
  switch (t) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

class ExpositionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = test::RedisServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    sink_ = prometheus::PrometheusMetricsSink::Create();

    redis::GlobalBudgetOptions g;
    g.redis.port = server_->port();
    g.metrics = sink_.get();
    g.log = &log_;
    auto global = redis::GlobalBudget::Create(g);
    ASSERT_TRUE(global.ok()) << global.status();
    global_ = *std::move(global);
    auto budget =
        global_->Budget("orders", {.spec = {.rate = 1000, .burst = 100}});
    ASSERT_TRUE(budget.ok()) << budget.status();

    redis::FleetRegistryOptions f;
    f.redis.port = server_->port();
    f.fleet = "orders";
    f.instance_id = "i0";
    f.metrics = sink_.get();
    f.log = &log_;
    auto registry = redis::FleetRegistry::Create(f);
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = *std::move(registry);

    WriteThrottleOptions t;
    t.name = "orders";
    t.bucket = TokenBucketOptions{.rate = 1000, .burst = 100};
    t.budget = *budget;
    t.metrics = sink_.get();
    t.log = &log_;
    auto throttle = WriteThrottle::Create(std::move(t));
    ASSERT_TRUE(throttle.ok()) << throttle.status();
    throttle_ = *std::move(throttle);

    // Some traffic: successes, a drop, an ignore, refusals.
    ASSERT_TRUE(test::WaitFor([&] { return (*budget)->lease_tokens() > 0; }));
    for (int i = 0; i < 20; ++i) {
      ThrottleAdmission a = throttle_->Admit();
      if (!a.ok()) continue;
      if (i % 5 == 1) {
        a.permit().Dropped();
      } else if (i % 5 == 2) {
        a.permit().Ignore();
      } else {
        a.permit().Success();
      }
    }
    registry_->Record(20, 18);
    ASSERT_TRUE(registry_->HeartbeatNow().ok());
    text_ = prometheus::ExpositionText(*sink_);
  }

  std::unique_ptr<test::RedisServer> server_;
  test::CaptureLog log_;
  std::shared_ptr<prometheus::PrometheusMetricsSink> sink_;
  std::unique_ptr<redis::GlobalBudget> global_;
  std::unique_ptr<redis::FleetRegistry> registry_;
  std::unique_ptr<WriteThrottle> throttle_;
  std::string text_;
};

TEST_F(ExpositionTest, EveryMetricOfTheTableIsExposed) {
  for (const MetricDef* def : metrics::kAll) {
    const std::string name(def->name);
    EXPECT_THAT(text_, HasSubstr(absl::StrCat("# TYPE ", name, " ",
                                              TypeName(def->type), "\n")))
        << name;
    EXPECT_THAT(text_, HasSubstr(absl::StrCat("# HELP ", name, " "))) << name;
    const std::string sample =
        def->type == MetricType::kHistogram ? name + "_bucket{" : name + "{";
    EXPECT_THAT(text_, HasSubstr("\n" + sample)) << name;
  }
  EXPECT_THAT(text_, HasSubstr("spillway_overload_cause{throttle=\"orders\","
                               "cause=\"none\"} 1"));
  EXPECT_THAT(text_, HasSubstr("spillway_outcomes_total{throttle=\"orders\","
                               "outcome=\"dropped\"} 4"));
  EXPECT_THAT(text_, HasSubstr("spillway_budget_mode{throttle=\"orders\","
                               "mode=\"shared\"} 1"));
}

TEST_F(ExpositionTest, PromtoolAcceptsTheExposition) {
  const char* promtool = std::getenv("SPILLWAY_PROMTOOL");
  if (promtool == nullptr || *promtool == '\0') {
    GTEST_SKIP() << "SPILLWAY_PROMTOOL is not set (scripts/test.sh sets it)";
  }
  const std::string path =
      absl::StrCat(::testing::TempDir(), "spillway_exposition.prom");
  {
    std::ofstream out(path);
    out << text_;
    ASSERT_TRUE(out.good()) << path;
  }
  // promtool prints lint problems and exits non-zero on any.
  const std::string cmd =
      absl::StrCat("'", promtool, "' check metrics < '", path, "' 2>&1");
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string output;
  char buf[512];
  while (std::fgets(buf, sizeof(buf), p) != nullptr) output += buf;
  const int status = ::pclose(p);
  EXPECT_EQ(status, 0) << cmd << "\n" << output;
  EXPECT_EQ(output, "") << output;
  std::remove(path.c_str());
}

}  // namespace
}  // namespace spillway
