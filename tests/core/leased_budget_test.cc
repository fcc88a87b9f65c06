// Tests of LeasedBudget on simulated time: a fake store behind the
// BudgetStore interface, a clock that only moves when a test advances it,
// and metrics and log lines read back by name. Nothing sleeps.

#include "spillway/leased_budget.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <deque>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spillway/budget_store.h"
#include "spillway/log.h"
#include "spillway/metric_names.h"
#include "spillway/rejection.h"
#include "spillway/testing/in_memory_metrics.h"
#include "spillway/testing/simulated_clock.h"
#include "tests/common/capture_log.h"
#include "tests/common/invalid_options.h"

namespace spillway {
namespace {

using ::spillway::test::CaptureLog;
using ::spillway::test::ExpectInvalidArgument;
using ::spillway::test::ValueOrFail;
using ::spillway::testing::InMemoryMetricsSink;
using ::spillway::testing::SimulatedClock;
using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A BudgetStore on simulated time. A reply comes from, in this order: a
// standing failure (FailWith), the script (Push), a token bucket on the
// clock (UseBucket), or else `want` is granted in full. Every call is
// recorded. As the interface allows, it is not thread-safe: tests call it
// from one refresh thread only.
class FakeStore final : public BudgetStore {
 public:
  using Reply = absl::StatusOr<Grant>;

  // Fails every call with `status` from now on; OK ends the failure.
  void FailWith(absl::Status status) { failure_ = std::move(status); }

  // Queues one reply, used before the bucket (or the unlimited default).
  void Push(Reply reply) { script_.push_back(std::move(reply)); }

  // Answers from a token bucket of `rate` and `burst`, full now.
  void UseBucket(SimulatedClock* clock, double rate, double burst) {
    clock_ = clock;
    rate_ = rate;
    burst_ = burst;
    tokens_ = burst;
    refilled_at_ = clock->Now();
  }

  Reply Take(absl::string_view key, const BudgetSpec& spec,
             int64_t want) override {
    EXPECT_GE(want, 1) << "Take(" << key << ") asked for " << want;
    keys_.emplace_back(key);
    wants_.push_back(want);
    spec_ = spec;
    Reply reply = Answer(want);
    if (reply.ok()) granted_ += reply->tokens;
    return reply;
  }

  const std::vector<int64_t>& wants() const { return wants_; }
  const std::vector<std::string>& keys() const { return keys_; }
  int calls() const { return static_cast<int>(wants_.size()); }
  // Tokens granted by successful calls.
  int64_t granted() const { return granted_; }
  // The spec of the last call.
  const BudgetSpec& spec() const { return spec_; }

 private:
  Reply Answer(int64_t want) {
    if (!failure_.ok()) return failure_;
    if (!script_.empty()) {
      Reply reply = std::move(script_.front());
      script_.pop_front();
      return reply;
    }
    if (clock_ == nullptr) return Grant{want, absl::ZeroDuration()};
    const MonotonicTime now = clock_->Now();
    tokens_ = std::min(burst_, tokens_ + absl::ToDoubleSeconds(
                                             ToDuration(now - refilled_at_)) *
                                             rate_);
    refilled_at_ = now;
    const int64_t whole = static_cast<int64_t>(std::floor(tokens_ + 1e-9));
    const int64_t grant = std::min(want, whole);
    tokens_ = std::max(0.0, tokens_ - static_cast<double>(grant));
    Grant g{grant, absl::ZeroDuration()};
    if (grant < want) {
      g.retry_after = absl::Nanoseconds(std::ceil((1 - tokens_) / rate_ * 1e9));
    }
    return g;
  }

  absl::Status failure_;
  std::deque<Reply> script_;
  SimulatedClock* clock_ = nullptr;
  double rate_ = 0;
  double burst_ = 0;
  double tokens_ = 0;
  MonotonicTime refilled_at_;
  std::vector<int64_t> wants_;
  std::vector<std::string> keys_;
  BudgetSpec spec_;
  int64_t granted_ = 0;
};

// A sentinel no refusal can produce, so a test sees that TryAcquire wrote
// its out-parameter.
const absl::Duration kUnset = -absl::Hours(12345);

constexpr absl::Duration kMs = absl::Milliseconds(1);

class LeasedBudgetTest : public ::testing::Test {
 protected:
  // Budget "orders": 1000/s, burst 100, refresh 100 ms (so max_lease
  // defaults to 100), on the test's clock, metrics and log.
  LeasedBudgetOptions Options() {
    LeasedBudgetOptions o;
    o.key = "orders";
    o.spec = {.rate = 1000, .burst = 100};
    o.clock = &clock_;
    o.metrics = &metrics_;
    o.log = &log_;
    return o;
  }

  std::unique_ptr<LeasedBudget> Make(const LeasedBudgetOptions& options) {
    return ValueOrFail(LeasedBudget::Create(options, &store_));
  }

  // Offers `calls` writes of cost 1; returns how many were admitted.
  static int64_t Offer(LeasedBudget& budget, int64_t calls) {
    int64_t admitted = 0;
    for (int64_t i = 0; i < calls; ++i) admitted += budget.TryAcquire() ? 1 : 0;
    return admitted;
  }

  // Takes every token of the lease; returns how many.
  static int64_t Drain(LeasedBudget& budget) {
    int64_t taken = 0;
    while (budget.TryAcquire()) ++taken;
    return taken;
  }

  // `calls_per_ms` calls in each of `ms` 1 ms steps, refreshing every
  // 100 ms (after the step that ends the interval). Returns the admitted.
  int64_t Run(LeasedBudget& budget, int ms, int calls_per_ms) {
    int64_t admitted = 0;
    for (int t = 1; t <= ms; ++t) {
      clock_.Advance(kMs);
      admitted += Offer(budget, calls_per_ms);
      if (t % 100 == 0) budget.Refresh().IgnoreError();
    }
    return admitted;
  }

  double Gauge(const MetricDef& def) const {
    return metrics_.GaugeValue(def.name, {"orders"}).value_or(-1);
  }
  double ModeGauge(absl::string_view mode) const {
    return metrics_
        .GaugeValue(metrics::kBudgetMode.name, {"orders", std::string(mode)})
        .value_or(-1);
  }
  double Refreshes(absl::string_view result) const {
    return metrics_
        .CounterValue(metrics::kBudgetRefreshes.name,
                      {"orders", std::string(result)})
        .value_or(-1);
  }
  double Rejected(Reason reason) const {
    return metrics_
        .CounterValue(
            metrics::kRejected.name,
            {"orders", "global_budget", "any", std::string(ReasonName(reason))})
        .value_or(-1);
  }
  double Admitted() const {
    return metrics_
        .CounterValue(metrics::kAdmitted.name,
                      {"orders", "global_budget", "any"})
        .value_or(-1);
  }

  SimulatedClock clock_;
  InMemoryMetricsSink metrics_;
  CaptureLog log_;
  FakeStore store_;
};

// --- Options
// ------------------------------------------------------------------

using InvalidCase = test::InvalidOptionsCase<LeasedBudgetOptions>;

class LeasedBudgetInvalidOptionsTest
    : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(LeasedBudgetInvalidOptionsTest, IsRefusedNamingFieldAndValue) {
  LeasedBudgetOptions o;
  GetParam().mutate(o);
  ExpectInvalidArgument(ValidateLeasedBudgetOptions(o),
                        "LeasedBudgetOptions." + GetParam().field,
                        GetParam().value);
  FakeStore store;
  ExpectInvalidArgument(LeasedBudget::Create(o, &store).status(),
                        "LeasedBudgetOptions." + GetParam().field,
                        GetParam().value);
}

INSTANTIATE_TEST_SUITE_P(
    Fields, LeasedBudgetInvalidOptionsTest,
    ::testing::ValuesIn(std::vector<InvalidCase>{
        {"KeyEmpty", [](auto& o) { o.key = ""; }, "key", "0 characters"},
        {"KeyTooLong", [](auto& o) { o.key = std::string(201, 'k'); }, "key",
         "201 characters"},
        {"KeyControlCharacter", [](auto& o) { o.key = "or\nders"; }, "key",
         "\"or\\nders\""},
        {"KeyNotAscii", [](auto& o) { o.key = "caf\xc3\xa9"; }, "key",
         "\"caf\\xc3\\xa9\""},
        {"RateZero", [](auto& o) { o.spec.rate = 0; }, "spec.rate", "0"},
        {"RateNegative", [](auto& o) { o.spec.rate = -5; }, "spec.rate", "-5"},
        {"RateNan", [](auto& o) { o.spec.rate = std::nan(""); }, "spec.rate",
         "nan"},
        {"RateInfinite", [](auto& o) { o.spec.rate = INFINITY; }, "spec.rate",
         "inf"},
        {"RateTooHigh", [](auto& o) { o.spec.rate = 2e9; }, "spec.rate",
         "2e+09"},
        {"BurstBelowOne", [](auto& o) { o.spec.burst = 0.5; }, "spec.burst",
         "0.5"},
        {"BurstNan", [](auto& o) { o.spec.burst = std::nan(""); }, "spec.burst",
         "nan"},
        {"BurstTooHigh", [](auto& o) { o.spec.burst = 2e9; }, "spec.burst",
         "2e+09"},
        {"FillTimeTooLong",
         [](auto& o) {
           o.spec.rate = 1e-3;
           o.spec.burst = 1e6;
         },
         "spec", "burst=1e+06, rate=0.001"},
        {"RefreshIntervalZero",
         [](auto& o) { o.refresh_interval = absl::ZeroDuration(); },
         "refresh_interval", "0"},
        {"RefreshIntervalBelowOneMs",
         [](auto& o) { o.refresh_interval = absl::Microseconds(999); },
         "refresh_interval", "999us"},
        {"RefreshIntervalAboveTenSeconds",
         [](auto& o) { o.refresh_interval = absl::Milliseconds(10001); },
         "refresh_interval", "10.001s"},
        {"MinLeaseZero", [](auto& o) { o.min_lease = 0; }, "min_lease", "0"},
        {"MinLeaseTooLarge", [](auto& o) { o.min_lease = 1'000'000'001; },
         "min_lease", "1000000001"},
        {"MaxLeaseNegative", [](auto& o) { o.max_lease = -1; }, "max_lease",
         "-1"},
        {"MaxLeaseBelowMinLease",
         [](auto& o) {
           o.min_lease = 10;
           o.max_lease = 9;
         },
         "max_lease", "9"},
        {"MaxLeaseTooLarge", [](auto& o) { o.max_lease = 1'000'000'001; },
         "max_lease", "1000000001"},
        {"HeadroomBelowOne", [](auto& o) { o.lease_headroom = 0.99; },
         "lease_headroom", "0.99"},
        {"HeadroomAboveTen", [](auto& o) { o.lease_headroom = 10.5; },
         "lease_headroom", "10.5"},
        {"HeadroomNan", [](auto& o) { o.lease_headroom = std::nan(""); },
         "lease_headroom", "nan"},
        {"FailModeUnknown",
         [](auto& o) { o.fail_mode = static_cast<FailMode>(7); }, "fail_mode",
         "7"},
        {"FallbackFleetSizeZero", [](auto& o) { o.fallback_fleet_size = 0; },
         "fallback_fleet_size", "0"},
    }),
    test::CaseName<LeasedBudgetOptions>);

TEST(LeasedBudgetOptionsTest, EdgesOfEveryRangeAreAccepted) {
  const std::vector<std::function<void(LeasedBudgetOptions&)>> edges = {
      [](auto&) {},
      [](auto& o) { o.key = std::string(200, 'k'); },
      [](auto& o) { o.key = "k"; },
      [](auto& o) { o.key = " {orders:eu} ~"; },  // Space and braces print.
      [](auto& o) { o.spec = {.rate = 1e9, .burst = 1e9}; },
      [](auto& o) { o.spec = {.rate = 1e-8, .burst = 1}; },  // 1e8 s to fill.
      [](auto& o) { o.refresh_interval = absl::Milliseconds(1); },
      [](auto& o) { o.refresh_interval = absl::Seconds(10); },
      [](auto& o) { o.min_lease = 1'000'000'000; },
      [](auto& o) {
        o.min_lease = 7;
        o.max_lease = 7;
      },
      [](auto& o) { o.max_lease = 1'000'000'000; },
      [](auto& o) { o.lease_headroom = 1; },
      [](auto& o) { o.lease_headroom = 10; },
      [](auto& o) { o.fail_mode = FailMode::kFailClosed; },
      [](auto& o) { o.fallback_fleet_size = 1'000'000; },
  };
  FakeStore store;
  for (size_t i = 0; i < edges.size(); ++i) {
    LeasedBudgetOptions o;
    edges[i](o);
    EXPECT_TRUE(ValidateLeasedBudgetOptions(o).ok()) << "edge " << i;
    EXPECT_TRUE(LeasedBudget::Create(o, &store).ok()) << "edge " << i;
  }
}

TEST(LeasedBudgetOptionsTest, NullStoreIsRefused) {
  absl::StatusOr<std::unique_ptr<LeasedBudget>> budget =
      LeasedBudget::Create({}, nullptr);
  EXPECT_EQ(budget.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(budget.status().message()), HasSubstr("store"));
}

// max_lease 0 means max(min_lease, min(floor(burst), ceil(rate * interval))).
TEST(LeasedBudgetOptionsTest, DefaultMaxLease) {
  struct Row {
    double rate;
    double burst;
    absl::Duration interval;
    int64_t min_lease;
    int64_t expected;
  };
  const Row rows[] = {
      {1000, 100, absl::Milliseconds(100), 1, 100},  // Both 100.
      {1000, 50, absl::Milliseconds(100), 1, 50},    // Burst binds.
      {100, 100, absl::Milliseconds(100), 1, 10},    // One interval binds.
      {100, 100, absl::Milliseconds(100), 20, 20},   // min_lease binds.
      {1e6, 2.5, absl::Milliseconds(100), 1, 2},     // Whole tokens of burst.
      {3, 100, absl::Milliseconds(100), 1, 1},       // ceil(0.3).
      {1e9, 1e9, absl::Seconds(10), 1, 1'000'000'000},
  };
  FakeStore store;
  for (const Row& row : rows) {
    LeasedBudgetOptions o;
    o.spec = {.rate = row.rate, .burst = row.burst};
    o.refresh_interval = row.interval;
    o.min_lease = row.min_lease;
    std::unique_ptr<LeasedBudget> budget =
        ValueOrFail(LeasedBudget::Create(o, &store));
    ASSERT_NE(budget, nullptr);
    EXPECT_EQ(budget->max_lease(), row.expected)
        << "rate " << row.rate << " burst " << row.burst;
  }
}

TEST(BudgetModeTest, Names) {
  EXPECT_EQ(BudgetModeName(BudgetMode::kShared), "shared");
  EXPECT_EQ(BudgetModeName(BudgetMode::kSafeShare), "safe_share");
  EXPECT_EQ(BudgetModeName(BudgetMode::kFailOpen), "fail_open");
  EXPECT_EQ(BudgetModeName(BudgetMode::kFailClosed), "fail_closed");
}

// --- Lease sizing
// -------------------------------------------------------------

TEST_F(LeasedBudgetTest, StartsSharedWithAnEmptyLeaseAndEverySeriesBound) {
  std::unique_ptr<LeasedBudget> budget = Make(Options());
  ASSERT_NE(budget, nullptr);
  EXPECT_EQ(budget->mode(), BudgetMode::kShared);
  EXPECT_EQ(budget->lease_tokens(), 0);
  EXPECT_EQ(store_.calls(), 0);
  Rejection why;
  why.retry_after = kUnset;
  EXPECT_FALSE(budget->TryAcquire(1, &why));
  EXPECT_EQ(why.gate, Gate::kGlobalBudget);
  EXPECT_EQ(why.reason, Reason::kBudgetExhausted);
  // Refresh due now: a tenth of the interval, never zero.
  EXPECT_EQ(why.retry_after, absl::Milliseconds(10));

  EXPECT_EQ(Gauge(metrics::kLeaseTokens), 0);
  EXPECT_EQ(Gauge(metrics::kMaxLease), 100);
  EXPECT_EQ(Gauge(metrics::kOvershootBound), 200);
  EXPECT_EQ(ModeGauge("shared"), 1);
  EXPECT_EQ(ModeGauge("safe_share"), 0);
  EXPECT_EQ(ModeGauge("fail_open"), 0);
  EXPECT_EQ(ModeGauge("fail_closed"), 0);
  EXPECT_EQ(Refreshes("granted"), 0);
  EXPECT_EQ(Refreshes("exhausted"), 0);
  EXPECT_EQ(Refreshes("error"), 0);
  EXPECT_EQ(Rejected(Reason::kBudgetExhausted), 1);
  EXPECT_EQ(Rejected(Reason::kBudgetUnavailable), 0);
  EXPECT_EQ(Admitted(), 0);
  EXPECT_TRUE(log_.Lines().empty());
}

// Before any measurement, demand is the fair share: rate / fleet size.
TEST_F(LeasedBudgetTest, ColdStartTargetIsTheFairShare) {
  LeasedBudgetOptions o = Options();
  o.fallback_fleet_size = 4;
  o.max_lease = 1000;
  std::unique_ptr<LeasedBudget> budget = Make(o);
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(budget->Refresh().ok());
  // 1000 / 4 = 250/s; 250 * 0.1 s * 1.5 = 37.5, rounded up.
  EXPECT_EQ(budget->lease_target(), 38);
  EXPECT_THAT(store_.wants(), ElementsAre(38));
  EXPECT_THAT(store_.keys(), ElementsAre("orders"));
  EXPECT_EQ(store_.spec().rate, 1000);
  EXPECT_EQ(store_.spec().burst, 100);
  EXPECT_EQ(budget->lease_tokens(), 38);
  EXPECT_EQ(Gauge(metrics::kLeaseTokens), 38);
  EXPECT_EQ(Gauge(metrics::kLeaseTarget), 38);
  EXPECT_EQ(Refreshes("granted"), 1);
  EXPECT_EQ(Drain(*budget), 38);
}

// The fair share uses the fleet size current at the first refresh.
TEST_F(LeasedBudgetTest, ColdStartUsesTheLatestFleetSize) {
  LeasedBudgetOptions o = Options();
  o.max_lease = 1000;
  std::unique_ptr<LeasedBudget> budget = Make(o);
  ASSERT_NE(budget, nullptr);
  budget->SetFleetSize(10);
  ASSERT_TRUE(budget->Refresh().ok());
  EXPECT_EQ(budget->lease_target(), 15);  // 100/s * 0.15 s.
}

TEST_F(LeasedBudgetTest, ColdStartIsClampedToMaxLease) {
  std::unique_ptr<LeasedBudget> budget = Make(Options());
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(budget->Refresh().ok());
  // 1000/s * 0.15 s = 150 > max_lease 100.
  EXPECT_EQ(budget->lease_target(), 100);
  EXPECT_THAT(store_.wants(), ElementsAre(100));
}

// 2000 calls/s, all admitted: 2000 * 0.1 s * 1.5 = 300.
TEST_F(LeasedBudgetTest, DemandIsMeasuredFromAdmitCalls) {
  LeasedBudgetOptions o = Options();
  o.max_lease = 1000;
  std::unique_ptr<LeasedBudget> budget = Make(o);
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(budget->Refresh().ok());
  EXPECT_EQ(budget->lease_target(), 150);  // Fair share, fleet of 1.
  for (int r = 0; r < 5; ++r) {
    for (int ms = 0; ms < 100; ++ms) {
      clock_.Advance(kMs);
      Offer(*budget, 2);
    }
    ASSERT_TRUE(budget->Refresh().ok());
    EXPECT_EQ(budget->lease_target(), 300) << "refresh " << r;
    EXPECT_EQ(budget->lease_tokens(), 300) << "refresh " << r;
    EXPECT_EQ(Gauge(metrics::kLeaseTarget), 300);
  }
  EXPECT_EQ(budget->offered(), 1000u);
  // The first interval had 150 tokens; every later one had 300.
  EXPECT_EQ(budget->admitted(), 950u);
  // Top-ups ask exactly for what was used.
  EXPECT_THAT(store_.wants(), ElementsAre(150, 300, 200, 200, 200, 200));
}

// Refused calls are demand too: a starved instance asks for its need.
TEST_F(LeasedBudgetTest, RefusedCallsCountAsDemand) {
  LeasedBudgetOptions o = Options();
  o.max_lease = 1000;
  std::unique_ptr<LeasedBudget> budget = Make(o);
  ASSERT_NE(budget, nullptr);
  for (int i = 0; i < 4; ++i) store_.Push(BudgetStore::Grant{0, kMs});
  ASSERT_TRUE(budget->Refresh().ok());
  for (int r = 0; r < 3; ++r) {
    for (int ms = 0; ms < 100; ++ms) {
      clock_.Advance(kMs);
      EXPECT_EQ(Offer(*budget, 2), 0);
    }
    ASSERT_TRUE(budget->Refresh().ok());
    EXPECT_EQ(budget->lease_target(), 300) << "refresh " << r;
  }
  EXPECT_THAT(store_.wants(), ElementsAre(150, 300, 300, 300));
  EXPECT_EQ(Refreshes("exhausted"), 4);
  EXPECT_EQ(Refreshes("granted"), 0);
  EXPECT_EQ(budget->admitted(), 0u);
  EXPECT_EQ(budget->offered(), 600u);
}

TEST_F(LeasedBudgetTest, DemandIsMeasuredInTokens) {
  LeasedBudgetOptions o = Options();
  o.max_lease = 1000;
  std::unique_ptr<LeasedBudget> budget = Make(o);
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(budget->Refresh().ok());
  // 100 writes of cost 4 per 100 ms: 4000 tokens/s.
  for (int ms = 0; ms < 100; ++ms) {
    clock_.Advance(kMs);
    budget->TryAcquire(4);
  }
  ASSERT_TRUE(budget->Refresh().ok());
  EXPECT_EQ(budget->lease_target(), 600);
}

// When calls stop, demand decays with the 1 s EWMA; an idle lease at or
// above its target costs no store call.
TEST_F(LeasedBudgetTest, DemandDecaysSmoothlyAndAnIdleLeaseCostsNothing) {
  LeasedBudgetOptions o = Options();
  o.max_lease = 1000;
  std::unique_ptr<LeasedBudget> budget = Make(o);
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(budget->Refresh().ok());
  // The estimate the header documents, replayed: it starts at the fair
  // share and each 100 ms measurement moves it by 1 - exp(-0.1).
  const double alpha = 1 - std::exp(-0.1);
  double ewma = 1000;
  for (int r = 0; r < 30; ++r) {  // 3 s at 2000 calls/s.
    for (int ms = 0; ms < 100; ++ms) {
      clock_.Advance(kMs);
      Offer(*budget, 2);
    }
    ewma += alpha * (2000 - ewma);
    ASSERT_TRUE(budget->Refresh().ok());
  }
  EXPECT_EQ(budget->lease_target(), 300);
  EXPECT_EQ(budget->lease_tokens(), 300);
  const int calls = store_.calls();

  int64_t previous = budget->lease_target();
  for (int r = 0; r < 100; ++r) {  // 10 s idle.
    clock_.Advance(100 * kMs);
    ewma -= alpha * ewma;
    ASSERT_TRUE(budget->Refresh().ok());
    const int64_t target = budget->lease_target();
    const double expected = std::max(1.0, std::ceil(ewma * 0.15));
    EXPECT_NEAR(static_cast<double>(target), expected, 1) << "idle " << r;
    EXPECT_LE(target, previous) << "idle " << r;
    previous = target;
  }
  EXPECT_EQ(budget->lease_target(), 1);  // min_lease after 10 s.
  EXPECT_EQ(store_.calls(), calls) << "idle refreshes called the store";
  EXPECT_EQ(budget->lease_tokens(), 300);  // Held, not given back.
}

TEST_F(LeasedBudgetTest, OneSecondIdleLeavesAboutOneEOfTheTarget) {
  LeasedBudgetOptions o = Options();
  o.max_lease = 1000;
  std::unique_ptr<LeasedBudget> budget = Make(o);
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(budget->Refresh().ok());
  Run(*budget, 10000, 2);  // Long enough for the EWMA to reach 2000.
  EXPECT_EQ(budget->lease_target(), 300);
  for (int r = 0; r < 10; ++r) {
    clock_.Advance(100 * kMs);
    ASSERT_TRUE(budget->Refresh().ok());
  }
  EXPECT_NEAR(static_cast<double>(budget->lease_target()), 300 * std::exp(-1),
              2);
}

TEST_F(LeasedBudgetTest, TargetStaysWithinMinAndMaxLease) {
  LeasedBudgetOptions o = Options();
  o.min_lease = 40;
  o.max_lease = 60;
  std::unique_ptr<LeasedBudget> budget = Make(o);
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(budget->Refresh().ok());
  EXPECT_EQ(budget->lease_target(), 60);  // 150 clamped.
  Run(*budget, 1000, 50);                 // 50000/s.
  EXPECT_EQ(budget->lease_target(), 60);
  EXPECT_LE(budget->lease_tokens(), 60);
  for (int r = 0; r < 200; ++r) {  // 20 s idle.
    clock_.Advance(100 * kMs);
    ASSERT_TRUE(budget->Refresh().ok());
    EXPECT_GE(budget->lease_target(), 40);
  }
  EXPECT_EQ(budget->lease_target(), 40);
  EXPECT_THAT(store_.wants(), Each(::testing::Le(60)));
}

TEST_F(LeasedBudgetTest, AFullLeaseIsNeverToppedAboveItsTarget) {
  std::unique_ptr<LeasedBudget> budget = Make(Options());
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(budget->Refresh().ok());
  ASSERT_EQ(budget->lease_tokens(), 100);
  // Full: no call.
  ASSERT_TRUE(budget->Refresh().ok());
  EXPECT_EQ(store_.calls(), 1);
  // 10 used: asks for exactly 10.
  EXPECT_EQ(Offer(*budget, 10), 10);
  ASSERT_TRUE(budget->Refresh().ok());
  EXPECT_THAT(store_.wants(), ElementsAre(100, 10));
  EXPECT_EQ(budget->lease_tokens(), 100);
}

TEST_F(LeasedBudgetTest, PartialAndEmptyGrants) {
  std::unique_ptr<LeasedBudget> budget = Make(Options());
  ASSERT_NE(budget, nullptr);
  store_.Push(BudgetStore::Grant{30, absl::Milliseconds(20)});
  ASSERT_TRUE(budget->Refresh().ok());
  EXPECT_EQ(budget->lease_tokens(), 30);
  EXPECT_EQ(Refreshes("granted"), 1);
  EXPECT_EQ(Gauge(metrics::kLeaseTokens), 30);

  clock_.Advance(100 * kMs);
  store_.Push(BudgetStore::Grant{0, absl::Milliseconds(20)});
  ASSERT_TRUE(budget->Refresh().ok());
  EXPECT_EQ(budget->lease_tokens(), 30);
  EXPECT_EQ(Refreshes("exhausted"), 1);
  EXPECT_THAT(store_.wants(), ElementsAre(100, 70));

  clock_.Advance(100 * kMs);
  ASSERT_TRUE(budget->Refresh().ok());  // Unlimited again.
  EXPECT_EQ(budget->lease_tokens(), 100);
  EXPECT_EQ(Refreshes("granted"), 2);
  EXPECT_EQ(Drain(*budget), 100);
  EXPECT_EQ(budget->admitted(), 100u);
}

// Measurements need half an interval: a refresh right after another reuses
// the estimate instead of measuring a burst over a microsecond.
TEST_F(LeasedBudgetTest, BackToBackRefreshesDoNotMeasureABurst) {
  LeasedBudgetOptions o = Options();
  o.max_lease = 1000;
  std::unique_ptr<LeasedBudget> budget = Make(o);
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(budget->Refresh().ok());
  Run(*budget, 3000, 2);
  ASSERT_EQ(budget->lease_target(), 300);
  clock_.Advance(absl::Microseconds(1));
  Offer(*budget, 20);  // 20 calls in 1 us would read as 2e7/s.
  ASSERT_TRUE(budget->Refresh().ok());
  EXPECT_EQ(budget->lease_target(), 300);
}

// A later gate refused: the tokens go back, never above max_lease.
TEST_F(LeasedBudgetTest, ReturnGoesBackToTheLeaseUpToMaxLease) {
  std::unique_ptr<LeasedBudget> budget = Make(Options());
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(budget->Refresh().ok());
  ASSERT_TRUE(budget->TryAcquire(7));
  EXPECT_EQ(budget->lease_tokens(), 93);
  budget->Return(7);
  EXPECT_EQ(budget->lease_tokens(), 100);
  budget->Return(5);
  EXPECT_EQ(budget->lease_tokens(), 100);  // max_lease.
  EXPECT_EQ(Drain(*budget), 100);
}

TEST_F(LeasedBudgetTest, CostAboveMaxLeaseIsRefusedForever) {
  std::unique_ptr<LeasedBudget> budget = Make(Options());
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(budget->Refresh().ok());
  Rejection why;
  why.retry_after = kUnset;
  EXPECT_FALSE(budget->TryAcquire(101, &why));
  EXPECT_EQ(why.retry_after, absl::InfiniteDuration());
  EXPECT_TRUE(budget->TryAcquire(100));
}

// --- Exactness
// ----------------------------------------------------------------

// Admitted tokens minus returned ones never exceed the tokens granted: at
// every step, admitted - returned == granted - lease.
TEST_F(LeasedBudgetTest, AdmitsExactlyWhatWasGranted) {
  store_.UseBucket(&clock_, 1000, 100);
  std::unique_ptr<LeasedBudget> budget = Make(Options());
  ASSERT_NE(budget, nullptr);
  int64_t admitted = 0;
  int64_t returned = 0;
  uint32_t seed = 12345;
  for (int ms = 0; ms < 5000; ++ms) {
    if (ms % 100 == 0) {
      ASSERT_TRUE(budget->Refresh().ok());
    }
    for (int i = 0; i < 3; ++i) {
      seed = seed * 1103515245 + 12345;
      const int64_t n = 1 + (seed >> 16) % 4;
      if (!budget->TryAcquire(n)) continue;
      admitted += n;
      if ((seed >> 20) % 5 == 0) {  // A later gate refused it.
        budget->Return(n);
        returned += n;
      }
    }
    ASSERT_EQ(admitted - returned, store_.granted() - budget->lease_tokens())
        << "at " << ms << " ms";
    clock_.Advance(kMs);
  }
  EXPECT_EQ(budget->admitted(), static_cast<uint64_t>(admitted));
  EXPECT_GT(admitted, 4000);
  EXPECT_LE(admitted - returned, 100 + 5000);  // burst + rate * time.
}

// Four threads hammer TryAcquire (costs 1 to 4, with and without a
// rejection to fill) while the main thread refreshes: the total admitted is
// exactly what the store granted minus what the lease still holds.
TEST_F(LeasedBudgetTest, ThreadsAdmitExactlyWhatWasGranted) {
  LeasedBudgetOptions o = Options();
  o.max_lease = 64;
  std::unique_ptr<LeasedBudget> budget = Make(o);
  ASSERT_NE(budget, nullptr);
  constexpr int kThreads = 4;
  std::atomic<bool> stop{false};
  // Successful admits so far, so the refresh loop below does not end before
  // the threads ran (on a loaded machine 2000 refreshes can finish first).
  std::atomic<int64_t> successes{0};
  std::vector<int64_t> admitted(kThreads, 0);
  std::vector<int64_t> bad_rejections(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const int64_t n = t + 1;
      int64_t mine = 0;
      int64_t bad = 0;
      while (!stop.load(std::memory_order_acquire)) {
        Rejection why;
        if (budget->TryAcquire(n, t % 2 == 0 ? &why : nullptr)) {
          mine += n;
          successes.fetch_add(1, std::memory_order_relaxed);
        } else if (t % 2 == 0 && (why.gate != Gate::kGlobalBudget ||
                                  why.retry_after < absl::ZeroDuration())) {
          ++bad;
        }
      }
      admitted[t] = mine;
      bad_rejections[t] = bad;
    });
  }
  // At least 2000 refreshes, and on until the threads admitted 100 times
  // (bounded: the assertions below report a shortfall).
  for (int r = 0;
       r < 2000 ||
       (successes.load(std::memory_order_relaxed) < 100 && r < 2'000'000);
       ++r) {
    EXPECT_TRUE(budget->Refresh().ok());
    clock_.Advance(kMs);
    if (r % 16 == 0) std::this_thread::yield();
  }
  stop.store(true, std::memory_order_release);
  for (std::thread& t : threads) t.join();

  int64_t total = 0;
  for (int t = 0; t < kThreads; ++t) {
    total += admitted[t];
    EXPECT_EQ(bad_rejections[t], 0) << "thread " << t;
  }
  EXPECT_EQ(total, store_.granted() - budget->lease_tokens());
  EXPECT_EQ(budget->admitted(), static_cast<uint64_t>(total));
  EXPECT_GT(total, 0);
  EXPECT_LE(budget->lease_tokens(), 64);
}

// Mode switches while threads admit and return: no data race (TSan), and
// every call is counted once.
TEST_F(LeasedBudgetTest, ModeSwitchesUnderLoadAreRaceFree) {
  LeasedBudgetOptions o = Options();
  o.fallback_fleet_size = 2;
  std::unique_ptr<LeasedBudget> budget = Make(o);
  ASSERT_NE(budget, nullptr);
  constexpr int kThreads = 3;
  std::atomic<bool> stop{false};
  std::vector<int64_t> calls(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      int64_t mine = 0;
      while (!stop.load(std::memory_order_acquire)) {
        Rejection why;
        ++mine;
        if (budget->TryAcquire(1, &why) && mine % 3 == 0) budget->Return(1);
      }
      calls[t] = mine;
    });
  }
  int64_t main_calls = 0;
  for (int r = 0; r < 600; ++r) {
    store_.FailWith(r % 50 < 25 ? absl::OkStatus()
                                : absl::UnavailableError("flapping"));
    if (r % 50 == 25) {
      // Empty the lease at the first failing refresh, so that it asks the
      // store and falls back whether or not the threads got a core: a full
      // lease asks nothing, and then the store's failure goes unseen.
      Rejection why;
      for (int i = 0; i < 1'000'000; ++i) {
        ++main_calls;
        if (!budget->TryAcquire(1, &why)) break;
      }
    }
    budget->Refresh().IgnoreError();
    if (r % 100 == 0) budget->SetFleetSize(2 + r / 100);
    clock_.Advance(kMs);
    (void)budget->last_error();
    (void)budget->OvershootBound();
    if (r % 16 == 0) std::this_thread::yield();
  }
  stop.store(true, std::memory_order_release);
  for (std::thread& t : threads) t.join();
  int64_t total = main_calls;
  for (int64_t c : calls) total += c;
  EXPECT_EQ(budget->offered(), static_cast<uint64_t>(total));
  // Each fall-back is one warning and each recovery one info line: at least
  // one of each way, as every failing period starts with an empty lease.
  const int warnings = log_.Count(LogLevel::kWarning);
  EXPECT_GE(warnings, 1);
  EXPECT_EQ(warnings - log_.Count(LogLevel::kInfo),
            budget->mode() == BudgetMode::kShared ? 0 : 1);
}

// --- Fail modes
// ---------------------------------------------------------------

TEST_F(LeasedBudgetTest, StoreErrorFallsBackToSafeShareWithOneLogLine) {
  LeasedBudgetOptions o = Options();
  o.fallback_fleet_size = 4;
  std::unique_ptr<LeasedBudget> budget = Make(o);
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(budget->Refresh().ok());
  ASSERT_EQ(Offer(*budget, 10), 10);  // Below target: the refresh asks.
  ASSERT_GT(budget->lease_tokens(), 0);

  store_.FailWith(absl::UnavailableError("connection refused"));
  const absl::Status s = budget->Refresh();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(budget->last_error(), s);
  EXPECT_EQ(budget->mode(), BudgetMode::kSafeShare);
  EXPECT_EQ(budget->lease_tokens(), 0);  // Dropped.
  EXPECT_EQ(Gauge(metrics::kLeaseTokens), 0);
  EXPECT_EQ(ModeGauge("shared"), 0);
  EXPECT_EQ(ModeGauge("safe_share"), 1);
  EXPECT_EQ(ModeGauge("fail_open"), 0);
  EXPECT_EQ(ModeGauge("fail_closed"), 0);
  EXPECT_EQ(Refreshes("error"), 1);
  ASSERT_EQ(log_.Lines().size(), 1u);
  EXPECT_EQ(log_.Count(LogLevel::kWarning), 1);
  EXPECT_EQ(log_.Lines()[0],
            "fleet budget 'orders': store failed (UNAVAILABLE: connection "
            "refused); falling back to safe_share at 250/s (rate 1000/s over "
            "4 instances)");
}

// Fleet of 4 at 1000/s: each instance admits 250/s, plus its bucket of
// burst / 4 = 25, however much it is offered. Repeated errors stay silent.
TEST_F(LeasedBudgetTest, SafeShareAdmitsRateOverFleetSize) {
  LeasedBudgetOptions o = Options();
  o.fallback_fleet_size = 4;
  std::unique_ptr<LeasedBudget> budget = Make(o);
  ASSERT_NE(budget, nullptr);
  store_.FailWith(absl::UnavailableError("down"));
  ASSERT_FALSE(budget->Refresh().ok());
  ASSERT_EQ(budget->mode(), BudgetMode::kSafeShare);
  const int64_t admitted = Run(*budget, 10000, 1);
  EXPECT_GE(admitted, 2500 - 100);
  EXPECT_LE(admitted, 2500 + 25 + 1);
  EXPECT_EQ(budget->mode(), BudgetMode::kSafeShare);
  EXPECT_EQ(Refreshes("error"), 101);
  EXPECT_EQ(log_.Lines().size(), 1u) << "errors while failed must not log";
  EXPECT_EQ(Admitted(), static_cast<double>(admitted));
  EXPECT_EQ(Rejected(Reason::kBudgetExhausted),
            static_cast<double>(10000 - admitted));
}

TEST_F(LeasedBudgetTest, SafeShareRetryAfterIsTheBucketsExactWait) {
  LeasedBudgetOptions o = Options();
  o.fallback_fleet_size = 4;
  std::unique_ptr<LeasedBudget> budget = Make(o);
  ASSERT_NE(budget, nullptr);
  store_.FailWith(absl::UnavailableError("down"));
  ASSERT_FALSE(budget->Refresh().ok());
  EXPECT_EQ(Drain(*budget), 25);  // burst / 4.
  Rejection why;
  why.retry_after = kUnset;
  EXPECT_FALSE(budget->TryAcquire(1, &why));
  EXPECT_EQ(why.gate, Gate::kGlobalBudget);
  EXPECT_EQ(why.reason, Reason::kBudgetExhausted);
  EXPECT_EQ(why.retry_after, absl::Milliseconds(4));  // 1 / 250 s.
  clock_.Advance(absl::Milliseconds(3));
  EXPECT_FALSE(budget->TryAcquire(1, &why));
  EXPECT_EQ(why.retry_after, absl::Milliseconds(1));
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(budget->TryAcquire(1));
  // A return goes to the bucket.
  budget->Return(1);
  EXPECT_TRUE(budget->TryAcquire(1));
  EXPECT_FALSE(budget->TryAcquire(1));
}

// SetFleetSize changes the safe share and the overshoot bound.
TEST_F(LeasedBudgetTest, SetFleetSizeChangesTheSafeShare) {
  std::unique_ptr<LeasedBudget> budget = Make(Options());
  ASSERT_NE(budget, nullptr);
  budget->SetFleetSize(8);
  EXPECT_EQ(budget->fleet_size(), 8);
  store_.FailWith(absl::UnavailableError("down"));
  ASSERT_FALSE(budget->Refresh().ok());
  EXPECT_THAT(log_.Lines()[0], HasSubstr("at 125/s (rate 1000/s over 8"));
  // 125/s for 2 s plus the bucket's 12.5 (capped by the rate change).
  const int64_t admitted = Run(*budget, 2000, 1);
  EXPECT_GE(admitted, 250 - 13);
  EXPECT_LE(admitted, 250 + 13);
}

TEST_F(LeasedBudgetTest, FailOpenAdmitsEverything) {
  LeasedBudgetOptions o = Options();
  o.fail_mode = FailMode::kFailOpen;
  std::unique_ptr<LeasedBudget> budget = Make(o);
  ASSERT_NE(budget, nullptr);
  store_.FailWith(absl::DeadlineExceededError("timeout"));
  ASSERT_FALSE(budget->Refresh().ok());
  EXPECT_EQ(budget->mode(), BudgetMode::kFailOpen);
  EXPECT_EQ(ModeGauge("fail_open"), 1);
  EXPECT_EQ(ModeGauge("shared"), 0);
  EXPECT_EQ(Run(*budget, 1000, 10), 10000);
  budget->Return(5);  // Nowhere to go; harmless.
  EXPECT_EQ(budget->lease_tokens(), 0);
  EXPECT_EQ(Admitted(), 10000);
  ASSERT_EQ(log_.Lines().size(), 1u);
  EXPECT_THAT(log_.Lines()[0],
              HasSubstr("store failed (DEADLINE_EXCEEDED: timeout); falling "
                        "back to fail_open"));
}

TEST_F(LeasedBudgetTest, FailClosedRefusesAsUnavailable) {
  LeasedBudgetOptions o = Options();
  o.fail_mode = FailMode::kFailClosed;
  std::unique_ptr<LeasedBudget> budget = Make(o);
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(budget->Refresh().ok());
  ASSERT_EQ(Offer(*budget, 1), 1);
  store_.FailWith(absl::UnavailableError("down"));
  ASSERT_FALSE(budget->Refresh().ok());
  EXPECT_EQ(budget->mode(), BudgetMode::kFailClosed);
  EXPECT_EQ(ModeGauge("fail_closed"), 1);
  Rejection why;
  why.retry_after = kUnset;
  EXPECT_FALSE(budget->TryAcquire(1, &why));
  EXPECT_EQ(why.gate, Gate::kGlobalBudget);
  EXPECT_EQ(why.reason, Reason::kBudgetUnavailable);
  EXPECT_EQ(why.retry_after, absl::Milliseconds(100));  // The next probe.
  clock_.Advance(absl::Milliseconds(30));
  EXPECT_FALSE(budget->TryAcquire(1, &why));
  EXPECT_EQ(why.retry_after, absl::Milliseconds(70));
  EXPECT_EQ(Run(*budget, 1000, 1), 0);
  EXPECT_EQ(Rejected(Reason::kBudgetUnavailable), 1002);
  EXPECT_EQ(Rejected(Reason::kBudgetExhausted), 0);
  EXPECT_THAT(log_.Lines(),
              ElementsAre(HasSubstr("falling back to fail_closed")));
}

// The first successful refresh resumes the shared budget, with one info
// line; probes while failed ask for a full target.
TEST_F(LeasedBudgetTest, RecoversOnTheFirstSuccessfulRefresh) {
  LeasedBudgetOptions o = Options();
  o.fallback_fleet_size = 4;
  std::unique_ptr<LeasedBudget> budget = Make(o);
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(budget->Refresh().ok());
  ASSERT_EQ(Offer(*budget, 1), 1);
  store_.FailWith(absl::UnavailableError("down"));
  ASSERT_FALSE(budget->Refresh().ok());
  const int calls_before = store_.calls();
  Run(*budget, 10000, 1);  // 100 probes.
  ASSERT_EQ(store_.calls(), calls_before + 100);
  for (int i = calls_before; i < store_.calls(); ++i) {
    EXPECT_EQ(store_.wants()[i], budget->lease_target()) << "probe " << i;
  }
  EXPECT_EQ(log_.Lines().size(), 1u);

  store_.FailWith(absl::OkStatus());
  ASSERT_TRUE(budget->Refresh().ok());
  EXPECT_EQ(budget->mode(), BudgetMode::kShared);
  EXPECT_TRUE(budget->last_error().ok());
  EXPECT_EQ(budget->lease_tokens(), budget->lease_target());
  EXPECT_EQ(ModeGauge("shared"), 1);
  EXPECT_EQ(ModeGauge("safe_share"), 0);
  EXPECT_EQ(Gauge(metrics::kLeaseTokens),
            static_cast<double>(budget->lease_target()));
  ASSERT_EQ(log_.Lines().size(), 2u);
  EXPECT_EQ(log_.Count(LogLevel::kInfo), 1);
  EXPECT_EQ(log_.Lines()[1],
            "fleet budget 'orders': store answers again after 10s in "
            "safe_share; back to the shared budget");
  // Admits from the lease again.
  EXPECT_EQ(Drain(*budget), budget->lease_target());
}

// Every kind of store error falls back, the same way.
class LeasedBudgetStoreErrorTest
    : public LeasedBudgetTest,
      public ::testing::WithParamInterface<absl::Status> {};

TEST_P(LeasedBudgetStoreErrorTest, FallsBack) {
  std::unique_ptr<LeasedBudget> budget = Make(Options());
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(budget->Refresh().ok());
  ASSERT_EQ(Offer(*budget, 1), 1);
  store_.FailWith(GetParam());
  EXPECT_EQ(budget->Refresh(), GetParam());
  EXPECT_EQ(budget->mode(), BudgetMode::kSafeShare);
  EXPECT_EQ(budget->last_error(), GetParam());
  ASSERT_EQ(log_.Lines().size(), 1u);
  EXPECT_THAT(log_.Lines()[0], HasSubstr(GetParam().ToString()));
  clock_.Advance(100 * kMs);
  EXPECT_EQ(budget->Refresh(), GetParam());
  EXPECT_EQ(log_.Lines().size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, LeasedBudgetStoreErrorTest,
    ::testing::Values(
        absl::UnavailableError("connection refused"),
        absl::DeadlineExceededError("no reply in 50ms"),
        absl::FailedPreconditionError(
            "WRONGTYPE Operation against a key holding the wrong kind of "
            "value"),
        absl::UnauthenticatedError("WRONGPASS"),
        absl::InternalError("reply makes no sense")),
    [](const ::testing::TestParamInfo<absl::Status>& param_info) {
      std::string name = absl::StatusCodeToString(param_info.param.code());
      name.erase(std::remove(name.begin(), name.end(), '_'), name.end());
      return name;
    });

// A lease at its target makes no store call, so it notices an outage only
// when it needs tokens — and until then it admits from what it holds.
TEST_F(LeasedBudgetTest, AFullLeaseNoticesAnOutageWhenItNeedsTokens) {
  std::unique_ptr<LeasedBudget> budget = Make(Options());
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(budget->Refresh().ok());
  store_.FailWith(absl::UnavailableError("down"));
  clock_.Advance(100 * kMs);
  EXPECT_TRUE(budget->Refresh().ok());
  EXPECT_EQ(budget->mode(), BudgetMode::kShared);
  EXPECT_EQ(store_.calls(), 1);
  EXPECT_EQ(Offer(*budget, 1), 1);
  clock_.Advance(100 * kMs);
  EXPECT_EQ(budget->Refresh().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(budget->mode(), BudgetMode::kSafeShare);
}

// A grant outside [0, want] is a store bug: Internal, and a fall-back,
// never a lease above its target.
TEST_F(LeasedBudgetTest, NonsenseGrantIsAnInternalError) {
  std::unique_ptr<LeasedBudget> budget = Make(Options());
  ASSERT_NE(budget, nullptr);
  store_.Push(BudgetStore::Grant{101, absl::ZeroDuration()});
  const absl::Status s = budget->Refresh();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(s.message()), HasSubstr("101"));
  EXPECT_EQ(budget->mode(), BudgetMode::kSafeShare);
  EXPECT_EQ(budget->lease_tokens(), 0);
  clock_.Advance(100 * kMs);
  store_.Push(BudgetStore::Grant{-1, absl::ZeroDuration()});
  EXPECT_EQ(budget->Refresh().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(budget->lease_tokens(), 0);
}

// Unreachable from the start: the very first refresh falls back.
TEST_F(LeasedBudgetTest, FirstRefreshFailingFallsBack) {
  store_.FailWith(absl::UnavailableError("connection refused"));
  std::unique_ptr<LeasedBudget> budget = Make(Options());
  ASSERT_NE(budget, nullptr);
  EXPECT_FALSE(budget->Refresh().ok());
  EXPECT_EQ(budget->mode(), BudgetMode::kSafeShare);
  EXPECT_EQ(Drain(*budget), 100);  // The whole burst: a fleet of 1.
  EXPECT_THAT(
      log_.Lines(),
      ElementsAre(HasSubstr("at 1000/s (rate 1000/s over 1 instance)")));
}

TEST_F(LeasedBudgetTest, EveryTransitionIsOneLine) {
  std::unique_ptr<LeasedBudget> budget = Make(Options());
  ASSERT_NE(budget, nullptr);
  for (int round = 0; round < 3; ++round) {
    store_.FailWith(absl::UnavailableError("down"));
    for (int i = 0; i < 5; ++i) {
      clock_.Advance(100 * kMs);
      Drain(*budget);  // Needs tokens: the refresh asks.
      budget->Refresh().IgnoreError();
    }
    store_.FailWith(absl::OkStatus());
    for (int i = 0; i < 5; ++i) {
      clock_.Advance(100 * kMs);
      Offer(*budget, 1);
      ASSERT_TRUE(budget->Refresh().ok());
    }
  }
  EXPECT_EQ(log_.Count(LogLevel::kWarning), 3);
  EXPECT_EQ(log_.Count(LogLevel::kInfo), 3);
  EXPECT_EQ(Refreshes("error"), 15);
}

// --- Retry-after
// --------------------------------------------------------------

TEST_F(LeasedBudgetTest, RetryAfterIsTheTimeToTheNextRefresh) {
  std::unique_ptr<LeasedBudget> budget = Make(Options());
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(budget->Refresh().ok());
  EXPECT_EQ(Drain(*budget), 100);
  Rejection why;
  why.retry_after = kUnset;
  EXPECT_FALSE(budget->TryAcquire(1, &why));
  EXPECT_EQ(why.gate, Gate::kGlobalBudget);
  EXPECT_EQ(why.reason, Reason::kBudgetExhausted);
  EXPECT_EQ(why.retry_after, absl::Milliseconds(100));
  clock_.Advance(absl::Milliseconds(30));
  EXPECT_FALSE(budget->TryAcquire(1, &why));
  EXPECT_EQ(why.retry_after, absl::Milliseconds(70));
  clock_.Advance(absl::Milliseconds(69));
  EXPECT_FALSE(budget->TryAcquire(1, &why));
  EXPECT_EQ(why.retry_after, absl::Milliseconds(1));
  // The refresh is due or late: never zero or negative (refused callers
  // must not spin), a tenth of the interval.
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_FALSE(budget->TryAcquire(1, &why));
  EXPECT_EQ(why.retry_after, absl::Milliseconds(10));
  clock_.Advance(absl::Milliseconds(50));
  EXPECT_FALSE(budget->TryAcquire(1, &why));
  EXPECT_EQ(why.retry_after, absl::Milliseconds(10));
  EXPECT_EQ(why.ToString(),
            "global_budget: budget_exhausted, retry after 10ms");
}

TEST_F(LeasedBudgetTest, RetryAfterIsTheStoresWaitWhenLonger) {
  std::unique_ptr<LeasedBudget> budget = Make(Options());
  ASSERT_NE(budget, nullptr);
  store_.Push(BudgetStore::Grant{10, absl::Milliseconds(250)});
  ASSERT_TRUE(budget->Refresh().ok());
  EXPECT_EQ(Drain(*budget), 10);
  Rejection why;
  EXPECT_FALSE(budget->TryAcquire(1, &why));
  EXPECT_EQ(why.retry_after, absl::Milliseconds(250));
  clock_.Advance(absl::Milliseconds(200));
  EXPECT_FALSE(budget->TryAcquire(1, &why));
  EXPECT_EQ(why.retry_after, absl::Milliseconds(50));

  // A shorter store wait: the next refresh is what counts.
  store_.Push(BudgetStore::Grant{0, absl::Milliseconds(20)});
  ASSERT_TRUE(budget->Refresh().ok());
  EXPECT_FALSE(budget->TryAcquire(1, &why));
  EXPECT_EQ(why.retry_after, absl::Milliseconds(100));
}

TEST_F(LeasedBudgetTest, RetryAfterFromTheStoreClockIsRealistic) {
  // 1000/s, burst 100, shared by nobody else: after the burst is leased and
  // spent, the store's next token is 1 ms away, the next refresh 100 ms.
  store_.UseBucket(&clock_, 1000, 100);
  LeasedBudgetOptions o = Options();
  o.max_lease = 150;
  std::unique_ptr<LeasedBudget> budget = Make(o);
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(budget->Refresh().ok());
  EXPECT_EQ(budget->lease_tokens(), 100);  // Asked 150, got the burst.
  EXPECT_EQ(Drain(*budget), 100);
  Rejection why;
  EXPECT_FALSE(budget->TryAcquire(1, &why));
  EXPECT_EQ(why.retry_after, absl::Milliseconds(100));
}

// --- Overshoot bound
// ----------------------------------------------------------

TEST_F(LeasedBudgetTest, OvershootBoundForFleetsOfOneAndEight) {
  std::unique_ptr<LeasedBudget> budget = Make(Options());
  ASSERT_NE(budget, nullptr);
  EXPECT_EQ(budget->max_lease(), 100);
  EXPECT_EQ(budget->OvershootBound(), 100 + 1 * 100);
  EXPECT_EQ(Gauge(metrics::kOvershootBound), 200);
  budget->SetFleetSize(8);
  EXPECT_EQ(budget->OvershootBound(), 100 + 8 * 100);
  EXPECT_EQ(Gauge(metrics::kOvershootBound), 900);
  budget->SetFleetSize(0);  // Taken as 1.
  EXPECT_EQ(budget->fleet_size(), 1);
  EXPECT_EQ(budget->OvershootBound(), 200);
  EXPECT_EQ(Gauge(metrics::kOvershootBound), 200);
  budget->SetFleetSize(-3);
  EXPECT_EQ(budget->fleet_size(), 1);
}

TEST_F(LeasedBudgetTest, OvershootBoundRoundsAFractionalBurstUp) {
  LeasedBudgetOptions o = Options();
  o.spec.burst = 2.5;
  o.fallback_fleet_size = 8;
  std::unique_ptr<LeasedBudget> budget = Make(o);
  ASSERT_NE(budget, nullptr);
  EXPECT_EQ(budget->max_lease(), 2);
  EXPECT_EQ(budget->OvershootBound(), 3 + 8 * 2);
  EXPECT_EQ(Gauge(metrics::kOvershootBound), 19);
}

// N instances share one store bucket (rate R, burst B); each is offered
// 0.75 R for 10 s in 1 ms steps and refreshes every 100 ms (staggered).
// The fleet admits nearly all of the budget and never more than
// R * 10 s + OvershootBound().
struct FleetCase {
  std::string name;
  double rate;
  double burst;
  int fleet;
  int64_t max_lease;  // 0: the default.
};

std::ostream& operator<<(std::ostream& os, const FleetCase& c) {
  return os << c.name;
}

class LeasedBudgetFleetTest : public ::testing::TestWithParam<FleetCase> {};

TEST_P(LeasedBudgetFleetTest, AdmitsTheBudgetWithinTheOvershootBound) {
  const FleetCase& c = GetParam();
  SimulatedClock clock;
  FakeStore store;
  store.UseBucket(&clock, c.rate, c.burst);
  CaptureLog log;
  std::vector<std::unique_ptr<LeasedBudget>> budgets;
  for (int i = 0; i < c.fleet; ++i) {
    LeasedBudgetOptions o;
    o.key = "orders";
    o.spec = {.rate = c.rate, .burst = c.burst};
    o.max_lease = c.max_lease;
    o.fallback_fleet_size = c.fleet;
    o.clock = &clock;
    o.log = &log;
    budgets.push_back(ValueOrFail(LeasedBudget::Create(o, &store)));
    ASSERT_NE(budgets.back(), nullptr);
  }
  const double per_ms = 0.75 * c.rate / 1000;
  const int stagger_ms = 100 / c.fleet;
  std::vector<double> owed(c.fleet, 0);
  int64_t admitted = 0;
  for (int ms = 0; ms < 10000; ++ms) {
    for (int i = 0; i < c.fleet; ++i) {
      if ((ms + i * stagger_ms) % 100 == 0) {
        ASSERT_TRUE(budgets[i]->Refresh().ok());
      }
      owed[i] += per_ms;
      while (owed[i] >= 1) {
        owed[i] -= 1;
        admitted += budgets[i]->TryAcquire() ? 1 : 0;
      }
    }
    clock.Advance(kMs);
  }
  const double budget = 10 * c.rate;
  EXPECT_GE(admitted, 0.95 * budget);
  EXPECT_LE(admitted, budget + budgets[0]->OvershootBound());
  int64_t held = 0;
  uint64_t counted = 0;
  for (const auto& b : budgets) {
    EXPECT_EQ(b->mode(), BudgetMode::kShared);
    held += b->lease_tokens();
    counted += b->admitted();
  }
  EXPECT_EQ(admitted, store.granted() - held);
  EXPECT_EQ(counted, static_cast<uint64_t>(admitted));
  EXPECT_TRUE(log.Lines().empty());
}

INSTANTIATE_TEST_SUITE_P(
    Fleets, LeasedBudgetFleetTest,
    ::testing::ValuesIn(std::vector<FleetCase>{
        {"Rate1000Fleet4", 1000, 100, 4, 0},
        {"Rate200Fleet2", 200, 20, 2, 0},
        {"Rate10000Fleet4", 10000, 1000, 4, 0},
        {"Rate5000Fleet8", 5000, 500, 8, 0},
        {"Rate20000Fleet5", 20000, 2000, 5, 0},
        {"Rate1000Fleet4LargeLeases", 1000, 1000, 4, 500},
    }),
    [](const ::testing::TestParamInfo<FleetCase>& param_info) {
      return param_info.param.name;
    });

}  // namespace
}  // namespace spillway
