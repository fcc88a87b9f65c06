#include "spillway/log.h"

#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace spillway {
namespace {

class StderrSink final : public LogSink {
 public:
  void Log(LogLevel level, absl::string_view line) override {
    // One write(2) per line, so lines from several threads never interleave.
    const std::string out =
        absl::StrCat("spillway ", LogLevelName(level), ": ", line, "\n");
    size_t done = 0;
    while (done < out.size()) {
      const ssize_t n =
          ::write(STDERR_FILENO, out.data() + done, out.size() - done);
      if (n <= 0) return;  // Nowhere to report a failing stderr.
      done += static_cast<size_t>(n);
    }
  }
};

}  // namespace

absl::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "unknown";
}

LogSink& StderrLogSink() {
  static StderrSink* const sink = new StderrSink();
  return *sink;
}

}  // namespace spillway
