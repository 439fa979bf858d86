// CheckLmdbFile: the structural check of an LMDB file from outside before
// LMDB maps it (raft snapshot databases, `cppetcd snapshot restore`).
#include "cppetcd/storage/lmdb_check.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "cppetcd/storage/backend.h"
#include "gtest/gtest.h"

namespace cppetcd::storage {
namespace {

class LmdbCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cppetcd_lmdb_check_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto be = Backend::Open(dir_ + "/src.db", BackendOptions{});
    ASSERT_TRUE(be.ok()) << be.status();
    auto w = (*be)->BeginWrite();
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Put(kKeyBucket, "k1", "v1").ok());
    ASSERT_TRUE((*w)->Put(kKeyBucket, "k2", std::string(9000, 'v')).ok());  // overflow pages
    ASSERT_TRUE((*w)->Put(kLeaseBucket, "l", "lease").ok());
    ASSERT_TRUE((*w)->Commit().ok());
    const int fd = ::open((dir_ + "/copy.db").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE((*be)->CopyTo(fd).ok());
    ::close(fd);
    std::ifstream in(dir_ + "/copy.db", std::ios::binary);
    image_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static uint64_t Get64(const std::string& s, size_t at) {
    uint64_t v;
    std::memcpy(&v, s.data() + at, 8);
    return v;
  }
  static void Put64(std::string* s, size_t at, uint64_t v) { std::memcpy(s->data() + at, &v, 8); }
  // The newer meta page's offset of the meta body (after the page header).
  size_t NewestMeta() const {
    return Get64(image_, 16 + 128) >= Get64(image_, 4096 + 16 + 128) ? 16 : 4096 + 16;
  }
  uint64_t MainRoot() const { return Get64(image_, NewestMeta() + 72 + 40); }

  std::string dir_;
  std::string image_;
};

TEST_F(LmdbCheckTest, ACopyTheBackendWritesPasses) {
  EXPECT_TRUE(CheckLmdbBytes(image_).ok()) << CheckLmdbBytes(image_);
  EXPECT_TRUE(CheckLmdbFile(dir_ + "/copy.db").ok());
  EXPECT_TRUE(CheckLmdbFile(dir_ + "/src.db").ok()) << CheckLmdbFile(dir_ + "/src.db");
}

TEST_F(LmdbCheckTest, MissingFileIsNotFound) {
  EXPECT_TRUE(absl::IsNotFound(CheckLmdbFile(dir_ + "/none.db")));
}

TEST_F(LmdbCheckTest, TruncatedOrResizedFileIsDataLoss) {
  EXPECT_TRUE(absl::IsDataLoss(CheckLmdbBytes(image_.substr(0, image_.size() - 4096))));
  EXPECT_TRUE(absl::IsDataLoss(CheckLmdbBytes(image_.substr(0, 100))));
  EXPECT_TRUE(absl::IsDataLoss(CheckLmdbBytes(image_ + "x")));
  EXPECT_TRUE(absl::IsDataLoss(CheckLmdbBytes("")));
}

TEST_F(LmdbCheckTest, BadMetaIsDataLoss) {
  std::string bad = image_;
  bad[16] ^= 1;  // magic of meta page 0
  EXPECT_TRUE(absl::IsDataLoss(CheckLmdbBytes(bad)));
  bad = image_;
  Put64(&bad, NewestMeta() + 120, 1 << 20);  // last page far past the end
  EXPECT_TRUE(absl::IsDataLoss(CheckLmdbBytes(bad)));
}

TEST_F(LmdbCheckTest, PageReferencesOutsideTheFileOrCyclesAreDataLoss) {
  std::string bad = image_;
  Put64(&bad, NewestMeta() + 72 + 40, image_.size() / 4096 + 7);  // main root past the end
  EXPECT_TRUE(absl::IsDataLoss(CheckLmdbBytes(bad)));

  // The main root (a leaf listing the buckets): each bucket record's root
  // set to the main root itself, a cycle LMDB would follow.
  bad = image_;
  const uint64_t root = MainRoot();
  const size_t page = root * 4096;
  const uint16_t lower = static_cast<uint16_t>(bad[page + 12] & 0xff) | (bad[page + 13] & 0xff) << 8;
  for (size_t i = 16; i < lower; i += 2) {
    const uint16_t off = static_cast<uint16_t>(bad[page + i] & 0xff) | (bad[page + i + 1] & 0xff) << 8;
    const uint16_t ksize =
        static_cast<uint16_t>(bad[page + off + 6] & 0xff) | (bad[page + off + 7] & 0xff) << 8;
    Put64(&bad, page + off + 8 + ksize + 40, root);
  }
  EXPECT_TRUE(absl::IsDataLoss(CheckLmdbBytes(bad)));

  // Node bounds broken: lower above upper.
  bad = image_;
  bad[page + 12] = static_cast<char>(0xff);
  bad[page + 13] = static_cast<char>(0x0f);
  EXPECT_TRUE(absl::IsDataLoss(CheckLmdbBytes(bad)));
}

TEST_F(LmdbCheckTest, ReplaceContentsFromRefusesAFileTheCheckRefuses) {
  auto dst = Backend::Open(dir_ + "/dst.db", BackendOptions{});
  ASSERT_TRUE(dst.ok());
  EXPECT_TRUE((*dst)->ReplaceContentsFrom(dir_ + "/copy.db").ok());
  std::string bad = image_;
  Put64(&bad, NewestMeta() + 72 + 40, image_.size() / 4096 + 7);
  std::ofstream(dir_ + "/bad.db", std::ios::binary) << bad;
  EXPECT_TRUE(absl::IsDataLoss((*dst)->ReplaceContentsFrom(dir_ + "/bad.db")));
  auto r = (*dst)->BeginRead();
  ASSERT_TRUE(r.ok());
  auto v = (*r)->Get(kKeyBucket, "k1");
  ASSERT_TRUE(v.ok() && v->has_value());
  EXPECT_EQ(**v, "v1");
}

}  // namespace
}  // namespace cppetcd::storage
