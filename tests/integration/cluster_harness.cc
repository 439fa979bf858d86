#include "cluster_harness.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"

extern char** environ;

namespace cppetcd::integration {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string TailOf(const std::string& s, size_t n) {
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

// Waits for `pid` up to `timeout` (polling); true if reaped.
bool ReapWithin(pid_t pid, milliseconds timeout, CommandResult* r) {
  const auto deadline = Clock::now() + timeout;
  for (int i = 0; i < 1'000'000; ++i) {
    int status = 0;
    pid_t got = ::waitpid(pid, &status, WNOHANG);
    if (got == pid) {
      if (WIFEXITED(status)) {
        r->exit_code = WEXITSTATUS(status);
      } else if (WIFSIGNALED(status)) {
        r->term_signal = WTERMSIG(status);
      }
      return true;
    }
    if (got < 0 && errno != EINTR) return true;  // not our child any more
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return false;
}

// fork/exec of `args` with stdout and stderr appended to `log_path`, in its
// own process group, SIGKILLed if the test process dies; in the network
// namespace `netns_path` if not empty.
absl::StatusOr<pid_t> SpawnLogged(std::vector<std::string> args, const std::string& log_path,
                                  const std::string& netns_path) {
  {
    std::ofstream log(log_path, std::ios::app);
    log << "=== cluster harness: starting " << absl::StrJoin(args, " ");
    if (!netns_path.empty()) log << " (network namespace " << netns_path << ")";
    log << "\n";
  }
  int in_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  int ns_fd = netns_path.empty() ? -2 : ::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in_fd < 0 || log_fd < 0 || ns_fd == -1) {
    int e = errno;
    if (in_fd >= 0) ::close(in_fd);
    if (log_fd >= 0) ::close(log_fd);
    if (ns_fd >= 0) ::close(ns_fd);
    return absl::InternalError(absl::StrCat("open ", log_path, " / ", netns_path, ": ",
                                            std::strerror(e)));
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::signal(SIGPIPE, SIG_DFL);
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    if (::dup2(in_fd, 0) < 0 || ::dup2(log_fd, 1) < 0 || ::dup2(log_fd, 2) < 0) ::_exit(127);
    if (ns_fd >= 0 && ::setns(ns_fd, CLONE_NEWNET) != 0) {
      static const char kMsg[] = "=== cluster harness: setns failed\n";
      ssize_t ignored = ::write(2, kMsg, sizeof(kMsg) - 1);
      (void)ignored;
      ::_exit(126);
    }
    ::execve(argv[0], argv.data(), environ);
    ::_exit(127);
  }
  int e = errno;
  ::close(in_fd);
  ::close(log_fd);
  if (ns_fd >= 0) ::close(ns_fd);
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(e)));
  return pid;
}

std::string UniqueToken() {
  static std::atomic<int> counter{0};
  std::random_device rd;
  return absl::StrCat("cppetcd-integ-", ::getpid(), "-", counter.fetch_add(1), "-", rd() % 100000);
}

}  // namespace

CommandResult EtcdctlReconfig(const std::string& endpoints, const std::vector<std::string>& args,
                              milliseconds timeout) {
  CommandResult r;
  std::string last_reported;
  PollUntil(
      [&] {
        r = Etcdctl(endpoints, args);
        if (r.exit_code == 0) return true;
        const std::string err = StripClientLogLines(r.err);
        for (const char* transient :
             {"unhealthy cluster", "not enough started members", "leader changed", "no leader",
              "request timed out", "context deadline exceeded"}) {
          if (err.find(transient) != std::string::npos) {
            if (err != last_reported) {
              std::cerr << "etcdctl " << absl::StrJoin(args, " ") << ": "
                        << absl::StripTrailingAsciiWhitespace(err) << " (retrying)\n";
              last_reported = err;
            }
            return false;
          }
        }
        return true;
      },
      timeout);
  return r;
}

// ---------------------------------------------------------------- member

ClusterMember::~ClusterMember() { Kill(); }

std::string ClusterMember::ClientEndpoint() const {
  return absl::StrCat(host_, ":", client_port_);
}
std::string ClusterMember::ClientUrl() const {
  return absl::StrCat(tls_.client ? "https" : "http", "://", host_, ":", client_port_);
}
std::string ClusterMember::PeerUrl() const {
  return absl::StrCat(tls_.peer ? "https" : "http", "://", host_, ":", advertised_peer_port());
}

bool ClusterMember::Exited() {
  if (pid_ <= 0) return true;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return true;
  }
  return false;
}

absl::Status ClusterMember::Spawn() {
  if (running()) return absl::FailedPreconditionError(name_ + " is running");
  log_size_at_spawn_ = ReadLog().size();
  auto pid = SpawnLogged(args_, log_path_, netns_path_);
  if (!pid.ok()) return pid.status();
  pid_ = *pid;
  return absl::OkStatus();
}

void ClusterMember::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  CommandResult r;
  ReapWithin(pid_, std::chrono::seconds(10), &r);
  pid_ = -1;
}

CommandResult ClusterMember::Terminate(milliseconds timeout) {
  CommandResult r;
  if (pid_ <= 0) return r;
  ::kill(pid_, SIGTERM);
  if (!ReapWithin(pid_, timeout, &r)) {
    r.timed_out = true;
    ::kill(pid_, SIGKILL);
    ReapWithin(pid_, std::chrono::seconds(10), &r);
  }
  pid_ = -1;
  return r;
}

void ClusterMember::WipeData() {
  std::error_code ec;
  std::filesystem::remove_all(data_dir_, ec);
}

std::shared_ptr<grpc::Channel> ClusterMember::NewChannel() const {
  static std::atomic<int> counter{0};
  grpc::ChannelArguments args;
  args.SetInt("cppetcd.integration.cluster_channel", counter.fetch_add(1));
  args.SetMaxReceiveMessageSize(-1);
  if (tls_.client) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = ReadWholeFile(tls_.ca_file);
    if (!tls_.client_cert_file.empty()) {
      o.pem_cert_chain = ReadWholeFile(tls_.client_cert_file);
      o.pem_private_key = ReadWholeFile(tls_.client_key_file);
    }
    return grpc::CreateCustomChannel(ClientEndpoint(), grpc::SslCredentials(o), args);
  }
  return grpc::CreateCustomChannel(ClientEndpoint(), grpc::InsecureChannelCredentials(), args);
}

absl::Status ClusterMember::WaitServing(milliseconds timeout, bool serializable) {
  const auto deadline = Clock::now() + timeout;
  grpc::Status last;
  for (int i = 0; i < 100000; ++i) {
    if (Exited()) {
      const std::string log = ReadLog();
      // A port taken by another process while this member was down: a
      // harness problem, not a failure of the server. Reported as such.
      const bool taken =
          log.find("address already in use", std::min(log_size_at_spawn_, log.size())) !=
          std::string::npos;
      const char* clash =
          taken ? " (port clash: its port was taken by another process)" : "";
      return absl::UnavailableError(absl::StrCat(name_, " exited before it was serving", clash,
                                                 "; log tail:\n", TailOf(log, 3000)));
    }
    // A fresh channel per attempt avoids gRPC's reconnect backoff.
    auto kv = etcdserverpb::KV::NewStub(NewChannel());
    etcdserverpb::RangeResponse resp;
    last = GetKey(kv.get(), "health", serializable, milliseconds(1000), &resp);
    if (last.ok()) return absl::OkStatus();
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat(name_, " not serving after ", timeout.count(),
                                                  " ms: ", last.error_message(), "\nlog tail:\n",
                                                  TailOf(ReadLog(), 3000)));
}

absl::StatusOr<etcdserverpb::StatusResponse> ClusterMember::Status(milliseconds timeout) const {
  auto stub = etcdserverpb::Maintenance::NewStub(NewChannel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  etcdserverpb::StatusRequest req;
  etcdserverpb::StatusResponse resp;
  grpc::Status st = stub->Status(&ctx, req, &resp);
  if (!st.ok()) return absl::UnavailableError(absl::StrCat(name_, ": ", st.error_message()));
  return resp;
}

std::string ClusterMember::ReadLog() const { return ReadWholeFile(log_path_); }

// ---------------------------------------------------------------- cluster

absl::StatusOr<std::unique_ptr<Cluster>> Cluster::Start(Options options, std::string base_dir) {
  if (options.binary.empty()) options.binary = ServerBinary();
  if (options.binary.empty()) return absl::FailedPreconditionError("no server binary");
  std::unique_ptr<Cluster> c(new Cluster(std::move(options)));
  c->base_dir_ = std::move(base_dir);
  absl::Status last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    last = c->BootstrapOnce();
    if (last.ok()) return c;
    const bool exited = last.code() == absl::StatusCode::kUnavailable;
    for (auto& m : c->members_) {
      m->Kill();
      m->WipeData();
    }
    if (!exited) break;  // not a port clash: do not retry
    c->members_.clear();
  }
  return last;
}

absl::StatusOr<std::unique_ptr<ClusterMember>> Cluster::NewMember(const std::string& name,
                                                                  const std::string& data_dir) {
  std::unique_ptr<ClusterMember> m(new ClusterMember());
  m->name_ = name;
  m->tls_ = options_.tls;
  m->data_dir_ = data_dir;
  m->log_path_ = absl::StrCat(base_dir_, "/", name, ".log");
  const size_t slot = members_.size();
  if (slot < options_.networks.size()) {
    if (options_.proxies) {
      return absl::InvalidArgumentError("member networks and proxies do not mix");
    }
    m->host_ = options_.networks[slot].host;
    m->netns_path_ = options_.networks[slot].netns_path;
    m->client_port_ = 2379;
    m->peer_port_ = 2380;
    return m;
  }
  std::set<int> taken;
  for (const auto& other : members_) {
    taken.insert(other->client_port_);
    taken.insert(other->peer_port_);
    taken.insert(other->advertised_peer_port());
  }
  for (int* port : {&m->client_port_, &m->peer_port_}) {
    for (int tries = 0; tries < 20; ++tries) {
      auto p = PickFreePort();
      if (!p.ok()) return p.status();
      if (taken.insert(*p).second) {
        *port = *p;
        break;
      }
    }
    if (*port == 0) return absl::InternalError("no free port");
  }
  if (options_.proxies) {
    auto proxy = FaultProxy::Start(m->peer_port_);
    if (!proxy.ok()) return proxy.status();
    m->proxy_ = std::move(*proxy);
  }
  return m;
}

std::vector<std::string> Cluster::BaseArgs(const ClusterMember& m) const {
  std::vector<std::string> a = {
      options_.binary,
      "--name",
      m.name(),
      "--data-dir",
      m.data_dir(),
      "--listen-client-urls",
      m.ClientUrl(),
      "--advertise-client-urls",
      m.ClientUrl(),
      "--listen-peer-urls",
      absl::StrCat(options_.tls.peer ? "https" : "http", "://", m.host(), ":", m.peer_port()),
      "--initial-advertise-peer-urls",
      m.PeerUrl(),
      "--initial-cluster-token",
      token_,
      absl::StrCat("--heartbeat-interval=", options_.heartbeat_ms),
      absl::StrCat("--election-timeout=", options_.election_ms),
  };
  const ClusterTls& t = options_.tls;
  if (t.client) {
    a.insert(a.end(), {"--cert-file", t.cert_file, "--key-file", t.key_file,
                       "--trusted-ca-file", t.ca_file});
    if (t.client_cert_auth) a.push_back("--client-cert-auth");
  }
  if (t.peer && t.peer_auto_tls) {
    a.push_back("--peer-auto-tls");
  } else if (t.peer) {
    a.insert(a.end(), {"--peer-cert-file", t.cert_file, "--peer-key-file", t.key_file,
                       "--peer-trusted-ca-file", t.ca_file});
    if (t.peer_client_cert_auth) a.push_back("--peer-client-cert-auth");
  }
  a.insert(a.end(), options_.extra_flags.begin(), options_.extra_flags.end());
  return a;
}

std::vector<std::string> Cluster::EtcdctlFlags() const {
  const ClusterTls& t = options_.tls;
  if (!t.client) return {};
  std::vector<std::string> f = {"--cacert=" + t.ca_file};
  if (!t.client_cert_file.empty()) {
    f.push_back("--cert=" + t.client_cert_file);
    f.push_back("--key=" + t.client_key_file);
  }
  return f;
}

absl::Status Cluster::BootstrapOnce() {
  token_ = UniqueToken();
  members_.clear();
  for (int i = 0; i < options_.size; ++i) {
    const std::string name = absl::StrCat("m", i);
    auto m = NewMember(name, absl::StrCat(base_dir_, "/", name, ".data"));
    if (!m.ok()) return m.status();
    members_.push_back(std::move(*m));
  }
  std::vector<std::string> entries;
  for (const auto& m : members_) entries.push_back(absl::StrCat(m->name(), "=", m->PeerUrl()));
  const std::string initial_cluster = absl::StrJoin(entries, ",");
  for (auto& m : members_) {
    auto args = BaseArgs(*m);
    args.insert(args.end(),
                {"--initial-cluster", initial_cluster, "--initial-cluster-state", "new"});
    m->set_args(std::move(args));
    absl::Status s = m->Spawn();
    if (!s.ok()) return s;
  }
  const auto deadline = Clock::now() + options_.ready_timeout;
  for (auto& m : members_) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    absl::Status s = m->WaitServing(std::max(left, milliseconds(1)));
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

Cluster::~Cluster() {
  if (::testing::Test::HasFailure()) DumpLogs();
  for (auto& m : members_) {
    if (m->running()) ::kill(m->pid(), SIGKILL);
  }
  for (auto& m : members_) m->Kill();
}

void Cluster::DumpLogs(size_t tail_bytes) const {
  for (const auto& m : members_) {
    std::cerr << "---- " << m->name() << " log (" << m->log_path() << "), last " << tail_bytes
              << " bytes ----\n"
              << TailOf(m->ReadLog(), tail_bytes) << "\n---- end of " << m->name() << " log ----\n";
  }
}

int Cluster::IndexOf(const std::string& name) const {
  for (size_t i = 0; i < members_.size(); ++i) {
    if (members_[i]->name() == name) return static_cast<int>(i);
  }
  return -1;
}

std::vector<int> Cluster::Running() const {
  std::vector<int> out;
  for (size_t i = 0; i < members_.size(); ++i) {
    if (members_[i]->running()) out.push_back(static_cast<int>(i));
  }
  return out;
}

std::string Cluster::RunningEndpoints() const {
  std::vector<std::string> eps;
  for (int i : Running()) eps.push_back(members_[i]->ClientEndpoint());
  return absl::StrJoin(eps, ",");
}

absl::StatusOr<int> Cluster::WaitForLeader(milliseconds timeout, const std::vector<int>& among) {
  const std::vector<int> set = among.empty() ? Running() : among;
  std::string last = "no running member";
  int found = -1;
  bool ok = PollUntil(
      [&] {
        uint64_t leader = 0, term = 0;
        std::vector<uint64_t> ids;
        for (int i : set) {
          auto st = members_[i]->Status(milliseconds(1000));
          if (!st.ok()) {
            last = std::string(st.status().message());
            return false;
          }
          if (st->leader() == 0) {
            last = members_[i]->name() + " has no leader";
            return false;
          }
          if (leader != 0 && (st->leader() != leader || st->raftterm() != term)) {
            last = absl::StrCat("members disagree: leader ", HexId(leader), " term ", term, " vs ",
                                members_[i]->name(), " leader ", HexId(st->leader()), " term ",
                                st->raftterm());
            return false;
          }
          leader = st->leader();
          term = st->raftterm();
          ids.push_back(st->header().member_id());
        }
        for (size_t k = 0; k < set.size(); ++k) {
          if (ids[k] == leader) {
            found = set[k];
            return true;
          }
        }
        last = absl::StrCat("leader ", HexId(leader), " is not among the members asked");
        return false;
      },
      timeout);
  if (!ok) return absl::DeadlineExceededError("no agreed leader: " + last);
  return found;
}

absl::Status Cluster::Isolate(int i) {
  if (!options_.proxies) return absl::FailedPreconditionError("cluster started without proxies");
  ClusterMember& m = member(i);
  if (!m.running()) return absl::FailedPreconditionError(m.name() + " is not running");
  for (size_t k = 0; k < members_.size(); ++k) {
    if (static_cast<int>(k) == i) {
      m.proxy()->SetMode(FaultProxy::Mode::kBlackhole);
    } else {
      members_[k]->proxy()->SetBlockedSources({m.pid()});
    }
  }
  return absl::OkStatus();
}

void Cluster::HealAll() {
  for (auto& m : members_) {
    if (m->proxy() == nullptr) continue;
    m->proxy()->SetBlockedSources({});
    m->proxy()->SetMode(FaultProxy::Mode::kPass);
  }
}

absl::StatusOr<uint64_t> Cluster::MemberId(int i) const {
  auto st = members_.at(i)->Status();
  if (!st.ok()) return st.status();
  return st->header().member_id();
}

std::string Cluster::HexId(uint64_t id) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(id));
  // etcdctl prints ids with %x (no zero padding).
  std::string s(buf);
  size_t nz = s.find_first_not_of('0');
  return nz == std::string::npos ? "0" : s.substr(nz);
}

absl::Status Cluster::Restart(int i, bool learner) {
  ClusterMember& m = member(i);
  absl::Status s = m.Spawn();
  if (!s.ok()) return s;
  return m.WaitServing(options_.ready_timeout, learner);
}

absl::Status Cluster::RestartAll() {
  std::vector<int> started;
  for (size_t i = 0; i < members_.size(); ++i) {
    if (members_[i]->running()) continue;
    absl::Status s = members_[i]->Spawn();
    if (!s.ok()) return s;
    started.push_back(static_cast<int>(i));
  }
  const auto deadline = Clock::now() + options_.ready_timeout;
  for (int i : started) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    absl::Status s = members_[i]->WaitServing(std::max(left, milliseconds(1)));
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<Cluster::MemberAddOutput> Cluster::ParseMemberAdd(const std::string& text) {
  MemberAddOutput out;
  out.stdout_text = text;
  for (const std::string& raw : SplitLines(text)) {
    absl::string_view line = raw;
    if (absl::ConsumePrefix(&line, "Member ")) {
      line = absl::StripLeadingAsciiWhitespace(line);  // etcdctl pads ids to 16 columns
      std::string id(line.substr(0, line.find(' ')));
      if (!absl::SimpleHexAtoi(id, &out.id)) {
        return absl::InvalidArgumentError("bad member id in: " + raw);
      }
      continue;
    }
    auto eq = line.find('=');
    if (eq == absl::string_view::npos) continue;
    absl::string_view key = line.substr(0, eq);
    absl::string_view value = line.substr(eq + 1);
    absl::ConsumePrefix(&value, "\"");
    absl::ConsumeSuffix(&value, "\"");
    if (key == "ETCD_NAME") out.etcd_name = std::string(value);
    if (key == "ETCD_INITIAL_CLUSTER") out.etcd_initial_cluster = std::string(value);
    if (key == "ETCD_INITIAL_ADVERTISE_PEER_URLS") out.etcd_initial_advertise = std::string(value);
    if (key == "ETCD_INITIAL_CLUSTER_STATE") out.etcd_initial_cluster_state = std::string(value);
  }
  if (out.id == 0 || out.etcd_name.empty() || out.etcd_initial_cluster.empty() ||
      out.etcd_initial_cluster_state.empty()) {
    return absl::InvalidArgumentError("unexpected member add printout:\n" + text);
  }
  return out;
}

absl::StatusOr<int> Cluster::AddMember(const std::string& name, bool learner,
                                       const std::string& via, MemberAddOutput* out,
                                       bool reuse_slot) {
  int index = -1;
  if (reuse_slot) {
    index = IndexOf(name);
    if (index < 0) return absl::NotFoundError("no member " + name);
    ClusterMember& m = member(index);
    if (m.running()) return absl::FailedPreconditionError(name + " is running");
    m.data_dir_ = absl::StrCat(base_dir_, "/", name, ".data.", ++data_dir_generation_);
  } else {
    if (IndexOf(name) >= 0) return absl::AlreadyExistsError(name);
    auto m = NewMember(name, absl::StrCat(base_dir_, "/", name, ".data"));
    if (!m.ok()) return m.status();
    members_.push_back(std::move(*m));
    index = static_cast<int>(members_.size()) - 1;
  }
  ClusterMember& m = member(index);
  std::vector<std::string> args = {"member", "add", name, "--peer-urls=" + m.PeerUrl()};
  if (learner) args.push_back("--learner");
  CommandResult r = EtcdctlReconfig(via, args);
  if (r.exit_code != 0) {
    return absl::UnavailableError(
        absl::StrCat("etcdctl member add failed (", r.exit_code, "): ", r.out, r.err));
  }
  auto parsed = ParseMemberAdd(r.out);
  if (!parsed.ok()) return parsed.status();
  if (out != nullptr) *out = *parsed;
  // Start the process the way the runbook does: the printout's values.
  auto start_args = BaseArgs(m);
  start_args[2] = parsed->etcd_name;  // --name
  start_args.insert(start_args.end(),
                    {"--initial-cluster", parsed->etcd_initial_cluster, "--initial-cluster-state",
                     parsed->etcd_initial_cluster_state});
  m.set_args(std::move(start_args));
  absl::Status s = m.Spawn();
  if (!s.ok()) return s;
  s = m.WaitServing(options_.ready_timeout, learner);
  if (!s.ok()) return s;
  return index;
}

absl::Status Cluster::RemoveMember(uint64_t id, const std::string& via) {
  CommandResult r = EtcdctlReconfig(via, {"member", "remove", HexId(id)});
  if (r.exit_code != 0) {
    return absl::UnavailableError(
        absl::StrCat("etcdctl member remove failed (", r.exit_code, "): ", r.out, r.err));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- helpers

grpc::Status PutKey(etcdserverpb::KV::Stub* stub, const std::string& key, const std::string& value,
                    milliseconds timeout, etcdserverpb::PutResponse* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  etcdserverpb::PutRequest req;
  req.set_key(key);
  req.set_value(value);
  etcdserverpb::PutResponse local;
  return stub->Put(&ctx, req, resp != nullptr ? resp : &local);
}

grpc::Status GetKey(etcdserverpb::KV::Stub* stub, const std::string& key, bool serializable,
                    milliseconds timeout, etcdserverpb::RangeResponse* resp,
                    const std::string& range_end) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  etcdserverpb::RangeRequest req;
  req.set_key(key);
  req.set_range_end(range_end);
  req.set_serializable(serializable);
  return stub->Range(&ctx, req, resp);
}

std::string PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  for (int i = static_cast<int>(end.size()) - 1; i >= 0; --i) {
    if (static_cast<unsigned char>(end[i]) < 0xff) {
      end[i] = static_cast<char>(end[i] + 1);
      end.resize(i + 1);
      return end;
    }
  }
  return std::string(1, '\0');
}

std::vector<std::vector<std::string>> ParseTable(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  for (const std::string& line : SplitLines(text)) {
    if (line.empty() || line[0] != '|') continue;
    std::vector<std::string> cells;
    for (absl::string_view cell : absl::StrSplit(line, '|')) {
      cells.emplace_back(absl::StripAsciiWhitespace(cell));
    }
    // The split yields an empty cell before the first and after the last '|'.
    if (cells.size() >= 2) {
      cells.erase(cells.begin());
      cells.pop_back();
    }
    rows.push_back(std::move(cells));
  }
  return rows;
}

}  // namespace cppetcd::integration
