#include "tracker.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace cppetcd::raft {

const char* ProgressStateName(ProgressStateType s) {
  switch (s) {
    case ProgressStateType::kProbe:
      return "StateProbe";
    case ProgressStateType::kReplicate:
      return "StateReplicate";
    case ProgressStateType::kSnapshot:
      return "StateSnapshot";
  }
  return "?";
}

void Progress::ResetState(ProgressStateType s) {
  probe_sent = false;
  pending_snapshot = 0;
  state = s;
  inflights.Reset();
}

void Progress::BecomeProbe() {
  // After a snapshot, resume probing right after it.
  if (state == ProgressStateType::kSnapshot) {
    uint64_t pending = pending_snapshot;
    ResetState(ProgressStateType::kProbe);
    next = std::max(match + 1, pending + 1);
  } else {
    ResetState(ProgressStateType::kProbe);
    next = match + 1;
  }
}

void Progress::BecomeReplicate() {
  ResetState(ProgressStateType::kReplicate);
  next = match + 1;
}

void Progress::BecomeSnapshot(uint64_t snapshot_index) {
  ResetState(ProgressStateType::kSnapshot);
  pending_snapshot = snapshot_index;
}

bool Progress::MaybeUpdate(uint64_t n) {
  bool updated = false;
  if (match < n) {
    match = n;
    updated = true;
    probe_sent = false;
  }
  next = std::max(next, n + 1);
  return updated;
}

bool Progress::MaybeDecrTo(uint64_t rejected, uint64_t match_hint) {
  if (state == ProgressStateType::kReplicate) {
    // In replicate state a rejection below match is stale.
    if (rejected <= match) return false;
    next = match + 1;
    return true;
  }
  // In probe state only the rejection of the last probe (next-1) counts.
  if (next - 1 != rejected) return false;
  next = std::max<uint64_t>(std::min(rejected, match_hint + 1), 1);
  probe_sent = false;
  return true;
}

bool Progress::IsPaused() const {
  switch (state) {
    case ProgressStateType::kProbe:
      return probe_sent;
    case ProgressStateType::kReplicate:
      return inflights.Full();
    case ProgressStateType::kSnapshot:
      return true;
  }
  return true;
}

std::string Progress::Describe() const {
  std::string s = absl::StrCat(ProgressStateName(state), " match=", match, " next=", next);
  if (is_learner) absl::StrAppend(&s, " learner");
  if (state == ProgressStateType::kSnapshot) absl::StrAppend(&s, " pendingSnap=", pending_snapshot);
  if (!recent_active) absl::StrAppend(&s, " inactive");
  if (inflights.Count() > 0) absl::StrAppend(&s, " inflight=", inflights.Count());
  return s;
}

std::string TrackerConfig::Describe() const {
  std::string s = absl::StrCat("voters=", voters.incoming.Describe());
  if (voters.IsJoint()) absl::StrAppend(&s, "&&", voters.outgoing.Describe());
  if (!learners.empty()) absl::StrAppend(&s, " learners=(", absl::StrJoin(learners, " "), ")");
  if (!learners_next.empty()) absl::StrAppend(&s, " learners_next=(", absl::StrJoin(learners_next, " "), ")");
  if (auto_leave) absl::StrAppend(&s, " autoleave");
  return s;
}

raftpb::ConfState ProgressTracker::ConfState() const {
  raftpb::ConfState cs;
  for (uint64_t id : config.voters.incoming.ids()) cs.add_voters(id);
  for (uint64_t id : config.voters.outgoing.ids()) cs.add_voters_outgoing(id);
  for (uint64_t id : config.learners) cs.add_learners(id);
  for (uint64_t id : config.learners_next) cs.add_learners_next(id);
  cs.set_auto_leave(config.auto_leave);
  return cs;
}

bool ProgressTracker::IsSingleton() const {
  return config.voters.incoming.size() == 1 && config.voters.outgoing.empty();
}

uint64_t ProgressTracker::Committed() const {
  return config.voters.CommittedIndex([this](uint64_t id) -> std::optional<uint64_t> {
    auto it = progress.find(id);
    if (it == progress.end()) return std::nullopt;
    return it->second.match;
  });
}

bool ProgressTracker::QuorumActive() const {
  std::map<uint64_t, bool> votes;
  for (const auto& [id, pr] : progress) {
    if (pr.is_learner) continue;
    votes[id] = pr.recent_active;
  }
  return config.voters.Vote(votes) == VoteResult::kWon;
}

std::vector<uint64_t> ProgressTracker::VoterNodes() const {
  auto ids = config.voters.Ids();
  return {ids.begin(), ids.end()};
}

std::vector<uint64_t> ProgressTracker::LearnerNodes() const { return {config.learners.begin(), config.learners.end()}; }

void ProgressTracker::RecordVote(uint64_t id, bool granted) { votes_.emplace(id, granted); }

std::tuple<int, int, VoteResult> ProgressTracker::TallyVotes() const {
  int granted = 0, rejected = 0;
  for (const auto& [id, pr] : progress) {
    if (pr.is_learner) continue;
    auto it = votes_.find(id);
    if (it == votes_.end()) continue;
    if (it->second) {
      ++granted;
    } else {
      ++rejected;
    }
  }
  return {granted, rejected, config.voters.Vote(votes_)};
}

}  // namespace cppetcd::raft
