// A small per-thread number for picking a shard of a sharded counter.
//
// Threads get consecutive numbers on first use, so up to N threads spread
// over N shards without collisions; callers take it modulo their shard
// count. Inline: it is on the hot path of every sample (WindowedLimit,
// OverloadDetector), where a call into another file cost 7 ns a release.
//
// Thread safety: thread-safe; each thread sees its own stable value.

#ifndef SPILLWAY_LIB_CORE_SHARD_H_
#define SPILLWAY_LIB_CORE_SHARD_H_

#include <atomic>

namespace spillway::internal {

// The next number to hand out. Defined in shard.cc.
extern std::atomic<unsigned> g_next_thread_shard;

// This thread's number, assigned round-robin on first call. Thread-safe.
inline unsigned ThreadShard() {
  static thread_local const unsigned index =
      g_next_thread_shard.fetch_add(1, std::memory_order_relaxed);
  return index;
}

}  // namespace spillway::internal

#endif  // SPILLWAY_LIB_CORE_SHARD_H_
