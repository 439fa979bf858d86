// etcd's v3election and v3lock gRPC services (private to the api module).
//
// etcd 3.4 serves both through an in-process client running the
// clientv3/concurrency recipes; cppetcd runs the same recipes directly on
// the ServerBackend, without a thread per waiter:
//   - a candidate (or lock waiter) puts "<name>/<lease in hex>" with its lease
//     if that key does not exist yet; its create revision is its place in the
//     queue;
//   - it holds the election (or lock) once no key under "<name>/" has a lower
//     create revision; until then it waits on a watch of the prefix's deletes;
//   - a call the client abandons (cancel, deadline) deletes the key it put.
// Every backend completion and watch notification is handed to one
// SerialExecutor thread per service, which runs the next step.
#ifndef CPPETCD_SRC_API_ELECTION_LOCK_H_
#define CPPETCD_SRC_API_ELECTION_LOCK_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "cppetcd/api/backend.h"
#include "cppetcd/api/errors.h"
#include "cppetcd/auth/credentials.h"
#include "cppetcd/util/mutex.h"
#include "v3electionpb/v3election.grpc.pb.h"
#include "v3lockpb/v3lock.grpc.pb.h"

namespace cppetcd::api {

// Runs posted tasks one at a time, in order, on its own thread. Post is
// thread-safe and never blocks on a task. After Stop, posted tasks are
// destroyed without running.
class SerialExecutor {
 public:
  SerialExecutor();
  ~SerialExecutor();  // Stop()
  SerialExecutor(const SerialExecutor&) = delete;
  SerialExecutor& operator=(const SerialExecutor&) = delete;

  void Post(absl::AnyInvocable<void() &&> task);
  // Runs what is queued, then joins the thread. Idempotent; not from a task.
  void Stop();

 private:
  void Run();

  util::Mutex mu_;
  util::CondVar cv_;  // tasks_ or stop_ changed
  std::deque<absl::AnyInvocable<void() &&>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// The end of the range of keys that start with `prefix` (etcd GetPrefixRangeEnd):
// "\0" (every key) when the prefix is empty or all 0xff bytes.
std::string PrefixRangeEnd(const std::string& prefix);

// The queue key of a lease under `prefix`: prefix + lowercase hex lease ID
// (clientv3/concurrency: fmt "%s%x").
std::string QueueKey(const std::string& prefix, int64_t lease);

// Waits, on `executor`, until no key in [prefix, PrefixRangeEnd(prefix)) has a
// create revision below `my_rev` (clientv3/concurrency waitDeletes), then calls
// `done` once with the header of the Range that found the queue ahead empty,
// or with the error of a failed Range or watch. Cancel stops the wait without
// calling `done`. All methods must run on the executor.
class CreateOrderWait : public std::enable_shared_from_this<CreateOrderWait> {
 public:
  using DoneFn = absl::AnyInvocable<void(absl::StatusOr<etcdserverpb::ResponseHeader>) &&>;
  // `caller`: the credentials of the call that waits; its Ranges are
  // checked against them.
  CreateOrderWait(ServerBackend* backend, std::shared_ptr<SerialExecutor> executor,
                  std::string prefix, int64_t my_rev, auth::Credentials caller, DoneFn done)
      : backend_(backend),
        executor_(std::move(executor)),
        prefix_(std::move(prefix)),
        my_rev_(my_rev),
        credentials_(std::move(caller)),
        done_(std::move(done)) {}

  void Start();
  void Cancel();

 private:
  void Watch();
  void Check();
  void OnNotify();
  void Complete(absl::StatusOr<etcdserverpb::ResponseHeader> result);

  ServerBackend* const backend_;
  const std::shared_ptr<SerialExecutor> executor_;
  const std::string prefix_;
  const int64_t my_rev_;
  const auth::Credentials credentials_;  // the caller's, for the Range checks
  DoneFn done_;
  bool finished_ = false;
  bool checking_ = false;  // a Range is in flight
  bool recheck_ = false;   // a delete arrived while checking_
  std::unique_ptr<WatchStreamBackend> ws_;
};

// One Campaign or Lock call: takes the call's lease (SessionLease), puts the
// queue key "<prefix><lease hex>" unless it exists, waits for the head of the
// queue (CreateOrderWait), then lets the subclass answer. A cancelled call,
// or one whose wait failed, releases the key it put (Campaign: delete if the
// create revision is still ours; Lock: delete). Owns itself from Begin until
// gRPC's OnDone and completions still in flight.
class QueueCall : public grpc::ServerUnaryReactor, public std::enable_shared_from_this<QueueCall> {
 public:
  // The caller's credentials (token, TLS CN), passed with every backend
  // call the steps make, so the server checks the caller's permissions
  // (etcd's lock/election servers call the KV API with the caller's
  // context). Set before Begin.
  void SetCredentials(auth::Credentials c) { credentials_ = std::move(c); }
  // Starts the call; `self` is the owning pointer to this object.
  void Begin(std::shared_ptr<QueueCall> self);
  void OnCancel() override;
  void OnDone() override { self_.reset(); }

 protected:
  // `update_value`: when the key already exists with another value, replace
  // it if its create revision is still ours (Campaign's Proclaim).
  QueueCall(ServerBackend* backend, std::shared_ptr<SerialExecutor> executor, std::string prefix,
            int64_t lease, std::string value, bool update_value)
      : backend_(backend),
        executor_(std::move(executor)),
        prefix_(std::move(prefix)),
        lease_(lease),
        value_(std::move(value)),
        update_value_(update_value) {}

  // At the head of the queue: fill the response and Finish via FinishOnce.
  // `txn_header` answered the put, `wait_header` the last queue check.
  virtual void Acquired(const etcdserverpb::ResponseHeader& txn_header,
                        const etcdserverpb::ResponseHeader& wait_header) = 0;
  // Deletes the queue key (fire and forget).
  virtual void Release() = 0;

  // On the executor: the first call finishes the RPC, later ones do nothing.
  void FinishOnce(grpc::Status status);
  // Header with this member's IDs; keeps header.revision when non-zero.
  etcdserverpb::ResponseHeader Filled(etcdserverpb::ResponseHeader header) const;
  // Runs `fn(self)` on the executor.
  void OnExecutor(absl::AnyInvocable<void(QueueCall*) &&> fn);

  ServerBackend* const backend_;
  const std::shared_ptr<SerialExecutor> executor_;
  const std::string prefix_;  // "<name>/"
  int64_t lease_;             // the session lease once known
  const std::string value_;
  const bool update_value_;
  std::string key_;     // the queue key, once the lease is known
  int64_t my_rev_ = 0;  // create revision of key_, once put
  etcdserverpb::ResponseHeader txn_header_;
  auth::Credentials credentials_;  // set before Begin, then read only

 private:
  void OnLease(absl::StatusOr<int64_t> lease);
  void OnPut(absl::StatusOr<etcdserverpb::TxnResponse> txn);
  void StartWait();
  void Abandon(grpc::Status status);

  std::shared_ptr<QueueCall> self_;  // set from Begin to OnDone
  // The rest is touched only on the executor.
  bool finished_ = false;
  bool cancelled_ = false;
  std::shared_ptr<CreateOrderWait> wait_;
};

// etcd v3election Election service.
class ElectionService final : public v3electionpb::Election::CallbackService {
 public:
  explicit ElectionService(ServerBackend* backend)
      : backend_(backend), executor_(std::make_shared<SerialExecutor>()) {}
  ~ElectionService() override { executor_->Stop(); }

  grpc::ServerUnaryReactor* Campaign(grpc::CallbackServerContext* context,
                                     const v3electionpb::CampaignRequest* req,
                                     v3electionpb::CampaignResponse* resp) override;
  grpc::ServerUnaryReactor* Proclaim(grpc::CallbackServerContext* context,
                                     const v3electionpb::ProclaimRequest* req,
                                     v3electionpb::ProclaimResponse* resp) override;
  grpc::ServerUnaryReactor* Leader(grpc::CallbackServerContext* context,
                                   const v3electionpb::LeaderRequest* req,
                                   v3electionpb::LeaderResponse* resp) override;
  grpc::ServerWriteReactor<v3electionpb::LeaderResponse>* Observe(
      grpc::CallbackServerContext* context, const v3electionpb::LeaderRequest* req) override;
  grpc::ServerUnaryReactor* Resign(grpc::CallbackServerContext* context,
                                   const v3electionpb::ResignRequest* req,
                                   v3electionpb::ResignResponse* resp) override;

 private:
  ServerBackend* const backend_;
  const std::shared_ptr<SerialExecutor> executor_;
};

// etcd v3lock Lock service.
class LockService final : public v3lockpb::Lock::CallbackService {
 public:
  explicit LockService(ServerBackend* backend)
      : backend_(backend), executor_(std::make_shared<SerialExecutor>()) {}
  ~LockService() override { executor_->Stop(); }

  grpc::ServerUnaryReactor* Lock(grpc::CallbackServerContext* context,
                                 const v3lockpb::LockRequest* req,
                                 v3lockpb::LockResponse* resp) override;
  grpc::ServerUnaryReactor* Unlock(grpc::CallbackServerContext* context,
                                   const v3lockpb::UnlockRequest* req,
                                   v3lockpb::UnlockResponse* resp) override;

 private:
  ServerBackend* const backend_;
  const std::shared_ptr<SerialExecutor> executor_;
};

// Errors etcd's services return as plain Go errors (gRPC code UNKNOWN).
grpc::Status GrpcElectionNotLeader();  // "election: not leader"
grpc::Status GrpcElectionNoLeader();   // "election: no leader"
grpc::Status GrpcMissingLeaderKey();   // "\"leader\" field must be provided"
// A backend error as etcd's services return it: etcd runs them through an
// in-process client whose errors reach gRPC as plain Go errors, so the
// message is etcd's (ToGrpcStatus) but the code is UNKNOWN; CANCELLED and
// DEADLINE_EXCEEDED keep their code.
grpc::Status GrpcFromClientError(const absl::Status& status);

// The lease the concurrency session of etcd's services uses: `lease`, or when
// 0 a new lease of 60 s (concurrency.NewSession's default TTL, never kept
// alive), granted as `caller`. Runs `done` with the lease ID or the grant
// error.
void SessionLease(ServerBackend* backend, const auth::Credentials& caller, int64_t lease,
                  Done<int64_t> done);

}  // namespace cppetcd::api

#endif  // CPPETCD_SRC_API_ELECTION_LOCK_H_
