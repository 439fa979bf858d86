// The etcd data dir reader (storage/etcd_data_dir.h, wal/etcd_wal.h,
// snap/etcd_snap.h) on data dirs written by the real etcd 3.4
// (/usr/bin/etcd, loopback, OS-picked ports, stopped by PID): one that ran
// with a small --snapshot-count (several .snap files and WAL snapshot
// markers), one made by `etcdctl snapshot restore`, and copies of the first
// with a damaged or torn WAL. Needs no cppetcd binary.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cppetcd/storage/etcd_data_dir.h"
#include "cppetcd/util/env.h"
#include "cppetcd/wal/etcd_wal.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "harness.h"

namespace cppetcd::integration {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr int kPuts = 25;
const char kLastKey[] = "etcd-data-dir-last-key";

// What the running etcd said about itself and its last write.
struct Observed {
  uint64_t member_id = 0;
  uint64_t cluster_id = 0;
  uint64_t raft_term = 0;
  uint64_t raft_index = 0;  // Status after the last write
  int64_t revision = 0;     // of the last write
  int peer_port = 0;
};

class EtcdDataDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(ReferenceEtcdBinary().c_str(), X_OK) != 0) GTEST_SKIP() << "no reference etcd";
    if (::access(EtcdctlBinary().c_str(), X_OK) != 0) GTEST_SKIP() << "no etcdctl";
  }

  // Runs etcd on `data_dir` with --snapshot-count 10: puts, a lease, a key
  // under it, then a clean stop (SIGTERM by PID).
  void RunEtcd(const std::string& data_dir, Observed* seen, const std::string& snapshot_to = "") {
    ServerProcess::Options o;
    o.binary = ReferenceEtcdBinary();
    o.name = "e1";
    o.data_dir = data_dir;
    o.log_path = util::JoinPath(tmp_.path(), "etcd.log");
    o.extra_flags = {"--snapshot-count", "10"};
    auto server = ServerProcess::Start(o);
    ASSERT_TRUE(server.ok()) << server.status();
    auto channel = (*server)->NewChannel();
    auto kv = etcdserverpb::KV::NewStub(channel);
    auto lease = etcdserverpb::Lease::NewStub(channel);
    auto maintenance = etcdserverpb::Maintenance::NewStub(channel);
    auto deadline = [] {
      auto ctx = std::make_unique<grpc::ClientContext>();
      ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      return ctx;
    };
    etcdserverpb::LeaseGrantRequest grant;
    grant.set_ttl(600);
    etcdserverpb::LeaseGrantResponse granted;
    ASSERT_TRUE(lease->LeaseGrant(deadline().get(), grant, &granted).ok());
    for (int i = 0; i < kPuts; ++i) {
      etcdserverpb::PutRequest put;
      put.set_key(i + 1 == kPuts ? kLastKey : absl::StrCat("k", i));
      put.set_value(absl::StrCat("v", i));
      if (i % 5 == 0) put.set_lease(granted.id());
      etcdserverpb::PutResponse resp;
      grpc::Status s = kv->Put(deadline().get(), put, &resp);
      ASSERT_TRUE(s.ok()) << s.error_message();
      seen->member_id = resp.header().member_id();
      seen->cluster_id = resp.header().cluster_id();
      seen->raft_term = resp.header().raft_term();
      seen->revision = resp.header().revision();
    }
    etcdserverpb::StatusResponse status;
    ASSERT_TRUE(maintenance->Status(deadline().get(), etcdserverpb::StatusRequest(), &status).ok());
    seen->raft_index = status.raftindex();
    seen->peer_port = (*server)->peer_port();
    // `etcdctl member list` agrees with the response headers.
    CommandResult members = Etcdctl((*server)->ClientEndpoint(), {"member", "list", "-w", "json"});
    ASSERT_EQ(members.exit_code, 0) << members.err;
    auto j = nlohmann::json::parse(members.out);
    ASSERT_EQ(j["header"]["member_id"].get<uint64_t>(), seen->member_id);
    ASSERT_EQ(j["header"]["cluster_id"].get<uint64_t>(), seen->cluster_id);
    if (!snapshot_to.empty()) {
      CommandResult save = Etcdctl((*server)->ClientEndpoint(), {"snapshot", "save", snapshot_to});
      ASSERT_EQ(save.exit_code, 0) << save.err;
    }
    CommandResult stopped = (*server)->Terminate();
    ASSERT_FALSE(stopped.timed_out);
  }

  static std::string FirstSegment(const std::string& data_dir) {
    auto names = util::Env::Default()->GetChildren(util::JoinPath(data_dir, "member/wal"));
    EXPECT_TRUE(names.ok());
    for (const auto& n : *names) {
      if (n.ends_with(".wal")) return util::JoinPath(util::JoinPath(data_dir, "member/wal"), n);
    }
    return "";
  }

  TempDir tmp_;
  util::Env* env_ = util::Env::Default();
};

TEST_F(EtcdDataDirTest, ReadsADataDirEtcdWrote) {
  const std::string dir = util::JoinPath(tmp_.path(), "etcd");
  Observed seen;
  ASSERT_NO_FATAL_FAILURE(RunEtcd(dir, &seen));

  auto format = storage::DetectDataDirFormat(env_, dir);
  ASSERT_TRUE(format.ok()) << format.status();
  EXPECT_EQ(*format, storage::DataDirFormat::kEtcd);
  auto d = storage::ReadEtcdDataDir(env_, dir);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->member_id, seen.member_id);
  EXPECT_EQ(d->cluster_id, seen.cluster_id);
  EXPECT_EQ(d->hard_state.term(), seen.raft_term);
  EXPECT_EQ(d->hard_state.vote(), seen.member_id);
  EXPECT_GE(d->hard_state.commit(), seen.raft_index);
  EXPECT_GE(d->last_index, d->hard_state.commit());
  EXPECT_FALSE(d->wal_torn) << d->wal_torn_reason;

  // More than --snapshot-count entries: etcd snapshotted.
  ASSERT_TRUE(d->snapshot.has_value());
  const auto& md = d->snapshot->metadata();
  EXPECT_GE(md.index(), 10u);
  EXPECT_THAT(md.conf_state().voters(), ::testing::ElementsAre(seen.member_id));
  EXPECT_THAT(d->snapshot->data(), HasSubstr("\"Root\""));  // etcd's v2 store JSON
  EXPECT_TRUE(d->skipped_snapshot_files.empty());
  EXPECT_EQ(d->snapshot_file, absl::StrFormat("%016x-%016x.snap", md.term(), md.index()));

  // The entries follow the snapshot without a gap, and the last write is
  // among them.
  ASSERT_FALSE(d->entries.empty());
  uint64_t next = md.index() + 1;
  uint64_t last_put_index = 0;
  for (const auto& e : d->entries) {
    ASSERT_EQ(e.index(), next++);
    EXPECT_GE(e.term(), 1u);
    EXPECT_LE(e.term(), seen.raft_term);
    if (e.data().find(kLastKey) != std::string::npos) last_put_index = e.index();
  }
  ASSERT_GT(last_put_index, 0u) << "the last put is not in the WAL after the snapshot";
  EXPECT_LE(last_put_index, d->hard_state.commit());

  // The backend: applied through the last acknowledged write.
  EXPECT_EQ(d->db_path, util::JoinPath(dir, "member/snap/db"));
  EXPECT_GE(d->consistent_index, last_put_index);
  EXPECT_GE(d->consistent_index, md.index());
  EXPECT_LE(d->consistent_index, d->hard_state.commit());
  ASSERT_EQ(d->members.size(), 1u);
  EXPECT_EQ(d->members[0].id, seen.member_id);
  EXPECT_EQ(d->members[0].name, "e1");
  EXPECT_THAT(d->members[0].peer_urls,
              ::testing::ElementsAre(absl::StrCat("http://127.0.0.1:", seen.peer_port)));
  EXPECT_TRUE(d->removed_member_ids.empty());
  // Read-only: etcd's file set is as it was (nothing renamed or added).
  std::vector<std::string> before, after;
  for (const auto& p : fs::recursive_directory_iterator(dir)) before.push_back(p.path());
  ASSERT_TRUE(storage::ReadEtcdDataDir(env_, dir).ok());
  for (const auto& p : fs::recursive_directory_iterator(dir)) after.push_back(p.path());
  EXPECT_EQ(before, after);
}

TEST_F(EtcdDataDirTest, DamagedAndTornCopiesOfARealWal) {
  const std::string dir = util::JoinPath(tmp_.path(), "etcd");
  Observed seen;
  ASSERT_NO_FATAL_FAILURE(RunEtcd(dir, &seen));
  auto good = storage::ReadEtcdDataDir(env_, dir);
  ASSERT_TRUE(good.ok()) << good.status();
  const std::string seg = FirstSegment(dir);
  ASSERT_FALSE(seg.empty());
  const std::string bytes = *env_->ReadFileToString(seg);
  auto scan = wal::ScanEtcdSegment(bytes, seg, std::nullopt, true);
  ASSERT_TRUE(scan.ok()) << scan.status();
  ASSERT_GT(scan->records.size(), 10u);
  const auto& last = scan->records.back();

  auto write = [&](const std::string& data) {
    auto f = env_->NewWritableFile(seg);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Append(data).ok());
  };
  // Cut inside the last record: a torn tail, read up to the record before.
  write(bytes.substr(0, last.offset + 12));
  auto torn = wal::ReadEtcdWal(env_, util::JoinPath(dir, "member/wal"),
                               {good->snapshot->metadata().index(), good->snapshot->metadata().term()});
  ASSERT_TRUE(torn.ok()) << torn.status();
  EXPECT_TRUE(torn->torn);
  EXPECT_THAT(torn->torn_reason, HasSubstr(absl::StrCat("offset ", last.offset)));

  // A flipped byte in a record in the middle (no zero sector): DataLoss
  // naming the file and offset.
  const auto& mid = scan->records[scan->records.size() / 2];
  std::string flipped = bytes;
  flipped[mid.offset + 8 + 3] ^= 0x40;
  write(flipped);
  auto bad = storage::ReadEtcdDataDir(env_, dir);
  EXPECT_TRUE(absl::IsDataLoss(bad.status())) << bad.status();
  EXPECT_THAT(bad.status().message(), HasSubstr(fs::path(seg).filename().string()));
  EXPECT_THAT(bad.status().message(), HasSubstr(absl::StrCat("offset ", mid.offset)));
}

TEST_F(EtcdDataDirTest, ReadsADataDirMadeByEtcdctlSnapshotRestore) {
  const std::string src = util::JoinPath(tmp_.path(), "etcd");
  const std::string db = util::JoinPath(tmp_.path(), "snapshot.db");
  Observed seen;
  ASSERT_NO_FATAL_FAILURE(RunEtcd(src, &seen, db));

  const std::string restored = util::JoinPath(tmp_.path(), "restored");
  const std::string peer = "http://127.0.0.1:2380";  // written into the dir only, never listened on
  CommandResult r = RunCommand({EtcdctlBinary(), "snapshot", "restore", db, "--data-dir", restored, "--name", "r1",
                                "--initial-cluster", absl::StrCat("r1=", peer), "--initial-cluster-token", "tok",
                                "--initial-advertise-peer-urls", peer},
                               "", {"ETCDCTL_API=3"}, std::chrono::seconds(30));
  ASSERT_EQ(r.exit_code, 0) << r.err;

  auto format = storage::DetectDataDirFormat(env_, restored);
  ASSERT_TRUE(format.ok()) << format.status();
  EXPECT_EQ(*format, storage::DataDirFormat::kEtcd);
  auto d = storage::ReadEtcdDataDir(env_, restored);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_NE(d->member_id, 0u);
  EXPECT_NE(d->cluster_id, seen.cluster_id);  // a new cluster
  // One member: its add entry at index 1, committed, and the snapshot there.
  EXPECT_EQ(d->hard_state.commit(), 1u);
  ASSERT_TRUE(d->snapshot.has_value());
  EXPECT_EQ(d->snapshot->metadata().index(), 1u);
  EXPECT_THAT(d->snapshot->metadata().conf_state().voters(), ::testing::ElementsAre(d->member_id));
  EXPECT_TRUE(d->entries.empty());
  EXPECT_EQ(d->consistent_index, 1u);

  // etcd itself, started on the restored dir, is the member the reader saw.
  ServerProcess::Options o;
  o.binary = ReferenceEtcdBinary();
  o.name = "r1";
  o.data_dir = restored;
  o.log_path = util::JoinPath(tmp_.path(), "restored.log");
  auto server = ServerProcess::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  CommandResult got = Etcdctl((*server)->ClientEndpoint(), {"get", kLastKey, "-w", "json"});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  auto j = nlohmann::json::parse(got.out);
  EXPECT_EQ(j["header"]["member_id"].get<uint64_t>(), d->member_id);
  EXPECT_EQ(j["header"]["cluster_id"].get<uint64_t>(), d->cluster_id);
  EXPECT_EQ(j["count"].get<int>(), 1);
  (*server)->Terminate();
}

// More than one 64 MB segment: etcd cuts the WAL, and the reader follows
// the CRC chain across the real segment heads.
TEST_F(EtcdDataDirTest, FollowsTheChainAcrossSegmentsEtcdCut) {
  const std::string dir = util::JoinPath(tmp_.path(), "etcd");
  ServerProcess::Options o;
  o.binary = ReferenceEtcdBinary();
  o.name = "e1";
  o.data_dir = dir;
  o.log_path = util::JoinPath(tmp_.path(), "etcd.log");
  o.extra_flags = {"--snapshot-count", "1000"};
  auto server = ServerProcess::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  auto kv = etcdserverpb::KV::NewStub((*server)->NewChannel());
  const std::string value(1 << 20, 'w');  // below etcd's 1.5 MiB request limit
  uint64_t member_id = 0;
  for (int i = 0; i < 70; ++i) {  // 70 MiB of entries: one cut
    etcdserverpb::PutRequest put;
    put.set_key(absl::StrCat("big", i));
    put.set_value(value);
    etcdserverpb::PutResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::Status s = kv->Put(&ctx, put, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    member_id = resp.header().member_id();
  }
  (*server)->Terminate();
  auto d = storage::ReadEtcdDataDir(env_, dir);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->member_id, member_id);
  EXPECT_EQ(d->wal_segments.size(), 2u);
  EXPECT_FALSE(d->snapshot.has_value());
  ASSERT_FALSE(d->entries.empty());
  EXPECT_EQ(d->entries.front().index(), 1u);
  EXPECT_EQ(d->last_index, d->entries.size());
  uint64_t last_put = 0;
  for (const auto& e : d->entries) {
    if (e.data().find("big69") != std::string::npos) last_put = e.index();
  }
  ASSERT_GT(last_put, 0u);
  EXPECT_GE(d->hard_state.commit(), last_put);
  EXPECT_GE(d->consistent_index, last_put);
  EXPECT_LE(d->consistent_index, d->last_index);

  // A flipped byte inside a record of the first (not the last) segment:
  // refused with the file's name and the record's offset.
  const std::string seg0 = FirstSegment(dir);
  std::string bytes = *env_->ReadFileToString(seg0);
  auto scan = wal::ScanEtcdSegment(bytes, seg0, std::nullopt, /*is_last=*/false);
  ASSERT_TRUE(scan.ok()) << scan.status();
  const auto& mid = scan->records[scan->records.size() / 2];
  bytes[mid.offset + 8 + mid.data.size() / 2] ^= 0x01;
  {
    auto f = env_->NewWritableFile(seg0);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Append(bytes).ok());
  }
  auto bad = storage::ReadEtcdDataDir(env_, dir);
  EXPECT_TRUE(absl::IsDataLoss(bad.status())) << bad.status();
  EXPECT_THAT(bad.status().message(),
              HasSubstr(absl::StrCat(fs::path(seg0).filename().string(), " at offset ", mid.offset)));
}

// The detection on real bytes of both implementations: a dir cppetcd wrote
// is never taken for etcd's, and the etcd reader refuses it.
TEST_F(EtcdDataDirTest, TellsADataDirCppetcdWroteFromEtcds) {
  if (ServerBinary().empty() || IsReferenceEtcd(ServerBinary())) GTEST_SKIP() << "no cppetcd binary";
  const std::string dir = util::JoinPath(tmp_.path(), "cppetcd");
  ServerProcess::Options o;
  o.name = "c1";
  o.data_dir = dir;
  o.log_path = util::JoinPath(tmp_.path(), "cppetcd.log");
  auto server = ServerProcess::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  CommandResult put = Etcdctl((*server)->ClientEndpoint(), {"put", "a", "b"});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  (*server)->Terminate();
  auto format = storage::DetectDataDirFormat(env_, dir);
  ASSERT_TRUE(format.ok()) << format.status();
  EXPECT_EQ(*format, storage::DataDirFormat::kCppetcd);
  EXPECT_EQ(storage::ReadEtcdDataDir(env_, dir).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(wal::ReadEtcdWal(env_, util::JoinPath(dir, "member/wal"), {}).ok());
}

}  // namespace
}  // namespace cppetcd::integration
