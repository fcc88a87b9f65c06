// Rng: the overload simulator's one source of randomness.
//
// Every random choice of one simulation run — arrival gaps, the balancer's
// pick, a write's work, a client's backoff — is drawn from one
// std::mt19937_64 seeded from `--seed`, in the order the events happen, so
// two runs with one seed are identical event for event.
//
//   spillway::sim::Rng rng(/*seed=*/1);
//   double gap_s = rng.Exponential(/*mean=*/0.001);  // Poisson arrivals
//   double jitter = rng.Uniform() * cap_s;           // full-jitter backoff
//
// The distributions are written out here instead of taken from <random>:
// std::exponential_distribution and friends are implementation-defined, so
// libstdc++ and libc++ would draw different numbers from one engine. The
// engine itself (mt19937_64) is specified exactly by the standard.
//
// Thread safety: not thread-safe; one Rng belongs to one simulation, which
// runs on one thread.

#ifndef SPILLWAY_BENCH_SIM_RANDOM_H_
#define SPILLWAY_BENCH_SIM_RANDOM_H_

#include <cmath>
#include <cstdint>
#include <random>

namespace spillway::sim {

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}

  // Uniform in [0, 1): the top 53 bits of one draw, so every double the
  // interval can hold at that spacing is equally likely. Not thread-safe.
  double Uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

  // Exponential with mean `mean` (inverse transform: -mean * ln(1 - U)).
  // REQUIRES: mean > 0. Not thread-safe.
  double Exponential(double mean) { return -mean * std::log1p(-Uniform()); }

 private:
  std::mt19937_64 engine_;
};

}  // namespace spillway::sim

#endif  // SPILLWAY_BENCH_SIM_RANDOM_H_
