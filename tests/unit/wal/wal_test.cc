#include "cppetcd/wal/wal.h"

#include <cerrno>
#include <string>
#include <vector>

#include "cppetcd/util/fault_injection_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "src/wal/record_reader.h"
#include "src/wal/record_writer.h"
#include "tests/unit/wal/wal_test_util.h"

namespace cppetcd::wal {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using testing::Ent;
using testing::Ents;
using testing::Hs;
using testing::Ids;
using testing::TempDir;

// Small segments keep the files (and preallocation) small.
Options SmallOptions(uint64_t segment_size_bytes = 64 << 10) {
  Options o;
  o.segment_size_bytes = segment_size_bytes;
  return o;
}

class WalTest : public ::testing::Test {
 protected:
  std::unique_ptr<Wal> MustCreate(util::Env* env, Options o = SmallOptions()) {
    auto w = Wal::Create(env, dir_, "meta", o);
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? *std::move(w) : nullptr;
  }
  // Opens at `at` and reads; the WAL stays open in `*out` if given.
  absl::StatusOr<ReadResult> Reopen(util::Env* env, WalSnapshot at = {}, std::unique_ptr<Wal>* out = nullptr,
                                    Options o = SmallOptions()) {
    auto w = Wal::Open(env, dir_, at, o);
    if (!w.ok()) return w.status();
    auto r = (*w)->ReadAll();
    if (out != nullptr) *out = *std::move(w);
    return r;
  }
  std::string SegmentPath(size_t i) {
    auto names = *util::Env::Default()->GetChildren(dir_);
    return util::JoinPath(dir_, names.at(i));
  }
  // Offsets of the records of a segment file: [begin, end) of each.
  std::vector<std::pair<uint64_t, uint64_t>> RecordExtents(const std::string& path) {
    std::string data = testing::ReadFile(path);
    auto scan = ScanSegment(data, path, true);
    EXPECT_TRUE(scan.ok()) << scan.status();
    std::vector<std::pair<uint64_t, uint64_t>> out;
    for (size_t i = 0; i < scan->records.size(); ++i) {
      uint64_t end = i + 1 < scan->records.size() ? scan->records[i + 1].offset : scan->valid_end;
      out.emplace_back(scan->records[i].offset, end);
    }
    return out;
  }

  TempDir tmp_;
  std::string dir_ = tmp_.Sub("wal");
  util::Env* env_ = util::Env::Default();
};

TEST_F(WalTest, CreateThenReadBack) {
  auto w = MustCreate(env_);
  ASSERT_TRUE(w);
  EXPECT_TRUE(Wal::Exists(env_, dir_));
  EXPECT_FALSE(env_->FileExists(dir_ + ".tmp"));
  EXPECT_THAT(w->SegmentNames(), ElementsAre("0000000000000000-0000000000000000.wal"));
  ASSERT_TRUE(w->Save(Hs(1, 1, 2), Ents(1, 3, 1), true).ok());
  ASSERT_TRUE(w->Close().ok());

  auto r = Reopen(env_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->metadata, "meta");
  EXPECT_EQ(r->hard_state.SerializeAsString(), Hs(1, 1, 2).SerializeAsString());
  EXPECT_THAT(Ids(r->entries), ElementsAre("1/1", "2/1", "3/1"));
  EXPECT_EQ(r->entries[1].data(), Ent(2, 1).data());
}

TEST_F(WalTest, CreateRefusesAnExistingWal) {
  ASSERT_TRUE(MustCreate(env_));
  EXPECT_TRUE(absl::IsAlreadyExists(Wal::Create(env_, dir_, "meta", SmallOptions()).status()));
}

TEST_F(WalTest, OpenMissingIsNotFound) {
  ASSERT_TRUE(env_->CreateDir(dir_).ok());
  EXPECT_FALSE(Wal::Exists(env_, dir_));
  EXPECT_TRUE(absl::IsNotFound(Wal::Open(env_, dir_, {}, SmallOptions()).status()));
}

TEST_F(WalTest, SecondOpenIsLockedOut) {
  auto w = MustCreate(env_);
  EXPECT_TRUE(absl::IsUnavailable(Wal::Open(env_, dir_, {}, SmallOptions()).status()));
  ASSERT_TRUE(w->Close().ok());
  EXPECT_TRUE(Wal::Open(env_, dir_, {}, SmallOptions()).ok());
}

TEST_F(WalTest, LaterEntriesReplaceTheTail) {
  struct Case {
    std::string name;
    std::vector<std::vector<raftpb::Entry>> saves;
    std::vector<std::string> want;
  };
  const std::vector<Case> cases = {
      {"append", {Ents(1, 2, 1), Ents(3, 4, 1)}, {"1/1", "2/1", "3/1", "4/1"}},
      {"overwrite middle", {Ents(1, 5, 1), Ents(3, 4, 2)}, {"1/1", "2/1", "3/2", "4/2"}},
      {"overwrite all", {Ents(1, 3, 1), Ents(1, 1, 3)}, {"1/3"}},
      {"overwrite twice", {Ents(1, 5, 1), Ents(4, 6, 2), Ents(2, 2, 3)}, {"1/1", "2/3"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_TRUE(env_->RemoveAll(dir_).ok());
    auto w = MustCreate(env_);
    for (const auto& ents : c.saves) ASSERT_TRUE(w->Save(Hs(1, 0, 0), ents, true).ok());
    ASSERT_TRUE(w->Close().ok());
    auto r = Reopen(env_);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_THAT(Ids(r->entries), ElementsAreArray(c.want));
  }
}

TEST_F(WalTest, GapInTheLogIsAnError) {
  auto w = MustCreate(env_);
  ASSERT_TRUE(w->Save(Hs(1, 0, 0), Ents(1, 3, 1), true).ok());
  ASSERT_TRUE(w->Save(Hs(1, 0, 0), {Ent(5, 1)}, true).ok());
  ASSERT_TRUE(w->Close().ok());
  auto r = Reopen(env_);
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("gap"));
}

TEST_F(WalTest, SegmentsAreCutAndReadAcross) {
  auto w = MustCreate(env_, SmallOptions(4096));
  uint64_t next = 1;
  for (int batch = 0; batch < 40; ++batch, next += 5) {
    ASSERT_TRUE(w->Save(Hs(2, 1, next), Ents(next, next + 4, 2), true).ok());
  }
  std::vector<std::string> names = w->SegmentNames();
  ASSERT_GE(names.size(), 3u);
  ASSERT_TRUE(w->Close().ok());
  // Only the last segment is preallocated; sealed ones end at their data.
  for (size_t i = 0; i + 1 < names.size(); ++i) {
    EXPECT_LT(*env_->FileSize(util::JoinPath(dir_, names[i])), 4096u + 512u) << names[i];
  }
  auto r = Reopen(env_);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->entries.size(), 200u);
  for (uint64_t i = 0; i < 200; ++i) ASSERT_EQ(r->entries[i].index(), i + 1);
  EXPECT_EQ(r->hard_state.commit(), 196u);
  EXPECT_EQ(r->metadata, "meta");
}

TEST_F(WalTest, RestartAppendRestart) {
  uint64_t next = 1;
  {
    auto w = MustCreate(env_, SmallOptions(2048));
    ASSERT_TRUE(w->Save(Hs(1, 1, 1), Ents(next, next + 9, 1), true).ok());
    next += 10;
  }
  for (int restart = 0; restart < 5; ++restart) {
    std::unique_ptr<Wal> w;
    auto r = Reopen(env_, {}, &w, SmallOptions(2048));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->entries.size(), next - 1);
    EXPECT_EQ(w->LastIndex(), next - 1);
    ASSERT_TRUE(w->Save(Hs(restart + 2, 1, next - 1), Ents(next, next + 9, restart + 2), true).ok());
    next += 10;
    ASSERT_TRUE(w->Close().ok());
  }
  auto r = Reopen(env_, {}, nullptr, SmallOptions(2048));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->entries.size(), 60u);
  EXPECT_EQ(r->entries.back().term(), 6u);
  EXPECT_EQ(r->hard_state.term(), 6u);
}

TEST_F(WalTest, FsyncHookAndMustSync) {
  util::FaultInjectionEnv env(env_);
  int fsyncs = 0;
  Options o = SmallOptions();
  o.on_fsync = [&](std::chrono::nanoseconds d) {
    EXPECT_GE(d.count(), 0);
    ++fsyncs;
  };
  auto w = MustCreate(&env, o);
  int base = fsyncs;
  int64_t syncs = env.sync_count();
  ASSERT_TRUE(w->Save(Hs(1, 0, 0), Ents(1, 10, 1), false).ok());
  EXPECT_EQ(env.sync_count(), syncs);
  ASSERT_TRUE(w->Save(Hs(1, 0, 1), Ents(11, 20, 1), true).ok());
  EXPECT_EQ(env.sync_count(), syncs + 1);  // group commit: one fsync per Save
  EXPECT_EQ(fsyncs, base + 1);
  ASSERT_TRUE(w->Save(raftpb::HardState(), {}, true).ok());  // nothing to write
  EXPECT_EQ(env.sync_count(), syncs + 1);
}

// A torn last record, cut at every length: the earlier records survive, the
// tail is truncated and appending continues there.
TEST_F(WalTest, TornTailAtEveryLengthIsRepaired) {
  util::FaultInjectionEnv env(env_);
  env.SetSkipRealSync(true);  // hundreds of reopens
  {
    auto w = MustCreate(&env, SmallOptions(4096));
    ASSERT_TRUE(w->Save(Hs(1, 1, 2), Ents(1, 3, 1), true).ok());
    ASSERT_TRUE(w->Save(raftpb::HardState(), {Ent(4, 1, std::string(40, 'x') + "end")}, true).ok());
  }
  const std::string pristine = tmp_.Sub("pristine");
  testing::CopyDir(dir_, pristine);
  const std::string seg = SegmentPath(0);
  const auto extents = RecordExtents(seg);
  const auto [begin, end] = extents.back();
  const std::string full = testing::ReadFile(seg);
  // Zero-filling the padding changes nothing: the record is whole there.
  const uint64_t payload_end = full.find_last_not_of('\0', end - 1) + 1;
  for (bool zero_fill : {false, true}) {
    for (uint64_t len = begin; len < (zero_fill ? payload_end : end); ++len) {
      SCOPED_TRACE(absl::StrCat("len=", len, " zero_fill=", zero_fill));
      std::string cut = full.substr(0, len);
      if (zero_fill) cut += std::string(full.size() - len, '\0');
      testing::WriteFile(seg, cut);
      {
        std::unique_ptr<Wal> w;
        auto r = Reopen(&env, {}, &w, SmallOptions(4096));
        ASSERT_TRUE(r.ok()) << r.status();
        ASSERT_THAT(Ids(r->entries), ElementsAre("1/1", "2/1", "3/1"));
        EXPECT_EQ(r->hard_state.commit(), 2u);
        ASSERT_TRUE(w->Save(Hs(2, 1, 3), {Ent(4, 2)}, true).ok());
      }
      auto r = Reopen(&env, {}, nullptr, SmallOptions(4096));
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_THAT(Ids(r->entries), ElementsAre("1/1", "2/1", "3/1", "4/2"));
    }
  }
}

TEST_F(WalTest, TornTailIsLogged) {
  {
    auto w = MustCreate(env_);
    ASSERT_TRUE(w->Save(Hs(1, 1, 2), Ents(1, 3, 1), true).ok());
  }
  const std::string seg = SegmentPath(0);
  const auto [begin, end] = RecordExtents(seg).back();
  testing::WriteFile(seg, testing::ReadFile(seg).substr(0, end - 3));
  util::CapturedLog log = util::NewCapturedLog();
  Options o = SmallOptions();
  o.logger = util::Logger("wal", log.sink);
  std::unique_ptr<Wal> w;
  ASSERT_TRUE(Reopen(env_, {}, &w, o).ok());
  ASSERT_EQ(log.Lines().size(), 1u);
  EXPECT_THAT(log.Lines()[0], HasSubstr("torn write"));
  EXPECT_THAT(log.Lines()[0], HasSubstr("\"offset\":"));
}

// Every byte of a record that is followed by others is covered: flipping
// any bit of it is DataLoss, never a silent truncation.
TEST_F(WalTest, FlippedBitInAMiddleRecordIsDataLoss) {
  util::FaultInjectionEnv env(env_);
  env.SetSkipRealSync(true);
  {
    auto w = MustCreate(&env);
    ASSERT_TRUE(w->Save(Hs(1, 1, 2), Ents(1, 5, 1), true).ok());
  }
  const std::string seg = SegmentPath(0);
  const std::string full = testing::ReadFile(seg);
  const auto extents = RecordExtents(seg);
  ASSERT_GE(extents.size(), 8u);  // crc, metadata, snapshot, 5 entries, state
  for (size_t rec : {size_t{0}, size_t{1}, size_t{2}, size_t{4}, extents.size() - 2}) {
    for (uint64_t off = extents[rec].first; off < extents[rec].second; ++off) {
      SCOPED_TRACE(absl::StrCat("record ", rec, " offset ", off));
      std::string bad = full;
      bad[off] ^= 0x10;
      testing::WriteFile(seg, bad);
      auto r = Reopen(&env);
      ASSERT_TRUE(absl::IsDataLoss(r.status())) << r.status();
      EXPECT_THAT(r.status().message(), HasSubstr(seg));
    }
  }
}

TEST_F(WalTest, ZeroedHeaderFollowedByValidRecordsIsDataLoss) {
  {
    auto w = MustCreate(env_);
    ASSERT_TRUE(w->Save(Hs(1, 1, 2), Ents(1, 5, 1), true).ok());
  }
  const std::string seg = SegmentPath(0);
  std::string data = testing::ReadFile(seg);
  const auto extents = RecordExtents(seg);
  std::fill(data.begin() + extents[4].first, data.begin() + extents[4].first + 16, '\0');
  testing::WriteFile(seg, data);
  auto r = Reopen(env_);
  EXPECT_TRUE(absl::IsDataLoss(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("followed by a valid record"));
}

TEST_F(WalTest, CorruptionInAnEarlierSegmentIsDataLoss) {
  {
    auto w = MustCreate(env_, SmallOptions(2048));
    for (uint64_t i = 1; i <= 100; i += 10) ASSERT_TRUE(w->Save(Hs(1, 1, i), Ents(i, i + 9, 1), true).ok());
    ASSERT_GE(w->SegmentNames().size(), 3u);
  }
  const std::string seg = SegmentPath(0);
  std::string data = testing::ReadFile(seg);
  // Cut the sealed first segment mid-record: only the last may be torn.
  testing::WriteFile(seg, data.substr(0, data.size() - 5));
  auto r = Reopen(env_, {}, nullptr, SmallOptions(2048));
  EXPECT_TRUE(absl::IsDataLoss(r.status())) << r.status();
}

TEST_F(WalTest, SegmentFromAnotherLogBreaksTheChain) {
  const std::string other = tmp_.Sub("other");
  for (const std::string& d : {dir_, other}) {
    auto w = Wal::Create(env_, d, "meta", SmallOptions(1024));
    ASSERT_TRUE(w.ok());
    uint64_t term = d == dir_ ? 1 : 2;
    for (uint64_t i = 1; i <= 40; i += 4) ASSERT_TRUE((*w)->Save(Hs(term, 1, i), Ents(i, i + 3, term), true).ok());
  }
  auto names = *env_->GetChildren(dir_);
  auto other_names = *env_->GetChildren(other);
  ASSERT_GE(names.size(), 2u);
  ASSERT_EQ(names[1], other_names[1]);  // same shape, different content
  testing::WriteFile(util::JoinPath(dir_, names[1]), testing::ReadFile(util::JoinPath(other, names[1])));
  auto r = Reopen(env_, {}, nullptr, SmallOptions(1024));
  EXPECT_TRUE(absl::IsDataLoss(r.status())) << r.status();
}

TEST_F(WalTest, ConflictingMetadataInALaterSegment) {
  {
    auto w = MustCreate(env_, SmallOptions(1024));
    for (uint64_t i = 1; i <= 40; i += 4) ASSERT_TRUE(w->Save(Hs(1, 1, i), Ents(i, i + 3, 1), true).ok());
    ASSERT_GE(w->SegmentNames().size(), 2u);
  }
  // A well-chained last segment whose head carries other metadata.
  auto scan = ScanSegment(testing::ReadFile(SegmentPath(0)), "s0", false);
  ASSERT_TRUE(scan.ok()) << scan.status();
  uint32_t crc = scan->crc;
  std::string seg;
  AppendSegmentHead("other", "", &crc, &seg);
  const std::string name = SegmentPath(1);
  auto children = env_->GetChildren(dir_);
  ASSERT_TRUE(children.ok());
  for (const std::string& extra : *children) {
    if (util::JoinPath(dir_, extra) > name) {
      ASSERT_TRUE(env_->RemoveFile(util::JoinPath(dir_, extra)).ok());
    }
  }
  testing::WriteFile(name, seg);
  auto r = Reopen(env_, {}, nullptr, SmallOptions(1024));
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("metadata"));
}

TEST_F(WalTest, ValidSnapshotEntriesToleratesATornTailButNotCorruption) {
  {
    auto w = MustCreate(env_);
    ASSERT_TRUE(w->Save(Hs(1, 1, 3), Ents(1, 3, 1), true).ok());
    ASSERT_TRUE(w->SaveSnapshot({2, 1}).ok());
    ASSERT_TRUE(w->Save(Hs(1, 1, 3), Ents(4, 4, 1), true).ok());
  }
  const std::string seg = SegmentPath(0);
  const std::string full = testing::ReadFile(seg);
  const auto extents = RecordExtents(seg);
  testing::WriteFile(seg, full.substr(0, extents.back().second - 3));  // torn last record
  auto snaps = Wal::ValidSnapshotEntries(env_, dir_);
  ASSERT_TRUE(snaps.ok()) << snaps.status();
  EXPECT_THAT(*snaps, ElementsAre(WalSnapshot{0, 0}, WalSnapshot{2, 1}));
  EXPECT_EQ(testing::ReadFile(seg).size(), extents.back().second - 3);  // read-only: no repair

  std::string bad = full;
  bad[extents[3].first + 20] ^= 1;  // the first entry
  testing::WriteFile(seg, bad);
  EXPECT_TRUE(absl::IsDataLoss(Wal::ValidSnapshotEntries(env_, dir_).status()));
}

TEST_F(WalTest, SnapshotMarkers) {
  {
    auto w = MustCreate(env_);
    ASSERT_TRUE(w->Save(Hs(1, 1, 10), Ents(1, 10, 1), true).ok());
    ASSERT_TRUE(w->SaveSnapshot({5, 1}).ok());
    ASSERT_TRUE(w->Save(Hs(2, 1, 12), Ents(11, 12, 2), true).ok());
    ASSERT_TRUE(w->SaveSnapshot({12, 2}).ok());  // past the commit until the next state
    ASSERT_TRUE(w->Save(Hs(2, 1, 11), {}, true).ok());
  }
  struct Case {
    WalSnapshot at;
    absl::StatusCode code;
    std::vector<std::string> want;
  };
  const std::vector<Case> cases = {
      {{0, 0}, absl::StatusCode::kOk, {"1/1", "2/1", "3/1", "4/1", "5/1", "6/1", "7/1", "8/1", "9/1", "10/1", "11/2", "12/2"}},
      {{5, 1}, absl::StatusCode::kOk, {"6/1", "7/1", "8/1", "9/1", "10/1", "11/2", "12/2"}},
      {{12, 2}, absl::StatusCode::kOk, {}},
      {{5, 2}, absl::StatusCode::kFailedPrecondition, {}},  // term mismatch
      {{7, 1}, absl::StatusCode::kNotFound, {}},            // no such marker
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("at ", c.at.index, "/", c.at.term));
    auto r = Reopen(env_, c.at);
    ASSERT_EQ(r.status().code(), c.code) << r.status();
    if (r.ok()) {
      EXPECT_THAT(Ids(r->entries), ElementsAreArray(c.want));
      EXPECT_EQ(r->hard_state.commit(), 11u);
    }
  }
  auto snaps = Wal::ValidSnapshotEntries(env_, dir_);
  ASSERT_TRUE(snaps.ok()) << snaps.status();
  // {12, 2} is above the last commit (11): not restorable.
  EXPECT_THAT(*snaps, ElementsAre(WalSnapshot{0, 0}, WalSnapshot{5, 1}));
}

TEST_F(WalTest, ReleaseLockToRemovesOldSegments) {
  auto w = MustCreate(env_, SmallOptions(1024));
  for (uint64_t i = 1; i <= 200; i += 5) ASSERT_TRUE(w->Save(Hs(1, 1, i + 4), Ents(i, i + 4, 1), true).ok());
  const std::vector<std::string> before = w->SegmentNames();
  ASSERT_GE(before.size(), 5u);
  ASSERT_TRUE(w->SaveSnapshot({150, 1}).ok());
  ASSERT_TRUE(w->ReleaseLockTo(150).ok());
  const std::vector<std::string> after = w->SegmentNames();
  ASSERT_LT(after.size(), before.size());
  EXPECT_EQ(*env_->GetChildren(dir_), after);
  // The first kept segment may hold 150; the next one starts after it.
  uint64_t first = std::stoull(after[0].substr(17, 16), nullptr, 16);
  EXPECT_LE(first, 150u);
  if (after.size() > 1) {
    EXPECT_GT(std::stoull(after[1].substr(17, 16), nullptr, 16), 150u);
  }
  ASSERT_TRUE(w->ReleaseLockTo(1).ok());  // nothing more to remove
  EXPECT_EQ(w->SegmentNames(), after);
  ASSERT_TRUE(w->Close().ok());

  auto r = Reopen(env_, {150, 1}, nullptr, SmallOptions(1024));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->entries.size(), 50u);
  EXPECT_EQ(r->entries.front().index(), 151u);
}

TEST_F(WalTest, WriteAndSyncErrorsAreReturnedAndSticky) {
  struct Case {
    std::string name;
    bool sync;
    int error_number;
    absl::StatusCode code;
  };
  const std::vector<Case> cases = {
      {"write EIO", false, EIO, absl::StatusCode::kInternal},
      {"write ENOSPC", false, ENOSPC, absl::StatusCode::kResourceExhausted},
      {"sync EIO", true, EIO, absl::StatusCode::kInternal},
      {"sync ENOSPC", true, ENOSPC, absl::StatusCode::kResourceExhausted},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_TRUE(env_->RemoveAll(dir_).ok());
    util::FaultInjectionEnv env(env_);
    auto w = MustCreate(&env);
    ASSERT_TRUE(w->Save(Hs(1, 1, 1), Ents(1, 2, 1), true).ok());
    if (c.sync) {
      env.FailSyncs(1, c.error_number);
    } else {
      env.FailWrites(1, c.error_number);
    }
    absl::Status s = w->Save(Hs(1, 1, 2), Ents(3, 4, 1), true);
    EXPECT_EQ(s.code(), c.code) << s;
    EXPECT_EQ(w->Save(Hs(1, 1, 2), Ents(5, 5, 1), true).code(), c.code);  // sticky
    EXPECT_EQ(w->SaveSnapshot({1, 1}).code(), c.code);
  }
}

TEST_F(WalTest, ShortWriteThenCrashKeepsTheSyncedPrefix) {
  util::FaultInjectionEnv env(env_);
  {
    auto w = MustCreate(&env);
    ASSERT_TRUE(w->Save(Hs(1, 1, 2), Ents(1, 3, 1), true).ok());
    env.ShortWriteNext(20);
    EXPECT_FALSE(w->Save(Hs(1, 1, 3), Ents(4, 6, 1), true).ok());
  }
  ASSERT_TRUE(env.DropUnsyncedData().ok());
  auto r = Reopen(&env);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Ids(r->entries), ElementsAre("1/1", "2/1", "3/1"));
}

TEST_F(WalTest, CrashLosesOnlyTheUnsyncedSuffix) {
  for (bool cut : {false, true}) {
    SCOPED_TRACE(cut ? "with segment cuts" : "one segment");
    ASSERT_TRUE(env_->RemoveAll(dir_).ok());
    const Options o = SmallOptions(cut ? 1024 : 64 << 10);
    util::FaultInjectionEnv env(env_);
    {
      auto w = MustCreate(&env, o);
      ASSERT_TRUE(w->Save(Hs(1, 1, 10), Ents(1, 30, 1), true).ok());
      ASSERT_TRUE(w->Save(Hs(1, 1, 20), Ents(31, 40, 1), false).ok());
      ASSERT_TRUE(w->Save(Hs(1, 1, 30), Ents(41, 50, 1), false).ok());
      ASSERT_TRUE(env.DropUnsyncedData().ok());  // crash before Close syncs
      EXPECT_TRUE(w->Close().ok());
    }
    ASSERT_TRUE(env.DropUnsyncedData().ok());
    auto r = Reopen(&env, {}, nullptr, o);
    ASSERT_TRUE(r.ok()) << r.status();
    // Everything synced survives; what follows is a prefix of what was saved.
    ASSERT_GE(r->entries.size(), 30u);
    for (size_t i = 0; i < r->entries.size(); ++i) ASSERT_EQ(r->entries[i].index(), i + 1);
    EXPECT_GE(r->hard_state.commit(), 10u);
  }
}

TEST_F(WalTest, CrashAfterSyncedSaveKeepsEverything) {
  util::FaultInjectionEnv env(env_);
  {
    auto w = MustCreate(&env, SmallOptions(1024));
    for (uint64_t i = 1; i <= 100; i += 10) ASSERT_TRUE(w->Save(Hs(1, 1, i), Ents(i, i + 9, 1), true).ok());
    ASSERT_TRUE(env.DropUnsyncedData().ok());
  }
  auto r = Reopen(&env, {}, nullptr, SmallOptions(1024));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->entries.size(), 100u);
  EXPECT_EQ(r->hard_state.commit(), 91u);
}

TEST_F(WalTest, CrashDuringCreateLeavesNoWal) {
  util::FaultInjectionEnv env(env_);
  env.FailSyncs(1, EIO);
  EXPECT_FALSE(Wal::Create(&env, dir_, "meta", SmallOptions()).ok());
  ASSERT_TRUE(env.DropUnsyncedData().ok());
  EXPECT_FALSE(Wal::Exists(&env, dir_));
  auto w = Wal::Create(&env, dir_, "meta", SmallOptions());  // a retry succeeds
  ASSERT_TRUE(w.ok()) << w.status();
}

TEST_F(WalTest, HardStateSurvivesReleaseOfItsSegment) {
  auto w = MustCreate(env_, SmallOptions(1024));
  ASSERT_TRUE(w->Save(Hs(3, 2, 5), Ents(1, 5, 3), true).ok());
  for (uint64_t i = 6; i <= 100; i += 5) ASSERT_TRUE(w->Save(raftpb::HardState(), Ents(i, i + 4, 3), true).ok());
  ASSERT_TRUE(w->SaveSnapshot({90, 3}).ok());
  ASSERT_TRUE(w->ReleaseLockTo(90).ok());
  ASSERT_NE(w->SegmentNames().front(), "0000000000000000-0000000000000000.wal");
  ASSERT_TRUE(w->Close().ok());
  auto r = Reopen(env_, {90, 3}, nullptr, SmallOptions(1024));
  ASSERT_TRUE(r.ok()) << r.status();
  // Each segment repeats the hard state at its head.
  EXPECT_EQ(r->hard_state.SerializeAsString(), Hs(3, 2, 5).SerializeAsString());
  EXPECT_THAT(Ids(r->entries),
              ElementsAre("91/3", "92/3", "93/3", "94/3", "95/3", "96/3", "97/3", "98/3", "99/3", "100/3"));
}

TEST_F(WalTest, FailedCutIsStickyAndTheLogStaysReadable) {
  util::FaultInjectionEnv env(env_);
  auto w = MustCreate(&env, SmallOptions(1024));
  uint64_t next = 1;
  absl::Status s;
  // Find how many saves fill a segment.
  while (s.ok() && next < 1000) {
    const size_t segments = w->SegmentNames().size();
    s = w->Save(Hs(1, 1, next), Ents(next, next + 4, 1), false);
    ASSERT_TRUE(s.ok()) << s;
    next += 5;
    if (w->SegmentNames().size() > segments) break;  // the cut point is known now
  }
  // The next cut fails to seal the full segment (saves do not sync here).
  env.FailSyncs(1, EIO);
  s = absl::OkStatus();
  for (int i = 0; i < 100 && s.ok(); ++i, next += 5) s = w->Save(Hs(1, 1, next), Ents(next, next + 4, 1), false);
  ASSERT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  EXPECT_EQ(w->Save(Hs(1, 1, next), Ents(next, next, 1), true).code(), absl::StatusCode::kInternal);
  w.reset();
  auto r = Reopen(&env, {}, nullptr, SmallOptions(1024));
  ASSERT_TRUE(r.ok()) << r.status();
  for (size_t i = 0; i < r->entries.size(); ++i) ASSERT_EQ(r->entries[i].index(), i + 1);
  EXPECT_GE(r->entries.size(), 10u);
}

TEST_F(WalTest, OpenRemovesATempSegmentOfAnInterruptedCut) {
  {
    auto w = MustCreate(env_);
    ASSERT_TRUE(w->Save(Hs(1, 1, 1), Ents(1, 3, 1), true).ok());
  }
  const std::string tmp = util::JoinPath(dir_, "0000000000000001-0000000000000004.wal.tmp");
  testing::WriteFile(tmp, "half a segment");
  auto r = Reopen(env_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->entries.size(), 3u);
  EXPECT_FALSE(env_->FileExists(tmp));
}

TEST_F(WalTest, ReadAllIsRequiredBeforeSave) {
  ASSERT_TRUE(MustCreate(env_)->Close().ok());
  auto w = Wal::Open(env_, dir_, {}, SmallOptions());
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition((*w)->Save(Hs(1, 0, 0), Ents(1, 1, 1), true)));
}

}  // namespace
}  // namespace cppetcd::wal
