// The HTTP/1.1 side of a client port, as etcd 3.4 serves it next to gRPC
// (embed/serve.go, etcdserver/api/etcdhttp, grpc-gateway): /health,
// /livez and /readyz (etcd 3.5 style), /version, /metrics and the v3 JSON
// gateway (POST /v3/<service>/<method>, also under /v3beta/) that calls
// the gRPC services through an in-process channel.
//
// The server listens on nothing itself: the client listener
// (client_listener.h) hands it each HTTP/1.1 connection of a client or
// metrics URL as a socket (AddConnection): the client's own TCP socket, or
// one end of a socket pair the listener relays to a TLS session. No
// internal port exists that could bypass the listener's TLS and
// client-certificate checks.
//
// Connections are multiplexed by libmicrohttpd on a few threads (issue 12
// item 2): no thread per connection, and none of them ever waits for gRPC,
// the backend or a --max-concurrent-streams slot. A request that waits is
// suspended and resumed when its answer is there; a streamed reply is
// pulled only when the socket takes more (backpressure); a client that
// leaves while its request waits has the gateway call cancelled. A
// /v3/kv/range answer is written as JSON piece by piece from the bytes the
// server built (src/api/gateway_range_json.h), also as the socket takes
// more, and keeps its Range budget charge until it is out or the
// connection has ended (closed, reset or timed out).
#ifndef CPPETCD_API_HTTP_SERVER_H_
#define CPPETCD_API_HTTP_SERVER_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppetcd/api/backend.h"
#include "cppetcd/api/grpc_server.h"
#include "cppetcd/api/http_connection.h"
#include "cppetcd/api/metrics.h"
#include "cppetcd/util/log.h"

namespace grpc {
class Channel;
}
namespace google::protobuf {
class FieldDescriptor;
class Message;
}

namespace cppetcd::api {

// The gateway's request-body limit for --max-request-bytes: the largest
// gRPC request the server receives (max_request_bytes + kGrpcOverheadBytes)
// written as JSON, where bytes are base64 (4/3 of their size) and each field
// adds its name: twice that. etcd's gateway reads any body and lets the gRPC
// receive limit refuse the request; here any request that limit admits fits
// as plain JSON, and a larger body is refused (413) before it is buffered
// whole or parsed.
inline size_t GatewayMaxBodyBytes(uint64_t max_request_bytes) {
  return static_cast<size_t>(2 * (max_request_bytes + kGrpcOverheadBytes));
}

// Bounds of one gateway stream's outgoing queue (/v3/watch,
// /v3/lease/keepalive, /v3/maintenance/snapshot, /v3/election/observe):
// past either, the gateway stops reading the gRPC stream until the HTTP
// client has taken the queued responses (one response may overshoot the
// byte bound).
inline constexpr size_t kGatewayStreamQueueResponses = 64;
inline constexpr size_t kGatewayStreamQueueBytes = 4u << 20;

struct HttpServerOptions {
  // Health checks (alarms, leader, a linearizable read). Required; must
  // outlive the HttpServer.
  ServerBackend* backend = nullptr;
  // Target of the /v3/ gateway (ApiServer::InProcessChannel()). Null: no
  // gateway (404 under /v3/).
  std::shared_ptr<grpc::Channel> gateway_channel;
  // /metrics source; null: 404. Must outlive the HttpServer.
  const MetricsRegistry* metrics = nullptr;
  // /version: {"etcdserver": server_version, "etcdcluster": cluster_version}.
  std::string server_version;
  std::string cluster_version;
  // How long /health and /readyz wait for the server (etcd: 1 s).
  std::chrono::milliseconds health_timeout{1000};
  // --max-concurrent-streams: gateway calls (unary and streams) open at
  // once, as etcd's gateway gets over its one HTTP/2 connection to its gRPC
  // server; a call past it waits (first come, first served) until one
  // ends, or until its client leaves.
  uint64_t max_concurrent_streams = 0xffffffffu;
  // HTTP connections served at once; one past it is closed as soon as it
  // is handed over.
  size_t max_connections = 16384;
  // A kept-alive connection idle (no request, no bytes moving) this long is
  // closed.
  std::chrono::seconds idle_timeout{30};
  // Largest request body accepted (413 above it): see GatewayMaxBodyBytes.
  size_t max_body_bytes = GatewayMaxBodyBytes(1536 * 1024);
  // etcd's --cors: origins whose requests get CORS headers naming them;
  // "*" (or an empty list, etcd's default) answers every request with
  // Access-Control-Allow-Origin: *. Client URLs only, not metrics URLs.
  std::vector<std::string> cors_origins;
  // etcd's --host-whitelist: on plain-text (not TLS) connections, a request
  // whose Host header names another host is refused with 421 and etcd's
  // DNS-rebinding message. "*" or empty (etcd's default): every host.
  std::vector<std::string> host_whitelist;
  util::Logger logger = util::GetLogger("http");
};

// Which routes a connection is served: every route (a client URL), or
// /metrics, /health, /livez and /readyz only (etcd --listen-metrics-urls).
enum class HttpRoutes { kAll, kMetrics };

// Thread-safety: Start and Shutdown from the owner; AddConnection and
// StreamQueuedBytes from any thread.
class HttpServer {
 public:
  // Builds the routes. InvalidArgument when options are incomplete.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options);
  ~HttpServer();  // Shutdown()

  // Takes ownership of `fd`, a connected stream socket that speaks
  // HTTP/1.1 (nothing of it read yet), and serves its requests with
  // `routes` (keep-alive: closed after idle_timeout without a request).
  // `peer` says who the client is. Never blocks; after Shutdown, or past
  // max_connections, the socket is closed.
  void AddConnection(int fd, const HttpPeer& peer, HttpRoutes routes);

  // Bytes of gateway stream responses queued for HTTP connections now (each
  // stream holds at most about kGatewayStreamQueueBytes). Any thread.
  int64_t StreamQueuedBytes() const;

  // Cancels the gateway's calls, ends open streams, answers the requests
  // still waiting and closes every connection. Idempotent.
  void Shutdown();

  class Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// ---- Pieces of the gateway, exposed for tests.

// Splits a request body holding zero or more concatenated JSON values
// (grpc-gateway streams accept `{..}{..}` or one per line) into the text of
// each value. InvalidArgument on an unterminated value or stray text.
absl::StatusOr<std::vector<std::string_view>> SplitJsonValues(std::string_view body);

// grpc-gateway's JSON mapping (jsonpb with original field names): int64 as
// strings, bytes as base64, enums by name, zero values omitted. A `bytes`
// field marked (cppetcdpb.json_string) (etcd's `string`, e.g. user and role
// names, member URLs) is a JSON string, each byte of it that is not part of
// valid UTF-8 written as U+FFFD, as Go's encoding/json does.
std::string MessageToGatewayJson(const google::protobuf::Message& message);
// The reverse; accepts both field name styles, ignores unknown fields.
// As Go's decoder, a byte of the body that is not valid UTF-8 and a
// \u escape of an unpaired UTF-16 surrogate read as U+FFFD.
// InvalidArgument with the parser's message on malformed input.
absl::Status GatewayJsonToMessage(std::string_view json, google::protobuf::Message* message);

// Whether `field` is one the gateway encodes as a JSON string although it is
// declared `bytes` (the option cppetcdpb.json_string).
bool IsGatewayJsonString(const google::protobuf::FieldDescriptor& field);

// `json` with the bytes that are not valid UTF-8 and the \u escapes of
// unpaired surrogates replaced by U+FFFD (as Go's encoding/json reads them);
// nullopt when there is none (the common case).
std::optional<std::string> CoerceJsonToUtf8(std::string_view json);

// grpc-gateway's HTTP status for a gRPC status code (runtime.HTTPStatusFromCode).
int HttpStatusFromGrpcCode(int grpc_code);

// grpc-gateway's error body: {"error":msg,"message":msg,"code":N}.
std::string GatewayErrorJson(int grpc_code, std::string_view message);

}  // namespace cppetcd::api

#endif  // CPPETCD_API_HTTP_SERVER_H_
