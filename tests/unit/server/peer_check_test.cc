// server::CheckPeerMessage: who may send raft messages to this member.
#include "cppetcd/server/peer_check.h"

#include "gtest/gtest.h"

namespace cppetcd::server {
namespace {

raftpb::Message Msg(raftpb::MessageType t, uint64_t from, uint64_t to) {
  raftpb::Message m;
  m.set_type(t);
  m.set_from(from);
  m.set_to(to);
  m.set_term(3);
  return m;
}

TEST(PeerCheckTest, AcceptsMessagesFromKnownMembersToUs) {
  auto known = [](uint64_t id) { return id == 1 || id == 2 || id == 3; };
  EXPECT_TRUE(CheckPeerMessage(Msg(raftpb::MsgApp, 1, 2), 2, known).ok());
  EXPECT_TRUE(CheckPeerMessage(Msg(raftpb::MsgVote, 3, 2), 2, known).ok());
  // A forwarded leadership transfer names the transferee (maybe us).
  EXPECT_TRUE(CheckPeerMessage(Msg(raftpb::MsgTransferLeader, 2, 2), 2, known).ok());
}

TEST(PeerCheckTest, RefusesOtherAddresseesUnknownSendersAndOurselves) {
  auto known = [](uint64_t id) { return id == 1 || id == 2 || id == 3; };
  EXPECT_TRUE(absl::IsInvalidArgument(CheckPeerMessage(Msg(raftpb::MsgApp, 1, 3), 2, known)));
  EXPECT_TRUE(absl::IsInvalidArgument(CheckPeerMessage(Msg(raftpb::MsgApp, 9, 2), 2, known)));
  EXPECT_TRUE(absl::IsInvalidArgument(CheckPeerMessage(Msg(raftpb::MsgApp, 0, 2), 2, known)));
  EXPECT_TRUE(absl::IsInvalidArgument(CheckPeerMessage(Msg(raftpb::MsgHeartbeat, 2, 2), 2, known)));
}

}  // namespace
}  // namespace cppetcd::server
