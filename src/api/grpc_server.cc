// The gRPC server of the client port. Descriptors here are sockets handed to
// gRPC: no file-system access (outside util::Env).
#include "cppetcd/api/grpc_server.h"

#include <fcntl.h>
#include <unistd.h>

#include <limits>

#include <grpc/support/time.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_posix.h>
#include <grpcpp/support/server_interceptor.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "src/api/election_lock.h"
#include "src/api/services.h"
#include "cppetcd/util/mutex.h"

namespace cppetcd::api {
namespace {

class SharedInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit SharedInterceptorFactory(
      std::shared_ptr<grpc::experimental::ServerInterceptorFactoryInterface> f)
      : f_(std::move(f)) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return f_->CreateServerInterceptor(info);
  }

 private:
  std::shared_ptr<grpc::experimental::ServerInterceptorFactoryInterface> f_;
};

}  // namespace

class ApiServer::Impl {
 public:
  Impl(ServerBackend* backend, ApiServerOptions options)
      : options_(std::move(options)),
        range_budget_(options_.range_budget != nullptr ? options_.range_budget
                                                       : std::make_shared<RangeBudget>()),
        hub_(backend, options_.watch_progress_notify_interval, options_.leader_check_interval,
             options_.logger),
        kv_(backend, range_budget_),
        watch_(backend, &hub_, options_.logger),
        lease_(backend, &hub_),
        cluster_(backend),
        maintenance_(backend),
        auth_(backend),
        election_(backend),
        lock_(backend) {}

  absl::Status Start(ServerBackend* backend) {
    // The standard grpc.health.v1.Health service, as etcd 3.4 registers it
    // (v3rpc/grpc.go): Check and Watch of service "" answer SERVING for the
    // server's life, other names NOT_FOUND. gRPC's built-in service does
    // exactly that; its switch is process-wide and read when a server is
    // built, so it is turned on for this build only (the peer server has no
    // health service, as etcd's peer port has none).
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    ports_.assign(options_.listen_addresses.size(), 0);
    for (size_t i = 0; i < options_.listen_addresses.size(); ++i) {
      std::shared_ptr<grpc::ServerCredentials> creds =
          i < options_.listen_credentials.size() ? options_.listen_credentials[i] : nullptr;
      builder.AddListeningPort(options_.listen_addresses[i],
                               creds != nullptr ? creds : grpc::InsecureServerCredentials(),
                               &ports_[i]);
    }
    builder.RegisterService(&kv_);
    builder.RegisterService(&watch_);
    builder.RegisterService(&lease_);
    builder.RegisterService(&cluster_);
    builder.RegisterService(&maintenance_);
    builder.RegisterService(&auth_);
    builder.RegisterService(&election_);
    builder.RegisterService(&lock_);
    // etcd v3rpc/grpc.go and embed/serve.go: requests up to
    // --max-request-bytes plus framing, unlimited responses, and a
    // keep-alive policy that never kicks clients for pinging.
    const int64_t max_recv = backend->MaxRequestBytes() + kGrpcOverheadBytes;
    builder.SetMaxReceiveMessageSize(static_cast<int>(
        std::min<int64_t>(max_recv, std::numeric_limits<int32_t>::max())));
    builder.SetMaxSendMessageSize(std::numeric_limits<int32_t>::max());
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                               static_cast<int>(std::min<uint64_t>(
                                   options_.max_concurrent_streams,
                                   std::numeric_limits<int32_t>::max())));
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                               static_cast<int>(options_.keepalive_min_time.count()));
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                               static_cast<int>(std::min<int64_t>(
                                   options_.keepalive_interval.count(),
                                   std::numeric_limits<int32_t>::max())));
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                               static_cast<int>(options_.keepalive_timeout.count()));
    // Memory per idle connection (issue 12, docs/benchmarks.md "Idle"): on
    // the gRPC-only TLS URLs gRPC's SSL frame protector keeps a buffer of
    // the largest TLS record it writes for the connection's life (16 KiB by
    // default); 8 KiB records save about 7 KiB per connection and cost
    // little on large answers (more records: 4 KiB saved about 3 KiB more
    // but cost 10-20% server CPU on 1.6 MB Ranges). Incoming records of any
    // size are still read. No channelz: nothing here serves it, and each
    // connection would register a socket node.
    builder.AddChannelArgument(GRPC_ARG_TSI_MAX_FRAME_SIZE, kGrpcTlsMaxFrameBytes);
    builder.AddChannelArgument(GRPC_ARG_ENABLE_CHANNELZ, 0);
    if (!options_.interceptors.empty()) {
      // gRPC takes ownership of the factories; each wrapper forwards to a
      // shared one so ApiServerOptions stays copyable.
      std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
      for (const auto& f : options_.interceptors) {
        creators.push_back(std::make_unique<SharedInterceptorFactory>(f));
      }
      builder.experimental().SetInterceptorCreators(std::move(creators));
    }
    util::MutexLock l(&mu_);
    server_ = builder.BuildAndStart();
    grpc::EnableDefaultHealthCheckService(false);
    if (server_ == nullptr) {
      return absl::UnavailableError(
          absl::StrCat("failed to listen on client addresses: ",
                       absl::StrJoin(options_.listen_addresses, ",")));
    }
    for (size_t i = 0; i < ports_.size(); ++i) {
      if (ports_[i] == 0) {
        server_->Shutdown();
        server_.reset();
        return absl::UnavailableError(
            absl::StrCat("failed to listen on ", options_.listen_addresses[i]));
      }
    }
    return absl::OkStatus();
  }

  void AddConnection(int fd) {
    util::MutexLock l(&mu_);
    if (shutting_down_ || server_ == nullptr) {
      ::close(fd);
      return;
    }
    // gRPC's endpoint expects a non-blocking socket (a blocking one stalls
    // its poller threads).
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
    grpc::AddInsecureChannelFromFd(server_.get(), fd);
  }

  void Shutdown(std::chrono::milliseconds grace) {
    grpc::Server* server = nullptr;
    {
      util::MutexLock l(&mu_);
      if (shutting_down_ || server_ == nullptr) return;
      shutting_down_ = true;
      server = server_.get();
    }
    // Not under mu_: AddConnection takes it (and then refuses the socket)
    // while the server drains. Monotonic, so that a wall-clock step cannot
    // stretch the grace period.
    server->Shutdown(gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                  gpr_time_from_millis(grace.count(), GPR_TIMESPAN)));
    server->Wait();
    util::MutexLock l(&mu_);
    server_.reset();
  }

  const std::vector<int>& Ports() const { return ports_; }
  RangeBudget& range_budget() { return *range_budget_; }

  std::shared_ptr<grpc::Channel> InProcessChannel() {
    // etcd's gateway receives responses of any size (MaxCallRecvMsgSize
    // MaxInt32); the request side is limited by the server's receive limit.
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(std::numeric_limits<int32_t>::max());
    util::MutexLock l(&mu_);
    return server_->InProcessChannel(args);
  }

 private:
  ApiServerOptions options_;
  // Shared with the calls' charges, which may outlive the gRPC server.
  std::shared_ptr<RangeBudget> range_budget_;
  StreamHub hub_;  // outlives the gRPC server (destroyed after it)
  KvService kv_;
  WatchService watch_;
  LeaseService lease_;
  ClusterService cluster_;
  MaintenanceService maintenance_;
  AuthService auth_;
  ElectionService election_;  // etcd v3election and v3lock
  LockService lock_;
  std::vector<int> ports_;
  util::Mutex mu_;  // orders AddConnection against Shutdown
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  // Set by Start; reset by Shutdown once drained (read by AddConnection on
  // the listener's thread meanwhile).
  std::unique_ptr<grpc::Server> server_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<ApiServer>> ApiServer::Start(ServerBackend* backend,
                                                            ApiServerOptions options) {
  auto impl = std::make_unique<Impl>(backend, std::move(options));
  if (absl::Status st = impl->Start(backend); !st.ok()) return st;
  return std::unique_ptr<ApiServer>(new ApiServer(std::move(impl)));
}

ApiServer::ApiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ApiServer::~ApiServer() { impl_->Shutdown(std::chrono::milliseconds(0)); }

const std::vector<int>& ApiServer::Ports() const { return impl_->Ports(); }

RangeBudget& ApiServer::range_budget() { return impl_->range_budget(); }

void ApiServer::AddConnection(int fd) { impl_->AddConnection(fd); }

std::shared_ptr<grpc::Channel> ApiServer::InProcessChannel() {
  return impl_->InProcessChannel();
}

void ApiServer::Shutdown(std::chrono::milliseconds grace) { impl_->Shutdown(grace); }

}  // namespace cppetcd::api
