// Reading side of the WAL: Open, ReadAll (with torn-tail repair) and
// ValidSnapshotEntries.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "cppetcd/wal/wal.h"
#include "src/wal/log_reader.h"
#include "src/wal/segment_name.h"
#include "walpb/record.pb.h"

namespace cppetcd::wal {
namespace {

template <class Message>
absl::Status ParsePayload(const Record& r, const std::string& segment, Message* m) {
  if (m->ParseFromArray(r.payload.data(), static_cast<int>(r.payload.size()))) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat("wal: undecodable record in ", segment, " at offset ", r.offset));
}

// Stale temp files of an interrupted cut.
absl::Status RemoveTempSegments(util::Env* env, const std::string& dir) {
  auto children = env->GetChildren(dir);
  if (!children.ok()) return children.status();
  for (const std::string& c : *children) {
    uint64_t seq, index;
    if (c.size() > 4 && c.ends_with(".tmp") && ParseSegmentName(c.substr(0, c.size() - 4), &seq, &index)) {
      if (absl::Status s = env->RemoveFile(util::JoinPath(dir, c)); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Wal>> Wal::Open(util::Env* env, std::string dir, WalSnapshot at, Options options) {
  auto names = ListSegments(env, dir);
  if (!names.ok()) return names.status();
  if (names->empty()) return absl::NotFoundError(absl::StrCat("wal: no segment files in ", dir));
  int start = SearchSegment(*names, at.index);
  if (start < 0) {
    return absl::NotFoundError(
        absl::StrCat("wal: no segment in ", dir, " can hold snapshot index ", at.index, " (first is ", names->front(), ")"));
  }
  std::unique_ptr<Wal> w(new Wal(env, std::move(dir), std::move(options)));
  auto lock = env->LockFile(w->dir_);
  if (!lock.ok()) return lock.status();
  w->lock_ = *std::move(lock);
  if (absl::Status s = RemoveTempSegments(env, w->dir_); !s.ok()) return s;
  w->segments_ = *std::move(names);
  w->start_ = static_cast<size_t>(start);
  w->at_ = at;
  return w;
}

absl::StatusOr<ReadResult> Wal::ReadAll() {
  if (read_done_) return absl::FailedPreconditionError("wal: ReadAll already ran");
  ReadResult result;
  bool have_metadata = false;
  bool matched = false;
  auto on_record = [&](const Record& r, const std::string& segment) -> absl::Status {
    switch (r.type) {
      case walpb::ENTRY: {
        raftpb::Entry e;
        if (absl::Status s = ParsePayload(r, segment, &e); !s.ok()) return s;
        // The last entry read is the tail of the log.
        last_index_ = std::max(e.index(), at_.index);
        if (e.index() > at_.index) {
          // A later entry at a known index replaces it and everything after
          // it: a new leader overwrote the uncommitted tail.
          uint64_t keep = e.index() - at_.index - 1;
          if (keep > result.entries.size()) {
            return absl::FailedPreconditionError(absl::StrCat("wal: gap in the log: entry ", e.index(),
                                                              " in ", segment, " after entry ",
                                                              at_.index + result.entries.size()));
          }
          result.entries.resize(keep);
          result.entries.push_back(std::move(e));
        }
        return absl::OkStatus();
      }
      case walpb::HARD_STATE:
        return ParsePayload(r, segment, &result.hard_state);
      case walpb::METADATA: {
        std::string md(r.payload);
        if (have_metadata && md != result.metadata) {
          return absl::FailedPreconditionError(absl::StrCat("wal: metadata conflict in ", segment));
        }
        result.metadata = std::move(md);
        have_metadata = true;
        return absl::OkStatus();
      }
      case walpb::SNAPSHOT: {
        walpb::Snapshot m;
        if (absl::Status s = ParsePayload(r, segment, &m); !s.ok()) return s;
        if (m.index() == at_.index) {
          if (m.term() != at_.term) {
            return absl::FailedPreconditionError(absl::StrCat("wal: snapshot marker at index ", m.index(),
                                                              " has term ", m.term(), ", expected ", at_.term));
          }
          matched = true;
        }
        last_index_ = std::max(last_index_, m.index());
        return absl::OkStatus();
      }
      default:  // CRC records are checked by the reader
        return absl::OkStatus();
    }
  };
  LogTail tail;
  if (absl::Status s = ReadLog(env_, dir_, segments_, start_, on_record, &tail); !s.ok()) return s;
  if (!matched && !(at_ == WalSnapshot{})) {
    return absl::NotFoundError(absl::StrCat("wal: snapshot marker (index ", at_.index, ", term ", at_.term,
                                            ") not found in ", dir_));
  }
  if (tail.torn) {
    options_.logger.Warn("truncating a torn write at the end of the WAL",
                         {{"path", util::JoinPath(dir_, segments_.back())},
                          {"offset", tail.valid_end},
                          {"dropped-bytes", tail.file_size - tail.valid_end},
                          {"reason", tail.torn_reason}});
  }
  metadata_ = result.metadata;
  hard_state_ = result.hard_state;
  crc_ = tail.crc;
  if (absl::Status s = OpenTail(tail.valid_end); !s.ok()) return s;
  read_done_ = true;
  return result;
}

absl::StatusOr<std::vector<WalSnapshot>> Wal::ValidSnapshotEntries(util::Env* env, const std::string& dir) {
  auto names = ListSegments(env, dir);
  if (!names.ok()) return names.status();
  std::vector<WalSnapshot> snaps;
  raftpb::HardState state;
  auto on_record = [&](const Record& r, const std::string& segment) -> absl::Status {
    if (r.type == walpb::SNAPSHOT) {
      walpb::Snapshot m;
      if (absl::Status s = ParsePayload(r, segment, &m); !s.ok()) return s;
      snaps.push_back(WalSnapshot{m.index(), m.term()});
    } else if (r.type == walpb::HARD_STATE) {
      return ParsePayload(r, segment, &state);
    }
    return absl::OkStatus();
  };
  LogTail tail;
  if (absl::Status s = ReadLog(env, dir, *names, 0, on_record, &tail); !s.ok()) return s;
  // A marker past the commit index may name a snapshot that raft never
  // committed to; it cannot be the one to restore.
  std::erase_if(snaps, [&](const WalSnapshot& s) { return s.index > state.commit(); });
  return snaps;
}

}  // namespace cppetcd::wal
