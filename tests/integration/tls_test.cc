// TLS on client and peer URLs with real processes and the real etcdctl:
// a 3-member mutual-TLS cluster, rejected clients (no certificate, another
// CA, expired, plaintext), https and http URLs on one member, start-up
// errors for bad certificate files, --auto-tls, and issue 12: only the
// configured URLs listen, CRLs on client and peer ports, --cipher-suites,
// peer server-certificate verification; etcd 3.5's --listen-client-http-urls
// (gRPC-only client URLs on gRPC's own TLS). Certificates come from
// test_certs.h (and the openssl CLI for the CRL tests). Validated against etcd 3.4 with
// CPPETCD_TEST_SERVER=/usr/bin/etcd.
#include <unistd.h>

#include <filesystem>
#include <utility>
#include <fstream>
#include <set>
#include <sstream>
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

constexpr char kCurl[] = "/usr/bin/curl";

// The sockets process `pid` could accept connections or datagrams on:
// "tcp:<port>" per TCP socket in LISTEN state (IPv4 or IPv6), "udp:<port>"
// per UDP socket, "unix:<path>" per listening AF_UNIX socket ("unix:" for an
// unnamed one). Found by matching the socket inodes of /proc/<pid>/fd with
// /proc/net/{tcp,tcp6,udp,udp6,unix}.
std::multiset<std::string> ListeningSockets(pid_t pid) {
  std::set<std::string> inodes;
  const std::string fd_dir = absl::StrCat("/proc/", pid, "/fd");
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(fd_dir, ec)) {
    std::error_code lec;
    const std::string target = std::filesystem::read_symlink(e.path(), lec).string();
    if (absl::StartsWith(target, "socket:[")) {
      inodes.insert(target.substr(8, target.size() - 9));
    }
  }
  std::multiset<std::string> out;
  using Row = std::vector<std::string>;
  auto scan = [&](const std::string& file, const std::function<void(Row&)>& row) {
    std::ifstream in(file);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream words(line);
      std::vector<std::string> f;
      for (std::string w; words >> w;) f.push_back(w);
      row(f);
    }
  };
  // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
  auto inet = [&](const std::string& file, const std::string& kind, bool listen_only) {
    scan(file, [&](std::vector<std::string>& f) {
      if (f.size() < 10 || inodes.count(f[9]) == 0) return;
      if (listen_only && f[3] != "0A") return;  // TCP_LISTEN
      const std::string& local = f[1];
      const int port = std::stoi(local.substr(local.find(':') + 1), nullptr, 16);
      out.insert(absl::StrCat(kind, ":", port));
    });
  };
  inet("/proc/net/tcp", "tcp", true);
  inet("/proc/net/tcp6", "tcp", true);
  inet("/proc/net/udp", "udp", false);
  inet("/proc/net/udp6", "udp", false);
  // Num RefCount Protocol Flags Type St Inode [Path]; Flags 00010000:
  // __SO_ACCEPTCON, a listening socket.
  scan("/proc/net/unix", [&](std::vector<std::string>& f) {
    if (f.size() < 7 || inodes.count(f[6]) == 0) return;
    if ((std::stoul(f[3], nullptr, 16) & 0x10000) == 0) return;
    out.insert(absl::StrCat("unix:", f.size() > 7 ? f[7] : ""));
  });
  return out;
}

// A CA made with the openssl CLI (as an operator would), a server/peer
// certificate, two client certificates (CN "root") and a second
// server/peer certificate; the second client ("revoked") and the second
// server certificate ("server-revoked") are revoked in crl.pem, and in
// crl-stale.pem, the same list whose nextUpdate passed in 2020 (as etcd's
// e2e fixture revoke.crl). Files <dir>/<name>.crt and .key, <dir>/ca.crt,
// <dir>/crl.pem, <dir>/crl-stale.pem.
absl::Status MakeRevocationFixture(const std::string& dir) {
  std::filesystem::create_directories(dir);
  const std::string script = R"(set -e
cd "$1"
printf '%s\n' '[ ca ]' 'default_ca = CA_default' '[ CA_default ]' 'dir = .' \
  'database = index.txt' 'new_certs_dir = .' 'serial = serial' 'crlnumber = crlnumber' \
  'default_md = sha256' 'default_crl_days = 30' 'policy = policy_any' \
  '[ policy_any ]' 'commonName = supplied' > ca.cnf
: > index.txt; echo 01 > serial; echo 01 > crlnumber
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -keyout ca.key -out ca.crt -days 30 -subj /CN=crl-test-ca 2>/dev/null
issue() {
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  printf 'extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' \
    > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
    -extfile "$1.ext" -out "$1.crt" 2>/dev/null
}
issue server cppetcd-server
issue server-revoked cppetcd-server
issue good root
issue revoked root
openssl ca -config ca.cnf -keyfile ca.key -cert ca.crt -gencrl -out crl-none.pem 2>/dev/null
openssl ca -config ca.cnf -keyfile ca.key -cert ca.crt -revoke revoked.crt 2>/dev/null
openssl ca -config ca.cnf -keyfile ca.key -cert ca.crt -revoke server-revoked.crt 2>/dev/null
openssl ca -config ca.cnf -keyfile ca.key -cert ca.crt -gencrl -out crl.pem 2>/dev/null
openssl ca -config ca.cnf -keyfile ca.key -cert ca.crt -gencrl -crl_lastupdate 20200101000000Z \
  -crl_nextupdate 20200201000000Z -out crl-stale.pem 2>/dev/null
)";
  CommandResult r = RunCommand({"/bin/sh", "-c", script, "sh", dir}, "", {}, seconds(60));
  if (r.exit_code != 0) {
    return absl::InternalError(absl::StrCat("openssl fixture failed: ", r.out, r.err));
  }
  return absl::OkStatus();
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CPPETCD_REQUIRE_SERVER();
    auto certs = MakeTestCerts(tmp_.path() + "/certs");
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *certs;
  }

  ClusterTls MutualTls() const {
    ClusterTls t;
    t.client = true;
    t.peer = true;
    t.ca_file = certs_.ca;
    t.cert_file = certs_.server.cert;
    t.key_file = certs_.server.key;
    t.client_cert_file = certs_.Client("root").cert;
    t.client_key_file = certs_.Client("root").key;
    return t;
  }

  // A single member with the given client URLs and extra flags (peer URL
  // plain); its process lives as long as the returned command.
  struct Single {
    std::unique_ptr<BackgroundCommand> proc;
    std::vector<int> client_ports;
    std::string data_dir;
  };
  // The command line of a single member (peer URL plain) with one client
  // URL per scheme; fills `s` with its ports and data dir.
  absl::StatusOr<std::vector<std::string>> SingleArgs(const std::vector<std::string>& schemes,
                                                      const std::vector<std::string>& flags,
                                                      Single* s) {
    std::vector<std::string> urls;
    for (const std::string& scheme : schemes) {
      absl::StatusOr<int> p = PickFreePort();
      if (!p.ok()) return p.status();
      s->client_ports.push_back(*p);
      urls.push_back(absl::StrCat(scheme, "://127.0.0.1:", *p));
    }
    absl::StatusOr<int> peer = PickFreePort();
    if (!peer.ok()) return peer.status();
    const std::string peer_url = absl::StrCat("http://127.0.0.1:", *peer);
    s->data_dir = absl::StrCat(tmp_.path(), "/single", ++singles_, ".data");
    std::vector<std::string> argv = {ServerBinary(),
                                     "--name", "s",
                                     "--data-dir", s->data_dir,
                                     "--listen-client-urls", absl::StrJoin(urls, ","),
                                     "--advertise-client-urls", urls[0],
                                     "--listen-peer-urls", peer_url,
                                     "--initial-advertise-peer-urls", peer_url,
                                     "--initial-cluster", "s=" + peer_url};
    argv.insert(argv.end(), flags.begin(), flags.end());
    return argv;
  }

  absl::StatusOr<Single> StartSingle(const std::vector<std::string>& schemes,
                                     const std::vector<std::string>& flags) {
    Single s;
    absl::StatusOr<std::vector<std::string>> argv = SingleArgs(schemes, flags, &s);
    if (!argv.ok()) return argv.status();
    const std::string out_dir = absl::StrCat(tmp_.path(), "/single", singles_);
    std::filesystem::create_directories(out_dir);
    auto proc = BackgroundCommand::Start(*argv, {}, out_dir);
    if (!proc.ok()) return proc.status();
    s.proc = std::move(*proc);
    return s;
  }

  static std::string Endpoint(int port) { return absl::StrCat("127.0.0.1:", port); }

  void ExpectClientCrlRefusesRevoked(const std::string& d, const std::string& crl);

  // etcdctl with TLS flags; `args` after them.
  static CommandResult Ctl(const std::string& endpoints, std::vector<std::string> tls,
                           const std::vector<std::string>& args) {
    tls.insert(tls.end(), args.begin(), args.end());
    return Etcdctl(endpoints, tls, "", seconds(10));
  }

  // A call expected to be refused: a short command timeout (etcdctl keeps
  // retrying a refused handshake until then).
  static CommandResult CtlRefused(const std::string& endpoints, std::vector<std::string> tls,
                                  const std::vector<std::string>& args) {
    tls.insert(tls.end(), args.begin(), args.end());
    return Etcdctl(endpoints, tls, "", seconds(3));
  }

  // Polls `etcdctl endpoint health` with `tls` flags for up to 30 s.
  static bool BecomesHealthy(const std::string& ep, const std::vector<std::string>& tls) {
    return PollUntil([&] { return Ctl(ep, tls, {"endpoint", "health"}).exit_code == 0; },
                     seconds(30));
  }

  // An operator's certificate rotation of the server files `cert` and `key`
  // to the foreign CA's pair (write aside, rename over; key first, so the
  // server must keep the old pair until both match), then: within 20 s the
  // server at `ep` is trusted through the other CA and no longer through
  // ours. `log_hint` is printed on failure.
  void RotateToForeignPairAndExpectIt(const std::string& cert, const std::string& key,
                                      const std::string& ep, const std::string& log_hint) {
    for (const auto& [from, to] : {std::pair{certs_.foreign_server.key, key},
                                   std::pair{certs_.foreign_server.cert, cert}}) {
      std::filesystem::copy_file(from, to + ".new");
      std::filesystem::rename(to + ".new", to);
    }
    EXPECT_TRUE(PollUntil(
        [&] {
          return CtlRefused(ep, {"--cacert=" + certs_.other_ca}, {"endpoint", "health"})
                     .exit_code == 0;
        },
        seconds(20)))
        << log_hint;
    EXPECT_NE(CtlRefused(ep, {"--cacert=" + certs_.ca}, {"endpoint", "health"}).exit_code, 0);
  }

  std::vector<std::string> RootFlags() const {
    return {"--cacert=" + certs_.ca, "--cert=" + certs_.Client("root").cert,
            "--key=" + certs_.Client("root").key};
  }

  TempDir tmp_;
  TestCerts certs_;
  int singles_ = 0;
};

TEST_F(TlsTest, ThreeMemberMutualTlsCluster) {
  Cluster::Options o;
  o.tls = MutualTls();
  auto c = Cluster::Start(std::move(o), tmp_.path());
  ASSERT_TRUE(c.ok()) << c.status();
  Cluster& cluster = **c;
  ASSERT_TRUE(cluster.WaitForLeader(seconds(20)).ok());
  const std::string eps = cluster.RunningEndpoints();
  const std::vector<std::string> tls = cluster.EtcdctlFlags();

  CommandResult put = Ctl(eps, tls, {"put", "k", "v"});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  EXPECT_EQ(put.out, "OK\n");
  for (int i = 0; i < cluster.size(); ++i) {
    CommandResult get = Ctl(cluster.member(i).ClientEndpoint(), tls, {"get", "k"});
    ASSERT_EQ(get.exit_code, 0) << get.err;
    EXPECT_EQ(get.out, "k\nv\n");
  }
  CommandResult list = Ctl(eps, tls, {"member", "list", "-w", "table"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  auto rows = ParseTable(list.out);
  ASSERT_EQ(rows.size(), 4u) << list.out;
  for (size_t r = 1; r < rows.size(); ++r) {
    ASSERT_EQ(rows[r].size(), 6u);
    EXPECT_TRUE(absl::StartsWith(rows[r][3], "https://127.0.0.1:")) << rows[r][3];
    EXPECT_TRUE(absl::StartsWith(rows[r][4], "https://127.0.0.1:")) << rows[r][4];
  }
  // --cluster: etcdctl dials every member's advertised https client URL.
  CommandResult health = Ctl(cluster.member(0).ClientEndpoint(), tls,
                             {"endpoint", "health", "--cluster"});
  ASSERT_EQ(health.exit_code, 0) << health.err << health.out;
  EXPECT_EQ(std::count(health.out.begin(), health.out.end(), '\n') +
                std::count(health.err.begin(), health.err.end(), '\n') -
                static_cast<long>(std::count(health.err.begin(), health.err.end(), '{')),
            3)
      << health.out << health.err;
  EXPECT_THAT(health.out + health.err, HasSubstr("is healthy"));
  CommandResult status = Ctl(cluster.member(0).ClientEndpoint(), tls,
                             {"endpoint", "status", "--cluster", "-w", "table"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_EQ(ParseTable(status.out).size(), 4u) << status.out;

  // Rejected clients: no certificate, another CA's, an expired one, a
  // client that does not trust the server, plaintext to the https port.
  const std::string ep = cluster.member(1).ClientEndpoint();
  CommandResult no_cert = CtlRefused(ep, {"--cacert=" + certs_.ca}, {"get", "k"});
  EXPECT_NE(no_cert.exit_code, 0) << no_cert.out;
  CommandResult foreign = CtlRefused(ep,
                              {"--cacert=" + certs_.ca, "--cert=" + certs_.foreign_client.cert,
                               "--key=" + certs_.foreign_client.key},
                              {"get", "k"});
  EXPECT_NE(foreign.exit_code, 0) << foreign.out;
  CommandResult expired = CtlRefused(ep,
                              {"--cacert=" + certs_.ca, "--cert=" + certs_.expired_client.cert,
                               "--key=" + certs_.expired_client.key},
                              {"get", "k"});
  EXPECT_NE(expired.exit_code, 0) << expired.out;
  CommandResult distrust = CtlRefused(ep,
                               {"--cacert=" + certs_.other_ca,
                                "--cert=" + certs_.Client("root").cert,
                                "--key=" + certs_.Client("root").key},
                               {"get", "k"});
  EXPECT_NE(distrust.exit_code, 0) << distrust.out;
  CommandResult plain = CtlRefused("http://" + ep, {}, {"get", "k"});
  EXPECT_NE(plain.exit_code, 0) << plain.out;
  // A second client certificate from the same CA is fine.
  CommandResult alice = Ctl(ep,
                            {"--cacert=" + certs_.ca, "--cert=" + certs_.Client("alice").cert,
                             "--key=" + certs_.Client("alice").key},
                            {"get", "k", "--print-value-only"});
  EXPECT_EQ(alice.exit_code, 0) << alice.err;
  EXPECT_EQ(alice.out, "v\n");
}

TEST_F(TlsTest, PeerAutoTlsCluster) {
  Cluster::Options o;
  o.tls.peer = true;
  o.tls.peer_auto_tls = true;
  auto c = Cluster::Start(std::move(o), tmp_.path());
  ASSERT_TRUE(c.ok()) << c.status();
  Cluster& cluster = **c;
  ASSERT_TRUE(cluster.WaitForLeader(seconds(20)).ok());
  CommandResult put = Etcdctl(cluster.RunningEndpoints(), {"put", "k", "v"});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  CommandResult get = Etcdctl(cluster.member(2).ClientEndpoint(), {"get", "k", "--print-value-only"});
  EXPECT_EQ(get.out, "v\n") << get.err;
  CommandResult list = Etcdctl(cluster.member(0).ClientEndpoint(), {"member", "list"});
  EXPECT_THAT(list.out, HasSubstr("https://127.0.0.1:"));
  for (int i = 0; i < cluster.size(); ++i) {
    EXPECT_TRUE(std::filesystem::exists(cluster.member(i).data_dir() + "/fixtures/peer/cert.pem"));
  }
}

TEST_F(TlsTest, PeerCertAllowedCn) {
  // The members' certificate has CN "cppetcd-server": allowed.
  Cluster::Options o;
  o.tls = MutualTls();
  o.extra_flags = {"--peer-cert-allowed-cn=cppetcd-server"};
  std::filesystem::create_directories(tmp_.path() + "/allowed");
  std::filesystem::create_directories(tmp_.path() + "/refused");
  {
    auto c = Cluster::Start(o, tmp_.path() + "/allowed");
    ASSERT_TRUE(c.ok()) << c.status();
  }
  // Another CN is required: no peer is accepted, no quorum, nobody serves.
  o.extra_flags = {"--peer-cert-allowed-cn=someone-else"};
  o.ready_timeout = seconds(4);
  auto refused = Cluster::Start(o, tmp_.path() + "/refused");
  EXPECT_FALSE(refused.ok());
}

// etcd 3.4 e2e TestEtcdPeerCNAuth / TestEtcdPeerNameAuth: members 0 and 1
// have the server certificate (CN cppetcd-server, SANs 127.0.0.1 and
// localhost) and allow `good`; member 2 has server2 (CN example2.com, SANs
// 127.0.0.1 and example2.com) and allows `bad`. The certificates are checked
// in both directions when a peer connection is set up: 0 and 1 form a quorum
// and serve, 2 is refused and refuses them, and every member logs etcd's
// "client certificate authentication failed".
void PeerIdentityScenario(const TempDir& tmp, const TestCerts& certs, const std::string& flag,
                          const std::string& good, const std::string& bad) {
  std::vector<int> peer_ports, client_ports;
  for (int i = 0; i < 6; ++i) {
    absl::StatusOr<int> p = PickFreePort();
    ASSERT_TRUE(p.ok()) << p.status();
    (i < 3 ? peer_ports : client_ports).push_back(*p);
  }
  std::vector<std::string> cluster;
  for (int i = 0; i < 3; ++i) {
    cluster.push_back(absl::StrCat("e", i, "=https://127.0.0.1:", peer_ports[i]));
  }
  std::vector<std::unique_ptr<BackgroundCommand>> procs;
  for (int i = 0; i < 3; ++i) {
    const CertFiles& cert = i <= 1 ? certs.server : certs.server2;
    const std::string dir = absl::StrCat(tmp.path(), "/", flag, "-e", i);
    std::filesystem::create_directories(dir);
    const std::string client = absl::StrCat("http://127.0.0.1:", client_ports[i]);
    const std::string peer = absl::StrCat("https://127.0.0.1:", peer_ports[i]);
    auto proc = BackgroundCommand::Start(
        {ServerBinary(), "--name", absl::StrCat("e", i), "--data-dir", dir + "/data",
         "--listen-client-urls", client, "--advertise-client-urls", client,
         "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
         "--initial-cluster", absl::StrJoin(cluster, ","), "--peer-cert-file", cert.cert,
         "--peer-key-file", cert.key, "--peer-trusted-ca-file", certs.ca,
         "--peer-client-cert-auth", absl::StrCat("--", flag, "=", i <= 1 ? good : bad)},
        {}, dir);
    ASSERT_TRUE(proc.ok()) << proc.status();
    procs.push_back(*std::move(proc));
  }
  auto healthy = [&](int i, seconds timeout) {
    return PollUntil(
        [&] {
          return Etcdctl(absl::StrCat("127.0.0.1:", client_ports[static_cast<size_t>(i)]),
                         {"endpoint", "health"}, "", seconds(4))
                     .exit_code == 0;
        },
        timeout);
  };
  ASSERT_TRUE(healthy(0, seconds(30))) << procs[0]->Stderr();
  ASSERT_TRUE(healthy(1, seconds(30))) << procs[1]->Stderr();
  constexpr char kRefused[] = "client certificate authentication failed";
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(PollUntil([&] { return absl::StrContains(procs[static_cast<size_t>(i)]->Stderr(),
                                                         kRefused); },
                          seconds(20)))
        << "member " << i << ":\n" << procs[static_cast<size_t>(i)]->Stderr();
  }
  // Member 2 never joined: it has no leader and serves no client.
  EXPECT_FALSE(healthy(2, seconds(2))) << procs[2]->Stderr();
  CommandResult put = Etcdctl(absl::StrCat("127.0.0.1:", client_ports[0]), {"put", "k", "v"});
  EXPECT_EQ(put.exit_code, 0) << put.err;
}

TEST_F(TlsTest, PeerCnAuthAsEtcdE2e) {
  PeerIdentityScenario(tmp_, certs_, "peer-cert-allowed-cn", "cppetcd-server", "example2.com");
}

TEST_F(TlsTest, PeerHostnameAuthAsEtcdE2e) {
  PeerIdentityScenario(tmp_, certs_, "peer-cert-allowed-hostname", "localhost", "example2.com");
}

TEST_F(TlsTest, HttpsAndHttpUrlsOnOneMember) {
  auto s = StartSingle({"https", "http"},
                       {"--cert-file", certs_.server.cert, "--key-file", certs_.server.key,
                        "--trusted-ca-file", certs_.ca, "--client-cert-auth"});
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string secure = Endpoint(s->client_ports[0]);
  const std::string plain = Endpoint(s->client_ports[1]);
  ASSERT_TRUE(PollUntil(
      [&] { return Ctl(plain, {}, {"endpoint", "health"}).exit_code == 0; }, seconds(30)))
      << s->proc->Stderr();
  CommandResult put = Ctl(secure, RootFlags(), {"put", "a", "1"});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  CommandResult get = Ctl(plain, {}, {"get", "a", "--print-value-only"});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "1\n");
  // The https URL still refuses plaintext and certificate-less clients.
  EXPECT_NE(CtlRefused("http://" + secure, {}, {"get", "a"}).exit_code, 0);
  EXPECT_NE(CtlRefused(secure, {"--cacert=" + certs_.ca}, {"get", "a"}).exit_code, 0);
  if (!IsReferenceEtcd(ServerBinary())) {
    EXPECT_THAT(s->proc->Stderr(), HasSubstr("serving client traffic securely"));
    EXPECT_THAT(s->proc->Stderr(),
                HasSubstr("serving client traffic insecurely; this is strongly discouraged!"));
    EXPECT_THAT(s->proc->Stderr(), HasSubstr("rejected connection"));
  }
}

TEST_F(TlsTest, BadCertificateFilesFailAtStartUp) {
  struct Case {
    std::string what;
    std::vector<std::string> flags;
    std::string message;
  };
  const std::string missing = tmp_.path() + "/missing.pem";
  const std::vector<Case> cases = {
      {"missing cert", {"--cert-file", missing, "--key-file", certs_.server.key},
       "open " + missing + ": no such file or directory"},
      {"key of another cert",
       {"--cert-file", certs_.server.cert, "--key-file", certs_.Client("alice").key},
       "private key does not match public key"},
  };
  for (const Case& c : cases) {
    Single s;
    auto argv = SingleArgs({"https"}, c.flags, &s);
    ASSERT_TRUE(argv.ok()) << argv.status();
    CommandResult r = RunCommand(*argv, "", {}, seconds(20));
    EXPECT_FALSE(r.timed_out) << c.what << " kept running: " << r.err;
    EXPECT_NE(r.exit_code, 0) << c.what;
    EXPECT_THAT(r.out + r.err, HasSubstr(c.message)) << c.what;
  }
}

TEST_F(TlsTest, AutoTls) {
  auto s = StartSingle({"https"}, {"--auto-tls"});
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string ep = Endpoint(s->client_ports[0]);
  const std::vector<std::string> skip = {"--insecure-transport=false",
                                         "--insecure-skip-tls-verify"};
  ASSERT_TRUE(BecomesHealthy(ep, skip))
      << s->proc->Stderr();
  ASSERT_EQ(Ctl(ep, skip, {"put", "x", "y"}).exit_code, 0);
  CommandResult get = Ctl(ep, skip, {"get", "x", "--print-value-only"});
  EXPECT_EQ(get.out, "y\n") << get.err;
  EXPECT_TRUE(std::filesystem::exists(s->data_dir + "/fixtures/client/cert.pem"));
  EXPECT_TRUE(std::filesystem::exists(s->data_dir + "/fixtures/client/key.pem"));
  // Verifying clients do not trust the self-signed certificate.
  EXPECT_NE(CtlRefused(ep, {"--cacert=" + certs_.ca}, {"get", "x"}).exit_code, 0);
  EXPECT_NE(CtlRefused("http://" + ep, {}, {"get", "x"}).exit_code, 0);
}

// Issue 12: with an https client URL, --client-cert-auth and a metrics URL,
// the process listens on exactly the configured URLs (client, peer,
// metrics): no internal port carries decrypted traffic past the
// certificate check, also while TLS gRPC and HTTPS gateway streams are
// open. The gateway is served over TLS to a client with a certificate and
// refused to one without.
TEST_F(TlsTest, OnlyConfiguredUrlsListen) {
  if (access(kCurl, X_OK) != 0) GTEST_SKIP() << "curl not installed";
  absl::StatusOr<int> metrics_port = PickFreePort();
  ASSERT_TRUE(metrics_port.ok());
  const std::string metrics_url = absl::StrCat("http://127.0.0.1:", *metrics_port);
  Single s;
  auto argv = SingleArgs({"https"},
                         {"--cert-file", certs_.server.cert, "--key-file", certs_.server.key,
                          "--trusted-ca-file", certs_.ca, "--client-cert-auth",
                          "--listen-metrics-urls", metrics_url},
                         &s);
  ASSERT_TRUE(argv.ok()) << argv.status();
  // The peer port from the command line.
  int peer_port = 0;
  for (size_t i = 0; i + 1 < argv->size(); ++i) {
    if ((*argv)[i] == "--listen-peer-urls") {
      peer_port = std::stoi((*argv)[i + 1].substr((*argv)[i + 1].rfind(':') + 1));
    }
  }
  ASSERT_GT(peer_port, 0);
  const std::string out_dir = tmp_.path() + "/listen";
  std::filesystem::create_directories(out_dir);
  auto proc = BackgroundCommand::Start(*argv, {}, out_dir);
  ASSERT_TRUE(proc.ok()) << proc.status();
  const std::string ep = Endpoint(s.client_ports[0]);
  ASSERT_TRUE(BecomesHealthy(ep, RootFlags()))
      << (*proc)->Stderr();
  ASSERT_EQ(Ctl(ep, RootFlags(), {"put", "k", "v"}).exit_code, 0);

  const std::string https = "https://" + ep;
  const std::vector<std::string> with_cert = {"--cacert", certs_.ca, "--cert",
                                              certs_.Client("root").cert, "--key",
                                              certs_.Client("root").key};
  auto curl = [&](const std::string& url, const std::vector<std::string>& tls,
                  const std::string& body) {
    std::vector<std::string> a = {kCurl, "-s", "-S", "--fail"};
    a.insert(a.end(), tls.begin(), tls.end());
    if (!body.empty()) a.insert(a.end(), {"-X", "POST", "--data-binary", body});
    a.push_back(url);
    return RunCommand(a, "", {}, seconds(10));
  };
  CommandResult range = curl(https + "/v3/kv/range", with_cert, R"({"key":"aw=="})");
  EXPECT_EQ(range.exit_code, 0) << range.err;
  EXPECT_THAT(range.out, HasSubstr(R"("value":"dg==")"));
  CommandResult refused =
      curl(https + "/v3/kv/range", {"--cacert", certs_.ca}, R"({"key":"aw=="})");
  EXPECT_NE(refused.exit_code, 0) << refused.out;
  CommandResult metrics = curl(metrics_url + "/metrics", {}, "");
  EXPECT_EQ(metrics.exit_code, 0) << metrics.err;
  EXPECT_THAT(metrics.out, HasSubstr("etcd_server_has_leader 1"));

  // Long-lived connections while the sockets are listed: a TLS gRPC watch
  // (etcdctl) and an HTTPS gateway watch (curl).
  std::vector<std::string> watch_args = RootFlags();
  watch_args.insert(watch_args.end(), {"watch", "w"});
  auto grpc_watch = StartEtcdctl(ep, watch_args, out_dir);
  ASSERT_TRUE(grpc_watch.ok()) << grpc_watch.status();
  std::vector<std::string> curl_watch = {kCurl, "-s", "-N"};
  curl_watch.insert(curl_watch.end(), with_cert.begin(), with_cert.end());
  curl_watch.insert(curl_watch.end(), {"-X", "POST", "--data-binary",
                                       R"({"create_request":{"key":"dw=="}})",
                                       https + "/v3/watch"});
  auto http_watch = BackgroundCommand::Start(curl_watch, {}, out_dir);
  ASSERT_TRUE(http_watch.ok()) << http_watch.status();
  ASSERT_TRUE((*http_watch)->WaitForStdout(
      [](const std::string& out) { return out.find("\"created\":true") != std::string::npos; },
      seconds(10)))
      << (*http_watch)->Stdout();
  ASSERT_EQ(Ctl(ep, RootFlags(), {"put", "w", "1"}).exit_code, 0);
  EXPECT_TRUE((*grpc_watch)->WaitForStdout(
      [](const std::string& out) { return out.find("PUT\nw\n1") != std::string::npos; },
      seconds(10)))
      << (*grpc_watch)->Stdout();
  EXPECT_TRUE((*http_watch)->WaitForStdout(
      [](const std::string& out) { return out.find("\"value\":\"MQ==\"") != std::string::npos; },
      seconds(10)))
      << (*http_watch)->Stdout();

  const std::multiset<std::string> expected = {absl::StrCat("tcp:", s.client_ports[0]),
                                               absl::StrCat("tcp:", peer_port),
                                               absl::StrCat("tcp:", *metrics_port)};
  EXPECT_EQ(ListeningSockets((*proc)->pid()), expected);
}

// etcd's TestCtlV3GetRevokedCRL: with --client-crl-file, a client whose
// certificate the CRL revokes is refused (gRPC and the HTTPS gateway), a
// client of the same CA that is not revoked is served.
TEST_F(TlsTest, ClientCrlRefusesRevokedCertificate) {
  const std::string d = tmp_.path() + "/crl";
  absl::Status fixture = MakeRevocationFixture(d);
  ASSERT_TRUE(fixture.ok()) << fixture;
  ExpectClientCrlRefusesRevoked(d, d + "/crl.pem");
}

// A client CRL past its nextUpdate still revokes what it lists and lets the
// other clients in, as etcd (which only looks up serials; its e2e fixture
// revoke.crl expired in 2021).
TEST_F(TlsTest, ClientCrlPastNextUpdateStillRevokes) {
  const std::string d = tmp_.path() + "/crl";
  absl::Status fixture = MakeRevocationFixture(d);
  ASSERT_TRUE(fixture.ok()) << fixture;
  ExpectClientCrlRefusesRevoked(d, d + "/crl-stale.pem");
}

// A single member with client TLS, client certificate auth and `crl` as
// --client-crl-file (certificates of MakeRevocationFixture in `d`): the
// revoked client is refused, the good one served (etcdctl and curl).
void TlsTest::ExpectClientCrlRefusesRevoked(const std::string& d, const std::string& crl) {
  auto s = StartSingle({"https"},
                       {"--cert-file", d + "/server.crt", "--key-file", d + "/server.key",
                        "--trusted-ca-file", d + "/ca.crt", "--client-cert-auth",
                        "--client-crl-file", crl});
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string ep = Endpoint(s->client_ports[0]);
  const std::vector<std::string> good = {"--cacert=" + d + "/ca.crt", "--cert=" + d + "/good.crt",
                                         "--key=" + d + "/good.key"};
  const std::vector<std::string> revoked = {"--cacert=" + d + "/ca.crt",
                                            "--cert=" + d + "/revoked.crt",
                                            "--key=" + d + "/revoked.key"};
  ASSERT_TRUE(BecomesHealthy(ep, good))
      << s->proc->Stderr();
  CommandResult refused = CtlRefused(ep, revoked, {"put", "k", "v"});
  EXPECT_NE(refused.exit_code, 0) << refused.out;
  EXPECT_THAT(refused.err, HasSubstr("Error:"));
  CommandResult put = Ctl(ep, good, {"put", "k", "v"});
  EXPECT_EQ(put.exit_code, 0) << put.err;
  if (access(kCurl, X_OK) == 0) {
    auto curl = [&](const std::string& name) {
      return RunCommand({kCurl, "-s", "-S", "--fail", "--cacert", d + "/ca.crt", "--cert",
                         d + "/" + name + ".crt", "--key", d + "/" + name + ".key", "-X", "POST",
                         "--data-binary", R"({"key":"aw=="})", "https://" + ep + "/v3/kv/range"},
                        "", {}, seconds(10));
    };
    EXPECT_NE(curl("revoked").exit_code, 0);
    CommandResult ok = curl("good");
    EXPECT_EQ(ok.exit_code, 0) << ok.err;
    EXPECT_THAT(ok.out, HasSubstr(R"("value":"dg==")"));
  }
  if (!IsReferenceEtcd(ServerBinary())) {
    EXPECT_THAT(s->proc->Stderr(), HasSubstr("certificate revoked"));
  }
}

// --peer-crl-file: members whose peer certificate is not revoked form a
// cluster; with a revoked peer certificate no peer connection is accepted
// (nor made), so no quorum forms.
TEST_F(TlsTest, PeerCrlRefusesRevokedCertificate) {
  const std::string d = tmp_.path() + "/crl";
  absl::Status fixture = MakeRevocationFixture(d);
  ASSERT_TRUE(fixture.ok()) << fixture;
  Cluster::Options o;
  o.size = 2;
  o.tls.peer = true;
  o.tls.ca_file = d + "/ca.crt";
  o.tls.cert_file = d + "/server.crt";
  o.tls.key_file = d + "/server.key";
  o.extra_flags = {"--peer-crl-file=" + d + "/crl.pem"};
  std::filesystem::create_directories(tmp_.path() + "/good");
  std::filesystem::create_directories(tmp_.path() + "/revoked");
  {
    auto c = Cluster::Start(o, tmp_.path() + "/good");
    ASSERT_TRUE(c.ok()) << c.status();
    CommandResult put = Etcdctl((*c)->RunningEndpoints(), {"put", "k", "v"});
    EXPECT_EQ(put.exit_code, 0) << put.err;
  }
  o.tls.cert_file = d + "/server-revoked.crt";
  o.tls.key_file = d + "/server-revoked.key";
  o.ready_timeout = seconds(5);
  auto refused = Cluster::Start(o, tmp_.path() + "/revoked");
  EXPECT_FALSE(refused.ok());
}

// The peer port follows its CRL file too (etcd reads it per handshake): a
// client certificate that the first CRL does not list is accepted; once the
// file is replaced by one that revokes it, new handshakes refuse it, and the
// certificate it does not list is still accepted.
TEST_F(TlsTest, PeerCrlReloadsWithoutRestart) {
  if (IsReferenceEtcd(ServerBinary())) GTEST_SKIP() << "checks cppetcd's logs";
  const std::string d = tmp_.path() + "/crl";
  absl::Status fixture = MakeRevocationFixture(d);
  ASSERT_TRUE(fixture.ok()) << fixture;
  const std::string crl = d + "/peer-crl.pem";
  std::filesystem::copy_file(d + "/crl-none.pem", crl);
  Cluster::Options o;
  o.size = 1;
  o.tls.peer = true;
  o.tls.ca_file = d + "/ca.crt";
  o.tls.cert_file = d + "/server.crt";
  o.tls.key_file = d + "/server.key";
  o.extra_flags = {"--peer-crl-file=" + crl, "--peer-client-cert-auth"};
  std::filesystem::create_directories(tmp_.path() + "/cluster");
  auto c = Cluster::Start(o, tmp_.path() + "/cluster");
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string peer = Endpoint((*c)->member(0).peer_port());
  std::string last;
  // TLS 1.2, so that a refused client certificate fails the handshake itself.
  auto accepted = [&](const std::string& name) {
    CommandResult r = RunCommand({"/usr/bin/openssl", "s_client", "-connect", peer, "-tls1_2",
                                  "-CAfile", d + "/ca.crt", "-cert", d + "/" + name + ".crt",
                                  "-key", d + "/" + name + ".key", "-alpn", "h2"},
                                 "Q\n", {}, seconds(10));
    last = r.out + r.err;
    return r.exit_code == 0 && absl::StrContains(r.out, "Verify return code: 0 (ok)");
  };
  ASSERT_TRUE(accepted("revoked")) << last;
  ASSERT_TRUE(accepted("good")) << last;
  std::filesystem::copy_file(d + "/crl.pem", crl + ".new");
  std::filesystem::rename(crl + ".new", crl);
  EXPECT_TRUE(PollUntil([&] { return !accepted("revoked"); }, seconds(20))) << last;
  EXPECT_TRUE(accepted("good")) << last;
  EXPECT_THAT((*c)->member(0).ReadLog(), HasSubstr("reloaded the peer TLS certificate files"));
  // A file that is not a CRL keeps the last good one.
  {
    std::ofstream bad(crl + ".new", std::ios::binary);
    bad << "not a CRL\n";
  }
  std::filesystem::rename(crl + ".new", crl);
  EXPECT_TRUE(PollUntil([&] {
    return absl::StrContains((*c)->member(0).ReadLog(),
                             "cannot reload the peer TLS certificate files");
  }, seconds(20)));
  EXPECT_FALSE(accepted("revoked")) << last;
  EXPECT_TRUE(accepted("good")) << last;
}

TEST_F(TlsTest, CrlFlagsNeedWhatTheyCheck) {
  if (IsReferenceEtcd(ServerBinary())) GTEST_SKIP() << "cppetcd's start-up checks";
  const std::string d = tmp_.path() + "/crl";
  absl::Status fixture = MakeRevocationFixture(d);
  ASSERT_TRUE(fixture.ok()) << fixture;
  struct Case {
    std::vector<std::string> flags;
    std::string message;
  };
  const std::vector<std::string> server = {"--cert-file", d + "/server.crt", "--key-file",
                                           d + "/server.key"};
  const std::vector<std::string> mutual = {"--cert-file", d + "/server.crt", "--key-file",
                                           d + "/server.key", "--trusted-ca-file", d + "/ca.crt",
                                           "--client-cert-auth"};
  auto with = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  const std::vector<Case> cases = {
      {with(server, {"--client-crl-file", d + "/crl.pem"}),
       "--client-crl-file requires --client-cert-auth"},
      {with(mutual, {"--client-crl-file", d + "/ca.crt"}),
       "no certificate revocation list (PEM or DER) found"},
      {with(mutual, {"--client-crl-file", d + "/missing.pem"}),
       "open " + d + "/missing.pem: no such file or directory"},
      {with(server, {"--peer-cert-file", d + "/server.crt", "--peer-key-file", d + "/server.key",
                     "--peer-crl-file", d + "/crl.pem"}),
       "--peer-crl-file requires --peer-trusted-ca-file"},
      // gRPC's peer verification would fail every handshake with it.
      {with(server, {"--peer-cert-file", d + "/server.crt", "--peer-key-file", d + "/server.key",
                     "--peer-trusted-ca-file", d + "/ca.crt", "--peer-crl-file",
                     d + "/crl-stale.pem"}),
       "crl-stale.pem: the revocation list has expired"},
  };
  for (const Case& c : cases) {
    Single s;
    auto argv = SingleArgs({"https"}, c.flags, &s);
    ASSERT_TRUE(argv.ok()) << argv.status();
    CommandResult r = RunCommand(*argv, "", {}, seconds(20));
    EXPECT_FALSE(r.timed_out) << c.message;
    EXPECT_NE(r.exit_code, 0) << c.message;
    EXPECT_THAT(r.out + r.err, HasSubstr(c.message));
  }
}

// Certificates rotate without a restart, as with etcd (which reads the files
// again for new handshakes): the server's certificate and key files are
// replaced by ones from another CA, and new connections see the new
// certificate within seconds; etcd does the same.
TEST_F(TlsTest, ClientCertificateFilesReloadWithoutRestart) {
  const std::string cert = tmp_.path() + "/rotating.pem", key = tmp_.path() + "/rotating-key.pem";
  std::filesystem::copy_file(certs_.server.cert, cert);
  std::filesystem::copy_file(certs_.server.key, key);
  auto s = StartSingle({"https"}, {"--cert-file", cert, "--key-file", key});
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string ep = Endpoint(s->client_ports[0]);
  ASSERT_TRUE(BecomesHealthy(ep, {"--cacert=" + certs_.ca})) << s->proc->Stderr();
  RotateToForeignPairAndExpectIt(cert, key, ep, s->proc->Stderr());
  EXPECT_EQ(Ctl(ep, {"--cacert=" + certs_.other_ca}, {"put", "k", "v"}).exit_code, 0);
}

// The peer port follows its certificate, key and CA files too: the CA file
// becomes a bundle of both CAs, then the key and the certificate are replaced
// by ones from the other CA. While only the key is new the old pair stays in
// use; then new handshakes present the new certificate, and a restarted
// member (which dials and is dialled with the new files) rejoins and serves.
TEST_F(TlsTest, PeerCertificateFilesReloadWithoutRestart) {
  if (IsReferenceEtcd(ServerBinary())) GTEST_SKIP() << "checks cppetcd's logs and timing";
  const std::string dir = tmp_.path() + "/rotating";
  std::filesystem::create_directories(dir);
  const std::string ca = dir + "/ca.pem", cert = dir + "/peer.pem", key = dir + "/peer-key.pem";
  std::filesystem::copy_file(certs_.ca, ca);
  std::filesystem::copy_file(certs_.server.cert, cert);
  std::filesystem::copy_file(certs_.server.key, key);
  Cluster::Options o;
  o.size = 2;
  o.tls.peer = true;
  o.tls.ca_file = ca;
  o.tls.cert_file = cert;
  o.tls.key_file = key;
  std::filesystem::create_directories(tmp_.path() + "/cluster");
  auto c = Cluster::Start(o, tmp_.path() + "/cluster");
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string peer = Endpoint((*c)->member(0).peer_port());
  // A handshake with the peer port that verifies its certificate against
  // `trusted` (the port asks for a client certificate: the original one,
  // trusted before and after the rotation).
  std::string last;  // the last handshake's output, for failure messages
  auto handshake_verified = [&](const std::string& trusted) {
    CommandResult r =
        RunCommand({"/usr/bin/openssl", "s_client", "-connect", peer, "-CAfile", trusted, "-cert",
                    certs_.server.cert, "-key", certs_.server.key, "-alpn", "h2",
                    "-verify_return_error"},
                   "Q\n", {}, seconds(10));
    last = r.out + r.err;
    return r.exit_code == 0 && absl::StrContains(r.out, "Verify return code: 0 (ok)");
  };
  ASSERT_TRUE(handshake_verified(certs_.ca)) << last;
  ASSERT_FALSE(handshake_verified(certs_.other_ca)) << last;
  auto replace = [](const std::string& from, const std::string& to) {
    std::filesystem::copy_file(from, to + ".new");
    std::filesystem::rename(to + ".new", to);
  };
  {
    std::ofstream bundle(dir + "/bundle.pem", std::ios::binary);
    for (const std::string& f : {certs_.ca, certs_.other_ca}) {
      std::ifstream in(f, std::ios::binary);
      bundle << in.rdbuf();
    }
    bundle.close();
    ASSERT_TRUE(bundle.good());
    replace(dir + "/bundle.pem", ca);
  }
  // The new key alone does not match the certificate: the old pair stays.
  replace(certs_.foreign_server.key, key);
  std::this_thread::sleep_for(milliseconds(2500));  // past two refresh intervals
  EXPECT_TRUE(handshake_verified(certs_.ca)) << last;
  EXPECT_THAT((*c)->member(0).ReadLog(), HasSubstr("cannot reload the peer TLS certificate files"));
  replace(certs_.foreign_server.cert, cert);
  EXPECT_TRUE(PollUntil([&] { return handshake_verified(certs_.other_ca); }, seconds(20))) << last;
  EXPECT_FALSE(handshake_verified(certs_.ca)) << last;
  EXPECT_THAT((*c)->member(0).ReadLog(), HasSubstr("reloaded the peer TLS certificate files"));
  // Member 1 restarted: both directions now use the new files.
  ClusterMember& m1 = (*c)->member(1);
  m1.Kill();
  ASSERT_TRUE(m1.Spawn().ok());
  ASSERT_TRUE(m1.WaitServing(seconds(30)).ok()) << m1.ReadLog();
  EXPECT_EQ(Ctl(m1.ClientEndpoint(), {}, {"put", "after-rotation", "v"}).exit_code, 0);
  ASSERT_TRUE((*c)->member(0).WaitServing(seconds(10)).ok());
  CommandResult get =
      Ctl((*c)->member(0).ClientEndpoint(), {}, {"get", "after-rotation", "--print-value-only"});
  EXPECT_EQ(get.out, "v\n") << get.err;
}

// --cipher-suites with Go's names: a TLS 1.2 client offering only a suite
// not listed fails the handshake, one offering a listed suite is served;
// TLS 1.3 is not restricted (as in Go); an unknown name stops the start
// with etcd's message.
TEST_F(TlsTest, CipherSuites) {
  // The test certificates are ECDSA: the ECDSA suites apply.
  auto s = StartSingle({"https"}, {"--cert-file", certs_.server.cert, "--key-file",
                                   certs_.server.key, "--cipher-suites",
                                   "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,"
                                   "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"});
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string ep = Endpoint(s->client_ports[0]);
  ASSERT_TRUE(BecomesHealthy(ep, {"--cacert=" + certs_.ca})) << s->proc->Stderr();
  auto s_client = [&](const std::vector<std::string>& opts) {
    std::vector<std::string> argv = {"/usr/bin/openssl", "s_client", "-connect", ep, "-CAfile",
                                     certs_.ca};
    argv.insert(argv.end(), opts.begin(), opts.end());
    return RunCommand(argv, "Q\n", {}, seconds(10));
  };
  CommandResult listed = s_client({"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"});
  EXPECT_EQ(listed.exit_code, 0) << listed.out << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("ECDHE-ECDSA-AES128-GCM-SHA256"));
  CommandResult alias = s_client({"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"});
  EXPECT_EQ(alias.exit_code, 0) << alias.out << alias.err;
  CommandResult unlisted = s_client({"-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"});
  EXPECT_NE(unlisted.exit_code, 0) << unlisted.out;
  EXPECT_THAT(unlisted.out + unlisted.err, ::testing::Not(HasSubstr("Cipher is ECDHE")));
  CommandResult tls13 = s_client({"-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"});
  EXPECT_EQ(tls13.exit_code, 0) << tls13.out << tls13.err;

  // The peer port (gRPC's TLS) of a 2-member cluster: the same list; the
  // members still reach each other.
  Cluster::Options o;
  o.size = 2;
  o.tls = MutualTls();
  o.extra_flags = {"--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"};
  auto c = Cluster::Start(o, tmp_.path());
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string peer = Endpoint((*c)->member(0).peer_port());
  auto peer_client = [&](const std::string& cipher) {
    return RunCommand({"/usr/bin/openssl", "s_client", "-connect", peer, "-CAfile", certs_.ca,
                       "-cert", certs_.server.cert, "-key", certs_.server.key, "-alpn", "h2",
                       "-tls1_2", "-cipher", cipher},
                      "Q\n", {}, seconds(10));
  };
  CommandResult peer_listed = peer_client("ECDHE-ECDSA-AES128-GCM-SHA256");
  EXPECT_EQ(peer_listed.exit_code, 0) << peer_listed.out << peer_listed.err;
  CommandResult peer_unlisted = peer_client("ECDHE-ECDSA-AES256-GCM-SHA384");
  EXPECT_NE(peer_unlisted.exit_code, 0) << peer_unlisted.out;

  if (IsReferenceEtcd(ServerBinary())) return;
  Single bad;
  auto argv = SingleArgs({"https"},
                         {"--cert-file", certs_.server.cert, "--key-file", certs_.server.key,
                          "--cipher-suites", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,BOGUS"},
                         &bad);
  ASSERT_TRUE(argv.ok()) << argv.status();
  CommandResult r = RunCommand(*argv, "", {}, seconds(20));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.out + r.err, HasSubstr(R"(unexpected TLS cipher suite \"BOGUS\")"));
}

// etcd 3.5's --listen-client-http-urls over mutual TLS with a CRL: the
// client URL serves gRPC only (gRPC's own TLS: etcdctl works, curl of the
// gateway and /health fails, a revoked certificate is refused), the HTTP
// URL serves the HTTP side only (gateway, /health, /metrics; etcdctl
// fails), and only those URLs and the peer URL listen.
TEST_F(TlsTest, GrpcOnlyClientUrlWithHttpUrl) {
  if (IsReferenceEtcd(ServerBinary())) GTEST_SKIP() << "etcd 3.4 has no --listen-client-http-urls";
  if (access(kCurl, X_OK) != 0) GTEST_SKIP() << "curl not installed";
  const std::string d = tmp_.path() + "/crl";
  absl::Status fixture = MakeRevocationFixture(d);
  ASSERT_TRUE(fixture.ok()) << fixture;
  absl::StatusOr<int> http_port = PickFreePort();
  ASSERT_TRUE(http_port.ok());
  Single s;
  auto argv = SingleArgs({"https"},
                         {"--cert-file", d + "/server.crt", "--key-file", d + "/server.key",
                          "--trusted-ca-file", d + "/ca.crt", "--client-cert-auth",
                          "--client-crl-file", d + "/crl.pem", "--listen-client-http-urls",
                          absl::StrCat("https://127.0.0.1:", *http_port)},
                         &s);
  ASSERT_TRUE(argv.ok()) << argv.status();
  int peer_port = 0;
  for (size_t i = 0; i + 1 < argv->size(); ++i) {
    if ((*argv)[i] == "--listen-peer-urls") {
      peer_port = std::stoi((*argv)[i + 1].substr((*argv)[i + 1].rfind(':') + 1));
    }
  }
  const std::string out_dir = tmp_.path() + "/grpc-only";
  std::filesystem::create_directories(out_dir);
  auto proc = BackgroundCommand::Start(*argv, {}, out_dir);
  ASSERT_TRUE(proc.ok()) << proc.status();
  const std::string grpc_ep = Endpoint(s.client_ports[0]);
  const std::string http_ep = Endpoint(*http_port);
  const std::vector<std::string> good = {"--cacert=" + d + "/ca.crt", "--cert=" + d + "/good.crt",
                                         "--key=" + d + "/good.key"};
  const std::vector<std::string> revoked = {"--cacert=" + d + "/ca.crt",
                                            "--cert=" + d + "/revoked.crt",
                                            "--key=" + d + "/revoked.key"};
  ASSERT_TRUE(BecomesHealthy(grpc_ep, good)) << (*proc)->Stderr();
  CommandResult put = Ctl(grpc_ep, good, {"put", "k", "v"});
  EXPECT_EQ(put.exit_code, 0) << put.err;
  CommandResult get = Ctl(grpc_ep, good, {"get", "k", "--print-value-only"});
  EXPECT_EQ(get.out, "v\n") << get.err;
  CommandResult refused = CtlRefused(grpc_ep, revoked, {"put", "k", "v"});
  EXPECT_NE(refused.exit_code, 0) << refused.out;
  // gRPC is not served on the HTTP URL.
  CommandResult ctl_http = CtlRefused(http_ep, good, {"put", "k", "v"});
  EXPECT_NE(ctl_http.exit_code, 0) << ctl_http.out;

  auto curl = [&](const std::string& url, const std::string& name, const std::string& body) {
    std::vector<std::string> a = {kCurl, "-s", "-S", "--fail", "--max-time", "5", "--cacert",
                                  d + "/ca.crt", "--cert", d + "/" + name + ".crt", "--key",
                                  d + "/" + name + ".key"};
    if (!body.empty()) a.insert(a.end(), {"-X", "POST", "--data-binary", body});
    a.push_back(url);
    return RunCommand(a, "", {}, seconds(10));
  };
  CommandResult gw_put = curl("https://" + http_ep + "/v3/kv/put", "good",
                              R"({"key":"Zm9v","value":"YmFy"})");
  EXPECT_EQ(gw_put.exit_code, 0) << gw_put.err;
  EXPECT_THAT(gw_put.out, HasSubstr("revision"));
  CommandResult foo = Ctl(grpc_ep, good, {"get", "foo", "--print-value-only"});
  EXPECT_EQ(foo.out, "bar\n") << foo.err;
  CommandResult health = curl("https://" + http_ep + "/health", "good", "");
  EXPECT_EQ(health.exit_code, 0) << health.err;
  EXPECT_THAT(health.out, HasSubstr(R"("health":"true")"));
  CommandResult metrics = curl("https://" + http_ep + "/metrics", "good", "");
  EXPECT_EQ(metrics.exit_code, 0) << metrics.err;
  EXPECT_THAT(metrics.out, HasSubstr("etcd_server_has_leader 1"));
  EXPECT_NE(curl("https://" + http_ep + "/health", "revoked", "").exit_code, 0);
  // Neither the gateway nor /health on the gRPC-only URL: curl speaks
  // HTTP/2 there (gRPC's ALPN) and gets gRPC's answer to a non-gRPC
  // request, no JSON, and nothing is written.
  CommandResult grpc_health = curl("https://" + grpc_ep + "/health", "good", "");
  EXPECT_THAT(grpc_health.out, ::testing::Not(HasSubstr("health")));
  CommandResult grpc_put = curl("https://" + grpc_ep + "/v3/kv/put", "good",
                                R"({"key":"Zm9vMg==","value":"YmFy"})");
  EXPECT_THAT(grpc_put.out, ::testing::Not(HasSubstr("revision")));
  CommandResult foo2 = Ctl(grpc_ep, good, {"get", "foo2", "--print-value-only"});
  EXPECT_EQ(foo2.exit_code, 0) << foo2.err;
  EXPECT_EQ(foo2.out, "");

  const std::multiset<std::string> expected = {absl::StrCat("tcp:", s.client_ports[0]),
                                               absl::StrCat("tcp:", *http_port),
                                               absl::StrCat("tcp:", peer_port)};
  EXPECT_EQ(ListeningSockets((*proc)->pid()), expected);
  const std::string log = (*proc)->Stderr();
  EXPECT_THAT(log, HasSubstr(absl::StrCat(R"("msg":"serving client traffic securely","traffic":"grpc","address":")",
                                          grpc_ep, "\"")));
  EXPECT_THAT(log, HasSubstr(absl::StrCat(R"("msg":"serving client traffic securely","traffic":"http","address":")",
                                          http_ep, "\"")));
}

// On the gRPC-only URL (gRPC's TLS) the client certificate's CN is the
// auth user, as on the shared port (etcd: with auth enabled, a call
// without a token is made as the CN's user): root's certificate may write,
// alice's (a user without a role) may not; with no certificate and no
// token there is no user.
TEST_F(TlsTest, GrpcOnlyClientUrlCommonNameIsTheAuthUser) {
  if (IsReferenceEtcd(ServerBinary())) GTEST_SKIP() << "etcd 3.4 has no --listen-client-http-urls";
  absl::StatusOr<int> http_port = PickFreePort();
  ASSERT_TRUE(http_port.ok());
  auto s = StartSingle({"https"}, {"--cert-file", certs_.server.cert, "--key-file",
                                   certs_.server.key, "--trusted-ca-file", certs_.ca,
                                   "--client-cert-auth", "--listen-client-http-urls",
                                   absl::StrCat("http://127.0.0.1:", *http_port)});
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string ep = Endpoint(s->client_ports[0]);
  ASSERT_TRUE(BecomesHealthy(ep, RootFlags())) << s->proc->Stderr();
  const std::vector<std::string> alice = {"--cacert=" + certs_.ca,
                                          "--cert=" + certs_.Client("alice").cert,
                                          "--key=" + certs_.Client("alice").key};
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"user", "add", "root", "--new-user-password=rootpw"},
        std::vector<std::string>{"user", "grant-role", "root", "root"},
        std::vector<std::string>{"user", "add", "alice", "--new-user-password=alicepw"},
        std::vector<std::string>{"auth", "enable"}}) {
    CommandResult r = Ctl(ep, RootFlags(), args);
    ASSERT_EQ(r.exit_code, 0) << absl::StrJoin(args, " ") << ": " << r.err;
  }
  CommandResult as_root = Ctl(ep, RootFlags(), {"put", "k", "v"});
  EXPECT_EQ(as_root.exit_code, 0) << as_root.err;
  CommandResult as_alice = Ctl(ep, alice, {"put", "k", "v"});
  EXPECT_NE(as_alice.exit_code, 0);
  EXPECT_THAT(as_alice.err, HasSubstr("permission denied"));
  CommandResult alice_pw = Ctl(ep, alice, {"--user=root:rootpw", "get", "k", "--print-value-only"});
  EXPECT_EQ(alice_pw.out, "v\n") << alice_pw.err;
}

// Large messages through gRPC's own TLS on the gRPC-only URL, which writes
// TLS records of at most kGrpcTlsMaxFrameBytes (8 KiB, below gRPC's 16 KiB
// default, to save memory per idle connection): a put of a value just
// under the default --max-request-bytes (1.5 MiB) and a Range answer of
// about 5.5 MB (that value and four of 1 MB) arrive whole and unchanged.
TEST_F(TlsTest, GrpcOnlyClientUrlLargeMessages) {
  if (IsReferenceEtcd(ServerBinary())) GTEST_SKIP() << "etcd 3.4 has no --listen-client-http-urls";
  absl::StatusOr<int> http_port = PickFreePort();
  ASSERT_TRUE(http_port.ok());
  auto s = StartSingle({"https"}, {"--cert-file", certs_.server.cert, "--key-file",
                                   certs_.server.key, "--trusted-ca-file", certs_.ca,
                                   "--client-cert-auth", "--listen-client-http-urls",
                                   absl::StrCat("http://127.0.0.1:", *http_port)});
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string ep = Endpoint(s->client_ports[0]);
  ASSERT_TRUE(BecomesHealthy(ep, RootFlags())) << s->proc->Stderr();
  // Values that no record boundary can hide a shift in: letters in a
  // pattern that differs per key.
  auto value = [](size_t size, size_t seed) {
    std::string v(size, 'a');
    for (size_t i = 0; i < size; ++i) v[i] = static_cast<char>('a' + (i * 7919 + seed) % 26);
    return v;
  };
  std::vector<std::string> flags = RootFlags();
  flags.insert(flags.end(), {"put", "big/0"});
  const std::string big = value(1500 * 1000, 0);
  CommandResult put = Etcdctl(ep, flags, big, seconds(30));
  ASSERT_EQ(put.exit_code, 0) << put.err;
  CommandResult get = Ctl(ep, RootFlags(), {"get", "big/0", "--print-value-only"});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out.size(), big.size() + 1);
  EXPECT_TRUE(get.out == big + "\n") << "the 1.5 MB value came back changed";
  std::string expected = "big/0\n" + big + "\n";
  for (size_t k = 1; k <= 4; ++k) {
    std::vector<std::string> f = RootFlags();
    const std::string key = absl::StrCat("big/", k);
    f.insert(f.end(), {"put", key});
    const std::string v = value(1000 * 1000, k);
    CommandResult r = Etcdctl(ep, f, v, seconds(30));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    expected += key + "\n" + v + "\n";
  }
  CommandResult range = Ctl(ep, RootFlags(), {"get", "big/", "--prefix"});
  ASSERT_EQ(range.exit_code, 0) << range.err;
  EXPECT_EQ(range.out.size(), expected.size());
  EXPECT_TRUE(range.out == expected) << "the 5.5 MB Range answer came back changed";
}

// --cipher-suites on the gRPC-only URL (gRPC's TLS reads the list from
// GRPC_SSL_CIPHER_SUITES, set before gRPC starts): a TLS 1.2 client
// offering only an unlisted suite fails, a listed one is served; and the
// HTTP URL (the listener's own TLS) follows the same list.
TEST_F(TlsTest, GrpcOnlyClientUrlCipherSuites) {
  if (IsReferenceEtcd(ServerBinary())) GTEST_SKIP() << "etcd 3.4 has no --listen-client-http-urls";
  absl::StatusOr<int> http_port = PickFreePort();
  ASSERT_TRUE(http_port.ok());
  auto s = StartSingle({"https"}, {"--cert-file", certs_.server.cert, "--key-file",
                                   certs_.server.key, "--cipher-suites",
                                   "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                                   "--listen-client-http-urls",
                                   absl::StrCat("https://127.0.0.1:", *http_port)});
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string ep = Endpoint(s->client_ports[0]);
  ASSERT_TRUE(BecomesHealthy(ep, {"--cacert=" + certs_.ca})) << s->proc->Stderr();
  auto s_client = [&](const std::string& where, const std::string& alpn,
                      const std::string& cipher) {
    return RunCommand({"/usr/bin/openssl", "s_client", "-connect", where, "-CAfile", certs_.ca,
                       "-alpn", alpn, "-tls1_2", "-cipher", cipher},
                      "Q\n", {}, seconds(10));
  };
  CommandResult listed = s_client(ep, "h2", "ECDHE-ECDSA-AES128-GCM-SHA256");
  EXPECT_EQ(listed.exit_code, 0) << listed.out << listed.err;
  CommandResult unlisted = s_client(ep, "h2", "ECDHE-ECDSA-AES256-GCM-SHA384");
  EXPECT_NE(unlisted.exit_code, 0) << unlisted.out;
  const std::string http_ep = Endpoint(*http_port);
  EXPECT_EQ(s_client(http_ep, "http/1.1", "ECDHE-ECDSA-AES128-GCM-SHA256").exit_code, 0);
  EXPECT_NE(s_client(http_ep, "http/1.1", "ECDHE-ECDSA-AES256-GCM-SHA384").exit_code, 0);
}

// The gRPC-only URL's certificate is reloaded when the files change
// (the mirror in <data-dir>/fixtures/client-tls that gRPC's file watcher
// reads), as on the shared port.
TEST_F(TlsTest, GrpcOnlyClientUrlReloadsCertificates) {
  if (IsReferenceEtcd(ServerBinary())) GTEST_SKIP() << "etcd 3.4 has no --listen-client-http-urls";
  const std::string cert = tmp_.path() + "/rotating.pem", key = tmp_.path() + "/rotating-key.pem";
  std::filesystem::copy_file(certs_.server.cert, cert);
  std::filesystem::copy_file(certs_.server.key, key);
  absl::StatusOr<int> http_port = PickFreePort();
  ASSERT_TRUE(http_port.ok());
  auto s = StartSingle({"https"}, {"--cert-file", cert, "--key-file", key,
                                   "--listen-client-http-urls",
                                   absl::StrCat("http://127.0.0.1:", *http_port)});
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string ep = Endpoint(s->client_ports[0]);
  ASSERT_TRUE(BecomesHealthy(ep, {"--cacert=" + certs_.ca})) << s->proc->Stderr();
  RotateToForeignPairAndExpectIt(cert, key, ep, s->proc->Stderr());
}

// A unixs:// gRPC-only client URL: gRPC's TLS on the socket file named by
// the URL's host:port part (as on the shared port); an existing file there
// stops the start as Go's listener does (gRPC would remove it).
TEST_F(TlsTest, GrpcOnlyUnixSocketUrl) {
  if (IsReferenceEtcd(ServerBinary())) GTEST_SKIP() << "etcd 3.4 has no --listen-client-http-urls";
  absl::StatusOr<int> http_port = PickFreePort(), peer_port = PickFreePort();
  ASSERT_TRUE(http_port.ok() && peer_port.ok());
  const std::string dir = tmp_.path() + "/unix-grpc";
  std::filesystem::create_directories(dir + "/again");
  // Relative socket paths, as etcd's (and etcdctl's TLS server name is
  // the URL's host): the test runs in `dir` and goes back at the end.
  char buf[4096];
  ASSERT_NE(::getcwd(buf, sizeof(buf)), nullptr);
  const std::string old_cwd = buf;
  ASSERT_EQ(::chdir(dir.c_str()), 0);
  struct Back {
    std::string to;
    ~Back() { (void)::chdir(to.c_str()); }
  } back{old_cwd};
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", *peer_port);
  const std::string sock = absl::StrCat("localhost:", *peer_port + 1);
  auto argv = [&](const std::string& data) {
    return std::vector<std::string>{
        ServerBinary(), "--name", "s", "--data-dir", data,
        "--listen-client-urls", "unixs://" + sock,
        "--listen-client-http-urls", absl::StrCat("http://127.0.0.1:", *http_port),
        "--advertise-client-urls", absl::StrCat("http://127.0.0.1:", *http_port),
        "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", "s=" + peer_url, "--cert-file", certs_.server.cert, "--key-file",
        certs_.server.key, "--trusted-ca-file", certs_.ca, "--client-cert-auth"};
  };
  auto proc = BackgroundCommand::Start(argv(dir + "/data"), {}, dir);
  ASSERT_TRUE(proc.ok()) << proc.status();
  const std::string ep = "unixs://" + sock;
  EXPECT_TRUE(BecomesHealthy(ep, RootFlags())) << (*proc)->Stderr();
  CommandResult put = Ctl(ep, RootFlags(), {"put", "k", "v"});
  EXPECT_EQ(put.exit_code, 0) << put.err;
  EXPECT_THAT((*proc)->Stderr(),
              HasSubstr(absl::StrCat(R"("traffic":"grpc","address":")", sock, "\"")));
  (*proc)->Kill();
  // After a kill the file stays: a new start refuses it.
  ASSERT_TRUE(std::filesystem::exists(dir + "/" + sock));
  CommandResult r = RunCommand(argv(dir + "/again/data"), "", {}, seconds(30));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.out + r.err, HasSubstr(absl::StrCat("listen unix ", sock,
                                                    ": bind: address already in use")));
}

// Item 4 of issue 12: the dialing member verifies the peer's server
// certificate whenever it can. Certificates without --peer-trusted-ca-file:
// verified against the system's roots, which do not know the test CA, so no
// quorum forms (as with etcd). --peer-auto-tls with --peer-trusted-ca-file:
// verified against that CA, which did not sign the self-signed certificates
// (etcd drops the CA and trusts any peer). Client-certificate checks are off
// in both, so only the dialer's verification can refuse.
TEST_F(TlsTest, PeerServerCertificateIsVerified) {
  Cluster::Options o;
  o.size = 2;
  o.tls.peer = true;
  o.tls.peer_client_cert_auth = false;
  o.tls.cert_file = certs_.server.cert;
  o.tls.key_file = certs_.server.key;
  o.ready_timeout = seconds(5);
  std::filesystem::create_directories(tmp_.path() + "/no-ca");
  EXPECT_FALSE(Cluster::Start(o, tmp_.path() + "/no-ca").ok());
  if (IsReferenceEtcd(ServerBinary())) return;
  Cluster::Options a;
  a.size = 2;
  a.tls.peer = true;
  a.tls.peer_auto_tls = true;
  a.extra_flags = {"--peer-trusted-ca-file=" + certs_.ca};
  a.ready_timeout = seconds(5);
  std::filesystem::create_directories(tmp_.path() + "/auto-ca");
  EXPECT_FALSE(Cluster::Start(a, tmp_.path() + "/auto-ca").ok());
}

}  // namespace
}  // namespace cppetcd::integration
