#include "spillway/testing/simulated_clock.h"

#include <algorithm>

namespace spillway::testing {

SimulatedClock::SimulatedClock(MonotonicTime start)
    : now_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(
                  start.time_since_epoch())
                  .count()) {}

MonotonicTime SimulatedClock::Now() const {
  return MonotonicTime(std::chrono::duration_cast<MonotonicTime::duration>(
      std::chrono::nanoseconds(now_ns_.load(std::memory_order_acquire))));
}

void SimulatedClock::Advance(absl::Duration d) {
  now_ns_.fetch_add(absl::ToInt64Nanoseconds(std::max(d, absl::ZeroDuration())),
                    std::memory_order_acq_rel);
  WakeAll();
}

void SimulatedClock::AdvanceTo(MonotonicTime t) {
  const int64_t target =
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch())
          .count();
  int64_t now = now_ns_.load(std::memory_order_acquire);
  while (now < target && !now_ns_.compare_exchange_weak(
                             now, target, std::memory_order_acq_rel)) {
  }
  WakeAll();
}

void SimulatedClock::WakeAll() {
  std::lock_guard<std::mutex> registry_lock(registry_mu_);
  for (const Registration& r : registry_) {
    // Taking the waiter's mutex orders this wake-up after the waiter's
    // check of its deadline: it is either before the check (which then sees
    // the new time) or the waiter is inside cv.wait.
    { std::lock_guard<std::mutex> waiter_lock(*r.mu); }
    r.cv->notify_all();
  }
}

int SimulatedClock::waiters() const {
  std::lock_guard<std::mutex> registry_lock(registry_mu_);
  return static_cast<int>(registry_.size());
}

bool SimulatedClock::WaitUntil(std::condition_variable& cv,
                               std::unique_lock<std::mutex>& lock,
                               MonotonicTime deadline,
                               absl::FunctionRef<bool()> ready) {
  if (ready()) return true;
  if (Now() >= deadline) return false;
  lock.unlock();
  {
    std::lock_guard<std::mutex> registry_lock(registry_mu_);
    registry_.push_back({&cv, lock.mutex()});
  }
  lock.lock();
  while (!ready() && Now() < deadline) cv.wait(lock);
  lock.unlock();
  {
    std::lock_guard<std::mutex> registry_lock(registry_mu_);
    registry_.erase(
        std::find_if(registry_.begin(), registry_.end(),
                     [&cv](const Registration& r) { return r.cv == &cv; }));
  }
  lock.lock();
  // Re-read: the state may have changed while the mutex was released.
  return ready();
}

}  // namespace spillway::testing
