#include "cppetcd/cmd/flags.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cppetcd::cmd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

EtcdConfig MustParse(std::vector<std::string> args, std::vector<std::string> env = {}) {
  auto r = ParseCommandLine(args, env);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->config : EtcdConfig{};
}

TEST(FlagsTest, DefaultsAreEtcds) {
  EtcdConfig c = MustParse({});
  EXPECT_EQ(c.name, "default");
  EXPECT_EQ(c.data_dir, "default.etcd");
  EXPECT_EQ(c.initial_cluster, "default=http://localhost:2380");
  EXPECT_EQ(c.initial_cluster_state, "new");
  EXPECT_EQ(c.initial_cluster_token, "etcd-cluster");
  EXPECT_EQ(c.snapshot_count, 100000u);
  EXPECT_EQ(c.heartbeat_interval_ms, 100u);
  EXPECT_EQ(c.election_timeout_ms, 1000u);
  EXPECT_EQ(c.max_request_bytes, 1572864u);
  EXPECT_EQ(c.max_txn_ops, 128u);
  EXPECT_EQ(c.grpc_keepalive_min_time, std::chrono::seconds(5));
  EXPECT_EQ(c.grpc_keepalive_interval, std::chrono::hours(2));
  EXPECT_EQ(c.grpc_keepalive_timeout, std::chrono::seconds(20));
  ASSERT_EQ(c.listen_client_urls.size(), 1u);
  EXPECT_EQ(c.listen_client_urls[0].ToString(), "http://localhost:2379");
  EXPECT_EQ(c.advertise_client_urls[0].HostPort(), "localhost:2379");
}

TEST(FlagsTest, BothValueFormsAndSingleDash) {
  EtcdConfig c = MustParse({"--name=n1", "--data-dir", "/var/lib/x", "-snapshot-count", "50000",
                            "--quota-backend-bytes=8589934592", "--pre-vote"});
  EXPECT_EQ(c.name, "n1");
  EXPECT_EQ(c.data_dir, "/var/lib/x");
  EXPECT_EQ(c.snapshot_count, 50000u);
  EXPECT_EQ(c.quota_backend_bytes, 8589934592);
  EXPECT_TRUE(c.pre_vote);
  EXPECT_EQ(c.initial_cluster, "n1=http://localhost:2380");
}

TEST(FlagsTest, BoolFlagDoesNotConsumeNextArgument) {
  EtcdConfig c = MustParse({"--pre-vote", "--name", "a", "--strict-reconfig-check=false"});
  EXPECT_TRUE(c.pre_vote);
  EXPECT_EQ(c.name, "a");
  EXPECT_FALSE(c.strict_reconfig_check);
}

TEST(FlagsTest, SeedsUnitFileFlags) {
  EtcdConfig c = MustParse({
      "--name=etcd-10.0.0.206",
      "--cert-file=/etc/kubernetes/ssl/etcd.pem",
      "--key-file=/etc/kubernetes/ssl/etcd-key.pem",
      "--peer-cert-file=/etc/kubernetes/ssl/etcd.pem",
      "--peer-key-file=/etc/kubernetes/ssl/etcd-key.pem",
      "--trusted-ca-file=/etc/kubernetes/ssl/ca.pem",
      "--peer-trusted-ca-file=/etc/kubernetes/ssl/ca.pem",
      "--initial-advertise-peer-urls=https://10.0.0.206:2380",
      "--listen-peer-urls=https://10.0.0.206:2380",
      "--listen-client-urls=https://10.0.0.206:2379,http://127.0.0.1:2379",
      "--advertise-client-urls=https://10.0.0.206:2379",
      "--initial-cluster-token=etcd-cluster-0",
      "--initial-cluster=etcd-10.0.0.206=https://10.0.0.206:2380,etcd-10.0.0.207=https://"
      "10.0.0.207:2380,etcd-10.0.0.208=https://10.0.0.208:2380",
      "--initial-cluster-state=new",
      "--data-dir=/var/lib/etcd",
      "--wal-dir=",
      "--snapshot-count=50000",
      "--auto-compaction-retention=1",
      "--auto-compaction-mode=periodic",
      "--max-request-bytes=10485760",
      "--quota-backend-bytes=8589934592",
  });
  ASSERT_EQ(c.listen_client_urls.size(), 2u);
  EXPECT_EQ(c.listen_client_urls[0].scheme, "https");
  EXPECT_EQ(c.listen_client_urls[1].HostPort(), "127.0.0.1:2379");
  EXPECT_EQ(c.wal_dir, "");
  auto cluster = ParseInitialCluster(c.initial_cluster);
  ASSERT_TRUE(cluster.ok());
  EXPECT_EQ(cluster->size(), 3u);
  EXPECT_EQ(cluster->at("etcd-10.0.0.207")[0].ToString(), "https://10.0.0.207:2380");
  EXPECT_EQ(c.max_request_bytes, 10485760u);
}

// Flags of features cppetcd does not have are accepted with etcd's default
// (or empty) value only; any other value is refused with a message naming
// the flag, its ETCD_* variable and its config file key. Never accepted and
// silently ignored.
TEST(FlagsTest, UnsupportedFeatureFlagsAcceptOnlyTheirDefaults) {
  MustParse({"--proxy=off", "--proxy-failure-wait=5000", "--proxy-refresh-interval=30000",
             "--proxy-dial-timeout=1000", "--proxy-write-timeout=5000", "--proxy-read-timeout=0",
             "--discovery=", "--discovery-fallback=proxy", "--discovery-proxy=",
             "--experimental-enable-v2v3=",
             "--log-package-levels=", "--logger=zap", "--enable-v2=false",
             "--enable-pprof=false"});
  struct Case {
    std::string arg;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"--proxy=on",
       "invalid value \"on\" for flag -proxy: cppetcd has no v2 proxy mode; only etcd's default "
       "\"off\" is accepted (flag --proxy, environment variable ETCD_PROXY, config file key "
       "\"proxy\")"},
      {"--proxy=readonly", "cppetcd has no v2 proxy mode"},
      {"--proxy-failure-wait=1", "ETCD_PROXY_FAILURE_WAIT"},
      {"--proxy-refresh-interval=1", "ETCD_PROXY_REFRESH_INTERVAL"},
      {"--proxy-dial-timeout=1", "ETCD_PROXY_DIAL_TIMEOUT"},
      {"--proxy-write-timeout=1", "ETCD_PROXY_WRITE_TIMEOUT"},
      {"--proxy-read-timeout=1", "ETCD_PROXY_READ_TIMEOUT"},
      {"--discovery=https://discovery.etcd.io/x", "discovery-service bootstrap is not implemented"},
      {"--discovery-fallback=exit", "config file key \"discovery-fallback\""},
      {"--discovery-proxy=http://p:8080", "ETCD_DISCOVERY_PROXY"},
      {"--experimental-enable-v2v3=/v2/", "cppetcd has no v2 API"},
      {"--log-package-levels=etcdserver=DEBUG", "use --log-level"},
      {"--logger=capnslog", "cppetcd logs only in etcd's zap format"},
      {"--logger=json", "invalid value \"json\" for flag -logger"},
      {"--experimental-backend-bbolt-freelist-type=list", "LMDB"},
      {"--enable-v2",
       "invalid value \"true\" for flag -enable-v2: cppetcd has no v2 API (etcd 3.4's default is "
       "false); only false is accepted (flag --enable-v2, environment variable ETCD_ENABLE_V2, "
       "config file key \"enable-v2\")"},
      {"--enable-pprof=true", "no Go runtime profiler"},
      {"--enable-pprof=1", "ETCD_ENABLE_PPROF"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.arg);
    auto r = ParseCommandLine({c.arg}, {});
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.status().message(), HasSubstr(c.message));
  }
  // etcd's own errors for values outside a flag's choices or syntax.
  auto r = ParseCommandLine({"--proxy=bogus"}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "invalid value \"bogus\" for flag -proxy: invalid value");
  r = ParseCommandLine({"--proxy-dial-timeout=abc"}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "invalid value \"abc\" for flag -proxy-dial-timeout: parse error");
  // The environment variable is refused the same way.
  r = ParseCommandLine({}, {"ETCD_PROXY=on"});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(),
              HasSubstr("invalid value \"on\" for environment variable ETCD_PROXY: cppetcd has no "
                        "v2 proxy mode"));
}

TEST(FlagsTest, HonouredFormerlyIgnoredFlags) {
  EtcdConfig c = MustParse({});
  EXPECT_TRUE(c.enable_grpc_gateway);
  EXPECT_FALSE(c.experimental_peer_skip_client_san_verification);
  EXPECT_EQ(c.experimental_backend_bbolt_freelist_type, "array");
  c = MustParse({"--enable-grpc-gateway=false", "--experimental-peer-skip-client-san-verification",
                 "--experimental-backend-bbolt-freelist-type=map"});
  EXPECT_FALSE(c.enable_grpc_gateway);
  EXPECT_TRUE(c.experimental_peer_skip_client_san_verification);
  EXPECT_EQ(c.experimental_backend_bbolt_freelist_type, "map");
  c = MustParse({}, {"ETCD_ENABLE_GRPC_GATEWAY=false"});
  EXPECT_FALSE(c.enable_grpc_gateway);
}

// etcd 3.4's lease checkpoint flags are honoured (server::ServerConfig::
// lease_checkpoint); persist without checkpoint is refused with etcd's
// message (embed.Config.Validate).
TEST(FlagsTest, LeaseCheckpointFlags) {
  EtcdConfig c = MustParse({});
  EXPECT_FALSE(c.experimental_enable_lease_checkpoint);
  EXPECT_FALSE(c.experimental_enable_lease_checkpoint_persist);
  c = MustParse({"--experimental-enable-lease-checkpoint"});
  EXPECT_TRUE(c.experimental_enable_lease_checkpoint);
  EXPECT_FALSE(c.experimental_enable_lease_checkpoint_persist);
  c = MustParse({"--experimental-enable-lease-checkpoint=true",
                 "--experimental-enable-lease-checkpoint-persist"});
  EXPECT_TRUE(c.experimental_enable_lease_checkpoint);
  EXPECT_TRUE(c.experimental_enable_lease_checkpoint_persist);
  c = MustParse({}, {"ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT=true",
                     "ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT_PERSIST=true"});
  EXPECT_TRUE(c.experimental_enable_lease_checkpoint);
  EXPECT_TRUE(c.experimental_enable_lease_checkpoint_persist);
  c = MustParse({"--experimental-enable-lease-checkpoint=false",
                 "--experimental-enable-lease-checkpoint-persist=false"});
  EXPECT_FALSE(c.experimental_enable_lease_checkpoint);

  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--experimental-enable-lease-checkpoint-persist"},
        std::vector<std::string>{"--experimental-enable-lease-checkpoint=false",
                                 "--experimental-enable-lease-checkpoint-persist=true"}}) {
    auto r = ParseCommandLine(args, {});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message(),
              "setting experimental-enable-lease-checkpoint-persist requires "
              "experimental-enable-lease-checkpoint");
  }
  auto bad = ParseCommandLine({"--experimental-enable-lease-checkpoint=maybe"}, {});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(),
              HasSubstr("invalid value \"maybe\" for flag -experimental-enable-lease-checkpoint"));
}

TEST(FlagsTest, UnknownFlagIsAnErrorInEtcdsWords) {
  auto r = ParseCommandLine({"--foo"}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "flag provided but not defined: -foo");
}

TEST(FlagsTest, MalformedValueIsAnErrorInEtcdsWords) {
  auto r = ParseCommandLine({"--heartbeat-interval=abc"}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "invalid value \"abc\" for flag -heartbeat-interval: parse error");
  EXPECT_FALSE(ParseCommandLine({"--listen-client-urls=127.0.0.1:2379"}, {}).ok());
  EXPECT_FALSE(ParseCommandLine({"--initial-cluster-state=old"}, {}).ok());
  EXPECT_FALSE(ParseCommandLine({"--name"}, {}).ok());
}

TEST(FlagsTest, ElectionTimeoutMustBeFiveHeartbeats) {
  auto r = ParseCommandLine({"--heartbeat-interval=300", "--election-timeout=1000"}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("5 times"));
}

TEST(FlagsTest, EnvironmentVariablesFillFlagsNotGiven) {
  auto r = ParseCommandLine({"--name=x"}, {"ETCD_DATA_DIR=/d", "ETCD_SNAPSHOT_COUNT=7",
                                           "ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:1234",
                                           "ETCD_BOGUS=1", "PATH=/bin"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.data_dir, "/d");
  EXPECT_EQ(r->config.snapshot_count, 7u);
  EXPECT_EQ(r->config.listen_client_urls[0].port, 1234);
  EXPECT_THAT(r->env_unrecognized, ElementsAre("ETCD_BOGUS=1"));
  EXPECT_EQ(r->env_used.size(), 3u);
}

TEST(FlagsTest, EnvironmentShadowedByFlagIsAnError) {
  auto r = ParseCommandLine({"--name=x"}, {"ETCD_NAME=y"});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("conflicting environment variable"));
}

TEST(FlagsTest, VersionAndHelp) {
  auto v = ParseCommandLine({"--version"}, {});
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->action, Action::kVersion);
  auto h = ParseCommandLine({"-h"}, {});
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->action, Action::kHelp);
  EXPECT_THAT(VersionText(), HasSubstr("etcd Version: 3.4"));
  EXPECT_THAT(Usage(), HasSubstr("--initial-cluster-state"));
}

TEST(FlagsTest, GoDurations) {
  EXPECT_EQ(*ParseGoDuration("5s"), std::chrono::seconds(5));
  EXPECT_EQ(*ParseGoDuration("1m30s"), std::chrono::seconds(90));
  EXPECT_EQ(*ParseGoDuration("100ms"), std::chrono::milliseconds(100));
  EXPECT_EQ(*ParseGoDuration("2h"), std::chrono::hours(2));
  EXPECT_EQ(*ParseGoDuration("0"), std::chrono::milliseconds(0));
  EXPECT_FALSE(ParseGoDuration("5").ok());
  EXPECT_FALSE(ParseGoDuration("abc").ok());
  // Go's range: int64 nanoseconds (fuzz finding: a 40-digit value
  // overflowed the conversion, and negating it was undefined).
  EXPECT_EQ(*ParseGoDuration("2562047h"), std::chrono::hours(2562047));
  EXPECT_EQ(*ParseGoDuration("-2562047h"), -std::chrono::hours(2562047));
  EXPECT_FALSE(ParseGoDuration("2562048h").ok());
  EXPECT_FALSE(ParseGoDuration("-155555555555555555555555555555555555555ms").ok());
  EXPECT_FALSE(ParseGoDuration(std::string(400, '9') + "s").ok());
}

TEST(FlagsTest, PeriodicRetentionInHoursOrDuration) {
  EXPECT_EQ(*ParsePeriodicRetention("1"), std::chrono::hours(1));
  EXPECT_EQ(*ParsePeriodicRetention("0.5"), std::chrono::minutes(30));
  EXPECT_FALSE(ParsePeriodicRetention("inf").ok());
  EXPECT_FALSE(ParsePeriodicRetention("nan").ok());
  EXPECT_FALSE(ParsePeriodicRetention("1e300").ok());
  EXPECT_TRUE(ParsePeriodicRetention("2562047").ok());
  EXPECT_EQ(*ParsePeriodicRetention("30m"), std::chrono::minutes(30));
  EXPECT_EQ(*ParsePeriodicRetention("0"), std::chrono::milliseconds(0));
  EXPECT_FALSE(ParsePeriodicRetention("soon").ok());
  EXPECT_FALSE(ParseCommandLine({"--auto-compaction-mode=revision",
                                 "--auto-compaction-retention=1h"}, {}).ok());
  EXPECT_TRUE(ParseCommandLine({"--auto-compaction-mode=revision",
                                "--auto-compaction-retention=1000"}, {}).ok());
}

TEST(FlagsTest, Urls) {
  auto u = ParseUrl("http://[::1]:2379");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->HostPort(), "[::1]:2379");
  EXPECT_FALSE(ParseUrl("ftp://a:1").ok());
  EXPECT_FALSE(ParseUrl("http://a:1/path").ok());
  EXPECT_FALSE(ParseUrl("http://a:99999").ok());
  // Found by fuzzing: an IPv6-looking host without brackets parsed, then
  // printed as a bracketed URL that did not parse back (Go's SplitHostPort
  // refuses it: "too many colons in address").
  EXPECT_FALSE(ParseUrl("http://fe80::1:2379").ok());
  EXPECT_FALSE(ParseUrl("unix://a:b[c]:80").ok());
  EXPECT_FALSE(ParseUrl("http://a]:80").ok());
  EXPECT_FALSE(ParseUrl("unix:///").ok());  // printed as "unix://", which did not parse
  EXPECT_FALSE(ParseUrl("unix://a\n/").ok());  // printed as "unix://a\n", read back as "a"
  EXPECT_FALSE(ParseUrl("http://a b:1").ok());
  EXPECT_FALSE(ParseUrl("unix://:").ok());  // no host, no port: printed as "unix://"
  // Port 0 is a port (Go's listener binds an ephemeral one); a missing port
  // is refused.
  auto zero = ParseUrl("http://127.0.0.1:0");
  ASSERT_TRUE(zero.ok()) << zero.status();
  EXPECT_EQ(zero->port, 0);
  EXPECT_EQ(zero->ToString(), "http://127.0.0.1:0");
  EXPECT_EQ(zero->HostPort(), "127.0.0.1:0");
  EXPECT_EQ(*ParseUrl(zero->ToString()), *zero);
  EXPECT_FALSE(ParseUrl("http://127.0.0.1").ok());
  EXPECT_FALSE(ParseUrl("https://[::1]").ok());
  auto dup = ParseUrls("http://a:1,http://a:1,http://b:2");
  ASSERT_TRUE(dup.ok());
  EXPECT_EQ(dup->size(), 2u);
}

std::string WriteTemp(const std::string& text) {
  auto path = std::filesystem::temp_directory_path() /
              ("cppetcd_cfg_" + std::to_string(::getpid()) + "_" +
               std::to_string(std::hash<std::string>{}(text)) + ".yml");
  std::ofstream(path) << text;
  return path.string();
}

TEST(ConfigFileTest, KeysMeanWhatTheFlagsMean) {
  std::string path = WriteTemp(R"(name: 'n2'
data-dir: /tmp/n2
snapshot-count: 500
heartbeat-interval: 50
election-timeout: 500
listen-client-urls: http://127.0.0.1:3379
initial-cluster-state: 'existing'
log-outputs: [stderr]
auto-compaction-mode: revision
auto-compaction-retention: "100"
unknown-future-key: 3
client-transport-security:
  cert-file: /c.pem
  client-cert-auth: true
peer-transport-security:
  key-file: /pk.pem
  auto-tls: true
)");
  auto c = LoadConfigFile(path);
  std::filesystem::remove(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, "n2");
  EXPECT_EQ(c->data_dir, "/tmp/n2");
  EXPECT_EQ(c->snapshot_count, 500u);
  EXPECT_EQ(c->heartbeat_interval_ms, 50u);
  EXPECT_EQ(c->listen_client_urls[0].port, 3379);
  EXPECT_EQ(c->initial_cluster_state, "existing");
  EXPECT_EQ(c->log_outputs, std::vector<std::string>{"stderr"});
  EXPECT_EQ(c->auto_compaction_mode, "revision");
  EXPECT_EQ(c->cert_file, "/c.pem");
  EXPECT_TRUE(c->client_cert_auth);
  EXPECT_EQ(c->peer_key_file, "/pk.pem");
  EXPECT_TRUE(c->peer_auto_tls);
}

TEST(ConfigFileTest, ConfigFileReplacesFlagsAndEnvironment) {
  std::string path = WriteTemp("name: fromfile\n");
  auto r = ParseCommandLine({"--config-file", path, "--snapshot-count=9"}, {"ETCD_WAL_DIR=/w"});
  std::filesystem::remove(path);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.name, "fromfile");
  EXPECT_EQ(r->config.snapshot_count, 100000u);
  EXPECT_EQ(r->config.wal_dir, "");
  EXPECT_EQ(r->config.data_dir, "fromfile.etcd");
}

TEST(ConfigFileTest, LeaseCheckpointKeys) {
  std::string path = WriteTemp(
      "experimental-enable-lease-checkpoint: true\n"
      "experimental-enable-lease-checkpoint-persist: true\n");
  auto c = LoadConfigFile(path);
  std::filesystem::remove(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->experimental_enable_lease_checkpoint);
  EXPECT_TRUE(c->experimental_enable_lease_checkpoint_persist);
  path = WriteTemp("experimental-enable-lease-checkpoint-persist: true\n");
  auto refused = LoadConfigFile(path);
  std::filesystem::remove(path);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(),
              HasSubstr("experimental-enable-lease-checkpoint-persist requires"));
}

// etcd 3.5's --listen-client-http-urls: flag, ETCD_ variable and config
// file key; a URL in both lists is refused.
TEST(ConfigFileTest, ListenClientHttpUrls) {
  EtcdConfig f = MustParse({"--listen-client-urls=https://127.0.0.1:2379",
                            "--listen-client-http-urls=https://127.0.0.1:2381,http://127.0.0.1:2382"});
  ASSERT_EQ(f.listen_client_http_urls.size(), 2u);
  EXPECT_EQ(f.listen_client_http_urls[1].ToString(), "http://127.0.0.1:2382");
  EtcdConfig e = MustParse({}, {"ETCD_LISTEN_CLIENT_HTTP_URLS=http://127.0.0.1:2383"});
  ASSERT_EQ(e.listen_client_http_urls.size(), 1u);
  EXPECT_EQ(e.listen_client_http_urls[0].port, 2383);
  EXPECT_TRUE(MustParse({}).listen_client_http_urls.empty());
  std::string path = WriteTemp("listen-client-http-urls: http://127.0.0.1:2384\n");
  auto c = LoadConfigFile(path);
  std::filesystem::remove(path);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->listen_client_http_urls.size(), 1u);
  EXPECT_EQ(c->listen_client_http_urls[0].port, 2384);
  auto both = ParseCommandLine({"--listen-client-urls=http://127.0.0.1:2379",
                                "--listen-client-http-urls=https://127.0.0.1:2379"},
                               {});
  ASSERT_FALSE(both.ok());
  EXPECT_THAT(both.status().message(), HasSubstr("is also in --listen-client-urls"));
}

TEST(ConfigFileTest, BadFilesAreClearErrors) {
  EXPECT_EQ(LoadConfigFile("/nonexistent/x.yml").status().code(), absl::StatusCode::kNotFound);
  // A path that never ends (a device) is refused at the read bound.
  auto endless = LoadConfigFile("/dev/zero");
  ASSERT_FALSE(endless.ok());
  EXPECT_THAT(std::string(endless.status().message()), ::testing::HasSubstr("larger than 64 MiB"));
  std::string bad = WriteTemp("name: [unclosed\n");
  EXPECT_EQ(LoadConfigFile(bad).status().code(), absl::StatusCode::kInvalidArgument);
  std::filesystem::remove(bad);
  std::string badval = WriteTemp("heartbeat-interval: fast\n");
  auto r = LoadConfigFile(badval);
  std::filesystem::remove(badval);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("heartbeat-interval"));
}

// etcd's sample file spells out the defaults of the proxy and discovery
// keys: it loads; a key asking for the feature is refused, naming the key.
TEST(ConfigFileTest, UnsupportedFeatureKeysAcceptOnlyDefaults) {
  const std::string defaults = WriteTemp(
      "name: 'defaults'\n"
      "discovery:\n"
      "discovery-fallback: 'proxy'\n"
      "discovery-proxy:\n"
      "discovery-srv:\n"
      "proxy: 'off'\n"
      "proxy-failure-wait: 5000\n"
      "proxy-refresh-interval: 30000\n"
      "proxy-dial-timeout: 1000\n"
      "proxy-write-timeout: 5000\n"
      "proxy-read-timeout: 0\n"
      "log-package-levels: ''\n"
      "enable-grpc-gateway: false\n");
  auto c = LoadConfigFile(defaults);
  std::filesystem::remove(defaults);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->enable_grpc_gateway);
  for (const std::string& line :
       {std::string("proxy: 'on'\n"), std::string("log-package-levels: 'etcdserver=DEBUG'\n"),
        std::string("discovery-proxy: 'http://p:8080'\n")}) {
    SCOPED_TRACE(line);
    const std::string path = WriteTemp("name: 'x'\n" + line);
    auto r = LoadConfigFile(path);
    std::filesystem::remove(path);
    ASSERT_FALSE(r.ok());
    const std::string key = line.substr(0, line.find(':'));
    EXPECT_THAT(r.status().message(), HasSubstr("config file key \"" + key + "\""));
  }
}

// --discovery-srv / --discovery-srv-name (etcd 3.4 etcdmain/config.go and
// embed.Config.Validate): either drops the default initial cluster; an
// initial cluster given with --discovery-srv is etcd's conflict error.
TEST(FlagsTest, DnsDiscoveryFlagsDropTheDefaultClusterAndConflictWithAGivenOne) {
  const std::string conflict =
      "multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", "
      "\"discovery\" or \"discovery-srv\"";
  EtcdConfig c = MustParse({"--name=m1", "--discovery-srv=example.com"});
  EXPECT_EQ(c.discovery_srv, "example.com");
  EXPECT_EQ(c.discovery_srv_name, "");
  EXPECT_EQ(c.initial_cluster, "");
  c = MustParse({"--discovery-srv=example.com", "--discovery-srv-name=prod"});
  EXPECT_EQ(c.discovery_srv_name, "prod");
  EXPECT_EQ(c.initial_cluster, "");
  // The name alone also drops the default (etcd's bootstrap then fails).
  c = MustParse({"--discovery-srv-name=prod"});
  EXPECT_EQ(c.initial_cluster, "");
  c = MustParse({"--discovery-srv-name=prod", "--initial-cluster=a=http://a:1"});
  EXPECT_EQ(c.initial_cluster, "a=http://a:1");
  // An explicitly empty initial cluster does not conflict.
  c = MustParse({"--discovery-srv=example.com", "--initial-cluster="});
  EXPECT_EQ(c.initial_cluster, "");
  // Without discovery the default stays.
  c = MustParse({"--name=m1"});
  EXPECT_EQ(c.initial_cluster, "m1=http://localhost:2380");

  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--discovery-srv=example.com", "--initial-cluster=a=http://a:1"},
        std::vector<std::string>{"--initial-cluster=default=http://localhost:2380",
                                 "--discovery-srv=example.com"}}) {
    auto r = ParseCommandLine(args, {});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message(), conflict);
  }
  // The same through ETCD_* variables.
  auto r = ParseCommandLine({}, {"ETCD_DISCOVERY_SRV=example.com", "ETCD_DISCOVERY_SRV_NAME=x"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.discovery_srv, "example.com");
  EXPECT_EQ(r->config.discovery_srv_name, "x");
  EXPECT_EQ(r->config.initial_cluster, "");
  r = ParseCommandLine({"--discovery-srv=example.com"}, {"ETCD_INITIAL_CLUSTER=a=http://a:1"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), conflict);
}

// The config file keys discovery-srv and discovery-srv-name; as etcd's
// ConfigFromFile, an initial-cluster equal to the default counts as unset
// there, any other one conflicts.
TEST(ConfigFileTest, DnsDiscoveryKeys) {
  const std::string path = WriteTemp(
      "name: 'm1'\n"
      "discovery-srv: 'example.com'\n"
      "discovery-srv-name: 'prod'\n"
      "initial-cluster: 'default=http://localhost:2380'\n");
  auto c = LoadConfigFile(path);
  std::filesystem::remove(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->discovery_srv, "example.com");
  EXPECT_EQ(c->discovery_srv_name, "prod");
  EXPECT_EQ(c->initial_cluster, "");
  const std::string conflicting = WriteTemp(
      "name: 'm1'\n"
      "discovery-srv: 'example.com'\n"
      "initial-cluster: 'm1=http://10.0.0.1:2380'\n");
  auto r = LoadConfigFile(conflicting);
  std::filesystem::remove(conflicting);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("multiple discovery or bootstrap flags are set"));
}

// etcd's sample config file asks for the v2 API and pprof, which cppetcd
// does not have: it is refused naming the first of them; with those two
// set to false, the rest of the file loads.
TEST(ConfigFileTest, EtcdSampleConfigLoadsWithoutV2AndPprof) {
  if (!std::filesystem::exists(CPPETCD_SAMPLE_CONFIG)) {
    GTEST_SKIP() << "etcd sample config not found at " << CPPETCD_SAMPLE_CONFIG;
  }
  auto refused = LoadConfigFile(CPPETCD_SAMPLE_CONFIG);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("config file key \"enable-v2\""));

  std::ifstream in(CPPETCD_SAMPLE_CONFIG);
  std::stringstream text;
  text << in.rdbuf();
  std::string yaml = text.str();
  for (const std::string key : {"enable-v2", "enable-pprof"}) {
    const size_t at = yaml.find("\n" + key + ": true");
    ASSERT_NE(at, std::string::npos) << key;
    yaml.replace(at, key.size() + 7, "\n" + key + ": false");
  }
  const std::string path = WriteTemp(yaml);
  auto c = LoadConfigFile(path);
  std::filesystem::remove(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, "default");
  EXPECT_EQ(c->data_dir, "default.etcd");
  EXPECT_EQ(c->snapshot_count, 10000u);
  EXPECT_EQ(c->initial_cluster_token, "etcd-cluster");
  EXPECT_EQ(c->auto_compaction_retention, "1");
  EXPECT_EQ(c->listen_peer_urls[0].ToString(), "http://localhost:2380");
}

}  // namespace
}  // namespace cppetcd::cmd
