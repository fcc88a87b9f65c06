#include "spillway/clock.h"

namespace spillway {

SteadyClock& SteadyClock::Default() {
  static SteadyClock* const clock = new SteadyClock();
  return *clock;
}

bool SteadyClock::WaitUntil(std::condition_variable& cv,
                            std::unique_lock<std::mutex>& lock,
                            MonotonicTime deadline,
                            absl::FunctionRef<bool()> ready) {
  while (!ready()) {
    if (cv.wait_until(lock, deadline) == std::cv_status::timeout) {
      return ready();
    }
  }
  return true;
}

}  // namespace spillway
