// WatchableStore over a real mvcc::Store on a temp-dir LMDB backend.
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "cppetcd/mvcc/kvstore.h"
#include "cppetcd/mvcc/watchable_store.h"
#include "cppetcd/storage/backend.h"
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
        (std::filesystem::temp_directory_path() / "store_watch_test.XXXXXX").string();
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

class StoreWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::BackendOptions bo;
    bo.map_size_bytes = 256 << 20;
    // Watch delivery is under test, not durability (the power-loss tests
    // cover the default mode): no fdatasync per commit, so 10,000 puts do
    // not take minutes on a busy disk.
    bo.sync_mode = storage::SyncMode::kNoSync;
    auto b = storage::Backend::Open(dir_.File("db"), bo);
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = std::move(b).value();
    auto s = Store::Open(backend_.get(), StoreOptions());
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(s).value();
    WatchOptions o;
    o.progress_notify_interval = std::chrono::nanoseconds::zero();
    o.stream_queue_capacity = 16;
    o.max_events_per_sync = 100;
    watchable_ = std::make_unique<WatchableStore>(store_.get(), o);
  }
  void TearDown() override {
    watchable_.reset();
    store_.reset();
    backend_.reset();
  }

  // One write request in its own backend txn, as the apply loop does.
  int64_t Apply(const std::function<void(TxnWrite*)>& fn) {
    auto btx = backend_->BeginWrite();
    EXPECT_TRUE(btx.ok());
    auto tw = store_->Write(btx->get());
    fn(tw.get());
    int64_t rev = tw->Rev();
    tw->End();
    EXPECT_TRUE((*btx)->Commit().ok());
    store_->OnCommit();
    return rev;
  }
  int64_t Put(const std::string& k, const std::string& v) {
    return Apply([&](TxnWrite* tw) { tw->Put(k, v, 0); });
  }
  int64_t Delete(const std::string& k, const std::string& end = "") {
    return Apply([&](TxnWrite* tw) { tw->DeleteRange(k, end); });
  }
  void Compact(int64_t rev) {
    auto btx = backend_->BeginWrite();
    ASSERT_TRUE(btx.ok());
    auto f = store_->Compact(btx->get(), rev);
    ASSERT_TRUE(f.ok()) << f.status();
    ASSERT_TRUE((*btx)->Commit().ok());
    store_->OnCommit();
    EXPECT_TRUE(f->get().ok());
  }

  TempDir dir_;
  std::unique_ptr<storage::Backend> backend_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<WatchableStore> watchable_;
};

TEST_F(StoreWatchTest, HistoryThenLiveWithPrevKv) {
  int64_t r1 = Put("a", "1");
  int64_t r2 = Put("a", "2");
  Put("b", "x");
  int64_t r4 = Delete("a");
  Reader r(watchable_.get());
  ASSERT_EQ(*r.stream->Watch(0, "a", "", r1, false, false, /*prev_kv=*/true), 0);
  ASSERT_TRUE(r.PollUntil([](auto& got) { return EventCount(got, 0) == 3; }));
  int64_t r5 = Put("a", "3");
  int64_t r6 = Put("a", "4");
  ASSERT_TRUE(r.PollUntil([](auto& got) { return EventCount(got, 0) == 5; }));
  auto evs = EventsOf(r.got, 0);
  EXPECT_THAT(Revs(evs), ElementsAre(r1, r2, r4, r5, r6));
  EXPECT_FALSE(evs[0].has_prev_kv());
  EXPECT_EQ(evs[1].prev_kv().value(), "1");
  EXPECT_EQ(evs[2].type(), mvccpb::Event::DELETE);
  EXPECT_EQ(evs[2].prev_kv().value(), "2");
  EXPECT_FALSE(evs[3].has_prev_kv());  // re-created
  EXPECT_EQ(evs[4].prev_kv().value(), "3");
  EXPECT_EQ(evs[4].kv().version(), 2);
}

TEST_F(StoreWatchTest, DeleteRangeIsOneResponse) {
  for (const char* k : {"p/1", "p/2", "p/3", "q"}) Put(k, "v");
  Reader r(watchable_.get());
  ASSERT_EQ(*r.stream->Watch(0, "p/", "p0", 0, false, false, false), 0);
  int64_t rev = Delete("a", std::string(1, '\0'));  // every key
  ASSERT_TRUE(r.PollUntil([](auto& got) { return !got.empty(); }));
  ASSERT_EQ(r.got.size(), 1u);
  EXPECT_EQ(r.got[0].revision, rev);
  ASSERT_EQ(r.got[0].events.size(), 3u);
  for (const auto& ev : r.got[0].events) EXPECT_EQ(ev.type(), mvccpb::Event::DELETE);
}

TEST_F(StoreWatchTest, CompactedStartRevision) {
  for (int i = 0; i < 10; ++i) Put("k", std::to_string(i));  // revisions 2..11
  Compact(8);
  Reader r(watchable_.get());
  ASSERT_EQ(*r.stream->Watch(0, "k", "", 4, false, false, false), 0);
  ASSERT_EQ(*r.stream->Watch(0, "k", "", 8, false, false, false), 1);
  ASSERT_TRUE(r.PollUntil([](auto& got) {
    return EventCount(got, 1) == 4 &&
           std::any_of(got.begin(), got.end(), [](auto& x) { return x.watch_id == 0; });
  }));
  for (const auto& resp : r.got) {
    if (resp.watch_id != 0) continue;
    EXPECT_EQ(resp.compact_revision, 8);
    EXPECT_TRUE(resp.canceled);
  }
  EXPECT_THAT(Revs(EventsOf(r.got, 1)), ElementsAre(8, 9, 10, 11));
}

// Writes continue on the "apply thread" while a slow reader and historical
// watchers catch up: each sees every event once, in order.
TEST_F(StoreWatchTest, CatchUpAndSlowReaderWhileWriting) {
  for (int i = 0; i < 200; ++i) Put("w/" + std::to_string(i % 7), "h");  // revisions 2..201
  Reader history(watchable_.get());
  Reader slow(watchable_.get());
  ASSERT_EQ(*history.stream->Watch(0, "w/", "w0", 2, false, false, false), 0);
  ASSERT_EQ(*slow.stream->Watch(0, "w/", "w0", 0, false, false, false), 0);
  constexpr int kWrites = 10000;
  std::thread writer([&] {
    for (int i = 0; i < kWrites; ++i) Put("w/" + std::to_string(i % 7), "live");
  });
  const bool caught_up =
      history.PollUntil([&](auto& got) { return EventCount(got, 0) == 200 + kWrites; });
  writer.join();  // also on failure: a joinable thread would abort the test binary
  ASSERT_TRUE(caught_up);
  auto h = Revs(EventsOf(history.got, 0));
  for (size_t i = 0; i < h.size(); ++i) ASSERT_EQ(h[i], static_cast<int64_t>(i) + 2);
  // The slow reader polls only now.
  ASSERT_TRUE(slow.PollUntil([&](auto& got) { return EventCount(got, 0) == kWrites; }));
  auto s = Revs(EventsOf(slow.got, 0));
  for (size_t i = 0; i < s.size(); ++i) ASSERT_EQ(s[i], static_cast<int64_t>(i) + 202);
  ASSERT_TRUE(slow.PollUntil([&](auto&) { return watchable_->UnsyncedCount() == 0; }));
}

}  // namespace
}  // namespace cppetcd::mvcc
