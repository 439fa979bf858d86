#include "run.h"

#include <pthread.h>
#include <stdlib.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "cppetcd/api/client_listener.h"
#include "cppetcd/api/etcd_server_backend.h"
#include "cppetcd/api/http_server.h"
#include "cppetcd/api/metrics.h"
#include "cppetcd/cmd/dns_discovery.h"
#include "cppetcd/server/etcd_convert.h"
#include "cppetcd/transport/grpc_timer_guard.h"
#include "cppetcd/transport/grpc_transport.h"
#include "cppetcd/util/env.h"
#include "cppetcd/util/log.h"
#include "cppetcd/util/sd_notify.h"
#include "cppetcd/util/tls.h"
#include "cppetcd/wal/wal.h"

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
// the v3 JSON gateway through `api`'s in-process channel), served on the
// connections the client listeners hand over; it listens on nothing.
absl::StatusOr<std::unique_ptr<api::HttpServer>> StartHttp(const EtcdConfig& config,
                                                          api::ServerBackend* backend,
                                                          api::ApiServer* api,
                                                          const api::MetricsRegistry* metrics) {
  api::HttpServerOptions options;
  options.backend = backend;
  // etcd 3.4 embed/serve.go: --enable-grpc-gateway=false drops the /v3/
  // routes only; /health, /version and /metrics stay.
  if (config.enable_grpc_gateway) options.gateway_channel = api->InProcessChannel();
  options.metrics = metrics;
  options.server_version = server::kServerVersion;
  options.cluster_version = absl::StrCat(server::kClusterVersion, ".0");
  // The client and metrics URLs are served by ClientListeners that hand
  // their HTTP/1.1 connections to AddConnection.
  options.max_body_bytes = api::GatewayMaxBodyBytes(config.max_request_bytes);
  options.max_concurrent_streams = config.max_concurrent_streams;  // --max-concurrent-streams
  options.cors_origins = config.cors;              // --cors
  options.host_whitelist = config.host_whitelist;  // --host-whitelist
  options.logger = util::GetLogger("etcdhttp");
  return api::HttpServer::Start(std::move(options));
}

bool AnyHttps(const std::vector<Url>& urls) {
  for (const Url& u : urls) {
    if (u.scheme == "https" || u.scheme == "unixs") return true;
  }
  return false;
}

// The client or peer TLS settings from the flags; with auto TLS and no
// certificate given, etcd's self-signed certificate in
// <data-dir>/fixtures/{client,peer} (made once, reused on restart).
absl::StatusOr<util::TlsInfo> TlsInfoFromFlags(bool peer, const EtcdConfig& config,
                                                const util::Logger& log) {
  util::TlsInfo info;
  info.cert_file = peer ? config.peer_cert_file : config.cert_file;
  info.key_file = peer ? config.peer_key_file : config.key_file;
  info.trusted_ca_file = peer ? config.peer_trusted_ca_file : config.trusted_ca_file;
  info.crl_file = peer ? config.peer_crl_file : config.client_crl_file;
  info.client_cert_auth = peer ? config.peer_client_cert_auth : config.client_cert_auth;
  info.allowed_cn = peer ? config.peer_cert_allowed_cn : "";
  info.allowed_hostname =
      peer ? config.peer_cert_allowed_hostname : config.client_cert_allowed_hostname;
  const bool auto_tls = peer ? config.peer_auto_tls : config.auto_tls;
  if (auto_tls) {
    if (!info.Empty()) {
      log.Warn(peer ? "ignoring peer auto TLS since certs given"
                    : "ignoring client auto TLS since certs given");
    } else {
      std::vector<std::string> hosts;
      for (const Url& u : peer ? config.listen_peer_urls : config.listen_client_urls) {
        hosts.push_back(u.HostPort());
      }
      if (!peer) {
        for (const Url& u : config.listen_client_http_urls) hosts.push_back(u.HostPort());
      }
      absl::StatusOr<util::TlsInfo> self = util::SelfCert(
          absl::StrCat(config.data_dir, "/fixtures/", peer ? "peer" : "client"), hosts);
      if (!self.ok()) return self.status();
      self->client_cert_auth = info.client_cert_auth;
      self->trusted_ca_file = info.trusted_ca_file;
      self->crl_file = info.crl_file;
      if (peer && !info.trusted_ca_file.empty()) {
        // etcd drops the CA here and trusts any peer; cppetcd verifies the
        // peers' certificates against it, which self-signed ones fail.
        log.Warn("peer auto TLS with --peer-trusted-ca-file: peer certificates are verified "
                 "against the CA",
                 {{"peer-trusted-ca-file", info.trusted_ca_file}});
      }
      info = *std::move(self);
    }
  }
  if (absl::Status st = util::ValidateTlsInfo(info); !st.ok()) return st;
  // A CRL is checked against the certificates a client presents, and only
  // --client-cert-auth asks for one; gRPC enforces peer CRLs only with a CA.
  if (!peer && !info.crl_file.empty() && !info.client_cert_auth) {
    return absl::InvalidArgumentError("--client-crl-file requires --client-cert-auth");
  }
  if (peer && !info.crl_file.empty() && info.trusted_ca_file.empty()) {
    return absl::InvalidArgumentError("--peer-crl-file requires --peer-trusted-ca-file");
  }
  return info;
}

// The servers the client listeners hand connections to; set before the
// listeners Serve (so before any callback runs), never changed after.
struct ClientHandlers {
  api::ApiServer* api = nullptr;
  api::HttpServer* http = nullptr;
};

// Binds the client URLs (gRPC to `handlers->api`, HTTP/1.1 to
// `handlers->http` with every route) and the metrics URLs (HTTP only,
// metrics and health routes), without accepting yet (ClientListener::Bind).
// With --listen-client-http-urls, `client` binds those (HTTP/1.1 only,
// every route) and the client URLs are left to gRPC (ToApiServerOptions).
absl::Status BindClientListeners(const EtcdConfig& config, const util::TlsInfo& tls,
                                 const ClientHandlers* handlers,
                                 std::unique_ptr<api::ClientListener>* client,
                                 std::unique_ptr<api::ClientListener>* metrics) {
  api::ClientListenerOptions options;
  const bool split = !config.listen_client_http_urls.empty();
  for (const Url& u : split ? config.listen_client_http_urls : config.listen_client_urls) {
    options.urls.push_back(u.ToString());
  }
  options.tls = tls;
  options.http_only = split;
  if (!split) {
    options.on_grpc_connection = [handlers](int fd) { handlers->api->AddConnection(fd); };
  }
  options.on_http_connection = [handlers](int fd, const api::HttpPeer& peer) {
    handlers->http->AddConnection(fd, peer, api::HttpRoutes::kAll);
  };
  options.logger = util::GetLogger("embed");
  absl::StatusOr<std::unique_ptr<api::ClientListener>> c =
      api::ClientListener::Bind(std::move(options));
  if (!c.ok()) return c.status();
  *client = *std::move(c);
  if (config.listen_metrics_urls.empty()) return absl::OkStatus();
  api::ClientListenerOptions moptions;
  for (const Url& u : config.listen_metrics_urls) moptions.urls.push_back(u.ToString());
  moptions.tls = tls;
  moptions.http_only = true;
  moptions.on_http_connection = [handlers](int fd, const api::HttpPeer& peer) {
    handlers->http->AddConnection(fd, peer, api::HttpRoutes::kMetrics);
  };
  moptions.logger = util::GetLogger("embed");
  absl::StatusOr<std::unique_ptr<api::ClientListener>> m =
      api::ClientListener::Bind(std::move(moptions));
  if (!m.ok()) return m.status();
  *metrics = *std::move(m);
  return absl::OkStatus();
}

// --discovery-srv as etcd 3.4 (embed.StartEtcd): a member without a WAL
// takes its initial cluster from DNS (cmd/dns_discovery.h); one with a WAL
// restarts from it and looks nothing up. `config` is updated in place;
// `peer_server_name` gets etcd's peer TLS ServerName. Errors: those of
// DiscoverSrvCluster, with etcd's prefix.
absl::Status BootstrapFromDns(EtcdConfig* config, std::string* peer_server_name,
                              const util::Logger& log) {
  const bool dns = !config->discovery_srv.empty() || !config->discovery_srv_name.empty();
  if (!dns || !config->initial_cluster.empty()) return absl::OkStatus();  // static cluster
  const std::string wal_dir =
      config->wal_dir.empty() ? config->data_dir + "/member/wal" : config->wal_dir;
  if (wal::Wal::Exists(util::Env::Default(), wal_dir)) {
    // The members are in the WAL; this only satisfies the server's check
    // of the advertised URLs against the initial cluster.
    std::vector<std::string> parts;
    for (const Url& u : config->initial_advertise_peer_urls) {
      parts.push_back(absl::StrCat(config->name, "=", u.ToString()));
    }
    config->initial_cluster = absl::StrJoin(parts, ",");
    return absl::OkStatus();
  }
  if (config->discovery_srv.empty()) {
    // etcd: --discovery-srv-name alone drops the default initial cluster,
    // and the bootstrap then finds no member of this name.
    return absl::InvalidArgumentError(absl::StrCat("couldn't find local name \"", config->name,
                                                   "\" in the initial cluster configuration"));
  }
  std::unique_ptr<SrvResolver> resolver = NewSystemResolver();
  absl::StatusOr<SrvBootstrap> found = DiscoverSrvCluster(*resolver, *config, log);
  if (!found.ok()) {
    return absl::Status(found.status().code(), absl::StrCat("error setting up initial cluster: ",
                                                            found.status().message()));
  }
  config->initial_cluster = found->initial_cluster;
  config->initial_advertise_peer_urls = found->advertise_peer_urls;
  *peer_server_name = found->peer_server_name;
  return absl::OkStatus();
}

// A unix socket URL's path: everything after "://" ("unix://localhost:2379":
// the file "localhost:2379", as the client listener and etcd use it).
std::string UnixSocketPath(const Url& u) {
  const std::string s = u.ToString();
  return s.substr(s.find("://") + 3);
}

// The address gRPC listens on for a gRPC-only client URL: "host:port", or
// "unix:path" (relative to the working directory, as the client listener's).
std::string GrpcListenAddress(const Url& u) {
  if (u.scheme == "unix" || u.scheme == "unixs") return absl::StrCat("unix:", UnixSocketPath(u));
  return u.HostPort();
}

// Go's net.Listen("unix") refuses an existing file; gRPC would remove it.
absl::Status CheckUnixSocketsFree(const std::vector<Url>& urls) {
  for (const Url& u : urls) {
    if (u.scheme != "unix" && u.scheme != "unixs") continue;
    struct stat st;
    const std::string path = UnixSocketPath(u);
    if (::lstat(path.c_str(), &st) == 0) {
      return absl::UnavailableError(
          absl::StrCat("listen unix ", path, ": bind: address already in use"));
    }
  }
  return absl::OkStatus();
}

// "host:port" as etcd logs a client listener's address (the bound port;
// localhost as 127.0.0.1), or the unix socket's path.
std::string LoggedAddress(const std::string& url) {
  const bool unix_socket = url.rfind("unix", 0) == 0;
  std::string address = url.substr(url.find("://") + 3);
  if (!unix_socket && address.rfind("localhost:", 0) == 0) {
    address = "127.0.0.1" + address.substr(9);
  }
  return address;
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
  sc.initial_corrupt_check = config.experimental_initial_corrupt_check;
  sc.corrupt_check_time = config.experimental_corrupt_check_time;
  sc.lease_checkpoint = config.experimental_enable_lease_checkpoint;
  sc.lease_checkpoint_persist = config.experimental_enable_lease_checkpoint_persist;
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
  api::ApiServerOptions options;  // no own ports: the ClientListener hands connections over
  options.keepalive_min_time = config.grpc_keepalive_min_time;
  options.keepalive_interval = config.grpc_keepalive_interval;
  options.keepalive_timeout = config.grpc_keepalive_timeout;
  options.max_concurrent_streams = config.max_concurrent_streams;
  options.watch_progress_notify_interval =
      std::max(config.experimental_watch_progress_notify_interval, kMinWatchProgressInterval);
  options.leader_check_interval = std::chrono::milliseconds(config.election_timeout_ms);
  options.logger = util::GetLogger("embed");
  // etcd 3.5: with --listen-client-http-urls the client URLs are gRPC
  // only, and gRPC owns their sockets (Run adds the TLS credentials).
  if (!config.listen_client_http_urls.empty()) {
    for (const Url& u : config.listen_client_urls) {
      options.listen_addresses.push_back(GrpcListenAddress(u));
    }
  }
  return options;
}

int Run(const EtcdConfig& given_config) {
  util::Logger log = util::GetLogger("etcdmain");
  EtcdConfig config = given_config;  // DNS discovery fills in the initial cluster

  // Block the stop signals in this thread before any other starts, so every
  // thread inherits the mask and only the watcher receives them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  absl::Notification stop;
  SignalWatcher signals(&stop);

  if (config.experimental_enable_lease_checkpoint &&
      !config.experimental_enable_lease_checkpoint_persist) {
    // etcd embed.Config.Validate's warning.
    log.Warn(
        "Detected that checkpointing is enabled without persistence. Consider enabling "
        "experimental-enable-lease-checkpoint-persist");
  }
  if (config.experimental_backend_bbolt_freelist_type != "array") {
    log.Info("--experimental-backend-bbolt-freelist-type does not apply: the backend is LMDB",
             {{"experimental-backend-bbolt-freelist-type",
               config.experimental_backend_bbolt_freelist_type}});
  }
  absl::StatusOr<api::ApiServerOptions> api_options = ToApiServerOptions(config);
  if (!api_options.ok()) {
    log.Error("invalid client URLs", {{"error", api_options.status().ToString()}});
    return 1;
  }
  // Before anything opens the data dir: an etcd data dir is converted once
  // (server/etcd_convert.h); a mixed one stops here.
  if (absl::StatusOr<server::ConvertStats> prepared = server::PrepareDataDir(
          util::Env::Default(), config.data_dir, config.wal_dir, log);
      !prepared.ok()) {
    log.Error("cannot use the data dir", {{"data-dir", config.data_dir},
                                          {"error", prepared.status().ToString()}});
    return 1;
  }
  std::string peer_server_name;
  if (absl::Status st = BootstrapFromDns(&config, &peer_server_name, util::GetLogger("embed"));
      !st.ok()) {
    // etcd 3.4 etcdmain: a fatal line, exit code 1.
    log.Log(util::LogLevel::kFatal, "discovery failed", {{"error", std::string(st.message())}});
    return 1;
  }
  absl::StatusOr<server::ServerConfig> server_config = ToServerConfig(config);
  if (!server_config.ok()) {
    log.Error("invalid configuration", {{"error", server_config.status().ToString()}});
    return 1;
  }
  // --cipher-suites: Go's names, checked (as etcd does) even without TLS.
  absl::StatusOr<std::string> cipher_list = util::OpenSslCipherList(config.cipher_suites);
  if (!cipher_list.ok()) {
    log.Error("invalid cipher suites", {{"error", cipher_list.status().ToString()}});
    return 1;
  }
  if (!cipher_list->empty()) {
    // The peer port's TLS is gRPC's, whose only cipher setting is this
    // variable, read when its first TLS credentials are made (below).
    ::setenv("GRPC_SSL_CIPHER_SUITES", cipher_list->c_str(), 1);
  }
  // Certificates are checked before anything starts: a bad or missing
  // file is a clear error and a non-zero exit, never a plaintext fallback.
  absl::StatusOr<util::TlsInfo> client_tls = TlsInfoFromFlags(false, config, log);
  if (!client_tls.ok()) {
    log.Error("invalid client TLS configuration", {{"error", client_tls.status().ToString()}});
    return 1;
  }
  client_tls->cipher_list = *cipher_list;
  std::vector<Url> all_client_urls = config.listen_client_urls;
  all_client_urls.insert(all_client_urls.end(), config.listen_client_http_urls.begin(),
                         config.listen_client_http_urls.end());
  for (const Url& u : all_client_urls) {
    const bool secure = u.scheme == "https" || u.scheme == "unixs";
    if (secure && client_tls->Empty()) {
      log.Error("invalid client TLS configuration",
                {{"error", absl::StrCat("TLS key/cert (--cert-file, --key-file) must be provided "
                                        "for client url ", u.ToString(), " with HTTPS scheme")}});
      return 1;
    }
    if (!secure && !client_tls->Empty()) {
      log.Warn("scheme is HTTP while key and cert files are present; ignoring key and cert files",
               {{"client-url", u.ToString()}});
    }
  }
  if (!client_tls->Empty()) {
    log.Info("starting with client TLS", {{"cert-file", client_tls->cert_file},
                                          {"key-file", client_tls->key_file},
                                          {"trusted-ca-file", client_tls->trusted_ca_file},
                                          {"client-cert-auth", client_tls->client_cert_auth},
                                          {"crl-file", client_tls->crl_file}});
  }
  // gRPC-only client URLs (--listen-client-http-urls): gRPC's own TLS, from
  // the client flags, with the peer port's certificate mirror and reload
  // (fixtures/client-tls) and CRL directory (fixtures/client-crl). Its
  // ciphers come from GRPC_SSL_CIPHER_SUITES, set above.
  const bool split_client_http = !config.listen_client_http_urls.empty();
  std::shared_ptr<grpc::ServerCredentials> client_grpc_credentials;
  std::shared_ptr<void> client_grpc_tls_files;  // keeps fixtures/client-tls current
  if (split_client_http && AnyHttps(config.listen_client_urls)) {
    absl::StatusOr<transport::PeerCredentials> creds = transport::NewClientServerCredentials(
        *client_tls, absl::StrCat(config.data_dir, "/fixtures/client-crl"),
        absl::StrCat(config.data_dir, "/fixtures/client-tls"), util::GetLogger("embed"));
    if (!creds.ok()) {
      log.Error("invalid client TLS configuration", {{"error", creds.status().ToString()}});
      return 1;
    }
    client_grpc_credentials = creds->server;
    client_grpc_tls_files = creds->files;
  }
  if (split_client_http) {
    for (const Url& u : config.listen_client_urls) {
      const bool secure = u.scheme == "https" || u.scheme == "unixs";
      api_options->listen_credentials.push_back(secure ? client_grpc_credentials : nullptr);
    }
  }
  absl::StatusOr<util::TlsInfo> peer_tls = TlsInfoFromFlags(true, config, log);
  if (!peer_tls.ok()) {
    log.Error("invalid peer TLS configuration", {{"error", peer_tls.status().ToString()}});
    return 1;
  }
  peer_tls->cipher_list = *cipher_list;
  // gRPC's timer thread sleeps on the wall clock: without this, a step back
  // of the clock stops every gRPC timer in the process for the step's length
  // (cppetcd/transport/grpc_timer_guard.h). Declared before everything that
  // uses gRPC, so it outlives them.
  transport::GrpcTimerGuard grpc_timer_guard;
  if (absl::Status st = grpc_timer_guard.Start(std::chrono::milliseconds(250)); !st.ok()) {
    log.Warn("gRPC timers are not guarded against wall-clock steps",
             {{"error", st.ToString()}});
  }
  // Peer listeners first, as etcd ("configuring peer listeners").
  transport::TransportOptions topts;
  for (const Url& u : config.listen_peer_urls) {
    if ((u.scheme == "http" || u.scheme == "unix") && !peer_tls->Empty()) {
      log.Warn("scheme is HTTP while key and cert files are present; ignoring key and cert files",
               {{"peer-url", u.ToString()}});
    }
    topts.listen_peer_urls.push_back(u.ToString());
  }
  std::shared_ptr<void> peer_tls_files;  // keeps fixtures/peer-tls current
  if (!peer_tls->Empty()) {
    log.Info("starting with peer TLS", {{"cert-file", peer_tls->cert_file},
                                        {"key-file", peer_tls->key_file},
                                        {"trusted-ca-file", peer_tls->trusted_ca_file},
                                        {"client-cert-auth", peer_tls->client_cert_auth},
                                        {"crl-file", peer_tls->crl_file}});
    absl::StatusOr<transport::PeerCredentials> creds = transport::NewPeerCredentials(
        *peer_tls, absl::StrCat(config.data_dir, "/fixtures/peer-crl"),
        absl::StrCat(config.data_dir, "/fixtures/peer-tls"));
    if (!creds.ok()) {
      log.Error("invalid peer TLS configuration", {{"error", creds.status().ToString()}});
      return 1;
    }
    topts.server_credentials = creds->server;
    topts.channel_credentials = creds->channel;
    peer_tls_files = creds->files;
  } else if (AnyHttps(config.listen_peer_urls)) {
    log.Error("invalid peer TLS configuration",
              {{"error", "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for "
                         "https peer URLs"}});
    return 1;
  }
  topts.tls_server_name = peer_server_name;
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
  transport::GrpcTransport* peer_transport_ptr = peer_transport->get();  // owned by the server
  // etcd 3.4 embed/etcd.go's line per peer listener, with the bound address
  // (the OS's choice for a port 0 URL).
  for (const std::string& url : peer_transport_ptr->BoundUrls()) {
    const size_t sep = url.find("://");
    log.Info("serving peer traffic",
             {{"address", sep == std::string::npos ? url : url.substr(sep + 3)}});
  }
  // Client listeners next, as etcd ("configuring client listeners"): bound
  // now and served once the member is ready, so a client that connects
  // in between waits in the backlog instead of being refused.
  ClientHandlers handlers;
  std::unique_ptr<api::ClientListener> client_listener;
  std::unique_ptr<api::ClientListener> metrics_listener;
  {
    std::vector<std::string> urls;
    for (const Url& u : config.listen_client_urls) urls.push_back(u.ToString());
    if (split_client_http) {
      std::vector<std::string> http_urls;
      for (const Url& u : config.listen_client_http_urls) http_urls.push_back(u.ToString());
      log.Info("configuring client listeners",
               {{"listen-client-urls", urls}, {"listen-client-http-urls", http_urls}});
    } else {
      log.Info("configuring client listeners", {{"listen-client-urls", urls}});
    }
  }
  if (split_client_http) {
    if (absl::Status st = CheckUnixSocketsFree(config.listen_client_urls); !st.ok()) {
      log.Error("failed to serve client requests", {{"error", st.ToString()}});
      return 1;
    }
  }
  if (absl::Status st = BindClientListeners(config, *client_tls, &handlers, &client_listener,
                                            &metrics_listener);
      !st.ok()) {
    log.Error("failed to serve client requests", {{"error", st.ToString()}});
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
  api::GrpcMetrics grpc_metrics(config.metrics == "extensive");  // --metrics
  metrics.Add([&](api::ExpositionWriter& w) { api::CollectServerMetrics(server->get(), w); });
  metrics.Add([peer_transport_ptr](api::ExpositionWriter& w) {
    api::WritePeerRoundTripTimes(w, peer_transport_ptr->PeerRoundTripTimes());
  });
  metrics.Add([&](api::ExpositionWriter& w) { grpc_metrics.Collect(w); });
  metrics.Add([](api::ExpositionWriter& w) { api::CollectProcessMetrics(w); });
  auto range_budget = std::make_shared<api::RangeBudget>();
  metrics.Add([range_budget](api::ExpositionWriter& w) {
    api::CollectRangeBudgetMetrics(range_budget->GetStats(), w);
  });
  std::unique_ptr<api::ServerBackend> backend;
  std::unique_ptr<api::ApiServer> api;
  std::unique_ptr<api::HttpServer> http;
  int exit_code = 0;
  if (!stop.HasBeenNotified()) {
    backend = api::NewEtcdServerBackend(server->get());
    api_options->interceptors.push_back(grpc_metrics.InterceptorFactory());
    api_options->range_budget = range_budget;
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
        // The client URLs (gRPC and HTTP on each, plain or TLS) and the
        // metrics URLs (HTTP only) start accepting.
        handlers.api = api.get();
        handlers.http = http.get();
        client_listener->Serve();
        if (metrics_listener != nullptr) metrics_listener->Serve();
      }
      if (exit_code == 0) {  // every listener is up: tell clients and systemd
        log.Info("ready to serve client requests");
        absl::StatusOr<bool> n = util::SdNotify("READY=1\nSTATUS=ready to serve client requests");
        if (!n.ok()) {
          log.Error("failed to notify systemd for readiness", {{"error", n.status().ToString()}});
        }
        // etcd 3.4 embed/serve.go's lines, one per client URL; with
        // --listen-client-http-urls, etcd 3.5's, which say the traffic
        // ("grpc" on the client URLs, "http" on the HTTP URLs).
        std::vector<std::pair<std::string, std::string>> bound;  // URL, traffic
        if (split_client_http) {
          for (size_t i = 0; i < config.listen_client_urls.size(); ++i) {
            Url u = config.listen_client_urls[i];
            if (u.scheme != "unix" && u.scheme != "unixs") u.port = api->Ports()[i];
            bound.emplace_back(u.ToString(), "grpc");
          }
        }
        if (client_listener != nullptr) {
          for (const std::string& url : client_listener->BoundUrls()) {
            bound.emplace_back(url, split_client_http ? "http" : "");
          }
        }
        for (const auto& [url, traffic] : bound) {
          const bool secure = url.rfind("https://", 0) == 0 || url.rfind("unixs://", 0) == 0;
          const char* msg = secure
                                ? "serving client traffic securely"
                                : "serving client traffic insecurely; this is strongly discouraged!";
          if (traffic.empty()) {
            log.Info(msg, {{"address", LoggedAddress(url)}});
          } else {
            log.Info(msg, {{"traffic", traffic}, {"address", LoggedAddress(url)}});
          }
        }
        // etcd 3.4 embed/etcd.go's line per metrics URL; with the bound port
        // (etcd prints the URL as given, ":0" included).
        if (metrics_listener != nullptr) {
          for (const std::string& url : metrics_listener->BoundUrls()) {
            log.Info("serving metrics", {{"address", url}});
          }
        }
        // A relative sleep, not WaitForNotificationWithTimeout: Abseil's
        // timed waits end at a wall-clock instant, which a clock step moves.
        while (!stop.HasBeenNotified() && !(*server)->StopRequested()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
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
  // No new connections; running calls get the grace period (gRPC closes
  // its connections, which ends their TLS relays); then whatever is left
  // is closed.
  if (client_listener != nullptr) client_listener->StopAccepting();
  if (metrics_listener != nullptr) metrics_listener->Shutdown();
  if (http != nullptr) http->Shutdown();  // first: gateway streams use the gRPC server
  if (api != nullptr) api->Shutdown(kGrpcShutdownGrace);
  if (client_listener != nullptr) client_listener->Shutdown();
  client_listener.reset();
  metrics_listener.reset();
  http.reset();
  api.reset();
  backend.reset();
  (*server)->Stop();
  return exit_code;
}

}  // namespace cppetcd::cmd
