// Starting cppetcd on a data dir etcd 3.4 wrote (server/etcd_convert.h):
// the reference etcd (/usr/bin/etcd, loopback, OS-picked ports, stopped by
// PID) writes keys over several revisions, a lease with a key, users and
// roles; then cppetcd starts on the same dir with the same flags and must
// serve the same data as the same member of the same cluster. Also: a
// 3-member etcd cluster whose members are each replaced by cppetcd, and a
// conversion interrupted at its crash points (cppetcd-crashtest).
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cluster_harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness.h"

namespace cppetcd::integration {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kRoot[] = "root:rootpw";

nlohmann::json Json(const CommandResult& r) {
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
}

// Writes the test data through `ep`: puts over several revisions (`a`
// twice, enough for --snapshot-count 10 to snapshot), a lease with a key,
// users root and u1, role r1 on /x. Returns the lease ID (hex).
std::string WriteData(const std::string& ep) {
  for (int i = 0; i < 14; ++i) {
    EXPECT_EQ(Etcdctl(ep, {"put", absl::StrCat("k", i), absl::StrCat("v", i)}).exit_code, 0);
  }
  EXPECT_EQ(Etcdctl(ep, {"put", "a", "1"}).exit_code, 0);
  EXPECT_EQ(Etcdctl(ep, {"put", "a", "2"}).exit_code, 0);
  CommandResult g = Etcdctl(ep, {"lease", "grant", "600"});
  EXPECT_EQ(g.exit_code, 0) << g.err;
  std::vector<std::string> words = absl::StrSplit(absl::StripTrailingAsciiWhitespace(g.out), ' ');
  const std::string lease = words.size() > 1 ? words[1] : "";
  EXPECT_EQ(Etcdctl(ep, {"put", "leased", "lv", "--lease=" + lease}).exit_code, 0);
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"user", "add", kRoot},
           {"user", "grant-role", "root", "root"},
           {"role", "add", "r1"},
           {"role", "grant-permission", "r1", "readwrite", "/x"},
           {"user", "add", "u1:u1pw"},
           {"user", "grant-role", "u1", "r1"}}) {
    CommandResult r = Etcdctl(ep, args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
  }
  return lease;
}

// What a client sees of the data, to compare before and after.
struct View {
  nlohmann::json kvs;
  int64_t revision = 0;
  uint64_t member_id = 0;
  uint64_t cluster_id = 0;
  std::string users;
  std::string role;
};

View Observe(const std::string& ep, const std::vector<std::string>& user) {
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.begin(), user.begin(), user.end());
    return Etcdctl(ep, args);
  };
  View v;
  nlohmann::json j = Json(with({"get", "", "--prefix", "-w", "json"}));
  v.kvs = j["kvs"];
  v.revision = j["header"]["revision"].get<int64_t>();
  v.member_id = j["header"]["member_id"].get<uint64_t>();
  v.cluster_id = j["header"]["cluster_id"].get<uint64_t>();
  v.users = with({"user", "list"}).out;
  v.role = with({"role", "get", "r1"}).out;
  return v;
}

void ExpectSameView(const View& before, const View& after) {
  EXPECT_EQ(after.kvs, before.kvs);  // keys, values, create/mod revisions, versions, leases
  EXPECT_EQ(after.revision, before.revision);
  EXPECT_EQ(after.member_id, before.member_id);
  EXPECT_EQ(after.cluster_id, before.cluster_id);
  EXPECT_EQ(after.users, before.users);
  EXPECT_EQ(after.role, before.role);
}

class EtcdConvertTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CPPETCD_REQUIRE_SERVER();
    if (IsReferenceEtcd(ServerBinary())) GTEST_SKIP() << "converts etcd's dirs for cppetcd";
    if (::access(ReferenceEtcdBinary().c_str(), X_OK) != 0) GTEST_SKIP() << "no reference etcd";
    if (::access(EtcdctlBinary().c_str(), X_OK) != 0) GTEST_SKIP() << "no etcdctl";
  }
  TempDir tmp_;
};

TEST_F(EtcdConvertTest, SingleMemberWithAuthLeasesAndASnapshot) {
  ServerProcess::Options o;
  o.binary = ReferenceEtcdBinary();
  o.name = "c1";
  o.data_dir = tmp_.path() + "/c1.etcd";
  o.log_path = tmp_.path() + "/c1.log";
  o.extra_flags = {"--snapshot-count", "10"};
  auto s = ServerProcess::Start(o);
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string ep = (*s)->ClientEndpoint();
  const std::string lease = WriteData(ep);
  ASSERT_FALSE(lease.empty());
  CommandResult en = Etcdctl(ep, {"auth", "enable"});
  ASSERT_EQ(en.exit_code, 0) << en.err;
  const std::vector<std::string> root = {"--user", kRoot};
  const View before = Observe(ep, root);
  ASSERT_EQ(before.kvs.size(), 16u);
  nlohmann::json st = Json(Etcdctl(ep, {"--user", kRoot, "endpoint", "status", "-w", "json"}));
  const uint64_t etcd_term = st[0]["Status"]["raftTerm"].get<uint64_t>();
  ASSERT_FALSE((*s)->Terminate().timed_out);

  (*s)->mutable_options().binary = ServerBinary();
  (*s)->mutable_options().ready_user = "root";
  (*s)->mutable_options().ready_password = "rootpw";
  ASSERT_TRUE((*s)->Restart().ok());
  const std::string log = (*s)->ReadLog();
  EXPECT_THAT(log, HasSubstr("converting etcd data dir"));
  EXPECT_THAT(log, HasSubstr("converted etcd data dir"));
  EXPECT_TRUE(fs::is_directory(o.data_dir + "/member.etcd-backup"));
  EXPECT_FALSE(fs::exists(o.data_dir + "/member.cppetcd-convert"));

  ExpectSameView(before, Observe(ep, root));
  nlohmann::json ttl = Json(Etcdctl(ep, {"--user", kRoot, "lease", "timetolive", lease, "--keys", "-w", "json"}));
  EXPECT_GT(ttl["ttl"].get<int64_t>(), 0);
  EXPECT_EQ(ttl["granted-ttl"].get<int64_t>(), 600);
  // Auth is still on: u1 may use /x only.
  CommandResult denied = Etcdctl(ep, {"--user", "u1:u1pw", "get", "a"});
  EXPECT_NE(denied.exit_code, 0);
  EXPECT_THAT(denied.err, HasSubstr("permission denied"));
  EXPECT_EQ(Etcdctl(ep, {"--user", "u1:u1pw", "put", "/x", "1"}).exit_code, 0);
  nlohmann::json put = Json(Etcdctl(ep, {"--user", kRoot, "put", "b", "1", "-w", "json"}));
  EXPECT_EQ(put["header"]["revision"].get<int64_t>(), before.revision + 2);
  EXPECT_GE(put["header"]["raft_term"].get<uint64_t>(), etcd_term);

  // A restart does not convert again.
  ASSERT_FALSE((*s)->Terminate().timed_out);
  ASSERT_TRUE((*s)->Restart().ok());
  const std::string log2 = (*s)->ReadLog().substr(log.size());
  EXPECT_THAT(log2, Not(HasSubstr("converting etcd data dir")));
  nlohmann::json b = Json(Etcdctl(ep, {"--user", kRoot, "get", "b", "-w", "json"}));
  ASSERT_EQ(b["kvs"].size(), 1u);
  EXPECT_EQ(b["kvs"][0]["mod_revision"].get<int64_t>(), before.revision + 2);
}

// A conversion cut at its crash points: before the renames the etcd dir is
// untouched and the next start starts over; between them the next start
// finishes it.
TEST_F(EtcdConvertTest, InterruptedConversionResumesOrStartsOver) {
  if (CrashTestServerBinary().empty()) GTEST_SKIP() << "no cppetcd-crashtest";
  ServerProcess::Options o;
  o.binary = ReferenceEtcdBinary();
  o.name = "c1";
  o.data_dir = tmp_.path() + "/c1.etcd";
  o.log_path = tmp_.path() + "/c1.log";
  auto s = ServerProcess::Start(o);
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string ep = (*s)->ClientEndpoint();
  WriteData(ep);
  const View before = Observe(ep, {});
  ASSERT_FALSE((*s)->Terminate().timed_out);

  const std::string peer = absl::StrCat("http://127.0.0.1:", (*s)->peer_port());
  const std::string client = absl::StrCat("http://127.0.0.1:", (*s)->client_port());
  auto crash_at = [&](const std::string& point) {
    return RunCommand({CrashTestServerBinary(), "--name", "c1", "--data-dir", o.data_dir,
                       "--listen-client-urls", client, "--advertise-client-urls", client,
                       "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                       "--initial-cluster", "c1=" + peer},
                      "", {"CPPETCD_CRASH_POINT=" + point}, std::chrono::seconds(30));
  };
  const std::string tmp = o.data_dir + "/member.cppetcd-convert";
  const std::string backup = o.data_dir + "/member.etcd-backup";
  CommandResult r = crash_at("convert_after_build");
  ASSERT_EQ(r.exit_code, 99) << r.err;
  EXPECT_TRUE(fs::is_directory(tmp));
  EXPECT_FALSE(fs::exists(tmp + "/CONVERTED"));
  EXPECT_FALSE(fs::exists(backup));
  EXPECT_TRUE(fs::exists(o.data_dir + "/member/snap/db"));

  // Complete and marked, the etcd dir not yet moved: started over.
  r = crash_at("convert_before_backup_rename");
  ASSERT_EQ(r.exit_code, 99) << r.err;
  EXPECT_THAT(r.out + r.err, HasSubstr("discarding an unfinished etcd data dir conversion"));
  EXPECT_TRUE(fs::exists(tmp + "/CONVERTED"));
  EXPECT_TRUE(fs::exists(o.data_dir + "/member/snap/db"));
  EXPECT_FALSE(fs::exists(backup));

  r = crash_at("convert_between_renames");
  ASSERT_EQ(r.exit_code, 99) << r.err;
  EXPECT_THAT(r.out + r.err, HasSubstr("discarding an unfinished etcd data dir conversion"));
  EXPECT_FALSE(fs::exists(o.data_dir + "/member"));
  EXPECT_TRUE(fs::exists(tmp + "/CONVERTED"));
  EXPECT_TRUE(fs::is_directory(backup));

  (*s)->mutable_options().binary = ServerBinary();
  ASSERT_TRUE((*s)->Restart().ok());
  EXPECT_THAT((*s)->ReadLog(), HasSubstr("finishing an interrupted etcd data dir conversion"));
  EXPECT_FALSE(fs::exists(tmp));
  ExpectSameView(before, Observe(ep, {}));
}

// An entry cppetcd cannot apply above the consistent index (a v2 API write:
// etcd 3.4 saves the consistent index only with a v3 key write) is refused
// with the data dir unchanged; the procedure the message gives (etcd once
// more with --snapshot-count=1) makes it convertible.
TEST_F(EtcdConvertTest, RefusesAnUnappliedV2WriteUntilEtcdSnapshots) {
  ServerProcess::Options o;
  o.binary = ReferenceEtcdBinary();
  o.name = "c1";
  o.data_dir = tmp_.path() + "/c1.etcd";
  o.log_path = tmp_.path() + "/c1.log";
  o.extra_flags = {"--enable-v2=true"};
  auto s = ServerProcess::Start(o);
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string ep = (*s)->ClientEndpoint();
  ASSERT_EQ(Etcdctl(ep, {"put", "a", "1"}).exit_code, 0);
  CommandResult v2 = RunCommand({EtcdctlBinary(), "--endpoints", "http://" + ep, "set", "/foo", "bar"},
                                "", {"ETCDCTL_API=2"}, std::chrono::seconds(15));
  ASSERT_EQ(v2.exit_code, 0) << v2.err;
  const View before = Observe(ep, {});
  ASSERT_FALSE((*s)->Terminate().timed_out);

  std::vector<std::string> files_before;
  for (const auto& p : fs::recursive_directory_iterator(o.data_dir)) files_before.push_back(p.path());
  (*s)->mutable_options().binary = ServerBinary();
  (*s)->mutable_options().extra_flags = {};
  const size_t log_at = (*s)->ReadLog().size();
  EXPECT_FALSE((*s)->Restart().ok());
  const std::string log = (*s)->ReadLog().substr(log_at);
  EXPECT_THAT(log, HasSubstr("is a v2 PUT /1/foo request above the backend's consistent index"));
  EXPECT_THAT(log, HasSubstr("--snapshot-count=1"));
  std::vector<std::string> files_after;
  for (const auto& p : fs::recursive_directory_iterator(o.data_dir)) files_after.push_back(p.path());
  EXPECT_EQ(files_after, files_before);

  // etcd once more, until its snapshot; then cppetcd converts.
  (*s)->mutable_options().binary = ReferenceEtcdBinary();
  (*s)->mutable_options().extra_flags = {"--enable-v2=true", "--snapshot-count=1"};
  ASSERT_TRUE((*s)->Restart().ok());
  ASSERT_TRUE(PollUntil([&] { return absl::StrContains((*s)->ReadLog(), "saved snapshot"); },
                        std::chrono::seconds(10)));
  ASSERT_FALSE((*s)->Terminate().timed_out);
  (*s)->mutable_options().binary = ServerBinary();
  (*s)->mutable_options().extra_flags = {};
  ASSERT_TRUE((*s)->Restart().ok());
  ExpectSameView(before, Observe(ep, {}));
}

// The "done when": each member of a 3-member etcd 3.4 cluster is
// replaced by cppetcd on the same data dir and flags.
TEST_F(EtcdConvertTest, ThreeMemberClusterStoppedAndReplaced) {
  Cluster::Options opts;
  opts.size = 3;
  opts.binary = ReferenceEtcdBinary();
  auto c = Cluster::Start(opts, tmp_.path());
  ASSERT_TRUE(c.ok()) << c.status();
  Cluster& cl = **c;
  const std::string lease = WriteData(cl.RunningEndpoints());
  ASSERT_FALSE(lease.empty());
  std::vector<View> before;
  for (int i = 0; i < 3; ++i) {
    // Every member has applied the last write before it stops.
    ASSERT_TRUE(PollUntil(
        [&] {
          auto st = cl.member(i).Status();
          auto st0 = cl.member(0).Status();
          return st.ok() && st0.ok() && st->raftappliedindex() >= st0->raftindex();
        },
        std::chrono::seconds(10)));
  }
  for (int i = 0; i < 3; ++i) before.push_back(Observe(cl.member(i).ClientEndpoint(), {}));
  for (int i = 0; i < 3; ++i) ASSERT_FALSE(cl.member(i).Terminate().timed_out);
  for (int i = 0; i < 3; ++i) {
    std::vector<std::string> args = cl.member(i).args();
    args[0] = ServerBinary();
    cl.member(i).set_args(args);
  }
  ASSERT_TRUE(cl.RestartAll().ok());
  ASSERT_TRUE(cl.WaitForLeader(std::chrono::seconds(20)).ok());
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(cl.member(i).ReadLog(), HasSubstr("converted etcd data dir"));
    ExpectSameView(before[i], Observe(cl.member(i).ClientEndpoint(), {}));
  }
  nlohmann::json put = Json(Etcdctl(cl.member(1).ClientEndpoint(), {"put", "after", "1", "-w", "json"}));
  EXPECT_EQ(put["header"]["revision"].get<int64_t>(), before[0].revision + 1);
  for (int i = 0; i < 3; ++i) {
    nlohmann::json g = Json(Etcdctl(cl.member(i).ClientEndpoint(), {"get", "after", "-w", "json"}));
    ASSERT_EQ(g["kvs"].size(), 1u) << i;
    EXPECT_EQ(g["kvs"][0]["mod_revision"].get<int64_t>(), before[0].revision + 1);
  }
  nlohmann::json ttl = Json(Etcdctl(cl.RunningEndpoints(), {"lease", "timetolive", lease, "-w", "json"}));
  EXPECT_GT(ttl["ttl"].get<int64_t>(), 0);
}

}  // namespace
}  // namespace cppetcd::integration
