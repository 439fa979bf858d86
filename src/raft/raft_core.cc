#include "raft_core.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "absl/strings/str_cat.h"
#include "confchange.h"
#include "cppetcd/raft/peer_message.h"
#include "cppetcd/util/log.h"

namespace cppetcd::raft {
namespace {

constexpr std::string_view kCampaignTransfer = "CampaignTransfer";

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t PayloadSize(const std::vector<raftpb::Entry>& es) {
  uint64_t s = 0;
  for (const auto& e : es) s += e.data().size();
  return s;
}

}  // namespace

bool IsLocalMsg(raftpb::MessageType t) {
  return t == raftpb::MsgHup || t == raftpb::MsgBeat || t == raftpb::MsgUnreachable || t == raftpb::MsgSnapStatus ||
         t == raftpb::MsgCheckQuorum;
}

bool IsResponseMsg(raftpb::MessageType t) {
  return t == raftpb::MsgAppResp || t == raftpb::MsgVoteResp || t == raftpb::MsgHeartbeatResp ||
         t == raftpb::MsgUnreachable || t == raftpb::MsgPreVoteResp;
}

raftpb::MessageType VoteRespMsgType(raftpb::MessageType t) {
  return t == raftpb::MsgVote ? raftpb::MsgVoteResp : raftpb::MsgPreVoteResp;
}

const char* StateTypeName(StateType s) {
  switch (s) {
    case StateType::kFollower:
      return "StateFollower";
    case StateType::kCandidate:
      return "StateCandidate";
    case StateType::kLeader:
      return "StateLeader";
    case StateType::kPreCandidate:
      return "StatePreCandidate";
  }
  return "?";
}

Raft::Raft(const Config& cfg)
    : id_(cfg.id),
      log_(cfg.storage, cfg.logger, cfg.max_committed_size_per_ready == 0 ? kNoLimit : cfg.max_committed_size_per_ready),
      max_msg_size_(cfg.max_size_per_msg),
      max_uncommitted_size_(cfg.max_uncommitted_entries_size == 0 ? kNoLimit : cfg.max_uncommitted_entries_size),
      prs_(cfg.max_inflight_msgs),
      read_only_(cfg.read_only_option),
      check_quorum_(cfg.check_quorum),
      pre_vote_(cfg.pre_vote),
      heartbeat_timeout_(cfg.heartbeat_tick),
      election_timeout_(cfg.election_tick),
      disable_proposal_forwarding_(cfg.disable_proposal_forwarding),
      // Mixing in the ID keeps nodes sharing a seed from timing out together.
      rng_state_(cfg.random_seed ^ (cfg.id * 0xd1b54a32d192ed03ULL)),
      logger_(cfg.logger) {
  auto st = cfg.storage->InitialState();
  if (!st.ok()) Fatal(absl::StrCat("raft: storage InitialState failed: ", st.status().ToString()));
  const auto& [hs, cs] = *st;
  auto restored = RestoreConfig(cs, log_.LastIndex(), prs_.max_inflight());
  if (!restored.ok()) Fatal(absl::StrCat("raft: cannot restore conf state: ", restored.status().ToString()));
  SwitchToConfig(std::move(restored->first), std::move(restored->second));
  if (!IsEmptyHardState(hs)) LoadState(hs);
  if (cfg.applied > 0) log_.AppliedTo(cfg.applied);
  BecomeFollower(term_, kNone);
  Info("newRaft", {{"id", id_},
                   {"term", term_},
                   {"commit", log_.committed()},
                   {"applied", log_.applied()},
                   {"last-index", log_.LastIndex()},
                   {"last-term", log_.LastTerm()},
                   {"conf", prs_.config.Describe()}});
}

void Raft::Info(std::string_view msg, util::LogFields fields) const {
  if (logger_ != nullptr) logger_->Info(msg, fields);
}

void Raft::Warn(std::string_view msg, util::LogFields fields) const {
  if (logger_ != nullptr) logger_->Warn(msg, fields);
}

void Raft::Fatal(const std::string& msg) const {
  if (logger_ != nullptr) logger_->Fatal(msg, {{"id", id_}, {"term", term_}});
  std::fprintf(stderr, "raft %llu: %s\n", static_cast<unsigned long long>(id_), msg.c_str());
  std::abort();
}

raftpb::HardState Raft::GetHardState() const {
  raftpb::HardState hs;
  hs.set_term(term_);
  hs.set_vote(vote_);
  hs.set_commit(log_.committed());
  return hs;
}

void Raft::LoadState(const raftpb::HardState& hs) {
  if (hs.commit() < log_.committed() || hs.commit() > log_.LastIndex()) {
    Fatal(absl::StrCat("raft: hard state commit ", hs.commit(), " is out of range [", log_.committed(), ", ",
                       log_.LastIndex(), "]"));
  }
  log_.CommitTo(hs.commit());
  term_ = hs.term();
  vote_ = hs.vote();
}

// ---- sending ----

void Raft::Send(raftpb::Message m) {
  if (m.from() == kNone) m.set_from(id_);
  if (m.type() == raftpb::MsgVote || m.type() == raftpb::MsgVoteResp || m.type() == raftpb::MsgPreVote ||
      m.type() == raftpb::MsgPreVoteResp) {
    // Vote messages carry the term they are about (a PreVote: term + 1).
    if (m.term() == 0) Fatal(absl::StrCat("raft: term should be set when sending ", m.type()));
  } else {
    if (m.term() != 0) Fatal(absl::StrCat("raft: term should not be set when sending ", m.type()));
    // Proposals and read requests are forwarded as local messages.
    if (m.type() != raftpb::MsgProp && m.type() != raftpb::MsgReadIndex) m.set_term(term_);
  }
  msgs_.push_back(std::move(m));
}

bool Raft::MaybeSendAppend(uint64_t to, bool send_if_empty) {
  auto it = prs_.progress.find(to);
  if (it == prs_.progress.end()) return false;
  Progress& pr = it->second;
  if (pr.IsPaused()) return false;
  raftpb::Message m;
  m.set_to(to);
  auto term = log_.Term(pr.next - 1);
  auto ents = log_.Entries(pr.next, max_msg_size_);
  if (ents.ok() && ents->empty() && !send_if_empty) return false;
  if (!term.ok() || !ents.ok()) {
    // The entries the follower needs are compacted: send a snapshot (§7).
    if (!pr.recent_active) return false;
    auto snap = log_.Snapshot();
    if (!snap.ok()) {
      if (IsSnapshotTemporarilyUnavailable(snap.status())) return false;
      Fatal(absl::StrCat("raft: snapshot failed: ", snap.status().ToString()));
    }
    if (IsEmptySnapshot(*snap)) Fatal("raft: need non-empty snapshot");
    m.set_type(raftpb::MsgSnap);
    uint64_t sindex = snap->metadata().index();
    *m.mutable_snapshot() = *std::move(snap);
    pr.BecomeSnapshot(sindex);
    Info("sent snapshot", {{"from", id_}, {"to", to}, {"term", term_}, {"index", sindex}});
  } else {
    m.set_type(raftpb::MsgApp);
    m.set_index(pr.next - 1);
    m.set_log_term(*term);
    m.set_commit(log_.committed());
    size_t n = ents->size();
    for (auto& e : *ents) *m.add_entries() = std::move(e);
    if (n != 0) {
      switch (pr.state) {
        case ProgressStateType::kReplicate: {
          uint64_t last = m.entries(static_cast<int>(n - 1)).index();
          pr.OptimisticUpdate(last);
          pr.inflights.Add(last);
          break;
        }
        case ProgressStateType::kProbe:
          pr.probe_sent = true;
          break;
        case ProgressStateType::kSnapshot:
          Fatal("raft: sending append in snapshot state");
      }
    }
  }
  Send(std::move(m));
  return true;
}

void Raft::SendHeartbeat(uint64_t to, const std::string& ctx) {
  // A follower might not have the leader's whole log yet: commit at most its
  // match so it never commits past what it holds.
  uint64_t commit = std::min(prs_.progress.at(to).match, log_.committed());
  raftpb::Message m;
  m.set_to(to);
  m.set_type(raftpb::MsgHeartbeat);
  m.set_commit(commit);
  m.set_context(ctx);
  Send(std::move(m));
}

void Raft::BcastAppend() {
  for (const auto& [id, pr] : prs_.progress) {
    if (id != id_) SendAppend(id);
  }
}

void Raft::BcastHeartbeat() { BcastHeartbeatWithCtx(read_only_.LastPendingRequestCtx()); }

void Raft::BcastHeartbeatWithCtx(const std::string& ctx) {
  std::vector<uint64_t> ids;
  for (const auto& [id, pr] : prs_.progress) {
    if (id != id_) ids.push_back(id);
  }
  for (uint64_t id : ids) SendHeartbeat(id, ctx);
}

void Raft::SendTimeoutNow(uint64_t to) {
  raftpb::Message m;
  m.set_to(to);
  m.set_type(raftpb::MsgTimeoutNow);
  Send(std::move(m));
}

// ---- log ----

bool Raft::MaybeCommit() {
  // §5.4.2: only entries of the current term are committed by counting
  // replicas; earlier ones are committed indirectly (MaybeCommit checks term).
  return log_.MaybeCommit(prs_.Committed(), term_);
}

bool Raft::AppendEntry(std::vector<raftpb::Entry> es) {
  uint64_t li = log_.LastIndex();
  for (size_t i = 0; i < es.size(); ++i) {
    es[i].set_term(term_);
    es[i].set_index(li + 1 + i);
  }
  if (!IncreaseUncommittedSize(es)) {
    Warn("appending new entries to log would exceed uncommitted entry size limit; dropping proposal",
         {{"term", term_}, {"index", li}});
    return false;
  }
  log_.Append(es);
  // The leader's own acknowledgement counts only once the entries are
  // persisted (Advance): counting an unpersisted copy could commit an entry
  // that a crash then loses (thesis §10.2.1).
  return true;
}

bool Raft::IncreaseUncommittedSize(const std::vector<raftpb::Entry>& es) {
  uint64_t s = PayloadSize(es);
  // An empty payload (leader's empty entry, auto-leave) is always allowed,
  // and so is one proposal of any size when nothing is uncommitted.
  if (uncommitted_size_ > 0 && s > 0 && uncommitted_size_ + s > max_uncommitted_size_) return false;
  uncommitted_size_ += s;
  return true;
}

void Raft::ReduceUncommittedSize(const std::vector<raftpb::Entry>& es) {
  if (state_ != StateType::kLeader) return;
  uint64_t s = PayloadSize(es);
  uncommitted_size_ = s > uncommitted_size_ ? 0 : uncommitted_size_ - s;
}

bool Raft::CommittedEntryInCurrentTerm() const { return log_.ZeroTermOnErr(log_.committed()) == term_; }

// ---- timers and state transitions ----

void Raft::Tick() {
  if (state_ == StateType::kLeader) {
    TickHeartbeat();
  } else {
    TickElection();
  }
}

void Raft::TickElection() {
  ++election_elapsed_;
  if (Promotable() && PastElectionTimeout()) {
    election_elapsed_ = 0;
    raftpb::Message m;
    m.set_from(id_);
    m.set_type(raftpb::MsgHup);
    (void)Step(std::move(m));
  }
}

void Raft::TickHeartbeat() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= election_timeout_) {
    election_elapsed_ = 0;
    if (check_quorum_) {
      raftpb::Message m;
      m.set_from(id_);
      m.set_type(raftpb::MsgCheckQuorum);
      (void)Step(std::move(m));
    }
    // A transfer not done within an election timeout is abandoned (§3.10).
    if (state_ == StateType::kLeader && lead_transferee_ != kNone) AbortLeaderTransfer();
  }
  if (state_ != StateType::kLeader) return;
  MaybeHandOver();
  if (state_ != StateType::kLeader) return;
  if (heartbeat_elapsed_ >= heartbeat_timeout_) {
    heartbeat_elapsed_ = 0;
    raftpb::Message m;
    m.set_from(id_);
    m.set_type(raftpb::MsgBeat);
    (void)Step(std::move(m));
  }
}

void Raft::ResetRandomizedElectionTimeout() {
  randomized_election_timeout_ =
      election_timeout_ + static_cast<int>(SplitMix64(&rng_state_) % static_cast<uint64_t>(election_timeout_));
}

void Raft::Reset(uint64_t term) {
  if (term_ != term) {
    term_ = term;
    vote_ = kNone;
  }
  lead_ = kNone;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
  AbortLeaderTransfer();
  prs_.ResetVotes();
  uint64_t last = log_.LastIndex();
  for (auto& [id, pr] : prs_.progress) {
    bool learner = pr.is_learner;
    pr = Progress();
    pr.inflights = Inflights(prs_.max_inflight());
    pr.next = last + 1;
    pr.is_learner = learner;
    if (id == id_) pr.match = log_.StableLastIndex();
  }
  pending_conf_index_ = 0;
  uncommitted_size_ = 0;
  read_only_.Reset();
  pending_read_index_messages_.clear();
}

bool Raft::Promotable() const {
  auto it = prs_.progress.find(id_);
  return it != prs_.progress.end() && !it->second.is_learner && !log_.HasPendingSnapshot();
}

void Raft::BecomeFollower(uint64_t term, uint64_t lead) {
  Reset(term);
  lead_ = lead;
  state_ = StateType::kFollower;
  Info("became follower", {{"id", id_}, {"term", term_}, {"lead", lead}});
}

void Raft::BecomeCandidate() {
  if (state_ == StateType::kLeader) Fatal("raft: invalid transition [leader -> candidate]");
  Reset(term_ + 1);
  vote_ = id_;
  state_ = StateType::kCandidate;
  Info("became candidate", {{"id", id_}, {"term", term_}});
}

void Raft::BecomePreCandidate() {
  if (state_ == StateType::kLeader) Fatal("raft: invalid transition [leader -> pre-candidate]");
  // PreVote changes neither term nor vote (thesis §9.6).
  prs_.ResetVotes();
  lead_ = kNone;
  state_ = StateType::kPreCandidate;
  Info("became pre-candidate", {{"id", id_}, {"term", term_}});
}

void Raft::BecomeLeader() {
  if (state_ == StateType::kFollower) Fatal("raft: invalid transition [follower -> leader]");
  Reset(term_);
  lead_ = id_;
  state_ = StateType::kLeader;
  prs_.progress.at(id_).BecomeReplicate();
  // Conservatively treat every unapplied entry as a possible conf change.
  pending_conf_index_ = log_.LastIndex();
  // An empty entry of the new term lets earlier entries commit (§5.4.2,
  // §8) and enables ReadIndex (thesis §6.4).
  std::vector<raftpb::Entry> empty(1);
  if (!AppendEntry(empty)) Fatal("raft: empty entry was dropped");
  // The empty entry does not count against the uncommitted-size limit.
  ReduceUncommittedSize(empty);
  Info("became leader", {{"id", id_}, {"term", term_}, {"index", log_.LastIndex()}});
}

void Raft::Hup(CampaignType t) {
  if (state_ == StateType::kLeader) return;
  if (!Promotable()) {
    Warn("is unpromotable and can not campaign", {{"id", id_}, {"term", term_}});
    return;
  }
  // A node that has committed but unapplied conf changes may not know its
  // own membership yet; it waits until they are applied.
  auto ents = log_.Slice(log_.applied() + 1, log_.committed() + 1, kNoLimit);
  if (!ents.ok()) Fatal(absl::StrCat("raft: unexpected error getting unapplied entries: ", ents.status().ToString()));
  for (const auto& e : *ents) {
    if (e.type() == raftpb::EntryConfChange || e.type() == raftpb::EntryConfChangeV2) {
      Warn("cannot campaign since there are pending configuration changes to apply",
           {{"id", id_}, {"term", term_}, {"index", e.index()}});
      return;
    }
  }
  Info("starting a new election", {{"id", id_}, {"term", term_}});
  Campaign(t);
}

void Raft::Campaign(CampaignType t) {
  if (!Promotable()) return;
  uint64_t term;
  raftpb::MessageType vote_msg;
  if (t == CampaignType::kPreElection) {
    BecomePreCandidate();
    vote_msg = raftpb::MsgPreVote;
    // PreVote asks about the next term without incrementing ours.
    term = term_ + 1;
  } else {
    BecomeCandidate();
    vote_msg = raftpb::MsgVote;
    term = term_;
  }
  if (Poll(id_, VoteRespMsgType(vote_msg), true) == VoteResult::kWon) {
    // A single voter wins at once.
    if (t == CampaignType::kPreElection) {
      Campaign(CampaignType::kElection);
    } else {
      BecomeLeader();
    }
    return;
  }
  for (uint64_t id : prs_.VoterNodes()) {
    if (id == id_) continue;
    raftpb::Message m;
    m.set_term(term);
    m.set_to(id);
    m.set_type(vote_msg);
    m.set_index(log_.LastIndex());
    m.set_log_term(log_.LastTerm());
    if (t == CampaignType::kTransfer) m.set_context(std::string(kCampaignTransfer));
    Send(std::move(m));
  }
}

VoteResult Raft::Poll(uint64_t id, raftpb::MessageType t, bool granted) {
  prs_.RecordVote(id, granted);
  auto [gr, rj, res] = prs_.TallyVotes();
  (void)t;
  (void)gr;
  (void)rj;
  return res;
}

// ---- Messages from peers ----

absl::Status Raft::CheckPeerMessage(const raftpb::Message& m) const {
  const raftpb::MessageType t = m.type();
  if (m.from() == kNone || (m.from() == id_ && t != raftpb::MsgTransferLeader)) {
    return ErrInvalidPeerMessage(absl::StrCat("sender ", m.from()));
  }
  // Proposals and read requests are forwarded without a term (Send); every
  // other message carries one: a term-0 one would be taken as local.
  const bool termless = t == raftpb::MsgProp || t == raftpb::MsgReadIndex;
  if (termless != (m.term() == 0)) {
    return ErrInvalidPeerMessage(absl::StrCat("term ", m.term(), " on message type ", t));
  }
  if (t == raftpb::MsgProp && m.entries_size() == 0) return ErrInvalidPeerMessage("empty proposal");
  if (t == raftpb::MsgApp) {
    // Entries follow m.index() one by one, with terms that do not go down,
    // from at least m.log_term() up to at most the sender's term.
    uint64_t prev_term = m.log_term();
    for (int i = 0; i < m.entries_size(); ++i) {
      const raftpb::Entry& e = m.entries(i);
      if (m.index() > std::numeric_limits<uint64_t>::max() - 1 - static_cast<uint64_t>(i) ||
          e.index() != m.index() + 1 + static_cast<uint64_t>(i)) {
        return ErrInvalidPeerMessage(
            absl::StrCat("entry ", i, " has index ", e.index(), " after index ", m.index()));
      }
      if (e.term() < prev_term || e.term() > m.term()) {
        return ErrInvalidPeerMessage(absl::StrCat("entry ", e.index(), " has term ", e.term(),
                                                  " (previous ", prev_term, ", message term ",
                                                  m.term(), ")"));
      }
      prev_term = e.term();
    }
    if (m.log_term() > m.term()) {
      return ErrInvalidPeerMessage(absl::StrCat("log term ", m.log_term(), " above term ", m.term()));
    }
  }
  if (m.term() < term_) return absl::OkStatus();  // stale: Step only answers it
  switch (t) {
    case raftpb::MsgHeartbeat:
      // A leader sends min(match, committed) (match <= our last index).
      if (m.commit() > log_.LastIndex()) {
        return ErrInvalidPeerMessage(absl::StrCat("heartbeat commit ", m.commit(),
                                                  " past the last index ", log_.LastIndex()));
      }
      break;
    case raftpb::MsgAppResp:
      // Only the leader of this term uses it; it acknowledges what we sent.
      if (state_ == StateType::kLeader && m.term() == term_ && !m.reject() &&
          m.index() > log_.LastIndex()) {
        return ErrInvalidPeerMessage(absl::StrCat("append response index ", m.index(),
                                                  " past the last index ", log_.LastIndex()));
      }
      break;
    case raftpb::MsgSnap: {
      const raftpb::SnapshotMetadata& md = m.snapshot().metadata();
      if (md.index() == 0 || md.term() == 0 || md.term() > m.term()) {
        return ErrInvalidPeerMessage(absl::StrCat("snapshot at index ", md.index(), " term ",
                                                  md.term(), " in a message of term ", m.term()));
      }
      if (md.conf_state().voters_size() == 0) {
        return ErrInvalidPeerMessage("snapshot without voters");
      }
      if (md.index() > log_.committed()) {
        auto restored = RestoreConfig(md.conf_state(), md.index(), prs_.max_inflight());
        if (!restored.ok()) {
          return ErrInvalidPeerMessage(
              absl::StrCat("snapshot conf state: ", restored.status().message()));
        }
      }
      break;
    }
    default:
      break;
  }
  return absl::OkStatus();
}

// ---- Step ----

absl::Status Raft::Step(raftpb::Message m) {
  if (m.term() == 0) {
    // Local message.
  } else if (m.term() > term_) {
    if (m.type() == raftpb::MsgVote || m.type() == raftpb::MsgPreVote) {
      bool force = m.context() == kCampaignTransfer;
      bool in_lease = check_quorum_ && lead_ != kNone && election_elapsed_ < election_timeout_;
      if (!force && in_lease) {
        // Leader lease (thesis §4.2.3): while we hear from a leader, a vote
        // request must not disrupt it; neither term nor vote changes.
        Info("ignored vote request within lease",
             {{"id", id_}, {"term", term_}, {"from", m.from()}, {"index", m.index()}});
        return absl::OkStatus();
      }
    }
    if (m.type() == raftpb::MsgPreVote) {
      // A PreVote never changes our term.
    } else if (m.type() == raftpb::MsgPreVoteResp && !m.reject()) {
      // Granted pre-votes carry the future term we asked about; the term is
      // bumped only once a quorum granted them.
    } else {
      Info("received message with higher term",
           {{"id", id_}, {"term", term_}, {"from", m.from()}, {"msg-term", m.term()}});
      if (m.type() == raftpb::MsgApp || m.type() == raftpb::MsgHeartbeat || m.type() == raftpb::MsgSnap) {
        BecomeFollower(m.term(), m.from());
      } else {
        BecomeFollower(m.term(), kNone);
      }
    }
  } else if (m.term() < term_) {
    if ((check_quorum_ || pre_vote_) && (m.type() == raftpb::MsgHeartbeat || m.type() == raftpb::MsgApp)) {
      // A stale leader (e.g. after a partition) keeps sending: tell it our
      // term so it steps down. Without this, with CheckQuorum/PreVote we would
      // never bump its term and it could stay stuck (thesis §9.6).
      raftpb::Message resp;
      resp.set_to(m.from());
      resp.set_type(raftpb::MsgAppResp);
      Send(std::move(resp));
    } else if (m.type() == raftpb::MsgPreVote) {
      // Reject so that the pre-candidate learns our term.
      raftpb::Message resp;
      resp.set_to(m.from());
      resp.set_term(term_);
      resp.set_type(raftpb::MsgPreVoteResp);
      resp.set_reject(true);
      Send(std::move(resp));
    }
    return absl::OkStatus();
  }

  switch (m.type()) {
    case raftpb::MsgHup:
      if (pre_vote_) {
        Hup(CampaignType::kPreElection);
      } else if (m.context() == kCampaignTransfer) {
        Hup(CampaignType::kTransfer);
      } else {
        Hup(CampaignType::kElection);
      }
      return absl::OkStatus();
    case raftpb::MsgVote:
    case raftpb::MsgPreVote: {
      // §5.2, §5.4.1: grant if we have not voted for someone else in this
      // term (a repeated request gets the same answer), do not know a leader,
      // or it is a PreVote for a later term; and the candidate's log is at
      // least as up to date as ours.
      bool can_vote = vote_ == m.from() || (vote_ == kNone && lead_ == kNone) ||
                      (m.type() == raftpb::MsgPreVote && m.term() > term_);
      raftpb::Message resp;
      resp.set_to(m.from());
      resp.set_type(VoteRespMsgType(m.type()));
      if (can_vote && log_.IsUpToDate(m.index(), m.log_term())) {
        Info("cast vote", {{"id", id_}, {"term", term_}, {"to", m.from()}, {"index", m.index()}});
        // Answer with the candidate's term: a pre-candidate's future term.
        resp.set_term(m.term());
        Send(std::move(resp));
        if (m.type() == raftpb::MsgVote) {
          election_elapsed_ = 0;
          vote_ = m.from();
        }
      } else {
        Info("rejected vote", {{"id", id_}, {"term", term_}, {"to", m.from()}, {"index", m.index()}});
        resp.set_term(term_);
        resp.set_reject(true);
        Send(std::move(resp));
      }
      return absl::OkStatus();
    }
    default:
      break;
  }
  switch (state_) {
    case StateType::kLeader:
      return StepLeader(m);
    case StateType::kCandidate:
    case StateType::kPreCandidate:
      return StepCandidate(m);
    case StateType::kFollower:
      return StepFollower(m);
  }
  return absl::OkStatus();
}

absl::Status Raft::StepLeader(raftpb::Message& m) {
  switch (m.type()) {
    case raftpb::MsgBeat:
      BcastHeartbeat();
      return absl::OkStatus();
    case raftpb::MsgCheckQuorum: {
      if (auto it = prs_.progress.find(id_); it != prs_.progress.end()) it->second.recent_active = true;
      if (!prs_.QuorumActive()) {
        Warn("stepped down to follower since quorum is not active", {{"id", id_}, {"term", term_}});
        BecomeFollower(term_, kNone);
      }
      for (auto& [id, pr] : prs_.progress) {
        if (id != id_) pr.recent_active = false;
      }
      return absl::OkStatus();
    }
    case raftpb::MsgProp: {
      if (m.entries_size() == 0) Fatal("raft: stepped empty MsgProp");
      // A leader removed from the voters (a lame duck) takes no proposals.
      if (!prs_.config.voters.Contains(id_)) return ErrProposalDropped();
      if (lead_transferee_ != kNone) return ErrProposalDropped();  // §3.10
      for (int i = 0; i < m.entries_size(); ++i) {
        raftpb::Entry* e = m.mutable_entries(i);
        raftpb::ConfChangeV2 cc;
        bool is_cc = false;
        if (e->type() == raftpb::EntryConfChange) {
          raftpb::ConfChange v1;
          if (!v1.ParseFromString(e->data())) return absl::InvalidArgumentError("raft: bad ConfChange");
          cc = ToV2(v1);
          is_cc = true;
        } else if (e->type() == raftpb::EntryConfChangeV2) {
          if (!cc.ParseFromString(e->data())) return absl::InvalidArgumentError("raft: bad ConfChangeV2");
          is_cc = true;
        }
        if (!is_cc) continue;
        bool already_pending = pending_conf_index_ > log_.applied();
        bool already_joint = prs_.config.voters.IsJoint();
        bool wants_leave_joint = cc.changes_size() == 0;
        const char* refused = nullptr;
        if (already_pending) {
          refused = "possible unapplied conf change";
        } else if (already_joint && !wants_leave_joint) {
          refused = "must transition out of joint config first";
        } else if (!already_joint && wants_leave_joint) {
          refused = "not in joint state; refusing empty conf change";
        }
        if (refused != nullptr) {
          // Thesis §4.1: one change at a time. The entry is kept (so index
          // accounting stays simple) but neutralised into an empty normal one.
          Info(refused, {{"id", id_}, {"term", term_}, {"index", pending_conf_index_}, {"applied", log_.applied()}});
          *e = raftpb::Entry();
        } else {
          pending_conf_index_ = log_.LastIndex() + static_cast<uint64_t>(i) + 1;
        }
      }
      std::vector<raftpb::Entry> es(m.entries().begin(), m.entries().end());
      if (!AppendEntry(std::move(es))) return ErrProposalDropped();
      BcastAppend();
      return absl::OkStatus();
    }
    case raftpb::MsgReadIndex:
      HandleReadIndex(m);
      return absl::OkStatus();
    default:
      break;
  }

  auto it = prs_.progress.find(m.from());
  if (it == prs_.progress.end()) return absl::OkStatus();
  Progress& pr = it->second;
  switch (m.type()) {
    case raftpb::MsgAppResp: {
      pr.recent_active = true;
      if (m.reject()) {
        // Fast back-tracking: the follower hints (reject_hint, log_term) at
        // the last entry it may share with us; skip all entries of terms
        // above log_term (§5.3, the "optimisation" paragraph).
        uint64_t next_probe = m.reject_hint();
        if (m.log_term() > 0) next_probe = log_.FindConflictByTerm(m.reject_hint(), m.log_term());
        if (pr.MaybeDecrTo(m.index(), next_probe)) {
          if (pr.state == ProgressStateType::kReplicate) pr.BecomeProbe();
          SendAppend(m.from());
        }
      } else {
        bool old_paused = pr.IsPaused();
        if (pr.MaybeUpdate(m.index())) {
          if (pr.state == ProgressStateType::kProbe) {
            pr.BecomeReplicate();
          } else if (pr.state == ProgressStateType::kSnapshot && pr.match >= pr.pending_snapshot) {
            pr.BecomeProbe();
            pr.BecomeReplicate();
          } else if (pr.state == ProgressStateType::kReplicate) {
            pr.inflights.FreeLE(m.index());
          }
          if (MaybeCommit()) {
            ReleasePendingReadIndexMessages();
            BcastAppend();
          } else if (old_paused) {
            SendAppend(m.from());
          }
          // More entries may fit in the window now.
          while (MaybeSendAppend(m.from(), false)) {
          }
          MaybeHandOver();
          auto pit = prs_.progress.find(m.from());
          if (pit != prs_.progress.end() && m.from() == lead_transferee_ && pit->second.match == log_.LastIndex()) {
            Info("sent MsgTimeoutNow after log caught up", {{"id", id_}, {"term", term_}, {"to", m.from()}});
            SendTimeoutNow(m.from());
          }
        }
      }
      return absl::OkStatus();
    }
    case raftpb::MsgHeartbeatResp: {
      pr.recent_active = true;
      pr.probe_sent = false;
      // Free one slot so a full window can make progress.
      if (pr.state == ProgressStateType::kReplicate && pr.inflights.Full()) pr.inflights.FreeFirstOne();
      if (pr.match < log_.LastIndex()) SendAppend(m.from());
      if (read_only_.option() != ReadOnlyOption::kReadOnlySafe || m.context().empty()) return absl::OkStatus();
      const auto* acks = read_only_.RecvAck(m.from(), m.context());
      if (acks == nullptr || prs_.config.voters.Vote(*acks) != VoteResult::kWon) return absl::OkStatus();
      for (auto& rs : read_only_.Advance(m.context())) RespondToReadIndex(rs.req, rs.index);
      return absl::OkStatus();
    }
    case raftpb::MsgSnapStatus:
      if (pr.state != ProgressStateType::kSnapshot) return absl::OkStatus();
      if (m.reject()) {
        // Forget the snapshot so probing does not start past it.
        pr.pending_snapshot = 0;
      }
      pr.BecomeProbe();
      // Wait for the MsgAppResp (or the next heartbeat) before sending more.
      pr.probe_sent = true;
      return absl::OkStatus();
    case raftpb::MsgUnreachable:
      // In replicate state a lost MsgApp would stall the pipeline: re-probe.
      if (pr.state == ProgressStateType::kReplicate) pr.BecomeProbe();
      return absl::OkStatus();
    case raftpb::MsgTransferLeader: {
      if (pr.is_learner) return absl::OkStatus();
      uint64_t transferee = m.from();
      if (lead_transferee_ != kNone) {
        if (lead_transferee_ == transferee) return absl::OkStatus();
        AbortLeaderTransfer();
      }
      if (transferee == id_) return absl::OkStatus();
      Info("starts to transfer leadership", {{"id", id_}, {"term", term_}, {"to", transferee}});
      // The transfer must finish within an election timeout.
      election_elapsed_ = 0;
      lead_transferee_ = transferee;
      if (pr.match == log_.LastIndex()) {
        SendTimeoutNow(transferee);
      } else {
        SendAppend(transferee);
      }
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();
  }
}

void Raft::MaybeHandOver() {
  if (state_ != StateType::kLeader || lead_transferee_ != kNone) return;
  if (prs_.config.voters.Contains(id_)) return;
  uint64_t best = kNone, best_match = 0;
  for (uint64_t id : prs_.VoterNodes()) {
    auto it = prs_.progress.find(id);
    if (it != prs_.progress.end() && it->second.match > best_match) {
      best = id;
      best_match = it->second.match;
    }
  }
  if (best == kNone || best_match != log_.LastIndex()) return;
  Info("removed leader transfers leadership and steps down", {{"id", id_}, {"term", term_}, {"to", best}});
  SendTimeoutNow(best);
  // The new leader will not talk to a non-member, so waiting for its term
  // would leave this node a leader forever. If MsgTimeoutNow is lost, the
  // voters time out and elect a leader (the log they need is on them).
  BecomeFollower(term_, kNone);
}

void Raft::RespondToReadIndex(const raftpb::Message& req, uint64_t index) {
  if (req.from() == kNone || req.from() == id_) {
    read_states_.push_back(ReadState{index, req.entries(0).data()});
    return;
  }
  raftpb::Message resp;
  resp.set_to(req.from());
  resp.set_type(raftpb::MsgReadIndexResp);
  resp.set_index(index);
  *resp.mutable_entries() = req.entries();
  Send(std::move(resp));
}

void Raft::HandleReadIndex(const raftpb::Message& m) {
  if (m.entries_size() != 1) return;
  // Thesis §6.4 step 1: the leader's commit index is only known to be the
  // cluster's once it committed an entry of its own term (even a single
  // voter: it may have just taken over with a stale commit index). Hold the
  // request until then.
  if (!CommittedEntryInCurrentTerm()) {
    pending_read_index_messages_.push_back(m);
    return;
  }
  if (prs_.IsSingleton() && prs_.config.voters.Contains(id_)) {
    // This leader is the only voter: no one else can have a newer leader.
    RespondToReadIndex(m, log_.committed());
    return;
  }
  switch (read_only_.option()) {
    case ReadOnlyOption::kReadOnlySafe:
      // Steps 2-3: record the commit index, then confirm leadership with a
      // heartbeat round to a quorum.
      read_only_.AddRequest(log_.committed(), m);
      read_only_.RecvAck(id_, m.entries(0).data());
      BcastHeartbeatWithCtx(m.entries(0).data());
      break;
    case ReadOnlyOption::kReadOnlyLeaseBased:
      RespondToReadIndex(m, log_.committed());
      break;
  }
}

void Raft::ReleasePendingReadIndexMessages() {
  if (pending_read_index_messages_.empty() || !CommittedEntryInCurrentTerm()) return;
  auto msgs = std::move(pending_read_index_messages_);
  pending_read_index_messages_.clear();
  for (const auto& m : msgs) HandleReadIndex(m);
}

absl::Status Raft::StepCandidate(raftpb::Message& m) {
  raftpb::MessageType my_resp = state_ == StateType::kPreCandidate ? raftpb::MsgPreVoteResp : raftpb::MsgVoteResp;
  switch (m.type()) {
    case raftpb::MsgProp:
      Info("no leader; dropping proposal", {{"id", id_}, {"term", term_}});
      return ErrProposalDropped();
    case raftpb::MsgApp:
      BecomeFollower(m.term(), m.from());  // m.term() == term_: a leader exists
      HandleAppendEntries(m);
      return absl::OkStatus();
    case raftpb::MsgHeartbeat:
      BecomeFollower(m.term(), m.from());
      HandleHeartbeat(m);
      return absl::OkStatus();
    case raftpb::MsgSnap:
      BecomeFollower(m.term(), m.from());
      HandleSnapshot(m);
      return absl::OkStatus();
    default:
      break;
  }
  if (m.type() == my_resp) {
    VoteResult res = Poll(m.from(), m.type(), !m.reject());
    if (res == VoteResult::kWon) {
      if (!Promotable()) {
        BecomeFollower(term_, kNone);
      } else if (state_ == StateType::kPreCandidate) {
        Campaign(CampaignType::kElection);
      } else {
        BecomeLeader();
        BcastAppend();
      }
    } else if (res == VoteResult::kLost) {
      // A rejected pre-vote's term may be higher; keep ours.
      BecomeFollower(term_, kNone);
    }
  }
  return absl::OkStatus();
}

absl::Status Raft::StepFollower(raftpb::Message& m) {
  switch (m.type()) {
    case raftpb::MsgProp:
      if (lead_ == kNone) {
        Info("no leader; dropping proposal", {{"id", id_}, {"term", term_}});
        return ErrProposalDropped();
      }
      if (disable_proposal_forwarding_) return ErrProposalDropped();
      m.set_to(lead_);
      Send(m);
      return absl::OkStatus();
    case raftpb::MsgApp:
      election_elapsed_ = 0;
      lead_ = m.from();
      HandleAppendEntries(m);
      return absl::OkStatus();
    case raftpb::MsgHeartbeat:
      election_elapsed_ = 0;
      lead_ = m.from();
      HandleHeartbeat(m);
      return absl::OkStatus();
    case raftpb::MsgSnap:
      election_elapsed_ = 0;
      lead_ = m.from();
      HandleSnapshot(m);
      return absl::OkStatus();
    case raftpb::MsgTransferLeader:
      // Forward a local request only: one from a peer (it carries a term)
      // was meant for a leader that has since stepped down, and Send
      // refuses a term on a forwarded message.
      if (lead_ == kNone || m.term() != 0) return absl::OkStatus();
      m.set_to(lead_);
      Send(m);
      return absl::OkStatus();
    case raftpb::MsgTimeoutNow:
      // Leader transfer (§3.10): campaign at once, without PreVote and
      // overriding the lease; the old leader asked for it.
      if (Promotable()) {
        Info("received MsgTimeoutNow; starting election", {{"id", id_}, {"term", term_}, {"from", m.from()}});
        Campaign(CampaignType::kTransfer);
      }
      return absl::OkStatus();
    case raftpb::MsgReadIndex:
      if (lead_ == kNone) return absl::OkStatus();
      m.set_to(lead_);
      Send(m);
      return absl::OkStatus();
    case raftpb::MsgReadIndexResp:
      if (m.entries_size() != 1) return absl::OkStatus();
      read_states_.push_back(ReadState{m.index(), m.entries(0).data()});
      return absl::OkStatus();
    default:
      return absl::OkStatus();
  }
}

void Raft::HandleAppendEntries(const raftpb::Message& m) {
  raftpb::Message resp;
  resp.set_to(m.from());
  resp.set_type(raftpb::MsgAppResp);
  if (m.index() < log_.committed()) {
    resp.set_index(log_.committed());
    Send(std::move(resp));
    return;
  }
  std::vector<raftpb::Entry> ents(m.entries().begin(), m.entries().end());
  if (auto last = log_.MaybeAppend(m.index(), m.log_term(), m.commit(), ents)) {
    resp.set_index(*last);
    Send(std::move(resp));
    return;
  }
  // §5.3: reject, hinting the last index that might match: the largest
  // index <= m.index whose term is <= m.log_term.
  uint64_t hint = std::min(m.index(), log_.LastIndex());
  hint = log_.FindConflictByTerm(hint, m.log_term());
  resp.set_index(m.index());
  resp.set_reject(true);
  resp.set_reject_hint(hint);
  resp.set_log_term(log_.ZeroTermOnErr(hint));
  Send(std::move(resp));
}

void Raft::HandleHeartbeat(const raftpb::Message& m) {
  log_.CommitTo(m.commit());
  raftpb::Message resp;
  resp.set_to(m.from());
  resp.set_type(raftpb::MsgHeartbeatResp);
  resp.set_context(m.context());
  Send(std::move(resp));
}

void Raft::HandleSnapshot(const raftpb::Message& m) {
  raftpb::Message resp;
  resp.set_to(m.from());
  resp.set_type(raftpb::MsgAppResp);
  if (Restore(m.snapshot())) {
    Info("restored snapshot", {{"id", id_}, {"term", term_}, {"index", m.snapshot().metadata().index()}});
    resp.set_index(log_.LastIndex());
  } else {
    resp.set_index(log_.committed());
  }
  Send(std::move(resp));
}

bool Raft::Restore(const raftpb::Snapshot& s) {
  if (s.metadata().index() <= log_.committed()) return false;
  if (state_ != StateType::kFollower) {
    Warn("attempted to restore snapshot as non-follower; stepping down", {{"id", id_}, {"term", term_}});
    BecomeFollower(term_ + 1, kNone);
    return false;
  }
  const auto& cs = s.metadata().conf_state();
  bool found = false;
  for (const auto* set : {&cs.voters(), &cs.learners(), &cs.voters_outgoing()}) {
    for (uint64_t id : *set) found = found || id == id_;
  }
  if (!found) {
    Warn("attempted to restore snapshot but it is not in the ConfState", {{"id", id_}, {"term", term_}});
    return false;
  }
  if (log_.MatchTerm(s.metadata().index(), s.metadata().term())) {
    // We already hold that entry: just fast-forward commit.
    log_.CommitTo(s.metadata().index());
    return false;
  }
  log_.Restore(s);
  auto restored = RestoreConfig(cs, log_.LastIndex(), prs_.max_inflight());
  if (!restored.ok()) Fatal(absl::StrCat("raft: unable to restore config: ", restored.status().ToString()));
  prs_ = ProgressTracker(prs_.max_inflight());
  SwitchToConfig(std::move(restored->first), std::move(restored->second));
  Progress& pr = prs_.progress.at(id_);
  pr.MaybeUpdate(pr.next - 1);
  return true;
}

raftpb::ConfState Raft::ApplyConfChange(const raftpb::ConfChangeV2& cc) {
  Changer changer(prs_, log_.LastIndex());
  absl::StatusOr<ConfigAndProgress> res;
  bool auto_leave = false;
  if (IsLeaveJoint(cc)) {
    res = changer.LeaveJoint();
  } else if (UsesJoint(cc, &auto_leave)) {
    std::vector<raftpb::ConfChangeSingle> ccs(cc.changes().begin(), cc.changes().end());
    res = changer.EnterJoint(auto_leave, ccs);
  } else {
    std::vector<raftpb::ConfChangeSingle> ccs(cc.changes().begin(), cc.changes().end());
    res = changer.Simple(ccs);
  }
  if (!res.ok()) {
    // Every member applies the same entry to the same configuration, so
    // ignoring an invalid change keeps them consistent.
    Warn("ignored invalid conf change", {{"id", id_}, {"term", term_}, {"error", res.status().ToString()}});
    return prs_.ConfState();
  }
  return SwitchToConfig(std::move(res->first), std::move(res->second));
}

raftpb::ConfState Raft::SwitchToConfig(TrackerConfig cfg, ProgressMap prs) {
  prs_.config = std::move(cfg);
  prs_.progress = std::move(prs);
  Info("switched to configuration", {{"id", id_}, {"term", term_}, {"conf", prs_.config.Describe()}});
  raftpb::ConfState cs = prs_.ConfState();
  auto it = prs_.progress.find(id_);
  bool ok = it != prs_.progress.end();
  is_learner_ = ok && it->second.is_learner;
  if ((!ok || is_learner_) && state_ == StateType::kLeader) {
    // Removed (or demoted) leader: it keeps replicating as a lame duck so the
    // remaining members learn that the change committed, takes no proposals,
    // and once a voter has its whole log hands leadership to it and steps
    // down (MaybeHandOver; thesis §4.2.2).
    Info("removed from configuration; handing over leadership", {{"id", id_}, {"term", term_}});
  }
  if ((state_ == StateType::kCandidate || state_ == StateType::kPreCandidate) && !Promotable()) {
    // A candidate that is no longer a voter abandons its election.
    BecomeFollower(term_, kNone);
  }
  if (state_ != StateType::kLeader || cs.voters_size() == 0) return cs;
  if (MaybeCommit()) {
    ReleasePendingReadIndexMessages();
    BcastAppend();
  } else {
    // Probe new members now rather than at the next heartbeat.
    std::vector<uint64_t> ids;
    for (const auto& [id, pr] : prs_.progress) ids.push_back(id);
    for (uint64_t id : ids) {
      if (id != id_) MaybeSendAppend(id, false);
    }
  }
  if (lead_transferee_ != kNone && !prs_.config.voters.Contains(lead_transferee_)) AbortLeaderTransfer();
  MaybeHandOver();
  return cs;
}

void Raft::Advance(const Ready& rd) {
  uint64_t applied_cursor = 0;
  if (!rd.committed_entries.empty()) {
    applied_cursor = rd.committed_entries.back().index();
  } else if (!IsEmptySnapshot(rd.snapshot)) {
    applied_cursor = rd.snapshot.metadata().index();
  }
  if (applied_cursor > 0) {
    log_.AppliedTo(applied_cursor);
    if (prs_.config.auto_leave && applied_cursor >= pending_conf_index_ && state_ == StateType::kLeader) {
      // The joint config is committed and applied: leave it (thesis §4.3).
      raftpb::Entry e;
      e.set_type(raftpb::EntryConfChangeV2);
      AppendEntry({e});
      pending_conf_index_ = log_.LastIndex();
      Info("initiating automatic transition out of joint configuration",
           {{"id", id_}, {"term", term_}, {"index", pending_conf_index_}});
      BcastAppend();
    }
  }
  ReduceUncommittedSize(rd.committed_entries);
  if (!rd.entries.empty()) {
    const raftpb::Entry& last = rd.entries.back();
    log_.StableTo(last.index(), last.term());
    if (state_ == StateType::kLeader && log_.MatchTerm(last.index(), last.term())) {
      auto it = prs_.progress.find(id_);
      if (it != prs_.progress.end() && it->second.MaybeUpdate(last.index()) && MaybeCommit()) {
        ReleasePendingReadIndexMessages();
        BcastAppend();
      }
    }
  }
  if (!IsEmptySnapshot(rd.snapshot)) log_.StableSnapTo(rd.snapshot.metadata().index());
}

}  // namespace cppetcd::raft
