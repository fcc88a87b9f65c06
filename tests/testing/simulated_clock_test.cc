#include "spillway/testing/simulated_clock.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "gtest/gtest.h"
#include "tests/common/eventually.h"

namespace spillway::testing {
namespace {

using ::spillway::test::Eventually;

TEST(SimulatedClockTest, MovesOnlyWhenAdvanced) {
  SimulatedClock clock;
  const MonotonicTime t0 = clock.Now();
  EXPECT_EQ(clock.Now(), t0);
  clock.Advance(absl::Milliseconds(250));
  EXPECT_EQ(clock.Now() - t0, std::chrono::milliseconds(250));
  clock.Advance(-absl::Seconds(1));  // Never backwards.
  EXPECT_EQ(clock.Now() - t0, std::chrono::milliseconds(250));
  clock.AdvanceTo(t0);
  EXPECT_EQ(clock.Now() - t0, std::chrono::milliseconds(250));
  clock.AdvanceTo(t0 + std::chrono::seconds(2));
  EXPECT_EQ(clock.Now() - t0, std::chrono::seconds(2));
}

TEST(SimulatedClockTest, WaitUntilReturnsFalseAtTheDeadline) {
  SimulatedClock clock;
  std::mutex mu;
  std::condition_variable cv;
  const MonotonicTime deadline = clock.Now() + std::chrono::seconds(5);
  std::atomic<int> result{-1};
  std::thread waiter([&] {
    std::unique_lock<std::mutex> lock(mu);
    result = clock.WaitUntil(cv, lock, deadline, [] { return false; });
  });
  ASSERT_TRUE(Eventually([&] { return clock.waiters() == 1; }));
  clock.Advance(absl::Milliseconds(4999));
  ASSERT_TRUE(Eventually([&] { return clock.waiters() == 1; }));
  EXPECT_EQ(result.load(), -1);
  clock.Advance(absl::Milliseconds(1));
  waiter.join();
  EXPECT_EQ(result.load(), 0);
  EXPECT_EQ(clock.waiters(), 0);
}

TEST(SimulatedClockTest, WaitUntilReturnsTrueWhenNotified) {
  SimulatedClock clock;
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  std::atomic<int> result{-1};
  std::thread waiter([&] {
    std::unique_lock<std::mutex> lock(mu);
    result = clock.WaitUntil(cv, lock, clock.Now() + std::chrono::seconds(1),
                             [&] { return ready; });
  });
  ASSERT_TRUE(Eventually([&] { return clock.waiters() == 1; }));
  {
    std::lock_guard<std::mutex> lock(mu);
    ready = true;
  }
  cv.notify_all();
  waiter.join();
  EXPECT_EQ(result.load(), 1);
}

TEST(SimulatedClockTest, PastDeadlineReturnsAtOnce) {
  SimulatedClock clock;
  std::mutex mu;
  std::condition_variable cv;
  std::unique_lock<std::mutex> lock(mu);
  EXPECT_FALSE(clock.WaitUntil(cv, lock, clock.Now(), [] { return false; }));
  EXPECT_TRUE(clock.WaitUntil(cv, lock, clock.Now(), [] { return true; }));
  EXPECT_TRUE(lock.owns_lock());
}

}  // namespace
}  // namespace spillway::testing
