// Per-follower Progress (probe / replicate / snapshot) and the in-flight
// window used by the leader's flow control.
#include "tracker.h"

#include "gtest/gtest.h"

namespace cppetcd::raft {
namespace {

Progress P(uint64_t match, uint64_t next, ProgressStateType state) {
  Progress p;
  p.match = match;
  p.next = next;
  p.state = state;
  p.inflights = Inflights(3);
  return p;
}

TEST(TrackerTest, ProbeSendsOneMessageUntilAcked) {
  Progress p = P(0, 5, ProgressStateType::kProbe);
  EXPECT_FALSE(p.IsPaused());
  p.probe_sent = true;
  EXPECT_TRUE(p.IsPaused());
  EXPECT_TRUE(p.MaybeUpdate(4));
  EXPECT_FALSE(p.IsPaused());
  EXPECT_EQ(p.next, 5u);
}

TEST(TrackerTest, MaybeDecrToInProbeUsesHintAndIgnoresStale) {
  Progress p = P(0, 10, ProgressStateType::kProbe);
  EXPECT_FALSE(p.MaybeDecrTo(5, 2));  // not the last probe (next-1 = 9)
  EXPECT_TRUE(p.MaybeDecrTo(9, 3));
  EXPECT_EQ(p.next, 4u);  // hint + 1
  EXPECT_TRUE(p.MaybeDecrTo(3, 0));
  EXPECT_EQ(p.next, 1u);  // never below 1
}

TEST(TrackerTest, MaybeDecrToInReplicateFallsBackToMatch) {
  Progress p = P(5, 9, ProgressStateType::kReplicate);
  EXPECT_FALSE(p.MaybeDecrTo(4, 4));  // below match: stale
  EXPECT_TRUE(p.MaybeDecrTo(8, 2));
  EXPECT_EQ(p.next, 6u);
}

TEST(TrackerTest, InflightsWindow) {
  Progress p = P(0, 1, ProgressStateType::kReplicate);
  p.inflights.Add(1);
  p.inflights.Add(2);
  EXPECT_FALSE(p.IsPaused());
  p.inflights.Add(3);
  EXPECT_TRUE(p.IsPaused());
  p.inflights.FreeLE(2);
  EXPECT_EQ(p.inflights.Count(), 1);
  p.inflights.FreeFirstOne();
  EXPECT_EQ(p.inflights.Count(), 0);
}

TEST(TrackerTest, SnapshotStateResumesAfterSnapshot) {
  Progress p = P(3, 4, ProgressStateType::kProbe);
  p.BecomeSnapshot(20);
  EXPECT_TRUE(p.IsPaused());
  p.BecomeProbe();
  EXPECT_EQ(p.next, 21u);
  p.BecomeSnapshot(20);
  p.pending_snapshot = 0;  // failed snapshot
  p.BecomeProbe();
  EXPECT_EQ(p.next, 4u);
}

TEST(TrackerTest, QuorumActiveIgnoresLearners) {
  ProgressTracker t(4);
  t.config.voters.incoming = MajorityConfig({1, 2, 3});
  t.config.learners = {4};
  for (uint64_t id : {1, 2, 3, 4}) t.progress[id] = P(0, 1, ProgressStateType::kProbe);
  t.progress[4].is_learner = true;
  t.progress[1].recent_active = true;
  t.progress[4].recent_active = true;
  EXPECT_FALSE(t.QuorumActive());
  t.progress[2].recent_active = true;
  EXPECT_TRUE(t.QuorumActive());
  // Votes of learners are not counted either.
  t.RecordVote(1, true);
  t.RecordVote(4, true);
  EXPECT_EQ(std::get<2>(t.TallyVotes()), VoteResult::kPending);
  t.RecordVote(2, true);
  EXPECT_EQ(std::get<2>(t.TallyVotes()), VoteResult::kWon);
}

}  // namespace
}  // namespace cppetcd::raft
