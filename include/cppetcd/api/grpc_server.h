// The client-facing gRPC server: etcd v3 KV, Watch, Lease, Cluster,
// Maintenance and Auth services over a ServerBackend, on the callback API
// (no thread per request or stream), with etcd 3.4's transport settings
// (embed/serve.go, v3rpc/grpc.go).
#ifndef CPPETCD_API_GRPC_SERVER_H_
#define CPPETCD_API_GRPC_SERVER_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cppetcd/api/backend.h"
#include "cppetcd/api/range_budget.h"
#include "cppetcd/util/log.h"

namespace grpc {
class Channel;
class Server;
class ServerCredentials;
namespace experimental {
class ServerInterceptorFactoryInterface;
}
}

namespace cppetcd::api {

// etcd's allowance for gRPC framing on top of --max-request-bytes
// (v3rpc grpcOverheadBytes).
inline constexpr int64_t kGrpcOverheadBytes = 512 * 1024;

// The largest TLS record gRPC writes on the client URLs where it terminates
// TLS itself (GRPC_ARG_TSI_MAX_FRAME_SIZE; gRPC's default is 16 KiB): its
// per-connection protect buffer is this size.
inline constexpr int kGrpcTlsMaxFrameBytes = 8 * 1024;

struct ApiServerOptions {
  // "host:port" addresses gRPC itself listens on (plain HTTP/2; port 0:
  // the OS picks one, see Ports()). May be empty: the process's client
  // ports are served by a ClientListener (client_listener.h) that hands
  // connections over with AddConnection.
  std::vector<std::string> listen_addresses;
  // Credentials per listen address, in the same order (e.g. gRPC's TLS for
  // the gRPC-only https:// client URLs); missing or null: plain HTTP/2.
  std::vector<std::shared_ptr<grpc::ServerCredentials>> listen_credentials;
  std::chrono::milliseconds keepalive_min_time{5000};           // --grpc-keepalive-min-time
  std::chrono::milliseconds keepalive_interval{2 * 3600 * 1000};  // --grpc-keepalive-interval
  std::chrono::milliseconds keepalive_timeout{20000};           // --grpc-keepalive-timeout
  uint32_t max_concurrent_streams = 0xffffffffu;                // --max-concurrent-streams
  // Period of progress notifications for watchers that asked for them
  // (etcd: 10 minutes, --experimental-watch-progress-notify-interval).
  std::chrono::milliseconds watch_progress_notify_interval{10 * 60 * 1000};
  // How often watch and keep-alive streams that require a leader check for
  // one; after 3 checks without a leader they are cancelled with "etcdserver:
  // no leader" (etcd: every election timeout).
  std::chrono::milliseconds leader_check_interval{1000};
  util::Logger logger = util::GetLogger("api");
  // The bound on the bytes of Range answers in flight (range_budget.h),
  // shared by every server given it; null: a budget of its own with
  // RangeBudget::kDefaultLimitBytes.
  std::shared_ptr<RangeBudget> range_budget;
  // Server interceptors (e.g. the grpc_server_* request counters), in order.
  std::vector<std::shared_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
};

// Thread-safety: Start, Ports and Shutdown from one owning thread.
class ApiServer {
 public:
  // Registers the services and starts listening on every address (none is
  // fine). `backend` must outlive the ApiServer. Unavailable when an
  // address cannot be bound.
  static absl::StatusOr<std::unique_ptr<ApiServer>> Start(ServerBackend* backend,
                                                          ApiServerOptions options);
  ~ApiServer();  // Shutdown with no grace period if still running

  // The bound port of each listen address, in order (useful with port 0).
  const std::vector<int>& Ports() const;

  // The Range budget the KV service uses (stats for metrics and tests).
  RangeBudget& range_budget();

  // Takes ownership of a connected socket whose peer speaks gRPC (HTTP/2
  // with prior knowledge, plain: TLS, if any, is terminated by the caller)
  // and serves it. Calls on it see ServerContext::peer() ==
  // GrpcPeerForFd(fd) ("fd:N"). After Shutdown the socket is just closed.
  // Thread-safe.
  void AddConnection(int fd);

  // A channel to this server that bypasses the network (the HTTP JSON
  // gateway calls the gRPC services through it). Valid until Shutdown.
  std::shared_ptr<grpc::Channel> InProcessChannel();

  // Stops accepting calls, lets running calls finish until `deadline`, then
  // cancels the rest (streams end with CANCELLED). Idempotent.
  void Shutdown(std::chrono::milliseconds grace);

  class Impl;

 private:
  explicit ApiServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cppetcd::api

#endif  // CPPETCD_API_GRPC_SERVER_H_
