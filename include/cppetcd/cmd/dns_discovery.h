// DNS SRV bootstrap of the initial cluster (--discovery-srv,
// --discovery-srv-name), with etcd's semantics (embed.Config's
// PeerURLsMapAndToken and GetDNSClusterNames, pkg/srv.GetCluster):
//
//   - two services are looked up under the domain D given by
//     --discovery-srv: "_etcd-server-ssl[-N]._tcp.D" (https peers) and
//     "_etcd-server[-N]._tcp.D" (http peers), "-N" being
//     "-<--discovery-srv-name>" when that flag is set;
//   - each record becomes "<name>=<scheme>://<target>:<port>" (the target
//     without its trailing dot); <name> is --name when target:port resolves
//     to the same address as one of this member's
//     --initial-advertise-peer-urls, else a placeholder ("0", "1", ...) that
//     only this member uses until the peers publish their names;
//   - a record naming this member with the other scheme is an error, a
//     record whose target does not resolve is skipped;
//   - this member must be among the records ("cannot find local etcd member
//     \"x\" in SRV records").
//
// Where cppetcd differs from etcd 3.4.23 (docs/operations.md, "DNS
// discovery"): etcd 3.4 queries both services but, through an inverted test,
// keeps only the https records (a domain with only _etcd-server records
// fails there); cppetcd keeps both, as etcd 3.5 does, and fails only when
// neither gives a record. The placeholder names are counted across both
// services (etcd restarts at "0" per service, which could merge two
// members under one name).
//
// Thread-safety: the functions are pure apart from the resolver they are
// given; NewSystemResolver's resolver may be used from any thread.
#ifndef CPPETCD_CMD_DNS_DISCOVERY_H_
#define CPPETCD_CMD_DNS_DISCOVERY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cppetcd/cmd/flags.h"
#include "cppetcd/util/log.h"

namespace cppetcd::cmd {

// One SRV answer record (RFC 2782).
struct SrvRecord {
  uint16_t priority = 0;
  uint16_t weight = 0;
  uint16_t port = 0;
  std::string target;  // host name, without the trailing dot
  bool operator==(const SrvRecord&) const = default;
};

// The name lookups discovery needs.
class SrvResolver {
 public:
  virtual ~SrvResolver() = default;
  // The SRV records of `name` (e.g. "_etcd-server._tcp.example.com"),
  // ordered by priority (lowest first), then weight (highest first).
  // NotFound "lookup <name> on <server>: no such host" when the name does
  // not exist or has no SRV record (Go's wording, which etcd prints);
  // Unavailable when no server answers or it fails.
  virtual absl::StatusOr<std::vector<SrvRecord>> LookupSrv(const std::string& name) = 0;
  // The address `host` (a name or an IP literal) resolves to, joined with
  // `port` as Go's net.ResolveTCPAddr prints it: "10.0.0.1:2380",
  // "[::1]:2380"; the first IPv4 address when there is one, as Go picks.
  // NotFound "lookup <host>: no such host" when it does not resolve.
  virtual absl::StatusOr<std::string> ResolveTcpAddr(const std::string& host, int port) = 0;
};

// The system's resolver: SRV records through libresolv's res_nsearch
// (/etc/resolv.conf: name servers, search domains, timeouts; TCP when an
// answer is truncated), addresses through getaddrinfo (nsswitch.conf:
// /etc/hosts, then DNS). Each call uses its own resolver state.
std::unique_ptr<SrvResolver> NewSystemResolver();

// etcd's pkg/srv.GetSRVService: "etcd-server" plus "-ssl" for https, plus
// "-<srv_name>" when srv_name is not empty.
std::string SrvServiceName(bool https, const std::string& srv_name);

// pkg/srv.GetCluster for one service: the "<name>=<scheme>://<host>:<port>"
// entries of "_<service>._tcp.<domain>", in record order; placeholders are
// numbered from *next_placeholder (advanced). Errors, as etcd words them:
// an advertise URL that does not resolve (the resolver's error); "error
// querying DNS SRV records for _<service> <cause>" when the lookup fails or
// no record gives an entry (cause: the lookup error, the last target that
// did not resolve, or "bootstrap at <url> from DNS for <service> has scheme
// mismatch with expected peer <advertise url>").
absl::StatusOr<std::vector<std::string>> GetSrvCluster(SrvResolver& resolver,
                                                       const std::string& scheme,
                                                       const std::string& service,
                                                       const std::string& name,
                                                       const std::string& domain,
                                                       const std::vector<Url>& advertise_peer_urls,
                                                       int* next_placeholder);

// The bootstrap settings found in DNS for `config` (config.discovery_srv
// must not be empty).
struct SrvBootstrap {
  // "n1=https://a.example.com:2380,0=https://b.example.com:2380,...": the
  // --initial-cluster this member bootstraps with (https entries first).
  std::string initial_cluster;
  // The entries one by one, as logged ("got bootstrap from DNS for
  // etcd-server").
  std::vector<std::string> members;
  // This member's peer URLs as the records give them. When they resolve to
  // the same addresses as config.initial_advertise_peer_urls (etcd's
  // advertise check compares resolved addresses), these replace the
  // advertised ones; otherwise the configured ones, which the server then
  // refuses as not matching --initial-cluster.
  std::vector<Url> advertise_peer_urls;
  // etcd's peer TLS ServerName: the discovery domain when an https member
  // was found and no --peer-trusted-ca-file is given (peers' certificates
  // are then checked against the system's roots for this name, not for the
  // URL's host); else empty.
  std::string peer_server_name;
};

// etcd's GetDNSClusterNames plus the checks of PeerURLsMapAndToken: both
// services (https first), logged through `log` with etcd's lines ("get
// cluster for etcd-server-ssl SRV", "get cluster for etcd-server SRV"; a
// service that fails is logged and, if the other gives entries, ignored).
// InvalidArgument "cannot find local etcd member \"<name>\" in SRV records"
// when no entry names this member; the lookup errors of GetSrvCluster (both
// joined by "; ") when neither service gives an entry.
absl::StatusOr<SrvBootstrap> DiscoverSrvCluster(SrvResolver& resolver, const EtcdConfig& config,
                                                const util::Logger& log);

}  // namespace cppetcd::cmd

#endif  // CPPETCD_CMD_DNS_DISCOVERY_H_
