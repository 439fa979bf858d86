// Time sources. Modules that need time take a Clock* so that tests drive time
// by hand (FakeClock) and never sleep.
//
// Timers go through the clock too: a loop that waits for a deadline calls
// clock->WaitUntil(&cv, &mu, deadline) instead of cv.WaitUntil, and a pause
// is clock->SleepFor(d). On SystemClock these are real timed waits; on a
// FakeClock they return when Advance() moves time past the deadline (or on a
// signal of the condition variable), so a simulation steps every timer.
#ifndef CPPETCD_UTIL_CLOCK_H_
#define CPPETCD_UTIL_CLOCK_H_

#include <chrono>
#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "cppetcd/util/mutex.h"

namespace cppetcd::util {

class Clock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  // Monotonic now. Thread-safe.
  virtual TimePoint Now() const = 0;
  // Wall-clock time in milliseconds since the Unix epoch. Thread-safe.
  virtual int64_t WallMillis() const = 0;

  // Waits on `cv` (the caller holds `mu`, as for CondVar::Wait) until this
  // clock reaches `deadline`, `cv` is signalled, or a spurious wake-up. True
  // if it returned before the deadline (re-check the condition and wait
  // again), false once Now() >= deadline. `mu` is held again on return.
  // Thread-safe. This base waits in real time for deadline - Now(): right for
  // a clock that follows real time; a clock moved by hand overrides it.
  virtual bool WaitUntil(CondVar* cv, Mutex* mu, TimePoint deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Loops until pred() (run with `mu` held) or the deadline; returns pred().
  template <typename Pred>
  bool WaitUntil(CondVar* cv, Mutex* mu, TimePoint deadline, Pred pred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    while (!pred()) {
      if (!WaitUntil(cv, mu, deadline)) return pred();
    }
    return true;
  }

  // Blocks the calling thread until Now() >= deadline (or Now() + d).
  void SleepUntil(TimePoint deadline);
  void SleepFor(std::chrono::nanoseconds d) { SleepUntil(Now() + d); }
};

// The real clocks (steady_clock, system_clock). A process-wide instance.
class SystemClock final : public Clock {
 public:
  static SystemClock* Get();
  TimePoint Now() const override { return std::chrono::steady_clock::now(); }
  int64_t WallMillis() const override;
  using Clock::WaitUntil;
  bool WaitUntil(CondVar* cv, Mutex* mu, TimePoint deadline) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
};

// The timed waits of a clock moved by hand (FakeClock, test clocks): Wait()
// implements Clock::WaitUntil by registering the waiter until WakeDue(now)
// finds its deadline passed and signals its condition variable under its
// mutex, so a wake-up is never lost between the check and the wait. The
// owning clock calls WakeDue after each move of its time, holding none of the
// waiters' mutexes. Thread-safe.
class ManualWaiters {
 public:
  bool Wait(const Clock& clock, CondVar* cv, Mutex* mu, Clock::TimePoint deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void WakeDue(Clock::TimePoint now);
  // Threads now inside Wait (for tests that advance once a thread sleeps).
  size_t Count() const;

 private:
  struct Waiter {
    CondVar* cv;
    Mutex* mu;
    Clock::TimePoint deadline;
    int pinned = 0;  // WakeDue calls about to signal it; > 0 keeps it listed
  };
  mutable Mutex mu_;
  CondVar unpinned_;
  std::vector<Waiter*> waiters_ ABSL_GUARDED_BY(mu_);
};

// A clock that moves only when told. Thread-safe.
class FakeClock final : public Clock {
 public:
  FakeClock() = default;
  TimePoint Now() const override;
  int64_t WallMillis() const override;
  using Clock::WaitUntil;
  // Returns when Advance passes `deadline` or `cv` is signalled.
  bool WaitUntil(CondVar* cv, Mutex* mu, TimePoint deadline) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Moves time on and wakes the timed waits now due. Must not be called with
  // the mutex of one of those waits held.
  void Advance(std::chrono::nanoseconds d);
  // Threads now blocked in WaitUntil or SleepUntil on this clock.
  size_t Waiters() const { return waiters_.Count(); }

 private:
  mutable Mutex mu_;
  TimePoint now_ ABSL_GUARDED_BY(mu_){std::chrono::hours(1)};
  int64_t wall_ms_ ABSL_GUARDED_BY(mu_) = 1'700'000'000'000;
  ManualWaiters waiters_;
};

}  // namespace cppetcd::util

#endif  // CPPETCD_UTIL_CLOCK_H_
