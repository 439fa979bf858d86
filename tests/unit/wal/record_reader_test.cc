#include "src/wal/record_reader.h"

#include <algorithm>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "src/wal/record_writer.h"

namespace cppetcd::wal {
namespace {

using ::testing::HasSubstr;

// A segment: CRC record (chain start `head`), then records with the given
// payloads as entries.
std::string Segment(uint32_t head, const std::vector<std::string>& payloads, uint32_t* crc_out = nullptr) {
  std::string out;
  uint32_t crc = head;
  AppendSegmentHead("meta", "", &crc, &out);
  for (const std::string& p : payloads) AppendRecord(walpb::ENTRY, p, &crc, &out);
  if (crc_out != nullptr) *crc_out = crc;
  return out;
}

TEST(RecordWriterTest, RecordsAreAlignedAndPadded) {
  for (size_t n = 0; n < 20; ++n) {
    std::string out;
    uint32_t crc = 0;
    AppendRecord(walpb::ENTRY, std::string(n, 'x'), &crc, &out);
    EXPECT_EQ(out.size() % kRecordAlign, 0u);
    EXPECT_EQ(out.size(), (kRecordHeaderSize + n + 7) / 8 * 8);
    EXPECT_NE(crc, 0u);
  }
}

TEST(RecordReaderTest, ReadsBackWithChainAndHead) {
  uint32_t crc;
  std::string seg = Segment(1234, {"a", "bb", std::string(100, 'c')}, &crc);
  auto scan = ScanSegment(seg, "s", false);
  ASSERT_TRUE(scan.ok()) << scan.status();
  ASSERT_EQ(scan->records.size(), 5u);
  EXPECT_EQ(scan->records[0].type, walpb::CRC);
  EXPECT_EQ(scan->records[1].type, walpb::METADATA);
  EXPECT_EQ(scan->records[1].payload, "meta");
  EXPECT_EQ(scan->records[4].payload, std::string(100, 'c'));
  EXPECT_EQ(scan->head_crc, 1234u);
  EXPECT_EQ(scan->crc, crc);
  EXPECT_EQ(scan->valid_end, seg.size());
  EXPECT_FALSE(scan->torn);
}

TEST(RecordReaderTest, ZeroTailIsCleanInAnySegment) {
  std::string seg = Segment(0, {"a", "b"}) + std::string(4096, '\0');
  for (bool last : {false, true}) {
    auto scan = ScanSegment(seg, "s", last);
    ASSERT_TRUE(scan.ok()) << scan.status();
    EXPECT_EQ(scan->records.size(), 4u);
    EXPECT_FALSE(scan->torn);
  }
}

TEST(RecordReaderTest, DamageClassification) {
  const std::string good = Segment(0, {"first", "second", "third"});
  auto scan = ScanSegment(good, "s", true);
  ASSERT_TRUE(scan.ok());
  const uint64_t third = scan->records[4].offset;
  const uint64_t second = scan->records[3].offset;
  struct Case {
    std::string name;
    std::string data;
    bool is_last;
    bool want_ok;
    bool want_torn;
  };
  std::string zero_third = good;
  std::fill(zero_third.begin() + third, zero_third.end(), '\0');
  std::string flip_second = good;
  flip_second[second + kRecordHeaderSize] ^= 1;
  std::string flip_last = good;
  flip_last[third + kRecordHeaderSize] ^= 1;
  // A whole non-zero header that does not check: not an unfinished write.
  std::string garbage_tail = good + std::string(16, '\x5a') + std::string(16, '\0');
  std::string bad_pad = good;
  bad_pad[good.size() - 1] = 'x';  // "third" + 3 bytes of padding
  const std::vector<Case> cases = {
      {"cut in header of last record", good.substr(0, third + 5), true, true, true},
      {"cut in payload of last record", good.substr(0, good.size() - 4), true, true, true},
      {"cut in an earlier segment", good.substr(0, good.size() - 4), false, false, false},
      {"zeroed last record", zero_third, true, true, false},
      {"flipped bit followed by a valid record", flip_second, true, false, false},
      {"flipped bit in last whole record", flip_last, true, false, false},
      {"garbage after the last record", garbage_tail, true, false, false},
      {"non-zero padding", bad_pad, true, false, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto r = ScanSegment(c.data, "seg-name", c.is_last);
    ASSERT_EQ(r.ok(), c.want_ok) << r.status();
    if (r.ok()) {
      EXPECT_EQ(r->torn, c.want_torn);
      EXPECT_EQ(r->records.size(), 4u);
      EXPECT_EQ(r->valid_end, third);
    } else {
      EXPECT_TRUE(absl::IsDataLoss(r.status()));
      EXPECT_THAT(r.status().message(), HasSubstr("seg-name"));
      EXPECT_THAT(r.status().message(), HasSubstr("offset"));
    }
  }
}

TEST(RecordReaderTest, TornSectorInALargeLastRecord) {
  // A record spanning several sectors whose middle sector never reached the
  // disk: a torn write, not corruption.
  std::string good = Segment(0, {"a", std::string(2000, 'z')});
  auto scan = ScanSegment(good, "s", true);
  ASSERT_TRUE(scan.ok());
  const uint64_t last = scan->records.back().offset;
  std::string torn = good;
  std::fill(torn.begin() + 1024, torn.begin() + 1536, '\0');
  auto r = ScanSegment(torn, "s", true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->torn);
  EXPECT_EQ(r->valid_end, last);
  // The same damage in an earlier segment is DataLoss.
  EXPECT_TRUE(absl::IsDataLoss(ScanSegment(torn, "s", false).status()));
}

// A power loss writes the unsynced pages of the tail back in any order: a
// sector holding the start of a record may still be zeros (never written,
// or written at an earlier version) while a later sector already holds the
// records after it. Nothing after the last fsync was acknowledged, so that
// is a torn tail, cut at the zeros, not corruption. (Found by
// PowerLossCluster.AllMembersLosePower, seed 109: "zero header before
// non-zero data, followed by a valid record".)
TEST(RecordReaderTest, ZeroSectorBeforeLaterRecordsIsATornTail) {
  std::vector<std::string> payloads;
  for (int i = 0; i < 40; ++i) payloads.push_back(std::string(120, static_cast<char>('a' + i % 26)));
  const std::string good = Segment(0, payloads);
  auto scan = ScanSegment(good, "s", true);
  ASSERT_TRUE(scan.ok()) << scan.status();
  // The first record starting inside the second sector, and the first one
  // with bytes in the fourth.
  size_t at = 0, spanning = 0;
  for (size_t i = 0; i < scan->records.size(); ++i) {
    const uint64_t o = scan->records[i].offset;
    if (at == 0 && o >= 512 && o < 1024) at = i;
    if (spanning == 0 && o + kRecordHeaderSize + 120 > 1536) spanning = i;
  }
  ASSERT_GT(at, 0u);
  ASSERT_GT(spanning, 0u);

  // Its sector, from the record on, at an earlier version (zeros).
  std::string zero_header = good;
  const uint64_t off = scan->records[at].offset;
  std::fill(zero_header.begin() + static_cast<std::ptrdiff_t>(off), zero_header.begin() + 1024, '\0');
  auto r = ScanSegment(zero_header, "s", true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->torn);
  EXPECT_EQ(r->valid_end, off);
  EXPECT_EQ(r->records.size(), at);

  // A whole sector lost inside a record, later sectors written.
  std::string zero_inside = good;
  std::fill(zero_inside.begin() + 1536, zero_inside.begin() + 2048, '\0');
  r = ScanSegment(zero_inside, "s", true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->torn);
  EXPECT_EQ(r->valid_end, scan->records[spanning].offset);

  // Not in an earlier segment: those were fsynced whole before the cut.
  EXPECT_TRUE(absl::IsDataLoss(ScanSegment(zero_header, "s", false).status()));
  EXPECT_TRUE(absl::IsDataLoss(ScanSegment(zero_inside, "s", false).status()));

  // Zeros that no lost sector explains (a zeroed header in the middle of a
  // sector, the sector's later bytes written) stay corruption.
  std::string zero_mid = good;
  std::fill(zero_mid.begin() + static_cast<std::ptrdiff_t>(off),
            zero_mid.begin() + static_cast<std::ptrdiff_t>(off + kRecordHeaderSize), '\0');
  ASSERT_LT(scan->records[at + 1].offset, 1024u);
  EXPECT_TRUE(absl::IsDataLoss(ScanSegment(zero_mid, "s", true).status()));
}

TEST(RecordReaderTest, CrcRecordOnlyAtTheHead) {
  std::string seg = Segment(0, {"a"});
  uint32_t crc = 0;
  auto s = ScanSegment(seg, "s", false);
  crc = s->crc;
  walpb::Crc c;
  c.set_crc(crc);
  AppendRecord(walpb::CRC, c.SerializeAsString(), &crc, &seg);
  EXPECT_TRUE(absl::IsDataLoss(ScanSegment(seg, "s", false).status()));
  std::string no_head;
  crc = 0;
  AppendRecord(walpb::ENTRY, "x", &crc, &no_head);
  EXPECT_TRUE(absl::IsDataLoss(ScanSegment(no_head, "s", false).status()));
}

}  // namespace
}  // namespace cppetcd::wal
