// An Env for tests that wraps another Env and injects faults: failed or short
// writes, failed syncs, and a simulated machine crash that loses whatever was
// not made durable (LevelDB's fault_injection_test model).
//
// Durability model: a file's content is durable up to its size at its last
// WritableFile::Sync (or Env::Truncate followed by a Sync); a file created
// through this Env, or renamed, is durable in its directory only after
// SyncDir of that directory. DropUnsyncedData cuts every tracked file back to
// its durable content (bytes written after the last sync inside preallocated
// space revert to zeros) and removes files whose directory entry was never
// synced. Files that existed before the wrapper saw them are not tracked,
// nor are RandomRWFiles (their writes and syncs take the faults of
// FailWrites, ShortWriteNext and FailSyncs, their reads those of kRead).
//
// Thread-safety: all methods are thread-safe.
#ifndef CPPETCD_UTIL_FAULT_INJECTION_ENV_H_
#define CPPETCD_UTIL_FAULT_INJECTION_ENV_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "cppetcd/util/mutex.h"
#include "cppetcd/util/env.h"

namespace cppetcd::util {

class FaultInjectionEnv : public Env {
 public:
  // Calls FailCalls can make fail (besides Append and Sync, see FailWrites
  // and FailSyncs). kOpen covers NewWritableFile, NewAppendableFile and
  // NewSequentialFile and NewRandomRWFile; kRead is SequentialFile::Read
  // and RandomRWFile::Read.
  enum class Call { kOpen, kRead, kRename, kRemove, kCreateDir, kSyncDir, kSymlink, kFileSize };

  // `base` must outlive this object.
  explicit FaultInjectionEnv(Env* base);
  ~FaultInjectionEnv() override;

  // The next `n` calls of kind `call` whose path (either path of a rename or
  // symlink) contains `path_substring` fail with `error_number` and do
  // nothing; other calls are not counted. A later FailCalls of the same kind
  // replaces the earlier one.
  void FailCalls(Call call, int n, int error_number, std::string path_substring = "");

  // The next `n` WritableFile::Append calls fail with `error_number` (e.g. EIO,
  // ENOSPC) and write nothing.
  void FailWrites(int n, int error_number);
  // The next `n` WritableFile::Sync calls fail with `error_number`; the data
  // stays unsynced.
  void FailSyncs(int n, int error_number);
  // The next Append writes only its first `keep_bytes` bytes, then fails
  // with ENOSPC.
  void ShortWriteNext(size_t keep_bytes);
  // When on, Sync and SyncDir only record durability and skip the real
  // fdatasync/fsync (fast tests that loop over many files; the crash model
  // is unchanged).
  void SetSkipRealSync(bool skip);
  // Simulates a machine crash: see the durability model above. Open file
  // objects stay usable but their later writes are not expected to matter.
  absl::Status DropUnsyncedData();
  // FreeSpaceBytes answers `bytes` for every path (a nearly full disk);
  // nullopt (the default) asks the base Env.
  void SetFreeSpaceBytes(std::optional<uint64_t> bytes);
  // Counters, for tests that check how often the code under test syncs.
  int64_t sync_count() const;
  int64_t dir_sync_count() const;

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override;
  absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(const std::string& path) override;
  absl::StatusOr<std::unique_ptr<SequentialFile>> NewSequentialFile(const std::string& path) override;
  absl::StatusOr<std::unique_ptr<RandomRWFile>> NewRandomRWFile(const std::string& path) override;
  bool FileExists(const std::string& path) override;
  bool IsDirectory(const std::string& path) override;
  absl::StatusOr<std::vector<std::string>> GetChildren(const std::string& dir) override;
  absl::StatusOr<uint64_t> FileSize(const std::string& path) override;
  absl::Status RemoveFile(const std::string& path) override;
  absl::Status RemoveDir(const std::string& path) override;
  absl::Status CreateDir(const std::string& path) override;
  absl::Status RenameFile(const std::string& src, const std::string& dst) override;
  absl::Status Truncate(const std::string& path, uint64_t size_bytes) override;
  absl::Status SyncDir(const std::string& dir) override;
  absl::StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path) override;
  absl::StatusOr<uint64_t> FreeSpaceBytes(const std::string& path) override;
  absl::Status CreateSymlink(const std::string& target, const std::string& link) override;
  bool IsSymlink(const std::string& path) override;

 private:
  class File;
  friend class File;
  class ReadFile;
  friend class ReadFile;
  class RWFile;
  friend class RWFile;

  struct CallFault {
    int remaining = 0;
    int error_number = 0;
    std::string path_substring;
  };
  // The injected failure of one call of kind `call` on `path` (and `path2`),
  // consuming the counter; OK when none applies.
  absl::Status TakeCallFault(Call call, std::string_view op, const std::string& path,
                             const std::string& path2 = "");

  // What a crash would leave of one file. Shared with its open File objects
  // so that a rename (of the file or of its directory) keeps the link.
  struct FileState {
    std::string path;          // current path (the key in files_)
    uint64_t synced_pos = 0;   // bytes of written data durable at the last sync
    uint64_t synced_size = 0;  // file size (incl. preallocation) at the last sync
    bool dir_synced = false;   // its directory entry is durable
  };

  // Fault decisions for one call; consume the counters. `keep_bytes` is set
  // to the prefix a short write still writes (else the whole call fails).
  absl::Status TakeWriteFault(const std::string& path, size_t* keep_bytes);
  absl::Status TakeSyncFault(const std::string& path);
  bool skip_real_sync() const;
  void RecordSync(FileState* state, uint64_t pos);
  void RecordTruncate(FileState* state, uint64_t size_bytes);
  std::shared_ptr<FileState> Track(const std::string& path, bool existed, uint64_t size_bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Env* const base_;
  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<FileState>> files_ ABSL_GUARDED_BY(mu_);
  int fail_writes_ ABSL_GUARDED_BY(mu_) = 0;
  int fail_write_errno_ ABSL_GUARDED_BY(mu_) = 0;
  int fail_syncs_ ABSL_GUARDED_BY(mu_) = 0;
  int fail_sync_errno_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t short_write_keep_ ABSL_GUARDED_BY(mu_) = -1;  // -1 = none pending
  std::optional<uint64_t> free_space_ ABSL_GUARDED_BY(mu_);
  std::map<Call, CallFault> call_faults_ ABSL_GUARDED_BY(mu_);
  int64_t sync_count_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t dir_sync_count_ ABSL_GUARDED_BY(mu_) = 0;
  bool skip_real_sync_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace cppetcd::util

#endif  // CPPETCD_UTIL_FAULT_INJECTION_ENV_H_
