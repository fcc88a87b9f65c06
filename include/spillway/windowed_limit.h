// WindowedLimit: a Limit that aggregates completed writes into time windows
// and lets a LimitAlgorithm decide the limit once per window.
//
// Per-sample algorithms react to noise; a window of samples says what the
// database is doing. WindowedLimit collects samples from every releasing
// thread without a lock, and when a window is over, the thread whose sample
// closed it hands the aggregate to the algorithm and publishes the new
// limit. The other threads never wait. Samples of writes admitted before the
// algorithm's `discard_before()` are ignored.
//
//   auto vegas = spillway::VegasLimit::Create({});
//   auto limit = spillway::WindowedLimit::Create(std::move(*vegas), {});
//   spillway::ConcurrencyLimiterOptions options;
//   options.limit = std::move(*limit);
//
// Windows: a window closes at the first sample for which both hold:
//   - its age reaches clamp(min_rtt_multiple * min RTT of the previous
//     window, min_window, max_window) — long enough for writes admitted at
//     its start to have completed;
//   - it holds at least `min_samples` samples (a quiet window stays open).
// The aggregate is a WindowSample: the average (or a percentile) RTT of the
// successful writes, the smallest RTT, the largest in-flight count at
// admission, the number of samples and of drops.
//
// Sampling: only completed writes (Success and Dropped) arrive here; the
// limiter never passes rejected or ignored writes. Samples faster than
// `min_rtt_threshold` are ignored (cache hits say nothing of the database).
//
// Locking: a sample updates the calling thread's shard — a per-thread
// accumulator on its own cache line: running totals of count and RTT and
// the window's smallest RTT and largest in-flight count, tagged with the
// window's epoch. The first 32 threads alive at once each own a shard
// outright: their running totals are loads and release stores (no
// lock-prefixed instruction on the sample path; a thread's first sample
// claims its shard, which registers the release at thread exit with the C++
// runtime, one small allocation per thread); threads beyond them share 8
// more shards and fetch-add. The minimum and maximum take a
// compare-exchange only when the value moves. Closing takes a flag with
// one exchange; the closer takes each shard's totals since the last close,
// moves the epoch on and calls the algorithm. A sample that races the
// close of its window (its update lands after the closer read its shard)
// counts in the next window, except for its minimum RTT and in-flight
// count; a shard's count and RTT sum are read as one exact pair. Nothing
// is lost or counted twice, whatever the number of threads.
// Percentile aggregation keeps the last 64 RTTs of each shard.
//
// Thread safety: all methods are thread-safe; OnSample is lock-free.

#ifndef SPILLWAY_WINDOWED_LIMIT_H_
#define SPILLWAY_WINDOWED_LIMIT_H_

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "spillway/limit.h"
#include "spillway/limit_algorithm.h"

namespace spillway {

enum class Aggregation : uint8_t {
  kAverage,     // Mean RTT of the window's successful writes.
  kPercentile,  // WindowOptions::percentile of their RTTs.
};

struct WindowOptions {
  // Bounds of a window's duration.
  // Default: 50 ms and 1 s. REQUIRES: 0 < min_window <= max_window.
  absl::Duration min_window = absl::Milliseconds(50);
  absl::Duration max_window = absl::Seconds(1);

  // A window lasts at least this many times the smallest RTT of the
  // previous window. Default: 2. REQUIRES: finite, >= 1.
  double min_rtt_multiple = 2.0;

  // Fewest samples in a window. Default: 10. REQUIRES: >= 1.
  int min_samples = 10;

  // How the window's RTT is aggregated. Default: kAverage.
  Aggregation aggregation = Aggregation::kAverage;

  // The percentile of kPercentile. Default: 0.9. REQUIRES: in (0, 1].
  double percentile = 0.9;

  // Samples faster than this are ignored. Default: 0 (none ignored).
  // REQUIRES: >= 0.
  absl::Duration min_rtt_threshold = absl::ZeroDuration();
};

// Checks every field; the error names the field and its value. Thread-safe.
absl::Status ValidateWindowOptions(const WindowOptions& options);

class WindowedLimit final : public Limit {
 public:
  // Validates `options` and wraps `algorithm`, whose initial limit becomes
  // the limit. REQUIRES: algorithm not null, with 1 <= min_limit() <=
  // initial_limit() <= max_limit() <= kMaxConcurrencyLimit. Thread-safe.
  static absl::StatusOr<std::unique_ptr<WindowedLimit>> Create(
      std::unique_ptr<LimitAlgorithm> algorithm, const WindowOptions& options);

  ~WindowedLimit() override;

  // Adds the sample to the current window; closes the window when due.
  // Thread-safe; lock-free (one exchange when a window is due).
  void OnSample(const LimitSample& sample) override;

  // Passes the hint to the algorithm before its next Update. Thread-safe;
  // lock-free (one store).
  void OnDatabaseSlowdown() override {
    slowdown_hint_.store(true, std::memory_order_relaxed);
  }

  // The algorithm's max_limit(). Thread-safe.
  int max_limit() const override { return max_limit_; }
  int min_limit() const override { return min_limit_; }

  // The algorithm's band after its last Update. Thread-safe; lock-free;
  // the value may be stale at once.
  double latency_band() const override {
    return latency_band_.load(std::memory_order_relaxed);
  }

  // Windows closed so far. Thread-safe; the value may be stale at once.
  int64_t windows_closed() const {
    return windows_closed_.load(std::memory_order_relaxed);
  }

  // One shard per thread slot (lib/core/shard.h: 32 exclusive, 8 shared).
  static constexpr int kShards = 40;

 private:
  static constexpr int kRing = 64;

  // One thread's accumulator, written by its owner thread (or, past the
  // exclusive slots of lib/core/shard.h, by the threads sharing it), read
  // by the closer. The counts and sums are running totals, never reset: a
  // window's share is the difference from what the closer read at the
  // previous close (`taken_`), so a sample costs two plain stores (two
  // fetch-adds on a shared shard) and no epoch check. Each count and its sum
  // are read as one exact pair (lib/core/running_total.h): a window's average
  // is the average of the samples it counted, even when the closer is
  // preempted while its writers go on. The smallest RTT and the largest
  // in-flight count are per window: those words hold the window epoch in
  // their top 16 bits and the value in the low 48, and a word from another
  // epoch reads as zero.
  // 128 bytes apart rather than 64: Intel's adjacent-line prefetcher moves
  // 64-byte lines in pairs, so neighbours 64 bytes apart still contend
  // (folly's hardware_destructive_interference_size is 128 for this reason).
  struct alignas(128) Shard {
    // Successful samples: their RTTs summed with the count in the low bits,
    // and their count (the two words of an internal::RunningTotal).
    std::atomic<uint64_t> ok_packed{0};
    std::atomic<uint64_t> ok_count{0};
    // Dropped samples, likewise.
    std::atomic<uint64_t> drop_packed{0};
    std::atomic<uint64_t> drop_count{0};
    std::atomic<uint64_t> min_ns{0};  // Smallest RTT (any outcome).
    std::atomic<uint64_t> max_in_flight{0};
  };
  // A shard's running totals as the closer last took them (closer-only):
  // count and sum of successful samples, then of dropped ones.
  struct Taken {
    uint64_t count = 0;
    uint64_t sum_ns = 0;
    uint64_t drops = 0;
    uint64_t drop_sum_ns = 0;
  };

  WindowedLimit(std::unique_ptr<LimitAlgorithm> algorithm,
                const WindowOptions& options);
  // The closer: aggregates, calls the algorithm, opens the next window.
  void MaybeClose(int64_t end_ns);

  const std::unique_ptr<LimitAlgorithm> algorithm_;
  const WindowOptions options_;
  // Set by OnDatabaseSlowdown, taken by the next closer.
  std::atomic<bool> slowdown_hint_{false};
  // The algorithm's latency_band(), published by the closer. Atomic: read
  // by the limiter's reporting on other threads.
  std::atomic<double> latency_band_{0};
  const int min_limit_;
  const int max_limit_;
  const int64_t min_window_ns_;
  const int64_t max_window_ns_;
  const int64_t min_rtt_threshold_ns_;

  // The open window: its epoch, start and duration. Written once per window
  // by the closer, read by every sample: a cache line of its own.
  struct alignas(128) Window {
    std::atomic<uint64_t> epoch{1};
    std::atomic<int64_t> start_ns{0};  // 0: not started (first sample starts)
    std::atomic<int64_t> duration_ns{0};
  };
  Window window_;
  // LimitAlgorithm::discard_before() after the last Update, nanoseconds
  // since the clock's epoch: samples admitted earlier are ignored.
  alignas(128) std::atomic<int64_t> discard_before_ns_{INT64_MIN};
  // Set by the thread closing a window; the others skip closing.
  std::atomic<bool> closing_{false};
  std::atomic<int64_t> windows_closed_{0};

  std::array<Shard, kShards> shards_;
  // Closer-only: each shard's totals at the last close.
  std::array<Taken, kShards> taken_{};
  // Percentile mode: the last kRing RTTs of each shard (epoch-tagged), slot
  // chosen by the shard's sample count. Null in average mode.
  std::unique_ptr<std::atomic<uint64_t>[]> ring_;
  // Percentile mode: the closer's buffer for nth_element (closer-only).
  std::unique_ptr<uint64_t[]> scratch_;
};

}  // namespace spillway

#endif  // SPILLWAY_WINDOWED_LIMIT_H_
