// OverloadDetector: says why a throttle is shedding — more writes arrived,
// or the database got slower.
//
// When writes are refused, the people on call need to know where to look
// first. A misrouted load balancer and a database that slowed down both end
// in shedding, but the fix is in different places. The detector watches
// what one throttle sees and names the cause:
//
//   offered_load_surge  the offered write rate is far above its recent
//                       baseline (and the throttle sheds or latency is up):
//                       look upstream — balancer weights, clients, retries;
//   database_slowdown   the throttle sheds, or latency is far above its
//                       baseline, at an offered rate near its baseline: the
//                       database absorbs less than it did — look at it;
//   none                no overload, or no baseline learnt yet.
//
// WriteThrottle owns one and feeds it (see WriteThrottleOptions::overload);
// the cause is the gauge `spillway_overload_cause{throttle,cause}`:
//
//   auto throttle = spillway::WriteThrottle::Create(
//       {.name = "orders", .overload = {.surge_ratio = 3}});
//   ... (*throttle)->Admit({.attempt = attempt_from_request_header}) ...
//   if ((*throttle)->overload_cause() ==
//       spillway::OverloadCause::kOfferedLoadSurge) { ... }
//   spillway::OverloadSnapshot s =
//       (*throttle)->overload_detector().snapshot();
//
// A change of cause is one log line:
//
//   spillway warning: throttle orders: overload cause offered_load_surge
//   (offered 2950/s = 3.1x baseline 950/s, 58% shed (58% by the concurrency
//   limit), latency 1.9 ms = 1.1x baseline 1.7 ms); look upstream first:
//   load balancer weights, clients, retries
//
// The algorithm: every `interval` (default 1 s) the detector closes an
// interval of offered writes A (every attempt, admitted or refused by any
// gate), of which D are first attempts (demand: A minus the writes the
// caller marked as retries, WriteRequest::attempt > 1), refusals (by the
// concurrency limiter alone, R_lim, and by any gate, R) and the mean latency
// L of completed writes. With baselines B_D (demand per second) and B_L:
//   overloaded      = R / A >= shed_ratio  or  L >= latency_ratio * B_L
//   surge           = overloaded and D >= surge_ratio * B_D
//   slowdown        = not surge and (R_lim / A >= shed_ratio or
//                                    L >= latency_ratio * B_L)
// Why demand and not attempts: clients retry what is refused, so a slowdown
// multiplies the attempts — in the simulator's slowdown (capacity halved,
// three retries) attempts rise to 3x their baseline while demand stays at
// 1x. Mark retries (WriteRequest::attempt) for the cause to be right; when
// they are not marked, a slowdown with retrying clients can read as a
// surge.
// Refusals by the token bucket and the fleet budget count towards a surge
// but not towards a slowdown: they are configured rates, not a sign of the
// database. A cause takes over after `confirm_intervals` consecutive
// intervals agree (hysteresis, so one noisy second does not flip it).
// Baselines are exponentially weighted moving averages with time constant
// `baseline_window`, updated only in intervals that are not overloaded, so a
// surge or a slowdown never becomes the new normal while it lasts. Until
// `warmup` of calm intervals has been seen the cause stays `none`: a
// process that starts in the middle of an overload cannot tell its causes
// apart, and says nothing rather than something wrong. Intervals with fewer
// than `min_writes` offered writes are not judged (too few to tell).
//
// Sampling: every write the throttle is offered (OnOffered) and every write
// that completed as success or dropped (OnCompleted); ignored writes give
// no latency.
//
// Locking: OnOffered and OnCompleted add to one of 16 per-thread shards
// (relaxed fetch_add on the thread's own 128-byte line). The thread whose
// call finds the interval over takes a flag with one exchange, sums the
// shards and decides; the others never wait. On a change of cause that
// thread also updates the gauge and writes the log line (through the
// LogSink, rate-limited by default), once per change.
//
// Thread safety: all methods are thread-safe.

#ifndef SPILLWAY_OVERLOAD_CAUSE_H_
#define SPILLWAY_OVERLOAD_CAUSE_H_

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "spillway/clock.h"
#include "spillway/log.h"
#include "spillway/metrics.h"

namespace spillway {

enum class OverloadCause : uint8_t {
  kNone = 0,
  kOfferedLoadSurge = 1,
  kDatabaseSlowdown = 2,
};
inline constexpr int kNumOverloadCauses = 3;

// "none", "offered_load_surge", "database_slowdown": the values of the
// `cause` metric label. Thread-safe.
absl::string_view OverloadCauseName(OverloadCause cause);

struct OverloadDetectorOptions {
  // Value of the `throttle` metric label and of the log line. Default:
  // "default". REQUIRES: not empty.
  std::string name = "default";

  // Length of one evaluation interval. Default: 1 s. REQUIRES: > 0.
  absl::Duration interval = absl::Seconds(1);

  // Time constant of the baselines' moving averages. Default: 60 s.
  // REQUIRES: >= interval.
  absl::Duration baseline_window = absl::Seconds(60);

  // Calm time needed before any cause is named. Default: 5 s.
  // REQUIRES: >= 0.
  absl::Duration warmup = absl::Seconds(5);

  // Offered rate over its baseline that counts as a surge. Default: 2.
  // REQUIRES: > 1.
  double surge_ratio = 2.0;

  // Fraction of offered writes refused that counts as overload.
  // Default: 0.05. REQUIRES: in (0, 1].
  double shed_ratio = 0.05;

  // Mean latency over its baseline that counts as overload. Default: 2.
  // REQUIRES: > 1.
  double latency_ratio = 2.0;

  // Consecutive intervals that must agree before the cause changes.
  // Default: 2. REQUIRES: >= 1.
  int confirm_intervals = 2;

  // Intervals with fewer offered writes are not judged. Default: 10.
  // REQUIRES: >= 1.
  int min_writes = 10;

  // Called with the new cause after each change (and its log line), on the
  // thread that closed the interval: keep it short and non-blocking.
  // Default: none.
  std::function<void(OverloadCause)> on_change;

  // Default: nullptr, meaning SteadyClock::Default(). REQUIRES: outlives
  // the detector.
  Clock* clock = nullptr;
  // Default: nullptr, meaning NoopMetricsSink(). REQUIRES: outlives it.
  MetricsSink* metrics = nullptr;
  // Default: nullptr, meaning DefaultLogSink(). REQUIRES: outlives it.
  LogSink* log = nullptr;
};

// Checks every field; the error names the field and its value. Thread-safe.
absl::Status ValidateOverloadDetectorOptions(
    const OverloadDetectorOptions& options);

// What the detector saw in its last judged interval.
struct OverloadSnapshot {
  OverloadCause cause = OverloadCause::kNone;
  // Offered first attempts (demand) per second, and their baseline (0
  // before warm-up).
  double offered_per_second = 0.0;
  double offered_baseline = 0.0;
  // Fraction of offered writes refused (any gate / the limiter).
  double shed = 0.0;
  double limiter_shed = 0.0;
  // Mean latency of completed writes, and its baseline.
  absl::Duration latency = absl::ZeroDuration();
  absl::Duration latency_baseline = absl::ZeroDuration();
  // True once `warmup` of calm intervals has been seen.
  bool warm = false;
};

class OverloadDetector {
 public:
  // Which gate, if any, refused an offered write.
  enum class Refusal : uint8_t { kAdmitted, kByLimiter, kByOtherGate };

  // Validates `options`. Thread-safe.
  static absl::StatusOr<std::unique_ptr<OverloadDetector>> Create(
      OverloadDetectorOptions options);

  ~OverloadDetector();
  OverloadDetector(const OverloadDetector&) = delete;
  OverloadDetector& operator=(const OverloadDetector&) = delete;

  // One offered write at `now`; `retry` when the caller marked it as a
  // retry (WriteRequest::attempt > 1). Thread-safe; lock-free.
  void OnOffered(MonotonicTime now, Refusal refusal, bool retry = false);
  // One write that completed (success or dropped) at `now` after `latency`.
  // Thread-safe; lock-free.
  void OnCompleted(MonotonicTime now, std::chrono::nanoseconds latency);

  // The current cause. Thread-safe; the value may be stale at once.
  OverloadCause cause() const {
    return static_cast<OverloadCause>(cause_.load(std::memory_order_relaxed));
  }
  // The last judged interval. Thread-safe (takes a lock; not for the hot
  // path).
  OverloadSnapshot snapshot() const;

 private:
  static constexpr int kShards = 16;
  // One thread's counts for the open interval; the closer takes them with
  // exchange(0), so a count racing the close lands in the next interval.
  struct alignas(128) Shard {
    std::atomic<uint64_t> offered{0};
    std::atomic<uint64_t> retries{0};
    std::atomic<uint64_t> refused{0};
    std::atomic<uint64_t> refused_by_limiter{0};
    std::atomic<uint64_t> completed{0};
    std::atomic<uint64_t> latency_sum_ns{0};
  };

  explicit OverloadDetector(OverloadDetectorOptions options);
  void MaybeClose(int64_t now_ns);
  void Close(int64_t now_ns);
  OverloadCause Judge(double seconds, uint64_t offered, uint64_t retries,
                      uint64_t refused, uint64_t refused_by_limiter,
                      uint64_t completed, uint64_t latency_sum_ns);
  void Publish(OverloadCause cause);

  const OverloadDetectorOptions options_;
  Clock& clock_;
  LogSink& log_;
  const int64_t interval_ns_;
  std::array<Shard, kShards> shards_;
  // When the open interval is over; read by every call, moved on by the
  // closer.
  alignas(128) std::atomic<int64_t> close_at_ns_;
  // Set while one thread closes an interval.
  std::atomic<bool> closing_{false};
  // The published cause, an OverloadCause.
  std::atomic<uint8_t> cause_{0};

  // The closer's state: only the thread holding `closing_` touches it, and
  // snapshot() reads it under `snapshot_mu_` (a copy published at close).
  int64_t opened_ns_ = 0;
  double offered_baseline_ = 0.0;
  double latency_baseline_s_ = 0.0;
  double calm_seconds_ = 0.0;
  OverloadCause candidate_ = OverloadCause::kNone;
  int candidate_intervals_ = 0;
  struct Published;
  std::unique_ptr<Published> published_;

  std::array<GaugeHandle*, kNumOverloadCauses> cause_gauge_{};
  GaugeHandle* offered_ratio_gauge_;
  GaugeHandle* latency_ratio_gauge_;
};

}  // namespace spillway

#endif  // SPILLWAY_OVERLOAD_CAUSE_H_
