#include "cppetcd/util/fault_injection_env.h"

#include <cerrno>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace cppetcd::util {

// A WritableFile that asks the env for faults before each call and reports
// syncs so that DropUnsyncedData knows what is durable.
class FaultInjectionEnv::File final : public WritableFile {
 public:
  File(FaultInjectionEnv* env, std::unique_ptr<WritableFile> base, std::shared_ptr<FileState> state)
      : env_(env), base_(std::move(base)), state_(std::move(state)) {}

  absl::Status Append(std::string_view data) override {
    size_t keep = data.size();
    absl::Status fault = env_->TakeWriteFault(base_->Path(), &keep);
    if (fault.ok()) return base_->Append(data);
    if (keep > 0 && keep < data.size()) {
      if (absl::Status s = base_->Append(data.substr(0, keep)); !s.ok()) return s;
    }
    return fault;
  }
  absl::Status Flush() override { return base_->Flush(); }
  absl::Status Sync() override {
    if (absl::Status s = env_->TakeSyncFault(base_->Path()); !s.ok()) return s;
    if (!env_->skip_real_sync()) {
      if (absl::Status s = base_->Sync(); !s.ok()) return s;
    }
    env_->RecordSync(state_.get(), base_->Size());
    return absl::OkStatus();
  }
  absl::Status Preallocate(uint64_t size_bytes) override { return base_->Preallocate(size_bytes); }
  absl::Status Truncate(uint64_t size_bytes) override {
    if (absl::Status s = base_->Truncate(size_bytes); !s.ok()) return s;
    env_->RecordTruncate(state_.get(), size_bytes);
    return absl::OkStatus();
  }
  absl::Status Close() override { return base_->Close(); }
  uint64_t Size() const override { return base_->Size(); }
  const std::string& Path() const override { return base_->Path(); }

 private:
  FaultInjectionEnv* const env_;
  std::unique_ptr<WritableFile> base_;
  std::shared_ptr<FileState> state_;
};

// A SequentialFile whose reads may fail (Call::kRead).
class FaultInjectionEnv::ReadFile final : public SequentialFile {
 public:
  ReadFile(FaultInjectionEnv* env, std::unique_ptr<SequentialFile> base, std::string path)
      : env_(env), base_(std::move(base)), path_(std::move(path)) {}
  absl::Status Read(size_t n, std::string* scratch) override {
    if (absl::Status s = env_->TakeCallFault(Call::kRead, "read", path_); !s.ok()) {
      scratch->clear();
      return s;
    }
    return base_->Read(n, scratch);
  }
  absl::Status Skip(uint64_t n) override { return base_->Skip(n); }

 private:
  FaultInjectionEnv* const env_;
  std::unique_ptr<SequentialFile> base_;
  const std::string path_;
};

// A RandomRWFile whose writes, syncs and reads may fail (not tracked for
// DropUnsyncedData).
class FaultInjectionEnv::RWFile final : public RandomRWFile {
 public:
  RWFile(FaultInjectionEnv* env, std::unique_ptr<RandomRWFile> base) : env_(env), base_(std::move(base)) {}
  absl::Status Write(uint64_t offset, std::string_view data) override {
    size_t keep = data.size();
    absl::Status fault = env_->TakeWriteFault(base_->Path(), &keep);
    if (fault.ok()) return base_->Write(offset, data);
    if (keep > 0 && keep < data.size()) {
      if (absl::Status s = base_->Write(offset, data.substr(0, keep)); !s.ok()) return s;
    }
    return fault;
  }
  absl::Status Read(uint64_t offset, size_t n, std::string* scratch) override {
    if (absl::Status s = env_->TakeCallFault(Call::kRead, "read", base_->Path()); !s.ok()) {
      scratch->clear();
      return s;
    }
    return base_->Read(offset, n, scratch);
  }
  absl::Status Sync() override {
    if (absl::Status s = env_->TakeSyncFault(base_->Path()); !s.ok()) return s;
    if (env_->skip_real_sync()) return absl::OkStatus();
    return base_->Sync();
  }
  absl::Status Close() override { return base_->Close(); }
  const std::string& Path() const override { return base_->Path(); }

 private:
  FaultInjectionEnv* const env_;
  std::unique_ptr<RandomRWFile> base_;
};

FaultInjectionEnv::FaultInjectionEnv(Env* base) : base_(base) {}

void FaultInjectionEnv::FailCalls(Call call, int n, int error_number, std::string path_substring) {
  util::MutexLock l(&mu_);
  call_faults_[call] = CallFault{n, error_number, std::move(path_substring)};
}

absl::Status FaultInjectionEnv::TakeCallFault(Call call, std::string_view op, const std::string& path,
                                              const std::string& path2) {
  util::MutexLock l(&mu_);
  auto it = call_faults_.find(call);
  if (it == call_faults_.end() || it->second.remaining <= 0) return absl::OkStatus();
  CallFault& f = it->second;
  if (!absl::StrContains(path, f.path_substring) &&
      (path2.empty() || !absl::StrContains(path2, f.path_substring))) {
    return absl::OkStatus();
  }
  --f.remaining;
  return IoError(f.error_number, absl::StrCat(std::string(op), " (injected)"), path2.empty() ? path : path + " -> " + path2);
}
FaultInjectionEnv::~FaultInjectionEnv() = default;

void FaultInjectionEnv::FailWrites(int n, int error_number) {
  util::MutexLock l(&mu_);
  fail_writes_ = n;
  fail_write_errno_ = error_number;
}

void FaultInjectionEnv::FailSyncs(int n, int error_number) {
  util::MutexLock l(&mu_);
  fail_syncs_ = n;
  fail_sync_errno_ = error_number;
}

void FaultInjectionEnv::ShortWriteNext(size_t keep_bytes) {
  util::MutexLock l(&mu_);
  short_write_keep_ = static_cast<int64_t>(keep_bytes);
}

void FaultInjectionEnv::SetSkipRealSync(bool skip) {
  util::MutexLock l(&mu_);
  skip_real_sync_ = skip;
}

bool FaultInjectionEnv::skip_real_sync() const {
  util::MutexLock l(&mu_);
  return skip_real_sync_;
}

int64_t FaultInjectionEnv::sync_count() const {
  util::MutexLock l(&mu_);
  return sync_count_;
}

int64_t FaultInjectionEnv::dir_sync_count() const {
  util::MutexLock l(&mu_);
  return dir_sync_count_;
}

absl::Status FaultInjectionEnv::TakeWriteFault(const std::string& path, size_t* keep_bytes) {
  util::MutexLock l(&mu_);
  if (fail_writes_ > 0) {
    --fail_writes_;
    *keep_bytes = 0;
    return IoError(fail_write_errno_, "write (injected)", path);
  }
  if (short_write_keep_ >= 0) {
    *keep_bytes = static_cast<size_t>(short_write_keep_);
    short_write_keep_ = -1;
    return IoError(ENOSPC, "short write (injected)", path);
  }
  return absl::OkStatus();
}

absl::Status FaultInjectionEnv::TakeSyncFault(const std::string& path) {
  util::MutexLock l(&mu_);
  if (fail_syncs_ > 0) {
    --fail_syncs_;
    return IoError(fail_sync_errno_, "fdatasync (injected)", path);
  }
  ++sync_count_;
  return absl::OkStatus();
}

void FaultInjectionEnv::RecordSync(FileState* state, uint64_t pos) {
  util::MutexLock l(&mu_);
  state->synced_pos = pos;
  auto size = base_->FileSize(state->path);
  state->synced_size = size.ok() ? *size : pos;
}

void FaultInjectionEnv::RecordTruncate(FileState* state, uint64_t size_bytes) {
  // Treated as durable at once when it shrinks durable data: losing bytes a
  // crash might also have kept is the pessimistic side for readers.
  util::MutexLock l(&mu_);
  if (state->synced_pos > size_bytes) state->synced_pos = size_bytes;
  if (state->synced_size > size_bytes) state->synced_size = size_bytes;
}

std::shared_ptr<FaultInjectionEnv::FileState> FaultInjectionEnv::Track(const std::string& path, bool existed,
                                                                       uint64_t size_bytes) {
  auto state = std::make_shared<FileState>();
  state->path = path;
  state->synced_pos = size_bytes;
  state->synced_size = size_bytes;
  state->dir_synced = existed;
  files_[path] = state;
  return state;
}

absl::StatusOr<std::unique_ptr<WritableFile>> FaultInjectionEnv::NewWritableFile(const std::string& path) {
  if (absl::Status s = TakeCallFault(Call::kOpen, "open", path); !s.ok()) return s;
  bool existed = base_->FileExists(path);
  auto base = base_->NewWritableFile(path);
  if (!base.ok()) return base.status();
  util::MutexLock l(&mu_);
  auto it = files_.find(path);
  // A truncated file that was already tracked keeps its directory status.
  bool dir_synced = it != files_.end() ? it->second->dir_synced : existed;
  auto state = Track(path, dir_synced, 0);
  return std::make_unique<File>(this, *std::move(base), std::move(state));
}

absl::StatusOr<std::unique_ptr<WritableFile>> FaultInjectionEnv::NewAppendableFile(const std::string& path) {
  if (absl::Status s = TakeCallFault(Call::kOpen, "open", path); !s.ok()) return s;
  bool existed = base_->FileExists(path);
  auto base = base_->NewAppendableFile(path);
  if (!base.ok()) return base.status();
  util::MutexLock l(&mu_);
  std::shared_ptr<FileState> state;
  if (auto it = files_.find(path); it != files_.end()) {
    state = it->second;
  } else {
    state = Track(path, existed, existed ? (*base)->Size() : 0);
  }
  return std::make_unique<File>(this, *std::move(base), std::move(state));
}

absl::StatusOr<std::unique_ptr<RandomRWFile>> FaultInjectionEnv::NewRandomRWFile(const std::string& path) {
  if (absl::Status s = TakeCallFault(Call::kOpen, "open", path); !s.ok()) return s;
  auto base = base_->NewRandomRWFile(path);
  if (!base.ok()) return base.status();
  return std::make_unique<RWFile>(this, *std::move(base));
}

absl::StatusOr<std::unique_ptr<SequentialFile>> FaultInjectionEnv::NewSequentialFile(const std::string& path) {
  if (absl::Status s = TakeCallFault(Call::kOpen, "open", path); !s.ok()) return s;
  auto base = base_->NewSequentialFile(path);
  if (!base.ok()) return base.status();
  return std::make_unique<ReadFile>(this, *std::move(base), path);
}
bool FaultInjectionEnv::FileExists(const std::string& path) { return base_->FileExists(path); }
bool FaultInjectionEnv::IsDirectory(const std::string& path) { return base_->IsDirectory(path); }
absl::StatusOr<std::vector<std::string>> FaultInjectionEnv::GetChildren(const std::string& dir) {
  return base_->GetChildren(dir);
}
absl::StatusOr<uint64_t> FaultInjectionEnv::FileSize(const std::string& path) {
  if (absl::Status s = TakeCallFault(Call::kFileSize, "stat", path); !s.ok()) return s;
  return base_->FileSize(path);
}

void FaultInjectionEnv::SetFreeSpaceBytes(std::optional<uint64_t> bytes) {
  util::MutexLock l(&mu_);
  free_space_ = bytes;
}

absl::StatusOr<uint64_t> FaultInjectionEnv::FreeSpaceBytes(const std::string& path) {
  {
    util::MutexLock l(&mu_);
    if (free_space_.has_value()) return *free_space_;
  }
  return base_->FreeSpaceBytes(path);
}

absl::Status FaultInjectionEnv::RemoveFile(const std::string& path) {
  if (absl::Status s = TakeCallFault(Call::kRemove, "unlink", path); !s.ok()) return s;
  if (absl::Status s = base_->RemoveFile(path); !s.ok()) return s;
  util::MutexLock l(&mu_);
  files_.erase(path);
  return absl::OkStatus();
}

absl::Status FaultInjectionEnv::RemoveDir(const std::string& path) {
  if (absl::Status s = TakeCallFault(Call::kRemove, "rmdir", path); !s.ok()) return s;
  return base_->RemoveDir(path);
}
absl::Status FaultInjectionEnv::CreateDir(const std::string& path) {
  if (absl::Status s = TakeCallFault(Call::kCreateDir, "mkdir", path); !s.ok()) return s;
  return base_->CreateDir(path);
}

absl::Status FaultInjectionEnv::CreateSymlink(const std::string& target, const std::string& link) {
  if (absl::Status s = TakeCallFault(Call::kSymlink, "symlink", link, target); !s.ok()) return s;
  return base_->CreateSymlink(target, link);
}

bool FaultInjectionEnv::IsSymlink(const std::string& path) { return base_->IsSymlink(path); }

absl::Status FaultInjectionEnv::RenameFile(const std::string& src, const std::string& dst) {
  if (absl::Status s = TakeCallFault(Call::kRename, "rename", src, dst); !s.ok()) return s;
  if (absl::Status s = base_->RenameFile(src, dst); !s.ok()) return s;
  util::MutexLock l(&mu_);
  files_.erase(dst);  // replaced
  std::vector<std::pair<std::string, std::shared_ptr<FileState>>> moved;
  const std::string prefix = src + "/";
  for (auto it = files_.begin(); it != files_.end();) {
    if (it->first == src) {
      // The new name is durable only after its directory is synced.
      it->second->dir_synced = false;
      moved.emplace_back(dst, it->second);
      it = files_.erase(it);
    } else if (absl::StartsWith(it->first, prefix)) {
      // A file inside a renamed directory keeps its entry in that directory.
      moved.emplace_back(dst + "/" + it->first.substr(prefix.size()), it->second);
      it = files_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [path, state] : moved) {
    state->path = path;
    files_[path] = std::move(state);
  }
  return absl::OkStatus();
}

absl::Status FaultInjectionEnv::Truncate(const std::string& path, uint64_t size_bytes) {
  if (absl::Status s = base_->Truncate(path, size_bytes); !s.ok()) return s;
  std::shared_ptr<FileState> state;
  {
    util::MutexLock l(&mu_);
    if (auto it = files_.find(path); it != files_.end()) state = it->second;
  }
  if (state) RecordTruncate(state.get(), size_bytes);
  return absl::OkStatus();
}

absl::Status FaultInjectionEnv::SyncDir(const std::string& dir) {
  if (absl::Status s = TakeCallFault(Call::kSyncDir, "fsync", dir); !s.ok()) return s;
  if (!skip_real_sync()) {
    if (absl::Status s = base_->SyncDir(dir); !s.ok()) return s;
  }
  util::MutexLock l(&mu_);
  ++dir_sync_count_;
  for (auto& [path, state] : files_) {
    if (DirName(path) == DirName(JoinPath(dir, "x"))) state->dir_synced = true;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<FileLock>> FaultInjectionEnv::LockFile(const std::string& path) {
  return base_->LockFile(path);
}

absl::Status FaultInjectionEnv::DropUnsyncedData() {
  util::MutexLock l(&mu_);
  for (auto it = files_.begin(); it != files_.end();) {
    FileState& st = *it->second;
    if (!st.dir_synced) {
      absl::Status s = base_->RemoveFile(st.path);
      if (!s.ok() && !absl::IsNotFound(s)) return s;
      it = files_.erase(it);
      continue;
    }
    // Unsynced appends are lost; space that was already allocated (and
    // synced) reads as zeros again.
    if (absl::Status s = base_->Truncate(st.path, st.synced_pos); !s.ok()) return s;
    if (st.synced_size > st.synced_pos) {
      if (absl::Status s = base_->Truncate(st.path, st.synced_size); !s.ok()) return s;
    }
    ++it;
  }
  return absl::OkStatus();
}

}  // namespace cppetcd::util
