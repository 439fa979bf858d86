// The file-system seam (LevelDB's Env model). Modules that persist data (wal,
// snap, storage, server, transport, util/tls) reach the disk only through an
// Env so that tests can inject I/O errors and simulate a crash that loses
// unsynced data (FaultInjectionEnv). Env::Default() is POSIX. What stays
// outside (LMDB's own I/O on its file and map, sockets, /proc) is listed in
// docs/design.md ("The Env seam").
//
// Errors: every fallible call returns a Status whose code follows errno
// (absl::ErrnoToStatusCode: ENOENT -> NotFound, EEXIST -> AlreadyExists,
// ENOSPC -> ResourceExhausted, ...; EIO -> Internal) and whose message
// names the operation and the path.
//
// Thread-safety: Env methods are thread-safe. A file object is used by one
// thread at a time.
#ifndef CPPETCD_UTIL_ENV_H_
#define CPPETCD_UTIL_ENV_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cppetcd::util {

// A file written sequentially from a position (no user-space buffering: each
// Append is handed to the kernel at once, so data survives a process crash;
// only Sync makes it survive a machine crash).
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  // Writes `data` at the current position and advances it. A short write
  // returns an error; the position then reflects the bytes written.
  virtual absl::Status Append(std::string_view data) = 0;
  // Flushes user-space buffers (none in the POSIX implementation).
  virtual absl::Status Flush() = 0;
  // fdatasync: the data written so far and the file size survive a crash.
  virtual absl::Status Sync() = 0;
  // Reserves disk space so that the file is at least `size_bytes` long; the
  // bytes past the current end read as zeros. The write position does not
  // move. Uses fallocate where supported, else extends with ftruncate.
  virtual absl::Status Preallocate(uint64_t size_bytes) = 0;
  // Cuts the file to `size_bytes` and moves the position there if it was
  // past it.
  virtual absl::Status Truncate(uint64_t size_bytes) = 0;
  // Closes the descriptor (without syncing). Later calls fail.
  virtual absl::Status Close() = 0;
  // Current write position in bytes (data written through this object plus
  // what the file held when opened for append).
  virtual uint64_t Size() const = 0;
  // The path this file was opened with.
  virtual const std::string& Path() const = 0;
};

// A file read from its start.
class SequentialFile {
 public:
  virtual ~SequentialFile() = default;
  // Reads up to `n` bytes into `scratch` (resized to what was read); an empty
  // result means end of file.
  virtual absl::Status Read(size_t n, std::string* scratch) = 0;
  virtual absl::Status Skip(uint64_t n) = 0;
};

// A file read and written at explicit offsets (pread/pwrite), e.g. one
// built page by page.
class RandomRWFile {
 public:
  virtual ~RandomRWFile() = default;
  // Writes all of `data` at `offset` (the file grows as needed). A failed
  // or short write returns an error.
  virtual absl::Status Write(uint64_t offset, std::string_view data) = 0;
  // Reads up to `n` bytes at `offset` into `scratch` (resized to what was
  // read: fewer only at the end of the file).
  virtual absl::Status Read(uint64_t offset, size_t n, std::string* scratch) = 0;
  // fdatasync.
  virtual absl::Status Sync() = 0;
  // Closes the descriptor (without syncing). Later calls fail.
  virtual absl::Status Close() = 0;
  virtual const std::string& Path() const = 0;
};

// A held lock (flock(LOCK_EX)) on a file or directory; released by
// Env::UnlockFile or when destroyed.
class FileLock {
 public:
  virtual ~FileLock() = default;
  virtual const std::string& Path() const = 0;
};

class Env {
 public:
  virtual ~Env() = default;

  // The process-wide POSIX Env. Never null; not owned by the caller.
  static Env* Default();

  // Creates `path` (truncating an existing file), write position 0.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) = 0;
  // Opens `path` for writing at its end, creating it if missing.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(const std::string& path) = 0;
  // Creates `path` (truncating an existing file) for positional reads and
  // writes.
  virtual absl::StatusOr<std::unique_ptr<RandomRWFile>> NewRandomRWFile(const std::string& path) = 0;
  // Opens an existing file for reading from its start. NotFound if missing.
  virtual absl::StatusOr<std::unique_ptr<SequentialFile>> NewSequentialFile(const std::string& path) = 0;
  // Reads a whole file. NotFound if missing.
  virtual absl::StatusOr<std::string> ReadFileToString(const std::string& path);

  virtual bool FileExists(const std::string& path) = 0;
  virtual bool IsDirectory(const std::string& path) = 0;
  // Names (not paths) of the entries of `dir`, without "." and "..", sorted.
  virtual absl::StatusOr<std::vector<std::string>> GetChildren(const std::string& dir) = 0;
  virtual absl::StatusOr<uint64_t> FileSize(const std::string& path) = 0;

  // Removes a file (NotFound if missing).
  virtual absl::Status RemoveFile(const std::string& path) = 0;
  // Removes an empty directory.
  virtual absl::Status RemoveDir(const std::string& path) = 0;
  // Removes `path` and everything under it; OK if it does not exist.
  virtual absl::Status RemoveAll(const std::string& path);
  // Creates one directory (mode 0700). AlreadyExists if it exists.
  virtual absl::Status CreateDir(const std::string& path) = 0;
  // Creates `path` and missing parents (mode 0700); OK if it exists.
  virtual absl::Status CreateDirAll(const std::string& path);
  // rename(2): atomically replaces `dst` (file, symbolic link, or empty
  // directory).
  virtual absl::Status RenameFile(const std::string& src, const std::string& dst) = 0;
  // symlink(2): creates `link` pointing at `target` (stored as given, so a
  // relative target resolves against the link's directory). AlreadyExists
  // if `link` exists.
  virtual absl::Status CreateSymlink(const std::string& target, const std::string& link);
  // Whether `path` itself is a symbolic link (lstat: the link is not
  // followed).
  virtual bool IsSymlink(const std::string& path);
  // Cuts (or extends with zeros) a file to `size_bytes`.
  virtual absl::Status Truncate(const std::string& path, uint64_t size_bytes) = 0;
  // fsync of a directory: makes creations, renames and removals of its
  // entries durable.
  virtual absl::Status SyncDir(const std::string& dir) = 0;
  // Bytes an unprivileged process can still write on the file system that
  // holds `path` (statvfs: f_bavail x f_frsize). Errors: the statvfs error
  // (NotFound for a missing path).
  virtual absl::StatusOr<uint64_t> FreeSpaceBytes(const std::string& path);

  // Takes an exclusive advisory lock (flock) on `path` (a file, created if
  // missing, or a directory). Fails with Unavailable when another process,
  // or another lock in this process, holds it; never blocks.
  virtual absl::StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path) = 0;
  // Releases a lock taken by LockFile.
  virtual absl::Status UnlockFile(std::unique_ptr<FileLock> lock);
};

// Writes `data` to `path` so that a crash leaves either the old file or the
// complete new one: write `path`.tmp, fsync, rename over `path`, fsync the
// directory.
absl::Status WriteFileAtomically(Env* env, const std::string& path, std::string_view data);

// Reads a whole file of at most `max_bytes` through env->NewSequentialFile
// (so injected faults apply). NotFound if missing; FailedPrecondition
// ("<path>: file is larger than <max_bytes> bytes") past the bound, found
// without reading more than max_bytes + 1 bytes (a FIFO or /dev/zero given
// as an operator file cannot exhaust memory).
absl::StatusOr<std::string> ReadFileBounded(Env* env, const std::string& path, uint64_t max_bytes);

// "dir/name" (no doubled '/').
std::string JoinPath(std::string_view dir, std::string_view name);
// The directory part of `path` ("." when it has none).
std::string DirName(std::string_view path);

// A Status for a failed system call: code from `error_number` (errno), message
// "<op> <path>: <strerror>".
absl::Status IoError(int error_number, std::string_view op, std::string_view path);

}  // namespace cppetcd::util

#endif  // CPPETCD_UTIL_ENV_H_
