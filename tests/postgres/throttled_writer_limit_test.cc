// The default limit (MakeDefaultLimit: KneeLimit in a WindowedLimit, via
// the WriteThrottleOptions defaults) under a burst of real lock timeouts: the
// limit falls while the burst lasts and recovers afterwards.
//
// Time is simulated; the outcomes are real. Each step is one service time
// of a database that serves kCapacity writes at once in kServiceTime and
// queues beyond that (latency grows in proportion to the writes in flight).
// Offered load exceeds the limit, so every step admits as many writes as the
// throttle allows. One of them is a real UPDATE through ThrottledWriter
// against PostgreSQL, classified by ThrottledWriter itself; the others are
// plain permits of the same throttle that end as the real write ended (they
// stand for the other writers hitting the same row). The simulated clock
// advances by the step's latency inside the real write's body, so every
// permit of the step reports that latency to the limit algorithm.
//
// During the burst another connection holds the row, and each real write
// fails with 55P03 after `lock_timeout` = 1 ms of real time.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "bench/pg_overload/postgres_server.h"
#include "gtest/gtest.h"
#include "spillway/pqxx/throttled_writer.h"
#include "spillway/testing/in_memory_metrics.h"
#include "spillway/testing/simulated_clock.h"
#include "tests/common/invalid_options.h"

namespace spillway::pqxx {
namespace {

using ::spillway::test::PostgresServer;
using ::spillway::test::ValueOrFail;

constexpr int kCapacity = 16;
constexpr absl::Duration kServiceTime = absl::Milliseconds(1);

class LimitUnderLockTimeouts : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = PostgresServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ::pqxx::connection admin(server_->ConnectionString());
    ::pqxx::work tx(admin);
    tx.exec("CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL)");
    tx.exec("INSERT INTO items VALUES (1, 0)");
    tx.commit();
    // Default limiter options: the default limit algorithm.
    throttle_ = ValueOrFail(WriteThrottle::Create(
        {.name = "orders", .clock = &clock_, .metrics = &sink_}));
    ASSERT_NE(throttle_, nullptr);
    writer_ = ValueOrFail(ThrottledWriter::Create(
        {.connection_string = server_->ConnectionString(),
         .throttle = throttle_.get()}));
    ASSERT_NE(writer_, nullptr);
  }

  int limit() const { return throttle_->limiter().limit(); }
  double Outcomes(const char* outcome) const {
    return sink_.CounterValue("spillway_outcomes_total", {"orders", outcome})
        .value_or(0);
  }

  // One step; returns the real write's status.
  absl::Status Step() {
    std::vector<ThrottlePermit> others;
    for (ThrottleAdmission a = throttle_->Admit(); a.ok();
         a = throttle_->Admit()) {
      others.push_back(std::move(a).permit());
    }
    // Leave the last slot to the real write.
    if (!others.empty()) others.pop_back();
    const int in_flight = static_cast<int>(others.size()) + 1;
    const absl::Duration latency =
        kServiceTime *
        std::max(1.0, static_cast<double>(in_flight) / kCapacity);
    const double dropped_before = Outcomes("dropped");
    const absl::Status s = writer_->Write([&](::pqxx::work& tx) {
      tx.exec("SET LOCAL lock_timeout = 1");
      clock_.Advance(latency);
      tx.exec("UPDATE items SET v = v + 1 WHERE id = 1");
    });
    const bool dropped = Outcomes("dropped") > dropped_before;
    for (ThrottlePermit& p : others) {
      if (dropped) {
        p.Dropped();
      } else {
        p.Success();
      }
    }
    return s;
  }

  // Steps for `d` of simulated time; counts the real writes' results.
  void Run(absl::Duration d, int* ok, int* lock_timeouts, int* other) {
    const MonotonicTime end = clock_.Now() + ToChrono(d);
    while (clock_.Now() < end) {
      const absl::Status s = Step();
      if (s.ok()) {
        ++*ok;
      } else if (s.code() == absl::StatusCode::kAborted &&
                 SqlState(s) == "55P03") {
        ++*lock_timeouts;
      } else {
        ++*other;
        ADD_FAILURE() << s;
        if (*other > 3) return;
      }
    }
  }

  std::unique_ptr<PostgresServer> server_;
  testing::SimulatedClock clock_;
  testing::InMemoryMetricsSink sink_;
  std::unique_ptr<WriteThrottle> throttle_;
  std::unique_ptr<ThrottledWriter> writer_;
};

TEST_F(LimitUnderLockTimeouts,
       FallsDuringTheBurstAndRecoversWithinFiveSeconds) {
  int ok = 0;
  int lock_timeouts = 0;
  int other = 0;

  // Warm-up: slow start finds the knee (about 2.5 x kCapacity).
  Run(absl::Seconds(1), &ok, &lock_timeouts, &other);
  const int before = limit();
  EXPECT_EQ(lock_timeouts, 0);
  EXPECT_GT(before, kCapacity);

  // The burst: another client holds the row.
  ::pqxx::connection holder_connection(server_->ConnectionString());
  auto holder = std::make_unique<::pqxx::work>(holder_connection);
  holder->exec("SELECT v FROM items WHERE id = 1 FOR UPDATE");
  const int ok_before_burst = ok;
  Run(absl::Milliseconds(500), &ok, &lock_timeouts, &other);
  const int during = limit();
  EXPECT_EQ(ok, ok_before_burst);
  EXPECT_GT(lock_timeouts, 0);
  // Every real lock timeout was recorded as dropped (with the permits that
  // followed it).
  EXPECT_GE(Outcomes("dropped"), lock_timeouts);
  EXPECT_LE(during, before / 2);
  holder->abort();
  holder.reset();

  // Recovery: steps until the limit is back to 90% of its earlier value.
  const MonotonicTime burst_end = clock_.Now();
  const MonotonicTime give_up = burst_end + ToChrono(absl::Seconds(10));
  while (limit() * 10 < before * 9 && clock_.Now() < give_up && other <= 3) {
    Run(kServiceTime, &ok, &lock_timeouts, &other);
  }
  const absl::Duration recovery = ToDuration(clock_.Now() - burst_end);
  std::printf(
      "[ figure ] default limit, capacity %d: %d before the burst, %d after "
      "500 ms of lock timeouts (%d real 55P03), back to %d in %s "
      "(simulated)\n",
      kCapacity, before, during, lock_timeouts, limit(),
      absl::FormatDuration(recovery).c_str());
  EXPECT_GE(limit() * 10, before * 9);
  EXPECT_LE(recovery, absl::Seconds(5));
  EXPECT_EQ(other, 0);
}

}  // namespace
}  // namespace spillway::pqxx
