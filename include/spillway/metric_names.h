// The one table of spillway's metric names.
//
// Every metric spillway reports is declared here once: its name, type, help
// text, label names and (for histograms) bucket bounds. Components bind
// handles from these definitions at construction; sinks (the Prometheus sink,
// the in-memory sink of `spillway::testing`) and the documentation read the
// same table, and a test checks that every entry is reported.
//
//   for (const spillway::MetricDef* def : spillway::metrics::kAll) {
//     std::cout << def->name << ": " << def->help << "\n";
//   }
//
// Names follow Prometheus conventions: `spillway_` prefix, base units
// (`_seconds`), `_total` for counters.
//
// Label values used by the core:
//   throttle: the component's `name` option;
//   gate:     GateName() — concurrency_limit, token_bucket, global_budget;
//   priority: critical, normal, batch (`any` for gates without priorities);
//   reason:   ReasonName() — limit_reached, partition_limit, queue_full,
//             deadline_exceeded, rate_limited, budget_exhausted,
//             priority_pressure, budget_unavailable;
//   outcome:  success, dropped, ignored;
//   mode:     BudgetModeName() — shared, safe_share, fail_open, fail_closed;
//   result:   granted, exhausted, error (one fleet-budget refresh);
//   kind:     RedisErrorKind — unavailable, timeout, auth, wrong_type,
//             script, protocol;
//   fleet:    the FleetRegistry's `fleet` option;
//   cause:    OverloadCauseName() — none, offered_load_surge,
//             database_slowdown.
//
// Thread safety: constant data.

#ifndef SPILLWAY_METRIC_NAMES_H_
#define SPILLWAY_METRIC_NAMES_H_

#include <array>
#include <cstddef>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace spillway {

enum class MetricType { kCounter, kGauge, kHistogram };

struct MetricDef {
  absl::string_view name;
  MetricType type;
  absl::string_view help;
  // Label names, in the order handles are bound with.
  absl::Span<const absl::string_view> labels;
  // Upper bounds of histogram buckets, ascending; empty for other types.
  absl::Span<const double> buckets;
};

namespace metrics {

inline constexpr absl::string_view kThrottleLabels[] = {"throttle"};
inline constexpr absl::string_view kAdmittedLabels[] = {"throttle", "gate",
                                                        "priority"};
inline constexpr absl::string_view kRejectedLabels[] = {"throttle", "gate",
                                                        "priority", "reason"};
inline constexpr absl::string_view kOutcomeLabels[] = {"throttle", "outcome"};
inline constexpr absl::string_view kModeLabels[] = {"throttle", "mode"};
inline constexpr absl::string_view kRefreshLabels[] = {"throttle", "result"};
inline constexpr absl::string_view kRedisErrorLabels[] = {"throttle", "kind"};
inline constexpr absl::string_view kFleetLabels[] = {"fleet"};
inline constexpr absl::string_view kCauseLabels[] = {"throttle", "cause"};

// Write latency buckets, seconds: 0.5 ms to 10 s.
inline constexpr double kLatencyBuckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                             0.025,  0.05,  0.1,    0.25,  0.5,
                                             1.0,    2.5,   5.0,    10.0};

inline constexpr MetricDef kAdmitted{"spillway_admitted_total",
                                     MetricType::kCounter,
                                     "Writes admitted, by gate and priority.",
                                     kAdmittedLabels,
                                     {}};
inline constexpr MetricDef kRejected{
    "spillway_rejected_total",
    MetricType::kCounter,
    "Writes rejected, by the gate that refused, priority and reason.",
    kRejectedLabels,
    {}};
inline constexpr MetricDef kInFlight{
    "spillway_in_flight",
    MetricType::kGauge,
    "Writes admitted by the concurrency limiter and not yet released.",
    kThrottleLabels,
    {}};
inline constexpr MetricDef kLimit{"spillway_limit",
                                  MetricType::kGauge,
                                  "Current concurrency limit.",
                                  kThrottleLabels,
                                  {}};
inline constexpr MetricDef kLatencyBand{
    "spillway_latency_band",
    MetricType::kGauge,
    "Latency the limit algorithm holds the database within, as a multiple of "
    "its baseline (KneeLimit: 2, wider when its throughput probe finds that "
    "a wider band buys throughput); 0 for algorithms without one.",
    kThrottleLabels,
    {}};
inline constexpr MetricDef kLimitMin{
    "spillway_limit_min",
    MetricType::kGauge,
    "Smallest concurrency limit the algorithm may set (its floor).",
    kThrottleLabels,
    {}};
inline constexpr MetricDef kLimitMax{
    "spillway_limit_max",
    MetricType::kGauge,
    "Largest concurrency limit the algorithm may set (its ceiling).",
    kThrottleLabels,
    {}};
inline constexpr MetricDef kQueued{
    "spillway_queued",
    MetricType::kGauge,
    "Callers waiting in the concurrency limiter's queue.",
    kThrottleLabels,
    {}};
inline constexpr MetricDef kOutcomes{
    "spillway_outcomes_total",
    MetricType::kCounter,
    "Released permits, by outcome (success, dropped, ignored).",
    kOutcomeLabels,
    {}};
inline constexpr MetricDef kLatency{
    "spillway_write_latency_seconds", MetricType::kHistogram,
    "Latency of admitted writes that completed as success or dropped.",
    kOutcomeLabels, kLatencyBuckets};
inline constexpr MetricDef kBucketRate{
    "spillway_bucket_rate",
    MetricType::kGauge,
    "Token bucket refill rate, tokens per second.",
    kThrottleLabels,
    {}};
inline constexpr MetricDef kBucketBurst{"spillway_bucket_burst",
                                        MetricType::kGauge,
                                        "Token bucket capacity, tokens.",
                                        kThrottleLabels,
                                        {}};
inline constexpr MetricDef kShadowPassed{
    "spillway_shadow_passed_total",
    MetricType::kCounter,
    "Writes a gate in shadow mode would have refused and let through "
    "(WriteThrottle).",
    kAdmittedLabels,
    {}};

// Overload cause (OverloadDetector, owned by WriteThrottle).
inline constexpr MetricDef kOverloadCause{
    "spillway_overload_cause",
    MetricType::kGauge,
    "1 for what the throttle names as the cause of overload (none, "
    "offered_load_surge, database_slowdown), 0 for the others.",
    kCauseLabels,
    {}};
inline constexpr MetricDef kOfferedRatio{
    "spillway_offered_ratio",
    MetricType::kGauge,
    "Offered writes per second over their baseline in the last interval (0 "
    "before the baseline is learnt).",
    kThrottleLabels,
    {}};
inline constexpr MetricDef kLatencyRatio{
    "spillway_latency_ratio",
    MetricType::kGauge,
    "Mean write latency over its baseline in the last interval (0 before the "
    "baseline is learnt or without completed writes).",
    kThrottleLabels,
    {}};

// Fleet-wide budget (LeasedBudget, spillway::redis::GlobalBudget). The
// `throttle` label is the budget's key.
inline constexpr MetricDef kLeaseTokens{
    "spillway_budget_lease_tokens",
    MetricType::kGauge,
    "Tokens of the fleet budget this instance holds in its local lease, as of "
    "the last refresh.",
    kThrottleLabels,
    {}};
inline constexpr MetricDef kLeaseTarget{
    "spillway_budget_lease_target_tokens",
    MetricType::kGauge,
    "Lease size this instance tops up to at each refresh (about one refresh "
    "interval of its demand).",
    kThrottleLabels,
    {}};
inline constexpr MetricDef kMaxLease{"spillway_budget_max_lease_tokens",
                                     MetricType::kGauge,
                                     "Largest lease this instance may hold.",
                                     kThrottleLabels,
                                     {}};
inline constexpr MetricDef kOvershootBound{
    "spillway_budget_overshoot_bound_tokens",
    MetricType::kGauge,
    "Worst-case writes the fleet may admit above rate x time: burst plus "
    "fleet size x largest lease.",
    kThrottleLabels,
    {}};
inline constexpr MetricDef kBudgetMode{
    "spillway_budget_mode",
    MetricType::kGauge,
    "1 for the fleet budget's active mode (shared, or a fail mode while its "
    "store is unreachable), 0 for the others.",
    kModeLabels,
    {}};
inline constexpr MetricDef kBudgetRefreshes{
    "spillway_budget_refreshes_total",
    MetricType::kCounter,
    "Lease refreshes against the shared store, by result.",
    kRefreshLabels,
    {}};
inline constexpr MetricDef kRedisErrors{"spillway_redis_errors_total",
                                        MetricType::kCounter,
                                        "Failed Redis calls, by kind.",
                                        kRedisErrorLabels,
                                        {}};

// Fleet registry (spillway::redis::FleetRegistry).
inline constexpr MetricDef kFleetInstances{
    "spillway_fleet_instances",
    MetricType::kGauge,
    "Live instances in the fleet (heartbeats not older than their TTL).",
    kFleetLabels,
    {}};
inline constexpr MetricDef kFleetShare{
    "spillway_fleet_share",
    MetricType::kGauge,
    "This instance's share of the fleet's offered writes, 0 to 1.",
    kFleetLabels,
    {}};
inline constexpr MetricDef kFleetSkew{
    "spillway_fleet_skew",
    MetricType::kGauge,
    "Largest instance share of offered writes over the fair share (1 = "
    "even); a misrouted balancer shows as a high value.",
    kFleetLabels,
    {}};
inline constexpr MetricDef kFleetSkewed{
    "spillway_fleet_skewed",
    MetricType::kGauge,
    "1 while fleet skew is at or above the registry's threshold.",
    kFleetLabels,
    {}};

inline constexpr const MetricDef* kAll[] = {
    &kAdmitted,     &kRejected,        &kInFlight,     &kLimit,
    &kLimitMin,     &kLimitMax,        &kLatencyBand,  &kQueued,
    &kOutcomes,     &kLatency,         &kBucketRate,   &kBucketBurst,
    &kShadowPassed, &kOverloadCause,   &kOfferedRatio, &kLatencyRatio,
    &kLeaseTokens,  &kLeaseTarget,     &kMaxLease,     &kOvershootBound,
    &kBudgetMode,   &kBudgetRefreshes, &kRedisErrors,  &kFleetInstances,
    &kFleetShare,   &kFleetSkew,       &kFleetSkewed};

}  // namespace metrics
}  // namespace spillway

#endif  // SPILLWAY_METRIC_NAMES_H_
