// RedisOptions: how spillway's Redis components reach their server.
//
// Shared by `GlobalBudget` and `FleetRegistry`. Every field has a small,
// production-minded default: timeouts are tens of milliseconds because a
// budget refresh that waits longer than that is better served by the fail
// mode than by waiting.
//
//   spillway::redis::RedisOptions redis;
//   redis.host = "10.0.0.7";
//   redis.password = std::getenv("REDIS_PASSWORD");
//
// Key layout (every key starts with `key_prefix`; the part in braces is a
// Redis Cluster hash tag, so each budget and each fleet lives in one slot):
//   <prefix>:{<budget key>}:budget    a string: the budget's GCRA state
//                                     (theoretical arrival time, µs of the
//                                     server's TIME), expiring when idle;
//   <prefix>:{fleet:<fleet>}:members  a hash: instance id -> "offered
//                                     admitted expiry_ms" heartbeats.
//
// Thread safety: a plain value type.

#ifndef SPILLWAY_REDIS_REDIS_OPTIONS_H_
#define SPILLWAY_REDIS_REDIS_OPTIONS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace spillway::redis {

struct RedisOptions {
  // Server address. Default: "127.0.0.1". REQUIRES: not empty.
  std::string host = "127.0.0.1";

  // Server port. Default: 6379. REQUIRES: in [1, 65535].
  int port = 6379;

  // ACL user name (Redis 6+). Default: empty, meaning the default user
  // (`AUTH <password>` only). REQUIRES: empty unless `password` is set.
  std::string user;

  // Password. Default: empty, meaning no AUTH.
  std::string password;

  // Logical database (SELECT). Default: 0. REQUIRES: in [0, 1000000].
  int database = 0;

  // Prefix of every key spillway writes. Default: "spillway".
  // REQUIRES: 1 to 100 printable ASCII characters, no braces.
  std::string key_prefix = "spillway";

  // Time allowed to connect (TCP, AUTH and SELECT each). Default: 50 ms.
  // REQUIRES: in [1 ms, 60 s].
  absl::Duration connect_timeout = absl::Milliseconds(50);

  // Time allowed for one command's reply; a slower reply counts as the
  // server being unreachable. Default: 25 ms. REQUIRES: in [1 ms, 60 s].
  absl::Duration command_timeout = absl::Milliseconds(25);

  // After a failure, the next connection attempt waits a backoff that starts
  // here and doubles per failure (with ±25% jitter) up to
  // `reconnect_backoff_max`; a success resets it.
  // Default: 25 ms and 500 ms. REQUIRES: 0 <= initial <= max <= 60 s.
  absl::Duration reconnect_backoff_initial = absl::Milliseconds(25);
  absl::Duration reconnect_backoff_max = absl::Milliseconds(500);
};

// Checks every field; the error names the field (prefixed with `what`, e.g.
// "GlobalBudgetOptions.redis") and its value. Thread-safe.
absl::Status ValidateRedisOptions(const RedisOptions& options,
                                  absl::string_view what = "RedisOptions");

}  // namespace spillway::redis

#endif  // SPILLWAY_REDIS_REDIS_OPTIONS_H_
