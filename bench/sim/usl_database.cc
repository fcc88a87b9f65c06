#include "bench/sim/usl_database.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace spillway::sim {

absl::Status ValidateDatabaseOptions(const DatabaseOptions& o) {
  if (!(o.lambda > 0.0) || !std::isfinite(o.lambda)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "DatabaseOptions.lambda must be finite and > 0; got %g", o.lambda));
  }
  if (!(o.sigma >= 0.0 && o.sigma < 1.0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "DatabaseOptions.sigma must be in [0, 1); got %g", o.sigma));
  }
  if (!(o.kappa > 0.0) || !std::isfinite(o.kappa)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "DatabaseOptions.kappa must be finite and > 0; got %g", o.kappa));
  }
  return absl::OkStatus();
}

double UslThroughput(const DatabaseOptions& o, double n) {
  if (n <= 0.0) return 0.0;
  return o.lambda * n / (1.0 + o.sigma * (n - 1.0) + o.kappa * n * (n - 1.0));
}

double UslPeakConcurrency(const DatabaseOptions& o) {
  return std::sqrt((1.0 - o.sigma) / o.kappa);
}

double UslPeak(const DatabaseOptions& o) {
  return UslThroughput(o, UslPeakConcurrency(o));
}

absl::StatusOr<std::unique_ptr<UslDatabase>> UslDatabase::Create(
    const DatabaseOptions& options) {
  if (absl::Status s = ValidateDatabaseOptions(options); !s.ok()) return s;
  return std::unique_ptr<UslDatabase>(new UslDatabase(options));
}

UslDatabase::UslDatabase(const DatabaseOptions& options) : options_(options) {}

double UslDatabase::RatePerWrite() const {
  // X(N) / N without the division by N: c * lambda / (1 + sigma (N-1) +
  // kappa N (N-1)).
  const double n = in_service_;
  return capacity_factor_ * options_.lambda /
         (1.0 + options_.sigma * (n - 1.0) + options_.kappa * n * (n - 1.0));
}

void UslDatabase::AdvanceTo(SimTime now) {
  if (now <= last_update_) return;
  if (in_service_ > 0) {
    attained_ += RatePerWrite() * (now - last_update_).count();
  }
  last_update_ = now;
}

void UslDatabase::Reschedule() {
  while (!heap_.empty() && !slots_[heap_.top().slot].live) {
    FreeSlot(heap_.top().slot);
    heap_.pop();
  }
  if (heap_.empty()) {
    next_completion_ = kNever;
    return;
  }
  // Rounding can leave S a hair past the target; the write is then due now.
  const double remaining = std::max(0.0, heap_.top().target - attained_);
  next_completion_ = last_update_ + SimTime(remaining / RatePerWrite());
}

void UslDatabase::FreeSlot(uint32_t slot) {
  Slot& s = slots_[slot];
  s.live = false;
  ++s.generation;
  free_slots_.push_back(slot);
}

UslDatabase::Handle UslDatabase::Submit(SimTime now, double work,
                                        uint64_t tag) {
  AdvanceTo(now);
  uint32_t slot;
  if (free_slots_.empty()) {
    slot = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  } else {
    slot = free_slots_.back();
    free_slots_.pop_back();
  }
  Slot& s = slots_[slot];
  s.tag = tag;
  s.live = true;
  heap_.push(Entry{attained_ + work, next_seq_++, slot});
  ++in_service_;
  Reschedule();
  return Handle{slot, s.generation};
}

bool UslDatabase::Cancel(SimTime now, Handle handle) {
  if (handle.slot >= slots_.size()) return false;
  Slot& s = slots_[handle.slot];
  if (!s.live || s.generation != handle.generation) return false;
  AdvanceTo(now);
  // The heap entry stays until it reaches the top (lazy deletion); the slot
  // is freed then, so its generation cannot be reused while in the heap.
  s.live = false;
  --in_service_;
  Reschedule();
  return true;
}

UslDatabase::Completion UslDatabase::CompleteNext() {
  const SimTime now = next_completion_;
  AdvanceTo(now);
  const Entry top = heap_.top();
  heap_.pop();
  // Exactly at the target: the others' remaining work is measured from here.
  attained_ = std::max(attained_, top.target);
  const uint64_t tag = slots_[top.slot].tag;
  FreeSlot(top.slot);
  --in_service_;
  Reschedule();
  return Completion{tag, now};
}

void UslDatabase::SetCapacityFactor(SimTime now, double factor) {
  AdvanceTo(now);
  capacity_factor_ = factor;
  Reschedule();
}

}  // namespace spillway::sim
