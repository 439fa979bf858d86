// Typed errors: every error a caller may act on carries an ErrorCode in its
// absl::Status, as a payload under kErrorCodeUrl. Callers decide by the code
// (HasErrorCode, or the modules' predicates such as mvcc::IsCompacted), never
// by the message, which is for display only (LevelDB's Status codes, etcd's
// error variables compared by identity). The module that owns an error
// creates it with MakeError (mvcc::ErrCompacted, auth::ErrPermissionDenied,
// ...); api/errors.h maps the code to etcd's gRPC status.
//
// The codes cover etcd 3.4's errors as cppetcd raises them (rpctypes,
// etcdserver, mvcc, lease, auth, membership, raft, snap) plus a few of its
// own. A status made without a code (absl::InternalError("disk on fire"))
// has ErrorCode::kNone whatever its text says.
//
// Thread-safety: pure functions.
#ifndef CPPETCD_UTIL_ERROR_H_
#define CPPETCD_UTIL_ERROR_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace cppetcd::util {

// X(Name): the enumerator kName, whose stable name is "Name". Append only:
// names travel between members (transport's gRPC status details), so a name
// is never changed or reused.
#define CPPETCD_ERROR_CODES(X)                                                  \
  /* server: request validation (etcd rpctypes) */                              \
  X(EmptyKey) X(KeyNotFound) X(ValueProvided) X(LeaseProvided) X(TooManyOps)    \
  X(DuplicateKey) X(InvalidSortOption)                                          \
  /* mvcc */                                                                    \
  X(Compacted) X(FutureRev)                                                     \
  /* mvcc watch */                                                              \
  X(WatcherNotExist) X(EmptyWatcherRange) X(WatcherDuplicateID)                 \
  X(TooManyWatchers) X(WatchStreamClosed)                                       \
  /* lease */                                                                   \
  X(LeaseNotFound) X(LeaseExists) X(LeaseTTLTooLarge) X(NotPrimary)             \
  /* auth */                                                                    \
  X(RootUserNotExist) X(RootRoleNotExist) X(UserAlreadyExist) X(UserEmpty)      \
  X(UserNotFound) X(RoleAlreadyExist) X(RoleNotFound) X(RoleEmpty)              \
  X(AuthFailed) X(NoPasswordUser) X(PermissionDenied) X(RoleNotGranted)         \
  X(PermissionNotGranted) X(AuthNotEnabled) X(AuthOldRevision)                  \
  X(InvalidAuthToken) X(InvalidAuthOpts) X(InvalidAuthMgmt)                     \
  X(InvalidAuthMethod) X(MissingKey) X(VerifyOnly)                              \
  /* server */                                                                  \
  X(RequestTooLarge) X(TooManyRequests) X(NoSpace) X(Corrupt) X(NoLeader)       \
  X(NotLeader) X(Stopped) X(Timeout) X(TimeoutDueToLeaderFail)                  \
  X(TimeoutDueToConnectionLost) X(TimeoutWaitAppliedIndex) X(LeaderChanged)     \
  X(NotCapable) X(Unimplemented) X(MemberNotFound) X(BadLeaderTransferee)       \
  X(Unhealthy) X(NotEnoughStartedMembers) X(LearnerNotReady)                    \
  X(TimeoutLeaderTransfer) X(InvalidPeerUrls) X(NotSupportedForLearner)         \
  X(MemberRemoved)                                                              \
  /* server: membership */                                                      \
  X(PeerUrlExists) X(IdRemoved) X(IdExists) X(TooManyLearners)                  \
  X(MemberNotLearner)                                                           \
  /* api: streams */                                                            \
  X(WatchCanceled)                                                              \
  /* raft */                                                                    \
  X(RaftCompacted) X(SnapOutOfDate) X(RaftUnavailable)                          \
  X(SnapshotTemporarilyUnavailable) X(ProposalDropped) X(StepLocalMsg)          \
  X(StepPeerNotFound) X(InvalidPeerMessage)                                     \
  /* snap */                                                                    \
  X(NoSnapshot)                                                                 \
  /* cmd: flags */                                                              \
  X(FlagNotDefined)

enum class ErrorCode : int32_t {
  kNone = 0,  // OK, or an error made without a code
#define CPPETCD_ERROR_ENUMERATOR(Name) k##Name,
  CPPETCD_ERROR_CODES(CPPETCD_ERROR_ENUMERATOR)
#undef CPPETCD_ERROR_ENUMERATOR
};

// Every code except kNone, in declaration order (for tables and tests).
const std::vector<ErrorCode>& AllErrorCodes();

// The payload's type URL.
inline constexpr std::string_view kErrorCodeUrl = "type.cppetcd.io/cppetcd.util.ErrorCode";

// The stable name of `code` ("Compacted"), "None" for kNone, "" for a value
// outside the enum.
std::string_view ErrorCodeName(ErrorCode code);
// The code named `name`; kNone for an unknown name.
ErrorCode ErrorCodeFromName(std::string_view name);

// A non-OK status with absl code `code`, display text `message` and typed
// error `error` (not kNone).
absl::Status MakeError(absl::StatusCode code, ErrorCode error, std::string_view message);

// The typed error of `s`: kNone when `s` is OK or carries none.
ErrorCode ErrorCodeOf(const absl::Status& s);
inline bool HasErrorCode(const absl::Status& s, ErrorCode error) {
  return !s.ok() && ErrorCodeOf(s) == error;
}

// A copy of `s` (code, message, payloads) sharing no storage with it, for
// handing one error to many threads.
absl::Status CopyStatus(const absl::Status& s);

}  // namespace cppetcd::util

#endif  // CPPETCD_UTIL_ERROR_H_
