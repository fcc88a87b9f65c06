// A std::mutex with Clang thread-safety annotations.
//
// spillway uses std::mutex rather than absl::Mutex because Debian's Abseil
// is built without ThreadSanitizer support: TSan cannot see absl::Mutex's
// happens-before edges and reports false races. This wrapper keeps the
// `ABSL_GUARDED_BY` checking of clang's -Wthread-safety.
//
// Thread safety: a mutex.

#ifndef SPILLWAY_LIB_CORE_MUTEX_H_
#define SPILLWAY_LIB_CORE_MUTEX_H_

#include <mutex>

#include "absl/base/thread_annotations.h"

namespace spillway::internal {

class ABSL_LOCKABLE Mutex {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  // The underlying mutex, for std::condition_variable and Clock::WaitUntil,
  // through a std::unique_lock built with std::adopt_lock while held.
  std::mutex& native() { return mu_; }

 private:
  std::mutex mu_;
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
  }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

}  // namespace spillway::internal

#endif  // SPILLWAY_LIB_CORE_MUTEX_H_
