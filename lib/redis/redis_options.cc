#include "spillway/redis/redis_options.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace spillway::redis {
namespace {

constexpr int kMaxDatabase = 1000000;
constexpr size_t kMaxKeyPrefix = 100;

absl::Status CheckTimeout(absl::string_view what, absl::string_view field,
                          absl::Duration d) {
  if (d < absl::Milliseconds(1) || d > absl::Seconds(60)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s.%s must be in [1ms, 60s]; got %s", what, field,
                        absl::FormatDuration(d)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateRedisOptions(const RedisOptions& options,
                                  absl::string_view what) {
  if (options.host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ".host must not be empty; got \"\""));
  }
  if (options.port < 1 || options.port > 65535) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s.port must be in [1, 65535]; got %d", what, options.port));
  }
  // The password is never printed; the user name is not a secret.
  if (!options.user.empty() && options.password.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s.user must be empty unless %s.password is set; got \"%s\"", what,
        what, absl::CHexEscape(options.user)));
  }
  if (options.database < 0 || options.database > kMaxDatabase) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s.database must be in [0, %d]; got %d", what,
                        kMaxDatabase, options.database));
  }
  const std::string& prefix = options.key_prefix;
  if (prefix.empty() || prefix.size() > kMaxKeyPrefix ||
      !std::all_of(prefix.begin(), prefix.end(), [](char c) {
        return c >= ' ' && c < 127 && c != '{' && c != '}';
      })) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s.key_prefix must be 1 to %d printable ASCII characters without "
        "braces; got \"%s\" (%d characters)",
        what, kMaxKeyPrefix, absl::CHexEscape(prefix), prefix.size()));
  }
  if (absl::Status s =
          CheckTimeout(what, "connect_timeout", options.connect_timeout);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckTimeout(what, "command_timeout", options.command_timeout);
      !s.ok()) {
    return s;
  }
  if (options.reconnect_backoff_max < absl::ZeroDuration() ||
      options.reconnect_backoff_max > absl::Seconds(60)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s.reconnect_backoff_max must be in [0, 60s]; got %s", what,
        absl::FormatDuration(options.reconnect_backoff_max)));
  }
  if (options.reconnect_backoff_initial < absl::ZeroDuration() ||
      options.reconnect_backoff_initial > options.reconnect_backoff_max) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s.reconnect_backoff_initial must be in [0, "
        "reconnect_backoff_max=%s]; got %s",
        what, absl::FormatDuration(options.reconnect_backoff_max),
        absl::FormatDuration(options.reconnect_backoff_initial)));
  }
  return absl::OkStatus();
}

}  // namespace spillway::redis
