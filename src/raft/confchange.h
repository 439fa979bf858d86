// Membership changes on a ProgressTracker's configuration (thesis §4):
// single-step changes (at most one voter added or removed) and joint
// consensus (enter a joint config C_old,new, later leave it for C_new).
#ifndef CPPETCD_RAFT_CONFCHANGE_H_
#define CPPETCD_RAFT_CONFCHANGE_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "raftpb/raft.pb.h"
#include "tracker.h"

namespace cppetcd::raft {

using ConfigAndProgress = std::pair<TrackerConfig, ProgressMap>;

// Computes new configurations from `tracker`; new peers get Progress with
// next = max(last_index, 1). Errors are InvalidArgument / FailedPrecondition
// describing the refused change; the tracker is never modified.
class Changer {
 public:
  Changer(const ProgressTracker& tracker, uint64_t last_index) : tracker_(tracker), last_index_(last_index) {}

  // Enters a joint config: outgoing = current voters, changes applied to
  // incoming. auto_leave marks that the leader proposes the leave itself.
  absl::StatusOr<ConfigAndProgress> EnterJoint(bool auto_leave,
                                               const std::vector<raftpb::ConfChangeSingle>& ccs) const;
  // Leaves the joint config: outgoing dropped, learners_next become learners.
  absl::StatusOr<ConfigAndProgress> LeaveJoint() const;
  // Applies changes that alter the voter set by at most one member.
  absl::StatusOr<ConfigAndProgress> Simple(const std::vector<raftpb::ConfChangeSingle>& ccs) const;

 private:
  absl::Status Apply(TrackerConfig* cfg, ProgressMap* prs, const std::vector<raftpb::ConfChangeSingle>& ccs) const;
  void MakeVoter(TrackerConfig* cfg, ProgressMap* prs, uint64_t id) const;
  void MakeLearner(TrackerConfig* cfg, ProgressMap* prs, uint64_t id) const;
  void Remove(TrackerConfig* cfg, ProgressMap* prs, uint64_t id) const;
  void InitProgress(TrackerConfig* cfg, ProgressMap* prs, uint64_t id, bool is_learner) const;

  const ProgressTracker& tracker_;
  uint64_t last_index_;
};

// Checks the invariants linking a config and its progress map.
absl::Status CheckInvariants(const TrackerConfig& cfg, const ProgressMap& prs);

// Builds the configuration a ConfState describes (on restart or snapshot).
absl::StatusOr<ConfigAndProgress> RestoreConfig(const raftpb::ConfState& cs, uint64_t last_index,
                                                int max_inflight);

// True when cc is the empty ConfChangeV2 that leaves a joint config.
bool IsLeaveJoint(const raftpb::ConfChangeV2& cc);
// Whether cc must use joint consensus, and if so whether it auto-leaves.
bool UsesJoint(const raftpb::ConfChangeV2& cc, bool* auto_leave);

}  // namespace cppetcd::raft

#endif  // CPPETCD_RAFT_CONFCHANGE_H_
