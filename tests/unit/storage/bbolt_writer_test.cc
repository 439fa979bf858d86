// BboltWriter: round trips through BboltReader (many buckets and keys,
// multi-level trees, values spanning overflow pages, page-boundary sizes,
// inline buckets, nested buckets), call-order errors, write errors, a
// random model check, and, where etcdctl is installed, bbolt's own
// consistency check (`etcdctl snapshot status` runs tx.Check()).
#include "cppetcd/storage/bbolt_writer.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cppetcd/storage/bbolt_reader.h"
#include "cppetcd/util/crc32c.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cppetcd::storage {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

using Bucket = std::map<std::string, std::string>;
using Db = std::map<std::string, Bucket>;

class TempFile {
 public:
  TempFile() {
    const char* t = getenv("TMPDIR");
    path_ = absl::StrCat(t != nullptr && *t != '\0' ? t : "/tmp", "/bbolt-writer-XXXXXX");
    fd_ = mkstemp(path_.data());
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path_.c_str());
  }
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// Writes `db` (buckets and keys in map order) with page size `ps`.
absl::StatusOr<uint64_t> Write(int fd, const Db& db, uint32_t ps = 4096,
                               size_t buffer_bytes = 1 << 20) {
  BboltWriterOptions o;
  o.page_size = ps;
  o.write_buffer_bytes = buffer_bytes;
  auto w = BboltWriter::Create(fd, o);
  if (!w.ok()) return w.status();
  for (const auto& [name, kvs] : db) {
    if (auto s = (*w)->BeginBucket(name); !s.ok()) return s;
    for (const auto& [k, v] : kvs) {
      if (auto s = (*w)->Put(k, v); !s.ok()) return s;
    }
    if (auto s = (*w)->EndBucket(); !s.ok()) return s;
  }
  return (*w)->Finish();
}

Db ReadBack(const std::string& path) {
  Db out;
  auto r = BboltReader::Open(path);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return out;
  auto names = (*r)->ListBuckets();
  EXPECT_TRUE(names.ok()) << names.status();
  if (!names.ok()) return out;
  for (const std::string& n : *names) {
    Bucket& b = out[n];
    auto s = (*r)->ForEach(n, [&](std::string_view k, std::string_view v, bool is_bucket) {
      EXPECT_FALSE(is_bucket);
      EXPECT_TRUE(b.emplace(std::string(k), std::string(v)).second) << "duplicate key";
      return true;
    });
    EXPECT_TRUE(s.ok()) << s;
  }
  return out;
}

uint64_t FileSize(const std::string& path) { return std::filesystem::file_size(path); }

// Round trip; returns the file size.
uint64_t RoundTrip(const Db& db, uint32_t ps = 4096) {
  TempFile f;
  auto size = Write(f.fd(), db, ps);
  EXPECT_TRUE(size.ok()) << size.status();
  if (!size.ok()) return 0;
  EXPECT_EQ(FileSize(f.path()), *size);
  EXPECT_EQ(*size % ps, 0u);
  auto r = BboltReader::Open(f.path());
  EXPECT_TRUE(r.ok()) << r.status();
  if (r.ok()) {
    EXPECT_EQ((*r)->page_size(), ps);
    EXPECT_EQ(static_cast<uint64_t>((*r)->SizeBytes()), *size);
  }
  {
    // The size from the two meta pages alone, as a stream announces it.
    std::ifstream in(f.path(), std::ios::binary);
    std::string head(2 * ps, '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    auto from_head = BboltSizeFromHead(head);
    EXPECT_TRUE(from_head.ok()) << from_head.status();
    if (from_head.ok()) {
      EXPECT_EQ(*from_head, *size);
    }
    EXPECT_FALSE(BboltSizeFromHead(head.substr(0, 40)).ok());
    head[16 + 20] ^= 1;  // meta 0's root: its checksum fails, meta 1 is used
    from_head = BboltSizeFromHead(head);
    EXPECT_TRUE(from_head.ok() && *from_head == *size);
    head[ps + 16 + 20] ^= 1;  // both bad
    EXPECT_FALSE(BboltSizeFromHead(head).ok());
  }
  Db got = ReadBack(f.path());
  EXPECT_TRUE(got == db) << "round trip differs (" << got.size() << " vs " << db.size()
                         << " buckets)";
  return *size;
}

std::string Key(int i) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "k%08d", i);
  return buf;
}

// etcd's buckets, as a snapshot of a small cluster holds them.
Db EtcdLike() {
  Db db;
  for (const char* b : {"alarm", "auth", "authRoles", "authUsers", "cluster", "key", "lease",
                        "members", "members_removed", "meta"}) {
    db[b];
  }
  db["auth"]["authRevision"] = std::string("\0\0\0\0\0\0\0\x01", 8);
  db["cluster"]["clusterVersion"] = "3.4.0";
  db["meta"]["consistent_index"] = std::string("\0\0\0\0\0\0\0\x09", 8);
  db["members"]["8e9e05c52164694d"] = R"({"id":10276657743932975437,"peerURLs":["http://x"]})";
  for (int i = 0; i < 300; ++i) db["key"][Key(i)] = std::string(40, static_cast<char>('a' + i % 26));
  return db;
}

TEST(BboltWriterTest, EmptyDatabase) {
  TempFile f;
  auto size = Write(f.fd(), {});
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(*size, 4u * 4096);  // meta, meta, freelist, root leaf
  auto r = BboltReader::Open(f.path());
  ASSERT_TRUE(r.ok()) << r.status();
  auto names = (*r)->ListBuckets();
  ASSERT_TRUE(names.ok());
  EXPECT_TRUE(names->empty());
}

TEST(BboltWriterTest, EtcdBucketsRoundTrip) { RoundTrip(EtcdLike()); }

TEST(BboltWriterTest, EmptyBucketsRoundTrip) {
  Db db;
  db["a"];
  db["b"]["x"] = "";
  db["c"];
  RoundTrip(db);
}

TEST(BboltWriterTest, ManyKeysMakeAThreeLevelTree) {
  Db db;
  // ~60 leaf elements of 48 bytes per page; 200k keys need ~3300 leaves and
  // branch pages of ~200 children: three levels.
  for (int i = 0; i < 200000; ++i) db["key"][Key(i)] = std::string(23, 'v');
  db["other"]["z"] = "1";
  const uint64_t size = RoundTrip(db);
  // Compact: within 10% of the payload plus element headers.
  const uint64_t payload = 200000ull * (16 + 9 + 23);
  EXPECT_LT(size, payload + payload / 10 + 64 * 4096);
}

TEST(BboltWriterTest, ManyBucketsMakeABranchRoot) {
  Db db;
  for (int b = 0; b < 2000; ++b) {
    Bucket& kv = db[absl::StrCat("bucket-", Key(b))];
    for (int i = 0; i < b % 7; ++i) kv[Key(i)] = std::string(b % 50, 'x');
  }
  RoundTrip(db);
}

TEST(BboltWriterTest, LargeValuesSpanOverflowPages) {
  Db db;
  Bucket& b = db["big"];
  b["a-small"] = "1";
  b["b-one-page"] = std::string(4096 - 16 - 16 - 10, 'p');  // exactly one page alone
  b["c-just-over"] = std::string(4096, 'q');
  b["d-small"] = "2";
  b["e-100k"] = std::string(100 * 1024 + 3, 'r');
  b["f-1m"] = std::string(1 << 20, 's');
  b["g-small"] = "3";
  b["h-small"] = "4";
  for (int i = 0; i < 50; ++i) b[absl::StrCat("i", Key(i))] = std::string(i * 997, 't');
  db["next"]["k"] = "v";
  RoundTrip(db);
}

TEST(BboltWriterTest, LargeValuesWithOtherPageSizes) {
  for (uint32_t ps : {1024u, 16384u, 65536u}) {
    Db db;
    for (int i = 0; i < 500; ++i) db["b"][Key(i)] = std::string((i * 131) % (3 * ps), 'x');
    RoundTrip(db, ps);
  }
}

TEST(BboltWriterTest, PageBoundarySizes) {
  // Entries sized so that k entries fill a page to within a few bytes of
  // its end, for k = 1..4, around each boundary.
  for (int per_page = 1; per_page <= 4; ++per_page) {
    const int elem = (4096 - 16) / per_page;  // element + key + value
    for (int delta = -2; delta <= 2; ++delta) {
      Db db;
      const int vsize = elem - 16 - 9 + delta;
      for (int i = 0; i < 3 * per_page + 1; ++i) db["b"][Key(i)] = std::string(vsize, 'z');
      SCOPED_TRACE(absl::StrCat("per_page ", per_page, " delta ", delta));
      RoundTrip(db);
    }
  }
}

TEST(BboltWriterTest, SmallBucketsAreInlined) {
  // One bucket whose leaf is exactly page_size/4 bytes: inline, so the file
  // is the 4 fixed pages; one byte more and it gets a page of its own.
  for (int extra : {0, 1}) {
    Db db;
    db["b"]["k"] = std::string(1024 - 16 - 16 - 1 + extra, 'x');
    TempFile f;
    auto size = Write(f.fd(), db);
    ASSERT_TRUE(size.ok());
    EXPECT_EQ(*size, (extra == 0 ? 4u : 5u) * 4096) << extra;
    EXPECT_TRUE(ReadBack(f.path()) == db);
  }
}

TEST(BboltWriterTest, NestedBuckets) {
  TempFile f;
  auto w = BboltWriter::Create(f.fd());
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->BeginBucket("outer").ok());
  ASSERT_TRUE((*w)->Put("a", "1").ok());
  ASSERT_TRUE((*w)->BeginBucket("b-inner").ok());
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE((*w)->Put(Key(i), "v").ok());
  ASSERT_TRUE((*w)->EndBucket().ok());
  ASSERT_TRUE((*w)->BeginBucket("c-tiny").ok());
  ASSERT_TRUE((*w)->Put("x", "y").ok());
  ASSERT_TRUE((*w)->EndBucket().ok());
  // Names and keys share the bucket's key order.
  EXPECT_EQ((*w)->Put("c-tiny", "dup").code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE((*w)->Put("d", "4").ok());
  ASSERT_TRUE((*w)->EndBucket().ok());
  ASSERT_TRUE((*w)->Finish().ok());
  auto r = BboltReader::Open(f.path());
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<std::pair<std::string, bool>> seen;
  ASSERT_TRUE((*r)->ForEach("outer", [&](std::string_view k, std::string_view, bool b) {
                     seen.emplace_back(std::string(k), b);
                     return true;
                   }).ok());
  EXPECT_THAT(seen, ElementsAre(std::make_pair("a", false), std::make_pair("b-inner", true),
                                std::make_pair("c-tiny", true), std::make_pair("d", false)));
}

TEST(BboltWriterTest, RejectsCallsOutOfOrder) {
  TempFile f;
  auto w = BboltWriter::Create(f.fd());
  ASSERT_TRUE(w.ok());
  EXPECT_EQ((*w)->Put("k", "v").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*w)->EndBucket().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE((*w)->BeginBucket("m").ok());
  EXPECT_EQ((*w)->Finish().status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*w)->Put("", "v").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*w)->Put(std::string(kBboltMaxKeyBytes + 1, 'k'), "v").code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE((*w)->Put(std::string(kBboltMaxKeyBytes, 'k'), "v").ok());
  EXPECT_EQ((*w)->Put("a", "v").code(), absl::StatusCode::kInvalidArgument);  // before
  EXPECT_EQ((*w)->Put(std::string(kBboltMaxKeyBytes, 'k'), "v").code(),
            absl::StatusCode::kInvalidArgument);  // equal
  ASSERT_TRUE((*w)->Put("l", "v").ok());            // the writer is still usable
  ASSERT_TRUE((*w)->EndBucket().ok());
  EXPECT_EQ((*w)->BeginBucket("a").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*w)->BeginBucket("m").code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE((*w)->Finish().ok());
  EXPECT_EQ((*w)->BeginBucket("z").code(), absl::StatusCode::kFailedPrecondition);
  Db got = ReadBack(f.path());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got["m"].size(), 2u);
  EXPECT_EQ(got["m"][std::string(kBboltMaxKeyBytes, 'k')], "v");
}

TEST(BboltWriterTest, KeysLargerThanAPage) {
  // Branch elements carry a child's first key: with keys of several pages,
  // every branch page overflows (a bug once stacked branch levels forever).
  Db db;
  for (int i = 0; i < 40; ++i) {
    db["b"][std::string(kBboltMaxKeyBytes - 50 + i, static_cast<char>('a' + i % 26)) + Key(i)] =
        std::string(i * 100, 'v');
  }
  for (int i = 0; i < 100; ++i) db["c"][std::string(5000, 'k') + Key(i)] = "v";
  RoundTrip(db);
}

TEST(BboltWriterTest, RejectsBadPageSizes) {
  for (uint32_t ps : {0u, 512u, 3000u, 131072u}) {
    BboltWriterOptions o;
    o.page_size = ps;
    EXPECT_EQ(BboltWriter::Create(1, o).status().code(), absl::StatusCode::kInvalidArgument) << ps;
  }
}

TEST(BboltWriterTest, WriteErrorIsReportedAndSticks) {
  TempFile f;
  const int ro = ::open(f.path().c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(ro, 0);
  BboltWriterOptions o;
  o.write_buffer_bytes = 4096;  // every page is written at once
  auto w = BboltWriter::Create(ro, o);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->BeginBucket("b").ok());
  absl::Status first;
  for (int i = 0; i < 1000 && first.ok(); ++i) first = (*w)->Put(Key(i), std::string(100, 'x'));
  EXPECT_EQ(first.code(), absl::StatusCode::kInternal) << first;
  EXPECT_EQ((*w)->Put("zz", "v").code(), absl::StatusCode::kInternal);
  EXPECT_EQ((*w)->Finish().status().code(), absl::StatusCode::kInternal);
  ::close(ro);
}

TEST(BboltWriterTest, RandomDatabasesMatchTheModel) {
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937 rng(seed);
  for (int round = 0; round < 20; ++round) {
    Db db;
    const int buckets = 1 + static_cast<int>(rng() % 12);
    for (int b = 0; b < buckets; ++b) {
      Bucket& kv = db[std::string(1 + rng() % 20, static_cast<char>('a' + rng() % 26))];
      const int n = static_cast<int>(rng() % 3000);
      for (int i = 0; i < n; ++i) {
        std::string k(1 + rng() % 64, '\0');
        for (char& c : k) c = static_cast<char>(rng());
        size_t vs = rng() % 100;
        if (rng() % 50 == 0) vs = rng() % 20000;  // now and then past a page
        kv[k] = std::string(vs, static_cast<char>(rng()));
      }
    }
    const uint32_t ps = 1024u << (rng() % 3);
    SCOPED_TRACE(absl::StrCat("round ", round, " page size ", ps));
    RoundTrip(db, ps);
  }
}

// bbolt itself opens the file, runs tx.Check() (every page reachable once,
// page types, bounds) and walks every bucket (etcdctl snapshot status).
TEST(BboltWriterTest, EtcdctlSnapshotStatusAcceptsTheFile) {
  const char* etcdctl = "/usr/bin/etcdctl";
  if (::access(etcdctl, X_OK) != 0) GTEST_SKIP() << "no etcdctl";
  Db db = EtcdLike();
  // etcd reads "key" keys as revisions: 8 bytes main, '_', 8 bytes sub.
  auto rev = [](uint64_t main) {
    std::string k(17, '_');
    for (int i = 0; i < 8; ++i) {
      k[i] = static_cast<char>(main >> (56 - 8 * i));
      k[9 + i] = 0;
    }
    return k;
  };
  db["key"].clear();
  for (int i = 2; i < 20000; ++i) db["key"][rev(i)] = std::string(i % 300, 'y');
  db["key"][rev(20000)] = std::string(300000, 'L');
  TempFile f;
  {
    auto w = BboltWriter::Create(f.fd());
    ASSERT_TRUE(w.ok());
    for (const auto& [name, kvs] : db) {
      ASSERT_TRUE((*w)->BeginBucket(name).ok());
      if (name == "lease") {  // a nested bucket, page-rooted, and an inline one
        ASSERT_TRUE((*w)->BeginBucket("nested").ok());
        for (int i = 0; i < 500; ++i) ASSERT_TRUE((*w)->Put(Key(i), "n").ok());
        ASSERT_TRUE((*w)->BeginBucket("nested2").ok());
        ASSERT_TRUE((*w)->Put("x", "y").ok());
        ASSERT_TRUE((*w)->EndBucket().ok());
        ASSERT_TRUE((*w)->EndBucket().ok());
      }
      for (const auto& [k, v] : kvs) ASSERT_TRUE((*w)->Put(k, v).ok());
      ASSERT_TRUE((*w)->EndBucket().ok());
    }
    ASSERT_TRUE((*w)->Finish().ok());
  }
  // What etcd's status computes: CRC-32C over bucket names, keys, values
  // (a nested bucket counts as its name with an empty value).
  uint32_t hash = 0;
  uint64_t keys = 0;
  for (const auto& [name, kvs] : db) {
    hash = util::Crc32cExtend(hash, name.data(), name.size());
    if (name == "lease") {
      hash = util::Crc32cExtend(hash, "nested", 6);
      ++keys;
    }
    for (const auto& [k, v] : kvs) {
      hash = util::Crc32cExtend(hash, k.data(), k.size());
      hash = util::Crc32cExtend(hash, v.data(), v.size());
      ++keys;
    }
  }
  const std::string out = f.path() + ".out";
  const std::string cmd =
      absl::StrCat(etcdctl, " snapshot status ", f.path(), " -w json > ", out, " 2>&1");
  const int rc = std::system(cmd.c_str());
  std::ifstream in(out);
  std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ::unlink(out.c_str());
  ASSERT_EQ(rc, 0) << got;
  EXPECT_THAT(got, HasSubstr(absl::StrCat("\"hash\":", hash, ",")));
  EXPECT_THAT(got, HasSubstr("\"revision\":20000,"));
  EXPECT_THAT(got, HasSubstr(absl::StrCat("\"totalKey\":", keys, ",")));
  EXPECT_THAT(got, HasSubstr(absl::StrCat("\"totalSize\":", FileSize(f.path()), "}")));
}

}  // namespace
}  // namespace cppetcd::storage
