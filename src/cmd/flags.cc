#include "cppetcd/cmd/flags.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <functional>
#include <optional>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cppetcd/util/error.h"

#ifndef CPPETCD_VERSION
#define CPPETCD_VERSION "0.0.0"
#endif
#ifndef CPPETCD_ETCD_COMPAT_VERSION
#define CPPETCD_ETCD_COMPAT_VERSION "3.4.23"
#endif
#ifndef CPPETCD_GIT_SHA
#define CPPETCD_GIT_SHA "Not provided"
#endif

namespace cppetcd::cmd {
namespace {

using Setter = std::function<absl::Status(EtcdConfig*, std::string_view)>;

// Debian's Abseil has its own string_view type (ABSL_OPTION_USE_STD_STRING_VIEW
// is 0), so std::string_view is converted at the calls into Abseil.
absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }
std::string_view SV(absl::string_view s) { return std::string_view(s.data(), s.size()); }

struct FlagDef {
  std::string name;
  bool is_bool = false;
  Setter set;
};

absl::Status ParseBool(std::string_view v, bool* out) {
  // Go's strconv.ParseBool.
  static const std::set<std::string_view> kTrue = {"1", "t", "T", "true", "TRUE", "True"};
  static const std::set<std::string_view> kFalse = {"0", "f", "F", "false", "FALSE", "False"};
  if (kTrue.count(v)) {
    *out = true;
    return absl::OkStatus();
  }
  if (kFalse.count(v)) {
    *out = false;
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError("parse error");
}

template <class T>
absl::Status ParseUnsigned(std::string_view v, T* out) {
  uint64_t x = 0;
  if (v.empty() || v[0] == '-' || v[0] == '+' || !absl::SimpleAtoi(AV(v), &x) ||
      x > std::numeric_limits<T>::max()) {
    return absl::InvalidArgumentError("parse error");
  }
  *out = static_cast<T>(x);
  return absl::OkStatus();
}

absl::Status ParseSigned(std::string_view v, int64_t* out) {
  if (v.empty() || !absl::SimpleAtoi(AV(v), out)) return absl::InvalidArgumentError("parse error");
  return absl::OkStatus();
}

std::vector<std::string> SplitList(std::string_view v) {
  std::vector<std::string> out;
  for (absl::string_view p : absl::StrSplit(AV(v), ',', absl::SkipEmpty())) {
    out.emplace_back(absl::StripAsciiWhitespace(p));
  }
  return out;
}

Setter Str(std::string EtcdConfig::*field) {
  return [field](EtcdConfig* c, std::string_view v) {
    c->*field = std::string(v);
    return absl::OkStatus();
  };
}
Setter Bool(bool EtcdConfig::*field) {
  return [field](EtcdConfig* c, std::string_view v) { return ParseBool(v, &(c->*field)); };
}
Setter U32(uint32_t EtcdConfig::*field) {
  return [field](EtcdConfig* c, std::string_view v) { return ParseUnsigned(v, &(c->*field)); };
}
Setter U64(uint64_t EtcdConfig::*field) {
  return [field](EtcdConfig* c, std::string_view v) { return ParseUnsigned(v, &(c->*field)); };
}
Setter I64(int64_t EtcdConfig::*field) {
  return [field](EtcdConfig* c, std::string_view v) { return ParseSigned(v, &(c->*field)); };
}
Setter Dur(std::chrono::milliseconds EtcdConfig::*field) {
  return [field](EtcdConfig* c, std::string_view v) -> absl::Status {
    auto d = ParseGoDuration(v);
    if (!d.ok()) return absl::InvalidArgumentError("parse error");
    c->*field = *d;
    return absl::OkStatus();
  };
}
Setter Urls(std::vector<Url> EtcdConfig::*field) {
  return [field](EtcdConfig* c, std::string_view v) -> absl::Status {
    auto urls = ParseUrls(v);
    if (!urls.ok()) return urls.status();
    c->*field = *std::move(urls);
    return absl::OkStatus();
  };
}
Setter List(std::vector<std::string> EtcdConfig::*field) {
  return [field](EtcdConfig* c, std::string_view v) {
    c->*field = SplitList(v);
    return absl::OkStatus();
  };
}
Setter Ignored() {
  return [](EtcdConfig*, std::string_view) { return absl::OkStatus(); };
}

std::string EnvName(std::string_view flag);

// A flag for a feature cppetcd does not have (v2 proxy, discovery service...):
// accepted only with a value that leaves the feature off, so that unit files
// spelling out etcd's defaults keep working; any other value is refused at
// start-up, naming the flag, its ETCD_* variable and its config file key.
// `off` says whether a value leaves the feature off, or fails with etcd's
// own parse error for a malformed value.
Setter Unsupported(std::string flag, std::function<absl::StatusOr<bool>(std::string_view)> off,
                   std::string why, std::string accepted) {
  return [flag = std::move(flag), off = std::move(off), why = std::move(why),
          accepted = std::move(accepted)](EtcdConfig*, std::string_view v) -> absl::Status {
    absl::StatusOr<bool> is_off = off(v);
    if (!is_off.ok()) return is_off.status();
    if (*is_off) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(
        why, "; only ", accepted, " is accepted (flag --", flag, ", environment variable ",
        EnvName(flag), ", config file key \"", flag, "\")"));
  };
}
// Off when empty.
absl::StatusOr<bool> IsEmpty(std::string_view v) { return v.empty(); }
// Off when false (Go's boolean syntax).
absl::StatusOr<bool> IsFalse(std::string_view v) {
  bool b = false;
  if (absl::Status s = ParseBool(v, &b); !s.ok()) return s;
  return !b;
}
// Off when the unsigned integer equals `def`.
std::function<absl::StatusOr<bool>(std::string_view)> IsUint(uint64_t def) {
  return [def](std::string_view v) -> absl::StatusOr<bool> {
    uint64_t x = 0;
    if (absl::Status s = ParseUnsigned(v, &x); !s.ok()) return s;
    return x == def;
  };
}
// One of etcd's `valids` (else etcd's error "invalid value"); off when `off`.
std::function<absl::StatusOr<bool>(std::string_view)> IsChoice(std::set<std::string> valids,
                                                              std::string off) {
  return [valids = std::move(valids), off = std::move(off)](std::string_view v)
             -> absl::StatusOr<bool> {
    if (!valids.count(std::string(v))) return absl::InvalidArgumentError("invalid value");
    return v == off;
  };
}

constexpr char kNoProxy[] = "cppetcd has no v2 proxy mode";

// The flags etcd 3.4 defines. Those of features cppetcd does not have (v2
// API, proxy, discovery) are accepted only with values
// that leave the feature off; see Unsupported and docs/operations.md.
const std::vector<FlagDef>& Flags() {
  static const std::vector<FlagDef>* flags = new std::vector<FlagDef>{
      {"config-file", false, Str(&EtcdConfig::config_file)},
      {"name", false, Str(&EtcdConfig::name)},
      {"data-dir", false, Str(&EtcdConfig::data_dir)},
      {"wal-dir", false, Str(&EtcdConfig::wal_dir)},
      {"snapshot-count", false, U64(&EtcdConfig::snapshot_count)},
      {"max-snapshots", false, U32(&EtcdConfig::max_snapshots)},
      {"max-wals", false, U32(&EtcdConfig::max_wals)},
      {"heartbeat-interval", false, U32(&EtcdConfig::heartbeat_interval_ms)},
      {"election-timeout", false, U32(&EtcdConfig::election_timeout_ms)},
      {"initial-election-tick-advance", true, Bool(&EtcdConfig::initial_election_tick_advance)},
      {"quota-backend-bytes", false, I64(&EtcdConfig::quota_backend_bytes)},
      {"backend-batch-interval", false, Dur(&EtcdConfig::backend_batch_interval)},
      {"backend-batch-limit", false, I64(&EtcdConfig::backend_batch_limit)},
      {"max-txn-ops", false, U32(&EtcdConfig::max_txn_ops)},
      {"max-request-bytes", false, U32(&EtcdConfig::max_request_bytes)},
      {"grpc-keepalive-min-time", false, Dur(&EtcdConfig::grpc_keepalive_min_time)},
      {"grpc-keepalive-interval", false, Dur(&EtcdConfig::grpc_keepalive_interval)},
      {"grpc-keepalive-timeout", false, Dur(&EtcdConfig::grpc_keepalive_timeout)},
      {"max-concurrent-streams", false, U32(&EtcdConfig::max_concurrent_streams)},
      {"listen-peer-urls", false, Urls(&EtcdConfig::listen_peer_urls)},
      {"listen-client-urls", false, Urls(&EtcdConfig::listen_client_urls)},
      {"listen-client-http-urls", false, Urls(&EtcdConfig::listen_client_http_urls)},
      {"listen-metrics-urls", false, Urls(&EtcdConfig::listen_metrics_urls)},
      {"cors", false, List(&EtcdConfig::cors)},
      {"host-whitelist", false, List(&EtcdConfig::host_whitelist)},
      {"initial-advertise-peer-urls", false, Urls(&EtcdConfig::initial_advertise_peer_urls)},
      {"advertise-client-urls", false, Urls(&EtcdConfig::advertise_client_urls)},
      {"initial-cluster", false,
       [](EtcdConfig* c, std::string_view v) {
         c->initial_cluster = std::string(v);
         c->initial_cluster_given = true;
         return absl::OkStatus();
       }},
      {"initial-cluster-token", false, Str(&EtcdConfig::initial_cluster_token)},
      {"initial-cluster-state", false, Str(&EtcdConfig::initial_cluster_state)},
      {"strict-reconfig-check", true, Bool(&EtcdConfig::strict_reconfig_check)},
      {"enable-v2", true,
       Unsupported("enable-v2", IsFalse, "cppetcd has no v2 API (etcd 3.4's default is false)",
                   "false")},
      {"pre-vote", true, Bool(&EtcdConfig::pre_vote)},
      {"discovery", false,
       Unsupported("discovery", IsEmpty,
                   "discovery-service bootstrap is not implemented: list the members in "
                   "--initial-cluster",
                   "an empty value")},
      {"discovery-fallback", false,
       Unsupported("discovery-fallback", IsChoice({"exit", "proxy"}, "proxy"),
                   "discovery is not implemented", "etcd's default \"proxy\"")},
      {"discovery-proxy", false,
       Unsupported("discovery-proxy", IsEmpty, "discovery is not implemented", "an empty value")},
      {"discovery-srv", false, Str(&EtcdConfig::discovery_srv)},
      {"discovery-srv-name", false, Str(&EtcdConfig::discovery_srv_name)},
      {"proxy", false,
       Unsupported("proxy", IsChoice({"off", "readonly", "on"}, "off"), kNoProxy,
                   "etcd's default \"off\"")},
      {"proxy-failure-wait", false,
       Unsupported("proxy-failure-wait", IsUint(5000), kNoProxy, "etcd's default 5000")},
      {"proxy-refresh-interval", false,
       Unsupported("proxy-refresh-interval", IsUint(30000), kNoProxy, "etcd's default 30000")},
      {"proxy-dial-timeout", false,
       Unsupported("proxy-dial-timeout", IsUint(1000), kNoProxy, "etcd's default 1000")},
      {"proxy-write-timeout", false,
       Unsupported("proxy-write-timeout", IsUint(5000), kNoProxy, "etcd's default 5000")},
      {"proxy-read-timeout", false,
       Unsupported("proxy-read-timeout", IsUint(0), kNoProxy, "etcd's default 0")},
      {"cert-file", false, Str(&EtcdConfig::cert_file)},
      {"key-file", false, Str(&EtcdConfig::key_file)},
      {"client-cert-auth", true, Bool(&EtcdConfig::client_cert_auth)},
      {"client-crl-file", false, Str(&EtcdConfig::client_crl_file)},
      {"client-cert-allowed-hostname", false, Str(&EtcdConfig::client_cert_allowed_hostname)},
      {"trusted-ca-file", false, Str(&EtcdConfig::trusted_ca_file)},
      {"auto-tls", true, Bool(&EtcdConfig::auto_tls)},
      {"peer-cert-file", false, Str(&EtcdConfig::peer_cert_file)},
      {"peer-key-file", false, Str(&EtcdConfig::peer_key_file)},
      {"peer-client-cert-auth", true, Bool(&EtcdConfig::peer_client_cert_auth)},
      {"peer-trusted-ca-file", false, Str(&EtcdConfig::peer_trusted_ca_file)},
      {"peer-auto-tls", true, Bool(&EtcdConfig::peer_auto_tls)},
      {"peer-crl-file", false, Str(&EtcdConfig::peer_crl_file)},
      {"peer-cert-allowed-cn", false, Str(&EtcdConfig::peer_cert_allowed_cn)},
      {"peer-cert-allowed-hostname", false, Str(&EtcdConfig::peer_cert_allowed_hostname)},
      {"cipher-suites", false, List(&EtcdConfig::cipher_suites)},
      {"experimental-peer-skip-client-san-verification", true,
       Bool(&EtcdConfig::experimental_peer_skip_client_san_verification)},
      {"logger", false,
       Unsupported("logger", IsChoice({"capnslog", "zap"}, "zap"),
                   "cppetcd logs only in etcd's zap format (JSON lines)", "\"zap\"")},
      {"log-output", false, List(&EtcdConfig::log_outputs)},
      {"log-outputs", false, List(&EtcdConfig::log_outputs)},
      {"debug", true, Bool(&EtcdConfig::debug)},
      {"log-level", false, Str(&EtcdConfig::log_level)},
      {"log-package-levels", false,
       Unsupported("log-package-levels", IsEmpty,
                   "cppetcd logs only in etcd's zap format (--logger=zap), with which etcd "
                   "ignores package log levels; use --log-level",
                   "an empty value")},
      {"version", true, Ignored()},
      {"help", true, Ignored()},
      {"h", true, Ignored()},
      {"auto-compaction-retention", false, Str(&EtcdConfig::auto_compaction_retention)},
      {"auto-compaction-mode", false, Str(&EtcdConfig::auto_compaction_mode)},
      {"enable-pprof", true,
       Unsupported("enable-pprof", IsFalse,
                   "cppetcd has no Go runtime profiler to serve at /debug/pprof (profile it with "
                   "perf; see docs/operations.md)",
                   "false")},
      {"metrics", false, Str(&EtcdConfig::metrics)},
      {"auth-token", false, Str(&EtcdConfig::auth_token)},
      {"bcrypt-cost", false, U32(&EtcdConfig::bcrypt_cost)},
      {"auth-token-ttl", false, U32(&EtcdConfig::auth_token_ttl_seconds)},
      {"enable-grpc-gateway", true, Bool(&EtcdConfig::enable_grpc_gateway)},
      {"experimental-initial-corrupt-check", true,
       Bool(&EtcdConfig::experimental_initial_corrupt_check)},
      {"experimental-corrupt-check-time", false, Dur(&EtcdConfig::experimental_corrupt_check_time)},
      {"experimental-enable-v2v3", false,
       Unsupported("experimental-enable-v2v3", IsEmpty, "cppetcd has no v2 API",
                   "an empty value")},
      {"experimental-snapshot-catchup-entries", false,
       U64(&EtcdConfig::experimental_snapshot_catchup_entries)},
      {"experimental-backend-bbolt-freelist-type", false,
       [](EtcdConfig* c, std::string_view v) -> absl::Status {
         if (v != "array" && v != "map") {
           return absl::InvalidArgumentError(
               "bbolt's freelist type is \"array\" or \"map\" (the backend is LMDB, where "
               "neither applies; see docs/operations.md)");
         }
         c->experimental_backend_bbolt_freelist_type = std::string(v);
         return absl::OkStatus();
       }},
      {"experimental-enable-lease-checkpoint", true,
       Bool(&EtcdConfig::experimental_enable_lease_checkpoint)},
      {"experimental-enable-lease-checkpoint-persist", true,
       Bool(&EtcdConfig::experimental_enable_lease_checkpoint_persist)},
      {"experimental-compaction-batch-limit", false,
       I64(&EtcdConfig::experimental_compaction_batch_limit)},
      {"experimental-watch-progress-notify-interval", false,
       Dur(&EtcdConfig::experimental_watch_progress_notify_interval)},
      {"experimental-warning-apply-duration", false,
       Dur(&EtcdConfig::experimental_warning_apply_duration)},
      {"unsafe-no-fsync", true, Bool(&EtcdConfig::unsafe_no_fsync)},
      {"force-new-cluster", true, Bool(&EtcdConfig::force_new_cluster)},
  };
  return *flags;
}

const FlagDef* FindFlag(std::string_view name) {
  for (const FlagDef& f : Flags()) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

std::string EnvName(std::string_view flag) {
  std::string out = "ETCD_";
  for (char c : flag) out.push_back(c == '-' ? '_' : static_cast<char>(std::toupper(c)));
  return out;
}

absl::Status BadValue(std::string_view value, std::string_view flag, const absl::Status& why) {
  std::string reason(why.message());
  return absl::InvalidArgumentError(
      absl::StrCat("invalid value \"", AV(value), "\" for flag -", AV(flag), ": ", reason));
}

}  // namespace

std::string Url::ToString() const {
  std::string h = absl::StrContains(host, ':') ? absl::StrCat("[", host, "]") : host;
  if (port < 0) return absl::StrCat(scheme, "://", h);
  return absl::StrCat(scheme, "://", h, ":", port);
}

std::string Url::HostPort() const {
  std::string h = absl::StrContains(host, ':') ? absl::StrCat("[", host, "]") : host;
  return absl::StrCat(h, ":", port);
}

absl::StatusOr<Url> ParseUrl(std::string_view text) {
  text = SV(absl::StripAsciiWhitespace(AV(text)));
  size_t sep = text.find("://");
  if (sep == std::string_view::npos || sep == 0) {
    return absl::InvalidArgumentError(absl::StrCat("URL scheme must be http, https, unix, or unixs: ", AV(text)));
  }
  Url u;
  u.scheme = absl::AsciiStrToLower(AV(text.substr(0, sep)));
  if (u.scheme != "http" && u.scheme != "https" && u.scheme != "unix" && u.scheme != "unixs") {
    return absl::InvalidArgumentError(absl::StrCat("URL scheme must be http, https, unix, or unixs: ", AV(text)));
  }
  std::string_view rest = text.substr(sep + 3);
  if (rest.empty()) return absl::InvalidArgumentError(absl::StrCat("URL address does not have the form \"host:port\": ", AV(text)));
  size_t slash = rest.find('/');
  if (slash != std::string_view::npos) {
    if (rest.substr(slash) != "/") {
      return absl::InvalidArgumentError(absl::StrCat("URL must not contain a path: ", AV(text)));
    }
    rest = rest.substr(0, slash);
    if (rest.empty()) {  // "unix:///": nothing but the root path
      return absl::InvalidArgumentError(absl::StrCat("URL address does not have the form \"host:port\": ", AV(text)));
    }
  }
  std::string_view port_text;
  if (!rest.empty() && rest[0] == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return absl::InvalidArgumentError(absl::StrCat("bad IPv6 address in URL: ", AV(text)));
    u.host = std::string(rest.substr(1, close - 1));
    // Go's net.SplitHostPort: no second '[' inside the brackets.
    if (absl::StrContains(u.host, '[')) {
      return absl::InvalidArgumentError(
          absl::StrCat("address ", AV(rest), ": unexpected '[' in address"));
    }
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return absl::InvalidArgumentError(absl::StrCat("bad URL: ", AV(text)));
      port_text = after.substr(1);
    }
  } else {
    size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) {
      u.host = std::string(rest);
    } else {
      u.host = std::string(rest.substr(0, colon));
      port_text = rest.substr(colon + 1);
    }
    // Go's net.SplitHostPort (etcd): an IPv6 host needs brackets.
    const char* why = absl::StrContains(u.host, ':')   ? "too many colons in address"
                      : absl::StrContains(u.host, '[') ? "unexpected '[' in address"
                      : absl::StrContains(u.host, ']') ? "unexpected ']' in address"
                                                       : nullptr;
    if (why != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("address ", AV(rest), ": ", why));
    }
  }
  // Go's url.Parse: no control characters or spaces in a host.
  for (unsigned char c : u.host) {
    if (c <= 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat("invalid character in host name: ", AV(text)));
    }
  }
  if (!port_text.empty()) {
    int p = 0;
    if (!absl::SimpleAtoi(AV(port_text), &p) || p < 0 || p > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("invalid port in URL: ", AV(text)));
    }
    u.port = p;
  }
  // Go's net.SplitHostPort (etcd's types.NewURLs): a port must be present;
  // port 0 is valid and binds an ephemeral port.
  if (((u.scheme == "http" || u.scheme == "https") && u.port < 0) || (u.host.empty() && u.port < 0)) {
    return absl::InvalidArgumentError(absl::StrCat("URL address does not have the form \"host:port\": ", AV(text)));
  }
  return u;
}

absl::StatusOr<std::vector<Url>> ParseUrls(std::string_view text) {
  std::vector<Url> out;
  for (const std::string& part : SplitList(text)) {
    auto u = ParseUrl(part);
    if (!u.ok()) return u.status();
    if (std::find(out.begin(), out.end(), *u) == out.end()) out.push_back(*std::move(u));
  }
  if (out.empty()) return absl::InvalidArgumentError("no valid URLs given");
  return out;
}

absl::StatusOr<InitialCluster> ParseInitialCluster(std::string_view text) {
  InitialCluster out;
  for (const std::string& part : SplitList(text)) {
    size_t eq = part.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid --initial-cluster entry \"", part, "\": expected name=url"));
    }
    auto u = ParseUrl(std::string_view(part).substr(eq + 1));
    if (!u.ok()) return u.status();
    out[part.substr(0, eq)].push_back(*std::move(u));
  }
  if (out.empty()) return absl::InvalidArgumentError("--initial-cluster is empty");
  return out;
}

// The longest Go time.Duration (2^63 - 1 ns) in milliseconds.
constexpr double kMaxGoDurationMs = 9223372036854.775807;

absl::StatusOr<std::chrono::milliseconds> ParseGoDuration(std::string_view text) {
  std::string_view s = SV(absl::StripAsciiWhitespace(AV(text)));
  if (s.empty()) return absl::InvalidArgumentError("empty duration");
  bool neg = false;
  if (s[0] == '-' || s[0] == '+') {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return std::chrono::milliseconds(0);
  double total_ms = 0;
  bool any = false;
  while (!s.empty()) {
    size_t i = 0;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    if (i == 0) return absl::InvalidArgumentError(absl::StrCat("invalid duration \"", AV(text), "\""));
    double num = 0;
    if (!absl::SimpleAtod(AV(s.substr(0, i)), &num)) {
      return absl::InvalidArgumentError(absl::StrCat("invalid duration \"", AV(text), "\""));
    }
    s.remove_prefix(i);
    size_t j = 0;
    while (j < s.size() && !std::isdigit(static_cast<unsigned char>(s[j])) && s[j] != '.') ++j;
    std::string_view unit = s.substr(0, j);
    s.remove_prefix(j);
    double scale;
    if (unit == "ns") scale = 1e-6;
    else if (unit == "us" || unit == "\xC2\xB5s") scale = 1e-3;
    else if (unit == "ms") scale = 1;
    else if (unit == "s") scale = 1000;
    else if (unit == "m") scale = 60'000;
    else if (unit == "h") scale = 3'600'000;
    else return absl::InvalidArgumentError(absl::StrCat("missing or unknown unit in duration \"", AV(text), "\""));
    total_ms += num * scale;
    any = true;
  }
  if (!any) return absl::InvalidArgumentError(absl::StrCat("invalid duration \"", AV(text), "\""));
  // Go's time.Duration is int64 nanoseconds: about 2562047 h at most; a
  // longer duration is invalid there too (and would overflow here).
  if (!(total_ms <= kMaxGoDurationMs)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid duration \"", AV(text), "\""));
  }
  auto ms = std::chrono::milliseconds(static_cast<int64_t>(std::llround(total_ms)));
  return neg ? -ms : ms;
}

absl::StatusOr<std::chrono::milliseconds> ParsePeriodicRetention(std::string_view text) {
  std::string_view s = SV(absl::StripAsciiWhitespace(AV(text)));
  if (s.empty()) return std::chrono::milliseconds(0);
  double hours = 0;
  if (absl::SimpleAtod(AV(s), &hours)) {
    if (hours < 0) return absl::InvalidArgumentError("negative auto-compaction-retention");
    if (!(hours * 3'600'000 <= kMaxGoDurationMs)) {  // NaN, infinity, past Go's durations
      return absl::InvalidArgumentError(
          absl::StrCat("invalid auto-compaction-retention \"", AV(text), "\""));
    }
    return std::chrono::milliseconds(static_cast<int64_t>(std::llround(hours * 3'600'000)));
  }
  auto d = ParseGoDuration(s);
  if (!d.ok() || d->count() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid auto-compaction-retention \"", AV(text), "\""));
  }
  return *d;
}

absl::Status Finalize(EtcdConfig* c) {
  if (c->listen_peer_urls.empty()) c->listen_peer_urls = {Url{"http", "localhost", 2380}};
  if (c->listen_client_urls.empty()) c->listen_client_urls = {Url{"http", "localhost", 2379}};
  // etcd 3.5 marks an address in both lists HTTP-only; a URL listed twice
  // is refused here instead, so each list means what it says.
  for (const Url& h : c->listen_client_http_urls) {
    for (const Url& g : c->listen_client_urls) {
      if (h.host == g.host && h.port == g.port && h.port != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--listen-client-http-urls ", h.ToString(), " is also in --listen-client-urls (",
            g.ToString(), "): with --listen-client-http-urls the client URLs serve gRPC only"));
      }
    }
  }
  if (c->initial_advertise_peer_urls.empty()) {
    c->initial_advertise_peer_urls = {Url{"http", "localhost", 2380}};
  }
  if (c->advertise_client_urls.empty()) c->advertise_client_urls = {Url{"http", "localhost", 2379}};
  if (c->data_dir.empty()) c->data_dir = c->name + ".etcd";
  // etcd 3.4 (etcdmain/config.go): a DNS discovery flag drops the default
  // initial cluster; one given explicitly with --discovery-srv conflicts.
  const bool dns_discovery = !c->discovery_srv.empty() || !c->discovery_srv_name.empty();
  if (dns_discovery && !c->initial_cluster_given) c->initial_cluster.clear();
  if (!c->discovery_srv.empty() && !c->initial_cluster.empty()) {
    return absl::InvalidArgumentError(
        "multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", "
        "\"discovery\" or \"discovery-srv\"");
  }
  if (c->initial_cluster.empty() && !dns_discovery) {
    std::vector<std::string> parts;
    for (const Url& u : c->initial_advertise_peer_urls) {
      parts.push_back(absl::StrCat(c->name, "=", u.ToString()));
    }
    c->initial_cluster = absl::StrJoin(parts, ",");
  }
  if (c->initial_cluster_state != "new" && c->initial_cluster_state != "existing") {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid value \"", c->initial_cluster_state,
        "\" for flag -initial-cluster-state: valid values are \"new\", \"existing\""));
  }
  if (c->heartbeat_interval_ms == 0) {
    return absl::InvalidArgumentError("--heartbeat-interval must be > 0");
  }
  if (5ull * c->heartbeat_interval_ms > c->election_timeout_ms) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--election-timeout[", c->election_timeout_ms,
        "ms] should be at least as 5 times as --heartbeat-interval[", c->heartbeat_interval_ms,
        "ms]"));
  }
  if (c->election_timeout_ms > 50000) {
    return absl::InvalidArgumentError(absl::StrCat("--election-timeout[", c->election_timeout_ms,
                                                   "ms] is too long, and should be set less than 50000ms"));
  }
  if (c->auto_compaction_mode != "periodic" && c->auto_compaction_mode != "revision") {
    return absl::InvalidArgumentError(absl::StrCat("unknown auto-compaction-mode \"",
                                                   c->auto_compaction_mode, "\""));
  }
  if (c->auto_compaction_mode == "periodic") {
    auto r = ParsePeriodicRetention(c->auto_compaction_retention);
    if (!r.ok()) return r.status();
  } else {
    int64_t revs = 0;
    if (!absl::SimpleAtoi(c->auto_compaction_retention, &revs) || revs < 0) {
      return absl::InvalidArgumentError(absl::StrCat("invalid auto-compaction-retention \"",
                                                     c->auto_compaction_retention,
                                                     "\" for revision mode"));
    }
  }
  if (!c->initial_cluster.empty()) {
    auto cluster = ParseInitialCluster(c->initial_cluster);
    if (!cluster.ok()) return cluster.status();
  }
  if (c->quota_backend_bytes < 0) {
    return absl::InvalidArgumentError("--quota-backend-bytes must not be negative");
  }
  // etcd embed.Config.Validate.
  if (c->experimental_enable_lease_checkpoint_persist && !c->experimental_enable_lease_checkpoint) {
    return absl::InvalidArgumentError(
        "setting experimental-enable-lease-checkpoint-persist requires "
        "experimental-enable-lease-checkpoint");
  }
  if (c->debug) c->log_level = "debug";
  if (c->log_level != "debug" && c->log_level != "info" && c->log_level != "warn" &&
      c->log_level != "error" && c->log_level != "dpanic" && c->log_level != "panic" &&
      c->log_level != "fatal") {
    return absl::InvalidArgumentError(absl::StrCat("unknown log level \"", c->log_level, "\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<ParseResult> ParseCommandLine(const std::vector<std::string>& args,
                                             const std::vector<std::string>& environ) {
  ParseResult result;
  EtcdConfig& cfg = result.config;
  std::set<std::string> given;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a == "--" ) break;
    if (a.size() < 2 || a[0] != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("'", AV(a), "' is not a valid flag"));
    }
    a.remove_prefix(a[1] == '-' ? 2 : 1);
    std::string_view name = a;
    std::optional<std::string_view> value;
    if (size_t eq = a.find('='); eq != std::string_view::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
    }
    const FlagDef* def = FindFlag(name);
    if (def == nullptr) {
      return util::MakeError(absl::StatusCode::kInvalidArgument, util::ErrorCode::kFlagNotDefined,
                             absl::StrCat("flag provided but not defined: -", AV(name)));
    }
    if (name == "version") {
      result.action = Action::kVersion;
      continue;
    }
    if (name == "help" || name == "h") {
      result.action = Action::kHelp;
      continue;
    }
    std::string v;
    if (value) {
      v = std::string(*value);
    } else if (def->is_bool) {
      v = "true";
    } else {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("flag needs an argument: -", AV(name)));
      }
      v = args[++i];
    }
    if (absl::Status s = def->set(&cfg, v); !s.ok()) return BadValue(v, name, s);
    given.insert(def->name);
  }
  if (result.action != Action::kRun) return result;

  // Environment variables for the flags not given on the command line.
  std::map<std::string, std::string> env;
  for (const std::string& kv : environ) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos) continue;
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  std::set<std::string> known_env;
  for (const FlagDef& f : Flags()) {
    std::string key = EnvName(f.name);
    known_env.insert(key);
    auto it = env.find(key);
    if (it == env.end() || f.name == "version" || f.name == "help" || f.name == "h") continue;
    if (given.count(f.name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "conflicting environment variable \"", key,
          "\" is shadowed by corresponding command-line flag (either unset environment "
          "variable or disable flag)"));
    }
    if (absl::Status s = f.set(&cfg, it->second); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("invalid value \"", it->second,
                                                     "\" for environment variable ", key, ": ",
                                                     s.message()));
    }
    result.env_used.push_back(absl::StrCat(key, "=", it->second));
  }
  for (const auto& [k, v] : env) {
    if (absl::StartsWith(k, "ETCD_") && !known_env.count(k) && k != "ETCD_UNSUPPORTED_ARCH") {
      result.env_unrecognized.push_back(absl::StrCat(k, "=", v));
    }
  }

  if (!cfg.config_file.empty()) {
    std::string path = cfg.config_file;
    auto from_file = LoadConfigFile(path);
    if (!from_file.ok()) return from_file.status();
    result.config = *std::move(from_file);
    result.config.config_file = path;
    return result;
  }
  if (absl::Status s = Finalize(&cfg); !s.ok()) return s;
  return result;
}

std::string Usage() {
  return R"(Usage:

  cppetcd [flags]
    Start a cppetcd server (etcd v3 API compatible).

  cppetcd --version
    Show the version of cppetcd and the etcd API version it serves.

  cppetcd -h | --help
    Show the help information about cppetcd.

  cppetcd --config-file
    Path to the server configuration file (etcd's YAML format). Note that if a
    configuration file is provided, other command line flags and environment
    variables will be ignored.

Member:
  --name 'default'                      Human-readable name for this member.
  --data-dir '${name}.etcd'             Path to the data directory.
  --wal-dir ''                          Path to the dedicated wal directory.
  --snapshot-count '100000'             Committed transactions that trigger a snapshot to disk.
  --heartbeat-interval '100'            Time (in milliseconds) of a heartbeat interval.
  --election-timeout '1000'             Time (in milliseconds) for an election to timeout.
  --listen-peer-urls 'http://localhost:2380'
                                        URLs to listen on for peer traffic.
  --listen-client-urls 'http://localhost:2379'
                                        URLs to listen on for client traffic.
  --listen-client-http-urls ''          URLs to listen on for HTTP-only client traffic (etcd 3.5);
                                        --listen-client-urls then serve gRPC only.
  --max-snapshots '5'                   Maximum number of snapshot files to retain (0 is unlimited).
  --max-wals '5'                        Maximum number of wal files to retain (0 is unlimited).
  --quota-backend-bytes '0'             Raise alarms when backend size exceeds the given quota (0 defaults to 2 GiB).
  --max-txn-ops '128'                   Maximum number of operations permitted in a transaction.
  --max-request-bytes '1572864'         Maximum client request size in bytes the server will accept.
  --grpc-keepalive-min-time '5s'        Minimum interval a client should wait before pinging the server.
  --grpc-keepalive-interval '2h'        Frequency of server-to-client pings to check if a connection is alive.
  --grpc-keepalive-timeout '20s'        Additional wait before closing a non-responsive connection.

Clustering:
  --initial-advertise-peer-urls 'http://localhost:2380'
                                        This member's peer URLs to advertise to the rest of the cluster.
  --initial-cluster 'default=http://localhost:2380'
                                        Initial cluster configuration for bootstrapping.
  --initial-cluster-state 'new'         Initial cluster state ('new' or 'existing').
  --discovery-srv ''                    DNS domain whose SRV records list the initial cluster.
  --discovery-srv-name ''               Suffix of the SRV service names queried (_etcd-server-<name>).
  --initial-cluster-token 'etcd-cluster'
                                        Initial cluster token for the cluster during bootstrap.
  --advertise-client-urls 'http://localhost:2379'
                                        This member's client URLs to advertise to the public.
  --strict-reconfig-check 'true'        Reject reconfiguration requests that would cause quorum loss.
  --pre-vote 'false'                    Enable the raft Pre-Vote algorithm.
  --auto-compaction-retention '0'       Auto compaction retention (0 disables).
  --auto-compaction-mode 'periodic'     How to read the retention: 'periodic' (hours or a duration) or 'revision'.

Security:
  --cert-file ''                        Path to the client server TLS cert file.
  --key-file ''                         Path to the client server TLS key file.
  --client-cert-auth 'false'            Enable client cert authentication.
  --trusted-ca-file ''                  Path to the client server TLS trusted CA cert file.
  --auto-tls 'false'                    Client TLS using generated certificates.
  --peer-cert-file ''                   Path to the peer server TLS cert file.
  --peer-key-file ''                    Path to the peer server TLS key file.
  --peer-client-cert-auth 'false'       Enable peer client cert authentication.
  --peer-trusted-ca-file ''             Path to the peer server TLS trusted CA file.
  --peer-auto-tls 'false'               Peer TLS using self-generated certificates.

Auth:
  --auth-token 'simple'                 Auth token type: 'simple' or 'jwt,pub-key=...,priv-key=...,sign-method=...,ttl=...'.
  --auth-token-ttl '300'                Time (in seconds) of the simple token's validity, renewed on use.
  --bcrypt-cost '10'                    Cost of the bcrypt hash of user passwords.

Profiling and monitoring:
  --listen-metrics-urls ''              Extra URLs serving /metrics and /health (no gRPC).
  --metrics 'basic'                     'basic' or 'extensive' (adds histograms per gRPC method).

Experimental:
  --experimental-initial-corrupt-check 'false'
                                        Compare the data with the peers' before serving.
  --experimental-corrupt-check-time '0s'
                                        Period of the leader's data consistency check (0 disables).
  --experimental-enable-lease-checkpoint 'false'
                                        Leader checkpoints lease remaining TTLs through raft (every 5 min), kept on leader change.
  --experimental-enable-lease-checkpoint-persist 'false'
                                        Also persist the checkpointed remaining TTLs, kept on restart (needs the flag above).

Logging:
  --logger 'zap'                        Structured JSON lines (etcd's zap format).
  --log-outputs 'default'               'stderr', 'stdout' or a file path.
  --log-level 'info'                    debug, info, warn, error, panic, or fatal.

Every flag can also be set by an environment variable: ETCD_ followed by the
flag name in upper case with '-' replaced by '_' (e.g. ETCD_DATA_DIR).
)";
}

std::string VersionText() {
  return absl::StrCat("etcd Version: ", CPPETCD_ETCD_COMPAT_VERSION, "\n",
                      "cppetcd Version: ", CPPETCD_VERSION, "\n",
                      "Git SHA: ", CPPETCD_GIT_SHA, "\n",
                      "Go Version: not applicable (C++20)\n",
                      "Go OS/Arch: linux/amd64\n");
}

}  // namespace cppetcd::cmd
