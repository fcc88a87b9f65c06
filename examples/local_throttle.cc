// local_throttle: one process protecting a slow database with spillway's two
// local gates.
//
// 48 client threads write as fast as they can to a fake database whose
// latency climbs steeply past 8 concurrent writes (a knee, as a real database
// has). Each write passes:
//   1. a TokenBucket (2500 writes/s, burst 100): the local rate limit, a
//      little above what the database can do at its knee (2000/s);
//   2. a ConcurrencyLimiter with the default limit algorithm (KneeLimit): it
//      learns the database's unloaded latency, starts at 1 and doubles until
//      latency passes twice that, then holds the limit there; callers that
//      find the limit full wait up to 10 ms in its queue. A write slower
//      than 30 ms is reported to it as dropped (a timeout, as a real client
//      would see).
// A write refused by the limiter gives its token back (no gate keeps budget
// for a write a later gate refused). Every half second the program prints
// the limit, in-flight count and what was admitted, queued and rejected, and
// why.
//
//   local_throttle [seconds]      (default 3)
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "spillway/concurrency_limiter.h"
#include "spillway/token_bucket.h"

namespace {

constexpr int kClients = 48;

// The fake database: 4 ms per write up to 8 concurrent writes, then latency
// grows with the square of the overload.
class FakeDatabase {
 public:
  std::chrono::microseconds Write() {
    const int concurrent = active_.fetch_add(1) + 1;
    const double overload = std::max(1.0, concurrent / 8.0);
    const auto latency = std::chrono::microseconds(
        static_cast<int64_t>(4000 * overload * overload));
    std::this_thread::sleep_for(latency);
    active_.fetch_sub(1);
    return latency;
  }

 private:
  std::atomic<int> active_{0};
};

struct Tally {
  std::atomic<int64_t> admitted{0};         // Ran, through TryAcquire.
  std::atomic<int64_t> admitted_queued{0};  // Ran, after waiting in Acquire.
  std::atomic<int64_t> dropped{0};          // Ran but slower than the timeout.
  std::array<std::atomic<int64_t>, spillway::kNumReasons> rejected{};
};

}  // namespace

int main(int argc, char** argv) {
  const int seconds = argc > 1 ? std::atoi(argv[1]) : 3;
  if (seconds <= 0 || seconds > 600) {
    std::fprintf(stderr, "usage: local_throttle [seconds in 1..600]\n");
    return 2;
  }

  absl::StatusOr<std::unique_ptr<spillway::TokenBucket>> bucket =
      spillway::TokenBucket::Create(
          {.rate = 2500, .burst = 100, .name = "local_throttle"});
  if (!bucket.ok()) {
    std::fprintf(stderr, "bad options: %s\n",
                 bucket.status().ToString().c_str());
    return 1;
  }
  spillway::ConcurrencyLimiterOptions limiter_options;
  limiter_options.name = "local_throttle";
  // limit left unset: the default algorithm, KneeLimit.
  limiter_options.max_queued = 16;
  absl::StatusOr<std::unique_ptr<spillway::ConcurrencyLimiter>> limiter =
      spillway::ConcurrencyLimiter::Create(std::move(limiter_options));
  if (!limiter.ok()) {
    std::fprintf(stderr, "bad options: %s\n",
                 limiter.status().ToString().c_str());
    return 1;
  }

  FakeDatabase db;
  Tally tally;
  const auto end =
      std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      while (std::chrono::steady_clock::now() < end) {
        absl::Duration retry_after;
        if (!(*bucket)->TryConsume(1, &retry_after)) {
          ++tally.rejected[static_cast<int>(spillway::Reason::kRateLimited)];
          std::this_thread::sleep_for(
              spillway::ToChrono(std::min(retry_after, absl::Milliseconds(5))));
          continue;
        }
        bool queued = false;
        spillway::Admission a = (*limiter)->TryAcquire();
        if (!a.ok()) {
          queued = true;
          a = (*limiter)->Acquire(std::chrono::steady_clock::now() +
                                  std::chrono::milliseconds(10));
        }
        if (!a.ok()) {
          (*bucket)->Return(1);
          ++tally.rejected[static_cast<int>(a.rejection().reason)];
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          continue;
        }
        spillway::Permit permit = std::move(a).permit();
        ++(queued ? tally.admitted_queued : tally.admitted);
        if (db.Write() > std::chrono::milliseconds(30)) {
          ++tally.dropped;
          permit.Dropped();  // Too slow: the database is congested.
        } else {
          permit.Success();
        }
      }
    });
  }

  std::printf("%6s %6s %9s %9s %9s %9s | rejected: %8s %8s %8s %8s\n", "t(s)",
              "limit", "in_flight", "admitted", "after_q", "too_slow", "rate",
              "limit", "q_full", "q_timeout");
  auto r = [&](spillway::Reason reason) {
    return static_cast<long long>(tally.rejected[static_cast<int>(reason)]);
  };
  for (int tick = 1; tick <= seconds * 2; ++tick) {
    std::this_thread::sleep_until(end - std::chrono::milliseconds(500) *
                                            (seconds * 2 - tick));
    std::printf(
        "%6.1f %6d %9d %9lld %9lld %9lld | rejected: %8lld %8lld %8lld %8lld\n",
        tick / 2.0, (*limiter)->limit(), (*limiter)->in_flight(),
        static_cast<long long>(tally.admitted.load()),
        static_cast<long long>(tally.admitted_queued.load()),
        static_cast<long long>(tally.dropped.load()),
        r(spillway::Reason::kRateLimited),
        r(spillway::Reason::kLimitReached) +
            r(spillway::Reason::kPartitionLimit),
        r(spillway::Reason::kQueueFull),
        r(spillway::Reason::kDeadlineExceeded));
  }
  for (std::thread& t : clients) t.join();

  const int64_t ran = tally.admitted + tally.admitted_queued;
  std::printf(
      "\n%lld writes ran in %d s (%lld after queueing), %lld of them slower "
      "than 30 ms.\n"
      "Turned away: %lld by the token bucket (rate_limited), %lld by the "
      "concurrency limit (limit_reached), %lld because the queue was full, "
      "%lld after waiting 10 ms in the queue.\n"
      "Final limit %d (KneeLimit, the default); the database's knee is at 8 "
      "concurrent writes.\n",
      static_cast<long long>(ran), seconds,
      static_cast<long long>(tally.admitted_queued.load()),
      static_cast<long long>(tally.dropped.load()),
      r(spillway::Reason::kRateLimited),
      r(spillway::Reason::kLimitReached) + r(spillway::Reason::kPartitionLimit),
      r(spillway::Reason::kQueueFull), r(spillway::Reason::kDeadlineExceeded),
      (*limiter)->limit());
  return 0;
}
