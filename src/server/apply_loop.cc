// EtcdServer apply loop: committed entries go into the backend in one write
// txn per batch together with the consistent index; conf changes update the
// member bucket, alarms the alarm bucket; waiters are completed before the
// commit (entries are durable in the WAL; see ApplyBatch); a raft snapshot
// is triggered every snapshot_count entries. Runs on the apply thread;
// CompleteWaiter and ListAlarms are called from any thread.
#include "server_impl.h"

#include "absl/strings/str_format.h"
#include "crash_point.h"

namespace cppetcd::server {
namespace {

std::string MemberKey(uint64_t id) { return absl::StrFormat("%016x", id); }

// Errors of an apply step that come from this member's storage (I/O,
// corruption, a full map: ResourceExhausted) rather than from the entry.
bool IsLocalFault(const absl::Status& s) {
  const auto code = s.code();
  return code == absl::StatusCode::kInternal || code == absl::StatusCode::kDataLoss ||
         code == absl::StatusCode::kResourceExhausted;
}

std::vector<std::string> ToVector(const google::protobuf::RepeatedPtrField<std::string>& f) {
  return std::vector<std::string>(f.begin(), f.end());
}

}  // namespace

// ---------------------------------------------------------------------------
// Apply loop.

void EtcdServer::Impl::ApplyLoop() {
  apply_thread_id_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  while (true) {
    raftpb::Snapshot snapshot;
    std::vector<raftpb::Entry> batch;
    {
      util::MutexLock l(&apply_mu_);
      while (!apply_stop_ && apply_queue_.empty()) apply_cv_.Wait(&apply_mu_);
      if (apply_queue_.empty() || (apply_stop_ && !apply_drain_)) break;
      // Merge everything queued into one backend txn, up to the next
      // snapshot (installed before the entries that follow it).
      metrics_.stage_apply_queue.Observe(
          std::chrono::duration<double>(timer_clock_->Now() - apply_queue_.front().queued).count());
      snapshot = std::move(apply_queue_.front().snapshot);
      batch = std::move(apply_queue_.front().entries);
      apply_queue_.pop_front();
      while (!apply_queue_.empty() && raft::IsEmptySnapshot(apply_queue_.front().snapshot)) {
        for (auto& e : apply_queue_.front().entries) batch.push_back(std::move(e));
        apply_queue_.pop_front();
      }
    }
    if (!raft::IsEmptySnapshot(snapshot)) InstallSnapshot(snapshot);
    if (!batch.empty()) ApplyBatch(std::move(batch));
  }
}

void EtcdServer::Impl::CompleteWaiter(uint64_t id, Outcome o) {
  Waiter fn;
  SteadyClock::time_point proposed;
  {
    util::MutexLock l(&wait_mu_);
    auto it = waiters_.find(id);
    if (it == waiters_.end()) return;
    fn = std::move(it->second.fn);
    proposed = it->second.proposed;
    waiters_.erase(it);
  }
  metrics_.proposals_pending.fetch_sub(1, std::memory_order_relaxed);
  if (!o.status.ok()) metrics_.proposals_failed.fetch_add(1, std::memory_order_relaxed);
  if (o.revision != 0) {
    metrics_.stage_propose_to_reply.Observe(
        std::chrono::duration<double>(SteadyClock::now() - proposed).count());
  }
  std::move(fn)(std::move(o));
}

void EtcdServer::Impl::ApplyBatch(std::vector<raftpb::Entry> entries) {
  const auto t0 = timer_clock_->Now();
  auto btx_or = backend_->BeginWrite();
  if (!btx_or.ok()) lg_.Fatal("failed to begin backend write txn", {{"error", btx_or.status().ToString()}});
  storage::WriteTxn* btx = btx_or->get();
  std::vector<std::pair<uint64_t, Outcome>> done;
  uint64_t last_index = 0;
  bool wrote = false;
  for (const auto& e : entries) {
    last_index = e.index();
    const bool already_applied = e.index() <= consistent_index_;
    switch (e.type()) {
      case raftpb::EntryNormal: {
        if (already_applied || e.data().empty()) break;
        serverpb::InternalRaftRequest req;
        bool has_waiter = false;
        Outcome o = ApplyNormal(btx, e, &req, &has_waiter);
        o.revision = store_->ApplyRev();
        if (has_waiter) done.emplace_back(req.header().id(), std::move(o));
        break;
      }
      case raftpb::EntryConfChange: {
        raftpb::ConfChange cc;
        absl::Status verdict = absl::OkStatus();
        if (!cc.ParseFromString(e.data())) {
          // Every member skips it alike; raft still hears of a change (of
          // node 0, which it ignores) so that its count of applied conf
          // changes matches the log. No id: no waiter to tell.
          lg_.Warn("skipping undecodable conf change entry", {{"index", e.index()}});
          cc.Clear();
          cc.set_node_id(raft::kNone);
        } else if (!already_applied) {
          verdict = ValidateConfChange(cc);
          if (verdict.ok()) {
            ApplyConfChange(btx, cc);
          } else {
            lg_.Warn("rejected conf change at apply", {{"index", e.index()},
                                                       {"error", verdict.ToString()}});
            cc.set_node_id(raft::kNone);  // raft ignores a change of node 0
          }
          if (cc.id() != 0) done.emplace_back(cc.id(), Outcome{verdict, {}, std::nullopt});
        }
        PostRaftTask([this, cc] {
          node_->ApplyConfChange(cc);
          ++conf_changes_applied_to_raft_;
          MaybeFastForwardTicks();
        });
        break;
      }
      case raftpb::EntryConfChangeV2: {
        raftpb::ConfChangeV2 cc;
        if (!cc.ParseFromString(e.data())) {
          // An empty ConfChangeV2 would mean "leave the joint config": skip
          // it without telling raft, on every member alike.
          lg_.Warn("skipping undecodable conf change entry", {{"index", e.index()}});
          PostRaftTask([this] { ++conf_changes_applied_to_raft_; });
          break;
        }
        PostRaftTask([this, cc] {
          node_->ApplyConfChange(cc);
          ++conf_changes_applied_to_raft_;
          MaybeFastForwardTicks();
        });
        break;
      }
      default:
        break;
    }
    if (!already_applied) {
      consistent_index_ = e.index();
      wrote = true;
    }
  }
  if (wrote) {
    if (auto s = btx->Put(storage::kMetaBucket, kConsistentIndexKey,
                          storage::EncodeBigEndian64(consistent_index_));
        !s.ok()) {
      lg_.Fatal("failed to write consistent index", {{"error", s.ToString()}});
    }
  }
  // Reply before the commit. Every entry here is committed in raft and in
  // the WAL of a quorum (fsynced: HandleReady saves before it hands entries
  // over), which is what acknowledging a write requires; after a crash the
  // WAL replays whatever this commit did not make durable, from the
  // consistent index written above. The commit's fdatasync then runs while
  // the clients prepare their next requests and the raft loop persists
  // them. Until the commit publishes the batch, local reads wait on
  // replied_index_ (AwaitRepliedWrites) so a client reads its own write;
  // linearizable reads wait for applied_index_ anyway.
  const auto tr = timer_clock_->Now();
  metrics_.stage_apply.Observe(std::chrono::duration<double>(tr - t0).count());
  if (!done.empty()) replied_index_.store(last_index, std::memory_order_release);
  for (auto& [id, o] : done) CompleteWaiter(id, std::move(o));
  done.clear();
  CPPETCD_CRASH_POINT("apply_before_commit");
  const auto tc = timer_clock_->Now();
  if (auto s = btx->Commit(); !s.ok()) lg_.Fatal("failed to commit backend txn", {{"error", s.ToString()}});
  btx_or->reset();
  const auto commit_duration = timer_clock_->Now() - tc;
  metrics_.backend_commits.fetch_add(1, std::memory_order_relaxed);
  metrics_.backend_commit_total_ns.fetch_add(
      std::chrono::duration_cast<std::chrono::nanoseconds>(commit_duration).count(),
      std::memory_order_relaxed);
  metrics_.backend_commit_seconds.Observe(std::chrono::duration<double>(commit_duration).count());
  metrics_.stage_reply_to_commit.Observe(
      std::chrono::duration<double>(timer_clock_->Now() - tr).count());
  store_->OnCommit();
  CPPETCD_CRASH_POINT("apply_after_commit");
  {
    util::MutexLock l(&applied_mu_);
    if (last_index > applied_index_) applied_index_ = last_index;
    applied_index_atomic_ = applied_index_;
    applied_cv_.SignalAll();
  }
  metrics_.proposals_applied.store(last_index, std::memory_order_relaxed);
  if (timer_clock_->Now() - t0 > milliseconds(100)) {
    metrics_.slow_applies.fetch_add(1, std::memory_order_relaxed);
  }

  // Raft snapshot every snapshot_count applied entries: the backend is made
  // durable first so the WAL before the snapshot can be released.
  if (cfg_.snapshot_count > 0 && consistent_index_ > snapshot_index_ &&
      consistent_index_ - snapshot_index_ > cfg_.snapshot_count) {
    if (auto s = backend_->Sync(); !s.ok()) {
      lg_.Fatal("failed to sync backend before snapshot", {{"error", s.ToString()}});
    }
    snapshot_index_ = consistent_index_;
    const uint64_t idx = consistent_index_;
    lg_.Info("triggering snapshot", {{"local-member-id", util::IdToHex(member_id_)},
                                     {"local-member-applied-index", idx},
                                     {"local-member-snapshot-count", cfg_.snapshot_count}});
    PostRaftTask([this, idx] { TakeSnapshot(idx); });
  }
}

Outcome EtcdServer::Impl::ApplyNormal(storage::WriteTxn* btx, const raftpb::Entry& e,
                                      serverpb::InternalRaftRequest* req, bool* has_waiter) {
  Outcome o;
  if (!req->ParseFromString(e.data())) {
    lg_.Warn("skipping undecodable raft entry", {{"index", e.index()}});
    return o;
  }
  *has_waiter = req->header().id() != 0;
  if (req->has_member_attributes()) {
    const auto& ma = req->member_attributes();
    util::MutexLock l(&members_mu_);
    auto it = members_.find(ma.member_id());
    if (it != members_.end()) {
      it->second.set_name(ma.name());
      it->second.clear_client_urls();
      for (const auto& u : ma.client_urls()) it->second.add_client_urls(u);
      if (auto s = btx->Put(storage::kMembersBucket, MemberKey(ma.member_id()),
                            it->second.SerializeAsString());
          !s.ok()) {
        lg_.Fatal("failed to write member", {{"error", s.ToString()}});
      }
    }
    return o;
  }
  if (req->has_alarm()) {
    o.alarm = ApplyAlarm(btx, req->alarm());
    return o;
  }
  if (ApplyAuthRequest(btx, e, *req, &o)) return o;
  if (o.status = CheckAtApply(*req); !o.status.ok()) return o;
  if (nospace_.load() && GrowsBackend(*req)) {
    o.status = ErrNoSpace();
    return o;
  }
  // etcd applierV3Corrupt: every write fails while CORRUPT is active.
  if (corrupt_.load() && (req->has_put() || req->has_delete_range() || req->has_txn() ||
                          req->has_compaction() || req->has_lease_grant() ||
                          req->has_lease_revoke())) {
    o.status = ErrCorrupt();
    return o;
  }
  o.result = applier_->Apply(btx, *req);
  if (req->has_lease_checkpoint() && o.result.error.ok()) {
    metrics_.lease_checkpoints_applied.fetch_add(req->lease_checkpoint().checkpoints_size(),
                                                 std::memory_order_relaxed);
  }
  if (o.result.unhandled) {
    o.status = ErrUnimplemented("this request type");
  } else if (!o.result.error.ok()) {
    // The applier checks every request before its first write: an error of
    // the request left nothing behind. A backend fault may have come after
    // writes, and other members may not have it: stop.
    if (IsLocalFault(o.result.error)) {
      lg_.Fatal("failed to apply request: local storage fault",
                {{"index", e.index()}, {"error", o.result.error.ToString()}});
    }
    // One owner only: the waiter hands the status to another thread.
    o.status = o.result.error;
    o.result.error = absl::OkStatus();
  }
  return o;
}

void EtcdServer::Impl::ApplyConfChange(storage::WriteTxn* btx, const raftpb::ConfChange& cc) {
  const uint64_t self = member_id_.load();
  std::optional<std::pair<uint64_t, std::vector<std::string>>> peer_update;
  bool removed_self = false;
  {
    util::MutexLock l(&members_mu_);
    switch (cc.type()) {
      case raftpb::ConfChangeAddNode:
      case raftpb::ConfChangeAddLearnerNode:
      case raftpb::ConfChangeUpdateNode: {
        serverpb::MemberRecord m;
        if (cc.context().empty() || !m.ParseFromString(cc.context())) break;
        if (m.id() == 0) m.set_id(cc.node_id());
        auto it = members_.find(m.id());
        if (it != members_.end()) {
          // Keep published attributes; update raft attributes.
          if (m.name().empty()) m.set_name(it->second.name());
          if (m.client_urls_size() == 0) *m.mutable_client_urls() = it->second.client_urls();
        }
        m.set_is_learner(cc.type() == raftpb::ConfChangeAddLearnerNode ||
                         (cc.type() == raftpb::ConfChangeUpdateNode && it != members_.end() &&
                          it->second.is_learner()));
        if (auto s = btx->Put(storage::kMembersBucket, MemberKey(m.id()), m.SerializeAsString());
            !s.ok()) {
          lg_.Fatal("failed to write member", {{"error", s.ToString()}});
        }
        if (it == members_.end()) {
          lg_.Info("added member", {{"cluster-id", util::IdToHex(cluster_id_)},
                                    {"local-member-id", util::IdToHex(self)},
                                    {"added-peer-id", util::IdToHex(m.id())},
                                    {"added-peer-peer-urls", ToVector(m.peer_urls())},
                                    {"added-peer-is-learner", m.is_learner()}});
        } else if (cc.type() == raftpb::ConfChangeUpdateNode) {
          lg_.Info("updated member", {{"cluster-id", util::IdToHex(cluster_id_)},
                                      {"local-member-id", util::IdToHex(self)},
                                      {"updated-remote-peer-id", util::IdToHex(m.id())},
                                      {"updated-remote-peer-urls", ToVector(m.peer_urls())}});
        } else if (it->second.is_learner() && !m.is_learner()) {
          lg_.Info("promote member", {{"cluster-id", util::IdToHex(cluster_id_)},
                                      {"local-member-id", util::IdToHex(self)},
                                      {"promoted-member-id", util::IdToHex(m.id())}});
        }
        if (m.id() != self) peer_update.emplace(m.id(), ToVector(m.peer_urls()));
        if (m.id() == self) self_learner_ = m.is_learner();
        members_[m.id()] = std::move(m);
        break;
      }
      case raftpb::ConfChangeRemoveNode: {
        // Fixed-width keys: only a storage fault fails these.
        absl::Status ws = btx->Delete(storage::kMembersBucket, MemberKey(cc.node_id()));
        if (ws.ok()) ws = btx->Put(storage::kMembersRemovedBucket, MemberKey(cc.node_id()), "removed");
        if (!ws.ok()) lg_.Fatal("failed to write member", {{"error", ws.ToString()}});
        members_.erase(cc.node_id());
        removed_.insert(cc.node_id());
        lg_.Info("removed member", {{"cluster-id", util::IdToHex(cluster_id_)},
                                    {"local-member-id", util::IdToHex(self)},
                                    {"removed-remote-peer-id", util::IdToHex(cc.node_id())}});
        removed_self = cc.node_id() == self;
        break;
      }
      default:
        break;
    }
  }
  if (peer_update.has_value()) {
    transport_->AddPeer(peer_update->first, peer_update->second);
    transport_peers_.insert(peer_update->first);
  } else if (cc.type() == raftpb::ConfChangeRemoveNode && !removed_self) {
    transport_->RemovePeer(cc.node_id());
    transport_peers_.erase(cc.node_id());
  }
  if (removed_self) RequestSelfStop("the member has been permanently removed from the cluster");
}

etcdserverpb::AlarmResponse EtcdServer::Impl::ApplyAlarm(storage::WriteTxn* btx,
                                                          const etcdserverpb::AlarmRequest& ar) {
  etcdserverpb::AlarmResponse resp;
  etcdserverpb::AlarmMember am;
  am.set_memberid(ar.memberid());
  am.set_alarm(ar.alarm());
  const std::string key = am.SerializeAsString();
  util::MutexLock l(&alarm_mu_);
  switch (ar.action()) {
    case etcdserverpb::AlarmRequest::GET:
      for (const auto& [m, t] : alarms_) {
        if (ar.alarm() != etcdserverpb::NONE && t != ar.alarm()) continue;
        auto* a = resp.add_alarms();
        a->set_memberid(m);
        a->set_alarm(static_cast<etcdserverpb::AlarmType>(t));
      }
      break;
    case etcdserverpb::AlarmRequest::ACTIVATE: {
      if (ar.alarm() == etcdserverpb::NONE) break;
      if (!alarms_.insert({ar.memberid(), static_cast<int>(ar.alarm())}).second) break;
      if (auto s = btx->Put(storage::kAlarmBucket, key, ""); !s.ok()) {
        lg_.Fatal("failed to write alarm", {{"error", s.ToString()}});
      }
      *resp.add_alarms() = am;
      if (ar.alarm() == etcdserverpb::NOSPACE) nospace_ = true;
      if (ar.alarm() == etcdserverpb::CORRUPT) corrupt_ = true;
      lg_.Warn("alarm raised", {{"alarm", AlarmName(ar.alarm())},
                                {"from", util::IdToHex(ar.memberid())}});
      break;
    }
    case etcdserverpb::AlarmRequest::DEACTIVATE: {
      if (alarms_.erase({ar.memberid(), static_cast<int>(ar.alarm())}) == 0) break;
      if (auto s = btx->Delete(storage::kAlarmBucket, key); !s.ok()) {
        lg_.Fatal("failed to delete alarm", {{"error", s.ToString()}});
      }
      *resp.add_alarms() = am;
      bool any_nospace = false;
      bool any_corrupt = false;
      for (const auto& [m, t] : alarms_) {
        any_nospace |= t == etcdserverpb::NOSPACE;
        any_corrupt |= t == etcdserverpb::CORRUPT;
      }
      nospace_ = any_nospace;
      corrupt_ = any_corrupt;
      lg_.Warn("alarm disarmed", {{"alarm", AlarmName(ar.alarm())},
                                  {"from", util::IdToHex(ar.memberid())}});
      break;
    }
    default:
      break;
  }
  return resp;
}

std::vector<etcdserverpb::AlarmMember> EtcdServer::Impl::ListAlarms(
    etcdserverpb::AlarmType type) const {
  std::vector<etcdserverpb::AlarmMember> out;
  util::MutexLock l(&alarm_mu_);
  for (const auto& [m, t] : alarms_) {
    if (type != etcdserverpb::NONE && t != type) continue;
    etcdserverpb::AlarmMember a;
    a.set_memberid(m);
    a.set_alarm(static_cast<etcdserverpb::AlarmType>(t));
    out.push_back(a);
  }
  return out;
}

}  // namespace cppetcd::server
