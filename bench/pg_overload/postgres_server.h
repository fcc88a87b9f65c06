// PostgresServer: a private PostgreSQL for tests and the pg_overload bench.
//
// Runs initdb (as the `postgres` user when run as root, from `/`, as
// ../shared/ENVIRONMENT.md shows) into a fresh directory under /tmp, starts
// `postgres` as a child process on 127.0.0.1 and a free port (unix socket in
// that directory), creates a database, and in its destructor stops the
// server with an immediate shutdown (SIGQUIT, what `pg_ctl stop -m
// immediate` sends) and removes the directory. Only loopback. If the test
// process dies, the kernel kills the server too (PR_SET_PDEATHSIG, tied to
// the thread that started it: start servers from the test's main thread);
// its backends then exit on their own when they see the postmaster gone.
//
//   auto pg = spillway::test::PostgresServer::Start({.fsync = false});
//   ASSERT_TRUE(pg.ok()) << pg.status();
//   pqxx::connection c((*pg)->ConnectionString());
//
// Thread safety: not thread-safe; one owner.

#ifndef SPILLWAY_BENCH_PG_OVERLOAD_POSTGRES_SERVER_H_
#define SPILLWAY_BENCH_PG_OVERLOAD_POSTGRES_SERVER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace spillway::test {

struct PostgresServerOptions {
  // fsync, synchronous_commit and full_page_writes. Default: false (fast,
  // for tests); benchmarks that claim database numbers set true.
  bool fsync = false;
  // max_connections; superuser_reserved_connections is 0, so this is how
  // many connections clients (all superusers here) may open at once.
  // Default: 100. REQUIRES: in [1, 10000].
  int max_connections = 100;
  // Extra `-c name=value` settings, e.g. "deadlock_timeout=50ms", passed to
  // `postgres` as arguments (no shell). Default: none.
  std::vector<std::string> settings;
  // Database created for the caller ("postgres" exists already).
  // Default: "spillway_test". REQUIRES: not empty.
  std::string database = "spillway_test";
};

class PostgresServer {
 public:
  // initdb + start + CREATE DATABASE; an error names the step and shows the
  // end of its log. Finds the newest /usr/lib/postgresql/*/bin. Takes about
  // 1 s (initdb). Not thread-safe.
  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start(
      const PostgresServerOptions& options = {});
  // Immediate shutdown (SIGQUIT, as `pg_ctl stop -m immediate`; SIGKILL after
  // a 10 s safety timeout), then removes the directory.
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // Not thread-safe (as every method).
  int port() const { return port_; }
  // "host=127.0.0.1 port=<port> user=postgres dbname=<database>" (the
  // database name quoted as libpq requires, if it needs quoting).
  std::string ConnectionString() const;
  // The postmaster's pid. For tests that signal it.
  pid_t pid() const { return pid_; }
  // The directory holding the data directory (`data/`), the unix socket and
  // the logs (`server.log`, `initdb.log`, `createdb.log`).
  const std::string& dir() const { return dir_; }

 private:
  PostgresServer(std::string dir, std::string bin_dir,
                 PostgresServerOptions options);

  // Starts `postgres` on port_ and waits until it accepts connections. On a
  // port clash (the child exits at once), returns Aborted.
  absl::Status Spawn();
  // Polls postmaster.pid until it says "ready", or the child exits.
  absl::Status WaitReady();
  // Immediate shutdown and reap, if running.
  void StopNow();

  std::string dir_;      // Temporary directory under /tmp; removed.
  std::string bin_dir_;  // /usr/lib/postgresql/<newest>/bin.
  PostgresServerOptions options_;
  int port_ = 0;
  pid_t pid_ = -1;  // The postmaster (our child), or -1 when not running.
};

}  // namespace spillway::test

#endif  // SPILLWAY_BENCH_PG_OVERLOAD_POSTGRES_SERVER_H_
