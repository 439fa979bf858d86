// The linearizable-read queue of EtcdServer (private to src/server), the
// state of etcd 3.4's linearizableReadLoop (etcdserver/v3_server.go): reads
// queue from any thread; the read thread takes every read queued so far as
// one batch with a fresh ReadIndex request context (8 bytes big-endian of a
// counter), asks raft for the read index under that context, and gets the
// index back when the raft thread hands over a ReadState with the same
// context (OnReadState). The read thread then waits for the applied index to
// reach it (AppliedIndex) and answers the batch (Batch::Finish).
//
// Invariants: at most max_pending reads wait for a batch (more are refused
// with ErrTooManyRequests); each read runs exactly once, never under the
// queue's lock; a ReadState counts only for the batch whose context it
// carries (one of an older, abandoned batch is ignored); after Stop no batch
// is handed out and the reads left are failed with ErrStopped (FailPending).
//
// Thread-safety: every method may be called from any thread; one thread
// (the read thread) takes batches and waits for their index.
#ifndef CPPETCD_SRC_SERVER_READ_INDEX_H_
#define CPPETCD_SRC_SERVER_READ_INDEX_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "cppetcd/util/mutex.h"

namespace cppetcd::server {

class ReadIndexQueue {
 public:
  // A read's continuation: OK once the member has applied up to the read
  // index, else the reason (ErrStopped, ErrTimeout, ErrTooManyRequests).
  using ReadFn = absl::AnyInvocable<void(absl::Status) &&>;

  // Reads answered together, behind one ReadIndex request.
  struct Batch {
    std::vector<ReadFn> reads;  // non-empty
    std::string ctx;            // the ReadIndex request context
    // Runs every read with its own copy of `s` (a shared error rep's
    // refcount would be touched from many threads inside uninstrumented
    // abseil code).
    void Finish(const absl::Status& s) &&;
  };

  // max_pending >= 1.
  explicit ReadIndexQueue(size_t max_pending) : max_pending_(max_pending) {}
  ReadIndexQueue(const ReadIndexQueue&) = delete;
  ReadIndexQueue& operator=(const ReadIndexQueue&) = delete;

  // Queues `fn` for the next batch. When refused (full: ErrTooManyRequests;
  // stopped: ErrStopped) `fn` has run with that status, outside the lock.
  void Enqueue(ReadFn fn);
  // Blocks until a read is queued or Stop; nullopt once stopped (the reads
  // still queued stay for FailPending). The batch's context becomes the
  // current one and its result is cleared.
  std::optional<Batch> WaitBatch();
  // Raft thread: a ReadState for `ctx`; records `index` if `ctx` is the
  // current batch's context, else ignores it.
  void OnReadState(std::string_view ctx, uint64_t index);
  // Waits at most `timeout` for the current batch's index; nullopt on
  // timeout or Stop.
  std::optional<uint64_t> WaitIndex(std::chrono::nanoseconds timeout);
  // Wakes the read thread for good; later Enqueue answers ErrStopped.
  void Stop();
  bool stopped() const;
  // Runs every read still queued with ErrStopped; returns how many.
  size_t FailPending();
  size_t pending() const;

 private:
  const size_t max_pending_;
  mutable util::Mutex mu_;
  util::CondVar cv_;  // a read queued, a result arrived, or stopped
  std::vector<ReadFn> pending_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::string current_ctx_ ABSL_GUARDED_BY(mu_);  // empty before the first batch
  std::optional<uint64_t> result_ ABSL_GUARDED_BY(mu_);  // for current_ctx_
  uint64_t ctx_counter_ ABSL_GUARDED_BY(mu_) = 0;  // contexts handed out
};

}  // namespace cppetcd::server

#endif  // CPPETCD_SRC_SERVER_READ_INDEX_H_
