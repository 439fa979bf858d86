// server::PrepareDataDir on hand-built etcd data dirs (etcd's WAL framing,
// bbolt backend): every kind of etcd 3.4 entry payload and what the
// converted cppetcd WAL holds for it; the refusal of an entry cppetcd
// cannot apply above the consistent index. Real etcd dirs:
// tests/integration/etcd_convert_test.cc.
#include "cppetcd/server/etcd_convert.h"

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/wal/wal.h"
#include "etcdserverpb/rpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "serverpb/internal.pb.h"
#include "tests/unit/storage/etcd_dir_fixture.h"
#include "tests/unit/wal/etcd_wal_test_util.h"

namespace cppetcd::server {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using wal::testing::EtcdSegmentBuilder;

using storage::testing::BigEndian;
constexpr uint64_t kMember = storage::testing::kEtcdMember;
constexpr uint64_t kCluster = storage::testing::kEtcdCluster;
constexpr const char* kMemberJson = storage::testing::kEtcdMemberJson;

// Protobuf length-delimited field (lengths < 128 here).
std::string Field(int number, const std::string& bytes) {
  EXPECT_LT(bytes.size(), 128u);
  return std::string(1, static_cast<char>(number << 3 | 2)) +
         std::string(1, static_cast<char>(bytes.size())) + bytes;
}

// etcd's v2 pb.Request {ID = 1, Method = 2, Path = 3, Val = 4}.
std::string V2Request(const std::string& method, const std::string& path, const std::string& val) {
  return std::string("\x08\x2a", 2) + Field(2, method) + Field(3, path) + Field(4, val);
}

std::string V3Put(const std::string& key) {
  serverpb::InternalRaftRequest r;
  r.mutable_header()->set_id(7);
  r.mutable_put()->set_key(key);
  r.mutable_put()->set_value("v");
  return r.SerializeAsString();
}

raftpb::Entry ConfChangeEntry(uint64_t index, uint64_t term) {
  raftpb::ConfChange cc;
  cc.set_type(raftpb::ConfChangeAddNode);
  cc.set_node_id(kMember);
  cc.set_context(kMemberJson);
  raftpb::Entry e;
  e.set_type(raftpb::EntryConfChange);
  e.set_index(index);
  e.set_term(term);
  e.set_data(cc.SerializeAsString());
  return e;
}

class EtcdConvertTest : public storage::testing::EtcdDirFixture {
 protected:
  // `payloads[i]` is entry i+2 (entry 1 is the ConfChange adding kMember).
  void PutWal(const std::vector<std::string>& payloads, uint64_t commit) {
    EtcdSegmentBuilder b;
    b.Metadata(kMember, kCluster).Snapshot(0, 0);
    b.Data(wal::kEtcdEntryType, ConfChangeEntry(1, 2).SerializeAsString());
    for (size_t i = 0; i < payloads.size(); ++i) b.Entry(i + 2, 2, payloads[i]);
    b.State(2, kMember, commit);
    Put(Sub("member/wal/0000000000000000-0000000000000000.wal"), b.Preallocate(16384).bytes());
  }
  void PutDb(uint64_t consistent_index) {
    PutBbolt(Sub("member/snap/db"),
             {{"key", {{BigEndian(2) + "_" + BigEndian(0), "kv-record"}}},
              {"members", {{"bdae9bbc11dd390d", kMemberJson}}},
              {"members_removed", {{"1234", "removed"}}},
              {"meta", {{"consistent_index", BigEndian(consistent_index)}}}});
  }
  std::vector<std::string> Files() const {
    std::vector<std::string> out;
    for (const auto& p : fs::recursive_directory_iterator(dir_)) out.push_back(p.path());
    return out;
  }

  util::Logger log_ = util::GetLogger("test");
};

// etcd 3.5's InternalRaftRequest.cluster_version_set (field 1300).
std::string Etcd35Request() {
  return std::string("\xa2\x51\x07", 3) + Field(1, "3.5.0");
}
// etcd 3.5's cluster_member_attr_set (field 1301): {member_ID = 1,
// member_attributes = 2 {name = 1, client_urls = 2}}, after a header (100).
std::string Etcd35MemberAttrSet() {
  const std::string attrs = Field(1, "s1") + Field(2, "http://127.0.0.1:2379");
  const std::string inner = std::string("\x08\x8d\xf2\xf4\x8e\xc1\xf7\xa6\xd7\xbd\x01", 11) +
                            Field(2, attrs);
  return std::string("\xa2\x06\x02\x08\x09", 5) +  // header {ID: 9}
         std::string("\xaa\x51", 2) + std::string(1, static_cast<char>(inner.size())) + inner;
}
// etcd 3.5's downgrade_info_set (field 1302).
std::string Etcd35Downgrade() {
  return std::string("\xb2\x51\x02\x08\x01", 5);
}
// A request kind no etcd 3.4 or 3.5 writes (InternalRaftRequest field 1400).
std::string UnknownRequest() {
  return std::string("\xc2\x57\x02\x08\x01", 5);
}

TEST_F(EtcdConvertTest, TranslatesEveryEtcd34PayloadKind) {
  const std::string attrs = V2Request("PUT", "/0/members/bdae9bbc11dd390d/attributes",
                                      R"({"name":"s1","clientURLs":["http://127.0.0.1:2379"]})");
  PutWal({/*2*/ "",
          /*3*/ attrs,
          /*4*/ Field(2, V2Request("PUT", "/0/version", "3.4.0")),  // wrapped in field 2
          /*5*/ V3Put("a"),
          /*6*/ UnknownRequest(),
          /*7*/ V2Request("PUT", "/1/foo", "bar"),
          /*8*/ V3Put("b"),
          /*9*/ V3Put("c")},
         /*commit=*/8);
  PutDb(/*consistent_index=*/7);
  auto st = PrepareDataDir(env_, dir_, "", log_);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_TRUE(st->converted);
  EXPECT_EQ(st->member_id, kMember);
  EXPECT_EQ(st->cluster_id, kCluster);
  EXPECT_EQ(st->entries, 9u);
  EXPECT_EQ(st->entries_conf_change, 1u);
  EXPECT_EQ(st->entries_attributes, 1u);
  EXPECT_EQ(st->entries_version, 1u);
  EXPECT_EQ(st->entries_blanked, 2u);
  EXPECT_EQ(st->entries_kept, 4u);
  EXPECT_EQ(st->entries_to_apply, 1u);
  EXPECT_EQ(st->entries_uncommitted, 1u);
  EXPECT_EQ(st->keys, 1u);
  EXPECT_EQ(st->revision, 2);
  EXPECT_TRUE(env_->IsDirectory(Sub("member.etcd-backup/wal")));
  EXPECT_FALSE(env_->FileExists(Sub("member.cppetcd-convert")));
  EXPECT_FALSE(env_->FileExists(Sub("member/CONVERTED")));

  // The cppetcd WAL.
  auto w = wal::Wal::Open(env_, Sub("member/wal"), {}, wal::Options{});
  ASSERT_TRUE(w.ok()) << w.status();
  auto rr = (*w)->ReadAll();
  ASSERT_TRUE(rr.ok()) << rr.status();
  serverpb::WalMetadata md;
  ASSERT_TRUE(md.ParseFromString(rr->metadata));
  EXPECT_EQ(md.member_id(), kMember);
  EXPECT_EQ(md.cluster_id(), kCluster);
  EXPECT_EQ(rr->hard_state.term(), 2u);
  EXPECT_EQ(rr->hard_state.vote(), kMember);
  EXPECT_EQ(rr->hard_state.commit(), 8u);
  ASSERT_EQ(rr->entries.size(), 9u);
  raftpb::ConfChange cc;
  ASSERT_TRUE(cc.ParseFromString(rr->entries[0].data()));
  EXPECT_EQ(rr->entries[0].type(), raftpb::EntryConfChange);
  serverpb::MemberRecord rec;
  ASSERT_TRUE(rec.ParseFromString(cc.context()));
  EXPECT_EQ(rec.id(), kMember);
  EXPECT_EQ(rec.name(), "s1");
  EXPECT_THAT(rec.peer_urls(), ElementsAre("http://127.0.0.1:2380"));
  EXPECT_EQ(rr->entries[1].data(), "");
  serverpb::InternalRaftRequest req;
  ASSERT_TRUE(req.ParseFromString(rr->entries[2].data()));
  ASSERT_TRUE(req.has_member_attributes());
  EXPECT_EQ(req.member_attributes().member_id(), kMember);
  EXPECT_EQ(req.member_attributes().name(), "s1");
  EXPECT_THAT(req.member_attributes().client_urls(), ElementsAre("http://127.0.0.1:2379"));
  EXPECT_EQ(rr->entries[3].data(), "");        // cluster version
  EXPECT_EQ(rr->entries[4].data(), V3Put("a"));  // verbatim
  EXPECT_EQ(rr->entries[5].data(), "");        // applied, undecodable: emptied
  EXPECT_EQ(rr->entries[6].data(), "");
  EXPECT_EQ(rr->entries[7].data(), V3Put("b"));
  EXPECT_EQ(rr->entries[8].data(), V3Put("c"));  // uncommitted, kept
  for (uint64_t i = 0; i < 9; ++i) {
    EXPECT_EQ(rr->entries[i].index(), i + 1);
    EXPECT_EQ(rr->entries[i].term(), 2u);
  }
  ASSERT_TRUE((*w)->Close().ok());

  // The backend.
  auto be = storage::Backend::Open(Sub("member/snap/db"), storage::BackendOptions{});
  ASSERT_TRUE(be.ok()) << be.status();
  auto rtx = (*be)->BeginRead();
  ASSERT_TRUE(rtx.ok());
  auto ci = (*rtx)->Get(storage::kMetaBucket, "consistent_index");
  ASSERT_TRUE(ci.ok() && ci->has_value());
  EXPECT_EQ(std::string(**ci), BigEndian(7));
  auto m = (*rtx)->Get(storage::kMembersBucket, "bdae9bbc11dd390d");
  ASSERT_TRUE(m.ok() && m->has_value());
  serverpb::MemberRecord stored;
  ASSERT_TRUE(stored.ParseFromArray((*m)->data(), static_cast<int>((*m)->size())));
  EXPECT_EQ(stored.name(), "s1");
  EXPECT_THAT(stored.client_urls(), ElementsAre("http://127.0.0.1:2379"));
  auto removed = (*rtx)->Get(storage::kMembersRemovedBucket, "0000000000001234");
  ASSERT_TRUE(removed.ok());
  EXPECT_TRUE(removed->has_value());

  // Converted once: a second call has nothing to do.
  auto again = PrepareDataDir(env_, dir_, "", log_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->converted);
}

// etcd 3.5 proposes member attributes and the cluster version as v3
// requests (fields 1300..1302): above the consistent index they are
// translated, not refused.
TEST_F(EtcdConvertTest, TranslatesEtcd35MembershipRequests) {
  PutWal({/*2*/ V3Put("a"),
          /*3*/ Etcd35MemberAttrSet(),
          /*4*/ Etcd35Request(),
          /*5*/ Etcd35Downgrade(),
          /*6*/ V3Put("b")},
         /*commit=*/6);
  PutDb(/*consistent_index=*/2);
  auto st = PrepareDataDir(env_, dir_, "", log_);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->entries_attributes, 1u);
  EXPECT_EQ(st->entries_version, 2u);
  EXPECT_EQ(st->entries_blanked, 0u);
  EXPECT_EQ(st->entries_to_apply, 4u);
  auto w = wal::Wal::Open(env_, Sub("member/wal"), {}, wal::Options{});
  ASSERT_TRUE(w.ok()) << w.status();
  auto rr = (*w)->ReadAll();
  ASSERT_TRUE(rr.ok()) << rr.status();
  ASSERT_EQ(rr->entries.size(), 6u);
  serverpb::InternalRaftRequest req;
  ASSERT_TRUE(req.ParseFromString(rr->entries[2].data()));
  ASSERT_TRUE(req.has_member_attributes());
  EXPECT_EQ(req.member_attributes().member_id(), kMember);
  EXPECT_EQ(req.member_attributes().name(), "s1");
  EXPECT_THAT(req.member_attributes().client_urls(), ElementsAre("http://127.0.0.1:2379"));
  EXPECT_EQ(rr->entries[3].data(), "");
  EXPECT_EQ(rr->entries[4].data(), "");
  EXPECT_EQ(rr->entries[5].data(), V3Put("b"));
  ASSERT_TRUE((*w)->Close().ok());
}

TEST_F(EtcdConvertTest, RefusesWhatItCannotApplyAboveTheConsistentIndex) {
  for (const std::string& payload : {UnknownRequest(), V2Request("PUT", "/1/foo", "bar"),
                                     std::string("\xff\xff", 2)}) {
    SCOPED_TRACE(payload);
    PutWal({V3Put("a"), payload}, /*commit=*/3);
    PutDb(/*consistent_index=*/2);
    const auto before = Files();
    auto st = PrepareDataDir(env_, dir_, "", log_);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(st.status().message(), HasSubstr("raft entry 3 (term 2, committed)"));
    EXPECT_THAT(st.status().message(), HasSubstr("--snapshot-count=1"));
    EXPECT_EQ(Files(), before);
  }
}

TEST_F(EtcdConvertTest, SeparateWalDirAndExistingBackupAreRefused) {
  PutWal({V3Put("a")}, 2);
  PutDb(2);
  auto st = PrepareDataDir(env_, dir_, Sub("elsewhere"), log_);
  EXPECT_FALSE(st.ok());
  ASSERT_TRUE(env_->CreateDirAll(Sub("member.etcd-backup")).ok());
  st = PrepareDataDir(env_, dir_, "", log_);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.status().message(), HasSubstr("member.etcd-backup exists"));
}

TEST_F(EtcdConvertTest, UnfinishedTempDirIsDiscarded) {
  PutWal({V3Put("a")}, 2);
  PutDb(2);
  ASSERT_TRUE(env_->CreateDirAll(Sub("member.cppetcd-convert/snap")).ok());
  Put(Sub("member.cppetcd-convert/snap/db"), "partial");
  auto st = PrepareDataDir(env_, dir_, "", log_);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_TRUE(st->discarded_temp);
  EXPECT_TRUE(st->converted);
}

}  // namespace
}  // namespace cppetcd::server
