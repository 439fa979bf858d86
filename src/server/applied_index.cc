#include "applied_index.h"

namespace cppetcd::server {

void AppliedIndex::Publish(uint64_t index) {
  util::MutexLock l(&mu_);
  if (index > applied_) applied_ = index;
  applied_atomic_.store(applied_, std::memory_order_release);
  cv_.SignalAll();
}

void AppliedIndex::PublishReplied(uint64_t index) {
  uint64_t cur = replied_.load(std::memory_order_relaxed);
  while (index > cur &&
         !replied_.compare_exchange_weak(cur, index, std::memory_order_release,
                                         std::memory_order_relaxed)) {
  }
}

bool AppliedIndex::WaitFor(uint64_t index, std::chrono::nanoseconds timeout) const {
  util::MutexLock l(&mu_);
  if (OnPublisherThread()) {
    return applied_ >= index || replied_.load(std::memory_order_relaxed) >= index;
  }
  return cv_.WaitFor(&mu_, timeout,
                     [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                       return applied_ >= index || stopped_;
                     }) &&
         applied_ >= index;
}

void AppliedIndex::AwaitReplied(std::chrono::nanoseconds timeout) const {
  if (OnPublisherThread()) return;
  const uint64_t replied = replied_.load(std::memory_order_acquire);
  if (applied_atomic_.load(std::memory_order_acquire) >= replied) return;
  util::MutexLock l(&mu_);
  cv_.WaitFor(&mu_, timeout, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return applied_ >= replied || stopped_;
  });
}

void AppliedIndex::Stop() {
  util::MutexLock l(&mu_);
  stopped_ = true;
  cv_.SignalAll();
}

bool AppliedIndex::stopped() const {
  util::MutexLock l(&mu_);
  return stopped_;
}

}  // namespace cppetcd::server
