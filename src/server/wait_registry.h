// The proposal waiters of EtcdServer (private to src/server), as etcd 3.4's
// pkg/wait.Wait plus the request timeout of its v3_server.go: a proposal
// registers a waiter under its request ID; the apply loop (or whoever fails
// the proposal first) completes it by ID; the housekeeping loop expires
// those past their deadline with ErrTimeout; Stop fails the rest with
// ErrStopped. Also the waits for physical compactions (Compact with
// physical=true answers once the store has compacted on disk).
//
// Invariants: a registered waiter runs exactly once (completed, expired or
// failed at stop) and never under the registry's lock, so a waiter may call
// back into the server (propose, read) freely. Two waiters never share an
// ID: registering an ID that is waited on already refuses the newcomer
// (Internal) and keeps the first. Request IDs come from IdGenerator, unique
// per member, so this does not happen in a running server.
//
// Metrics (ServerMetrics, optional): proposals_pending counts the waiters
// held, proposals_pending_peak its highest value, proposals_failed the
// waiters completed with an error or expired (not those failed at stop, as
// before this type existed), stage_propose_to_reply the time from Register
// to a completion that carries a revision (the entry applied). The metrics
// are updated before the waiter runs.
//
// Thread-safety: every method may be called from any thread.
#ifndef CPPETCD_SRC_SERVER_WAIT_REGISTRY_H_
#define CPPETCD_SRC_SERVER_WAIT_REGISTRY_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "cppetcd/server/applier.h"
#include "cppetcd/server/etcd_server.h"
#include "cppetcd/util/clock.h"
#include "cppetcd/util/mutex.h"

namespace cppetcd::server {

// The outcome of a proposal as seen by its waiter.
struct Outcome {
  absl::Status status;  // ErrStopped/ErrTimeout/... or the request's error
  ApplyResult result;
  std::optional<etcdserverpb::AlarmResponse> alarm;
  // Auth requests (auth.cc): the response message of the request's type.
  std::shared_ptr<google::protobuf::Message> auth_response;
  // The store revision right after this entry applied (0: not applied):
  // the response header's revision when the response carries none. Its
  // reply may go out before the batch's commit publishes the revision.
  int64_t revision = 0;
};
using Waiter = absl::AnyInvocable<void(Outcome) &&>;

class WaitRegistry {
 public:
  using TimePoint = util::Clock::TimePoint;
  using PhysicalFn = absl::AnyInvocable<void(absl::Status) &&>;

  struct Options {
    util::Clock* clock = nullptr;  // Register's time and the metric; required
    // A waiter is due this long after Register (etcd --request-timeout).
    std::chrono::milliseconds timeout{5000};
    // Register(kBounded) refuses past this many waiters held (>= 1).
    size_t max_waiters = 10000;
    ServerMetrics* metrics = nullptr;  // optional
  };
  // kBounded: refused with ErrTooManyRequests once max_waiters are held
  // (client proposals). kExempt: never refused for the count (conf changes,
  // as before: a member change must get through a flood).
  enum class Bound { kBounded, kExempt };

  explicit WaitRegistry(Options o);
  WaitRegistry(const WaitRegistry&) = delete;
  WaitRegistry& operator=(const WaitRegistry&) = delete;

  // Holds `w` for `id`, due at clock->Now() + timeout. OK, or the reason it
  // was refused, in which case `w` has already run (outside the lock) with
  // that status: ErrTooManyRequests (full, kBounded), ErrStopped (after
  // FailAll), Internal (`id` is waited on already).
  absl::Status Register(uint64_t id, Waiter w, Bound bound = Bound::kBounded);
  // Runs the waiter of `id` with `o` (outside the lock) and forgets it;
  // false if none is held (completed already, expired, or another member's
  // request).
  bool Complete(uint64_t id, Outcome o);
  // Runs every waiter due at or before `now` (a time of the same clock)
  // with ErrTimeout; returns how many.
  size_t ExpireDue(TimePoint now);
  // Stop: runs every waiter held with ErrStopped and every physical wait
  // with ErrStopped; later Register and AddPhysicalWait are answered with
  // ErrStopped at once.
  void FailAll();
  size_t size() const;

  // Physical compaction waits: `fn` runs with the future's status once it
  // is ready (found by PollPhysical), or with ErrStopped at FailAll.
  void AddPhysicalWait(std::shared_future<absl::Status> done, PhysicalFn fn);
  // Runs the physical waits whose future is ready; returns how many.
  size_t PollPhysical();

 private:
  struct Entry {
    Waiter fn;
    TimePoint deadline;
    TimePoint proposed;  // propose_to_reply metric
  };
  struct PhysicalWait {
    std::shared_future<absl::Status> future;
    PhysicalFn fn;
  };

  const Options opts_;
  mutable util::Mutex mu_;
  absl::flat_hash_map<uint64_t, Entry> waiters_ ABSL_GUARDED_BY(mu_);
  std::vector<PhysicalWait> physical_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace cppetcd::server

#endif  // CPPETCD_SRC_SERVER_WAIT_REGISTRY_H_
