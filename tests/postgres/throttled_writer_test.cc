// ThrottledWriter against a real PostgreSQL (one server per suite, started
// by PostgresServer on its own loopback port, fsync off): every SQLSTATE the
// header names is produced for real and classified — both `Classify` on the
// exception the body caught and what `Write` returned, and the outcome the
// throttle recorded (`spillway_outcomes_total`, read by name).
//
// Real time appears only where the server's behaviour needs it: a statement
// timeout and a lock timeout of a few milliseconds, the server's deadlock
// detection (deadlock_timeout=20ms), and a killer thread that polls
// pg_stat_activity (with a safety timeout) until the writer's backend runs
// its statement.
#include "spillway/pqxx/throttled_writer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "bench/pg_overload/postgres_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/pqxx/begin_work.h"
#include "spillway/fixed_limit.h"
#include "spillway/testing/in_memory_metrics.h"
#include "spillway/testing/simulated_clock.h"
#include "spillway/write_rate.h"
#include "tests/common/eventually.h"
#include "tests/common/invalid_options.h"

// libpqxx 6.4 leaks the PGresult of a statement that finds its connection
// gone: make_result() reads the client encoding, which throws
// broken_connection ("Could not obtain client encoding: not connected."),
// before it owns the result. The killed-backend tests do that on purpose.
// Matched by module, as the stack often stops inside libpqxx.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libpqxx-6.\n";
}

namespace spillway::pqxx {
namespace {

using ::spillway::test::ExpectInvalidArgument;
using ::spillway::test::PostgresServer;
using ::spillway::test::ValueOrFail;
using ::spillway::test::WaitFor;
using ::testing::HasSubstr;
using ::testing::Not;
using Steady = std::chrono::steady_clock;

std::shared_ptr<Limit> Fixed(int limit) {
  auto made = FixedLimit::Create(limit);
  EXPECT_TRUE(made.ok()) << made.status();
  return made.ok() ? std::shared_ptr<Limit>(*std::move(made)) : nullptr;
}

// What a body saw when a statement threw: how Classify rates the exception,
// and its message.
struct Caught {
  std::optional<WriteClass> write_class;
  std::string what;
};

// Runs `sql` in order; an exception is recorded in `caught` and rethrown,
// so Write sees it as it came from libpqxx.
void ExecRecording(::pqxx::work& tx, const std::vector<std::string>& sql,
                   Caught& caught) {
  for (const std::string& statement : sql) {
    try {
      tx.exec(statement);
    } catch (const std::exception& e) {
      caught.write_class = Classify(e);
      caught.what = e.what();
      throw;
    }
  }
}

// A server for the suite, with a fast deadlock detector.
class ThrottledWriterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto server =
        PostgresServer::Start({.settings = {"deadlock_timeout=20ms"}});
    if (server.ok()) {
      server_ = server->release();
    } else {
      start_error_ = new std::string(server.status().ToString());
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete start_error_;
    start_error_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(server_, nullptr) << *start_error_;
    ::pqxx::connection admin(ConnectionString());
    ::pqxx::work tx(admin);
    // A lock left behind by a failed test fails this one instead of hanging.
    tx.exec("SET LOCAL lock_timeout = 10000");
    tx.exec("DROP TABLE IF EXISTS items");
    tx.exec("CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL)");
    tx.exec("INSERT INTO items VALUES (1, 0), (2, 0)");
    tx.commit();
    throttle_ = ValueOrFail(WriteThrottle::Create(
        {.name = "pg", .limiter = {.limit = Fixed(16)}, .metrics = &sink_}));
    ASSERT_NE(throttle_, nullptr);
  }

  static std::string ConnectionString() { return server_->ConnectionString(); }

  std::unique_ptr<ThrottledWriter> MakeWriter(int max_retries = 0) {
    return ValueOrFail(
        ThrottledWriter::Create({.connection_string = ConnectionString(),
                                 .throttle = throttle_.get(),
                                 .max_retries = max_retries}));
  }

  double Outcomes(const std::string& outcome) const {
    return sink_.CounterValue("spillway_outcomes_total", {"pg", outcome})
        .value_or(0);
  }
  double Admitted() const {
    return sink_
        .CounterValue("spillway_admitted_total",
                      {"pg", "concurrency_limit", "normal"})
        .value_or(0);
  }

  // The value of items.v for `id`, read on a fresh connection.
  static int ValueOf(int id) {
    ::pqxx::connection admin(ConnectionString());
    ::pqxx::work tx(admin);
    return tx.exec_params("SELECT v FROM items WHERE id = $1", id)[0][0]
        .as<int>();
  }

  // Commits `n` increments of items 1 through `writer`.
  static void CommitIncrements(ThrottledWriter& writer, int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(writer
                      .Write([](::pqxx::work& tx) {
                        tx.exec("UPDATE items SET v = v + 1 WHERE id = 1");
                      })
                      .ok());
    }
  }

  // The writer's backend pid, read through a write of its own.
  static int BackendPid(ThrottledWriter& writer) {
    int pid = 0;
    EXPECT_TRUE(writer
                    .Write([&](::pqxx::work& tx) {
                      pid = tx.exec("SELECT pg_backend_pid()")[0][0].as<int>();
                    })
                    .ok());
    return pid;
  }

  static PostgresServer* server_;
  static std::string* start_error_;
  testing::InMemoryMetricsSink sink_;
  std::unique_ptr<WriteThrottle> throttle_;
};

PostgresServer* ThrottledWriterTest::server_ = nullptr;
std::string* ThrottledWriterTest::start_error_ = nullptr;

TEST_F(ThrottledWriterTest, CommitIsSuccess) {
  auto writer = MakeWriter();
  ASSERT_NE(writer, nullptr);
  EXPECT_EQ(writer->connections_made(), 1);
  const absl::Status s = writer->Write(
      [](::pqxx::work& tx) { tx.exec("UPDATE items SET v = 7 WHERE id = 1"); });
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(ValueOf(1), 7);
  EXPECT_EQ(Outcomes("success"), 1);
  EXPECT_EQ(Outcomes("dropped"), 0);
  EXPECT_EQ(Outcomes("ignored"), 0);
}

// A session in a failed transaction block that libpqxx believes idle (what
// a statement_timeout's late cancel of libpqxx's ROLLBACK leaves; here made
// on purpose: a nontransaction sends BEGIN and a failing statement, and
// never rolls back). Every BEGIN then fails with 25P02, for good: libpqxx
// never ends the transaction it does not know. BeginWork ends it and
// begins; ThrottledWriter begins every write with it.
TEST_F(ThrottledWriterTest, BeginWorkEndsAFailedTransactionLibpqxxMissed) {
  ::pqxx::connection connection(ConnectionString());
  {
    ::pqxx::nontransaction stray(connection);
    stray.exec("BEGIN");
    EXPECT_THROW(stray.exec("SELECT 1/0"), ::pqxx::sql_error);
  }
  for (int i = 0; i < 2; ++i) {
    try {
      ::pqxx::work stuck(connection);
      ADD_FAILURE() << "BEGIN succeeded in a failed transaction block";
    } catch (const ::pqxx::sql_error& e) {
      EXPECT_EQ(e.sqlstate(), "25P02") << e.what();
    }
  }
  std::optional<::pqxx::work> tx;
  EXPECT_TRUE(internal::BeginWork(connection, &tx));
  ASSERT_TRUE(tx.has_value());
  tx->exec("UPDATE items SET v = 11 WHERE id = 1");
  tx->commit();
  tx.reset();
  EXPECT_EQ(ValueOf(1), 11);
  // A clean session begins at once.
  EXPECT_FALSE(internal::BeginWork(connection, &tx));
  ASSERT_TRUE(tx.has_value());
  tx->abort();
}

TEST_F(ThrottledWriterTest, StatementTimeoutFromTheDeadlineIsDropped) {
  auto writer = MakeWriter();
  ASSERT_NE(writer, nullptr);
  Caught caught;
  const auto start = Steady::now();
  const absl::Status s = writer->Write(
      [&](::pqxx::work& tx) {
        ExecRecording(tx, {"SELECT pg_sleep(30)"}, caught);
      },
      {.deadline =
           SteadyClock::Default().Now() + std::chrono::milliseconds(100)});
  // The server cancelled the statement, long before its 30 s.
  EXPECT_LT(Steady::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_EQ(SqlState(s), "57014");
  EXPECT_EQ(s.message(), caught.what);
  EXPECT_THAT(caught.what, HasSubstr("statement timeout"));
  EXPECT_EQ(caught.write_class, WriteClass::kDropped);
  EXPECT_EQ(Outcomes("dropped"), 1);
  EXPECT_EQ(Outcomes("success"), 0);
}

TEST_F(ThrottledWriterTest, StatementTimeoutIsTheTimeLeftRoundedUp) {
  // On a simulated clock the time left is exact. Values stay well above the
  // time SHOW itself takes: the timeout applies to it too.
  testing::SimulatedClock clock;
  auto throttle = ValueOrFail(WriteThrottle::Create(
      {.name = "sim", .limiter = {.limit = Fixed(4)}, .clock = &clock}));
  ASSERT_NE(throttle, nullptr);
  auto writer_with = [&](bool from_deadline) {
    return ValueOrFail(ThrottledWriter::Create(
        {.connection_string = ConnectionString(),
         .throttle = throttle.get(),
         .statement_timeout_from_deadline = from_deadline}));
  };
  auto request_with = [&](std::optional<absl::Duration> left) {
    WriteRequest request;
    if (left.has_value()) request.deadline = clock.Now() + ToChrono(*left);
    return request;
  };
  auto show = [&](bool from_deadline, std::optional<absl::Duration> left) {
    auto writer = writer_with(from_deadline);
    std::string value;
    const absl::Status s = writer->Write(
        [&](::pqxx::work& tx) {
          value = tx.exec("SHOW statement_timeout")[0][0].as<std::string>();
        },
        request_with(left));
    EXPECT_TRUE(s.ok()) << s;
    return value;
  };
  EXPECT_EQ(show(true, absl::Milliseconds(2500)), "2500ms");
  EXPECT_EQ(show(true, absl::Milliseconds(2000) + absl::Microseconds(1)),
            "2001ms");
  EXPECT_EQ(show(true, std::nullopt), "0");
  EXPECT_EQ(show(false, absl::Milliseconds(2500)), "0");

  // A deadline already passed still bounds the statement (the floor is
  // 1 ms, not 0, which would disable the timeout).
  auto writer = writer_with(true);
  const auto start = Steady::now();
  const absl::Status late =
      writer->Write([](::pqxx::work& tx) { tx.exec("SELECT pg_sleep(5)"); },
                    request_with(-absl::Seconds(1)));
  EXPECT_EQ(SqlState(late), "57014") << late;
  EXPECT_LT(Steady::now() - start, std::chrono::seconds(4));
}

TEST_F(ThrottledWriterTest, LockTimeoutIsDropped) {
  auto writer = MakeWriter();
  ASSERT_NE(writer, nullptr);
  // Another client holds the row.
  ::pqxx::connection holder_connection(ConnectionString());
  ::pqxx::work holder(holder_connection);
  holder.exec("SELECT v FROM items WHERE id = 1 FOR UPDATE");

  Caught caught;
  const absl::Status s = writer->Write([&](::pqxx::work& tx) {
    ExecRecording(tx,
                  {"SET LOCAL lock_timeout = 20",
                   "UPDATE items SET v = v + 1 WHERE id = 1"},
                  caught);
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_EQ(SqlState(s), "55P03");
  EXPECT_EQ(s.message(), caught.what);
  EXPECT_THAT(caught.what, HasSubstr("lock timeout"));
  EXPECT_EQ(caught.write_class, WriteClass::kDropped);
  EXPECT_EQ(Outcomes("dropped"), 1);
  holder.abort();
  EXPECT_EQ(ValueOf(1), 0);
}

TEST_F(ThrottledWriterTest, DeadlockBetweenTwoWritersIsDropped) {
  auto writer_a = MakeWriter();
  auto writer_b = MakeWriter();
  ASSERT_NE(writer_a, nullptr);
  ASSERT_NE(writer_b, nullptr);
  // Each takes one row, waits until the other holds its row, then asks for
  // the other's: the server breaks the cycle by aborting one of them.
  std::atomic<int> holding{0};
  auto body = [&](int first, int second, Caught& caught) {
    return [&, first, second](::pqxx::work& tx) {
      ExecRecording(
          tx, {absl::StrCat("UPDATE items SET v = v + 1 WHERE id = ", first)},
          caught);
      holding.fetch_add(1);
      WaitFor([&] { return holding.load() == 2; });
      ExecRecording(
          tx, {absl::StrCat("UPDATE items SET v = v + 1 WHERE id = ", second)},
          caught);
    };
  };
  Caught caught_a;
  Caught caught_b;
  absl::Status status_a;
  std::thread a([&] { status_a = writer_a->Write(body(1, 2, caught_a)); });
  const absl::Status status_b = writer_b->Write(body(2, 1, caught_b));
  a.join();

  ASSERT_NE(status_a.ok(), status_b.ok()) << status_a << " / " << status_b;
  const absl::Status& failed = status_a.ok() ? status_b : status_a;
  const Caught& caught = status_a.ok() ? caught_b : caught_a;
  EXPECT_EQ(failed.code(), absl::StatusCode::kAborted) << failed;
  EXPECT_EQ(SqlState(failed), "40P01");
  EXPECT_EQ(failed.message(), caught.what);
  EXPECT_THAT(caught.what, HasSubstr("deadlock detected"));
  EXPECT_EQ(caught.write_class, WriteClass::kDropped);
  EXPECT_EQ(Outcomes("dropped"), 1);
  EXPECT_EQ(Outcomes("success"), 1);
  // Only the survivor's two updates remain.
  EXPECT_EQ(ValueOf(1) + ValueOf(2), 2);
}

// Write skew under SERIALIZABLE: `other` reads both rows and updates row 1,
// then commits while the writer's transaction has read both rows; the
// writer's update of row 2 then closes a cycle and the server aborts it.
class SerializationConflict {
 public:
  explicit SerializationConflict(const std::string& connection_string)
      : connection_(connection_string), other_(connection_) {
    other_.exec("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE");
    other_.exec("SELECT sum(v) FROM items");
    other_.exec("UPDATE items SET v = v + 1 WHERE id = 1");
  }
  // The writer's body.
  void Run(::pqxx::work& tx, Caught& caught) {
    ExecRecording(tx,
                  {"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                   "SELECT sum(v) FROM items"},
                  caught);
    other_.commit();
    ExecRecording(tx, {"UPDATE items SET v = v + 1 WHERE id = 2"}, caught);
  }

 private:
  ::pqxx::connection connection_;
  ::pqxx::work other_;
};

TEST_F(ThrottledWriterTest, SerializationFailureIsDropped) {
  auto writer = MakeWriter();
  ASSERT_NE(writer, nullptr);
  SerializationConflict conflict(ConnectionString());
  Caught caught;
  const absl::Status s =
      writer->Write([&](::pqxx::work& tx) { conflict.Run(tx, caught); });
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_EQ(SqlState(s), "40001");
  EXPECT_EQ(s.message(), caught.what);
  EXPECT_THAT(caught.what, HasSubstr("could not serialize access"));
  EXPECT_EQ(caught.write_class, WriteClass::kDropped);
  EXPECT_EQ(Outcomes("dropped"), 1);
  EXPECT_EQ(Admitted(), 1);  // Not retried by default.
  EXPECT_EQ(ValueOf(2), 0);
}

// Writes with `writer` a body that fails with a real serialization failure
// on its first run and increments row 2 on the next; counts the runs.
absl::Status WriteFailingOnce(ThrottledWriter& writer,
                              const std::string& connection_string,
                              Caught& caught, int& runs) {
  SerializationConflict conflict(connection_string);
  return writer.Write([&](::pqxx::work& tx) {
    if (++runs == 1) {
      conflict.Run(tx, caught);
    } else {
      tx.exec("UPDATE items SET v = v + 1 WHERE id = 2");
    }
  });
}

TEST_F(ThrottledWriterTest,
       SerializationFailureRetryIsAdmittedAgainAndCommits) {
  auto writer = MakeWriter(/*max_retries=*/1);
  ASSERT_NE(writer, nullptr);
  Caught caught;
  int runs = 0;
  const absl::Status s =
      WriteFailingOnce(*writer, ConnectionString(), caught, runs);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(caught.write_class, WriteClass::kDropped);
  EXPECT_EQ(Admitted(), 2);
  EXPECT_EQ(Outcomes("dropped"), 1);
  EXPECT_EQ(Outcomes("success"), 1);
  // The first attempt rolled back; the retry's update committed once.
  EXPECT_EQ(ValueOf(2), 1);
}

// The writer's own retry is marked as one (WriteRequest::attempt), so the
// throttle's overload detector does not count it as new demand: two
// admissions, one write of demand.
TEST_F(ThrottledWriterTest, RetriesAreNotDemandForTheOverloadCause) {
  testing::SimulatedClock clock;
  auto throttle =
      ValueOrFail(WriteThrottle::Create({.name = "sim",
                                         .limiter = {.limit = Fixed(4)},
                                         .overload = {.min_writes = 1},
                                         .clock = &clock}));
  ASSERT_NE(throttle, nullptr);
  auto writer = ValueOrFail(
      ThrottledWriter::Create({.connection_string = ConnectionString(),
                               .throttle = throttle.get(),
                               .max_retries = 1}));
  ASSERT_NE(writer, nullptr);
  Caught caught;
  int runs = 0;
  const absl::Status s =
      WriteFailingOnce(*writer, ConnectionString(), caught, runs);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_EQ(runs, 2);
  // Close the 1 s interval with one more (first) attempt: 3 offered, 1 of
  // them a retry, so 2 writes of demand per second.
  clock.Advance(absl::Seconds(1));
  throttle->Admit().permit().Ignore();
  EXPECT_DOUBLE_EQ(throttle->overload_detector().snapshot().offered_per_second,
                   2.0);
}

TEST_F(ThrottledWriterTest, OtherErrorsAreNotRetried) {
  auto writer = MakeWriter(/*max_retries=*/3);
  ASSERT_NE(writer, nullptr);
  int runs = 0;
  const absl::Status s = writer->Write([&](::pqxx::work& tx) {
    ++runs;
    tx.exec("INSERT INTO items VALUES (1, 0)");
  });
  EXPECT_EQ(SqlState(s), "23505");
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(Admitted(), 1);
}

TEST_F(ThrottledWriterTest, KilledBackendIsDroppedAndTheNextWriteReconnects) {
  auto writer = MakeWriter();
  ASSERT_NE(writer, nullptr);
  const int pid = BackendPid(*writer);
  ASSERT_GT(pid, 0);

  // Terminates the writer's backend once it runs its statement.
  std::atomic<bool> saw_it_running{false};
  std::thread killer([&] {
    ::pqxx::connection admin(ConnectionString());
    saw_it_running = WaitFor([&] {
      ::pqxx::nontransaction q(admin);
      return q.exec_params(
                  "SELECT count(*) FROM pg_stat_activity WHERE pid = "
                  "$1 AND state = 'active' AND query LIKE "
                  "'SELECT pg_sleep%'",
                  pid)[0][0]
                 .as<int>() == 1;
    });
    ::pqxx::nontransaction q(admin);
    q.exec_params("SELECT pg_terminate_backend($1)", pid);
  });
  Caught caught;
  const absl::Status s = writer->Write([&](::pqxx::work& tx) {
    ExecRecording(tx, {"SELECT pg_sleep(30)"}, caught);
  });
  killer.join();
  EXPECT_TRUE(saw_it_running);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_EQ(s.message(), caught.what);
  EXPECT_EQ(caught.write_class, WriteClass::kDropped);
  EXPECT_EQ(Outcomes("dropped"), 1);

  const absl::Status next = writer->Write(
      [](::pqxx::work& tx) { tx.exec("UPDATE items SET v = 5 WHERE id = 1"); });
  EXPECT_TRUE(next.ok()) << next;
  EXPECT_EQ(writer->connections_made(), 2);
  EXPECT_EQ(ValueOf(1), 5);
  EXPECT_EQ(Outcomes("success"), 2);  // The pid's write and this one.
}

TEST_F(ThrottledWriterTest, UniqueViolationIsIgnoredWithItsStateAndMessage) {
  auto writer = MakeWriter();
  ASSERT_NE(writer, nullptr);
  Caught caught;
  const absl::Status s = writer->Write([&](::pqxx::work& tx) {
    ExecRecording(tx, {"INSERT INTO items VALUES (1, 0)"}, caught);
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(SqlState(s), "23505");
  // The database's message, unchanged.
  EXPECT_EQ(s.message(), caught.what);
  EXPECT_THAT(caught.what,
              HasSubstr("duplicate key value violates unique constraint"));
  EXPECT_EQ(caught.write_class, WriteClass::kIgnore);
  EXPECT_EQ(Outcomes("ignored"), 1);
  EXPECT_EQ(Outcomes("dropped"), 0);
  EXPECT_EQ(Outcomes("success"), 0);
}

TEST_F(ThrottledWriterTest, SyntaxErrorIsIgnoredAsInvalidArgument) {
  auto writer = MakeWriter();
  ASSERT_NE(writer, nullptr);
  Caught caught;
  const absl::Status s = writer->Write(
      [&](::pqxx::work& tx) { ExecRecording(tx, {"UPDAT items"}, caught); });
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(SqlState(s), "42601");
  EXPECT_EQ(s.message(), caught.what);
  EXPECT_EQ(caught.write_class, WriteClass::kIgnore);
  EXPECT_EQ(Outcomes("ignored"), 1);
}

TEST_F(ThrottledWriterTest, ExceptionFromTheBodyIsIgnoredAndRolledBack) {
  auto writer = MakeWriter();
  ASSERT_NE(writer, nullptr);
  const absl::Status s = writer->Write([](::pqxx::work& tx) {
    tx.exec("UPDATE items SET v = 9 WHERE id = 1");
    throw std::runtime_error("the caller changed its mind");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  EXPECT_EQ(s.message(), "the caller changed its mind");
  EXPECT_EQ(SqlState(s), std::nullopt);
  EXPECT_EQ(Classify(std::runtime_error("x")), WriteClass::kIgnore);
  EXPECT_EQ(Outcomes("ignored"), 1);
  EXPECT_EQ(Outcomes("dropped"), 0);
  EXPECT_EQ(ValueOf(1), 0);
  // The connection is still good.
  EXPECT_TRUE(writer->Write([](::pqxx::work&) {}).ok());
  EXPECT_EQ(writer->connections_made(), 1);
}

TEST_F(ThrottledWriterTest, RefusedWriteNeverRunsTheBody) {
  auto throttle = ValueOrFail(WriteThrottle::Create(
      {.name = "one", .limiter = {.limit = Fixed(1)}, .metrics = &sink_}));
  ASSERT_NE(throttle, nullptr);
  auto writer = ValueOrFail(ThrottledWriter::Create(
      {.connection_string = ConnectionString(), .throttle = throttle.get()}));
  ASSERT_NE(writer, nullptr);
  ThrottleAdmission held = throttle->Admit();
  ASSERT_TRUE(held.ok());

  bool ran = false;
  const absl::Status s = writer->Write([&](::pqxx::work&) { ran = true; });
  EXPECT_FALSE(ran);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  const std::optional<Rejection> rejection = RejectionOf(s);
  ASSERT_TRUE(rejection.has_value()) << s;
  EXPECT_EQ(rejection->gate, Gate::kConcurrencyLimit);
  EXPECT_EQ(SqlState(s), std::nullopt);
  EXPECT_EQ(sink_.CounterSum("spillway_rejected_total", {{"throttle", "one"}}),
            1);

  held.permit().Success();
  EXPECT_TRUE(writer->Write([&](::pqxx::work&) { ran = true; }).ok());
  EXPECT_TRUE(ran);
}

TEST_F(ThrottledWriterTest, TransactionCounterCountsEveryClientsWrites) {
  std::unique_ptr<TransactionCounter> counter =
      ValueOrFail(TransactionCounter::Create(ConnectionString()));
  ASSERT_NE(counter, nullptr);
  const absl::StatusOr<int64_t> before = counter->Read();
  ASSERT_TRUE(before.ok()) << before.status();
  CommitIncrements(*MakeWriter(), 20);
  {
    // Another client, outside any throttle: the database's count has it.
    ::pqxx::connection other(ConnectionString());
    for (int i = 0; i < 5; ++i) {
      ::pqxx::work tx(other);
      tx.exec("UPDATE items SET v = v + 1 WHERE id = 2");
      tx.commit();
    }
    // Read-only transactions take no transaction ID.
    for (int i = 0; i < 10; ++i) {
      ::pqxx::work tx(other);
      tx.exec("SELECT v FROM items");
      tx.commit();
    }
  }
  const absl::StatusOr<int64_t> after = counter->Read();
  ASSERT_TRUE(after.ok()) << after.status();
  // 25 writes; autovacuum's ANALYZE may take an ID or two of its own.
  EXPECT_GE(*after - *before, 25);
  EXPECT_LE(*after - *before, 28);
}

TEST_F(ThrottledWriterTest, TransactionCounterReconnectsAfterItsBackendDies) {
  std::unique_ptr<TransactionCounter> counter =
      ValueOrFail(TransactionCounter::Create(ConnectionString()));
  ASSERT_NE(counter, nullptr);
  ASSERT_TRUE(counter->Read().ok());
  {
    ::pqxx::connection admin(ConnectionString());
    ::pqxx::nontransaction q(admin);
    const ::pqxx::result killed = q.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE query LIKE 'SELECT txid_snapshot_xmax%' "
        "AND pid <> pg_backend_pid()");
    ASSERT_EQ(killed.size(), 1u);
  }
  const absl::StatusOr<int64_t> lost = counter->Read();
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(lost.status().message()),
              HasSubstr("reading the transaction count of PostgreSQL at"));
  const absl::StatusOr<int64_t> back = counter->Read();
  EXPECT_TRUE(back.ok()) << back.status();
}

TEST_F(ThrottledWriterTest, TransactionCounterNamesAServerItCannotReach) {
  const absl::StatusOr<std::unique_ptr<TransactionCounter>> counter =
      TransactionCounter::Create(
          "host=127.0.0.1 port=1 dbname=nowhere password=hunter2");
  ASSERT_FALSE(counter.ok());
  EXPECT_EQ(counter.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(counter.status().message()),
              HasSubstr("cannot connect to PostgreSQL at host=127.0.0.1 "
                        "port=1 dbname=nowhere"));
  EXPECT_THAT(std::string(counter.status().message()),
              ::testing::Not(HasSubstr("hunter2")));
}

TEST_F(ThrottledWriterTest, MonitorWriteRateSetsItsOwnReadCount) {
  WriteRateMonitorOptions options;
  options.read_count = [] { return absl::StatusOr<int64_t>(0); };
  const absl::StatusOr<std::unique_ptr<WriteRateMonitor>> monitor =
      MonitorWriteRate(ConnectionString(), std::move(options));
  ASSERT_FALSE(monitor.ok());
  EXPECT_EQ(monitor.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(monitor.status().message()),
              HasSubstr("read_count must be empty"));
}

// The monitor on the counter, on the real clock: it sees writes as they
// commit.
TEST_F(ThrottledWriterTest, WriteRateMonitorFollowsTheServersCount) {
  std::unique_ptr<WriteRateMonitor> monitor = ValueOrFail(MonitorWriteRate(
      ConnectionString(), {.interval = absl::Milliseconds(5)}));
  ASSERT_NE(monitor, nullptr);
  ASSERT_TRUE(monitor->Latest().has_value());
  const int64_t before = monitor->Latest()->writes;
  CommitIncrements(*MakeWriter(), 30);
  EXPECT_TRUE(WaitFor([&] {
    const std::optional<WriteCountReading> r = monitor->Latest();
    return r.has_value() && r->writes >= before + 30;
  }));
  EXPECT_EQ(monitor->failures(), 0);
}

// A server that allows two connections.
class ThrottledWriterConnectionLimitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = PostgresServer::Start({.max_connections = 2});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    throttle_ = ValueOrFail(WriteThrottle::Create(
        {.name = "pg", .limiter = {.limit = Fixed(16)}, .metrics = &sink_}));
    ASSERT_NE(throttle_, nullptr);
  }

  std::unique_ptr<PostgresServer> server_;
  testing::InMemoryMetricsSink sink_;
  std::unique_ptr<WriteThrottle> throttle_;
};

TEST_F(ThrottledWriterConnectionLimitTest, TooManyConnectionsIsDropped) {
  const std::string cs = server_->ConnectionString();
  auto writer = ValueOrFail(ThrottledWriter::Create(
      {.connection_string = cs, .throttle = throttle_.get()}));
  ASSERT_NE(writer, nullptr);
  int pid = 0;
  ASSERT_TRUE(writer
                  ->Write([&](::pqxx::work& tx) {
                    pid = tx.exec("SELECT pg_backend_pid()")[0][0].as<int>();
                  })
                  .ok());
  ::pqxx::connection admin(cs);  // The second and last slot.

  // A refused connection, as libpqxx reports it, is a congestion signal.
  try {
    ::pqxx::connection extra(cs);
    ADD_FAILURE() << "a third connection was accepted";
  } catch (const std::exception& e) {
    EXPECT_THAT(e.what(), HasSubstr("too many clients"));
    EXPECT_EQ(Classify(e), WriteClass::kDropped);
  }
  // Create fails with Unavailable, carrying 53300.
  auto refused = ThrottledWriter::Create(
      {.connection_string = cs, .throttle = throttle_.get()});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(SqlState(refused.status()), "53300");
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("too many clients"));

  // The writer's backend goes, and another client takes its slot: the write
  // that finds the connection broken is dropped, and so is the next, which
  // cannot reconnect (53300) and never runs its body.
  {
    ::pqxx::nontransaction q(admin);
    q.exec_params("SELECT pg_terminate_backend($1)", pid);
  }
  std::unique_ptr<::pqxx::connection> taker;
  EXPECT_TRUE(WaitFor([&] {
    try {
      taker = std::make_unique<::pqxx::connection>(cs);
      return true;
    } catch (const ::pqxx::broken_connection&) {
      return false;  // The terminated backend has not exited yet.
    }
  }));
  const absl::Status broken = writer->Write([](::pqxx::work&) {});
  EXPECT_EQ(broken.code(), absl::StatusCode::kUnavailable) << broken;
  bool ran = false;
  const absl::Status full = writer->Write([&](::pqxx::work&) { ran = true; });
  EXPECT_FALSE(ran);
  EXPECT_EQ(full.code(), absl::StatusCode::kUnavailable) << full;
  EXPECT_EQ(SqlState(full), "53300");
  EXPECT_THAT(std::string(full.message()),
              HasSubstr(absl::StrCat("port=", server_->port())));
  EXPECT_EQ(sink_.CounterValue("spillway_outcomes_total", {"pg", "dropped"}),
            2);
  EXPECT_EQ(writer->connections_made(), 1);

  // A slot frees: the next write reconnects.
  taker.reset();
  EXPECT_TRUE(
      WaitFor([&] { return writer->Write([](::pqxx::work&) {}).ok(); }));
  EXPECT_EQ(writer->connections_made(), 2);
}

// Classification of exception types that libpqxx 6 throws without a
// SQLSTATE (transaction_rollback and its subclasses are not sql_errors
// there; 53300 is a broken_connection).
TEST(ClassifyTest, ByTypeWhenLibpqxxGivesNoSqlState) {
  EXPECT_EQ(Classify(::pqxx::serialization_failure("x")), WriteClass::kDropped);
  EXPECT_EQ(Classify(::pqxx::deadlock_detected("x")), WriteClass::kDropped);
  EXPECT_EQ(Classify(::pqxx::too_many_connections("x")), WriteClass::kDropped);
  EXPECT_EQ(Classify(::pqxx::broken_connection("x")), WriteClass::kDropped);
  EXPECT_EQ(Classify(::pqxx::in_doubt_error("x")), WriteClass::kDropped);
  EXPECT_EQ(Classify(::pqxx::statement_completion_unknown("x")),
            WriteClass::kIgnore);
  EXPECT_EQ(Classify(::pqxx::sql_error("x", "q", "53200")),
            WriteClass::kDropped);
  EXPECT_EQ(Classify(::pqxx::sql_error("x", "q", "57014")),
            WriteClass::kDropped);
  EXPECT_EQ(Classify(::pqxx::sql_error("x", "q", "22012")),
            WriteClass::kIgnore);
  EXPECT_EQ(Classify(::pqxx::sql_error("x", "q", "23503")),
            WriteClass::kIgnore);
  EXPECT_EQ(Classify(::pqxx::sql_error("x")), WriteClass::kIgnore);
  EXPECT_EQ(Classify(::pqxx::usage_error("x")), WriteClass::kIgnore);
  EXPECT_EQ(Classify(std::logic_error("x")), WriteClass::kIgnore);
}

TEST(SqlStateTest, AbsentFromOtherStatuses) {
  EXPECT_EQ(SqlState(absl::OkStatus()), std::nullopt);
  EXPECT_EQ(SqlState(absl::InternalError("x")), std::nullopt);
}

using Case = test::InvalidOptionsCase<ThrottledWriterOptions>;
class ThrottledWriterInvalidOptions : public ::testing::TestWithParam<Case> {};

TEST_P(ThrottledWriterInvalidOptions, IsRefused) {
  auto throttle = ValueOrFail(WriteThrottle::Create({}));
  ASSERT_NE(throttle, nullptr);
  // A port nothing listens on: validation must fail before connecting.
  ThrottledWriterOptions o{.connection_string = "host=127.0.0.1 port=1",
                           .throttle = throttle.get()};
  GetParam().mutate(o);
  ExpectInvalidArgument(ValidateThrottledWriterOptions(o),
                        "ThrottledWriterOptions." + GetParam().field,
                        GetParam().value);
  ExpectInvalidArgument(ThrottledWriter::Create(o).status(),
                        "ThrottledWriterOptions." + GetParam().field,
                        GetParam().value);
}

INSTANTIATE_TEST_SUITE_P(
    Fields, ThrottledWriterInvalidOptions,
    ::testing::Values(
        Case{"NullThrottle",
             [](ThrottledWriterOptions& o) { o.throttle = nullptr; },
             "throttle", "null"},
        Case{"NegativeRetries",
             [](ThrottledWriterOptions& o) { o.max_retries = -1; },
             "max_retries", "-1"},
        Case{"TooManyRetries",
             [](ThrottledWriterOptions& o) { o.max_retries = 11; },
             "max_retries", "11"}),
    test::CaseName<ThrottledWriterOptions>);

TEST(ThrottledWriterOptionsTest, BoundsAreAccepted) {
  auto throttle = ValueOrFail(WriteThrottle::Create({}));
  ASSERT_NE(throttle, nullptr);
  for (int retries : {0, 10}) {
    EXPECT_TRUE(ValidateThrottledWriterOptions(
                    {.throttle = throttle.get(), .max_retries = retries})
                    .ok());
  }
}

// A port on 127.0.0.1 that nothing listens on (bound, read, closed).
int ClosedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  close(fd);
  return ntohs(addr.sin_port);
}

TEST(ThrottledWriterConnectTest, PasswordNeverAppearsInTheError) {
  auto throttle = ValueOrFail(WriteThrottle::Create({}));
  ASSERT_NE(throttle, nullptr);
  const int port = ClosedPort();
  for (const std::string& cs :
       {absl::StrCat("host=127.0.0.1 port=", port,
                     " user=postgres password=secret dbname=shop"),
        absl::StrCat("host=127.0.0.1 port=", port,
                     " password='secret' user=postgres dbname=shop"),
        absl::StrCat("postgresql://postgres:secret@127.0.0.1:", port,
                     "/shop")}) {
    auto writer = ThrottledWriter::Create(
        {.connection_string = cs, .throttle = throttle.get()});
    ASSERT_FALSE(writer.ok()) << cs;
    const std::string message(writer.status().message());
    EXPECT_EQ(writer.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(message, Not(HasSubstr("secret"))) << cs;
    // It names the server.
    EXPECT_THAT(message, HasSubstr("127.0.0.1")) << message;
    EXPECT_THAT(message, HasSubstr(absl::StrCat(port))) << message;
    EXPECT_THAT(message, HasSubstr("shop")) << message;
  }
}

}  // namespace
}  // namespace spillway::pqxx
