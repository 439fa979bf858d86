#include "cppetcd/wal/etcd_wal.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "src/wal/segment_name.h"
#include "tests/unit/wal/etcd_wal_test_util.h"
#include "tests/unit/wal/wal_test_util.h"

namespace cppetcd::wal {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::EtcdSegmentBuilder;
using testing::Ids;
using testing::TempDir;
using testing::WriteFile;

constexpr uint64_t kMember = 0xbdae9bbc11dd390dULL;
constexpr uint64_t kCluster = 0xd1cf3db3e1cba16aULL;

class EtcdWalReaderTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(util::Env::Default()->CreateDirAll(dir_).ok()); }
  void Put(uint64_t seq, uint64_t index, const std::string& bytes) {
    WriteFile(Path(seq, index), bytes);
  }
  std::string Path(uint64_t seq, uint64_t index) const { return util::JoinPath(dir_, SegmentName(seq, index)); }
  absl::StatusOr<EtcdWalContents> Read(WalSnapshot at = {}) { return ReadEtcdWal(util::Env::Default(), dir_, at); }

  // Segment 0 as etcd's Create and Save write it: CRC, metadata, the empty
  // snapshot marker, then entries 1..n of term 1 and a hard state.
  EtcdSegmentBuilder First(uint64_t n) {
    EtcdSegmentBuilder b;
    b.Metadata(kMember, kCluster).Snapshot(0, 0);
    for (uint64_t i = 1; i <= n; ++i) b.Entry(i, 1);
    b.State(1, kMember, n);
    return b;
  }

  TempDir tmp_;
  std::string dir_ = tmp_.Sub("wal");
};

TEST_F(EtcdWalReaderTest, ReadsOneSegment) {
  Put(0, 0, First(5).Preallocate(64 << 10).bytes());
  auto r = Read();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->member_id, kMember);
  EXPECT_EQ(r->cluster_id, kCluster);
  EXPECT_THAT(Ids(r->entries), ElementsAre("1/1", "2/1", "3/1", "4/1", "5/1"));
  EXPECT_EQ(r->hard_state.commit(), 5u);
  EXPECT_EQ(r->hard_state.vote(), kMember);
  EXPECT_THAT(r->snapshots, ElementsAre(WalSnapshot{0, 0}));
  EXPECT_FALSE(r->torn) << r->torn_reason;
}

TEST_F(EtcdWalReaderTest, ChainsAcrossSegmentsAndAppliesTheOverwriteRule) {
  EtcdSegmentBuilder s0 = First(5);
  Put(0, 0, s0.bytes());
  EtcdSegmentBuilder s1(s0.crc());
  s1.Metadata(kMember, kCluster).State(1, kMember, 5);
  s1.Entry(4, 2).Entry(5, 2).Entry(6, 2).Snapshot(5, 2).State(2, 0, 6);
  Put(1, 6, s1.Preallocate(4096).bytes());
  auto r = Read();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Ids(r->entries), ElementsAre("1/1", "2/1", "3/1", "4/2", "5/2", "6/2"));
  EXPECT_EQ(r->hard_state.term(), 2u);
  EXPECT_THAT(r->segments, ElementsAre(SegmentName(0, 0), SegmentName(1, 6)));

  // From the snapshot at 5 (reading starts at segment 0, the last whose
  // first index is <= 5): only the entries after 5.
  auto at5 = Read(WalSnapshot{5, 2});
  ASSERT_TRUE(at5.ok()) << at5.status();
  EXPECT_THAT(Ids(at5->entries), ElementsAre("6/2"));
  auto v = EtcdWalValidSnapshots(util::Env::Default(), dir_);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_THAT(*v, ElementsAre(WalSnapshot{0, 0}, WalSnapshot{5, 2}));
}

TEST_F(EtcdWalReaderTest, StartsAtTheSegmentThatHoldsTheSnapshot) {
  // Segment 0 purged: segment 1's head CRC starts the chain unchecked.
  EtcdSegmentBuilder s1(0x12345678);
  s1.Metadata(kMember, kCluster).State(3, 1, 20).Snapshot(20, 3).Entry(21, 3).Entry(22, 3).State(3, 1, 22);
  Put(1, 20, s1.bytes());
  EXPECT_TRUE(absl::IsNotFound(Read().status())) << Read().status();
  auto r = Read(WalSnapshot{20, 3});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Ids(r->entries), ElementsAre("21/3", "22/3"));
  EXPECT_THAT(Read(WalSnapshot{20, 2}).status().message(), HasSubstr("snapshot mismatch"));
  EXPECT_THAT(Read(WalSnapshot{21, 3}).status().message(), HasSubstr("snapshot not found"));
  auto v = EtcdWalValidSnapshots(util::Env::Default(), dir_);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_THAT(*v, ElementsAre(WalSnapshot{20, 3}));
}

TEST_F(EtcdWalReaderTest, MarkersPastTheCommitAreNotValid) {
  EtcdSegmentBuilder b;
  b.Metadata(kMember, kCluster).Snapshot(0, 0).Entry(1, 1).Entry(2, 1).State(1, 0, 1).Snapshot(2, 1);
  Put(0, 0, b.bytes());
  auto v = EtcdWalValidSnapshots(util::Env::Default(), dir_);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_THAT(*v, ElementsAre(WalSnapshot{0, 0}));
}

TEST_F(EtcdWalReaderTest, GapInTheLogIsRefused) {
  EtcdSegmentBuilder b;
  b.Metadata(kMember, kCluster).Snapshot(0, 0).Entry(1, 1).Entry(3, 1);
  Put(0, 0, b.bytes());
  auto r = Read();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("slice bounds out of range"));
}

TEST_F(EtcdWalReaderTest, ConflictingMetadataIsRefused) {
  EtcdSegmentBuilder s0 = First(2);
  Put(0, 0, s0.bytes());
  EtcdSegmentBuilder s1(s0.crc());
  s1.Metadata(kMember + 1, kCluster);
  Put(1, 3, s1.bytes());
  EXPECT_THAT(Read().status().message(), HasSubstr("conflicting metadata"));
}

TEST_F(EtcdWalReaderTest, TornTailOfTheLastSegmentEndsTheLog) {
  const std::string full = First(5).bytes();
  // The frame of entry 5 starts where a segment with entries 1..4 ends.
  EtcdSegmentBuilder prefix;
  prefix.Metadata(kMember, kCluster).Snapshot(0, 0);
  for (uint64_t i = 1; i <= 4; ++i) prefix.Entry(i, 1);
  const size_t e5 = prefix.size();
  // Cut inside entry 5's frame: the file ends there.
  Put(0, 0, full.substr(0, e5 + 11));
  auto r = Read();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Ids(r->entries), ElementsAre("1/1", "2/1", "3/1", "4/1"));
  EXPECT_TRUE(r->torn);
  EXPECT_THAT(r->torn_reason, HasSubstr("ends inside a record"));
  // Cut inside the length word.
  Put(0, 0, full.substr(0, e5 + 3));
  r = Read();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->torn);
  EXPECT_EQ(r->entries.size(), 4u);
  // Preallocated zeros after the records: a clean end.
  Put(0, 0, EtcdSegmentBuilder(prefix).Preallocate(8192).bytes());
  r = Read();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->torn);
}

TEST_F(EtcdWalReaderTest, LastRecordWithAZeroSectorIsATornWrite) {
  EtcdSegmentBuilder b;
  b.Metadata(kMember, kCluster).Snapshot(0, 0).Entry(1, 1);
  const size_t e2 = b.size();
  b.Entry(2, 1, std::string(2000, 'v'));
  std::string bytes = b.Preallocate(8192).bytes();
  // The sector after the one the frame starts in never reached the disk.
  const size_t sector = (e2 / 512 + 1) * 512;
  std::fill(bytes.begin() + static_cast<long>(sector), bytes.begin() + static_cast<long>(sector + 512), '\0');
  Put(0, 0, bytes);
  auto r = Read();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Ids(r->entries), ElementsAre("1/1"));
  EXPECT_TRUE(r->torn);
  EXPECT_THAT(r->torn_reason, HasSubstr(absl::StrCat("offset ", e2)));
}

TEST_F(EtcdWalReaderTest, FlippedByteInALastSegmentWithoutZeroSectorIsDataLoss) {
  EtcdSegmentBuilder b = First(3);
  std::string bytes = b.bytes();
  bytes[bytes.size() - 20] ^= 0x01;  // inside the hard state record
  Put(0, 0, bytes);
  auto r = Read();
  EXPECT_TRUE(absl::IsDataLoss(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr(SegmentName(0, 0)));
}

TEST_F(EtcdWalReaderTest, FlippedCrcByteInAnEarlierSegmentIsRefusedWithTheFileName) {
  EtcdSegmentBuilder s0 = First(3);
  std::string bytes = s0.bytes();
  // Entry 2's frame: flip a byte of its stored CRC (the varint after tag 0x10).
  EtcdSegmentBuilder prefix;
  prefix.Metadata(kMember, kCluster).Snapshot(0, 0).Entry(1, 1);
  const size_t e2 = prefix.size();
  ASSERT_EQ(bytes[e2 + 8 + 2], '\x10');
  bytes[e2 + 8 + 3] ^= 0x01;
  Put(0, 0, bytes);
  EtcdSegmentBuilder s1(s0.crc());
  s1.Metadata(kMember, kCluster).Entry(4, 1);
  Put(1, 4, s1.bytes());
  auto r = Read();
  EXPECT_TRUE(absl::IsDataLoss(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr(absl::StrCat(SegmentName(0, 0), " at offset ", e2)));
  EXPECT_THAT(r.status().message(), HasSubstr("crc mismatch"));
}

TEST_F(EtcdWalReaderTest, TruncatedFrameInAnEarlierSegmentIsDataLoss) {
  EtcdSegmentBuilder s0 = First(3);
  Put(0, 0, s0.bytes().substr(0, s0.size() - 5));
  EtcdSegmentBuilder s1(s0.crc());
  s1.Metadata(kMember, kCluster).Entry(4, 1);
  Put(1, 4, s1.bytes());
  auto r = Read();
  EXPECT_TRUE(absl::IsDataLoss(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr(SegmentName(0, 0)));
  EXPECT_THAT(r.status().message(), HasSubstr("ends inside a record"));
}

TEST_F(EtcdWalReaderTest, BrokenChainAtASegmentHeadIsDataLoss) {
  EtcdSegmentBuilder s0 = First(3);
  Put(0, 0, s0.bytes());
  EtcdSegmentBuilder s1(s0.crc() ^ 1);
  s1.Metadata(kMember, kCluster).Entry(4, 1);
  Put(1, 4, s1.bytes());
  auto r = Read();
  EXPECT_TRUE(absl::IsDataLoss(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr(absl::StrCat(SegmentName(1, 4), " at offset 0")));
}

TEST_F(EtcdWalReaderTest, OversizedLengthWordIsRefusedBeforeAllocating) {
  EtcdSegmentBuilder b = First(1);
  std::string bytes = b.bytes();
  const size_t at = bytes.size();
  // 2^55 bytes claimed: allocating it would abort the test.
  const uint64_t word = uint64_t{1} << 55;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>(word >> (8 * i)));
  bytes.append(64, 'z');
  Put(0, 0, bytes);
  auto r = Read();
  EXPECT_TRUE(absl::IsDataLoss(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("max entry size limit exceeded"));
  EXPECT_THAT(r.status().message(), HasSubstr(absl::StrCat("offset ", at)));
}

TEST_F(EtcdWalReaderTest, InvalidPaddingFlagIsDataLoss) {
  std::string bytes = First(1).bytes();
  bytes[7] = '\x40';  // top byte of the first length word: not 0, not 0x80|pad
  Put(0, 0, bytes);
  EXPECT_THAT(Read().status().message(), HasSubstr("invalid frame length word"));
}

TEST_F(EtcdWalReaderTest, SegmentMustStartWithACrcRecord) {
  EtcdSegmentBuilder b;
  b.Metadata(kMember, kCluster);
  Put(0, 0, b.bytes().substr(8 + 8));  // drop the head CRC frame (8 + 2 bytes + 6 pad)
  EXPECT_THAT(Read().status().message(), HasSubstr("does not start with a CRC record"));
}

TEST_F(EtcdWalReaderTest, UnknownRecordTypeIsRefused) {
  EtcdSegmentBuilder b = First(1);
  b.Data(9, "??");
  Put(0, 0, b.bytes());
  EXPECT_THAT(Read().status().message(), HasSubstr("unexpected block type 9"));
}

TEST_F(EtcdWalReaderTest, DetectsTheFormat) {
  util::Env* env = util::Env::Default();
  auto none = DetectWalFormat(env, dir_);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, WalFormat::kNone);
  Put(0, 0, First(1).bytes());
  auto etcd = DetectWalFormat(env, dir_);
  ASSERT_TRUE(etcd.ok()) << etcd.status();
  EXPECT_EQ(*etcd, WalFormat::kEtcd);

  const std::string own = tmp_.Sub("own");
  {
    Options o;
    o.segment_size_bytes = 64 << 10;
    auto w = Wal::Create(env, own, "meta", o);
    ASSERT_TRUE(w.ok()) << w.status();
  }
  auto cpp = DetectWalFormat(env, own);
  ASSERT_TRUE(cpp.ok()) << cpp.status();
  EXPECT_EQ(*cpp, WalFormat::kCppetcd);
  // The reader refuses cppetcd's segments rather than misreading them.
  EXPECT_FALSE(ReadEtcdWal(env, own, {}).ok());

  Put(0, 0, std::string(64, 'q'));
  auto bad = DetectWalFormat(env, dir_);
  EXPECT_TRUE(absl::IsDataLoss(bad.status())) << bad.status();
  EXPECT_THAT(bad.status().message(), HasSubstr(SegmentName(0, 0)));
}

TEST(EtcdSegmentScanTest, ZerosInAnInnerSegmentMustRunToTheEnd) {
  EtcdSegmentBuilder b;
  b.Metadata(1, 2);
  const size_t end = b.size();
  std::string bytes = b.Preallocate(1024).bytes();
  auto ok = ScanEtcdSegment(bytes, "s", std::nullopt, /*is_last=*/false);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->records.size(), 2u);
  bytes[900] = 'x';
  EXPECT_TRUE(absl::IsDataLoss(ScanEtcdSegment(bytes, "s", std::nullopt, false).status()));
  auto last = ScanEtcdSegment(bytes, "s", std::nullopt, /*is_last=*/true);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_TRUE(last->torn);
  EXPECT_EQ(last->valid_end, end);
}

}  // namespace
}  // namespace cppetcd::wal
