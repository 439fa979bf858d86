// Auto-compaction planning (etcd 3.4 etcdserver/api/v3compactor), free of
// threads and clocks: the caller polls with the time and the current store
// revision, proposes the compaction it is told to, and reports the outcome.
//
// Periodic (--auto-compaction-mode=periodic, retention a duration): the
// revision is sampled every retry interval (min(period, 1h) / 10); once a
// whole period has passed since the start (later: min(period, 1h) since the
// last success) the store is compacted to the oldest sample, taken one period
// ago. Revision (--auto-compaction-mode=revision, retention N): every 5
// minutes, compact to current - N unless that was the last one compacted.
//
// Not thread-safe; one thread (the server's housekeeping loop) drives it.
#ifndef CPPETCD_SRC_SERVER_COMPACTOR_H_
#define CPPETCD_SRC_SERVER_COMPACTOR_H_

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>

namespace cppetcd::server {

class PeriodicCompactor {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  using Duration = std::chrono::milliseconds;

  // period > 0. `start_rev` is the first sample.
  PeriodicCompactor(Duration period, TimePoint now, int64_t start_rev)
      : period_(period),
        compact_interval_(std::min<Duration>(period, std::chrono::hours(1))),
        retry_(std::max<Duration>(compact_interval_ / 10, Duration(1))),
        retentions_(static_cast<size_t>(period / retry_) + 1),
        base_(period),
        last_success_(now),
        next_(now + retry_) {
    revs_.push_back(start_rev);
  }

  // The revision to compact to now, if a compaction is due.
  std::optional<int64_t> Poll(TimePoint now, int64_t current_rev) {
    if (in_flight_ || now < next_) return std::nullopt;
    next_ = now + retry_;
    std::optional<int64_t> due;
    if (now - last_success_ >= base_) {
      base_ = compact_interval_;
      due = revs_.front();
      in_flight_ = true;
    }
    revs_.push_back(current_rev);
    while (revs_.size() > retentions_) revs_.pop_front();
    return due;
  }

  // The outcome of the compaction Poll asked for (ok includes "already
  // compacted").
  void Completed(bool ok, TimePoint now) {
    in_flight_ = false;
    if (ok) last_success_ = now;
  }

  Duration retry_interval() const { return retry_; }

 private:
  const Duration period_;
  const Duration compact_interval_;
  const Duration retry_;
  const size_t retentions_;
  Duration base_;
  TimePoint last_success_;
  TimePoint next_;
  std::deque<int64_t> revs_;  // revs_.front(): the sample one period ago
  bool in_flight_ = false;
};

class RevisionCompactor {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  static constexpr std::chrono::minutes kInterval{5};

  RevisionCompactor(int64_t retention, TimePoint now)
      : retention_(retention), next_(now + kInterval) {}

  std::optional<int64_t> Poll(TimePoint now, int64_t current_rev) {
    if (in_flight_ || now < next_) return std::nullopt;
    next_ = now + kInterval;
    const int64_t rev = current_rev - retention_;
    if (rev <= 0 || rev == prev_) return std::nullopt;
    in_flight_ = true;
    pending_ = rev;
    return rev;
  }

  void Completed(bool ok) {
    in_flight_ = false;
    if (ok) prev_ = pending_;
  }

 private:
  const int64_t retention_;
  TimePoint next_;
  int64_t prev_ = 0;
  int64_t pending_ = 0;
  bool in_flight_ = false;
};

}  // namespace cppetcd::server

#endif  // CPPETCD_SRC_SERVER_COMPACTOR_H_
