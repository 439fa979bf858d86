// EtcdServer raft loop: ticks, proposals handed to raft, each Ready saved
// (snapshot, WAL), sent, queued for the apply loop and advanced, in that
// order; raft snapshots and log compaction. Everything here runs on the raft
// thread, except PostRaftTask (any thread) and MaybeFastForwardTicks, also
// called once from Start before the thread exists.
#include "server_impl.h"

#include "crash_point.h"
#include "cppetcd/raft/peer_message.h"

namespace cppetcd::server {
namespace {

// At most one "dropped invalid raft message" line a second (process-wide):
// a broken or hostile peer must not flood the log.
bool AllowInvalidPeerLog() {
  // Real time on purpose: a process-wide log rate limit, shared by every
  // server in the process (no one server's clock owns it).
  static std::atomic<int64_t> next_ns{0};
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  int64_t next = next_ns.load(std::memory_order_relaxed);
  return now >= next &&
         next_ns.compare_exchange_strong(next, now + 1'000'000'000, std::memory_order_relaxed);
}

}  // namespace

// ---------------------------------------------------------------------------
// Raft loop.

bool EtcdServer::Impl::PostRaftTask(absl::AnyInvocable<void()> task) {
  util::MutexLock l(&raft_mu_);
  if (raft_stop_) return false;
  raft_tasks_.push_back(std::move(task));
  raft_cv_.Signal();
  return true;
}

void EtcdServer::Impl::MaybeFastForwardTicks() {
  // A lone voter need not wait a whole election timeout to lead (etcd
  // "started as single-node; fast-forwarding election ticks").
  if (fast_forwarded_) return;
  raft::Status st = node_->GetStatus();
  if (st.conf_state.voters_size() != 1 || st.conf_state.voters(0) != member_id_ ||
      st.soft_state.raft_state == raft::StateType::kLeader ||
      conf_changes_handed_ != conf_changes_applied_to_raft_) {
    return;
  }
  {
    // Raft's configuration is rebuilt entry by entry on a restart: {self}
    // may be an intermediate step of a larger cluster. Only a member whose
    // applied membership is itself alone fast-forwards.
    if (membership_.Size() > 1) return;
  }
  fast_forwarded_ = true;
  const int election_ticks = static_cast<int>(cfg_.election_timeout / cfg_.heartbeat_interval);
  const int forward = election_ticks - 1;
  for (int i = 0; i < forward; ++i) node_->Tick();
  lg_.Info("started as single-node; fast-forwarding election ticks",
           {{"local-member-id", util::IdToHex(member_id_)},
            {"forward-ticks", forward},
            {"forward-duration", DurationString(cfg_.heartbeat_interval * forward)},
            {"election-ticks", election_ticks},
            {"election-timeout", DurationString(cfg_.election_timeout)}});
}

void EtcdServer::Impl::RaftLoop() {
  auto next_tick = timer_clock_->Now() + cfg_.heartbeat_interval;
  while (true) {
    std::deque<std::pair<uint64_t, std::string>> props;
    std::vector<absl::AnyInvocable<void()>> tasks;
    std::vector<raftpb::Message> incoming;
    {
      util::MutexLock l(&raft_mu_);
      while (!raft_stop_ && proposals_.empty() && raft_tasks_.empty() && incoming_.empty()) {
        if (!timer_clock_->WaitUntil(&raft_cv_, &raft_mu_, next_tick)) break;
      }
      if (raft_stop_) break;
      if (!proposals_.empty()) {
        // Steady clock until proposals.cc stamps proposals_oldest_ from
        // timer_clock_ too (it does not yet).
        metrics_.stage_propose_queue.Observe(
            std::chrono::duration<double>(timer_clock_->Now() - proposals_oldest_).count());
      }
      props.swap(proposals_);
      tasks.swap(raft_tasks_);
      incoming.swap(incoming_);
    }
    auto now = timer_clock_->Now();
    if (now >= next_tick) {
      // While conf changes handed to the apply loop have not reached raft,
      // raft's configuration is behind its log: a follower must not time
      // out and campaign under it (raft counts them as applied already).
      if (metrics_.is_leader.load(std::memory_order_relaxed) ||
          conf_changes_handed_ == conf_changes_applied_to_raft_) {
        node_->Tick();
      }
      next_tick += cfg_.heartbeat_interval;
      if (next_tick < now) next_tick = now + cfg_.heartbeat_interval;  // fell far behind
    }
    for (auto& m : incoming) {
      // Errors (a response from an unknown peer, a stale message) only mean
      // the message is of no use now. A message raft refuses as invalid
      // (corrupt or hostile peer) is dropped with a line in the log.
      absl::Status s = node_->Step(m);
      if (raft::IsInvalidPeerMessage(s) && AllowInvalidPeerLog()) {
        lg_.Warn("dropped invalid raft message from peer",
                 {{"local-member-id", util::IdToHex(member_id_)},
                  {"remote-peer-id", util::IdToHex(m.from())},
                  {"type", raftpb::MessageType_Name(m.type())},
                  {"error", std::string(s.message())}});
      }
    }
    for (auto& t : tasks) std::move(t)();
    for (auto& p : props) held_proposals_.push_back(std::move(p));
    // Propose what is held (at once when a Ready just made this member learn
    // of a leader), then drain the Readies.
    while (true) {
      ProposeHeld();
      if (!node_->HasReady()) break;
      HandleReady(node_->GetReady());
    }
  }
  // Proposals never handed to raft fail now.
  {
    util::MutexLock l(&raft_mu_);
    for (auto& p : proposals_) held_proposals_.push_back(std::move(p));
    proposals_.clear();
  }
  for (auto& [id, data] : held_proposals_) {
    metrics_.proposals_queued_bytes.fetch_sub(data.size());
    CompleteWaiter(id, Outcome{ErrStopped(), {}, std::nullopt});
  }
  held_proposals_.clear();
}

void EtcdServer::Impl::ProposeHeld() {
  // Proposals wait here while no leader is known (as etcd's node blocks its
  // proposers); they time out at request_timeout if none appears.
  if (lead_.load(std::memory_order_relaxed) == raft::kNone) return;
  while (!held_proposals_.empty()) {
    auto [id, data] = std::move(held_proposals_.front());
    held_proposals_.pop_front();
    metrics_.proposals_queued_bytes.fetch_sub(data.size());
    absl::Status s = node_->Propose(std::move(data));
    if (!s.ok()) {
      absl::Status err = raft::IsProposalDropped(s) ? ErrTooManyRequests() : s;
      CompleteWaiter(id, Outcome{err, {}, std::nullopt});
    }
  }
}

void EtcdServer::Impl::HandleReady(raft::Ready rd) {
  if (rd.soft_state.has_value()) {
    const uint64_t old_lead = lead_.load();
    const uint64_t new_lead = rd.soft_state->lead;
    const bool was_leader = metrics_.is_leader.load();
    const bool is_leader = rd.soft_state->raft_state == raft::StateType::kLeader;
    if (new_lead != old_lead && new_lead != raft::kNone) {
      metrics_.leader_changes.fetch_add(1, std::memory_order_relaxed);
    }
    lead_ = new_lead;
    metrics_.has_leader = new_lead != raft::kNone;
    metrics_.is_leader = is_leader;
    if (is_leader && !was_leader) {
      // Leases get a fresh TTL on a new leader (etcd lessor.Promote).
      lessor_->Promote(cfg_.election_timeout);
    } else if (!is_leader && was_leader) {
      lessor_->Demote();
    }
  }
  for (const auto& rs : rd.read_states) reads_->OnReadState(rs.request_ctx, rs.index);

  CPPETCD_CRASH_POINT("raft_before_save_snapshot");
  if (!raft::IsEmptySnapshot(rd.snapshot)) {
    if (auto s = snapshotter_->SaveSnap(rd.snapshot); !s.ok()) {
      lg_.Fatal("failed to save Raft snapshot", {{"error", s.ToString()}});
    }
    if (auto s = wal_->SaveSnapshot({rd.snapshot.metadata().index(), rd.snapshot.metadata().term()});
        !s.ok()) {
      lg_.Fatal("failed to save snapshot marker in WAL", {{"error", s.ToString()}});
    }
  }
  CPPETCD_CRASH_POINT("raft_before_save");
  if (!raft::IsEmptyHardState(rd.hard_state) || !rd.entries.empty()) {
    const auto t0 = timer_clock_->Now();
    if (auto s = wal_->Save(rd.hard_state, rd.entries, rd.must_sync); !s.ok()) {
      lg_.Fatal("failed to save Raft hard state and entries", {{"error", s.ToString()}});
    }
    if (!rd.entries.empty()) {
      metrics_.stage_wal_save.Observe(std::chrono::duration<double>(timer_clock_->Now() - t0).count());
    }
  }
  CPPETCD_CRASH_POINT("raft_after_save");
  if (!raft::IsEmptyHardState(rd.hard_state)) {
    term_ = rd.hard_state.term();
    commit_index_ = rd.hard_state.commit();
    metrics_.proposals_committed.store(rd.hard_state.commit(), std::memory_order_relaxed);
    raft_storage_->SetHardState(rd.hard_state);
  }
  if (!raft::IsEmptySnapshot(rd.snapshot)) {
    if (auto s = raft_storage_->ApplySnapshot(rd.snapshot); !s.ok()) {
      lg_.Fatal("failed to apply Raft snapshot to raft storage", {{"error", s.ToString()}});
    }
  }
  if (!rd.entries.empty()) {
    if (auto s = raft_storage_->Append(rd.entries); !s.ok()) {
      lg_.Fatal("failed to append entries to raft storage", {{"error", s.ToString()}});
    }
  }
  CPPETCD_CRASH_POINT("raft_before_send");
  if (!rd.messages.empty()) {
    // A snapshot goes with a copy of the backend over its own stream.
    std::vector<raftpb::Message> out;
    out.reserve(rd.messages.size());
    for (auto& m : rd.messages) {
      if (m.type() == raftpb::MsgSnap) {
        SendSnapshotAsync(std::move(m));
      } else {
        out.push_back(std::move(m));
      }
    }
    if (!out.empty()) transport_->Send(std::move(out));
  }
  // Raft learns the Ready was handled first, so that the committed entries
  // can then be moved (not copied) to the apply loop: Advance reads them
  // (applied index, uncommitted-size accounting) and does no I/O, and the
  // apply loop sees them no sooner than before.
  CPPETCD_CRASH_POINT("raft_before_advance");
  node_->Advance(rd);
  CPPETCD_CRASH_POINT("raft_before_apply");
  if (!rd.committed_entries.empty() || !raft::IsEmptySnapshot(rd.snapshot)) {
    util::MutexLock l(&apply_mu_);
    // A snapshot from the leader is installed by the apply loop before the
    // entries that follow it.
    for (const auto& e : rd.committed_entries) {
      if (e.type() == raftpb::EntryConfChange || e.type() == raftpb::EntryConfChangeV2) {
        ++conf_changes_handed_;
      }
    }
    apply_queue_.push_back(
        ApplyItem{std::move(rd.snapshot), std::move(rd.committed_entries), timer_clock_->Now()});
    apply_cv_.Signal();
  }
}

void EtcdServer::Impl::TakeSnapshot(uint64_t index) {
  // Raft thread. The backend was synced up to at least `index` by the apply
  // loop before this was posted, so the WAL before it may go.
  if (index <= last_snapshot_index_raft_) return;
  raft::Status st = node_->GetStatus();
  auto snap = raft_storage_->CreateSnapshot(index, &st.conf_state, "");
  if (!snap.ok()) {
    if (raft::IsSnapOutOfDate(snap.status())) return;
    lg_.Fatal("failed to create Raft snapshot", {{"error", snap.status().ToString()}});
  }
  if (auto s = snapshotter_->SaveSnap(*snap); !s.ok()) {
    lg_.Fatal("failed to save Raft snapshot", {{"error", s.ToString()}});
  }
  if (auto s = wal_->SaveSnapshot({index, snap->metadata().term()}); !s.ok()) {
    lg_.Fatal("failed to save snapshot marker in WAL", {{"error", s.ToString()}});
  }
  last_snapshot_index_raft_ = index;
  lg_.Info("saved snapshot", {{"snapshot-index", index}});
  if (index > cfg_.snapshot_catchup_entries) {
    uint64_t compact_index = index - cfg_.snapshot_catchup_entries;
    auto s = raft_storage_->Compact(compact_index);
    if (s.ok()) {
      lg_.Info("compacted Raft logs", {{"compact-index", compact_index}});
    } else if (!raft::IsCompacted(s)) {
      lg_.Fatal("failed to compact Raft logs", {{"error", s.ToString()}});
    }
  }
  if (auto s = wal_->ReleaseLockTo(index); !s.ok()) {
    lg_.Warn("failed to release WAL segments", {{"error", s.ToString()}});
  }
  if (cfg_.max_snapshots > 0) {
    if (auto s = snapshotter_->Purge(cfg_.max_snapshots); !s.ok()) {
      lg_.Warn("failed to purge old snapshot files", {{"error", s.ToString()}});
    }
  }
}

}  // namespace cppetcd::server
