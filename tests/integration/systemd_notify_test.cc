// systemd Type=notify on the real binary: the test plays the service
// manager, owning the datagram socket that $NOTIFY_SOCKET names. READY=1 must
// arrive only once clients are served, STOPPING=1 after SIGTERM (cppetcd
// only: etcd 3.4 sends READY=1 and nothing on the way down).
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness.h"

namespace cppetcd::integration {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The manager's end: a datagram socket bound at a file-system path.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (fd_ < 0 || path.size() >= sizeof(addr.sun_path)) return;
    std::memcpy(addr.sun_path, path.data(), path.size());
    bound_ = ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~NotifySocket() {
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path_.c_str());
  }
  bool bound() const { return bound_; }

  // The next datagram, or nullopt if none arrives within `timeout`.
  std::optional<std::string> Receive(milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool bound_ = false;
};

// True once `pid` (our unreaped child) has exited: a zombie or gone.
bool Exited(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return true;
  const size_t paren = line.rfind(')');
  return paren == std::string::npos || line.size() < paren + 3 || line[paren + 2] == 'Z' ||
         line[paren + 2] == 'X';
}

bool HasLine(const std::string& datagram, const std::string& want) {
  for (absl::string_view l : absl::StrSplit(datagram, '\n')) {
    if (l == want) return true;
  }
  return false;
}

// A linearizable Range answered within `timeout`; without wait-for-ready, so
// a server that is not listening yet fails at once.
bool AnswersClients(const std::string& endpoint, milliseconds timeout) {
  auto stub = etcdserverpb::KV::NewStub(
      grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  etcdserverpb::RangeRequest req;
  req.set_key("sd-notify");
  etcdserverpb::RangeResponse resp;
  return stub->Range(&ctx, req, &resp).ok();
}

TEST(SystemdNotifyTest, ReadyOnceServingAndStoppingOnSigterm) {
  CPPETCD_REQUIRE_SERVER();
  const std::string binary = ServerBinary();
  TempDir dir;
  const std::string socket_path = dir.path() + "/notify";
  NotifySocket manager(socket_path);
  ASSERT_TRUE(manager.bound()) << socket_path << ": " << std::strerror(errno);

  // A taken port makes the server exit before READY=1: retry with new ones.
  std::unique_ptr<BackgroundCommand> server;
  std::string endpoint;
  std::optional<std::string> ready;
  for (int attempt = 0; attempt < 3 && !ready; ++attempt) {
    absl::StatusOr<int> client_port = PickFreePort();
    absl::StatusOr<int> peer_port = PickFreePort();
    ASSERT_TRUE(client_port.ok() && peer_port.ok());
    endpoint = absl::StrCat("127.0.0.1:", *client_port);
    const std::string client_url = absl::StrCat("http://", endpoint);
    const std::string peer_url = absl::StrCat("http://127.0.0.1:", *peer_port);
    absl::StatusOr<std::unique_ptr<BackgroundCommand>> started = BackgroundCommand::Start(
        {binary, "--name", "sd", "--data-dir", absl::StrCat(dir.path(), "/data", attempt),
         "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
         "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
         "--initial-cluster", absl::StrCat("sd=", peer_url)},
        {absl::StrCat("NOTIFY_SOCKET=", socket_path)}, dir.path());
    ASSERT_TRUE(started.ok()) << started.status();
    server = *std::move(started);
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(30);
    while (!ready && Clock::now() < deadline && !Exited(server->pid())) {
      ready = manager.Receive(milliseconds(200));
    }
    if (ready) break;
    const bool exited = Exited(server->pid());
    server->Kill();
    if (!exited) break;  // running but silent: no retry
  }
  ASSERT_TRUE(ready.has_value()) << "no notification; stderr:\n" << server->Stderr();
  // The first message is the readiness, and it is true when it arrives.
  EXPECT_TRUE(HasLine(*ready, "READY=1")) << *ready;
  EXPECT_TRUE(AnswersClients(endpoint, milliseconds(5000)));

  ASSERT_EQ(::kill(server->pid(), SIGTERM), 0);
  if (!IsReferenceEtcd(binary)) {
    std::optional<std::string> stopping = manager.Receive(milliseconds(20000));
    ASSERT_TRUE(stopping.has_value()) << "no STOPPING=1; stderr:\n" << server->Stderr();
    EXPECT_TRUE(HasLine(*stopping, "STOPPING=1")) << *stopping;
  }
  EXPECT_TRUE(PollUntil([&] { return Exited(server->pid()); }, std::chrono::seconds(20)))
      << "still running after SIGTERM";
  // Nothing more after the stop notice.
  EXPECT_EQ(manager.Receive(milliseconds(0)), std::nullopt);
}

TEST(SystemdNotifyTest, NoNotifySocketStillServes) {
  CPPETCD_REQUIRE_SERVER();
  // Without $NOTIFY_SOCKET (not under systemd) the server starts as usual
  // and logs no notification error.
  ::unsetenv("NOTIFY_SOCKET");
  TempDir dir;
  ServerProcess::Options options;
  options.data_dir = dir.path() + "/data";
  absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_THAT((*server)->ReadLog(), ::testing::Not(::testing::HasSubstr("notify systemd")));
}

}  // namespace
}  // namespace cppetcd::integration
