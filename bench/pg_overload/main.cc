// spillway_pg_bench: a real PostgreSQL under write overload, unthrottled
// and through spillway::pqxx::ThrottledWriter.
//
// Starts a private PostgreSQL on 127.0.0.1 with fsync and synchronous_commit
// on (or uses an existing loopback server, --conn), prepares a write
// workload with real contention, finds the concurrency of peak throughput
// by ramping, measures that peak in a phase as long as the overload phases,
// then runs with 4x and 16x that many client threads: unthrottled, then
// through one shared WriteThrottle with the default limit algorithm
// (KneeLimit, given the server's write count unless --nodatabase_rate), and
// measures the peak once more after them. Prints
// markdown tables (throughput, latency, errors by SQLSTATE, rejections, CPU,
// where the server's backends wait, the throttle's limit over time) and, with
// --json, the figures as one object.
//
//   spillway_pg_bench                          # about 3 minutes
//   spillway_pg_bench --json=pg_bench.json
//   spillway_pg_bench --conn="host=127.0.0.1 port=5432 dbname=app"
//   spillway_pg_bench --diagnose               # + 2 diagnostic phases
//   spillway_pg_bench --nodatabase_rate        # the 2x latency band alone
//
// The workload, per write: one transaction (BEGIN; UPDATE one of
// --hot_rows hot rows, chosen uniformly; INSERT one row into an append-only
// table; COMMIT), as pgbench's tpcb-like does with its branches and history
// tables. Each client thread owns one connection (a pqxx::connection, or a
// ThrottledWriter) and writes in a closed loop: the next write starts as
// soon as the last one ended. A throttled client whose write is refused
// backs off as well-behaved clients do, exponentially with jitter ("Exponential
// Backoff And Jitter", AWS Architecture Blog, 2015): after its k-th refusal
// in a row it waits at least the rejection's retry_after and at least
// --min_backoff_ms x 2^(k-1), capped at --max_backoff_ms (default 5 ms
// doubling to 100 ms), the wait drawn uniformly from [w/2, w] so the
// clients' retries do not fall in step; a commit starts the count again.
// A client's behaviour, not a test sleep.
//
// Phases: ramp steps of 1, 2, 4, ... --max_ramp_clients clients (stopping
// after two steps under 75% of the best), then 3/4 and 3/2 of the best
// step; peak = the best step. Then `peak` (that many clients, unthrottled),
// 4x and 16x, each unthrottled and throttled, and `peak again`, all of one
// length. The peak the overload phases are compared with is the mean of the
// two peak phases: the server and the machine drift over a run (in 22 runs
// on the 2-vCPU VM, the peak phase after the overload phases did -16% to
// +26% of the one before, with the same clients; less in 14, by 2.8% at the
// median), and a reference measured on both sides of the phases it judges
// cancels a drift that is linear in time ("ABA" measurement) and averages
// two measurements' noise. The report shows the ratio to the first alone
// too.
// With --diagnose, two more 16x throttled phases (FixedLimit at the peak
// concurrency; KneeLimit at --diagnose_tolerance) run beside the measured
// one, before `peak again`, in an order --diagnose_rotation rotates.
// Every phase starts with a warm-up: writes that end in it are not
// counted; a throttled phase's WriteThrottle is new, so its limit starts
// cold (1) at the phase start. The hot rows are VACUUMed before each phase.
//
// Latency is that of committed writes only, from before the write was
// issued until COMMIT returned (throttled: Admit included; refused writes
// have no latency, they are counted as rejected). Throughput counts
// commits that ended in the measured window.
//
// The throttle: default WriteThrottleOptions, whose limit is built as
// MakeDefaultLimit() builds it (KneeLimit{} in a WindowedLimit with
// DefaultKneeWindowOptions()), with a
// pass-through (ObservedKnee) that records each window's RTT and the
// baseline for the report; it changes no decision.
//
// Every exit path stops the server this program started: signals (INT,
// TERM, HUP) end the current phase early and take the normal path; an
// uncaught exception stops it from the terminate handler.

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <pqxx/pqxx>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "bench/pg_overload/postgres_server.h"
#include "spillway/concurrency_limiter.h"
#include "spillway/fixed_limit.h"
#include "spillway/knee_limit.h"
#include "spillway/limit_algorithm.h"
#include "spillway/pqxx/throttled_writer.h"
#include "spillway/throttle.h"
#include "spillway/windowed_limit.h"
#include "spillway/write_rate.h"

ABSL_FLAG(std::string, conn, "",
          "libpq connection string of an existing server to use instead of "
          "starting one. Only loopback addresses (127.0.0.0/8, ::1, "
          "localhost) and unix sockets are accepted. The benchmark creates "
          "(and drops at the end) tables spillway_bench_hot and "
          "spillway_bench_log in that database.");
ABSL_FLAG(std::string, json, "", "Write the figures as JSON to this file.");
ABSL_FLAG(double, ramp_seconds, 2.0,
          "Measured seconds per ramp step (after its warm-up).");
ABSL_FLAG(double, ramp_warmup_seconds, 0.5,
          "Warm-up seconds per ramp step, not measured.");
ABSL_FLAG(double, run_seconds, 20.0,
          "Measured seconds of the peak phase and of each overload phase "
          "(after its warm-up).");
ABSL_FLAG(double, run_warmup_seconds, 1.0,
          "Warm-up seconds of the peak phase and of each overload phase, not "
          "measured.");
ABSL_FLAG(int, max_ramp_clients, 64,
          "Largest client count of the ramp (1, 2, 4, ... up to this). The "
          "started server gets max_connections = 16 x this + 16.");
ABSL_FLAG(int, hot_rows, 10, "Rows the writes update (row-lock contention).");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the clients' random choices.");
ABSL_FLAG(double, max_backoff_ms, 100.0,
          "A refused throttled client backs off exponentially: after its "
          "k-th refusal in a row it waits w = min(--max_backoff_ms, "
          "max(retry_after, --min_backoff_ms x 2^(k-1))), drawn uniformly "
          "from [w/2, w]. With a fixed 5-10 ms wait instead, the 16x phase's "
          "192 refused threads woke 35,000 times a second and their "
          "scheduling took a third of a core from the server on a 2-core "
          "machine.");
ABSL_FLAG(double, min_backoff_ms, 5.0,
          "The first wait of a refused client; see --max_backoff_ms. The "
          "floor keeps refused clients from polling: 120 refused client "
          "threads retrying every 0.1-1 ms took a core from the server on a "
          "2-core machine.");
ABSL_FLAG(double, queue_wait_ms, 0,
          "When > 0, a throttled client's write may wait up to this long in "
          "the limiter's queue (WriteRequest::deadline) before it is "
          "refused, instead of being refused at once when the limit is "
          "reached. Waiting clients take no CPU and get a freed slot at "
          "once.");
ABSL_FLAG(bool, database_rate, true,
          "Give the default throttle the server's write rate (a "
          "WriteRateMonitor on spillway::pqxx::TransactionCounter), so "
          "KneeLimit's throughput probe can widen its latency band; false: "
          "the latency band alone.");
ABSL_FLAG(bool, diagnose, false,
          "Run two diagnostic 16x throttled phases beside the measured one, "
          "before the second peak phase, so that all three are judged "
          "against the same two peak phases (not part of the acceptance): a "
          "FixedLimit at the peak concurrency, no share of it reserved for "
          "critical writes (what a limiter holding exactly the peak would "
          "give with the same clients); KneeLimit with latency_tolerance = "
          "--diagnose_tolerance. Adds about 2 x (run_warmup_seconds + "
          "run_seconds).");
ABSL_FLAG(double, diagnose_tolerance, 8.0,
          "KneeLimit latency_tolerance of the --diagnose phase.");
ABSL_FLAG(int, diagnose_rotation, 0,
          "With --diagnose, the three 16x throttled phases (default, "
          "FixedLimit, KneeLimit at --diagnose_tolerance) run in that order "
          "rotated left by this many places: vary it from run to run (0, 1, "
          "2, ...) so that no phase always runs first, where the machine's "
          "drift would favour or handicap it.");

namespace spillway::pg_bench {
namespace {

using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;

constexpr char kHotTable[] = "spillway_bench_hot";
constexpr char kLogTable[] = "spillway_bench_log";
constexpr char kUpdateName[] = "spillway_bench_update";
constexpr char kInsertName[] = "spillway_bench_insert";
constexpr char kUpdateSql[] =
    "UPDATE spillway_bench_hot SET balance = balance + $2, "
    "updates = updates + 1 WHERE id = $1";
constexpr char kInsertSql[] =
    "INSERT INTO spillway_bench_log (hot_id, client, delta) "
    "VALUES ($1, $2, $3)";
// A safety bound on every statement, so every phase ends in bounded time.
constexpr char kStatementTimeout[] = "30s";
// Polling period of the phase's main thread, and the wait after a failed
// reconnection.
constexpr auto kPoll = std::chrono::milliseconds(10);
// Count bound of each client's loop (the time bound ends it far earlier).
constexpr int64_t kMaxWritesPerClient = 10'000'000;
// Sampling period of the throttle's limit and of the server's wait events.
constexpr auto kSamplePeriod = std::chrono::milliseconds(250);

// Set by SIGINT, SIGTERM and SIGHUP: the current phase ends at once and the
// program takes its normal exit path (which stops the server).
std::atomic<bool> g_interrupted{false};

extern "C" void OnSignal(int) {
  g_interrupted.store(true, std::memory_order_relaxed);
}

void InstallSignalHandlers() {
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

// The server this program started; reset by the terminate handler so that
// even an uncaught exception stops it.
std::unique_ptr<test::PostgresServer>* g_server = nullptr;

[[noreturn]] void OnTerminate() {
  if (g_server != nullptr) g_server->reset();
  std::fputs("spillway_pg_bench: terminated by an uncaught exception\n",
             stderr);
  std::abort();
}

double Seconds(SteadyClock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// ---------------------------------------------------------------------------
// Flags.

struct Config {
  std::string conn;
  std::string json;
  double ramp_seconds = 0;
  double ramp_warmup_seconds = 0;
  double run_seconds = 0;
  double run_warmup_seconds = 0;
  int max_ramp_clients = 0;
  int hot_rows = 0;
  uint64_t seed = 0;
  double max_backoff_ms = 0;
  double min_backoff_ms = 0;
  double queue_wait_ms = 0;
  bool diagnose = false;
  bool database_rate = true;
  double diagnose_tolerance = 0;
  int diagnose_rotation = 0;
};

absl::StatusOr<Config> ConfigFromFlags() {
  Config c;
  c.conn = absl::GetFlag(FLAGS_conn);
  c.json = absl::GetFlag(FLAGS_json);
  c.ramp_seconds = absl::GetFlag(FLAGS_ramp_seconds);
  c.ramp_warmup_seconds = absl::GetFlag(FLAGS_ramp_warmup_seconds);
  c.run_seconds = absl::GetFlag(FLAGS_run_seconds);
  c.run_warmup_seconds = absl::GetFlag(FLAGS_run_warmup_seconds);
  c.max_ramp_clients = absl::GetFlag(FLAGS_max_ramp_clients);
  c.hot_rows = absl::GetFlag(FLAGS_hot_rows);
  c.seed = absl::GetFlag(FLAGS_seed);
  c.max_backoff_ms = absl::GetFlag(FLAGS_max_backoff_ms);
  c.min_backoff_ms = absl::GetFlag(FLAGS_min_backoff_ms);
  c.queue_wait_ms = absl::GetFlag(FLAGS_queue_wait_ms);
  c.diagnose = absl::GetFlag(FLAGS_diagnose);
  c.database_rate = absl::GetFlag(FLAGS_database_rate);
  c.diagnose_tolerance = absl::GetFlag(FLAGS_diagnose_tolerance);
  c.diagnose_rotation = absl::GetFlag(FLAGS_diagnose_rotation);
  auto in = [](double v, double lo, double hi) {
    return std::isfinite(v) && v >= lo && v <= hi;
  };
  auto bad = [](absl::string_view flag, auto value, absl::string_view want) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, "=", value, ": must be ", want));
  };
  if (!in(c.queue_wait_ms, 0, 60000)) {
    return bad("queue_wait_ms", c.queue_wait_ms, "in [0, 60000]");
  }
  if (!in(c.ramp_seconds, 0.1, 60)) {
    return bad("ramp_seconds", c.ramp_seconds, "in [0.1, 60]");
  }
  if (!in(c.ramp_warmup_seconds, 0, 10)) {
    return bad("ramp_warmup_seconds", c.ramp_warmup_seconds, "in [0, 10]");
  }
  if (!in(c.run_seconds, 0.5, 600)) {
    return bad("run_seconds", c.run_seconds, "in [0.5, 600]");
  }
  if (!in(c.run_warmup_seconds, 0, 30)) {
    return bad("run_warmup_seconds", c.run_warmup_seconds, "in [0, 30]");
  }
  if (c.max_ramp_clients < 1 || c.max_ramp_clients > 256) {
    return bad("max_ramp_clients", c.max_ramp_clients, "in [1, 256]");
  }
  if (c.hot_rows < 1 || c.hot_rows > 1'000'000) {
    return bad("hot_rows", c.hot_rows, "in [1, 1000000]");
  }
  if (!in(c.min_backoff_ms, 0.01, 1000)) {
    return bad("min_backoff_ms", c.min_backoff_ms, "in [0.01, 1000]");
  }
  if (!in(c.max_backoff_ms, c.min_backoff_ms, 1000)) {
    return bad("max_backoff_ms", c.max_backoff_ms,
               absl::StrCat("in [--min_backoff_ms, 1000] = [", c.min_backoff_ms,
                            ", 1000]"));
  }
  if (!in(c.diagnose_tolerance, 1.01, 1000)) {
    return bad("diagnose_tolerance", c.diagnose_tolerance, "in [1.01, 1000]");
  }
  if (c.diagnose_rotation < 0 || c.diagnose_rotation > 1'000'000) {
    return bad("diagnose_rotation", c.diagnose_rotation, "in [0, 1000000]");
  }
  return c;
}

// ---------------------------------------------------------------------------
// Loopback only.

bool IsLoopbackAddress(const std::string& address) {
  in_addr v4;
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, address.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    if (IN6_IS_ADDR_V4MAPPED(&v6)) return v6.s6_addr[12] == 127;
  }
  return false;
}

// Accepts a host list entry that is empty (libpq's default: the local
// socket), a unix-socket directory, "localhost" or a loopback address.
bool IsLoopbackHost(const std::string& host) {
  if (host.empty() || host[0] == '/' || host[0] == '@') return true;
  if (host == "localhost") return true;
  return IsLoopbackAddress(host);
}

// Refuses, before connecting, a connection string (or PGHOST/PGHOSTADDR)
// naming anything but a loopback address or a local socket.
absl::Status CheckLoopbackConnectionString(const std::string& conninfo) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &error);
  if (options == nullptr) {
    std::string message = error != nullptr ? error : "cannot parse it";
    if (error != nullptr) PQfreemem(error);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    return absl::InvalidArgumentError(absl::StrCat("--conn: ", message));
  }
  std::optional<std::string> host, hostaddr;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    if (std::strcmp(o->keyword, "host") == 0) host = o->val;
    if (std::strcmp(o->keyword, "hostaddr") == 0) hostaddr = o->val;
  }
  PQconninfoFree(options);
  if (!host && std::getenv("PGHOST") != nullptr) host = std::getenv("PGHOST");
  if (!hostaddr && std::getenv("PGHOSTADDR") != nullptr) {
    hostaddr = std::getenv("PGHOSTADDR");
  }
  const std::vector<std::string> hosts =
      absl::StrSplit(host.value_or(""), ',', absl::AllowEmpty());
  for (const std::string& h : hosts) {
    if (!IsLoopbackHost(h)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--conn: host '", h,
          "' is not a loopback address, localhost or a unix socket; this "
          "benchmark overloads its target, so only loopback is allowed"));
    }
  }
  if (hostaddr) {
    const std::vector<std::string> addresses =
        absl::StrSplit(*hostaddr, ',', absl::SkipEmpty());
    for (const std::string& a : addresses) {
      if (!IsLoopbackAddress(a)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--conn: hostaddr '", a,
            "' is not a loopback address; only loopback is allowed"));
      }
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// The workload.

// One write's statements, inside the caller's transaction. The statements
// are defined on the transaction's connection on first use (libpqxx keeps
// the definitions per connection, so a replaced connection gets them again;
// a repeated identical definition is a lookup).
void WriteBody(::pqxx::work& tx, int hot_id, int client, int delta) {
  tx.conn().prepare(kUpdateName, kUpdateSql);
  tx.conn().prepare(kInsertName, kInsertSql);
  const ::pqxx::result updated = tx.exec_prepared(kUpdateName, hot_id, delta);
  if (updated.affected_rows() != 1) {
    throw std::runtime_error(absl::StrCat("hot row ", hot_id, " is missing"));
  }
  tx.exec_prepared(kInsertName, hot_id, client, delta);
}

enum class WriteResult { kCommitted, kError, kRejected };

// The SQLSTATE of an exception from libpqxx, or a name for one without.
// libpqxx 6 throws transaction_rollback and its subclasses as `failure`, not
// `sql_error`, and 53300 as too_many_connections, a broken_connection: their
// state follows from the type (as in lib/pqxx/throttled_writer.cc).
std::string ErrorName(const std::exception& e) {
  if (const auto* sql = dynamic_cast<const ::pqxx::sql_error*>(&e)) {
    if (!sql->sqlstate().empty()) return sql->sqlstate();
  }
  if (dynamic_cast<const ::pqxx::serialization_failure*>(&e)) return "40001";
  if (dynamic_cast<const ::pqxx::deadlock_detected*>(&e)) return "40P01";
  if (dynamic_cast<const ::pqxx::statement_completion_unknown*>(&e)) {
    return "40003";
  }
  if (dynamic_cast<const ::pqxx::transaction_rollback*>(&e)) return "40000";
  if (dynamic_cast<const ::pqxx::too_many_connections*>(&e)) return "53300";
  if (dynamic_cast<const ::pqxx::broken_connection*>(&e)) {
    return "broken_connection";
  }
  if (dynamic_cast<const ::pqxx::in_doubt_error*>(&e)) return "in_doubt";
  if (dynamic_cast<const ::pqxx::sql_error*>(&e)) return "sql_error";
  return "other";
}

struct Attempt {
  WriteResult result = WriteResult::kCommitted;
  std::string error;  // SQLSTATE, or a name for errors without one.
  std::chrono::nanoseconds retry_after{0};
  // Committed writes: from the transaction's first statement until COMMIT
  // returned (the database's share of the latency; no admission, no wait).
  std::chrono::nanoseconds db{0};
};

// One client's connection: plain libpqxx, or a ThrottledWriter.
class Client {
 public:
  virtual ~Client() = default;
  virtual Attempt Write(int hot_id, int client, int delta) = 0;
};

class UnthrottledClient final : public Client {
 public:
  static absl::StatusOr<std::unique_ptr<Client>> Create(
      const std::string& conninfo) {
    auto client =
        std::unique_ptr<UnthrottledClient>(new UnthrottledClient(conninfo));
    if (absl::Status s = client->Connect(); !s.ok()) return s;
    return std::unique_ptr<Client>(std::move(client));
  }

  Attempt Write(int hot_id, int client, int delta) override {
    if (connection_ == nullptr) {
      if (!Connect().ok()) {
        // No server to talk to: do not spin on connection attempts.
        std::this_thread::sleep_for(kPoll);
        return {WriteResult::kError, "connect_failed"};
      }
    }
    try {
      ::pqxx::work tx(*connection_);
      const auto first = std::chrono::steady_clock::now();
      WriteBody(tx, hot_id, client, delta);
      tx.commit();
      Attempt a{WriteResult::kCommitted};
      a.db = std::chrono::steady_clock::now() - first;
      return a;
    } catch (const std::exception& e) {
      const bool lost =
          dynamic_cast<const ::pqxx::broken_connection*>(&e) != nullptr ||
          dynamic_cast<const ::pqxx::in_doubt_error*>(&e) != nullptr;
      if (lost) connection_.reset();
      return {WriteResult::kError, ErrorName(e)};
    }
  }

 private:
  explicit UnthrottledClient(std::string conninfo)
      : conninfo_(std::move(conninfo)) {}

  absl::Status Connect() {
    try {
      connection_ = std::make_unique<::pqxx::connection>(conninfo_);
      return absl::OkStatus();
    } catch (const std::exception& e) {
      connection_.reset();
      return absl::UnavailableError(e.what());
    }
  }

  const std::string conninfo_;
  std::unique_ptr<::pqxx::connection> connection_;
};

class ThrottledClient final : public Client {
 public:
  static absl::StatusOr<std::unique_ptr<Client>> Create(
      const std::string& conninfo, WriteThrottle* throttle,
      std::chrono::nanoseconds queue_wait) {
    // The deadline of a queued write bounds its wait in the limiter's
    // queue, not the transaction: a statement_timeout derived from it would
    // give the write the few milliseconds left of its queue wait (which
    // cancelled it with 57014 once the wait had used them up).
    absl::StatusOr<std::unique_ptr<spillway::pqxx::ThrottledWriter>> writer =
        spillway::pqxx::ThrottledWriter::Create(
            {.connection_string = conninfo,
             .throttle = throttle,
             .statement_timeout_from_deadline = false});
    if (!writer.ok()) return writer.status();
    return std::unique_ptr<Client>(
        new ThrottledClient(std::move(*writer), queue_wait));
  }

  Attempt Write(int hot_id, int client, int delta) override {
    WriteRequest request;
    if (queue_wait_.count() > 0) {
      request.deadline = SteadyClock::now() + queue_wait_;
    }
    std::chrono::steady_clock::time_point first{};
    const absl::Status s = writer_->Write(
        [&](::pqxx::work& tx) {
          first = std::chrono::steady_clock::now();
          WriteBody(tx, hot_id, client, delta);
        },
        request);
    if (s.ok()) {
      Attempt a{WriteResult::kCommitted};
      a.db = std::chrono::steady_clock::now() - first;
      return a;
    }
    if (std::optional<Rejection> r = RejectionOf(s)) {
      return {
          WriteResult::kRejected, "",
          std::chrono::nanoseconds(absl::ToInt64Nanoseconds(r->retry_after))};
    }
    if (std::optional<std::string> state = spillway::pqxx::SqlState(s)) {
      return {WriteResult::kError, *state};
    }
    return {WriteResult::kError,
            absl::StrCat("status_", absl::StatusCodeToString(s.code()))};
  }

 private:
  ThrottledClient(std::unique_ptr<spillway::pqxx::ThrottledWriter> writer,
                  std::chrono::nanoseconds queue_wait)
      : writer_(std::move(writer)), queue_wait_(queue_wait) {}
  std::unique_ptr<spillway::pqxx::ThrottledWriter> writer_;
  const std::chrono::nanoseconds queue_wait_;
};

// ---------------------------------------------------------------------------
// The default limit algorithm, observed.

// KneeLimit{} exactly as MakeDefaultLimit() builds it, with a pass-through
// that records each window's aggregate and the baseline for the report. It
// changes no decision.
class ObservedKnee final : public LimitAlgorithm {
 public:
  explicit ObservedKnee(std::unique_ptr<KneeLimit> knee)
      : knee_(std::move(knee)) {}

  int initial_limit() const override { return knee_->initial_limit(); }
  int min_limit() const override { return knee_->min_limit(); }
  int max_limit() const override { return knee_->max_limit(); }
  MonotonicTime discard_before() const override {
    return knee_->discard_before();
  }
  int Update(const WindowSample& window, int limit) override {
    const int next = knee_->Update(window, limit);
    window_rtt_ns_.store(window.rtt.count(), std::memory_order_relaxed);
    baseline_ns_.store(knee_->baseline().count(), std::memory_order_relaxed);
    tolerance_.store(knee_->tolerance(), std::memory_order_relaxed);
    windows_.fetch_add(1, std::memory_order_relaxed);
    dropped_.fetch_add(window.dropped, std::memory_order_relaxed);
    return next;
  }

  // Thread-safe; the values may be stale at once.
  int64_t window_rtt_ns() const { return window_rtt_ns_.load(); }
  int64_t baseline_ns() const { return baseline_ns_.load(); }
  double tolerance() const { return tolerance_.load(); }
  int64_t windows() const { return windows_.load(); }
  int64_t dropped() const { return dropped_.load(); }

 private:
  const std::unique_ptr<KneeLimit> knee_;
  // Written once per window by the closing thread, read by the sampler.
  std::atomic<int64_t> window_rtt_ns_{0};
  std::atomic<int64_t> baseline_ns_{0};
  std::atomic<double> tolerance_{0};
  std::atomic<int64_t> windows_{0};
  std::atomic<int64_t> dropped_{0};
};

struct ThrottleUnderTest {
  std::unique_ptr<WriteThrottle> throttle;
  ObservedKnee* knee = nullptr;  // Owned by the throttle's limit.
};

// The default throttle, given the server's write rate when `conninfo` is
// not empty (as a service would: see the README); or, for a diagnostic
// phase, one with a FixedLimit or another latency tolerance and no rate.
absl::StatusOr<ThrottleUnderTest> MakeThrottle(int fixed_limit,
                                               double knee_tolerance,
                                               const std::string& conninfo) {
  WriteThrottleOptions options;
  options.name = "pg_bench";
  if (fixed_limit > 0) {
    absl::StatusOr<std::unique_ptr<FixedLimit>> fixed =
        FixedLimit::Create(fixed_limit);
    if (!fixed.ok()) return fixed.status();
    options.limiter.limit = std::shared_ptr<Limit>(std::move(*fixed));
    // Every write here is normal priority, and by default a fifth of the
    // limit is reserved for critical writes and never lent: with it, normal
    // writes held at most peak - floor(peak / 5) (10 of 12 in flight, 92%
    // of the peak in one run). Without it they may hold exactly the peak's
    // concurrency, which is what this phase is meant to show.
    options.limiter.partitions[static_cast<int>(Priority::kCritical)]
        .guaranteed_fraction = 0;
    absl::StatusOr<std::unique_ptr<WriteThrottle>> throttle =
        WriteThrottle::Create(std::move(options));
    if (!throttle.ok()) return throttle.status();
    return ThrottleUnderTest{std::move(*throttle), nullptr};
  }
  KneeLimitOptions knee_options;
  if (knee_tolerance > 0) knee_options.latency_tolerance = knee_tolerance;
  if (knee_tolerance <= 0 && !conninfo.empty()) {
    absl::StatusOr<std::unique_ptr<WriteRateMonitor>> monitor =
        spillway::pqxx::MonitorWriteRate(conninfo, {.name = "pg_bench server"});
    if (!monitor.ok()) return monitor.status();
    knee_options.database_rate = std::move(*monitor);
  }
  absl::StatusOr<std::unique_ptr<KneeLimit>> knee =
      KneeLimit::Create(knee_options);
  if (!knee.ok()) return knee.status();
  auto observed = std::make_unique<ObservedKnee>(std::move(*knee));
  ObservedKnee* raw = observed.get();
  absl::StatusOr<std::unique_ptr<WindowedLimit>> limit =
      WindowedLimit::Create(std::move(observed), DefaultKneeWindowOptions());
  if (!limit.ok()) return limit.status();
  options.limiter.limit = std::shared_ptr<Limit>(std::move(*limit));
  absl::StatusOr<std::unique_ptr<WriteThrottle>> throttle =
      WriteThrottle::Create(std::move(options));
  if (!throttle.ok()) return throttle.status();
  return ThrottleUnderTest{std::move(*throttle), raw};
}

// ---------------------------------------------------------------------------
// Machine CPU, for "where does the time go".

struct CpuTimes {
  double machine_busy_s = 0;   // All cores, from /proc/stat.
  double machine_total_s = 0;  // All cores, busy + idle.
  double process_s = 0;        // This process (the clients), user + system.
};

CpuTimes ReadCpuTimes() {
  CpuTimes t;
  std::ifstream stat("/proc/stat");
  std::string cpu;
  int64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0,
          softirq = 0, steal = 0;
  if (stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >>
          softirq >> steal &&
      cpu == "cpu") {
    const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
    const int64_t busy = user + nice + system + irq + softirq + steal;
    t.machine_busy_s = busy / tick;
    t.machine_total_s = (busy + idle + iowait) / tick;
  }
  rusage usage;
  if (getrusage(RUSAGE_SELF, &usage) == 0) {
    t.process_s = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 +
                  usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
  }
  return t;
}

// ---------------------------------------------------------------------------
// Phases.

enum class Mode { kUnthrottled, kThrottled };

absl::string_view ModeName(Mode mode) {
  return mode == Mode::kUnthrottled ? "unthrottled" : "throttled";
}

struct PhaseSpec {
  std::string name;  // "ramp", "peak", "4x", "16x", "peak again".
  int clients = 1;
  Mode mode = Mode::kUnthrottled;
  double warmup_s = 0;
  double measure_s = 1;
  // Diagnostic throttled phases only: a FixedLimit instead of KneeLimit
  // (when > 0), or KneeLimit with this latency_tolerance (when > 0).
  int fixed_limit = 0;
  double knee_tolerance = 0;
};

std::string ModeText(const PhaseSpec& spec) {
  if (spec.fixed_limit > 0) {
    return absl::StrCat("throttled, FixedLimit ", spec.fixed_limit,
                        " (diagnostic)");
  }
  if (spec.knee_tolerance > 0) {
    return absl::StrCat("throttled, KneeLimit tolerance ", spec.knee_tolerance,
                        " (diagnostic)");
  }
  return std::string(ModeName(spec.mode));
}

// One 250 ms sample of a throttled phase.
struct ThrottleSample {
  double t_s = 0;  // Since the phase started (warm-up included).
  int limit = 0;
  int in_flight = 0;
  int64_t committed = 0;  // Cumulative, warm-up included.
  double window_rtt_ms = 0;
  double baseline_ms = 0;
  double band = 0;  // KneeLimit's latency band (x baseline).
};

struct PhaseResult {
  PhaseSpec spec;
  std::string error;  // Non-empty when the phase could not run.
  double measured_s = 0;
  int64_t committed = 0;
  int64_t rejected = 0;
  int64_t warmup_errors = 0;
  double tps = 0;
  double min_ms = 0, mean_ms = 0, p50_ms = 0, p99_ms = 0, max_ms = 0;
  // Database latency: first statement to COMMIT (Attempt::db).
  double db_p50_ms = 0, db_p99_ms = 0;
  std::map<std::string, int64_t> errors;  // Measured window only.
  double machine_cpu_pct = 0;             // Busy share of all cores.
  double process_cpu_pct = 0;             // This process's share of all cores.
  // Mean number of the server's client backends per state / wait event
  // ("CPU" when active without a wait event), over the measured window.
  std::map<std::string, double> waits;
  std::vector<ThrottleSample> limits;  // Throttled phases only.
  int64_t limit_windows = 0;
  int64_t limit_dropped = 0;
  // From the end of the measured window until every client has finished its
  // last write and closed its connection; and the slowest of those last
  // writes (not in the latency figures).
  double drain_s = 0;
  double late_max_ms = 0;
  bool interrupted = false;
};

struct ClientStats {
  std::vector<int64_t> latency_ns;
  std::vector<int64_t> db_latency_ns;
  std::map<std::string, int64_t> errors;
  int64_t committed = 0;
  int64_t rejected = 0;
  int64_t warmup_errors = 0;
  int64_t late_max_ns = 0;  // Slowest write that ended after the window.
  std::string fatal;
};

// The start line of a phase: every client connects, then all start at once.
class StartGate {
 public:
  explicit StartGate(int clients) : expected_(clients) {}

  // A client is connected (or failed to). Returns the phase's times once
  // the gate opens, or nullopt when the phase is cancelled.
  std::optional<std::pair<TimePoint, TimePoint>> ArriveAndWait() {
    std::unique_lock<std::mutex> lock(mu_);
    ++arrived_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_ || cancelled_; });
    if (cancelled_) return std::nullopt;
    return std::make_pair(measure_from_, end_);
  }
  void WaitAllArrived() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return arrived_ == expected_; });
  }
  void Open(TimePoint measure_from, TimePoint end) {
    std::lock_guard<std::mutex> lock(mu_);
    measure_from_ = measure_from;
    end_ = end;
    open_ = true;
    cv_.notify_all();
  }
  void Cancel() {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  const int expected_;
  int arrived_ = 0;
  bool open_ = false;
  bool cancelled_ = false;
  TimePoint measure_from_{};
  TimePoint end_{};
};

struct PhaseShared {
  std::string conninfo;
  Mode mode = Mode::kUnthrottled;
  WriteThrottle* throttle = nullptr;
  int hot_rows = 1;
  uint64_t seed = 0;
  // A refused client's first wait and the cap of its exponential backoff.
  std::chrono::nanoseconds min_backoff{0};
  std::chrono::nanoseconds max_backoff{0};
  // How long a throttled write may wait in the limiter's queue (0: none).
  std::chrono::nanoseconds queue_wait{0};
  StartGate* gate = nullptr;
  std::atomic<int64_t> committed{0};  // Whole phase, for the samples.
};

void ClientThread(PhaseShared& shared, int index, ClientStats& out) {
  absl::StatusOr<std::unique_ptr<Client>> client =
      shared.mode == Mode::kUnthrottled
          ? UnthrottledClient::Create(shared.conninfo)
          : ThrottledClient::Create(shared.conninfo, shared.throttle,
                                    shared.queue_wait);
  if (!client.ok()) out.fatal = client.status().ToString();
  const auto times = shared.gate->ArriveAndWait();
  if (!client.ok() || !times) return;
  const auto [measure_from, end] = *times;

  std::mt19937_64 random(shared.seed * 1'000'003 + index);
  std::uniform_int_distribution<int> hot(1, shared.hot_rows);
  std::uniform_int_distribution<int> delta(-5000, 5000);
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  int refusals_in_a_row = 0;
  for (int64_t n = 0; n < kMaxWritesPerClient; ++n) {
    const TimePoint start = SteadyClock::now();
    if (start >= end || g_interrupted.load(std::memory_order_relaxed)) break;
    const Attempt a = (*client)->Write(hot(random), index, delta(random));
    const TimePoint done = SteadyClock::now();
    const bool measured = done >= measure_from && done <= end;
    if (done > end) {
      out.late_max_ns = std::max<int64_t>(
          out.late_max_ns,
          std::chrono::duration_cast<std::chrono::nanoseconds>(done - start)
              .count());
    }
    switch (a.result) {
      case WriteResult::kCommitted:
        refusals_in_a_row = 0;
        shared.committed.fetch_add(1, std::memory_order_relaxed);
        if (measured) {
          ++out.committed;
          out.latency_ns.push_back(
              std::chrono::duration_cast<std::chrono::nanoseconds>(done - start)
                  .count());
          out.db_latency_ns.push_back(a.db.count());
        }
        break;
      case WriteResult::kError:
        if (measured) {
          ++out.errors[a.error];
        } else if (done < measure_from) {
          ++out.warmup_errors;
        }
        break;
      case WriteResult::kRejected: {
        if (measured) ++out.rejected;
        refusals_in_a_row = std::min(refusals_in_a_row + 1, 30);
        const std::chrono::nanoseconds exponential =
            shared.min_backoff * (int64_t{1} << (refusals_in_a_row - 1));
        const std::chrono::nanoseconds wait =
            std::min(shared.max_backoff, std::max(a.retry_after, exponential));
        std::this_thread::sleep_for(
            std::chrono::nanoseconds(static_cast<int64_t>(
                static_cast<double>(wait.count()) * jitter(random))));
        break;
      }
    }
  }
}

double Percentile(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return std::nan("");
  size_t rank = static_cast<size_t>(std::ceil(q * sorted.size()));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1] / 1e6;
}

// Samples the throttle's limit and the server's wait events every 250 ms
// until `stop`. The wait-event query runs on its own connection.
class Sampler {
 public:
  Sampler(const std::string& conninfo, WriteThrottle* throttle,
          ObservedKnee* knee, PhaseShared& shared)
      : conninfo_(conninfo),
        throttle_(throttle),
        knee_(knee),
        shared_(shared) {}

  void Start(TimePoint phase_start, TimePoint measure_from, TimePoint end) {
    thread_ = std::thread([=, this] { Loop(phase_start, measure_from, end); });
  }
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  std::vector<ThrottleSample> limits;
  std::map<std::string, double> waits;  // Means over the measured samples.

 private:
  void Loop(TimePoint phase_start, TimePoint measure_from, TimePoint end) {
    std::unique_ptr<::pqxx::connection> monitor;
    try {
      monitor = std::make_unique<::pqxx::connection>(conninfo_);
    } catch (const std::exception&) {
      // Wait events are a diagnosis; the phase runs without them.
    }
    std::map<std::string, int64_t> wait_counts;
    int wait_samples = 0;
    for (TimePoint next = phase_start + kSamplePeriod;; next += kSamplePeriod) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (cv_.wait_until(lock, next, [&] { return stop_; })) break;
      }
      if (throttle_ != nullptr) {
        limits.push_back(
            {Seconds(next - phase_start), throttle_->limiter().limit(),
             throttle_->limiter().in_flight(),
             shared_.committed.load(std::memory_order_relaxed),
             knee_ != nullptr ? knee_->window_rtt_ns() / 1e6 : std::nan(""),
             knee_ != nullptr ? knee_->baseline_ns() / 1e6 : std::nan(""),
             knee_ != nullptr ? knee_->tolerance() : std::nan("")});
      }
      if (monitor != nullptr && next >= measure_from && next <= end) {
        try {
          ::pqxx::nontransaction tx(*monitor);
          const ::pqxx::result r = tx.exec(
              "SELECT CASE WHEN state = 'active' THEN "
              "coalesce(wait_event_type || ':' || wait_event, 'CPU') "
              "ELSE coalesce(state, 'unknown') END, count(*) "
              "FROM pg_stat_activity WHERE backend_type = 'client backend' "
              "AND pid <> pg_backend_pid() GROUP BY 1");
          for (const auto& row : r) {
            wait_counts[row[0].as<std::string>()] += row[1].as<int64_t>();
          }
          ++wait_samples;
        } catch (const std::exception&) {
          monitor.reset();
        }
      }
    }
    for (const auto& [name, count] : wait_counts) {
      waits[name] = static_cast<double>(count) / std::max(1, wait_samples);
    }
  }

  const std::string conninfo_;
  WriteThrottle* const throttle_;
  ObservedKnee* const knee_;
  PhaseShared& shared_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

absl::Status VacuumHotRows(const std::string& conninfo) {
  try {
    ::pqxx::connection c(conninfo);
    ::pqxx::nontransaction tx(c);
    tx.exec(absl::StrCat("VACUUM ", kHotTable));
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("VACUUM: ", e.what()));
  }
}

PhaseResult RunPhase(const Config& config, const std::string& conninfo,
                     const PhaseSpec& spec, int phase_index) {
  PhaseResult result;
  result.spec = spec;
  if (absl::Status s = VacuumHotRows(conninfo); !s.ok()) {
    result.error = s.ToString();
    return result;
  }

  ThrottleUnderTest throttle;
  if (spec.mode == Mode::kThrottled) {
    absl::StatusOr<ThrottleUnderTest> t =
        MakeThrottle(spec.fixed_limit, spec.knee_tolerance,
                     config.database_rate ? conninfo : std::string());
    if (!t.ok()) {
      result.error = t.status().ToString();
      return result;
    }
    throttle = std::move(*t);
  }

  StartGate gate(spec.clients);
  PhaseShared shared;
  shared.conninfo = conninfo;
  shared.mode = spec.mode;
  shared.throttle = throttle.throttle.get();
  shared.hot_rows = config.hot_rows;
  shared.min_backoff = std::chrono::nanoseconds(
      static_cast<int64_t>(config.min_backoff_ms * 1e6));
  shared.max_backoff = std::chrono::nanoseconds(
      static_cast<int64_t>(config.max_backoff_ms * 1e6));
  shared.queue_wait = std::chrono::nanoseconds(
      static_cast<int64_t>(config.queue_wait_ms * 1e6));
  shared.seed = config.seed * 1'000'033 + phase_index;
  shared.gate = &gate;

  std::vector<ClientStats> stats(spec.clients);
  std::vector<std::thread> threads;
  threads.reserve(spec.clients);
  for (int i = 0; i < spec.clients; ++i) {
    threads.emplace_back(
        [&shared, &stats, i] { ClientThread(shared, i, stats[i]); });
  }
  gate.WaitAllArrived();
  for (const ClientStats& s : stats) {
    if (!s.fatal.empty()) {
      result.error = absl::StrCat("a client could not connect: ", s.fatal);
      break;
    }
  }
  if (!result.error.empty() || g_interrupted.load()) {
    gate.Cancel();
    for (std::thread& t : threads) t.join();
    result.interrupted = g_interrupted.load();
    return result;
  }

  const TimePoint start = SteadyClock::now();
  const TimePoint measure_from =
      start + std::chrono::duration_cast<SteadyClock::duration>(
                  std::chrono::duration<double>(spec.warmup_s));
  const TimePoint end =
      measure_from + std::chrono::duration_cast<SteadyClock::duration>(
                         std::chrono::duration<double>(spec.measure_s));
  Sampler sampler(conninfo, throttle.throttle.get(), throttle.knee, shared);
  sampler.Start(start, measure_from, end);
  gate.Open(measure_from, end);
  // CPU is read at the start and the end of the measured window.
  while (SteadyClock::now() < measure_from && !g_interrupted.load()) {
    std::this_thread::sleep_until(
        std::min(measure_from, SteadyClock::now() + kPoll));
  }
  const CpuTimes cpu_from = ReadCpuTimes();
  const TimePoint cpu_from_time = SteadyClock::now();
  while (SteadyClock::now() < end && !g_interrupted.load()) {
    std::this_thread::sleep_until(std::min(end, SteadyClock::now() + kPoll));
  }
  const CpuTimes cpu_to = ReadCpuTimes();
  const TimePoint cpu_to_time = SteadyClock::now();
  for (std::thread& t : threads) t.join();
  result.drain_s = Seconds(SteadyClock::now() - std::min(end, cpu_to_time));
  sampler.Stop();

  result.interrupted = g_interrupted.load();
  result.measured_s = spec.measure_s;
  if (result.interrupted) {
    result.measured_s =
        std::max(1e-3, Seconds(std::min(cpu_to_time, end) - measure_from));
  }
  std::vector<int64_t> latency;
  std::vector<int64_t> db_latency;
  for (ClientStats& s : stats) {
    db_latency.insert(db_latency.end(), s.db_latency_ns.begin(),
                      s.db_latency_ns.end());
    result.committed += s.committed;
    result.rejected += s.rejected;
    result.warmup_errors += s.warmup_errors;
    result.late_max_ms = std::max(result.late_max_ms, s.late_max_ns / 1e6);
    for (const auto& [state, n] : s.errors) result.errors[state] += n;
    latency.insert(latency.end(), s.latency_ns.begin(), s.latency_ns.end());
  }
  std::sort(latency.begin(), latency.end());
  result.tps = result.committed / result.measured_s;
  result.min_ms = latency.empty() ? std::nan("") : latency.front() / 1e6;
  double sum_ns = 0;
  for (int64_t ns : latency) sum_ns += ns;
  result.mean_ms =
      latency.empty() ? std::nan("") : sum_ns / latency.size() / 1e6;
  result.p50_ms = Percentile(latency, 0.50);
  result.p99_ms = Percentile(latency, 0.99);
  result.max_ms = latency.empty() ? std::nan("") : latency.back() / 1e6;
  std::sort(db_latency.begin(), db_latency.end());
  result.db_p50_ms = Percentile(db_latency, 0.50);
  result.db_p99_ms = Percentile(db_latency, 0.99);
  const double wall = Seconds(cpu_to_time - cpu_from_time);
  const double total = cpu_to.machine_total_s - cpu_from.machine_total_s;
  if (total > 0) {
    result.machine_cpu_pct =
        100.0 * (cpu_to.machine_busy_s - cpu_from.machine_busy_s) / total;
  }
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  if (wall > 0) {
    result.process_cpu_pct =
        100.0 * (cpu_to.process_s - cpu_from.process_s) / (wall * cores);
  }
  result.waits = std::move(sampler.waits);
  result.limits = std::move(sampler.limits);
  if (throttle.knee != nullptr) {
    result.limit_windows = throttle.knee->windows();
    result.limit_dropped = throttle.knee->dropped();
  }
  return result;
}

// ---------------------------------------------------------------------------
// Report.

std::string Ms(double ms) {
  if (std::isnan(ms)) return "-";
  if (ms < 10) return absl::StrFormat("%.2f", ms);
  return absl::StrFormat("%.1f", ms);
}

std::string ErrorsText(const PhaseResult& r) {
  if (r.errors.empty()) return "-";
  std::vector<std::string> parts;
  for (const auto& [state, n] : r.errors) {
    parts.push_back(absl::StrCat(state, " x", n));
  }
  return absl::StrJoin(parts, ", ");
}

std::string WaitsText(const PhaseResult& r) {
  std::vector<std::pair<double, std::string>> sorted;
  for (const auto& [name, mean] : r.waits) {
    if (mean >= 0.05) sorted.push_back({mean, name});
  }
  std::sort(sorted.rbegin(), sorted.rend());
  std::vector<std::string> parts;
  for (const auto& [mean, name] : sorted) {
    parts.push_back(absl::StrFormat("%s %.1f", name, mean));
  }
  return parts.empty() ? "-" : absl::StrJoin(parts, ", ");
}

constexpr char kTableHeader[] =
    "| phase | mode | clients | tps | % of peak | min ms | mean ms | p50 ms | "
    "p99 ms | max ms | db p50 ms | db p99 ms | errors by SQLSTATE | rejected "
    "| CPU busy % | bench CPU % |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"
    "---:|\n";

std::string TableRow(const PhaseResult& r, double peak_tps) {
  if (!r.error.empty()) {
    return absl::StrCat("| ", r.spec.name, " | ", ModeText(r.spec), " | ",
                        r.spec.clients, " | failed: ", r.error,
                        " |||||||||||||\n");
  }
  return absl::StrFormat(
      "| %s | %s | %d | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s "
      "| %.0f | %.0f |\n",
      r.spec.name, ModeText(r.spec), r.spec.clients, r.tps,
      peak_tps > 0 ? absl::StrFormat("%.0f", 100.0 * r.tps / peak_tps) : "-",
      Ms(r.min_ms), Ms(r.mean_ms), Ms(r.p50_ms), Ms(r.p99_ms), Ms(r.max_ms),
      Ms(r.db_p50_ms), Ms(r.db_p99_ms), ErrorsText(r),
      r.spec.mode == Mode::kThrottled ? absl::StrCat(r.rejected) : "-",
      r.machine_cpu_pct, r.process_cpu_pct);
}

std::string LimitTable(const PhaseResult& r) {
  std::string out = absl::StrFormat(
      "Limit of the shared WriteThrottle, %s %d clients (sampled every "
      "250 ms; t from the phase start, warm-up = first %.1f s):\n\n"
      "| t s | limit at +0.25 +0.5 +0.75 +1.0 s | in flight | tps | "
      "last window rtt ms | baseline ms | band |\n"
      "|---:|---|---:|---:|---:|---:|---:|\n",
      r.spec.name, r.spec.clients, r.spec.warmup_s);
  int64_t committed_before = 0;
  for (size_t i = 0; i < r.limits.size(); i += 4) {
    std::vector<std::string> limits;
    const size_t last = std::min(r.limits.size(), i + 4) - 1;
    for (size_t j = i; j <= last; ++j) {
      limits.push_back(absl::StrCat(r.limits[j].limit));
    }
    const ThrottleSample& s = r.limits[last];
    const double span = s.t_s - (i == 0 ? 0.0 : r.limits[i - 1].t_s);
    absl::StrAppendFormat(
        &out, "| %.0f | %s | %d | %.0f | %s | %s | %s |\n",
        std::ceil(s.t_s - 1e-9), absl::StrJoin(limits, " "), s.in_flight,
        span > 0 ? (s.committed - committed_before) / span : 0.0,
        Ms(s.window_rtt_ms), Ms(s.baseline_ms),
        std::isfinite(s.band) ? absl::StrFormat("%.2f", s.band) : "-");
    committed_before = s.committed;
  }
  absl::StrAppendFormat(&out, "\nWindows closed: %d; windows with drops: %d.\n",
                        r.limit_windows, r.limit_dropped);
  return out;
}

// Median limit over the measured part of a throttled phase.
double MedianMeasuredLimit(const PhaseResult& r) {
  std::vector<int> v;
  for (const ThrottleSample& s : r.limits) {
    if (s.t_s > r.spec.warmup_s) v.push_back(s.limit);
  }
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string JsonString(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", static_cast<int>(c));
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string JsonNumber(double x) {
  if (!std::isfinite(x)) return "null";
  return absl::StrFormat("%.3f", x);
}

std::string PhaseJson(const PhaseResult& r) {
  std::vector<std::string> errors;
  for (const auto& [state, n] : r.errors) {
    errors.push_back(absl::StrCat(JsonString(state), ": ", n));
  }
  std::vector<std::string> waits;
  for (const auto& [name, mean] : r.waits) {
    waits.push_back(absl::StrCat(JsonString(name), ": ", JsonNumber(mean)));
  }
  std::string out = absl::StrCat(
      "{\"phase\": ", JsonString(r.spec.name),
      ", \"mode\": ", JsonString(ModeText(r.spec)),
      ", \"clients\": ", r.spec.clients,
      ", \"warmup_s\": ", JsonNumber(r.spec.warmup_s),
      ", \"measured_s\": ", JsonNumber(r.measured_s),
      ", \"committed\": ", r.committed, ", \"tps\": ", JsonNumber(r.tps),
      ", \"min_ms\": ", JsonNumber(r.min_ms),
      ", \"mean_ms\": ", JsonNumber(r.mean_ms),
      ", \"p50_ms\": ", JsonNumber(r.p50_ms),
      ", \"p99_ms\": ", JsonNumber(r.p99_ms),
      ", \"max_ms\": ", JsonNumber(r.max_ms),
      ", \"db_p50_ms\": ", JsonNumber(r.db_p50_ms),
      ", \"db_p99_ms\": ", JsonNumber(r.db_p99_ms), ", \"errors\": {",
      absl::StrJoin(errors, ", "), "}, \"warmup_errors\": ", r.warmup_errors,
      ", \"rejected\": ", r.rejected,
      ", \"machine_cpu_pct\": ", JsonNumber(r.machine_cpu_pct),
      ", \"bench_cpu_pct\": ", JsonNumber(r.process_cpu_pct),
      ", \"backends\": {", absl::StrJoin(waits, ", "), "}",
      ", \"drain_s\": ", JsonNumber(r.drain_s),
      ", \"late_max_ms\": ", JsonNumber(r.late_max_ms));
  if (!r.error.empty())
    absl::StrAppend(&out, ", \"error\": ", JsonString(r.error));
  if (r.spec.mode == Mode::kThrottled) {
    std::vector<std::string> series;
    for (const ThrottleSample& s : r.limits) {
      series.push_back(absl::StrFormat("[%.2f, %d]", s.t_s, s.limit));
    }
    absl::StrAppend(&out,
                    ", \"median_limit\": ", JsonNumber(MedianMeasuredLimit(r)),
                    ", \"limit_series\": [", absl::StrJoin(series, ", "), "]");
  }
  return out + "}";
}

// ---------------------------------------------------------------------------
// The program.

struct ServerFacts {
  std::string version;
  std::string fsync;
  std::string synchronous_commit;
  int max_connections = 0;
  std::string address;  // inet_server_addr(), or "unix socket".
};

absl::StatusOr<ServerFacts> PrepareDatabase(const std::string& conninfo,
                                            int hot_rows) {
  try {
    ::pqxx::connection c(conninfo);
    ::pqxx::work tx(c);
    ServerFacts facts;
    facts.version = tx.exec1("SHOW server_version")[0].as<std::string>();
    facts.fsync = tx.exec1("SHOW fsync")[0].as<std::string>();
    facts.synchronous_commit =
        tx.exec1("SHOW synchronous_commit")[0].as<std::string>();
    facts.max_connections = tx.exec1("SHOW max_connections")[0].as<int>();
    const ::pqxx::row addr = tx.exec1("SELECT host(inet_server_addr())");
    facts.address =
        addr[0].is_null() ? "unix socket" : addr[0].as<std::string>();
    if (!addr[0].is_null() && !IsLoopbackAddress(facts.address)) {
      return absl::InvalidArgumentError(
          absl::StrCat("the server's address ", facts.address,
                       " is not loopback; refusing to load it"));
    }
    tx.exec(absl::StrCat("DROP TABLE IF EXISTS ", kHotTable, ", ", kLogTable));
    tx.exec(absl::StrCat("CREATE TABLE ", kHotTable,
                         " (id int PRIMARY KEY, balance bigint NOT NULL, "
                         "updates bigint NOT NULL)"));
    tx.exec(absl::StrCat("INSERT INTO ", kHotTable,
                         " SELECT g, 0, 0 FROM generate_series(1, ", hot_rows,
                         ") g"));
    tx.exec(absl::StrCat("CREATE TABLE ", kLogTable,
                         " (hot_id int NOT NULL, client int NOT NULL, "
                         "delta int NOT NULL, at timestamptz NOT NULL "
                         "DEFAULT now())"));
    tx.commit();
    return facts;
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("preparing the database: ", e.what()));
  }
}

void DropTables(const std::string& conninfo) {
  try {
    ::pqxx::connection c(conninfo);
    ::pqxx::work tx(c);
    tx.exec(absl::StrCat("DROP TABLE IF EXISTS ", kHotTable, ", ", kLogTable));
    tx.commit();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "spillway_pg_bench: dropping the tables: %s\n",
                 e.what());
  }
}

// Prints and flushes at once: a long run shows its progress.
void Print(const std::string& text) {
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
}

void Progress(const PhaseResult& r) {
  std::fprintf(stderr, "  %-4s %-11s %4d clients: %7.0f tps, p99 %s ms%s\n",
               r.spec.name.c_str(), ModeText(r.spec).c_str(), r.spec.clients,
               r.tps, Ms(r.p99_ms).c_str(),
               r.error.empty() ? "" : (" FAILED: " + r.error).c_str());
}

int Run(const Config& config, const TimePoint program_start) {
  std::unique_ptr<test::PostgresServer> server;
  g_server = &server;
  struct ForgetServer {
    ~ForgetServer() { g_server = nullptr; }
  } forget_server;  // Destroyed before `server`.
  std::string conninfo = config.conn;
  const int max_connections = 16 * config.max_ramp_clients + 16;
  if (!config.conn.empty()) {
    if (absl::Status s = CheckLoopbackConnectionString(config.conn); !s.ok()) {
      std::fprintf(stderr, "spillway_pg_bench: %s\n",
                   std::string(s.message()).c_str());
      return 2;
    }
  } else {
    std::fprintf(stderr, "starting PostgreSQL (fsync on, max_connections %d)\n",
                 max_connections);
    absl::StatusOr<std::unique_ptr<test::PostgresServer>> started =
        test::PostgresServer::Start(
            {.fsync = true, .max_connections = max_connections});
    if (!started.ok()) {
      std::fprintf(stderr, "spillway_pg_bench: starting PostgreSQL: %s\n",
                   started.status().ToString().c_str());
      return 1;
    }
    server = std::move(*started);
    conninfo = server->ConnectionString();
    std::fprintf(stderr, "PostgreSQL listening on 127.0.0.1:%d\n",
                 server->port());
  }
  // Every statement of the clients is bounded (libpq reads PGOPTIONS when
  // the connection string has no `options`).
  const bool own_pgoptions = std::getenv("PGOPTIONS") == nullptr;
  if (own_pgoptions) {
    setenv("PGOPTIONS",
           absl::StrCat("-c statement_timeout=", kStatementTimeout).c_str(), 1);
  }

  absl::StatusOr<ServerFacts> facts =
      PrepareDatabase(conninfo, config.hot_rows);
  if (!facts.ok()) {
    std::fprintf(stderr, "spillway_pg_bench: %s\n",
                 facts.status().ToString().c_str());
    return 1;
  }
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  Print(absl::StrFormat(
      "# spillway_pg_bench\n\n"
      "Server: PostgreSQL %s at %s (%s), **fsync=%s, synchronous_commit=%s** "
      "(durable commits: every COMMIT waits for its WAL flush), "
      "max_connections %d.\n"
      "Machine: %u cores, shared by the server and this program's client "
      "threads.\n"
      "Workload: one transaction per write: UPDATE one of %d hot rows "
      "(uniform), INSERT one row into an append-only table, COMMIT "
      "(prepared statements). One connection per client thread, closed "
      "loop. Seed %d.\n"
      "Measurement: ramp steps %.1f s warm-up + %.1f s measured; peak and "
      "overload phases %.1f s warm-up + %.1f s measured. Writes ending in a "
      "warm-up are not counted. Latency: committed writes only (throttled: "
      "admitted writes, Admit included). A refused throttled client backs "
      "off exponentially with jitter: after its k-th refusal in a row it "
      "waits w = min(%g ms, max(retry_after, %g ms x 2^(k-1))), drawn from "
      "[w/2, w], and tries again. Statement "
      "timeout %s%s. The hot rows are VACUUMed before each phase.\n"
      "Throttle: one WriteThrottle per throttled phase, shared by all its "
      "clients, default options; its limit is MakeDefaultLimit()'s "
      "composition (KneeLimit in a WindowedLimit with "
      "DefaultKneeWindowOptions()) built explicitly with a "
      "pass-through that records each window's RTT, the baseline and the "
      "latency band for this report; %s. It starts cold (limit 1) at the "
      "phase start.\n"
      "CPU busy %%: all cores, from /proc/stat; bench CPU %%: this process "
      "(the clients, and the throttle), as a share of all cores.\n\n",
      facts->version, facts->address,
      server != nullptr ? "started by this program" : "existing, --conn",
      facts->fsync, facts->synchronous_commit, facts->max_connections, cores,
      config.hot_rows, config.seed, config.ramp_warmup_seconds,
      config.ramp_seconds, config.run_warmup_seconds, config.run_seconds,
      config.max_backoff_ms, config.min_backoff_ms,
      own_pgoptions ? kStatementTimeout : "from PGOPTIONS",
      own_pgoptions ? " (safety bound)" : "",
      config.database_rate
          ? "given the server's write count (a WriteRateMonitor on "
            "pqxx::TransactionCounter, --database_rate), so its throughput "
            "probe may widen the latency band"
          : "without the server's write count (--nodatabase_rate): the 2x "
            "latency band alone"));
  if (facts->fsync != "on" || facts->synchronous_commit == "off") {
    Print(
        "**Warning: fsync or synchronous_commit is off on this server; "
        "these are not durable-commit figures.**\n\n");
  }

  int phase_index = 0;
  auto run_phase = [&](PhaseSpec spec) {
    PhaseResult r = RunPhase(config, conninfo, spec, phase_index++);
    Progress(r);
    return r;
  };
  auto finish = [&](int code) {
    if (server == nullptr) DropTables(conninfo);
    return code;
  };

  // Ramp: 1, 2, 4, ... then finer around the best step, then the three
  // best steps once more (a 2 s step is noisy; the peak is the best mean).
  std::fprintf(stderr, "ramp\n");
  std::map<int, std::vector<PhaseResult>> ramp;
  auto ramp_step = [&](int clients) -> bool {
    PhaseResult r =
        run_phase({.name = ramp.count(clients) > 0 ? "ramp again" : "ramp",
                   .clients = clients,
                   .mode = Mode::kUnthrottled,
                   .warmup_s = config.ramp_warmup_seconds,
                   .measure_s = config.ramp_seconds});
    const bool ok = r.error.empty() && !r.interrupted;
    if (!r.error.empty()) {
      std::fprintf(stderr, "spillway_pg_bench: ramp at %d clients: %s\n",
                   clients, r.error.c_str());
    }
    ramp[clients].push_back(std::move(r));
    return ok;
  };
  auto mean_of = [&](int clients, double PhaseResult::*field) {
    double sum = 0;
    for (const PhaseResult& r : ramp.at(clients)) sum += r.*field;
    return sum / ramp.at(clients).size();
  };
  // Steps by mean tps, best first (ties: fewer clients first).
  auto ranked = [&] {
    std::vector<int> steps;
    for (const auto& [clients, results] : ramp) steps.push_back(clients);
    std::stable_sort(steps.begin(), steps.end(), [&](int a, int b) {
      return mean_of(a, &PhaseResult::tps) > mean_of(b, &PhaseResult::tps);
    });
    return steps;
  };
  int below = 0;
  for (int clients = 1;; clients *= 2) {
    clients = std::min(clients, config.max_ramp_clients);
    if (!ramp_step(clients)) return finish(g_interrupted.load() ? 130 : 1);
    const double best_tps = mean_of(ranked().front(), &PhaseResult::tps);
    // Two steps in a row under 75% of the best: past the knee for good.
    below = ramp.at(clients).back().tps < 0.75 * best_tps ? below + 1 : 0;
    if (below == 2 || clients == config.max_ramp_clients) break;
  }
  {
    const int best = ranked().front();
    for (int clients : {best * 3 / 4, best * 3 / 2}) {
      if (clients < 1 || clients > config.max_ramp_clients ||
          ramp.count(clients) > 0) {
        continue;
      }
      if (!ramp_step(clients)) return finish(g_interrupted.load() ? 130 : 1);
    }
  }
  {
    std::vector<int> top = ranked();
    top.resize(std::min<size_t>(top.size(), 3));
    for (int clients : top) {
      if (!ramp_step(clients)) return finish(g_interrupted.load() ? 130 : 1);
    }
  }
  const int peak_clients = ranked().front();
  const double ramp_peak_tps = mean_of(peak_clients, &PhaseResult::tps);
  const double ramp_peak_p99 = mean_of(peak_clients, &PhaseResult::p99_ms);

  std::string out = "## Ramp (unthrottled)\n\n";
  absl::StrAppend(&out, kTableHeader);
  for (const auto& [clients, results] : ramp) {
    for (const PhaseResult& r : results) {
      absl::StrAppend(&out, TableRow(r, ramp_peak_tps));
    }
  }
  absl::StrAppendFormat(
      &out,
      "\nPeak of the ramp: %d clients (mean of its %d measurements: %.0f "
      "tps, p99 %s ms); %% of peak here = of that mean.%s\n\n",
      peak_clients, static_cast<int>(ramp.at(peak_clients).size()),
      ramp_peak_tps, Ms(ramp_peak_p99),
      peak_clients == config.max_ramp_clients
          ? " **The best step is the largest: raise --max_ramp_clients.**"
          : "");
  Print(out);

  const int needed = 16 * peak_clients + 3;
  if (needed > facts->max_connections) {
    std::fprintf(stderr,
                 "spillway_pg_bench: 16 x %d clients need about %d "
                 "connections; the server allows %d\n",
                 peak_clients, needed, facts->max_connections);
    return finish(1);
  }

  // The peak, measured as long as the overload phases, before them and
  // again after them (see the file comment).
  std::fprintf(stderr, "runs\n");
  std::vector<PhaseResult> runs;
  runs.push_back(run_phase({.name = "peak",
                            .clients = peak_clients,
                            .mode = Mode::kUnthrottled,
                            .warmup_s = config.run_warmup_seconds,
                            .measure_s = config.run_seconds}));
  // 4x unthrottled and throttled, 16x unthrottled, then the 16x throttled
  // phase (with --diagnose, it and the two diagnostic phases in rotated
  // order), all before the second peak phase.
  std::vector<PhaseSpec> specs;
  for (int multiple : {4, 16}) {
    for (Mode mode : {Mode::kUnthrottled, Mode::kThrottled}) {
      specs.push_back({.name = absl::StrCat(multiple, "x"),
                       .clients = multiple * peak_clients,
                       .mode = mode,
                       .warmup_s = config.run_warmup_seconds,
                       .measure_s = config.run_seconds});
    }
  }
  if (config.diagnose) {
    PhaseSpec fixed = specs.back();
    fixed.fixed_limit = peak_clients;
    PhaseSpec tolerant = specs.back();
    tolerant.knee_tolerance = config.diagnose_tolerance;
    specs.push_back(fixed);
    specs.push_back(tolerant);
    const auto first = specs.end() - 3;
    std::rotate(first, first + config.diagnose_rotation % 3, specs.end());
  }
  for (const PhaseSpec& spec : specs) {
    if (g_interrupted.load()) break;
    runs.push_back(run_phase(spec));
  }
  if (!g_interrupted.load()) {
    runs.push_back(run_phase({.name = "peak again",
                              .clients = peak_clients,
                              .mode = Mode::kUnthrottled,
                              .warmup_s = config.run_warmup_seconds,
                              .measure_s = config.run_seconds}));
  }
  if (g_interrupted.load()) {
    std::fprintf(stderr, "spillway_pg_bench: interrupted\n");
    return finish(130);
  }
  for (const PhaseResult& r : runs) {
    if (!r.error.empty()) {
      std::fprintf(stderr, "spillway_pg_bench: %s %s: %s\n",
                   r.spec.name.c_str(), ModeText(r.spec).c_str(),
                   r.error.c_str());
      return finish(1);
    }
  }
  // The measured phases by what they are (the diagnostic phases may sit
  // between them).
  const auto find = [&](absl::string_view name,
                        Mode mode) -> const PhaseResult& {
    for (const PhaseResult& r : runs) {
      if (r.spec.name == name && r.spec.mode == mode &&
          r.spec.fixed_limit == 0 && r.spec.knee_tolerance == 0) {
        return r;
      }
    }
    return runs.front();  // Unreachable: every phase ran.
  };
  const PhaseResult& peak_before = runs.front();
  const PhaseResult& x4_unthrottled = find("4x", Mode::kUnthrottled);
  const PhaseResult& x4_throttled = find("4x", Mode::kThrottled);
  const PhaseResult& x16_unthrottled = find("16x", Mode::kUnthrottled);
  const PhaseResult& x16_throttled = find("16x", Mode::kThrottled);
  const PhaseResult& peak_after = runs.back();
  // The reference: the mean of the peak phases before and after the
  // overload phases (see the file comment).
  const double peak_tps = (peak_before.tps + peak_after.tps) / 2;
  const double peak_p50 = (peak_before.p50_ms + peak_after.p50_ms) / 2;
  const double peak_p99 = (peak_before.p99_ms + peak_after.p99_ms) / 2;
  const double drift_pct = 100.0 * (peak_after.tps / peak_before.tps - 1);

  out = absl::StrFormat(
      "## Peak and overload (%.1f s measured each; %% of peak = of the mean "
      "of the two peak phases, %.0f tps)\n\n",
      config.run_seconds, peak_tps);
  absl::StrAppend(&out, kTableHeader);
  for (const PhaseResult& r : runs)
    absl::StrAppend(&out, TableRow(r, peak_tps));
  absl::StrAppend(&out,
                  "\nWhere the server's client backends are (mean count per "
                  "250 ms sample of pg_stat_activity; CPU = active without a "
                  "wait event), and the drain after each phase (until "
                  "every client finished its last write; the slowest of "
                  "those writes is not in the latency figures):\n\n"
                  "| phase | mode | clients | backends | drain s | slowest "
                  "last write ms |\n|---|---|---:|---|---:|---:|\n");
  for (const PhaseResult& r : runs) {
    absl::StrAppendFormat(&out, "| %s | %s | %d | %s | %.2f | %s |\n",
                          r.spec.name, ModeText(r.spec), r.spec.clients,
                          WaitsText(r), r.drain_s, Ms(r.late_max_ms));
  }
  absl::StrAppend(&out, "\n");
  for (const PhaseResult& r : runs) {
    if (r.spec.mode != Mode::kThrottled || r.spec.fixed_limit > 0) continue;
    absl::StrAppend(&out, "### Throttle limit over time, ", r.spec.name, " ",
                    ModeText(r.spec), "\n\n", LimitTable(r), "\n");
  }

  const double tps_pct = 100.0 * x16_throttled.tps / peak_tps;
  const double p99_ratio = x16_throttled.p99_ms / peak_p99;
  const double tps_pct_before = 100.0 * x16_throttled.tps / peak_before.tps;
  const double p99_ratio_before = x16_throttled.p99_ms / peak_before.p99_ms;
  const double tps_pct_ramp = 100.0 * x16_throttled.tps / ramp_peak_tps;
  const double p99_ratio_ramp = x16_throttled.p99_ms / ramp_peak_p99;
  const bool tps_met = tps_pct >= 90.0;
  const bool p99_met = p99_ratio <= 3.0;
  const bool met = tps_met && p99_met;
  auto limit_text = [](const PhaseResult& r) {
    const double median = MedianMeasuredLimit(r);
    return std::isnan(median) ? std::string("-")
                              : absl::StrFormat("%.0f", median);
  };
  absl::StrAppendFormat(
      &out,
      "## Acceptance (16x = %d clients)\n\n"
      "| | peak (%d clients) | 16x unthrottled | 16x throttled | throttled "
      "vs peak | target | met |\n|---|---:|---:|---:|---:|---|---|\n"
      "| tps | %.0f | %.0f | %.0f | %.1f%% | >= 90%% | %s |\n"
      "| p99 ms | %s | %s | %s | %.2fx | <= 3x | %s |\n\n"
      "Peak = mean of the peak phase before the overload phases (%.0f tps, "
      "p99 %s ms) and the one after them (%.0f tps, p99 %s ms): %+.1f%% "
      "over the run. Against the first alone: throughput %.1f%%, p99 "
      "%.2fx.\n"
      "Against the ramp's peak (mean of its %.1f s steps: %.0f tps, p99 %s "
      "ms): throughput %.1f%%, p99 %.2fx.\n"
      "Median limit while measured: 4x %s, 16x %s (peak concurrency %d).\n\n"
      "**Acceptance %s** (against the mean of the two peak phases).\n\n",
      x16_throttled.spec.clients, peak_clients, peak_tps, x16_unthrottled.tps,
      x16_throttled.tps, tps_pct, tps_met ? "yes" : "**no**", Ms(peak_p99),
      Ms(x16_unthrottled.p99_ms), Ms(x16_throttled.p99_ms), p99_ratio,
      p99_met ? "yes" : "**no**", peak_before.tps, Ms(peak_before.p99_ms),
      peak_after.tps, Ms(peak_after.p99_ms), drift_pct, tps_pct_before,
      p99_ratio_before, config.ramp_seconds, ramp_peak_tps, Ms(ramp_peak_p99),
      tps_pct_ramp, p99_ratio_ramp, limit_text(x4_throttled),
      limit_text(x16_throttled), peak_clients, met ? "met" : "NOT met");
  // The peak must be the best an unthrottled phase did; if not, the ramp
  // was misled (noise, or another load on the machine).
  for (const PhaseResult& r : runs) {
    if (r.spec.mode == Mode::kUnthrottled && r.spec.clients != peak_clients &&
        r.tps > 1.05 * peak_tps) {
      absl::StrAppendFormat(
          &out,
          "**Warning: %s unthrottled (%d clients) did %.0f tps, more than the "
          "peak phases' mean %.0f: the ramp did not find the peak reliably "
          "(was the machine busy?). Rerun on a quiet machine.**\n\n",
          r.spec.name, r.spec.clients, r.tps, peak_tps);
    }
  }
  Print(out);

  if (server == nullptr) DropTables(conninfo);
  const bool started_server = server != nullptr;
  server.reset();  // Stopped before the wall-clock figure is taken.
  const double wall = Seconds(SteadyClock::now() - program_start);
  Print(absl::StrFormat(
      "Wall clock: %.1f s (server start and stop included).\n", wall));

  if (!config.json.empty()) {
    std::vector<std::string> ramp_json, run_json;
    for (const auto& [clients, results] : ramp) {
      for (const PhaseResult& r : results) ramp_json.push_back(PhaseJson(r));
    }
    for (const PhaseResult& r : runs) run_json.push_back(PhaseJson(r));
    const std::string json = absl::StrCat(
        "{\n  \"server_version\": ", JsonString(facts->version),
        ",\n  \"server\": ",
        JsonString(started_server ? "started" : "existing"),
        ",\n  \"fsync\": ", JsonString(facts->fsync),
        ",\n  \"synchronous_commit\": ", JsonString(facts->synchronous_commit),
        ",\n  \"cores\": ", cores, ",\n  \"hot_rows\": ", config.hot_rows,
        ",\n  \"seed\": ", config.seed,
        ",\n  \"ramp_seconds\": ", JsonNumber(config.ramp_seconds),
        ",\n  \"run_seconds\": ", JsonNumber(config.run_seconds),
        ",\n  \"warmup_seconds\": ", JsonNumber(config.run_warmup_seconds),
        ",\n  \"min_backoff_ms\": ", JsonNumber(config.min_backoff_ms),
        ",\n  \"max_backoff_ms\": ", JsonNumber(config.max_backoff_ms),
        ",\n  \"database_rate\": ", config.database_rate ? "true" : "false",
        ",\n  \"peak_concurrency\": ", peak_clients,
        ",\n  \"peak_tps\": ", JsonNumber(peak_tps),
        ",\n  \"peak_p50_ms\": ", JsonNumber(peak_p50),
        ",\n  \"peak_p99_ms\": ", JsonNumber(peak_p99),
        ",\n  \"peak_before_tps\": ", JsonNumber(peak_before.tps),
        ",\n  \"peak_before_p99_ms\": ", JsonNumber(peak_before.p99_ms),
        ",\n  \"peak_after_tps\": ", JsonNumber(peak_after.tps),
        ",\n  \"peak_after_p99_ms\": ", JsonNumber(peak_after.p99_ms),
        ",\n  \"ramp_peak_tps\": ", JsonNumber(ramp_peak_tps),
        ",\n  \"ramp_peak_p99_ms\": ", JsonNumber(ramp_peak_p99),
        ",\n  \"clients_16x\": ", x16_throttled.spec.clients,
        ",\n  \"unthrottled_tps\": ", JsonNumber(x16_unthrottled.tps),
        ",\n  \"unthrottled_p99_ms\": ", JsonNumber(x16_unthrottled.p99_ms),
        ",\n  \"throttled_tps\": ", JsonNumber(x16_throttled.tps),
        ",\n  \"throttled_p99_ms\": ", JsonNumber(x16_throttled.p99_ms),
        ",\n  \"throttled_rejected\": ", x16_throttled.rejected,
        ",\n  \"x4_unthrottled_tps\": ", JsonNumber(x4_unthrottled.tps),
        ",\n  \"x4_unthrottled_p99_ms\": ", JsonNumber(x4_unthrottled.p99_ms),
        ",\n  \"x4_throttled_tps\": ", JsonNumber(x4_throttled.tps),
        ",\n  \"x4_throttled_p99_ms\": ", JsonNumber(x4_throttled.p99_ms),
        ",\n  \"throttled_tps_pct_of_peak\": ", JsonNumber(tps_pct),
        ",\n  \"throttled_p99_over_peak_p99\": ", JsonNumber(p99_ratio),
        ",\n  \"throttled_tps_pct_of_peak_before\": ",
        JsonNumber(tps_pct_before),
        ",\n  \"acceptance_met\": ", met ? "true" : "false",
        ",\n  \"wall_seconds\": ", JsonNumber(wall), ",\n  \"ramp\": [\n    ",
        absl::StrJoin(ramp_json, ",\n    "), "\n  ],\n  \"runs\": [\n    ",
        absl::StrJoin(run_json, ",\n    "), "\n  ]\n}\n");
    std::ofstream file(config.json, std::ios::binary | std::ios::trunc);
    file << json;
    file.close();
    if (!file) {
      std::fprintf(stderr, "spillway_pg_bench: cannot write %s\n",
                   config.json.c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace spillway::pg_bench

int main(int argc, char** argv) {
  const auto program_start = std::chrono::steady_clock::now();
  absl::SetProgramUsageMessage(
      "Write overload against a real PostgreSQL on loopback (fsync on): "
      "ramps to the concurrency of peak throughput, then runs 4x and 16x "
      "that many clients unthrottled and through spillway's "
      "ThrottledWriter. See bench/pg_overload/main.cc.");
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    std::fprintf(stderr,
                 "spillway_pg_bench: unexpected argument '%s' (flags are "
                 "--name=value; see --help)\n",
                 positional[1]);
    return 2;
  }
  absl::StatusOr<spillway::pg_bench::Config> config =
      spillway::pg_bench::ConfigFromFlags();
  if (!config.ok()) {
    std::fprintf(stderr, "spillway_pg_bench: %s\n",
                 std::string(config.status().message()).c_str());
    return 2;
  }
  spillway::pg_bench::InstallSignalHandlers();
  std::set_terminate(spillway::pg_bench::OnTerminate);
  try {
    return spillway::pg_bench::Run(*config, program_start);
  } catch (const std::exception& e) {
    // Run's locals, the server among them, are already destroyed here.
    std::fprintf(stderr, "spillway_pg_bench: %s\n", e.what());
    return 1;
  }
}
