#include "cppetcd/api/etcd_server_backend.h"

#include <utility>

#include "cppetcd/mvcc/watchable_store.h"
#include "cppetcd/server/etcd_server.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/storage/bbolt_reader.h"

namespace cppetcd::api {
namespace {

class MvccWatchStream final : public WatchStreamBackend {
 public:
  MvccWatchStream(std::unique_ptr<mvcc::WatchStream> stream, const server::EtcdServer* server)
      : stream_(std::move(stream)), server_(server) {}
  ~MvccWatchStream() override { stream_->Close(); }

  absl::StatusOr<int64_t> Watch(int64_t watch_id, std::string key, std::string end,
                                int64_t start_rev, bool no_put, bool no_delete,
                                bool prev_kv) override {
    // A watch from "now" starts after every write already answered.
    server_->AwaitRepliedWrites();
    // Periodic progress is driven by the api (StreamHub), so the store's own
    // progress timer is not asked for.
    return stream_->Watch(watch_id, std::move(key), std::move(end), start_rev, no_put, no_delete,
                          prev_kv, /*progress_notify=*/false);
  }
  absl::Status Cancel(int64_t watch_id) override { return stream_->Cancel(watch_id); }
  void RequestProgress(int64_t watch_id) override { stream_->RequestProgress(watch_id); }
  void RequestProgressAll() override { stream_->RequestProgressAll(); }
  std::vector<WatchUpdate> Poll(size_t max) override {
    std::vector<mvcc::WatchResponse> got = stream_->Poll(max);
    std::vector<WatchUpdate> out;
    out.reserve(got.size());
    for (mvcc::WatchResponse& r : got) {
      out.push_back(WatchUpdate{r.watch_id, r.revision, r.compact_revision, std::move(r.events)});
    }
    return out;
  }
  int64_t Rev() const override {
    server_->AwaitRepliedWrites();
    return stream_->Rev();
  }

 private:
  std::unique_ptr<mvcc::WatchStream> stream_;
  const server::EtcdServer* server_;
};

class EtcdServerBackend final : public ServerBackend {
 public:
  explicit EtcdServerBackend(server::EtcdServer* s) : s_(s) {}

  void Range(const auth::Credentials& c,
             const etcdserverpb::RangeRequest& r, Done<etcdserverpb::RangeResponse> d) override {
    s_->Range(c, r, std::move(d));
  }
  void RangeEncoded(const auth::Credentials& c, const etcdserverpb::RangeRequest& r,
                    uint64_t size_hint, Done<EncodedRangeResponse> d) override {
    s_->RangeEncoded(c, r, size_hint,
                     [d = std::move(d)](absl::StatusOr<server::EncodedRange> e) mutable {
                       if (!e.ok()) return std::move(d)(e.status());
                       std::move(d)(EncodedRangeResponse{std::move(e->header), std::move(e->body)});
                     });
  }
  uint64_t EstimateRangeBytes(const etcdserverpb::RangeRequest& r) override {
    // An error (a compacted or future revision) is the Range's to report.
    absl::StatusOr<uint64_t> bytes = s_->EstimateRangeBytes(r);
    return bytes.ok() ? *bytes : 0;
  }
  void Put(const auth::Credentials& c,
           const etcdserverpb::PutRequest& r, Done<etcdserverpb::PutResponse> d) override {
    s_->Put(c, r, std::move(d));
  }
  void DeleteRange(const auth::Credentials& c, const etcdserverpb::DeleteRangeRequest& r,
                   Done<etcdserverpb::DeleteRangeResponse> d) override {
    s_->DeleteRange(c, r, std::move(d));
  }
  void Txn(const auth::Credentials& c,
           const etcdserverpb::TxnRequest& r, Done<etcdserverpb::TxnResponse> d) override {
    s_->Txn(c, r, std::move(d));
  }
  void Compact(const auth::Credentials& c, const etcdserverpb::CompactionRequest& r,
               Done<etcdserverpb::CompactionResponse> d) override {
    s_->Compact(c, r, std::move(d));
  }
  void LeaseGrant(const auth::Credentials& c, const etcdserverpb::LeaseGrantRequest& r,
                  Done<etcdserverpb::LeaseGrantResponse> d) override {
    s_->LeaseGrant(c, r, std::move(d));
  }
  void LeaseRevoke(const auth::Credentials& c, const etcdserverpb::LeaseRevokeRequest& r,
                   Done<etcdserverpb::LeaseRevokeResponse> d) override {
    s_->LeaseRevoke(c, r, std::move(d));
  }
  void LeaseRenew(int64_t id, Done<int64_t> d) override { s_->LeaseRenew(id, std::move(d)); }
  void LeaseTimeToLive(const etcdserverpb::LeaseTimeToLiveRequest& r,
                       Done<etcdserverpb::LeaseTimeToLiveResponse> d) override {
    s_->LeaseTimeToLive(r, std::move(d));
  }
  void LeaseLeases(const etcdserverpb::LeaseLeasesRequest& r,
                   Done<etcdserverpb::LeaseLeasesResponse> d) override {
    s_->LeaseLeases(r, std::move(d));
  }
  void MemberList(const etcdserverpb::MemberListRequest& r,
                  Done<etcdserverpb::MemberListResponse> d) override {
    s_->MemberList(r, std::move(d));
  }
  void MemberAdd(const auth::Credentials& c, const etcdserverpb::MemberAddRequest& r,
                 Done<etcdserverpb::MemberAddResponse> d) override {
    s_->MemberAdd(c, r, std::move(d));
  }
  void MemberRemove(const auth::Credentials& c, const etcdserverpb::MemberRemoveRequest& r,
                    Done<etcdserverpb::MemberRemoveResponse> d) override {
    s_->MemberRemove(c, r, std::move(d));
  }
  void MemberUpdate(const auth::Credentials& c, const etcdserverpb::MemberUpdateRequest& r,
                    Done<etcdserverpb::MemberUpdateResponse> d) override {
    s_->MemberUpdate(c, r, std::move(d));
  }
  void MemberPromote(const auth::Credentials& c, const etcdserverpb::MemberPromoteRequest& r,
                     Done<etcdserverpb::MemberPromoteResponse> d) override {
    s_->MemberPromote(c, r, std::move(d));
  }
  void Status(const etcdserverpb::StatusRequest& r,
              Done<etcdserverpb::StatusResponse> d) override {
    s_->Status(r, std::move(d));
  }
  void Alarm(const auth::Credentials& c,
             const etcdserverpb::AlarmRequest& r, Done<etcdserverpb::AlarmResponse> d) override {
    s_->Alarm(c, r, std::move(d));
  }
  void HashKV(const etcdserverpb::HashKVRequest& r,
              Done<etcdserverpb::HashKVResponse> d) override {
    s_->HashKV(r, std::move(d));
  }
  void Hash(const etcdserverpb::HashRequest& r, Done<etcdserverpb::HashResponse> d) override {
    s_->Hash(r, std::move(d));
  }
  void Defragment(const etcdserverpb::DefragmentRequest& r,
                  Done<etcdserverpb::DefragmentResponse> d) override {
    s_->Defragment(r, std::move(d));
  }
  void MoveLeader(const etcdserverpb::MoveLeaderRequest& r,
                  Done<etcdserverpb::MoveLeaderResponse> d) override {
    s_->MoveLeader(r, std::move(d));
  }

  absl::Status SnapshotBackend(int fd) override { return s_->SnapshotBackend(fd); }
  absl::StatusOr<uint64_t> SnapshotSize(std::string_view head) override {
    return storage::BboltSizeFromHead(head);
  }

  absl::Status AuthorizeAdmin(const auth::Credentials& c) override {
    return s_->AuthorizeAdmin(c);
  }
  absl::Status AuthorizeRange(const auth::Credentials& c, const std::string& key,
                              const std::string& range_end) override {
    return s_->AuthorizeRange(c, key, range_end);
  }
#define CPPETCD_FORWARD_AUTH(Method, Req, Resp)                                          \
  void Method(const auth::Credentials& c, const etcdserverpb::Req& r,                    \
              Done<etcdserverpb::Resp> d) override {                                     \
    s_->Method(c, r, std::move(d));                                                      \
  }
  CPPETCD_FORWARD_AUTH(AuthEnable, AuthEnableRequest, AuthEnableResponse)
  CPPETCD_FORWARD_AUTH(AuthDisable, AuthDisableRequest, AuthDisableResponse)
  CPPETCD_FORWARD_AUTH(Authenticate, AuthenticateRequest, AuthenticateResponse)
  CPPETCD_FORWARD_AUTH(UserAdd, AuthUserAddRequest, AuthUserAddResponse)
  CPPETCD_FORWARD_AUTH(UserGet, AuthUserGetRequest, AuthUserGetResponse)
  CPPETCD_FORWARD_AUTH(UserList, AuthUserListRequest, AuthUserListResponse)
  CPPETCD_FORWARD_AUTH(UserDelete, AuthUserDeleteRequest, AuthUserDeleteResponse)
  CPPETCD_FORWARD_AUTH(UserChangePassword, AuthUserChangePasswordRequest,
                       AuthUserChangePasswordResponse)
  CPPETCD_FORWARD_AUTH(UserGrantRole, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse)
  CPPETCD_FORWARD_AUTH(UserRevokeRole, AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse)
  CPPETCD_FORWARD_AUTH(RoleAdd, AuthRoleAddRequest, AuthRoleAddResponse)
  CPPETCD_FORWARD_AUTH(RoleGet, AuthRoleGetRequest, AuthRoleGetResponse)
  CPPETCD_FORWARD_AUTH(RoleList, AuthRoleListRequest, AuthRoleListResponse)
  CPPETCD_FORWARD_AUTH(RoleDelete, AuthRoleDeleteRequest, AuthRoleDeleteResponse)
  CPPETCD_FORWARD_AUTH(RoleGrantPermission, AuthRoleGrantPermissionRequest,
                       AuthRoleGrantPermissionResponse)
  CPPETCD_FORWARD_AUTH(RoleRevokePermission, AuthRoleRevokePermissionRequest,
                       AuthRoleRevokePermissionResponse)
#undef CPPETCD_FORWARD_AUTH

  void FillHeader(etcdserverpb::ResponseHeader* header) const override {
    s_->FillHeader(header);
  }
  bool HasLeader() const override {
    return s_->Metrics().has_leader.load(std::memory_order_relaxed);
  }
  bool IsLearner() const override { return s_->IsLearner(); }
  std::unique_ptr<WatchStreamBackend> NewWatchStream(std::function<void()> notify) override {
    return std::make_unique<MvccWatchStream>(s_->Watchable()->NewWatchStream(std::move(notify)), s_);
  }
  int64_t MaxRequestBytes() const override {
    return static_cast<int64_t>(s_->Config().max_request_bytes);
  }
  uint32_t MaxTxnOps() const override { return s_->Config().max_txn_ops; }

 private:
  server::EtcdServer* const s_;
};

}  // namespace

std::unique_ptr<ServerBackend> NewEtcdServerBackend(server::EtcdServer* server) {
  return std::make_unique<EtcdServerBackend>(server);
}

}  // namespace cppetcd::api
