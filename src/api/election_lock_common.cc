// Shared pieces of the Election and Lock services: the executor, the wait
// for a place at the head of a create-revision queue, and etcd's errors.
#include <cstdio>
#include <utility>
#include <vector>

#include "src/api/election_lock.h"

namespace cppetcd::api {

namespace {
constexpr size_t kPollBatch = 64;          // watch updates taken per Poll
constexpr int64_t kSessionTtlSeconds = 60;  // concurrency.defaultSessionTTL
}  // namespace

SerialExecutor::SerialExecutor() : thread_([this] { Run(); }) {}

SerialExecutor::~SerialExecutor() { Stop(); }

void SerialExecutor::Post(absl::AnyInvocable<void() &&> task) {
  {
    util::MutexLock lock(&mu_);
    if (!stop_) {
      tasks_.push_back(std::move(task));
      cv_.Signal();
      return;
    }
  }
  // Stopped: `task` is destroyed here, outside the lock.
}

void SerialExecutor::Stop() {
  {
    util::MutexLock lock(&mu_);
    stop_ = true;
    cv_.Signal();
  }
  if (thread_.joinable()) thread_.join();
}

void SerialExecutor::Run() {
  while (true) {
    absl::AnyInvocable<void() &&> task;
    {
      util::MutexLock lock(&mu_);
      cv_.Wait(&mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopped and drained
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    std::move(task)();
  }
}

std::string PrefixRangeEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

std::string QueueKey(const std::string& prefix, int64_t lease) {
  // Go's %x of a signed value: a minus sign, then the magnitude.
  const bool negative = lease < 0;
  const uint64_t magnitude =
      negative ? ~static_cast<uint64_t>(lease) + 1 : static_cast<uint64_t>(lease);
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%llx", static_cast<unsigned long long>(magnitude));
  return prefix + (negative ? "-" : "") + hex;
}

grpc::Status GrpcElectionNotLeader() {
  return grpc::Status(grpc::StatusCode::UNKNOWN, "election: not leader");
}
grpc::Status GrpcElectionNoLeader() {
  return grpc::Status(grpc::StatusCode::UNKNOWN, "election: no leader");
}
grpc::Status GrpcMissingLeaderKey() {
  return grpc::Status(grpc::StatusCode::UNKNOWN, "\"leader\" field must be provided");
}

grpc::Status GrpcFromClientError(const absl::Status& status) {
  grpc::Status mapped = ToGrpcStatus(status);
  switch (mapped.error_code()) {
    case grpc::StatusCode::OK:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return mapped;
    default:
      return grpc::Status(grpc::StatusCode::UNKNOWN, mapped.error_message());
  }
}

void SessionLease(ServerBackend* backend, const auth::Credentials& caller, int64_t lease,
                  Done<int64_t> done) {
  if (lease != 0) {
    std::move(done)(lease);
    return;
  }
  etcdserverpb::LeaseGrantRequest req;
  req.set_ttl(kSessionTtlSeconds);
  backend->LeaseGrant(caller, req, [done = std::move(done)](
                               absl::StatusOr<etcdserverpb::LeaseGrantResponse> r) mutable {
    if (!r.ok()) {
      std::move(done)(r.status());
      return;
    }
    if (!r->error().empty()) {
      std::move(done)(absl::UnknownError(r->error()));
      return;
    }
    std::move(done)(r->id());
  });
}

void CreateOrderWait::Start() {
  auto keep = shared_from_this();  // Complete may drop the owner's reference
  Watch();
  Check();
}

void CreateOrderWait::Cancel() {
  finished_ = true;
  ws_.reset();
  done_ = nullptr;
}

// Opens the watch before each full check, so a delete after the check's read
// revision is always seen.
void CreateOrderWait::Watch() {
  std::weak_ptr<CreateOrderWait> weak = weak_from_this();
  std::shared_ptr<SerialExecutor> executor = executor_;
  ws_ = backend_->NewWatchStream([weak, executor] {
    executor->Post([weak] {
      if (auto self = weak.lock()) self->OnNotify();
    });
  });
  absl::StatusOr<int64_t> id = ws_->Watch(0, prefix_, PrefixRangeEnd(prefix_), /*start_rev=*/0,
                                          /*no_put=*/true, /*no_delete=*/false,
                                          /*prev_kv=*/false);
  if (!id.ok()) Complete(id.status());
}

void CreateOrderWait::Check() {
  if (finished_) return;
  if (checking_) {
    recheck_ = true;
    return;
  }
  checking_ = true;
  recheck_ = false;
  // The newest key ahead of us (etcd waitDeletes: WithLastCreate and
  // WithMaxCreateRev(my_rev - 1)).
  etcdserverpb::RangeRequest req;
  req.set_key(prefix_);
  req.set_range_end(PrefixRangeEnd(prefix_));
  req.set_sort_target(etcdserverpb::RangeRequest::CREATE);
  req.set_sort_order(etcdserverpb::RangeRequest::DESCEND);
  req.set_max_create_revision(my_rev_ - 1);
  req.set_limit(1);
  req.set_keys_only(true);
  std::weak_ptr<CreateOrderWait> weak = weak_from_this();
  std::shared_ptr<SerialExecutor> executor = executor_;
  backend_->Range(credentials_, req, [weak, executor](
                                         absl::StatusOr<etcdserverpb::RangeResponse> r) mutable {
    executor->Post([weak, r = std::move(r)]() mutable {
      auto self = weak.lock();
      if (self == nullptr || self->finished_) return;
      self->checking_ = false;
      if (!r.ok()) {
        self->Complete(r.status());
      } else if (r->kvs_size() == 0) {
        self->Complete(r->header());
      } else if (self->recheck_) {
        self->Check();
      }
    });
  });
}

void CreateOrderWait::OnNotify() {
  if (finished_ || ws_ == nullptr) return;
  bool changed = false;
  bool compacted = false;
  while (true) {
    std::vector<WatchUpdate> updates = ws_->Poll(kPollBatch);
    if (updates.empty()) break;
    for (const WatchUpdate& u : updates) {
      if (u.compact_revision != 0) compacted = true;
      if (!u.events.empty()) changed = true;
    }
  }
  if (compacted) {
    // The watcher is gone (its start revision was compacted): watch afresh
    // and look again.
    Watch();
    if (finished_) return;
    changed = true;
  }
  if (changed) Check();
}

void CreateOrderWait::Complete(absl::StatusOr<etcdserverpb::ResponseHeader> result) {
  if (finished_) return;
  finished_ = true;
  ws_.reset();
  DoneFn done = std::move(done_);
  std::move(done)(std::move(result));
}

void QueueCall::Begin(std::shared_ptr<QueueCall> self) {
  self_ = std::move(self);
  OnExecutor([](QueueCall* call) {
    if (call->finished_) return;
    SessionLease(call->backend_, call->credentials_, call->lease_,
                 [self = call->shared_from_this()](absl::StatusOr<int64_t> lease) mutable {
                   self->OnExecutor([lease = std::move(lease)](QueueCall* c) mutable {
                     c->OnLease(std::move(lease));
                   });
                 });
  });
}

void QueueCall::OnCancel() {
  OnExecutor([](QueueCall* call) {
    if (call->finished_) return;
    call->Abandon(grpc::Status::CANCELLED);
  });
}

void QueueCall::OnExecutor(absl::AnyInvocable<void(QueueCall*) &&> fn) {
  executor_->Post([self = shared_from_this(), fn = std::move(fn)]() mutable {
    std::move(fn)(self.get());
  });
}

void QueueCall::FinishOnce(grpc::Status status) {
  if (finished_) return;
  finished_ = true;
  Finish(std::move(status));
}

etcdserverpb::ResponseHeader QueueCall::Filled(etcdserverpb::ResponseHeader header) const {
  const int64_t rev = header.revision();
  backend_->FillHeader(&header);
  if (rev != 0) header.set_revision(rev);
  return header;
}

// Ends the call early (client gone or wait failed), releasing the key if it
// was put. A put still in flight is released when it completes (OnPut sees
// cancelled_).
void QueueCall::Abandon(grpc::Status status) {
  cancelled_ = true;
  if (wait_ != nullptr) {
    wait_->Cancel();
    wait_.reset();
  }
  if (my_rev_ != 0) Release();
  FinishOnce(std::move(status));
}

void QueueCall::OnLease(absl::StatusOr<int64_t> lease) {
  if (finished_) return;  // nothing put yet; a granted lease expires by itself
  if (!lease.ok()) {
    FinishOnce(GrpcFromClientError(lease.status()));
    return;
  }
  lease_ = *lease;
  key_ = QueueKey(prefix_, lease_);
  // Put the key unless it exists; otherwise read it to learn its place.
  etcdserverpb::TxnRequest txn;
  etcdserverpb::Compare* cmp = txn.add_compare();
  cmp->set_key(key_);
  cmp->set_target(etcdserverpb::Compare::CREATE);
  cmp->set_result(etcdserverpb::Compare::EQUAL);
  cmp->set_create_revision(0);
  etcdserverpb::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(key_);
  put->set_value(value_);
  put->set_lease(lease_);
  txn.add_failure()->mutable_request_range()->set_key(key_);
  backend_->Txn(credentials_, txn, [self = shared_from_this()](
                         absl::StatusOr<etcdserverpb::TxnResponse> r) mutable {
    self->OnExecutor([r = std::move(r)](QueueCall* c) mutable { c->OnPut(std::move(r)); });
  });
}

void QueueCall::OnPut(absl::StatusOr<etcdserverpb::TxnResponse> txn) {
  if (!txn.ok()) {
    FinishOnce(GrpcFromClientError(txn.status()));
    return;
  }
  txn_header_ = txn->header();
  my_rev_ = txn->header().revision();
  bool replace_value = false;
  if (!txn->succeeded()) {
    const auto& range = txn->responses(0).response_range();
    if (range.kvs_size() == 0) {  // deleted in between; etcd would fail on Kvs[0]
      FinishOnce(grpc::Status(grpc::StatusCode::UNKNOWN, "election: queue key vanished"));
      return;
    }
    my_rev_ = range.kvs(0).create_revision();
    replace_value = update_value_ && range.kvs(0).value() != value_;
  }
  if (finished_) {  // cancelled while the put was in flight
    Release();
    return;
  }
  if (!replace_value) {
    StartWait();
    return;
  }
  // Campaign on an existing key with another value: proclaim the new value.
  etcdserverpb::TxnRequest proclaim;
  etcdserverpb::Compare* cmp = proclaim.add_compare();
  cmp->set_key(key_);
  cmp->set_target(etcdserverpb::Compare::CREATE);
  cmp->set_result(etcdserverpb::Compare::EQUAL);
  cmp->set_create_revision(my_rev_);
  etcdserverpb::PutRequest* put = proclaim.add_success()->mutable_request_put();
  put->set_key(key_);
  put->set_value(value_);
  put->set_lease(lease_);
  backend_->Txn(credentials_, proclaim, [self = shared_from_this()](
                              absl::StatusOr<etcdserverpb::TxnResponse> r) mutable {
    self->OnExecutor([r = std::move(r)](QueueCall* c) mutable {
      if (c->finished_) {
        c->Release();
        return;
      }
      if (!r.ok()) {
        c->Abandon(GrpcFromClientError(r.status()));
      } else if (!r->succeeded()) {
        c->Abandon(GrpcElectionNotLeader());
      } else {
        c->StartWait();
      }
    });
  });
}

void QueueCall::StartWait() {
  std::weak_ptr<QueueCall> weak = weak_from_this();
  wait_ = std::make_shared<CreateOrderWait>(
      backend_, executor_, prefix_, my_rev_, credentials_,
      [weak](absl::StatusOr<etcdserverpb::ResponseHeader> r) mutable {
        auto self = weak.lock();
        if (self == nullptr || self->finished_) return;
        self->wait_.reset();
        if (!r.ok()) {
          self->Abandon(GrpcFromClientError(r.status()));
          return;
        }
        self->Acquired(self->txn_header_, *r);
      });
  wait_->Start();
}

}  // namespace cppetcd::api
