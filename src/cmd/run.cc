#include "run.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "cppetcd/api/etcd_server_backend.h"
#include "cppetcd/api/http_server.h"
#include "cppetcd/api/metrics.h"
#include "cppetcd/transport/grpc_transport.h"
#include "cppetcd/util/log.h"
#include "cppetcd/util/sd_notify.h"

namespace cppetcd::cmd {
namespace {

// How long in-flight calls get to finish on shutdown before open streams
// (watches, keep-alives) are cancelled.
constexpr std::chrono::milliseconds kGrpcShutdownGrace{2000};
// etcd clamps --experimental-watch-progress-notify-interval to this.
constexpr std::chrono::milliseconds kMinWatchProgressInterval{100};

std::vector<std::string> UrlStrings(const std::vector<Url>& urls) {
  std::vector<std::string> out;
  for (const Url& u : urls) out.push_back(u.ToString());
  return out;
}

// Waits for SIGTERM/SIGINT (blocked in every thread, see Run) on its own
// thread and notifies `stop`.
class SignalWatcher {
 public:
  explicit SignalWatcher(absl::Notification* stop) : stop_(stop) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~SignalWatcher() {
    done_.store(true);
    thread_.join();
  }
  int signal() const { return signal_.load(); }

 private:
  void Loop() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    const timespec poll = {0, 200 * 1000 * 1000};
    while (!done_.load()) {
      int sig = sigtimedwait(&set, nullptr, &poll);
      if (sig > 0 && !stop_->HasBeenNotified()) {
        signal_.store(sig);
        stop_->Notify();
      }
    }
  }

  absl::Notification* const stop_;
  std::atomic<bool> done_{false};
  std::atomic<int> signal_{0};
  std::thread thread_;
};

// The HTTP endpoints of etcd's client port (/health, /version, /metrics and
// the v3 JSON gateway through `api`'s in-process channel) on an internal
// loopback port, and on the http:// --listen-metrics-urls. Until a client
// listener forwards the client URLs' HTTP/1.1 connections to LoopbackPort(),
// the metrics URLs serve every route so that the gateway is reachable.
absl::StatusOr<std::unique_ptr<api::HttpServer>> StartHttp(const EtcdConfig& config,
                                                          api::ServerBackend* backend,
                                                          api::ApiServer* api,
                                                          const api::MetricsRegistry* metrics) {
  api::HttpServerOptions options;
  options.backend = backend;
  options.gateway_channel = api->InProcessChannel();
  options.metrics = metrics;
  options.server_version = server::kServerVersion;
  options.cluster_version = absl::StrCat(server::kClusterVersion, ".0");
  for (const Url& u : config.listen_metrics_urls) {
    if (u.scheme != "http") {
      return absl::InvalidArgumentError(absl::StrCat(
          "listen-metrics-urls: ", u.ToString(), ": only http:// metrics URLs are supported"));
    }
    options.client_addresses.push_back(u.HostPort());
  }
  options.logger = util::GetLogger("etcdhttp");
  return api::HttpServer::Start(std::move(options));
}

}  // namespace

absl::StatusOr<server::ServerConfig> ToServerConfig(const EtcdConfig& config) {
  server::ServerConfig sc;
  sc.name = config.name;
  sc.data_dir = config.data_dir;
  sc.wal_dir = config.wal_dir;
  if (!config.initial_cluster.empty()) {
    absl::StatusOr<InitialCluster> cluster = ParseInitialCluster(config.initial_cluster);
    if (!cluster.ok()) return cluster.status();
    for (const auto& [name, urls] : *cluster) sc.initial_cluster[name] = UrlStrings(urls);
  }
  sc.initial_cluster_state = config.initial_cluster_state == "existing"
                                 ? server::ServerConfig::ClusterState::kExisting
                                 : server::ServerConfig::ClusterState::kNew;
  sc.initial_cluster_token = config.initial_cluster_token;
  sc.initial_advertise_peer_urls = UrlStrings(config.initial_advertise_peer_urls);
  sc.force_new_cluster = config.force_new_cluster;
  sc.strict_reconfig_check = config.strict_reconfig_check;
  if (!config.advertise_client_urls.empty()) {
    sc.advertise_client_urls = UrlStrings(config.advertise_client_urls);
  }
  sc.snapshot_count = config.snapshot_count;
  sc.snapshot_catchup_entries = config.experimental_snapshot_catchup_entries;
  sc.max_snapshots = config.max_snapshots;
  sc.heartbeat_interval = std::chrono::milliseconds(config.heartbeat_interval_ms);
  sc.election_timeout = std::chrono::milliseconds(config.election_timeout_ms);
  sc.quota_backend_bytes = config.quota_backend_bytes;
  sc.max_request_bytes = config.max_request_bytes;
  sc.max_txn_ops = config.max_txn_ops;
  sc.auto_compaction_mode = config.auto_compaction_mode;
  sc.auto_compaction_retention = config.auto_compaction_retention;
  sc.pre_vote = config.pre_vote;
  sc.auth_token = config.auth_token;
  sc.auth_token_ttl = std::chrono::seconds(config.auth_token_ttl_seconds);
  sc.bcrypt_cost = static_cast<int>(config.bcrypt_cost);
  // etcd: ReqTimeout = 5 s + 2 x election timeout.
  sc.request_timeout = std::chrono::milliseconds(5000 + 2 * int64_t{config.election_timeout_ms});
  sc.logger = util::GetLogger("etcdserver");
  return sc;
}

absl::StatusOr<api::ApiServerOptions> ToApiServerOptions(const EtcdConfig& config) {
  api::ApiServerOptions options;
  for (const Url& u : config.listen_client_urls) {
    if (u.scheme != "http") {
      return absl::InvalidArgumentError(
          absl::StrCat("listen-client-urls: ", u.ToString(), ": only http:// client URLs are "
                       "supported for now (TLS and unix sockets are not implemented)"));
    }
    options.listen_addresses.push_back(u.HostPort());
  }
  options.keepalive_min_time = config.grpc_keepalive_min_time;
  options.keepalive_interval = config.grpc_keepalive_interval;
  options.keepalive_timeout = config.grpc_keepalive_timeout;
  options.max_concurrent_streams = config.max_concurrent_streams;
  options.watch_progress_notify_interval =
      std::max(config.experimental_watch_progress_notify_interval, kMinWatchProgressInterval);
  options.leader_check_interval = std::chrono::milliseconds(config.election_timeout_ms);
  options.logger = util::GetLogger("embed");
  return options;
}

int Run(const EtcdConfig& config) {
  util::Logger log = util::GetLogger("etcdmain");

  // Block the stop signals in this thread before any other starts, so every
  // thread inherits the mask and only the watcher receives them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  absl::Notification stop;
  SignalWatcher signals(&stop);

  absl::StatusOr<api::ApiServerOptions> api_options = ToApiServerOptions(config);
  if (!api_options.ok()) {
    log.Error("invalid client URLs", {{"error", api_options.status().ToString()}});
    return 1;
  }
  absl::StatusOr<server::ServerConfig> server_config = ToServerConfig(config);
  if (!server_config.ok()) {
    log.Error("invalid configuration", {{"error", server_config.status().ToString()}});
    return 1;
  }
  // Peer listeners first, as etcd ("configuring peer listeners").
  transport::TransportOptions topts;
  for (const Url& u : config.listen_peer_urls) {
    if (u.scheme != "http") {
      log.Error("invalid peer URLs",
                {{"error", absl::StrCat("listen-peer-urls: ", u.ToString(),
                                        ": only http:// peer URLs are supported for now")}});
      return 1;
    }
    topts.listen_peer_urls.push_back(u.ToString());
  }
  topts.logger = util::GetLogger("rafthttp");
  log.Info("configuring peer listeners", {{"listen-peer-urls", topts.listen_peer_urls}});
  absl::StatusOr<std::unique_ptr<transport::GrpcTransport>> peer_transport =
      transport::GrpcTransport::Create(std::move(topts));
  if (!peer_transport.ok()) {
    log.Error("failed to create peer transport", {{"error", peer_transport.status().ToString()}});
    return 1;
  }
  if (absl::Status st = (*peer_transport)->Listen(); !st.ok()) {
    log.Error("creating peer listener failed", {{"error", st.ToString()}});
    return 1;
  }
  server_config->transport = std::shared_ptr<transport::GrpcTransport>(std::move(*peer_transport));
  absl::StatusOr<std::unique_ptr<server::EtcdServer>> server =
      server::EtcdServer::Create(*std::move(server_config));
  if (!server.ok()) {
    log.Error("failed to create etcd server", {{"error", server.status().ToString()}});
    return 1;
  }
  if (absl::Status st = (*server)->Start(); !st.ok()) {
    log.Error("failed to start etcd server", {{"error", st.ToString()}});
    return 1;
  }

  // As etcd, serve clients only once the member is ready (its attributes are
  // published through raft); a member without quorum waits here until
  // stopped.
  while (!stop.HasBeenNotified() && !(*server)->StopRequested() &&
         !(*server)->WaitReady(std::chrono::milliseconds(200))) {
  }
  // Metrics (etcd's names): declared before the servers that feed them.
  api::MetricsRegistry metrics;
  api::GrpcMetrics grpc_metrics;
  api::PeerRttMetrics peer_rtt;  // fed by a peer RTT probe once the transport has one
  metrics.Add([&](api::ExpositionWriter& w) { api::CollectServerMetrics(server->get(), w); });
  metrics.Add([&](api::ExpositionWriter& w) { peer_rtt.Collect(w); });
  metrics.Add([&](api::ExpositionWriter& w) { grpc_metrics.Collect(w); });
  metrics.Add([](api::ExpositionWriter& w) { api::CollectProcessMetrics(w); });
  std::unique_ptr<api::ServerBackend> backend;
  std::unique_ptr<api::ApiServer> api;
  std::unique_ptr<api::HttpServer> http;
  int exit_code = 0;
  if (!stop.HasBeenNotified()) {
    backend = api::NewEtcdServerBackend(server->get());
    api_options->interceptors.push_back(grpc_metrics.InterceptorFactory());
    const std::vector<std::string> addresses = api_options->listen_addresses;
    absl::StatusOr<std::unique_ptr<api::ApiServer>> started =
        api::ApiServer::Start(backend.get(), *std::move(api_options));
    if (!started.ok()) {
      log.Error("failed to serve client requests", {{"error", started.status().ToString()}});
      exit_code = 1;
    } else {
      api = *std::move(started);
      absl::StatusOr<std::unique_ptr<api::HttpServer>> http_started =
          StartHttp(config, backend.get(), api.get(), &metrics);
      if (!http_started.ok()) {
        log.Error("failed to serve HTTP requests", {{"error", http_started.status().ToString()}});
        exit_code = 1;
      } else {
        http = *std::move(http_started);
      }
      log.Info("ready to serve client requests");
      if (absl::StatusOr<bool> n = util::SdNotify("READY=1\nSTATUS=ready to serve client requests");
          !n.ok()) {
        log.Error("failed to notify systemd for readiness", {{"error", n.status().ToString()}});
      }
      for (size_t i = 0; i < addresses.size(); ++i) {
        const std::string& a = addresses[i];
        std::string host = a.substr(0, a.rfind(':'));
        if (host == "localhost") host = "127.0.0.1";
        const std::string address = absl::StrCat(host, ":", api->Ports()[i]);
        log.Info(absl::StrCat("serving insecure client requests on ", address,
                              ", this is strongly discouraged!"),
                 {{"address", address}});
      }
      while (exit_code == 0 && !stop.WaitForNotificationWithTimeout(absl::Milliseconds(200)) &&
             !(*server)->StopRequested()) {
      }
    }
  }

  if (stop.HasBeenNotified()) {
    log.Info("received signal; shutting down", {{"signal", strsignal(signals.signal())}});
  } else if ((*server)->StopRequested()) {
    // Removed from the cluster: etcd stops the member and exits.
    log.Warn("stopping server: the member has been permanently removed from the cluster");
  }
  (void)util::SdNotify("STOPPING=1");  // best effort: no manager, no message
  if (http != nullptr) http->Shutdown();  // first: gateway streams use the gRPC server
  if (api != nullptr) api->Shutdown(kGrpcShutdownGrace);
  http.reset();
  api.reset();
  backend.reset();
  (*server)->Stop();
  return exit_code;
}

}  // namespace cppetcd::cmd
