// EtcdServer: one etcd member. Owns the raft node, the WAL and snapshotter,
// the LMDB backend, the MVCC store, the lessor and the apply loop, and offers
// the api layer asynchronous calls with etcd v3 semantics (etcd 3.4
// etcdserver: server.go, v3_server.go, raft.go, apply.go, quota.go).
//
// Threads: a raft loop (tick, persist each Ready to the WAL with one fsync,
// send, hand committed entries on, advance), an apply loop (one backend write
// txn per batch of committed entries, consistent index in the same txn), a
// linearizable-read loop (batches ReadIndex requests), a lease-expiry loop and
// an optional auto-compactor. A mutation is acknowledged only after its entry
// is fsynced in the WAL and applied.
//
// Thread-safety: every public method may be called from any thread once
// Start() returned OK. `Done` callbacks run exactly once, on a server thread
// (or inline on the caller's thread for immediate errors and local reads);
// they must not block and must not call Stop().
#ifndef CPPETCD_SERVER_ETCD_SERVER_H_
#define CPPETCD_SERVER_ETCD_SERVER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppetcd/auth/credentials.h"
#include "cppetcd/server/applier.h"
#include "cppetcd/server/errors.h"
#include "cppetcd/server/transport.h"
#include "cppetcd/util/clock.h"
#include "cppetcd/util/histogram.h"
#include "cppetcd/util/log.h"
#include "etcdserverpb/rpc.pb.h"

namespace cppetcd::util {
class Env;
}
namespace cppetcd::storage {
class Backend;
}
namespace cppetcd::mvcc {
class Store;
class WatchableStore;
}  // namespace cppetcd::mvcc
namespace cppetcd::auth {
class AuthStore;
}

namespace cppetcd::server {

// Completion callback of an asynchronous server call: runs exactly once.
template <class T>
using Done = absl::AnyInvocable<void(absl::StatusOr<T>) &&>;

// The version the server reports (Status.version, cluster version logs):
// etcd's API version, so that etcd clients accept cppetcd.
inline constexpr char kServerVersion[] = "3.4.23";
inline constexpr char kClusterVersion[] = "3.4";

// Configuration of one member; the cmd layer fills it from etcd's flags.
struct ServerConfig {
  enum class ClusterState { kNew, kExisting };

  std::string name = "default";           // --name
  std::string data_dir;                   // --data-dir (required)
  std::string wal_dir;                    // --wal-dir; empty: <data_dir>/member/wal
  // --initial-cluster: member name -> peer URLs. Empty: {name: ["http://localhost:2380"]}.
  std::map<std::string, std::vector<std::string>> initial_cluster;
  ClusterState initial_cluster_state = ClusterState::kNew;  // --initial-cluster-state
  std::string initial_cluster_token = "etcd-cluster";       // --initial-cluster-token
  // --initial-advertise-peer-urls; empty: this member's URLs in initial_cluster.
  std::vector<std::string> initial_advertise_peer_urls;
  bool force_new_cluster = false;     // --force-new-cluster
  bool strict_reconfig_check = true;  // --strict-reconfig-check
  std::vector<std::string> advertise_client_urls = {"http://localhost:2379"};
  uint64_t snapshot_count = 100000;                          // --snapshot-count
  // Raft entries kept in memory behind a snapshot so a slow follower
  // catches up without one (--experimental-snapshot-catchup-entries).
  uint64_t snapshot_catchup_entries = 5000;
  // Snapshot files kept in <data-dir>/member/snap (--max-snapshots; 0: all).
  uint32_t max_snapshots = 5;
  std::chrono::milliseconds heartbeat_interval{100};         // --heartbeat-interval
  std::chrono::milliseconds election_timeout{1000};          // --election-timeout
  int64_t quota_backend_bytes = 0;        // --quota-backend-bytes; 0: 2 GiB; < 0: no quota
  uint64_t max_request_bytes = 1536 * 1024;                  // --max-request-bytes
  uint32_t max_txn_ops = 128;                                // --max-txn-ops
  // Bounds of the queues between the API and raft (docs/design.md, "Resource
  // bounds"); past them a request fails at once with ErrTooManyRequests.
  // Proposals awaiting their result (queued, in raft, or committed and not
  // yet applied), and linearizable reads awaiting their ReadIndex round.
  size_t max_pending_proposals = 10000;
  size_t max_pending_reads = 10000;
  // Bytes of proposals handed to the raft loop but not yet to raft (they wait
  // there while no leader is known); one proposal is always let in.
  uint64_t max_queued_proposal_bytes = 64u << 20;
  // Free space kept on the data dir's file system for the WAL and the
  // backend's growth when a client asks for a full copy of the backend (a
  // snapshot stream or a defragmentation): the copy is refused when the free
  // space is below its estimated size, plus the copies already running,
  // plus this.
  uint64_t disk_headroom_bytes = 128u << 20;
  std::string auto_compaction_mode = "periodic";   // --auto-compaction-mode: periodic|revision
  std::string auto_compaction_retention;           // --auto-compaction-retention; "" or "0": off
  bool pre_vote = false;                           // --pre-vote
  // Auth (etcd 3.4 auth): --auth-token ("simple", "jwt,pub-key=..,priv-key=..,
  // sign-method=..[,ttl=..]" or "" for none), --auth-token-ttl (simple tokens),
  // --bcrypt-cost.
  std::string auth_token = "simple";
  std::chrono::seconds auth_token_ttl{300};
  int bcrypt_cost = 10;
  // How long a proposal may wait for its result before ErrTimeout (etcd:
  // 5 s + 2 * election timeout).
  std::chrono::milliseconds request_timeout{7000};
  // etcd corruption checks: --experimental-initial-corrupt-check (at Start,
  // compare HashKV with every reachable peer; a mismatch fails Start with
  // "<id> found data inconsistency with peers") and
  // --experimental-corrupt-check-time (0: off; the leader compares HashKV
  // with every follower at that interval and raises CORRUPT on a mismatch).
  bool initial_corrupt_check = false;
  std::chrono::milliseconds corrupt_check_time{0};
  // etcd lease checkpoints (lease/lessor.h): --experimental-enable-lease-
  // checkpoint makes the leader propose, through raft, each long lease's
  // remaining TTL every lease_checkpoint_interval (etcd's fixed 5 min; only
  // leases longer than the interval), so that a new leader continues it
  // instead of granting the full TTL again; a keep-alive of a checkpointed
  // lease first resets it through raft. --experimental-enable-lease-
  // checkpoint-persist also writes it to the lease's record (restarts keep
  // it). The cmd layer refuses persist without checkpoint, as etcd.
  bool lease_checkpoint = false;
  bool lease_checkpoint_persist = false;
  std::chrono::milliseconds lease_checkpoint_interval{5 * 60 * 1000};
  util::Logger logger = util::GetLogger("etcdserver");
  util::Clock* clock = nullptr;  // lessor, compactor and ID timestamps; null: SystemClock
  util::Env* env = nullptr;      // WAL, snapshot and backend-side files; null: Env::Default()
  // Timers and measured durations: raft ticks, the housekeeping and
  // maintenance periods, request deadlines, delayed retries, stage metrics.
  // null: SystemClock (not `clock`: tests that move the lease clock by hand
  // keep real raft ticks). A simulation passes the same FakeClock to both.
  util::Clock* timer_clock = nullptr;
  // Peer network; null: NoopTransport (single member). The server calls
  // SetHandler at Start and Stop at Stop.
  std::shared_ptr<Transport> transport;
};

// Counters for metrics (etcd_server_* / etcd_disk_* families). Monotonic
// unless said otherwise; read with relaxed loads from any thread.
struct ServerMetrics {
  std::atomic<uint64_t> proposals_committed{0};  // commit index seen by this member
  std::atomic<uint64_t> proposals_applied{0};    // applied index
  std::atomic<int64_t> proposals_pending{0};     // gauge: proposals awaiting their result
  // Highest number of proposal waiters held at once (<= max_pending_proposals
  // plus conf changes), and the bytes queued for the raft loop now.
  std::atomic<int64_t> proposals_pending_peak{0};
  std::atomic<uint64_t> proposals_queued_bytes{0};
  std::atomic<uint64_t> proposals_failed{0};
  std::atomic<uint64_t> leader_changes{0};
  std::atomic<bool> has_leader{false};
  std::atomic<bool> is_leader{false};
  std::atomic<uint64_t> wal_fsyncs{0};
  std::atomic<uint64_t> wal_fsync_total_ns{0};
  std::atomic<uint64_t> backend_commits{0};
  std::atomic<uint64_t> backend_commit_total_ns{0};
  std::atomic<uint64_t> slow_applies{0};
  // Lease checkpoints applied on this member (one per lease per entry,
  // keep-alive resets included), and entries of scheduled checkpoints it
  // proposed as leader.
  std::atomic<uint64_t> lease_checkpoints_applied{0};
  std::atomic<uint64_t> lease_checkpoint_proposals{0};
  // Latency histograms with etcd's buckets (1 ms doubling to ~8 s):
  // etcd_disk_wal_fsync_duration_seconds, etcd_disk_backend_commit_duration_seconds.
  util::Histogram wal_fsync_seconds{util::Histogram::ExponentialBounds(0.001, 2, 14)};
  util::Histogram backend_commit_seconds{util::Histogram::ExponentialBounds(0.001, 2, 14)};
  // Write-path stages (docs/benchmarks.md "Write path"), exported as
  // cppetcd_debug_write_stage_duration_seconds{stage}; 10 us doubling to
  // ~1.3 s. Per batch unless said otherwise:
  //   propose_queue   Propose() of the oldest queued proposal -> raft loop takes it
  //   wal_save        WAL append + fdatasync of one Ready
  //   apply_queue     committed entries queued -> apply loop takes them
  //   apply           apply of a batch in its backend txn, before the commit
  //   reply_to_commit replies sent -> backend commit done (off the reply path)
  //   propose_to_reply per request: Propose() -> its waiter completed
  static std::vector<double> StageBounds() { return util::Histogram::ExponentialBounds(1e-5, 2, 18); }
  util::Histogram stage_propose_queue{StageBounds()};
  util::Histogram stage_wal_save{StageBounds()};
  util::Histogram stage_apply_queue{StageBounds()};
  util::Histogram stage_apply{StageBounds()};
  util::Histogram stage_reply_to_commit{StageBounds()};
  util::Histogram stage_propose_to_reply{StageBounds()};
};

class EtcdServer {
 public:
  // Validates `config`, computes member and cluster IDs (etcd's SHA-1
  // scheme) and creates the server; nothing is opened yet.
  static absl::StatusOr<std::unique_ptr<EtcdServer>> Create(ServerConfig config);
  // Stops the server if running (as Stop()).
  ~EtcdServer();

  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;

  // Opens or bootstraps the data dir (WAL, snapshots, backend), replays the
  // log and starts the loops. Errors (bad data dir, WAL corruption, member
  // mismatch) are returned, nothing keeps running. Call once.
  absl::Status Start();

  // Graceful stop: rejects new requests with ErrStopped, fails waiting
  // proposals with ErrStopped, finishes the queued apply batches, syncs the
  // backend and closes the WAL. Idempotent; blocks until done. Every
  // WatchStream must be gone first; afterwards Watchable(), Store() and
  // Backend() are null and the request methods answer ErrStopped.
  void Stop();

  // Blocks until the local member's attributes are published through raft
  // (etcd: "published local member to cluster through raft") or `timeout`
  // elapses (false). The api layer starts serving after this.
  bool WaitReady(std::chrono::milliseconds timeout);
  bool IsReady() const;

  // True once the server decided to stop on its own: this member was removed
  // from the cluster (etcd exits then). The owner should call Stop().
  bool StopRequested() const;
  // Whether this member is a learner. As etcd 3.4, a learner answers only
  // Status and serializable Range; every other request fails with
  // ErrNotSupportedForLearner.
  bool IsLearner() const;

  // Identity. Valid after Create.
  uint64_t MemberId() const;
  uint64_t ClusterId() const;  // may change once at Start (existing cluster's ID from the WAL)
  const ServerConfig& Config() const;
  const util::Logger& Logger() const;

  // ---- KV (etcd v3 API). Errors: see errors.h and mvcc::ErrCompacted/ErrFutureRev,
  // validation errors from validate.h, ErrNoSpace for writes under NOSPACE.
  // `caller`: the client's credentials, checked as described under Auth.

  // Range: serializable → served at once from the local store; otherwise
  // linearizable through ReadIndex. Served off the raft/apply threads.
  void Range(const auth::Credentials& caller,
             const etcdserverpb::RangeRequest& req, Done<etcdserverpb::RangeResponse> done);
  // Range with the answer in wire form (Applier::RangeEncoded: a plain LIST
  // is copied once from the store, never parsed); `size_hint` is the
  // expected body size (EstimateRangeBytes). Served as Range.
  void RangeEncoded(const auth::Credentials& caller, const etcdserverpb::RangeRequest& req,
                    uint64_t size_hint, Done<EncodedRange> done);
  // Applier::EstimateRangeBytes on the local store, now (no ReadIndex, no
  // auth check: the estimate is not shown to the client). Any thread.
  absl::StatusOr<uint64_t> EstimateRangeBytes(const etcdserverpb::RangeRequest& req) const;
  void Put(const auth::Credentials& caller,
           const etcdserverpb::PutRequest& req, Done<etcdserverpb::PutResponse> done);
  void DeleteRange(const auth::Credentials& caller, const etcdserverpb::DeleteRangeRequest& req,
                   Done<etcdserverpb::DeleteRangeResponse> done);
  // A read-only txn is served as a read (linearizable unless every range in
  // it is serializable); other txns go through raft.
  void Txn(const auth::Credentials& caller,
           const etcdserverpb::TxnRequest& req, Done<etcdserverpb::TxnResponse> done);
  // physical=true: the reply waits until the compaction is on disk.
  void Compact(const auth::Credentials& caller, const etcdserverpb::CompactionRequest& req,
               Done<etcdserverpb::CompactionResponse> done);

  // ---- Lease.
  // ID 0: the server picks a random positive unique ID. TTL below the
  // minimum (ceil(1.5 * election timeout) seconds) is raised to it.
  void LeaseGrant(const auth::Credentials& caller, const etcdserverpb::LeaseGrantRequest& req,
                  Done<etcdserverpb::LeaseGrantResponse> done);
  void LeaseRevoke(const auth::Credentials& caller, const etcdserverpb::LeaseRevokeRequest& req,
                   Done<etcdserverpb::LeaseRevokeResponse> done);
  // Keep-alive of lease `id`: the new TTL in seconds, or lease::ErrLeaseNotFound.
  // Answered by the leader (single node: locally).
  void LeaseRenew(int64_t id, Done<int64_t> done);
  // A lease that does not exist is answered OK with TTL -1 (what etcd's gRPC
  // layer sends, etcdctl prints "already expired").
  void LeaseTimeToLive(const etcdserverpb::LeaseTimeToLiveRequest& req,
                       Done<etcdserverpb::LeaseTimeToLiveResponse> done);
  void LeaseLeases(const etcdserverpb::LeaseLeasesRequest& req,
                   Done<etcdserverpb::LeaseLeasesResponse> done);

  // ---- Cluster (etcd 3.4 Cluster service). MemberList is the local view.
  void MemberList(const etcdserverpb::MemberListRequest& req,
                  Done<etcdserverpb::MemberListResponse> done);
  // Membership changes go through raft as conf changes (one at a time) and
  // answer once applied here. With strict_reconfig_check, etcd's safety
  // checks apply: ErrNotEnoughStartedMembers, ErrUnhealthy (a voter has not
  // been connected for 5 s), ErrTooManyLearners (one learner at most),
  // ErrLearnerNotReady (learner below 90% of the leader's log). Other
  // errors: ErrInvalidPeerUrls, ErrPeerUrlExists, ErrMemberNotFound,
  // ErrIdRemoved, ErrMemberNotLearner, ErrTimeout. Promote is decided by
  // the leader (forwarded by followers).
  void MemberAdd(const auth::Credentials& caller, const etcdserverpb::MemberAddRequest& req,
                 Done<etcdserverpb::MemberAddResponse> done);
  void MemberRemove(const auth::Credentials& caller, const etcdserverpb::MemberRemoveRequest& req,
                    Done<etcdserverpb::MemberRemoveResponse> done);
  void MemberUpdate(const auth::Credentials& caller, const etcdserverpb::MemberUpdateRequest& req,
                    Done<etcdserverpb::MemberUpdateResponse> done);
  void MemberPromote(const auth::Credentials& caller, const etcdserverpb::MemberPromoteRequest& req,
                     Done<etcdserverpb::MemberPromoteResponse> done);

  // ---- Maintenance.
  // GET lists alarms; ACTIVATE/DEACTIVATE go through raft and persist in the
  // alarm bucket (AlarmStore). As etcd, ACTIVATE answers the alarm whether new
  // or already active, DEACTIVATE only if it was active. Deactivating NOSPACE
  // re-enables writes.
  void Alarm(const auth::Credentials& caller,
             const etcdserverpb::AlarmRequest& req, Done<etcdserverpb::AlarmResponse> done);
  void Status(const etcdserverpb::StatusRequest& req, Done<etcdserverpb::StatusResponse> done);
  // HashKV of the store at `revision` (0: current).
  void HashKV(const etcdserverpb::HashKVRequest& req, Done<etcdserverpb::HashKVResponse> done);
  // Online defragmentation of the backend (storage::Backend::Defragment) on
  // the maintenance thread; writes pause only for its switch-over. Calls
  // arriving while one runs are answered by the next run. ResourceExhausted
  // when the data dir's file system has no room for the compact copy
  // (ServerConfig::disk_headroom_bytes).
  void Defragment(const etcdserverpb::DefragmentRequest& req,
                  Done<etcdserverpb::DefragmentResponse> done);
  // etcd v3 API Maintenance.Hash: CRC-32C of the whole backend except
  // meta/consistent_index (etcd backend.Hash), with the current revision.
  void Hash(const etcdserverpb::HashRequest& req, Done<etcdserverpb::HashResponse> done);
  // Leader only (else ErrNotLeader): hands leadership to voting member
  // `targetid` (else ErrBadLeaderTransferee) and answers once it leads, or
  // ErrTimeoutLeaderTransfer. Moving to itself is OK at once.
  void MoveLeader(const etcdserverpb::MoveLeaderRequest& req,
                  Done<etcdserverpb::MoveLeaderResponse> done);
  // Writes a consistent copy of the backend to `fd` as an etcd 3.4 bbolt
  // database (Maintenance.Snapshot; etcd_backend_export.h), built from one
  // read txn into an unlinked temporary file in <data-dir>/member/snap and
  // then copied to `fd` (the read txn ends before the copy). Memory is
  // bounded (storage::BboltWriter); disk: one compact copy. Blocking; call
  // from a non-server thread. Errors: ErrStopped, Internal for I/O,
  // ResourceExhausted when the data dir's file system has no room for the
  // copy (ServerConfig::disk_headroom_bytes).
  // kLmdb instead writes cppetcd's own LMDB file (Backend::CopyTo: a file
  // that can replace <data-dir>/member/snap/db); nothing serves it to
  // clients.
  enum class SnapshotFormat { kEtcdBbolt, kLmdb };
  absl::Status SnapshotBackend(int fd, SnapshotFormat format = SnapshotFormat::kEtcdBbolt);

  // ---- Auth (etcd 3.4 Auth service and the checks of auth/store.go).
  // Every method taking `caller` (auth/credentials.h: what the client call
  // carried, auth::kNoCredentials for none) checks that caller, resolved on
  // entry: a token (invalid or expired: "auth: invalid auth token"), else a
  // TLS client certificate's CN, else nobody (with auth enabled:
  // ErrUserEmpty). The identity is a value carried with the request, so any
  // thread may serve it.
  // KV reads are checked at once; writes carry the user and auth revision
  // in the raft request header and are checked again at apply, so every
  // member decides alike (stale: ErrAuthOldRevision). Admin calls need
  // role root. Errors are auth/errors.h's.
  void AuthEnable(const auth::Credentials& caller, const etcdserverpb::AuthEnableRequest& req,
                  Done<etcdserverpb::AuthEnableResponse> done);
  void AuthDisable(const auth::Credentials& caller, const etcdserverpb::AuthDisableRequest& req,
                   Done<etcdserverpb::AuthDisableResponse> done);
  // Checks the password here (bcrypt, on the calling thread), then proposes
  // the token's creation so that every member knows a simple token.
  void Authenticate(const auth::Credentials& caller, const etcdserverpb::AuthenticateRequest& req,
                    Done<etcdserverpb::AuthenticateResponse> done);
  // Passwords are hashed here (bcrypt at --bcrypt-cost, on the calling
  // thread): raft entries carry the hash, never the clear text.
  void UserAdd(const auth::Credentials& caller, const etcdserverpb::AuthUserAddRequest& req,
               Done<etcdserverpb::AuthUserAddResponse> done);
  void UserGet(const auth::Credentials& caller, const etcdserverpb::AuthUserGetRequest& req,
               Done<etcdserverpb::AuthUserGetResponse> done);
  void UserList(const auth::Credentials& caller, const etcdserverpb::AuthUserListRequest& req,
                Done<etcdserverpb::AuthUserListResponse> done);
  void UserDelete(const auth::Credentials& caller, const etcdserverpb::AuthUserDeleteRequest& req,
                  Done<etcdserverpb::AuthUserDeleteResponse> done);
  void UserChangePassword(const auth::Credentials& caller,
                          const etcdserverpb::AuthUserChangePasswordRequest& req,
                          Done<etcdserverpb::AuthUserChangePasswordResponse> done);
  void UserGrantRole(const auth::Credentials& caller,
                     const etcdserverpb::AuthUserGrantRoleRequest& req,
                     Done<etcdserverpb::AuthUserGrantRoleResponse> done);
  void UserRevokeRole(const auth::Credentials& caller,
                      const etcdserverpb::AuthUserRevokeRoleRequest& req,
                      Done<etcdserverpb::AuthUserRevokeRoleResponse> done);
  void RoleAdd(const auth::Credentials& caller, const etcdserverpb::AuthRoleAddRequest& req,
               Done<etcdserverpb::AuthRoleAddResponse> done);
  void RoleGet(const auth::Credentials& caller, const etcdserverpb::AuthRoleGetRequest& req,
               Done<etcdserverpb::AuthRoleGetResponse> done);
  void RoleList(const auth::Credentials& caller, const etcdserverpb::AuthRoleListRequest& req,
                Done<etcdserverpb::AuthRoleListResponse> done);
  void RoleDelete(const auth::Credentials& caller, const etcdserverpb::AuthRoleDeleteRequest& req,
                  Done<etcdserverpb::AuthRoleDeleteResponse> done);
  void RoleGrantPermission(const auth::Credentials& caller,
                           const etcdserverpb::AuthRoleGrantPermissionRequest& req,
                           Done<etcdserverpb::AuthRoleGrantPermissionResponse> done);
  void RoleRevokePermission(const auth::Credentials& caller,
                            const etcdserverpb::AuthRoleRevokePermissionRequest& req,
                            Done<etcdserverpb::AuthRoleRevokePermissionResponse> done);
  // For the api's own checks of `caller`: role root (etcd: Maintenance
  // Defragment/Snapshot/Hash/HashKV and member changes), read permission on
  // [key, range_end) (Watch creation). OK when auth is off.
  absl::Status AuthorizeAdmin(const auth::Credentials& caller);
  absl::Status AuthorizeRange(const auth::Credentials& caller, const std::string& key,
                              const std::string& range_end);
  // The auth store (never null after Start).
  auth::AuthStore* AuthStore();

  // ---- Watch and plumbing.
  // The watchable store (never null after Start).
  mvcc::WatchableStore* Watchable();
  // The store (reads only) and backend, for Hash/snapshot helpers.
  const mvcc::Store* Store() const;
  storage::Backend* Backend();
  // cluster_id, member_id, revision (current store revision), raft_term.
  void FillHeader(etcdserverpb::ResponseHeader* header) const;
  // Replies to writes go out before their backend commit publishes them in
  // Store() (docs/design.md "Write path"). A local read (watch creation,
  // revision) that must see every write already answered calls this first:
  // it blocks until those are published (at most request_timeout). Any
  // thread except inside a proposal's Done callback.
  void AwaitRepliedWrites() const;

  ServerMetrics& Metrics();

  // Test hook: abandons the server without a graceful stop (threads are
  // stopped, but nothing is synced or closed cleanly beyond what the WAL
  // already fsynced), like a crash for the data on disk.
  void CrashForTesting();

  class Impl;

 private:
  explicit EtcdServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// etcd's member ID: the first 8 bytes (big-endian) of SHA-1 over the sorted
// peer URLs concatenated, then the cluster token (membership.NewMember).
// With `unix_seconds`, its decimal digits are appended after the token (a
// member added at run time, so a re-added member gets a new ID).
uint64_t ComputeMemberId(std::vector<std::string> peer_urls, std::string_view token,
                         std::optional<int64_t> unix_seconds = std::nullopt);
// etcd's cluster ID: first 8 bytes of SHA-1 over the sorted member IDs, each
// 8 bytes big-endian (RaftCluster.genID).
uint64_t ComputeClusterId(std::vector<uint64_t> member_ids);

}  // namespace cppetcd::server

#endif  // CPPETCD_SERVER_ETCD_SERVER_H_
