// MemoryStorage: the Storage contract (entries, terms, compaction, snapshots).
#include "cppetcd/raft/storage.h"

#include "gtest/gtest.h"

namespace cppetcd::raft {
namespace {

raftpb::Entry E(uint64_t index, uint64_t term, std::string data = "") {
  raftpb::Entry e;
  e.set_index(index);
  e.set_term(term);
  e.set_data(std::move(data));
  return e;
}

TEST(MemoryStorageTest, EmptyStorage) {
  MemoryStorage s;
  EXPECT_EQ(*s.FirstIndex(), 1u);
  EXPECT_EQ(*s.LastIndex(), 0u);
  EXPECT_EQ(*s.Term(0), 0u);
  EXPECT_TRUE(raft::IsUnavailable(s.Term(1).status()));
}

TEST(MemoryStorageTest, AppendTruncatesConflictsAndRejectsGaps) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append({E(1, 1), E(2, 1), E(3, 2)}).ok());
  ASSERT_TRUE(s.Append({E(2, 3)}).ok());  // conflicting suffix replaced
  EXPECT_EQ(*s.LastIndex(), 2u);
  EXPECT_EQ(*s.Term(2), 3u);
  EXPECT_FALSE(s.Append({E(5, 3)}).ok());  // gap
}

TEST(MemoryStorageTest, EntriesBoundsAndSizeLimit) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append({E(1, 1, "aaaa"), E(2, 1, "bbbb"), E(3, 1, "cccc")}).ok());
  auto all = s.Entries(1, 4, kNoLimit);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 3u);
  auto one = s.Entries(1, 4, 0);  // at least one entry
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->size(), 1u);
  auto two = s.Entries(1, 4, 2 * EntrySize(E(1, 1, "aaaa")));
  EXPECT_EQ(two->size(), 2u);
  EXPECT_TRUE(raft::IsUnavailable(s.Entries(1, 5, kNoLimit).status()));
}

TEST(MemoryStorageTest, CompactKeepsTermOfCompactedIndex) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append({E(1, 1), E(2, 2), E(3, 3), E(4, 3)}).ok());
  ASSERT_TRUE(s.Compact(2).ok());
  EXPECT_EQ(*s.FirstIndex(), 3u);
  EXPECT_EQ(*s.Term(2), 2u);
  EXPECT_TRUE(IsCompacted(s.Term(1).status()));
  EXPECT_TRUE(IsCompacted(s.Entries(2, 3, kNoLimit).status()));
  EXPECT_TRUE(IsCompacted(s.Compact(2)));
  EXPECT_TRUE(raft::IsUnavailable(s.Compact(9)));
  // Appending entries partly below the compaction point skips those.
  ASSERT_TRUE(s.Append({E(2, 2), E(3, 3), E(4, 3), E(5, 4)}).ok());
  EXPECT_EQ(*s.LastIndex(), 5u);
}

TEST(MemoryStorageTest, SnapshotsCreateAndApply) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append({E(1, 1), E(2, 2), E(3, 3)}).ok());
  raftpb::ConfState cs;
  cs.add_voters(1);
  auto snap = s.CreateSnapshot(2, &cs, "state");
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->metadata().index(), 2u);
  EXPECT_EQ(snap->metadata().term(), 2u);
  EXPECT_TRUE(IsSnapOutOfDate(s.CreateSnapshot(1, nullptr, "").status()));
  EXPECT_EQ(s.InitialState()->second.voters_size(), 1);

  raftpb::Snapshot newer;
  newer.mutable_metadata()->set_index(10);
  newer.mutable_metadata()->set_term(5);
  ASSERT_TRUE(s.ApplySnapshot(newer).ok());
  EXPECT_EQ(*s.FirstIndex(), 11u);
  EXPECT_EQ(*s.LastIndex(), 10u);
  EXPECT_EQ(*s.Term(10), 5u);
  EXPECT_TRUE(IsSnapOutOfDate(s.ApplySnapshot(newer)));
}

TEST(MemoryStorageTest, ErrorPredicatesAreDistinct) {
  EXPECT_TRUE(IsProposalDropped(ErrProposalDropped()));
  EXPECT_EQ(ErrProposalDropped().message(), "raft proposal dropped");
  EXPECT_FALSE(raft::IsUnavailable(ErrProposalDropped()));
  EXPECT_FALSE(IsSnapshotTemporarilyUnavailable(ErrUnavailable()));
  EXPECT_TRUE(IsStepLocalMsg(ErrStepLocalMsg()));
  EXPECT_TRUE(IsStepPeerNotFound(ErrStepPeerNotFound()));
}

}  // namespace
}  // namespace cppetcd::raft
