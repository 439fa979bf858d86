// The applied index of EtcdServer and the waits on it (private to
// src/server), as etcd 3.4's pkg/wait.WaitTime and the appliedIndex that its
// linearizable reads and token checks wait for.
//
// Two indexes, both only growing:
//   applied  the last raft index whose batch is committed to the backend
//            and published in the store (Publish; the apply thread, Start,
//            snapshot restore);
//   replied  the last index of a batch whose waiters were answered before
//            that batch's commit (PublishReplied; apply thread). A client
//            that got a reply reads its own write once applied >= replied.
// The waits are bounded by their timeout and end at Stop. The publisher
// thread (the apply thread, SetPublisherThread) never blocks in a wait: it
// would wait for its own commit; it gets the answer of the moment instead.
//
// Thread-safety: every method may be called from any thread.
#ifndef CPPETCD_SRC_SERVER_APPLIED_INDEX_H_
#define CPPETCD_SRC_SERVER_APPLIED_INDEX_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "cppetcd/util/mutex.h"

namespace cppetcd::server {

class AppliedIndex {
 public:
  AppliedIndex() = default;
  AppliedIndex(const AppliedIndex&) = delete;
  AppliedIndex& operator=(const AppliedIndex&) = delete;

  // applied = max(applied, index); wakes the waits.
  void Publish(uint64_t index);
  // replied = max(replied, index). Called before the batch's commit, whose
  // Publish follows.
  void PublishReplied(uint64_t index);
  uint64_t applied() const { return applied_atomic_.load(std::memory_order_acquire); }
  uint64_t replied() const { return replied_.load(std::memory_order_acquire); }

  // The thread that publishes (the apply thread); its waits never block.
  void SetPublisherThread(std::thread::id id) {
    publisher_.store(id, std::memory_order_relaxed);
  }

  // Waits until applied >= index, at most `timeout` or until Stop; true iff
  // reached. On the publisher thread: at once, true if applied or replied
  // >= index (that batch's entries are applied in memory already).
  bool WaitFor(uint64_t index, std::chrono::nanoseconds timeout) const;
  // Waits until applied >= the replied index seen on entry, at most
  // `timeout` or until Stop; returns at once on the publisher thread or when
  // nothing replied is unpublished (the common case).
  void AwaitReplied(std::chrono::nanoseconds timeout) const;

  // Ends the waits in progress and makes later ones return at once (with
  // the answer of the moment). Publishing still works after Stop.
  void Stop();
  bool stopped() const;

 private:
  bool OnPublisherThread() const {
    return std::this_thread::get_id() == publisher_.load(std::memory_order_relaxed);
  }

  mutable util::Mutex mu_;
  mutable util::CondVar cv_;  // applied_ grew or stopped_
  uint64_t applied_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> applied_atomic_{0};  // == applied_, for lock-free reads
  std::atomic<uint64_t> replied_{0};
  std::atomic<std::thread::id> publisher_{};
};

}  // namespace cppetcd::server

#endif  // CPPETCD_SRC_SERVER_APPLIED_INDEX_H_
