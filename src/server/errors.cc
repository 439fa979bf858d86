#include "cppetcd/server/errors.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "cppetcd/util/error.h"

namespace cppetcd::server {
namespace {

using util::ErrorCode;
using Code = absl::StatusCode;

absl::Status Make(Code code, ErrorCode error, std::string_view message) {
  return util::MakeError(code, error, message);
}
bool Is(const absl::Status& s, ErrorCode error) { return util::HasErrorCode(s, error); }

}  // namespace

absl::Status ErrRequestTooLarge() {
  return Make(Code::kInvalidArgument, ErrorCode::kRequestTooLarge,
              "etcdserver: request is too large");
}
bool IsRequestTooLarge(const absl::Status& s) { return Is(s, ErrorCode::kRequestTooLarge); }
absl::Status ErrTooManyRequests() {
  return Make(Code::kResourceExhausted, ErrorCode::kTooManyRequests,
              "etcdserver: too many requests");
}
bool IsTooManyRequests(const absl::Status& s) { return Is(s, ErrorCode::kTooManyRequests); }
absl::Status ErrNoSpace() {
  return Make(Code::kResourceExhausted, ErrorCode::kNoSpace,
              "etcdserver: mvcc: database space exceeded");
}
bool IsNoSpace(const absl::Status& s) { return Is(s, ErrorCode::kNoSpace); }
absl::Status ErrCorrupt() {
  return Make(Code::kDataLoss, ErrorCode::kCorrupt, "etcdserver: corrupt cluster");
}
bool IsCorrupt(const absl::Status& s) { return Is(s, ErrorCode::kCorrupt); }
absl::Status ErrNoLeader() {
  return Make(Code::kUnavailable, ErrorCode::kNoLeader, "etcdserver: no leader");
}
bool IsNoLeader(const absl::Status& s) { return Is(s, ErrorCode::kNoLeader); }
absl::Status ErrStopped() {
  return Make(Code::kUnavailable, ErrorCode::kStopped, "etcdserver: server stopped");
}
bool IsStopped(const absl::Status& s) { return Is(s, ErrorCode::kStopped); }
absl::Status ErrTimeout() {
  return Make(Code::kUnavailable, ErrorCode::kTimeout, "etcdserver: request timed out");
}
bool IsTimeout(const absl::Status& s) { return Is(s, ErrorCode::kTimeout); }
absl::Status ErrTimeoutDueToLeaderFail() {
  return Make(Code::kUnavailable, ErrorCode::kTimeoutDueToLeaderFail,
              "etcdserver: request timed out, possibly due to previous leader failure");
}
absl::Status ErrTimeoutDueToConnectionLost() {
  return Make(Code::kUnavailable, ErrorCode::kTimeoutDueToConnectionLost,
              "etcdserver: request timed out, possibly due to connection lost");
}
absl::Status ErrTimeoutWaitAppliedIndex() {
  return Make(Code::kUnavailable, ErrorCode::kTimeoutWaitAppliedIndex,
              "etcdserver: request timed out, waiting for the applied index took too long");
}
absl::Status ErrLeaderChanged() {
  return Make(Code::kUnavailable, ErrorCode::kLeaderChanged, "etcdserver: leader changed");
}
bool IsLeaderChanged(const absl::Status& s) { return Is(s, ErrorCode::kLeaderChanged); }
absl::Status ErrNotCapable() {
  return Make(Code::kUnavailable, ErrorCode::kNotCapable, "etcdserver: not capable");
}
bool IsNotCapable(const absl::Status& s) { return Is(s, ErrorCode::kNotCapable); }
absl::Status ErrUnimplemented(std::string_view what) {
  return Make(Code::kUnimplemented, ErrorCode::kUnimplemented,
              absl::StrCat("etcdserver: ", std::string(what), " is not implemented yet"));
}
absl::Status ErrMemberNotFound() {
  return Make(Code::kNotFound, ErrorCode::kMemberNotFound, "etcdserver: member not found");
}
bool IsMemberNotFound(const absl::Status& s) { return Is(s, ErrorCode::kMemberNotFound); }
absl::Status ErrBadLeaderTransferee() {
  return Make(Code::kFailedPrecondition, ErrorCode::kBadLeaderTransferee,
              "etcdserver: bad leader transferee");
}
bool IsBadLeaderTransferee(const absl::Status& s) {
  return Is(s, ErrorCode::kBadLeaderTransferee);
}

absl::Status ErrNotLeader() {
  return Make(Code::kFailedPrecondition, ErrorCode::kNotLeader, "etcdserver: not leader");
}
bool IsNotLeader(const absl::Status& s) { return Is(s, ErrorCode::kNotLeader); }
absl::Status ErrUnhealthy() {
  return Make(Code::kUnavailable, ErrorCode::kUnhealthy, "etcdserver: unhealthy cluster");
}
absl::Status ErrNotEnoughStartedMembers() {
  return Make(Code::kFailedPrecondition, ErrorCode::kNotEnoughStartedMembers,
              "etcdserver: re-configuration failed due to not enough started members");
}
absl::Status ErrLearnerNotReady() {
  return Make(Code::kFailedPrecondition, ErrorCode::kLearnerNotReady,
              "etcdserver: can only promote a learner member which is in sync with leader");
}
absl::Status ErrTimeoutLeaderTransfer() {
  return Make(Code::kUnavailable, ErrorCode::kTimeoutLeaderTransfer,
              "etcdserver: request timed out, leader transfer took too long");
}
absl::Status ErrInvalidPeerUrls() {
  return Make(Code::kInvalidArgument, ErrorCode::kInvalidPeerUrls,
              "etcdserver: given member URLs are invalid");
}
absl::Status ErrPeerUrlExists() {
  return Make(Code::kFailedPrecondition, ErrorCode::kPeerUrlExists, "membership: peerURL exists");
}
absl::Status ErrIdRemoved() {
  return Make(Code::kNotFound, ErrorCode::kIdRemoved, "membership: ID removed");
}
absl::Status ErrIdExists() {
  return Make(Code::kFailedPrecondition, ErrorCode::kIdExists, "membership: ID exists");
}
absl::Status ErrTooManyLearners() {
  return Make(Code::kFailedPrecondition, ErrorCode::kTooManyLearners,
              "membership: too many learner members in cluster");
}
absl::Status ErrMemberNotLearner() {
  return Make(Code::kFailedPrecondition, ErrorCode::kMemberNotLearner,
              "membership: can only promote a learner member");
}
absl::Status ErrNotSupportedForLearner() {
  return Make(Code::kUnavailable, ErrorCode::kNotSupportedForLearner,
              "etcdserver: rpc not supported for learner");
}
absl::Status ErrMemberRemoved() {
  return Make(Code::kPermissionDenied, ErrorCode::kMemberRemoved,
              "the member has been permanently removed from the cluster");
}
bool IsMemberRemoved(const absl::Status& s) { return Is(s, ErrorCode::kMemberRemoved); }

}  // namespace cppetcd::server
