// etcd v3 Cluster and Maintenance services (etcd 3.4 v3rpc/member.go,
// maintenance.go). RPCs not overridden here answer UNIMPLEMENTED.
#include "src/api/services.h"

namespace cppetcd::api {

grpc::ServerUnaryReactor* ClusterService::MemberList(grpc::CallbackServerContext* context,
                                                     const etcdserverpb::MemberListRequest* req,
                                                     etcdserverpb::MemberListResponse* resp) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (Admit(context, reactor, backend_, absl::OkStatus())) {
    backend_->MemberList(*req, ReplyTo(reactor, resp, backend_));
  }
  return reactor;
}

grpc::ServerUnaryReactor* MaintenanceService::Alarm(grpc::CallbackServerContext* context,
                                                    const etcdserverpb::AlarmRequest* req,
                                                    etcdserverpb::AlarmResponse* resp) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (Admit(context, reactor, backend_, absl::OkStatus())) {
    backend_->Alarm(*req, ReplyTo(reactor, resp, backend_));
  }
  return reactor;
}

grpc::ServerUnaryReactor* MaintenanceService::Status(grpc::CallbackServerContext* context,
                                                     const etcdserverpb::StatusRequest* req,
                                                     etcdserverpb::StatusResponse* resp) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (Admit(context, reactor, backend_, absl::OkStatus())) {
    backend_->Status(*req, ReplyTo(reactor, resp, backend_));
  }
  return reactor;
}

grpc::ServerUnaryReactor* MaintenanceService::HashKV(grpc::CallbackServerContext* context,
                                                     const etcdserverpb::HashKVRequest* req,
                                                     etcdserverpb::HashKVResponse* resp) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (Admit(context, reactor, backend_, absl::OkStatus())) {
    backend_->HashKV(*req, ReplyTo(reactor, resp, backend_));
  }
  return reactor;
}

}  // namespace cppetcd::api
