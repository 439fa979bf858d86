#include "cppetcd/util/clock.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace cppetcd::util {
namespace {

TEST(ClockTest, FakeClockMovesOnlyWhenAdvanced) {
  FakeClock c;
  auto t0 = c.Now();
  int64_t w0 = c.WallMillis();
  EXPECT_EQ(c.Now(), t0);
  c.Advance(std::chrono::milliseconds(1500));
  EXPECT_EQ(c.Now() - t0, std::chrono::milliseconds(1500));
  EXPECT_EQ(c.WallMillis() - w0, 1500);
}

TEST(ClockTest, SystemClockIsMonotonic) {
  auto a = SystemClock::Get()->Now();
  auto b = SystemClock::Get()->Now();
  EXPECT_LE(a, b);
  EXPECT_GT(SystemClock::Get()->WallMillis(), 1'600'000'000'000);
}

}  // namespace
}  // namespace cppetcd::util

namespace cppetcd::util {
namespace {

using std::chrono::milliseconds;

// Bounded real-time poll for a condition another thread makes true.
template <typename F>
bool Eventually(F f) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!f()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(milliseconds(1));
  }
  return true;
}

TEST(ClockWaitTest, SystemClockWaitTimesOutInRealTime) {
  Mutex mu;
  CondVar cv;
  MutexLock l(&mu);
  const auto t0 = std::chrono::steady_clock::now();
  while (SystemClock::Get()->WaitUntil(&cv, &mu, t0 + milliseconds(20))) {
  }
  EXPECT_GE(std::chrono::steady_clock::now() - t0, milliseconds(20));
  EXPECT_FALSE(SystemClock::Get()->WaitUntil(&cv, &mu, t0));  // past: at once
}

TEST(ClockWaitTest, FakeClockPastDeadlineReturnsAtOnce) {
  FakeClock c;
  Mutex mu;
  CondVar cv;
  MutexLock l(&mu);
  EXPECT_FALSE(c.WaitUntil(&cv, &mu, c.Now()));
  EXPECT_FALSE(c.WaitUntil(&cv, &mu, c.Now() - milliseconds(1)));
  EXPECT_EQ(c.Waiters(), 0u);
}

TEST(ClockWaitTest, AdvancePastDeadlineWakesWaiter) {
  FakeClock c;
  Mutex mu;
  CondVar cv;
  std::atomic<bool> done{false};
  const auto deadline = c.Now() + milliseconds(100);
  std::thread t([&] {
    MutexLock l(&mu);
    while (c.WaitUntil(&cv, &mu, deadline)) {
    }
    done = true;
  });
  ASSERT_TRUE(Eventually([&] { return c.Waiters() == 1; }));
  c.Advance(milliseconds(99));  // not yet due
  std::this_thread::sleep_for(milliseconds(20));
  EXPECT_FALSE(done.load());
  c.Advance(milliseconds(1));
  EXPECT_TRUE(Eventually([&] { return done.load(); }));
  t.join();
  EXPECT_EQ(c.Waiters(), 0u);
}

TEST(ClockWaitTest, SignalWakesWaiterBeforeDeadline) {
  FakeClock c;
  Mutex mu;
  CondVar cv;
  bool ready = false;  // guarded by mu
  std::atomic<int> result{-1};
  std::thread t([&] {
    MutexLock l(&mu);
    const bool ok = c.WaitUntil(&cv, &mu, c.Now() + std::chrono::hours(1), [&] {
      mu.AssertHeld();
      return ready;
    });
    result = ok ? 1 : 0;
  });
  ASSERT_TRUE(Eventually([&] { return c.Waiters() == 1; }));
  {
    MutexLock l(&mu);
    ready = true;
  }
  cv.SignalAll();
  EXPECT_TRUE(Eventually([&] { return result.load() != -1; }));
  EXPECT_EQ(result.load(), 1);  // woken by the signal, the time did not move
  t.join();
}

TEST(ClockWaitTest, PredicatedWaitReturnsFalseAtDeadline) {
  FakeClock c;
  Mutex mu;
  CondVar cv;
  std::atomic<int> result{-1};
  std::thread t([&] {
    MutexLock l(&mu);
    result = c.WaitUntil(&cv, &mu, c.Now() + milliseconds(5), [] { return false; }) ? 1 : 0;
  });
  ASSERT_TRUE(Eventually([&] { return c.Waiters() == 1; }));
  c.Advance(milliseconds(5));
  EXPECT_TRUE(Eventually([&] { return result.load() != -1; }));
  EXPECT_EQ(result.load(), 0);
  t.join();
}

TEST(ClockWaitTest, SleepForReturnsOnAdvance) {
  FakeClock c;
  std::atomic<bool> done{false};
  std::thread t([&] {
    c.SleepFor(std::chrono::seconds(30));
    done = true;
  });
  ASSERT_TRUE(Eventually([&] { return c.Waiters() == 1; }));
  c.Advance(std::chrono::seconds(29));
  std::this_thread::sleep_for(milliseconds(20));
  EXPECT_FALSE(done.load());
  c.Advance(std::chrono::seconds(1));
  EXPECT_TRUE(Eventually([&] { return done.load(); }));
  t.join();
}

// No lost wake-up: each round a waiter registers a deadline one step ahead
// while the test advances the clock by exactly one step, racing the
// registration and the wait with the advance. Nothing advances again until
// the round ends: a lost wake-up leaves the round blocked (the bound turns
// that into a failure).
TEST(ClockWaitTest, NoLostWakeUpRacingAdvance) {
  FakeClock c;
  constexpr int kRounds = 2000;
  std::atomic<int> finished{0};
  std::atomic<int> started{0};
  std::thread waiter([&] {
    Mutex mu;
    CondVar cv;
    for (int i = 0; i < kRounds; ++i) {
      MutexLock l(&mu);
      const auto deadline = c.Now() + milliseconds(1);
      started = i + 1;
      while (c.WaitUntil(&cv, &mu, deadline)) {
      }
      finished = i + 1;
    }
  });
  int lost_at = -1;
  for (int i = 0; i < kRounds && lost_at < 0; ++i) {
    // Spin (no sleep) so that the advance lands near the registration.
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (started.load() != i + 1 && std::chrono::steady_clock::now() < end) {
      std::this_thread::yield();
    }
    if (started.load() != i + 1) {
      lost_at = i;
      break;
    }
    c.Advance(milliseconds(1));  // the only advance of this round
    if (!Eventually([&] { return finished.load() == i + 1; })) lost_at = i;
  }
  EXPECT_EQ(lost_at, -1) << "a wake-up was lost in round " << lost_at;
  while (finished.load() < kRounds) {  // unblock it for the join
    c.Advance(std::chrono::hours(1));
    std::this_thread::yield();
  }
  waiter.join();
}

// Many waiters on one condition variable with different deadlines: each
// advance wakes exactly those due; the others keep waiting.
TEST(ClockWaitTest, AdvanceWakesOnlyDueWaiters) {
  FakeClock c;
  Mutex mu;
  CondVar cv;
  const auto t0 = c.Now();
  std::atomic<int> woken{0};
  std::vector<std::thread> ts;
  for (int i = 1; i <= 4; ++i) {
    ts.emplace_back([&, i] {
      MutexLock l(&mu);
      while (c.WaitUntil(&cv, &mu, t0 + milliseconds(10 * i))) {
      }
      ++woken;
    });
  }
  ASSERT_TRUE(Eventually([&] { return c.Waiters() == 4; }));
  c.Advance(milliseconds(25));
  EXPECT_TRUE(Eventually([&] { return woken.load() == 2; }));
  std::this_thread::sleep_for(milliseconds(20));
  EXPECT_EQ(woken.load(), 2);
  EXPECT_TRUE(Eventually([&] { return c.Waiters() == 2; }));
  c.Advance(milliseconds(15));
  EXPECT_TRUE(Eventually([&] { return woken.load() == 4; }));
  for (auto& t : ts) t.join();
}

}  // namespace
}  // namespace cppetcd::util
