#include "cppetcd/server/errors.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace cppetcd::server {
namespace {

constexpr char kTooLarge[] = "etcdserver: request is too large";
constexpr char kTooMany[] = "etcdserver: too many requests";
constexpr char kNoSpace[] = "etcdserver: mvcc: database space exceeded";
constexpr char kNoLeader[] = "etcdserver: no leader";
constexpr char kStopped[] = "etcdserver: server stopped";
constexpr char kTimeout[] = "etcdserver: request timed out";
constexpr char kLeaderChanged[] = "etcdserver: leader changed";
constexpr char kNotCapable[] = "etcdserver: not capable";
constexpr char kMemberNotFound[] = "etcdserver: member not found";
constexpr char kBadTransferee[] = "etcdserver: bad leader transferee";
constexpr char kNotLeader[] = "etcdserver: not leader";
constexpr char kRemoved[] = "the member has been permanently removed from the cluster";

bool Matches(const absl::Status& s, absl::StatusCode code, std::string_view msg) {
  return s.code() == code && std::string_view(s.message().data(), s.message().size()) == msg;
}

}  // namespace

absl::Status ErrRequestTooLarge() { return absl::InvalidArgumentError(kTooLarge); }
bool IsRequestTooLarge(const absl::Status& s) {
  return Matches(s, absl::StatusCode::kInvalidArgument, kTooLarge);
}
absl::Status ErrTooManyRequests() { return absl::ResourceExhaustedError(kTooMany); }
bool IsTooManyRequests(const absl::Status& s) {
  return Matches(s, absl::StatusCode::kResourceExhausted, kTooMany);
}
absl::Status ErrNoSpace() { return absl::ResourceExhaustedError(kNoSpace); }
bool IsNoSpace(const absl::Status& s) {
  return Matches(s, absl::StatusCode::kResourceExhausted, kNoSpace);
}
absl::Status ErrCorrupt() { return absl::DataLossError("etcdserver: corrupt cluster"); }
bool IsCorrupt(const absl::Status& s) {
  return Matches(s, absl::StatusCode::kDataLoss, "etcdserver: corrupt cluster");
}
absl::Status ErrNoLeader() { return absl::UnavailableError(kNoLeader); }
bool IsNoLeader(const absl::Status& s) { return Matches(s, absl::StatusCode::kUnavailable, kNoLeader); }
absl::Status ErrStopped() { return absl::UnavailableError(kStopped); }
bool IsStopped(const absl::Status& s) { return Matches(s, absl::StatusCode::kUnavailable, kStopped); }
absl::Status ErrTimeout() { return absl::UnavailableError(kTimeout); }
bool IsTimeout(const absl::Status& s) { return Matches(s, absl::StatusCode::kUnavailable, kTimeout); }
absl::Status ErrLeaderChanged() { return absl::UnavailableError(kLeaderChanged); }
bool IsLeaderChanged(const absl::Status& s) {
  return Matches(s, absl::StatusCode::kUnavailable, kLeaderChanged);
}
absl::Status ErrNotCapable() { return absl::UnavailableError(kNotCapable); }
bool IsNotCapable(const absl::Status& s) {
  return Matches(s, absl::StatusCode::kUnavailable, kNotCapable);
}
absl::Status ErrUnimplemented(std::string_view what) {
  return absl::UnimplementedError(absl::StrCat("etcdserver: ", std::string(what), " is not implemented yet"));
}
absl::Status ErrMemberNotFound() { return absl::NotFoundError(kMemberNotFound); }
bool IsMemberNotFound(const absl::Status& s) {
  return Matches(s, absl::StatusCode::kNotFound, kMemberNotFound);
}
absl::Status ErrBadLeaderTransferee() { return absl::FailedPreconditionError(kBadTransferee); }
bool IsBadLeaderTransferee(const absl::Status& s) {
  return Matches(s, absl::StatusCode::kFailedPrecondition, kBadTransferee);
}

absl::Status ErrNotLeader() { return absl::FailedPreconditionError(kNotLeader); }
bool IsNotLeader(const absl::Status& s) {
  return Matches(s, absl::StatusCode::kFailedPrecondition, kNotLeader);
}
absl::Status ErrUnhealthy() { return absl::UnavailableError("etcdserver: unhealthy cluster"); }
absl::Status ErrNotEnoughStartedMembers() {
  return absl::FailedPreconditionError(
      "etcdserver: re-configuration failed due to not enough started members");
}
absl::Status ErrLearnerNotReady() {
  return absl::FailedPreconditionError(
      "etcdserver: can only promote a learner member which is in sync with leader");
}
absl::Status ErrTimeoutLeaderTransfer() {
  return absl::UnavailableError("etcdserver: request timed out, leader transfer took too long");
}
absl::Status ErrInvalidPeerUrls() {
  return absl::InvalidArgumentError("etcdserver: given member URLs are invalid");
}
absl::Status ErrPeerUrlExists() {
  return absl::FailedPreconditionError("membership: peerURL exists");
}
absl::Status ErrIdRemoved() { return absl::NotFoundError("membership: ID removed"); }
absl::Status ErrIdExists() { return absl::FailedPreconditionError("membership: ID exists"); }
absl::Status ErrTooManyLearners() {
  return absl::FailedPreconditionError("membership: too many learner members in cluster");
}
absl::Status ErrMemberNotLearner() {
  return absl::FailedPreconditionError("membership: can only promote a learner member");
}
absl::Status ErrNotSupportedForLearner() {
  return absl::UnavailableError("etcdserver: rpc not supported for learner");
}
absl::Status ErrMemberRemoved() { return absl::PermissionDeniedError(kRemoved); }
bool IsMemberRemoved(const absl::Status& s) {
  return Matches(s, absl::StatusCode::kPermissionDenied, kRemoved);
}

}  // namespace cppetcd::server
