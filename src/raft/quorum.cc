#include "quorum.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace cppetcd::raft {

uint64_t MajorityConfig::CommittedIndex(const AckedIndexer& acked) const {
  if (ids_.empty()) return std::numeric_limits<uint64_t>::max();
  // Small configs (the common case) sort on the stack.
  uint64_t stack[7];
  std::vector<uint64_t> heap;
  uint64_t* v = stack;
  if (ids_.size() > 7) {
    heap.resize(ids_.size());
    v = heap.data();
  }
  size_t n = 0;
  for (uint64_t id : ids_) v[n++] = acked(id).value_or(0);
  std::sort(v, v + n);
  // The (n/2+1)-th largest value is acknowledged by a majority.
  return v[n - (n / 2 + 1)];
}

VoteResult MajorityConfig::Vote(const std::map<uint64_t, bool>& votes) const {
  if (ids_.empty()) return VoteResult::kWon;
  size_t yes = 0, missing = 0;
  for (uint64_t id : ids_) {
    auto it = votes.find(id);
    if (it == votes.end()) {
      ++missing;
    } else if (it->second) {
      ++yes;
    }
  }
  size_t q = ids_.size() / 2 + 1;
  if (yes >= q) return VoteResult::kWon;
  if (yes + missing >= q) return VoteResult::kPending;
  return VoteResult::kLost;
}

std::string MajorityConfig::Describe() const { return absl::StrCat("(", absl::StrJoin(ids_, " "), ")"); }

uint64_t JointConfig::CommittedIndex(const AckedIndexer& acked) const {
  return std::min(incoming.CommittedIndex(acked), outgoing.CommittedIndex(acked));
}

VoteResult JointConfig::Vote(const std::map<uint64_t, bool>& votes) const {
  VoteResult r1 = incoming.Vote(votes);
  VoteResult r2 = outgoing.Vote(votes);
  if (r1 == r2) return r1;
  if (r1 == VoteResult::kLost || r2 == VoteResult::kLost) return VoteResult::kLost;
  return VoteResult::kPending;
}

std::set<uint64_t> JointConfig::Ids() const {
  std::set<uint64_t> out = incoming.ids();
  out.insert(outgoing.ids().begin(), outgoing.ids().end());
  return out;
}

}  // namespace cppetcd::raft
