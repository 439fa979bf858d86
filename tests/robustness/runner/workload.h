// The robustness runner's clients: KV clients doing a seeded random mix of
// Put, Get (linearizable or serializable), Delete, Txn compare-and-swap and
// prefix Range over a small key set; watch clients that resume after errors;
// a lease client (grant, put with lease, keep-alive, revoke or expiry). Each
// records what it sent and what it got into a HistoryRecorder.
//
// Every RPC has a deadline (Workload::Config::op_timeout); every loop is
// bounded in count and stops when Stop() is called.
//
// Thread-safety: Workload starts and owns its threads; Start/Stop/Join and
// the final-read helpers are called from one controlling thread.
#ifndef CPPETCD_TESTS_ROBUSTNESS_RUNNER_WORKLOAD_H_
#define CPPETCD_TESTS_ROBUSTNESS_RUNNER_WORKLOAD_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "history_io.h"

namespace cppetcd::robustness {

// The key space: two groups of four keys, so that a prefix Range reads one
// group. Watches cover kKvPrefix; lease keys live outside it.
inline constexpr char kKvPrefix[] = "/rb/kv/";
inline constexpr char kLeasePrefix[] = "/rb/lease/";
// Written once after the fault window so that watchers can tell they caught
// up (inside kKvPrefix, group "z").
inline constexpr char kSentinelKey[] = "/rb/kv/z/end";
std::vector<std::string> KvKeys();          // the 8 keys, sorted
std::vector<std::string> KvGroupPrefixes();  // "/rb/kv/a/", "/rb/kv/b/"

// A channel to `endpoint` ("127.0.0.1:port") with short reconnect backoff
// (100 ms .. 1 s), so a restarted member is found again quickly, and 5 s for
// each connection attempt.
std::shared_ptr<grpc::Channel> NewClientChannel(const std::string& endpoint);

// How a gRPC status maps to an Outcome: OK -> kOk; errors the server gives
// before it proposes anything (InvalidArgument, PermissionDenied,
// Unauthenticated, Unimplemented, OutOfRange) -> kFailed, and so is an
// Unavailable that gRPC raised because the channel had no connection ("failed
// to connect to all addresses": the call was never sent); everything else
// (DeadlineExceeded, other Unavailable, Unknown, ...) -> kUnknown. A call
// wrongly taken as failed could hide a write from the checker, so only that
// exact client-side message counts.
Outcome ClassifyStatus(const grpc::Status& status);

class Workload {
 public:
  struct Config {
    uint64_t seed = 1;
    int kv_clients = 4;
    int watch_clients = 2;
    bool lease_client = true;
    std::vector<std::string> endpoints;  // member i's client endpoint
    std::chrono::milliseconds op_timeout{1500};
  };

  Workload(Config config, HistoryRecorder* recorder);
  ~Workload();  // Stop() and Join()
  Workload(const Workload&) = delete;
  Workload& operator=(const Workload&) = delete;

  void Start();
  // Asks the KV and lease clients to stop after their current operation.
  void StopClients();
  void JoinClients();

  // Final reads, first through member `member`: Put of kSentinelKey, then a
  // linearizable Get of every key and a Range of every group, each retried
  // (recorded every time) up to `attempts` times until it succeeds, each
  // retry on the next member over a new channel. Returns
  // the sentinel Put's revision (0 if it never succeeded).
  int64_t FinalReads(int member, int attempts);
  // Waits until every watcher has seen an event at revision >= `revision`,
  // or `timeout`; returns the watchers that did not (as text), empty if all.
  std::vector<std::string> WaitWatchersCaughtUp(int64_t revision,
                                                std::chrono::milliseconds timeout);
  // Cancels the watch streams and joins the watch threads.
  void StopWatchers();

  // Operations attempted so far (KV and lease), for the progress line.
  int64_t attempted() const { return attempted_.load(); }

 private:
  struct WatchSlot {
    std::mutex mu;
    grpc::ClientContext* ctx = nullptr;  // the open stream's, or null
    std::atomic<int64_t> seen_revision{0};
  };

  void KvClientLoop(int client);
  void WatchLoop(int watcher);
  void LeaseLoop(int client);
  // One KV operation `op` (fields set except id/times/results) against
  // member `member`; records invoke and completion, returns the outcome.
  Outcome DoKv(Operation op, int member, etcdserverpb::KV::Stub* stub, Operation* result);
  etcdserverpb::KV::Stub* KvStub(int member);

  Config config_;
  HistoryRecorder* recorder_;
  std::atomic<bool> stop_clients_{false};
  std::atomic<bool> stop_watchers_{false};
  std::atomic<int64_t> attempted_{0};
  // One shared channel and stub per member (stubs are thread-safe).
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> kv_stubs_;
  std::vector<std::unique_ptr<WatchSlot>> watch_slots_;
  std::vector<std::thread> client_threads_;
  std::vector<std::thread> watch_threads_;
};

}  // namespace cppetcd::robustness

#endif  // CPPETCD_TESTS_ROBUSTNESS_RUNNER_WORKLOAD_H_
