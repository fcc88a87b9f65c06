// FleetRegistry: who is in the fleet, and is its traffic evenly spread?
//
// Every instance of a service heartbeats into one Redis hash: its id, the
// writes it was offered per second and the writes it admitted per second,
// with an expiry. Any instance reads back the fleet view: how many instances
// are alive, each one's share of the fleet's offered writes, and the skew —
// the largest share over the fair share (1 / live instances). A balancer
// that misroutes traffic shows up as one instance (or a group) far above
// its fair share: the registry flags it when skew reaches
// `skew_threshold`, through `spillway_fleet_skewed`, a log line and
// `on_skew_change`.
//
//   auto registry = spillway::redis::FleetRegistry::Create(
//       {.fleet = "orders-api", .instance_id = pod_name});
//   (*registry)->Record(/*offered=*/1, /*admitted=*/ok ? 1 : 0);
//   spillway::redis::FleetView view = (*registry)->View();
//
// With a GlobalBudget (`GlobalBudgetOptions::registry`), the budget records
// its admit calls here and takes its safe-share fleet size from here.
//
// The algorithm: each heartbeat (every `heartbeat_interval`) computes this
// instance's offered and admitted rates as an EWMA of the counts recorded
// since the last heartbeat, with time constant `rate_time_constant`, and
// runs one Lua script (one round trip): it stamps this instance's entry
// with expiry = Redis TIME + `ttl` (the server's clock, so clients' clocks
// never matter), deletes expired entries and returns the live ones. Then
//     share(i) = offered(i) / sum of offered,
//     skew     = max share(i) * live instances,
// and skew is 1 while the fleet's offered rate is below `min_fleet_rate`
// (an idle fleet is not skewed). The fleet is flagged once skew has been at
// or above `skew_threshold` for `skew_heartbeats` heartbeats in a row, and
// cleared after as many below it: one heartbeat's transient (instances
// starting, heartbeats landing out of step) never flags. An instance
// offered 3x its fair share is flagged in about 4 s at the defaults
// (threshold 1.75; one of four instances getting 3x what each peer gets is
// skew 2, flagged as fast). Instances that stop heartbeating drop out after
// `ttl`.
//
// Redis: key `<prefix>:{fleet:<fleet>}:members` (a hash; the key itself
// expires after 2 * ttl without heartbeats). Memory is one field per live
// instance. On a Redis error the view keeps its last value (`View().stale`
// says so) and the next heartbeat retries after the connection's backoff.
//
// Threads: one background thread heartbeats with its own connection,
// started by Create and joined by the destructor.
//
// Thread safety: all methods are thread-safe. `Record` is lock-free.

#ifndef SPILLWAY_REDIS_FLEET_REGISTRY_H_
#define SPILLWAY_REDIS_FLEET_REGISTRY_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "spillway/clock.h"
#include "spillway/log.h"
#include "spillway/metrics.h"
#include "spillway/redis/redis_options.h"

namespace spillway::redis {

// One instance as the fleet sees it.
struct InstanceLoad {
  std::string id;
  double offered_rate = 0;   // Writes offered per second (EWMA).
  double admitted_rate = 0;  // Writes admitted per second (EWMA).
  double share = 0;          // offered_rate / fleet offered rate, 0 to 1.
};

struct FleetView {
  // Live instances (heartbeats not older than their TTL), by id.
  std::vector<InstanceLoad> instances;
  int live_instances = 0;
  double offered_rate = 0;   // Whole fleet, writes per second.
  double admitted_rate = 0;  // Whole fleet, writes per second.
  double self_share = 0;     // This instance's share.
  double skew = 1;           // Largest share over the fair share.
  std::string busiest;       // Id of the instance with the largest share.
  // skew >= skew_threshold for skew_heartbeats heartbeats in a row (and
  // not yet below it for as many).
  bool skewed = false;
  // False until the first successful heartbeat.
  bool valid = false;
  // True when the last heartbeat failed: the view is the last good one.
  bool stale = false;
};

struct FleetRegistryOptions {
  // Redis connection. Default: see RedisOptions.
  RedisOptions redis;

  // The fleet's name: instances with the same name form one fleet; also the
  // `fleet` metric label. Default: "default".
  // REQUIRES: 1 to 200 printable ASCII characters, no braces.
  std::string fleet = "default";

  // This instance's id, unique in the fleet. Default: empty, meaning
  // "<hostname>-<pid>". REQUIRES: at most 200 printable ASCII characters,
  // no spaces.
  std::string instance_id;

  // Time between heartbeats. Default: 1 s. REQUIRES: in [10 ms, 60 s].
  absl::Duration heartbeat_interval = absl::Seconds(1);

  // How long an instance counts as alive after its last heartbeat.
  // Default: 5 s. REQUIRES: >= 2 * heartbeat_interval, <= 1 h.
  absl::Duration ttl = absl::Seconds(5);

  // Time constant of the rate EWMA. Default: 2 s.
  // REQUIRES: in [heartbeat_interval, 10 min].
  absl::Duration rate_time_constant = absl::Seconds(2);

  // Skew at or above which the fleet is flagged. Default: 1.75.
  // REQUIRES: finite, > 1.
  double skew_threshold = 1.75;

  // Consecutive heartbeats at (below) the threshold that set (clear) the
  // flag. Default: 3. REQUIRES: in [1, 100].
  int skew_heartbeats = 3;

  // Fleet offered rate (writes/s) below which skew reads 1. Default: 1.
  // REQUIRES: finite, >= 0.
  double min_fleet_rate = 1.0;

  // Called on the heartbeat thread when `skewed` changes, with the new view.
  // Must not block for long or call back into the registry's destructor.
  // Default: none.
  std::function<void(const FleetView&)> on_skew_change;

  // Time source for rates and the heartbeat schedule. Default: nullptr,
  // meaning SteadyClock::Default(). REQUIRES: when set, outlives the
  // registry.
  Clock* clock = nullptr;

  // Default: nullptr, meaning NoopMetricsSink(). REQUIRES: outlives the
  // registry.
  MetricsSink* metrics = nullptr;

  // Where skew transitions and Redis failures are logged. Default: nullptr,
  // meaning DefaultLogSink(). REQUIRES: outlives the registry.
  LogSink* log = nullptr;
};

// Checks every field; the error names the field and its value. Thread-safe.
absl::Status ValidateFleetRegistryOptions(const FleetRegistryOptions& options);

class FleetRegistry {
 public:
  // Validates `options`, connects and sends the first heartbeat. Returns
  // Unauthenticated when Redis refuses the credentials, InvalidArgument for
  // bad options; an unreachable Redis is not an error (the view stays
  // invalid and heartbeats keep retrying). Starts the heartbeat thread.
  // Thread-safe.
  static absl::StatusOr<std::unique_ptr<FleetRegistry>> Create(
      const FleetRegistryOptions& options);

  // Stops and joins the heartbeat thread (at most one Redis timeout).
  ~FleetRegistry();
  FleetRegistry(const FleetRegistry&) = delete;
  FleetRegistry& operator=(const FleetRegistry&) = delete;

  // Counts writes offered to and admitted by this instance.
  // Thread-safe; lock-free.
  void Record(uint64_t offered, uint64_t admitted);

  // The last fleet view. Thread-safe; copies.
  FleetView View() const;

  // Live instances in the last good view; 0 before the first heartbeat.
  // Thread-safe; lock-free.
  int LiveInstances() const;

  // Heartbeats now, on the caller's thread (the background thread does this
  // every heartbeat_interval). Thread-safe (serialized with the thread).
  absl::Status HeartbeatNow();

  // Successful heartbeats so far. Thread-safe.
  int64_t heartbeats() const;

  const std::string& instance_id() const;

 private:
  struct State;
  explicit FleetRegistry(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace spillway::redis

#endif  // SPILLWAY_REDIS_FLEET_REGISTRY_H_
