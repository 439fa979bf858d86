// Membership tests following the operators' runbook step by step with
// etcdctl: member add (then start with --initial-cluster-state=existing),
// member remove, replacing a failed member, learners and member promote,
// member update of peer URLs, a wiped member restored by a snapshot sent
// over the network, and --force-new-cluster recovery.
#include <iostream>
#include <mutex>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cluster_harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cppetcd::integration {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// etcdctl prints member and cluster ids with %16x (space-padded).
std::string NormalizeMemberLine(const std::string& s) {
  static const std::regex kIds("(Member|cluster) +[0-9a-f]+");
  return std::regex_replace(s, kIds, "$1 <ID>");
}

class ClusterMembershipTest : public ::testing::Test {
 protected:
  void SetUp() override { CPPETCD_REQUIRE_SERVER(); }

  std::unique_ptr<Cluster> StartCluster(Cluster::Options o) {
    auto c = Cluster::Start(std::move(o), tmp_.path());
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  TempDir tmp_;
};

// `etcdctl member list -w table` rows (header dropped), keyed by name.
std::map<std::string, std::vector<std::string>> MemberRows(const std::string& endpoint) {
  std::map<std::string, std::vector<std::string>> out;
  CommandResult r = Etcdctl(endpoint, {"member", "list", "-w", "table"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto rows = ParseTable(r.out);
  if (rows.empty()) return out;
  EXPECT_THAT(rows[0],
              ElementsAre("ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"));
  for (size_t i = 1; i < rows.size(); ++i) {
    if (rows[i].size() == 6) out[rows[i][2]] = rows[i];
  }
  return out;
}

void PutMany(ClusterMember& m, const std::string& prefix, int n) {
  auto kv = etcdserverpb::KV::NewStub(m.NewChannel());
  for (int k = 0; k < n; ++k) {
    grpc::Status st = PutKey(kv.get(), absl::StrCat(prefix, k), absl::StrCat("v", k), seconds(5));
    ASSERT_TRUE(st.ok()) << prefix << k << ": " << st.error_message();
  }
}

// Keys under `prefix` on `m` (linearizable unless `serializable`); -1 on
// error.
int64_t CountKeys(ClusterMember& m, const std::string& prefix, bool serializable = false) {
  auto kv = etcdserverpb::KV::NewStub(m.NewChannel());
  etcdserverpb::RangeResponse resp;
  if (!GetKey(kv.get(), prefix, serializable, seconds(3), &resp, PrefixEnd(prefix)).ok()) return -1;
  return resp.count();
}

// The member add printout: structure and values the runbook relies on.
void CheckMemberAddPrintout(Cluster& c, const Cluster::MemberAddOutput& out,
                            const std::string& name) {
  auto lines = SplitLines(out.stdout_text);
  ASSERT_EQ(lines.size(), 6u) << out.stdout_text;
  EXPECT_EQ(NormalizeMemberLine(lines[0]), "Member <ID> added to cluster <ID>");
  EXPECT_EQ(lines[1], "");
  EXPECT_EQ(lines[2], absl::StrCat("ETCD_NAME=\"", name, "\""));
  EXPECT_EQ(out.etcd_initial_advertise, c.member(c.IndexOf(name)).PeerUrl());
  EXPECT_EQ(lines[5], "ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
  // Every voting/learner member's name=peer URL, in some order.
  std::set<std::string> entries;
  for (absl::string_view e : absl::StrSplit(out.etcd_initial_cluster, ',')) {
    entries.insert(std::string(e));
  }
  std::set<std::string> expected;
  for (int i : c.Running()) expected.insert(c.member(i).name() + "=" + c.member(i).PeerUrl());
  expected.insert(name + "=" + c.member(c.IndexOf(name)).PeerUrl());
  EXPECT_EQ(entries, expected) << out.stdout_text;
}

// Runbook: member add -> start with existing -> catches up; member remove
// -> the removed process stops, the rest keeps working.
TEST_F(ClusterMembershipTest, AddThenRemoveMember) {
  auto c = StartCluster({.size = 3});
  ASSERT_NE(c, nullptr);
  PutMany(c->member(0), "add/", 100);
  Cluster::MemberAddOutput out;
  auto idx = c->AddMember("m3", /*learner=*/false, c->RunningEndpoints(), &out);
  ASSERT_TRUE(idx.ok()) << idx.status();
  CheckMemberAddPrintout(*c, out, "m3");
  EXPECT_EQ(CountKeys(c->member(*idx), "add/"), 100);
  auto rows = MemberRows(c->member(*idx).ClientEndpoint());
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_TRUE(
      PollUntil([&] { return MemberRows(c->member(0).ClientEndpoint())["m3"][1] == "started"; },
                seconds(10)));
  EXPECT_EQ(rows["m3"][3], c->member(*idx).PeerUrl());
  EXPECT_EQ(rows["m3"][4], c->member(*idx).ClientUrl());
  ASSERT_TRUE(c->WaitForLeader(seconds(10)).ok());
  PutMany(c->member(*idx), "add/by-m3/", 10);

  // Remove it again.
  auto id = c->MemberId(*idx);
  ASSERT_TRUE(id.ok());
  CommandResult r =
      EtcdctlReconfig(c->member(0).ClientEndpoint(), {"member", "remove", Cluster::HexId(*id)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(NormalizeMemberLine(r.out), "Member <ID> removed from cluster <ID>\n");
  EXPECT_TRUE(PollUntil([&] { return c->member(*idx).Exited(); }, seconds(15)))
      << "the removed member kept running";
  c->member(*idx).Kill();
  rows = MemberRows(c->member(1).ClientEndpoint());
  EXPECT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows.count("m3"), 0u);
  PutMany(c->member(1), "add/after-remove/", 10);
  EXPECT_EQ(CountKeys(c->member(2), "add/"), 120);
}

// Runbook "replace a failed member": it dies, is removed, its data wiped,
// re-added under the same name and started with existing; it catches up,
// including what was written while it was gone.
TEST_F(ClusterMembershipTest, ReplaceFailedMember) {
  auto c = StartCluster({.size = 3});
  ASSERT_NE(c, nullptr);
  PutMany(c->member(0), "replace/before/", 50);
  const int failed = 2;
  auto old_id = c->MemberId(failed);
  ASSERT_TRUE(old_id.ok());
  c->member(failed).Kill();
  // Adding first is refused while a voting member is down (the strict
  // reconfiguration check): that is why the runbook removes first.
  CommandResult early =
      Etcdctl(c->RunningEndpoints(), {"member", "add", "m9", "--peer-urls=http://127.0.0.1:9"});
  EXPECT_NE(early.exit_code, 0) << early.out;
  EXPECT_THAT(StripClientLogLines(early.err), HasSubstr("etcdserver: unhealthy cluster"));
  if (early.exit_code == 0) return;  // 4 members, 2 down: no quorum to go on with
  absl::Status removed = c->RemoveMember(*old_id, c->RunningEndpoints());
  ASSERT_TRUE(removed.ok()) << removed;
  c->member(failed).WipeData();
  PutMany(c->member(1), "replace/while-gone/", 50);
  Cluster::MemberAddOutput out;
  auto idx = c->AddMember("m2", false, c->RunningEndpoints(), &out, /*reuse_slot=*/true);
  ASSERT_TRUE(idx.ok()) << idx.status();
  EXPECT_EQ(*idx, failed);
  CheckMemberAddPrintout(*c, out, "m2");
  EXPECT_NE(out.id, *old_id);
  EXPECT_EQ(CountKeys(c->member(failed), "replace/"), 100);
  auto rows = MemberRows(c->member(0).ClientEndpoint());
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_TRUE(
      PollUntil([&] { return MemberRows(c->member(0).ClientEndpoint())["m2"][1] == "started"; },
                seconds(10)));
  ASSERT_TRUE(c->WaitForLeader(seconds(10)).ok());
  PutMany(c->member(failed), "replace/after/", 10);
  EXPECT_EQ(CountKeys(c->member(0), "replace/"), 110);
}

// A learner: added with --learner, started, listed as a learner, refuses
// linearizable requests, catches up; promoted once in sync.
TEST_F(ClusterMembershipTest, LearnerAddAndPromote) {
  auto c = StartCluster({.size = 3});
  ASSERT_NE(c, nullptr);
  PutMany(c->member(0), "learner/", 100);
  Cluster::MemberAddOutput out;
  auto idx = c->AddMember("m3", /*learner=*/true, c->RunningEndpoints(), &out);
  ASSERT_TRUE(idx.ok()) << idx.status();
  CheckMemberAddPrintout(*c, out, "m3");
  ClusterMember& l = c->member(*idx);
  auto rows = MemberRows(c->member(0).ClientEndpoint());
  ASSERT_EQ(rows.count("m3"), 1u);
  EXPECT_EQ(rows["m3"][5], "true");
  // Serializable reads are served from its replica once it caught up.
  EXPECT_TRUE(PollUntil([&] { return CountKeys(l, "learner/", /*serializable=*/true) == 100; },
                        seconds(15)));
  // Writes and linearizable reads are refused by a learner.
  auto kv = etcdserverpb::KV::NewStub(l.NewChannel());
  grpc::Status w = PutKey(kv.get(), "refused-by-learner", "v", seconds(3));
  EXPECT_FALSE(w.ok());
  EXPECT_EQ(w.error_message(), "etcdserver: rpc not supported for learner");
  etcdserverpb::RangeResponse resp;
  grpc::Status lr = GetKey(kv.get(), "learner/", false, seconds(3), &resp);
  EXPECT_FALSE(lr.ok());
  EXPECT_EQ(lr.error_message(), "etcdserver: rpc not supported for learner");

  // Promote (retried while the leader says it is not in sync yet).
  CommandResult r;
  const bool promoted = PollUntil(
      [&] {
        r = Etcdctl(c->member(0).ClientEndpoint(), {"member", "promote", Cluster::HexId(out.id)});
        return r.exit_code == 0;
      },
      seconds(20));
  ASSERT_TRUE(promoted) << r.out << r.err;
  EXPECT_EQ(NormalizeMemberLine(r.out), "Member <ID> promoted in cluster <ID>\n");
  rows = MemberRows(c->member(1).ClientEndpoint());
  EXPECT_EQ(rows["m3"][5], "false");
  EXPECT_TRUE(PollUntil([&] { return CountKeys(l, "learner/") == 100; }, seconds(10)));
  auto kv2 = etcdserverpb::KV::NewStub(l.NewChannel());
  EXPECT_TRUE(PutKey(kv2.get(), "learner/after-promote", "v", seconds(5)).ok());
  // Promoting a voting member is an error.
  r = Etcdctl(c->member(0).ClientEndpoint(), {"member", "promote", Cluster::HexId(out.id)});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(StripClientLogLines(r.err),
              HasSubstr("etcdserver: can only promote a learner member"));
}

// Runbook `member update <id> --peer-urls=...`: the member is now reached
// at its real peer port; the old URL (its proxy) is shut, and it still
// replicates both ways.
TEST_F(ClusterMembershipTest, UpdatePeerUrls) {
  auto c = StartCluster({.size = 3, .proxies = true});
  ASSERT_NE(c, nullptr);
  auto leader = c->WaitForLeader(seconds(20));
  ASSERT_TRUE(leader.ok()) << leader.status();
  const int f = (*leader + 1) % c->size();
  auto id = c->MemberId(f);
  ASSERT_TRUE(id.ok());
  const std::string new_url = absl::StrCat("http://127.0.0.1:", c->member(f).peer_port());
  CommandResult r =
      EtcdctlReconfig(c->member(*leader).ClientEndpoint(),
                      {"member", "update", Cluster::HexId(*id), "--peer-urls=" + new_url});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(NormalizeMemberLine(r.out), "Member <ID> updated in cluster <ID>\n");
  EXPECT_TRUE(PollUntil(
      [&] { return MemberRows(c->member(f).ClientEndpoint())[c->member(f).name()][3] == new_url; },
      seconds(10)));
  // Shut the old address: only the new one reaches the member now.
  c->member(f).proxy()->SetMode(FaultProxy::Mode::kReset);
  PutMany(c->member(*leader), "update/", 20);
  EXPECT_TRUE(PollUntil([&] { return CountKeys(c->member(f), "update/") == 20; }, seconds(15)));
  EXPECT_TRUE(PollUntil(
      [&] {
        auto kv = etcdserverpb::KV::NewStub(c->member(f).NewChannel());
        return PutKey(kv.get(), "update/by-f", "v", seconds(2)).ok();
      },
      seconds(15)));
  EXPECT_EQ(CountKeys(c->member(*leader), "update/"), 21);
}

// A member wiped and re-added after the leader compacted its raft log
// (small --snapshot-count, thousands of writes): it can only be restored
// by a snapshot sent over the network. etcd 3.4 keeps 5000 entries behind
// a snapshot, hence the count.
TEST_F(ClusterMembershipTest, WipedMemberRestoredBySnapshot) {
  auto c = StartCluster({.size = 3, .extra_flags = {"--snapshot-count=100"}});
  ASSERT_NE(c, nullptr);
  const int victim = 2;
  auto old_id = c->MemberId(victim);
  ASSERT_TRUE(old_id.ok());
  c->member(victim).Kill();
  absl::Status removed = c->RemoveMember(*old_id, c->RunningEndpoints());
  ASSERT_TRUE(removed.ok()) << removed;
  c->member(victim).WipeData();
  constexpr int kWriters = 8;
  constexpr int kPerWriter = 700;  // 5600 entries
  std::vector<std::thread> writers;
  std::atomic<int> failures{0};
  std::atomic<int> retried{0};
  std::mutex first_error_mu;
  std::string first_error;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      auto kv = etcdserverpb::KV::NewStub(c->member(w % 2).NewChannel());
      for (int k = 0; k < kPerWriter; ++k) {
        // A put that fails is retried (as a client would) under a deadline;
        // the test is about the snapshot, the errors are reported.
        const bool acked = PollUntil(
            [&] {
              grpc::Status st = PutKey(kv.get(), absl::StrCat("snap/w", w, "/", k),
                                       std::string(100, 'x'), seconds(5));
              if (st.ok()) return true;
              retried.fetch_add(1);
              std::lock_guard<std::mutex> lock(first_error_mu);
              if (first_error.empty()) {
                first_error = absl::StrCat("m", w % 2, ": ", st.error_code(), " ",
                                           st.error_message());
              }
              return false;
            },
            seconds(10));
        if (!acked) failures.fetch_add(1);
      }
    });
  }
  for (auto& t : writers) t.join();
  if (retried.load() > 0) {
    std::cout << retried.load() << " puts failed and were retried; first error: " << first_error
              << "\n";
  }
  ASSERT_EQ(failures.load(), 0) << "first error: " << first_error;
  auto idx = c->AddMember("m2", false, c->RunningEndpoints(), nullptr, /*reuse_slot=*/true);
  ASSERT_TRUE(idx.ok()) << idx.status();
  EXPECT_EQ(CountKeys(c->member(victim), "snap/"), kWriters * kPerWriter);
  EXPECT_TRUE(PollUntil(
      [&] { return CountKeys(c->member(victim), "snap/", true) == kWriters * kPerWriter; },
      seconds(10)));
  // Spot-check values, and that it keeps replicating after the snapshot.
  auto kv = etcdserverpb::KV::NewStub(c->member(victim).NewChannel());
  etcdserverpb::RangeResponse resp;
  ASSERT_TRUE(GetKey(kv.get(), "snap/w7/699", true, seconds(3), &resp).ok());
  ASSERT_EQ(resp.kvs_size(), 1);
  EXPECT_EQ(resp.kvs(0).value(), std::string(100, 'x'));
  PutMany(c->member(0), "snap-after/", 5);
  EXPECT_TRUE(PollUntil([&] { return CountKeys(c->member(victim), "snap-after/", true) == 5; },
                        seconds(10)));
  // What etcd's leader logged (informational: cppetcd logs differently).
  for (int i = 0; i < 2; ++i) {
    const std::string log = c->member(i).ReadLog();
    if (log.find("start to send database snapshot") != std::string::npos ||
        log.find("sending database snapshot") != std::string::npos) {
      std::cout << c->member(i).name() << " logged that it sent a database snapshot\n";
    }
  }
}

// Runbook --force-new-cluster: stop all; restart one with the flag and its
// data; it is a one-member cluster with all the data; re-add the others.
TEST_F(ClusterMembershipTest, ForceNewClusterThenReAddMembers) {
  auto c = StartCluster({.size = 3});
  ASSERT_NE(c, nullptr);
  PutMany(c->member(1), "force/", 50);
  ASSERT_TRUE(c->WaitForLeader(seconds(10)).ok());
  // Every member has applied everything before the stop.
  ASSERT_TRUE(
      PollUntil([&] { return CountKeys(c->member(0), "force/", true) == 50; }, seconds(10)));
  for (int i = 0; i < c->size(); ++i) c->member(i).Terminate();

  auto args = c->member(0).args();
  args.push_back("--force-new-cluster");
  c->member(0).set_args(args);
  ASSERT_TRUE(c->Restart(0).ok());
  auto rows = MemberRows(c->member(0).ClientEndpoint());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows.count("m0"), 1u);
  EXPECT_EQ(CountKeys(c->member(0), "force/"), 50);
  PutMany(c->member(0), "force/alone/", 5);

  for (int i = 1; i < 3; ++i) {
    const std::string name = absl::StrCat("m", i);
    c->member(i).WipeData();
    Cluster::MemberAddOutput out;
    auto idx = c->AddMember(name, false, c->member(0).ClientEndpoint(), &out, /*reuse_slot=*/true);
    ASSERT_TRUE(idx.ok()) << idx.status();
    CheckMemberAddPrintout(*c, out, name);
    EXPECT_EQ(CountKeys(c->member(i), "force/"), 55);
  }
  auto leader = c->WaitForLeader(seconds(10));
  ASSERT_TRUE(leader.ok()) << leader.status();
  rows = MemberRows(c->member(2).ClientEndpoint());
  EXPECT_EQ(rows.size(), 3u);
  for (auto& [name, row] : rows) EXPECT_EQ(row[1], "started") << name;
  PutMany(c->member(2), "force/after/", 5);
  EXPECT_EQ(CountKeys(c->member(0), "force/"), 60);
}

}  // namespace
}  // namespace cppetcd::integration
