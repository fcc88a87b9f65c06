// Eventually: spin (yielding, never sleeping) until a condition holds.
//
// For tests that wait for another thread to reach a state (a caller queued,
// a waiter registered with the simulated clock). Real time appears only as a
// safety timeout, so a broken build fails instead of hanging.

#ifndef SPILLWAY_TESTS_COMMON_EVENTUALLY_H_
#define SPILLWAY_TESTS_COMMON_EVENTUALLY_H_

#include <chrono>
#include <thread>

namespace spillway::test {

template <typename F>
bool Eventually(F cond) {
  const auto give_up =
      std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!cond()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::yield();
  }
  return true;
}

// Polls `cond` every millisecond, sleeping in between, until it holds; false
// after `limit`, a safety timeout. For integration tests waiting on a real
// server or a background thread on the real clock (a killed Redis noticed, a
// heartbeat expired), where yielding would only burn the CPU they need.
template <typename F>
bool WaitFor(F cond, std::chrono::milliseconds limit =
                         std::chrono::milliseconds(10000)) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace spillway::test

#endif  // SPILLWAY_TESTS_COMMON_EVENTUALLY_H_
