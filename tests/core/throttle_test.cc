// Tests of WriteThrottle on simulated time: the three gates in order (a
// FixedLimit limiter, a token bucket, a LeasedBudget behind a fake store),
// shadow mode, deadlines, Run() with every callable shape, permits, options
// and a multi-threaded run. Metrics are read back by name. Nothing sleeps.

#include "spillway/throttle.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/cord.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spillway/budget_store.h"
#include "spillway/concurrency_limiter.h"
#include "spillway/fixed_limit.h"
#include "spillway/leased_budget.h"
#include "spillway/metric_names.h"
#include "spillway/rejection.h"
#include "spillway/testing/in_memory_metrics.h"
#include "spillway/testing/simulated_clock.h"
#include "spillway/token_bucket.h"
#include "tests/common/capture_log.h"
#include "tests/common/eventually.h"
#include "tests/common/invalid_options.h"

namespace spillway {
namespace {

using ::spillway::test::CaptureLog;
using ::spillway::test::Eventually;
using ::spillway::test::ExpectInvalidArgument;
using ::spillway::test::ValueOrFail;
using ::spillway::testing::InMemoryMetricsSink;
using ::spillway::testing::SimulatedClock;
using ::testing::HasSubstr;

constexpr absl::Duration kMs = absl::Milliseconds(1);

// Partitions that do not interfere: everything shared, no caps.
constexpr std::array<PartitionOptions, kNumPriorities> kNoPartitions = {
    PartitionOptions{0, 1}, PartitionOptions{0, 1}, PartitionOptions{0, 1}};

// A BudgetStore holding a pool of tokens the test sets: a call grants what
// the pool holds, up to `want`, and a partial grant carries `retry_after`.
// Called from the test's thread only (Refresh), as the interface allows.
class FakeStore final : public BudgetStore {
 public:
  void set_tokens(int64_t tokens) { tokens_ = tokens; }
  void set_retry_after(absl::Duration d) { retry_after_ = d; }
  int calls() const { return calls_; }

  absl::StatusOr<Grant> Take(absl::string_view, const BudgetSpec&,
                             int64_t want) override {
    ++calls_;
    const int64_t grant = std::min(want, tokens_);
    tokens_ -= grant;
    return Grant{grant, grant < want ? retry_after_ : absl::ZeroDuration()};
  }

 private:
  int64_t tokens_ = 0;
  absl::Duration retry_after_ = absl::ZeroDuration();
  int calls_ = 0;
};

// Moves the permit out of an admission that must have succeeded.
ThrottlePermit PermitOf(ThrottleAdmission admission) {
  EXPECT_TRUE(admission.ok()) << admission.rejection().ToString();
  return std::move(admission).permit();
}

void ExpectRejection(const Rejection& r, Gate gate, Reason reason,
                     absl::Duration retry_after) {
  EXPECT_EQ(r.gate, gate) << r.ToString();
  EXPECT_EQ(r.reason, reason) << r.ToString();
  EXPECT_EQ(r.retry_after, retry_after) << r.ToString();
}

class ThrottleTest : public ::testing::Test {
 protected:
  // Throttle "orders" on the test's clock and metrics: a FixedLimit of
  // `limit` with unpartitioned priorities, no bucket, no budget.
  WriteThrottleOptions Options(int limit) {
    WriteThrottleOptions o;
    o.name = "orders";
    o.limiter.limit = std::shared_ptr<Limit>(*FixedLimit::Create(limit));
    o.limiter.partitions = kNoPartitions;
    o.limiter.max_queued = 16;
    o.clock = &clock_;
    o.metrics = &sink_;
    return o;
  }

  // A bucket of `rate` per second and `burst`, holding `tokens`.
  static TokenBucketOptions Bucket(double rate, double burst, double tokens) {
    TokenBucketOptions b;
    b.rate = rate;
    b.burst = burst;
    b.initial_tokens = tokens;
    return b;
  }

  // The fleet budget "orders" (1000/s, burst 100: max_lease 100) with a
  // lease of `lease` tokens, taken by one Refresh() from the fake store.
  // A refusal's retry-after is then the store's 250 ms.
  LeasedBudget* Budget(int64_t lease) {
    LeasedBudgetOptions o;
    o.key = "orders";
    o.spec = {.rate = 1000, .burst = 100};
    o.clock = &clock_;
    o.metrics = &sink_;
    o.log = &log_;
    budget_ = ValueOrFail(LeasedBudget::Create(o, &store_));
    if (budget_ == nullptr) return nullptr;
    store_.set_tokens(lease);
    store_.set_retry_after(absl::Milliseconds(250));
    EXPECT_TRUE(budget_->Refresh().ok());
    EXPECT_EQ(budget_->lease_tokens(), lease);
    return budget_.get();
  }

  std::unique_ptr<WriteThrottle> Make(WriteThrottleOptions options) {
    return ValueOrFail(WriteThrottle::Create(std::move(options)));
  }

  double Counter(const MetricDef& def, const LabelValues& labels) const {
    return sink_.CounterValue(def.name, labels).value_or(-1);
  }
  double Admitted(Gate gate, absl::string_view priority = "normal") const {
    return Counter(metrics::kAdmitted, {"orders", std::string(GateName(gate)),
                                        std::string(priority)});
  }
  double Rejected(Gate gate, Reason reason,
                  absl::string_view priority = "normal") const {
    return Counter(metrics::kRejected,
                   {"orders", std::string(GateName(gate)),
                    std::string(priority), std::string(ReasonName(reason))});
  }
  double ShadowPassed(Gate gate, absl::string_view priority = "normal") const {
    return Counter(
        metrics::kShadowPassed,
        {"orders", std::string(GateName(gate)), std::string(priority)});
  }
  double ShadowPassedTotal() const {
    return sink_.CounterSum(metrics::kShadowPassed.name);
  }
  double Outcomes(absl::string_view outcome) const {
    return Counter(metrics::kOutcomes, {"orders", std::string(outcome)});
  }
  int64_t Samples(absl::string_view outcome) const {
    std::optional<testing::HistogramSnapshot> h = sink_.HistogramValue(
        metrics::kLatency.name, {"orders", std::string(outcome)});
    return h.has_value() ? h->count : -1;
  }
  double InFlightGauge() const {
    return sink_.GaugeValue(metrics::kInFlight.name, {"orders"}).value_or(-1);
  }

  SimulatedClock clock_;
  InMemoryMetricsSink sink_;
  CaptureLog log_;
  FakeStore store_;
  std::unique_ptr<LeasedBudget> budget_;
};

// --- Gates in order
// ------------------------------------------------------------

TEST_F(ThrottleTest, AdmitsThroughEveryGateAndRecordsTheOutcome) {
  WriteThrottleOptions o = Options(2);
  o.bucket = Bucket(10, 10, 10);
  o.budget = Budget(5);
  std::unique_ptr<WriteThrottle> throttle = Make(std::move(o));
  ASSERT_NE(throttle, nullptr);
  ASSERT_NE(throttle->bucket(), nullptr);
  EXPECT_EQ(throttle->budget(), budget_.get());
  EXPECT_EQ(throttle->name(), "orders");
  EXPECT_EQ(throttle->limiter().name(), "orders");

  const MonotonicTime admitted_at = clock_.Now();
  ThrottleAdmission a = throttle->Admit({.priority = Priority::kCritical});
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(static_cast<bool>(a));
  ThrottlePermit permit = std::move(a).permit();
  EXPECT_TRUE(permit.valid());
  EXPECT_EQ(permit.start(), admitted_at);
  EXPECT_FALSE(permit.deadline().has_value());
  EXPECT_EQ(permit.request().priority, Priority::kCritical);
  EXPECT_EQ(permit.request().cost, 1);

  EXPECT_EQ(throttle->limiter().in_flight(), 1);
  EXPECT_EQ(throttle->limiter().in_flight(Priority::kCritical), 1);
  EXPECT_EQ(throttle->bucket()->Available(), 9);
  EXPECT_EQ(budget_->lease_tokens(), 4);
  EXPECT_EQ(Admitted(Gate::kConcurrencyLimit, "critical"), 1);
  EXPECT_EQ(Admitted(Gate::kTokenBucket, "any"), 1);
  EXPECT_EQ(Admitted(Gate::kGlobalBudget, "any"), 1);
  EXPECT_EQ(InFlightGauge(), 1);

  clock_.Advance(8 * kMs);
  permit.Success();
  EXPECT_FALSE(permit.valid());
  EXPECT_EQ(throttle->limiter().in_flight(), 0);
  EXPECT_EQ(Outcomes("success"), 1);
  EXPECT_EQ(Samples("success"), 1);
  EXPECT_EQ(throttle->limiter().retry_after(), 8 * kMs);
  // Nothing comes back to the bucket or the budget: the write happened.
  // (The bucket refilled 0.08 tokens in the 8 ms.)
  EXPECT_NEAR(throttle->bucket()->Available(), 9.08, 1e-9);
  EXPECT_EQ(budget_->lease_tokens(), 4);
}

TEST_F(ThrottleTest, WithoutBucketAndBudgetOnlyTheLimiterDecides) {
  std::unique_ptr<WriteThrottle> throttle = Make(Options(1));
  ASSERT_NE(throttle, nullptr);
  EXPECT_EQ(throttle->bucket(), nullptr);
  EXPECT_EQ(throttle->budget(), nullptr);
  ThrottlePermit p = PermitOf(throttle->Admit());
  ThrottleAdmission refused = throttle->Admit();
  ASSERT_FALSE(refused.ok());
  EXPECT_FALSE(static_cast<bool>(refused));
  ExpectRejection(refused.rejection(), Gate::kConcurrencyLimit,
                  Reason::kLimitReached, kMs);
}

TEST_F(ThrottleTest, LimiterRefusalTouchesNeitherBucketNorBudget) {
  WriteThrottleOptions o = Options(1);
  o.bucket = Bucket(10, 10, 10);
  o.budget = Budget(10);
  std::unique_ptr<WriteThrottle> throttle = Make(std::move(o));
  ASSERT_NE(throttle, nullptr);

  ThrottlePermit held = PermitOf(throttle->Admit());
  // No latency seen yet: the limiter's documented 1 ms estimate.
  ThrottleAdmission refused = throttle->Admit();
  ASSERT_FALSE(refused.ok());
  ExpectRejection(refused.rejection(), Gate::kConcurrencyLimit,
                  Reason::kLimitReached, kMs);

  // One write of 8 ms: the estimate becomes its latency.
  clock_.Advance(8 * kMs);
  held.Success();
  held = PermitOf(throttle->Admit());
  const double tokens = throttle->bucket()->Available();
  const int64_t lease = budget_->lease_tokens();
  const uint64_t offered = budget_->offered();
  EXPECT_NEAR(tokens, 8.08, 1e-9);  // 0.08 refilled in 8 ms.
  EXPECT_EQ(lease, 8);

  refused = throttle->Admit({.cost = 3});
  ASSERT_FALSE(refused.ok());
  ExpectRejection(refused.rejection(), Gate::kConcurrencyLimit,
                  Reason::kLimitReached, 8 * kMs);
  EXPECT_EQ(throttle->bucket()->Available(), tokens);
  EXPECT_EQ(budget_->lease_tokens(), lease);
  EXPECT_EQ(budget_->offered(), offered);
  EXPECT_EQ(Rejected(Gate::kConcurrencyLimit, Reason::kLimitReached), 2);
  EXPECT_EQ(Rejected(Gate::kTokenBucket, Reason::kRateLimited, "any"), 0);
  EXPECT_EQ(Rejected(Gate::kGlobalBudget, Reason::kBudgetExhausted, "any"), 0);
  EXPECT_EQ(Admitted(Gate::kTokenBucket, "any"), 2);
  EXPECT_EQ(Admitted(Gate::kGlobalBudget, "any"), 2);
  EXPECT_EQ(throttle->limiter().in_flight(), 1);
}

TEST_F(ThrottleTest, BucketRefusalReleasesTheSlotWithoutASample) {
  WriteThrottleOptions o = Options(2);
  o.bucket = Bucket(10, 2, 0);  // One token per 100 ms, empty.
  o.budget = Budget(5);
  std::unique_ptr<WriteThrottle> throttle = Make(std::move(o));
  ASSERT_NE(throttle, nullptr);

  clock_.Advance(30 * kMs);  // 0.3 tokens: 70 ms to go, exactly.
  ThrottleAdmission refused = throttle->Admit();
  ASSERT_FALSE(refused.ok());
  ExpectRejection(refused.rejection(), Gate::kTokenBucket, Reason::kRateLimited,
                  70 * kMs);
  // The limiter admitted, then took its slot back as Ignore: no sample.
  EXPECT_EQ(Admitted(Gate::kConcurrencyLimit), 1);
  EXPECT_EQ(throttle->limiter().in_flight(), 0);
  EXPECT_EQ(InFlightGauge(), 0);
  EXPECT_EQ(Outcomes("ignored"), 1);
  EXPECT_EQ(Outcomes("success"), 0);
  EXPECT_EQ(Outcomes("dropped"), 0);
  EXPECT_EQ(Samples("success"), 0);
  EXPECT_EQ(Samples("dropped"), 0);
  // The budget was never asked.
  EXPECT_EQ(budget_->lease_tokens(), 5);
  EXPECT_EQ(budget_->offered(), 0u);
  EXPECT_EQ(Rejected(Gate::kTokenBucket, Reason::kRateLimited, "any"), 1);

  // Both sides of the refill instant.
  clock_.Advance(69 * kMs);
  refused = throttle->Admit();
  ASSERT_FALSE(refused.ok());
  ExpectRejection(refused.rejection(), Gate::kTokenBucket, Reason::kRateLimited,
                  kMs);
  clock_.Advance(kMs);
  ThrottlePermit p = PermitOf(throttle->Admit());
  EXPECT_EQ(budget_->lease_tokens(), 4);
  EXPECT_EQ(throttle->limiter().in_flight(), 1);
  EXPECT_EQ(Outcomes("ignored"), 2);
}

TEST_F(ThrottleTest, BudgetRefusalReturnsTheTokensAndReleasesTheSlot) {
  WriteThrottleOptions o = Options(2);
  o.bucket = Bucket(10, 10, 10);
  o.budget = Budget(2);
  std::unique_ptr<WriteThrottle> throttle = Make(std::move(o));
  ASSERT_NE(throttle, nullptr);

  clock_.Advance(30 * kMs);
  ThrottleAdmission refused = throttle->Admit({.cost = 3});
  ASSERT_FALSE(refused.ok());
  // The store said 250 ms, 30 ms ago.
  ExpectRejection(refused.rejection(), Gate::kGlobalBudget,
                  Reason::kBudgetExhausted, 220 * kMs);
  EXPECT_EQ(throttle->bucket()->Available(), 10);
  EXPECT_EQ(budget_->lease_tokens(), 2);  // No partial take.
  EXPECT_EQ(throttle->limiter().in_flight(), 0);
  EXPECT_EQ(Outcomes("ignored"), 1);
  EXPECT_EQ(Samples("success"), 0);
  EXPECT_EQ(Samples("dropped"), 0);
  EXPECT_EQ(Rejected(Gate::kGlobalBudget, Reason::kBudgetExhausted, "any"), 1);

  // The lease's two tokens still admit writes of cost 1.
  ThrottlePermit a = PermitOf(throttle->Admit());
  ThrottlePermit b = PermitOf(throttle->Admit());
  EXPECT_EQ(throttle->bucket()->Available(), 8);
  EXPECT_EQ(budget_->lease_tokens(), 0);
}

TEST_F(ThrottleTest, BudgetRefusalAtAPartlyEmptyBucketReturnsExactly) {
  WriteThrottleOptions o = Options(2);
  o.bucket = Bucket(10, 10, 4.5);
  o.budget = Budget(0);
  std::unique_ptr<WriteThrottle> throttle = Make(std::move(o));
  ASSERT_NE(throttle, nullptr);
  ASSERT_FALSE(throttle->Admit({.cost = 2}).ok());
  EXPECT_DOUBLE_EQ(throttle->bucket()->Available(), 4.5);
  clock_.Advance(50 * kMs);
  EXPECT_DOUBLE_EQ(throttle->bucket()->Available(), 5.0);
}

// --- Cost
// ----------------------------------------------------------------------

TEST_F(ThrottleTest, CostTakesTokensFromBucketAndBudgetButOneSlot) {
  WriteThrottleOptions o = Options(4);
  o.bucket = Bucket(10, 20, 20);
  o.budget = Budget(20);
  std::unique_ptr<WriteThrottle> throttle = Make(std::move(o));
  ASSERT_NE(throttle, nullptr);

  ThrottlePermit five = PermitOf(throttle->Admit({.cost = 5}));
  EXPECT_EQ(five.request().cost, 5);
  EXPECT_EQ(throttle->limiter().in_flight(), 1);
  EXPECT_EQ(throttle->bucket()->Available(), 15);
  EXPECT_EQ(budget_->lease_tokens(), 15);

  ThrottlePermit zero = PermitOf(throttle->Admit({.cost = 0}));
  EXPECT_EQ(throttle->limiter().in_flight(), 2);
  EXPECT_EQ(throttle->bucket()->Available(), 14);
  EXPECT_EQ(budget_->lease_tokens(), 14);

  ThrottlePermit negative = PermitOf(throttle->Admit({.cost = -7}));
  EXPECT_EQ(throttle->limiter().in_flight(), 3);
  EXPECT_EQ(throttle->bucket()->Available(), 13);
  EXPECT_EQ(budget_->lease_tokens(), 13);
  EXPECT_EQ(budget_->offered(), 7u);

  // One decision per write in every gate's counters, whatever the cost.
  EXPECT_EQ(Admitted(Gate::kConcurrencyLimit), 3);
  EXPECT_EQ(Admitted(Gate::kTokenBucket, "any"), 3);
  EXPECT_EQ(Admitted(Gate::kGlobalBudget, "any"), 3);

  // A cost the bucket holds but the budget does not: all returned.
  ASSERT_FALSE(throttle->Admit({.cost = 14}).ok());
  EXPECT_EQ(throttle->bucket()->Available(), 13);
  EXPECT_EQ(budget_->lease_tokens(), 13);
  EXPECT_EQ(throttle->limiter().in_flight(), 3);
}

// --- Shadow mode
// ---------------------------------------------------------------

TEST_F(ThrottleTest, ShadowLimiterLetsTheWriteThroughWithoutASlot) {
  WriteThrottleOptions o = Options(1);
  o.shadow.concurrency_limit = true;
  o.bucket = Bucket(10, 10, 10);
  o.budget = Budget(10);
  std::unique_ptr<WriteThrottle> throttle = Make(std::move(o));
  ASSERT_NE(throttle, nullptr);

  ThrottlePermit held = PermitOf(throttle->Admit());
  EXPECT_EQ(ShadowPassedTotal(), 0);  // Admitted for real: no shadow pass.

  const MonotonicTime at = clock_.Now();
  ThrottlePermit shadow =
      PermitOf(throttle->Admit({.priority = Priority::kCritical}));
  EXPECT_TRUE(shadow.valid());
  EXPECT_EQ(shadow.start(), at);
  EXPECT_EQ(ShadowPassed(Gate::kConcurrencyLimit, "critical"), 1);
  EXPECT_EQ(ShadowPassedTotal(), 1);
  // The limiter shows what it would have refused.
  EXPECT_EQ(
      Rejected(Gate::kConcurrencyLimit, Reason::kLimitReached, "critical"), 1);
  // No slot: in flight unchanged. The other gates did take their share.
  EXPECT_EQ(throttle->limiter().in_flight(), 1);
  EXPECT_EQ(throttle->bucket()->Available(), 8);
  EXPECT_EQ(budget_->lease_tokens(), 8);

  clock_.Advance(5 * kMs);
  shadow.Success();
  EXPECT_FALSE(shadow.valid());
  EXPECT_EQ(throttle->limiter().in_flight(), 1);
  EXPECT_EQ(Samples("success"), 0);
  EXPECT_EQ(Outcomes("success"), 0);

  held.Success();
  EXPECT_EQ(throttle->limiter().in_flight(), 0);
  EXPECT_EQ(Samples("success"), 1);
  EXPECT_EQ(Outcomes("success"), 1);
}

TEST_F(ThrottleTest, ShadowLimiterStillLetsTheBucketEnforce) {
  WriteThrottleOptions o = Options(1);
  o.shadow.concurrency_limit = true;
  o.bucket = Bucket(10, 2, 2);
  std::unique_ptr<WriteThrottle> throttle = Make(std::move(o));
  ASSERT_NE(throttle, nullptr);

  ThrottlePermit held = PermitOf(throttle->Admit());
  ThrottlePermit shadow = PermitOf(throttle->Admit());
  EXPECT_EQ(ShadowPassed(Gate::kConcurrencyLimit), 1);
  ThrottleAdmission refused = throttle->Admit();
  ASSERT_FALSE(refused.ok());
  ExpectRejection(refused.rejection(), Gate::kTokenBucket, Reason::kRateLimited,
                  100 * kMs);
  // Refused by the bucket, so not let through: no second shadow pass.
  EXPECT_EQ(ShadowPassed(Gate::kConcurrencyLimit), 1);
  EXPECT_EQ(Rejected(Gate::kConcurrencyLimit, Reason::kLimitReached), 2);
  EXPECT_EQ(throttle->limiter().in_flight(), 1);
}

TEST_F(ThrottleTest, ShadowBucketLetsTheWriteThroughAndTheBudgetEnforces) {
  WriteThrottleOptions o = Options(4);
  o.shadow.token_bucket = true;
  o.bucket = Bucket(10, 1, 0);
  o.budget = Budget(1);
  std::unique_ptr<WriteThrottle> throttle = Make(std::move(o));
  ASSERT_NE(throttle, nullptr);

  ThrottlePermit shadow =
      PermitOf(throttle->Admit({.priority = Priority::kBatch}));
  EXPECT_EQ(ShadowPassed(Gate::kTokenBucket, "batch"), 1);
  EXPECT_EQ(ShadowPassedTotal(), 1);
  EXPECT_EQ(Rejected(Gate::kTokenBucket, Reason::kRateLimited, "any"), 1);
  EXPECT_EQ(throttle->bucket()->Available(), 0);  // Took nothing.
  EXPECT_EQ(budget_->lease_tokens(), 0);
  EXPECT_EQ(throttle->limiter().in_flight(), 1);  // The limiter's slot holds.

  ThrottleAdmission refused = throttle->Admit({.priority = Priority::kBatch});
  ASSERT_FALSE(refused.ok());
  ExpectRejection(refused.rejection(), Gate::kGlobalBudget,
                  Reason::kBudgetExhausted, 250 * kMs);
  // Nothing was taken from the bucket, so nothing is given back.
  EXPECT_EQ(throttle->bucket()->Available(), 0);
  EXPECT_EQ(ShadowPassedTotal(), 1);
  EXPECT_EQ(throttle->limiter().in_flight(), 1);
}

TEST_F(ThrottleTest, ShadowBudgetLetsTheWriteThroughAndTheLimiterEnforces) {
  WriteThrottleOptions o = Options(1);
  o.shadow.global_budget = true;
  o.bucket = Bucket(10, 10, 10);
  o.budget = Budget(0);
  std::unique_ptr<WriteThrottle> throttle = Make(std::move(o));
  ASSERT_NE(throttle, nullptr);

  ThrottlePermit shadow = PermitOf(throttle->Admit({.cost = 2}));
  EXPECT_EQ(ShadowPassed(Gate::kGlobalBudget), 1);
  EXPECT_EQ(ShadowPassedTotal(), 1);
  EXPECT_EQ(Rejected(Gate::kGlobalBudget, Reason::kBudgetExhausted, "any"), 1);
  EXPECT_EQ(throttle->bucket()->Available(), 8);  // The write runs: kept.
  EXPECT_EQ(throttle->limiter().in_flight(), 1);

  ThrottleAdmission refused = throttle->Admit();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.rejection().gate, Gate::kConcurrencyLimit);
  EXPECT_EQ(ShadowPassedTotal(), 1);
  EXPECT_EQ(Rejected(Gate::kGlobalBudget, Reason::kBudgetExhausted, "any"), 1);
}

TEST_F(ThrottleTest, EveryGateInShadowLetsEverythingThrough) {
  WriteThrottleOptions o = Options(1);
  o.shadow = {
      .concurrency_limit = true, .token_bucket = true, .global_budget = true};
  o.bucket = Bucket(10, 1, 0);
  o.budget = Budget(0);
  std::unique_ptr<WriteThrottle> throttle = Make(std::move(o));
  ASSERT_NE(throttle, nullptr);

  ThrottlePermit held = PermitOf(throttle->Admit());
  EXPECT_EQ(ShadowPassed(Gate::kConcurrencyLimit), 0);
  EXPECT_EQ(ShadowPassed(Gate::kTokenBucket), 1);
  EXPECT_EQ(ShadowPassed(Gate::kGlobalBudget), 1);
  ThrottlePermit all = PermitOf(throttle->Admit());
  EXPECT_EQ(ShadowPassed(Gate::kConcurrencyLimit), 1);
  EXPECT_EQ(ShadowPassed(Gate::kTokenBucket), 2);
  EXPECT_EQ(ShadowPassed(Gate::kGlobalBudget), 2);
  EXPECT_EQ(throttle->limiter().in_flight(), 1);
}

// --- Deadlines
// -----------------------------------------------------------------

TEST_F(ThrottleTest, WithADeadlineTheWriteWaitsForAReleasedSlot) {
  WriteThrottleOptions o = Options(1);
  o.bucket = Bucket(10, 10, 10);
  std::unique_ptr<WriteThrottle> throttle = Make(std::move(o));
  ASSERT_NE(throttle, nullptr);

  ThrottlePermit first = PermitOf(throttle->Admit());
  const MonotonicTime deadline = clock_.Now() + std::chrono::seconds(1);
  std::atomic<bool> done{false};
  ThrottleAdmission second;
  std::thread waiter([&] {
    second = throttle->Admit({.deadline = deadline});
    done.store(true);
  });
  ASSERT_TRUE(Eventually([&] { return throttle->limiter().queued() == 1; }));
  EXPECT_FALSE(done.load());
  EXPECT_EQ(throttle->bucket()->Available(), 9);  // Waiting takes no token.

  clock_.Advance(20 * kMs);
  first.Success();
  waiter.join();
  ASSERT_TRUE(second.ok()) << second.rejection().ToString();
  ThrottlePermit permit = std::move(second).permit();
  EXPECT_EQ(permit.deadline(), deadline);
  EXPECT_EQ(permit.start(), clock_.Now());
  EXPECT_EQ(throttle->limiter().in_flight(), 1);
  EXPECT_EQ(throttle->limiter().queued(), 0);
  // 9 + 0.2 refilled in 20 ms, less the admitted write's token.
  EXPECT_NEAR(throttle->bucket()->Available(), 8.2, 1e-9);
}

TEST_F(ThrottleTest, WithADeadlineTheWriteIsRefusedWhenItPasses) {
  WriteThrottleOptions o = Options(1);
  o.bucket = Bucket(10, 10, 10);
  std::unique_ptr<WriteThrottle> throttle = Make(std::move(o));
  ASSERT_NE(throttle, nullptr);

  ThrottlePermit first = PermitOf(throttle->Admit());
  ThrottleAdmission second;
  std::thread waiter([&] {
    second = throttle->Admit(
        {.deadline = clock_.Now() + std::chrono::milliseconds(100)});
  });
  ASSERT_TRUE(Eventually([&] { return clock_.waiters() == 1; }));
  clock_.Advance(99 * kMs);
  EXPECT_EQ(throttle->limiter().queued(), 1);  // Not yet.
  clock_.Advance(kMs);
  waiter.join();
  ASSERT_FALSE(second.ok());
  ExpectRejection(second.rejection(), Gate::kConcurrencyLimit,
                  Reason::kDeadlineExceeded, kMs);
  EXPECT_EQ(Rejected(Gate::kConcurrencyLimit, Reason::kDeadlineExceeded), 1);
  EXPECT_EQ(throttle->limiter().in_flight(), 1);
  EXPECT_EQ(throttle->limiter().queued(), 0);
  // 9, refilled by one token in the 100 ms: the refused write took none.
  EXPECT_EQ(throttle->bucket()->Available(), 10);
}

// A gate in shadow must not change how the write runs: the limiter in
// shadow never queues it, deadline or not.
TEST_F(ThrottleTest, ShadowLimiterNeverMakesTheWriteWait) {
  WriteThrottleOptions o = Options(1);
  o.shadow.concurrency_limit = true;
  std::unique_ptr<WriteThrottle> throttle = Make(std::move(o));
  ASSERT_NE(throttle, nullptr);

  ThrottlePermit first = PermitOf(throttle->Admit());
  const MonotonicTime deadline = clock_.Now() + std::chrono::seconds(1);
  std::atomic<bool> done{false};
  ThrottleAdmission second;
  std::thread writer([&] {
    second = throttle->Admit({.deadline = deadline});
    done.store(true);
  });
  ASSERT_TRUE(Eventually(
      [&] { return done.load() || throttle->limiter().queued() > 0; }));
  EXPECT_TRUE(done.load()) << "queued in shadow mode";
  if (!done.load()) clock_.AdvanceTo(deadline);  // Let it go.
  writer.join();
  EXPECT_TRUE(second.ok());
  EXPECT_EQ(ShadowPassed(Gate::kConcurrencyLimit), 1);
  EXPECT_EQ(throttle->limiter().in_flight(), 1);
}

// --- Run
// -----------------------------------------------------------------------

TEST_F(ThrottleTest, RunVoidIsSuccess) {
  std::unique_ptr<WriteThrottle> throttle = Make(Options(1));
  ASSERT_NE(throttle, nullptr);
  int calls = 0;
  auto s = throttle->Run([&] {
    ++calls;
    EXPECT_EQ(throttle->limiter().in_flight(), 1);
    clock_.Advance(3 * kMs);
  });
  static_assert(std::is_same_v<decltype(s), absl::Status>);
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(throttle->limiter().in_flight(), 0);
  EXPECT_EQ(Outcomes("success"), 1);
  ASSERT_EQ(Samples("success"), 1);
  EXPECT_DOUBLE_EQ(
      sink_.HistogramValue(metrics::kLatency.name, {"orders", "success"})->sum,
      0.003);
}

TEST_F(ThrottleTest, RunValueIsStatusOrAndSuccess) {
  std::unique_ptr<WriteThrottle> throttle = Make(Options(1));
  ASSERT_NE(throttle, nullptr);
  auto id = throttle->Run([] { return int64_t{42}; });
  static_assert(std::is_same_v<decltype(id), absl::StatusOr<int64_t>>);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(*id, 42);
  auto name = throttle->Run([]() -> const std::string& {
    static const std::string kName = "order-7";
    return kName;
  });
  static_assert(std::is_same_v<decltype(name), absl::StatusOr<std::string>>);
  EXPECT_EQ(name.value_or(""), "order-7");
  EXPECT_EQ(Outcomes("success"), 2);
  EXPECT_EQ(throttle->limiter().in_flight(), 0);
}

TEST_F(ThrottleTest, RunStatusIsReturnedAndClassified) {
  std::unique_ptr<WriteThrottle> throttle = Make(Options(1));
  ASSERT_NE(throttle, nullptr);

  absl::Status ok = throttle->Run([] { return absl::OkStatus(); });
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(Outcomes("success"), 1);

  const absl::Status busy = absl::UnavailableError("too many connections");
  auto s = throttle->Run([&] { return busy; });
  static_assert(std::is_same_v<decltype(s), absl::Status>);
  EXPECT_EQ(s, busy);
  EXPECT_FALSE(RejectionOf(s).has_value());
  EXPECT_EQ(Outcomes("dropped"), 1);
  EXPECT_EQ(Samples("dropped"), 1);

  const absl::Status missing = absl::NotFoundError("no such order");
  EXPECT_EQ(throttle->Run([&] { return missing; }), missing);
  EXPECT_EQ(Outcomes("ignored"), 1);
  EXPECT_EQ(Outcomes("success"), 1);
  EXPECT_EQ(Outcomes("dropped"), 1);
  EXPECT_EQ(throttle->limiter().in_flight(), 0);
}

TEST_F(ThrottleTest, RunStatusOrIsReturnedAndClassified) {
  std::unique_ptr<WriteThrottle> throttle = Make(Options(1));
  ASSERT_NE(throttle, nullptr);

  auto ok = throttle->Run([] { return absl::StatusOr<std::string>("row"); });
  static_assert(std::is_same_v<decltype(ok), absl::StatusOr<std::string>>);
  EXPECT_EQ(ok.value_or(""), "row");
  EXPECT_EQ(Outcomes("success"), 1);

  auto slow = throttle->Run([]() -> absl::StatusOr<int> {
    return absl::DeadlineExceededError("statement timeout");
  });
  EXPECT_EQ(slow.status(), absl::DeadlineExceededError("statement timeout"));
  EXPECT_EQ(Outcomes("dropped"), 1);

  auto dup = throttle->Run([]() -> absl::StatusOr<int> {
    return absl::AlreadyExistsError("duplicate key");
  });
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Outcomes("ignored"), 1);

  // Move-only values pass through.
  auto owned = throttle->Run(
      [] { return absl::StatusOr<std::unique_ptr<int>>(new int(5)); });
  ASSERT_TRUE(owned.ok());
  EXPECT_EQ(**owned, 5);
  EXPECT_EQ(Outcomes("success"), 2);
}

TEST_F(ThrottleTest, RunWithContextOverridesTheOutcome) {
  std::unique_ptr<WriteThrottle> throttle = Make(Options(1));
  ASSERT_NE(throttle, nullptr);

  const MonotonicTime deadline = clock_.Now() + std::chrono::seconds(5);
  const MonotonicTime start = clock_.Now();
  auto value = throttle->Run(
      [&](WriteContext& ctx) {
        EXPECT_EQ(ctx.request().cost, 4);
        EXPECT_EQ(ctx.request().priority, Priority::kBatch);
        EXPECT_EQ(ctx.start(), start);
        EXPECT_EQ(ctx.deadline(), deadline);
        EXPECT_FALSE(ctx.outcome().has_value());
        ctx.Dropped();
        EXPECT_EQ(ctx.outcome(), Outcome::kDropped);
        return 7;
      },
      {.priority = Priority::kBatch, .cost = 4, .deadline = deadline});
  static_assert(std::is_same_v<decltype(value), absl::StatusOr<int>>);
  EXPECT_EQ(value.value_or(0), 7);
  EXPECT_EQ(Outcomes("dropped"), 1);
  EXPECT_EQ(Outcomes("success"), 0);

  absl::Status s = throttle->Run([](WriteContext& ctx) { ctx.Ignore(); });
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(Outcomes("ignored"), 1);
  EXPECT_EQ(Outcomes("success"), 0);

  // An override wins over the classifier too.
  s = throttle->Run([](WriteContext& ctx) {
    ctx.Success();
    return absl::UnavailableError("replica lag");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Outcomes("success"), 1);
  EXPECT_EQ(Outcomes("dropped"), 1);
  EXPECT_EQ(throttle->limiter().in_flight(), 0);
}

TEST_F(ThrottleTest, RunUsesTheCustomStatusClassifier) {
  WriteThrottleOptions o = Options(1);
  std::vector<absl::StatusCode> seen;
  o.status_classifier = [&seen](const absl::Status& s) {
    seen.push_back(s.code());
    return s.code() == absl::StatusCode::kNotFound ? Outcome::kDropped
                                                   : Outcome::kSuccess;
  };
  std::unique_ptr<WriteThrottle> throttle = Make(std::move(o));
  ASSERT_NE(throttle, nullptr);

  EXPECT_FALSE(throttle->Run([] { return absl::NotFoundError("x"); }).ok());
  EXPECT_EQ(Outcomes("dropped"), 1);
  EXPECT_FALSE(throttle->Run([] { return absl::UnavailableError("x"); }).ok());
  EXPECT_EQ(Outcomes("success"), 1);
  // OK is Success without asking the classifier.
  EXPECT_TRUE(throttle->Run([] { return absl::OkStatus(); }).ok());
  EXPECT_EQ(Outcomes("success"), 2);
  EXPECT_THAT(seen, ::testing::ElementsAre(absl::StatusCode::kNotFound,
                                           absl::StatusCode::kUnavailable));
}

TEST(DefaultStatusClassifierTest, OverloadCodesAreDroppedOthersIgnored) {
  EXPECT_EQ(DefaultStatusClassifier(absl::OkStatus()), Outcome::kSuccess);
  for (absl::StatusCode code :
       {absl::StatusCode::kDeadlineExceeded, absl::StatusCode::kUnavailable,
        absl::StatusCode::kResourceExhausted, absl::StatusCode::kAborted}) {
    EXPECT_EQ(DefaultStatusClassifier(absl::Status(code, "x")),
              Outcome::kDropped)
        << code;
  }
  for (absl::StatusCode code :
       {absl::StatusCode::kCancelled, absl::StatusCode::kUnknown,
        absl::StatusCode::kInvalidArgument, absl::StatusCode::kNotFound,
        absl::StatusCode::kAlreadyExists, absl::StatusCode::kPermissionDenied,
        absl::StatusCode::kFailedPrecondition, absl::StatusCode::kOutOfRange,
        absl::StatusCode::kUnimplemented, absl::StatusCode::kInternal,
        absl::StatusCode::kDataLoss, absl::StatusCode::kUnauthenticated}) {
    EXPECT_EQ(DefaultStatusClassifier(absl::Status(code, "x")),
              Outcome::kIgnored)
        << code;
  }
}

struct DbError : std::runtime_error {
  DbError(const std::string& what, int error_code)
      : std::runtime_error(what), code(error_code) {}
  int code;
};

TEST_F(ThrottleTest, RunRethrowsAnExceptionUnchangedAndIgnoresIt) {
  std::unique_ptr<WriteThrottle> throttle = Make(Options(1));
  ASSERT_NE(throttle, nullptr);
  bool caught = false;
  try {
    static_cast<void>(
        throttle->Run([]() -> int { throw DbError("connection reset", 104); }));
  } catch (const DbError& e) {
    caught = true;
    EXPECT_STREQ(e.what(), "connection reset");
    EXPECT_EQ(e.code, 104);
  }
  EXPECT_TRUE(caught);
  EXPECT_EQ(Outcomes("ignored"), 1);
  EXPECT_EQ(Samples("success") + Samples("dropped"), 0);
  EXPECT_EQ(throttle->limiter().in_flight(), 0);
}

TEST_F(ThrottleTest, RunClassifiesAnExceptionWithTheCustomClassifier) {
  WriteThrottleOptions o = Options(1);
  int classified = 0;
  o.exception_classifier = [&classified](std::exception_ptr e) {
    ++classified;
    try {
      std::rethrow_exception(e);
    } catch (const DbError& db) {
      return db.code == 104 ? Outcome::kDropped : Outcome::kIgnored;
    } catch (...) {
      return Outcome::kSuccess;
    }
  };
  std::unique_ptr<WriteThrottle> throttle = Make(std::move(o));
  ASSERT_NE(throttle, nullptr);

  EXPECT_THROW(
      static_cast<void>(throttle->Run([] { throw DbError("reset", 104); })),
      DbError);
  EXPECT_EQ(Outcomes("dropped"), 1);
  EXPECT_THROW(static_cast<void>(throttle->Run(
                   [](WriteContext&) -> absl::Status { throw 17; })),
               int);
  EXPECT_EQ(Outcomes("success"), 1);
  EXPECT_EQ(classified, 2);
  // The callable's own override wins over the classifier.
  EXPECT_THROW(static_cast<void>(throttle->Run([](WriteContext& ctx) {
                 ctx.Ignore();
                 throw DbError("reset", 104);
               })),
               DbError);
  EXPECT_EQ(Outcomes("ignored"), 1);
  EXPECT_EQ(throttle->limiter().in_flight(), 0);
}

TEST_F(ThrottleTest, RefusedRunDoesNotCallAndCarriesTheRejection) {
  WriteThrottleOptions o = Options(1);
  o.bucket = Bucket(10, 10, 0);
  o.budget = Budget(0);
  std::unique_ptr<WriteThrottle> throttle = Make(std::move(o));
  ASSERT_NE(throttle, nullptr);
  int calls = 0;

  // The bucket: exact wait.
  clock_.Advance(30 * kMs);
  absl::Status s = throttle->Run([&] { ++calls; });
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "token_bucket: rate_limited, retry after 70ms");
  std::optional<Rejection> r = RejectionOf(s);
  ASSERT_TRUE(r.has_value());
  ExpectRejection(*r, Gate::kTokenBucket, Reason::kRateLimited, 70 * kMs);

  // The budget: the store's wait, 250 ms from the refresh 100 ms ago.
  clock_.Advance(70 * kMs);
  absl::StatusOr<int> v = throttle->Run([&] {
    ++calls;
    return 1;
  });
  r = RejectionOf(v.status());
  ASSERT_TRUE(r.has_value()) << v.status();
  ExpectRejection(*r, Gate::kGlobalBudget, Reason::kBudgetExhausted, 150 * kMs);

  // The limiter: its estimate (1 ms before any latency was seen).
  std::unique_ptr<WriteThrottle> limited = Make(Options(1));
  ASSERT_NE(limited, nullptr);
  ThrottlePermit slot = PermitOf(limited->Admit());
  absl::StatusOr<std::string> w = limited->Run([&] {
    ++calls;
    return std::string("x");
  });
  r = RejectionOf(w.status());
  ASSERT_TRUE(r.has_value()) << w.status();
  ExpectRejection(*r, Gate::kConcurrencyLimit, Reason::kLimitReached, kMs);

  EXPECT_EQ(calls, 0);
  EXPECT_EQ(Outcomes("success") + Outcomes("dropped"), 0);
}

TEST(RejectionStatusTest, RoundTripsEveryGateReasonAndWait) {
  const absl::Duration waits[] = {absl::ZeroDuration(), absl::Nanoseconds(1),
                                  absl::Milliseconds(70), absl::Hours(1),
                                  absl::InfiniteDuration()};
  for (int g = 0; g < kNumGates; ++g) {
    for (int reason = 0; reason < kNumReasons; ++reason) {
      for (absl::Duration wait : waits) {
        const Rejection in{static_cast<Gate>(g), static_cast<Reason>(reason),
                           wait};
        const absl::Status s = RejectionStatus(in);
        EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
        EXPECT_EQ(s.message(), in.ToString());
        // Equal rejections give equal statuses (payload bytes included).
        EXPECT_EQ(s, RejectionStatus(in)) << in.ToString();
        std::optional<Rejection> out = RejectionOf(s);
        ASSERT_TRUE(out.has_value()) << in.ToString();
        EXPECT_EQ(out->gate, in.gate);
        EXPECT_EQ(out->reason, in.reason);
        EXPECT_EQ(out->retry_after, in.retry_after) << in.ToString();
      }
    }
  }
}

TEST(RejectionStatusTest, OtherStatusesCarryNoRejection) {
  EXPECT_FALSE(RejectionOf(absl::OkStatus()).has_value());
  EXPECT_FALSE(RejectionOf(absl::UnavailableError(
                               "token_bucket: rate_limited, retry after 1ms"))
                   .has_value());
  EXPECT_FALSE(RejectionOf(absl::InternalError("x")).has_value());
  absl::Status other = absl::UnavailableError("x");
  other.SetPayload("type.example.com/other", absl::Cord("abc"));
  EXPECT_FALSE(RejectionOf(other).has_value());
  // A payload under our URL but damaged is not a rejection either.
  const absl::Status real = RejectionStatus(
      {Gate::kTokenBucket, Reason::kRateLimited, absl::Milliseconds(3)});
  bool found = false;
  real.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
    found = true;
    absl::Status truncated = absl::UnavailableError("x");
    std::string bytes(payload);
    bytes.pop_back();
    truncated.SetPayload(url, absl::Cord(bytes));
    EXPECT_FALSE(RejectionOf(truncated).has_value());
  });
  EXPECT_TRUE(found);
}

TEST_F(ThrottleTest, AWriteAboveTheBurstIsRefusedWithAnInfiniteWait) {
  WriteThrottleOptions o = Options(1);
  o.bucket = Bucket(10, 10, 10);
  std::unique_ptr<WriteThrottle> throttle = Make(std::move(o));
  ASSERT_NE(throttle, nullptr);
  int calls = 0;
  absl::Status s = throttle->Run([&] { ++calls; }, {.cost = 11});
  std::optional<Rejection> r = RejectionOf(s);
  ASSERT_TRUE(r.has_value()) << s;
  ExpectRejection(*r, Gate::kTokenBucket, Reason::kRateLimited,
                  absl::InfiniteDuration());
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(throttle->bucket()->Available(), 10);
}

// --- ThrottlePermit
// ------------------------------------------------------------

TEST_F(ThrottleTest, MovedFromPermitReleasesNothing) {
  std::unique_ptr<WriteThrottle> throttle = Make(Options(2));
  ASSERT_NE(throttle, nullptr);
  ThrottlePermit a = PermitOf(throttle->Admit({.cost = 3}));
  ThrottlePermit b(std::move(a));
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): tested.
  EXPECT_TRUE(b.valid());
  EXPECT_EQ(b.request().cost, 3);
  a.Success();  // NOLINT(bugprone-use-after-move): tested.
  a.Dropped();
  EXPECT_EQ(throttle->limiter().in_flight(), 1);
  EXPECT_EQ(Outcomes("success") + Outcomes("dropped") + Outcomes("ignored"), 0);

  b.Success();
  EXPECT_FALSE(b.valid());
  EXPECT_EQ(throttle->limiter().in_flight(), 0);
  EXPECT_EQ(Outcomes("success"), 1);
  // A second release is a no-op, whichever outcome.
  b.Success();
  b.Dropped();
  b.Ignore();
  EXPECT_EQ(Outcomes("success"), 1);
  EXPECT_EQ(Outcomes("dropped"), 0);
  EXPECT_EQ(Outcomes("ignored"), 0);
  EXPECT_EQ(throttle->limiter().in_flight(), 0);
}

TEST_F(ThrottleTest, MoveAssignReleasesTheOldPermitAsIgnore) {
  std::unique_ptr<WriteThrottle> throttle = Make(Options(2));
  ASSERT_NE(throttle, nullptr);
  const MonotonicTime first_at = clock_.Now();
  ThrottlePermit a = PermitOf(throttle->Admit());
  clock_.Advance(4 * kMs);
  const MonotonicTime second_at = clock_.Now();
  const MonotonicTime deadline = second_at + std::chrono::seconds(1);
  ThrottlePermit b = PermitOf(throttle->Admit(
      {.priority = Priority::kCritical, .cost = 2, .deadline = deadline}));
  EXPECT_EQ(a.start(), first_at);
  EXPECT_EQ(throttle->limiter().in_flight(), 2);

  a = std::move(b);
  EXPECT_FALSE(b.valid());  // NOLINT(bugprone-use-after-move): tested.
  EXPECT_TRUE(a.valid());
  EXPECT_EQ(throttle->limiter().in_flight(), 1);
  EXPECT_EQ(throttle->limiter().in_flight(Priority::kNormal), 0);
  EXPECT_EQ(Outcomes("ignored"), 1);
  EXPECT_EQ(Samples("success") + Samples("dropped"), 0);
  EXPECT_EQ(a.start(), second_at);
  EXPECT_EQ(a.deadline(), deadline);
  EXPECT_EQ(a.request().priority, Priority::kCritical);
  EXPECT_EQ(a.request().cost, 2);

  clock_.Advance(6 * kMs);
  a.Dropped();
  EXPECT_EQ(throttle->limiter().in_flight(), 0);
  EXPECT_EQ(Outcomes("dropped"), 1);
  EXPECT_DOUBLE_EQ(
      sink_.HistogramValue(metrics::kLatency.name, {"orders", "dropped"})->sum,
      0.006);

  // Move-assigning into an empty permit releases nothing.
  ThrottlePermit c;
  EXPECT_FALSE(c.valid());
  c = PermitOf(throttle->Admit());
  EXPECT_EQ(Outcomes("ignored"), 1);
  EXPECT_EQ(throttle->limiter().in_flight(), 1);
}

TEST_F(ThrottleTest, DestructorIsIgnore) {
  std::unique_ptr<WriteThrottle> throttle = Make(Options(2));
  ASSERT_NE(throttle, nullptr);
  {
    ThrottlePermit p = PermitOf(throttle->Admit());
    clock_.Advance(5 * kMs);
    EXPECT_EQ(throttle->limiter().in_flight(), 1);
  }
  EXPECT_EQ(throttle->limiter().in_flight(), 0);
  EXPECT_EQ(Outcomes("ignored"), 1);
  EXPECT_EQ(Samples("success") + Samples("dropped"), 0);
  // A default-constructed permit holds nothing.
  ThrottlePermit empty;
  EXPECT_FALSE(empty.valid());
  empty.Success();
  EXPECT_EQ(Outcomes("success"), 0);
}

// --- Options
// -------------------------------------------------------------------

using InvalidCase = test::InvalidOptionsCase<WriteThrottleOptions>;

class WriteThrottleInvalidOptionsTest
    : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(WriteThrottleInvalidOptionsTest, IsRefusedNamingFieldAndValue) {
  WriteThrottleOptions o;
  GetParam().mutate(o);
  ExpectInvalidArgument(ValidateWriteThrottleOptions(o),
                        "WriteThrottleOptions." + GetParam().field,
                        GetParam().value);
  ExpectInvalidArgument(WriteThrottle::Create(o).status(),
                        "WriteThrottleOptions." + GetParam().field,
                        GetParam().value);
}

INSTANTIATE_TEST_SUITE_P(
    Fields, WriteThrottleInvalidOptionsTest,
    ::testing::ValuesIn(std::vector<InvalidCase>{
        {"NameEmpty", [](auto& o) { o.name = ""; }, "name", "\"\""},
        {"LimiterMaxQueuedNegative", [](auto& o) { o.limiter.max_queued = -1; },
         "limiter: ConcurrencyLimiterOptions.max_queued", "-1"},
        {"LimiterPriorityHoldNegative",
         [](auto& o) { o.limiter.priority_hold = -absl::Milliseconds(5); },
         "limiter: ConcurrencyLimiterOptions.priority_hold", "-5ms"},
        {"BucketRateZero",
         [](auto& o) { o.bucket = TokenBucketOptions{.rate = 0}; },
         "bucket: TokenBucketOptions.rate", "0"},
        {"BucketBurstBelowOne",
         [](auto& o) { o.bucket = TokenBucketOptions{.burst = 0.5}; },
         "bucket: TokenBucketOptions.burst", "0.5"},
        {"BucketInitialTokensAboveBurst",
         [](auto& o) {
           o.bucket = TokenBucketOptions{.burst = 10, .initial_tokens = 11};
         },
         "bucket: TokenBucketOptions.initial_tokens", "11"},
    }),
    test::CaseName<WriteThrottleOptions>);

// The gates' names, clocks and metrics are the throttle's: what the nested
// options say about them is overridden, never validated.
TEST_F(ThrottleTest, NestedNamesClocksAndSinksAreOverridden) {
  WriteThrottleOptions o = Options(2);
  o.limiter.name = "";
  o.bucket = Bucket(10, 10, 10);
  o.bucket->name = "";
  InMemoryMetricsSink elsewhere;
  SimulatedClock other_clock;
  o.limiter.metrics = &elsewhere;
  o.limiter.clock = &other_clock;
  o.bucket->metrics = &elsewhere;
  o.bucket->clock = &other_clock;
  EXPECT_TRUE(ValidateWriteThrottleOptions(o).ok())
      << ValidateWriteThrottleOptions(o);
  std::unique_ptr<WriteThrottle> throttle = Make(std::move(o));
  ASSERT_NE(throttle, nullptr);
  EXPECT_EQ(throttle->limiter().name(), "orders");

  ThrottlePermit p = PermitOf(throttle->Admit());
  EXPECT_EQ(Admitted(Gate::kConcurrencyLimit), 1);
  EXPECT_EQ(Admitted(Gate::kTokenBucket, "any"), 1);
  EXPECT_TRUE(elsewhere.MetricNames().empty());
  clock_.Advance(2 * kMs);  // The throttle's clock drives every gate.
  p.Success();
  EXPECT_DOUBLE_EQ(
      sink_.HistogramValue(metrics::kLatency.name, {"orders", "success"})->sum,
      0.002);
  EXPECT_NEAR(throttle->bucket()->Available(), 9.02, 1e-9);
}

TEST(WriteThrottleOptionsTest, DefaultsBuildALimiterOnlyThrottle) {
  EXPECT_TRUE(ValidateWriteThrottleOptions({}).ok());
  absl::StatusOr<std::unique_ptr<WriteThrottle>> made =
      WriteThrottle::Create({});
  ASSERT_TRUE(made.ok()) << made.status();
  WriteThrottle& throttle = **made;
  EXPECT_EQ(throttle.name(), "default");
  EXPECT_EQ(throttle.bucket(), nullptr);
  EXPECT_EQ(throttle.budget(), nullptr);
  ThrottleAdmission a = throttle.Admit();
  EXPECT_TRUE(a.ok());
  EXPECT_EQ(throttle.limiter().in_flight(), 1);
}

// --- Threads
// -------------------------------------------------------------------

// 4 threads x 2000 writes against a limit of 2 and a bucket of 500 tokens
// that never refills (simulated time stands still): exact totals.
TEST_F(ThrottleTest, ThreadsNeverExceedTheLimitAndCountExactly) {
  constexpr int kThreads = 4;
  constexpr int kCalls = 2000;
  constexpr double kBurst = 500;
  WriteThrottleOptions o = Options(2);
  o.bucket = Bucket(1000, kBurst, kBurst);
  std::unique_ptr<WriteThrottle> throttle = Make(std::move(o));
  ASSERT_NE(throttle, nullptr);

  std::atomic<int> inside{0};
  std::atomic<int> max_inside{0};
  std::atomic<int> over_limit{0};
  std::atomic<int64_t> admitted{0};
  std::array<std::atomic<int64_t>, kNumGates> rejected{};
  std::atomic<int64_t> other_rejections{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kCalls; ++i) {
        ThrottleAdmission a = throttle->Admit();
        if (!a.ok()) {
          const Rejection& r = a.rejection();
          rejected[static_cast<int>(r.gate)].fetch_add(1);
          if (r.gate == Gate::kGlobalBudget ||
              (r.gate == Gate::kConcurrencyLimit &&
               r.reason != Reason::kLimitReached)) {
            other_rejections.fetch_add(1);
          }
          continue;
        }
        ThrottlePermit permit = std::move(a).permit();
        const int now_inside = inside.fetch_add(1) + 1;
        int seen = max_inside.load();
        while (now_inside > seen &&
               !max_inside.compare_exchange_weak(seen, now_inside)) {
        }
        if (throttle->limiter().in_flight() > 2) over_limit.fetch_add(1);
        inside.fetch_sub(1);
        permit.Success();
        admitted.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();

  const int64_t by_limiter =
      rejected[static_cast<int>(Gate::kConcurrencyLimit)].load();
  const int64_t by_bucket =
      rejected[static_cast<int>(Gate::kTokenBucket)].load();
  const int64_t admitted_total = admitted.load();
  EXPECT_EQ(admitted_total + by_limiter + by_bucket, kThreads * kCalls);
  EXPECT_EQ(other_rejections.load(), 0);
  EXPECT_LE(max_inside.load(), 2);
  EXPECT_GE(max_inside.load(), 1);
  EXPECT_EQ(over_limit.load(), 0);
  // Every admitted write took exactly one token, and no refused one kept
  // any; the bucket runs dry long before the calls do.
  EXPECT_EQ(admitted_total, static_cast<int64_t>(kBurst));
  EXPECT_EQ(kBurst - throttle->bucket()->Available(),
            static_cast<double>(admitted_total));
  EXPECT_EQ(throttle->limiter().in_flight(), 0);
  // The metrics agree.
  EXPECT_EQ(Outcomes("success"), static_cast<double>(admitted_total));
  EXPECT_EQ(Outcomes("ignored"), static_cast<double>(by_bucket));
  EXPECT_EQ(Admitted(Gate::kConcurrencyLimit),
            static_cast<double>(admitted_total + by_bucket));
  EXPECT_EQ(Rejected(Gate::kConcurrencyLimit, Reason::kLimitReached),
            static_cast<double>(by_limiter));
  EXPECT_EQ(Admitted(Gate::kTokenBucket, "any"),
            static_cast<double>(admitted_total));
  EXPECT_EQ(Rejected(Gate::kTokenBucket, Reason::kRateLimited, "any"),
            static_cast<double>(by_bucket));
  EXPECT_EQ(InFlightGauge(), 0);
}

}  // namespace
}  // namespace spillway
