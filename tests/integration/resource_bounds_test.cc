// Resource bounds seen end to end on a real server process (the unit tests
// cover each bound in-process; see docs/design.md, "Resource bounds"): a
// gateway watch whose HTTP client stops reading while far more than the
// bounds is written on the watched key. The server's anonymous memory
// (RssAnon: LMDB's file-backed map is not counted) stays bounded, and it
// keeps serving puts and gets meanwhile.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "harness.h"

namespace cppetcd::integration {
namespace {

// RssAnon of `pid` in KiB (-1 if unreadable).
int64_t RssAnonKib(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("RssAnon:", 0) == 0) return std::stoll(line.substr(8));
  }
  return -1;
}

// Opens a gateway stream on the client port and reads until `until` shows
// up (bounded by 10 s); then the caller stops reading. -1 on failure.
int OpenStalledStream(int port, const std::string& path, const std::string& body,
                      const std::string& until) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  const std::string req = absl::StrCat("POST ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                                       "Content-Type: application/json\r\nContent-Length: ",
                                       body.size(), "\r\n\r\n", body);
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return -1;
  }
  std::string got;
  char buf[1024];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (got.find(until) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  if (got.find(until) == std::string::npos) {
    close(fd);
    return -1;
  }
  return fd;
}

TEST(ResourceBoundsTest, StalledGatewayWatchKeepsServerMemoryBounded) {
  TempDir dir;
  ServerProcess::Options o;
  o.data_dir = dir.path() + "/data";
  auto started = ServerProcess::Start(o);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<ServerProcess> server = std::move(*started);
  auto kv = etcdserverpb::KV::NewStub(server->NewChannel());
  auto put = [&](const std::string& key, const std::string& value) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    etcdserverpb::PutRequest req;
    req.set_key(key);
    req.set_value(value);
    etcdserverpb::PutResponse resp;
    return kv->Put(&ctx, req, &resp);
  };
  ASSERT_TRUE(put("warm", "up").ok());

  // Every write also stays in the raft log in memory until a snapshot (as in
  // etcd), so the stalled watch is measured against a control: the same
  // writes on a key nobody watches.
  constexpr int kPuts = 160;  // x 1 MiB per phase: 213 MiB of gateway JSON
  const std::string value(1 << 20, 'v');
  auto write_phase = [&](const std::string& key) {
    const int64_t before = RssAnonKib(server->pid());
    int64_t peak = before;
    for (int i = 0; i < kPuts; ++i) {
      grpc::Status st = put(key, value);
      EXPECT_TRUE(st.ok()) << i << ": " << st.error_message();
      if (!st.ok()) break;
      peak = std::max(peak, RssAnonKib(server->pid()));
    }
    for (int i = 0; i < 100; ++i) {
      peak = std::max(peak, RssAnonKib(server->pid()));
      usleep(10 * 1000);  // sampling interval, not a wait for an outcome
    }
    return peak - before;
  };
  const int64_t control_kib = write_phase("unwatched");
  ASSERT_GT(control_kib, 0);

  // "big", base64 "Ymln"; the created response arrives, then nothing is read.
  int fd = OpenStalledStream(server->client_port(), "/v3/watch",
                             "{\"create_request\":{\"key\":\"Ymln\"}}", "\"created\":true");
  ASSERT_GE(fd, 0) << "no gateway watch on the client port";
  const int64_t stalled_kib = write_phase("big");

  // Still serving.
  ASSERT_TRUE(put("after", "flood").ok());
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    etcdserverpb::RangeRequest req;
    req.set_key("after");
    etcdserverpb::RangeResponse resp;
    ASSERT_TRUE(kv->Range(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.kvs_size(), 1);
    EXPECT_EQ(resp.kvs(0).value(), "flood");
  }
  // The store side holds at most 16 MiB for the stalled watcher before it
  // is made a victim, the gateway about 8 MiB, gRPC a few messages: far
  // under the 213 MiB an unbounded queue would add to the control.
  fprintf(stderr, "RssAnon growth: control %lld KiB, with a stalled gateway watch %lld KiB\n",
          static_cast<long long>(control_kib), static_cast<long long>(stalled_kib));
  EXPECT_LT(stalled_kib - control_kib, 64 * 1024)
      << "RssAnon growth: control " << control_kib << " KiB, stalled watch " << stalled_kib
      << " KiB";
  close(fd);
}

}  // namespace
}  // namespace cppetcd::integration
