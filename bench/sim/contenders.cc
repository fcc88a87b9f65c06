#include "bench/sim/contenders.h"

#include <cstdint>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "spillway/aimd_limit.h"
#include "spillway/fixed_limit.h"
#include "spillway/gradient2_limit.h"
#include "spillway/gradient_limit.h"
#include "spillway/knee_limit.h"
#include "spillway/vegas_limit.h"
#include "spillway/windowed_limit.h"

namespace spillway::sim {
namespace {

absl::StatusOr<ConcurrencyLimiterOptions> MakeNone(const ContenderContext&) {
  return WithLimit(FixedLimit::Create(kMaxConcurrencyLimit));
}

absl::StatusOr<ConcurrencyLimiterOptions> MakeFixed(const ContenderContext&) {
  return WithLimit(FixedLimit::Create(kBestFixedLimit));
}

absl::StatusOr<ConcurrencyLimiterOptions> MakeAimd(
    const ContenderContext& context) {
  AimdLimitOptions aimd;
  aimd.min_limit = 1;
  aimd.timeout = context.deadline / 10;
  return WithLimit(AimdLimit::Create(aimd));
}

// Netflix's Vegas and Gradient2 update on every sample: a window closes at
// each sample.
WindowOptions PerSample() {
  return {.min_window = absl::Nanoseconds(1),
          .max_window = absl::Nanoseconds(1),
          .min_rtt_multiple = 1,
          .min_samples = 1};
}

template <typename A>
absl::StatusOr<ConcurrencyLimiterOptions> Windowed(
    absl::StatusOr<std::unique_ptr<A>> algorithm, const WindowOptions& window) {
  if (!algorithm.ok()) return algorithm.status();
  return WithLimit(WindowedLimit::Create(std::move(*algorithm), window));
}

absl::StatusOr<ConcurrencyLimiterOptions> MakeVegas(
    const ContenderContext& context) {
  VegasLimitOptions vegas;
  // Netflix's jitter, uniform in [0.5, 1), from a per-instance seed.
  vegas.probe_jitter =
      [rng = std::mt19937_64(1000 + context.instance)]() mutable {
        return 0.5 + 0.5 * static_cast<double>(rng() >> 11) * 0x1.0p-53;
      };
  return Windowed(VegasLimit::Create(vegas), PerSample());
}

absl::StatusOr<ConcurrencyLimiterOptions> MakeGradient2(
    const ContenderContext&) {
  return Windowed(Gradient2Limit::Create({}), PerSample());
}

absl::StatusOr<ConcurrencyLimiterOptions> MakeEnvoyGradient(
    const ContenderContext& context) {
  // Envoy's sample window: 100 ms, 50th percentile.
  return Windowed(GradientLimit::Create(
                      {.seed = static_cast<uint64_t>(2000 + context.instance)}),
                  {.min_window = absl::Milliseconds(100),
                   .max_window = absl::Milliseconds(100),
                   .aggregation = Aggregation::kPercentile,
                   .percentile = 0.5});
}

absl::StatusOr<ConcurrencyLimiterOptions> MakeSpillway(
    const ContenderContext&) {
  absl::StatusOr<std::shared_ptr<Limit>> limit = MakeDefaultLimit();
  if (!limit.ok()) return limit.status();
  ConcurrencyLimiterOptions options;
  options.limit = *limit;
  return options;
}

absl::StatusOr<ConcurrencyLimiterOptions> MakeSpillwayRate(
    const ContenderContext& context) {
  absl::StatusOr<std::shared_ptr<Limit>> limit =
      MakeDefaultLimit({.database_rate = context.database_rate});
  if (!limit.ok()) return limit.status();
  ConcurrencyLimiterOptions options;
  options.limit = *limit;
  return options;
}

}  // namespace

const std::vector<Contender>& Contenders() {
  // One line per contender; see contenders.h.
  static const auto* const kContenders = new std::vector<Contender>{
      {"none", "no protection (FixedLimit at kMaxConcurrencyLimit)", MakeNone},
      {"fixed",
       absl::StrCat("FixedLimit(", kBestFixedLimit,
                    ") per instance, best for steady"),
       MakeFixed},
      {"aimd", "AimdLimit, timeout = deadline/10, min_limit 1", MakeAimd},
      {"vegas", "VegasLimit, Netflix defaults, per sample", MakeVegas},
      {"gradient2", "Gradient2Limit, Netflix defaults, per sample",
       MakeGradient2},
      {"envoy_gradient",
       "GradientLimit (Envoy), 100 ms p50 windows, Envoy defaults",
       MakeEnvoyGradient},
      {"spillway", "MakeDefaultLimit(): KneeLimit in a WindowedLimit",
       MakeSpillway},
      {"spillway_rate",
       "the default given the database's write count (throughput probe)",
       MakeSpillwayRate},
  };
  return *kContenders;
}

const Contender* FindContender(absl::string_view name) {
  for (const Contender& c : Contenders()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

Contender FixedContender(int per_instance_limit) {
  return Contender{absl::StrCat("fixed", per_instance_limit),
                   absl::StrCat("FixedLimit(", per_instance_limit, ")"),
                   [per_instance_limit](const ContenderContext&) {
                     return WithLimit(FixedLimit::Create(per_instance_limit));
                   }};
}

}  // namespace spillway::sim
