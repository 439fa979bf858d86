// etcd v3 Lease service (etcd 3.4 v3rpc/lease.go).
#include <deque>

#include "src/api/services.h"
#include "cppetcd/lease/lessor.h"
#include "cppetcd/server/validate.h"

namespace cppetcd::api {
namespace {

using etcdserverpb::LeaseKeepAliveRequest;
using etcdserverpb::LeaseKeepAliveResponse;

// One keep-alive stream. Requests are handled one at a time, in order: read,
// renew through the server, write the answer, read the next (etcd's loop), so
// answers come back in request order with one write in flight. The reactor
// owns itself (self_) until OnDone; server callbacks hold a shared_ptr.
class KeepAliveReactor final
    : public grpc::ServerBidiReactor<LeaseKeepAliveRequest, LeaseKeepAliveResponse>,
      public LeaderBoundStream,
      public std::enable_shared_from_this<KeepAliveReactor> {
 public:
  explicit KeepAliveReactor(ServerBackend* backend) : backend_(backend) {}

  void Begin(std::shared_ptr<KeepAliveReactor> self) {
    self_ = std::move(self);
    Read();
  }

  void OnReadDone(bool ok) override {
    auto keep = shared_from_this();
    // Client half-close ends the stream successfully, as etcd returns nil on EOF.
    if (!ok) {
      gate_.RequestFinish(this, grpc::Status::OK);
      return;
    }
    // The header is taken before the renewal so its revision is not later
    // than the keep-alive (a revoke after it shows a higher revision).
    response_.Clear();
    backend_->FillHeader(response_.mutable_header());
    response_.set_id(request_.id());
    backend_->LeaseRenew(request_.id(), [self = shared_from_this()](absl::StatusOr<int64_t> ttl) {
      self->OnRenewed(std::move(ttl));
    });
  }

  void OnWriteDone(bool ok) override {
    auto keep = shared_from_this();
    if (!ok) {
      gate_.RequestFinish(
          this, grpc::Status(grpc::StatusCode::CANCELLED, "failed to send keep-alive response"));
      return;
    }
    Read();
  }

  void OnCancel() override {
    auto keep = shared_from_this();
    gate_.RequestFinish(this, grpc::Status(grpc::StatusCode::CANCELLED, "context canceled"));
  }

  void OnDone() override { self_.reset(); }

  void CancelNoLeader() override {
    auto keep = shared_from_this();
    gate_.RequestFinish(this, GrpcNoLeader());
  }

 private:
  void OnRenewed(absl::StatusOr<int64_t> ttl) {
    if (!ttl.ok()) {
      // A missing lease is answered with TTL 0, not an error.
      if (!lease::IsLeaseNotFound(ttl.status())) {
        gate_.RequestFinish(this, ToGrpcStatus(ttl.status()));
        return;
      }
      response_.set_ttl(0);
    } else {
      response_.set_ttl(*ttl);
    }
    if (gate_.BeginStart()) {
      StartWrite(&response_);
      gate_.EndStart(this);
    }
  }

  void Read() {
    if (gate_.BeginStart()) {
      StartRead(&request_);
      gate_.EndStart(this);
    }
  }

  ServerBackend* const backend_;
  LeaseKeepAliveRequest request_;    // owned by the read in flight
  LeaseKeepAliveResponse response_;  // owned by the renewal / write in flight
  StreamGate gate_;
  std::shared_ptr<KeepAliveReactor> self_;  // released in OnDone
};

// Finishes a stream at once (e.g. no leader while the client requires one).
template <class Req, class Resp>
class RejectedStream final : public grpc::ServerBidiReactor<Req, Resp> {
 public:
  explicit RejectedStream(grpc::Status status) { this->Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerBidiReactor<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>*
NewRejectedWatchStream(grpc::Status status) {
  return new RejectedStream<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>(
      std::move(status));
}

grpc::ServerUnaryReactor* LeaseService::LeaseGrant(grpc::CallbackServerContext* context,
                                                   const etcdserverpb::LeaseGrantRequest* req,
                                                   etcdserverpb::LeaseGrantResponse* resp) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (Admit(context, reactor, backend_, server::ValidateLeaseGrant(*req))) {
    backend_->LeaseGrant(CallCredentials(context), *req, ReplyTo(reactor, resp, backend_));
  }
  return reactor;
}

grpc::ServerUnaryReactor* LeaseService::LeaseRevoke(grpc::CallbackServerContext* context,
                                                    const etcdserverpb::LeaseRevokeRequest* req,
                                                    etcdserverpb::LeaseRevokeResponse* resp) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (Admit(context, reactor, backend_, absl::OkStatus())) {
    backend_->LeaseRevoke(CallCredentials(context), *req, ReplyTo(reactor, resp, backend_));
  }
  return reactor;
}

grpc::ServerUnaryReactor* LeaseService::LeaseTimeToLive(
    grpc::CallbackServerContext* context, const etcdserverpb::LeaseTimeToLiveRequest* req,
    etcdserverpb::LeaseTimeToLiveResponse* resp) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!Admit(context, reactor, backend_, absl::OkStatus())) return reactor;
  const int64_t id = req->id();
  const ServerBackend* backend = backend_;
  backend_->LeaseTimeToLive(
      *req, [reactor, resp, backend, id](absl::StatusOr<etcdserverpb::LeaseTimeToLiveResponse> r) {
        if (!r.ok()) {
          if (!lease::IsLeaseNotFound(r.status())) {
            reactor->Finish(ToGrpcStatus(r.status()));
            return;
          }
          // etcd answers a missing lease with TTL -1, not an error.
          etcdserverpb::LeaseTimeToLiveResponse missing;
          missing.set_id(id);
          missing.set_ttl(-1);
          r = std::move(missing);
        }
        ReplyTo(reactor, resp, backend)(std::move(r));
      });
  return reactor;
}

grpc::ServerUnaryReactor* LeaseService::LeaseLeases(grpc::CallbackServerContext* context,
                                                    const etcdserverpb::LeaseLeasesRequest* req,
                                                    etcdserverpb::LeaseLeasesResponse* resp) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (Admit(context, reactor, backend_, absl::OkStatus())) {
    backend_->LeaseLeases(*req, ReplyTo(reactor, resp, backend_));
  }
  return reactor;
}

grpc::ServerBidiReactor<LeaseKeepAliveRequest, LeaseKeepAliveResponse>*
LeaseService::LeaseKeepAlive(grpc::CallbackServerContext* context) {
  if (backend_->IsLearner()) {
    return new RejectedStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse>(GrpcNotForLearner());
  }
  const bool require_leader = RequiresLeader(context);
  if (require_leader && !backend_->HasLeader()) {
    return new RejectedStream<LeaseKeepAliveRequest, LeaseKeepAliveResponse>(GrpcNoLeader());
  }
  auto reactor = std::make_shared<KeepAliveReactor>(backend_);
  if (require_leader) hub_->AddLeaderBound(reactor);
  reactor->Begin(reactor);
  return reactor.get();
}

}  // namespace cppetcd::api
