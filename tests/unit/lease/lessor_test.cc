#include "cppetcd/lease/lessor.h"

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/util/clock.h"
#include "leasepb/lease.pb.h"
#include "tests/unit/lease/lessor_fixture.h"

namespace cppetcd::lease {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using namespace std::chrono_literals;

class LessorTest : public testing::LessorFixture {
 protected:
  void SetUp() override {
    LessorFixture::SetUp();
    lessor_ = NewLessor();
  }
  std::unique_ptr<Lessor> NewLessor(int64_t min_ttl = 1) {
    LessorOptions opts = BaseOptions();
    opts.min_ttl_seconds = min_ttl;
    return std::make_unique<Lessor>(opts);
  }
  absl::StatusOr<LeaseInfo> Grant(int64_t id, int64_t ttl) {
    auto tx = backend_->BeginWrite();
    if (!tx.ok()) return tx.status();
    auto r = lessor_->Grant(tx->get(), id, ttl);
    if (r.ok()) {
      if (absl::Status s = (*tx)->Commit(); !s.ok()) return s;
    }
    return r;
  }
  absl::StatusOr<std::vector<std::string>> Revoke(int64_t id) {
    auto tx = backend_->BeginWrite();
    if (!tx.ok()) return tx.status();
    auto r = lessor_->Revoke(tx->get(), id);
    if (r.ok()) {
      if (absl::Status s = (*tx)->Commit(); !s.ok()) return s;
    }
    return r;
  }
  absl::Status Recover(Lessor* l) {
    auto tx = backend_->BeginRead();
    if (!tx.ok()) return tx.status();
    return l->Recover(tx->get());
  }
};

TEST_F(LessorTest, GrantPersistsAndRaisesMinTtl) {
  lessor_ = NewLessor(/*min_ttl=*/5);
  auto a = Grant(1, 2);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->id, 1);
  EXPECT_EQ(a->ttl_seconds, 5);  // raised to the minimum
  EXPECT_EQ(a->remaining_seconds, -1);  // not primary: no expiry
  auto b = Grant(0x0102030405060708, 60);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->ttl_seconds, 60);

  auto recs = Records();
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].id(), 1);
  EXPECT_EQ(recs[0].ttl(), 5);
  EXPECT_EQ(recs[1].id(), 0x0102030405060708);
  EXPECT_EQ(recs[1].ttl(), 60);
  // Key = 8 bytes big-endian ID.
  auto tx = backend_->BeginRead();
  ASSERT_TRUE(tx.ok());
  auto v = (*tx)->Get(storage::kLeaseBucket, std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->has_value());
}

TEST_F(LessorTest, GrantErrors) {
  EXPECT_TRUE(IsLeaseNotFound(Grant(0, 10).status()));
  EXPECT_TRUE(IsLeaseTTLTooLarge(Grant(1, kMaxLeaseTtlSeconds + 1).status()));
  EXPECT_TRUE(Grant(1, kMaxLeaseTtlSeconds).ok());
  EXPECT_TRUE(IsLeaseExists(Grant(1, 10).status()));
  EXPECT_EQ(ErrLeaseTTLTooLarge().message(), "too large lease TTL");
  EXPECT_EQ(ErrLeaseNotFound().message(), "lease not found");
  EXPECT_EQ(ErrLeaseExists().message(), "lease already exists");
  EXPECT_FALSE(IsLeaseNotFound(ErrLeaseExists()));
  EXPECT_FALSE(IsLeaseNotFound(absl::NotFoundError("other")));
}

TEST_F(LessorTest, RenewRequiresPrimary) {
  ASSERT_TRUE(Grant(7, 10).ok());
  EXPECT_TRUE(IsNotPrimary(lessor_->Renew(7).status()));
  lessor_->Promote(0ms);
  EXPECT_TRUE(lessor_->IsPrimary());
  EXPECT_TRUE(IsLeaseNotFound(lessor_->Renew(8).status()));
  clock_.Advance(4s);
  auto ttl = lessor_->Renew(7);
  ASSERT_TRUE(ttl.ok());
  EXPECT_EQ(*ttl, 10);
  EXPECT_EQ(lessor_->Lookup(7)->remaining_seconds, 10);
  clock_.Advance(1500ms);
  EXPECT_EQ(lessor_->Lookup(7)->remaining_seconds, 8);  // 8.5 s truncated
  lessor_->Demote();
  EXPECT_FALSE(lessor_->IsPrimary());
  EXPECT_EQ(lessor_->Lookup(7)->remaining_seconds, -1);
  EXPECT_TRUE(IsNotPrimary(lessor_->Renew(7).status()));
}

TEST_F(LessorTest, ExpiryAndRenewal) {
  lessor_->Promote(0ms);
  ASSERT_TRUE(Grant(1, 10).ok());
  ASSERT_TRUE(Grant(2, 20).ok());
  EXPECT_EQ(lessor_->Lookup(1)->remaining_seconds, 10);
  clock_.Advance(9s);
  EXPECT_THAT(lessor_->ExpiredLeases(10), IsEmpty());
  ASSERT_TRUE(lessor_->Renew(1).ok());  // now expires at 19 s
  clock_.Advance(2s);                   // 11 s
  EXPECT_THAT(lessor_->ExpiredLeases(10), IsEmpty());
  clock_.Advance(9s);  // 20 s: both expired
  EXPECT_THAT(lessor_->ExpiredLeases(10), ElementsAre(1, 2));
  EXPECT_EQ(lessor_->Lookup(1)->remaining_seconds, 0);
  // Renewing an expired lease fails: its revocation is on its way.
  EXPECT_TRUE(IsLeaseNotFound(lessor_->Renew(1).status()));
}

TEST_F(LessorTest, ExpiredLeasesHandedOutOncePerRetryInterval) {
  lessor_->Promote(0ms);
  for (int64_t id = 1; id <= 5; ++id) ASSERT_TRUE(Grant(id, 10).ok());
  clock_.Advance(10s);
  EXPECT_THAT(lessor_->ExpiredLeases(3), ElementsAre(1, 2, 3));
  EXPECT_THAT(lessor_->ExpiredLeases(3), ElementsAre(4, 5));
  EXPECT_THAT(lessor_->ExpiredLeases(3), IsEmpty());
  clock_.Advance(1s);
  EXPECT_THAT(lessor_->ExpiredLeases(10), IsEmpty());
  // Lease 2 is revoked; the others' revocations were lost: offered again.
  ASSERT_TRUE(Revoke(2).ok());
  clock_.Advance(kExpiredLeaseRetryInterval);
  EXPECT_THAT(lessor_->ExpiredLeases(10), ElementsAre(1, 3, 4, 5));
  EXPECT_THAT(lessor_->ExpiredLeases(10), IsEmpty());
}

TEST_F(LessorTest, NotPrimaryNeverExpires) {
  ASSERT_TRUE(Grant(1, 10).ok());
  clock_.Advance(1h);
  EXPECT_THAT(lessor_->ExpiredLeases(10), IsEmpty());
  lessor_->Promote(0ms);
  clock_.Advance(9s);
  EXPECT_THAT(lessor_->ExpiredLeases(10), IsEmpty());
  lessor_->Demote();
  clock_.Advance(1h);
  EXPECT_THAT(lessor_->ExpiredLeases(10), IsEmpty());
}

TEST_F(LessorTest, PromoteRefreshesWithExtend) {
  ASSERT_TRUE(Grant(1, 10).ok());
  lessor_->Promote(0ms);
  clock_.Advance(8s);
  // A new leader refreshes every lease: full TTL plus the extension.
  lessor_->Demote();
  lessor_->Promote(3000ms);
  EXPECT_EQ(lessor_->Lookup(1)->remaining_seconds, 13);
  clock_.Advance(12s);
  EXPECT_THAT(lessor_->ExpiredLeases(10), IsEmpty());
  clock_.Advance(1s);
  EXPECT_THAT(lessor_->ExpiredLeases(10), ElementsAre(1));
}

TEST_F(LessorTest, AttachDetachAndRevoke) {
  ASSERT_TRUE(Grant(1, 10).ok());
  lessor_->Attach(1, "b");
  lessor_->Attach(1, "a");
  lessor_->Attach(1, "c");
  lessor_->Attach(1, "a");  // idempotent
  lessor_->Attach(99, "x");  // unknown lease: ignored
  lessor_->Detach(1, "c");
  lessor_->Detach(1, "zz");  // not attached: ignored
  EXPECT_THAT(lessor_->Lookup(1)->keys, ElementsAre("a", "b"));
  EXPECT_FALSE(lessor_->Lookup(99).has_value());
  auto keys = Revoke(1);
  ASSERT_TRUE(keys.ok());
  EXPECT_THAT(*keys, ElementsAre("a", "b"));
  EXPECT_FALSE(lessor_->Exists(1));
  EXPECT_THAT(Records(), IsEmpty());
  EXPECT_TRUE(IsLeaseNotFound(Revoke(1).status()));
}

TEST_F(LessorTest, RecoverRoundTripThroughBackend) {
  lessor_ = NewLessor(/*min_ttl=*/3);
  ASSERT_TRUE(Grant(1, 10).ok());
  ASSERT_TRUE(Grant(2, 100).ok());
  ASSERT_TRUE(Grant(3, 30).ok());
  ASSERT_TRUE(Revoke(3).ok());
  // Reopen the backend: the records survive.
  lessor_.reset();
  backend_.reset();
  OpenBackend();
  // A higher minimum at restart raises recovered TTLs too (etcd does).
  auto l2 = NewLessor(/*min_ttl=*/20);
  ASSERT_TRUE(Recover(l2.get()).ok());
  auto leases = l2->Leases();
  ASSERT_EQ(leases.size(), 2u);
  EXPECT_EQ(leases[0].id, 1);
  EXPECT_EQ(leases[0].ttl_seconds, 20);
  EXPECT_EQ(leases[0].remaining_seconds, -1);
  EXPECT_EQ(leases[1].id, 2);
  EXPECT_EQ(leases[1].ttl_seconds, 100);
  // Not expiring until promoted, then renewed in full.
  clock_.Advance(1h);
  EXPECT_THAT(l2->ExpiredLeases(10), IsEmpty());
  l2->Promote(0ms);
  EXPECT_EQ(l2->Lookup(1)->remaining_seconds, 20);
  EXPECT_EQ(l2->Lookup(2)->remaining_seconds, 100);
  clock_.Advance(20s);
  EXPECT_THAT(l2->ExpiredLeases(10), ElementsAre(1));
}

TEST_F(LessorTest, LeasesSortedByRemaining) {
  lessor_->Promote(0ms);
  ASSERT_TRUE(Grant(5, 50).ok());
  ASSERT_TRUE(Grant(6, 10).ok());
  ASSERT_TRUE(Grant(7, 30).ok());
  std::vector<int64_t> ids;
  for (const auto& l : lessor_->Leases()) ids.push_back(l.id);
  EXPECT_THAT(ids, ElementsAre(6, 7, 5));
  EXPECT_EQ(lessor_->Size(), 3u);
}

TEST_F(LessorTest, PromoteSpreadsPiledUpExpiries) {
  // 2000 leases with one TTL: at most 3/4 of kLeaseRevokeRate per second.
  {
    auto tx = backend_->BeginWrite();
    ASSERT_TRUE(tx.ok());
    for (int64_t id = 1; id <= 2000; ++id) ASSERT_TRUE(lessor_->Grant(tx->get(), id, 10).ok());
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  lessor_->Promote(0ms);
  // The first 750 expire at 10 s, the next 750 are pushed into (11 s, 12 s],
  // the last 500 into (12 s, 12.67 s].
  clock_.Advance(10s);
  EXPECT_EQ(lessor_->ExpiredLeases(5000).size(), 750u);
  clock_.Advance(1s);
  EXPECT_THAT(lessor_->ExpiredLeases(5000), IsEmpty());
  clock_.Advance(1s);
  EXPECT_EQ(lessor_->ExpiredLeases(5000).size(), 750u);
  clock_.Advance(700ms);
  EXPECT_EQ(lessor_->ExpiredLeases(5000).size(), 500u);
}

// The apply loop grants, attaches and revokes while an api thread renews and
// looks up and a timer thread polls expiry (run under TSan by the CI).
TEST_F(LessorTest, ConcurrentUse) {
  lessor_->Promote(0ms);
  constexpr int64_t kLeases = 200;
  std::thread renewer([&] {
    for (int round = 0; round < 3; ++round) {
      for (int64_t id = 1; id <= kLeases; ++id) {
        auto r = lessor_->Renew(id);
        EXPECT_TRUE(r.ok() || IsLeaseNotFound(r.status())) << r.status();
        (void)lessor_->Lookup(id);
      }
      (void)lessor_->Leases();
    }
  });
  std::thread poller([&] {
    for (int i = 0; i < 200; ++i) {
      (void)lessor_->ExpiredLeases(10);
      clock_.Advance(100ms);
    }
  });
  for (int64_t id = 1; id <= kLeases; ++id) {
    ASSERT_TRUE(Grant(id, 5).ok());
    lessor_->Attach(id, "k" + std::to_string(id));
    if (id % 3 == 0) {
      auto keys = Revoke(id);
      ASSERT_TRUE(keys.ok());
      EXPECT_THAT(*keys, ElementsAre("k" + std::to_string(id)));
    }
  }
  renewer.join();
  poller.join();
  EXPECT_EQ(lessor_->Size(), static_cast<size_t>(kLeases - kLeases / 3));
}

}  // namespace
}  // namespace cppetcd::lease
