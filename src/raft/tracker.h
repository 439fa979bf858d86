// The leader's view of its followers (per-peer Progress with flow control)
// and the membership configuration it tracks. Raft paper §5.3 (nextIndex,
// matchIndex), thesis §4 (membership), etcd raft's flow-control states.
#ifndef CPPETCD_RAFT_TRACKER_H_
#define CPPETCD_RAFT_TRACKER_H_

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "cppetcd/raft/raw_node.h"
#include "quorum.h"
#include "raftpb/raft.pb.h"

namespace cppetcd::raft {

// A bounded FIFO of the last indices of MsgApps in flight to one follower.
class Inflights {
 public:
  explicit Inflights(int size) : size_(size) {}
  // Records a MsgApp whose last entry is `index` (indices are increasing).
  void Add(uint64_t index) { buf_.push_back(index); }
  // Frees every in-flight message with last index <= to.
  void FreeLE(uint64_t to) {
    while (!buf_.empty() && buf_.front() <= to) buf_.pop_front();
  }
  void FreeFirstOne() {
    if (!buf_.empty()) buf_.pop_front();
  }
  bool Full() const { return static_cast<int>(buf_.size()) >= size_; }
  int Count() const { return static_cast<int>(buf_.size()); }
  void Reset() { buf_.clear(); }

 private:
  int size_;
  std::deque<uint64_t> buf_;
};

struct Progress {
  uint64_t match = 0;
  uint64_t next = 0;
  ProgressStateType state = ProgressStateType::kProbe;
  uint64_t pending_snapshot = 0;
  bool recent_active = false;
  // In probe state: one MsgApp sent since the last heartbeat response.
  bool probe_sent = false;
  Inflights inflights{256};
  bool is_learner = false;

  void BecomeProbe();
  void BecomeReplicate();
  void BecomeSnapshot(uint64_t snapshot_index);
  // Records an acknowledgement of n; returns false if it was stale.
  bool MaybeUpdate(uint64_t n);
  // After sending entries up to n in replicate state.
  void OptimisticUpdate(uint64_t n) { next = n + 1; }
  // Handles a rejected MsgApp for `rejected`; match_hint is the follower's
  // hint (thesis §5.3 optimisation). Returns false if the rejection is stale.
  bool MaybeDecrTo(uint64_t rejected, uint64_t match_hint);
  // Whether the leader should hold off sending MsgApp to this peer.
  bool IsPaused() const;
  std::string Describe() const;

 private:
  void ResetState(ProgressStateType s);
};

// Voters (possibly joint), learners and learners_next (voters that become
// learners when the joint config is left). Invariants: learners and voters
// are disjoint; learners_next is a subset of outgoing voters.
struct TrackerConfig {
  JointConfig voters;
  bool auto_leave = false;
  std::set<uint64_t> learners;
  std::set<uint64_t> learners_next;
  std::string Describe() const;
  bool operator==(const TrackerConfig&) const = default;
};

using ProgressMap = std::map<uint64_t, Progress>;

class ProgressTracker {
 public:
  explicit ProgressTracker(int max_inflight) : max_inflight_(max_inflight) {}

  raftpb::ConfState ConfState() const;
  // Whether this is a single voter (no joint config).
  bool IsSingleton() const;
  // The largest index committed by the voters' quorum (§5.3, thesis §4.3).
  uint64_t Committed() const;
  // Whether a quorum of voters was recently active (CheckQuorum).
  bool QuorumActive() const;
  std::vector<uint64_t> VoterNodes() const;
  std::vector<uint64_t> LearnerNodes() const;
  void ResetVotes() { votes_.clear(); }
  // Records a vote (the first from each voter counts).
  void RecordVote(uint64_t id, bool granted);
  // Returns granted, rejected and the election outcome.
  std::tuple<int, int, VoteResult> TallyVotes() const;

  TrackerConfig config;
  ProgressMap progress;
  int max_inflight() const { return max_inflight_; }

 private:
  int max_inflight_;
  std::map<uint64_t, bool> votes_;
};

}  // namespace cppetcd::raft

#endif  // CPPETCD_RAFT_TRACKER_H_
