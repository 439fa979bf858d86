// What the gRPC services need from the server: asynchronous etcd v3 calls,
// response headers, leadership and watch streams. EtcdServerBackend (below,
// etcd_server_backend.h) implements it over server::EtcdServer; tests
// implement it with fakes.
#ifndef CPPETCD_API_BACKEND_H_
#define CPPETCD_API_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppetcd/auth/credentials.h"
#include "etcdserverpb/rpc.pb.h"
#include "mvccpb/kv.pb.h"

namespace cppetcd::api {

// Completion of an asynchronous call: runs exactly once, on a server thread,
// and must not block.
template <class T>
using Done = absl::AnyInvocable<void(absl::StatusOr<T>) &&>;

// A Range answer in protobuf wire form (ServerBackend::RangeEncoded): the
// serialized header followed by body is the serialized RangeResponse.
struct EncodedRangeResponse {
  etcdserverpb::ResponseHeader header;  // as Range's; the service fills it
  std::string body;                     // kvs, more and count in wire form
};

// One batch of watch output for one watcher (watch_id -1: for the whole
// stream), as mvcc's WatchStream produces it. compact_revision != 0 means the
// watcher's start revision was compacted and the watcher is gone; events
// empty and compact_revision == 0 is a progress notification at `revision`.
struct WatchUpdate {
  int64_t watch_id = 0;
  int64_t revision = 0;  // store revision the batch is current to
  int64_t compact_revision = 0;
  std::vector<mvccpb::Event> events;  // prev_kv filled when the watcher asked
};

// One client watch stream's watchers. Thread-safe. Methods may be called from
// any thread; the notify callback given at creation may run on the apply
// thread (possibly under the store's locks), so it must only schedule work.
class WatchStreamBackend {
 public:
  virtual ~WatchStreamBackend() = default;
  // etcd v3 API: WatchCreateRequest. watch_id 0 = let the stream pick;
  // start_rev 0 = from the next revision; end "" = single key, "\0" = all
  // keys >= key. Returns the watch ID or an error (e.g. duplicate ID).
  virtual absl::StatusOr<int64_t> Watch(int64_t watch_id, std::string key, std::string end,
                                        int64_t start_rev, bool no_put, bool no_delete,
                                        bool prev_kv) = 0;
  // Removes a watcher; NotFound if it does not exist.
  virtual absl::Status Cancel(int64_t watch_id) = 0;
  // Asks for a progress notification for `watch_id` once it is caught up.
  virtual void RequestProgress(int64_t watch_id) = 0;
  // etcd v3 API: WatchProgressRequest. Queues an update with watch_id -1 at
  // the current revision once every watcher of the stream is caught up.
  virtual void RequestProgressAll() = 0;
  // Up to `max` pending updates, oldest first.
  virtual std::vector<WatchUpdate> Poll(size_t max) = 0;
  // The store's current revision.
  virtual int64_t Rev() const = 0;
};

// The server as the gRPC layer sees it. Thread-safe. Every call with a Done
// completes it exactly once; errors are the modules' absl::Status values,
// mapped to gRPC by api::ToGrpcStatus. Defaults answer Unimplemented. Calls
// the server checks against the client take `caller`: the credentials the
// call carried (api::CallCredentials: metadata "token" or "authorization",
// TLS client CN), passed with the request rather than kept in thread state.
class ServerBackend {
 public:
  virtual ~ServerBackend() = default;

  // etcd v3 KV.
  virtual void Range(const auth::Credentials& caller,
                     const etcdserverpb::RangeRequest&, Done<etcdserverpb::RangeResponse>) = 0;
  virtual void Put(const auth::Credentials& caller,
                   const etcdserverpb::PutRequest&, Done<etcdserverpb::PutResponse>) = 0;
  // Range with the answer in wire form, for the gRPC service to send without
  // a parsed copy; `size_hint`: the expected body bytes. Default: Range's
  // answer, serialized.
  virtual void RangeEncoded(const auth::Credentials& caller, const etcdserverpb::RangeRequest& req,
                            uint64_t size_hint, Done<EncodedRangeResponse> done) {
    (void)size_hint;
    Range(caller, req, [done = std::move(done)](
                           absl::StatusOr<etcdserverpb::RangeResponse> r) mutable {
      if (!r.ok()) return std::move(done)(r.status());
      EncodedRangeResponse out;
      out.header = std::move(*r->mutable_header());
      r->clear_header();
      r->SerializeToString(&out.body);
      std::move(done)(std::move(out));
    });
  }
  // The estimated serialized size of Range's answer to `req`, in bytes, for
  // the bound on range answers in flight (range_budget.h); 0 when unknown.
  // Must not block. Default: 0.
  virtual uint64_t EstimateRangeBytes(const etcdserverpb::RangeRequest& req) {
    (void)req;
    return 0;
  }
  virtual void DeleteRange(const auth::Credentials& caller, const etcdserverpb::DeleteRangeRequest&,
                           Done<etcdserverpb::DeleteRangeResponse>) = 0;
  virtual void Txn(const auth::Credentials& caller,
                   const etcdserverpb::TxnRequest&, Done<etcdserverpb::TxnResponse>) = 0;
  virtual void Compact(const auth::Credentials& caller, const etcdserverpb::CompactionRequest&,
                       Done<etcdserverpb::CompactionResponse>) = 0;

  // etcd v3 Lease. LeaseRenew completes with the new TTL in seconds.
  virtual void LeaseGrant(const auth::Credentials& caller, const etcdserverpb::LeaseGrantRequest&,
                          Done<etcdserverpb::LeaseGrantResponse>) = 0;
  virtual void LeaseRevoke(const auth::Credentials& caller, const etcdserverpb::LeaseRevokeRequest&,
                           Done<etcdserverpb::LeaseRevokeResponse>) = 0;
  virtual void LeaseRenew(int64_t id, Done<int64_t> ttl_seconds) = 0;
  virtual void LeaseTimeToLive(const etcdserverpb::LeaseTimeToLiveRequest&,
                               Done<etcdserverpb::LeaseTimeToLiveResponse>) = 0;
  virtual void LeaseLeases(const etcdserverpb::LeaseLeasesRequest&,
                           Done<etcdserverpb::LeaseLeasesResponse>) = 0;

  // etcd v3 Cluster and Maintenance.
  virtual void MemberList(const etcdserverpb::MemberListRequest&,
                          Done<etcdserverpb::MemberListResponse>) = 0;
  virtual void Status(const etcdserverpb::StatusRequest&, Done<etcdserverpb::StatusResponse>) = 0;
  virtual void Alarm(const auth::Credentials& caller,
                     const etcdserverpb::AlarmRequest&, Done<etcdserverpb::AlarmResponse> done) {
    std::move(done)(absl::UnimplementedError("Alarm"));
  }
  virtual void HashKV(const etcdserverpb::HashKVRequest&, Done<etcdserverpb::HashKVResponse> done) {
    std::move(done)(absl::UnimplementedError("HashKV"));
  }
  // etcd v3 Maintenance.Hash: CRC-32C of the whole backend.
  virtual void Hash(const etcdserverpb::HashRequest&, Done<etcdserverpb::HashResponse> done) {
    std::move(done)(absl::UnimplementedError("Hash"));
  }
  virtual void Defragment(const etcdserverpb::DefragmentRequest&,
                          Done<etcdserverpb::DefragmentResponse> done) {
    std::move(done)(absl::UnimplementedError("Defragment"));
  }
  virtual void MoveLeader(const etcdserverpb::MoveLeaderRequest&,
                          Done<etcdserverpb::MoveLeaderResponse> done) {
    std::move(done)(absl::UnimplementedError("MoveLeader"));
  }
  virtual void MemberAdd(const auth::Credentials& caller, const etcdserverpb::MemberAddRequest&,
                         Done<etcdserverpb::MemberAddResponse> done) {
    std::move(done)(absl::UnimplementedError("MemberAdd"));
  }
  virtual void MemberRemove(const auth::Credentials& caller,
                            const etcdserverpb::MemberRemoveRequest&,
                            Done<etcdserverpb::MemberRemoveResponse> done) {
    std::move(done)(absl::UnimplementedError("MemberRemove"));
  }
  virtual void MemberUpdate(const auth::Credentials& caller,
                            const etcdserverpb::MemberUpdateRequest&,
                            Done<etcdserverpb::MemberUpdateResponse> done) {
    std::move(done)(absl::UnimplementedError("MemberUpdate"));
  }
  virtual void MemberPromote(const auth::Credentials& caller,
                             const etcdserverpb::MemberPromoteRequest&,
                             Done<etcdserverpb::MemberPromoteResponse> done) {
    std::move(done)(absl::UnimplementedError("MemberPromote"));
  }

  // etcd v3 Auth. AuthorizeAdmin / AuthorizeRange check `caller` for the
  // api's own gates (Maintenance needs role root; Watch needs read
  // permission).
  virtual absl::Status AuthorizeAdmin(const auth::Credentials& caller) { return absl::OkStatus(); }
  virtual absl::Status AuthorizeRange(const auth::Credentials& caller, const std::string& key,
                                      const std::string& range_end) {
    return absl::OkStatus();
  }
#define CPPETCD_API_AUTH_CALL(Method, Req, Resp)                                          \
  virtual void Method(const auth::Credentials& caller, const etcdserverpb::Req&,         \
                      Done<etcdserverpb::Resp> done) {                                    \
    std::move(done)(absl::UnimplementedError(#Method));                                  \
  }
  CPPETCD_API_AUTH_CALL(AuthEnable, AuthEnableRequest, AuthEnableResponse)
  CPPETCD_API_AUTH_CALL(AuthDisable, AuthDisableRequest, AuthDisableResponse)
  CPPETCD_API_AUTH_CALL(Authenticate, AuthenticateRequest, AuthenticateResponse)
  CPPETCD_API_AUTH_CALL(UserAdd, AuthUserAddRequest, AuthUserAddResponse)
  CPPETCD_API_AUTH_CALL(UserGet, AuthUserGetRequest, AuthUserGetResponse)
  CPPETCD_API_AUTH_CALL(UserList, AuthUserListRequest, AuthUserListResponse)
  CPPETCD_API_AUTH_CALL(UserDelete, AuthUserDeleteRequest, AuthUserDeleteResponse)
  CPPETCD_API_AUTH_CALL(UserChangePassword, AuthUserChangePasswordRequest,
                        AuthUserChangePasswordResponse)
  CPPETCD_API_AUTH_CALL(UserGrantRole, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse)
  CPPETCD_API_AUTH_CALL(UserRevokeRole, AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse)
  CPPETCD_API_AUTH_CALL(RoleAdd, AuthRoleAddRequest, AuthRoleAddResponse)
  CPPETCD_API_AUTH_CALL(RoleGet, AuthRoleGetRequest, AuthRoleGetResponse)
  CPPETCD_API_AUTH_CALL(RoleList, AuthRoleListRequest, AuthRoleListResponse)
  CPPETCD_API_AUTH_CALL(RoleDelete, AuthRoleDeleteRequest, AuthRoleDeleteResponse)
  CPPETCD_API_AUTH_CALL(RoleGrantPermission, AuthRoleGrantPermissionRequest,
                        AuthRoleGrantPermissionResponse)
  CPPETCD_API_AUTH_CALL(RoleRevokePermission, AuthRoleRevokePermissionRequest,
                        AuthRoleRevokePermissionResponse)
#undef CPPETCD_API_AUTH_CALL

  // Writes a consistent copy of the backend database to `fd` (etcd
  // Maintenance.Snapshot). Blocking: called on a thread of its own.
  virtual absl::Status SnapshotBackend(int fd) {
    return absl::UnimplementedError("Snapshot");
  }
  // The total size of a SnapshotBackend copy from its first bytes (the
  // first kSnapshotHeadBytes of it, when it is longer), so that a copy
  // streamed as it is written can announce remaining_bytes.
  virtual absl::StatusOr<uint64_t> SnapshotSize(std::string_view head) {
    (void)head;
    return absl::UnimplementedError("SnapshotSize");
  }
  static constexpr size_t kSnapshotHeadBytes = 128 * 1024;

  // Sets cluster_id, member_id and raft_term; sets revision to the store's
  // current revision when it is 0 (etcd v3rpc header.fill).
  virtual void FillHeader(etcdserverpb::ResponseHeader* header) const = 0;
  // Whether this member currently knows a Raft leader.
  virtual bool HasLeader() const = 0;
  // Whether this member is a learner: etcd 3.4 refuses every stream RPC
  // (Watch, LeaseKeepAlive, Snapshot) on a learner with "etcdserver: rpc not
  // supported for learner"; the unary ones are refused by the server.
  virtual bool IsLearner() const { return false; }
  // A new watch stream; `notify` fires (from any thread, must not block)
  // whenever Poll may return something new.
  virtual std::unique_ptr<WatchStreamBackend> NewWatchStream(std::function<void()> notify) = 0;
  // Largest request the server accepts (etcd --max-request-bytes).
  virtual int64_t MaxRequestBytes() const = 0;
  // Most operations per txn branch (etcd --max-txn-ops).
  virtual uint32_t MaxTxnOps() const { return 128; }
};

}  // namespace cppetcd::api

#endif  // CPPETCD_API_BACKEND_H_
