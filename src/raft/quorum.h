// Quorum math: which index a (joint) configuration has committed and how an
// election stands. Raft paper §5.3 (majority commit), thesis §4.3 (joint
// consensus: a decision needs a majority of both the old and new voters).
#ifndef CPPETCD_RAFT_QUORUM_H_
#define CPPETCD_RAFT_QUORUM_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>

namespace cppetcd::raft {

enum class VoteResult { kPending, kLost, kWon };

// Returns the index acknowledged by a voter, or nullopt if unknown.
using AckedIndexer = std::function<std::optional<uint64_t>(uint64_t id)>;

// A set of voters deciding by simple majority.
class MajorityConfig {
 public:
  MajorityConfig() = default;
  explicit MajorityConfig(std::set<uint64_t> ids) : ids_(std::move(ids)) {}

  // The largest index acknowledged by a majority (unknown voters count as 0).
  // An empty config returns UINT64_MAX so that it never constrains a joint
  // config.
  uint64_t CommittedIndex(const AckedIndexer& acked) const;
  // Outcome given votes (true = granted); missing voters are pending. An
  // empty config wins.
  VoteResult Vote(const std::map<uint64_t, bool>& votes) const;

  const std::set<uint64_t>& ids() const { return ids_; }
  std::set<uint64_t>& mutable_ids() { return ids_; }
  bool empty() const { return ids_.empty(); }
  size_t size() const { return ids_.size(); }
  bool Contains(uint64_t id) const { return ids_.count(id) > 0; }
  std::string Describe() const;
  bool operator==(const MajorityConfig&) const = default;

 private:
  std::set<uint64_t> ids_;
};

// Two majority configs; outside a joint configuration `outgoing` is empty.
struct JointConfig {
  MajorityConfig incoming;
  MajorityConfig outgoing;

  uint64_t CommittedIndex(const AckedIndexer& acked) const;
  VoteResult Vote(const std::map<uint64_t, bool>& votes) const;
  // Union of both voter sets.
  std::set<uint64_t> Ids() const;
  bool Contains(uint64_t id) const { return incoming.Contains(id) || outgoing.Contains(id); }
  bool IsJoint() const { return !outgoing.empty(); }
  bool operator==(const JointConfig&) const = default;
};

}  // namespace cppetcd::raft

#endif  // CPPETCD_RAFT_QUORUM_H_
