// Properties every limit algorithm must have, in the configuration spillway
// would run it (drop handling on where the source ignores drops): the limit
// stays within [min, max]; it never grows while the application uses less
// than half of it; it falls on drops.
#include <memory>
#include <random>

#include "gtest/gtest.h"
#include "spillway/aimd_limit.h"
#include "spillway/gradient2_limit.h"
#include "spillway/gradient_limit.h"
#include "spillway/knee_limit.h"
#include "spillway/limit_algorithm.h"
#include "spillway/vegas_limit.h"

namespace spillway {
namespace {

using std::chrono::milliseconds;

// AimdLimit is a per-sample Limit; this adapter feeds it one sample per
// window so the same properties can be checked.
class AimdAlgorithm final : public LimitAlgorithm {
 public:
  AimdAlgorithm()
      : aimd_(std::move(*AimdLimit::Create(
            {.initial_limit = 20, .min_limit = 1, .max_limit = 200}))) {}
  int initial_limit() const override { return 20; }
  int min_limit() const override { return 1; }
  int max_limit() const override { return 200; }
  int Update(const WindowSample& w, int) override {
    aimd_->OnSample(LimitSample{w.rtt, w.max_in_flight, w.any_dropped(),
                                w.end - w.rtt, w.end});
    return aimd_->current();
  }

 private:
  std::unique_ptr<AimdLimit> aimd_;
};

struct Knee {
  static std::unique_ptr<LimitAlgorithm> Make() {
    return std::move(*KneeLimit::Create({}));
  }
};
struct EnvoyGradient {
  static std::unique_ptr<LimitAlgorithm> Make() {
    return std::move(*GradientLimit::Create({.request_count = 10,
                                             .hold_when_unused = true,
                                             .drop_backoff = 0.9,
                                             .seed = 3}));
  }
};
struct Vegas {
  static std::unique_ptr<LimitAlgorithm> Make() {
    return std::move(*VegasLimit::Create(
        {.probe_jitter = [] { return 0.75; }, .rtt_noload_probe_windows = 10}));
  }
};
struct Gradient2 {
  static std::unique_ptr<LimitAlgorithm> Make() {
    return std::move(*Gradient2Limit::Create(
        {.min_limit = 1,
         .decrease_on_drop = true,
         .add_queue_size_only_when_gradient_is_one = true}));
  }
};
struct Aimd {
  static std::unique_ptr<LimitAlgorithm> Make() {
    return std::make_unique<AimdAlgorithm>();
  }
};

constexpr MonotonicTime kT0 = MonotonicTime() + std::chrono::hours(1);

WindowSample Window(int i, milliseconds rtt, int in_flight, int dropped) {
  WindowSample w;
  w.rtt = rtt;
  w.min_rtt = rtt;
  w.max_in_flight = in_flight;
  w.samples = 20;
  w.dropped = dropped;
  w.end = kT0 + milliseconds(100) * i;
  return w;
}

// Warms an algorithm up: a few windows at a flat 5 ms, fully used, so it
// has a baseline and (for Envoy's) a finished minRTT measurement.
int WarmUp(LimitAlgorithm& a, int* i) {
  int limit = a.initial_limit();
  for (int k = 0; k < 6; ++k) {
    limit = a.Update(Window((*i)++, milliseconds(5), limit, 0), limit);
  }
  return limit;
}

template <typename T>
class LimitPropertiesTest : public ::testing::Test {};
using Algorithms =
    ::testing::Types<Knee, EnvoyGradient, Vegas, Gradient2, Aimd>;
TYPED_TEST_SUITE(LimitPropertiesTest, Algorithms);

TYPED_TEST(LimitPropertiesTest, StaysWithinItsBounds) {
  std::unique_ptr<LimitAlgorithm> a = TypeParam::Make();
  std::mt19937_64 random(12345);
  int limit = a->initial_limit();
  for (int i = 0; i < 5000; ++i) {
    const milliseconds rtt(1 + random() % 500);
    const int in_flight = static_cast<int>(random() % (2 * limit + 2));
    const int dropped = random() % 5 == 0 ? 1 : 0;
    limit = a->Update(Window(i, rtt, in_flight, dropped), limit);
    ASSERT_GE(limit, a->min_limit()) << i;
    ASSERT_LE(limit, a->max_limit()) << i;
  }
}

TYPED_TEST(LimitPropertiesTest, NeverGrowsWhileLessThanHalfIsUsed) {
  std::unique_ptr<LimitAlgorithm> a = TypeParam::Make();
  int i = 0;
  int limit = WarmUp(*a, &i);
  for (int k = 0; k < 200; ++k) {
    const int used = (limit - 1) / 2;  // used * 2 < limit
    const int next = a->Update(Window(i++, milliseconds(5), used, 0), limit);
    ASSERT_LE(next, limit) << k;
    limit = next;
  }
}

TYPED_TEST(LimitPropertiesTest, FallsOnDrops) {
  std::unique_ptr<LimitAlgorithm> a = TypeParam::Make();
  int i = 0;
  int limit = WarmUp(*a, &i);
  ASSERT_GT(limit, a->min_limit());
  for (int k = 0; k < 5 && limit > a->min_limit(); ++k) {
    const int next = a->Update(Window(i++, milliseconds(5), limit, 3), limit);
    EXPECT_LT(next, limit) << k;
    limit = next;
  }
}

}  // namespace
}  // namespace spillway
