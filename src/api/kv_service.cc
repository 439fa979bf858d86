// etcd v3 KV service (etcd 3.4 v3rpc/key.go): validate, hand to the server,
// answer when its Done fires.
#include "src/api/services.h"
#include "cppetcd/server/validate.h"

namespace cppetcd::api {
bool Admit(grpc::CallbackServerContext* context, grpc::ServerUnaryReactor* reactor,
           const ServerBackend* backend, const absl::Status& validation) {
  if (RequiresLeader(context) && !backend->HasLeader()) {
    reactor->Finish(GrpcNoLeader());
    return false;
  }
  if (!validation.ok()) {
    reactor->Finish(ToGrpcStatus(validation));
    return false;
  }
  return true;
}

bool RequiresLeader(const grpc::CallbackServerContext* context) {
  const auto& md = context->client_metadata();
  auto it = md.find("hasleader");
  return it != md.end() && it->second == "true";
}

grpc::ServerUnaryReactor* KvService::Range(grpc::CallbackServerContext* context,
                                           const etcdserverpb::RangeRequest* req,
                                           etcdserverpb::RangeResponse* resp) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (Admit(context, reactor, backend_, server::ValidateRange(*req))) {
    backend_->Range(CallCredentials(context), *req, ReplyTo(reactor, resp, backend_));
  }
  return reactor;
}

grpc::ServerUnaryReactor* KvService::Put(grpc::CallbackServerContext* context,
                                         const etcdserverpb::PutRequest* req,
                                         etcdserverpb::PutResponse* resp) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (Admit(context, reactor, backend_, server::ValidatePut(*req))) {
    backend_->Put(CallCredentials(context), *req, ReplyTo(reactor, resp, backend_));
  }
  return reactor;
}

grpc::ServerUnaryReactor* KvService::DeleteRange(grpc::CallbackServerContext* context,
                                                 const etcdserverpb::DeleteRangeRequest* req,
                                                 etcdserverpb::DeleteRangeResponse* resp) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (Admit(context, reactor, backend_, server::ValidateDeleteRange(*req))) {
    backend_->DeleteRange(CallCredentials(context), *req, ReplyTo(reactor, resp, backend_));
  }
  return reactor;
}

grpc::ServerUnaryReactor* KvService::Txn(grpc::CallbackServerContext* context,
                                         const etcdserverpb::TxnRequest* req,
                                         etcdserverpb::TxnResponse* resp) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (Admit(context, reactor, backend_, server::ValidateTxn(*req, backend_->MaxTxnOps()))) {
    backend_->Txn(CallCredentials(context), *req, ReplyTo(reactor, resp, backend_));
  }
  return reactor;
}

grpc::ServerUnaryReactor* KvService::Compact(grpc::CallbackServerContext* context,
                                             const etcdserverpb::CompactionRequest* req,
                                             etcdserverpb::CompactionResponse* resp) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (Admit(context, reactor, backend_, absl::OkStatus())) {
    backend_->Compact(CallCredentials(context), *req, ReplyTo(reactor, resp, backend_));
  }
  return reactor;
}

}  // namespace cppetcd::api
