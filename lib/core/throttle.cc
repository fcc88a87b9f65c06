#include "spillway/throttle.h"

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace spillway {
namespace {

// Payload of RejectionStatus, kPayloadSize bytes: the gate, the reason, then
// retry_after in nanoseconds as a little-endian int64, kInfiniteNs meaning
// InfiniteDuration(). Written byte by byte, so equal rejections give equal
// bytes (no padding) on every host.
constexpr char kRejectionUrl[] = "type.spillway.dev/spillway.Rejection";
constexpr size_t kPayloadSize = 2 + 8;
constexpr int64_t kInfiniteNs = std::numeric_limits<int64_t>::max();

}  // namespace

Outcome DefaultStatusClassifier(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return Outcome::kSuccess;
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kAborted:
      return Outcome::kDropped;
    default:
      return Outcome::kIgnored;
  }
}

absl::Status RejectionStatus(const Rejection& rejection) {
  absl::Status s = absl::UnavailableError(rejection.ToString());
  // ToInt64Nanoseconds saturates: infinity (and beyond 292 years) is max.
  const uint64_t ns =
      static_cast<uint64_t>(absl::ToInt64Nanoseconds(rejection.retry_after));
  char bytes[kPayloadSize];
  bytes[0] = static_cast<char>(rejection.gate);
  bytes[1] = static_cast<char>(rejection.reason);
  for (int i = 0; i < 8; ++i) {
    bytes[2 + i] = static_cast<char>((ns >> (8 * i)) & 0xff);
  }
  s.SetPayload(kRejectionUrl,
               absl::Cord(absl::string_view(bytes, sizeof(bytes))));
  return s;
}

std::optional<Rejection> RejectionOf(const absl::Status& status) {
  auto payload = status.GetPayload(kRejectionUrl);
  if (!payload.has_value() || payload->size() != kPayloadSize) {
    return std::nullopt;
  }
  const std::string bytes(*payload);
  const auto gate = static_cast<uint8_t>(bytes[0]);
  const auto reason = static_cast<uint8_t>(bytes[1]);
  uint64_t ns = 0;
  for (int i = 7; i >= 0; --i) {
    ns = (ns << 8) | static_cast<uint8_t>(bytes[2 + i]);
  }
  const auto retry_ns = static_cast<int64_t>(ns);
  if (gate >= kNumGates || reason >= kNumReasons || retry_ns < 0) {
    return std::nullopt;
  }
  return Rejection{static_cast<Gate>(gate), static_cast<Reason>(reason),
                   retry_ns == kInfiniteNs ? absl::InfiniteDuration()
                                           : absl::Nanoseconds(retry_ns)};
}

absl::Status ValidateWriteThrottleOptions(const WriteThrottleOptions& options) {
  if (options.name.empty()) {
    return absl::InvalidArgumentError(
        "WriteThrottleOptions.name must not be empty; got \"\"");
  }
  // As for the bucket: the limiter's name is the throttle's (Create
  // overrides it), so an empty nested name is no error.
  ConcurrencyLimiterOptions limiter = options.limiter;
  limiter.name = options.name;
  if (absl::Status s = ValidateConcurrencyLimiterOptions(limiter); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("WriteThrottleOptions.limiter: ", s.message()));
  }
  if (options.bucket.has_value()) {
    TokenBucketOptions b = *options.bucket;
    b.name = options.name;
    if (absl::Status s = ValidateTokenBucketOptions(b); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("WriteThrottleOptions.bucket: ", s.message()));
    }
  }
  OverloadDetectorOptions overload = options.overload;
  overload.name = options.name;
  if (absl::Status s = ValidateOverloadDetectorOptions(overload); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("WriteThrottleOptions.overload: ", s.message()));
  }
  return absl::OkStatus();
}

ThrottlePermit::ThrottlePermit(ThrottlePermit&& other) noexcept
    : limiter_permit_(std::move(other.limiter_permit_)),
      throttle_(std::exchange(other.throttle_, nullptr)),
      start_(other.start_),
      deadline_(other.deadline_),
      request_(other.request_) {}

ThrottlePermit& ThrottlePermit::operator=(ThrottlePermit&& other) noexcept {
  if (this != &other) {
    Ignore();
    limiter_permit_ = std::move(other.limiter_permit_);
    throttle_ = std::exchange(other.throttle_, nullptr);
    start_ = other.start_;
    deadline_ = other.deadline_;
    request_ = other.request_;
  }
  return *this;
}

void ThrottlePermit::Release(Outcome outcome) {
  WriteThrottle* const throttle = std::exchange(throttle_, nullptr);
  if (throttle == nullptr) return;
  // One clock read serves the overload detector and the limit algorithm.
  MonotonicTime end{};
  if (outcome != Outcome::kIgnored) {
    end = throttle->clock_.Now();
    throttle->detector_->OnCompleted(end, end - start_);
  }
  limiter_permit_.ReleaseAt(outcome, end);
}

absl::StatusOr<std::unique_ptr<WriteThrottle>> WriteThrottle::Create(
    WriteThrottleOptions options) {
  if (absl::Status s = ValidateWriteThrottleOptions(options); !s.ok()) {
    return s;
  }
  options.limiter.name = options.name;
  options.limiter.clock = options.clock;
  options.limiter.metrics = options.metrics;
  absl::StatusOr<std::unique_ptr<ConcurrencyLimiter>> limiter =
      ConcurrencyLimiter::Create(std::move(options.limiter));
  if (!limiter.ok()) return limiter.status();
  std::unique_ptr<TokenBucket> bucket;
  if (options.bucket.has_value()) {
    TokenBucketOptions b = *options.bucket;
    b.name = options.name;
    b.clock = options.clock;
    b.metrics = options.metrics;
    absl::StatusOr<std::unique_ptr<TokenBucket>> made = TokenBucket::Create(b);
    if (!made.ok()) return made.status();
    bucket = *std::move(made);
  }
  options.overload.name = options.name;
  // A slower database at unchanged demand: let the limit algorithm
  // re-measure its latency baseline (KneeLimit), then call the user's hook.
  Limit* limit = &(*limiter)->limit_algorithm();
  options.overload.on_change =
      [limit, user = std::move(options.overload.on_change)](OverloadCause c) {
        if (c == OverloadCause::kDatabaseSlowdown) limit->OnDatabaseSlowdown();
        if (user) user(c);
      };
  options.overload.clock = options.clock;
  options.overload.metrics = options.metrics;
  options.overload.log = options.log;
  absl::StatusOr<std::unique_ptr<OverloadDetector>> detector =
      OverloadDetector::Create(options.overload);
  if (!detector.ok()) return detector.status();
  return std::unique_ptr<WriteThrottle>(
      new WriteThrottle(std::move(options), *std::move(limiter),
                        std::move(bucket), *std::move(detector)));
}

WriteThrottle::WriteThrottle(WriteThrottleOptions options,
                             std::unique_ptr<ConcurrencyLimiter> limiter,
                             std::unique_ptr<TokenBucket> bucket,
                             std::unique_ptr<OverloadDetector> detector)
    : name_(options.name),
      clock_(options.clock != nullptr ? *options.clock
                                      : SteadyClock::Default()),
      shadow_(options.shadow),
      limiter_(std::move(limiter)),
      bucket_(std::move(bucket)),
      budget_(options.budget),
      detector_(std::move(detector)),
      status_classifier_(std::move(options.status_classifier)),
      exception_classifier_(std::move(options.exception_classifier)) {
  MetricsSink& sink =
      options.metrics != nullptr ? *options.metrics : NoopMetricsSink();
  for (int g = 0; g < kNumGates; ++g) {
    for (int p = 0; p < kNumPriorities; ++p) {
      shadow_passed_[g][p] =
          sink.Counter(metrics::kShadowPassed,
                       {name_, std::string(GateName(static_cast<Gate>(g))),
                        std::string(PriorityName(static_cast<Priority>(p)))});
    }
  }
}

ThrottleAdmission WriteThrottle::Admit(const WriteRequest& request) {
  ThrottleAdmission out;
  const int64_t cost = request.cost < 1 ? 1 : request.cost;
  const int p = static_cast<int>(request.priority);
  const bool retry = request.attempt > 1;

  // A gate in shadow mode that would refuse lets the write through; the
  // write is counted as a shadow pass only once every gate let it through,
  // since one refused by a later gate did not run.
  bool shadow_passed[kNumGates] = {};

  // 1. Concurrency limit. In shadow mode the limiter only decides, and never
  // makes the write wait in its queue: shadow mode must not change how a
  // write runs.
  Admission slot = request.deadline.has_value() && !shadow_.concurrency_limit
                       ? limiter_->Acquire(*request.deadline, request.priority)
                       : limiter_->TryAcquire(request.priority);
  if (!slot.ok()) {
    if (!shadow_.concurrency_limit) {
      detector_->OnOffered(clock_.Now(), OverloadDetector::Refusal::kByLimiter,
                           retry);
      out.rejection_ = slot.rejection();
      return out;
    }
    shadow_passed[static_cast<int>(Gate::kConcurrencyLimit)] = true;
  }
  // When the write was admitted (the limiter read the clock already).
  const MonotonicTime now = slot.ok() ? slot.permit().start() : clock_.Now();

  // 2. Local rate.
  bool took_tokens = false;
  if (bucket_ != nullptr) {
    absl::Duration retry_after;
    if (bucket_->TryConsume(static_cast<double>(cost), &retry_after)) {
      took_tokens = true;
    } else if (shadow_.token_bucket) {
      shadow_passed[static_cast<int>(Gate::kTokenBucket)] = true;
    } else {
      // The slot goes back without a sample (slot's destructor: Ignore).
      detector_->OnOffered(now, OverloadDetector::Refusal::kByOtherGate, retry);
      out.rejection_ = {Gate::kTokenBucket, Reason::kRateLimited, retry_after};
      return out;
    }
  }

  // 3. Fleet budget.
  if (budget_ != nullptr) {
    Rejection why;
    if (!budget_->TryAcquire(cost, &why)) {
      if (shadow_.global_budget) {
        shadow_passed[static_cast<int>(Gate::kGlobalBudget)] = true;
      } else {
        if (took_tokens) bucket_->Return(static_cast<double>(cost));
        detector_->OnOffered(now, OverloadDetector::Refusal::kByOtherGate,
                             retry);
        out.rejection_ = why;
        return out;
      }
    }
  }

  bool any_shadow_pass = false;
  for (int g = 0; g < kNumGates; ++g) {
    if (shadow_passed[g]) {
      shadow_passed_[g][p]->Increment();
      any_shadow_pass = true;
    }
  }
  // A write a gate in shadow mode would have refused counts as refused: the
  // cause says what the gates decided.
  detector_->OnOffered(
      now,
      !any_shadow_pass ? OverloadDetector::Refusal::kAdmitted
      : shadow_passed[static_cast<int>(Gate::kConcurrencyLimit)]
          ? OverloadDetector::Refusal::kByLimiter
          : OverloadDetector::Refusal::kByOtherGate,
      retry);
  ThrottlePermit& permit = out.permit_;
  if (slot.ok()) permit.limiter_permit_ = std::move(slot).permit();
  permit.start_ = now;
  permit.throttle_ = this;
  permit.deadline_ = request.deadline;
  permit.request_ = request;
  return out;
}

Outcome WriteThrottle::Classify(const absl::Status& status) const {
  if (status.ok()) return Outcome::kSuccess;
  return status_classifier_ ? status_classifier_(status)
                            : DefaultStatusClassifier(status);
}

Outcome WriteThrottle::Classify(std::exception_ptr e) const {
  return exception_classifier_ ? exception_classifier_(e) : Outcome::kIgnored;
}

}  // namespace spillway
