// Time sources. Modules that need time take a Clock* so that tests drive time
// by hand (FakeClock) and never sleep.
#ifndef CPPETCD_UTIL_CLOCK_H_
#define CPPETCD_UTIL_CLOCK_H_

#include <chrono>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "cppetcd/util/mutex.h"

namespace cppetcd::util {

class Clock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  // Monotonic now. Thread-safe.
  virtual TimePoint Now() const = 0;
  // Wall-clock time in milliseconds since the Unix epoch. Thread-safe.
  virtual int64_t WallMillis() const = 0;
};

// The real clocks (steady_clock, system_clock). A process-wide instance.
class SystemClock final : public Clock {
 public:
  static SystemClock* Get();
  TimePoint Now() const override { return std::chrono::steady_clock::now(); }
  int64_t WallMillis() const override;
};

// A clock that moves only when told. Thread-safe.
class FakeClock final : public Clock {
 public:
  FakeClock() = default;
  TimePoint Now() const override;
  int64_t WallMillis() const override;
  void Advance(std::chrono::nanoseconds d);

 private:
  mutable Mutex mu_;
  TimePoint now_ ABSL_GUARDED_BY(mu_){std::chrono::hours(1)};
  int64_t wall_ms_ ABSL_GUARDED_BY(mu_) = 1'700'000'000'000;
};

}  // namespace cppetcd::util

#endif  // CPPETCD_UTIL_CLOCK_H_
