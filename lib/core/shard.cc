#include "core/shard.h"

namespace spillway::internal {

std::atomic<unsigned> g_next_thread_shard{0};

}  // namespace spillway::internal
