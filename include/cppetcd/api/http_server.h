// The HTTP/1.1 side of a client port, as etcd 3.4 serves it next to gRPC
// (embed/serve.go, etcdserver/api/etcdhttp, grpc-gateway): /health,
// /livez and /readyz (etcd 3.5 style), /version, /metrics and the v3 JSON
// gateway (POST /v3/<service>/<method>, also under /v3beta/) that calls
// the gRPC services through an in-process channel.
//
// The server always listens on 127.0.0.1:<OS-picked port> (LoopbackPort):
// the client-port demultiplexer forwards HTTP/1.1 connections (plain, or
// after TLS termination) there; MetricsLoopbackPort likewise for metrics
// listeners. It may also listen directly on plain
// "host:port" addresses, e.g. --listen-metrics-urls (metrics and health
// only) or http:// client URLs when nothing else demultiplexes them.
#ifndef CPPETCD_API_HTTP_SERVER_H_
#define CPPETCD_API_HTTP_SERVER_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppetcd/api/backend.h"
#include "cppetcd/api/grpc_server.h"
#include "cppetcd/api/metrics.h"
#include "cppetcd/util/log.h"

namespace grpc {
class Channel;
}
namespace google::protobuf {
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
  // Extra plain listeners serving every route ("host:port"; port 0 picks one).
  std::vector<std::string> client_addresses;
  // Extra plain listeners serving /metrics, /health, /livez, /readyz only
  // (etcd --listen-metrics-urls).
  std::vector<std::string> metrics_addresses;
  // /version: {"etcdserver": server_version, "etcdcluster": cluster_version}.
  std::string server_version;
  std::string cluster_version;
  // How long /health and /readyz wait for the server (etcd: 1 s).
  std::chrono::milliseconds health_timeout{1000};
  // Largest request body accepted (413 above it): see GatewayMaxBodyBytes.
  size_t max_body_bytes = GatewayMaxBodyBytes(1536 * 1024);
  util::Logger logger = util::GetLogger("http");
};

// Thread-safety: Start and Shutdown from the owner; requests run on one
// thread per connection (streams block their connection's thread).
class HttpServer {
 public:
  // Binds 127.0.0.1:0 and every extra address and starts serving.
  // Unavailable when an address cannot be bound; InvalidArgument when
  // options are incomplete.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options);
  ~HttpServer();  // Shutdown()

  // The internal loopback port (127.0.0.1) every route is served on: the
  // client-port listener's http_forward_port.
  int LoopbackPort() const;
  // A second internal port with the metrics-only routes (/metrics, /health,
  // /livez, /readyz): the http_forward_port of a --listen-metrics-urls
  // listener.
  int MetricsLoopbackPort() const;
  // Bound ports of client_addresses then metrics_addresses, in order.
  const std::vector<int>& Ports() const;
  // Bytes of gateway stream responses queued for HTTP connections now (each
  // stream holds at most about kGatewayStreamQueueBytes). Any thread.
  int64_t StreamQueuedBytes() const;

  // Stops listening, ends open streams (within about a second) and waits for
  // connection threads. Idempotent.
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
// strings, bytes as base64, enums by name, zero values omitted.
std::string MessageToGatewayJson(const google::protobuf::Message& message);
// The reverse; accepts both field name styles, ignores unknown fields.
// InvalidArgument with the parser's message on malformed input.
absl::Status GatewayJsonToMessage(std::string_view json, google::protobuf::Message* message);

// grpc-gateway's HTTP status for a gRPC status code (runtime.HTTPStatusFromCode).
int HttpStatusFromGrpcCode(int grpc_code);

// grpc-gateway's error body: {"error":msg,"message":msg,"code":N}.
std::string GatewayErrorJson(int grpc_code, std::string_view message);

}  // namespace cppetcd::api

#endif  // CPPETCD_API_HTTP_SERVER_H_
