// The command line as an operator meets it: flag errors, --version, ETCD_*
// variables and --config-file, checked on the real binary and, where etcd's
// own output is the specification, against Debian's etcd side by side.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <thread>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness.h"

namespace cppetcd::integration {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string FirstLine(const std::string& s) { return s.substr(0, s.find('\n')); }

CommandResult RunBinary(const std::string& binary, std::vector<std::string> args,
                  std::vector<std::string> env = {}) {
  args.insert(args.begin(), binary);
  return RunCommand(args, "", env, std::chrono::seconds(20));
}

// Runs both binaries with the same bad arguments: both exit 2 and print the
// same first line.
void ExpectSameFlagError(const std::vector<std::string>& args, const std::string& expected) {
  CommandResult ours = RunBinary(ServerBinary(), args);
  CommandResult etcd = RunBinary(ReferenceEtcdBinary(), args);
  EXPECT_EQ(etcd.exit_code, 2) << etcd.err;
  EXPECT_EQ(ours.exit_code, 2) << ours.err;
  EXPECT_EQ(FirstLine(etcd.err), expected);
  EXPECT_EQ(FirstLine(ours.err), expected);
  EXPECT_THAT(ours.err, HasSubstr("Usage:"));
}

TEST(CliTest, UnknownFlagExitsTwoWithEtcdsMessage) {
  CPPETCD_REQUIRE_SERVER();
  ExpectSameFlagError({"--no-such-flag"}, "flag provided but not defined: -no-such-flag");
}

TEST(CliTest, MalformedValueExitsTwoWithEtcdsMessage) {
  CPPETCD_REQUIRE_SERVER();
  ExpectSameFlagError({"--heartbeat-interval=abc"},
                      "invalid value \"abc\" for flag -heartbeat-interval: parse error");
  ExpectSameFlagError({"--snapshot-count", "-5"},
                      "invalid value \"-5\" for flag -snapshot-count: parse error");
}

// A client port another process holds: the server says so and exits 1,
// without claiming readiness (a regression: the HTTP server's shutdown used
// to hang when stopped right after its start).
TEST(CliTest, TakenClientPortExitsWithTheBindError) {
  CPPETCD_REQUIRE_SERVER();
  int holder = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(holder, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(holder, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(holder, 1), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(holder, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);
  absl::StatusOr<int> peer_port = PickFreePort();
  ASSERT_TRUE(peer_port.ok());
  TempDir dir;
  const std::string client = absl::StrCat("http://127.0.0.1:", port);
  const std::string peer = absl::StrCat("http://127.0.0.1:", *peer_port);
  CommandResult r = RunBinary(
      ServerBinary(), {"--data-dir", dir.path() + "/data", "--listen-client-urls", client,
                       "--advertise-client-urls", client, "--listen-peer-urls", peer,
                       "--initial-advertise-peer-urls", peer, "--initial-cluster",
                       "default=" + peer});
  ::close(holder);
  EXPECT_FALSE(r.timed_out) << r.err;
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("address already in use"));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr("ready to serve client requests")));
}

TEST(CliTest, VersionNamesTheEtcdApiVersion) {
  CPPETCD_REQUIRE_SERVER();
  CommandResult ours = RunBinary(ServerBinary(), {"--version"});
  CommandResult etcd = RunBinary(ReferenceEtcdBinary(), {"--version"});
  EXPECT_EQ(ours.exit_code, 0);
  EXPECT_EQ(FirstLine(ours.out), FirstLine(etcd.out));
  EXPECT_THAT(ours.out, StartsWith("etcd Version: 3.4."));
}

// Waits for `endpoint` to answer `endpoint health` under a deadline.
bool WaitHealthy(const std::string& endpoint) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    CommandResult r = Etcdctl(endpoint, {"endpoint", "health"}, "", std::chrono::seconds(5));
    if (r.exit_code == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

// Starts the binary with `args`/`env`, checks the member it reports and
// stops it. Retries with new ports if the first pick was taken.
void ExpectMemberNamed(const std::string& name, const TempDir& dir,
                       const std::function<std::pair<std::vector<std::string>,
                                                     std::vector<std::string>>(int, int)>& make) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto client = PickFreePort();
    auto peer = PickFreePort();
    ASSERT_TRUE(client.ok() && peer.ok());
    auto [args, env] = make(*client, *peer);
    args.insert(args.begin(), ServerBinary());
    auto proc = BackgroundCommand::Start(args, env, dir.path());
    ASSERT_TRUE(proc.ok()) << proc.status();
    std::string endpoint = absl::StrCat("127.0.0.1:", *client);
    if (!WaitHealthy(endpoint)) {
      (*proc)->Kill();
      continue;  // most likely a port clash; try new ports
    }
    CommandResult list = Etcdctl(endpoint, {"member", "list"});
    EXPECT_EQ(list.exit_code, 0) << list.err;
    std::vector<std::string> fields = absl::StrSplit(FirstLine(list.out), ", ");
    ASSERT_GE(fields.size(), 5u) << list.out;
    EXPECT_EQ(fields[1], "started");
    EXPECT_EQ(fields[2], name);
    EXPECT_EQ(fields[4], absl::StrCat("http://", endpoint));
    (*proc)->Kill();
    return;
  }
  FAIL() << "server never became healthy";
}

TEST(CliTest, EnvironmentVariablesConfigureTheServer) {
  CPPETCD_REQUIRE_SERVER();
  TempDir dir;
  ExpectMemberNamed("from-env", dir, [&](int client, int peer) {
    std::string c = absl::StrCat("http://127.0.0.1:", client);
    std::string p = absl::StrCat("http://127.0.0.1:", peer);
    std::vector<std::string> env = {
        "ETCD_NAME=from-env",
        absl::StrCat("ETCD_DATA_DIR=", dir.path(), "/env.etcd"),
        "ETCD_LISTEN_CLIENT_URLS=" + c,
        "ETCD_ADVERTISE_CLIENT_URLS=" + c,
        "ETCD_LISTEN_PEER_URLS=" + p,
        "ETCD_INITIAL_ADVERTISE_PEER_URLS=" + p,
        absl::StrCat("ETCD_INITIAL_CLUSTER=from-env=", p),
    };
    return std::make_pair(std::vector<std::string>{}, env);
  });
}

TEST(CliTest, ConfigFileConfiguresTheServerAndOverridesFlags) {
  CPPETCD_REQUIRE_SERVER();
  TempDir dir;
  ExpectMemberNamed("from-file", dir, [&](int client, int peer) {
    std::string c = absl::StrCat("http://127.0.0.1:", client);
    std::string p = absl::StrCat("http://127.0.0.1:", peer);
    std::string path = dir.path() + "/etcd.conf.yml";
    std::ofstream(path) << "name: 'from-file'\n"
                        << "data-dir: " << dir.path() << "/file.etcd\n"
                        << "listen-client-urls: " << c << "\n"
                        << "advertise-client-urls: " << c << "\n"
                        << "listen-peer-urls: " << p << "\n"
                        << "initial-advertise-peer-urls: " << p << "\n"
                        << "initial-cluster: from-file=" << p << "\n"
                        << "log-outputs: [stderr]\n";
    // As in etcd, the file wins over the other flags.
    return std::make_pair(std::vector<std::string>{"--config-file", path, "--name=ignored"},
                          std::vector<std::string>{});
  });
}

// A flag for a feature cppetcd lacks, given a value that asks for it, stops
// the start with a message naming the flag, its variable and its config
// key (exit 2, as a flag error); never accepted and ignored.
TEST(CliTest, UnsupportedFeatureFlagIsRefusedAtStartUp) {
  CPPETCD_REQUIRE_SERVER();
  if (IsReferenceEtcd(ServerBinary())) GTEST_SKIP() << "etcd has these features";
  TempDir dir;
  CommandResult r = RunBinary(ServerBinary(), {"--data-dir", dir.path() + "/data", "--proxy=on"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(FirstLine(r.err),
            "invalid value \"on\" for flag -proxy: cppetcd has no v2 proxy mode; only etcd's "
            "default \"off\" is accepted (flag --proxy, environment variable ETCD_PROXY, config "
            "file key \"proxy\")");
  r = RunBinary(ServerBinary(), {"--data-dir", dir.path() + "/data"},
                {"ETCD_DISCOVERY_PROXY=http://proxy.example.com:8080"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(FirstLine(r.err), HasSubstr("environment variable ETCD_DISCOVERY_PROXY: discovery "
                                          "is not implemented"));
}

// The address after `"msg":"<msg>","address":"` in a zap log, or "".
std::string LoggedAddress(const std::string& log, const std::string& msg) {
  const std::string key = absl::StrCat("\"msg\":\"", msg, "\",\"address\":\"");
  const size_t at = log.find(key);
  if (at == std::string::npos) return "";
  const size_t begin = at + key.size();
  const size_t end = log.find('"', begin);
  return end == std::string::npos ? "" : log.substr(begin, end - begin);
}

// Port 0 in the listen URLs binds ports the OS picks, as Go's listener does;
// the log names the bound addresses (etcd 3.4's "serving ... traffic" lines)
// and clients reach the member there.
TEST(CliTest, PortZeroListensOnAnEphemeralPortAndLogsIt) {
  CPPETCD_REQUIRE_SERVER();
  TempDir dir;
  absl::StatusOr<int> advertised = PickFreePort();
  ASSERT_TRUE(advertised.ok());
  const std::string peer = absl::StrCat("http://127.0.0.1:", *advertised);
  auto proc = BackgroundCommand::Start(
      {ServerBinary(), "--logger=zap", "--name", "zero", "--data-dir", dir.path() + "/data",
       "--listen-metrics-urls", "http://127.0.0.1:0",
       "--listen-client-urls", "http://127.0.0.1:0", "--advertise-client-urls",
       "http://127.0.0.1:2379", "--listen-peer-urls", "http://127.0.0.1:0",
       "--initial-advertise-peer-urls", peer, "--initial-cluster", "zero=" + peer},
      {}, dir.path());
  ASSERT_TRUE(proc.ok()) << proc.status();
  const char* kClientMsg = "serving client traffic insecurely; this is strongly discouraged!";
  std::string client;
  ASSERT_TRUE(PollUntil(
      [&] {
        client = LoggedAddress((*proc)->Stderr(), kClientMsg);
        return !client.empty();
      },
      std::chrono::seconds(30)))
      << (*proc)->Stderr();
  ASSERT_THAT(client, ::testing::MatchesRegex("127\\.0\\.0\\.1:[1-9][0-9]*"));
  const std::string peer_bound = LoggedAddress((*proc)->Stderr(), "serving peer traffic");
  ASSERT_THAT(peer_bound, ::testing::MatchesRegex("127\\.0\\.0\\.1:[1-9][0-9]*"))
      << (*proc)->Stderr();
  EXPECT_NE(peer_bound, client);
  CommandResult put = Etcdctl(client, {"put", "k", "v"});
  EXPECT_EQ(put.exit_code, 0) << put.err;
  EXPECT_EQ(put.out, "OK\n");
  CommandResult get = Etcdctl(client, {"get", "k", "--print-value-only"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "v\n");
  // The peer port is bound too.
  auto accepts = [](const std::string& address) {
    const int port = std::stoi(address.substr(address.rfind(':') + 1));
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    ::close(fd);
    return ok;
  };
  EXPECT_TRUE(accepts(peer_bound)) << peer_bound;
  // The metrics URL: etcd logs it as given ("http://127.0.0.1:0"); cppetcd
  // logs the bound port.
  std::string metrics;
  PollUntil(
      [&] {
        metrics = LoggedAddress((*proc)->Stderr(), "serving metrics");
        return !metrics.empty();
      },
      std::chrono::seconds(10));
  if (IsReferenceEtcd(ServerBinary())) {
    EXPECT_EQ(metrics, "http://127.0.0.1:0");
  } else {
    ASSERT_THAT(metrics, ::testing::MatchesRegex("http://127\\.0\\.0\\.1:[1-9][0-9]*"));
    EXPECT_TRUE(accepts(metrics)) << metrics;
  }
  (*proc)->Kill();
}

}  // namespace
}  // namespace cppetcd::integration
