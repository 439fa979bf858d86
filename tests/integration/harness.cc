#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

extern char** environ;

namespace cppetcd::integration {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string GetEnv(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

// The inherited environment with `overrides` ("NAME=value") applied.
std::vector<std::string> BuildEnv(const std::vector<std::string>& overrides) {
  std::vector<std::string> out;
  auto overridden = [&](const std::string& entry) {
    const std::string name = entry.substr(0, entry.find('='));
    for (const auto& o : overrides) {
      if (o.substr(0, o.find('=')) == name) return true;
    }
    return false;
  };
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    if (!overridden(entry)) out.push_back(std::move(entry));
  }
  for (const auto& o : overrides) out.push_back(o);
  return out;
}

std::vector<char*> CStrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Tail(const std::string& s, size_t n) {
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

// Fills `r` from a wait status.
void DecodeWaitStatus(int status, CommandResult* r) {
  if (WIFEXITED(status)) {
    r->exit_code = WEXITSTATUS(status);
    r->term_signal = 0;
  } else if (WIFSIGNALED(status)) {
    r->exit_code = -1;
    r->term_signal = WTERMSIG(status);
  }
}

// Waits for `pid` up to `timeout`; true and `r` filled if it was reaped.
bool WaitPidFor(pid_t pid, milliseconds timeout, CommandResult* r) {
  const auto deadline = Clock::now() + timeout;
  for (int i = 0; i < 100000; ++i) {
    int status = 0;
    pid_t got = ::waitpid(pid, &status, WNOHANG);
    if (got == pid) {
      DecodeWaitStatus(status, r);
      return true;
    }
    if (got < 0 && errno != EINTR) return true;  // not our child any more
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return false;
}

void KillAndReap(pid_t pid, CommandResult* r) {
  ::kill(pid, SIGKILL);
  CommandResult ignored;
  WaitPidFor(pid, std::chrono::seconds(10), r != nullptr ? r : &ignored);
}

// Starts argv[0] (absolute path) with `env` as its whole environment and
// the given descriptors as stdin/stdout/stderr, in its own process group.
// The child gets SIGKILL if the test process dies (PR_SET_PDEATHSIG), so a
// test killed by CTest's timeout leaves no server behind. Only
// async-signal-safe calls run between fork and exec. Call from a thread that
// outlives the child: the death signal follows the forking thread.
absl::StatusOr<pid_t> SpawnChild(std::vector<std::string> argv, std::vector<std::string> env,
                            int in_fd, int out_fd, int err_fd) {
  auto cargs = CStrings(argv);
  auto cenv = CStrings(env);
  const pid_t parent = ::getpid();
  int status_pipe[2];  // carries errno of a failed exec; closed on success
  if (::pipe2(status_pipe, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    ::close(status_pipe[0]);
    ::close(status_pipe[1]);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(e)));
  }
  if (pid == 0) {
    ::signal(SIGPIPE, SIG_DFL);  // the harness ignores it; children get the default
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    if (::dup2(in_fd, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0) ::_exit(127);
    ::execve(cargs[0], cargs.data(), cenv.data());
    int e = errno;
    ssize_t ignored = ::write(status_pipe[1], &e, sizeof(e));
    (void)ignored;
    ::_exit(127);
  }
  ::close(status_pipe[1]);
  int child_errno = 0;
  ssize_t n = -1;
  for (int i = 0; i < 100; ++i) {
    n = ::read(status_pipe[0], &child_errno, sizeof(child_errno));
    if (n >= 0 || errno != EINTR) break;
  }
  ::close(status_pipe[0]);
  if (n == static_cast<ssize_t>(sizeof(child_errno))) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return absl::InternalError(
        absl::StrCat("exec ", argv[0], ": ", std::strerror(child_errno)));
  }
  return pid;
}

// Opens `path` for the child's use (not inherited by other children).
int OpenForChild(const std::string& path, int flags) {
  return ::open(path.c_str(), flags | O_CLOEXEC, 0644);
}

}  // namespace

std::string ServerBinary() {
  std::string env = GetEnv("CPPETCD_TEST_SERVER");
  if (!env.empty()) return env;
#ifdef CPPETCD_DEFAULT_SERVER
  return CPPETCD_DEFAULT_SERVER;
#else
  return "";
#endif
}

std::string CrashTestServerBinary() {
#ifdef CPPETCD_CRASHTEST_SERVER
  return CPPETCD_CRASHTEST_SERVER;
#else
  return "";
#endif
}

bool IsReferenceEtcd(const std::string& binary) {
  return std::filesystem::path(binary).filename() == "etcd";
}

std::string EtcdctlBinary() {
  std::string env = GetEnv("CPPETCD_TEST_ETCDCTL");
  return env.empty() ? "/usr/bin/etcdctl" : env;
}

std::string ReferenceEtcdBinary() {
  std::string env = GetEnv("CPPETCD_TEST_ETCD");
  return env.empty() ? "/usr/bin/etcd" : env;
}

namespace {

// Binds 127.0.0.1:`port` (0: the kernel picks) and releases it; the bound port.
absl::StatusOr<int> BindAndRelease(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int e = errno;
    ::close(fd);
    return absl::InternalError(absl::StrCat("bind: ", std::strerror(e)));
  }
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int e = errno;
    ::close(fd);
    return absl::InternalError(absl::StrCat("getsockname: ", std::strerror(e)));
  }
  ::close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

// The first port of the kernel's ephemeral range (ports it gives to
// outgoing connections and to binds of port 0).
int EphemeralLow() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int lo = 0, hi = 0;
  if (in >> lo >> hi && lo > 0) return lo;
  return 32768;
}

}  // namespace

absl::StatusOr<int> PickFreePort() {
  // Below the ephemeral range: a port from it, released by a killed member,
  // can be taken by any outgoing connection on the machine (another test's
  // client, a peer of the same cluster) before the member restarts on it,
  // and the restart then fails with "address already in use". A port below
  // the range is only ever taken by an explicit bind.
  constexpr int kLow = 10000;
  const int high = EphemeralLow();
  if (high - kLow >= 1000) {
    static std::mutex mu;
    static std::mt19937 rng(std::random_device{}() ^ static_cast<unsigned>(::getpid()));
    for (int tries = 0; tries < 200; ++tries) {
      int port;
      {
        std::lock_guard<std::mutex> l(mu);
        port = kLow + static_cast<int>(rng() % static_cast<unsigned>(high - kLow));
      }
      auto p = BindAndRelease(port);
      if (p.ok()) return p;
    }
  }
  return BindAndRelease(0);
}

TempDir::TempDir() {
  std::string base = GetEnv("TMPDIR");
  if (base.empty()) base = "/tmp";
  std::string tmpl = base + "/cppetcd-integ-XXXXXX";
  char* made = ::mkdtemp(tmpl.data());
  if (made == nullptr) {
    ADD_FAILURE() << "mkdtemp(" << tmpl << "): " << std::strerror(errno);
    return;
  }
  path_ = made;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  if (!GetEnv("CPPETCD_TEST_KEEP_TMP").empty()) {
    std::cerr << "keeping " << path_ << "\n";
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& stdin_data,
                         const std::vector<std::string>& env, milliseconds timeout) {
  // A child that exits before reading all its stdin must not kill the test
  // with SIGPIPE; write() then fails with EPIPE instead.
  static std::once_flag ignore_sigpipe;
  std::call_once(ignore_sigpipe, [] { ::signal(SIGPIPE, SIG_IGN); });
  CommandResult r;
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) != 0 || ::pipe2(out_pipe, O_CLOEXEC) != 0 ||
      ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    r.err = absl::StrCat("pipe: ", std::strerror(errno));
    return r;
  }
  auto spawned = SpawnChild(argv, BuildEnv(env), in_pipe[0], out_pipe[1], err_pipe[1]);
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (!spawned.ok()) {
    ::close(in_pipe[1]);
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    r.err = std::string(spawned.status().message());
    return r;
  }
  const pid_t pid = *spawned;

  // Feed stdin and drain stdout/stderr until both close or the deadline.
  ::fcntl(in_pipe[1], F_SETFL, O_NONBLOCK);
  size_t written = 0;
  int in_fd = in_pipe[1];
  if (stdin_data.empty()) {
    ::close(in_fd);
    in_fd = -1;
  }
  int out_fd = out_pipe[0], err_fd = err_pipe[0];
  const auto deadline = Clock::now() + timeout;
  char buf[65536];
  for (int iter = 0; iter < 10'000'000 && (out_fd >= 0 || err_fd >= 0); ++iter) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      r.timed_out = true;
      break;
    }
    pollfd fds[3];
    int n = 0;
    if (out_fd >= 0) fds[n++] = {out_fd, POLLIN, 0};
    if (err_fd >= 0) fds[n++] = {err_fd, POLLIN, 0};
    if (in_fd >= 0) fds[n++] = {in_fd, POLLOUT, 0};
    int pr = ::poll(fds, n, static_cast<int>(std::min<int64_t>(left, 100)));
    if (pr < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == in_fd) {
        ssize_t w = ::write(in_fd, stdin_data.data() + written, stdin_data.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        if (w < 0 && errno != EAGAIN && errno != EINTR) written = stdin_data.size();
        if (written >= stdin_data.size()) {
          ::close(in_fd);
          in_fd = -1;
        }
        continue;
      }
      ssize_t got = ::read(fds[i].fd, buf, sizeof(buf));
      if (got > 0) {
        (fds[i].fd == out_fd ? r.out : r.err).append(buf, static_cast<size_t>(got));
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        if (fds[i].fd == out_fd) {
          ::close(out_fd);
          out_fd = -1;
        } else {
          ::close(err_fd);
          err_fd = -1;
        }
      }
    }
  }
  if (in_fd >= 0) ::close(in_fd);
  if (out_fd >= 0) ::close(out_fd);
  if (err_fd >= 0) ::close(err_fd);
  if (r.timed_out) {
    ::kill(pid, SIGKILL);
  }
  if (!WaitPidFor(pid, r.timed_out ? milliseconds(10000) : timeout, &r)) {
    r.timed_out = true;
    KillAndReap(pid, &r);
  }
  return r;
}

CommandResult Etcdctl(const std::string& endpoint, const std::vector<std::string>& args,
                      const std::string& stdin_data, milliseconds timeout) {
  std::vector<std::string> argv = {EtcdctlBinary(), "--endpoints", endpoint,
                                   absl::StrCat("--command-timeout=",
                                                std::max<int64_t>(1, timeout.count() / 1000 - 2),
                                                "s")};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, stdin_data, {"ETCDCTL_API=3"}, timeout);
}

std::string StripClientLogLines(const std::string& err) {
  std::string out;
  std::istringstream in(err);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("{\"level\":", 0) == 0) continue;
    out += line;
    out += '\n';
  }
  return out;
}

absl::StatusOr<std::unique_ptr<BackgroundCommand>> BackgroundCommand::Start(
    const std::vector<std::string>& argv, const std::vector<std::string>& env,
    const std::string& output_dir) {
  static std::atomic<int> counter{0};
  std::unique_ptr<BackgroundCommand> cmd(new BackgroundCommand());
  int n = counter.fetch_add(1);
  cmd->out_path_ = absl::StrCat(output_dir, "/bg-", n, ".out");
  cmd->err_path_ = absl::StrCat(output_dir, "/bg-", n, ".err");
  int in_fd = OpenForChild("/dev/null", O_RDONLY);
  int out_fd = OpenForChild(cmd->out_path_, O_WRONLY | O_CREAT | O_TRUNC);
  int err_fd = OpenForChild(cmd->err_path_, O_WRONLY | O_CREAT | O_TRUNC);
  absl::StatusOr<pid_t> spawned = absl::InternalError(absl::StrCat("open: ", std::strerror(errno)));
  if (in_fd >= 0 && out_fd >= 0 && err_fd >= 0) {
    spawned = SpawnChild(argv, BuildEnv(env), in_fd, out_fd, err_fd);
  }
  for (int fd : {in_fd, out_fd, err_fd}) {
    if (fd >= 0) ::close(fd);
  }
  if (!spawned.ok()) return spawned.status();
  cmd->pid_ = *spawned;
  return cmd;
}

BackgroundCommand::~BackgroundCommand() { Kill(); }

void BackgroundCommand::Kill() {
  if (pid_ <= 0) return;
  KillAndReap(pid_, nullptr);
  pid_ = -1;
}

std::string BackgroundCommand::Stdout() const { return ReadFile(out_path_); }
std::string BackgroundCommand::Stderr() const { return ReadFile(err_path_); }

bool BackgroundCommand::WaitForStdout(const std::function<bool(const std::string&)>& pred,
                                      milliseconds timeout) {
  return PollUntil([&] { return pred(Stdout()); }, timeout);
}

absl::StatusOr<std::unique_ptr<BackgroundCommand>> StartEtcdctl(
    const std::string& endpoint, const std::vector<std::string>& args,
    const std::string& output_dir) {
  std::vector<std::string> argv = {EtcdctlBinary(), "--endpoints", endpoint};
  argv.insert(argv.end(), args.begin(), args.end());
  return BackgroundCommand::Start(argv, {"ETCDCTL_API=3"}, output_dir);
}

bool PollUntil(const std::function<bool()>& cond, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (int i = 0; i < 1'000'000; ++i) {
    if (cond()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return false;
}

absl::Status WaitForServing(const std::string& endpoint, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  grpc::Status last;
  for (int i = 0; i < 100000; ++i) {
    // A fresh channel per attempt: a channel that failed to connect waits
    // out gRPC's reconnect backoff (1 s and growing) before trying again.
    grpc::ChannelArguments args;
    args.SetInt("cppetcd.integration.attempt", i);
    auto kv = etcdserverpb::KV::NewStub(
        grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + milliseconds(1000));
    etcdserverpb::RangeRequest req;
    req.set_key("health");
    etcdserverpb::RangeResponse resp;
    last = kv->Range(&ctx, req, &resp);
    if (last.ok()) return absl::OkStatus();
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat("server at ", endpoint, " not serving: ",
                                                  last.error_code(), " ", last.error_message()));
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(Options options) {
  if (options.binary.empty()) options.binary = ServerBinary();
  if (options.binary.empty()) return absl::FailedPreconditionError("no server binary");
  if (options.data_dir.empty()) return absl::InvalidArgumentError("data_dir is required");
  if (options.log_path.empty()) {
    options.log_path =
        (std::filesystem::path(options.data_dir).parent_path() / (options.name + ".log")).string();
  }
  std::unique_ptr<ServerProcess> p(new ServerProcess(std::move(options)));
  absl::Status last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto client = PickFreePort();
    auto peer = PickFreePort();
    if (!client.ok()) return client.status();
    if (!peer.ok()) return peer.status();
    if (*client == *peer) continue;
    p->client_port_ = *client;
    p->peer_port_ = *peer;
    // A failed first attempt may have left a half-initialised data dir.
    if (attempt > 0) {
      std::error_code ec;
      std::filesystem::remove_all(p->options_.data_dir, ec);
    }
    last = p->Spawn();
    if (!last.ok()) return last;
    last = p->WaitReady();
    if (last.ok()) return p;
    if (p->running()) {
      // Still running but never became ready: not a port clash.
      p->Kill();
      return absl::DeadlineExceededError(
          absl::StrCat(last.message(), "\nserver log tail:\n", Tail(p->ReadLog(), 4000)));
    }
  }
  return absl::UnavailableError(
      absl::StrCat("server did not start: ", last.message(), "\nserver log tail:\n",
                   Tail(p->ReadLog(), 4000)));
}

absl::Status ServerProcess::Spawn() {
  const std::string client_url = absl::StrCat("http://127.0.0.1:", client_port_);
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_port_);
  std::vector<std::string> args = {
      options_.binary,
      "--name",
      options_.name,
      "--data-dir",
      options_.data_dir,
      "--listen-client-urls",
      client_url,
      "--advertise-client-urls",
      client_url,
      "--listen-peer-urls",
      peer_url,
      "--initial-advertise-peer-urls",
      peer_url,
      "--initial-cluster",
      absl::StrCat(options_.name, "=", peer_url),
  };
  args.insert(args.end(), options_.extra_flags.begin(), options_.extra_flags.end());

  {
    std::ofstream log(options_.log_path, std::ios::app);
    log << "=== harness: starting";
    for (const auto& a : args) log << ' ' << a;
    log << "\n";
  }
  int in_fd = OpenForChild("/dev/null", O_RDONLY);
  int log_fd = OpenForChild(options_.log_path, O_WRONLY | O_CREAT | O_APPEND);
  absl::StatusOr<pid_t> spawned = absl::InternalError(absl::StrCat("open: ", std::strerror(errno)));
  if (in_fd >= 0 && log_fd >= 0) spawned = SpawnChild(args, BuildEnv({}), in_fd, log_fd, log_fd);
  for (int fd : {in_fd, log_fd}) {
    if (fd >= 0) ::close(fd);
  }
  if (!spawned.ok()) return spawned.status();
  pid_ = *spawned;
  return absl::OkStatus();
}

std::optional<CommandResult> ServerProcess::ReapIfExited() {
  if (pid_ <= 0) return std::nullopt;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    CommandResult r;
    DecodeWaitStatus(status, &r);
    pid_ = -1;
    return r;
  }
  return std::nullopt;
}

absl::Status ServerProcess::WaitReady() {
  const auto deadline = Clock::now() + options_.ready_timeout;
  grpc::Status last;
  for (int i = 0; i < 100000; ++i) {
    auto kv = etcdserverpb::KV::NewStub(NewChannel());  // fresh: see WaitForServing
    if (auto exited = ReapIfExited()) {
      return absl::UnavailableError(absl::StrCat("server exited before it was ready (exit code ",
                                                 exited->exit_code, ", signal ",
                                                 exited->term_signal, ")"));
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + milliseconds(1000));
    last = grpc::Status::OK;
    if (!options_.ready_user.empty()) {
      // Auth is on: a linearizable read needs a token, and Authenticate
      // itself goes through the log (etcd 3.4), so it proves readiness too.
      auto auth = etcdserverpb::Auth::NewStub(NewChannel());
      grpc::ClientContext auth_ctx;
      auth_ctx.set_deadline(std::chrono::system_clock::now() + milliseconds(1000));
      etcdserverpb::AuthenticateRequest areq;
      areq.set_name(options_.ready_user);
      areq.set_password(options_.ready_password);
      etcdserverpb::AuthenticateResponse aresp;
      last = auth->Authenticate(&auth_ctx, areq, &aresp);
      if (last.ok()) ctx.AddMetadata("token", aresp.token());
    }
    if (last.ok()) {
      etcdserverpb::RangeRequest req;
      req.set_key("health");
      etcdserverpb::RangeResponse resp;
      last = kv->Range(&ctx, req, &resp);
      if (last.ok()) return absl::OkStatus();
    }
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat("server not ready after ",
                                                  options_.ready_timeout.count(), " ms: ",
                                                  last.error_code(), " ", last.error_message()));
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) Terminate(std::chrono::seconds(10));
  if (::testing::Test::HasFailure()) {
    std::cerr << "---- server log (" << options_.log_path << "), last 8000 bytes ----\n"
              << Tail(ReadLog(), 8000) << "\n---- end of server log ----\n";
  }
}

std::string ServerProcess::ClientEndpoint() const {
  return absl::StrCat("127.0.0.1:", client_port_);
}

std::shared_ptr<grpc::Channel> ServerProcess::NewChannel() const {
  static std::atomic<int> counter{0};
  grpc::ChannelArguments args;
  // A distinct argument keeps gRPC from sharing one connection between
  // channels, so that each channel is its own client connection.
  args.SetInt("cppetcd.integration.channel", counter.fetch_add(1));
  args.SetMaxReceiveMessageSize(-1);
  return grpc::CreateCustomChannel(ClientEndpoint(), grpc::InsecureChannelCredentials(), args);
}

void ServerProcess::Kill() {
  if (pid_ <= 0) return;
  KillAndReap(pid_, nullptr);
  pid_ = -1;
}

CommandResult ServerProcess::Terminate(milliseconds timeout) {
  CommandResult r;
  if (pid_ <= 0) return r;
  ::kill(pid_, SIGTERM);
  if (!WaitPidFor(pid_, timeout, &r)) {
    r.timed_out = true;
    KillAndReap(pid_, &r);
  }
  pid_ = -1;
  return r;
}

absl::Status ServerProcess::Restart() {
  if (running()) return absl::FailedPreconditionError("server still running");
  absl::Status s = Spawn();
  if (!s.ok()) return s;
  s = WaitReady();
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat(s.message(), "\nserver log tail:\n",
                                               Tail(ReadLog(), 4000)));
  }
  return absl::OkStatus();
}

std::string ServerProcess::ReadLog() const { return ReadFile(options_.log_path); }

int64_t ServerProcess::PeakRssKib() const {
  if (pid_ <= 0) return -1;
  std::ifstream in(absl::StrCat("/proc/", pid_, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

std::string NormalizeIds(const std::string& s) {
  static const std::regex kId("\\b[0-9a-f]{16}\\b");
  return std::regex_replace(s, kId, "<ID>");
}

std::vector<std::string> SplitLines(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < s.size()) {
    size_t nl = s.find('\n', start);
    if (nl == std::string::npos) {
      out.push_back(s.substr(start));
      break;
    }
    out.push_back(s.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

}  // namespace cppetcd::integration
