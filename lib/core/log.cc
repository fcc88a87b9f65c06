#include "spillway/log.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "spillway/token_bucket.h"

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

namespace {

// A bucket for the sink's arguments, clamped into TokenBucketOptions'
// bounds (rate in (0, 1e9], burst in [1, 1e9], burst / rate <= 1e8 s), so
// creating it cannot fail.
std::unique_ptr<TokenBucket> LineBucket(double lines_per_second, int burst,
                                        Clock& clock) {
  TokenBucketOptions o;
  o.burst = std::clamp<double>(burst, 1.0, 1e9);
  o.rate = lines_per_second > 0 && std::isfinite(lines_per_second)
               ? std::clamp(lines_per_second, o.burst / 1e8, 1e9)
               : 1.0;
  o.name = "log";
  o.clock = &clock;
  return *TokenBucket::Create(o);
}

}  // namespace

RateLimitedLogSink::RateLimitedLogSink(LogSink& inner, double lines_per_second,
                                       int burst, Clock& clock)
    : inner_(inner), bucket_(LineBucket(lines_per_second, burst, clock)) {}

RateLimitedLogSink::~RateLimitedLogSink() = default;

void RateLimitedLogSink::Log(LogLevel level, absl::string_view line) {
  if (!bucket_->TryConsume(1)) {
    pending_.fetch_add(1, std::memory_order_relaxed);
    total_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const int64_t suppressed = pending_.exchange(0, std::memory_order_relaxed);
  if (suppressed == 0) {
    inner_.Log(level, line);
  } else {
    inner_.Log(level, absl::StrCat(line, " (", suppressed,
                                   suppressed == 1 ? " line" : " lines",
                                   " suppressed)"));
  }
}

LogSink& NullLogSink() {
  class NullSink final : public LogSink {
    void Log(LogLevel, absl::string_view) override {}
  };
  static NullSink* const sink = new NullSink();
  return *sink;
}

LogSink& DefaultLogSink() {
  static RateLimitedLogSink* const sink =
      new RateLimitedLogSink(StderrLogSink(), 1.0, 10);
  return *sink;
}

}  // namespace spillway
