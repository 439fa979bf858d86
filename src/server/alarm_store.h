// The active alarms of the cluster (etcd 3.4 etcdserver/api/v3alarm
// AlarmStore, and applierV3backend.Alarm): a set of (member ID, alarm type),
// with NOSPACE (writes that grow the backend refused) and CORRUPT (every
// write refused) readable without a lock.
//
// Persistence (LMDB backend, written in the apply loop's batch txn; etcd's
// format): bucket "alarm", key = etcdserverpb.AlarmMember (protobuf:
// memberID, alarm), value empty. A key that does not decode is skipped at
// Load.
//
// Invariants: NoSpace() / Corrupt() == some active alarm has that type; the
// bucket holds exactly the active set once the apply txn commits. Apply is
// deterministic and total (any action, type or member ID).
//
// Thread-safety: thread-safe (one util::Mutex; the flags are atomics). The
// apply thread applies; any thread reads.
#ifndef CPPETCD_SRC_SERVER_ALARM_STORE_H_
#define CPPETCD_SRC_SERVER_ALARM_STORE_H_

#include <atomic>
#include <cstdint>
#include <set>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/util/log.h"
#include "cppetcd/util/mutex.h"
#include "etcdserverpb/rpc.pb.h"

namespace cppetcd::server {

class AlarmStore {
 public:
  // `logger` gets the "alarm raised" / "alarm disarmed" lines.
  explicit AlarmStore(util::Logger logger) : lg_(std::move(logger)) {}
  AlarmStore(const AlarmStore&) = delete;
  AlarmStore& operator=(const AlarmStore&) = delete;

  // Replaces the active set with the alarm bucket of `rtx`. Errors: the
  // backend's (the set is then partly loaded: do not serve).
  absl::Status Load(storage::ReadTxn* rtx);

  // Applies an AlarmRequest taken from the raft log (etcd
  // applierV3backend.Alarm); the response's alarms:
  //  GET:        the active alarms of ar.alarm (NONE: all).
  //  ACTIVATE:   the alarm (member, type), newly raised or already active
  //              (written to `btx` when new). Type NONE activates nothing
  //              (empty response): cppetcd never stores a NONE alarm.
  //  DEACTIVATE: the alarm if it was active (deleted from `btx`); empty
  //              when it was not (etcd returns nil).
  //  other:      empty.
  // A non-OK result is a storage fault of `btx`: the set is unchanged, but
  // `btx` must not be committed.
  absl::StatusOr<etcdserverpb::AlarmResponse> Apply(storage::WriteTxn* btx,
                                                    const etcdserverpb::AlarmRequest& ar);

  // The active alarms of `type` (NONE: all), sorted by (member ID, type).
  std::vector<etcdserverpb::AlarmMember> List(etcdserverpb::AlarmType type) const;

  bool NoSpace() const { return nospace_.load(std::memory_order_acquire); }
  bool Corrupt() const { return corrupt_.load(std::memory_order_acquire); }

 private:
  void UpdateFlagsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  util::Logger lg_;
  mutable util::Mutex mu_;
  // (member ID, alarm type as its enum number): the active alarms.
  std::set<std::pair<uint64_t, int>> active_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> nospace_{false};  // a NOSPACE alarm is in active_
  std::atomic<bool> corrupt_{false};  // a CORRUPT alarm is in active_
};

// "NOSPACE", "CORRUPT" or "NONE" (etcd's AlarmType names).
const char* AlarmName(etcdserverpb::AlarmType t);

}  // namespace cppetcd::server

#endif  // CPPETCD_SRC_SERVER_ALARM_STORE_H_
