// EtcdServer and its peers: the PeerHandler side (raft messages in, calls
// other members forward to the leader), routing of lease keep-alives and
// TTL queries to the leader, snapshot sending, leadership transfer
// (MoveLeader and on graceful stop). Any thread unless noted.
#include "absl/strings/str_format.h"
#include "cppetcd/server/peer_check.h"
#include "server_impl.h"

namespace cppetcd::server {
namespace {

// Pause between attempts while no leader is known or the leader refuses
// because it just lost leadership.
constexpr milliseconds kRouteRetry{50};
// Timeout of one forwarded call.
constexpr milliseconds kForwardTimeout{2000};

bool Retryable(const absl::Status& s) {
  return IsNotLeader(s) || s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kDeadlineExceeded;
}

// What is left of `deadline` on `clock`, at least 1 ms: the timeout handed
// to a forwarded call (gRPC then counts it in real time).
milliseconds Remaining(const util::Clock& clock, SteadyClock::time_point deadline) {
  auto d = std::chrono::duration_cast<milliseconds>(deadline - clock.Now());
  return std::max(d, milliseconds(1));
}

}  // namespace

// ---------------------------------------------------------------------------
// PeerHandler.

absl::Status EtcdServer::Impl::Process(raftpb::Message m) {
  if (membership_.IsRemoved(m.from())) return ErrMemberRemoved();
  // Known: a member applied here, or (before the bootstrap conf changes are
  // applied) one of the initial cluster.
  auto known = [this](uint64_t id) { return membership_.IsKnown(id); };
  if (absl::Status s = CheckPeerMessage(m, member_id_.load(), known); !s.ok()) return s;
  util::MutexLock l(&raft_mu_);
  if (raft_stop_) return ErrStopped();
  incoming_.push_back(std::move(m));
  raft_cv_.Signal();
  return absl::OkStatus();
}

std::string EtcdServer::Impl::SnapshotDbPath(uint64_t snapshot_index) const {
  return absl::StrFormat("%s/%016x.snap.db", snap_dir_, snapshot_index);
}

void EtcdServer::Impl::OnLocalMemberRemoved() {
  RequestSelfStop("the member has been permanently removed from the cluster");
}

void EtcdServer::Impl::RequestSelfStop(std::string_view why) {
  if (stop_requested_.exchange(true)) return;
  lg_.Warn(std::string(why), {{"local-member-id", util::IdToHex(member_id_)}});
  lg_.Warn("the data-dir used by this member must be removed",
           {{"data-dir", cfg_.data_dir}});
}

void EtcdServer::Impl::LeaseRenew(int64_t lease_id, PeerDone<int64_t> done) {
  if (Stopping()) return std::move(done)(ErrStopped());
  if (!lessor_->IsPrimary()) return std::move(done)(ErrNotLeader());
  RenewOnPrimary(lease_id, std::move(done));
}

void EtcdServer::Impl::RenewOnPrimary(int64_t id,
                                      absl::AnyInvocable<void(absl::StatusOr<int64_t>) &&> done) {
  if (!lessor_->NeedsCheckpointReset(id)) return std::move(done)(lessor_->Renew(id));
  // etcd Renew: the checkpointed remaining TTL is cleared on every member
  // (a raft entry {id, 0}; at most one per lease per checkpoint) before the
  // renewal, so that a later leader does not cut the renewed lease short.
  // As etcd, the renewal follows whatever the entry's outcome.
  serverpb::InternalRaftRequest r;
  auto* cp = r.mutable_lease_checkpoint()->add_checkpoints();
  cp->set_id(id);
  cp->set_remaining_ttl(0);
  Propose(std::move(r), [this, id, done = std::move(done)](Outcome o) mutable {
    if (!o.status.ok() && Stopping()) return std::move(done)(ErrStopped());
    if (!lessor_->IsPrimary()) return std::move(done)(ErrNotLeader());
    std::move(done)(lessor_->Renew(id));
  });
}

void EtcdServer::Impl::LeaseTimeToLive(const etcdserverpb::LeaseTimeToLiveRequest& req,
                                       PeerDone<etcdserverpb::LeaseTimeToLiveResponse> done) {
  if (Stopping()) return std::move(done)(ErrStopped());
  if (!lessor_->IsPrimary()) return std::move(done)(ErrNotLeader());
  std::move(done)(LocalTimeToLive(req));
}

void EtcdServer::Impl::MemberPromote(const etcdserverpb::MemberPromoteRequest& req,
                                     PeerDone<etcdserverpb::MemberPromoteResponse> done) {
  if (Stopping()) return std::move(done)(ErrStopped());
  if (lead_.load() != member_id_.load()) return std::move(done)(ErrNotLeader());
  LocalPromote(req, [done = std::move(done)](absl::StatusOr<etcdserverpb::MemberPromoteResponse> r) mutable {
    std::move(done)(std::move(r));
  });
}

serverpb::ClusterInfo EtcdServer::Impl::ClusterInfo() const {
  serverpb::ClusterInfo info;
  info.set_cluster_id(cluster_id_.load());
  info.set_member_id(member_id_.load());
  membership_.FillClusterInfo(&info);
  return info;
}

// ---------------------------------------------------------------------------
// Routing to the leader (etcd 3.4 forwards keep-alives and TTL queries to the
// leader over peer HTTP; its lessor alone knows the remaining TTLs).

void EtcdServer::Impl::RouteLeaseRenew(int64_t id, SteadyClock::time_point deadline,
                                       Done<int64_t> done) {
  if (Stopping()) return std::move(done)(ErrStopped());
  auto retry = [this, id, deadline](Done<int64_t> d) {
    if (timer_clock_->Now() + kRouteRetry >= deadline) return std::move(d)(ErrTimeout());
    PostDelayed(kRouteRetry, [this, id, deadline, d = std::move(d)]() mutable {
      RouteLeaseRenew(id, deadline, std::move(d));
    });
  };
  if (lessor_->IsPrimary()) {
    // Leadership may go while a checkpoint reset is in raft: route again.
    return RenewOnPrimary(id, [retry, done = std::move(done)](absl::StatusOr<int64_t> r) mutable {
      if (!r.ok() && IsNotLeader(r.status())) return retry(std::move(done));
      std::move(done)(std::move(r));
    });
  }
  const uint64_t lead = lead_.load();
  if (lead == raft::kNone || lead == member_id_.load()) return retry(std::move(done));
  transport_->LeaseRenew(
      lead, id, std::min(Remaining(*timer_clock_, deadline), kForwardTimeout),
      [retry = std::move(retry), done = std::move(done)](absl::StatusOr<int64_t> r) mutable {
        if (!r.ok() && Retryable(r.status())) return retry(std::move(done));
        std::move(done)(std::move(r));
      });
}

etcdserverpb::LeaseTimeToLiveResponse EtcdServer::Impl::LocalTimeToLive(
    const etcdserverpb::LeaseTimeToLiveRequest& req) {
  etcdserverpb::LeaseTimeToLiveResponse resp;
  FillHeaderImpl(resp.mutable_header(), true);
  resp.set_id(req.id());
  auto info = lessor_->Lookup(req.id());
  if (!info.has_value()) {
    resp.set_ttl(-1);
    return resp;
  }
  resp.set_ttl(info->remaining_seconds);
  resp.set_grantedttl(info->ttl_seconds);
  if (req.keys()) {
    for (const auto& k : info->keys) resp.add_keys(k);
  }
  return resp;
}

void EtcdServer::Impl::RouteLeaseTimeToLive(etcdserverpb::LeaseTimeToLiveRequest req,
                                            SteadyClock::time_point deadline,
                                            Done<etcdserverpb::LeaseTimeToLiveResponse> done) {
  if (Stopping()) return std::move(done)(ErrStopped());
  if (lessor_->IsPrimary()) return std::move(done)(LocalTimeToLive(req));
  const uint64_t lead = lead_.load();
  auto retry = [this, req, deadline](Done<etcdserverpb::LeaseTimeToLiveResponse> d) {
    if (timer_clock_->Now() + kRouteRetry >= deadline) return std::move(d)(ErrTimeout());
    PostDelayed(kRouteRetry, [this, req, deadline, d = std::move(d)]() mutable {
      RouteLeaseTimeToLive(req, deadline, std::move(d));
    });
  };
  if (lead == raft::kNone || lead == member_id_.load()) return retry(std::move(done));
  transport_->LeaseTimeToLive(
      lead, req, std::min(Remaining(*timer_clock_, deadline), kForwardTimeout),
      [this, retry = std::move(retry),
       done = std::move(done)](absl::StatusOr<etcdserverpb::LeaseTimeToLiveResponse> r) mutable {
        if (!r.ok() && Retryable(r.status())) return retry(std::move(done));
        if (r.ok()) FillHeaderImpl(r->mutable_header(), true);  // this member's header
        std::move(done)(std::move(r));
      });
}

void EtcdServer::Impl::RoutePromote(etcdserverpb::MemberPromoteRequest req,
                                    SteadyClock::time_point deadline,
                                    Done<etcdserverpb::MemberPromoteResponse> done) {
  if (Stopping()) return std::move(done)(ErrStopped());
  const uint64_t lead = lead_.load();
  if (lead == member_id_.load()) return LocalPromote(req, std::move(done));
  auto retry = [this, req, deadline](Done<etcdserverpb::MemberPromoteResponse> d) {
    if (timer_clock_->Now() + kRouteRetry >= deadline) return std::move(d)(ErrTimeout());
    PostDelayed(kRouteRetry, [this, req, deadline, d = std::move(d)]() mutable {
      RoutePromote(req, deadline, std::move(d));
    });
  };
  if (lead == raft::kNone) return retry(std::move(done));
  transport_->MemberPromote(
      lead, req, std::min(Remaining(*timer_clock_, deadline), kForwardTimeout),
      [this, retry = std::move(retry),
       done = std::move(done)](absl::StatusOr<etcdserverpb::MemberPromoteResponse> r) mutable {
        if (!r.ok() && Retryable(r.status())) return retry(std::move(done));
        if (r.ok()) {
          // This member's header, without a revision (etcd's cluster API).
          r->clear_header();
          FillHeaderImpl(r->mutable_header(), /*set_revision=*/false);
        }
        std::move(done)(std::move(r));
      });
}

// ---------------------------------------------------------------------------
// Raft status from other threads.

std::optional<raft::Status> EtcdServer::Impl::RaftStatus(milliseconds timeout) {
  // A task the raft loop drops at shutdown must not leave the caller with a
  // broken promise: the result slot is shared and stays empty then.
  struct Slot {
    util::Mutex mu;
    util::CondVar cv;
    std::optional<raft::Status> status;
  };
  auto slot = std::make_shared<Slot>();
  if (!PostRaftTask([this, slot] {
        raft::Status st = node_->GetStatus();
        util::MutexLock l(&slot->mu);
        slot->status = std::move(st);
        slot->cv.SignalAll();
      })) {
    return std::nullopt;
  }
  util::MutexLock l(&slot->mu);
  timer_clock_->WaitUntil(&slot->cv, &slot->mu, timer_clock_->Now() + timeout,
                          [&] { return slot->status.has_value() || Stopping(); });
  return std::move(slot->status);
}

// ---------------------------------------------------------------------------
// Leadership transfer.

void EtcdServer::Impl::MoveLeader(uint64_t target, Done<etcdserverpb::MoveLeaderResponse> done) {
  const uint64_t self = member_id_.load();
  if (lead_.load() != self) return std::move(done)(ErrNotLeader());
  if (target == self) {
    etcdserverpb::MoveLeaderResponse resp;
    FillHeaderImpl(resp.mutable_header(), true);
    return std::move(done)(std::move(resp));
  }
  if (auto t = membership_.Get(target); !t.has_value() || t->is_learner()) {
    return std::move(done)(ErrBadLeaderTransferee());
  }
  lg_.Info("leadership transfer starting", {{"local-member-id", util::IdToHex(self)},
                                            {"current-leader-member-id", util::IdToHex(self)},
                                            {"transferee-member-id", util::IdToHex(target)}});
  PostRaftTask([this, target] { node_->TransferLeader(target); });
  const auto start = timer_clock_->Now();
  PollMoveLeader(target, start, start + cfg_.request_timeout, std::move(done));
}

void EtcdServer::Impl::PollMoveLeader(uint64_t target, SteadyClock::time_point start,
                                      SteadyClock::time_point deadline,
                                      Done<etcdserverpb::MoveLeaderResponse> done) {
  if (lead_.load() == target) {
    lg_.Info("leadership transfer finished",
             {{"local-member-id", util::IdToHex(member_id_)},
              {"old-leader-member-id", util::IdToHex(member_id_)},
              {"new-leader-member-id", util::IdToHex(target)},
              {"took", DurationString(std::chrono::duration_cast<milliseconds>(
                           timer_clock_->Now() - start))}});
    etcdserverpb::MoveLeaderResponse resp;
    FillHeaderImpl(resp.mutable_header(), true);
    return std::move(done)(std::move(resp));
  }
  if (Stopping()) return std::move(done)(ErrStopped());
  if (timer_clock_->Now() >= deadline) return std::move(done)(ErrTimeoutLeaderTransfer());
  PostDelayed(milliseconds(10), [this, target, start, deadline, done = std::move(done)]() mutable {
    PollMoveLeader(target, start, deadline, std::move(done));
  });
}

void EtcdServer::Impl::TransferLeadershipOnStop() {
  const uint64_t self = member_id_.load();
  if (lead_.load() != self || node_ == nullptr) return;
  auto st = RaftStatus(milliseconds(500));
  if (!st.has_value()) return;
  if (st->conf_state.voters_size() <= 1) {
    lg_.Info("skipped leadership transfer for single voting member cluster",
             {{"local-member-id", util::IdToHex(self)},
              {"current-leader-member-id", util::IdToHex(self)}});
    return;
  }
  // The most caught-up voter that is connected (etcd picks the longest
  // connected one).
  uint64_t best = raft::kNone, best_match = 0;
  for (uint64_t id : st->conf_state.voters()) {
    if (id == self) continue;
    auto it = st->progress.find(id);
    if (it == st->progress.end() || !transport_->ActiveSince(id).has_value()) continue;
    if (best == raft::kNone || it->second.match > best_match) {
      best = id;
      best_match = it->second.match;
    }
  }
  if (best == raft::kNone) return;
  lg_.Info("leadership transfer starting", {{"local-member-id", util::IdToHex(self)},
                                            {"current-leader-member-id", util::IdToHex(self)},
                                            {"transferee-member-id", util::IdToHex(best)}});
  PostRaftTask([this, best] { node_->TransferLeader(best); });
  const auto start = timer_clock_->Now();
  const auto deadline = start + std::max(cfg_.election_timeout * 2, milliseconds(1000));
  while (timer_clock_->Now() < deadline && lead_.load() != best) {
    timer_clock_->SleepFor(milliseconds(5));
  }
  if (lead_.load() == best) {
    lg_.Info("leadership transfer finished",
             {{"local-member-id", util::IdToHex(self)},
              {"old-leader-member-id", util::IdToHex(self)},
              {"new-leader-member-id", util::IdToHex(best)},
              {"took", DurationString(std::chrono::duration_cast<milliseconds>(
                           timer_clock_->Now() - start))}});
  } else {
    lg_.Warn("leadership transfer failed", {{"local-member-id", util::IdToHex(self)},
                                            {"transferee-member-id", util::IdToHex(best)}});
  }
}

// ---------------------------------------------------------------------------
// Snapshot sending (leader): a consistent copy of the backend is made off
// the raft thread, then streamed by the transport; raft learns the outcome
// through ReportSnapshot.

void EtcdServer::Impl::SendSnapshotAsync(raftpb::Message m) {
  util::MutexLock l(&senders_mu_);
  if (Stopping()) return;
  snapshot_senders_.emplace_back([this, m = std::move(m)]() mutable {
    const uint64_t to = m.to();
    const uint64_t index = m.snapshot().metadata().index();
    auto report = [this, to](bool ok) {
      PostRaftTask([this, to, ok] {
        node_->ReportSnapshot(to, ok ? raft::SnapshotStatus::kFinish
                                     : raft::SnapshotStatus::kFailure);
      });
    };
    const std::string path =
        absl::StrFormat("%s/%016x-%016x.snap.db.send", snap_dir_, index, to);
    auto file = env_->NewWritableFile(path);
    if (!file.ok()) {
      lg_.Warn("failed to create snapshot file to send",
               {{"path", path}, {"error", file.status().ToString()}});
      return report(false);
    }
    absl::Status s = backend_->CopyTo(file->get());
    if (absl::Status c = (*file)->Close(); s.ok()) s = c;
    file->reset();
    if (!s.ok()) {
      lg_.Warn("failed to copy backend for snapshot", {{"error", s.ToString()}});
      env_->RemoveFile(path).IgnoreError();
      return report(false);
    }
    // etcd sends a "merged" snapshot: the metadata describes the copied
    // backend (its consistent index, that entry's term, the membership it
    // holds), not the older raft snapshot, so a member added after that
    // snapshot finds itself in the ConfState.
    if (auto merged = DescribeBackendCopy(path); merged.ok()) {
      *m.mutable_snapshot()->mutable_metadata() = *merged;
    } else {
      lg_.Warn("failed to read the copied backend; sending the raft snapshot's metadata",
               {{"error", merged.status().ToString()}});
    }
    lg_.Info("sending database snapshot",
             {{"remote-peer-id", util::IdToHex(to)},
              {"snapshot-index", m.snapshot().metadata().index()},
              {"raft-snapshot-index", index}});
    transport_->SendSnapshot(std::move(m), path, [this, to, index, report](absl::Status st) {
      if (st.ok()) {
        lg_.Info("sent database snapshot", {{"remote-peer-id", util::IdToHex(to)},
                                            {"snapshot-index", index}});
      } else {
        lg_.Warn("failed to send database snapshot", {{"remote-peer-id", util::IdToHex(to)},
                                                      {"error", st.ToString()}});
      }
      report(st.ok());
    });
  });
}

absl::StatusOr<raftpb::SnapshotMetadata> EtcdServer::Impl::DescribeBackendCopy(
    const std::string& path) {
  raftpb::SnapshotMetadata md;
  {
    storage::BackendOptions opts;
    opts.logger = lg_.WithComponent("backend");
    opts.env = env_;
    if (auto size = env_->FileSize(path); size.ok()) {
      opts.map_size_bytes = std::max<uint64_t>(opts.map_size_bytes, *size + (uint64_t{64} << 20));
    }
    auto be = storage::Backend::Open(path, opts);
    if (!be.ok()) return be.status();
    auto rtx = (*be)->BeginRead();
    if (!rtx.ok()) return rtx.status();
    auto ci = (*rtx)->Get(storage::kMetaBucket, kConsistentIndexKey);
    if (!ci.ok()) return ci.status();
    if (!ci->has_value() || (*ci)->size() != 8) {
      return absl::DataLossError("backend copy has no consistent index");
    }
    md.set_index(storage::GetBigEndian64((*ci)->data()));
    absl::Status bad;
    auto s = (*rtx)->Scan(storage::kMembersBucket, "", "", [&](std::string_view, std::string_view v) {
      serverpb::MemberRecord m;
      if (!m.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
        bad = absl::DataLossError("undecodable member record");
        return false;
      }
      if (m.is_learner()) {
        md.mutable_conf_state()->add_learners(m.id());
      } else {
        md.mutable_conf_state()->add_voters(m.id());
      }
      return true;
    });
    if (!s.ok()) return s;
    if (!bad.ok()) return bad;
  }
  (void)env_->RemoveFile(path + "-lock");
  auto term = raft_storage_->Term(md.index());
  if (!term.ok()) return term.status();
  md.set_term(*term);
  return md;
}

void EtcdServer::Impl::SyncTransportPeers() {
  std::set<uint64_t> want;
  for (const auto& [id, urls] : CurrentPeers()) {
    want.insert(id);
    transport_->AddPeer(id, urls);
  }
  for (uint64_t id : transport_peers_) {
    if (!want.contains(id)) transport_->RemovePeer(id);
  }
  transport_peers_ = std::move(want);
}

}  // namespace cppetcd::server
