#include "cppetcd/mvcc/kvstore.h"

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cppetcd::mvcc {
namespace {

using ::testing::ElementsAre;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kvstore_test.XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

const std::string kAll(1, '\0');

// A recording lease observer.
class FakeLessor : public LeaseObserver {
 public:
  void Attach(std::string_view key, int64_t lease) override {
    log.push_back("attach " + std::string(key) + " " + std::to_string(lease));
  }
  void Detach(std::string_view key, int64_t lease) override {
    log.push_back("detach " + std::string(key) + " " + std::to_string(lease));
  }
  std::vector<std::string> log;
};

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen(StoreOptions options = StoreOptions()) {
    store_.reset();
    backend_.reset();
    storage::BackendOptions bo;
    bo.map_size_bytes = 256 << 20;
    auto b = storage::Backend::Open(dir_.File("db"), bo);
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = std::move(b).value();
    if (options.lease_observer == nullptr) options.lease_observer = &lessor_;
    auto s = Store::Open(backend_.get(), std::move(options));
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(s).value();
  }

  // Runs fn in one TxnWrite inside its own backend txn; commits, publishes.
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
  int64_t Put(const std::string& k, const std::string& v, int64_t lease = 0) {
    return Apply([&](TxnWrite* tw) { tw->Put(k, v, lease); });
  }
  int64_t Delete(const std::string& k, const std::string& end = "") {
    return Apply([&](TxnWrite* tw) { tw->DeleteRange(k, end); });
  }
  absl::StatusOr<std::shared_future<absl::Status>> Compact(int64_t rev) {
    auto btx = backend_->BeginWrite();
    EXPECT_TRUE(btx.ok());
    auto f = store_->Compact(btx->get(), rev);
    EXPECT_TRUE((*btx)->Commit().ok());
    store_->OnCommit();
    return f;
  }
  uint64_t KeyBucketEntries() {
    auto r = backend_->BeginRead();
    return *(*r)->Count(storage::kKeyBucket);
  }
  RangeResult MustRange(const std::string& k, const std::string& end, RangeOptions o = {}) {
    auto r = store_->Range(k, end, o);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *std::move(r) : RangeResult{};
  }

  TempDir dir_;
  FakeLessor lessor_;
  std::unique_ptr<storage::Backend> backend_;
  std::unique_ptr<Store> store_;
};

std::vector<std::string> Keys(const RangeResult& r) {
  std::vector<std::string> out;
  for (const auto& kv : r.kvs) out.push_back(kv.key());
  return out;
}

TEST_F(StoreTest, EmptyStoreIsAtRevisionOne) {
  EXPECT_EQ(store_->Rev(), 1);
  EXPECT_EQ(store_->CompactRev(), -1);
  auto r = MustRange("", kAll);
  EXPECT_EQ(r.count, 0);
  EXPECT_EQ(r.rev, 1);
}

TEST_F(StoreTest, RangeTable) {
  EXPECT_EQ(Put("foo", "bar"), 2);
  EXPECT_EQ(Put("foo1", "bar1"), 3);
  EXPECT_EQ(Put("foo2", "bar2"), 4);
  EXPECT_EQ(Put("foo", "bar5"), 5);
  EXPECT_EQ(Put("zoo", "z"), 6);
  using K = std::vector<std::string>;
  struct Case {
    std::string key, end;
    RangeOptions opts;
    K keys;
    int64_t count;
  };
  std::vector<Case> cases = {
      {"foo", "", {}, K{"foo"}, 1},
      {"fo", "", {}, K{}, 0},
      {"foo", "foo3", {}, K{"foo", "foo1", "foo2"}, 3},
      {"foo1", kAll, {}, K{"foo1", "foo2", "zoo"}, 3},
      {"", kAll, {}, K{"foo", "foo1", "foo2", "zoo"}, 4},
      {"foo", "foo3", {.limit = 1}, K{"foo"}, 3},
      {"foo", "foo3", {.limit = 10}, K{"foo", "foo1", "foo2"}, 3},
      {"foo", "foo3", {.count_only = true}, K{}, 3},
      {"foo", "foo3", {.limit = 1, .count_only = true}, K{}, 3},
      {"foo", "foo3", {.rev = 3}, K{"foo", "foo1"}, 2},
      {"foo", "foo3", {.rev = 2}, K{"foo"}, 1},
      {"foo", "foo3", {.rev = 1}, K{}, 0},
      {"", kAll, {.rev = 6}, K{"foo", "foo1", "foo2", "zoo"}, 4},
      {"zoo", "foo", {}, K{}, 0},
  };
  for (const auto& c : cases) {
    auto r = store_->Range(c.key, c.end, c.opts);
    ASSERT_TRUE(r.ok()) << c.key << ".." << c.end;
    EXPECT_EQ(Keys(*r), c.keys) << c.key << ".." << c.end << " rev " << c.opts.rev;
    EXPECT_EQ(r->count, c.count) << c.key << ".." << c.end << " rev " << c.opts.rev;
    EXPECT_EQ(r->rev, 6);
  }
  auto at2 = MustRange("foo", "", {.rev = 2});
  ASSERT_EQ(at2.kvs.size(), 1u);
  EXPECT_EQ(at2.kvs[0].value(), "bar");
  auto now = MustRange("foo", "");
  EXPECT_EQ(now.kvs[0].value(), "bar5");
  EXPECT_TRUE(IsFutureRev(store_->Range("foo", "", {.rev = 7}).status()));
  EXPECT_EQ(store_->Range("foo", "", {.rev = 7}).status().message(),
            "mvcc: required revision is a future revision");
}

// RangeStored hands out the very records Range parses, under the same
// limit, count and revision rules; a malformed record is DataLoss for both.
TEST_F(StoreTest, RangeStoredGivesTheRecordsRangeParses) {
  Put("foo", "bar");
  Put("foo1", "bar1");
  Put("foo2", "bar2");
  Put("foo", "bar5");
  const std::vector<RangeOptions> options = {
      {}, {.limit = 2}, {.rev = 3}, {.count_only = true}, {.limit = 1, .rev = 4}};
  for (const RangeOptions& o : options) {
    SCOPED_TRACE(o.limit * 100 + o.rev * 10 + (o.count_only ? 1 : 0));
    std::vector<mvccpb::KeyValue> got;
    auto r = store_->RangeStored("foo", "foo3", o, [&](std::string_view record) {
      mvccpb::KeyValue kv;
      EXPECT_TRUE(kv.ParseFromArray(record.data(), static_cast<int>(record.size())));
      got.push_back(kv);
    });
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->kvs.empty());
    auto want = MustRange("foo", "foo3", o);
    EXPECT_EQ(r->count, want.count);
    EXPECT_EQ(r->rev, want.rev);
    ASSERT_EQ(got.size(), want.kvs.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].SerializeAsString(), want.kvs[i].SerializeAsString());
    }
  }
  EXPECT_TRUE(IsFutureRev(store_->RangeStored("foo", "", {.rev = 9}, [](std::string_view) {})
                              .status()));

  // foo1's record (revision 3) is overwritten with bytes that are no KeyValue.
  {
    auto btx = backend_->BeginWrite();
    ASSERT_TRUE(btx.ok());
    ASSERT_TRUE((*btx)->Put(storage::kKeyBucket, RevisionKey(Revision{3, 0}), "\x0a\xff\xff").ok());
    ASSERT_TRUE((*btx)->Commit().ok());
  }
  int visited = 0;
  auto bad = store_->RangeStored("foo", "foo3", {}, [&](std::string_view) { ++visited; });
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss) << bad.status();
  EXPECT_EQ(visited, 1);  // foo, then the bad record stops the range
  EXPECT_EQ(store_->Range("foo", "foo3", {}).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(StoreTest, VersionsAcrossPutDeleteRecreate) {
  Put("a", "1");      // 2
  Put("a", "2");      // 3
  Delete("a");        // 4
  EXPECT_EQ(store_->Rev(), 4);
  EXPECT_EQ(Delete("a"), 4);  // deleting nothing does not advance the revision
  EXPECT_EQ(store_->Rev(), 4);
  Put("a", "3", 0);   // 5
  Put("a", "4", 0);   // 6
  struct Case {
    int64_t rev;
    bool found;
    int64_t create, mod, version;
    std::string value;
  };
  std::vector<Case> cases = {
      {2, true, 2, 2, 1, "1"}, {3, true, 2, 3, 2, "2"}, {4, false, 0, 0, 0, ""},
      {5, true, 5, 5, 1, "3"}, {6, true, 5, 6, 2, "4"},
  };
  for (const auto& c : cases) {
    auto r = MustRange("a", "", {.rev = c.rev});
    ASSERT_EQ(r.kvs.size(), c.found ? 1u : 0u) << c.rev;
    if (!c.found) continue;
    EXPECT_EQ(r.kvs[0].create_revision(), c.create) << c.rev;
    EXPECT_EQ(r.kvs[0].mod_revision(), c.mod) << c.rev;
    EXPECT_EQ(r.kvs[0].version(), c.version) << c.rev;
    EXPECT_EQ(r.kvs[0].value(), c.value) << c.rev;
  }
}

TEST_F(StoreTest, TxnSeesItsOwnWritesAndSharesOneRevision) {
  Put("k", "old");  // 2
  auto btx = *backend_->BeginWrite();
  auto tw = store_->Write(btx.get());
  auto before = tw->Range("k", "", {});
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->kvs[0].value(), "old");
  EXPECT_EQ(before->rev, 2);
  EXPECT_EQ(tw->Rev(), 2);
  tw->Put("k", "new", 0);
  tw->Put("k2", "v2", 0);
  EXPECT_EQ(tw->Rev(), 3);
  auto after = tw->Range("", kAll, {});
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->rev, 3);
  ASSERT_EQ(after->kvs.size(), 2u);
  EXPECT_EQ(after->kvs[0].value(), "new");
  EXPECT_EQ(after->kvs[0].version(), 2);
  EXPECT_EQ(after->kvs[1].mod_revision(), 3);
  EXPECT_TRUE(IsFutureRev(tw->Range("k", "", {.rev = 4}).status()));
  EXPECT_EQ(tw->DeleteRange("k", "l"), 2);  // k and k2
  auto gone = tw->Range("", kAll, {});
  EXPECT_EQ(gone->count, 0);
  const auto& ch = tw->Changes();
  ASSERT_EQ(ch.size(), 4u);
  EXPECT_EQ(ch[0].type(), mvccpb::Event::PUT);
  EXPECT_EQ(ch[0].kv().key(), "k");
  EXPECT_EQ(ch[2].type(), mvccpb::Event::DELETE);
  EXPECT_EQ(ch[2].kv().mod_revision(), 3);
  // Unpublished: readers still see revision 2.
  tw->End();
  EXPECT_EQ(tw->Changes().size(), 4u);
  ASSERT_TRUE(btx->Commit().ok());
  EXPECT_EQ(store_->Rev(), 2);
  EXPECT_EQ(MustRange("k", "").kvs[0].value(), "old");
  store_->OnCommit();
  EXPECT_EQ(store_->Rev(), 3);
  EXPECT_EQ(MustRange("k", "").count, 0);
  // Revision 3 holds four sub revisions.
  EXPECT_EQ(KeyBucketEntries(), 5u);
}

TEST_F(StoreTest, ReadOnlyTxnDoesNotAdvance) {
  Put("a", "1");
  EXPECT_EQ(Apply([](TxnWrite* tw) { EXPECT_TRUE(tw->Range("a", "", {}).ok()); }), 2);
  EXPECT_EQ(Apply([](TxnWrite* tw) { EXPECT_EQ(tw->DeleteRange("zz", ""), 0); }), 2);
  EXPECT_EQ(store_->Rev(), 2);
}

TEST_F(StoreTest, CommitObserverGetsEachRevisionInOrder) {
  std::vector<std::pair<int64_t, std::vector<std::string>>> seen;
  store_->SetCommitObserver([&](int64_t rev, const std::vector<mvccpb::Event>& evs) {
    EXPECT_EQ(store_->Rev(), 4);  // published before observers run
    std::vector<std::string> s;
    for (const auto& e : evs) {
      s.push_back((e.type() == mvccpb::Event::PUT ? "put " : "del ") + e.kv().key() + "@" +
                  std::to_string(e.kv().mod_revision()));
    }
    seen.emplace_back(rev, s);
  });
  // Three requests in one backend batch.
  auto btx = *backend_->BeginWrite();
  for (int i = 0; i < 3; ++i) {
    auto tw = store_->Write(btx.get());
    if (i == 2) {
      tw->DeleteRange("a", "");
    } else {
      tw->Put(i == 0 ? "a" : "b", "v", 0);
    }
    tw->End();
  }
  ASSERT_TRUE(btx->Commit().ok());
  store_->OnCommit();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0], (std::pair<int64_t, std::vector<std::string>>{2, {"put a@2"}}));
  EXPECT_EQ(seen[1], (std::pair<int64_t, std::vector<std::string>>{3, {"put b@3"}}));
  EXPECT_EQ(seen[2], (std::pair<int64_t, std::vector<std::string>>{4, {"del a@4"}}));
}

TEST_F(StoreTest, ReadEvents) {
  Put("a", "1");                                     // 2
  Apply([](TxnWrite* tw) {                           // 3: two events
    tw->Put("b", "2", 0);
    tw->Put("c", "3", 0);
  });
  Delete("a");                                       // 4
  Put("a", "5");                                     // 5
  std::vector<std::string> got;
  auto collect = [&](const mvccpb::Event& e) {
    got.push_back((e.type() == mvccpb::Event::PUT ? "put " : "del ") + e.kv().key() + "@" +
                  std::to_string(e.kv().mod_revision()));
  };
  ASSERT_TRUE(store_->ReadEvents(1, 0, 0, collect).ok());
  EXPECT_THAT(got, ElementsAre("put a@2", "put b@3", "put c@3", "del a@4", "put a@5"));
  got.clear();
  ASSERT_TRUE(store_->ReadEvents(3, 4, 0, collect).ok());
  EXPECT_THAT(got, ElementsAre("put b@3", "put c@3", "del a@4"));
  got.clear();
  // max 1: revision 3 is not split.
  ASSERT_TRUE(store_->ReadEvents(3, 5, 1, collect).ok());
  EXPECT_THAT(got, ElementsAre("put b@3", "put c@3"));
  got.clear();
  ASSERT_TRUE(store_->ReadEvents(6, 10, 0, collect).ok());
  EXPECT_TRUE(got.empty());
  ASSERT_TRUE(Compact(4).ok());
  store_->WaitCompactionIdle();
  EXPECT_TRUE(IsCompacted(store_->ReadEvents(3, 0, 0, collect)));
  ASSERT_TRUE(store_->ReadEvents(4, 0, 0, collect).ok());  // etcd: start == compact rev is fine
}

TEST_F(StoreTest, LeaseObserver) {
  Put("a", "1", 7);
  Put("a", "2", 8);
  Put("a", "3", 0);
  Put("b", "1", 9);
  Put("c", "1", 10);
  Delete("b");
  EXPECT_THAT(lessor_.log, ElementsAre("attach a 7", "detach a 7", "attach a 8", "detach a 8",
                                       "attach b 9", "attach c 10", "detach b 9"));
  lessor_.log.clear();
  Reopen();
  EXPECT_THAT(lessor_.log, ElementsAre("attach c 10"));
}

TEST_F(StoreTest, CompactIndexAndPhysical) {
  for (int i = 0; i < 10; ++i) Put("k" + std::to_string(i % 3), "v" + std::to_string(i));  // 2..11
  Delete("k0");  // 12
  Put("k3", "x");  // 13
  EXPECT_EQ(KeyBucketEntries(), 12u);
  auto f = Compact(12);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(store_->CompactRev(), 12);
  EXPECT_TRUE(IsCompacted(store_->Range("k1", "", {.rev = 11}).status()));
  EXPECT_EQ(store_->Range("k1", "", {.rev = 11}).status().message(),
            "mvcc: required revision has been compacted");
  ASSERT_TRUE(f->get().ok());
  // Kept: k1@9, k2@10 (newest <= 12); k0's tombstone at 12 goes; k3@13.
  EXPECT_EQ(KeyBucketEntries(), 3u);
  auto at12 = MustRange("", kAll, {.rev = 12});
  EXPECT_EQ(Keys(at12), (std::vector<std::string>{"k1", "k2"}));
  EXPECT_EQ(at12.kvs[0].mod_revision(), 9);
  EXPECT_EQ(at12.kvs[0].version(), 3);
  EXPECT_TRUE(IsCompacted(Compact(12).status()));
  EXPECT_TRUE(IsCompacted(Compact(5).status()));
  EXPECT_TRUE(IsFutureRev(Compact(14).status()));
  // Versions survive compaction: the next put continues the generation.
  Put("k1", "again");  // 14
  auto k1 = MustRange("k1", "");
  EXPECT_EQ(k1.kvs[0].version(), 4);
  EXPECT_EQ(k1.kvs[0].create_revision(), 3);
  // Restart: same compact revision, same data, same index.
  auto before = MustRange("", kAll);
  Reopen();
  EXPECT_EQ(store_->CompactRev(), 12);
  EXPECT_EQ(store_->Rev(), 14);
  auto after = MustRange("", kAll);
  ASSERT_EQ(after.kvs.size(), before.kvs.size());
  for (size_t i = 0; i < after.kvs.size(); ++i) {
    EXPECT_EQ(after.kvs[i].SerializeAsString(), before.kvs[i].SerializeAsString());
  }
  EXPECT_TRUE(IsCompacted(store_->Range("k1", "", {.rev = 11}).status()));
  Put("k1", "after restart");
  EXPECT_EQ(MustRange("k1", "").kvs[0].version(), 5);
}

TEST_F(StoreTest, CompactEverythingKeepsRevision) {
  Put("a", "1");
  Delete("a");  // 3
  ASSERT_TRUE(Compact(3).ok());
  store_->WaitCompactionIdle();
  EXPECT_EQ(KeyBucketEntries(), 0u);
  Reopen();
  EXPECT_EQ(store_->Rev(), 3);  // at least the compact revision
  EXPECT_EQ(store_->CompactRev(), 3);
  EXPECT_EQ(Put("a", "2"), 4);
  EXPECT_EQ(MustRange("a", "").kvs[0].version(), 1);
}

TEST_F(StoreTest, CompactionResumesAfterCrash) {
  for (int i = 0; i < 20; ++i) Put("k", std::to_string(i));  // 2..21
  {
    // Schedule, commit, then "crash" before OnCommit: the physical
    // compaction never runs in this incarnation.
    auto btx = *backend_->BeginWrite();
    auto f = store_->Compact(btx.get(), 15);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE(btx->Commit().ok());
    store_.reset();
    EXPECT_EQ(f->get().code(), absl::StatusCode::kCancelled);
  }
  EXPECT_EQ(KeyBucketEntries(), 20u);
  Reopen();
  EXPECT_EQ(store_->CompactRev(), 15);
  EXPECT_TRUE(IsCompacted(store_->Range("k", "", {.rev = 14}).status()));
  store_->WaitCompactionIdle();
  EXPECT_EQ(KeyBucketEntries(), 7u);  // 15..21
  auto r = backend_->BeginRead();
  auto fin = (*r)->Get(storage::kMetaBucket, kFinishedCompactKey);
  ASSERT_TRUE(fin.ok() && fin->has_value());
  EXPECT_EQ(storage::GetBigEndian64((*fin)->data()), 15u);
  EXPECT_EQ(MustRange("k", "", {.rev = 15}).kvs[0].value(), "13");
}

TEST_F(StoreTest, PhysicalCompactionInSmallBatches) {
  StoreOptions o;
  o.compaction_batch_limit = 3;
  o.index_compaction_chunk_keys = 2;
  Reopen(o);
  for (int i = 0; i < 30; ++i) Put("k" + std::to_string(i % 7), std::to_string(i));
  auto f = Compact(25);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f->get().ok());
  // 7 keys each keep their newest revision <= 25, plus revisions 26..31.
  EXPECT_EQ(KeyBucketEntries(), 7u + 6u);
  for (int64_t rev = 25; rev <= 31; ++rev) EXPECT_EQ(MustRange("", kAll, {.rev = rev}).count, 7);
}

// Restart rebuilds the same index and the same answers at every revision.
TEST_F(StoreTest, RestartRebuildsExactly) {
  std::mt19937 rng(12345);
  for (int i = 0; i < 200; ++i) {
    std::string k = "key" + std::to_string(rng() % 15);
    int op = rng() % 10;
    if (op < 6) {
      Put(k, "v" + std::to_string(i), rng() % 4 == 0 ? 100 + rng() % 3 : 0);
    } else if (op < 8) {
      Delete(k, rng() % 2 ? "" : k + "5");
    } else {
      Apply([&](TxnWrite* tw) {
        tw->Put(k + "a", "x", 0);
        tw->Put(k + "b", "y", 0);
        tw->DeleteRange(k, k + "a");
      });
    }
    if (i == 120) {
      ASSERT_TRUE(Compact(store_->Rev() - 20).ok());
    }
  }
  store_->WaitCompactionIdle();
  const int64_t rev = store_->Rev();
  const int64_t compact = store_->CompactRev();
  ASSERT_GT(compact, 1);
  std::vector<std::string> snapshot;
  for (int64_t r = std::max<int64_t>(compact, 1); r <= rev; ++r) {
    for (const auto& kv : MustRange("", kAll, {.rev = r}).kvs) snapshot.push_back(kv.SerializeAsString());
  }
  auto hash = store_->HashByRev(0);
  ASSERT_TRUE(hash.ok());
  {
    // An index rebuilt from the backend equals the live one.
    auto rebuilt = Store::Open(backend_.get(), StoreOptions());
    ASSERT_TRUE(rebuilt.ok());
    EXPECT_TRUE((*rebuilt)->index().Equals(store_->index()));
    EXPECT_GT(store_->index().Size(), 0u);
  }
  Reopen();
  EXPECT_EQ(store_->Rev(), rev);
  EXPECT_EQ(store_->CompactRev(), compact);
  std::vector<std::string> again;
  for (int64_t r = std::max<int64_t>(compact, 1); r <= rev; ++r) {
    for (const auto& kv : MustRange("", kAll, {.rev = r}).kvs) again.push_back(kv.SerializeAsString());
  }
  EXPECT_EQ(again, snapshot);
  auto hash2 = store_->HashByRev(0);
  ASSERT_TRUE(hash2.ok());
  EXPECT_EQ(hash2->hash, hash->hash);
}

// Compact and later requests in one backend batch: the requests see the
// compaction at once; readers only after OnCommit.
TEST_F(StoreTest, CompactInsideABatch) {
  for (int i = 0; i < 5; ++i) Put("k", std::to_string(i));  // 2..6
  auto btx = *backend_->BeginWrite();
  auto f = store_->Compact(btx.get(), 4);
  ASSERT_TRUE(f.ok());
  {
    auto tw = store_->Write(btx.get());
    EXPECT_TRUE(IsCompacted(tw->Range("k", "", {.rev = 3}).status()));
    auto at4 = tw->Range("k", "", {.rev = 4});
    ASSERT_TRUE(at4.ok());
    EXPECT_EQ(at4->kvs[0].value(), "2");
    tw->Put("k", "new", 0);  // 7
    tw->End();
  }
  EXPECT_EQ(store_->Range("k", "", {.rev = 3})->kvs[0].value(), "1");  // not yet published
  ASSERT_TRUE(btx->Commit().ok());
  store_->OnCommit();
  EXPECT_TRUE(IsCompacted(store_->Range("k", "", {.rev = 3}).status()));
  ASSERT_TRUE(f->get().ok());
  EXPECT_EQ(KeyBucketEntries(), 4u);  // 4, 5, 6, 7
  EXPECT_EQ(MustRange("k", "").kvs[0].version(), 6);
}

// The store against a naive model of the whole history, on random requests
// (puts, deletes, multi-op txns, compactions) and reads at random revisions.
TEST_F(StoreTest, MatchesNaiveModelOnRandomRequests) {
  struct Rec {
    int64_t main;
    bool tombstone;
    std::string value;
    int64_t create, version, lease;
  };
  std::map<std::string, std::vector<Rec>> model;
  auto live = [&](const std::string& k) -> const Rec* {
    auto it = model.find(k);
    if (it == model.end() || it->second.empty() || it->second.back().tombstone) return nullptr;
    return &it->second.back();
  };
  auto at = [&](const std::string& k, int64_t rev) -> const Rec* {
    const Rec* r = nullptr;
    for (const auto& rec : model[k]) {
      if (rec.main <= rev) r = &rec;
    }
    return r != nullptr && !r->tombstone ? r : nullptr;
  };
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  auto key = [&] { return std::string(1, static_cast<char>('a' + rng() % 8)); };
  int64_t compact = -1;
  for (int step = 0; step < 300; ++step) {
    const int op = rng() % 10;
    if (op < 7) {
      const int64_t rev = store_->Rev() + 1;
      bool wrote = false;
      Apply([&](TxnWrite* tw) {
        const int n = 1 + rng() % 3;
        std::set<std::string> used;
        for (int i = 0; i < n; ++i) {
          std::string k = key();
          if (!used.insert(k).second) continue;
          if (rng() % 4 == 0) {
            const bool was_live = live(k) != nullptr;
            EXPECT_EQ(tw->DeleteRange(k, ""), was_live ? 1 : 0);
            if (was_live) {
              model[k].push_back(Rec{rev, true, "", 0, 0, 0});
              wrote = true;
            }
          } else {
            const Rec* prev = live(k);
            const int64_t lease = rng() % 3;
            Rec rec{rev, false, "v" + std::to_string(step), prev ? prev->create : rev,
                    prev ? prev->version + 1 : 1, lease};
            tw->Put(k, rec.value, lease);
            model[k].push_back(rec);
            wrote = true;
          }
        }
      });
      EXPECT_EQ(store_->Rev(), wrote ? rev : rev - 1);
    } else if (op == 7 && store_->Rev() > compact + 1) {
      const int64_t c = compact + 1 + static_cast<int64_t>(rng() % (store_->Rev() - compact));
      if (c > std::max<int64_t>(compact, 0)) {
        auto f = Compact(c);
        ASSERT_TRUE(f.ok()) << f.status();
        compact = c;
      }
    } else if (op == 8 && step % 50 == 0) {
      Reopen();
      EXPECT_EQ(store_->CompactRev(), compact);
    } else {
      const int64_t cur = store_->Rev();
      const int64_t lo = std::max<int64_t>(compact, 1);
      const int64_t rev = lo + static_cast<int64_t>(rng() % (cur - lo + 1));
      std::string k1 = key(), k2 = key();
      if (k2 < k1) std::swap(k1, k2);
      const int64_t limit = rng() % 3;
      auto r = store_->Range(k1, k2, {.limit = limit, .rev = rev});
      ASSERT_TRUE(r.ok()) << r.status() << " rev " << rev;
      std::vector<const Rec*> want;
      std::vector<std::string> want_keys;
      for (char c = k1[0]; std::string(1, c) < k2; ++c) {
        if (const Rec* rec = at(std::string(1, c), rev)) {
          want.push_back(rec);
          want_keys.emplace_back(1, c);
        }
      }
      EXPECT_EQ(r->count, static_cast<int64_t>(want.size()));
      EXPECT_EQ(r->rev, cur);
      const size_t n = limit == 0 ? want.size() : std::min<size_t>(limit, want.size());
      ASSERT_EQ(r->kvs.size(), n) << k1 << ".." << k2 << "@" << rev;
      for (size_t i = 0; i < n; ++i) {
        const auto& kv = r->kvs[i];
        EXPECT_EQ(kv.key(), want_keys[i]);
        EXPECT_EQ(kv.value(), want[i]->value);
        EXPECT_EQ(kv.mod_revision(), want[i]->main);
        EXPECT_EQ(kv.create_revision(), want[i]->create);
        EXPECT_EQ(kv.version(), want[i]->version);
        EXPECT_EQ(kv.lease(), want[i]->lease);
      }
      if (compact > 1) {
        EXPECT_TRUE(IsCompacted(store_->Range(k1, k2, {.rev = compact - 1}).status()));
      }
    }
  }
}

// Hash values produced by etcd 3.4.23 for the same history (etcdctl endpoint
// hashkv): the hash is comparable across cppetcd and etcd members.
TEST_F(StoreTest, HashByRevMatchesEtcd) {
  auto h = store_->HashByRev(0);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->hash, 1084519789u);
  EXPECT_EQ(h->compact_revision, -1);
  EXPECT_EQ(h->current_revision, 1);
  Put("foo", "bar");    // 2
  Put("foo1", "bar1");  // 3
  Put("foo", "bar2");   // 4
  Delete("foo1");       // 5
  Put("zoo", "");       // 6
  Put("lk", "lv");      // 7
  EXPECT_EQ(store_->HashByRev(0)->hash, 3485084300u);
  EXPECT_EQ(store_->HashByRev(3)->hash, 3892279174u);
  ASSERT_TRUE(Compact(3).ok());
  store_->WaitCompactionIdle();
  EXPECT_EQ(store_->HashByRev(0)->hash, 199101415u);
  EXPECT_EQ(store_->HashByRev(4)->hash, 3983302090u);
  EXPECT_TRUE(IsCompacted(store_->HashByRev(3).status()));
  EXPECT_TRUE(IsFutureRev(store_->HashByRev(8).status()));
  ASSERT_TRUE(Compact(5).ok());
  store_->WaitCompactionIdle();
  auto h5 = store_->HashByRev(0);
  EXPECT_EQ(h5->hash, 1106804993u);
  EXPECT_EQ(h5->compact_revision, 5);
  EXPECT_EQ(h5->current_revision, 7);
  Reopen();
  EXPECT_EQ(store_->HashByRev(0)->hash, 1106804993u);
}

// Readers run while the apply loop writes: every read sees a whole revision.
TEST_F(StoreTest, ConcurrentReadersSeeWholeRevisions) {
  constexpr int kKeys = 5;
  constexpr int kWrites = 150;
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::mutex mu;
  std::string first_failure;
  auto fail = [&](std::string what) {
    if (failures++ == 0) {
      std::lock_guard<std::mutex> l(mu);
      first_failure = std::move(what);
    }
  };
  std::atomic<int> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      int64_t last = 0;
      while (!done.load()) {
        auto r = store_->Range("", kAll, {});
        if (!r.ok()) {
          fail(r.status().ToString());
          continue;
        }
        reads++;
        if (r->rev < last) fail("revision went back");
        last = r->rev;
        // Each request rewrites all keys with its revision as value.
        for (const auto& kv : r->kvs) {
          if (kv.mod_revision() != r->rev || kv.value() != std::to_string(r->rev)) {
            fail("torn read: " + kv.key() + " mod " + std::to_string(kv.mod_revision()) + " at " +
                 std::to_string(r->rev));
          }
        }
        if (r->rev > 1 && r->count != kKeys) fail("count " + std::to_string(r->count));
        if (r->rev > 3) {
          // May race with the compaction: then it must say so.
          auto old = store_->Range("k0", "", {.rev = r->rev - 1});
          if (old.ok() ? old->kvs.size() != 1 || old->kvs[0].mod_revision() != r->rev - 1
                       : !IsCompacted(old.status())) {
            fail("old read at " + std::to_string(r->rev - 1) + ": " + old.status().ToString());
          }
        }
      }
    });
  }
  for (int i = 0; i < kWrites; ++i) {
    int64_t rev = store_->Rev() + 1;
    Apply([&](TxnWrite* tw) {
      for (int k = 0; k < kKeys; ++k) tw->Put("k" + std::to_string(k), std::to_string(rev), 0);
    });
    if (i == kWrites / 2) {
      ASSERT_TRUE(Compact(store_->Rev() - 10).ok());
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (reads.load() < 50 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  done = true;
  for (auto& t : readers) t.join();
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(failures.load(), 0) << first_failure;
  EXPECT_GE(reads.load(), 50);
}

TEST_F(StoreTest, HashEqualForEqualHistories) {
  Put("a", "1");
  Apply([](TxnWrite* tw) {
    tw->Put("b", "2", 5);
    tw->Put("c", "3", 0);
  });
  Delete("a", "c");
  auto h1 = store_->HashByRev(0);
  TempDir other_dir;
  // A second store in another file with the same history.
  auto b2 = *storage::Backend::Open(other_dir.File("db"), storage::BackendOptions{.map_size_bytes = 64 << 20});
  auto s2 = *Store::Open(b2.get(), StoreOptions());
  auto apply2 = [&](const std::function<void(TxnWrite*)>& fn) {
    auto btx = *b2->BeginWrite();
    auto tw = s2->Write(btx.get());
    fn(tw.get());
    tw->End();
    ASSERT_TRUE(btx->Commit().ok());
    s2->OnCommit();
  };
  apply2([](TxnWrite* tw) { tw->Put("a", "1", 0); });
  apply2([](TxnWrite* tw) {
    tw->Put("b", "2", 5);
    tw->Put("c", "3", 0);
  });
  EXPECT_NE(s2->HashByRev(0)->hash, h1->hash);
  apply2([](TxnWrite* tw) { tw->DeleteRange("a", "c"); });
  EXPECT_EQ(s2->HashByRev(0)->hash, h1->hash);
  EXPECT_EQ(s2->HashByRev(2)->hash, store_->HashByRev(2)->hash);
}

}  // namespace
}  // namespace cppetcd::mvcc
