// Online defragmentation and Hash of the LMDB backend.
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/util/crc32c.h"
#include "gtest/gtest.h"

namespace cppetcd::storage {
namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "defrag_test.XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::unique_ptr<Backend> MustOpen(const std::string& path) {
  BackendOptions o;
  o.map_size_bytes = 256 << 20;
  auto b = Backend::Open(path, std::move(o));
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? std::move(b).value() : nullptr;
}

std::string Key(int i) { return absl::StrFormat("k%06d", i); }
std::string Value(int i, int version) { return absl::StrCat(std::string(900, 'v'), i, ".", version); }

// All (key, value) pairs of a bucket.
std::map<std::string, std::string> Contents(Backend* b, std::string_view bucket) {
  std::map<std::string, std::string> out;
  auto r = b->BeginRead();
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE((*r)->Scan(bucket, "", "", [&](std::string_view k, std::string_view v) {
                  out.emplace(k, v);
                  return true;
                }).ok());
  return out;
}

// Fills the key bucket with n ~1 KB values, then deletes all but every 10th:
// a file with most pages free.
void FillAndThin(Backend* b, int n) {
  for (int start = 0; start < n; start += 500) {
    auto w = b->BeginWrite();
    ASSERT_TRUE(w.ok());
    for (int i = start; i < std::min(n, start + 500); ++i) {
      ASSERT_TRUE((*w)->Put(kKeyBucket, Key(i), Value(i, 0)).ok());
    }
    ASSERT_TRUE((*w)->Commit().ok());
  }
  auto w = b->BeginWrite();
  ASSERT_TRUE(w.ok());
  for (int i = 0; i < n; ++i) {
    if (i % 10 != 0) {
      ASSERT_TRUE((*w)->Delete(kKeyBucket, Key(i)).ok());
    }
  }
  ASSERT_TRUE((*w)->Put(kMetaBucket, "consistent_index", EncodeBigEndian64(42)).ok());
  ASSERT_TRUE((*w)->Commit().ok());
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

TEST(BackendDefragTest, SameDataSmallerFile) {
  TempDir dir;
  auto b = MustOpen(dir.File("db"));
  FillAndThin(b.get(), 4000);
  auto before = Contents(b.get(), kKeyBucket);
  auto hash_before = b->Hash({});
  ASSERT_TRUE(hash_before.ok());
  const int64_t size_before = b->SizeBytes();

  auto res = b->Defragment();
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(res->size_before_bytes, size_before);
  EXPECT_EQ(res->size_after_bytes, b->SizeBytes());
  EXPECT_LT(res->size_after_bytes, size_before / 4) << size_before;
  EXPECT_LE(res->size_in_use_after_bytes, res->size_after_bytes);
  EXPECT_EQ(Contents(b.get(), kKeyBucket), before);
  EXPECT_EQ(*b->Hash({}), *hash_before);
  EXPECT_FALSE(Exists(dir.File("db.defrag")));

  // Still writable, and what was written survives a reopen.
  {
    auto w = b->BeginWrite();
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Put(kKeyBucket, "after", "1").ok());
    ASSERT_TRUE((*w)->Commit().ok());
  }
  before["after"] = "1";
  b.reset();
  b = MustOpen(dir.File("db"));
  EXPECT_EQ(Contents(b.get(), kKeyBucket), before);
}

TEST(BackendDefragTest, WritesDuringTheCopyAreKept) {
  TempDir dir;
  auto b = MustOpen(dir.File("db"));
  FillAndThin(b.get(), 1000);
  auto expect = Contents(b.get(), kKeyBucket);
  DefragmentOptions opts;
  opts.on_step = [&](std::string_view step) {
    if (step != "copied") return absl::OkStatus();
    auto w = b->BeginWrite();
    EXPECT_TRUE(w.ok());
    EXPECT_TRUE((*w)->Put(kKeyBucket, Key(0), "changed").ok());           // overwrite
    EXPECT_TRUE((*w)->Delete(kKeyBucket, Key(10)).ok());                  // delete
    EXPECT_TRUE((*w)->Put(kKeyBucket, "new", "x").ok());                  // insert
    auto buf = (*w)->PutReserve(kLeaseBucket, "lease", 3);               // reserved value
    EXPECT_TRUE(buf.ok());
    std::memcpy(buf->data(), "abc", 3);
    EXPECT_TRUE((*w)->Put(kKeyBucket, "gone", "x").ok());                 // insert + delete
    EXPECT_TRUE((*w)->Delete(kKeyBucket, "gone").ok());
    EXPECT_TRUE((*w)->Commit().ok());
    auto aborted = b->BeginWrite();                                       // aborted: dropped
    EXPECT_TRUE((*aborted)->Put(kKeyBucket, "aborted", "x").ok());
    (*aborted)->Abort();
    return absl::OkStatus();
  };
  auto res = b->Defragment(opts);
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_GE(res->replayed_keys, 5u);
  expect[Key(0)] = "changed";
  expect.erase(Key(10));
  expect["new"] = "x";
  EXPECT_EQ(Contents(b.get(), kKeyBucket), expect);
  EXPECT_EQ(Contents(b.get(), kLeaseBucket), (std::map<std::string, std::string>{{"lease", "abc"}}));
}

TEST(BackendDefragTest, ReadersBegunBeforeKeepTheirSnapshot) {
  TempDir dir;
  auto b = MustOpen(dir.File("db"));
  FillAndThin(b.get(), 1000);
  auto old_reader = b->BeginRead();
  ASSERT_TRUE(old_reader.ok());
  auto view = (*old_reader)->Get(kKeyBucket, Key(0));
  ASSERT_TRUE(view.ok() && view->has_value());
  const std::string old_value(**view);

  DefragmentOptions opts;
  opts.on_step = [&](std::string_view step) {
    if (step == "copied") {
      auto w = b->BeginWrite();
      EXPECT_TRUE((*w)->Put(kKeyBucket, Key(0), "new").ok());
      EXPECT_TRUE((*w)->Commit().ok());
    }
    return absl::OkStatus();
  };
  ASSERT_TRUE(b->Defragment(opts).ok());
  // The old snapshot, its views and its scans still work after the swap.
  EXPECT_EQ(**view, old_value);
  EXPECT_EQ(**(*old_reader)->Get(kKeyBucket, Key(0)), old_value);
  int n = 0;
  ASSERT_TRUE((*old_reader)->Scan(kKeyBucket, "", "", [&](auto, auto) { return ++n > 0; }).ok());
  EXPECT_EQ(n, 100);
  auto fresh = b->BeginRead();
  EXPECT_EQ(**(*fresh)->Get(kKeyBucket, Key(0)), "new");
  old_reader->reset();  // the old environment closes here
  EXPECT_EQ(**(*fresh)->Get(kKeyBucket, Key(0)), "new");
}

// Writers and readers run throughout two defragmentations: no write fails,
// none is lost, and readers always see a consistent, monotonic state.
TEST(BackendDefragTest, ConcurrentWritersAndReadersLoseNothing) {
  TempDir dir;
  auto b = MustOpen(dir.File("db"));
  FillAndThin(b.get(), 3000);
  constexpr int kWrites = 1500;
  std::atomic<bool> write_failed{false}, read_failed{false}, done{false};
  std::thread writer([&] {
    for (int i = 0; i < kWrites; ++i) {
      auto w = b->BeginWrite();
      if (!w.ok()) {
        write_failed = true;
        break;
      }
      // Counter and the matching key in one txn: readers check both agree.
      bool ok = (*w)->Put(kMetaBucket, "counter", EncodeBigEndian64(i + 1)).ok() &&
                (*w)->Put(kKeyBucket, absl::StrCat("w", Key(i)), Value(i, 1)).ok() &&
                (i % 3 != 0 || (*w)->Delete(kKeyBucket, Key((i * 10) % 3000)).ok()) &&
                (*w)->Commit().ok();
      if (!ok) write_failed = true;
    }
    done = true;
  });
  std::thread reader([&] {
    uint64_t last = 0;
    while (!done) {
      auto r = b->BeginRead();
      if (!r.ok()) {
        read_failed = true;
        break;
      }
      auto c = (*r)->Get(kMetaBucket, "counter");
      uint64_t counter = (c.ok() && c->has_value()) ? GetBigEndian64((*c)->data()) : 0;
      if (counter < last) read_failed = true;
      if (counter > 0) {
        auto k = (*r)->Get(kKeyBucket, absl::StrCat("w", Key(static_cast<int>(counter) - 1)));
        if (!k.ok() || !k->has_value()) read_failed = true;
      }
      last = counter;
    }
  });
  for (int round = 0; round < 2; ++round) {
    auto res = b->Defragment();
    EXPECT_TRUE(res.ok()) << res.status();
  }
  writer.join();
  reader.join();
  EXPECT_FALSE(write_failed);
  EXPECT_FALSE(read_failed);
  // Nothing lost: the expected final state, also after a reopen.
  std::map<std::string, std::string> expect;
  for (int i = 0; i < 3000; i += 10) expect[Key(i)] = Value(i, 0);
  for (int i = 0; i < kWrites; ++i) {
    expect[absl::StrCat("w", Key(i))] = Value(i, 1);
    if (i % 3 == 0) expect.erase(Key((i * 10) % 3000));
  }
  EXPECT_EQ(Contents(b.get(), kKeyBucket), expect);
  b.reset();
  b = MustOpen(dir.File("db"));
  EXPECT_EQ(Contents(b.get(), kKeyBucket), expect);
}

// A crash at each step leaves a database with all the data: the old file
// before the rename, the defragmented one after it.
TEST(BackendDefragTest, CrashAtEachStepLeavesAUsableDatabase) {
  for (std::string_view crash_at : {"copied", "switch_over", "before_rename", "after_rename"}) {
    SCOPED_TRACE(crash_at);
    TempDir dir;
    auto b = MustOpen(dir.File("db"));
    FillAndThin(b.get(), 1000);
    auto expect = Contents(b.get(), kKeyBucket);
    const int64_t size_before = b->SizeBytes();
    DefragmentOptions opts;
    opts.on_step = [&](std::string_view step) {
      return step == crash_at ? absl::AbortedError("simulated crash") : absl::OkStatus();
    };
    EXPECT_FALSE(b->Defragment(opts).ok());
    b.reset();  // the process is gone
    b = MustOpen(dir.File("db"));
    EXPECT_EQ(Contents(b.get(), kKeyBucket), expect);
    EXPECT_FALSE(Exists(dir.File("db.defrag")));
    if (crash_at == "after_rename") {
      EXPECT_LT(b->SizeBytes(), size_before);
    } else {
      EXPECT_EQ(b->SizeBytes(), size_before);
    }
    // And it defragments fine afterwards.
    EXPECT_TRUE(b->Defragment().ok());
    EXPECT_EQ(Contents(b.get(), kKeyBucket), expect);
  }
}

TEST(BackendDefragTest, ReplaceContentsCancelsARunningDefragmentation) {
  TempDir dir;
  auto src = MustOpen(dir.File("src"));
  {
    auto w = src->BeginWrite();
    ASSERT_TRUE((*w)->Put(kKeyBucket, "from", "snapshot").ok());
    ASSERT_TRUE((*w)->Commit().ok());
  }
  src.reset();
  auto b = MustOpen(dir.File("db"));
  FillAndThin(b.get(), 500);
  DefragmentOptions opts;
  opts.on_step = [&](std::string_view step) {
    if (step == "copied") {
      EXPECT_TRUE(b->ReplaceContentsFrom(dir.File("src")).ok());
    }
    return absl::OkStatus();
  };
  auto res = b->Defragment(opts);
  EXPECT_EQ(res.status().code(), absl::StatusCode::kAborted) << res.status();
  EXPECT_EQ(Contents(b.get(), kKeyBucket),
            (std::map<std::string, std::string>{{"from", "snapshot"}}));
  EXPECT_FALSE(Exists(dir.File("db.defrag")));
  // The next one runs normally.
  ASSERT_TRUE(b->Defragment().ok());
  EXPECT_EQ(Contents(b.get(), kKeyBucket),
            (std::map<std::string, std::string>{{"from", "snapshot"}}));
}

TEST(BackendHashTest, CrcOverBucketNamesKeysAndValuesInNameOrder) {
  TempDir dir;
  auto b = MustOpen(dir.File("db"));
  {
    auto w = b->BeginWrite();
    ASSERT_TRUE((*w)->Put(kKeyBucket, "a", "1").ok());
    ASSERT_TRUE((*w)->Put(kMetaBucket, "consistent_index", "xxxxxxxx").ok());
    ASSERT_TRUE((*w)->Put(kMetaBucket, "m", "2").ok());
    ASSERT_TRUE((*w)->Commit().ok());
  }
  // Bucket names in bytewise order; empty buckets contribute their name,
  // except the empty buckets etcd does not have (kCppetcdOnlyBuckets).
  std::vector<std::string> names;
  for (auto n : kAllBuckets) {
    if (!IsCppetcdOnlyBucket(n)) names.emplace_back(n);
  }
  std::sort(names.begin(), names.end());
  auto expected = [&](bool skip_ci) {
    std::string input;
    for (const auto& n : names) {
      input += n;
      if (n == kKeyBucket) input += "a1";
      if (n == kMetaBucket) input += skip_ci ? "m2" : "consistent_indexxxxxxxxxm2";
    }
    return util::Crc32c(input);
  };
  EXPECT_EQ(*b->Hash({}), expected(false));
  EXPECT_EQ(*b->Hash({{std::string(kMetaBucket), "consistent_index"}}), expected(true));
}

}  // namespace
}  // namespace cppetcd::storage
