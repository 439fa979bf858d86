// DNS SRV bootstrap (cmd/dns_discovery.h) against etcd 3.4's
// pkg/srv.GetCluster and embed.Config.PeerURLsMapAndToken, with a resolver
// that answers from tables; the system resolver is exercised by
// tests/integration/dns_discovery_test.cc.
#include "cppetcd/cmd/dns_discovery.h"

#include <cctype>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cppetcd::cmd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class TableResolver final : public SrvResolver {
 public:
  std::map<std::string, std::vector<SrvRecord>> srv;  // name -> records
  std::map<std::string, std::string> hosts;           // host -> IP
  std::vector<std::string> queried;

  absl::StatusOr<std::vector<SrvRecord>> LookupSrv(const std::string& name) override {
    queried.push_back(name);
    auto it = srv.find(name);
    if (it == srv.end() || it->second.empty()) {
      return absl::NotFoundError("lookup " + name + " on 127.0.0.1:53: no such host");
    }
    return it->second;
  }
  absl::StatusOr<std::string> ResolveTcpAddr(const std::string& host, int port) override {
    std::string ip = host;
    if (auto it = hosts.find(host); it != hosts.end()) {
      ip = it->second;
    } else if (host.empty() || !std::isdigit(static_cast<unsigned char>(host[0]))) {
      return absl::NotFoundError("lookup " + host + " on 127.0.0.1:53: no such host");
    }
    return ip + ":" + std::to_string(port);
  }
};

EtcdConfig Member(const std::string& name, const std::string& advertise) {
  std::vector<std::string> args = {"--name=" + name, "--discovery-srv=example.com",
                                   "--initial-advertise-peer-urls=" + advertise};
  auto r = ParseCommandLine(args, {});
  EXPECT_TRUE(r.ok()) << r.status();
  return r->config;
}

// Three members under example.com, addresses 10.0.0.1..3, peer port 2380.
TableResolver ThreeMembers(const std::string& service) {
  TableResolver r;
  r.srv["_" + service + "._tcp.example.com"] = {{0, 0, 2380, "m1.example.com."},
                                                {0, 0, 2380, "m2.example.com."},
                                                {0, 0, 2380, "m3.example.com."}};
  r.hosts = {{"m1.example.com", "10.0.0.1"},
             {"m2.example.com", "10.0.0.2"},
             {"m3.example.com", "10.0.0.3"}};
  return r;
}

TEST(DnsDiscoveryTest, ServiceNames) {
  EXPECT_EQ(SrvServiceName(true, ""), "etcd-server-ssl");
  EXPECT_EQ(SrvServiceName(false, ""), "etcd-server");
  EXPECT_EQ(SrvServiceName(true, "prod"), "etcd-server-ssl-prod");
  EXPECT_EQ(SrvServiceName(false, "prod"), "etcd-server-prod");
}

// The member advertising the address a target resolves to takes its
// --name; the others get placeholders; URLs carry the target without its
// trailing dot. https first, then http.
TEST(DnsDiscoveryTest, HttpsRecordsNameThisMemberByResolvedAddress) {
  TableResolver r = ThreeMembers("etcd-server-ssl");
  EtcdConfig c = Member("m2", "https://10.0.0.2:2380");
  c.peer_cert_file = "peer.crt";
  auto b = DiscoverSrvCluster(r, c, util::GetLogger("test"));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->initial_cluster,
            "0=https://m1.example.com:2380,m2=https://m2.example.com:2380,"
            "1=https://m3.example.com:2380");
  EXPECT_THAT(r.queried, ElementsAre("_etcd-server-ssl._tcp.example.com",
                                     "_etcd-server._tcp.example.com"));
  // The advertised IP URL resolves as the record's: the record's URL is
  // this member's (the one the other members derive its ID from).
  ASSERT_EQ(b->advertise_peer_urls.size(), 1u);
  EXPECT_EQ(b->advertise_peer_urls[0].ToString(), "https://m2.example.com:2380");
  // No --peer-trusted-ca-file: peers' certificates are checked for the domain.
  EXPECT_EQ(b->peer_server_name, "example.com");
  c.peer_trusted_ca_file = "ca.crt";
  b = DiscoverSrvCluster(r, c, util::GetLogger("test"));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->peer_server_name, "");
}

TEST(DnsDiscoveryTest, PlainHttpRecords) {
  TableResolver r = ThreeMembers("etcd-server");
  EtcdConfig c = Member("m1", "http://m1.example.com:2380");
  auto b = DiscoverSrvCluster(r, c, util::GetLogger("test"));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->initial_cluster,
            "m1=http://m1.example.com:2380,0=http://m2.example.com:2380,"
            "1=http://m3.example.com:2380");
  EXPECT_THAT(b->members, ElementsAre("m1=http://m1.example.com:2380",
                                      "0=http://m2.example.com:2380",
                                      "1=http://m3.example.com:2380"));
  EXPECT_EQ(b->advertise_peer_urls[0].ToString(), "http://m1.example.com:2380");
  EXPECT_EQ(b->peer_server_name, "");  // no https member
}

// Both services: union, https first; placeholders never repeat.
TEST(DnsDiscoveryTest, BothServicesAreJoinedWithDistinctPlaceholders) {
  TableResolver r = ThreeMembers("etcd-server-ssl");
  r.srv["_etcd-server._tcp.example.com"] = {{0, 0, 2381, "m4.example.com"}};
  r.hosts["m4.example.com"] = "10.0.0.4";
  EtcdConfig c = Member("m1", "https://10.0.0.1:2380");
  auto b = DiscoverSrvCluster(r, c, util::GetLogger("test"));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->initial_cluster,
            "m1=https://m1.example.com:2380,0=https://m2.example.com:2380,"
            "1=https://m3.example.com:2380,2=http://m4.example.com:2381");
}

TEST(DnsDiscoveryTest, SrvNameSuffixesTheServices) {
  TableResolver r = ThreeMembers("etcd-server-ssl-prod");
  EtcdConfig c = Member("m3", "https://10.0.0.3:2380");
  c.discovery_srv_name = "prod";
  auto b = DiscoverSrvCluster(r, c, util::GetLogger("test"));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_THAT(r.queried, ElementsAre("_etcd-server-ssl-prod._tcp.example.com",
                                     "_etcd-server-prod._tcp.example.com"));
  EXPECT_THAT(b->initial_cluster, HasSubstr("m3=https://m3.example.com:2380"));
  // Without the suffix those records are not looked at.
  c.discovery_srv_name = "";
  b = DiscoverSrvCluster(r, c, util::GetLogger("test"));
  ASSERT_FALSE(b.ok());
}

// No record: etcd's message for each service.
TEST(DnsDiscoveryTest, NoRecordsIsAnErrorInEtcdsWords) {
  TableResolver r;
  EtcdConfig c = Member("m1", "http://10.0.0.1:2380");
  auto b = DiscoverSrvCluster(r, c, util::GetLogger("test"));
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().message(),
            "error querying DNS SRV records for _etcd-server-ssl lookup "
            "_etcd-server-ssl._tcp.example.com on 127.0.0.1:53: no such host; "
            "error querying DNS SRV records for _etcd-server lookup "
            "_etcd-server._tcp.example.com on 127.0.0.1:53: no such host");
}

TEST(DnsDiscoveryTest, ThisMemberMustBeAmongTheRecords) {
  TableResolver r = ThreeMembers("etcd-server");
  EtcdConfig c = Member("m9", "http://10.0.0.9:2380");
  auto b = DiscoverSrvCluster(r, c, util::GetLogger("test"));
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().message(), "cannot find local etcd member \"m9\" in SRV records");
  // Same address, another port: not this member.
  c = Member("m1", "http://10.0.0.1:2390");
  b = DiscoverSrvCluster(r, c, util::GetLogger("test"));
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().message(), "cannot find local etcd member \"m1\" in SRV records");
}

// A record naming this member under the other scheme is dropped with
// etcd's error, which is returned when nothing else is found.
TEST(DnsDiscoveryTest, SchemeMismatchWithThisMember) {
  TableResolver r = ThreeMembers("etcd-server-ssl");
  EtcdConfig c = Member("m1", "http://10.0.0.1:2380");
  int first = 0;
  auto found = GetSrvCluster(r, "https", "etcd-server-ssl", "m1", "example.com",
                             c.initial_advertise_peer_urls, &first);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_THAT(*found, ElementsAre("0=https://m2.example.com:2380", "1=https://m3.example.com:2380"));
  r.srv["_etcd-server-ssl._tcp.example.com"].resize(1);
  int next = 0;
  found = GetSrvCluster(r, "https", "etcd-server-ssl", "m1", "example.com",
                        c.initial_advertise_peer_urls, &next);
  ASSERT_FALSE(found.ok());
  EXPECT_EQ(found.status().message(),
            "error querying DNS SRV records for _etcd-server-ssl bootstrap at "
            "https://m1.example.com:2380 from DNS for etcd-server-ssl has scheme mismatch with "
            "expected peer http://10.0.0.1:2380");
}

// A target that does not resolve is skipped; if it was the only one, its
// error is the result.
TEST(DnsDiscoveryTest, UnresolvableTargetsAreSkipped) {
  TableResolver r = ThreeMembers("etcd-server");
  r.hosts.erase("m3.example.com");
  EtcdConfig c = Member("m1", "http://10.0.0.1:2380");
  auto b = DiscoverSrvCluster(r, c, util::GetLogger("test"));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->initial_cluster, "m1=http://m1.example.com:2380,0=http://m2.example.com:2380");
  r.srv["_etcd-server._tcp.example.com"] = {{0, 0, 2380, "m3.example.com."}};
  int next = 0;
  auto found = GetSrvCluster(r, "http", "etcd-server", "m1", "example.com",
                             c.initial_advertise_peer_urls, &next);
  ASSERT_FALSE(found.ok());
  EXPECT_EQ(found.status().message(),
            "error querying DNS SRV records for _etcd-server lookup m3.example.com on "
            "127.0.0.1:53: no such host");
}

// An advertised URL that does not resolve stops the lookup (etcd returns
// the resolver's error).
TEST(DnsDiscoveryTest, UnresolvableAdvertiseUrlIsAnError) {
  TableResolver r = ThreeMembers("etcd-server");
  EtcdConfig c = Member("m1", "http://nowhere.example.com:2380");
  int next = 0;
  auto found = GetSrvCluster(r, "http", "etcd-server", "m1", "example.com",
                             c.initial_advertise_peer_urls, &next);
  ASSERT_FALSE(found.ok());
  EXPECT_EQ(found.status().message(), "lookup nowhere.example.com on 127.0.0.1:53: no such host");
}

// Records keep the resolver's order and placeholders count on from the
// caller's counter.
TEST(DnsDiscoveryTest, PlaceholdersContinueFromTheCounter) {
  TableResolver r = ThreeMembers("etcd-server");
  EtcdConfig c = Member("m2", "http://10.0.0.2:2380");
  int next = 5;
  auto found = GetSrvCluster(r, "http", "etcd-server", "m2", "example.com",
                             c.initial_advertise_peer_urls, &next);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_THAT(*found, ElementsAre("5=http://m1.example.com:2380", "m2=http://m2.example.com:2380",
                                  "6=http://m3.example.com:2380"));
  EXPECT_EQ(next, 7);
}

// More advertised URLs than records for this member: the advertised list
// stays as configured (the server then refuses it, as etcd's advertise
// check does).
TEST(DnsDiscoveryTest, AdvertiseListKeptWhenItDoesNotMatchTheRecords) {
  TableResolver r = ThreeMembers("etcd-server");
  EtcdConfig c = Member("m1", "http://10.0.0.1:2380,http://10.0.1.1:2380");
  auto b = DiscoverSrvCluster(r, c, util::GetLogger("test"));
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->advertise_peer_urls.size(), 2u);
  EXPECT_EQ(b->advertise_peer_urls[0].ToString(), "http://10.0.0.1:2380");
}

// The system resolver on IP literals (no DNS involved): Go's TCPAddr text.
TEST(DnsDiscoveryTest, SystemResolverIpLiterals) {
  std::unique_ptr<SrvResolver> r = NewSystemResolver();
  auto v4 = r->ResolveTcpAddr("127.0.0.1", 2380);
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(*v4, "127.0.0.1:2380");
  auto v6 = r->ResolveTcpAddr("::1", 2380);
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(*v6, "[::1]:2380");
}

}  // namespace
}  // namespace cppetcd::cmd
