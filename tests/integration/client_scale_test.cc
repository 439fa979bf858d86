// Issue 12's "done when": 10,000 open mutual-TLS connections to a gRPC-only
// client URL (--listen-client-http-urls set, so gRPC terminates TLS itself
// and owns each connection's one descriptor), with the server's thread
// count under 100 and a put through a new connection served promptly.
//
// The connections come from bench/idle-conns-bench (TLS handshake with a
// client certificate, HTTP/2 preface and SETTINGS, the server's SETTINGS
// acknowledged, then silence) in a child process that raises its soft
// RLIMIT_NOFILE to the hard limit. CPPETCD_SCALE_CONNS overrides the count
// (default 10000).
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "test_certs.h"

namespace cppetcd::integration {
namespace {

using std::chrono::seconds;

// Threads of process `pid` (/proc/<pid>/status), -1 if unreadable.
int Threads(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "Threads:")) {
      int n = -1;
      return absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(8)), &n) ? n : -1;
    }
  }
  return -1;
}

// Open descriptors of process `pid`.
size_t OpenFds(pid_t pid) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/fd"), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

// bench/idle-conns-bench next to the server binary's build tree
// ($CPPETCD_IDLE_CONNS_BENCH overrides).
std::string IdleConnsBench() {
  if (const char* e = std::getenv("CPPETCD_IDLE_CONNS_BENCH"); e != nullptr && *e != '\0') {
    return e;
  }
#ifdef CPPETCD_BENCH_DIR
  return std::string(CPPETCD_BENCH_DIR) + "/idle-conns-bench";
#else
  return "";
#endif
}

TEST(ClientScaleTest, TenThousandMutualTlsConnectionsToGrpcOnlyUrl) {
  CPPETCD_REQUIRE_SERVER();
  if (IsReferenceEtcd(ServerBinary())) GTEST_SKIP() << "etcd 3.4 has no --listen-client-http-urls";
  const std::string bench = IdleConnsBench();
  ASSERT_FALSE(bench.empty());
  ASSERT_EQ(access(bench.c_str(), X_OK), 0)
      << bench << " missing: build the idle-conns-bench target (CPPETCD_BUILD_BENCH)";
  size_t conns = 10000;
  if (const char* e = std::getenv("CPPETCD_SCALE_CONNS"); e != nullptr && *e != '\0') {
    ASSERT_TRUE(absl::SimpleAtoi(e, &conns));
  }
  rlimit rl{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  ASSERT_GT(rl.rlim_max, conns + 500) << "the hard RLIMIT_NOFILE is too low for " << conns;

  TempDir tmp;
  auto certs = MakeTestCerts(tmp.path() + "/certs");
  ASSERT_TRUE(certs.ok()) << certs.status();
  absl::StatusOr<int> grpc_port = PickFreePort(), http_port = PickFreePort(),
                      peer_port = PickFreePort();
  ASSERT_TRUE(grpc_port.ok() && http_port.ok() && peer_port.ok());
  const std::string grpc_ep = absl::StrCat("127.0.0.1:", *grpc_port);
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", *peer_port);
  const std::vector<std::string> argv = {
      ServerBinary(), "--name", "s", "--data-dir", tmp.path() + "/s.data",
      "--listen-client-urls", "https://" + grpc_ep,
      "--listen-client-http-urls", absl::StrCat("https://127.0.0.1:", *http_port),
      "--advertise-client-urls", "https://" + grpc_ep,
      "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
      "--initial-cluster", "s=" + peer_url,
      "--cert-file", certs->server.cert, "--key-file", certs->server.key,
      "--trusted-ca-file", certs->ca, "--client-cert-auth"};
  auto server = BackgroundCommand::Start(argv, {}, tmp.path());
  ASSERT_TRUE(server.ok()) << server.status();
  const std::vector<std::string> tls = {"--cacert=" + certs->ca,
                                        "--cert=" + certs->Client("root").cert,
                                        "--key=" + certs->Client("root").key};
  auto ctl = [&](const std::vector<std::string>& args) {
    std::vector<std::string> a = tls;
    a.insert(a.end(), args.begin(), args.end());
    return Etcdctl(grpc_ep, a, "", seconds(10));
  };
  ASSERT_TRUE(PollUntil([&] { return ctl({"endpoint", "health"}).exit_code == 0; }, seconds(30)))
      << (*server)->Stderr();
  const pid_t pid = (*server)->pid();
  const int threads_before = Threads(pid);

  std::filesystem::create_directories(tmp.path() + "/holder");
  auto holder = BackgroundCommand::Start(
      {bench, "--endpoint", grpc_ep, "--cacert", certs->ca, "--cert", certs->Client("root").cert,
       "--key", certs->Client("root").key, "--conns", std::to_string(conns), "--hold-seconds",
       "120", "--threads", "2"},
      {}, tmp.path() + "/holder");
  ASSERT_TRUE(holder.ok()) << holder.status();
  const bool ready = (*holder)->WaitForStdout(
      [](const std::string& out) { return absl::StrContains(out, "ready "); }, seconds(90));
  ASSERT_TRUE(ready) << "holder: " << (*holder)->Stdout() << (*holder)->Stderr();
  // "setup <n> <s>\nready <settled> <s>"
  std::istringstream words((*holder)->Stdout());
  std::string word, setup_s, ready_s;
  size_t settled = 0;
  while (words >> word) {
    if (word == "setup") words >> word >> setup_s;
    if (word == "ready") words >> settled >> ready_s;
  }
  ASSERT_EQ(settled, conns) << (*holder)->Stdout() << (*holder)->Stderr();

  const int threads = Threads(pid);
  const size_t fds = OpenFds(pid);
  const auto put_start = std::chrono::steady_clock::now();
  CommandResult put = ctl({"put", "scale", "ok"});
  const double put_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - put_start).count();
  RecordProperty("connections", static_cast<int>(conns));
  RecordProperty("threads", threads);
  RecordProperty("fds", static_cast<int>(fds));
  std::printf("connections %zu set-up %s s ready %s s threads %d (before %d) fds %zu put %.3f s\n",
              conns, setup_s.c_str(), ready_s.c_str(), threads, threads_before, fds, put_s);
  EXPECT_LT(threads, 100);
  // One descriptor per connection (plus the process's own few hundred).
  EXPECT_GE(fds, conns);
  EXPECT_LT(fds, conns + 500);
  EXPECT_EQ(put.exit_code, 0) << put.err;
  EXPECT_LT(put_s, 5.0);
  CommandResult get = ctl({"get", "scale", "--print-value-only"});
  EXPECT_EQ(get.out, "ok\n") << get.err;
  (*holder)->Kill();
}

}  // namespace
}  // namespace cppetcd::integration
