#include "confchange.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace cppetcd::raft {

bool IsLeaveJoint(const raftpb::ConfChangeV2& cc) {
  return cc.transition() == raftpb::ConfChangeTransitionAuto && cc.changes_size() == 0;
}

bool UsesJoint(const raftpb::ConfChangeV2& cc, bool* auto_leave) {
  if (cc.transition() != raftpb::ConfChangeTransitionAuto || cc.changes_size() > 1) {
    *auto_leave = cc.transition() != raftpb::ConfChangeTransitionJointExplicit;
    return true;
  }
  *auto_leave = false;
  return false;
}

absl::Status CheckInvariants(const TrackerConfig& cfg, const ProgressMap& prs) {
  auto has = [&](uint64_t id) { return prs.count(id) > 0; };
  for (uint64_t id : cfg.voters.Ids()) {
    if (!has(id)) return absl::InternalError(absl::StrCat("no progress for voter ", id));
  }
  for (uint64_t id : cfg.learners) {
    if (!has(id)) return absl::InternalError(absl::StrCat("no progress for learner ", id));
    if (cfg.voters.outgoing.Contains(id)) return absl::InternalError(absl::StrCat(id, " is in learners and outgoing voters"));
    if (cfg.voters.incoming.Contains(id)) return absl::InternalError(absl::StrCat(id, " is in learners and voters"));
    if (!prs.at(id).is_learner) return absl::InternalError(absl::StrCat(id, " is a learner but not marked"));
  }
  for (uint64_t id : cfg.learners_next) {
    if (!has(id)) return absl::InternalError(absl::StrCat("no progress for learner_next ", id));
    if (!cfg.voters.outgoing.Contains(id)) return absl::InternalError(absl::StrCat(id, " is in learners_next but not outgoing"));
    if (prs.at(id).is_learner) return absl::InternalError(absl::StrCat(id, " is in learners_next but marked learner"));
  }
  for (uint64_t id : cfg.voters.Ids()) {
    if (prs.at(id).is_learner) return absl::InternalError(absl::StrCat("voter ", id, " marked learner"));
  }
  for (const auto& [id, pr] : prs) {
    if (!cfg.voters.Contains(id) && cfg.learners.count(id) == 0) {
      return absl::InternalError(absl::StrCat("progress for ", id, " who is neither voter nor learner"));
    }
  }
  if (!cfg.voters.IsJoint()) {
    if (!cfg.learners_next.empty()) return absl::InternalError("learners_next outside a joint config");
    if (cfg.auto_leave) return absl::InternalError("auto_leave outside a joint config");
  }
  return absl::OkStatus();
}

void Changer::InitProgress(TrackerConfig* cfg, ProgressMap* prs, uint64_t id, bool is_learner) const {
  if (is_learner) {
    cfg->learners.insert(id);
  } else {
    cfg->voters.incoming.mutable_ids().insert(id);
  }
  Progress pr;
  pr.inflights = Inflights(tracker_.max_inflight());
  pr.next = std::max<uint64_t>(last_index_, 1);
  pr.match = 0;
  pr.is_learner = is_learner;
  // A new peer counts as active so that CheckQuorum does not step the leader
  // down before it could hear from it.
  pr.recent_active = true;
  (*prs)[id] = std::move(pr);
}

void Changer::MakeVoter(TrackerConfig* cfg, ProgressMap* prs, uint64_t id) const {
  auto it = prs->find(id);
  if (it == prs->end()) {
    InitProgress(cfg, prs, id, false);
    return;
  }
  it->second.is_learner = false;
  cfg->learners.erase(id);
  cfg->learners_next.erase(id);
  cfg->voters.incoming.mutable_ids().insert(id);
}

void Changer::MakeLearner(TrackerConfig* cfg, ProgressMap* prs, uint64_t id) const {
  auto it = prs->find(id);
  if (it == prs->end()) {
    InitProgress(cfg, prs, id, true);
    return;
  }
  if (it->second.is_learner) return;
  Progress saved = it->second;
  Remove(cfg, prs, id);
  (*prs)[id] = std::move(saved);
  // A voter of the outgoing config stays a voter until the joint config is
  // left (thesis §4.3); it becomes a learner then.
  if (cfg->voters.outgoing.Contains(id)) {
    cfg->learners_next.insert(id);
  } else {
    (*prs)[id].is_learner = true;
    cfg->learners.insert(id);
  }
}

void Changer::Remove(TrackerConfig* cfg, ProgressMap* prs, uint64_t id) const {
  if (prs->count(id) == 0) return;
  cfg->voters.incoming.mutable_ids().erase(id);
  cfg->learners.erase(id);
  cfg->learners_next.erase(id);
  // Still needed while it votes in the outgoing config.
  if (!cfg->voters.outgoing.Contains(id)) prs->erase(id);
}

absl::Status Changer::Apply(TrackerConfig* cfg, ProgressMap* prs,
                            const std::vector<raftpb::ConfChangeSingle>& ccs) const {
  for (const auto& cc : ccs) {
    if (cc.node_id() == 0) continue;  // etcd ignores changes to node 0
    switch (cc.type()) {
      case raftpb::ConfChangeAddNode:
        MakeVoter(cfg, prs, cc.node_id());
        break;
      case raftpb::ConfChangeAddLearnerNode:
        MakeLearner(cfg, prs, cc.node_id());
        break;
      case raftpb::ConfChangeRemoveNode:
        Remove(cfg, prs, cc.node_id());
        break;
      case raftpb::ConfChangeUpdateNode:
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat("unexpected conf type ", cc.type()));
    }
  }
  if (cfg->voters.incoming.empty()) return absl::InvalidArgumentError("removed all voters");
  return absl::OkStatus();
}

absl::StatusOr<ConfigAndProgress> Changer::EnterJoint(bool auto_leave,
                                                      const std::vector<raftpb::ConfChangeSingle>& ccs) const {
  TrackerConfig cfg = tracker_.config;
  ProgressMap prs = tracker_.progress;
  if (auto s = CheckInvariants(cfg, prs); !s.ok()) return s;
  if (cfg.voters.IsJoint()) return absl::FailedPreconditionError("config is already joint");
  if (cfg.voters.incoming.empty()) return absl::FailedPreconditionError("can't make a zero-voter config joint");
  cfg.voters.outgoing = cfg.voters.incoming;
  if (auto s = Apply(&cfg, &prs, ccs); !s.ok()) return s;
  cfg.auto_leave = auto_leave;
  if (auto s = CheckInvariants(cfg, prs); !s.ok()) return s;
  return ConfigAndProgress{std::move(cfg), std::move(prs)};
}

absl::StatusOr<ConfigAndProgress> Changer::LeaveJoint() const {
  TrackerConfig cfg = tracker_.config;
  ProgressMap prs = tracker_.progress;
  if (auto s = CheckInvariants(cfg, prs); !s.ok()) return s;
  if (!cfg.voters.IsJoint()) return absl::FailedPreconditionError("can't leave a non-joint config");
  for (uint64_t id : cfg.learners_next) {
    cfg.learners.insert(id);
    prs[id].is_learner = true;
  }
  cfg.learners_next.clear();
  for (uint64_t id : cfg.voters.outgoing.ids()) {
    if (!cfg.voters.incoming.Contains(id) && cfg.learners.count(id) == 0) prs.erase(id);
  }
  cfg.voters.outgoing = MajorityConfig();
  cfg.auto_leave = false;
  if (auto s = CheckInvariants(cfg, prs); !s.ok()) return s;
  return ConfigAndProgress{std::move(cfg), std::move(prs)};
}

absl::StatusOr<ConfigAndProgress> Changer::Simple(const std::vector<raftpb::ConfChangeSingle>& ccs) const {
  TrackerConfig cfg = tracker_.config;
  ProgressMap prs = tracker_.progress;
  if (auto s = CheckInvariants(cfg, prs); !s.ok()) return s;
  if (cfg.voters.IsJoint()) return absl::FailedPreconditionError("can't apply simple config change in joint config");
  if (auto s = Apply(&cfg, &prs, ccs); !s.ok()) return s;
  // Changing more than one voter at once could let two disjoint majorities
  // exist (thesis §4.1).
  const auto& before = tracker_.config.voters.incoming.ids();
  const auto& after = cfg.voters.incoming.ids();
  size_t diff = 0;
  for (uint64_t id : before) diff += after.count(id) == 0;
  for (uint64_t id : after) diff += before.count(id) == 0;
  if (diff > 1) return absl::InvalidArgumentError("more than one voter changed without entering joint config");
  if (auto s = CheckInvariants(cfg, prs); !s.ok()) return s;
  return ConfigAndProgress{std::move(cfg), std::move(prs)};
}

absl::StatusOr<ConfigAndProgress> RestoreConfig(const raftpb::ConfState& cs, uint64_t last_index,
                                                int max_inflight) {
  TrackerConfig cfg;
  ProgressMap prs;
  auto add = [&](uint64_t id, bool learner) {
    if (prs.count(id)) return;
    Progress pr;
    pr.inflights = Inflights(max_inflight);
    pr.next = std::max<uint64_t>(last_index, 1);
    pr.is_learner = learner;
    pr.recent_active = true;
    prs[id] = std::move(pr);
  };
  for (uint64_t id : cs.voters()) {
    cfg.voters.incoming.mutable_ids().insert(id);
    add(id, false);
  }
  for (uint64_t id : cs.voters_outgoing()) {
    cfg.voters.outgoing.mutable_ids().insert(id);
    add(id, false);
  }
  for (uint64_t id : cs.learners()) {
    cfg.learners.insert(id);
    add(id, true);
  }
  for (uint64_t id : cs.learners_next()) cfg.learners_next.insert(id);
  cfg.auto_leave = cs.auto_leave() && cfg.voters.IsJoint();
  if (auto s = CheckInvariants(cfg, prs); !s.ok()) return s;
  return ConfigAndProgress{std::move(cfg), std::move(prs)};
}

}  // namespace cppetcd::raft
