#include "cppetcd/mvcc/watchable_store.h"

#include <algorithm>
#include <limits>
#include <mutex>

#include <random>
#include <utility>

#include "cppetcd/util/error.h"
#include "src/mvcc/watch/watcher.h"

namespace cppetcd::mvcc {

using watch_internal::Groups;
using watch_internal::IntervalIndex;
using watch_internal::KeyRange;
using watch_internal::Watcher;
using watch_internal::WatcherState;
using util::ErrorCode;

namespace {

constexpr char kMsgWatcherNotExist[] = "mvcc: watcher does not exist";
constexpr char kMsgEmptyWatcherRange[] = "mvcc: watcher range is empty";
constexpr char kMsgDuplicateID[] =
    "mvcc: duplicate watch ID provided on the WatchStream";
constexpr char kMsgStreamClosed[] = "mvcc: watch stream closed";
constexpr char kMsgTooManyWatchers[] = "mvcc: too many watchers on the WatchStream";

// A copy of `ev` as a watcher sees it (prev_kv only when asked for).
mvccpb::Event CopyFor(const Watcher& w, const mvccpb::Event& ev) {
  mvccpb::Event out = ev;
  if (!w.prev_kv) out.clear_prev_kv();
  return out;
}

}  // namespace

absl::Status ErrWatcherNotExist() {
  return util::MakeError(absl::StatusCode::kNotFound, ErrorCode::kWatcherNotExist,
                         kMsgWatcherNotExist);
}
bool IsWatcherNotExist(const absl::Status& s) {
  return util::HasErrorCode(s, ErrorCode::kWatcherNotExist);
}
absl::Status ErrEmptyWatcherRange() {
  return util::MakeError(absl::StatusCode::kInvalidArgument, ErrorCode::kEmptyWatcherRange,
                         kMsgEmptyWatcherRange);
}
bool IsEmptyWatcherRange(const absl::Status& s) {
  return util::HasErrorCode(s, ErrorCode::kEmptyWatcherRange);
}
absl::Status ErrWatcherDuplicateID() {
  return util::MakeError(absl::StatusCode::kAlreadyExists, ErrorCode::kWatcherDuplicateID,
                         kMsgDuplicateID);
}
bool IsWatcherDuplicateID(const absl::Status& s) {
  return util::HasErrorCode(s, ErrorCode::kWatcherDuplicateID);
}
absl::Status ErrTooManyWatchers() {
  return util::MakeError(absl::StatusCode::kResourceExhausted, ErrorCode::kTooManyWatchers,
                         kMsgTooManyWatchers);
}
bool IsTooManyWatchers(const absl::Status& s) {
  return util::HasErrorCode(s, ErrorCode::kTooManyWatchers);
}
absl::Status ErrWatchStreamClosed() {
  return util::MakeError(absl::StatusCode::kFailedPrecondition, ErrorCode::kWatchStreamClosed,
                         kMsgStreamClosed);
}
bool IsWatchStreamClosed(const absl::Status& s) {
  return util::HasErrorCode(s, ErrorCode::kWatchStreamClosed);
}

// ---------------------------------------------------------------------------
// WatchStream

WatchStream::WatchStream(std::shared_ptr<StoreLink> link, size_t capacity,
                         size_t capacity_bytes, std::function<void()> notify)
    : link_(std::move(link)),
      capacity_(capacity),
      capacity_bytes_(capacity_bytes),
      notify_(std::move(notify)) {}

WatchStream::~WatchStream() { Close(); }

absl::StatusOr<int64_t> WatchStream::Watch(int64_t watch_id, std::string key, std::string end,
                                           int64_t start_rev, bool no_put, bool no_delete,
                                           bool prev_kv, bool progress_notify) {
  // As etcd's v3rpc: an empty key is the smallest key, end "\0" = to the end.
  if (key.empty()) key.assign(1, '\0');
  KeyRange range;
  range.key = std::move(key);
  if (end.size() == 1 && end[0] == '\0') {
    range.to_end = true;
  } else if (!end.empty()) {
    if (range.key >= end) return ErrEmptyWatcherRange();
    range.end = std::move(end);
  }

  util::ReaderMutexLock ll(&link_->mu);
  WatchableStore* store = link_->store;
  if (store == nullptr) return ErrWatchStreamClosed();
  util::MutexLock l(&store->mu_);
  if (closed_) return ErrWatchStreamClosed();
  const size_t range_bytes = range.key.size() + range.end.size();
  if (watchers_.size() >= store->options_.max_watchers_per_stream ||
      (!watchers_.empty() &&
       range_bytes_ + range_bytes > store->options_.max_watch_range_bytes_per_stream)) {
    return ErrTooManyWatchers();
  }
  int64_t id = watch_id;
  if (id == 0) {
    while (watchers_.contains(next_id_)) ++next_id_;
    id = next_id_++;
  } else if (watchers_.contains(id)) {
    return ErrWatcherDuplicateID();
  }
  auto w = std::make_shared<Watcher>();
  w->stream = this;
  w->id = id;
  w->range = std::move(range);
  w->no_put = no_put;
  w->no_delete = no_delete;
  w->prev_kv = prev_kv;
  w->progress_notify = progress_notify;
  const int64_t cur = store->observed_rev_;
  w->next_rev = (start_rev == 0 || start_rev > cur) ? std::max(start_rev, cur + 1) : start_rev;
  watchers_[id] = w;
  range_bytes_ += range_bytes;
  store->AddWatcherLocked(w);
  return id;
}

absl::Status WatchStream::Cancel(int64_t watch_id) {
  std::vector<WatchStream*> notify;
  {
    util::ReaderMutexLock ll(&link_->mu);
    WatchableStore* store = link_->store;
    if (store == nullptr) return ErrWatcherNotExist();
    util::MutexLock l(&store->mu_);
    auto it = watchers_.find(watch_id);
    if (closed_ || it == watchers_.end()) return ErrWatcherNotExist();
    std::shared_ptr<Watcher> w = it->second;
    store->RemoveWatcherLocked(w);
    watchers_.erase(watch_id);  // also when compaction had removed it (ID kept)
    {
      util::MutexLock q(&qmu_);
      for (auto i = queue_.begin(); i != queue_.end();) {
        if (i->response.watch_id == watch_id) {
          Unaccount(*i);
          i = queue_.erase(i);
        } else {
          ++i;
        }
      }
      if (saw_full_ && !FullLocked()) {
        saw_full_ = false;
        store->KickLocked();
      }
    }
    store->MaybeProgressAllLocked(this, &notify);
  }
  WatchableStore::RunNotify(notify);
  return absl::OkStatus();
}

void WatchStream::RequestProgress(int64_t watch_id) {
  std::vector<WatchStream*> notify;
  {
    util::ReaderMutexLock ll(&link_->mu);
    WatchableStore* store = link_->store;
    if (store == nullptr) return;
    util::MutexLock l(&store->mu_);
    auto it = watchers_.find(watch_id);
    if (it == watchers_.end()) return;
    store->ProgressLocked(it->second.get(), &notify);
  }
  WatchableStore::RunNotify(notify);
}

void WatchStream::RequestProgressAll() {
  std::vector<WatchStream*> notify;
  {
    util::ReaderMutexLock ll(&link_->mu);
    WatchableStore* store = link_->store;
    if (store == nullptr) return;
    util::MutexLock l(&store->mu_);
    if (closed_) return;
    progress_all_pending_ = true;
    store->MaybeProgressAllLocked(this, &notify);
  }
  WatchableStore::RunNotify(notify);
}

void WatchStream::ProgressNotifyAll() {
  std::vector<WatchStream*> notify;
  {
    util::ReaderMutexLock ll(&link_->mu);
    WatchableStore* store = link_->store;
    if (store == nullptr) return;
    util::MutexLock l(&store->mu_);
    store->ProgressNotifyStreamLocked(this, &notify);
  }
  WatchableStore::RunNotify(notify);
}

std::vector<WatchResponse> WatchStream::Poll(size_t max) {
  std::vector<Queued> taken;
  bool wake = false;
  {
    util::MutexLock q(&qmu_);
    size_t n = (max == 0) ? queue_.size() : std::min(max, queue_.size());
    taken.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      Unaccount(queue_.front());
      taken.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    if (saw_full_ && !FullLocked()) {
      saw_full_ = false;
      wake = true;
    }
  }

  util::ReaderMutexLock ll(&link_->mu);
  WatchableStore* store = link_->store;
  if (store != nullptr && wake) store->Kick();
  std::vector<WatchResponse> out;
  out.reserve(taken.size());
  for (Queued& q : taken) {
    if (q.fill_prev_kv && store != nullptr) {
      for (mvccpb::Event& ev : q.response.events) {
        const mvccpb::KeyValue& kv = ev.kv();
        // A creation has no previous value (etcd v3rpc isCreateEvent).
        if (ev.type() == mvccpb::Event::PUT && kv.create_revision() == kv.mod_revision()) continue;
        if (ev.has_prev_kv()) continue;
        auto prev = store->source_->Get(kv.key(), kv.mod_revision() - 1);
        // Like etcd, a failed lookup (e.g. compacted meanwhile) leaves it unset.
        if (prev.ok() && prev->has_value()) *ev.mutable_prev_kv() = std::move(**prev);
      }
    }
    out.push_back(std::move(q.response));
  }
  return out;
}

int64_t WatchStream::Rev() const {
  util::ReaderMutexLock ll(&link_->mu);
  WatchableStore* store = link_->store;
  if (store == nullptr) return 0;
  util::MutexLock l(&store->mu_);
  return store->observed_rev_;
}

void WatchStream::Close() {
  {
    util::ReaderMutexLock ll(&link_->mu);
    WatchableStore* store = link_->store;
    if (store != nullptr) {
      util::MutexLock l(&store->mu_);
      store->DetachStreamLocked(this);
    }
  }
  {
    util::MutexLock q(&qmu_);
    queue_.clear();
    capacity_used_ = 0;
    bytes_used_ = 0;
    saw_full_ = false;
  }
  util::MutexLock n(&nmu_);
  notify_closed_ = true;
  notify_cv_.Wait(&nmu_,
                  [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(nmu_) { return notify_in_flight_ == 0; });
}

namespace {
// Approximate memory of a response: what dominates is keys and values.
size_t ApproxBytes(const WatchResponse& r) {
  size_t n = 64;
  for (const mvccpb::Event& ev : r.events) {
    n += 48 + ev.kv().key().size() + ev.kv().value().size();
    if (ev.has_prev_kv()) n += ev.prev_kv().key().size() + ev.prev_kv().value().size();
  }
  return n;
}
}  // namespace

bool WatchStream::FullLocked() const {
  return capacity_used_ >= capacity_ || bytes_used_ >= capacity_bytes_;
}

void WatchStream::Unaccount(const Queued& q) {
  if (!q.counted) return;
  --capacity_used_;
  bytes_used_ -= q.bytes;
}

bool WatchStream::Enqueue(WatchResponse response, bool fill_prev_kv, bool force,
                          bool* need_notify) {
  util::MutexLock q(&qmu_);
  const size_t bytes = force ? 0 : ApproxBytes(response);
  // A response larger than the byte budget still goes into an empty queue.
  if (!force && (capacity_used_ >= capacity_ ||
                 (capacity_used_ > 0 && bytes_used_ + bytes > capacity_bytes_))) {
    saw_full_ = true;
    return false;
  }
  *need_notify = queue_.empty();
  queue_.push_back(Queued{std::move(response), fill_prev_kv, !force, bytes});
  if (!force) {
    ++capacity_used_;
    bytes_used_ += bytes;
  }
  return true;
}

bool WatchStream::QueueFull() {
  util::MutexLock q(&qmu_);
  if (FullLocked()) {
    saw_full_ = true;  // Poll will wake the catch-up thread
    return true;
  }
  return false;
}

bool WatchStream::ReserveNotify() {
  util::MutexLock n(&nmu_);
  if (notify_closed_ || !notify_) return false;
  ++notify_in_flight_;
  return true;
}

void WatchStream::RunReservedNotify() {
  notify_();
  util::MutexLock n(&nmu_);
  if (--notify_in_flight_ == 0) notify_cv_.SignalAll();
}

// ---------------------------------------------------------------------------
// WatchableStore

WatchableStore::WatchableStore(WatchSource* source, WatchOptions options)
    : source_(source),
      options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : util::SystemClock::Get()) {
  Init();
}

void WatchableStore::Init() {
  link_ = std::make_shared<WatchStream::StoreLink>();
  {
    util::WriterMutexLock ll(&link_->mu);
    link_->store = this;
  }
  {
    util::MutexLock l(&mu_);
    groups_ = std::make_unique<Groups>();
  }
  source_->SetCommitObserver([this](int64_t rev, const std::vector<mvccpb::Event>& events) {
    OnCommit(rev, events);
  });
  {
    util::MutexLock l(&mu_);
    observed_rev_ = std::max(observed_rev_, source_->Rev());
  }
  sync_thread_ = std::thread([this] { SyncLoop(); });
}

WatchableStore::~WatchableStore() {
  source_->SetCommitObserver(nullptr);
  {
    util::MutexLock l(&mu_);
    stop_ = true;
    sync_cv_.Signal();
  }
  if (sync_thread_.joinable()) sync_thread_.join();
  // Streams may outlive the store: cut them off (waits for their calls in
  // progress); afterwards they behave as closed.
  util::WriterMutexLock ll(&link_->mu);
  link_->store = nullptr;
  util::MutexLock l(&mu_);
  while (!streams_.empty()) DetachStreamLocked(*streams_.begin());
}

void WatchableStore::DetachStreamLocked(WatchStream* s) {
  if (s->closed_) return;
  s->closed_ = true;
  std::vector<WatcherPtr> all;
  all.reserve(s->watchers_.size());
  for (auto& [id, w] : s->watchers_) all.push_back(w);
  for (auto& w : all) RemoveWatcherLocked(w);
  streams_.erase(s);
}

std::unique_ptr<WatchStream> WatchableStore::NewWatchStream(std::function<void()> notify) {
  std::unique_ptr<WatchStream> s(
      new WatchStream(link_, options_.stream_queue_capacity, options_.stream_queue_bytes,
                      std::move(notify)));
  util::MutexLock l(&mu_);
  streams_.insert(s.get());
  s->next_progress_at_ = NextProgressAtLocked(clock_->Now());
  return s;
}

int64_t WatchableStore::Rev() const {
  util::MutexLock l(&mu_);
  return observed_rev_;
}

size_t WatchableStore::SyncedCount() const {
  util::MutexLock l(&mu_);
  return groups_->synced.size();
}

size_t WatchableStore::UnsyncedCount() const {
  util::MutexLock l(&mu_);
  return groups_->unsynced.size() + groups_->syncing;
}

void WatchableStore::RunNotify(const std::vector<WatchStream*>& streams) {
  for (WatchStream* s : streams) s->RunReservedNotify();
}

void WatchableStore::ReserveNotifyLocked(WatchStream* s, bool need_notify,
                                         std::vector<WatchStream*>* notify) {
  if (need_notify && s->ReserveNotify()) notify->push_back(s);
}

std::chrono::steady_clock::time_point WatchableStore::NextProgressAtLocked(
    std::chrono::steady_clock::time_point now) {
  auto interval = options_.progress_notify_interval;
  if (interval <= std::chrono::nanoseconds::zero()) return now;
  // Up to 10% jitter so streams opened together do not tick together.
  std::uniform_int_distribution<int64_t> jitter(0, std::max<int64_t>(interval.count() / 10, 0));
  return now + interval + std::chrono::nanoseconds(jitter(rng_));
}

void WatchableStore::AddWatcherLocked(const WatcherPtr& w) {
  if (w->next_rev > observed_rev_) {
    w->state = WatcherState::kSynced;
    groups_->synced.Add(w->range, w.get());
    return;
  }
  w->state = WatcherState::kUnsynced;
  groups_->unsynced[w.get()] = w;
  ++w->stream->unsynced_count_;
  KickLocked();
}

void WatchableStore::RemoveWatcherLocked(const WatcherPtr& w, bool keep_id) {
  switch (w->state) {
    case WatcherState::kSynced:
      groups_->synced.Remove(w->range, w.get());
      break;
    case WatcherState::kUnsynced:
      groups_->unsynced.erase(w.get());
      --w->stream->unsynced_count_;
      break;
    case WatcherState::kSyncing:
      // The catch-up round holding it sees kRemoved and drops it.
      --w->stream->unsynced_count_;
      --groups_->syncing;
      break;
    case WatcherState::kRemoved:
      return;
  }
  w->state = WatcherState::kRemoved;
  if (keep_id) return;
  auto& map = w->stream->watchers_;
  if (auto it = map.find(w->id); it != map.end() && it->second == w) {
    map.erase(it);
    w->stream->range_bytes_ -= w->range.key.size() + w->range.end.size();
  }
}

void WatchableStore::ProgressLocked(Watcher* w, std::vector<WatchStream*>* notify) {
  if (w->state != WatcherState::kSynced) return;
  WatchResponse r;
  r.watch_id = w->id;
  r.revision = observed_rev_;
  bool need_notify = false;
  // A full queue means events are pending; they carry the progress.
  if (w->stream->Enqueue(std::move(r), false, false, &need_notify)) {
    ReserveNotifyLocked(w->stream, need_notify, notify);
  }
}

void WatchableStore::MaybeProgressAllLocked(WatchStream* s, std::vector<WatchStream*>* notify) {
  if (!s->progress_all_pending_ || s->unsynced_count_ != 0 || s->closed_) return;
  s->progress_all_pending_ = false;
  WatchResponse r;
  r.watch_id = kInvalidWatchId;
  r.revision = observed_rev_;
  bool need_notify = false;
  s->Enqueue(std::move(r), false, /*force=*/true, &need_notify);
  ReserveNotifyLocked(s, need_notify, notify);
}

void WatchableStore::ProgressNotifyStreamLocked(WatchStream* s,
                                                std::vector<WatchStream*>* notify) {
  for (auto& [id, w] : s->watchers_) {
    if (!w->progress_notify) continue;
    if (!w->events_since_progress) ProgressLocked(w.get(), notify);
    w->events_since_progress = false;
  }
}

void WatchableStore::Kick() {
  util::MutexLock l(&mu_);
  KickLocked();
}

void WatchableStore::KickLocked() {
  kick_ = true;
  sync_cv_.Signal();
}

void WatchableStore::OnCommit(int64_t rev, const std::vector<mvccpb::Event>& events) {
  std::vector<WatchStream*> notify;
  {
    util::MutexLock l(&mu_);
    if (rev <= observed_rev_) return;  // seen at construction
    observed_rev_ = rev;
    if (groups_->synced.empty() || events.empty()) return;

    // One response per watcher for this revision.
    absl::flat_hash_map<Watcher*, std::vector<const mvccpb::Event*>> batch;
    for (const mvccpb::Event& ev : events) {
      groups_->synced.ForEachMatch(ev.kv().key(), [&](Watcher* w) {
        if (rev >= w->next_rev && w->Wants(ev)) batch[w].push_back(&ev);
      });
    }
    for (auto& [w, evs] : batch) {
      WatchResponse r;
      r.watch_id = w->id;
      r.revision = rev;
      r.events.reserve(evs.size());
      for (const mvccpb::Event* ev : evs) r.events.push_back(CopyFor(*w, *ev));
      bool need_notify = false;
      if (w->stream->Enqueue(std::move(r), w->prev_kv, false, &need_notify)) {
        w->events_since_progress = true;
        ReserveNotifyLocked(w->stream, need_notify, &notify);
        continue;
      }
      // Victim: its reader is behind. Catch it up from history later,
      // starting with this revision; Poll wakes the catch-up thread.
      groups_->synced.Remove(w->range, w);
      w->next_rev = rev;
      w->state = WatcherState::kUnsynced;
      groups_->unsynced[w] = w->stream->watchers_.at(w->id);
      ++w->stream->unsynced_count_;
    }
  }
  RunNotify(notify);
}

void WatchableStore::Restore() {
  std::vector<WatchStream*> notify;
  {
    util::MutexLock l(&mu_);
    const int64_t old_rev = observed_rev_;
    observed_rev_ = source_->Rev();
    // Every synced watcher catches up from the restored history, from its
    // own next revision on.
    for (WatchStream* s : streams_) {
      for (auto& [id, w] : s->watchers_) {
        if (w->state != WatcherState::kSynced) continue;
        groups_->synced.Remove(w->range, w.get());
        w->state = WatcherState::kUnsynced;
        groups_->unsynced[w.get()] = w;
        ++s->unsynced_count_;
      }
    }
    options_.logger.Info("restored watchers",
                         {{"previous-revision", old_rev},
                          {"current-revision", observed_rev_},
                          {"unsynced", groups_->unsynced.size() + groups_->syncing}});
    if (!groups_->unsynced.empty()) KickLocked();
  }
  RunNotify(notify);
}

void WatchableStore::SyncLoop() {
  while (true) {
    {
      util::MutexLock l(&mu_);
      sync_cv_.WaitFor(&mu_, options_.sync_interval,
                       [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return kick_ || stop_; });
      if (stop_) return;
      kick_ = false;
    }
    bool more = SyncOnce();
    ProgressTimer();
    if (more) Kick();
  }
}

bool WatchableStore::SyncOnce() {
  std::vector<WatcherPtr> chosen;
  std::vector<WatchStream*> notify;
  int64_t cur = 0;
  int64_t min_rev = std::numeric_limits<int64_t>::max();
  bool more = false;
  {
    util::MutexLock l(&mu_);
    if (groups_->unsynced.empty()) return false;
    cur = observed_rev_;
    const int64_t compact_rev = source_->CompactRev();
    std::vector<WatcherPtr> candidates;
    for (auto& [p, w] : groups_->unsynced) {
      if (candidates.size() >= options_.max_watchers_per_sync) {
        more = true;
        break;
      }
      if (w->stream->QueueFull()) continue;  // retried when its reader polls
      candidates.push_back(w);
    }
    for (WatcherPtr& w : candidates) {
      if (w->next_rev < compact_rev) {
        // etcd: a watcher whose next revision was compacted is told so and
        // canceled. The compact revision is -1 before any compaction, so a
        // negative start revision below it is canceled too (etcd's
        // chooseAll). The stream keeps the ID taken until the client
        // cancels it, as etcd's watchStream does: a new watch does not get
        // it, and a cancel request for it is answered.
        WatchResponse r;
        r.watch_id = w->id;
        r.revision = 0;  // as etcd: the response carries no header revision
        r.compact_revision = compact_rev;
        r.canceled = true;
        bool need_notify = false;
        if (w->stream->Enqueue(std::move(r), false, false, &need_notify)) {
          WatchStream* s = w->stream;
          RemoveWatcherLocked(w, /*keep_id=*/true);
          ReserveNotifyLocked(s, need_notify, &notify);
          MaybeProgressAllLocked(s, &notify);
        }
        continue;
      }
      groups_->unsynced.erase(w.get());
      w->state = WatcherState::kSyncing;
      min_rev = std::min(min_rev, w->next_rev);
      chosen.push_back(std::move(w));
    }
    groups_->syncing = chosen.size();
  }
  if (chosen.empty()) {
    RunNotify(notify);
    return more;
  }

  // Read history [min_rev, cur] for the chosen watchers, without the lock:
  // the commit observer keeps running and only feeds synced watchers.
  IntervalIndex<Watcher> index;
  for (const WatcherPtr& w : chosen) index.Add(w->range, w.get());
  std::vector<mvccpb::Event> events;
  int64_t read_to = cur;
  size_t seen = 0;
  int64_t last_rev = 0;
  // The events kept are bounded in bytes too (a stream's queue budget), so
  // that catching up a watcher of large values never holds more than that
  // plus one revision: past the budget the round ends at a revision
  // boundary and the rest is read by later rounds.
  size_t kept_bytes = 0;
  int64_t kept_rev = 0;  // revision of the last event kept
  int64_t cut_rev = 0;   // first revision not kept (0: none)
  absl::Status status = source_->ReadEvents(
      std::max<int64_t>(min_rev, 1), cur, options_.max_events_per_sync,
      [&](const mvccpb::Event& ev) {
        ++seen;
        const int64_t rev = ev.kv().mod_revision();
        last_rev = rev;
        if (cut_rev != 0) return;
        if (kept_bytes >= options_.stream_queue_bytes && rev != kept_rev) {
          cut_rev = rev;
          return;
        }
        if (!index.ContainsKey(ev.kv().key())) return;
        events.push_back(ev);
        kept_bytes += 48 + ev.kv().key().size() + ev.kv().value().size();
        kept_rev = rev;
      });
  // The read stops after a whole revision once the budget is reached; the
  // next round resumes after it.
  if (status.ok() && options_.max_events_per_sync != 0 && seen >= options_.max_events_per_sync) {
    read_to = std::min(cur, last_rev);
  }
  if (status.ok() && cut_rev != 0) read_to = std::min(read_to, cut_rev - 1);

  absl::flat_hash_map<Watcher*, std::vector<const mvccpb::Event*>> batch;
  if (status.ok()) {
    for (const mvccpb::Event& ev : events) {
      int64_t rev = ev.kv().mod_revision();
      index.ForEachMatch(ev.kv().key(), [&](Watcher* w) {
        if (rev >= w->next_rev && w->Wants(ev)) batch[w].push_back(&ev);
      });
    }
  } else {
    options_.logger.Warn("failed to read watch history",
                         {{"from-revision", min_rev}, {"to-revision", cur},
                          {"error", status.ToString()}});
  }

  {
    util::MutexLock l(&mu_);
    groups_->syncing = 0;
    for (WatcherPtr& w : chosen) {
      if (w->state == WatcherState::kRemoved) continue;
      auto back_to_unsynced = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        w->state = WatcherState::kUnsynced;
        groups_->unsynced[w.get()] = w;
      };
      if (!status.ok()) {
        back_to_unsynced();  // retried next round (compaction is noticed there)
        continue;
      }
      if (auto it = batch.find(w.get()); it != batch.end()) {
        WatchResponse r;
        r.watch_id = w->id;
        r.revision = read_to;
        r.events.reserve(it->second.size());
        for (const mvccpb::Event* ev : it->second) r.events.push_back(CopyFor(*w, *ev));
        bool need_notify = false;
        if (!w->stream->Enqueue(std::move(r), w->prev_kv, false, &need_notify)) {
          back_to_unsynced();  // stream full: retried when its reader polls
          continue;
        }
        w->events_since_progress = true;
        ReserveNotifyLocked(w->stream, need_notify, &notify);
      }
      w->next_rev = std::max(w->next_rev, read_to + 1);
      if (w->next_rev > observed_rev_) {
        w->state = WatcherState::kSynced;
        groups_->synced.Add(w->range, w.get());
        --w->stream->unsynced_count_;
        MaybeProgressAllLocked(w->stream, &notify);
      } else {
        back_to_unsynced();  // revisions committed meanwhile: another round
        more = true;
      }
    }
  }
  RunNotify(notify);
  return more;
}

void WatchableStore::ProgressTimer() {
  if (options_.progress_notify_interval <= std::chrono::nanoseconds::zero()) return;
  const auto now = clock_->Now();
  std::vector<WatchStream*> notify;
  {
    util::MutexLock l(&mu_);
    for (WatchStream* s : streams_) {
      if (now < s->next_progress_at_) continue;
      ProgressNotifyStreamLocked(s, &notify);
      s->next_progress_at_ = NextProgressAtLocked(now);
    }
  }
  RunNotify(notify);
}

}  // namespace cppetcd::mvcc
