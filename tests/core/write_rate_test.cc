#include "spillway/write_rate.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spillway/testing/simulated_clock.h"
#include "tests/common/capture_log.h"
#include "tests/common/eventually.h"

namespace spillway {
namespace {

using ::testing::HasSubstr;

TEST(WriteRateMonitorTest, InvalidOptionsNameTheField) {
  WriteRateMonitorOptions empty;
  absl::Status s = ValidateWriteRateMonitorOptions(empty);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("read_count must be set"));
  EXPECT_FALSE(WriteRateMonitor::Create(empty).ok());

  for (absl::Duration bad :
       {absl::ZeroDuration(), absl::Microseconds(999), absl::Seconds(61)}) {
    WriteRateMonitorOptions o;
    o.read_count = [] { return absl::StatusOr<int64_t>(0); };
    o.interval = bad;
    s = ValidateWriteRateMonitorOptions(o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()),
                HasSubstr("interval must be in [1ms, 60s]; got " +
                          absl::FormatDuration(bad)));
  }
}

struct Fixture {
  testing::SimulatedClock clock;
  test::CaptureLog log;
  std::atomic<int64_t> count{100};
  std::atomic<bool> fail{false};

  std::unique_ptr<WriteRateMonitor> Make() {
    WriteRateMonitorOptions o;
    o.read_count = [this]() -> absl::StatusOr<int64_t> {
      if (fail.load()) return absl::UnavailableError("server gone");
      return count.load();
    };
    o.name = "orders db";
    o.clock = &clock;
    o.log = &log;
    auto m = WriteRateMonitor::Create(std::move(o));
    EXPECT_TRUE(m.ok()) << m.status();
    return std::move(*m);
  }

  // Lets the monitor's thread take its next read.
  void Tick(WriteRateMonitor& m) {
    const int64_t before = m.reads();
    ASSERT_TRUE(test::Eventually([&] { return clock.waiters() == 1; }));
    clock.Advance(absl::Milliseconds(50));
    ASSERT_TRUE(test::Eventually([&] { return m.reads() == before + 1; }));
  }
};

TEST(WriteRateMonitorTest, PublishesEachReadWithItsTime) {
  Fixture f;
  const MonotonicTime t0 = f.clock.Now();
  auto m = f.Make();
  // Create reads once before it returns.
  EXPECT_EQ(m->reads(), 1);
  ASSERT_TRUE(m->Latest().has_value());
  EXPECT_EQ(m->Latest()->writes, 100);
  EXPECT_EQ(m->Latest()->at, t0);

  f.count = 175;
  f.Tick(*m);
  ASSERT_TRUE(m->Latest().has_value());
  EXPECT_EQ(m->Latest()->writes, 175);
  EXPECT_EQ(m->Latest()->at, t0 + std::chrono::milliseconds(50));
  EXPECT_EQ(m->failures(), 0);
  EXPECT_TRUE(f.log.Lines().empty());
}

TEST(WriteRateMonitorTest, AFailingCountIsNoReadingAndOneLogLineEachWay) {
  Fixture f;
  f.fail = true;
  auto m = f.Make();
  EXPECT_FALSE(m->Latest().has_value());
  f.Tick(*m);
  f.Tick(*m);
  EXPECT_FALSE(m->Latest().has_value());
  EXPECT_EQ(m->failures(), 3);
  ASSERT_EQ(f.log.Count(LogLevel::kWarning), 1);
  EXPECT_THAT(f.log.Lines()[0], HasSubstr("write rate of orders db"));
  EXPECT_THAT(f.log.Lines()[0], HasSubstr("server gone"));

  f.fail = false;
  f.Tick(*m);
  ASSERT_TRUE(m->Latest().has_value());
  EXPECT_EQ(m->Latest()->writes, 100);
  EXPECT_EQ(f.log.Count(LogLevel::kInfo), 1);

  // A failure after good reads withdraws the reading: a rate across the
  // gap would be a guess.
  f.fail = true;
  f.Tick(*m);
  EXPECT_FALSE(m->Latest().has_value());
  EXPECT_EQ(f.log.Count(LogLevel::kWarning), 2);
}

TEST(WriteRateMonitorTest, ANegativeCountIsAFailure) {
  Fixture f;
  f.count = -1;
  auto m = f.Make();
  EXPECT_FALSE(m->Latest().has_value());
  EXPECT_EQ(m->failures(), 1);
  ASSERT_EQ(f.log.Count(LogLevel::kWarning), 1);
  EXPECT_THAT(f.log.Lines()[0], HasSubstr("the count is negative: -1"));
}

// A reader never sees the count of one read with the time of another:
// the count here is the read's own time, so a torn reading would not match.
TEST(WriteRateMonitorTest, ReadersNeverSeeATornReading) {
  testing::SimulatedClock clock;
  const MonotonicTime t0 = clock.Now();
  WriteRateMonitorOptions o;
  o.read_count = [&]() -> absl::StatusOr<int64_t> {
    return std::chrono::duration_cast<std::chrono::microseconds>(clock.Now() -
                                                                 t0)
        .count();
  };
  o.clock = &clock;
  auto m = WriteRateMonitor::Create(std::move(o));
  ASSERT_TRUE(m.ok());
  std::atomic<bool> done{false};
  std::atomic<int64_t> checked{0};
  std::atomic<int64_t> torn{0};
  std::thread reader([&] {
    while (!done.load()) {
      const std::optional<WriteCountReading> r = (*m)->Latest();
      if (!r) continue;
      const int64_t us =
          std::chrono::duration_cast<std::chrono::microseconds>(r->at - t0)
              .count();
      if (us != r->writes) torn.fetch_add(1);
      checked.fetch_add(1);
    }
  });
  for (int i = 0; i < 300; ++i) {
    const int64_t before = (*m)->reads();
    ASSERT_TRUE(test::Eventually([&] { return clock.waiters() == 1; }));
    clock.Advance(absl::Milliseconds(50));
    ASSERT_TRUE(test::Eventually([&] { return (*m)->reads() == before + 1; }));
  }
  ASSERT_TRUE(test::Eventually([&] { return checked.load() > 0; }));
  done = true;
  reader.join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_EQ((*m)->Latest()->writes, 300 * 50'000);
}

}  // namespace
}  // namespace spillway
