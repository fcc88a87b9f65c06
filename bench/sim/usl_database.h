// UslDatabase: a database with a knee, for the overload simulator.
//
// The model is the Universal Scalability Law (Neil Gunther, "Guerrilla
// Capacity Planning", 2007;
// http://www.perfdynamics.com/Manifesto/USLscalability.html) with processor
// sharing. With N writes in service the database completes
//
//   X(N) = c * lambda * N / (1 + sigma * (N - 1) + kappa * N * (N - 1))
//
// writes per second, where lambda is the throughput of one write alone,
// sigma the contention (serialized fraction: locks, the WAL), kappa the
// coherency cost (every pair of writes interferes: lock waits, cache and
// buffer churn), and c the capacity factor (1 normally; the `slowdown`
// scenario halves it). With kappa > 0 throughput peaks at
//
//   N* = sqrt((1 - sigma) / kappa),   peak = X(N*)
//
// and falls past it: more concurrency makes the database slower in total,
// not only per write. That knee is what an overload protection must find.
// N* does not depend on lambda or c; the peak scales with both. Defaults
// (lambda = 200/s, i.e. 5 ms per write alone, sigma = 0.05, kappa = 0.002)
// give N* = 21.8 and a peak of 1479.5 writes/s; at N = 100 the database does
// 777/s, at N = 500 only 190/s, at N = 1000 98/s.
//
// Processor sharing: every write in service progresses at the same rate
// X(N) / N units of work per second; a write needs `work` units (1 by
// default: 1 / lambda seconds alone). So a write's service time depends on
// everything that runs beside it for its whole life, as in a real database.
//
// The algorithm: a global attained-service counter S(t) with
// dS/dt = X(N) / N is what every write in service has received since S was
// zero. A write arriving at S = s with work w finishes when S reaches
// s + w, its target. The pending targets sit in a min-heap, so the next
// completion is the smallest target, at now + (target - S) / (X(N) / N).
// Every arrival, completion, cancellation or capacity change first advances
// S to its time, then changes N. Each event is O(log N), never O(N). With
// equal work the heap pops in arrival order: processor sharing with equal
// work is FIFO.
//
// Abandonment: a write whose client gave up keeps running unless `Cancel`
// is called — a database does not notice that the client went away. The
// simulation cancels only when asked to (`--cancel_abandoned`); by default
// abandoned writes keep loading the database, which is what makes a
// retry storm cascade.
//
//   auto db = *spillway::sim::UslDatabase::Create({});
//   db->Submit(SimTime(0.0), /*work=*/1.0, /*tag=*/7);
//   SimTime done = db->next_completion();      // 5 ms: alone at lambda
//   uint64_t tag = db->CompleteNext().tag;     // 7
//
// Thread safety: not thread-safe; the simulation is single-threaded.

#ifndef SPILLWAY_BENCH_SIM_USL_DATABASE_H_
#define SPILLWAY_BENCH_SIM_USL_DATABASE_H_

#include <cstdint>
#include <memory>
#include <queue>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bench/sim/sim_time.h"

namespace spillway::sim {

struct DatabaseOptions {
  // Throughput of one write alone, writes/s (lambda): a lone write takes
  // 1 / lambda seconds. Default: 200 (5 ms). REQUIRES: > 0.
  double lambda = 200.0;
  // Contention coefficient (sigma). Default: 0.05. REQUIRES: in [0, 1).
  double sigma = 0.05;
  // Coherency coefficient (kappa); > 0 makes the knee. Default: 0.002.
  // REQUIRES: > 0.
  double kappa = 0.002;
};

// Checks every field; the error names the field and its value. Thread-safe.
absl::Status ValidateDatabaseOptions(const DatabaseOptions& options);

// X(n) at capacity factor 1, writes/s; 0 for n <= 0. Thread-safe.
double UslThroughput(const DatabaseOptions& options, double n);
// N* = sqrt((1 - sigma) / kappa). Thread-safe.
double UslPeakConcurrency(const DatabaseOptions& options);
// X(N*) at capacity factor 1, writes/s. Thread-safe.
double UslPeak(const DatabaseOptions& options);

class UslDatabase {
 public:
  // Identifies a write in service, for Cancel. Stale after the write
  // completes or is cancelled (Cancel then returns false).
  struct Handle {
    uint32_t slot = 0;
    uint32_t generation = 0;
  };
  // A finished write: the tag it was submitted with and when it finished.
  struct Completion {
    uint64_t tag = 0;
    SimTime at{0};
  };

  // Validates `options` and builds an empty database at time 0 with
  // capacity factor 1. Thread-safe.
  static absl::StatusOr<std::unique_ptr<UslDatabase>> Create(
      const DatabaseOptions& options);

  UslDatabase(const UslDatabase&) = delete;
  UslDatabase& operator=(const UslDatabase&) = delete;

  // Starts a write of `work` units at `now`; `tag` comes back in its
  // Completion. REQUIRES: work > 0; now >= every earlier call's time and
  // <= next_completion(). Not thread-safe.
  Handle Submit(SimTime now, double work, uint64_t tag);

  // Removes a write from service at `now` without completing it; returns
  // false when it already finished or was cancelled. REQUIRES: as Submit.
  // Not thread-safe.
  bool Cancel(SimTime now, Handle handle);

  // When the next write finishes if nothing else changes; kNever when none
  // is in service. Not thread-safe.
  SimTime next_completion() const { return next_completion_; }

  // Advances to next_completion() and finishes that write.
  // REQUIRES: in_service() > 0. Not thread-safe.
  Completion CompleteNext();

  // Sets the capacity factor c from `now` on (see the file comment).
  // REQUIRES: factor > 0; `now` as Submit. Not thread-safe.
  void SetCapacityFactor(SimTime now, double factor);

  // X(n) at the current capacity factor, writes/s. Not thread-safe.
  double Throughput(double n) const {
    return capacity_factor_ * UslThroughput(options_, n);
  }
  // X(N*) at the current capacity factor. Not thread-safe.
  double peak() const { return capacity_factor_ * UslPeak(options_); }
  // N*. Not thread-safe.
  double peak_concurrency() const { return UslPeakConcurrency(options_); }
  double capacity_factor() const { return capacity_factor_; }
  const DatabaseOptions& options() const { return options_; }

  // Writes in service now (N), abandoned ones included. Not thread-safe.
  int in_service() const { return in_service_; }
  // Units of work completed by each write in service since time 0 (S at the
  // last event). Not thread-safe.
  double attained_service() const { return attained_; }

 private:
  explicit UslDatabase(const DatabaseOptions& options);

  // A pending write in the heap: it finishes when attained_ reaches target.
  struct Entry {
    double target;
    uint64_t seq;  // Submission order: ties finish first-come first-served.
    uint32_t slot;
  };
  struct Later {
    bool operator()(const Entry& a, const Entry& b) const {
      return a.target != b.target ? a.target > b.target : a.seq > b.seq;
    }
  };
  struct Slot {
    uint64_t tag = 0;
    uint32_t generation = 0;
    bool live = false;
  };

  // Rate of progress of each write in service: X(N) / N, units/s.
  double RatePerWrite() const;
  // Advances attained_ to `now` at the current rate.
  void AdvanceTo(SimTime now);
  // Drops cancelled entries from the heap's top and recomputes
  // next_completion_.
  void Reschedule();
  void FreeSlot(uint32_t slot);

  const DatabaseOptions options_;
  double capacity_factor_ = 1.0;
  // S: service every write in service has received since time 0.
  double attained_ = 0.0;
  // Time of the last event; attained_ is exact at this time.
  SimTime last_update_{0};
  SimTime next_completion_ = kNever;
  int in_service_ = 0;
  uint64_t next_seq_ = 0;
  // Pending targets; cancelled writes stay until they reach the top.
  std::priority_queue<Entry, std::vector<Entry>, Later> heap_;
  // Write state by slot, reused through free_slots_; the generation makes
  // stale handles harmless.
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
};

}  // namespace spillway::sim

#endif  // SPILLWAY_BENCH_SIM_USL_DATABASE_H_
