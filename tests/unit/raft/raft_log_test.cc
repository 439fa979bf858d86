// RaftLog and its unstable tail: appends, conflicts (§5.3), commit rules.
#include "raft_log.h"

#include "gtest/gtest.h"

namespace cppetcd::raft {
namespace {

raftpb::Entry E(uint64_t index, uint64_t term) {
  raftpb::Entry e;
  e.set_index(index);
  e.set_term(term);
  return e;
}

TEST(RaftLogTest, MaybeAppendChecksPrevEntryAndTruncatesConflicts_5_3) {
  MemoryStorage s;
  RaftLog log(&s, nullptr, kNoLimit);
  log.Append({E(1, 1), E(2, 2), E(3, 3)});
  // Mismatch at the previous entry: rejected.
  EXPECT_FALSE(log.MaybeAppend(3, 2, 3, {E(4, 4)}).has_value());
  // Matching prefix, conflicting suffix from index 3: replaced.
  auto last = log.MaybeAppend(2, 2, 3, {E(3, 4), E(4, 4)});
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(*last, 4u);
  EXPECT_EQ(log.ZeroTermOnErr(3), 4u);
  EXPECT_EQ(log.committed(), 3u);  // min(leader commit, last new entry)
  // An old, already contained append changes nothing.
  EXPECT_EQ(*log.MaybeAppend(1, 1, 3, {E(2, 2)}), 2u);
  EXPECT_EQ(log.LastIndex(), 4u);
}

TEST(RaftLogTest, FindConflictByTermSkipsWholeTerms) {
  MemoryStorage s;
  RaftLog log(&s, nullptr, kNoLimit);
  log.Append({E(1, 1), E(2, 1), E(3, 2), E(4, 2), E(5, 5), E(6, 5)});
  EXPECT_EQ(log.FindConflictByTerm(6, 3), 4u);  // last index with term <= 3
  EXPECT_EQ(log.FindConflictByTerm(6, 5), 6u);
  EXPECT_EQ(log.FindConflictByTerm(6, 1), 2u);
  EXPECT_EQ(log.FindConflictByTerm(9, 1), 9u);  // beyond the log: unchanged
}

TEST(RaftLogTest, MaybeCommitOnlyWithMatchingTerm_5_4_2) {
  MemoryStorage s;
  RaftLog log(&s, nullptr, kNoLimit);
  log.Append({E(1, 1), E(2, 2)});
  EXPECT_FALSE(log.MaybeCommit(2, 3));
  EXPECT_TRUE(log.MaybeCommit(2, 2));
  EXPECT_EQ(log.committed(), 2u);
  EXPECT_FALSE(log.MaybeCommit(1, 1));  // never backwards
}

TEST(RaftLogTest, UnstableEntriesBecomeStableAndNextEntsRespectApplied) {
  MemoryStorage s;
  RaftLog log(&s, nullptr, kNoLimit);
  log.Append({E(1, 1), E(2, 1)});
  EXPECT_EQ(log.UnstableEntries().size(), 2u);
  EXPECT_EQ(log.StableLastIndex(), 0u);
  ASSERT_TRUE(s.Append(log.UnstableEntries()).ok());
  log.StableTo(2, 1);
  EXPECT_FALSE(log.HasUnstableEntries());
  EXPECT_EQ(log.StableLastIndex(), 2u);
  log.CommitTo(2);
  EXPECT_EQ(log.NextEnts().size(), 2u);
  log.AppliedTo(1);
  ASSERT_EQ(log.NextEnts().size(), 1u);
  EXPECT_EQ(log.NextEnts()[0].index(), 2u);
  // A stale StableTo (term mismatch) keeps entries unstable.
  log.Append({E(3, 2)});
  log.StableTo(3, 1);
  EXPECT_TRUE(log.HasUnstableEntries());
}

TEST(RaftLogTest, RestoreFromSnapshot) {
  MemoryStorage s;
  RaftLog log(&s, nullptr, kNoLimit);
  raftpb::Snapshot snap;
  snap.mutable_metadata()->set_index(10);
  snap.mutable_metadata()->set_term(3);
  log.Restore(snap);
  EXPECT_TRUE(log.HasPendingSnapshot());
  EXPECT_EQ(log.committed(), 10u);
  EXPECT_EQ(log.LastIndex(), 10u);
  EXPECT_EQ(log.FirstIndex(), 11u);
  EXPECT_EQ(log.ZeroTermOnErr(10), 3u);
  EXPECT_TRUE(log.IsUpToDate(10, 3));
  EXPECT_FALSE(log.IsUpToDate(11, 2));
}

}  // namespace
}  // namespace cppetcd::raft
