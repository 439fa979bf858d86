// EtcdServer reads: response headers and linearizable reads. Reads are
// queued from any thread; the read thread batches them behind one ReadIndex
// round and waits for the apply loop to reach the read index.
#include "server_impl.h"

#include <algorithm>

namespace cppetcd::server {
namespace {

// A ReadIndex request without an answer is sent again after this long.
constexpr milliseconds kReadIndexRetry{500};

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
  // would wait for: what it reads is its own batch's past anyway, so the
  // apply thread does not wait (AppliedIndex::AwaitReplied).
  applied_.AwaitReplied(cfg_.request_timeout);
}

void EtcdServer::Impl::EnqueueLinearizableRead(ReadFn fn) { reads_->Enqueue(std::move(fn)); }

void EtcdServer::Impl::ReadLoop() {
  // etcd linearizableReadLoop: every read queued while the previous ReadIndex
  // round ran shares the next one. The deadline is on the injected clock;
  // the waits are real time, at most kReadIndexRetry each, and a batch gets
  // at most request_timeout / kReadIndexRetry + 1 ReadIndex requests.
  const int max_attempts = static_cast<int>(cfg_.request_timeout / kReadIndexRetry) + 1;
  while (std::optional<ReadIndexQueue::Batch> batch = reads_->WaitBatch()) {
    const std::string ctx = batch->ctx;
    const auto deadline = timer_clock_->Now() + cfg_.request_timeout;
    absl::Status status;
    std::optional<uint64_t> index;
    for (int attempt = 1;; ++attempt) {
      PostRaftTask([this, ctx] { node_->ReadIndex(ctx); });
      const auto left = std::max<std::chrono::nanoseconds>(deadline - timer_clock_->Now(), {});
      index = reads_->WaitIndex(std::min<std::chrono::nanoseconds>(left, kReadIndexRetry));
      if (index.has_value()) break;
      if (reads_->stopped()) {
        status = ErrStopped();
        break;
      }
      if (timer_clock_->Now() >= deadline || attempt >= max_attempts) {
        status = ErrTimeout();
        break;
      }
      lg_.Warn("waiting for ReadIndex response took too long, retrying",
               {{"sent-request-id", storage::GetBigEndian64(ctx.data())},
                {"retry-timeout", DurationString(kReadIndexRetry)}});
    }
    if (index.has_value()) {
      const auto left = std::max<std::chrono::nanoseconds>(deadline - timer_clock_->Now(), {});
      if (!applied_.WaitFor(*index, left)) {
        status = applied_.stopped() ? ErrStopped() : ErrTimeout();
      }
    }
    std::move(*batch).Finish(status);
  }
  reads_->FailPending();  // ErrStopped
}

}  // namespace cppetcd::server
