// spillway_bench: the cost of one admission decision.
//
// Each operation runs on two clocks:
//   /sim   a SimulatedClock (Now() is one atomic load): isolates the cost of
//          synchronization;
//   /real  the steady clock: end to end, including one or two clock reads
//          (BM_Clock_Now measures one).
// and against a std::mutex baseline doing the same work (BM_Mutex*), at 1 and
// 2 threads sharing one object. BM_SharedWordCas is the hardware floor of a
// single-word lock-free design (one update a step, as the bucket's consume),
// BM_SharedWordCasFetchSub that of an exact limiter (an admission's
// compare-exchange and a release's fetch_sub). Speed claims are ratios between
// rows of the same run.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "bench/mutex_baselines.h"
#include "spillway/aimd_limit.h"
#include "spillway/concurrency_limiter.h"
#include "spillway/knee_limit.h"
#include "spillway/testing/simulated_clock.h"
#include "spillway/token_bucket.h"

namespace spillway::bench {
namespace {

testing::SimulatedClock& SimClock() {
  static testing::SimulatedClock* const clock = new testing::SimulatedClock();
  return *clock;
}
Clock& RealClock() { return SteadyClock::Default(); }

// One shared object per clock, built before any benchmark thread starts.
// Rate and burst are the most TokenBucket allows, so every iteration
// measures a successful consume (on the simulated clock, see Refill).
TokenBucket& Bucket(Clock& clock) {
  TokenBucketOptions o;
  o.rate = 1e9;
  o.burst = 1e9;
  o.clock = &clock;
  // Lives for the whole program, as the benchmark threads share it.
  return *TokenBucket::Create(o).value().release();
}

ConcurrencyLimiter& Limiter(Clock& clock) {
  ConcurrencyLimiterOptions o;
  o.limit = std::move(*AimdLimit::Create({}));  // Netflix's defaults: 20.
  o.clock = &clock;
  return *ConcurrencyLimiter::Create(std::move(o)).value().release();
}

// The default algorithm: KneeLimit in a WindowedLimit (lock-free windowed
// aggregation on every release). min_limit 2: on the real clock these
// "writes" take nanoseconds, clock noise exceeds twice the baseline and the
// algorithm rightly sheds to its floor; the row measures admission, so both
// threads must always fit.
ConcurrencyLimiter& DefaultLimiter(Clock& clock) {
  ConcurrencyLimiterOptions o;
  o.limit = MakeDefaultLimit({.initial_limit = 2, .min_limit = 2}).value();
  o.clock = &clock;
  return *ConcurrencyLimiter::Create(std::move(o)).value().release();
}

struct Fixtures {
  Fixtures(Clock& clock, testing::SimulatedClock* sim)
      : sim_clock(sim),
        bucket(Bucket(clock)),
        limiter(Limiter(clock)),
        default_limiter(DefaultLimiter(clock)),
        mutex_bucket(clock, 1e9, 1e9),
        mutex_limiter(clock, 20) {}
  // The clock when it is the simulated one, else null.
  testing::SimulatedClock* const sim_clock;
  TokenBucket& bucket;
  ConcurrencyLimiter& limiter;
  ConcurrencyLimiter& default_limiter;
  MutexTokenBucket mutex_bucket;
  MutexLimiter mutex_limiter;
};

Fixtures& Sim() {
  static Fixtures* const f = new Fixtures(SimClock(), &SimClock());
  return *f;
}
Fixtures& Real() {
  static Fixtures* const f = new Fixtures(RealClock(), nullptr);
  return *f;
}

// On the simulated clock time stands still, and a bucket of 1e9 tokens
// would run dry after 1e9 consumes, a few runs of this program, and then
// time refusals instead. Every 2^20 iterations each thread moves the clock
// on by a second, which refills it at a negligible cost per iteration.
// `rejected` counts refusals: none at one thread; at two, a few dozen in
// tens of millions, from a thread whose clock reading predates the other's
// advance (the bucket is full at the new time and empty at the old one: an
// old reading mints nothing).
template <typename Bucket>
void TryConsumeLoop(benchmark::State& state, Fixtures* f, Bucket& bucket) {
  int64_t rejected = 0;
  uint32_t i = 0;
  for (auto _ : state) {
    if (!bucket.TryConsume(1)) ++rejected;
    if (f->sim_clock != nullptr && (++i & ((1u << 20) - 1)) == 0) {
      f->sim_clock->Advance(absl::Seconds(1));
    }
  }
  state.counters["rejected"] = static_cast<double>(rejected);
}

void BM_TokenBucket_TryConsume(benchmark::State& state, Fixtures* f) {
  TryConsumeLoop(state, f, f->bucket);
}

void BM_MutexTokenBucket_TryConsume(benchmark::State& state, Fixtures* f) {
  TryConsumeLoop(state, f, f->mutex_bucket);
}

void AcquireRelease(benchmark::State& state, ConcurrencyLimiter& limiter) {
  int64_t rejected = 0;
  for (auto _ : state) {
    Admission a = limiter.TryAcquire();
    if (a.ok()) {
      a.permit().Success();
    } else {
      ++rejected;
    }
  }
  state.counters["rejected"] = static_cast<double>(rejected);
}

void BM_Limiter_AcquireRelease(benchmark::State& state, Fixtures* f) {
  AcquireRelease(state, f->limiter);
}

void BM_Limiter_AcquireRelease_Default(benchmark::State& state, Fixtures* f) {
  AcquireRelease(state, f->default_limiter);
}

void BM_MutexLimiter_AcquireRelease(benchmark::State& state, Fixtures* f) {
  int64_t rejected = 0;
  for (auto _ : state) {
    MonotonicTime start;
    int in_flight;
    if (f->mutex_limiter.Acquire(&start, &in_flight)) {
      f->mutex_limiter.Success(start, in_flight);
    } else {
      ++rejected;
    }
  }
  state.counters["rejected"] = static_cast<double>(rejected);
}

// One increment of `word` by load and compare-exchange, retried at once.
inline void CasIncrement(std::atomic<int64_t>& word) {
  int64_t v = word.load(std::memory_order_relaxed);
  while (!word.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel,
                                     std::memory_order_relaxed)) {
  }
}

// The floor: one load and compare-exchange on a word shared by the threads,
// retried at once on failure, the least any single-word lock-free gate can
// cost uncontended, and what two threads trading its cache line cost
// without backoff (lib/core/backoff.h). The token bucket does one per
// admission; the limiter one to admit and a fetch-sub (also a locked
// read-modify-write) to release.
void BM_SharedWordCas(benchmark::State& state) {
  static std::atomic<int64_t> word{0};
  for (auto _ : state) CasIncrement(word);
}

// The floor of an exact concurrency limit: an admission's compare-exchange
// and a release's fetch_sub on one word, the two read-modify-writes every
// BM_Limiter_AcquireRelease iteration needs at least.
void BM_SharedWordCasFetchSub(benchmark::State& state) {
  static std::atomic<int64_t> word{0};
  for (auto _ : state) {
    CasIncrement(word);
    word.fetch_sub(1, std::memory_order_seq_cst);
  }
}

void BM_Clock_Now(benchmark::State& state) {
  Clock& clock = RealClock();
  for (auto _ : state) {
    benchmark::DoNotOptimize(clock.Now());
  }
}

void Register() {
  using Fn = void (*)(benchmark::State&, Fixtures*);
  const std::pair<const char*, Fn> ops[] = {
      {"BM_TokenBucket_TryConsume", BM_TokenBucket_TryConsume},
      {"BM_MutexTokenBucket_TryConsume", BM_MutexTokenBucket_TryConsume},
      {"BM_Limiter_AcquireRelease", BM_Limiter_AcquireRelease},
      {"BM_Limiter_AcquireRelease_Default", BM_Limiter_AcquireRelease_Default},
      {"BM_MutexLimiter_AcquireRelease", BM_MutexLimiter_AcquireRelease},
  };
  const std::pair<const char*, Fixtures*> clocks[] = {{"sim", &Sim()},
                                                      {"real", &Real()}};
  for (const auto& [clock_name, fixtures] : clocks) {
    for (const auto& [op_name, fn] : ops) {
      benchmark::RegisterBenchmark(
          (std::string(op_name) + "/" + clock_name).c_str(), fn, fixtures)
          ->Threads(1)
          ->Threads(2)
          ->UseRealTime();
    }
  }
  benchmark::RegisterBenchmark("BM_SharedWordCas", BM_SharedWordCas)
      ->Threads(1)
      ->Threads(2)
      ->UseRealTime();
  benchmark::RegisterBenchmark("BM_SharedWordCasFetchSub",
                               BM_SharedWordCasFetchSub)
      ->Threads(1)
      ->Threads(2)
      ->UseRealTime();
  benchmark::RegisterBenchmark("BM_Clock_Now", BM_Clock_Now);
}

}  // namespace
}  // namespace spillway::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  spillway::bench::Register();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
