// A consumer of an installed spillway: admits one write through each gate.
#include <cstdio>
#include <utility>

#include "spillway/concurrency_limiter.h"
#include "spillway/token_bucket.h"
#ifdef CONSUMER_WITH_REDIS
#include "spillway/redis/global_budget.h"
#endif
#ifdef CONSUMER_WITH_PQXX
#include "spillway/pqxx/throttled_writer.h"
#endif

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
#ifdef CONSUMER_WITH_REDIS
  // Links spillway::redis (and hiredis through it); no server needed.
  spillway::redis::GlobalBudgetOptions fleet;
  fleet.redis.port = 0;
  if (spillway::redis::ValidateGlobalBudgetOptions(fleet).ok()) return 1;
  std::printf("consumer: spillway::redis linked\n");
#endif
#ifdef CONSUMER_WITH_PQXX
  // Links spillway::pqxx (and libpqxx through it); no server needed.
  if (spillway::pqxx::ValidateThrottledWriterOptions({}).ok()) return 1;
  std::printf("consumer: spillway::pqxx linked\n");
#endif
  return (*limiter)->in_flight() == 0 ? 0 : 1;
}
