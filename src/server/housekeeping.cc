// EtcdServer housekeeping: proposal timeouts, physical compaction waits,
// publishing the member's attributes, lease expiry and auto compaction. Runs
// on the housekeeping thread; its proposals' callbacks run on whichever
// thread completes them (usually the apply thread).
#include "server_impl.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace cppetcd::server {
namespace {

// Period of the lease-expiry check (etcd revokes expired leases from its
// run loop every 500 ms).
constexpr milliseconds kLeaseExpiryInterval{500};
// Period of the background housekeeping (waiter timeouts, physical
// compaction completions, publish retries).
constexpr milliseconds kHousekeepingInterval{20};
// Expired leases proposed for revocation per round.
constexpr size_t kMaxLeaseRevokesPerRound = 500;

}  // namespace

// ---------------------------------------------------------------------------
// Housekeeping: timeouts, physical compactions, lease expiry, publish, auto
// compaction.

void EtcdServer::Impl::PostDelayed(milliseconds delay, absl::AnyInvocable<void()> fn) {
  {
    util::MutexLock l(&hk_mu_);
    if (!hk_stop_) {
      delayed_.push_back(Delayed{timer_clock_->Now() + delay, std::move(fn)});
      return;
    }
  }
  // Stopping: run now; every delayed task answers ErrStopped then.
  fn();
}

void EtcdServer::Impl::HousekeepingLoop() {
  while (true) {
    std::vector<absl::AnyInvocable<void()>> due;
    bool stop = false;
    {
      util::MutexLock l(&hk_mu_);
      // A pause after each round (a clock moved by hand during a round is
      // seen at its next move).
      if (!hk_stop_) {
        timer_clock_->WaitUntil(&hk_cv_, &hk_mu_, timer_clock_->Now() + kHousekeepingInterval);
      }
      stop = hk_stop_;
      const auto t = timer_clock_->Now();
      for (auto it = delayed_.begin(); it != delayed_.end();) {
        if (stop || it->at <= t) {
          due.push_back(std::move(it->fn));
          it = delayed_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& fn : due) fn();
    if (stop) break;
    const auto now = timer_clock_->Now();
    // Proposal timeouts (on the injected clock) and finished physical
    // compactions.
    waits_->ExpireDue(now);
    waits_->PollPhysical();

    if (!initial_advance_done_) MaybeAdvanceInitialTicks();
    if (!publish_done_.load() && !publish_in_flight_) Publish();
    if (now >= next_lease_check_) {
      next_lease_check_ = now + kLeaseExpiryInterval;
      CheckLeaseExpiry();
    }
    ProposeLeaseCheckpoints();
    RunAutoCompaction();
  }
}

void EtcdServer::Impl::MaybeAdvanceInitialTicks() {
  // etcd adjustTicks: once two or more peers are connected (within 5 s of
  // start), skip most of the first election timeout so a restarted cluster
  // elects a leader quickly; a single member fast-forwards in raft_loop.cc.
  constexpr milliseconds kWaitForPeers{5000};
  const auto now = timer_clock_->Now();
  if (started_at_ == SteadyClock::time_point{}) started_at_ = now;
  if (now - started_at_ > kWaitForPeers || lead_.load() != raft::kNone) {
    initial_advance_done_ = true;
    return;
  }
  size_t active = 0;
  for (const auto& [id, urls] : CurrentPeers()) {
    active += transport_->ActiveSince(id).has_value() ? 1 : 0;
  }
  if (active < 2) return;
  initial_advance_done_ = true;
  const int election_ticks = static_cast<int>(cfg_.election_timeout / cfg_.heartbeat_interval);
  const int forward = election_ticks - 2;
  if (forward <= 0) return;
  PostRaftTask([this, forward, election_ticks, active] {
    if (lead_.load() != raft::kNone) return;
    for (int i = 0; i < forward; ++i) node_->Tick();
    lg_.Info("initialized peer connections; fast-forwarding election ticks",
             {{"local-member-id", util::IdToHex(member_id_)},
              {"forward-ticks", forward},
              {"forward-duration", DurationString(cfg_.heartbeat_interval * forward)},
              {"election-ticks", election_ticks},
              {"election-timeout", DurationString(cfg_.election_timeout)},
              {"active-remote-members", static_cast<uint64_t>(active)}});
  });
}

void EtcdServer::Impl::Publish() {
  // etcd publish: the member's name and client URLs go through raft so every
  // member (and MemberList) sees them.
  publish_in_flight_ = true;
  serverpb::InternalRaftRequest r;
  auto* ma = r.mutable_member_attributes();
  ma->set_member_id(member_id_);
  ma->set_name(cfg_.name);
  for (const auto& u : cfg_.advertise_client_urls) ma->add_client_urls(u);
  Propose(std::move(r), [this](Outcome o) {
    if (!o.status.ok()) {
      if (!Stopping()) {
        lg_.Warn("failed to publish local member to cluster through raft",
                 {{"local-member-id", util::IdToHex(member_id_)}, {"error", o.status.ToString()}});
      }
      publish_in_flight_ = false;
      return;
    }
    lg_.Info("enabled capabilities for version", {{"cluster-version", kClusterVersion}});
    lg_.Info("published local member to cluster through raft",
             {{"local-member-id", util::IdToHex(member_id_)},
              {"local-member-attributes",
               absl::StrCat("{Name:", cfg_.name, " ClientURLs:[",
                            absl::StrJoin(cfg_.advertise_client_urls, " "), "]}")},
              {"request-path", absl::StrCat("/0/members/", util::IdToHex(member_id_), "/attributes")},
              {"cluster-id", util::IdToHex(cluster_id_)},
              {"publish-timeout", DurationString(cfg_.request_timeout)}});
    {
      util::MutexLock l(&ready_mu_);
      ready_ = true;
      ready_cv_.SignalAll();
    }
    publish_done_ = true;
    publish_in_flight_ = false;
  });
}

void EtcdServer::Impl::CheckLeaseExpiry() {
  if (!lessor_->IsPrimary()) return;
  for (int64_t id : lessor_->ExpiredLeases(kMaxLeaseRevokesPerRound)) {
    serverpb::InternalRaftRequest r;
    r.mutable_lease_revoke()->set_id(id);
    StampRoot(&r);  // the keys may be any user's (etcd revokes with root)
    Propose(std::move(r), [this, id](Outcome o) {
      absl::Status s = o.status;
      if (!s.ok() && !lease::IsLeaseNotFound(s) && !Stopping()) {
        lg_.Warn("failed to revoke lease", {{"lease-id", absl::StrFormat("%016x", id)},
                                            {"error", s.ToString()}});
      }
    });
  }
}

void EtcdServer::Impl::ProposeLeaseCheckpoints() {
  // etcd's lessor hands due checkpoints to the checkpointer every 500 ms and
  // waits for each entry; here they are looked for at every housekeeping
  // round (cheap: the top of a heap), with one entry in flight at a time.
  if (!cfg_.lease_checkpoint || checkpoint_in_flight_.load()) return;
  std::vector<lease::LeaseCheckpoint> due = lessor_->DueCheckpoints(lease::kMaxCheckpointBatchSize);
  if (due.empty()) return;
  serverpb::InternalRaftRequest r;
  auto* req = r.mutable_lease_checkpoint();
  for (const auto& c : due) {
    auto* cp = req->add_checkpoints();
    cp->set_id(c.id);
    cp->set_remaining_ttl(c.remaining_ttl_seconds);
  }
  lg_.Debug("checkpointing leases", {{"count", due.size()},
                                     {"first-lease-id", absl::StrFormat("%016x", due.front().id)},
                                     {"first-remaining-ttl", due.front().remaining_ttl_seconds}});
  checkpoint_in_flight_ = true;
  metrics_.lease_checkpoint_proposals.fetch_add(1, std::memory_order_relaxed);
  // A lost entry (leader change, timeout) is not retried: the lessor has
  // scheduled these leases again one interval later.
  Propose(std::move(r), [this](Outcome o) {
    if (!o.status.ok() && !Stopping()) {
      lg_.Warn("failed to checkpoint leases", {{"error", o.status.ToString()}});
    }
    checkpoint_in_flight_ = false;
  });
}

void EtcdServer::Impl::RunAutoCompaction() {
  if (!periodic_compactor_ && !revision_compactor_) return;
  const auto now = clock_->Now();
  if (compaction_in_flight_) {
    if (!compaction_done_flag_.load()) return;
    compaction_in_flight_ = false;
    const bool ok = compaction_ok_flag_.load();
    if (periodic_compactor_) periodic_compactor_->Completed(ok, now);
    if (revision_compactor_) revision_compactor_->Completed(ok);
  }
  // Only the leader compacts (etcd pauses the compactor on followers).
  if (!metrics_.is_leader.load()) return;
  std::optional<int64_t> due;
  if (periodic_compactor_) {
    due = periodic_compactor_->Poll(now, store_->Rev());
    if (!due.has_value()) return;
    lg_.Info("starting auto periodic compaction",
             {{"revision", *due}, {"compact-period", DurationString(compaction_period_)}});
  } else {
    due = revision_compactor_->Poll(now, store_->Rev());
    if (!due.has_value()) return;
    lg_.Info("starting auto revision compaction",
             {{"revision", *due}, {"revision-compaction-retention", compaction_revisions_}});
  }
  const int64_t rev = *due;
  compaction_in_flight_ = true;
  compaction_done_flag_ = false;
  serverpb::InternalRaftRequest r;
  r.mutable_compaction()->set_revision(rev);
  const bool periodic = compaction_period_.count() > 0;
  Propose(std::move(r), [this, rev, periodic](Outcome o) {
    absl::Status s = o.status;
    const bool ok = s.ok() || mvcc::IsCompacted(s);
    if (ok) {
      lg_.Info(periodic ? "completed auto periodic compaction" : "completed auto revision compaction",
               {{"revision", rev}});
    } else if (!Stopping()) {
      lg_.Warn(periodic ? "failed auto periodic compaction" : "failed auto revision compaction",
               {{"revision", rev}, {"error", s.ToString()}});
    }
    compaction_ok_flag_ = ok;
    compaction_done_flag_ = true;
  });
}

}  // namespace cppetcd::server
