// The read side of the Raft log (Storage) and its in-memory implementation
// (MemoryStorage), plus the raft module's error constructors/predicates.
//
// Model: etcd raft's Storage interface. Indices are 1-based Raft log indices;
// index 0 is a dummy entry of term 0. After compaction the storage keeps one
// dummy entry at the compacted index (its term is still known), so
// FirstIndex() = compacted index + 1.
#ifndef CPPETCD_RAFT_STORAGE_H_
#define CPPETCD_RAFT_STORAGE_H_

#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppetcd/util/mutex.h"
#include "raftpb/raft.pb.h"

namespace cppetcd::raft {

inline constexpr uint64_t kNoLimit = std::numeric_limits<uint64_t>::max();

// Errors. Each has a constructor and a predicate, which tests the typed code
// (util/error.h), never the text; messages follow etcd raft.
// ErrCompacted: the requested index is below FirstIndex (compacted away).
absl::Status ErrCompacted();
bool IsCompacted(const absl::Status& s);
// ErrSnapOutOfDate: a snapshot older than the one the storage holds.
absl::Status ErrSnapOutOfDate();
bool IsSnapOutOfDate(const absl::Status& s);
// ErrUnavailable: the requested index is past LastIndex. Call the predicate
// as raft::IsUnavailable (absl::IsUnavailable is found by ADL too).
absl::Status ErrUnavailable();
bool IsUnavailable(const absl::Status& s);
// ErrSnapshotTemporarilyUnavailable: Snapshot() cannot produce one right now.
absl::Status ErrSnapshotTemporarilyUnavailable();
bool IsSnapshotTemporarilyUnavailable(const absl::Status& s);
// ErrProposalDropped ("raft proposal dropped"): no leader, leader transfer in
// progress, uncommitted-size limit hit, or a conf change while one is pending.
absl::Status ErrProposalDropped();
bool IsProposalDropped(const absl::Status& s);
// ErrStepLocalMsg: RawNode::Step was given a local message type (MsgHup...).
absl::Status ErrStepLocalMsg();
bool IsStepLocalMsg(const absl::Status& s);
// ErrStepPeerNotFound: a response from a peer that is not in the config.
absl::Status ErrStepPeerNotFound();
bool IsStepPeerNotFound(const absl::Status& s);

// Read access to the stable (persisted) part of the log. Implementations must
// be consistent with what the application persisted from Ready before Advance.
class Storage {
 public:
  virtual ~Storage() = default;
  // The persisted HardState and the ConfState of the latest snapshot.
  virtual absl::StatusOr<std::pair<raftpb::HardState, raftpb::ConfState>> InitialState() const = 0;
  // Entries in [lo, hi), at least one (if any) and at most max_size_bytes in
  // total (sum of ByteSizeLong). ErrCompacted if lo < FirstIndex,
  // ErrUnavailable if hi > LastIndex + 1.
  virtual absl::StatusOr<std::vector<raftpb::Entry>> Entries(uint64_t lo, uint64_t hi,
                                                             uint64_t max_size_bytes) const = 0;
  // Term of entry `index`, for index in [FirstIndex-1, LastIndex].
  virtual absl::StatusOr<uint64_t> Term(uint64_t index) const = 0;
  virtual absl::StatusOr<uint64_t> LastIndex() const = 0;
  // Index of the first entry still available (compacted index + 1).
  virtual absl::StatusOr<uint64_t> FirstIndex() const = 0;
  // The most recent snapshot (ErrSnapshotTemporarilyUnavailable if not ready).
  virtual absl::StatusOr<raftpb::Snapshot> Snapshot() const = 0;
};

// Storage kept in memory. Thread-safe (one mutex). The application appends
// what Ready gives it (Append, SetHardState, ApplySnapshot) before Advance.
class MemoryStorage : public Storage {
 public:
  MemoryStorage();

  absl::StatusOr<std::pair<raftpb::HardState, raftpb::ConfState>> InitialState() const override;
  absl::StatusOr<std::vector<raftpb::Entry>> Entries(uint64_t lo, uint64_t hi,
                                                     uint64_t max_size_bytes) const override;
  absl::StatusOr<uint64_t> Term(uint64_t index) const override;
  absl::StatusOr<uint64_t> LastIndex() const override;
  absl::StatusOr<uint64_t> FirstIndex() const override;
  absl::StatusOr<raftpb::Snapshot> Snapshot() const override;

  // Replaces the whole content by `snap` (entries dropped). ErrSnapOutOfDate
  // if snap is older than the storage's snapshot.
  absl::Status ApplySnapshot(raftpb::Snapshot snap);
  // Records a snapshot at `index` (<= LastIndex) with optional conf state and
  // application data; does not compact. ErrSnapOutOfDate if index is older
  // than the current snapshot; ErrUnavailable if index > LastIndex.
  absl::StatusOr<raftpb::Snapshot> CreateSnapshot(uint64_t index, const raftpb::ConfState* cs,
                                                  std::string data);
  // Discards entries before compact_index (that entry becomes the dummy).
  // ErrCompacted if already compacted; ErrUnavailable if past LastIndex.
  absl::Status Compact(uint64_t compact_index);
  // Appends entries, truncating any conflicting suffix. Entries must be
  // contiguous and not leave a gap after LastIndex; those already compacted
  // are skipped.
  absl::Status Append(const std::vector<raftpb::Entry>& entries);
  void SetHardState(const raftpb::HardState& hs);

 private:
  uint64_t FirstIndexLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t LastIndexLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable util::Mutex mu_;  // util::Mutex: visible to TSan (Debian abseil is not instrumented)
  raftpb::HardState hard_state_ ABSL_GUARDED_BY(mu_);
  raftpb::Snapshot snapshot_ ABSL_GUARDED_BY(mu_);
  // ents_[0] is a dummy entry whose index/term are the compaction point.
  std::vector<raftpb::Entry> ents_ ABSL_GUARDED_BY(mu_);
};

// Size in bytes of an entry as counted by the size limits.
uint64_t EntrySize(const raftpb::Entry& e);
// Keeps a prefix of `ents` whose total size is <= max_size (always at least one).
void LimitSize(std::vector<raftpb::Entry>* ents, uint64_t max_size);

}  // namespace cppetcd::raft

#endif  // CPPETCD_RAFT_STORAGE_H_
