#include "cppetcd/api/http_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "cppetcd/api/client_listener.h"
#include "cppetcd/api/grpc_server.h"
#include "absl/strings/str_split.h"
#include "cppetcdpb/options.pb.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "etcdserverpb/rpc.pb.h"
#include "tests/unit/api/fake_backend.h"

namespace cppetcd::api {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool kSkipGrpcTests = true;
#else
constexpr bool kSkipGrpcTests = false;
#endif
#elif defined(__SANITIZE_THREAD__)
constexpr bool kSkipGrpcTests = true;
#else
constexpr bool kSkipGrpcTests = false;
#endif

// ---- JSON mapping, compared with what etcd 3.4's gateway prints.

TEST(GatewayJsonTest, RangeResponseAsEtcdPrintsIt) {
  etcdserverpb::RangeResponse r;
  r.mutable_header()->set_cluster_id(15118495548433857066ULL);
  r.mutable_header()->set_member_id(13668033151171901709ULL);
  r.mutable_header()->set_revision(2);
  r.mutable_header()->set_raft_term(2);
  auto* kv = r.add_kvs();
  kv->set_key("foo");
  kv->set_value("bar");
  kv->set_create_revision(2);
  kv->set_mod_revision(2);
  kv->set_version(1);
  r.set_count(1);
  EXPECT_EQ(MessageToGatewayJson(r),
            "{\"header\":{\"cluster_id\":\"15118495548433857066\",\"member_id\":"
            "\"13668033151171901709\",\"revision\":\"2\",\"raft_term\":\"2\"},\"kvs\":[{\"key\":"
            "\"Zm9v\",\"create_revision\":\"2\",\"mod_revision\":\"2\",\"version\":\"1\","
            "\"value\":\"YmFy\"}],\"count\":\"1\"}");
}

TEST(GatewayJsonTest, WatchDeleteEventAndLeaseNamesAsEtcd) {
  etcdserverpb::WatchResponse w;
  w.mutable_header()->set_revision(4);
  auto* ev = w.add_events();
  ev->set_type(mvccpb::Event::DELETE);
  ev->mutable_kv()->set_key("foo");
  ev->mutable_kv()->set_mod_revision(4);
  EXPECT_EQ(MessageToGatewayJson(w),
            "{\"header\":{\"revision\":\"4\"},\"events\":[{\"type\":\"DELETE\",\"kv\":{\"key\":"
            "\"Zm9v\",\"mod_revision\":\"4\"}}]}");
  etcdserverpb::LeaseTimeToLiveResponse l;
  l.set_id(4111120151808972047);
  l.set_ttl(29);
  l.set_grantedttl(30);
  EXPECT_EQ(MessageToGatewayJson(l),
            "{\"ID\":\"4111120151808972047\",\"TTL\":\"29\",\"grantedTTL\":\"30\"}");
}

TEST(GatewayJsonTest, ParsesNumbersOrStringsAndIgnoresUnknownFields) {
  etcdserverpb::TxnRequest t;
  ASSERT_TRUE(GatewayJsonToMessage(
                  "{\"compare\":[{\"key\":\"Zm9v\",\"target\":\"CREATE\",\"result\":\"EQUAL\","
                  "\"create_revision\":\"0\"}],\"success\":[{\"request_put\":{\"key\":\"Zm9v\","
                  "\"value\":\"YmFy\",\"lease\":7}}],\"bogus\":1}",
                  &t)
                  .ok());
  ASSERT_EQ(t.compare_size(), 1);
  EXPECT_EQ(t.compare(0).target(), etcdserverpb::Compare::CREATE);
  EXPECT_EQ(t.success(0).request_put().lease(), 7);
  EXPECT_EQ(t.success(0).request_put().value(), "bar");
  etcdserverpb::RangeRequest r;
  absl::Status st = GatewayJsonToMessage("{\"key\":", &r);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
}

// ---- Fields etcd declares `string` that cppetcd declares `bytes` (etcd
// takes any bytes in them), marked (cppetcdpb.json_string).

std::set<std::string> JsonStringFields() {
  std::set<std::string> out;
  const auto* file = etcdserverpb::AuthUserAddRequest::descriptor()->file();
  std::vector<const google::protobuf::Descriptor*> todo;
  for (int i = 0; i < file->message_type_count(); ++i) todo.push_back(file->message_type(i));
  while (!todo.empty()) {
    const google::protobuf::Descriptor* d = todo.back();
    todo.pop_back();
    for (int i = 0; i < d->nested_type_count(); ++i) todo.push_back(d->nested_type(i));
    for (int k = 0; k < d->field_count(); ++k) {
      const google::protobuf::FieldDescriptor* f = d->field(k);
      if (f->options().GetExtension(cppetcdpb::json_string)) {
        EXPECT_EQ(f->type(), google::protobuf::FieldDescriptor::TYPE_BYTES) << f->full_name();
        EXPECT_TRUE(IsGatewayJsonString(*f)) << f->full_name();
        out.insert(f->full_name());
      }
    }
  }
  return out;
}

TEST(GatewayJsonStringTest, MarkedFieldsAreBytesAndTheNamesAndPasswords) {
  const std::set<std::string> want = {
      "etcdserverpb.AuthenticateRequest.name",
      "etcdserverpb.AuthenticateRequest.password",
      "etcdserverpb.AuthUserAddRequest.name",
      "etcdserverpb.AuthUserAddRequest.password",
      "etcdserverpb.AuthUserGetRequest.name",
      "etcdserverpb.AuthUserDeleteRequest.name",
      "etcdserverpb.AuthUserChangePasswordRequest.name",
      "etcdserverpb.AuthUserChangePasswordRequest.password",
      "etcdserverpb.AuthUserGrantRoleRequest.user",
      "etcdserverpb.AuthUserGrantRoleRequest.role",
      "etcdserverpb.AuthUserRevokeRoleRequest.name",
      "etcdserverpb.AuthUserRevokeRoleRequest.role",
      "etcdserverpb.AuthRoleAddRequest.name",
      "etcdserverpb.AuthRoleGetRequest.role",
      "etcdserverpb.AuthRoleDeleteRequest.role",
      "etcdserverpb.AuthRoleGrantPermissionRequest.name",
      "etcdserverpb.AuthRoleRevokePermissionRequest.role",
      "etcdserverpb.AuthUserGetResponse.roles",
      "etcdserverpb.AuthRoleListResponse.roles",
      "etcdserverpb.AuthUserListResponse.users",
      "etcdserverpb.Member.name",
      "etcdserverpb.Member.peerURLs",
      "etcdserverpb.Member.clientURLs",
      "etcdserverpb.MemberAddRequest.peerURLs",
      "etcdserverpb.MemberUpdateRequest.peerURLs",
  };
  EXPECT_EQ(JsonStringFields(), want);
}

// Against etcd 3.4's own rpc.proto where it is installed (Debian's
// golang-etcd-server-dev): every field etcd declares `string` is a string
// or a json_string bytes field here; every other bytes field is etcd's bytes.
TEST(GatewayJsonStringTest, AgreesWithEtcdsRpcProto) {
  const char* path = "/usr/share/gocode/src/go.etcd.io/etcd/etcdserver/etcdserverpb/rpc.proto";
  std::ifstream in(path);
  if (!in) GTEST_SKIP() << path << " is not installed";
  const auto* file = etcdserverpb::AuthUserAddRequest::descriptor()->file();
  std::string line, message;
  int checked = 0;
  while (std::getline(in, line)) {
    std::vector<std::string> w = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (w.size() >= 2 && w[0] == "message") {
      message = w[1];
      continue;
    }
    size_t i = 0;
    if (!w.empty() && w[0] == "repeated") i = 1;
    if (w.size() < i + 3 || (w[i] != "string" && w[i] != "bytes")) continue;
    const google::protobuf::Descriptor* d = file->FindMessageTypeByName(message);
    ASSERT_NE(d, nullptr) << message;
    const google::protobuf::FieldDescriptor* f = d->FindFieldByName(w[i + 1]);
    ASSERT_NE(f, nullptr) << message << "." << w[i + 1];
    if (w[i] == "bytes") {
      EXPECT_EQ(f->type(), google::protobuf::FieldDescriptor::TYPE_BYTES) << f->full_name();
      EXPECT_FALSE(IsGatewayJsonString(*f)) << f->full_name();
    } else {
      EXPECT_TRUE(f->type() == google::protobuf::FieldDescriptor::TYPE_STRING ||
                  IsGatewayJsonString(*f))
          << f->full_name();
    }
    ++checked;
  }
  EXPECT_GT(checked, 40);
}

TEST(GatewayJsonStringTest, NamesArePlainJsonStringsBothWays) {
  etcdserverpb::AuthUserAddRequest add;
  add.set_name("root");
  add.set_password("x");
  EXPECT_EQ(MessageToGatewayJson(add), "{\"name\":\"root\",\"password\":\"x\"}");
  etcdserverpb::AuthUserAddRequest parsed;
  ASSERT_TRUE(GatewayJsonToMessage("{\"name\":\"root\",\"password\":\"x\"}", &parsed).ok());
  EXPECT_EQ(parsed.name(), "root");
  EXPECT_EQ(parsed.password(), "x");
  etcdserverpb::AuthUserGrantRoleRequest g;
  ASSERT_TRUE(GatewayJsonToMessage("{\"user\":\"\\u00e9\",\"role\":\"r\"}", &g).ok());
  EXPECT_EQ(g.user(), "\xc3\xa9");
  etcdserverpb::AuthUserListResponse l;
  l.add_users("a");
  l.add_users("\xe2\x82\xac");
  EXPECT_EQ(MessageToGatewayJson(l), "{\"users\":[\"a\",\"\xe2\x82\xac\"]}");
  etcdserverpb::MemberAddRequest m;
  ASSERT_TRUE(GatewayJsonToMessage("{\"peerURLs\":[\"http://h:1\"]}", &m).ok());
  ASSERT_EQ(m.peerurls_size(), 1);
  EXPECT_EQ(m.peerurls(0), "http://h:1");
  // Real bytes fields stay base64.
  etcdserverpb::AuthRoleRevokePermissionRequest rp;
  rp.set_role("r");
  rp.set_key("foo");
  EXPECT_EQ(MessageToGatewayJson(rp), "{\"role\":\"r\",\"key\":\"Zm9v\"}");
}

// etcd 3.4's gateway (Go's encoding/json) prints each byte of a name that
// is not part of valid UTF-8 as U+FFFD (it writes "\ufffd"; cppetcd the
// same character unescaped), and reads such bytes and unpaired surrogate
// escapes in a request body as U+FFFD.
TEST(GatewayJsonStringTest, BytesThatAreNotUtf8AsEtcdsGateway) {
  const std::string r3 = "\xef\xbf\xbd";  // U+FFFD
  etcdserverpb::AuthUserListResponse l;
  l.add_users("\xff\xfeu");
  l.add_users(r3 + r3 + "u");  // etcd: a name made by the gateway from the one above
  EXPECT_EQ(MessageToGatewayJson(l),
            "{\"users\":[\"" + r3 + r3 + "u\",\"" + r3 + r3 + "u\"]}");
  EXPECT_EQ(l.users(0), "\xff\xfeu");  // the message itself is left alone
  etcdserverpb::MemberListResponse ml;  // names in a sub-message
  ml.add_members()->set_name("m\xff");
  ml.mutable_members(0)->add_peerurls("http://h:1");
  EXPECT_EQ(MessageToGatewayJson(ml),
            "{\"members\":[{\"name\":\"m" + r3 + "\",\"peerURLs\":[\"http://h:1\"]}]}");
  etcdserverpb::AuthUserGetResponse g;
  g.add_roles("\xc3\x28");
  EXPECT_EQ(MessageToGatewayJson(g), "{\"roles\":[\"" + r3 + "(\"]}");

  etcdserverpb::AuthUserAddRequest add;
  ASSERT_TRUE(GatewayJsonToMessage("{\"name\":\"\xff\xfeu\",\"password\":\"y\"}", &add).ok());
  EXPECT_EQ(add.name(), r3 + r3 + "u");
  etcdserverpb::AuthRoleAddRequest ra;
  ASSERT_TRUE(GatewayJsonToMessage("{\"name\":\"\\ud800x\\udc00\\ud83d\\ude00\"}", &ra).ok());
  EXPECT_EQ(ra.name(), r3 + "x" + r3 + "\xf0\x9f\x98\x80");
  ASSERT_TRUE(GatewayJsonToMessage("{\"name\":\"\\ud800\\u0041\"}", &ra).ok());
  EXPECT_EQ(ra.name(), r3 + "A");
  // Keys are base64 and untouched; a body that is not JSON still fails.
  etcdserverpb::RangeRequest rr;
  EXPECT_FALSE(GatewayJsonToMessage("{\xff}", &rr).ok());
}

TEST(GatewayJsonStringTest, CoerceJsonToUtf8) {
  EXPECT_EQ(CoerceJsonToUtf8("{\"name\":\"\\u00ff\\ud83d\\ude00\"}"), std::nullopt);
  EXPECT_EQ(CoerceJsonToUtf8("{\"a\":\"\\\\ud800\"}"), std::nullopt);  // an escaped backslash
  EXPECT_EQ(CoerceJsonToUtf8("{\"a\":\"\\ud800\"}"), "{\"a\":\"\\ufffd\"}");
  EXPECT_EQ(CoerceJsonToUtf8("{\"a\":\"\\uDC00\\uD800\"}"), "{\"a\":\"\\ufffd\\ufffd\"}");
}

TEST(GatewayJsonTest, SplitsConcatenatedValues) {
  auto v = SplitJsonValues(" {\"a\":\"}{\\\"\"}\n{\"b\":[1,{}]}{} ");
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_EQ(v->size(), 3u);
  EXPECT_EQ((*v)[0], "{\"a\":\"}{\\\"\"}");
  EXPECT_EQ((*v)[1], "{\"b\":[1,{}]}");
  EXPECT_EQ((*v)[2], "{}");
  EXPECT_TRUE(SplitJsonValues("")->empty());
  EXPECT_FALSE(SplitJsonValues("{\"a\":1").ok());
  EXPECT_FALSE(SplitJsonValues("{} x").ok());
}

TEST(GatewayJsonTest, ErrorsAsGrpcGateway) {
  EXPECT_EQ(GatewayErrorJson(5, "etcdserver: requested lease not found"),
            "{\"error\":\"etcdserver: requested lease not found\",\"message\":\"etcdserver: "
            "requested lease not found\",\"code\":5}");
  EXPECT_EQ(HttpStatusFromGrpcCode(11), 400);  // OutOfRange (future revision)
  EXPECT_EQ(HttpStatusFromGrpcCode(5), 404);
  EXPECT_EQ(HttpStatusFromGrpcCode(9), 412);   // FailedPrecondition
  EXPECT_EQ(HttpStatusFromGrpcCode(14), 503);
  EXPECT_EQ(HttpStatusFromGrpcCode(16), 401);
}

// Threads of this process now (/proc/self/task).
int ThreadCount() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') ++n;
    }
    closedir(d);
  }
  return n;
}

// ---- The server over the in-process gRPC services of a fake backend.

struct HttpReply {
  int status = 0;
  std::string headers;
  std::string body;  // raw (chunk framing kept for chunked replies)
};

// One HTTP/1.1 request with "Connection: close"; reads until the server
// closes or `timeout` passes (SO_RCVTIMEO bounds each read).
HttpReply Request(int port, const std::string& method, const std::string& path,
                  const std::string& body,
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(5000),
                  bool no_length = false, const std::string& headers = "Host: 127.0.0.1\r\n") {
  HttpReply reply;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return reply;
  }
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string req = method + " " + path + " HTTP/1.1\r\n" + headers + "Connection: close\r\n";
  if (!no_length && (!body.empty() || method == "POST")) {
    req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n";
  }
  req += "\r\n" + body;
  (void)!write(fd, req.data(), req.size());
  std::string all;
  char buf[4096];
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    all.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  const size_t sep = all.find("\r\n\r\n");
  if (sep == std::string::npos) return reply;
  reply.headers = all.substr(0, sep);
  reply.body = all.substr(sep + 4);
  if (all.size() > 12) reply.status = std::atoi(all.c_str() + 9);
  return reply;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kSkipGrpcTests) GTEST_SKIP() << "gRPC is not TSan-instrumented here";
    auto api = ApiServer::Start(&backend_, ApiServerOptions{});
    ASSERT_TRUE(api.ok()) << api.status();
    api_ = std::move(*api);
    registry_.Add([](ExpositionWriter& w) { w.Gauge("etcd_server_has_leader", "h", 1); });
    HttpServerOptions options;
    options.backend = &backend_;
    options.gateway_channel = api_->InProcessChannel();
    options.metrics = &registry_;
    options.server_version = "3.4.23";
    options.cluster_version = "3.4.0";
    options.health_timeout = std::chrono::milliseconds(2000);
    Adjust(options);
    auto http = HttpServer::Start(std::move(options));
    ASSERT_TRUE(http.ok()) << http.status();
    http_ = std::move(*http);
    // The server listens on nothing: plain HTTP-only client listeners hand
    // it their connections, one with every route, one with metrics only.
    client_ = StartListener(HttpRoutes::kAll);
    metrics_ = StartListener(HttpRoutes::kMetrics);
    ASSERT_TRUE(client_ != nullptr && metrics_ != nullptr);
    port_ = client_->Ports()[0];
    metrics_port_ = metrics_->Ports()[0];
    ASSERT_GT(port_, 0);
  }
  void TearDown() override {
    if (client_) client_->StopAccepting();
    if (metrics_) metrics_->StopAccepting();
    if (http_) http_->Shutdown();
    if (api_) api_->Shutdown(std::chrono::milliseconds(100));
    client_.reset();
    metrics_.reset();
  }

  // Lets a derived fixture change the server's options.
  virtual void Adjust(HttpServerOptions& options) { (void)options; }

  std::unique_ptr<ClientListener> StartListener(HttpRoutes routes) {
    ClientListenerOptions o;
    o.urls = {"http://127.0.0.1:0"};
    o.http_only = true;
    HttpServer* http = http_.get();
    o.on_http_connection = [http, routes](int fd, const HttpPeer& peer) {
      http->AddConnection(fd, peer, routes);
    };
    auto l = ClientListener::Start(std::move(o));
    EXPECT_TRUE(l.ok()) << l.status();
    return l.ok() ? std::move(*l) : nullptr;
  }

  testing::FakeBackend backend_;
  MetricsRegistry registry_;
  std::unique_ptr<ApiServer> api_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<ClientListener> client_;
  std::unique_ptr<ClientListener> metrics_;
  int port_ = 0;
  int metrics_port_ = 0;
};

TEST_F(HttpServerTest, VersionHealthMetrics) {
  HttpReply v = Request(port_, "GET", "/version", "");
  EXPECT_EQ(v.status, 200);
  EXPECT_EQ(v.body, "{\"etcdserver\":\"3.4.23\",\"etcdcluster\":\"3.4.0\"}");
  HttpReply h = Request(port_, "GET", "/health", "");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "{\"health\":\"true\"}");
  backend_.SetHasLeader(false);
  h = Request(port_, "GET", "/health", "");
  EXPECT_EQ(h.status, 503);
  EXPECT_THAT(h.body, StartsWith("{\"health\":\"false\"}"));
  EXPECT_EQ(Request(port_, "GET", "/readyz", "").status, 503);
  EXPECT_EQ(Request(port_, "GET", "/livez", "").status, 200);
  backend_.SetHasLeader(true);
  HttpReply m = Request(port_, "GET", "/metrics", "");
  EXPECT_EQ(m.status, 200);
  EXPECT_THAT(m.headers, HasSubstr("text/plain; version=0.0.4"));
  EXPECT_THAT(m.body, HasSubstr("\netcd_server_has_leader 1\n"));
  // The metrics-only port has no gateway or /version.
  EXPECT_EQ(Request(metrics_port_, "GET", "/version", "").status, 404);
  EXPECT_EQ(Request(metrics_port_, "GET", "/metrics", "").status, 200);
}

TEST_F(HttpServerTest, GatewayPutRangeAndErrors) {
  HttpReply p = Request(port_, "POST", "/v3/kv/put", "{\"key\":\"Zm9v\",\"value\":\"YmFy\"}");
  ASSERT_EQ(p.status, 200) << p.body;
  EXPECT_THAT(p.body, StartsWith("{\"header\":{"));
  HttpReply r = Request(port_, "POST", "/v3beta/kv/range", "{\"key\":\"Zm9v\"}");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr("\"value\":\"YmFy\""));
  EXPECT_THAT(r.body, HasSubstr("\"count\":\"1\""));
  HttpReply bad = Request(port_, "POST", "/v3/kv/range", "{\"key\":");
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body, HasSubstr("\"code\":3}"));
  HttpReply future = Request(port_, "POST", "/v3/kv/range", "{\"key\":\"Zm9v\",\"revision\":1000}");
  EXPECT_EQ(future.status, 400);
  EXPECT_THAT(future.body, HasSubstr("future revision"));
  EXPECT_THAT(future.body, HasSubstr("\"code\":11}"));
  EXPECT_EQ(Request(port_, "POST", "/v3/kv/nothing", "{}").status, 404);
  // No body at all (no Content-Length): an empty request.
  HttpReply status = Request(port_, "POST", "/v3/maintenance/status", "", std::chrono::seconds(5),
                             /*no_length=*/true);
  EXPECT_EQ(status.status, 200) << status.body;
  EXPECT_EQ(Request(port_, "GET", "/v3/kv/range", "").status, 405);
}

TEST_F(HttpServerTest, WatchStreamsResultsUntilClientLeaves) {
  HttpReply put = Request(port_, "POST", "/v3/kv/put", "{\"key\":\"YQ==\",\"value\":\"MQ==\"}");
  ASSERT_EQ(put.status, 200);
  // Two create requests in one body, the second from revision 1 (history);
  // the client reads for a bounded time, then closes.
  HttpReply w = Request(port_, "POST", "/v3/watch",
                        "{\"create_request\":{\"key\":\"Yg==\"}}"
                        "{\"create_request\":{\"key\":\"YQ==\",\"start_revision\":1}}",
                        std::chrono::milliseconds(1500));
  EXPECT_EQ(w.status, 200);
  EXPECT_THAT(w.headers, HasSubstr("Transfer-Encoding: chunked"));
  EXPECT_THAT(w.body, HasSubstr("{\"result\":{\"header\":"));
  EXPECT_THAT(w.body, HasSubstr("\"created\":true"));
  EXPECT_THAT(w.body, HasSubstr("\"key\":\"YQ==\""));
  // The server notices the closed connection and ends the gRPC stream.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (backend_.StreamCount() != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(backend_.StreamCount(), 0u);
}

TEST_F(HttpServerTest, KeepAliveEndsAfterOneReplyPerRequest) {
  HttpReply g = Request(port_, "POST", "/v3/lease/grant", "{\"TTL\":30}");
  ASSERT_EQ(g.status, 200) << g.body;
  const size_t at = g.body.find("\"ID\":\"");
  ASSERT_NE(at, std::string::npos) << g.body;
  const std::string id = g.body.substr(at + 6, g.body.find('"', at + 6) - at - 6);
  const auto start = std::chrono::steady_clock::now();
  HttpReply k = Request(port_, "POST", "/v3/lease/keepalive",
                        "{\"ID\":" + id + "}{\"ID\":\"" + id + "\"}");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));
  EXPECT_EQ(k.status, 200);
  size_t results = 0;
  for (size_t p = k.body.find("{\"result\":"); p != std::string::npos;
       p = k.body.find("{\"result\":", p + 1)) {
    ++results;
  }
  EXPECT_EQ(results, 2u) << k.body;
  EXPECT_THAT(k.body, HasSubstr("\"TTL\":\"30\""));
}


// Resource bound: a gateway watch whose HTTP client never reads. Far more
// than the stream queue's bound is produced; the gateway's queued bytes stay
// under kGatewayStreamQueueBytes plus one response, and the gateway keeps
// serving other requests.
TEST_F(HttpServerTest, SlowWatchReaderKeepsTheGatewayQueueBounded) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port_));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string body = "{\"create_request\":{\"key\":\"Ymln\"}}";  // "big"
  const std::string req = "POST /v3/watch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          "Content-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (backend_.StreamCount() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll interval
  }
  ASSERT_EQ(backend_.StreamCount(), 1u);
  // 400 events of 64 KiB: about 34 MiB of JSON, several times what the
  // socket buffers and the queue can take.
  constexpr int kEvents = 400;
  const std::string value(64 << 10, 'v');
  const int64_t bound = static_cast<int64_t>(kGatewayStreamQueueBytes) + (128 << 10);
  int64_t peak = 0;
  for (int i = 0; i < kEvents; ++i) {
    etcdserverpb::PutRequest put;
    put.set_key("big");
    put.set_value(value);
    backend_.Put(auth::kNoCredentials, put, [](absl::StatusOr<etcdserverpb::PutResponse>) {});
    peak = std::max(peak, http_->StreamQueuedBytes());
  }
  // The queue fills (the HTTP thread is stuck writing to the socket) ...
  const auto fill_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (http_->StreamQueuedBytes() < (1 << 20) &&
         std::chrono::steady_clock::now() < fill_deadline) {
    peak = std::max(peak, http_->StreamQueuedBytes());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll interval
  }
  // ... and stays bounded.
  for (int i = 0; i < 100; ++i) {
    peak = std::max(peak, http_->StreamQueuedBytes());
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // sampling interval
  }
  EXPECT_GE(peak, 1 << 20) << "the queue never filled: the test did not reach the bound";
  EXPECT_LE(peak, bound);
  // The member still serves.
  HttpReply p = Request(port_, "POST", "/v3/kv/put", "{\"key\":\"Zm9v\",\"value\":\"YmFy\"}");
  EXPECT_EQ(p.status, 200) << p.body;
  HttpReply r = Request(port_, "POST", "/v3/kv/range", "{\"key\":\"Zm9v\"}");
  EXPECT_THAT(r.body, HasSubstr("\"value\":\"YmFy\""));
  close(fd);
  // The watch ends first; the queued bytes go when the HTTP side frees the
  // stream's output, which may come a moment later.
  const auto gone = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((backend_.StreamCount() != 0 || http_->StreamQueuedBytes() != 0) &&
         std::chrono::steady_clock::now() < gone) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // poll interval
  }
  EXPECT_EQ(backend_.StreamCount(), 0u);
  EXPECT_EQ(http_->StreamQueuedBytes(), 0);
}

// A plain connection that sent `method path` with `body` and reads nothing
// yet (the caller closes it).
int OpenRequest(int port, const std::string& method, const std::string& path,
                const std::string& body) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
                          "Content-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  EXPECT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  return fd;
}

// --max-concurrent-streams bounds the gateway's open calls, as etcd's
// gateway (one HTTP/2 connection to its gRPC server) is bounded: with 2
// watch streams open, a range waits (etcd e2e
// TestV3Curl_MaxStreams_ReachLimit: curl times out); once a watch client
// leaves, the range is answered.
class HttpMaxStreamsTest : public HttpServerTest {
 protected:
  void Adjust(HttpServerOptions& options) override { options.max_concurrent_streams = 2; }
};

TEST_F(HttpMaxStreamsTest, GatewayCallsPastTheLimitWaitForAFreeSlot) {
  auto open_watch = [&](const std::string& key_b64) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    const std::string body = "{\"create_request\":{\"key\":\"" + key_b64 + "\"}}";
    const std::string req = "POST /v3/watch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            "Content-Type: application/json\r\nContent-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body;
    EXPECT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
    return fd;
  };
  const int w1 = open_watch("YQ==");
  const int w2 = open_watch("Yg==");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (backend_.StreamCount() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll interval
  }
  ASSERT_EQ(backend_.StreamCount(), 2u);
  // Both slots taken: a range gets no answer while they stay open.
  HttpReply waited = Request(port_, "POST", "/v3/kv/range", "{\"key\":\"Zm9v\"}",
                             std::chrono::milliseconds(1500));
  EXPECT_EQ(waited.status, 0) << waited.body;
  // A third watch waits too (it never reaches the server).
  const int w3 = open_watch("Yw==");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // time to (wrongly) start
  EXPECT_EQ(backend_.StreamCount(), 2u);
  // One watch client leaves: its slot goes to the waiting watch, and once
  // the second leaves, a range is answered.
  close(w1);
  const auto third = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (backend_.StreamCount() != 2 && std::chrono::steady_clock::now() < third) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll interval
  }
  close(w2);
  HttpReply r = Request(port_, "POST", "/v3/kv/range", "{\"key\":\"Zm9v\"}",
                        std::chrono::milliseconds(10000));
  EXPECT_EQ(r.status, 200) << r.body;
  close(w3);
}

// Requests past --max-concurrent-streams wait in order without a thread
// each; one whose client leaves while it waits gives its turn to the next.
TEST_F(HttpMaxStreamsTest, WaitingRequestsHoldNoThreadAndLeaveTheQueue) {
  const int w1 = OpenRequest(port_, "POST", "/v3/watch", "{\"create_request\":{\"key\":\"YQ==\"}}");
  const int w2 = OpenRequest(port_, "POST", "/v3/watch", "{\"create_request\":{\"key\":\"Yg==\"}}");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (backend_.StreamCount() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll interval
  }
  ASSERT_EQ(backend_.StreamCount(), 2u);
  const int threads_before = ThreadCount();
  // 50 ranges wait for a slot, then all but the last leave.
  std::vector<int> waiting;
  for (int i = 0; i < 50; ++i) {
    waiting.push_back(OpenRequest(port_, "POST", "/v3/kv/range", "{\"key\":\"Zm9v\"}"));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // time to (wrongly) answer
  EXPECT_LE(ThreadCount(), threads_before + 2);
  for (size_t i = 0; i + 1 < waiting.size(); ++i) close(waiting[i]);
  // A watch leaves: the one range still waiting is answered.
  close(w1);
  pollfd p{waiting.back(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1) << "the waiting range was not answered";
  char buf[256];
  const ssize_t n = read(waiting.back(), buf, sizeof(buf));
  ASSERT_GT(n, 12);
  EXPECT_EQ(std::string(buf, 12), "HTTP/1.1 200");
  close(waiting.back());
  close(w2);
}

// Shutdown with requests in every waiting state (two watch streams open,
// a range waiting for a slot, an idle keep-alive connection) returns
// promptly: the calls are cancelled, the waiter is answered, every
// connection is closed.
TEST_F(HttpMaxStreamsTest, ShutdownEndsStreamsAndWaitersPromptly) {
  const int w1 = OpenRequest(port_, "POST", "/v3/watch", "{\"create_request\":{\"key\":\"YQ==\"}}");
  const int w2 = OpenRequest(port_, "POST", "/v3/watch", "{\"create_request\":{\"key\":\"Yg==\"}}");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (backend_.StreamCount() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll interval
  }
  ASSERT_EQ(backend_.StreamCount(), 2u);
  const int waiting = OpenRequest(port_, "POST", "/v3/kv/range", "{\"key\":\"Zm9v\"}");
  const int idle = OpenRequest(port_, "GET", "/livez", "");
  pollfd p{idle, POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 5000), 1);  // answered; stays open (keep-alive)
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the range reaches the queue
  const auto start = std::chrono::steady_clock::now();
  http_->Shutdown();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  // Every connection ends (what was queued for it may come first).
  for (int fd : {w1, w2, waiting, idle}) {
    std::string got;
    char buf[4096];
    bool closed = false;
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!closed && std::chrono::steady_clock::now() < end) {
      pollfd q{fd, POLLIN, 0};
      if (poll(&q, 1, 100) <= 0) continue;
      const ssize_t n = read(fd, buf, sizeof(buf));
      if (n <= 0) {
        closed = true;
      } else {
        got.append(buf, static_cast<size_t>(n));
      }
    }
    EXPECT_TRUE(closed) << "fd " << fd << " still open after Shutdown: " << got;
    if (fd == waiting) {
      EXPECT_THAT(got, HasSubstr("server is shutting down"));
    }
    close(fd);
  }
  const auto gone = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (backend_.StreamCount() != 0 && std::chrono::steady_clock::now() < gone) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll interval
  }
  EXPECT_EQ(backend_.StreamCount(), 0u);
  // A connection handed over after Shutdown is closed at once.
  HttpReply late = Request(port_, "GET", "/livez", "", std::chrono::milliseconds(2000));
  EXPECT_EQ(late.status, 0);
}

// The request-body limit follows --max-request-bytes (twice the gRPC
// receive limit, for JSON's base64 and field names), not a fixed 64 MiB.
// etcd's --host-whitelist and --cors on a plain-text client URL.
// ---- /v3/kv/range: the JSON is written piece by piece from the answer's
// bytes while the client takes it (RangeJsonWriter); the answer keeps its
// Range budget charge until it is out or the client has gone.

void PutValues(testing::FakeBackend& backend, int keys, size_t value_bytes) {
  for (int i = 0; i < keys; ++i) {
    etcdserverpb::PutRequest put;
    char key[32];
    std::snprintf(key, sizeof(key), "list/%04d", i);
    put.set_key(key);
    put.set_value(std::string(value_bytes, static_cast<char>('a' + i % 26)));
    backend.Put(auth::kNoCredentials, put, [](absl::StatusOr<etcdserverpb::PutResponse>) {});
  }
}

// Every key: key "\0", range_end "\0".
constexpr char kListAll[] = "{\"key\":\"AA==\",\"range_end\":\"AA==\"";

// A connection with a small receive buffer that asked for every key and
// read the first bytes of the reply (the caller closes it).
int OpenSlowList(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string body = std::string(kListAll) + "}";
  const std::string req = "POST /v3/kv/range HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          "Content-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  EXPECT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  char buf[64];
  EXPECT_GT(read(fd, buf, sizeof(buf)), 0);
  return fd;
}

template <class Pred>
bool Eventually(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll interval
  }
  return pred();
}

TEST_F(HttpServerTest, RangeRepliesAreTheOneShotJsonByteForByte) {
  PutValues(backend_, 64, 64 << 10);  // 4 MiB of values: many MHD blocks
  auto kv = etcdserverpb::KV::NewStub(api_->InProcessChannel());
  const std::string all = std::string(kListAll);
  for (const std::string& body :
       {all + "}", all + ",\"limit\":\"3\"}", all + ",\"count_only\":true}",
        all + ",\"keys_only\":true}", std::string("{\"key\":\"bm9uZQ==\"}")}) {
    SCOPED_TRACE(body);
    etcdserverpb::RangeRequest req;
    ASSERT_TRUE(GatewayJsonToMessage(body, &req).ok());
    grpc::ClientContext ctx;
    etcdserverpb::RangeResponse resp;
    ASSERT_TRUE(kv->Range(&ctx, req, &resp).ok());
    const std::string want = MessageToGatewayJson(resp);
    HttpReply r = Request(port_, "POST", "/v3/kv/range", body, std::chrono::seconds(20));
    ASSERT_EQ(r.status, 200);
    EXPECT_THAT(r.headers + "\r\n", HasSubstr("\r\nContent-Length: " + std::to_string(want.size()) + "\r\n"));
    EXPECT_THAT(r.headers, HasSubstr("Content-Type: application/json"));
    EXPECT_THAT(r.headers, HasSubstr("Grpc-Metadata-Content-Type: application/grpc"));
    EXPECT_EQ(r.body.size(), want.size());
    EXPECT_TRUE(r.body == want) << r.body.substr(0, 200) << "\nwant\n" << want.substr(0, 200);
  }
  const RangeBudget& budget = api_->range_budget();
  ASSERT_TRUE(Eventually([&] { return budget.GetStats().in_flight == 0; }));
  EXPECT_EQ(budget.GetStats().in_flight_bytes, 0u);
}

// A client that reads a few bytes of a large LIST and hangs up: the answer
// stays charged to the Range budget while the client holds back, and the
// charge (with the answer's bytes) goes when the connection closes.
TEST_F(HttpServerTest, ListClientThatHangsUpReleasesTheAnswerAndItsBudget) {
  constexpr int kKeys = 128;
  constexpr size_t kValueBytes = 64 << 10;  // 8 MiB: more than the sockets buffer
  PutValues(backend_, kKeys, kValueBytes);
  const RangeBudget& budget = api_->range_budget();
  const int fd = OpenSlowList(port_);
  RangeBudget::Stats s = budget.GetStats();
  EXPECT_EQ(s.in_flight, 1u);
  EXPECT_GE(s.in_flight_bytes, kKeys * kValueBytes);
  close(fd);
  EXPECT_TRUE(Eventually([&] { return budget.GetStats().in_flight == 0; }));
  s = budget.GetStats();
  EXPECT_EQ(s.in_flight_bytes, 0u);
  // The member still serves.
  HttpReply r = Request(port_, "POST", "/v3/kv/range", "{\"key\":\"bGlzdC8wMDAx\"}");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.body, HasSubstr("\"count\":\"1\""));
}

// A client that stops reading without closing: the idle timeout ends the
// connection, and with it the answer and its charge.
class HttpIdleTimeoutTest : public HttpServerTest {
 protected:
  void Adjust(HttpServerOptions& options) override { options.idle_timeout = std::chrono::seconds(1); }
};

TEST_F(HttpIdleTimeoutTest, StalledListClientTimesOutAndReleasesTheBudget) {
  constexpr int kKeys = 128;
  constexpr size_t kValueBytes = 64 << 10;
  PutValues(backend_, kKeys, kValueBytes);
  const RangeBudget& budget = api_->range_budget();
  const int fd = OpenSlowList(port_);
  EXPECT_GE(budget.GetStats().in_flight_bytes, kKeys * kValueBytes);
  EXPECT_TRUE(Eventually([&] { return budget.GetStats().in_flight == 0; }));
  EXPECT_EQ(budget.GetStats().in_flight_bytes, 0u);
  close(fd);
}

class HttpAccessControlTest : public HttpServerTest {
 protected:
  void Adjust(HttpServerOptions& options) override {
    options.host_whitelist = {"etcd.example", "127.0.0.1"};
    options.cors_origins = {"https://ui.example"};
  }
};

TEST_F(HttpAccessControlTest, HostWhitelistRefusesOtherHostsWith421) {
  const std::chrono::milliseconds t(5000);
  HttpReply bad = Request(port_, "GET", "/version", "", t, false, "Host: evil.example:2379\r\n");
  EXPECT_EQ(bad.status, 421);
  EXPECT_THAT(bad.body, HasSubstr("evil.example"));
  // The gateway too: a DNS-rebinding page cannot write.
  HttpReply put = Request(port_, "POST", "/v3/kv/put", "{\"key\":\"Zm9v\",\"value\":\"YmFy\"}", t,
                          false, "Host: evil.example\r\n");
  EXPECT_EQ(put.status, 421);
  EXPECT_EQ(Request(port_, "GET", "/version", "", t, false, "").status, 421);  // no Host
  EXPECT_EQ(Request(port_, "GET", "/version", "", t, false, "Host: etcd.example:2379\r\n").status,
            200);
  EXPECT_EQ(Request(port_, "GET", "/version", "").status, 200);  // Host: 127.0.0.1
  // The metrics URL has no access control, as in etcd.
  EXPECT_EQ(
      Request(metrics_port_, "GET", "/metrics", "", t, false, "Host: evil.example\r\n").status,
      200);
}

TEST_F(HttpAccessControlTest, CorsHeadersOnlyForListedOrigins) {
  const std::chrono::milliseconds t(5000);
  HttpReply listed = Request(port_, "GET", "/version", "", t, false,
                             "Host: 127.0.0.1\r\nOrigin: https://ui.example\r\n");
  EXPECT_EQ(listed.status, 200);
  EXPECT_THAT(listed.headers, HasSubstr("Access-Control-Allow-Origin: https://ui.example"));
  HttpReply other = Request(port_, "GET", "/version", "", t, false,
                            "Host: 127.0.0.1\r\nOrigin: https://evil.example\r\n");
  EXPECT_EQ(other.status, 200);
  EXPECT_THAT(other.headers, Not(HasSubstr("Access-Control-Allow-Origin")));
}

// The defaults (etcd's "*"): every host, and CORS for every origin.
TEST_F(HttpServerTest, DefaultAccessControlAllowsEveryHostAndOrigin) {
  const std::chrono::milliseconds t(5000);
  HttpReply r = Request(port_, "GET", "/version", "", t, false,
                        "Host: anything.example\r\nOrigin: https://x.example\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.headers, HasSubstr("Access-Control-Allow-Origin: *"));
}

TEST(GatewayBodyLimitTest, FollowsMaxRequestBytes) {
  EXPECT_EQ(GatewayMaxBodyBytes(1536 * 1024), 2u * (1536 * 1024 + 512 * 1024));
  EXPECT_EQ(HttpServerOptions{}.max_body_bytes, GatewayMaxBodyBytes(1536 * 1024));
  EXPECT_EQ(GatewayMaxBodyBytes(0), 2u * 512 * 1024);
}

TEST_F(HttpServerTest, BodyOverTheLimitIs413AndNotBuffered) {
  // Default limit 4 MiB: a body announced at 5 MiB is refused.
  HttpReply big = Request(port_, "POST", "/v3/kv/put",
                          "{\"key\":\"YQ==\",\"value\":\"" +
                              std::string(5 << 20, 'A') + "\"}");
  EXPECT_EQ(big.status, 413);
  // A 1 MiB value (base64 1.33 MiB) is within both limits.
  HttpReply ok = Request(port_, "POST", "/v3/kv/put",
                         "{\"key\":\"YQ==\",\"value\":\"" +
                             std::string((1 << 20) / 3 * 4, 'A') + "\"}");
  EXPECT_EQ(ok.status, 200) << ok.body.substr(0, 200);
}

}  // namespace
}  // namespace cppetcd::api
