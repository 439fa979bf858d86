// Who is at the other end of an HTTP/1.1 connection the client listener
// (client_listener.h) hands to the HTTP server (http_server.h) as a socket:
// the client's TCP (or unix socket) address and, when the listener
// terminated TLS for it, that it did and the verified client certificate's
// CN. A TLS connection reaches the HTTP server as one end of an AF_UNIX
// socket pair whose other end the listener relays to the TLS session, so
// the socket's own address says nothing about the client: this does.
//
// Thread-safety: a value; copy freely.
#ifndef CPPETCD_API_HTTP_CONNECTION_H_
#define CPPETCD_API_HTTP_CONNECTION_H_

#include <sys/socket.h>

#include <optional>
#include <string>

namespace cppetcd::api {

struct HttpPeer {
  // The client's address as accept(2) gave it (AF_INET, AF_INET6 or
  // AF_UNIX) and its length.
  sockaddr_storage remote{};
  socklen_t remote_len = 0;
  // True when the listener terminated TLS for this connection (etcd checks
  // the Host header of plain-text requests only: --host-whitelist).
  bool tls = false;
  // The verified client certificate's CN (--client-cert-auth); nullopt
  // without one.
  std::optional<std::string> common_name;
};

}  // namespace cppetcd::api

#endif  // CPPETCD_API_HTTP_CONNECTION_H_
