// `cppetcd snapshot status|restore` end to end: a snapshot saved with
// etcdctl from a running cluster, restored into every member's data dir
// (the runbook's disaster recovery), and an etcd 3.4 snapshot (bbolt)
// imported into cppetcd.
#include <filesystem>
#include <string>
#include <vector>

#include "cluster_harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "nlohmann/json.hpp"

namespace cppetcd::integration {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;

constexpr auto kTimeout = std::chrono::seconds(60);

CommandResult Snapshot(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {ServerBinary(), "snapshot"};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, "", {}, kTimeout);
}

std::string InitialCluster(Cluster& c) {
  std::string out;
  for (int i = 0; i < c.size(); ++i) {
    if (!out.empty()) out += ",";
    out += c.member(i).name() + "=" + c.member(i).PeerUrl();
  }
  return out;
}

// Stops every member, replaces its data dir by a restore of `snap`, and
// starts them all again.
void RestoreAll(Cluster& c, const std::string& snap) {
  for (int i = 0; i < c.size(); ++i) c.member(i).Terminate();
  for (int i = 0; i < c.size(); ++i) {
    c.member(i).WipeData();
    CommandResult r = Snapshot({"restore", snap, "--name", c.member(i).name(), "--data-dir",
                                c.member(i).data_dir(), "--initial-cluster", InitialCluster(c),
                                "--initial-cluster-token", c.token(),
                                "--initial-advertise-peer-urls", c.member(i).PeerUrl()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  ASSERT_TRUE(c.RestartAll().ok());
}

std::string Get(const std::string& endpoint, const std::string& key) {
  CommandResult r = Etcdctl(endpoint, {"get", key, "--print-value-only"}, "", kTimeout);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out;
}

TEST(SnapshotRestoreTest, RestoresAThreeMemberClusterFromASavedSnapshot) {
  CPPETCD_REQUIRE_SERVER();
  if (IsReferenceEtcd(ServerBinary())) GTEST_SKIP() << "cppetcd's own subcommand";
  TempDir dir;
  Cluster::Options opts;
  auto c = Cluster::Start(opts, dir.path());
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string ep = (*c)->member(0).ClientEndpoint();
  ASSERT_EQ(Etcdctl(ep, {"put", "foo", "bar"}, "", kTimeout).exit_code, 0);
  ASSERT_EQ(Etcdctl(ep, {"put", "gone", "x"}, "", kTimeout).exit_code, 0);
  ASSERT_EQ(Etcdctl(ep, {"del", "gone"}, "", kTimeout).exit_code, 0);
  ASSERT_EQ(Etcdctl(ep, {"put", "foo", "baz"}, "", kTimeout).exit_code, 0);
  const std::string snap = dir.path() + "/s.db";
  CommandResult saved = Etcdctl(ep, {"snapshot", "save", snap}, "", kTimeout);
  ASSERT_EQ(saved.exit_code, 0) << saved.err;

  CommandResult st = Snapshot({"status", snap, "-w", "json"});
  ASSERT_EQ(st.exit_code, 0) << st.err;
  auto j = nlohmann::json::parse(st.out);
  EXPECT_GE(j["revision"].get<int64_t>(), 5);
  EXPECT_GT(j["totalKey"].get<int64_t>(), 4);
  EXPECT_GT(j["totalSize"].get<int64_t>(), 0);
  CommandResult table = Snapshot({"status", snap, "-w", "table"});
  // The HASH column is as wide as the hash in hex (no zero padding, as
  // etcdctl prints it), so only the header cells and their order are fixed.
  EXPECT_THAT(table.out, ContainsRegex("\\| +HASH +\\| REVISION \\| TOTAL KEYS \\| TOTAL SIZE \\|"));

  // Writes after the snapshot are lost by the restore.
  ASSERT_EQ(Etcdctl(ep, {"put", "after", "1"}, "", kTimeout).exit_code, 0);
  RestoreAll(**c, snap);
  ASSERT_TRUE((*c)->WaitForLeader(kTimeout).ok());
  for (int i = 0; i < 3; ++i) {
    const std::string e = (*c)->member(i).ClientEndpoint();
    EXPECT_EQ(Get(e, "foo"), "baz\n") << i;
    EXPECT_EQ(Get(e, "gone"), "") << i;
    EXPECT_EQ(Get(e, "after"), "") << i;
  }
  // New writes replicate to all three; their history hashes agree.
  ASSERT_EQ(Etcdctl(ep, {"put", "new", "v"}, "", kTimeout).exit_code, 0);
  CommandResult members = Etcdctl(ep, {"member", "list"}, "", kTimeout);
  EXPECT_EQ(SplitLines(members.out).size(), 3u) << members.out;
  std::vector<int64_t> hashes;
  ASSERT_TRUE(PollUntil(
      [&] {
        hashes.clear();
        for (int i = 0; i < 3; ++i) {
          CommandResult h = Etcdctl((*c)->member(i).ClientEndpoint(),
                                    {"endpoint", "hashkv", "-w", "json"}, "", kTimeout);
          if (h.exit_code != 0) return false;
          auto hj = nlohmann::json::parse(h.out, nullptr, false);
          if (hj.is_discarded() || !hj.is_array() || hj.empty()) return false;
          hashes.push_back(hj[0]["HashKV"]["hash"].get<int64_t>());
        }
        return hashes[0] == hashes[1] && hashes[1] == hashes[2];
      },
      kTimeout));
}

TEST(SnapshotRestoreTest, RefusesASnapshotWithoutHashUnlessSkipped) {
  CPPETCD_REQUIRE_SERVER();
  if (IsReferenceEtcd(ServerBinary())) GTEST_SKIP() << "cppetcd's own subcommand";
  TempDir dir;
  Cluster::Options opts;
  opts.size = 1;
  auto c = Cluster::Start(opts, dir.path());
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string ep = (*c)->member(0).ClientEndpoint();
  ASSERT_EQ(Etcdctl(ep, {"put", "k", "v"}, "", kTimeout).exit_code, 0);
  (*c)->member(0).Terminate();
  const std::string raw = (*c)->member(0).data_dir() + "/member/snap/db";
  CommandResult r = Snapshot({"restore", raw, "--data-dir", dir.path() + "/r1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("Error: snapshot missing hash but --skip-hash-check=false"));
  r = Snapshot({"restore", raw, "--data-dir", dir.path() + "/r2", "--skip-hash-check"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/r2/member/snap/db"));
  r = Snapshot({"restore", raw, "--data-dir", dir.path() + "/r2", "--skip-hash-check"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("data-dir \"" + dir.path() + "/r2\" exists"));
  // etcdctl's exit codes: 4 for an unsupported format, 128 for bad arguments.
  EXPECT_EQ(Snapshot({"status", raw, "-w", "yaml"}).exit_code, 4);
  EXPECT_EQ(Snapshot({"status"}).exit_code, 128);
  r = Snapshot({"status", raw, "-w", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"totalKey\":"));
  r = Snapshot({"status", (*c)->member(0).log_path()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("not a snapshot"));
}

TEST(SnapshotRestoreTest, ImportsAnEtcdSnapshot) {
  CPPETCD_REQUIRE_SERVER();
  if (IsReferenceEtcd(ServerBinary())) GTEST_SKIP() << "cppetcd's own subcommand";
  TempDir dir;
  const std::string snap = dir.path() + "/etcd.db";
  {
    ServerProcess::Options eo;
    eo.binary = ReferenceEtcdBinary();
    eo.data_dir = dir.path() + "/etcd.data";
    auto etcd = ServerProcess::Start(eo);
    ASSERT_TRUE(etcd.ok()) << etcd.status();
    const std::string ep = (*etcd)->ClientEndpoint();
    ASSERT_EQ(Etcdctl(ep, {"put", "a", "1"}, "", kTimeout).exit_code, 0);
    ASSERT_EQ(Etcdctl(ep, {"put", "b", "2"}, "", kTimeout).exit_code, 0);
    ASSERT_EQ(Etcdctl(ep, {"put", "a", "3"}, "", kTimeout).exit_code, 0);
    ASSERT_EQ(Etcdctl(ep, {"del", "b"}, "", kTimeout).exit_code, 0);
    CommandResult lease = Etcdctl(ep, {"lease", "grant", "3000"}, "", kTimeout);
    ASSERT_EQ(lease.exit_code, 0);
    const std::string id = SplitLines(lease.out)[0].substr(6, 16);
    ASSERT_EQ(Etcdctl(ep, {"put", "c", "4", "--lease", id}, "", kTimeout).exit_code, 0) << id;
    ASSERT_EQ(Etcdctl(ep, {"compact", "3"}, "", kTimeout).exit_code, 0);
    ASSERT_EQ(Etcdctl(ep, {"snapshot", "save", snap}, "", kTimeout).exit_code, 0);
  }
  // Same status as etcdctl's, in every format.
  for (const std::string w : {"simple", "table", "json"}) {
    CommandResult want =
        RunCommand({EtcdctlBinary(), "snapshot", "status", snap, "-w", w}, "", {}, kTimeout);
    CommandResult got = Snapshot({"status", snap, "-w", w});
    EXPECT_EQ(got.exit_code, 0) << got.err;
    EXPECT_EQ(got.out, want.out) << w;
  }
  Cluster::Options opts;
  opts.size = 1;
  std::filesystem::create_directories(dir.path() + "/c");
  auto c = Cluster::Start(opts, dir.path() + "/c");
  ASSERT_TRUE(c.ok()) << c.status();
  RestoreAll(**c, snap);
  const std::string ep = (*c)->member(0).ClientEndpoint();
  EXPECT_EQ(Get(ep, "a"), "3\n");
  EXPECT_EQ(Get(ep, "b"), "");
  EXPECT_EQ(Get(ep, "c"), "4\n");
  CommandResult leases = Etcdctl(ep, {"lease", "list"}, "", kTimeout);
  EXPECT_THAT(leases.out, HasSubstr("found 1 leases")) << leases.err;
  // The compaction survived: revision 2 is gone, 4 is readable.
  CommandResult old = Etcdctl(ep, {"get", "a", "--rev", "2"}, "", kTimeout);
  EXPECT_NE(old.exit_code, 0);
  EXPECT_THAT(old.err, HasSubstr("required revision has been compacted"));
  EXPECT_EQ(Etcdctl(ep, {"get", "a", "--rev", "4", "--print-value-only"}, "", kTimeout).out, "3\n");
}

}  // namespace
}  // namespace cppetcd::integration
