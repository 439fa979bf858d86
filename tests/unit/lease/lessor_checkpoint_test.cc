// Lease checkpoints (etcd 3.4 --experimental-enable-lease-checkpoint and
// --experimental-enable-lease-checkpoint-persist): scheduling on the primary,
// the batch limit, applying checkpoints, the remaining TTL on Promote, the
// reset on renewal and the persisted RemainingTTL.
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "cppetcd/lease/lessor.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/util/clock.h"
#include "leasepb/lease.pb.h"
#include "tests/unit/lease/lessor_fixture.h"

namespace cppetcd::lease {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using namespace std::chrono_literals;

class LessorCheckpointTest : public testing::LessorFixture {
 protected:
  void SetUp() override {
    LessorFixture::SetUp();
    lessor_ = NewLessor();
  }
  std::unique_ptr<Lessor> NewLessor(bool checkpointing = true, bool persist = false,
                                    std::chrono::milliseconds interval = 10s) {
    LessorOptions opts = BaseOptions();
    opts.checkpointing = checkpointing;
    opts.checkpoint_persist = persist;
    opts.checkpoint_interval = interval;
    return std::make_unique<Lessor>(opts);
  }
  void Grant(int64_t id, int64_t ttl) {
    auto tx = backend_->BeginWrite();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(lessor_->Grant(tx->get(), id, ttl).ok());
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  // Applies checkpoints as the apply loop does: one write txn per entry.
  void Apply(const std::vector<LeaseCheckpoint>& cps, Lessor* l = nullptr) {
    if (l == nullptr) l = lessor_.get();
    auto tx = backend_->BeginWrite();
    ASSERT_TRUE(tx.ok());
    for (const auto& c : cps) ASSERT_TRUE(l->Checkpoint(tx->get(), c.id, c.remaining_ttl_seconds).ok());
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  void Revoke(int64_t id) {
    auto tx = backend_->BeginWrite();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(lessor_->Revoke(tx->get(), id).ok());
    ASSERT_TRUE((*tx)->Commit().ok());
  }
};

TEST_F(LessorCheckpointTest, PrimarySchedulesLongLeasesEveryInterval) {
  lessor_->Promote(0ms);
  Grant(1, 100);
  Grant(2, 10);  // not longer than the interval: never checkpointed
  Grant(3, 11);
  EXPECT_THAT(lessor_->DueCheckpoints(10), IsEmpty());
  clock_.Advance(9999ms);
  EXPECT_THAT(lessor_->DueCheckpoints(10), IsEmpty());
  clock_.Advance(1ms);
  // Remaining time rounded up, ordered by schedule then id.
  EXPECT_THAT(lessor_->DueCheckpoints(10),
              ElementsAre(LeaseCheckpoint{1, 90}, LeaseCheckpoint{3, 1}));
  // Handed out once; the next ones one interval later, proposed or not.
  EXPECT_THAT(lessor_->DueCheckpoints(10), IsEmpty());
  clock_.Advance(500ms);
  EXPECT_THAT(lessor_->DueCheckpoints(10), IsEmpty());
  clock_.Advance(9500ms);
  // Lease 3 has expired (its revocation is the expiry path's business).
  EXPECT_THAT(lessor_->DueCheckpoints(10), ElementsAre(LeaseCheckpoint{1, 80}));
  // Applied on the primary: the lease stays scheduled once, not twice.
  Apply({{1, 80}});
  clock_.Advance(10s);
  EXPECT_THAT(lessor_->DueCheckpoints(10), ElementsAre(LeaseCheckpoint{1, 70}));
  EXPECT_THAT(lessor_->DueCheckpoints(10), IsEmpty());
}

TEST_F(LessorCheckpointTest, NothingDueWithoutCheckpointingOrOffThePrimary) {
  Grant(1, 100);
  clock_.Advance(1h);
  EXPECT_THAT(lessor_->DueCheckpoints(10), IsEmpty());  // not primary
  lessor_->Promote(0ms);
  clock_.Advance(10s);
  EXPECT_THAT(lessor_->DueCheckpoints(10), ElementsAre(LeaseCheckpoint{1, 90}));
  clock_.Advance(5s);
  lessor_->Demote();
  clock_.Advance(1h);
  EXPECT_THAT(lessor_->DueCheckpoints(10), IsEmpty());

  lessor_ = NewLessor(/*checkpointing=*/false);
  lessor_->Promote(0ms);
  Grant(2, 100);
  clock_.Advance(10s);
  EXPECT_THAT(lessor_->DueCheckpoints(10), IsEmpty());
  EXPECT_FALSE(lessor_->NeedsCheckpointReset(2));
}

TEST_F(LessorCheckpointTest, DefaultIntervalIsFiveMinutes) {
  lessor_ = NewLessor(true, false, /*interval=*/0ms);
  lessor_->Promote(0ms);
  Grant(1, 300);  // not longer than 5 min
  Grant(2, 3600);
  clock_.Advance(299s);
  EXPECT_THAT(lessor_->DueCheckpoints(10), IsEmpty());
  clock_.Advance(1s);
  EXPECT_THAT(lessor_->DueCheckpoints(10), ElementsAre(LeaseCheckpoint{2, 3300}));
}

// etcd maxLeaseCheckpointBatchSize: at most that many per entry; the rest
// come with the next calls, nothing is lost past the limit.
TEST_F(LessorCheckpointTest, BatchLimit) {
  constexpr auto kLeases = static_cast<int64_t>(2 * kMaxCheckpointBatchSize + 500);
  lessor_->Promote(0ms);
  {
    auto tx = backend_->BeginWrite();
    ASSERT_TRUE(tx.ok());
    for (int64_t id = 1; id <= kLeases; ++id) ASSERT_TRUE(lessor_->Grant(tx->get(), id, 60).ok());
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  clock_.Advance(10s);
  std::vector<int64_t> seen;
  for (size_t want : {kMaxCheckpointBatchSize, kMaxCheckpointBatchSize, size_t{500}, size_t{0}}) {
    auto batch = lessor_->DueCheckpoints(kMaxCheckpointBatchSize);
    ASSERT_EQ(batch.size(), want);
    for (const auto& c : batch) {
      EXPECT_EQ(c.remaining_ttl_seconds, 50);
      seen.push_back(c.id);
    }
  }
  ASSERT_EQ(seen.size(), static_cast<size_t>(kLeases));
  for (int64_t i = 0; i < kLeases; ++i) EXPECT_EQ(seen[i], i + 1);
}

TEST_F(LessorCheckpointTest, PromoteUsesTheCheckpointedRemainingTtl) {
  Grant(1, 100);
  Grant(2, 100);
  // A follower applies the leader's checkpoint: its expiry does not change
  // (there is none), the next leader starts from it.
  Apply({{1, 70}});
  EXPECT_EQ(lessor_->Lookup(1)->checkpointed_ttl_seconds, 70);
  EXPECT_EQ(lessor_->Lookup(2)->checkpointed_ttl_seconds, 0);
  EXPECT_EQ(lessor_->Lookup(1)->remaining_seconds, -1);
  lessor_->Promote(1500ms);
  EXPECT_EQ(lessor_->Lookup(1)->remaining_seconds, 71);
  EXPECT_EQ(lessor_->Lookup(2)->remaining_seconds, 101);
  clock_.Advance(71500ms);
  EXPECT_THAT(lessor_->ExpiredLeases(10), ElementsAre(1));
  // On the primary a checkpoint changes no expiry either.
  Apply({{2, 5}});
  EXPECT_EQ(lessor_->Lookup(2)->remaining_seconds, 30);
}

TEST_F(LessorCheckpointTest, RenewalResetsTheCheckpoint) {
  lessor_->Promote(0ms);
  Grant(1, 100);
  EXPECT_FALSE(lessor_->NeedsCheckpointReset(1));
  clock_.Advance(30s);
  Apply({{1, 70}});
  EXPECT_TRUE(lessor_->NeedsCheckpointReset(1));
  EXPECT_FALSE(lessor_->NeedsCheckpointReset(99));
  // The server proposes {1, 0} first; applied everywhere, then renewed.
  Apply({{1, 0}});
  EXPECT_FALSE(lessor_->NeedsCheckpointReset(1));
  auto ttl = lessor_->Renew(1);
  ASSERT_TRUE(ttl.ok());
  EXPECT_EQ(*ttl, 100);
  EXPECT_EQ(lessor_->Lookup(1)->remaining_seconds, 100);
  // A renewal whose reset did not make it still clears this member's copy.
  Apply({{1, 40}});
  ASSERT_TRUE(lessor_->Renew(1).ok());
  EXPECT_EQ(lessor_->Lookup(1)->checkpointed_ttl_seconds, 0);
  lessor_->Demote();
  lessor_->Promote(0ms);
  EXPECT_EQ(lessor_->Lookup(1)->remaining_seconds, 100);
}

// A lease renewed just before its checkpoint is due has nothing to keep;
// it is checkpointed again an interval later (etcd would drop it from the
// schedule until the next Promote).
TEST_F(LessorCheckpointTest, LeaseRenewedAtItsCheckpointStaysScheduled) {
  lessor_->Promote(0ms);
  Grant(1, 100);
  clock_.Advance(10s);
  ASSERT_TRUE(lessor_->Renew(1).ok());
  EXPECT_THAT(lessor_->DueCheckpoints(10), IsEmpty());
  clock_.Advance(10s);
  EXPECT_THAT(lessor_->DueCheckpoints(10), ElementsAre(LeaseCheckpoint{1, 90}));
}

TEST_F(LessorCheckpointTest, UnknownOrRevokedLeaseIsANoOp) {
  lessor_->Promote(0ms);
  Grant(1, 100);
  Apply({{42, 30}});
  EXPECT_FALSE(lessor_->Exists(42));
  ASSERT_EQ(Records().size(), 1u);
  clock_.Advance(5s);
  Revoke(1);
  Apply({{1, 30}});
  EXPECT_THAT(Records(), IsEmpty());
  clock_.Advance(5s);
  EXPECT_THAT(lessor_->DueCheckpoints(10), IsEmpty());
}

TEST_F(LessorCheckpointTest, PersistWritesRemainingTtlInEtcdsRecord) {
  lessor_ = NewLessor(true, /*persist=*/true);
  Grant(1, 100);
  Grant(2, 100);
  Apply({{1, 70}});
  auto recs = Records();
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].id(), 1);
  EXPECT_EQ(recs[0].ttl(), 100);
  EXPECT_EQ(recs[0].remainingttl(), 70);
  EXPECT_EQ(recs[1].remainingttl(), 0);
  // etcd's leasepb encoding: ID 1, TTL 100, RemainingTTL 70.
  {
    auto tx = backend_->BeginRead();
    ASSERT_TRUE(tx.ok());
    auto v = (*tx)->Get(storage::kLeaseBucket, std::string("\0\0\0\0\0\0\0\x01", 8));
    ASSERT_TRUE(v.ok() && v->has_value());
    EXPECT_EQ(**v, std::string("\x08\x01\x10\x64\x18\x46", 6));
  }
  // A restart keeps it: the next leader starts lease 1 from 70 s.
  lessor_.reset();
  backend_.reset();
  OpenBackend();
  lessor_ = NewLessor(true, true);
  {
    auto tx = backend_->BeginRead();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(lessor_->Recover(tx->get()).ok());
  }
  lessor_->Promote(0ms);
  EXPECT_EQ(lessor_->Lookup(1)->remaining_seconds, 70);
  EXPECT_EQ(lessor_->Lookup(2)->remaining_seconds, 100);
  // The reset is persisted too: the record is a plain grant's again.
  Apply({{1, 0}});
  recs = Records();
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].remainingttl(), 0);
  EXPECT_EQ(recs[0].ByteSizeLong(), 4u);
}

TEST_F(LessorCheckpointTest, WithoutPersistARestartForgetsTheCheckpoint) {
  Grant(1, 100);
  Apply({{1, 70}});
  EXPECT_EQ(Records().at(0).remainingttl(), 0);
  lessor_ = NewLessor();
  {
    auto tx = backend_->BeginRead();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(lessor_->Recover(tx->get()).ok());
  }
  lessor_->Promote(0ms);
  EXPECT_EQ(lessor_->Lookup(1)->remaining_seconds, 100);
}

// A snapshot installed on the primary reschedules the new leases.
TEST_F(LessorCheckpointTest, RestoreOnPrimaryReschedules) {
  lessor_->Promote(0ms);
  Grant(1, 100);
  clock_.Advance(5s);
  {
    auto tx = backend_->BeginRead();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(lessor_->Restore(tx->get()).ok());
  }
  clock_.Advance(5s);
  EXPECT_THAT(lessor_->DueCheckpoints(10), IsEmpty());
  clock_.Advance(5s);
  EXPECT_THAT(lessor_->DueCheckpoints(10), ElementsAre(LeaseCheckpoint{1, 90}));
}

}  // namespace
}  // namespace cppetcd::lease
