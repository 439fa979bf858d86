// The maintenance thread of EtcdServer (private to src/server): online
// defragmentations, which must not hold the apply loop (etcd 3.4
// v3rpc/maintenance.go Defragment, serialised), and the corruption checks of
// etcd 3.4 etcdserver/corrupt.go:
// - initial (--experimental-initial-corrupt-check), InitialCorruptCheck at
//   Start: this member's HashKV at its current revision against each
//   reachable peer's at that revision; a different hash at the same compact
//   revision fails Start ("<id> found data inconsistency with peers").
//   Unreachable peers and a different compact revision are logged only.
// - periodic (--experimental-corrupt-check-time), CheckHashKV every interval
//   on the leader: its HashKV (h1), the followers' at h1's revision, a
//   linearizable read barrier, its HashKV again (h2). A CORRUPT alarm is
//   raised (at most once per check) when h1 and h2 differ at the same
//   revision and compact revision, or a follower is ahead of h2 (revision or
//   compact revision), or a follower at h1's compact revision has another
//   hash. A follower at another compact revision (behind, compacted
//   differently) and one that did not answer are not compared.
// What touches the server (hashes, peers, the barrier, the alarm proposal,
// the backend) goes through MaintenanceHost, so tests drive it with a fake.
//
// Defragmentation requests queue while the thread is busy; each run answers
// every request queued before it started with its result, so requests that
// arrive during a run share the next run. Timers (the check interval) are on
// the injected clock.
//
// Invariants: every Done passed to Defragment runs exactly once, never under
// the lock: with the result of a run, ErrStopped (before Start, after Stop
// began, or still queued when Stop ends the thread), or ErrTooManyRequests
// (the queue is full). One run at a time; at most max_queued_defragmentations
// requests wait.
// CheckHashKV runs only on the maintenance thread, only when the interval
// is > 0 and host->IsLeader(), and not while defragmentations are queued.
//
// Thread-safety: Defragment from any thread; Start, Stop once each, from the
// owner (Stop after Start, or without Start). The host's methods run on the
// maintenance thread, or on the Start caller's thread (initial check).
#ifndef CPPETCD_SRC_SERVER_MAINTENANCE_THREAD_H_
#define CPPETCD_SRC_SERVER_MAINTENANCE_THREAD_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppetcd/mvcc/kvstore.h"
#include "cppetcd/server/etcd_server.h"
#include "cppetcd/util/clock.h"
#include "cppetcd/util/log.h"
#include "cppetcd/util/mutex.h"
#include "etcdserverpb/rpc.pb.h"

namespace cppetcd::server {

// One peer's HashKV answer (or error) for a check.
struct PeerHashKV {
  uint64_t id = 0;
  std::vector<std::string> urls;
  absl::StatusOr<etcdserverpb::HashKVResponse> resp = absl::UnknownError("no answer");
};

// The server side of Maintenance (EtcdServer::Impl in production).
class MaintenanceHost {
 public:
  virtual ~MaintenanceHost() = default;
  // This member's ID, for the log lines.
  virtual uint64_t MemberId() const = 0;
  // Leader now and not stopping: the periodic check runs only then.
  virtual bool IsLeader() const = 0;
  // This member's HashKV at its current revision (mvcc::Store::HashByRev(0)).
  virtual absl::StatusOr<mvcc::HashResult> LocalHashKV() = 0;
  // Every other member's HashKV at `revision`, one entry per member, with
  // its error if it did not answer in time. Bounded in time by the host.
  virtual std::vector<PeerHashKV> PeerHashKVs(int64_t revision) = 0;
  // A linearizable read barrier: OK once this member is known to be the
  // leader with its state up to date; an error (timeout, stopped) else.
  virtual absl::Status ReadBarrier() = 0;
  // Proposes the CORRUPT alarm (member ID 0, as etcd) through raft.
  virtual void RaiseCorruptAlarm() = 0;
  // One online defragmentation of the backend, disk room included.
  virtual absl::Status DefragmentBackend() = 0;
  // The header of a DefragmentResponse (cluster, member, revision, term).
  virtual void FillHeader(etcdserverpb::ResponseHeader* h) = 0;
};

class Maintenance {
 public:
  struct Options {
    util::Clock* timer_clock = nullptr;            // the check interval; not owned
    bool initial_corrupt_check = false;            // Start runs InitialCorruptCheck
    std::chrono::milliseconds corrupt_check_time{0};  // <= 0: no periodic check
    std::chrono::milliseconds request_timeout{5000};  // logged by the initial check
    // Defragmentations queued for the next run past which Defragment answers
    // ErrTooManyRequests at once (each holds a gRPC call's answer).
    size_t max_queued_defragmentations = 1024;
  };
  // `host` (not owned) outlives this.
  Maintenance(Options opts, MaintenanceHost* host, util::Logger logger);
  ~Maintenance();  // Stop()
  Maintenance(const Maintenance&) = delete;
  Maintenance& operator=(const Maintenance&) = delete;

  // Runs the initial check if configured (its error fails Start and no
  // thread starts), then starts the thread.
  absl::Status Start();
  // Ends the thread after the run in progress (its waiters get its result)
  // and fails the queued requests with ErrStopped. Idempotent.
  void Stop();

  // Queues an online defragmentation; `done` gets an OK response with the
  // host's header, the host's error, ErrStopped, or ErrTooManyRequests when
  // max_queued_defragmentations are queued already.
  void Defragment(Done<etcdserverpb::DefragmentResponse> done);

  // The checks themselves (the thread and Start call them; public for tests).
  absl::Status InitialCorruptCheck();
  void CheckHashKV();

 private:
  void Loop();
  void RunDefragmentations(std::vector<Done<etcdserverpb::DefragmentResponse>> waiters);

  const Options opts_;
  MaintenanceHost* const host_;
  util::Logger lg_;
  util::Mutex mu_;
  util::CondVar cv_;
  // Requests for the next run (not the one in progress).
  std::vector<Done<etcdserverpb::DefragmentResponse>> defrag_waiters_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // set under mu_ in Start; joined in Stop
};

}  // namespace cppetcd::server

#endif  // CPPETCD_SRC_SERVER_MAINTENANCE_THREAD_H_
