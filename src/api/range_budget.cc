#include "cppetcd/api/range_budget.h"

#include <algorithm>
#include <utility>

namespace cppetcd::api {

RangeBudget::RangeBudget(uint64_t limit_bytes, size_t max_queued, uint64_t max_queued_held_bytes)
    : limit_bytes_(std::max<uint64_t>(limit_bytes, 1)),
      max_queued_(std::max<size_t>(max_queued, 1)),
      max_queued_held_bytes_(max_queued_held_bytes) {
  stats_.limit_bytes = limit_bytes_;
  thread_ = std::thread([this] { Run(); });
}

RangeBudget::~RangeBudget() {
  {
    util::MutexLock l(&mu_);
    stop_ = true;
    cv_.SignalAll();
  }
  // Never the budget's own thread: its entries run while their gRPC server
  // is up, and the server's owner holds the budget until it has shut down.
  thread_.join();
}

RangeBudget::Ticket RangeBudget::NewTicket() {
  util::MutexLock l(&mu_);
  return next_ticket_++;
}

bool RangeBudget::FitsLocked(uint64_t bytes) const {
  return stats_.in_flight == 0 || stats_.in_flight_bytes + bytes <= limit_bytes_;
}

void RangeBudget::AdmitLocked(uint64_t bytes) {
  stats_.in_flight_bytes += bytes;
  ++stats_.in_flight;
  ++stats_.admitted_total;
  if (stats_.in_flight >= 2) {
    stats_.peak_shared_in_flight_bytes =
        std::max(stats_.peak_shared_in_flight_bytes, stats_.in_flight_bytes);
  }
}

RangeBudget::Admission RangeBudget::Acquire(Ticket ticket, uint64_t bytes,
                                            OnAdmitted on_admitted, uint64_t held_bytes) {
  OnAdmitted refused;  // destroyed after the lock is released
  util::MutexLock l(&mu_);
  // FIFO: nothing overtakes a waiting entry, however small.
  if (queue_.empty() && FitsLocked(bytes)) {
    AdmitLocked(bytes);
    return Admission::kAdmitted;
  }
  if (!queue_.empty() && (queue_.size() >= max_queued_ ||
                          stats_.queued_held_bytes + held_bytes > max_queued_held_bytes_)) {
    ++stats_.refused_total;
    refused = std::move(on_admitted);
    l.Unlock();
    return Admission::kRefused;
  }
  queue_.push_back(Entry{ticket, bytes, held_bytes, std::move(on_admitted)});
  stats_.queued_held_bytes += held_bytes;
  ++stats_.queued_total;
  stats_.queued = queue_.size();
  stats_.peak_queued = std::max(stats_.peak_queued, stats_.queued);
  return Admission::kQueued;
}

bool RangeBudget::Cancel(Ticket ticket) {
  Entry removed;  // destroyed after the lock is released
  util::MutexLock l(&mu_);
  auto it = std::find_if(queue_.begin(), queue_.end(),
                         [ticket](const Entry& e) { return e.ticket == ticket; });
  if (it == queue_.end()) return false;
  const bool was_head = it == queue_.begin();
  removed = std::move(*it);
  queue_.erase(it);
  stats_.queued_held_bytes -= removed.held_bytes;
  stats_.queued = queue_.size();
  // The head held the others back: they may fit now.
  if (was_head) AdmitQueuedLocked();
  l.Unlock();
  return true;
}

void RangeBudget::Adjust(uint64_t from, uint64_t to) {
  util::MutexLock l(&mu_);
  stats_.in_flight_bytes = stats_.in_flight_bytes - std::min(from, stats_.in_flight_bytes) + to;
  if (stats_.in_flight >= 2) {
    stats_.peak_shared_in_flight_bytes =
        std::max(stats_.peak_shared_in_flight_bytes, stats_.in_flight_bytes);
  }
  if (to < from) AdmitQueuedLocked();
}

void RangeBudget::Release(uint64_t bytes) {
  util::MutexLock l(&mu_);
  stats_.in_flight_bytes -= std::min(bytes, stats_.in_flight_bytes);
  if (stats_.in_flight > 0) --stats_.in_flight;
  AdmitQueuedLocked();
}

void RangeBudget::AdmitQueuedLocked() {
  bool admitted = false;
  while (!queue_.empty() && FitsLocked(queue_.front().bytes)) {
    AdmitLocked(queue_.front().bytes);
    stats_.queued_held_bytes -= queue_.front().held_bytes;
    ready_.push_back(std::move(queue_.front()));
    queue_.pop_front();
    admitted = true;
  }
  stats_.queued = queue_.size();
  if (admitted) cv_.SignalAll();
}

RangeBudget::Stats RangeBudget::GetStats() const {
  util::MutexLock l(&mu_);
  return stats_;
}

void RangeBudget::Run() {
  util::MutexLock l(&mu_);
  while (true) {
    cv_.Wait(&mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !ready_.empty(); });
    if (ready_.empty()) return;  // stopping
    std::vector<Entry> batch;
    batch.swap(ready_);
    l.Unlock();
    for (Entry& e : batch) std::move(e.on_admitted)();
    batch.clear();
    l.Lock();
  }
}

}  // namespace cppetcd::api
