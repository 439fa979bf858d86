#include "src/server/read_index.h"

#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

#include "cppetcd/server/errors.h"
#include "cppetcd/storage/backend.h"

namespace cppetcd::server {
namespace {

using namespace std::chrono_literals;

struct Results {
  std::vector<absl::Status> got;
  ReadIndexQueue::ReadFn Make() {
    return [this](absl::Status s) { got.push_back(std::move(s)); };
  }
};

// Reads queued between two rounds share one batch with a fresh context.
TEST(ReadIndexQueueTest, BatchesEverythingQueuedWithAFreshContext) {
  ReadIndexQueue q(/*max_pending=*/10);
  Results r;
  q.Enqueue(r.Make());
  q.Enqueue(r.Make());
  q.Enqueue(r.Make());
  EXPECT_EQ(q.pending(), 3u);
  auto b1 = q.WaitBatch();
  ASSERT_TRUE(b1.has_value());
  EXPECT_EQ(b1->reads.size(), 3u);
  EXPECT_EQ(b1->ctx, storage::EncodeBigEndian64(1));
  EXPECT_EQ(q.pending(), 0u);
  q.Enqueue(r.Make());
  auto b2 = q.WaitBatch();
  ASSERT_TRUE(b2.has_value());
  EXPECT_EQ(b2->reads.size(), 1u);
  EXPECT_EQ(b2->ctx, storage::EncodeBigEndian64(2));
  EXPECT_TRUE(r.got.empty());  // nothing answered until Finish
  std::move(*b1).Finish(ErrTimeout());
  ASSERT_EQ(r.got.size(), 3u);
  for (const auto& s : r.got) EXPECT_EQ(s, ErrTimeout());
  std::move(*b2).Finish(absl::OkStatus());
  ASSERT_EQ(r.got.size(), 4u);
  EXPECT_TRUE(r.got[3].ok());
}

// Only the ReadState of the current batch's context counts: a late answer
// to an older round (or a stranger's context) is ignored.
TEST(ReadIndexQueueTest, MatchesTheReadStateByContext) {
  ReadIndexQueue q(10);
  Results r;
  q.OnReadState(std::string(8, '\0'), 3);  // before any batch: ignored
  q.Enqueue(r.Make());
  auto b1 = q.WaitBatch();
  ASSERT_TRUE(b1.has_value());
  EXPECT_EQ(q.WaitIndex(0ns), std::nullopt);
  q.OnReadState("other", 9);
  EXPECT_EQ(q.WaitIndex(0ns), std::nullopt);
  q.OnReadState(b1->ctx, 17);
  EXPECT_EQ(q.WaitIndex(0ns), 17u);
  std::move(*b1).Finish(absl::OkStatus());
  // Next batch: its result starts empty; the old context no longer counts.
  q.Enqueue(r.Make());
  auto b2 = q.WaitBatch();
  ASSERT_TRUE(b2.has_value());
  EXPECT_EQ(q.WaitIndex(0ns), std::nullopt);
  q.OnReadState(b1->ctx, 18);
  EXPECT_EQ(q.WaitIndex(0ns), std::nullopt);
  q.OnReadState(b2->ctx, 20);
  EXPECT_EQ(q.WaitIndex(0ns), 20u);
}

// The queue is bounded: past max_pending reads are refused at once.
TEST(ReadIndexQueueTest, RefusesPastMaxPending) {
  ReadIndexQueue q(/*max_pending=*/4);
  Results r;
  for (int i = 0; i < 10; ++i) q.Enqueue(r.Make());
  EXPECT_EQ(q.pending(), 4u);
  ASSERT_EQ(r.got.size(), 6u);
  for (const auto& s : r.got) EXPECT_EQ(s, ErrTooManyRequests());
  // Taking the batch makes room again.
  auto b = q.WaitBatch();
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->reads.size(), 4u);
  q.Enqueue(r.Make());
  EXPECT_EQ(q.pending(), 1u);
  EXPECT_EQ(r.got.size(), 6u);
}

TEST(ReadIndexQueueTest, StopEndsTheLoopAndFailsWhatIsLeft) {
  ReadIndexQueue q(10);
  Results r;
  q.Enqueue(r.Make());
  q.Enqueue(r.Make());
  q.Stop();
  EXPECT_TRUE(q.stopped());
  EXPECT_FALSE(q.WaitBatch().has_value());  // even with reads queued
  q.Enqueue(r.Make());                      // late: answered at once
  ASSERT_EQ(r.got.size(), 1u);
  EXPECT_EQ(r.got[0], ErrStopped());
  EXPECT_EQ(q.FailPending(), 2u);
  ASSERT_EQ(r.got.size(), 3u);
  for (const auto& s : r.got) EXPECT_EQ(s, ErrStopped());
  EXPECT_EQ(q.FailPending(), 0u);
  EXPECT_EQ(q.WaitIndex(10s), std::nullopt);  // stopped: at once
}

// With threads: the read thread blocks for a read and for its index; the
// raft thread's ReadState and Stop wake it.
TEST(ReadIndexQueueTest, WaitsWakeOnEnqueueReadStateAndStop) {
  ReadIndexQueue q(10);
  Results r;
  auto batch = std::async(std::launch::async, [&] { return q.WaitBatch(); });
  EXPECT_EQ(batch.wait_for(20ms), std::future_status::timeout);
  q.Enqueue(r.Make());
  ASSERT_EQ(batch.wait_for(10s), std::future_status::ready);
  auto b = batch.get();
  ASSERT_TRUE(b.has_value());
  const std::string ctx = b->ctx;
  auto index = std::async(std::launch::async, [&] { return q.WaitIndex(30s); });
  EXPECT_EQ(index.wait_for(20ms), std::future_status::timeout);
  std::thread raft([&] { q.OnReadState(ctx, 5); });
  raft.join();
  ASSERT_EQ(index.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(index.get(), 5u);
  std::move(*b).Finish(absl::OkStatus());
  // WaitIndex times out without an answer, and Stop wakes a blocked one.
  q.Enqueue(r.Make());
  auto b2 = q.WaitBatch();
  ASSERT_TRUE(b2.has_value());
  EXPECT_EQ(q.WaitIndex(10ms), std::nullopt);
  auto stopped = std::async(std::launch::async, [&] { return q.WaitIndex(30s); });
  auto next = std::async(std::launch::async, [&] { return q.WaitBatch(); });
  q.Stop();
  ASSERT_EQ(stopped.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(stopped.get(), std::nullopt);
  ASSERT_EQ(next.wait_for(10s), std::future_status::ready);
  EXPECT_FALSE(next.get().has_value());
  std::move(*b2).Finish(ErrStopped());
  EXPECT_EQ(r.got.size(), 2u);
}

}  // namespace
}  // namespace cppetcd::server
