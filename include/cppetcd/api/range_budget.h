// The bound on the bytes of Range answers in flight (issue 14: a full LIST
// of a large keyspace, once per concurrent client, must not take the
// server's memory with it). A Range is admitted with the estimated size of
// its answer and holds that charge until gRPC is done with the answer (the
// call is done and the answer's bytes are freed: for the JSON gateway, which
// gets the server's own slices over the in-process channel, once it has
// written the answer as JSON or its client has gone); a
// Range that does not fit waits in a FIFO queue and starts when earlier
// answers have been sent. It never fails for want of budget.
//
// Admission rule: an entry is admitted when nothing is queued ahead of it
// and either nothing is in flight or in_flight_bytes + bytes <= limit, so a
// single answer larger than the limit is still served, alone. The charge of
// an admitted entry may change once its answer is built (Adjust): only
// growth between the estimate and the build (writes meanwhile) can take the
// total past the limit.
//
// The queue is bounded too: a waiting entry stands for a gRPC call that
// holds its request (key and range_end, up to --max-request-bytes, twice
// for a raw Range: gRPC's buffer and the parsed copy) and gRPC's call state,
// and nothing else bounds how many wait (--max-concurrent-streams is
// 2^32-1 by default, per connection, over any number of connections). Past
// max_queued entries, or max_queued_held_bytes of their requests, Acquire
// refuses; the caller answers as etcd does when it is overloaded,
// ResourceExhausted "etcdserver: too many requests" (which clients do not
// retry blindly).
#ifndef CPPETCD_API_RANGE_BUDGET_H_
#define CPPETCD_API_RANGE_BUDGET_H_

#include <cstdint>
#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "cppetcd/util/mutex.h"

namespace cppetcd::api {

class RangeBudget {
 public:
  // 256 MiB: a few large LISTs at once (one 200 MB keyspace LIST at a
  // time), any number of small ranges. No flag: the default applies.
  static constexpr uint64_t kDefaultLimitBytes = uint64_t{256} << 20;
  // Entries waiting at once: far more than the concurrent LISTs a member
  // serves, few enough that their calls' state stays small (a few MiB).
  static constexpr size_t kDefaultMaxQueued = 1024;
  // Bytes of requests held by waiting entries (see held_bytes in Acquire).
  static constexpr uint64_t kDefaultMaxQueuedHeldBytes = uint64_t{64} << 20;

  enum class Admission {
    kAdmitted,  // charged now; on_admitted is dropped, the caller goes on
    kQueued,    // on_admitted runs later unless Cancel removes the entry
    kRefused,   // the queue is full: nothing charged or queued
  };

  // Identifies one entry; from NewTicket, never 0.
  using Ticket = uint64_t;
  // Runs once when a queued entry is admitted, on the budget's own thread
  // (never on the thread that released the budget).
  using OnAdmitted = absl::AnyInvocable<void() &&>;

  // limit_bytes > 0; max_queued and max_queued_held_bytes bound the queue
  // (at least one entry may always wait).
  explicit RangeBudget(uint64_t limit_bytes = kDefaultLimitBytes,
                       size_t max_queued = kDefaultMaxQueued,
                       uint64_t max_queued_held_bytes = kDefaultMaxQueuedHeldBytes);
  // Joins the thread. Every entry must have been admitted (and run) or
  // cancelled by then (the gRPC server that fed it has shut down).
  // Charges still held are not released (nothing is left to admit).
  ~RangeBudget();
  RangeBudget(const RangeBudget&) = delete;
  RangeBudget& operator=(const RangeBudget&) = delete;

  Ticket NewTicket();
  // Admits `bytes` for `ticket` now, or queues the entry, or refuses it
  // when the queue is at max_queued entries or its held bytes plus
  // `held_bytes` (the memory the waiting caller keeps, its request) would
  // pass max_queued_held_bytes (see Admission).
  Admission Acquire(Ticket ticket, uint64_t bytes, OnAdmitted on_admitted,
                    uint64_t held_bytes = 0);
  // Removes a queued entry: true if it was queued (on_admitted will not
  // run), false if it was admitted already (or never acquired).
  bool Cancel(Ticket ticket);
  // An admitted charge changes from `from` to `to` bytes.
  void Adjust(uint64_t from, uint64_t to);
  // Returns an admitted charge of `bytes`; admits queued entries that fit.
  void Release(uint64_t bytes);

  struct Stats {
    uint64_t limit_bytes = 0;
    uint64_t in_flight_bytes = 0;  // charges admitted and not released
    uint64_t in_flight = 0;        // entries admitted and not released
    uint64_t queued = 0;           // entries waiting
    uint64_t admitted_total = 0;   // entries ever admitted
    uint64_t queued_total = 0;     // entries that ever waited
    uint64_t peak_queued = 0;
    uint64_t queued_held_bytes = 0;  // held_bytes of the entries waiting
    uint64_t refused_total = 0;      // entries refused: the queue was full
    // The most bytes in flight seen while two or more entries were in
    // flight (at most limit_bytes unless a charge grew, see Adjust).
    uint64_t peak_shared_in_flight_bytes = 0;
  };
  Stats GetStats() const;

 private:
  struct Entry {
    Ticket ticket = 0;
    uint64_t bytes = 0;
    uint64_t held_bytes = 0;
    OnAdmitted on_admitted;
  };
  bool FitsLocked(uint64_t bytes) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AdmitLocked(uint64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves the queue's head entries that fit to ready_.
  void AdmitQueuedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Run();

  const uint64_t limit_bytes_;
  const size_t max_queued_;
  const uint64_t max_queued_held_bytes_;
  mutable util::Mutex mu_;
  util::CondVar cv_;  // ready_ or stop_ changed
  Ticket next_ticket_ ABSL_GUARDED_BY(mu_) = 1;
  std::deque<Entry> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<Entry> ready_ ABSL_GUARDED_BY(mu_);  // admitted, on_admitted not yet run
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace cppetcd::api

#endif  // CPPETCD_API_RANGE_BUDGET_H_
