// DatabaseWriteRate: how many writes the database completes, from every
// client, read in the background so a limit algorithm can ask what
// throughput a step of its limit bought.
//
// One instance's own throughput says nothing about the database's: in a
// fleet, an instance that raises its limit takes writes from the others
// (its throughput rises while the database's does not). The database's own
// count of completed writes is shared by every instance, so it can tell "a
// higher limit bought throughput" (group commit, where latency climbs long
// before throughput stops climbing) from "a higher limit bought queueing".
// KneeLimit uses it to widen its latency band (knee_limit.h).
//
// A WriteRateMonitor calls `read_count` every `interval` on a thread of its
// own and publishes the latest reading; readers never wait for the database.
//
//   spillway::WriteRateMonitorOptions options;
//   options.read_count = [] { return ReadCommittedCount(); };  // any source
//   auto monitor = spillway::WriteRateMonitor::Create(std::move(options));
//   spillway::KneeLimitOptions knee;
//   knee.database_rate = std::shared_ptr<spillway::WriteRateMonitor>(
//       std::move(*monitor));
//
// For PostgreSQL, spillway::pqxx::MonitorWriteRate (pqxx/throttled_writer.h)
// builds a monitor on a TransactionCounter.
//
// Thread safety: `Latest` is thread-safe and lock-free; the monitor's
// thread is the only one that calls `read_count`.

#ifndef SPILLWAY_WRITE_RATE_H_
#define SPILLWAY_WRITE_RATE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "spillway/clock.h"
#include "spillway/log.h"

namespace spillway {

// A cumulative count of the database's completed writes and when it was
// read.
struct WriteCountReading {
  int64_t writes = 0;
  MonotonicTime at{};
};

class DatabaseWriteRate {
 public:
  virtual ~DatabaseWriteRate() = default;

  // The latest good reading, or nullopt when there is none yet or the last
  // read failed (a rate across a gap in the readings would be a guess).
  // Thread-safe; lock-free, no system call.
  virtual std::optional<WriteCountReading> Latest() const = 0;
};

struct WriteRateMonitorOptions {
  // Reads the database's cumulative count of completed writes from every
  // client. A reader drops a rate across a count that went backwards (a
  // restarted server). Called on the monitor's thread only; it may block (a
  // query), but for no longer than about `interval`. REQUIRES: set.
  std::function<absl::StatusOr<int64_t>()> read_count;

  // Time between two reads. Default: 50 ms, the default window of
  // KneeLimit, which compares rates over several windows.
  // REQUIRES: in [1 ms, 60 s].
  absl::Duration interval = absl::Milliseconds(50);

  // Names the source in log lines. Default: "database".
  std::string name = "database";

  // Time source. Default: nullptr, meaning SteadyClock::Default().
  // REQUIRES: when set, outlives the monitor.
  Clock* clock = nullptr;

  // Where a failing count is logged: one line when reads start failing, one
  // when they succeed again. Default: nullptr, meaning DefaultLogSink().
  // REQUIRES: when set, outlives the monitor.
  LogSink* log = nullptr;
};

// Checks every field; the error names the field and its value. Thread-safe.
absl::Status ValidateWriteRateMonitorOptions(
    const WriteRateMonitorOptions& options);

class WriteRateMonitor final : public DatabaseWriteRate {
 public:
  // Validates `options`, takes a first reading (a failure is logged, not
  // returned: the database may come later) and starts the thread.
  // Thread-safe.
  static absl::StatusOr<std::unique_ptr<WriteRateMonitor>> Create(
      WriteRateMonitorOptions options);
  // Stops and joins the thread; waits for a read in progress (bound it in
  // `read_count`: a query timeout, a connect timeout). Not thread-safe with
  // other calls.
  ~WriteRateMonitor() override;

  WriteRateMonitor(const WriteRateMonitor&) = delete;
  WriteRateMonitor& operator=(const WriteRateMonitor&) = delete;

  std::optional<WriteCountReading> Latest() const override;

  // Reads attempted so far and how many of them failed. Thread-safe.
  int64_t reads() const { return reads_.load(std::memory_order_acquire); }
  int64_t failures() const { return failures_.load(std::memory_order_relaxed); }

 private:
  explicit WriteRateMonitor(WriteRateMonitorOptions options);
  void ReadOnce();
  void Run();

  const WriteRateMonitorOptions options_;
  Clock& clock_;
  LogSink& log_;
  // The published reading: a sequence lock. The thread makes `sequence_`
  // odd, writes the fields, makes it even; a reader retries when it saw an
  // odd or changed sequence. Readers take no lock and never block the
  // thread. Every access is seq_cst, which makes this correct without
  // fences (ThreadSanitizer does not model fences); it runs once per read
  // and once per window. `valid_` is false until the first good read and
  // after a failed one.
  std::atomic<uint64_t> sequence_{0};
  std::atomic<int64_t> writes_{0};
  std::atomic<int64_t> at_ns_{0};
  std::atomic<bool> valid_{false};
  std::atomic<int64_t> reads_{0};
  std::atomic<int64_t> failures_{0};
  // Only the thread (or Create, before it starts) touches these.
  bool failing_ = false;

  // Guards `stop_`; the thread waits on `cv_`.
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace spillway

#endif  // SPILLWAY_WRITE_RATE_H_
