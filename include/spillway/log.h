// LogSink: where spillway writes its rare log lines.
//
// spillway logs state transitions only — a fleet budget falling back to its
// fail mode and coming back, a fleet turning skewed, a throttle naming the
// cause of an overload — never per write. Each component takes a `LogSink*`
// in its options; the default, DefaultLogSink(), writes to stderr at most 10
// lines at once and 1 line per second after that (a flapping state cannot
// flood the log). Replace it to route lines into your own logger:
//
//   class MyLog final : public spillway::LogSink {
//     void Log(spillway::LogLevel level, absl::string_view line) override {
//       my_logger.Write(ToMyLevel(level), line);
//     }
//   };
//
// Wrap any sink in RateLimitedLogSink to keep its rate bounded too.
//
// Thread safety: `Log` may be called from any thread, including spillway's
// background threads; every implementation must be thread-safe.

#ifndef SPILLWAY_LOG_H_
#define SPILLWAY_LOG_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/strings/string_view.h"
#include "spillway/clock.h"

namespace spillway {

class TokenBucket;

enum class LogLevel { kInfo, kWarning, kError };

// "info", "warning", "error". Thread-safe.
absl::string_view LogLevelName(LogLevel level);

class LogSink {
 public:
  virtual ~LogSink() = default;
  // Writes one line (without a trailing newline). Thread-safe.
  virtual void Log(LogLevel level, absl::string_view line) = 0;
};

// Writes "spillway <level>: <line>\n" to stderr, one write per line.
// Process-wide and stateless. Thread-safe.
LogSink& StderrLogSink();

// Passes at most `burst` lines at once and `lines_per_second` on average to
// `inner` (a TokenBucket); lines over that are dropped and counted, and the
// next line passed says how many were suppressed:
//   "... (3 lines suppressed)".
// Thread-safe; lock-free.
class RateLimitedLogSink final : public LogSink {
 public:
  // REQUIRES: lines_per_second > 0, burst >= 1; `inner` and `clock` outlive
  // the sink. Out-of-range values (also beyond TokenBucketOptions' bounds)
  // are clamped to the nearest valid one.
  RateLimitedLogSink(LogSink& inner, double lines_per_second, int burst,
                     Clock& clock = SteadyClock::Default());
  ~RateLimitedLogSink() override;

  void Log(LogLevel level, absl::string_view line) override;

  // Lines dropped so far. Thread-safe.
  int64_t suppressed() const { return total_.load(std::memory_order_relaxed); }

 private:
  LogSink& inner_;
  // The rate limit itself: a TokenBucket on `clock`.
  const std::unique_ptr<TokenBucket> bucket_;
  std::atomic<int64_t> pending_{0};  // Suppressed since the last line.
  std::atomic<int64_t> total_{0};    // Suppressed ever.
};

// Swallows every line: for runs whose state changes are read elsewhere (a
// simulator reads the overload cause from the throttle). Process-wide and
// stateless. Thread-safe.
LogSink& NullLogSink();

// The default of every component: StderrLogSink() rate-limited to 1 line
// per second with a burst of 10. Process-wide. Thread-safe.
LogSink& DefaultLogSink();

}  // namespace spillway

#endif  // SPILLWAY_LOG_H_
