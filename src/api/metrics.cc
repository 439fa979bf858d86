// Prometheus text exposition of the server's metrics. File access: only
// /proc (process CPU, memory, open descriptors), read directly: process
// state, not data, so it stays outside util::Env.
#include "cppetcd/api/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>

#include <grpcpp/support/server_interceptor.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cppetcd/mvcc/kvstore.h"
#include "cppetcd/mvcc/txn_metrics.h"
#include "cppetcd/server/etcd_server.h"
#include "cppetcd/storage/backend.h"

namespace cppetcd::api {
namespace {
// Debian's abseil has its own string_view type.
absl::string_view A(std::string_view s) { return absl::string_view(s.data(), s.size()); }
}  // namespace

// ---- ExpositionWriter

std::string ExpositionWriter::FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == 0) return "0";
  // Shortest round-trip digits. Go's strconv 'g' with precision -1 uses the
  // exponent form when the decimal exponent is < -4 or >= 6 (2.147483648e+09).
  char sci[64];
  auto r = std::to_chars(sci, sci + sizeof(sci), v, std::chars_format::scientific);
  std::string s(sci, r.ptr);
  const size_t e = s.find('e');
  const int exp = std::stoi(s.substr(e + 1));
  if (exp < -4 || exp >= 6) return s;
  char fixed[400];
  auto f = std::to_chars(fixed, fixed + sizeof(fixed), v, std::chars_format::fixed);
  return std::string(fixed, f.ptr);
}

void ExpositionWriter::Header(std::string_view name, std::string_view help,
                              std::string_view type) {
  if (last_family_ == name) return;
  last_family_ = std::string(name);
  absl::StrAppend(&out_, "# HELP ", A(name), " ", A(help), "\n# TYPE ", A(name), " ", A(type), "\n");
}

namespace {

std::string EscapeLabel(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

void ExpositionWriter::Sample(std::string_view name, const Labels& labels, double value,
                              const std::pair<std::string, std::string>* extra) {
  out_.append(name);
  if (!labels.empty() || extra != nullptr) {
    out_ += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
      if (!first) out_ += ',';
      first = false;
      absl::StrAppend(&out_, k, "=\"", EscapeLabel(v), "\"");
    }
    if (extra != nullptr) {
      if (!first) out_ += ',';
      absl::StrAppend(&out_, extra->first, "=\"", EscapeLabel(extra->second), "\"");
    }
    out_ += '}';
  }
  absl::StrAppend(&out_, " ", FormatValue(value), "\n");
}

void ExpositionWriter::Gauge(std::string_view name, std::string_view help, double value,
                             const Labels& labels) {
  Header(name, help, "gauge");
  Sample(name, labels, value);
}

void ExpositionWriter::Counter(std::string_view name, std::string_view help, double value,
                               const Labels& labels) {
  Header(name, help, "counter");
  Sample(name, labels, value);
}

void ExpositionWriter::Histogram(std::string_view name, std::string_view help,
                                 const util::HistogramSnapshot& h, const Labels& labels) {
  Header(name, help, "histogram");
  const std::string bucket = absl::StrCat(A(name), "_bucket");
  for (size_t i = 0; i < h.upper_bounds.size(); ++i) {
    std::pair<std::string, std::string> le{"le", FormatValue(h.upper_bounds[i])};
    Sample(bucket, labels, static_cast<double>(h.cumulative_counts[i]), &le);
  }
  std::pair<std::string, std::string> inf{"le", "+Inf"};
  Sample(bucket, labels, static_cast<double>(h.count), &inf);
  Sample(absl::StrCat(A(name), "_sum"), labels, h.sum);
  Sample(absl::StrCat(A(name), "_count"), labels, static_cast<double>(h.count));
}

void ExpositionWriter::Declare(std::string_view name, std::string_view help,
                               std::string_view type) {
  Header(name, help, type);
}

// ---- MetricsRegistry

void MetricsRegistry::Add(Collector collector) {
  util::MutexLock lock(&mu_);
  collectors_.push_back(std::move(collector));
}

std::string MetricsRegistry::Render() const {
  std::vector<Collector> collectors;
  {
    util::MutexLock lock(&mu_);
    collectors = collectors_;
  }
  ExpositionWriter w;
  for (const Collector& c : collectors) c(w);
  return w.Text();
}

// ---- Peer round-trip times

void WritePeerRoundTripTimes(ExpositionWriter& w,
                             const std::map<uint64_t, util::HistogramSnapshot>& peers) {
  static constexpr char kName[] = "etcd_network_peer_round_trip_time_seconds";
  static constexpr char kHelp[] = "Round-Trip-Time histogram between peers";
  if (peers.empty()) {
    w.Declare(kName, kHelp, "histogram");
    return;
  }
  for (const auto& [id, h] : peers) {
    w.Histogram(kName, kHelp, h, {{"To", absl::StrFormat("%x", id)}});
  }
}

// ---- GrpcMetrics

namespace {

std::string_view TypeName(grpc::experimental::ServerRpcInfo::Type t) {
  using T = grpc::experimental::ServerRpcInfo::Type;
  switch (t) {
    case T::UNARY:
      return "unary";
    case T::CLIENT_STREAMING:
      return "client_stream";
    case T::SERVER_STREAMING:
      return "server_stream";
    case T::BIDI_STREAMING:
      return "bidi_stream";
  }
  return "unary";
}

class CountingInterceptor : public grpc::experimental::Interceptor {
 public:
  CountingInterceptor(GrpcMetrics* metrics, std::string method, std::string_view type)
      : metrics_(metrics),
        method_(std::move(method)),
        type_(type),
        start_(metrics->clock()->Now()) {
    metrics_->OnStarted(method_, type_);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using H = grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(H::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() != nullptr) {
      metrics_->OnReceived(method_, type_);
    }
    if (methods->QueryInterceptionHookPoint(H::PRE_SEND_MESSAGE)) {
      metrics_->OnSent(method_, type_);
    }
    if (methods->QueryInterceptionHookPoint(H::PRE_SEND_STATUS)) {
      metrics_->OnHandled(method_, type_, static_cast<int>(methods->GetSendStatus().error_code()));
      if (metrics_->extensive()) {
        metrics_->OnHandlingTime(
            method_, type_,
            std::chrono::duration<double>(metrics_->clock()->Now() - start_).count());
      }
    }
    methods->Proceed();
  }

 private:
  GrpcMetrics* const metrics_;
  const std::string method_;
  const std::string_view type_;
  const std::chrono::steady_clock::time_point start_;
};

class CountingInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CountingInterceptorFactory(GrpcMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    const char* m = info->method();
    return new CountingInterceptor(metrics_, m == nullptr ? "" : m, TypeName(info->type()));
  }

 private:
  GrpcMetrics* const metrics_;
};

}  // namespace

GrpcMetrics::GrpcMetrics(bool extensive, util::Clock* clock)
    : extensive_(extensive), clock_(clock != nullptr ? clock : util::SystemClock::Get()) {}
GrpcMetrics::~GrpcMetrics() = default;

std::shared_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
GrpcMetrics::InterceptorFactory() {
  return std::make_shared<CountingInterceptorFactory>(this);
}

std::string_view GrpcMetrics::CodeName(int code) {
  static constexpr std::string_view kNames[] = {
      "OK",      "Canceled",          "Unknown",          "InvalidArgument",
      "DeadlineExceeded", "NotFound", "AlreadyExists",    "PermissionDenied",
      "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
      "Unimplemented", "Internal",    "Unavailable",      "DataLoss",
      "Unauthenticated"};
  if (code < 0 || code >= static_cast<int>(std::size(kNames))) return "Unknown";
  return kNames[code];
}

GrpcMetrics::Counts& GrpcMetrics::Slot(std::string_view full_method, std::string_view type) {
  // "/etcdserverpb.KV/Range" -> service "etcdserverpb.KV", method "Range".
  std::string_view m = full_method;
  if (!m.empty() && m.front() == '/') m.remove_prefix(1);
  const size_t slash = m.find('/');
  Key key;
  if (slash == std::string_view::npos) {
    key.service = "unknown";
    key.method = std::string(m);
  } else {
    key.service = std::string(m.substr(0, slash));
    key.method = std::string(m.substr(slash + 1));
  }
  key.type = std::string(type);
  return counts_[std::move(key)];
}

void GrpcMetrics::OnStarted(std::string_view full_method, std::string_view type) {
  util::MutexLock lock(&mu_);
  ++Slot(full_method, type).started;
}
void GrpcMetrics::OnReceived(std::string_view full_method, std::string_view type) {
  util::MutexLock lock(&mu_);
  ++Slot(full_method, type).received;
}
void GrpcMetrics::OnSent(std::string_view full_method, std::string_view type) {
  util::MutexLock lock(&mu_);
  ++Slot(full_method, type).sent;
}
void GrpcMetrics::OnHandled(std::string_view full_method, std::string_view type, int code) {
  util::MutexLock lock(&mu_);
  ++Slot(full_method, type).handled[code];
}

void GrpcMetrics::OnHandlingTime(std::string_view full_method, std::string_view type,
                                 double seconds) {
  util::MutexLock lock(&mu_);
  Counts& c = Slot(full_method, type);
  if (c.handling_seconds == nullptr) {
    c.handling_seconds = std::make_unique<util::Histogram>(
        std::vector<double>{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10});
  }
  c.handling_seconds->Observe(seconds);
}

void GrpcMetrics::Collect(ExpositionWriter& w) const {
  util::MutexLock lock(&mu_);
  // Label order as the Go client prints them (sorted by label name).
  auto labels = [](const Key& k) {
    return Labels{{"grpc_method", k.method}, {"grpc_service", k.service}, {"grpc_type", k.type}};
  };
  if (extensive_) {
    static constexpr char kHandling[] = "grpc_server_handling_seconds";
    static constexpr char kHandlingHelp[] =
        "Histogram of response latency (seconds) of gRPC that had been application-level "
        "handled by the server.";
    w.Declare(kHandling, kHandlingHelp, "histogram");
    for (const auto& [k, c] : counts_) {
      if (c.handling_seconds != nullptr) {
        w.Histogram(kHandling, kHandlingHelp, c.handling_seconds->Snapshot(), labels(k));
      }
    }
  }
  static constexpr char kHandled[] = "grpc_server_handled_total";
  static constexpr char kHandledHelp[] =
      "Total number of RPCs completed on the server, regardless of success or failure.";
  if (counts_.empty()) w.Declare(kHandled, kHandledHelp, "counter");
  for (const auto& [k, c] : counts_) {
    for (const auto& [code, n] : c.handled) {
      Labels l{{"grpc_code", std::string(CodeName(code))}};
      for (auto& p : labels(k)) l.push_back(p);
      w.Counter(kHandled, kHandledHelp, static_cast<double>(n), l);
    }
  }
  const struct {
    const char* name;
    const char* help;
    uint64_t Counts::*field;
  } kFamilies[] = {
      {"grpc_server_msg_received_total", "Total number of RPC stream messages received on the server.",
       &Counts::received},
      {"grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server.",
       &Counts::sent},
      {"grpc_server_started_total", "Total number of RPCs started on the server.", &Counts::started},
  };
  for (const auto& f : kFamilies) {
    if (counts_.empty()) w.Declare(f.name, f.help, "counter");
    for (const auto& [k, c] : counts_) {
      w.Counter(f.name, f.help, static_cast<double>(c.*(f.field)), labels(k));
    }
  }
}

// ---- process

void CollectProcessMetrics(ExpositionWriter& w) {
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  // Fields after the parenthesised command name, which may contain spaces.
  const size_t close = stat.rfind(')');
  if (close != std::string::npos) {
    std::vector<std::string> f = absl::StrSplit(stat.substr(close + 2), ' ', absl::SkipEmpty());
    // f[0] is field 3 (state): field n is f[n - 3].
    auto field = [&](int n) -> double {
      size_t i = static_cast<size_t>(n - 3);
      return i < f.size() ? std::strtod(f[i].c_str(), nullptr) : 0;
    };
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    w.Counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
              (field(14) + field(15)) / ticks);
    double boot_time = 0;
    std::ifstream proc_stat("/proc/stat");
    for (std::string line; std::getline(proc_stat, line);) {
      if (line.rfind("btime ", 0) == 0) boot_time = std::strtod(line.c_str() + 6, nullptr);
    }
    double open_fds = 0;
    if (DIR* d = opendir("/proc/self/fd"); d != nullptr) {
      while (dirent* e = readdir(d)) {
        if (e->d_name[0] != '.') ++open_fds;
      }
      closedir(d);
      open_fds -= 1;  // the directory stream itself
    }
    rlimit rl{};
    getrlimit(RLIMIT_NOFILE, &rl);
    w.Gauge("process_max_fds", "Maximum number of open file descriptors.",
            static_cast<double>(rl.rlim_cur));
    w.Gauge("process_open_fds", "Number of open file descriptors.", open_fds);
    w.Gauge("process_resident_memory_bytes", "Resident memory size in bytes.", field(24) * page);
    w.Gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
            boot_time + field(22) / ticks);
    w.Gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", field(23));
  }
}

// ---- server

void CollectServerMetrics(server::EtcdServer* server, ExpositionWriter& w) {
  server::ServerMetrics& m = server->Metrics();
  auto load = [](const auto& a) { return static_cast<double>(a.load(std::memory_order_relaxed)); };

  w.Gauge("etcd_cluster_version",
          "Which version is running. 1 for 'cluster_version' label with current cluster version",
          1, {{"cluster_version", server::kClusterVersion}});

  if (const mvcc::Store* store = server->Store(); store != nullptr) {
    w.Gauge("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.",
            static_cast<double>(store->CompactRev()));
    w.Gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.",
            static_cast<double>(store->Rev()));
    mvcc::RangeOptions count_only;
    count_only.count_only = true;
    const std::string all(1, '\0');
    if (auto r = store->Range(all, all, count_only); r.ok()) {
      w.Gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.",
              static_cast<double>(r->count));
    }
  }
  const storage::Backend* backend = server->Backend();
  const double db_size = backend != nullptr ? static_cast<double>(backend->SizeBytes()) : 0;
  const double db_in_use = backend != nullptr ? static_cast<double>(backend->SizeInUseBytes()) : 0;
  w.Gauge("etcd_debugging_mvcc_db_total_size_in_bytes",
          "Total size of the underlying database physically allocated in bytes.", db_size);

  w.Histogram("etcd_disk_backend_commit_duration_seconds",
              "The latency distributions of commit called by backend.",
              m.backend_commit_seconds.Snapshot());
  w.Histogram("etcd_disk_wal_fsync_duration_seconds",
              "The latency distributions of fsync called by WAL.", m.wal_fsync_seconds.Snapshot());
  // cppetcd's own: where a write's time goes (ServerMetrics stage_*).
  const std::pair<const char*, const util::Histogram*> stages[] = {
      {"propose_queue", &m.stage_propose_queue}, {"wal_save", &m.stage_wal_save},
      {"apply_queue", &m.stage_apply_queue},     {"apply", &m.stage_apply},
      {"reply_to_commit", &m.stage_reply_to_commit},
      {"propose_to_reply", &m.stage_propose_to_reply}};
  for (const auto& [stage, h] : stages) {
    w.Histogram("cppetcd_debug_write_stage_duration_seconds",
                "Latency of the stages of the write path (docs/benchmarks.md).", h->Snapshot(),
                {{"stage", stage}});
  }

  // etcd 3.4 mvcc/metrics.go: operations of mvcc txns (mvcc/txn_metrics.h),
  // also under their etcd_debugging_ names.
  const mvcc::TxnMetrics& txn = mvcc::TxnMetrics::Global();
  for (const char* prefix : {"etcd_debugging_mvcc_", "etcd_mvcc_"}) {
    const std::string p(prefix);
    w.Counter(p + "delete_total", "Total number of deletes seen by this member.",
              static_cast<double>(txn.delete_total()));
    w.Counter(p + "put_total", "Total number of puts seen by this member.",
              static_cast<double>(txn.put_total()));
    w.Counter(p + "range_total", "Total number of ranges seen by this member.",
              static_cast<double>(txn.range_total()));
    w.Counter(p + "txn_total", "Total number of txns seen by this member.",
              static_cast<double>(txn.txn_total()));
  }
  w.Gauge("etcd_mvcc_db_total_size_in_bytes",
          "Total size of the underlying database physically allocated in bytes.", db_size);
  w.Gauge("etcd_mvcc_db_total_size_in_use_in_bytes",
          "Total size of the underlying database logically in use in bytes.", db_in_use);

  w.Gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.",
          m.has_leader.load(std::memory_order_relaxed) ? 1 : 0);
  w.Gauge("etcd_server_id",
          "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.", 1,
          {{"server_id", absl::StrFormat("%x", server->MemberId())}});
  w.Gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.",
          m.is_leader.load(std::memory_order_relaxed) ? 1 : 0);
  w.Gauge("etcd_server_is_learner",
          "Whether or not this member is a learner. 1 if is, 0 otherwise.",
          server->IsLearner() ? 1 : 0);
  w.Counter("etcd_server_leader_changes_seen_total", "The number of leader changes seen.",
            load(m.leader_changes));
  w.Gauge("etcd_server_proposals_applied_total",
          "The total number of consensus proposals applied.", load(m.proposals_applied));
  w.Gauge("etcd_server_proposals_committed_total",
          "The total number of consensus proposals committed.", load(m.proposals_committed));
  w.Counter("etcd_server_proposals_failed_total", "The total number of failed proposals seen.",
            load(m.proposals_failed));
  w.Gauge("etcd_server_proposals_pending", "The current number of pending proposals to commit.",
          load(m.proposals_pending));
  const int64_t quota = server->Config().quota_backend_bytes;
  w.Gauge("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.",
          static_cast<double>(quota == 0 ? int64_t{2} << 30 : quota));
  w.Counter("etcd_server_slow_apply_total",
            "The total number of slow apply requests (likely overloaded from slow disk).",
            load(m.slow_applies));
  w.Gauge("etcd_server_version",
          "Which version is running. 1 for 'server_version' label with current version.", 1,
          {{"server_version", server::kServerVersion}});
}

void CollectRangeBudgetMetrics(const RangeBudget::Stats& stats, ExpositionWriter& w) {
  w.Gauge("cppetcd_range_response_bytes_in_flight",
          "Estimated bytes of Range answers admitted and not yet sent.",
          static_cast<double>(stats.in_flight_bytes));
  w.Gauge("cppetcd_range_response_bytes_limit",
          "The bound on the bytes of Range answers in flight.",
          static_cast<double>(stats.limit_bytes));
  w.Gauge("cppetcd_range_responses_in_flight", "Range calls admitted and not yet done.",
          static_cast<double>(stats.in_flight));
  w.Gauge("cppetcd_range_requests_queued", "Range calls waiting for the bound on answers in flight.",
          static_cast<double>(stats.queued));
  w.Counter("cppetcd_range_requests_queued_total",
            "Range calls that waited for the bound on answers in flight.",
            static_cast<double>(stats.queued_total));
  w.Counter("cppetcd_range_requests_refused_total",
            "Range calls refused (too many requests) because the wait queue was full.",
            static_cast<double>(stats.refused_total));
}

}  // namespace cppetcd::api
