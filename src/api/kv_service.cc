// etcd v3 KV service (etcd 3.4 v3rpc/key.go): validate, hand to the server,
// answer when its Done fires. Range and read-only Txn answers are held
// against the Range budget (range_budget.h) until gRPC is done with them.
#include "src/api/services.h"
#include "cppetcd/server/applier.h"
#include "cppetcd/server/errors.h"
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

namespace {

// An admitted charge against the Range budget: returned when the last
// holder lets go (the reactor in OnDone; for a Range also the slice that
// owns the answer's bytes, which gRPC may drop after OnDone).
class Charge {
 public:
  Charge(std::shared_ptr<RangeBudget> budget, uint64_t bytes)
      : budget_(std::move(budget)), bytes_(bytes) {}
  ~Charge() { budget_->Release(bytes_); }
  Charge(const Charge&) = delete;
  Charge& operator=(const Charge&) = delete;
  // The answer is built: holds its real size from now on.
  void Adjust(uint64_t bytes) {
    budget_->Adjust(bytes_, bytes);
    bytes_ = bytes;
  }

 private:
  const std::shared_ptr<RangeBudget> budget_;
  uint64_t bytes_;  // set before the answer is handed to gRPC
};

// A unary KV call whose answer is held against the Range budget
// (range_budget.h): waits for its share, reads, answers.
class BudgetedReactor : public grpc::ServerUnaryReactor {
 public:
  BudgetedReactor(grpc::CallbackServerContext* context, ServerBackend* backend,
                  std::shared_ptr<RangeBudget> budget)
      : context_(context),
        backend_(backend),
        budget_(std::move(budget)),
        caller_(CallCredentials(context)) {}

  // From the method handler, with the estimated size of the answer and the
  // bytes the call holds while it waits (its request). Nothing of the
  // reactor may be touched after Acquire queues it: it may be admitted,
  // answered and gone at once. A full queue refuses the call as etcd
  // refuses work when overloaded (range_budget.h).
  void Begin(uint64_t bytes, uint64_t held_bytes) {
    estimate_ = bytes;
    ticket_ = budget_->NewTicket();
    switch (budget_->Acquire(ticket_, bytes, [this] { Admitted(); }, held_bytes)) {
      case RangeBudget::Admission::kAdmitted:
        charge_ = std::make_shared<Charge>(budget_, estimate_);
        Read();
        break;
      case RangeBudget::Admission::kRefused:
        Finish(ToGrpcStatus(server::ErrTooManyRequests()));
        break;
      case RangeBudget::Admission::kQueued:
        break;
    }
  }

  void OnCancel() override {
    // A queued call leaves the queue (a deadline or a client cancel); an
    // admitted one finishes as it goes.
    if (budget_->Cancel(ticket_)) Finish(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    charge_.reset();
    delete this;
  }

 protected:
  // Starts the read; its completion adjusts charge_, then calls Finish.
  virtual void Read() = 0;

  grpc::CallbackServerContext* const context_;
  ServerBackend* const backend_;
  const std::shared_ptr<RangeBudget> budget_;
  const auth::Credentials caller_;
  uint64_t estimate_ = 0;
  // Set on admission, before the read starts (null if never admitted).
  std::shared_ptr<Charge> charge_;

 private:
  // On the budget's thread.
  void Admitted() {
    charge_ = std::make_shared<Charge>(budget_, estimate_);
    if (context_->IsCancelled()) {
      Finish(grpc::Status::CANCELLED);
      return;
    }
    Read();
  }

  RangeBudget::Ticket ticket_ = 0;
};

// Range: the answer goes out as the bytes the backend built.
class RangeReactor final : public BudgetedReactor {
 public:
  RangeReactor(grpc::CallbackServerContext* context, ServerBackend* backend,
               std::shared_ptr<RangeBudget> budget, etcdserverpb::RangeRequest req,
               grpc::ByteBuffer* response)
      : BudgetedReactor(context, backend, std::move(budget)),
        req_(std::move(req)),
        response_(response) {}

  // `request_bytes`: the serialized request, which gRPC holds next to req_.
  void Begin(uint64_t request_bytes) {
    BudgetedReactor::Begin(backend_->EstimateRangeBytes(req_),
                           request_bytes + req_.ByteSizeLong());
  }

 private:
  void Read() override {
    backend_->RangeEncoded(
        caller_, req_, estimate_, [this](absl::StatusOr<EncodedRangeResponse> result) {
          if (!result.ok()) {
            Finish(ToGrpcStatus(result.status()));
            return;
          }
          Reply(*std::move(result));
        });
  }

  void Reply(EncodedRangeResponse r) {
    // The header as ReplyTo fills it.
    const int64_t rev = r.header.revision();
    backend_->FillHeader(&r.header);
    if (rev != 0) r.header.set_revision(rev);
    // Field 1 (header), then the body: the serialized RangeResponse.
    std::string head;
    const size_t header_bytes = r.header.ByteSizeLong();
    head.push_back(static_cast<char>((1 << 3) | 2));
    for (uint64_t v = header_bytes;; v >>= 7) {
      if (v < 0x80) {
        head.push_back(static_cast<char>(v));
        break;
      }
      head.push_back(static_cast<char>((v & 0x7f) | 0x80));
    }
    r.header.AppendToString(&head);
    charge_->Adjust(head.size() + r.body.size());
    // The body goes to gRPC without a copy: the slice owns the string, and
    // the charge until it is freed.
    struct Owned {
      std::string bytes;
      std::shared_ptr<Charge> charge;
    };
    auto* body = new Owned{std::move(r.body), charge_};
    grpc::Slice slices[2] = {
        grpc::Slice(head),
        grpc::Slice(body->bytes.data(), body->bytes.size(),
                    [](void* p) { delete static_cast<Owned*>(p); }, body)};
    *response_ = grpc::ByteBuffer(slices, 2);
    Finish(grpc::Status::OK);
  }

  const etcdserverpb::RangeRequest req_;
  grpc::ByteBuffer* const response_;
};

// A read-only Txn: its answer is a parsed TxnResponse (owned by gRPC
// until the call is done) plus gRPC's serialized copy, so it is charged
// twice its size.
class TxnReactor final : public BudgetedReactor {
 public:
  TxnReactor(grpc::CallbackServerContext* context, ServerBackend* backend,
             std::shared_ptr<RangeBudget> budget, const etcdserverpb::TxnRequest* req,
             etcdserverpb::TxnResponse* response)
      : BudgetedReactor(context, backend, std::move(budget)), req_(req), response_(response) {}

 private:
  void Read() override {
    backend_->Txn(caller_, *req_,
                  [this, reply = ReplyTo(this, response_, backend_)](
                      absl::StatusOr<etcdserverpb::TxnResponse> result) mutable {
                    if (result.ok()) charge_->Adjust(2 * result->ByteSizeLong());
                    std::move(reply)(std::move(result));
                  });
  }

  const etcdserverpb::TxnRequest* const req_;  // gRPC's, valid until OnDone
  etcdserverpb::TxnResponse* const response_;
};

// Twice the estimated answers of every range op of `txn`, both branches
// and nested txns (which branch runs is known only when it runs).
uint64_t EstimateTxnRangeBytes(ServerBackend* backend, const etcdserverpb::TxnRequest& txn) {
  uint64_t bytes = 0;
  for (const auto* ops : {&txn.success(), &txn.failure()}) {
    for (const etcdserverpb::RequestOp& op : *ops) {
      if (op.has_request_range()) bytes += 2 * backend->EstimateRangeBytes(op.request_range());
      if (op.has_request_txn()) bytes += EstimateTxnRangeBytes(backend, op.request_txn());
    }
  }
  return bytes;
}

bool HasRangeOp(const etcdserverpb::TxnRequest& txn) {
  for (const auto* ops : {&txn.success(), &txn.failure()}) {
    for (const etcdserverpb::RequestOp& op : *ops) {
      if (op.has_request_range()) return true;
      if (op.has_request_txn() && HasRangeOp(op.request_txn())) return true;
    }
  }
  return false;
}

}  // namespace

grpc::ServerUnaryReactor* KvService::Range(grpc::CallbackServerContext* context,
                                           const grpc::ByteBuffer* request,
                                           grpc::ByteBuffer* response) {
  etcdserverpb::RangeRequest req;
  grpc::ByteBuffer copy(*request);  // Deserialize consumes its buffer
  grpc::Status parsed =
      grpc::SerializationTraits<etcdserverpb::RangeRequest>::Deserialize(&copy, &req);
  if (!parsed.ok()) {
    // etcd's (grpc-go's) code and prefix; the decoder's own words differ.
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status(grpc::StatusCode::INTERNAL,
                                 "grpc: error unmarshalling request: not a valid RangeRequest"));
    return reactor;
  }
  if (RequiresLeader(context) && !backend_->HasLeader()) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(GrpcNoLeader());
    return reactor;
  }
  if (absl::Status v = server::ValidateRange(req); !v.ok()) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(ToGrpcStatus(v));
    return reactor;
  }
  auto* reactor = new RangeReactor(context, backend_, budget_, std::move(req), response);
  reactor->Begin(request->Length());
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
  const absl::Status validation = server::ValidateTxn(*req, backend_->MaxTxnOps());
  // Writes are not held back behind large reads: only a read-only txn
  // (whose answer may be a LIST) waits for the budget.
  if (!validation.ok() || !HasRangeOp(*req) || !server::Applier::IsTxnReadOnly(*req) ||
      (RequiresLeader(context) && !backend_->HasLeader())) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (Admit(context, reactor, backend_, validation)) {
      backend_->Txn(CallCredentials(context), *req, ReplyTo(reactor, resp, backend_));
    }
    return reactor;
  }
  auto* reactor = new TxnReactor(context, backend_, budget_, req, resp);
  reactor->Begin(EstimateTxnRangeBytes(backend_, *req), req->ByteSizeLong());
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
