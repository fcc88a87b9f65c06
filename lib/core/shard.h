// Per-thread slots for picking a shard of a sharded accumulator.
//
// ThreadSlot(): an exclusive slot. The first kThreadSlots live threads to
// call it each hold a different slot in [0, kThreadSlots) until they exit,
// so a shard indexed by an exclusive slot has exactly one writer and can be
// updated with a plain load and store: no lock-prefixed instruction, which
// costs about 4 ns each on this project's benchmark machine
// (WindowedLimit: 8 ns a sample). A thread that finds every slot taken gets a
// shared slot in [kThreadSlots, kThreadSlots + kSharedSlots), round-robin;
// several threads write those, so they take read-modify-write atomics. A slot
// returns to the pool when its thread exits; the release and the next claim are
// release/acquire on the pool's word, so a new owner sees its predecessor's
// last writes. The claim happens once per thread, on its first call: it
// registers the release with the C++ runtime (__cxa_thread_atexit, one small
// calloc in glibc); every later call is one thread-local load.
//
// ThreadSlot() is inline: it is on the hot path of every sample, where a
// call into another file cost 7 ns a release. Components whose shards
// every thread writes with read-modify-write atomics (OverloadDetector)
// take it modulo their shard count.
//
// Thread safety: thread-safe; each thread sees its own stable value.

#ifndef SPILLWAY_LIB_CORE_SHARD_H_
#define SPILLWAY_LIB_CORE_SHARD_H_

#include "absl/base/optimization.h"

namespace spillway::internal {

// Exclusive slots, and shared slots for threads beyond them.
inline constexpr int kThreadSlots = 32;
inline constexpr int kSharedSlots = 8;
inline constexpr int kAllSlots = kThreadSlots + kSharedSlots;

// Whether `slot` (from ThreadSlot) has one writer only.
inline bool IsExclusiveSlot(int slot) { return slot < kThreadSlots; }

// The calling thread's slot; -1 until its first ThreadSlot(). Constant-
// initialized, so reading it is one thread-local load.
inline int& ThreadSlotOfThisThread() {
  static thread_local int slot = -1;
  return slot;
}

// Claims a slot for the calling thread (first call only) and arranges its
// release at thread exit. Defined in shard.cc.
int ClaimThreadSlot();

// This thread's slot in [0, kAllSlots); exclusive if IsExclusiveSlot.
// Thread-safe.
inline int ThreadSlot() {
  const int slot = ThreadSlotOfThisThread();
  return ABSL_PREDICT_TRUE(slot >= 0) ? slot : ClaimThreadSlot();
}

}  // namespace spillway::internal

#endif  // SPILLWAY_LIB_CORE_SHARD_H_
