// Core Raft rules, each test citing the paper section (Ongaro & Ousterhout,
// "In Search of an Understandable Consensus Algorithm", 2014) it checks.
#include <set>

#include "gtest/gtest.h"
#include "raft_core.h"
#include "test_cluster.h"

namespace cppetcd::raft {
namespace {

using testing::TestCluster;

raftpb::Message Vote(uint64_t from, uint64_t to, uint64_t term, uint64_t index, uint64_t log_term) {
  raftpb::Message m;
  m.set_type(raftpb::MsgVote);
  m.set_from(from);
  m.set_to(to);
  m.set_term(term);
  m.set_index(index);
  m.set_log_term(log_term);
  return m;
}

// The last message r sent to `to` of type t, or nullptr.
const raftpb::Message* LastMsg(Raft* r, uint64_t to, raftpb::MessageType t) {
  const raftpb::Message* found = nullptr;
  for (const auto& m : r->msgs()) {
    if (m.to() == to && m.type() == t) found = &m;
  }
  return found;
}

// §5.2: a follower that hears nothing for an election timeout campaigns and,
// with a majority of votes, becomes leader.
TEST(RaftPaperTest, FollowerCampaignsAfterElectionTimeout_5_2) {
  TestCluster c({1, 2, 3});
  c.Tick(1, 20);  // randomized timeout < 2 * election_tick
  uint64_t leader = c.Leader();
  ASSERT_NE(leader, kNone);
  EXPECT_EQ(c.raft(leader)->term(), 1u);
  for (uint64_t id : {1, 2, 3}) EXPECT_EQ(c.raft(id)->lead(), leader);
}

// §5.2: randomized election timeouts lie in [election_tick, 2*election_tick)
// and differ between nodes, which makes split votes rare.
TEST(RaftPaperTest, RandomizedElectionTimeoutRange_5_2) {
  std::set<int> seen;
  for (uint64_t seed = 0; seed < 50; ++seed) {
    MemoryStorage s;
    Config cfg = testing::DefaultConfig(1, &s);
    cfg.random_seed = seed;
    auto rn = RawNode::Create(cfg);
    ASSERT_TRUE(rn.ok());
    int t = (*rn)->raft_for_test()->randomized_election_timeout();
    EXPECT_GE(t, 10);
    EXPECT_LT(t, 20);
    seen.insert(t);
  }
  EXPECT_GT(seen.size(), 3u);
}

// §5.2: each server votes for at most one candidate in a term.
TEST(RaftPaperTest, VotesOncePerTerm_5_2) {
  TestCluster c({1, 2, 3});
  ASSERT_TRUE(c[2].node->Step(Vote(1, 2, 5, 1, 1)).ok());
  const raftpb::Message* r1 = LastMsg(c.raft(2), 1, raftpb::MsgVoteResp);
  ASSERT_NE(r1, nullptr);
  EXPECT_FALSE(r1->reject());
  ASSERT_TRUE(c[2].node->Step(Vote(3, 2, 5, 1, 1)).ok());
  const raftpb::Message* r3 = LastMsg(c.raft(2), 3, raftpb::MsgVoteResp);
  ASSERT_NE(r3, nullptr);
  EXPECT_TRUE(r3->reject());
  EXPECT_EQ(c.raft(2)->vote(), 1u);
  // A repeated request from the same candidate is granted again.
  ASSERT_TRUE(c[2].node->Step(Vote(1, 2, 5, 1, 1)).ok());
  EXPECT_FALSE(LastMsg(c.raft(2), 1, raftpb::MsgVoteResp)->reject());
}

// §5.4.1: a voter denies its vote to a candidate whose log is less up to
// date (lower last term, or same term and shorter).
TEST(RaftPaperTest, VoterRejectsStaleCandidateLog_5_4_1) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);  // everyone has entry 2 at term 1
  uint64_t term = c.raft(2)->term();
  ASSERT_TRUE(c[2].node->Step(Vote(3, 2, term + 1, 1, 1)).ok());  // shorter log
  EXPECT_TRUE(LastMsg(c.raft(2), 3, raftpb::MsgVoteResp)->reject());
  ASSERT_TRUE(c[2].node->Step(Vote(3, 2, term + 2, 9, 0)).ok());  // longer but older term
  EXPECT_TRUE(LastMsg(c.raft(2), 3, raftpb::MsgVoteResp)->reject());
  ASSERT_TRUE(c[2].node->Step(Vote(3, 2, term + 3, 2, 1)).ok());  // as up to date
  EXPECT_FALSE(LastMsg(c.raft(2), 3, raftpb::MsgVoteResp)->reject());
}

// §5.1: a server that sees a higher term reverts to follower; a message
// from a stale term is not acted on.
TEST(RaftPaperTest, HigherTermTurnsLeaderIntoFollower_5_1) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  raftpb::Message hb;
  hb.set_type(raftpb::MsgHeartbeat);
  hb.set_from(2);
  hb.set_to(1);
  hb.set_term(c.raft(1)->term() + 3);
  ASSERT_TRUE(c[1].node->Step(hb).ok());
  EXPECT_EQ(c.raft(1)->state(), StateType::kFollower);
  EXPECT_EQ(c.raft(1)->term(), hb.term());
  EXPECT_EQ(c.raft(1)->lead(), 2u);
}

// §5.3: conflicting follower entries are overwritten by the leader's log;
// the follower hint (reject_hint + log_term) skips a whole term at once.
TEST(RaftPaperTest, LeaderOverwritesConflictingEntriesWithFastBacktracking_5_3) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  // Old leader 1 appends entries no one else gets.
  c.Isolate(1);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(c[1].node->Propose("stale").ok());
  c.Stabilize();
  c.Recover();
  c.Isolate(1);
  c.Campaign(2);
  ASSERT_EQ(c.raft(2)->state(), StateType::kLeader);
  ASSERT_TRUE(c[2].node->Propose("new").ok());
  c.Stabilize();
  c.Recover();
  int rejections = 0;
  c.observer = [&](const raftpb::Message& m) {
    if (m.type() == raftpb::MsgAppResp && m.from() == 1 && m.reject()) ++rejections;
  };
  c.Tick(2, 1);  // heartbeat: 1 steps down and gets repaired
  EXPECT_EQ(c.raft(1)->state(), StateType::kFollower);
  EXPECT_EQ(c.raft(1)->log().LastIndex(), c.raft(2)->log().LastIndex());
  EXPECT_EQ(c.raft(1)->log().LastTerm(), c.raft(2)->log().LastTerm());
  EXPECT_EQ(c[1].applied.back().data(), "new");
  // One rejection finds the divergence point instead of one per entry.
  EXPECT_LE(rejections, 2);
}

// §5.4.2 (figure 8): a leader must not commit an entry of an earlier term by
// counting replicas; it commits it only indirectly, with an entry of its own
// term.
TEST(RaftPaperTest, Figure8PreviousTermEntryNotCommittedByCounting_5_4_2) {
  TestCluster c({1, 2, 3, 4, 5}, [](Config* cfg) { cfg->max_size_per_msg = 0; });
  c.Campaign(1);
  const uint64_t base = c.raft(1)->log().LastIndex();
  // (a) leader 1 replicates entry base+1 only to 2.
  for (uint64_t id : {3, 4, 5}) c.Cut(1, id);
  ASSERT_TRUE(c[1].node->Propose("x").ok());
  c.Stabilize();
  ASSERT_EQ(c.raft(2)->log().LastIndex(), base + 1);
  // (b) 1 is down; 5 is elected by 3, 4, 5 and writes base+1 only locally.
  c.Recover();
  c.Down(1);
  c.Ignore(raftpb::MsgApp);
  c.Ignore(raftpb::MsgHeartbeat);
  c.Campaign(5);
  ASSERT_EQ(c.raft(5)->state(), StateType::kLeader);
  // (c) 5 is down; 1 comes back and is elected again.
  c.Recover();
  c.Down(5);
  c.Restart(1);
  // Once 3 and 4 hold base+1, entries of 1's new term do not reach them.
  std::set<uint64_t> has_old;
  c.observer = [&](const raftpb::Message& m) {
    if (m.type() == raftpb::MsgAppResp && !m.reject() && m.index() >= base + 1) has_old.insert(m.from());
  };
  c.drop_filter = [&](const raftpb::Message& m) {
    if (m.type() != raftpb::MsgApp || (m.to() != 3 && m.to() != 4) || !has_old.count(m.to())) return false;
    for (const auto& e : m.entries()) {
      if (e.index() > base + 1) return true;
    }
    return false;
  };
  for (int i = 0; i < 5 && c.raft(1)->state() != StateType::kLeader; ++i) c.Campaign(1);
  ASSERT_EQ(c.raft(1)->state(), StateType::kLeader);
  for (int i = 0; i < 3; ++i) c.Tick(1, 1);
  // base+1 (old term) is now on 1, 2, 3, 4: a majority, yet not committed.
  EXPECT_EQ(c.raft(3)->log().LastIndex(), base + 1);
  EXPECT_EQ(c.raft(4)->log().LastIndex(), base + 1);
  EXPECT_EQ(c.raft(1)->log().ZeroTermOnErr(base + 1), 1u);
  EXPECT_EQ(c.raft(1)->log().committed(), base);
  // Once an entry of the current term reaches a majority, both commit.
  c.drop_filter = nullptr;
  c.Down(5);
  c.Tick(1, 1);
  EXPECT_EQ(c.raft(1)->log().committed(), c.raft(1)->log().LastIndex());
  EXPECT_GT(c.raft(1)->log().committed(), base + 1);
}

// §5.3: the leader tells followers its commit index; a heartbeat carries
// min(match, commit) so a lagging follower never commits what it lacks.
TEST(RaftPaperTest, HeartbeatCommitIsMinOfMatchAndCommit_5_3) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  c.Cut(1, 3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(c[1].node->Propose("v").ok());
  c.Stabilize();
  c.Recover();
  c.Ignore(raftpb::MsgApp);
  uint64_t match3 = c.raft(1)->tracker().progress.at(3).match;
  ASSERT_LT(match3, c.raft(1)->log().committed());
  std::vector<uint64_t> commits;
  c.observer = [&](const raftpb::Message& m) {
    if (m.type() == raftpb::MsgHeartbeat && m.to() == 3) commits.push_back(m.commit());
  };
  c.Tick(1, 1);
  ASSERT_FALSE(commits.empty());
  EXPECT_EQ(commits[0], match3);
  EXPECT_LE(c.raft(3)->log().committed(), c.raft(3)->log().LastIndex());
}

// §5.4.2 / §8: a new leader appends an empty entry of its term at once.
TEST(RaftPaperTest, NewLeaderAppendsEmptyEntry_8) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  const auto& e = c[2].applied.back();
  EXPECT_EQ(e.type(), raftpb::EntryNormal);
  EXPECT_TRUE(e.data().empty());
  EXPECT_EQ(e.term(), c.raft(1)->term());
}

// Persistence rules (§5.1, figure 2): term and vote reach the HardState
// before the vote is sent; must_sync is set for them.
TEST(RaftPaperTest, VoteIsPersistedBeforeItIsSent_5_1) {
  TestCluster c({1, 2, 3});
  ASSERT_TRUE(c[2].node->Step(Vote(1, 2, 4, 1, 1)).ok());
  Ready rd = c[2].node->GetReady();
  EXPECT_EQ(rd.hard_state.term(), 4u);
  EXPECT_EQ(rd.hard_state.vote(), 1u);
  EXPECT_TRUE(rd.must_sync);
  ASSERT_EQ(rd.messages.size(), 1u);
  EXPECT_EQ(rd.messages[0].type(), raftpb::MsgVoteResp);
  c[2].node->Advance(rd);
}

}  // namespace
}  // namespace cppetcd::raft
