// Helpers for watch tests: a stream reader that waits on notify() under a
// deadline (never a fixed sleep).
#ifndef CPPETCD_TESTS_UNIT_MVCC_WATCH_WATCH_TEST_UTIL_H_
#define CPPETCD_TESTS_UNIT_MVCC_WATCH_WATCH_TEST_UTIL_H_

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <functional>
#include <memory>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cppetcd/mvcc/watchable_store.h"
#include "cppetcd/util/clock.h"

namespace cppetcd::mvcc::testing {

// A hand-driven clock like util::FakeClock, but on std::mutex: Debian's
// abseil is not TSan-instrumented, so TSan cannot see absl::Mutex ordering
// when the catch-up thread reads the clock.
class TestClock final : public util::Clock {
 public:
  TimePoint Now() const override {
    std::lock_guard<std::mutex> l(mu_);
    return now_;
  }
  int64_t WallMillis() const override {
    std::lock_guard<std::mutex> l(mu_);
    return wall_ms_;
  }
  void Advance(std::chrono::nanoseconds d) {
    std::lock_guard<std::mutex> l(mu_);
    now_ += d;
    wall_ms_ += std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  }

 private:
  mutable std::mutex mu_;
  TimePoint now_{std::chrono::hours(1)};
  int64_t wall_ms_ = 1'700'000'000'000;
};

// Counts notify() calls; Wait blocks until one arrives or the slice ends.
class NotifyCounter {
 public:
  std::function<void()> Callback() {
    return [this] {
      std::lock_guard<std::mutex> l(mu_);
      ++count_;
      cv_.notify_all();
    };
  }
  int Count() const {
    std::lock_guard<std::mutex> l(mu_);
    return count_;
  }
  // Waits until the count exceeds `seen` or `slice` passes.
  void WaitPast(int seen, absl::Duration slice) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, absl::ToChronoMilliseconds(slice), [&] { return count_ > seen; });
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int count_ = 0;
};

// A stream with its notify counter and everything polled so far.
struct Reader {
  NotifyCounter notified;
  std::unique_ptr<WatchStream> stream;
  std::vector<WatchResponse> got;

  explicit Reader(WatchableStore* store) : stream(store->NewWatchStream(notified.Callback())) {}

  // Polls until pred(got) holds or the deadline passes; returns pred(got).
  bool PollUntil(const std::function<bool(const std::vector<WatchResponse>&)>& pred,
                 absl::Duration timeout = absl::Seconds(20)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      int seen = notified.Count();
      for (auto& r : stream->Poll(0)) got.push_back(std::move(r));
      if (pred(got)) return true;
      if (absl::Now() > deadline) return false;
      // Wake on notify, or re-check after a short slice (the catch-up
      // thread and timers act without notifying when nothing is queued).
      notified.WaitPast(seen, absl::Milliseconds(20));
    }
  }

  // Polls until no new response arrived for `quiet` (to check absence).
  void Drain(absl::Duration quiet = absl::Milliseconds(150)) {
    const absl::Time deadline = absl::Now() + quiet;
    while (absl::Now() < deadline) {
      int seen = notified.Count();
      for (auto& r : stream->Poll(0)) got.push_back(std::move(r));
      notified.WaitPast(seen, absl::Milliseconds(20));
    }
    for (auto& r : stream->Poll(0)) got.push_back(std::move(r));
  }
};

// All events delivered to `watch_id`, in order.
inline std::vector<mvccpb::Event> EventsOf(const std::vector<WatchResponse>& rs, int64_t watch_id) {
  std::vector<mvccpb::Event> out;
  for (const auto& r : rs) {
    if (r.watch_id != watch_id) continue;
    out.insert(out.end(), r.events.begin(), r.events.end());
  }
  return out;
}

inline size_t EventCount(const std::vector<WatchResponse>& rs, int64_t watch_id) {
  return EventsOf(rs, watch_id).size();
}

}  // namespace cppetcd::mvcc::testing

#endif  // CPPETCD_TESTS_UNIT_MVCC_WATCH_WATCH_TEST_UTIL_H_
