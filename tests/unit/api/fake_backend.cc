#include "tests/unit/api/fake_backend.h"

#include <unistd.h>

#include <algorithm>

#include "cppetcd/lease/lessor.h"
#include "cppetcd/mvcc/errors.h"
#include "cppetcd/mvcc/watchable_store.h"

namespace cppetcd::api::testing {

namespace {

bool InRange(const std::string& k, const std::string& key, const std::string& end) {
  if (end.empty()) return k == key;
  if (end == std::string(1, '\0')) return k >= key;
  return k >= key && k < end;
}

// The real modules' typed errors, so the api maps them as in production.
using lease::ErrLeaseExists;
using lease::ErrLeaseNotFound;
using mvcc::ErrCompacted;
using mvcc::ErrFutureRev;

}  // namespace

class FakeWatchStream final : public WatchStreamBackend {
 public:
  FakeWatchStream(FakeBackend* backend, std::function<void()> notify)
      : backend_(backend), notify_(std::move(notify)) {}
  ~FakeWatchStream() override { backend_->Unregister(this); }

  absl::StatusOr<int64_t> Watch(int64_t watch_id, std::string key, std::string end,
                                int64_t start_rev, bool no_put, bool no_delete,
                                bool prev_kv) override {
    backend_->CountWatchCreate();
    const int64_t compact = backend_->CompactRev();
    const int64_t rev = backend_->Rev();
    std::vector<mvccpb::Event> history;
    if (start_rev > compact && start_rev <= rev) history = backend_->History(start_rev);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (watch_id == 0) {
        while (watchers_.contains(next_id_)) ++next_id_;
        watch_id = next_id_++;
      } else if (watchers_.contains(watch_id)) {
        return mvcc::ErrWatcherDuplicateID();
      }
      Watcher w{std::move(key), std::move(end), no_put, no_delete, prev_kv};
      if (start_rev != 0 && start_rev <= compact) {
        pending_.push_back(WatchUpdate{watch_id, rev, compact, {}});
      } else {
        WatchUpdate u{watch_id, rev, 0, Filter(w, history)};
        if (!u.events.empty()) pending_.push_back(std::move(u));
        watchers_[watch_id] = std::move(w);
      }
    }
    notify_();
    return watch_id;
  }

  absl::Status Cancel(int64_t watch_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (watchers_.erase(watch_id) == 0) return mvcc::ErrWatcherNotExist();
    return absl::OkStatus();
  }

  void RequestProgress(int64_t watch_id) override {
    const int64_t rev = backend_->Rev();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!watchers_.contains(watch_id)) return;
      pending_.push_back(WatchUpdate{watch_id, rev, 0, {}});
    }
    notify_();
  }

  void RequestProgressAll() override {
    const int64_t rev = backend_->Rev();
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_.push_back(WatchUpdate{-1, rev, 0, {}});
    }
    notify_();
  }

  std::vector<WatchUpdate> Poll(size_t max) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<WatchUpdate> out;
    while (!pending_.empty() && out.size() < max) {
      out.push_back(std::move(pending_.front()));
      pending_.erase(pending_.begin());
    }
    return out;
  }

  int64_t Rev() const override { return backend_->Rev(); }

  // Called by the backend (under its lock) for each new revision.
  void Deliver(int64_t rev, const std::vector<mvccpb::Event>& events) {
    bool any = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [id, w] : watchers_) {
        WatchUpdate u{id, rev, 0, Filter(w, events)};
        if (u.events.empty()) continue;
        pending_.push_back(std::move(u));
        any = true;
      }
    }
    if (any) notify_();
  }

 private:
  struct Watcher {
    std::string key, end;
    bool no_put = false, no_delete = false, prev_kv = false;
  };

  static std::vector<mvccpb::Event> Filter(const Watcher& w,
                                           const std::vector<mvccpb::Event>& events) {
    std::vector<mvccpb::Event> out;
    for (const mvccpb::Event& e : events) {
      if (!InRange(e.kv().key(), w.key, w.end)) continue;
      if (w.no_put && e.type() == mvccpb::Event::PUT) continue;
      if (w.no_delete && e.type() == mvccpb::Event::DELETE) continue;
      out.push_back(e);
      if (!w.prev_kv) out.back().clear_prev_kv();
    }
    return out;
  }

  FakeBackend* const backend_;
  std::function<void()> notify_;
  std::mutex mu_;
  std::map<int64_t, Watcher> watchers_;
  std::vector<WatchUpdate> pending_;
  int64_t next_id_ = 0;
};

FakeBackend::~FakeBackend() = default;

int64_t FakeBackend::Rev() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rev_;
}

int64_t FakeBackend::CompactRev() const {
  std::lock_guard<std::mutex> lock(mu_);
  return compact_rev_;
}

std::vector<mvccpb::Event> FakeBackend::History(int64_t from) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<mvccpb::Event> out;
  for (const auto& e : history_) {
    if (e.kv().mod_revision() >= from) out.push_back(e);
  }
  return out;
}

void FakeBackend::Unregister(FakeWatchStream* s) {
  std::lock_guard<std::mutex> lock(mu_);
  std::erase(streams_, s);
}

std::unique_ptr<WatchStreamBackend> FakeBackend::NewWatchStream(std::function<void()> notify) {
  auto s = std::make_unique<FakeWatchStream>(this, std::move(notify));
  std::lock_guard<std::mutex> lock(mu_);
  streams_.push_back(s.get());
  return s;
}

absl::Status FakeBackend::SnapshotBackend(int fd) {
  // The pattern 'a' + offset % 26, made 26 x 1024 bytes at a time so that
  // large snapshots cost no memory here.
  std::string block(26 * 1024, '\0');
  for (size_t i = 0; i < block.size(); ++i) block[i] = static_cast<char>('a' + i % 26);
  const size_t total = snapshot_bytes_.load();
  size_t off = 0;
  while (off < total) {
    const size_t at = off % 26;
    ssize_t n = ::write(fd, block.data() + at, std::min(total - off, block.size() - at));
    if (n <= 0) return absl::InternalError("write failed");
    off += static_cast<size_t>(n);
    snapshot_written_.fetch_add(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> FakeBackend::SnapshotSize(std::string_view head) {
  (void)head;
  return snapshot_bytes_.load();
}

void FakeBackend::FillHeader(etcdserverpb::ResponseHeader* header) const {
  header->set_cluster_id(kClusterId);
  header->set_member_id(kMemberId);
  header->set_raft_term(2);
  std::lock_guard<std::mutex> lock(mu_);
  header->set_revision(rev_);
}

void FakeBackend::PublishLocked(const std::vector<mvccpb::Event>& events) {
  history_.insert(history_.end(), events.begin(), events.end());
  for (FakeWatchStream* s : streams_) s->Deliver(rev_, events);
}

int64_t FakeBackend::PutLocked(const std::string& key, const std::string& value, int64_t lease) {
  ++rev_;
  mvccpb::Event e;
  e.set_type(mvccpb::Event::PUT);
  mvccpb::KeyValue& kv = kvs_[key];
  if (kv.version() > 0) *e.mutable_prev_kv() = kv;
  if (kv.version() == 0) kv.set_create_revision(rev_);
  kv.set_key(key);
  kv.set_value(value);
  kv.set_mod_revision(rev_);
  kv.set_version(kv.version() + 1);
  kv.set_lease(lease);
  *e.mutable_kv() = kv;
  PublishLocked({e});
  return rev_;
}

void FakeBackend::Range(const auth::Credentials& caller, const etcdserverpb::RangeRequest& req,
                        Done<etcdserverpb::RangeResponse> done) {
  etcdserverpb::RangeResponse resp;
  absl::Status err = [&]() -> absl::Status {
    std::lock_guard<std::mutex> lock(mu_);
    if (req.revision() > rev_) {
      return ErrFutureRev();
    }
    if (req.revision() > 0 && req.revision() < compact_rev_) {
      return ErrCompacted();
    }
    for (const auto& [k, kv] : kvs_) {
      if (!InRange(k, req.key(), req.range_end())) continue;
      resp.set_count(resp.count() + 1);
      if (req.limit() == 0 || resp.kvs_size() < req.limit()) *resp.add_kvs() = kv;
    }
    resp.set_more(req.limit() != 0 && resp.count() > req.limit());
    resp.mutable_header()->set_revision(rev_);
    return absl::OkStatus();
  }();
  if (!err.ok()) {
    std::move(done)(err);
    return;
  }
  std::move(done)(std::move(resp));
}

void FakeBackend::Put(const auth::Credentials& caller,
                      const etcdserverpb::PutRequest& req, Done<etcdserverpb::PutResponse> done) {
  etcdserverpb::PutResponse resp;
  absl::Status err = [&]() -> absl::Status {
    std::lock_guard<std::mutex> lock(mu_);
    if (req.lease() != 0 && !leases_.contains(req.lease())) {
      return ErrLeaseNotFound();
    }
    auto it = kvs_.find(req.key());
    if (req.prev_kv() && it != kvs_.end()) *resp.mutable_prev_kv() = it->second;
    resp.mutable_header()->set_revision(PutLocked(req.key(), req.value(), req.lease()));
    return absl::OkStatus();
  }();
  if (!err.ok()) {
    std::move(done)(err);
    return;
  }
  std::move(done)(std::move(resp));
}

void FakeBackend::DeleteRange(const auth::Credentials& caller,
                              const etcdserverpb::DeleteRangeRequest& req,
                              Done<etcdserverpb::DeleteRangeResponse> done) {
  etcdserverpb::DeleteRangeResponse resp;
  absl::Status err = [&]() -> absl::Status {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<mvccpb::Event> events;
    for (auto it = kvs_.begin(); it != kvs_.end();) {
      if (!InRange(it->first, req.key(), req.range_end())) {
        ++it;
        continue;
      }
      if (events.empty()) ++rev_;
      mvccpb::Event e;
      e.set_type(mvccpb::Event::DELETE);
      *e.mutable_prev_kv() = it->second;
      e.mutable_kv()->set_key(it->first);
      e.mutable_kv()->set_mod_revision(rev_);
      events.push_back(e);
      if (req.prev_kv()) *resp.add_prev_kvs() = it->second;
      it = kvs_.erase(it);
    }
    resp.set_deleted(static_cast<int64_t>(events.size()));
    if (!events.empty()) PublishLocked(events);
    resp.mutable_header()->set_revision(rev_);
    return absl::OkStatus();
  }();
  if (!err.ok()) {
    std::move(done)(err);
    return;
  }
  std::move(done)(std::move(resp));
}

void FakeBackend::Txn(const auth::Credentials& caller,
                      const etcdserverpb::TxnRequest& req, Done<etcdserverpb::TxnResponse> done) {
  // Compares are ignored: the success branch's puts run, one revision each.
  etcdserverpb::TxnResponse resp;
  absl::Status err = [&]() -> absl::Status {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& op : req.success()) {
      if (op.has_request_put()) {
        PutLocked(op.request_put().key(), op.request_put().value(), op.request_put().lease());
        resp.add_responses()->mutable_response_put();
      }
    }
    resp.set_succeeded(true);
    resp.mutable_header()->set_revision(rev_);
    return absl::OkStatus();
  }();
  if (!err.ok()) {
    std::move(done)(err);
    return;
  }
  std::move(done)(std::move(resp));
}

void FakeBackend::Compact(const auth::Credentials& caller,
                          const etcdserverpb::CompactionRequest& req,
                          Done<etcdserverpb::CompactionResponse> done) {
  absl::Status err = [&]() -> absl::Status {
    std::lock_guard<std::mutex> lock(mu_);
    if (req.revision() > rev_) {
      return ErrFutureRev();
    }
    if (req.revision() <= compact_rev_) {
      return ErrCompacted();
    }
    compact_rev_ = req.revision();
    return absl::OkStatus();
  }();
  if (!err.ok()) {
    std::move(done)(err);
    return;
  }
  std::move(done)(etcdserverpb::CompactionResponse());
}

void FakeBackend::LeaseGrant(const auth::Credentials& caller,
                             const etcdserverpb::LeaseGrantRequest& req,
                             Done<etcdserverpb::LeaseGrantResponse> done) {
  etcdserverpb::LeaseGrantResponse resp;
  absl::Status err = [&]() -> absl::Status {
    std::lock_guard<std::mutex> lock(mu_);
    int64_t id = req.id() != 0 ? req.id() : next_lease_++;
    if (leases_.contains(id)) {
      return ErrLeaseExists();
    }
    leases_[id] = req.ttl();
    resp.set_id(id);
    resp.set_ttl(req.ttl());
    return absl::OkStatus();
  }();
  if (!err.ok()) {
    std::move(done)(err);
    return;
  }
  std::move(done)(std::move(resp));
}

void FakeBackend::LeaseRevoke(const auth::Credentials& caller,
                              const etcdserverpb::LeaseRevokeRequest& req,
                              Done<etcdserverpb::LeaseRevokeResponse> done) {
  absl::Status err = [&]() -> absl::Status {
    std::lock_guard<std::mutex> lock(mu_);
    if (leases_.erase(req.id()) == 0) {
      return ErrLeaseNotFound();
    }
    return absl::OkStatus();
  }();
  if (!err.ok()) {
    std::move(done)(err);
    return;
  }
  std::move(done)(etcdserverpb::LeaseRevokeResponse());
}

void FakeBackend::LeaseRenew(int64_t id, Done<int64_t> done) {
  int64_t ttl = 0;
  absl::Status err = [&]() -> absl::Status {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = leases_.find(id);
    if (it == leases_.end()) {
      return ErrLeaseNotFound();
    }
    ttl = it->second;
    return absl::OkStatus();
  }();
  if (!err.ok()) {
    std::move(done)(err);
    return;
  }
  std::move(done)(ttl);
}

void FakeBackend::LeaseTimeToLive(const etcdserverpb::LeaseTimeToLiveRequest& req,
                                  Done<etcdserverpb::LeaseTimeToLiveResponse> done) {
  etcdserverpb::LeaseTimeToLiveResponse resp;
  absl::Status err = [&]() -> absl::Status {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = leases_.find(req.id());
    if (it == leases_.end()) {
      return ErrLeaseNotFound();
    }
    resp.set_id(req.id());
    resp.set_ttl(it->second);
    resp.set_grantedttl(it->second);
    return absl::OkStatus();
  }();
  if (!err.ok()) {
    std::move(done)(err);
    return;
  }
  std::move(done)(std::move(resp));
}

void FakeBackend::LeaseLeases(const etcdserverpb::LeaseLeasesRequest&,
                              Done<etcdserverpb::LeaseLeasesResponse> done) {
  etcdserverpb::LeaseLeasesResponse resp;
  absl::Status err = [&]() -> absl::Status {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, ttl] : leases_) resp.add_leases()->set_id(id);
    return absl::OkStatus();
  }();
  if (!err.ok()) {
    std::move(done)(err);
    return;
  }
  std::move(done)(std::move(resp));
}

void FakeBackend::MemberList(const etcdserverpb::MemberListRequest&,
                             Done<etcdserverpb::MemberListResponse> done) {
  etcdserverpb::MemberListResponse resp;
  etcdserverpb::Member* m = resp.add_members();
  m->set_id(kMemberId);
  m->set_name("default");
  m->add_peerurls("http://localhost:2380");
  m->add_clienturls("http://localhost:2379");
  std::move(done)(std::move(resp));
}

void FakeBackend::Status(const etcdserverpb::StatusRequest&,
                         Done<etcdserverpb::StatusResponse> done) {
  etcdserverpb::StatusResponse resp;
  resp.set_version("3.4.23");
  resp.set_leader(has_leader_.load() ? kMemberId : 0);
  resp.set_raftterm(2);
  std::move(done)(std::move(resp));
}

}  // namespace cppetcd::api::testing
