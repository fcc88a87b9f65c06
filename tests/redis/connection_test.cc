// Tests of RedisConnection against a real redis-server (one per test, on
// loopback, through RedisServer): replies of every type, argv passed
// byte for byte, EVALSHA with transparent reload, the mapping of errors to
// status codes, AUTH (password and ACL user), SELECT, and reconnecting with
// backoff after refused, dropped and timed-out connections. The backoff runs
// on a simulated clock; real time appears only as socket timeouts.
// Also: ValidateRedisOptions over every invalid field.

#include "redis/connection.h"

#include <signal.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spillway/redis/redis_options.h"
#include "spillway/testing/simulated_clock.h"
#include "tests/common/invalid_options.h"
#include "tests/redis/redis_server.h"

namespace spillway {
namespace {

using ::spillway::internal::RedisConnection;
using ::spillway::internal::RedisReply;
using ::spillway::internal::RedisScript;
using ::spillway::redis::RedisOptions;
using ::spillway::redis::ValidateRedisOptions;
using ::spillway::test::RedisServer;
using ::spillway::testing::SimulatedClock;
using ::testing::HasSubstr;
using ::testing::Not;
using Argv = std::vector<std::string>;
using Type = RedisReply::Type;

constexpr absl::Duration kBackoffInitial = absl::Milliseconds(100);
constexpr absl::Duration kBackoffMax = absl::Seconds(1);

// A server, or null after recording the failure (callers ASSERT_NE).
std::unique_ptr<RedisServer> StartServer(Argv extra_args = {}) {
  return test::ValueOrFail(RedisServer::Start(std::move(extra_args)));
}

// Options for `server`. The socket timeouts are generous (sanitizer builds
// on a busy machine are slow) except where a test wants one to expire.
RedisOptions OptionsFor(const RedisServer& server) {
  RedisOptions options;
  options.port = server.port();
  options.connect_timeout = absl::Seconds(5);
  options.command_timeout = absl::Seconds(5);
  options.reconnect_backoff_initial = kBackoffInitial;
  options.reconnect_backoff_max = kBackoffMax;
  return options;
}

std::string ServerName(const RedisServer& server) {
  return absl::StrCat("redis 127.0.0.1:", server.port());
}

// The fixture's reply text, or the error as text (so that EXPECT_EQ shows
// it).
std::string Text(const absl::StatusOr<std::string>& reply) {
  return reply.ok() ? *reply : "error: " + reply.status().ToString();
}

// A script that adds ARGV[1] to the number at KEYS[1].
constexpr char kIncrBy[] = "return redis.call('INCRBY', KEYS[1], ARGV[1])";

class RedisConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = StartServer();
    ASSERT_NE(server_, nullptr);
  }

  std::unique_ptr<RedisServer> server_;
  SimulatedClock clock_;
};

// --- Replies ----------------------------------------------------------------

TEST_F(RedisConnectionTest, RoundTripsEveryReplyType) {
  RedisConnection conn(OptionsFor(*server_), clock_);
  EXPECT_FALSE(conn.connected());

  absl::StatusOr<RedisReply> set = conn.Command(Argv{"SET", "k", "v"});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->type, Type::kStatus);
  EXPECT_EQ(set->str, "OK");
  EXPECT_TRUE(conn.connected());
  EXPECT_EQ(conn.connects(), 1);

  absl::StatusOr<RedisReply> get = conn.Command(Argv{"GET", "k"});
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(get->type, Type::kString);
  EXPECT_EQ(get->str, "v");

  ASSERT_TRUE(conn.Command(Argv{"INCR", "n"}).ok());
  absl::StatusOr<RedisReply> incr = conn.Command(Argv{"INCR", "n"});
  ASSERT_TRUE(incr.ok()) << incr.status();
  EXPECT_EQ(incr->type, Type::kInteger);
  EXPECT_EQ(incr->integer, 2);

  absl::StatusOr<RedisReply> nil = conn.Command(Argv{"GET", "missing"});
  ASSERT_TRUE(nil.ok()) << nil.status();
  EXPECT_EQ(nil->type, Type::kNil);

  ASSERT_TRUE(conn.Command(Argv{"RPUSH", "l", "a", "b", "c"}).ok());
  absl::StatusOr<RedisReply> range =
      conn.Command(Argv{"LRANGE", "l", "0", "-1"});
  ASSERT_TRUE(range.ok()) << range.status();
  ASSERT_EQ(range->type, Type::kArray);
  ASSERT_EQ(range->elements.size(), 3u);
  EXPECT_EQ(range->elements[0].type, Type::kString);
  EXPECT_EQ(range->elements[0].str, "a");
  EXPECT_EQ(range->elements[2].str, "c");

  // One connection served every command.
  EXPECT_EQ(conn.connects(), 1);
  EXPECT_EQ(conn.failed_connects(), 0);
}

TEST_F(RedisConnectionTest, PassesArgvUnchanged) {
  // Spaces, format directives, binary bytes (NUL, CR LF, 0xff) and empty
  // strings reach the server as they are: nothing is formatted or quoted.
  const std::vector<std::string> values = {"a value with spaces", "%s %d %n %%",
                                           std::string("\0\x01\xff\r\nx", 6),
                                           ""};
  RedisConnection conn(OptionsFor(*server_), clock_);
  for (size_t i = 0; i < values.size(); ++i) {
    const std::string key = absl::StrCat("key ", i, std::string("\0", 1));
    ASSERT_TRUE(conn.Command(Argv{"SET", key, values[i]}).ok());
    absl::StatusOr<RedisReply> get = conn.Command(Argv{"GET", key});
    ASSERT_TRUE(get.ok()) << get.status();
    EXPECT_EQ(get->type, Type::kString);
    EXPECT_EQ(get->str, values[i]) << "value " << i;
    // The server stored exactly these bytes (seen through another client).
    EXPECT_EQ(Text(server_->Command({"STRLEN", key})),
              absl::StrCat(values[i].size()));
  }
  EXPECT_EQ(Text(server_->Command({"DBSIZE"})), absl::StrCat(values.size()));
  // An empty key works too.
  ASSERT_TRUE(conn.Command(Argv{"SET", "", "empty key"}).ok());
  EXPECT_EQ(Text(server_->Command({"GET", ""})), "empty key");
}

TEST_F(RedisConnectionTest, RefusesEmptyArgv) {
  RedisConnection conn(OptionsFor(*server_), clock_);
  absl::StatusOr<RedisReply> reply = conn.Command(Argv{});
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(conn.connected());  // No I/O for a malformed call.
}

// --- Scripts ----------------------------------------------------------------

TEST_F(RedisConnectionTest, EvalLoadsOnceThenUsesEvalsha) {
  RedisConnection conn(OptionsFor(*server_), clock_);
  RedisScript script(kIncrBy);
  for (int i = 1; i <= 3; ++i) {
    absl::StatusOr<RedisReply> reply =
        conn.Eval(script, Argv{"counter"}, Argv{"5"});
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply->type, Type::kInteger);
    EXPECT_EQ(reply->integer, 5 * i);
  }
  EXPECT_EQ(conn.script_loads(), 1);
  // The server saw three EVALSHA and never a plain EVAL.
  absl::StatusOr<std::string> stats =
      server_->Command({"INFO", "commandstats"});
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_THAT(*stats, HasSubstr("cmdstat_evalsha:calls=3,"));
  EXPECT_THAT(*stats, Not(HasSubstr("cmdstat_eval:")));
}

TEST_F(RedisConnectionTest, EvalReloadsAfterScriptFlush) {
  RedisConnection conn(OptionsFor(*server_), clock_);
  RedisScript script(kIncrBy);
  ASSERT_TRUE(conn.Eval(script, Argv{"counter"}, Argv{"1"}).ok());
  EXPECT_EQ(conn.script_loads(), 1);

  ASSERT_TRUE(server_->Command({"SCRIPT", "FLUSH"}).ok());
  absl::StatusOr<RedisReply> reply =
      conn.Eval(script, Argv{"counter"}, Argv{"1"});
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->integer, 2);
  EXPECT_EQ(conn.script_loads(), 2);

  // Loaded again, EVALSHA works without another load.
  ASSERT_TRUE(conn.Eval(script, Argv{"counter"}, Argv{"1"}).ok());
  EXPECT_EQ(conn.script_loads(), 2);
}

TEST_F(RedisConnectionTest, EvalPassesKeysAndArgsInOrder) {
  RedisConnection conn(OptionsFor(*server_), clock_);
  RedisScript script("return {KEYS[1], KEYS[2], ARGV[1], ARGV[2], #ARGV}");
  absl::StatusOr<RedisReply> reply =
      conn.Eval(script, Argv{"k 1", "k2"}, Argv{"", "a%sb"});
  ASSERT_TRUE(reply.ok()) << reply.status();
  ASSERT_EQ(reply->type, Type::kArray);
  ASSERT_EQ(reply->elements.size(), 5u);
  EXPECT_EQ(reply->elements[0].str, "k 1");
  EXPECT_EQ(reply->elements[1].str, "k2");
  EXPECT_EQ(reply->elements[2].str, "");
  EXPECT_EQ(reply->elements[3].str, "a%sb");
  EXPECT_EQ(reply->elements[4].integer, 2);
}

TEST_F(RedisConnectionTest, ScriptErrorIsInternal) {
  RedisConnection conn(OptionsFor(*server_), clock_);
  RedisScript script("return redis.error_reply('budget exploded')");
  absl::StatusOr<RedisReply> reply = conn.Eval(script, Argv{}, Argv{});
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kInternal)
      << reply.status();
  EXPECT_THAT(reply.status().message(), HasSubstr("budget exploded"));
  EXPECT_THAT(reply.status().message(), HasSubstr("EVALSHA"));
  EXPECT_EQ(conn.script_loads(), 1);
}

TEST_F(RedisConnectionTest, ScriptThatDoesNotCompileIsInternal) {
  RedisConnection conn(OptionsFor(*server_), clock_);
  RedisScript script("this is not lua");
  absl::StatusOr<RedisReply> reply = conn.Eval(script, Argv{}, Argv{});
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kInternal)
      << reply.status();
  EXPECT_THAT(reply.status().message(), HasSubstr("SCRIPT"));
  EXPECT_EQ(conn.script_loads(), 0);
}

// --- Error replies ----------------------------------------------------------

TEST_F(RedisConnectionTest, WrongTypeIsFailedPrecondition) {
  ASSERT_TRUE(server_->Command({"LPUSH", "list", "x"}).ok());
  RedisConnection conn(OptionsFor(*server_), clock_);
  absl::StatusOr<RedisReply> get = conn.Command(Argv{"GET", "list"});
  EXPECT_EQ(get.status().code(), absl::StatusCode::kFailedPrecondition)
      << get.status();
  EXPECT_THAT(get.status().message(), HasSubstr("WRONGTYPE"));
  EXPECT_THAT(get.status().message(), HasSubstr(ServerName(*server_)));
  EXPECT_THAT(get.status().message(), HasSubstr("GET"));

  // The same error raised inside a script.
  RedisScript script(kIncrBy);
  absl::StatusOr<RedisReply> eval = conn.Eval(script, Argv{"list"}, Argv{"1"});
  EXPECT_EQ(eval.status().code(), absl::StatusCode::kFailedPrecondition)
      << eval.status();
  EXPECT_THAT(eval.status().message(), HasSubstr("WRONGTYPE"));
  // Error replies leave the connection usable.
  EXPECT_TRUE(conn.connected());
  EXPECT_TRUE(conn.Command(Argv{"PING"}).ok());
  EXPECT_EQ(conn.connects(), 1);
}

TEST_F(RedisConnectionTest, UnknownCommandIsInternalAndNamesOnlyTheCommand) {
  RedisConnection conn(OptionsFor(*server_), clock_);
  absl::StatusOr<RedisReply> reply =
      conn.Command(Argv{"NOSUCHCMD", "secret-argument"});
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kInternal)
      << reply.status();
  EXPECT_THAT(reply.status().message(), HasSubstr("NOSUCHCMD"));
  EXPECT_THAT(reply.status().message(), HasSubstr(ServerName(*server_)));
  // Redis 7 echoes the first arguments; they are cut from the message.
  EXPECT_THAT(reply.status().message(), Not(HasSubstr("secret-argument")));
  EXPECT_TRUE(conn.connected());
}

// --- AUTH and SELECT --------------------------------------------------------

TEST(RedisConnectionAuthTest, WrongPasswordIsUnauthenticated) {
  std::unique_ptr<RedisServer> server =
      StartServer({"--requirepass", "secret"});
  ASSERT_NE(server, nullptr);
  SimulatedClock clock;
  RedisOptions options = OptionsFor(*server);
  options.password = "not-the-pw-42";
  RedisConnection conn(options, clock);

  absl::StatusOr<RedisReply> reply = conn.Command(Argv{"PING"});
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnauthenticated)
      << reply.status();
  EXPECT_THAT(reply.status().message(), HasSubstr("authentication"));
  EXPECT_THAT(reply.status().message(), HasSubstr(ServerName(*server)));
  EXPECT_THAT(reply.status().message(), Not(HasSubstr("not-the-pw-42")));
  EXPECT_THAT(reply.status().message(), Not(HasSubstr("secret")));
  EXPECT_FALSE(conn.connected());
  EXPECT_EQ(conn.failed_connects(), 1);
  EXPECT_EQ(conn.connects(), 0);

  // Connect() ignores the backoff and fails the same way.
  absl::Status connect = conn.Connect();
  EXPECT_EQ(connect.code(), absl::StatusCode::kUnauthenticated) << connect;
  EXPECT_THAT(connect.message(), Not(HasSubstr("not-the-pw-42")));
  EXPECT_EQ(conn.failed_connects(), 2);
}

TEST(RedisConnectionAuthTest, MissingPasswordIsUnauthenticated) {
  std::unique_ptr<RedisServer> server =
      StartServer({"--requirepass", "secret"});
  ASSERT_NE(server, nullptr);
  SimulatedClock clock;
  RedisConnection conn(OptionsFor(*server), clock);
  absl::StatusOr<RedisReply> reply = conn.Command(Argv{"GET", "k"});
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnauthenticated)
      << reply.status();
  EXPECT_THAT(reply.status().message(), HasSubstr("NOAUTH"));
  EXPECT_THAT(reply.status().message(), HasSubstr("GET"));
}

TEST(RedisConnectionAuthTest, RightPasswordWorks) {
  std::unique_ptr<RedisServer> server =
      StartServer({"--requirepass", "secret"});
  ASSERT_NE(server, nullptr);
  SimulatedClock clock;
  RedisOptions options = OptionsFor(*server);
  options.password = "secret";
  RedisConnection conn(options, clock);
  ASSERT_TRUE(conn.Connect().ok());
  absl::StatusOr<RedisReply> reply = conn.Command(Argv{"SET", "k", "v"});
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(Text(server->Command({"GET", "k"})), "v");
  EXPECT_EQ(conn.connects(), 1);
}

TEST(RedisConnectionAuthTest, AclUserWorks) {
  std::unique_ptr<RedisServer> server =
      StartServer({"--requirepass", "secret"});
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(
      server->Command({"ACL", "SETUSER", "app", "on", ">pw", "~*", "+@all"})
          .ok());
  SimulatedClock clock;
  RedisOptions options = OptionsFor(*server);
  options.user = "app";
  options.password = "pw";
  RedisConnection conn(options, clock);
  absl::StatusOr<RedisReply> whoami = conn.Command(Argv{"ACL", "WHOAMI"});
  ASSERT_TRUE(whoami.ok()) << whoami.status();
  EXPECT_EQ(whoami->str, "app");

  // The right user with the default user's password is refused.
  options.password = "secret";
  RedisConnection wrong(options, clock);
  absl::StatusOr<RedisReply> reply = wrong.Command(Argv{"PING"});
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnauthenticated)
      << reply.status();
  EXPECT_THAT(reply.status().message(), HasSubstr("authentication"));
  EXPECT_THAT(reply.status().message(), Not(HasSubstr("secret")));
}

TEST_F(RedisConnectionTest, SelectWritesToTheDatabase) {
  RedisOptions options = OptionsFor(*server_);
  options.database = 5;
  RedisConnection conn(options, clock_);
  ASSERT_TRUE(conn.Command(Argv{"SET", "in5", "v"}).ok());
  absl::StatusOr<RedisReply> size = conn.Command(Argv{"DBSIZE"});
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(size->integer, 1);
  // Database 0 (the fixture's) has no such key; the keyspace shows db5.
  EXPECT_EQ(Text(server_->Command({"GET", "in5"})), "(nil)");
  EXPECT_EQ(Text(server_->Command({"DBSIZE"})), "0");
  absl::StatusOr<std::string> keyspace = server_->Command({"INFO", "keyspace"});
  ASSERT_TRUE(keyspace.ok()) << keyspace.status();
  EXPECT_THAT(*keyspace, HasSubstr("db5:keys=1,"));
}

TEST_F(RedisConnectionTest, SelectOfMissingDatabaseIsInvalidArgument) {
  RedisOptions options = OptionsFor(*server_);
  options.database = 16;  // The server has databases 0 to 15.
  RedisConnection conn(options, clock_);
  absl::Status status = conn.Connect();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("SELECT"));
  EXPECT_THAT(status.message(), HasSubstr(ServerName(*server_)));
  EXPECT_FALSE(conn.connected());
  EXPECT_EQ(conn.failed_connects(), 1);
}

// --- Reconnecting -----------------------------------------------------------

TEST_F(RedisConnectionTest, RefusedConnectionBacksOffAndRecovers) {
  ASSERT_TRUE(server_->Kill().ok());
  RedisConnection conn(OptionsFor(*server_), clock_);

  absl::StatusOr<RedisReply> refused = conn.Command(Argv{"PING"});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable)
      << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr(ServerName(*server_)));
  EXPECT_THAT(refused.status().message(), HasSubstr("PING"));
  EXPECT_EQ(conn.failed_connects(), 1);

  // At once again: refused by the backoff, without trying.
  absl::StatusOr<RedisReply> waiting = conn.Command(Argv{"PING"});
  EXPECT_EQ(waiting.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(waiting.status().message(), HasSubstr("backoff"));
  EXPECT_THAT(waiting.status().message(), HasSubstr(ServerName(*server_)));
  EXPECT_EQ(conn.failed_connects(), 1);

  // After the longest backoff it tries (and fails) again.
  clock_.Advance(kBackoffMax + absl::Milliseconds(1));
  EXPECT_EQ(conn.Command(Argv{"PING"}).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(conn.failed_connects(), 2);

  ASSERT_TRUE(server_->Restart().ok());
  // Still in the backoff of the second failure.
  EXPECT_THAT(conn.Command(Argv{"PING"}).status().message(),
              HasSubstr("backoff"));
  EXPECT_EQ(conn.failed_connects(), 2);
  clock_.Advance(kBackoffMax + absl::Milliseconds(1));
  absl::StatusOr<RedisReply> pong = conn.Command(Argv{"PING"});
  ASSERT_TRUE(pong.ok()) << pong.status();
  EXPECT_EQ(pong->str, "PONG");
  EXPECT_EQ(conn.connects(), 1);
  EXPECT_EQ(conn.failed_connects(), 2);
}

TEST_F(RedisConnectionTest, BackoffDoublesWithJitterUpToMax) {
  ASSERT_TRUE(server_->Kill().ok());
  RedisConnection conn(OptionsFor(*server_), clock_);
  absl::Duration base = kBackoffInitial;
  for (int failure = 1; failure <= 6; ++failure) {
    // An attempt: the server is down, so it fails and the backoff starts.
    ASSERT_EQ(conn.Command(Argv{"PING"}).status().code(),
              absl::StatusCode::kUnavailable);
    ASSERT_EQ(conn.failed_connects(), failure);
    // The backoff is base * [0.75, 1.25], at most the maximum.
    const absl::Duration shortest = base * 0.75;
    const absl::Duration longest = std::min(base * 1.25, kBackoffMax);
    clock_.Advance(shortest - absl::Milliseconds(1));
    EXPECT_THAT(conn.Command(Argv{"PING"}).status().message(),
                HasSubstr("backoff"))
        << "failure " << failure << ", base " << base;
    EXPECT_EQ(conn.failed_connects(), failure);
    // The next iteration's attempt comes just after the longest backoff.
    clock_.Advance(longest - shortest + absl::Milliseconds(2));
    base = std::min(base * 2, kBackoffMax);
  }
  // A success resets the backoff to its initial value.
  ASSERT_TRUE(server_->Restart().ok());
  ASSERT_TRUE(conn.Command(Argv{"PING"}).ok());
  ASSERT_TRUE(server_->Kill().ok());
  EXPECT_EQ(conn.Command(Argv{"PING"}).status().code(),
            absl::StatusCode::kUnavailable);  // The connection drops.
  EXPECT_THAT(conn.Command(Argv{"PING"}).status().message(),
              HasSubstr("backoff"));
  clock_.Advance(kBackoffInitial * 1.25 + absl::Milliseconds(1));
  EXPECT_EQ(conn.Command(Argv{"PING"}).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(conn.failed_connects(), 7);
}

TEST_F(RedisConnectionTest, DroppedConnectionBacksOffAndRecovers) {
  RedisConnection conn(OptionsFor(*server_), clock_);
  ASSERT_TRUE(conn.Command(Argv{"PING"}).ok());
  ASSERT_TRUE(server_->Kill().ok());

  absl::StatusOr<RedisReply> lost = conn.Command(Argv{"GET", "k"});
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kUnavailable)
      << lost.status();
  EXPECT_THAT(lost.status().message(), HasSubstr(ServerName(*server_)));
  EXPECT_THAT(lost.status().message(), HasSubstr("GET"));
  EXPECT_FALSE(conn.connected());

  ASSERT_TRUE(server_->Restart().ok());
  EXPECT_THAT(conn.Command(Argv{"PING"}).status().message(),
              HasSubstr("backoff"));
  EXPECT_EQ(conn.connects(), 1);
  clock_.Advance(kBackoffMax + absl::Milliseconds(1));
  ASSERT_TRUE(conn.Command(Argv{"PING"}).ok());
  EXPECT_EQ(conn.connects(), 2);
  EXPECT_EQ(conn.failed_connects(), 0);
}

TEST_F(RedisConnectionTest, ConnectIgnoresTheBackoff) {
  ASSERT_TRUE(server_->Kill().ok());
  RedisConnection conn(OptionsFor(*server_), clock_);
  EXPECT_EQ(conn.Connect().code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(server_->Restart().ok());
  EXPECT_THAT(conn.Command(Argv{"PING"}).status().message(),
              HasSubstr("backoff"));
  // No clock advance: Connect() tries anyway and then commands flow.
  ASSERT_TRUE(conn.Connect().ok());
  EXPECT_TRUE(conn.connected());
  EXPECT_TRUE(conn.Command(Argv{"PING"}).ok());
  EXPECT_TRUE(conn.Connect().ok());  // Already connected: no new connect.
  EXPECT_EQ(conn.connects(), 1);
}

TEST_F(RedisConnectionTest, EvalReloadsAfterServerRestart) {
  RedisConnection conn(OptionsFor(*server_), clock_);
  RedisScript script(kIncrBy);
  ASSERT_TRUE(conn.Eval(script, Argv{"counter"}, Argv{"1"}).ok());
  ASSERT_TRUE(server_->Restart().ok());
  // The old connection is dead: the first call finds out and backs off.
  EXPECT_EQ(conn.Eval(script, Argv{"counter"}, Argv{"1"}).status().code(),
            absl::StatusCode::kUnavailable);
  clock_.Advance(kBackoffMax + absl::Milliseconds(1));
  absl::StatusOr<RedisReply> reply =
      conn.Eval(script, Argv{"counter"}, Argv{"1"});
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->integer, 1);  // The restarted server started empty.
  EXPECT_EQ(conn.script_loads(), 2);
}

TEST_F(RedisConnectionTest, FrozenServerTimesOutThenRecovers) {
  RedisOptions options = OptionsFor(*server_);
  options.command_timeout = absl::Milliseconds(200);
  RedisConnection conn(options, clock_);
  ASSERT_TRUE(conn.Command(Argv{"PING"}).ok());

  ASSERT_TRUE(server_->Freeze().ok());
  absl::StatusOr<RedisReply> reply = conn.Command(Argv{"GET", "k"});
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded)
      << reply.status();
  EXPECT_THAT(reply.status().message(), HasSubstr(ServerName(*server_)));
  EXPECT_THAT(reply.status().message(), HasSubstr("GET"));
  EXPECT_FALSE(conn.connected());  // hiredis leaves a timed-out context dead.

  ASSERT_TRUE(server_->Thaw().ok());
  EXPECT_THAT(conn.Command(Argv{"PING"}).status().message(),
              HasSubstr("backoff"));
  clock_.Advance(kBackoffMax + absl::Milliseconds(1));
  absl::StatusOr<RedisReply> pong = conn.Command(Argv{"PING"});
  ASSERT_TRUE(pong.ok()) << pong.status();
  EXPECT_EQ(conn.connects(), 2);
}

TEST(RedisConnectionAuthTest, FrozenServerTimesOutDuringAuth) {
  std::unique_ptr<RedisServer> server =
      StartServer({"--requirepass", "secret"});
  ASSERT_NE(server, nullptr);
  SimulatedClock clock;
  RedisOptions options = OptionsFor(*server);
  options.password = "secret";
  options.connect_timeout = absl::Milliseconds(200);
  RedisConnection conn(options, clock);
  ASSERT_TRUE(server->Freeze().ok());
  // TCP connects (the kernel accepts for the stopped process); AUTH waits.
  absl::Status status = conn.Connect();
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_THAT(status.message(), HasSubstr("AUTH"));
  EXPECT_THAT(status.message(), Not(HasSubstr("secret")));
  EXPECT_EQ(conn.failed_connects(), 1);
  ASSERT_TRUE(server->Thaw().ok());
  ASSERT_TRUE(conn.Connect().ok());
}

TEST_F(RedisConnectionTest, WriteToDeadServerRaisesNoSigpipe) {
  RedisConnection conn(OptionsFor(*server_), clock_);
  ASSERT_TRUE(conn.Command(Argv{"PING"}).ok());
  ASSERT_TRUE(server_->Kill().ok());
  // A value larger than the socket buffers takes several write(2) calls;
  // those after the peer's reset fail with EPIPE, which would raise SIGPIPE
  // and end this process if the connection did not block it.
  const std::string big(32 << 20, 'x');
  absl::StatusOr<RedisReply> reply = conn.Command(Argv{"SET", "k", big});
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable)
      << reply.status();
  sigset_t pending;
  sigemptyset(&pending);
  ASSERT_EQ(sigpending(&pending), 0);
  EXPECT_EQ(sigismember(&pending, SIGPIPE), 0);
}

// --- Options ----------------------------------------------------------------

using InvalidCase = test::InvalidOptionsCase<RedisOptions>;
class RedisOptionsInvalidTest : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(RedisOptionsInvalidTest, IsRefused) {
  RedisOptions options;
  GetParam().mutate(options);
  test::ExpectInvalidArgument(ValidateRedisOptions(options),
                              "RedisOptions." + GetParam().field,
                              GetParam().value);
  // The caller's prefix replaces "RedisOptions".
  test::ExpectInvalidArgument(
      ValidateRedisOptions(options, "GlobalBudgetOptions.redis"),
      "GlobalBudgetOptions.redis." + GetParam().field, GetParam().value);
}

INSTANTIATE_TEST_SUITE_P(
    Fields, RedisOptionsInvalidTest,
    ::testing::Values(
        InvalidCase{"HostEmpty", [](RedisOptions& o) { o.host = ""; }, "host",
                    "\"\""},
        InvalidCase{"PortZero", [](RedisOptions& o) { o.port = 0; }, "port",
                    "0"},
        InvalidCase{"PortTooBig", [](RedisOptions& o) { o.port = 65536; },
                    "port", "65536"},
        InvalidCase{"UserWithoutPassword",
                    [](RedisOptions& o) { o.user = "app"; }, "user", "\"app\""},
        InvalidCase{"DatabaseNegative",
                    [](RedisOptions& o) { o.database = -1; }, "database", "-1"},
        InvalidCase{"DatabaseTooBig",
                    [](RedisOptions& o) { o.database = 1000001; }, "database",
                    "1000001"},
        InvalidCase{"KeyPrefixEmpty",
                    [](RedisOptions& o) { o.key_prefix = ""; }, "key_prefix",
                    "\"\""},
        InvalidCase{
            "KeyPrefixTooLong",
            [](RedisOptions& o) { o.key_prefix = std::string(101, 'p'); },
            "key_prefix", "\"" + std::string(101, 'p') + "\""},
        InvalidCase{"KeyPrefixBrace",
                    [](RedisOptions& o) { o.key_prefix = "a{b}"; },
                    "key_prefix", "\"a{b}\""},
        InvalidCase{"KeyPrefixControl",
                    [](RedisOptions& o) { o.key_prefix = "a\nb"; },
                    "key_prefix", "\"a\\nb\""},
        InvalidCase{"KeyPrefixNonAscii",
                    [](RedisOptions& o) { o.key_prefix = "caf\xc3\xa9"; },
                    "key_prefix", "\"caf\\xc3\\xa9\""},
        InvalidCase{
            "ConnectTimeoutZero",
            [](RedisOptions& o) { o.connect_timeout = absl::ZeroDuration(); },
            "connect_timeout", "0"},
        InvalidCase{
            "ConnectTimeoutTooLong",
            [](RedisOptions& o) { o.connect_timeout = absl::Seconds(61); },
            "connect_timeout", "1m1s"},
        InvalidCase{
            "CommandTimeoutNegative",
            [](RedisOptions& o) { o.command_timeout = -absl::Milliseconds(1); },
            "command_timeout", "-1ms"},
        InvalidCase{"CommandTimeoutInfinite",
                    [](RedisOptions& o) {
                      o.command_timeout = absl::InfiniteDuration();
                    },
                    "command_timeout", "inf"},
        InvalidCase{"BackoffMaxNegative",
                    [](RedisOptions& o) {
                      o.reconnect_backoff_max = -absl::Milliseconds(1);
                    },
                    "reconnect_backoff_max", "-1ms"},
        InvalidCase{"BackoffMaxTooLong",
                    [](RedisOptions& o) {
                      o.reconnect_backoff_initial = absl::Seconds(1);
                      o.reconnect_backoff_max = absl::Seconds(61);
                    },
                    "reconnect_backoff_max", "1m1s"},
        InvalidCase{"BackoffInitialNegative",
                    [](RedisOptions& o) {
                      o.reconnect_backoff_initial = -absl::Milliseconds(1);
                    },
                    "reconnect_backoff_initial", "-1ms"},
        InvalidCase{"BackoffInitialAboveMax",
                    [](RedisOptions& o) {
                      o.reconnect_backoff_initial = absl::Seconds(1);
                      o.reconnect_backoff_max = absl::Milliseconds(500);
                    },
                    "reconnect_backoff_initial", "1s"}),
    test::CaseName<RedisOptions>);

TEST(RedisOptionsTest, DefaultsAndBoundariesAreValid) {
  EXPECT_TRUE(ValidateRedisOptions(RedisOptions()).ok());
  const std::vector<std::function<void(RedisOptions&)>> boundaries = {
      [](RedisOptions& o) { o.port = 1; },
      [](RedisOptions& o) { o.port = 65535; },
      [](RedisOptions& o) { o.database = 1000000; },
      [](RedisOptions& o) {
        o.user = "app";
        o.password = "pw";
      },
      [](RedisOptions& o) { o.key_prefix = std::string(100, 'p'); },
      [](RedisOptions& o) { o.key_prefix = "a b:c~"; },
      [](RedisOptions& o) { o.connect_timeout = absl::Milliseconds(1); },
      [](RedisOptions& o) { o.command_timeout = absl::Seconds(60); },
      [](RedisOptions& o) {
        o.reconnect_backoff_initial = absl::ZeroDuration();
        o.reconnect_backoff_max = absl::ZeroDuration();
      },
      [](RedisOptions& o) {
        o.reconnect_backoff_initial = absl::Seconds(60);
        o.reconnect_backoff_max = absl::Seconds(60);
      },
  };
  for (size_t i = 0; i < boundaries.size(); ++i) {
    RedisOptions options;
    boundaries[i](options);
    EXPECT_TRUE(ValidateRedisOptions(options).ok())
        << "boundary " << i << ": " << ValidateRedisOptions(options);
  }
}

TEST(RedisOptionsTest, PasswordIsNeverPrinted) {
  RedisOptions options;
  options.password = "hunter2";
  options.port = 0;
  const absl::Status status = ValidateRedisOptions(options);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), Not(HasSubstr("hunter2")));
}

}  // namespace
}  // namespace spillway
