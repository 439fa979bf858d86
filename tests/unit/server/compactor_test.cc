#include "src/server/compactor.h"

#include <chrono>

#include "gtest/gtest.h"

namespace cppetcd::server {
namespace {

using namespace std::chrono_literals;
using TimePoint = std::chrono::steady_clock::time_point;

// etcd 3.4 periodic compaction with a 1 h period: samples every 6 min, first
// compaction after one hour to the revision seen at the start; the next one
// an hour after that success, to the oldest sample kept (11 samples).
TEST(ServerPeriodicCompactorTest, OneHourPeriod) {
  TimePoint t{1h};
  PeriodicCompactor c(1h, t, /*start_rev=*/10);
  EXPECT_EQ(c.retry_interval(), 6min);
  int64_t rev = 10;
  // Nothing before a whole period, however often it is polled.
  for (int i = 1; i < 10; ++i) {
    EXPECT_FALSE(c.Poll(t + i * 6min - 1s, rev).has_value());
    rev += 100;  // the sample taken at t + i*6min
    EXPECT_FALSE(c.Poll(t + i * 6min, rev).has_value()) << i;
  }
  // At one hour: compact to the first sample.
  auto due = c.Poll(t + 60min, 1000);
  ASSERT_TRUE(due.has_value());
  EXPECT_EQ(*due, 10);
  // While in flight nothing else is proposed.
  EXPECT_FALSE(c.Poll(t + 70min, 1000).has_value());
  c.Completed(true, t + 60min);
  // The next one waits an hour after that success; samples go on meanwhile.
  for (int i = 12; i < 20; ++i) EXPECT_FALSE(c.Poll(t + i * 6min, 2000 + i).has_value()) << i;
  due = c.Poll(t + 120min, 3000);
  ASSERT_TRUE(due.has_value());
  // The oldest of the 11 samples kept (no sample while the compaction was in
  // flight): the one of t + 48min.
  EXPECT_EQ(*due, 810);
}

TEST(ServerPeriodicCompactorTest, FailedCompactionRetriesAtNextInterval) {
  TimePoint t{1h};
  PeriodicCompactor c(10s, t, 5);  // retry every second, 11 samples
  int64_t rev = 5;
  for (int i = 1; i < 10; ++i) EXPECT_FALSE(c.Poll(t + i * 1s, ++rev).has_value());
  auto due = c.Poll(t + 10s, ++rev);
  ASSERT_TRUE(due.has_value());
  EXPECT_EQ(*due, 5);
  c.Completed(false, t + 10s);
  // Not yet a retry interval later.
  EXPECT_FALSE(c.Poll(t + 10s + 500ms, rev).has_value());
  due = c.Poll(t + 11s, ++rev);
  // The last success is still the start: due again, to the same oldest
  // sample (as etcd, the window slides on the next sample).
  ASSERT_TRUE(due.has_value());
  EXPECT_EQ(*due, 5);
}

TEST(ServerRevisionCompactorTest, EveryFiveMinutesKeepsRetention) {
  TimePoint t{1h};
  RevisionCompactor c(/*retention=*/100, t);
  EXPECT_FALSE(c.Poll(t + 4min, 1000).has_value());
  auto due = c.Poll(t + 5min, 1000);
  ASSERT_TRUE(due.has_value());
  EXPECT_EQ(*due, 900);
  c.Completed(true);
  // Same target again: skipped.
  EXPECT_FALSE(c.Poll(t + 10min, 1000).has_value());
  // Too few revisions: skipped.
  RevisionCompactor small(100, t);
  EXPECT_FALSE(small.Poll(t + 5min, 50).has_value());
  // A failed compaction is retried at the next interval.
  due = c.Poll(t + 15min, 1500);
  ASSERT_TRUE(due.has_value());
  c.Completed(false);
  due = c.Poll(t + 20min, 1500);
  ASSERT_TRUE(due.has_value());
  EXPECT_EQ(*due, 1400);
}

}  // namespace
}  // namespace cppetcd::server
