// Operation counters of mvcc transactions, as etcd 3.4's mvcc/metrics_txn.go
// keeps them: every read or write transaction adds, when it ends, the ranges,
// puts and deletes it ran; a transaction of more than one operation also
// counts as one txn. Exposed as etcd_mvcc_{range,put,delete,txn}_total.
//
// Process-wide, as etcd's Prometheus counters are. Thread-safe.
#ifndef CPPETCD_MVCC_TXN_METRICS_H_
#define CPPETCD_MVCC_TXN_METRICS_H_

#include <atomic>
#include <cstdint>

namespace cppetcd::mvcc {

// What one transaction ran.
struct TxnOpCounts {
  uint64_t ranges = 0;
  uint64_t puts = 0;
  uint64_t deletes = 0;
};

class TxnMetrics {
 public:
  // The end of a transaction that ran `c`.
  void Add(const TxnOpCounts& c) {
    ranges_.fetch_add(c.ranges, std::memory_order_relaxed);
    puts_.fetch_add(c.puts, std::memory_order_relaxed);
    deletes_.fetch_add(c.deletes, std::memory_order_relaxed);
    if (c.ranges + c.puts + c.deletes > 1) txns_.fetch_add(1, std::memory_order_relaxed);
  }
  uint64_t range_total() const { return ranges_.load(std::memory_order_relaxed); }
  uint64_t put_total() const { return puts_.load(std::memory_order_relaxed); }
  uint64_t delete_total() const { return deletes_.load(std::memory_order_relaxed); }
  uint64_t txn_total() const { return txns_.load(std::memory_order_relaxed); }

  // The process's counters.
  static TxnMetrics& Global() {
    static TxnMetrics* metrics = new TxnMetrics();
    return *metrics;
  }

 private:
  std::atomic<uint64_t> ranges_{0};
  std::atomic<uint64_t> puts_{0};
  std::atomic<uint64_t> deletes_{0};
  std::atomic<uint64_t> txns_{0};
};

}  // namespace cppetcd::mvcc

#endif  // CPPETCD_MVCC_TXN_METRICS_H_
