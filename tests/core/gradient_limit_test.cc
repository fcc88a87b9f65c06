#include "spillway/gradient_limit.h"

#include <chrono>
#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spillway/limit.h"

namespace spillway {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

constexpr MonotonicTime kT0 = MonotonicTime() + std::chrono::hours(1);

WindowSample Window(milliseconds at, milliseconds rtt, int samples = 10,
                    int in_flight = 5) {
  WindowSample w;
  w.rtt = rtt;
  w.min_rtt = rtt;
  w.max_in_flight = in_flight;
  w.samples = samples;
  w.end = kT0 + at;
  return w;
}

std::unique_ptr<GradientLimit> Make(GradientLimitOptions o = {}) {
  o.jitter = 0;  // Exact measurement times.
  o.seed = 1;
  auto g = GradientLimit::Create(o);
  EXPECT_TRUE(g.ok()) << g.status();
  return std::move(*g);
}

// Runs the first minRTT measurement to completion with `rtt`; returns the
// limit after it.
int Measure(GradientLimit& g, milliseconds at, milliseconds rtt) {
  int limit = g.Update(Window(at, rtt), g.initial_limit());
  EXPECT_TRUE(g.measuring());
  EXPECT_EQ(limit, 3);
  EXPECT_EQ(g.discard_before(), kT0 + at);
  limit = g.Update(Window(at + milliseconds(100), rtt, 30), limit);
  EXPECT_TRUE(g.measuring());  // 30 < 50 samples.
  EXPECT_EQ(limit, 3);
  limit = g.Update(Window(at + milliseconds(200), rtt, 20), limit);
  EXPECT_FALSE(g.measuring());
  EXPECT_EQ(g.min_rtt(), rtt);
  return limit;
}

TEST(GradientLimitTest, StartsPinnedAndMeasuresMinRtt) {
  auto g = Make();
  EXPECT_EQ(g->initial_limit(), 3);
  EXPECT_EQ(Measure(*g, milliseconds(0), milliseconds(10)), 3);
}

TEST(GradientLimitTest, EnvoysFormula) {
  auto g = Make();
  int limit = Measure(*g, milliseconds(0), milliseconds(10));
  // gradient = 10 * 1.25 / 10 = 1.25; 3 * 1.25 = 3.75; + sqrt = 5.68 -> 5.
  limit = g->Update(Window(milliseconds(300), milliseconds(10)), limit);
  EXPECT_EQ(limit, 5);
  // RTT 25 ms: gradient 0.5; 2.5 + 1.58 = 4.08 -> 4.
  limit = g->Update(Window(milliseconds(400), milliseconds(25)), limit);
  EXPECT_EQ(limit, 4);
  // RTT 5 ms: 2.5, clamped to 2.0; 8 + 2.83 = 10.83 -> 10.
  limit = g->Update(Window(milliseconds(500), milliseconds(5)), limit);
  EXPECT_EQ(limit, 10);
  // RTT 100 ms: gradient clamped to 0.5; 5 + 2.24 = 7.24 -> 7.
  limit = g->Update(Window(milliseconds(600), milliseconds(100)), limit);
  EXPECT_EQ(limit, 7);
}

TEST(GradientLimitTest, ClampsToMaxLimit) {
  auto g = Make({.max_limit = 12});
  int limit = Measure(*g, milliseconds(0), milliseconds(10));
  for (int i = 0; i < 10; ++i) {
    limit =
        g->Update(Window(milliseconds(300 + 100 * i), milliseconds(1)), limit);
  }
  EXPECT_EQ(limit, 12);
}

TEST(GradientLimitTest, RemeasuresAfterTheIntervalAndRestoresTheLimit) {
  auto g = Make({.min_rtt_interval = absl::Seconds(60)});
  int limit = Measure(*g, milliseconds(0), milliseconds(10));
  limit = g->Update(Window(milliseconds(300), milliseconds(5)), limit);
  EXPECT_EQ(limit, 8);  // 3 * 2 = 6 + 2.45.
  // Measurement ended at 200 ms: the next starts at 60.2 s.
  limit = g->Update(Window(milliseconds(60199), milliseconds(12)), limit);
  EXPECT_FALSE(g->measuring());
  const int before = limit;
  limit = g->Update(Window(milliseconds(60200), milliseconds(12)), limit);
  EXPECT_TRUE(g->measuring());
  EXPECT_EQ(limit, 3);
  EXPECT_EQ(g->discard_before(), kT0 + milliseconds(60200));
  limit = g->Update(Window(milliseconds(60300), milliseconds(20), 50), limit);
  EXPECT_FALSE(g->measuring());
  EXPECT_EQ(g->min_rtt(), milliseconds(20));
  EXPECT_EQ(limit, before);
}

TEST(GradientLimitTest, FiveWindowsAtTheFloorTriggerAMeasurement) {
  auto g = Make();
  int limit = Measure(*g, milliseconds(0), milliseconds(10));
  ASSERT_EQ(limit, 3);
  // RTT far above minRTT keeps the limit at the floor: 1.5 + 1.22 -> 3.
  for (int i = 0; i < 4; ++i) {
    limit = g->Update(Window(milliseconds(300 + 100 * i), milliseconds(100)),
                      limit);
    EXPECT_EQ(limit, 3);
    EXPECT_FALSE(g->measuring()) << i;
  }
  limit = g->Update(Window(milliseconds(700), milliseconds(100)), limit);
  EXPECT_TRUE(g->measuring());
}

TEST(GradientLimitTest, JitterDelaysTheNextMeasurementWithinItsRange) {
  GradientLimitOptions o;
  o.jitter = 0.5;
  o.seed = 42;
  o.min_rtt_interval = absl::Seconds(10);
  auto g = std::move(*GradientLimit::Create(o));
  int limit = g->Update(Window(milliseconds(0), milliseconds(10)), 3);
  limit = g->Update(Window(milliseconds(100), milliseconds(10), 50), limit);
  ASSERT_FALSE(g->measuring());
  // Next measurement in [10.1 s, 15.1 s): not before, surely by then.
  limit = g->Update(Window(milliseconds(10099), milliseconds(10)), limit);
  EXPECT_FALSE(g->measuring());
  limit = g->Update(Window(milliseconds(15100), milliseconds(10)), limit);
  EXPECT_TRUE(g->measuring());
}

TEST(GradientLimitTest, InvalidOptionsNameTheField) {
  struct Case {
    GradientLimitOptions options;
    const char* text;
  } cases[] = {
      {{.min_concurrency = 0}, "min_concurrency must be >= 1; got 0"},
      {{.max_limit = 2}, "max_limit must be in"},
      {{.max_limit = kMaxConcurrencyLimit + 1}, "max_limit must be in"},
      {{.request_count = 0}, "request_count must be >= 1; got 0"},
      {{.buffer = -0.1}, "buffer must be finite and >= 0; got -0.1"},
      {{.min_rtt_interval = absl::ZeroDuration()}, "min_rtt_interval"},
      {{.jitter = 1.5}, "jitter must be in [0, 1]; got 1.5"},
  };
  for (const Case& c : cases) {
    absl::Status s = ValidateGradientLimitOptions(c.options);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.text));
    EXPECT_FALSE(GradientLimit::Create(c.options).ok());
  }
  EXPECT_TRUE(ValidateGradientLimitOptions({}).ok());
}

}  // namespace
}  // namespace spillway
