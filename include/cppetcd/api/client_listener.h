// The client port: one listening socket per --listen-client-urls entry that
// serves gRPC and HTTP/1.1 on the same port, plain (http://) or over TLS
// (https://), as etcd 3.4's embed/serve.go does with cmux. unix:// and
// unixs:// are the same over a unix domain socket whose path is the URL's
// host part, relative to the working directory ("unix://localhost:2379":
// the file "localhost:2379"); binding fails on an existing file, and the
// file is removed when the listener closes (Go's net.Listen("unix")).
//
// Per accepted connection:
// - http://: the first bytes are peeked (bounded wait). The HTTP/2 client
//   preface ("PRI * HTTP/2.0...") hands the socket itself to gRPC
//   (`on_grpc_connection`, e.g. ApiServer::AddConnection); anything else is
//   HTTP/1.1 and the socket itself, with nothing of it read, goes to
//   `on_http_connection` (e.g. HttpServer::AddConnection).
// - https://: a TLS handshake (bounded time) with the listener's
//   certificate (the context as of that handshake: certificates reload);
//   with client_cert_auth a client certificate signed by the trusted CA is
//   required, CRLs and identity checks as util::CheckPeerIdentity. Then the
//   same decision on the decrypted bytes: gRPC, or the HTTP server, gets
//   one end of an AF_UNIX socket pair and an event loop relays between it
//   and the TLS session (HTTP: with an HttpPeer naming the client, its CN
//   and tls=true). The verified certificate's CN is recorded with
//   api::SetClientCommonName under the gRPC peer string of the handed-over
//   socket (GrpcPeerForFd) while the connection lives; a descriptor number
//   reused by a later connection is re-recorded before gRPC sees it.
//   A failed handshake, a missing client certificate or plaintext on an
//   https URL closes the connection ("rejected connection", warn); there is
//   never a plaintext fallback.
// - http_only (--listen-metrics-urls, and --listen-client-http-urls): every
//   connection is HTTP; no gRPC. With --listen-client-http-urls the
//   --listen-client-urls are not served here: gRPC listens on them itself
//   (its own TLS, one descriptor per connection; cmd/run.cc).
//
// The process listens only on `urls`: no internal port carries decrypted
// traffic (issue 12), so nothing bypasses the TLS and certificate checks.
//
// Starting a listener with an https:// URL sets SIGPIPE to SIG_IGN for
// the process (OpenSSL writes with write(2)).
//
// Threads and bounds: `event_loop_threads` event loops (epoll) own every
// connection from accept until it is handed off — the peek, the TLS
// handshake, the sniffing and, for TLS connections (gRPC and HTTP), the
// relay for the connection's whole life — so thousands of connections cost
// no thread here. A relay holds at most 16 KiB per direction, and only
// while bytes are in flight (an idle connection holds no relay buffer); a
// full direction stops reading its source. When an HTTP client hangs up,
// its relay closes the pair at once (the HTTP server notices).
// At most `max_connections` connections are peeked, handshaken or relayed
// at once; more are closed at once. Plain connections handed over as
// sockets (to gRPC or the HTTP server) no longer count. Shutdown closes
// everything and joins every thread.
//
// Thread-safety: Start, Bind, Serve, Ports, BoundUrls, StopAccepting and
// Shutdown from the owning thread; `on_grpc_connection` and
// `on_http_connection` run on event-loop threads.
#ifndef CPPETCD_API_CLIENT_LISTENER_H_
#define CPPETCD_API_CLIENT_LISTENER_H_

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cppetcd/api/http_connection.h"
#include "cppetcd/util/log.h"
#include "cppetcd/util/tls.h"

namespace cppetcd::api {

struct ClientListenerOptions {
  // "http://host:port" or "https://host:port" (port 0: the OS picks one;
  // host "" or 0.0.0.0: every address; names are resolved, IPv4 first),
  // "unix://path" or "unixs://path" (TLS as https).
  std::vector<std::string> urls;
  // Certificate, key, CA and client-cert-auth for the https:// URLs
  // (required when there is one; ignored for http://).
  util::TlsInfo tls;
  // How often new handshakes look for changed certificate, key, CA and CRL
  // files (util::ReloadingServerSslContext); 0 checks at every handshake.
  std::chrono::milliseconds tls_reload_interval{1000};
  // Serve only HTTP/1.1 (no gRPC): the --listen-metrics-urls listener.
  bool http_only = false;
  // Takes ownership of a connected socket that speaks gRPC (HTTP/2 with
  // prior knowledge); must not block. Null: gRPC connections are closed.
  std::function<void(int fd)> on_grpc_connection;
  // Takes ownership of a connected, non-blocking socket that speaks
  // HTTP/1.1 (the client's own, or the HTTP end of a TLS relay's pair;
  // nothing of it read) and of serving it; `peer` names the client. Must
  // not block. Null: HTTP connections are closed.
  std::function<void(int fd, const HttpPeer& peer)> on_http_connection;
  // Upper bounds for a client to complete the TLS handshake and to send
  // enough bytes to tell gRPC from HTTP.
  std::chrono::milliseconds handshake_timeout{10000};
  std::chrono::milliseconds sniff_timeout{10000};
  // Connections peeked, handshaken or relayed at once; more are closed as
  // soon as they are accepted.
  size_t max_connections = 16384;
  // Event-loop threads that own the connections (>= 1).
  size_t event_loop_threads = 2;
  util::Logger logger = util::GetLogger("embed");
};

class ClientListener {
 public:
  // Binds every URL and starts accepting. InvalidArgument for a bad URL or
  // an https URL without certificate ("TLS key/cert (--cert-file,
  // --key-file) must be provided for client url ... with HTTPS scheme"),
  // the TLS errors of util::NewServerSslContext, Unavailable when a port
  // cannot be bound ("listen tcp 127.0.0.1:2379: bind: address already in
  // use", "listen unix localhost:2379: bind: address already in use").
  static absl::StatusOr<std::unique_ptr<ClientListener>> Start(ClientListenerOptions options);
  // Start in two steps, as etcd opens its client sockets at start-up and
  // serves them once the member is ready: Bind binds and listens on every
  // URL (Start's errors) without accepting, so a client that connects in
  // between waits in the kernel's backlog instead of being refused; Serve
  // starts accepting (the callbacks run from then on). Serve again does
  // nothing; a listener destroyed without Serve closes the waiting
  // connections.
  static absl::StatusOr<std::unique_ptr<ClientListener>> Bind(ClientListenerOptions options);
  void Serve();
  ~ClientListener();  // Shutdown()

  // The bound port of each URL, in order (0 for a unix socket).
  const std::vector<int>& Ports() const;
  // Each URL with its bound port ("https://127.0.0.1:40123"); a unix
  // socket URL as given ("unix://localhost:2379").
  std::vector<std::string> BoundUrls() const;

  // Closes the listening sockets; connections already accepted go on.
  void StopAccepting();
  // StopAccepting, then ends every relayed connection and joins all
  // threads. Idempotent.
  void Shutdown();

  class Impl;

 private:
  explicit ClientListener(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The string grpc::ServerContext::peer() gives for calls on a connection
// handed to gRPC as file descriptor `fd` (grpc::AddInsecureChannelFromFd).
std::string GrpcPeerForFd(int fd);

}  // namespace cppetcd::api

#endif  // CPPETCD_API_CLIENT_LISTENER_H_
