#include "src/mvcc/watch/interval_index.h"

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace cppetcd::mvcc::watch_internal {
namespace {

std::vector<int*> Matches(const IntervalIndex<int>& idx, const std::string& key) {
  std::vector<int*> out;
  idx.ForEachMatch(key, [&](int* p) { out.push_back(p); });
  std::sort(out.begin(), out.end());
  return out;
}

KeyRange Single(std::string k) { return KeyRange{std::move(k), "", false}; }
KeyRange Range(std::string k, std::string e) { return KeyRange{std::move(k), std::move(e), false}; }
KeyRange From(std::string k) { return KeyRange{std::move(k), "", true}; }

TEST(IntervalIndexTest, SingleRangeAndFromKey) {
  IntervalIndex<int> idx;
  int a = 0, b = 1, c = 2, d = 3;
  idx.Add(Single("b"), &a);
  idx.Add(Range("a", "c"), &b);
  idx.Add(Range("a", "c"), &c);  // same range: shares a group
  idx.Add(From("bb"), &d);
  EXPECT_EQ(idx.size(), 4u);
  EXPECT_EQ(Matches(idx, "").size(), 0u);
  EXPECT_EQ(Matches(idx, "a").size(), 2u);
  EXPECT_EQ(Matches(idx, "b").size(), 3u);
  EXPECT_EQ(Matches(idx, "bb").size(), 3u);
  EXPECT_EQ(Matches(idx, "c").size(), 1u);  // end is exclusive
  EXPECT_EQ(Matches(idx, "zzz").size(), 1u);
  EXPECT_FALSE(idx.Remove(Single("x"), &a));
  EXPECT_FALSE(idx.Remove(Range("a", "c"), &a));
  EXPECT_TRUE(idx.Remove(Range("a", "c"), &b));
  EXPECT_EQ(Matches(idx, "a").size(), 1u);
  EXPECT_TRUE(idx.Remove(Range("a", "c"), &c));
  EXPECT_TRUE(idx.Remove(From("bb"), &d));
  EXPECT_TRUE(idx.Remove(Single("b"), &a));
  EXPECT_TRUE(idx.empty());
  EXPECT_EQ(idx.SegmentCount(), 0u);
}

// Random adds, removes and lookups against a naive list.
TEST(IntervalIndexTest, MatchesNaiveModel) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    std::mt19937 rng(seed);
    auto key = [&] {
      std::string k(1, static_cast<char>('a' + rng() % 8));
      if (rng() % 3 == 0) k.push_back(static_cast<char>('a' + rng() % 3));
      return k;
    };
    std::vector<int> items(200);
    std::vector<std::pair<KeyRange, int*>> live;
    IntervalIndex<int> idx;
    for (int step = 0; step < 600; ++step) {
      uint32_t op = rng() % 10;
      if (op < 4 && live.size() < items.size()) {
        int* item = nullptr;
        for (int& it : items) {
          bool used = std::any_of(live.begin(), live.end(), [&](auto& l) { return l.second == &it; });
          if (!used) {
            item = &it;
            break;
          }
        }
        KeyRange r;
        switch (rng() % 3) {
          case 0: r = Single(key()); break;
          case 1: r = From(key()); break;
          default: {
            std::string k = key(), e = key();
            if (e <= k) e = k + "z";
            r = Range(k, e);
          }
        }
        idx.Add(r, item);
        live.emplace_back(r, item);
      } else if (op < 7 && !live.empty()) {
        size_t i = rng() % live.size();
        ASSERT_TRUE(idx.Remove(live[i].first, live[i].second));
        live.erase(live.begin() + i);
      } else {
        std::string k = key();
        std::vector<int*> want;
        for (auto& [r, p] : live) {
          if (r.Contains(k)) want.push_back(p);
        }
        std::sort(want.begin(), want.end());
        ASSERT_EQ(Matches(idx, k), want) << "seed " << seed << " step " << step << " key " << k;
        ASSERT_EQ(idx.ContainsKey(k), !want.empty());
      }
      ASSERT_EQ(idx.size(), live.size());
    }
    for (auto& [r, p] : live) ASSERT_TRUE(idx.Remove(r, p));
    EXPECT_EQ(idx.SegmentCount(), 0u) << "seed " << seed;
  }
}

}  // namespace
}  // namespace cppetcd::mvcc::watch_internal
