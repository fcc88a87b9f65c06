// RedisConnection: one hiredis connection with timeouts, reconnect with
// backoff, error classification and EVALSHA with transparent reload.
//
// Private to spillway::redis. Callers hand in argv vectors (never formatted
// command strings) and get a `RedisReply` copied out of hiredis, or an
// absl::Status that names what failed:
//   Unavailable       connect refused / reset / closed, or the reconnect
//                     backoff has not elapsed yet (no I/O is attempted);
//   DeadlineExceeded  connect or reply slower than its timeout (the
//                     connection is dropped: hiredis leaves it unusable);
//   Unauthenticated   AUTH refused (WRONGPASS, NOAUTH, "invalid password");
//   FailedPrecondition a WRONGTYPE error (the key holds another type);
//   InvalidArgument   SELECT refused (bad database number);
//   Internal          any other error reply, or a reply we cannot read.
// Every message names the server ("redis 127.0.0.1:6380") and the command.
//
// Thread safety: not thread-safe; one connection belongs to one thread
// (spillway gives each background thread its own).

#ifndef SPILLWAY_LIB_REDIS_CONNECTION_H_
#define SPILLWAY_LIB_REDIS_CONNECTION_H_

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "spillway/clock.h"
#include "spillway/redis/redis_options.h"

struct redisContext;

namespace spillway::internal {

// A reply, copied out of hiredis' redisReply.
struct RedisReply {
  enum class Type { kString, kArray, kInteger, kNil, kStatus, kError };
  Type type = Type::kNil;
  std::string str;                   // kString, kStatus, kError.
  int64_t integer = 0;               // kInteger.
  std::vector<RedisReply> elements;  // kArray.
};

// A Lua script, loaded once and run by its SHA1.
class RedisScript {
 public:
  explicit RedisScript(std::string source) : source_(std::move(source)) {}
  const std::string& source() const { return source_; }

 private:
  friend class RedisConnection;
  std::string source_;
  std::string sha_;  // From SCRIPT LOAD; empty until loaded.
};

class RedisConnection {
 public:
  // Does not connect; the first Command() (or Connect()) does. `clock`
  // times the reconnect backoff and must outlive the connection.
  RedisConnection(const redis::RedisOptions& options, Clock& clock);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Connects now, ignoring the backoff: TCP with connect_timeout, then AUTH
  // (if a password is set) and SELECT (if database != 0). On failure the
  // backoff starts. OK if already connected.
  absl::Status Connect();

  // Sends one command and reads its reply, connecting first if needed (and
  // the backoff allows). An error reply becomes a status (see above).
  absl::StatusOr<RedisReply> Command(absl::Span<const std::string> argv);

  // EVALSHA script keys... args...; on NOSCRIPT (first use, a SCRIPT FLUSH,
  // a restarted server) loads the script with SCRIPT LOAD and retries once.
  absl::StatusOr<RedisReply> Eval(RedisScript& script,
                                  absl::Span<const std::string> keys,
                                  absl::Span<const std::string> args);

  // True while a connection is open (it may still turn out dead).
  bool connected() const { return ctx_ != nullptr; }

  // Connection attempts that failed and succeeded so far, and how many
  // times a script was (re)loaded. For tests and logs.
  int64_t failed_connects() const { return failed_connects_; }
  int64_t connects() const { return connects_; }
  int64_t script_loads() const { return script_loads_; }

  // "redis <host>:<port>".
  const std::string& name() const { return name_; }

 private:
  // Connects (TCP, AUTH, SELECT) on behalf of `command` (named in errors).
  // On failure drops the context and starts the backoff.
  absl::Status ConnectFor(absl::string_view command);
  // Sends `argv` and returns the reply, an error reply included; a status
  // only for a connection problem (the connection is then dropped and the
  // backoff started). `connecting_for` names the command a connect (AUTH,
  // SELECT) is made for, if any. REQUIRES: connected, argv not empty.
  absl::StatusOr<RedisReply> RoundTrip(absl::Span<const std::string> argv,
                                       absl::string_view connecting_for = {});
  // Connects if needed (and the backoff allows), then RoundTrip().
  absl::StatusOr<RedisReply> Exchange(absl::Span<const std::string> argv);
  // SCRIPT LOAD; stores the SHA1 in `script`.
  absl::Status LoadScript(RedisScript& script);
  // The status for an error reply `error` to `command`.
  absl::Status ErrorReplyStatus(absl::string_view command,
                                absl::string_view error) const;
  // The status for hiredis' error on ctx_ (after a null reply or a failed
  // connect), naming `command`.
  absl::Status ContextErrorStatus(absl::string_view command,
                                  absl::string_view doing,
                                  int saved_errno) const;
  // Keeps `status`' message (without the server's name) as last_error_.
  void RememberError(const absl::Status& status);
  // Frees the context and schedules the next attempt after the backoff.
  void DropAndBackOff();

  redis::RedisOptions options_;
  Clock& clock_;
  std::string name_;             // "redis <host>:<port>".
  redisContext* ctx_ = nullptr;  // Null while disconnected.
  // The socket timeout in force (connect_timeout while connecting, then
  // command_timeout), quoted when it expires.
  absl::Duration io_timeout_;
  int64_t failed_connects_ = 0;
  int64_t connects_ = 0;
  int64_t script_loads_ = 0;
  // Failures (failed connects and dropped connections) since the last
  // successful connect; the next backoff is initial * 2^(failures - 1).
  int consecutive_failures_ = 0;
  // While disconnected, Command() attempts no I/O before this time.
  MonotonicTime next_attempt_{};
  // What the last failure was (hiredis' text or a server error; never a
  // password), quoted by the backoff refusal.
  std::string last_error_;
  // Jitter of the backoff; seeded per connection so that a fleet of
  // clients does not reconnect in lockstep.
  std::minstd_rand rng_;
};

}  // namespace spillway::internal

#endif  // SPILLWAY_LIB_REDIS_CONNECTION_H_
