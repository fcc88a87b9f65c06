// LogSink: where spillway writes its rare log lines.
//
// spillway logs state transitions only — a fleet budget falling back to its
// fail mode and coming back, a fleet turning skewed — never per write. Each
// component takes a `LogSink*` in its options; the default writes one line
// per message to stderr. Replace it to route lines into your own logger:
//
//   class MyLog final : public spillway::LogSink {
//     void Log(spillway::LogLevel level, absl::string_view line) override {
//       my_logger.Write(ToMyLevel(level), line);
//     }
//   };
//
// Thread safety: `Log` may be called from any thread, including spillway's
// background threads; every implementation must be thread-safe.

#ifndef SPILLWAY_LOG_H_
#define SPILLWAY_LOG_H_

#include "absl/strings/string_view.h"

namespace spillway {

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

}  // namespace spillway

#endif  // SPILLWAY_LOG_H_
