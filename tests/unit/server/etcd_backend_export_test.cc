// ExportEtcdBackend: cppetcd's LMDB layout back to etcd 3.4's buckets
// (members as Go JSON under unpadded hex ids, 17-byte compaction
// revisions, hashed auth names merged by full name, the cluster version),
// read back through BboltReader.
#include "cppetcd/server/etcd_backend_export.h"

#include <fcntl.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "authpb/auth.pb.h"
#include "cppetcd/lease/lessor.h"
#include "cppetcd/storage/bbolt_reader.h"
#include "cppetcd/util/clock.h"
#include "cppetcd/util/log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "serverpb/internal.pb.h"

namespace cppetcd::server {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

std::string Sha(const std::string& s) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
  return std::string(reinterpret_cast<const char*>(d), sizeof d);
}

TEST(EtcdMemberJsonTest, MatchesGoEncodingJson) {
  EXPECT_EQ(EtcdMemberJson(10276657743932975437ull, {"http://a:2380"}, false, "n1",
                           {"http://a:2379", "http://b:2379"}),
            R"({"id":10276657743932975437,"peerURLs":["http://a:2380"],"name":"n1","clientURLs":["http://a:2379","http://b:2379"]})");
  // An unstarted learner: no name, no client URLs (omitempty).
  EXPECT_EQ(EtcdMemberJson(1, {"http://x"}, true, "", {}),
            R"({"id":1,"peerURLs":["http://x"],"isLearner":true})");
  EXPECT_EQ(EtcdMemberJson(2, {}, false, "", {}), R"({"id":2,"peerURLs":null})");
  // Go escapes <, >, &, control characters, U+2028, and replaces bad UTF-8.
  EXPECT_EQ(EtcdMemberJson(3, {"u"}, false, std::string("<a&b>\"\\\n\x01\xe2\x80\xa8\xff\xc3\xa9"), {}),
            "{\"id\":3,\"peerURLs\":[\"u\"],\"name\":"
            "\"\\u003ca\\u0026b\\u003e\\\"\\\\\\n\\u0001\\u2028\\ufffd\xc3\xa9\"}");
}

class ExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* t = getenv("TMPDIR");
    std::string tmpl = std::string(t != nullptr && *t != '\0' ? t : "/tmp") + "/export-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    auto be = storage::Backend::Open(dir_ + "/db", {});
    ASSERT_TRUE(be.ok()) << be.status();
    be_ = std::move(*be);
  }
  void TearDown() override {
    be_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Exports and reads every bucket back.
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> Export() {
    std::map<std::string, std::vector<std::pair<std::string, std::string>>> out;
    const std::string path = dir_ + "/snap.db";
    const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
    EXPECT_GE(fd, 0);
    {
      auto rtx = be_->BeginRead();
      auto w = storage::BboltWriter::Create(fd);
      EXPECT_TRUE(rtx.ok() && w.ok());
      absl::Status s = ExportEtcdBackend(rtx->get(), w->get());
      EXPECT_TRUE(s.ok()) << s;
      EXPECT_TRUE((*w)->Finish().ok());
    }
    ::close(fd);
    auto r = storage::BboltReader::Open(path);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return out;
    auto names = (*r)->ListBuckets();
    EXPECT_TRUE(names.ok());
    for (const std::string& n : *names) {
      auto& kvs = out[n];
      EXPECT_TRUE((*r)->ForEach(n, [&](std::string_view k, std::string_view v, bool) {
                         kvs.emplace_back(std::string(k), std::string(v));
                         return true;
                       }).ok());
    }
    return out;
  }

  std::string dir_;
  std::unique_ptr<storage::Backend> be_;
};

TEST_F(ExportTest, EmptyStoreHasEtcdsBuckets) {
  auto got = Export();
  std::vector<std::string> names;
  for (const auto& [n, kvs] : got) names.push_back(n);
  EXPECT_THAT(names, ElementsAre("alarm", "auth", "authRoles", "authUsers", "cluster", "key",
                                 "lease", "members", "members_removed", "meta"));
  EXPECT_THAT(got["cluster"], ElementsAre(Pair("clusterVersion", "3.4.0")));
}

TEST_F(ExportTest, ConvertsCppetcdLayouts) {
  auto w = be_->BeginWrite();
  ASSERT_TRUE(w.ok());
  serverpb::MemberRecord m;
  m.set_id(0x0abc);
  m.set_name("m1");
  m.add_peer_urls("http://p:2380");
  ASSERT_TRUE((*w)->Put("members", "0000000000000abc", m.SerializeAsString()).ok());
  m.set_id(0x9);
  m.set_name("m2");
  ASSERT_TRUE((*w)->Put("members", "0000000000000009", m.SerializeAsString()).ok());
  ASSERT_TRUE((*w)->Put("members_removed", "00000000000000ff", "removed").ok());
  ASSERT_TRUE((*w)->Put("meta", "finishedCompactRev", storage::EncodeBigEndian64(7)).ok());
  ASSERT_TRUE((*w)->Put("meta", "consistent_index", storage::EncodeBigEndian64(42)).ok());
  ASSERT_TRUE((*w)->Put("cluster", "clusterVersion", "3.5.0").ok());  // kept as stored
  // Users: "b" and "zz" keyed by name; a 600-byte name ("m...") keyed by
  // its hash must come out between them.
  const std::string long_name = "m" + std::string(599, 'u');
  authpb::User u;
  for (const std::string& n : {std::string("b"), std::string("zz"), long_name}) {
    u.set_name(n);
    const bool hashed = n.size() > storage::kMaxKeyBytes;
    ASSERT_TRUE((*w)->Put(hashed ? "authUsersHashed" : "authUsers", hashed ? Sha(n) : n,
                          u.SerializeAsString())
                    .ok());
  }
  authpb::Role r;
  r.set_name(long_name);
  ASSERT_TRUE((*w)->Put("authRolesHashed", Sha(long_name), r.SerializeAsString()).ok());
  ASSERT_TRUE((*w)->Put("key", std::string(17, '\x01'), "kv").ok());
  ASSERT_TRUE((*w)->Commit().ok());

  auto got = Export();
  ASSERT_EQ(got["members"].size(), 2u);
  EXPECT_EQ(got["members"][0].first, "9");  // unpadded hex, bytewise order
  EXPECT_EQ(got["members"][0].second, R"({"id":9,"peerURLs":["http://p:2380"],"name":"m2"})");
  EXPECT_EQ(got["members"][1].first, "abc");
  EXPECT_THAT(got["members_removed"], ElementsAre(Pair("ff", "removed")));
  std::string rev(17, '\0');
  rev[7] = 7;
  rev[8] = '_';
  EXPECT_THAT(got["meta"], ElementsAre(Pair("consistent_index", storage::EncodeBigEndian64(42)),
                                       Pair("finishedCompactRev", rev)));
  EXPECT_THAT(got["cluster"], ElementsAre(Pair("clusterVersion", "3.5.0")));
  ASSERT_EQ(got["authUsers"].size(), 3u);
  EXPECT_EQ(got["authUsers"][0].first, "b");
  EXPECT_EQ(got["authUsers"][1].first, long_name);
  EXPECT_EQ(got["authUsers"][2].first, "zz");
  u.set_name(long_name);
  EXPECT_EQ(got["authUsers"][1].second, u.SerializeAsString());
  EXPECT_THAT(got["authRoles"], ElementsAre(Pair(long_name, r.SerializeAsString())));
  EXPECT_THAT(got["key"], ElementsAre(Pair(std::string(17, '\x01'), "kv")));
  EXPECT_EQ(got.count("authUsersHashed"), 0u);
}

// A lease checkpoint persisted by -persist travels as etcd writes it: the
// lease bucket's leasepb.Lease{ID, TTL, RemainingTTL} goes out byte for byte
// and comes back in, where the lessor continues from it.
TEST_F(ExportTest, PersistedLeaseCheckpointSurvivesExportAndImport) {
  util::FakeClock clock;
  lease::LessorOptions lo;
  lo.clock = &clock;
  lo.checkpointing = true;
  lo.checkpoint_persist = true;
  {
    lease::Lessor lessor(lo);
    auto w = be_->BeginWrite();
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(lessor.Grant(w->get(), 5, 100).ok());
    ASSERT_TRUE(lessor.Checkpoint(w->get(), 5, 70).ok());
    ASSERT_TRUE((*w)->Commit().ok());
  }
  auto got = Export();
  // etcd's encoding: 8-byte big-endian ID; ID 5, TTL 100, RemainingTTL 70.
  EXPECT_THAT(got["lease"], ElementsAre(Pair(std::string("\0\0\0\0\0\0\0\x05", 8),
                                             std::string("\x08\x05\x10\x64\x18\x46", 6))));

  auto bolt = storage::BboltReader::Open(dir_ + "/snap.db");
  ASSERT_TRUE(bolt.ok()) << bolt.status();
  auto imported = storage::Backend::Open(dir_ + "/imported", {});
  ASSERT_TRUE(imported.ok()) << imported.status();
  ASSERT_TRUE(ImportEtcdBackend(**bolt, imported->get(), util::Logger("test")).ok());
  lease::Lessor lessor(lo);
  {
    auto rtx = (*imported)->BeginRead();
    ASSERT_TRUE(rtx.ok());
    ASSERT_TRUE(lessor.Recover(rtx->get()).ok());
  }
  lessor.Promote(std::chrono::milliseconds(0));
  ASSERT_TRUE(lessor.Lookup(5).has_value());
  EXPECT_EQ(lessor.Lookup(5)->checkpointed_ttl_seconds, 70);
  EXPECT_EQ(lessor.Lookup(5)->remaining_seconds, 70);
}

TEST_F(ExportTest, UndecodableMemberIsDataLoss) {
  auto w = be_->BeginWrite();
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Put("members", "0000000000000001", "\xff\xff\xff").ok());
  ASSERT_TRUE((*w)->Commit().ok());
  auto rtx = be_->BeginRead();
  ASSERT_TRUE(rtx.ok());
  const std::string path = dir_ + "/bad.db";
  const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
  auto bw = storage::BboltWriter::Create(fd);
  ASSERT_TRUE(bw.ok());
  EXPECT_EQ(ExportEtcdBackend(rtx->get(), bw->get()).code(), absl::StatusCode::kDataLoss);
  ::close(fd);
}

}  // namespace
}  // namespace cppetcd::server
