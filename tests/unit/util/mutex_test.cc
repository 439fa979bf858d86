#include "cppetcd/util/mutex.h"

#include <chrono>
#include <thread>

#include "gtest/gtest.h"

namespace cppetcd::util {
namespace {

using namespace std::chrono_literals;

// A counter whose fields the analysis checks (this file is compiled with
// -Wthread-safety in the checked build).
class Counter {
 public:
  void Add(int n) {
    MutexLock l(&mu_);
    value_ += n;
    cv_.SignalAll();
  }
  // Waits until value_ >= n; returns the value seen.
  int WaitAtLeast(int n) {
    MutexLock l(&mu_);
    cv_.Wait(&mu_, [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return value_ >= n; });
    return value_;
  }
  // The same with a deadline; false if it passed first.
  bool WaitAtLeastFor(int n, std::chrono::milliseconds d) {
    MutexLock l(&mu_);
    return cv_.WaitFor(&mu_, d, [this, n]() {
      mu_.AssertHeld();
      return value_ >= n;
    });
  }
  bool WaitAtLeastUntil(int n, std::chrono::steady_clock::time_point t) {
    MutexLock l(&mu_);
    return cv_.WaitUntil(&mu_, t, [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return value_ >= n; });
  }
  // Reads under the lock, drops it, retakes it.
  int ReadTwice() {
    MutexLock l(&mu_);
    int a = value_;
    l.Unlock();
    l.Lock();
    return a + value_ * 0;
  }
  bool TryRead(int* out) {
    if (!mu_.TryLock()) return false;
    *out = value_;
    mu_.Unlock();
    return true;
  }
  Mutex* mu() ABSL_LOCK_RETURNED(mu_) { return &mu_; }

 private:
  Mutex mu_;
  CondVar cv_;  // value_ grew
  int value_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST(MutexTest, PredicatedWaitSeesUpdatesFromAnotherThread) {
  Counter c;
  std::thread t([&c] {
    for (int i = 0; i < 100; i++) c.Add(1);
  });
  EXPECT_GE(c.WaitAtLeast(100), 100);
  t.join();
  EXPECT_EQ(c.ReadTwice(), 100);
}

TEST(MutexTest, TimedWaitsReportTimeoutAndSuccess) {
  Counter c;
  EXPECT_FALSE(c.WaitAtLeastFor(1, 1ms));
  EXPECT_FALSE(c.WaitAtLeastUntil(1, std::chrono::steady_clock::now() + 1ms));
  c.Add(1);
  EXPECT_TRUE(c.WaitAtLeastFor(1, 0ms));
  std::thread t([&c] { c.Add(1); });
  EXPECT_TRUE(c.WaitAtLeastUntil(2, std::chrono::steady_clock::now() + 60s));
  t.join();
}

TEST(MutexTest, TryLockFailsWhileHeldElsewhere) {
  Counter c;
  int v = -1;
  EXPECT_TRUE(c.TryRead(&v));
  EXPECT_EQ(v, 0);
  {
    MutexLock l(c.mu());
    bool got = true;
    std::thread t([&] { got = c.TryRead(&v); });
    t.join();
    EXPECT_FALSE(got);
  }
  EXPECT_TRUE(c.TryRead(&v));
}

TEST(MutexTest, UnpredicatedTimedWaitTimesOut) {
  Mutex mu;
  CondVar cv;
  MutexLock l(&mu);
  // Nobody signals: each wait ends by timing out (a spurious wake-up, rare,
  // returns true and is retried a bounded number of times).
  int tries = 0;
  while (cv.WaitFor(&mu, 1ms) && ++tries < 100) {}
  EXPECT_LT(tries, 100);
  tries = 0;
  while (cv.WaitUntil(&mu, std::chrono::steady_clock::now() + 1ms) && ++tries < 100) {}
  EXPECT_LT(tries, 100);
}

}  // namespace
}  // namespace cppetcd::util
