// OverloadDetector on simulated time: which cause it names for which traffic
// shape, how fast, with which hysteresis, and what it reports. Traffic is
// driven evenly in 10 ms steps, so every count below is exact.

#include "spillway/overload_cause.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spillway/fixed_limit.h"
#include "spillway/testing/in_memory_metrics.h"
#include "spillway/testing/simulated_clock.h"
#include "spillway/throttle.h"
#include "tests/common/capture_log.h"

namespace spillway {
namespace {

using ::testing::HasSubstr;
using Refusal = OverloadDetector::Refusal;

// What arrives per second, spread evenly over 10 ms steps.
struct Traffic {
  int demand = 1000;             // First attempts per second.
  int retries = 0;               // Attempts marked as retries per second.
  int unmarked_retries = 0;      // Retries not marked as such, per second.
  double limiter_refused = 0.0;  // Fraction of all attempts.
  double other_refused = 0.0;    // Fraction refused by the bucket/budget.
  absl::Duration latency = absl::Milliseconds(5);
};

class OverloadDetectorTest : public ::testing::Test {
 protected:
  void Make(OverloadDetectorOptions o = {}) {
    o.name = "orders";
    o.clock = &clock_;
    o.metrics = &sink_;
    o.log = &log_;
    auto d = OverloadDetector::Create(std::move(o));
    ASSERT_TRUE(d.ok()) << d.status();
    detector_ = *std::move(d);
  }

  // Drives `t` for `seconds` of simulated time.
  void Drive(const Traffic& t, double seconds) {
    const int steps = static_cast<int>(seconds * 100 + 0.5);
    const int per_step_demand = t.demand / 100;
    const int per_step_retry = t.retries / 100;
    const int per_step_unmarked = t.unmarked_retries / 100;
    const int total = per_step_demand + per_step_retry + per_step_unmarked;
    const int by_limiter = static_cast<int>(total * t.limiter_refused + 0.5);
    const int by_other = static_cast<int>(total * t.other_refused + 0.5);
    const auto latency =
        std::chrono::nanoseconds(absl::ToInt64Nanoseconds(t.latency));
    for (int s = 0; s < steps; ++s) {
      clock_.Advance(absl::Milliseconds(10));
      const MonotonicTime now = clock_.Now();
      for (int i = 0; i < total; ++i) {
        const bool retry =
            i >= per_step_demand && i < per_step_demand + per_step_retry;
        const Refusal r = i < by_limiter              ? Refusal::kByLimiter
                          : i < by_limiter + by_other ? Refusal::kByOtherGate
                                                      : Refusal::kAdmitted;
        detector_->OnOffered(now, r, retry);
        if (r == Refusal::kAdmitted) detector_->OnCompleted(now, latency);
      }
    }
  }

  double Gauge(const std::string& cause) {
    return sink_.GaugeValue("spillway_overload_cause", {"orders", cause})
        .value_or(-1);
  }

  testing::SimulatedClock clock_;
  testing::InMemoryMetricsSink sink_;
  test::CaptureLog log_;
  std::unique_ptr<OverloadDetector> detector_;
};

TEST(OverloadCauseNameTest, NamesAreTheMetricLabels) {
  EXPECT_EQ(OverloadCauseName(OverloadCause::kNone), "none");
  EXPECT_EQ(OverloadCauseName(OverloadCause::kOfferedLoadSurge),
            "offered_load_surge");
  EXPECT_EQ(OverloadCauseName(OverloadCause::kDatabaseSlowdown),
            "database_slowdown");
}

TEST_F(OverloadDetectorTest, CalmTrafficIsNoneAndLearnsItsBaseline) {
  Make();
  EXPECT_EQ(Gauge("none"), 1);
  EXPECT_EQ(Gauge("offered_load_surge"), 0);
  EXPECT_EQ(Gauge("database_slowdown"), 0);
  Drive({.demand = 1000}, 4.0);
  EXPECT_FALSE(detector_->snapshot().warm);  // Warm-up is 5 s.
  Drive({.demand = 1000}, 2.0);
  const OverloadSnapshot s = detector_->snapshot();
  EXPECT_TRUE(s.warm);
  EXPECT_EQ(s.cause, OverloadCause::kNone);
  EXPECT_NEAR(s.offered_per_second, 1000, 15);
  EXPECT_NEAR(s.offered_baseline, 1000, 15);
  EXPECT_NEAR(absl::ToDoubleMilliseconds(s.latency_baseline), 5, 1e-6);
  EXPECT_EQ(detector_->cause(), OverloadCause::kNone);
  EXPECT_TRUE(log_.Lines().empty());
  EXPECT_NEAR(*sink_.GaugeValue("spillway_offered_ratio", {"orders"}), 1.0,
              0.02);
  EXPECT_NEAR(*sink_.GaugeValue("spillway_latency_ratio", {"orders"}), 1.0,
              1e-6);
}

TEST_F(OverloadDetectorTest, SurgeWithNormalLatencyIsOfferedLoadSurge) {
  Make();
  Drive({.demand = 1000}, 10.0);
  // 3x the demand; the limiter refuses two thirds; latency unchanged.
  const Traffic surge{.demand = 3000, .limiter_refused = 0.66};
  Drive(surge, 1.0);
  EXPECT_EQ(detector_->cause(), OverloadCause::kNone);  // One interval: wait.
  Drive(surge, 1.0);
  EXPECT_EQ(detector_->cause(), OverloadCause::kOfferedLoadSurge);
  EXPECT_EQ(Gauge("none"), 0);
  EXPECT_EQ(Gauge("offered_load_surge"), 1);
  EXPECT_EQ(Gauge("database_slowdown"), 0);
  ASSERT_EQ(log_.Count(LogLevel::kWarning), 1);
  EXPECT_THAT(log_.Lines()[0], HasSubstr("throttle orders: overload cause "
                                         "offered_load_surge"));
  EXPECT_THAT(log_.Lines()[0], HasSubstr("3x baseline"));
  EXPECT_THAT(log_.Lines()[0], HasSubstr("look upstream"));

  // The baseline did not learn the surge: it still reads 3x after a minute.
  Drive(surge, 60.0);
  EXPECT_EQ(detector_->cause(), OverloadCause::kOfferedLoadSurge);
  EXPECT_NEAR(detector_->snapshot().offered_baseline, 1000, 15);
  EXPECT_EQ(log_.Count(LogLevel::kWarning), 1);  // One line per change.

  // Back to normal: none after two calm intervals, one info line.
  Drive({.demand = 1000}, 1.0);
  EXPECT_EQ(detector_->cause(), OverloadCause::kOfferedLoadSurge);
  Drive({.demand = 1000}, 1.0);
  EXPECT_EQ(detector_->cause(), OverloadCause::kNone);
  EXPECT_EQ(Gauge("none"), 1);
  EXPECT_EQ(Gauge("offered_load_surge"), 0);
  ASSERT_EQ(log_.Count(LogLevel::kInfo), 1);
  EXPECT_THAT(log_.Lines()[1],
              HasSubstr("overload cause none (was offered_load_surge"));
}

TEST_F(OverloadDetectorTest, SheddingAtUnchangedDemandIsDatabaseSlowdown) {
  Make();
  Drive({.demand = 1000}, 10.0);
  // The database got slower: latency 3x, the limiter refuses 40%, and the
  // clients retry what was refused (marked), so attempts rise by 60%.
  const Traffic slow{.demand = 1000,
                     .retries = 600,
                     .limiter_refused = 0.4,
                     .latency = absl::Milliseconds(15)};
  Drive(slow, 2.0);
  EXPECT_EQ(detector_->cause(), OverloadCause::kDatabaseSlowdown);
  EXPECT_EQ(Gauge("database_slowdown"), 1);
  ASSERT_EQ(log_.Count(LogLevel::kWarning), 1);
  EXPECT_THAT(log_.Lines()[0], HasSubstr("database_slowdown"));
  EXPECT_THAT(log_.Lines()[0], HasSubstr("look at the database first"));
  EXPECT_NEAR(detector_->snapshot().offered_per_second, 1000, 15);
}

TEST_F(OverloadDetectorTest, LatencyUpWithoutSheddingIsDatabaseSlowdown) {
  Make();
  Drive({.demand = 1000}, 10.0);
  Drive({.demand = 1000, .latency = absl::Milliseconds(9)}, 2.0);
  EXPECT_EQ(detector_->cause(), OverloadCause::kNone);  // 1.8x < 2x.
  // Those calm seconds moved the baseline a little (an EWMA over 60 s):
  // 5 ms + (1 - e^(-2/60)) * 4 ms = 5.13 ms.
  EXPECT_NEAR(
      absl::ToDoubleMilliseconds(detector_->snapshot().latency_baseline), 5.13,
      0.01);
  Drive({.demand = 1000, .latency = absl::Milliseconds(11)}, 2.0);
  EXPECT_EQ(detector_->cause(), OverloadCause::kDatabaseSlowdown);
}

TEST_F(OverloadDetectorTest, UnmarkedRetriesOfASlowdownReadAsSurge) {
  // The documented limit: retries the caller does not mark count as demand.
  Make();
  Drive({.demand = 1000}, 10.0);
  Drive({.demand = 1000,
         .unmarked_retries = 2000,
         .limiter_refused = 0.6,
         .latency = absl::Milliseconds(15)},
        2.0);
  EXPECT_EQ(detector_->cause(), OverloadCause::kOfferedLoadSurge);
}

TEST_F(OverloadDetectorTest, RateGateRefusalsAtUnchangedDemandAreNoCause) {
  // A token bucket or fleet budget refusing at the usual demand is a
  // configured rate, not a slower database.
  Make();
  Drive({.demand = 1000}, 10.0);
  Drive({.demand = 1000, .other_refused = 0.3}, 5.0);
  EXPECT_EQ(detector_->cause(), OverloadCause::kNone);
  // The same refusals with 3x demand are a surge.
  Drive({.demand = 3000, .other_refused = 0.6}, 2.0);
  EXPECT_EQ(detector_->cause(), OverloadCause::kOfferedLoadSurge);
}

TEST_F(OverloadDetectorTest, OneNoisyIntervalDoesNotChangeTheCause) {
  Make();
  Drive({.demand = 1000}, 10.0);
  for (int i = 0; i < 5; ++i) {
    Drive({.demand = 3000, .limiter_refused = 0.66}, 1.0);
    Drive({.demand = 1000}, 1.0);
  }
  EXPECT_EQ(detector_->cause(), OverloadCause::kNone);
  EXPECT_TRUE(log_.Lines().empty());
}

TEST_F(OverloadDetectorTest, StartingInAnOverloadNamesNoCause) {
  // No calm interval yet: no baseline to compare with.
  Make();
  Drive({.demand = 3000, .limiter_refused = 0.66}, 30.0);
  EXPECT_EQ(detector_->cause(), OverloadCause::kNone);
  EXPECT_FALSE(detector_->snapshot().warm);
  EXPECT_EQ(*sink_.GaugeValue("spillway_offered_ratio", {"orders"}), 0.0);
}

TEST_F(OverloadDetectorTest, QuietIntervalsAreNotJudged) {
  Make({.min_writes = 200});
  Drive({.demand = 1000}, 10.0);
  // 100 writes a second, all refused: too few to judge.
  Drive({.demand = 100, .limiter_refused = 1.0}, 5.0);
  EXPECT_EQ(detector_->cause(), OverloadCause::kNone);
}

TEST_F(OverloadDetectorTest, OptionsShapeTheDecision) {
  Make(
      {.warmup = absl::Seconds(1), .surge_ratio = 4.0, .confirm_intervals = 3});
  Drive({.demand = 1000}, 2.0);
  ASSERT_TRUE(detector_->snapshot().warm);
  // 3x is below a surge_ratio of 4: shedding at it reads as a slowdown.
  Drive({.demand = 3000, .limiter_refused = 0.66}, 2.0);
  EXPECT_EQ(detector_->cause(), OverloadCause::kNone);  // 2 of 3 intervals.
  Drive({.demand = 3000, .limiter_refused = 0.66}, 1.0);
  EXPECT_EQ(detector_->cause(), OverloadCause::kDatabaseSlowdown);
  Drive({.demand = 5000, .limiter_refused = 0.8}, 3.0);
  EXPECT_EQ(detector_->cause(), OverloadCause::kOfferedLoadSurge);
}

TEST(OverloadDetectorOptionsTest, EachBadFieldIsNamed) {
  auto check = [](OverloadDetectorOptions o, const std::string& field) {
    const absl::Status s = ValidateOverloadDetectorOptions(o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(std::string(s.message()),
                HasSubstr("OverloadDetectorOptions." + field))
        << s;
    EXPECT_FALSE(OverloadDetector::Create(o).ok());
  };
  EXPECT_TRUE(ValidateOverloadDetectorOptions({}).ok());
  check({.name = ""}, "name");
  check({.interval = absl::ZeroDuration()}, "interval");
  check({.interval = absl::InfiniteDuration()}, "interval");
  check({.baseline_window = absl::Milliseconds(500)}, "baseline_window");
  check({.warmup = absl::Seconds(-1)}, "warmup");
  check({.surge_ratio = 1.0}, "surge_ratio");
  check({.surge_ratio = std::numeric_limits<double>::quiet_NaN()},
        "surge_ratio");
  check({.shed_ratio = 0.0}, "shed_ratio");
  check({.shed_ratio = 1.5}, "shed_ratio");
  check({.latency_ratio = 0.5}, "latency_ratio");
  check({.confirm_intervals = 0}, "confirm_intervals");
  check({.min_writes = 0}, "min_writes");
}

// ---- Through WriteThrottle ------------------------------------------------

class ThrottleOverloadTest : public ::testing::Test {
 protected:
  std::unique_ptr<WriteThrottle> Make(ShadowOptions shadow = {}) {
    WriteThrottleOptions o;
    o.name = "orders";
    o.limiter.limit = *FixedLimit::Create(10);
    o.shadow = shadow;
    o.clock = &clock_;
    o.metrics = &sink_;
    o.log = &log_;
    auto t = WriteThrottle::Create(std::move(o));
    EXPECT_TRUE(t.ok()) << t.status();
    return *std::move(t);
  }

  // `n` writes every 10 ms for `seconds`; each runs 5 ms, so at most 10 are
  // in flight when n <= 10; the rest are refused by the limit of 10.
  // With `hold_ms` above 10, each step lasts hold_ms (fewer steps).
  void Drive(WriteThrottle& t, int n, double seconds, int attempt = 1,
             int hold_ms = 5) {
    const absl::Duration end = absl::Seconds(seconds);
    for (absl::Duration at; at < end;) {
      std::vector<ThrottlePermit> permits;
      for (int i = 0; i < n; ++i) {
        ThrottleAdmission a = t.Admit({.attempt = attempt});
        if (a.ok()) permits.push_back(std::move(a).permit());
      }
      clock_.Advance(absl::Milliseconds(hold_ms));
      for (ThrottlePermit& p : permits) p.Success();
      const absl::Duration rest = absl::Milliseconds(std::max(0, 10 - hold_ms));
      clock_.Advance(rest);
      at += absl::Milliseconds(hold_ms) + rest;
    }
  }

  testing::SimulatedClock clock_;
  testing::InMemoryMetricsSink sink_;
  test::CaptureLog log_;
};

TEST_F(ThrottleOverloadTest, ASurgePastTheLimitReadsOfferedLoadSurge) {
  std::unique_ptr<WriteThrottle> t = Make();
  Drive(*t, 5, 10.0);
  EXPECT_EQ(t->overload_cause(), OverloadCause::kNone);
  Drive(*t, 20, 3.0);  // 4x the writes; half refused; latency unchanged.
  EXPECT_EQ(t->overload_cause(), OverloadCause::kOfferedLoadSurge);
  EXPECT_EQ(*sink_.GaugeValue("spillway_overload_cause",
                              {"orders", "offered_load_surge"}),
            1);
  EXPECT_NEAR(t->overload_detector().snapshot().offered_per_second, 2000, 1);
  EXPECT_NEAR(absl::ToDoubleMilliseconds(
                  t->overload_detector().snapshot().latency_baseline),
              5, 1e-6);
  ASSERT_EQ(log_.Count(LogLevel::kWarning), 1);
}

TEST_F(ThrottleOverloadTest, RetriesMarkedByAttemptAreNotDemand) {
  std::unique_ptr<WriteThrottle> t = Make();
  Drive(*t, 5, 10.0);
  Drive(*t, 5, 3.0);
  Drive(*t, 15, 3.0, /*attempt=*/2);  // Only retries on top.
  // Demand (first attempts) in the last interval: the 5 per step of the
  // earlier phase are gone, and retries do not count.
  EXPECT_NEAR(t->overload_detector().snapshot().offered_per_second, 0, 1);
}

TEST_F(ThrottleOverloadTest, ShadowRefusalsCountAsRefusals) {
  // The limiter in shadow mode refuses nothing, but the detector sees what
  // it decided: the cause shows before the gate is enforced.
  std::unique_ptr<WriteThrottle> t = Make({.concurrency_limit = true});
  Drive(*t, 5, 10.0);
  Drive(*t, 20, 3.0);
  EXPECT_EQ(t->overload_cause(), OverloadCause::kOfferedLoadSurge);
  EXPECT_GT(sink_.CounterSum("spillway_shadow_passed_total"), 0);
}

// A limit that counts slowdown hints.
class HintCountingLimit final : public Limit {
 public:
  HintCountingLimit() : Limit(10) {}
  void OnSample(const LimitSample&) override {}
  int max_limit() const override { return 10; }
  void OnDatabaseSlowdown() override { hints.fetch_add(1); }
  std::atomic<int> hints{0};
};

TEST_F(ThrottleOverloadTest, DatabaseSlowdownHintsTheLimitOnce) {
  auto limit = std::make_shared<HintCountingLimit>();
  int user_calls = 0;
  WriteThrottleOptions o;
  o.name = "orders";
  o.limiter.limit = limit;
  o.overload.on_change = [&](OverloadCause) { ++user_calls; };
  o.clock = &clock_;
  o.log = &log_;
  auto t = std::move(*WriteThrottle::Create(std::move(o)));
  Drive(*t, 5, 10.0);
  // The same writers, each write now 25 ms instead of 5: latency 5x at no
  // more demand.
  Drive(*t, 5, 5.0, 1, /*hold_ms=*/25);
  EXPECT_EQ(t->overload_cause(), OverloadCause::kDatabaseSlowdown);
  EXPECT_EQ(limit->hints.load(), 1);  // Once per change, not per interval.
  EXPECT_EQ(user_calls, 1);           // The user's hook still runs.
  Drive(*t, 5, 5.0);
  EXPECT_EQ(t->overload_cause(), OverloadCause::kNone);
  EXPECT_EQ(limit->hints.load(), 1);
  EXPECT_EQ(user_calls, 2);
}

TEST(ThrottleOverloadOptionsTest, BadDetectorOptionIsNamed) {
  WriteThrottleOptions o;
  o.overload.surge_ratio = 0.5;
  const absl::Status s = ValidateWriteThrottleOptions(o);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("WriteThrottleOptions.overload: "
                        "OverloadDetectorOptions.surge_ratio"));
  EXPECT_FALSE(WriteThrottle::Create(o).ok());
}

}  // namespace
}  // namespace spillway
