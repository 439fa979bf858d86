// etcd v3 Watch service (etcd 3.4 v3rpc/watch.go) on a gRPC bidi reactor.
//
// Output order per stream: responses go out one write at a time from out_,
// in the order they were queued. A watcher's `created` response is queued
// before any of its events (events polled while its Watch call is still
// running are held until the call returns), so a client never sees events
// for an ID it has not been told about.
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "cppetcd/api/grpc_server.h"
#include "cppetcd/api/metrics.h"
#include "cppetcd/api/watch_fragment.h"
#include "src/api/services.h"

namespace cppetcd::api {

namespace {
constexpr size_t kPollBatch = 64;        // updates taken from the store per Poll
constexpr int kMaxPumpRounds = 16;       // then yield to the hub thread
constexpr int64_t kInvalidWatchId = -1;  // clientv3.InvalidWatchID
// Responses queued for the client (created, canceled, events) past which
// the stream stops reading requests until the client has taken some: a
// client that sends create/cancel requests without reading the answers
// holds back its own requests instead of growing this queue.
constexpr size_t kMaxQueuedResponses = 256;
}  // namespace

class WatchReactor final
    : public grpc::ServerBidiReactor<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>,
      public LeaderBoundStream,
      public std::enable_shared_from_this<WatchReactor> {
 public:
  // The caller's credentials (token, TLS CN), for permission checks of
  // later create requests; set once before the stream starts.
  auth::Credentials credentials_;

  WatchReactor(ServerBackend* backend, StreamHub* hub, util::Logger logger)
      : backend_(backend),
        hub_(hub),
        logger_(std::move(logger)),
        max_response_bytes_(static_cast<size_t>(backend->MaxRequestBytes() + kGrpcOverheadBytes)) {}

  // Creates the store-side stream and starts reading. `self` is the owning
  // pointer kept until OnDone.
  void Begin(std::shared_ptr<WatchReactor> self) {
    self_ = std::move(self);
    std::weak_ptr<WatchReactor> weak = weak_from_this();
    StreamHub* hub = hub_;
    ws_ = backend_->NewWatchStream([weak, hub] { hub->Schedule(weak); });
    Read();
  }

  // Moves pending output to the client: starts the next write if none is in
  // flight, polling the store when nothing is queued. Any thread; must not be
  // called from the store's notify callback (it polls the store).
  void Pump() {
    auto keep = shared_from_this();
    for (int round = 0; round < kMaxPumpRounds; ++round) {
      bool start_write = false;
      {
        util::MutexLock lock(&mu_);
        if (writing_ || gate_.FinishRequested()) return;
        if (!out_.empty()) {
          if (!gate_.BeginStart()) return;
          current_ = std::move(out_.front());
          out_.pop_front();
          writing_ = true;
          start_write = true;
        } else if (polling_) {
          repoll_ = true;  // the running poller goes round again
          return;
        } else {
          polling_ = true;
          repoll_ = false;
        }
      }
      if (start_write) {
        StartWrite(&current_);
        gate_.EndStart(this);
        return;
      }
      std::vector<WatchUpdate> updates = ws_->Poll(kPollBatch);
      util::MutexLock lock(&mu_);
      polling_ = false;
      for (WatchUpdate& u : updates) EnqueueUpdateLocked(std::move(u));
      if (out_.empty() && !repoll_) return;
    }
    hub_->Schedule(weak_from_this());
  }

  // Periodic progress (etcd sendLoop's progressTicker): watchers that asked
  // for progress notifications and got no events since the last tick get an
  // empty response at the current revision once they are caught up.
  void ProgressTick() {
    std::vector<int64_t> due;
    {
      util::MutexLock lock(&mu_);
      if (gate_.FinishRequested()) return;
      for (auto& [id, w] : watchers_) {
        if (!w.progress_notify) continue;
        if (w.progress_due) due.push_back(id);
        w.progress_due = true;
      }
    }
    for (int64_t id : due) ws_->RequestProgress(id);
  }

  void CancelNoLeader() override {
    auto keep = shared_from_this();
    gate_.RequestFinish(this, GrpcNoLeader());
  }

  void OnReadDone(bool ok) override {
    auto keep = shared_from_this();
    // A client that half-closes keeps receiving until it cancels (etcd's
    // recvLoop ends quietly on EOF and the stream lives on).
    if (!ok) return;
    switch (request_.request_union_case()) {
      case etcdserverpb::WatchRequest::kCreateRequest:
        HandleCreate(request_.create_request());
        break;
      case etcdserverpb::WatchRequest::kCancelRequest:
        HandleCancel(request_.cancel_request().watch_id());
        break;
      case etcdserverpb::WatchRequest::kProgressRequest:
        HandleProgressRequest();
        break;
      default:
        break;  // unknown requests are ignored, as etcd does
    }
    bool paused = false;
    {
      util::MutexLock lock(&mu_);
      paused = read_paused_ = out_.size() >= kMaxQueuedResponses;
    }
    if (!paused) Read();
    Pump();
  }

  void OnWriteDone(bool ok) override {
    auto keep = shared_from_this();
    bool resume_read = false;
    {
      util::MutexLock lock(&mu_);
      writing_ = false;
      if (ok && read_paused_ && out_.size() < kMaxQueuedResponses / 2) {
        read_paused_ = false;
        resume_read = true;
      }
    }
    if (resume_read) Read();
    if (!ok) {
      gate_.RequestFinish(
          this, grpc::Status(grpc::StatusCode::CANCELLED, "failed to send watch response"));
      return;
    }
    Pump();
  }

  void OnCancel() override {
    auto keep = shared_from_this();
    gate_.RequestFinish(this, GrpcWatchCanceled());
  }

  // The store-side stream (and with it every watcher) goes when the last
  // reference does; that is here unless the hub is pumping right now.
  void OnDone() override { self_.reset(); }

 private:
  struct Watcher {
    bool progress_notify = false;
    bool fragment = false;
    bool progress_due = true;  // no events since the last progress tick
  };

  etcdserverpb::WatchResponse NewResponse(int64_t watch_id, int64_t revision) const {
    etcdserverpb::WatchResponse r;
    backend_->FillHeader(r.mutable_header());
    r.mutable_header()->set_revision(revision);
    r.set_watch_id(watch_id);
    return r;
  }

  void HandleCreate(const etcdserverpb::WatchCreateRequest& c) {
    // An empty key means the smallest key, "\0" (etcd); range_end "" is a
    // single key and "\0" every key >= key, passed through.
    std::string key = c.key().empty() ? std::string(1, '\0') : c.key();
    bool no_put = false, no_delete = false;
    for (int f : c.filters()) {
      if (f == etcdserverpb::WatchCreateRequest::NOPUT) no_put = true;
      if (f == etcdserverpb::WatchCreateRequest::NODELETE) no_delete = true;
    }
    const int64_t ws_rev = ws_->Rev();
    // etcd isWatchPermitted: read permission on the watched range.
    const absl::Status permitted = backend_->AuthorizeRange(credentials_, key, c.range_end());
    if (!permitted.ok()) {
      util::MutexLock lock(&mu_);
      etcdserverpb::WatchResponse denied = NewResponse(kInvalidWatchId, ws_rev);
      denied.set_created(true);
      denied.set_canceled(true);
      // etcd's reason is the gRPC error's Go text, code name included
      // ("rpc error: code = PermissionDenied desc = etcdserver: permission
      // denied"); found by diff_fuzz_test.
      const grpc::Status st = ToGrpcStatus(permitted);
      denied.set_cancel_reason(absl::StrCat("rpc error: code = ",
                                            std::string(GrpcMetrics::CodeName(st.error_code())),
                                            " desc = ", st.error_message()));
      out_.push_back(std::move(denied));
      return;
    }
    const int64_t start_rev = c.start_revision() == 0 ? ws_rev + 1 : c.start_revision();
    {
      util::MutexLock lock(&mu_);
      creating_ = true;
    }
    absl::StatusOr<int64_t> id =
        ws_->Watch(c.watch_id(), std::move(key), c.range_end(), start_rev, no_put, no_delete,
                   c.prev_kv());
    util::MutexLock lock(&mu_);
    creating_ = false;
    etcdserverpb::WatchResponse created = NewResponse(id.ok() ? *id : kInvalidWatchId, ws_rev);
    created.set_created(true);
    if (!id.ok()) {
      created.set_canceled(true);
      created.set_cancel_reason(std::string(id.status().message()));
      held_.clear();
      out_.push_back(std::move(created));
      return;
    }
    watchers_[*id] = Watcher{c.progress_notify(), c.fragment(), true};
    out_.push_back(std::move(created));
    auto held = held_.extract(*id);
    held_.clear();
    if (!held.empty()) {
      for (WatchUpdate& u : held.mapped()) EnqueueUpdateLocked(std::move(u));
    }
  }

  void HandleCancel(int64_t id) {
    absl::Status st = ws_->Cancel(id);
    if (!st.ok()) return;  // unknown ID: no answer (etcd)
    const int64_t rev = ws_->Rev();
    util::MutexLock lock(&mu_);
    watchers_.erase(id);
    etcdserverpb::WatchResponse r = NewResponse(id, rev);
    r.set_canceled(true);
    out_.push_back(std::move(r));
  }

  // A response with watch_id -1 at the current revision, meant for every
  // watcher of the stream; the store sends it once all of them are caught
  // up, so it never claims a revision whose events are still to come (etcd
  // 3.4 answered at once; later versions wait like this).
  void HandleProgressRequest() { ws_->RequestProgressAll(); }

  void EnqueueUpdateLocked(WatchUpdate u) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (u.watch_id == kInvalidWatchId) {
      out_.push_back(NewResponse(kInvalidWatchId, u.revision));
      return;
    }
    auto it = watchers_.find(u.watch_id);
    if (it == watchers_.end()) {
      // Either the watcher is being created right now (hold until its
      // created response is queued) or it was cancelled (drop).
      if (creating_) held_[u.watch_id].push_back(std::move(u));
      return;
    }
    etcdserverpb::WatchResponse r = NewResponse(u.watch_id, u.revision);
    if (u.compact_revision != 0) {
      r.set_compact_revision(u.compact_revision);
      r.set_canceled(true);
    }
    for (mvccpb::Event& e : u.events) *r.add_events() = std::move(e);
    if (!u.events.empty()) it->second.progress_due = false;
    const bool fragment = it->second.fragment;
    if (u.compact_revision != 0) watchers_.erase(it);
    if (fragment) {
      for (auto& piece : FragmentWatchResponse(r, max_response_bytes_)) {
        out_.push_back(std::move(piece));
      }
    } else {
      out_.push_back(std::move(r));
    }
  }

  void Read() {
    if (gate_.BeginStart()) {
      StartRead(&request_);
      gate_.EndStart(this);
    }
  }

  ServerBackend* const backend_;
  StreamHub* const hub_;
  util::Logger logger_;
  const size_t max_response_bytes_;  // fragment threshold (etcd: max request + 512 KiB)
  std::unique_ptr<WatchStreamBackend> ws_;  // set in Begin; lives as long as the reactor
  etcdserverpb::WatchRequest request_;      // owned by the read in flight

  StreamGate gate_;
  // The write in flight: set under mu_ with writing_, then owned by gRPC
  // until OnWriteDone.
  etcdserverpb::WatchResponse current_;

  util::Mutex mu_;
  std::deque<etcdserverpb::WatchResponse> out_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int64_t, Watcher> watchers_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int64_t, std::vector<WatchUpdate>> held_ ABSL_GUARDED_BY(mu_);
  bool creating_ ABSL_GUARDED_BY(mu_) = false;  // a Watch call is running
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;  // no read in flight: out_ reached kMaxQueuedResponses
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool polling_ ABSL_GUARDED_BY(mu_) = false;
  bool repoll_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<WatchReactor> self_;  // released in OnDone
};

grpc::ServerBidiReactor<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>*
WatchService::Watch(grpc::CallbackServerContext* context) {
  if (backend_->IsLearner()) return NewRejectedWatchStream(GrpcNotForLearner());
  const bool require_leader = RequiresLeader(context);
  if (require_leader && !backend_->HasLeader()) return NewRejectedWatchStream(GrpcNoLeader());
  auto reactor = std::make_shared<WatchReactor>(backend_, hub_, logger_);
  reactor->credentials_ = CallCredentials(context);
  hub_->AddWatch(reactor);
  if (require_leader) hub_->AddLeaderBound(reactor);
  reactor->Begin(reactor);
  return reactor.get();
}

// ---------------------------------------------------------------- StreamHub

StreamHub::StreamHub(ServerBackend* backend, std::chrono::milliseconds progress_interval,
                     std::chrono::milliseconds leader_check_interval, util::Logger logger)
    : backend_(backend),
      progress_interval_(progress_interval),
      leader_check_interval_(leader_check_interval),
      logger_(std::move(logger)) {
  thread_ = std::thread([this] { Run(); });
}

StreamHub::~StreamHub() {
  {
    util::MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.Signal();
  thread_.join();
}

void StreamHub::Schedule(std::weak_ptr<WatchReactor> reactor) {
  {
    util::MutexLock lock(&mu_);
    scheduled_.push_back(std::move(reactor));
  }
  cv_.Signal();
}

namespace {
template <class T>
void PruneExpired(std::vector<std::weak_ptr<T>>* v) {
  std::erase_if(*v, [](const std::weak_ptr<T>& w) { return w.expired(); });
}
}  // namespace

void StreamHub::AddWatch(std::weak_ptr<WatchReactor> reactor) {
  util::MutexLock lock(&mu_);
  // Ended streams are pruned here too, not only on progress ticks (10 min
  // by default), so that their memory goes back soon.
  if (watches_.size() >= 2 * watches_after_prune_ + 64) {
    PruneExpired(&watches_);
    watches_after_prune_ = watches_.size();
  }
  watches_.push_back(std::move(reactor));
}

void StreamHub::AddLeaderBound(std::weak_ptr<LeaderBoundStream> stream) {
  util::MutexLock lock(&mu_);
  if (leader_bound_.size() >= 2 * leader_bound_after_prune_ + 64) {
    PruneExpired(&leader_bound_);
    leader_bound_after_prune_ = leader_bound_.size();
  }
  leader_bound_.push_back(std::move(stream));
}

void StreamHub::Run() {
  using Clock = std::chrono::steady_clock;
  Clock::time_point next_progress = Clock::now() + progress_interval_;
  Clock::time_point next_leader_check = Clock::now() + leader_check_interval_;
  int no_leader_checks = 0;
  for (;;) {
    std::vector<std::weak_ptr<WatchReactor>> scheduled, progress;
    std::vector<std::weak_ptr<LeaderBoundStream>> leader_bound;
    bool check_leader = false;
    {
      util::MutexLock lock(&mu_);
      cv_.WaitUntil(&mu_, std::min(next_progress, next_leader_check),
                    [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !scheduled_.empty(); });
      if (stop_) return;
      scheduled.swap(scheduled_);
      const Clock::time_point now = Clock::now();
      if (now >= next_progress) {
        next_progress = now + progress_interval_;
        PruneExpired(&watches_);
        progress = watches_;
      }
      if (now >= next_leader_check) {
        next_leader_check = now + leader_check_interval_;
        PruneExpired(&leader_bound_);
        check_leader = true;
      }
    }
    for (auto& w : scheduled) {
      if (auto r = w.lock()) r->Pump();
    }
    for (auto& w : progress) {
      if (auto r = w.lock()) r->ProgressTick();
    }
    if (check_leader) {
      // etcd cancels leader-bound streams only after 3 election timeouts
      // without a leader: reconnecting streams costs more than refusing new ones.
      no_leader_checks = backend_->HasLeader() ? 0 : no_leader_checks + 1;
      if (no_leader_checks >= 3) {
        {
          util::MutexLock lock(&mu_);
          leader_bound.swap(leader_bound_);
        }
        if (!leader_bound.empty()) {
          logger_.Warn("cancelling streams that require a leader",
                       {{"streams", static_cast<uint64_t>(leader_bound.size())}});
        }
        for (auto& w : leader_bound) {
          if (auto s = w.lock()) s->CancelNoLeader();
        }
      }
    }
  }
}

}  // namespace cppetcd::api
