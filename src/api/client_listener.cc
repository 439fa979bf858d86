#include "cppetcd/api/client_listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <list>
#include <mutex>
#include <optional>
#include <thread>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cppetcd/api/client_identity.h"
#include "cppetcd/api/http_connection.h"

namespace cppetcd::api {
namespace {

using Clock = std::chrono::steady_clock;

// RFC 7540 section 3.5: what a client speaking HTTP/2 with prior knowledge
// (every gRPC client) sends first.
constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr size_t kRelayBufferBytes = 64 * 1024;

struct ListenUrl {
  std::string text;
  bool tls = false;
  std::string host;
  int port = 0;
  // unix:// and unixs://: the socket's path, the URL's whole host part
  // ("unix://localhost:2379" listens on the file "localhost:2379" in the
  // working directory, as etcd 3.4); empty for TCP.
  std::string unix_path;
};

absl::StatusOr<ListenUrl> ParseListenUrl(const std::string& url) {
  ListenUrl out;
  out.text = url;
  std::string rest;
  if (absl::StartsWith(url, "http://")) {
    rest = url.substr(7);
  } else if (absl::StartsWith(url, "https://")) {
    rest = url.substr(8);
    out.tls = true;
  } else if (absl::StartsWith(url, "unix://") || absl::StartsWith(url, "unixs://")) {
    out.tls = absl::StartsWith(url, "unixs://");
    out.unix_path = url.substr(out.tls ? 8 : 7);
    if (!out.unix_path.empty() && out.unix_path.back() == '/') out.unix_path.pop_back();
    if (out.unix_path.empty() || out.unix_path.size() >= sizeof(sockaddr_un{}.sun_path)) {
      return absl::InvalidArgumentError(absl::StrCat("invalid unix socket URL: ", url));
    }
    return out;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("URL scheme must be http, https, unix or unixs: ", url));
  }
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  std::string port_text;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      return absl::InvalidArgumentError(absl::StrCat("URL address must be host:port: ", url));
    }
    out.host = rest.substr(1, close - 1);
    port_text = rest.substr(close + 2);
  } else {
    size_t colon = rest.rfind(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("URL address must be host:port: ", url));
    }
    out.host = rest.substr(0, colon);
    port_text = rest.substr(colon + 1);
  }
  if (!absl::SimpleAtoi(port_text, &out.port) || out.port < 0 || out.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("URL has an invalid port: ", url));
  }
  return out;
}

std::string GoErrno(int err) {
  std::string text = std::strerror(err);
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(text[0]));
  return text;
}

// etcd 3.4's client listener for unix://: Go's net.Listen("unix", path),
// which fails on an existing file and removes the file when closed.
absl::StatusOr<int> ListenUnix(const std::string& path) {
  const std::string what = absl::StrCat("listen unix ", path);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());  // size checked by the parser
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(absl::StrCat(what, ": socket: ", GoErrno(errno)));
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd, 1024) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::UnavailableError(absl::StrCat(what, ": bind: ", GoErrno(err)));
  }
  return fd;
}

// Binds and listens; sets *port to the bound port (0 for a unix socket).
absl::StatusOr<int> Listen(const ListenUrl& url, int* port) {
  if (!url.unix_path.empty()) {
    *port = 0;
    return ListenUnix(url.unix_path);
  }
  const std::string what = absl::StrCat("listen tcp ", url.host, ":", url.port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string port_text = std::to_string(url.port);
  const bool any = url.host.empty() || url.host == "::";
  int rc = ::getaddrinfo(any ? nullptr : url.host.c_str(), port_text.c_str(), &hints, &res);
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat(what, ": lookup ", url.host, ": ", gai_strerror(rc)));
  }
  // IPv6 wildcard (dual stack) for an empty host, else IPv4 first (Go's
  // net.Listen on "localhost:2379" listens on 127.0.0.1).
  addrinfo* pick = nullptr;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    if (any ? ai->ai_family == AF_INET6 : ai->ai_family == AF_INET) {
      pick = ai;
      break;
    }
  }
  if (pick == nullptr) pick = res;
  int fd = ::socket(pick->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    const int err = errno;
    ::freeaddrinfo(res);
    return absl::UnavailableError(absl::StrCat(what, ": socket: ", GoErrno(err)));
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (pick->ai_family == AF_INET6 && any) {
    int zero = 0;
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  }
  if (::bind(fd, pick->ai_addr, pick->ai_addrlen) != 0 || ::listen(fd, 1024) != 0) {
    const int err = errno;
    ::close(fd);
    ::freeaddrinfo(res);
    return absl::UnavailableError(absl::StrCat(what, ": bind: ", GoErrno(err)));
  }
  ::freeaddrinfo(res);
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  *port = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                   : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return fd;
}

std::string RemoteAddress(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    return absl::StrCat(host, ":", ntohs(in->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    return absl::StrCat("[", host, "]:", ntohs(in6->sin6_port));
  }
  return "unknown";
}

void SetNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL, 0);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

// Which connection currently owns a descriptor number handed to gRPC, so a
// relay that ends late never clears the identity of a newer connection that
// got the same number (descriptor numbers are reused as soon as gRPC closes
// one). Process-wide, as descriptor numbers are.
struct FdOwners {
  std::mutex mu;
  absl::flat_hash_map<int, uint64_t> owner ABSL_GUARDED_BY(mu);
};

FdOwners& Owners() {
  static FdOwners* owners = new FdOwners;
  return *owners;
}

std::atomic<uint64_t> next_connection_id{1};

void AssignFd(int fd, uint64_t conn, const std::optional<std::string>& cn) {
  FdOwners& o = Owners();
  std::lock_guard<std::mutex> l(o.mu);
  o.owner[fd] = conn;
  if (cn.has_value()) {
    SetClientCommonName(GrpcPeerForFd(fd), *cn);
  } else {
    ClearClientCommonName(GrpcPeerForFd(fd));
  }
}

void ReleaseFd(int fd, uint64_t conn) {
  FdOwners& o = Owners();
  std::lock_guard<std::mutex> l(o.mu);
  auto it = o.owner.find(fd);
  if (it == o.owner.end() || it->second != conn) return;
  o.owner.erase(it);
  ClearClientCommonName(GrpcPeerForFd(fd));
}

// A connected pair of AF_UNIX stream sockets for a decrypted gRPC
// connection: sv[0] for gRPC, sv[1] for the relay. Nothing listens: no
// other process can reach either end.
absl::Status GrpcSocketPair(int sv[2]) {
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return absl::InternalError(absl::StrCat("socketpair: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

enum class Protocol { kGrpc, kHttp, kClosed };

// gRPC when `data` starts with the HTTP/2 preface; nullopt while it is a
// proper prefix of it (more bytes needed).
std::optional<Protocol> Classify(std::string_view data) {
  const size_t n = std::min(data.size(), kH2Preface.size());
  if (data.substr(0, n) != kH2Preface.substr(0, n)) return Protocol::kHttp;
  if (n == kH2Preface.size()) return Protocol::kGrpc;
  return std::nullopt;
}

// One side of a relay: a TLS session over a socket, or a plain socket.
struct Side {
  int fd = -1;
  SSL* ssl = nullptr;
};

enum class Io { kData, kEof, kWantRead, kWantWrite, kError };

Io ReadSide(const Side& s, char* buf, size_t cap, size_t* n) {
  if (s.ssl != nullptr) {
    ERR_clear_error();
    int r = SSL_read(s.ssl, buf, static_cast<int>(cap));
    if (r > 0) {
      *n = static_cast<size_t>(r);
      return Io::kData;
    }
    switch (SSL_get_error(s.ssl, r)) {
      case SSL_ERROR_WANT_READ: return Io::kWantRead;
      case SSL_ERROR_WANT_WRITE: return Io::kWantWrite;
      case SSL_ERROR_ZERO_RETURN: return Io::kEof;
      default: return Io::kError;
    }
  }
  while (true) {
    ssize_t r = ::recv(s.fd, buf, cap, 0);
    if (r > 0) {
      *n = static_cast<size_t>(r);
      return Io::kData;
    }
    if (r == 0) return Io::kEof;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::kWantRead;
    return Io::kError;
  }
}

Io WriteSide(const Side& s, const char* buf, size_t len, size_t* n) {
  if (s.ssl != nullptr) {
    ERR_clear_error();
    int r = SSL_write(s.ssl, buf, static_cast<int>(std::min<size_t>(len, 1 << 20)));
    if (r > 0) {
      *n = static_cast<size_t>(r);
      return Io::kData;
    }
    switch (SSL_get_error(s.ssl, r)) {
      case SSL_ERROR_WANT_READ: return Io::kWantRead;
      case SSL_ERROR_WANT_WRITE: return Io::kWantWrite;
      default: return Io::kError;
    }
  }
  while (true) {
    ssize_t r = ::send(s.fd, buf, len, MSG_NOSIGNAL);
    if (r >= 0) {
      *n = static_cast<size_t>(r);
      return Io::kData;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::kWantWrite;
    return Io::kError;
  }
}

short EventsFor(Io io) { return io == Io::kWantWrite ? POLLOUT : POLLIN; }

// One direction of a relay: bytes read from `from` and not yet written to
// `to` are pending[off, size).
struct Flow {
  const Side& from;
  const Side& to;
  std::string pending;
  size_t off = 0;
  bool eof = false;  // `from` has no more bytes

  bool Drained() const { return off == pending.size(); }

  // Reads from `from` when nothing is pending, then writes what is pending
  // to `to`, without blocking. Sets *progress when bytes moved or EOF was
  // seen, and adds the poll events each side waits for. False on an error.
  bool Step(std::string& buf, bool* progress, short* from_events, short* to_events) {
    if (Drained() && !eof) {
      size_t n = 0;
      Io io = ReadSide(from, buf.data(), buf.size(), &n);
      if (io == Io::kData) {
        pending.assign(buf.data(), n);
        off = 0;
        *progress = true;
      } else if (io == Io::kEof) {
        eof = true;
        *progress = true;
      } else if (io == Io::kError) {
        return false;
      } else {
        *from_events |= EventsFor(io);
      }
    }
    if (!Drained()) {
      size_t n = 0;
      Io io = WriteSide(to, pending.data() + off, pending.size() - off, &n);
      if (io == Io::kData) {
        off += n;
        *progress = true;
      } else if (io == Io::kError) {
        return false;
      } else {
        *to_events |= EventsFor(io);
      }
    }
    return true;
  }
};

// Copies bytes both ways between `a` (the client) and `b` (gRPC's end of a
// socket pair) until `b` is done, `a` is gone, or `stop_fd`
// becomes readable. `a_to_b` is sent to b first (bytes already read from a).
// Both sockets must be non-blocking.
void RelayLoop(const Side& a, const Side& b, std::string a_to_b, int stop_fd) {
  Flow up{a, b, std::move(a_to_b)};
  Flow down{b, a, {}};
  bool b_write_shut = false, failed = false;
  std::string buf(kRelayBufferBytes, '\0');
  while (!failed) {
    short a_events = 0, b_events = 0;
    bool progress = true;
    while (progress && !failed) {
      progress = false;
      if (!up.Step(buf, &progress, &a_events, &b_events)) {
        failed = true;
        break;
      }
      if (up.eof && up.Drained() && !b_write_shut) {
        ::shutdown(b.fd, SHUT_WR);
        b_write_shut = true;
      }
      if (!down.Step(buf, &progress, &b_events, &a_events)) {
        failed = true;
        break;
      }
    }
    if (failed) break;
    if (down.eof && down.Drained()) break;  // the server side is done
    pollfd fds[3] = {{a.fd, a_events, 0}, {b.fd, b_events, 0}, {stop_fd, POLLIN, 0}};
    int r = ::poll(fds, 3, -1);
    if (r < 0 && errno != EINTR) break;
    if (fds[2].revents != 0) break;
    // Errors and hang-ups surface through the next read or write.
  }
  if (a.ssl != nullptr && !failed) {
    ERR_clear_error();
    SSL_shutdown(a.ssl);  // best effort close_notify
  }
}

// A client connection as the HTTP server reads it: `head` (bytes already
// read while telling gRPC from HTTP) first, then the socket or TLS session.
// Every wait also ends when `stop_fd` (the listener's) becomes readable.
class ListenerHttpConnection final : public HttpConnection {
 public:
  ListenerHttpConnection(const Side& client, std::string head, int stop_fd,
                         const sockaddr_storage& remote, const sockaddr_storage& local)
      : client_(client), head_(std::move(head)), stop_fd_(stop_fd) {
    SplitAddress(remote, &remote_ip_, &remote_port_);
    SplitAddress(local, &local_ip_, &local_port_);
  }

  ssize_t Read(char* buf, size_t size, Clock::time_point deadline, int cancel_fd) override {
    if (head_off_ < head_.size()) {
      const size_t n = std::min(size, head_.size() - head_off_);
      std::memcpy(buf, head_.data() + head_off_, n);
      head_off_ += n;
      return static_cast<ssize_t>(n);
    }
    while (true) {
      size_t n = 0;
      const Io io = ReadSide(client_, buf, size, &n);
      if (io == Io::kData) return static_cast<ssize_t>(n);
      if (io == Io::kEof) return 0;
      if (io == Io::kError || !Wait(EventsFor(io), deadline, cancel_fd)) return -1;
    }
  }

  ssize_t Write(const char* buf, size_t size, Clock::time_point deadline, int cancel_fd) override {
    while (true) {
      size_t n = 0;
      const Io io = WriteSide(client_, buf, size, &n);
      if (io == Io::kData) return static_cast<ssize_t>(n);
      if (io == Io::kError || io == Io::kEof || !Wait(EventsFor(io), deadline, cancel_fd)) {
        return -1;
      }
    }
  }

  bool Tls() const override { return client_.ssl != nullptr; }

  bool PeerAlive() override {
    pollfd p{client_.fd, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) <= 0) return true;
    if (p.revents & (POLLERR | POLLHUP | POLLRDHUP)) return false;
    char c;
    return ::recv(client_.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) != 0;
  }

  void RemoteAddress(std::string* ip, int* port) const override {
    *ip = remote_ip_;
    *port = remote_port_;
  }
  void LocalAddress(std::string* ip, int* port) const override {
    *ip = local_ip_;
    *port = local_port_;
  }

 private:
  static void SplitAddress(const sockaddr_storage& ss, std::string* ip, int* port) {
    char host[INET6_ADDRSTRLEN] = {0};
    if (ss.ss_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
      inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
      *port = ntohs(in->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
      inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
      *port = ntohs(in6->sin6_port);
    }
    *ip = host;
  }

  // Until the socket is ready for `events` (true), the deadline, or a stop.
  bool Wait(short events, Clock::time_point deadline, int cancel_fd) {
    pollfd fds[3] = {{client_.fd, events, 0}, {stop_fd_, POLLIN, 0}, {cancel_fd, POLLIN, 0}};
    const nfds_t n = cancel_fd >= 0 ? 3 : 2;
    while (true) {
      const int r = ::poll(fds, n, RemainingMs(deadline));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0 || fds[1].revents != 0 || (n == 3 && fds[2].revents != 0)) return false;
      return true;
    }
  }

  const Side client_;
  const std::string head_;
  size_t head_off_ = 0;  // head_[head_off_, size) not yet read
  const int stop_fd_;
  std::string remote_ip_, local_ip_;
  int remote_port_ = 0, local_port_ = 0;
};

}  // namespace

std::string GrpcPeerForFd(int fd) { return absl::StrCat("fd:", fd); }

class ClientListener::Impl {
 public:
  explicit Impl(ClientListenerOptions options)
      : options_(std::move(options)), logger_(options_.logger) {}

  ~Impl() { Shutdown(); }

  absl::Status Bind() {
    if (options_.urls.empty()) return absl::InvalidArgumentError("no client listen URL");
    std::vector<ListenUrl> urls;
    bool any_tls = false;
    for (const std::string& u : options_.urls) {
      absl::StatusOr<ListenUrl> p = ParseListenUrl(u);
      if (!p.ok()) return p.status();
      if (p->tls && options_.tls.Empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("TLS key/cert (--cert-file, --key-file) must be provided for client url ",
                         u, " with HTTPS scheme"));
      }
      any_tls = any_tls || p->tls;
      urls.push_back(*p);
    }
    if (any_tls) {
      // OpenSSL writes to sockets with write(2): a client gone mid-write
      // must be an error, not a SIGPIPE that kills the process.
      ::signal(SIGPIPE, SIG_IGN);
      // Rebuilt when the files change (etcd rereads them for new
      // handshakes): certificates rotate without a restart.
      absl::StatusOr<std::unique_ptr<util::ReloadingServerSslContext>> ctx =
          util::ReloadingServerSslContext::Create(
              options_.tls, [](ssl_ctx_st* c) { SSL_CTX_set_options(c, SSL_OP_IGNORE_UNEXPECTED_EOF); },
              options_.tls_reload_interval);
      if (!ctx.ok()) return ctx.status();
      ssl_ctx_ = *std::move(ctx);
    }
    stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    accept_stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd_ < 0 || accept_stop_fd_ < 0) {
      return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));
    }
    for (const ListenUrl& u : urls) {
      int port = 0;
      absl::StatusOr<int> fd = Listen(u, &port);
      if (!fd.ok()) {
        CloseListeners();
        return fd.status();
      }
      SetNonBlocking(*fd);
      listeners_.push_back({*fd, u, port});
      ports_.push_back(port);
    }
    return absl::OkStatus();
  }

  void Serve() {
    if (serving_ || listeners_.empty() || listeners_[0].fd < 0) return;  // or stopped
    serving_ = true;
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }

  const std::vector<int>& Ports() const { return ports_; }

  std::vector<std::string> BoundUrls() const {
    std::vector<std::string> out;
    for (const Listener& l : listeners_) {
      if (!l.url.unix_path.empty()) {
        out.push_back(absl::StrCat(l.url.tls ? "unixs://" : "unix://", l.url.unix_path));
        continue;
      }
      const bool v6 = l.url.host.find(':') != std::string::npos;
      out.push_back(absl::StrCat(l.url.tls ? "https://" : "http://", v6 ? "[" : "", l.url.host,
                                 v6 ? "]" : "", ":", l.port));
    }
    return out;
  }

  void StopAccepting() {
    if (accept_thread_.joinable()) {
      Signal(accept_stop_fd_);
      accept_thread_.join();
    }
    CloseListeners();
  }

  void Shutdown() {
    StopAccepting();
    if (stop_fd_ >= 0) Signal(stop_fd_);
    std::list<std::unique_ptr<Connection>> conns;
    {
      std::lock_guard<std::mutex> l(mu_);
      conns.swap(conns_);
    }
    for (auto& c : conns) {
      if (c->thread.joinable()) c->thread.join();
    }
    if (stop_fd_ >= 0) ::close(stop_fd_);
    if (accept_stop_fd_ >= 0) ::close(accept_stop_fd_);
    stop_fd_ = accept_stop_fd_ = -1;
  }

 private:
  struct Listener {
    int fd;
    ListenUrl url;
    int port;
  };
  struct Connection {
    uint64_t id = 0;
    int fd = -1;
    bool tls = false;
    std::string remote;
    sockaddr_storage remote_addr{};
    sockaddr_storage local_addr{};
    std::string local_url;
    std::thread thread;
    std::atomic<bool> done{false};
  };

  static void Signal(int efd) {
    uint64_t one = 1;
    ssize_t r = ::write(efd, &one, sizeof(one));
    (void)r;
  }

  void CloseListeners() {
    for (Listener& l : listeners_) {
      if (l.fd < 0) continue;
      // A unix socket's file goes with its listener (Go's UnixListener).
      if (!l.url.unix_path.empty()) ::unlink(l.url.unix_path.c_str());
      ::close(l.fd);
      l.fd = -1;
    }
  }

  void Reap() {
    std::list<std::unique_ptr<Connection>> finished;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (auto it = conns_.begin(); it != conns_.end();) {
        if ((*it)->done.load()) {
          finished.push_back(std::move(*it));
          it = conns_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& c : finished) c->thread.join();
  }

  void AcceptLoop() {
    std::vector<pollfd> fds;
    for (const Listener& l : listeners_) fds.push_back({l.fd, POLLIN, 0});
    fds.push_back({accept_stop_fd_, POLLIN, 0});
    while (true) {
      for (pollfd& p : fds) p.revents = 0;
      int r = ::poll(fds.data(), fds.size(), 1000);
      Reap();
      if (r < 0 && errno != EINTR) break;
      if (fds.back().revents != 0) break;
      for (size_t i = 0; i + 1 < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        while (true) {
          sockaddr_storage ss{};
          socklen_t len = sizeof(ss);
          int fd = ::accept4(fds[i].fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
          if (fd < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
              logger_.Warn("accept failed", {{"address", listeners_[i].url.text},
                                             {"error", std::strerror(errno)}});
            }
            break;
          }
          Accepted(fd, ss, listeners_[i]);
        }
      }
    }
  }

  void Accepted(int fd, const sockaddr_storage& ss, const Listener& from) {
    if (from.url.unix_path.empty()) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    auto conn = std::make_unique<Connection>();
    conn->id = next_connection_id.fetch_add(1);
    conn->fd = fd;
    conn->tls = from.url.tls;
    conn->remote = RemoteAddress(ss);
    conn->remote_addr = ss;
    socklen_t local_len = sizeof(conn->local_addr);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&conn->local_addr), &local_len);
    conn->local_url = from.url.text;
    std::lock_guard<std::mutex> l(mu_);
    if (conns_.size() >= options_.max_connections) {
      logger_.Warn("too many client connections; closing", {{"remote-addr", conn->remote}});
      ::close(fd);
      return;
    }
    Connection* c = conn.get();
    conns_.push_back(std::move(conn));
    c->thread = std::thread([this, c] {
      Serve(c);
      c->done.store(true);
    });
  }

  // Waits until `fd` is ready for `events`, the deadline passes (false) or
  // the listener stops (false).
  bool WaitFor(int fd, short events, Clock::time_point deadline) {
    pollfd fds[2] = {{fd, events, 0}, {stop_fd_, POLLIN, 0}};
    while (true) {
      int r = ::poll(fds, 2, RemainingMs(deadline));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0 || fds[1].revents != 0) return false;
      return true;
    }
  }

  void Reject(const Connection* c, std::string_view error) {
    logger_.Warn("rejected connection", {{"remote-addr", c->remote},
                                          {"local-url", c->local_url},
                                          {"error", error}});
  }

  void Serve(Connection* c) {
    SetNonBlocking(c->fd);
    if (c->tls) {
      ServeTls(c);
    } else {
      ServePlain(c);
    }
    if (c->fd >= 0) ::close(c->fd);
    c->fd = -1;
  }

  void ServePlain(Connection* c) {
    if (options_.http_only) {
      ServeHttp(c, Side{c->fd, nullptr}, "");
      return;
    }
    // Peek (the bytes stay in the socket for gRPC) until the preface is
    // recognised or ruled out.
    const Clock::time_point deadline = Clock::now() + options_.sniff_timeout;
    Protocol protocol = Protocol::kClosed;
    char buf[kH2Preface.size()];
    while (true) {
      if (!WaitFor(c->fd, POLLIN, deadline)) break;
      ssize_t n = ::recv(c->fd, buf, sizeof(buf), MSG_PEEK);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) break;
      std::optional<Protocol> p = Classify(std::string_view(buf, static_cast<size_t>(n)));
      if (p.has_value()) {
        protocol = *p;
        break;
      }
      // A partial preface: the rest is on its way (poll would report the
      // same bytes again at once, so pause briefly).
      pollfd stop = {stop_fd_, POLLIN, 0};
      if (::poll(&stop, 1, 2) != 0) break;
    }
    if (protocol == Protocol::kGrpc) {
      HandToGrpc(c->fd, c->id, std::nullopt);
      c->fd = -1;
    } else if (protocol == Protocol::kHttp) {
      ServeHttp(c, Side{c->fd, nullptr}, "");
    }
  }

  void HandToGrpc(int fd, uint64_t conn_id, const std::optional<std::string>& cn) {
    if (!options_.on_grpc_connection) {
      ::close(fd);
      return;
    }
    AssignFd(fd, conn_id, cn);
    options_.on_grpc_connection(fd);
  }

  void ServeTls(Connection* c) {
    SSL* ssl = SSL_new(ssl_ctx_->Get().get());
    if (ssl == nullptr) {
      Reject(c, util::OpenSslErrors());
      return;
    }
    SSL_set_fd(ssl, c->fd);
    const Clock::time_point deadline = Clock::now() + options_.handshake_timeout;
    bool ok = false;
    std::string error;
    while (true) {
      ERR_clear_error();
      int r = SSL_accept(ssl);
      if (r == 1) {
        ok = true;
        break;
      }
      int e = SSL_get_error(ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (WaitFor(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) continue;
        error = Clock::now() >= deadline ? "tls: handshake timed out" : "listener stopped";
        break;
      }
      const long verify = SSL_get_verify_result(ssl);
      if (verify != X509_V_OK) {
        error = absl::StrCat("tls: bad certificate: ", X509_verify_cert_error_string(verify));
      } else {
        error = util::OpenSslErrors();
        if (error.empty()) error = e == SSL_ERROR_SYSCALL ? "EOF" : "tls: handshake failed";
      }
      break;
    }
    if (ok) {
      if (absl::Status st = util::CheckPeerIdentity(options_.tls, ssl); !st.ok()) {
        ok = false;
        error = std::string(st.message());
      }
    }
    if (!ok) {
      Reject(c, error);
      SSL_free(ssl);
      return;
    }
    const std::optional<std::string> cn =
        options_.tls.client_cert_auth ? util::VerifiedPeerCommonName(ssl) : std::nullopt;
    const Side client{c->fd, ssl};
    if (options_.http_only) {
      ServeHttp(c, client, "");
    } else {
      // Read decrypted bytes until gRPC and HTTP can be told apart.
      std::string head;
      Protocol protocol = Protocol::kClosed;
      const Clock::time_point sniff_deadline = Clock::now() + options_.sniff_timeout;
      while (true) {
        char buf[4096];
        size_t n = 0;
        Io io = ReadSide(client, buf, sizeof(buf), &n);
        if (io == Io::kData) {
          head.append(buf, n);
          if (std::optional<Protocol> p = Classify(head)) {
            protocol = *p;
            break;
          }
          continue;
        }
        if (io == Io::kWantRead || io == Io::kWantWrite) {
          if (WaitFor(c->fd, EventsFor(io), sniff_deadline)) continue;
        }
        break;
      }
      if (protocol == Protocol::kGrpc) {
        RelayGrpc(c, client, std::move(head), cn);
      } else if (protocol == Protocol::kHttp) {
        ServeHttp(c, client, std::move(head));
      }
    }
    SSL_free(ssl);
  }

  void RelayGrpc(Connection* c, const Side& client, std::string head,
                 const std::optional<std::string>& cn) {
    if (!options_.on_grpc_connection) return;
    int sv[2] = {-1, -1};
    if (absl::Status st = GrpcSocketPair(sv); !st.ok()) {
      logger_.Warn("cannot relay a TLS connection to gRPC", {{"error", st.ToString()}});
      return;
    }
    const int grpc_end = sv[0];
    const int our_end = sv[1];
    SetNonBlocking(our_end);
    SetNonBlocking(grpc_end);  // gRPC's endpoint expects a non-blocking socket
    HandToGrpc(grpc_end, c->id, cn);
    RelayLoop(client, Side{our_end, nullptr}, std::move(head), stop_fd_);
    ::close(our_end);
    // gRPC closes grpc_end once it sees the end of the stream; its number
    // may already belong to a newer connection (ReleaseFd checks).
    ReleaseFd(grpc_end, c->id);
  }

  // Hands the connection to the HTTP server, which serves it on this
  // thread until it ends.
  void ServeHttp(Connection* c, const Side& client, std::string head) {
    if (!options_.on_http_connection) return;
    ListenerHttpConnection conn(client, std::move(head), stop_fd_, c->remote_addr, c->local_addr);
    options_.on_http_connection(conn);
    if (client.ssl != nullptr) {
      ERR_clear_error();
      SSL_shutdown(client.ssl);  // best effort close_notify
    }
  }

  const ClientListenerOptions options_;
  util::Logger logger_;
  std::unique_ptr<util::ReloadingServerSslContext> ssl_ctx_;
  std::vector<Listener> listeners_;
  std::vector<int> ports_;
  int stop_fd_ = -1;         // readable once Shutdown starts: every thread ends
  int accept_stop_fd_ = -1;  // readable once StopAccepting starts
  bool serving_ = false;  // Serve was called (owning thread only)
  std::thread accept_thread_;
  std::mutex mu_;
  std::list<std::unique_ptr<Connection>> conns_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<ClientListener>> ClientListener::Bind(
    ClientListenerOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  if (absl::Status st = impl->Bind(); !st.ok()) return st;
  return std::unique_ptr<ClientListener>(new ClientListener(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<ClientListener>> ClientListener::Start(
    ClientListenerOptions options) {
  absl::StatusOr<std::unique_ptr<ClientListener>> l = Bind(std::move(options));
  if (l.ok()) (*l)->Serve();
  return l;
}

void ClientListener::Serve() { impl_->Serve(); }

ClientListener::ClientListener(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ClientListener::~ClientListener() { impl_->Shutdown(); }
const std::vector<int>& ClientListener::Ports() const { return impl_->Ports(); }
std::vector<std::string> ClientListener::BoundUrls() const { return impl_->BoundUrls(); }
void ClientListener::StopAccepting() { impl_->StopAccepting(); }
void ClientListener::Shutdown() { impl_->Shutdown(); }

}  // namespace cppetcd::api
