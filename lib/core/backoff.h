// Contention backoff for compare-exchange loops on a shared word.
//
// When two cores update one word, every update moves its cache line from one
// core to the other, and a line transfer costs far more than the update
// (measured here: 7.7 ns a compare-exchange on one core, 39 ns a compare-
// exchange per thread-step when two cores alternate). A failed
// compare-exchange is the sign of that contention. Backing off after it, by
// spinning on the CPU's pause hint for a bounded time before the next try,
// lets the winning core run a streak of updates on a line it keeps, which is
// what a mutex's queue does by putting the loser to sleep, without the lock:
// the thread that won proceeds at once, so the loop stays lock-free.
// (Exponential backoff: Herlihy & Shavit, "The Art of Multiprocessor
// Programming", 2nd ed., section 7.4; Anderson, "The performance of spin
// lock alternatives for shared-memory multiprocessors", IEEE TPDS 1990.)
//
// The cost is paid only by the thread whose compare-exchange failed, and is
// bounded: kFirstPauses pause instructions after a first failure, doubling
// on each further failure of the same operation up to kMaxPauses. A pause
// takes about 10 ns on the benchmark machine (so 20 us, at most 80 us); it
// takes 10 to 140 cycles depending on the microarchitecture. That is small
// beside a database write, it is within the spin budgets of folly's own
// contended paths (folly::detail::Sleeper spins 4000 pauses before it
// sleeps), and it is only paid on a collision: an uncontended loop never
// fails and never pauses.
//
// Usage (with compare_exchange_strong: a weak one may fail spuriously on
// load-linked/store-conditional machines such as ARM, and would then pause
// where nobody contended):
//   Backoff backoff;
//   while (!word.compare_exchange_strong(v, f(v))) backoff.Pause();
//
// Thread safety: one Backoff per loop, on the looping thread's stack.

#ifndef SPILLWAY_LIB_CORE_BACKOFF_H_
#define SPILLWAY_LIB_CORE_BACKOFF_H_

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace spillway::internal {

// One spin-wait hint: PAUSE on x86, YIELD on ARM, a compiler barrier
// elsewhere.
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__) || defined(__arm__)
  asm volatile("yield" ::: "memory");
#else
  asm volatile("" ::: "memory");
#endif
}

class Backoff {
 public:
  // Measured on the benchmark machine (two threads on one object, bench/
  // spillway_bench.cc): 64 pauses after a failure recovered most of the
  // throughput lost to contention for the token bucket's single
  // compare-exchange, but the limiter (then a compare-exchange to admit,
  // one to release, the sample between) needs streaks long enough to pay for
  // the transfers that end them: at two threads it took 35-39 ns an operation
  // with 64 pauses, 20 ns with 256, 16-20 ns with 1024 and 14-18 ns with
  // 2048, where one thread alone takes 17 ns.
  static constexpr int kFirstPauses = 2048;
  static constexpr int kMaxPauses = 8192;

  // Spins after a failed compare-exchange; each call on the same Backoff
  // waits twice as long as the last, up to kMaxPauses.
  void Pause() {
    for (int i = 0; i < pauses_; ++i) CpuRelax();
    if (pauses_ < kMaxPauses) pauses_ *= 2;
  }

 private:
  int pauses_ = kFirstPauses;
};

}  // namespace spillway::internal

#endif  // SPILLWAY_LIB_CORE_BACKOFF_H_
