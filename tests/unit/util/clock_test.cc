#include "cppetcd/util/clock.h"

#include "gtest/gtest.h"

namespace cppetcd::util {
namespace {

TEST(ClockTest, FakeClockMovesOnlyWhenAdvanced) {
  FakeClock c;
  auto t0 = c.Now();
  int64_t w0 = c.WallMillis();
  EXPECT_EQ(c.Now(), t0);
  c.Advance(std::chrono::milliseconds(1500));
  EXPECT_EQ(c.Now() - t0, std::chrono::milliseconds(1500));
  EXPECT_EQ(c.WallMillis() - w0, 1500);
}

TEST(ClockTest, SystemClockIsMonotonic) {
  auto a = SystemClock::Get()->Now();
  auto b = SystemClock::Get()->Now();
  EXPECT_LE(a, b);
  EXPECT_GT(SystemClock::Get()->WallMillis(), 1'600'000'000'000);
}

}  // namespace
}  // namespace cppetcd::util
