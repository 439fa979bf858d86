// Messages from peers that raft refuses (RawNode::Step): see
// Raft::CheckPeerMessage (src/raft/raft_core.h) for the rules.
#ifndef CPPETCD_RAFT_PEER_MESSAGE_H_
#define CPPETCD_RAFT_PEER_MESSAGE_H_

#include <string_view>

#include "absl/status/status.h"

namespace cppetcd::raft {

// ErrInvalidPeerMessage: RawNode::Step was given a message no correct peer
// sends and that raft would otherwise abort on or corrupt its log with (e.g.
// a heartbeat committing past this node's log, non-contiguous entries, a
// snapshot with an unusable ConfState). The message is dropped; the
// application should log it. InvalidArgument, message
// "raft: invalid message from peer: <why>".
absl::Status ErrInvalidPeerMessage(std::string_view why);
bool IsInvalidPeerMessage(const absl::Status& s);

}  // namespace cppetcd::raft

#endif  // CPPETCD_RAFT_PEER_MESSAGE_H_
