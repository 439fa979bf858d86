// EtcdServer apply loop: committed entries go into the backend in one write
// txn per batch together with the consistent index; conf changes update the
// member bucket, alarms the alarm bucket; waiters are completed before the
// commit (entries are durable in the WAL; see ApplyBatch); a raft snapshot
// is triggered every snapshot_count entries. Runs on the apply thread;
// CompleteWaiter is called from any thread.
#include "server_impl.h"

#include "crash_point.h"

namespace cppetcd::server {
namespace {

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
  applied_.SetPublisherThread(std::this_thread::get_id());
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
  waits_->Complete(id, std::move(o));
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
          verdict = ApplyConfChange(btx, cc);
          if (!verdict.ok()) {
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
  // the replied index (AwaitRepliedWrites) so a client reads its own write;
  // linearizable reads wait for the applied index anyway.
  const auto tr = timer_clock_->Now();
  metrics_.stage_apply.Observe(std::chrono::duration<double>(tr - t0).count());
  if (!done.empty()) applied_.PublishReplied(last_index);
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
  applied_.Publish(last_index);
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
    if (auto s = membership_.ApplyAttributes(btx, req->member_attributes()); !s.ok()) {
      lg_.Fatal("failed to write member", {{"error", s.status().ToString()}});
    }
    return o;
  }
  if (req->has_alarm()) {
    auto resp = alarm_store_.Apply(btx, req->alarm());
    if (!resp.ok()) lg_.Fatal("failed to write alarm", {{"error", resp.status().ToString()}});
    o.alarm = std::move(*resp);
    return o;
  }
  if (ApplyAuthRequest(btx, e, *req, &o)) return o;
  if (o.status = CheckAtApply(*req); !o.status.ok()) return o;
  if (alarm_store_.NoSpace() && GrowsBackend(*req)) {
    o.status = ErrNoSpace();
    return o;
  }
  // etcd applierV3Corrupt: every write fails while CORRUPT is active.
  if (alarm_store_.Corrupt() && (req->has_put() || req->has_delete_range() || req->has_txn() ||
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

absl::Status EtcdServer::Impl::ApplyConfChange(storage::WriteTxn* btx,
                                               const raftpb::ConfChange& cc) {
  const uint64_t self = member_id_.load();
  auto r = membership_.ApplyConfChange(btx, cc);
  if (!r.ok()) lg_.Fatal("failed to write member", {{"error", r.status().ToString()}});
  const serverpb::MemberRecord& m = r->member;
  using Kind = ConfChangeResult::Kind;
  switch (r->kind) {
    case Kind::kNone:
      return r->verdict;
    case Kind::kAdded:
      lg_.Info("added member", {{"cluster-id", util::IdToHex(cluster_id_)},
                                {"local-member-id", util::IdToHex(self)},
                                {"added-peer-id", util::IdToHex(m.id())},
                                {"added-peer-peer-urls", ToVector(m.peer_urls())},
                                {"added-peer-is-learner", m.is_learner()}});
      break;
    case Kind::kUpdated:
      lg_.Info("updated member", {{"cluster-id", util::IdToHex(cluster_id_)},
                                  {"local-member-id", util::IdToHex(self)},
                                  {"updated-remote-peer-id", util::IdToHex(m.id())},
                                  {"updated-remote-peer-urls", ToVector(m.peer_urls())}});
      break;
    case Kind::kPromoted:
      lg_.Info("promote member", {{"cluster-id", util::IdToHex(cluster_id_)},
                                  {"local-member-id", util::IdToHex(self)},
                                  {"promoted-member-id", util::IdToHex(m.id())}});
      break;
    case Kind::kRemoved:
      lg_.Info("removed member", {{"cluster-id", util::IdToHex(cluster_id_)},
                                  {"local-member-id", util::IdToHex(self)},
                                  {"removed-remote-peer-id", util::IdToHex(m.id())}});
      if (m.id() == self) {
        RequestSelfStop("the member has been permanently removed from the cluster");
      } else {
        transport_->RemovePeer(m.id());
        transport_peers_.erase(m.id());
      }
      return r->verdict;
  }
  if (m.id() != self) {
    transport_->AddPeer(m.id(), ToVector(m.peer_urls()));
    transport_peers_.insert(m.id());
  }
  return r->verdict;
}

}  // namespace cppetcd::server
