#include "cppetcd/transport/grpc_transport.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include <grpc/support/time.h>
#include <grpcpp/channel.h>

#include "absl/strings/str_cat.h"
#include "cppetcd/util/crc32c.h"
#include "src/transport/impl.h"

namespace cppetcd::transport {

namespace {

using std::chrono::milliseconds;

// Pins the current thread holds (Stop, if called from inside a handler
// method, waits only for the others).
thread_local int tls_handler_pins = 0;

constexpr size_t kMinMessageLimitBytes = 64 << 20;
// How often an idle sender checks that its connection is still READY.
constexpr milliseconds kIdleCheck{100};
// Slice of waits that must notice Stop.
constexpr milliseconds kWaitSlice{50};

int ClampInt(int64_t v) {
  return static_cast<int>(std::clamp<int64_t>(v, 0, std::numeric_limits<int32_t>::max()));
}

size_t MessageLimitBytes(const TransportOptions& o) {
  return std::max({kMinMessageLimitBytes, 2 * o.max_batch_bytes, 2 * o.snapshot_chunk_bytes});
}

// A gRPC deadline `timeout` from now on the monotonic clock: a step of the
// wall clock (NTP, an operator's `date -s`) must not stretch or cut a peer
// call or a reconnect wait. Negative timeouts count as 0.
gpr_timespec DeadlineAfter(milliseconds timeout) {
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                      gpr_time_from_millis(std::max<int64_t>(timeout.count(), 0), GPR_TIMESPAN));
}

void JoinOrDetach(std::thread& t) {
  if (!t.joinable()) return;
  if (t.get_id() == std::this_thread::get_id()) {
    t.detach();  // called from the thread itself (a handler callback)
  } else {
    t.join();
  }
}

}  // namespace

// ============================================================ lifecycle

GrpcTransport::Impl::Impl(TransportOptions options)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : util::SystemClock::Get()),
      logger_(options_.logger),
      local_id_(options_.member_id) {
  service_ = NewPeerService(this);
}

GrpcTransport::Impl::~Impl() { Stop(); }

GrpcTransport::Impl::HandlerRef::~HandlerRef() {
  if (impl_ != nullptr && handler_ != nullptr) impl_->ReleaseHandler();
}

GrpcTransport::Impl::HandlerRef GrpcTransport::Impl::AcquireHandler() {
  util::MutexLock l(&handler_mu_);
  if (handler_closed_ || handler_ == nullptr) return HandlerRef();
  ++handler_pins_;
  ++tls_handler_pins;
  return HandlerRef(this, handler_);
}

void GrpcTransport::Impl::ReleaseHandler() {
  util::MutexLock l(&handler_mu_);
  --handler_pins_;
  --tls_handler_pins;
  handler_cv_.SignalAll();
}

void GrpcTransport::Impl::SetHandler(server::PeerHandler* handler) {
  util::MutexLock l(&handler_mu_);
  if (handler_closed_) return;
  handler_ = handler;
  if (handler != nullptr && local_id_.load() == 0) local_id_.store(handler->MemberId());
}

uint64_t GrpcTransport::Impl::LocalClusterId() {
  HandlerRef h = AcquireHandler();
  return h ? h->ClusterId() : 0;
}

std::shared_ptr<grpc::Channel> GrpcTransport::Impl::NewChannel(const std::string& url) {
  absl::StatusOr<PeerUrl> parsed = ParsePeerUrl(url);
  if (!parsed.ok()) {
    logger_.Error("invalid peer URL", {{"url", url}, {"error", std::string(parsed.status().message())}});
    return nullptr;
  }
  // TLS for https:// peers only; an http:// peer URL stays plain even when
  // peer certificates are configured (etcd ignores them for http).
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (parsed->secure) {
    creds = options_.channel_credentials;
    if (creds == nullptr) {
      if (log_limiter_.Allow("https-unsupported-" + url)) {
        logger_.Error("https peer URL without peer TLS (--peer-cert-file, --peer-key-file)",
                      {{"url", url}});
      }
      return nullptr;
    }
  }
  grpc::ChannelArguments args;
  const int limit = ClampInt(static_cast<int64_t>(MessageLimitBytes(options_)));
  args.SetMaxReceiveMessageSize(limit);
  args.SetMaxSendMessageSize(limit);
  // One connection per peer channel (not shared with other channels to
  // the same address), and our own reconnect pace: gRPC's default backoff
  // grows to 120 s, far too slow for failover.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, ClampInt(options_.min_backoff.count()));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, ClampInt(options_.max_backoff.count()));
  // gRPC takes this one as the time one connection attempt (TCP and HTTP/2
  // handshakes) is given, not as a backoff: at min_backoff (100 ms) a peer
  // that took longer to answer, on a loaded machine, was never reached.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, ClampInt(options_.connect_timeout.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, ClampInt(options_.keepalive_time.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ClampInt(options_.keepalive_timeout.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  if (parsed->secure && !options_.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options_.tls_server_name);
  }
  return grpc::CreateCustomChannel(parsed->target, creds, args);
}

void GrpcTransport::Impl::AddCallMetadata(grpc::ClientContext* ctx) {
  ctx->AddMetadata(kClusterIdKey, std::to_string(LocalClusterId()));
  ctx->AddMetadata(kFromKey, std::to_string(LocalId()));
}

absl::Status GrpcTransport::Impl::Listen() {
  std::vector<PeerUrl> urls;
  for (const std::string& u : options_.listen_peer_urls) {
    absl::StatusOr<PeerUrl> p = ParsePeerUrl(u);
    if (!p.ok()) return p.status();
    if (p->secure && options_.server_credentials == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url ", u,
          " with HTTPS scheme"));
    }
    urls.push_back(*p);
  }
  if (urls.empty()) return absl::InvalidArgumentError("no listen peer URL");
  util::MutexLock l(&mu_);
  if (stopped_) return absl::FailedPreconditionError("transport stopped");
  if (listened_) return absl::FailedPreconditionError("transport already listening");
  grpc::ServerBuilder builder;
  std::vector<int> ports(urls.size(), 0);
  for (size_t i = 0; i < urls.size(); ++i) {
    auto creds = urls[i].secure ? options_.server_credentials : grpc::InsecureServerCredentials();
    builder.AddListeningPort(urls[i].target, creds, &ports[i]);
  }
  builder.RegisterService(service_.get());
  const int limit = ClampInt(static_cast<int64_t>(MessageLimitBytes(options_)));
  builder.SetMaxReceiveMessageSize(limit);
  builder.SetMaxSendMessageSize(limit);
  // A taken port must fail (gRPC enables SO_REUSEPORT by default).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, ClampInt(options_.keepalive_time.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             ClampInt(options_.keepalive_timeout.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             ClampInt(options_.keepalive_time.count() / 2));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  for (size_t i = 0; i < urls.size(); ++i) {
    if (server == nullptr || ports[i] == 0) {
      if (server != nullptr) server->Shutdown(std::chrono::system_clock::now());  // gRPC: real
      // gRPC does not tell which address failed or why: probe in order.
      for (size_t j = 0; j < urls.size(); ++j) {
        if (server != nullptr && ports[j] != 0) continue;
        return absl::UnavailableError(DescribeListenFailure(urls[j]));
      }
    }
  }
  bound_urls_.clear();
  for (size_t i = 0; i < urls.size(); ++i) {
    if (!urls[i].unix_path.empty()) {
      bound_urls_.push_back(
          absl::StrCat(urls[i].secure ? "unixs://" : "unix://", urls[i].unix_path));
      continue;
    }
    bound_urls_.push_back(
        absl::StrCat(urls[i].secure ? "https://" : "http://", urls[i].host, ":", ports[i]));
  }
  server_ = std::move(server);
  listened_ = true;
  if (LocalId() == 0) {  // the member ID comes with the handler
    logger_.Info("started peer transport", {{"listen-peer-urls", bound_urls_}});
  } else {
    logger_.Info("started peer transport", {{"local-member-id", LocalIdHex()},
                                            {"listen-peer-urls", bound_urls_}});
  }
  return absl::OkStatus();
}

std::vector<std::string> GrpcTransport::Impl::BoundUrls() const {
  util::MutexLock l(&mu_);
  return bound_urls_;
}

void GrpcTransport::Impl::Stop() {
  std::vector<std::shared_ptr<PeerLink>> peers;
  {
    util::MutexLock l(&mu_);
    if (stopped_) return;
    stopped_ = true;
    for (auto& [id, p] : peers_) peers.push_back(p);
    peers_.clear();
  }
  // 1. No handler method runs from now on.
  {
    util::MutexLock l(&handler_mu_);
    handler_closed_ = true;
    handler_cv_.Wait(&handler_mu_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(handler_mu_) {
      return handler_pins_ <= tls_handler_pins;
    });
  }
  // 2. Raft streams.
  for (auto& p : peers) {
    util::MutexLock l(&p->mu);
    p->stop = true;
    if (p->stream_ctx != nullptr) p->stream_ctx->TryCancel();
    p->cv.SignalAll();
  }
  for (auto& p : peers) JoinOrDetach(p->thread);
  prober_cv_.SignalAll();
  if (prober_.joinable()) prober_.join();
  if (write_watchdog_.joinable()) write_watchdog_.join();
  // 3. Snapshot senders and forwarded calls.
  std::vector<std::thread> snapshot_threads;
  {
    util::MutexLock l(&mu_);
    for (auto& [token, s] : snapshots_) {
      if (s.ctx != nullptr) s.ctx->TryCancel();
    }
    for (auto& [token, ctx] : calls_) {
      if (ctx != nullptr) ctx->TryCancel();
    }
    // Real time: waits for gRPC to finish cancelled calls.
    calls_cv_.WaitFor(&mu_, std::chrono::seconds(2),
                      [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return calls_.empty(); });
    for (auto& [token, s] : snapshots_) snapshot_threads.push_back(std::move(s.thread));
    snapshots_.clear();
  }
  for (auto& t : snapshot_threads) JoinOrDetach(t);
  // 4. The server: cancel what is still running on it.
  std::unique_ptr<grpc::Server> server;
  {
    util::MutexLock l(&mu_);
    server = std::move(server_);
  }
  if (server != nullptr) {
    server->Shutdown(std::chrono::system_clock::now());  // gRPC deadline: real time
    server->Wait();
  }
}

// ============================================================ peers

std::shared_ptr<PeerLink> GrpcTransport::Impl::FindPeer(uint64_t id) const {
  util::MutexLock l(&mu_);
  auto it = peers_.find(id);
  return it == peers_.end() ? nullptr : it->second;
}

void GrpcTransport::Impl::SetUrls(PeerLink* peer, const std::vector<std::string>& urls) {
  peer->urls = urls;
  peer->channels.clear();
  for (const std::string& u : urls) peer->channels.push_back(NewChannel(u));
  peer->url_index = 0;
  ++peer->generation;
  if (peer->stream_ctx != nullptr) peer->stream_ctx->TryCancel();
  peer->cv.SignalAll();
}

void GrpcTransport::Impl::AddPeer(uint64_t id, const std::vector<std::string>& urls) {
  std::shared_ptr<PeerLink> peer;
  {
    util::MutexLock l(&mu_);
    if (stopped_ || id == 0 || id == LocalId()) return;  // never a stream to ourselves
    auto it = peers_.find(id);
    if (it != peers_.end()) {
      util::MutexLock pl(&it->second->mu);
      if (it->second->urls != urls) SetUrls(it->second.get(), urls);
      return;
    }
    peer = std::make_shared<PeerLink>(id);
    {
      util::MutexLock pl(&peer->mu);
      SetUrls(peer.get(), urls);
    }
    peers_[id] = peer;
    peer->thread = std::thread([this, peer] { RunSender(peer); });
    if (!prober_.joinable() && options_.rtt_probe_interval.count() > 0) {
      prober_ = std::thread([this] { RunProber(); });
    }
    if (!write_watchdog_.joinable() && options_.write_timeout.count() > 0) {
      write_watchdog_ = std::thread([this] { RunWriteWatchdog(); });
    }
  }
  logger_.Info("added remote peer", {{"local-member-id", LocalIdHex()},
                                     {"remote-peer-id", util::IdToHex(id)},
                                     {"remote-peer-urls", urls}});
}

void GrpcTransport::Impl::UpdatePeer(uint64_t id, const std::vector<std::string>& urls) {
  std::shared_ptr<PeerLink> peer = FindPeer(id);
  if (peer == nullptr) return;
  {
    util::MutexLock l(&peer->mu);
    if (peer->urls == urls) return;
    SetUrls(peer.get(), urls);
  }
  logger_.Info("updated remote peer", {{"local-member-id", LocalIdHex()},
                                       {"remote-peer-id", util::IdToHex(id)},
                                       {"remote-peer-urls", urls}});
}

void GrpcTransport::Impl::RemovePeer(uint64_t id) {
  std::shared_ptr<PeerLink> peer;
  {
    util::MutexLock l(&mu_);
    auto it = peers_.find(id);
    if (it == peers_.end()) return;
    peer = it->second;
    peers_.erase(it);
  }
  {
    util::MutexLock l(&peer->mu);
    peer->stop = true;
    if (peer->stream_ctx != nullptr) peer->stream_ctx->TryCancel();
    peer->cv.SignalAll();
  }
  JoinOrDetach(peer->thread);
  logger_.Info("removed remote peer",
               {{"local-member-id", LocalIdHex()}, {"removed-remote-peer-id", util::IdToHex(id)}});
}

std::optional<Clock::time_point> GrpcTransport::Impl::ActiveSince(uint64_t id) {
  std::shared_ptr<PeerLink> peer = FindPeer(id);
  if (peer == nullptr) return std::nullopt;
  util::MutexLock l(&peer->mu);
  return peer->active_since;
}

void GrpcTransport::Impl::RunWriteWatchdog() {
  const milliseconds tick =
      std::clamp(options_.write_timeout / 4, milliseconds(10), milliseconds(250));
  // Real time: it times a Write blocked inside gRPC (write_started).
  util::MutexLock l(&mu_);
  while (!stopped_) {
    prober_cv_.WaitFor(&mu_, tick, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopped_; });
    if (stopped_) return;
    std::vector<std::shared_ptr<PeerLink>> peers;
    for (auto& [id, p] : peers_) peers.push_back(p);
    l.Unlock();
    const Clock::time_point now = Clock::now();
    for (auto& p : peers) {
      util::MutexLock pl(&p->mu);
      if (!p->write_started.has_value() || p->stream_ctx == nullptr ||
          now - *p->write_started < options_.write_timeout) {
        continue;
      }
      // The blocked Write returns false and the sender reconnects.
      p->stream_ctx->TryCancel();
      p->write_started.reset();
      ++p->stats.write_timeouts;
      logger_.Warn("raft stream write timed out; reconnecting",
                   {{"remote-peer-id", util::IdToHex(p->id)},
                    {"write-timeout", absl::StrCat(options_.write_timeout.count(), "ms")}});
    }
    l.Lock();
  }
}

void GrpcTransport::Impl::RunProber() {
  util::MutexLock l(&mu_);
  while (!stopped_) {
    clock_->WaitUntil(&prober_cv_, &mu_, clock_->Now() + options_.rtt_probe_interval,
                      [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopped_; });
    if (stopped_) return;
    std::vector<std::shared_ptr<PeerLink>> peers;
    for (auto& [id, p] : peers_) peers.push_back(p);
    l.Unlock();
    for (auto& p : peers) {
      std::shared_ptr<grpc::Channel> channel;
      {
        util::MutexLock pl(&p->mu);
        if (p->url_index < p->channels.size()) channel = p->channels[p->url_index];
      }
      if (channel == nullptr) continue;
      grpc::ClientContext ctx;
      ctx.set_deadline(DeadlineAfter(std::min(options_.rtt_probe_interval, milliseconds(1000))));
      peerpb::ProbeRequest req;
      peerpb::ProbeResponse resp;
      const auto start = std::chrono::steady_clock::now();  // a real round trip
      grpc::Status s = peerpb::Peer::NewStub(channel)->Probe(&ctx, req, &resp);
      if (s.ok()) {
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        p->rtt.Observe(seconds);
        if (options_.on_peer_rtt) options_.on_peer_rtt(p->id, seconds);
      }
    }
    l.Lock();
  }
}

std::map<uint64_t, util::HistogramSnapshot> GrpcTransport::Impl::PeerRoundTripTimes() const {
  std::map<uint64_t, util::HistogramSnapshot> out;
  util::MutexLock l(&mu_);
  for (const auto& [id, p] : peers_) out[id] = p->rtt.Snapshot();
  return out;
}

std::optional<PeerStats> GrpcTransport::Impl::Stats(uint64_t id) const {
  std::shared_ptr<PeerLink> peer = FindPeer(id);
  if (peer == nullptr) return std::nullopt;
  util::MutexLock l(&peer->mu);
  return peer->stats;
}

void GrpcTransport::Impl::SetUnreachableCallback(absl::AnyInvocable<void(uint64_t)> cb) {
  util::MutexLock l(&unreachable_mu_);
  unreachable_cb_ = std::move(cb);
}

void GrpcTransport::Impl::MaybeReportUnreachable(PeerLink* peer) {
  {
    util::MutexLock l(&peer->mu);
    const Clock::time_point now = clock_->Now();
    if (peer->last_unreachable.has_value() &&
        now - *peer->last_unreachable < options_.min_backoff) {
      return;
    }
    peer->last_unreachable = now;
  }
  util::MutexLock l(&unreachable_mu_);
  if (unreachable_cb_) unreachable_cb_(peer->id);
}

void GrpcTransport::Impl::NotifyLocalMemberRemoved(uint64_t by_peer) {
  if (removed_notified_.exchange(true)) return;
  logger_.Error("the member has been permanently removed from the cluster",
                {{"local-member-id", LocalIdHex()}, {"remote-peer-id", util::IdToHex(by_peer)}});
  HandlerRef h = AcquireHandler();
  if (h) h->OnLocalMemberRemoved();
}

// ============================================================ raft streams

void GrpcTransport::Impl::Send(std::vector<raftpb::Message> messages) {
  if (messages.empty()) return;
  // Group by peer under the map lock, then queue per peer.
  std::vector<std::pair<std::shared_ptr<PeerLink>, std::vector<raftpb::Message>>> groups;
  {
    util::MutexLock l(&mu_);
    if (stopped_) return;
    for (raftpb::Message& m : messages) {
      auto it = peers_.find(m.to());
      if (it == peers_.end()) {
        if (log_limiter_.Allow("unknown-peer-" + util::IdToHex(m.to()))) {
          logger_.Debug("dropped Raft message to unknown peer",
                        {{"local-member-id", LocalIdHex()},
                         {"remote-peer-id", util::IdToHex(m.to())}});
        }
        continue;
      }
      auto g = std::find_if(groups.begin(), groups.end(),
                            [&](const auto& e) { return e.first == it->second; });
      if (g == groups.end()) {
        groups.emplace_back(it->second, std::vector<raftpb::Message>());
        g = groups.end() - 1;
      }
      g->second.push_back(std::move(m));
    }
  }
  for (auto& [peer, msgs] : groups) {
    bool unreachable = false;
    bool overflow = false;
    bool active = false;
    {
      util::MutexLock l(&peer->mu);
      active = peer->state == PeerLink::State::kConnected;
      if (peer->state == PeerLink::State::kBackoff) {
        // Not connected: raft learns of the loss now rather than later.
        peer->stats.dropped_messages += msgs.size();
        unreachable = true;
      } else {
        for (raftpb::Message& m : msgs) {
          if (peer->queue.size() >= options_.max_queued_messages_per_peer) {
            ++peer->stats.dropped_messages;
            overflow = true;
            continue;
          }
          peer->queue.push_back(std::move(m));
        }
        peer->cv.SignalAll();
      }
    }
    if (overflow) {
      unreachable = true;
      if (log_limiter_.Allow("buffer-full-" + util::IdToHex(peer->id))) {
        logger_.Warn("dropped internal Raft message since sending buffer is full (overloaded "
                     "network)",
                     {{"local-member-id", LocalIdHex()},
                      {"remote-peer-id", util::IdToHex(peer->id)},
                      {"remote-peer-active", active}});
      }
    }
    if (unreachable) MaybeReportUnreachable(peer.get());
  }
}

void GrpcTransport::Impl::RunSender(std::shared_ptr<PeerLink> peer) {
  milliseconds backoff = options_.min_backoff;
  while (true) {
    uint64_t generation;
    {
      util::MutexLock l(&peer->mu);
      if (peer->stop) break;
      peer->state = PeerLink::State::kConnecting;
      generation = peer->generation;
      ++peer->stats.stream_attempts;
    }
    bool connected = false;
    absl::Status st = ConnectAndStream(peer.get(), &connected);
    size_t dropped = 0;
    bool stop = false;
    bool updated = false;
    {
      util::MutexLock l(&peer->mu);
      stop = peer->stop;
      updated = peer->generation != generation;
      dropped = peer->queue.size();
      peer->stats.dropped_messages += dropped;
      peer->queue.clear();
      peer->active_since.reset();
      peer->state = (stop || updated) ? PeerLink::State::kConnecting : PeerLink::State::kBackoff;
      if (!connected && !updated && !peer->channels.empty()) {
        peer->url_index = (peer->url_index + 1) % peer->channels.size();
      }
    }
    if (stop) break;
    // A peer that refuses us (another cluster, or we were removed) is
    // retried at a growing interval like an unreachable one.
    const bool refused = st.code() == absl::StatusCode::kFailedPrecondition ||
                         st.code() == absl::StatusCode::kPermissionDenied;
    if (connected) {
      if (!refused) backoff = options_.min_backoff;
      logger_.Warn("lost TCP streaming connection with remote peer",
                   {{"stream-writer-type", "message"},
                    {"local-member-id", LocalIdHex()},
                    {"remote-peer-id", util::IdToHex(peer->id)},
                    {"error", std::string(st.message())}});
      if (!updated) {
        logger_.Warn("peer became inactive (message send to peer failed)",
                     {{"peer-id", util::IdToHex(peer->id)},
                      {"error", std::string(st.message())}});
      }
    }
    if (updated) continue;  // new URLs: reconnect at once
    if (st.code() == absl::StatusCode::kFailedPrecondition) {
      if (log_limiter_.Allow("send-refused-" + util::IdToHex(peer->id))) {
        logger_.Error("peer refused the raft stream", {{"local-member-id", LocalIdHex()},
                                                       {"remote-peer-id", util::IdToHex(peer->id)},
                                                       {"error", std::string(st.message())}});
      }
    } else if (st.code() == absl::StatusCode::kPermissionDenied) {
      NotifyLocalMemberRemoved(peer->id);
    } else if (!connected && log_limiter_.Allow("connect-failed-" + util::IdToHex(peer->id))) {
      logger_.Debug("failed to connect to remote peer", {{"local-member-id", LocalIdHex()},
                                                         {"remote-peer-id", util::IdToHex(peer->id)},
                                                         {"error", std::string(st.message())}});
    }
    MaybeReportUnreachable(peer.get());
    // Back off; Send drops (and reports) meanwhile.
    {
      util::MutexLock l(&peer->mu);
      clock_->WaitUntil(&peer->cv, &peer->mu, clock_->Now() + backoff, [&] {
        peer->mu.AssertHeld();
        return peer->stop || peer->generation != generation;
      });
      if (peer->stop) break;
      for (auto& ch : peer->channels) {
        if (ch != nullptr) grpc::experimental::ChannelResetConnectionBackoff(ch.get());
      }
    }
    if (!connected || refused) backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

absl::Status GrpcTransport::Impl::ConnectAndStream(PeerLink* peer, bool* connected) {
  *connected = false;
  std::shared_ptr<grpc::Channel> channel;
  uint64_t generation;
  {
    util::MutexLock l(&peer->mu);
    if (peer->channels.empty()) return absl::UnavailableError("peer has no URL");
    channel = peer->channels[peer->url_index % peer->channels.size()];
    generation = peer->generation;
  }
  if (channel == nullptr) return absl::UnavailableError("unsupported peer URL");
  auto interrupted = [&] {
    util::MutexLock l(&peer->mu);
    return peer->stop || peer->generation != generation;
  };

  // Wait for the connection (bounded: a black-holed peer counts as failed).
  // Real time: gRPC connects in real time (WaitForStateChange deadlines).
  const Clock::time_point connect_deadline = Clock::now() + options_.connect_timeout;
  grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/true);
  bool attempted = state == GRPC_CHANNEL_CONNECTING;
  while (state != GRPC_CHANNEL_READY) {
    if (interrupted()) return absl::CancelledError("stopped");
    if (state == GRPC_CHANNEL_SHUTDOWN) return absl::UnavailableError("channel shut down");
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE && attempted) {
      return absl::UnavailableError("failed to connect");
    }
    if (Clock::now() >= connect_deadline) return absl::UnavailableError("connect timeout");
    channel->WaitForStateChange(state, DeadlineAfter(kWaitSlice));
    state = channel->GetState(true);
    if (state == GRPC_CHANNEL_CONNECTING) attempted = true;
  }

  // Open the stream; the peer accepts it with its initial metadata.
  auto ctx = std::make_unique<grpc::ClientContext>();
  AddCallMetadata(ctx.get());
  {
    util::MutexLock l(&peer->mu);
    if (peer->stop || peer->generation != generation) return absl::CancelledError("stopped");
    peer->stream_ctx = ctx.get();
  }
  auto unregister = [&] {
    util::MutexLock l(&peer->mu);
    peer->stream_ctx = nullptr;
  };
  auto stub = peerpb::Peer::NewStub(channel);
  peerpb::StreamResult result;
  std::unique_ptr<grpc::ClientWriter<peerpb::MessageBatch>> writer =
      stub->Stream(ctx.get(), &result);
  writer->WaitForInitialMetadata();
  if (ctx->GetServerInitialMetadata().count(kAcceptedKey) == 0) {
    grpc::Status gs = writer->Finish();
    unregister();
    return gs.ok() ? absl::UnavailableError("stream closed by peer") : FromGrpc(gs);
  }
  *connected = true;
  const std::string peer_hex = util::IdToHex(peer->id);
  {
    util::MutexLock l(&peer->mu);
    peer->active_since = clock_->Now();
    peer->state = PeerLink::State::kConnected;
  }
  logger_.Info("peer became active", {{"peer-id", peer_hex}});
  logger_.Info("established TCP streaming connection with remote peer",
               {{"stream-writer-type", "message"},
                {"local-member-id", LocalIdHex()},
                {"remote-peer-id", peer_hex}});

  absl::Status result_status;
  while (true) {
    peerpb::MessageBatch batch;
    {
      util::MutexLock l(&peer->mu);
      // Real time: a poll of gRPC's channel state while idle.
      peer->cv.WaitFor(&peer->mu, kIdleCheck, [&] {
        peer->mu.AssertHeld();
        return !peer->queue.empty() || peer->stop || peer->generation != generation;
      });
      if (peer->stop || peer->generation != generation) {
        ctx->TryCancel();
        result_status = absl::CancelledError("stream closed locally");
        break;
      }
      if (peer->queue.empty()) {
        l.Unlock();
        if (channel->GetState(false) != GRPC_CHANNEL_READY) {
          ctx->TryCancel();
          result_status = absl::UnavailableError("connection lost");
          break;
        }
        continue;
      }
      size_t bytes = 0;
      while (!peer->queue.empty()) {
        const size_t size = peer->queue.front().ByteSizeLong();
        if (batch.messages_size() > 0 && bytes + size > options_.max_batch_bytes) break;
        bytes += size;
        *batch.add_messages() = std::move(peer->queue.front());
        peer->queue.pop_front();
      }
    }
    batch.set_cluster_id(LocalClusterId());
    batch.set_from(LocalId());
    batch.set_to(peer->id);
    const size_t batch_bytes = batch.ByteSizeLong();
    {
      util::MutexLock l(&peer->mu);
      peer->write_started = Clock::now();  // watched by RunWriteWatchdog
    }
    const bool written = writer->Write(batch);
    util::MutexLock l(&peer->mu);
    peer->write_started.reset();
    if (!written) {
      peer->stats.dropped_messages += batch.messages_size();
      result_status = absl::UnavailableError("write failed");
      break;
    }
    peer->stats.sent_messages += batch.messages_size();
    ++peer->stats.sent_batches;
    peer->stats.sent_bytes += batch_bytes;
  }
  grpc::Status gs = writer->Finish();
  unregister();
  // The peer's verdict (e.g. PERMISSION_DENIED) wins over ours.
  if (!gs.ok() && gs.error_code() != grpc::StatusCode::CANCELLED) return FromGrpc(gs);
  return result_status;
}

// ============================================================ snapshots

void GrpcTransport::Impl::SendSnapshot(raftpb::Message msg, std::string db_path,
                                       absl::AnyInvocable<void(absl::Status) &&> done) {
  util::MutexLock l(&mu_);
  if (stopped_) {
    l.Unlock();
    env()->RemoveFile(db_path).IgnoreError();
    std::move(done)(absl::UnavailableError("peer transport stopped"));
    return;
  }
  // Reap finished senders.
  for (auto it = snapshots_.begin(); it != snapshots_.end();) {
    if (it->second.finished) {
      it->second.thread.join();
      it = snapshots_.erase(it);
    } else {
      ++it;
    }
  }
  const uint64_t token = next_token_++;
  SnapshotSender& s = snapshots_[token];
  s.thread = std::thread([this, token, msg = std::move(msg), db_path = std::move(db_path),
                          done = std::move(done)]() mutable {
    RunSnapshot(token, std::move(msg), std::move(db_path), std::move(done));
  });
}

void GrpcTransport::Impl::RunSnapshot(uint64_t token, raftpb::Message msg, std::string db_path,
                                      absl::AnyInvocable<void(absl::Status) &&> done) {
  const std::string peer_hex = util::IdToHex(msg.to());
  const uint64_t index = msg.snapshot().metadata().index();
  uint64_t sent_bytes = 0;
  logger_.Info("sending database snapshot", {{"snapshot-index", index},
                                             {"remote-peer-id", peer_hex},
                                             {"path", db_path}});
  absl::Status st = SendSnapshotStream(msg, db_path, token, &sent_bytes);
  env()->RemoveFile(db_path).IgnoreError();
  if (st.ok()) {
    logger_.Info("sent database snapshot", {{"snapshot-index", index},
                                            {"remote-peer-id", peer_hex},
                                            {"bytes", sent_bytes}});
  } else {
    logger_.Warn("failed to send database snapshot", {{"snapshot-index", index},
                                                      {"remote-peer-id", peer_hex},
                                                      {"error", std::string(st.message())}});
    if (st.code() == absl::StatusCode::kPermissionDenied) NotifyLocalMemberRemoved(msg.to());
  }
  std::move(done)(st);
  util::MutexLock l(&mu_);
  auto it = snapshots_.find(token);
  if (it != snapshots_.end()) it->second.finished = true;
}

absl::Status GrpcTransport::Impl::SendSnapshotStream(const raftpb::Message& msg,
                                                     const std::string& db_path, uint64_t token,
                                                     uint64_t* sent_bytes) {
  std::vector<std::shared_ptr<grpc::Channel>> channels = ChannelsFor(msg.to());
  if (channels.empty()) {
    return absl::NotFoundError(absl::StrCat("unknown peer ", util::IdToHex(msg.to())));
  }
  std::shared_ptr<grpc::Channel> channel = channels.front();
  if (channel == nullptr) return absl::UnavailableError("unsupported peer URL");
  auto in = env()->NewSequentialFile(db_path);
  if (!in.ok()) return in.status();
  auto size = env()->FileSize(db_path);
  if (!size.ok()) return size.status();
  const uint64_t total = *size;

  grpc::ClientContext ctx;
  AddCallMetadata(&ctx);
  {
    util::MutexLock l(&mu_);
    auto it = snapshots_.find(token);
    if (stopped_ || it == snapshots_.end()) return absl::CancelledError("transport stopped");
    it->second.ctx = &ctx;
  }
  auto unregister = [&] {
    util::MutexLock l(&mu_);
    auto it = snapshots_.find(token);
    if (it != snapshots_.end()) it->second.ctx = nullptr;
  };
  auto stub = peerpb::Peer::NewStub(channel);
  peerpb::SnapshotResult result;
  auto writer = stub->Snapshot(&ctx, &result);
  const uint64_t cluster_id = LocalClusterId();
  peerpb::SnapshotChunk header;
  header.set_cluster_id(cluster_id);
  *header.mutable_message() = msg;
  header.set_total_bytes(total);
  bool ok = writer->Write(header);
  const size_t chunk_bytes = std::max<size_t>(options_.snapshot_chunk_bytes, 1);
  std::string buf;
  uint64_t sent = 0;
  absl::Status local;
  while (ok && sent < total) {
    local = (*in)->Read(static_cast<size_t>(std::min<uint64_t>(chunk_bytes, total - sent)), &buf);
    if (!local.ok()) {
      ctx.TryCancel();
      break;
    }
    const size_t n = buf.size();
    if (n == 0) {
      local = absl::DataLossError(absl::StrCat("short read of ", db_path));
      ctx.TryCancel();
      break;
    }
    peerpb::SnapshotChunk chunk;
    chunk.set_cluster_id(cluster_id);
    chunk.set_data(buf.data(), n);
    chunk.set_crc32c(util::Crc32c(buf.data(), n));
    ok = writer->Write(chunk);
    if (ok) sent += n;
  }
  if (ok && local.ok()) writer->WritesDone();
  grpc::Status gs = writer->Finish();
  unregister();
  *sent_bytes = sent;
  if (!local.ok()) return local;
  return FromGrpc(gs);
}

// ============================================================ forwarded calls

std::vector<std::shared_ptr<grpc::Channel>> GrpcTransport::Impl::ChannelsFor(uint64_t to) {
  std::shared_ptr<PeerLink> peer = FindPeer(to);
  if (peer == nullptr) return {};
  util::MutexLock l(&peer->mu);
  // Start with the URL the raft stream currently uses.
  std::vector<std::shared_ptr<grpc::Channel>> out;
  for (size_t i = 0; i < peer->channels.size(); ++i) {
    out.push_back(peer->channels[(peer->url_index + i) % peer->channels.size()]);
  }
  return out;
}

bool GrpcTransport::Impl::RegisterCall(uint64_t* token, grpc::ClientContext* ctx) {
  util::MutexLock l(&mu_);
  if (stopped_) return false;
  *token = next_token_++;
  calls_[*token] = ctx;
  return true;
}

void GrpcTransport::Impl::UpdateCall(uint64_t token, grpc::ClientContext* ctx) {
  util::MutexLock l(&mu_);
  auto it = calls_.find(token);
  if (it == calls_.end()) return;
  it->second = ctx;
  if (stopped_) ctx->TryCancel();
}

void GrpcTransport::Impl::UnregisterCall(uint64_t token) {
  util::MutexLock l(&mu_);
  calls_.erase(token);
  calls_cv_.SignalAll();
}

// One forwarded call: tries the peer's URLs in turn while they answer
// UNAVAILABLE and time remains; `Out` is what the PeerDone gets.
template <class Req, class Resp, class Out>
class UnaryCall : public std::enable_shared_from_this<UnaryCall<Req, Resp, Out>> {
 public:
  using Invoke = void (*)(peerpb::Peer::Stub*, grpc::ClientContext*, const Req*, Resp*,
                          std::function<void(grpc::Status)>);
  using Convert = Out (*)(Resp&&);

  UnaryCall(GrpcTransport::Impl* impl, std::vector<std::shared_ptr<grpc::Channel>> channels,
            Req req, milliseconds timeout, Invoke invoke, Convert convert,
            server::PeerDone<Out> done)
      : impl_(impl),
        channels_(std::move(channels)),
        req_(std::move(req)),
        deadline_(std::chrono::steady_clock::now() + timeout),  // a gRPC deadline: real
        invoke_(invoke),
        convert_(convert),
        done_(std::move(done)) {}

  void Start() {
    if (!impl_->RegisterCall(&token_, nullptr)) {
      std::move(done_)(absl::UnavailableError("peer transport stopped"));
      return;
    }
    Attempt();
  }

 private:
  void Attempt() {
    while (next_ < channels_.size() && channels_[next_] == nullptr) ++next_;
    if (next_ >= channels_.size()) {
      Complete(last_.ok() ? absl::UnavailableError("peer has no usable URL") : last_);
      return;
    }
    std::shared_ptr<grpc::Channel> channel = channels_[next_++];
    ctx_ = std::make_unique<grpc::ClientContext>();
    ctx_->set_deadline(DeadlineAfter(std::chrono::duration_cast<milliseconds>(
        deadline_ - std::chrono::steady_clock::now())));
    impl_->AddCallMetadata(ctx_.get());
    resp_.Clear();
    impl_->UpdateCall(token_, ctx_.get());
    stub_ = peerpb::Peer::NewStub(channel);
    auto self = this->shared_from_this();
    invoke_(stub_.get(), ctx_.get(), &req_, &resp_,
            [self](grpc::Status s) { self->OnResult(std::move(s)); });
  }

  void OnResult(grpc::Status s) {
    if (s.ok()) {
      Complete(convert_(std::move(resp_)));
      return;
    }
    absl::Status st = FromGrpc(s);
    const bool expired = std::chrono::steady_clock::now() >= deadline_;
    if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && expired) {
      st = absl::UnavailableError(
          absl::StrCat("peer did not answer in time: ", s.error_message()));
    }
    last_ = st;
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE && !expired &&
        next_ < channels_.size()) {
      Attempt();
      return;
    }
    Complete(std::move(st));
  }

  void Complete(absl::StatusOr<Out> r) {
    impl_->UnregisterCall(token_);
    std::move(done_)(std::move(r));
  }

  GrpcTransport::Impl* const impl_;
  const std::vector<std::shared_ptr<grpc::Channel>> channels_;
  const Req req_;
  const std::chrono::steady_clock::time_point deadline_;  // monotonic
  const Invoke invoke_;
  const Convert convert_;
  server::PeerDone<Out> done_;
  uint64_t token_ = 0;
  size_t next_ = 0;
  absl::Status last_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<peerpb::Peer::Stub> stub_;
  Resp resp_;
};

void GrpcTransport::Impl::LeaseRenew(uint64_t to, int64_t lease_id, milliseconds timeout,
                                     server::PeerDone<int64_t> done) {
  auto channels = ChannelsFor(to);
  if (channels.empty()) {
    std::move(done)(absl::UnavailableError(absl::StrCat("unknown peer ", util::IdToHex(to))));
    return;
  }
  peerpb::LeaseRenewRequest req;
  req.set_cluster_id(LocalClusterId());
  req.set_lease_id(lease_id);
  using Call = UnaryCall<peerpb::LeaseRenewRequest, peerpb::LeaseRenewResponse, int64_t>;
  auto call = std::make_shared<Call>(
      this, std::move(channels), std::move(req), timeout,
      [](peerpb::Peer::Stub* stub, grpc::ClientContext* ctx, const peerpb::LeaseRenewRequest* r,
         peerpb::LeaseRenewResponse* out, std::function<void(grpc::Status)> cb) {
        stub->async()->LeaseRenew(ctx, r, out, std::move(cb));
      },
      [](peerpb::LeaseRenewResponse&& r) -> int64_t { return r.ttl(); }, std::move(done));
  call->Start();
}

void GrpcTransport::Impl::HashKV(uint64_t to, int64_t revision, milliseconds timeout,
                                 server::PeerDone<etcdserverpb::HashKVResponse> done) {
  auto channels = ChannelsFor(to);
  if (channels.empty()) {
    std::move(done)(absl::UnavailableError(absl::StrCat("unknown peer ", util::IdToHex(to))));
    return;
  }
  using Resp = etcdserverpb::HashKVResponse;
  using Call = UnaryCall<etcdserverpb::HashKVRequest, Resp, Resp>;
  etcdserverpb::HashKVRequest req;
  req.set_revision(revision);
  auto call = std::make_shared<Call>(
      this, std::move(channels), req, timeout,
      [](peerpb::Peer::Stub* stub, grpc::ClientContext* ctx, const etcdserverpb::HashKVRequest* r,
         Resp* out, std::function<void(grpc::Status)> cb) {
        stub->async()->HashKV(ctx, r, out, std::move(cb));
      },
      [](Resp&& r) -> Resp { return std::move(r); }, std::move(done));
  call->Start();
}

void GrpcTransport::Impl::LeaseTimeToLive(
    uint64_t to, const etcdserverpb::LeaseTimeToLiveRequest& req, milliseconds timeout,
    server::PeerDone<etcdserverpb::LeaseTimeToLiveResponse> done) {
  auto channels = ChannelsFor(to);
  if (channels.empty()) {
    std::move(done)(absl::UnavailableError(absl::StrCat("unknown peer ", util::IdToHex(to))));
    return;
  }
  using Resp = etcdserverpb::LeaseTimeToLiveResponse;
  using Call = UnaryCall<etcdserverpb::LeaseTimeToLiveRequest, Resp, Resp>;
  auto call = std::make_shared<Call>(
      this, std::move(channels), req, timeout,
      [](peerpb::Peer::Stub* stub, grpc::ClientContext* ctx,
         const etcdserverpb::LeaseTimeToLiveRequest* r, Resp* out,
         std::function<void(grpc::Status)> cb) {
        stub->async()->LeaseTimeToLive(ctx, r, out, std::move(cb));
      },
      [](Resp&& r) -> Resp { return std::move(r); }, std::move(done));
  call->Start();
}

void GrpcTransport::Impl::MemberPromote(
    uint64_t to, const etcdserverpb::MemberPromoteRequest& req, milliseconds timeout,
    server::PeerDone<etcdserverpb::MemberPromoteResponse> done) {
  auto channels = ChannelsFor(to);
  if (channels.empty()) {
    std::move(done)(absl::UnavailableError(absl::StrCat("unknown peer ", util::IdToHex(to))));
    return;
  }
  using Resp = etcdserverpb::MemberPromoteResponse;
  using Call = UnaryCall<etcdserverpb::MemberPromoteRequest, Resp, Resp>;
  auto call = std::make_shared<Call>(
      this, std::move(channels), req, timeout,
      [](peerpb::Peer::Stub* stub, grpc::ClientContext* ctx,
         const etcdserverpb::MemberPromoteRequest* r, Resp* out,
         std::function<void(grpc::Status)> cb) {
        stub->async()->MemberPromote(ctx, r, out, std::move(cb));
      },
      [](Resp&& r) -> Resp { return std::move(r); }, std::move(done));
  call->Start();
}

absl::StatusOr<serverpb::ClusterInfo> GrpcTransport::Impl::FetchClusterInfo(
    const std::vector<std::string>& urls, milliseconds timeout) {
  absl::Status last = absl::InvalidArgumentError("no peer URL to ask for the cluster");
  for (const std::string& url : urls) {
    {
      util::MutexLock l(&mu_);
      if (stopped_) return absl::UnavailableError("peer transport stopped");
    }
    std::shared_ptr<grpc::Channel> channel = NewChannel(url);
    if (channel == nullptr) {
      last = absl::InvalidArgumentError(absl::StrCat("unusable peer URL ", url));
      continue;
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineAfter(timeout));
    // Wait for the connection up to the deadline instead of failing on the
    // first failed attempt: gRPC bounds one attempt (TCP and HTTP/2
    // handshake) by the minimum reconnect backoff (100 ms by default), which
    // a loaded peer can miss; a joining member asks only once.
    ctx.set_wait_for_ready(true);
    ctx.AddMetadata(kFromKey, std::to_string(LocalId()));
    peerpb::ClusterInfoRequest req;  // cluster 0: a joining member does not know it yet
    serverpb::ClusterInfo resp;
    grpc::Status s = peerpb::Peer::NewStub(channel)->ClusterInfo(&ctx, req, &resp);
    if (s.ok()) return resp;
    if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      last = absl::UnavailableError(
          absl::StrCat("could not reach ", url, " in ", timeout.count(), "ms"));
    } else {
      last = FromGrpc(s);
    }
    logger_.Warn("failed to get cluster information from peer",
                 {{"url", url}, {"error", std::string(last.message())}});
  }
  return last;
}

// ============================================================ facade

absl::StatusOr<std::unique_ptr<GrpcTransport>> GrpcTransport::Create(TransportOptions options) {
  for (const std::string& u : options.listen_peer_urls) {
    absl::StatusOr<PeerUrl> p = ParsePeerUrl(u);
    if (!p.ok()) return p.status();
  }
  if (options.max_queued_messages_per_peer == 0 || options.max_batch_bytes == 0 ||
      options.snapshot_chunk_bytes == 0) {
    return absl::InvalidArgumentError("transport queue and chunk sizes must be positive");
  }
  if (options.min_backoff.count() <= 0 || options.max_backoff < options.min_backoff) {
    return absl::InvalidArgumentError("transport backoff must satisfy 0 < min <= max");
  }
  return std::unique_ptr<GrpcTransport>(
      new GrpcTransport(std::make_unique<Impl>(std::move(options))));
}

GrpcTransport::GrpcTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GrpcTransport::~GrpcTransport() { impl_->Stop(); }

absl::Status GrpcTransport::Listen() { return impl_->Listen(); }
std::vector<std::string> GrpcTransport::BoundUrls() const { return impl_->BoundUrls(); }
std::optional<PeerStats> GrpcTransport::Stats(uint64_t id) const { return impl_->Stats(id); }
std::map<uint64_t, util::HistogramSnapshot> GrpcTransport::PeerRoundTripTimes() const {
  return impl_->PeerRoundTripTimes();
}
void GrpcTransport::SetHandler(server::PeerHandler* handler) { impl_->SetHandler(handler); }
void GrpcTransport::Stop() { impl_->Stop(); }
void GrpcTransport::Send(std::vector<raftpb::Message> messages) {
  impl_->Send(std::move(messages));
}
void GrpcTransport::SendSnapshot(raftpb::Message msg, std::string db_path,
                                 absl::AnyInvocable<void(absl::Status) &&> done) {
  impl_->SendSnapshot(std::move(msg), std::move(db_path), std::move(done));
}
void GrpcTransport::AddPeer(uint64_t id, const std::vector<std::string>& peer_urls) {
  impl_->AddPeer(id, peer_urls);
}
void GrpcTransport::UpdatePeer(uint64_t id, const std::vector<std::string>& peer_urls) {
  impl_->UpdatePeer(id, peer_urls);
}
void GrpcTransport::RemovePeer(uint64_t id) { impl_->RemovePeer(id); }
std::optional<std::chrono::steady_clock::time_point> GrpcTransport::ActiveSince(uint64_t id) {
  return impl_->ActiveSince(id);
}
void GrpcTransport::SetUnreachableCallback(absl::AnyInvocable<void(uint64_t id)> cb) {
  impl_->SetUnreachableCallback(std::move(cb));
}
void GrpcTransport::LeaseRenew(uint64_t to, int64_t lease_id, milliseconds timeout,
                               server::PeerDone<int64_t> done) {
  impl_->LeaseRenew(to, lease_id, timeout, std::move(done));
}
void GrpcTransport::LeaseTimeToLive(uint64_t to, const etcdserverpb::LeaseTimeToLiveRequest& req,
                                    milliseconds timeout,
                                    server::PeerDone<etcdserverpb::LeaseTimeToLiveResponse> done) {
  impl_->LeaseTimeToLive(to, req, timeout, std::move(done));
}
void GrpcTransport::HashKV(uint64_t to, int64_t revision, milliseconds timeout,
                           server::PeerDone<etcdserverpb::HashKVResponse> done) {
  impl_->HashKV(to, revision, timeout, std::move(done));
}
void GrpcTransport::MemberPromote(uint64_t to, const etcdserverpb::MemberPromoteRequest& req,
                                  milliseconds timeout,
                                  server::PeerDone<etcdserverpb::MemberPromoteResponse> done) {
  impl_->MemberPromote(to, req, timeout, std::move(done));
}
absl::StatusOr<serverpb::ClusterInfo> GrpcTransport::FetchClusterInfo(
    const std::vector<std::string>& peer_urls, milliseconds timeout) {
  return impl_->FetchClusterInfo(peer_urls, timeout);
}

}  // namespace cppetcd::transport
