// ThrottledWriter: a libpqxx write transaction under a spillway permit.
//
// Wraps one `pqxx::connection`. Each `Write` admits the write through a
// `WriteThrottle`, runs the caller's body in a transaction, commits, and
// records the outcome and latency with the throttle — so the limit adapts to
// what the database actually does:
//
//   auto throttle = spillway::WriteThrottle::Create({.name = "orders"});
//   auto writer = spillway::pqxx::ThrottledWriter::Create(
//       {.connection_string = "host=127.0.0.1 dbname=shop",
//        .throttle = throttle->get()});
//   absl::Status s = (*writer)->Write([&](pqxx::work& tx) {
//     tx.exec_params("INSERT INTO orders (id, total) VALUES ($1, $2)", id, t);
//   });
//   if (auto r = spillway::RejectionOf(s)) return Overloaded(r->retry_after);
//
// Classification of how a write ended:
//   commit                                           -> success
//   SQLSTATE 57014 (statement timeout / cancel), 53xxx (insufficient
//   resources: 53300 too many connections, ...), 55P03 (lock not
//   available), 40001 (serialization failure), 40P01 (deadlock),
//   pqxx::broken_connection, pqxx::in_doubt_error,
//   any failure that leaves the connection closed    -> dropped (the database
//                                                      is congested)
//   any other error (23xxx constraints, 42xxx syntax, ...) and exceptions
//   thrown by the body itself                        -> ignore
//
// libpqxx 6 gives no SQLSTATE for some of these: its transaction_rollback
// family (40001, 40P01) derives from `failure`, not `sql_error`, and a
// refused connection is a plain `broken_connection`. The state then follows
// from the exception's type, or (53300 at connect) from the server's English
// message; libpqxx 7 carries it in `sql_error::sqlstate()` for the former.
//
// Errors never cross this API as exceptions: `Write` returns an absl::Status
// whose message is the database's own (`e.what()`), unchanged, with the
// SQLSTATE as a payload (`SqlState(status)`) when known. Codes:
//   57014                                        DeadlineExceeded
//   55P03, 40001, 40P01                          Aborted
//   53xxx, 08xxx, broken connection, in doubt    Unavailable (also any
//                                                error that closed it)
//   23xxx                                        FailedPrecondition
//   42xxx                                        InvalidArgument
//   anything else, and the body's own exceptions Internal (their what())
// A refused write returns `spillway::RejectionStatus` (Unavailable;
// `spillway::RejectionOf` reads it) and the body never runs.
//
// Statement timeout: when the request has a deadline (and
// `statement_timeout_from_deadline`), the transaction starts with
// `SET LOCAL statement_timeout` = the time left at admission, on the
// throttle's clock (deadline - permit start, rounded up to whole
// milliseconds, at least 1 ms), so a write that can no longer meet its
// deadline is cancelled by the server instead of holding locks for nothing.
//
// Retries: with `max_retries` > 0, a serialization failure or deadlock is
// retried (the body runs again in a new transaction), each retry admitted
// through the throttle again (a refused retry returns its RejectionStatus)
// and marked as a retry (WriteRequest::attempt + 1 for each, so the
// throttle's overload cause does not count it as new demand); other errors
// are never retried. Each failed attempt counts as dropped.
//
// Broken connections: after a broken connection (an in-doubt commit, or
// any failure that leaves the connection closed) the connection is replaced on
// the next Write, after admission (libpqxx 7 does not reconnect by itself, and
// 6 would do it silently; the writer replaces it either way). If reconnecting
// fails, the write is refused with Unavailable, "cannot connect to PostgreSQL
// at <host, port, dbname>: <libpq's message>" (passwords of the connection
// string redacted; 53300 as payload when the server had no slot left), and
// counted as dropped.
//
// Failed sessions: a statement timeout's cancel can arrive late and cancel
// libpqxx's ROLLBACK of the failed transaction too. The server then keeps
// the session in a failed transaction block that libpqxx believes ended,
// and every later BEGIN fails with 25P02. Each Write begins through
// internal::BeginWork (lib/pqxx/begin_work.h), which ends such a
// transaction with ROLLBACK and begins again, before the body runs;
// failed_sessions_ended() counts it.
//
// Thread safety: not thread-safe (one connection). Use one writer per
// thread, all sharing one WriteThrottle.

#ifndef SPILLWAY_PQXX_THROTTLED_WRITER_H_
#define SPILLWAY_PQXX_THROTTLED_WRITER_H_

#include <exception>
#include <memory>
#include <optional>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "spillway/throttle.h"
#include "spillway/write_rate.h"

// libpqxx 6 and 7 both name the default transaction `pqxx::work`. The
// connection is included, not forward-declared: in libpqxx 6 `pqxx::connection`
// is an alias of a template, so `class connection;` would clash with it.
#include <pqxx/connection>
#include <pqxx/transaction>

namespace spillway::pqxx {

// How a write ended, for the throttle.
enum class WriteClass { kSuccess, kDropped, kIgnore };

// Classifies an exception from libpqxx (or the body). Thread-safe.
WriteClass Classify(const std::exception& e);

// The SQLSTATE carried by a status Write returned, if any. Thread-safe.
std::optional<std::string> SqlState(const absl::Status& status);

struct ThrottledWriterOptions {
  // libpq connection string, e.g. "host=127.0.0.1 port=5432 dbname=app".
  // Default: empty, meaning libpq's defaults (PG* environment variables).
  std::string connection_string;

  // The throttle every write goes through. REQUIRES: not null; outlives the
  // writer.
  WriteThrottle* throttle = nullptr;

  // Bound each transaction by the request's deadline with SET LOCAL
  // statement_timeout. Default: true.
  bool statement_timeout_from_deadline = true;

  // Retries of serialization failures and deadlocks, each admitted again.
  // Default: 0. REQUIRES: in [0, 10].
  int max_retries = 0;
};

// Checks every field; the error names the field and its value. Thread-safe.
absl::Status ValidateThrottledWriterOptions(
    const ThrottledWriterOptions& options);

class ThrottledWriter {
 public:
  // Validates `options` and connects. Errors: InvalidArgument for options,
  // Unavailable (naming the server, never the password) when the database
  // cannot be reached. Thread-safe.
  static absl::StatusOr<std::unique_ptr<ThrottledWriter>> Create(
      const ThrottledWriterOptions& options);
  ~ThrottledWriter();
  ThrottledWriter(const ThrottledWriter&) = delete;
  ThrottledWriter& operator=(const ThrottledWriter&) = delete;

  // Admits, runs `body` in a `pqxx::work`, commits, records the outcome.
  // Returns OK, RejectionStatus() when refused, or the database's error as
  // a status (see the file comment). Not thread-safe.
  absl::Status Write(absl::FunctionRef<void(::pqxx::work&)> body,
                     const WriteRequest& request = {});

  // Connections made so far (1 after Create; +1 per replacement). For tests.
  // Not thread-safe.
  int connections_made() const { return connections_made_; }

  // Times a write found its session still in a failed transaction (an
  // earlier statement_timeout cancelled libpqxx's ROLLBACK too) and ended
  // it before beginning. Not thread-safe.
  int failed_sessions_ended() const { return failed_sessions_ended_; }

 private:
  // How one attempt (one admission, one transaction) ended.
  struct Attempt {
    WriteClass write_class = WriteClass::kSuccess;
    absl::Status status;
    bool retryable = false;  // A serialization failure or deadlock.
  };

  ThrottledWriter(const ThrottledWriterOptions& options,
                  std::unique_ptr<::pqxx::connection> connection);

  // Runs `body` in a transaction on connection_ and commits; drops the
  // connection if it broke.
  Attempt RunOnce(absl::FunctionRef<void(::pqxx::work&)> body,
                  const ThrottlePermit& permit);

  const ThrottledWriterOptions options_;
  // The connection; null once it broke, until the next Write replaces it.
  std::unique_ptr<::pqxx::connection> connection_;
  int connections_made_ = 0;
  int failed_sessions_ended_ = 0;
};

// TransactionCounter: the PostgreSQL server's count of write transactions,
// a `read_count` for WriteRateMonitor (write_rate.h), so the default limit
// can ask what throughput a wider latency band bought the database (the
// throughput probe of knee_limit.h).
//
// It reads txid_snapshot_xmax(txid_current_snapshot()), the next
// transaction ID the server will assign. Every transaction that writes
// takes one, from every client and every database of the server; read-only
// transactions take none. It also counts writes that later abort, which
// overload makes more common: it is the database's write rate, not its
// goodput. It is read from shared memory at once, where the statistics
// views (pg_stat_database.xact_commit) lag by up to a second.
//
//   auto monitor = spillway::pqxx::MonitorWriteRate(conninfo);
//   auto limit = spillway::MakeDefaultLimit(
//       {.database_rate = std::move(*monitor)});
//
// It holds its own connection, with statement_timeout = 1 s, replaced on
// the next Read after a failure. Put `connect_timeout` in the connection
// string: without it, reconnecting to a host that does not answer blocks
// the monitor's thread (and its destruction) for the TCP timeout.
//
// Thread safety: not thread-safe (one connection); WriteRateMonitor calls
// it from its thread only.
class TransactionCounter {
 public:
  // Connects. Errors: Unavailable naming the server (secrets of the
  // connection string redacted). Thread-safe.
  static absl::StatusOr<std::unique_ptr<TransactionCounter>> Create(
      const std::string& connection_string);

  // The count now. Errors: Unavailable (connection lost or refused; the
  // next Read reconnects), DataLoss (a reply that is not a count). Not
  // thread-safe.
  absl::StatusOr<int64_t> Read();

 private:
  explicit TransactionCounter(std::string connection_string);
  absl::Status Connect();

  const std::string connection_string_;
  // Null after a failure, until the next Read reconnects.
  std::unique_ptr<::pqxx::connection> connection_;
};

// A WriteRateMonitor (write_rate.h) reading a TransactionCounter on
// `connection_string`: what KneeLimitOptions::database_rate wants for
// PostgreSQL. `options` as for WriteRateMonitor::Create, except that
// `read_count` must be empty: it is set here. Errors: those of
// TransactionCounter::Create and WriteRateMonitor::Create; InvalidArgument
// when `read_count` is set. Thread-safe.
absl::StatusOr<std::unique_ptr<WriteRateMonitor>> MonitorWriteRate(
    const std::string& connection_string, WriteRateMonitorOptions options = {});

}  // namespace spillway::pqxx

#endif  // SPILLWAY_PQXX_THROTTLED_WRITER_H_
