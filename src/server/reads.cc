// EtcdServer reads: response headers and linearizable reads. Reads are
// queued from any thread; the read thread batches them behind one ReadIndex
// round and waits for the apply loop to reach the read index.
#include "server_impl.h"

#include <algorithm>

#include "cppetcd/util/error.h"

namespace cppetcd::server {
namespace {

// A ReadIndex request without an answer is sent again after this long.
constexpr milliseconds kReadIndexRetry{500};

std::string EncodeReadContext(uint64_t v) { return storage::EncodeBigEndian64(v); }

}  // namespace

// ---------------------------------------------------------------------------
// Reads.

void EtcdServer::Impl::FillHeaderImpl(etcdserverpb::ResponseHeader* h, bool set_revision) const {
  h->set_cluster_id(cluster_id_.load());
  h->set_member_id(member_id_.load());
  h->set_raft_term(term_.load());
  if (set_revision && store_ != nullptr) {
    // The revision a client sees must include the writes it was answered.
    AwaitRepliedWrites();
    h->set_revision(store_->Rev());
  }
}

void EtcdServer::Impl::AwaitRepliedWrites() const {
  // A waiter's callback runs on the apply thread, before the commit it
  // would wait for: what it reads is its own batch's past anyway.
  if (std::this_thread::get_id() == apply_thread_id_.load(std::memory_order_relaxed)) return;
  const uint64_t replied = replied_index_.load(std::memory_order_acquire);
  if (applied_index_atomic_.load(std::memory_order_acquire) >= replied) return;
  util::MutexLock l(&applied_mu_);
  applied_cv_.WaitFor(&applied_mu_, cfg_.request_timeout,
                      [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(applied_mu_) {
                        return applied_index_ >= replied || Stopping();
                      });
}

void EtcdServer::Impl::EnqueueLinearizableRead(ReadFn fn) {
  {
    util::MutexLock l(&read_mu_);
    if (!read_stop_) {
      if (pending_reads_.size() >= cfg_.max_pending_reads) {
        l.Unlock();
        std::move(fn)(ErrTooManyRequests());
        return;
      }
      pending_reads_.push_back(std::move(fn));
      read_cv_.SignalAll();
      return;
    }
  }
  std::move(fn)(ErrStopped());
}

void EtcdServer::Impl::ReadLoop() {
  // etcd linearizableReadLoop: every read queued while the previous ReadIndex
  // round ran shares the next one.
  while (true) {
    std::vector<ReadFn> batch;
    std::string ctx;
    {
      util::MutexLock l(&read_mu_);
      while (!read_stop_ && pending_reads_.empty()) read_cv_.Wait(&read_mu_);
      if (read_stop_) break;
      batch.swap(pending_reads_);
      ctx = EncodeReadContext(++read_ctx_counter_);
      current_read_ctx_ = ctx;
      read_index_result_.reset();
    }
    const auto deadline = SteadyClock::now() + cfg_.request_timeout;
    absl::Status status;
    std::optional<uint64_t> index;
    while (true) {
      PostRaftTask([this, ctx] { node_->ReadIndex(ctx); });
      util::MutexLock l(&read_mu_);
      const auto retry_at = std::min(deadline, SteadyClock::now() + kReadIndexRetry);
      while (!read_stop_ && !read_index_result_.has_value() && SteadyClock::now() < retry_at) {
        read_cv_.WaitUntil(&read_mu_, retry_at);
      }
      if (read_index_result_.has_value()) {
        index = read_index_result_;
        break;
      }
      if (read_stop_) {
        status = ErrStopped();
        break;
      }
      if (SteadyClock::now() >= deadline) {
        status = ErrTimeout();
        break;
      }
      lg_.Warn("waiting for ReadIndex response took too long, retrying",
               {{"sent-request-id", storage::GetBigEndian64(ctx.data())},
                {"retry-timeout", DurationString(kReadIndexRetry)}});
    }
    if (index.has_value()) {
      util::MutexLock l(&applied_mu_);
      while (applied_index_ < *index && !Stopping() && SteadyClock::now() < deadline) {
        applied_cv_.WaitUntil(&applied_mu_, deadline);
      }
      if (applied_index_ < *index) status = Stopping() ? ErrStopped() : ErrTimeout();
    }
    // Each caller gets its own Status object: a shared error rep's refcount
    // would be touched from many threads inside uninstrumented abseil code.
    for (auto& fn : batch) std::move(fn)(util::CopyStatus(status));
  }
  std::vector<ReadFn> rest;
  {
    util::MutexLock l(&read_mu_);
    rest.swap(pending_reads_);
  }
  for (auto& fn : rest) std::move(fn)(ErrStopped());
}

}  // namespace cppetcd::server
