// Quorum math checked against a naive model on random inputs (Raft paper
// §5.3 commit rule; thesis §4.3 joint consensus needs both majorities).
#include "quorum.h"

#include <random>

#include "gtest/gtest.h"

namespace cppetcd::raft {
namespace {

// Naive: the largest index i such that a majority of ids acked >= i.
uint64_t NaiveCommitted(const std::set<uint64_t>& ids, const std::map<uint64_t, uint64_t>& acked) {
  if (ids.empty()) return UINT64_MAX;
  uint64_t best = 0;
  for (uint64_t cand = 0; cand <= 20; ++cand) {
    size_t n = 0;
    for (uint64_t id : ids) {
      auto it = acked.find(id);
      if (it != acked.end() && it->second >= cand) ++n;
    }
    if (n > ids.size() / 2) best = cand;
  }
  return best;
}

VoteResult NaiveVote(const std::set<uint64_t>& ids, const std::map<uint64_t, bool>& votes) {
  if (ids.empty()) return VoteResult::kWon;
  size_t yes = 0, no = 0;
  for (uint64_t id : ids) {
    auto it = votes.find(id);
    if (it == votes.end()) continue;
    (it->second ? yes : no)++;
  }
  if (yes > ids.size() / 2) return VoteResult::kWon;
  if (no >= ids.size() - ids.size() / 2) return VoteResult::kLost;  // a majority can no longer say yes
  return VoteResult::kPending;
}

std::set<uint64_t> RandomIds(std::mt19937_64& rng) {
  std::set<uint64_t> ids;
  int n = static_cast<int>(rng() % 8);
  for (int i = 0; i < n; ++i) ids.insert(1 + rng() % 10);
  return ids;
}

TEST(QuorumTest, MajorityCommittedMatchesNaiveModel) {
  std::mt19937_64 rng(1);
  for (int iter = 0; iter < 5000; ++iter) {
    auto ids = RandomIds(rng);
    std::map<uint64_t, uint64_t> acked;
    for (uint64_t id = 1; id <= 10; ++id) {
      if (rng() % 4 != 0) acked[id] = rng() % 20;
    }
    MajorityConfig c(ids);
    AckedIndexer idx = [&](uint64_t id) -> std::optional<uint64_t> {
      auto it = acked.find(id);
      if (it == acked.end()) return std::nullopt;
      return it->second;
    };
    ASSERT_EQ(c.CommittedIndex(idx), NaiveCommitted(ids, acked)) << c.Describe();
    // Joint: the minimum of both halves (thesis §4.3).
    auto ids2 = RandomIds(rng);
    JointConfig j{MajorityConfig(ids), MajorityConfig(ids2)};
    ASSERT_EQ(j.CommittedIndex(idx), std::min(NaiveCommitted(ids, acked), NaiveCommitted(ids2, acked)));
  }
}

TEST(QuorumTest, VoteMatchesNaiveModel) {
  std::mt19937_64 rng(2);
  for (int iter = 0; iter < 5000; ++iter) {
    auto ids = RandomIds(rng);
    auto ids2 = RandomIds(rng);
    std::map<uint64_t, bool> votes;
    for (uint64_t id = 1; id <= 10; ++id) {
      if (rng() % 3 != 0) votes[id] = rng() % 2;
    }
    ASSERT_EQ(MajorityConfig(ids).Vote(votes), NaiveVote(ids, votes));
    VoteResult a = NaiveVote(ids, votes), b = NaiveVote(ids2, votes);
    VoteResult want = (a == VoteResult::kLost || b == VoteResult::kLost)  ? VoteResult::kLost
                      : (a == VoteResult::kWon && b == VoteResult::kWon) ? VoteResult::kWon
                                                                         : VoteResult::kPending;
    ASSERT_EQ((JointConfig{MajorityConfig(ids), MajorityConfig(ids2)}.Vote(votes)), want);
  }
}

TEST(QuorumTest, EmptyConfigNeverConstrains) {
  MajorityConfig empty;
  EXPECT_EQ(empty.CommittedIndex([](uint64_t) { return std::optional<uint64_t>(3); }), UINT64_MAX);
  EXPECT_EQ(empty.Vote({}), VoteResult::kWon);
}

}  // namespace
}  // namespace cppetcd::raft
