#include "bench/sim/simulation.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <optional>
#include <queue>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/sim/random.h"
#include "spillway/testing/simulated_clock.h"

namespace spillway::sim {
namespace {

enum class EventType : uint8_t {
  kArrival,   // a: stream. A new logical write.
  kRedraw,    // a: stream. The stream's rate changed: draw the next gap.
  kRetry,     // a: stream, b: attempt number (1-based retry).
  kDeadline,  // c: attempt tag.
  kCapacity,  // b: capacity schedule step.
  kSample,    // Record the time series.
};

struct Event {
  SimTime at;
  uint64_t seq;
  EventType type;
  uint32_t a;
  uint32_t b;
  uint64_t c;
};

struct EventLater {
  bool operator()(const Event& x, const Event& y) const {
    return x.at != y.at ? x.at > y.at : x.seq > y.seq;
  }
};

// An admitted attempt waiting for the database or its deadline.
struct Attempt {
  ThrottlePermit permit;
  SimTime start{0};
  SimTime deadline{0};
  UslDatabase::Handle db;
  uint32_t generation = 0;
  uint32_t stream = 0;
  uint32_t retry = 0;  // 0 for the first attempt.
  bool live = false;
};

// The simulated database's count of completed writes, from every
// instance, read at the simulated time (the simulation is one thread).
class SimWriteRate final : public DatabaseWriteRate {
 public:
  explicit SimWriteRate(const Clock& clock) : clock_(clock) {}
  std::optional<WriteCountReading> Latest() const override {
    return WriteCountReading{completed, clock_.Now()};
  }
  int64_t completed = 0;

 private:
  const Clock& clock_;
};

class Simulation {
 public:
  Simulation(const SimulationOptions& options, const RunSpec& run,
             std::unique_ptr<UslDatabase> db)
      : options_(options),
        run_(run),
        db_(std::move(db)),
        rng_(options.seed),
        deadline_(SimTime(absl::ToDoubleSeconds(options.client.deadline))),
        backoff_base_(
            SimTime(absl::ToDoubleSeconds(options.client.backoff_base))),
        sample_interval_(
            SimTime(absl::ToDoubleSeconds(options.sample_interval))),
        peak_(db_->peak()) {}

  absl::Status Init(const Contender& contender) {
    ContenderContext context;
    context.instances = options_.instances;
    context.database_peak = peak_;
    context.peak_concurrency = db_->peak_concurrency();
    context.deadline = options_.client.deadline;
    context.database_rate = database_rate_;
    for (int i = 0; i < options_.instances; ++i) {
      context.instance = i;
      absl::StatusOr<ConcurrencyLimiterOptions> limiter_options =
          contender.factory(context);
      if (!limiter_options.ok()) return limiter_options.status();
      // The real facade with the limiter alone: its overload detector sees
      // what a service's throttle would.
      WriteThrottleOptions throttle_options;
      throttle_options.name = absl::StrCat(contender.name, "/", i);
      throttle_options.limiter = *std::move(limiter_options);
      throttle_options.overload = options_.overload;
      throttle_options.clock = &clock_;
      // Cause changes are read from RunResult, not logged.
      throttle_options.log = &NullLogSink();
      absl::StatusOr<std::unique_ptr<WriteThrottle>> throttle =
          WriteThrottle::Create(std::move(throttle_options));
      if (!throttle.ok()) return throttle.status();
      throttles_.push_back(*std::move(throttle));
    }

    // Cumulative weights per step of the balancer's schedule.
    for (const auto& [at, weights] : run_.weights.steps()) {
      std::vector<double> cumulative(options_.instances);
      double sum = 0.0;
      for (int i = 0; i < options_.instances; ++i) {
        sum += weights.empty() ? 1.0 : weights[i];
        cumulative[i] = sum;
      }
      cumulative_weights_.push_back(std::move(cumulative));
    }

    const int bins = static_cast<int>(std::ceil(run_.duration / kBinWidth));
    result_.run = run_.name;
    result_.contender = contender.name;
    result_.peak = peak_;
    result_.peak_concurrency = db_->peak_concurrency();
    result_.instances = options_.instances;
    result_.duration = run_.duration;
    for (Bins& b : result_.bins) {
      for (std::vector<int64_t>* v : {&b.arrivals, &b.attempts, &b.rejected,
                                      &b.successes, &b.timeouts, &b.gave_up}) {
        v->assign(bins, 0);
      }
    }
    result_.instance_attempts.assign(options_.instances,
                                     std::vector<int64_t>(bins, 0));
    result_.instance_rejected.assign(options_.instances,
                                     std::vector<int64_t>(bins, 0));
    result_.instance_cause.assign(options_.instances, {});
    return absl::OkStatus();
  }

  RunResult Run() {
    const SimTime zero(0);
    for (uint32_t s = 0; s < run_.streams.size(); ++s) {
      ScheduleNextArrival(s, zero);
    }
    const auto& capacity = run_.capacity.steps();
    for (uint32_t i = 0; i < capacity.size(); ++i) {
      Push(capacity[i].first, EventType::kCapacity, 0, i, 0);
    }
    Push(zero, EventType::kSample, 0, 0, 0);

    for (;;) {
      const SimTime db_next = db_->next_completion();
      const SimTime event_next = events_.empty() ? kNever : events_.top().at;
      const SimTime next = std::min(db_next, event_next);
      if (next >= run_.duration || next == kNever) break;
      SetClock(next);
      ++result_.events;
      if (db_next <= event_next) {
        OnCompletion(db_->CompleteNext());
        continue;
      }
      const Event e = events_.top();
      events_.pop();
      switch (e.type) {
        case EventType::kArrival:
          ++Stream(e.a).arrivals[Bin(e.at)];
          Send(e.a, 0, e.at);
          ScheduleNextArrival(e.a, e.at);
          break;
        case EventType::kRedraw:
          ScheduleNextArrival(e.a, e.at);
          break;
        case EventType::kRetry:
          Send(e.a, e.b, e.at);
          break;
        case EventType::kDeadline:
          OnDeadline(e.c, e.at);
          break;
        case EventType::kCapacity:
          db_->SetCapacityFactor(e.at, run_.capacity.steps()[e.b].second);
          break;
        case EventType::kSample:
          OnSample(e.at);
          break;
      }
    }
    // Every permit goes back before the limiters are destroyed.
    for (Attempt& a : attempts_) a.permit.Ignore();
    return std::move(result_);
  }

 private:
  void Push(SimTime at, EventType type, uint32_t a, uint32_t b, uint64_t c) {
    events_.push(Event{at, next_seq_++, type, a, b, c});
  }

  void SetClock(SimTime t) {
    clock_.AdvanceTo(clock_start_ +
                     std::chrono::duration_cast<MonotonicTime::duration>(
                         std::chrono::round<std::chrono::nanoseconds>(t)));
  }

  int Bin(SimTime t) const {
    const int bin = static_cast<int>(t / kBinWidth);
    return std::min(bin, static_cast<int>(result_.bins[0].attempts.size()) - 1);
  }

  Bins& Stream(uint32_t stream) {
    return result_.bins[static_cast<int>(run_.streams[stream].priority)];
  }

  // Poisson arrivals with a piecewise-constant rate (see simulation.h).
  void ScheduleNextArrival(uint32_t stream, SimTime now) {
    const Schedule<double>& offered = run_.streams[stream].offered;
    const double rate = offered.At(now) * peak_;
    const SimTime change = offered.NextChangeAfter(now);
    if (rate <= 0.0) {
      if (change != kNever) Push(change, EventType::kRedraw, stream, 0, 0);
      return;
    }
    const SimTime next = now + SimTime(rng_.Exponential(1.0 / rate));
    if (next >= change) {
      Push(change, EventType::kRedraw, stream, 0, 0);
    } else {
      Push(next, EventType::kArrival, stream, 0, 0);
    }
  }

  int PickInstance(SimTime now) {
    const std::vector<double>& cumulative =
        cumulative_weights_[run_.weights.IndexAt(now)];
    const double x = rng_.Uniform() * cumulative.back();
    const auto it = std::upper_bound(cumulative.begin(), cumulative.end(), x);
    return std::min(static_cast<int>(it - cumulative.begin()),
                    options_.instances - 1);
  }

  // One attempt of a logical write of `stream`; `retry` is 0 for the first.
  void Send(uint32_t stream, uint32_t retry, SimTime now) {
    const int bin = Bin(now);
    const int instance = PickInstance(now);
    Bins& bins = Stream(stream);
    ++bins.attempts[bin];
    ++result_.instance_attempts[instance][bin];

    ThrottleAdmission admission =
        throttles_[instance]->Admit({.priority = run_.streams[stream].priority,
                                     .attempt = static_cast<int>(retry) + 1});
    if (!admission.ok()) {
      ++bins.rejected[bin];
      ++result_.instance_rejected[instance][bin];
      Failed(stream, retry, now);
      return;
    }
    uint32_t slot;
    if (free_attempts_.empty()) {
      slot = static_cast<uint32_t>(attempts_.size());
      attempts_.emplace_back();
    } else {
      slot = free_attempts_.back();
      free_attempts_.pop_back();
    }
    Attempt& a = attempts_[slot];
    a.permit = std::move(admission).permit();
    a.start = now;
    a.deadline = now + deadline_;
    a.stream = stream;
    a.retry = retry;
    a.live = true;
    const uint64_t tag = (static_cast<uint64_t>(a.generation) << 32) | slot;
    const double work = options_.exponential_work ? rng_.Exponential(1.0) : 1.0;
    a.db = db_->Submit(now, work, tag);
    Push(a.deadline, EventType::kDeadline, 0, 0, tag);
  }

  // The attempt failed (rejected or timed out): back off and retry, or give
  // up.
  void Failed(uint32_t stream, uint32_t retry, SimTime now) {
    if (static_cast<int>(retry) >= options_.client.max_retries) {
      ++Stream(stream).gave_up[Bin(now)];
      return;
    }
    const uint32_t next = retry + 1;
    const SimTime cap =
        backoff_base_ * std::ldexp(1.0, static_cast<int>(next) - 1);
    Push(now + cap * rng_.Uniform(), EventType::kRetry, stream, next, 0);
  }

  // The live attempt with `tag`, or nullptr when it already ended.
  Attempt* Find(uint64_t tag) {
    const uint32_t slot = static_cast<uint32_t>(tag);
    const uint32_t generation = static_cast<uint32_t>(tag >> 32);
    Attempt& a = attempts_[slot];
    return a.live && a.generation == generation ? &a : nullptr;
  }

  void Free(Attempt& a) {
    a.live = false;
    ++a.generation;
    free_attempts_.push_back(static_cast<uint32_t>(&a - attempts_.data()));
  }

  void Record(const Attempt& a, SimTime end) {
    result_.latencies[static_cast<int>(run_.streams[a.stream].priority)]
        .push_back(LatencySample{static_cast<float>(end.count()),
                                 static_cast<float>((end - a.start).count())});
  }

  void OnCompletion(const UslDatabase::Completion& done) {
    ++database_rate_->completed;
    Attempt* a = Find(done.tag);
    if (a == nullptr) {
      ++result_.abandoned_completions;
      return;
    }
    // The deadline event is still queued; it will find the attempt gone.
    // A completion exactly at the deadline is in time: completions are
    // handled before events of the same time.
    a->permit.Success();
    ++Stream(a->stream).successes[Bin(done.at)];
    Record(*a, done.at);
    Free(*a);
  }

  void OnDeadline(uint64_t tag, SimTime now) {
    Attempt* a = Find(tag);
    if (a == nullptr) return;
    a->permit.Dropped();
    ++Stream(a->stream).timeouts[Bin(now)];
    Record(*a, now);
    if (options_.cancel_abandoned) db_->Cancel(now, a->db);
    const uint32_t stream = a->stream;
    const uint32_t retry = a->retry;
    Free(*a);
    Failed(stream, retry, now);
  }

  void OnSample(SimTime now) {
    SeriesPoint p;
    p.at = now;
    for (int i = 0; i < options_.instances; ++i) {
      WriteThrottle& throttle = *throttles_[i];
      p.limit_sum += throttle.limiter().limit();
      result_.instance_cause[i].push_back(throttle.overload_cause());
    }
    p.in_service = db_->in_service();
    result_.series.push_back(p);
    Push(now + sample_interval_, EventType::kSample, 0, 0, 0);
  }

  const SimulationOptions& options_;
  const RunSpec& run_;
  const std::unique_ptr<UslDatabase> db_;
  Rng rng_;
  const SimTime deadline_;
  const SimTime backoff_base_;
  const SimTime sample_interval_;
  // The database's peak at full capacity: loads are multiples of it.
  const double peak_;

  // The one clock of the run; every limiter reads it.
  testing::SimulatedClock clock_;
  const MonotonicTime clock_start_ = clock_.Now();
  const std::shared_ptr<SimWriteRate> database_rate_ =
      std::make_shared<SimWriteRate>(clock_);
  // Declared before attempts_ so that permits are released first on
  // destruction too (members are destroyed in reverse order).
  std::vector<std::unique_ptr<WriteThrottle>> throttles_;
  std::vector<std::vector<double>> cumulative_weights_;
  std::priority_queue<Event, std::vector<Event>, EventLater> events_;
  uint64_t next_seq_ = 0;
  std::vector<Attempt> attempts_;
  std::vector<uint32_t> free_attempts_;
  RunResult result_;
};

}  // namespace

absl::Status ValidateSimulationOptions(const SimulationOptions& o) {
  if (absl::Status s = ValidateDatabaseOptions(o.database); !s.ok()) return s;
  if (o.client.deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("ClientOptions.deadline must be > 0; got %s",
                        absl::FormatDuration(o.client.deadline)));
  }
  if (o.client.max_retries < 0 || o.client.max_retries > 100) {
    return absl::InvalidArgumentError(
        absl::StrFormat("ClientOptions.max_retries must be in [0, 100]; got %d",
                        o.client.max_retries));
  }
  if (o.client.backoff_base < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("ClientOptions.backoff_base must be >= 0; got %s",
                        absl::FormatDuration(o.client.backoff_base)));
  }
  if (o.instances < 1 || o.instances > 1024) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "SimulationOptions.instances must be in [1, 1024]; got %d",
        o.instances));
  }
  if (o.sample_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("SimulationOptions.sample_interval must be > 0; got %s",
                        absl::FormatDuration(o.sample_interval)));
  }
  return absl::OkStatus();
}

absl::StatusOr<RunResult> Simulate(const SimulationOptions& options,
                                   const RunSpec& run,
                                   const Contender& contender) {
  if (absl::Status s = ValidateSimulationOptions(options); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<UslDatabase>> db =
      UslDatabase::Create(options.database);
  if (!db.ok()) return db.status();
  Simulation simulation(options, run, *std::move(db));
  if (absl::Status s = simulation.Init(contender); !s.ok()) return s;
  return simulation.Run();
}

}  // namespace spillway::sim
