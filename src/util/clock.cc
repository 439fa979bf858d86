#include "cppetcd/util/clock.h"

#include <algorithm>

namespace cppetcd::util {

bool Clock::WaitUntil(CondVar* cv, Mutex* mu, TimePoint deadline) {
  const TimePoint now = Now();
  if (now >= deadline) return false;
  cv->WaitFor(mu, deadline - now);
  return Now() < deadline;
}

void Clock::SleepUntil(TimePoint deadline) {
  Mutex mu;
  CondVar cv;
  MutexLock l(&mu);
  while (WaitUntil(&cv, &mu, deadline)) {
  }
}

SystemClock* SystemClock::Get() {
  static SystemClock* clock = new SystemClock();
  return clock;
}

int64_t SystemClock::WallMillis() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool SystemClock::WaitUntil(CondVar* cv, Mutex* mu, TimePoint deadline) {
  cv->WaitUntil(mu, deadline);
  return Now() < deadline;
}

bool ManualWaiters::Wait(const Clock& clock, CondVar* cv, Mutex* mu, Clock::TimePoint deadline) {
  Waiter w{cv, mu, deadline};
  {
    // Registered under mu_ after reading the time: a WakeDue for a later time
    // either sees this waiter or ran before the read (then it is not due).
    MutexLock l(&mu_);
    if (clock.Now() >= deadline) return false;
    waiters_.push_back(&w);
  }
  // `mu` is held from the registration to the wait, and WakeDue signals
  // under `mu`: its signal cannot fall before the wait.
  cv->Wait(mu);
  {
    MutexLock l(&mu_);
    if (w.pinned > 0) {
      // A WakeDue still needs `mu` to signal: let it finish before `w` (and
      // perhaps the caller's cv and mu) go away.
      l.Unlock();
      mu->Unlock();
      l.Lock();
      while (w.pinned > 0) unpinned_.Wait(&mu_);
      waiters_.erase(std::find(waiters_.begin(), waiters_.end(), &w));
      l.Unlock();
      mu->Lock();
    } else {
      waiters_.erase(std::find(waiters_.begin(), waiters_.end(), &w));
    }
  }
  return clock.Now() < deadline;
}

void ManualWaiters::WakeDue(Clock::TimePoint now) {
  std::vector<Waiter*> due;
  {
    MutexLock l(&mu_);
    for (Waiter* w : waiters_) {
      if (w->deadline <= now) {
        ++w->pinned;
        due.push_back(w);
      }
    }
  }
  if (due.empty()) return;
  for (Waiter* w : due) {
    MutexLock l(w->mu);
    w->cv->SignalAll();
  }
  MutexLock l(&mu_);
  for (Waiter* w : due) --w->pinned;
  unpinned_.SignalAll();
}

size_t ManualWaiters::Count() const {
  MutexLock l(&mu_);
  return waiters_.size();
}

FakeClock::TimePoint FakeClock::Now() const {
  MutexLock lock(&mu_);
  return now_;
}

int64_t FakeClock::WallMillis() const {
  MutexLock lock(&mu_);
  return wall_ms_;
}

bool FakeClock::WaitUntil(CondVar* cv, Mutex* mu, TimePoint deadline) {
  return waiters_.Wait(*this, cv, mu, deadline);
}

void FakeClock::Advance(std::chrono::nanoseconds d) {
  TimePoint now;
  {
    MutexLock lock(&mu_);
    now_ += d;
    wall_ms_ += std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    now = now_;
  }
  waiters_.WakeDue(now);
}

}  // namespace cppetcd::util
