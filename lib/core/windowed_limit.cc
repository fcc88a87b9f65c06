#include "spillway/windowed_limit.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <utility>

#include "absl/strings/str_format.h"
#include "core/running_total.h"
#include "core/shard.h"

namespace spillway {

static_assert(WindowedLimit::kShards == internal::kAllSlots,
              "one shard per thread slot");

namespace {

// Shard words: window epoch in the top 16 bits, value in the low 48.
constexpr int kEpochShift = 48;
constexpr uint64_t kValueMask = (uint64_t{1} << kEpochShift) - 1;

uint64_t Tag(uint64_t epoch) { return (epoch & 0xFFFF) << kEpochShift; }

// The value of `word` if it belongs to the window tagged `tag`, else 0.
uint64_t ValueIn(uint64_t word, uint64_t tag) {
  return (word & ~kValueMask) == tag ? word & kValueMask : 0;
}

using internal::RunningTotal;

// Min and max: a relaxed load, and a compare-exchange only when the value
// moves (a few times a window), so writers sharing a shard lose no update.
// 0 means "none yet", so the minimum is kept as value + 1.
void Min(std::atomic<uint64_t>& w, uint64_t tag, uint64_t v) {
  const uint64_t want = tag | std::min(kValueMask, v + 1);
  uint64_t word = w.load(std::memory_order_relaxed);
  for (;;) {
    const uint64_t old = ValueIn(word, tag);
    if (old != 0 && v + 1 >= old) return;
    if (w.compare_exchange_weak(word, want, std::memory_order_relaxed)) return;
  }
}
void Max(std::atomic<uint64_t>& w, uint64_t tag, uint64_t v) {
  const uint64_t want = tag | std::min(kValueMask, v);
  uint64_t word = w.load(std::memory_order_relaxed);
  for (;;) {
    if (v <= ValueIn(word, tag)) return;
    if (w.compare_exchange_weak(word, want, std::memory_order_relaxed)) return;
  }
}

// Clears a word unless it already belongs to the window tagged `keep`:
// removes what was consumed and stragglers of earlier windows, so a stale
// value can never be read again when the 16-bit epoch wraps around.
void Clear(std::atomic<uint64_t>& w, uint64_t keep) {
  uint64_t v = w.load(std::memory_order_relaxed);
  while ((v & ~kValueMask) != keep && v != 0 &&
         !w.compare_exchange_weak(v, 0, std::memory_order_relaxed)) {
  }
}

int64_t Nanos(absl::Duration d) { return absl::ToInt64Nanoseconds(d); }

}  // namespace

absl::Status ValidateWindowOptions(const WindowOptions& o) {
  if (o.min_window <= absl::ZeroDuration() || o.max_window < o.min_window) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "WindowOptions.min_window and max_window must satisfy 0 < min_window "
        "<= max_window; got min_window=%s, max_window=%s",
        absl::FormatDuration(o.min_window),
        absl::FormatDuration(o.max_window)));
  }
  if (!(std::isfinite(o.min_rtt_multiple) && o.min_rtt_multiple >= 1)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "WindowOptions.min_rtt_multiple must be finite and >= 1; got %g",
        o.min_rtt_multiple));
  }
  if (o.min_samples < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "WindowOptions.min_samples must be >= 1; got %d", o.min_samples));
  }
  if (o.aggregation != Aggregation::kAverage &&
      o.aggregation != Aggregation::kPercentile) {
    return absl::InvalidArgumentError(
        absl::StrFormat("WindowOptions.aggregation must be kAverage or "
                        "kPercentile; got %d",
                        static_cast<int>(o.aggregation)));
  }
  if (!(o.percentile > 0 && o.percentile <= 1)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "WindowOptions.percentile must be in (0, 1]; got %g", o.percentile));
  }
  if (o.min_rtt_threshold < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("WindowOptions.min_rtt_threshold must be >= 0; got %s",
                        absl::FormatDuration(o.min_rtt_threshold)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<WindowedLimit>> WindowedLimit::Create(
    std::unique_ptr<LimitAlgorithm> algorithm, const WindowOptions& options) {
  if (algorithm == nullptr) {
    return absl::InvalidArgumentError(
        "WindowedLimit::Create: algorithm must not be null");
  }
  const int lo = algorithm->min_limit();
  const int init = algorithm->initial_limit();
  const int hi = algorithm->max_limit();
  if (!(1 <= lo && lo <= init && init <= hi && hi <= kMaxConcurrencyLimit)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "WindowedLimit::Create: the algorithm's limits must satisfy 1 <= "
        "min_limit <= initial_limit <= max_limit <= %d; got %d, %d, %d",
        kMaxConcurrencyLimit, lo, init, hi));
  }
  if (absl::Status s = ValidateWindowOptions(options); !s.ok()) return s;
  return std::unique_ptr<WindowedLimit>(
      new WindowedLimit(std::move(algorithm), options));
}

WindowedLimit::WindowedLimit(std::unique_ptr<LimitAlgorithm> algorithm,
                             const WindowOptions& options)
    : Limit(algorithm->initial_limit()),
      algorithm_(std::move(algorithm)),
      options_(options),
      min_limit_(algorithm_->min_limit()),
      max_limit_(algorithm_->max_limit()),
      min_window_ns_(Nanos(options.min_window)),
      max_window_ns_(Nanos(options.max_window)),
      min_rtt_threshold_ns_(Nanos(options.min_rtt_threshold)) {
  window_.duration_ns.store(min_window_ns_, std::memory_order_relaxed);
  latency_band_.store(algorithm_->latency_band(), std::memory_order_relaxed);
  if (options.aggregation == Aggregation::kPercentile) {
    ring_ = std::make_unique<std::atomic<uint64_t>[]>(kShards * kRing);
    scratch_ = std::make_unique<uint64_t[]>(kShards * kRing);
  }
}

WindowedLimit::~WindowedLimit() = default;

void WindowedLimit::OnSample(const LimitSample& sample) {
  const int64_t rtt_ns = std::max<int64_t>(0, sample.rtt.count());
  if (rtt_ns < min_rtt_threshold_ns_) return;
  const int64_t end_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             sample.end.time_since_epoch())
                             .count();
  if (std::chrono::duration_cast<std::chrono::nanoseconds>(
          sample.start.time_since_epoch())
          .count() < discard_before_ns_.load(std::memory_order_relaxed)) {
    return;
  }
  const uint64_t tag = Tag(window_.epoch.load(std::memory_order_acquire));
  const int shard = internal::ThreadSlot();
  const bool exclusive = internal::IsExclusiveSlot(shard);
  Shard& s = shards_[shard];
  const uint64_t rtt = static_cast<uint64_t>(rtt_ns);
  // Running totals. A thread with an exclusive slot is its shard's only
  // writer: relaxed loads and release stores, no lock-prefixed instruction
  // (the two fetch-adds they replace cost 8 ns a sample on the benchmark
  // machine). Threads beyond the exclusive slots share shards and
  // fetch-add, so they lose nothing either.
  if (sample.dropped) {
    RunningTotal(s.drop_packed, s.drop_count).Add(rtt, exclusive);
  } else {
    const uint64_t n =
        RunningTotal(s.ok_packed, s.ok_count).Add(rtt, exclusive);
    if (ring_ != nullptr) {
      ring_[shard * kRing + n % kRing].store(tag | std::min(kValueMask, rtt),
                                             std::memory_order_relaxed);
    }
  }
  Min(s.min_ns, tag, rtt);
  Max(s.max_in_flight, tag,
      static_cast<uint64_t>(std::max(0, sample.in_flight)));

  int64_t start = window_.start_ns.load(std::memory_order_relaxed);
  if (start == 0) {
    // The first sample opens the first window.
    window_.start_ns.compare_exchange_strong(start, end_ns,
                                             std::memory_order_relaxed);
    return;
  }
  if (end_ns - start >= window_.duration_ns.load(std::memory_order_relaxed)) {
    MaybeClose(end_ns);
  }
}

void WindowedLimit::MaybeClose(int64_t end_ns) {
  if (closing_.exchange(true, std::memory_order_acquire)) return;
  const int64_t start = window_.start_ns.load(std::memory_order_relaxed);
  if (end_ns - start < window_.duration_ns.load(std::memory_order_relaxed)) {
    closing_.store(false, std::memory_order_release);  // Closed meanwhile.
    return;
  }
  const uint64_t epoch = window_.epoch.load(std::memory_order_relaxed);
  const uint64_t tag = Tag(epoch);
  uint64_t count = 0, sum = 0, drops = 0, drop_sum = 0, min1 = 0, max_in = 0;
  // Each count is read with its sum as one pair: a sample racing this read
  // is in both or in neither (then in the next window).
  std::array<Taken, kShards> now;
  for (int i = 0; i < kShards; ++i) {
    Shard& s = shards_[i];
    RunningTotal::Pair ok, dropped;
    if (!RunningTotal(s.ok_packed, s.ok_count).Read(&ok) ||
        !RunningTotal(s.drop_packed, s.drop_count).Read(&dropped)) {
      // The writers outran every read: a later sample closes the window.
      closing_.store(false, std::memory_order_release);
      return;
    }
    now[i] = {ok.count, ok.sum, dropped.count, dropped.sum};
    const RunningTotal::Pair new_ok =
        ok.Since({taken_[i].count, taken_[i].sum_ns});
    const RunningTotal::Pair new_dropped =
        dropped.Since({taken_[i].drops, taken_[i].drop_sum_ns});
    count += new_ok.count;
    sum += new_ok.sum;
    drops += new_dropped.count;
    drop_sum += new_dropped.sum;
    const uint64_t m = ValueIn(s.min_ns.load(std::memory_order_relaxed), tag);
    if (m != 0 && (min1 == 0 || m < min1)) min1 = m;
    max_in = std::max(
        max_in, ValueIn(s.max_in_flight.load(std::memory_order_relaxed), tag));
  }
  if (count + drops < static_cast<uint64_t>(options_.min_samples)) {
    closing_.store(false, std::memory_order_release);  // Keep collecting.
    return;
  }
  taken_ = now;

  WindowSample w;
  w.samples = static_cast<int>(std::min<uint64_t>(count + drops, INT32_MAX));
  w.dropped = static_cast<int>(std::min<uint64_t>(drops, INT32_MAX));
  w.max_in_flight = static_cast<int>(std::min<uint64_t>(max_in, INT32_MAX));
  w.min_rtt = std::chrono::nanoseconds(min1 == 0 ? 0 : min1 - 1);
  w.end = MonotonicTime(std::chrono::duration_cast<MonotonicTime::duration>(
      std::chrono::nanoseconds(end_ns)));
  if (count == 0) {
    w.rtt = std::chrono::nanoseconds(drop_sum / drops);
  } else if (ring_ == nullptr) {
    w.rtt = std::chrono::nanoseconds(sum / count);
  } else {
    // The closer owns scratch_: no allocation on this path.
    int n = 0;
    for (int i = 0; i < kShards * kRing; ++i) {
      const uint64_t v = ring_[i].load(std::memory_order_relaxed);
      if ((v & ~kValueMask) == tag) scratch_[n++] = v & kValueMask;
    }
    if (n == 0) {
      w.rtt = std::chrono::nanoseconds(sum / count);
    } else {
      const int k = std::min(
          n - 1, static_cast<int>(std::ceil(options_.percentile * n)) - 1);
      std::nth_element(scratch_.get(), scratch_.get() + std::max(0, k),
                       scratch_.get() + n);
      w.rtt = std::chrono::nanoseconds(scratch_[std::max(0, k)]);
    }
  }

  // Open the next window, then clear what this one consumed (and any
  // straggler of an earlier window) without touching the new window's data.
  const uint64_t next_tag = Tag(epoch + 1);
  window_.epoch.store(epoch + 1, std::memory_order_release);
  window_.start_ns.store(end_ns, std::memory_order_relaxed);
  const int64_t duration = std::clamp<int64_t>(
      static_cast<int64_t>(options_.min_rtt_multiple *
                           static_cast<double>(w.min_rtt.count())),
      min_window_ns_, max_window_ns_);
  window_.duration_ns.store(duration, std::memory_order_relaxed);
  for (Shard& s : shards_) {
    Clear(s.min_ns, next_tag);
    Clear(s.max_in_flight, next_tag);
  }
  if (ring_ != nullptr) {
    for (int i = 0; i < kShards * kRing; ++i) Clear(ring_[i], next_tag);
  }

  if (slowdown_hint_.exchange(false, std::memory_order_relaxed)) {
    algorithm_->OnDatabaseSlowdown();
  }
  const int next =
      std::clamp(algorithm_->Update(w, current()), min_limit_, max_limit_);
  StoreLimit(next);
  latency_band_.store(algorithm_->latency_band(), std::memory_order_relaxed);
  const MonotonicTime discard = algorithm_->discard_before();
  discard_before_ns_.store(
      discard == MonotonicTime::min()
          ? INT64_MIN
          : std::chrono::duration_cast<std::chrono::nanoseconds>(
                discard.time_since_epoch())
                .count(),
      std::memory_order_relaxed);
  windows_closed_.fetch_add(1, std::memory_order_relaxed);
  closing_.store(false, std::memory_order_release);
}

}  // namespace spillway
