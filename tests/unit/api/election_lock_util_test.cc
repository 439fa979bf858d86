// The pure helpers of the Election and Lock services and their executor
// (no gRPC: these run under TSan too).
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "cppetcd/lease/lessor.h"
#include "src/api/election_lock.h"

namespace cppetcd::api {
namespace {

TEST(ElectionLockUtilTest, PrefixRangeEnd) {
  EXPECT_EQ(PrefixRangeEnd("lock/"), "lock0");
  EXPECT_EQ(PrefixRangeEnd("a\xff"), "b");
  EXPECT_EQ(PrefixRangeEnd(std::string("\xff\xff")), std::string(1, '\0'));
  EXPECT_EQ(PrefixRangeEnd(""), std::string(1, '\0'));
}

TEST(ElectionLockUtilTest, QueueKeyIsLowercaseHexLikeGoPercentX) {
  EXPECT_EQ(QueueKey("e/", 0x694d7a2b3c1d0e0f), "e/694d7a2b3c1d0e0f");
  EXPECT_EQ(QueueKey("e/", 10), "e/a");
  EXPECT_EQ(QueueKey("e/", -31), "e/-1f");
}

TEST(ElectionLockUtilTest, ClientErrorsBecomeUnknownWithEtcdsMessage) {
  grpc::Status st = GrpcFromClientError(lease::ErrLeaseNotFound());
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNKNOWN);
  EXPECT_EQ(st.error_message(), "etcdserver: requested lease not found");
  EXPECT_EQ(GrpcFromClientError(absl::CancelledError("x")).error_code(),
            grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(GrpcFromClientError(absl::OkStatus()).ok());
  EXPECT_EQ(GrpcElectionNotLeader().error_message(), "election: not leader");
  EXPECT_EQ(GrpcElectionNoLeader().error_message(), "election: no leader");
}

TEST(ElectionLockUtilTest, ExecutorRunsTasksInOrderAndDrainsOnStop) {
  SerialExecutor executor;
  std::vector<int> order;  // touched only by tasks, read after Stop
  std::thread poster([&] {
    for (int i = 0; i < 100; ++i) executor.Post([&order, i] { order.push_back(i); });
  });
  poster.join();
  executor.Stop();
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
  // After Stop a task is dropped, not run.
  bool ran = false;
  executor.Post([&ran] { ran = true; });
  EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace cppetcd::api
