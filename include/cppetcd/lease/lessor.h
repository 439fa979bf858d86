// The lessor: leases granted through raft, their attached keys and, on the
// primary (the raft leader), their expiry. Semantics follow etcd 3.4's
// lease.lessor: leases are persisted in the backend's "lease" bucket, carry
// no expiry on followers, get a fresh full TTL (plus `extend`) when this
// member is promoted, and expired leases are offered to the server, which
// proposes their revocation through raft.
//
// Checkpoints (etcd 3.4 --experimental-enable-lease-checkpoint): with
// LessorOptions::checkpointing the primary schedules, every
// checkpoint_interval, a checkpoint of each lease whose remaining TTL exceeds
// that interval; the server proposes the due ones (DueCheckpoints) through
// raft and every member applies them (Checkpoint), keeping the lease's
// remaining TTL. Promote then starts a lease from that remaining TTL instead
// of its full TTL, so a leader change no longer renews every lease.
//
// Persistence: bucket storage::kLeaseBucket, key = lease ID as 8 bytes
// big-endian, value = leasepb::Lease{ID, TTL, RemainingTTL} (etcd's format).
// RemainingTTL is 0 unless checkpoint_persist wrote a checkpoint (etcd
// --experimental-enable-lease-checkpoint-persist); a non-zero RemainingTTL
// read back is used by Promote whatever the options (as etcd).
#ifndef CPPETCD_LEASE_LESSOR_H_
#define CPPETCD_LEASE_LESSOR_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppetcd/util/clock.h"
#include "cppetcd/util/log.h"
#include "cppetcd/util/mutex.h"

namespace cppetcd::storage {
class ReadTxn;
class WriteTxn;
}  // namespace cppetcd::storage

namespace cppetcd::lease {

// The largest TTL a lease may be granted with, in seconds (etcd MaxLeaseTTL).
inline constexpr int64_t kMaxLeaseTtlSeconds = 9'000'000'000;
// ID 0 means "no lease" everywhere in the v3 API.
inline constexpr int64_t kNoLease = 0;
// After an expired lease is handed out by ExpiredLeases, it is offered again
// after this delay if it still exists (the revoke proposal may have been lost).
inline constexpr std::chrono::seconds kExpiredLeaseRetryInterval{3};
// Promote spreads expiries when this many leases or more exist, so that no
// more than 3/4 of this many expire in any one second (etcd leaseRevokeRate).
inline constexpr int kLeaseRevokeRate = 1000;
// etcd defaultLeaseCheckpointInterval: the time between two checkpoints of a
// lease (etcd 3.4 has no flag for it).
inline constexpr std::chrono::milliseconds kDefaultCheckpointInterval{5 * 60 * 1000};
// etcd maxLeaseCheckpointBatchSize: checkpoints in one raft entry.
inline constexpr size_t kMaxCheckpointBatchSize = 1000;

// Errors, with etcd's lease package texts and a typed code (util/error.h)
// that the predicates test. The api maps them to etcd's gRPC errors
// ("etcdserver: requested lease not found", ...).
absl::Status ErrLeaseNotFound();     // NotFound "lease not found"
absl::Status ErrLeaseExists();       // AlreadyExists "lease already exists"
absl::Status ErrLeaseTTLTooLarge();  // OutOfRange "too large lease TTL"
absl::Status ErrNotPrimary();        // FailedPrecondition "not a primary lessor"
bool IsLeaseNotFound(const absl::Status& s);
bool IsLeaseExists(const absl::Status& s);
bool IsLeaseTTLTooLarge(const absl::Status& s);
bool IsNotPrimary(const absl::Status& s);

struct LeaseInfo {
  int64_t id = 0;
  int64_t ttl_seconds = 0;  // granted TTL (after raising to the minimum)
  // Whole seconds until expiry, truncated as etcd's LeaseTimeToLive does
  // (a fresh 10 s lease reports 9); 0 once expired; -1 when the lease has no
  // expiry (this member is not primary).
  int64_t remaining_seconds = -1;
  std::vector<std::string> keys;  // attached keys, sorted
  // The last checkpointed remaining TTL in seconds (0: none; the full TTL
  // applies). The same on every member once the checkpoint is applied.
  int64_t checkpointed_ttl_seconds = 0;
};

// One due checkpoint: what the primary proposes (etcd LeaseCheckpoint).
struct LeaseCheckpoint {
  int64_t id = 0;
  int64_t remaining_ttl_seconds = 0;  // ceil of the time to expiry; < the TTL
  bool operator==(const LeaseCheckpoint&) const = default;
};

struct LessorOptions {
  int64_t min_ttl_seconds = 0;  // Grant and Recover raise smaller TTLs to this
  util::Clock* clock = nullptr;  // nullptr: util::SystemClock::Get()
  util::Logger logger{"lease"};
  // --experimental-enable-lease-checkpoint: the primary schedules
  // checkpoints (DueCheckpoints) and NeedsCheckpointReset answers. Off:
  // DueCheckpoints is always empty (Checkpoint is still applied).
  bool checkpointing = false;
  // Time between two checkpoints of one lease; <= 0: the default. Only
  // leases whose remaining TTL exceeds it (whole seconds) are checkpointed.
  std::chrono::milliseconds checkpoint_interval = kDefaultCheckpointInterval;
  // --experimental-enable-lease-checkpoint-persist: Checkpoint also writes
  // the remaining TTL to the lease's record, so it survives a restart.
  bool checkpoint_persist = false;
};

// Thread-safe: every method may be called from any thread (the api thread
// renews, the apply loop grants, revokes, attaches and detaches, a server
// timer polls ExpiredLeases).
class Lessor {
 public:
  explicit Lessor(LessorOptions options);
  Lessor(const Lessor&) = delete;
  Lessor& operator=(const Lessor&) = delete;

  // Loads every lease of the lease bucket, replacing what is in memory.
  // Leases do not expire until Promote (if already primary: at now + TTL).
  // Keys are attached afterwards by the store's index rebuild
  // (mvcc::LeaseObserver), so call this before mvcc::Store::Open.
  // Errors: the txn's, or DataLoss for an undecodable record.
  absl::Status Recover(storage::ReadTxn* txn);

  // Raft snapshot install (etcd: lessor.Recover on the new backend): drops
  // every lease in memory with its attached keys and loads the lease bucket
  // of `txn` (a read txn on the replaced backend). On the primary the loaded
  // leases get a fresh expiry as Promote(0) gives (now + TTL, spread when
  // there are kLeaseRevokeRate or more); otherwise none. Keys are attached
  // afterwards by mvcc::Store::Reload (LeaseObserver), so call this between
  // the backend replacement and the store's rebuild. Errors as Recover; on
  // error nothing changes. Any thread; readers see the old or the new set.
  absl::Status Restore(storage::ReadTxn* txn);

  // etcd Grant: apply loop only, within its write txn (persists the record).
  // id must be != 0 (else ErrLeaseNotFound); ttl_seconds > kMaxLeaseTtlSeconds
  // gives ErrLeaseTTLTooLarge; an existing id ErrLeaseExists. A TTL below the
  // minimum is raised to it. On the primary the lease expires at now + TTL.
  absl::StatusOr<LeaseInfo> Grant(storage::WriteTxn* txn, int64_t id, int64_t ttl_seconds);

  // etcd Revoke: removes the lease (in memory and its record within `txn`)
  // and returns its attached keys, sorted; the caller deletes them in the
  // same backend txn at one revision. ErrLeaseNotFound if unknown.
  absl::StatusOr<std::vector<std::string>> Revoke(storage::WriteTxn* txn, int64_t id);

  // Key bookkeeping, driven by the store on put/delete. Unknown lease ids are
  // ignored (the store checks leases before writing).
  void Attach(int64_t id, std::string_view key);
  void Detach(int64_t id, std::string_view key);

  // etcd Checkpoint, applied from a raft entry (apply loop, within its write
  // txn): the lease's remaining TTL becomes `remaining_ttl_seconds` (<= 0:
  // none, the full TTL applies again). Its expiry here does not change;
  // Promote uses it. With checkpoint_persist the record is rewritten with it.
  // On the primary with checkpointing the lease's next checkpoint is
  // scheduled. An unknown (revoked) lease is a no-op: OK. Errors: the txn's
  // only (a local storage fault).
  absl::Status Checkpoint(storage::WriteTxn* txn, int64_t id, int64_t remaining_ttl_seconds);

  // Primary with checkpointing only (else empty): up to `max` checkpoints
  // that are due, earliest first: {id, ceil(seconds to expiry)} for each
  // lease past its scheduled time, unless it has expired or its remaining
  // time is not below its TTL (etcd findDueScheduledCheckpoints). Each lease
  // handed out or skipped is scheduled again one interval later, so a lost
  // proposal or a lease renewed at its checkpoint keeps being checkpointed
  // (etcd drops it from the schedule until the next checkpoint or Promote).
  std::vector<LeaseCheckpoint> DueCheckpoints(size_t max);

  // With checkpointing: whether lease `id` carries a checkpointed remaining
  // TTL, which a renewal must first reset through raft (etcd Renew proposes
  // {id, 0} then). False without checkpointing or for an unknown lease.
  bool NeedsCheckpointReset(int64_t id) const;

  // etcd Renew (LeaseKeepAlive): primary only, else ErrNotPrimary; unknown or
  // already expired lease: ErrLeaseNotFound (an expired lease is about to be
  // revoked). Clears this member's checkpointed remaining TTL, sets
  // expiry = now + TTL and returns the TTL in seconds.
  absl::StatusOr<int64_t> Renew(int64_t id);

  // Snapshot of one lease / of all leases (sorted by remaining time, then id).
  std::optional<LeaseInfo> Lookup(int64_t id) const;
  std::vector<LeaseInfo> Leases() const;
  // Cheaper than Lookup when only existence matters (the applier's checks).
  bool Exists(int64_t id) const;

  // This member becomes primary (raft leader): every lease expires at
  // now + TTL + extend (etcd refreshes leases on promotion, which is how a
  // restart or a leader change renews them), where TTL is the lease's last
  // checkpointed remaining TTL if it has one. With kLeaseRevokeRate leases
  // or more, expiries are spread as etcd does. With checkpointing, every
  // lease's checkpoint is scheduled.
  void Promote(std::chrono::milliseconds extend);
  // This member is no longer primary: no lease expires here.
  void Demote();
  bool IsPrimary() const;

  // Primary only (else empty): up to `max` leases past their expiry, earliest
  // first. Each is handed out once per kExpiredLeaseRetryInterval while it
  // still exists and is still expired.
  std::vector<int64_t> ExpiredLeases(size_t max);

  // Number of leases (tests, metrics).
  size_t Size() const;

 private:
  using TimePoint = util::Clock::TimePoint;
  struct Lease {
    int64_t id = 0;
    int64_t ttl_seconds = 0;
    int64_t remaining_ttl_seconds = 0;  // last checkpoint; <= 0 = use ttl_seconds
    std::optional<TimePoint> expiry;    // nullopt = never (not primary)
    std::optional<TimePoint> heap_time;  // time of this lease's live heap entry
    // Time of this lease's live checkpoint_heap_ entry (nullopt: none).
    std::optional<TimePoint> checkpoint_time;
    std::set<std::string, std::less<>> keys;
  };
  struct HeapItem {
    TimePoint time;
    int64_t id;
    bool operator>(const HeapItem& o) const {
      return time != o.time ? time > o.time : id > o.id;
    }
  };

  // Sets the lease's expiry to now + its TTL + extend and (re)schedules it.
  // The *Locked helpers require mu_ (exclusive, shared for InfoLocked).
  void RefreshLocked(Lease& l, TimePoint now, std::chrono::nanoseconds extend)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Promote's work, with mu_ held: every lease expires at now + TTL + extend,
  // spread when there are many.
  void PromoteLocked(std::chrono::milliseconds extend) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads the lease bucket of `txn`.
  absl::StatusOr<std::unordered_map<int64_t, Lease>> Load(storage::ReadTxn* txn) const;
  void ScheduleLocked(Lease& l, TimePoint time) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // etcd scheduleCheckpointIfNeeded: with checkpointing, a lease whose
  // remaining TTL (checkpointed or full) exceeds the interval gets its next
  // checkpoint at now + interval (replacing a scheduled one unless
  // `keep_scheduled`, then only if it has none).
  void ScheduleCheckpointLocked(Lease& l, TimePoint now, bool keep_scheduled = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes the lease's record {ID, TTL, RemainingTTL} within `txn`.
  static absl::Status PersistLocked(storage::WriteTxn* txn, const Lease& l);
  LeaseInfo InfoLocked(const Lease& l, TimePoint now) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const int64_t min_ttl_seconds_;
  util::Clock* const clock_;
  const util::Logger logger_;
  const bool checkpointing_;
  const std::chrono::milliseconds checkpoint_interval_;  // > 0
  const bool checkpoint_persist_;

  // util::SharedMutex (std::shared_mutex) rather than absl::Mutex: Debian's
  // abseil is not built with TSan, so its mutexes are invisible to the TSan
  // pass.
  mutable util::SharedMutex mu_;
  std::unordered_map<int64_t, Lease> leases_ ABSL_GUARDED_BY(mu_);
  bool primary_ ABSL_GUARDED_BY(mu_) = false;
  // Min-heap of expiry checks; an item is live iff it equals its lease's
  // heap_time (stale items are dropped when they reach the top).
  std::priority_queue<HeapItem, std::vector<HeapItem>, std::greater<>> heap_ ABSL_GUARDED_BY(mu_);
  // Min-heap of scheduled checkpoints (primary with checkpointing only); an
  // item is live iff it equals its lease's checkpoint_time, so it holds at
  // most one live item per lease.
  std::priority_queue<HeapItem, std::vector<HeapItem>, std::greater<>> checkpoint_heap_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace cppetcd::lease

#endif  // CPPETCD_LEASE_LESSOR_H_
