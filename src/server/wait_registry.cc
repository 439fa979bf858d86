#include "wait_registry.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "cppetcd/server/errors.h"

namespace cppetcd::server {

WaitRegistry::WaitRegistry(Options o) : opts_(std::move(o)) {}

absl::Status WaitRegistry::Register(uint64_t id, Waiter w, Bound bound) {
  absl::Status refused;
  {
    util::MutexLock l(&mu_);
    if (stopped_) {
      refused = ErrStopped();
    } else if (waiters_.contains(id)) {
      refused = absl::InternalError(absl::StrCat("duplicate proposal waiter for request id ", id));
    } else if (bound == Bound::kBounded && waiters_.size() >= opts_.max_waiters) {
      // Every waiter holds a callback (and through it the caller's response
      // buffer) until its entry applies: bounded, so that a flood while raft
      // cannot commit (no leader, slow disk) fails fast instead of growing.
      refused = ErrTooManyRequests();
    } else {
      const TimePoint now = opts_.clock->Now();
      waiters_.emplace(id, Entry{std::move(w), now + opts_.timeout, now});
      if (opts_.metrics != nullptr) {
        const auto held = static_cast<int64_t>(waiters_.size());
        if (held > opts_.metrics->proposals_pending_peak.load(std::memory_order_relaxed)) {
          opts_.metrics->proposals_pending_peak.store(held, std::memory_order_relaxed);
        }
        opts_.metrics->proposals_pending.fetch_add(1, std::memory_order_relaxed);
      }
      return absl::OkStatus();
    }
  }
  std::move(w)(Outcome{refused, {}, std::nullopt});
  return refused;
}

bool WaitRegistry::Complete(uint64_t id, Outcome o) {
  Entry e;
  {
    util::MutexLock l(&mu_);
    auto it = waiters_.find(id);
    if (it == waiters_.end()) return false;
    e = std::move(it->second);
    waiters_.erase(it);
  }
  if (opts_.metrics != nullptr) {
    opts_.metrics->proposals_pending.fetch_sub(1, std::memory_order_relaxed);
    if (!o.status.ok()) opts_.metrics->proposals_failed.fetch_add(1, std::memory_order_relaxed);
    if (o.revision != 0) {
      opts_.metrics->stage_propose_to_reply.Observe(
          std::chrono::duration<double>(opts_.clock->Now() - e.proposed).count());
    }
  }
  std::move(e.fn)(std::move(o));
  return true;
}

size_t WaitRegistry::ExpireDue(TimePoint now) {
  std::vector<Waiter> expired;
  {
    util::MutexLock l(&mu_);
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->second.deadline <= now) {
        expired.push_back(std::move(it->second.fn));
        waiters_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  for (auto& fn : expired) {
    if (opts_.metrics != nullptr) {
      opts_.metrics->proposals_pending.fetch_sub(1, std::memory_order_relaxed);
      opts_.metrics->proposals_failed.fetch_add(1, std::memory_order_relaxed);
    }
    std::move(fn)(Outcome{ErrTimeout(), {}, std::nullopt});
  }
  return expired.size();
}

void WaitRegistry::FailAll() {
  absl::flat_hash_map<uint64_t, Entry> waiters;
  std::vector<PhysicalWait> physical;
  {
    util::MutexLock l(&mu_);
    stopped_ = true;
    waiters.swap(waiters_);
    physical.swap(physical_);
  }
  for (auto& [id, e] : waiters) {
    if (opts_.metrics != nullptr) {
      opts_.metrics->proposals_pending.fetch_sub(1, std::memory_order_relaxed);
    }
    std::move(e.fn)(Outcome{ErrStopped(), {}, std::nullopt});
  }
  for (auto& p : physical) std::move(p.fn)(ErrStopped());
}

size_t WaitRegistry::size() const {
  util::MutexLock l(&mu_);
  return waiters_.size();
}

void WaitRegistry::AddPhysicalWait(std::shared_future<absl::Status> done, PhysicalFn fn) {
  {
    util::MutexLock l(&mu_);
    if (!stopped_) {
      physical_.push_back(PhysicalWait{std::move(done), std::move(fn)});
      return;
    }
  }
  std::move(fn)(ErrStopped());
}

size_t WaitRegistry::PollPhysical() {
  std::vector<PhysicalWait> finished;
  {
    util::MutexLock l(&mu_);
    for (auto it = physical_.begin(); it != physical_.end();) {
      if (it->future.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
        finished.push_back(std::move(*it));
        it = physical_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& p : finished) std::move(p.fn)(p.future.get());
  return finished.size();
}

}  // namespace cppetcd::server
