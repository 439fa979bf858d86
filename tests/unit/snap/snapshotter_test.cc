#include "cppetcd/snap/snapshotter.h"

#include <stdlib.h>

#include <string>

#include "cppetcd/util/fault_injection_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cppetcd::snap {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class SnapshotterTest : public ::testing::Test {
 protected:
  SnapshotterTest() {
    std::string tmpl = ::testing::TempDir() + "snaptestXXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) dir_ = tmpl;
  }
  ~SnapshotterTest() override { (void)env_->RemoveAll(dir_); }

  static raftpb::Snapshot Snap(uint64_t term, uint64_t index, std::string data = "state") {
    raftpb::Snapshot s;
    s.set_data(std::move(data));
    s.mutable_metadata()->set_term(term);
    s.mutable_metadata()->set_index(index);
    s.mutable_metadata()->mutable_conf_state()->add_voters(1);
    return s;
  }
  std::string Path(uint64_t term, uint64_t index) const { return util::JoinPath(dir_, SnapFileName(term, index)); }
  void Corrupt(const std::string& path, size_t offset) {
    std::string data = *env_->ReadFileToString(path);
    ASSERT_LT(offset, data.size());
    data[offset] ^= 0x01;
    auto f = env_->NewWritableFile(path);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Append(data).ok());
  }

  util::Env* env_ = util::Env::Default();
  std::string dir_;
};

TEST_F(SnapshotterTest, SaveAndLoad) {
  Snapshotter s(env_, dir_);
  ASSERT_TRUE(s.SaveSnap(Snap(1, 5, "five")).ok());
  EXPECT_TRUE(env_->FileExists(Path(1, 5)));
  EXPECT_EQ(SnapFileName(1, 5), "0000000000000001-0000000000000005.snap");
  auto got = s.Load();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->SerializeAsString(), Snap(1, 5, "five").SerializeAsString());
  EXPECT_THAT(*env_->GetChildren(dir_), ElementsAre(SnapFileName(1, 5)));  // no temp left
}

TEST_F(SnapshotterTest, EmptySnapshotIsRejected) {
  Snapshotter s(env_, dir_);
  EXPECT_TRUE(absl::IsInvalidArgument(s.SaveSnap(raftpb::Snapshot())));
}

TEST_F(SnapshotterTest, NoSnapshotIsNotFound) {
  Snapshotter s(env_, dir_);
  absl::Status st = s.Load().status();
  EXPECT_TRUE(absl::IsNotFound(st));
  EXPECT_TRUE(IsNoSnapshot(st));
  EXPECT_FALSE(IsNoSnapshot(absl::NotFoundError("other")));
}

TEST_F(SnapshotterTest, LoadPicksTheNewest) {
  Snapshotter s(env_, dir_);
  for (auto [term, index] : {std::pair{1, 5}, {2, 3}, {2, 10}, {1, 20}}) ASSERT_TRUE(s.SaveSnap(Snap(term, index)).ok());
  EXPECT_THAT(*s.SnapNames(), ElementsAre(SnapFileName(2, 10), SnapFileName(2, 3), SnapFileName(1, 20), SnapFileName(1, 5)));
  auto got = s.Load();
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->metadata().index(), 10u);
}

TEST_F(SnapshotterTest, CorruptFilesAreSetAsideAndOlderOnesUsed) {
  struct Case {
    std::string name;
    std::function<void(const std::string& path)> damage;
  };
  const std::vector<Case> cases = {
      {"flipped bit in data", [&](const std::string& p) { Corrupt(p, 20); }},
      {"flipped bit in crc", [&](const std::string& p) { Corrupt(p, 1); }},
      {"truncated", [&](const std::string& p) { ASSERT_TRUE(env_->Truncate(p, 10).ok()); }},
      {"empty", [&](const std::string& p) { ASSERT_TRUE(env_->Truncate(p, 0).ok()); }},
      {"wrong name", [&](const std::string& p) {
         ASSERT_TRUE(env_->RenameFile(Path(1, 5), p).ok());
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_TRUE(env_->RemoveAll(dir_).ok());
    ASSERT_TRUE(env_->CreateDir(dir_).ok());
    util::CapturedLog log = util::NewCapturedLog();
    Snapshotter s(env_, dir_, util::Logger("snap", log.sink));
    ASSERT_TRUE(s.SaveSnap(Snap(1, 5, "older")).ok());
    ASSERT_TRUE(s.SaveSnap(Snap(1, 8, "newer")).ok());
    c.damage(Path(1, 8));
    auto got = s.Load();
    if (c.name == "wrong name") {  // the only file left is the broken one
      EXPECT_TRUE(IsNoSnapshot(got.status())) << got.status();
    } else {
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(got->data(), "older");
    }
    EXPECT_TRUE(env_->FileExists(Path(1, 8) + ".broken"));
    EXPECT_FALSE(env_->FileExists(Path(1, 8)));
    ASSERT_FALSE(log.Lines().empty());
    EXPECT_THAT(log.Lines()[0], HasSubstr(".broken"));
  }
}

TEST_F(SnapshotterTest, LoadNewestAvailableMatchesWalMarkers) {
  Snapshotter s(env_, dir_);
  for (uint64_t index : {5, 10, 15}) ASSERT_TRUE(s.SaveSnap(Snap(2, index)).ok());
  struct Case {
    std::vector<wal::WalSnapshot> walsnaps;
    uint64_t want_index;  // 0 = none
  };
  const std::vector<Case> cases = {
      {{{0, 0}, {5, 2}, {10, 2}, {15, 2}}, 15},
      {{{0, 0}, {5, 2}, {10, 2}}, 10},  // 15 not yet committed per the WAL
      {{{5, 2}, {15, 1}}, 5},           // 15 at another term does not match
      {{{0, 0}}, 0},
      {{}, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.want_index);
    auto got = s.LoadNewestAvailable(c.walsnaps);
    if (c.want_index == 0) {
      EXPECT_TRUE(IsNoSnapshot(got.status())) << got.status();
    } else {
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(got->metadata().index(), c.want_index);
    }
  }
  // A corrupt match falls back to the next older match.
  Corrupt(Path(2, 15), 12);
  auto got = s.LoadNewestAvailable({{5, 2}, {10, 2}, {15, 2}});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->metadata().index(), 10u);
}

TEST_F(SnapshotterTest, PurgeKeepsTheNewest) {
  Snapshotter s(env_, dir_);
  for (uint64_t index = 1; index <= 6; ++index) ASSERT_TRUE(s.SaveSnap(Snap(1, index)).ok());
  auto f = env_->NewWritableFile(Path(1, 7) + ".tmp");  // an interrupted save
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(s.Purge(2).ok());
  EXPECT_THAT(*env_->GetChildren(dir_), ElementsAre(SnapFileName(1, 5), SnapFileName(1, 6)));
  ASSERT_TRUE(s.Purge(0).ok());  // the newest always stays
  EXPECT_THAT(*env_->GetChildren(dir_), ElementsAre(SnapFileName(1, 6)));
}

TEST_F(SnapshotterTest, SaveIsDurableAcrossACrash) {
  util::FaultInjectionEnv env(env_);
  Snapshotter s(&env, dir_);
  ASSERT_TRUE(s.SaveSnap(Snap(1, 5)).ok());
  EXPECT_EQ(env.sync_count(), 1);
  EXPECT_EQ(env.dir_sync_count(), 1);
  ASSERT_TRUE(env.DropUnsyncedData().ok());
  auto got = s.Load();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->metadata().index(), 5u);
}

TEST_F(SnapshotterTest, FailedSyncLeavesNoFile) {
  util::FaultInjectionEnv env(env_);
  Snapshotter s(&env, dir_);
  env.FailSyncs(1, EIO);
  EXPECT_FALSE(s.SaveSnap(Snap(1, 5)).ok());
  EXPECT_TRUE(env_->GetChildren(dir_)->empty());
}

}  // namespace
}  // namespace cppetcd::snap
