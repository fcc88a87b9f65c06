// Classifies a failed Redis call for `spillway_redis_errors_total{kind}`.
//
// Private to spillway::redis. Thread safety: pure functions.

#ifndef SPILLWAY_LIB_REDIS_ERROR_KIND_H_
#define SPILLWAY_LIB_REDIS_ERROR_KIND_H_

#include <array>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace spillway::internal {

// Every kind, in the order of RedisErrorKindIndex.
inline constexpr std::array<absl::string_view, 6> kRedisErrorKinds = {
    "unavailable", "timeout", "auth", "wrong_type", "script", "protocol"};

// Index into kRedisErrorKinds for a status returned by RedisConnection or a
// store built on it (see lib/redis/connection.h for the codes):
//   Unavailable -> unavailable, DeadlineExceeded -> timeout,
//   Unauthenticated / PermissionDenied -> auth, FailedPrecondition ->
//   wrong_type, DataLoss (a reply we cannot read) -> protocol, anything
//   else (an error reply, e.g. from a script) -> script.
inline int RedisErrorKindIndex(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
      return 0;
    case absl::StatusCode::kDeadlineExceeded:
      return 1;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return 2;
    case absl::StatusCode::kFailedPrecondition:
      return 3;
    case absl::StatusCode::kDataLoss:
      return 5;
    default:
      return 4;
  }
}

}  // namespace spillway::internal

#endif  // SPILLWAY_LIB_REDIS_ERROR_KIND_H_
