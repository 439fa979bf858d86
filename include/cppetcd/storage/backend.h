// The storage backend: one LMDB environment in a single file
// (<data-dir>/member/snap/db, opened with MDB_NOSUBDIR; LMDB keeps its reader
// table in "<path>-lock") with one named sub-database ("bucket") per concept,
// named as etcd's bbolt buckets. Keys in a bucket are ordered bytewise.
// The bucket contents are described in docs/formats-mvcc.md.
//
// Durability (BackendOptions::sync_mode; docs/design.md "Durability"): by
// default MDB_NOMETASYNC: each commit writes its data pages, fdatasyncs them,
// then writes the meta page without a sync (the next commit's fdatasync, or
// Sync(), makes it durable). A power loss can undo at most the last
// committed transaction and never leaves a meta page pointing at pages that
// are not on disk, so the B-tree stays intact; the server's WAL (fsynced
// before entries are applied) replays what was undone from the stored
// consistent index. MDB_NOSYNC (kNoSync) is NOT crash-safe: its meta pages
// may reach the disk before the data pages they point at, or after pages of
// the last synced tree were reused, and a power loss can then corrupt the
// B-tree (tests/robustness/powerloss shows it); use it only for files that
// are thrown away on a crash.
//
// Threading: Backend is thread-safe. Read transactions are consistent
// snapshots, any number at once, usable from any thread (MDB_NOTLS), but one
// transaction is not to be used by two threads at the same time. Write
// transactions are serialised (BeginWrite blocks while another write
// transaction is open, or during a defragmentation's switch-over), and a
// write transaction must be used and ended on the thread that began it.
//
// Online defragmentation (Defragment): LMDB never shrinks its file, so the
// backend writes a compact copy next to it ("<path>.defrag") from a read
// snapshot while writers go on, records the keys every later write txn
// changed, replays them into the copy, and then, with writers held back for
// a short switch-over only, replays the last changes, fsyncs, renames the
// copy over the file and switches to a fresh environment on it. Readers are
// never blocked; read txns begun on the old environment keep their snapshot
// (the old environment is closed when the last of them ends).
#ifndef CPPETCD_STORAGE_BACKEND_H_
#define CPPETCD_STORAGE_BACKEND_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "cppetcd/util/env.h"
#include "cppetcd/util/clock.h"
#include "cppetcd/util/log.h"
#include "cppetcd/util/mutex.h"

// LMDB's handle types, kept out of users' translation units.
struct MDB_env;
struct MDB_txn;

namespace cppetcd::storage {

namespace internal {
struct LmdbEnv;  // one open LMDB environment and its bucket handles
}  // namespace internal

// Sub-databases ("buckets"), named as etcd's bbolt buckets. All of them exist
// once Backend::Open returned.
inline constexpr std::string_view kKeyBucket = "key";
inline constexpr std::string_view kMetaBucket = "meta";
inline constexpr std::string_view kLeaseBucket = "lease";
inline constexpr std::string_view kMembersBucket = "members";
inline constexpr std::string_view kMembersRemovedBucket = "members_removed";
inline constexpr std::string_view kClusterBucket = "cluster";
inline constexpr std::string_view kAlarmBucket = "alarm";
inline constexpr std::string_view kAuthBucket = "auth";
inline constexpr std::string_view kAuthUsersBucket = "authUsers";
inline constexpr std::string_view kAuthRolesBucket = "authRoles";
// cppetcd only: users and roles whose names are longer than kMaxKeyBytes
// (etcd's bbolt takes keys up to 32 KiB, LMDB up to 511 bytes), keyed by the
// SHA-256 of the name (see auth/store.h). Empty unless such names exist.
inline constexpr std::string_view kAuthUsersHashedBucket = "authUsersHashed";
inline constexpr std::string_view kAuthRolesHashedBucket = "authRolesHashed";

// The buckets created by Open, in a fixed order.
inline constexpr std::string_view kAllBuckets[] = {
    kKeyBucket,       kMetaBucket,      kLeaseBucket,          kMembersBucket,
    kMembersRemovedBucket, kClusterBucket, kAlarmBucket,       kAuthBucket,
    kAuthUsersBucket, kAuthRolesBucket, kAuthUsersHashedBucket, kAuthRolesHashedBucket};

// Buckets etcd does not have. While empty they are left out of Backend::Hash
// and of `cppetcd snapshot status`, so that a database holding only what
// etcd can hold hashes as etcd's does.
inline constexpr std::string_view kCppetcdOnlyBuckets[] = {kAuthUsersHashedBucket,
                                                           kAuthRolesHashedBucket};
bool IsCppetcdOnlyBucket(std::string_view bucket);

// The longest key LMDB stores (mdb_env_get_maxkeysize of the build in use;
// Open fails if the library takes less). Put/Append/PutReserve refuse a
// longer key, or an empty one, with InvalidArgument (nothing written, the txn
// still usable); Delete treats it as absent.
inline constexpr size_t kMaxKeyBytes = 511;

// LMDB durability mode of a Backend.
enum class SyncMode {
  // MDB_NOSYNC: commits never sync; only Sync() does. A power loss can
  // corrupt the database. Not crash-safe.
  kNoSync,
  // MDB_NOMETASYNC: one fdatasync per commit (data pages); the meta page is
  // made durable by the next commit. A power loss undoes at most the last
  // committed transaction; the B-tree stays intact.
  kNoMetaSync,
  // LMDB's default: fdatasync of the data pages, then the meta page through
  // an O_DSYNC descriptor. Every returned commit is durable (two flushes).
  kFull,
};

struct BackendOptions {
  // Upper bound of the file size (LMDB map size). A write transaction that
  // would grow the file past it fails with ResourceExhausted.
  uint64_t map_size_bytes = 10ull << 30;
  // How commits reach the disk (see the file comment).
  SyncMode sync_mode = SyncMode::kNoMetaSync;
  // Buckets to create besides kAllBuckets (names up to 64 bytes).
  std::vector<std::string> extra_buckets;
  // Test seam: when set, called before every Put/Append/PutReserve; a
  // non-OK result is that call's result, with nothing written (tests make
  // one write of an apply step fail).
  std::function<absl::Status(std::string_view bucket, std::string_view key)> write_fault;
  util::Logger logger{"backend"};
  // The backend's own file operations around LMDB: the leftover
  // defragmentation copy, the lock file unlink and the rename of a
  // defragmentation, directory syncs, SizeBytes, CopyTo(WritableFile*).
  // LMDB's I/O on the database file and its map cannot go through it (see
  // docs/design.md "The Env seam"). Null: util::Env::Default(). Must outlive
  // the backend.
  util::Env* env = nullptr;
  // Times defragmentation (DefragmentResult durations); null: SystemClock.
  util::Clock* clock = nullptr;
};

class Backend;

// A consistent snapshot of the database. Destroying it ends the transaction.
// Views returned by Get and passed to Scan callbacks point into the memory map
// and stay valid until the transaction ends (for a WriteTxn: until its next
// Put/Delete or its end).
// Errors: NotFound for a bucket that does not exist; Internal for an LMDB
// failure (the message names the LMDB error).
class ReadTxn {
 public:
  virtual ~ReadTxn();
  ReadTxn(const ReadTxn&) = delete;
  ReadTxn& operator=(const ReadTxn&) = delete;

  // The value stored at `key`, or nullopt when absent.
  absl::StatusOr<std::optional<std::string_view>> Get(std::string_view bucket,
                                                      std::string_view key);

  // Calls fn(key, value) for each key in [begin, end) in ascending order;
  // `end` empty means up to the last key. fn returns false to stop early.
  absl::Status Scan(std::string_view bucket, std::string_view begin, std::string_view end,
                    absl::FunctionRef<bool(std::string_view key, std::string_view value)> fn);

  // As Scan over [begin, end), in descending order (starting at the last key
  // < end; `end` empty = the last key of the bucket).
  absl::Status ScanReverse(
      std::string_view bucket, std::string_view begin, std::string_view end,
      absl::FunctionRef<bool(std::string_view key, std::string_view value)> fn);

  // Number of entries in the bucket.
  absl::StatusOr<uint64_t> Count(std::string_view bucket);

 protected:
  friend class Backend;
  ReadTxn(Backend* backend, std::shared_ptr<internal::LmdbEnv> env, MDB_txn* txn);
  // Ends the LMDB transaction (read: abort/reset; write: see WriteTxn).
  void Release();
  // The LMDB handle of `bucket` in this txn's environment, or -1.
  int64_t Handle(std::string_view bucket) const;

  Backend* backend_;
  std::shared_ptr<internal::LmdbEnv> env_;  // keeps the environment open
  MDB_txn* txn_;                            // null once ended
};

// A read-write transaction. Its own writes are visible to its reads. Changes
// become visible to others, atomically, at Commit. Not thread-safe.
class WriteTxn : public ReadTxn {
 public:
  ~WriteTxn() override;  // aborts an uncommitted transaction

  // Inserts or replaces key -> value. ResourceExhausted when the map is full
  // (the transaction is then unusable: abort it).
  absl::Status Put(std::string_view bucket, std::string_view key, std::string_view value);

  // As Put, for keys expected to sort after every key in the bucket (e.g. the
  // key bucket's revisions): uses LMDB's append path when that holds and
  // falls back to an ordinary insert otherwise. Same result as Put.
  absl::Status Append(std::string_view bucket, std::string_view key, std::string_view value);

  // Reserves `size` bytes for the value of `key` and returns the buffer, to be
  // filled by the caller before the next operation on this transaction
  // (serialise in place: no intermediate copy). `append_hint` as Append.
  absl::StatusOr<absl::Span<char>> PutReserve(std::string_view bucket, std::string_view key,
                                              size_t size, bool append_hint = false);

  // Removes `key`; OK when it was absent.
  absl::Status Delete(std::string_view bucket, std::string_view key);

  // A savepoint (an LMDB nested transaction), so that one apply step can be
  // undone without losing the batch's earlier changes. After BeginNested
  // every call works inside the savepoint and sees the txn's earlier writes;
  // EndNested(true) keeps its changes in the txn, EndNested(false) drops
  // them. One level only (FailedPrecondition when already in one, or when
  // ending none). Commit ends an open savepoint keeping it; Abort drops all.
  // Errors: ResourceExhausted / Internal from LMDB (begin: out of memory;
  // keep: map full): treat as a local fault.
  absl::Status BeginNested();
  absl::Status EndNested(bool keep);
  bool InNested() const { return parent_ != nullptr; }
  // Whether the open savepoint has written (Put/Append/PutReserve/Delete
  // called successfully) since BeginNested.
  bool NestedWrote() const { return nested_wrote_; }

  // Makes the changes visible (and durable when the backend syncs commits).
  // The transaction ends whatever the result. ResourceExhausted on map full.
  absl::Status Commit();
  // Drops the changes. The transaction ends.
  void Abort();

 private:
  friend class Backend;
  WriteTxn(Backend* backend, std::shared_ptr<internal::LmdbEnv> env, MDB_txn* txn, bool record)
      : ReadTxn(backend, std::move(env), txn), record_(record) {}
  absl::Status PutFlags(std::string_view bucket, std::string_view key, std::string_view value,
                        unsigned flags);
  // After a successful change of `key`: notes it for a running
  // defragmentation (when record_) and for NestedWrote.
  void Wrote(int64_t handle, std::string_view key);
  // InvalidArgument for a key LMDB cannot store (see kMaxKeyBytes).
  static absl::Status CheckKey(std::string_view key);

  // Whether a defragmentation records this txn's changes.
  bool record_;
  // The enclosing txn while a savepoint is open (txn_ is then the child).
  MDB_txn* parent_ = nullptr;
  // touched_.size() at BeginNested: what EndNested(false) cuts back to.
  size_t touched_mark_ = 0;
  bool nested_wrote_ = false;
  // (bucket handle, key) changed by this txn, for the defragmentation.
  std::vector<std::pair<unsigned, std::string>> touched_;
};

// The outcome of Backend::Defragment (sizes as SizeBytes/SizeInUseBytes).
struct DefragmentResult {
  int64_t size_before_bytes = 0;
  int64_t size_in_use_before_bytes = 0;
  int64_t size_after_bytes = 0;
  int64_t size_in_use_after_bytes = 0;
  std::chrono::nanoseconds took{0};
  // How long writers were held back (the switch-over).
  std::chrono::nanoseconds switch_over{0};
  // Changed keys replayed into the copy (during the copy and at switch-over).
  uint64_t replayed_keys = 0;
};

// Test seams of Defragment.
struct DefragmentOptions {
  // Called at each step: "copied" (bulk copy done, writers running),
  // "switch_over" (writers held back, before the last replay), "before_rename"
  // (copy complete and synced), "after_rename" (renamed, old environment
  // still in use). A non-OK result stops the defragmentation right there,
  // with no clean-up, as a crash would (tests then destroy the Backend).
  std::function<absl::Status(std::string_view step)> on_step;
};

class Backend {
 public:
  // Opens or creates the database file at `path` (its directory must exist)
  // and creates the buckets. Errors: the LMDB error as Internal (or
  // ResourceExhausted when the map size is smaller than the file).
  static absl::StatusOr<std::unique_ptr<Backend>> Open(const std::string& path,
                                                       BackendOptions options);
  // Closes the environment. Every transaction must have ended.
  ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  // A read transaction: a snapshot of the last commit. Any thread.
  absl::StatusOr<std::unique_ptr<ReadTxn>> BeginRead();
  // The write transaction; blocks while another one is open.
  absl::StatusOr<std::unique_ptr<WriteTxn>> BeginWrite();

  // Flushes committed data to disk (mdb_env_sync, forced).
  absl::Status Sync();

  // Size of the database file in bytes (etcd: db size).
  int64_t SizeBytes() const;
  // Bytes of the pages in use: pages up to the last used one minus the pages
  // on LMDB's free list (etcd: db size in use). Walks the free list once per
  // committed write txn: later calls until the next commit return the value
  // remembered for that txn. Any thread.
  int64_t SizeInUseBytes() const;

  // Writes a consistent copy of the database to `fd` (mdb_env_copyfd2, with
  // compaction of free pages). Writers keep going meanwhile. The copy is a
  // complete database file openable with Open.
  absl::Status CopyTo(int fd);
  // The same copy written to `out` with Append (through the Env, so tests
  // can fail it): LMDB writes into a pipe that this call drains. Neither
  // syncs nor closes `out`. Errors: the first failed Append (the copy is
  // still drained to its end), else the copy's error.
  absl::Status CopyTo(util::WritableFile* out);
  // The size in bytes of a CopyTo copy from its first bytes (at least its
  // two meta pages: 2 x the page size, so 128 KiB always does): (last page
  // of the newer meta + 1) x page size, which is what CopyTo writes, so a
  // copy streamed through a pipe can announce its size up front.
  // InvalidArgument if `head` is short or not an LMDB file of this build.
  static absl::StatusOr<uint64_t> CopySizeFromHead(std::string_view head);

  // Replaces this database's contents with those of the LMDB file at
  // `db_path` (a file written by CopyTo, e.g. a raft snapshot's database
  // received from the leader): in ONE write transaction every bucket of this
  // backend is emptied and refilled with the source's bucket of the same
  // name (a bucket the source lacks ends up empty; source buckets this
  // backend does not know are skipped with a warning), then the transaction
  // commits and the data is synced to disk. Readers see the old or the new
  // contents, never a mix (a read txn begun earlier keeps the old snapshot).
  // The source is opened read-only in its own environment and left as is.
  // Blocks while another write txn is open (call it with none open on this
  // thread). Errors: NotFound (no such file), Internal/DataLoss for an
  // unreadable or corrupt source, ResourceExhausted (map full); on any
  // error this database is unchanged. Any thread.
  absl::Status ReplaceContentsFrom(const std::string& db_path);

  // Online defragmentation (etcd v3 API Maintenance.Defragment; etcd's
  // backend.Defrag, without its stop-the-world): see the file comment.
  // Blocking (seconds for a large file); call it on a thread of its own. One
  // at a time (a second call waits). Logs "defragmenting" and "finished
  // defragmenting directory" with etcd's size fields. Crash-safe: until the
  // rename the old file is the database (a stale "<path>.defrag" is removed
  // at Open); the copy is fsynced before the rename. A ReplaceContentsFrom
  // during the copy cancels it (Aborted). Errors: Internal / ResourceExhausted
  // from LMDB or the file system; the database is unchanged on error.
  absl::StatusOr<DefragmentResult> Defragment(const DefragmentOptions& options = {});

  // etcd backend.Hash: CRC-32C (Castagnoli) over, for each bucket in name
  // order, its name then each key and value, skipping the (bucket, key) pairs
  // in `ignore` (etcd skips meta/consistent_index); an empty bucket of
  // kCppetcdOnlyBuckets is left out altogether. Any thread.
  absl::StatusOr<uint32_t> Hash(
      const std::vector<std::pair<std::string, std::string>>& ignore);

  const std::string& path() const { return path_; }

  // Implementation detail: the LMDB handle of `bucket` in the current
  // environment, or -1.
  int64_t BucketHandle(std::string_view bucket) const;

 private:
  friend class ReadTxn;
  friend class WriteTxn;
  struct ChangedKey;
  Backend(std::string path, BackendOptions options);

  // The current environment (a new one after each defragmentation).
  std::shared_ptr<internal::LmdbEnv> CurrentEnv() const;
  // Waits for the writer slot (no writer, no switch-over); returns the
  // current environment and whether the txn's changes are to be recorded.
  std::pair<std::shared_ptr<internal::LmdbEnv>, bool> AcquireWriter();
  // Frees the writer slot; appends `changes` to the defragmentation's log.
  void ReleaseWriter(std::vector<ChangedKey>* changes);
  absl::Status DefragmentLocked(const DefragmentOptions& options, DefragmentResult* result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(defrag_mu_);

  std::string path_;
  BackendOptions options_;

  mutable util::Mutex mu_;
  util::CondVar writer_cv_;
  std::shared_ptr<internal::LmdbEnv> env_ ABSL_GUARDED_BY(mu_);
  bool writer_active_ ABSL_GUARDED_BY(mu_) = false;
  bool switching_ ABSL_GUARDED_BY(mu_) = false;  // defrag switch-over: writers wait
  // Defragmentation log: keys changed by txns committed after the copy's
  // snapshot, in commit order.
  bool recording_ ABSL_GUARDED_BY(mu_) = false;
  bool defrag_cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<ChangedKey> changed_ ABSL_GUARDED_BY(mu_);

  util::Mutex defrag_mu_;  // one Defragment at a time; taken before mu_

  // SizeInUseBytes of the last commit it was computed for: the environment
  // (a weak_ptr keeps its identity while another replaces it) and LMDB's id
  // of that commit.
  struct InUseCache {
    std::weak_ptr<internal::LmdbEnv> env;
    size_t txn_id = 0;
    int64_t bytes = -1;
  };
  mutable util::Mutex in_use_mu_;
  mutable InUseCache in_use_ ABSL_GUARDED_BY(in_use_mu_);
};

// Converts an LMDB return code into a Status (OK for 0). Exposed for tests.
absl::Status LmdbStatus(int rc, std::string_view what);

// Big-endian 8-byte encodings used for meta values and revisions.
void PutBigEndian64(uint64_t v, char* out);
uint64_t GetBigEndian64(const char* in);
std::string EncodeBigEndian64(uint64_t v);

}  // namespace cppetcd::storage

#endif  // CPPETCD_STORAGE_BACKEND_H_
