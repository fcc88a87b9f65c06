// CaptureLog: a LogSink that keeps every line, for tests that assert "one
// log line per transition" and read what it says.
//
//   spillway::test::CaptureLog log;
//   ... component with options.log = &log ...
//   EXPECT_EQ(log.Count(spillway::LogLevel::kWarning), 1);
//   EXPECT_THAT(log.Lines(), Contains(HasSubstr("safe_share")));
//
// `on_log`, when set, runs inside Log() on the logging thread (after the
// line is stored): a test can block a background thread there.

#ifndef SPILLWAY_TESTS_COMMON_CAPTURE_LOG_H_
#define SPILLWAY_TESTS_COMMON_CAPTURE_LOG_H_

#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "spillway/log.h"

namespace spillway::test {

class CaptureLog final : public LogSink {
 public:
  void Log(LogLevel level, absl::string_view line) override {
    std::function<void(LogLevel, absl::string_view)> hook;
    {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.emplace_back(level, std::string(line));
      hook = on_log_;
    }
    if (hook) hook(level, line);
  }

  void set_on_log(std::function<void(LogLevel, absl::string_view)> hook) {
    std::lock_guard<std::mutex> lock(mu_);
    on_log_ = std::move(hook);
  }

  std::vector<std::string> Lines() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    for (const auto& [level, line] : lines_) out.push_back(line);
    return out;
  }

  int Count(LogLevel level) const {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (const auto& entry : lines_) n += entry.first == level ? 1 : 0;
    return n;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::pair<LogLevel, std::string>> lines_;
  std::function<void(LogLevel, absl::string_view)> on_log_;
};

}  // namespace spillway::test

#endif  // SPILLWAY_TESTS_COMMON_CAPTURE_LOG_H_
