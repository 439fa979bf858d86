// Multi-member harness for real-process cluster tests: N server processes
// (cppetcd, or etcd 3.4 to validate the tests) on loopback ports (or each
// in a network namespace of the caller's making, Options::networks), started
// with the flags of the operators' runbook (--name, --initial-cluster,
// --initial-cluster-token, --initial-cluster-state ...), each optionally
// behind a FaultProxy on its peer port. Membership changes go through
// etcdctl exactly as the runbook does them (member add/remove, start with
// --initial-cluster-state=existing).
//
// Every wait polls under a deadline; processes are stopped by PID only and
// always reaped; member logs are printed when the test has failed.
//
// Thread-safety: Cluster and ClusterMember are not thread-safe (drive them
// from the test thread; client stubs may be used from any thread).
#ifndef CPPETCD_TESTS_INTEGRATION_CLUSTER_HARNESS_H_
#define CPPETCD_TESTS_INTEGRATION_CLUSTER_HARNESS_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "fault_proxy.h"
#include "grpcpp/grpcpp.h"
#include "harness.h"

namespace cppetcd::integration {

// TLS for every member of a Cluster (certificates e.g. from test_certs.h).
struct ClusterTls {
  // https:// client URLs with --cert-file/--key-file/--trusted-ca-file
  // (and --client-cert-auth if client_cert_auth).
  bool client = false;
  bool client_cert_auth = true;
  // https:// peer URLs with the --peer-* flags (--peer-client-cert-auth if
  // peer_client_cert_auth). Not compatible with Options::proxies.
  bool peer = false;
  bool peer_client_cert_auth = true;
  // With `peer`: --peer-auto-tls (self-signed certificates in the data
  // dirs) instead of the --peer-*-file flags.
  bool peer_auto_tls = false;
  std::string ca_file;                  // trusted CA (client and peer side)
  std::string cert_file, key_file;      // server and peer certificate
  // What the harness's own channels and etcdctl (EtcdctlFlags) present.
  std::string client_cert_file, client_key_file;
};

// One member process. Its command line is fixed when it is created; a
// restart reuses it (a member with a data dir ignores the initial-cluster
// flags, as in etcd).
class ClusterMember {
 public:
  ~ClusterMember();
  ClusterMember(const ClusterMember&) = delete;
  ClusterMember& operator=(const ClusterMember&) = delete;

  const std::string& name() const { return name_; }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& log_path() const { return log_path_; }
  int client_port() const { return client_port_; }
  // The port the process listens on for peers.
  int peer_port() const { return peer_port_; }
  // The port other members dial: the proxy's if there is one.
  int advertised_peer_port() const { return proxy_ ? proxy_->port() : peer_port_; }
  // The address it listens on: 127.0.0.1, or its own in a network
  // namespace (Cluster::Options::networks).
  const std::string& host() const { return host_; }
  // "<host>:<client port>"
  std::string ClientEndpoint() const;
  // "http://<host>:<client port>" ("https://" with client TLS)
  std::string ClientUrl() const;
  // "http://<host>:<advertised peer port>" ("https://" with peer TLS)
  std::string PeerUrl() const;
  // The proxy in front of the peer port, or null.
  FaultProxy* proxy() const { return proxy_.get(); }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  // True once the process exited by itself (reaps it if so).
  bool Exited();

  // The full argument vector (argv[0] is the binary).
  const std::vector<std::string>& args() const { return args_; }
  // Replaces the flags used by the next Spawn (e.g. to add or drop
  // --force-new-cluster). `args[0]` must be the binary.
  void set_args(std::vector<std::string> args) { args_ = std::move(args); }

  // Starts the process (not waiting for anything). Requires !running().
  absl::Status Spawn();
  // SIGKILL and reap.
  void Kill();
  // SIGTERM, then SIGKILL after `timeout`; reaped.
  CommandResult Terminate(std::chrono::milliseconds timeout = std::chrono::seconds(15));
  // Removes the data dir. Requires !running().
  void WipeData();

  // A new channel to the client endpoint (its own connection; TLS with the
  // cluster's CA and client certificate when client TLS is on).
  std::shared_ptr<grpc::Channel> NewChannel() const;
  // Waits until a Range on this member succeeds (linearizable unless
  // `serializable`), or the process exits, or the deadline.
  absl::Status WaitServing(std::chrono::milliseconds timeout, bool serializable = false);
  // Maintenance.Status of this member (deadline `timeout`).
  absl::StatusOr<etcdserverpb::StatusResponse> Status(
      std::chrono::milliseconds timeout = std::chrono::seconds(2)) const;

  std::string ReadLog() const;

 private:
  friend class Cluster;
  ClusterMember() = default;

  std::string name_;
  std::string host_ = "127.0.0.1";
  std::string netns_path_;  // "" = the harness's own network namespace
  std::string data_dir_;
  std::string log_path_;
  int client_port_ = 0;
  int peer_port_ = 0;
  std::unique_ptr<FaultProxy> proxy_;
  std::vector<std::string> args_;
  pid_t pid_ = -1;
  size_t log_size_at_spawn_ = 0;  // the log is appended to across restarts
  ClusterTls tls_;
};

class Cluster {
 public:
  // Where a member slot lives on the network.
  struct MemberNetwork {
    std::string host;        // IPv4 address to listen on and advertise
    std::string netns_path;  // e.g. /run/netns/<name>: the process is moved
                             // there (setns) before exec; "" = none
  };
  struct Options {
    int size = 3;
    std::string binary;  // default ServerBinary()
    // Put a FaultProxy in front of each member's peer port.
    bool proxies = false;
    // Raft timing; small to keep failover tests fast.
    int heartbeat_ms = 50;
    int election_ms = 500;
    // Flags added to every member (e.g. --snapshot-count=100).
    std::vector<std::string> extra_flags;
    std::chrono::milliseconds ready_timeout = std::chrono::seconds(40);
    // TLS on client and/or peer URLs.
    ClusterTls tls;
    // Per member slot (index i = member m<i>, also after a `reuse_slot`
    // AddMember): its own address and network namespace, reachable from
    // the harness's namespace. Such a member uses ports 2379 (client) and
    // 2380 (peer), which nothing else holds there. Slots past the end stay
    // on loopback with ports the OS picks. Not compatible with `proxies`.
    std::vector<MemberNetwork> networks;
  };

  // Bootstraps `options.size` members under `base_dir` (data dirs
  // <base>/m<i>.data, logs <base>/m<i>.log) with --initial-cluster-state=new
  // and a unique --initial-cluster-token, and waits until each serves a
  // linearizable Range. Retries with fresh ports (up to 3 times) if a
  // member exits before it is ready. Errors carry the log tails.
  static absl::StatusOr<std::unique_ptr<Cluster>> Start(Options options, std::string base_dir);
  // Kills every member (SIGTERM, then SIGKILL), prints logs on failure.
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  const Options& options() const { return options_; }
  const std::string& token() const { return token_; }
  int size() const { return static_cast<int>(members_.size()); }
  ClusterMember& member(int i) { return *members_.at(i); }
  // Index of the member named `name`, or -1.
  int IndexOf(const std::string& name) const;

  // Comma-separated client endpoints of the running members.
  std::string RunningEndpoints() const;
  // etcdctl's TLS flags for this cluster (--cacert, --cert, --key) or none;
  // put them before the command's own arguments.
  std::vector<std::string> EtcdctlFlags() const;
  // Indices of the running members.
  std::vector<int> Running() const;

  // Waits until every running member (or those in `among`, if non-empty)
  // reports the same leader and term through Maintenance.Status, and that
  // leader is one of them; returns its index. Timeout: kDeadlineExceeded.
  absl::StatusOr<int> WaitForLeader(std::chrono::milliseconds timeout,
                                    const std::vector<int>& among = {});
  // The member id of member `i` (Maintenance.Status header.member_id).
  absl::StatusOr<uint64_t> MemberId(int i) const;
  // `id` as etcdctl prints it (16 lower-case hex digits, no padding loss).
  static std::string HexId(uint64_t id);

  // Restarts a stopped member with its previous flags and waits until it
  // serves (serializable Range when `learner`).
  absl::Status Restart(int i, bool learner = false);
  // Starts every stopped member at once, then waits until each serves.
  absl::Status RestartAll();

  // What `etcdctl member add` printed and parsed.
  struct MemberAddOutput {
    std::string stdout_text;
    uint64_t id = 0;
    std::string etcd_name;                   // ETCD_NAME
    std::string etcd_initial_cluster;        // ETCD_INITIAL_CLUSTER
    std::string etcd_initial_advertise;      // ETCD_INITIAL_ADVERTISE_PEER_URLS
    std::string etcd_initial_cluster_state;  // ETCD_INITIAL_CLUSTER_STATE
  };
  // Runbook "add a member": picks ports for `name` (a new member, or the
  // stopped member of that name with a new data dir `<base>/<name>.data.<n>`
  // when `reuse_slot`), runs `etcdctl member add <name> --peer-urls=<url>
  // [--learner]` through `via` (an endpoint list), then starts the process
  // with --name/--initial-cluster/--initial-cluster-state from that printout
  // and waits until it serves. Returns the member's index; the printout in
  // `out` if given.
  absl::StatusOr<int> AddMember(const std::string& name, bool learner, const std::string& via,
                                MemberAddOutput* out = nullptr, bool reuse_slot = false);
  // Parses etcdctl's member add printout.
  static absl::StatusOr<MemberAddOutput> ParseMemberAdd(const std::string& stdout_text);

  // `etcdctl member remove <hex id>` through `via`.
  absl::Status RemoveMember(uint64_t id, const std::string& via);

  // Cuts member `i` off from every other member in both directions (a
  // network partition with `i` alone on one side): its own proxy blackholes
  // what others send it, and every other proxy blackholes the connections
  // `i`'s process dialed. Requires Options::proxies. Call again after
  // restarting a member (the process id changes).
  absl::Status Isolate(int i);
  // Lifts every cut (the cut connections are reset; members redial).
  void HealAll();

  // Prints the tail of every member log to stderr.
  void DumpLogs(size_t tail_bytes = 6000) const;

 private:
  explicit Cluster(Options options) : options_(std::move(options)) {}
  // Creates member `name` with fresh ports (and proxy); fills its args for
  // the given initial cluster/state.
  absl::StatusOr<std::unique_ptr<ClusterMember>> NewMember(const std::string& name,
                                                           const std::string& data_dir);
  std::vector<std::string> BaseArgs(const ClusterMember& m) const;
  absl::Status BootstrapOnce();

  Options options_;
  std::string base_dir_;
  std::string token_;
  std::vector<std::unique_ptr<ClusterMember>> members_;
  int data_dir_generation_ = 0;
};

// Runs a membership command (`member add/remove/promote/update`) through
// etcdctl, retrying while the server refuses it because the cluster is too
// young or not fully connected (etcd 3.4's strict reconfiguration check
// wants the leader connected to a quorum for 5 s: "etcdserver: unhealthy
// cluster", "... not enough started members") or has no leader yet (a
// member was just killed), as an operator would.
CommandResult EtcdctlReconfig(const std::string& endpoints, const std::vector<std::string>& args,
                              std::chrono::milliseconds timeout = std::chrono::seconds(25));

// A Put with a deadline on `stub`.
grpc::Status PutKey(etcdserverpb::KV::Stub* stub, const std::string& key, const std::string& value,
                    std::chrono::milliseconds timeout, etcdserverpb::PutResponse* resp = nullptr);
// A Range of one key (or [key, range_end)) with a deadline.
grpc::Status GetKey(etcdserverpb::KV::Stub* stub, const std::string& key, bool serializable,
                    std::chrono::milliseconds timeout, etcdserverpb::RangeResponse* resp,
                    const std::string& range_end = "");
// The prefix's range end (etcd's "next key after every key with prefix").
std::string PrefixEnd(const std::string& prefix);

// Rows of an etcdctl `-w table` printout: border lines dropped, cells
// trimmed; the first row is the header.
std::vector<std::vector<std::string>> ParseTable(const std::string& text);

}  // namespace cppetcd::integration

#endif  // CPPETCD_TESTS_INTEGRATION_CLUSTER_HARNESS_H_
