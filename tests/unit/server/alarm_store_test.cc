// AlarmStore (src/server/alarm_store.h): etcd 3.4's alarm apply results,
// the NOSPACE/CORRUPT flags, the alarm bucket, persistence across reopen
// and determinism, against a temp LMDB backend.
#include "src/server/alarm_store.h"

#include <stdlib.h>

#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

#include "cppetcd/storage/backend.h"
#include "tests/unit/server/server_test_util.h"

namespace cppetcd::server {
namespace {

using Dump = std::vector<std::pair<std::string, std::string>>;
using etcdserverpb::AlarmRequest;

AlarmRequest Req(AlarmRequest::AlarmAction action, uint64_t member, etcdserverpb::AlarmType type) {
  AlarmRequest ar;
  ar.set_action(action);
  ar.set_memberid(member);
  ar.set_alarm(type);
  return ar;
}

// (member, type) pairs of a response or list, in order.
std::vector<std::pair<uint64_t, int>> Pairs(
    const google::protobuf::RepeatedPtrField<etcdserverpb::AlarmMember>& alarms) {
  std::vector<std::pair<uint64_t, int>> out;
  for (const auto& a : alarms) out.emplace_back(a.memberid(), a.alarm());
  return out;
}
std::vector<std::pair<uint64_t, int>> Pairs(const std::vector<etcdserverpb::AlarmMember>& alarms) {
  std::vector<std::pair<uint64_t, int>> out;
  for (const auto& a : alarms) out.emplace_back(a.memberid(), a.alarm());
  return out;
}

constexpr int kNoSpace = etcdserverpb::NOSPACE;
constexpr int kCorrupt = etcdserverpb::CORRUPT;

class AlarmStoreTest : public test_util::TempBackendTest {
 protected:
  static etcdserverpb::AlarmResponse Apply(AlarmStore* as, storage::Backend* be,
                                           const AlarmRequest& ar) {
    auto tx = be->BeginWrite();
    EXPECT_TRUE(tx.ok());
    auto r = as->Apply(tx->get(), ar);
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE((*tx)->Commit().ok());
    return r.ok() ? *r : etcdserverpb::AlarmResponse();
  }
  etcdserverpb::AlarmResponse Apply(const AlarmRequest& ar) { return Apply(&as_, be_.get(), ar); }

  static Dump DumpBucket(storage::Backend* be) {
    Dump out;
    auto rtx = be->BeginRead();
    EXPECT_TRUE(rtx.ok());
    EXPECT_TRUE((*rtx)
                    ->Scan(storage::kAlarmBucket, "", "",
                           [&](std::string_view k, std::string_view v) {
                             out.emplace_back(std::string(k), std::string(v));
                             return true;
                           })
                    .ok());
    return out;
  }

  // The documented invariants: flags match the set, the bucket holds it
  // (AlarmMember keys, empty values), Load gives it back.
  static void CheckInvariants(const AlarmStore& as, storage::Backend* be) {
    const auto all = as.List(etcdserverpb::NONE);
    bool nospace = false, corrupt = false;
    std::set<std::string> want_keys;
    for (const auto& a : all) {
      nospace |= a.alarm() == etcdserverpb::NOSPACE;
      corrupt |= a.alarm() == etcdserverpb::CORRUPT;
      want_keys.insert(a.SerializeAsString());
    }
    EXPECT_EQ(as.NoSpace(), nospace);
    EXPECT_EQ(as.Corrupt(), corrupt);
    std::set<std::string> keys;
    for (const auto& [k, v] : DumpBucket(be)) {
      EXPECT_EQ(v, "");
      keys.insert(k);
    }
    EXPECT_EQ(keys, want_keys);
    AlarmStore loaded(util::Logger("alarm-test"));
    auto rtx = be->BeginRead();
    ASSERT_TRUE(rtx.ok());
    ASSERT_TRUE(loaded.Load(rtx->get()).ok());
    EXPECT_EQ(Pairs(loaded.List(etcdserverpb::NONE)), Pairs(all));
  }

  AlarmStore as_{util::Logger("alarm-test")};
};

// etcd applierV3backend.Alarm: ACTIVATE answers the alarm whether new or
// already active (etcd AlarmStore.Activate returns the existing member);
// DEACTIVATE answers it only if it was active.
TEST_F(AlarmStoreTest, ActivateDeactivateResults) {
  auto r = Apply(Req(AlarmRequest::ACTIVATE, 7, etcdserverpb::NOSPACE));
  EXPECT_EQ(Pairs(r.alarms()), (std::vector<std::pair<uint64_t, int>>{{7, kNoSpace}}));
  EXPECT_TRUE(as_.NoSpace());
  EXPECT_FALSE(as_.Corrupt());
  CheckInvariants(as_, be_.get());

  r = Apply(Req(AlarmRequest::ACTIVATE, 7, etcdserverpb::NOSPACE));
  EXPECT_EQ(Pairs(r.alarms()), (std::vector<std::pair<uint64_t, int>>{{7, kNoSpace}}));
  EXPECT_EQ(as_.List(etcdserverpb::NONE).size(), 1u);

  r = Apply(Req(AlarmRequest::DEACTIVATE, 8, etcdserverpb::NOSPACE));  // absent
  EXPECT_EQ(r.alarms_size(), 0);
  r = Apply(Req(AlarmRequest::DEACTIVATE, 7, etcdserverpb::CORRUPT));  // absent type
  EXPECT_EQ(r.alarms_size(), 0);
  EXPECT_TRUE(as_.NoSpace());

  r = Apply(Req(AlarmRequest::DEACTIVATE, 7, etcdserverpb::NOSPACE));
  EXPECT_EQ(Pairs(r.alarms()), (std::vector<std::pair<uint64_t, int>>{{7, kNoSpace}}));
  EXPECT_FALSE(as_.NoSpace());
  EXPECT_TRUE(DumpBucket(be_.get()).empty());
  CheckInvariants(as_, be_.get());
}

// The flags stay up while any member's alarm of that type is active.
TEST_F(AlarmStoreTest, FlagsFollowTheLastAlarmOfAType) {
  Apply(Req(AlarmRequest::ACTIVATE, 1, etcdserverpb::NOSPACE));
  Apply(Req(AlarmRequest::ACTIVATE, 2, etcdserverpb::NOSPACE));
  Apply(Req(AlarmRequest::ACTIVATE, 0, etcdserverpb::CORRUPT));  // as the corruption check
  EXPECT_TRUE(as_.NoSpace());
  EXPECT_TRUE(as_.Corrupt());
  Apply(Req(AlarmRequest::DEACTIVATE, 1, etcdserverpb::NOSPACE));
  EXPECT_TRUE(as_.NoSpace());
  CheckInvariants(as_, be_.get());
  Apply(Req(AlarmRequest::DEACTIVATE, 2, etcdserverpb::NOSPACE));
  EXPECT_FALSE(as_.NoSpace());
  EXPECT_TRUE(as_.Corrupt());
  Apply(Req(AlarmRequest::DEACTIVATE, 0, etcdserverpb::CORRUPT));
  EXPECT_FALSE(as_.Corrupt());
  CheckInvariants(as_, be_.get());
}

// List and GET filter by type (NONE: all), sorted by (member, type).
TEST_F(AlarmStoreTest, ListByType) {
  Apply(Req(AlarmRequest::ACTIVATE, 9, etcdserverpb::NOSPACE));
  Apply(Req(AlarmRequest::ACTIVATE, 3, etcdserverpb::CORRUPT));
  Apply(Req(AlarmRequest::ACTIVATE, 3, etcdserverpb::NOSPACE));
  using V = std::vector<std::pair<uint64_t, int>>;
  EXPECT_EQ(Pairs(as_.List(etcdserverpb::NONE)), (V{{3, kNoSpace}, {3, kCorrupt}, {9, kNoSpace}}));
  EXPECT_EQ(Pairs(as_.List(etcdserverpb::NOSPACE)), (V{{3, kNoSpace}, {9, kNoSpace}}));
  EXPECT_EQ(Pairs(as_.List(etcdserverpb::CORRUPT)), (V{{3, kCorrupt}}));
  const auto before = DumpBucket(be_.get());
  auto r = Apply(Req(AlarmRequest::GET, 0, etcdserverpb::NOSPACE));
  EXPECT_EQ(Pairs(r.alarms()), (V{{3, kNoSpace}, {9, kNoSpace}}));
  r = Apply(Req(AlarmRequest::GET, 0, etcdserverpb::NONE));
  EXPECT_EQ(r.alarms_size(), 3);
  EXPECT_EQ(DumpBucket(be_.get()), before);
}

// Requests no member sends still apply alike everywhere: NONE is never
// stored, unknown actions and types do what the table says.
TEST_F(AlarmStoreTest, OddRequestsAreTotal) {
  auto r = Apply(Req(AlarmRequest::ACTIVATE, 1, etcdserverpb::NONE));
  EXPECT_EQ(r.alarms_size(), 0);
  r = Apply(Req(static_cast<AlarmRequest::AlarmAction>(42), 1, etcdserverpb::NOSPACE));
  EXPECT_EQ(r.alarms_size(), 0);
  EXPECT_TRUE(as_.List(etcdserverpb::NONE).empty());
  // An unknown type is kept as its number and raises no flag.
  const auto odd = static_cast<etcdserverpb::AlarmType>(9);
  r = Apply(Req(AlarmRequest::ACTIVATE, 1, odd));
  EXPECT_EQ(r.alarms_size(), 1);
  EXPECT_FALSE(as_.NoSpace());
  EXPECT_FALSE(as_.Corrupt());
  EXPECT_EQ(as_.List(odd).size(), 1u);
  CheckInvariants(as_, be_.get());
  r = Apply(Req(AlarmRequest::DEACTIVATE, 1, odd));
  EXPECT_EQ(r.alarms_size(), 1);
  CheckInvariants(as_, be_.get());
}

// Close and reopen: Load gives back the active set and flags; a key that
// does not decode is skipped.
TEST_F(AlarmStoreTest, PersistenceRoundTripAcrossReopen) {
  Apply(Req(AlarmRequest::ACTIVATE, 5, etcdserverpb::NOSPACE));
  Apply(Req(AlarmRequest::ACTIVATE, 0, etcdserverpb::CORRUPT));
  {
    auto tx = be_->BeginWrite();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE((*tx)->Put(storage::kAlarmBucket, "\xff\xff\xff", "").ok());
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  be_.reset();
  be_ = OpenBackend("db");
  AlarmStore reopened(util::Logger("alarm-test"));
  auto rtx = be_->BeginRead();
  ASSERT_TRUE(rtx.ok());
  ASSERT_TRUE(reopened.Load(rtx->get()).ok());
  EXPECT_EQ(Pairs(reopened.List(etcdserverpb::NONE)),
            (std::vector<std::pair<uint64_t, int>>{{0, kCorrupt}, {5, kNoSpace}}));
  EXPECT_TRUE(reopened.NoSpace());
  EXPECT_TRUE(reopened.Corrupt());
  // Load replaces what was there.
  ASSERT_TRUE(as_.Load(rtx->get()).ok());
  EXPECT_EQ(as_.List(etcdserverpb::NONE).size(), 2u);
}

// The bucket key is the AlarmMember message itself (etcd's format).
TEST_F(AlarmStoreTest, BucketFormat) {
  Apply(Req(AlarmRequest::ACTIVATE, 0x8e9e05c52164694d, etcdserverpb::NOSPACE));
  etcdserverpb::AlarmMember am;
  am.set_memberid(0x8e9e05c52164694d);
  am.set_alarm(etcdserverpb::NOSPACE);
  EXPECT_EQ(DumpBucket(be_.get()), (Dump{{am.SerializeAsString(), ""}}));
}

// A storage fault is an error result; the set and flags are unchanged.
TEST_F(AlarmStoreTest, StorageFaultLeavesStateUnchanged) {
  bool fail = false;
  storage::BackendOptions opts;
  opts.write_fault = [&](std::string_view, std::string_view) {
    return fail ? absl::InternalError("injected") : absl::OkStatus();
  };
  auto be = OpenBackend("faulty", opts);
  AlarmStore as(util::Logger("alarm-test"));
  fail = true;
  auto tx = be->BeginWrite();
  ASSERT_TRUE(tx.ok());
  auto r = as.Apply(tx->get(), Req(AlarmRequest::ACTIVATE, 1, etcdserverpb::NOSPACE));
  (*tx)->Abort();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_FALSE(as.NoSpace());
  EXPECT_TRUE(as.List(etcdserverpb::NONE).empty());
}

// Random request sequences on two backends: same responses, same state,
// same bucket bytes; invariants along the way.
TEST_F(AlarmStoreTest, RandomSequencesAreDeterministic) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  auto other_be = OpenBackend("other");
  AlarmStore other(util::Logger("alarm-test"));
  for (int step = 0; step < 300; ++step) {
    const auto action = static_cast<AlarmRequest::AlarmAction>(rng() % 3);
    const auto type = static_cast<etcdserverpb::AlarmType>(rng() % 3);
    const AlarmRequest ar = Req(action, rng() % 4, type);
    const auto a = Apply(&as_, be_.get(), ar);
    const auto b = Apply(&other, other_be.get(), ar);
    ASSERT_EQ(a.SerializeAsString(), b.SerializeAsString()) << step;
    if (step % 30 == 0) CheckInvariants(as_, be_.get());
  }
  CheckInvariants(as_, be_.get());
  EXPECT_EQ(Pairs(as_.List(etcdserverpb::NONE)), Pairs(other.List(etcdserverpb::NONE)));
  EXPECT_EQ(DumpBucket(be_.get()), DumpBucket(other_be.get()));
}

}  // namespace
}  // namespace cppetcd::server
