// etcd v3lock Lock service (etcd 3.4 v3lock/lock.go over clientv3/concurrency
// mutex.go), run on the ServerBackend.
#include <memory>
#include <string>
#include <utility>

#include "src/api/election_lock.h"
#include "src/api/services.h"

namespace cppetcd::api {

namespace {

class LockCall final : public QueueCall {
 public:
  LockCall(ServerBackend* backend, std::shared_ptr<SerialExecutor> executor,
           const v3lockpb::LockRequest& req, v3lockpb::LockResponse* resp)
      : QueueCall(backend, std::move(executor), req.name() + "/", req.lease(), /*value=*/"",
                  /*update_value=*/false),
        resp_(resp) {}

 private:
  // Mutex.Lock answers with the header of its last read: the put when the
  // lock was free at once, else the check that found the queue ahead empty.
  void Acquired(const etcdserverpb::ResponseHeader& txn_header,
                const etcdserverpb::ResponseHeader& wait_header) override {
    *resp_->mutable_header() = Filled(wait_header.revision() != 0 ? wait_header : txn_header);
    resp_->set_key(key_);
    FinishOnce(grpc::Status::OK);
  }

  // Mutex.Unlock: a plain delete of the key.
  void Release() override {
    etcdserverpb::DeleteRangeRequest del;
    del.set_key(key_);
    backend_->DeleteRange(credentials_, del,
                          [](absl::StatusOr<etcdserverpb::DeleteRangeResponse>) {});
  }

  v3lockpb::LockResponse* const resp_;  // valid until Finish
};

}  // namespace

grpc::ServerUnaryReactor* LockService::Lock(grpc::CallbackServerContext* context,
                                            const v3lockpb::LockRequest* req,
                                            v3lockpb::LockResponse* resp) {
  if (RequiresLeader(context) && !backend_->HasLeader()) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(GrpcNoLeader());
    return reactor;
  }
  auto call = std::make_shared<LockCall>(backend_, executor_, *req, resp);
  call->SetCredentials(CallCredentials(context));
  call->Begin(call);
  return call.get();
}

grpc::ServerUnaryReactor* LockService::Unlock(grpc::CallbackServerContext* context,
                                              const v3lockpb::UnlockRequest* req,
                                              v3lockpb::UnlockResponse* resp) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!Admit(context, reactor, backend_, absl::OkStatus())) return reactor;
  etcdserverpb::DeleteRangeRequest del;
  del.set_key(req->key());
  ServerBackend* backend = backend_;
  backend_->DeleteRange(CallCredentials(context), del, [reactor, resp, backend](
                                 absl::StatusOr<etcdserverpb::DeleteRangeResponse> r) {
    if (!r.ok()) {
      reactor->Finish(GrpcFromClientError(r.status()));
      return;
    }
    *resp->mutable_header() = r->header();
    backend->FillHeader(resp->mutable_header());
    resp->mutable_header()->set_revision(r->header().revision());
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

}  // namespace cppetcd::api
