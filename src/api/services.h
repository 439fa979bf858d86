// The etcd v3 gRPC services (private to the api module).
#ifndef CPPETCD_SRC_API_SERVICES_H_
#define CPPETCD_SRC_API_SERVICES_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "cppetcd/api/backend.h"
#include "cppetcd/auth/credentials.h"
#include "cppetcd/api/errors.h"
#include "cppetcd/api/range_budget.h"
#include "cppetcd/util/log.h"
#include "cppetcd/util/mutex.h"
#include "etcdserverpb/rpc.grpc.pb.h"

namespace cppetcd::api {

// True when the client sent metadata "hasleader: true" (clientv3
// WithRequireLeader): such calls fail with "etcdserver: no leader" while the
// member knows no leader.
bool RequiresLeader(const grpc::CallbackServerContext* context);

// The credentials a call carries (auth/credentials.h): metadata "token",
// else "authorization" (HTTP gateway), and the verified TLS client CN of
// its connection. Services pass them with each backend call they make for
// the client (ServerBackend's `caller`).
auth::Credentials CallCredentials(const grpc::ServerContextBase* context);

// Common prologue of unary calls: the leader requirement, then `validation`.
// Returns false after finishing `reactor` with the error.
bool Admit(grpc::CallbackServerContext* context, grpc::ServerUnaryReactor* reactor,
           const ServerBackend* backend, const absl::Status& validation);

// True for the answers of etcd's Cluster service, whose header carries
// cluster id, member id and raft term but never a revision (etcd 3.4
// v3rpc ClusterServer.header).
template <class Resp>
inline constexpr bool kHeaderWithoutRevision =
    std::is_same_v<Resp, etcdserverpb::MemberListResponse> ||
    std::is_same_v<Resp, etcdserverpb::MemberAddResponse> ||
    std::is_same_v<Resp, etcdserverpb::MemberRemoveResponse> ||
    std::is_same_v<Resp, etcdserverpb::MemberUpdateResponse> ||
    std::is_same_v<Resp, etcdserverpb::MemberPromoteResponse>;

// Completes a unary call from a server result: fills the header and finishes
// the reactor, or finishes it with the mapped error.
template <class Resp>
Done<Resp> ReplyTo(grpc::ServerUnaryReactor* reactor, Resp* out, const ServerBackend* backend) {
  return [reactor, out, backend](absl::StatusOr<Resp> result) mutable {
    if (!result.ok()) {
      reactor->Finish(ToGrpcStatus(result.status()));
      return;
    }
    *out = std::move(*result);
    int64_t rev = out->header().revision();
    backend->FillHeader(out->mutable_header());
    if constexpr (kHeaderWithoutRevision<Resp>) {
      out->mutable_header()->set_revision(0);
    } else if (rev != 0) {
      out->mutable_header()->set_revision(rev);
    }
    reactor->Finish(grpc::Status::OK);
  };
}

// Guards a callback reactor's Start* and Finish calls so that no operation
// starts after Finish, without holding a lock across them (gRPC may run the
// completion inline on the calling thread, re-entering the reactor).
//   if (gate.BeginStart()) { StartWrite(&msg); gate.EndStart(reactor); }
//   gate.RequestFinish(reactor, status);
class StreamGate {
 public:
  // False once a finish was requested; otherwise the caller must start its
  // operation and then call EndStart.
  bool BeginStart() {
    util::MutexLock lock(&mu_);
    if (finish_requested_) return false;
    ++starting_;
    return true;
  }
  // Finishes `reactor` if a finish was requested while the operation started.
  template <class Reactor>
  void EndStart(Reactor* reactor) {
    std::optional<grpc::Status> finish;
    {
      util::MutexLock lock(&mu_);
      if (--starting_ == 0 && pending_.has_value()) finish = std::exchange(pending_, std::nullopt);
    }
    if (finish.has_value()) reactor->Finish(std::move(*finish));
  }
  // Finishes `reactor` with `status` now, or as soon as no Start* is running.
  // Only the first request counts.
  template <class Reactor>
  void RequestFinish(Reactor* reactor, grpc::Status status) {
    {
      util::MutexLock lock(&mu_);
      if (finish_requested_) return;
      finish_requested_ = true;
      if (starting_ > 0) {
        pending_ = std::move(status);
        return;
      }
    }
    reactor->Finish(std::move(status));
  }
  bool FinishRequested() const {
    util::MutexLock lock(&mu_);
    return finish_requested_;
  }

 private:
  mutable util::Mutex mu_;
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  int starting_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<grpc::Status> pending_ ABSL_GUARDED_BY(mu_);
};

// A stream that must end when the member loses its leader (hasleader).
class LeaderBoundStream {
 public:
  virtual ~LeaderBoundStream() = default;
  virtual void CancelNoLeader() = 0;
};

class WatchReactor;

// A watch stream that ends at once with `status`.
grpc::ServerBidiReactor<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>*
NewRejectedWatchStream(grpc::Status status);

// Background work shared by all streams of one ApiServer: one thread that
// pumps watch output scheduled from the store's notify callbacks, fires
// progress notifications and cancels leader-bound streams after the member
// has had no leader for 3 checks.
class StreamHub {
 public:
  StreamHub(ServerBackend* backend, std::chrono::milliseconds progress_interval,
            std::chrono::milliseconds leader_check_interval, util::Logger logger);
  ~StreamHub();  // stops and joins the thread

  void Schedule(std::weak_ptr<WatchReactor> reactor);
  void AddWatch(std::weak_ptr<WatchReactor> reactor);
  void AddLeaderBound(std::weak_ptr<LeaderBoundStream> stream);

 private:
  void Run();

  ServerBackend* const backend_;
  const std::chrono::milliseconds progress_interval_;
  const std::chrono::milliseconds leader_check_interval_;
  util::Logger logger_;
  // util::Mutex rather than absl::Mutex throughout the api: Debian's Abseil is
  // not TSan-instrumented, so TSan would not see absl::Mutex ordering.
  util::Mutex mu_;
  util::CondVar cv_;  // scheduled_ or stop_ changed
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::weak_ptr<WatchReactor>> scheduled_ ABSL_GUARDED_BY(mu_);
  std::vector<std::weak_ptr<WatchReactor>> watches_ ABSL_GUARDED_BY(mu_);
  std::vector<std::weak_ptr<LeaderBoundStream>> leader_bound_ ABSL_GUARDED_BY(mu_);
  size_t watches_after_prune_ ABSL_GUARDED_BY(mu_) = 0;       // sizes after the last pruning
  size_t leader_bound_after_prune_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

// Range is a raw method: its answer goes out as the bytes the backend built
// (RangeEncoded), never parsed into a RangeResponse, and its size is held
// against `budget` (range_budget.h) from admission until gRPC is done with
// the call.
class KvService final
    : public etcdserverpb::KV::WithRawCallbackMethod_Range<etcdserverpb::KV::CallbackService> {
 public:
  KvService(ServerBackend* backend, std::shared_ptr<RangeBudget> budget)
      : backend_(backend), budget_(std::move(budget)) {}
  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext*, const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext*, const etcdserverpb::PutRequest*,
                                etcdserverpb::PutResponse*) override;
  grpc::ServerUnaryReactor* DeleteRange(grpc::CallbackServerContext*,
                                        const etcdserverpb::DeleteRangeRequest*,
                                        etcdserverpb::DeleteRangeResponse*) override;
  grpc::ServerUnaryReactor* Txn(grpc::CallbackServerContext*, const etcdserverpb::TxnRequest*,
                                etcdserverpb::TxnResponse*) override;
  grpc::ServerUnaryReactor* Compact(grpc::CallbackServerContext*,
                                    const etcdserverpb::CompactionRequest*,
                                    etcdserverpb::CompactionResponse*) override;

 private:
  ServerBackend* const backend_;
  const std::shared_ptr<RangeBudget> budget_;
};

class WatchService final : public etcdserverpb::Watch::CallbackService {
 public:
  WatchService(ServerBackend* backend, StreamHub* hub, util::Logger logger)
      : backend_(backend), hub_(hub), logger_(std::move(logger)) {}
  grpc::ServerBidiReactor<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>* Watch(
      grpc::CallbackServerContext* context) override;

 private:
  ServerBackend* const backend_;
  StreamHub* const hub_;
  util::Logger logger_;
};

class LeaseService final : public etcdserverpb::Lease::CallbackService {
 public:
  LeaseService(ServerBackend* backend, StreamHub* hub) : backend_(backend), hub_(hub) {}
  grpc::ServerUnaryReactor* LeaseGrant(grpc::CallbackServerContext*,
                                       const etcdserverpb::LeaseGrantRequest*,
                                       etcdserverpb::LeaseGrantResponse*) override;
  grpc::ServerUnaryReactor* LeaseRevoke(grpc::CallbackServerContext*,
                                        const etcdserverpb::LeaseRevokeRequest*,
                                        etcdserverpb::LeaseRevokeResponse*) override;
  grpc::ServerBidiReactor<etcdserverpb::LeaseKeepAliveRequest,
                          etcdserverpb::LeaseKeepAliveResponse>*
  LeaseKeepAlive(grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* LeaseTimeToLive(grpc::CallbackServerContext*,
                                            const etcdserverpb::LeaseTimeToLiveRequest*,
                                            etcdserverpb::LeaseTimeToLiveResponse*) override;
  grpc::ServerUnaryReactor* LeaseLeases(grpc::CallbackServerContext*,
                                        const etcdserverpb::LeaseLeasesRequest*,
                                        etcdserverpb::LeaseLeasesResponse*) override;

 private:
  ServerBackend* const backend_;
  StreamHub* const hub_;
};

// Membership changes answer whatever the backend says (UNIMPLEMENTED until
// the server supports them).
class ClusterService final : public etcdserverpb::Cluster::CallbackService {
 public:
  explicit ClusterService(ServerBackend* backend) : backend_(backend) {}
  grpc::ServerUnaryReactor* MemberList(grpc::CallbackServerContext*,
                                       const etcdserverpb::MemberListRequest*,
                                       etcdserverpb::MemberListResponse*) override;
  grpc::ServerUnaryReactor* MemberAdd(grpc::CallbackServerContext*,
                                      const etcdserverpb::MemberAddRequest*,
                                      etcdserverpb::MemberAddResponse*) override;
  grpc::ServerUnaryReactor* MemberRemove(grpc::CallbackServerContext*,
                                         const etcdserverpb::MemberRemoveRequest*,
                                         etcdserverpb::MemberRemoveResponse*) override;
  grpc::ServerUnaryReactor* MemberUpdate(grpc::CallbackServerContext*,
                                         const etcdserverpb::MemberUpdateRequest*,
                                         etcdserverpb::MemberUpdateResponse*) override;
  grpc::ServerUnaryReactor* MemberPromote(grpc::CallbackServerContext*,
                                          const etcdserverpb::MemberPromoteRequest*,
                                          etcdserverpb::MemberPromoteResponse*) override;

 private:
  ServerBackend* const backend_;
};

// etcd v3 Maintenance (Snapshot in snapshot_service.cc): each call goes to the backend.
class MaintenanceService final : public etcdserverpb::Maintenance::CallbackService {
 public:
  explicit MaintenanceService(ServerBackend* backend) : backend_(backend) {}
  grpc::ServerUnaryReactor* Alarm(grpc::CallbackServerContext*, const etcdserverpb::AlarmRequest*,
                                  etcdserverpb::AlarmResponse*) override;
  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext*,
                                   const etcdserverpb::StatusRequest*,
                                   etcdserverpb::StatusResponse*) override;
  grpc::ServerUnaryReactor* HashKV(grpc::CallbackServerContext*,
                                   const etcdserverpb::HashKVRequest*,
                                   etcdserverpb::HashKVResponse*) override;
  grpc::ServerUnaryReactor* Hash(grpc::CallbackServerContext*, const etcdserverpb::HashRequest*,
                                 etcdserverpb::HashResponse*) override;
  grpc::ServerUnaryReactor* Defragment(grpc::CallbackServerContext*,
                                       const etcdserverpb::DefragmentRequest*,
                                       etcdserverpb::DefragmentResponse*) override;
  grpc::ServerUnaryReactor* MoveLeader(grpc::CallbackServerContext*,
                                       const etcdserverpb::MoveLeaderRequest*,
                                       etcdserverpb::MoveLeaderResponse*) override;
  grpc::ServerWriteReactor<etcdserverpb::SnapshotResponse>* Snapshot(
      grpc::CallbackServerContext* context, const etcdserverpb::SnapshotRequest* req) override;

  // Snapshot streams running at once; more are refused with "etcdserver:
  // too many requests" (cppetcd's bound; each holds an LMDB read
  // transaction and reads the whole database).
  static constexpr int kMaxConcurrentSnapshots = 4;

 private:
  ServerBackend* const backend_;
  // Streams running now; shared with them (their threads may outlive this).
  const std::shared_ptr<std::atomic<int>> active_snapshots_ =
      std::make_shared<std::atomic<int>>(0);
};

// The Auth service's methods with their request and response types, as
// X(Method, Request, Response): declared below, defined in auth_service.cc.
#define CPPETCD_AUTH_RPCS(X)                                                       \
  X(AuthEnable, AuthEnableRequest, AuthEnableResponse)                             \
  X(AuthDisable, AuthDisableRequest, AuthDisableResponse)                          \
  X(Authenticate, AuthenticateRequest, AuthenticateResponse)                       \
  X(UserAdd, AuthUserAddRequest, AuthUserAddResponse)                              \
  X(UserGet, AuthUserGetRequest, AuthUserGetResponse)                              \
  X(UserList, AuthUserListRequest, AuthUserListResponse)                           \
  X(UserDelete, AuthUserDeleteRequest, AuthUserDeleteResponse)                     \
  X(UserChangePassword, AuthUserChangePasswordRequest, AuthUserChangePasswordResponse) \
  X(UserGrantRole, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse)            \
  X(UserRevokeRole, AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse)         \
  X(RoleAdd, AuthRoleAddRequest, AuthRoleAddResponse)                              \
  X(RoleGet, AuthRoleGetRequest, AuthRoleGetResponse)                              \
  X(RoleList, AuthRoleListRequest, AuthRoleListResponse)                           \
  X(RoleDelete, AuthRoleDeleteRequest, AuthRoleDeleteResponse)                     \
  X(RoleGrantPermission, AuthRoleGrantPermissionRequest,                           \
    AuthRoleGrantPermissionResponse)                                               \
  X(RoleRevokePermission, AuthRoleRevokePermissionRequest,                         \
    AuthRoleRevokePermissionResponse)

// etcd v3 Auth (auth_service.cc): each call goes to the backend under the
// caller's credentials.
class AuthService final : public etcdserverpb::Auth::CallbackService {
 public:
  explicit AuthService(ServerBackend* backend) : backend_(backend) {}
#define CPPETCD_AUTH_RPC(Method, Req, Resp)                                                \
  grpc::ServerUnaryReactor* Method(grpc::CallbackServerContext*, const etcdserverpb::Req*, \
                                   etcdserverpb::Resp*) override;
  CPPETCD_AUTH_RPCS(CPPETCD_AUTH_RPC)
#undef CPPETCD_AUTH_RPC

 private:
  ServerBackend* const backend_;
};

}  // namespace cppetcd::api

#endif  // CPPETCD_SRC_API_SERVICES_H_
