// unix:// and unixs:// URLs on the client and peer ports (etcd 3.4's
// embed/etcd.go and pkg/transport/unix_listener.go; e2e TestEtcdUnixPeers
// and the e2e clusters with baseScheme "unix"): the socket's path is the
// URL's host part, relative to the working directory. Driven by the real
// etcdctl (--endpoints unix://...). Validated against etcd 3.4 with
// CPPETCD_TEST_SERVER=/usr/bin/etcd.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cluster_harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_certs.h"

namespace cppetcd::integration {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;

// Each test runs in its own temporary directory (the sockets are relative
// to the working directory of the server and of etcdctl, which inherit it).
class UnixSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char buf[4096];
    ASSERT_NE(::getcwd(buf, sizeof(buf)), nullptr);
    old_cwd_ = buf;
    ASSERT_EQ(::chdir(dir_.path().c_str()), 0);
  }
  void TearDown() override {
    procs_.clear();  // SIGKILL and reap before the directory goes
    ASSERT_EQ(::chdir(old_cwd_.c_str()), 0);
  }

  // Starts a member with `flags` after the common ones; its output goes to
  // <dir>/<name>.
  BackgroundCommand* StartMember(const std::string& name, std::vector<std::string> flags) {
    std::vector<std::string> argv = {ServerBinary(), "--name", name, "--data-dir",
                                     absl::StrCat(dir_.path(), "/", name, ".etcd")};
    argv.insert(argv.end(), flags.begin(), flags.end());
    const std::string out = absl::StrCat(dir_.path(), "/", name);
    std::filesystem::create_directories(out);
    auto proc = BackgroundCommand::Start(argv, {}, out);
    EXPECT_TRUE(proc.ok()) << proc.status();
    if (!proc.ok()) return nullptr;
    procs_.push_back(*std::move(proc));
    return procs_.back().get();
  }

  // Polls `etcdctl endpoint health` on `endpoint` until it succeeds.
  bool WaitHealthy(const std::string& endpoint, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = extra;
    args.push_back("endpoint");
    args.push_back("health");
    return PollUntil([&] { return Etcdctl(endpoint, args, "", seconds(5)).exit_code == 0; },
                     seconds(30));
  }

  static bool Exists(const std::string& path) {
    std::error_code ec;
    return std::filesystem::exists(std::filesystem::symlink_status(path, ec));
  }

  TempDir dir_;
  std::string old_cwd_;
  std::vector<std::unique_ptr<BackgroundCommand>> procs_;
};

// One HTTP/1.1 GET over the unix socket `path`; the whole response.
std::string HttpGetUnix(const std::string& path, const std::string& target) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string req =
        absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      timeval tv{5, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      char buf[4096];
      for (int i = 0; i < 64; ++i) {  // bounded: a small response
        const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
      }
    }
  }
  ::close(fd);
  return out;
}

// A member whose client and peer URLs are unix sockets: etcdctl put/get
// and the HTTP endpoints over the client socket, the socket files named by
// the URL's host part, and both files gone after a clean stop.
TEST_F(UnixSocketTest, SingleMemberServesGrpcAndHttpOverUnixSockets) {
  CPPETCD_REQUIRE_SERVER();
  const std::string client = "unix://localhost:12379";
  const std::string peer = "unix://localhost:12380";
  BackgroundCommand* m = StartMember(
      "u1", {"--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", "u1=" + peer});
  ASSERT_NE(m, nullptr);
  ASSERT_TRUE(WaitHealthy(client)) << m->Stderr();
  EXPECT_TRUE(Exists("localhost:12379"));
  EXPECT_TRUE(Exists("localhost:12380"));
  CommandResult put = Etcdctl(client, {"put", "k", "v"});
  EXPECT_EQ(put.exit_code, 0) << put.err;
  EXPECT_EQ(put.out, "OK\n");
  CommandResult get = Etcdctl(client, {"get", "k", "--print-value-only"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "v\n");
  CommandResult members = Etcdctl(client, {"member", "list"});
  EXPECT_EQ(members.exit_code, 0) << members.err;
  EXPECT_THAT(members.out, HasSubstr(", u1, unix://localhost:12380, unix://localhost:12379"));
  EXPECT_THAT(HttpGetUnix("localhost:12379", "/version"), HasSubstr("\"etcdserver\":\"3.4"));
  EXPECT_THAT(HttpGetUnix("localhost:12379", "/health"), HasSubstr("\"health\":\"true\""));
  // A clean stop removes the socket files (Go's unix listeners do).
  ASSERT_EQ(::kill(m->pid(), SIGTERM), 0);
  EXPECT_TRUE(PollUntil([] { return !Exists("localhost:12379") && !Exists("localhost:12380"); },
                        seconds(20)))
      << m->Stderr();
}

// unixs://: TLS over the unix socket with the client certificate files, as
// https:// is over TCP; a plaintext client is refused.
TEST_F(UnixSocketTest, UnixsClientUrlIsTls) {
  CPPETCD_REQUIRE_SERVER();
  absl::StatusOr<TestCerts> certs = MakeTestCerts(dir_.path() + "/certs");
  ASSERT_TRUE(certs.ok()) << certs.status();
  const std::string client = "unixs://localhost:22379";
  const std::string peer = "unix://localhost:22380";
  BackgroundCommand* m = StartMember(
      "s1", {"--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", "s1=" + peer, "--cert-file", certs->server.cert, "--key-file",
             certs->server.key});
  ASSERT_NE(m, nullptr);
  const std::vector<std::string> tls = {"--cacert", certs->ca};
  ASSERT_TRUE(WaitHealthy(client, tls)) << m->Stderr();
  std::vector<std::string> args = tls;
  args.insert(args.end(), {"put", "k", "secure"});
  CommandResult put = Etcdctl(client, args);
  EXPECT_EQ(put.exit_code, 0) << put.err;
  args = tls;
  args.insert(args.end(), {"get", "k", "--print-value-only"});
  CommandResult get = Etcdctl(client, args);
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "secure\n");
  // Plaintext on the TLS socket gets no answer.
  CommandResult plain = Etcdctl("unix://localhost:22379", {"get", "k"}, "", seconds(3));
  EXPECT_NE(plain.exit_code, 0) << plain.out;
  EXPECT_EQ(HttpGetUnix("localhost:22379", "/version").find("etcdserver"), std::string::npos);
}

// Without --cert-file a unixs:// client URL is refused at start-up with
// etcd's error.
TEST_F(UnixSocketTest, UnixsClientUrlWithoutCertificateIsRefused) {
  CPPETCD_REQUIRE_SERVER();
  BackgroundCommand* m = StartMember(
      "r1", {"--listen-client-urls", "unixs://localhost:32379", "--advertise-client-urls",
             "unixs://localhost:32379", "--listen-peer-urls", "unix://localhost:32380",
             "--initial-advertise-peer-urls", "unix://localhost:32380", "--initial-cluster",
             "r1=unix://localhost:32380"});
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(PollUntil(
      [&] {
        return absl::StrContains(m->Stderr(),
                                 "TLS key/cert (--cert-file, --key-file) must be provided for "
                                 "client url unixs://localhost:32379 with HTTPS scheme");
      },
      seconds(20)))
      << m->Stderr();
}

// Three members whose peers talk over unix sockets (e2e's clusters with
// baseScheme "unix"): a write on one is read on the others, and member list
// shows the unix peer URLs.
TEST_F(UnixSocketTest, ThreeMemberClusterWithUnixPeers) {
  CPPETCD_REQUIRE_SERVER();
  std::vector<std::string> cluster;
  for (int i = 1; i <= 3; ++i) cluster.push_back(absl::StrCat("m", i, "=unix://localhost:1", i, "2"));
  const std::string initial = absl::StrJoin(cluster, ",");
  for (int i = 1; i <= 3; ++i) {
    const std::string client = absl::StrCat("unix://localhost:1", i, "1");
    const std::string peer = absl::StrCat("unix://localhost:1", i, "2");
    ASSERT_NE(StartMember(absl::StrCat("m", i),
                          {"--listen-client-urls", client, "--advertise-client-urls", client,
                           "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                           "--initial-cluster", initial, "--initial-cluster-token", "unix-peers"}),
              nullptr);
  }
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(WaitHealthy(absl::StrCat("unix://localhost:1", i, "1")))
        << procs_[static_cast<size_t>(i - 1)]->Stderr();
  }
  CommandResult put = Etcdctl("unix://localhost:111", {"put", "shared", "over-unix"});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  for (int i = 2; i <= 3; ++i) {
    CommandResult get = Etcdctl(absl::StrCat("unix://localhost:1", i, "1"),
                                {"get", "shared", "--print-value-only"});
    EXPECT_EQ(get.exit_code, 0) << get.err;
    EXPECT_EQ(get.out, "over-unix\n");
  }
  CommandResult members = Etcdctl("unix://localhost:131", {"member", "list"});
  EXPECT_EQ(members.exit_code, 0) << members.err;
  for (int i = 1; i <= 3; ++i) {
    EXPECT_THAT(members.out, HasSubstr(absl::StrCat(", m", i, ", unix://localhost:1", i,
                                                    "2, unix://localhost:1", i, "1")));
  }
}

// unixs:// peers: mutual TLS between members over unix sockets (the
// dialing member checks the server certificate for "localhost", gRPC's
// authority for a unix target). etcd 3.4 refuses every such connection with
// --peer-client-cert-auth ("address @: missing port in address": it checks
// the client certificate against a unix peer address), so this runs
// against cppetcd only.
TEST_F(UnixSocketTest, ThreeMemberClusterWithUnixsPeers) {
  CPPETCD_REQUIRE_SERVER();
  if (IsReferenceEtcd(ServerBinary())) GTEST_SKIP() << "etcd 3.4 refuses unixs peers";
  absl::StatusOr<TestCerts> certs = MakeTestCerts(dir_.path() + "/certs");
  ASSERT_TRUE(certs.ok()) << certs.status();
  std::vector<std::string> cluster;
  for (int i = 1; i <= 3; ++i) cluster.push_back(absl::StrCat("t", i, "=unixs://localhost:2", i, "2"));
  for (int i = 1; i <= 3; ++i) {
    const std::string client = absl::StrCat("unix://localhost:2", i, "1");
    const std::string peer = absl::StrCat("unixs://localhost:2", i, "2");
    ASSERT_NE(StartMember(absl::StrCat("t", i),
                          {"--listen-client-urls", client, "--advertise-client-urls", client,
                           "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                           "--initial-cluster", absl::StrJoin(cluster, ","),
                           "--peer-cert-file", certs->server.cert, "--peer-key-file",
                           certs->server.key, "--peer-trusted-ca-file", certs->ca,
                           "--peer-client-cert-auth"}),
              nullptr);
  }
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(WaitHealthy(absl::StrCat("unix://localhost:2", i, "1")))
        << procs_[static_cast<size_t>(i - 1)]->Stderr();
  }
  CommandResult put = Etcdctl("unix://localhost:211", {"put", "shared", "over-unixs"});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  CommandResult get = Etcdctl("unix://localhost:231", {"get", "shared", "--print-value-only"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "over-unixs\n");
}

}  // namespace
}  // namespace cppetcd::integration
