// Backend::ReplaceContentsFrom: a member's database replaced in place by a
// copy of another member's (raft snapshot install).
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cppetcd/storage/backend.h"
#include "gtest/gtest.h"

namespace cppetcd::storage {
namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "replace_test.XXXXXX").string();
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
  return b.ok() ? std::move(b).value() : nullptr;
}

void MustPut(Backend* b, std::string_view bucket,
             std::vector<std::pair<std::string, std::string>> kvs) {
  auto w = b->BeginWrite();
  ASSERT_TRUE(w.ok());
  for (auto& [k, v] : kvs) ASSERT_TRUE((*w)->Put(bucket, k, v).ok());
  ASSERT_TRUE((*w)->Commit().ok());
}

// bucket -> key -> value, for every bucket in kAllBuckets (plus extra).
using Contents = std::map<std::string, std::map<std::string, std::string>>;

Contents Dump(Backend* b, std::vector<std::string> buckets = {}) {
  for (auto name : kAllBuckets) buckets.emplace_back(name);
  Contents out;
  auto t = b->BeginRead();
  EXPECT_TRUE(t.ok());
  for (const auto& name : buckets) {
    auto& m = out[name];
    EXPECT_TRUE((*t)->Scan(name, "", "", [&](std::string_view k, std::string_view v) {
                       m.emplace(std::string(k), std::string(v));
                       return true;
                     }).ok());
  }
  return out;
}

// Writes a CopyTo image of `b` to `path`.
void CopyToFile(Backend* b, const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(b->CopyTo(fd).ok());
  ::fsync(fd);
  ::close(fd);
}

class ReplaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    src_ = MustOpen(dir_.File("src.db"));
    dst_ = MustOpen(dir_.File("dst.db"));
    ASSERT_NE(src_, nullptr);
    ASSERT_NE(dst_, nullptr);
    // The source: keys in some buckets, none in others.
    std::vector<std::pair<std::string, std::string>> many;
    for (int i = 0; i < 300; ++i) many.emplace_back(absl::StrCat("k", 1000 + i), std::string(100, 'a' + i % 26));
    MustPut(src_.get(), kKeyBucket, many);
    MustPut(src_.get(), kMetaBucket, {{"consistent_index", EncodeBigEndian64(42)}});
    MustPut(src_.get(), kLeaseBucket, {{EncodeBigEndian64(7), "lease7"}});
    // The destination: different keys, plus buckets the source leaves empty.
    MustPut(dst_.get(), kKeyBucket, {{"k0999", "old"}, {"k1000", "old"}, {"zzz", "old"}});
    MustPut(dst_.get(), kMetaBucket, {{"consistent_index", EncodeBigEndian64(5)}, {"other", "x"}});
    MustPut(dst_.get(), kAuthUsersBucket, {{"root", "pw"}});
    MustPut(dst_.get(), kAlarmBucket, {{"a", "b"}});
  }

  TempDir dir_;
  std::unique_ptr<Backend> src_;
  std::unique_ptr<Backend> dst_;
};

TEST_F(ReplaceTest, ResultIsExactlyTheSourceContents) {
  const std::string image = dir_.File("snap.db");
  CopyToFile(src_.get(), image);
  const Contents want = Dump(src_.get());
  ASSERT_NE(want, Dump(dst_.get()));

  ASSERT_TRUE(dst_->ReplaceContentsFrom(image).ok());
  EXPECT_EQ(Dump(dst_.get()), want);
  EXPECT_TRUE(Dump(dst_.get())[std::string(kAuthUsersBucket)].empty());
  // No lock file is left next to the image, and the image is unchanged.
  EXPECT_FALSE(std::filesystem::exists(image + "-lock"));
  auto reopened = MustOpen(image);
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(Dump(reopened.get()), want);

  // The replaced database keeps working and survives a reopen.
  MustPut(dst_.get(), kKeyBucket, {{"k9999", "new"}});
  dst_.reset();
  dst_ = MustOpen(dir_.File("dst.db"));
  Contents after = Dump(dst_.get());
  EXPECT_EQ(after[std::string(kKeyBucket)].size(), 301u);
  EXPECT_EQ(after[std::string(kMetaBucket)], want.at(std::string(kMetaBucket)));
}

TEST_F(ReplaceTest, ReplacingTwiceAndFromAnEmptyDatabase) {
  const std::string image = dir_.File("snap.db");
  CopyToFile(src_.get(), image);
  ASSERT_TRUE(dst_->ReplaceContentsFrom(image).ok());
  ASSERT_TRUE(dst_->ReplaceContentsFrom(image).ok());
  EXPECT_EQ(Dump(dst_.get()), Dump(src_.get()));

  auto empty = MustOpen(dir_.File("empty.db"));
  const std::string empty_image = dir_.File("empty-snap.db");
  CopyToFile(empty.get(), empty_image);
  ASSERT_TRUE(dst_->ReplaceContentsFrom(empty_image).ok());
  for (const auto& [bucket, kvs] : Dump(dst_.get())) EXPECT_TRUE(kvs.empty()) << bucket;
}

TEST_F(ReplaceTest, SourceWithoutSomeBucketsAndWithUnknownOnes) {
  // A bare LMDB file with only a "key" bucket and a bucket unknown here.
  BackendOptions o = SmallOptions();
  o.extra_buckets = {"unknown"};
  auto other = MustOpen(dir_.File("other.db"), o);
  MustPut(other.get(), kKeyBucket, {{"only", "1"}});
  MustPut(other.get(), "unknown", {{"u", "1"}});
  const std::string image = dir_.File("other-snap.db");
  CopyToFile(other.get(), image);

  ASSERT_TRUE(dst_->ReplaceContentsFrom(image).ok());
  Contents got = Dump(dst_.get());
  EXPECT_EQ(got[std::string(kKeyBucket)], (std::map<std::string, std::string>{{"only", "1"}}));
  EXPECT_TRUE(got[std::string(kMetaBucket)].empty());
  EXPECT_EQ(dst_->BucketHandle("unknown"), -1);
}

TEST_F(ReplaceTest, MissingSourceIsNotFoundAndChangesNothing) {
  const Contents before = Dump(dst_.get());
  absl::Status s = dst_->ReplaceContentsFrom(dir_.File("no-such.db"));
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_EQ(Dump(dst_.get()), before);
}

TEST_F(ReplaceTest, GarbageSourceIsAnErrorAndChangesNothing) {
  const Contents before = Dump(dst_.get());
  const std::string garbage = dir_.File("garbage.db");
  {
    std::ofstream f(garbage, std::ios::binary);
    f << std::string(64 * 1024, 'x');
  }
  absl::Status s = dst_->ReplaceContentsFrom(garbage);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(Dump(dst_.get()), before);

  const std::string empty_file = dir_.File("zero.db");
  { std::ofstream f(empty_file, std::ios::binary); }
  EXPECT_FALSE(dst_->ReplaceContentsFrom(empty_file).ok());
  EXPECT_EQ(Dump(dst_.get()), before);
  EXPECT_FALSE(dst_->ReplaceContentsFrom(dir_.File("")).ok());  // a directory
  EXPECT_EQ(Dump(dst_.get()), before);
}

TEST_F(ReplaceTest, TruncatedSourceIsAnErrorAndChangesNothing) {
  const std::string image = dir_.File("snap.db");
  CopyToFile(src_.get(), image);
  const Contents before = Dump(dst_.get());
  // Keep the meta pages, lose the data pages they point to.
  std::filesystem::resize_file(image, 3 * 4096);
  absl::Status s = dst_->ReplaceContentsFrom(image);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(Dump(dst_.get()), before);
}

TEST_F(ReplaceTest, ConcurrentReadersSeeOldOrNewNeverAMix) {
  const std::string image = dir_.File("snap.db");
  CopyToFile(src_.get(), image);
  const Contents old_contents = Dump(dst_.get());
  const Contents new_contents = Dump(src_.get());
  std::atomic<bool> done{false};
  std::atomic<int> bad{0}, reads{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&] {
      // Bounded: stops when the replacement is over (plus a last read).
      for (int i = 0; i < 100000; ++i) {
        const bool last = done.load();
        Contents c = Dump(dst_.get());
        if (c != old_contents && c != new_contents) ++bad;
        ++reads;
        if (last) break;
      }
    });
  }
  // Let the readers start, then replace a few times back and forth.
  const std::string old_image = dir_.File("old.db");
  CopyToFile(dst_.get(), old_image);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(dst_->ReplaceContentsFrom(image).ok());
    ASSERT_TRUE(dst_->ReplaceContentsFrom(old_image).ok());
  }
  ASSERT_TRUE(dst_->ReplaceContentsFrom(image).ok());
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(Dump(dst_.get()), new_contents);
}

TEST_F(ReplaceTest, AReadTxnBegunBeforeKeepsTheOldSnapshot) {
  const std::string image = dir_.File("snap.db");
  CopyToFile(src_.get(), image);
  auto before = dst_->BeginRead();
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(dst_->ReplaceContentsFrom(image).ok());
  auto v = (*before)->Get(kKeyBucket, "zzz");
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE(v->has_value());
  EXPECT_EQ(**v, "old");
  before->reset();
  auto after = dst_->BeginRead();
  ASSERT_TRUE(after.ok());
  auto w = (*after)->Get(kKeyBucket, "zzz");
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(w->has_value());
}

}  // namespace
}  // namespace cppetcd::storage
