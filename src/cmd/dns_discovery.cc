#include "cppetcd/cmd/dns_discovery.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace cppetcd::cmd {
namespace {

// Largest DNS message (RFC 1035 over TCP); res_nsearch retries over TCP
// when the UDP answer is truncated.
constexpr int kMaxAnswerBytes = 65535;

// "ip:port" as Go's TCPAddr.String prints it.
std::string JoinHostPort(const std::string& host, int port) {
  if (absl::StrContains(host, ':')) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

// libresolv with a private state per call (res_ninit reads
// /etc/resolv.conf each time, as a fresh process would).
class SystemResolver final : public SrvResolver {
 public:
  absl::StatusOr<std::vector<SrvRecord>> LookupSrv(const std::string& name) override {
    struct __res_state state;
    std::memset(&state, 0, sizeof(state));
    if (res_ninit(&state) != 0) {
      res_nclose(&state);
      return absl::UnavailableError(
          absl::StrCat("lookup ", name, ": cannot read the resolver configuration"));
    }
    const std::string server = ServerText(state);
    std::vector<unsigned char> answer(kMaxAnswerBytes);
    const int n = res_nsearch(&state, name.c_str(), ns_c_in, ns_t_srv, answer.data(),
                              static_cast<int>(answer.size()));
    const int herr = state.res_h_errno;
    res_nclose(&state);
    const std::string where = absl::StrCat("lookup ", name, server);
    if (n < 0) {
      // Go's wording: an unknown name and a name without SRV records are
      // both "no such host".
      if (herr == HOST_NOT_FOUND || herr == NO_DATA) {
        return absl::NotFoundError(absl::StrCat(where, ": no such host"));
      }
      if (herr == TRY_AGAIN) {
        return absl::UnavailableError(absl::StrCat(where, ": server misbehaving or no answer"));
      }
      return absl::UnavailableError(absl::StrCat(where, ": server misbehaving"));
    }
    ns_msg msg;
    if (ns_initparse(answer.data(), std::min(n, kMaxAnswerBytes), &msg) != 0) {
      return absl::UnavailableError(absl::StrCat(where, ": cannot unmarshal DNS message"));
    }
    std::vector<SrvRecord> out;
    const int count = ns_msg_count(msg, ns_s_an);
    for (int i = 0; i < count; ++i) {
      ns_rr rr;
      if (ns_parserr(&msg, ns_s_an, i, &rr) != 0) {
        return absl::UnavailableError(absl::StrCat(where, ": cannot unmarshal DNS message"));
      }
      if (ns_rr_type(rr) != ns_t_srv || ns_rr_class(rr) != ns_c_in) continue;  // CNAMEs
      const unsigned char* rdata = ns_rr_rdata(rr);
      if (ns_rr_rdlen(rr) < 7) {
        return absl::UnavailableError(absl::StrCat(where, ": cannot unmarshal DNS message"));
      }
      SrvRecord r;
      r.priority = static_cast<uint16_t>(ns_get16(rdata));
      r.weight = static_cast<uint16_t>(ns_get16(rdata + 2));
      r.port = static_cast<uint16_t>(ns_get16(rdata + 4));
      char target[NS_MAXDNAME];
      if (dn_expand(ns_msg_base(msg), ns_msg_end(msg), rdata + 6, target, sizeof(target)) < 0) {
        return absl::UnavailableError(absl::StrCat(where, ": cannot unmarshal DNS message"));
      }
      r.target = target;
      out.push_back(std::move(r));
    }
    if (out.empty()) return absl::NotFoundError(absl::StrCat(where, ": no such host"));
    // RFC 2782 order: priority, then (instead of a weighted random draw)
    // the heavier first; stable, so equal records keep the answer's order.
    std::stable_sort(out.begin(), out.end(), [](const SrvRecord& a, const SrvRecord& b) {
      if (a.priority != b.priority) return a.priority < b.priority;
      return a.weight > b.weight;
    });
    return out;
  }

  absl::StatusOr<std::string> ResolveTcpAddr(const std::string& host, int port) override {
    if (port < 0 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("address ", host, ": missing port in address"));
    }
    addrinfo hints;
    std::memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
    if (rc != 0) {
      std::string why = rc == EAI_NONAME || rc == EAI_NODATA ? "no such host" : gai_strerror(rc);
      return absl::NotFoundError(absl::StrCat("lookup ", host, ": ", why));
    }
    const addrinfo* pick = nullptr;
    for (const addrinfo* a = res; a != nullptr; a = a->ai_next) {
      if (a->ai_family == AF_INET) {
        pick = a;
        break;
      }
      if (pick == nullptr && a->ai_family == AF_INET6) pick = a;
    }
    std::string ip;
    if (pick != nullptr) {
      char text[INET6_ADDRSTRLEN] = {0};
      const void* src =
          pick->ai_family == AF_INET
              ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(pick->ai_addr)->sin_addr)
              : static_cast<const void*>(
                    &reinterpret_cast<const sockaddr_in6*>(pick->ai_addr)->sin6_addr);
      if (inet_ntop(pick->ai_family, src, text, sizeof(text)) != nullptr) ip = text;
    }
    freeaddrinfo(res);
    if (ip.empty()) return absl::NotFoundError(absl::StrCat("lookup ", host, ": no such host"));
    return JoinHostPort(ip, port);
  }

 private:
  // " on 127.0.0.1:53", the first name server as Go's error names it.
  static std::string ServerText(const struct __res_state& state) {
    if (state.nscount <= 0 || state.nsaddr_list[0].sin_family != AF_INET) return "";
    char text[INET_ADDRSTRLEN] = {0};
    if (inet_ntop(AF_INET, &state.nsaddr_list[0].sin_addr, text, sizeof(text)) == nullptr) {
      return "";
    }
    return absl::StrCat(" on ", text, ":", ntohs(state.nsaddr_list[0].sin_port));
  }
};

std::vector<std::string> UrlStrings(const std::vector<Url>& urls) {
  std::vector<std::string> out;
  for (const Url& u : urls) out.push_back(u.ToString());
  return out;
}

// "scheme://ip:port" for each URL, sorted: etcd's netutil.URLStringsEqual
// compares the advertised URLs with the cluster's this way.
absl::StatusOr<std::vector<std::string>> ResolvedUrls(SrvResolver& resolver,
                                                      const std::vector<Url>& urls) {
  std::vector<std::string> out;
  for (const Url& u : urls) {
    absl::StatusOr<std::string> addr = resolver.ResolveTcpAddr(u.host, u.port);
    if (!addr.ok()) return addr.status();
    out.push_back(absl::StrCat(u.scheme, "://", *addr));
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::unique_ptr<SrvResolver> NewSystemResolver() { return std::make_unique<SystemResolver>(); }

std::string SrvServiceName(bool https, const std::string& srv_name) {
  std::string service = https ? "etcd-server-ssl" : "etcd-server";
  if (!srv_name.empty()) absl::StrAppend(&service, "-", srv_name);
  return service;
}

absl::StatusOr<std::vector<std::string>> GetSrvCluster(SrvResolver& resolver,
                                                       const std::string& scheme,
                                                       const std::string& service,
                                                       const std::string& name,
                                                       const std::string& domain,
                                                       const std::vector<Url>& advertise_peer_urls,
                                                       int* next_placeholder) {
  // Resolved address -> this member's advertised URL.
  std::map<std::string, const Url*> self;
  for (const Url& u : advertise_peer_urls) {
    absl::StatusOr<std::string> addr = resolver.ResolveTcpAddr(u.host, u.port);
    if (!addr.ok()) return addr.status();
    self.emplace(*addr, &u);
  }
  const std::string query = absl::StrCat("_", service, "._tcp.", domain);
  auto failed = [&](const std::string& cause) {
    return absl::Status(absl::StatusCode::kNotFound,
                        absl::StrCat("error querying DNS SRV records for _", service, " ", cause));
  };
  absl::StatusOr<std::vector<SrvRecord>> records = resolver.LookupSrv(query);
  if (!records.ok()) return failed(std::string(records.status().message()));
  std::vector<std::string> out;
  std::optional<std::string> cause;  // the last record skipped, as etcd keeps it
  for (const SrvRecord& r : *records) {
    std::string host(absl::StripSuffix(r.target, "."));
    absl::StatusOr<std::string> addr = resolver.ResolveTcpAddr(host, r.port);
    if (!addr.ok()) {
      cause = std::string(addr.status().message());
      continue;
    }
    const std::string url = absl::StrCat(scheme, "://", JoinHostPort(host, r.port));
    auto it = self.find(*addr);
    if (it != self.end() && it->second->scheme != scheme) {
      cause = absl::StrCat("bootstrap at ", url, " from DNS for ", service,
                           " has scheme mismatch with expected peer ", it->second->ToString());
      continue;
    }
    std::string member = it != self.end() ? name : std::to_string((*next_placeholder)++);
    out.push_back(absl::StrCat(member, "=", url));
  }
  if (out.empty() && cause.has_value()) return failed(*cause);
  return out;
}

absl::StatusOr<SrvBootstrap> DiscoverSrvCluster(SrvResolver& resolver, const EtcdConfig& config,
                                                const util::Logger& log) {
  SrvBootstrap out;
  std::vector<std::string> errors;
  int placeholder = 0;
  const std::vector<std::string> advertised = UrlStrings(config.initial_advertise_peer_urls);
  for (const bool https : {true, false}) {
    const std::string service = SrvServiceName(https, config.discovery_srv_name);
    const std::string scheme = https ? "https" : "http";
    absl::StatusOr<std::vector<std::string>> found =
        GetSrvCluster(resolver, scheme, service, config.name, config.discovery_srv,
                      config.initial_advertise_peer_urls, &placeholder);
    if (found.ok()) out.members.insert(out.members.end(), found->begin(), found->end());
    // etcd logs the entries found so far (https, then both).
    const std::vector<std::string>& entries = out.members;
    std::string error = found.ok() ? "" : std::string(found.status().message());
    const char* msg =
        https ? "get cluster for etcd-server-ssl SRV" : "get cluster for etcd-server SRV";
    if (found.ok()) {
      log.Info(msg, {{"service-scheme", scheme},
                     {"service-name", service},
                     {"server-name", config.name},
                     {"discovery-srv", config.discovery_srv},
                     {"advertise-peer-urls", advertised},
                     {"found-cluster", entries}});
    } else {
      log.Info(msg, {{"service-scheme", scheme},
                     {"service-name", service},
                     {"server-name", config.name},
                     {"discovery-srv", config.discovery_srv},
                     {"advertise-peer-urls", advertised},
                     {"found-cluster", entries},
                     {"error", error}});
    }
    if (!found.ok()) errors.push_back(error);
  }
  if (out.members.empty() && !errors.empty()) {
    absl::Status st = absl::NotFoundError(absl::StrJoin(errors, "; "));
    log.Warn("failed to resolve during SRV discovery", {{"error", std::string(st.message())}});
    return st;
  }
  for (const std::string& m : out.members) {
    log.Info("got bootstrap from DNS for etcd-server", {{"node", m}});
  }
  out.initial_cluster = absl::StrJoin(out.members, ",");
  if (absl::StrContains(out.initial_cluster, "https://") && config.peer_trusted_ca_file.empty()) {
    out.peer_server_name = config.discovery_srv;
  }
  absl::StatusOr<InitialCluster> cluster =
      out.members.empty() ? InitialCluster{} : ParseInitialCluster(out.initial_cluster);
  if (!cluster.ok()) return cluster.status();
  auto self = cluster->find(config.name);
  if (self == cluster->end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot find local etcd member \"", config.name, "\" in SRV records"));
  }
  out.advertise_peer_urls = config.initial_advertise_peer_urls;
  absl::StatusOr<std::vector<std::string>> want = ResolvedUrls(resolver, self->second);
  absl::StatusOr<std::vector<std::string>> have =
      ResolvedUrls(resolver, config.initial_advertise_peer_urls);
  if (want.ok() && have.ok() && *want == *have) out.advertise_peer_urls = self->second;
  return out;
}

}  // namespace cppetcd::cmd
