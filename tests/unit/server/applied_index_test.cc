#include "src/server/applied_index.h"

#include <chrono>
#include <future>
#include <thread>

#include "gtest/gtest.h"

namespace cppetcd::server {
namespace {

using namespace std::chrono_literals;

TEST(AppliedIndexTest, PublishOnlyGrows) {
  AppliedIndex a;
  EXPECT_EQ(a.applied(), 0u);
  a.Publish(10);
  a.Publish(7);  // a snapshot restore behind the applied index
  EXPECT_EQ(a.applied(), 10u);
  a.PublishReplied(12);
  a.PublishReplied(11);
  EXPECT_EQ(a.replied(), 12u);
  EXPECT_EQ(a.applied(), 10u);  // replied does not publish
}

TEST(AppliedIndexTest, WaitForReturnsAtOnceWhenReachedAndTimesOutOtherwise) {
  AppliedIndex a;
  a.Publish(5);
  EXPECT_TRUE(a.WaitFor(5, 0ns));
  EXPECT_TRUE(a.WaitFor(3, 0ns));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(a.WaitFor(6, 20ms));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 20ms);
}

TEST(AppliedIndexTest, WaitForWakesOnPublish) {
  AppliedIndex a;
  auto waiter = std::async(std::launch::async, [&] { return a.WaitFor(3, 30s); });
  a.Publish(2);
  EXPECT_EQ(waiter.wait_for(20ms), std::future_status::timeout);  // 2 < 3
  a.Publish(3);
  ASSERT_EQ(waiter.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(waiter.get());
}

TEST(AppliedIndexTest, StopEndsWaitsAndLaterOnesReturnAtOnce) {
  AppliedIndex a;
  auto waiter = std::async(std::launch::async, [&] { return a.WaitFor(3, 30s); });
  auto replied = std::async(std::launch::async, [&] {
    a.PublishReplied(9);
    a.AwaitReplied(30s);
  });
  EXPECT_EQ(waiter.wait_for(20ms), std::future_status::timeout);
  a.Stop();
  ASSERT_EQ(waiter.wait_for(10s), std::future_status::ready);
  EXPECT_FALSE(waiter.get());  // not reached
  ASSERT_EQ(replied.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(a.stopped());
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(a.WaitFor(4, 30s));
  a.AwaitReplied(30s);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  // Publishing goes on after Stop (the apply loop drains): the answer of
  // the moment.
  a.Publish(4);
  EXPECT_TRUE(a.WaitFor(4, 30s));
}

// Local reads wait until the writes already answered are published; the
// common case (nothing answered ahead of the commit) does not wait at all.
TEST(AppliedIndexTest, AwaitRepliedWaitsForTheCommitOfAnsweredWrites) {
  AppliedIndex a;
  a.Publish(4);
  a.AwaitReplied(30s);  // nothing replied ahead: at once
  a.PublishReplied(6);  // batch 5..6 answered, its commit not yet done
  auto reader = std::async(std::launch::async, [&] { a.AwaitReplied(30s); });
  EXPECT_EQ(reader.wait_for(20ms), std::future_status::timeout);
  a.Publish(5);
  EXPECT_EQ(reader.wait_for(20ms), std::future_status::timeout);
  a.Publish(6);
  EXPECT_EQ(reader.wait_for(10s), std::future_status::ready);
  // Bounded by its timeout when the commit never comes.
  a.PublishReplied(8);
  const auto t0 = std::chrono::steady_clock::now();
  a.AwaitReplied(20ms);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 20ms);
}

// The publisher (apply thread) never waits for its own commit: a waiter's
// callback asking for an index of the batch it answers gets yes at once.
TEST(AppliedIndexTest, PublisherThreadNeverBlocks) {
  AppliedIndex a;
  a.SetPublisherThread(std::this_thread::get_id());
  a.Publish(3);
  a.PublishReplied(5);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(a.WaitFor(5, 30s));   // replied, not yet published
  EXPECT_FALSE(a.WaitFor(6, 30s));  // beyond: no, without waiting
  a.AwaitReplied(30s);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  // Another thread does wait for the publication.
  auto other = std::async(std::launch::async, [&] { return a.WaitFor(5, 20ms); });
  EXPECT_FALSE(other.get());
}

}  // namespace
}  // namespace cppetcd::server
