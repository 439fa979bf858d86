#include "raft_log.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "cppetcd/util/log.h"

namespace cppetcd::raft {

std::optional<uint64_t> Unstable::MaybeFirstIndex() const {
  if (snapshot) return snapshot->metadata().index() + 1;
  return std::nullopt;
}

std::optional<uint64_t> Unstable::MaybeLastIndex() const {
  if (!entries.empty()) return offset + entries.size() - 1;
  if (snapshot) return snapshot->metadata().index();
  return std::nullopt;
}

std::optional<uint64_t> Unstable::MaybeTerm(uint64_t i) const {
  if (i < offset) {
    if (snapshot && snapshot->metadata().index() == i) return snapshot->metadata().term();
    return std::nullopt;
  }
  auto last = MaybeLastIndex();
  if (!last || i > *last) return std::nullopt;
  if (entries.empty()) return std::nullopt;  // only reachable with i == snapshot index >= offset
  return entries[i - offset].term();
}

void Unstable::StableTo(uint64_t i, uint64_t t) {
  auto gt = MaybeTerm(i);
  if (!gt) return;
  // Only when the entry is still the one persisted (not replaced since).
  if (*gt == t && i >= offset) {
    entries.erase(entries.begin(), entries.begin() + static_cast<ptrdiff_t>(i + 1 - offset));
    offset = i + 1;
  }
}

void Unstable::StableSnapTo(uint64_t i) {
  if (snapshot && snapshot->metadata().index() == i) snapshot.reset();
}

void Unstable::Restore(const raftpb::Snapshot& s) {
  offset = s.metadata().index() + 1;
  entries.clear();
  snapshot = s;
}

void Unstable::TruncateAndAppend(const std::vector<raftpb::Entry>& ents) {
  uint64_t after = ents[0].index();
  if (after == offset + entries.size()) {
    entries.insert(entries.end(), ents.begin(), ents.end());
  } else if (after <= offset) {
    // Replaces the whole unstable tail.
    offset = after;
    entries = ents;
  } else {
    entries.resize(after - offset);
    entries.insert(entries.end(), ents.begin(), ents.end());
  }
}

std::vector<raftpb::Entry> Unstable::Slice(uint64_t lo, uint64_t hi) const {
  return {entries.begin() + static_cast<ptrdiff_t>(lo - offset),
          entries.begin() + static_cast<ptrdiff_t>(hi - offset)};
}

RaftLog::RaftLog(Storage* storage, const util::Logger* logger, uint64_t max_next_ents_size)
    : storage_(storage), logger_(logger), max_next_ents_size_(max_next_ents_size) {
  auto first = storage_->FirstIndex();
  auto last = storage_->LastIndex();
  if (!first.ok() || !last.ok()) Fatal("raft: storage FirstIndex/LastIndex failed");
  unstable_.offset = *last + 1;
  committed_ = *first - 1;
  applied_ = *first - 1;
}

void RaftLog::Fatal(const std::string& msg) const {
  if (logger_ != nullptr) logger_->Fatal(msg);
  std::fprintf(stderr, "%s\n", msg.c_str());
  std::abort();
}

std::string RaftLog::Describe() const {
  return absl::StrCat("committed=", committed_, " applied=", applied_, " unstable.offset=", unstable_.offset,
                      " len(unstable.entries)=", unstable_.entries.size());
}

std::optional<uint64_t> RaftLog::MaybeAppend(uint64_t index, uint64_t log_term, uint64_t committed,
                                             const std::vector<raftpb::Entry>& ents) {
  if (!MatchTerm(index, log_term)) return std::nullopt;
  uint64_t lastnew = index + ents.size();
  uint64_t ci = FindConflict(ents);
  if (ci != 0) {
    if (ci <= committed_) {
      Fatal(absl::StrCat("raft: entry ", ci, " conflicts with committed entry (committed=", committed_, ")"));
    }
    uint64_t offset = index + 1;
    std::vector<raftpb::Entry> rest(ents.begin() + static_cast<ptrdiff_t>(ci - offset), ents.end());
    Append(rest);
  }
  CommitTo(std::min(committed, lastnew));
  return lastnew;
}

uint64_t RaftLog::Append(const std::vector<raftpb::Entry>& ents) {
  if (ents.empty()) return LastIndex();
  uint64_t after = ents[0].index() - 1;
  if (after < committed_) {
    Fatal(absl::StrCat("raft: append after ", after, " is below committed ", committed_));
  }
  unstable_.TruncateAndAppend(ents);
  return LastIndex();
}

uint64_t RaftLog::FindConflict(const std::vector<raftpb::Entry>& ents) const {
  for (const auto& e : ents) {
    if (!MatchTerm(e.index(), e.term())) return e.index();
  }
  return 0;
}

uint64_t RaftLog::FindConflictByTerm(uint64_t index, uint64_t term) const {
  if (index > LastIndex()) return index;
  while (true) {
    auto t = Term(index);
    if (!t.ok() || *t <= term) break;
    --index;
  }
  return index;
}

std::vector<raftpb::Entry> RaftLog::NextEnts() const {
  uint64_t off = std::max(applied_ + 1, FirstIndex());
  if (committed_ + 1 > off) {
    auto ents = Slice(off, committed_ + 1, max_next_ents_size_);
    if (!ents.ok()) Fatal(absl::StrCat("raft: unexpected error getting unapplied entries: ", ents.status().ToString()));
    return *std::move(ents);
  }
  return {};
}

bool RaftLog::HasNextEnts() const {
  uint64_t off = std::max(applied_ + 1, FirstIndex());
  return committed_ + 1 > off;
}

absl::StatusOr<raftpb::Snapshot> RaftLog::Snapshot() const {
  if (unstable_.snapshot) return *unstable_.snapshot;
  return storage_->Snapshot();
}

uint64_t RaftLog::FirstIndex() const {
  if (auto i = unstable_.MaybeFirstIndex()) return *i;
  auto i = storage_->FirstIndex();
  if (!i.ok()) Fatal("raft: storage FirstIndex failed");
  return *i;
}

uint64_t RaftLog::LastIndex() const {
  if (auto i = unstable_.MaybeLastIndex()) return *i;
  auto i = storage_->LastIndex();
  if (!i.ok()) Fatal("raft: storage LastIndex failed");
  return *i;
}

uint64_t RaftLog::LastTerm() const {
  auto t = Term(LastIndex());
  if (!t.ok()) Fatal("raft: unexpected error getting the last term");
  return *t;
}

absl::StatusOr<uint64_t> RaftLog::Term(uint64_t i) const {
  uint64_t dummy = FirstIndex() - 1;
  if (i < dummy || i > LastIndex()) return uint64_t{0};
  if (auto t = unstable_.MaybeTerm(i)) return *t;
  auto t = storage_->Term(i);
  if (t.ok()) return t;
  if (IsCompacted(t.status()) || raft::IsUnavailable(t.status())) return t.status();
  Fatal(absl::StrCat("raft: storage Term failed: ", t.status().ToString()));
}

uint64_t RaftLog::ZeroTermOnErr(uint64_t i) const {
  auto t = Term(i);
  return t.ok() ? *t : 0;
}

bool RaftLog::MatchTerm(uint64_t i, uint64_t term) const {
  auto t = Term(i);
  return t.ok() && *t == term;
}

bool RaftLog::IsUpToDate(uint64_t last_index, uint64_t term) const {
  uint64_t lt = LastTerm();
  return term > lt || (term == lt && last_index >= LastIndex());
}

absl::StatusOr<std::vector<raftpb::Entry>> RaftLog::Entries(uint64_t i, uint64_t max_size) const {
  if (i > LastIndex()) return std::vector<raftpb::Entry>{};
  return Slice(i, LastIndex() + 1, max_size);
}

std::vector<raftpb::Entry> RaftLog::AllEntries() const {
  while (true) {
    auto ents = Entries(FirstIndex(), kNoLimit);
    if (ents.ok()) return *std::move(ents);
    if (IsCompacted(ents.status())) continue;  // raced with compaction
    Fatal(ents.status().ToString());
  }
}

absl::Status RaftLog::CheckOutOfBounds(uint64_t lo, uint64_t hi) const {
  if (lo > hi) Fatal(absl::StrCat("raft: invalid slice ", lo, " > ", hi));
  uint64_t fi = FirstIndex();
  if (lo < fi) return ErrCompacted();
  uint64_t length = LastIndex() + 1 - fi;
  if (hi > fi + length) Fatal(absl::StrCat("raft: slice[", lo, ",", hi, ") out of bound [", fi, ",", LastIndex(), "]"));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<raftpb::Entry>> RaftLog::Slice(uint64_t lo, uint64_t hi, uint64_t max_size) const {
  if (auto s = CheckOutOfBounds(lo, hi); !s.ok()) return s;
  if (lo == hi) return std::vector<raftpb::Entry>{};
  std::vector<raftpb::Entry> ents;
  if (lo < unstable_.offset) {
    auto stored = storage_->Entries(lo, std::min(hi, unstable_.offset), max_size);
    if (!stored.ok()) {
      if (IsCompacted(stored.status())) return stored.status();
      if (raft::IsUnavailable(stored.status())) {
        Fatal(absl::StrCat("raft: entries[", lo, ":", std::min(hi, unstable_.offset), ") unavailable from storage"));
      }
      Fatal(stored.status().ToString());
    }
    ents = *std::move(stored);
    // Storage returned fewer entries than asked: the size limit hit.
    if (ents.size() < std::min(hi, unstable_.offset) - lo) return ents;
  }
  if (hi > unstable_.offset) {
    auto u = unstable_.Slice(std::max(lo, unstable_.offset), hi);
    ents.insert(ents.end(), std::make_move_iterator(u.begin()), std::make_move_iterator(u.end()));
  }
  LimitSize(&ents, max_size);
  return ents;
}

bool RaftLog::MaybeCommit(uint64_t max_index, uint64_t term) {
  if (max_index > committed_ && ZeroTermOnErr(max_index) == term) {
    CommitTo(max_index);
    return true;
  }
  return false;
}

void RaftLog::CommitTo(uint64_t to) {
  if (committed_ < to) {
    if (LastIndex() < to) {
      Fatal(absl::StrCat("raft: commit ", to, " is out of range [last index ", LastIndex(),
                         "]; was the log corrupted, truncated or lost?"));
    }
    committed_ = to;
  }
}

void RaftLog::AppliedTo(uint64_t i) {
  if (i == 0) return;
  if (committed_ < i || i < applied_) {
    Fatal(absl::StrCat("raft: applied ", i, " is out of range [prev applied ", applied_, ", committed ", committed_, "]"));
  }
  applied_ = i;
}

void RaftLog::Restore(const raftpb::Snapshot& s) {
  committed_ = s.metadata().index();
  unstable_.Restore(s);
}

}  // namespace cppetcd::raft
