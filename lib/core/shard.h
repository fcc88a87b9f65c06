// A small per-thread number for picking a shard of a sharded counter.
//
// Threads get consecutive numbers on first use, so up to N threads spread
// over N shards without collisions; callers take it modulo their shard
// count.
//
// Thread safety: thread-safe; each thread sees its own stable value.

#ifndef SPILLWAY_LIB_CORE_SHARD_H_
#define SPILLWAY_LIB_CORE_SHARD_H_

namespace spillway::internal {

// This thread's number, assigned round-robin on first call. Thread-safe.
unsigned ThreadShard();

}  // namespace spillway::internal

#endif  // SPILLWAY_LIB_CORE_SHARD_H_
