// The cluster's membership as this member applied it (etcd 3.4
// etcdserver/api/membership RaftCluster): the members with their raft
// attributes (ID, peer URLs, learner) and published attributes (name, client
// URLs), the IDs removed for good, and the members this one was started with
// (--initial-cluster, or the cluster a joining member fetched).
//
// Persistence (LMDB backend, written in the apply loop's batch txn; the same
// bytes as every cppetcd release so far, read by etcd_backend_export.cc and
// written by etcd_convert.cc / `snapshot restore`):
//   bucket "members":         key = ID as 16 lower-case hex digits,
//                             value = serverpb.MemberRecord (protobuf)
//   bucket "members_removed": key = ID as 16 lower-case hex digits,
//                             value = "removed" (as etcd)
//
// Invariants (checked by the unit tests after every step):
//   - members() keys are the records' IDs; no ID is both a member and
//     removed; 0 is never a member;
//   - the buckets hold exactly members() and removed() once the apply txn
//     commits (Load of the committed buckets gives the same state);
//   - at most kMaxLearners learners;
//   - no peer URL belongs to two members (for changes applied through
//     ApplyConfChange; a loaded backend is taken as it is);
//   - LocalIsLearner() == members()[local ID].is_learner (false if absent).
// ApplyConfChange is deterministic and total: the same entries on the same
// state give the same state and bucket bytes on every member; an entry that
// fails validation changes nothing and yields its error.
//
// Thread-safety: thread-safe (one util::Mutex). The apply thread applies;
// any thread reads. No callback runs under the lock.
#ifndef CPPETCD_SRC_SERVER_MEMBERSHIP_STORE_H_
#define CPPETCD_SRC_SERVER_MEMBERSHIP_STORE_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/util/mutex.h"
#include "etcdserverpb/rpc.pb.h"
#include "raftpb/raft.pb.h"
#include "serverpb/internal.pb.h"

namespace cppetcd::server {

// etcd 3.4 allows one learner at a time (membership maxLearners).
inline constexpr size_t kMaxLearners = 1;

using MemberMap = std::map<uint64_t, serverpb::MemberRecord>;

// The key of member `id` in the members and members_removed buckets.
std::string MemberBucketKey(uint64_t id);

// Whether a member of `members` other than `except` (raft::kNone: none)
// already has one of `urls` as a peer URL (etcd ErrPeerURLexists).
bool PeerUrlsTaken(const MemberMap& members, const std::vector<std::string>& urls,
                   uint64_t except);

// A member record as the etcd v3 API shows it.
etcdserverpb::Member ToMemberPb(const serverpb::MemberRecord& m);

// What an applied conf change did, for the caller's log and transport.
struct ConfChangeResult {
  enum class Kind {
    kNone,      // nothing changed (rejected, empty context, other type)
    kAdded,     // a new member (voter or learner)
    kUpdated,   // peer URLs of an existing member
    kPromoted,  // a learner became a voter
    kRemoved,   // a member removed for good
  };
  // OK, or why the change was refused (etcd ValidateConfigurationChange):
  // ErrInvalidPeerUrls (undecodable context), ErrIdRemoved, ErrIdExists,
  // ErrPeerUrlExists, ErrTooManyLearners, ErrMemberNotFound.
  absl::Status verdict;
  Kind kind = Kind::kNone;
  // The member after the change (kAdded/kUpdated/kPromoted); for
  // kRemoved only its ID.
  serverpb::MemberRecord member;
};

class Membership {
 public:
  Membership() = default;
  Membership(const Membership&) = delete;
  Membership& operator=(const Membership&) = delete;

  // ---- start-up (before the server's threads run)

  // The members this one starts with (--initial-cluster, or those a joining
  // member fetched); CurrentPeers and IsKnown fall back on them while no
  // membership is applied.
  void SetInitialMembers(std::vector<serverpb::MemberRecord> members);
  std::vector<serverpb::MemberRecord> InitialMembers() const;

  // Replaces the state with the members and removed IDs stored in `rtx`'s
  // buckets; `local_id` is this member (for LocalIsLearner). A
  // removed key that is not hex is skipped (as before); an undecodable
  // member record is DataLoss (state then partly loaded: do not serve).
  absl::Status Load(storage::ReadTxn* rtx, uint64_t local_id);

  // ---- apply (apply thread)

  // Validates `cc` against the current state and, if valid, applies it to
  // the state and to `btx` (etcd ValidateConfigurationChange, then
  // AddMember / UpdateRaftAttributes / PromoteMember / RemoveMember):
  //  AddNode of an existing learner promotes it (only the learner flag
  //  changes, as etcd PromoteMember); AddNode/AddLearnerNode
  //  adds the member of the context (a serverpb.MemberRecord whose ID is
  //  replaced by cc.node_id; an empty context adds nothing); UpdateNode
  //  replaces peer URLs (name, client URLs and learner flag are kept when
  //  the context has none); RemoveNode deletes the member and records its
  //  ID as removed. Other types, and changes of node 0 (which raft
  //  ignores too), change nothing.
  // A non-OK StatusOr is a storage fault of `btx` (Internal,
  // ResourceExhausted): the state is unchanged but `btx` may hold part of
  // the change, so it must not be committed.
  absl::StatusOr<ConfChangeResult> ApplyConfChange(storage::WriteTxn* btx,
                                                   const raftpb::ConfChange& cc);

  // The apply-time checks alone (same verdict ApplyConfChange would give).
  absl::Status ValidateConfChange(const raftpb::ConfChange& cc) const;

  // A member published its name and client URLs (etcd
  // UpdateAttributes). An unknown member is ignored (false). Errors: storage
  // faults of `btx` as for ApplyConfChange.
  absl::StatusOr<bool> ApplyAttributes(storage::WriteTxn* btx,
                                       const serverpb::MemberAttributesRequest& ma);

  // ---- queries (any thread)

  MemberMap Members() const;
  std::set<uint64_t> Removed() const;
  // Adds the members (by ID) and the removed IDs (ascending) to `info`, from
  // one consistent state.
  void FillClusterInfo(serverpb::ClusterInfo* info) const;
  std::optional<serverpb::MemberRecord> Get(uint64_t id) const;
  size_t Size() const;
  bool IsRemoved(uint64_t id) const;
  // A member applied here, or (before any is applied) an initial member.
  bool IsKnown(uint64_t id) const;
  // ErrIdRemoved for a removed ID, ErrMemberNotFound otherwise: the error
  // for a request naming `id` when it is not a member.
  absl::Status MissingMemberError(uint64_t id) const;
  // The members as the v3 API lists them, sorted by ID.
  std::vector<etcdserverpb::Member> List() const;
  // The members other than `local_id` with their peer URLs: the applied
  // membership, or the initial members while none is applied (new cluster,
  // joining member).
  std::vector<std::pair<uint64_t, std::vector<std::string>>> Peers(uint64_t local_id) const;
  // Whether this member (the local ID given to Load) is a learner.
  bool LocalIsLearner() const { return local_learner_.load(std::memory_order_acquire); }

 private:
  absl::Status ValidateLocked(const raftpb::ConfChange& cc) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetLocalLearnerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable util::Mutex mu_;
  MemberMap members_ ABSL_GUARDED_BY(mu_);                   // by ID; no ID 0
  std::set<uint64_t> removed_ ABSL_GUARDED_BY(mu_);          // disjoint from members_
  std::vector<serverpb::MemberRecord> initial_ ABSL_GUARDED_BY(mu_);
  uint64_t local_id_ ABSL_GUARDED_BY(mu_) = 0;               // 0 until Load
  std::atomic<bool> local_learner_{false};                   // members_[local_id_].is_learner
};

}  // namespace cppetcd::server

#endif  // CPPETCD_SRC_SERVER_MEMBERSHIP_STORE_H_
