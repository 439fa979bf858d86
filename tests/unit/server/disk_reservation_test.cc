// DiskReservation (src/server/disk_reservation.h): room for backend copies
// against the free space of a FaultInjectionEnv, driven past its bound.
#include "src/server/disk_reservation.h"

#include <string>

#include "gtest/gtest.h"

#include "cppetcd/util/env.h"
#include "cppetcd/util/fault_injection_env.h"
#include "cppetcd/util/log.h"

namespace cppetcd::server {
namespace {

constexpr uint64_t kMiB = 1u << 20;

class DiskReservationTest : public ::testing::Test {
 protected:
  util::FaultInjectionEnv env_{util::Env::Default()};
  util::CapturedLog log_ = util::NewCapturedLog();
  util::Logger lg_{"test", log_.sink};
};

TEST_F(DiskReservationTest, ReservesUpToFreeSpaceMinusHeadroomAndReleases) {
  env_.SetFreeSpaceBytes(100 * kMiB);
  DiskReservation d(&env_, "/tmp", /*headroom_bytes=*/10 * kMiB, lg_);
  // 60 + 0 + 10 <= 100.
  ASSERT_TRUE(d.Reserve("a snapshot", 60 * kMiB).ok());
  EXPECT_EQ(d.ReservedBytes(), 60 * kMiB);
  // 30 + 60 + 10 == 100: exactly at the bound.
  ASSERT_TRUE(d.Reserve("a snapshot", 30 * kMiB).ok());
  EXPECT_EQ(d.ReservedBytes(), 90 * kMiB);
  // One byte past the bound is refused and reserves nothing.
  absl::Status s = d.Reserve("a defragmentation", 1);
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_NE(s.message().find("not enough free disk space for a defragmentation"),
            std::string::npos)
      << s;
  EXPECT_NE(s.message().find("/tmp"), std::string::npos) << s;
  EXPECT_EQ(d.ReservedBytes(), 90 * kMiB);
  // Released room is usable again.
  d.Release(30 * kMiB);
  EXPECT_EQ(d.ReservedBytes(), 60 * kMiB);
  EXPECT_TRUE(d.Reserve("a snapshot", 30 * kMiB).ok());
  d.Release(30 * kMiB);
  d.Release(60 * kMiB);
  EXPECT_EQ(d.ReservedBytes(), 0u);
}

TEST_F(DiskReservationTest, HeadroomAloneCanRefuse) {
  env_.SetFreeSpaceBytes(10 * kMiB);
  DiskReservation d(&env_, "/tmp", /*headroom_bytes=*/10 * kMiB, lg_);
  EXPECT_TRUE(absl::IsResourceExhausted(d.Reserve("a snapshot", 1)));
  EXPECT_TRUE(d.Reserve("a snapshot", 0).ok());  // 0 + 0 + 10 <= 10
  EXPECT_EQ(d.ReservedBytes(), 0u);
  env_.SetFreeSpaceBytes(0);
  DiskReservation none(&env_, "/tmp", /*headroom_bytes=*/0, lg_);
  EXPECT_TRUE(none.Reserve("a snapshot", 0).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(none.Reserve("a snapshot", 1)));
}

TEST_F(DiskReservationTest, ManyCopiesStopAtTheBound) {
  env_.SetFreeSpaceBytes(100 * kMiB);
  DiskReservation d(&env_, "/tmp", /*headroom_bytes=*/4 * kMiB, lg_);
  int granted = 0;
  for (int i = 0; i < 50; ++i) {
    if (d.Reserve("a snapshot", 8 * kMiB).ok()) ++granted;
  }
  EXPECT_EQ(granted, 12);  // 12 * 8 + 4 == 100
  EXPECT_EQ(d.ReservedBytes(), 96 * kMiB);
  for (int i = 0; i < granted; ++i) d.Release(8 * kMiB);
  EXPECT_EQ(d.ReservedBytes(), 0u);
}

TEST_F(DiskReservationTest, UnreadableFreeSpaceLetsTheCopyGoAhead) {
  DiskReservation d(util::Env::Default(), "/nonexistent/cppetcd-disk-reservation",
                    /*headroom_bytes=*/10 * kMiB, lg_);
  ASSERT_TRUE(d.Reserve("a snapshot", uint64_t{1} << 60).ok());
  EXPECT_EQ(d.ReservedBytes(), uint64_t{1} << 60);  // still counted for the others
  d.Release(uint64_t{1} << 60);
  bool warned = false;
  for (const auto& line : log_.Lines()) {
    if (line.find("cannot read the free disk space") != std::string::npos) warned = true;
  }
  EXPECT_TRUE(warned);
}

}  // namespace
}  // namespace cppetcd::server
