// A consumer of an installed spillway: admits one write through each gate.
#include <cstdio>
#include <utility>

#include "spillway/concurrency_limiter.h"
#include "spillway/token_bucket.h"

int main() {
  auto bucket = spillway::TokenBucket::Create({});
  auto limiter = spillway::ConcurrencyLimiter::Create({});
  if (!bucket.ok() || !limiter.ok()) {
    std::fprintf(stderr, "create failed\n");
    return 1;
  }
  if (!(*bucket)->TryConsume()) return 1;
  spillway::Admission a = (*limiter)->TryAcquire();
  if (!a.ok()) return 1;
  spillway::Permit permit = std::move(a).permit();
  permit.Success();
  std::printf("consumer: admitted one write, limit %d\n", (*limiter)->limit());
  return (*limiter)->in_flight() == 0 ? 0 : 1;
}
