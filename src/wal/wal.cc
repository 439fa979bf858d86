// Writing side of the WAL: Create, Save, SaveSnapshot, segment cuts,
// ReleaseLockTo, Close. The record format is atop record_writer.cc; the
// reading side is in wal_read.cc.
#include "cppetcd/wal/wal.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "src/wal/record_writer.h"
#include "src/wal/segment_name.h"
#include "walpb/record.pb.h"

namespace cppetcd::wal {
namespace {

// An fsync slower than this is logged (etcd warns at one second too).
constexpr std::chrono::seconds kSlowFsync{1};

bool IsEmptyHardState(const raftpb::HardState& hs) { return hs.term() == 0 && hs.vote() == 0 && hs.commit() == 0; }

std::string HardStateBytes(const raftpb::HardState& hs) {
  return IsEmptyHardState(hs) ? std::string() : hs.SerializeAsString();
}

}  // namespace

Wal::Wal(util::Env* env, std::string dir, Options options)
    : env_(env), dir_(std::move(dir)), options_(std::move(options)) {}

Wal::~Wal() { (void)Close(); }

bool Wal::Exists(util::Env* env, const std::string& dir) {
  if (!env->IsDirectory(dir)) return false;
  auto names = ListSegments(env, dir);
  return !names.ok() || !names->empty();  // a broken sequence still "exists"
}

absl::StatusOr<std::unique_ptr<Wal>> Wal::Create(util::Env* env, std::string dir, std::string metadata,
                                                 Options options) {
  if (Exists(env, dir)) return absl::AlreadyExistsError(absl::StrCat("wal: ", dir, " already exists"));
  const std::string tmp = dir + ".tmp";
  if (absl::Status s = env->RemoveAll(tmp); !s.ok()) return s;
  if (absl::Status s = env->CreateDirAll(tmp); !s.ok()) return s;

  // The first segment: head records and the empty snapshot marker, synced
  // in the temp directory before it gets the real name.
  const std::string name = SegmentName(0, 0);
  uint32_t crc = 0;
  std::string bytes;
  AppendSegmentHead(metadata, std::string(), &crc, &bytes);
  AppendRecord(walpb::SNAPSHOT, walpb::Snapshot().SerializeAsString(), &crc, &bytes);
  {
    auto f = env->NewWritableFile(util::JoinPath(tmp, name));
    if (!f.ok()) return f.status();
    absl::Status s = (*f)->Append(bytes);
    if (s.ok()) s = (*f)->Sync();
    if (absl::Status c = (*f)->Close(); s.ok()) s = c;
    if (s.ok()) s = env->SyncDir(tmp);
    if (!s.ok()) return s;
  }
  // rename(2) replaces an empty directory left by the caller.
  if (absl::Status s = env->RenameFile(tmp, dir); !s.ok()) return s;
  if (absl::Status s = env->SyncDir(util::DirName(dir)); !s.ok()) return s;

  std::unique_ptr<Wal> w(new Wal(env, std::move(dir), std::move(options)));
  auto lock = env->LockFile(w->dir_);
  if (!lock.ok()) return lock.status();
  w->lock_ = *std::move(lock);
  w->segments_ = {name};
  w->metadata_ = std::move(metadata);
  w->crc_ = crc;
  w->read_done_ = true;
  if (absl::Status s = w->OpenTail(bytes.size()); !s.ok()) return s;
  return w;
}

absl::Status Wal::OpenTail(uint64_t valid_end) {
  const std::string path = util::JoinPath(dir_, segments_.back());
  auto size = env_->FileSize(path);
  if (!size.ok()) return size.status();
  if (*size > valid_end) {
    if (absl::Status s = env_->Truncate(path, valid_end); !s.ok()) return s;
  }
  auto f = env_->NewAppendableFile(path);
  if (!f.ok()) return f.status();
  tail_ = *std::move(f);
  if (absl::Status s = tail_->Preallocate(options_.segment_size_bytes); !s.ok()) return s;
  // Makes the truncation and the preallocation durable before new records
  // land after them.
  return SyncTail();
}

absl::Status Wal::CheckWritable() const {
  if (!failed_.ok()) return failed_;
  if (!read_done_) return absl::FailedPreconditionError("wal: ReadAll must run before writing");
  if (tail_ == nullptr) return absl::FailedPreconditionError("wal: closed");
  return absl::OkStatus();
}

absl::Status Wal::Fail(absl::Status s) {
  if (!s.ok() && failed_.ok()) {
    failed_ = s;
    options_.logger.Error("wal write failed", {{"dir", dir_}, {"error", s.ToString()}});
  }
  return s;
}

absl::Status Wal::AppendToTail(std::string_view bytes) { return Fail(tail_->Append(bytes)); }

absl::Status Wal::SyncTail() {
  util::Clock* clock = options_.clock != nullptr ? options_.clock : util::SystemClock::Get();
  auto start = clock->Now();
  absl::Status s = tail_->Sync();
  auto took = clock->Now() - start;
  if (!s.ok()) return Fail(s);
  if (options_.on_fsync) options_.on_fsync(std::chrono::duration_cast<std::chrono::nanoseconds>(took));
  if (took > kSlowFsync) {
    options_.logger.Warn("slow fdatasync",
                         {{"took-ms", std::chrono::duration_cast<std::chrono::milliseconds>(took).count()},
                          {"expected-duration-ms", int64_t{1000}}});
  }
  return absl::OkStatus();
}

absl::Status Wal::Save(const raftpb::HardState& hard_state, const std::vector<raftpb::Entry>& entries,
                       bool must_sync) {
  if (absl::Status s = CheckWritable(); !s.ok()) return s;
  const bool has_state = !IsEmptyHardState(hard_state);
  if (!has_state && entries.empty()) return absl::OkStatus();
  for (const raftpb::Entry& e : entries) {
    if (e.ByteSizeLong() > kMaxRecordPayload) {
      return absl::InvalidArgumentError(absl::StrCat("wal: entry ", e.index(), " is too large for a record"));
    }
  }
  std::string bytes;
  std::string payload;
  for (const raftpb::Entry& e : entries) {
    payload.clear();
    e.SerializeToString(&payload);
    AppendRecord(walpb::ENTRY, payload, &crc_, &bytes);
  }
  if (has_state) AppendRecord(walpb::HARD_STATE, hard_state.SerializeAsString(), &crc_, &bytes);
  if (absl::Status s = AppendToTail(bytes); !s.ok()) return s;
  if (!entries.empty()) last_index_ = entries.back().index();
  if (has_state) hard_state_ = hard_state;
  if (tail_->Size() >= options_.segment_size_bytes) return Cut();  // Cut syncs
  return must_sync ? SyncTail() : absl::OkStatus();
}

absl::Status Wal::SaveSnapshot(const WalSnapshot& snapshot) {
  if (absl::Status s = CheckWritable(); !s.ok()) return s;
  walpb::Snapshot marker;
  marker.set_index(snapshot.index);
  marker.set_term(snapshot.term);
  std::string bytes;
  AppendRecord(walpb::SNAPSHOT, marker.SerializeAsString(), &crc_, &bytes);
  if (absl::Status s = AppendToTail(bytes); !s.ok()) return s;
  // Entries after a snapshot continue from its index, so the next segment
  // starts after it.
  if (last_index_ < snapshot.index) last_index_ = snapshot.index;
  if (tail_->Size() >= options_.segment_size_bytes) return Cut();
  return SyncTail();
}

absl::Status Wal::Cut() {
  // Seal the full segment: drop its preallocated zeros so that only the last
  // segment may end in zeros, and make it durable.
  if (absl::Status s = tail_->Truncate(tail_->Size()); !s.ok()) return Fail(s);
  if (absl::Status s = SyncTail(); !s.ok()) return s;
  if (absl::Status s = tail_->Close(); !s.ok()) return Fail(s);

  uint64_t seq, first;
  ParseSegmentName(segments_.back(), &seq, &first);
  const std::string name = SegmentName(seq + 1, last_index_ + 1);
  const std::string path = util::JoinPath(dir_, name);
  const std::string tmp = path + ".tmp";
  std::string bytes;
  AppendSegmentHead(metadata_, HardStateBytes(hard_state_), &crc_, &bytes);
  {
    auto f = env_->NewWritableFile(tmp);
    if (!f.ok()) return Fail(f.status());
    absl::Status s = (*f)->Append(bytes);
    if (s.ok()) s = (*f)->Sync();
    if (absl::Status c = (*f)->Close(); s.ok()) s = c;
    if (!s.ok()) return Fail(s);
  }
  if (absl::Status s = env_->RenameFile(tmp, path); !s.ok()) return Fail(s);
  if (absl::Status s = env_->SyncDir(dir_); !s.ok()) return Fail(s);
  segments_.push_back(name);
  if (absl::Status s = OpenTail(bytes.size()); !s.ok()) return Fail(s);
  options_.logger.Info("created a new WAL segment", {{"path", path}});
  return absl::OkStatus();
}

absl::Status Wal::ReleaseLockTo(uint64_t index) {
  if (!failed_.ok()) return failed_;
  // Segment k holds entries [first_k, first_{k+1}); it may go once
  // first_{k+1} <= index. The last segment always stays.
  size_t remove = 0;
  while (remove + 1 < segments_.size()) {
    uint64_t seq, next_first;
    ParseSegmentName(segments_[remove + 1], &seq, &next_first);
    if (next_first > index) break;
    ++remove;
  }
  if (remove == 0) return absl::OkStatus();
  for (size_t i = 0; i < remove; ++i) {
    const std::string path = util::JoinPath(dir_, segments_[i]);
    if (absl::Status s = env_->RemoveFile(path); !s.ok()) return s;
    options_.logger.Info("removed WAL segment", {{"path", path}, {"release-index", index}});
  }
  segments_.erase(segments_.begin(), segments_.begin() + static_cast<std::ptrdiff_t>(remove));
  start_ = start_ > remove ? start_ - remove : 0;
  return env_->SyncDir(dir_);
}

absl::Status Wal::Close() {
  absl::Status result;
  if (tail_ != nullptr) {
    if (failed_.ok() && read_done_) result = SyncTail();
    if (absl::Status s = tail_->Close(); result.ok()) result = s;
    tail_.reset();
  }
  if (lock_ != nullptr) {
    if (absl::Status s = env_->UnlockFile(std::move(lock_)); result.ok()) result = s;
  }
  return result;
}

std::vector<std::string> Wal::SegmentNames() const { return segments_; }

}  // namespace cppetcd::wal
