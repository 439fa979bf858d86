// libcppetcd_powerloss.so: an LD_PRELOAD interposer that records, for files
// under $CPPETCD_POWERLOSS_DIR, an undo log ($CPPETCD_POWERLOSS_LOG, outside
// that directory) of every change that is not yet durable, so that after the
// process is SIGKILLed, cppetcd-powerloss-apply can undo what a power loss
// would have lost. Record format: undo_log.h. Model: docs/reliability.md
// ("Power loss").
//
// Intercepted (glibc names, with their *64 and fortified aliases): open,
// openat, creat, close, dup, dup2, dup3, write, writev, pwrite, pwritev, ftruncate, fallocate,
// fsync, fdatasync, rename, renameat, unlink, unlinkat. Before a change the
// previous bytes are read (pread) and one record is appended with one plain
// write() to the log, so the log is in the page cache before the change is,
// and survives a SIGKILL. A record is logged only after the call it
// describes is under way (the change) or has returned (a sync), so the log
// never claims more durability than there was.
//
// Not modelled: writes through a shared writable mmap (msync passes
// through; cppetcd's LMDB does not use MDB_WRITEMAP), descriptors made by
// fcntl(F_DUPFD) (dup, dup2 and dup3 are tracked), sync_file_range (not a durability point: passes
// through), torn sectors inside one page, mkdir/rmdir, and fds >= kMaxFds.
//
// Slow fsync (independent of the undo log; works without
// CPPETCD_POWERLOSS_DIR): if $CPPETCD_POWERLOSS_FSYNC_DELAY_FILE is set, every
// fsync and fdatasync of the process (tracked descriptor or not) first
// sleeps for the number of milliseconds in that file (absent, empty or not a
// number: 0; capped at 10 s). The file is re-read at most every 100 ms, so a
// test changes the delay of a running process by rewriting it (write a
// temporary file and rename it over). The sleep happens before the sync and
// outside the mutex: other threads' writes go on meanwhile.
//
// Thread-safety: every tracked operation runs under one process-wide mutex
// (the read of old bytes, the change and the record are one step); calls on
// untracked descriptors take one relaxed atomic load and go straight through.
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cppetcd/util/crc32c.h"
#include "undo_log.h"

namespace {

using cppetcd::powerloss::RecordHeader;
namespace pl = cppetcd::powerloss;

constexpr int kMaxFds = 65536;

// g_fd_kind bits.
constexpr uint8_t kKindFile = 1;
constexpr uint8_t kKindDsync = 2;   // O_DSYNC / O_SYNC: each write is durable
constexpr uint8_t kKindAppend = 4;  // O_APPEND
constexpr uint8_t kKindDir = 8;

std::atomic<uint8_t> g_fd_kind[kMaxFds];  // 0: not tracked
uint64_t g_fd_dev[kMaxFds];               // guarded by g_mu
uint64_t g_fd_ino[kMaxFds];               // guarded by g_mu
std::string* g_fd_path[kMaxFds];          // directories only; guarded by g_mu
// For a tracked fd opened write-only: a read-only fd on the same file, from
// which the old bytes are read (pread on an O_WRONLY fd fails). 0 if none.
int g_fd_reader[kMaxFds];                 // guarded by g_mu

pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
std::string* g_dir = nullptr;  // normalised absolute path, no trailing '/'
int g_log_fd = -1;
bool g_enabled = false;
// $CPPETCD_POWERLOSS_KILL_AT: SIGKILL the process right after the n-th
// tracked change (1-based; 0 = never), a deterministic crash point that can
// fall inside a commit. Guarded by g_mu.
uint64_t g_kill_at = 0;
uint64_t g_changes = 0;

template <typename F>
F Real(const char* name) {
  void* p = dlsym(RTLD_NEXT, name);
  if (p == nullptr) {
    std::fprintf(stderr, "powerloss: dlsym(%s) failed\n", name);
    std::abort();
  }
  return reinterpret_cast<F>(p);
}

#define REAL(name, type)                               \
  static type real_fn = nullptr;                       \
  if (real_fn == nullptr) real_fn = Real<type>(#name); \
  auto& real_##name = real_fn

using OpenatFn = int (*)(int, const char*, int, ...);
using CloseFn = int (*)(int);
using WriteFn = ssize_t (*)(int, const void*, size_t);
using WritevFn = ssize_t (*)(int, const struct iovec*, int);
using PwriteFn = ssize_t (*)(int, const void*, size_t, off_t);
using PwritevFn = ssize_t (*)(int, const struct iovec*, int, off_t);
using FtruncateFn = int (*)(int, off_t);
using FallocateFn = int (*)(int, int, off_t, off_t);
using FsyncFn = int (*)(int);
using RenameatFn = int (*)(int, const char*, int, const char*);
using UnlinkatFn = int (*)(int, const char*, int);

int RealOpenat(int dirfd, const char* path, int flags, mode_t mode) {
  REAL(openat, OpenatFn);
  return real_openat(dirfd, path, flags, mode);
}
ssize_t RealPread(int fd, void* buf, size_t n, off_t off) {
  using PreadFn = ssize_t (*)(int, void*, size_t, off_t);
  REAL(pread, PreadFn);
  return real_pread(fd, buf, n, off);
}

// Lexical normalisation of an absolute path ("." and ".." and "//").
std::string Normalize(const std::string& abs) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < abs.size()) {
    size_t j = abs.find('/', i);
    if (j == std::string::npos) j = abs.size();
    std::string p = abs.substr(i, j - i);
    if (p == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!p.empty() && p != ".") {
      parts.push_back(p);
    }
    i = j + 1;
  }
  std::string out;
  for (const auto& p : parts) out += "/" + p;
  return out.empty() ? "/" : out;
}

std::string Absolute(int dirfd, const char* path) {
  if (path[0] == '/') return Normalize(path);
  char base[PATH_MAX];
  if (dirfd == AT_FDCWD) {
    if (getcwd(base, sizeof(base)) == nullptr) return "";
  } else {
    char link[64];
    std::snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
    ssize_t n = readlink(link, base, sizeof(base) - 1);
    if (n <= 0) return "";
    base[n] = '\0';
  }
  return Normalize(std::string(base) + "/" + path);
}

bool Under(const std::string& abs) {
  if (!g_enabled || abs.empty()) return false;
  return abs == *g_dir || (abs.size() > g_dir->size() && abs.compare(0, g_dir->size(), *g_dir) == 0 &&
                           abs[g_dir->size()] == '/');
}

// The slow-fsync delay (see the header comment). g_delay_path is set once in
// Init; the cached delay and the time of its next re-read are atomics.
const char* g_delay_path = nullptr;
std::atomic<int> g_delay_ms{0};
std::atomic<int64_t> g_delay_next_read_ns{0};
constexpr int64_t kDelayRereadNs = 100'000'000;
constexpr int kMaxDelayMs = 10'000;

int64_t MonotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

int ReadDelayFile() {
  int fd = RealOpenat(AT_FDCWD, g_delay_path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return 0;
  char buf[32];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  syscall(SYS_close, fd);  // untracked; skip the interposed close
  if (n <= 0) return 0;
  buf[n] = '\0';
  long v = std::strtol(buf, nullptr, 10);
  return static_cast<int>(std::clamp<long>(v, 0, kMaxDelayMs));
}

// Sleeps for the current slow-fsync delay, if any. Called with no lock held.
void SyncDelay() {
  if (g_delay_path == nullptr) return;
  const int e = errno;
  const int64_t now = MonotonicNs();
  int64_t next = g_delay_next_read_ns.load(std::memory_order_relaxed);
  // One thread per 100 ms re-reads the file; the others use the cached value.
  if (now >= next && g_delay_next_read_ns.compare_exchange_strong(next, now + kDelayRereadNs)) {
    g_delay_ms.store(ReadDelayFile(), std::memory_order_relaxed);
  }
  const int ms = g_delay_ms.load(std::memory_order_relaxed);
  if (ms > 0) {
    struct timespec ts = {ms / 1000, static_cast<long>(ms % 1000) * 1'000'000};
    // Bounded: at most a few EINTR restarts.
    for (int i = 0; i < 16 && nanosleep(&ts, &ts) != 0 && errno == EINTR; ++i) {
    }
  }
  errno = e;
}

__attribute__((constructor)) void Init() {
  if (const char* p = std::getenv("CPPETCD_POWERLOSS_FSYNC_DELAY_FILE"); p != nullptr && *p != '\0') {
    g_delay_path = p;
  }
  const char* dir = std::getenv("CPPETCD_POWERLOSS_DIR");
  const char* log = std::getenv("CPPETCD_POWERLOSS_LOG");
  if (dir == nullptr || log == nullptr || dir[0] == '\0' || log[0] == '\0') return;
  char resolved[PATH_MAX];
  std::string d = realpath(dir, resolved) != nullptr ? resolved : Absolute(AT_FDCWD, dir);
  g_dir = new std::string(Normalize(d));
  g_log_fd = RealOpenat(AT_FDCWD, log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (g_log_fd < 0) {
    std::fprintf(stderr, "powerloss: cannot open log %s: %s\n", log, std::strerror(errno));
    std::abort();
  }
  if (const char* k = std::getenv("CPPETCD_POWERLOSS_KILL_AT"); k != nullptr) {
    g_kill_at = std::strtoull(k, nullptr, 10);
  }
  g_enabled = true;
}

// After a tracked change (g_mu held): counts it, dies at the kill point.
void Changed() {
  if (++g_changes == g_kill_at) raise(SIGKILL);
}

// Appends one record (caller holds g_mu). A failed log write aborts: a
// missing record would make the crash tool keep a change it must undo.
void Log(uint8_t type, uint8_t flags, uint64_t dev, uint64_t ino, uint64_t a, uint64_t b,
         uint64_t c, const void* payload, size_t payload_bytes) {
  RecordHeader h;
  h.type = type;
  h.flags = flags;
  h.payload_bytes = static_cast<uint32_t>(payload_bytes);
  h.pid = static_cast<uint32_t>(getpid());
  h.dev = dev;
  h.ino = ino;
  h.a = a;
  h.b = b;
  h.c = c;
  h.payload_crc = cppetcd::util::Crc32c(payload, payload_bytes);
  h.header_crc = 0;
  h.header_crc = cppetcd::util::Crc32c(&h, sizeof(h));
  std::string buf(reinterpret_cast<const char*>(&h), sizeof(h));
  if (payload_bytes > 0) buf.append(static_cast<const char*>(payload), payload_bytes);
  REAL(write, WriteFn);
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = real_write(g_log_fd, buf.data() + done, buf.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::fprintf(stderr, "powerloss: log write failed: %s\n", std::strerror(errno));
      std::abort();
    }
    done += static_cast<size_t>(n);
  }
}

// Reads [off, off+n) of fd clipped to `size`; sets *zero when all zero.
std::string ReadOld(int fd, uint64_t off, uint64_t n, uint64_t size, bool* zero) {
  if (g_fd_reader[fd] > 0) fd = g_fd_reader[fd];
  std::string out;
  if (off < size) {
    out.resize(std::min<uint64_t>(n, size - off));
    size_t got = 0;
    while (got < out.size()) {
      ssize_t r = RealPread(fd, out.data() + got, out.size() - got, static_cast<off_t>(off + got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
    out.resize(got);
  }
  *zero = true;
  for (char ch : out) {
    if (ch != 0) {
      *zero = false;
      break;
    }
  }
  return out;
}

uint64_t SizeOf(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

// Whether tracked fd still is the file it was opened as (g_mu held). An fd
// closed behind the interposer's back (a libc-internal close) and reused
// for something else is forgotten instead of being logged as that file.
bool StillSameFile(int fd) {
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_dev == g_fd_dev[fd] &&
      st.st_ino == g_fd_ino[fd]) {
    return true;
  }
  g_fd_kind[fd].store(0);
  if (g_fd_reader[fd] > 0) {
    REAL(close, CloseFn);
    real_close(g_fd_reader[fd]);
  }
  g_fd_reader[fd] = 0;
  return false;
}

bool Tracked(int fd, uint8_t kind) {
  return fd >= 0 && fd < kMaxFds && (g_fd_kind[fd].load(std::memory_order_relaxed) & kind) != 0;
}

// Logs that [off, off+n) of tracked fd is about to be overwritten (g_mu held).
void LogWrite(int fd, uint64_t off, uint64_t n) {
  if (!StillSameFile(fd)) return;
  const uint64_t size = SizeOf(fd);
  bool zero = false;
  std::string old = ReadOld(fd, off, n, size, &zero);
  uint8_t flags = zero ? pl::kFlagOldZero : 0;
  if ((g_fd_kind[fd].load() & kKindDsync) != 0) flags |= pl::kFlagDurable;
  Log(pl::kWrite, flags, g_fd_dev[fd], g_fd_ino[fd], off, n, size, old.data(), zero ? 0 : old.size());
}

// Logs a size change of tracked fd from its current size to `new_size`.
void LogTruncate(int fd, uint64_t new_size) {
  if (!StillSameFile(fd)) return;
  const uint64_t size = SizeOf(fd);
  bool zero = true;
  std::string old;
  if (new_size < size) old = ReadOld(fd, new_size, size - new_size, size, &zero);
  Log(pl::kTruncate, zero ? pl::kFlagOldZero : 0, g_fd_dev[fd], g_fd_ino[fd], new_size, 0, size,
      old.data(), zero ? 0 : old.size());
}

struct Lock {
  Lock() { pthread_mutex_lock(&g_mu); }
  ~Lock() { pthread_mutex_unlock(&g_mu); }
};

int OpenImpl(int dirfd, const char* path, int flags, mode_t mode) {
  if (!g_enabled || path == nullptr) return RealOpenat(dirfd, path, flags, mode);
  const std::string abs = Absolute(dirfd, path);
  if (!Under(abs)) return RealOpenat(dirfd, path, flags, mode);
  Lock l;
  struct stat st;
  const bool existed = stat(abs.c_str(), &st) == 0;
  if (existed && S_ISDIR(st.st_mode)) {
    int fd = RealOpenat(dirfd, path, flags, mode);
    if (fd >= 0 && fd < kMaxFds) {
      delete g_fd_path[fd];
      g_fd_path[fd] = new std::string(abs);
      g_fd_kind[fd].store(kKindDir);
    }
    return fd;
  }
  const bool writable = (flags & O_ACCMODE) != O_RDONLY;
  const bool trunc = existed && writable && (flags & O_TRUNC) != 0 && st.st_size > 0;
  int fd = RealOpenat(dirfd, path, trunc ? (flags & ~O_TRUNC) : flags, mode);
  if (fd < 0) return fd;
  if (fd >= kMaxFds) {
    std::fprintf(stderr, "powerloss: fd %d beyond the table\n", fd);
    std::abort();
  }
  struct stat fst;
  if (fstat(fd, &fst) != 0 || !S_ISREG(fst.st_mode)) return fd;
  g_fd_dev[fd] = fst.st_dev;
  g_fd_ino[fd] = fst.st_ino;
  g_fd_reader[fd] = (flags & O_ACCMODE) == O_WRONLY
                        ? RealOpenat(AT_FDCWD, abs.c_str(), O_RDONLY | O_CLOEXEC, 0)
                        : 0;
  if (g_fd_reader[fd] < 0) {
    std::fprintf(stderr, "powerloss: cannot open %s for reading\n", abs.c_str());
    std::abort();
  }
  uint8_t kind = kKindFile;
  if ((flags & O_DSYNC) != 0) kind |= kKindDsync;
  if ((flags & O_APPEND) != 0) kind |= kKindAppend;
  g_fd_kind[fd].store(kind);
  Log(pl::kFile, 0, fst.st_dev, fst.st_ino, static_cast<uint64_t>(fst.st_size), existed ? 0 : 1, 0,
      abs.data(), abs.size());
  if (trunc) {
    LogTruncate(fd, 0);
    REAL(ftruncate, FtruncateFn);
    if (real_ftruncate(fd, 0) != 0) {
      int e = errno;
      g_fd_kind[fd].store(0);
      close(fd);
      errno = e;
      return -1;
    }
  }
  return fd;
}

mode_t ModeArg(int flags, va_list ap) {
  return (flags & (O_CREAT | O_TMPFILE)) != 0 ? static_cast<mode_t>(va_arg(ap, int)) : 0;
}

// Logs a sync of fd after it succeeded.
int SyncImpl(int fd, const char* name) {
  REAL(fsync, FsyncFn);
  static FsyncFn real_fdatasync = nullptr;
  if (real_fdatasync == nullptr) real_fdatasync = Real<FsyncFn>("fdatasync");
  FsyncFn fn = std::strcmp(name, "fsync") == 0 ? real_fsync : real_fdatasync;
  if (!Tracked(fd, kKindFile | kKindDir)) return fn(fd);
  Lock l;
  int rc = fn(fd);
  if (rc != 0) return rc;
  const int e = errno;
  if ((g_fd_kind[fd].load() & kKindDir) != 0) {
    Log(pl::kDirSync, 0, 0, 0, 0, 0, 0, g_fd_path[fd]->data(), g_fd_path[fd]->size());
  } else if (StillSameFile(fd)) {
    Log(pl::kSync, 0, g_fd_dev[fd], g_fd_ino[fd], SizeOf(fd), 0, 0, nullptr, 0);
  }
  errno = e;
  return rc;
}

uint64_t IovBytes(const struct iovec* iov, int n) {
  uint64_t total = 0;
  for (int i = 0; i < n; ++i) total += iov[i].iov_len;
  return total;
}

// Offset of the next write() on fd (g_mu held).
uint64_t CurrentOffset(int fd) {
  if ((g_fd_kind[fd].load() & kKindAppend) != 0) return SizeOf(fd);
  off_t pos = lseek(fd, 0, SEEK_CUR);
  return pos < 0 ? 0 : static_cast<uint64_t>(pos);
}

// Logs the removal of the file at abs (before the call; g_mu held).
void LogUnlinkOf(const std::string& abs) {
  struct stat st;
  if (lstat(abs.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return;
  Log(pl::kUnlink, 0, st.st_dev, st.st_ino, 0, 0, 0, abs.data(), abs.size());
}

}  // namespace

extern "C" {

int open(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = ModeArg(flags, ap);
  va_end(ap);
  return OpenImpl(AT_FDCWD, path, flags, mode);
}
int open64(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = ModeArg(flags, ap);
  va_end(ap);
  return OpenImpl(AT_FDCWD, path, flags, mode);
}
int openat(int dirfd, const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = ModeArg(flags, ap);
  va_end(ap);
  return OpenImpl(dirfd, path, flags, mode);
}
int openat64(int dirfd, const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = ModeArg(flags, ap);
  va_end(ap);
  return OpenImpl(dirfd, path, flags, mode);
}
int __open_2(const char* path, int flags) { return OpenImpl(AT_FDCWD, path, flags, 0); }
int __open64_2(const char* path, int flags) { return OpenImpl(AT_FDCWD, path, flags, 0); }
int __openat_2(int dirfd, const char* path, int flags) { return OpenImpl(dirfd, path, flags, 0); }
int __openat64_2(int dirfd, const char* path, int flags) { return OpenImpl(dirfd, path, flags, 0); }
int creat(const char* path, mode_t mode) {
  return OpenImpl(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}
int creat64(const char* path, mode_t mode) {
  return OpenImpl(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int close(int fd) {
  REAL(close, CloseFn);
  if (Tracked(fd, kKindFile | kKindDir)) {
    Lock l;
    g_fd_kind[fd].store(0);
    delete g_fd_path[fd];
    g_fd_path[fd] = nullptr;
    if (g_fd_reader[fd] > 0) real_close(g_fd_reader[fd]);
    g_fd_reader[fd] = 0;
  }
  return real_close(fd);
}

// dup/dup2/dup3: the new descriptor is tracked as the old one (with its own
// read-only twin when needed); a tracked descriptor that dup2 replaces is
// forgotten first.
static int DupImpl(int oldfd, int newfd, int rc) {
  if (rc < 0 || rc >= kMaxFds) return rc;
  if (Tracked(rc, kKindFile | kKindDir) && rc != oldfd) {
    REAL(close, CloseFn);
    g_fd_kind[rc].store(0);
    if (g_fd_reader[rc] > 0) real_close(g_fd_reader[rc]);
    g_fd_reader[rc] = 0;
  }
  (void)newfd;
  if (!Tracked(oldfd, kKindFile) || rc == oldfd) return rc;
  g_fd_dev[rc] = g_fd_dev[oldfd];
  g_fd_ino[rc] = g_fd_ino[oldfd];
  using DupFn = int (*)(int);
  REAL(dup, DupFn);
  g_fd_reader[rc] = g_fd_reader[oldfd] > 0 ? real_dup(g_fd_reader[oldfd]) : 0;
  if (g_fd_reader[rc] < 0) g_fd_reader[rc] = 0;
  g_fd_kind[rc].store(g_fd_kind[oldfd].load());
  return rc;
}

int dup(int oldfd) {
  using DupFn = int (*)(int);
  REAL(dup, DupFn);
  if (!g_enabled) return real_dup(oldfd);
  Lock l;
  return DupImpl(oldfd, -1, real_dup(oldfd));
}

int dup2(int oldfd, int newfd) {
  using Dup2Fn = int (*)(int, int);
  REAL(dup2, Dup2Fn);
  if (!g_enabled) return real_dup2(oldfd, newfd);
  Lock l;
  return DupImpl(oldfd, newfd, real_dup2(oldfd, newfd));
}

int dup3(int oldfd, int newfd, int flags) {
  using Dup3Fn = int (*)(int, int, int);
  REAL(dup3, Dup3Fn);
  if (!g_enabled) return real_dup3(oldfd, newfd, flags);
  Lock l;
  return DupImpl(oldfd, newfd, real_dup3(oldfd, newfd, flags));
}

ssize_t write(int fd, const void* buf, size_t n) {
  REAL(write, WriteFn);
  if (!Tracked(fd, kKindFile)) return real_write(fd, buf, n);
  Lock l;
  LogWrite(fd, CurrentOffset(fd), n);
  ssize_t rc = real_write(fd, buf, n);
  Changed();
  return rc;
}

ssize_t writev(int fd, const struct iovec* iov, int n) {
  REAL(writev, WritevFn);
  if (!Tracked(fd, kKindFile)) return real_writev(fd, iov, n);
  Lock l;
  LogWrite(fd, CurrentOffset(fd), IovBytes(iov, n));
  ssize_t rc = real_writev(fd, iov, n);
  Changed();
  return rc;
}

ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  REAL(pwrite, PwriteFn);
  if (!Tracked(fd, kKindFile)) return real_pwrite(fd, buf, n, off);
  Lock l;
  LogWrite(fd, static_cast<uint64_t>(off), n);
  ssize_t rc = real_pwrite(fd, buf, n, off);
  Changed();
  return rc;
}
ssize_t pwrite64(int fd, const void* buf, size_t n, off_t off) { return pwrite(fd, buf, n, off); }

ssize_t pwritev(int fd, const struct iovec* iov, int n, off_t off) {
  REAL(pwritev, PwritevFn);
  if (!Tracked(fd, kKindFile)) return real_pwritev(fd, iov, n, off);
  Lock l;
  LogWrite(fd, static_cast<uint64_t>(off), IovBytes(iov, n));
  ssize_t rc = real_pwritev(fd, iov, n, off);
  Changed();
  return rc;
}
ssize_t pwritev64(int fd, const struct iovec* iov, int n, off_t off) {
  return pwritev(fd, iov, n, off);
}

int ftruncate(int fd, off_t size) {
  REAL(ftruncate, FtruncateFn);
  if (!Tracked(fd, kKindFile)) return real_ftruncate(fd, size);
  Lock l;
  LogTruncate(fd, static_cast<uint64_t>(size));
  return real_ftruncate(fd, size);
}
int ftruncate64(int fd, off_t size) { return ftruncate(fd, size); }

int fallocate(int fd, int mode, off_t off, off_t len) {
  REAL(fallocate, FallocateFn);
  if (!Tracked(fd, kKindFile)) return real_fallocate(fd, mode, off, len);
  Lock l;
  const uint64_t end = static_cast<uint64_t>(off + len);
  if ((mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) != 0) {
    LogWrite(fd, static_cast<uint64_t>(off), static_cast<uint64_t>(len));
  } else if ((mode & FALLOC_FL_KEEP_SIZE) == 0 && end > SizeOf(fd)) {
    LogTruncate(fd, end);
  }
  return real_fallocate(fd, mode, off, len);
}
int fallocate64(int fd, int mode, off_t off, off_t len) { return fallocate(fd, mode, off, len); }

int fsync(int fd) {
  SyncDelay();
  return SyncImpl(fd, "fsync");
}
int fdatasync(int fd) {
  SyncDelay();
  return SyncImpl(fd, "fdatasync");
}

int renameat(int olddirfd, const char* oldpath, int newdirfd, const char* newpath) {
  REAL(renameat, RenameatFn);
  if (!g_enabled) return real_renameat(olddirfd, oldpath, newdirfd, newpath);
  const std::string from = Absolute(olddirfd, oldpath);
  const std::string to = Absolute(newdirfd, newpath);
  if (!Under(from) && !Under(to)) return real_renameat(olddirfd, oldpath, newdirfd, newpath);
  Lock l;
  struct stat st;
  const bool exists = lstat(from.c_str(), &st) == 0;
  const bool is_dir = exists && S_ISDIR(st.st_mode);
  int rc = real_renameat(olddirfd, oldpath, newdirfd, newpath);
  if (rc != 0 || !exists || (!is_dir && !S_ISREG(st.st_mode))) return rc;
  const int e = errno;
  std::string payload = from;
  payload.push_back('\0');
  payload += to;
  // A directory rename moves every file below it: b = 1, no (dev, ino).
  Log(pl::kRename, 0, is_dir ? 0 : st.st_dev, is_dir ? 0 : st.st_ino, 0, is_dir ? 1 : 0, 0,
      payload.data(), payload.size());
  errno = e;
  return rc;
}
int rename(const char* oldpath, const char* newpath) {
  return renameat(AT_FDCWD, oldpath, AT_FDCWD, newpath);
}

int unlinkat(int dirfd, const char* path, int flags) {
  REAL(unlinkat, UnlinkatFn);
  if (!g_enabled) return real_unlinkat(dirfd, path, flags);
  const std::string abs = Absolute(dirfd, path);
  if (!Under(abs)) return real_unlinkat(dirfd, path, flags);
  Lock l;
  LogUnlinkOf(abs);
  return real_unlinkat(dirfd, path, flags);
}
int unlink(const char* path) { return unlinkat(AT_FDCWD, path, 0); }

}  // extern "C"
