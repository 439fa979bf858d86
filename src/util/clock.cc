#include "cppetcd/util/clock.h"

namespace cppetcd::util {

SystemClock* SystemClock::Get() {
  static SystemClock* clock = new SystemClock();
  return clock;
}

int64_t SystemClock::WallMillis() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

FakeClock::TimePoint FakeClock::Now() const {
  MutexLock lock(&mu_);
  return now_;
}

int64_t FakeClock::WallMillis() const {
  MutexLock lock(&mu_);
  return wall_ms_;
}

void FakeClock::Advance(std::chrono::nanoseconds d) {
  MutexLock lock(&mu_);
  now_ += d;
  wall_ms_ += std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

}  // namespace cppetcd::util
