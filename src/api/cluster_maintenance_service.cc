// etcd v3 Cluster and Maintenance services (etcd 3.4 v3rpc/member.go,
// maintenance.go). RPCs not overridden answer UNIMPLEMENTED.
#include "src/api/services.h"

#include "cppetcd/auth/errors.h"

namespace cppetcd::api {
namespace {

// Admit's checks, then, for `admin` calls, role root for `caller` when auth
// is enabled (etcd authMaintenanceServer: Defragment, Snapshot, Hash,
// HashKV). Returns false after finishing `reactor` with the error.
bool AdmitCall(grpc::CallbackServerContext* context, grpc::ServerUnaryReactor* reactor,
               ServerBackend* backend, const auth::Credentials& caller, bool admin) {
  if (!Admit(context, reactor, backend, absl::OkStatus())) return false;
  if (admin) {
    if (absl::Status s = backend->AuthorizeAdmin(caller); !s.ok()) {
      // etcd's maintenance server returns the auth error unmapped: gRPC
      // sends it as UNKNOWN with the auth package's text.
      reactor->Finish(grpc::Status(grpc::StatusCode::UNKNOWN, std::string(s.message())));
      return false;
    }
  }
  return true;
}

// A unary call passed straight to the backend with the caller's credentials.
template <class Req, class Resp>
grpc::ServerUnaryReactor* Forward(
    grpc::CallbackServerContext* context, ServerBackend* backend,
    void (ServerBackend::*method)(const auth::Credentials&, const Req&, Done<Resp>),
    const Req* req, Resp* resp) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const auth::Credentials caller = CallCredentials(context);
  if (AdmitCall(context, reactor, backend, caller, /*admin=*/false)) {
    (backend->*method)(caller, *req, ReplyTo(reactor, resp, backend));
  }
  return reactor;
}

// The same for calls the server does not check against the caller; `admin`
// ones are checked here.
template <class Req, class Resp>
grpc::ServerUnaryReactor* Forward(grpc::CallbackServerContext* context, ServerBackend* backend,
                                  void (ServerBackend::*method)(const Req&, Done<Resp>),
                                  const Req* req, Resp* resp, bool admin = false) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (AdmitCall(context, reactor, backend, CallCredentials(context), admin)) {
    (backend->*method)(*req, ReplyTo(reactor, resp, backend));
  }
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* ClusterService::MemberList(grpc::CallbackServerContext* context,
                                      const etcdserverpb::MemberListRequest* req,
                                      etcdserverpb::MemberListResponse* resp) {
  return Forward(context, backend_, &ServerBackend::MemberList, req, resp);
}

grpc::ServerUnaryReactor* ClusterService::MemberAdd(grpc::CallbackServerContext* context,
                                      const etcdserverpb::MemberAddRequest* req,
                                      etcdserverpb::MemberAddResponse* resp) {
  return Forward(context, backend_, &ServerBackend::MemberAdd, req, resp);
}

grpc::ServerUnaryReactor* ClusterService::MemberRemove(grpc::CallbackServerContext* context,
                                      const etcdserverpb::MemberRemoveRequest* req,
                                      etcdserverpb::MemberRemoveResponse* resp) {
  return Forward(context, backend_, &ServerBackend::MemberRemove, req, resp);
}

grpc::ServerUnaryReactor* ClusterService::MemberUpdate(grpc::CallbackServerContext* context,
                                      const etcdserverpb::MemberUpdateRequest* req,
                                      etcdserverpb::MemberUpdateResponse* resp) {
  return Forward(context, backend_, &ServerBackend::MemberUpdate, req, resp);
}

grpc::ServerUnaryReactor* ClusterService::MemberPromote(grpc::CallbackServerContext* context,
                                      const etcdserverpb::MemberPromoteRequest* req,
                                      etcdserverpb::MemberPromoteResponse* resp) {
  return Forward(context, backend_, &ServerBackend::MemberPromote, req, resp);
}

grpc::ServerUnaryReactor* MaintenanceService::Alarm(grpc::CallbackServerContext* context,
                                      const etcdserverpb::AlarmRequest* req,
                                      etcdserverpb::AlarmResponse* resp) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!Admit(context, reactor, backend_, absl::OkStatus())) return reactor;
  backend_->Alarm(CallCredentials(context), *req,
                  [reactor, reply = ReplyTo(reactor, resp, backend_)](
                            absl::StatusOr<etcdserverpb::AlarmResponse> r) mutable {
    // etcd's maintenance server returns the caller's auth error (an invalid
    // token) unmapped: gRPC sends it as UNKNOWN with the auth package's text.
    if (!r.ok() && auth::IsAuthError(r.status())) {
      reactor->Finish(grpc::Status(grpc::StatusCode::UNKNOWN, std::string(r.status().message())));
      return;
    }
    std::move(reply)(std::move(r));
  });
  return reactor;
}

grpc::ServerUnaryReactor* MaintenanceService::Status(grpc::CallbackServerContext* context,
                                      const etcdserverpb::StatusRequest* req,
                                      etcdserverpb::StatusResponse* resp) {
  return Forward(context, backend_, &ServerBackend::Status, req, resp);
}

grpc::ServerUnaryReactor* MaintenanceService::HashKV(grpc::CallbackServerContext* context,
                                      const etcdserverpb::HashKVRequest* req,
                                      etcdserverpb::HashKVResponse* resp) {
  return Forward(context, backend_, &ServerBackend::HashKV, req, resp, /*admin=*/true);
}

grpc::ServerUnaryReactor* MaintenanceService::Hash(grpc::CallbackServerContext* context,
                                                   const etcdserverpb::HashRequest* req,
                                                   etcdserverpb::HashResponse* resp) {
  return Forward(context, backend_, &ServerBackend::Hash, req, resp, /*admin=*/true);
}

grpc::ServerUnaryReactor* MaintenanceService::Defragment(grpc::CallbackServerContext* context,
                                      const etcdserverpb::DefragmentRequest* req,
                                      etcdserverpb::DefragmentResponse* resp) {
  return Forward(context, backend_, &ServerBackend::Defragment, req, resp, /*admin=*/true);
}

grpc::ServerUnaryReactor* MaintenanceService::MoveLeader(grpc::CallbackServerContext* context,
                                      const etcdserverpb::MoveLeaderRequest* req,
                                      etcdserverpb::MoveLeaderResponse* resp) {
  return Forward(context, backend_, &ServerBackend::MoveLeader, req, resp);
}

}  // namespace cppetcd::api
