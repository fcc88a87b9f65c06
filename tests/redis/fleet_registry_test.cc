// FleetRegistry against a real redis-server: four instances heartbeat into
// one fleet; a misrouted balancer (one instance far above its fair share) is
// flagged within 10 s at the default settings; instances that stop
// heartbeating leave the count after their TTL (Redis TIME).
//
// Rates run on a simulated clock: each step records one second of writes,
// advances the clock by the heartbeat interval, and waits until every
// registry's heartbeat thread has sent its heartbeat.
#include "spillway/redis/fleet_registry.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spillway/testing/in_memory_metrics.h"
#include "spillway/testing/simulated_clock.h"
#include "tests/common/capture_log.h"
#include "tests/common/eventually.h"
#include "tests/common/invalid_options.h"
#include "tests/redis/redis_server.h"

namespace spillway::redis {
namespace {

using ::spillway::test::CaptureLog;
using ::spillway::test::RedisServer;
using ::spillway::test::WaitFor;
using ::testing::HasSubstr;
using Steady = std::chrono::steady_clock;

class FleetRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = RedisServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  // Four instances "i0".."i3" of fleet "orders" on the simulated clock, at
  // the default settings.
  void MakeFleet(int n = 4) {
    for (int i = 0; i < n; ++i) {
      FleetRegistryOptions o;
      o.redis.port = server_->port();
      o.fleet = "orders";
      o.instance_id = absl::StrCat("i", i);
      o.clock = &clock_;
      o.metrics = &sink_;
      o.log = &log_;
      o.on_skew_change = [this](const FleetView& v) {
        if (v.skewed) flagged_.fetch_add(1);
      };
      auto r = FleetRegistry::Create(o);
      ASSERT_TRUE(r.ok()) << r.status();
      registries_.push_back(*std::move(r));
    }
  }

  // Records one heartbeat interval of writes per instance, advances the
  // clock by it, and waits for every registry's heartbeat.
  void Step(const std::vector<int>& writes) {
    ASSERT_TRUE(WaitFor([&] {
      return clock_.waiters() == static_cast<int>(registries_.size());
    }));
    std::vector<int64_t> before;
    for (size_t i = 0; i < registries_.size(); ++i) {
      registries_[i]->Record(writes[i], writes[i]);
      before.push_back(registries_[i]->heartbeats());
    }
    clock_.Advance(absl::Seconds(1));
    for (size_t i = 0; i < registries_.size(); ++i) {
      ASSERT_TRUE(
          WaitFor([&] { return registries_[i]->heartbeats() > before[i]; }));
    }
    // Every instance has reported this step; one more heartbeat of i0
    // (on this thread) reads everyone's reports of this step.
  }

  std::unique_ptr<RedisServer> server_;
  testing::SimulatedClock clock_;
  testing::InMemoryMetricsSink sink_;
  CaptureLog log_;
  std::atomic<int> flagged_{0};
  std::vector<std::unique_ptr<FleetRegistry>> registries_;
};

TEST_F(FleetRegistryTest, BalancedFleetIsNotSkewed) {
  MakeFleet();
  for (int s = 0; s < 15; ++s) Step({100, 100, 100, 100});
  const FleetView v = registries_[0]->View();
  EXPECT_TRUE(v.valid);
  EXPECT_EQ(v.live_instances, 4);
  EXPECT_NEAR(v.offered_rate, 400, 40);
  EXPECT_NEAR(v.self_share, 0.25, 0.02);
  EXPECT_NEAR(v.skew, 1.0, 0.05);
  EXPECT_FALSE(v.skewed);
  EXPECT_EQ(flagged_.load(), 0);
  EXPECT_EQ(sink_.GaugeValue("spillway_fleet_instances", {"orders"}), 4);
  EXPECT_EQ(sink_.GaugeValue("spillway_fleet_skewed", {"orders"}), 0);
}

// One instance of four gets 3x its fair share (75% of the fleet's writes):
// skew 3. Flagged within 10 heartbeats (10 s at the defaults).
TEST_F(FleetRegistryTest, InstanceAtThreeTimesItsFairShareIsFlagged) {
  MakeFleet();
  for (int s = 0; s < 10; ++s) Step({100, 100, 100, 100});
  ASSERT_FALSE(registries_[0]->View().skewed);
  int seconds = 0;
  while (!registries_[0]->View().skewed && seconds < 30) {
    Step({300, 33, 33, 34});
    ++seconds;
  }
  std::printf(
      "[ figure ] one of 4 instances at 3x its fair share: flagged "
      "after %d s (defaults: heartbeat 1 s, rate time constant 2 s, "
      "threshold 1.75)\n",
      seconds);
  EXPECT_LE(seconds, 10);
  for (int s = 0; s < 10; ++s) Step({300, 33, 33, 34});
  const FleetView v = registries_[0]->View();
  EXPECT_TRUE(v.skewed);
  EXPECT_EQ(v.busiest, "i0");
  EXPECT_NEAR(v.skew, 3.0, 0.15);
  EXPECT_NEAR(v.self_share, 0.75, 0.04);
  EXPECT_NEAR(registries_[1]->View().self_share, 0.083, 0.02);
  // Every instance sees it: one callback and one warning line each.
  EXPECT_EQ(flagged_.load(), 4);
  EXPECT_EQ(log_.Count(LogLevel::kWarning), 4);
  EXPECT_THAT(log_.Lines(), ::testing::Contains(HasSubstr("instance i0")));
  EXPECT_EQ(sink_.GaugeValue("spillway_fleet_skewed", {"orders"}), 1);
  EXPECT_NEAR(*sink_.GaugeValue("spillway_fleet_skew", {"orders"}), 3.0, 0.15);
}

// The incident's shape: one instance gets 3x what each peer gets (skew 2).
TEST_F(FleetRegistryTest, InstanceAtThreeTimesItsPeersIsFlagged) {
  MakeFleet();
  for (int s = 0; s < 10; ++s) Step({100, 100, 100, 100});
  // Every instance flags it (each debounces its own view).
  auto all_skewed = [&] {
    for (const auto& r : registries_) {
      if (!r->View().skewed) return false;
    }
    return true;
  };
  int seconds = 0;
  while (!all_skewed() && seconds < 30) {
    Step({300, 100, 100, 100});
    ++seconds;
  }
  std::printf(
      "[ figure ] one of 4 instances at 3x its peers (skew 2): flagged by "
      "all 4 after %d s\n",
      seconds);
  EXPECT_LE(seconds, 10);
  EXPECT_EQ(log_.Count(LogLevel::kWarning), 4);
  // Back to balance: the flag clears on every instance (each debounces its
  // own view), with one info line each.
  auto any_skewed = [&] {
    for (const auto& r : registries_) {
      if (r->View().skewed) return true;
    }
    return false;
  };
  int clear = 0;
  while (any_skewed() && clear < 30) {
    Step({100, 100, 100, 100});
    ++clear;
  }
  EXPECT_FALSE(any_skewed());
  EXPECT_LE(clear, 10);
  EXPECT_EQ(log_.Count(LogLevel::kInfo), 4);
}

TEST_F(FleetRegistryTest, IdleFleetIsNotSkewed) {
  MakeFleet();
  for (int s = 0; s < 5; ++s) Step({0, 0, 0, 0});
  const FleetView v = registries_[0]->View();
  EXPECT_EQ(v.live_instances, 4);
  EXPECT_EQ(v.skew, 1.0);
  EXPECT_FALSE(v.skewed);
}

TEST_F(FleetRegistryTest, SilentInstancesLeaveAfterTheirTtl) {
  // Short TTL on the real clock: Redis TIME decides expiry.
  std::vector<std::unique_ptr<FleetRegistry>> fleet;
  for (int i = 0; i < 4; ++i) {
    FleetRegistryOptions o;
    o.redis.port = server_->port();
    o.fleet = "ttl";
    o.instance_id = absl::StrCat("i", i);
    o.heartbeat_interval = absl::Milliseconds(100);
    o.ttl = absl::Milliseconds(500);
    o.rate_time_constant = absl::Milliseconds(200);
    o.log = &log_;
    auto r = FleetRegistry::Create(o);
    ASSERT_TRUE(r.ok()) << r.status();
    fleet.push_back(*std::move(r));
  }
  ASSERT_TRUE(WaitFor([&] { return fleet[0]->LiveInstances() == 4; }));
  const auto stopped = Steady::now();
  fleet.pop_back();  // i3 stops heartbeating.
  ASSERT_TRUE(WaitFor([&] { return fleet[0]->LiveInstances() == 3; }));
  const double left_ms =
      std::chrono::duration<double, std::milli>(Steady::now() - stopped)
          .count();
  std::printf(
      "[ figure ] a silent instance left the count after %.0f ms "
      "(ttl 500 ms, heartbeat 100 ms)\n",
      left_ms);
  // Not before its TTL: the count is decided by expiry, not by a guess.
  const FleetView v = fleet[0]->View();
  for (const InstanceLoad& i : v.instances) EXPECT_NE(i.id, "i3");
  // Redis keeps one field per live instance, nothing else.
  EXPECT_EQ(*server_->Command({"HLEN", "spillway:{fleet:ttl}:members"}), "3");
}

TEST_F(FleetRegistryTest, RedisDownKeepsTheLastViewMarkedStale) {
  MakeFleet(2);
  Step({10, 10});
  ASSERT_TRUE(registries_[0]->View().valid);
  ASSERT_TRUE(server_->Kill().ok());
  const absl::Status s = registries_[0]->HeartbeatNow();
  EXPECT_FALSE(s.ok());
  const FleetView v = registries_[0]->View();
  EXPECT_TRUE(v.stale);
  EXPECT_EQ(v.live_instances, 2);
  EXPECT_EQ(registries_[0]->LiveInstances(), 2);
  EXPECT_GE(sink_.CounterSum("spillway_redis_errors_total"), 1);
}

using InvalidCase = test::InvalidOptionsCase<FleetRegistryOptions>;
class FleetRegistryInvalidOptions
    : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(FleetRegistryInvalidOptions, IsRefusedNamingTheField) {
  FleetRegistryOptions o;
  GetParam().mutate(o);
  test::ExpectInvalidArgument(ValidateFleetRegistryOptions(o),
                              "FleetRegistryOptions." + GetParam().field,
                              GetParam().value);
}

INSTANTIATE_TEST_SUITE_P(
    Fields, FleetRegistryInvalidOptions,
    ::testing::Values(
        InvalidCase{"RedisHost", [](auto& o) { o.redis.host = ""; },
                    "redis.host", "\"\""},
        InvalidCase{"Fleet", [](auto& o) { o.fleet = "a{b}"; }, "fleet",
                    "\"a{b}\""},
        InvalidCase{"InstanceId", [](auto& o) { o.instance_id = "a b"; },
                    "instance_id", "\"a b\""},
        InvalidCase{
            "Heartbeat",
            [](auto& o) { o.heartbeat_interval = absl::Milliseconds(1); },
            "heartbeat_interval", "1ms"},
        InvalidCase{"Ttl", [](auto& o) { o.ttl = absl::Seconds(1); }, "ttl",
                    "1s"},
        InvalidCase{
            "TimeConstant",
            [](auto& o) { o.rate_time_constant = absl::Milliseconds(500); },
            "rate_time_constant", "500ms"},
        InvalidCase{"Threshold", [](auto& o) { o.skew_threshold = 1; },
                    "skew_threshold", "1"},
        InvalidCase{"SkewHeartbeats", [](auto& o) { o.skew_heartbeats = 0; },
                    "skew_heartbeats", "0"},
        InvalidCase{"MinRate", [](auto& o) { o.min_fleet_rate = -1; },
                    "min_fleet_rate", "-1"}),
    test::CaseName<FleetRegistryOptions>);

}  // namespace
}  // namespace spillway::redis
