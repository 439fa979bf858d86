// The fault harness's network mode `--net netns`: every member in its own
// network namespace, joined to the runner's (root) namespace by a veth pair
// whose host end is a port of one bridge per run; one nftables table per run
// (family bridge, hook forward) drops member-to-member IPv4 packets to make
// partitions: full (both ways between two sets), one-way (A->B dropped,
// B->A kept) and leader isolation. Client traffic (root namespace <->
// member) never crosses the forward hook, so clients always reach every
// member, as with the peer proxies of the default mode.
//
// Names carry the runner's PID so that runs side by side do not collide and
// a crashed run's leftovers can be found: namespaces cppetcd-rb-<pid>-m<i>,
// bridge cerb<pid>, host-side veths cerv<pid>m<i>, table bridge
// cppetcd_rb_<pid>. Addresses: 10.A.B.0/24 (a subnet no local interface
// uses), bridge .1, member i .(10+i).
//
// Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), ip(8) and nft(8). Not
// thread-safe: used from the thread that drives the cluster.
#ifndef CPPETCD_TESTS_ROBUSTNESS_RUNNER_NETNS_H_
#define CPPETCD_TESTS_ROBUSTNESS_RUNNER_NETNS_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cluster_harness.h"

namespace cppetcd::robustness {

// The exit status of cppetcd-robustness when the environment cannot give
// what was asked for (--net netns without root, ip, nft or namespaces);
// CTest's SKIP_RETURN_CODE for the netns seeds.
inline constexpr int kExitUnsupported = 77;

// One rule: IPv4 packets from any member in `from` to any member in `to`
// are dropped (member indices).
struct NetCut {
  std::vector<int> from;
  std::vector<int> to;
};

// Both ways between `a` and `b`.
std::vector<NetCut> FullPartition(const std::vector<int>& a, const std::vector<int>& b);
// `from` -> `to` dropped; `to` -> `from` kept. On TCP this stalls the
// connections `to` opens too (their ACKs are dropped), as a real one-way
// loss does; datagrams and fresh SYNs from `to` still arrive.
std::vector<NetCut> OneWay(const std::vector<int>& from, const std::vector<int>& to);
// Member `i` cut off from every other one of `members`, both ways.
std::vector<NetCut> IsolateMember(int i, int members);

// nft(8) input creating `table` (family bridge) with an empty forward chain
// that accepts by default.
std::string NftTableScript(const std::string& table);
// nft(8) input replacing the table's rules by `cuts`, one transaction (the
// rules change atomically): a flush of the chain, then one counted drop
// rule per cut with the members' `addresses` (index = member). Cuts with an
// empty side or an index outside `addresses` give no rule. No cuts: heal.
std::string NftRulesScript(const std::string& table, const std::vector<std::string>& addresses,
                           const std::vector<NetCut>& cuts);
// Sum of the "counter packets N" of an `nft list` printout.
int64_t DroppedPackets(const std::string& nft_list_output);

// ip(8) and nft(8), or "" when not installed.
std::string IpTool();
std::string NftTool();

// Whether this process can build the network: root or CAP_NET_ADMIN plus
// CAP_SYS_ADMIN, ip and nft installed, and a probe namespace and nft table
// can be created (and are removed again). kFailedPrecondition says what is
// missing.
absl::Status CheckNetnsCapability();

// Removes namespaces, links and nft tables of this naming whose PID is not
// a live process (a crashed or killed run). Returns one line per thing
// removed.
std::vector<std::string> CleanStaleNetns();

class NetnsNetwork {
 public:
  // Builds the namespaces, veths, bridge and table for `members` members.
  // One network per process at a time (names carry the PID only). On
  // error, whatever was made is removed again.
  static absl::StatusOr<std::unique_ptr<NetnsNetwork>> Create(int members);
  // Tears everything down (see Teardown); errors go to stderr.
  ~NetnsNetwork();
  NetnsNetwork(const NetnsNetwork&) = delete;
  NetnsNetwork& operator=(const NetnsNetwork&) = delete;

  // Where each member slot lives, for Cluster::Options::networks.
  std::vector<integration::Cluster::MemberNetwork> MemberNetworks() const;
  const std::vector<std::string>& addresses() const { return addresses_; }
  const std::string& table() const { return table_; }

  // Replaces the drop rules by `cuts` (empty: heal). Returns the packets
  // the replaced rules dropped.
  absl::StatusOr<int64_t> SetCuts(const std::vector<NetCut>& cuts);
  // SetCuts({}).
  absl::StatusOr<int64_t> Heal() { return SetCuts({}); }

  // Removes the table, the veths, the namespaces and the bridge; then
  // checks that none of them is left. Idempotent. Members must have been
  // stopped first.
  absl::Status Teardown();

 private:
  NetnsNetwork() = default;

  std::string bridge_;
  std::string table_;
  std::vector<std::string> namespaces_;  // index = member
  std::vector<std::string> veths_;       // host ends
  std::vector<std::string> addresses_;   // members' IPv4 addresses
  std::string bridge_address_;
  bool torn_down_ = false;
};

}  // namespace cppetcd::robustness

#endif  // CPPETCD_TESTS_ROBUSTNESS_RUNNER_NETNS_H_
