// cppetcd's configuration: etcd 3.4's server flags, their ETCD_* environment
// variables and etcd's YAML configuration file (--config-file), parsed into
// one EtcdConfig.
//
// Precedence, as etcd 3.4 (etcdmain/config.go): a configuration file (from
// --config-file or ETCD_CONFIG_FILE) replaces every other flag and variable;
// otherwise command-line flags, then ETCD_<FLAG_NAME> variables for the flags
// not given, then defaults. A variable that names a flag also given on the
// command line is an error, as in etcd.
//
// Thread-safety: pure functions, no shared state.
#ifndef CPPETCD_CMD_FLAGS_H_
#define CPPETCD_CMD_FLAGS_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace cppetcd::cmd {

// A URL of the forms etcd accepts in its URL flags: scheme://host:port.
struct Url {
  std::string scheme;  // "http", "https", "unix" or "unixs"
  std::string host;    // IP or name, without brackets for IPv6
  int port = -1;       // 0..65535; 0 asks the OS for a free port (as Go's
                       // listener does); -1 when absent
  std::string ToString() const;  // scheme://host:port (IPv6 in brackets)
  std::string HostPort() const;  // host:port, as gRPC listens on it
  bool operator==(const Url&) const = default;
};

// Parses one URL; InvalidArgument for anything etcd would reject (no scheme,
// a path, a bad port).
absl::StatusOr<Url> ParseUrl(std::string_view text);
// Parses a comma-separated list of URLs.
absl::StatusOr<std::vector<Url>> ParseUrls(std::string_view text);

// --initial-cluster "n1=http://a:2380,n1=http://a2:2380,n2=http://b:2380":
// member name -> its peer URLs in order of appearance.
using InitialCluster = std::map<std::string, std::vector<Url>>;
absl::StatusOr<InitialCluster> ParseInitialCluster(std::string_view text);

// Every server setting cppetcd reads. Defaults are etcd 3.4's.
struct EtcdConfig {
  // Member
  std::string name = "default";
  std::string data_dir;  // empty in input: "<name>.etcd" after Finalize
  std::string wal_dir;   // empty: <data_dir>/member/wal
  uint64_t snapshot_count = 100000;
  // etcd 3.5's --experimental-snapshot-catchup-entries: raft entries kept
  // behind a snapshot for slow followers.
  uint64_t experimental_snapshot_catchup_entries = 5000;
  uint32_t max_snapshots = 5;
  uint32_t max_wals = 5;
  uint32_t heartbeat_interval_ms = 100;
  uint32_t election_timeout_ms = 1000;
  bool initial_election_tick_advance = true;
  int64_t quota_backend_bytes = 0;  // 0: 2 GiB
  std::chrono::milliseconds backend_batch_interval{0};
  int64_t backend_batch_limit = 0;
  uint32_t max_txn_ops = 128;
  uint32_t max_request_bytes = 1572864;  // 1.5 MiB
  std::chrono::milliseconds grpc_keepalive_min_time{5000};
  std::chrono::milliseconds grpc_keepalive_interval{2 * 3600 * 1000};
  std::chrono::milliseconds grpc_keepalive_timeout{20000};
  uint32_t max_concurrent_streams = 0xffffffffu;
  std::vector<Url> listen_peer_urls;       // default http://localhost:2380
  std::vector<Url> listen_client_urls;     // default http://localhost:2379
  // etcd 3.5's --listen-client-http-urls: when not empty, these URLs serve
  // the HTTP/1.1 side of the client port (gateway, /health, /metrics,
  // /version) only and listen_client_urls serve gRPC only. No URL is in both.
  std::vector<Url> listen_client_http_urls;
  std::vector<Url> listen_metrics_urls;
  std::vector<std::string> cors;
  std::vector<std::string> host_whitelist;
  // Clustering
  std::vector<Url> initial_advertise_peer_urls;  // default http://localhost:2380
  std::vector<Url> advertise_client_urls;        // default http://localhost:2379
  // Raw flag; empty: "<name>=<initial-advertise-peer-urls>" after Finalize,
  // unless DNS discovery is asked for (then it stays empty).
  std::string initial_cluster;
  // --initial-cluster was given (flag, variable or config file key): with
  // --discovery-srv that is etcd's conflict error; without, DNS discovery
  // flags clear the default.
  bool initial_cluster_given = false;
  // --discovery-srv: the DNS domain whose SRV records list the initial
  // cluster (cmd/dns_discovery.h); --discovery-srv-name: the suffix of the
  // service names looked up ("_etcd-server-<name>._tcp.<domain>").
  std::string discovery_srv;
  std::string discovery_srv_name;
  std::string initial_cluster_token = "etcd-cluster";
  std::string initial_cluster_state = "new";  // "new" or "existing"
  bool strict_reconfig_check = true;
  bool pre_vote = false;
  // Security (client side)
  std::string cert_file, key_file, trusted_ca_file, client_crl_file;
  bool client_cert_auth = false;
  bool auto_tls = false;
  std::string client_cert_allowed_hostname;
  // Security (peer side)
  std::string peer_cert_file, peer_key_file, peer_trusted_ca_file, peer_crl_file;
  bool peer_client_cert_auth = false;
  bool peer_auto_tls = false;
  std::string peer_cert_allowed_cn, peer_cert_allowed_hostname;
  std::vector<std::string> cipher_suites;
  // Logging
  std::vector<std::string> log_outputs = {"default"};
  std::string log_level = "info";
  bool debug = false;
  // Compaction
  std::string auto_compaction_mode = "periodic";   // "periodic" or "revision"
  std::string auto_compaction_retention = "0";     // periodic: hours or a duration
  // Auth
  std::string auth_token = "simple";
  uint32_t bcrypt_cost = 10;
  uint32_t auth_token_ttl_seconds = 300;
  // Monitoring
  // The JSON gateway (/v3/..., /v3beta/...) on the client port.
  bool enable_grpc_gateway = true;
  std::string metrics = "basic";
  // Experimental / unsafe
  bool experimental_initial_corrupt_check = false;
  std::chrono::milliseconds experimental_corrupt_check_time{0};
  // Lease checkpoints (server::ServerConfig::lease_checkpoint); persist
  // without checkpoint is refused by Finalize, as etcd 3.4 refuses it.
  bool experimental_enable_lease_checkpoint = false;
  bool experimental_enable_lease_checkpoint_persist = false;
  // bbolt's freelist ("array" or "map"): accepted, no effect on LMDB.
  std::string experimental_backend_bbolt_freelist_type = "array";
  // etcd skips the peer client certificate's SAN check against the remote
  // address when true; cppetcd never makes that check (docs/operations.md).
  bool experimental_peer_skip_client_san_verification = false;
  int64_t experimental_compaction_batch_limit = 1000;
  std::chrono::milliseconds experimental_watch_progress_notify_interval{10 * 60 * 1000};
  std::chrono::milliseconds experimental_warning_apply_duration{100};
  bool unsafe_no_fsync = false;
  bool force_new_cluster = false;
  // Where the configuration came from ("" when from flags).
  std::string config_file;
};

// What main should do after parsing.
enum class Action { kRun, kVersion, kHelp };

struct ParseResult {
  Action action = Action::kRun;
  EtcdConfig config;
  // Notes for the log once it is set up, as etcd prints them:
  // "recognized and used environment variable ETCD_NAME=x" (info) and
  // "unrecognized environment variable ETCD_FOO=1" (warn).
  std::vector<std::string> env_used;
  std::vector<std::string> env_unrecognized;
};

// Parses argv[1..argc) (both "--flag=value" and "--flag value"; one or two
// leading dashes; a bare boolean flag means true) and the environment
// ("KEY=VALUE" strings). InvalidArgument with etcd's wording
// ("flag provided but not defined: -foo", "invalid value \"abc\" for flag
// -heartbeat-interval: parse error") for bad input: main prints it with the
// usage and exits 2; an unknown flag's error has util::ErrorCode::
// kFlagNotDefined. The result is finalized (see Finalize).
absl::StatusOr<ParseResult> ParseCommandLine(const std::vector<std::string>& args,
                                             const std::vector<std::string>& environ);

// Reads etcd's YAML configuration file (the keys of etcd.conf.yml.sample,
// with client-transport-security / peer-transport-security sections).
// InvalidArgument for unknown keys' bad values or unreadable YAML; NotFound
// when the file does not exist. The result is finalized.
absl::StatusOr<EtcdConfig> LoadConfigFile(const std::string& path);

// Fills derived defaults (data dir, default URLs, initial cluster) and checks
// the values etcd checks (election timeout >= 5 x heartbeat, cluster state,
// compaction mode and retention, URL lists). InvalidArgument on error.
absl::Status Finalize(EtcdConfig* config);

// Parses --auto-compaction-retention for mode "periodic": a Go duration
// ("1h", "30m", "90s") or a plain number of hours ("1", "0.5"). 0 disables.
absl::StatusOr<std::chrono::milliseconds> ParsePeriodicRetention(std::string_view text);

// Parses a Go-style duration ("5s", "1m30s", "100ms", "2h"); InvalidArgument
// on error.
absl::StatusOr<std::chrono::milliseconds> ParseGoDuration(std::string_view text);

// The help text printed by --help and after a flag error.
std::string Usage();

// The lines printed by --version.
std::string VersionText();

}  // namespace cppetcd::cmd

#endif  // CPPETCD_CMD_FLAGS_H_
