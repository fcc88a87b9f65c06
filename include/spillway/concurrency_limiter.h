// ConcurrencyLimiter: an exact, lock-free limit on writes in flight.
//
// Every write asks for a permit before it runs and releases it when done.
// The limiter admits while the writes in flight are below the limit given by
// a limit algorithm (`spillway/limit.h`; KneeLimit by default) and turns the
// rest away at once — or, with `Acquire`, lets them wait in a bounded queue
// until a slot frees or their deadline passes.
//
//   auto limiter = spillway::ConcurrencyLimiter::Create({.name = "orders"});
//   spillway::Admission a = (*limiter)->TryAcquire();
//   if (!a.ok()) return Unavailable(a.rejection().ToString());
//   spillway::Permit permit = std::move(a).permit();
//   Status s = WriteOrder(...);
//   if (s.ok()) permit.Success();
//   else if (IsOverload(s)) permit.Dropped();
//   // else: the destructor calls Ignore().
//
// Outcomes: `Success()` feeds the write's latency to the limit algorithm;
// `Dropped()` feeds a congestion signal (timeout, overload error);
// `Ignore()` (also what the destructor does) releases the slot without a
// sample, for failures that say nothing about the database's load (a
// constraint violation). Rejected writes never feed the algorithm.
//
// Exactness: admission is a compare-exchange on one atomic word holding the
// in-flight count of every priority, so in-flight never exceeds the limit
// read at admission — never by one, under any interleaving. When the
// algorithm lowers the limit below the current in-flight count, nothing is
// revoked; new admissions wait until in-flight drops below the new limit.
//
// Priorities (partitions): every write has a priority — critical, normal or
// batch. With limit L, each partition p has
//   reserved(p) = floor(guaranteed_fraction(p) * L)
//   cap(p)      = max(reserved(p), 1, floor(max_fraction(p) * L))
// and the rest of the limit, shared = L - sum of reserved(p), is a pool any
// partition may borrow from. Partition p with n(p) in flight is admitted iff
//   n(p) < reserved(p)                                       (its guarantee)
//   or n(p) < cap(p) and sum over q of max(0, n(q) - reserved(q)) < shared.
// Hence: (1) total in flight never exceeds L; (2) a partition below its
// reserved share is admitted at once even when the others have saturated
// everything else — reserved slots are never lent, which is what makes the
// guarantee hard rather than soft (Netflix's partitions let the total exceed
// the limit, their issues #120 and #234); (3) capacity nobody has reserved
// is borrowable by every partition up to its cap, except while a higher
// priority is under pressure: after a write of priority p is refused, lower
// priorities may not borrow for `priority_hold` (they keep their reserved
// share), so freed capacity goes to p first. Defaults: critical
// guarantees 20% of the limit, normal 10%, batch nothing and may use at most
// half of the limit.
//
// Waiting: `Acquire(deadline)` queues when no slot is free, up to
// `max_queued` callers in all. A released slot goes to the queue directly
// (waiters of a higher priority first; FIFO within a priority by default,
// LIFO as an option), so a `TryAcquire` of the same or lower priority is
// refused while someone of the same or higher priority waits. A waiter gets
// its permit on a release or a rejection at its deadline, measured on the
// limiter's clock; no wake-up is lost.
//
// Retry hint: a limiter rejection's `retry_after` is the smoothed latency of
// recent successful writes (EWMA with weight 1/8, as TCP's SRTT, RFC 6298,
// fed at most one sample per millisecond), or 1 ms before the first one.
//
// Metrics (names in spillway/metric_names.h): admitted and rejected totals
// by priority and reason, in-flight, limit, queued, outcomes, latency.
//
// Locking: `TryAcquire` and the release of a permit are lock-free (one
// compare-exchange to admit, one fetch-sub to release) and allocation-free,
// and make no system call (the steady clock is read through the vDSO, once
// to admit, after the compare-exchange, and once to release). A thread
// whose compare-exchange loses to another core's pauses (2048 pause
// instructions, about 20 us; doubling on further losses, at most 8192)
// before it retries, so the winner runs on a cache line it keeps: at two
// threads hammering one limiter that is more than twice a mutex's
// throughput, where retrying at once was slower than the mutex. Only
// colliding admissions pay it. A release takes the queue mutex only while
// someone waits in `Acquire`.
// Reporting binds metric handles at construction; with the default no-op
// sink the hot path skips it with one branch.
//
// Thread safety: all methods are thread-safe. `Acquire` locks and blocks.

#ifndef SPILLWAY_CONCURRENCY_LIMITER_H_
#define SPILLWAY_CONCURRENCY_LIMITER_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "spillway/clock.h"
#include "spillway/limit.h"
#include "spillway/metrics.h"
#include "spillway/rejection.h"

namespace spillway {

enum class Priority : uint8_t {
  kCritical = 0,
  kNormal = 1,
  kBatch = 2,
};
inline constexpr int kNumPriorities = 3;

// "critical", "normal", "batch". Thread-safe.
absl::string_view PriorityName(Priority priority);

// How a permit ended.
enum class Outcome : uint8_t { kSuccess = 0, kDropped = 1, kIgnored = 2 };

// "success", "dropped", "ignored". Thread-safe.
absl::string_view OutcomeName(Outcome outcome);

enum class QueueOrder : uint8_t {
  kFifo,  // Oldest waiter first: fair.
  kLifo,  // Newest waiter first: under overload, serves those most likely
          // still within their deadline.
};

// One priority's share of the limit. The defaults of a default-constructed
// PartitionOptions are below; ConcurrencyLimiterOptions::partitions sets its
// own defaults per priority.
struct PartitionOptions {
  // Share of the limit reserved for this priority, never lent to others.
  // Default: 0. REQUIRES: in [0, 1]; the sum over priorities <= 1.
  double guaranteed_fraction = 0.0;
  // Largest share of the limit this priority may occupy.
  // Default: 1. REQUIRES: in (0, 1] and >= guaranteed_fraction.
  double max_fraction = 1.0;
};

struct ConcurrencyLimiterOptions {
  // Value of the `throttle` metric label. Default: "default".
  // REQUIRES: not empty.
  std::string name = "default";

  // The limit algorithm. Default: nullptr, meaning MakeDefaultLimit(): a
  // KneeLimit (knee_limit.h) in a WindowedLimit, which starts at 1 and
  // measures three windows of writes alone, then doubles per window until
  // latency leaves twice its baseline.
  // REQUIRES: when set, max_limit() <= kMaxConcurrencyLimit.
  std::shared_ptr<Limit> limit;

  // Partitions, indexed by Priority.
  // Default: critical {0.2, 1.0}, normal {0.1, 1.0}, batch {0.0, 0.5}.
  std::array<PartitionOptions, kNumPriorities> partitions = {
      PartitionOptions{0.2, 1.0}, PartitionOptions{0.1, 1.0},
      PartitionOptions{0.0, 0.5}};

  // After a write of some priority is refused, lower priorities may not
  // borrow unreserved capacity for this long (they are refused with
  // kPriorityPressure): the capacity that frees up goes to the higher
  // priority first. Zero disables. Default: 100 ms. REQUIRES: >= 0.
  absl::Duration priority_hold = absl::Milliseconds(100);

  // Most callers waiting in Acquire() at once, all priorities together;
  // 0 makes Acquire() behave as TryAcquire(). Default: 128.
  // REQUIRES: in [0, kMaxConcurrencyLimit].
  int max_queued = 128;

  // Which waiter of a priority a released slot goes to. Default: kFifo.
  QueueOrder queue_order = QueueOrder::kFifo;

  // Time source. Default: nullptr, meaning `SteadyClock::Default()`.
  // REQUIRES: when set, outlives the limiter.
  Clock* clock = nullptr;

  // Where decisions are reported. Default: nullptr, meaning
  // `NoopMetricsSink()`. REQUIRES: when set, outlives the limiter.
  MetricsSink* metrics = nullptr;
};

// Checks every field; the error names the field and its value. Thread-safe.
absl::Status ValidateConcurrencyLimiterOptions(
    const ConcurrencyLimiterOptions& options);

class ConcurrencyLimiter;

// The right to run one write. Move-only; releasing it (by one of the three
// outcome calls, or by destruction, which is Ignore()) frees the slot.
// A default-constructed or moved-from permit holds nothing.
//
// Thread safety: a permit may be moved to and released on any thread, but
// one permit must not be used by two threads at once.
class Permit {
 public:
  Permit() = default;
  Permit(Permit&& other) noexcept;
  Permit& operator=(Permit&& other) noexcept;
  Permit(const Permit&) = delete;
  Permit& operator=(const Permit&) = delete;
  ~Permit() { Ignore(); }

  // The write completed: releases the slot and feeds the write's latency to
  // the limit algorithm. No-op on an empty permit. Not thread-safe on one
  // permit; lock-free.
  void Success() { Release(Outcome::kSuccess); }
  // The write failed because the database is congested (timeout, overload):
  // releases the slot with a congestion signal for the limit algorithm.
  // No-op on an empty permit. Not thread-safe on one permit; lock-free.
  void Dropped() { Release(Outcome::kDropped); }
  // Releases the slot without a sample. No-op on an empty permit. Not
  // thread-safe on one permit; lock-free.
  void Ignore() { Release(Outcome::kIgnored); }

  // True until released or moved from. Not thread-safe on one permit.
  bool valid() const { return limiter_ != nullptr; }
  explicit operator bool() const { return valid(); }

  // What the permit was admitted with. Not thread-safe on one permit.
  Priority priority() const { return priority_; }
  // When it was admitted (the start of its RTT): the limiter's clock read
  // just after admission, or for a waiter, when a release handed it a slot.
  MonotonicTime start() const { return start_; }
  // In-flight writes when this one was admitted, itself included.
  int in_flight_at_admission() const { return in_flight_; }

 private:
  friend class ConcurrencyLimiter;
  friend class ThrottlePermit;  // Releases at the end time it read itself.
  Permit(ConcurrencyLimiter* limiter, MonotonicTime start, int in_flight,
         Priority priority)
      : limiter_(limiter),
        start_(start),
        in_flight_(in_flight),
        priority_(priority) {}
  void Release(Outcome outcome);
  // Release with the write's end time already read (unused for kIgnored).
  void ReleaseAt(Outcome outcome, MonotonicTime end);

  ConcurrencyLimiter* limiter_ = nullptr;
  MonotonicTime start_{};
  int in_flight_ = 0;
  Priority priority_ = Priority::kNormal;
};

// The result of an admission: a permit, or a rejection saying why not.
// A value type; not thread-safe (as any value, one thread at a time).
class Admission {
 public:
  static Admission Admitted(Permit permit) {
    return Admission(std::move(permit));
  }
  static Admission Rejected(Rejection rejection) {
    return Admission(rejection);
  }

  bool ok() const { return permit_.valid(); }
  explicit operator bool() const { return ok(); }

  // REQUIRES: ok(). Move it out to keep it: `std::move(a).permit()`.
  Permit& permit() & { return permit_; }
  Permit&& permit() && { return std::move(permit_); }

  // REQUIRES: !ok().
  const Rejection& rejection() const { return rejection_; }

 private:
  explicit Admission(Permit&& permit) : permit_(std::move(permit)) {}
  explicit Admission(const Rejection& rejection) : rejection_(rejection) {}
  Permit permit_;
  Rejection rejection_;
};

class ConcurrencyLimiter {
 public:
  // Validates `options` and builds a limiter. Thread-safe.
  static absl::StatusOr<std::unique_ptr<ConcurrencyLimiter>> Create(
      ConcurrencyLimiterOptions options);

  // REQUIRES: every permit released and no caller waiting in Acquire().
  ~ConcurrencyLimiter();
  ConcurrencyLimiter(const ConcurrencyLimiter&) = delete;
  ConcurrencyLimiter& operator=(const ConcurrencyLimiter&) = delete;

  // Admits now or rejects now. Thread-safe; lock-free; never blocks.
  Admission TryAcquire(Priority priority = Priority::kNormal);

  // Admits now, or waits in the queue until a slot is handed over or the
  // limiter's clock reaches `deadline`. Rejects with kQueueFull when the
  // queue is full, kDeadlineExceeded at the deadline. Thread-safe; blocks.
  Admission Acquire(MonotonicTime deadline,
                    Priority priority = Priority::kNormal);

  // Writes in flight, all priorities or one. Thread-safe; the value may be
  // stale at once.
  int in_flight() const;
  int in_flight(Priority priority) const;
  // The limit now. Thread-safe; the value may be stale at once.
  int limit() const { return limit_->current(); }
  // Callers waiting in Acquire(). Thread-safe; the value may be stale at once.
  int queued() const;
  // reserved(p) and cap(p) of the header comment at limit `limit`.
  // Thread-safe.
  int reserved(Priority priority, int limit) const;
  int cap(Priority priority, int limit) const;
  // The retry hint a limiter rejection would carry now. Thread-safe.
  absl::Duration retry_after() const;

  // The `name` option and the limit algorithm. Thread-safe.
  const std::string& name() const { return name_; }
  Limit& limit_algorithm() const { return *limit_; }

 private:
  friend class Permit;
  explicit ConcurrencyLimiter(ConcurrencyLimiterOptions options);

  // reserved(p) and cap(p) of every priority at one limit.
  struct Shares {
    std::array<int32_t, kNumPriorities> reserved;
    std::array<int32_t, kNumPriorities> cap;
    int32_t reserved_sum;  // Sum of `reserved`.
  };
  // Computes the shares at `limit` (the header comment's formulas).
  Shares ComputeShares(int64_t limit) const;
  // The clock, read at most once per admission, and before the decision
  // only when a priority hold must be checked (lib/core/
  // concurrency_limiter.cc).
  class AdmissionTime;
  // Whether `word` (in-flight counts, `total` in all) admits one more
  // write of `p` at `limit` with shares `shares`; if not, sets `why`.
  // Clears p's priority hold once it has expired.
  bool Admissible(int p, uint64_t word, int64_t total, int64_t limit,
                  const Shares& shares, AdmissionTime* now, Reason* why);
  // One compare-exchange admission attempt loop for `p`, ignoring waiters.
  // On success returns true and the total in flight after admission.
  bool TryAdmit(int p, AdmissionTime* now, int* in_flight, Reason* why);
  // Releases `permit`; `end` is when the write ended (read by the caller,
  // unused for kIgnored).
  void Release(const Permit& permit, Outcome outcome, MonotonicTime end);
  // Counts the admission and hands out its permit.
  Admission Admit(int p, MonotonicTime start, int in_flight);
  // Counts the rejection and, for a refused priority with lower ones below
  // it, starts (or extends) its pressure period.
  Admission Reject(int p, Reason why, AdmissionTime* now);
  // Hands free slots to waiters. Takes the queue's mutex.
  void ServeWaiters();

  const std::string name_;
  Clock& clock_;
  const std::shared_ptr<Limit> limit_;
  const int max_queued_;
  const int64_t priority_hold_ns_;
  const QueueOrder queue_order_;
  // Partition fractions in parts per million, so shares are exact integer
  // arithmetic.
  std::array<int64_t, kNumPriorities> guaranteed_ppm_;
  std::array<int64_t, kNumPriorities> max_ppm_;
  // The shares at every limit in [0, shares_size_), computed once at
  // construction (the fractions never change; at most 4097 entries of 28
  // bytes), so admission looks them up instead of multiplying and dividing
  // per priority. Limits beyond the table (an algorithm with max_limit
  // above kMaxSharesTable) compute them.
  static constexpr int kMaxSharesTable = 4096;
  int shares_size_ = 0;
  std::unique_ptr<Shares[]> shares_;

  // Hot fields are 128 bytes apart (see WindowedLimit::Shard: adjacent-line
  // prefetch). In flight per priority, 21 bits each: the one word admission
  // compare-exchanges, on its own cache line since every admit and release
  // writes it.
  alignas(128) std::atomic<uint64_t> counts_{0};
  // Smoothed latency of successful writes, nanoseconds (0: none yet), and
  // the clock time (ns) it last took a sample. It takes at most one sample
  // per kSrttPeriodNs: a release reads the line and writes it only when the
  // period is over, so on a busy limiter this line is shared by every core
  // rather than moved between them on every release. Two releases that
  // update at once lose one sample, which only delays the average.
  static constexpr int64_t kSrttPeriodNs = 1000000;
  alignas(128) std::atomic<int64_t> srtt_ns_{0};
  std::atomic<int64_t> srtt_at_ns_{0};
  // Waiters per priority, 21 bits each. Read on every admission (rarely
  // written), so a cache line of its own.
  alignas(128) std::atomic<uint64_t> waiting_{0};
  // Per priority, the clock time (ns) until which it may not borrow,
  // because a higher priority was refused; 0 for none: one load per
  // borrowing admission, which reads the clock only when it is not 0 and
  // clears it once expired. A refusal of p writes the entries of the
  // priorities below p, and only when one moves by more than an eighth of
  // priority_hold, so the line stays mostly shared.
  alignas(
      128) std::array<std::atomic<int64_t>, kNumPriorities> hold_until_ns_{};
  // Last limit reported to the gauge, to set it only on change.
  std::atomic<int> reported_limit_{-1};

  // The wait queue (lib/core/concurrency_limiter.cc): only touched by
  // Acquire() and by releases while someone waits.
  struct WaitQueue;
  const std::unique_ptr<WaitQueue> queue_;

  // False for the no-op sink: the hot path then skips reporting with one
  // predictable branch instead of virtual calls that do nothing.
  const bool report_;
  // Metric handles, bound once at construction.
  std::array<CounterHandle*, kNumPriorities> admitted_;
  std::array<std::array<CounterHandle*, kNumReasons>, kNumPriorities>
      rejected_{};
  std::array<CounterHandle*, 3> outcomes_;
  std::array<HistogramHandle*, 2> latency_;  // success, dropped
  GaugeHandle* in_flight_gauge_;
  GaugeHandle* limit_gauge_;
  GaugeHandle* band_gauge_;  // Set with the limit, on change.
  GaugeHandle* queued_gauge_;
};

inline void Permit::ReleaseAt(Outcome outcome, MonotonicTime end) {
  if (limiter_ == nullptr) return;
  limiter_->Release(*this, outcome, end);
  limiter_ = nullptr;
}

inline void Permit::Release(Outcome outcome) {
  if (limiter_ == nullptr) return;
  ReleaseAt(outcome, outcome == Outcome::kIgnored ? MonotonicTime()
                                                  : limiter_->clock_.Now());
}

}  // namespace spillway

#endif  // SPILLWAY_CONCURRENCY_LIMITER_H_
