#include "spillway/redis/fleet_registry.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "redis/connection.h"
#include "redis/error_kind.h"
#include "redis/scripts.h"

namespace spillway::redis {
namespace {

bool Printable(absl::string_view s, bool allow_braces) {
  return std::all_of(s.begin(), s.end(), [&](char c) {
    return c > ' ' && c < 127 && (allow_braces || (c != '{' && c != '}'));
  });
}

std::string DefaultInstanceId() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
    std::snprintf(host, sizeof(host), "host");
  }
  std::string id = absl::StrCat(host, "-", getpid());
  for (char& c : id) {
    if (!(c > ' ' && c < 127)) c = '_';
  }
  return id.substr(0, 200);
}

// Computes shares, skew and the busiest instance of `view` in place.
void Summarize(FleetView& view, absl::string_view self_id, double threshold,
               double min_fleet_rate) {
  std::sort(
      view.instances.begin(), view.instances.end(),
      [](const InstanceLoad& a, const InstanceLoad& b) { return a.id < b.id; });
  view.live_instances = static_cast<int>(view.instances.size());
  view.offered_rate = 0;
  view.admitted_rate = 0;
  for (const InstanceLoad& i : view.instances) {
    view.offered_rate += i.offered_rate;
    view.admitted_rate += i.admitted_rate;
  }
  view.skew = 1;
  view.busiest.clear();
  view.self_share = 0;
  double max_share = 0;
  for (InstanceLoad& i : view.instances) {
    i.share = view.offered_rate > 0 ? i.offered_rate / view.offered_rate : 0;
    if (i.share > max_share || view.busiest.empty()) {
      max_share = i.share;
      view.busiest = i.id;
    }
    if (i.id == self_id) view.self_share = i.share;
  }
  if (view.live_instances > 0 && view.offered_rate >= min_fleet_rate &&
      view.offered_rate > 0) {
    view.skew = max_share * view.live_instances;
  }
  view.skewed = view.skew >= threshold;  // Raw; the caller debounces.
}

}  // namespace

absl::Status ValidateFleetRegistryOptions(const FleetRegistryOptions& o) {
  if (absl::Status s =
          ValidateRedisOptions(o.redis, "FleetRegistryOptions.redis");
      !s.ok()) {
    return s;
  }
  if (o.fleet.empty() || o.fleet.size() > 200 ||
      !Printable(o.fleet, /*allow_braces=*/false)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "FleetRegistryOptions.fleet must be 1 to 200 printable ASCII "
        "characters without spaces or braces; got \"%s\"",
        absl::CHexEscape(o.fleet)));
  }
  if (o.instance_id.size() > 200 ||
      !Printable(o.instance_id, /*allow_braces=*/true)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "FleetRegistryOptions.instance_id must be at most 200 printable "
        "ASCII characters without spaces; got \"%s\"",
        absl::CHexEscape(o.instance_id)));
  }
  if (o.heartbeat_interval < absl::Milliseconds(10) ||
      o.heartbeat_interval > absl::Seconds(60)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "FleetRegistryOptions.heartbeat_interval must be in [10ms, 60s]; got "
        "%s",
        absl::FormatDuration(o.heartbeat_interval)));
  }
  if (o.ttl < 2 * o.heartbeat_interval || o.ttl > absl::Hours(1)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "FleetRegistryOptions.ttl must be >= 2 * heartbeat_interval (%s) and "
        "<= 1h; got %s",
        absl::FormatDuration(2 * o.heartbeat_interval),
        absl::FormatDuration(o.ttl)));
  }
  if (o.rate_time_constant < o.heartbeat_interval ||
      o.rate_time_constant > absl::Minutes(10)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("FleetRegistryOptions.rate_time_constant must be in "
                        "[heartbeat_interval (%s), 10m]; got %s",
                        absl::FormatDuration(o.heartbeat_interval),
                        absl::FormatDuration(o.rate_time_constant)));
  }
  if (!std::isfinite(o.skew_threshold) || o.skew_threshold <= 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "FleetRegistryOptions.skew_threshold must be finite and > 1; got %g",
        o.skew_threshold));
  }
  if (o.skew_heartbeats < 1 || o.skew_heartbeats > 100) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "FleetRegistryOptions.skew_heartbeats must be in [1, 100]; got %d",
        o.skew_heartbeats));
  }
  if (!std::isfinite(o.min_fleet_rate) || o.min_fleet_rate < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "FleetRegistryOptions.min_fleet_rate must be finite and >= 0; got %g",
        o.min_fleet_rate));
  }
  return absl::OkStatus();
}

struct FleetRegistry::State {
  explicit State(const FleetRegistryOptions& o)
      : options(o),
        clock(o.clock != nullptr ? *o.clock : SteadyClock::Default()),
        log(o.log != nullptr ? *o.log : DefaultLogSink()),
        id(o.instance_id.empty() ? DefaultInstanceId() : o.instance_id),
        key(absl::StrCat(o.redis.key_prefix, ":{fleet:", o.fleet, "}:members")),
        conn(o.redis, clock),
        script(std::string(internal::kHeartbeatScript)),
        last_beat(clock.Now()) {
    MetricsSink& sink = o.metrics != nullptr ? *o.metrics : NoopMetricsSink();
    instances_gauge = sink.Gauge(metrics::kFleetInstances, {o.fleet});
    share_gauge = sink.Gauge(metrics::kFleetShare, {o.fleet});
    skew_gauge = sink.Gauge(metrics::kFleetSkew, {o.fleet});
    skewed_gauge = sink.Gauge(metrics::kFleetSkewed, {o.fleet});
    for (size_t i = 0; i < internal::kRedisErrorKinds.size(); ++i) {
      errors[i] = sink.Counter(metrics::kRedisErrors,
                               {absl::StrCat("fleet:", o.fleet),
                                std::string(internal::kRedisErrorKinds[i])});
    }
    skew_gauge->Set(1);
  }

  absl::Status Heartbeat();
  void Run();

  const FleetRegistryOptions options;
  Clock& clock;
  LogSink& log;
  const std::string id;
  const std::string key;
  GaugeHandle* instances_gauge;
  GaugeHandle* share_gauge;
  GaugeHandle* skew_gauge;
  GaugeHandle* skewed_gauge;
  std::array<CounterHandle*, internal::kRedisErrorKinds.size()> errors{};

  // Written by Record from any thread; read by heartbeats.
  alignas(128) std::atomic<uint64_t> offered{0};
  std::atomic<uint64_t> admitted{0};
  // Live instances of the last good view, for LiveInstances().
  alignas(128) std::atomic<int> live{0};
  // Successful heartbeats, for heartbeats().
  std::atomic<int64_t> beats{0};

  // Serializes heartbeats; guards the connection and the rate state.
  std::mutex beat_mu;
  internal::RedisConnection conn;
  internal::RedisScript script;
  MonotonicTime last_beat;
  uint64_t last_offered = 0;
  uint64_t last_admitted = 0;
  double offered_rate = -1;  // EWMA; negative before the first heartbeat.
  double admitted_rate = 0;
  bool failing = false;  // The last heartbeat failed (logged once).
  // Debouncing of the skew flag: consecutive heartbeats on the other side
  // of the threshold from the current flag.
  int against_flag = 0;
  bool skewed = false;

  // Guards the view and the thread's stop flag.
  mutable std::mutex mu;
  std::condition_variable cv;
  FleetView view;
  bool stop = false;
  std::thread thread;
};

absl::Status FleetRegistry::State::Heartbeat() {
  std::lock_guard<std::mutex> beat_lock(beat_mu);
  const MonotonicTime now = clock.Now();
  const double elapsed =
      std::max(1e-6, absl::ToDoubleSeconds(ToDuration(now - last_beat)));
  const uint64_t o = offered.load(std::memory_order_relaxed);
  const uint64_t a = admitted.load(std::memory_order_relaxed);
  const double o_rate = static_cast<double>(o - last_offered) / elapsed;
  const double a_rate = static_cast<double>(a - last_admitted) / elapsed;
  if (offered_rate < 0) {
    offered_rate = o_rate;
    admitted_rate = a_rate;
  } else {
    // EWMA over irregular intervals: weight 1 - exp(-dt / tau).
    const double alpha =
        1 -
        std::exp(-elapsed / absl::ToDoubleSeconds(options.rate_time_constant));
    offered_rate += alpha * (o_rate - offered_rate);
    admitted_rate += alpha * (a_rate - admitted_rate);
  }
  last_beat = now;
  last_offered = o;
  last_admitted = a;

  const std::string keys[] = {key};
  const std::string args[] = {
      id, absl::StrFormat("%.6f", offered_rate),
      absl::StrFormat("%.6f", admitted_rate),
      absl::StrCat(absl::ToInt64Milliseconds(options.ttl))};
  absl::StatusOr<internal::RedisReply> reply = conn.Eval(script, keys, args);
  FleetView next;
  absl::Status status = reply.status();
  if (status.ok()) {
    using Type = internal::RedisReply::Type;
    bool good = reply->type == Type::kArray && reply->elements.size() % 2 == 0;
    for (size_t i = 0; good && i < reply->elements.size(); i += 2) {
      const internal::RedisReply& field = reply->elements[i];
      const internal::RedisReply& value = reply->elements[i + 1];
      std::vector<absl::string_view> parts =
          absl::StrSplit(value.str, ' ', absl::SkipEmpty());
      InstanceLoad load;
      good = field.type == Type::kString && value.type == Type::kString &&
             parts.size() == 3 &&
             absl::SimpleAtod(parts[0], &load.offered_rate) &&
             absl::SimpleAtod(parts[1], &load.admitted_rate) &&
             std::isfinite(load.offered_rate) && load.offered_rate >= 0 &&
             std::isfinite(load.admitted_rate) && load.admitted_rate >= 0;
      load.id = field.str;
      next.instances.push_back(std::move(load));
    }
    if (!good) {
      status = absl::DataLossError(absl::StrFormat(
          "%s: unexpected reply to the heartbeat script for key %s",
          conn.name(), key));
    }
  }

  if (!status.ok()) {
    errors[internal::RedisErrorKindIndex(status)]->Increment();
    bool log_it = false;
    {
      std::lock_guard<std::mutex> lock(mu);
      view.stale = true;
    }
    if (!failing) {
      failing = true;
      log_it = true;
    }
    if (log_it) {
      log.Log(LogLevel::kWarning,
              absl::StrCat("fleet registry '", options.fleet,
                           "': heartbeat failed (", status.ToString(),
                           "); the fleet view is stale until Redis answers"));
    }
    return status;
  }
  if (failing) {
    failing = false;
    log.Log(LogLevel::kInfo, absl::StrCat("fleet registry '", options.fleet,
                                          "': heartbeats resumed"));
  }

  next.valid = true;
  Summarize(next, id, options.skew_threshold, options.min_fleet_rate);
  bool changed = false;
  if (next.skewed != skewed) {
    if (++against_flag >= options.skew_heartbeats) {
      skewed = next.skewed;
      against_flag = 0;
      changed = true;
    }
  } else {
    against_flag = 0;
  }
  next.skewed = skewed;
  {
    std::lock_guard<std::mutex> lock(mu);
    view = next;
  }
  live.store(next.live_instances, std::memory_order_relaxed);
  instances_gauge->Set(next.live_instances);
  share_gauge->Set(next.self_share);
  skew_gauge->Set(next.skew);
  skewed_gauge->Set(next.skewed ? 1 : 0);
  if (changed) {
    if (next.skewed) {
      log.Log(LogLevel::kWarning,
              absl::StrFormat(
                  "fleet '%s' is skewed: instance %s receives %.0f%% of the "
                  "fleet's offered writes, %.1fx its fair share of %.0f%% "
                  "(%d live instances, %.0f writes/s); check the load "
                  "balancer",
                  options.fleet, next.busiest,
                  100 * next.skew / next.live_instances, next.skew,
                  100.0 / next.live_instances, next.live_instances,
                  next.offered_rate));
    } else {
      log.Log(LogLevel::kInfo,
              absl::StrFormat("fleet '%s' is balanced again (skew %.2f)",
                              options.fleet, next.skew));
    }
    if (options.on_skew_change) options.on_skew_change(next);
  }
  // Last: a test that sees the count move sees the view, gauges and
  // callback of this heartbeat.
  beats.fetch_add(1, std::memory_order_release);
  return absl::OkStatus();
}

void FleetRegistry::State::Run() {
  std::unique_lock<std::mutex> lock(mu);
  while (!stop) {
    const MonotonicTime next =
        clock.Now() + ToChrono(options.heartbeat_interval);
    clock.WaitUntil(cv, lock, next, [this] { return stop; });
    if (stop) break;
    lock.unlock();
    Heartbeat().IgnoreError();  // Counted and logged.
    lock.lock();
  }
}

absl::StatusOr<std::unique_ptr<FleetRegistry>> FleetRegistry::Create(
    const FleetRegistryOptions& options) {
  if (absl::Status s = ValidateFleetRegistryOptions(options); !s.ok()) {
    return s;
  }
  auto state = std::make_unique<State>(options);
  if (absl::Status s = state->conn.Connect(); !s.ok()) {
    if (s.code() == absl::StatusCode::kUnauthenticated ||
        s.code() == absl::StatusCode::kPermissionDenied ||
        s.code() == absl::StatusCode::kInvalidArgument) {
      return absl::Status(s.code(),
                          absl::StrCat("FleetRegistry::Create: ", s.message()));
    }
  }
  state->Heartbeat().IgnoreError();  // Logged; retried by the thread.
  State* raw = state.get();
  raw->thread = std::thread([raw] { raw->Run(); });
  return std::unique_ptr<FleetRegistry>(new FleetRegistry(std::move(state)));
}

FleetRegistry::FleetRegistry(std::unique_ptr<State> state)
    : state_(std::move(state)) {}

FleetRegistry::~FleetRegistry() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stop = true;
  }
  state_->cv.notify_all();
  state_->thread.join();
}

void FleetRegistry::Record(uint64_t offered, uint64_t admitted) {
  state_->offered.fetch_add(offered, std::memory_order_relaxed);
  state_->admitted.fetch_add(admitted, std::memory_order_relaxed);
}

FleetView FleetRegistry::View() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->view;
}

int FleetRegistry::LiveInstances() const {
  return state_->live.load(std::memory_order_relaxed);
}

absl::Status FleetRegistry::HeartbeatNow() { return state_->Heartbeat(); }

int64_t FleetRegistry::heartbeats() const {
  return state_->beats.load(std::memory_order_acquire);
}

const std::string& FleetRegistry::instance_id() const { return state_->id; }

}  // namespace spillway::redis
