// WatchableStore::Restore: watchers of a member whose store was replaced by
// a raft snapshot (Store::Reload) catch up from the restored history.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cppetcd/mvcc/kvstore.h"
#include "cppetcd/mvcc/watchable_store.h"
#include "cppetcd/storage/backend.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/mvcc/watch/watch_test_util.h"

namespace cppetcd::mvcc {
namespace {

using testing::EventCount;
using testing::EventsOf;
using testing::Reader;
using ::testing::ElementsAre;

class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "watch_restore_test.XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::vector<int64_t> Revs(const std::vector<mvccpb::Event>& evs) {
  std::vector<int64_t> out;
  for (const auto& e : evs) out.push_back(e.kv().mod_revision());
  return out;
}

struct Member {
  explicit Member(const std::string& path) {
    storage::BackendOptions bo;
    bo.map_size_bytes = 64 << 20;
    auto b = storage::Backend::Open(path, bo);
    EXPECT_TRUE(b.ok()) << b.status();
    backend = std::move(b).value();
    auto s = Store::Open(backend.get(), StoreOptions());
    EXPECT_TRUE(s.ok()) << s.status();
    store = std::move(s).value();
  }
  int64_t Apply(const std::function<void(TxnWrite*)>& fn) {
    auto btx = backend->BeginWrite();
    EXPECT_TRUE(btx.ok());
    auto tw = store->Write(btx->get());
    fn(tw.get());
    const int64_t rev = tw->Rev();
    tw->End();
    EXPECT_TRUE((*btx)->Commit().ok());
    store->OnCommit();
    return rev;
  }
  int64_t Put(const std::string& k, const std::string& v) {
    return Apply([&](TxnWrite* tw) { tw->Put(k, v, 0); });
  }
  int64_t Delete(const std::string& k) {
    return Apply([&](TxnWrite* tw) { tw->DeleteRange(k, ""); });
  }
  void Compact(int64_t rev) {
    auto btx = backend->BeginWrite();
    ASSERT_TRUE(btx.ok());
    auto f = store->Compact(btx->get(), rev);
    ASSERT_TRUE(f.ok()) << f.status();
    ASSERT_TRUE((*btx)->Commit().ok());
    store->OnCommit();
    EXPECT_TRUE(f->get().ok());
  }
  void Image(const std::string& path) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(backend->CopyTo(fd).ok());
    ::close(fd);
  }

  std::unique_ptr<storage::Backend> backend;
  std::unique_ptr<Store> store;
};

class WatchRestoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    leader_ = std::make_unique<Member>(dir_.File("leader.db"));
    follower_ = std::make_unique<Member>(dir_.File("follower.db"));
    WatchOptions o;
    o.progress_notify_interval = std::chrono::nanoseconds::zero();
    o.stream_queue_capacity = 16;
    o.max_events_per_sync = 4;  // several catch-up rounds
    watchable_ = std::make_unique<WatchableStore>(follower_->store.get(), o);
  }
  void TearDown() override {
    watchable_.reset();
    follower_.reset();
    leader_.reset();
  }
  // Both members apply the same request (the shared log prefix).
  void PutBoth(const std::string& k, const std::string& v) {
    EXPECT_EQ(leader_->Put(k, v), follower_->Put(k, v));
  }
  // The snapshot install on the follower, as the server does it.
  void InstallLeaderSnapshot() {
    const std::string image = dir_.File("snap.db");
    leader_->Image(image);
    ASSERT_TRUE(follower_->store
                    ->Reload([&] { return follower_->backend->ReplaceContentsFrom(image); })
                    .ok());
    watchable_->Restore();
  }

  TempDir dir_;
  std::unique_ptr<Member> leader_;
  std::unique_ptr<Member> follower_;
  std::unique_ptr<WatchableStore> watchable_;
};

TEST_F(WatchRestoreTest, SyncedWatcherGetsTheMissedEventsThenLiveOnes) {
  PutBoth("k/a", "1");  // 2
  PutBoth("x", "1");    // 3
  Reader r(watchable_.get());
  ASSERT_EQ(*r.stream->Watch(0, "k/", "k0", 0, false, false, /*prev_kv=*/true), 0);
  ASSERT_EQ(watchable_->SyncedCount(), 1u);
  // The follower misses revisions 4..13 (it gets them as a snapshot).
  for (int i = 0; i < 8; ++i) {  // 4..11
    leader_->Put(std::string("k/") + static_cast<char>('a' + i % 3), absl::StrCat(i));
  }
  leader_->Put("x", "2");  // 12
  leader_->Delete("k/a");  // 13
  const int64_t restored_rev = leader_->store->Rev();

  InstallLeaderSnapshot();
  EXPECT_EQ(watchable_->Rev(), restored_rev);
  EXPECT_EQ(follower_->store->Rev(), restored_rev);
  ASSERT_TRUE(r.PollUntil([&](auto& got) { return EventCount(got, 0) == 9; }));
  // Then live again.
  const int64_t live = follower_->Put("k/z", "live");
  ASSERT_TRUE(r.PollUntil([&](auto& got) { return EventCount(got, 0) == 10; }));
  r.Drain(absl::Milliseconds(50));
  const auto evs = EventsOf(r.got, 0);
  std::vector<int64_t> revs = Revs(evs);
  std::vector<int64_t> expected;
  for (int64_t rev = 4; rev <= restored_rev; ++rev) {
    if (rev != restored_rev - 1) expected.push_back(rev);  // skip the put of "x"
  }
  expected.push_back(live);
  EXPECT_EQ(revs, expected);
  EXPECT_EQ(evs[8].type(), mvccpb::Event::DELETE);
  EXPECT_EQ(evs[3].prev_kv().value(), "0");  // k/a's previous value, from the new store
  EXPECT_EQ(watchable_->SyncedCount(), 1u);
  EXPECT_EQ(watchable_->UnsyncedCount(), 0u);
}

TEST_F(WatchRestoreTest, WatcherBelowTheRestoredCompactionIsCanceled) {
  PutBoth("k", "1");  // 2
  Reader r(watchable_.get());
  ASSERT_EQ(*r.stream->Watch(0, "k", "", 0, false, false, false), 0);  // next 3
  for (int i = 0; i < 6; ++i) leader_->Put("k", absl::StrCat(i));    // 3..8
  leader_->Compact(6);
  InstallLeaderSnapshot();
  ASSERT_TRUE(r.PollUntil([](auto& got) { return !got.empty(); }));
  r.Drain(absl::Milliseconds(50));
  ASSERT_EQ(r.got.size(), 1u);
  EXPECT_TRUE(r.got[0].canceled);
  EXPECT_EQ(r.got[0].compact_revision, 6);
  EXPECT_TRUE(r.got[0].events.empty());
  EXPECT_EQ(watchable_->SyncedCount() + watchable_->UnsyncedCount(), 0u);
}

TEST_F(WatchRestoreTest, FutureAndUnsyncedWatchersAndProgressAll) {
  for (int i = 0; i < 3; ++i) PutBoth("h", absl::StrCat(i));  // 2..4
  Reader r(watchable_.get());
  // A watcher of the future, one of history and one synced.
  ASSERT_EQ(*r.stream->Watch(1, "f", "", 100, false, false, false), 1);
  ASSERT_EQ(*r.stream->Watch(2, "h", "", 2, false, false, false), 2);
  ASSERT_EQ(*r.stream->Watch(3, "h", "", 0, false, false, false), 3);
  for (int i = 0; i < 5; ++i) leader_->Put("h", absl::StrCat("n", i));  // 5..9
  InstallLeaderSnapshot();
  r.stream->RequestProgressAll();
  ASSERT_TRUE(r.PollUntil([](auto& got) {
    for (const auto& resp : got) {
      if (resp.watch_id == kInvalidWatchId) return true;
    }
    return false;
  }));
  r.Drain(absl::Milliseconds(50));
  EXPECT_THAT(Revs(EventsOf(r.got, 2)), ElementsAre(2, 3, 4, 5, 6, 7, 8, 9));
  EXPECT_THAT(Revs(EventsOf(r.got, 3)), ElementsAre(5, 6, 7, 8, 9));
  EXPECT_TRUE(EventsOf(r.got, 1).empty());
  // The progress response comes once all are synced, at the restored revision.
  EXPECT_EQ(r.got.back().watch_id, kInvalidWatchId);
  EXPECT_EQ(r.got.back().revision, 9);
  EXPECT_EQ(watchable_->SyncedCount(), 3u);
  EXPECT_EQ(r.stream->Rev(), 9);
}

}  // namespace
}  // namespace cppetcd::mvcc
