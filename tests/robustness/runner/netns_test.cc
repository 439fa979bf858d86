// The netns mode's pieces: the nft rules a partition becomes (pure), the
// schedule's member sets, the flags; and, where this process may build
// namespaces (root), that the rules really drop what they say between two
// namespaces and that everything is removed afterwards.
#include "netns.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "faults.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runner.h"

namespace cppetcd::robustness {
namespace {

using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::vector<std::string> kAddrs = {"10.9.8.10", "10.9.8.11", "10.9.8.12", "10.9.8.13",
                                         "10.9.8.14"};

TEST(NftRulesTest, FullPartitionDropsBothWays) {
  EXPECT_EQ(NftRulesScript("cppetcd_rb_42", kAddrs, FullPartition({0, 3}, {1, 2, 4})),
            "flush chain bridge cppetcd_rb_42 forward\n"
            "add rule bridge cppetcd_rb_42 forward ip saddr { 10.9.8.10, 10.9.8.13 } "
            "ip daddr { 10.9.8.11, 10.9.8.12, 10.9.8.14 } counter drop\n"
            "add rule bridge cppetcd_rb_42 forward ip saddr { 10.9.8.11, 10.9.8.12, 10.9.8.14 } "
            "ip daddr { 10.9.8.10, 10.9.8.13 } counter drop\n");
}

TEST(NftRulesTest, OneWayDropsOnlyFromTheFirstSet) {
  EXPECT_EQ(NftRulesScript("t", kAddrs, OneWay({2}, {0, 1})),
            "flush chain bridge t forward\n"
            "add rule bridge t forward ip saddr { 10.9.8.12 } ip daddr { 10.9.8.10, 10.9.8.11 } "
            "counter drop\n");
}

TEST(NftRulesTest, IsolateCutsOneMemberFromAllOthers) {
  const auto cuts = IsolateMember(1, 3);
  ASSERT_EQ(cuts.size(), 2u);
  EXPECT_THAT(cuts[0].from, ElementsAre(1));
  EXPECT_THAT(cuts[0].to, ElementsAre(0, 2));
  EXPECT_THAT(cuts[1].from, ElementsAre(0, 2));
  EXPECT_THAT(cuts[1].to, ElementsAre(1));
  EXPECT_EQ(NftRulesScript("t", {"10.0.0.1", "10.0.0.2", "10.0.0.3"}, cuts),
            "flush chain bridge t forward\n"
            "add rule bridge t forward ip saddr { 10.0.0.2 } ip daddr { 10.0.0.1, 10.0.0.3 } "
            "counter drop\n"
            "add rule bridge t forward ip saddr { 10.0.0.1, 10.0.0.3 } ip daddr { 10.0.0.2 } "
            "counter drop\n");
}

TEST(NftRulesTest, HealAndBadSetsGiveOnlyTheFlush) {
  EXPECT_EQ(NftRulesScript("t", kAddrs, {}), "flush chain bridge t forward\n");
  // An empty side or a member that does not exist: no rule, not a wrong one.
  EXPECT_EQ(NftRulesScript("t", kAddrs, OneWay({}, {1})), "flush chain bridge t forward\n");
  EXPECT_EQ(NftRulesScript("t", kAddrs, OneWay({7}, {1})), "flush chain bridge t forward\n");
}

TEST(NftRulesTest, TableAndCounters) {
  EXPECT_EQ(NftTableScript("cppetcd_rb_7"),
            "table bridge cppetcd_rb_7 {\n  chain forward {\n    type filter hook forward "
            "priority 0; policy accept;\n  }\n}\n");
  EXPECT_EQ(DroppedPackets("table bridge t {\n chain forward {\n"
                           "  ip saddr 10.0.0.1 ip daddr { 10.0.0.2 } counter packets 12 bytes 900 drop\n"
                           "  ip saddr 10.0.0.2 ip daddr { 10.0.0.1 } counter packets 3 bytes 1 drop\n"
                           " }\n}\n"),
            15);
  EXPECT_EQ(DroppedPackets(""), 0);
}

TEST(NetnsScheduleTest, PartitionIsAMinorityOneWayAProperSubset) {
  const std::vector<FaultKind> kinds = {FaultKind::kNftPartition, FaultKind::kNftOneWay,
                                        FaultKind::kNftIsolateLeader};
  for (int members : {3, 5}) {
    std::set<int> partition_masks, oneway_masks;
    for (uint64_t seed = 1; seed <= 200; ++seed) {
      for (const ScheduledFault& f : MakeSchedule(seed, members, kinds, milliseconds(20'000))) {
        const auto set = MembersOf(f.param, members);
        if (f.kind == FaultKind::kNftPartition) {
          EXPECT_GE(set.size(), 1u);
          EXPECT_LE(static_cast<int>(set.size()), (members - 1) / 2) << "quorum side kept";
          partition_masks.insert(f.param);
        } else if (f.kind == FaultKind::kNftOneWay) {
          EXPECT_GE(set.size(), 1u);
          EXPECT_LT(static_cast<int>(set.size()), members);
          oneway_masks.insert(f.param);
        }
        EXPECT_EQ(f.param & ~((1 << members) - 1), 0) << "only existing members";
      }
    }
    // Every minority and every proper subset shows up over 200 seeds.
    EXPECT_EQ(partition_masks.size(), members == 3 ? 3u : 15u);
    EXPECT_EQ(oneway_masks.size(), members == 3 ? 6u : 30u);
  }
  EXPECT_THAT(MembersOf(0b10110, 5), ElementsAre(1, 2, 4));
  EXPECT_THAT(MembersOf(0b10110, 3), ElementsAre(1, 2));
}

TEST(NetnsArgsTest, KindsFollowTheNetMode) {
  auto proxy = ParseRunnerArgs({});
  ASSERT_TRUE(proxy.ok());
  EXPECT_EQ(proxy->net, NetMode::kProxy);
  EXPECT_EQ(proxy->faults, FaultKindsFor(NetMode::kProxy));
  auto netns = ParseRunnerArgs({"--net", "netns", "--faults", "all"});
  ASSERT_TRUE(netns.ok()) << netns.status();
  EXPECT_EQ(netns->faults, FaultKindsFor(NetMode::kNetns));
  for (FaultKind k : {FaultKind::kNftPartition, FaultKind::kNftOneWay,
                      FaultKind::kNftIsolateLeader, FaultKind::kKill}) {
    EXPECT_NE(std::find(netns->faults.begin(), netns->faults.end(), k), netns->faults.end())
        << FaultName(k);
  }
  for (FaultKind k : {FaultKind::kPartition, FaultKind::kResetPeer, FaultKind::kSlowPeer}) {
    EXPECT_EQ(std::find(netns->faults.begin(), netns->faults.end(), k), netns->faults.end())
        << FaultName(k);
    EXPECT_EQ(std::find(proxy->faults.begin(), proxy->faults.end(), k) == proxy->faults.end(),
              false);
  }
  // A listed kind that cannot work in the mode is refused, not ignored.
  auto nft_on_proxy = ParseRunnerArgs({"--faults", "nft-partition"});
  ASSERT_FALSE(nft_on_proxy.ok());
  EXPECT_THAT(std::string(nft_on_proxy.status().message()), HasSubstr("needs --net netns"));
  EXPECT_FALSE(ParseRunnerArgs({"--net=netns", "--faults", "reset-peer"}).ok());
  EXPECT_FALSE(ParseRunnerArgs({"--net", "vlan"}).ok());
  // The mode survives a replay.
  auto o = ParseRunnerArgs({"--net", "netns", "--faults", "nft-oneway,kill", "--seed", "5"});
  ASSERT_TRUE(o.ok()) << o.status();
  const auto args = ReplayArgs(*o, 5);
  EXPECT_THAT(args, ::testing::Contains("--net=netns"));
  auto replayed = ParseRunnerArgs(args);
  ASSERT_TRUE(replayed.ok()) << replayed.status();
  EXPECT_EQ(replayed->net, NetMode::kNetns);
  EXPECT_EQ(replayed->faults, o->faults);
}

// A socket made inside network namespace `ns_path` (setns on a helper
// thread: the namespace is per thread, a socket keeps the one it was made
// in).
int SocketIn(const std::string& ns_path) {
  int fd = -1;
  std::thread t([&] {
    int ns = ::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0) return;
    if (::setns(ns, CLONE_NEWNET) == 0) fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ::close(ns);
  });
  t.join();
  return fd;
}

sockaddr_in Addr(const std::string& ip, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  return a;
}

// Whether a TCP connection from namespace `from` to `to_ip`:`port` is set up
// within `timeout`.
bool Connects(const std::string& from, const std::string& to_ip, int port, milliseconds timeout) {
  int fd = SocketIn(from);
  if (fd < 0) return false;
  ::fcntl(fd, F_SETFL, O_NONBLOCK);
  sockaddr_in a = Addr(to_ip, port);
  int r = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  bool ok = r == 0;
  if (r != 0 && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) == 1) {
      int err = 0;
      socklen_t len = sizeof(err);
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      ok = err == 0;
    }
  }
  ::close(fd);
  return ok;
}

TEST(NetnsNetworkTest, RulesDropBetweenNamespacesAndEverythingIsRemoved) {
  if (absl::Status s = CheckNetnsCapability(); !s.ok()) GTEST_SKIP() << s.message();
  std::vector<std::string> names;
  {
    auto made = NetnsNetwork::Create(2);
    ASSERT_TRUE(made.ok()) << made.status();
    NetnsNetwork& net = **made;
    const auto nets = net.MemberNetworks();
    ASSERT_EQ(nets.size(), 2u);
    for (const auto& n : nets) names.push_back(n.netns_path);
    // A listener in each namespace on port 2380, as the members have.
    std::vector<int> listeners;
    for (int i = 0; i < 2; ++i) {
      int fd = SocketIn(nets[i].netns_path);
      ASSERT_GE(fd, 0);
      sockaddr_in a = Addr(nets[i].host, 2380);
      ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << std::strerror(errno);
      ASSERT_EQ(::listen(fd, 16), 0);
      listeners.push_back(fd);
    }
    const std::string& ns0 = nets[0].netns_path;
    const std::string& ns1 = nets[1].netns_path;
    const std::string& ip0 = nets[0].host;
    const std::string& ip1 = nets[1].host;
    const milliseconds quick(2000), blocked(400);
    EXPECT_TRUE(Connects(ns0, ip1, 2380, quick));
    EXPECT_TRUE(Connects(ns1, ip0, 2380, quick));
    // One way: m0 -> m1 dropped. A SYN from m1 reaches m0 but m0's answer is
    // dropped: TCP needs both ways, so neither connects.
    ASSERT_TRUE(net.SetCuts(OneWay({0}, {1})).ok());
    EXPECT_FALSE(Connects(ns0, ip1, 2380, blocked));
    EXPECT_FALSE(Connects(ns1, ip0, 2380, blocked));
    // Clients in the root namespace still reach both members.
    EXPECT_TRUE(Connects("/proc/self/ns/net", ip0, 2380, quick));
    EXPECT_TRUE(Connects("/proc/self/ns/net", ip1, 2380, quick));
    auto dropped = net.Heal();
    ASSERT_TRUE(dropped.ok()) << dropped.status();
    EXPECT_GE(*dropped, 2);  // at least one SYN and one SYN-ACK
    EXPECT_TRUE(Connects(ns0, ip1, 2380, quick));
    EXPECT_TRUE(Connects(ns1, ip0, 2380, quick));
    for (int fd : listeners) ::close(fd);
    EXPECT_TRUE(net.Teardown().ok());
  }
  for (const std::string& p : names) EXPECT_FALSE(std::filesystem::exists(p)) << p;
}

}  // namespace
}  // namespace cppetcd::robustness
