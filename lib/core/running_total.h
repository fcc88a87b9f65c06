// A running count and sum that a reader takes as an exact pair while its
// writers go on, without a lock.
//
// WindowedLimit's shards keep the number of samples and the sum of their
// RTTs since the start. Kept as two words, a reader that loads one and then
// the other can see different numbers of samples in them; if it is
// preempted between the two loads, the difference is a whole time slice of
// samples (CI saw a window's average RTT of 614 ms from 2-6 ms samples).
//
// So the sum word carries the count in its low kCountBits bits:
//   packed = (sum << kCountBits) + count   (mod 2^64)
// and one load of it is a consistent pair, as far as count mod 2^kCountBits.
// The full count lives in a second word, written after `packed`; a reader
// loads count, packed, count again, which brackets the count inside
// `packed` (release stores, acquire loads):
//   - every sample in the first count is in `packed`: count is stored after
//     packed, so its acquire load makes that sample's packed store visible;
//   - `packed` holds at most one sample per writer beyond the second count:
//     a writer stores its previous sample's count before this sample's
//     packed, so seeing the packed store makes that count visible.
// When the bracket is narrower than 2^kCountBits, less the writers in
// progress, the low bits name exactly one count in it, and the pair is
// exact. A wider bracket (the reader was preempted between its loads) is
// read again, up to kReadAttempts times.
//
// Ranges: RTTs are clamped to kMaxValue (an hour in nanoseconds); sums
// between two reads are exact below 2^52 (52 days of summed RTT); a shard
// may have at most 2^kCountBits / 2 writers in progress at once.
//
// RunningTotal is a view of its two words, which its owner keeps (public
// headers declare them as plain atomics and cannot include this one).
//
// Thread safety: Add is thread-safe on a shared total and single-writer
// on an exclusive one (see shard.h); Read is thread-safe.

#ifndef SPILLWAY_LIB_CORE_RUNNING_TOTAL_H_
#define SPILLWAY_LIB_CORE_RUNNING_TOTAL_H_

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace spillway::internal {

class RunningTotal {
 public:
  static constexpr int kCountBits = 12;
  static constexpr uint64_t kCountMask = (uint64_t{1} << kCountBits) - 1;
  static constexpr uint64_t kSumMask = ~uint64_t{0} >> kCountBits;
  // An hour of nanoseconds: larger values count as this.
  static constexpr uint64_t kMaxValue = uint64_t{3600} * 1000 * 1000 * 1000;
  static constexpr int kReadAttempts = 3;

  // The words: `packed` = (sum << kCountBits) + count, and `count`, stored
  // after it. Both start at zero.
  RunningTotal(std::atomic<uint64_t>& packed, std::atomic<uint64_t>& count)
      : packed_(packed), count_(count) {}

  // A count and a sum, each mod 2^64 and 2^52: subtract two with Since.
  struct Pair {
    uint64_t count = 0;
    uint64_t sum = 0;
    // What was added between `earlier` and this pair.
    Pair Since(const Pair& earlier) const {
      return {count - earlier.count, (sum - earlier.sum) & kSumMask};
    }
  };

  // Adds one sample of `value`; returns the count before it. `exclusive`:
  // the caller is this total's only writer (plain stores, no lock-prefixed
  // instruction); otherwise read-modify-writes.
  uint64_t Add(uint64_t value, bool exclusive) {
    const uint64_t add = (std::min(value, kMaxValue) << kCountBits) + 1;
    if (exclusive) {
      packed_.store(packed_.load(std::memory_order_relaxed) + add,
                    std::memory_order_release);
      const uint64_t n = count_.load(std::memory_order_relaxed);
      count_.store(n + 1, std::memory_order_release);
      return n;
    }
    packed_.fetch_add(add, std::memory_order_release);
    return count_.fetch_add(1, std::memory_order_release);
  }

  // The count and sum as one exact pair. False if each of kReadAttempts
  // reads saw the writers run too far between its loads.
  bool Read(Pair* out) const {
    for (int attempt = 0; attempt < kReadAttempts; ++attempt) {
      const uint64_t first = count_.load(std::memory_order_acquire);
      const uint64_t packed = packed_.load(std::memory_order_acquire);
      const uint64_t second = count_.load(std::memory_order_acquire);
      if (Decode(first, packed, second, out)) return true;
    }
    return false;
  }

  // The pair in `packed`, given the count words loaded before (`first`) and
  // after (`second`) it. False if they are too far apart to tell.
  static bool Decode(uint64_t first, uint64_t packed, uint64_t second,
                     Pair* out) {
    if (second - first >= (kCountMask + 1) / 2) return false;
    const uint64_t count = first + ((packed - first) & kCountMask);
    *out = {count, (packed - count) >> kCountBits};
    return true;
  }

  // What `packed` holds after `count` samples summing to `sum` (for tests).
  static uint64_t Pack(uint64_t count, uint64_t sum) {
    return (sum << kCountBits) + count;
  }

 private:
  std::atomic<uint64_t>& packed_;
  std::atomic<uint64_t>& count_;
};

}  // namespace spillway::internal

#endif  // SPILLWAY_LIB_CORE_RUNNING_TOTAL_H_
