#include "cppetcd/storage/backend.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "cppetcd/util/crc32c.h"
#include "gtest/gtest.h"

namespace cppetcd::storage {
namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "backend_test.XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

BackendOptions SmallOptions() {
  BackendOptions o;
  o.map_size_bytes = 64 << 20;
  return o;
}

std::unique_ptr<Backend> MustOpen(const std::string& path, BackendOptions o = SmallOptions()) {
  auto b = Backend::Open(path, std::move(o));
  EXPECT_TRUE(b.ok()) << b.status();
  return std::move(b).value();
}

void MustPut(Backend* b, std::string_view bucket,
             std::vector<std::pair<std::string, std::string>> kvs) {
  auto w = b->BeginWrite();
  ASSERT_TRUE(w.ok());
  for (auto& [k, v] : kvs) ASSERT_TRUE((*w)->Put(bucket, k, v).ok());
  ASSERT_TRUE((*w)->Commit().ok());
}

std::vector<std::string> ScanKeys(ReadTxn* t, std::string_view bucket, std::string_view begin,
                                  std::string_view end, bool reverse = false, size_t max = 0) {
  std::vector<std::string> out;
  auto fn = [&](std::string_view k, std::string_view) {
    out.emplace_back(k);
    return max == 0 || out.size() < max;
  };
  absl::Status s = reverse ? t->ScanReverse(bucket, begin, end, fn) : t->Scan(bucket, begin, end, fn);
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

TEST(BackendTest, BucketsAreSeparate) {
  TempDir dir;
  auto b = MustOpen(dir.File("db"));
  MustPut(b.get(), kKeyBucket, {{"a", "1"}});
  MustPut(b.get(), kMetaBucket, {{"a", "2"}});
  auto r = b->BeginRead();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(**(*r)->Get(kKeyBucket, "a"), "1");
  EXPECT_EQ(**(*r)->Get(kMetaBucket, "a"), "2");
  EXPECT_FALSE((*(*r)->Get(kLeaseBucket, "a")).has_value());
  EXPECT_FALSE((*(*r)->Get(kKeyBucket, "b")).has_value());
  for (auto name : kAllBuckets) EXPECT_TRUE((*r)->Get(name, "x").ok()) << name;
  EXPECT_EQ((*r)->Get("nosuch", "a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*(*r)->Count(kKeyBucket), 1u);
}

TEST(BackendTest, ScanShapes) {
  TempDir dir;
  auto b = MustOpen(dir.File("db"));
  MustPut(b.get(), kKeyBucket, {{"a", ""}, {"b", ""}, {"ba", ""}, {"c", ""}, {"d", ""}});
  auto r = *b->BeginRead();
  using V = std::vector<std::string>;
  struct Case {
    std::string begin, end;
    bool reverse;
    size_t max;
    V want;
  };
  std::vector<Case> cases = {
      {"", "", false, 0, V{"a", "b", "ba", "c", "d"}},
      {"b", "c", false, 0, V{"b", "ba"}},
      {"b", "", false, 0, V{"b", "ba", "c", "d"}},
      {"bb", "cc", false, 0, V{"c"}},
      {"e", "", false, 0, V{}},
      {"", "a", false, 0, V{}},
      {"a", "z", false, 2, V{"a", "b"}},
      {"", "", true, 0, V{"d", "c", "ba", "b", "a"}},
      {"b", "c", true, 0, V{"ba", "b"}},
      {"b", "cc", true, 0, V{"c", "ba", "b"}},
      {"", "zz", true, 1, V{"d"}},
      {"bb", "", true, 0, V{"d", "c"}},
      {"", "a", true, 0, V{}},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(ScanKeys(r.get(), kKeyBucket, c.begin, c.end, c.reverse, c.max), c.want)
        << c.begin << ".." << c.end << " reverse=" << c.reverse;
  }
}

TEST(BackendTest, WriteTxnSeesOwnWritesAndAbortDrops) {
  TempDir dir;
  auto b = MustOpen(dir.File("db"));
  MustPut(b.get(), kKeyBucket, {{"k", "v0"}});
  {
    auto w = *b->BeginWrite();
    ASSERT_TRUE(w->Put(kKeyBucket, "k", "v1").ok());
    ASSERT_TRUE(w->Put(kKeyBucket, "n", "new").ok());
    ASSERT_TRUE(w->Delete(kKeyBucket, "absent").ok());
    EXPECT_EQ(**w->Get(kKeyBucket, "k"), "v1");
    EXPECT_EQ(ScanKeys(w.get(), kKeyBucket, "", ""), (std::vector<std::string>{"k", "n"}));
    w->Abort();
    EXPECT_FALSE(w->Put(kKeyBucket, "x", "y").ok());
  }
  {
    auto w = *b->BeginWrite();
    ASSERT_TRUE(w->Put(kKeyBucket, "z", "dropped by destructor").ok());
  }
  auto r = *b->BeginRead();
  EXPECT_EQ(**r->Get(kKeyBucket, "k"), "v0");
  EXPECT_FALSE(r->Get(kKeyBucket, "n")->has_value());
  EXPECT_FALSE(r->Get(kKeyBucket, "z")->has_value());
}

TEST(BackendTest, AppendAndReserve) {
  TempDir dir;
  auto b = MustOpen(dir.File("db"));
  auto w = *b->BeginWrite();
  ASSERT_TRUE(w->Append(kKeyBucket, "b", "1").ok());
  ASSERT_TRUE(w->Append(kKeyBucket, "c", "2").ok());
  // Out of order and duplicate keys fall back to an ordinary insert.
  ASSERT_TRUE(w->Append(kKeyBucket, "a", "0").ok());
  ASSERT_TRUE(w->Append(kKeyBucket, "c", "3").ok());
  auto span = w->PutReserve(kKeyBucket, "d", 5, /*append_hint=*/true);
  ASSERT_TRUE(span.ok());
  std::memcpy(span->data(), "hello", 5);
  auto span2 = w->PutReserve(kKeyBucket, "a", 3, /*append_hint=*/true);
  ASSERT_TRUE(span2.ok());
  std::memcpy(span2->data(), "abc", 3);
  ASSERT_TRUE(w->Commit().ok());
  auto r = *b->BeginRead();
  EXPECT_EQ(**r->Get(kKeyBucket, "a"), "abc");
  EXPECT_EQ(**r->Get(kKeyBucket, "b"), "1");
  EXPECT_EQ(**r->Get(kKeyBucket, "c"), "3");
  EXPECT_EQ(**r->Get(kKeyBucket, "d"), "hello");
  EXPECT_EQ(*r->Count(kKeyBucket), 4u);
}

TEST(BackendTest, ReadersSeeSnapshotsWhileWriterCommits) {
  TempDir dir;
  auto b = MustOpen(dir.File("db"));
  MustPut(b.get(), kMetaBucket, {{"n", "0"}});
  constexpr int kWrites = 200;
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      int last = 0;
      while (!done.load()) {
        auto r = b->BeginRead();
        if (!r.ok()) {
          failures++;
          return;
        }
        // Both keys are written in one txn: a snapshot sees equal values.
        auto n = (*r)->Get(kMetaBucket, "n");
        auto m = (*r)->Get(kMetaBucket, "m");
        std::string nv(n->value_or("x")), mv(m->value_or("0"));
        if (nv != mv) failures++;
        int v = std::stoi(nv);
        if (v < last) failures++;  // never goes back
        last = v;
      }
    });
  }
  for (int i = 1; i <= kWrites; ++i) {
    auto w = *b->BeginWrite();
    std::string v = std::to_string(i);
    ASSERT_TRUE(w->Put(kMetaBucket, "n", v).ok());
    ASSERT_TRUE(w->Put(kMetaBucket, "m", v).ok());
    ASSERT_TRUE(w->Commit().ok());
  }
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(BackendTest, OpenReadTxnKeepsItsSnapshot) {
  TempDir dir;
  auto b = MustOpen(dir.File("db"));
  MustPut(b.get(), kKeyBucket, {{"k", "old"}});
  auto r = *b->BeginRead();
  MustPut(b.get(), kKeyBucket, {{"k", "new"}, {"k2", "x"}});
  EXPECT_EQ(**r->Get(kKeyBucket, "k"), "old");
  EXPECT_FALSE(r->Get(kKeyBucket, "k2")->has_value());
  // A read txn may move to another thread (MDB_NOTLS).
  std::string seen;
  std::thread([&] { seen = std::string(**r->Get(kKeyBucket, "k")); }).join();
  EXPECT_EQ(seen, "old");
  r.reset();
  auto r2 = *b->BeginRead();  // recycled txn sees the newest commit
  EXPECT_EQ(**r2->Get(kKeyBucket, "k"), "new");
}

TEST(BackendTest, ReopenPersists) {
  TempDir dir;
  {
    auto b = MustOpen(dir.File("db"));
    MustPut(b.get(), kLeaseBucket, {{"l1", "v1"}});
    ASSERT_TRUE(b->Sync().ok());
  }
  auto b = MustOpen(dir.File("db"));
  auto r = *b->BeginRead();
  EXPECT_EQ(**r->Get(kLeaseBucket, "l1"), "v1");
}

TEST(BackendTest, CopyToThenOpenTheCopy) {
  TempDir dir;
  auto b = MustOpen(dir.File("db"));
  for (int i = 0; i < 100; ++i) {
    MustPut(b.get(), kKeyBucket, {{absl::StrFormat("k%03d", i), std::string(100, 'a' + i % 26)}});
  }
  auto open_reader = *b->BeginRead();  // an open reader does not block the copy
  int fd = ::open(dir.File("copy").c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(b->CopyTo(fd).ok());
  ::close(fd);
  MustPut(b.get(), kKeyBucket, {{"after", "copy"}});
  auto c = MustOpen(dir.File("copy"));
  auto r = *c->BeginRead();
  EXPECT_EQ(*r->Count(kKeyBucket), 100u);
  EXPECT_EQ(**r->Get(kKeyBucket, "k007"), std::string(100, 'h'));
  EXPECT_FALSE(r->Get(kKeyBucket, "after")->has_value());
}

TEST(BackendTest, Sizes) {
  TempDir dir;
  auto b = MustOpen(dir.File("db"));
  int64_t size0 = b->SizeBytes();
  int64_t inuse0 = b->SizeInUseBytes();
  EXPECT_GT(size0, 0);
  EXPECT_GT(inuse0, 0);
  EXPECT_LE(inuse0, size0);
  std::string big(4000, 'v');
  for (int i = 0; i < 200; ++i) MustPut(b.get(), kKeyBucket, {{absl::StrFormat("k%03d", i), big}});
  int64_t size1 = b->SizeBytes();
  int64_t inuse1 = b->SizeInUseBytes();
  EXPECT_GT(size1, size0 + 200 * 4000);
  EXPECT_GT(inuse1, inuse0 + 200 * 4000);
  EXPECT_LE(inuse1, size1);
  {
    auto w = *b->BeginWrite();
    for (int i = 0; i < 200; ++i) ASSERT_TRUE(w->Delete(kKeyBucket, absl::StrFormat("k%03d", i)).ok());
    ASSERT_TRUE(w->Commit().ok());
  }
  // Two more commits so the freed pages are no longer referenced.
  MustPut(b.get(), kMetaBucket, {{"x", "1"}});
  MustPut(b.get(), kMetaBucket, {{"x", "2"}});
  EXPECT_EQ(b->SizeBytes(), size1);  // LMDB never shrinks the file
  EXPECT_LT(b->SizeInUseBytes(), inuse1 / 2);
}

// SizeInUseBytes remembers its free-list walk per commit (the quota check
// asks for every write request near the quota): each commit, and a
// defragmentation's new environment, must still be seen at once.
TEST(BackendTest, SizeInUseFollowsEveryCommitAndDefragment) {
  TempDir dir;
  auto b = MustOpen(dir.File("db"));
  const std::string big(8000, 'v');
  int64_t last = b->SizeInUseBytes();
  for (int i = 0; i < 20; ++i) {
    MustPut(b.get(), kKeyBucket, {{absl::StrFormat("k%03d", i), big}});
    const int64_t now = b->SizeInUseBytes();
    EXPECT_GT(now, last) << "commit " << i;
    EXPECT_EQ(b->SizeInUseBytes(), now) << "no commit in between";
    last = now;
  }
  {
    auto w = *b->BeginWrite();
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(w->Delete(kKeyBucket, absl::StrFormat("k%03d", i)).ok());
    ASSERT_TRUE(w->Commit().ok());
  }
  MustPut(b.get(), kMetaBucket, {{"x", "1"}});
  MustPut(b.get(), kMetaBucket, {{"x", "2"}});
  const int64_t freed = b->SizeInUseBytes();
  EXPECT_LT(freed, last / 2);
  auto res = b->Defragment();
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(b->SizeInUseBytes(), res->size_in_use_after_bytes);
  EXPECT_LE(b->SizeInUseBytes(), b->SizeBytes());
  MustPut(b.get(), kKeyBucket, {{"after", big}});
  EXPECT_GT(b->SizeInUseBytes(), res->size_in_use_after_bytes);
}

TEST(BackendTest, MapFullIsResourceExhausted) {
  TempDir dir;
  BackendOptions o;
  o.map_size_bytes = 1 << 20;
  auto b = MustOpen(dir.File("db"), o);
  auto w = *b->BeginWrite();
  std::string big(8000, 'x');
  absl::Status s;
  for (int i = 0; i < 1000 && s.ok(); ++i) s = w->Put(kKeyBucket, absl::StrFormat("k%04d", i), big);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  w->Abort();
  // The backend is still usable after the failed transaction.
  MustPut(b.get(), kKeyBucket, {{"small", "ok"}});
}

// A key LMDB cannot store is the caller's error, refused before any change
// (the txn goes on); it used to surface as an Internal MDB_BAD_VALSIZE that
// the apply loop took for a fault.
TEST(BackendTest, KeysPastTheLimitAreRefusedAndTheTxnGoesOn) {
  TempDir dir;
  auto b = MustOpen(dir.File("db"));
  const std::string longest(kMaxKeyBytes, 'k');
  const std::string too_long(kMaxKeyBytes + 1, 'k');
  auto w = b->BeginWrite();
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Put(kAuthUsersBucket, longest, "1").ok());
  EXPECT_EQ((*w)->Put(kAuthUsersBucket, too_long, "2").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*w)->Append(kAuthUsersBucket, too_long, "2").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*w)->PutReserve(kAuthUsersBucket, too_long, 4).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*w)->Put(kAuthUsersBucket, "", "2").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*w)->Delete(kAuthUsersBucket, too_long).ok());  // cannot be there
  ASSERT_TRUE((*w)->Put(kAuthUsersBucket, "after", "3").ok());
  ASSERT_TRUE((*w)->Commit().ok());
  auto r = b->BeginRead();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(ScanKeys(r->get(), kAuthUsersBucket, "", ""),
            (std::vector<std::string>{"after", longest}));
}

TEST(BackendTest, SavepointKeepsOrDropsItsChangesOnly) {
  TempDir dir;
  auto b = MustOpen(dir.File("db"));
  MustPut(b.get(), kMetaBucket, {{"old", "0"}});
  auto w = b->BeginWrite();
  ASSERT_TRUE(w.ok());
  WriteTxn* t = w->get();
  ASSERT_TRUE(t->Put(kMetaBucket, "a", "1").ok());
  // Dropped: a put, an overwrite and a delete, seen inside meanwhile.
  ASSERT_TRUE(t->BeginNested().ok());
  EXPECT_TRUE(t->InNested());
  EXPECT_FALSE(t->NestedWrote());
  EXPECT_EQ(t->BeginNested().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(**t->Get(kMetaBucket, "a"), "1");
  ASSERT_TRUE(t->Put(kMetaBucket, "b", "2").ok());
  ASSERT_TRUE(t->Put(kMetaBucket, "a", "changed").ok());
  ASSERT_TRUE(t->Delete(kMetaBucket, "old").ok());
  EXPECT_TRUE(t->NestedWrote());
  EXPECT_EQ(t->Put(kMetaBucket, std::string(kMaxKeyBytes + 1, 'x'), "v").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(**t->Get(kMetaBucket, "a"), "changed");
  ASSERT_TRUE(t->EndNested(false).ok());
  EXPECT_FALSE(t->InNested());
  EXPECT_EQ(t->EndNested(false).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(**t->Get(kMetaBucket, "a"), "1");
  EXPECT_FALSE((*t->Get(kMetaBucket, "b")).has_value());
  EXPECT_EQ(**t->Get(kMetaBucket, "old"), "0");
  // Kept.
  ASSERT_TRUE(t->BeginNested().ok());
  ASSERT_TRUE(t->Put(kMetaBucket, "c", "3").ok());
  ASSERT_TRUE(t->EndNested(true).ok());
  // Left open: Commit keeps it.
  ASSERT_TRUE(t->BeginNested().ok());
  ASSERT_TRUE(t->Put(kMetaBucket, "d", "4").ok());
  ASSERT_TRUE(t->Commit().ok());
  auto r = b->BeginRead();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(ScanKeys(r->get(), kMetaBucket, "", ""),
            (std::vector<std::string>{"a", "c", "d", "old"}));
  // Abort with a savepoint open drops everything.
  {
    auto w2 = b->BeginWrite();
    ASSERT_TRUE(w2.ok());
    ASSERT_TRUE((*w2)->Put(kMetaBucket, "e", "5").ok());
    ASSERT_TRUE((*w2)->BeginNested().ok());
    ASSERT_TRUE((*w2)->Put(kMetaBucket, "f", "6").ok());
  }  // destroyed: aborted
  auto r2 = b->BeginRead();
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(ScanKeys(r2->get(), kMetaBucket, "", ""),
            (std::vector<std::string>{"a", "c", "d", "old"}));
}

// The buckets etcd lacks do not change the hash while they are empty.
TEST(BackendTest, EmptyCppetcdOnlyBucketsLeaveTheHashAlone) {
  TempDir dir;
  auto b = MustOpen(dir.File("db"));
  MustPut(b.get(), kKeyBucket, {{"k", "v"}});
  auto h0 = b->Hash({});
  ASSERT_TRUE(h0.ok());
  // etcd's layout: every etcd bucket name in order, then its pairs.
  std::vector<std::string_view> etcd_buckets;
  for (auto name : kAllBuckets) {
    if (!IsCppetcdOnlyBucket(name)) etcd_buckets.push_back(name);
  }
  std::sort(etcd_buckets.begin(), etcd_buckets.end());
  uint32_t want = 0;
  for (auto name : etcd_buckets) {
    want = util::Crc32cExtend(want, name.data(), name.size());
    if (name == kKeyBucket) {
      want = util::Crc32cExtend(want, "k", 1);
      want = util::Crc32cExtend(want, "v", 1);
    }
  }
  EXPECT_EQ(*h0, want);
  MustPut(b.get(), kAuthRolesHashedBucket, {{"h", "r"}});
  auto h1 = b->Hash({});
  ASSERT_TRUE(h1.ok());
  EXPECT_NE(*h1, *h0);
  {
    auto w = b->BeginWrite();
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Delete(kAuthRolesHashedBucket, "h").ok());
    ASSERT_TRUE((*w)->Commit().ok());
  }
  EXPECT_EQ(*b->Hash({}), *h0);
}

TEST(BackendTest, BigEndian) {
  EXPECT_EQ(EncodeBigEndian64(0x0102030405060708ull), std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
  EXPECT_EQ(GetBigEndian64(EncodeBigEndian64(0xfedcba9876543210ull).data()), 0xfedcba9876543210ull);
}

}  // namespace
}  // namespace cppetcd::storage
