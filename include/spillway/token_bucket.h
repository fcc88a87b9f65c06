// TokenBucket: a lock-free local rate limit with burst.
//
// Tokens accrue at `rate` per second up to `burst`; a write consumes one (or
// `n`) tokens. `TryConsume` either takes the tokens or refuses and reports
// exactly how long until they will be there (rounded up to the nanosecond,
// so waiting that long always suffices). `ConsumeWithBorrow` never
// refuses a satisfiable request: it takes the tokens on credit, driving the
// balance negative, and returns how long the caller should wait before
// acting (the balance is back to zero then). `Return` gives tokens back, e.g.
// when a later gate refused the write.
//
//   auto bucket = spillway::TokenBucket::Create({.rate = 500, .burst = 50});
//   absl::Duration retry_after;
//   if (!(*bucket)->TryConsume(1, &retry_after)) {
//     return Unavailable(retry_after);
//   }
//
// The algorithm (folly's TokenBucket, folly/TokenBucket.h): the whole state
// is one atomic `zero_time`, the instant at which the bucket was (or will
// be) empty. At time `now` the bucket holds
//     tokens(now) = min(burst, (now - zero_time) * rate)
// and consuming `n` tokens stores, with one compare-exchange,
//     zero_time' = now - (tokens(now) - n) / rate
//                = max(zero_time + n / rate, now - (burst - n) / rate).
// `zero_time` only moves forward on consume, so a thread holding an older
// `now` than another computes fewer tokens, never more: out-of-order
// timestamps never mint tokens.
//
// Exact time: unlike folly, which keeps seconds in a double, `zero_time` is
// an integer count of 1/16 ns since the bucket was built (18 years of
// range). Comparisons are exact integer arithmetic, so accuracy does not
// decay with uptime or rate: a token is there at the refill instant, not a
// rounding error later. The only rounding is of one token's worth of time,
// n * 16e9 / rate units, to an even integer, once per call (at most 1/16
// ns).
// Hence `burst / rate`, the time to fill the bucket, may be at most 1e8 s.
//
// Rate changes: `SetRate` keeps the tokens the bucket holds (capped at the
// new burst) and applies the new rate from that instant. The parameters
// live in one of two slots, chosen by a generation word (a seqlock with two
// buffers: readers never wait on a writer, they retry if the generation
// moved under them), on a cache line apart from `zero_time`. While a change is
// being applied, a concurrent `TryConsume` refuses conservatively rather than
// mixing old and new parameters. The low bit of `zero_time` is the active
// slot's index (every amount added to it is even, and `now` is a multiple
// of 16, so the bit never changes a comparison): a consume that read the
// old parameters and then lost the race to a `SetRate` cannot
// compare-exchange afterwards even where the rebased `zero_time` equals the
// one it read (at a balance of exactly zero, say), so every consume is
// charged at the rate in force when it lands. The one interleaving left is a
// consume stalled between its read and its compare-exchange across two or
// more `SetRate` calls that return to the slot it read, finding `zero_time`
// at the value it read: it is charged at the rate it read.
//
// Metrics: decisions go to `spillway_admitted_total` and
// `spillway_rejected_total` with gate="token_bucket", priority="any"; rate
// and burst to `spillway_bucket_rate` and `spillway_bucket_burst`.
//
// Locking: consuming is a compare-exchange loop on `zero_time`; it never
// takes a lock, allocates or makes a system call. A thread whose
// compare-exchange loses to another core's pauses before it retries (about
// 20 us, see ConcurrencyLimiter), so the winner keeps the cache line for a
// streak of consumes instead of the two cores trading it on every one.
// `SetRate` takes a mutex that only other `SetRate` calls (and the
// `rate()`/`burst()` getters) use.
//
// Thread safety: all methods are thread-safe. `TryConsume`,
// `ConsumeWithBorrow`, `Return` and `Available` are lock-free and
// allocation-free; `SetRate` serializes with other `SetRate` calls only.

#ifndef SPILLWAY_TOKEN_BUCKET_H_
#define SPILLWAY_TOKEN_BUCKET_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "spillway/clock.h"
#include "spillway/metrics.h"

namespace spillway {

struct TokenBucketOptions {
  // Tokens added per second.
  // Default: 1000. REQUIRES: finite, > 0 and <= 1e9.
  double rate = 1000.0;

  // Capacity: the most tokens the bucket holds, i.e. the largest burst.
  // Default: 100. REQUIRES: finite, >= 1 and <= 1e9, and burst / rate (the
  // time to fill the bucket) <= 1e8 seconds.
  double burst = 100.0;

  // Tokens at construction. Default: unset, meaning a full bucket (`burst`).
  // REQUIRES: in [0, burst] when set.
  std::optional<double> initial_tokens;

  // Value of the `throttle` metric label. Default: "default".
  // REQUIRES: not empty.
  std::string name = "default";

  // Time source. Default: nullptr, meaning `SteadyClock::Default()`.
  // REQUIRES: when set, outlives the bucket.
  Clock* clock = nullptr;

  // Where decisions are reported. Default: nullptr, meaning
  // `NoopMetricsSink()`. REQUIRES: when set, outlives the bucket.
  MetricsSink* metrics = nullptr;
};

// Checks every field; the error names the field and its value. Thread-safe.
absl::Status ValidateTokenBucketOptions(const TokenBucketOptions& options);

class TokenBucket {
 public:
  // Validates `options` and builds a bucket. Thread-safe.
  static absl::StatusOr<std::unique_ptr<TokenBucket>> Create(
      const TokenBucketOptions& options);

  TokenBucket(const TokenBucket&) = delete;
  TokenBucket& operator=(const TokenBucket&) = delete;

  // Takes `n` tokens if the bucket holds them now and returns true. Otherwise
  // takes nothing, returns false and, if `retry_after` is not null, stores
  // the exact time until `n` tokens will have accrued (infinite when
  // `n > burst`). REQUIRES: n >= 0. Thread-safe; lock-free.
  bool TryConsume(double n = 1.0, absl::Duration* retry_after = nullptr);

  // Takes `n` tokens, on credit if need be, and returns how long the caller
  // must wait before the balance is back at zero (zero when the tokens were
  // there). Returns nullopt and takes nothing when `n > burst`, which no
  // wait can satisfy. REQUIRES: n >= 0. Thread-safe; lock-free (it spins
  // only while a concurrent `SetRate` is applying its three stores).
  std::optional<absl::Duration> ConsumeWithBorrow(double n = 1.0);

  // Gives back `n` tokens previously taken; the balance never exceeds
  // `burst`. REQUIRES: n >= 0. Thread-safe; lock-free.
  void Return(double n = 1.0);

  // Tokens available now; negative while borrowed. Thread-safe; the value may
  // be stale at once.
  double Available() const;

  // Changes rate and burst, keeping the current balance (capped at the new
  // burst). Returns InvalidArgument, and changes nothing, if either value
  // breaks the REQUIRES of `TokenBucketOptions`. Thread-safe.
  absl::Status SetRate(double rate, double burst);

  // Current parameters. Thread-safe (serialized with SetRate; not for the
  // hot path); the value may be stale at once.
  double rate() const;
  double burst() const;

 private:
  explicit TokenBucket(const TokenBucketOptions& options);

  // Time unit of the state: 1/16 ns, so that one token at the highest rate
  // (1e9/s) is an integer 16 units.
  static constexpr int64_t kUnitsPerNanosecond = 16;

  // Units since `origin_` of `now`.
  int64_t Units(MonotonicTime now) const;

  Clock& clock_;
  const MonotonicTime origin_;

  struct Params {
    double rate;
    double burst;
    double half_units_per_token;  // 8e9 / rate: consuming multiplies.
    int64_t burst_units;          // Time to fill the bucket, in units.
  };
  // Reads the parameters of generation `gen`. Relaxed atomics, so a slot
  // rewritten under a slow reader is a retry, never a data race.
  Params LoadParams(uint64_t gen) const;
  // One consistent snapshot of the state; false if torn (retry).
  bool ReadState(uint64_t* gen, Params* params, int64_t* zero_time) const;
  struct Snapshot {
    uint64_t gen;
    Params params;
    int64_t zero_time;
  };
  // A consistent snapshot outside any SetRate: retries torn reads and
  // yields while a SetRate is applying its change.
  Snapshot ReadStable() const;
  // Time worth of `n` tokens, in units, rounded to the nearest even count.
  static int64_t Need(double n, const Params& params);
  // The slot index of generation `gen`, which is also its tag: `zero_time`
  // holds the (even) instant minus the tag.
  static int64_t Tag(uint64_t gen) {
    return static_cast<int64_t>((gen >> 1) & 1);
  }

  // The state, on two cache lines:
  //   zero_time  units since `origin_` at which the bucket is (was) empty,
  //              an even count, minus the tag of the generation (0 or 1);
  //              written by every consume, so alone on its line;
  //   generation even when stable, odd while SetRate applies a change; the
  //              active parameter slot is (generation / 2) % 2;
  //   slots      two parameter sets; SetRate writes the inactive one.
  // Generation and slots change only in SetRate: their line stays shared in
  // every core's cache instead of moving with each consume.
  struct State {
    alignas(128) std::atomic<int64_t> zero_time{0};
    alignas(128) std::atomic<uint64_t> generation{0};
    struct Slot {
      std::atomic<double> rate{0};
      std::atomic<double> burst{0};
      std::atomic<double> half_units_per_token{0};
      std::atomic<int64_t> burst_units{0};
    } slots[2];
  };
  State state_;

  // Serializes SetRate calls. Never taken on the consume path.
  mutable std::mutex set_rate_mu_;

  // False for the no-op sink: consumes then skip reporting with one
  // predictable branch.
  bool report_;
  // Metric handles, bound once at construction.
  CounterHandle* admitted_;
  CounterHandle* rejected_;
  GaugeHandle* rate_gauge_;
  GaugeHandle* burst_gauge_;
};

}  // namespace spillway

#endif  // SPILLWAY_TOKEN_BUCKET_H_
