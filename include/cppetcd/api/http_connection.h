// One client connection that carries HTTP/1.1, as the client listener
// (client_listener.h) hands it to the HTTP server (http_server.h): a plain
// TCP socket, or a TLS session the listener terminated (the client
// certificate, if any, verified in its handshake). The HTTP server reads
// the requests and writes the responses on the listener's connection
// thread, so the decrypted bytes never pass through another socket and the
// process listens on nothing but the configured URLs (issue 12).
//
// Thread-safety: one thread at a time (the connection's).
#ifndef CPPETCD_API_HTTP_CONNECTION_H_
#define CPPETCD_API_HTTP_CONNECTION_H_

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <string>

namespace cppetcd::api {

class HttpConnection {
 public:
  using Clock = std::chrono::steady_clock;
  virtual ~HttpConnection() = default;

  // Reads 1..size bytes into `buf`, waiting until `deadline` for some.
  // Returns the count; 0 at the end of the stream; -1 on an error, at the
  // deadline, when the listener shuts down, or once `cancel_fd` (an eventfd
  // or pipe; -1: none) is readable.
  virtual ssize_t Read(char* buf, size_t size, Clock::time_point deadline, int cancel_fd) = 0;
  // Writes 1..size bytes of `buf`; the count, or -1 as Read.
  virtual ssize_t Write(const char* buf, size_t size, Clock::time_point deadline,
                        int cancel_fd) = 0;
  // False once the client has closed or reset the connection. Never waits.
  virtual bool PeerAlive() = 0;
  // True when the listener terminated TLS for this connection (etcd checks
  // the Host header of plain-text requests only: --host-whitelist).
  virtual bool Tls() const = 0;
  // The TCP connection's addresses: the client's, and ours (IP text, port).
  virtual void RemoteAddress(std::string* ip, int* port) const = 0;
  virtual void LocalAddress(std::string* ip, int* port) const = 0;
};

}  // namespace cppetcd::api

#endif  // CPPETCD_API_HTTP_CONNECTION_H_
