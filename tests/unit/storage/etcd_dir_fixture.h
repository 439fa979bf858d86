// A hand-built etcd data dir for unit tests: a temporary directory with
// member/wal and member/snap, a file writer, and a bbolt backend written from
// bucket contents (storage::BboltWriter). Shared by the reader's tests
// (storage) and the conversion's (server).
#ifndef CPPETCD_TESTS_UNIT_STORAGE_ETCD_DIR_FIXTURE_H_
#define CPPETCD_TESTS_UNIT_STORAGE_ETCD_DIR_FIXTURE_H_

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <string>

#include "cppetcd/storage/backend.h"
#include "cppetcd/storage/bbolt_writer.h"
#include "cppetcd/util/env.h"
#include "gtest/gtest.h"

namespace cppetcd::storage::testing {

// The member and cluster of the hand-built dirs, and the member's record as
// etcd 3.4 stores it in its `members` bucket.
inline constexpr uint64_t kEtcdMember = 0xbdae9bbc11dd390dULL;
inline constexpr uint64_t kEtcdCluster = 0xd1cf3db3e1cba16aULL;
inline constexpr char kEtcdMemberJson[] =
    R"({"id":13668033151171901709,"peerURLs":["http://127.0.0.1:2380"],"name":"s1","clientURLs":["http://127.0.0.1:2379"]})";

// etcd's 8-byte big-endian encoding (revisions, the consistent index).
inline std::string BigEndian(uint64_t v) { return EncodeBigEndian64(v); }

class EtcdDirFixture : public ::testing::Test {
 protected:
  EtcdDirFixture() {
    std::string tmpl = ::testing::TempDir() + "etcddirXXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) dir_ = tmpl;
    EXPECT_TRUE(env_->CreateDirAll(Sub("member/wal")).ok());
    EXPECT_TRUE(env_->CreateDirAll(Sub("member/snap")).ok());
  }
  ~EtcdDirFixture() override { (void)env_->RemoveAll(dir_); }

  std::string Sub(const std::string& p) const { return util::JoinPath(dir_, p); }
  void Put(const std::string& path, const std::string& bytes) {
    auto f = env_->NewWritableFile(path);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Append(bytes).ok());
  }
  // A bbolt file at `path` holding `buckets` (name → key → value).
  void PutBbolt(const std::string& path,
                const std::map<std::string, std::map<std::string, std::string>>& buckets) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    auto w = BboltWriter::Create(fd);
    ASSERT_TRUE(w.ok());
    for (const auto& [bucket, kvs] : buckets) {
      ASSERT_TRUE((*w)->BeginBucket(bucket).ok());
      for (const auto& [k, v] : kvs) ASSERT_TRUE((*w)->Put(k, v).ok());
      ASSERT_TRUE((*w)->EndBucket().ok());
    }
    ASSERT_TRUE((*w)->Finish().ok());
    ::close(fd);
  }

  util::Env* env_ = util::Env::Default();
  std::string dir_;
};

}  // namespace cppetcd::storage::testing

#endif  // CPPETCD_TESTS_UNIT_STORAGE_ETCD_DIR_FIXTURE_H_
