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
  std::lock_guard<std::mutex> l(mu_);
  if (started_) return absl::FailedPreconditionError("timer guard already started");
  started_ = true;
  stop_ = false;
  grpc_init();  // the timer manager exists from here until grpc_shutdown
  thread_ = std::thread([this, period] { Run(period); });
  return absl::OkStatus();
}

void GrpcTimerGuard::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!started_) return;
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  std::lock_guard<std::mutex> l(mu_);
  started_ = false;
  grpc_shutdown();
}

uint64_t GrpcTimerGuard::kicks() const {
  std::lock_guard<std::mutex> l(mu_);
  return kicks_;
}

void GrpcTimerGuard::Run(std::chrono::milliseconds period) {
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    // std::condition_variable waits on the steady clock (CLOCK_MONOTONIC), so
    // this loop itself is immune to the steps it guards against.
    if (cv_.wait_for(l, period, [this] { return stop_; })) return;
    l.unlock();
    grpc_kick_poller();
    l.lock();
    ++kicks_;
  }
}

}  // namespace cppetcd::transport
