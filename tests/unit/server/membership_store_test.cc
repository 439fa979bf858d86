// Membership (src/server/membership_store.h): conf change validation and
// apply against a temp LMDB backend, the invariants after every step, the
// bucket format, persistence across reopen and determinism.
#include "src/server/membership_store.h"

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "cppetcd/server/errors.h"
#include "cppetcd/storage/backend.h"
#include "tests/unit/server/server_test_util.h"

namespace cppetcd::server {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;
using Kind = ConfChangeResult::Kind;
using Dump = std::vector<std::pair<std::string, std::string>>;

serverpb::MemberRecord Record(uint64_t id, std::vector<std::string> urls, std::string name = "") {
  serverpb::MemberRecord m;
  m.set_id(id);
  m.set_name(name);
  for (auto& u : urls) m.add_peer_urls(u);
  return m;
}

raftpb::ConfChange Change(raftpb::ConfChangeType type, uint64_t id,
                          std::vector<std::string> urls = {}) {
  raftpb::ConfChange cc;
  cc.set_type(type);
  cc.set_node_id(id);
  if (type != raftpb::ConfChangeRemoveNode) cc.set_context(Record(id, urls).SerializeAsString());
  return cc;
}

raftpb::ConfChange Add(uint64_t id, std::string url) {
  return Change(raftpb::ConfChangeAddNode, id, {std::move(url)});
}
raftpb::ConfChange AddLearner(uint64_t id, std::string url) {
  return Change(raftpb::ConfChangeAddLearnerNode, id, {std::move(url)});
}
raftpb::ConfChange Update(uint64_t id, std::vector<std::string> urls) {
  return Change(raftpb::ConfChangeUpdateNode, id, std::move(urls));
}
raftpb::ConfChange Remove(uint64_t id) { return Change(raftpb::ConfChangeRemoveNode, id); }

class MembershipTest : public test_util::TempBackendTest {
 protected:
  // Applies `cc` in its own committed txn; the result.
  static ConfChangeResult Apply(Membership* ms, storage::Backend* be,
                                const raftpb::ConfChange& cc) {
    auto tx = be->BeginWrite();
    EXPECT_TRUE(tx.ok()) << tx.status();
    auto r = ms->ApplyConfChange(tx->get(), cc);
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE((*tx)->Commit().ok());
    return r.ok() ? *r : ConfChangeResult{};
  }
  ConfChangeResult Apply(const raftpb::ConfChange& cc) { return Apply(&ms_, be_.get(), cc); }

  static Dump DumpBucket(storage::Backend* be, std::string_view bucket) {
    Dump out;
    auto rtx = be->BeginRead();
    EXPECT_TRUE(rtx.ok());
    EXPECT_TRUE((*rtx)
                    ->Scan(bucket, "", "",
                           [&](std::string_view k, std::string_view v) {
                             out.emplace_back(std::string(k), std::string(v));
                             return true;
                           })
                    .ok());
    return out;
  }

  // The documented invariants of `ms` whose committed buckets are in `be`.
  static void CheckInvariants(const Membership& ms, storage::Backend* be, uint64_t local_id) {
    const MemberMap members = ms.Members();
    const std::set<uint64_t> removed = ms.Removed();
    size_t learners = 0;
    std::map<std::string, uint64_t> url_owner;
    Dump want_members, want_removed;
    for (const auto& [id, m] : members) {
      EXPECT_EQ(id, m.id());
      EXPECT_NE(id, 0u);
      EXPECT_FALSE(removed.contains(id)) << id;
      learners += m.is_learner() ? 1 : 0;
      for (const auto& u : m.peer_urls()) {
        const auto [it, fresh] = url_owner.emplace(u, id);
        EXPECT_TRUE(fresh || it->second == id) << "shared URL " << u;
      }
      want_members.emplace_back(MemberBucketKey(id), m.SerializeAsString());
    }
    for (uint64_t id : removed) want_removed.emplace_back(MemberBucketKey(id), "removed");
    EXPECT_LE(learners, kMaxLearners);
    EXPECT_EQ(DumpBucket(be, storage::kMembersBucket), want_members);
    EXPECT_EQ(DumpBucket(be, storage::kMembersRemovedBucket), want_removed);
    const auto self = members.find(local_id);
    EXPECT_EQ(ms.LocalIsLearner(), self != members.end() && self->second.is_learner());
    std::vector<uint64_t> listed;
    for (const auto& m : ms.List()) listed.push_back(m.id());
    EXPECT_TRUE(std::is_sorted(listed.begin(), listed.end()));
    EXPECT_EQ(listed.size(), members.size());
    // Loading the buckets gives the same state.
    Membership loaded;
    auto rtx = be->BeginRead();
    ASSERT_TRUE(rtx.ok());
    ASSERT_TRUE(loaded.Load(rtx->get(), local_id).ok());
    EXPECT_EQ(Serialized(loaded.Members()), Serialized(members));
    EXPECT_EQ(loaded.Removed(), removed);
    EXPECT_EQ(loaded.LocalIsLearner(), ms.LocalIsLearner());
  }
  static std::map<uint64_t, std::string> Serialized(const MemberMap& m) {
    std::map<uint64_t, std::string> out;
    for (const auto& [id, r] : m) out[id] = r.SerializeAsString();
    return out;
  }

  void Load(uint64_t local_id) {
    auto rtx = be_->BeginRead();
    ASSERT_TRUE(rtx.ok());
    ASSERT_TRUE(ms_.Load(rtx->get(), local_id).ok());
  }

  Membership ms_;
};

// etcd's member life cycle: add a voter, add a learner, promote it, update
// its peer URLs, remove it; each step with its kind, state and buckets.
TEST_F(MembershipTest, AddLearnerPromoteUpdateRemove) {
  Load(/*local_id=*/2);
  auto r = Apply(Add(1, "http://a:2380"));
  EXPECT_TRUE(r.verdict.ok());
  EXPECT_EQ(r.kind, Kind::kAdded);
  EXPECT_EQ(r.member.id(), 1u);
  EXPECT_FALSE(r.member.is_learner());
  CheckInvariants(ms_, be_.get(), 2);

  r = Apply(AddLearner(2, "http://b:2380"));
  EXPECT_EQ(r.kind, Kind::kAdded);
  EXPECT_TRUE(r.member.is_learner());
  EXPECT_TRUE(ms_.LocalIsLearner());
  CheckInvariants(ms_, be_.get(), 2);

  r = Apply(Add(2, "http://b:2380"));  // promotion
  EXPECT_TRUE(r.verdict.ok());
  EXPECT_EQ(r.kind, Kind::kPromoted);
  EXPECT_FALSE(r.member.is_learner());
  EXPECT_FALSE(ms_.LocalIsLearner());
  CheckInvariants(ms_, be_.get(), 2);

  r = Apply(Update(2, {"http://c:2380", "http://d:2380"}));
  EXPECT_EQ(r.kind, Kind::kUpdated);
  EXPECT_THAT(ms_.Get(2)->peer_urls(), ElementsAre("http://c:2380", "http://d:2380"));
  CheckInvariants(ms_, be_.get(), 2);

  r = Apply(Remove(2));
  EXPECT_TRUE(r.verdict.ok());
  EXPECT_EQ(r.kind, Kind::kRemoved);
  EXPECT_EQ(r.member.id(), 2u);
  EXPECT_FALSE(ms_.Get(2).has_value());
  EXPECT_TRUE(ms_.IsRemoved(2));
  EXPECT_EQ(ms_.MissingMemberError(2), ErrIdRemoved());
  EXPECT_EQ(ms_.MissingMemberError(3), ErrMemberNotFound());
  EXPECT_EQ(ms_.Size(), 1u);
  CheckInvariants(ms_, be_.get(), 2);
}

// The stored bytes are the format etcd_backend_export and etcd_convert
// read and write: 16 hex digits, a MemberRecord, "removed".
TEST_F(MembershipTest, BucketFormat) {
  Load(0);
  Apply(Add(0xabc, "http://a:2380"));
  Apply(Add(0x8e9e05c52164694d, "http://b:2380"));
  Apply(Remove(0xabc));
  serverpb::MemberRecord want = Record(0x8e9e05c52164694d, {"http://b:2380"});
  EXPECT_THAT(DumpBucket(be_.get(), storage::kMembersBucket),
              ElementsAre(Pair("8e9e05c52164694d", want.SerializeAsString())));
  EXPECT_THAT(DumpBucket(be_.get(), storage::kMembersRemovedBucket),
              ElementsAre(Pair("0000000000000abc", "removed")));
}

// etcd ValidateConfigurationChange, as cppetcd applies it: each refused
// change names its error and leaves state and buckets as they were.
TEST_F(MembershipTest, ValidationErrors) {
  Load(1);
  Apply(Add(1, "http://a:2380"));
  Apply(AddLearner(2, "http://b:2380"));
  Apply(Add(3, "http://c:2380"));
  Apply(Remove(3));
  raftpb::ConfChange garbage = Add(4, "http://d:2380");
  garbage.set_context("\xff\xff\xff");
  const struct {
    const char* name;
    raftpb::ConfChange cc;
    absl::Status want;
  } cases[] = {
      {"undecodable context", garbage, ErrInvalidPeerUrls()},
      {"add existing voter", Add(1, "http://x:2380"), ErrIdExists()},
      {"add learner of existing id", AddLearner(1, "http://x:2380"), ErrIdExists()},
      {"add with a taken peer URL", Add(4, "http://b:2380"), ErrPeerUrlExists()},
      {"second learner", AddLearner(4, "http://d:2380"), ErrTooManyLearners()},
      {"remove unknown", Remove(9), ErrMemberNotFound()},
      {"update unknown", Update(9, {"http://x:2380"}), ErrMemberNotFound()},
      {"update to another's URL", Update(1, {"http://b:2380"}), ErrPeerUrlExists()},
      {"re-add a removed id", Add(3, "http://c:2380"), ErrIdRemoved()},
      {"remove a removed id", Remove(3), ErrIdRemoved()},
      {"update a removed id", Update(3, {"http://c:2380"}), ErrIdRemoved()},
  };
  const auto before_members = DumpBucket(be_.get(), storage::kMembersBucket);
  const auto before_removed = DumpBucket(be_.get(), storage::kMembersRemovedBucket);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(ms_.ValidateConfChange(c.cc), c.want);
    auto r = Apply(c.cc);
    EXPECT_EQ(r.verdict, c.want);
    EXPECT_EQ(r.kind, Kind::kNone);
    EXPECT_EQ(DumpBucket(be_.get(), storage::kMembersBucket), before_members);
    EXPECT_EQ(DumpBucket(be_.get(), storage::kMembersRemovedBucket), before_removed);
  }
  EXPECT_EQ(ms_.Size(), 2u);
  // An update may keep the member's own URL.
  EXPECT_TRUE(ms_.ValidateConfChange(Update(1, {"http://a:2380", "http://z:2380"})).ok());
  CheckInvariants(ms_, be_.get(), 1);
}

// UpdateNode changes raft attributes only: the published name and client
// URLs and the learner flag stay.
TEST_F(MembershipTest, UpdateKeepsPublishedAttributesAndLearnerFlag) {
  Load(1);
  Apply(Add(1, "http://a:2380"));
  Apply(AddLearner(2, "http://b:2380"));
  serverpb::MemberAttributesRequest ma;
  ma.set_member_id(2);
  ma.set_name("n2");
  ma.add_client_urls("http://b:2379");
  {
    auto tx = be_->BeginWrite();
    ASSERT_TRUE(tx.ok());
    auto r = ms_.ApplyAttributes(tx->get(), ma);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(*r);
    ma.set_member_id(7);  // unknown: ignored
    r = ms_.ApplyAttributes(tx->get(), ma);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(*r);
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  Apply(Update(2, {"http://e:2380"}));
  const auto m = ms_.Get(2);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->name(), "n2");
  EXPECT_THAT(m->client_urls(), ElementsAre("http://b:2379"));
  EXPECT_THAT(m->peer_urls(), ElementsAre("http://e:2380"));
  EXPECT_TRUE(m->is_learner());
  EXPECT_FALSE(ms_.Get(7).has_value());
  // Promotion keeps them too.
  Apply(Add(2, "http://e:2380"));
  EXPECT_EQ(ms_.Get(2)->name(), "n2");
  EXPECT_FALSE(ms_.Get(2)->is_learner());
  CheckInvariants(ms_, be_.get(), 1);
}

// Entries no member proposes still apply the same way everywhere: the
// record is keyed by the entry's node ID (the one raft adds), node 0 and an
// empty context change nothing, unknown types change nothing.
TEST_F(MembershipTest, OddEntriesAreTotal) {
  Load(1);
  raftpb::ConfChange cc = Add(5, "http://a:2380");
  cc.set_context(Record(6, {"http://a:2380"}).SerializeAsString());
  auto r = Apply(cc);
  EXPECT_EQ(r.kind, Kind::kAdded);
  EXPECT_TRUE(ms_.Get(5).has_value());
  EXPECT_FALSE(ms_.Get(6).has_value());

  r = Apply(Add(0, "http://z:2380"));
  EXPECT_TRUE(r.verdict.ok());
  EXPECT_EQ(r.kind, Kind::kNone);

  raftpb::ConfChange empty;  // an empty entry decodes as AddNode of node 0
  r = Apply(empty);
  EXPECT_EQ(r.kind, Kind::kNone);

  raftpb::ConfChange no_context = Add(8, "");
  no_context.clear_context();
  r = Apply(no_context);
  EXPECT_TRUE(r.verdict.ok());
  EXPECT_EQ(r.kind, Kind::kNone);
  EXPECT_FALSE(ms_.Get(8).has_value());

  raftpb::ConfChange other = Add(9, "http://q:2380");
  other.set_type(static_cast<raftpb::ConfChangeType>(77));
  r = Apply(other);
  EXPECT_TRUE(r.verdict.ok());
  EXPECT_EQ(r.kind, Kind::kNone);
  EXPECT_EQ(ms_.Size(), 1u);
  CheckInvariants(ms_, be_.get(), 1);
}

// A storage fault is an error result, with the state unchanged (the
// caller aborts the txn). Faults hit Put (write_fault), not Delete.
TEST_F(MembershipTest, StorageFaultLeavesStateUnchanged) {
  std::string fail_bucket;
  storage::BackendOptions opts;
  opts.write_fault = [&](std::string_view bucket, std::string_view) {
    return bucket == fail_bucket ? absl::InternalError("injected") : absl::OkStatus();
  };
  auto be = OpenBackend("faulty", opts);
  Membership ms;
  Apply(&ms, be.get(), Add(1, "http://a:2380"));
  const std::pair<std::string_view, raftpb::ConfChange> cases[] = {
      {storage::kMembersBucket, Add(2, "http://b:2380")},
      {storage::kMembersBucket, Update(1, {"http://c:2380"})},
      {storage::kMembersRemovedBucket, Remove(1)},
  };
  for (const auto& [bucket, cc] : cases) {
    SCOPED_TRACE(cc.ShortDebugString());
    fail_bucket = bucket;
    auto tx = be->BeginWrite();
    ASSERT_TRUE(tx.ok());
    auto r = ms.ApplyConfChange(tx->get(), cc);
    (*tx)->Abort();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
    EXPECT_EQ(ms.Size(), 1u);
    EXPECT_THAT(ms.Get(1)->peer_urls(), ElementsAre("http://a:2380"));
    EXPECT_FALSE(ms.IsRemoved(1));
  }
  fail_bucket.clear();
  CheckInvariants(ms, be.get(), 0);
}

// Close and reopen the backend: Load gives back the applied state.
TEST_F(MembershipTest, PersistenceRoundTripAcrossReopen) {
  Load(2);
  Apply(Add(1, "http://a:2380"));
  Apply(AddLearner(2, "http://b:2380"));
  Apply(Add(3, "http://c:2380"));
  Apply(Remove(3));
  const auto members = Serialized(ms_.Members());
  be_.reset();
  be_ = OpenBackend("db");
  Membership reopened;
  auto rtx = be_->BeginRead();
  ASSERT_TRUE(rtx.ok());
  ASSERT_TRUE(reopened.Load(rtx->get(), 2).ok());
  EXPECT_EQ(Serialized(reopened.Members()), members);
  EXPECT_EQ(reopened.Removed(), std::set<uint64_t>{3});
  EXPECT_TRUE(reopened.LocalIsLearner());
  EXPECT_EQ(reopened.List().size(), 2u);
  EXPECT_EQ(reopened.List()[1].peerurls(0), "http://b:2380");
  EXPECT_TRUE(reopened.List()[1].islearner());
}

TEST_F(MembershipTest, UndecodableRecordIsDataLoss) {
  {
    auto tx = be_->BeginWrite();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE((*tx)->Put(storage::kMembersBucket, MemberBucketKey(1), "\xff\xff").ok());
    ASSERT_TRUE((*tx)->Put(storage::kMembersRemovedBucket, "not hex", "removed").ok());
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  auto rtx = be_->BeginRead();
  ASSERT_TRUE(rtx.ok());
  EXPECT_EQ(ms_.Load(rtx->get(), 1).code(), absl::StatusCode::kDataLoss);
}

// Before any member is applied, the initial members stand in for peers and
// for the known-sender check.
TEST_F(MembershipTest, InitialMembersUntilApplied) {
  ms_.SetInitialMembers({Record(1, {"http://a:2380"}, "a"), Record(2, {"http://b:2380"}, "b")});
  Load(1);
  EXPECT_THAT(ms_.Peers(1), ElementsAre(Pair(2u, ElementsAre("http://b:2380"))));
  EXPECT_TRUE(ms_.IsKnown(2));
  EXPECT_FALSE(ms_.IsKnown(3));
  EXPECT_EQ(ms_.InitialMembers().size(), 2u);
  Apply(Add(1, "http://a:2380"));
  Apply(Add(3, "http://c:2380"));
  EXPECT_THAT(ms_.Peers(1), ElementsAre(Pair(3u, ElementsAre("http://c:2380"))));
  EXPECT_TRUE(ms_.IsKnown(2));  // still an initial member
  EXPECT_TRUE(ms_.IsKnown(3));
  serverpb::ClusterInfo info;
  Apply(Remove(3));
  ms_.FillClusterInfo(&info);
  ASSERT_EQ(info.members_size(), 1);
  EXPECT_EQ(info.members(0).id(), 1u);
  EXPECT_THAT(info.removed_ids(), ElementsAre(3u));
}

// Random sequences of changes, valid and not, applied on two backends: the
// same state and the same bucket bytes, and the invariants after each step.
TEST_F(MembershipTest, RandomSequencesAreDeterministic) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  auto other_be = OpenBackend("other");
  Membership other;
  Load(3);
  {
    auto rtx = other_be->BeginRead();
    ASSERT_TRUE(rtx.ok());
    ASSERT_TRUE(other.Load(rtx->get(), 3).ok());
  }
  auto pick = [&](int n) { return static_cast<int>(rng() % n); };
  for (int step = 0; step < 200; ++step) {
    const uint64_t id = 1 + pick(8);
    std::vector<std::string> urls{"http://h" + std::to_string(pick(10)) + ":2380"};
    raftpb::ConfChange cc;
    switch (pick(4)) {
      case 0: cc = Change(raftpb::ConfChangeAddNode, id, urls); break;
      case 1: cc = Change(raftpb::ConfChangeAddLearnerNode, id, urls); break;
      case 2: cc = Change(raftpb::ConfChangeUpdateNode, id, urls); break;
      default: cc = pick(3) == 0 ? Remove(id) : Change(raftpb::ConfChangeAddNode, id, urls); break;
    }
    const auto a = Apply(&ms_, be_.get(), cc);
    const auto b = Apply(&other, other_be.get(), cc);
    ASSERT_EQ(a.verdict, b.verdict) << step;
    ASSERT_EQ(a.kind, b.kind) << step;
    ASSERT_EQ(a.member.SerializeAsString(), b.member.SerializeAsString());
    if (step % 20 == 0) CheckInvariants(ms_, be_.get(), 3);
  }
  CheckInvariants(ms_, be_.get(), 3);
  EXPECT_EQ(Serialized(ms_.Members()), Serialized(other.Members()));
  EXPECT_EQ(ms_.Removed(), other.Removed());
  for (auto bucket : {storage::kMembersBucket, storage::kMembersRemovedBucket}) {
    EXPECT_EQ(DumpBucket(be_.get(), bucket), DumpBucket(other_be.get(), bucket));
  }
}

}  // namespace
}  // namespace cppetcd::server
