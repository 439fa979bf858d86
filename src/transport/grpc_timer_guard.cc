#include "cppetcd/transport/grpc_timer_guard.h"

#include <grpc/grpc.h>

#include <utility>

// gRPC's own kick of its timer manager (src/core/lib/iomgr/timer_manager.h),
// exported by libgrpc but not in its public headers. Weak: null where the
// linked gRPC lacks it.
void grpc_kick_poller() __attribute__((weak));

namespace cppetcd::transport {

GrpcTimerGuard::~GrpcTimerGuard() { Stop(); }

absl::Status GrpcTimerGuard::Start(std::chrono::milliseconds period) {
  if (period.count() <= 0) return absl::InvalidArgumentError("timer guard period must be > 0");
  if (grpc_kick_poller == nullptr) {
    return absl::UnimplementedError("this gRPC does not export grpc_kick_poller");
  }
  util::MutexLock l(&mu_);
  if (started_) return absl::FailedPreconditionError("timer guard already started");
  started_ = true;
  stop_ = false;
  grpc_init();  // the timer manager exists from here until grpc_shutdown
  thread_ = std::thread([this, period] { Run(period); });
  return absl::OkStatus();
}

void GrpcTimerGuard::Stop() {
  {
    util::MutexLock l(&mu_);
    if (!started_) return;
    stop_ = true;
  }
  cv_.SignalAll();
  thread_.join();
  util::MutexLock l(&mu_);
  started_ = false;
  grpc_shutdown();
}

uint64_t GrpcTimerGuard::kicks() const {
  util::MutexLock l(&mu_);
  return kicks_;
}

void GrpcTimerGuard::Run(std::chrono::milliseconds period) {
  util::MutexLock l(&mu_);
  while (true) {
    // util::CondVar waits on the steady clock (CLOCK_MONOTONIC), so
    // this loop itself is immune to the steps it guards against.
    if (cv_.WaitFor(&mu_, period, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; })) {
      return;
    }
    l.Unlock();
    grpc_kick_poller();
    l.Lock();
    ++kicks_;
  }
}

}  // namespace cppetcd::transport
