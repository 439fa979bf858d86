// Extensions beyond the core algorithm, citing Ongaro's thesis ("Consensus:
// Bridging Theory and Practice", 2014): PreVote and CheckQuorum (§9.6,
// §4.2.3), ReadIndex (§6.4), leader transfer (§3.10), snapshots (§5), flow
// control and proposal handling.
#include "gtest/gtest.h"
#include "raft_core.h"
#include "test_cluster.h"

namespace cppetcd::raft {
namespace {

using testing::TestCluster;

void PreVoteAndCheckQuorum(Config* c) {
  c->pre_vote = true;
  c->check_quorum = true;
}

// Thesis §9.6: a partitioned node with PreVote does not inflate its term, so
// when it rejoins it does not depose the leader.
TEST(RaftFeaturesTest, PreVoteRejoiningNodeDoesNotDisrupt_9_6) {
  TestCluster c({1, 2, 3}, PreVoteAndCheckQuorum);
  c.Campaign(1);
  uint64_t term = c.raft(1)->term();
  c.Isolate(3);
  c.Tick(3, 100);
  EXPECT_EQ(c.raft(3)->term(), term);
  EXPECT_NE(c.raft(3)->state(), StateType::kLeader);
  c.Recover();
  c.TickAll(3);
  EXPECT_EQ(c.raft(1)->state(), StateType::kLeader);
  EXPECT_EQ(c.raft(1)->term(), term);
  EXPECT_EQ(c.raft(3)->lead(), 1u);
}

// Contrast: without PreVote the same node comes back with a higher term and
// forces a new election (the disruption PreVote prevents).
TEST(RaftFeaturesTest, WithoutPreVoteRejoiningNodeDisrupts_9_6) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  uint64_t term = c.raft(1)->term();
  c.Isolate(3);
  c.Tick(3, 100);
  EXPECT_GT(c.raft(3)->term(), term);
  c.Recover();
  c.TickAll(25);
  EXPECT_GT(c.raft(1)->term(), term);
}

// Thesis §6.2 / etcd CheckQuorum: a leader that has not heard from a quorum
// within an election timeout steps down.
TEST(RaftFeaturesTest, CheckQuorumLeaderStepsDownWhenIsolated) {
  TestCluster c({1, 2, 3}, [](Config* cfg) { cfg->check_quorum = true; });
  c.Campaign(1);
  c.Isolate(1);
  c.Tick(1, 21);
  EXPECT_EQ(c.raft(1)->state(), StateType::kFollower);
}

// Thesis §4.2.3: a server that heard from the leader within the minimum
// election timeout ignores vote requests (neither term nor vote changes).
TEST(RaftFeaturesTest, LeaseIgnoresVoteRequestsWhileLeaderIsAlive_4_2_3) {
  TestCluster c({1, 2, 3}, [](Config* cfg) { cfg->check_quorum = true; });
  c.Campaign(1);
  c.Tick(1, 1);  // heartbeat resets 2's election timer
  uint64_t term = c.raft(2)->term();
  raftpb::Message v;
  v.set_type(raftpb::MsgVote);
  v.set_from(3);
  v.set_to(2);
  v.set_term(term + 1);
  v.set_index(100);
  v.set_log_term(term);
  ASSERT_TRUE(c[2].node->Step(v).ok());
  EXPECT_EQ(c.raft(2)->term(), term);
  EXPECT_TRUE(c.raft(2)->msgs().empty());
}

// Thesis §6.4: a ReadIndex is answered only after a heartbeat round confirms
// leadership with a quorum; the index is the commit index at request time.
TEST(RaftFeaturesTest, ReadIndexConfirmedByHeartbeatQuorum_6_4) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  ASSERT_TRUE(c[1].node->Propose("a").ok());
  c.Stabilize();
  uint64_t commit = c.raft(1)->log().committed();
  c.Ignore(raftpb::MsgHeartbeatResp);
  c[1].node->ReadIndex("ctx1");
  c.Stabilize();
  EXPECT_TRUE(c[1].reads.empty());  // no quorum confirmation yet
  c.Recover();
  c[1].node->ReadIndex("ctx2");
  c.Stabilize();
  ASSERT_EQ(c[1].reads.size(), 2u);  // ctx1 is released with ctx2
  EXPECT_EQ(c[1].reads[0].request_ctx, "ctx1");
  EXPECT_EQ(c[1].reads[1].request_ctx, "ctx2");
  EXPECT_EQ(c[1].reads[1].index, commit);
}

// Thesis §6.4: followers forward ReadIndex to the leader and get its index.
TEST(RaftFeaturesTest, ReadIndexFromFollowerIsForwarded_6_4) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  c[2].node->ReadIndex("f");
  c.Stabilize();
  ASSERT_EQ(c[2].reads.size(), 1u);
  EXPECT_EQ(c[2].reads[0].request_ctx, "f");
  EXPECT_EQ(c[2].reads[0].index, c.raft(1)->log().committed());
}

// Thesis §6.4 regression: a partitioned old leader must not serve a read
// that misses writes committed by the new leader.
TEST(RaftFeaturesTest, PartitionedOldLeaderServesNoStaleRead_6_4) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  c.Isolate(1);
  c.Campaign(2);
  ASSERT_TRUE(c[2].node->Propose("new").ok());
  c.Stabilize();
  ASSERT_EQ(c.raft(1)->state(), StateType::kLeader);  // still believes it
  c[1].node->ReadIndex("stale?");
  c.TickAll(3);
  EXPECT_TRUE(c[1].reads.empty());
}

// Thesis §6.4 step 1: a new leader answers reads only after committing an
// entry of its own term (before, its commit index may be stale).
TEST(RaftFeaturesTest, ReadIndexWaitsForCurrentTermCommit_6_4) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  c.Ignore(raftpb::MsgApp);
  c.Campaign(2);
  ASSERT_EQ(c.raft(2)->state(), StateType::kLeader);
  c[2].node->ReadIndex("early");
  c.Stabilize();
  EXPECT_TRUE(c[2].reads.empty());
  c.Recover();
  c.Tick(2, 1);
  ASSERT_EQ(c[2].reads.size(), 1u);
  EXPECT_EQ(c[2].reads[0].index, c.raft(2)->log().committed());
  EXPECT_EQ(c.raft(2)->log().ZeroTermOnErr(c[2].reads[0].index), c.raft(2)->term());
}

// Thesis §6.4.1: lease-based reads are answered without a heartbeat round.
TEST(RaftFeaturesTest, LeaseBasedReadIndex_6_4_1) {
  TestCluster c({1, 2, 3}, [](Config* cfg) {
    cfg->check_quorum = true;
    cfg->read_only_option = ReadOnlyOption::kReadOnlyLeaseBased;
  });
  c.Campaign(1);
  c.Ignore(raftpb::MsgHeartbeat);
  c[1].node->ReadIndex("lease");
  c.Stabilize();
  ASSERT_EQ(c[1].reads.size(), 1u);
}

// Thesis §3.10: leadership transfer; the target campaigns on MsgTimeoutNow.
TEST(RaftFeaturesTest, LeaderTransfer_3_10) {
  TestCluster c({1, 2, 3}, PreVoteAndCheckQuorum);
  c.Campaign(1);
  c[1].node->TransferLeader(2);
  c.Stabilize();
  EXPECT_EQ(c.raft(2)->state(), StateType::kLeader);
  EXPECT_EQ(c.raft(1)->state(), StateType::kFollower);
  EXPECT_EQ(c.raft(1)->lead(), 2u);
}

// Thesis §3.10: proposals are dropped while a transfer is in progress; a
// transfer not done within an election timeout is aborted.
TEST(RaftFeaturesTest, LeaderTransferDropsProposalsAndTimesOut_3_10) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  c.Isolate(3);
  ASSERT_TRUE(c[1].node->Propose("x").ok());
  c.Stabilize();
  c[1].node->TransferLeader(3);  // 3 lags: transfer waits for it
  c.Stabilize();
  EXPECT_EQ(c.raft(1)->lead_transferee(), 3u);
  EXPECT_TRUE(IsProposalDropped(c[1].node->Propose("y")));
  c.Tick(1, 10);
  EXPECT_EQ(c.raft(1)->lead_transferee(), kNone);
  EXPECT_EQ(c.raft(1)->state(), StateType::kLeader);
  EXPECT_TRUE(c[1].node->Propose("z").ok());
}

// Transfer to a lagging follower: the leader first catches it up, then sends
// MsgTimeoutNow.
TEST(RaftFeaturesTest, LeaderTransferToLaggingFollowerCatchesItUp_3_10) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  c.Isolate(3);
  ASSERT_TRUE(c[1].node->Propose("x").ok());
  c.Stabilize();
  c.Recover();
  c[1].node->TransferLeader(3);
  c.Stabilize();
  EXPECT_EQ(c.raft(3)->state(), StateType::kLeader);
}

// Proposals beyond max_uncommitted_entries_size are dropped until entries
// commit.
TEST(RaftFeaturesTest, UncommittedSizeLimitDropsProposals) {
  TestCluster c({1, 2, 3}, [](Config* cfg) { cfg->max_uncommitted_entries_size = 100; });
  c.Campaign(1);
  c.Isolate(1);
  std::string sixty(60, 'a');
  EXPECT_TRUE(c[1].node->Propose(sixty).ok());
  EXPECT_TRUE(IsProposalDropped(c[1].node->Propose(sixty)));
  c.Stabilize();
  c.Recover();
  c.Tick(1, 1);
  EXPECT_EQ(c.raft(1)->uncommitted_size(), 0u);
  EXPECT_TRUE(c[1].node->Propose(sixty).ok());
}

TEST(RaftFeaturesTest, ProposalForwardingCanBeDisabled) {
  TestCluster c({1, 2, 3}, [](Config* cfg) { cfg->disable_proposal_forwarding = true; });
  c.Campaign(1);
  EXPECT_TRUE(IsProposalDropped(c[2].node->Propose("x")));
  EXPECT_TRUE(c[1].node->Propose("x").ok());
}

// Flow control: at most max_inflight_msgs MsgApp are in flight to a
// follower in replicate state.
TEST(RaftFeaturesTest, InflightWindowLimitsMsgApp) {
  TestCluster c({1, 2, 3}, [](Config* cfg) { cfg->max_inflight_msgs = 2; });
  c.Campaign(1);
  c.Ignore(raftpb::MsgAppResp);
  int to2 = 0;
  c.observer = [&](const raftpb::Message& m) {
    if (m.type() == raftpb::MsgApp && m.to() == 2 && m.entries_size() > 0) ++to2;
  };
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(c[1].node->Propose("p").ok());
    c.Stabilize();
  }
  EXPECT_EQ(to2, 2);
  EXPECT_EQ(c.raft(1)->tracker().progress.at(2).inflights.Count(), 2);
}

// max_size_per_msg bounds the entries of one MsgApp (at least one entry).
TEST(RaftFeaturesTest, MaxSizePerMsgSplitsAppends) {
  TestCluster c({1, 2, 3}, [](Config* cfg) { cfg->max_size_per_msg = 0; });
  c.Campaign(1);
  c.Isolate(2);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(c[1].node->Propose("p").ok());
  c.Stabilize();
  c.Recover();
  int max_entries = 0;
  c.observer = [&](const raftpb::Message& m) {
    if (m.type() == raftpb::MsgApp) max_entries = std::max(max_entries, m.entries_size());
  };
  c.Tick(1, 1);
  EXPECT_EQ(max_entries, 1);
  EXPECT_EQ(c.raft(2)->log().LastIndex(), c.raft(1)->log().LastIndex());
}

// Raft paper §7: a follower whose next entries were compacted gets the
// leader's snapshot, restores it and resumes replication.
TEST(RaftFeaturesTest, LaggingFollowerGetsSnapshot_7) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  c.Isolate(3);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(c[1].node->Propose("p").ok());
  c.Stabilize();
  uint64_t applied = c[1].node->GetStatus().applied;
  raftpb::ConfState cs = c[1].node->GetStatus().conf_state;
  ASSERT_TRUE(c[1].storage->CreateSnapshot(applied, &cs, "app-state").ok());
  ASSERT_TRUE(c[1].storage->Compact(applied).ok());
  c.Recover();
  int snaps = 0;
  c.observer = [&](const raftpb::Message& m) {
    if (m.type() == raftpb::MsgSnap) ++snaps;
  };
  c.Tick(1, 1);
  EXPECT_EQ(snaps, 1);
  EXPECT_EQ(c.raft(3)->log().committed(), c.raft(1)->log().committed());
  EXPECT_EQ(c[3].storage->Snapshot()->data(), "app-state");
  EXPECT_EQ(c.raft(1)->tracker().progress.at(3).state, ProgressStateType::kReplicate);
  ASSERT_TRUE(c[1].node->Propose("after").ok());
  c.Stabilize();
  EXPECT_EQ(c[3].applied.back().data(), "after");
}

// ReportSnapshot(failure) returns the peer to probing without the pending
// snapshot index (etcd raft semantics).
TEST(RaftFeaturesTest, ReportSnapshotFailureReturnsToProbe) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  c.Isolate(3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(c[1].node->Propose("p").ok());
  c.Stabilize();
  uint64_t applied = c[1].node->GetStatus().applied;
  raftpb::ConfState cs = c[1].node->GetStatus().conf_state;
  ASSERT_TRUE(c[1].storage->CreateSnapshot(applied, &cs, "").ok());
  ASSERT_TRUE(c[1].storage->Compact(applied).ok());
  c.Recover();
  c.Ignore(raftpb::MsgSnap);  // the snapshot is lost in transit
  c.Tick(1, 1);
  EXPECT_EQ(c.raft(1)->tracker().progress.at(3).state, ProgressStateType::kSnapshot);
  c[1].node->ReportSnapshot(3, SnapshotStatus::kFailure);
  EXPECT_EQ(c.raft(1)->tracker().progress.at(3).state, ProgressStateType::kProbe);
  EXPECT_EQ(c.raft(1)->tracker().progress.at(3).pending_snapshot, 0u);
  c.Recover();
  c.Tick(1, 2);
  EXPECT_EQ(c.raft(3)->log().committed(), c.raft(1)->log().committed());
}

// ReportUnreachable moves a replicating peer back to probing.
TEST(RaftFeaturesTest, ReportUnreachableProbes) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  ASSERT_EQ(c.raft(1)->tracker().progress.at(2).state, ProgressStateType::kReplicate);
  c[1].node->ReportUnreachable(2);
  EXPECT_EQ(c.raft(1)->tracker().progress.at(2).state, ProgressStateType::kProbe);
}

TEST(RaftFeaturesTest, StatusReportsProgress) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  Status st = c[1].node->GetStatus();
  EXPECT_EQ(st.id, 1u);
  EXPECT_EQ(st.soft_state.raft_state, StateType::kLeader);
  EXPECT_EQ(st.progress.size(), 3u);
  EXPECT_EQ(st.progress[3].match, c.raft(1)->log().LastIndex());
  EXPECT_TRUE(c[2].node->GetStatus().progress.empty());
}

}  // namespace
}  // namespace cppetcd::raft
