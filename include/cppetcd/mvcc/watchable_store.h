// The watch side of mvcc: WatchableStore fans committed events out to
// watchers, WatchStream groups the watchers of one client watch stream.
//
// Semantics follow etcd 3.4's mvcc watchable store and v3 watch API:
// - A watcher created at start revision S receives every event with
//   mod_revision >= S on its key or range, exactly once, in revision order.
//   The events of one revision are never split across responses.
// - A watcher whose S is above the current revision (or S == 0) is "synced":
//   it is fed live from the store's commit observer. Otherwise it is
//   "unsynced" and a background thread catches it up from history
//   (WatchSource::ReadEvents), then moves it to synced.
// - Each stream has a bounded response queue. When the commit observer finds
//   a watcher's queue full, the watcher becomes a victim: it leaves the
//   synced set and is later caught up from history, so a slow reader never
//   blocks the apply loop and never loses or duplicates an event.
// - A watcher whose next revision was compacted away gets one response with
//   compact_revision set and canceled = true, and is removed.
#ifndef CPPETCD_MVCC_WATCHABLE_STORE_H_
#define CPPETCD_MVCC_WATCHABLE_STORE_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mvccpb/kv.pb.h"
#include "cppetcd/util/clock.h"
#include "cppetcd/util/log.h"
#include "cppetcd/util/mutex.h"

namespace cppetcd::mvcc {

class Store;

// etcd clientv3.InvalidWatchID: the watch_id of a stream-wide progress
// response (RequestProgressAll) and of a failed create.
inline constexpr int64_t kInvalidWatchId = -1;

// Errors of the watch API, with etcd's messages (mvcc/watcher.go), typed
// (util/error.h): the predicates test the code, never the text.
// NotFound "mvcc: watcher does not exist" (Cancel of an unknown id).
absl::Status ErrWatcherNotExist();
bool IsWatcherNotExist(const absl::Status& s);
// InvalidArgument "mvcc: watcher range is empty" (key >= end).
absl::Status ErrEmptyWatcherRange();
bool IsEmptyWatcherRange(const absl::Status& s);
// AlreadyExists "mvcc: duplicate watch ID provided on the WatchStream".
absl::Status ErrWatcherDuplicateID();
bool IsWatcherDuplicateID(const absl::Status& s);
// ResourceExhausted "mvcc: too many watchers on the WatchStream" (Watch past
// WatchOptions::max_watchers_per_stream or max_watch_range_bytes_per_stream;
// cppetcd's bound, etcd has none).
absl::Status ErrTooManyWatchers();
bool IsTooManyWatchers(const absl::Status& s);
// FailedPrecondition "mvcc: watch stream closed" (Watch after Close).
absl::Status ErrWatchStreamClosed();
bool IsWatchStreamClosed(const absl::Status& s);

// The facts about the key-value store the watch side needs. The production
// implementation adapts mvcc::Store (WatchableStore(Store*, ...)); tests may
// supply their own. All methods may be called from any thread.
class WatchSource {
 public:
  // Called once per committed revision on the apply thread, in revision
  // order, with the events of that revision (all mod_revision == rev).
  using CommitObserver =
      std::function<void(int64_t rev, const std::vector<mvccpb::Event>& events)>;
  virtual ~WatchSource() = default;
  // The current (last published) revision and the compacted revision.
  virtual int64_t Rev() const = 0;
  virtual int64_t CompactRev() const = 0;
  // Installs (or with nullptr removes) the commit observer.
  virtual void SetCommitObserver(CommitObserver observer) = 0;
  // Calls fn for the events with from_rev <= mod_revision <= to_rev in
  // revision order. Whole revisions only: stops after the revision at which
  // max_events (0 = no limit) were reached. DELETE events carry key and
  // mod_revision. Errors: ErrCompacted when from_rev < CompactRev(); storage
  // errors. (Store::ReadEvents.)
  virtual absl::Status ReadEvents(
      int64_t from_rev, int64_t to_rev, size_t max_events,
      absl::FunctionRef<void(const mvccpb::Event&)> fn) const = 0;
  // The KeyValue of `key` as of revision `rev` (nullopt if absent then);
  // used for prev_kv. Errors: compacted, future revision, storage.
  virtual absl::StatusOr<std::optional<mvccpb::KeyValue>> Get(std::string_view key,
                                                              int64_t rev) const = 0;
};

struct WatchOptions {
  util::Logger logger = util::GetLogger("mvcc-watch");
  // Time source of progress notifications; nullptr = SystemClock.
  util::Clock* clock = nullptr;
  // Responses a stream may hold before its watchers become victims (etcd
  // chanBufLen 128). Stream-wide progress responses do not count.
  size_t stream_queue_capacity = 128;
  // Approximate bytes (keys and values) a stream may hold queued, so that a
  // slow reader of large values costs bounded memory; a single larger
  // response still enters an empty queue.
  // Catch-up rounds keep at most this much history at a time, too.
  size_t stream_queue_bytes = 16u << 20;
  // Watchers one stream may hold, and the bytes of their keys and range ends
  // (a watcher's key may be as large as a request); past either, Watch fails
  // with ErrTooManyWatchers (the first watcher is always let in).
  size_t max_watchers_per_stream = 10000;
  size_t max_watch_range_bytes_per_stream = 64u << 20;
  // Unsynced watchers served per catch-up round (etcd maxWatchersPerSync).
  size_t max_watchers_per_sync = 512;
  // History events read per catch-up round (whole revisions, so one large
  // revision may exceed it); bounds a catch-up response's size. 0 = no limit.
  size_t max_events_per_sync = 10000;
  // Upper bound on the catch-up thread's idle wait (etcd syncs every 100 ms);
  // new unsynced watchers and freed queue space wake it at once.
  std::chrono::milliseconds sync_interval{100};
  // Period of automatic ProgressNotifyAll on every stream, measured on
  // `clock`, plus up to 10% jitter per stream (etcd
  // --experimental-watch-progress-notify-interval, default 10 minutes).
  // Zero disables it (the caller then calls ProgressNotifyAll itself).
  std::chrono::nanoseconds progress_notify_interval = std::chrono::minutes(10);
};

// One response for one watcher (or, with watch_id == kInvalidWatchId, for
// the whole stream). events empty and compact_revision 0 = progress
// notification.
struct WatchResponse {
  int64_t watch_id = 0;
  std::vector<mvccpb::Event> events;  // revision-ordered, all of each revision
  // Header revision: every event with mod_revision <= revision on the
  // watcher's range has been delivered (live: the events' revision).
  int64_t revision = 0;
  // Nonzero: the watcher's next revision is below this compacted revision
  // (etcd's rule: next < compact revision); the watcher was removed and its
  // id freed. canceled is then true (nothing else sets it) and revision is
  // 0, as etcd 3.4 answers.
  int64_t compact_revision = 0;
  bool canceled = false;
};

namespace watch_internal {
struct Watcher;
struct Groups;
}

class WatchableStore;

// The watchers of one client watch stream and their response queue.
// Thread-safe. May outlive its WatchableStore: it then acts as closed
// (Watch fails, Cancel finds nothing, Poll returns what was queued).
class WatchStream {
 public:
  ~WatchStream();
  WatchStream(const WatchStream&) = delete;
  WatchStream& operator=(const WatchStream&) = delete;

  // etcd v3 API: WatchCreateRequest. Watches `key` (end empty), [key, end),
  // or every key >= key (end == "\0"); an empty key means "\0". start_rev 0
  // = events after the current revision. watch_id 0 = assign the lowest free
  // id counting up from 0 on this stream (etcd AutoWatchID). Returns the id.
  // Errors: ErrWatcherDuplicateID, ErrEmptyWatcherRange (key >= end),
  // ErrWatchStreamClosed, ErrTooManyWatchers. no_put/no_delete drop those
  // event types; prev_kv fills Event.prev_kv (not for creations);
  // progress_notify opts in to ProgressNotifyAll. A start_rev at or below the current revision is
  // served from history first (catch-up responses carry several revisions).
  absl::StatusOr<int64_t> Watch(int64_t watch_id, std::string key, std::string end,
                                int64_t start_rev, bool no_put, bool no_delete,
                                bool prev_kv, bool progress_notify = false);

  // etcd v3 API: WatchCancelRequest. Removes the watcher; queued responses
  // for it are dropped and none follow. Errors: ErrWatcherNotExist.
  absl::Status Cancel(int64_t watch_id);

  // Queues a progress response {watch_id, no events, revision = current}
  // if the watcher is synced (caught up) and the queue has room; otherwise
  // does nothing, as pending events will carry the progress (etcd 3.4).
  void RequestProgress(int64_t watch_id);

  // etcd v3 API: WatchProgressRequest. Queues {kInvalidWatchId, revision =
  // current} once every watcher of the stream is synced: at once if they
  // are, else as soon as the last one catches up.
  void RequestProgressAll();

  // The periodic progress notification (etcd's progress ticker): for each
  // watcher created with progress_notify that received no events since the
  // previous call, RequestProgress. Called by the store's timer (see
  // WatchOptions::progress_notify_interval) or by the caller.
  void ProgressNotifyAll();

  // Takes up to `max` queued responses (0 = all), oldest first, filling
  // prev_kv where asked (reads the store; call outside apply-loop locks).
  // notify() fires when a response is queued onto an empty queue: after it,
  // Poll until empty.
  std::vector<WatchResponse> Poll(size_t max);

  // The revision the stream's synced watchers have seen (etcd
  // watchStream.Rev()): use it for created/canceled response headers.
  int64_t Rev() const;

  // Cancels every watcher, drops queued responses; Watch fails afterwards.
  // Waits for a notify() call in progress on another thread to return (so
  // notify must not call Close). Idempotent.
  void Close();

 private:
  friend class WatchableStore;
  struct Queued {
    WatchResponse response;
    bool fill_prev_kv = false;  // Poll fills Event.prev_kv
    bool counted = true;        // counts against stream_queue_capacity/_bytes
    size_t bytes = 0;           // approximate size when counted
  };

  // The streams' way to their store; store becomes null when the store is
  // destroyed (writer lock), so a stream may outlive it.
  struct StoreLink {
    util::SharedMutex mu;  // before WatchableStore::mu_ in lock order
    WatchableStore* store ABSL_GUARDED_BY(mu) = nullptr;
  };

  WatchStream(std::shared_ptr<StoreLink> link, size_t capacity, size_t capacity_bytes,
              std::function<void()> notify);

  // Appends under qmu_; returns false if full (unless `force`). Sets
  // *need_notify when the queue was empty.
  bool Enqueue(WatchResponse response, bool fill_prev_kv, bool force, bool* need_notify);
  // True if no counted response fits now (and remembers to wake the
  // catch-up thread when Poll makes room).
  bool QueueFull();
  bool FullLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(qmu_);
  void Unaccount(const Queued& q) ABSL_EXCLUSIVE_LOCKS_REQUIRED(qmu_);
  // notify() protocol: reserve under the store mutex (fails once Close has
  // begun), run after releasing it; Close waits for reserved runs.
  bool ReserveNotify();
  void RunReservedNotify();

  const std::shared_ptr<StoreLink> link_;
  const size_t capacity_;        // WatchOptions::stream_queue_capacity
  const size_t capacity_bytes_;  // WatchOptions::stream_queue_bytes
  const std::function<void()> notify_;

  // Watcher bookkeeping, guarded by the store's mutex (WatchableStore::mu_).
  absl::flat_hash_map<int64_t, std::shared_ptr<watch_internal::Watcher>> watchers_;
  int64_t next_id_ = 0;           // next candidate auto id
  size_t range_bytes_ = 0;        // key + end bytes of watchers_
  bool closed_ = false;
  bool progress_all_pending_ = false;  // RequestProgressAll waits for sync
  size_t unsynced_count_ = 0;          // watchers not in the synced group
  std::chrono::steady_clock::time_point next_progress_at_{};

  mutable util::Mutex qmu_;  // after WatchableStore::mu_ in lock order
  std::deque<Queued> queue_ ABSL_GUARDED_BY(qmu_);
  size_t capacity_used_ ABSL_GUARDED_BY(qmu_) = 0;  // queued responses that count
  size_t bytes_used_ ABSL_GUARDED_BY(qmu_) = 0;     // their approximate bytes
  bool saw_full_ ABSL_GUARDED_BY(qmu_) = false;     // an Enqueue was refused

  util::Mutex nmu_;  // notify-in-flight protocol with Close
  util::CondVar notify_cv_;  // notify_in_flight_ dropped to 0
  bool notify_closed_ ABSL_GUARDED_BY(nmu_) = false;
  int notify_in_flight_ ABSL_GUARDED_BY(nmu_) = 0;
};

// Fans committed events out to watch streams; never blocks the apply loop
// (its observer only takes a short mutex and copies events). Owns one
// catch-up thread. Thread-safe.
class WatchableStore {
 public:
  // Registers itself as `store`'s commit observer (adapts Store to
  // WatchSource). `store` must outlive this object.
  WatchableStore(Store* store, WatchOptions options);
  // Same over any WatchSource (tests, other stores); must outlive this.
  WatchableStore(WatchSource* source, WatchOptions options);
  // Stops the catch-up thread, removes the commit observer (so the apply
  // loop must be stopped: Store::SetCommitObserver is not synchronised with
  // OnCommit) and closes the streams still open.
  ~WatchableStore();
  WatchableStore(const WatchableStore&) = delete;
  WatchableStore& operator=(const WatchableStore&) = delete;

  // A new stream (one per client gRPC Watch call). notify() is called,
  // outside internal locks and on any thread (often the apply thread), when
  // responses become available; it must be quick and must not call back
  // into the stream except Poll.
  std::unique_ptr<WatchStream> NewWatchStream(std::function<void()> notify);

  // The last revision delivered by the commit observer.
  int64_t Rev() const;

  // Raft snapshot install, after Store::Reload (etcd watchableStore.Restore):
  // takes the store's new current revision as the observed one and makes
  // every synced watcher unsynced, so that the catch-up thread delivers the
  // events between each watcher's next revision and the restored revision
  // from the restored history (or, when that revision was compacted, the
  // compacted response that cancels the watcher). Watchers in a catch-up
  // round finish it and go through another. Call on the apply thread,
  // between Store::Reload and the next OnCommit. Thread-safe otherwise.
  void Restore();

  // Counters for tests and metrics (etcd watcher/slow-watcher gauges).
  size_t SyncedCount() const;
  size_t UnsyncedCount() const;  // includes victims and those being synced

 private:
  friend class WatchStream;
  class SourceAdapter;
  using WatcherPtr = std::shared_ptr<watch_internal::Watcher>;

  void Init();
  void OnCommit(int64_t rev, const std::vector<mvccpb::Event>& events);
  void SyncLoop();
  // One catch-up round; true if more unsynced work is runnable now.
  bool SyncOnce();
  void ProgressTimer();

  // Adds a watcher to synced or unsynced per its next_rev.
  void AddWatcherLocked(const WatcherPtr& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MoveToSyncedLocked(const WatcherPtr& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MoveToUnsyncedLocked(const WatcherPtr& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Closes `s`: removes its watchers and forgets it.
  void DetachStreamLocked(WatchStream* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes `w` out of the groups; unless keep_id, also out of its stream's
  // map (which frees its ID).
  void RemoveWatcherLocked(const WatcherPtr& w, bool keep_id = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues a RequestProgressAll response on `s` if it waits and is synced.
  void MaybeProgressAllLocked(WatchStream* s, std::vector<WatchStream*>* notify)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ProgressLocked(watch_internal::Watcher* w, std::vector<WatchStream*>* notify)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ProgressNotifyStreamLocked(WatchStream* s, std::vector<WatchStream*>* notify)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReserveNotifyLocked(WatchStream* s, bool need_notify, std::vector<WatchStream*>* notify)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void RunNotify(const std::vector<WatchStream*>& streams);
  std::chrono::steady_clock::time_point NextProgressAtLocked(
      std::chrono::steady_clock::time_point now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Kick();  // wakes the catch-up thread
  void KickLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::shared_ptr<WatchStream::StoreLink> link_;  // shared with the streams
  std::unique_ptr<WatchSource> owned_source_;
  WatchSource* const source_;
  const WatchOptions options_;
  util::Clock* const clock_;

  // util::Mutex rather than absl::Mutex: Debian's abseil is not built with
  // TSan, which then cannot see absl::Mutex ordering.
  mutable util::Mutex mu_;
  util::CondVar sync_cv_;  // wakes the catch-up thread
  int64_t observed_rev_ ABSL_GUARDED_BY(mu_) = 0;  // last revision fanned out
  std::unique_ptr<watch_internal::Groups> groups_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<WatchStream*> streams_ ABSL_GUARDED_BY(mu_);
  bool kick_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_){0x5eed};  // progress jitter
  std::thread sync_thread_;
};

}  // namespace cppetcd::mvcc

#endif  // CPPETCD_MVCC_WATCHABLE_STORE_H_
