// Checkers for a robustness History (history.h):
//  - CheckLinearizability: Wing-Gong-Lowe search for a linearization of the
//    KV operations against a model of etcd's key space (Put, Get, Delete,
//    Txn compare-and-swap, Range), split into independent parts by the keys
//    the operations touch. Operations with outcome kUnknown may take effect
//    at any time after their invoke, or never.
//  - CheckWatches: etcd's watch guarantees per watch: events in revision
//    order, no duplicates, no gaps against the revisions the KV history and
//    the other watches prove, all events of one revision in one response,
//    a resumed watch continues exactly where its predecessor stopped.
//  - CheckLeases: a key put with a lease is gone once the lease's revoke
//    completed or the lease was reported expired; a lease whose keep-alives
//    were answered in time is not reported expired.
// A checker that cannot finish within its budget says so (kInconclusive);
// it never reports a pass it did not prove.
//
// Thread-safety: pure functions of their arguments.
#ifndef CPPETCD_TESTS_ROBUSTNESS_CHECKER_H_
#define CPPETCD_TESTS_ROBUSTNESS_CHECKER_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "history.h"

namespace cppetcd::robustness {

enum class Verdict { kOk, kViolation, kInconclusive };

struct CheckReport {
  Verdict verdict = Verdict::kOk;
  // One line per violation (or per part left inconclusive), naming the
  // operation ids involved.
  std::vector<std::string> problems;
  int64_t operations_checked = 0;
  int64_t parts = 0;  // independent parts (linearizability)
};

struct LinearizabilityOptions {
  // Search budget per independent part; beyond it the part is inconclusive.
  int64_t max_states_per_part = 5'000'000;
  std::chrono::milliseconds max_time_per_part{20'000};
  // Approximate memory of the search's memo (seen (linearized set, model
  // state) pairs) per part; beyond it the part is inconclusive.
  int64_t max_cache_bytes_per_part = int64_t{2} << 30;
};

CheckReport CheckLinearizability(const History& history,
                                 const LinearizabilityOptions& options = {});
CheckReport CheckWatches(const History& history);
CheckReport CheckLeases(const History& history);

// All three, problems prefixed with the checker's name.
CheckReport CheckAll(const History& history);

}  // namespace cppetcd::robustness

#endif  // CPPETCD_TESTS_ROBUSTNESS_CHECKER_H_
