// The Raft log as the state machine sees it: the stable part (Storage) plus
// an unstable tail (entries and maybe a snapshot not yet persisted by the
// application). Invariant: applied <= committed <= last index.
#ifndef CPPETCD_RAFT_RAFT_LOG_H_
#define CPPETCD_RAFT_RAFT_LOG_H_

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cppetcd/raft/storage.h"
#include "raftpb/raft.pb.h"

namespace cppetcd::util {
class Logger;
}

namespace cppetcd::raft {

// Entries (and maybe a snapshot) not yet handed back through Advance.
// entries[i] has index offset + i.
struct Unstable {
  std::optional<raftpb::Snapshot> snapshot;
  std::vector<raftpb::Entry> entries;
  uint64_t offset = 0;

  std::optional<uint64_t> MaybeFirstIndex() const;
  std::optional<uint64_t> MaybeLastIndex() const;
  std::optional<uint64_t> MaybeTerm(uint64_t i) const;
  void StableTo(uint64_t i, uint64_t t);
  void StableSnapTo(uint64_t i);
  void Restore(const raftpb::Snapshot& s);
  void TruncateAndAppend(const std::vector<raftpb::Entry>& ents);
  std::vector<raftpb::Entry> Slice(uint64_t lo, uint64_t hi) const;
};

class RaftLog {
 public:
  RaftLog(Storage* storage, const util::Logger* logger, uint64_t max_next_ents_size);

  // Appends ents from a leader's MsgApp at (index, log_term) if the log
  // matches there (§5.3); returns the new last index or nullopt on mismatch.
  std::optional<uint64_t> MaybeAppend(uint64_t index, uint64_t log_term, uint64_t committed,
                                      const std::vector<raftpb::Entry>& ents);
  uint64_t Append(const std::vector<raftpb::Entry>& ents);
  // First index whose term differs from ents (0 if none conflicts).
  uint64_t FindConflict(const std::vector<raftpb::Entry>& ents) const;
  // Largest index <= index whose term is <= term (fast back-tracking).
  uint64_t FindConflictByTerm(uint64_t index, uint64_t term) const;

  std::vector<raftpb::Entry> UnstableEntries() const { return unstable_.entries; }
  bool HasUnstableEntries() const { return !unstable_.entries.empty(); }
  // Committed entries not yet applied (bounded by max_next_ents_size).
  std::vector<raftpb::Entry> NextEnts() const;
  bool HasNextEnts() const;
  bool HasPendingSnapshot() const { return unstable_.snapshot.has_value() && unstable_.snapshot->metadata().index() > 0; }
  const std::optional<raftpb::Snapshot>& PendingSnapshot() const { return unstable_.snapshot; }
  absl::StatusOr<raftpb::Snapshot> Snapshot() const;

  uint64_t FirstIndex() const;
  uint64_t LastIndex() const;
  uint64_t LastTerm() const;
  // Last index known persisted (below the unstable entries).
  uint64_t StableLastIndex() const { return std::min(LastIndex(), unstable_.offset - 1); }
  // Term of entry i; 0 (ok) for i outside [FirstIndex-1, LastIndex].
  absl::StatusOr<uint64_t> Term(uint64_t i) const;
  // Term of i or 0 on any error.
  uint64_t ZeroTermOnErr(uint64_t i) const;
  bool MatchTerm(uint64_t i, uint64_t term) const;
  // §5.4.1: is a log ending at (last_index, term) at least as up to date?
  bool IsUpToDate(uint64_t last_index, uint64_t term) const;

  // Entries from i to the end, at most max_size bytes.
  absl::StatusOr<std::vector<raftpb::Entry>> Entries(uint64_t i, uint64_t max_size) const;
  std::vector<raftpb::Entry> AllEntries() const;
  absl::StatusOr<std::vector<raftpb::Entry>> Slice(uint64_t lo, uint64_t hi, uint64_t max_size) const;

  // Commits up to max_index if that entry has `term` (§5.4.2).
  bool MaybeCommit(uint64_t max_index, uint64_t term);
  void CommitTo(uint64_t to);
  void AppliedTo(uint64_t i);
  void StableTo(uint64_t i, uint64_t t) { unstable_.StableTo(i, t); }
  void StableSnapTo(uint64_t i) { unstable_.StableSnapTo(i); }
  void Restore(const raftpb::Snapshot& s);

  uint64_t committed() const { return committed_; }
  uint64_t applied() const { return applied_; }
  std::string Describe() const;

 private:
  absl::Status CheckOutOfBounds(uint64_t lo, uint64_t hi) const;
  [[noreturn]] void Fatal(const std::string& msg) const;

  Storage* storage_;
  const util::Logger* logger_;
  Unstable unstable_;
  uint64_t committed_ = 0;
  uint64_t applied_ = 0;
  uint64_t max_next_ents_size_;
};

}  // namespace cppetcd::raft

#endif  // CPPETCD_RAFT_RAFT_LOG_H_
