#include "membership_store.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "cppetcd/server/errors.h"

namespace cppetcd::server {
namespace {

// etcd membership/store.go: the value of a removed member's key.
constexpr std::string_view kRemovedValue = "removed";

}  // namespace

std::string MemberBucketKey(uint64_t id) { return absl::StrFormat("%016x", id); }

bool PeerUrlsTaken(const MemberMap& members, const std::vector<std::string>& urls,
                   uint64_t except) {
  for (const auto& [id, other] : members) {
    if (id == except) continue;
    for (const auto& u : other.peer_urls()) {
      if (std::find(urls.begin(), urls.end(), u) != urls.end()) return true;
    }
  }
  return false;
}

etcdserverpb::Member ToMemberPb(const serverpb::MemberRecord& m) {
  etcdserverpb::Member out;
  out.set_id(m.id());
  out.set_name(m.name());
  for (const auto& u : m.peer_urls()) out.add_peerurls(u);
  for (const auto& u : m.client_urls()) out.add_clienturls(u);
  out.set_islearner(m.is_learner());
  return out;
}

void Membership::SetInitialMembers(std::vector<serverpb::MemberRecord> members) {
  util::MutexLock l(&mu_);
  initial_ = std::move(members);
}

std::vector<serverpb::MemberRecord> Membership::InitialMembers() const {
  util::MutexLock l(&mu_);
  return initial_;
}

absl::Status Membership::Load(storage::ReadTxn* rtx, uint64_t local_id) {
  util::MutexLock l(&mu_);
  members_.clear();
  removed_.clear();
  local_id_ = local_id;
  absl::Status bad;
  auto s = rtx->Scan(storage::kMembersRemovedBucket, "", "",
                     [&](std::string_view k, std::string_view) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                       uint64_t id = 0;
                       if (absl::SimpleHexAtoi(absl::string_view(k.data(), k.size()), &id)) {
                         removed_.insert(id);
                       }
                       return true;
                     });
  if (s.ok()) {
    s = rtx->Scan(storage::kMembersBucket, "", "",
                  [&](std::string_view, std::string_view v) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                    serverpb::MemberRecord m;
                    if (!m.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
                      bad = absl::DataLossError("undecodable member record");
                      return false;
                    }
                    members_[m.id()] = std::move(m);
                    return true;
                  });
  }
  if (s.ok()) s = bad;
  SetLocalLearnerLocked();
  return s;
}

void Membership::SetLocalLearnerLocked() {
  const auto self = members_.find(local_id_);
  local_learner_.store(self != members_.end() && self->second.is_learner(),
                       std::memory_order_release);
}

absl::Status Membership::ValidateConfChange(const raftpb::ConfChange& cc) const {
  util::MutexLock l(&mu_);
  return ValidateLocked(cc);
}

absl::Status Membership::ValidateLocked(const raftpb::ConfChange& cc) const {
  serverpb::MemberRecord m;
  if (!cc.context().empty() && !m.ParseFromString(cc.context())) return ErrInvalidPeerUrls();
  const std::vector<std::string> urls(m.peer_urls().begin(), m.peer_urls().end());
  if (removed_.contains(cc.node_id())) return ErrIdRemoved();
  const auto it = members_.find(cc.node_id());
  const bool exists = it != members_.end();
  switch (cc.type()) {
    case raftpb::ConfChangeAddNode:
      // Promotion of a learner is an AddNode of an existing learner.
      if (exists) return it->second.is_learner() ? absl::OkStatus() : ErrIdExists();
      return PeerUrlsTaken(members_, urls, /*except=*/0) ? ErrPeerUrlExists() : absl::OkStatus();
    case raftpb::ConfChangeAddLearnerNode: {
      if (exists) return ErrIdExists();
      size_t learners = 0;
      for (const auto& [id, other] : members_) learners += other.is_learner() ? 1 : 0;
      if (learners >= kMaxLearners) return ErrTooManyLearners();
      return PeerUrlsTaken(members_, urls, /*except=*/0) ? ErrPeerUrlExists() : absl::OkStatus();
    }
    case raftpb::ConfChangeRemoveNode:
      return exists ? absl::OkStatus() : ErrMemberNotFound();
    case raftpb::ConfChangeUpdateNode:
      if (!exists) return ErrMemberNotFound();
      return PeerUrlsTaken(members_, urls, cc.node_id()) ? ErrPeerUrlExists() : absl::OkStatus();
    default:
      return absl::OkStatus();
  }
}

absl::StatusOr<ConfChangeResult> Membership::ApplyConfChange(storage::WriteTxn* btx,
                                                             const raftpb::ConfChange& cc) {
  ConfChangeResult r;
  util::MutexLock l(&mu_);
  r.verdict = ValidateLocked(cc);
  if (!r.verdict.ok() || cc.node_id() == 0) return r;
  switch (cc.type()) {
    case raftpb::ConfChangeAddNode:
    case raftpb::ConfChangeAddLearnerNode:
    case raftpb::ConfChangeUpdateNode: {
      serverpb::MemberRecord m;
      // Validation parsed a non-empty context already; empty adds nothing.
      if (cc.context().empty() || !m.ParseFromString(cc.context())) return r;
      // The record is keyed by the entry's node ID, the one raft adds.
      m.set_id(cc.node_id());
      const auto it = members_.find(m.id());
      const bool exists = it != members_.end();
      if (exists && cc.type() == raftpb::ConfChangeAddNode) {
        // Validation lets AddNode of an existing member through only for a
        // learner: a promotion, which flips the learner flag alone (etcd
        // PromoteMember); the context's URLs are not checked, so not taken.
        m = it->second;
      } else if (exists) {
        // Keep published attributes; update raft attributes.
        if (m.name().empty()) m.set_name(it->second.name());
        if (m.client_urls_size() == 0) *m.mutable_client_urls() = it->second.client_urls();
      }
      m.set_is_learner(cc.type() == raftpb::ConfChangeAddLearnerNode ||
                       (cc.type() == raftpb::ConfChangeUpdateNode && exists &&
                        it->second.is_learner()));
      if (auto s = btx->Put(storage::kMembersBucket, MemberBucketKey(m.id()),
                            m.SerializeAsString());
          !s.ok()) {
        return s;
      }
      if (!exists) {
        r.kind = ConfChangeResult::Kind::kAdded;
      } else if (cc.type() == raftpb::ConfChangeUpdateNode) {
        r.kind = ConfChangeResult::Kind::kUpdated;
      } else {
        r.kind = ConfChangeResult::Kind::kPromoted;
      }
      r.member = m;
      members_[m.id()] = std::move(m);
      break;
    }
    case raftpb::ConfChangeRemoveNode: {
      // Fixed-width keys: only a storage fault fails these.
      absl::Status ws = btx->Delete(storage::kMembersBucket, MemberBucketKey(cc.node_id()));
      if (ws.ok()) {
        ws = btx->Put(storage::kMembersRemovedBucket, MemberBucketKey(cc.node_id()),
                      kRemovedValue);
      }
      if (!ws.ok()) return ws;
      members_.erase(cc.node_id());
      removed_.insert(cc.node_id());
      r.kind = ConfChangeResult::Kind::kRemoved;
      r.member.set_id(cc.node_id());
      break;
    }
    default:
      return r;
  }
  SetLocalLearnerLocked();
  return r;
}

absl::StatusOr<bool> Membership::ApplyAttributes(storage::WriteTxn* btx,
                                                 const serverpb::MemberAttributesRequest& ma) {
  util::MutexLock l(&mu_);
  const auto it = members_.find(ma.member_id());
  if (it == members_.end()) return false;
  serverpb::MemberRecord m = it->second;
  m.set_name(ma.name());
  m.clear_client_urls();
  for (const auto& u : ma.client_urls()) m.add_client_urls(u);
  if (auto s = btx->Put(storage::kMembersBucket, MemberBucketKey(ma.member_id()),
                        m.SerializeAsString());
      !s.ok()) {
    return s;
  }
  it->second = std::move(m);
  return true;
}

MemberMap Membership::Members() const {
  util::MutexLock l(&mu_);
  return members_;
}

std::set<uint64_t> Membership::Removed() const {
  util::MutexLock l(&mu_);
  return removed_;
}

void Membership::FillClusterInfo(serverpb::ClusterInfo* info) const {
  util::MutexLock l(&mu_);
  for (const auto& [id, m] : members_) *info->add_members() = m;
  for (uint64_t id : removed_) info->add_removed_ids(id);
}

std::optional<serverpb::MemberRecord> Membership::Get(uint64_t id) const {
  util::MutexLock l(&mu_);
  const auto it = members_.find(id);
  if (it == members_.end()) return std::nullopt;
  return it->second;
}

size_t Membership::Size() const {
  util::MutexLock l(&mu_);
  return members_.size();
}

bool Membership::IsRemoved(uint64_t id) const {
  util::MutexLock l(&mu_);
  return removed_.contains(id);
}

bool Membership::IsKnown(uint64_t id) const {
  util::MutexLock l(&mu_);
  if (members_.contains(id)) return true;
  for (const auto& im : initial_) {
    if (im.id() == id) return true;
  }
  return false;
}

absl::Status Membership::MissingMemberError(uint64_t id) const {
  util::MutexLock l(&mu_);
  return removed_.contains(id) ? ErrIdRemoved() : ErrMemberNotFound();
}

std::vector<etcdserverpb::Member> Membership::List() const {
  std::vector<etcdserverpb::Member> out;
  util::MutexLock l(&mu_);
  out.reserve(members_.size());
  for (const auto& [id, m] : members_) out.push_back(ToMemberPb(m));
  return out;
}

std::vector<std::pair<uint64_t, std::vector<std::string>>> Membership::Peers(
    uint64_t local_id) const {
  std::vector<std::pair<uint64_t, std::vector<std::string>>> peers;
  auto add = [&](const serverpb::MemberRecord& m) {
    if (m.id() == local_id) return;
    peers.emplace_back(m.id(),
                       std::vector<std::string>(m.peer_urls().begin(), m.peer_urls().end()));
  };
  util::MutexLock l(&mu_);
  for (const auto& [id, m] : members_) add(m);
  if (members_.empty()) {
    for (const auto& m : initial_) add(m);
  }
  return peers;
}

}  // namespace cppetcd::server
