// Tests of VegasLimit: every expectation of Netflix's VegasLimitTest.java
// on the same inputs, then each branch of the step, the probe, clamping,
// drops, the fix for the no-load RTT drift (Netflix issue #165), and the
// validation of every option.
//
// Netflix's onSample(startTime, rtt, inflight, didDrop) is fed as a window
// of one sample: {.rtt = rtt, .min_rtt = rtt, .max_in_flight = inflight,
// .samples = 1, .dropped = didDrop, .end = start + rtt}.

#include "spillway/vegas_limit.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spillway/limit.h"
#include "spillway/limit_algorithm.h"
#include "tests/common/invalid_options.h"

namespace spillway {
namespace {

using ::std::chrono::milliseconds;
using ::std::chrono::nanoseconds;
using ::std::chrono::seconds;
using ::testing::HasSubstr;

// Netflix's onSample(0, rtt, inflight, didDrop) as a window of one sample.
WindowSample OnSample(nanoseconds rtt, int in_flight, bool dropped = false) {
  WindowSample window;
  window.rtt = rtt;
  window.min_rtt = rtt;
  window.max_in_flight = in_flight;
  window.samples = 1;
  window.dropped = dropped ? 1 : 0;
  window.end = MonotonicTime{} + rtt;
  return window;
}

// A jitter source that always returns `value` (Netflix draws it from
// ThreadLocalRandom in [0.5, 1)).
std::function<double()> ConstantJitter(double value) {
  return [value] { return value; };
}

// Netflix's VegasLimitTest.create(): alpha 3, beta 6, smoothing 1.0,
// initial limit 10, max concurrency 20. The jitter is fixed so that no test
// depends on a random probe (at limit 10 the first probe is at window 150).
VegasLimitOptions NetflixTestOptions() {
  VegasLimitOptions options;
  options.alpha = [](int) { return 3; };
  options.beta = [](int) { return 6; };
  options.smoothing = 1.0;
  options.initial_limit = 10;
  options.max_limit = 20;
  options.probe_jitter = ConstantJitter(0.5);
  return options;
}

std::unique_ptr<VegasLimit> Make(const VegasLimitOptions& options) {
  return test::ValueOrFail(VegasLimit::Create(options));
}

// Feeds `window` with the limit last returned, as WindowedLimit does.
class Driver {
 public:
  explicit Driver(std::unique_ptr<VegasLimit> vegas)
      : vegas_(std::move(vegas)),
        limit_(vegas_ == nullptr ? 0 : vegas_->initial_limit()) {}

  bool ok() const { return vegas_ != nullptr; }
  int Sample(const WindowSample& window) {
    limit_ = vegas_->Update(window, limit_);
    return limit_;
  }
  int limit() const { return limit_; }
  VegasLimit& vegas() { return *vegas_; }

 private:
  std::unique_ptr<VegasLimit> vegas_;
  int limit_;
};

// --- Netflix's VegasLimitTest.java -----------------------------------------

// VegasLimitTest.initialLimit.
TEST(VegasLimitNetflixTest, InitialLimit) {
  Driver d(Make(NetflixTestOptions()));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.limit(), 10);
  EXPECT_EQ(d.vegas().initial_limit(), 10);
}

// VegasLimitTest.largeLimitIncrease: default functions, initial 10000, max
// 20000; Log10Root(10000) = 4, so beta = 24.
TEST(VegasLimitNetflixTest, LargeLimitIncrease) {
  VegasLimitOptions options;
  options.initial_limit = 10000;
  options.max_limit = 20000;
  options.probe_jitter = ConstantJitter(0.5);
  Driver d(Make(options));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.Sample(OnSample(seconds(10), 5000)), 10000);
  EXPECT_EQ(d.Sample(OnSample(seconds(10), 6000)), 10024);
}

// VegasLimitTest.increaseLimit.
TEST(VegasLimitNetflixTest, IncreaseLimit) {
  Driver d(Make(NetflixTestOptions()));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 10)), 10);
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 11)), 16);
}

// VegasLimitTest.decreaseLimit.
TEST(VegasLimitNetflixTest, DecreaseLimit) {
  Driver d(Make(NetflixTestOptions()));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 10)), 10);
  EXPECT_EQ(d.Sample(OnSample(milliseconds(50), 11)), 9);
}

// VegasLimitTest.noChangeIfWithinThresholds.
TEST(VegasLimitNetflixTest, NoChangeIfWithinThresholds) {
  Driver d(Make(NetflixTestOptions()));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 10)), 10);
  EXPECT_EQ(d.Sample(OnSample(milliseconds(14), 14)), 10);
}

// VegasLimitTest.decreaseSmoothing: decrease = x / 2, smoothing 0.5,
// initial 100, max 200. 100 -> 0.5 * 100 + 0.5 * 50 = 75 -> 56.25.
TEST(VegasLimitNetflixTest, DecreaseSmoothing) {
  VegasLimitOptions options;
  options.decrease = [](double current) { return current / 2; };
  options.smoothing = 0.5;
  options.initial_limit = 100;
  options.max_limit = 200;
  options.probe_jitter = ConstantJitter(0.5);
  Driver d(Make(options));
  ASSERT_TRUE(d.ok());
  // Pick up first min-rtt.
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 100)), 100);
  // First decrease.
  EXPECT_EQ(d.Sample(OnSample(milliseconds(20), 100)), 75);
  // Second decrease.
  EXPECT_EQ(d.Sample(OnSample(milliseconds(20), 100)), 56);
  EXPECT_DOUBLE_EQ(d.vegas().estimated_limit(), 56.25);
}

// VegasLimitTest.decreaseWithoutSmoothing.
TEST(VegasLimitNetflixTest, DecreaseWithoutSmoothing) {
  VegasLimitOptions options;
  options.decrease = [](double current) { return current / 2; };
  options.initial_limit = 100;
  options.max_limit = 200;
  options.probe_jitter = ConstantJitter(0.5);
  Driver d(Make(options));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 100)), 100);
  EXPECT_EQ(d.Sample(OnSample(milliseconds(20), 100)), 50);
  EXPECT_EQ(d.Sample(OnSample(milliseconds(20), 100)), 25);
}

// Log10RootIntFunctionTest (0 -> 1, 100 -> 2, 10000 -> 4), and both sides of
// every step.
TEST(VegasLog10RootTest, MatchesNetflixLog10RootIntFunction) {
  EXPECT_EQ(VegasLog10Root(0), 1);
  EXPECT_EQ(VegasLog10Root(1), 1);
  EXPECT_EQ(VegasLog10Root(99), 1);
  EXPECT_EQ(VegasLog10Root(100), 2);
  EXPECT_EQ(VegasLog10Root(999), 2);
  EXPECT_EQ(VegasLog10Root(1000), 3);
  EXPECT_EQ(VegasLog10Root(9999), 3);
  EXPECT_EQ(VegasLog10Root(10000), 4);
  EXPECT_EQ(VegasLog10Root(kMaxConcurrencyLimit), 6);
}

// --- Defaults ---------------------------------------------------------------

TEST(VegasLimitTest, DefaultsAreNetflixDefaultsAndValidate) {
  const VegasLimitOptions options;
  EXPECT_EQ(options.initial_limit, 20);
  EXPECT_EQ(options.min_limit, 1);
  EXPECT_EQ(options.max_limit, 1000);
  EXPECT_EQ(options.smoothing, 1.0);
  EXPECT_EQ(options.probe_multiplier, 30);
  EXPECT_FALSE(options.probe_jitter);
  EXPECT_FALSE(options.alpha);
  EXPECT_FALSE(options.beta);
  EXPECT_FALSE(options.threshold);
  EXPECT_FALSE(options.increase);
  EXPECT_FALSE(options.decrease);
  EXPECT_EQ(options.rtt_noload_probe_windows, 0);
  EXPECT_TRUE(ValidateVegasLimitOptions(options).ok());

  Driver d(Make(options));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.vegas().initial_limit(), 20);
  EXPECT_EQ(d.vegas().min_limit(), 1);
  EXPECT_EQ(d.vegas().max_limit(), 1000);
  EXPECT_EQ(d.vegas().rtt_noload(), nanoseconds(0));
}

// The default functions at limit 20: Log10Root = 1, so alpha 3, beta 6,
// threshold 1, increase +1, decrease -1.
TEST(VegasLimitTest, DefaultFunctionsAtLimit20) {
  VegasLimitOptions options;
  options.probe_jitter = ConstantJitter(0.5);
  auto run = [&](nanoseconds rtt) {
    Driver d(Make(options));
    d.Sample(OnSample(milliseconds(100), 20));
    return d.Sample(OnSample(rtt, 20));
  };
  // queue = ceil(20 * (1 - 100 / rtt)).
  EXPECT_EQ(run(milliseconds(100)), 26);  // queue 0 <= threshold 1: +beta
  EXPECT_EQ(run(milliseconds(105)), 26);  // queue 1 <= threshold 1: +beta
  EXPECT_EQ(run(milliseconds(110)), 21);  // queue 2 < alpha 3: increase
  EXPECT_EQ(run(milliseconds(115)), 20);  // queue 3 = alpha: keep
  EXPECT_EQ(run(milliseconds(140)), 20);  // queue 6 = beta: keep
  EXPECT_EQ(run(milliseconds(150)), 19);  // queue 7 > beta: decrease
}

// --- The step ---------------------------------------------------------------

TEST(VegasLimitTest, FirstWindowAndEveryNewMinimumOnlySetTheBaseline) {
  Driver d(Make(NetflixTestOptions()));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.Sample(OnSample(milliseconds(50), 10)), 10);
  EXPECT_EQ(d.vegas().rtt_noload(), milliseconds(50));
  // Faster: a new baseline, and no step even though queue would be 0.
  EXPECT_EQ(d.Sample(OnSample(milliseconds(20), 10)), 10);
  EXPECT_EQ(d.vegas().rtt_noload(), milliseconds(20));
  // Equal: a step (queue 0 -> +beta).
  EXPECT_EQ(d.Sample(OnSample(milliseconds(20), 10)), 16);
}

TEST(VegasLimitTest, ModerateQueueIncreasesByTheIncreaseFunction) {
  Driver d(Make(NetflixTestOptions()));
  ASSERT_TRUE(d.ok());
  d.Sample(OnSample(milliseconds(10), 10));
  // queue = ceil(10 * (1 - 10 / 12)) = 2: above threshold 1, below alpha 3.
  EXPECT_EQ(d.Sample(OnSample(milliseconds(12), 10)), 11);
  EXPECT_DOUBLE_EQ(d.vegas().estimated_limit(), 11.0);
}

TEST(VegasLimitTest, AppLimitedWindowKeepsTheLimit) {
  Driver d(Make(NetflixTestOptions()));
  ASSERT_TRUE(d.ok());
  d.Sample(OnSample(milliseconds(10), 10));
  // 4 * 2 < 10: the application does not use the limit.
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 4)), 10);
  // 5 * 2 = 10 is not below the limit: the step applies.
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 5)), 16);
}

TEST(VegasLimitTest, DropDecreasesEvenWhenAppLimitedAndFast) {
  Driver d(Make(NetflixTestOptions()));
  ASSERT_TRUE(d.ok());
  d.Sample(OnSample(milliseconds(10), 10));
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 1, /*dropped=*/true)), 9);
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 9, /*dropped=*/true)), 8);
  // A window of many writes with one drop is a drop.
  WindowSample window = OnSample(milliseconds(10), 8);
  window.samples = 100;
  window.dropped = 1;
  EXPECT_EQ(d.Sample(window), 7);
}

TEST(VegasLimitTest, DropOnTheBaselineWindowDoesNotDecrease) {
  // As in Netflix: the new-minimum branch returns before the drop check.
  Driver d(Make(NetflixTestOptions()));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 10, /*dropped=*/true)), 10);
}

TEST(VegasLimitTest, ClampsToMaxLimit) {
  Driver d(Make(NetflixTestOptions()));  // max 20
  ASSERT_TRUE(d.ok());
  d.Sample(OnSample(milliseconds(10), 10));
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 10)), 16);
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 16)), 20);  // 22 -> 20
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 20)), 20);
  EXPECT_DOUBLE_EQ(d.vegas().estimated_limit(), 20.0);
}

TEST(VegasLimitTest, ClampsToMinLimit) {
  VegasLimitOptions options = NetflixTestOptions();
  options.min_limit = 8;
  Driver d(Make(options));
  ASSERT_TRUE(d.ok());
  d.Sample(OnSample(milliseconds(10), 10));
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 10, true)), 9);
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 10, true)), 8);
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 10, true)), 8);
  EXPECT_DOUBLE_EQ(d.vegas().estimated_limit(), 8.0);
}

TEST(VegasLimitTest, NetflixFloorIsOne) {
  VegasLimitOptions options = NetflixTestOptions();
  options.initial_limit = 2;
  options.decrease = [](double current) { return current - 5; };
  Driver d(Make(options));
  ASSERT_TRUE(d.ok());
  d.Sample(OnSample(milliseconds(10), 2));
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 2, true)), 1);
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 2, true)), 1);
}

TEST(VegasLimitTest, FunctionsReceiveTheFlooredLimit) {
  VegasLimitOptions options;
  options.smoothing = 0.5;
  options.initial_limit = 100;
  options.max_limit = 200;
  options.probe_jitter = ConstantJitter(0.5);
  std::vector<int> seen;
  options.threshold = [&seen](int limit) {
    seen.push_back(limit);
    return 1000;  // always "no queue"
  };
  options.beta = [](int) { return 5; };
  Driver d(Make(options));
  ASSERT_TRUE(d.ok());
  d.Sample(OnSample(milliseconds(10), 100));
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 100)), 102);  // 102.5
  EXPECT_EQ(d.Sample(OnSample(milliseconds(10), 102)), 105);  // 105
  EXPECT_THAT(seen, ::testing::ElementsAre(100, 102));
}

TEST(VegasLimitTest, NonPositiveRttIsIgnoredAndNotCounted) {
  VegasLimitOptions options = NetflixTestOptions();
  options.probe_multiplier = 1;  // at limit 10, probe at window 0.5*1*10 = 5
  Driver d(Make(options));
  ASSERT_TRUE(d.ok());
  d.Sample(OnSample(milliseconds(10), 10));  // count 1
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(d.Sample(OnSample(nanoseconds(0), 10)), 10);
    EXPECT_EQ(d.Sample(OnSample(nanoseconds(-5), 10)), 10);
  }
  EXPECT_EQ(d.vegas().rtt_noload(), milliseconds(10));
  // Counts 2, 3, 4: queue 3, the sweet spot.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(d.Sample(OnSample(milliseconds(14), 10)), 10);
  }
  EXPECT_EQ(d.vegas().rtt_noload(), milliseconds(10));
  // Count 5: the probe, which takes this window's rtt as the baseline.
  EXPECT_EQ(d.Sample(OnSample(milliseconds(20), 10)), 10);
  EXPECT_EQ(d.vegas().rtt_noload(), milliseconds(20));
}

// --- The probe --------------------------------------------------------------

TEST(VegasLimitTest,
     ProbeResetsTheBaselineAfterJitterTimesMultiplierTimesLimit) {
  VegasLimitOptions options = NetflixTestOptions();
  int draws = 0;
  options.probe_jitter = [&draws] {
    ++draws;
    return 0.5;
  };
  Driver d(Make(options));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(draws, 1);                       // at construction
  d.Sample(OnSample(milliseconds(10), 10));  // window 1: the baseline
  // Windows 2..149 in the sweet spot; 0.5 * 30 * 10 = 150.
  for (int window = 2; window < 150; ++window) {
    ASSERT_EQ(d.Sample(OnSample(milliseconds(14), 14)), 10) << window;
  }
  EXPECT_EQ(d.vegas().rtt_noload(), milliseconds(10));
  EXPECT_EQ(draws, 1);
  // Window 150 probes: the baseline becomes its (higher) rtt, limit kept.
  EXPECT_EQ(d.Sample(OnSample(milliseconds(14), 14)), 10);
  EXPECT_EQ(d.vegas().rtt_noload(), milliseconds(14));
  EXPECT_EQ(draws, 2);
  // Against the new baseline there is no queue: +beta.
  EXPECT_EQ(d.Sample(OnSample(milliseconds(14), 14)), 16);
}

TEST(VegasLimitTest, JitterIsClampedToHalfAndOne) {
  for (const auto& [jitter, probe_window] : std::vector<std::pair<double, int>>{
           {0.1, 150},
           {0.5, 150},
           {1.0, 300},
           {7.0, 300},
           {std::numeric_limits<double>::quiet_NaN(), 300}}) {
    VegasLimitOptions options = NetflixTestOptions();
    options.probe_jitter = ConstantJitter(jitter);
    Driver d(Make(options));
    ASSERT_TRUE(d.ok());
    d.Sample(OnSample(milliseconds(10), 10));
    for (int window = 2; window < probe_window; ++window) {
      d.Sample(OnSample(milliseconds(14), 14));
    }
    EXPECT_EQ(d.vegas().rtt_noload(), milliseconds(10)) << jitter;
    d.Sample(OnSample(milliseconds(14), 14));
    EXPECT_EQ(d.vegas().rtt_noload(), milliseconds(14)) << jitter;
  }
}

TEST(VegasLimitTest, DefaultJitterProbesBetweenHalfAndFullInterval) {
  // Defaults: limit 20, multiplier 30: the probe is at a window in
  // [0.5 * 600, 600]. In the sweet spot (queue 6 = beta) nothing else moves.
  Driver d(Make(VegasLimitOptions()));
  ASSERT_TRUE(d.ok());
  d.Sample(OnSample(milliseconds(10), 20));
  int probe_window = 0;
  for (int window = 2; window <= 700 && probe_window == 0; ++window) {
    ASSERT_EQ(d.Sample(OnSample(milliseconds(14), 20)), 20);
    if (d.vegas().rtt_noload() == milliseconds(14)) probe_window = window;
  }
  EXPECT_GE(probe_window, 300);
  EXPECT_LE(probe_window, 600);
}

// --- Fix: re-measure the no-load RTT at a probe (Netflix issue #165) -------

// A database that serves 20 writes at once in 10 ms; above that, writes
// queue and the window's average RTT grows in proportion to the limit,
// while the fastest write of each window still takes 10 ms. The client
// always uses the whole limit. Each probe (multiplier 1, jitter 0.5: every
// limit / 2 windows) lands on a loaded window.
struct LoadRun {
  std::vector<int> limits;
  nanoseconds rtt_noload;
  double estimated_limit;
};

LoadRun RunUnderLoad(int rtt_noload_probe_windows, int windows) {
  VegasLimitOptions options;
  options.probe_multiplier = 1;
  options.probe_jitter = ConstantJitter(0.5);
  options.rtt_noload_probe_windows = rtt_noload_probe_windows;
  Driver d(Make(options));
  LoadRun run;
  if (!d.ok()) return run;
  for (int i = 0; i < windows; ++i) {
    const int64_t limit = d.limit();
    WindowSample window;
    window.rtt = std::max(nanoseconds(milliseconds(10)),
                          nanoseconds(milliseconds(10)) * limit / 20);
    window.min_rtt = milliseconds(10);
    window.max_in_flight = d.limit();
    window.samples = d.limit();
    window.end = MonotonicTime{} + seconds(i + 1);
    run.limits.push_back(d.Sample(window));
  }
  run.rtt_noload = d.vegas().rtt_noload();
  run.estimated_limit = d.vegas().estimated_limit();
  return run;
}

TEST(VegasLimitTest, ProbeRemeasuresBaselineFromRecentWindowMinimums) {
  // Off (Netflix): every probe takes the loaded average as the baseline,
  // sees no queue, adds beta; the baseline and the limit ratchet up
  // together: 10 -> 41 ms and 20 -> 87 in 300 windows, and still rising.
  const LoadRun off = RunUnderLoad(0, 300);
  ASSERT_EQ(off.limits.size(), 300u);
  EXPECT_EQ(off.limits[0], 20);
  EXPECT_EQ(off.limits[1], 26);
  EXPECT_EQ(off.limits[12], 26);
  EXPECT_EQ(off.limits[13], 32);  // the first probe's ratchet
  EXPECT_EQ(off.limits[99], 53);
  EXPECT_EQ(off.limits[199], 71);
  EXPECT_EQ(off.limits[299], 87);
  EXPECT_EQ(off.rtt_noload, milliseconds(41));
  EXPECT_DOUBLE_EQ(off.estimated_limit, 87.0);

  // On: a probe re-measures the baseline as the smallest window minimum of
  // the last 10 windows (10 ms); the limit settles at 26 and stays.
  const LoadRun on = RunUnderLoad(10, 300);
  ASSERT_EQ(on.limits.size(), 300u);
  EXPECT_EQ(on.limits[0], 20);
  for (size_t i = 1; i < on.limits.size(); ++i) {
    ASSERT_EQ(on.limits[i], 26) << "window " << i;
  }
  EXPECT_EQ(on.rtt_noload, milliseconds(10));
}

TEST(VegasLimitTest, ProbeBaselineIsTheMinimumOfTheLastNWindowsOnly) {
  VegasLimitOptions options = NetflixTestOptions();
  options.probe_multiplier = 1;  // probe at window 5 (limit 10, jitter 0.5)
  options.rtt_noload_probe_windows = 3;
  Driver d(Make(options));
  ASSERT_TRUE(d.ok());
  auto window = [](int rtt_ms, int min_rtt_ms) {
    WindowSample w = OnSample(milliseconds(rtt_ms), 10);
    w.min_rtt = milliseconds(min_rtt_ms);
    return w;
  };
  d.Sample(window(10, 2));   // 1: baseline 10 ms (rtt, as Netflix)
  d.Sample(window(14, 12));  // 2: sweet spot
  d.Sample(window(14, 13));  // 3
  d.Sample(window(14, 11));  // 4
  EXPECT_EQ(d.vegas().rtt_noload(), milliseconds(10));
  // 5: probe; the last three minimums are 13, 11 and this window's 12; the
  // 2 ms of window 1 is out of the ring.
  EXPECT_EQ(d.Sample(window(14, 12)), 10);
  EXPECT_EQ(d.vegas().rtt_noload(), milliseconds(11));
}

TEST(VegasLimitTest, WindowWithoutMinRttCountsItsRtt) {
  VegasLimitOptions options = NetflixTestOptions();
  options.probe_multiplier = 1;
  options.rtt_noload_probe_windows = 1;
  Driver d(Make(options));
  ASSERT_TRUE(d.ok());
  d.Sample(OnSample(milliseconds(10), 10));  // baseline
  for (int i = 0; i < 3; ++i) d.Sample(OnSample(milliseconds(14), 10));
  WindowSample probe = OnSample(milliseconds(14), 10);
  probe.min_rtt = nanoseconds(0);
  d.Sample(probe);
  EXPECT_EQ(d.vegas().rtt_noload(), milliseconds(14));
}

// --- Validation -------------------------------------------------------------

using InvalidCase = test::InvalidOptionsCase<VegasLimitOptions>;

class VegasLimitInvalidOptionsTest
    : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(VegasLimitInvalidOptionsTest, IsRefusedNamingFieldAndValue) {
  VegasLimitOptions options;
  GetParam().mutate(options);
  test::ExpectInvalidArgument(ValidateVegasLimitOptions(options),
                              "VegasLimitOptions." + GetParam().field,
                              GetParam().value);
  EXPECT_EQ(VegasLimit::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(
    Fields, VegasLimitInvalidOptionsTest,
    ::testing::Values(
        InvalidCase{"MinLimitZero", [](auto& o) { o.min_limit = 0; },
                    "min_limit", "0"},
        InvalidCase{"MaxBelowMin",
                    [](auto& o) {
                      o.min_limit = 10;
                      o.initial_limit = 10;
                      o.max_limit = 9;
                    },
                    "max_limit", "9"},
        InvalidCase{"MaxAboveCap",
                    [](auto& o) { o.max_limit = kMaxConcurrencyLimit + 1; },
                    "max_limit", "2097152"},
        InvalidCase{"InitialBelowMin",
                    [](auto& o) {
                      o.min_limit = 5;
                      o.initial_limit = 4;
                    },
                    "initial_limit", "4"},
        InvalidCase{"InitialAboveMax", [](auto& o) { o.initial_limit = 1001; },
                    "initial_limit", "1001"},
        InvalidCase{"SmoothingZero", [](auto& o) { o.smoothing = 0.0; },
                    "smoothing", "0"},
        InvalidCase{"SmoothingAboveOne", [](auto& o) { o.smoothing = 1.5; },
                    "smoothing", "1.5"},
        InvalidCase{"SmoothingNaN",
                    [](auto& o) {
                      o.smoothing = std::numeric_limits<double>::quiet_NaN();
                    },
                    "smoothing", "nan"},
        InvalidCase{"ProbeMultiplierZero",
                    [](auto& o) { o.probe_multiplier = 0; }, "probe_multiplier",
                    "0"},
        InvalidCase{"ProbeWindowsNegative",
                    [](auto& o) { o.rtt_noload_probe_windows = -1; },
                    "rtt_noload_probe_windows", "-1"},
        InvalidCase{"ProbeWindowsAboveCap",
                    [](auto& o) {
                      o.rtt_noload_probe_windows = kMaxVegasProbeWindows + 1;
                    },
                    "rtt_noload_probe_windows", "4097"}),
    test::CaseName<VegasLimitOptions>);

TEST(VegasLimitOptionsTest, BoundaryValuesAreAccepted) {
  VegasLimitOptions options;
  options.min_limit = 1;
  options.initial_limit = 1;
  options.max_limit = 1;
  options.smoothing = 1.0;
  options.probe_multiplier = 1;
  options.rtt_noload_probe_windows = kMaxVegasProbeWindows;
  EXPECT_TRUE(ValidateVegasLimitOptions(options).ok());
  options.max_limit = kMaxConcurrencyLimit;
  options.initial_limit = kMaxConcurrencyLimit;
  options.smoothing = 1e-9;
  EXPECT_TRUE(ValidateVegasLimitOptions(options).ok());
}

}  // namespace
}  // namespace spillway
