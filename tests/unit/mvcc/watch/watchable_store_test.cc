#include "cppetcd/mvcc/watchable_store.h"

#include <atomic>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "cppetcd/util/clock.h"
#include "tests/unit/mvcc/watch/fake_source.h"
#include "tests/unit/mvcc/watch/watch_test_util.h"

namespace cppetcd::mvcc {
namespace {

using testing::EventCount;
using testing::EventsOf;
using testing::FakeSource;
using testing::Reader;
using ::testing::ElementsAre;

constexpr char kToEnd[] = "\0";
std::string ToEnd() { return std::string(kToEnd, 1); }

WatchOptions TestOptions() {
  WatchOptions o;
  o.progress_notify_interval = std::chrono::nanoseconds::zero();
  return o;
}

// Keys of the events, in order.
std::vector<std::string> Keys(const std::vector<mvccpb::Event>& evs) {
  std::vector<std::string> out;
  for (const auto& e : evs) out.push_back(e.kv().key());
  return out;
}

std::vector<int64_t> Revs(const std::vector<mvccpb::Event>& evs) {
  std::vector<int64_t> out;
  for (const auto& e : evs) out.push_back(e.kv().mod_revision());
  return out;
}

class WatchableStoreTest : public ::testing::Test {
 protected:
  FakeSource source_;
  std::unique_ptr<WatchableStore> store_ = std::make_unique<WatchableStore>(&source_, TestOptions());
};

TEST_F(WatchableStoreTest, LiveEventsOnKey) {
  Reader r(store_.get());
  auto id = r.stream->Watch(0, "a", "", 0, false, false, false);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(*id, 0);
  EXPECT_EQ(store_->SyncedCount(), 1u);
  int64_t r1 = source_.Put("a", "1");
  source_.Put("b", "x");
  int64_t r3 = source_.Put("a", "2");
  ASSERT_TRUE(r.PollUntil([](auto& got) { return EventCount(got, 0) >= 2; }));
  ASSERT_EQ(r.got.size(), 2u);
  EXPECT_EQ(r.got[0].revision, r1);
  EXPECT_EQ(r.got[1].revision, r3);
  EXPECT_EQ(r.got[1].events[0].kv().value(), "2");
  EXPECT_EQ(r.got[1].events[0].kv().version(), 2);
  EXPECT_FALSE(r.got[0].canceled);
  EXPECT_GE(r.notified.Count(), 1);
}

TEST_F(WatchableStoreTest, RangesPrefixAndFromKey) {
  Reader r(store_.get());
  ASSERT_EQ(*r.stream->Watch(10, "a", "c", 0, false, false, false), 10);
  ASSERT_EQ(*r.stream->Watch(11, "b", ToEnd(), 0, false, false, false), 11);
  ASSERT_EQ(*r.stream->Watch(12, "b", "", 0, false, false, false), 12);
  ASSERT_EQ(*r.stream->Watch(13, "", ToEnd(), 0, false, false, false), 13);  // all keys
  for (const char* k : {"a", "b", "bz", "c", "zz"}) source_.Put(k, "v");
  ASSERT_TRUE(r.PollUntil([](auto& got) { return EventCount(got, 13) == 5; }));
  ASSERT_TRUE(r.PollUntil([](auto& got) { return EventCount(got, 11) == 4; }));
  EXPECT_THAT(Keys(EventsOf(r.got, 10)), ElementsAre("a", "b", "bz"));
  EXPECT_THAT(Keys(EventsOf(r.got, 11)), ElementsAre("b", "bz", "c", "zz"));
  EXPECT_THAT(Keys(EventsOf(r.got, 12)), ElementsAre("b"));
}

TEST_F(WatchableStoreTest, OneRevisionIsOneResponse) {
  Reader r(store_.get());
  ASSERT_TRUE(r.stream->Watch(0, "k", "l", 0, false, false, false).ok());
  int64_t rev = source_.Txn({{false, "k1", "a"}, {false, "k2", "b"}, {false, "x", "c"},
                             {false, "k3", "d"}});
  ASSERT_TRUE(r.PollUntil([](auto& got) { return !got.empty(); }));
  ASSERT_EQ(r.got.size(), 1u);
  EXPECT_EQ(r.got[0].revision, rev);
  EXPECT_THAT(Keys(r.got[0].events), ElementsAre("k1", "k2", "k3"));
}

TEST_F(WatchableStoreTest, CatchUpFromHistoryThenLive) {
  for (int i = 0; i < 20; ++i) source_.Put("k" + std::to_string(i % 3), std::to_string(i));
  // Revisions 2..21 hold the puts; watch k1 from revision 5.
  Reader r(store_.get());
  auto id = r.stream->Watch(0, "k1", "", 5, false, false, false);
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(r.PollUntil([](auto& got) { return EventCount(got, 0) == 6; }));
  EXPECT_THAT(Revs(EventsOf(r.got, 0)), ElementsAre(6, 9, 12, 15, 18, 21));
  // Caught up: now synced and fed live.
  ASSERT_TRUE(r.PollUntil([&](auto&) { return store_->UnsyncedCount() == 0; }));
  int64_t live = source_.Put("k1", "live");
  ASSERT_TRUE(r.PollUntil([](auto& got) { return EventCount(got, 0) == 7; }));
  EXPECT_EQ(EventsOf(r.got, 0).back().kv().mod_revision(), live);
}

TEST_F(WatchableStoreTest, CatchUpBoundaryWhileWritingHasNoGapOrDuplicate) {
  WatchOptions o = TestOptions();
  o.max_events_per_sync = 50;  // many catch-up rounds
  store_.reset();
  store_ = std::make_unique<WatchableStore>(&source_, o);
  for (int i = 0; i < 300; ++i) source_.Put("key", std::to_string(i));
  constexpr int kWrites = 3000;
  std::atomic<bool> go{false};
  std::thread writer([&] {
    while (!go.load()) std::this_thread::yield();
    for (int i = 0; i < kWrites; ++i) source_.Put(i % 2 ? "key" : "other", "w");
  });
  Reader r(store_.get());
  // Watchers start at several historical revisions while writes go on.
  std::vector<int64_t> starts = {2, 100, 250};
  for (size_t i = 0; i < starts.size(); ++i) {
    ASSERT_TRUE(r.stream->Watch(0, "key", "", starts[i], false, false, false).ok());
    if (i == 0) go = true;
  }
  writer.join();
  const int64_t last = source_.Rev();
  ASSERT_TRUE(r.PollUntil([&](auto& got) {
    for (int64_t id = 0; id < 3; ++id) {
      auto evs = EventsOf(got, id);
      if (evs.empty() || evs.back().kv().mod_revision() != last) return false;
    }
    return true;
  }));
  for (int64_t id = 0; id < 3; ++id) {
    auto evs = EventsOf(r.got, id);
    // "key" changes at 2..301, then at every second revision after 301.
    int64_t expect = starts[id];
    for (const auto& ev : evs) {
      ASSERT_EQ(ev.kv().mod_revision(), expect) << "watch " << id;
      ASSERT_EQ(ev.kv().key(), "key");
      expect = expect < 301 ? expect + 1 : expect + 2;
    }
  }
  for (const auto& resp : r.got) {
    for (const auto& ev : resp.events) EXPECT_LE(ev.kv().mod_revision(), resp.revision);
  }
}

TEST_F(WatchableStoreTest, CompactedStartIsCanceledWithCompactRevision) {
  for (int i = 0; i < 10; ++i) source_.Put("a", std::to_string(i));  // revs 2..11
  source_.Compact(6);
  Reader r(store_.get());
  ASSERT_EQ(*r.stream->Watch(0, "a", "", 3, false, false, false), 0);
  // etcd's rule: start == compact revision is still served.
  ASSERT_EQ(*r.stream->Watch(0, "a", "", 6, false, false, false), 1);
  ASSERT_TRUE(r.PollUntil([](auto& got) {
    return !EventsOf(got, 1).empty() && std::any_of(got.begin(), got.end(), [](auto& x) {
      return x.watch_id == 0;
    });
  }));
  std::vector<WatchResponse> w0;
  for (auto& x : r.got) {
    if (x.watch_id == 0) w0.push_back(x);
  }
  ASSERT_EQ(w0.size(), 1u);
  EXPECT_EQ(w0[0].compact_revision, 6);
  EXPECT_EQ(w0[0].revision, 0);  // etcd 3.4 sends no header revision here
  EXPECT_TRUE(w0[0].canceled);
  EXPECT_TRUE(w0[0].events.empty());
  EXPECT_THAT(Revs(EventsOf(r.got, 1)), ElementsAre(6, 7, 8, 9, 10, 11));
  // As etcd's watchStream: the compacted watcher gets no more events but
  // keeps its ID until the client cancels it (found by diff_fuzz_test: the
  // ID was given to the next watch of the stream).
  ASSERT_EQ(*r.stream->Watch(0, "a", "", 0, false, false, false), 2);
  EXPECT_FALSE(r.stream->Watch(1, "b", "", 0, false, false, false).ok());  // 1 is live
  EXPECT_TRUE(r.stream->Cancel(0).ok());
  EXPECT_TRUE(IsWatcherNotExist(r.stream->Cancel(0)));
  EXPECT_TRUE(r.stream->Cancel(1).ok());
}

// etcd's watchStream keeps a compacted watcher's ID until the client
// cancels it, and its compact revision is -1 before any compaction, so a
// start revision below -1 is "compacted" too (found by diff_fuzz_test).
TEST_F(WatchableStoreTest, CompactedWatcherKeepsItsIdUntilCanceled) {
  for (int i = 0; i < 4; ++i) source_.Put("a", std::to_string(i));  // revs 2..5
  Reader r(store_.get());
  ASSERT_EQ(*r.stream->Watch(7, "a", "", -5, false, false, false), 7);
  ASSERT_TRUE(r.PollUntil([](auto& got) {
    return std::any_of(got.begin(), got.end(), [](auto& x) { return x.watch_id == 7; });
  }));
  ASSERT_EQ(r.got.size(), 1u);
  EXPECT_EQ(r.got[0].compact_revision, -1);
  EXPECT_TRUE(r.got[0].canceled);
  EXPECT_TRUE(r.got[0].events.empty());
  EXPECT_FALSE(r.stream->Watch(7, "a", "", 0, false, false, false).ok());  // taken
  EXPECT_TRUE(r.stream->Cancel(7).ok());
  EXPECT_EQ(*r.stream->Watch(7, "a", "", 0, false, false, false), 7);  // free again
}

TEST_F(WatchableStoreTest, Filters) {
  Reader r(store_.get());
  ASSERT_EQ(*r.stream->Watch(1, "a", "", 0, /*no_put=*/true, false, false), 1);
  ASSERT_EQ(*r.stream->Watch(2, "a", "", 0, false, /*no_delete=*/true, false), 2);
  ASSERT_EQ(*r.stream->Watch(3, "a", "", 0, false, false, false), 3);
  source_.Put("a", "1");
  source_.Delete("a");
  source_.Put("a", "2");
  ASSERT_TRUE(r.PollUntil([](auto& got) { return EventCount(got, 3) == 3; }));
  // Watcher 1 and 2 had their last event before watcher 3's last one.
  auto del = EventsOf(r.got, 1);
  ASSERT_EQ(del.size(), 1u);
  EXPECT_EQ(del[0].type(), mvccpb::Event::DELETE);
  auto put = EventsOf(r.got, 2);
  ASSERT_EQ(put.size(), 2u);
  EXPECT_EQ(put[0].type(), mvccpb::Event::PUT);
  EXPECT_EQ(put[1].type(), mvccpb::Event::PUT);
  for (const auto& resp : r.got) EXPECT_FALSE(resp.events.empty());
}

TEST_F(WatchableStoreTest, FiltersInCatchUp) {
  source_.Put("a", "1");
  source_.Delete("a");
  source_.Put("a", "2");
  Reader r(store_.get());
  ASSERT_EQ(*r.stream->Watch(1, "a", "", 1, true, false, false), 1);
  ASSERT_EQ(*r.stream->Watch(2, "a", "", 1, false, true, false), 2);
  ASSERT_TRUE(r.PollUntil(
      [](auto& got) { return EventCount(got, 1) == 1 && EventCount(got, 2) == 2; }));
  EXPECT_EQ(EventsOf(r.got, 1)[0].type(), mvccpb::Event::DELETE);
}

void ExpectPrevKvs(const std::vector<mvccpb::Event>& evs) {
  ASSERT_EQ(evs.size(), 4u);
  EXPECT_FALSE(evs[0].has_prev_kv());  // creation
  ASSERT_TRUE(evs[1].has_prev_kv());
  EXPECT_EQ(evs[1].prev_kv().value(), "1");
  ASSERT_TRUE(evs[2].has_prev_kv());  // delete: the last value
  EXPECT_EQ(evs[2].type(), mvccpb::Event::DELETE);
  EXPECT_EQ(evs[2].prev_kv().value(), "2");
  EXPECT_EQ(evs[2].prev_kv().mod_revision(), evs[1].kv().mod_revision());
  EXPECT_FALSE(evs[3].has_prev_kv());  // re-creation
}

TEST_F(WatchableStoreTest, PrevKvLive) {
  Reader r(store_.get());
  ASSERT_EQ(*r.stream->Watch(1, "a", "", 0, false, false, /*prev_kv=*/true), 1);
  ASSERT_EQ(*r.stream->Watch(2, "a", "", 0, false, false, false), 2);
  source_.Put("a", "1");
  source_.Put("a", "2");
  source_.Delete("a");
  source_.Put("a", "3");
  ASSERT_TRUE(r.PollUntil(
      [](auto& got) { return EventCount(got, 1) == 4 && EventCount(got, 2) == 4; }));
  ExpectPrevKvs(EventsOf(r.got, 1));
  for (const auto& ev : EventsOf(r.got, 2)) EXPECT_FALSE(ev.has_prev_kv());
}

TEST_F(WatchableStoreTest, PrevKvCatchUp) {
  source_.Put("a", "1");
  source_.Put("a", "2");
  source_.Delete("a");
  source_.Put("a", "3");
  Reader r(store_.get());
  ASSERT_EQ(*r.stream->Watch(1, "a", "", 2, false, false, true), 1);
  ASSERT_TRUE(r.PollUntil([](auto& got) { return EventCount(got, 1) == 4; }));
  ExpectPrevKvs(EventsOf(r.got, 1));
}

// Many watchers on overlapping ranges, checked against a naive model.
TEST_F(WatchableStoreTest, ManyOverlappingWatchersMatchModel) {
  std::mt19937 rng(7);
  auto key = [&] { return std::string(1, static_cast<char>('a' + rng() % 12)); };
  struct W {
    std::string key, end;
    int64_t start;
  };
  std::vector<W> ws;
  Reader r(store_.get());
  for (int i = 0; i < 60; ++i) source_.Put(key(), "v");
  for (int i = 0; i < 80; ++i) {
    W w;
    w.key = key();
    switch (rng() % 3) {
      case 0: break;  // single key
      case 1: w.end = ToEnd(); break;
      default:
        w.end = key();
        if (w.end <= w.key) w.end = w.key + "~";
    }
    w.start = (rng() % 2) ? 0 : 2 + rng() % 60;
    auto id = r.stream->Watch(0, w.key, w.end, w.start, false, false, false);
    ASSERT_TRUE(id.ok());
    ASSERT_EQ(*id, i);
    if (w.start == 0) w.start = source_.Rev() + 1;  // nothing written in between
    ws.push_back(w);
  }
  for (int i = 0; i < 200; ++i) {
    if (rng() % 5 == 0) {
      source_.Delete(key());
    } else {
      source_.Put(key(), "v" + std::to_string(i));
    }
  }
  const int64_t last = source_.Rev();
  // Expected events from the full history (revision 2..last).
  std::vector<mvccpb::Event> history;
  ASSERT_TRUE(source_.ReadEvents(2, last, 0, [&](const auto& ev) { history.push_back(ev); }).ok());
  std::vector<std::vector<int64_t>> want(ws.size());
  for (size_t i = 0; i < ws.size(); ++i) {
    for (const auto& ev : history) {
      const auto& k = ev.kv().key();
      bool in = ws[i].end.empty() ? k == ws[i].key
                                  : k >= ws[i].key && (ws[i].end == ToEnd() || k < ws[i].end);
      if (in && ev.kv().mod_revision() >= ws[i].start) want[i].push_back(ev.kv().mod_revision());
    }
  }
  ASSERT_TRUE(r.PollUntil([&](auto& got) {
    for (size_t i = 0; i < ws.size(); ++i) {
      if (EventCount(got, i) < want[i].size()) return false;
    }
    return true;
  }));
  for (size_t i = 0; i < ws.size(); ++i) {
    EXPECT_EQ(Revs(EventsOf(r.got, i)), want[i]) << "watcher " << i;
  }
}

// A reader that never polls while 10k writes happen: the writer is never
// blocked, and once it reads, every event arrives exactly once in order.
TEST_F(WatchableStoreTest, SlowConsumerNeverBlocksWriterAndLosesNothing) {
  WatchOptions o = TestOptions();
  o.stream_queue_capacity = 16;
  o.max_events_per_sync = 500;
  store_.reset();
  store_ = std::make_unique<WatchableStore>(&source_, o);
  Reader slow(store_.get());
  Reader fast(store_.get());
  ASSERT_TRUE(slow.stream->Watch(0, "k", ToEnd(), 0, false, false, false).ok());
  ASSERT_TRUE(fast.stream->Watch(0, "k", ToEnd(), 0, false, false, false).ok());
  constexpr int kWrites = 10000;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < kWrites; ++i) source_.Put("k" + std::to_string(i % 100), "v");
    done = true;
  });
  // The fast reader keeps up meanwhile; the slow one never polls.
  ASSERT_TRUE(fast.PollUntil([&](auto& got) { return EventCount(got, 0) == kWrites; }));
  writer.join();
  ASSERT_TRUE(done);
  EXPECT_GE(store_->UnsyncedCount(), 1u);  // the slow watcher became a victim
  ASSERT_TRUE(slow.PollUntil([&](auto& got) { return EventCount(got, 0) >= kWrites; }));
  auto evs = EventsOf(slow.got, 0);
  ASSERT_EQ(evs.size(), static_cast<size_t>(kWrites));
  for (int i = 0; i < kWrites; ++i) {
    ASSERT_EQ(evs[i].kv().mod_revision(), i + 2) << i;
  }
  ASSERT_TRUE(slow.PollUntil([&](auto&) { return store_->UnsyncedCount() == 0; }));
  EXPECT_EQ(store_->SyncedCount(), 2u);
}

TEST_F(WatchableStoreTest, CancelStopsEventsAndDropsQueued) {
  Reader r(store_.get());
  ASSERT_EQ(*r.stream->Watch(0, "a", "", 0, false, false, false), 0);
  ASSERT_EQ(*r.stream->Watch(0, "a", "", 0, false, false, false), 1);
  source_.Put("a", "queued");  // queued for both, not yet polled
  ASSERT_TRUE(r.stream->Cancel(0).ok());
  EXPECT_TRUE(IsWatcherNotExist(r.stream->Cancel(0)));
  EXPECT_TRUE(IsWatcherNotExist(r.stream->Cancel(42)));
  source_.Put("a", "after");
  ASSERT_TRUE(r.PollUntil([](auto& got) { return EventCount(got, 1) == 2; }));
  EXPECT_EQ(EventCount(r.got, 0), 0u);
  EXPECT_EQ(store_->SyncedCount(), 1u);
}

TEST_F(WatchableStoreTest, WatchIdsAndDuplicates) {
  Reader r(store_.get());
  EXPECT_EQ(*r.stream->Watch(0, "a", "", 0, false, false, false), 0);
  EXPECT_EQ(*r.stream->Watch(2, "a", "", 0, false, false, false), 2);
  EXPECT_EQ(*r.stream->Watch(0, "a", "", 0, false, false, false), 1);
  EXPECT_EQ(*r.stream->Watch(0, "a", "", 0, false, false, false), 3);  // skips 2
  auto dup = r.stream->Watch(2, "b", "", 0, false, false, false);
  ASSERT_FALSE(dup.ok());
  EXPECT_TRUE(IsWatcherDuplicateID(dup.status()));
  EXPECT_EQ(dup.status().message(), "mvcc: duplicate watch ID provided on the WatchStream");
  auto empty = r.stream->Watch(0, "b", "a", 0, false, false, false);
  EXPECT_TRUE(IsEmptyWatcherRange(empty.status()));
  EXPECT_TRUE(IsEmptyWatcherRange(r.stream->Watch(0, "b", "b", 0, false, false, false).status()));
  // Ids are per stream.
  Reader other(store_.get());
  EXPECT_EQ(*other.stream->Watch(0, "a", "", 0, false, false, false), 0);
}

TEST_F(WatchableStoreTest, RequestProgressOnlyWhenSynced) {
  WatchOptions o = TestOptions();
  o.stream_queue_capacity = 2;
  store_.reset();
  store_ = std::make_unique<WatchableStore>(&source_, o);
  Reader r(store_.get());
  ASSERT_EQ(*r.stream->Watch(0, "a", "", 0, false, false, false), 0);
  int64_t rev = source_.Put("b", "x");
  r.stream->RequestProgress(0);
  r.stream->RequestProgress(99);  // unknown: nothing
  ASSERT_TRUE(r.PollUntil([](auto& got) { return !got.empty(); }));
  ASSERT_EQ(r.got.size(), 1u);
  EXPECT_EQ(r.got[0].watch_id, 0);
  EXPECT_EQ(r.got[0].revision, rev);
  EXPECT_TRUE(r.got[0].events.empty());
  EXPECT_EQ(r.stream->Rev(), rev);

  // Fill the queue so the watcher becomes a victim: no progress for it.
  for (int i = 0; i < 3; ++i) source_.Put("a", "v");
  ASSERT_EQ(store_->UnsyncedCount(), 1u);
  r.stream->RequestProgress(0);
  r.got.clear();
  ASSERT_TRUE(r.PollUntil([](auto& got) { return EventCount(got, 0) == 3; }));
  for (const auto& resp : r.got) EXPECT_FALSE(resp.events.empty());
}

TEST_F(WatchableStoreTest, RequestProgressAllWaitsForSync) {
  WatchOptions o = TestOptions();
  o.stream_queue_capacity = 1;
  store_.reset();
  store_ = std::make_unique<WatchableStore>(&source_, o);
  Reader r(store_.get());
  ASSERT_EQ(*r.stream->Watch(0, "a", "", 0, false, false, false), 0);
  source_.Put("a", "1");
  source_.Put("a", "2");  // queue full: victim
  int64_t last = source_.Put("z", "3");
  ASSERT_EQ(store_->UnsyncedCount(), 1u);
  r.stream->RequestProgressAll();
  ASSERT_TRUE(r.PollUntil([](auto& got) {
    return !got.empty() && got.back().watch_id == kInvalidWatchId;
  }));
  // The stream-wide progress comes after both events, at the last revision.
  EXPECT_EQ(EventCount(r.got, 0), 2u);
  EXPECT_EQ(r.got.back().revision, last);
  EXPECT_TRUE(r.got.back().events.empty());
  // Synced stream: immediate.
  r.got.clear();
  r.stream->RequestProgressAll();
  auto now = r.stream->Poll(0);
  ASSERT_EQ(now.size(), 1u);
  EXPECT_EQ(now[0].watch_id, kInvalidWatchId);
  EXPECT_EQ(now[0].revision, last);
}

TEST_F(WatchableStoreTest, PeriodicProgressNotifyOnFakeClock) {
  testing::TestClock clock;
  // The store's sync thread reads the clock: the store goes before it, on
  // every way out (TSan saw the clock destroyed under a running store).
  absl::Cleanup stop_store = [this] { store_.reset(); };
  WatchOptions o = TestOptions();
  o.clock = &clock;
  o.progress_notify_interval = std::chrono::minutes(10);
  o.sync_interval = std::chrono::milliseconds(5);
  store_.reset();
  store_ = std::make_unique<WatchableStore>(&source_, o);
  Reader r(store_.get());
  ASSERT_EQ(*r.stream->Watch(0, "a", "", 0, false, false, false, /*progress_notify=*/true), 0);
  ASSERT_EQ(*r.stream->Watch(1, "a", "", 0, false, false, false, /*progress_notify=*/false), 1);
  int64_t rev = source_.Put("b", "x");
  clock.Advance(std::chrono::minutes(12));  // past interval + 10% jitter
  ASSERT_TRUE(r.PollUntil([](auto& got) { return !got.empty(); }));
  ASSERT_EQ(r.got.size(), 1u);
  EXPECT_EQ(r.got[0].watch_id, 0);
  EXPECT_EQ(r.got[0].revision, rev);
  EXPECT_TRUE(r.got[0].events.empty());

  // An event in the period elides the next notification.
  r.got.clear();
  source_.Put("a", "y");
  ASSERT_TRUE(r.PollUntil([](auto& got) { return got.size() == 2; }));
  r.stream->ProgressNotifyAll();  // manual tick: watcher 0 had events
  int64_t sentinel = source_.Put("a", "z");
  ASSERT_TRUE(r.PollUntil([&](auto& got) { return got.back().revision == sentinel && got.size() >= 4; }));
  for (const auto& resp : r.got) EXPECT_FALSE(resp.events.empty());
}

TEST_F(WatchableStoreTest, CloseCancelsEverything) {
  Reader r(store_.get());
  ASSERT_TRUE(r.stream->Watch(0, "a", "", 0, false, false, false).ok());
  ASSERT_TRUE(r.stream->Watch(0, "a", "", 1, false, false, false).ok());
  r.stream->Close();
  EXPECT_EQ(store_->SyncedCount() + store_->UnsyncedCount(), 0u);
  int before = r.notified.Count();
  source_.Put("a", "x");
  EXPECT_TRUE(r.stream->Poll(0).empty());
  EXPECT_EQ(r.notified.Count(), before);
  EXPECT_TRUE(IsWatchStreamClosed(r.stream->Watch(0, "a", "", 0, false, false, false).status()));
  r.stream.reset();
}

TEST_F(WatchableStoreTest, NotifyFiresOnEmptyToNonEmpty) {
  Reader r(store_.get());
  ASSERT_TRUE(r.stream->Watch(0, "a", "", 0, false, false, false).ok());
  source_.Put("a", "1");
  EXPECT_EQ(r.notified.Count(), 1);
  source_.Put("a", "2");
  EXPECT_EQ(r.notified.Count(), 1);  // queue was not empty
  EXPECT_EQ(r.stream->Poll(1).size(), 1u);
  EXPECT_EQ(r.stream->Poll(0).size(), 1u);
  source_.Put("a", "3");
  EXPECT_EQ(r.notified.Count(), 2);
}

TEST_F(WatchableStoreTest, FutureStartRevision) {
  Reader r(store_.get());
  int64_t cur = source_.Rev();
  ASSERT_TRUE(r.stream->Watch(0, "a", "", cur + 3, false, false, false).ok());
  for (int i = 0; i < 4; ++i) source_.Put("a", std::to_string(i));
  ASSERT_TRUE(r.PollUntil([](auto& got) { return EventCount(got, 0) == 2; }));
  EXPECT_THAT(Revs(EventsOf(r.got, 0)), ElementsAre(cur + 3, cur + 4));
}

}  // namespace
}  // namespace cppetcd::mvcc

namespace cppetcd::mvcc {
namespace {

TEST(WatchableStoreLifetimeTest, StreamMayOutliveStore) {
  FakeSource source;
  auto store = std::make_unique<WatchableStore>(&source, TestOptions());
  Reader r(store.get());
  ASSERT_TRUE(r.stream->Watch(0, "a", "", 0, false, false, false).ok());
  source.Put("a", "1");
  store.reset();
  source.Put("a", "2");  // no observer any more
  auto got = r.stream->Poll(0);
  ASSERT_EQ(got.size(), 1u);  // what was queued stays readable
  EXPECT_TRUE(IsWatchStreamClosed(r.stream->Watch(0, "a", "", 0, false, false, false).status()));
  EXPECT_TRUE(IsWatcherNotExist(r.stream->Cancel(0)));
  r.stream->RequestProgressAll();
  EXPECT_TRUE(r.stream->Poll(0).empty());
  r.stream.reset();
}

}  // namespace
}  // namespace cppetcd::mvcc

namespace cppetcd::mvcc {
namespace {

// Watchers canceled while the catch-up thread may hold them, and streams
// closed while writes go on: no response after Cancel, nothing left behind.
TEST(WatchableStoreRaceTest, CancelAndCloseDuringCatchUpAndWrites) {
  FakeSource source;
  WatchOptions o = TestOptions();
  o.max_events_per_sync = 20;
  auto store = std::make_unique<WatchableStore>(&source, o);
  for (int i = 0; i < 300; ++i) source.Put("k" + std::to_string(i % 5), "v");
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; i < 3000 && !stop.load(); ++i) source.Put("k" + std::to_string(i % 5), "w");
  });
  for (int round = 0; round < 30; ++round) {
    Reader r(store.get());
    std::vector<int64_t> ids;
    for (int i = 0; i < 8; ++i) {
      auto id = r.stream->Watch(0, "k", ToEnd(), 2 + (round * 7 + i) % 250, false, false, i % 2);
      ASSERT_TRUE(id.ok());
      ids.push_back(*id);
    }
    for (auto& x : r.stream->Poll(0)) r.got.push_back(std::move(x));
    for (size_t i = 0; i < ids.size(); i += 2) ASSERT_TRUE(r.stream->Cancel(ids[i]).ok());
    // Canceled ids never appear after their Cancel returned.
    for (auto& x : r.stream->Poll(0)) {
      EXPECT_NE(x.watch_id % 2, 0) << "response for canceled watch " << x.watch_id;
    }
    if (round % 2) r.stream->Close();
  }
  stop = true;
  writer.join();
  EXPECT_EQ(store->SyncedCount() + store->UnsyncedCount(), 0u);
}

}  // namespace
}  // namespace cppetcd::mvcc

namespace cppetcd::mvcc {
namespace {

// A byte budget makes a reader of large values a victim before the response
// count does; it still gets every event once, in order.
TEST(WatchableStoreBytesTest, ByteBudgetBoundsQueuedMemory) {
  FakeSource source;
  WatchOptions o = TestOptions();
  o.stream_queue_bytes = 4096;
  auto store = std::make_unique<WatchableStore>(&source, o);
  Reader r(store.get());
  ASSERT_TRUE(r.stream->Watch(0, "big", "", 0, false, false, false).ok());
  const std::string value(1000, 'x');
  for (int i = 0; i < 50; ++i) source.Put("big", value);
  EXPECT_EQ(store->UnsyncedCount(), 1u);  // victim after about 4 responses
  ASSERT_TRUE(r.PollUntil([](auto& got) { return EventCount(got, 0) == 50; }));
  auto revs = Revs(EventsOf(r.got, 0));
  for (int i = 0; i < 50; ++i) ASSERT_EQ(revs[i], i + 2);
  // One response larger than the budget still passes through.
  const std::string huge(10000, 'y');
  ASSERT_TRUE(r.PollUntil([&](auto&) { return store->UnsyncedCount() == 0; }));
  int64_t rev = source.Put("big", huge);
  ASSERT_TRUE(r.PollUntil([&](auto& got) { return got.back().revision == rev; }));
  EXPECT_EQ(r.got.back().events[0].kv().value().size(), huge.size());
}

// Resource bound: watchers per stream, by count and by the bytes of their
// keys. Past either, Watch fails with ErrTooManyWatchers; a cancel makes
// room again, other streams are not affected, and the watchers in place
// still get their events.
TEST(WatchableStoreLimitsTest, WatchersPerStreamAreBounded) {
  FakeSource source;
  WatchOptions o = TestOptions();
  o.max_watchers_per_stream = 100;
  o.max_watch_range_bytes_per_stream = 64 << 10;
  auto store = std::make_unique<WatchableStore>(&source, o);
  Reader r(store.get());
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(r.stream->Watch(0, "k" + std::to_string(i), "", 0, false, false, false).ok());
  }
  for (int i = 0; i < 1000; ++i) {
    auto past = r.stream->Watch(0, "x", "", 0, false, false, false);
    ASSERT_TRUE(IsTooManyWatchers(past.status())) << past.status();
  }
  EXPECT_EQ(ErrTooManyWatchers().message(), "mvcc: too many watchers on the WatchStream");
  EXPECT_EQ(store->SyncedCount(), 100u);
  ASSERT_TRUE(r.stream->Cancel(7).ok());
  EXPECT_TRUE(r.stream->Watch(0, "again", "", 0, false, false, false).ok());
  Reader other(store.get());
  EXPECT_TRUE(other.stream->Watch(0, "k1", "", 0, false, false, false).ok());
  const int64_t rev = source.Put("k1", "v");
  ASSERT_TRUE(r.PollUntil([&](auto& got) { return !got.empty() && got.back().revision == rev; }));

  // Bytes: 40 KiB keys, two of them exceed 64 KiB; the first is always let in.
  Reader big(store.get());
  const std::string key(40 << 10, 'b');
  ASSERT_TRUE(big.stream->Watch(0, key, "", 0, false, false, false).ok());
  EXPECT_TRUE(IsTooManyWatchers(big.stream->Watch(0, key + "2", "", 0, false, false, false).status()));
  ASSERT_TRUE(big.stream->Cancel(0).ok());
  EXPECT_TRUE(big.stream->Watch(0, key + "2", "", 0, false, false, false).ok());
}

// Start revisions and watch IDs at the edges of int64 (the API passes them
// through unchecked, as etcd does): a watcher from INT64_MAX sees nothing
// and stays synced, one from -1 is caught up from the first revision, one
// from INT64_MIN is below etcd's initial compact revision (-1) and is
// canceled as compacted; IDs may be negative or INT64_MAX; nothing
// overflows.
TEST(WatchableStoreLimitsTest, EdgeRevisionsAndIds) {
  FakeSource source;
  auto store = std::make_unique<WatchableStore>(&source, TestOptions());
  const int64_t first = source.Put("k", "v1");
  Reader r(store.get());
  ASSERT_EQ(*r.stream->Watch(INT64_MAX, "k", "", INT64_MAX, false, false, false), INT64_MAX);
  ASSERT_EQ(*r.stream->Watch(-7, "k", "", -1, false, false, false), -7);
  ASSERT_EQ(*r.stream->Watch(0, "k", "", INT64_MIN, false, false, false), 0);
  const int64_t second = source.Put("k", "v2");
  ASSERT_TRUE(r.PollUntil([&](auto& got) {
    return EventCount(got, -7) == 2 &&
           std::any_of(got.begin(), got.end(), [](auto& x) { return x.watch_id == 0 && x.canceled; });
  }));
  EXPECT_EQ(Revs(EventsOf(r.got, -7)), (std::vector<int64_t>{first, second}));
  EXPECT_EQ(EventCount(r.got, 0), 0u);
  for (const auto& resp : r.got) {
    if (resp.watch_id == 0) {
      EXPECT_EQ(resp.compact_revision, -1);
    }
  }
  EXPECT_EQ(EventCount(r.got, INT64_MAX), 0u);
  r.stream->RequestProgress(INT64_MAX);
  ASSERT_TRUE(r.PollUntil([&](auto& got) {
    for (const auto& resp : got) {
      if (resp.watch_id == INT64_MAX && resp.events.empty()) return true;
    }
    return false;
  }));
  EXPECT_TRUE(r.stream->Cancel(INT64_MAX).ok());
}

// Resource bound: a catch-up round keeps at most about stream_queue_bytes
// of events (plus one revision), so catching up a watcher of large values
// never reads the whole backlog into memory; nothing is lost or repeated.
TEST(WatchableStoreBytesTest, CatchUpRoundIsBoundedInBytes) {
  FakeSource source;
  WatchOptions o = TestOptions();
  o.stream_queue_bytes = 4096;
  auto store = std::make_unique<WatchableStore>(&source, o);
  const std::string value(1000, 'x');
  for (int i = 0; i < 50; ++i) source.Put("big", value);
  Reader r(store.get());
  ASSERT_TRUE(r.stream->Watch(0, "big", "", 1, false, false, false).ok());
  ASSERT_TRUE(r.PollUntil([](auto& got) { return EventCount(got, 0) == 50; }));
  auto revs = Revs(EventsOf(r.got, 0));
  for (int i = 0; i < 50; ++i) ASSERT_EQ(revs[i], i + 2);
  for (const auto& resp : r.got) {
    size_t bytes = 0;
    for (const auto& ev : resp.events) bytes += ev.kv().value().size();
    EXPECT_LE(bytes, 4096u + value.size()) << "a catch-up response of " << resp.events.size()
                                           << " events";
  }
}

}  // namespace
}  // namespace cppetcd::mvcc
