// Store::Reload: the store of a member rebuilt in place after its backend
// received another member's database (raft snapshot install).
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cppetcd/mvcc/kvstore.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cppetcd::mvcc {
namespace {

using ::testing::UnorderedElementsAre;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "reload_test.XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

const std::string kAll(1, '\0');

class RecordingLessor : public LeaseObserver {
 public:
  void Attach(std::string_view key, int64_t lease) override {
    attached.push_back(absl::StrCat(std::string(key), "@", lease));
  }
  void Detach(std::string_view, int64_t) override {}
  std::vector<std::string> attached;
};

// One member: a backend and its store.
struct Member {
  Member(const std::string& path, LeaseObserver* lessor = nullptr, size_t batch_limit = 1000) {
    storage::BackendOptions bo;
    bo.map_size_bytes = 64 << 20;
    auto b = storage::Backend::Open(path, bo);
    EXPECT_TRUE(b.ok()) << b.status();
    backend = std::move(b).value();
    StoreOptions so;
    so.lease_observer = lessor;
    so.compaction_batch_limit = batch_limit;
    auto s = Store::Open(backend.get(), so);
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
  int64_t Put(const std::string& k, const std::string& v, int64_t lease = 0) {
    return Apply([&](TxnWrite* tw) { tw->Put(k, v, lease); });
  }
  int64_t Delete(const std::string& k) {
    return Apply([&](TxnWrite* tw) { tw->DeleteRange(k, ""); });
  }
  std::shared_future<absl::Status> Compact(int64_t rev) {
    auto btx = backend->BeginWrite();
    EXPECT_TRUE(btx.ok());
    auto f = store->Compact(btx->get(), rev);
    EXPECT_TRUE(f.ok()) << f.status();
    EXPECT_TRUE((*btx)->Commit().ok());
    store->OnCommit();
    return *f;
  }
  // A CopyTo image of the backend at `path`.
  void Image(const std::string& path) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(backend->CopyTo(fd).ok());
    ::close(fd);
  }
  absl::Status ReloadFrom(const std::string& image) {
    return store->Reload([&] { return backend->ReplaceContentsFrom(image); });
  }
  std::map<std::string, std::string> KeyBucket() {
    std::map<std::string, std::string> out;
    auto t = backend->BeginRead();
    EXPECT_TRUE((*t)->Scan(storage::kKeyBucket, "", "", [&](std::string_view k, std::string_view v) {
                       out.emplace(std::string(k), std::string(v));
                       return true;
                     }).ok());
    return out;
  }

  std::unique_ptr<storage::Backend> backend;
  std::unique_ptr<Store> store;
};

std::vector<std::string> Dump(const Store& s, int64_t rev = 0) {
  RangeOptions o;
  o.rev = rev;
  auto r = s.Range("", kAll, o);
  EXPECT_TRUE(r.ok()) << r.status();
  std::vector<std::string> out;
  if (!r.ok()) return out;
  for (const auto& kv : r->kvs) {
    out.push_back(absl::StrCat(kv.key(), "=", kv.value(), " c", kv.create_revision(), " m",
                               kv.mod_revision(), " v", kv.version(), " l", kv.lease()));
  }
  return out;
}

// Expects `got` to be indistinguishable from `want` to readers.
void ExpectSameStore(const Store& got, const Store& want) {
  ASSERT_EQ(got.Rev(), want.Rev());
  EXPECT_EQ(got.CompactRev(), want.CompactRev());
  EXPECT_TRUE(got.index().Equals(want.index()));
  const int64_t first = std::max<int64_t>(1, want.CompactRev());
  for (int64_t rev = first; rev <= want.Rev(); ++rev) {
    EXPECT_EQ(Dump(got, rev), Dump(want, rev)) << "at revision " << rev;
  }
  auto h1 = got.HashByRev(0);
  auto h2 = want.HashByRev(0);
  ASSERT_TRUE(h1.ok() && h2.ok());
  EXPECT_EQ(h1->hash, h2->hash);
  EXPECT_EQ(h1->compact_revision, h2->compact_revision);
  EXPECT_EQ(h1->current_revision, h2->current_revision);
}

class ReloadTest : public ::testing::Test {
 protected:
  TempDir dir_;
};

TEST_F(ReloadTest, MatchesAStoreOpenedOnTheSource) {
  RecordingLessor follower_leases;
  Member leader(dir_.File("leader.db"));
  Member follower(dir_.File("follower.db"), &follower_leases);
  // Shared prefix, then the follower falls behind and has its own stale data.
  for (int i = 0; i < 5; ++i) {
    leader.Put(absl::StrCat("k", i), "v1");
    follower.Put(absl::StrCat("k", i), "v1");
  }
  follower.Put("stale", "x", 99);
  for (int i = 0; i < 20; ++i) leader.Put(absl::StrCat("k", i % 7), absl::StrCat("v", i));
  leader.Delete("k3");
  leader.Put("leased", "y", 7);
  ASSERT_TRUE(leader.Compact(10).get().ok());
  leader.Put("after", "z");

  const std::string image = dir_.File("snap.db");
  leader.Image(image);
  follower_leases.attached.clear();
  ASSERT_TRUE(follower.ReloadFrom(image).ok());

  Member fresh_copy(image);  // a store opened on the image itself
  ExpectSameStore(*follower.store, *fresh_copy.store);
  ExpectSameStore(*follower.store, *leader.store);
  EXPECT_EQ(follower.store->Rev(), leader.store->Rev());
  EXPECT_EQ(follower.store->CompactRev(), 10);
  // Reads below the restored compact revision fail as compacted.
  RangeOptions o;
  o.rev = 5;
  EXPECT_TRUE(IsCompacted(follower.store->Range("", kAll, o).status()));
  // Live leased keys were re-attached; the stale key is gone.
  EXPECT_THAT(follower_leases.attached, UnorderedElementsAre("leased@7"));
  EXPECT_TRUE(Dump(*follower.store).size() == Dump(*leader.store).size());

  // Writing continues from the restored revision, on both sides alike.
  std::vector<int64_t> observed;
  follower.store->SetCommitObserver(
      [&](int64_t rev, const std::vector<mvccpb::Event>&) { observed.push_back(rev); });
  const int64_t r1 = follower.Put("next", "1");
  const int64_t r2 = leader.Put("next", "1");
  EXPECT_EQ(r1, r2);
  EXPECT_EQ(observed, std::vector<int64_t>{r1});
  ExpectSameStore(*follower.store, *leader.store);
}

TEST_F(ReloadTest, ResumesTheSourcesUnfinishedCompaction) {
  Member leader(dir_.File("leader.db"));
  Member follower(dir_.File("follower.db"));
  for (int i = 0; i < 30; ++i) leader.Put(absl::StrCat("k", i % 3), absl::StrCat("v", i));
  // The leader scheduled a compaction at 20 that has not run yet.
  {
    auto btx = leader.backend->BeginWrite();
    ASSERT_TRUE(btx.ok());
    ASSERT_TRUE(
        (*btx)->Put(storage::kMetaBucket, kScheduledCompactKey, storage::EncodeBigEndian64(20)).ok());
    ASSERT_TRUE((*btx)->Commit().ok());
  }
  const std::string image = dir_.File("snap.db");
  leader.Image(image);
  ASSERT_TRUE(follower.ReloadFrom(image).ok());
  EXPECT_EQ(follower.store->CompactRev(), 20);
  follower.store->WaitCompactionIdle();
  auto t = follower.backend->BeginRead();
  auto finished = (*t)->Get(storage::kMetaBucket, kFinishedCompactKey);
  ASSERT_TRUE(finished.ok() && finished->has_value());
  EXPECT_EQ(storage::GetBigEndian64((*finished)->data()), 20u);
  // Below 20 only the last revision of each key is left, then 21..31.
  EXPECT_EQ(follower.KeyBucket().size(), 3u + 11u);  // revisions 2..31
  EXPECT_EQ(Dump(*follower.store), Dump(*leader.store));
}

TEST_F(ReloadTest, CancelsARunningCompactionOfTheOldContents) {
  Member leader(dir_.File("leader.db"));
  // One key-bucket entry per batch: the compaction is slow and interruptible.
  Member follower(dir_.File("follower.db"), nullptr, /*batch_limit=*/1);
  for (int i = 0; i < 200; ++i) follower.Put("f", absl::StrCat(i));
  for (int i = 0; i < 150; ++i) leader.Put(absl::StrCat("l", i % 5), absl::StrCat(i));
  const std::string image = dir_.File("snap.db");
  leader.Image(image);
  auto expected_bucket = leader.KeyBucket();

  std::shared_future<absl::Status> f = follower.Compact(199);
  ASSERT_TRUE(follower.ReloadFrom(image).ok());
  ASSERT_EQ(f.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  const absl::Status st = f.get();
  EXPECT_TRUE(st.ok() || absl::IsCancelled(st)) << st;
  follower.store->WaitCompactionIdle();
  // Nothing of the new contents was deleted by the old compaction.
  EXPECT_EQ(follower.KeyBucket(), expected_bucket);
  EXPECT_EQ(follower.store->CompactRev(), -1);
  ExpectSameStore(*follower.store, *leader.store);
}

TEST_F(ReloadTest, FailedReplacementReloadsTheUnchangedBackend) {
  RecordingLessor leases;
  Member follower(dir_.File("follower.db"), &leases);
  follower.Put("a", "1", 5);
  follower.Put("b", "2");
  const auto before = Dump(*follower.store);
  const int64_t rev = follower.store->Rev();
  absl::Status s = follower.ReloadFrom(dir_.File("missing.db"));
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_EQ(follower.store->Rev(), rev);
  EXPECT_EQ(Dump(*follower.store), before);
  EXPECT_EQ(follower.Put("c", "3"), rev + 1);
  // A failing callback's error is returned as is.
  s = follower.store->Reload([] { return absl::DataLossError("boom"); });
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(follower.store->Rev(), rev + 1);
}

TEST_F(ReloadTest, ConcurrentReadersSeeTheOldOrTheNewState) {
  // Two states with the same keys, distinguishable by value and revision.
  Member a(dir_.File("a.db"));
  Member b(dir_.File("b.db"));
  for (int i = 0; i < 50; ++i) a.Put(absl::StrCat("k", i), "A");
  for (int i = 0; i < 50; ++i) b.Put(absl::StrCat("k", i), "B");
  b.Put("extra", "B");
  const std::string image_a = dir_.File("a-snap.db");
  const std::string image_b = dir_.File("b-snap.db");
  a.Image(image_a);
  b.Image(image_b);
  const int64_t rev_a = a.store->Rev();
  const int64_t rev_b = b.store->Rev();
  ASSERT_NE(rev_a, rev_b);

  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      for (int i = 0; i < 100000; ++i) {
        const bool last = done.load();
        auto r = a.store->Range("", kAll, RangeOptions{});
        if (!r.ok()) {
          ++bad;
        } else {
          const std::string want = r->rev == rev_a ? "A" : "B";
          const int64_t want_count = r->rev == rev_a ? 50 : 51;
          bool ok = (r->rev == rev_a || r->rev == rev_b) && r->count == want_count &&
                    static_cast<int64_t>(r->kvs.size()) == want_count;
          for (const auto& kv : r->kvs) ok = ok && kv.value() == want;
          if (!ok) ++bad;
        }
        if (last) break;
      }
    });
  }
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(a.ReloadFrom(image_b).ok());
    ASSERT_TRUE(a.ReloadFrom(image_a).ok());
  }
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(a.store->Rev(), rev_a);
}

}  // namespace
}  // namespace cppetcd::mvcc
