// Membership changes (Ongaro's thesis chapter 4): single-step changes (§4.1),
// joint consensus (§4.3), learners (etcd's non-voting members, §4.2.1
// "catching up new servers"), the Changer's invariants.
#include "confchange.h"
#include "gtest/gtest.h"
#include "raft_core.h"
#include "test_cluster.h"

namespace cppetcd::raft {
namespace {

using testing::TestCluster;

raftpb::ConfChange CC(raftpb::ConfChangeType t, uint64_t id) {
  raftpb::ConfChange cc;
  cc.set_type(t);
  cc.set_node_id(id);
  return cc;
}

raftpb::ConfChangeV2 CC2(std::vector<std::pair<raftpb::ConfChangeType, uint64_t>> changes,
                         raftpb::ConfChangeTransition t = raftpb::ConfChangeTransitionAuto) {
  raftpb::ConfChangeV2 cc;
  cc.set_transition(t);
  for (auto [type, id] : changes) {
    auto* c = cc.add_changes();
    c->set_type(type);
    c->set_node_id(id);
  }
  return cc;
}

int CountConfChanges(const std::vector<raftpb::Entry>& ents) {
  int n = 0;
  for (const auto& e : ents) n += e.type() != raftpb::EntryNormal;
  return n;
}

std::vector<uint64_t> Voters(Raft* r) { return r->tracker().VoterNodes(); }

// Thesis §4.1: a single-step change adds one voter; it takes effect only
// when applied (after commit), never when proposed.
TEST(MembershipTest, AddVoterTakesEffectOnlyWhenApplied_4_1) {
  TestCluster c({1, 2, 3}, nullptr, {}, /*bootstrap=*/true);
  c.AddEmptyNode(4);
  c.Campaign(1);
  c.Isolate(1);
  ASSERT_TRUE(c[1].node->ProposeConfChange(CC(raftpb::ConfChangeAddNode, 4)).ok());
  c.Stabilize();
  EXPECT_EQ(Voters(c.raft(1)).size(), 3u);  // proposed, not committed
  c.Recover();
  c.Tick(1, 1);
  EXPECT_EQ(Voters(c.raft(1)), (std::vector<uint64_t>{1, 2, 3, 4}));
  ASSERT_TRUE(c[1].node->Propose("x").ok());
  c.Stabilize();
  ASSERT_FALSE(c[4].applied.empty());
  EXPECT_EQ(c[4].applied.back().data(), "x");
  EXPECT_EQ(Voters(c.raft(4)), (std::vector<uint64_t>{1, 2, 3, 4}));
}

// Thesis §4.1: only one change may be pending (proposed, not yet applied);
// another one is neutralised into an empty normal entry.
TEST(MembershipTest, SecondPendingConfChangeIsRefused_4_1) {
  TestCluster c({1, 2, 3}, nullptr, {}, /*bootstrap=*/true);
  c.AddEmptyNode(4);
  c.AddEmptyNode(5);
  c.Campaign(1);
  ASSERT_TRUE(c[1].node->ProposeConfChange(CC(raftpb::ConfChangeAddNode, 4)).ok());
  ASSERT_TRUE(c[1].node->ProposeConfChange(CC(raftpb::ConfChangeAddNode, 5)).ok());
  c.Stabilize();
  EXPECT_EQ(Voters(c.raft(1)), (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(CountConfChanges(c[1].applied), 3 + 1);  // bootstrap entries + one
  // Once applied, the next change is accepted.
  ASSERT_TRUE(c[1].node->ProposeConfChange(CC(raftpb::ConfChangeAddNode, 5)).ok());
  c.Stabilize();
  EXPECT_EQ(Voters(c.raft(1)).size(), 5u);
}

// A learner receives the log but is not counted in any quorum and never
// campaigns.
TEST(MembershipTest, LearnerIsNotCountedInQuorum) {
  TestCluster c({1, 2}, nullptr, {3});
  c.Campaign(1);
  ASSERT_TRUE(c.raft(3)->is_learner());
  uint64_t before = c.raft(1)->log().committed();
  c.Cut(1, 2);
  ASSERT_TRUE(c[1].node->Propose("x").ok());
  c.Stabilize();
  EXPECT_EQ(c.raft(1)->tracker().progress.at(3).match, c.raft(1)->log().LastIndex());  // learner has it
  EXPECT_EQ(c.raft(1)->log().committed(), before);  // but 1 + learner is no quorum
  c.Recover();
  c.Isolate(1);
  c.Isolate(2);
  c.Tick(3, 100);
  EXPECT_EQ(c.raft(3)->state(), StateType::kFollower);
  EXPECT_TRUE(IsProposalDropped(c[3].node->Campaign()) || c.raft(3)->state() == StateType::kFollower);
}

// Promoting a learner to voter (etcd's member promote).
TEST(MembershipTest, PromoteLearner) {
  TestCluster c({1, 2}, nullptr, {3});
  c.Campaign(1);
  ASSERT_TRUE(c[1].node->ProposeConfChange(CC(raftpb::ConfChangeAddNode, 3)).ok());
  c.Stabilize();
  EXPECT_FALSE(c.raft(3)->is_learner());
  EXPECT_EQ(Voters(c.raft(3)), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_TRUE(c.raft(1)->tracker().config.learners.empty());
}

// Thesis §4.3: a ConfChangeV2 with several changes goes through a joint
// configuration; with the auto transition the leader leaves it by itself
// once it is applied.
TEST(MembershipTest, JointConsensusAutoLeave_4_3) {
  TestCluster c({1, 2, 3}, nullptr, {}, /*bootstrap=*/true);
  c.AddEmptyNode(4);
  c.AddEmptyNode(5);
  c.Campaign(1);
  ASSERT_TRUE(c[1].node
                  ->ProposeConfChange(CC2({{raftpb::ConfChangeAddNode, 4},
                                           {raftpb::ConfChangeAddNode, 5},
                                           {raftpb::ConfChangeRemoveNode, 3}}))
                  .ok());
  c.Stabilize();
  const TrackerConfig& cfg = c.raft(1)->tracker().config;
  EXPECT_FALSE(cfg.voters.IsJoint());
  EXPECT_EQ(Voters(c.raft(1)), (std::vector<uint64_t>{1, 2, 4, 5}));
  // Two conf change entries were applied: enter joint, then the empty leave.
  EXPECT_EQ(CountConfChanges(c[1].applied), 3 + 2);
}

// Thesis §4.3: the explicit transition stays joint until an empty
// ConfChangeV2 is proposed; while joint, other changes are refused.
TEST(MembershipTest, JointConsensusExplicitLeave_4_3) {
  TestCluster c({1, 2, 3}, nullptr, {}, /*bootstrap=*/true);
  c.AddEmptyNode(4);
  c.Campaign(1);
  ASSERT_TRUE(c[1].node
                  ->ProposeConfChange(CC2({{raftpb::ConfChangeAddNode, 4}, {raftpb::ConfChangeRemoveNode, 2}},
                                          raftpb::ConfChangeTransitionJointExplicit))
                  .ok());
  c.Stabilize();
  ASSERT_TRUE(c.raft(1)->tracker().config.voters.IsJoint());
  // A change while joint is neutralised.
  ASSERT_TRUE(c[1].node->ProposeConfChange(CC(raftpb::ConfChangeRemoveNode, 3)).ok());
  c.Stabilize();
  EXPECT_TRUE(c.raft(1)->tracker().config.voters.IsJoint());
  EXPECT_EQ(c.raft(1)->tracker().config.voters.incoming.ids(), (std::set<uint64_t>{1, 3, 4}));
  ASSERT_TRUE(c[1].node->ProposeConfChange(raftpb::ConfChangeV2()).ok());
  c.Stabilize();
  EXPECT_FALSE(c.raft(1)->tracker().config.voters.IsJoint());
  EXPECT_EQ(Voters(c.raft(1)), (std::vector<uint64_t>{1, 3, 4}));
}

// Thesis §4.3: in a joint configuration a decision needs both majorities.
TEST(MembershipTest, JointConfigNeedsBothMajorities_4_3) {
  TestCluster c({1, 2, 3}, nullptr, {}, /*bootstrap=*/true);
  c.AddEmptyNode(4);
  c.AddEmptyNode(5);
  c.Campaign(1);
  ASSERT_TRUE(c[1].node
                  ->ProposeConfChange(CC2({{raftpb::ConfChangeAddNode, 4}, {raftpb::ConfChangeAddNode, 5}},
                                          raftpb::ConfChangeTransitionJointExplicit))
                  .ok());
  c.Stabilize();
  ASSERT_TRUE(c.raft(1)->tracker().config.voters.IsJoint());
  // 1, 4, 5 form a majority of the new config {1..5} but not of {1,2,3}.
  c.Cut(1, 2);
  c.Cut(1, 3);
  uint64_t before = c.raft(1)->log().committed();
  ASSERT_TRUE(c[1].node->Propose("x").ok());
  c.Stabilize();
  EXPECT_EQ(c.raft(1)->log().committed(), before);
  c.Recover();
  c.Tick(1, 1);
  EXPECT_GT(c.raft(1)->log().committed(), before);
}

// Demotion through a joint config: the voter becomes a learner only when the
// joint config is left (learners_next).
TEST(MembershipTest, DemoteVoterViaLearnersNext_4_3) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  ASSERT_TRUE(c[1].node
                  ->ProposeConfChange(CC2({{raftpb::ConfChangeAddLearnerNode, 3}},
                                          raftpb::ConfChangeTransitionJointExplicit))
                  .ok());
  c.Stabilize();
  EXPECT_EQ(c.raft(1)->tracker().config.learners_next, (std::set<uint64_t>{3}));
  EXPECT_FALSE(c.raft(3)->is_learner());
  ASSERT_TRUE(c[1].node->ProposeConfChange(raftpb::ConfChangeV2()).ok());
  c.Stabilize();
  EXPECT_TRUE(c.raft(3)->is_learner());
  EXPECT_EQ(c.raft(1)->tracker().config.learners, (std::set<uint64_t>{3}));
}

// A removed leader keeps replicating until a caught-up voter takes over,
// then steps down (thesis §4.2.2); it takes no proposals meanwhile.
TEST(MembershipTest, RemovedLeaderStepsDown_4_2_2) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  ASSERT_TRUE(c[1].node->ProposeConfChange(CC(raftpb::ConfChangeRemoveNode, 1)).ok());
  c.Stabilize();
  c.TickAll(2);
  uint64_t leader = c.Leader();
  EXPECT_TRUE(leader == 2 || leader == 3) << leader;
  EXPECT_NE(c.raft(1)->state(), StateType::kLeader);
  EXPECT_EQ(Voters(c.raft(leader)), (std::vector<uint64_t>{2, 3}));
  ASSERT_TRUE(c[leader].node->Propose("after").ok());
  c.Stabilize();
  EXPECT_EQ(c[leader == 2 ? 3 : 2].applied.back().data(), "after");
}

// Regression: a node that was removed while campaigning must not become
// leader (it has no progress for itself).
TEST(MembershipTest, RemovedCandidateAbandonsElection) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  c.Ignore(raftpb::MsgVote);
  ASSERT_TRUE(c[2].node->Campaign().ok());
  ASSERT_EQ(c.raft(2)->state(), StateType::kCandidate);
  c[2].node->ApplyConfChange(CC(raftpb::ConfChangeRemoveNode, 2));
  EXPECT_EQ(c.raft(2)->state(), StateType::kFollower);
}

// Changer rules (thesis §4.1, §4.3).
TEST(MembershipTest, ChangerRejectsUnsafeChanges) {
  ProgressTracker t(8);
  auto restored = RestoreConfig(raftpb::ConfState(), 10, 8);
  ASSERT_TRUE(restored.ok());
  Changer ch(t, 10);
  auto single = [](raftpb::ConfChangeType type, uint64_t id) {
    raftpb::ConfChangeSingle s;
    s.set_type(type);
    s.set_node_id(id);
    return s;
  };
  auto one = ch.Simple({single(raftpb::ConfChangeAddNode, 1)});
  ASSERT_TRUE(one.ok());
  t.config = one->first;
  t.progress = one->second;
  // Two voters at once in a simple change could create disjoint majorities.
  EXPECT_FALSE(Changer(t, 10).Simple({single(raftpb::ConfChangeAddNode, 2), single(raftpb::ConfChangeAddNode, 3)}).ok());
  // Removing every voter is refused.
  EXPECT_FALSE(Changer(t, 10).Simple({single(raftpb::ConfChangeRemoveNode, 1)}).ok());
  // Leaving a non-joint config is refused; entering twice too.
  EXPECT_FALSE(Changer(t, 10).LeaveJoint().ok());
  auto joint = Changer(t, 10).EnterJoint(true, {single(raftpb::ConfChangeAddNode, 2)});
  ASSERT_TRUE(joint.ok());
  t.config = joint->first;
  t.progress = joint->second;
  EXPECT_FALSE(Changer(t, 10).EnterJoint(false, {}).ok());
  EXPECT_FALSE(Changer(t, 10).Simple({single(raftpb::ConfChangeAddNode, 3)}).ok());
  auto left = Changer(t, 10).LeaveJoint();
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(left->first.voters.incoming.ids(), (std::set<uint64_t>{1, 2}));
  EXPECT_FALSE(left->first.auto_leave);
}

// Restart: the membership comes back from the snapshot's ConfState.
TEST(MembershipTest, RestoreConfigFromConfState) {
  raftpb::ConfState cs;
  cs.add_voters(1);
  cs.add_voters(2);
  cs.add_voters_outgoing(1);
  cs.add_voters_outgoing(3);
  cs.add_learners_next(3);
  cs.add_learners(4);
  cs.set_auto_leave(true);
  auto r = RestoreConfig(cs, 5, 8);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->first.voters.IsJoint());
  EXPECT_TRUE(r->second.at(4).is_learner);
  EXPECT_FALSE(r->second.at(3).is_learner);
  ProgressTracker t(8);
  t.config = r->first;
  t.progress = r->second;
  raftpb::ConfState back = t.ConfState();
  EXPECT_EQ(back.SerializeAsString(), cs.SerializeAsString());
}

}  // namespace
}  // namespace cppetcd::raft
