// EtcdServer: bootstrap, raft loop, apply loop, proposals, reads, leases,
// compaction, alarms, members, status. See etcd_server.h for the threads.
//
// Data dir (as etcd): <data-dir>/member/wal (WAL, or --wal-dir),
// <data-dir>/member/snap (raft snapshot files), <data-dir>/member/snap/db
// (LMDB backend). The backend's meta bucket holds "consistent_index" (8 bytes
// big-endian): the last raft index applied to it, written in the same write
// txn as the entries' effects, so replay after a crash skips what the
// backend already has.
#include "cppetcd/server/etcd_server.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "cppetcd/lease/lessor.h"
#include "cppetcd/mvcc/kvstore.h"
#include "cppetcd/mvcc/watchable_store.h"
#include "cppetcd/raft/raw_node.h"
#include "cppetcd/raft/storage.h"
#include "cppetcd/server/applier.h"
#include "cppetcd/snap/snapshotter.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/util/env.h"
#include "cppetcd/wal/wal.h"
#include "serverpb/internal.pb.h"
#include "compactor.h"
#include "crash_point.h"
#include "id_generator.h"

namespace cppetcd::server {
namespace {

using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Proposals are refused while the apply loop is this far behind the commit
// index (etcd maxGapBetweenApplyAndCommitIndex).
constexpr uint64_t kMaxGapBetweenApplyAndCommit = 5000;
// A ReadIndex request without an answer is sent again after this long.
constexpr milliseconds kReadIndexRetry{500};
// Period of the lease-expiry check (etcd revokes expired leases from its
// run loop every 500 ms).
constexpr milliseconds kLeaseExpiryInterval{500};
// Period of the background housekeeping (waiter timeouts, physical
// compaction completions, publish retries).
constexpr milliseconds kHousekeepingInterval{20};
// Expired leases proposed for revocation per round.
constexpr size_t kMaxLeaseRevokesPerRound = 500;
// Raft entries kept in memory behind a snapshot so slow followers catch up
// without one (etcd SnapshotCatchUpEntries).
constexpr uint64_t kSnapshotCatchUpEntries = 5000;
constexpr int64_t kDefaultQuotaBytes = int64_t{2} << 30;
// Estimated bytes a put adds to the backend beyond key and value (etcd
// quota.go kvOverhead).
constexpr int64_t kKvOverhead = 256;
constexpr std::string_view kConsistentIndexKey = "consistent_index";
constexpr char kDefaultPeerUrl[] = "http://localhost:2380";

std::string MemberKey(uint64_t id) { return absl::StrFormat("%016x", id); }

std::string HumanBytes(int64_t n) {
  // etcd's humanize.Bytes (SI units, one decimal).
  const char* units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1000 && u < 5) {
    v /= 1000;
    ++u;
  }
  if (u == 0) return absl::StrCat(n, " B");
  return absl::StrFormat("%.1f %s", v, units[u]);
}

std::string DurationString(milliseconds d) {
  if (d.count() % 1000 == 0) return absl::StrCat(d.count() / 1000, "s");
  return absl::StrCat(d.count(), "ms");
}

// Parses --auto-compaction-retention: a Go duration ("1h", "30m", "90s",
// "1h30m") or a plain number of hours ("1", "0.5"). 0 disables.
absl::StatusOr<milliseconds> ParseRetentionPeriod(const std::string& s) {
  if (s.empty()) return milliseconds(0);
  double hours = 0;
  if (absl::SimpleAtod(s, &hours)) {
    return milliseconds(static_cast<int64_t>(hours * 3600.0 * 1000.0));
  }
  absl::Duration d;
  if (!absl::ParseDuration(s, &d)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid auto-compaction-retention \"", s, "\""));
  }
  return milliseconds(absl::ToInt64Milliseconds(d));
}

bool TxnHasWrites(const etcdserverpb::TxnRequest& t) {
  return !Applier::IsTxnReadOnly(t);
}

// etcd quota.go: the bytes a request may add to the backend.
int64_t QuotaCost(const serverpb::InternalRaftRequest& r) {
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
bool GrowsBackend(const serverpb::InternalRaftRequest& r) {
  if (r.has_put() || r.has_lease_grant()) return true;
  return r.has_txn() && TxnHasWrites(r.txn()) && QuotaCost(r) > 0;
}

std::string EncodeReadContext(uint64_t v) { return storage::EncodeBigEndian64(v); }

etcdserverpb::Member ToMemberPb(const serverpb::MemberRecord& m) {
  etcdserverpb::Member out;
  out.set_id(m.id());
  out.set_name(m.name());
  for (const auto& u : m.peer_urls()) out.add_peerurls(u);
  for (const auto& u : m.client_urls()) out.add_clienturls(u);
  out.set_islearner(m.is_learner());
  return out;
}

std::vector<std::string> ToVector(const google::protobuf::RepeatedPtrField<std::string>& f) {
  return std::vector<std::string>(f.begin(), f.end());
}

const char* AlarmName(etcdserverpb::AlarmType t) {
  switch (t) {
    case etcdserverpb::NOSPACE:
      return "NOSPACE";
    case etcdserverpb::CORRUPT:
      return "CORRUPT";
    default:
      return "NONE";
  }
}

}  // namespace

// ---------------------------------------------------------------------------

// The outcome of a proposal as seen by its waiter.
struct Outcome {
  absl::Status status;  // ErrStopped/ErrTimeout/... or the request's error
  ApplyResult result;
  std::optional<etcdserverpb::AlarmResponse> alarm;
};
using Waiter = absl::AnyInvocable<void(Outcome) &&>;

// Locks are std::mutex (not absl::Mutex): Debian's abseil is not built with
// TSan, so its mutexes are invisible to the TSan pass. Lock order: none of
// the mutexes below is held while taking another, except where noted, and
// no callback (Done, waiter) runs under any of them.
class EtcdServer::Impl {
 public:
  explicit Impl(ServerConfig cfg);
  ~Impl();

  absl::Status Start();
  void Stop(bool graceful);

  // ---- proposals
  void Propose(serverpb::InternalRaftRequest r, Waiter w);
  template <class Resp>
  Waiter MakeWaiter(Done<Resp> done);
  absl::Status CheckQuota(const serverpb::InternalRaftRequest& r);
  bool Stopping() const { return stopping_.load(std::memory_order_acquire); }

  // ---- reads
  using ReadFn = absl::AnyInvocable<void(absl::Status) &&>;
  void EnqueueLinearizableRead(ReadFn fn);
  void FillHeaderImpl(etcdserverpb::ResponseHeader* h, bool set_revision) const;

  // ---- threads
  void RaftLoop();
  void HandleReady(raft::Ready rd);
  void ProposeHeld();
  void ApplyLoop();
  void ApplyBatch(std::vector<raftpb::Entry> entries);
  void ReadLoop();
  void HousekeepingLoop();
  void PostRaftTask(absl::AnyInvocable<void()> task);
  void MaybeFastForwardTicks();
  void TakeSnapshot(uint64_t index);

  // ---- apply helpers (apply thread)
  Outcome ApplyNormal(storage::WriteTxn* btx, const raftpb::Entry& e,
                      serverpb::InternalRaftRequest* req, bool* has_waiter);
  void ApplyConfChange(storage::WriteTxn* btx, const raftpb::ConfChange& cc);
  etcdserverpb::AlarmResponse ApplyAlarm(storage::WriteTxn* btx,
                                         const etcdserverpb::AlarmRequest& ar);
  void CompleteWaiter(uint64_t id, Outcome o);

  // ---- misc
  absl::Status OpenOrBootstrap();
  absl::Status LoadMembersAndAlarms();
  void Publish();
  void CheckLeaseExpiry();
  void RunAutoCompaction();
  std::vector<etcdserverpb::AlarmMember> ListAlarms(etcdserverpb::AlarmType type) const;

  ServerConfig cfg_;
  util::Logger lg_;
  util::Clock* clock_;
  util::Env* env_;
  std::shared_ptr<Transport> transport_;
  ServerMetrics metrics_;

  std::atomic<uint64_t> member_id_{0};
  std::atomic<uint64_t> cluster_id_{0};
  std::vector<serverpb::MemberRecord> initial_members_;
  std::string member_dir_, wal_dir_, snap_dir_, db_path_;
  int64_t quota_bytes_ = 0;  // <= 0: no quota
  milliseconds compaction_period_{0};
  int64_t compaction_revisions_ = 0;
  std::unique_ptr<IdGenerator> idgen_;

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
  util::Logger raft_logger_{"raft"};

  // Volatile raft state published by the raft thread.
  std::atomic<uint64_t> term_{0};
  std::atomic<uint64_t> lead_{0};
  std::atomic<uint64_t> commit_index_{0};
  bool fast_forwarded_ = false;                  // raft thread
  std::deque<std::pair<uint64_t, std::string>> held_proposals_;  // raft thread; no leader yet
  uint64_t last_snapshot_index_raft_ = 0;        // raft thread

  std::atomic<bool> started_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stopped_{false};

  // Raft loop inputs.
  std::mutex raft_mu_;
  std::condition_variable raft_cv_;
  std::deque<std::pair<uint64_t, std::string>> proposals_ ABSL_GUARDED_BY(raft_mu_);
  std::vector<absl::AnyInvocable<void()>> raft_tasks_ ABSL_GUARDED_BY(raft_mu_);
  bool raft_stop_ ABSL_GUARDED_BY(raft_mu_) = false;
  std::thread raft_thread_;

  // Apply loop input: batches of committed entries, in log order.
  std::mutex apply_mu_;
  std::condition_variable apply_cv_;
  std::deque<std::vector<raftpb::Entry>> apply_queue_ ABSL_GUARDED_BY(apply_mu_);
  bool apply_stop_ ABSL_GUARDED_BY(apply_mu_) = false;
  bool apply_drain_ ABSL_GUARDED_BY(apply_mu_) = true;  // finish queued batches on stop
  std::thread apply_thread_;
  uint64_t consistent_index_ = 0;        // apply thread (and Start)
  uint64_t snapshot_index_ = 0;          // apply thread: index of the last raft snapshot
  uint64_t snapshot_term_ = 0;

  // Applied index, for ReadIndex waits and status.
  mutable std::mutex applied_mu_;
  std::condition_variable applied_cv_;
  uint64_t applied_index_ ABSL_GUARDED_BY(applied_mu_) = 0;
  std::atomic<uint64_t> applied_index_atomic_{0};

  // Proposal waiters by request ID.
  std::mutex wait_mu_;
  struct WaitEntry {
    Waiter fn;
    SteadyClock::time_point deadline;
  };
  absl::flat_hash_map<uint64_t, WaitEntry> waiters_ ABSL_GUARDED_BY(wait_mu_);
  struct PhysicalWait {
    std::shared_future<absl::Status> future;
    absl::AnyInvocable<void(absl::Status) &&> fn;
  };
  std::vector<PhysicalWait> physical_waits_ ABSL_GUARDED_BY(wait_mu_);

  // Linearizable reads.
  std::mutex read_mu_;
  std::condition_variable read_cv_;
  std::vector<ReadFn> pending_reads_ ABSL_GUARDED_BY(read_mu_);
  bool read_stop_ ABSL_GUARDED_BY(read_mu_) = false;
  std::string current_read_ctx_ ABSL_GUARDED_BY(read_mu_);
  std::optional<uint64_t> read_index_result_ ABSL_GUARDED_BY(read_mu_);
  uint64_t read_ctx_counter_ = 0;  // read thread
  std::thread read_thread_;

  // Housekeeping.
  std::mutex hk_mu_;
  std::condition_variable hk_cv_;
  bool hk_stop_ ABSL_GUARDED_BY(hk_mu_) = false;
  std::thread hk_thread_;
  SteadyClock::time_point next_lease_check_{};
  std::atomic<bool> publish_in_flight_{false};
  std::atomic<bool> publish_done_{false};
  // Auto compaction state (housekeeping thread).
  std::unique_ptr<PeriodicCompactor> periodic_compactor_;
  std::unique_ptr<RevisionCompactor> revision_compactor_;
  bool compaction_in_flight_ = false;
  std::atomic<bool> compaction_done_flag_{false};
  std::atomic<bool> compaction_ok_flag_{false};

  // Ready (published) signal.
  std::mutex ready_mu_;
  std::condition_variable ready_cv_;
  bool ready_ ABSL_GUARDED_BY(ready_mu_) = false;

  // Members and alarms (in-memory mirrors of their buckets).
  mutable std::mutex members_mu_;
  std::map<uint64_t, serverpb::MemberRecord> members_ ABSL_GUARDED_BY(members_mu_);
  mutable std::mutex alarm_mu_;
  std::set<std::pair<uint64_t, int>> alarms_ ABSL_GUARDED_BY(alarm_mu_);
  std::atomic<bool> nospace_{false};
};

// ---------------------------------------------------------------------------
// Construction and start-up.

EtcdServer::Impl::Impl(ServerConfig cfg)
    : cfg_(std::move(cfg)),
      lg_(cfg_.logger),
      clock_(cfg_.clock != nullptr ? cfg_.clock : util::SystemClock::Get()),
      env_(cfg_.env != nullptr ? cfg_.env : util::Env::Default()),
      transport_(cfg_.transport != nullptr ? cfg_.transport : std::make_shared<NoopTransport>()) {
  raft_logger_ = lg_.WithComponent("raft");
}

EtcdServer::Impl::~Impl() { Stop(/*graceful=*/true); }

absl::StatusOr<std::unique_ptr<EtcdServer>> EtcdServer::Create(ServerConfig config) {
  if (config.data_dir.empty()) return absl::InvalidArgumentError("data dir is required");
  if (config.name.empty()) return absl::InvalidArgumentError("member name is required");
  if (config.heartbeat_interval.count() <= 0 ||
      config.election_timeout < 5 * config.heartbeat_interval) {
    return absl::InvalidArgumentError(
        "election timeout must be at least 5 times the heartbeat interval");
  }
  if (config.initial_cluster.empty()) config.initial_cluster[config.name] = {kDefaultPeerUrl};
  if (!config.initial_cluster.contains(config.name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "couldn't find local name \"", config.name, "\" in the initial cluster configuration"));
  }
  auto impl = std::make_unique<Impl>(std::move(config));
  const ServerConfig& c = impl->cfg_;
  std::vector<uint64_t> ids;
  for (const auto& [name, urls] : c.initial_cluster) {
    serverpb::MemberRecord m;
    m.set_id(ComputeMemberId(urls, c.initial_cluster_token));
    if (m.id() == 0) return absl::InvalidArgumentError("cannot use 0 as member id");
    if (std::find(ids.begin(), ids.end(), m.id()) != ids.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("member exists with identical ID ", util::IdToHex(m.id())));
    }
    ids.push_back(m.id());
    m.set_name(name);
    for (const auto& u : urls) m.add_peer_urls(u);
    std::sort(m.mutable_peer_urls()->begin(), m.mutable_peer_urls()->end());
    if (name == c.name) impl->member_id_ = m.id();
    impl->initial_members_.push_back(std::move(m));
  }
  impl->cluster_id_ = ComputeClusterId(ids);
  impl->member_dir_ = c.data_dir + "/member";
  impl->wal_dir_ = c.wal_dir.empty() ? impl->member_dir_ + "/wal" : c.wal_dir;
  impl->snap_dir_ = impl->member_dir_ + "/snap";
  impl->db_path_ = impl->snap_dir_ + "/db";
  impl->quota_bytes_ = c.quota_backend_bytes == 0 ? kDefaultQuotaBytes : c.quota_backend_bytes;
  if (!c.auto_compaction_retention.empty() && c.auto_compaction_retention != "0") {
    if (c.auto_compaction_mode == "revision") {
      int64_t n = 0;
      if (!absl::SimpleAtoi(c.auto_compaction_retention, &n) || n < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "invalid auto-compaction-retention \"", c.auto_compaction_retention, "\""));
      }
      impl->compaction_revisions_ = n;
    } else if (c.auto_compaction_mode == "periodic" || c.auto_compaction_mode.empty()) {
      auto p = ParseRetentionPeriod(c.auto_compaction_retention);
      if (!p.ok()) return p.status();
      impl->compaction_period_ = *p;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown auto-compaction-mode \"", c.auto_compaction_mode, "\""));
    }
  }
  return std::unique_ptr<EtcdServer>(new EtcdServer(std::move(impl)));
}

absl::Status EtcdServer::Impl::OpenOrBootstrap() {
  const bool have_wal = wal::Wal::Exists(env_, wal_dir_);
  wal::Options wopts;
  wopts.logger = lg_.WithComponent("wal");
  wopts.on_fsync = [this](std::chrono::nanoseconds d) {
    metrics_.wal_fsyncs.fetch_add(1, std::memory_order_relaxed);
    metrics_.wal_fsync_total_ns.fetch_add(d.count(), std::memory_order_relaxed);
  };
  if (auto s = env_->CreateDirAll(snap_dir_); !s.ok()) return s;
  snapshotter_ = std::make_unique<snap::Snapshotter>(env_, snap_dir_, lg_.WithComponent("snap"));
  raft_storage_ = std::make_unique<raft::MemoryStorage>();

  // The backend first: a restart needs its consistent index.
  auto t0 = SteadyClock::now();
  storage::BackendOptions bopts;
  bopts.logger = lg_.WithComponent("backend");
  if (quota_bytes_ > 0) {
    bopts.map_size_bytes = std::max<uint64_t>(bopts.map_size_bytes,
                                              static_cast<uint64_t>(quota_bytes_) * 2);
  }
  auto be = storage::Backend::Open(db_path_, bopts);
  if (!be.ok()) return be.status();
  backend_ = std::move(*be);
  lg_.Info("opened backend db",
           {{"path", db_path_},
            {"took", absl::StrCat(std::chrono::duration_cast<std::chrono::microseconds>(
                                      SteadyClock::now() - t0)
                                      .count(),
                                  "µs")}});

  raft::Config rc;
  rc.election_tick = static_cast<int>(cfg_.election_timeout / cfg_.heartbeat_interval);
  rc.heartbeat_tick = 1;
  rc.storage = raft_storage_.get();
  rc.max_size_per_msg = 1024 * 1024;
  rc.max_inflight_msgs = 4096 / 8;
  rc.max_uncommitted_entries_size = 1 << 30;
  rc.check_quorum = true;
  rc.pre_vote = cfg_.pre_vote;
  rc.random_seed = static_cast<uint64_t>(clock_->WallMillis()) ^ member_id_.load();
  rc.logger = &raft_logger_;

  if (!have_wal) {
    if (cfg_.initial_cluster_state == ServerConfig::ClusterState::kExisting) {
      return absl::UnimplementedError(
          "joining an existing cluster (--initial-cluster-state=existing) is not supported yet");
    }
    serverpb::WalMetadata md;
    md.set_member_id(member_id_);
    md.set_cluster_id(cluster_id_);
    auto w = wal::Wal::Create(env_, wal_dir_, md.SerializeAsString(), wopts);
    if (!w.ok()) return w.status();
    wal_ = std::move(*w);
    rc.id = member_id_;
    lg_.Info("starting local member", {{"local-member-id", util::IdToHex(member_id_)},
                                       {"cluster-id", util::IdToHex(cluster_id_)}});
    auto node = raft::RawNode::Create(rc);
    if (!node.ok()) return node.status();
    node_ = std::move(*node);
    std::vector<raft::Peer> peers;
    for (const auto& m : initial_members_) {
      peers.push_back(raft::Peer{m.id(), m.SerializeAsString()});
    }
    if (auto s = node_->Bootstrap(peers); !s.ok()) return s;
    return absl::OkStatus();
  }

  // Restart: newest snapshot the WAL knows of, then the WAL after it.
  auto walsnaps = wal::Wal::ValidSnapshotEntries(env_, wal_dir_);
  if (!walsnaps.ok()) return walsnaps.status();
  raftpb::Snapshot snapshot;
  auto loaded = snapshotter_->LoadNewestAvailable(*walsnaps);
  if (loaded.ok()) {
    snapshot = std::move(*loaded);
    lg_.Info("recovered v2 store from snapshot",
             {{"snapshot-index", snapshot.metadata().index()}});
  } else if (!absl::IsNotFound(loaded.status()) && !snap::IsNoSnapshot(loaded.status())) {
    return loaded.status();
  }
  wal::WalSnapshot at{snapshot.metadata().index(), snapshot.metadata().term()};
  auto w = wal::Wal::Open(env_, wal_dir_, at, wopts);
  if (!w.ok()) return w.status();
  wal_ = std::move(*w);
  auto rr = wal_->ReadAll();
  if (!rr.ok()) return rr.status();
  serverpb::WalMetadata md;
  if (!md.ParseFromString(rr->metadata) || md.member_id() == 0) {
    return absl::DataLossError("WAL metadata is not a member/cluster ID record");
  }
  if (md.member_id() != member_id_) {
    lg_.Warn("member ID in the WAL differs from the configured one; using the WAL's",
             {{"wal-member-id", util::IdToHex(md.member_id())},
              {"configured-member-id", util::IdToHex(member_id_)}});
  }
  member_id_ = md.member_id();
  cluster_id_ = md.cluster_id();
  if (!raft::IsEmptySnapshot(snapshot)) {
    if (auto s = raft_storage_->ApplySnapshot(snapshot); !s.ok()) return s;
    snapshot_index_ = snapshot.metadata().index();
    snapshot_term_ = snapshot.metadata().term();
    last_snapshot_index_raft_ = snapshot_index_;
  }
  raft_storage_->SetHardState(rr->hard_state);
  if (auto s = raft_storage_->Append(rr->entries); !s.ok()) return s;
  lg_.Info("restarting local member", {{"cluster-id", util::IdToHex(cluster_id_)},
                                       {"local-member-id", util::IdToHex(member_id_)},
                                       {"commit-index", rr->hard_state.commit()}});
  rc.id = member_id_;
  // Raft hands back every committed entry after the snapshot: conf changes
  // rebuild its configuration, the apply loop skips what the backend has.
  rc.applied = snapshot.metadata().index();
  auto node = raft::RawNode::Create(rc);
  if (!node.ok()) return node.status();
  node_ = std::move(*node);
  term_ = rr->hard_state.term();
  commit_index_ = rr->hard_state.commit();
  return absl::OkStatus();
}

absl::Status EtcdServer::Impl::LoadMembersAndAlarms() {
  auto rtx = backend_->BeginRead();
  if (!rtx.ok()) return rtx.status();
  std::unique_lock<std::mutex> l(members_mu_);
  absl::Status bad;
  auto s = (*rtx)->Scan(storage::kMembersBucket, "", "", [&](std::string_view, std::string_view v) {
    serverpb::MemberRecord m;
    if (!m.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
      bad = absl::DataLossError("undecodable member record");
      return false;
    }
    members_[m.id()] = std::move(m);
    return true;
  });
  if (!s.ok()) return s;
  if (!bad.ok()) return bad;
  std::unique_lock<std::mutex> al(alarm_mu_);
  s = (*rtx)->Scan(storage::kAlarmBucket, "", "", [&](std::string_view k, std::string_view) {
    etcdserverpb::AlarmMember am;
    if (am.ParseFromArray(k.data(), static_cast<int>(k.size()))) {
      alarms_.insert({am.memberid(), static_cast<int>(am.alarm())});
      if (am.alarm() == etcdserverpb::NOSPACE) nospace_ = true;
    }
    return true;
  });
  return s;
}

absl::Status EtcdServer::Impl::Start() {
  if (started_.exchange(true)) return absl::FailedPreconditionError("server already started");
  std::vector<std::string> initial_cluster;
  for (const auto& m : initial_members_) {
    for (const auto& u : m.peer_urls()) initial_cluster.push_back(absl::StrCat(m.name(), "=", u));
  }
  lg_.Info("starting an etcd server",
           {{"etcd-version", kServerVersion},
            {"name", cfg_.name},
            {"data-dir", cfg_.data_dir},
            {"wal-dir", cfg_.wal_dir},
            {"member-dir", member_dir_},
            {"member-initialized", wal::Wal::Exists(env_, wal_dir_)},
            {"snapshot-count", cfg_.snapshot_count},
            {"heartbeat-interval", DurationString(cfg_.heartbeat_interval)},
            {"election-timeout", DurationString(cfg_.election_timeout)},
            {"advertise-client-urls", cfg_.advertise_client_urls},
            {"initial-cluster", initial_cluster},
            {"initial-cluster-state",
             cfg_.initial_cluster_state == ServerConfig::ClusterState::kNew ? "new" : "existing"},
            {"initial-cluster-token", cfg_.initial_cluster_token},
            {"quota-size-bytes", quota_bytes_},
            {"pre-vote", cfg_.pre_vote},
            {"auto-compaction-mode", cfg_.auto_compaction_mode},
            {"auto-compaction-retention", cfg_.auto_compaction_retention}});
  if (auto s = env_->CreateDirAll(member_dir_); !s.ok()) return s;
  if (auto s = OpenOrBootstrap(); !s.ok()) return s;

  // Lessor, then the store (its index rebuild attaches keys to leases).
  lease::LessorOptions lopts;
  const int election_ticks = static_cast<int>(cfg_.election_timeout / cfg_.heartbeat_interval);
  const double min_ttl = (3 * election_ticks / 2) * (cfg_.heartbeat_interval.count() / 1000.0);
  lopts.min_ttl_seconds = static_cast<int64_t>(std::ceil(min_ttl));
  lopts.clock = clock_;
  lopts.logger = lg_.WithComponent("lease");
  lessor_ = std::make_unique<lease::Lessor>(lopts);
  {
    auto rtx = backend_->BeginRead();
    if (!rtx.ok()) return rtx.status();
    if (auto s = lessor_->Recover(rtx->get()); !s.ok()) return s;
    auto ci = (*rtx)->Get(storage::kMetaBucket, kConsistentIndexKey);
    if (!ci.ok()) return ci.status();
    if (ci->has_value() && (*ci)->size() == 8) {
      consistent_index_ = storage::GetBigEndian64((*ci)->data());
    }
  }
  lease_observer_ = std::make_unique<LessorLeaseObserver>(lessor_.get());
  mvcc::StoreOptions sopts;
  sopts.logger = lg_.WithComponent("mvcc");
  sopts.lease_observer = lease_observer_.get();
  auto st = mvcc::Store::Open(backend_.get(), sopts);
  if (!st.ok()) return st.status();
  store_ = std::move(*st);
  mvcc::WatchOptions wopts;
  wopts.logger = lg_.WithComponent("mvcc-watch");
  watchable_ = std::make_unique<mvcc::WatchableStore>(store_.get(), wopts);
  ApplierOptions aopts;
  aopts.logger = lg_.WithComponent("apply");
  applier_ = std::make_unique<Applier>(store_.get(), lessor_.get(), aopts);
  if (auto s = LoadMembersAndAlarms(); !s.ok()) return s;
  if (consistent_index_ < snapshot_index_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "backend consistent index ", consistent_index_, " is behind the raft snapshot at ",
        snapshot_index_, "; the backend was lost"));
  }
  {
    std::unique_lock<std::mutex> l(applied_mu_);
    applied_index_ = std::max(consistent_index_, snapshot_index_);
    applied_index_atomic_ = applied_index_;
  }
  idgen_ = std::make_unique<IdGenerator>(member_id_, clock_->WallMillis());

  if (quota_bytes_ > 0) {
    if (cfg_.quota_backend_bytes == 0) {
      lg_.Info("enabled backend quota with default value",
               {{"quota-name", "v3-applier"},
                {"quota-size-bytes", quota_bytes_},
                {"quota-size", HumanBytes(quota_bytes_)}});
    } else {
      lg_.Info("enabled backend quota", {{"quota-name", "v3-applier"},
                                         {"quota-size-bytes", quota_bytes_},
                                         {"quota-size", HumanBytes(quota_bytes_)}});
    }
  }
  lg_.Info("starting etcd server", {{"local-member-id", util::IdToHex(member_id_)},
                                    {"local-server-version", kServerVersion},
                                    {"cluster-version", "to_be_decided"}});
  MaybeFastForwardTicks();
  raft_thread_ = std::thread([this] { RaftLoop(); });
  apply_thread_ = std::thread([this] { ApplyLoop(); });
  read_thread_ = std::thread([this] { ReadLoop(); });
  if (compaction_period_.count() > 0) {
    lg_.Info("starting auto periodic compaction",
             {{"compact-period", DurationString(compaction_period_)}});
  } else if (compaction_revisions_ > 0) {
    lg_.Info("starting auto revision compaction",
             {{"revision-compaction-retention", compaction_revisions_}});
  }
  if (compaction_period_.count() > 0) {
    periodic_compactor_ =
        std::make_unique<PeriodicCompactor>(compaction_period_, clock_->Now(), store_->Rev());
  } else if (compaction_revisions_ > 0) {
    revision_compactor_ = std::make_unique<RevisionCompactor>(compaction_revisions_, clock_->Now());
  }
  hk_thread_ = std::thread([this] { HousekeepingLoop(); });
  return absl::OkStatus();
}

void EtcdServer::Impl::Stop(bool graceful) {
  if (!started_.load() || stopped_.exchange(true)) return;
  stopping_ = true;
  if (graceful && lead_.load() == member_id_.load()) {
    lg_.Info("skipped leadership transfer for single voting member cluster",
             {{"local-member-id", util::IdToHex(member_id_)},
              {"current-leader-member-id", util::IdToHex(lead_)}});
  }
  {
    std::unique_lock<std::mutex> l(hk_mu_);
    hk_stop_ = true;
    hk_cv_.notify_one();
  }
  if (hk_thread_.joinable()) hk_thread_.join();
  {
    std::unique_lock<std::mutex> l(read_mu_);
    read_stop_ = true;
    read_cv_.notify_all();
  }
  {
    std::unique_lock<std::mutex> l(applied_mu_);
    applied_cv_.notify_all();
  }
  if (read_thread_.joinable()) read_thread_.join();
  {
    std::unique_lock<std::mutex> l(raft_mu_);
    raft_stop_ = true;
    raft_cv_.notify_one();
  }
  if (raft_thread_.joinable()) raft_thread_.join();
  {
    std::unique_lock<std::mutex> l(apply_mu_);
    apply_stop_ = true;
    apply_drain_ = graceful;
    apply_cv_.notify_one();
  }
  if (apply_thread_.joinable()) apply_thread_.join();

  // Whatever still waits will never complete.
  absl::flat_hash_map<uint64_t, WaitEntry> waiters;
  std::vector<PhysicalWait> physical;
  {
    std::unique_lock<std::mutex> l(wait_mu_);
    waiters.swap(waiters_);
    physical.swap(physical_waits_);
  }
  for (auto& [id, w] : waiters) {
    metrics_.proposals_pending.fetch_sub(1, std::memory_order_relaxed);
    std::move(w.fn)(Outcome{ErrStopped(), {}, std::nullopt});
  }
  for (auto& p : physical) std::move(p.fn)(ErrStopped());

  if (lessor_) lessor_->Demote();
  if (graceful) {
    if (backend_) {
      if (auto s = backend_->Sync(); !s.ok()) lg_.Error("failed to sync backend", {{"error", s.ToString()}});
    }
    if (wal_) {
      if (auto s = wal_->Close(); !s.ok()) lg_.Error("failed to close WAL", {{"error", s.ToString()}});
    }
  }
  // Tear down in dependency order.
  applier_.reset();
  watchable_.reset();
  store_.reset();
  lease_observer_.reset();
  lessor_.reset();
  node_.reset();
  wal_.reset();
  backend_.reset();
  if (graceful) lg_.Info("stopped etcd server", {{"local-member-id", util::IdToHex(member_id_)}});
}

// ---------------------------------------------------------------------------
// Raft loop.

void EtcdServer::Impl::PostRaftTask(absl::AnyInvocable<void()> task) {
  std::unique_lock<std::mutex> l(raft_mu_);
  if (raft_stop_) return;
  raft_tasks_.push_back(std::move(task));
  raft_cv_.notify_one();
}

void EtcdServer::Impl::MaybeFastForwardTicks() {
  // A lone voter need not wait a whole election timeout to lead (etcd
  // "started as single-node; fast-forwarding election ticks").
  if (fast_forwarded_) return;
  raft::Status st = node_->GetStatus();
  if (st.conf_state.voters_size() != 1 || st.conf_state.voters(0) != member_id_ ||
      st.soft_state.raft_state == raft::StateType::kLeader) {
    return;
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
  auto next_tick = SteadyClock::now() + cfg_.heartbeat_interval;
  while (true) {
    std::deque<std::pair<uint64_t, std::string>> props;
    std::vector<absl::AnyInvocable<void()>> tasks;
    {
      std::unique_lock<std::mutex> l(raft_mu_);
      while (!raft_stop_ && proposals_.empty() && raft_tasks_.empty()) {
        auto now = SteadyClock::now();
        if (now >= next_tick) break;
        raft_cv_.wait_until(l, next_tick);
      }
      if (raft_stop_) break;
      props.swap(proposals_);
      tasks.swap(raft_tasks_);
    }
    auto now = SteadyClock::now();
    if (now >= next_tick) {
      node_->Tick();
      next_tick += cfg_.heartbeat_interval;
      if (next_tick < now) next_tick = now + cfg_.heartbeat_interval;  // fell far behind
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
    std::unique_lock<std::mutex> l(raft_mu_);
    for (auto& p : proposals_) held_proposals_.push_back(std::move(p));
    proposals_.clear();
  }
  for (auto& [id, data] : held_proposals_) CompleteWaiter(id, Outcome{ErrStopped(), {}, std::nullopt});
  held_proposals_.clear();
}

void EtcdServer::Impl::ProposeHeld() {
  // Proposals wait here while no leader is known (as etcd's node blocks its
  // proposers); they time out at request_timeout if none appears.
  if (lead_.load(std::memory_order_relaxed) == raft::kNone) return;
  while (!held_proposals_.empty()) {
    auto [id, data] = std::move(held_proposals_.front());
    held_proposals_.pop_front();
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
  if (!rd.read_states.empty()) {
    std::unique_lock<std::mutex> l(read_mu_);
    for (const auto& rs : rd.read_states) {
      if (rs.request_ctx == current_read_ctx_) {
        read_index_result_ = rs.index;
        read_cv_.notify_all();
      }
    }
  }

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
    if (auto s = wal_->Save(rd.hard_state, rd.entries, rd.must_sync); !s.ok()) {
      lg_.Fatal("failed to save Raft hard state and entries", {{"error", s.ToString()}});
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
  if (!rd.messages.empty()) transport_->Send(std::move(rd.messages));
  CPPETCD_CRASH_POINT("raft_before_apply");
  if (!rd.committed_entries.empty()) {
    std::unique_lock<std::mutex> l(apply_mu_);
    // A copy: Advance needs the committed entries too (applied index,
    // uncommitted-size accounting).
    apply_queue_.push_back(rd.committed_entries);
    apply_cv_.notify_one();
  }
  CPPETCD_CRASH_POINT("raft_before_advance");
  node_->Advance(rd);
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
  if (index > kSnapshotCatchUpEntries) {
    uint64_t compact_index = index - kSnapshotCatchUpEntries;
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
}

// ---------------------------------------------------------------------------
// Apply loop.

void EtcdServer::Impl::ApplyLoop() {
  while (true) {
    std::vector<raftpb::Entry> batch;
    {
      std::unique_lock<std::mutex> l(apply_mu_);
      while (!apply_stop_ && apply_queue_.empty()) apply_cv_.wait(l);
      if (apply_queue_.empty() || (apply_stop_ && !apply_drain_)) break;
      // Merge everything queued into one backend txn.
      batch = std::move(apply_queue_.front());
      apply_queue_.pop_front();
      while (!apply_queue_.empty()) {
        for (auto& e : apply_queue_.front()) batch.push_back(std::move(e));
        apply_queue_.pop_front();
      }
    }
    ApplyBatch(std::move(batch));
  }
}

void EtcdServer::Impl::CompleteWaiter(uint64_t id, Outcome o) {
  Waiter fn;
  {
    std::unique_lock<std::mutex> l(wait_mu_);
    auto it = waiters_.find(id);
    if (it == waiters_.end()) return;
    fn = std::move(it->second.fn);
    waiters_.erase(it);
  }
  metrics_.proposals_pending.fetch_sub(1, std::memory_order_relaxed);
  if (!o.status.ok()) metrics_.proposals_failed.fetch_add(1, std::memory_order_relaxed);
  std::move(fn)(std::move(o));
}

void EtcdServer::Impl::ApplyBatch(std::vector<raftpb::Entry> entries) {
  const auto t0 = SteadyClock::now();
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
        if (has_waiter) done.emplace_back(req.header().id(), std::move(o));
        break;
      }
      case raftpb::EntryConfChange: {
        raftpb::ConfChange cc;
        if (!cc.ParseFromString(e.data())) lg_.Fatal("undecodable conf change entry", {{"index", e.index()}});
        if (!already_applied) ApplyConfChange(btx, cc);
        PostRaftTask([this, cc] {
          node_->ApplyConfChange(cc);
          MaybeFastForwardTicks();
        });
        break;
      }
      case raftpb::EntryConfChangeV2: {
        raftpb::ConfChangeV2 cc;
        if (!cc.ParseFromString(e.data())) lg_.Fatal("undecodable conf change entry", {{"index", e.index()}});
        PostRaftTask([this, cc] {
          node_->ApplyConfChange(cc);
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
  CPPETCD_CRASH_POINT("apply_before_commit");
  const auto tc = SteadyClock::now();
  if (auto s = btx->Commit(); !s.ok()) lg_.Fatal("failed to commit backend txn", {{"error", s.ToString()}});
  btx_or->reset();
  metrics_.backend_commits.fetch_add(1, std::memory_order_relaxed);
  metrics_.backend_commit_total_ns.fetch_add(
      std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now() - tc).count(),
      std::memory_order_relaxed);
  store_->OnCommit();
  CPPETCD_CRASH_POINT("apply_after_commit");
  {
    std::unique_lock<std::mutex> l(applied_mu_);
    if (last_index > applied_index_) applied_index_ = last_index;
    applied_index_atomic_ = applied_index_;
    applied_cv_.notify_all();
  }
  metrics_.proposals_applied.store(last_index, std::memory_order_relaxed);
  if (SteadyClock::now() - t0 > milliseconds(100)) {
    metrics_.slow_applies.fetch_add(1, std::memory_order_relaxed);
  }
  for (auto& [id, o] : done) CompleteWaiter(id, std::move(o));

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
    std::unique_lock<std::mutex> l(members_mu_);
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
  if (nospace_.load() && GrowsBackend(*req)) {
    o.status = ErrNoSpace();
    return o;
  }
  o.result = applier_->Apply(btx, *req);
  if (o.result.unhandled) {
    o.status = ErrUnimplemented("this request type");
  } else if (!o.result.error.ok()) {
    const auto code = o.result.error.code();
    if (code == absl::StatusCode::kInternal || code == absl::StatusCode::kDataLoss) {
      lg_.Fatal("failed to apply request", {{"index", e.index()}, {"error", o.result.error.ToString()}});
    }
    // One owner only: the waiter hands the status to another thread.
    o.status = o.result.error;
    o.result.error = absl::OkStatus();
  }
  return o;
}

void EtcdServer::Impl::ApplyConfChange(storage::WriteTxn* btx, const raftpb::ConfChange& cc) {
  std::unique_lock<std::mutex> l(members_mu_);
  switch (cc.type()) {
    case raftpb::ConfChangeAddNode:
    case raftpb::ConfChangeAddLearnerNode:
    case raftpb::ConfChangeUpdateNode: {
      serverpb::MemberRecord m;
      if (!cc.context().empty() && m.ParseFromString(cc.context())) {
        if (m.id() == 0) m.set_id(cc.node_id());
        auto it = members_.find(m.id());
        if (it != members_.end()) {
          // Keep published attributes; update raft attributes.
          if (m.name().empty()) m.set_name(it->second.name());
          if (m.client_urls_size() == 0) *m.mutable_client_urls() = it->second.client_urls();
        }
        if (cc.type() == raftpb::ConfChangeAddLearnerNode) m.set_is_learner(true);
        if (auto s = btx->Put(storage::kMembersBucket, MemberKey(m.id()), m.SerializeAsString());
            !s.ok()) {
          lg_.Fatal("failed to write member", {{"error", s.ToString()}});
        }
        if (it == members_.end()) {
          lg_.Info("added member", {{"cluster-id", util::IdToHex(cluster_id_)},
                                    {"local-member-id", util::IdToHex(member_id_)},
                                    {"added-peer-id", util::IdToHex(m.id())},
                                    {"added-peer-peer-urls", ToVector(m.peer_urls())}});
        }
        members_[m.id()] = std::move(m);
      }
      break;
    }
    case raftpb::ConfChangeRemoveNode: {
      (void)btx->Delete(storage::kMembersBucket, MemberKey(cc.node_id()));
      (void)btx->Put(storage::kMembersRemovedBucket, MemberKey(cc.node_id()), "removed");
      members_.erase(cc.node_id());
      lg_.Info("removed member", {{"cluster-id", util::IdToHex(cluster_id_)},
                                  {"removed-remote-peer-id", util::IdToHex(cc.node_id())}});
      break;
    }
    default:
      break;
  }
}

etcdserverpb::AlarmResponse EtcdServer::Impl::ApplyAlarm(storage::WriteTxn* btx,
                                                          const etcdserverpb::AlarmRequest& ar) {
  etcdserverpb::AlarmResponse resp;
  etcdserverpb::AlarmMember am;
  am.set_memberid(ar.memberid());
  am.set_alarm(ar.alarm());
  const std::string key = am.SerializeAsString();
  std::unique_lock<std::mutex> l(alarm_mu_);
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
      for (const auto& [m, t] : alarms_) any_nospace |= t == etcdserverpb::NOSPACE;
      nospace_ = any_nospace;
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
  std::unique_lock<std::mutex> l(alarm_mu_);
  for (const auto& [m, t] : alarms_) {
    if (type != etcdserverpb::NONE && t != type) continue;
    etcdserverpb::AlarmMember a;
    a.set_memberid(m);
    a.set_alarm(static_cast<etcdserverpb::AlarmType>(t));
    out.push_back(a);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Proposals.

void EtcdServer::Impl::Propose(serverpb::InternalRaftRequest r, Waiter w) {
  if (Stopping()) {
    std::move(w)(Outcome{ErrStopped(), {}, std::nullopt});
    return;
  }
  if (commit_index_.load() > applied_index_atomic_.load() + kMaxGapBetweenApplyAndCommit) {
    std::move(w)(Outcome{ErrTooManyRequests(), {}, std::nullopt});
    return;
  }
  const uint64_t id = idgen_->Next();
  r.mutable_header()->set_id(id);
  std::string data = r.SerializeAsString();
  if (data.size() > cfg_.max_request_bytes) {
    std::move(w)(Outcome{ErrRequestTooLarge(), {}, std::nullopt});
    return;
  }
  {
    std::unique_lock<std::mutex> l(wait_mu_);
    waiters_[id] = WaitEntry{std::move(w), SteadyClock::now() + cfg_.request_timeout};
  }
  metrics_.proposals_pending.fetch_add(1, std::memory_order_relaxed);
  bool raft_gone = false;
  {
    std::unique_lock<std::mutex> l(raft_mu_);
    raft_gone = raft_stop_;
    if (!raft_gone) {
      proposals_.emplace_back(id, std::move(data));
      raft_cv_.notify_one();
    }
  }
  // The raft loop is gone: fail at once.
  if (raft_gone) CompleteWaiter(id, Outcome{ErrStopped(), {}, std::nullopt});
}

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
    FillHeaderImpl(out.mutable_header(), /*set_revision=*/out.header().revision() == 0);
    std::move(done)(std::move(out));
  };
}

absl::Status EtcdServer::Impl::CheckQuota(const serverpb::InternalRaftRequest& r) {
  if (!GrowsBackend(r)) return absl::OkStatus();
  if (nospace_.load()) return ErrNoSpace();
  if (quota_bytes_ <= 0) return absl::OkStatus();
  const int64_t cost = QuotaCost(r);
  if (backend_->SizeBytes() + cost <= quota_bytes_) return absl::OkStatus();
  // Over quota: raise NOSPACE for this member through raft (etcd's quota
  // interceptor does the same) and refuse the request.
  lg_.Warn("backend quota exceeded; raising NOSPACE alarm",
           {{"quota-size-bytes", quota_bytes_}, {"current-db-size-bytes", backend_->SizeBytes()},
            {"request-cost-bytes", cost}});
  serverpb::InternalRaftRequest ar;
  ar.mutable_alarm()->set_action(etcdserverpb::AlarmRequest::ACTIVATE);
  ar.mutable_alarm()->set_memberid(member_id_);
  ar.mutable_alarm()->set_alarm(etcdserverpb::NOSPACE);
  Propose(std::move(ar), [](Outcome) {});
  return ErrNoSpace();
}

// ---------------------------------------------------------------------------
// Reads.

void EtcdServer::Impl::FillHeaderImpl(etcdserverpb::ResponseHeader* h, bool set_revision) const {
  h->set_cluster_id(cluster_id_.load());
  h->set_member_id(member_id_.load());
  h->set_raft_term(term_.load());
  if (set_revision && store_ != nullptr) h->set_revision(store_->Rev());
}

void EtcdServer::Impl::EnqueueLinearizableRead(ReadFn fn) {
  {
    std::unique_lock<std::mutex> l(read_mu_);
    if (!read_stop_) {
      pending_reads_.push_back(std::move(fn));
      read_cv_.notify_all();
      return;
    }
  }
  std::move(fn)(ErrStopped());
}

void EtcdServer::Impl::ReadLoop() {
  // etcd linearizableReadLoop: every read queued while the previous ReadIndex
  // round ran shares the next one.
  while (true) {
    std::vector<ReadFn> batch;
    std::string ctx;
    {
      std::unique_lock<std::mutex> l(read_mu_);
      while (!read_stop_ && pending_reads_.empty()) read_cv_.wait(l);
      if (read_stop_) break;
      batch.swap(pending_reads_);
      ctx = EncodeReadContext(++read_ctx_counter_);
      current_read_ctx_ = ctx;
      read_index_result_.reset();
    }
    const auto deadline = SteadyClock::now() + cfg_.request_timeout;
    absl::Status status;
    std::optional<uint64_t> index;
    while (true) {
      PostRaftTask([this, ctx] { node_->ReadIndex(ctx); });
      std::unique_lock<std::mutex> l(read_mu_);
      const auto retry_at = std::min(deadline, SteadyClock::now() + kReadIndexRetry);
      while (!read_stop_ && !read_index_result_.has_value() && SteadyClock::now() < retry_at) {
        read_cv_.wait_until(l, retry_at);
      }
      if (read_index_result_.has_value()) {
        index = read_index_result_;
        break;
      }
      if (read_stop_) {
        status = ErrStopped();
        break;
      }
      if (SteadyClock::now() >= deadline) {
        status = ErrTimeout();
        break;
      }
      lg_.Warn("waiting for ReadIndex response took too long, retrying",
               {{"sent-request-id", storage::GetBigEndian64(ctx.data())},
                {"retry-timeout", DurationString(kReadIndexRetry)}});
    }
    if (index.has_value()) {
      std::unique_lock<std::mutex> l(applied_mu_);
      while (applied_index_ < *index && !Stopping() && SteadyClock::now() < deadline) {
        applied_cv_.wait_until(l, deadline);
      }
      if (applied_index_ < *index) status = Stopping() ? ErrStopped() : ErrTimeout();
    }
    // Each caller gets its own Status object: a shared error rep's refcount
    // would be touched from many threads inside uninstrumented abseil code.
    for (auto& fn : batch) std::move(fn)(absl::Status(status.code(), status.message()));
  }
  std::vector<ReadFn> rest;
  {
    std::unique_lock<std::mutex> l(read_mu_);
    rest.swap(pending_reads_);
  }
  for (auto& fn : rest) std::move(fn)(ErrStopped());
}

// ---------------------------------------------------------------------------
// Housekeeping: timeouts, physical compactions, lease expiry, publish, auto
// compaction.

void EtcdServer::Impl::HousekeepingLoop() {
  while (true) {
    {
      std::unique_lock<std::mutex> l(hk_mu_);
      if (!hk_stop_) hk_cv_.wait_for(l, kHousekeepingInterval);
      if (hk_stop_) break;
    }
    const auto now = SteadyClock::now();
    // Proposal timeouts.
    std::vector<Waiter> expired;
    std::vector<PhysicalWait> finished;
    {
      std::unique_lock<std::mutex> l(wait_mu_);
      for (auto it = waiters_.begin(); it != waiters_.end();) {
        if (it->second.deadline <= now) {
          expired.push_back(std::move(it->second.fn));
          waiters_.erase(it++);
        } else {
          ++it;
        }
      }
      for (auto it = physical_waits_.begin(); it != physical_waits_.end();) {
        if (it->future.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
          finished.push_back(std::move(*it));
          it = physical_waits_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& fn : expired) {
      metrics_.proposals_pending.fetch_sub(1, std::memory_order_relaxed);
      metrics_.proposals_failed.fetch_add(1, std::memory_order_relaxed);
      std::move(fn)(Outcome{ErrTimeout(), {}, std::nullopt});
    }
    for (auto& p : finished) std::move(p.fn)(p.future.get());

    if (!publish_done_.load() && !publish_in_flight_) Publish();
    if (now >= next_lease_check_) {
      next_lease_check_ = now + kLeaseExpiryInterval;
      CheckLeaseExpiry();
    }
    RunAutoCompaction();
  }
}

void EtcdServer::Impl::Publish() {
  // etcd publish: the member's name and client URLs go through raft so every
  // member (and MemberList) sees them.
  publish_in_flight_ = true;
  serverpb::InternalRaftRequest r;
  auto* ma = r.mutable_member_attributes();
  ma->set_member_id(member_id_);
  ma->set_name(cfg_.name);
  for (const auto& u : cfg_.advertise_client_urls) ma->add_client_urls(u);
  Propose(std::move(r), [this](Outcome o) {
    if (!o.status.ok()) {
      if (!Stopping()) {
        lg_.Warn("failed to publish local member to cluster through raft",
                 {{"local-member-id", util::IdToHex(member_id_)}, {"error", o.status.ToString()}});
      }
      publish_in_flight_ = false;
      return;
    }
    lg_.Info("enabled capabilities for version", {{"cluster-version", kClusterVersion}});
    lg_.Info("published local member to cluster through raft",
             {{"local-member-id", util::IdToHex(member_id_)},
              {"local-member-attributes",
               absl::StrCat("{Name:", cfg_.name, " ClientURLs:[",
                            absl::StrJoin(cfg_.advertise_client_urls, " "), "]}")},
              {"request-path", absl::StrCat("/0/members/", util::IdToHex(member_id_), "/attributes")},
              {"cluster-id", util::IdToHex(cluster_id_)},
              {"publish-timeout", DurationString(cfg_.request_timeout)}});
    {
      std::unique_lock<std::mutex> l(ready_mu_);
      ready_ = true;
      ready_cv_.notify_all();
    }
    publish_done_ = true;
    publish_in_flight_ = false;
  });
}

void EtcdServer::Impl::CheckLeaseExpiry() {
  if (!lessor_->IsPrimary()) return;
  for (int64_t id : lessor_->ExpiredLeases(kMaxLeaseRevokesPerRound)) {
    serverpb::InternalRaftRequest r;
    r.mutable_lease_revoke()->set_id(id);
    Propose(std::move(r), [this, id](Outcome o) {
      absl::Status s = o.status;
      if (!s.ok() && !lease::IsLeaseNotFound(s) && !Stopping()) {
        lg_.Warn("failed to revoke lease", {{"lease-id", absl::StrFormat("%016x", id)},
                                            {"error", s.ToString()}});
      }
    });
  }
}

void EtcdServer::Impl::RunAutoCompaction() {
  if (!periodic_compactor_ && !revision_compactor_) return;
  const auto now = clock_->Now();
  if (compaction_in_flight_) {
    if (!compaction_done_flag_.load()) return;
    compaction_in_flight_ = false;
    const bool ok = compaction_ok_flag_.load();
    if (periodic_compactor_) periodic_compactor_->Completed(ok, now);
    if (revision_compactor_) revision_compactor_->Completed(ok);
  }
  // Only the leader compacts (etcd pauses the compactor on followers).
  if (!metrics_.is_leader.load()) return;
  std::optional<int64_t> due;
  if (periodic_compactor_) {
    due = periodic_compactor_->Poll(now, store_->Rev());
    if (!due.has_value()) return;
    lg_.Info("starting auto periodic compaction",
             {{"revision", *due}, {"compact-period", DurationString(compaction_period_)}});
  } else {
    due = revision_compactor_->Poll(now, store_->Rev());
    if (!due.has_value()) return;
    lg_.Info("starting auto revision compaction",
             {{"revision", *due}, {"revision-compaction-retention", compaction_revisions_}});
  }
  const int64_t rev = *due;
  compaction_in_flight_ = true;
  compaction_done_flag_ = false;
  serverpb::InternalRaftRequest r;
  r.mutable_compaction()->set_revision(rev);
  const bool periodic = compaction_period_.count() > 0;
  Propose(std::move(r), [this, rev, periodic](Outcome o) {
    absl::Status s = o.status;
    const bool ok = s.ok() || mvcc::IsCompacted(s);
    if (ok) {
      lg_.Info(periodic ? "completed auto periodic compaction" : "completed auto revision compaction",
               {{"revision", rev}});
    } else if (!Stopping()) {
      lg_.Warn(periodic ? "failed auto periodic compaction" : "failed auto revision compaction",
               {{"revision", rev}, {"error", s.ToString()}});
    }
    compaction_ok_flag_ = ok;
    compaction_done_flag_ = true;
  });
}

// ---------------------------------------------------------------------------
// EtcdServer: thin forwarding to Impl plus request shaping.

EtcdServer::EtcdServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EtcdServer::~EtcdServer() { impl_->Stop(/*graceful=*/true); }

absl::Status EtcdServer::Start() { return impl_->Start(); }
void EtcdServer::Stop() { impl_->Stop(/*graceful=*/true); }
void EtcdServer::CrashForTesting() { impl_->Stop(/*graceful=*/false); }

bool EtcdServer::WaitReady(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> l(impl_->ready_mu_);
  return impl_->ready_cv_.wait_for(l, timeout, [this] { return impl_->ready_; });
}
bool EtcdServer::IsReady() const {
  std::unique_lock<std::mutex> l(impl_->ready_mu_);
  return impl_->ready_;
}

uint64_t EtcdServer::MemberId() const { return impl_->member_id_.load(); }
uint64_t EtcdServer::ClusterId() const { return impl_->cluster_id_.load(); }
const ServerConfig& EtcdServer::Config() const { return impl_->cfg_; }
const util::Logger& EtcdServer::Logger() const { return impl_->lg_; }
mvcc::WatchableStore* EtcdServer::Watchable() { return impl_->watchable_.get(); }
const mvcc::Store* EtcdServer::Store() const { return impl_->store_.get(); }
storage::Backend* EtcdServer::Backend() { return impl_->backend_.get(); }
ServerMetrics& EtcdServer::Metrics() { return impl_->metrics_; }
void EtcdServer::FillHeader(etcdserverpb::ResponseHeader* header) const {
  impl_->FillHeaderImpl(header, /*set_revision=*/true);
}

void EtcdServer::Range(const etcdserverpb::RangeRequest& req,
                       Done<etcdserverpb::RangeResponse> done) {
  Impl* impl = impl_.get();
  if (impl->Stopping()) return std::move(done)(ErrStopped());
  auto serve = [impl, req, done = std::move(done)](absl::Status s) mutable {
    if (!s.ok()) return std::move(done)(std::move(s));
    auto resp = impl->applier_->Range(req);
    if (resp.ok()) impl->FillHeaderImpl(resp->mutable_header(), resp->header().revision() == 0);
    std::move(done)(std::move(resp));
  };
  if (req.serializable()) {
    serve(absl::OkStatus());
  } else {
    impl->EnqueueLinearizableRead(std::move(serve));
  }
}

void EtcdServer::Put(const etcdserverpb::PutRequest& req, Done<etcdserverpb::PutResponse> done) {
  serverpb::InternalRaftRequest r;
  *r.mutable_put() = req;
  if (impl_->Stopping()) return std::move(done)(ErrStopped());
  if (auto s = impl_->CheckQuota(r); !s.ok()) return std::move(done)(std::move(s));
  impl_->Propose(std::move(r), impl_->MakeWaiter<etcdserverpb::PutResponse>(std::move(done)));
}

void EtcdServer::DeleteRange(const etcdserverpb::DeleteRangeRequest& req,
                             Done<etcdserverpb::DeleteRangeResponse> done) {
  serverpb::InternalRaftRequest r;
  *r.mutable_delete_range() = req;
  impl_->Propose(std::move(r),
                 impl_->MakeWaiter<etcdserverpb::DeleteRangeResponse>(std::move(done)));
}

void EtcdServer::Txn(const etcdserverpb::TxnRequest& req, Done<etcdserverpb::TxnResponse> done) {
  Impl* impl = impl_.get();
  if (impl->Stopping()) return std::move(done)(ErrStopped());
  if (Applier::IsTxnReadOnly(req)) {
    // etcd: a read-only txn is linearizable unless every range in it is
    // serializable.
    bool serializable = true;
    for (const auto* ops : {&req.success(), &req.failure()}) {
      for (const auto& op : *ops) {
        if (op.has_request_range() && !op.request_range().serializable()) serializable = false;
      }
    }
    auto serve = [impl, req, done = std::move(done)](absl::Status s) mutable {
      if (!s.ok()) return std::move(done)(std::move(s));
      auto resp = impl->applier_->ReadOnlyTxn(req);
      if (resp.ok()) impl->FillHeaderImpl(resp->mutable_header(), resp->header().revision() == 0);
      std::move(done)(std::move(resp));
    };
    if (serializable) {
      serve(absl::OkStatus());
    } else {
      impl->EnqueueLinearizableRead(std::move(serve));
    }
    return;
  }
  serverpb::InternalRaftRequest r;
  *r.mutable_txn() = req;
  if (auto s = impl->CheckQuota(r); !s.ok()) return std::move(done)(std::move(s));
  impl->Propose(std::move(r), impl->MakeWaiter<etcdserverpb::TxnResponse>(std::move(done)));
}

void EtcdServer::Compact(const etcdserverpb::CompactionRequest& req,
                         Done<etcdserverpb::CompactionResponse> done) {
  Impl* impl = impl_.get();
  serverpb::InternalRaftRequest r;
  *r.mutable_compaction() = req;
  const bool physical = req.physical();
  impl->Propose(std::move(r), [impl, physical, done = std::move(done)](Outcome o) mutable {
    if (!o.status.ok()) return std::move(done)(std::move(o.status));
    etcdserverpb::CompactionResponse resp;
    if (auto* p = std::get_if<etcdserverpb::CompactionResponse>(&o.result.response)) resp = *p;
    impl->FillHeaderImpl(resp.mutable_header(), resp.header().revision() == 0);
    if (!physical || !o.result.compaction_done.has_value()) return std::move(done)(std::move(resp));
    // Wait for the physical compaction off the apply thread.
    std::unique_lock<std::mutex> l(impl->wait_mu_);
    impl->physical_waits_.push_back(Impl::PhysicalWait{
        *o.result.compaction_done,
        [resp = std::move(resp), done = std::move(done)](absl::Status s) mutable {
          if (!s.ok()) return std::move(done)(std::move(s));
          std::move(done)(std::move(resp));
        }});
  });
}

void EtcdServer::LeaseGrant(const etcdserverpb::LeaseGrantRequest& req,
                            Done<etcdserverpb::LeaseGrantResponse> done) {
  serverpb::InternalRaftRequest r;
  *r.mutable_lease_grant() = req;
  if (impl_->Stopping()) return std::move(done)(ErrStopped());
  // etcd: the server picks a positive int63 ID when none is given.
  while (r.lease_grant().id() <= 0) {
    r.mutable_lease_grant()->set_id(
        static_cast<int64_t>(impl_->idgen_->Next() & ((uint64_t{1} << 63) - 1)));
  }
  if (auto s = impl_->CheckQuota(r); !s.ok()) return std::move(done)(std::move(s));
  impl_->Propose(std::move(r),
                 impl_->MakeWaiter<etcdserverpb::LeaseGrantResponse>(std::move(done)));
}

void EtcdServer::LeaseRevoke(const etcdserverpb::LeaseRevokeRequest& req,
                             Done<etcdserverpb::LeaseRevokeResponse> done) {
  serverpb::InternalRaftRequest r;
  *r.mutable_lease_revoke() = req;
  impl_->Propose(std::move(r),
                 impl_->MakeWaiter<etcdserverpb::LeaseRevokeResponse>(std::move(done)));
}

void EtcdServer::LeaseRenew(int64_t id, Done<int64_t> done) {
  if (impl_->Stopping()) return std::move(done)(ErrStopped());
  if (!impl_->lessor_->IsPrimary()) {
    // Forwarding keep-alives to a remote leader comes with the peer
    // transport; until then only the leader answers.
    return std::move(done)(impl_->lead_.load() == raft::kNone ? ErrNoLeader() : ErrNotCapable());
  }
  std::move(done)(impl_->lessor_->Renew(id));
}

void EtcdServer::LeaseTimeToLive(const etcdserverpb::LeaseTimeToLiveRequest& req,
                                 Done<etcdserverpb::LeaseTimeToLiveResponse> done) {
  if (impl_->Stopping()) return std::move(done)(ErrStopped());
  etcdserverpb::LeaseTimeToLiveResponse resp;
  impl_->FillHeaderImpl(resp.mutable_header(), true);
  resp.set_id(req.id());
  auto info = impl_->lessor_->Lookup(req.id());
  if (!info.has_value()) {
    resp.set_ttl(-1);
    return std::move(done)(std::move(resp));
  }
  resp.set_ttl(info->remaining_seconds);
  resp.set_grantedttl(info->ttl_seconds);
  if (req.keys()) {
    for (const auto& k : info->keys) resp.add_keys(k);
  }
  std::move(done)(std::move(resp));
}

void EtcdServer::LeaseLeases(const etcdserverpb::LeaseLeasesRequest&,
                             Done<etcdserverpb::LeaseLeasesResponse> done) {
  if (impl_->Stopping()) return std::move(done)(ErrStopped());
  etcdserverpb::LeaseLeasesResponse resp;
  impl_->FillHeaderImpl(resp.mutable_header(), true);
  for (const auto& l : impl_->lessor_->Leases()) resp.add_leases()->set_id(l.id);
  std::move(done)(std::move(resp));
}

void EtcdServer::MemberList(const etcdserverpb::MemberListRequest&,
                            Done<etcdserverpb::MemberListResponse> done) {
  if (impl_->Stopping()) return std::move(done)(ErrStopped());
  etcdserverpb::MemberListResponse resp;
  impl_->FillHeaderImpl(resp.mutable_header(), true);
  {
    std::unique_lock<std::mutex> l(impl_->members_mu_);
    for (const auto& [id, m] : impl_->members_) *resp.add_members() = ToMemberPb(m);
  }
  std::move(done)(std::move(resp));
}

void EtcdServer::MemberAdd(const etcdserverpb::MemberAddRequest&,
                           Done<etcdserverpb::MemberAddResponse> done) {
  std::move(done)(ErrUnimplemented("member add"));
}
void EtcdServer::MemberRemove(const etcdserverpb::MemberRemoveRequest&,
                              Done<etcdserverpb::MemberRemoveResponse> done) {
  std::move(done)(ErrUnimplemented("member remove"));
}
void EtcdServer::MemberUpdate(const etcdserverpb::MemberUpdateRequest&,
                              Done<etcdserverpb::MemberUpdateResponse> done) {
  std::move(done)(ErrUnimplemented("member update"));
}
void EtcdServer::MemberPromote(const etcdserverpb::MemberPromoteRequest&,
                               Done<etcdserverpb::MemberPromoteResponse> done) {
  std::move(done)(ErrUnimplemented("member promote"));
}

void EtcdServer::Alarm(const etcdserverpb::AlarmRequest& req,
                       Done<etcdserverpb::AlarmResponse> done) {
  Impl* impl = impl_.get();
  if (impl->Stopping()) return std::move(done)(ErrStopped());
  if (req.action() == etcdserverpb::AlarmRequest::GET) {
    etcdserverpb::AlarmResponse resp;
    impl->FillHeaderImpl(resp.mutable_header(), true);
    for (auto& a : impl->ListAlarms(req.alarm())) *resp.add_alarms() = std::move(a);
    return std::move(done)(std::move(resp));
  }
  serverpb::InternalRaftRequest r;
  *r.mutable_alarm() = req;
  impl->Propose(std::move(r), [impl, done = std::move(done)](Outcome o) mutable {
    if (!o.status.ok()) return std::move(done)(std::move(o.status));
    etcdserverpb::AlarmResponse resp = o.alarm.value_or(etcdserverpb::AlarmResponse());
    impl->FillHeaderImpl(resp.mutable_header(), true);
    std::move(done)(std::move(resp));
  });
}

void EtcdServer::Status(const etcdserverpb::StatusRequest&,
                        Done<etcdserverpb::StatusResponse> done) {
  Impl* impl = impl_.get();
  if (impl->Stopping()) return std::move(done)(ErrStopped());
  etcdserverpb::StatusResponse resp;
  impl->FillHeaderImpl(resp.mutable_header(), true);
  resp.set_version(kServerVersion);
  resp.set_dbsize(impl->backend_->SizeBytes());
  resp.set_dbsizeinuse(impl->backend_->SizeInUseBytes());
  resp.set_leader(impl->lead_.load());
  resp.set_raftindex(impl->commit_index_.load());
  resp.set_raftterm(impl->term_.load());
  resp.set_raftappliedindex(impl->applied_index_atomic_.load());
  {
    std::unique_lock<std::mutex> l(impl->members_mu_);
    auto it = impl->members_.find(impl->member_id_.load());
    resp.set_islearner(it != impl->members_.end() && it->second.is_learner());
  }
  for (const auto& a : impl->ListAlarms(etcdserverpb::NONE)) {
    resp.add_errors(absl::StrCat("memberID:", a.memberid(), " alarm:", AlarmName(a.alarm()), " "));
  }
  std::move(done)(std::move(resp));
}

void EtcdServer::HashKV(const etcdserverpb::HashKVRequest& req,
                        Done<etcdserverpb::HashKVResponse> done) {
  if (impl_->Stopping()) return std::move(done)(ErrStopped());
  auto h = impl_->store_->HashByRev(req.revision());
  if (!h.ok()) return std::move(done)(h.status());
  etcdserverpb::HashKVResponse resp;
  impl_->FillHeaderImpl(resp.mutable_header(), false);
  resp.mutable_header()->set_revision(h->current_revision);
  resp.set_hash(h->hash);
  resp.set_compact_revision(h->compact_revision);
  std::move(done)(std::move(resp));
}

void EtcdServer::Defragment(const etcdserverpb::DefragmentRequest&,
                            Done<etcdserverpb::DefragmentResponse> done) {
  if (impl_->Stopping()) return std::move(done)(ErrStopped());
  if (auto s = impl_->backend_->Sync(); !s.ok()) return std::move(done)(std::move(s));
  etcdserverpb::DefragmentResponse resp;
  impl_->FillHeaderImpl(resp.mutable_header(), true);
  std::move(done)(std::move(resp));
}

void EtcdServer::MoveLeader(const etcdserverpb::MoveLeaderRequest& req,
                            Done<etcdserverpb::MoveLeaderResponse> done) {
  if (impl_->Stopping()) return std::move(done)(ErrStopped());
  if (req.targetid() != impl_->member_id_.load()) return std::move(done)(ErrBadLeaderTransferee());
  etcdserverpb::MoveLeaderResponse resp;
  impl_->FillHeaderImpl(resp.mutable_header(), true);
  std::move(done)(std::move(resp));
}

absl::Status EtcdServer::SnapshotBackend(int fd) {
  if (impl_->Stopping() || impl_->backend_ == nullptr) return ErrStopped();
  return impl_->backend_->CopyTo(fd);
}

}  // namespace cppetcd::server
