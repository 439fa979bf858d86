#include "cppetcd/raft/raw_node.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "raft_core.h"

namespace cppetcd::raft {

bool IsEmptyHardState(const raftpb::HardState& hs) { return hs.term() == 0 && hs.vote() == 0 && hs.commit() == 0; }

bool IsEmptySnapshot(const raftpb::Snapshot& snap) { return snap.metadata().index() == 0; }

raftpb::ConfChangeV2 ToV2(const raftpb::ConfChange& cc) {
  raftpb::ConfChangeV2 v2;
  auto* c = v2.add_changes();
  c->set_type(cc.type());
  c->set_node_id(cc.node_id());
  v2.set_context(cc.context());
  return v2;
}

std::string DescribeConfChange(const raftpb::ConfChangeV2& cc) {
  std::vector<std::string> parts;
  for (const auto& c : cc.changes()) {
    const char* p = "?";
    switch (c.type()) {
      case raftpb::ConfChangeAddNode:
        p = "v";
        break;
      case raftpb::ConfChangeAddLearnerNode:
        p = "l";
        break;
      case raftpb::ConfChangeRemoveNode:
        p = "r";
        break;
      case raftpb::ConfChangeUpdateNode:
        p = "u";
        break;
      default:
        break;
    }
    parts.push_back(absl::StrCat(p, c.node_id()));
  }
  return absl::StrJoin(parts, " ");
}

absl::StatusOr<std::unique_ptr<RawNode>> RawNode::Create(const Config& cfg) {
  if (cfg.id == kNone) return absl::InvalidArgumentError("raft: cannot use none as id");
  if (cfg.storage == nullptr) return absl::InvalidArgumentError("raft: storage cannot be nil");
  if (cfg.heartbeat_tick <= 0) return absl::InvalidArgumentError("raft: heartbeat tick must be greater than 0");
  if (cfg.election_tick <= cfg.heartbeat_tick) {
    return absl::InvalidArgumentError("raft: election tick must be greater than heartbeat tick");
  }
  if (cfg.max_inflight_msgs <= 0) return absl::InvalidArgumentError("raft: max inflight messages must be greater than 0");
  if (cfg.read_only_option == ReadOnlyOption::kReadOnlyLeaseBased && !cfg.check_quorum) {
    return absl::InvalidArgumentError("raft: CheckQuorum must be enabled when ReadOnlyOption is ReadOnlyLeaseBased");
  }
  auto r = std::make_unique<Raft>(cfg);
  return std::unique_ptr<RawNode>(new RawNode(std::move(r)));
}

RawNode::RawNode(std::unique_ptr<Raft> r) : raft_(std::move(r)) {
  prev_soft_state_ = raft_->GetSoftState();
  prev_hard_state_ = raft_->GetHardState();
}

RawNode::~RawNode() = default;

absl::Status RawNode::Bootstrap(const std::vector<Peer>& peers) {
  if (peers.empty()) return absl::InvalidArgumentError("raft: must provide at least one peer to Bootstrap");
  auto last = raft_->log().LastIndex();
  if (last != 0) return absl::FailedPreconditionError("raft: can't bootstrap a nonempty Storage");
  // Nothing is persisted yet: the first Ready must carry the HardState.
  prev_hard_state_ = raftpb::HardState();
  raft_->BecomeFollower(1, kNone);
  std::vector<raftpb::Entry> ents;
  for (size_t i = 0; i < peers.size(); ++i) {
    raftpb::ConfChange cc;
    cc.set_type(raftpb::ConfChangeAddNode);
    cc.set_node_id(peers[i].id);
    cc.set_context(peers[i].context);
    raftpb::Entry e;
    e.set_type(raftpb::EntryConfChange);
    e.set_term(1);
    e.set_index(i + 1);
    e.set_data(cc.SerializeAsString());
    ents.push_back(std::move(e));
  }
  raft_->log().Append(ents);
  raft_->log().CommitTo(ents.size());
  // Apply the membership now so Campaign works once this Ready is handled;
  // the application applies the same entries again (idempotent).
  for (const auto& p : peers) {
    raftpb::ConfChange cc;
    cc.set_type(raftpb::ConfChangeAddNode);
    cc.set_node_id(p.id);
    raft_->ApplyConfChange(ToV2(cc));
  }
  return absl::OkStatus();
}

void RawNode::Tick() { raft_->Tick(); }

absl::Status RawNode::Campaign() {
  raftpb::Message m;
  m.set_type(raftpb::MsgHup);
  return raft_->Step(std::move(m));
}

absl::Status RawNode::Propose(std::string data) {
  raftpb::Message m;
  m.set_type(raftpb::MsgProp);
  m.set_from(raft_->id());
  m.add_entries()->set_data(std::move(data));
  return raft_->Step(std::move(m));
}

absl::Status RawNode::ProposeConfChange(const raftpb::ConfChange& cc) {
  raftpb::Message m;
  m.set_type(raftpb::MsgProp);
  m.set_from(raft_->id());
  auto* e = m.add_entries();
  e->set_type(raftpb::EntryConfChange);
  e->set_data(cc.SerializeAsString());
  return raft_->Step(std::move(m));
}

absl::Status RawNode::ProposeConfChange(const raftpb::ConfChangeV2& cc) {
  raftpb::Message m;
  m.set_type(raftpb::MsgProp);
  m.set_from(raft_->id());
  auto* e = m.add_entries();
  e->set_type(raftpb::EntryConfChangeV2);
  e->set_data(cc.SerializeAsString());
  return raft_->Step(std::move(m));
}

raftpb::ConfState RawNode::ApplyConfChange(const raftpb::ConfChangeV2& cc) { return raft_->ApplyConfChange(cc); }

raftpb::ConfState RawNode::ApplyConfChange(const raftpb::ConfChange& cc) { return raft_->ApplyConfChange(ToV2(cc)); }

absl::Status RawNode::Step(const raftpb::Message& m) {
  if (IsLocalMsg(m.type())) return ErrStepLocalMsg();
  if (absl::Status s = raft_->CheckPeerMessage(m); !s.ok()) return s;
  if (raft_->tracker().progress.count(m.from()) == 0 && IsResponseMsg(m.type())) return ErrStepPeerNotFound();
  return raft_->Step(m);
}

void RawNode::ReadIndex(std::string request_ctx) {
  raftpb::Message m;
  m.set_type(raftpb::MsgReadIndex);
  m.add_entries()->set_data(std::move(request_ctx));
  (void)raft_->Step(std::move(m));
}

void RawNode::TransferLeader(uint64_t transferee) {
  raftpb::Message m;
  m.set_type(raftpb::MsgTransferLeader);
  m.set_from(transferee);
  (void)raft_->Step(std::move(m));
}

bool RawNode::HasReady() const {
  const Raft& r = *raft_;
  if (!(r.GetSoftState() == prev_soft_state_)) return true;
  raftpb::HardState hs = r.GetHardState();
  if (!IsEmptyHardState(hs) &&
      (hs.term() != prev_hard_state_.term() || hs.vote() != prev_hard_state_.vote() ||
       hs.commit() != prev_hard_state_.commit())) {
    return true;
  }
  if (r.log().HasPendingSnapshot()) return true;
  if (!raft_->msgs().empty() || r.log().HasUnstableEntries() || r.log().HasNextEnts()) return true;
  if (!raft_->read_states().empty()) return true;
  return false;
}

Ready RawNode::GetReady() {
  Raft& r = *raft_;
  Ready rd;
  rd.entries = r.log().UnstableEntries();
  rd.committed_entries = r.log().NextEnts();
  rd.messages = std::move(r.msgs());
  r.msgs().clear();
  SoftState ss = r.GetSoftState();
  if (!(ss == prev_soft_state_)) {
    rd.soft_state = ss;
    prev_soft_state_ = ss;
  }
  raftpb::HardState hs = r.GetHardState();
  if (hs.term() != prev_hard_state_.term() || hs.vote() != prev_hard_state_.vote() ||
      hs.commit() != prev_hard_state_.commit()) {
    rd.hard_state = hs;
  }
  if (r.log().PendingSnapshot()) rd.snapshot = *r.log().PendingSnapshot();
  if (!r.read_states().empty()) {
    rd.read_states = std::move(r.read_states());
    r.read_states().clear();
  }
  rd.must_sync = !rd.entries.empty() || hs.term() != prev_hard_state_.term() || hs.vote() != prev_hard_state_.vote();
  return rd;
}

void RawNode::Advance(const Ready& rd) {
  if (!IsEmptyHardState(rd.hard_state)) prev_hard_state_ = rd.hard_state;
  raft_->Advance(rd);
}

Status RawNode::GetStatus() const {
  const Raft& r = *raft_;
  Status st;
  st.id = r.id();
  st.hard_state = r.GetHardState();
  st.soft_state = r.GetSoftState();
  st.applied = r.log().applied();
  st.lead_transferee = r.lead_transferee();
  st.conf_state = r.tracker().ConfState();
  if (r.state() == StateType::kLeader) {
    for (const auto& [id, pr] : r.tracker().progress) {
      PeerProgress p;
      p.match = pr.match;
      p.next = pr.next;
      p.state = pr.state;
      p.pending_snapshot = pr.pending_snapshot;
      p.recent_active = pr.recent_active;
      p.is_learner = pr.is_learner;
      p.inflight = pr.inflights.Count();
      st.progress[id] = p;
    }
  }
  return st;
}

void RawNode::ReportUnreachable(uint64_t id) {
  raftpb::Message m;
  m.set_type(raftpb::MsgUnreachable);
  m.set_from(id);
  (void)raft_->Step(std::move(m));
}

void RawNode::ReportSnapshot(uint64_t id, SnapshotStatus status) {
  raftpb::Message m;
  m.set_type(raftpb::MsgSnapStatus);
  m.set_from(id);
  m.set_reject(status == SnapshotStatus::kFailure);
  (void)raft_->Step(std::move(m));
}

}  // namespace cppetcd::raft
