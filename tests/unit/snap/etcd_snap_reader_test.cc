#include "cppetcd/snap/etcd_snap.h"

#include <stdlib.h>

#include <string>

#include "absl/strings/str_format.h"
#include "cppetcd/util/crc32c.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "snappb/snap.pb.h"

namespace cppetcd::snap {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

class EtcdSnapReaderTest : public ::testing::Test {
 protected:
  EtcdSnapReaderTest() {
    std::string tmpl = ::testing::TempDir() + "etcdsnapXXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) dir_ = tmpl;
  }
  ~EtcdSnapReaderTest() override { (void)env_->RemoveAll(dir_); }

  static std::string Name(uint64_t term, uint64_t index) { return absl::StrFormat("%016x-%016x.snap", term, index); }
  // A file as etcd's snapshotter writes it, with a v2-store-like payload.
  std::string Write(uint64_t term, uint64_t index) {
    raftpb::Snapshot s;
    s.set_data(R"({"Root":{"Path":"/"}})");
    s.mutable_metadata()->set_term(term);
    s.mutable_metadata()->set_index(index);
    s.mutable_metadata()->mutable_conf_state()->add_voters(0xbdae9bbc11dd390dULL);
    snappb::Snapshot f;
    f.set_data(s.SerializeAsString());
    f.set_crc(util::Crc32c(f.data()));
    Put(Name(term, index), f.SerializeAsString());
    return Name(term, index);
  }
  void Put(const std::string& name, const std::string& bytes) {
    auto f = env_->NewWritableFile(util::JoinPath(dir_, name));
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Append(bytes).ok());
  }
  std::string Get(const std::string& name) { return *env_->ReadFileToString(util::JoinPath(dir_, name)); }

  util::Env* env_ = util::Env::Default();
  std::string dir_;
};

TEST_F(EtcdSnapReaderTest, ReadsAFile) {
  const std::string name = Write(2, 0x16);
  auto s = ReadEtcdSnapFile(env_, util::JoinPath(dir_, name));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->metadata().index(), 0x16u);
  EXPECT_EQ(s->metadata().term(), 2u);
  EXPECT_THAT(s->metadata().conf_state().voters(), ElementsAre(0xbdae9bbc11dd390dULL));
  EXPECT_EQ(s->data(), R"({"Root":{"Path":"/"}})");
}

TEST_F(EtcdSnapReaderTest, RefusesDamagedFiles) {
  const std::string name = Write(2, 10);
  std::string bytes = Get(name);
  bytes[bytes.size() - 3] ^= 0x01;
  Put(name, bytes);
  auto s = ReadEtcdSnapFile(env_, util::JoinPath(dir_, name));
  EXPECT_TRUE(absl::IsDataLoss(s.status())) << s.status();
  EXPECT_THAT(s.status().message(), HasSubstr("crc mismatch"));
  EXPECT_THAT(s.status().message(), HasSubstr(name));

  Put(name, "");
  EXPECT_THAT(ReadEtcdSnapFile(env_, util::JoinPath(dir_, name)).status().message(), HasSubstr("empty snapshot"));
  snappb::Snapshot zero_crc;
  zero_crc.set_data("x");
  Put(name, zero_crc.SerializeAsString());
  EXPECT_THAT(ReadEtcdSnapFile(env_, util::JoinPath(dir_, name)).status().message(), HasSubstr("empty snapshot"));
  Put(name, "\xff\xff\xff");
  EXPECT_TRUE(absl::IsDataLoss(ReadEtcdSnapFile(env_, util::JoinPath(dir_, name)).status()));
}

TEST_F(EtcdSnapReaderTest, PicksTheNewestMarkedValidFileAndChangesNothing) {
  Write(2, 0x0b);
  Write(2, 0x16);
  const std::string newest = Write(2, 0x21);  // no marker: written before a crash
  const std::string broken = Write(3, 0x2c);
  std::string bytes = Get(broken);
  bytes[bytes.size() - 1] ^= 0x01;
  Put(broken, bytes);
  Put("db", "not a snapshot");
  auto c = LoadNewestEtcdSnap(env_, dir_, {{0, 0}, {0x0b, 2}, {0x16, 2}, {0x2c, 3}});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->snapshot.has_value());
  EXPECT_EQ(c->file, Name(2, 0x16));
  EXPECT_EQ(c->snapshot->metadata().index(), 0x16u);
  ASSERT_THAT(c->skipped, SizeIs(2));
  EXPECT_THAT(c->skipped[0], HasSubstr(broken));
  EXPECT_THAT(c->skipped[1], HasSubstr(newest));
  // Read-only: the broken file is still there under its name.
  EXPECT_TRUE(env_->FileExists(util::JoinPath(dir_, broken)));
  EXPECT_FALSE(env_->FileExists(util::JoinPath(dir_, broken + ".broken")));
}

TEST_F(EtcdSnapReaderTest, NoMatchingFileMeansNoSnapshot) {
  Write(2, 0x0b);
  auto c = LoadNewestEtcdSnap(env_, dir_, {{0, 0}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->snapshot.has_value());
  EXPECT_THAT(c->skipped, SizeIs(1));
  EXPECT_TRUE(absl::IsNotFound(LoadNewestEtcdSnap(env_, dir_ + "/missing", {}).status()));
}

}  // namespace
}  // namespace cppetcd::snap
