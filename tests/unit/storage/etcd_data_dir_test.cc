#include "cppetcd/storage/etcd_data_dir.h"

#include <unistd.h>

#include <map>
#include <string>

#include "absl/strings/str_format.h"
#include "cppetcd/util/crc32c.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "snappb/snap.pb.h"
#include "tests/unit/storage/etcd_dir_fixture.h"
#include "tests/unit/wal/etcd_wal_test_util.h"

namespace cppetcd::storage {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using wal::testing::EtcdSegmentBuilder;

using testing::BigEndian;
constexpr uint64_t kMember = testing::kEtcdMember;
constexpr uint64_t kCluster = testing::kEtcdCluster;

// A hand-built etcd data dir: WAL, .snap files and a bbolt backend.
class EtcdDataDirTest : public testing::EtcdDirFixture {
 protected:
  // Entries 1..10 of term 2, markers at 0 and 5, commit 10.
  void PutWal(uint64_t commit = 10) {
    EtcdSegmentBuilder b;
    b.Metadata(kMember, kCluster).Snapshot(0, 0);
    for (uint64_t i = 1; i <= 10; ++i) {
      b.Entry(i, 2).State(2, kMember, std::min<uint64_t>(i, commit));
      if (i == 5) b.Snapshot(5, 2);
    }
    Put(Sub("member/wal/0000000000000000-0000000000000000.wal"), b.Preallocate(8192).bytes());
  }
  void PutSnap(uint64_t term, uint64_t index) {
    raftpb::Snapshot s;
    s.set_data("{}");
    s.mutable_metadata()->set_index(index);
    s.mutable_metadata()->set_term(term);
    s.mutable_metadata()->mutable_conf_state()->add_voters(kMember);
    snappb::Snapshot f;
    f.set_data(s.SerializeAsString());
    f.set_crc(util::Crc32c(f.data()));
    Put(Sub(absl::StrFormat("member/snap/%016x-%016x.snap", term, index)), f.SerializeAsString());
  }
  void PutDb(const std::string& path, uint64_t consistent_index,
             std::map<std::string, std::string> members = {
                 {"bdae9bbc11dd390d", testing::kEtcdMemberJson}}) {
    PutBbolt(path, {{"members", members},
                    {"members_removed", {{"1234", "removed"}}},
                    {"meta", {{"consistent_index", BigEndian(consistent_index)}}}});
  }
};

TEST_F(EtcdDataDirTest, ReadsWalSnapshotAndBackend) {
  PutWal();
  PutSnap(2, 5);
  PutSnap(2, 9);  // no marker: ignored
  PutDb(Sub("member/snap/db"), 8);
  auto f = DetectDataDirFormat(env_, dir_);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(*f, DataDirFormat::kEtcd);
  auto d = ReadEtcdDataDir(env_, dir_);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->member_id, kMember);
  EXPECT_EQ(d->cluster_id, kCluster);
  EXPECT_EQ(d->hard_state.commit(), 10u);
  ASSERT_TRUE(d->snapshot.has_value());
  EXPECT_EQ(d->snapshot->metadata().index(), 5u);
  EXPECT_EQ(d->snapshot_file, "0000000000000002-0000000000000005.snap");
  EXPECT_EQ(d->skipped_snapshot_files.size(), 1u);
  ASSERT_EQ(d->entries.size(), 5u);
  EXPECT_EQ(d->entries.front().index(), 6u);
  EXPECT_EQ(d->last_index, 10u);
  EXPECT_THAT(d->wal_snapshots, ElementsAre(wal::WalSnapshot{0, 0}, wal::WalSnapshot{5, 2}));
  EXPECT_EQ(d->consistent_index, 8u);
  EXPECT_EQ(d->db_path, Sub("member/snap/db"));
  ASSERT_EQ(d->members.size(), 1u);
  EXPECT_EQ(d->members[0].id, kMember);
  EXPECT_EQ(d->members[0].name, "s1");
  EXPECT_THAT(d->members[0].peer_urls, ElementsAre("http://127.0.0.1:2380"));
  EXPECT_THAT(d->members[0].client_urls, ElementsAre("http://127.0.0.1:2379"));
  EXPECT_THAT(d->removed_member_ids, ElementsAre(0x1234u));
}

TEST_F(EtcdDataDirTest, BackendBehindTheSnapshotTakesTheSnapDb) {
  PutWal();
  PutSnap(2, 5);
  PutDb(Sub("member/snap/db"), 3);
  auto d = ReadEtcdDataDir(env_, dir_);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr("0000000000000005.snap.db"));
  PutDb(Sub("member/snap/0000000000000005.snap.db"), 5);
  d = ReadEtcdDataDir(env_, dir_);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->db_path, Sub("member/snap/0000000000000005.snap.db"));
  EXPECT_EQ(d->consistent_index, 5u);
}

TEST_F(EtcdDataDirTest, CommitPastTheLogIsRefused) {
  EtcdSegmentBuilder b;
  b.Metadata(kMember, kCluster).Snapshot(0, 0).Entry(1, 1).State(1, 0, 7);
  Put(Sub("member/wal/0000000000000000-0000000000000000.wal"), b.bytes());
  auto d = ReadEtcdDataDir(env_, dir_);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr("out of range"));
}

TEST_F(EtcdDataDirTest, BadMemberRecordIsDataLoss) {
  PutWal();
  PutDb(Sub("member/snap/db"), 10, {{"bdae9bbc11dd390d", "{not json"}});
  auto d = ReadEtcdDataDir(env_, dir_);
  EXPECT_TRUE(absl::IsDataLoss(d.status())) << d.status();
  PutDb(Sub("member/snap/db"), 10, {{"zz", "{}"}});
  EXPECT_TRUE(absl::IsDataLoss(ReadEtcdDataDir(env_, dir_).status()));
  PutDb(Sub("member/snap/db"), 10, {{"0x12", "{}"}});
  EXPECT_TRUE(absl::IsDataLoss(ReadEtcdDataDir(env_, dir_).status()));
  PutDb(Sub("member/snap/db"), 10, {{"bdae9bbc11dd390d", R"({"id":1})"}});
  EXPECT_THAT(ReadEtcdDataDir(env_, dir_).status().message(), HasSubstr("id differs"));
}

TEST_F(EtcdDataDirTest, TellsEtcdFromCppetcdAndRefusesMixtures) {
  auto none = DetectDataDirFormat(env_, dir_);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, DataDirFormat::kNone);
  PutDb(Sub("member/snap/db"), 1);
  EXPECT_EQ(DetectDataDirFormat(env_, dir_).status().code(), absl::StatusCode::kFailedPrecondition);

  // cppetcd's WAL, and a backend with LMDB's magic.
  const std::string own = Sub("own");
  {
    wal::Options o;
    o.segment_size_bytes = 64 << 10;
    auto w = wal::Wal::Create(env_, util::JoinPath(own, "member/wal"), "meta", o);
    ASSERT_TRUE(w.ok()) << w.status();
  }
  auto cpp = DetectDataDirFormat(env_, own);
  ASSERT_TRUE(cpp.ok()) << cpp.status();
  EXPECT_EQ(*cpp, DataDirFormat::kCppetcd);
  EXPECT_EQ(ReadEtcdDataDir(env_, own).status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(env_->CreateDirAll(util::JoinPath(own, "member/snap")).ok());
  std::string lmdb(64, '\0');
  lmdb[16] = '\xde';
  lmdb[17] = '\xc0';
  lmdb[18] = '\xef';
  lmdb[19] = '\xbe';
  Put(util::JoinPath(own, "member/snap/db"), lmdb);
  cpp = DetectDataDirFormat(env_, own);
  ASSERT_TRUE(cpp.ok()) << cpp.status();
  EXPECT_EQ(*cpp, DataDirFormat::kCppetcd);
  // A cppetcd backend under an etcd WAL, and the other way round.
  PutWal();
  Put(Sub("member/snap/db"), lmdb);
  auto mixed = DetectDataDirFormat(env_, dir_);
  EXPECT_EQ(mixed.status().code(), absl::StatusCode::kFailedPrecondition) << mixed.status();
  EXPECT_THAT(mixed.status().message(), HasSubstr("mixed"));
  PutDb(util::JoinPath(own, "member/snap/db"), 1);
  EXPECT_THAT(DetectDataDirFormat(env_, own).status().message(), HasSubstr("mixed"));
  // --wal-dir elsewhere.
  PutDb(Sub("member/snap/db"), 10);
  auto moved = ReadEtcdDataDir(env_, dir_, Sub("member/wal"));
  EXPECT_TRUE(moved.ok()) << moved.status();
}

}  // namespace
}  // namespace cppetcd::storage
