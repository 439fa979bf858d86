// EtcdServer: installing a raft snapshot received from the leader (etcd 3.4
// applySnapshot). The leader sent a consistent copy of its backend along with
// the MsgSnap; the transport stored it at SnapshotDbPath(index). The backend,
// the MVCC store, the watchable store and the lessor keep their identities
// (other threads hold them) and take the received contents; the members,
// alarms and peers are reloaded. Runs on the apply thread (InstallSnapshot)
// or in Start before the loops (RestoreBackendFrom).
#include "server_impl.h"

namespace cppetcd::server {

absl::Status EtcdServer::Impl::RestoreBackendFrom(const std::string& db_path) {
  if (auto s = backend_->ReplaceContentsFrom(db_path); !s.ok()) return s;
  return absl::OkStatus();
}

void EtcdServer::Impl::InstallSnapshot(const raftpb::Snapshot& snap) {
  const uint64_t index = snap.metadata().index();
  if (index <= consistent_index_) {
    // The backend already holds everything up to the snapshot.
    snapshot_index_ = std::max(snapshot_index_, index);
    return;
  }
  const auto t0 = timer_clock_->Now();
  lg_.Info("applying snapshot", {{"current-applied-index", consistent_index_},
                                 {"incoming-leader-snapshot-index", index},
                                 {"incoming-leader-snapshot-term", snap.metadata().term()}});
  const std::string path = SnapshotDbPath(index);
  if (!env_->FileExists(path)) {
    lg_.Fatal("failed to find database snapshot file", {{"path", path}});
  }
  // The store rebuilds around the replacement so that no reader pairs its
  // old index with the new data; leases exist before keys attach to them.
  absl::Status st = store_->Reload([&]() -> absl::Status {
    if (auto s = RestoreBackendFrom(path); !s.ok()) return s;
    auto rtx = backend_->BeginRead();
    if (!rtx.ok()) return rtx.status();
    auto ci = (*rtx)->Get(storage::kMetaBucket, kConsistentIndexKey);
    if (ci.ok() && ci->has_value() && (*ci)->size() == 8) {
      consistent_index_ = storage::GetBigEndian64((*ci)->data());
    } else {
      consistent_index_ = index;
    }
    if (auto s = lessor_->Restore(rtx->get()); !s.ok()) return s;
    if (auto s = auth_->Recover(rtx->get()); !s.ok()) return s;
    lg_.Info("restored lease store");
    return absl::OkStatus();
  });
  if (!st.ok()) {
    lg_.Fatal("failed to restore mvcc store from snapshot",
              {{"path", path}, {"error", st.ToString()}});
  }
  watchable_->Restore();
  lg_.Info("restored mvcc store", {{"consistent-index", consistent_index_}});
  if (auto s = LoadMembersAndAlarms(); !s.ok()) {
    lg_.Fatal("failed to restore members", {{"error", s.ToString()}});
  }
  SyncTransportPeers();
  snapshot_index_ = index;
  snapshot_term_ = snap.metadata().term();
  applied_.Publish(std::max(consistent_index_, index));
  metrics_.proposals_applied.store(applied_.applied(), std::memory_order_relaxed);
  (void)env_->RemoveFile(path);
  lg_.Info("applied snapshot",
           {{"applied-index", applied_.applied()},
            {"incoming-leader-snapshot-index", index},
            {"took", DurationString(std::chrono::duration_cast<milliseconds>(
                         timer_clock_->Now() - t0))}});
}

}  // namespace cppetcd::server
