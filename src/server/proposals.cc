// EtcdServer proposals: Propose assigns a request ID, registers the waiter
// and hands the request to the raft loop; CheckQuota refuses requests that
// would grow the backend past its quota (raising NOSPACE). Any thread.
#include "server_impl.h"

namespace cppetcd::server {
namespace {

// Proposals are refused while the apply loop is this far behind the commit
// index (etcd maxGapBetweenApplyAndCommitIndex).
constexpr uint64_t kMaxGapBetweenApplyAndCommit = 5000;

}  // namespace

// ---------------------------------------------------------------------------
// Proposals.

void EtcdServer::Impl::Propose(serverpb::InternalRaftRequest r, Waiter w) {
  if (Stopping()) {
    std::move(w)(Outcome{ErrStopped(), {}, std::nullopt});
    return;
  }
  if (commit_index_.load() > applied_.applied() + kMaxGapBetweenApplyAndCommit) {
    std::move(w)(Outcome{ErrTooManyRequests(), {}, std::nullopt});
    return;
  }
  const uint64_t id = idgen_->Next();
  r.mutable_header()->set_id(id);
  std::string data = r.SerializeAsString();
  if (data.size() > cfg_.max_request_bytes) {
    std::move(w)(Outcome{ErrRequestTooLarge(), {}, std::nullopt});
    return;
  }
  // At most cfg_.max_pending_proposals waiters (ErrTooManyRequests).
  if (!waits_->Register(id, std::move(w)).ok()) return;  // `w` has run
  bool raft_gone = false;
  bool queue_full = false;
  {
    util::MutexLock l(&raft_mu_);
    raft_gone = raft_stop_;
    if (!raft_gone) {
      // Checked and added under raft_mu_; the raft loop only subtracts.
      const uint64_t queued = metrics_.proposals_queued_bytes.load();
      if (queued > 0 && queued + data.size() > cfg_.max_queued_proposal_bytes) {
        queue_full = true;
      } else {
        metrics_.proposals_queued_bytes.fetch_add(data.size());
        if (proposals_.empty()) proposals_oldest_ = timer_clock_->Now();
        proposals_.emplace_back(id, std::move(data));
        raft_cv_.Signal();
      }
    }
  }
  // The raft loop is gone: fail at once.
  if (raft_gone) CompleteWaiter(id, Outcome{ErrStopped(), {}, std::nullopt});
  if (queue_full) CompleteWaiter(id, Outcome{ErrTooManyRequests(), {}, std::nullopt});
}

// The bytes the quota is compared with: the LMDB pages that hold data (the
// file's pages minus LMDB's free list), not the file size. etcd compares
// bbolt's file size; an LMDB file also holds the pages LMDB keeps free for
// its two alternating meta pages and open readers, reused by later writes:
// a fresh member's file is 64 KiB against bbolt's 20 KiB, more than the
// 13-page quota of etcd's e2e TestCtlV3Alarm, while the pages in use are
// close to bbolt's file size (docs/operations.md, runbook 10). The in-use
// count walks LMDB's free list: it is taken only when the file size alone
// says the request would not fit (in use <= file size).
int64_t EtcdServer::Impl::QuotaUsedBytes(int64_t cost) const {
  const int64_t file = backend_->SizeBytes();
  if (file + cost <= quota_bytes_) return file;
  return backend_->SizeInUseBytes();
}

absl::Status EtcdServer::Impl::CheckQuota(const serverpb::InternalRaftRequest& r) {
  if (!GrowsBackend(r)) return absl::OkStatus();
  // As etcd's quota interceptor: a member over its own quota raises its own
  // NOSPACE even while another member's is active.
  const int64_t cost = QuotaCost(r);
  const int64_t used = quota_bytes_ <= 0 ? 0 : QuotaUsedBytes(cost);
  if (quota_bytes_ <= 0 || used + cost <= quota_bytes_) {
    return alarm_store_.NoSpace() ? ErrNoSpace() : absl::OkStatus();
  }
  // Over quota: raise NOSPACE for this member through raft (etcd's quota
  // interceptor does the same) and refuse the request.
  lg_.Warn("backend quota exceeded; raising NOSPACE alarm",
           {{"quota-size-bytes", quota_bytes_},
            {"current-db-size-bytes", backend_->SizeBytes()},
            {"current-db-size-in-use-bytes", used},
            {"request-cost-bytes", cost}});
  serverpb::InternalRaftRequest ar;
  ar.mutable_alarm()->set_action(etcdserverpb::AlarmRequest::ACTIVATE);
  ar.mutable_alarm()->set_memberid(member_id_);
  ar.mutable_alarm()->set_alarm(etcdserverpb::NOSPACE);
  Propose(std::move(ar), [](Outcome) {});
  return ErrNoSpace();
}

}  // namespace cppetcd::server
