// A lock-free cumulative histogram for Prometheus-style latency metrics
// (fixed upper bounds, per-bucket counters, a sum and a count).
#ifndef CPPETCD_UTIL_HISTOGRAM_H_
#define CPPETCD_UTIL_HISTOGRAM_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace cppetcd::util {

// A consistent-enough copy of a Histogram: counts[i] is the number of
// observations <= upper_bounds[i] (cumulative, as Prometheus "le" buckets);
// observations above the last bound only show in `count`.
struct HistogramSnapshot {
  std::vector<double> upper_bounds;
  std::vector<uint64_t> cumulative_counts;  // same size as upper_bounds
  uint64_t count = 0;
  double sum = 0;
};

// Thread-safety: Observe and Snapshot from any thread, without locks. A
// snapshot taken during observations may be off by the observations in
// flight (each counter is read once), never torn within one counter.
class Histogram {
 public:
  // `upper_bounds` strictly increasing; +Inf is implicit.
  explicit Histogram(std::vector<double> upper_bounds)
      : bounds_(std::move(upper_bounds)),
        buckets_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)) {
    for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
  }

  // `start * factor^i` for i in [0, n): Prometheus' ExponentialBuckets.
  static std::vector<double> ExponentialBounds(double start, double factor, int n) {
    std::vector<double> out;
    out.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i, start *= factor) out.push_back(start);
    return out;
  }

  void Observe(double value) {
    size_t i = 0;
    while (i < bounds_.size() && value > bounds_[i]) ++i;
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    double old = sum_.load(std::memory_order_relaxed);
    while (!sum_.compare_exchange_weak(old, old + value, std::memory_order_relaxed)) {
    }
  }

  HistogramSnapshot Snapshot() const {
    HistogramSnapshot s;
    s.upper_bounds = bounds_;
    s.cumulative_counts.resize(bounds_.size());
    uint64_t running = 0;
    for (size_t i = 0; i < bounds_.size(); ++i) {
      running += buckets_[i].load(std::memory_order_relaxed);
      s.cumulative_counts[i] = running;
    }
    running += buckets_[bounds_.size()].load(std::memory_order_relaxed);
    // The count is the bucket total, so count >= every cumulative count.
    s.count = running;
    s.sum = sum_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  const std::vector<double> bounds_;
  // buckets_[i]: observations in (bounds_[i-1], bounds_[i]]; the last one
  // holds those above every bound.
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::atomic<double> sum_{0};
};

}  // namespace cppetcd::util

#endif  // CPPETCD_UTIL_HISTOGRAM_H_
