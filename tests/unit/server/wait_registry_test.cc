#include "src/server/wait_registry.h"

#include <chrono>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

#include "cppetcd/server/errors.h"
#include "tests/unit/server/server_test_util.h"

namespace cppetcd::server {
namespace {

using namespace std::chrono_literals;

// Records every outcome a waiter got, and how often it ran.
struct Recorder {
  std::vector<absl::Status> got;
  Waiter Make() {
    return [this](Outcome o) { got.push_back(o.status); };
  }
};

class WaitRegistryTest : public ::testing::Test {
 protected:
  WaitRegistry::Options Opts(size_t max_waiters = 4) {
    WaitRegistry::Options o;
    o.clock = &clock_;
    o.timeout = 5s;
    o.max_waiters = max_waiters;
    o.metrics = &metrics_;
    return o;
  }
  test_util::AtomicManualClock clock_;
  ServerMetrics metrics_;
};

TEST_F(WaitRegistryTest, CompleteRunsTheWaiterOnceWithItsOutcome) {
  WaitRegistry w(Opts());
  int64_t revision = 0;
  int runs = 0;
  ASSERT_TRUE(w.Register(7, [&](Outcome o) {
                 ++runs;
                 revision = o.revision;
               }).ok());
  EXPECT_EQ(w.size(), 1u);
  EXPECT_EQ(metrics_.proposals_pending.load(), 1);
  Outcome o;
  o.revision = 42;
  EXPECT_TRUE(w.Complete(7, std::move(o)));
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(revision, 42);
  // Gone: a second completion (another path failing it late) finds nothing.
  EXPECT_FALSE(w.Complete(7, Outcome{ErrStopped(), {}, std::nullopt}));
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(w.size(), 0u);
  EXPECT_EQ(metrics_.proposals_pending.load(), 0);
  EXPECT_EQ(metrics_.proposals_failed.load(), 0u);
  EXPECT_EQ(metrics_.stage_propose_to_reply.Snapshot().count, 1u);
  // Unknown IDs (another member's request) are ignored.
  EXPECT_FALSE(w.Complete(99, Outcome{}));
}

TEST_F(WaitRegistryTest, AnErrorOutcomeCountsAsFailed) {
  WaitRegistry w(Opts());
  Recorder r;
  ASSERT_TRUE(w.Register(1, r.Make()).ok());
  EXPECT_TRUE(w.Complete(1, Outcome{ErrTooManyRequests(), {}, std::nullopt}));
  ASSERT_EQ(r.got.size(), 1u);
  EXPECT_EQ(r.got[0], ErrTooManyRequests());
  EXPECT_EQ(metrics_.proposals_failed.load(), 1u);
  EXPECT_EQ(metrics_.stage_propose_to_reply.Snapshot().count, 0u);  // not applied: no revision
}

// Past max_waiters a bounded Register is refused and its waiter answered at
// once; an exempt one (conf changes) still gets in. Draining makes room.
TEST_F(WaitRegistryTest, BoundRefusesPastMaxWaitersExemptStillRegisters) {
  WaitRegistry w(Opts(/*max_waiters=*/3));
  Recorder r;
  for (uint64_t id = 1; id <= 3; ++id) ASSERT_TRUE(w.Register(id, r.Make()).ok());
  for (uint64_t id = 4; id <= 10; ++id) {
    EXPECT_EQ(w.Register(id, r.Make()), ErrTooManyRequests());
  }
  EXPECT_EQ(r.got.size(), 7u);
  for (const auto& s : r.got) EXPECT_EQ(s, ErrTooManyRequests());
  EXPECT_TRUE(w.Register(11, r.Make(), WaitRegistry::Bound::kExempt).ok());
  EXPECT_EQ(w.size(), 4u);
  EXPECT_EQ(metrics_.proposals_pending.load(), 4);
  EXPECT_EQ(metrics_.proposals_pending_peak.load(), 4);
  EXPECT_TRUE(w.Complete(1, Outcome{}));
  EXPECT_TRUE(w.Complete(2, Outcome{}));
  EXPECT_TRUE(w.Register(12, r.Make()).ok());
  EXPECT_EQ(metrics_.proposals_pending_peak.load(), 4);
  EXPECT_EQ(metrics_.proposals_pending.load(), 3);
}

// A second waiter for an ID in use is refused; the first still runs once.
TEST_F(WaitRegistryTest, DuplicateIdRefusesTheNewcomerKeepsTheFirst) {
  WaitRegistry w(Opts());
  Recorder first, second;
  ASSERT_TRUE(w.Register(5, first.Make()).ok());
  const absl::Status s = w.Register(5, second.Make());
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  ASSERT_EQ(second.got.size(), 1u);
  EXPECT_EQ(second.got[0], s);
  EXPECT_TRUE(first.got.empty());
  EXPECT_EQ(metrics_.proposals_pending.load(), 1);
  EXPECT_TRUE(w.Complete(5, Outcome{}));
  ASSERT_EQ(first.got.size(), 1u);
  EXPECT_TRUE(first.got[0].ok());
  EXPECT_EQ(second.got.size(), 1u);
}

// Deadlines are on the injected clock: only waiters registered timeout or
// more before `now` expire, with ErrTimeout, each once.
TEST_F(WaitRegistryTest, ExpireDueUsesTheInjectedClock) {
  WaitRegistry w(Opts(/*max_waiters=*/10));
  Recorder early, late;
  ASSERT_TRUE(w.Register(1, early.Make()).ok());
  ASSERT_TRUE(w.Register(2, early.Make()).ok());
  clock_.Advance(3s);
  ASSERT_TRUE(w.Register(3, late.Make()).ok());
  EXPECT_EQ(w.ExpireDue(clock_.Now()), 0u);
  clock_.Advance(2s - 1ns);
  EXPECT_EQ(w.ExpireDue(clock_.Now()), 0u);
  clock_.Advance(1ns);  // 5 s after the first two
  EXPECT_EQ(w.ExpireDue(clock_.Now()), 2u);
  ASSERT_EQ(early.got.size(), 2u);
  for (const auto& s : early.got) EXPECT_EQ(s, ErrTimeout());
  EXPECT_TRUE(late.got.empty());
  EXPECT_EQ(w.ExpireDue(clock_.Now()), 0u);  // not twice
  EXPECT_FALSE(w.Complete(1, Outcome{}));   // nor completed after expiry
  EXPECT_EQ(early.got.size(), 2u);
  clock_.Advance(3s);
  EXPECT_EQ(w.ExpireDue(clock_.Now()), 1u);
  ASSERT_EQ(late.got.size(), 1u);
  EXPECT_EQ(late.got[0], ErrTimeout());
  EXPECT_EQ(metrics_.proposals_failed.load(), 3u);
  EXPECT_EQ(metrics_.proposals_pending.load(), 0);
}

TEST_F(WaitRegistryTest, FailAllAnswersEveryWaiterStoppedAndRefusesLaterOnes) {
  WaitRegistry w(Opts(/*max_waiters=*/10));
  Recorder r;
  for (uint64_t id = 1; id <= 5; ++id) ASSERT_TRUE(w.Register(id, r.Make()).ok());
  std::promise<absl::Status> never;
  absl::Status physical = absl::OkStatus();
  w.AddPhysicalWait(never.get_future().share(), [&](absl::Status s) { physical = s; });
  w.FailAll();
  ASSERT_EQ(r.got.size(), 5u);
  for (const auto& s : r.got) EXPECT_EQ(s, ErrStopped());
  EXPECT_EQ(physical, ErrStopped());
  EXPECT_EQ(metrics_.proposals_pending.load(), 0);
  EXPECT_EQ(metrics_.proposals_failed.load(), 0u);  // as before: stop is not a failure
  // After stop nothing is held: a late proposal is answered at once.
  EXPECT_EQ(w.Register(6, r.Make()), ErrStopped());
  EXPECT_EQ(r.got.size(), 6u);
  absl::Status late_physical = absl::OkStatus();
  std::promise<absl::Status> p2;
  w.AddPhysicalWait(p2.get_future().share(), [&](absl::Status s) { late_physical = s; });
  EXPECT_EQ(late_physical, ErrStopped());
  EXPECT_EQ(w.size(), 0u);
}

TEST_F(WaitRegistryTest, PhysicalWaitsRunOnceTheirFutureIsReady) {
  WaitRegistry w(Opts());
  std::promise<absl::Status> a, b;
  std::vector<absl::Status> got;
  w.AddPhysicalWait(a.get_future().share(), [&](absl::Status s) { got.push_back(s); });
  w.AddPhysicalWait(b.get_future().share(), [&](absl::Status s) { got.push_back(s); });
  EXPECT_EQ(w.PollPhysical(), 0u);
  b.set_value(absl::InternalError("disk"));
  EXPECT_EQ(w.PollPhysical(), 1u);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], absl::InternalError("disk"));
  a.set_value(absl::OkStatus());
  EXPECT_EQ(w.PollPhysical(), 1u);
  EXPECT_EQ(w.PollPhysical(), 0u);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got[1].ok());
  w.FailAll();  // nothing left to fail
  EXPECT_EQ(got.size(), 2u);
}

// A waiter runs outside the registry's lock: it may register, complete and
// expire from inside (a reply that proposes again) without deadlocking.
TEST_F(WaitRegistryTest, WaitersRunOutsideTheLock) {
  WaitRegistry w(Opts());
  Recorder inner;
  bool ran = false;
  ASSERT_TRUE(w.Register(1, [&](Outcome) {
                 EXPECT_TRUE(w.Register(2, inner.Make()).ok());
                 EXPECT_EQ(w.size(), 1u);
                 EXPECT_TRUE(w.Complete(2, Outcome{}));
                 w.ExpireDue(clock_.Now());
                 ran = true;
               }).ok());
  EXPECT_TRUE(w.Complete(1, Outcome{}));
  EXPECT_TRUE(ran);
  ASSERT_EQ(inner.got.size(), 1u);
  // The same from an expiry and from FailAll.
  ASSERT_TRUE(w.Register(3, [&](Outcome) { EXPECT_TRUE(w.Register(4, inner.Make()).ok()); }).ok());
  clock_.Advance(5s);
  EXPECT_EQ(w.ExpireDue(clock_.Now()), 1u);
  ASSERT_TRUE(w.Register(5, [&](Outcome) { EXPECT_EQ(w.size(), 0u); }).ok());
  w.FailAll();  // runs 4 and 5
  EXPECT_EQ(inner.got.size(), 2u);
}

// Many threads complete, expire and fail the same waiters at once: each
// waiter still runs exactly once (TSan checks the locking).
TEST_F(WaitRegistryTest, ConcurrentCompleteExpireAndFailRunEachWaiterOnce) {
  constexpr int kWaiters = 2000;
  WaitRegistry w(Opts(/*max_waiters=*/kWaiters));
  std::vector<std::atomic<int>> runs(kWaiters);
  for (int i = 0; i < kWaiters; ++i) {
    ASSERT_TRUE(w.Register(i, [&runs, i](Outcome) { runs[i].fetch_add(1); }).ok());
  }
  clock_.Advance(5s);
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&w] {
      for (int i = 0; i < kWaiters; ++i) w.Complete(i, Outcome{});
    });
  }
  threads.emplace_back([&] { w.ExpireDue(clock_.Now()); });
  threads.emplace_back([&w] { w.FailAll(); });
  for (auto& t : threads) t.join();
  for (int i = 0; i < kWaiters; ++i) EXPECT_EQ(runs[i].load(), 1) << i;
  EXPECT_EQ(metrics_.proposals_pending.load(), 0);
  EXPECT_EQ(w.size(), 0u);
}

}  // namespace
}  // namespace cppetcd::server
