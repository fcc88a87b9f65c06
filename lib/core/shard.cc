#include "core/shard.h"

#include <atomic>
#include <cstdint>

namespace spillway::internal {

namespace {

static_assert(kThreadSlots <= 32, "the pool is one 32-bit word");

// Bit i set: exclusive slot i is held by a live thread.
std::atomic<uint32_t> g_slots_taken{0};
// Round-robin over the shared slots.
std::atomic<unsigned> g_next_shared_slot{0};

int NextSharedSlot() {
  return kThreadSlots + static_cast<int>(g_next_shared_slot.fetch_add(
                                             1, std::memory_order_relaxed) %
                                         kSharedSlots);
}

// A thread-local whose destructor, at thread exit, returns the thread's
// exclusive slot to the pool. Any later call from this thread (another
// thread-local's destructor) gets a shared slot, never the released one.
struct SlotReleaser {
  int slot;
  ~SlotReleaser() {
    ThreadSlotOfThisThread() = NextSharedSlot();
    // Release: the next owner's claim (acquire) sees this thread's writes.
    g_slots_taken.fetch_and(~(uint32_t{1} << slot), std::memory_order_release);
  }
};

}  // namespace

int ClaimThreadSlot() {
  int& mine = ThreadSlotOfThisThread();
  uint32_t taken = g_slots_taken.load(std::memory_order_relaxed);
  const uint32_t all =
      kThreadSlots == 32 ? ~uint32_t{0} : (uint32_t{1} << kThreadSlots) - 1;
  while (taken != all) {
    const int slot = __builtin_ctz(~taken);
    if (g_slots_taken.compare_exchange_weak(
            taken, taken | (uint32_t{1} << slot), std::memory_order_acquire,
            std::memory_order_relaxed)) {
      // Runs once per thread: `mine` is set below, so no second claim.
      static thread_local const SlotReleaser releaser{slot};
      (void)releaser;
      mine = slot;
      return mine;
    }
  }
  mine = NextSharedSlot();
  return mine;
}

}  // namespace spillway::internal
