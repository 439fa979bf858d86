#include "src/wal/segment_name.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/wal/wal_test_util.h"

namespace cppetcd::wal {
namespace {

TEST(SegmentNameTest, FormatAndParse) {
  EXPECT_EQ(SegmentName(1, 0x2a), "0000000000000001-000000000000002a.wal");
  uint64_t seq, index;
  ASSERT_TRUE(ParseSegmentName("00000000000000ff-0000000000000100.wal", &seq, &index));
  EXPECT_EQ(seq, 255u);
  EXPECT_EQ(index, 256u);
  for (const char* bad : {"", "0000000000000001-000000000000002a.wa", "0000000000000001_000000000000002a.wal",
                          "000000000000000G-000000000000002a.wal", "000000000000000A-000000000000002a.wal",
                          "0000000000000001-000000000000002a.wal.tmp"}) {
    EXPECT_FALSE(ParseSegmentName(bad, &seq, &index)) << bad;
  }
}

TEST(SegmentNameTest, ListAndSearch) {
  testing::TempDir dir;
  for (const std::string& n : {SegmentName(0, 0), SegmentName(1, 10), SegmentName(2, 25), std::string("other"),
                               SegmentName(3, 40) + ".tmp"}) {
    testing::WriteFile(dir.Sub(n), "");
  }
  auto names = ListSegments(util::Env::Default(), dir.path());
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_THAT(*names, ::testing::ElementsAre(SegmentName(0, 0), SegmentName(1, 10), SegmentName(2, 25)));
  EXPECT_EQ(SearchSegment(*names, 0), 0);
  EXPECT_EQ(SearchSegment(*names, 9), 0);
  EXPECT_EQ(SearchSegment(*names, 10), 1);
  EXPECT_EQ(SearchSegment(*names, 1000), 2);
  EXPECT_EQ(SearchSegment({SegmentName(4, 50)}, 49), -1);

  testing::WriteFile(dir.Sub(SegmentName(4, 60)), "");  // seq 3 missing
  EXPECT_TRUE(absl::IsFailedPrecondition(ListSegments(util::Env::Default(), dir.path()).status()));
}

}  // namespace
}  // namespace cppetcd::wal
