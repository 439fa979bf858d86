// Cluster tests on healthy multi-member clusters: bootstrap with the
// runbook's flags and etcdctl's views of it (member list, endpoint
// status/health --cluster), writes and reads through every member, a full
// restart, and move-leader.

#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cluster_harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cppetcd::integration {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;

// ------------------------------------------------------------ clusters

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override { CPPETCD_REQUIRE_SERVER(); }

  std::unique_ptr<Cluster> StartCluster(Cluster::Options o) {
    auto c = Cluster::Start(std::move(o), tmp_.path());
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  TempDir tmp_;
};

// Runbook: bootstrap with --initial-cluster, then `member list -w table`,
// `endpoint status --cluster -w table`, `endpoint health --cluster`.
void CheckBootstrap(Cluster& c) {
  const int n = c.size();
  ASSERT_TRUE(c.WaitForLeader(seconds(20)).ok());
  const std::string ep = c.member(0).ClientEndpoint();

  CommandResult list = Etcdctl(ep, {"member", "list", "-w", "table"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  auto rows = ParseTable(list.out);
  ASSERT_EQ(rows.size(), static_cast<size_t>(n + 1)) << list.out;
  EXPECT_THAT(rows[0],
              ElementsAre("ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"));
  std::set<std::string> names;
  for (int r = 1; r <= n; ++r) {
    ASSERT_EQ(rows[r].size(), 6u) << list.out;
    // %x of the member id: up to 16 hex digits, no padding.
    EXPECT_THAT(rows[r][0], ::testing::MatchesRegex("[0-9a-f]{1,16}"));
    EXPECT_EQ(rows[r][1], "started");
    const int i = c.IndexOf(rows[r][2]);
    ASSERT_GE(i, 0) << rows[r][2];
    names.insert(rows[r][2]);
    EXPECT_EQ(rows[r][3], c.member(i).PeerUrl());
    EXPECT_EQ(rows[r][4], c.member(i).ClientUrl());
    EXPECT_EQ(rows[r][5], "false");
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(n));

  CommandResult status = Etcdctl(ep, {"endpoint", "status", "--cluster", "-w", "table"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  rows = ParseTable(status.out);
  ASSERT_EQ(rows.size(), static_cast<size_t>(n + 1)) << status.out;
  EXPECT_THAT(rows[0],
              ElementsAre("ENDPOINT", "ID", "VERSION", "DB SIZE", "IS LEADER", "IS LEARNER",
                          "RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX", "ERRORS"));
  int leaders = 0;
  std::set<std::string> terms, endpoints;
  for (int r = 1; r <= n; ++r) {
    ASSERT_EQ(rows[r].size(), 10u) << status.out;
    endpoints.insert(rows[r][0]);
    if (rows[r][4] == "true") ++leaders;
    EXPECT_EQ(rows[r][5], "false");
    terms.insert(rows[r][6]);
    EXPECT_EQ(rows[r][9], "");
  }
  EXPECT_EQ(leaders, 1) << status.out;
  EXPECT_EQ(terms.size(), 1u) << status.out;
  for (int i = 0; i < n; ++i) EXPECT_TRUE(endpoints.count(c.member(i).ClientUrl())) << status.out;

  CommandResult health = Etcdctl(ep, {"endpoint", "health", "--cluster"});
  ASSERT_EQ(health.exit_code, 0) << health.out << health.err;
  const std::string all = health.out + StripClientLogLines(health.err);
  for (int i = 0; i < n; ++i) {
    EXPECT_THAT(all, ::testing::HasSubstr(c.member(i).ClientUrl() +
                                          " is healthy: successfully committed proposal"));
  }
}

TEST_F(ClusterTest, BootstrapThreeMembers) {
  auto c = StartCluster({.size = 3});
  ASSERT_NE(c, nullptr);
  CheckBootstrap(*c);
}

TEST_F(ClusterTest, BootstrapFiveMembers) {
  auto c = StartCluster({.size = 5});
  ASSERT_NE(c, nullptr);
  CheckBootstrap(*c);
}

// Writes through every member; linearizable reads from every member see
// all of them at once, serializable reads eventually.
TEST_F(ClusterTest, WritesAndReadsThroughEveryMember) {
  auto c = StartCluster({.size = 3});
  ASSERT_NE(c, nullptr);
  std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> kv;
  for (int i = 0; i < c->size(); ++i)
    kv.push_back(etcdserverpb::KV::NewStub(c->member(i).NewChannel()));
  constexpr int kPerMember = 20;
  for (int k = 0; k < kPerMember; ++k) {
    for (int i = 0; i < c->size(); ++i) {
      grpc::Status st =
          PutKey(kv[i].get(), absl::StrCat("rw/m", i, "/", k), absl::StrCat(i, ":", k), seconds(5));
      ASSERT_TRUE(st.ok()) << "put via m" << i << ": " << st.error_message();
    }
  }
  // etcdctl too, as the runbook does.
  CommandResult put = Etcdctl(c->member(2).ClientEndpoint(), {"put", "rw/ctl", "v"});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  EXPECT_EQ(put.out, "OK\n");
  const int expected = kPerMember * c->size() + 1;
  for (int i = 0; i < c->size(); ++i) {
    etcdserverpb::RangeResponse resp;
    grpc::Status st = GetKey(kv[i].get(), "rw/", false, seconds(5), &resp, PrefixEnd("rw/"));
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(resp.count(), expected) << "linearizable read at m" << i;
    CommandResult get = Etcdctl(c->member(i).ClientEndpoint(), {"get", "rw/ctl"});
    EXPECT_EQ(get.out, "rw/ctl\nv\n");
  }
  for (int i = 0; i < c->size(); ++i) {
    EXPECT_TRUE(PollUntil(
        [&] {
          etcdserverpb::RangeResponse resp;
          return GetKey(kv[i].get(), "rw/", true, seconds(2), &resp, PrefixEnd("rw/")).ok() &&
                 resp.count() == expected;
        },
        seconds(10)))
        << "serializable read at m" << i;
  }
}

// SIGTERM every member, start them all again: data intact, a leader.
TEST_F(ClusterTest, RestartAllMembersKeepsData) {
  auto c = StartCluster({.size = 3});
  ASSERT_NE(c, nullptr);
  auto kv = etcdserverpb::KV::NewStub(c->member(0).NewChannel());
  for (int k = 0; k < 50; ++k) {
    ASSERT_TRUE(PutKey(kv.get(), absl::StrCat("restart/", k), absl::StrCat(k), seconds(5)).ok());
  }
  etcdserverpb::RangeResponse before;
  ASSERT_TRUE(GetKey(kv.get(), "restart/", false, seconds(5), &before, PrefixEnd("restart/")).ok());
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < c->size(); ++i) {
    CommandResult r = c->member(i).Terminate();
    EXPECT_FALSE(r.timed_out) << c->member(i).name() << " ignored SIGTERM";
  }
  const auto t1 = std::chrono::steady_clock::now();
  ASSERT_TRUE(c->RestartAll().ok());
  std::cout
      << "SIGTERM of 3 members took " << std::chrono::duration_cast<milliseconds>(t1 - t0).count()
      << " ms; restart until all serve "
      << std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t1).count()
      << " ms\n";
  auto leader = c->WaitForLeader(seconds(20));
  ASSERT_TRUE(leader.ok()) << leader.status();
  for (int i = 0; i < c->size(); ++i) {
    auto kvi = etcdserverpb::KV::NewStub(c->member(i).NewChannel());
    etcdserverpb::RangeResponse after;
    ASSERT_TRUE(
        GetKey(kvi.get(), "restart/", false, seconds(5), &after, PrefixEnd("restart/")).ok());
    ASSERT_EQ(after.kvs_size(), 50);
    for (int k = 0; k < 50; ++k) {
      EXPECT_EQ(after.kvs(k).key(), before.kvs(k).key());
      EXPECT_EQ(after.kvs(k).value(), before.kvs(k).value());
      EXPECT_EQ(after.kvs(k).mod_revision(), before.kvs(k).mod_revision());
    }
  }
  // And it takes writes again.
  auto kv2 = etcdserverpb::KV::NewStub(c->member(2).NewChannel());
  EXPECT_TRUE(PutKey(kv2.get(), "restart/after", "x", seconds(5)).ok());
}

// `etcdctl move-leader <id>` (run against all endpoints, as etcdctl needs
// the leader among them) makes that follower the leader.
TEST_F(ClusterTest, MoveLeaderToFollower) {
  auto c = StartCluster({.size = 3});
  ASSERT_NE(c, nullptr);
  auto leader = c->WaitForLeader(seconds(20));
  ASSERT_TRUE(leader.ok()) << leader.status();
  const int target = (*leader + 1) % c->size();
  auto target_id = c->MemberId(target);
  ASSERT_TRUE(target_id.ok());
  auto old_id = c->MemberId(*leader);
  ASSERT_TRUE(old_id.ok());
  CommandResult r = Etcdctl(c->RunningEndpoints(), {"move-leader", Cluster::HexId(*target_id)});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, absl::StrCat("Leadership transferred from ", Cluster::HexId(*old_id), " to ",
                                Cluster::HexId(*target_id), "\n"));
  auto now = c->WaitForLeader(seconds(10));
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(*now, target);

  // Through a follower's endpoint alone etcdctl cannot do it.
  const int follower = (target + 1) % c->size();
  r = Etcdctl(c->member(follower).ClientEndpoint(), {"move-leader", Cluster::HexId(*old_id)});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(StripClientLogLines(r.err), ::testing::HasSubstr("no leader endpoint given at"));
}

}  // namespace
}  // namespace cppetcd::integration
