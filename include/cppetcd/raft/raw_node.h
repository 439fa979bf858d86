// The Raft consensus state machine as a plain object (etcd raft's RawNode
// model): no threads, clocks, files or sockets. The application feeds it
// Tick(), Step(msg), Propose(...), takes a Ready (state to persist, messages
// to send, entries to apply), acts on it and calls Advance(ready).
//
// Thread-safety: none; one thread (the server's raft loop) owns a RawNode.
// Determinism: given the same Config (including random_seed) and the same
// sequence of calls, a RawNode produces the same Readies.
#ifndef CPPETCD_RAFT_RAW_NODE_H_
#define CPPETCD_RAFT_RAW_NODE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppetcd/raft/storage.h"
#include "raftpb/raft.pb.h"

namespace cppetcd::util {
class Logger;
}

namespace cppetcd::raft {

inline constexpr uint64_t kNone = 0;  // no node / no leader / no vote

enum class ReadOnlyOption {
  // ReadIndex confirmed by a heartbeat round to a quorum (Raft thesis §6.4).
  kReadOnlySafe,
  // ReadIndex served from the leader lease (thesis §6.4.1); relies on bounded
  // clock drift and requires check_quorum.
  kReadOnlyLeaseBased,
};

struct Config {
  uint64_t id = 0;  // this node's ID, non-zero
  // Ticks without a heartbeat before a follower campaigns; the actual timeout
  // is drawn from [election_tick, 2*election_tick). Must be > heartbeat_tick.
  int election_tick = 10;
  int heartbeat_tick = 1;  // ticks between leader heartbeats
  Storage* storage = nullptr;  // not owned; must outlive the RawNode
  // Last applied index on restart: committed entries <= applied are not
  // returned again. Membership is restored from the storage snapshot's
  // ConfState only, so conf change entries after the snapshot must be applied
  // again (ApplyConfChange): keep applied <= the last index whose ConfState
  // the storage snapshot reflects, or 0 (etcd restarts from the snapshot).
  uint64_t applied = 0;
  // Max bytes of entries in one MsgApp (0: one entry per message).
  uint64_t max_size_per_msg = 1024 * 1024;
  // Max bytes of committed entries in one Ready (0: no limit).
  uint64_t max_committed_size_per_ready = 0;
  // Max bytes of uncommitted entries on a leader; proposals beyond are
  // dropped with ErrProposalDropped (0: no limit).
  uint64_t max_uncommitted_entries_size = 0;
  // Max MsgApp in flight to one follower in replicate state. > 0.
  int max_inflight_msgs = 256;
  // Leader steps down when it has not heard from a quorum in an election
  // timeout; followers ignore votes while they hear from a leader (lease).
  bool check_quorum = false;
  bool pre_vote = false;  // thesis §9.6
  ReadOnlyOption read_only_option = ReadOnlyOption::kReadOnlySafe;
  // Followers drop proposals instead of forwarding them to the leader.
  bool disable_proposal_forwarding = false;
  // Seeds the PRNG that randomises election timeouts.
  uint64_t random_seed = 0;
  const util::Logger* logger = nullptr;  // may be null (no logging)
};

struct Peer {
  uint64_t id = 0;
  std::string context;  // becomes ConfChange.context of its AddNode entry
};

enum class StateType { kFollower, kCandidate, kLeader, kPreCandidate };
const char* StateTypeName(StateType s);

// Volatile state; not persisted.
struct SoftState {
  uint64_t lead = kNone;
  StateType raft_state = StateType::kFollower;
  bool operator==(const SoftState&) const = default;
};

// The answer to a ReadIndex request: once the application has applied up to
// `index`, it may serve the read identified by request_ctx (thesis §6.4).
struct ReadState {
  uint64_t index = 0;
  std::string request_ctx;
};

// One batch of work for the application. The application MUST, in order:
//  1. persist `snapshot` (if not empty), `hard_state` (if not empty) and
//     `entries` durably (fsync when must_sync) -- the persist-before-send
//     rule: a vote or an append acknowledgement in `messages` promises that
//     this state survives a crash;
//  2. send `messages` (MsgSnap messages carry the snapshot to send);
//  3. apply `snapshot`, then `committed_entries` in order (calling
//     RawNode::ApplyConfChange for conf change entries);
//  4. call Advance(ready) with this same Ready.
// The leader counts its own copy of an entry toward commit only after the
// Advance that reports it persisted, so a single voter's proposal is
// committed in the Ready after the one that carried its entry.
struct Ready {
  std::optional<SoftState> soft_state;   // set when it changed
  raftpb::HardState hard_state;          // empty (all zero) = unchanged
  std::vector<ReadState> read_states;
  std::vector<raftpb::Entry> entries;    // to append to stable storage
  raftpb::Snapshot snapshot;             // empty (index 0) = none
  std::vector<raftpb::Entry> committed_entries;
  std::vector<raftpb::Message> messages;
  // True when entries is non-empty or term/vote changed: fsync before send.
  bool must_sync = false;
};

bool IsEmptyHardState(const raftpb::HardState& hs);
bool IsEmptySnapshot(const raftpb::Snapshot& snap);

enum class ProgressStateType { kProbe, kReplicate, kSnapshot };
const char* ProgressStateName(ProgressStateType s);

// What the leader knows about one peer's log.
struct PeerProgress {
  uint64_t match = 0;  // highest index known replicated on the peer
  uint64_t next = 0;   // next index to send
  ProgressStateType state = ProgressStateType::kProbe;
  uint64_t pending_snapshot = 0;  // index of the snapshot in flight (kSnapshot)
  bool recent_active = false;
  bool is_learner = false;
  int inflight = 0;  // MsgApp in flight (kReplicate)
};

struct Status {
  uint64_t id = 0;
  raftpb::HardState hard_state;
  SoftState soft_state;
  uint64_t applied = 0;
  uint64_t lead_transferee = kNone;
  raftpb::ConfState conf_state;
  std::map<uint64_t, PeerProgress> progress;  // leader only
};

enum class SnapshotStatus { kFinish, kFailure };

class Raft;

class RawNode {
 public:
  // Creates a node from cfg (validated: id != 0, storage != null,
  // election_tick > heartbeat_tick > 0, max_inflight_msgs > 0, lease-based
  // reads need check_quorum). State is loaded from cfg.storage.
  static absl::StatusOr<std::unique_ptr<RawNode>> Create(const Config& cfg);
  ~RawNode();

  // For a brand-new cluster (empty storage): appends one ConfChangeAddNode
  // entry per peer at term 1 (indices 1..n), commits them and applies them to
  // the membership. They appear in the next Ready (entries and
  // committed_entries; applying them again is harmless). Campaign() is
  // refused until that Ready has been handled (Advance), as a node never
  // campaigns with unapplied conf changes. InvalidArgument if peers is
  // empty, FailedPrecondition if the storage is not empty.
  absl::Status Bootstrap(const std::vector<Peer>& peers);

  // Advances the logical clock by one tick (election / heartbeat timers).
  void Tick();
  // Starts an election now (with PreVote if configured).
  absl::Status Campaign();
  // Proposes data to be appended. ErrProposalDropped when it cannot be.
  absl::Status Propose(std::string data);
  // Proposes a membership change (thesis §4). Dropped while one is pending.
  absl::Status ProposeConfChange(const raftpb::ConfChange& cc);
  absl::Status ProposeConfChange(const raftpb::ConfChangeV2& cc);
  // Applies a committed conf change entry (call it only for entries from
  // Ready.committed_entries, in order); returns the new ConfState. An invalid
  // change (e.g. removing every voter) is ignored and logged: every member
  // ignores it alike. A leader removed from the voters takes no proposals,
  // hands leadership to a caught-up voter and steps down.
  raftpb::ConfState ApplyConfChange(const raftpb::ConfChangeV2& cc);
  raftpb::ConfState ApplyConfChange(const raftpb::ConfChange& cc);
  // Steps a message from a peer. ErrStepLocalMsg for local types,
  // ErrStepPeerNotFound for a response from an unknown peer.
  absl::Status Step(const raftpb::Message& m);
  // Requests a linearizable read point (thesis §6.4); answered by a
  // ReadState{index, request_ctx} in a later Ready, on this node. Serve the
  // read once applied >= index. request_ctx must be unique among pending
  // requests. The request is dropped silently when there is no leader or
  // leadership changes before it is confirmed: retry after a timeout. A new
  // leader answers only after committing an entry of its term.
  void ReadIndex(std::string request_ctx);
  // Asks the leader to hand leadership to `transferee` (thesis §3.10).
  void TransferLeader(uint64_t transferee);

  bool HasReady() const;
  Ready GetReady();
  // Acknowledges that `rd` (the last GetReady result) was fully handled.
  void Advance(const Ready& rd);

  Status GetStatus() const;
  // Tells the leader that the last message to `id` may have been lost.
  void ReportUnreachable(uint64_t id);
  // Tells the leader whether the snapshot sent to `id` was delivered.
  void ReportSnapshot(uint64_t id, SnapshotStatus status);

  // Test hooks: the underlying state machine.
  Raft* raft_for_test() { return raft_.get(); }

 private:
  explicit RawNode(std::unique_ptr<Raft> r);

  std::unique_ptr<Raft> raft_;
  SoftState prev_soft_state_;
  raftpb::HardState prev_hard_state_;
};

// Describes a ConfChangeV2 in etcd's textual form ("v1 l2 r3 u4"); for logs.
std::string DescribeConfChange(const raftpb::ConfChangeV2& cc);
// Converts a single-step ConfChange to the V2 form (same semantics).
raftpb::ConfChangeV2 ToV2(const raftpb::ConfChange& cc);

}  // namespace cppetcd::raft

#endif  // CPPETCD_RAFT_RAW_NODE_H_
