#include "cppetcd/server/peer_check.h"

#include "absl/strings/str_cat.h"
#include "cppetcd/util/log.h"

namespace cppetcd::server {

absl::Status CheckPeerMessage(const raftpb::Message& m, uint64_t local_id,
                              absl::FunctionRef<bool(uint64_t id)> is_member) {
  if (m.to() != local_id) {
    return absl::InvalidArgumentError(absl::StrCat("invalid raft message: addressed to ",
                                                   util::IdToHex(m.to()), ", not to this member"));
  }
  const bool self_ok = m.type() == raftpb::MsgTransferLeader;
  if (m.from() == 0 || (m.from() == local_id && !self_ok) ||
      (m.from() != local_id && !is_member(m.from()))) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid raft message: from unknown member ", util::IdToHex(m.from())));
  }
  return absl::OkStatus();
}

}  // namespace cppetcd::server
