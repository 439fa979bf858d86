#include "cppetcd/auth/range_perm.h"

#include <random>
#include <set>

#include "gtest/gtest.h"

namespace cppetcd::auth {
namespace {

using Type = authpb::Permission::Type;

authpb::Permission Perm(Type t, std::string key, std::string end) {
  authpb::Permission p;
  p.set_permtype(t);
  p.set_key(std::move(key));
  p.set_range_end(std::move(end));
  return p;
}

const std::string kFromKey(1, '\0');

TEST(KeyIntervalSetTest, MergesOverlappingAndAdjacent) {
  KeyIntervalSet s;
  s.Add("c", "e");
  s.Add("a", "b");
  s.Add("b", "c");  // joins [a,b) and [c,e)
  s.Add("x", "");
  s.Add("y", "z");  // inside [x, inf)
  ASSERT_EQ(s.Intervals().size(), 2u);
  EXPECT_EQ(s.Intervals()[0], (std::pair<std::string, std::string>{"a", "e"}));
  EXPECT_EQ(s.Intervals()[1], (std::pair<std::string, std::string>{"x", ""}));
  EXPECT_TRUE(s.ContainsRange("a", "e"));
  EXPECT_TRUE(s.ContainsRange("b", "d"));
  EXPECT_FALSE(s.ContainsRange("a", "f"));
  EXPECT_TRUE(s.ContainsRange("x", ""));
  EXPECT_FALSE(s.ContainsRange("w", ""));
  EXPECT_TRUE(s.ContainsKey("zzz"));
  EXPECT_FALSE(s.ContainsKey("e"));
}

TEST(RangePermTest, SingleKeyPrefixAndFromKey) {
  UnifiedPerms p;
  AddPermission(Perm(authpb::Permission::READ, "foo", ""), &p);           // one key
  AddPermission(Perm(authpb::Permission::READWRITE, "dir/", "dir0"), &p);  // prefix dir/
  AddPermission(Perm(authpb::Permission::WRITE, "z", kFromKey), &p);       // >= z
  EXPECT_TRUE(PermitsRange(p, "foo", "", authpb::Permission::READ));
  EXPECT_FALSE(PermitsRange(p, "foo", "", authpb::Permission::WRITE));
  EXPECT_FALSE(PermitsRange(p, "foo", "fop", authpb::Permission::READ));  // prefix foo
  EXPECT_FALSE(PermitsRange(p, "foo1", "", authpb::Permission::READ));
  EXPECT_TRUE(PermitsRange(p, "dir/a", "", authpb::Permission::WRITE));
  EXPECT_TRUE(PermitsRange(p, "dir/", "dir0", authpb::Permission::READ));
  EXPECT_FALSE(PermitsRange(p, "dir", "dir0", authpb::Permission::READ));
  EXPECT_TRUE(PermitsRange(p, "zz", kFromKey, authpb::Permission::WRITE));
  EXPECT_FALSE(PermitsRange(p, "zz", kFromKey, authpb::Permission::READ));
  EXPECT_FALSE(PermitsRange(p, "y", kFromKey, authpb::Permission::WRITE));
}

// The merged set against a naive model: a key range is covered iff every
// key of a small alphabet in it is covered by some added interval.
TEST(KeyIntervalSetTest, MatchesNaiveModel) {
  std::mt19937 rng(42);
  const std::vector<std::string> keys = {"", "a", "aa", "ab", "b", "ba", "c", "ca", "d"};
  for (int round = 0; round < 200; ++round) {
    KeyIntervalSet s;
    std::vector<std::pair<std::string, std::string>> added;
    const int n = rng() % 5;
    for (int i = 0; i < n; ++i) {
      std::string b = keys[rng() % keys.size()], e = keys[rng() % keys.size()];
      if (rng() % 4 == 0) e = "";
      s.Add(b, e);
      added.emplace_back(b, e);
    }
    auto in = [&](const std::string& k) {
      for (const auto& [b, e] : added) {
        if (k >= b && (e.empty() || k < e)) return true;
      }
      return false;
    };
    for (const auto& k : keys) {
      EXPECT_EQ(s.ContainsKey(k), in(k)) << "seed round " << round << " key " << k;
      // Each key k and the one-step extension k + "a" probe points between
      // the alphabet's keys.
      EXPECT_EQ(s.ContainsKey(k + "a"), in(k + "a"));
    }
  }
}

}  // namespace
}  // namespace cppetcd::auth
