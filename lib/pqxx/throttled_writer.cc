#include "spillway/pqxx/throttled_writer.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <pqxx/connection>
#include <pqxx/except>
#include <pqxx/nontransaction>
#include <pqxx/transaction>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "pqxx/begin_work.h"

namespace spillway::internal {

bool BeginWork(::pqxx::connection& connection,
               std::optional<::pqxx::work>* tx) {
  try {
    tx->emplace(connection);
    return false;
  } catch (const ::pqxx::sql_error& e) {
    if (e.sqlstate() != "25P02") throw;
  }
  {
    ::pqxx::nontransaction end(connection);
    end.exec("ROLLBACK");
  }
  tx->emplace(connection);
  return true;
}

}  // namespace spillway::internal

namespace spillway::pqxx {
namespace {

// Payload of a status Write returns: the five-character SQLSTATE.
constexpr char kSqlStateUrl[] = "type.spillway.dev/spillway.pqxx.SqlState";
constexpr int kMaxRetries = 10;
// Replaces secrets in messages.
constexpr char kRedacted[] = "<redacted>";

// The SQLSTATE of a libpqxx exception, if known. libpqxx 7 gives it for
// every sql_error (transaction_rollback and its subclasses included).
// libpqxx 6 throws some classes without one: transaction_rollback and its
// subclasses derive from `failure`, not `sql_error`, and 53300 is
// `too_many_connections`, a `broken_connection`; their state follows from
// the type. A refused connection attempt is a plain `broken_connection` in
// both, recognised by the server's (English) message.
std::optional<std::string> SqlStateOf(const std::exception& e) {
  if (const auto* sql = dynamic_cast<const ::pqxx::sql_error*>(&e)) {
    if (!sql->sqlstate().empty()) return sql->sqlstate();
  }
  if (dynamic_cast<const ::pqxx::serialization_failure*>(&e) != nullptr) {
    return "40001";
  }
  if (dynamic_cast<const ::pqxx::deadlock_detected*>(&e) != nullptr) {
    return "40P01";
  }
  if (dynamic_cast<const ::pqxx::statement_completion_unknown*>(&e) !=
      nullptr) {
    return "40003";
  }
  if (dynamic_cast<const ::pqxx::transaction_rollback*>(&e) != nullptr) {
    return "40000";
  }
  if (dynamic_cast<const ::pqxx::too_many_connections*>(&e) != nullptr) {
    return "53300";
  }
  if (dynamic_cast<const ::pqxx::broken_connection*>(&e) != nullptr) {
    const absl::string_view what = e.what();
    if (absl::StrContains(what, "too many clients already") ||
        absl::StrContains(what, "remaining connection slots are reserved")) {
      return "53300";
    }
  }
  return std::nullopt;
}

// SQLSTATEs that say the database is congested.
bool IsCongestion(absl::string_view state) {
  return state == "57014" || absl::StartsWith(state, "53") ||
         state == "55P03" || state == "40001" || state == "40P01";
}

bool IsConnectionLoss(const std::exception& e) {
  return dynamic_cast<const ::pqxx::broken_connection*>(&e) != nullptr ||
         dynamic_cast<const ::pqxx::in_doubt_error*>(&e) != nullptr;
}

absl::StatusCode CodeFor(const std::exception& e,
                         const std::optional<std::string>& state) {
  if (state.has_value()) {
    const absl::string_view s = *state;
    if (s == "57014") return absl::StatusCode::kDeadlineExceeded;
    if (s == "55P03" || s == "40001" || s == "40P01") {
      return absl::StatusCode::kAborted;
    }
    if (absl::StartsWith(s, "53") || absl::StartsWith(s, "08")) {
      return absl::StatusCode::kUnavailable;
    }
    if (absl::StartsWith(s, "23")) return absl::StatusCode::kFailedPrecondition;
    if (absl::StartsWith(s, "42")) return absl::StatusCode::kInvalidArgument;
  }
  if (IsConnectionLoss(e)) return absl::StatusCode::kUnavailable;
  return absl::StatusCode::kInternal;
}

void SetSqlState(absl::Status& status,
                 const std::optional<std::string>& state) {
  if (state.has_value()) status.SetPayload(kSqlStateUrl, absl::Cord(*state));
}

// What a connection string says about the server, and the secrets it holds.
struct ConnectionInfo {
  std::string server;                // "host=... port=... dbname=...".
  std::vector<std::string> secrets;  // Passwords, to keep out of messages.
};

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX-decoding, for passwords in URIs.
std::string PercentDecode(absl::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && HexDigit(in[i + 1]) >= 0 &&
        HexDigit(in[i + 2]) >= 0) {
      out.push_back(
          static_cast<char>(HexDigit(in[i + 1]) * 16 + HexDigit(in[i + 2])));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

bool IsServerKey(absl::string_view key) {
  return key == "host" || key == "hostaddr" || key == "port" || key == "dbname";
}
bool IsSecretKey(absl::string_view key) {
  return key == "password" || key == "sslpassword";
}

// A URI: postgresql://[user[:password]@][hosts][/dbname][?key=value&...].
ConnectionInfo ParseUri(absl::string_view uri, size_t scheme_end) {
  ConnectionInfo info;
  absl::string_view rest = uri.substr(scheme_end);
  const size_t authority_end = rest.find_first_of("/?");
  absl::string_view authority = rest.substr(0, authority_end);
  absl::string_view tail = authority_end == absl::string_view::npos
                               ? absl::string_view()
                               : rest.substr(authority_end);
  if (const size_t at = authority.rfind('@'); at != absl::string_view::npos) {
    const absl::string_view userinfo = authority.substr(0, at);
    if (const size_t colon = userinfo.find(':');
        colon != absl::string_view::npos) {
      const absl::string_view password = userinfo.substr(colon + 1);
      info.secrets.emplace_back(password);
      info.secrets.push_back(PercentDecode(password));
    }
    authority = authority.substr(at + 1);
  }
  std::string server = absl::StrCat(uri.substr(0, scheme_end), authority);
  const size_t query_start = tail.find('?');
  if (absl::StartsWith(tail, "/")) {
    absl::StrAppend(&server, tail.substr(0, query_start));
  }
  if (query_start != absl::string_view::npos) {
    for (absl::string_view pair :
         absl::StrSplit(tail.substr(query_start + 1), '&')) {
      const std::pair<absl::string_view, absl::string_view> kv =
          absl::StrSplit(pair, absl::MaxSplits('=', 1));
      if (IsSecretKey(kv.first)) {
        info.secrets.emplace_back(kv.second);
        info.secrets.push_back(PercentDecode(kv.second));
      } else if (IsServerKey(kv.first)) {
        absl::StrAppend(&server, " ", kv.first, "=", kv.second);
      }
    }
  }
  info.server = std::move(server);
  return info;
}

// keyword = value pairs, values optionally single-quoted, backslash escapes
// (libpq's rules). Stops at the first malformed pair: libpq refuses the
// string then, naming keywords only.
ConnectionInfo ParseKeywords(absl::string_view s) {
  ConnectionInfo info;
  std::vector<std::string> server;
  size_t i = 0;
  auto skip_space = [&] {
    while (i < s.size() &&
           absl::ascii_isspace(static_cast<unsigned char>(s[i]))) {
      ++i;
    }
  };
  while (true) {
    skip_space();
    if (i >= s.size()) break;
    const size_t key_start = i;
    while (i < s.size() && s[i] != '=' &&
           !absl::ascii_isspace(static_cast<unsigned char>(s[i]))) {
      ++i;
    }
    const absl::string_view key = s.substr(key_start, i - key_start);
    skip_space();
    if (i >= s.size() || s[i] != '=') break;
    ++i;
    skip_space();
    std::string value;
    if (i < s.size() && s[i] == '\'') {
      ++i;
      while (i < s.size() && s[i] != '\'') {
        if (s[i] == '\\' && i + 1 < s.size()) ++i;
        value.push_back(s[i++]);
      }
      ++i;  // The closing quote.
    } else {
      while (i < s.size() &&
             !absl::ascii_isspace(static_cast<unsigned char>(s[i]))) {
        if (s[i] == '\\' && i + 1 < s.size()) ++i;
        value.push_back(s[i++]);
      }
    }
    if (IsSecretKey(key)) {
      info.secrets.push_back(std::move(value));
    } else if (IsServerKey(key)) {
      server.push_back(absl::StrCat(key, "=", value));
    }
  }
  info.server = server.empty()
                    ? "the libpq defaults (PGHOST, PGPORT, PGDATABASE)"
                    : absl::StrJoin(server, " ");
  return info;
}

ConnectionInfo ParseConnectionString(absl::string_view s) {
  for (absl::string_view scheme : {"postgresql://", "postgres://"}) {
    if (absl::StartsWith(s, scheme)) return ParseUri(s, scheme.size());
  }
  return ParseKeywords(s);
}

// `message` with every secret replaced.
std::string Scrub(absl::string_view message,
                  const std::vector<std::string>& secrets) {
  std::string out(message);
  for (const std::string& secret : secrets) {
    if (!secret.empty()) absl::StrReplaceAll({{secret, kRedacted}}, &out);
  }
  return out;
}

// "<doing>PostgreSQL at <server>: <libpq's message>", secrets redacted.
std::string AtServer(absl::string_view doing, const ConnectionInfo& info,
                     const std::exception& e) {
  return absl::StrCat(
      doing, "PostgreSQL at ", info.server, ": ",
      absl::StripTrailingAsciiWhitespace(Scrub(e.what(), info.secrets)));
}

// Connects, or returns Unavailable naming the server (and carrying 53300
// when the server had no connection slot left).
absl::StatusOr<std::unique_ptr<::pqxx::connection>> Connect(
    const std::string& connection_string, const ConnectionInfo& info) {
  try {
    return std::make_unique<::pqxx::connection>(connection_string);
  } catch (const std::exception& e) {
    absl::Status status =
        absl::UnavailableError(AtServer("cannot connect to ", info, e));
    SetSqlState(status, SqlStateOf(e));
    return status;
  }
}

// Whole milliseconds left until `deadline` from `now`, rounded up, at
// least 1 (0 would disable the timeout).
int64_t TimeoutMillis(MonotonicTime now, MonotonicTime deadline) {
  const int64_t ms =
      std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
  return std::clamp<int64_t>(ms, 1, std::numeric_limits<int32_t>::max());
}

}  // namespace

WriteClass Classify(const std::exception& e) {
  if (std::optional<std::string> state = SqlStateOf(e);
      state.has_value() && IsCongestion(*state)) {
    return WriteClass::kDropped;
  }
  if (IsConnectionLoss(e)) return WriteClass::kDropped;
  return WriteClass::kIgnore;
}

std::optional<std::string> SqlState(const absl::Status& status) {
  auto payload = status.GetPayload(kSqlStateUrl);
  if (!payload.has_value()) return std::nullopt;
  return std::string(*payload);
}

absl::Status ValidateThrottledWriterOptions(
    const ThrottledWriterOptions& options) {
  if (options.throttle == nullptr) {
    return absl::InvalidArgumentError(
        "ThrottledWriterOptions.throttle must not be null; got null");
  }
  if (options.max_retries < 0 || options.max_retries > kMaxRetries) {
    return absl::InvalidArgumentError(
        absl::StrCat("ThrottledWriterOptions.max_retries must be in [0, ",
                     kMaxRetries, "]; got ", options.max_retries));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ThrottledWriter>> ThrottledWriter::Create(
    const ThrottledWriterOptions& options) {
  if (absl::Status s = ValidateThrottledWriterOptions(options); !s.ok()) {
    return s;
  }
  const ConnectionInfo info = ParseConnectionString(options.connection_string);
  absl::StatusOr<std::unique_ptr<::pqxx::connection>> connection =
      Connect(options.connection_string, info);
  if (!connection.ok()) return connection.status();
  return std::unique_ptr<ThrottledWriter>(
      new ThrottledWriter(options, *std::move(connection)));
}

ThrottledWriter::ThrottledWriter(const ThrottledWriterOptions& options,
                                 std::unique_ptr<::pqxx::connection> connection)
    : options_(options),
      connection_(std::move(connection)),
      connections_made_(1) {}

ThrottledWriter::~ThrottledWriter() = default;

absl::Status ThrottledWriter::Write(absl::FunctionRef<void(::pqxx::work&)> body,
                                    const WriteRequest& request) {
  for (int attempt = 0;; ++attempt) {
    // The writer's own retries are retries of the caller's attempt: not new
    // demand for the overload cause (WriteRequest::attempt).
    WriteRequest this_attempt = request;
    this_attempt.attempt = std::max(1, request.attempt) + attempt;
    ThrottleAdmission admission = options_.throttle->Admit(this_attempt);
    if (!admission.ok()) return RejectionStatus(admission.rejection());
    ThrottlePermit permit = std::move(admission).permit();

    if (connection_ == nullptr) {
      // libpqxx does not reconnect by itself (6 may, silently, on the next
      // transaction; we replace the connection instead, so a broken one is
      // never reused).
      absl::StatusOr<std::unique_ptr<::pqxx::connection>> connection =
          Connect(options_.connection_string,
                  ParseConnectionString(options_.connection_string));
      if (!connection.ok()) {
        permit.Dropped();
        return connection.status();
      }
      connection_ = *std::move(connection);
      ++connections_made_;
    }

    Attempt result = RunOnce(body, permit);
    switch (result.write_class) {
      case WriteClass::kSuccess:
        permit.Success();
        break;
      case WriteClass::kDropped:
        permit.Dropped();
        break;
      case WriteClass::kIgnore:
        permit.Ignore();
        break;
    }
    if (result.status.ok() || !result.retryable ||
        attempt >= options_.max_retries) {
      return result.status;
    }
  }
}

ThrottledWriter::Attempt ThrottledWriter::RunOnce(
    absl::FunctionRef<void(::pqxx::work&)> body, const ThrottlePermit& permit) {
  Attempt result;
  bool lost = false;
  try {
    // A session an earlier cancel left in a failed transaction is ended
    // here rather than failing this write and every later one (see
    // pqxx/begin_work.h).
    std::optional<::pqxx::work> work;
    if (internal::BeginWork(*connection_, &work)) ++failed_sessions_ended_;
    ::pqxx::work& tx = *work;
    if (options_.statement_timeout_from_deadline &&
        permit.deadline().has_value()) {
      // An integer we computed; no caller data is formatted into SQL.
      tx.exec(absl::StrCat("SET LOCAL statement_timeout = ",
                           TimeoutMillis(permit.start(), *permit.deadline())));
    }
    body(tx);
    tx.commit();
    return result;
  } catch (const std::exception& e) {
    const std::optional<std::string> state = SqlStateOf(e);
    // A connection that is gone is a broken connection whatever the
    // exception says: libpqxx 7.0 to 7.3 report a backend lost mid-statement
    // as a plain `failure` ("Could not obtain client encoding.").
    lost = IsConnectionLoss(e) || !connection_->is_open();
    result.write_class = lost ? WriteClass::kDropped : Classify(e);
    absl::StatusCode code = CodeFor(e, state);
    if (lost && code == absl::StatusCode::kInternal) {
      code = absl::StatusCode::kUnavailable;
    }
    result.status = absl::Status(code, e.what());
    SetSqlState(result.status, state);
    result.retryable = state == "40001" || state == "40P01";
  } catch (...) {
    result.write_class = WriteClass::kIgnore;
    result.status = absl::InternalError(
        "the write's body threw an exception that is not a std::exception");
  }
  // Replaced at the next Write.
  if (lost || !connection_->is_open()) connection_.reset();
  return result;
}

TransactionCounter::TransactionCounter(std::string connection_string)
    : connection_string_(std::move(connection_string)) {}

absl::StatusOr<std::unique_ptr<TransactionCounter>> TransactionCounter::Create(
    const std::string& connection_string) {
  std::unique_ptr<TransactionCounter> counter(
      new TransactionCounter(connection_string));
  if (absl::Status s = counter->Connect(); !s.ok()) return s;
  return counter;
}

absl::Status TransactionCounter::Connect() {
  const ConnectionInfo info = ParseConnectionString(connection_string_);
  absl::StatusOr<std::unique_ptr<::pqxx::connection>> connection =
      spillway::pqxx::Connect(connection_string_, info);
  if (!connection.ok()) return connection.status();
  try {
    ::pqxx::nontransaction tx(**connection);
    tx.exec("SET statement_timeout = 1000");
  } catch (const std::exception& e) {
    return absl::UnavailableError(AtServer("", info, e));
  }
  connection_ = *std::move(connection);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> TransactionCounter::Read() {
  if (connection_ == nullptr) {
    if (absl::Status s = Connect(); !s.ok()) return s;
  }
  std::string text;
  try {
    ::pqxx::nontransaction tx(*connection_);
    const ::pqxx::row row =
        tx.exec1("SELECT txid_snapshot_xmax(txid_current_snapshot())");
    if (row[0].is_null()) {
      return absl::DataLossError(
          "PostgreSQL returned NULL for txid_snapshot_xmax");
    }
    text = row[0].c_str();
  } catch (const std::exception& e) {
    connection_.reset();  // Replaced on the next Read.
    return absl::UnavailableError(
        AtServer("reading the transaction count of ",
                 ParseConnectionString(connection_string_), e));
  }
  int64_t count = 0;
  if (!absl::SimpleAtoi(text, &count) || count < 0) {
    return absl::DataLossError(absl::StrCat(
        "PostgreSQL returned '", text,
        "' for txid_snapshot_xmax, which is not a transaction count"));
  }
  return count;
}

absl::StatusOr<std::unique_ptr<WriteRateMonitor>> MonitorWriteRate(
    const std::string& connection_string, WriteRateMonitorOptions options) {
  if (options.read_count) {
    return absl::InvalidArgumentError(
        "MonitorWriteRate: WriteRateMonitorOptions.read_count must be empty "
        "(it reads the TransactionCounter); got a function");
  }
  absl::StatusOr<std::unique_ptr<TransactionCounter>> counter =
      TransactionCounter::Create(connection_string);
  if (!counter.ok()) return counter.status();
  options.read_count = [c = std::shared_ptr<TransactionCounter>(
                            *std::move(counter))] { return c->Read(); };
  return WriteRateMonitor::Create(std::move(options));
}

}  // namespace spillway::pqxx
