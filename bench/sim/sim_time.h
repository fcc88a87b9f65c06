// SimTime and Schedule: time in the overload simulator.
//
// Simulated time is a `SimTime`, a std::chrono duration of double seconds
// since the run started: the processor-sharing database computes completion
// times by division, so time must be continuous, and the chrono type keeps
// the unit in the type. Where spillway's own code needs a clock, the
// simulation moves one `spillway::testing::SimulatedClock` to the event's
// time (rounded to the nanosecond) before handling it.
//
// A `Schedule<T>` is a piecewise-constant function of time — the offered
// load, the balancer's weights, the database's capacity — given as steps:
//
//   spillway::sim::Schedule<double> load({{SimTime(0), 0.7},
//                                         {SimTime(10), 3.0},
//                                         {SimTime(70), 0.7}});
//   load.At(SimTime(12));              // 3.0
//   load.NextChangeAfter(SimTime(12)); // SimTime(70)
//
// Thread safety: value types; const methods are thread-safe.

#ifndef SPILLWAY_BENCH_SIM_SIM_TIME_H_
#define SPILLWAY_BENCH_SIM_SIM_TIME_H_

#include <algorithm>
#include <chrono>
#include <limits>
#include <utility>
#include <vector>

namespace spillway::sim {

// Seconds since the start of a simulation run.
using SimTime = std::chrono::duration<double>;

// A time later than every event: "never".
inline constexpr SimTime kNever{std::numeric_limits<double>::infinity()};

// A piecewise-constant function of time: value(t) = steps[i].second for
// steps[i].first <= t < steps[i + 1].first. Before the first step the first
// value holds.
template <typename T>
class Schedule {
 public:
  using Step = std::pair<SimTime, T>;

  Schedule() = default;
  // REQUIRES: steps not empty, sorted by time.
  explicit Schedule(std::vector<Step> steps) : steps_(std::move(steps)) {}

  // The value at `t`. Thread-safe (const).
  const T& At(SimTime t) const { return steps_[IndexAt(t)].second; }

  // The index of the step in force at `t`. Thread-safe (const).
  int IndexAt(SimTime t) const {
    auto it = std::upper_bound(
        steps_.begin(), steps_.end(), t,
        [](SimTime time, const Step& step) { return time < step.first; });
    return it == steps_.begin() ? 0 : static_cast<int>(it - steps_.begin()) - 1;
  }

  // The first step time strictly after `t`, or kNever. Thread-safe (const).
  SimTime NextChangeAfter(SimTime t) const {
    auto it = std::upper_bound(
        steps_.begin(), steps_.end(), t,
        [](SimTime time, const Step& step) { return time < step.first; });
    return it == steps_.end() ? kNever : it->first;
  }

  const std::vector<Step>& steps() const { return steps_; }

 private:
  std::vector<Step> steps_;
};

}  // namespace spillway::sim

#endif  // SPILLWAY_BENCH_SIM_SIM_TIME_H_
