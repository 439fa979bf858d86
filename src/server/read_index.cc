#include "read_index.h"

#include <utility>

#include "cppetcd/server/errors.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/util/error.h"

namespace cppetcd::server {

void ReadIndexQueue::Batch::Finish(const absl::Status& s) && {
  for (auto& fn : reads) std::move(fn)(util::CopyStatus(s));
  reads.clear();
}

void ReadIndexQueue::Enqueue(ReadFn fn) {
  absl::Status refused;
  {
    util::MutexLock l(&mu_);
    if (stopped_) {
      refused = ErrStopped();
    } else if (pending_.size() >= max_pending_) {
      refused = ErrTooManyRequests();
    } else {
      pending_.push_back(std::move(fn));
      cv_.SignalAll();
      return;
    }
  }
  std::move(fn)(std::move(refused));
}

std::optional<ReadIndexQueue::Batch> ReadIndexQueue::WaitBatch() {
  util::MutexLock l(&mu_);
  while (!stopped_ && pending_.empty()) cv_.Wait(&mu_);
  if (stopped_) return std::nullopt;
  Batch b;
  b.reads.swap(pending_);
  b.ctx = storage::EncodeBigEndian64(++ctx_counter_);
  current_ctx_ = b.ctx;
  result_.reset();
  return b;
}

void ReadIndexQueue::OnReadState(std::string_view ctx, uint64_t index) {
  util::MutexLock l(&mu_);
  if (current_ctx_.empty() || ctx != current_ctx_) return;
  result_ = index;
  cv_.SignalAll();
}

std::optional<uint64_t> ReadIndexQueue::WaitIndex(std::chrono::nanoseconds timeout) {
  util::MutexLock l(&mu_);
  cv_.WaitFor(&mu_, timeout, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopped_ || result_.has_value();
  });
  return result_;
}

void ReadIndexQueue::Stop() {
  util::MutexLock l(&mu_);
  stopped_ = true;
  cv_.SignalAll();
}

bool ReadIndexQueue::stopped() const {
  util::MutexLock l(&mu_);
  return stopped_;
}

size_t ReadIndexQueue::FailPending() {
  std::vector<ReadFn> rest;
  {
    util::MutexLock l(&mu_);
    rest.swap(pending_);
  }
  for (auto& fn : rest) std::move(fn)(ErrStopped());
  return rest.size();
}

size_t ReadIndexQueue::pending() const {
  util::MutexLock l(&mu_);
  return pending_.size();
}

}  // namespace cppetcd::server
