// Maintenance work of EtcdServer that must not hold the apply loop: online
// defragmentation and the corruption checks (etcd 3.4 etcdserver/corrupt.go),
// run on one maintenance thread; Hash and HashKV answers.
//
// Corruption checks (etcd semantics):
// - initial (--experimental-initial-corrupt-check): at Start, this member's
//   HashKV at its current revision is compared with each reachable peer's at
//   the same revision; a different hash with the same compact revision fails
//   Start ("<id> found data inconsistency with peers").
// - periodic (--experimental-corrupt-check-time): the leader takes its
//   HashKV, asks every follower for theirs at that revision, makes sure it
//   is still current (ReadIndex) and takes it again; a follower ahead of it,
//   or a different hash at the same compact revision, raises a CORRUPT alarm
//   (member ID 0, as etcd) through raft. With CORRUPT active every write is
//   refused with "etcdserver: corrupt cluster" (reads go on).
#include <future>

#include "server_impl.h"
#include "crash_point.h"

namespace cppetcd::server {
namespace {

// One peer's HashKV answer (or error) for a check.
struct PeerHash {
  uint64_t id = 0;
  std::vector<std::string> urls;
  absl::StatusOr<etcdserverpb::HashKVResponse> resp = absl::UnknownError("no answer");
};

}  // namespace

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

absl::Status EtcdServer::Impl::ReserveDisk(std::string_view what, uint64_t bytes) {
  absl::StatusOr<uint64_t> free = env_->FreeSpaceBytes(member_dir_);
  const uint64_t reserved_before = disk_reserved_bytes_.fetch_add(bytes);
  if (!free.ok()) {
    lg_.Warn("cannot read the free disk space; copying the backend anyway",
             {{"path", member_dir_}, {"error", free.status().ToString()}});
    return absl::OkStatus();
  }
  const uint64_t need = bytes + reserved_before + cfg_.disk_headroom_bytes;
  if (*free >= need) return absl::OkStatus();
  ReleaseDisk(bytes);
  lg_.Warn("not enough free disk space for a copy of the backend; refusing it",
           {{"what", std::string(what)},
            {"path", member_dir_},
            {"free-bytes", *free},
            {"copy-estimate-bytes", bytes},
            {"other-copies-bytes", reserved_before},
            {"headroom-bytes", cfg_.disk_headroom_bytes}});
  return absl::ResourceExhaustedError(absl::StrCat(
      "etcdserver: not enough free disk space for ", std::string(what), ": ", *free, " bytes free in ",
      member_dir_, ", ", need, " needed (the copy, other copies running, and ",
      cfg_.disk_headroom_bytes, " kept for the WAL)"));
}

// ---- Defragment ----

void EtcdServer::Defragment(const etcdserverpb::DefragmentRequest&,
                            Done<etcdserverpb::DefragmentResponse> done) {
  if (impl_->membership_.LocalIsLearner()) return std::move(done)(ErrNotSupportedForLearner());
  if (impl_->Stopping()) return std::move(done)(ErrStopped());
  impl_->Defragment(std::move(done));
}

void EtcdServer::Impl::Defragment(Done<etcdserverpb::DefragmentResponse> done) {
  {
    util::MutexLock l(&maint_mu_);
    if (!maint_stop_ && maint_thread_.joinable()) {
      defrag_waiters_.push_back(std::move(done));
      maint_cv_.SignalAll();
      return;
    }
  }
  std::move(done)(ErrStopped());
}

absl::Status EtcdServer::Impl::StartMaintenance() {
  if (cfg_.initial_corrupt_check) {
    if (absl::Status s = InitialCorruptCheck(); !s.ok()) return s;
  }
  if (cfg_.corrupt_check_time.count() > 0) {
    lg_.Info("enabled corruption checking",
             {{"local-member-id", util::IdToHex(member_id_.load())},
              {"interval", DurationString(cfg_.corrupt_check_time)}});
  }
  util::MutexLock l(&maint_mu_);
  maint_thread_ = std::thread([this] { MaintenanceLoop(); });
  return absl::OkStatus();
}

void EtcdServer::Impl::StopMaintenance() {
  {
    util::MutexLock l(&maint_mu_);
    maint_stop_ = true;
    maint_cv_.SignalAll();
  }
  if (maint_thread_.joinable()) maint_thread_.join();
  std::vector<Done<etcdserverpb::DefragmentResponse>> waiters;
  {
    util::MutexLock l(&maint_mu_);
    waiters.swap(defrag_waiters_);
  }
  for (auto& w : waiters) std::move(w)(ErrStopped());
}

void EtcdServer::Impl::MaintenanceLoop() {
  const milliseconds interval = cfg_.corrupt_check_time;
  auto next_check = interval.count() > 0 ? timer_clock_->Now() + interval
                                         : SteadyClock::time_point::max();
  while (true) {
    std::vector<Done<etcdserverpb::DefragmentResponse>> waiters;
    {
      util::MutexLock l(&maint_mu_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(maint_mu_) {
        return maint_stop_ || !defrag_waiters_.empty();
      };
      if (next_check == SteadyClock::time_point::max()) {
        maint_cv_.Wait(&maint_mu_, woken);
      } else {
        timer_clock_->WaitUntil(&maint_cv_, &maint_mu_, next_check, woken);
      }
      if (maint_stop_) return;
      waiters.swap(defrag_waiters_);
    }
    if (!waiters.empty()) {
      storage::DefragmentOptions opts;
      opts.on_step = [](std::string_view step) {
        // Crash points "defrag_copied", "defrag_switch_over",
        // "defrag_before_rename", "defrag_after_rename".
        const std::string name = "defrag_" + std::string(step);
        CPPETCD_CRASH_POINT(name.c_str());
        (void)name;
        return absl::OkStatus();
      };
      const uint64_t estimate = BackendCopyEstimateBytes();
      absl::StatusOr<storage::DefragmentResult> r;
      if (absl::Status room = ReserveDisk("a defragmentation", estimate); room.ok()) {
        r = backend_->Defragment(opts);
        ReleaseDisk(estimate);
      } else {
        r = room;
      }
      for (auto& w : waiters) {
        if (!r.ok()) {
          std::move(w)(r.status());
          continue;
        }
        etcdserverpb::DefragmentResponse resp;
        FillHeaderImpl(resp.mutable_header(), true);
        std::move(w)(std::move(resp));
      }
      continue;
    }
    if (timer_clock_->Now() >= next_check) {
      if (lead_.load() == member_id_.load() && !Stopping()) CheckHashKV();
      next_check = timer_clock_->Now() + interval;
    }
  }
}

// ---- corruption checks ----

namespace {

// Asks every peer for its HashKV at `rev`, in parallel; waits at most
// `timeout` for all of them.
std::vector<PeerHash> PeerHashKVs(Transport* transport,
                                  const std::vector<std::pair<uint64_t, std::vector<std::string>>>& peers,
                                  int64_t rev, milliseconds timeout) {
  struct Shared {
    util::Mutex mu;
    util::CondVar cv;
    std::vector<PeerHash> out;
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

absl::Status EtcdServer::Impl::InitialCorruptCheck() {
  const std::string self = util::IdToHex(member_id_.load());
  lg_.Info("starting initial corruption check",
           {{"local-member-id", self}, {"timeout", DurationString(cfg_.request_timeout)}});
  auto local = store_->HashByRev(0);
  if (!local.ok()) {
    return absl::InternalError(
        absl::StrCat(self, " failed to fetch hash (", local.status().message(), ")"));
  }
  const milliseconds timeout = std::min(cfg_.request_timeout, milliseconds(5000));
  int mismatch = 0;
  for (const PeerHash& p :
       PeerHashKVs(transport_.get(), CurrentPeers(), local->current_revision, timeout)) {
    if (!p.resp.ok()) {
      lg_.Warn("cannot fetch hash from remote peer",
               {{"local-member-id", self},
                {"local-member-revision", local->current_revision},
                {"remote-peer-id", util::IdToHex(p.id)},
                {"remote-peer-endpoints", p.urls},
                {"error", p.resp.status().ToString()}});
      continue;
    }
    if (p.resp->hash() == local->hash) continue;
    const bool same_compact = p.resp->compact_revision() == local->compact_revision;
    lg_.Warn(same_compact ? "found different hash values from remote peer"
                          : "found different compact revision values from remote peer",
             {{"local-member-id", self},
              {"local-member-revision", local->current_revision},
              {"local-member-compact-revision", local->compact_revision},
              {"local-member-hash", uint64_t{local->hash}},
              {"remote-peer-id", util::IdToHex(p.id)},
              {"remote-peer-endpoints", p.urls},
              {"remote-peer-revision", p.resp->header().revision()},
              {"remote-peer-compact-revision", p.resp->compact_revision()},
              {"remote-peer-hash", uint64_t{p.resp->hash()}}});
    if (same_compact) ++mismatch;
  }
  if (mismatch > 0) {
    return absl::DataLossError(absl::StrCat(self, " found data inconsistency with peers"));
  }
  lg_.Info("initial corruption checking passed; no corruption", {{"local-member-id", self}});
  return absl::OkStatus();
}

void EtcdServer::Impl::CheckHashKV() {
  auto h1 = store_->HashByRev(0);
  if (!h1.ok()) {
    lg_.Warn("failed to check hash KV", {{"error", h1.status().ToString()}});
    return;
  }
  const milliseconds timeout = std::min(cfg_.request_timeout, milliseconds(5000));
  std::vector<PeerHash> peers =
      PeerHashKVs(transport_.get(), CurrentPeers(), h1->current_revision, timeout);
  // Still the leader with an up-to-date state: a linearizable read barrier.
  auto barrier = std::make_shared<std::promise<absl::Status>>();
  std::future<absl::Status> barrier_done = barrier->get_future();
  EnqueueLinearizableRead([barrier](absl::Status s) { barrier->set_value(std::move(s)); });
  // Real time: a backstop (std::future waits on the real clock); the read
  // path answers by its own deadline first.
  if (barrier_done.wait_for(cfg_.request_timeout) != std::future_status::ready) {
    lg_.Warn("failed to check hash KV", {{"error", "read barrier timed out"}});
    return;
  }
  if (absl::Status s = barrier_done.get(); !s.ok()) {
    lg_.Warn("failed to check hash KV", {{"error", s.ToString()}});
    return;
  }
  auto h2 = store_->HashByRev(0);
  if (!h2.ok()) {
    lg_.Warn("failed to check hash KV", {{"error", h2.status().ToString()}});
    return;
  }
  bool alarmed = false;
  auto raise = [&] {
    if (alarmed) return;
    alarmed = true;
    serverpb::InternalRaftRequest r;
    r.mutable_alarm()->set_memberid(0);  // etcd raises it for member 0
    r.mutable_alarm()->set_action(etcdserverpb::AlarmRequest::ACTIVATE);
    r.mutable_alarm()->set_alarm(etcdserverpb::CORRUPT);
    Propose(std::move(r), [](Outcome) {});
  };
  if (h2->hash != h1->hash && h2->current_revision == h1->current_revision &&
      h2->compact_revision == h1->compact_revision) {
    lg_.Warn("found hash mismatch", {{"revision-1", h1->current_revision},
                                     {"compact-revision-1", h1->compact_revision},
                                     {"hash-1", uint64_t{h1->hash}},
                                     {"revision-2", h2->current_revision},
                                     {"compact-revision-2", h2->compact_revision},
                                     {"hash-2", uint64_t{h2->hash}}});
    raise();
  }
  int checked = 0;
  for (const PeerHash& p : peers) {
    if (!p.resp.ok()) continue;
    ++checked;
    const auto& r = *p.resp;
    if (r.header().revision() > h2->current_revision) {
      lg_.Warn("revision from follower must be less than or equal to leader's",
               {{"leader-revision", h2->current_revision},
                {"follower-revision", r.header().revision()},
                {"follower-peer-id", util::IdToHex(p.id)}});
      raise();
    }
    if (r.compact_revision() > h2->compact_revision) {
      lg_.Warn("compact revision from follower must be less than or equal to leader's",
               {{"leader-compact-revision", h2->compact_revision},
                {"follower-compact-revision", r.compact_revision()},
                {"follower-peer-id", util::IdToHex(p.id)}});
      raise();
    }
    if (r.compact_revision() == h1->compact_revision && r.hash() != h1->hash) {
      lg_.Warn("same compact revision then hashes must match",
               {{"leader-compact-revision", h2->compact_revision},
                {"leader-hash", uint64_t{h1->hash}},
                {"follower-compact-revision", r.compact_revision()},
                {"follower-hash", uint64_t{r.hash()}},
                {"follower-peer-id", util::IdToHex(p.id)}});
      raise();
    }
  }
  lg_.Info("finished peer corruption check", {{"number-of-peers-checked", checked}});
}

}  // namespace cppetcd::server
