// idle-conns-bench: opens many idle mutual-TLS gRPC-style connections to an
// etcd v3 client URL and holds them, for measuring what idle connections
// cost a server (threads, RSS). Each connection completes a TLS handshake,
// sends the HTTP/2 client preface and an empty SETTINGS frame (what a gRPC
// client sends first), acknowledges the server's SETTINGS and then stays
// silent. Blocking handshakes one after another, on one thread (the
// reported set-up rate is sequential) or on --threads N at once.
//
//   idle-conns-bench --endpoint 127.0.0.1:2379 --cacert ca.pem
//     --cert c.pem --key c-key.pem --conns 10000 --hold-seconds 60
//
// --plain: the same without TLS, for an http:// URL.
// --http: HTTP/1.1 instead of gRPC: each connection sends one keep-alive
// "GET /version" (the JSON gateway's port) and, answered, stays open idle.
// Prints "ready <n> <seconds>" once every connection got the server's
// SETTINGS (--http: its reply), then holds them for --hold-seconds (or until killed). The
// soft RLIMIT_NOFILE is raised to the hard limit; the hard limit must exceed --conns.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <openssl/err.h>
#include <openssl/ssl.h>

namespace {

struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;
  bool settled = false;  // got the server's SETTINGS and acknowledged it
};

int Connect(const std::string& host, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  std::string endpoint = "127.0.0.1:2379", cacert, cert, key;
  size_t conns = 1000;
  int hold_seconds = 60;
  size_t threads = 1;  // --threads: connections set up by this many threads at once
  bool plain = false;  // --plain: no TLS (http:// URL)
  bool http = false;   // --http: HTTP/1.1 keep-alive connections, not gRPC
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--plain" || flag == "--http") {
      (flag == "--plain" ? plain : http) = true;
      --i;
      continue;
    }
    if (i + 1 >= argc) break;
    const std::string value = argv[i + 1];
    if (flag == "--endpoint") endpoint = value;
    else if (flag == "--cacert") cacert = value;
    else if (flag == "--cert") cert = value;
    else if (flag == "--key") key = value;
    else if (flag == "--conns") conns = std::strtoul(value.c_str(), nullptr, 10);
    else if (flag == "--hold-seconds") hold_seconds = std::atoi(value.c_str());
    else if (flag == "--threads") threads = std::max<size_t>(1, std::strtoul(value.c_str(), nullptr, 10));
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  const size_t colon = endpoint.rfind(':');
  const std::string host = endpoint.substr(0, colon);
  const int port = std::atoi(endpoint.substr(colon + 1).c_str());

  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!cacert.empty()) SSL_CTX_load_verify_locations(ctx, cacert.c_str(), nullptr);
  if (!cert.empty() && (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1 ||
                        SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1)) {
    std::fprintf(stderr, "cannot load the client certificate\n");
    return 1;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  static const unsigned char kAlpnH2[] = "\x02h2";
  static const unsigned char kAlpnHttp1[] = "\x08http/1.1";
  if (http) {
    SSL_CTX_set_alpn_protos(ctx, kAlpnHttp1, sizeof(kAlpnHttp1) - 1);
  } else {
    SSL_CTX_set_alpn_protos(ctx, kAlpnH2, sizeof(kAlpnH2) - 1);
  }
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);

  const std::string hello =
      http ? std::string("GET /version HTTP/1.1\r\nHost: ") + endpoint + "\r\n\r\n"
           : std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") +
                 std::string("\0\0\0\4\0\0\0\0\0", 9);
  const std::string settings_ack("\0\0\0\4\1\0\0\0\0", 9);
  const auto start = std::chrono::steady_clock::now();
  std::vector<Conn> all(conns);
  // --threads workers set up interleaved shares of the connections, each
  // one at a time (blocking); the first failure stops them all.
  std::atomic<bool> failed{false};
  auto setup = [&](size_t first, size_t step) {
    for (size_t i = first; i < conns && !failed.load(); i += step) {
      Conn& c = all[i];
      c.fd = Connect(host, port);
      if (c.fd < 0) {
        std::fprintf(stderr, "connect %zu: %s\n", i, std::strerror(errno));
        failed.store(true);
        return;
      }
      if (plain) {
        if (::send(c.fd, hello.data(), hello.size(), MSG_NOSIGNAL) !=
            static_cast<ssize_t>(hello.size())) {
          std::fprintf(stderr, "send %zu failed\n", i);
          failed.store(true);
          return;
        }
        continue;
      }
      c.ssl = SSL_new(ctx);
      SSL_set_fd(c.ssl, c.fd);
      SSL_set_tlsext_host_name(c.ssl, host.c_str());
      if (SSL_connect(c.ssl) != 1 ||
          SSL_write(c.ssl, hello.data(), static_cast<int>(hello.size())) <= 0) {
        std::fprintf(stderr, "handshake %zu failed\n", i);
        ERR_print_errors_fp(stderr);
        failed.store(true);
        return;
      }
    }
  };
  {
    std::vector<std::thread> workers;
    for (size_t t = 0; t < threads; ++t) workers.emplace_back(setup, t, threads);
    for (std::thread& w : workers) w.join();
  }
  if (failed.load()) return 1;
  const double setup_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Every connection answers the server's SETTINGS (bounded wait).
  size_t settled = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (settled < conns && std::chrono::steady_clock::now() < deadline) {
    std::vector<pollfd> fds;
    std::vector<size_t> which;
    for (size_t i = 0; i < conns; ++i) {
      if (all[i].settled) continue;
      fds.push_back({all[i].fd, POLLIN, 0});
      which.push_back(i);
    }
    if (::poll(fds.data(), fds.size(), 200) <= 0) continue;
    char buf[4096];
    for (size_t k = 0; k < fds.size(); ++k) {
      if (fds[k].revents == 0) continue;
      Conn& c = all[which[k]];
      if (plain ? ::recv(c.fd, buf, sizeof(buf), MSG_DONTWAIT) > 0
                : SSL_read(c.ssl, buf, sizeof(buf)) > 0) {
        if (http) {
          // The reply (a few hundred bytes) came in one read; stay idle.
        } else if (plain) {
          ::send(c.fd, settings_ack.data(), settings_ack.size(), MSG_NOSIGNAL);
        } else {
          SSL_write(c.ssl, settings_ack.data(), static_cast<int>(settings_ack.size()));
        }
        c.settled = true;
        ++settled;
      }
      ERR_clear_error();
    }
  }
  const double ready_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("setup %zu %.2f\nready %zu %.2f\n", conns, setup_s, settled, ready_s);
  std::fflush(stdout);
  if (settled < conns) return 1;
  std::this_thread::sleep_for(std::chrono::seconds(hold_seconds));
  for (Conn& c : all) {
    if (c.ssl != nullptr) SSL_free(c.ssl);
    ::close(c.fd);
  }
  SSL_CTX_free(ctx);
  return 0;
}
