#include "cppetcd/util/env.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace cppetcd::util {

absl::Status IoError(int error_number, std::string_view op, std::string_view path) {
  std::string message(op);
  message.append(" ").append(path);
  // absl maps EIO to Unknown; a failed disk is an internal error to us.
  if (error_number == EIO) return absl::InternalError(message + ": " + std::strerror(EIO));
  return absl::ErrnoToStatus(error_number, message);
}

std::string JoinPath(std::string_view dir, std::string_view name) {
  std::string out(dir);
  if (!out.empty() && out.back() != '/') out.push_back('/');
  out.append(name);
  return out;
}

std::string DirName(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return ".";
  if (slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

namespace {

// Writes all of `data` at `offset` of `fd` (pwrite, retried on EINTR and
// short writes); `path` names the file in the error. `*written` (optional)
// gets the bytes written, also when an error ends the write part-way.
absl::Status PwriteAll(int fd, const std::string& path, uint64_t offset, std::string_view data,
                       uint64_t* written = nullptr) {
  const uint64_t start = offset;
  auto report = [&] {
    if (written != nullptr) *written = offset - start;
  };
  while (!data.empty()) {
    const ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      report();
      return IoError(e, "write", path);
    }
    offset += static_cast<uint64_t>(n);
    data.remove_prefix(static_cast<size_t>(n));
  }
  report();
  return absl::OkStatus();
}

// Reads up to `n` bytes into `scratch` (fewer only at end of file): read(2)
// at the file position when `offset` is negative, else pread(2) from
// `offset`; retried on EINTR and short reads. `scratch` is cleared on error.
absl::Status ReadFull(int fd, const std::string& path, int64_t offset, size_t n,
                      std::string* scratch) {
  scratch->resize(n);
  size_t got = 0;
  while (got < n) {
    const ssize_t r =
        offset < 0 ? ::read(fd, scratch->data() + got, n - got)
                   : ::pread(fd, scratch->data() + got, n - got, static_cast<off_t>(offset) + static_cast<off_t>(got));
    if (r < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      scratch->clear();
      return IoError(e, "read", path);
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  scratch->resize(got);
  return absl::OkStatus();
}

// Closes `*fd` once (a second call is OK and does nothing) and marks it
// closed (-1); `path` names the file in the error.
absl::Status CloseFd(int* fd, const std::string& path) {
  if (*fd < 0) return absl::OkStatus();
  const int rc = ::close(*fd);
  *fd = -1;
  if (rc != 0) return IoError(errno, "close", path);
  return absl::OkStatus();
}

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd, uint64_t pos) : path_(std::move(path)), fd_(fd), pos_(pos) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  absl::Status Append(std::string_view data) override {
    if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat("write ", path_, ": file closed"));
    uint64_t written = 0;
    absl::Status st = PwriteAll(fd_, path_, pos_, data, &written);
    pos_ += written;
    return st;
  }

  absl::Status Flush() override { return absl::OkStatus(); }

  absl::Status Sync() override {
    if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat("sync ", path_, ": file closed"));
    if (::fdatasync(fd_) != 0) return IoError(errno, "fdatasync", path_);
    return absl::OkStatus();
  }

  absl::Status Preallocate(uint64_t size_bytes) override {
    if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat("preallocate ", path_, ": file closed"));
    struct stat st;
    if (::fstat(fd_, &st) != 0) return IoError(errno, "fstat", path_);
    if (static_cast<uint64_t>(st.st_size) >= size_bytes) return absl::OkStatus();
    int rc = ::fallocate(fd_, 0, 0, static_cast<off_t>(size_bytes));
    if (rc == 0) return absl::OkStatus();
    if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL) return IoError(errno, "fallocate", path_);
    // File systems without fallocate (tmpfs on old kernels, some FUSE): a
    // sparse extension still gives zero-filled space past the data.
    if (::ftruncate(fd_, static_cast<off_t>(size_bytes)) != 0) return IoError(errno, "ftruncate", path_);
    return absl::OkStatus();
  }

  absl::Status Truncate(uint64_t size_bytes) override {
    if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat("truncate ", path_, ": file closed"));
    if (::ftruncate(fd_, static_cast<off_t>(size_bytes)) != 0) return IoError(errno, "ftruncate", path_);
    pos_ = std::min(pos_, size_bytes);
    return absl::OkStatus();
  }

  absl::Status Close() override { return CloseFd(&fd_, path_); }

  uint64_t Size() const override { return pos_; }
  const std::string& Path() const override { return path_; }

 private:
  const std::string path_;
  int fd_;
  uint64_t pos_;  // next write offset
};

class PosixSequentialFile final : public SequentialFile {
 public:
  PosixSequentialFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixSequentialFile() override { ::close(fd_); }

  absl::Status Read(size_t n, std::string* scratch) override {
    return ReadFull(fd_, path_, /*offset=*/-1, n, scratch);
  }

  absl::Status Skip(uint64_t n) override {
    if (::lseek(fd_, static_cast<off_t>(n), SEEK_CUR) < 0) return IoError(errno, "lseek", path_);
    return absl::OkStatus();
  }

 private:
  const std::string path_;
  int fd_;
};

class PosixRandomRWFile final : public RandomRWFile {
 public:
  PosixRandomRWFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixRandomRWFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  absl::Status Write(uint64_t offset, std::string_view data) override {
    if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat("write ", path_, ": file closed"));
    return PwriteAll(fd_, path_, offset, data);
  }

  absl::Status Read(uint64_t offset, size_t n, std::string* scratch) override {
    if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat("read ", path_, ": file closed"));
    if (offset > static_cast<uint64_t>(INT64_MAX)) {
      return absl::InvalidArgumentError(absl::StrCat("read ", path_, ": offset ", offset, " too large"));
    }
    return ReadFull(fd_, path_, static_cast<int64_t>(offset), n, scratch);
  }

  absl::Status Sync() override {
    if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat("sync ", path_, ": file closed"));
    if (::fdatasync(fd_) != 0) return IoError(errno, "fdatasync", path_);
    return absl::OkStatus();
  }

  absl::Status Close() override { return CloseFd(&fd_, path_); }

  const std::string& Path() const override { return path_; }

 private:
  const std::string path_;
  int fd_;
};

class PosixFileLock final : public FileLock {
 public:
  PosixFileLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixFileLock() override {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }
  const std::string& Path() const override { return path_; }

 private:
  const std::string path_;
  int fd_;
};

class PosixEnv final : public Env {
 public:
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return IoError(errno, "open", path);
    return std::make_unique<PosixWritableFile>(path, fd, 0);
  }

  absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return IoError(errno, "open", path);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      int e = errno;
      ::close(fd);
      return IoError(e, "fstat", path);
    }
    return std::make_unique<PosixWritableFile>(path, fd, static_cast<uint64_t>(st.st_size));
  }

  absl::StatusOr<std::unique_ptr<RandomRWFile>> NewRandomRWFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return IoError(errno, "open", path);
    return std::make_unique<PosixRandomRWFile>(path, fd);
  }

  absl::StatusOr<std::unique_ptr<SequentialFile>> NewSequentialFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return IoError(errno, "open", path);
    return std::make_unique<PosixSequentialFile>(path, fd);
  }

  bool FileExists(const std::string& path) override { return ::access(path.c_str(), F_OK) == 0; }

  bool IsDirectory(const std::string& path) override {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  }

  absl::StatusOr<std::vector<std::string>> GetChildren(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return IoError(errno, "opendir", dir);
    std::vector<std::string> names;
    errno = 0;
    while (struct dirent* e = ::readdir(d)) {
      std::string_view name(e->d_name);
      if (name != "." && name != "..") names.emplace_back(name);
    }
    int e = errno;
    ::closedir(d);
    if (e != 0) return IoError(e, "readdir", dir);
    std::sort(names.begin(), names.end());
    return names;
  }

  absl::StatusOr<uint64_t> FileSize(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return IoError(errno, "stat", path);
    return static_cast<uint64_t>(st.st_size);
  }

  absl::Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return IoError(errno, "unlink", path);
    return absl::OkStatus();
  }

  absl::Status RemoveDir(const std::string& path) override {
    if (::rmdir(path.c_str()) != 0) return IoError(errno, "rmdir", path);
    return absl::OkStatus();
  }

  absl::Status CreateDir(const std::string& path) override {
    if (::mkdir(path.c_str(), 0700) != 0) return IoError(errno, "mkdir", path);
    return absl::OkStatus();
  }

  absl::Status RenameFile(const std::string& src, const std::string& dst) override {
    if (::rename(src.c_str(), dst.c_str()) != 0) return IoError(errno, "rename", absl::StrCat(src, " -> ", dst));
    return absl::OkStatus();
  }

  absl::Status Truncate(const std::string& path, uint64_t size_bytes) override {
    if (::truncate(path.c_str(), static_cast<off_t>(size_bytes)) != 0) return IoError(errno, "truncate", path);
    return absl::OkStatus();
  }

  absl::Status SyncDir(const std::string& dir) override {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return IoError(errno, "open", dir);
    int rc = ::fsync(fd);
    int e = errno;
    ::close(fd);
    if (rc != 0) return IoError(e, "fsync", dir);
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EISDIR) fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return IoError(errno, "open", path);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int e = errno;
      ::close(fd);
      if (e == EWOULDBLOCK) return absl::UnavailableError(absl::StrCat("lock ", path, ": held by another user"));
      return IoError(e, "flock", path);
    }
    return std::make_unique<PosixFileLock>(path, fd);
  }
};

}  // namespace

Env* Env::Default() {
  static PosixEnv* env = new PosixEnv();
  return env;
}

absl::StatusOr<std::string> Env::ReadFileToString(const std::string& path) {
  auto file = NewSequentialFile(path);
  if (!file.ok()) return file.status();
  std::string out, chunk;
  if (auto size = FileSize(path); size.ok()) out.reserve(*size);
  while (true) {
    if (absl::Status s = (*file)->Read(1 << 20, &chunk); !s.ok()) return s;
    if (chunk.empty()) break;
    out += chunk;
  }
  return out;
}

absl::StatusOr<uint64_t> Env::FreeSpaceBytes(const std::string& path) {
  struct statvfs vfs;
  if (::statvfs(path.c_str(), &vfs) != 0) return IoError(errno, "statvfs", path);
  return static_cast<uint64_t>(vfs.f_bavail) * static_cast<uint64_t>(vfs.f_frsize);
}

absl::Status Env::RemoveAll(const std::string& path) {
  // unlink first: it removes files and symlinks (never following a link into
  // a directory elsewhere) and fails on a real directory.
  absl::Status s = RemoveFile(path);
  if (s.ok() || absl::IsNotFound(s)) return absl::OkStatus();
  if (!IsDirectory(path)) return s;
  auto children = GetChildren(path);
  if (!children.ok()) return children.status();
  for (const std::string& c : *children) {
    if (absl::Status s = RemoveAll(JoinPath(path, c)); !s.ok()) return s;
  }
  return RemoveDir(path);
}

absl::Status Env::CreateDirAll(const std::string& path) {
  if (IsDirectory(path)) return absl::OkStatus();
  std::string parent = DirName(path);
  if (parent != path && parent != "." && parent != "/") {
    if (absl::Status s = CreateDirAll(parent); !s.ok()) return s;
  }
  absl::Status s = CreateDir(path);
  if (absl::IsAlreadyExists(s) && IsDirectory(path)) return absl::OkStatus();
  return s;
}

absl::Status Env::CreateSymlink(const std::string& target, const std::string& link) {
  if (::symlink(target.c_str(), link.c_str()) != 0) {
    return IoError(errno, "symlink", absl::StrCat(link, " -> ", target));
  }
  return absl::OkStatus();
}

bool Env::IsSymlink(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode);
}

absl::StatusOr<std::string> ReadFileBounded(Env* env, const std::string& path, uint64_t max_bytes) {
  auto file = env->NewSequentialFile(path);
  if (!file.ok()) return file.status();
  std::string out, chunk;
  while (true) {
    // Never more than one byte past the bound in memory.
    const uint64_t want = std::min<uint64_t>(1 << 20, max_bytes + 1 - out.size());
    if (absl::Status s = (*file)->Read(static_cast<size_t>(want), &chunk); !s.ok()) return s;
    if (chunk.empty()) break;
    out += chunk;
    if (out.size() > max_bytes) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": file is larger than ", max_bytes, " bytes"));
    }
  }
  return out;
}

absl::Status Env::UnlockFile(std::unique_ptr<FileLock> lock) {
  lock.reset();
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(Env* env, const std::string& path, std::string_view data) {
  const std::string tmp = path + ".tmp";
  auto file = env->NewWritableFile(tmp);
  if (!file.ok()) return file.status();
  absl::Status s = (*file)->Append(data);
  if (s.ok()) s = (*file)->Sync();
  absl::Status c = (*file)->Close();
  if (s.ok()) s = c;
  if (s.ok()) s = env->RenameFile(tmp, path);
  if (s.ok()) return env->SyncDir(DirName(path));
  (void)env->RemoveFile(tmp);
  return s;
}

}  // namespace cppetcd::util
