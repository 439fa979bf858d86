// The server's filter on raft messages from the peer port (what etcd's
// rafthttp refuses before raft sees a message). Raft checks the content
// against its own state when the message is stepped (RawNode::Step,
// raft::ErrInvalidPeerMessage); this filter checks who sent it.
#ifndef CPPETCD_SERVER_PEER_CHECK_H_
#define CPPETCD_SERVER_PEER_CHECK_H_

#include <cstdint>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "raftpb/raft.pb.h"

namespace cppetcd::server {

// OK if `m` is addressed to this member (`local_id`) and comes from a
// member `is_member` knows other than this one (a forwarded
// MsgTransferLeader names the transferee as sender, which may be this
// member). InvalidArgument "invalid raft message: <why>" otherwise; the
// caller drops the message (the transport logs the error).
absl::Status CheckPeerMessage(const raftpb::Message& m, uint64_t local_id,
                              absl::FunctionRef<bool(uint64_t id)> is_member);

}  // namespace cppetcd::server

#endif  // CPPETCD_SERVER_PEER_CHECK_H_
