// EtcdServer: the public facade (etcd_server.h). Each call shapes the
// request, then serves it locally (serializable reads, leases, members,
// status), queues a linearizable read or proposes it through raft. Any
// thread; Done callbacks run on the thread that completes the request.
#include "server_impl.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "cppetcd/server/etcd_backend_export.h"
#include "cppetcd/storage/bbolt_writer.h"
#include "cppetcd/auth/errors.h"

namespace cppetcd::server {
// ---------------------------------------------------------------------------
// EtcdServer: thin forwarding to Impl plus request shaping.

EtcdServer::EtcdServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EtcdServer::~EtcdServer() { impl_->Stop(/*graceful=*/true); }

absl::Status EtcdServer::Start() {
  if (absl::Status s = impl_->Start(); !s.ok()) return s;
  // The initial corruption check needs the raft loop and the peers running.
  if (absl::Status s = impl_->StartMaintenance(); !s.ok()) {
    impl_->Stop(/*graceful=*/false);
    return s;
  }
  return absl::OkStatus();
}
void EtcdServer::Stop() { impl_->Stop(/*graceful=*/true); }
void EtcdServer::CrashForTesting() { impl_->Stop(/*graceful=*/false); }

bool EtcdServer::WaitReady(std::chrono::milliseconds timeout) {
  util::MutexLock l(&impl_->ready_mu_);
  // Real time: the caller's own wait (tests, cmd), not server behaviour.
  return impl_->ready_cv_.WaitFor(&impl_->ready_mu_, timeout, [this] {
    impl_->ready_mu_.AssertHeld();
    return impl_->ready_;
  });
}
bool EtcdServer::IsReady() const {
  util::MutexLock l(&impl_->ready_mu_);
  return impl_->ready_;
}

bool EtcdServer::IsLearner() const { return impl_->membership_.LocalIsLearner(); }
bool EtcdServer::StopRequested() const { return impl_->stop_requested_.load(); }

uint64_t EtcdServer::MemberId() const { return impl_->member_id_.load(); }
uint64_t EtcdServer::ClusterId() const { return impl_->cluster_id_.load(); }
const ServerConfig& EtcdServer::Config() const { return impl_->cfg_; }
const util::Logger& EtcdServer::Logger() const { return impl_->lg_; }
mvcc::WatchableStore* EtcdServer::Watchable() { return impl_->watchable_.get(); }
const mvcc::Store* EtcdServer::Store() const { return impl_->store_.get(); }
storage::Backend* EtcdServer::Backend() { return impl_->backend_.get(); }
ServerMetrics& EtcdServer::Metrics() { return impl_->metrics_; }
void EtcdServer::AwaitRepliedWrites() const { impl_->AwaitRepliedWrites(); }
void EtcdServer::FillHeader(etcdserverpb::ResponseHeader* header) const {
  impl_->FillHeaderImpl(header, /*set_revision=*/true);
}

namespace {

etcdserverpb::ResponseHeader* MutableHeader(etcdserverpb::RangeResponse& r) {
  return r.mutable_header();
}
etcdserverpb::ResponseHeader* MutableHeader(EncodedRange& r) { return &r.header; }

// EtcdServer::Range and RangeEncoded: `read` builds the answer
// (Applier::Range or RangeEncoded).
template <class Resp, class ReadFn>
void ServeRange(EtcdServer::Impl* impl, const auth::Credentials& caller,
                const etcdserverpb::RangeRequest& req, Done<Resp> done, ReadFn read) {
  // etcd 3.4: a learner serves only Status and serializable Range.
  if (!req.serializable() && impl->membership_.LocalIsLearner()) {
    return std::move(done)(ErrNotSupportedForLearner());
  }
  if (impl->Stopping()) return std::move(done)(ErrStopped());
  absl::StatusOr<auth::AuthInfo> ai = impl->CallerAuthInfo(caller);
  if (!ai.ok()) return std::move(done)(ai.status());
  auto serve = [impl, req, ai = *ai, done = std::move(done),
                read = std::move(read)](absl::Status s) mutable {
    if (!s.ok()) return std::move(done)(std::move(s));
    // etcd doSerialize: check, read, then refuse if auth changed meanwhile.
    if (auto a = impl->auth_->IsRangePermitted(ai, req.key(), req.range_end()); !a.ok()) {
      return std::move(done)(std::move(a));
    }
    absl::StatusOr<Resp> resp = read(req);
    if (ai.revision != 0 && ai.revision != impl->auth_->Revision()) {
      return std::move(done)(auth::ErrAuthOldRevision());
    }
    if (resp.ok()) {
      etcdserverpb::ResponseHeader* h = MutableHeader(*resp);
      impl->FillHeaderImpl(h, h->revision() == 0);
    }
    std::move(done)(std::move(resp));
  };
  if (req.serializable()) {
    impl->AwaitRepliedWrites();
    serve(absl::OkStatus());
  } else {
    impl->EnqueueLinearizableRead(std::move(serve));
  }
}

}  // namespace

void EtcdServer::Range(const auth::Credentials& caller, const etcdserverpb::RangeRequest& req,
                       Done<etcdserverpb::RangeResponse> done) {
  Impl* impl = impl_.get();
  ServeRange(impl, caller, req, std::move(done),
             [impl](const etcdserverpb::RangeRequest& r) { return impl->applier_->Range(r); });
}

void EtcdServer::RangeEncoded(const auth::Credentials& caller,
                              const etcdserverpb::RangeRequest& req, uint64_t size_hint,
                              Done<EncodedRange> done) {
  Impl* impl = impl_.get();
  ServeRange(impl, caller, req, std::move(done),
             [impl, size_hint](const etcdserverpb::RangeRequest& r) {
               return impl->applier_->RangeEncoded(r, size_hint);
             });
}

absl::StatusOr<uint64_t> EtcdServer::EstimateRangeBytes(
    const etcdserverpb::RangeRequest& req) const {
  if (impl_->Stopping()) return ErrStopped();
  return impl_->applier_->EstimateRangeBytes(req);
}

void EtcdServer::Put(const auth::Credentials& caller,
                     const etcdserverpb::PutRequest& req, Done<etcdserverpb::PutResponse> done) {
  if (impl_->membership_.LocalIsLearner()) return std::move(done)(ErrNotSupportedForLearner());
  serverpb::InternalRaftRequest r;
  *r.mutable_put() = req;
  if (impl_->Stopping()) return std::move(done)(ErrStopped());
  if (auto s = impl_->StampCaller(caller, &r); !s.ok()) return std::move(done)(std::move(s));
  if (auto s = impl_->CheckQuota(r); !s.ok()) return std::move(done)(std::move(s));
  impl_->Propose(std::move(r), impl_->MakeWaiter<etcdserverpb::PutResponse>(std::move(done)));
}

void EtcdServer::DeleteRange(const auth::Credentials& caller,
                             const etcdserverpb::DeleteRangeRequest& req,
                             Done<etcdserverpb::DeleteRangeResponse> done) {
  if (impl_->membership_.LocalIsLearner()) return std::move(done)(ErrNotSupportedForLearner());
  serverpb::InternalRaftRequest r;
  *r.mutable_delete_range() = req;
  if (auto s = impl_->StampCaller(caller, &r); !s.ok()) return std::move(done)(std::move(s));
  impl_->Propose(std::move(r),
                 impl_->MakeWaiter<etcdserverpb::DeleteRangeResponse>(std::move(done)));
}

void EtcdServer::Txn(const auth::Credentials& caller,
                     const etcdserverpb::TxnRequest& req, Done<etcdserverpb::TxnResponse> done) {
  if (impl_->membership_.LocalIsLearner()) return std::move(done)(ErrNotSupportedForLearner());
  Impl* impl = impl_.get();
  if (impl->Stopping()) return std::move(done)(ErrStopped());
  if (Applier::IsTxnReadOnly(req)) {
    // etcd: a read-only txn is linearizable unless every range in it is
    // serializable.
    bool serializable = true;
    for (const auto* ops : {&req.success(), &req.failure()}) {
      for (const auto& op : *ops) {
        if (op.has_request_range() && !op.request_range().serializable()) serializable = false;
      }
    }
    absl::StatusOr<auth::AuthInfo> ai = impl->CallerAuthInfo(caller);
    if (!ai.ok()) return std::move(done)(ai.status());
    auto serve = [impl, req, ai = *ai, done = std::move(done)](absl::Status s) mutable {
      if (!s.ok()) return std::move(done)(std::move(s));
      if (auto a = impl->auth_->IsTxnPermitted(ai, req); !a.ok()) {
        return std::move(done)(std::move(a));
      }
      auto resp = impl->applier_->ReadOnlyTxn(req);
      if (ai.revision != 0 && ai.revision != impl->auth_->Revision()) {
        return std::move(done)(auth::ErrAuthOldRevision());
      }
      if (resp.ok()) impl->FillHeaderImpl(resp->mutable_header(), resp->header().revision() == 0);
      std::move(done)(std::move(resp));
    };
    if (serializable) {
      impl->AwaitRepliedWrites();
      serve(absl::OkStatus());
    } else {
      impl->EnqueueLinearizableRead(std::move(serve));
    }
    return;
  }
  serverpb::InternalRaftRequest r;
  *r.mutable_txn() = req;
  if (auto s = impl->StampCaller(caller, &r); !s.ok()) return std::move(done)(std::move(s));
  if (auto s = impl->CheckQuota(r); !s.ok()) return std::move(done)(std::move(s));
  impl->Propose(std::move(r), impl->MakeWaiter<etcdserverpb::TxnResponse>(std::move(done)));
}

void EtcdServer::Compact(const auth::Credentials& caller,
                         const etcdserverpb::CompactionRequest& req,
                         Done<etcdserverpb::CompactionResponse> done) {
  if (impl_->membership_.LocalIsLearner()) return std::move(done)(ErrNotSupportedForLearner());
  Impl* impl = impl_.get();
  serverpb::InternalRaftRequest r;
  *r.mutable_compaction() = req;
  if (auto s = impl->StampCaller(caller, &r); !s.ok()) return std::move(done)(std::move(s));
  const bool physical = req.physical();
  impl->Propose(std::move(r), [impl, physical, done = std::move(done)](Outcome o) mutable {
    if (!o.status.ok()) return std::move(done)(std::move(o.status));
    etcdserverpb::CompactionResponse resp;
    if (auto* p = std::get_if<etcdserverpb::CompactionResponse>(&o.result.response)) resp = *p;
    impl->FillHeaderImpl(resp.mutable_header(), resp.header().revision() == 0);
    if (!physical || !o.result.compaction_done.has_value()) return std::move(done)(std::move(resp));
    // Wait for the physical compaction off the apply thread.
    impl->waits_->AddPhysicalWait(
        *o.result.compaction_done,
        [resp = std::move(resp), done = std::move(done)](absl::Status s) mutable {
          if (!s.ok()) return std::move(done)(std::move(s));
          std::move(done)(std::move(resp));
        });
  });
}

void EtcdServer::LeaseGrant(const auth::Credentials& caller,
                            const etcdserverpb::LeaseGrantRequest& req,
                            Done<etcdserverpb::LeaseGrantResponse> done) {
  if (impl_->membership_.LocalIsLearner()) return std::move(done)(ErrNotSupportedForLearner());
  serverpb::InternalRaftRequest r;
  *r.mutable_lease_grant() = req;
  if (impl_->Stopping()) return std::move(done)(ErrStopped());
  if (auto s = impl_->StampCaller(caller, &r); !s.ok()) return std::move(done)(std::move(s));
  // etcd: the server picks a positive int63 ID when none is given; any
  // other ID, negative ones too, is the client's choice.
  while (r.lease_grant().id() == lease::kNoLease) {
    r.mutable_lease_grant()->set_id(
        static_cast<int64_t>(impl_->idgen_->Next() & ((uint64_t{1} << 63) - 1)));
  }
  if (auto s = impl_->CheckQuota(r); !s.ok()) return std::move(done)(std::move(s));
  impl_->Propose(std::move(r),
                 impl_->MakeWaiter<etcdserverpb::LeaseGrantResponse>(std::move(done)));
}

void EtcdServer::LeaseRevoke(const auth::Credentials& caller,
                             const etcdserverpb::LeaseRevokeRequest& req,
                             Done<etcdserverpb::LeaseRevokeResponse> done) {
  if (impl_->membership_.LocalIsLearner()) return std::move(done)(ErrNotSupportedForLearner());
  serverpb::InternalRaftRequest r;
  *r.mutable_lease_revoke() = req;
  if (auto s = impl_->StampCaller(caller, &r); !s.ok()) return std::move(done)(std::move(s));
  impl_->Propose(std::move(r),
                 impl_->MakeWaiter<etcdserverpb::LeaseRevokeResponse>(std::move(done)));
}

void EtcdServer::LeaseRenew(int64_t id, Done<int64_t> done) {
  if (impl_->membership_.LocalIsLearner()) return std::move(done)(ErrNotSupportedForLearner());
  // The leader's lessor answers; other members forward (etcd 3.4).
  impl_->RouteLeaseRenew(id, impl_->timer_clock_->Now() + impl_->cfg_.request_timeout,
                         std::move(done));
}

void EtcdServer::LeaseTimeToLive(const etcdserverpb::LeaseTimeToLiveRequest& req,
                                 Done<etcdserverpb::LeaseTimeToLiveResponse> done) {
  if (impl_->membership_.LocalIsLearner()) return std::move(done)(ErrNotSupportedForLearner());
  impl_->RouteLeaseTimeToLive(req, impl_->timer_clock_->Now() + impl_->cfg_.request_timeout,
                              std::move(done));
}

void EtcdServer::LeaseLeases(const etcdserverpb::LeaseLeasesRequest&,
                             Done<etcdserverpb::LeaseLeasesResponse> done) {
  if (impl_->membership_.LocalIsLearner()) return std::move(done)(ErrNotSupportedForLearner());
  if (impl_->Stopping()) return std::move(done)(ErrStopped());
  etcdserverpb::LeaseLeasesResponse resp;
  impl_->FillHeaderImpl(resp.mutable_header(), true);
  for (const auto& l : impl_->lessor_->Leases()) resp.add_leases()->set_id(l.id);
  std::move(done)(std::move(resp));
}

void EtcdServer::MemberList(const etcdserverpb::MemberListRequest&,
                            Done<etcdserverpb::MemberListResponse> done) {
  if (impl_->membership_.LocalIsLearner()) return std::move(done)(ErrNotSupportedForLearner());
  if (impl_->Stopping()) return std::move(done)(ErrStopped());
  etcdserverpb::MemberListResponse resp;
  // etcd 3.4's cluster API answers with cluster id, member id and raft term
  // only: no revision (v3rpc ClusterServer.header).
  impl_->FillHeaderImpl(resp.mutable_header(), /*set_revision=*/false);
  for (auto& m : impl_->membership_.List()) *resp.add_members() = std::move(m);
  std::move(done)(std::move(resp));
}

void EtcdServer::MemberAdd(const auth::Credentials& caller,
                           const etcdserverpb::MemberAddRequest& req,
                           Done<etcdserverpb::MemberAddResponse> done) {
  if (impl_->membership_.LocalIsLearner()) return std::move(done)(ErrNotSupportedForLearner());
  if (auto s = AuthorizeAdmin(caller); !s.ok()) return std::move(done)(std::move(s));
  impl_->MemberAdd(req, std::move(done));
}
void EtcdServer::MemberRemove(const auth::Credentials& caller,
                              const etcdserverpb::MemberRemoveRequest& req,
                              Done<etcdserverpb::MemberRemoveResponse> done) {
  if (impl_->membership_.LocalIsLearner()) return std::move(done)(ErrNotSupportedForLearner());
  if (auto s = AuthorizeAdmin(caller); !s.ok()) return std::move(done)(std::move(s));
  impl_->MemberRemove(req, std::move(done));
}
void EtcdServer::MemberUpdate(const auth::Credentials& caller,
                              const etcdserverpb::MemberUpdateRequest& req,
                              Done<etcdserverpb::MemberUpdateResponse> done) {
  if (impl_->membership_.LocalIsLearner()) return std::move(done)(ErrNotSupportedForLearner());
  if (auto s = AuthorizeAdmin(caller); !s.ok()) return std::move(done)(std::move(s));
  impl_->MemberUpdate(req, std::move(done));
}
void EtcdServer::MemberPromote(const auth::Credentials& caller,
                               const etcdserverpb::MemberPromoteRequest& req,
                               Done<etcdserverpb::MemberPromoteResponse> done) {
  if (impl_->membership_.LocalIsLearner()) return std::move(done)(ErrNotSupportedForLearner());
  if (auto s = AuthorizeAdmin(caller); !s.ok()) return std::move(done)(std::move(s));
  impl_->RoutePromote(req, impl_->timer_clock_->Now() + impl_->cfg_.request_timeout, std::move(done));
}

void EtcdServer::Alarm(const auth::Credentials& caller, const etcdserverpb::AlarmRequest& req,
                       Done<etcdserverpb::AlarmResponse> done) {
  if (impl_->membership_.LocalIsLearner()) return std::move(done)(ErrNotSupportedForLearner());
  Impl* impl = impl_.get();
  if (impl->Stopping()) return std::move(done)(ErrStopped());
  // etcd 3.4 proposes every Alarm, GET too, with the caller's auth info: an
  // invalid token fails it (any valid caller may use it).
  serverpb::InternalRaftRequest r;
  if (auto s = impl->StampCaller(caller, &r); !s.ok()) return std::move(done)(std::move(s));
  if (req.action() == etcdserverpb::AlarmRequest::GET) {
    etcdserverpb::AlarmResponse resp;
    impl->FillHeaderImpl(resp.mutable_header(), true);
    for (auto& a : impl->alarm_store_.List(req.alarm())) *resp.add_alarms() = std::move(a);
    return std::move(done)(std::move(resp));
  }
  *r.mutable_alarm() = req;
  impl->Propose(std::move(r), [impl, done = std::move(done)](Outcome o) mutable {
    if (!o.status.ok()) return std::move(done)(std::move(o.status));
    etcdserverpb::AlarmResponse resp = o.alarm.value_or(etcdserverpb::AlarmResponse());
    impl->FillHeaderImpl(resp.mutable_header(), true);
    std::move(done)(std::move(resp));
  });
}

void EtcdServer::Status(const etcdserverpb::StatusRequest&,
                        Done<etcdserverpb::StatusResponse> done) {
  Impl* impl = impl_.get();
  if (impl->Stopping()) return std::move(done)(ErrStopped());
  impl->AwaitRepliedWrites();
  etcdserverpb::StatusResponse resp;
  impl->FillHeaderImpl(resp.mutable_header(), true);
  resp.set_version(kServerVersion);
  resp.set_dbsize(impl->backend_->SizeBytes());
  resp.set_dbsizeinuse(impl->backend_->SizeInUseBytes());
  resp.set_leader(impl->lead_.load());
  resp.set_raftindex(impl->commit_index_.load());
  resp.set_raftterm(impl->term_.load());
  resp.set_raftappliedindex(impl->applied_.applied());
  {
    auto self = impl->membership_.Get(impl->member_id_.load());
    resp.set_islearner(self.has_value() && self->is_learner());
  }
  for (const auto& a : impl->alarm_store_.List(etcdserverpb::NONE)) {
    resp.add_errors(absl::StrCat("memberID:", a.memberid(), " alarm:", AlarmName(a.alarm()), " "));
  }
  std::move(done)(std::move(resp));
}

void EtcdServer::HashKV(const etcdserverpb::HashKVRequest& req,
                        Done<etcdserverpb::HashKVResponse> done) {
  if (impl_->membership_.LocalIsLearner()) return std::move(done)(ErrNotSupportedForLearner());
  if (impl_->Stopping()) return std::move(done)(ErrStopped());
  impl_->AwaitRepliedWrites();
  auto h = impl_->store_->HashByRev(req.revision());
  if (!h.ok()) return std::move(done)(h.status());
  etcdserverpb::HashKVResponse resp;
  impl_->FillHeaderImpl(resp.mutable_header(), false);
  resp.mutable_header()->set_revision(h->current_revision);
  resp.set_hash(h->hash);
  resp.set_compact_revision(h->compact_revision);
  std::move(done)(std::move(resp));
}

void EtcdServer::MoveLeader(const etcdserverpb::MoveLeaderRequest& req,
                            Done<etcdserverpb::MoveLeaderResponse> done) {
  if (impl_->membership_.LocalIsLearner()) return std::move(done)(ErrNotSupportedForLearner());
  if (impl_->Stopping()) return std::move(done)(ErrStopped());
  impl_->MoveLeader(req.targetid(), std::move(done));
}

absl::Status EtcdServer::SnapshotBackend(int fd, SnapshotFormat format) {
  if (impl_->Stopping() || impl_->backend_ == nullptr) return ErrStopped();
  // Answered writes are in LMDB before the copy's read txn starts.
  impl_->AwaitRepliedWrites();
  if (format == SnapshotFormat::kLmdb) return impl_->backend_->CopyTo(fd);
  const uint64_t estimate = impl_->BackendCopyEstimateBytes();
  if (absl::Status s = impl_->ReserveDisk("a snapshot", estimate); !s.ok()) return s;
  absl::Cleanup release = [&] { impl_->ReleaseDisk(estimate); };
  // The bbolt file is built in the data dir (through the Env) from one read
  // txn, then streamed. It is unlinked at once: the descriptor keeps it
  // until closed, and a crash leaves nothing behind.
  static std::atomic<uint64_t> next_tmp{0};
  const std::string tmp_path = absl::StrCat(impl_->snap_dir_, "/db.snapshot-", ::getpid(), "-",
                                            next_tmp.fetch_add(1));
  util::Env* env = impl_->env_;
  auto tmp = env->NewRandomRWFile(tmp_path);
  if (!tmp.ok()) return tmp.status();
  if (absl::Status s = env->RemoveFile(tmp_path); !s.ok()) return s;
  uint64_t size = 0;
  {
    auto rtx = impl_->backend_->BeginRead();
    if (!rtx.ok()) return rtx.status();
    auto w = storage::BboltWriter::Create(tmp->get());
    if (!w.ok()) return w.status();
    if (absl::Status s = ExportEtcdBackend(rtx->get(), w->get()); !s.ok()) return s;
    auto n = (*w)->Finish();
    if (!n.ok()) return n.status();
    size = *n;
  }  // the read txn ends before the (client-paced) stream
  std::string buf;
  for (uint64_t off = 0; off < size;) {
    if (absl::Status s = (*tmp)->Read(off, std::min<uint64_t>(256 * 1024, size - off), &buf);
        !s.ok()) {
      return s;
    }
    if (buf.empty()) return absl::DataLossError(absl::StrCat("read ", tmp_path, ": short file"));
    for (size_t done = 0; done < buf.size();) {
      const ssize_t wr = ::write(fd, buf.data() + done, buf.size() - done);
      if (wr < 0 && errno == EINTR) continue;
      if (wr < 0) return absl::InternalError(absl::StrCat("snapshot write: ", std::strerror(errno)));
      done += static_cast<size_t>(wr);
    }
    off += buf.size();
  }
  return absl::OkStatus();
}

}  // namespace cppetcd::server
