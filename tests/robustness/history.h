// The recorded history of a robustness run: every client operation with its
// invoke and complete times and what the server answered, every watch
// response, and every lease operation. The fault harness (runner) writes it;
// the checkers (linearizability, watch, lease) read it. One history file per
// run, JSON Lines (one record per line, see history_io.h), so that a failed
// run can be re-checked by hand and a planted violation is one edited line.
//
// Times are nanoseconds on one monotonic clock of the recording process
// (CLOCK_MONOTONIC), so invoke/complete of different clients compare.
//
// Thread-safety: plain data. HistoryRecorder (history_io.h) is the
// thread-safe way to append from several client threads.
#ifndef CPPETCD_TESTS_ROBUSTNESS_HISTORY_H_
#define CPPETCD_TESTS_ROBUSTNESS_HISTORY_H_

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace cppetcd::robustness {

// A completion time for operations whose outcome is unknown (timeout,
// connection lost, member crashed): the operation may take effect at any
// time after its invoke, or never.
inline constexpr int64_t kNeverCompleted = std::numeric_limits<int64_t>::max();

enum class OpKind {
  kPut,     // Put(key, value[, lease]) -> header revision
  kGet,     // Range(key) of one key -> value or absent, mod_revision
  kDelete,  // DeleteRange(key) of one key -> deleted count
  kTxnCas,  // Txn: if key's value == expected (or key absent when
            // expect_absent) then Put(key, value) else nothing ->
            // succeeded
  kRange,   // Range(key, range_end) -> all key-values in [key, range_end)
};

enum class Outcome {
  kOk,       // the server answered with success: the effect happened once
  kFailed,   // a definite error (e.g. a compare that the server refused to
             // run, InvalidArgument): the operation had no effect
  kUnknown,  // no answer (deadline, Unavailable after send, crash): it may
             // or may not have taken effect; complete_ns = kNeverCompleted
};

struct KeyValue {
  std::string key;
  std::string value;
  int64_t mod_revision = 0;
  int64_t create_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;

  bool operator==(const KeyValue&) const = default;
};

struct Operation {
  int64_t id = 0;      // unique in the history, increasing in invoke order
  int client = 0;      // a client runs one operation at a time
  OpKind kind = OpKind::kGet;
  std::string key;
  std::string range_end;  // kRange only (etcd's range_end; "\0" = all keys >= key)
  std::string value;      // kPut, kTxnCas: the value written
  std::string expected;   // kTxnCas: compared value (unless expect_absent)
  bool expect_absent = false;  // kTxnCas: compare create_revision == 0
  int64_t lease = 0;           // kPut: lease attached (0 = none)
  bool serializable = false;   // kGet, kRange: a serializable read (not
                               // checked for linearizability, only for
                               // being some state that existed)

  int64_t invoke_ns = 0;
  int64_t complete_ns = kNeverCompleted;
  Outcome outcome = Outcome::kUnknown;
  std::string error;  // kFailed / kUnknown: the status text, for the report

  // Results (outcome kOk only).
  int64_t revision = 0;               // response header revision
  bool succeeded = false;             // kTxnCas
  int64_t deleted = 0;                // kDelete
  std::optional<KeyValue> found;      // kGet: the key, or nullopt if absent
  std::vector<KeyValue> kvs;          // kRange, sorted by key
  int member = -1;                    // which member served it (-1 unknown)
};

// One event of a watch response, as etcd's mvccpb.Event.
struct WatchEvent {
  bool is_delete = false;
  KeyValue kv;  // for a delete: key and mod_revision (the delete's revision)
};

// One WatchResponse received on a watch, in arrival order.
struct WatchResponseRecord {
  int64_t watch = 0;     // the harness's watch id (one per Watch call; a
                         // resumed watch after reconnect gets a new id and
                         // names the one it resumes in `resumes`)
  int64_t time_ns = 0;
  int64_t header_revision = 0;
  bool canceled = false;
  int64_t compact_revision = 0;  // set when canceled because compacted
  std::vector<WatchEvent> events;
};

// A watch as the harness opened it.
struct WatchRecord {
  int64_t watch = 0;
  int client = 0;
  std::string key;
  std::string range_end;
  int64_t start_revision = 0;  // 0 = from now
  int64_t resumes = 0;         // watch id this one continues (0 = none)
  int member = -1;
};

enum class LeaseOpKind {
  kGrant,      // -> id, granted TTL
  kKeepAlive,  // one successful keep-alive answer (TTL > 0)
  kRevoke,     // -> ok
  kExpired,    // a keep-alive or TimeToLive answered TTL <= 0 / not found
};

struct LeaseOperation {
  int64_t id = 0;  // operation id, shared numbering with Operation::id
  int client = 0;
  LeaseOpKind kind = LeaseOpKind::kGrant;
  int64_t lease = 0;
  int64_t ttl_seconds = 0;  // granted or remaining TTL reported
  int64_t invoke_ns = 0;
  int64_t complete_ns = kNeverCompleted;
  Outcome outcome = Outcome::kUnknown;
  std::string error;
  // kExpired only: the answer said the lease does not exist (a keep-alive
  // answered TTL 0 -- etcd answers so only once the revoke is applied -- or
  // LeaseTimeToLive failed with "requested lease not found"). A TimeToLive
  // with TTL <= 0 of a lease that still exists leaves this false: etcd may
  // still be revoking it, so its keys may still be read.
  bool not_found = false;
};

struct History {
  std::vector<Operation> operations;
  std::vector<WatchRecord> watches;
  std::vector<WatchResponseRecord> watch_responses;
  std::vector<LeaseOperation> lease_operations;
};

}  // namespace cppetcd::robustness

#endif  // CPPETCD_TESTS_ROBUSTNESS_HISTORY_H_
