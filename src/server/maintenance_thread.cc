#include "maintenance_thread.h"

#include <utility>

#include "cppetcd/server/errors.h"
#include "absl/strings/str_cat.h"
#include "cppetcd/util/log.h"

namespace cppetcd::server {

namespace {

std::string DurationText(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
  return std::to_string(d.count()) + "ms";
}

}  // namespace

Maintenance::Maintenance(Options opts, MaintenanceHost* host, util::Logger logger)
    : opts_(opts), host_(host), lg_(std::move(logger)) {}

Maintenance::~Maintenance() { Stop(); }

absl::Status Maintenance::Start() {
  if (opts_.initial_corrupt_check) {
    if (absl::Status s = InitialCorruptCheck(); !s.ok()) return s;
  }
  if (opts_.corrupt_check_time.count() > 0) {
    lg_.Info("enabled corruption checking",
             {{"local-member-id", util::IdToHex(host_->MemberId())},
              {"interval", DurationText(opts_.corrupt_check_time)}});
  }
  util::MutexLock l(&mu_);
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void Maintenance::Stop() {
  {
    util::MutexLock l(&mu_);
    stop_ = true;
    cv_.SignalAll();
  }
  if (thread_.joinable()) thread_.join();
  std::vector<Done<etcdserverpb::DefragmentResponse>> waiters;
  {
    util::MutexLock l(&mu_);
    waiters.swap(defrag_waiters_);
  }
  for (auto& w : waiters) std::move(w)(ErrStopped());
}

void Maintenance::Defragment(Done<etcdserverpb::DefragmentResponse> done) {
  absl::Status refused = ErrStopped();
  {
    util::MutexLock l(&mu_);
    if (!stop_ && thread_.joinable()) {
      if (defrag_waiters_.size() < opts_.max_queued_defragmentations) {
        defrag_waiters_.push_back(std::move(done));
        cv_.SignalAll();
        return;
      }
      refused = ErrTooManyRequests();
    }
  }
  std::move(done)(std::move(refused));
}

void Maintenance::Loop() {
  using TimePoint = util::Clock::TimePoint;
  const std::chrono::milliseconds interval = opts_.corrupt_check_time;
  util::Clock* clock = opts_.timer_clock;
  TimePoint next_check = interval.count() > 0 ? clock->Now() + interval : TimePoint::max();
  while (true) {
    std::vector<Done<etcdserverpb::DefragmentResponse>> waiters;
    {
      util::MutexLock l(&mu_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || !defrag_waiters_.empty();
      };
      if (next_check == TimePoint::max()) {
        cv_.Wait(&mu_, woken);
      } else {
        clock->WaitUntil(&cv_, &mu_, next_check, woken);
      }
      if (stop_) return;
      waiters.swap(defrag_waiters_);
    }
    if (!waiters.empty()) {
      RunDefragmentations(std::move(waiters));
      continue;
    }
    if (clock->Now() >= next_check) {
      if (host_->IsLeader()) CheckHashKV();
      next_check = clock->Now() + interval;
    }
  }
}

void Maintenance::RunDefragmentations(
    std::vector<Done<etcdserverpb::DefragmentResponse>> waiters) {
  const absl::Status r = host_->DefragmentBackend();
  for (auto& w : waiters) {
    if (!r.ok()) {
      std::move(w)(r);
      continue;
    }
    etcdserverpb::DefragmentResponse resp;
    host_->FillHeader(resp.mutable_header());
    std::move(w)(std::move(resp));
  }
}

// ---- corruption checks ----

absl::Status Maintenance::InitialCorruptCheck() {
  const std::string self = util::IdToHex(host_->MemberId());
  lg_.Info("starting initial corruption check",
           {{"local-member-id", self}, {"timeout", DurationText(opts_.request_timeout)}});
  auto local = host_->LocalHashKV();
  if (!local.ok()) {
    return absl::InternalError(
        absl::StrCat(self, " failed to fetch hash (", local.status().message(), ")"));
  }
  int mismatch = 0;
  for (const PeerHashKV& p : host_->PeerHashKVs(local->current_revision)) {
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

void Maintenance::CheckHashKV() {
  auto h1 = host_->LocalHashKV();
  if (!h1.ok()) {
    lg_.Warn("failed to check hash KV", {{"error", h1.status().ToString()}});
    return;
  }
  std::vector<PeerHashKV> peers = host_->PeerHashKVs(h1->current_revision);
  // Still the leader with an up-to-date state.
  if (absl::Status s = host_->ReadBarrier(); !s.ok()) {
    lg_.Warn("failed to check hash KV", {{"error", s.ToString()}});
    return;
  }
  auto h2 = host_->LocalHashKV();
  if (!h2.ok()) {
    lg_.Warn("failed to check hash KV", {{"error", h2.status().ToString()}});
    return;
  }
  bool alarmed = false;
  auto raise = [&] {
    if (alarmed) return;
    alarmed = true;
    host_->RaiseCorruptAlarm();
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
  for (const PeerHashKV& p : peers) {
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
