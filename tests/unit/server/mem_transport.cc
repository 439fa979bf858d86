#include "mem_transport.h"

#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace cppetcd::server::testing {

using SteadyClock = std::chrono::steady_clock;

// One thread running tasks in time order (FIFO among equal times). Tasks
// still queued at destruction are dropped.
class MemExecutor {
 public:
  MemExecutor() : thread_([this] { Run(); }) {}
  ~MemExecutor() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    std::multimap<SteadyClock::time_point, std::function<void()>> left;
    {
      std::lock_guard<std::mutex> l(mu_);
      left.swap(tasks_);
    }
  }

  void Post(std::function<void()> fn, SteadyClock::time_point at = SteadyClock::now()) {
    {
      std::lock_guard<std::mutex> l(mu_);
      tasks_.emplace(at, std::move(fn));
    }
    cv_.notify_all();
  }

 private:
  void Run() {
    std::unique_lock<std::mutex> l(mu_);
    while (!stop_) {
      if (tasks_.empty()) {
        cv_.wait(l);
        continue;
      }
      auto it = tasks_.begin();
      if (it->first > SteadyClock::now()) {
        cv_.wait_until(l, it->first);
        continue;
      }
      std::function<void()> fn = std::move(it->second);
      tasks_.erase(it);
      l.unlock();
      fn();
      fn = nullptr;  // captured state goes before the lock is retaken
      l.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<SteadyClock::time_point, std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts once the members above exist
};

// A completion callback that runs at most once: through Complete (pinned on
// its transport, so never after Stop), through the transport's Stop (Fail)
// or, for immediate errors, through FailNow on the caller's thread.
template <class Arg>
class OnceDone final : public MemTransport::Pending {
 public:
  using Fn = absl::AnyInvocable<void(Arg) &&>;
  OnceDone(std::shared_ptr<MemTransport> owner, Fn fn)
      : owner_(std::move(owner)), fn_(std::move(fn)) {}

  void Complete(Arg a) {
    if (!owner_->Pin()) return;  // stopped: Stop fails (failed) it
    Fn fn = Take();
    owner_->ForgetPending(token);
    if (fn) std::move(fn)(std::move(a));
    owner_->Unpin();
  }
  void Fail(absl::Status s) override { FailNow(std::move(s)); }
  void FailNow(absl::Status s) {
    Fn fn = Take();
    if (fn) std::move(fn)(Arg(std::move(s)));
  }

 private:
  Fn Take() {
    std::lock_guard<std::mutex> l(mu_);
    Fn fn = std::move(fn_);
    fn_ = nullptr;
    return fn;
  }

  const std::shared_ptr<MemTransport> owner_;
  std::mutex mu_;
  Fn fn_ ABSL_GUARDED_BY(mu_);
};

namespace {

absl::Status Unreachable(const std::string& url) {
  return absl::UnavailableError(absl::StrCat("peer ", url, " is unreachable"));
}

std::pair<std::string, std::string> LinkKey(const std::string& a, const std::string& b) {
  return a < b ? std::make_pair(a, b) : std::make_pair(b, a);
}

}  // namespace

// ---------------------------------------------------------------------------
// MemTransport.

MemTransport::MemTransport(MemHub* hub, std::string url) : hub_(hub), url_(std::move(url)) {}

MemTransport::~MemTransport() { Stop(); }

void MemTransport::SetHandler(PeerHandler* handler) {
  std::lock_guard<std::mutex> l(mu_);
  if (!stopped_) handler_ = handler;
}

void MemTransport::Stop() {
  std::map<uint64_t, std::shared_ptr<Pending>> pending;
  {
    std::unique_lock<std::mutex> l(mu_);
    if (stopped_) return;
    stopped_ = true;
    pins_cv_.wait(l, [&] { return pins_ == 0; });
    pending.swap(pending_);
    handler_ = nullptr;
  }
  for (auto& [token, p] : pending) p->Fail(absl::UnavailableError("transport stopped"));
  std::lock_guard<std::mutex> l(cb_mu_);
  unreachable_cb_ = nullptr;
}

bool MemTransport::Pin() {
  std::lock_guard<std::mutex> l(mu_);
  if (stopped_ || handler_ == nullptr) return false;
  ++pins_;
  return true;
}

void MemTransport::Unpin() {
  std::lock_guard<std::mutex> l(mu_);
  if (--pins_ == 0) pins_cv_.notify_all();
}

PeerHandler* MemTransport::handler() const {
  std::lock_guard<std::mutex> l(mu_);
  return handler_;
}

bool MemTransport::Live() const {
  std::lock_guard<std::mutex> l(mu_);
  return !stopped_ && handler_ != nullptr;
}

std::optional<std::string> MemTransport::UrlOf(uint64_t id) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = peers_.find(id);
  if (it == peers_.end() || it->second.empty()) return std::nullopt;
  return it->second.front();
}

void MemTransport::ReportUnreachable(uint64_t id) {
  if (!Pin()) return;
  {
    std::lock_guard<std::mutex> l(cb_mu_);
    if (unreachable_cb_) unreachable_cb_(id);
  }
  Unpin();
}

bool MemTransport::AddPending(std::shared_ptr<Pending> p) {
  std::lock_guard<std::mutex> l(mu_);
  if (stopped_) return false;
  p->token = next_token_++;
  pending_[p->token] = std::move(p);
  return true;
}

void MemTransport::ForgetPending(uint64_t token) {
  std::lock_guard<std::mutex> l(mu_);
  pending_.erase(token);
}

void MemTransport::Send(std::vector<raftpb::Message> messages) {
  std::map<std::string, std::vector<raftpb::Message>> by_url;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopped_) return;
    for (auto& m : messages) {
      auto it = peers_.find(m.to());
      if (it == peers_.end() || it->second.empty()) {
        hub_->dropped_.fetch_add(1);
        continue;
      }
      by_url[it->second.front()].push_back(std::move(m));
    }
  }
  for (auto& [url, msgs] : by_url) hub_->Enqueue(shared_from_this(), url, std::move(msgs));
}

void MemTransport::SendSnapshot(raftpb::Message msg, std::string db_path,
                                absl::AnyInvocable<void(absl::Status) &&> done) {
  auto od = std::make_shared<OnceDone<absl::Status>>(shared_from_this(), std::move(done));
  if (!UrlOf(msg.to()).has_value() || !AddPending(od)) {
    ::unlink(db_path.c_str());
    od->FailNow(absl::UnavailableError("snapshot target unknown or transport stopped"));
    return;
  }
  auto self = shared_from_this();
  hub_->calls_->Post([hub = hub_, self, od, msg = std::move(msg), db_path]() mutable {
    hub->DeliverSnapshot(self, std::move(msg), db_path,
                         [od](absl::Status s) { od->Complete(std::move(s)); });
  });
}

void MemTransport::AddPeer(uint64_t id, const std::vector<std::string>& peer_urls) {
  std::lock_guard<std::mutex> l(mu_);
  peers_[id] = peer_urls;
}

void MemTransport::UpdatePeer(uint64_t id, const std::vector<std::string>& peer_urls) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = peers_.find(id);
  if (it != peers_.end()) it->second = peer_urls;
}

void MemTransport::RemovePeer(uint64_t id) {
  std::lock_guard<std::mutex> l(mu_);
  peers_.erase(id);
}

std::vector<uint64_t> MemTransport::PeerIds() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<uint64_t> out;
  for (const auto& [id, urls] : peers_) out.push_back(id);
  return out;
}

std::optional<SteadyClock::time_point> MemTransport::ActiveSince(uint64_t id) {
  auto url = UrlOf(id);
  if (!url.has_value()) return std::nullopt;
  return hub_->LinkUpSince(url_, *url);
}

void MemTransport::SetUnreachableCallback(absl::AnyInvocable<void(uint64_t id)> cb) {
  std::lock_guard<std::mutex> l(cb_mu_);
  unreachable_cb_ = std::move(cb);
}

template <class T, class Call>
void MemTransport::Forward(uint64_t to, std::chrono::milliseconds timeout, PeerDone<T> done,
                           Call call) {
  auto od = std::make_shared<OnceDone<absl::StatusOr<T>>>(shared_from_this(), std::move(done));
  auto url = UrlOf(to);
  if (!url.has_value()) return od->FailNow(absl::UnavailableError("unknown peer"));
  if (!hub_->Connected(url_, *url)) return od->FailNow(Unreachable(*url));
  if (!AddPending(od)) return od->FailNow(absl::UnavailableError("transport stopped"));
  hub_->calls_->Post([hub = hub_, from = url_, to_url = *url, od, call = std::move(call)] {
    std::shared_ptr<MemTransport> ep = hub->Find(to_url);
    if (ep == nullptr || !hub->Connected(from, to_url) || !ep->Pin()) {
      od->Complete(Unreachable(to_url));
      return;
    }
    call(ep->handler(), PeerDone<T>([od](absl::StatusOr<T> r) { od->Complete(std::move(r)); }));
    ep->Unpin();
  });
  hub_->deliver_->Post(
      [od] { od->Complete(absl::DeadlineExceededError("forwarded call timed out")); },
      SteadyClock::now() + timeout);
}

void MemTransport::LeaseRenew(uint64_t to, int64_t lease_id, std::chrono::milliseconds timeout,
                              PeerDone<int64_t> done) {
  Forward<int64_t>(to, timeout, std::move(done),
                   [lease_id](PeerHandler* h, PeerDone<int64_t> d) {
                     h->LeaseRenew(lease_id, std::move(d));
                   });
}

void MemTransport::LeaseTimeToLive(uint64_t to, const etcdserverpb::LeaseTimeToLiveRequest& req,
                                   std::chrono::milliseconds timeout,
                                   PeerDone<etcdserverpb::LeaseTimeToLiveResponse> done) {
  Forward<etcdserverpb::LeaseTimeToLiveResponse>(
      to, timeout, std::move(done),
      [req](PeerHandler* h, PeerDone<etcdserverpb::LeaseTimeToLiveResponse> d) {
        h->LeaseTimeToLive(req, std::move(d));
      });
}

void MemTransport::MemberPromote(uint64_t to, const etcdserverpb::MemberPromoteRequest& req,
                                 std::chrono::milliseconds timeout,
                                 PeerDone<etcdserverpb::MemberPromoteResponse> done) {
  Forward<etcdserverpb::MemberPromoteResponse>(
      to, timeout, std::move(done),
      [req](PeerHandler* h, PeerDone<etcdserverpb::MemberPromoteResponse> d) {
        h->MemberPromote(req, std::move(d));
      });
}

absl::StatusOr<serverpb::ClusterInfo> MemTransport::FetchClusterInfo(
    const std::vector<std::string>& peer_urls, std::chrono::milliseconds timeout) {
  (void)timeout;  // answers are immediate here
  for (const auto& u : peer_urls) {
    if (!hub_->Connected(url_, u)) continue;
    std::shared_ptr<MemTransport> ep = hub_->Find(u);
    if (ep == nullptr || !ep->Pin()) continue;
    serverpb::ClusterInfo info = ep->handler()->ClusterInfo();
    ep->Unpin();
    return info;
  }
  return absl::UnavailableError(
      absl::StrCat("no member reachable at ", absl::StrJoin(peer_urls, ",")));
}

// ---------------------------------------------------------------------------
// MemHub.

MemHub::MemHub() : MemHub(Options{}) {}

MemHub::MemHub(Options options)
    : options_(options),
      healed_at_(SteadyClock::now()),
      deliver_(std::make_unique<MemExecutor>()),
      calls_(std::make_unique<MemExecutor>()) {}

MemHub::~MemHub() {
  // Threads first (a running task may still use endpoints), then the rest.
  calls_.reset();
  deliver_.reset();
}

std::shared_ptr<MemTransport> MemHub::NewTransport(const std::string& url) {
  auto t = std::make_shared<MemTransport>(this, url);
  std::lock_guard<std::mutex> l(mu_);
  endpoints_[url] = t;
  up_since_[url] = SteadyClock::now();
  down_.erase(url);
  return t;
}

std::shared_ptr<MemTransport> MemHub::Find(const std::string& url) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = endpoints_.find(url);
  return it == endpoints_.end() ? nullptr : it->second;
}

void MemHub::Partition(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& x : a) {
    for (const auto& y : b) {
      if (x != y) cut_.insert(LinkKey(x, y));
    }
  }
}

void MemHub::Isolate(const std::string& url) {
  std::lock_guard<std::mutex> l(mu_);
  isolated_.insert(url);
}

void MemHub::Heal() {
  std::lock_guard<std::mutex> l(mu_);
  cut_.clear();
  isolated_.clear();
  healed_at_ = SteadyClock::now();
}

void MemHub::SetDown(const std::string& url, bool down) {
  std::lock_guard<std::mutex> l(mu_);
  if (down) {
    down_.insert(url);
  } else if (down_.erase(url) > 0) {
    up_since_[url] = SteadyClock::now();
  }
}

bool MemHub::ConnectedLocked(const std::string& a, const std::string& b) const {
  if (a == b) return true;
  if (down_.contains(a) || down_.contains(b)) return false;
  if (isolated_.contains(a) || isolated_.contains(b)) return false;
  return !cut_.contains(LinkKey(a, b));
}

bool MemHub::Connected(const std::string& a, const std::string& b) const {
  std::lock_guard<std::mutex> l(mu_);
  return ConnectedLocked(a, b);
}

std::optional<SteadyClock::time_point> MemHub::LinkUpSince(const std::string& from,
                                                           const std::string& to) const {
  std::shared_ptr<MemTransport> ep;
  SteadyClock::time_point since;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!ConnectedLocked(from, to)) return std::nullopt;
    auto it = endpoints_.find(to);
    if (it == endpoints_.end()) return std::nullopt;
    ep = it->second;
    since = healed_at_;
    for (const auto* u : {&from, &to}) {
      auto up = up_since_.find(*u);
      if (up != up_since_.end()) since = std::max(since, up->second);
    }
  }
  if (!ep->Live()) return std::nullopt;
  return since - options_.active_since_age;
}

void MemHub::Enqueue(std::shared_ptr<MemTransport> from, const std::string& to_url,
                     std::vector<raftpb::Message> msgs) {
  const size_t n = msgs.size();
  bool full = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    size_t& queued = queued_per_dest_[to_url];
    if (queued + n > options_.queue_limit) {
      full = true;
    } else {
      queued += n;
    }
  }
  if (full) {
    dropped_.fetch_add(n);
    const uint64_t to = msgs.front().to();
    deliver_->Post([from, to] { from->ReportUnreachable(to); });
    return;
  }
  deliver_->Post([this, from, to_url, msgs = std::move(msgs)]() mutable {
    {
      std::lock_guard<std::mutex> l(mu_);
      queued_per_dest_[to_url] -= msgs.size();
    }
    const uint64_t to_id = msgs.front().to();
    std::shared_ptr<MemTransport> to = Find(to_url);
    if (to == nullptr || !Connected(from->Url(), to_url) || !to->Pin()) {
      dropped_.fetch_add(msgs.size());
      from->ReportUnreachable(to_id);
      return;
    }
    PeerHandler* h = to->handler();
    bool refused = false;
    for (auto& m : msgs) {
      if (h->MemberId() != m.to()) {  // another member lives at that URL now
        dropped_.fetch_add(1);
        continue;
      }
      absl::Status s = h->Process(std::move(m));
      if (s.ok()) {
        delivered_.fetch_add(1);
      } else {
        dropped_.fetch_add(1);
        if (s.code() == absl::StatusCode::kPermissionDenied) refused = true;
      }
    }
    to->Unpin();
    if (refused) {
      refusals_.fetch_add(1);
      if (from->Pin()) {
        from->handler()->OnLocalMemberRemoved();
        from->Unpin();
      }
    }
  });
}

void MemHub::DeliverSnapshot(std::shared_ptr<MemTransport> from, raftpb::Message msg,
                             std::string db_path,
                             absl::AnyInvocable<void(absl::Status) &&> done) {
  bool refused = false;
  absl::Status st = [&]() -> absl::Status {
    auto to_url = from->UrlOf(msg.to());
    if (!to_url.has_value()) return absl::UnavailableError("unknown snapshot target");
    std::shared_ptr<MemTransport> to = Find(*to_url);
    if (to == nullptr || !Connected(from->Url(), *to_url) || !to->Pin()) {
      return Unreachable(*to_url);
    }
    absl::Status s = [&]() -> absl::Status {
      PeerHandler* h = to->handler();
      std::ifstream in(db_path, std::ios::binary);
      if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", db_path));
      std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      const std::string path = h->SnapshotDbPath(msg.snapshot().metadata().index());
      {
        std::ofstream out(path + ".tmp", std::ios::binary | std::ios::trunc);
        out.write(data.data(), static_cast<std::streamsize>(data.size()));
        out.flush();
        if (!out) return absl::InternalError(absl::StrCat("cannot write ", path, ".tmp"));
      }
      if (::rename((path + ".tmp").c_str(), path.c_str()) != 0) {
        return absl::InternalError(absl::StrCat("cannot rename to ", path));
      }
      absl::Status p = h->Process(std::move(msg));
      if (p.code() == absl::StatusCode::kPermissionDenied) refused = true;
      return p;
    }();
    to->Unpin();
    return s;
  }();
  ::unlink(db_path.c_str());
  if (st.ok()) snapshots_.fetch_add(1);
  if (refused && from->Pin()) {
    refusals_.fetch_add(1);
    from->handler()->OnLocalMemberRemoved();
    from->Unpin();
  }
  std::move(done)(std::move(st));
}

absl::Status MemHub::ProcessAt(const std::string& url, raftpb::Message m) {
  std::shared_ptr<MemTransport> ep = Find(url);
  if (ep == nullptr || !ep->Pin()) return Unreachable(url);
  absl::Status s = ep->handler()->Process(std::move(m));
  ep->Unpin();
  return s;
}

}  // namespace cppetcd::server::testing
