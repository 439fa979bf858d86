// The HTTP endpoints of a real server process, driven by curl: /health,
// /version, /metrics and the v3 JSON gateway (KV, lease with the keep-alive
// stream, watch stream, cluster, maintenance, auth). Runs against etcd 3.4
// too (CPPETCD_TEST_SERVER=/usr/bin/etcd) for parity.
#include <atomic>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "harness.h"

namespace cppetcd::integration {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr char kCurl[] = "/usr/bin/curl";

struct CurlReply {
  int status = 0;
  std::string headers;
  std::string body;
};

// curl -s -i [-X POST -d body] url, with extra args; bounded by `timeout`.
CurlReply Curl(const std::string& url, const std::string& body = "",
               std::vector<std::string> extra = {},
               std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  std::vector<std::string> argv = {kCurl, "-s", "-i", "-N"};
  for (auto& e : extra) argv.push_back(e);
  if (!body.empty()) {
    argv.insert(argv.end(), {"-X", "POST", "--data-binary", body});
  }
  argv.push_back(url);
  CommandResult r = RunCommand(argv, "", {}, timeout);
  CurlReply reply;
  const std::string& out = r.out;
  size_t sep = out.find("\r\n\r\n");
  if (sep == std::string::npos) return reply;
  reply.headers = out.substr(0, sep);
  reply.body = out.substr(sep + 4);
  if (out.size() > 12) reply.status = std::atoi(out.c_str() + 9);
  return reply;
}

json Json(std::string s) {
  // etcd's gateway sends gRPC trailers as HTTP trailers after an error body
  // (curl -i prints them right after it).
  if (size_t t = s.find("Grpc-Trailer-"); t != std::string::npos) s.resize(t);
  json j = json::parse(s, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << s;
  return j;
}

std::string B64(const std::string& s) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < s.size(); i += 3) {
    uint32_t v = (uint8_t(s[i]) << 16) | (uint8_t(s[i + 1]) << 8) | uint8_t(s[i + 2]);
    for (int k2 = 18; k2 >= 0; k2 -= 6) out += k[(v >> k2) & 63];
  }
  if (i + 1 == s.size()) {
    uint32_t v = uint8_t(s[i]) << 16;
    out += k[(v >> 18) & 63];
    out += k[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == s.size()) {
    uint32_t v = (uint8_t(s[i]) << 16) | (uint8_t(s[i + 1]) << 8);
    out += k[(v >> 18) & 63];
    out += k[(v >> 12) & 63];
    out += k[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

// Each {"result":...} line of a chunked gateway stream.
std::vector<json> StreamResults(const std::string& body) {
  std::vector<json> out;
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (line.empty() || line.front() != '{') continue;
    json j = json::parse(std::string(line), nullptr, false);
    if (!j.is_discarded() && j.contains("result")) out.push_back(j["result"]);
  }
  return out;
}

double MetricValue(const std::string& text, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, name + " ")) {
      double v = 0;
      if (absl::SimpleAtod(line.substr(name.size() + 1), &v)) return v;
    }
  }
  return -1;
}

class HttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kCurl, X_OK) != 0) GTEST_SKIP() << "curl not installed";
    absl::StatusOr<int> mport = PickFreePort();
    ASSERT_TRUE(mport.ok());
    metrics_url_ = absl::StrCat("http://127.0.0.1:", *mport);
    ServerProcess::Options o;
    o.data_dir = dir_.path() + "/data";
    o.extra_flags = {"--listen-metrics-urls", metrics_url_};
    auto s = ServerProcess::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    // The gateway is on the client port (as etcd) once the client listener
    // forwards HTTP/1.1 there; until then on the metrics URL.
    const std::string client_url = "http://" + server_->ClientEndpoint();
    gw_ = Curl(client_url + "/version").status == 200 ? client_url : metrics_url_;
  }

  json Post(const std::string& path, const std::string& body, int want_status = 200,
            std::vector<std::string> extra = {}) {
    CurlReply r = Curl(gw_ + path, body, std::move(extra));
    EXPECT_EQ(r.status, want_status) << path << " " << body << " -> " << r.body;
    return Json(r.body);
  }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
  std::string metrics_url_;
  std::string gw_;
};

TEST_F(HttpTest, HealthAndVersion) {
  CurlReply h = Curl(metrics_url_ + "/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(Json(h.body), json::parse(R"({"health":"true"})"));
  CurlReply v = Curl(gw_ + "/version");
  ASSERT_EQ(v.status, 200);
  json j = Json(v.body);
  for (const char* field : {"etcdserver", "etcdcluster"}) {
    ASSERT_TRUE(j.contains(field)) << v.body;
    std::vector<std::string> parts = absl::StrSplit(j[field].get<std::string>(), '.');
    ASSERT_EQ(parts.size(), 3u) << v.body;
    for (const std::string& p : parts) {
      int n = 0;
      EXPECT_TRUE(absl::SimpleAtoi(p, &n)) << "not an integer: " << p;
    }
  }
  EXPECT_EQ(j["etcdcluster"], "3.4.0");
}

TEST_F(HttpTest, MetricsNamesAndCommittedProposalsIncrease) {
  CurlReply m = Curl(metrics_url_ + "/metrics");
  ASSERT_EQ(m.status, 200);
  for (const char* name :
       {"etcd_server_has_leader", "etcd_server_is_leader", "etcd_server_leader_changes_seen_total",
        "etcd_server_proposals_failed_total", "etcd_server_proposals_committed_total",
        "etcd_server_proposals_applied_total", "etcd_server_proposals_pending",
        "etcd_mvcc_db_total_size_in_bytes", "etcd_mvcc_db_total_size_in_use_in_bytes",
        "etcd_server_quota_backend_bytes", "etcd_disk_wal_fsync_duration_seconds_bucket",
        "etcd_disk_backend_commit_duration_seconds_bucket", "etcd_debugging_mvcc_keys_total",
        "grpc_server_started_total", "grpc_server_handled_total", "process_open_fds",
        "process_resident_memory_bytes"}) {
    EXPECT_THAT(m.body, HasSubstr(absl::StrCat("\n", name))) << name;
  }
  // The peer RTT family has no samples on a single member (etcd prints
  // nothing then; cppetcd declares it).
  EXPECT_EQ(MetricValue(m.body, "etcd_server_has_leader"), 1);
  const double before = MetricValue(m.body, "etcd_server_proposals_committed_total");
  ASSERT_GE(before, 1);
  Post("/v3/kv/put", R"({"key":")" + B64("metric-key") + R"(","value":"dg=="})");
  EXPECT_TRUE(PollUntil(
      [&] {
        return MetricValue(Curl(metrics_url_ + "/metrics").body,
                           "etcd_server_proposals_committed_total") > before;
      },
      std::chrono::seconds(5)));
  EXPECT_THAT(Curl(metrics_url_ + "/metrics").body,
              HasSubstr("grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\","
                        "grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}"));
}

TEST_F(HttpTest, GatewayKvAsPatroniUsesIt) {
  const std::string leader = B64("/service/c/leader"), prefix = B64("/service/c/"),
                    prefix_end = B64("/service/c0");
  json lease = Post("/v3/lease/grant", R"({"TTL":30})");
  const std::string id = lease["ID"].get<std::string>();
  // Take the leader key only if it does not exist, with the lease.
  json t = Post("/v3/kv/txn", R"({"compare":[{"key":")" + leader +
                                 R"(","target":"CREATE","result":"EQUAL","create_revision":"0"}],)"
                                 R"("success":[{"request_put":{"key":")" + leader +
                                 R"(","value":"bjE=","lease":")" + id + R"("}}]})");
  EXPECT_EQ(t["succeeded"], true) << t;
  json again = Post("/v3/kv/txn", R"({"compare":[{"key":")" + leader +
                                      R"(","target":"CREATE","result":"EQUAL"}],)"
                                      R"("success":[{"request_put":{"key":")" + leader +
                                      R"(","value":"bjI="}}]})");
  EXPECT_FALSE(again.contains("succeeded")) << again;  // false is omitted
  Post("/v3/kv/put", R"({"key":")" + B64("/service/c/members/n1") + R"(","value":"e30="})");
  json r = Post("/v3/kv/range", R"({"key":")" + prefix + R"(","range_end":")" + prefix_end + R"("})");
  EXPECT_EQ(r["count"], "2") << r;
  ASSERT_EQ(r["kvs"].size(), 2u);
  EXPECT_EQ(r["kvs"][0]["key"], leader);
  EXPECT_EQ(r["kvs"][0]["lease"], id);
  EXPECT_EQ(r["kvs"][0]["value"], "bjE=");
  const std::string mod = r["kvs"][0]["mod_revision"];
  // Compare-and-set on mod_revision, as Patroni updates the leader key.
  json cas = Post("/v3/kv/txn", R"({"compare":[{"key":")" + leader +
                                   R"(","target":"MOD","result":"EQUAL","mod_revision":")" + mod +
                                   R"("}],"success":[{"request_put":{"key":")" + leader +
                                   R"(","value":"bjM=","lease":")" + id + R"("}}]})");
  EXPECT_EQ(cas["succeeded"], true) << cas;
  json del = Post("/v3/kv/deleterange",
                  R"({"key":")" + prefix + R"(","range_end":")" + prefix_end + R"(","prev_kv":true})");
  EXPECT_EQ(del["deleted"], "2") << del;
  const std::string rev = del["header"]["revision"];
  json c = Post("/v3/kv/compaction", R"({"revision":")" + rev + R"("})");
  EXPECT_TRUE(c.contains("header")) << c;
  json old = Post("/v3/kv/range", R"({"key":")" + leader + R"(","revision":"1"})", 400);
  EXPECT_EQ(old["code"], 11) << old;
  EXPECT_EQ(old["error"], "etcdserver: mvcc: required revision has been compacted");
}

TEST_F(HttpTest, LeaseKeepAliveStreamAndTimeToLive) {
  json g = Post("/v3/lease/grant", R"({"TTL":60})");
  const std::string id = g["ID"];
  EXPECT_EQ(g["TTL"], "60");
  CurlReply k = Curl(gw_ + "/v3/lease/keepalive", R"({"ID":")" + id + R"("})" + R"({"ID":)" + id + "}");
  EXPECT_EQ(k.status, 200);
  EXPECT_THAT(k.headers, HasSubstr("Transfer-Encoding: chunked"));
  std::vector<json> results = StreamResults(k.body);
  ASSERT_EQ(results.size(), 2u) << k.body;
  EXPECT_EQ(results[0]["ID"], id);
  EXPECT_EQ(results[0]["TTL"], "60");
  Post("/v3/kv/put", R"({"key":"bGs=","value":"dg==","lease":")" + id + R"("})");
  json ttl = Post("/v3/kv/lease/timetolive", R"({"ID":")" + id + R"(","keys":true})");
  EXPECT_EQ(ttl["grantedTTL"], "60");
  ASSERT_TRUE(ttl.contains("keys")) << ttl;
  EXPECT_EQ(ttl["keys"][0], "bGs=");
  json leases = Post("/v3/lease/leases", "{}");
  EXPECT_THAT(leases.dump(), HasSubstr(id));
  Post("/v3/lease/revoke", R"({"ID":")" + id + R"("})");
  json gone = Post("/v3/lease/revoke", R"({"ID":")" + id + R"("})", 404);
  EXPECT_EQ(gone["error"], "etcdserver: requested lease not found");
  EXPECT_EQ(Post("/v3/lease/timetolive", R"({"ID":")" + id + R"("})")["TTL"], "-1");
}

TEST_F(HttpTest, WatchStreamReceivesPut) {
  json h = Post("/v3/kv/range", R"({"key":"eA=="})");
  const int64_t next = std::stoll(h["header"]["revision"].get<std::string>()) + 1;
  CurlReply w;
  std::thread watcher([&] {
    w = Curl(gw_ + "/v3/watch",
             R"({"create_request":{"key":"d2s=","start_revision":")" + std::to_string(next) +
                 R"(","prev_kv":true}})",
             {"--max-time", "3"}, std::chrono::seconds(10));
  });
  Post("/v3/kv/put", R"({"key":"d2s=","value":"djE="})");
  watcher.join();
  EXPECT_EQ(w.status, 200);
  std::vector<json> results = StreamResults(w.body);
  ASSERT_GE(results.size(), 2u) << w.body;
  EXPECT_EQ(results[0]["created"], true);
  bool saw = false;
  for (const json& r : results) {
    if (!r.contains("events")) continue;
    EXPECT_EQ(r["events"][0]["kv"]["key"], "d2s=");
    EXPECT_EQ(r["events"][0]["kv"]["value"], "djE=");
    EXPECT_FALSE(r["events"][0].contains("type"));  // PUT is the zero value
    saw = true;
  }
  EXPECT_TRUE(saw) << w.body;
}

// The value of the metric line that starts with `prefix` (0 if none).
double MetricWithPrefix(const std::string& text, const std::string& prefix) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, prefix)) {
      double v = 0;
      if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) return v;
    }
  }
  return 0;
}

// Issue 12 item 2: a client that leaves while its gateway call waits (a
// v3lock Lock queued behind the holder) has its gRPC call cancelled: the
// server counts the Lock as Canceled soon after curl gives up. Nothing
// polls for the departure; a suspended request's socket is watched.
TEST_F(HttpTest, ClientLeavingMidCallCancelsTheGrpcCall) {
  auto lease = [&] { return Post("/v3/lease/grant", R"({"TTL":60})")["ID"].get<std::string>(); };
  const std::string first = R"({"name":"bG9jaw==","lease":")" + lease() + "\"}";
  const std::string second = R"({"name":"bG9jaw==","lease":")" + lease() + "\"}";
  json held = Post("/v3/lock/lock", first);
  ASSERT_TRUE(held.contains("key")) << held;
  const std::string canceled =
      R"(grpc_server_handled_total{grpc_code="Canceled",grpc_method="Lock",)";
  const double before = MetricWithPrefix(Curl(metrics_url_ + "/metrics").body, canceled);
  // The second Lock waits for the first; curl leaves after a second.
  CurlReply waited = Curl(gw_ + "/v3/lock/lock", second, {"--max-time", "1"});
  EXPECT_EQ(waited.status, 0) << "the second Lock was answered: " << waited.body;
  double after = before;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (after == before && std::chrono::steady_clock::now() < deadline) {
    after = MetricWithPrefix(Curl(metrics_url_ + "/metrics").body, canceled);
  }
  EXPECT_EQ(after, before + 1) << "the departed client's Lock was not cancelled";
  // The lock is free for the next once the holder unlocks.
  Post("/v3/lock/unlock", R"({"key":")" + held["key"].get<std::string>() + "\"}");
  json next = Post("/v3/lock/lock", R"({"name":"bG9jaw==","lease":")" + lease() + "\"}");
  EXPECT_TRUE(next.contains("key")) << next;
}

TEST_F(HttpTest, ClusterAndMaintenance) {
  json m = Post("/v3/cluster/member/list", "{}");
  ASSERT_EQ(m["members"].size(), 1u) << m;
  EXPECT_EQ(m["members"][0]["name"], "integ");
  EXPECT_TRUE(m["members"][0]["clientURLs"].is_array()) << m;
  json s = Post("/v3/maintenance/status", "{}");
  EXPECT_TRUE(s.contains("version")) << s;
  EXPECT_TRUE(s.contains("dbSize")) << s;
  EXPECT_EQ(s["leader"], s["header"]["member_id"]);
  json a = Post("/v3/maintenance/alarm", R"({"action":"GET"})");
  EXPECT_FALSE(a.contains("alarms")) << a;
  // The snapshot is a stream of {"result":{"remaining_bytes":..,"blob":..}}.
  CurlReply snap = Curl(gw_ + "/v3/maintenance/snapshot", "{}");
  EXPECT_EQ(snap.status, 200);
  std::vector<json> chunks = StreamResults(snap.body);
  ASSERT_FALSE(chunks.empty()) << snap.body.substr(0, 300);
  EXPECT_TRUE(chunks[0].contains("blob")) << chunks[0].dump().substr(0, 300);
  EXPECT_FALSE(chunks.back().contains("remaining_bytes")) << "last chunk: nothing remains";
}

TEST_F(HttpTest, AuthThroughTheGateway) {
  json not_enabled = Post("/v3/auth/authenticate", R"({"name":"root","password":"pw"})", 412);
  EXPECT_EQ(not_enabled["error"], "etcdserver: authentication is not enabled");
  Post("/v3/auth/user/add", R"({"name":"root","password":"pw"})");
  Post("/v3/auth/user/grant", R"({"user":"root","role":"root"})");
  Post("/v3/auth/enable", "{}");
  json denied = Post("/v3/kv/range", R"({"key":"YQ=="})", 400);
  EXPECT_EQ(denied["error"], "etcdserver: user name is empty");
  json bad = Post("/v3/auth/authenticate", R"({"name":"root","password":"no"})", 400);
  EXPECT_EQ(bad["error"], "etcdserver: authentication failed, invalid user ID or password");
  json tok = Post("/v3/auth/authenticate", R"({"name":"root","password":"pw"})");
  ASSERT_TRUE(tok.contains("token")) << tok;
  const std::string token = tok["token"];
  Post("/v3/kv/range", R"({"key":"YQ=="})", 200, {"-H", "Authorization: " + token});
  json users = Post("/v3/auth/user/list", "{}", 200, {"-H", "Authorization: " + token});
  EXPECT_EQ(users["users"][0], "root");
  Post("/v3/auth/disable", "{}", 200, {"-H", "Authorization: " + token});
  Post("/v3/kv/range", R"({"key":"YQ=="})");
}

// Names that are not valid UTF-8 (etcd takes any bytes): the gateway prints
// each bad byte as U+FFFD (Go's encoding/json), reads a body's bad bytes as
// U+FFFD, and keeps names JSON strings (not base64).
TEST_F(HttpTest, NamesThatAreNotUtf8ThroughTheGateway) {
  const std::string ep = server_->ClientEndpoint();
  ASSERT_EQ(Etcdctl(ep, {"user", "add", "\xff\xfeu", "--new-user-password=x"}).exit_code, 0);
  ASSERT_EQ(Etcdctl(ep, {"role", "add", "\xc3\x28"}).exit_code, 0);
  ASSERT_EQ(Etcdctl(ep, {"user", "grant-role", "\xff\xfeu", "\xc3\x28"}).exit_code, 0);
  const std::string r3 = "\xef\xbf\xbd";  // U+FFFD
  json users = Post("/v3/auth/user/list", "{}");
  EXPECT_EQ(users["users"], json::array({r3 + r3 + "u"})) << users;
  json roles = Post("/v3/auth/role/list", "{}");
  EXPECT_EQ(roles["roles"], json::array({r3 + "("})) << roles;
  // The body's bytes become U+FFFD: another user, not the one above.
  Post("/v3/auth/user/add", "{\"name\":\"\xff\xfeu\",\"password\":\"y\"}");
  users = Post("/v3/auth/user/list", "{}");
  EXPECT_EQ(users["users"], json::array({r3 + r3 + "u", r3 + r3 + "u"})) << users;
  json got = Post("/v3/auth/user/get", "{\"name\":\"\\ufffd\\ufffdu\"}");
  EXPECT_FALSE(got.contains("roles")) << got;
  CommandResult list = Etcdctl(ep, {"user", "list"});
  EXPECT_EQ(list.out, r3 + r3 + "u\n\xff\xfeu\n");
}

// etcd_mvcc_{put,delete,range,txn}_total count as etcd 3.4's mvcc txns do
// (mvcc/metrics_txn.go): each txn adds its ranges, puts and deletes when it
// ends, and one txn if it ran more than one operation. A prev_kv put or
// delete reads first (a range, and a txn of two operations); a txn request
// evaluates its compares in a read txn (stopping at the first false one)
// before its ops' write txn; a lease revoke deletes its keys in one txn; a
// compaction reads the revision for its answer with a range. Every expected
// step below was first measured on etcd 3.4.
TEST_F(HttpTest, MvccOperationCountersCountAsEtcds) {
  const std::string ep = server_->ClientEndpoint();
  struct Totals {
    double put, del, range, txn;
  };
  auto totals = [&] {
    const std::string body = Curl(metrics_url_ + "/metrics").body;
    return Totals{MetricValue(body, "etcd_mvcc_put_total"),
                  MetricValue(body, "etcd_mvcc_delete_total"),
                  MetricValue(body, "etcd_mvcc_range_total"),
                  MetricValue(body, "etcd_mvcc_txn_total")};
  };
  auto step = [&](const std::string& what, const std::vector<std::string>& args,
                  const std::string& stdin_data, Totals want) {
    SCOPED_TRACE(what);
    const Totals before = totals();
    ASSERT_GE(before.put, 0) << "no etcd_mvcc_put_total";
    CommandResult r = Etcdctl(ep, args, stdin_data);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const Totals after = totals();
    EXPECT_EQ(after.put - before.put, want.put);
    EXPECT_EQ(after.del - before.del, want.del);
    EXPECT_EQ(after.range - before.range, want.range);
    EXPECT_EQ(after.txn - before.txn, want.txn);
  };
  step("put", {"put", "a", "1"}, "", {1, 0, 0, 0});
  step("put --prev-kv", {"put", "a", "2", "--prev-kv"}, "", {1, 0, 1, 1});
  step("get", {"get", "a"}, "", {0, 0, 1, 0});
  step("serializable get", {"get", "a", "--consistency=s"}, "", {0, 0, 1, 0});
  step("del", {"del", "a"}, "", {0, 1, 0, 0});
  step("del --prev-kv", {"del", "a", "--prev-kv"}, "", {0, 1, 1, 1});
  step("txn: false compare, one put", {"txn"}, "value(\"a\") = \"x\"\n\nput b 1\n\nput c 1\n\n",
       {1, 0, 1, 0});
  step("txn: first of two compares false, two puts", {"txn"},
       "value(\"a\") = \"x\"\nversion(\"b\") = \"1\"\n\nput b 1\n\nput c 1\nput d 1\n\n",
       {2, 0, 1, 1});
  step("read-only txn: one compare, two gets", {"txn"},
       "version(\"d\") = \"1\"\n\nget b\nget c\n\n\n", {0, 0, 3, 1});
  CommandResult grant = Etcdctl(ep, {"lease", "grant", "100"});
  ASSERT_EQ(grant.exit_code, 0) << grant.err;
  std::vector<std::string> words = absl::StrSplit(grant.out, ' ');
  ASSERT_GE(words.size(), 2u) << grant.out;
  const std::string lease = words[1];
  step("put with a lease", {"put", "l1", "x", "--lease=" + lease}, "", {1, 0, 0, 0});
  step("put with a lease", {"put", "l2", "x", "--lease=" + lease}, "", {1, 0, 0, 0});
  step("revoke a lease of two keys", {"lease", "revoke", lease}, "", {0, 2, 0, 1});
  step("compact", {"compact", "3"}, "", {0, 0, 1, 0});
}

// --enable-grpc-gateway=false (etcd 3.4 embed/serve.go): the /v3/ JSON
// gateway is gone from the client port ("404 page not found" for any
// method, /v3beta/ too) while /health, /version and /metrics stay, and gRPC
// clients are served as before.
TEST(HttpGatewayOffTest, V3PathsAre404OtherEndpointsStay) {
  if (access(kCurl, X_OK) != 0) GTEST_SKIP() << "curl not installed";
  CPPETCD_REQUIRE_SERVER();
  TempDir dir;
  ServerProcess::Options o;
  o.data_dir = dir.path() + "/data";
  o.extra_flags = {"--enable-grpc-gateway=false"};
  auto s = ServerProcess::Start(o);
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string url = "http://" + (*s)->ClientEndpoint();
  for (const char* path : {"/v3/kv/range", "/v3beta/kv/range", "/v3/maintenance/status"}) {
    SCOPED_TRACE(path);
    CurlReply r = Curl(url + path, R"({"key":"YQ=="})");
    EXPECT_EQ(r.status, 404) << r.headers;
    EXPECT_EQ(r.body, "404 page not found\n");
    r = Curl(url + path);
    EXPECT_EQ(r.status, 404) << r.headers;
  }
  EXPECT_EQ(Curl(url + "/health").status, 200);
  EXPECT_EQ(Curl(url + "/version").status, 200);
  EXPECT_EQ(Curl(url + "/metrics").status, 200);
  CommandResult put = Etcdctl((*s)->ClientEndpoint(), {"put", "k", "v"});
  EXPECT_EQ(put.exit_code, 0) << put.err;
  EXPECT_EQ(put.out, "OK\n");
}

}  // namespace
}  // namespace cppetcd::integration
