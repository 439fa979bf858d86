// Private state of GrpcTransport, shared by the sending side
// (grpc_transport.cc) and the gRPC service (peer_service.cc).
#ifndef CPPETCD_SRC_TRANSPORT_IMPL_H_
#define CPPETCD_SRC_TRANSPORT_IMPL_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "cppetcd/transport/grpc_transport.h"
#include "cppetcd/util/histogram.h"
#include "cppetcd/util/mutex.h"
#include "peerpb/peer.grpc.pb.h"

namespace cppetcd::transport {

using Clock = std::chrono::steady_clock;

// Metadata keys every outgoing peer call carries, checked by the receiver.
inline constexpr char kClusterIdKey[] = "cppetcd-cluster-id";
inline constexpr char kFromKey[] = "cppetcd-from";
// Initial metadata the receiver sends once it has accepted a raft stream:
// the sender counts the stream as connected only after seeing it.
inline constexpr char kAcceptedKey[] = "cppetcd-accepted";

// The one conversion of errors between members: code, message and the
// absl::Status payloads (the typed error code, util/error.h) travel as gRPC
// status details (peerpb::StatusDetails), so a member's error keeps its type
// across the hop. A status from a peer without details stays untyped.
absl::Status FromGrpc(const grpc::Status& s);
grpc::Status ToGrpc(const absl::Status& s);

// Lets one event through per key and interval (log lines that could
// otherwise repeat per message). Thread-safe.
class RateLimiter {
 public:
  explicit RateLimiter(std::chrono::milliseconds interval) : interval_(interval) {}
  bool Allow(const std::string& key);

 private:
  const std::chrono::milliseconds interval_;
  util::Mutex mu_;
  std::map<std::string, Clock::time_point> last_ ABSL_GUARDED_BY(mu_);
};

// "listen tcp host:port: bind: address already in use" for a port gRPC
// failed to bind (probes the address with a plain socket to learn errno).
std::string DescribeListenFailure(const PeerUrl& url);

// The outgoing side of one peer: queue, stream state, sender thread.
struct PeerLink {
  enum class State { kConnecting, kConnected, kBackoff };

  explicit PeerLink(uint64_t peer_id) : id(peer_id) {}

  const uint64_t id;
  util::Mutex mu;
  util::CondVar cv;  // queue, stop or generation changed
  std::vector<std::string> urls ABSL_GUARDED_BY(mu);
  // One channel per URL (null for an unsupported URL); url_index is the one
  // the raft stream uses, rotated after a failed connection.
  std::vector<std::shared_ptr<grpc::Channel>> channels ABSL_GUARDED_BY(mu);
  size_t url_index ABSL_GUARDED_BY(mu) = 0;
  uint64_t generation ABSL_GUARDED_BY(mu) = 0;  // bumped by UpdatePeer
  std::deque<raftpb::Message> queue ABSL_GUARDED_BY(mu);
  State state ABSL_GUARDED_BY(mu) = State::kConnecting;
  std::optional<Clock::time_point> active_since ABSL_GUARDED_BY(mu);
  bool stop ABSL_GUARDED_BY(mu) = false;
  grpc::ClientContext* stream_ctx ABSL_GUARDED_BY(mu) = nullptr;  // to cancel
  // When the batch write in progress on the stream began (none: no write).
  std::optional<Clock::time_point> write_started ABSL_GUARDED_BY(mu);
  std::optional<Clock::time_point> last_unreachable ABSL_GUARDED_BY(mu);
  PeerStats stats ABSL_GUARDED_BY(mu);
  // Probe round-trip times in seconds, etcd's buckets (100 us doubling).
  util::Histogram rtt{util::Histogram::ExponentialBounds(0.0001, 2, 16)};
  std::thread thread;  // set once by AddPeer; joined by RemovePeer or Stop
};

class GrpcTransport::Impl {
 public:
  explicit Impl(TransportOptions options);
  ~Impl();

  // Pins the handler for one use; empty before SetHandler and after Stop
  // (the caller then answers UNAVAILABLE). Stop waits for every pin to go.
  class HandlerRef {
   public:
    HandlerRef() = default;
    HandlerRef(Impl* impl, server::PeerHandler* h) : impl_(impl), handler_(h) {}
    HandlerRef(HandlerRef&& o) noexcept : impl_(o.impl_), handler_(o.handler_) {
      o.impl_ = nullptr;
      o.handler_ = nullptr;
    }
    HandlerRef& operator=(HandlerRef&&) = delete;
    ~HandlerRef();
    explicit operator bool() const { return handler_ != nullptr; }
    server::PeerHandler* operator->() const { return handler_; }
    server::PeerHandler* get() const { return handler_; }

   private:
    Impl* impl_ = nullptr;
    server::PeerHandler* handler_ = nullptr;
  };
  HandlerRef AcquireHandler();

  // ---- lifecycle
  absl::Status Listen();
  std::vector<std::string> BoundUrls() const;
  void SetHandler(server::PeerHandler* handler);
  void Stop();

  // ---- sending side (grpc_transport.cc)
  void Send(std::vector<raftpb::Message> messages);
  void SendSnapshot(raftpb::Message msg, std::string db_path,
                    absl::AnyInvocable<void(absl::Status) &&> done);
  void AddPeer(uint64_t id, const std::vector<std::string>& urls);
  void UpdatePeer(uint64_t id, const std::vector<std::string>& urls);
  void RemovePeer(uint64_t id);
  std::optional<Clock::time_point> ActiveSince(uint64_t id);
  std::optional<PeerStats> Stats(uint64_t id) const;
  std::map<uint64_t, util::HistogramSnapshot> PeerRoundTripTimes() const;
  void SetUnreachableCallback(absl::AnyInvocable<void(uint64_t)> cb);
  void LeaseRenew(uint64_t to, int64_t lease_id, std::chrono::milliseconds timeout,
                  server::PeerDone<int64_t> done);
  void LeaseTimeToLive(uint64_t to, const etcdserverpb::LeaseTimeToLiveRequest& req,
                       std::chrono::milliseconds timeout,
                       server::PeerDone<etcdserverpb::LeaseTimeToLiveResponse> done);
  void HashKV(uint64_t to, int64_t revision, std::chrono::milliseconds timeout,
              server::PeerDone<etcdserverpb::HashKVResponse> done);
  void MemberPromote(uint64_t to, const etcdserverpb::MemberPromoteRequest& req,
                     std::chrono::milliseconds timeout,
                     server::PeerDone<etcdserverpb::MemberPromoteResponse> done);
  absl::StatusOr<serverpb::ClusterInfo> FetchClusterInfo(const std::vector<std::string>& urls,
                                                        std::chrono::milliseconds timeout);

  // ---- shared
  const TransportOptions& options() const { return options_; }
  // The file-system seam (options_.env or the default); never null.
  util::Env* env() const { return options_.env != nullptr ? options_.env : util::Env::Default(); }
  const util::Logger& logger() const { return logger_; }
  uint64_t LocalId() const { return local_id_.load(std::memory_order_relaxed); }
  std::string LocalIdHex() const { return util::IdToHex(LocalId()); }
  // Cluster ID to stamp on outgoing traffic (0 before SetHandler).
  uint64_t LocalClusterId();
  RateLimiter& log_limiter() { return log_limiter_; }
  std::shared_ptr<grpc::Channel> NewChannel(const std::string& url);
  void AddCallMetadata(grpc::ClientContext* ctx);

 private:
  friend class HandlerRef;
  void ReleaseHandler();
  std::shared_ptr<PeerLink> FindPeer(uint64_t id) const;
  void SetUrls(PeerLink* peer, const std::vector<std::string>& urls)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(peer->mu);
  void RunSender(std::shared_ptr<PeerLink> peer);
  // Every rtt_probe_interval: one Probe call per peer, timed into its rtt.
  void RunProber();
  // Cancels raft streams whose batch write has blocked longer than
  // options_.write_timeout (the sender then reconnects).
  void RunWriteWatchdog();
  // One connection attempt and, if it connects, the stream until it ends.
  // *connected tells whether the stream was accepted by the peer.
  absl::Status ConnectAndStream(PeerLink* peer, bool* connected);
  // Calls the unreachable callback for `peer` unless it was called less
  // than min_backoff ago.
  void MaybeReportUnreachable(PeerLink* peer);
  void NotifyLocalMemberRemoved(uint64_t by_peer);
  void RunSnapshot(uint64_t token, raftpb::Message msg, std::string db_path,
                   absl::AnyInvocable<void(absl::Status) &&> done);
  absl::Status SendSnapshotStream(const raftpb::Message& msg, const std::string& db_path,
                                  uint64_t token, uint64_t* sent_bytes);

  // Forwarded unary calls: registry for cancellation at Stop.
  template <class Req, class Resp, class Out>
  friend class UnaryCall;
  bool RegisterCall(uint64_t* token, grpc::ClientContext* ctx);
  void UpdateCall(uint64_t token, grpc::ClientContext* ctx);
  void UnregisterCall(uint64_t token);
  std::vector<std::shared_ptr<grpc::Channel>> ChannelsFor(uint64_t to);

  const TransportOptions options_;
  util::Clock* const clock_;  // options_.clock or SystemClock
  const util::Logger logger_;
  std::atomic<uint64_t> local_id_;
  RateLimiter log_limiter_{std::chrono::seconds(1)};

  // Handler gate.
  util::Mutex handler_mu_;
  util::CondVar handler_cv_;
  server::PeerHandler* handler_ ABSL_GUARDED_BY(handler_mu_) = nullptr;
  bool handler_closed_ ABSL_GUARDED_BY(handler_mu_) = false;
  int handler_pins_ ABSL_GUARDED_BY(handler_mu_) = 0;

  std::atomic<bool> removed_notified_{false};

  // Unreachable callback; calls are serialised by its mutex.
  util::Mutex unreachable_mu_;
  absl::AnyInvocable<void(uint64_t)> unreachable_cb_ ABSL_GUARDED_BY(unreachable_mu_);

  mutable util::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<uint64_t, std::shared_ptr<PeerLink>> peers_ ABSL_GUARDED_BY(mu_);
  // Round-trip prober: started with the first peer, joined by Stop.
  std::thread prober_;
  std::thread write_watchdog_;  // RunWriteWatchdog; stops with prober_cv_
  util::CondVar prober_cv_;  // with mu_: stopped_

  struct SnapshotSender {
    std::thread thread;
    grpc::ClientContext* ctx = nullptr;  // current stream, for cancellation
    bool finished = false;
  };
  std::map<uint64_t, SnapshotSender> snapshots_ ABSL_GUARDED_BY(mu_);
  uint64_t next_token_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, grpc::ClientContext*> calls_ ABSL_GUARDED_BY(mu_);
  util::CondVar calls_cv_;  // calls_ shrank

  // Server side.
  std::unique_ptr<peerpb::Peer::CallbackService> service_;
  std::unique_ptr<grpc::Server> server_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> bound_urls_ ABSL_GUARDED_BY(mu_);
  bool listened_ ABSL_GUARDED_BY(mu_) = false;
};

// The peerpb.Peer service over an Impl (peer_service.cc).
std::unique_ptr<peerpb::Peer::CallbackService> NewPeerService(GrpcTransport::Impl* impl);

}  // namespace cppetcd::transport

#endif  // CPPETCD_SRC_TRANSPORT_IMPL_H_
