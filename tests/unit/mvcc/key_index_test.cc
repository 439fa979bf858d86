#include "cppetcd/mvcc/key_index.h"

#include <map>
#include <random>
#include <set>

#include "gtest/gtest.h"

namespace cppetcd::mvcc {
namespace {

Revision R(int64_t main, int64_t sub = 0) { return Revision{main, sub}; }

// The history used by etcd's key index tests: put 2, 4, tombstone 6; put 8,
// 10, tombstone 12; put 14, 14.1, tombstone 16; then an empty generation.
KeyIndex NewTestKeyIndex() {
  KeyIndex ki;
  ki.Put(R(2));
  ki.Put(R(4));
  EXPECT_TRUE(ki.Tombstone(R(6)));
  ki.Put(R(8));
  ki.Put(R(10));
  EXPECT_TRUE(ki.Tombstone(R(12)));
  ki.Put(R(14));
  ki.Put(R(14, 1));
  EXPECT_TRUE(ki.Tombstone(R(16)));
  return ki;
}

TEST(KeyIndexTest, Get) {
  KeyIndex ki = NewTestKeyIndex();
  struct Case {
    int64_t rev;
    bool found;
    Revision modified, created;
    int64_t version;
  };
  std::vector<Case> cases = {
      {17, false, {}, {}, 0},      {16, false, {}, {}, 0},
      {15, true, R(14, 1), R(14), 2}, {14, true, R(14, 1), R(14), 2},
      {13, false, {}, {}, 0},      {12, false, {}, {}, 0},
      {11, true, R(10), R(8), 2},  {10, true, R(10), R(8), 2},
      {9, true, R(8), R(8), 1},    {8, true, R(8), R(8), 1},
      {7, false, {}, {}, 0},       {6, false, {}, {}, 0},
      {5, true, R(4), R(2), 2},    {4, true, R(4), R(2), 2},
      {3, true, R(2), R(2), 1},    {2, true, R(2), R(2), 1},
      {1, false, {}, {}, 0},       {0, false, {}, {}, 0},
  };
  for (const auto& c : cases) {
    auto at = ki.Get(c.rev);
    ASSERT_EQ(at.has_value(), c.found) << c.rev;
    if (!at) continue;
    EXPECT_EQ(at->modified, c.modified) << c.rev;
    EXPECT_EQ(at->created, c.created) << c.rev;
    EXPECT_EQ(at->version, c.version) << c.rev;
  }
}

TEST(KeyIndexTest, Since) {
  KeyIndex ki = NewTestKeyIndex();
  using V = std::vector<Revision>;
  EXPECT_EQ(ki.Since(17), V{});
  EXPECT_EQ(ki.Since(16), (V{R(16)}));
  EXPECT_EQ(ki.Since(14), (V{R(14, 1), R(16)}));  // one per main revision, the newest
  EXPECT_EQ(ki.Since(9), (V{R(10), R(12), R(14, 1), R(16)}));
  EXPECT_EQ(ki.Since(1), (V{R(2), R(4), R(6), R(8), R(10), R(12), R(14, 1), R(16)}));
}

TEST(KeyIndexTest, TombstoneOnlyWhenLive) {
  KeyIndex ki;
  EXPECT_FALSE(ki.Tombstone(R(1)));
  ki.Put(R(2));
  EXPECT_TRUE(ki.Tombstone(R(3)));
  EXPECT_FALSE(ki.Tombstone(R(4)));
  EXPECT_FALSE(ki.IsLive());
  ki.Put(R(5));
  EXPECT_TRUE(ki.IsLive());
  EXPECT_EQ(ki.Get(5)->created, R(5));
  EXPECT_EQ(ki.Get(5)->version, 1);
}

// Compaction as etcd's TestKeyIndexCompactAndKeep: after compacting at each
// revision the kept set matches Keep's and reads at >= that revision are
// unchanged.
TEST(KeyIndexTest, CompactKeepsReadsAtAndAbove) {
  for (int64_t at = 0; at <= 18; ++at) {
    KeyIndex full = NewTestKeyIndex();
    KeyIndex ki = NewTestKeyIndex();
    RevisionSet compacted, kept;
    ki.Compact(at, &compacted);
    full.Keep(at, &kept);
    EXPECT_EQ(compacted, kept) << at;
    for (int64_t r = at; r <= 18; ++r) {
      auto a = full.Get(r), b = ki.Get(r);
      ASSERT_EQ(a.has_value(), b.has_value()) << at << " " << r;
      if (a) {
        EXPECT_EQ(a->modified, b->modified);
        EXPECT_EQ(a->version, b->version);
        EXPECT_EQ(a->created, b->created);
      }
    }
  }
}

TEST(KeyIndexTest, CompactTable) {
  struct Case {
    int64_t at;
    std::vector<Revision> available;
    size_t generations;
  };
  // Expected from etcd 3.4's key_index_test.go TestKeyIndexCompactAndKeep.
  std::vector<Case> cases = {
      {1, {}, 4},         {2, {R(2)}, 4},     {3, {R(2)}, 4},      {4, {R(4)}, 4},
      {5, {R(4)}, 4},     {6, {}, 3},         {7, {}, 3},          {8, {R(8)}, 3},
      {9, {R(8)}, 3},     {10, {R(10)}, 3},   {11, {R(10)}, 3},    {12, {}, 2},
      {13, {}, 2},        {14, {R(14, 1)}, 2}, {15, {R(14, 1)}, 2}, {16, {}, 1},
      {17, {}, 1},
  };
  KeyIndex ki = NewTestKeyIndex();
  for (const auto& c : cases) {  // successive compactions
    RevisionSet got;
    ki.Compact(c.at, &got);
    EXPECT_EQ(got, RevisionSet(c.available.begin(), c.available.end())) << c.at;
    EXPECT_EQ(ki.generations().size(), c.generations) << c.at;
  }
  EXPECT_TRUE(ki.IsEmpty());
}

TEST(TreeIndexTest, RangeShapes) {
  TreeIndex ti;
  ti.Put("foo", R(1));
  ti.Put("foo1", R(2));
  ti.Put("foo2", R(3));
  ti.Put("foo2", R(4));
  ti.Put("zoo", R(5));
  using K = std::vector<std::string>;
  using V = std::vector<Revision>;
  struct Case {
    std::string key, end;
    int64_t at;
    K keys;
    V revs;
  };
  std::vector<Case> cases = {
      {"foo", "", 5, K{"foo"}, V{R(1)}},
      {"foo", "foo1", 5, K{"foo"}, V{R(1)}},
      {"foo", "foo3", 5, K{"foo", "foo1", "foo2"}, V{R(1), R(2), R(4)}},
      {"foo", "foo3", 3, K{"foo", "foo1", "foo2"}, V{R(1), R(2), R(3)}},
      {"foo1", std::string(1, '\0'), 5, K{"foo1", "foo2", "zoo"}, V{R(2), R(4), R(5)}},
      {"", std::string(1, '\0'), 1, K{"foo"}, V{R(1)}},
      {"foo3", "zoo", 5, K{}, V{}},
      {"nope", "", 5, K{}, V{}},
      {"foo", "foo3", 0, K{}, V{}},
  };
  for (const auto& c : cases) {
    K keys;
    V revs;
    ti.Range(c.key, c.end, c.at, &keys, &revs);
    EXPECT_EQ(keys, c.keys) << c.key << ".." << c.end << "@" << c.at;
    EXPECT_EQ(revs, c.revs) << c.key << ".." << c.end << "@" << c.at;
    V limited;
    EXPECT_EQ(ti.Revisions(c.key, c.end, c.at, 1, &limited), static_cast<int64_t>(c.revs.size()));
    EXPECT_EQ(limited.size(), std::min<size_t>(1, c.revs.size()));
    EXPECT_EQ(ti.CountRevisions(c.key, c.end, c.at), static_cast<int64_t>(c.revs.size()));
  }
  EXPECT_EQ(ti.RangeSince("foo", "foo3", 2), (V{R(2), R(3), R(4)}));
  EXPECT_EQ(ti.RangeSince("foo2", "", 4), (V{R(4)}));
}

// A naive model: every key's full history as (revision, is_tombstone).
struct Model {
  std::map<std::string, std::vector<std::pair<Revision, bool>>> hist;
  int64_t compacted = 0;

  // State at rev: the newest record <= rev; absent if none or a tombstone.
  std::optional<KeyAt> Get(const std::string& key, int64_t rev) const {
    auto it = hist.find(key);
    if (it == hist.end()) return std::nullopt;
    const auto& h = it->second;
    std::optional<size_t> idx;
    for (size_t i = 0; i < h.size(); ++i) {
      if (h[i].first.main <= rev) idx = i;
    }
    if (!idx || h[*idx].second) return std::nullopt;
    size_t start = *idx;
    while (start > 0 && !h[start - 1].second) --start;
    return KeyAt{h[*idx].first, h[start].first, static_cast<int64_t>(*idx - start + 1)};
  }
  bool Live(const std::string& key) const {
    auto it = hist.find(key);
    return it != hist.end() && !it->second.empty() && !it->second.back().second;
  }
};

TEST(TreeIndexTest, MatchesNaiveModelOnRandomOperations) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  const std::vector<std::string> keys = {"a", "b", "c", "d", "e", "f"};
  TreeIndex ti;
  Model m;
  int64_t rev = 1;
  for (int step = 0; step < 600; ++step) {
    int op = rng() % 10;
    if (op < 6) {  // a txn of 1-3 changes
      ++rev;
      int n = 1 + rng() % 3;
      std::set<std::string> used;
      int64_t sub = 0;
      for (int i = 0; i < n; ++i) {
        const std::string& k = keys[rng() % keys.size()];
        if (!used.insert(k).second) continue;
        if (rng() % 3 == 0) {
          bool live = m.Live(k);
          EXPECT_EQ(ti.Tombstone(k, R(rev, sub)), live);
          if (live) m.hist[k].push_back({R(rev, sub++), true});
        } else {
          ti.Put(k, R(rev, sub));
          m.hist[k].push_back({R(rev, sub++), false});
        }
      }
      if (sub == 0) --rev;
    } else if (op < 7 && rev > m.compacted + 1) {
      int64_t at = m.compacted + 1 + static_cast<int64_t>(rng() % (rev - m.compacted));
      RevisionSet keep = ti.Keep(at);
      RevisionSet got = ti.Compact(at, 2);
      EXPECT_EQ(got, keep) << "compact at " << at;
      // The kept set: for every key, its newest revision <= at unless that
      // revision is a tombstone.
      RevisionSet want;
      for (const auto& [k, h] : m.hist) {
        std::optional<std::pair<Revision, bool>> last;
        for (const auto& e : h) {
          if (e.first.main <= at) last = e;
        }
        if (last && !last->second) want.insert(last->first);
      }
      EXPECT_EQ(got, want) << "compact at " << at;
      m.compacted = at;
    } else {
      // Reads at every revision not compacted.
      for (int64_t r = std::max<int64_t>(m.compacted, 0); r <= rev + 1; ++r) {
        std::vector<std::string> got_keys;
        std::vector<Revision> got_revs;
        ti.Range("", std::string(1, '\0'), r, &got_keys, &got_revs);
        std::vector<std::string> want_keys;
        std::vector<Revision> want_revs;
        for (const auto& k : keys) {
          auto want = m.Get(k, r);
          auto got = ti.Get(k, r);
          ASSERT_EQ(got.has_value(), want.has_value()) << k << "@" << r;
          if (want) {
            EXPECT_EQ(got->modified, want->modified) << k << "@" << r;
            EXPECT_EQ(got->created, want->created) << k << "@" << r;
            EXPECT_EQ(got->version, want->version) << k << "@" << r;
            want_keys.push_back(k);
            want_revs.push_back(want->modified);
          }
        }
        EXPECT_EQ(got_keys, want_keys) << "@" << r;
        EXPECT_EQ(got_revs, want_revs) << "@" << r;
      }
    }
  }
}

}  // namespace
}  // namespace cppetcd::mvcc
