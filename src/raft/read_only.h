// Pending ReadIndex requests on a leader (Raft thesis §6.4): each records the
// commit index at request time and is answered once a quorum acknowledged a
// heartbeat carrying its context.
#ifndef CPPETCD_RAFT_READ_ONLY_H_
#define CPPETCD_RAFT_READ_ONLY_H_

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cppetcd/raft/raw_node.h"
#include "raftpb/raft.pb.h"

namespace cppetcd::raft {

struct ReadIndexStatus {
  raftpb::Message req;  // the MsgReadIndex (from is the requester)
  uint64_t index = 0;   // commit index when the request was received
  std::map<uint64_t, bool> acks;
};

class ReadOnly {
 public:
  explicit ReadOnly(ReadOnlyOption option) : option_(option) {}

  // Queues a request, keyed by its context (entries[0].data); a duplicate
  // context is ignored.
  void AddRequest(uint64_t index, const raftpb::Message& m);
  // Records a heartbeat ack carrying ctx; returns the acks so far (or null).
  const std::map<uint64_t, bool>* RecvAck(uint64_t id, const std::string& ctx);
  // Dequeues every request up to and including ctx (all were confirmed by
  // the same or a later heartbeat round) and returns them in order.
  std::vector<ReadIndexStatus> Advance(const std::string& ctx);
  // Context of the newest pending request ("" if none).
  std::string LastPendingRequestCtx() const;
  void Reset() {
    pending_.clear();
    queue_.clear();
  }
  ReadOnlyOption option() const { return option_; }

 private:
  ReadOnlyOption option_;
  std::map<std::string, ReadIndexStatus> pending_;
  std::deque<std::string> queue_;
};

}  // namespace cppetcd::raft

#endif  // CPPETCD_RAFT_READ_ONLY_H_
