// Errors of the server module (etcd 3.4 etcdserver / rpctypes). Each status
// carries a typed code (util/error.h), which the predicates test and the api
// layer maps to etcd's gRPC status; the message (etcd's text) is for display.
#ifndef CPPETCD_SERVER_ERRORS_H_
#define CPPETCD_SERVER_ERRORS_H_

#include <string_view>

#include "absl/status/status.h"

namespace cppetcd::server {

// InvalidArgument "etcdserver: request is too large" (size > max_request_bytes).
absl::Status ErrRequestTooLarge();
bool IsRequestTooLarge(const absl::Status& s);

// ResourceExhausted "etcdserver: too many requests" (apply lags commit by
// more than 5000 entries, or raft dropped the proposal).
absl::Status ErrTooManyRequests();
bool IsTooManyRequests(const absl::Status& s);

// ResourceExhausted "etcdserver: mvcc: database space exceeded" (NOSPACE).
absl::Status ErrNoSpace();
bool IsNoSpace(const absl::Status& s);

// DataLoss "etcdserver: corrupt cluster": writes while a CORRUPT alarm is
// active (etcd applierV3Corrupt).
absl::Status ErrCorrupt();
bool IsCorrupt(const absl::Status& s);

// Unavailable "etcdserver: no leader".
absl::Status ErrNoLeader();
bool IsNoLeader(const absl::Status& s);

// Unavailable "etcdserver: server stopped".
absl::Status ErrStopped();
bool IsStopped(const absl::Status& s);

// Unavailable "etcdserver: request timed out".
absl::Status ErrTimeout();
bool IsTimeout(const absl::Status& s);

// Unavailable "etcdserver: request timed out, possibly due to previous
// leader failure" / "..., possibly due to connection lost" / "..., waiting
// for the applied index took too long" (etcd's variants of ErrTimeout).
absl::Status ErrTimeoutDueToLeaderFail();
absl::Status ErrTimeoutDueToConnectionLost();
absl::Status ErrTimeoutWaitAppliedIndex();

// Unavailable "etcdserver: leader changed".
absl::Status ErrLeaderChanged();
bool IsLeaderChanged(const absl::Status& s);

// Unavailable "etcdserver: not capable" (feature not available in this
// cluster, e.g. membership changes before the membership issue lands).
absl::Status ErrNotCapable();
bool IsNotCapable(const absl::Status& s);

// Unimplemented "etcdserver: <what> is not implemented yet" (cppetcd-only).
absl::Status ErrUnimplemented(std::string_view what);

// NotFound "etcdserver: member not found".
absl::Status ErrMemberNotFound();
bool IsMemberNotFound(const absl::Status& s);

// FailedPrecondition "etcdserver: bad leader transferee".
absl::Status ErrBadLeaderTransferee();
bool IsBadLeaderTransferee(const absl::Status& s);

// ---- Membership and leadership (etcd 3.4 etcdserver/errors.go,
// membership/errors.go). Raised with etcd's internal text; the api maps
// their codes to etcd's gRPC answer.

// FailedPrecondition "etcdserver: not leader".
absl::Status ErrNotLeader();
bool IsNotLeader(const absl::Status& s);
// Unavailable "etcdserver: unhealthy cluster" (a change would risk quorum).
absl::Status ErrUnhealthy();
// FailedPrecondition "etcdserver: re-configuration failed due to not enough
// started members".
absl::Status ErrNotEnoughStartedMembers();
// FailedPrecondition "etcdserver: can only promote a learner member which is
// in sync with leader".
absl::Status ErrLearnerNotReady();
// Unavailable "etcdserver: request timed out, leader transfer took too long".
absl::Status ErrTimeoutLeaderTransfer();
// InvalidArgument "etcdserver: given member URLs are invalid".
absl::Status ErrInvalidPeerUrls();
// membership errors: "membership: peerURL exists", "membership: ID removed",
// "membership: ID exists", "membership: too many learner members in
// cluster", "membership: can only promote a learner member".
absl::Status ErrPeerUrlExists();
absl::Status ErrIdRemoved();
absl::Status ErrIdExists();
absl::Status ErrTooManyLearners();
absl::Status ErrMemberNotLearner();
// Unavailable "etcdserver: rpc not supported for learner".
absl::Status ErrNotSupportedForLearner();
// PermissionDenied "the member has been permanently removed from the
// cluster": a removed member's raft traffic is refused with it.
absl::Status ErrMemberRemoved();
bool IsMemberRemoved(const absl::Status& s);

}  // namespace cppetcd::server

#endif  // CPPETCD_SERVER_ERRORS_H_
