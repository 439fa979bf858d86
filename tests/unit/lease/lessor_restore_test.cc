// Lessor::Restore: the leases of a member replaced by those of a raft
// snapshot's database.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cppetcd/lease/lessor.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/util/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cppetcd::lease {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using namespace std::chrono_literals;

class LessorRestoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "lessor_restore_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    mine_ = Open("mine.db");
    theirs_ = Open("theirs.db");
    LessorOptions opts;
    opts.min_ttl_seconds = 1;
    opts.clock = &clock_;
    lessor_ = std::make_unique<Lessor>(opts);
    other_ = std::make_unique<Lessor>(opts);
  }
  void TearDown() override {
    lessor_.reset();
    other_.reset();
    mine_.reset();
    theirs_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<storage::Backend> Open(const std::string& name) {
    storage::BackendOptions opts;
    opts.map_size_bytes = 64 << 20;
    auto b = storage::Backend::Open((std::filesystem::path(dir_) / name).string(), opts);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? std::move(*b) : nullptr;
  }
  void Grant(Lessor* l, storage::Backend* b, int64_t id, int64_t ttl) {
    auto tx = b->BeginWrite();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(l->Grant(tx->get(), id, ttl).ok());
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  absl::Status Restore(storage::Backend* from) {
    auto tx = from->BeginRead();
    if (!tx.ok()) return tx.status();
    return lessor_->Restore(tx->get());
  }
  std::vector<int64_t> Ids() {
    std::vector<int64_t> out;
    for (const auto& info : lessor_->Leases()) out.push_back(info.id);
    std::sort(out.begin(), out.end());
    return out;
  }

  std::string dir_;
  util::FakeClock clock_;
  std::unique_ptr<storage::Backend> mine_, theirs_;
  std::unique_ptr<Lessor> lessor_, other_;
};

TEST_F(LessorRestoreTest, FollowerDropsOldLeasesAndKeysAndLoadsNewOnes) {
  Grant(lessor_.get(), mine_.get(), 1, 10);
  Grant(lessor_.get(), mine_.get(), 2, 10);
  lessor_->Attach(1, "a");
  lessor_->Attach(2, "b");
  Grant(other_.get(), theirs_.get(), 2, 30);
  Grant(other_.get(), theirs_.get(), 3, 40);

  ASSERT_TRUE(Restore(theirs_.get()).ok());
  EXPECT_THAT(Ids(), ElementsAre(2, 3));
  auto two = lessor_->Lookup(2);
  ASSERT_TRUE(two.has_value());
  EXPECT_EQ(two->ttl_seconds, 30);
  EXPECT_THAT(two->keys, IsEmpty());      // attachments come from the store's reload
  EXPECT_EQ(two->remaining_seconds, -1);  // no expiry on a follower
  EXPECT_FALSE(lessor_->Lookup(1).has_value());
  // Key bookkeeping works on the new leases, and old ids are ignored.
  lessor_->Attach(3, "c");
  lessor_->Attach(1, "a");
  EXPECT_THAT(lessor_->Lookup(3)->keys, ElementsAre("c"));
  clock_.Advance(1h);
  EXPECT_THAT(lessor_->ExpiredLeases(10), IsEmpty());
}

TEST_F(LessorRestoreTest, PrimaryGivesTheNewLeasesAFreshExpiry) {
  lessor_->Promote(0ms);
  Grant(lessor_.get(), mine_.get(), 1, 5);
  clock_.Advance(3s);
  Grant(other_.get(), theirs_.get(), 7, 20);
  Grant(other_.get(), theirs_.get(), 8, 60);

  ASSERT_TRUE(Restore(theirs_.get()).ok());
  EXPECT_TRUE(lessor_->IsPrimary());
  EXPECT_THAT(Ids(), ElementsAre(7, 8));
  EXPECT_EQ(lessor_->Lookup(7)->remaining_seconds, 20);  // now + TTL (the fake clock stands)
  clock_.Advance(5s);
  EXPECT_THAT(lessor_->ExpiredLeases(10), IsEmpty());  // lease 1 is gone with its expiry
  clock_.Advance(16s);
  EXPECT_THAT(lessor_->ExpiredLeases(10), ElementsAre(7));
  EXPECT_TRUE(lessor_->Renew(8).ok());
}

TEST_F(LessorRestoreTest, EmptySnapshotDropsEverything) {
  Grant(lessor_.get(), mine_.get(), 1, 10);
  ASSERT_TRUE(Restore(theirs_.get()).ok());
  EXPECT_EQ(lessor_->Size(), 0u);
}

TEST_F(LessorRestoreTest, UndecodableRecordChangesNothing) {
  Grant(lessor_.get(), mine_.get(), 1, 10);
  lessor_->Attach(1, "a");
  {
    auto tx = theirs_->BeginWrite();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE((*tx)->Put(storage::kLeaseBucket, "short", "junk").ok());
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  absl::Status s = Restore(theirs_.get());
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(Ids(), ElementsAre(1));
  EXPECT_THAT(lessor_->Lookup(1)->keys, ElementsAre("a"));
}

}  // namespace
}  // namespace cppetcd::lease
