// LimitAlgorithm: the step function of an adaptive concurrency limit.
//
// An algorithm looks at one aggregated window of completed writes and
// returns the next limit. It holds whatever state it needs (a no-load RTT
// estimate, smoothed averages) and is called by one thread at a time, so it
// needs no synchronization of its own: `WindowedLimit` (windowed_limit.h)
// aggregates samples lock-free from every releasing thread and calls
// `Update` from the one thread that closes a window.
//
//   auto vegas = spillway::VegasLimit::Create({});   // a LimitAlgorithm
//   auto limit = spillway::WindowedLimit::Create(std::move(*vegas), {});
//   // *limit is a spillway::Limit for ConcurrencyLimiterOptions::limit.
//
// Algorithms whose source updates per sample (Netflix's Vegas and
// Gradient2) are tested by feeding windows of one sample each, the same
// inputs as their source's tests.
//
// Thread safety: not thread-safe; the caller serializes calls (WindowedLimit
// does).

#ifndef SPILLWAY_LIMIT_ALGORITHM_H_
#define SPILLWAY_LIMIT_ALGORITHM_H_

#include <chrono>

#include "spillway/clock.h"

namespace spillway {

// One closed window of completed writes (Success or Dropped; rejected and
// ignored writes are never samples).
struct WindowSample {
  // The aggregated round-trip time of the window's successful writes: their
  // average or a percentile (WindowOptions::aggregation). When every write
  // of the window was dropped, the average of the dropped ones.
  std::chrono::nanoseconds rtt{0};
  // The smallest round-trip time seen in the window.
  std::chrono::nanoseconds min_rtt{0};
  // The largest in-flight count at admission among the window's writes:
  // how much of the limit the application actually used.
  int max_in_flight = 0;
  // Writes in the window, and how many of them were dropped.
  int samples = 0;
  int dropped = 0;
  // When the window closed.
  MonotonicTime end{};

  bool any_dropped() const { return dropped > 0; }
};

class LimitAlgorithm {
 public:
  virtual ~LimitAlgorithm() = default;

  // The limit before any window. Not thread-safe (see file comment).
  virtual int initial_limit() const = 0;
  // Bounds of every value Update returns. Not thread-safe.
  virtual int min_limit() const = 0;
  virtual int max_limit() const = 0;

  // Returns the limit after `window`, given the limit in force while it was
  // collected. REQUIRES: window.samples > 0. Not thread-safe.
  virtual int Update(const WindowSample& window, int limit) = 0;

  // Writes admitted before this instant are left out of later windows (an
  // algorithm that starts a measurement at a pinned concurrency wants no
  // samples from before it). Read after every Update. Default: never
  // (MonotonicTime::min()). Not thread-safe.
  virtual MonotonicTime discard_before() const { return MonotonicTime::min(); }

  // The hint of Limit::OnDatabaseSlowdown, delivered by WindowedLimit
  // before the next Update. Default: ignored. Not thread-safe.
  virtual void OnDatabaseSlowdown() {}

  // The band of Limit::latency_band, read by WindowedLimit after every
  // Update and published. Default: 0 (none). Not thread-safe.
  virtual double latency_band() const { return 0; }
};

}  // namespace spillway

#endif  // SPILLWAY_LIMIT_ALGORITHM_H_
