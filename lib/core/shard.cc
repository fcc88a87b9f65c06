#include "core/shard.h"

#include <atomic>

namespace spillway::internal {

unsigned ThreadShard() {
  static std::atomic<unsigned> next{0};
  static thread_local const unsigned index =
      next.fetch_add(1, std::memory_order_relaxed);
  return index;
}

}  // namespace spillway::internal
