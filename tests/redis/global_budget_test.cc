// GlobalBudget against a real redis-server (started by the fixture on its
// own loopback port): the shared budget, key layout, many keys, and every
// fault the issue names — killed, restarted, frozen, SCRIPT FLUSH, a key of
// the wrong type, a wrong password. Fault figures are printed.
//
// Real time appears here because Redis, its TIME and its timeouts are real:
// waits poll for a state with a safety timeout, and assertions count refresh
// rounds and log lines, not milliseconds.
#include "spillway/redis/global_budget.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spillway/redis/fleet_registry.h"
#include "spillway/testing/in_memory_metrics.h"
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
using ::testing::Not;
using Steady = std::chrono::steady_clock;

double MillisSince(Steady::time_point t) {
  return std::chrono::duration<double, std::milli>(Steady::now() - t).count();
}

// Calls TryAcquire in a loop on its own thread (about 100k calls/s), and
// records the slowest call.
class Driver {
 public:
  explicit Driver(LeasedBudget* budget) : budget_(budget) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Driver() { Stop(); }
  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  int64_t calls() const { return calls_.load(); }
  int64_t admitted() const { return admitted_.load(); }
  double max_call_us() const { return max_ns_.load() / 1000.0; }

 private:
  void Run() {
    while (!stop_.load(std::memory_order_relaxed)) {
      for (int i = 0; i < 10; ++i) {
        const auto t0 = Steady::now();
        const bool ok = budget_->TryAcquire();
        const int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               Steady::now() - t0)
                               .count();
        if (ns > max_ns_.load(std::memory_order_relaxed)) max_ns_.store(ns);
        calls_.fetch_add(1, std::memory_order_relaxed);
        if (ok) admitted_.fetch_add(1, std::memory_order_relaxed);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

  LeasedBudget* const budget_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> calls_{0};
  std::atomic<int64_t> admitted_{0};
  std::atomic<int64_t> max_ns_{0};
  std::thread thread_;
};

class GlobalBudgetTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer({}); }

  void StartServer(std::vector<std::string> args) {
    auto server = RedisServer::Start(std::move(args));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  GlobalBudgetOptions Options() {
    GlobalBudgetOptions o;
    o.redis.port = server_->port();
    o.metrics = &sink_;
    o.log = &log_;
    return o;
  }

  std::unique_ptr<GlobalBudget> MakeFleet(const GlobalBudgetOptions& o) {
    auto fleet = GlobalBudget::Create(o);
    EXPECT_TRUE(fleet.ok()) << fleet.status();
    return fleet.ok() ? *std::move(fleet) : nullptr;
  }

  LeasedBudget* MakeBudget(GlobalBudget& fleet, absl::string_view key,
                           double rate = 1000, double burst = 100) {
    auto budget = fleet.Budget(key, {.spec = {.rate = rate, .burst = burst}});
    EXPECT_TRUE(budget.ok()) << budget.status();
    return budget.ok() ? *budget : nullptr;
  }

  // Admits until the lease is empty, so the next refresh calls Redis.
  static void Drain(LeasedBudget& budget) {
    while (budget.TryAcquire()) {
    }
  }

  double RedisErrors(absl::string_view kind) {
    return sink_.CounterSum("spillway_redis_errors_total",
                            {{"kind", std::string(kind)}});
  }

  std::unique_ptr<RedisServer> server_;
  testing::InMemoryMetricsSink sink_;
  CaptureLog log_;
};

TEST_F(GlobalBudgetTest, AdmitsFromTheLeaseWithinTheSharedBudget) {
  auto fleet = MakeFleet(Options());
  ASSERT_NE(fleet, nullptr);
  LeasedBudget* budget = MakeBudget(*fleet, "orders", 1000, 100);
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(WaitFor([&] { return budget->lease_tokens() > 0; }));
  EXPECT_EQ(budget->mode(), BudgetMode::kShared);

  const auto start = Steady::now();
  int64_t admitted = 0;
  while (MillisSince(start) < 1000) {
    for (int i = 0; i < 100; ++i) admitted += budget->TryAcquire() ? 1 : 0;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  const double seconds = MillisSince(start) / 1000;
  std::printf(
      "[ figure ] one instance, budget 1000/s burst 100: admitted %lld "
      "in %.2f s; bound %.0f\n",
      static_cast<long long>(admitted), seconds,
      1000 * seconds + budget->OvershootBound());
  EXPECT_LE(admitted, 1000 * seconds + budget->OvershootBound());
  // The budget is used, not starved: at least half of it in one second.
  EXPECT_GE(admitted, 500);
  EXPECT_EQ(RedisErrors("unavailable") + RedisErrors("timeout"), 0);
}

TEST_F(GlobalBudgetTest, OneHashTaggedKeyPerBudgetThatExpiresWhenIdle) {
  auto fleet = MakeFleet(Options());
  ASSERT_NE(fleet, nullptr);
  EXPECT_EQ(fleet->RedisKey("orders"), "spillway:{orders}:budget");
  LeasedBudget* budget = MakeBudget(*fleet, "orders", 100, 10);
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(WaitFor([&] { return budget->lease_tokens() > 0; }));
  EXPECT_EQ(*server_->Command({"EXISTS", "spillway:{orders}:budget"}), "1");
  const auto pttl = server_->Command({"PTTL", "spillway:{orders}:budget"});
  ASSERT_TRUE(pttl.ok()) << pttl.status();
  // Expires once the bucket would be full again: at most burst / rate.
  EXPECT_GT(std::stoll(*pttl), 0);
  EXPECT_LE(std::stoll(*pttl), 101);
}

TEST_F(GlobalBudgetTest, ManyKeysFromOneClientWithBoundedMemory) {
  GlobalBudgetOptions o = Options();
  o.max_budgets = 50;
  auto fleet = MakeFleet(o);
  ASSERT_NE(fleet, nullptr);
  std::vector<LeasedBudget*> budgets;
  for (int i = 0; i < 50; ++i) {
    budgets.push_back(MakeBudget(*fleet, absl::StrCat("tenant-", i)));
    ASSERT_NE(budgets.back(), nullptr);
  }
  // Asking again returns the same budget.
  EXPECT_EQ(*fleet->Budget("tenant-7", {.spec = {.rate = 1000, .burst = 100}}),
            budgets[7]);
  auto other = fleet->Budget("tenant-7", {.spec = {.rate = 5, .burst = 100}});
  EXPECT_EQ(other.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(other.status().message()), HasSubstr("tenant-7"));
  auto too_many = fleet->Budget("tenant-50", {});
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(too_many.status().message()),
              HasSubstr("max_budgets"));
  auto bad = fleet->Budget("has space", {});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);

  ASSERT_TRUE(fleet->RefreshNow().ok());
  for (LeasedBudget* b : budgets) EXPECT_GT(b->lease_tokens(), 0) << b->key();
  // One small Redis string per key in use, nothing else.
  EXPECT_EQ(*server_->Command({"DBSIZE"}), "50");
}

TEST_F(GlobalBudgetTest, ScriptFlushIsReloadedTransparently) {
  auto fleet = MakeFleet(Options());
  ASSERT_NE(fleet, nullptr);
  LeasedBudget* budget = MakeBudget(*fleet, "orders", 100000, 10000);
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(fleet->RefreshNow().ok());
  ASSERT_TRUE(server_->Command({"SCRIPT", "FLUSH"}).ok());
  Drain(*budget);
  const absl::Status s = fleet->RefreshNow();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_GT(budget->lease_tokens(), 0);
  EXPECT_EQ(budget->mode(), BudgetMode::kShared);
  EXPECT_EQ(log_.Count(LogLevel::kWarning), 0);
  EXPECT_EQ(sink_.CounterSum("spillway_redis_errors_total"), 0);
}

TEST_F(GlobalBudgetTest, KeyOfTheWrongTypeIsAClearErrorAndTheFailMode) {
  // Refreshes by RefreshNow only (after the first), so none recreates the
  // key between the DEL and the LPUSH below.
  GlobalBudgetOptions o = Options();
  o.refresh_interval = absl::Seconds(10);
  auto fleet = MakeFleet(o);
  ASSERT_NE(fleet, nullptr);
  LeasedBudget* budget = MakeBudget(*fleet, "orders");
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(fleet->RefreshNow().ok());
  const std::string key = fleet->RedisKey("orders");
  ASSERT_TRUE(server_->Command({"DEL", key}).ok());
  ASSERT_TRUE(server_->Command({"LPUSH", key, "not a budget"}).ok());
  Drain(*budget);

  const absl::Status s = fleet->RefreshNow();
  std::printf("[ figure ] wrong type: %s\n", s.ToString().c_str());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("WRONGTYPE"));
  EXPECT_EQ(budget->mode(), BudgetMode::kSafeShare);
  EXPECT_GE(RedisErrors("wrong_type"), 1);
  EXPECT_EQ(log_.Count(LogLevel::kWarning), 1);
  EXPECT_THAT(log_.Lines(), ::testing::Contains(HasSubstr("orders")));
  // Still admitting, from the safe share.
  EXPECT_TRUE(budget->TryAcquire());

  ASSERT_TRUE(server_->Command({"DEL", key}).ok());
  EXPECT_TRUE(fleet->RefreshNow().ok());
  EXPECT_EQ(budget->mode(), BudgetMode::kShared);
  EXPECT_EQ(log_.Count(LogLevel::kWarning), 1);
  EXPECT_EQ(log_.Count(LogLevel::kInfo), 1);
}

TEST_F(GlobalBudgetTest, KilledRedisFallsBackAtTheNextRefresh) {
  // Declared before the fleet: its refresh thread may call the hook until
  // the fleet is destroyed.
  std::atomic<bool> in_hook{false};
  std::atomic<bool> release{false};
  struct ReleaseOnExit {
    std::atomic<bool>& release;
    ~ReleaseOnExit() { release.store(true); }
  };
  CaptureLog log;
  GlobalBudgetOptions o = Options();
  o.log = &log;
  auto fleet = MakeFleet(o);
  ASSERT_NE(fleet, nullptr);
  LeasedBudget* budget = MakeBudget(*fleet, "orders", 20000, 2000);
  ASSERT_NE(budget, nullptr);
  Driver driver(budget);
  ASSERT_TRUE(WaitFor([&] { return fleet->refresh_rounds() >= 5; }));
  ASSERT_EQ(budget->mode(), BudgetMode::kShared);

  // When the fallback line is logged (on the refresh thread), hold that
  // thread there: admits must go on without it.
  ReleaseOnExit release_on_exit{release};
  log.set_on_log([&](LogLevel level, absl::string_view) {
    if (level != LogLevel::kWarning) return;
    in_hook.store(true);
    while (!release.load()) std::this_thread::yield();
  });

  const int64_t rounds_before = fleet->refresh_rounds();
  const auto killed = Steady::now();
  ASSERT_TRUE(server_->Kill().ok());
  ASSERT_TRUE(WaitFor([&] { return in_hook.load(); }));
  const double fallback_ms = MillisSince(killed);
  // The round in flight at the kill may still succeed; the next one fails.
  const int64_t rounds = fleet->refresh_rounds() - rounds_before;
  EXPECT_LE(rounds, 1);

  // The refresh thread is parked inside the log call; admits still run.
  const int64_t calls = driver.calls();
  ASSERT_TRUE(WaitFor([&] { return driver.calls() > calls + 1000; }));
  release.store(true);
  ASSERT_TRUE(WaitFor([&] { return budget->mode() != BudgetMode::kShared; }));
  EXPECT_EQ(budget->mode(), BudgetMode::kSafeShare);
  driver.Stop();

  std::printf(
      "[ figure ] Redis killed: fallback to safe_share after %.1f ms "
      "(refresh interval 100 ms, %lld refresh round(s) completed); slowest "
      "admit call during the run %.1f us; %lld admit calls\n",
      fallback_ms, static_cast<long long>(rounds), driver.max_call_us(),
      static_cast<long long>(driver.calls()));
  EXPECT_EQ(log.Count(LogLevel::kWarning), 1);
  EXPECT_THAT(log.Lines(), ::testing::Contains(HasSubstr("safe_share")));
  EXPECT_EQ(sink_.GaugeValue("spillway_budget_mode", {"orders", "safe_share"}),
            1);
  EXPECT_EQ(sink_.GaugeValue("spillway_budget_mode", {"orders", "shared"}), 0);
}

TEST_F(GlobalBudgetTest, RestartedRedisResumesTheSharedBudget) {
  auto fleet = MakeFleet(Options());
  ASSERT_NE(fleet, nullptr);
  LeasedBudget* budget = MakeBudget(*fleet, "orders", 20000, 2000);
  ASSERT_NE(budget, nullptr);
  Driver driver(budget);
  ASSERT_TRUE(WaitFor([&] { return fleet->refresh_rounds() >= 3; }));
  ASSERT_TRUE(server_->Kill().ok());
  ASSERT_TRUE(WaitFor([&] { return budget->mode() != BudgetMode::kShared; }));
  // Let the reconnect backoff grow to its maximum (500 ms).
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));

  ASSERT_TRUE(server_->Restart().ok());
  const auto restarted = Steady::now();
  const int64_t rounds_before = fleet->refresh_rounds();
  ASSERT_TRUE(WaitFor([&] { return budget->mode() == BudgetMode::kShared; }));
  const double resume_ms = MillisSince(restarted);
  const int64_t rounds = fleet->refresh_rounds() - rounds_before;
  driver.Stop();
  std::printf(
      "[ figure ] Redis restarted: shared budget again after %.1f ms (%lld "
      "refresh rounds; backoff max 500 ms, refresh interval 100 ms)\n",
      resume_ms, static_cast<long long>(rounds));
  // At most one backoff (500 ms, +25% jitter) of 100 ms rounds, plus one.
  EXPECT_LE(rounds, 8);
  EXPECT_EQ(log_.Count(LogLevel::kWarning), 1);
  EXPECT_EQ(log_.Count(LogLevel::kInfo), 1);
  EXPECT_GT(budget->lease_tokens() + driver.admitted(), 0);
}

TEST_F(GlobalBudgetTest, FrozenRedisFallsBackAndResumesAfterThaw) {
  auto fleet = MakeFleet(Options());
  ASSERT_NE(fleet, nullptr);
  LeasedBudget* budget = MakeBudget(*fleet, "orders", 20000, 2000);
  ASSERT_NE(budget, nullptr);
  Driver driver(budget);
  ASSERT_TRUE(WaitFor([&] { return fleet->refresh_rounds() >= 3; }));

  const int64_t rounds_before = fleet->refresh_rounds();
  const auto frozen = Steady::now();
  ASSERT_TRUE(server_->Freeze().ok());
  ASSERT_TRUE(WaitFor([&] { return budget->mode() != BudgetMode::kShared; }));
  const double fallback_ms = MillisSince(frozen);
  EXPECT_LE(fleet->refresh_rounds() - rounds_before, 1);
  const int64_t admitted_at_fallback = driver.admitted();

  // SIGSTOP for 5 s in all.
  std::this_thread::sleep_until(frozen + std::chrono::seconds(5));
  EXPECT_EQ(budget->mode(), BudgetMode::kSafeShare);
  const int64_t admitted_while_frozen =
      driver.admitted() - admitted_at_fallback;
  ASSERT_TRUE(server_->Thaw().ok());
  const auto thawed = Steady::now();
  ASSERT_TRUE(WaitFor([&] { return budget->mode() == BudgetMode::kShared; }));
  const double resume_ms = MillisSince(thawed);
  driver.Stop();

  std::printf(
      "[ figure ] Redis frozen (SIGSTOP) 5 s: fallback after %.1f ms, %lld "
      "writes admitted from the safe share while frozen, shared again %.1f "
      "ms after SIGCONT; slowest admit call %.1f us; timeouts counted %.0f\n",
      fallback_ms, static_cast<long long>(admitted_while_frozen), resume_ms,
      driver.max_call_us(), RedisErrors("timeout"));
  EXPECT_GT(admitted_while_frozen, 0);
  EXPECT_GE(RedisErrors("timeout"), 1);
  EXPECT_EQ(log_.Count(LogLevel::kWarning), 1);
  EXPECT_EQ(log_.Count(LogLevel::kInfo), 1);
}

TEST_F(GlobalBudgetTest, UnreachableAtStartIsNotAnErrorButTheFailMode) {
  const int port = server_->port();
  ASSERT_TRUE(server_->Kill().ok());
  GlobalBudgetOptions o = Options();
  o.redis.port = port;
  o.fail_mode = FailMode::kFailClosed;
  auto fleet = MakeFleet(o);
  ASSERT_NE(fleet, nullptr);
  LeasedBudget* budget = MakeBudget(*fleet, "orders");
  ASSERT_NE(budget, nullptr);
  ASSERT_TRUE(
      WaitFor([&] { return budget->mode() == BudgetMode::kFailClosed; }));
  Rejection why;
  EXPECT_FALSE(budget->TryAcquire(1, &why));
  EXPECT_EQ(why.gate, Gate::kGlobalBudget);
  EXPECT_EQ(why.reason, Reason::kBudgetUnavailable);
  ASSERT_TRUE(server_->Restart().ok());
  EXPECT_TRUE(WaitFor([&] { return budget->mode() == BudgetMode::kShared; }));
}

class GlobalBudgetAuthTest : public GlobalBudgetTest {
 protected:
  void SetUp() override { StartServer({"--requirepass", "s3cret-pw"}); }
};

TEST_F(GlobalBudgetAuthTest, WrongPasswordIsAnAuthenticationError) {
  GlobalBudgetOptions o = Options();
  o.redis.password = "not-the-pw";
  auto fleet = GlobalBudget::Create(o);
  ASSERT_FALSE(fleet.ok());
  EXPECT_EQ(fleet.status().code(), absl::StatusCode::kUnauthenticated);
  const std::string message = absl::AsciiStrToLower(fleet.status().message());
  EXPECT_THAT(message, HasSubstr("auth"));
  EXPECT_THAT(message, Not(HasSubstr("not-the-pw")));

  FleetRegistryOptions r;
  r.redis = o.redis;
  r.log = &log_;
  auto registry = FleetRegistry::Create(r);
  EXPECT_EQ(registry.status().code(), absl::StatusCode::kUnauthenticated);

  o.redis.password = "s3cret-pw";
  auto good = GlobalBudget::Create(o);
  ASSERT_TRUE(good.ok()) << good.status();
  LeasedBudget* budget = MakeBudget(**good, "orders");
  ASSERT_NE(budget, nullptr);
  EXPECT_TRUE(WaitFor([&] { return budget->lease_tokens() > 0; }));
}

using InvalidCase = test::InvalidOptionsCase<GlobalBudgetOptions>;
class GlobalBudgetInvalidOptions
    : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(GlobalBudgetInvalidOptions, IsRefusedNamingTheField) {
  GlobalBudgetOptions o;
  GetParam().mutate(o);
  test::ExpectInvalidArgument(ValidateGlobalBudgetOptions(o),
                              "GlobalBudgetOptions." + GetParam().field,
                              GetParam().value);
  EXPECT_EQ(GlobalBudget::Create(o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(
    Fields, GlobalBudgetInvalidOptions,
    ::testing::Values(
        InvalidCase{"RedisPort", [](auto& o) { o.redis.port = 0; },
                    "redis.port", "0"},
        InvalidCase{"Name", [](auto& o) { o.name = ""; }, "name", "\"\""},
        InvalidCase{
            "RefreshTooShort",
            [](auto& o) { o.refresh_interval = absl::Milliseconds(20); },
            "refresh_interval", "20ms"},
        InvalidCase{"RefreshTooLong",
                    [](auto& o) { o.refresh_interval = absl::Seconds(11); },
                    "refresh_interval", "11s"},
        InvalidCase{"FleetSize", [](auto& o) { o.fallback_fleet_size = 0; },
                    "fallback_fleet_size", "0"},
        InvalidCase{"MaxBudgets", [](auto& o) { o.max_budgets = 0; },
                    "max_budgets", "0"}),
    test::CaseName<GlobalBudgetOptions>);

}  // namespace
}  // namespace spillway::redis
