// The fault proxy's own tests (no server needed): pass, blackhole, reset,
// healing, cutting the connections a given process dialed, delay and lossy
// resets.
#include "fault_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "harness.h"

namespace cppetcd::integration {
namespace {

using std::chrono::seconds;

// A loopback echo server on a free port, served by one thread.
class EchoServer {
 public:
  EchoServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ::listen(fd_, 16);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      for (int i = 0; i < 16; ++i) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        char buf[256];
        for (int k = 0; k < 1000; ++k) {
          ssize_t n = ::read(c, buf, sizeof(buf));
          if (n <= 0) break;
          if (::send(c, buf, n, MSG_NOSIGNAL) != n) break;
        }
        ::close(c);
      }
    });
  }
  ~EchoServer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

int Dial(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{0, 300 * 1000};  // reads give up after 300 ms
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// Sends `msg` and reads the echo; "" on timeout, "<closed>" on EOF/reset.
std::string RoundTrip(int fd, const std::string& msg) {
  if (::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(msg.size())) {
    return "<closed>";
  }
  std::string got;
  char buf[256];
  while (got.size() < msg.size()) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n == 0) return "<closed>";
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? got : "<closed>";
    got.append(buf, n);
  }
  return got;
}

TEST(FaultProxyTest, PassesBlackholesResetsAndHeals) {
  EchoServer echo;
  auto proxy = FaultProxy::Start(echo.port());
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  int a = Dial((*proxy)->port());
  ASSERT_GE(a, 0);
  EXPECT_EQ(RoundTrip(a, "hello"), "hello");

  (*proxy)->SetMode(FaultProxy::Mode::kBlackhole);
  ASSERT_TRUE(
      PollUntil([&] { return (*proxy)->mode() == FaultProxy::Mode::kBlackhole; }, seconds(1)));
  EXPECT_EQ(RoundTrip(a, "lost"), "");  // silence, not an error
  int b = Dial((*proxy)->port());       // new connections are accepted...
  ASSERT_GE(b, 0);
  EXPECT_EQ(RoundTrip(b, "lost too"), "");  // ...and go nowhere
  EXPECT_TRUE(PollUntil([&] { return (*proxy)->dropped_bytes() >= 12; }, seconds(2)));

  // Healing resets the connections that lost bytes; new ones work.
  (*proxy)->SetMode(FaultProxy::Mode::kPass);
  EXPECT_EQ(RoundTrip(a, "x"), "<closed>");
  ::close(a);
  ::close(b);
  int c = Dial((*proxy)->port());
  ASSERT_GE(c, 0);
  EXPECT_EQ(RoundTrip(c, "back"), "back");

  (*proxy)->SetMode(FaultProxy::Mode::kReset);
  EXPECT_EQ(RoundTrip(c, "y"), "<closed>");
  ::close(c);
  int d = Dial((*proxy)->port());
  if (d >= 0) {
    EXPECT_EQ(RoundTrip(d, "z"), "<closed>");
    ::close(d);
  }
}

// Connections dialed by a blocked process are cut both ways; others pass.
TEST(FaultProxyTest, BlocksConnectionsOfAProcess) {
  EchoServer echo;
  auto proxy = FaultProxy::Start(echo.port());
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  int a = Dial((*proxy)->port());
  ASSERT_GE(a, 0);
  EXPECT_EQ(RoundTrip(a, "one"), "one");
  (*proxy)->SetBlockedSources({::getpid() + 1000000});  // nobody
  EXPECT_EQ(RoundTrip(a, "two"), "two");
  (*proxy)->SetBlockedSources({::getpid()});
  EXPECT_TRUE(PollUntil([&] { return RoundTrip(a, "three") == ""; }, seconds(2)));
  int b = Dial((*proxy)->port());  // dialed while blocked: cut from the start
  ASSERT_GE(b, 0);
  EXPECT_EQ(RoundTrip(b, "four"), "");
  (*proxy)->SetBlockedSources({});
  EXPECT_EQ(RoundTrip(a, "x"), "<closed>");
  ::close(a);
  ::close(b);
  int c = Dial((*proxy)->port());
  ASSERT_GE(c, 0);
  EXPECT_EQ(RoundTrip(c, "five"), "five");
  ::close(c);
}

// SetDelay holds bytes back in both directions, keeps them whole and in
// order, and lifting it makes the link fast again.
TEST(FaultProxyTest, DelaysBytesBothWays) {
  EchoServer echo;
  auto proxy = FaultProxy::Start(echo.port());
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  int a = Dial((*proxy)->port());
  ASSERT_GE(a, 0);
  EXPECT_EQ(RoundTrip(a, "warm"), "warm");
  (*proxy)->SetDelay(std::chrono::milliseconds(80), std::chrono::milliseconds(20));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(RoundTrip(a, "slow"), "slow");  // 160..200 ms, under Dial's 300 ms
  const auto rtt = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(rtt, std::chrono::milliseconds(150));
  // Several chunks in flight arrive whole and in order.
  EXPECT_EQ(RoundTrip(a, "abcdefghij"), "abcdefghij");
  (*proxy)->SetDelay(std::chrono::milliseconds(0));
  // Chunks already queued drain first; then the link is fast.
  ASSERT_TRUE(PollUntil(
      [&] {
        const auto t1 = std::chrono::steady_clock::now();
        return RoundTrip(a, "fast") == "fast" &&
               std::chrono::steady_clock::now() - t1 < std::chrono::milliseconds(60);
      },
      seconds(2)));
  ::close(a);
}

// SetResetPerMille(1000) resets a connection at its first chunk; 0 lifts it.
TEST(FaultProxyTest, LossyLinkResetsConnections) {
  EchoServer echo;
  auto proxy = FaultProxy::Start(echo.port());
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  (*proxy)->SetResetPerMille(1000);
  int a = Dial((*proxy)->port());
  ASSERT_GE(a, 0);
  EXPECT_EQ(RoundTrip(a, "gone"), "<closed>");
  ::close(a);
  EXPECT_GE((*proxy)->lossy_resets(), 1);
  (*proxy)->SetResetPerMille(0);
  int b = Dial((*proxy)->port());
  ASSERT_GE(b, 0);
  EXPECT_EQ(RoundTrip(b, "kept"), "kept");
  ::close(b);
}

}  // namespace
}  // namespace cppetcd::integration
