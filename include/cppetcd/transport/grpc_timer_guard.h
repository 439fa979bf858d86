// GrpcTimerGuard: keeps gRPC's timers running across a backward step of the
// wall clock.
//
// Why: Debian's gRPC (1.51, built on Abseil's synchronization) puts its timer
// thread to sleep with an *absolute CLOCK_REALTIME* deadline (gpr_cv_wait →
// absl::CondVar::WaitWithDeadline → a futex on the realtime clock). When the
// wall clock steps back by X while that thread sleeps (NTP stepping a clock
// that ran ahead, an operator fixing the date), the sleep lasts X longer, and
// no new timer wakes it (it is only kicked by a timer earlier than the one it
// last saw, which is already past). For X every gRPC timer in the process is
// dead: reconnect backoffs, connect timeouts, call deadlines. A member then
// cannot reconnect to any peer whose connection drops (found by the fault
// harness's clock-jump fault; docs/reliability.md). etcd (Go) is immune: Go's
// timers use the monotonic clock.
//
// What: a thread that kicks gRPC's timer manager every `period` (it wakes, runs
// what has expired and sleeps again with a deadline computed from the clock as
// it is now), so a step back delays gRPC's timers by at most `period`. The kick
// is gRPC's own grpc_kick_poller(); where the linked gRPC does not export it,
// Start() returns kUnimplemented and nothing runs.
//
// Thread-safety: Start and Stop from one owner thread; the destructor stops.
#ifndef CPPETCD_TRANSPORT_GRPC_TIMER_GUARD_H_
#define CPPETCD_TRANSPORT_GRPC_TIMER_GUARD_H_

#include <chrono>
#include <cstdint>
#include <thread>

#include "absl/status/status.h"
#include "cppetcd/util/mutex.h"

namespace cppetcd::transport {

class GrpcTimerGuard {
 public:
  GrpcTimerGuard() = default;
  ~GrpcTimerGuard();
  GrpcTimerGuard(const GrpcTimerGuard&) = delete;
  GrpcTimerGuard& operator=(const GrpcTimerGuard&) = delete;

  // Starts kicking every `period` (> 0; 500 ms in the server). Holds a gRPC
  // library reference (grpc_init) until Stop. Errors: kFailedPrecondition if
  // already started, kInvalidArgument for period <= 0, kUnimplemented if this
  // gRPC has no timer kick.
  absl::Status Start(std::chrono::milliseconds period);
  // Stops and joins the thread; idempotent.
  void Stop();

  // Kicks so far (for tests).
  uint64_t kicks() const;

 private:
  void Run(std::chrono::milliseconds period);

  mutable util::Mutex mu_;
  util::CondVar cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t kicks_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace cppetcd::transport

#endif  // CPPETCD_TRANSPORT_GRPC_TIMER_GUARD_H_
