#include "cppetcd/raft/storage.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "cppetcd/raft/peer_message.h"
#include "cppetcd/util/error.h"

namespace cppetcd::raft {
namespace {

using util::ErrorCode;
using util::HasErrorCode;
using util::MakeError;

constexpr const char* kCompactedMsg = "requested index is unavailable due to compaction";
constexpr const char* kSnapOutOfDateMsg = "requested index is older than the existing snapshot";
constexpr const char* kUnavailableMsg = "requested entry at index is unavailable";
constexpr const char* kSnapTempMsg = "snapshot is temporarily unavailable";
constexpr const char* kProposalDroppedMsg = "raft proposal dropped";
constexpr const char* kStepLocalMsg = "raft: cannot step raft local message";
constexpr const char* kStepPeerNotFoundMsg = "raft: cannot step as peer not found";
constexpr const char* kInvalidPeerMessagePrefix = "raft: invalid message from peer: ";

}  // namespace

// Errors are told apart by their typed code (util/error.h), never by text.
absl::Status ErrCompacted() {
  return MakeError(absl::StatusCode::kOutOfRange, ErrorCode::kRaftCompacted, kCompactedMsg);
}
bool IsCompacted(const absl::Status& s) { return HasErrorCode(s, ErrorCode::kRaftCompacted); }
absl::Status ErrSnapOutOfDate() {
  return MakeError(absl::StatusCode::kFailedPrecondition, ErrorCode::kSnapOutOfDate,
                   kSnapOutOfDateMsg);
}
bool IsSnapOutOfDate(const absl::Status& s) { return HasErrorCode(s, ErrorCode::kSnapOutOfDate); }
absl::Status ErrUnavailable() {
  return MakeError(absl::StatusCode::kUnavailable, ErrorCode::kRaftUnavailable, kUnavailableMsg);
}
bool IsUnavailable(const absl::Status& s) { return HasErrorCode(s, ErrorCode::kRaftUnavailable); }
absl::Status ErrSnapshotTemporarilyUnavailable() {
  return MakeError(absl::StatusCode::kUnavailable, ErrorCode::kSnapshotTemporarilyUnavailable,
                   kSnapTempMsg);
}
bool IsSnapshotTemporarilyUnavailable(const absl::Status& s) {
  return HasErrorCode(s, ErrorCode::kSnapshotTemporarilyUnavailable);
}
absl::Status ErrProposalDropped() {
  return MakeError(absl::StatusCode::kUnavailable, ErrorCode::kProposalDropped,
                   kProposalDroppedMsg);
}
bool IsProposalDropped(const absl::Status& s) {
  return HasErrorCode(s, ErrorCode::kProposalDropped);
}
absl::Status ErrStepLocalMsg() {
  return MakeError(absl::StatusCode::kInvalidArgument, ErrorCode::kStepLocalMsg, kStepLocalMsg);
}
bool IsStepLocalMsg(const absl::Status& s) { return HasErrorCode(s, ErrorCode::kStepLocalMsg); }
absl::Status ErrStepPeerNotFound() {
  return MakeError(absl::StatusCode::kNotFound, ErrorCode::kStepPeerNotFound,
                   kStepPeerNotFoundMsg);
}
bool IsStepPeerNotFound(const absl::Status& s) {
  return HasErrorCode(s, ErrorCode::kStepPeerNotFound);
}
absl::Status ErrInvalidPeerMessage(std::string_view why) {
  return MakeError(absl::StatusCode::kInvalidArgument, ErrorCode::kInvalidPeerMessage,
                   absl::StrCat(kInvalidPeerMessagePrefix, std::string(why)));
}
bool IsInvalidPeerMessage(const absl::Status& s) {
  return HasErrorCode(s, ErrorCode::kInvalidPeerMessage);
}

uint64_t EntrySize(const raftpb::Entry& e) { return e.ByteSizeLong(); }

void LimitSize(std::vector<raftpb::Entry>* ents, uint64_t max_size) {
  if (ents->empty() || max_size == kNoLimit) return;
  uint64_t size = EntrySize((*ents)[0]);
  size_t limit = 1;
  for (; limit < ents->size(); ++limit) {
    size += EntrySize((*ents)[limit]);
    if (size > max_size) break;
  }
  ents->resize(limit);
}

MemoryStorage::MemoryStorage() { ents_.emplace_back(); }

absl::StatusOr<std::pair<raftpb::HardState, raftpb::ConfState>> MemoryStorage::InitialState() const {
  util::MutexLock l(&mu_);
  return std::make_pair(hard_state_, snapshot_.metadata().conf_state());
}

uint64_t MemoryStorage::FirstIndexLocked() const { return ents_[0].index() + 1; }
uint64_t MemoryStorage::LastIndexLocked() const { return ents_[0].index() + ents_.size() - 1; }

absl::StatusOr<std::vector<raftpb::Entry>> MemoryStorage::Entries(uint64_t lo, uint64_t hi,
                                                                  uint64_t max_size_bytes) const {
  util::MutexLock l(&mu_);
  uint64_t offset = ents_[0].index();
  if (lo <= offset) return ErrCompacted();
  if (hi > LastIndexLocked() + 1) return ErrUnavailable();
  if (lo > hi) return absl::InvalidArgumentError("raft: Entries with lo > hi");
  std::vector<raftpb::Entry> out(ents_.begin() + static_cast<ptrdiff_t>(lo - offset),
                                 ents_.begin() + static_cast<ptrdiff_t>(hi - offset));
  LimitSize(&out, max_size_bytes);
  return out;
}

absl::StatusOr<uint64_t> MemoryStorage::Term(uint64_t index) const {
  util::MutexLock l(&mu_);
  uint64_t offset = ents_[0].index();
  if (index < offset) return ErrCompacted();
  if (index - offset >= ents_.size()) return ErrUnavailable();
  return ents_[index - offset].term();
}

absl::StatusOr<uint64_t> MemoryStorage::LastIndex() const {
  util::MutexLock l(&mu_);
  return LastIndexLocked();
}

absl::StatusOr<uint64_t> MemoryStorage::FirstIndex() const {
  util::MutexLock l(&mu_);
  return FirstIndexLocked();
}

absl::StatusOr<raftpb::Snapshot> MemoryStorage::Snapshot() const {
  util::MutexLock l(&mu_);
  return snapshot_;
}

absl::Status MemoryStorage::ApplySnapshot(raftpb::Snapshot snap) {
  util::MutexLock l(&mu_);
  if (snapshot_.metadata().index() >= snap.metadata().index()) return ErrSnapOutOfDate();
  ents_.clear();
  raftpb::Entry dummy;
  dummy.set_index(snap.metadata().index());
  dummy.set_term(snap.metadata().term());
  ents_.push_back(std::move(dummy));
  snapshot_ = std::move(snap);
  return absl::OkStatus();
}

absl::StatusOr<raftpb::Snapshot> MemoryStorage::CreateSnapshot(uint64_t index, const raftpb::ConfState* cs,
                                                               std::string data) {
  util::MutexLock l(&mu_);
  if (index <= snapshot_.metadata().index()) return ErrSnapOutOfDate();
  uint64_t offset = ents_[0].index();
  if (index > LastIndexLocked()) return ErrUnavailable();
  snapshot_.mutable_metadata()->set_index(index);
  snapshot_.mutable_metadata()->set_term(ents_[index - offset].term());
  if (cs != nullptr) *snapshot_.mutable_metadata()->mutable_conf_state() = *cs;
  snapshot_.set_data(std::move(data));
  return snapshot_;
}

absl::Status MemoryStorage::Compact(uint64_t compact_index) {
  util::MutexLock l(&mu_);
  uint64_t offset = ents_[0].index();
  if (compact_index <= offset) return ErrCompacted();
  if (compact_index > LastIndexLocked()) return ErrUnavailable();
  size_t i = compact_index - offset;
  std::vector<raftpb::Entry> ents;
  ents.reserve(ents_.size() - i);
  raftpb::Entry dummy;
  dummy.set_index(ents_[i].index());
  dummy.set_term(ents_[i].term());
  ents.push_back(std::move(dummy));
  for (size_t k = i + 1; k < ents_.size(); ++k) ents.push_back(std::move(ents_[k]));
  ents_ = std::move(ents);
  return absl::OkStatus();
}

absl::Status MemoryStorage::Append(const std::vector<raftpb::Entry>& entries) {
  if (entries.empty()) return absl::OkStatus();
  util::MutexLock l(&mu_);
  uint64_t first = FirstIndexLocked();
  uint64_t last = entries.back().index();
  if (last < first) return absl::OkStatus();  // all compacted already
  size_t skip = 0;
  if (first > entries[0].index()) skip = first - entries[0].index();
  uint64_t start = entries[skip].index();
  uint64_t offset = start - ents_[0].index();
  if (offset > ents_.size()) {
    return absl::InternalError("raft: MemoryStorage::Append leaves a gap after the last index");
  }
  ents_.resize(offset);  // truncate any conflicting suffix
  for (size_t k = skip; k < entries.size(); ++k) ents_.push_back(entries[k]);
  return absl::OkStatus();
}

void MemoryStorage::SetHardState(const raftpb::HardState& hs) {
  util::MutexLock l(&mu_);
  hard_state_ = hs;
}

}  // namespace cppetcd::raft
