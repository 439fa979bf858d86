// Private header of EtcdServer's implementation (src/server only): the Impl
// class behind EtcdServer's pimpl, the proposal Outcome/Waiter types and the
// helpers several of its files share. The implementation is split by concept:
//   bootstrap.cc     Create, OpenOrBootstrap, Start, Stop
//   raft_loop.cc     the raft thread (ticks, Readies, WAL, snapshots)
//   apply_loop.cc    the apply thread (committed entries into the backend)
//   proposals.cc     Propose and the quota check (any thread)
//   reads.cc         linearizable reads (the read thread)
// and the types it keeps its concepts in (each with a unit test):
//   wait_registry.h  proposal waiters by request ID (etcd pkg/wait)
//   applied_index.h  applied/replied index and the waits on it
//   read_index.h     the linearizable-read queue (ReadIndex batches)
//   maintenance_thread.h  defragmentations and corruption checks (etcd
//                    corrupt.go), on one thread, over a MaintenanceHost
//   disk_reservation.h  disk room for client-requested backend copies
//   housekeeping.cc  timeouts, lease expiry, publish, auto compaction
//   membership.cc    member add/remove/update/promote, safety checks
//   peers.cc         the PeerHandler side (raft messages, forwarded calls),
//                    snapshot sending, leadership transfer
//   restore.cc       installing a received snapshot's backend
//   etcd_server.cc   the public EtcdServer facade
// Concepts with their own types, invariants and unit tests: membership_store.h
// (Membership: members, removed IDs), alarm_store.h (AlarmStore),
// compactor.h (auto compaction planning).
//
// EtcdServer: bootstrap, raft loop, apply loop, proposals, reads, leases,
// compaction, alarms, members, status. See etcd_server.h for the threads.
//
// Data dir (as etcd): <data-dir>/member/wal (WAL, or --wal-dir),
// <data-dir>/member/snap (raft snapshot files), <data-dir>/member/snap/db
// (LMDB backend). The backend's meta bucket holds "consistent_index" (8 bytes
// big-endian): the last raft index applied to it, written in the same write
// txn as the entries' effects, so replay after a crash skips what the
// backend already has.
#ifndef CPPETCD_SRC_SERVER_SERVER_IMPL_H_
#define CPPETCD_SRC_SERVER_SERVER_IMPL_H_

#include "cppetcd/server/etcd_server.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "cppetcd/auth/store.h"
#include "cppetcd/lease/lessor.h"
#include "cppetcd/mvcc/kvstore.h"
#include "cppetcd/mvcc/watchable_store.h"
#include "cppetcd/raft/raw_node.h"
#include "cppetcd/raft/storage.h"
#include "cppetcd/server/applier.h"
#include "cppetcd/snap/snapshotter.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/util/env.h"
#include "cppetcd/util/mutex.h"
#include "cppetcd/wal/wal.h"
#include "serverpb/internal.pb.h"
#include "alarm_store.h"
#include "applied_index.h"
#include "compactor.h"
#include "disk_reservation.h"
#include "id_generator.h"
#include "maintenance_thread.h"
#include "membership_store.h"
#include "read_index.h"
#include "wait_registry.h"

namespace cppetcd::server {

using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Shared by bootstrap and the apply loop.
inline constexpr std::string_view kConsistentIndexKey = "consistent_index";

// Shared by the proposal path (quota check) and the apply loop (NOSPACE).
// Estimated bytes a put adds to the backend beyond key and value (etcd
// quota.go kvOverhead).
inline constexpr int64_t kKvOverhead = 256;

inline std::string DurationString(milliseconds d) {
  if (d.count() % 1000 == 0) return absl::StrCat(d.count() / 1000, "s");
  return absl::StrCat(d.count(), "ms");
}

inline bool TxnHasWrites(const etcdserverpb::TxnRequest& t) {
  return !Applier::IsTxnReadOnly(t);
}

// etcd quota.go: the bytes a request may add to the backend.
inline int64_t QuotaCost(const serverpb::InternalRaftRequest& r) {
  if (r.has_put()) return static_cast<int64_t>(r.put().ByteSizeLong()) + kKvOverhead;
  if (r.has_txn()) {
    int64_t cost = 0;
    std::vector<const etcdserverpb::TxnRequest*> todo = {&r.txn()};
    while (!todo.empty()) {
      const auto* t = todo.back();
      todo.pop_back();
      int64_t s = 0, f = 0;
      for (const auto& op : t->success()) {
        if (op.has_request_put()) s += op.request_put().ByteSizeLong() + kKvOverhead;
        if (op.has_request_txn()) todo.push_back(&op.request_txn());
      }
      for (const auto& op : t->failure()) {
        if (op.has_request_put()) f += op.request_put().ByteSizeLong() + kKvOverhead;
        if (op.has_request_txn()) todo.push_back(&op.request_txn());
      }
      cost += std::max(s, f);
    }
    return cost;
  }
  if (r.has_lease_grant()) return 8 + 8 + kKvOverhead;  // lease record
  return 0;
}

// Whether the request may grow the backend (refused under NOSPACE, as
// etcd's applierV3Capped: puts, lease grants, txns with a put anywhere).
inline bool GrowsBackend(const serverpb::InternalRaftRequest& r) {
  if (r.has_put() || r.has_lease_grant()) return true;
  return r.has_txn() && TxnHasWrites(r.txn()) && QuotaCost(r) > 0;
}

// ---------------------------------------------------------------------------

// Outcome and Waiter: wait_registry.h.

// Locks are util::Mutex (not absl::Mutex): Debian's abseil is not built with
// TSan, so its mutexes are invisible to the TSan pass. Lock order: none of
// the mutexes below is held while taking another, except where noted, and
// no callback (Done, waiter) runs under any of them.
// An item of the apply queue: a raft snapshot to install (received from the
// leader; empty if none), then committed entries, in log order.
struct ApplyItem {
  raftpb::Snapshot snapshot;
  std::vector<raftpb::Entry> entries;
  std::chrono::steady_clock::time_point queued;  // for the apply_queue stage metric
};

class EtcdServer::Impl final : public PeerHandler {
 public:
  explicit Impl(ServerConfig cfg);
  ~Impl() override;

  // ---- PeerHandler (peers.cc; any transport thread)
  uint64_t ClusterId() const override { return cluster_id_.load(); }
  uint64_t MemberId() const override { return member_id_.load(); }
  absl::Status Process(raftpb::Message m) override;
  std::string SnapshotDbPath(uint64_t snapshot_index) const override;
  void OnLocalMemberRemoved() override;
  void LeaseRenew(int64_t lease_id, PeerDone<int64_t> done) override;
  void LeaseTimeToLive(const etcdserverpb::LeaseTimeToLiveRequest& req,
                       PeerDone<etcdserverpb::LeaseTimeToLiveResponse> done) override;
  void MemberPromote(const etcdserverpb::MemberPromoteRequest& req,
                     PeerDone<etcdserverpb::MemberPromoteResponse> done) override;
  serverpb::ClusterInfo ClusterInfo() const override;

  // ---- client calls that may be routed to the leader (peers.cc)
  void RouteLeaseRenew(int64_t id, SteadyClock::time_point deadline, Done<int64_t> done);
  void RouteLeaseTimeToLive(etcdserverpb::LeaseTimeToLiveRequest req,
                            SteadyClock::time_point deadline,
                            Done<etcdserverpb::LeaseTimeToLiveResponse> done);
  void RoutePromote(etcdserverpb::MemberPromoteRequest req, SteadyClock::time_point deadline,
                    Done<etcdserverpb::MemberPromoteResponse> done);
  etcdserverpb::LeaseTimeToLiveResponse LocalTimeToLive(
      const etcdserverpb::LeaseTimeToLiveRequest& req);
  void MoveLeader(uint64_t target, Done<etcdserverpb::MoveLeaderResponse> done);
  void PollMoveLeader(uint64_t target, SteadyClock::time_point start,
                      SteadyClock::time_point deadline,
                      Done<etcdserverpb::MoveLeaderResponse> done);
  // Graceful stop: hand leadership to the best voter (raft thread must run).
  void TransferLeadershipOnStop();
  void SendSnapshotAsync(raftpb::Message m);
  // Snapshot metadata matching a backend copy: its consistent index, that
  // entry's term and the membership stored in it.
  absl::StatusOr<raftpb::SnapshotMetadata> DescribeBackendCopy(const std::string& path);
  // Runs `fn` on the raft thread and waits for its result (not from the
  // raft thread). nullopt when the raft loop is gone or `timeout` passes.
  std::optional<raft::Status> RaftStatus(milliseconds timeout);

  // ---- membership (membership.cc)
  void MemberAdd(const etcdserverpb::MemberAddRequest& req,
                 Done<etcdserverpb::MemberAddResponse> done);
  void MemberRemove(const etcdserverpb::MemberRemoveRequest& req,
                    Done<etcdserverpb::MemberRemoveResponse> done);
  void MemberUpdate(const etcdserverpb::MemberUpdateRequest& req,
                    Done<etcdserverpb::MemberUpdateResponse> done);
  void LocalPromote(const etcdserverpb::MemberPromoteRequest& req,
                    Done<etcdserverpb::MemberPromoteResponse> done);
  void ProposeConfChange(raftpb::ConfChange cc, Waiter w);
  template <class Resp>
  Waiter AnswerWithMembers(Done<Resp> done, absl::AnyInvocable<void(Resp*)> fill);
  void SyncTransportPeers();
  // The other members with their peer URLs (membership_.Peers).
  std::vector<std::pair<uint64_t, std::vector<std::string>>> CurrentPeers() const {
    return membership_.Peers(member_id_.load());
  }

  // ---- snapshots from the leader (restore.cc; apply thread or Start)
  void InstallSnapshot(const raftpb::Snapshot& snap);
  absl::Status RestoreBackendFrom(const std::string& db_path);

  absl::Status Start();
  void Stop(bool graceful);

  // ---- proposals
  void Propose(serverpb::InternalRaftRequest r, Waiter w);
  template <class Resp>
  Waiter MakeWaiter(Done<Resp> done);
  absl::Status CheckQuota(const serverpb::InternalRaftRequest& r);
  // The backend bytes CheckQuota compares with quota_bytes_ for a request
  // of `cost` bytes: the pages in use (see proposals.cc). Any thread.
  int64_t QuotaUsedBytes(int64_t cost) const;
  // Room on the data dir's file system for a client-requested copy of the
  // backend (snapshot stream, defragmentation): disk_reservation.h.
  absl::Status ReserveDisk(std::string_view what, uint64_t bytes) {
    return disk_->Reserve(what, bytes);
  }
  void ReleaseDisk(uint64_t bytes) { disk_->Release(bytes); }
  // What a compact copy of the backend is expected to take on disk.
  uint64_t BackendCopyEstimateBytes() const;
  bool Stopping() const { return stopping_.load(std::memory_order_acquire); }

  // ---- reads
  using ReadFn = ReadIndexQueue::ReadFn;
  void EnqueueLinearizableRead(ReadFn fn);
  // Blocks until every write whose reply went out is committed and
  // published in the store (applied >= replied, applied_index.h), at most
  // request_timeout or until the server stops. Any thread but the apply
  // thread; returns at once in the common case (nothing in flight).
  void AwaitRepliedWrites() const;
  void FillHeaderImpl(etcdserverpb::ResponseHeader* h, bool set_revision) const;

  // ---- threads
  void RaftLoop();
  void HandleReady(raft::Ready rd);
  void ProposeHeld();
  void ApplyLoop();
  void ApplyBatch(std::vector<raftpb::Entry> entries);
  void ReadLoop();
  void HousekeepingLoop();
  // Queues `task` for the raft thread; false (task dropped) once it stopped.
  bool PostRaftTask(absl::AnyInvocable<void()> task);
  // Runs `fn` on the housekeeping thread after `delay` (retries, polls).
  // Dropped (not run) if the server stops first.
  void PostDelayed(milliseconds delay, absl::AnyInvocable<void()> fn);
  void RequestSelfStop(std::string_view why);
  void MaybeFastForwardTicks();
  void TakeSnapshot(uint64_t index);

  // ---- apply helpers (apply thread)
  Outcome ApplyNormal(storage::WriteTxn* btx, const raftpb::Entry& e,
                      serverpb::InternalRaftRequest* req, bool* has_waiter);
  // Validates and applies `cc` to membership_ and the transport; the
  // verdict for the waiter (not OK: the change is ignored).
  absl::Status ApplyConfChange(storage::WriteTxn* btx, const raftpb::ConfChange& cc);
  void CompleteWaiter(uint64_t id, Outcome o);

  // ---- auth (auth.cc)
  absl::Status OpenAuthStore();
  // The user `caller` (passed with the request) resolves to: empty
  // AuthInfo when it carries nothing; ErrInvalidAuthToken for a bad token.
  absl::StatusOr<auth::AuthInfo> CallerAuthInfo(const auth::Credentials& caller) const;
  // Stamps the caller into the request header; the caller's error if any.
  absl::Status StampCaller(const auth::Credentials& caller, serverpb::InternalRaftRequest* r) const;
  // Stamps user root at the current auth revision: the server's own
  // requests (lease expiry), as etcd's AuthStore.WithRoot.
  void StampRoot(serverpb::InternalRaftRequest* r) const;
  // Apply side: the auth checks of a KV/lease request (etcd authApplierV3),
  // and the auth requests themselves (true if `req` was one).
  absl::Status CheckAtApply(const serverpb::InternalRaftRequest& req);
  bool ApplyAuthRequest(storage::WriteTxn* btx, const raftpb::Entry& e,
                        const serverpb::InternalRaftRequest& req, Outcome* o);
  template <class Resp>
  void ProposeAuth(const auth::Credentials& caller, serverpb::InternalRaftRequest r,
                   Done<Resp> done);
  void AuthenticateAttempt(etcdserverpb::AuthenticateRequest req, int attempts_left,
                           Done<etcdserverpb::AuthenticateResponse> done);
  // Waits until `index` is applied here, at most `timeout`; false if not.
  bool WaitApplied(uint64_t index, milliseconds timeout);

  // ---- misc
  absl::Status OpenOrBootstrap();
  absl::Status JoinExistingCluster(serverpb::WalMetadata* md);
  absl::Status ForceNewCluster(raftpb::HardState* hs, std::vector<raftpb::Entry>* entries,
                               const raftpb::Snapshot& snapshot);
  absl::Status LoadMembersAndAlarms();
  void Publish();
  void MaybeAdvanceInitialTicks();
  void CheckLeaseExpiry();
  // Leader with lease checkpoints: proposes the due checkpoints, one entry
  // of up to lease::kMaxCheckpointBatchSize at a time.
  void ProposeLeaseCheckpoints();
  // Keep-alive on the primary: a lease with a checkpointed remaining TTL is
  // first reset to its full TTL through raft (etcd Renew), then renewed.
  void RenewOnPrimary(int64_t id, absl::AnyInvocable<void(absl::StatusOr<int64_t>) &&> done);
  void RunAutoCompaction();

  ServerConfig cfg_;
  util::Logger lg_;
  util::Clock* clock_;
  util::Clock* timer_clock_;  // cfg_.timer_clock or SystemClock: timers, durations
  util::Env* env_;
  std::shared_ptr<Transport> transport_;
  ServerMetrics metrics_;

  std::atomic<uint64_t> member_id_{0};
  std::atomic<uint64_t> cluster_id_{0};
  std::string member_dir_, wal_dir_, snap_dir_, db_path_;
  int64_t quota_bytes_ = 0;  // <= 0: no quota
  milliseconds compaction_period_{0};
  int64_t compaction_revisions_ = 0;
  std::unique_ptr<IdGenerator> idgen_;
  std::vector<std::string> peer_urls_;  // this member's advertised peer URLs

  // Storage and state machines (owned; created in Start).
  std::unique_ptr<raft::MemoryStorage> raft_storage_;
  std::unique_ptr<raft::RawNode> node_;  // raft thread only after Start
  std::unique_ptr<wal::Wal> wal_;        // raft thread only after Start
  std::unique_ptr<snap::Snapshotter> snapshotter_;
  std::unique_ptr<storage::Backend> backend_;
  std::unique_ptr<lease::Lessor> lessor_;
  std::unique_ptr<LessorLeaseObserver> lease_observer_;
  std::unique_ptr<mvcc::Store> store_;
  std::unique_ptr<mvcc::WatchableStore> watchable_;
  std::unique_ptr<Applier> applier_;
  // Created in Start, kept until destruction (calls may race with Stop).
  std::unique_ptr<auth::AuthStore> auth_;
  util::Logger raft_logger_{"raft"};

  // Volatile raft state published by the raft thread.
  std::atomic<uint64_t> term_{0};
  std::atomic<uint64_t> lead_{0};
  std::atomic<uint64_t> commit_index_{0};
  bool fast_forwarded_ = false;                  // raft thread
  std::deque<std::pair<uint64_t, std::string>> held_proposals_;  // raft thread; no leader yet
  uint64_t last_snapshot_index_raft_ = 0;        // raft thread
  // Conf change entries handed to the apply loop, and those it has handed
  // back to raft (ApplyConfChange). Raft thread.
  uint64_t conf_changes_handed_ = 0;
  uint64_t conf_changes_applied_to_raft_ = 0;

  std::atomic<bool> started_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stopped_{false};

  // Raft loop inputs.
  util::Mutex raft_mu_;
  util::CondVar raft_cv_;
  std::deque<std::pair<uint64_t, std::string>> proposals_ ABSL_GUARDED_BY(raft_mu_);
  // When the oldest entry of proposals_ was queued (propose_queue metric).
  SteadyClock::time_point proposals_oldest_ ABSL_GUARDED_BY(raft_mu_);
  std::vector<absl::AnyInvocable<void()>> raft_tasks_ ABSL_GUARDED_BY(raft_mu_);
  std::vector<raftpb::Message> incoming_ ABSL_GUARDED_BY(raft_mu_);  // from peers
  bool raft_stop_ ABSL_GUARDED_BY(raft_mu_) = false;
  std::thread raft_thread_;

  // Apply loop input: batches of committed entries, in log order.
  util::Mutex apply_mu_;
  util::CondVar apply_cv_;
  std::deque<ApplyItem> apply_queue_ ABSL_GUARDED_BY(apply_mu_);
  bool apply_stop_ ABSL_GUARDED_BY(apply_mu_) = false;
  bool apply_drain_ ABSL_GUARDED_BY(apply_mu_) = true;  // finish queued batches on stop
  std::thread apply_thread_;
  uint64_t consistent_index_ = 0;        // apply thread (and Start)
  uint64_t snapshot_index_ = 0;          // apply thread: index of the last raft snapshot
  uint64_t snapshot_term_ = 0;

  // Applied and replied index, for ReadIndex waits, local reads and status
  // (applied_index.h); the apply thread publishes.
  AppliedIndex applied_;
  // Proposal waiters by request ID and physical compaction waits
  // (wait_registry.h); created in the constructor.
  std::unique_ptr<WaitRegistry> waits_;
  // Linearizable reads (read_index.h), served by the read thread (ReadLoop).
  std::unique_ptr<ReadIndexQueue> reads_;
  std::thread read_thread_;

  // Housekeeping.
  util::Mutex hk_mu_;
  util::CondVar hk_cv_;
  bool hk_stop_ ABSL_GUARDED_BY(hk_mu_) = false;
  std::thread hk_thread_;
  SteadyClock::time_point next_lease_check_{};
  // A lease checkpoint entry proposed and not yet answered: at most one at
  // a time, as etcd's checkpointer waits for each (housekeeping thread sets,
  // the waiter clears).
  std::atomic<bool> checkpoint_in_flight_{false};
  std::atomic<bool> publish_in_flight_{false};
  bool initial_advance_done_ = false;            // housekeeping thread
  SteadyClock::time_point started_at_{};         // housekeeping thread
  std::atomic<bool> publish_done_{false};
  // Auto compaction state (housekeeping thread).
  std::unique_ptr<PeriodicCompactor> periodic_compactor_;
  std::unique_ptr<RevisionCompactor> revision_compactor_;
  bool compaction_in_flight_ = false;
  std::atomic<bool> compaction_done_flag_{false};
  std::atomic<bool> compaction_ok_flag_{false};
  struct Delayed {
    SteadyClock::time_point at;
    absl::AnyInvocable<void()> fn;
  };
  std::vector<Delayed> delayed_ ABSL_GUARDED_BY(hk_mu_);

  // Snapshot senders (one thread per MsgSnap in flight), joined at Stop.
  util::Mutex senders_mu_;
  std::vector<std::thread> snapshot_senders_ ABSL_GUARDED_BY(senders_mu_);
  std::atomic<bool> stop_requested_{false};
  std::set<uint64_t> transport_peers_;  // peers handed to the transport (SyncTransportPeers)

  // Ready (published) signal.
  util::Mutex ready_mu_;
  util::CondVar ready_cv_;
  bool ready_ ABSL_GUARDED_BY(ready_mu_) = false;

  // Members and alarms (their buckets' state; loaded by
  // LoadMembersAndAlarms, changed by the apply thread).
  Membership membership_;
  AlarmStore alarm_store_{lg_};

  // ---- maintenance (maintenance.cc): one thread runs defragmentations and
  // the corruption checks (maintenance_thread.h), over this server through
  // MaintenanceHostImpl; copies of the backend reserve disk room
  // (disk_reservation.h).
  void HashKVLocal(int64_t revision, PeerDone<etcdserverpb::HashKVResponse> done);
  void HashKV(int64_t revision, PeerDone<etcdserverpb::HashKVResponse> done) override {
    HashKVLocal(revision, std::move(done));
  }
  // Creates disk_, maintenance_host_ and maintenance_ (Create, once
  // member_dir_ is known).
  void InitMaintenance();
  // EtcdServer::Start, after Impl::Start: the initial check, then the thread.
  absl::Status StartMaintenance() { return maintenance_->Start(); }
  // Stop, before the apply loop ends: waits for a running defragmentation.
  void StopMaintenance() { maintenance_->Stop(); }
  class MaintenanceHostImpl;
  std::unique_ptr<DiskReservation> disk_;
  std::unique_ptr<MaintenanceHost> maintenance_host_;
  std::unique_ptr<Maintenance> maintenance_;  // after its host: destroyed first
};

// ---------------------------------------------------------------------------
// Proposals: the waiter template lives here because the facade instantiates it.

template <class Resp>
Waiter EtcdServer::Impl::MakeWaiter(Done<Resp> done) {
  return [this, done = std::move(done)](Outcome o) mutable {
    if (!o.status.ok()) {
      std::move(done)(std::move(o.status));
      return;
    }
    Resp* resp = std::get_if<Resp>(&o.result.response);
    Resp out;
    if (resp != nullptr) out = std::move(*resp);
    if (out.header().revision() == 0 && o.revision != 0) {
      out.mutable_header()->set_revision(o.revision);
    }
    FillHeaderImpl(out.mutable_header(), /*set_revision=*/out.header().revision() == 0);
    std::move(done)(std::move(out));
  };
}

}  // namespace cppetcd::server

#endif  // CPPETCD_SRC_SERVER_SERVER_IMPL_H_
