// BboltReader over hand-built bbolt files: meta selection, inline and
// page-rooted buckets, branch pages, overflow-free leaves, corruption.
#include "cppetcd/storage/bbolt_reader.h"

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cppetcd::storage {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

constexpr uint32_t kPs = 4096;

void Put16(std::string* s, size_t at, uint16_t v) { std::memcpy(s->data() + at, &v, 2); }
void Put32(std::string* s, size_t at, uint32_t v) { std::memcpy(s->data() + at, &v, 4); }
void Put64(std::string* s, size_t at, uint64_t v) { std::memcpy(s->data() + at, &v, 8); }

uint64_t Fnv(const char* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(p[i]);
    h *= 0x100000001b3ull;
  }
  return h;
}

struct Elem {
  std::string key;
  std::string value;
  bool bucket = false;
};

// A leaf page's bytes (header + elements + data), `id` in its header.
std::string Leaf(uint64_t id, const std::vector<Elem>& elems) {
  std::string p(16 + 16 * elems.size(), '\0');
  Put64(&p, 0, id);
  Put16(&p, 8, 0x02);
  Put16(&p, 10, static_cast<uint16_t>(elems.size()));
  for (size_t i = 0; i < elems.size(); ++i) {
    const size_t at = 16 + 16 * i;
    Put32(&p, at, elems[i].bucket ? 1 : 0);
    Put32(&p, at + 4, static_cast<uint32_t>(p.size() - at));
    Put32(&p, at + 8, static_cast<uint32_t>(elems[i].key.size()));
    Put32(&p, at + 12, static_cast<uint32_t>(elems[i].value.size()));
    p += elems[i].key + elems[i].value;
  }
  return p;
}

std::string Branch(uint64_t id, const std::vector<std::pair<std::string, uint64_t>>& kids) {
  std::string p(16 + 16 * kids.size(), '\0');
  Put64(&p, 0, id);
  Put16(&p, 8, 0x01);
  Put16(&p, 10, static_cast<uint16_t>(kids.size()));
  for (size_t i = 0; i < kids.size(); ++i) {
    const size_t at = 16 + 16 * i;
    Put32(&p, at, static_cast<uint32_t>(p.size() - at));
    Put32(&p, at + 4, static_cast<uint32_t>(kids[i].first.size()));
    Put64(&p, at + 8, kids[i].second);
    p += kids[i].first;
  }
  return p;
}

std::string BucketValue(uint64_t root, const std::string& inline_page = "") {
  std::string v(16, '\0');
  Put64(&v, 0, root);
  return v + inline_page;
}

void Meta(std::string* f, uint64_t page, uint64_t root, uint64_t pgid, uint64_t txid) {
  const size_t off = page * kPs;
  Put64(f, off, page);
  Put16(f, off + 8, 0x04);
  const size_t m = off + 16;
  Put32(f, m, kBboltMagic);
  Put32(f, m + 4, 2);
  Put32(f, m + 8, kPs);
  Put64(f, m + 16, root);
  Put64(f, m + 32, 2);  // freelist
  Put64(f, m + 40, pgid);
  Put64(f, m + 48, txid);
  Put64(f, m + 56, Fnv(f->data() + m, 56));
}

// Pages: 0/1 meta, 2 freelist, 3 root, 4 branch of "big", 5/6 its leaves;
// page 7 an old root (only meta page 0, with a lower txid, points at it).
std::string BuildFile() {
  std::string f(8 * kPs, '\0');
  auto place = [&](uint64_t id, const std::string& page) {
    ASSERT_LE(page.size(), kPs);
    f.replace(id * kPs, page.size(), page);
  };
  const std::string inline_key = Leaf(0, {{"k1", "v1"}, {"k2", "v2"}});
  place(3, Leaf(3, {{"big", BucketValue(4), true},
                    {"key", BucketValue(0, inline_key), true},
                    {"plain", "not a bucket"}}));
  place(4, Branch(4, {{"a", 5}, {"m", 6}}));
  place(5, Leaf(5, {{"a", "1"}, {"b", "2"}}));
  place(6, Leaf(6, {{"m", "3"}, {"sub", BucketValue(0, Leaf(0, {})), true}}));
  place(7, Leaf(7, {{"old", BucketValue(0, Leaf(0, {})), true}}));
  Meta(&f, 0, 7, 8, 1);
  Meta(&f, 1, 3, 8, 2);
  return f + std::string(32, 'x');  // etcd's trailer is ignored
}

TEST(BboltReaderTest, DetectsTheMagic) {
  EXPECT_TRUE(LooksLikeBbolt(BuildFile()));
  EXPECT_FALSE(LooksLikeBbolt(std::string(64, '\0')));
  EXPECT_FALSE(LooksLikeBbolt("short"));
}

TEST(BboltReaderTest, ReadsBucketsFromTheNewestMeta) {
  auto r = BboltReader::FromBytes(BuildFile());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->txid(), 2u);
  EXPECT_EQ((*r)->SizeBytes(), 8 * 4096);
  auto names = (*r)->ListBuckets();
  ASSERT_TRUE(names.ok());
  EXPECT_THAT(*names, ElementsAre("big", "key"));

  std::vector<std::pair<std::string, std::string>> kv;
  auto collect = [&](std::string_view k, std::string_view v, bool is_bucket) {
    kv.emplace_back(std::string(k), is_bucket ? "<bucket>" : std::string(v));
    return true;
  };
  ASSERT_TRUE((*r)->ForEach("key", collect).ok());
  EXPECT_THAT(kv, ElementsAre(Pair("k1", "v1"), Pair("k2", "v2")));
  kv.clear();
  ASSERT_TRUE((*r)->ForEach("big", collect).ok());
  EXPECT_THAT(kv, ElementsAre(Pair("a", "1"), Pair("b", "2"), Pair("m", "3"),
                              Pair("sub", "<bucket>")));
  EXPECT_TRUE(absl::IsNotFound((*r)->ForEach("plain", collect)));
  EXPECT_TRUE(absl::IsNotFound((*r)->ForEach("old", collect)));
}

TEST(BboltReaderTest, FallsBackToTheOtherMetaWhenOneIsCorrupt) {
  std::string f = BuildFile();
  f[kPs + 16 + 20] ^= 1;  // meta 1's root: checksum mismatch
  auto r = BboltReader::FromBytes(f);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->txid(), 1u);
  auto names = (*r)->ListBuckets();
  ASSERT_TRUE(names.ok());
  EXPECT_THAT(*names, ElementsAre("old"));
}

TEST(BboltReaderTest, ReportsCorruptionAsDataLoss) {
  std::string f = BuildFile();
  // Branch child pointing past the high-water mark.
  Put64(&f, 4 * kPs + 16 + 16 + 8, 99);
  auto r = BboltReader::FromBytes(f);
  ASSERT_TRUE(r.ok());
  auto s = (*r)->ForEach("big", [](std::string_view, std::string_view, bool) { return true; });
  EXPECT_TRUE(absl::IsDataLoss(s)) << s;
  // Element table larger than the page.
  std::string g = BuildFile();
  Put16(&g, 3 * kPs + 10, 60000);
  auto r2 = BboltReader::FromBytes(g);
  ASSERT_TRUE(r2.ok());
  EXPECT_TRUE(absl::IsDataLoss((*r2)->ListBuckets().status()));
  // Both metas bad.
  std::string h = BuildFile();
  h[16 + 20] ^= 1;
  h[kPs + 16 + 20] ^= 1;
  EXPECT_TRUE(absl::IsDataLoss(BboltReader::FromBytes(h).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(BboltReader::FromBytes("not bolt").status()));
}

// Found by fuzzing (tests/fuzz/bbolt): a branch page that points at itself
// or back up the tree made the walk exponential (a hang); a page id near
// 2^64 / page_size made id * page_size wrap around and pass the bounds check.
TEST(BboltReaderTest, PageCyclesAndHugePageIdsAreDataLossNotHangs) {
  std::string f = BuildFile();
  // Branch page 4's children: both point at page 4 itself.
  Put64(&f, 4 * kPs + 16 + 8, 4);
  Put64(&f, 4 * kPs + 16 + 16 + 8, 4);
  auto r = BboltReader::FromBytes(f);
  ASSERT_TRUE(r.ok());
  auto s = (*r)->ForEach("big", [](std::string_view, std::string_view, bool) { return true; });
  EXPECT_TRUE(absl::IsDataLoss(s)) << s;

  // A child id whose byte offset wraps around 2^64 to a real page.
  std::string g = BuildFile();
  const uint64_t huge = (uint64_t{1} << 52) + 5;  // huge * 4096 == 5 * 4096 (mod 2^64)
  Put64(&g, 4 * kPs + 16 + 16 + 8, huge);
  auto r2 = BboltReader::FromBytes(g);
  ASSERT_TRUE(r2.ok());
  auto s2 = (*r2)->ForEach("big", [](std::string_view, std::string_view, bool) { return true; });
  EXPECT_TRUE(absl::IsDataLoss(s2)) << s2;

  // A high-water mark (pgid) past the file's pages makes a meta invalid (and
  // SizeBytes, pgid * page size, would overflow): the other meta is used;
  // with both so, the file is corrupt.
  Meta(&g, 1, 3, huge + 1, 2);
  auto r3 = BboltReader::FromBytes(g);
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ((*r3)->txid(), 1u);
  EXPECT_EQ((*r3)->SizeBytes(), 8 * 4096);
  Meta(&g, 0, 7, ~uint64_t{0}, 1);
  EXPECT_TRUE(absl::IsDataLoss(BboltReader::FromBytes(g).status()));
}

TEST(BboltReaderTest, OpenReportsAMissingFile) {
  EXPECT_TRUE(absl::IsNotFound(BboltReader::Open("/nonexistent/bbolt.db").status()));
}

}  // namespace
}  // namespace cppetcd::storage
