// Maintenance.Snapshot in etcd's format: a snapshot of cppetcd saved with
// etcdctl is what stock etcd tools take. The same writes (several revisions,
// deletes, a lease with a key, a user and a role) go to cppetcd and to
// Debian's etcd 3.4; `etcdctl snapshot status` reports the same revision and
// key count for both snapshots; `etcdctl snapshot restore` of cppetcd's
// snapshot starts etcd with every key (revisions, versions, lease), the
// lease, the users and the roles (names that are not valid UTF-8 among
// them); `cppetcd snapshot restore` of the same file, and of etcd's own
// snapshot, starts cppetcd the same way.
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "nlohmann/json.hpp"

namespace cppetcd::integration {
namespace {

using ::testing::HasSubstr;

constexpr auto kTimeout = std::chrono::seconds(60);
constexpr char kPeerUrl[] = "http://127.0.0.1:2380";  // only recorded; never listened on

std::string Ok(const std::string& ep, const std::vector<std::string>& args) {
  CommandResult r = Etcdctl(ep, args, "", kTimeout);
  EXPECT_EQ(r.exit_code, 0) << absl::StrJoin(args, " ") << ": " << r.err;
  return r.out;
}

// The writes, the same on both servers. Returns the lease id (hex).
std::string Populate(const std::string& ep) {
  Ok(ep, {"put", "a", "1"});
  Ok(ep, {"put", "b", "2"});
  Ok(ep, {"put", "a", "3"});
  Ok(ep, {"del", "b"});
  Ok(ep, {"put", "c", "4"});
  Ok(ep, {"put", "a", "5"});
  const std::string grant = Ok(ep, {"lease", "grant", "3000"});
  // "lease 694d77aa9e38260f granted with TTL(3000s)"
  const std::string id = grant.size() > 22 ? grant.substr(6, 16) : "";
  Ok(ep, {"put", "leased", "v", "--lease", id});
  Ok(ep, {"put", "z/long", std::string(20000, 'x')});  // a value past a page
  Ok(ep, {"user", "add", "alice:alicepw"});
  Ok(ep, {"role", "add", "reader"});
  Ok(ep, {"role", "grant-permission", "reader", "--prefix=true", "read", "a"});
  Ok(ep, {"user", "grant-role", "alice", "reader"});
  // Names that are not valid UTF-8 (etcd takes any bytes).
  Ok(ep, {"user", "add", "\xff\xfeu", "--new-user-password=x"});
  Ok(ep, {"role", "add", "\xc3\x28"});
  Ok(ep, {"user", "grant-role", "\xff\xfeu", "\xc3\x28"});
  return id;
}

nlohmann::json Status(const std::string& snap) {
  CommandResult r =
      RunCommand({EtcdctlBinary(), "snapshot", "status", snap, "-w", "json"}, "", {}, kTimeout);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.out;
  return j;
}

// Every key with its revisions, version, value and lease (etcdctl JSON).
nlohmann::json AllKeys(const std::string& ep) {
  auto j = nlohmann::json::parse(Ok(ep, {"get", "", "--from-key", "-w", "json"}), nullptr, false);
  EXPECT_FALSE(j.is_discarded());
  return j.is_discarded() ? nlohmann::json() : j["kvs"];
}

int64_t Revision(const std::string& ep) {
  auto j = nlohmann::json::parse(Ok(ep, {"get", "a", "-w", "json"}), nullptr, false);
  return j.is_discarded() ? -1 : j["header"]["revision"].get<int64_t>();
}

void ExpectSameState(const std::string& ep, const nlohmann::json& want_kvs, int64_t want_rev,
                     const std::string& lease_id) {
  EXPECT_EQ(AllKeys(ep), want_kvs);
  EXPECT_EQ(Revision(ep), want_rev);
  EXPECT_THAT(Ok(ep, {"lease", "list"}), HasSubstr(lease_id));
  const std::string ttl = Ok(ep, {"lease", "timetolive", lease_id, "--keys"});
  EXPECT_THAT(ttl, HasSubstr("attached keys([leased])"));
  EXPECT_THAT(ttl, HasSubstr("granted with TTL(3000s)"));
  EXPECT_THAT(Ok(ep, {"user", "get", "alice"}), HasSubstr("Roles: reader"));
  EXPECT_THAT(Ok(ep, {"role", "get", "reader"}), HasSubstr("[a, b) (prefix a)"));
  EXPECT_EQ(Ok(ep, {"user", "get", "\xff\xfeu"}), "User: \xff\xfeu\nRoles: \xc3\x28\n");
  EXPECT_EQ(Ok(ep, {"role", "list"}), "reader\n\xc3\x28\n");
  // The restored member serves writes.
  Ok(ep, {"put", "after-restore", "1"});
}

TEST(EtcdSnapshotFormatTest, EtcdToolsTakeCppetcdSnapshots) {
  CPPETCD_REQUIRE_SERVER();
  if (IsReferenceEtcd(ServerBinary())) GTEST_SKIP() << "compares cppetcd with etcd";
  if (ReferenceEtcdBinary().empty()) GTEST_SKIP() << "no reference etcd";
  TempDir dir;
  const std::string cpp_snap = dir.path() + "/cppetcd.db";
  const std::string etcd_snap = dir.path() + "/etcd.db";
  std::string lease_id;
  nlohmann::json kvs;
  int64_t rev = 0;
  {
    ServerProcess::Options o;
    o.data_dir = dir.path() + "/cppetcd.data";
    auto s = ServerProcess::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    const std::string ep = (*s)->ClientEndpoint();
    lease_id = Populate(ep);
    ASSERT_FALSE(lease_id.empty());
    kvs = AllKeys(ep);
    rev = Revision(ep);
    CommandResult r = Etcdctl(ep, {"snapshot", "save", cpp_snap}, "", kTimeout);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // The temporary bbolt file is gone once the stream ended.
    for (const auto& e : std::filesystem::directory_iterator(o.data_dir + "/member/snap")) {
      EXPECT_THAT(e.path().filename().string(), ::testing::Not(HasSubstr("db.snapshot")));
    }
  }
  ASSERT_EQ(kvs.size(), 4u);  // a, c, leased, z/long
  {
    ServerProcess::Options o;
    o.binary = ReferenceEtcdBinary();
    o.name = "etcd";
    o.data_dir = dir.path() + "/etcd.data";
    auto s = ServerProcess::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    const std::string ep = (*s)->ClientEndpoint();
    Populate(ep);
    ASSERT_EQ(Revision(ep), rev);
    CommandResult r = Etcdctl(ep, {"snapshot", "save", etcd_snap}, "", kTimeout);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  // Same revision and key count (every bucket's entries) as etcd's.
  nlohmann::json got = Status(cpp_snap), want = Status(etcd_snap);
  EXPECT_EQ(got["revision"], want["revision"]) << got << want;
  EXPECT_EQ(got["totalKey"], want["totalKey"]) << got << want;
  EXPECT_EQ(got["revision"].get<int64_t>(), rev);
  // cppetcd's own status agrees with etcdctl's on the same file.
  CommandResult own = RunCommand({ServerBinary(), "snapshot", "status", cpp_snap, "-w", "json"},
                                 "", {}, kTimeout);
  ASSERT_EQ(own.exit_code, 0) << own.err;
  EXPECT_EQ(nlohmann::json::parse(own.out, nullptr, false), got);

  // etcdctl snapshot restore (checks the SHA-256 trailer), then etcd.
  const std::string etcd_restored = dir.path() + "/etcd-restored";
  CommandResult r = RunCommand({EtcdctlBinary(), "snapshot", "restore", cpp_snap, "--name",
                                "restored", "--data-dir", etcd_restored, "--initial-cluster",
                                std::string("restored=") + kPeerUrl,
                                "--initial-advertise-peer-urls", kPeerUrl},
                               "", {}, kTimeout);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  {
    ServerProcess::Options o;
    o.binary = ReferenceEtcdBinary();
    o.name = "restored";
    o.data_dir = etcd_restored;
    auto s = ServerProcess::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    ExpectSameState((*s)->ClientEndpoint(), kvs, rev, lease_id);
  }
  // cppetcd snapshot restore of the same file, and of etcd's, then cppetcd.
  for (const std::string& snap : {cpp_snap, etcd_snap}) {
    SCOPED_TRACE(snap);
    const std::string cpp_restored = snap + ".cppetcd-restored";
    r = RunCommand({ServerBinary(), "snapshot", "restore", snap, "--name", "restored",
                    "--data-dir", cpp_restored, "--initial-cluster",
                    std::string("restored=") + kPeerUrl, "--initial-advertise-peer-urls",
                    kPeerUrl},
                   "", {}, kTimeout);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ServerProcess::Options o;
    o.name = "restored";
    o.data_dir = cpp_restored;
    auto s = ServerProcess::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    // etcd's snapshot has its own lease ID.
    if (snap == cpp_snap) ExpectSameState((*s)->ClientEndpoint(), kvs, rev, lease_id);
    if (snap == etcd_snap) {
      const std::string ep = (*s)->ClientEndpoint();
      EXPECT_EQ(Ok(ep, {"user", "get", "\xff\xfeu"}), "User: \xff\xfeu\nRoles: \xc3\x28\n");
      EXPECT_EQ(Ok(ep, {"role", "list"}), "reader\n\xc3\x28\n");
      EXPECT_THAT(Ok(ep, {"user", "get", "alice"}), HasSubstr("Roles: reader"));
      EXPECT_EQ(Revision(ep), rev);
    }
  }
}

}  // namespace
}  // namespace cppetcd::integration
