// The client listener. Descriptors here are sockets, eventfds and epoll
// (outside util::Env); the one path operation is the unlink of a unix
// socket path before bind and at close, which is the socket's name, not data.
#include "cppetcd/api/client_listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <list>
#include <optional>
#include <set>
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
#include "cppetcd/util/mutex.h"

namespace cppetcd::api {
namespace {

using Clock = std::chrono::steady_clock;

// RFC 7540 section 3.5: what a client speaking HTTP/2 with prior knowledge
// (every gRPC client) sends first.
constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
// A relay direction holds at most one read: one TLS record of plaintext.
constexpr size_t kRelayBufferBytes = 16 * 1024;
// Buffers a relay moves each way in one turn of its loop before the loop's
// other connections get theirs (16 x 16 KiB = 256 KiB).
constexpr int kPumpRounds = 16;
// How long a loop stops accepting after running out of descriptors or
// memory (accept4: EMFILE, ENFILE, ENOBUFS, ENOMEM).
constexpr std::chrono::milliseconds kAcceptPause{200};

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

// Which connection currently owns a descriptor number handed to gRPC, so a
// relay that ends late never clears the identity of a newer connection that
// got the same number (descriptor numbers are reused as soon as gRPC closes
// one). Process-wide, as descriptor numbers are.
struct FdOwners {
  util::Mutex mu;
  absl::flat_hash_map<int, uint64_t> owner ABSL_GUARDED_BY(mu);
};

FdOwners& Owners() {
  static FdOwners* owners = new FdOwners;
  return *owners;
}

std::atomic<uint64_t> next_connection_id{1};

void AssignFd(int fd, uint64_t conn, const std::optional<std::string>& cn) {
  FdOwners& o = Owners();
  util::MutexLock l(&o.mu);
  o.owner[fd] = conn;
  if (cn.has_value()) {
    SetClientCommonName(GrpcPeerForFd(fd), *cn);
  } else {
    ClearClientCommonName(GrpcPeerForFd(fd));
  }
}

void ReleaseFd(int fd, uint64_t conn) {
  FdOwners& o = Owners();
  util::MutexLock l(&o.mu);
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

}  // namespace

std::string GrpcPeerForFd(int fd) { return absl::StrCat("fd:", fd); }

// The reactor. Every accepted connection belongs to one event loop (a
// thread with its own epoll set, level-triggered, non-blocking sockets) from
// accept until it is handed off: the preface peek, the TLS handshake, the
// sniffing of the decrypted bytes and the TLS <-> socket pair relay of a
// gRPC or HTTP/1.1 connection all run as callbacks of that loop, never
// blocking. Plain connections leave the loop as sockets: to gRPC, or to
// the HTTP server (which multiplexes them itself; issue 12 item 2). Each listening socket is in every
// loop's set (EPOLLEXCLUSIVE: one loop is woken per connection), and a
// connection stays with the loop that accepted it.
class ClientListener::Impl {
 public:
  explicit Impl(ClientListenerOptions options)
      : options_(std::move(options)), logger_(options_.logger) {}

  ~Impl() { Shutdown(); }

  absl::Status Bind() {
    if (options_.urls.empty()) return absl::InvalidArgumentError("no client listen URL");
    if (options_.event_loop_threads == 0) {
      return absl::InvalidArgumentError("the client listener needs at least one event loop");
    }
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
    for (size_t i = 0; i < options_.event_loop_threads; ++i) {
      auto loop = std::make_unique<Loop>();
      loop->index = i;
      loop->epfd = ::epoll_create1(EPOLL_CLOEXEC);
      loop->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (loop->epfd < 0 || loop->wake_fd < 0) {
        const int err = errno;
        loops_.push_back(std::move(loop));
        CloseListeners();
        return absl::InternalError(absl::StrCat("epoll: ", std::strerror(err)));
      }
      loop->wake_watch = {Watch::kWake, nullptr, 0};
      Register(*loop, loop->wake_fd, &loop->wake_watch, EPOLLIN);
      loop->listener_watches.resize(listeners_.size());
      for (size_t j = 0; j < listeners_.size(); ++j) {
        loop->listener_watches[j] = {Watch::kListener, nullptr, j};
        Register(*loop, listeners_[j].fd, &loop->listener_watches[j], EPOLLIN | EPOLLEXCLUSIVE);
      }
      loops_.push_back(std::move(loop));
    }
    return absl::OkStatus();
  }

  // The loops start: connections waiting in the backlog since Bind are
  // accepted from now on.
  void Serve() {
    if (serving_ || listeners_.empty() || listeners_[0].fd < 0) return;  // or stopped
    serving_ = true;
    for (auto& loop : loops_) {
      Loop* l = loop.get();
      l->thread = std::thread([this, l] { Run(*l); });
    }
    accepting_ = true;
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
    if (accepting_) {
      accepting_ = false;
      // Each loop forgets the listening sockets before they are closed, so
      // no loop accepts on a closed (or reused) descriptor number.
      for (auto& loop : loops_) {
        Loop* l = loop.get();
        RunInLoop(*l, [this, l] {
          l->listening = false;
          l->accept_resume.reset();
          for (const Listener& li : listeners_) ::epoll_ctl(l->epfd, EPOLL_CTL_DEL, li.fd, nullptr);
        });
      }
    }
    CloseListeners();
  }

  void Shutdown() {
    StopAccepting();
    for (auto& loop : loops_) {
      if (!loop->thread.joinable()) continue;
      Loop* l = loop.get();
      Post(*l, [l] { l->stopping = true; });
      loop->thread.join();
    }
    for (auto& loop : loops_) {
      if (loop->epfd >= 0) ::close(loop->epfd);
      if (loop->wake_fd >= 0) ::close(loop->wake_fd);
      loop->epfd = loop->wake_fd = -1;
    }
  }

 private:
  struct Listener {
    int fd;
    ListenUrl url;
    int port;
  };
  struct Conn;
  // What an epoll registration stands for (its data.ptr).
  struct Watch {
    enum Kind { kListener, kWake, kClient, kGrpc } kind;
    Conn* conn;     // kClient, kGrpc
    size_t listener;  // kListener: index into listeners_
  };

  // One relay direction's bytes, read and not yet written: data[off, len).
  // At most one read's worth (kRelayBufferBytes); the memory is held only
  // while bytes are pending, so an idle connection holds none.
  struct RelayBuffer {
    std::unique_ptr<char[]> data;
    size_t off = 0, len = 0;
    bool Empty() const { return off == len; }
    char* Fill() {
      if (!data) data.reset(new char[kRelayBufferBytes]);
      off = len = 0;
      return data.get();
    }
    void ReleaseIfEmpty() {
      if (Empty() && data) {
        data.reset();
        off = len = 0;
      }
    }
  };

  enum class State {
    kPeek,       // plain: waiting for enough bytes to tell gRPC from HTTP
    kHandshake,  // TLS: SSL_accept in progress
    kSniff,      // TLS: reading decrypted bytes to tell gRPC from HTTP
    kRelay,      // TLS gRPC or HTTP: copying between the client and the socket pair
  };

  struct Loop;
  // A client connection while a loop owns it. Touched only by its loop's
  // thread.
  struct Conn {
    uint64_t id = 0;
    Loop* loop = nullptr;
    int fd = -1;  // the client's socket
    bool tls = false;
    std::string remote;
    sockaddr_storage remote_addr{};
    socklen_t remote_len = 0;
    std::string local_url;
    State state = State::kPeek;
    SSL* ssl = nullptr;
    std::optional<std::string> cn;  // verified client certificate CN
    Clock::time_point deadline{};   // end of the handshake or of sniffing
    std::optional<Clock::time_point> timer;  // its key in loop->timers
    std::string head;  // kSniff: decrypted bytes read so far
    // kRelay.
    bool http = false;      // the relay carries HTTP/1.1 (to the HTTP server)
    int grpc_fd = -1;       // our end of the socket pair
    int grpc_peer_fd = -1;  // the end handed to gRPC (its number names the peer)
    bool grpc_registered = false;  // grpc_fd is in the epoll set
    RelayBuffer up;    // client -> gRPC
    RelayBuffer down;  // gRPC -> client
    bool client_eof = false, grpc_eof = false, grpc_write_shut = false;
    bool client_gone = false;  // the client hung up: its socket left the set
    uint32_t client_events = 0, grpc_events = 0;  // registered interest
    Watch client_watch{Watch::kClient, this, 0};
    Watch grpc_watch{Watch::kGrpc, this, 0};
  };

  struct Loop {
    size_t index = 0;
    int epfd = -1;
    int wake_fd = -1;  // readable when tasks are queued
    Watch wake_watch{Watch::kWake, nullptr, 0};
    std::vector<Watch> listener_watches;
    std::thread thread;
    bool stopping = false;  // loop thread only
    // Loop thread only: the listening sockets are in the set (until
    // StopAccepting), and when accepting is paused for lack of descriptors
    // or memory, when it resumes.
    bool listening = true;
    std::optional<Clock::time_point> accept_resume;
    util::Mutex mu;
    std::vector<std::function<void()>> tasks ABSL_GUARDED_BY(mu);
    // Loop thread only: the connections it owns, their deadlines, and
    // those closed during the current batch of events (freed after it, as
    // later events of the batch may still name them).
    absl::flat_hash_map<Conn*, std::unique_ptr<Conn>> conns;
    std::set<std::pair<Clock::time_point, Conn*>> timers;
    std::vector<std::unique_ptr<Conn>> dead;
    // Loop thread only: relays that used up their turn's budget with bytes
    // still moving (by id, as the Conn may end meanwhile); pumped again
    // after the next round of events.
    std::vector<std::pair<Conn*, uint64_t>> ready;
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

  static void Register(Loop& l, int fd, Watch* w, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = w;
    ::epoll_ctl(l.epfd, EPOLL_CTL_ADD, fd, &ev);
  }

  static void Post(Loop& l, std::function<void()> task) {
    {
      util::MutexLock g(&l.mu);
      l.tasks.push_back(std::move(task));
    }
    Signal(l.wake_fd);
  }

  // Runs `f` on the loop's thread and waits for it.
  static void RunInLoop(Loop& l, std::function<void()> f) {
    if (!l.thread.joinable()) {
      f();
      return;
    }
    std::promise<void> done;
    std::future<void> waited = done.get_future();
    Post(l, [&f, &done] {
      f();
      done.set_value();
    });
    waited.wait();
  }

  // ---- The loop ----

  void Run(Loop& l) {
    constexpr int kMaxEvents = 256;
    epoll_event events[kMaxEvents];
    while (!l.stopping) {
      std::optional<Clock::time_point> wake;
      if (!l.timers.empty()) wake = l.timers.begin()->first;
      if (l.accept_resume.has_value() && (!wake || *l.accept_resume < *wake)) {
        wake = l.accept_resume;
      }
      int timeout_ms = -1;
      if (!l.ready.empty()) {
        timeout_ms = 0;  // relays are waiting for their next turn
      } else if (wake.has_value()) {
        // Rounded up: waking before the deadline would spin.
        timeout_ms = static_cast<int>(std::max<int64_t>(
            0, std::chrono::ceil<std::chrono::milliseconds>(*wake - Clock::now()).count()));
      }
      const int n = ::epoll_wait(l.epfd, events, kMaxEvents, timeout_ms);
      if (n < 0 && errno != EINTR) {
        // Only a broken epoll set (a bug) fails here; carrying on would
        // leave every connection of this loop, and Shutdown, hanging.
        logger_.Error("epoll_wait failed", {{"error", std::strerror(errno)}});
        std::abort();
      }
      for (int i = 0; i < n; ++i) {
        Watch* w = static_cast<Watch*>(events[i].data.ptr);
        const uint32_t ev = events[i].events;
        switch (w->kind) {
          case Watch::kWake: RunTasks(l); break;
          case Watch::kListener: AcceptSome(l, w->listener); break;
          case Watch::kClient:
            if (w->conn->fd >= 0) OnClientEvent(*w->conn, ev);
            break;
          case Watch::kGrpc:
            if (w->conn->fd >= 0) OnGrpcEvent(*w->conn, ev);
            break;
        }
      }
      ResumeReady(l);
      RunTimers(l);
      if (l.accept_resume.has_value() && Clock::now() >= *l.accept_resume) {
        l.accept_resume.reset();
        if (l.listening) {
          for (size_t j = 0; j < listeners_.size(); ++j) {
            Register(l, listeners_[j].fd, &l.listener_watches[j], EPOLLIN | EPOLLEXCLUSIVE);
          }
        }
      }
      l.dead.clear();
    }
    // Shutdown: every connection this loop still owns ends.
    while (!l.conns.empty()) {
      Conn* c = l.conns.begin()->first;
      if (c->state == State::kHandshake) Reject(*c, "listener stopped");
      if (c->state == State::kRelay && c->ssl != nullptr) {
        ERR_clear_error();
        SSL_shutdown(c->ssl);  // best effort close_notify
      }
      Close(*c);
    }
    l.dead.clear();
    RunTasks(l);
  }

  void RunTasks(Loop& l) {
    uint64_t count;
    ssize_t r = ::read(l.wake_fd, &count, sizeof(count));
    (void)r;
    std::vector<std::function<void()>> tasks;
    {
      util::MutexLock g(&l.mu);
      tasks.swap(l.tasks);
    }
    for (auto& t : tasks) t();
  }

  void ResumeReady(Loop& l) {
    std::vector<std::pair<Conn*, uint64_t>> ready;
    ready.swap(l.ready);
    for (const auto& [conn, id] : ready) {
      auto it = l.conns.find(conn);
      if (it == l.conns.end() || conn->id != id || conn->fd < 0) continue;
      if (conn->state == State::kRelay) Pump(*conn);
    }
  }

  void SetTimer(Conn& c, std::optional<Clock::time_point> at) {
    if (c.timer.has_value()) c.loop->timers.erase({*c.timer, &c});
    c.timer = at;
    if (at.has_value()) c.loop->timers.insert({*at, &c});
  }

  void RunTimers(Loop& l) {
    const Clock::time_point now = Clock::now();
    while (!l.timers.empty() && l.timers.begin()->first <= now) {
      Conn& c = *l.timers.begin()->second;
      SetTimer(c, std::nullopt);
      OnTimer(c, now);
    }
  }

  // ---- Connections ----

  void AcceptSome(Loop& l, size_t index) {
    const Listener& from = listeners_[index];
    // A bounded batch, so one busy listener cannot starve the loop's other
    // connections (level-triggered: the rest wake the loop again).
    for (int i = 0; i < 64; ++i) {
      sockaddr_storage ss{};
      socklen_t len = sizeof(ss);
      int fd = ::accept4(from.fd, reinterpret_cast<sockaddr*>(&ss), &len,
                         SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        const int err = errno;
        logger_.Warn("accept failed", {{"address", from.url.text},
                                       {"error", std::strerror(err)}});
        if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
          // The connection stays queued and the socket readable: pause this
          // loop's accepting (level-triggered, it would spin) and retry
          // later, as Go's accept loop backs off.
          for (const Listener& li : listeners_) ::epoll_ctl(l.epfd, EPOLL_CTL_DEL, li.fd, nullptr);
          l.accept_resume = Clock::now() + kAcceptPause;
        }
        return;
      }
      Accepted(l, fd, ss, len, from);
    }
  }

  void Accepted(Loop& l, int fd, const sockaddr_storage& ss, socklen_t ss_len,
                const Listener& from) {
    if (from.url.unix_path.empty()) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    // Claimed with a compare-and-swap: the loops accept concurrently.
    size_t live = live_.load();
    do {
      if (live >= options_.max_connections) {
        logger_.Warn("too many client connections; closing", {{"remote-addr", RemoteAddress(ss)}});
        ::close(fd);
        return;
      }
    } while (!live_.compare_exchange_weak(live, live + 1));
    auto owned = std::make_unique<Conn>();
    Conn& c = *owned;
    c.id = next_connection_id.fetch_add(1);
    c.loop = &l;
    c.fd = fd;
    c.tls = from.url.tls;
    c.remote = RemoteAddress(ss);
    c.remote_addr = ss;
    c.remote_len = ss_len;
    c.local_url = from.url.text;
    l.conns.emplace(&c, std::move(owned));
    if (c.tls) {
      c.ssl = SSL_new(ssl_ctx_->Get().get());  // the context as of this handshake
      if (c.ssl == nullptr) {
        Reject(c, util::OpenSslErrors());
        Close(c);
        return;
      }
      SSL_set_fd(c.ssl, c.fd);
      // Retries of SSL_write may come with the buffer moved; a write may
      // complete one record at a time; idle sessions give back OpenSSL's
      // read and write buffers; no renegotiation (TLS 1.2) mid-relay.
      SSL_set_mode(c.ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
      SSL_set_options(c.ssl, SSL_OP_NO_RENEGOTIATION);
      c.state = State::kHandshake;
      c.deadline = Clock::now() + options_.handshake_timeout;
      SetTimer(c, c.deadline);
      Register(l, c.fd, &c.client_watch, 0);
      Handshake(c);
      return;
    }
    if (options_.http_only) {
      HandToHttp(c);
      return;
    }
    c.state = State::kPeek;
    c.deadline = Clock::now() + options_.sniff_timeout;
    SetTimer(c, c.deadline);
    Register(l, c.fd, &c.client_watch, EPOLLIN);
    c.client_events = EPOLLIN;
    Peek(c, 0);
  }

  void SetInterest(Conn& c, bool grpc_side, uint32_t events) {
    uint32_t& current = grpc_side ? c.grpc_events : c.client_events;
    if (current == events) return;
    if (grpc_side && !c.grpc_registered) return;
    current = events;
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = grpc_side ? &c.grpc_watch : &c.client_watch;
    ::epoll_ctl(c.loop->epfd, EPOLL_CTL_MOD, grpc_side ? c.grpc_fd : c.fd, &ev);
  }

  static uint32_t EpollFor(Io io) { return io == Io::kWantWrite ? EPOLLOUT : EPOLLIN; }

  void OnClientEvent(Conn& c, uint32_t events) {
    switch (c.state) {
      case State::kPeek: Peek(c, events); break;
      case State::kHandshake: Handshake(c); break;
      case State::kSniff: Sniff(c); break;
      case State::kRelay:
        if ((events & (EPOLLERR | EPOLLHUP)) && c.http) {
          // An HTTP client is gone: the HTTP server sees its end of the
          // pair close (a write fails, a suspended request's watch sees the
          // hang-up) and cancels what the client was waiting for.
          Close(c);
          return;
        }
        if (events & (EPOLLERR | EPOLLHUP)) {
          // The client is gone (reset, or both directions shut): nothing
          // more comes from it or reaches it. The socket leaves the set (a
          // hang-up is reported for ever) and gRPC is told by the end of
          // its stream; the relay ends when gRPC closes its end, as when
          // the client closes cleanly (gRPC's transport winds down on the
          // end of stream, not on a broken pipe mid-write).
          ::epoll_ctl(c.loop->epfd, EPOLL_CTL_DEL, c.fd, nullptr);
          c.client_gone = true;
          c.client_eof = true;
        }
        Pump(c);
        break;
    }
  }

  void OnGrpcEvent(Conn& c, uint32_t events) {
    if (events & EPOLLERR) {
      Close(c);
      return;
    }
    if (events & EPOLLHUP) {
      // gRPC closed its end. What it wrote before is still to be read and
      // reads no longer block, so the socket leaves the set (a hang-up is
      // reported for ever, level-triggered) and Pump reads it to the end.
      ::epoll_ctl(c.loop->epfd, EPOLL_CTL_DEL, c.grpc_fd, nullptr);
      c.grpc_registered = false;
    }
    Pump(c);
  }

  void OnTimer(Conn& c, Clock::time_point now) {
    switch (c.state) {
      case State::kPeek:
        if (now >= c.deadline) {
          Close(c);  // sniff timeout: closed without a word, as before
          return;
        }
        SetInterest(c, false, EPOLLIN);  // a partial preface: look again
        Peek(c, 0);
        return;
      case State::kHandshake:
        Reject(c, "tls: handshake timed out");
        Close(c);
        return;
      case State::kSniff:
        Close(c);
        return;
      case State::kRelay:
        return;
    }
  }

  // Plain: peeks (the bytes stay in the socket for gRPC) until the HTTP/2
  // preface is recognised or ruled out.
  void Peek(Conn& c, uint32_t events) {
    char buf[kH2Preface.size()];
    const ssize_t n = ::recv(c.fd, buf, sizeof(buf), MSG_PEEK);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (events & (EPOLLERR | EPOLLHUP)) Close(c);
      return;
    }
    if (n <= 0) {
      Close(c);
      return;
    }
    std::optional<Protocol> p = Classify(std::string_view(buf, static_cast<size_t>(n)));
    if (!p.has_value()) {
      if (events & (EPOLLERR | EPOLLHUP)) {
        Close(c);
        return;
      }
      // A partial preface: the rest is on its way, but the socket stays
      // readable (level-triggered), so look again shortly.
      SetInterest(c, false, 0);
      SetTimer(c, std::min(c.deadline, Clock::now() + std::chrono::milliseconds(2)));
      return;
    }
    if (*p == Protocol::kHttp) {
      HandToHttp(c);  // peeked only: the request is still in the socket
      return;
    }
    // gRPC: the socket itself goes to gRPC.
    Detach(c);
    const int fd = c.fd;
    c.fd = -1;
    HandToGrpc(fd, c.id, std::nullopt);
    Close(c);
  }

  void Handshake(Conn& c) {
    ERR_clear_error();
    const int r = SSL_accept(c.ssl);
    if (r != 1) {
      const int e = SSL_get_error(c.ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        SetInterest(c, false, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
        return;
      }
      std::string error;
      const long verify = SSL_get_verify_result(c.ssl);
      if (verify != X509_V_OK) {
        error = absl::StrCat("tls: bad certificate: ", X509_verify_cert_error_string(verify));
      } else {
        error = util::OpenSslErrors();
        if (error.empty()) error = e == SSL_ERROR_SYSCALL ? "EOF" : "tls: handshake failed";
      }
      Reject(c, error);
      Close(c);
      return;
    }
    if (absl::Status st = util::CheckPeerIdentity(options_.tls, c.ssl); !st.ok()) {
      Reject(c, std::string(st.message()));
      Close(c);
      return;
    }
    if (options_.tls.client_cert_auth) c.cn = util::VerifiedPeerCommonName(c.ssl);
    if (options_.http_only) {
      StartRelay(c, /*http=*/true);
      return;
    }
    c.state = State::kSniff;
    c.deadline = Clock::now() + options_.sniff_timeout;
    SetTimer(c, c.deadline);
    Sniff(c);
  }

  // TLS: reads decrypted bytes until gRPC and HTTP can be told apart.
  void Sniff(Conn& c) {
    while (true) {
      char buf[4096];
      size_t n = 0;
      const Io io = ReadSide(Side{c.fd, c.ssl}, buf, sizeof(buf), &n);
      if (io == Io::kWantRead || io == Io::kWantWrite) {
        SetInterest(c, false, EpollFor(io));
        return;
      }
      if (io != Io::kData) {
        Close(c);
        return;
      }
      c.head.append(buf, n);
      if (std::optional<Protocol> p = Classify(c.head)) {
        StartRelay(c, /*http=*/*p == Protocol::kHttp);
        return;
      }
    }
  }

  // A TLS connection's decrypted bytes go through a socket pair, to gRPC
  // or (`http`) to the HTTP server, which then never sees the TLS session:
  // OpenSSL, CRLs, cipher suites and certificate reloads stay here.
  void StartRelay(Conn& c, bool http) {
    SetTimer(c, std::nullopt);
    if (http ? !options_.on_http_connection : !options_.on_grpc_connection) {
      Close(c);
      return;
    }
    int sv[2] = {-1, -1};
    if (absl::Status st = GrpcSocketPair(sv); !st.ok()) {
      logger_.Warn("cannot relay a TLS connection to gRPC", {{"error", st.ToString()}});
      Close(c);
      return;
    }
    SetNonBlocking(sv[0]);  // gRPC's endpoint expects a non-blocking socket
    SetNonBlocking(sv[1]);
    c.state = State::kRelay;
    c.http = http;
    c.grpc_fd = sv[1];
    c.grpc_peer_fd = sv[0];
    Register(*c.loop, c.grpc_fd, &c.grpc_watch, 0);
    c.grpc_registered = true;
    // The bytes read while sniffing (at most 4 KiB beyond the preface) go
    // first.
    std::memcpy(c.up.Fill(), c.head.data(), c.head.size());
    c.up.len = c.head.size();
    std::string().swap(c.head);
    if (http) {
      HttpPeer peer;
      peer.remote = c.remote_addr;
      peer.remote_len = c.remote_len;
      peer.tls = true;
      peer.common_name = c.cn;
      options_.on_http_connection(c.grpc_peer_fd, peer);
    } else {
      HandToGrpc(c.grpc_peer_fd, c.id, c.cn);
    }
    Pump(c);
  }

  // Moves bytes both ways until neither direction can progress without
  // waiting, then waits for exactly what would let one progress. A
  // direction reads only when its buffer is empty: a full buffer stops
  // reading its source (backpressure). One call moves at most
  // kPumpRounds buffers each way; a relay with more to move goes to the
  // back of the loop's ready list, so that a connection that streams fast
  // cannot starve the loop's others.
  void Pump(Conn& c) {
    const Side client{c.fd, c.ssl};
    const Side grpc{c.grpc_fd, nullptr};
    uint32_t client_want = 0, grpc_want = 0;
    bool progress = true;
    for (int round = 0; progress; ++round) {
      if (round == kPumpRounds) {
        c.loop->ready.emplace_back(&c, c.id);
        return;
      }
      progress = false;
      client_want = grpc_want = 0;  // the last round, without progress, decides
      // Client -> gRPC. SSL_read also returns bytes OpenSSL holds already
      // (SSL_pending), which epoll cannot see: every event pumps both ways.
      if (c.up.Empty() && !c.client_eof) {
        size_t n = 0;
        const Io io = ReadSide(client, c.up.Fill(), kRelayBufferBytes, &n);
        if (io == Io::kData) {
          c.up.len = n;
          progress = true;
        } else if (io == Io::kEof) {  // close_notify, or a FIN
          c.client_eof = true;
          progress = true;
        } else if (io == Io::kError) {
          Close(c);
          return;
        } else {
          client_want |= EpollFor(io);
        }
      }
      if (!c.up.Empty()) {
        size_t n = 0;
        const Io io = WriteSide(grpc, c.up.data.get() + c.up.off, c.up.len - c.up.off, &n);
        if (io == Io::kData) {
          c.up.off += n;
          progress = true;
        } else if (io == Io::kError || io == Io::kEof) {
          Close(c);
          return;
        } else {
          grpc_want |= EPOLLOUT;
        }
      }
      c.up.ReleaseIfEmpty();
      if (c.up.Empty() && c.client_eof && !c.grpc_write_shut) {
        ::shutdown(c.grpc_fd, SHUT_WR);  // half-close: gRPC sees the end
        c.grpc_write_shut = true;
      }
      // gRPC -> client.
      if (c.down.Empty() && !c.grpc_eof) {
        size_t n = 0;
        const Io io = ReadSide(grpc, c.down.Fill(), kRelayBufferBytes, &n);
        if (io == Io::kData) {
          c.down.len = n;
          progress = true;
        } else if (io == Io::kEof) {
          c.grpc_eof = true;
          progress = true;
        } else if (io == Io::kError) {
          Close(c);
          return;
        } else {
          grpc_want |= EPOLLIN;
        }
      }
      if (!c.down.Empty() && c.client_gone) {
        c.down.off = c.down.len;  // nobody to deliver it to
        progress = true;
      }
      if (!c.down.Empty()) {
        size_t n = 0;
        const Io io =
            WriteSide(client, c.down.data.get() + c.down.off, c.down.len - c.down.off, &n);
        if (io == Io::kData) {
          c.down.off += n;
          progress = true;
        } else if (io == Io::kError || io == Io::kEof) {
          Close(c);
          return;
        } else {
          client_want |= EpollFor(io);
        }
      }
      c.down.ReleaseIfEmpty();
    }
    if (c.grpc_eof && c.down.Empty()) {  // gRPC is done: so is the client
      if (!c.client_gone) {
        ERR_clear_error();
        SSL_shutdown(c.ssl);  // best effort close_notify
      }
      Close(c);
      return;
    }
    if (!c.grpc_registered && grpc_want != 0) {
      // gRPC hung up and a write to it would wait: it never will accept it.
      Close(c);
      return;
    }
    if (!c.client_gone) SetInterest(c, false, client_want);
    SetInterest(c, true, grpc_want);
  }

  // Takes the client socket out of the loop's epoll set and timers.
  void Detach(Conn& c) {
    SetTimer(c, std::nullopt);
    if (c.fd >= 0) ::epoll_ctl(c.loop->epfd, EPOLL_CTL_DEL, c.fd, nullptr);
  }

  // Ends a connection the loop owns; its memory is freed after the current
  // batch of events.
  void Close(Conn& c) {
    Detach(c);
    if (c.ssl != nullptr) SSL_free(c.ssl);
    c.ssl = nullptr;
    if (c.fd >= 0) ::close(c.fd);
    c.fd = -1;  // later events of this batch skip it
    if (c.grpc_fd >= 0) {
      if (c.grpc_registered) ::epoll_ctl(c.loop->epfd, EPOLL_CTL_DEL, c.grpc_fd, nullptr);
      ::close(c.grpc_fd);
      // gRPC closes its end once it sees the end of the stream; its
      // number may already belong to a newer connection (ReleaseFd checks).
      ReleaseFd(c.grpc_peer_fd, c.id);
    }
    c.grpc_fd = -1;
    live_.fetch_sub(1);
    Loop& l = *c.loop;
    auto it = l.conns.find(&c);
    if (it != l.conns.end()) {
      l.dead.push_back(std::move(it->second));
      l.conns.erase(it);
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

  void Reject(const Conn& c, std::string_view error) {
    logger_.Warn("rejected connection", {{"remote-addr", c.remote},
                                          {"local-url", c.local_url},
                                          {"error", error}});
  }

  // Hands a plain HTTP/1.1 connection's socket to the HTTP server (which
  // multiplexes its connections on its own threads); the listener forgets
  // it, as it does a plain gRPC connection.
  void HandToHttp(Conn& c) {
    Detach(c);
    const int fd = c.fd;
    c.fd = -1;
    if (options_.on_http_connection) {
      HttpPeer peer;
      peer.remote = c.remote_addr;
      peer.remote_len = c.remote_len;
      options_.on_http_connection(fd, peer);
    } else {
      ::close(fd);
    }
    Close(c);
  }

  const ClientListenerOptions options_;
  util::Logger logger_;
  std::unique_ptr<util::ReloadingServerSslContext> ssl_ctx_;
  std::vector<Listener> listeners_;
  std::vector<int> ports_;
  bool accepting_ = false;  // owning thread only
  bool serving_ = false;    // Serve was called (owning thread only)
  std::vector<std::unique_ptr<Loop>> loops_;
  // Connections accepted and not yet closed or handed over as sockets (to
  // gRPC or the HTTP server): those in the loops (<= max_connections).
  std::atomic<size_t> live_{0};
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
