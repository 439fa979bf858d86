#include "netns.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <set>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "harness.h"

namespace cppetcd::robustness {
namespace {

using std::chrono::milliseconds;

constexpr char kNamespacePrefix[] = "cppetcd-rb-";
constexpr char kBridgePrefix[] = "cerb";
constexpr char kVethPrefix[] = "cerv";
constexpr char kTablePrefix[] = "cppetcd_rb_";
constexpr char kChain[] = "forward";

std::string FirstExecutable(std::initializer_list<const char*> paths) {
  for (const char* p : paths) {
    if (::access(p, X_OK) == 0) return p;
  }
  return "";
}

// Runs a tool; the error names the command and carries its stderr.
absl::Status Run(const std::vector<std::string>& argv, const std::string& stdin_data = "") {
  integration::CommandResult r = integration::RunCommand(argv, stdin_data, {}, milliseconds(20'000));
  if (r.exit_code == 0) return absl::OkStatus();
  std::string err = r.err.empty() ? r.out : r.err;
  while (!err.empty() && err.back() == '\n') err.pop_back();
  return absl::InternalError(absl::StrCat(absl::StrJoin(argv, " "), ": exit ", r.exit_code,
                                          r.timed_out ? " (timed out)" : "", ": ", err));
}

absl::StatusOr<std::string> Output(const std::vector<std::string>& argv) {
  integration::CommandResult r = integration::RunCommand(argv, "", {}, milliseconds(20'000));
  if (r.exit_code != 0) {
    return absl::InternalError(absl::StrCat(absl::StrJoin(argv, " "), ": exit ", r.exit_code,
                                            ": ", r.err));
  }
  return r.out;
}

std::string Members(const std::vector<int>& v, const std::vector<std::string>& addresses,
                    bool* ok) {
  std::vector<std::string> a;
  for (int i : v) {
    if (i < 0 || i >= static_cast<int>(addresses.size())) {
      *ok = false;
      return "";
    }
    a.push_back(addresses[i]);
  }
  *ok = !a.empty();
  return absl::StrCat("{ ", absl::StrJoin(a, ", "), " }");
}

// Whether `pid` is a live process (a zombie, killed but not yet reaped,
// is dead). Any live process counts, not only cppetcd-robustness: the
// runner's unit test builds networks under its own PID too, and a PID
// reused by another program only delays the cleanup until it ends.
bool LiveProcess(pid_t pid) {
  if (pid == ::getpid()) return true;
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat;
  if (!std::getline(in, stat)) return false;
  // "<pid> (<comm>) <state> ..."; comm may hold spaces and parentheses.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return false;
  const char state = stat[close + 2];
  return state != 'Z' && state != 'X';
}

// The PID in `name` after `prefix` (digits up to the first non-digit), or 0.
pid_t PidAfter(const std::string& name, const std::string& prefix) {
  if (name.rfind(prefix, 0) != 0) return 0;
  size_t end = prefix.size();
  while (end < name.size() && name[end] >= '0' && name[end] <= '9') ++end;
  int64_t pid = 0;
  if (!absl::SimpleAtoi(name.substr(prefix.size(), end - prefix.size()), &pid) || pid <= 0) {
    return 0;
  }
  return static_cast<pid_t>(pid);
}

// IPv4 addresses of the interfaces of this (root) namespace.
std::set<uint32_t> LocalAddresses() {
  std::set<uint32_t> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
    out.insert(ntohl(reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr));
  }
  ::freeifaddrs(list);
  return out;
}

// A 10.A.B.0/24 no local interface is in, starting from one derived from
// the PID (runs side by side differ). "" if none of 256 candidates is free.
std::string PickSubnet() {
  const std::set<uint32_t> used = LocalAddresses();
  const uint32_t start = static_cast<uint32_t>(::getpid()) % 16000;
  for (uint32_t k = 0; k < 256; ++k) {
    const uint32_t idx = (start + k * 61) % 16000;
    const uint32_t a = 100 + idx / 250, b = idx % 250;
    const uint32_t net = (10u << 24) | (a << 16) | (b << 8);
    auto it = used.lower_bound(net);
    if (it != used.end() && *it < net + 256) continue;
    return absl::StrCat("10.", a, ".", b, ".");
  }
  return "";
}

}  // namespace

std::vector<NetCut> FullPartition(const std::vector<int>& a, const std::vector<int>& b) {
  return {NetCut{a, b}, NetCut{b, a}};
}

std::vector<NetCut> OneWay(const std::vector<int>& from, const std::vector<int>& to) {
  return {NetCut{from, to}};
}

std::vector<NetCut> IsolateMember(int i, int members) {
  std::vector<int> others;
  for (int k = 0; k < members; ++k) {
    if (k != i) others.push_back(k);
  }
  return FullPartition({i}, others);
}

std::string NftTableScript(const std::string& table) {
  return absl::StrCat("table bridge ", table, " {\n  chain ", kChain, " {\n    type filter hook ",
                      kChain, " priority 0; policy accept;\n  }\n}\n");
}

std::string NftRulesScript(const std::string& table, const std::vector<std::string>& addresses,
                           const std::vector<NetCut>& cuts) {
  std::string out = absl::StrCat("flush chain bridge ", table, " ", kChain, "\n");
  for (const NetCut& c : cuts) {
    bool from_ok = false, to_ok = false;
    const std::string from = Members(c.from, addresses, &from_ok);
    const std::string to = Members(c.to, addresses, &to_ok);
    if (!from_ok || !to_ok) continue;
    absl::StrAppend(&out, "add rule bridge ", table, " ", kChain, " ip saddr ", from,
                    " ip daddr ", to, " counter drop\n");
  }
  return out;
}

int64_t DroppedPackets(const std::string& text) {
  static const std::regex kCounter("counter packets ([0-9]+)");
  int64_t sum = 0;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), kCounter);
       it != std::sregex_iterator(); ++it) {
    int64_t n = 0;
    if (absl::SimpleAtoi((*it)[1].str(), &n)) sum += n;
  }
  return sum;
}

std::string IpTool() { return FirstExecutable({"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}); }
std::string NftTool() { return FirstExecutable({"/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"}); }

absl::Status CheckNetnsCapability() {
  const std::string ip = IpTool(), nft = NftTool();
  if (ip.empty()) {
    return absl::FailedPreconditionError("ip(8) not found (Debian package iproute2; cmake/install-deps.sh)");
  }
  if (nft.empty()) {
    return absl::FailedPreconditionError("nft(8) not found (Debian package nftables; cmake/install-deps.sh)");
  }
  // Effective capabilities: CAP_NET_ADMIN (12) for links and nftables,
  // CAP_SYS_ADMIN (21) for setns(2) and ip netns add's bind mount.
  uint64_t caps = 0;
  {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("CapEff:", 0) == 0) {
        absl::SimpleHexAtoi(absl::StripAsciiWhitespace(line.substr(7)), &caps);
      }
    }
  }
  const bool net_admin = (caps >> 12) & 1, sys_admin = (caps >> 21) & 1;
  if (!net_admin || !sys_admin) {
    return absl::FailedPreconditionError(absl::StrCat(
        ::geteuid() == 0 ? "root without " : "not root and without ",
        !net_admin ? "CAP_NET_ADMIN" : "", !net_admin && !sys_admin ? " and " : "",
        !sys_admin ? "CAP_SYS_ADMIN" : ""));
  }
  // The real test: can we make (and remove) a namespace and a table?
  const std::string probe_ns = absl::StrCat(kNamespacePrefix, ::getpid(), "-probe");
  const std::string probe_table = absl::StrCat(kTablePrefix, ::getpid(), "_probe");
  absl::Status s = Run({ip, "netns", "add", probe_ns});
  if (s.ok()) {
    s = Run({ip, "netns", "del", probe_ns});
  }
  if (!s.ok()) return absl::FailedPreconditionError("network namespaces unavailable: " + std::string(s.message()));
  s = Run({nft, "-f", "-"}, NftTableScript(probe_table));
  if (s.ok()) s = Run({nft, "delete", "table", "bridge", probe_table});
  if (!s.ok()) return absl::FailedPreconditionError("nftables unavailable: " + std::string(s.message()));
  return absl::OkStatus();
}

std::vector<std::string> CleanStaleNetns() {
  std::vector<std::string> removed;
  const std::string ip = IpTool(), nft = NftTool();
  if (ip.empty()) return removed;
  namespace fs = std::filesystem;
  std::error_code ec;
  // Host-side veths first: a namespace can outlive its deletion for a while
  // (the kernel frees it lazily), and with it the veth pair.
  std::vector<std::string> links;
  for (const auto& e : fs::directory_iterator("/sys/class/net", ec)) {
    links.push_back(e.path().filename().string());
  }
  std::sort(links.begin(), links.end(), [](const std::string& a, const std::string& b) {
    return (a.rfind(kVethPrefix, 0) == 0) > (b.rfind(kVethPrefix, 0) == 0);  // veths first
  });
  for (const std::string& name : links) {
    for (const char* prefix : {kVethPrefix, kBridgePrefix}) {
      const pid_t pid = PidAfter(name, prefix);
      if (pid == 0 || LiveProcess(pid)) continue;
      if (Run({ip, "link", "del", name}).ok()) removed.push_back("link " + name);
    }
  }
  for (const auto& e : fs::directory_iterator("/run/netns", ec)) {
    const std::string name = e.path().filename().string();
    const pid_t pid = PidAfter(name, kNamespacePrefix);
    if (pid == 0 || LiveProcess(pid)) continue;
    if (Run({ip, "netns", "del", name}).ok()) removed.push_back("namespace " + name);
  }
  if (!nft.empty()) {
    auto tables = Output({nft, "list", "tables"});
    if (tables.ok()) {
      for (absl::string_view line : absl::StrSplit(*tables, '\n', absl::SkipEmpty())) {
        // "table bridge cppetcd_rb_<pid>"
        std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
        if (words.size() != 3 || words[0] != "table") continue;
        const pid_t pid = PidAfter(words[2], kTablePrefix);
        if (pid == 0 || LiveProcess(pid)) continue;
        if (Run({nft, "delete", "table", words[1], words[2]}).ok()) {
          removed.push_back(absl::StrCat("nft table ", words[1], " ", words[2]));
        }
      }
    }
  }
  return removed;
}

absl::StatusOr<std::unique_ptr<NetnsNetwork>> NetnsNetwork::Create(int members) {
  const std::string ip = IpTool(), nft = NftTool();
  if (ip.empty() || nft.empty()) return absl::FailedPreconditionError("ip or nft not installed");
  const std::string subnet = PickSubnet();
  if (subnet.empty()) return absl::ResourceExhaustedError("no free 10.x.y.0/24 subnet");
  std::unique_ptr<NetnsNetwork> n(new NetnsNetwork());
  const pid_t pid = ::getpid();
  n->bridge_ = absl::StrCat(kBridgePrefix, pid);
  n->table_ = absl::StrCat(kTablePrefix, pid);
  n->bridge_address_ = subnet + "1";
  for (int i = 0; i < members; ++i) {
    n->namespaces_.push_back(absl::StrCat(kNamespacePrefix, pid, "-m", i));
    n->veths_.push_back(absl::StrCat(kVethPrefix, pid, "m", i));
    n->addresses_.push_back(absl::StrCat(subnet, 10 + i));
  }
  // From here on the destructor removes whatever exists.
  auto build = [&]() -> absl::Status {
    std::vector<std::vector<std::string>> cmds = {
        {ip, "link", "add", n->bridge_, "type", "bridge"},
        {ip, "addr", "add", n->bridge_address_ + "/24", "dev", n->bridge_},
        {ip, "link", "set", n->bridge_, "up"},
    };
    for (int i = 0; i < members; ++i) {
      const std::string& ns = n->namespaces_[i];
      const std::string& veth = n->veths_[i];
      cmds.push_back({ip, "netns", "add", ns});
      cmds.push_back({ip, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns});
      cmds.push_back({ip, "link", "set", veth, "master", n->bridge_, "up"});
      cmds.push_back({ip, "-n", ns, "addr", "add", n->addresses_[i] + "/24", "dev", "eth0"});
      cmds.push_back({ip, "-n", ns, "link", "set", "eth0", "up"});
      cmds.push_back({ip, "-n", ns, "link", "set", "lo", "up"});
    }
    for (const auto& c : cmds) {
      if (absl::Status s = Run(c); !s.ok()) return s;
    }
    return Run({nft, "-f", "-"}, NftTableScript(n->table_));
  };
  if (absl::Status s = build(); !s.ok()) {
    n->Teardown().IgnoreError();
    return s;
  }
  return n;
}

NetnsNetwork::~NetnsNetwork() {
  if (absl::Status s = Teardown(); !s.ok()) {
    std::cerr << "netns teardown: " << s.message() << std::endl;
  }
}

std::vector<integration::Cluster::MemberNetwork> NetnsNetwork::MemberNetworks() const {
  std::vector<integration::Cluster::MemberNetwork> out;
  for (size_t i = 0; i < namespaces_.size(); ++i) {
    out.push_back({addresses_[i], "/run/netns/" + namespaces_[i]});
  }
  return out;
}

absl::StatusOr<int64_t> NetnsNetwork::SetCuts(const std::vector<NetCut>& cuts) {
  const std::string nft = NftTool();
  auto listed = Output({nft, "list", "chain", "bridge", table_, kChain});
  const int64_t dropped = listed.ok() ? DroppedPackets(*listed) : 0;
  if (absl::Status s = Run({nft, "-f", "-"}, NftRulesScript(table_, addresses_, cuts)); !s.ok()) {
    return s;
  }
  return dropped;
}

absl::Status NetnsNetwork::Teardown() {
  if (torn_down_) return absl::OkStatus();
  torn_down_ = true;
  const std::string ip = IpTool(), nft = NftTool();
  // Errors of the removals are ignored (a part may never have been made);
  // what is left afterwards is the error.
  Run({nft, "delete", "table", "bridge", table_}).IgnoreError();
  for (const std::string& v : veths_) Run({ip, "link", "del", v}).IgnoreError();
  for (const std::string& ns : namespaces_) Run({ip, "netns", "del", ns}).IgnoreError();
  Run({ip, "link", "del", bridge_}).IgnoreError();
  std::vector<std::string> left;
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const std::string& ns : namespaces_) {
    if (fs::exists("/run/netns/" + ns, ec)) left.push_back("namespace " + ns);
  }
  for (const std::string& l : veths_) {
    if (fs::exists("/sys/class/net/" + l, ec)) left.push_back("link " + l);
  }
  if (fs::exists("/sys/class/net/" + bridge_, ec)) left.push_back("link " + bridge_);
  auto tables = Output({nft, "list", "tables"});
  if (tables.ok() && tables->find(table_ + "\n") != std::string::npos) {
    left.push_back("nft table " + table_);
  }
  if (!left.empty()) {
    return absl::InternalError("left behind: " + absl::StrJoin(left, ", "));
  }
  return absl::OkStatus();
}

}  // namespace cppetcd::robustness
