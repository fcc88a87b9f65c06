// RedisServer: a real, private redis-server for one test.
//
// Starts `redis-server` in the foreground as a child process, bound to
// 127.0.0.1 on a free port, with no persistence and its own temporary
// directory (log file included), and waits until it answers PING. Tests use
// it to talk to a real server and to inject faults at the process level:
// Kill() (connection refused), Restart() (same port, empty data, scripts
// forgotten), Freeze()/Thaw() (SIGSTOP/SIGCONT: connections accept but never
// answer, so replies time out).
//
//   absl::StatusOr<std::unique_ptr<RedisServer>> server =
//       RedisServer::Start({"--requirepass", "secret"});
//   ASSERT_TRUE(server.ok()) << server.status();
//   redis::RedisOptions options;
//   options.port = (*server)->port();
//   ASSERT_TRUE((*server)->Command({"SET", "k", "v"}).ok());
//
// The destructor kills the server and removes its directory, so no
// redis-server outlives a test, failed or not; if the test process itself
// dies, the kernel kills the server too (PR_SET_PDEATHSIG, tied to the thread
// that started it: start servers from the test's main thread).
//
// Thread safety: not thread-safe; one test thread owns a RedisServer.

#ifndef SPILLWAY_TESTS_REDIS_REDIS_SERVER_H_
#define SPILLWAY_TESTS_REDIS_REDIS_SERVER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace spillway::test {

class RedisServer {
 public:
  // Starts `redis-server` (from PATH, else /usr/bin) on 127.0.0.1 and a free
  // port, in a fresh directory under $TMPDIR (or /tmp), with `--save ''
  // --appendonly no` and `extra_args` appended (e.g. {"--requirepass",
  // "secret"}). Returns once the server answers PING, or an error after a
  // 10 s safety timeout. Not thread-safe.
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start(
      std::vector<std::string> extra_args = {});

  // Kills the server if it runs (thawing it first if frozen), reaps it and
  // removes its directory.
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // The port the server listens (or listened) on. Not thread-safe.
  int port() const { return port_; }
  // "127.0.0.1:<port>". Not thread-safe.
  std::string address() const;
  // The server's pid, or -1 after Kill(). Not thread-safe.
  pid_t pid() const { return pid_; }

  // SIGKILL and reap: clients now see connection refused (or reset). Not
  // thread-safe.
  absl::Status Kill();
  // Starts the server again on the same port with the same arguments (after
  // Kill(); kills it first if still running) and waits for PING. The new
  // server starts empty. Not thread-safe.
  absl::Status Restart();
  // SIGSTOP: the kernel still accepts connections, but nothing answers.
  // Returns once the process is stopped. Not thread-safe.
  absl::Status Freeze();
  // SIGCONT. Returns once the process runs again. Not thread-safe.
  absl::Status Thaw();

  // Runs one command on a fresh connection (authenticated with the
  // `--requirepass` of `extra_args`, if any; database 0) and returns the
  // reply as text: strings and statuses as they are, integers in decimal,
  // nil as "(nil)", arrays as their elements joined by '\n'. An error reply
  // or a connection failure is an error status. For a test's own setup and
  // checks, e.g. {"SCRIPT", "FLUSH"}. Not thread-safe.
  absl::StatusOr<std::string> Command(std::vector<std::string> argv);

 private:
  RedisServer(std::string dir, std::vector<std::string> extra_args);

  // Spawns redis-server on port_ and waits until it answers PING. On a
  // port clash (the child exits at once), returns Aborted.
  absl::Status Spawn();
  // Polls the child until it answers PING (as our process: another server
  // could own the port) or exits.
  absl::Status WaitReady();
  // Sends SIGKILL (SIGCONT first if frozen) and reaps the child, if any.
  void KillNow();
  // The last lines of the server's log, for error messages.
  std::string LogTail() const;

  std::string dir_;                      // Temporary directory; removed.
  std::vector<std::string> extra_args_;  // Appended to the command line.
  std::string password_;                 // From --requirepass, if any.
  int port_ = 0;
  pid_t pid_ = -1;       // The child, or -1 when not running.
  bool frozen_ = false;  // SIGSTOPped and not yet thawed.
};

}  // namespace spillway::test

#endif  // SPILLWAY_TESTS_REDIS_REDIS_SERVER_H_
