// Prometheus text exposition (format 0.0.4) of cppetcd's metrics under
// etcd 3.4's names (etcdserver/metrics.go, mvcc/metrics.go, wal/metrics.go,
// mvcc/backend/metrics.go, rafthttp/metrics.go, go-grpc-prometheus), and the
// gRPC server interceptor that counts requests as go-grpc-prometheus does.
#ifndef CPPETCD_API_METRICS_H_
#define CPPETCD_API_METRICS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "cppetcd/api/range_budget.h"
#include "cppetcd/util/clock.h"
#include "cppetcd/util/histogram.h"
#include "cppetcd/util/mutex.h"

namespace grpc::experimental {
class ServerInterceptorFactoryInterface;
}
namespace cppetcd::server {
class EtcdServer;
}

namespace cppetcd::api {

// Label pairs in output order, e.g. {{"To", "8e9e05c52164694d"}}.
using Labels = std::vector<std::pair<std::string, std::string>>;

// Writes one scrape. Samples of a family must be written together; the
// first sample of a family writes its "# HELP" and "# TYPE" lines. Values
// are printed as Go's Prometheus client prints them (integers without a
// fraction, others with up to 17 significant digits, 2.147483648e+09 for
// large round numbers). Label values are escaped (\\, \", \n).
class ExpositionWriter {
 public:
  void Gauge(std::string_view name, std::string_view help, double value, const Labels& labels = {});
  void Counter(std::string_view name, std::string_view help, double value,
               const Labels& labels = {});
  // _bucket{le=...} lines (cumulative, then +Inf), _sum and _count.
  void Histogram(std::string_view name, std::string_view help, const util::HistogramSnapshot& h,
                 const Labels& labels = {});
  // HELP and TYPE only: a family with no samples yet (e.g. the peer RTT
  // histogram of a single member), so that its name is always present.
  void Declare(std::string_view name, std::string_view help, std::string_view type);

  const std::string& Text() const { return out_; }

  // Go's strconv.FormatFloat(v, 'g', -1, 64) as the Prometheus client uses it.
  static std::string FormatValue(double v);

 private:
  void Header(std::string_view name, std::string_view help, std::string_view type);
  void Sample(std::string_view name, const Labels& labels, double value,
              const std::pair<std::string, std::string>* extra = nullptr);

  std::string out_;
  std::string last_family_;
};

// A set of collectors rendered in registration order. Thread-safe.
class MetricsRegistry {
 public:
  using Collector = std::function<void(ExpositionWriter&)>;
  void Add(Collector collector);
  // The whole scrape (Content-Type "text/plain; version=0.0.4; charset=utf-8").
  std::string Render() const;

 private:
  mutable util::Mutex mu_;
  std::vector<Collector> collectors_ ABSL_GUARDED_BY(mu_);
};

// grpc_server_started_total, grpc_server_handled_total, grpc_server_msg_received_total,
// grpc_server_msg_sent_total with labels grpc_type (unary, client_stream,
// server_stream, bidi_stream), grpc_service ("etcdserverpb.KV"), grpc_method
// ("Range") and, for handled, grpc_code (Go's code names: OK, Canceled,
// InvalidArgument, ...). With `extensive` (etcd --metrics extensive) also
// the grpc_server_handling_seconds histogram per method (Prometheus'
// default buckets, 5 ms to 10 s). Thread-safe.
class GrpcMetrics {
 public:
  // `clock` times the handling of a call (extensive mode); null: SystemClock.
  explicit GrpcMetrics(bool extensive = false, util::Clock* clock = nullptr);
  ~GrpcMetrics();
  // An interceptor factory for ApiServerOptions::interceptors; it refers to
  // this object, which must outlive the gRPC server.
  std::shared_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();
  void Collect(ExpositionWriter& w) const;

  // Counting entry points (used by the interceptor; public for tests).
  // `full_method` is gRPC's "/package.Service/Method".
  void OnStarted(std::string_view full_method, std::string_view type);
  void OnReceived(std::string_view full_method, std::string_view type);
  void OnSent(std::string_view full_method, std::string_view type);
  void OnHandled(std::string_view full_method, std::string_view type, int grpc_code);
  // Extensive mode only; `seconds` from the call's start to its status.
  void OnHandlingTime(std::string_view full_method, std::string_view type, double seconds);
  bool extensive() const { return extensive_; }
  util::Clock* clock() const { return clock_; }

  // Go's name of a gRPC status code ("OK", "Canceled", "Unknown", ...).
  static std::string_view CodeName(int grpc_code);

 private:
  struct Key {
    std::string service, method, type;
    auto operator<=>(const Key&) const = default;
  };
  struct Counts {
    uint64_t started = 0, received = 0, sent = 0;
    std::map<int, uint64_t> handled;  // by gRPC code
    std::unique_ptr<util::Histogram> handling_seconds;  // extensive mode, created on first use
  };
  Counts& Slot(std::string_view full_method, std::string_view type) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const bool extensive_;
  util::Clock* const clock_;
  mutable util::Mutex mu_;
  std::map<Key, Counts> counts_ ABSL_GUARDED_BY(mu_);
};

// etcd_network_peer_round_trip_time_seconds{To="<peer id hex>"} from
// per-peer snapshots (e.g. GrpcTransport::PeerRoundTripTimes()); with none,
// the family is only declared.
void WritePeerRoundTripTimes(ExpositionWriter& w,
                             const std::map<uint64_t, util::HistogramSnapshot>& peers);

// Process basics from /proc/self (process_resident_memory_bytes,
// process_virtual_memory_bytes, process_open_fds, process_max_fds,
// process_cpu_seconds_total, process_start_time_seconds).
void CollectProcessMetrics(ExpositionWriter& w);

// etcd's server, disk and mvcc families for `server` (which must outlive
// the registry's use): has_leader, is_leader, is_learner, leader changes,
// proposals committed/applied/pending/failed, slow applies, quota, id,
// version and cluster version info gauges, WAL fsync and backend commit
// histograms, db total size and in-use size (both the etcd_mvcc_ and the
// etcd_debugging_mvcc_ names), keys total and current/compact revision.
void CollectServerMetrics(server::EtcdServer* server, ExpositionWriter& w);

// cppetcd's own gauges of the bound on Range answers in flight
// (range_budget.h): cppetcd_range_response_bytes_in_flight,
// cppetcd_range_responses_in_flight, cppetcd_range_requests_queued and the
// limit, cppetcd_range_response_bytes_limit.
void CollectRangeBudgetMetrics(const RangeBudget::Stats& stats, ExpositionWriter& w);

}  // namespace cppetcd::api

#endif  // CPPETCD_API_METRICS_H_
