#include "redis/connection.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <memory>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"

namespace spillway::internal {
namespace {

// Frees a hiredis reply.
struct ReplyDeleter {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

// hiredis 0.14 writes with write(2), so a write to a connection the server
// has reset raises SIGPIPE, whose default action ends the process. A library
// must not change the process' signal dispositions, so, like libpq, each
// exchange blocks SIGPIPE in the calling thread and afterwards discards a
// SIGPIPE it raised itself (one that was not pending before).
class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_mask_);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  ~ScopedSigpipeBlock() {
    if (!was_pending_) {
      sigset_t pending;
      sigemptyset(&pending);
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero = {0, 0};
        while (sigtimedwait(&pipe_, nullptr, &zero) < 0 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  }
  ScopedSigpipeBlock(const ScopedSigpipeBlock&) = delete;
  ScopedSigpipeBlock& operator=(const ScopedSigpipeBlock&) = delete;

 private:
  sigset_t pipe_;
  sigset_t old_mask_;
  bool was_pending_ = false;
};

// Copies a hiredis reply; false if it holds a type hiredis 0.14 does not
// document.
bool CopyReply(const redisReply& in, RedisReply& out) {
  switch (in.type) {
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::kString;
      out.str.assign(in.str, in.len);
      return true;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::kStatus;
      out.str.assign(in.str, in.len);
      return true;
    case REDIS_REPLY_ERROR:
      out.type = RedisReply::Type::kError;
      out.str.assign(in.str, in.len);
      return true;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::kInteger;
      out.integer = in.integer;
      return true;
    case REDIS_REPLY_NIL:
      out.type = RedisReply::Type::kNil;
      return true;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      out.elements.resize(in.elements);
      for (size_t i = 0; i < in.elements; ++i) {
        if (in.element[i] == nullptr ||
            !CopyReply(*in.element[i], out.elements[i])) {
          return false;
        }
      }
      return true;
    default:
      return false;
  }
}

// Whether hiredis' error on `ctx` (with `saved_errno`, errno right after the
// failed call) is a timeout: a blocking socket whose SO_RCVTIMEO/SO_SNDTIMEO
// expired (EAGAIN), or a connect that did not complete in time.
bool IsTimeout(const redisContext& ctx, int saved_errno) {
  if (ctx.err == REDIS_ERR_IO &&
      (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK ||
       saved_errno == ETIMEDOUT)) {
    return true;
  }
  return absl::StrContains(ctx.errstr, "Resource temporarily unavailable") ||
         absl::StrContains(ctx.errstr, "timed out");
}

// Strips the part of a server error that echoes a command's arguments
// (Redis 7: "ERR unknown command 'x', with args beginning with: 'a' 'b'"),
// so that no argument (a key, a password) reaches a status message.
absl::string_view WithoutArgs(absl::string_view error) {
  const size_t at = error.find(", with args beginning with:");
  if (at != absl::string_view::npos) error = error.substr(0, at);
  return absl::StripTrailingAsciiWhitespace(error);
}

// The first word of an error reply: "WRONGTYPE", "NOSCRIPT", "ERR", ...
absl::string_view ErrorCode(absl::string_view error) {
  return error.substr(0, error.find(' '));
}

}  // namespace

RedisConnection::RedisConnection(const redis::RedisOptions& options,
                                 Clock& clock)
    : options_(options),
      clock_(clock),
      name_(absl::StrCat("redis ", options.host, ":", options.port)) {
  absl::BitGen seed_source;
  rng_.seed(absl::Uniform<uint32_t>(seed_source));
}

RedisConnection::~RedisConnection() {
  if (ctx_ != nullptr) redisFree(ctx_);
}

absl::Status RedisConnection::Connect() {
  if (ctx_ != nullptr) return absl::OkStatus();
  return ConnectFor("");
}

absl::StatusOr<RedisReply> RedisConnection::Command(
    absl::Span<const std::string> argv) {
  if (argv.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name_, ": Command needs a command name; got empty argv"));
  }
  absl::StatusOr<RedisReply> reply = Exchange(argv);
  if (reply.ok() && reply->type == RedisReply::Type::kError) {
    return ErrorReplyStatus(argv[0], reply->str);
  }
  return reply;
}

absl::StatusOr<RedisReply> RedisConnection::Eval(
    RedisScript& script, absl::Span<const std::string> keys,
    absl::Span<const std::string> args) {
  if (script.sha_.empty()) {
    if (absl::Status s = LoadScript(script); !s.ok()) return s;
  }
  std::vector<std::string> argv;
  argv.reserve(3 + keys.size() + args.size());
  argv.push_back("EVALSHA");
  argv.push_back(script.sha_);
  argv.push_back(absl::StrCat(keys.size()));
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());

  absl::StatusOr<RedisReply> reply = Exchange(argv);
  if (reply.ok() && reply->type == RedisReply::Type::kError &&
      ErrorCode(reply->str) == "NOSCRIPT") {
    // A SCRIPT FLUSH or a restarted server forgot the script: load it again
    // and retry once.
    if (absl::Status s = LoadScript(script); !s.ok()) return s;
    argv[1] = script.sha_;
    reply = Exchange(argv);
  }
  if (reply.ok() && reply->type == RedisReply::Type::kError) {
    return ErrorReplyStatus(argv[0], reply->str);
  }
  return reply;
}

absl::Status RedisConnection::LoadScript(RedisScript& script) {
  const std::string argv[] = {"SCRIPT", "LOAD", script.source_};
  absl::StatusOr<RedisReply> reply = Command(argv);
  if (!reply.ok()) return reply.status();
  if (reply->type != RedisReply::Type::kString || reply->str.size() != 40) {
    return absl::InternalError(absl::StrCat(
        name_, " SCRIPT: LOAD returned no SHA1 (a 40-character string)"));
  }
  script.sha_ = std::move(reply->str);
  ++script_loads_;
  return absl::OkStatus();
}

absl::StatusOr<RedisReply> RedisConnection::Exchange(
    absl::Span<const std::string> argv) {
  if (ctx_ == nullptr) {
    const MonotonicTime now = clock_.Now();
    if (consecutive_failures_ > 0 && now < next_attempt_) {
      return absl::UnavailableError(
          absl::StrCat(name_, " ", argv[0],
                       ": not connected (reconnect backoff, next attempt in ",
                       absl::FormatDuration(ToDuration(next_attempt_ - now)),
                       "; last error: ", last_error_, ")"));
    }
    if (absl::Status s = ConnectFor(argv[0]); !s.ok()) return s;
  }
  return RoundTrip(argv);
}

absl::Status RedisConnection::ConnectFor(absl::string_view command) {
  const std::string who =
      command.empty() ? name_ : absl::StrCat(name_, " ", command);
  absl::Status status;
  {
    ScopedSigpipeBlock no_sigpipe;
    errno = 0;
    ctx_ = redisConnectWithTimeout(options_.host.c_str(), options_.port,
                                   absl::ToTimeval(options_.connect_timeout));
    const int saved_errno = errno;
    if (ctx_ == nullptr) {
      status = absl::UnavailableError(
          absl::StrCat(who, ": cannot connect: out of memory"));
    } else if (ctx_->err != 0) {
      io_timeout_ = options_.connect_timeout;
      status = ContextErrorStatus(command, "cannot connect", saved_errno);
    } else if (redisSetTimeout(ctx_,
                               absl::ToTimeval(options_.connect_timeout)) !=
               REDIS_OK) {
      status =
          ContextErrorStatus(command, "cannot set the socket timeout", errno);
    } else {
      io_timeout_ = options_.connect_timeout;
    }
  }

  // AUTH and SELECT, each within connect_timeout.
  if (status.ok() && !options_.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!options_.user.empty()) auth.push_back(options_.user);
    auth.push_back(options_.password);
    absl::StatusOr<RedisReply> reply = RoundTrip(auth, command);
    if (!reply.ok()) {  // RoundTrip dropped the connection and backed off.
      ++failed_connects_;
      return reply.status();
    }
    if (reply->type == RedisReply::Type::kError) {
      // The server's text names the reason (WRONGPASS, NOAUTH, ...); scrub
      // the password in case some server or proxy echoes it.
      const std::string error = absl::StrReplaceAll(
          WithoutArgs(reply->str), {{options_.password, "<password>"}});
      status = absl::UnauthenticatedError(absl::StrCat(
          who, ": authentication failed (AUTH",
          options_.user.empty() ? "" : absl::StrCat(" as user ", options_.user),
          " refused): ", error));
    }
  }
  if (status.ok() && options_.database != 0) {
    const std::string select[] = {"SELECT", absl::StrCat(options_.database)};
    absl::StatusOr<RedisReply> reply = RoundTrip(select, command);
    if (!reply.ok()) {  // RoundTrip dropped the connection and backed off.
      ++failed_connects_;
      return reply.status();
    }
    if (reply->type == RedisReply::Type::kError) {
      const absl::string_view error = WithoutArgs(reply->str);
      status =
          absl::StrContains(error, "NOAUTH")
              ? absl::UnauthenticatedError(absl::StrCat(
                    who, ": authentication required (SELECT refused): ", error))
              : absl::InvalidArgumentError(
                    absl::StrCat(who, ": SELECT of database ",
                                 options_.database, " refused: ", error));
    }
  }
  if (status.ok()) {
    if (redisSetTimeout(ctx_, absl::ToTimeval(options_.command_timeout)) ==
        REDIS_OK) {
      io_timeout_ = options_.command_timeout;
    } else {
      status =
          ContextErrorStatus(command, "cannot set the socket timeout", errno);
    }
  }

  if (!status.ok()) {
    ++failed_connects_;
    RememberError(status);
    DropAndBackOff();
    return status;
  }
  ++connects_;
  consecutive_failures_ = 0;
  last_error_.clear();
  return absl::OkStatus();
}

absl::StatusOr<RedisReply> RedisConnection::RoundTrip(
    absl::Span<const std::string> argv, absl::string_view connecting_for) {
  if (argv.size() > static_cast<size_t>(INT_MAX)) {
    return absl::InvalidArgumentError(absl::StrCat(
        name_, " ", argv[0], ": too many arguments; got ", argv.size()));
  }
  std::vector<const char*> args(argv.size());
  std::vector<size_t> lens(argv.size());
  for (size_t i = 0; i < argv.size(); ++i) {
    args[i] = argv[i].data();
    lens[i] = argv[i].size();
  }
  ReplyPtr raw;
  int saved_errno = 0;
  {
    ScopedSigpipeBlock no_sigpipe;
    errno = 0;
    raw.reset(static_cast<redisReply*>(redisCommandArgv(
        ctx_, static_cast<int>(argv.size()), args.data(), lens.data())));
    saved_errno = errno;
  }
  if (raw == nullptr) {
    // While connecting on behalf of a command, name both:
    // "redis host:port GET: AUTH: no reply: ...".
    const std::string command =
        connecting_for.empty() ? std::string(argv[0])
                               : absl::StrCat(connecting_for, ": ", argv[0]);
    absl::Status status = ContextErrorStatus(command, "no reply", saved_errno);
    RememberError(status);
    DropAndBackOff();
    return status;
  }
  RedisReply reply;
  if (!CopyReply(*raw, reply)) {
    // hiredis parsed the whole reply, so the connection is still in step.
    return absl::InternalError(absl::StrCat(
        name_, " ", argv[0], ": cannot read the reply (hiredis reply type ",
        raw->type, ")"));
  }
  return reply;
}

absl::Status RedisConnection::ErrorReplyStatus(absl::string_view command,
                                               absl::string_view error) const {
  const absl::string_view code = ErrorCode(error);
  const std::string message =
      absl::StrCat(name_, " ", command, ": ", WithoutArgs(error));
  if (code == "WRONGTYPE") return absl::FailedPreconditionError(message);
  if (code == "NOAUTH" || code == "WRONGPASS" ||
      absl::StrContains(error, "invalid password") ||
      absl::EqualsIgnoreCase(command, "AUTH")) {
    return absl::UnauthenticatedError(absl::StrCat(
        name_, " ", command, ": authentication failed: ", WithoutArgs(error)));
  }
  if (absl::EqualsIgnoreCase(command, "SELECT")) {
    return absl::InvalidArgumentError(message);
  }
  return absl::InternalError(message);
}

absl::Status RedisConnection::ContextErrorStatus(absl::string_view command,
                                                 absl::string_view doing,
                                                 int saved_errno) const {
  const std::string who =
      command.empty() ? name_ : absl::StrCat(name_, " ", command);
  const std::string what =
      ctx_->errstr[0] != '\0' ? std::string(ctx_->errstr) : "unknown error";
  if (IsTimeout(*ctx_, saved_errno)) {
    return absl::DeadlineExceededError(
        absl::StrCat(who, ": ", doing, ": timed out after ",
                     absl::FormatDuration(io_timeout_), " (", what, ")"));
  }
  if (ctx_->err == REDIS_ERR_PROTOCOL) {
    return absl::InternalError(
        absl::StrCat(who, ": ", doing, ": cannot read the reply: ", what));
  }
  return absl::UnavailableError(absl::StrCat(who, ": ", doing, ": ", what));
}

void RedisConnection::RememberError(const absl::Status& status) {
  // The refusal that quotes it names the server itself.
  absl::string_view message = status.message();
  absl::ConsumePrefix(&message, name_);
  absl::ConsumePrefix(&message, " ");
  absl::ConsumePrefix(&message, ": ");
  last_error_ = std::string(message);
}

void RedisConnection::DropAndBackOff() {
  if (ctx_ != nullptr) {
    redisFree(ctx_);
    ctx_ = nullptr;
  }
  consecutive_failures_ = std::min(consecutive_failures_ + 1, 64);
  const absl::Duration max = options_.reconnect_backoff_max;
  absl::Duration base = std::min(options_.reconnect_backoff_initial, max);
  for (int i = 1; i < consecutive_failures_ && base < max; ++i) {
    base = std::min(base * 2, max);
  }
  const double jitter =
      std::uniform_real_distribution<double>(0.75, 1.25)(rng_);
  const absl::Duration delay = std::min(base * jitter, max);
  next_attempt_ = clock_.Now() + ToChrono(delay);
}

}  // namespace spillway::internal
