// The Raft state machine proper (private to the raft module; RawNode is the
// public face). Follows the Raft paper (Ongaro & Ousterhout 2014) and the
// thesis (Ongaro 2014); section numbers in comments refer to them.
#ifndef CPPETCD_RAFT_RAFT_CORE_H_
#define CPPETCD_RAFT_RAFT_CORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cppetcd/raft/raw_node.h"
#include "cppetcd/util/log.h"
#include "raft_log.h"
#include "raftpb/raft.pb.h"
#include "read_only.h"
#include "tracker.h"

namespace cppetcd::raft {

enum class CampaignType { kPreElection, kElection, kTransfer };

class Raft {
 public:
  // cfg must have been validated by RawNode::Create.
  explicit Raft(const Config& cfg);

  absl::Status Step(raftpb::Message m);
  // Checks a message that arrived from a peer (RawNode::Step) against what
  // a correct peer can send in this node's state; ErrInvalidPeerMessage for
  // one raft would abort on or corrupt its log with. Local invariants are
  // not relaxed: this only keeps foreign bytes from reaching them.
  absl::Status CheckPeerMessage(const raftpb::Message& m) const;
  void Tick();
  // Handles what the application did with a Ready (applied, persisted).
  void Advance(const Ready& rd);
  raftpb::ConfState ApplyConfChange(const raftpb::ConfChangeV2& cc);

  SoftState GetSoftState() const { return {lead_, state_}; }
  raftpb::HardState GetHardState() const;

  // Accessors (RawNode, tests, simulator).
  uint64_t id() const { return id_; }
  uint64_t term() const { return term_; }
  uint64_t vote() const { return vote_; }
  uint64_t lead() const { return lead_; }
  StateType state() const { return state_; }
  uint64_t lead_transferee() const { return lead_transferee_; }
  uint64_t pending_conf_index() const { return pending_conf_index_; }
  uint64_t uncommitted_size() const { return uncommitted_size_; }
  bool is_learner() const { return is_learner_; }
  int randomized_election_timeout() const { return randomized_election_timeout_; }
  int election_elapsed() const { return election_elapsed_; }
  RaftLog& log() { return log_; }
  const RaftLog& log() const { return log_; }
  ProgressTracker& tracker() { return prs_; }
  const ProgressTracker& tracker() const { return prs_; }
  std::vector<raftpb::Message>& msgs() { return msgs_; }
  std::vector<ReadState>& read_states() { return read_states_; }

  // Used by RawNode::Bootstrap.
  void BecomeFollower(uint64_t term, uint64_t lead);
  void BecomeCandidate();
  void BecomePreCandidate();
  void BecomeLeader();

 private:
  absl::Status StepLeader(raftpb::Message& m);
  absl::Status StepCandidate(raftpb::Message& m);
  absl::Status StepFollower(raftpb::Message& m);
  void Hup(CampaignType t);
  void Campaign(CampaignType t);
  VoteResult Poll(uint64_t id, raftpb::MessageType t, bool granted);

  void TickElection();
  void TickHeartbeat();
  bool PastElectionTimeout() const { return election_elapsed_ >= randomized_election_timeout_; }
  void ResetRandomizedElectionTimeout();
  void Reset(uint64_t term);
  bool Promotable() const;

  void Send(raftpb::Message m);
  bool MaybeSendAppend(uint64_t to, bool send_if_empty);
  void SendAppend(uint64_t to) { MaybeSendAppend(to, true); }
  void SendHeartbeat(uint64_t to, const std::string& ctx);
  void BcastAppend();
  void BcastHeartbeat();
  void BcastHeartbeatWithCtx(const std::string& ctx);
  void SendTimeoutNow(uint64_t to);
  void AbortLeaderTransfer() { lead_transferee_ = kNone; }
  // A leader no longer a voter hands leadership to a caught-up voter.
  void MaybeHandOver();
  bool MaybeCommit();
  bool AppendEntry(std::vector<raftpb::Entry> es);
  bool IncreaseUncommittedSize(const std::vector<raftpb::Entry>& es);
  void ReduceUncommittedSize(const std::vector<raftpb::Entry>& es);
  bool CommittedEntryInCurrentTerm() const;
  void HandleReadIndex(const raftpb::Message& m);
  void ReleasePendingReadIndexMessages();
  void RespondToReadIndex(const raftpb::Message& req, uint64_t index);

  void HandleAppendEntries(const raftpb::Message& m);
  void HandleHeartbeat(const raftpb::Message& m);
  void HandleSnapshot(const raftpb::Message& m);
  bool Restore(const raftpb::Snapshot& s);
  raftpb::ConfState SwitchToConfig(TrackerConfig cfg, ProgressMap prs);
  void LoadState(const raftpb::HardState& hs);

  void Info(std::string_view msg, util::LogFields fields) const;
  void Warn(std::string_view msg, util::LogFields fields) const;
  [[noreturn]] void Fatal(const std::string& msg) const;

  uint64_t id_;
  uint64_t term_ = 0;
  uint64_t vote_ = kNone;
  std::vector<ReadState> read_states_;
  RaftLog log_;
  uint64_t max_msg_size_;
  uint64_t max_uncommitted_size_;
  ProgressTracker prs_;
  StateType state_ = StateType::kFollower;
  bool is_learner_ = false;
  std::vector<raftpb::Message> msgs_;
  uint64_t lead_ = kNone;
  // Target of a leader transfer in progress (kNone if none), thesis §3.10.
  uint64_t lead_transferee_ = kNone;
  // Log index of the last conf change proposed by this leader; a new one is
  // refused until applied >= it (thesis §4.1).
  uint64_t pending_conf_index_ = 0;
  // Payload bytes of uncommitted entries appended by this leader.
  uint64_t uncommitted_size_ = 0;
  ReadOnly read_only_;
  // MsgReadIndex held until this leader commits an entry of its term (§6.4).
  std::vector<raftpb::Message> pending_read_index_messages_;
  int election_elapsed_ = 0;  // ticks since last reset (leader: since CheckQuorum)
  int heartbeat_elapsed_ = 0;
  bool check_quorum_;
  bool pre_vote_;
  int heartbeat_timeout_;
  int election_timeout_;
  int randomized_election_timeout_ = 0;  // in [election_timeout, 2*election_timeout)
  bool disable_proposal_forwarding_;
  uint64_t rng_state_;
  const util::Logger* logger_;
};

bool IsLocalMsg(raftpb::MessageType t);
bool IsResponseMsg(raftpb::MessageType t);
raftpb::MessageType VoteRespMsgType(raftpb::MessageType t);

}  // namespace cppetcd::raft

#endif  // CPPETCD_RAFT_RAFT_CORE_H_
