// LMDB backend. One environment, one file (MDB_NOSUBDIR), one named database
// per bucket, opened once at Open so that the handles are valid in every
// later transaction. Read transactions are recycled (mdb_txn_reset/renew)
// through a small pool to keep BeginRead cheap on the Range hot path.
#include "cppetcd/storage/backend.h"

#include <lmdb.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"

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

// std::mutex, not absl::Mutex: Debian's abseil is not TSan-instrumented.
struct Backend::ReadPool {
  std::mutex mu;
  std::vector<MDB_txn*> txns;  // guarded by mu
};

Backend::Backend(std::string path, BackendOptions options)
    : path_(std::move(path)), options_(std::move(options)), read_pool_(new ReadPool()) {}

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

std::string EncodeBigEndian64(uint64_t v) {
  std::string s(8, '\0');
  PutBigEndian64(v, s.data());
  return s;
}

// ---- ReadTxn ----

ReadTxn::~ReadTxn() { Release(); }

void ReadTxn::Release() {
  if (txn_ == nullptr) return;
  MDB_txn* txn = std::exchange(txn_, nullptr);
  {  // only read txns get here: WriteTxn ends its txn in its destructor
    mdb_txn_reset(txn);
    Backend::ReadPool* pool = backend_->read_pool_.get();
    std::lock_guard<std::mutex> l(pool->mu);
    if (pool->txns.size() < kMaxPooledReadTxns) {
      pool->txns.push_back(txn);
      return;
    }
  }
  mdb_txn_abort(txn);
}

int64_t Backend::BucketHandle(std::string_view bucket) const {
  if (bucket.size() == kKeyBucket.size() && bucket == kKeyBucket) return key_dbi_;
  for (const auto& [name, dbi] : buckets_) {
    if (name == bucket) return dbi;
  }
  return -1;
}

#define CPPETCD_DBI(var, bucket)                                                       \
  if (txn_ == nullptr) return absl::FailedPreconditionError("storage: txn has ended"); \
  int64_t var##_h = backend_->BucketHandle(bucket);                                    \
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
  mdb_txn_abort(std::exchange(txn_, nullptr));
}

absl::Status WriteTxn::Commit() {
  if (txn_ == nullptr) return absl::FailedPreconditionError("storage: txn has ended");
  int rc = mdb_txn_commit(std::exchange(txn_, nullptr));
  return LmdbStatus(rc, "commit");
}

absl::Status WriteTxn::PutFlags(std::string_view bucket, std::string_view key,
                                std::string_view value, unsigned flags) {
  CPPETCD_DBI(dbi, bucket);
  if (key.empty()) return absl::InvalidArgumentError("storage: empty key");
  MDB_val k = ToVal(key), v = ToVal(value);
  int rc = mdb_put(txn_, dbi, &k, &v, flags);
  if (rc == MDB_KEYEXIST && (flags & MDB_APPEND) != 0) {
    k = ToVal(key);
    v = ToVal(value);
    rc = mdb_put(txn_, dbi, &k, &v, flags & ~MDB_APPEND);
  }
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
  if (key.empty()) return absl::InvalidArgumentError("storage: empty key");
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
  return absl::Span<char>(static_cast<char*>(v.mv_data), size);
}

absl::Status WriteTxn::Delete(std::string_view bucket, std::string_view key) {
  CPPETCD_DBI(dbi, bucket);
  if (key.empty()) return absl::OkStatus();
  MDB_val k = ToVal(key);
  int rc = mdb_del(txn_, dbi, &k, nullptr);
  if (rc == MDB_NOTFOUND) return absl::OkStatus();
  return LmdbStatus(rc, "delete");
}

#undef CPPETCD_DBI

// ---- Backend ----

absl::StatusOr<std::unique_ptr<Backend>> Backend::Open(const std::string& path,
                                                       BackendOptions options) {
  std::unique_ptr<Backend> b(new Backend(path, std::move(options)));
  int rc = mdb_env_create(&b->env_);
  if (rc != MDB_SUCCESS) return LmdbStatus(rc, "env create");
  if ((rc = mdb_env_set_maxdbs(b->env_, kMaxBuckets)) != MDB_SUCCESS ||
      (rc = mdb_env_set_maxreaders(b->env_, kMaxReaders)) != MDB_SUCCESS ||
      (rc = mdb_env_set_mapsize(b->env_, b->options_.map_size_bytes)) != MDB_SUCCESS) {
    return LmdbStatus(rc, "env config");
  }
  unsigned flags = MDB_NOSUBDIR | MDB_NOTLS;
  if (b->options_.no_sync) flags |= MDB_NOSYNC;
  rc = mdb_env_open(b->env_, path.c_str(), flags, 0600);
  if (rc != MDB_SUCCESS) return LmdbStatus(rc, absl::StrCat("open ", path));
  int dead = 0;
  mdb_reader_check(b->env_, &dead);

  std::vector<std::string> names(std::begin(kAllBuckets), std::end(kAllBuckets));
  for (const auto& extra : b->options_.extra_buckets) names.push_back(extra);
  MDB_txn* txn = nullptr;
  rc = mdb_txn_begin(b->env_, nullptr, 0, &txn);
  if (rc != MDB_SUCCESS) return LmdbStatus(rc, "begin bucket txn");
  for (const auto& name : names) {
    MDB_dbi dbi;
    rc = mdb_dbi_open(txn, name.c_str(), MDB_CREATE, &dbi);
    if (rc != MDB_SUCCESS) {
      mdb_txn_abort(txn);
      return LmdbStatus(rc, absl::StrCat("open bucket ", name));
    }
    b->buckets_.emplace_back(name, dbi);
    if (name == kKeyBucket) b->key_dbi_ = dbi;
  }
  rc = mdb_txn_commit(txn);
  if (rc != MDB_SUCCESS) return LmdbStatus(rc, "commit bucket txn");

  return b;
}

Backend::~Backend() {
  if (env_ == nullptr) return;
  {
    std::lock_guard<std::mutex> l(read_pool_->mu);
    for (MDB_txn* t : read_pool_->txns) mdb_txn_abort(t);
    read_pool_->txns.clear();
  }
  mdb_env_close(env_);
}

absl::StatusOr<std::unique_ptr<ReadTxn>> Backend::BeginRead() {
  MDB_txn* txn = nullptr;
  {
    std::lock_guard<std::mutex> l(read_pool_->mu);
    if (!read_pool_->txns.empty()) {
      txn = read_pool_->txns.back();
      read_pool_->txns.pop_back();
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
    int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
    if (rc != MDB_SUCCESS) return LmdbStatus(rc, "begin read");
  }
  return std::unique_ptr<ReadTxn>(new ReadTxn(this, txn));
}

absl::StatusOr<std::unique_ptr<WriteTxn>> Backend::BeginWrite() {
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  if (rc != MDB_SUCCESS) return LmdbStatus(rc, "begin write");
  return std::unique_ptr<WriteTxn>(new WriteTxn(this, txn));
}

absl::Status Backend::Sync() { return LmdbStatus(mdb_env_sync(env_, 1), "sync"); }

int64_t Backend::SizeBytes() const {
  struct stat st;
  if (::stat(path_.c_str(), &st) != 0) return 0;
  return static_cast<int64_t>(st.st_size);
}

int64_t Backend::SizeInUseBytes() const {
  MDB_envinfo info;
  MDB_stat st;
  if (mdb_env_info(env_, &info) != MDB_SUCCESS || mdb_env_stat(env_, &st) != MDB_SUCCESS) return 0;
  MDB_txn* txn = nullptr;
  if (mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn) != MDB_SUCCESS) return 0;
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
  return static_cast<int64_t>((total_pages - free_pages) * st.ms_psize);
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
      if (BucketHandle(FromVal(k)) < 0) {
        options_.logger.Warn("skipping unknown bucket of the source database",
                             {{"path", db_path}, {"bucket", std::string(FromVal(k))}});
      }
      rc = mdb_cursor_get(cur.c, &k, &v, MDB_NEXT);
    }
    if (rc != MDB_NOTFOUND) return SourceStatus(rc, db_path, "list buckets");
  }

  TxnGuard dst;
  if ((rc = mdb_txn_begin(env_, nullptr, 0, &dst.txn)) != MDB_SUCCESS) {
    return LmdbStatus(rc, "begin write");
  }
  uint64_t copied = 0;
  for (const auto& [name, dbi] : buckets_) {
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
  return Sync();
}

absl::Status Backend::CopyTo(int fd) {
  return LmdbStatus(mdb_env_copyfd2(env_, fd, MDB_CP_COMPACT), "copy");
}

}  // namespace cppetcd::storage
