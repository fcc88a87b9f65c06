#include "spillway/write_rate.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace spillway {

absl::Status ValidateWriteRateMonitorOptions(
    const WriteRateMonitorOptions& options) {
  if (!options.read_count) {
    return absl::InvalidArgumentError(
        "WriteRateMonitorOptions.read_count must be set; got an empty "
        "function");
  }
  if (options.interval < absl::Milliseconds(1) ||
      options.interval > absl::Seconds(60)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "WriteRateMonitorOptions.interval must be in [1ms, 60s]; got %s",
        absl::FormatDuration(options.interval)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<WriteRateMonitor>> WriteRateMonitor::Create(
    WriteRateMonitorOptions options) {
  if (absl::Status s = ValidateWriteRateMonitorOptions(options); !s.ok()) {
    return s;
  }
  std::unique_ptr<WriteRateMonitor> monitor(
      new WriteRateMonitor(std::move(options)));
  monitor->ReadOnce();
  WriteRateMonitor* raw = monitor.get();
  monitor->thread_ = std::thread([raw] { raw->Run(); });
  return monitor;
}

WriteRateMonitor::WriteRateMonitor(WriteRateMonitorOptions options)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? *options_.clock
                                       : SteadyClock::Default()),
      log_(options_.log != nullptr ? *options_.log : DefaultLogSink()) {}

WriteRateMonitor::~WriteRateMonitor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::optional<WriteCountReading> WriteRateMonitor::Latest() const {
  for (;;) {
    const uint64_t before = sequence_.load();
    if (before % 2 != 0) continue;  // The thread is publishing.
    const bool valid = valid_.load();
    const int64_t writes = writes_.load();
    const int64_t at_ns = at_ns_.load();
    if (sequence_.load() != before) continue;
    if (!valid) return std::nullopt;
    return WriteCountReading{writes,
                             MonotonicTime(std::chrono::nanoseconds(at_ns))};
  }
}

void WriteRateMonitor::ReadOnce() {
  absl::StatusOr<int64_t> count = options_.read_count();
  const MonotonicTime at = clock_.Now();
  if (count.ok() && *count < 0) {
    count =
        absl::DataLossError(absl::StrCat("the count is negative: ", *count));
  }
  const uint64_t s = sequence_.load();
  sequence_.store(s + 1);
  if (count.ok()) {
    valid_.store(true);
    writes_.store(*count);
    at_ns_.store(std::chrono::duration_cast<std::chrono::nanoseconds>(
                     at.time_since_epoch())
                     .count());
  } else {
    valid_.store(false);
  }
  sequence_.store(s + 2);

  if (!count.ok()) {
    failures_.fetch_add(1, std::memory_order_relaxed);
    if (!failing_) {
      log_.Log(LogLevel::kWarning,
               absl::StrCat("write rate of ", options_.name,
                            ": reading the count failed (",
                            count.status().ToString(),
                            "); the latency band stays at its default until "
                            "a read succeeds"));
    }
    failing_ = true;
  } else if (failing_) {
    failing_ = false;
    log_.Log(LogLevel::kInfo, absl::StrCat("write rate of ", options_.name,
                                           ": reading the count again"));
  }
  // Last: a test that sees the count of reads move sees this reading.
  reads_.fetch_add(1, std::memory_order_release);
}

void WriteRateMonitor::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    const MonotonicTime next = clock_.Now() + ToChrono(options_.interval);
    clock_.WaitUntil(cv_, lock, next, [this] { return stop_; });
    if (stop_) break;
    lock.unlock();
    ReadOnce();
    lock.lock();
  }
}

}  // namespace spillway
