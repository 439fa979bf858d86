// LMDB backend. One environment, one file (MDB_NOSUBDIR), one named database
// per bucket, opened once with the environment so that the handles are valid
// in every later transaction. Read transactions are recycled
// (mdb_txn_reset/renew) through a small pool per environment to keep
// BeginRead cheap on the Range hot path.
//
// Defragmentation swaps the environment: internal::LmdbEnv is shared by the
// Backend (the current one) and by every transaction begun on it, and closed
// when the last of them lets go. Before the new environment opens the file
// path, the old one's "<path>-lock" is unlinked: LMDB keeps the last txn id
// in the lock file, so two environments must never share one; the old one
// keeps using its open (now nameless) lock and data files.
//
// File access: the backend's own file operations (the leftover
// defragmentation copy, the lock-file unlink and the rename of a
// defragmentation, directory syncs, SizeBytes, CopyTo(WritableFile*)) go
// through BackendOptions::env. LMDB's own I/O (open, pwrite, fdatasync and
// the mmap of the database, its lock file and the defragmentation copy) and
// the checks of a file right before LMDB maps it (the stat in
// ReplaceContentsFrom, CheckLmdbFile's mmap) cannot: LMDB takes a path or a
// descriptor, not our Env, and a check must look at the very file LMDB maps.
#include "cppetcd/storage/backend.h"

#include <fcntl.h>
#include <lmdb.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "cppetcd/storage/lmdb_check.h"
#include "cppetcd/util/crc32c.h"

namespace cppetcd::storage {
namespace {

constexpr unsigned kMaxBuckets = 64;
constexpr unsigned kMaxReaders = 1024;
constexpr size_t kMaxPooledReadTxns = 64;

MDB_val ToVal(std::string_view s) {
  MDB_val v;
  v.mv_size = s.size();
  v.mv_data = const_cast<char*>(s.data());
  return v;
}

std::string_view FromVal(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

}  // namespace

namespace internal {

// util::Mutex (util/mutex.h), not absl::Mutex: Debian's abseil is not TSan-instrumented.
struct LmdbEnv {
  MDB_env* env = nullptr;
  // Bucket names and their LMDB handles (MDB_dbi), fixed once opened; the
  // same order in every environment of one Backend.
  std::vector<std::pair<std::string, unsigned>> buckets;
  unsigned key_dbi = 0;  // kKeyBucket's handle, the hot path
  util::Mutex pool_mu;
  std::vector<MDB_txn*> pool ABSL_GUARDED_BY(pool_mu);  // reset read txns for reuse

  LmdbEnv() = default;
  LmdbEnv(const LmdbEnv&) = delete;
  LmdbEnv& operator=(const LmdbEnv&) = delete;
  ~LmdbEnv() {
    {
      util::MutexLock l(&pool_mu);
      for (MDB_txn* t : pool) mdb_txn_abort(t);
      pool.clear();
    }
    if (env != nullptr) mdb_env_close(env);
  }

  int64_t Handle(std::string_view bucket) const {
    if (bucket.size() == kKeyBucket.size() && bucket == kKeyBucket) return key_dbi;
    for (const auto& [name, dbi] : buckets) {
      if (name == bucket) return dbi;
    }
    return -1;
  }
};

}  // namespace internal

using internal::LmdbEnv;

// A key a write txn changed, with its value after the commit (nullopt:
// deleted), for replay into a defragmentation's copy.
struct Backend::ChangedKey {
  size_t bucket_index;  // into LmdbEnv::buckets
  std::string key;
  std::optional<std::string> value;
};

Backend::Backend(std::string path, BackendOptions options)
    : path_(std::move(path)), options_(std::move(options)) {}

absl::Status LmdbStatus(int rc, std::string_view what) {
  if (rc == MDB_SUCCESS) return absl::OkStatus();
  std::string msg = absl::StrCat("storage: ", std::string(what), ": ", mdb_strerror(rc));
  switch (rc) {
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
    case MDB_READERS_FULL:
    case MDB_DBS_FULL:
      return absl::ResourceExhaustedError(msg);
    case MDB_NOTFOUND:
      return absl::NotFoundError(msg);
    case MDB_BAD_VALSIZE:
      // A key or value outside LMDB's limits: refused before any change.
      return absl::InvalidArgumentError(msg);
    case ENOSPC:
      return absl::ResourceExhaustedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

void PutBigEndian64(uint64_t v, char* out) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}

uint64_t GetBigEndian64(const char* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}

bool IsCppetcdOnlyBucket(std::string_view bucket) {
  return std::find(std::begin(kCppetcdOnlyBuckets), std::end(kCppetcdOnlyBuckets), bucket) !=
         std::end(kCppetcdOnlyBuckets);
}

std::string EncodeBigEndian64(uint64_t v) {
  std::string s(8, '\0');
  PutBigEndian64(v, s.data());
  return s;
}


// ---- ReadTxn ----

ReadTxn::ReadTxn(Backend* backend, std::shared_ptr<LmdbEnv> env, MDB_txn* txn)
    : backend_(backend), env_(std::move(env)), txn_(txn) {}

ReadTxn::~ReadTxn() { Release(); }

void ReadTxn::Release() {
  if (txn_ == nullptr) return;
  MDB_txn* txn = std::exchange(txn_, nullptr);
  {  // only read txns get here: WriteTxn ends its txn in its destructor
    mdb_txn_reset(txn);
    util::MutexLock l(&env_->pool_mu);
    if (env_->pool.size() < kMaxPooledReadTxns) {
      env_->pool.push_back(txn);
      return;
    }
  }
  mdb_txn_abort(txn);
}

int64_t ReadTxn::Handle(std::string_view bucket) const { return env_->Handle(bucket); }

int64_t Backend::BucketHandle(std::string_view bucket) const {
  return CurrentEnv()->Handle(bucket);
}

#define CPPETCD_DBI(var, bucket)                                                       \
  if (txn_ == nullptr) return absl::FailedPreconditionError("storage: txn has ended"); \
  int64_t var##_h = Handle(bucket);                                                    \
  if (var##_h < 0) return absl::NotFoundError(absl::StrCat("storage: no bucket ", std::string(bucket))); \
  MDB_dbi var = static_cast<MDB_dbi>(var##_h)

absl::StatusOr<std::optional<std::string_view>> ReadTxn::Get(std::string_view bucket,
                                                             std::string_view key) {
  CPPETCD_DBI(dbi, bucket);
  if (key.empty()) return std::optional<std::string_view>();
  MDB_val k = ToVal(key), v;
  int rc = mdb_get(txn_, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) return std::optional<std::string_view>();
  if (rc != MDB_SUCCESS) return LmdbStatus(rc, "get");
  return std::optional<std::string_view>(FromVal(v));
}

namespace {
struct Cursor {
  MDB_cursor* c = nullptr;
  ~Cursor() {
    if (c != nullptr) mdb_cursor_close(c);
  }
};
}  // namespace

absl::Status ReadTxn::Scan(std::string_view bucket, std::string_view begin, std::string_view end,
                           absl::FunctionRef<bool(std::string_view, std::string_view)> fn) {
  CPPETCD_DBI(dbi, bucket);
  Cursor cur;
  int rc = mdb_cursor_open(txn_, dbi, &cur.c);
  if (rc != MDB_SUCCESS) return LmdbStatus(rc, "cursor open");
  MDB_val k = ToVal(begin), v;
  rc = begin.empty() ? mdb_cursor_get(cur.c, &k, &v, MDB_FIRST)
                     : mdb_cursor_get(cur.c, &k, &v, MDB_SET_RANGE);
  while (rc == MDB_SUCCESS) {
    std::string_view key = FromVal(k);
    if (!end.empty() && key >= end) return absl::OkStatus();
    if (!fn(key, FromVal(v))) return absl::OkStatus();
    rc = mdb_cursor_get(cur.c, &k, &v, MDB_NEXT);
  }
  if (rc == MDB_NOTFOUND) return absl::OkStatus();
  return LmdbStatus(rc, "scan");
}

absl::Status ReadTxn::ScanReverse(std::string_view bucket, std::string_view begin,
                                  std::string_view end,
                                  absl::FunctionRef<bool(std::string_view, std::string_view)> fn) {
  CPPETCD_DBI(dbi, bucket);
  Cursor cur;
  int rc = mdb_cursor_open(txn_, dbi, &cur.c);
  if (rc != MDB_SUCCESS) return LmdbStatus(rc, "cursor open");
  MDB_val k, v;
  if (end.empty()) {
    rc = mdb_cursor_get(cur.c, &k, &v, MDB_LAST);
  } else {
    k = ToVal(end);
    rc = mdb_cursor_get(cur.c, &k, &v, MDB_SET_RANGE);
    if (rc == MDB_SUCCESS) {
      rc = mdb_cursor_get(cur.c, &k, &v, MDB_PREV);
    } else if (rc == MDB_NOTFOUND) {
      rc = mdb_cursor_get(cur.c, &k, &v, MDB_LAST);
    }
  }
  while (rc == MDB_SUCCESS) {
    std::string_view key = FromVal(k);
    if (key < begin) return absl::OkStatus();
    if (!fn(key, FromVal(v))) return absl::OkStatus();
    rc = mdb_cursor_get(cur.c, &k, &v, MDB_PREV);
  }
  if (rc == MDB_NOTFOUND) return absl::OkStatus();
  return LmdbStatus(rc, "scan reverse");
}

absl::StatusOr<uint64_t> ReadTxn::Count(std::string_view bucket) {
  CPPETCD_DBI(dbi, bucket);
  MDB_stat st;
  int rc = mdb_stat(txn_, dbi, &st);
  if (rc != MDB_SUCCESS) return LmdbStatus(rc, "stat");
  return static_cast<uint64_t>(st.ms_entries);
}

// ---- WriteTxn ----

WriteTxn::~WriteTxn() { Abort(); }

void WriteTxn::Abort() {
  if (txn_ == nullptr) return;
  // Aborting the enclosing txn aborts an open savepoint with it.
  MDB_txn* root = parent_ != nullptr ? std::exchange(parent_, nullptr) : txn_;
  txn_ = nullptr;
  mdb_txn_abort(root);
  backend_->ReleaseWriter(nullptr);
}

absl::Status WriteTxn::BeginNested() {
  if (txn_ == nullptr) return absl::FailedPreconditionError("storage: txn has ended");
  if (parent_ != nullptr) return absl::FailedPreconditionError("storage: savepoint already open");
  MDB_txn* child = nullptr;
  int rc = mdb_txn_begin(env_->env, txn_, 0, &child);
  if (rc != MDB_SUCCESS) return LmdbStatus(rc, "begin savepoint");
  parent_ = std::exchange(txn_, child);
  touched_mark_ = touched_.size();
  nested_wrote_ = false;
  return absl::OkStatus();
}

absl::Status WriteTxn::EndNested(bool keep) {
  if (txn_ == nullptr) return absl::FailedPreconditionError("storage: txn has ended");
  if (parent_ == nullptr) return absl::FailedPreconditionError("storage: no savepoint open");
  MDB_txn* child = std::exchange(txn_, std::exchange(parent_, nullptr));
  nested_wrote_ = false;
  if (keep) return LmdbStatus(mdb_txn_commit(child), "keep savepoint");
  mdb_txn_abort(child);
  touched_.resize(touched_mark_);
  return absl::OkStatus();
}

void WriteTxn::Wrote(int64_t handle, std::string_view key) {
  if (parent_ != nullptr) nested_wrote_ = true;
  if (record_) touched_.emplace_back(static_cast<unsigned>(handle), std::string(key));
}

absl::Status WriteTxn::CheckKey(std::string_view key) {
  if (key.empty()) return absl::InvalidArgumentError("storage: empty key");
  if (key.size() > kMaxKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("storage: key of ", key.size(),
                                                   " bytes is longer than ", kMaxKeyBytes));
  }
  return absl::OkStatus();
}

absl::Status WriteTxn::Commit() {
  if (txn_ == nullptr) return absl::FailedPreconditionError("storage: txn has ended");
  if (parent_ != nullptr) {
    if (absl::Status s = EndNested(true); !s.ok()) {
      Abort();
      return s;
    }
  }
  // A defragmentation is copying a snapshot older than this txn: hand it the
  // final value of every key this txn changed (read back here, so that
  // PutReserve'd values are complete).
  std::vector<Backend::ChangedKey> changes;
  if (record_) {
    std::sort(touched_.begin(), touched_.end());
    touched_.erase(std::unique(touched_.begin(), touched_.end()), touched_.end());
    changes.reserve(touched_.size());
    for (auto& [dbi, key] : touched_) {
      size_t index = 0;
      while (index < env_->buckets.size() && env_->buckets[index].second != dbi) ++index;
      MDB_val k = ToVal(key), v;
      int rc = mdb_get(txn_, dbi, &k, &v);
      std::optional<std::string> value;
      if (rc == MDB_SUCCESS) {
        value.emplace(FromVal(v));
      } else if (rc != MDB_NOTFOUND) {
        mdb_txn_abort(std::exchange(txn_, nullptr));
        backend_->ReleaseWriter(nullptr);
        return LmdbStatus(rc, "read back for defragmentation");
      }
      changes.push_back({index, std::move(key), std::move(value)});
    }
    touched_.clear();
  }
  int rc = mdb_txn_commit(std::exchange(txn_, nullptr));
  backend_->ReleaseWriter(rc == MDB_SUCCESS ? &changes : nullptr);
  return LmdbStatus(rc, "commit");
}

absl::Status WriteTxn::PutFlags(std::string_view bucket, std::string_view key,
                                std::string_view value, unsigned flags) {
  CPPETCD_DBI(dbi, bucket);
  if (absl::Status s = CheckKey(key); !s.ok()) return s;
  if (const auto& fault = backend_->options_.write_fault; fault) {
    if (absl::Status s = fault(bucket, key); !s.ok()) return s;
  }
  MDB_val k = ToVal(key), v = ToVal(value);
  int rc = mdb_put(txn_, dbi, &k, &v, flags);
  if (rc == MDB_KEYEXIST && (flags & MDB_APPEND) != 0) {
    k = ToVal(key);
    v = ToVal(value);
    rc = mdb_put(txn_, dbi, &k, &v, flags & ~MDB_APPEND);
  }
  if (rc == MDB_SUCCESS) Wrote(dbi, key);
  return LmdbStatus(rc, "put");
}

absl::Status WriteTxn::Put(std::string_view bucket, std::string_view key, std::string_view value) {
  return PutFlags(bucket, key, value, 0);
}

absl::Status WriteTxn::Append(std::string_view bucket, std::string_view key,
                              std::string_view value) {
  return PutFlags(bucket, key, value, MDB_APPEND);
}

absl::StatusOr<absl::Span<char>> WriteTxn::PutReserve(std::string_view bucket,
                                                      std::string_view key, size_t size,
                                                      bool append_hint) {
  CPPETCD_DBI(dbi, bucket);
  if (absl::Status s = CheckKey(key); !s.ok()) return s;
  if (const auto& fault = backend_->options_.write_fault; fault) {
    if (absl::Status s = fault(bucket, key); !s.ok()) return s;
  }
  MDB_val k = ToVal(key), v;
  v.mv_size = size;
  v.mv_data = nullptr;
  int rc = mdb_put(txn_, dbi, &k, &v, MDB_RESERVE | (append_hint ? MDB_APPEND : 0));
  if (rc == MDB_KEYEXIST && append_hint) {
    k = ToVal(key);
    v.mv_size = size;
    v.mv_data = nullptr;
    rc = mdb_put(txn_, dbi, &k, &v, MDB_RESERVE);
  }
  if (rc != MDB_SUCCESS) return LmdbStatus(rc, "put reserve");
  Wrote(dbi, key);
  return absl::Span<char>(static_cast<char*>(v.mv_data), size);
}

absl::Status WriteTxn::Delete(std::string_view bucket, std::string_view key) {
  CPPETCD_DBI(dbi, bucket);
  // A key LMDB cannot store cannot be there.
  if (key.empty() || key.size() > kMaxKeyBytes) return absl::OkStatus();
  MDB_val k = ToVal(key);
  int rc = mdb_del(txn_, dbi, &k, nullptr);
  if (rc == MDB_NOTFOUND) return absl::OkStatus();
  if (rc == MDB_SUCCESS) Wrote(dbi, key);
  return LmdbStatus(rc, "delete");
}

#undef CPPETCD_DBI

// ---- Backend ----

namespace {

std::string DefragPath(const std::string& path) { return path + ".defrag"; }
std::string LockPath(const std::string& path) { return path + "-lock"; }

// Opens an environment on `path` with `flags` and opens (creating) `names`
// in that order.
absl::StatusOr<std::shared_ptr<LmdbEnv>> OpenEnv(const std::string& path, uint64_t map_size_bytes,
                                                unsigned flags,
                                                const std::vector<std::string>& names) {
  auto e = std::make_shared<LmdbEnv>();
  int rc = mdb_env_create(&e->env);
  if (rc != MDB_SUCCESS) return LmdbStatus(rc, "env create");
  if ((rc = mdb_env_set_maxdbs(e->env, kMaxBuckets)) != MDB_SUCCESS ||
      (rc = mdb_env_set_maxreaders(e->env, kMaxReaders)) != MDB_SUCCESS ||
      (rc = mdb_env_set_mapsize(e->env, map_size_bytes)) != MDB_SUCCESS) {
    return LmdbStatus(rc, "env config");
  }
  rc = mdb_env_open(e->env, path.c_str(), flags, 0600);
  if (rc != MDB_SUCCESS) return LmdbStatus(rc, absl::StrCat("open ", path));
  if (mdb_env_get_maxkeysize(e->env) < static_cast<int>(kMaxKeyBytes)) {
    return absl::FailedPreconditionError(
        absl::StrCat("storage: LMDB takes keys up to ", mdb_env_get_maxkeysize(e->env),
                     " bytes; cppetcd needs ", kMaxKeyBytes));
  }
  if ((flags & MDB_NOLOCK) == 0) {
    int dead = 0;
    mdb_reader_check(e->env, &dead);
  }
  MDB_txn* txn = nullptr;
  rc = mdb_txn_begin(e->env, nullptr, 0, &txn);
  if (rc != MDB_SUCCESS) return LmdbStatus(rc, "begin bucket txn");
  for (const auto& name : names) {
    MDB_dbi dbi;
    rc = mdb_dbi_open(txn, name.c_str(), MDB_CREATE, &dbi);
    if (rc != MDB_SUCCESS) {
      mdb_txn_abort(txn);
      return LmdbStatus(rc, absl::StrCat("open bucket ", name));
    }
    e->buckets.emplace_back(name, dbi);
    if (name == kKeyBucket) e->key_dbi = dbi;
  }
  rc = mdb_txn_commit(txn);
  if (rc != MDB_SUCCESS) return LmdbStatus(rc, "commit bucket txn");
  return e;
}

std::vector<std::string> BucketNames(const BackendOptions& options) {
  std::vector<std::string> names(std::begin(kAllBuckets), std::end(kAllBuckets));
  for (const auto& extra : options.extra_buckets) names.push_back(extra);
  return names;
}

unsigned EnvFlags(const BackendOptions& options) {
  unsigned flags = MDB_NOSUBDIR | MDB_NOTLS;
  switch (options.sync_mode) {
    case SyncMode::kNoSync:
      flags |= MDB_NOSYNC;
      break;
    case SyncMode::kNoMetaSync:
      flags |= MDB_NOMETASYNC;
      break;
    case SyncMode::kFull:
      break;
  }
  return flags;
}

absl::Status FsyncDir(util::Env* env, const std::string& file_path) {
  absl::Status s = env->SyncDir(util::DirName(file_path));
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat("storage: ", s.message()));
}

// `s` with "storage: <what>: " before its message, code kept.
absl::Status Prefixed(const std::string& what, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat("storage: ", what, ": ", s.message()));
}

// Go's humanize.Bytes (SI units), as etcd logs sizes.
std::string HumanBytes(int64_t n) {
  if (n < 10) return absl::StrCat(n, " B");
  static const char* kUnits[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
  double v = static_cast<double>(n);
  int e = 0;
  while (v >= 1000 && e < 6) {
    v /= 1000;
    ++e;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), v < 10 ? "%.1f %s" : "%.0f %s", v, kUnits[e]);
  return buf;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> Backend::Open(const std::string& path,
                                                       BackendOptions options) {
  if (options.env == nullptr) options.env = util::Env::Default();
  std::unique_ptr<Backend> b(new Backend(path, std::move(options)));
  util::Env* fs = b->options_.env;
  // A defragmentation that crashed before its rename leaves its copy behind;
  // the database is the file at `path`.
  if (fs->FileExists(DefragPath(path))) {
    b->options_.logger.Warn("removing an unfinished defragmentation copy",
                            {{"path", DefragPath(path)}});
    if (absl::Status s = fs->RemoveFile(DefragPath(path)); !s.ok() && !absl::IsNotFound(s)) {
      return Prefixed("remove unfinished defragmentation copy", s);
    }
  }
  const bool existed = fs->FileExists(path);
  auto env = OpenEnv(path, b->options_.map_size_bytes, EnvFlags(b->options_),
                     BucketNames(b->options_));
  if (!env.ok()) return env.status();
  // LMDB does not fsync the directory of a file it creates: without this a
  // power loss could drop the new file's directory entry.
  if (!existed) {
    if (auto s = FsyncDir(fs, path); !s.ok()) return s;
  }
  util::MutexLock l(&b->mu_);
  b->env_ = std::move(env).value();
  return b;
}

Backend::~Backend() = default;

std::shared_ptr<LmdbEnv> Backend::CurrentEnv() const {
  util::MutexLock l(&mu_);
  return env_;
}

absl::StatusOr<std::unique_ptr<ReadTxn>> Backend::BeginRead() {
  std::shared_ptr<LmdbEnv> env = CurrentEnv();
  MDB_txn* txn = nullptr;
  {
    util::MutexLock l(&env->pool_mu);
    if (!env->pool.empty()) {
      txn = env->pool.back();
      env->pool.pop_back();
    }
  }
  if (txn != nullptr) {
    int rc = mdb_txn_renew(txn);
    if (rc != MDB_SUCCESS) {
      mdb_txn_abort(txn);
      txn = nullptr;
    }
  }
  if (txn == nullptr) {
    int rc = mdb_txn_begin(env->env, nullptr, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS) return LmdbStatus(rc, "begin read");
  }
  return std::unique_ptr<ReadTxn>(new ReadTxn(this, std::move(env), txn));
}

std::pair<std::shared_ptr<LmdbEnv>, bool> Backend::AcquireWriter() {
  util::MutexLock l(&mu_);
  writer_cv_.Wait(&mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !writer_active_ && !switching_;
  });
  writer_active_ = true;
  return {env_, recording_};
}

void Backend::ReleaseWriter(std::vector<ChangedKey>* changes) {
  {
    util::MutexLock l(&mu_);
    if (changes != nullptr && recording_) {
      for (auto& c : *changes) changed_.push_back(std::move(c));
    }
    writer_active_ = false;
  }
  writer_cv_.SignalAll();
}

absl::StatusOr<std::unique_ptr<WriteTxn>> Backend::BeginWrite() {
  auto [env, record] = AcquireWriter();
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env->env, nullptr, 0, &txn);
  if (rc != MDB_SUCCESS) {
    ReleaseWriter(nullptr);
    return LmdbStatus(rc, "begin write");
  }
  return std::unique_ptr<WriteTxn>(new WriteTxn(this, std::move(env), txn, record));
}

absl::Status Backend::Sync() { return LmdbStatus(mdb_env_sync(CurrentEnv()->env, 1), "sync"); }

int64_t Backend::SizeBytes() const {
  auto size = options_.env->FileSize(path_);
  return size.ok() ? static_cast<int64_t>(*size) : 0;
}

namespace {
bool SameEnv(const std::weak_ptr<LmdbEnv>& a, const std::shared_ptr<LmdbEnv>& b) {
  return !a.owner_before(b) && !b.owner_before(a);
}
}  // namespace

int64_t Backend::SizeInUseBytes() const {
  std::shared_ptr<LmdbEnv> e = CurrentEnv();
  MDB_env* env = e->env;
  MDB_envinfo info;
  MDB_stat st;
  if (mdb_env_info(env, &info) != MDB_SUCCESS || mdb_env_stat(env, &st) != MDB_SUCCESS) return 0;
  {
    // The pages in use change only with a commit: the quota check asks for
    // every write request once the file is near the quota, and the free list
    // is walked once per commit.
    util::MutexLock l(&in_use_mu_);
    if (in_use_.bytes >= 0 && in_use_.txn_id == info.me_last_txnid && SameEnv(in_use_.env, e)) {
      return in_use_.bytes;
    }
  }
  MDB_txn* txn = nullptr;
  if (mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn) != MDB_SUCCESS) return 0;
  const size_t txn_id = mdb_txn_id(txn);
  // Page 0 and 1 are the meta pages; me_last_pgno is the highest page used.
  uint64_t total_pages = static_cast<uint64_t>(info.me_last_pgno) + 1;
  uint64_t free_pages = 0;
  MDB_cursor* cur = nullptr;
  if (mdb_cursor_open(txn, 0 /* FREE_DBI */, &cur) == MDB_SUCCESS) {
    MDB_val k, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == MDB_SUCCESS) {
      // Each free-list record is an IDL: a count followed by page numbers.
      if (v.mv_size >= sizeof(size_t)) {
        size_t n;
        std::memcpy(&n, v.mv_data, sizeof(n));
        free_pages += n;
      }
      rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
  }
  mdb_txn_abort(txn);
  if (free_pages > total_pages) free_pages = total_pages;
  const int64_t bytes = static_cast<int64_t>((total_pages - free_pages) * st.ms_psize);
  util::MutexLock l(&in_use_mu_);
  in_use_ = InUseCache{e, txn_id, bytes};
  return bytes;
}

namespace {

// An LMDB failure on the source of ReplaceContentsFrom: a file that is not a
// (readable) LMDB database is data loss, not an internal error.
absl::Status SourceStatus(int rc, const std::string& db_path, std::string_view what) {
  if (rc == MDB_SUCCESS) return absl::OkStatus();
  std::string msg = absl::StrCat("storage: source database ", db_path, ": ", std::string(what),
                                 ": ", mdb_strerror(rc));
  switch (rc) {
    case MDB_INVALID:
    case MDB_CORRUPTED:
    case MDB_VERSION_MISMATCH:
    case MDB_PAGE_NOTFOUND:
    case MDB_INCOMPATIBLE:
      return absl::DataLossError(msg);
    case ENOENT:
      return absl::NotFoundError(msg);
    default:
      return absl::InternalError(msg);
  }
}

// Owns an environment and a transaction on it (the source side).
struct SourceEnv {
  MDB_env* env = nullptr;
  MDB_txn* txn = nullptr;
  ~SourceEnv() {
    if (txn != nullptr) mdb_txn_abort(txn);
    if (env != nullptr) mdb_env_close(env);
  }
};

// Aborts a write transaction unless released.
struct TxnGuard {
  MDB_txn* txn = nullptr;
  ~TxnGuard() {
    if (txn != nullptr) mdb_txn_abort(txn);
  }
};

}  // namespace

absl::Status Backend::ReplaceContentsFrom(const std::string& db_path) {
  struct stat st;
  if (::stat(db_path.c_str(), &st) != 0) {
    return SourceStatus(errno == ENOENT ? ENOENT : errno, db_path, "stat");
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::DataLossError(
        absl::StrCat("storage: source database ", db_path, " is not a regular file"));
  }

  // LMDB trusts its file; one from another member is checked first.
  if (absl::Status s = CheckLmdbFile(db_path); !s.ok()) return s;

  std::shared_ptr<LmdbEnv> env = CurrentEnv();
  SourceEnv src;
  int rc = mdb_env_create(&src.env);
  if (rc != MDB_SUCCESS) return SourceStatus(rc, db_path, "env create");
  if ((rc = mdb_env_set_maxdbs(src.env, kMaxBuckets)) != MDB_SUCCESS) {
    return SourceStatus(rc, db_path, "env config");
  }
  // Read-only and unlocked: nobody else uses the file, and no "-lock" file
  // is left next to it. The map size comes from the file itself.
  rc = mdb_env_open(src.env, db_path.c_str(), MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS,
                    0400);
  if (rc != MDB_SUCCESS) return SourceStatus(rc, db_path, "open");
  // LMDB trusts the file: a truncated one would fault on the first access
  // past its end. Every page up to the last one in use must be there.
  {
    MDB_envinfo info;
    MDB_stat env_stat;
    if ((rc = mdb_env_info(src.env, &info)) != MDB_SUCCESS ||
        (rc = mdb_env_stat(src.env, &env_stat)) != MDB_SUCCESS) {
      return SourceStatus(rc, db_path, "env info");
    }
    const uint64_t need = (static_cast<uint64_t>(info.me_last_pgno) + 1) * env_stat.ms_psize;
    if (static_cast<uint64_t>(st.st_size) < need) {
      return absl::DataLossError(absl::StrCat("storage: source database ", db_path,
                                              " is truncated: ", st.st_size, " bytes, pages up to ",
                                              need, " bytes in use"));
    }
  }
  if ((rc = mdb_txn_begin(src.env, nullptr, MDB_RDONLY, &src.txn)) != MDB_SUCCESS) {
    return SourceStatus(rc, db_path, "begin read");
  }

  // The source's bucket names (the keys of its main database), to warn about
  // the ones this backend does not have.
  {
    MDB_dbi main_dbi;
    if ((rc = mdb_dbi_open(src.txn, nullptr, 0, &main_dbi)) != MDB_SUCCESS) {
      return SourceStatus(rc, db_path, "open main database");
    }
    Cursor cur;
    if ((rc = mdb_cursor_open(src.txn, main_dbi, &cur.c)) != MDB_SUCCESS) {
      return SourceStatus(rc, db_path, "cursor open");
    }
    MDB_val k, v;
    rc = mdb_cursor_get(cur.c, &k, &v, MDB_FIRST);
    while (rc == MDB_SUCCESS) {
      if (env->Handle(FromVal(k)) < 0) {
        options_.logger.Warn("skipping unknown bucket of the source database",
                             {{"path", db_path}, {"bucket", std::string(FromVal(k))}});
      }
      rc = mdb_cursor_get(cur.c, &k, &v, MDB_NEXT);
    }
    if (rc != MDB_NOTFOUND) return SourceStatus(rc, db_path, "list buckets");
  }

  // The writer slot, held until the end; a running defragmentation's copy
  // would need every key replayed: cancel it instead.
  env = AcquireWriter().first;
  struct SlotGuard {
    Backend* b;
    ~SlotGuard() { b->ReleaseWriter(nullptr); }
  } slot{this};
  {
    util::MutexLock l(&mu_);
    if (recording_) {
      defrag_cancelled_ = true;
      recording_ = false;
      changed_.clear();
    }
  }
  TxnGuard dst;
  if ((rc = mdb_txn_begin(env->env, nullptr, 0, &dst.txn)) != MDB_SUCCESS) {
    return LmdbStatus(rc, "begin write");
  }
  uint64_t copied = 0;
  for (const auto& [name, dbi] : env->buckets) {
    if ((rc = mdb_drop(dst.txn, dbi, 0)) != MDB_SUCCESS) {
      return LmdbStatus(rc, absl::StrCat("empty bucket ", name));
    }
    MDB_dbi src_dbi;
    rc = mdb_dbi_open(src.txn, name.c_str(), 0, &src_dbi);
    if (rc == MDB_NOTFOUND) continue;  // absent in the source: stays empty
    if (rc != MDB_SUCCESS) return SourceStatus(rc, db_path, absl::StrCat("open bucket ", name));
    Cursor cur;
    if ((rc = mdb_cursor_open(src.txn, src_dbi, &cur.c)) != MDB_SUCCESS) {
      return SourceStatus(rc, db_path, "cursor open");
    }
    MDB_val k, v;
    rc = mdb_cursor_get(cur.c, &k, &v, MDB_FIRST);
    while (rc == MDB_SUCCESS) {
      // Source keys come in ascending order into an empty database.
      int put_rc = mdb_put(dst.txn, dbi, &k, &v, MDB_APPEND);
      if (put_rc != MDB_SUCCESS) return LmdbStatus(put_rc, absl::StrCat("copy into bucket ", name));
      ++copied;
      rc = mdb_cursor_get(cur.c, &k, &v, MDB_NEXT);
    }
    if (rc != MDB_NOTFOUND) return SourceStatus(rc, db_path, absl::StrCat("read bucket ", name));
  }
  rc = mdb_txn_commit(std::exchange(dst.txn, nullptr));
  if (rc != MDB_SUCCESS) return LmdbStatus(rc, "commit replaced contents");
  options_.logger.Info("replaced database contents", {{"source", db_path}, {"entries", copied}});
  return LmdbStatus(mdb_env_sync(env->env, 1), "sync");
}

absl::Status Backend::CopyTo(int fd) {
  std::shared_ptr<LmdbEnv> env = CurrentEnv();
  return LmdbStatus(mdb_env_copyfd2(env->env, fd, MDB_CP_COMPACT), "copy");
}

absl::Status Backend::CopyTo(util::WritableFile* out) {
  // LMDB copies to a descriptor only; a pipe hands its bytes to `out`.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return util::IoError(errno, "pipe for copy to", out->Path());
  absl::Status copy_status;
  std::thread copier([&] {
    copy_status = CopyTo(fds[1]);
    ::close(fds[1]);
  });
  absl::Status write_status;
  std::string buf(1 << 20, '\0');
  while (true) {
    const ssize_t n = ::read(fds[0], buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      // Not seen on a pipe; the copier then fails on the closed pipe.
      if (write_status.ok()) write_status = util::IoError(errno, "read copy pipe for", out->Path());
      break;
    }
    if (n == 0) break;
    // After a failed Append the rest is drained so that the copier ends.
    if (write_status.ok()) write_status = out->Append(std::string_view(buf.data(), static_cast<size_t>(n)));
  }
  ::close(fds[0]);
  copier.join();
  if (!write_status.ok()) return Prefixed("copy", write_status);
  return copy_status;
}

absl::StatusOr<uint64_t> Backend::CopySizeFromHead(std::string_view head) {
  // A page starts with a 16-byte header (pgno, pad, flags, lower, upper);
  // the meta follows: magic, version, address, mapsize, the two MDB_db
  // records (the free DB's md_pad holds the page size), last_pg, txnid.
  // Offsets for LMDB 0.9 on a 64-bit build.
  static_assert(sizeof(size_t) == 8 && sizeof(void*) == 8, "LMDB layout of 64-bit builds");
  constexpr size_t kMagicAt = 16, kPageSizeAt = 40, kLastPageAt = 136, kTxnIdAt = 144;
  constexpr uint32_t kMagic = 0xBEEFC0DE;
  auto read32 = [&](size_t at) {
    uint32_t v;
    std::memcpy(&v, head.data() + at, sizeof(v));
    return v;
  };
  auto read64 = [&](size_t at) {
    uint64_t v;
    std::memcpy(&v, head.data() + at, sizeof(v));
    return v;
  };
  if (head.size() < kTxnIdAt + 8 || read32(kMagicAt) != kMagic) {
    return absl::InvalidArgumentError("not an LMDB database copy");
  }
  const uint64_t page = read32(kPageSizeAt);
  if (page < 512 || page > (1u << 16) || head.size() < 2 * page ||
      read32(page + kMagicAt) != kMagic) {
    return absl::InvalidArgumentError("LMDB copy: head shorter than its two meta pages");
  }
  const size_t newer = read64(kTxnIdAt) >= read64(page + kTxnIdAt) ? 0 : page;
  return (read64(newer + kLastPageAt) + 1) * page;
}

absl::StatusOr<uint32_t> Backend::Hash(
    const std::vector<std::pair<std::string, std::string>>& ignore) {
  auto r = BeginRead();
  if (!r.ok()) return r.status();
  MDB_txn* txn = (*r)->txn_;
  const LmdbEnv* env = (*r)->env_.get();
  MDB_dbi main_dbi;
  int rc = mdb_dbi_open(txn, nullptr, 0, &main_dbi);
  if (rc != MDB_SUCCESS) return LmdbStatus(rc, "open main database");
  Cursor names;
  if ((rc = mdb_cursor_open(txn, main_dbi, &names.c)) != MDB_SUCCESS) {
    return LmdbStatus(rc, "cursor open");
  }
  uint32_t crc = 0;
  MDB_val n, unused;
  // The main database's keys are the bucket names, in bytewise order (as
  // bbolt's root bucket).
  rc = mdb_cursor_get(names.c, &n, &unused, MDB_FIRST);
  while (rc == MDB_SUCCESS) {
    std::string_view name = FromVal(n);
    int64_t handle = env->Handle(name);
    MDB_stat st;
    if (handle >= 0 && IsCppetcdOnlyBucket(name) &&
        mdb_stat(txn, static_cast<MDB_dbi>(handle), &st) == MDB_SUCCESS && st.ms_entries == 0) {
      handle = -1;  // see kCppetcdOnlyBuckets
    }
    if (handle >= 0) {
      crc = util::Crc32cExtend(crc, name.data(), name.size());
      std::vector<std::string_view> skip;
      for (const auto& [b, k] : ignore) {
        if (b == name) skip.push_back(k);
      }
      Cursor cur;
      if ((rc = mdb_cursor_open(txn, static_cast<MDB_dbi>(handle), &cur.c)) != MDB_SUCCESS) {
        return LmdbStatus(rc, "cursor open");
      }
      MDB_val k, v;
      int krc = mdb_cursor_get(cur.c, &k, &v, MDB_FIRST);
      while (krc == MDB_SUCCESS) {
        std::string_view key = FromVal(k);
        if (std::find(skip.begin(), skip.end(), key) == skip.end()) {
          crc = util::Crc32cExtend(crc, k.mv_data, k.mv_size);
          crc = util::Crc32cExtend(crc, v.mv_data, v.mv_size);
        }
        krc = mdb_cursor_get(cur.c, &k, &v, MDB_NEXT);
      }
      if (krc != MDB_NOTFOUND) return LmdbStatus(krc, "hash bucket");
    }
    rc = mdb_cursor_get(names.c, &n, &unused, MDB_NEXT);
  }
  if (rc != MDB_NOTFOUND) return LmdbStatus(rc, "list buckets");
  return crc;
}

// ---- Defragmentation ----

absl::StatusOr<DefragmentResult> Backend::Defragment(const DefragmentOptions& options) {
  util::MutexLock one(&defrag_mu_);
  util::Clock* clock = options_.clock != nullptr ? options_.clock : util::SystemClock::Get();
  const auto start = clock->Now();
  DefragmentResult result;
  result.size_before_bytes = SizeBytes();
  result.size_in_use_before_bytes = SizeInUseBytes();
  options_.logger.Info(
      "defragmenting",
      {{"path", path_},
       {"current-db-size-bytes", result.size_before_bytes},
       {"current-db-size", HumanBytes(result.size_before_bytes)},
       {"current-db-size-in-use-bytes", result.size_in_use_before_bytes},
       {"current-db-size-in-use", HumanBytes(result.size_in_use_before_bytes)}});
  if (absl::Status s = DefragmentLocked(options, &result); !s.ok()) {
    options_.logger.Warn("failed to defragment", {{"path", path_}, {"error", s.ToString()}});
    return s;
  }
  result.size_after_bytes = SizeBytes();
  result.size_in_use_after_bytes = SizeInUseBytes();
  result.took = clock->Now() - start;
  auto ms = [](std::chrono::nanoseconds d) {
    return absl::StrCat(static_cast<double>(d.count()) / 1e6, "ms");
  };
  options_.logger.Info(
      "finished defragmenting directory",
      {{"path", path_},
       {"current-db-size-bytes-diff", result.size_after_bytes - result.size_before_bytes},
       {"current-db-size-bytes", result.size_after_bytes},
       {"current-db-size", HumanBytes(result.size_after_bytes)},
       {"current-db-size-in-use-bytes-diff",
        result.size_in_use_after_bytes - result.size_in_use_before_bytes},
       {"current-db-size-in-use-bytes", result.size_in_use_after_bytes},
       {"current-db-size-in-use", HumanBytes(result.size_in_use_after_bytes)},
       {"took", ms(result.took)},
       {"switch-over", ms(result.switch_over)},
       {"replayed-keys", result.replayed_keys}});
  return result;
}

absl::Status Backend::DefragmentLocked(const DefragmentOptions& options,
                                       DefragmentResult* result) {
  // Bytes copied per write txn of the copy (bounds LMDB's dirty page list).
  constexpr uint64_t kCopyTxnBytes = 64ull << 20;
  // Changed keys replayed per write txn of the copy.
  constexpr size_t kReplayTxnKeys = 50000;
  // Catch-up rounds run without holding writers back until a round has
  // fewer keys than this (or the rounds run out).
  constexpr size_t kSwitchOverKeys = 4096;
  constexpr int kMaxCatchUpRounds = 16;

  auto step = [&](std::string_view name) -> absl::Status {
    return options.on_step ? options.on_step(name) : absl::OkStatus();
  };
  const std::string tmp_path = DefragPath(path_);
  util::Env* fs = options_.env;
  fs->RemoveFile(tmp_path).IgnoreError();
  std::vector<std::string> names;
  for (const auto& [name, dbi] : CurrentEnv()->buckets) names.push_back(name);
  // The copy: no lock file (nobody else opens it), no sync until asked.
  auto copy_or = OpenEnv(tmp_path, options_.map_size_bytes,
                         MDB_NOSUBDIR | MDB_NOLOCK | MDB_NOSYNC | MDB_NOTLS, names);
  if (!copy_or.ok()) {
    fs->RemoveFile(tmp_path).IgnoreError();
    return copy_or.status();
  }
  std::shared_ptr<LmdbEnv> copy = std::move(copy_or).value();
  bool holding_writers = false;  // whether this call set switching_
  auto fail = [&](absl::Status s) {
    {
      util::MutexLock l(&mu_);
      recording_ = false;
      defrag_cancelled_ = false;
      changed_.clear();
      if (holding_writers) switching_ = false;
    }
    writer_cv_.SignalAll();
    copy.reset();
    fs->RemoveFile(tmp_path).IgnoreError();
    return s;
  };
  auto cancelled = [&]() {
    util::MutexLock l(&mu_);
    return defrag_cancelled_;
  };
  auto replay = [&](const std::vector<ChangedKey>& changes) -> absl::Status {
    size_t i = 0;
    while (i < changes.size()) {
      MDB_txn* t = nullptr;
      int rc = mdb_txn_begin(copy->env, nullptr, 0, &t);
      if (rc != MDB_SUCCESS) return LmdbStatus(rc, "defrag: begin replay");
      TxnGuard guard{t};
      for (size_t n = 0; i < changes.size() && n < kReplayTxnKeys; ++i, ++n) {
        const ChangedKey& c = changes[i];
        MDB_dbi dbi = copy->buckets[c.bucket_index].second;
        MDB_val k = ToVal(c.key);
        if (c.value.has_value()) {
          MDB_val v = ToVal(*c.value);
          rc = mdb_put(t, dbi, &k, &v, 0);
        } else {
          rc = mdb_del(t, dbi, &k, nullptr);
          if (rc == MDB_NOTFOUND) rc = MDB_SUCCESS;
        }
        if (rc != MDB_SUCCESS) return LmdbStatus(rc, "defrag: replay");
      }
      rc = mdb_txn_commit(std::exchange(guard.txn, nullptr));
      if (rc != MDB_SUCCESS) return LmdbStatus(rc, "defrag: commit replay");
    }
    result->replayed_keys += changes.size();
    return absl::OkStatus();
  };

  // 1. The copy's snapshot, taken with no write txn open; every txn that
  //    begins after it records its changes.
  std::shared_ptr<LmdbEnv> src;
  MDB_txn* snapshot = nullptr;
  {
    util::MutexLock l(&mu_);
    writer_cv_.Wait(&mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !writer_active_ && !switching_;
    });
    src = env_;
    int rc = mdb_txn_begin(src->env, nullptr, MDB_RDONLY, &snapshot);
    if (rc != MDB_SUCCESS) {
      l.Unlock();
      return fail(LmdbStatus(rc, "defrag: begin read"));
    }
    recording_ = true;
    defrag_cancelled_ = false;
    changed_.clear();
  }

  // 2. Bulk copy, bucket by bucket, keys in order (densely packed pages).
  {
    struct ReadGuard {
      MDB_txn* t;
      ~ReadGuard() { mdb_txn_abort(t); }
    } read_guard{snapshot};
    for (size_t b = 0; b < names.size(); ++b) {
      Cursor cur;
      int rc = mdb_cursor_open(snapshot, src->buckets[b].second, &cur.c);
      if (rc != MDB_SUCCESS) return fail(LmdbStatus(rc, "defrag: cursor open"));
      MDB_dbi dst_dbi = copy->buckets[b].second;
      MDB_val k, v;
      rc = mdb_cursor_get(cur.c, &k, &v, MDB_FIRST);
      while (rc == MDB_SUCCESS) {
        if (cancelled()) return fail(absl::AbortedError("storage: defragmentation cancelled"));
        MDB_txn* t = nullptr;
        int wrc = mdb_txn_begin(copy->env, nullptr, 0, &t);
        if (wrc != MDB_SUCCESS) return fail(LmdbStatus(wrc, "defrag: begin copy"));
        TxnGuard guard{t};
        uint64_t bytes = 0;
        while (rc == MDB_SUCCESS && bytes < kCopyTxnBytes) {
          wrc = mdb_put(t, dst_dbi, &k, &v, MDB_APPEND);
          if (wrc != MDB_SUCCESS) return fail(LmdbStatus(wrc, "defrag: copy"));
          bytes += k.mv_size + v.mv_size;
          rc = mdb_cursor_get(cur.c, &k, &v, MDB_NEXT);
        }
        wrc = mdb_txn_commit(std::exchange(guard.txn, nullptr));
        if (wrc != MDB_SUCCESS) return fail(LmdbStatus(wrc, "defrag: commit copy"));
      }
      if (rc != MDB_NOTFOUND) return fail(LmdbStatus(rc, "defrag: read"));
    }
  }
  // Most of the file reaches the disk here, outside the switch-over.
  if (int rc = mdb_env_sync(copy->env, 1); rc != MDB_SUCCESS) {
    return fail(LmdbStatus(rc, "defrag: sync copy"));
  }
  if (absl::Status s = step("copied"); !s.ok()) return s;

  // 3. Catch up with the writers while they keep going.
  for (int round = 0; round < kMaxCatchUpRounds; ++round) {
    std::vector<ChangedKey> changes;
    bool was_cancelled;
    {
      util::MutexLock l(&mu_);
      was_cancelled = defrag_cancelled_;
      changes.swap(changed_);
    }
    if (was_cancelled) return fail(absl::AbortedError("storage: defragmentation cancelled"));
    if (absl::Status s = replay(changes); !s.ok()) return fail(s);
    if (changes.size() < kSwitchOverKeys) break;
  }

  // 4. Switch-over: writers wait; readers go on with the old environment.
  util::Clock* clock = options_.clock != nullptr ? options_.clock : util::SystemClock::Get();
  const auto switch_start = clock->Now();
  std::vector<ChangedKey> last;
  {
    util::MutexLock l(&mu_);
    switching_ = true;
    holding_writers = true;
    writer_cv_.Wait(&mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !writer_active_; });
    if (defrag_cancelled_) {
      l.Unlock();
      return fail(absl::AbortedError("storage: defragmentation cancelled"));
    }
    last.swap(changed_);
    recording_ = false;
  }
  if (absl::Status s = step("switch_over"); !s.ok()) return s;
  if (absl::Status s = replay(last); !s.ok()) return fail(s);
  if (int rc = mdb_env_sync(copy->env, 1); rc != MDB_SUCCESS) {
    return fail(LmdbStatus(rc, "defrag: sync copy"));
  }
  copy.reset();  // closes the copy's environment
  if (absl::Status s = step("before_rename"); !s.ok()) return s;
  // The old environment keeps its lock file open; the new one must get a
  // fresh one (see the file comment).
  if (absl::Status s = fs->RemoveFile(LockPath(path_)); !s.ok() && !absl::IsNotFound(s)) {
    return fail(Prefixed("defrag", s));
  }
  if (absl::Status s = fs->RenameFile(tmp_path, path_); !s.ok()) return fail(Prefixed("defrag", s));
  if (absl::Status s = FsyncDir(fs, path_); !s.ok()) {
    options_.logger.Warn("failed to sync the directory after defragmentation",
                         {{"error", s.ToString()}});
  }
  if (absl::Status s = step("after_rename"); !s.ok()) return s;
  auto fresh = OpenEnv(path_, options_.map_size_bytes, EnvFlags(options_), names);
  if (!fresh.ok()) {
    // The file at path_ is the defragmented database, complete and synced;
    // this process goes on with the old environment (on the unlinked file):
    // what it writes from now on reaches the disk only through WAL replay
    // after a restart.
    options_.logger.Error("failed to open the defragmented database",
                          {{"path", path_}, {"error", fresh.status().ToString()}});
    {
      util::MutexLock l(&mu_);
      switching_ = false;
    }
    writer_cv_.SignalAll();
    return fresh.status();
  }
  {
    util::MutexLock l(&mu_);
    env_ = std::move(fresh).value();
    switching_ = false;
  }
  writer_cv_.SignalAll();
  result->switch_over = clock->Now() - switch_start;
  return absl::OkStatus();
}

}  // namespace cppetcd::storage
