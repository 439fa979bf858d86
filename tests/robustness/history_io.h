// Writing and reading robustness histories (history.h) as JSON Lines: one
// JSON object per line, with a "type" field: "op", "lease_op", "watch",
// "watch_response". Keys and values are written base64-encoded (fields
// "key_b64", ...) so binary data survives. Unknown fields are ignored when
// reading; a malformed line is an error naming the line number.
//
// Thread-safety: HistoryRecorder is thread-safe (client threads append
// concurrently); the free functions are not tied to any shared state.
#ifndef CPPETCD_TESTS_ROBUSTNESS_HISTORY_IO_H_
#define CPPETCD_TESTS_ROBUSTNESS_HISTORY_IO_H_

#include <cstdint>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "history.h"

namespace cppetcd::robustness {

// Nanoseconds on CLOCK_MONOTONIC: the clock of every time in a History.
int64_t MonotonicNowNs();

absl::Status WriteHistory(const History& history, const std::string& path);
absl::StatusOr<History> ReadHistory(const std::string& path);

// Collects a History from many client threads. Operation ids are assigned
// here, in invoke order.
class HistoryRecorder {
 public:
  // Records the invoke of `op` (id and invoke_ns are filled in) and returns
  // its id; Complete() later fills in the outcome.
  // Complete copies from `result` only the outcome and result fields
  // (outcome, error, revision, succeeded, deleted, found, kvs, member) and
  // sets complete_ns to now, or kNeverCompleted for outcome kUnknown;
  // CompleteLease likewise (outcome, error, ttl_seconds, not_found, and lease if
  // nonzero: a Grant learns its id there). An unknown id is ignored.
  int64_t Invoke(Operation op);
  void Complete(int64_t id, const Operation& result);
  int64_t InvokeLease(LeaseOperation op);
  void CompleteLease(int64_t id, const LeaseOperation& result);
  // Assigns and returns the watch id (watch.watch is overwritten).
  int64_t AddWatch(WatchRecord watch);
  void AddWatchResponse(WatchResponseRecord response);

  // A copy of everything recorded so far (operations not yet completed keep
  // outcome kUnknown and complete_ns kNeverCompleted).
  History Snapshot() const;

 private:
  mutable std::mutex mu_;
  History history_ ABSL_GUARDED_BY(mu_);
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t next_watch_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace cppetcd::robustness

#endif  // CPPETCD_TESTS_ROBUSTNESS_HISTORY_IO_H_
