// etcd v3election Election service (etcd 3.4 v3election/election.go over
// clientv3/concurrency election.go), run on the ServerBackend.
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "src/api/election_lock.h"
#include "src/api/services.h"

namespace cppetcd::api {

namespace {

constexpr size_t kPollBatch = 64;  // watch updates taken per Poll

class CampaignCall final : public QueueCall {
 public:
  CampaignCall(ServerBackend* backend, std::shared_ptr<SerialExecutor> executor,
               const v3electionpb::CampaignRequest& req, v3electionpb::CampaignResponse* resp)
      : QueueCall(backend, std::move(executor), req.name() + "/", req.lease(), req.value(),
                  /*update_value=*/true),
        name_(req.name()),
        resp_(resp) {}

 private:
  void Acquired(const etcdserverpb::ResponseHeader& txn_header,
                const etcdserverpb::ResponseHeader&) override {
    *resp_->mutable_header() = Filled(txn_header);
    v3electionpb::LeaderKey* leader = resp_->mutable_leader();
    leader->set_name(name_);
    leader->set_key(key_);
    leader->set_rev(my_rev_);
    leader->set_lease(lease_);
    FinishOnce(grpc::Status::OK);
  }

  // Resign: delete the key only while its create revision is still ours.
  void Release() override {
    etcdserverpb::TxnRequest txn;
    etcdserverpb::Compare* cmp = txn.add_compare();
    cmp->set_key(key_);
    cmp->set_target(etcdserverpb::Compare::CREATE);
    cmp->set_result(etcdserverpb::Compare::EQUAL);
    cmp->set_create_revision(my_rev_);
    txn.add_success()->mutable_request_delete_range()->set_key(key_);
    backend_->Txn(credentials_, txn, [](absl::StatusOr<etcdserverpb::TxnResponse>) {});
  }

  const std::string name_;
  v3electionpb::CampaignResponse* const resp_;  // valid until Finish
};

// Txn "if create_revision(key) == rev then `op`", as Proclaim and Resign use.
etcdserverpb::TxnRequest IfStillCreated(const v3electionpb::LeaderKey& leader) {
  etcdserverpb::TxnRequest txn;
  etcdserverpb::Compare* cmp = txn.add_compare();
  cmp->set_key(leader.key());
  cmp->set_target(etcdserverpb::Compare::CREATE);
  cmp->set_result(etcdserverpb::Compare::EQUAL);
  cmp->set_create_revision(leader.rev());
  return txn;
}

// The first key of the election by create revision (WithFirstCreate).
etcdserverpb::RangeRequest FirstCreated(const std::string& name) {
  etcdserverpb::RangeRequest req;
  req.set_key(name + "/");
  req.set_range_end(PrefixRangeEnd(name + "/"));
  req.set_sort_target(etcdserverpb::RangeRequest::CREATE);
  req.set_sort_order(etcdserverpb::RangeRequest::ASCEND);
  req.set_limit(1);
  return req;
}

// Observe: the leader's key-value now, then each change. One watch on the
// whole prefix; when the leader key is deleted, a fresh Range finds the next
// leader and watch events up to that Range's revision are skipped.
class ObserveCall final : public grpc::ServerWriteReactor<v3electionpb::LeaderResponse>,
                          public std::enable_shared_from_this<ObserveCall> {
 public:
  ObserveCall(ServerBackend* backend, std::shared_ptr<SerialExecutor> executor, std::string name)
      : backend_(backend), executor_(std::move(executor)), name_(std::move(name)) {}

  void Begin(std::shared_ptr<ObserveCall> self) {
    self_ = std::move(self);
    OnExecutor([](ObserveCall* c) { c->Start(); });
  }
  void OnCancel() override {
    OnExecutor([](ObserveCall* c) { c->FinishOnce(grpc::Status::CANCELLED); });
  }
  void OnWriteDone(bool ok) override {
    OnExecutor([ok](ObserveCall* c) {
      c->writing_ = false;
      if (!ok) {
        c->FinishOnce(grpc::Status::CANCELLED);
        return;
      }
      c->WriteNext();
    });
  }
  void OnDone() override { self_.reset(); }
  // The caller's credentials, passed with its Ranges. Before Begin.
  void SetCredentials(auth::Credentials c) { credentials_ = std::move(c); }

 private:
  void OnExecutor(absl::AnyInvocable<void(ObserveCall*) &&> fn) {
    executor_->Post([self = shared_from_this(), fn = std::move(fn)]() mutable {
      std::move(fn)(self.get());
    });
  }

  void Start() {
    if (finished_) return;
    std::weak_ptr<ObserveCall> weak = weak_from_this();
    std::shared_ptr<SerialExecutor> executor = executor_;
    ws_ = backend_->NewWatchStream([weak, executor] {
      executor->Post([weak] {
        if (auto self = weak.lock()) self->OnNotify();
      });
    });
    const std::string prefix = name_ + "/";
    absl::StatusOr<int64_t> id = ws_->Watch(0, prefix, PrefixRangeEnd(prefix), /*start_rev=*/0,
                                            false, false, false);
    if (!id.ok()) {
      FinishOnce(GrpcFromClientError(id.status()));
      return;
    }
    FindLeader();
  }

  void FindLeader() {
    ranging_ = true;
    leader_key_.reset();
    backend_->Range(credentials_, FirstCreated(name_), [self = shared_from_this()](
                                             absl::StatusOr<etcdserverpb::RangeResponse> r) {
      self->OnExecutor([r = std::move(r)](ObserveCall* c) mutable {
        if (c->finished_) return;
        // etcd ends the stream without an error when its Get fails.
        if (!r.ok()) {
          c->FinishOnce(grpc::Status::OK);
          return;
        }
        c->ranging_ = false;
        c->skip_through_ = r->header().revision();
        if (r->kvs_size() > 0) {
          c->leader_key_ = r->kvs(0).key();
          c->Send(r->header(), r->kvs(0));
        }
        c->ProcessEvents();
      });
    });
  }

  void OnNotify() {
    if (finished_ || ws_ == nullptr) return;
    while (true) {
      std::vector<WatchUpdate> updates = ws_->Poll(kPollBatch);
      if (updates.empty()) break;
      for (WatchUpdate& u : updates) {
        if (u.compact_revision != 0) {  // the watch is gone; etcd ends quietly
          FinishOnce(grpc::Status::OK);
          return;
        }
        for (mvccpb::Event& ev : u.events) events_.push_back(std::move(ev));
      }
    }
    ProcessEvents();
  }

  void ProcessEvents() {
    while (!ranging_ && !finished_ && !events_.empty()) {
      mvccpb::Event ev = std::move(events_.front());
      events_.pop_front();
      if (ev.kv().mod_revision() <= skip_through_) continue;
      if (!leader_key_.has_value()) {
        if (ev.type() != mvccpb::Event::PUT) continue;
        leader_key_ = ev.kv().key();  // the first key put after an empty election leads
      } else if (ev.kv().key() != *leader_key_) {
        continue;
      } else if (ev.type() == mvccpb::Event::DELETE) {
        FindLeader();
        return;
      }
      etcdserverpb::ResponseHeader header;
      header.set_revision(ev.kv().mod_revision());
      Send(header, ev.kv());
    }
  }

  void Send(etcdserverpb::ResponseHeader header, const mvccpb::KeyValue& kv) {
    v3electionpb::LeaderResponse resp;
    const int64_t rev = header.revision();
    backend_->FillHeader(&header);
    if (rev != 0) header.set_revision(rev);
    *resp.mutable_header() = std::move(header);
    *resp.mutable_kv() = kv;
    out_.push_back(std::move(resp));
    WriteNext();
  }

  void WriteNext() {
    if (writing_ || finished_ || out_.empty()) return;
    current_ = std::move(out_.front());
    out_.pop_front();
    writing_ = true;
    StartWrite(&current_);
  }

  void FinishOnce(grpc::Status status) {
    if (finished_) return;
    finished_ = true;
    ws_.reset();
    events_.clear();
    Finish(std::move(status));
  }

  ServerBackend* const backend_;
  const std::shared_ptr<SerialExecutor> executor_;
  const std::string name_;
  auth::Credentials credentials_;      // the caller's (SetCredentials)
  std::shared_ptr<ObserveCall> self_;  // set from Begin to OnDone
  // Touched only on the executor.
  bool finished_ = false;
  bool writing_ = false;
  bool ranging_ = false;       // a leader Range is in flight: events wait
  int64_t skip_through_ = 0;   // events up to this revision are in the last Range
  std::optional<std::string> leader_key_;
  std::deque<mvccpb::Event> events_;
  std::deque<v3electionpb::LeaderResponse> out_;
  v3electionpb::LeaderResponse current_;  // the write in flight
  std::unique_ptr<WatchStreamBackend> ws_;
};

}  // namespace

grpc::ServerUnaryReactor* ElectionService::Campaign(grpc::CallbackServerContext* context,
                                                    const v3electionpb::CampaignRequest* req,
                                                    v3electionpb::CampaignResponse* resp) {
  if (RequiresLeader(context) && !backend_->HasLeader()) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(GrpcNoLeader());
    return reactor;
  }
  auto call = std::make_shared<CampaignCall>(backend_, executor_, *req, resp);
  call->SetCredentials(CallCredentials(context));
  call->Begin(call);
  return call.get();
}

grpc::ServerUnaryReactor* ElectionService::Proclaim(grpc::CallbackServerContext* context,
                                                    const v3electionpb::ProclaimRequest* req,
                                                    v3electionpb::ProclaimResponse* resp) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!Admit(context, reactor, backend_, absl::OkStatus())) return reactor;
  const auth::Credentials caller = CallCredentials(context);
  if (!req->has_leader()) {
    reactor->Finish(GrpcMissingLeaderKey());
    return reactor;
  }
  etcdserverpb::TxnRequest txn = IfStillCreated(req->leader());
  etcdserverpb::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(req->leader().key());
  put->set_value(req->value());
  put->set_lease(req->leader().lease());
  ServerBackend* backend = backend_;
  backend_->Txn(caller, txn, [reactor, resp, backend](absl::StatusOr<etcdserverpb::TxnResponse> r) {
    if (!r.ok()) {
      reactor->Finish(GrpcFromClientError(r.status()));
      return;
    }
    if (!r->succeeded()) {
      reactor->Finish(GrpcElectionNotLeader());
      return;
    }
    *resp->mutable_header() = r->header();
    backend->FillHeader(resp->mutable_header());
    resp->mutable_header()->set_revision(r->header().revision());
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* ElectionService::Leader(grpc::CallbackServerContext* context,
                                                  const v3electionpb::LeaderRequest* req,
                                                  v3electionpb::LeaderResponse* resp) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!Admit(context, reactor, backend_, absl::OkStatus())) return reactor;
  ServerBackend* backend = backend_;
  backend_->Range(CallCredentials(context), FirstCreated(req->name()),
                  [reactor, resp, backend](absl::StatusOr<etcdserverpb::RangeResponse> r) {
                    if (!r.ok()) {
                      reactor->Finish(GrpcFromClientError(r.status()));
                      return;
                    }
                    if (r->kvs_size() == 0) {
                      reactor->Finish(GrpcElectionNoLeader());
                      return;
                    }
                    *resp->mutable_header() = r->header();
                    backend->FillHeader(resp->mutable_header());
                    resp->mutable_header()->set_revision(r->header().revision());
                    *resp->mutable_kv() = r->kvs(0);
                    reactor->Finish(grpc::Status::OK);
                  });
  return reactor;
}

grpc::ServerWriteReactor<v3electionpb::LeaderResponse>* ElectionService::Observe(
    grpc::CallbackServerContext* context, const v3electionpb::LeaderRequest* req) {
  auto call = std::make_shared<ObserveCall>(backend_, executor_, req->name());
  call->SetCredentials(CallCredentials(context));
  call->Begin(call);
  return call.get();
}

grpc::ServerUnaryReactor* ElectionService::Resign(grpc::CallbackServerContext* context,
                                                  const v3electionpb::ResignRequest* req,
                                                  v3electionpb::ResignResponse* resp) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!Admit(context, reactor, backend_, absl::OkStatus())) return reactor;
  const auth::Credentials caller = CallCredentials(context);
  if (!req->has_leader()) {
    reactor->Finish(GrpcMissingLeaderKey());
    return reactor;
  }
  etcdserverpb::TxnRequest txn = IfStillCreated(req->leader());
  txn.add_success()->mutable_request_delete_range()->set_key(req->leader().key());
  ServerBackend* backend = backend_;
  backend_->Txn(caller, txn, [reactor, resp, backend](absl::StatusOr<etcdserverpb::TxnResponse> r) {
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
