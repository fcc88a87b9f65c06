#include "spillway/log.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "core/mutex.h"

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

struct RateLimitedLogSink::State {
  mutable internal::Mutex mu;
  double tokens ABSL_GUARDED_BY(mu);
  MonotonicTime last ABSL_GUARDED_BY(mu);
  int64_t pending ABSL_GUARDED_BY(mu) = 0;  // Suppressed since the last line.
  int64_t total ABSL_GUARDED_BY(mu) = 0;    // Suppressed ever.
};

RateLimitedLogSink::RateLimitedLogSink(LogSink& inner, double lines_per_second,
                                       int burst, Clock& clock)
    : inner_(inner),
      rate_(lines_per_second > 0 && std::isfinite(lines_per_second)
                ? lines_per_second
                : 1.0),
      burst_(std::max(1, burst)),
      clock_(clock),
      state_(new State) {
  internal::MutexLock lock(&state_->mu);
  state_->tokens = burst_;
  state_->last = clock_.Now();
}

RateLimitedLogSink::~RateLimitedLogSink() { delete state_; }

void RateLimitedLogSink::Log(LogLevel level, absl::string_view line) {
  int64_t suppressed = 0;
  {
    internal::MutexLock lock(&state_->mu);
    const MonotonicTime now = clock_.Now();
    if (now > state_->last) {
      const double elapsed =
          std::chrono::duration<double>(now - state_->last).count();
      state_->tokens = std::min(burst_, state_->tokens + elapsed * rate_);
      state_->last = now;
    }
    if (state_->tokens < 1.0) {
      ++state_->pending;
      ++state_->total;
      return;
    }
    state_->tokens -= 1.0;
    suppressed = state_->pending;
    state_->pending = 0;
  }
  // The inner sink is called outside the lock: it may be slow.
  if (suppressed == 0) {
    inner_.Log(level, line);
  } else {
    inner_.Log(level, absl::StrCat(line, " (", suppressed,
                                   suppressed == 1 ? " line" : " lines",
                                   " suppressed)"));
  }
}

int64_t RateLimitedLogSink::suppressed() const {
  internal::MutexLock lock(&state_->mu);
  return state_->total;
}

LogSink& DefaultLogSink() {
  static RateLimitedLogSink* const sink =
      new RateLimitedLogSink(StderrLogSink(), 1.0, 10);
  return *sink;
}

}  // namespace spillway
