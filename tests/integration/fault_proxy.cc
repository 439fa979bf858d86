#include "fault_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace cppetcd::integration {
namespace {

constexpr size_t kMaxPending = 1 << 20;  // stop reading a side past this backlog

void SetNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Closes with an RST instead of a FIN.
void ResetClose(int fd) {
  if (fd < 0) return;
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  ::close(fd);
}

int ConnectLoopback(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  // Blocking connect: on loopback it completes or is refused at once.
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  SetNonBlocking(fd);
  return fd;
}

// Inodes of the sockets process `pid` holds open.
std::set<uint64_t> SocketInodes(pid_t pid) {
  std::set<uint64_t> out;
  std::error_code ec;
  std::filesystem::directory_iterator it(
      std::filesystem::path("/proc") / std::to_string(pid) / "fd", ec);
  if (ec) return out;
  for (int n = 0; it != std::filesystem::directory_iterator() && n < 100000;
       it.increment(ec), ++n) {
    if (ec) break;
    std::error_code lec;
    std::string target = std::filesystem::read_symlink(it->path(), lec).string();
    if (lec || target.rfind("socket:[", 0) != 0) continue;
    out.insert(std::strtoull(target.c_str() + 8, nullptr, 10));
  }
  return out;
}

// Inode of the IPv4 socket whose local port is `local_port` and remote
// port `remote_port` (both on loopback), from /proc/net/tcp; 0 if none.
uint64_t TcpInode(int local_port, int remote_port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // header
  for (int n = 0; n < 1000000 && std::getline(in, line); ++n) {
    std::istringstream fields(line);
    std::string slot, local, remote, st, queues, timer, retr, uid, timeout;
    uint64_t inode = 0;
    fields >> slot >> local >> remote >> st >> queues >> timer >> retr >> uid >> timeout >> inode;
    auto port_of = [](const std::string& addr) {
      auto colon = addr.find(':');
      return colon == std::string::npos
                 ? -1
                 : static_cast<int>(std::strtol(addr.c_str() + colon + 1, nullptr, 16));
    };
    if (port_of(local) == local_port && port_of(remote) == remote_port) return inode;
  }
  return 0;
}

// One proxied connection: `down` was accepted, `up` goes to the target
// (-1 while blackholed from the start).
struct Conn {
  int down = -1;
  int up = -1;
  std::string to_up;    // read from down, not yet written to up
  std::string to_down;  // read from up, not yet written to down
  // Chunks held back by SetDelay: (due time, bytes), due times ascending.
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::string>> delayed_up;
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::string>> delayed_down;
  size_t delayed_up_bytes = 0;
  size_t delayed_down_bytes = 0;
  bool down_eof = false;
  bool up_eof = false;
  bool blackholed = false;
  bool dead = false;
  int source_port = 0;  // the dialer's port
};

void CloseConn(Conn& c, bool reset) {
  if (reset) {
    ResetClose(c.down);
    ResetClose(c.up);
  } else {
    if (c.down >= 0) ::close(c.down);
    if (c.up >= 0) ::close(c.up);
  }
  c.down = c.up = -1;
  c.dead = true;
}

// Reads what is available on `fd`; appends it to `out` unless `drop`.
// Returns bytes read, 0 on EOF, -1 on error, -2 if nothing was available.
ssize_t ReadSome(int fd, std::string* out, bool drop) {
  char buf[65536];
  ssize_t n = ::read(fd, buf, sizeof(buf));
  if (n < 0) return (errno == EAGAIN || errno == EINTR) ? -2 : -1;
  if (n > 0 && !drop) out->append(buf, static_cast<size_t>(n));
  return n;
}

// Writes as much of `pending` as the socket takes; false on error.
bool Flush(int fd, std::string* pending) {
  if (pending->empty()) return true;
  ssize_t n = ::send(fd, pending->data(), pending->size(), MSG_NOSIGNAL);
  if (n < 0) return errno == EAGAIN || errno == EINTR;
  pending->erase(0, static_cast<size_t>(n));
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FaultProxy>> FaultProxy::Start(int target_port) {
  std::unique_ptr<FaultProxy> p(new FaultProxy());
  p->target_port_ = target_port;
  p->listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (p->listen_fd_ < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  int one = 1;
  ::setsockopt(p->listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(p->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(p->listen_fd_, 128) != 0 ||
      ::getsockname(p->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return absl::InternalError(absl::StrCat("proxy listen: ", std::strerror(errno)));
  }
  SetNonBlocking(p->listen_fd_);
  p->port_ = ntohs(addr.sin_port);
  if (::pipe2(p->wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  p->thread_ = std::thread([raw = p.get()] { raw->Loop(); });
  return p;
}

FaultProxy::~FaultProxy() {
  stop_.store(true);
  if (wake_pipe_[1] >= 0) {
    char c = 1;
    ssize_t ignored = ::write(wake_pipe_[1], &c, 1);
    (void)ignored;
  }
  if (thread_.joinable()) thread_.join();
  for (int fd : {listen_fd_, wake_pipe_[0], wake_pipe_[1]}) {
    if (fd >= 0) ::close(fd);
  }
}

void FaultProxy::SetBlockedSources(std::vector<pid_t> pids) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    blocked_ = std::move(pids);
    ++mode_epoch_;
  }
  char c = 1;
  ssize_t ignored = ::write(wake_pipe_[1], &c, 1);
  (void)ignored;
}

void FaultProxy::SetMode(Mode mode) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    mode_ = mode;
    ++mode_epoch_;
  }
  char c = 1;
  ssize_t ignored = ::write(wake_pipe_[1], &c, 1);
  (void)ignored;
}

void FaultProxy::SetDelay(std::chrono::milliseconds delay, std::chrono::milliseconds jitter) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    delay_ = std::max(delay, std::chrono::milliseconds(0));
    jitter_ = std::max(jitter, std::chrono::milliseconds(0));
  }
  char c = 1;
  ssize_t ignored = ::write(wake_pipe_[1], &c, 1);
  (void)ignored;
}

void FaultProxy::SetResetPerMille(int per_mille) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    reset_per_mille_ = std::clamp(per_mille, 0, 1000);
  }
  char c = 1;
  ssize_t ignored = ::write(wake_pipe_[1], &c, 1);
  (void)ignored;
}

FaultProxy::Mode FaultProxy::mode() const {
  std::lock_guard<std::mutex> lock(mu_);
  return mode_;
}

void FaultProxy::Loop() {
  std::vector<Conn> conns;
  Mode mode = Mode::kPass;
  std::vector<pid_t> blocked;
  uint64_t epoch = 0;
  std::chrono::milliseconds delay{0}, jitter{0};
  int reset_per_mille = 0;
  std::mt19937_64 rng(static_cast<uint64_t>(port_) * 7919 + 1);
  using SteadyClock = std::chrono::steady_clock;
  // Moves a chunk just read into the connection's outgoing buffer, or into
  // its delay queue when a delay is set.
  auto take = [&](std::string* pending, std::string* chunk,
                  std::deque<std::pair<SteadyClock::time_point, std::string>>* delayed,
                  size_t* delayed_bytes) {
    if (chunk->empty()) return;
    if (delay.count() == 0 && jitter.count() == 0 && delayed->empty()) {
      pending->append(*chunk);
    } else {
      const int64_t extra = jitter.count() > 0 ? static_cast<int64_t>(rng() % (jitter.count() + 1)) : 0;
      SteadyClock::time_point due = SteadyClock::now() + delay + std::chrono::milliseconds(extra);
      if (!delayed->empty()) due = std::max(due, delayed->back().first);  // keep the order
      *delayed_bytes += chunk->size();
      delayed->emplace_back(due, std::move(*chunk));
    }
    chunk->clear();
  };
  auto release = [&](std::string* pending,
                     std::deque<std::pair<SteadyClock::time_point, std::string>>* delayed,
                     size_t* delayed_bytes, SteadyClock::time_point now) {
    for (int k = 0; k < 100000 && !delayed->empty() && delayed->front().first <= now; ++k) {
      *delayed_bytes -= delayed->front().second.size();
      pending->append(delayed->front().second);
      delayed->pop_front();
    }
  };
  // True if connection `c` was dialed by one of the blocked processes.
  auto from_blocked = [&](const Conn& c) {
    if (blocked.empty()) return false;
    const uint64_t inode = TcpInode(c.source_port, port_);
    if (inode == 0) return false;
    for (pid_t pid : blocked) {
      if (SocketInodes(pid).count(inode) != 0) return true;
    }
    return false;
  };
  // Bounded only by stop_: the proxy lives as long as its test needs it,
  // and every poll() below has a 100 ms timeout.
  while (!stop_.load()) {
    Mode new_mode;
    uint64_t new_epoch;
    {
      std::lock_guard<std::mutex> lock(mu_);
      new_mode = mode_;
      new_epoch = mode_epoch_;
      if (new_epoch != epoch) blocked = blocked_;
      delay = delay_;
      jitter = jitter_;
      reset_per_mille = reset_per_mille_;
    }
    if (new_epoch != epoch) {
      for (Conn& c : conns) {
        const bool cut = new_mode == Mode::kBlackhole || from_blocked(c);
        if (new_mode == Mode::kReset || (c.blackholed && !cut)) {
          CloseConn(c, /*reset=*/true);
        } else if (cut) {
          c.blackholed = true;
          c.to_up.clear();
          c.to_down.clear();
          c.delayed_up.clear();
          c.delayed_down.clear();
          c.delayed_up_bytes = c.delayed_down_bytes = 0;
        }
      }
      mode = new_mode;
      epoch = new_epoch;
    }
    std::erase_if(conns, [](const Conn& c) { return c.dead; });

    // Release delayed chunks that are due; poll no longer than the next one.
    const SteadyClock::time_point now = SteadyClock::now();
    int timeout_ms = 100;
    for (Conn& c : conns) {
      release(&c.to_up, &c.delayed_up, &c.delayed_up_bytes, now);
      release(&c.to_down, &c.delayed_down, &c.delayed_down_bytes, now);
      for (const auto* q : {&c.delayed_up, &c.delayed_down}) {
        if (q->empty()) continue;
        const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(q->front().first - now);
        timeout_ms = std::clamp(static_cast<int>(wait.count()) + 1, 1, timeout_ms);
      }
    }

    std::vector<pollfd> fds;
    fds.push_back({wake_pipe_[0], POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    for (const Conn& c : conns) {
      short down_ev = 0, up_ev = 0;
      if (!c.down_eof && (c.blackholed || c.to_up.size() + c.delayed_up_bytes < kMaxPending)) {
        down_ev |= POLLIN;
      }
      if (!c.to_down.empty()) down_ev |= POLLOUT;
      if (!c.up_eof && (c.blackholed || c.to_down.size() + c.delayed_down_bytes < kMaxPending)) {
        up_ev |= POLLIN;
      }
      if (!c.to_up.empty()) up_ev |= POLLOUT;
      fds.push_back({c.down, down_ev, 0});
      fds.push_back({c.up, up_ev, 0});  // fd -1 is ignored by poll
    }
    int pr = ::poll(fds.data(), fds.size(), timeout_ms);
    if (pr <= 0) continue;
    if (fds[0].revents != 0) {
      char buf[64];
      while (::read(wake_pipe_[0], buf, sizeof(buf)) > 0) {
      }
      // A delay set while we polled applies to the bytes read below.
      std::lock_guard<std::mutex> lock(mu_);
      delay = delay_;
      jitter = jitter_;
      reset_per_mille = reset_per_mille_;
    }
    for (size_t i = 0; i < conns.size(); ++i) {
      Conn& c = conns[i];
      const short dre = fds[2 + 2 * i].revents;
      const short ure = c.up >= 0 ? fds[3 + 2 * i].revents : 0;
      bool failed = false;
      bool lossy = false;
      std::string chunk;
      if (dre & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t n = ReadSome(c.down, &chunk, c.blackholed);
        if (n > 0 && c.blackholed) dropped_.fetch_add(n);
        if (n > 0 && !c.blackholed && reset_per_mille > 0 &&
            static_cast<int>(rng() % 1000) < reset_per_mille) {
          lossy = true;
        }
        take(&c.to_up, &chunk, &c.delayed_up, &c.delayed_up_bytes);
        if (n == 0) c.down_eof = true;
        if (n == -1) failed = true;
      }
      if (!failed && c.up >= 0 && (ure & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t n = ReadSome(c.up, &chunk, c.blackholed);
        if (n > 0 && c.blackholed) dropped_.fetch_add(n);
        if (n > 0 && !c.blackholed && reset_per_mille > 0 &&
            static_cast<int>(rng() % 1000) < reset_per_mille) {
          lossy = true;
        }
        take(&c.to_down, &chunk, &c.delayed_down, &c.delayed_down_bytes);
        if (n == 0) c.up_eof = true;
        if (n == -1) failed = true;
      }
      if (lossy && !failed) {
        lossy_resets_.fetch_add(1);
        failed = true;
      }
      if (failed) {
        CloseConn(c, /*reset=*/true);
        continue;
      }
      if (c.blackholed) {
        // Kept open until a side closes it, so peers see silence, not errors.
        if (c.down_eof || c.up_eof) CloseConn(c, /*reset=*/false);
        continue;
      }
      if (!Flush(c.up, &c.to_up) || !Flush(c.down, &c.to_down)) {
        CloseConn(c, /*reset=*/true);
        continue;
      }
      // Half-close forwarding: once one side ended and its bytes are
      // delivered, end the other direction too.
      if (c.down_eof && c.to_up.empty() && c.delayed_up.empty()) ::shutdown(c.up, SHUT_WR);
      if (c.up_eof && c.to_down.empty() && c.delayed_down.empty()) ::shutdown(c.down, SHUT_WR);
      if (c.down_eof && c.up_eof && c.to_up.empty() && c.to_down.empty() &&
          c.delayed_up.empty() && c.delayed_down.empty()) {
        CloseConn(c, /*reset=*/false);
      }
    }
    if (fds[1].revents & POLLIN) {
      for (int k = 0; k < 64; ++k) {
        sockaddr_in from{};
        socklen_t from_len = sizeof(from);
        int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&from), &from_len,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        accepted_.fetch_add(1);
        if (mode == Mode::kReset) {
          ResetClose(fd);
          continue;
        }
        Conn c;
        c.down = fd;
        c.source_port = ntohs(from.sin_port);
        if (mode == Mode::kBlackhole || from_blocked(c)) {
          c.blackholed = true;
        } else {
          c.up = ConnectLoopback(target_port_);
          if (c.up < 0) {
            ResetClose(fd);
            continue;
          }
        }
        conns.push_back(std::move(c));
      }
    }
  }
  for (Conn& c : conns) CloseConn(c, /*reset=*/true);
}

}  // namespace cppetcd::integration
