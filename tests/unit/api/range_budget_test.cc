// RangeBudget: admission, FIFO order, the single-oversized-entry rule,
// cancellation, and the bound under a random load driven past it.
#include "cppetcd/api/range_budget.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace cppetcd::api {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// Polls `pred` until it holds or 10 s pass.
template <class Pred>
bool Eventually(Pred pred) {
  const auto deadline = steady_clock::now() + std::chrono::seconds(10);
  while (steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(1));
  }
  return pred();
}

TEST(RangeBudgetTest, AdmitsWhatFitsAndQueuesTheRestInOrder) {
  RangeBudget b(100);
  std::mutex mu;
  std::vector<int> order;
  std::vector<std::thread::id> threads;
  auto record = [&](int n) {
    return [&, n] {
      std::lock_guard<std::mutex> l(mu);
      order.push_back(n);
      threads.push_back(std::this_thread::get_id());
    };
  };
  EXPECT_EQ(b.Acquire(b.NewTicket(), 60, record(0)), RangeBudget::Admission::kAdmitted);
  EXPECT_EQ(b.Acquire(b.NewTicket(), 40, record(1)), RangeBudget::Admission::kAdmitted);  // exactly the limit
  EXPECT_EQ(b.Acquire(b.NewTicket(), 10, record(2)), RangeBudget::Admission::kQueued);
  // FIFO: a 0-byte entry does not overtake the one waiting.
  EXPECT_EQ(b.Acquire(b.NewTicket(), 0, record(3)), RangeBudget::Admission::kQueued);
  EXPECT_EQ(b.Acquire(b.NewTicket(), 90, record(4)), RangeBudget::Admission::kQueued);
  RangeBudget::Stats s = b.GetStats();
  EXPECT_EQ(s.in_flight_bytes, 100u);
  EXPECT_EQ(s.in_flight, 2u);
  EXPECT_EQ(s.queued, 3u);

  b.Release(40);  // 60 + 10 + 0 fit; 90 waits
  ASSERT_TRUE(Eventually([&] {
    std::lock_guard<std::mutex> l(mu);
    return order.size() == 2;
  }));
  s = b.GetStats();
  EXPECT_EQ(s.in_flight_bytes, 70u);
  EXPECT_EQ(s.queued, 1u);
  b.Release(60);
  b.Release(10);
  b.Release(0);  // nothing in flight: 90 is admitted
  ASSERT_TRUE(Eventually([&] {
    std::lock_guard<std::mutex> l(mu);
    return order.size() == 3;
  }));
  {
    std::lock_guard<std::mutex> l(mu);
    EXPECT_EQ(order, (std::vector<int>{2, 3, 4}));
    // Run on the budget's thread, not the releasing one.
    for (auto id : threads) EXPECT_NE(id, std::this_thread::get_id());
  }
  b.Release(90);
  s = b.GetStats();
  EXPECT_EQ(s.in_flight_bytes, 0u);
  EXPECT_EQ(s.in_flight, 0u);
  EXPECT_EQ(s.admitted_total, 5u);
  EXPECT_EQ(s.queued_total, 3u);
  EXPECT_EQ(s.peak_queued, 3u);
  EXPECT_LE(s.peak_shared_in_flight_bytes, 100u);
}

TEST(RangeBudgetTest, AnEntryLargerThanTheLimitRunsAlone) {
  RangeBudget b(100);
  EXPECT_EQ(b.Acquire(b.NewTicket(), 1000, [] {}), RangeBudget::Admission::kAdmitted);  // nothing in flight
  std::atomic<bool> small_ran{false};
  EXPECT_EQ(b.Acquire(b.NewTicket(), 1, [&] { small_ran = true; }), RangeBudget::Admission::kQueued);
  std::atomic<bool> big_ran{false};
  EXPECT_EQ(b.Acquire(b.NewTicket(), 500, [&] { big_ran = true; }), RangeBudget::Admission::kQueued);
  b.Release(1000);
  ASSERT_TRUE(Eventually([&] { return small_ran.load(); }));
  // 1 + 500 > 100: the second oversized entry waits for the small one.
  EXPECT_FALSE(big_ran.load());
  EXPECT_EQ(b.GetStats().queued, 1u);
  b.Release(1);
  ASSERT_TRUE(Eventually([&] { return big_ran.load(); }));
  b.Release(500);
  EXPECT_LE(b.GetStats().peak_shared_in_flight_bytes, 100u);
}

TEST(RangeBudgetTest, CancelRemovesAQueuedEntryOnly) {
  RangeBudget b(10);
  const auto first = b.NewTicket();
  EXPECT_EQ(b.Acquire(first, 10, [] {}), RangeBudget::Admission::kAdmitted);
  const auto head = b.NewTicket();
  std::atomic<bool> head_ran{false};
  EXPECT_EQ(b.Acquire(head, 10, [&] { head_ran = true; }), RangeBudget::Admission::kQueued);
  const auto next = b.NewTicket();
  std::atomic<bool> next_ran{false};
  EXPECT_EQ(b.Acquire(next, 5, [&] { next_ran = true; }), RangeBudget::Admission::kQueued);
  EXPECT_FALSE(b.Cancel(first));  // admitted: not cancellable here
  EXPECT_TRUE(b.Cancel(head));
  EXPECT_FALSE(b.Cancel(head));  // gone
  EXPECT_EQ(b.GetStats().queued, 1u);
  b.Release(10);
  ASSERT_TRUE(Eventually([&] { return next_ran.load(); }));
  EXPECT_FALSE(head_ran.load());
  b.Release(5);
  EXPECT_EQ(b.GetStats().in_flight, 0u);
  EXPECT_EQ(b.GetStats().admitted_total, 2u);
}

TEST(RangeBudgetTest, CancellingTheHeadAdmitsTheEntriesBehindIt) {
  RangeBudget b(10);
  EXPECT_EQ(b.Acquire(b.NewTicket(), 4, [] {}), RangeBudget::Admission::kAdmitted);
  const auto head = b.NewTicket();
  EXPECT_EQ(b.Acquire(head, 8, [] {}), RangeBudget::Admission::kQueued);
  std::atomic<bool> small_ran{false};
  EXPECT_EQ(b.Acquire(b.NewTicket(), 3, [&] { small_ran = true; }), RangeBudget::Admission::kQueued);
  EXPECT_TRUE(b.Cancel(head));
  ASSERT_TRUE(Eventually([&] { return small_ran.load(); }));
  EXPECT_EQ(b.GetStats().in_flight_bytes, 7u);
}

TEST(RangeBudgetTest, AdjustDownAdmitsMore) {
  RangeBudget b(10);
  EXPECT_EQ(b.Acquire(b.NewTicket(), 10, [] {}), RangeBudget::Admission::kAdmitted);
  std::atomic<bool> ran{false};
  EXPECT_EQ(b.Acquire(b.NewTicket(), 6, [&] { ran = true; }), RangeBudget::Admission::kQueued);
  b.Adjust(10, 4);  // the answer came out smaller than estimated
  ASSERT_TRUE(Eventually([&] { return ran.load(); }));
  EXPECT_EQ(b.GetStats().in_flight_bytes, 10u);
  b.Release(4);
  b.Release(6);
  EXPECT_EQ(b.GetStats().in_flight_bytes, 0u);
}

// The wait queue is bounded in entries and in the bytes their callers hold
// (range_budget.h): past either, Acquire refuses (nothing queued, nothing
// charged, on_admitted dropped); a place freed by a cancel or an admission
// takes the next. The first entry of an empty queue always waits.
TEST(RangeBudgetTest, QueueIsBoundedInEntriesAndHeldBytes) {
  using A = RangeBudget::Admission;
  RangeBudget b(10, /*max_queued=*/3, /*max_queued_held_bytes=*/100);
  ASSERT_EQ(b.Acquire(b.NewTicket(), 10, [] {}), A::kAdmitted);  // the budget is full
  std::atomic<int> ran{0};
  auto run = [&] { return [&] { ran.fetch_add(1); }; };
  const RangeBudget::Ticket first = b.NewTicket();
  EXPECT_EQ(b.Acquire(first, 1, run(), 60), A::kQueued);
  EXPECT_EQ(b.Acquire(b.NewTicket(), 1, run(), 50), A::kRefused);  // 60 + 50 > 100
  EXPECT_EQ(b.Acquire(b.NewTicket(), 1, run(), 40), A::kQueued);   // exactly 100
  EXPECT_EQ(b.Acquire(b.NewTicket(), 1, run(), 0), A::kQueued);    // 3 entries
  EXPECT_EQ(b.Acquire(b.NewTicket(), 1, run(), 0), A::kRefused);   // a 4th
  RangeBudget::Stats s = b.GetStats();
  EXPECT_EQ(s.queued, 3u);
  EXPECT_EQ(s.queued_held_bytes, 100u);
  EXPECT_EQ(s.refused_total, 2u);
  EXPECT_EQ(s.in_flight, 1u);
  EXPECT_EQ(s.in_flight_bytes, 10u);

  EXPECT_TRUE(b.Cancel(first));  // its place and held bytes are free again
  EXPECT_EQ(b.GetStats().queued_held_bytes, 40u);
  EXPECT_EQ(b.Acquire(b.NewTicket(), 1, run(), 60), A::kQueued);
  b.Release(10);
  ASSERT_TRUE(Eventually([&] { return ran.load() == 3; }));
  s = b.GetStats();
  EXPECT_EQ(s.queued, 0u);
  EXPECT_EQ(s.queued_held_bytes, 0u);
  EXPECT_EQ(s.in_flight, 3u);
  b.Release(1);
  b.Release(1);
  b.Release(1);

  // Alone in the queue, an entry holding more than the bound still waits.
  RangeBudget c(10, 3, 100);
  ASSERT_EQ(c.Acquire(c.NewTicket(), 10, [] {}), A::kAdmitted);
  std::atomic<bool> big_ran{false};
  EXPECT_EQ(c.Acquire(c.NewTicket(), 1, [&] { big_ran = true; }, 500), A::kQueued);
  EXPECT_EQ(c.Acquire(c.NewTicket(), 1, [] {}, 1), A::kRefused);
  c.Release(10);
  ASSERT_TRUE(Eventually([&] { return big_ran.load(); }));
  c.Release(1);
  EXPECT_EQ(ran.load(), 3);
}

// Several threads acquire random sizes (some above the limit) and release
// them after a short hold: every entry runs exactly once, and the bytes in
// flight never pass the limit while two or more entries share it.
TEST(RangeBudgetTest, BoundHoldsUnderConcurrentLoad) {
  constexpr uint64_t kLimit = 1000;
  RangeBudget b(kLimit);
  constexpr int kThreads = 4, kPerThread = 200;
  std::atomic<int> ran{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(static_cast<uint64_t>(t) + 1);
      for (int i = 0; i < kPerThread; ++i) {
        const uint64_t bytes = rng() % 10 == 0 ? 1500 : rng() % 400;
        std::atomic<bool> admitted{false};
        if (b.Acquire(b.NewTicket(), bytes, [&] { admitted = true; }) == RangeBudget::Admission::kAdmitted) admitted = true;
        while (!admitted.load()) std::this_thread::yield();
        ran.fetch_add(1);
        std::this_thread::sleep_for(std::chrono::microseconds(100));  // the answer in flight
        b.Release(bytes);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ran.load(), kThreads * kPerThread);
  RangeBudget::Stats s = b.GetStats();
  EXPECT_EQ(s.in_flight, 0u);
  EXPECT_EQ(s.in_flight_bytes, 0u);
  EXPECT_EQ(s.queued, 0u);
  EXPECT_EQ(s.admitted_total, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_GT(s.queued_total, 0u);  // the load went past the bound
  EXPECT_LE(s.peak_shared_in_flight_bytes, kLimit);
}

}  // namespace
}  // namespace cppetcd::api
