// The mvcc store. On-disk layout (docs/formats-mvcc.md):
//   key bucket:  main(8 BE) '_' sub(8 BE) ['t' for a tombstone]
//                -> serialized mvccpb::KeyValue (a tombstone holds only key)
//   meta bucket: "scheduledCompactRev", "finishedCompactRev" -> main (8 BE)
//
// Concurrency. The apply thread owns current_rev_, compact_rev_ and the
// pending lists; it writes the index and the caller's backend txn. Readers
// load published_rev_ BEFORE opening their LMDB snapshot (so the snapshot
// holds every published revision) and check the compact revision under the
// index lock in the same critical section as the index lookup (so a
// compaction that starts later cannot remove what they are about to read:
// its physical deletes come after its index step, after their snapshot).
#include "cppetcd/mvcc/kvstore.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "cppetcd/util/crc32c.h"
#include "kv_codec.h"

namespace cppetcd::mvcc {
namespace {

using storage::kKeyBucket;
using storage::kMetaBucket;

// Use the index's compact revision (reader side).
constexpr int64_t kIndexCompactRev = -2;

std::string CompactRevValue(int64_t rev) { return storage::EncodeBigEndian64(static_cast<uint64_t>(rev)); }

// Reads a compact-revision meta value: 8 bytes big-endian, or etcd's 17-byte
// revision form.
std::optional<int64_t> ParseCompactRevValue(std::string_view v) {
  if (v.size() == 8) return static_cast<int64_t>(storage::GetBigEndian64(v.data()));
  if (v.size() >= kRevisionBytes) return DecodeRevision(v).main;
  return std::nullopt;
}

}  // namespace

// ---- TxnWrite ----

TxnWrite::~TxnWrite() { End(); }

void TxnWrite::WriteRecord(Revision rev, bool tombstone, const mvccpb::KeyValue& kv) {
  char key[kMarkedRevisionBytes];
  EncodeRevision(rev, key);
  size_t key_len = kRevisionBytes;
  if (tombstone) key[key_len++] = kTombstoneMark;
  const size_t size = kv.ByteSizeLong();
  // Serialise straight into the page LMDB reserves: no intermediate buffer.
  auto buf = btx_->PutReserve(kKeyBucket, std::string_view(key, key_len), size,
                              /*append_hint=*/true);
  if (!buf.ok()) {
    // The batch is half-applied in the index: the apply loop cannot go on.
    store_->options_.logger.Fatal("failed to write to the key bucket",
                                  {{"revision", rev.main}, {"error", buf.status().ToString()}});
  }
  kv.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(buf->data()));
}

void TxnWrite::Put(std::string_view key, std::string_view value, int64_t lease) {
  const int64_t rev = begin_rev_ + 1;
  const Revision idx_rev{rev, static_cast<int64_t>(changes_.size())};
  int64_t old_lease = 0;
  std::optional<KeyAt> at;
  // Index first (one lookup gives the previous state); the record follows.
  store_->index_->Put(key, idx_rev, lease, &at, &old_lease);
  mvccpb::Event& ev = changes_.emplace_back();
  ev.set_type(mvccpb::Event::PUT);
  mvccpb::KeyValue* kv = ev.mutable_kv();
  kv->set_key(key.data(), key.size());
  kv->set_value(value.data(), value.size());
  kv->set_create_revision(at ? at->created.main : rev);
  kv->set_mod_revision(rev);
  kv->set_version(at ? at->version + 1 : 1);
  kv->set_lease(lease);
  WriteRecord(idx_rev, /*tombstone=*/false, *kv);
  wrote_ = true;
  if (LeaseObserver* lo = store_->options_.lease_observer; lo != nullptr) {
    if (at && old_lease != 0) lo->Detach(key, old_lease);
    if (lease != 0) lo->Attach(key, lease);
  }
}

void TxnWrite::DeleteKey(const std::string& key) {
  const Revision idx_rev{begin_rev_ + 1, static_cast<int64_t>(changes_.size())};
  mvccpb::Event& ev = changes_.emplace_back();
  ev.set_type(mvccpb::Event::DELETE);
  mvccpb::KeyValue* kv = ev.mutable_kv();
  kv->set_key(key);
  WriteRecord(idx_rev, /*tombstone=*/true, *kv);  // the stored tombstone holds only the key
  kv->set_mod_revision(idx_rev.main);
  int64_t lease = 0;
  if (!store_->index_->Tombstone(key, idx_rev, &lease)) {
    store_->options_.logger.Fatal("failed to tombstone an existing key",
                                  {{"key", key}, {"revision", idx_rev.main}});
  }
  wrote_ = true;
  if (LeaseObserver* lo = store_->options_.lease_observer; lo != nullptr && lease != 0) {
    lo->Detach(key, lease);
  }
}

int64_t TxnWrite::DeleteRange(std::string_view key, std::string_view end) {
  std::vector<std::string> keys;
  store_->index_->Range(key, end, Rev(), &keys, nullptr);
  for (const auto& k : keys) DeleteKey(k);
  return static_cast<int64_t>(keys.size());
}

absl::StatusOr<RangeResult> TxnWrite::Range(std::string_view key, std::string_view end,
                                            RangeOptions options) {
  return store_->RangeAt(btx_, key, end, options, Rev(), store_->compact_rev_);
}

void TxnWrite::End() {
  if (ended_) return;
  ended_ = true;
  store_->txn_open_ = false;
  if (!wrote_) return;
  store_->current_rev_ = begin_rev_ + 1;
  auto& entry = store_->pending_events_.emplace_back(begin_rev_ + 1, std::move(changes_));
  ended_changes_ = &entry.second;
}

// ---- Store ----

Store::Store(storage::Backend* backend, StoreOptions options)
    : backend_(backend), options_(std::move(options)), index_(std::make_unique<TreeIndex>()) {}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(storage::Backend* backend,
                                                   StoreOptions options) {
  std::unique_ptr<Store> s(new Store(backend, std::move(options)));
  if (absl::Status st = s->Restore(); !st.ok()) return st;
  return s;
}

absl::Status Store::Restore() {
  auto loaded = Load();
  if (!loaded.ok()) return loaded.status();
  Install(*std::move(loaded));
  compact_thread_ = std::thread([this] { CompactionLoop(); });
  return absl::OkStatus();
}

absl::StatusOr<Store::Loaded> Store::Load() const {
  Loaded out;
  out.index = std::make_unique<TreeIndex>();
  auto txn_or = backend_->BeginRead();
  if (!txn_or.ok()) return txn_or.status();
  storage::ReadTxn* txn = txn_or->get();
  auto finished = txn->Get(kMetaBucket, kFinishedCompactKey);
  if (!finished.ok()) return finished.status();
  if (finished->has_value()) {
    auto v = ParseCompactRevValue(**finished);
    if (!v) return absl::DataLossError("mvcc: malformed finishedCompactRev");
    out.compact_rev = *v;
  }
  auto sched = txn->Get(kMetaBucket, kScheduledCompactKey);
  if (!sched.ok()) return sched.status();
  if (sched->has_value()) {
    auto v = ParseCompactRevValue(**sched);
    if (!v) return absl::DataLossError("mvcc: malformed scheduledCompactRev");
    out.scheduled_rev = *v;
  }

  int64_t current = 1;
  absl::Status decode_error;
  const std::string begin = RevisionKey(Revision{1, 0});
  TreeIndex* index = out.index.get();
  absl::Status st = txn->Scan(kKeyBucket, begin, "", [&](std::string_view k, std::string_view v) {
    if (k.size() < kRevisionBytes) {
      decode_error = absl::DataLossError("mvcc: malformed revision key");
      return false;
    }
    internal::KvMeta meta;
    if (!internal::DecodeKvMeta(v, &meta)) {
      decode_error = absl::DataLossError(
          absl::StrCat("mvcc: malformed KeyValue at revision ", DecodeRevision(k).main));
      return false;
    }
    const Revision rev = DecodeRevision(k);
    current = rev.main;
    index->RestoreRecord(meta.key, rev, IsTombstoneKey(k), meta.create_revision, meta.version,
                         meta.lease);
    return true;
  });
  if (!st.ok()) return st;
  if (!decode_error.ok()) return decode_error;
  out.current_rev = std::max(current, out.compact_rev);
  if (out.scheduled_rev <= out.compact_rev) out.scheduled_rev = 0;
  return out;
}

void Store::Install(Loaded loaded) {
  index_ = std::move(loaded.index);
  compact_rev_ = loaded.compact_rev;
  current_rev_ = loaded.current_rev;

  if (options_.lease_observer != nullptr) {
    index_->ForEachLeased(
        [&](const std::string& key, int64_t lease) { options_.lease_observer->Attach(key, lease); });
  }

  index_->SetCompactRev(compact_rev_);
  published_compact_rev_.store(compact_rev_, std::memory_order_release);
  published_rev_.store(current_rev_, std::memory_order_release);

  if (const int64_t scheduled = loaded.scheduled_rev; scheduled != 0) {
    options_.logger.Info("resume scheduled compaction", {{"compact-revision", scheduled}});
    compact_rev_ = scheduled;
    index_->SetCompactRev(scheduled);
    published_compact_rev_.store(scheduled, std::memory_order_release);
    EnqueueCompaction(CompactionJob{scheduled, std::make_shared<std::promise<absl::Status>>()});
  }
}

absl::Status Store::Reload(absl::FunctionRef<absl::Status()> replace_contents) {
  if (txn_open_) options_.logger.Fatal("mvcc: Reload while a TxnWrite is open");
  // 1. No compaction may touch the backend or the index from here on: its
  // keep set belongs to the old contents.
  std::vector<CompactionJob> cancelled;
  {
    util::MutexLock l(&compact_mu_);
    cancel_compaction_.store(true);
    for (auto& job : compact_queue_) cancelled.push_back(std::move(job));
    compact_queue_.clear();
    compact_cv_.Wait(&compact_mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(compact_mu_) { return !compact_running_; });
    cancel_compaction_.store(false);
  }
  compact_cv_.SignalAll();  // WaitCompactionIdle
  for (auto& job : pending_compactions_) cancelled.push_back(std::move(job));
  pending_compactions_.clear();
  for (auto& job : cancelled) {
    job.done->set_value(absl::CancelledError("mvcc: compaction interrupted by a snapshot restore"));
  }
  // Revisions not yet published belong to the old contents.
  pending_events_.clear();

  // 2. and 3. Readers wait while the backend and the index change together.
  WriterLock lock(&reload_mu_);
  const int64_t old_rev = current_rev_;
  absl::Status replaced = replace_contents();
  if (!replaced.ok()) {
    options_.logger.Warn("replacing the backend contents failed; reloading what it holds",
                         {{"error", replaced.ToString()}});
  }
  auto loaded = Load();
  if (!loaded.ok()) {
    options_.logger.Error("failed to reload the store from the backend",
                          {{"error", loaded.status().ToString()}});
    return replaced.ok() ? loaded.status() : replaced;
  }
  Install(*std::move(loaded));
  options_.logger.Info("reloaded the store from the backend",
                       {{"previous-revision", old_rev},
                        {"current-revision", current_rev_},
                        {"compact-revision", CompactRev()}});
  return replaced;
}

Store::~Store() {
  {
    util::MutexLock l(&compact_mu_);
    stopping_ = true;
  }
  compact_cv_.SignalAll();
  stop_.store(true);
  if (compact_thread_.joinable()) compact_thread_.join();
  util::MutexLock l(&compact_mu_);
  for (auto& job : compact_queue_) job.done->set_value(absl::CancelledError("mvcc: closed"));
  compact_queue_.clear();
  for (auto& job : pending_compactions_) job.done->set_value(absl::CancelledError("mvcc: closed"));
  pending_compactions_.clear();
}

std::unique_ptr<TxnWrite> Store::Write(storage::WriteTxn* btx) {
  if (txn_open_) options_.logger.Fatal("mvcc: Write while another TxnWrite is open");
  txn_open_ = true;
  return std::unique_ptr<TxnWrite>(new TxnWrite(this, btx, current_rev_));
}

absl::StatusOr<RangeResult> Store::Range(std::string_view key, std::string_view end,
                                         RangeOptions options) const {
  std::vector<mvccpb::KeyValue> kvs;
  auto parse = [&kvs](size_t i, int64_t main_rev, std::string_view record) -> absl::Status {
    if (kvs.size() <= i) kvs.resize(i + 1);
    if (!kvs[i].ParseFromArray(record.data(), static_cast<int>(record.size()))) {
      return absl::DataLossError(absl::StrCat("mvcc: malformed KeyValue at revision ", main_rev));
    }
    return absl::OkStatus();
  };
  absl::StatusOr<RangeResult> r = RangeRecords(key, end, options, parse);
  if (r.ok()) r->kvs = std::move(kvs);
  return r;
}

absl::StatusOr<RangeResult> Store::RangeStored(
    std::string_view key, std::string_view end, RangeOptions options,
    absl::FunctionRef<void(std::string_view record)> fn) const {
  auto check = [fn](size_t, int64_t main_rev, std::string_view record) -> absl::Status {
    // The record goes out unparsed: it must at least be a well-formed
    // KeyValue (the check skips over the value without copying it).
    internal::KvMeta meta;
    if (!internal::DecodeKvMeta(record, &meta)) {
      return absl::DataLossError(absl::StrCat("mvcc: malformed KeyValue at revision ", main_rev));
    }
    fn(record);
    return absl::OkStatus();
  };
  return RangeRecords(key, end, options, check);
}

absl::StatusOr<RangeResult> Store::RangeRecords(std::string_view key, std::string_view end,
                                                const RangeOptions& options,
                                                const RecordFn& fn) const {
  ReaderLock lock(&reload_mu_);
  while (true) {
    // Published revision first, then the snapshot: it holds that revision.
    const int64_t cur = Rev();
    if (options.rev > cur) return ErrFutureRev();
    auto txn = backend_->BeginRead();
    if (!txn.ok()) return txn.status();
    auto r = RangeVisit(txn->get(), key, end, options, cur, kIndexCompactRev, fn);
    // A read at the current revision must not fail as compacted: this one
    // lost a race with a compaction past it, so take the newer revision.
    // (Nothing was visited then: the check comes before the records.)
    if (options.rev <= 0 && !r.ok() && IsCompacted(r.status())) continue;
    return r;
  }
}

absl::StatusOr<RangeResult> Store::RangeAt(storage::ReadTxn* txn, std::string_view key,
                                           std::string_view end, const RangeOptions& options,
                                           int64_t cur_rev, int64_t compact_rev) const {
  std::vector<mvccpb::KeyValue> kvs;
  auto parse = [&kvs](size_t i, int64_t main_rev, std::string_view record) -> absl::Status {
    if (kvs.size() <= i) kvs.resize(i + 1);
    if (!kvs[i].ParseFromArray(record.data(), static_cast<int>(record.size()))) {
      return absl::DataLossError(absl::StrCat("mvcc: malformed KeyValue at revision ", main_rev));
    }
    return absl::OkStatus();
  };
  absl::StatusOr<RangeResult> r = RangeVisit(txn, key, end, options, cur_rev, compact_rev, parse);
  if (r.ok()) r->kvs = std::move(kvs);
  return r;
}

absl::StatusOr<RangeResult> Store::RangeVisit(storage::ReadTxn* txn, std::string_view key,
                                              std::string_view end, const RangeOptions& options,
                                              int64_t cur_rev, int64_t compact_rev,
                                              const RecordFn& fn) const {
  if (options.rev > cur_rev) return ErrFutureRev();
  const int64_t rev = options.rev <= 0 ? cur_rev : options.rev;
  if (compact_rev != kIndexCompactRev && rev < compact_rev) return ErrCompacted();
  RangeResult result;
  result.rev = cur_rev;
  int64_t seen_compact = -1;
  if (options.count_only) {
    result.count = index_->CountRevisions(key, end, rev, &seen_compact);
    if (rev < seen_compact) return ErrCompacted();
    return result;
  }
  std::vector<Revision> revs;
  const size_t limit = options.limit > 0 ? static_cast<size_t>(options.limit) : 0;
  if (limit != 0 && limit < 1024) revs.reserve(limit);
  result.count = index_->Revisions(key, end, rev, limit, &revs, &seen_compact);
  if (rev < seen_compact) return ErrCompacted();
  char rkey[kRevisionBytes];
  for (size_t i = 0; i < revs.size(); ++i) {
    EncodeRevision(revs[i], rkey);
    auto v = txn->Get(kKeyBucket, std::string_view(rkey, kRevisionBytes));
    if (!v.ok()) return v.status();
    if (!v->has_value()) {
      options_.logger.Error("range failed to find revision pair",
                            {{"revision-main", revs[i].main}, {"revision-sub", revs[i].sub}});
      return absl::InternalError(absl::StrCat("mvcc: missing revision ", revs[i].main, "_",
                                              revs[i].sub));
    }
    if (absl::Status s = fn(i, revs[i].main, **v); !s.ok()) return s;
  }
  return result;
}

absl::StatusOr<std::shared_future<absl::Status>> Store::Compact(storage::WriteTxn* btx,
                                                                int64_t rev) {
  if (rev <= compact_rev_) return ErrCompacted();
  if (rev > current_rev_) return ErrFutureRev();
  if (absl::Status st = btx->Put(kMetaBucket, kScheduledCompactKey, CompactRevValue(rev));
      !st.ok()) {
    return st;
  }
  compact_rev_ = rev;
  CompactionJob job{rev, std::make_shared<std::promise<absl::Status>>()};
  std::shared_future<absl::Status> f = job.done->get_future().share();
  pending_compactions_.push_back(std::move(job));
  return f;
}

void Store::OnCommit() {
  if (txn_open_) options_.logger.Fatal("mvcc: OnCommit while a TxnWrite is open");
  published_rev_.store(current_rev_, std::memory_order_release);
  for (auto& job : pending_compactions_) {
    // Readers below job.rev fail from here on; the index and the key bucket
    // are compacted in the background.
    index_->SetCompactRev(job.rev);
    published_compact_rev_.store(job.rev, std::memory_order_release);
    EnqueueCompaction(std::move(job));
  }
  pending_compactions_.clear();
  if (observer_) {
    for (const auto& [rev, events] : pending_events_) observer_(rev, events);
  }
  pending_events_.clear();
}

void Store::SetCommitObserver(CommitObserver observer) { observer_ = std::move(observer); }

absl::Status Store::ReadEvents(int64_t from_rev, int64_t to_rev, size_t max_events,
                               absl::FunctionRef<void(const mvccpb::Event&)> fn) const {
  ReaderLock lock(&reload_mu_);
  const int64_t cur = Rev();
  if (to_rev <= 0 || to_rev > cur) to_rev = cur;
  if (from_rev <= 0) from_rev = 1;
  auto txn = backend_->BeginRead();
  if (!txn.ok()) return txn.status();
  // Read after the snapshot opened: any physical deletion the snapshot shows
  // belongs to a compaction at or below this revision.
  if (from_rev < CompactRev()) return ErrCompacted();
  if (from_rev > to_rev) return absl::OkStatus();
  const std::string begin = RevisionKey(Revision{from_rev, 0});
  const std::string end = RevisionKey(Revision{to_rev + 1, 0});
  size_t delivered = 0;
  int64_t last_main = 0;
  mvccpb::Event ev;
  absl::Status decode_error;
  absl::Status st = (*txn)->Scan(kKeyBucket, begin, end, [&](std::string_view k, std::string_view v) {
    const Revision rev = DecodeRevision(k);
    if (max_events != 0 && delivered >= max_events && rev.main != last_main) return false;
    ev.Clear();
    if (!ev.mutable_kv()->ParseFromArray(v.data(), static_cast<int>(v.size()))) {
      decode_error = absl::DataLossError(absl::StrCat("mvcc: malformed KeyValue at revision ",
                                                      rev.main));
      return false;
    }
    if (IsTombstoneKey(k)) {
      ev.set_type(mvccpb::Event::DELETE);
      ev.mutable_kv()->set_mod_revision(rev.main);
    } else {
      ev.set_type(mvccpb::Event::PUT);
    }
    fn(ev);
    ++delivered;
    last_main = rev.main;
    return true;
  });
  if (!st.ok()) return st;
  return decode_error;
}

absl::StatusOr<HashResult> Store::HashByRev(int64_t rev) const {
  ReaderLock lock(&reload_mu_);
  int64_t cur, compact;
  std::unique_ptr<storage::ReadTxn> snapshot;
  do {  // retry the (rare) race where a compaction passes the revision read
    cur = Rev();
    auto txn = backend_->BeginRead();
    if (!txn.ok()) return txn.status();
    snapshot = *std::move(txn);
    compact = CompactRev();
  } while (rev <= 0 && cur < compact);
  auto* txn = &snapshot;
  if (rev > 0 && rev <= compact) return ErrCompacted();
  if (rev > 0 && rev > cur) return ErrFutureRev();
  if (rev <= 0) rev = cur;
  const RevisionSet keep = index_->Keep(rev);
  const Revision lower{compact + 1, 0};
  uint32_t crc = util::Crc32cExtend(0, kKeyBucket.data(), kKeyBucket.size());
  const std::string end = RevisionKey(Revision{rev + 1, 0});
  absl::Status st = (*txn)->Scan(kKeyBucket, "", end, [&](std::string_view k, std::string_view v) {
    const Revision kr = DecodeRevision(k);
    // Below the compact revision only what a compaction at rev keeps counts
    // (etcd skips the check when nothing would be kept).
    if (kr < lower && !keep.empty() && !keep.contains(kr)) return true;
    crc = util::Crc32cExtend(crc, k.data(), k.size());
    crc = util::Crc32cExtend(crc, v.data(), v.size());
    return true;
  });
  if (!st.ok()) return st;
  return HashResult{crc, compact, cur};
}

// ---- compaction ----

void Store::EnqueueCompaction(CompactionJob job) {
  {
    util::MutexLock l(&compact_mu_);
    if (!stopping_) {
      compact_queue_.push_back(std::move(job));
      job.done.reset();
    }
  }
  if (job.done != nullptr) {
    job.done->set_value(absl::CancelledError("mvcc: closed"));
    return;
  }
  compact_cv_.SignalAll();
}

void Store::CompactionLoop() {
  while (true) {
    CompactionJob job;
    {
      util::MutexLock l(&compact_mu_);
      compact_cv_.Wait(&compact_mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(compact_mu_) { return stopping_ || !compact_queue_.empty(); });
      if (stopping_) return;
      job = std::move(compact_queue_.front());
      compact_queue_.pop_front();
      compact_running_ = true;
    }
    absl::Status st = RunCompaction(job.rev);
    job.done->set_value(st);
    {
      util::MutexLock l(&compact_mu_);
      compact_running_ = false;
    }
    compact_cv_.SignalAll();
  }
}

absl::Status Store::RunCompaction(int64_t rev) {
  options_.logger.Info("compact tree index", {{"revision", rev}});
  const RevisionSet keep = index_->Compact(rev, options_.index_compaction_chunk_keys);
  // Every key-bucket entry with main <= rev that the index no longer needs.
  const std::string end = storage::EncodeBigEndian64(static_cast<uint64_t>(rev + 1));
  std::string last;  // resume point
  const size_t limit = std::max<size_t>(1, options_.compaction_batch_limit);
  int64_t removed = 0;
  std::vector<std::string> doomed;
  doomed.reserve(limit);
  while (true) {
    if (stop_.load()) return absl::CancelledError("mvcc: closed");
    if (cancel_compaction_.load()) {
      return absl::CancelledError("mvcc: compaction interrupted by a snapshot restore");
    }
    auto btx = backend_->BeginWrite();
    if (!btx.ok()) return btx.status();
    size_t scanned = 0;
    Revision last_rev;
    doomed.clear();
    absl::Status st = (*btx)->Scan(kKeyBucket, last, end, [&](std::string_view k, std::string_view) {
      last_rev = DecodeRevision(k);
      if (!keep.contains(last_rev)) doomed.emplace_back(k);
      return ++scanned < limit;
    });
    if (!st.ok()) return st;
    for (const auto& k : doomed) {
      if (st = (*btx)->Delete(kKeyBucket, k); !st.ok()) return st;
    }
    removed += static_cast<int64_t>(doomed.size());
    const bool done = scanned < limit;
    if (done) {
      st = (*btx)->Put(kMetaBucket, kFinishedCompactKey, CompactRevValue(rev));
      if (!st.ok()) return st;
    }
    if (st = (*btx)->Commit(); !st.ok()) return st;
    if (done) break;
    last = RevisionKey(Revision{last_rev.main, last_rev.sub + 1});
    std::this_thread::yield();  // let the apply loop take the writer lock
  }
  options_.logger.Info("finished scheduled compaction",
                       {{"compact-revision", rev}, {"removed", removed}});
  return absl::OkStatus();
}

void Store::WaitCompactionIdle() const {
  util::MutexLock l(&compact_mu_);
  compact_cv_.Wait(&compact_mu_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(compact_mu_) { return stopping_ || (compact_queue_.empty() && !compact_running_); });
}

}  // namespace cppetcd::mvcc
