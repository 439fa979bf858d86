// EtcdServer's maintenance calls: Hash and HashKV answers, Defragment, and
// the host side of Maintenance (maintenance_thread.h: the thread that runs
// defragmentations and the corruption checks of etcd 3.4
// etcdserver/corrupt.go): the store's hashes, the peers' through the
// transport, the read barrier, the CORRUPT alarm proposal (with CORRUPT
// active every write is refused with "etcdserver: corrupt cluster"; reads go
// on) and the backend's defragmentation with its disk room
// (disk_reservation.h).
#include <future>

#include "server_impl.h"
#include "crash_point.h"

namespace cppetcd::server {

// ---- Hash, HashKV ----

void EtcdServer::Hash(const etcdserverpb::HashRequest&, Done<etcdserverpb::HashResponse> done) {
  if (impl_->membership_.LocalIsLearner()) return std::move(done)(ErrNotSupportedForLearner());
  if (impl_->Stopping()) return std::move(done)(ErrStopped());
  impl_->AwaitRepliedWrites();
  const int64_t rev = impl_->store_->Rev();
  auto h = impl_->backend_->Hash({{std::string(storage::kMetaBucket),
                                   std::string(kConsistentIndexKey)}});
  if (!h.ok()) return std::move(done)(h.status());
  etcdserverpb::HashResponse resp;
  impl_->FillHeaderImpl(resp.mutable_header(), false);
  resp.mutable_header()->set_revision(rev);
  resp.set_hash(*h);
  std::move(done)(std::move(resp));
}

void EtcdServer::Impl::HashKVLocal(int64_t revision,
                                   PeerDone<etcdserverpb::HashKVResponse> done) {
  if (Stopping()) return std::move(done)(ErrStopped());
  AwaitRepliedWrites();
  auto h = store_->HashByRev(revision);
  if (!h.ok()) return std::move(done)(h.status());
  etcdserverpb::HashKVResponse resp;
  FillHeaderImpl(resp.mutable_header(), false);
  resp.mutable_header()->set_revision(h->current_revision);
  resp.set_hash(h->hash);
  resp.set_compact_revision(h->compact_revision);
  std::move(done)(std::move(resp));
}

// ---- Disk room for copies of the backend ----

uint64_t EtcdServer::Impl::BackendCopyEstimateBytes() const {
  // A compact copy holds the pages in use; bbolt's layout and page fill
  // differ from LMDB's, so allow a quarter more, and a MiB for the metas
  // and the bbolt free list.
  const uint64_t in_use = static_cast<uint64_t>(std::max<int64_t>(backend_->SizeInUseBytes(), 0));
  return in_use + in_use / 4 + (1u << 20);
}

// ---- Defragment ----

void EtcdServer::Defragment(const etcdserverpb::DefragmentRequest&,
                            Done<etcdserverpb::DefragmentResponse> done) {
  if (impl_->membership_.LocalIsLearner()) return std::move(done)(ErrNotSupportedForLearner());
  if (impl_->Stopping()) return std::move(done)(ErrStopped());
  impl_->maintenance_->Defragment(std::move(done));
}

// ---- the Maintenance host ----

namespace {

// Asks every peer for its HashKV at `rev`, in parallel; waits at most
// `timeout` for all of them.
std::vector<PeerHashKV> PeerHashKVs(
    Transport* transport, const std::vector<std::pair<uint64_t, std::vector<std::string>>>& peers,
    int64_t rev, milliseconds timeout) {
  struct Shared {
    util::Mutex mu;
    util::CondVar cv;
    std::vector<PeerHashKV> out;
    size_t pending = 0;
  };
  auto shared = std::make_shared<Shared>();
  shared->out.resize(peers.size());
  shared->pending = peers.size();
  for (size_t i = 0; i < peers.size(); ++i) {
    shared->out[i].id = peers[i].first;
    shared->out[i].urls = peers[i].second;
    transport->HashKV(peers[i].first, rev, timeout,
                      [shared, i](absl::StatusOr<etcdserverpb::HashKVResponse> r) {
                        util::MutexLock l(&shared->mu);
                        shared->out[i].resp = std::move(r);
                        --shared->pending;
                        shared->cv.SignalAll();
                      });
  }
  util::MutexLock l(&shared->mu);
  // Real time: a backstop behind the transport calls' gRPC deadlines.
  shared->cv.WaitFor(&shared->mu, timeout + milliseconds(500), [&] { return shared->pending == 0; });
  return shared->out;
}

}  // namespace

// Maintenance's view of the server: the store's hashes, the peers through
// the transport, the read path, raft and the backend.
class EtcdServer::Impl::MaintenanceHostImpl final : public MaintenanceHost {
 public:
  explicit MaintenanceHostImpl(Impl* impl) : impl_(impl) {}

  uint64_t MemberId() const override { return impl_->member_id_.load(); }
  bool IsLeader() const override {
    return impl_->lead_.load() == impl_->member_id_.load() && !impl_->Stopping();
  }
  absl::StatusOr<mvcc::HashResult> LocalHashKV() override { return impl_->store_->HashByRev(0); }
  std::vector<PeerHashKV> PeerHashKVs(int64_t revision) override {
    const milliseconds timeout = std::min(impl_->cfg_.request_timeout, milliseconds(5000));
    return server::PeerHashKVs(impl_->transport_.get(), impl_->CurrentPeers(), revision, timeout);
  }
  absl::Status ReadBarrier() override {
    auto barrier = std::make_shared<std::promise<absl::Status>>();
    std::future<absl::Status> barrier_done = barrier->get_future();
    impl_->EnqueueLinearizableRead(
        [barrier](absl::Status s) { barrier->set_value(std::move(s)); });
    // Real time: a backstop (std::future waits on the real clock); the read
    // path answers by its own deadline first.
    if (barrier_done.wait_for(impl_->cfg_.request_timeout) != std::future_status::ready) {
      return absl::DeadlineExceededError("read barrier timed out");
    }
    return barrier_done.get();
  }
  void RaiseCorruptAlarm() override {
    serverpb::InternalRaftRequest r;
    r.mutable_alarm()->set_memberid(0);  // etcd raises it for member 0
    r.mutable_alarm()->set_action(etcdserverpb::AlarmRequest::ACTIVATE);
    r.mutable_alarm()->set_alarm(etcdserverpb::CORRUPT);
    impl_->Propose(std::move(r), [](Outcome) {});
  }
  absl::Status DefragmentBackend() override {
    storage::DefragmentOptions opts;
    opts.on_step = [](std::string_view step) {
      // Crash points "defrag_copied", "defrag_switch_over",
      // "defrag_before_rename", "defrag_after_rename".
      const std::string name = "defrag_" + std::string(step);
      CPPETCD_CRASH_POINT(name.c_str());
      (void)name;
      return absl::OkStatus();
    };
    const uint64_t estimate = impl_->BackendCopyEstimateBytes();
    if (absl::Status room = impl_->ReserveDisk("a defragmentation", estimate); !room.ok()) {
      return room;
    }
    absl::StatusOr<storage::DefragmentResult> r = impl_->backend_->Defragment(opts);
    impl_->ReleaseDisk(estimate);
    return r.status();
  }
  void FillHeader(etcdserverpb::ResponseHeader* h) override { impl_->FillHeaderImpl(h, true); }

 private:
  Impl* const impl_;
};

void EtcdServer::Impl::InitMaintenance() {
  disk_ = std::make_unique<DiskReservation>(env_, member_dir_, cfg_.disk_headroom_bytes, lg_);
  maintenance_host_ = std::make_unique<MaintenanceHostImpl>(this);
  Maintenance::Options opts;
  opts.timer_clock = timer_clock_;
  opts.initial_corrupt_check = cfg_.initial_corrupt_check;
  opts.corrupt_check_time = cfg_.corrupt_check_time;
  opts.request_timeout = cfg_.request_timeout;
  maintenance_ = std::make_unique<Maintenance>(opts, maintenance_host_.get(), lg_);
}

}  // namespace cppetcd::server
