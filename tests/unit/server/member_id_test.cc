#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "cppetcd/server/errors.h"
#include "cppetcd/server/etcd_server.h"
#include "cppetcd/util/log.h"

namespace cppetcd::server {
namespace {

// etcd 3.4.23 started with no flags logs local-member-id 8e9e05c52164694d
// and cluster-id cdf818194e3a8c32.
TEST(ServerMemberIdTest, DefaultSingleNodeMatchesEtcd) {
  uint64_t id = ComputeMemberId({"http://localhost:2380"}, "etcd-cluster");
  EXPECT_EQ(util::IdToHex(id), "8e9e05c52164694d");
  EXPECT_EQ(util::IdToHex(ComputeClusterId({id})), "cdf818194e3a8c32");
}

TEST(ServerMemberIdTest, PeerUrlOrderDoesNotMatter) {
  EXPECT_EQ(ComputeMemberId({"http://a:1", "http://b:2"}, "t"),
            ComputeMemberId({"http://b:2", "http://a:1"}, "t"));
  EXPECT_NE(ComputeMemberId({"http://a:1"}, "t1"), ComputeMemberId({"http://a:1"}, "t2"));
}

TEST(ServerMemberIdTest, ClusterIdIsOrderIndependent) {
  EXPECT_EQ(ComputeClusterId({1, 2, 3}), ComputeClusterId({3, 1, 2}));
}

TEST(ServerErrorsTest, MessagesAreEtcds) {
  EXPECT_EQ(ErrRequestTooLarge().message(), "etcdserver: request is too large");
  EXPECT_TRUE(IsRequestTooLarge(ErrRequestTooLarge()));
  EXPECT_FALSE(IsRequestTooLarge(ErrTimeout()));
  EXPECT_EQ(ErrNoSpace().message(), "etcdserver: mvcc: database space exceeded");
  EXPECT_TRUE(IsNoSpace(ErrNoSpace()));
  EXPECT_TRUE(IsStopped(ErrStopped()));
  EXPECT_TRUE(IsTooManyRequests(ErrTooManyRequests()));
}

}  // namespace
}  // namespace cppetcd::server
