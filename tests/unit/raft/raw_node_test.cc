// RawNode basics: bootstrap, single-node election/commit/ReadIndex, 3-node
// election and replication, Ready/Advance contract.
#include "cppetcd/raft/raw_node.h"

#include "cppetcd/util/log.h"
#include "gtest/gtest.h"
#include "test_cluster.h"

namespace cppetcd::raft {
namespace {

using testing::DefaultConfig;
using testing::TestCluster;

// Persists and applies one Ready, as a server loop would.
struct Loop {
  MemoryStorage* storage;
  RawNode* node;
  std::vector<raftpb::Entry> applied;
  std::vector<ReadState> reads;
  void Handle() {
    while (node->HasReady()) {
      Ready rd = node->GetReady();
      if (!IsEmptySnapshot(rd.snapshot)) {
        ASSERT_TRUE(storage->ApplySnapshot(rd.snapshot).ok());
      }
      ASSERT_TRUE(storage->Append(rd.entries).ok());
      if (!IsEmptyHardState(rd.hard_state)) storage->SetHardState(rd.hard_state);
      for (const auto& e : rd.committed_entries) {
        applied.push_back(e);
        if (e.type() == raftpb::EntryConfChange) {
          raftpb::ConfChange cc;
          ASSERT_TRUE(cc.ParseFromString(e.data()));
          node->ApplyConfChange(cc);
        }
      }
      for (const auto& r : rd.read_states) reads.push_back(r);
      node->Advance(rd);
    }
  }
};

TEST(RawNodeTest, CreateValidatesConfig) {
  MemoryStorage s;
  Config c = DefaultConfig(0, &s);
  EXPECT_FALSE(RawNode::Create(c).ok());
  c = DefaultConfig(1, nullptr);
  EXPECT_FALSE(RawNode::Create(c).ok());
  c = DefaultConfig(1, &s);
  c.election_tick = 1;
  EXPECT_FALSE(RawNode::Create(c).ok());
  c = DefaultConfig(1, &s);
  c.read_only_option = ReadOnlyOption::kReadOnlyLeaseBased;
  EXPECT_FALSE(RawNode::Create(c).ok());
  c.check_quorum = true;
  EXPECT_TRUE(RawNode::Create(c).ok());
}

TEST(RawNodeTest, SingleNodeBootstrapCampaignProposeRead) {
  MemoryStorage s;
  auto rn = RawNode::Create(DefaultConfig(1, &s));
  ASSERT_TRUE(rn.ok());
  RawNode& n = **rn;
  ASSERT_TRUE(n.Bootstrap({{1, "ctx1"}}).ok());
  EXPECT_FALSE(n.Bootstrap({{1, ""}}).ok() && false);
  ASSERT_TRUE(n.HasReady());
  Ready rd = n.GetReady();
  ASSERT_EQ(rd.entries.size(), 1u);
  EXPECT_EQ(rd.entries[0].type(), raftpb::EntryConfChange);
  EXPECT_EQ(rd.entries[0].term(), 1u);
  ASSERT_EQ(rd.committed_entries.size(), 1u);
  EXPECT_EQ(rd.hard_state.term(), 1u);
  EXPECT_EQ(rd.hard_state.commit(), 1u);
  EXPECT_TRUE(rd.must_sync);
  ASSERT_TRUE(s.Append(rd.entries).ok());
  s.SetHardState(rd.hard_state);
  n.Advance(rd);

  Loop loop{&s, &n, {}, {}};
  ASSERT_TRUE(n.Campaign().ok());
  loop.Handle();
  Status st = n.GetStatus();
  EXPECT_EQ(st.soft_state.raft_state, StateType::kLeader);
  EXPECT_EQ(st.soft_state.lead, 1u);
  EXPECT_EQ(st.hard_state.term(), 2u);
  EXPECT_EQ(st.hard_state.vote(), 1u);

  ASSERT_TRUE(n.Propose("hello").ok());
  loop.Handle();
  ASSERT_FALSE(loop.applied.empty());
  EXPECT_EQ(loop.applied.back().data(), "hello");
  uint64_t idx = loop.applied.back().index();
  EXPECT_EQ(n.GetStatus().hard_state.commit(), idx);
  EXPECT_EQ(n.GetStatus().applied, idx);

  // §6.4: a single voter answers ReadIndex at once with its commit index.
  n.ReadIndex("r1");
  loop.Handle();
  ASSERT_EQ(loop.reads.size(), 1u);
  EXPECT_EQ(loop.reads[0].request_ctx, "r1");
  EXPECT_EQ(loop.reads[0].index, idx);
  EXPECT_FALSE(n.HasReady());
}

TEST(RawNodeTest, BootstrapRejectsNonEmptyStorageAndNoPeers) {
  MemoryStorage s;
  auto rn = RawNode::Create(DefaultConfig(1, &s));
  ASSERT_TRUE(rn.ok());
  EXPECT_FALSE((*rn)->Bootstrap({}).ok());
  raftpb::Entry e;
  e.set_index(1);
  e.set_term(1);
  ASSERT_TRUE(s.Append({e}).ok());
  auto rn2 = RawNode::Create(DefaultConfig(1, &s));
  ASSERT_TRUE(rn2.ok());
  EXPECT_FALSE((*rn2)->Bootstrap({{1, ""}}).ok());
}

TEST(RawNodeTest, SingleNodeElectsItselfByTicking) {
  MemoryStorage s;
  auto rn = RawNode::Create(DefaultConfig(1, &s));
  ASSERT_TRUE(rn.ok());
  ASSERT_TRUE((*rn)->Bootstrap({{1, ""}}).ok());
  Loop loop{&s, rn->get(), {}, {}};
  loop.Handle();
  for (int i = 0; i < 20; ++i) {
    (*rn)->Tick();
    loop.Handle();
  }
  EXPECT_EQ((*rn)->GetStatus().soft_state.raft_state, StateType::kLeader);
}

TEST(RawNodeTest, ThreeNodeElectionAndReplication) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  EXPECT_EQ(c.raft(1)->state(), StateType::kLeader);
  EXPECT_EQ(c.raft(2)->state(), StateType::kFollower);
  EXPECT_EQ(c.raft(2)->lead(), 1u);
  EXPECT_EQ(c.raft(3)->lead(), 1u);
  ASSERT_TRUE(c[1].node->Propose("a").ok());
  ASSERT_TRUE(c[2].node->Propose("b").ok());  // forwarded to the leader
  c.Stabilize();
  for (uint64_t id : {1, 2, 3}) {
    auto& ap = c[id].applied;
    ASSERT_GE(ap.size(), 3u) << id;
    EXPECT_EQ(ap[ap.size() - 2].data(), "a");
    EXPECT_EQ(ap.back().data(), "b");
    EXPECT_EQ(c.raft(id)->log().committed(), c.raft(1)->log().LastIndex());
  }
  Status st = c[1].node->GetStatus();
  ASSERT_EQ(st.progress.size(), 3u);
  EXPECT_EQ(st.progress[2].match, c.raft(1)->log().LastIndex());
  EXPECT_EQ(st.progress[2].state, ProgressStateType::kReplicate);
}

TEST(RawNodeTest, StepRejectsLocalAndUnknownPeerResponses) {
  TestCluster c({1, 2, 3});
  raftpb::Message m;
  m.set_type(raftpb::MsgHup);
  EXPECT_TRUE(IsStepLocalMsg(c[1].node->Step(m)));
  m.set_type(raftpb::MsgAppResp);
  m.set_from(9);
  m.set_term(1);
  EXPECT_TRUE(IsStepPeerNotFound(c[1].node->Step(m)));
}

TEST(RawNodeTest, MustSyncOnlyWhenEntriesOrTermVoteChange) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  // A heartbeat round changes nothing durable.
  c[1].node->Tick();
  ASSERT_TRUE(c[1].node->HasReady());
  Ready rd = c[1].node->GetReady();
  EXPECT_FALSE(rd.must_sync);
  EXPECT_TRUE(rd.entries.empty());
  EXPECT_FALSE(rd.messages.empty());
  c[1].node->Advance(rd);
  ASSERT_TRUE(c[1].node->Propose("x").ok());
  rd = c[1].node->GetReady();
  EXPECT_TRUE(rd.must_sync);
  c[1].node->Advance(rd);
}

TEST(RawNodeTest, ProposalDroppedWithoutLeader) {
  TestCluster c({1, 2, 3});
  EXPECT_TRUE(IsProposalDropped(c[2].node->Propose("x")));
}

TEST(RawNodeTest, RestartFromStorageKeepsState) {
  TestCluster c({1, 2, 3});
  c.Campaign(1);
  ASSERT_TRUE(c[1].node->Propose("p").ok());
  c.Stabilize();
  uint64_t applied = c[2].applied.back().index();
  raftpb::HardState before = c.raft(2)->GetHardState();
  Config cfg = DefaultConfig(2, c[2].storage.get());
  cfg.applied = applied;
  auto rn = RawNode::Create(cfg);
  ASSERT_TRUE(rn.ok());
  Status st = (*rn)->GetStatus();
  EXPECT_EQ(st.hard_state.term(), before.term());
  EXPECT_EQ(st.hard_state.vote(), before.vote());
  EXPECT_EQ(st.hard_state.commit(), before.commit());
  EXPECT_EQ(st.applied, applied);
  EXPECT_EQ(st.conf_state.voters_size(), 3);
  EXPECT_FALSE((*rn)->HasReady());
}

}  // namespace
}  // namespace cppetcd::raft

namespace cppetcd::raft {
namespace {

// Raft's log lines are constant messages with fields (stable for scripts).
TEST(RawNodeTest, LogsConstantMessagesWithFields) {
  auto captured = util::NewCapturedLog();
  util::Logger logger("raft", captured.sink);
  MemoryStorage s;
  Config c = testing::DefaultConfig(1, &s);
  c.logger = &logger;
  auto rn = RawNode::Create(c);
  ASSERT_TRUE(rn.ok());
  ASSERT_TRUE((*rn)->Bootstrap({{1, ""}}).ok());
  Ready rd = (*rn)->GetReady();
  ASSERT_TRUE(s.Append(rd.entries).ok());
  (*rn)->Advance(rd);
  ASSERT_TRUE((*rn)->Campaign().ok());
  bool found = false;
  for (const auto& line : captured.Lines()) {
    if (line.find("\"msg\":\"became leader\"") != std::string::npos) {
      found = true;
      EXPECT_NE(line.find("\"term\":2"), std::string::npos) << line;
      EXPECT_NE(line.find("\"id\":1"), std::string::npos) << line;
    }
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace cppetcd::raft
