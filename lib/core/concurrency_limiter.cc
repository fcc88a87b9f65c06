#include "spillway/concurrency_limiter.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <utility>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/strings/str_format.h"
#include "core/backoff.h"
#include "core/mutex.h"
#include "spillway/knee_limit.h"

namespace spillway {
namespace {

// Per-priority counters packed into one 64-bit word.
constexpr int kBits = 21;
constexpr uint64_t kMask = (uint64_t{1} << kBits) - 1;
constexpr int64_t kPpm = 1000000;
static_assert(kNumPriorities == 3 && kNumPriorities * kBits < 64);
static_assert(kMaxConcurrencyLimit == static_cast<int>(kMask));

constexpr int64_t Count(uint64_t word, int p) {
  return static_cast<int64_t>((word >> (kBits * p)) & kMask);
}
constexpr int64_t Total(uint64_t word) {
  // The top count needs no mask: 3 * 21 = 63 bits, bit 63 stays clear.
  return Count(word, 0) + Count(word, 1) +
         static_cast<int64_t>(word >> (2 * kBits));
}
constexpr uint64_t One(int p) { return uint64_t{1} << (kBits * p); }
// Nanoseconds since the clock's epoch: the unit of the hold and the retry
// hint's sample time.
int64_t Nanos(MonotonicTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             t.time_since_epoch())
      .count();
}
// The bits of priorities 0..p: the same or a higher priority than p.
constexpr uint64_t AtLeast(int p) {
  return (uint64_t{1} << (kBits * (p + 1))) - 1;
}

}  // namespace

absl::string_view PriorityName(Priority priority) {
  switch (priority) {
    case Priority::kCritical:
      return "critical";
    case Priority::kNormal:
      return "normal";
    case Priority::kBatch:
      return "batch";
  }
  return "unknown";
}

absl::string_view OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kSuccess:
      return "success";
    case Outcome::kDropped:
      return "dropped";
    case Outcome::kIgnored:
      return "ignored";
  }
  return "unknown";
}

absl::Status ValidateConcurrencyLimiterOptions(
    const ConcurrencyLimiterOptions& o) {
  if (o.name.empty()) {
    return absl::InvalidArgumentError(
        "ConcurrencyLimiterOptions.name must not be empty");
  }
  if (o.limit != nullptr &&
      (o.limit->max_limit() > kMaxConcurrencyLimit || o.limit->current() < 1)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ConcurrencyLimiterOptions.limit must have 1 <= current() and "
        "max_limit() <= %d; got current()=%d, max_limit()=%d",
        kMaxConcurrencyLimit, o.limit->current(), o.limit->max_limit()));
  }
  double guaranteed_sum = 0;
  for (int p = 0; p < kNumPriorities; ++p) {
    const PartitionOptions& part = o.partitions[p];
    const absl::string_view name = PriorityName(static_cast<Priority>(p));
    if (!(part.guaranteed_fraction >= 0 && part.guaranteed_fraction <= 1)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "ConcurrencyLimiterOptions.partitions[%s].guaranteed_fraction must "
          "be in [0, 1]; got %g",
          name, part.guaranteed_fraction));
    }
    if (!(part.max_fraction > 0 && part.max_fraction <= 1) ||
        part.max_fraction < part.guaranteed_fraction) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "ConcurrencyLimiterOptions.partitions[%s].max_fraction must be in "
          "(0, 1] and >= guaranteed_fraction=%g; got %g",
          name, part.guaranteed_fraction, part.max_fraction));
    }
    guaranteed_sum += part.guaranteed_fraction;
  }
  if (guaranteed_sum > 1 + 1e-9) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ConcurrencyLimiterOptions.partitions: the guaranteed_fraction values "
        "must sum to <= 1; got %g",
        guaranteed_sum));
  }
  if (o.priority_hold < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ConcurrencyLimiterOptions.priority_hold must be >= 0; got %s",
        absl::FormatDuration(o.priority_hold)));
  }
  if (o.max_queued < 0 || o.max_queued > kMaxConcurrencyLimit) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ConcurrencyLimiterOptions.max_queued must be in [0, %d]; got %d",
        kMaxConcurrencyLimit, o.max_queued));
  }
  if (o.queue_order != QueueOrder::kFifo &&
      o.queue_order != QueueOrder::kLifo) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ConcurrencyLimiterOptions.queue_order must be kFifo or kLifo; got %d",
        static_cast<int>(o.queue_order)));
  }
  return absl::OkStatus();
}

// One caller blocked in Acquire(), on its own stack.
struct ConcurrencyLimiter::WaitQueue {
  struct Waiter {
    explicit Waiter(int p) : priority(p) {}
    const int priority;
    std::condition_variable cv;
    Waiter* prev = nullptr;
    Waiter* next = nullptr;
    // Set by ServeWaiters when it hands this waiter a slot.
    bool granted = false;
    int in_flight = 0;
    MonotonicTime start{};
  };

  // Inserts at the tail (FIFO) or head (LIFO); serving takes the head.
  void Push(Waiter* w, QueueOrder order) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const int p = w->priority;
    if (order == QueueOrder::kFifo) {
      w->prev = tail[p];
      if (tail[p] != nullptr) tail[p]->next = w;
      tail[p] = w;
      if (head[p] == nullptr) head[p] = w;
    } else {
      w->next = head[p];
      if (head[p] != nullptr) head[p]->prev = w;
      head[p] = w;
      if (tail[p] == nullptr) tail[p] = w;
    }
    ++size;
  }

  void Remove(Waiter* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const int p = w->priority;
    (w->prev != nullptr ? w->prev->next : head[p]) = w->next;
    (w->next != nullptr ? w->next->prev : tail[p]) = w->prev;
    w->prev = w->next = nullptr;
    --size;
  }

  // Whether a waiter that a newcomer of priority p must not overtake exists.
  bool HasAhead(int p, QueueOrder order) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const int last = order == QueueOrder::kFifo ? p : p - 1;
    for (int q = 0; q <= last; ++q) {
      if (head[q] != nullptr) return true;
    }
    return false;
  }

  internal::Mutex mu;
  std::array<Waiter*, kNumPriorities> head ABSL_GUARDED_BY(mu) = {};
  std::array<Waiter*, kNumPriorities> tail ABSL_GUARDED_BY(mu) = {};
  int size ABSL_GUARDED_BY(mu) = 0;
};

Permit::Permit(Permit&& other) noexcept
    : limiter_(std::exchange(other.limiter_, nullptr)),
      start_(other.start_),
      in_flight_(other.in_flight_),
      priority_(other.priority_) {}

Permit& Permit::operator=(Permit&& other) noexcept {
  if (this != &other) {
    Ignore();
    limiter_ = std::exchange(other.limiter_, nullptr);
    start_ = other.start_;
    in_flight_ = other.in_flight_;
    priority_ = other.priority_;
  }
  return *this;
}

absl::StatusOr<std::unique_ptr<ConcurrencyLimiter>> ConcurrencyLimiter::Create(
    ConcurrencyLimiterOptions options) {
  if (absl::Status s = ValidateConcurrencyLimiterOptions(options); !s.ok()) {
    return s;
  }
  if (options.limit == nullptr) {
    absl::StatusOr<std::shared_ptr<Limit>> limit = MakeDefaultLimit();
    if (!limit.ok()) return limit.status();
    options.limit = *std::move(limit);
  }
  return std::unique_ptr<ConcurrencyLimiter>(
      new ConcurrencyLimiter(std::move(options)));
}

ConcurrencyLimiter::ConcurrencyLimiter(ConcurrencyLimiterOptions options)
    : name_(std::move(options.name)),
      clock_(options.clock != nullptr ? *options.clock
                                      : SteadyClock::Default()),
      limit_(std::move(options.limit)),
      max_queued_(options.max_queued),
      priority_hold_ns_(absl::ToInt64Nanoseconds(options.priority_hold)),
      queue_order_(options.queue_order),
      queue_(std::make_unique<WaitQueue>()),
      report_(options.metrics != nullptr &&
              options.metrics != &NoopMetricsSink()) {
  for (int p = 0; p < kNumPriorities; ++p) {
    guaranteed_ppm_[p] =
        std::llround(options.partitions[p].guaranteed_fraction * kPpm);
    max_ppm_[p] = std::llround(options.partitions[p].max_fraction * kPpm);
  }
  shares_size_ = std::min(limit_->max_limit(), kMaxSharesTable) + 1;
  shares_ = std::make_unique<Shares[]>(shares_size_);
  for (int l = 0; l < shares_size_; ++l) shares_[l] = ComputeShares(l);

  MetricsSink& sink =
      options.metrics != nullptr ? *options.metrics : NoopMetricsSink();
  const std::string gate(GateName(Gate::kConcurrencyLimit));
  for (int p = 0; p < kNumPriorities; ++p) {
    const std::string priority(PriorityName(static_cast<Priority>(p)));
    admitted_[p] = sink.Counter(metrics::kAdmitted, {name_, gate, priority});
    for (Reason r :
         {Reason::kLimitReached, Reason::kPartitionLimit, Reason::kQueueFull,
          Reason::kDeadlineExceeded, Reason::kPriorityPressure}) {
      rejected_[p][static_cast<int>(r)] =
          sink.Counter(metrics::kRejected,
                       {name_, gate, priority, std::string(ReasonName(r))});
    }
  }
  for (Outcome o : {Outcome::kSuccess, Outcome::kDropped, Outcome::kIgnored}) {
    outcomes_[static_cast<int>(o)] =
        sink.Counter(metrics::kOutcomes, {name_, std::string(OutcomeName(o))});
  }
  latency_[0] = sink.Histogram(metrics::kLatency, {name_, "success"});
  latency_[1] = sink.Histogram(metrics::kLatency, {name_, "dropped"});
  in_flight_gauge_ = sink.Gauge(metrics::kInFlight, {name_});
  limit_gauge_ = sink.Gauge(metrics::kLimit, {name_});
  band_gauge_ = sink.Gauge(metrics::kLatencyBand, {name_});
  queued_gauge_ = sink.Gauge(metrics::kQueued, {name_});
  in_flight_gauge_->Set(0);
  queued_gauge_->Set(0);
  reported_limit_.store(limit_->current(), std::memory_order_relaxed);
  limit_gauge_->Set(limit_->current());
  band_gauge_->Set(limit_->latency_band());
  // The algorithm's bounds never change: set once.
  sink.Gauge(metrics::kLimitMin, {name_})->Set(limit_->min_limit());
  sink.Gauge(metrics::kLimitMax, {name_})->Set(limit_->max_limit());
}

ConcurrencyLimiter::~ConcurrencyLimiter() = default;

ConcurrencyLimiter::Shares ConcurrencyLimiter::ComputeShares(
    int64_t limit) const {
  Shares shares;
  shares.reserved_sum = 0;
  for (int p = 0; p < kNumPriorities; ++p) {
    const int64_t reserved = limit * guaranteed_ppm_[p] / kPpm;
    shares.reserved[p] = static_cast<int32_t>(reserved);
    shares.reserved_sum += static_cast<int32_t>(reserved);
    shares.cap[p] = static_cast<int32_t>(std::max<int64_t>(
        std::max<int64_t>(reserved, 1), limit * max_ppm_[p] / kPpm));
  }
  return shares;
}

int ConcurrencyLimiter::reserved(Priority priority, int limit) const {
  return ComputeShares(limit).reserved[static_cast<int>(priority)];
}

int ConcurrencyLimiter::cap(Priority priority, int limit) const {
  return ComputeShares(limit).cap[static_cast<int>(priority)];
}

// An admission reads the clock once, after its compare-exchange, for the
// permit's start: the write starts once admitted, and a thread that releases
// a permit and admits its next write updates the in-flight word twice in a
// row, while it still holds the cache line. With a clock read between them
// the other core took the line in between: at two threads on the real clock
// an admission and release cost 3.8 clock reads more than on the simulated
// clock, where they read it twice (bench/spillway_bench.cc; 1.0 with this
// and the release's fetch_sub). Only a decision that involves a priority
// hold reads the clock before, and the permit then starts at that reading.
class ConcurrencyLimiter::AdmissionTime {
 public:
  explicit AdmissionTime(const Clock& clock) : clock_(clock) {}

  MonotonicTime Get() {
    if (!read_) {
      now_ = clock_.Now();
      read_ = true;
    }
    return now_;
  }
  int64_t Ns() { return Nanos(Get()); }

 private:
  const Clock& clock_;
  MonotonicTime now_{};
  bool read_ = false;
};

ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool ConcurrencyLimiter::Admissible(
    int p, uint64_t word, int64_t total, int64_t limit, const Shares& shares,
    AdmissionTime* now, Reason* why) {
  const int64_t mine = Count(word, p);
  if (total >= limit) {
    // Also covers a limit lowered below what is in flight: reserved slots
    // are only guaranteed within the current limit.
    *why = Reason::kLimitReached;
    return false;
  }
  if (mine < shares.reserved[p]) return true;
  // Beyond its reservation: within its cap, and only from the shared pool,
  // i.e. sum over q of max(n(q), reserved(q)) < limit.
  if (mine >= shares.cap[p]) {
    *why = Reason::kPartitionLimit;
    return false;
  }
  // 0: no hold (the common case, decided without reading the clock).
  if (int64_t hold = hold_until_ns_[p].load(std::memory_order_relaxed);
      hold != 0) {
    if (hold > now->Ns()) {
      // A higher priority was refused moments ago: freed capacity goes to
      // it.
      *why = Reason::kPriorityPressure;
      return false;
    }
    // Expired: clear it, unless a refusal has just renewed it.
    hold_until_ns_[p].compare_exchange_strong(hold, 0,
                                              std::memory_order_relaxed);
  }
  // occupied <= total + reserved_sum: most often that settles it.
  if (total + shares.reserved_sum < limit) return true;
  int64_t occupied = 0;
  for (int q = 0; q < kNumPriorities; ++q) {
    occupied += std::max<int64_t>(Count(word, q), shares.reserved[q]);
  }
  if (occupied >= limit) {
    *why = Reason::kLimitReached;
    return false;
  }
  return true;
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool ConcurrencyLimiter::TryAdmit(
    int p, AdmissionTime* now, int* in_flight, Reason* why) {
  const int64_t limit = limit_->current();
  Shares computed;
  const Shares* shares = &computed;
  // Unsigned: a limit below zero (a faulty Limit) computes, never indexes.
  if (ABSL_PREDICT_TRUE(static_cast<uint64_t>(limit) <
                        static_cast<uint64_t>(shares_size_))) {
    shares = &shares_[limit];
  } else {
    computed = ComputeShares(limit);
  }
  // seq_cst, the load and the compare-exchange: they pair with the
  // releaser's compare-exchange and load of waiting_ (see Acquire).
  uint64_t word = counts_.load(std::memory_order_seq_cst);
  internal::Backoff backoff;
  for (;;) {
    const int64_t total = Total(word);
    if (!Admissible(p, word, total, limit, *shares, now, why)) return false;
    if (counts_.compare_exchange_strong(word, word + One(p),
                                        std::memory_order_seq_cst,
                                        std::memory_order_seq_cst)) {
      *in_flight = static_cast<int>(total + 1);
      return true;
    }
    // Another core won the line: let it run a streak, then re-read.
    backoff.Pause();
    word = counts_.load(std::memory_order_seq_cst);
  }
}

ABSL_ATTRIBUTE_NOINLINE Admission
ConcurrencyLimiter::Reject(int p, Reason why, AdmissionTime* now) {
  if (report_) rejected_[p][static_cast<int>(why)]->Increment();
  if (priority_hold_ns_ > 0 && p < kNumPriorities - 1 &&
      why != Reason::kPriorityPressure) {
    const int64_t until = now->Ns() + priority_hold_ns_;
    for (int lower = p + 1; lower < kNumPriorities; ++lower) {
      std::atomic<int64_t>& hold = hold_until_ns_[lower];
      if (until - hold.load(std::memory_order_relaxed) >
          priority_hold_ns_ / 8) {
        hold.store(until, std::memory_order_relaxed);
      }
    }
  }
  return Admission::Rejected(
      Rejection{Gate::kConcurrencyLimit, why, retry_after()});
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline Admission ConcurrencyLimiter::Admit(
    int p, MonotonicTime start, int in_flight) {
  if (report_) {
    admitted_[p]->Increment();
    in_flight_gauge_->Set(in_flight);
  }
  return Admission::Admitted(
      Permit(this, start, in_flight, static_cast<Priority>(p)));
}

Admission ConcurrencyLimiter::TryAcquire(Priority priority) {
  const int p = static_cast<int>(priority);
  AdmissionTime now(clock_);
  if ((waiting_.load(std::memory_order_relaxed) & AtLeast(p)) != 0) {
    // Someone of the same or a higher priority waits: do not overtake.
    return Reject(p, Reason::kLimitReached, &now);
  }
  int in_flight;
  Reason why;
  if (!TryAdmit(p, &now, &in_flight, &why)) return Reject(p, why, &now);
  return Admit(p, now.Get(), in_flight);
}

Admission ConcurrencyLimiter::Acquire(MonotonicTime deadline,
                                      Priority priority) {
  const int p = static_cast<int>(priority);
  int in_flight;
  Reason why = Reason::kLimitReached;
  AdmissionTime now(clock_);
  if ((waiting_.load(std::memory_order_relaxed) & AtLeast(p)) == 0 &&
      TryAdmit(p, &now, &in_flight, &why)) {
    return Admit(p, now.Get(), in_flight);
  }
  if (max_queued_ == 0) return Reject(p, why, &now);

  WaitQueue& q = *queue_;
  internal::MutexLock lock(&q.mu);
  if (q.size >= max_queued_) return Reject(p, Reason::kQueueFull, &now);

  // Become visible to releasers first, then try once more: a release either
  // sees this waiter (and serves the queue) or freed its slot before the
  // increment (and this attempt sees that slot). Both sides are seq_cst.
  waiting_.fetch_add(One(p), std::memory_order_seq_cst);
  AdmissionTime retry_now(clock_);
  if (!q.HasAhead(p, queue_order_) &&
      TryAdmit(p, &retry_now, &in_flight, &why)) {
    waiting_.fetch_sub(One(p), std::memory_order_seq_cst);
    return Admit(p, retry_now.Get(), in_flight);
  }
  WaitQueue::Waiter w(p);
  q.Push(&w, queue_order_);
  queued_gauge_->Set(q.size);

  std::unique_lock<std::mutex> native(q.mu.native(), std::adopt_lock);
  const bool granted =
      clock_.WaitUntil(w.cv, native, deadline, [&w] { return w.granted; });
  native.release();  // `lock` still owns the mutex.

  if (!granted) {
    q.Remove(&w);
    waiting_.fetch_sub(One(p), std::memory_order_seq_cst);
    queued_gauge_->Set(q.size);
    AdmissionTime expired_now(clock_);
    return Reject(p, Reason::kDeadlineExceeded, &expired_now);
  }
  return Admit(p, w.start, w.in_flight);
}

void ConcurrencyLimiter::ServeWaiters() {
  WaitQueue& q = *queue_;
  internal::MutexLock lock(&q.mu);
  // One reading for every decision of this pass (taken under the lock).
  AdmissionTime now(clock_);
  bool served = true;
  while (served) {
    served = false;
    for (int p = 0; p < kNumPriorities && !served; ++p) {
      WaitQueue::Waiter* w = q.head[p];
      if (w == nullptr) continue;
      int in_flight;
      Reason why;
      if (!TryAdmit(p, &now, &in_flight, &why)) continue;
      q.Remove(w);
      waiting_.fetch_sub(One(p), std::memory_order_seq_cst);
      w->granted = true;
      w->in_flight = in_flight;
      w->start = clock_.Now();
      w->cv.notify_one();
      served = true;
    }
  }
  queued_gauge_->Set(q.size);
}

void ConcurrencyLimiter::Release(const Permit& permit, Outcome outcome,
                                 MonotonicTime now) {
  const int p = static_cast<int>(permit.priority_);
  if (outcome != Outcome::kIgnored) {
    const std::chrono::nanoseconds rtt =
        std::chrono::duration_cast<std::chrono::nanoseconds>(now -
                                                             permit.start_);
    const int64_t rtt_ns = rtt.count();
    limit_->OnSample(LimitSample{rtt, permit.in_flight_,
                                 outcome == Outcome::kDropped, permit.start_,
                                 now});
    if (outcome == Outcome::kSuccess) {
      const int64_t now_ns = Nanos(now);
      const int64_t old = srtt_ns_.load(std::memory_order_relaxed);
      if (old == 0 || now_ns - srtt_at_ns_.load(std::memory_order_relaxed) >=
                          kSrttPeriodNs) {
        const int64_t sample = std::max<int64_t>(1, rtt_ns);
        srtt_ns_.store(old == 0 ? sample : old + (sample - old) / 8,
                       std::memory_order_relaxed);
        srtt_at_ns_.store(now_ns, std::memory_order_relaxed);
      }
    }
    if (report_) {
      latency_[static_cast<int>(outcome)]->Observe(static_cast<double>(rtt_ns) *
                                                   1e-9);
    }
  }
  // The sample first, the slot last: the limit is updated before the slot
  // frees.
  // seq_cst: pairs with the waiter's increment of waiting_ (see Acquire).
  // One read-modify-write (the permit's slot is counted, so the count
  // cannot underflow): it takes the line once, where a load and a
  // compare-exchange take it shared and then exclusive.
  const uint64_t before = counts_.fetch_sub(One(p), std::memory_order_seq_cst);
  if (report_) {
    outcomes_[static_cast<int>(outcome)]->Increment();
    in_flight_gauge_->Set(static_cast<double>(Total(before) - 1));
    const int limit = limit_->current();
    if (reported_limit_.load(std::memory_order_relaxed) != limit) {
      reported_limit_.store(limit, std::memory_order_relaxed);
      limit_gauge_->Set(limit);
      // The band moves only when a window closes, as the limit does.
      band_gauge_->Set(limit_->latency_band());
    }
  }
  if (waiting_.load(std::memory_order_seq_cst) != 0) ServeWaiters();
}

int ConcurrencyLimiter::in_flight() const {
  return static_cast<int>(Total(counts_.load(std::memory_order_relaxed)));
}

int ConcurrencyLimiter::in_flight(Priority priority) const {
  return static_cast<int>(Count(counts_.load(std::memory_order_relaxed),
                                static_cast<int>(priority)));
}

int ConcurrencyLimiter::queued() const {
  return static_cast<int>(Total(waiting_.load(std::memory_order_relaxed)));
}

absl::Duration ConcurrencyLimiter::retry_after() const {
  const int64_t srtt = srtt_ns_.load(std::memory_order_relaxed);
  return srtt == 0 ? absl::Milliseconds(1) : absl::Nanoseconds(srtt);
}

}  // namespace spillway
