// The multi-version key-value store: etcd 3.4's mvcc store (mvcc/kvstore.go,
// kvstore_txn.go) over the LMDB backend. Every write request gets one main
// revision; the key bucket keeps every version of every key under its
// revision; the in-memory TreeIndex maps keys to revisions.
//
// Threading: the apply loop (one thread) writes through Write/Compact inside
// its own backend write transaction and calls OnCommit after committing it.
// Readers (Range, ReadEvents, HashByRev, Rev, CompactRev) run on any thread,
// concurrently with the apply loop, and see only published revisions (those
// whose backend transaction committed and OnCommit ran). Reload (raft
// snapshot install) swaps the whole state under a reader/writer lock: a read
// sees the state before or after it, never a mix.
#ifndef CPPETCD_MVCC_KVSTORE_H_
#define CPPETCD_MVCC_KVSTORE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppetcd/mvcc/errors.h"
#include "cppetcd/mvcc/key_index.h"
#include "cppetcd/mvcc/revision.h"
#include "cppetcd/mvcc/rw_mutex.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/util/log.h"
#include "cppetcd/util/mutex.h"
#include "mvccpb/kv.pb.h"

namespace cppetcd::mvcc {

// Meta bucket keys owned by the store (values: 8 bytes big-endian main
// revision; the 17-byte revision form etcd uses is also accepted on read).
inline constexpr std::string_view kScheduledCompactKey = "scheduledCompactRev";
inline constexpr std::string_view kFinishedCompactKey = "finishedCompactRev";

// etcd v3 API RangeRequest knobs, as the mvcc layer sees them.
struct RangeOptions {
  int64_t limit = 0;        // max kvs returned; 0 = no limit (count is unaffected)
  int64_t rev = 0;          // read at this revision; <= 0 = current
  bool count_only = false;  // return only count
};

struct RangeResult {
  std::vector<mvccpb::KeyValue> kvs;  // key order, at most limit
  int64_t rev = 0;                    // the store revision the read ran at (header revision)
  int64_t count = 0;                  // number of keys in the range at the read revision
};

// etcd v3 API HashKV: CRC-32C of the key bucket, as etcd's store.HashByRev.
struct HashResult {
  uint32_t hash = 0;
  int64_t compact_revision = 0;  // etcd: -1 before any compaction
  int64_t current_revision = 0;
};

// Told about the lease of every key the store writes; implemented by the
// server over the lessor. Called on the apply thread, inside TxnWrite::Put /
// DeleteRange (a put detaches the key's previous lease, if any, then attaches
// the new one, if any; a delete detaches), and from Open for every live key
// with a lease. Must not call back into the store.
class LeaseObserver {
 public:
  virtual ~LeaseObserver() = default;
  virtual void Attach(std::string_view key, int64_t lease) = 0;
  virtual void Detach(std::string_view key, int64_t lease) = 0;
};

struct StoreOptions {
  util::Logger logger{"mvcc"};
  LeaseObserver* lease_observer = nullptr;  // may be null; must outlive the store
  // Key-bucket entries examined per physical compaction batch (one backend
  // write transaction each); etcd's --experimental-compaction-batch-limit.
  size_t compaction_batch_limit = 1000;
  // Keys compacted per index lock hold during index compaction.
  size_t index_compaction_chunk_keys = 10000;
};

class Store;

// One write request: all its changes share main revision Rev(). Apply loop
// only; not thread-safe. Destroying it without End() ends it. A backend
// failure while writing (e.g. the map is full) is fatal: the index already
// holds the change, so the apply loop cannot continue consistently (keep a
// quota below the map size, as etcd's NOSPACE alarm does).
class TxnWrite {
 public:
  ~TxnWrite();
  TxnWrite(const TxnWrite&) = delete;
  TxnWrite& operator=(const TxnWrite&) = delete;

  // etcd v3 API Range inside a write txn. Sees this txn's earlier writes (and
  // all earlier txns of the apply loop): reads at the txn's revision once it
  // wrote something, else at the store's current revision. Same errors and
  // shapes as Store::Range.
  absl::StatusOr<RangeResult> Range(std::string_view key, std::string_view end,
                                    RangeOptions options);
  // Puts key (non-empty) = value with `lease` (0 none). Version and
  // create_revision as etcd: a put on a missing or deleted key starts a new
  // generation (version 1, create_revision = this revision).
  void Put(std::string_view key, std::string_view value, int64_t lease);
  // Deletes the keys of the range live at this point (tombstones); returns
  // how many. Range shapes as Store::Range.
  int64_t DeleteRange(std::string_view key, std::string_view end);
  // The store revision after this txn: begin revision + 1 once it wrote,
  // else unchanged.
  int64_t Rev() const { return wrote_ ? begin_rev_ + 1 : begin_rev_; }
  // The changes so far, as watch events (PUT with the full new KeyValue;
  // DELETE with key and mod_revision = this revision), sub-revision order.
  // Valid until the store's next OnCommit (also after End).
  const std::vector<mvccpb::Event>& Changes() const {
    return ended_changes_ != nullptr ? *ended_changes_ : changes_;
  }
  // Finishes the request: advances the store revision if it wrote. The
  // revision becomes visible to readers at Store::OnCommit.
  void End();

 private:
  friend class Store;
  TxnWrite(Store* store, storage::WriteTxn* btx, int64_t begin_rev)
      : store_(store), btx_(btx), begin_rev_(begin_rev) {}
  void WriteRecord(Revision rev, bool tombstone, const mvccpb::KeyValue& kv);
  void DeleteKey(const std::string& key);

  Store* store_;
  storage::WriteTxn* btx_;
  int64_t begin_rev_;
  bool wrote_ = false;
  std::vector<mvccpb::Event> changes_;
  const std::vector<mvccpb::Event>* ended_changes_ = nullptr;  // after End: in the store
  bool ended_ = false;
};

class Store {
 public:
  using CommitObserver =
      std::function<void(int64_t rev, const std::vector<mvccpb::Event>& events)>;

  // Rebuilds the key index from the key bucket, restores the current and
  // compact revisions, attaches the leases of live keys (LeaseObserver) and
  // resumes an unfinished compaction. `backend` must outlive the store. No
  // write transaction may be open on this thread.
  static absl::StatusOr<std::unique_ptr<Store>> Open(storage::Backend* backend,
                                                     StoreOptions options);
  // Stops the compaction thread (an unfinished compaction resumes at the
  // next Open; its future completes with Cancelled). The destroying thread
  // must not hold a backend write txn (the worker may be waiting for it).
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // etcd v3 API Range at a published revision. Key range: `end` empty = the
  // key alone; `end` "\0" = every key >= key; else [key, end). Results in key
  // order; kvs truncated to limit while count counts every matching key;
  // count_only returns no kvs. result.rev = the published revision the read
  // ran against (options.rev <= 0 reads at it).
  // Errors: ErrFutureRev (options.rev > current), ErrCompacted
  // (options.rev < compact revision; never for a read at the current
  // revision). Any thread, concurrently with the apply loop.
  absl::StatusOr<RangeResult> Range(std::string_view key, std::string_view end,
                                    RangeOptions options) const;

  // Range without parsing: calls `fn` with each matching key's stored
  // record, the protobuf wire form of its mvccpb::KeyValue (what Range would
  // parse), in key order, at most options.limit of them; count_only visits
  // none. A view is valid only during its call (it points into the
  // backend's read snapshot). Returns rev and count as Range, kvs empty.
  // Each record is checked to be a well-formed KeyValue first (DataLoss
  // otherwise, as Range). Errors as Range; fn may have run for some records
  // before an error. Any thread; fn must not call the store or block long
  // (it runs under the reload lock, inside a read transaction).
  absl::StatusOr<RangeResult> RangeStored(std::string_view key, std::string_view end,
                                          RangeOptions options,
                                          absl::FunctionRef<void(std::string_view record)> fn) const;

  // The newest published revision (1 for an empty store, as etcd). Any thread.
  int64_t Rev() const { return published_rev_.load(std::memory_order_acquire); }
  // The revision including writes not yet published (their backend txn not
  // committed: OnCommit publishes it). The apply thread only.
  int64_t ApplyRev() const { return current_rev_; }
  // The compact revision readers see (-1 before any compaction, as etcd).
  int64_t CompactRev() const { return published_compact_rev_.load(std::memory_order_acquire); }

  // Starts a write request in the caller's backend write txn. Apply loop
  // only; one TxnWrite at a time; End() it before the next.
  std::unique_ptr<TxnWrite> Write(storage::WriteTxn* btx);

  // etcd v3 API Compact at `rev`: records scheduledCompactRev in btx; after
  // OnCommit, reads below rev fail, and a background thread compacts the
  // index, then deletes obsolete revisions from the key bucket in short
  // batches (own write txns) and records finishedCompactRev. The future
  // completes then (OK, or Cancelled when the store closes first). Do not
  // wait on it while holding a write txn. Errors: ErrCompacted (rev <=
  // compact revision), ErrFutureRev (rev > current revision). Apply loop.
  absl::StatusOr<std::shared_future<absl::Status>> Compact(storage::WriteTxn* btx, int64_t rev);

  // Call after the btx given to Write/Compact committed: publishes the new
  // revisions, calls the commit observer once per committed revision in
  // revision order, and starts scheduled compactions. Apply loop.
  void OnCommit();

  // The observer of committed revisions (watch). Called on the apply thread
  // from OnCommit with each revision's events; must not block. Set before
  // writes start (not synchronised with OnCommit).
  void SetCommitObserver(CommitObserver observer);

  // Events of revisions [from_rev, to_rev] (to_rev clamped to Rev()) from
  // history, in revision order: PUT with the stored KeyValue; DELETE with the
  // key and mod_revision = deleting revision. Whole revisions only: stops
  // after the revision at which max_events (0 = no limit) were reached; the
  // caller resumes at the last event's mod_revision + 1.
  // Errors: ErrCompacted when from_rev < CompactRev() (etcd's watcher rule).
  // Any thread; fn runs under the reload lock and must not call the store.
  absl::Status ReadEvents(int64_t from_rev, int64_t to_rev, size_t max_events,
                          absl::FunctionRef<void(const mvccpb::Event&)> fn) const;

  // etcd v3 API HashKV (store.HashByRev): CRC-32C over "key" and the key
  // bucket's entries with revision <= rev (rev 0 = current), skipping those
  // below the compact revision that a compaction at rev would drop.
  // Errors: ErrCompacted (0 < rev <= compact revision), ErrFutureRev.
  absl::StatusOr<HashResult> HashByRev(int64_t rev) const;

  // Waits until no compaction is scheduled or running (tests, shutdown).
  void WaitCompactionIdle() const;

  // Raft snapshot install (etcd: kv.Restore after the backend is replaced):
  // makes the store match new backend contents in place (the Store object
  // stays; only its contents change). In order:
  //  1. cancels queued compactions and stops a running one at its next batch
  //     (their futures complete with Cancelled), and waits for the worker;
  //  2. takes the store's exclusive reload lock (readers wait), runs
  //     `replace_contents` (typically Backend::ReplaceContentsFrom, then
  //     Lessor::Restore so that leases exist before keys attach to them);
  //  3. whatever it returned, rebuilds the key index, the current and the
  //     compact revision from the backend as Open does, attaches the leases of
  //     live keys (LeaseObserver::Attach), publishes the new revision and
  //     resumes a scheduled but unfinished compaction.
  // Replacing the backend inside the callback is what keeps readers and the
  // compaction worker from ever pairing the old index with the new data.
  // Uncommitted apply-loop state (events not yet OnCommit-ed) is dropped; the
  // commit observer is not called for the restored revisions (call
  // WatchableStore::Restore next). Returns replace_contents' error if it
  // failed (the store then matches the unchanged or partly updated backend),
  // else the rebuild's (DataLoss for malformed records: the store keeps its
  // old state and must not be used further: treat it as fatal).
  // Apply thread only, between write requests: no TxnWrite and no backend
  // write txn open on this thread, OnCommit already called.
  absl::Status Reload(absl::FunctionRef<absl::Status()> replace_contents);

  // The key index (tests, debugging; not concurrently with Reload).
  const TreeIndex& index() const { return *index_; }

 private:
  friend class TxnWrite;
  struct CompactionJob {
    int64_t rev = 0;
    std::shared_ptr<std::promise<absl::Status>> done;
  };

  // What Open and Reload load from the backend.
  struct Loaded {
    std::unique_ptr<TreeIndex> index;
    int64_t current_rev = 1;
    int64_t compact_rev = -1;   // finishedCompactRev, -1 = none
    int64_t scheduled_rev = 0;  // scheduledCompactRev above it, 0 = none
  };

  Store(storage::Backend* backend, StoreOptions options);
  absl::Status Restore();
  absl::StatusOr<Loaded> Load() const;
  // Installs `loaded` (apply thread; for Reload under reload_mu_ held
  // exclusively), attaches leases, publishes, resumes its compaction.
  void Install(Loaded loaded);
  // Range over `txn` at cur_rev; compact_rev is the apply loop's (for a
  // TxnWrite) or -2 to use the index's published one.
  absl::StatusOr<RangeResult> RangeAt(storage::ReadTxn* txn, std::string_view key,
                                      std::string_view end, const RangeOptions& options,
                                      int64_t cur_rev, int64_t compact_rev) const;
  // Visits the i-th record of a range (index i, its main revision, the
  // stored bytes); a non-OK status stops the range with that error.
  using RecordFn = absl::FunctionRef<absl::Status(size_t i, int64_t main_rev,
                                                  std::string_view record)>;
  // RangeAt's walk with each record handed to fn; result.kvs stays empty.
  absl::StatusOr<RangeResult> RangeVisit(storage::ReadTxn* txn, std::string_view key,
                                         std::string_view end, const RangeOptions& options,
                                         int64_t cur_rev, int64_t compact_rev,
                                         const RecordFn& fn) const;
  // The published-revision read loop of Range / RangeStored.
  absl::StatusOr<RangeResult> RangeRecords(std::string_view key, std::string_view end,
                                           const RangeOptions& options, const RecordFn& fn) const;
  void CompactionLoop();
  absl::Status RunCompaction(int64_t rev);
  void EnqueueCompaction(CompactionJob job);

  storage::Backend* backend_;
  StoreOptions options_;
  // Readers (Range, ReadEvents, HashByRev) hold it shared for a whole read;
  // Reload holds it exclusively while the backend and the index change.
  mutable RwMutex reload_mu_;
  // Never null. Replaced only by Reload, on the apply thread, with reload_mu_
  // held exclusively and the compaction worker idle: the apply thread and the
  // worker use it without reload_mu_, readers under it.
  std::unique_ptr<TreeIndex> index_;

  // Apply-loop state (touched only by the apply thread, or Open).
  int64_t current_rev_ = 1;         // newest revision written (maybe unpublished)
  int64_t compact_rev_ = -1;        // newest compaction scheduled by the apply loop
  bool txn_open_ = false;           // a TxnWrite is not yet ended
  // Committed-but-unpublished revisions and their events (deque: stable
  // references for TxnWrite::Changes).
  std::deque<std::pair<int64_t, std::vector<mvccpb::Event>>> pending_events_;
  std::vector<CompactionJob> pending_compactions_;
  CommitObserver observer_;

  // What readers see.
  std::atomic<int64_t> published_rev_{1};
  std::atomic<int64_t> published_compact_rev_{-1};

  // Compaction worker. util::Mutex rather than absl::Mutex: Debian's abseil
  // is not TSan-instrumented (see util/mutex.h).
  mutable util::Mutex compact_mu_;
  mutable util::CondVar compact_cv_;
  std::deque<CompactionJob> compact_queue_ ABSL_GUARDED_BY(compact_mu_);
  bool compact_running_ ABSL_GUARDED_BY(compact_mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(compact_mu_) = false;
  std::atomic<bool> stop_{false};
  // Set by Reload: the running compaction stops at its next batch.
  std::atomic<bool> cancel_compaction_{false};
  std::thread compact_thread_;
};

}  // namespace cppetcd::mvcc

#endif  // CPPETCD_MVCC_KVSTORE_H_
