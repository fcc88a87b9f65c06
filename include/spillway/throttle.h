// WriteThrottle: the one call a service makes before each database write.
//
// A write passes three gates, in this order, and runs only if all admit it:
//   1. ConcurrencyLimiter  adaptive limit on writes in flight (local);
//   2. TokenBucket         local rate and burst (optional);
//   3. LeasedBudget        fleet-wide rate shared through a store, e.g.
//                          Redis via spillway::redis::GlobalBudget
//                          (optional; injected, so core needs no hiredis).
// No gate keeps budget for a write a later gate refused: a refusal by the
// bucket releases the limiter's slot (without a sample); a refusal by the
// fleet budget also returns the bucket's tokens. A rejection names the gate
// that refused, why, and when to retry.
//
//   auto throttle = spillway::WriteThrottle::Create({.name = "orders"});
//   spillway::ThrottleAdmission a = (*throttle)->Admit({.priority =
//       spillway::Priority::kCritical});
//   if (!a.ok()) return Overloaded(a.rejection().retry_after);
//   spillway::ThrottlePermit permit = std::move(a).permit();
//   if (WriteOrder().ok()) permit.Success(); else permit.Dropped();
//
// or, for any database client, `Run`: it admits, runs the callable and
// records the outcome:
//
//   absl::StatusOr<int64_t> id = (*throttle)->Run([&] { return Insert(o); });
//   if (auto r = spillway::RejectionOf(id.status())) ... // refused
//
// Outcomes in Run: a normal return is Success; the callable may decide
// itself through the `WriteContext&` it can take (`ctx.Dropped()`,
// `ctx.Ignore()`); a returned non-OK absl::Status / StatusOr is classified by
// `status_classifier` (default: DeadlineExceeded, Unavailable,
// ResourceExhausted and Aborted are Dropped, any other error Ignore); an
// exception is classified by `exception_classifier` (default: Ignore) and
// rethrown unchanged.
//
// Shadow mode (per gate, for a safe roll-out): the gate decides and counts
// as usual — its `spillway_rejected_total` shows what it would refuse — but
// a refused write is let through, counted in `spillway_shadow_passed_total`
// once every gate has let it through (a write a later gate refused did not
// run). A write the limiter let through in shadow runs without a slot and
// gives the limit algorithm no sample; a limiter in shadow never makes a
// write wait in its queue, deadline or not.
//
// Deadlines: with `WriteRequest::deadline` set, the limiter lets the write
// wait in its queue until then (`ConcurrencyLimiter::Acquire`), unless the
// limiter is in shadow mode; the bucket and the budget never wait. Database
// wrappers derive a statement timeout from it
// (spillway::pqxx::ThrottledWriter).
//
// Overload cause: the throttle feeds every offered write and every
// completed one to an OverloadDetector (overload_cause.h), which names the
// cause of shedding — offered_load_surge or database_slowdown — in the
// gauge `spillway_overload_cause` and one log line per change. Refusals by a
// gate in shadow mode count as refusals there: the cause says what the
// gates decided.
//
// Locking: Admit without a deadline, and the release of a permit, are
// lock-free and allocation-free (each gate's own hot path); Run adds no lock.
//
// Thread safety: all methods are thread-safe; a permit is used by one thread
// at a time.

#ifndef SPILLWAY_THROTTLE_H_
#define SPILLWAY_THROTTLE_H_

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "spillway/clock.h"
#include "spillway/concurrency_limiter.h"
#include "spillway/leased_budget.h"
#include "spillway/log.h"
#include "spillway/metrics.h"
#include "spillway/overload_cause.h"
#include "spillway/rejection.h"
#include "spillway/token_bucket.h"

namespace spillway {

// One write's admission request.
struct WriteRequest {
  // Default: kNormal.
  Priority priority = Priority::kNormal;
  // Tokens the write takes from the bucket and the fleet budget (the limiter
  // always counts one slot). Default: 1. Values below 1 count as 1.
  int64_t cost = 1;
  // When set, the write may wait in the limiter's queue until then, and
  // database wrappers bound the statement by it. Default: unset (no wait).
  std::optional<MonotonicTime> deadline;
  // Which attempt of the logical write this is: 1 for the first, 2 for the
  // first retry, ... (e.g. from gRPC's grpc-previous-rpc-attempts or
  // Envoy's x-envoy-attempt-count). Only the overload cause reads it:
  // retries are not new demand. Default: 1. Values below 1 count as 1.
  int attempt = 1;
};

// Which gates run in shadow mode: decide and count, never refuse.
struct ShadowOptions {
  bool concurrency_limit = false;  // Default: false.
  bool token_bucket = false;       // Default: false.
  bool global_budget = false;      // Default: false.
};

struct WriteThrottleOptions {
  // Value of the `throttle` metric label; also the limiter's and the
  // bucket's name. Default: "default". REQUIRES: not empty.
  std::string name = "default";

  // The concurrency limiter (its name, clock and metrics are overridden by
  // this struct's). Default: see ConcurrencyLimiterOptions (KneeLimit).
  ConcurrencyLimiterOptions limiter;

  // The local token bucket (name, clock and metrics overridden). Default:
  // unset, meaning no local rate gate.
  std::optional<TokenBucketOptions> bucket;

  // The fleet-wide budget, e.g. from spillway::redis::GlobalBudget::Budget().
  // Default: nullptr, meaning none. REQUIRES: when set, outlives the
  // throttle.
  LeasedBudget* budget = nullptr;

  // Default: no gate in shadow mode.
  ShadowOptions shadow;

  // The overload-cause detector (its name, clock, metrics and log are
  // overridden by this struct's). On a change to database_slowdown the
  // throttle also hints its limit (Limit::OnDatabaseSlowdown: KneeLimit
  // re-measures its baseline once), then calls `overload.on_change` if set.
  // Default: see OverloadDetectorOptions.
  OverloadDetectorOptions overload;

  // How Run() classifies a non-OK status returned by its callable.
  // Default: nullptr, meaning DefaultStatusClassifier.
  std::function<Outcome(const absl::Status&)> status_classifier;

  // How Run() classifies an exception thrown by its callable (which is then
  // rethrown). Default: nullptr, meaning Ignore for every exception.
  std::function<Outcome(std::exception_ptr)> exception_classifier;

  // Time source. Default: nullptr, meaning SteadyClock::Default().
  // REQUIRES: when set, outlives the throttle.
  Clock* clock = nullptr;

  // Default: nullptr, meaning NoopMetricsSink(). REQUIRES: outlives it.
  MetricsSink* metrics = nullptr;

  // Where state changes are logged (the overload cause). Default: nullptr,
  // meaning DefaultLogSink(). REQUIRES: when set, outlives the throttle.
  LogSink* log = nullptr;
};

// DeadlineExceeded, Unavailable, ResourceExhausted, Aborted -> kDropped;
// anything else -> kIgnored (OK -> kSuccess). Thread-safe.
Outcome DefaultStatusClassifier(const absl::Status& status);

// Checks every field (and the nested limiter and bucket options); the error
// names the field and its value. Thread-safe.
absl::Status ValidateWriteThrottleOptions(const WriteThrottleOptions& options);

// The Unavailable status Run() returns for a refused write: its message is
// `rejection.ToString()` and it carries the rejection as a payload
// (retry_after to the nanosecond; an infinite one stays infinite). Equal
// rejections give equal statuses. Thread-safe.
absl::Status RejectionStatus(const Rejection& rejection);
// The rejection carried by `status`, if it came from RejectionStatus.
// Thread-safe.
std::optional<Rejection> RejectionOf(const absl::Status& status);

class WriteThrottle;

// The right to run one admitted write. Move-only; the destructor is Ignore.
// Thread safety: one thread at a time per permit.
class ThrottlePermit {
 public:
  ThrottlePermit() = default;
  ThrottlePermit(ThrottlePermit&& other) noexcept;
  ThrottlePermit& operator=(ThrottlePermit&& other) noexcept;
  ThrottlePermit(const ThrottlePermit&) = delete;
  ThrottlePermit& operator=(const ThrottlePermit&) = delete;
  ~ThrottlePermit() { Ignore(); }

  // The write completed / the database was congested / no signal.
  void Success() { Release(Outcome::kSuccess); }
  void Dropped() { Release(Outcome::kDropped); }
  void Ignore() { Release(Outcome::kIgnored); }

  // True until released or moved from.
  bool valid() const { return throttle_ != nullptr; }
  // When the write was admitted, and the request's deadline.
  MonotonicTime start() const { return start_; }
  const std::optional<MonotonicTime>& deadline() const { return deadline_; }
  const WriteRequest& request() const { return request_; }

 private:
  friend class WriteThrottle;
  void Release(Outcome outcome);
  Permit limiter_permit_;  // Empty when the limiter let it through in shadow.
  // The throttle that admitted the write (its clock and overload detector
  // are fed on release); null once released or moved from.
  WriteThrottle* throttle_ = nullptr;
  MonotonicTime start_{};
  std::optional<MonotonicTime> deadline_;
  WriteRequest request_;
};

// A permit or a rejection. A value type.
class ThrottleAdmission {
 public:
  bool ok() const { return permit_.valid(); }
  explicit operator bool() const { return ok(); }
  // REQUIRES: ok().
  ThrottlePermit& permit() & { return permit_; }
  ThrottlePermit&& permit() && { return std::move(permit_); }
  // REQUIRES: !ok().
  const Rejection& rejection() const { return rejection_; }

 private:
  friend class WriteThrottle;
  ThrottlePermit permit_;
  Rejection rejection_;
};

// What Run() hands a callable that takes one: the request and the permit's
// times, and overrides of the outcome.
class WriteContext {
 public:
  const WriteRequest& request() const { return permit_.request(); }
  MonotonicTime start() const { return permit_.start(); }
  const std::optional<MonotonicTime>& deadline() const {
    return permit_.deadline();
  }
  // Overrides the outcome Run() records.
  void Success() { outcome_ = Outcome::kSuccess; }
  void Dropped() { outcome_ = Outcome::kDropped; }
  void Ignore() { outcome_ = Outcome::kIgnored; }
  const std::optional<Outcome>& outcome() const { return outcome_; }

 private:
  friend class WriteThrottle;
  explicit WriteContext(const ThrottlePermit& permit) : permit_(permit) {}
  const ThrottlePermit& permit_;
  std::optional<Outcome> outcome_;
};

class WriteThrottle {
 public:
  // Validates `options` and builds the gates. Thread-safe.
  static absl::StatusOr<std::unique_ptr<WriteThrottle>> Create(
      WriteThrottleOptions options);

  WriteThrottle(const WriteThrottle&) = delete;
  WriteThrottle& operator=(const WriteThrottle&) = delete;

  // Admits one write through every configured gate, or returns the first
  // refusal (gates in shadow mode never refuse). Thread-safe; lock-free
  // without a deadline, may wait with one.
  ThrottleAdmission Admit(const WriteRequest& request = {});

  // Admits, runs `f` and records its outcome (see the file comment). `f` is
  // callable as f() or f(WriteContext&) and returns void, absl::Status,
  // absl::StatusOr<T> or a value T. Returns what `f` returned (void ->
  // absl::Status, T -> absl::StatusOr<T>), or RejectionStatus() when
  // refused, without calling `f`. Thread-safe.
  template <typename F>
  auto Run(F&& f, const WriteRequest& request = {});

  // The gates, for inspection. Thread-safe.
  ConcurrencyLimiter& limiter() { return *limiter_; }
  TokenBucket* bucket() { return bucket_.get(); }
  LeasedBudget* budget() { return budget_; }
  const std::string& name() const { return name_; }

  // What the throttle names as the cause of overload now. Thread-safe; the
  // value may be stale at once.
  OverloadCause overload_cause() const { return detector_->cause(); }
  // The overload detector, for its snapshot(). Thread-safe.
  const OverloadDetector& overload_detector() const { return *detector_; }

 private:
  explicit WriteThrottle(WriteThrottleOptions options,
                         std::unique_ptr<ConcurrencyLimiter> limiter,
                         std::unique_ptr<TokenBucket> bucket,
                         std::unique_ptr<OverloadDetector> detector);
  friend class ThrottlePermit;  // Release feeds clock_ and detector_.
  Outcome Classify(const absl::Status& status) const;
  Outcome Classify(std::exception_ptr e) const;

  const std::string name_;
  Clock& clock_;
  const ShadowOptions shadow_;
  const std::unique_ptr<ConcurrencyLimiter> limiter_;
  const std::unique_ptr<TokenBucket> bucket_;
  LeasedBudget* const budget_;
  const std::unique_ptr<OverloadDetector> detector_;
  const std::function<Outcome(const absl::Status&)> status_classifier_;
  const std::function<Outcome(std::exception_ptr)> exception_classifier_;
  // spillway_shadow_passed_total by gate and priority, bound at
  // construction.
  CounterHandle* shadow_passed_[kNumGates][kNumPriorities];
};

// ---------------------------------------------------------------------------
// Implementation details of Run.

namespace internal {
template <typename T>
struct IsStatusOr : std::false_type {};
template <typename T>
struct IsStatusOr<absl::StatusOr<T>> : std::true_type {};

template <typename F>
decltype(auto) InvokeWrite(F& f, WriteContext& ctx) {
  if constexpr (std::is_invocable_v<F&, WriteContext&>) {
    return f(ctx);
  } else {
    return f();
  }
}
}  // namespace internal

template <typename F>
auto WriteThrottle::Run(F&& f, const WriteRequest& request) {
  using R = std::decay_t<decltype(internal::InvokeWrite(
      f, std::declval<WriteContext&>()))>;
  using Result = std::conditional_t<
      std::is_void_v<R> || std::is_same_v<R, absl::Status>, absl::Status,
      std::conditional_t<internal::IsStatusOr<R>::value, R, absl::StatusOr<R>>>;
  ThrottleAdmission admission = Admit(request);
  if (!admission.ok()) return Result(RejectionStatus(admission.rejection()));
  ThrottlePermit permit = std::move(admission).permit();
  WriteContext ctx(permit);
  auto finish = [&](Outcome fallback) {
    switch (ctx.outcome().value_or(fallback)) {
      case Outcome::kSuccess:
        permit.Success();
        break;
      case Outcome::kDropped:
        permit.Dropped();
        break;
      case Outcome::kIgnored:
        permit.Ignore();
        break;
    }
  };
  try {
    if constexpr (std::is_void_v<R>) {
      internal::InvokeWrite(f, ctx);
      finish(Outcome::kSuccess);
      return Result(absl::OkStatus());
    } else if constexpr (std::is_same_v<R, absl::Status>) {
      absl::Status s = internal::InvokeWrite(f, ctx);
      finish(Classify(s));
      return s;
    } else if constexpr (internal::IsStatusOr<R>::value) {
      R r = internal::InvokeWrite(f, ctx);
      finish(Classify(r.status()));
      return r;
    } else {
      Result r(internal::InvokeWrite(f, ctx));
      finish(Outcome::kSuccess);
      return r;
    }
  } catch (...) {
    finish(Classify(std::current_exception()));
    throw;
  }
}

}  // namespace spillway

#endif  // SPILLWAY_THROTTLE_H_
