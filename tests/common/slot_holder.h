// SlotHolder: a thread that takes its thread slot (lib/core/shard.h) and
// keeps it until told to exit, so tests can fill the pool of exclusive
// slots.

#ifndef SPILLWAY_TESTS_COMMON_SLOT_HOLDER_H_
#define SPILLWAY_TESTS_COMMON_SLOT_HOLDER_H_

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "lib/core/shard.h"

namespace spillway::test {

// A thread that takes its slot, reports it, and exits when told.
class SlotHolder {
 public:
  SlotHolder()
      : thread_([this] {
          const int slot = internal::ThreadSlot();
          std::unique_lock<std::mutex> lock(mu_);
          slot_ = slot;
          cv_.notify_all();
          cv_.wait(lock, [this] { return exit_; });
        }) {}
  ~SlotHolder() { Exit(); }

  int slot() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return slot_ >= 0; });
    return slot_;
  }
  void Exit() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      exit_ = true;
    }
    cv_.notify_all();
    thread_.join();  // Its slot is back in the pool once join returns.
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int slot_ = -1;
  bool exit_ = false;
  std::thread thread_;
};

// Starts holders until one gets a shared slot: then every exclusive slot is
// held (by them or by this process's other threads) until they exit.
inline std::vector<std::unique_ptr<SlotHolder>> HoldAllExclusiveSlots() {
  std::vector<std::unique_ptr<SlotHolder>> holders;
  for (int i = 0; i <= internal::kThreadSlots; ++i) {
    holders.push_back(std::make_unique<SlotHolder>());
    if (!internal::IsExclusiveSlot(holders.back()->slot())) break;
  }
  return holders;
}

}  // namespace spillway::test

#endif  // SPILLWAY_TESTS_COMMON_SLOT_HOLDER_H_
