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
  std::lock_guard<std::mutex> lock(mu_);
  return now_;
}

int64_t FakeClock::WallMillis() const {
  std::lock_guard<std::mutex> lock(mu_);
  return wall_ms_;
}

void FakeClock::Advance(std::chrono::nanoseconds d) {
  std::lock_guard<std::mutex> lock(mu_);
  now_ += d;
  wall_ms_ += std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

}  // namespace cppetcd::util
