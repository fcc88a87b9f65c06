// FixedLimit: a concurrency limit that never changes.
//
// The baseline algorithm: samples are ignored and `current()` is always the
// configured value. Useful when the database's capacity is known, in tests,
// and as the "best fixed limit" contender in the simulator.
//
//   auto limit = spillway::FixedLimit::Create(16);
//
// Thread safety: all methods are thread-safe and lock-free.

#ifndef SPILLWAY_FIXED_LIMIT_H_
#define SPILLWAY_FIXED_LIMIT_H_

#include <memory>

#include "absl/status/statusor.h"
#include "spillway/limit.h"

namespace spillway {

class FixedLimit final : public Limit {
 public:
  // REQUIRES: 1 <= limit <= kMaxConcurrencyLimit, else InvalidArgument.
  // Thread-safe.
  static absl::StatusOr<std::unique_ptr<FixedLimit>> Create(int limit);

  // Ignores the sample. Thread-safe.
  void OnSample(const LimitSample&) override {}
  // The fixed limit. Thread-safe.
  int max_limit() const override { return current(); }
  int min_limit() const override { return current(); }

 private:
  explicit FixedLimit(int limit) : Limit(limit) {}
};

}  // namespace spillway

#endif  // SPILLWAY_FIXED_LIMIT_H_
