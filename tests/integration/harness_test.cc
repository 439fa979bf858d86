// Tests of the integration harness itself; no server needed (children are
// /bin/sh), so they run in every tree.
#include "harness.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cppetcd::integration {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(HarnessTest, PickFreePortGivesABindablePort) {
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok()) << port.status();
  EXPECT_GT(*port, 0);
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(*port));
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::close(fd);
}

// A member restarted on its old port must not find it taken by an outgoing
// connection: the kernel gives those ports from its ephemeral range only.
TEST(HarnessTest, PickFreePortIsBelowTheEphemeralRange) {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int lo = 0, hi = 0;
  if (!(in >> lo >> hi) || lo - 10000 < 1000) GTEST_SKIP() << "ephemeral range starts at " << lo;
  for (int i = 0; i < 20; ++i) {
    auto port = PickFreePort();
    ASSERT_TRUE(port.ok()) << port.status();
    EXPECT_GE(*port, 10000);
    EXPECT_LT(*port, lo);
  }
}

TEST(HarnessTest, RunCommandCapturesOutputsAndExitCode) {
  CommandResult r = RunCommand({"/bin/sh", "-c", "cat; echo out; echo err >&2; exit 3"},
                               "from stdin\n", {"CPPETCD_HARNESS_X=1"}, seconds(10));
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.term_signal, 0);
  EXPECT_EQ(r.out, "from stdin\nout\n");
  EXPECT_EQ(r.err, "err\n");
}

TEST(HarnessTest, RunCommandPassesEnvironment) {
  CommandResult r = RunCommand({"/bin/sh", "-c", "echo $CPPETCD_HARNESS_X"}, "",
                               {"CPPETCD_HARNESS_X=hello"}, seconds(10));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "hello\n");
}

TEST(HarnessTest, ChildThatIgnoresStdinDoesNotKillTheTest) {
  const std::string big(1 << 20, 'x');  // more than a pipe buffer
  CommandResult r = RunCommand({"/bin/sh", "-c", "exit 0"}, big, {}, seconds(10));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_FALSE(r.timed_out);
}

TEST(HarnessTest, RunCommandKillsAtTheDeadline) {
  const auto start = std::chrono::steady_clock::now();
  CommandResult r = RunCommand({"/bin/sh", "-c", "exec sleep 30"}, "", {}, milliseconds(300));
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.term_signal, SIGKILL);
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(10));
}

TEST(HarnessTest, RunCommandReportsAMissingBinary) {
  CommandResult r = RunCommand({"/nonexistent/cppetcd-harness"}, "", {}, seconds(5));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, ::testing::HasSubstr("No such file"));
}

TEST(HarnessTest, BackgroundCommandOutputIsPolled) {
  TempDir tmp;
  auto cmd = BackgroundCommand::Start({"/bin/sh", "-c", "echo one; echo two; exec sleep 30"}, {},
                                      tmp.path());
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  EXPECT_TRUE((*cmd)->WaitForStdout([](const std::string& s) { return s == "one\ntwo\n"; },
                                    seconds(10)));
  const pid_t pid = (*cmd)->pid();
  (*cmd)->Kill();
  EXPECT_NE(::kill(pid, 0), 0) << "child still alive after Kill";
}

TEST(HarnessTest, ServerStartFailsCleanlyWhenTheBinaryExits) {
  TempDir tmp;
  ServerProcess::Options o;
  o.binary = "/bin/false";
  o.data_dir = tmp.path() + "/data";
  o.ready_timeout = seconds(5);
  auto s = ServerProcess::Start(o);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), ::testing::HasSubstr("exit"));
}

TEST(HarnessTest, TextHelpers) {
  EXPECT_EQ(StripClientLogLines("{\"level\":\"warn\",\"msg\":\"x\"}\nError: boom\n"),
            "Error: boom\n");
  EXPECT_EQ(NormalizeIds("lease 390da1fde31da913 granted"), "lease <ID> granted");
  EXPECT_EQ(NormalizeIds("rev 12345"), "rev 12345");
  EXPECT_THAT(SplitLines("a\n\nb\n"), ::testing::ElementsAre("a", "", "b"));
  EXPECT_THAT(SplitLines("a"), ::testing::ElementsAre("a"));
  EXPECT_TRUE(SplitLines("").empty());
  EXPECT_TRUE(IsReferenceEtcd("/usr/bin/etcd"));
  EXPECT_FALSE(IsReferenceEtcd("/build/src/cmd/cppetcd"));
}

}  // namespace
}  // namespace cppetcd::integration
