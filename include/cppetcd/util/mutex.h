// A mutex, its scoped lock and a condition variable that clang's thread-safety
// analysis checks (-Wthread-safety; CMake option CPPETCD_THREAD_SAFETY_ANALYSIS,
// docs/testing.md) and that ThreadSanitizer understands.
//
// Why not std::mutex: libstdc++'s std::mutex and std::lock_guard carry no
// capability attributes, so ABSL_GUARDED_BY(mu_) on a std::mutex is never
// checked. Why not absl::Mutex: Debian's Abseil is not built with TSan, so
// its synchronisation is invisible to TSan and every access it guards is
// reported as a race. util::Mutex is a std::mutex (pthread, intercepted by
// TSan) with the attributes added; it costs nothing over std::mutex.
//
// Use:
//   util::Mutex mu_;
//   int n_ ABSL_GUARDED_BY(mu_);
//   util::CondVar cv_;                       // n_ changed
//   void Helper() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);  // "...Locked" helpers
//   ...
//   util::MutexLock l(&mu_);
//   cv_.Wait(&mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return n_ > 0; });
// Clang analyses a lambda as a function of its own: a predicate that reads
// guarded fields says so with ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) (as above)
// or calls mu_.AssertHeld() first.
//
// Thread-safety: Mutex, SharedMutex and CondVar are thread-safe; a scoped lock
// belongs to the thread that made it. Not recursive. SharedMutex is
// std::shared_mutex (glibc: readers preferred, so a reader may re-enter while
// a writer waits); mvcc/rw_mutex.h is the writer-preferring one.
#ifndef CPPETCD_UTIL_MUTEX_H_
#define CPPETCD_UTIL_MUTEX_H_

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>

#include "absl/base/thread_annotations.h"

namespace cppetcd::util {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  // True if the lock was taken (then the caller holds it).
  bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) { return mu_.try_lock(); }
  // Tells the analysis that the caller holds the lock (for code it cannot
  // follow: a lambda run under the lock, a callback). Checks nothing at run
  // time: std::mutex does not know its owner.
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds a Mutex from construction to destruction. Unlock() and Lock() release
// and retake it in between (as std::unique_lock does); the destructor unlocks
// only if held.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() {
    if (held_) mu_->Unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void Unlock() ABSL_UNLOCK_FUNCTION() {
    held_ = false;
    mu_->Unlock();
  }
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    mu_->Lock();
    held_ = true;
  }

 private:
  Mutex* mu_;
  bool held_ = true;
};

// std::shared_mutex with the attributes: Lock/Unlock exclusive,
// ReaderLock/ReaderUnlock shared.
class ABSL_LOCKABLE SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  void ReaderLock() ABSL_SHARED_LOCK_FUNCTION() { mu_.lock_shared(); }
  void ReaderUnlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

class ABSL_SCOPED_LOCKABLE ReaderMutexLock {
 public:
  explicit ReaderMutexLock(SharedMutex* mu) ABSL_SHARED_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->ReaderLock();
  }
  ~ReaderMutexLock() ABSL_UNLOCK_FUNCTION() { mu_->ReaderUnlock(); }
  ReaderMutexLock(const ReaderMutexLock&) = delete;
  ReaderMutexLock& operator=(const ReaderMutexLock&) = delete;

 private:
  SharedMutex* mu_;
};

class ABSL_SCOPED_LOCKABLE WriterMutexLock {
 public:
  explicit WriterMutexLock(SharedMutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
  }
  ~WriterMutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  WriterMutexLock(const WriterMutexLock&) = delete;
  WriterMutexLock& operator=(const WriterMutexLock&) = delete;

 private:
  SharedMutex* mu_;
};

// A condition variable used with a util::Mutex the caller holds. Waits may
// wake spuriously; the predicated forms loop until the predicate is true (and
// return its last value when they time out). The predicate runs with the
// lock held (see the header comment for annotating it).
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

  void Wait(Mutex* mu) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    Adopted a(mu);
    cv_.wait(a.l);
  }
  // False if the time ran out (the lock is held again either way).
  template <typename Rep, typename Period>
  bool WaitFor(Mutex* mu, std::chrono::duration<Rep, Period> d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    Adopted a(mu);
    return cv_.wait_for(a.l, d) == std::cv_status::no_timeout;
  }
  template <typename Clock, typename Duration>
  bool WaitUntil(Mutex* mu, std::chrono::time_point<Clock, Duration> t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    Adopted a(mu);
    return cv_.wait_until(a.l, t) == std::cv_status::no_timeout;
  }

  // The predicated forms are not analysed inside (the analysis cannot tie the
  // predicate's own annotation to `mu`); the predicate's body is analysed
  // where it is written.
  template <typename Pred>
  void Wait(Mutex* mu, Pred pred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    while (!pred()) Wait(mu);
  }
  template <typename Rep, typename Period, typename Pred>
  bool WaitFor(Mutex* mu, std::chrono::duration<Rep, Period> d, Pred pred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    Adopted a(mu);
    return cv_.wait_for(a.l, d, std::move(pred));
  }
  template <typename Clock, typename Duration, typename Pred>
  bool WaitUntil(Mutex* mu, std::chrono::time_point<Clock, Duration> t, Pred pred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    Adopted a(mu);
    return cv_.wait_until(a.l, t, std::move(pred));
  }

 private:
  // The caller's lock seen as a std::unique_lock for std::condition_variable,
  // handed back (still held) on every exit, an exception included.
  struct Adopted {
    explicit Adopted(Mutex* mu) : l(mu->mu_, std::adopt_lock) {}
    ~Adopted() { l.release(); }
    std::unique_lock<std::mutex> l;
  };
  std::condition_variable cv_;
};

}  // namespace cppetcd::util

#endif  // CPPETCD_UTIL_MUTEX_H_
