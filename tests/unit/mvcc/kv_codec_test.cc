#include "kv_codec.h"

#include <random>

#include "cppetcd/mvcc/errors.h"
#include "cppetcd/mvcc/revision.h"
#include "gtest/gtest.h"
#include "mvccpb/kv.pb.h"

namespace cppetcd::mvcc {
namespace {

// The light decoder agrees with protobuf on random records.
TEST(KvCodecTest, DecodeKvMetaMatchesProtobuf) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 500; ++i) {
    mvccpb::KeyValue kv;
    kv.set_key(std::string(1 + rng() % 300, static_cast<char>('a' + rng() % 26)));
    if (rng() % 2) kv.set_value(std::string(rng() % 1000, 'v'));
    if (rng() % 4) kv.set_create_revision(static_cast<int64_t>(rng() >> (rng() % 63)));
    kv.set_mod_revision(static_cast<int64_t>(rng() >> 1));
    if (rng() % 3) kv.set_version(static_cast<int64_t>(rng() % 100000));
    if (rng() % 3 == 0) kv.set_lease(static_cast<int64_t>(rng()));
    const std::string wire = kv.SerializeAsString();
    internal::KvMeta meta;
    ASSERT_TRUE(internal::DecodeKvMeta(wire, &meta));
    EXPECT_EQ(meta.key, kv.key());
    EXPECT_EQ(meta.create_revision, kv.create_revision());
    EXPECT_EQ(meta.mod_revision, kv.mod_revision());
    EXPECT_EQ(meta.version, kv.version());
    EXPECT_EQ(meta.lease, kv.lease());
    // Truncated input never makes it read past the end (ASan checks; the
    // copy has exactly the truncated size), whatever it returns.
    const std::string half = wire.substr(0, wire.size() / 2);
    internal::KvMeta partial;
    (void)internal::DecodeKvMeta(half, &partial);
  }
  internal::KvMeta m;
  EXPECT_FALSE(internal::DecodeKvMeta(std::string("\x0a\x05" "ab", 4), &m));  // length past the end
}

TEST(RevisionTest, KeyEncodingOrdersLikeRevisions) {
  EXPECT_EQ(RevisionKey(Revision{1, 2}), std::string("\0\0\0\0\0\0\0\x01_\0\0\0\0\0\0\0\x02", 17));
  EXPECT_EQ(RevisionKey(Revision{5, 0}, true).size(), 18u);
  EXPECT_TRUE(IsTombstoneKey(RevisionKey(Revision{5, 0}, true)));
  EXPECT_FALSE(IsTombstoneKey(RevisionKey(Revision{5, 0})));
  EXPECT_EQ(DecodeRevision(RevisionKey(Revision{300, 7}, true)), (Revision{300, 7}));
  std::vector<Revision> revs = {{1, 0}, {1, 1}, {2, 0}, {255, 3}, {256, 0}, {1ll << 40, 2}};
  for (size_t i = 1; i < revs.size(); ++i) {
    EXPECT_LT(RevisionKey(revs[i - 1], true), RevisionKey(revs[i]));
  }
}

TEST(ErrorsTest, MessagesAndPredicates) {
  EXPECT_EQ(ErrCompacted().message(), "mvcc: required revision has been compacted");
  EXPECT_EQ(ErrFutureRev().message(), "mvcc: required revision is a future revision");
  EXPECT_TRUE(IsCompacted(ErrCompacted()));
  EXPECT_FALSE(IsCompacted(ErrFutureRev()));
  EXPECT_TRUE(IsFutureRev(ErrFutureRev()));
  EXPECT_FALSE(IsFutureRev(absl::OutOfRangeError("other")));
}

}  // namespace
}  // namespace cppetcd::mvcc
