// RawNode::Step on messages no correct peer sends (corrupt or hostile bytes
// from the peer port): refused with ErrInvalidPeerMessage, where raft would
// otherwise abort (commit past the log, conflicting appends, an empty
// proposal, a snapshot ConfState it cannot restore) or mistake the message
// for a local one. Found with tests/fuzz/peer_message.
#include <string>

#include "cppetcd/raft/raw_node.h"
#include "gtest/gtest.h"
#include "cppetcd/raft/peer_message.h"
#include "raft_core.h"
#include "test_cluster.h"

namespace cppetcd::raft {
namespace {

using testing::TestCluster;

raftpb::Message Msg(raftpb::MessageType t, uint64_t from, uint64_t to, uint64_t term) {
  raftpb::Message m;
  m.set_type(t);
  m.set_from(from);
  m.set_to(to);
  m.set_term(term);
  return m;
}

class PeerMessageTest : public ::testing::Test {
 protected:
  PeerMessageTest() : c_({1, 2, 3}) {
    c_.Campaign(1);
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(c_[1].node->Propose("x").ok());
    c_.Stabilize();
    term_ = c_.raft(1)->term();
    last_ = c_.raft(2)->log().LastIndex();
  }
  // Steps `m` into member `to` and expects it refused, the member unchanged.
  void ExpectRefused(uint64_t to, const raftpb::Message& m) {
    const uint64_t committed = c_.raft(to)->log().committed();
    const uint64_t last = c_.raft(to)->log().LastIndex();
    absl::Status s = c_[to].node->Step(m);
    EXPECT_TRUE(IsInvalidPeerMessage(s)) << s << " for " << m.ShortDebugString();
    EXPECT_EQ(c_.raft(to)->log().committed(), committed);
    EXPECT_EQ(c_.raft(to)->log().LastIndex(), last);
  }

  TestCluster c_;
  uint64_t term_ = 0;
  uint64_t last_ = 0;
};

TEST_F(PeerMessageTest, HeartbeatCommittingPastTheLogIsRefused) {
  raftpb::Message hb = Msg(raftpb::MsgHeartbeat, 1, 2, term_);
  hb.set_commit(last_ + 1000);
  ExpectRefused(2, hb);
  hb.set_commit(last_);  // the leader's own heartbeats stay fine
  EXPECT_TRUE(c_[2].node->Step(hb).ok());
}

TEST_F(PeerMessageTest, AppendWithGapsOrTermsOutOfOrderIsRefused) {
  raftpb::Message app = Msg(raftpb::MsgApp, 1, 2, term_);
  app.set_index(last_);
  app.set_log_term(term_);
  raftpb::Entry* e = app.add_entries();
  e->set_index(last_ + 5);  // not last_ + 1: raft would index past its vector
  e->set_term(term_);
  ExpectRefused(2, app);
  e->set_index(last_ + 1);
  e->set_term(term_ + 7);  // newer than the sender's term
  ExpectRefused(2, app);
}

TEST_F(PeerMessageTest, TermlessOrEmptyMessagesAreRefused) {
  raftpb::Message app = Msg(raftpb::MsgApp, 1, 2, 0);  // would be taken as local
  app.set_index(last_);
  app.set_commit(last_ + 100);
  ExpectRefused(2, app);
  ExpectRefused(1, Msg(raftpb::MsgProp, 2, 1, 0));  // no entries: the leader aborted on it
  raftpb::Message self = Msg(raftpb::MsgHeartbeat, 2, 2, term_);
  ExpectRefused(2, self);
}

// A transfer request forwarded to a member that is no longer the leader:
// raft forwarded it again with its term set, and Send aborted on that.
TEST_F(PeerMessageTest, TransferRequestReachingAFollowerIsDropped) {
  raftpb::Message tl = Msg(raftpb::MsgTransferLeader, 3, 2, term_);
  EXPECT_TRUE(c_[2].node->Step(tl).ok());
  c_.Stabilize();
  EXPECT_EQ(c_.Leader(), 1u);
}

TEST_F(PeerMessageTest, AppendResponsePastTheLeadersLogIsRefused) {
  raftpb::Message resp = Msg(raftpb::MsgAppResp, 2, 1, term_);
  resp.set_index(last_ + 50);
  ExpectRefused(1, resp);
}

TEST_F(PeerMessageTest, SnapshotWithNonsenseMetadataIsRefused) {
  raftpb::Message snap = Msg(raftpb::MsgSnap, 1, 2, term_);
  auto* md = snap.mutable_snapshot()->mutable_metadata();
  md->set_index(last_ + 10);
  md->set_term(term_);
  ExpectRefused(2, snap);  // no voters
  md->mutable_conf_state()->add_voters(1);
  md->mutable_conf_state()->add_voters(2);
  md->mutable_conf_state()->add_learners(2);  // a voter and a learner at once
  ExpectRefused(2, snap);
  md->mutable_conf_state()->clear_learners();
  md->set_term(term_ + 1);  // newer than the message
  ExpectRefused(2, snap);
  md->set_term(term_);
  EXPECT_TRUE(c_[2].node->Step(snap).ok());  // a sane one is taken
}

}  // namespace
}  // namespace cppetcd::raft
