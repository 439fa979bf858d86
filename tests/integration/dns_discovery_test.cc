// --discovery-srv with real processes and a DNS server of the test's own.
//
// main() moves this process into a private network and mount namespace
// before any thread exists (unshare(CLONE_NEWNET | CLONE_NEWNS)), brings
// `lo` up and bind-mounts a resolv.conf naming 127.0.0.1 over
// /etc/resolv.conf; a small responder in this process answers on
// 127.0.0.1:53/udp from a table of SRV and A records. The members (cppetcd,
// and etcd 3.4 for the differential checks) inherit both namespaces, so
// their ordinary resolvers (libresolv, gRPC's, Go's) ask the responder.
// Without the privilege to unshare, every test is skipped with the reason.
//
// Members listen on their own loopback addresses (127.0.0.x) and are
// reached by names (mN.<domain>) that only the responder knows.
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness.h"

namespace cppetcd::integration {
namespace {

using ::testing::HasSubstr;

// Why the private network could not be set up ("" when it was).
std::string g_no_namespace;

// --- the test's DNS responder ------------------------------------------

constexpr uint16_t kTypeA = 1;
constexpr uint16_t kTypeSrv = 33;

void Put16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v & 0xff));
}

// A name in DNS wire form (uncompressed).
std::string WireName(const std::string& name) {
  std::string out;
  for (absl::string_view label : absl::StrSplit(name, '.', absl::SkipEmpty())) {
    out.push_back(static_cast<char>(label.size()));
    out.append(label.data(), label.size());
  }
  out.push_back('\0');
  return out;
}

std::string Key(std::string name) {
  name = absl::AsciiStrToLower(name);
  if (!name.empty() && name.back() == '.') name.pop_back();
  return name;
}

// Answers A and SRV questions from a table over UDP on 127.0.0.1:53; an
// unknown name is NXDOMAIN, a known one without records of the asked type
// an empty NOERROR answer. One thread; stopped on destruction.
class FakeDns {
 public:
  ~FakeDns() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }

  absl::Status Start() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(53);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      return absl::InternalError(absl::StrCat("bind 127.0.0.1:53: ", std::strerror(errno)));
    }
    thread_ = std::thread([this] { Loop(); });
    return absl::OkStatus();
  }

  void AddA(const std::string& name, const std::string& ip) {
    in_addr a{};
    ASSERT_EQ(::inet_pton(AF_INET, ip.c_str(), &a), 1) << ip;
    Add(name, kTypeA, std::string(reinterpret_cast<const char*>(&a), 4));
  }
  void AddSrv(const std::string& name, uint16_t port, const std::string& target) {
    std::string rdata;
    Put16(&rdata, 0);  // priority
    Put16(&rdata, 0);  // weight
    Put16(&rdata, port);
    rdata += WireName(target);
    Add(name, kTypeSrv, rdata);
  }
  // Questions answered so far ("<type> <name>").
  std::vector<std::string> Queries() {
    std::lock_guard<std::mutex> l(mu_);
    return queries_;
  }

 private:
  struct Record {
    uint16_t type;
    std::string rdata;
  };

  void Add(const std::string& name, uint16_t type, std::string rdata) {
    std::lock_guard<std::mutex> l(mu_);
    records_[Key(name)].push_back({type, std::move(rdata)});
  }

  void Loop() {
    char buf[1500];
    while (!stop_.load()) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      sockaddr_in from{};
      socklen_t from_len = sizeof(from);
      const ssize_t n = ::recvfrom(fd_, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from),
                                   &from_len);
      if (n <= 0) continue;
      std::string reply = Answer(std::string(buf, static_cast<size_t>(n)));
      if (reply.empty()) continue;
      (void)::sendto(fd_, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from),
                     from_len);
    }
  }

  // The reply to one query; "" for a malformed one (dropped).
  std::string Answer(const std::string& q) {
    if (q.size() < 12 || q[4] != 0 || q[5] != 1) return "";
    size_t at = 12;
    std::string name;
    while (at < q.size() && q[at] != 0) {
      const size_t len = static_cast<unsigned char>(q[at]);
      if (len > 63 || at + 1 + len > q.size()) return "";
      if (!name.empty()) name.push_back('.');
      name.append(q, at + 1, len);
      at += 1 + len;
    }
    if (at + 5 > q.size()) return "";
    const size_t question_end = at + 5;
    const uint16_t qtype = static_cast<uint16_t>((static_cast<unsigned char>(q[at + 1]) << 8) |
                                                 static_cast<unsigned char>(q[at + 2]));
    std::vector<const Record*> answers;
    bool known = false;
    std::lock_guard<std::mutex> l(mu_);
    queries_.push_back(absl::StrCat(qtype, " ", Key(name)));
    if (auto it = records_.find(Key(name)); it != records_.end()) {
      known = true;
      for (const Record& r : it->second) {
        if (r.type == qtype) answers.push_back(&r);
      }
    }
    std::string out = q.substr(0, 2);  // ID
    // QR, AA, RD as asked, RA; NXDOMAIN for an unknown name.
    const bool rd = (static_cast<unsigned char>(q[2]) & 0x01) != 0;
    out.push_back(static_cast<char>(0x84 | (rd ? 0x01 : 0x00)));
    out.push_back(static_cast<char>(0x80 | (known ? 0 : 3)));
    Put16(&out, 1);
    Put16(&out, static_cast<uint16_t>(answers.size()));
    Put16(&out, 0);
    Put16(&out, 0);
    out.append(q, 12, question_end - 12);
    for (const Record* r : answers) {
      Put16(&out, 0xc00c);  // the question's name
      Put16(&out, r->type);
      Put16(&out, 1);  // IN
      Put16(&out, 0);
      Put16(&out, 5);  // TTL 5 s
      Put16(&out, static_cast<uint16_t>(r->rdata.size()));
      out += r->rdata;
    }
    return out;
  }

  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::map<std::string, std::vector<Record>> records_;
  std::vector<std::string> queries_;
};

// Single-threaded set-up in main (see the file comment).
std::string EnterPrivateNetwork(const std::string& resolv_conf) {
  if (::unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) {
    return absl::StrCat("unshare(CLONE_NEWNET | CLONE_NEWNS): ", std::strerror(errno));
  }
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return absl::StrCat("making mounts private: ", std::strerror(errno));
  }
  const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (s < 0 || ::ioctl(s, SIOCGIFFLAGS, &ifr) != 0) {
    return absl::StrCat("reading lo's flags: ", std::strerror(errno));
  }
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  if (::ioctl(s, SIOCSIFFLAGS, &ifr) != 0) {
    return absl::StrCat("bringing lo up: ", std::strerror(errno));
  }
  ::close(s);
  {
    std::ofstream f(resolv_conf);
    f << "nameserver 127.0.0.1\noptions timeout:2 attempts:2\n";
    if (!f) return "cannot write " + resolv_conf;
  }
  if (::mount(resolv_conf.c_str(), "/etc/resolv.conf", nullptr, MS_BIND, nullptr) != 0) {
    return absl::StrCat("bind-mounting over /etc/resolv.conf: ", std::strerror(errno));
  }
  return "";
}

FakeDns* g_dns = nullptr;

// --- members -------------------------------------------------------------

struct Member {
  std::string name;  // also the first label of its host name
  std::string ip;    // 127.0.0.x: listens there
  int peer_port = 0;
  int client_port = 0;
  std::string ClientEndpoint() const { return absl::StrCat(ip, ":", client_port); }
};

// `count` members m1..mN on 127.0.0.<first_ip + i> with free ports.
std::vector<Member> MakeMembers(int count, int first_ip) {
  std::vector<Member> out;
  std::vector<int> used;
  for (int i = 0; i < count; ++i) {
    Member m;
    m.name = absl::StrCat("m", i + 1);
    m.ip = absl::StrCat("127.0.0.", first_ip + i);
    for (int* port : {&m.peer_port, &m.client_port}) {
      for (int tries = 0; tries < 50 && *port == 0; ++tries) {
        absl::StatusOr<int> p = PickFreePort();
        if (p.ok() && std::find(used.begin(), used.end(), *p) == used.end()) *port = *p;
      }
      used.push_back(*port);
    }
    out.push_back(m);
  }
  return out;
}

// Records for `members` under `domain`: an A record per member
// (m1.<domain> -> its IP) and one SRV record each under `service`.
void Publish(const std::vector<Member>& members, const std::string& domain,
             const std::string& service) {
  for (const Member& m : members) {
    const std::string host = absl::StrCat(m.name, ".", domain);
    g_dns->AddA(host, m.ip);
    g_dns->AddSrv(absl::StrCat("_", service, "._tcp.", domain), static_cast<uint16_t>(m.peer_port),
                  host + ".");
  }
}

// A member's flags: everything but the cluster comes from --discovery-srv.
// `advertise_ip`: advertise the peer URL by IP instead of host name (the
// member is still found: addresses are compared).
std::vector<std::string> MemberArgs(const std::string& binary, const Member& m,
                                    const std::string& domain, const std::string& scheme,
                                    const std::string& data_dir, bool advertise_ip) {
  const std::string host = absl::StrCat(m.name, ".", domain);
  return {binary,
          "--name=" + m.name,
          "--data-dir=" + data_dir,
          "--discovery-srv=" + domain,
          absl::StrCat("--initial-advertise-peer-urls=", scheme, "://",
                       advertise_ip ? m.ip : host, ":", m.peer_port),
          absl::StrCat("--listen-peer-urls=", scheme, "://", m.ip, ":", m.peer_port),
          absl::StrCat("--listen-client-urls=http://", m.ip, ":", m.client_port),
          absl::StrCat("--advertise-client-urls=http://", m.ip, ":", m.client_port),
          "--initial-cluster-token=dns-test",
          "--logger=zap"};  // etcd 3.4's default is capnslog
}

// `etcdctl member list` lines, sorted (etcd orders members by ID).
std::vector<std::string> MemberList(const std::string& endpoint) {
  CommandResult r = Etcdctl(endpoint, {"member", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> lines = SplitLines(r.out);
  std::sort(lines.begin(), lines.end());
  return lines;
}

// Peer TLS material for https members, made with openssl: a CA and one
// certificate valid only for the discovery domain's own name (SAN
// DNS:<domain>), not for the members' host names: peers accept it only
// when they check it against the domain (etcd's ServerName).
struct DomainCerts {
  std::string ca, cert, key;
};
absl::StatusOr<DomainCerts> MakeDomainCerts(const std::string& dir, const std::string& domain) {
  DomainCerts c{dir + "/ca.pem", dir + "/peer.pem", dir + "/peer-key.pem"};
  const std::string ca_key = dir + "/ca-key.pem";
  const std::string csr = dir + "/peer.csr";
  const std::string ext = dir + "/ext.cnf";
  std::ofstream(ext) << "subjectAltName=DNS:" << domain
                     << "\nextendedKeyUsage=serverAuth,clientAuth\n";
  const std::vector<std::vector<std::string>> steps = {
      {"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-nodes", "-keyout", ca_key, "-out", c.ca, "-days", "2", "-subj", "/CN=dns-test-ca"},
      {"/usr/bin/openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", c.key, "-out", csr, "-subj", "/CN=" + domain},
      {"/usr/bin/openssl", "x509", "-req", "-in", csr, "-CA", c.ca, "-CAkey", ca_key,
       "-CAcreateserial", "-out", c.cert, "-days", "2", "-extfile", ext},
  };
  for (const auto& argv : steps) {
    CommandResult r = RunCommand(argv, "", {}, std::chrono::seconds(20));
    if (r.exit_code != 0) return absl::InternalError(absl::StrCat(argv[1], ": ", r.err));
  }
  return c;
}

class DnsDiscoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!g_no_namespace.empty()) GTEST_SKIP() << "no private network: " << g_no_namespace;
    if (ServerBinary().empty()) GTEST_SKIP() << "no server binary";
  }

  // Starts one process per member; waits until each serves.
  std::vector<std::unique_ptr<BackgroundCommand>> StartAll(
      const std::vector<std::vector<std::string>>& argvs, const std::vector<std::string>& env,
      const std::vector<Member>& members) {
    std::vector<std::unique_ptr<BackgroundCommand>> procs;
    for (size_t i = 0; i < argvs.size(); ++i) {
      const std::string out = absl::StrCat(tmp_.path(), "/out-", procs_started_++);
      std::filesystem::create_directories(out);
      absl::StatusOr<std::unique_ptr<BackgroundCommand>> p =
          BackgroundCommand::Start(argvs[i], env, out);
      EXPECT_TRUE(p.ok()) << p.status();
      if (!p.ok()) return {};
      procs.push_back(*std::move(p));
    }
    for (size_t i = 0; i < members.size(); ++i) {
      absl::Status st = WaitForServing(members[i].ClientEndpoint(), std::chrono::seconds(20));
      EXPECT_TRUE(st.ok()) << members[i].name << ": " << st << "\n" << procs[i]->Stderr();
      if (!st.ok()) return {};
    }
    return procs;
  }

  TempDir tmp_;
  int procs_started_ = 0;
};

// A three-member cluster whose only description is the SRV records comes
// up; every member lists all three with the records' URLs. m1 advertises
// its peer URL by IP: it is still matched by address.
TEST_F(DnsDiscoveryTest, ThreeMembersBootstrapFromSrvRecordsOnly) {
  const std::string domain = "plain.test";
  std::vector<Member> members = MakeMembers(3, 11);
  Publish(members, domain, "etcd-server");
  std::vector<std::vector<std::string>> argvs;
  for (const Member& m : members) {
    argvs.push_back(MemberArgs(ServerBinary(), m, domain, "http",
                               absl::StrCat(tmp_.path(), "/", m.name), m.name == "m1"));
  }
  auto procs = StartAll(argvs, {}, members);
  ASSERT_EQ(procs.size(), 3u);
  std::vector<std::string> want;
  for (const Member& m : members) {
    want.push_back(absl::StrCat(", started, ", m.name, ", http://", m.name, ".", domain, ":",
                                m.peer_port, ", http://", m.ip, ":", m.client_port, ", false"));
  }
  for (const Member& m : members) {
    std::vector<std::string> lines;
    // Names appear once each member has published itself.
    ASSERT_TRUE(PollUntil(
        [&] {
          lines = MemberList(m.ClientEndpoint());
          for (std::string& l : lines) l = l.substr(std::min(l.find(','), l.size()));
          std::sort(lines.begin(), lines.end());
          return lines.size() == 3 && lines[0].find(", started, m") == 0 &&
                 lines[1].find(", started, m") == 0 && lines[2].find(", started, m") == 0;
        },
        std::chrono::seconds(15)))
        << testing::PrintToString(lines);
    std::sort(want.begin(), want.end());
    EXPECT_EQ(lines, want) << "as seen by " << m.name;
  }
  // A put through one member is read through another: one cluster.
  ASSERT_EQ(Etcdctl(members[0].ClientEndpoint(), {"put", "k", "v"}).exit_code, 0);
  CommandResult get = Etcdctl(members[2].ClientEndpoint(), {"get", "k", "--print-value-only"});
  EXPECT_EQ(get.out, "v\n");
  // The records were asked for through the test's server.
  std::vector<std::string> q = g_dns->Queries();
  EXPECT_NE(std::find(q.begin(), q.end(), "33 _etcd-server._tcp.plain.test"), q.end());
  EXPECT_NE(std::find(q.begin(), q.end(), "33 _etcd-server-ssl._tcp.plain.test"), q.end());
}

// --discovery-srv-name picks "_etcd-server-<name>" records; a member that
// restarts with its data dir looks nothing up (the records may be gone).
TEST_F(DnsDiscoveryTest, SrvNameSuffixAndRestartWithoutRecords) {
  const std::string domain = "named.test";
  std::vector<Member> members = MakeMembers(1, 31);
  Publish(members, domain, "etcd-server-blue");
  std::vector<std::string> argv = MemberArgs(ServerBinary(), members[0], domain, "http",
                                             tmp_.path() + "/m1", false);
  argv.push_back("--discovery-srv-name=blue");
  {
    auto procs = StartAll({argv}, {}, members);
    ASSERT_EQ(procs.size(), 1u);
    std::vector<std::string> lines = MemberList(members[0].ClientEndpoint());
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_THAT(lines[0], HasSubstr(absl::StrCat(", started, m1, http://m1.named.test:",
                                                 members[0].peer_port, ", ")));
  }
  // Restart under another srv name that has no records: the WAL is used.
  argv.back() = "--discovery-srv-name=green";
  auto procs = StartAll({argv}, {}, members);
  ASSERT_EQ(procs.size(), 1u);
  EXPECT_EQ(MemberList(members[0].ClientEndpoint()).size(), 1u);
}

// What both etcd 3.4 and cppetcd do when the records do not describe the
// member: exit 1 with etcd's message.
TEST_F(DnsDiscoveryTest, MissingRecordsStopTheMemberAsEtcdDoes) {
  std::vector<Member> members = MakeMembers(2, 41);
  // "listed.test" has an https record for m2 only; "empty.test" none.
  Publish({members[1]}, "listed.test", "etcd-server-ssl");
  struct Case {
    std::string domain;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"empty.test",
       "error setting up initial cluster: error querying DNS SRV records for _etcd-server-ssl "
       "lookup _etcd-server-ssl._tcp.empty.test on 127.0.0.1:53: no such host"},
      {"listed.test",
       "error setting up initial cluster: cannot find local etcd member \\\"m1\\\" in SRV "
       "records"},
  };
  std::vector<std::string> binaries = {ServerBinary()};
  if (std::filesystem::exists(ReferenceEtcdBinary())) binaries.push_back(ReferenceEtcdBinary());
  for (const std::string& binary : binaries) {
    for (const Case& c : cases) {
      SCOPED_TRACE(binary + " " + c.domain);
      const std::string dir = absl::StrCat(tmp_.path(), "/", procs_started_++);
      std::vector<std::string> argv = MemberArgs(binary, members[0], c.domain, "http", dir, true);
      CommandResult r = RunCommand(argv, "", {}, std::chrono::seconds(20));
      EXPECT_EQ(r.exit_code, 1) << r.err;
      EXPECT_THAT(r.err, HasSubstr("\"msg\":\"discovery failed\""));
      EXPECT_THAT(r.err, HasSubstr(c.message));
      EXPECT_FALSE(std::filesystem::exists(dir + "/member/wal")) << "nothing bootstrapped";
    }
  }
  // etcd 3.4.23 keeps only the https records (GetDNSClusterNames appends
  // the http ones only when their lookup failed): with http records alone
  // it stops. cppetcd uses them (ThreeMembersBootstrapFromSrvRecordsOnly);
  // this pins the difference docs/operations.md describes.
  if (binaries.size() > 1) {
    Publish({members[0]}, "httponly.test", "etcd-server");
    std::vector<std::string> argv =
        MemberArgs(ReferenceEtcdBinary(), members[0], "httponly.test", "http",
                   tmp_.path() + "/etcd-httponly", false);
    CommandResult r = RunCommand(argv, "", {}, std::chrono::seconds(20));
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr("error querying DNS SRV records for _etcd-server-ssl lookup "
                                 "_etcd-server-ssl._tcp.httponly.test"));
  }
  // --discovery-srv-name alone drops the default initial cluster (etcd
  // 3.4's flag handling), so a new member finds no member of its name.
  for (const std::string& binary : binaries) {
    std::vector<std::string> argv = MemberArgs(binary, members[0], "listed.test", "http",
                                               tmp_.path() + "/name-only-" +
                                                   std::to_string(procs_started_++),
                                               true);
    argv.erase(std::remove_if(argv.begin(), argv.end(),
                              [](const std::string& a) { return a.find("--discovery-srv=") == 0; }),
               argv.end());
    argv.push_back("--discovery-srv-name=blue");
    CommandResult r = RunCommand(argv, "", {}, std::chrono::seconds(20));
    EXPECT_EQ(r.exit_code, 1) << binary << r.err;
    EXPECT_THAT(r.err, HasSubstr("\"msg\":\"discovery failed\",\"error\":\"couldn't find local "
                                 "name \\\"m1\\\" in the initial cluster configuration\""))
        << binary;
  }
  // --initial-cluster with --discovery-srv: etcd's conflict error, before
  // anything starts.
  for (const std::string& binary : binaries) {
    std::vector<std::string> argv = MemberArgs(binary, members[0], "listed.test", "http",
                                               tmp_.path() + "/conflict", false);
    argv.push_back("--initial-cluster=m1=http://127.0.0.1:2380");
    CommandResult r = RunCommand(argv, "", {}, std::chrono::seconds(20));
    EXPECT_NE(r.exit_code, 0) << binary;
    EXPECT_THAT(r.err, HasSubstr("multiple discovery or bootstrap flags are set. Choose one of"))
        << binary;
  }
}

// Differential: the same https cluster under etcd 3.4 and cppetcd. The
// peer certificate is valid only for the discovery domain and no
// --peer-trusted-ca-file is given, so the members connect only because the
// peer TLS server name is the domain (etcd's ServerName); the CA is the
// system's root store (Go: SSL_CERT_FILE; gRPC:
// GRPC_DEFAULT_SSL_ROOTS_FILE_PATH). Member IDs, names and URLs must match.
TEST_F(DnsDiscoveryTest, SameClusterAsEtcdOverHttpsWithTheDomainAsServerName) {
  if (!std::filesystem::exists(ReferenceEtcdBinary())) GTEST_SKIP() << "no reference etcd";
  const std::string domain = "tls.test";
  absl::StatusOr<DomainCerts> certs = MakeDomainCerts(tmp_.path(), domain);
  ASSERT_TRUE(certs.ok()) << certs.status();
  const std::vector<std::string> env = {"SSL_CERT_FILE=" + certs->ca,
                                        "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=" + certs->ca};
  std::vector<Member> members = MakeMembers(3, 51);
  Publish(members, domain, "etcd-server-ssl");
  std::map<std::string, std::vector<std::string>> lists;
  int run = 0;
  for (const std::string& binary : {ReferenceEtcdBinary(), ServerBinary()}) {
    SCOPED_TRACE(binary);
    ++run;
    std::vector<std::vector<std::string>> argvs;
    for (const Member& m : members) {
      std::vector<std::string> argv = MemberArgs(
          binary, m, domain, "https", absl::StrCat(tmp_.path(), "/run", run, "-", m.name),
          m.name == "m1");
      argv.push_back("--peer-cert-file=" + certs->cert);
      argv.push_back("--peer-key-file=" + certs->key);
      argvs.push_back(argv);
    }
    auto procs = StartAll(argvs, env, members);
    ASSERT_EQ(procs.size(), 3u);
    std::vector<std::string> lines;
    ASSERT_TRUE(PollUntil(
        [&] {
          lines = MemberList(members[1].ClientEndpoint());
          return lines.size() == 3 &&
                 std::all_of(lines.begin(), lines.end(),
                             [](const std::string& l) { return l.find(", started, m") != std::string::npos; });
        },
        std::chrono::seconds(15)))
        << testing::PrintToString(lines);
    lists[binary] = lines;
    for (auto& p : procs) p->Kill();
  }
  EXPECT_EQ(lists[ServerBinary()], lists[ReferenceEtcdBinary()]);
  EXPECT_THAT(lists[ServerBinary()][0], HasSubstr("https://m"));
}

}  // namespace
}  // namespace cppetcd::integration

int main(int argc, char** argv) {
  // Before any thread: unshare(CLONE_NEWNS) refuses a multi-threaded caller.
  char resolv[] = "/tmp/cppetcd-dns-resolv-XXXXXX";
  const int fd = ::mkstemp(resolv);
  if (fd >= 0) ::close(fd);
  cppetcd::integration::g_no_namespace =
      fd < 0 ? std::string("mkstemp failed") : cppetcd::integration::EnterPrivateNetwork(resolv);
  ::testing::InitGoogleTest(&argc, argv);
  std::unique_ptr<cppetcd::integration::FakeDns> dns;
  if (cppetcd::integration::g_no_namespace.empty()) {
    dns = std::make_unique<cppetcd::integration::FakeDns>();
    absl::Status st = dns->Start();
    if (!st.ok()) cppetcd::integration::g_no_namespace = std::string(st.message());
    cppetcd::integration::g_dns = dns.get();
  }
  const int rc = RUN_ALL_TESTS();
  cppetcd::integration::g_dns = nullptr;
  dns.reset();
  if (fd >= 0) ::unlink(resolv);
  return rc;
}
