// Backend::CopySizeFromHead: the size of a CopyTo copy, known from its first
// bytes, so that the snapshot stream can announce it before the copy ends.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "cppetcd/storage/backend.h"
#include "gtest/gtest.h"

namespace cppetcd::storage {
namespace {

class CopySizeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "copy_size.XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
    BackendOptions o;
    o.map_size_bytes = 256 << 20;
    auto b = Backend::Open(dir_ + "/db", o);
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = std::move(*b);
  }
  void TearDown() override {
    backend_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Write(int round, int n, size_t value_bytes, bool delete_half) {
    auto w = backend_->BeginWrite();
    ASSERT_TRUE(w.ok());
    for (int i = 0; i < n; ++i) {
      const std::string k = absl::StrCat("k", 100000 + i);
      if (delete_half && i % 2 == 0) {
        ASSERT_TRUE((*w)->Delete(kKeyBucket, k).ok());
      } else {
        ASSERT_TRUE((*w)->Put(kKeyBucket, k, std::string(value_bytes, 'a' + round % 26)).ok());
      }
    }
    ASSERT_TRUE((*w)->Commit().ok());
  }

  // The copy read through a pipe, as the snapshot stream reads it.
  std::string CopyThroughPipe() {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    absl::Status st;
    std::thread copier([&] {
      st = backend_->CopyTo(fds[1]);
      ::close(fds[1]);
    });
    std::string all;
    char buf[65536];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof(buf))) > 0;) all.append(buf, n);
    copier.join();
    ::close(fds[0]);
    EXPECT_TRUE(st.ok()) << st;
    return all;
  }

  std::string dir_;
  std::unique_ptr<Backend> backend_;
};

TEST_F(CopySizeTest, MatchesTheCopyForSmallGrownAndFragmentedDatabases) {
  for (int step = 0; step < 4; ++step) {
    if (step == 1) Write(step, 2000, 3000, false);
    if (step == 2) Write(step, 2000, 100, false);  // leaves free pages
    if (step == 3) Write(step, 2000, 100, true);
    const std::string copy = CopyThroughPipe();
    const std::string_view head(copy.data(), std::min<size_t>(copy.size(), 128 * 1024));
    absl::StatusOr<uint64_t> size = Backend::CopySizeFromHead(head);
    ASSERT_TRUE(size.ok()) << step << ": " << size.status();
    EXPECT_EQ(*size, copy.size()) << "step " << step;
  }
}

TEST_F(CopySizeTest, RefusesWhatIsNotACopy) {
  EXPECT_FALSE(Backend::CopySizeFromHead("").ok());
  EXPECT_FALSE(Backend::CopySizeFromHead(std::string(200000, 'x')).ok());
  const std::string copy = CopyThroughPipe();
  EXPECT_FALSE(Backend::CopySizeFromHead(std::string_view(copy).substr(0, 200)).ok());
}

}  // namespace
}  // namespace cppetcd::storage
