// RateLimitedLogSink on simulated time: a burst passes, the excess is
// counted and announced with the next line that passes.

#include "spillway/log.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spillway/testing/simulated_clock.h"
#include "tests/common/capture_log.h"

namespace spillway {
namespace {

using ::testing::ElementsAre;

TEST(RateLimitedLogSinkTest, BurstPassesThenOneLinePerInterval) {
  testing::SimulatedClock clock;
  test::CaptureLog inner;
  RateLimitedLogSink sink(inner, /*lines_per_second=*/1.0, /*burst=*/3, clock);
  for (int i = 0; i < 5; ++i) sink.Log(LogLevel::kWarning, "line");
  EXPECT_EQ(inner.Lines().size(), 3u);
  EXPECT_EQ(sink.suppressed(), 2);

  clock.Advance(absl::Milliseconds(999));
  sink.Log(LogLevel::kInfo, "early");  // 0.999 tokens: still suppressed.
  EXPECT_EQ(inner.Lines().size(), 3u);
  clock.Advance(absl::Milliseconds(1));
  sink.Log(LogLevel::kInfo, "back");
  EXPECT_THAT(inner.Lines(),
              ElementsAre("line", "line", "line", "back (3 lines suppressed)"));
  EXPECT_EQ(inner.Count(LogLevel::kInfo), 1);
  EXPECT_EQ(sink.suppressed(), 3);

  // A long quiet spell refills only up to the burst.
  clock.Advance(absl::Hours(1));
  for (int i = 0; i < 5; ++i) sink.Log(LogLevel::kError, "again");
  EXPECT_EQ(inner.Count(LogLevel::kError), 3);
  clock.Advance(absl::Seconds(1));
  sink.Log(LogLevel::kError, "one");
  EXPECT_EQ(inner.Lines().back(), "one (2 lines suppressed)");
}

TEST(RateLimitedLogSinkTest, BadArgumentsAreClampedNotFatal) {
  testing::SimulatedClock clock;
  test::CaptureLog inner;
  RateLimitedLogSink sink(inner, /*lines_per_second=*/-5, /*burst=*/0, clock);
  sink.Log(LogLevel::kInfo, "a");
  sink.Log(LogLevel::kInfo, "b");
  EXPECT_THAT(inner.Lines(), ElementsAre("a"));  // Burst 1, rate 1/s.
  clock.Advance(absl::Seconds(1));
  sink.Log(LogLevel::kInfo, "c");
  EXPECT_THAT(inner.Lines(), ElementsAre("a", "c (1 line suppressed)"));
}

TEST(DefaultLogSinkTest, IsOneProcessWideSink) {
  EXPECT_EQ(&DefaultLogSink(), &DefaultLogSink());
  EXPECT_NE(&DefaultLogSink(), &StderrLogSink());
}

TEST(NullLogSinkTest, IsOneProcessWideSinkApartFromTheOthers) {
  EXPECT_EQ(&NullLogSink(), &NullLogSink());
  EXPECT_NE(&NullLogSink(), &DefaultLogSink());
  EXPECT_NE(&NullLogSink(), &StderrLogSink());
  NullLogSink().Log(LogLevel::kError, "swallowed");
}

}  // namespace
}  // namespace spillway
