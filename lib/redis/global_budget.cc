#include "spillway/redis/global_budget.h"

#include <algorithm>
#include <array>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "redis/connection.h"
#include "redis/error_kind.h"
#include "redis/scripts.h"
#include "spillway/redis/fleet_registry.h"

namespace spillway::redis {
namespace {

// BudgetStore over one Redis connection. Used by the refresh thread only
// (serialized by GlobalBudget::State::refresh_mu).
class RedisBudgetStore final : public BudgetStore {
 public:
  RedisBudgetStore(internal::RedisConnection& conn, std::string prefix)
      : conn_(conn),
        prefix_(std::move(prefix)),
        script_(std::string(internal::kGcraScript)) {}

  std::string RedisKey(absl::string_view key) const {
    return absl::StrCat(prefix_, ":{", key, "}:budget");
  }

  absl::StatusOr<Grant> Take(absl::string_view key, const BudgetSpec& spec,
                             int64_t want) override {
    const std::string keys[] = {RedisKey(key)};
    const std::string args[] = {absl::StrFormat("%.17g", spec.rate),
                                absl::StrFormat("%.17g", spec.burst),
                                absl::StrCat(want)};
    absl::StatusOr<internal::RedisReply> reply =
        conn_.Eval(script_, keys, args);
    if (!reply.ok()) {
      if (reply.status().code() == absl::StatusCode::kFailedPrecondition) {
        return absl::FailedPreconditionError(absl::StrCat(
            "budget key ", keys[0],
            " holds a value of the wrong type (delete it, or choose another "
            "key_prefix): ",
            reply.status().message()));
      }
      return reply.status();
    }
    using Type = internal::RedisReply::Type;
    if (reply->type != Type::kArray || reply->elements.size() != 2 ||
        reply->elements[0].type != Type::kInteger ||
        reply->elements[1].type != Type::kInteger ||
        reply->elements[0].integer < 0 || reply->elements[0].integer > want ||
        reply->elements[1].integer < 0) {
      return absl::DataLossError(absl::StrFormat(
          "%s: unexpected reply to the budget script for key %s (want "
          "{granted in [0, %d], wait_us >= 0})",
          conn_.name(), keys[0], want));
    }
    Grant grant;
    grant.tokens = reply->elements[0].integer;
    grant.retry_after = absl::Microseconds(reply->elements[1].integer);
    return grant;
  }

 private:
  internal::RedisConnection& conn_;
  const std::string prefix_;
  internal::RedisScript script_;
};

absl::Status CheckKey(absl::string_view key) {
  if (key.empty() || key.size() > 200 ||
      !std::all_of(key.begin(), key.end(),
                   [](char c) { return c > ' ' && c < 127; })) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GlobalBudget::Budget: key must be 1 to 200 printable ASCII "
        "characters without spaces; got \"%s\"",
        absl::CHexEscape(key)));
  }
  return absl::OkStatus();
}

bool SameOptions(const BudgetOptions& a, const BudgetOptions& b) {
  return a.spec.rate == b.spec.rate && a.spec.burst == b.spec.burst &&
         a.min_lease == b.min_lease && a.max_lease == b.max_lease &&
         a.lease_headroom == b.lease_headroom;
}

}  // namespace

absl::Status ValidateGlobalBudgetOptions(const GlobalBudgetOptions& options) {
  if (absl::Status s =
          ValidateRedisOptions(options.redis, "GlobalBudgetOptions.redis");
      !s.ok()) {
    return s;
  }
  if (options.name.empty()) {
    return absl::InvalidArgumentError(
        "GlobalBudgetOptions.name must not be empty; got \"\"");
  }
  if (options.refresh_interval < absl::Milliseconds(1) ||
      options.refresh_interval > absl::Seconds(10) ||
      options.refresh_interval <= options.redis.command_timeout) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GlobalBudgetOptions.refresh_interval must be in [1ms, 10s] and "
        "longer than redis.command_timeout (%s); got %s",
        absl::FormatDuration(options.redis.command_timeout),
        absl::FormatDuration(options.refresh_interval)));
  }
  if (options.fail_mode != FailMode::kSafeShare &&
      options.fail_mode != FailMode::kFailOpen &&
      options.fail_mode != FailMode::kFailClosed) {
    return absl::InvalidArgumentError(
        absl::StrFormat("GlobalBudgetOptions.fail_mode must be kSafeShare, "
                        "kFailOpen or kFailClosed; got %d",
                        static_cast<int>(options.fail_mode)));
  }
  if (options.fallback_fleet_size < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GlobalBudgetOptions.fallback_fleet_size must be >= 1; got %d",
        options.fallback_fleet_size));
  }
  if (options.max_budgets < 1 || options.max_budgets > 1000000) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GlobalBudgetOptions.max_budgets must be in [1, 1000000]; got %d",
        options.max_budgets));
  }
  return absl::OkStatus();
}

struct GlobalBudget::State {
  explicit State(const GlobalBudgetOptions& o)
      : options(o),
        clock(o.clock != nullptr ? *o.clock : SteadyClock::Default()),
        sink(o.metrics != nullptr ? *o.metrics : NoopMetricsSink()),
        log(o.log != nullptr ? *o.log : DefaultLogSink()),
        conn(o.redis, clock),
        store(conn, o.redis.key_prefix) {
    for (size_t i = 0; i < internal::kRedisErrorKinds.size(); ++i) {
      errors[i] =
          sink.Counter(metrics::kRedisErrors,
                       {o.name, std::string(internal::kRedisErrorKinds[i])});
    }
  }

  // One refresh round: every budget, in creation order. Holds refresh_mu:
  // the connection and the store are used by one thread at a time.
  absl::Status RefreshRound();
  void Run();

  const GlobalBudgetOptions options;
  Clock& clock;
  MetricsSink& sink;
  LogSink& log;
  std::array<CounterHandle*, internal::kRedisErrorKinds.size()> errors{};

  // Serializes refresh rounds (the thread and RefreshNow); guards the
  // connection, the store and each entry's last counts.
  std::mutex refresh_mu;
  internal::RedisConnection conn;
  RedisBudgetStore store;

  struct Entry {
    std::string key;
    BudgetOptions options;
    std::unique_ptr<LeasedBudget> budget;
    uint64_t last_offered = 0;  // Counts reported to the registry so far.
    uint64_t last_admitted = 0;
  };
  // Guards the fields below. Never held across a Redis call.
  std::mutex mu;
  std::condition_variable cv;
  // Entries are never removed, so pointers into them stay valid.
  std::vector<std::unique_ptr<Entry>> entries;
  absl::flat_hash_map<std::string, Entry*> by_key;
  bool stop = false;
  bool wake = false;  // A new budget wants its first lease now.

  std::atomic<int64_t> rounds{0};
  std::thread thread;
};

absl::Status GlobalBudget::State::RefreshRound() {
  std::lock_guard<std::mutex> refresh_lock(refresh_mu);
  std::vector<Entry*> snapshot;
  {
    std::lock_guard<std::mutex> lock(mu);
    snapshot.reserve(entries.size());
    for (const auto& e : entries) snapshot.push_back(e.get());
  }
  int fleet_size = 0;
  if (options.registry != nullptr)
    fleet_size = options.registry->LiveInstances();
  absl::Status first_error;
  uint64_t offered = 0;
  uint64_t admitted = 0;
  for (Entry* e : snapshot) {
    if (fleet_size > 0) e->budget->SetFleetSize(fleet_size);
    absl::Status s = e->budget->Refresh();
    if (!s.ok()) {
      errors[internal::RedisErrorKindIndex(s)]->Increment();
      if (first_error.ok()) first_error = s;
    }
    const uint64_t o = e->budget->offered();
    const uint64_t a = e->budget->admitted();
    offered += o - e->last_offered;
    admitted += a - e->last_admitted;
    e->last_offered = o;
    e->last_admitted = a;
  }
  if (options.registry != nullptr && (offered > 0 || admitted > 0)) {
    options.registry->Record(offered, admitted);
  }
  rounds.fetch_add(1, std::memory_order_relaxed);
  return first_error;
}

void GlobalBudget::State::Run() {
  std::unique_lock<std::mutex> lock(mu);
  while (!stop) {
    const MonotonicTime next = clock.Now() + ToChrono(options.refresh_interval);
    wake = false;
    lock.unlock();
    RefreshRound().IgnoreError();  // Counted and logged by the budgets.
    lock.lock();
    clock.WaitUntil(cv, lock, next, [this] { return stop || wake; });
  }
}

absl::StatusOr<std::unique_ptr<GlobalBudget>> GlobalBudget::Create(
    const GlobalBudgetOptions& options) {
  if (absl::Status s = ValidateGlobalBudgetOptions(options); !s.ok()) {
    return s;
  }
  auto state = std::make_unique<State>(options);
  if (absl::Status s = state->conn.Connect(); !s.ok()) {
    if (s.code() == absl::StatusCode::kUnauthenticated ||
        s.code() == absl::StatusCode::kPermissionDenied ||
        s.code() == absl::StatusCode::kInvalidArgument) {
      return absl::Status(s.code(),
                          absl::StrCat("GlobalBudget::Create: ", s.message()));
    }
    state->errors[internal::RedisErrorKindIndex(s)]->Increment();
    state->log.Log(LogLevel::kWarning,
                   absl::StrCat("global budget '", options.name,
                                "': Redis unreachable at start (", s.ToString(),
                                "); budgets use their fail mode until it "
                                "answers"));
  }
  State* raw = state.get();
  raw->thread = std::thread([raw] { raw->Run(); });
  return std::unique_ptr<GlobalBudget>(new GlobalBudget(std::move(state)));
}

GlobalBudget::GlobalBudget(std::unique_ptr<State> state)
    : state_(std::move(state)) {}

GlobalBudget::~GlobalBudget() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stop = true;
  }
  state_->cv.notify_all();
  state_->thread.join();
}

absl::StatusOr<LeasedBudget*> GlobalBudget::Budget(
    absl::string_view key, const BudgetOptions& options) {
  if (absl::Status s = CheckKey(key); !s.ok()) return s;
  State& st = *state_;
  std::lock_guard<std::mutex> lock(st.mu);
  if (auto it = st.by_key.find(key); it != st.by_key.end()) {
    if (!SameOptions(it->second->options, options)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "GlobalBudget::Budget: key \"%s\" already exists with other "
          "options (rate %g, burst %g)",
          key, it->second->options.spec.rate, it->second->options.spec.burst));
    }
    return it->second->budget.get();
  }
  if (static_cast<int>(st.entries.size()) >= st.options.max_budgets) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "GlobalBudget::Budget: max_budgets (%d) reached; cannot add key "
        "\"%s\"",
        st.options.max_budgets, key));
  }
  LeasedBudgetOptions lo;
  lo.key = std::string(key);
  lo.spec = options.spec;
  lo.refresh_interval = st.options.refresh_interval;
  lo.min_lease = options.min_lease;
  lo.max_lease = options.max_lease;
  lo.lease_headroom = options.lease_headroom;
  lo.fail_mode = st.options.fail_mode;
  lo.fallback_fleet_size = st.options.fallback_fleet_size;
  if (st.options.registry != nullptr &&
      st.options.registry->LiveInstances() > 0) {
    lo.fallback_fleet_size = st.options.registry->LiveInstances();
  }
  lo.clock = &st.clock;
  lo.metrics = &st.sink;
  lo.log = &st.log;
  absl::StatusOr<std::unique_ptr<LeasedBudget>> budget =
      LeasedBudget::Create(lo, &st.store);
  if (!budget.ok()) return budget.status();
  auto entry = std::make_unique<State::Entry>();
  entry->key = std::string(key);
  entry->options = options;
  entry->budget = *std::move(budget);
  LeasedBudget* out = entry->budget.get();
  st.by_key.emplace(entry->key, entry.get());
  st.entries.push_back(std::move(entry));
  st.wake = true;
  st.cv.notify_all();
  return out;
}

absl::Status GlobalBudget::RefreshNow() { return state_->RefreshRound(); }

int64_t GlobalBudget::refresh_rounds() const {
  return state_->rounds.load(std::memory_order_relaxed);
}

std::string GlobalBudget::RedisKey(absl::string_view key) const {
  return state_->store.RedisKey(key);
}

}  // namespace spillway::redis
