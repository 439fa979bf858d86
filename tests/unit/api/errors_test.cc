#include "cppetcd/api/errors.h"

#include <set>
#include <string>

#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "cppetcd/auth/errors.h"
#include "cppetcd/lease/lessor.h"
#include "cppetcd/mvcc/errors.h"
#include "cppetcd/mvcc/watchable_store.h"
#include "cppetcd/raft/storage.h"
#include "cppetcd/server/errors.h"
#include "cppetcd/server/validate.h"
#include "cppetcd/util/error.h"

namespace cppetcd::api {
namespace {

using grpc::StatusCode;

struct Case {
  absl::Status internal;  // as the owning module raises it
  StatusCode code;
  std::string message;
};

// Every error with an etcd gRPC answer, raised by its module, against etcd
// 3.4's rpctypes/error.go and v3rpc/util.go toGRPCErrorMap (codes and texts
// copied from there by hand). Clients match on these texts.
std::vector<Case> EtcdCases() {
  return {
      // rpctypes: request validation.
      {server::ErrEmptyKey(), StatusCode::INVALID_ARGUMENT, "etcdserver: key is not provided"},
      {server::ErrKeyNotFound(), StatusCode::INVALID_ARGUMENT, "etcdserver: key not found"},
      {server::ErrValueProvided(), StatusCode::INVALID_ARGUMENT, "etcdserver: value is provided"},
      {server::ErrLeaseProvided(), StatusCode::INVALID_ARGUMENT, "etcdserver: lease is provided"},
      {server::ErrTooManyOps(), StatusCode::INVALID_ARGUMENT,
       "etcdserver: too many operations in txn request"},
      {server::ErrDuplicateKey(), StatusCode::INVALID_ARGUMENT,
       "etcdserver: duplicate key given in txn request"},
      // mvcc.
      {mvcc::ErrCompacted(), StatusCode::OUT_OF_RANGE,
       "etcdserver: mvcc: required revision has been compacted"},
      {mvcc::ErrFutureRev(), StatusCode::OUT_OF_RANGE,
       "etcdserver: mvcc: required revision is a future revision"},
      // Lease.
      {lease::ErrLeaseNotFound(), StatusCode::NOT_FOUND, "etcdserver: requested lease not found"},
      {lease::ErrLeaseExists(), StatusCode::FAILED_PRECONDITION, "etcdserver: lease already exists"},
      {lease::ErrLeaseTTLTooLarge(), StatusCode::OUT_OF_RANGE, "etcdserver: too large lease TTL"},
      // Membership.
      {server::ErrIdRemoved(), StatusCode::NOT_FOUND, "etcdserver: member not found"},
      {server::ErrMemberNotFound(), StatusCode::NOT_FOUND, "etcdserver: member not found"},
      {server::ErrIdExists(), StatusCode::FAILED_PRECONDITION, "etcdserver: member ID already exist"},
      {server::ErrPeerUrlExists(), StatusCode::FAILED_PRECONDITION,
       "etcdserver: Peer URLs already exists"},
      {server::ErrMemberNotLearner(), StatusCode::FAILED_PRECONDITION,
       "etcdserver: can only promote a learner member"},
      {server::ErrTooManyLearners(), StatusCode::FAILED_PRECONDITION,
       "etcdserver: too many learner members in cluster"},
      {server::ErrNotEnoughStartedMembers(), StatusCode::FAILED_PRECONDITION,
       "etcdserver: re-configuration failed due to not enough started members"},
      {server::ErrLearnerNotReady(), StatusCode::FAILED_PRECONDITION,
       "etcdserver: can only promote a learner member which is in sync with leader"},
      {server::ErrInvalidPeerUrls(), StatusCode::INVALID_ARGUMENT,
       "etcdserver: given member URLs are invalid"},
      // Server.
      {server::ErrRequestTooLarge(), StatusCode::INVALID_ARGUMENT,
       "etcdserver: request is too large"},
      {server::ErrNoSpace(), StatusCode::RESOURCE_EXHAUSTED,
       "etcdserver: mvcc: database space exceeded"},
      {server::ErrTooManyRequests(), StatusCode::RESOURCE_EXHAUSTED,
       "etcdserver: too many requests"},
      {server::ErrNoLeader(), StatusCode::UNAVAILABLE, "etcdserver: no leader"},
      {server::ErrNotLeader(), StatusCode::FAILED_PRECONDITION, "etcdserver: not leader"},
      {server::ErrLeaderChanged(), StatusCode::UNAVAILABLE, "etcdserver: leader changed"},
      {server::ErrNotCapable(), StatusCode::UNAVAILABLE, "etcdserver: not capable"},
      {server::ErrStopped(), StatusCode::UNAVAILABLE, "etcdserver: server stopped"},
      {server::ErrTimeout(), StatusCode::UNAVAILABLE, "etcdserver: request timed out"},
      {server::ErrTimeoutDueToLeaderFail(), StatusCode::UNAVAILABLE,
       "etcdserver: request timed out, possibly due to previous leader failure"},
      {server::ErrTimeoutDueToConnectionLost(), StatusCode::UNAVAILABLE,
       "etcdserver: request timed out, possibly due to connection lost"},
      {server::ErrTimeoutWaitAppliedIndex(), StatusCode::UNAVAILABLE,
       "etcdserver: request timed out, waiting for the applied index took too long"},
      {server::ErrUnhealthy(), StatusCode::UNAVAILABLE, "etcdserver: unhealthy cluster"},
      {server::ErrCorrupt(), StatusCode::DATA_LOSS, "etcdserver: corrupt cluster"},
      {server::ErrNotSupportedForLearner(), StatusCode::UNAVAILABLE,
       "etcdserver: rpc not supported for learner"},
      {server::ErrBadLeaderTransferee(), StatusCode::FAILED_PRECONDITION,
       "etcdserver: bad leader transferee"},
      // Auth.
      {auth::ErrRootUserNotExist(), StatusCode::FAILED_PRECONDITION,
       "etcdserver: root user does not exist"},
      {auth::ErrRootRoleNotExist(), StatusCode::FAILED_PRECONDITION,
       "etcdserver: root user does not have root role"},
      {auth::ErrUserAlreadyExist(), StatusCode::FAILED_PRECONDITION,
       "etcdserver: user name already exists"},
      {auth::ErrUserEmpty(), StatusCode::INVALID_ARGUMENT, "etcdserver: user name is empty"},
      {auth::ErrUserNotFound(), StatusCode::FAILED_PRECONDITION, "etcdserver: user name not found"},
      {auth::ErrRoleAlreadyExist(), StatusCode::FAILED_PRECONDITION,
       "etcdserver: role name already exists"},
      {auth::ErrRoleNotFound(), StatusCode::FAILED_PRECONDITION, "etcdserver: role name not found"},
      {auth::ErrRoleEmpty(), StatusCode::INVALID_ARGUMENT, "etcdserver: role name is empty"},
      {auth::ErrAuthFailed(), StatusCode::INVALID_ARGUMENT,
       "etcdserver: authentication failed, invalid user ID or password"},
      {auth::ErrPermissionDenied(), StatusCode::PERMISSION_DENIED, "etcdserver: permission denied"},
      {auth::ErrRoleNotGranted(), StatusCode::FAILED_PRECONDITION,
       "etcdserver: role is not granted to the user"},
      {auth::ErrPermissionNotGranted(), StatusCode::FAILED_PRECONDITION,
       "etcdserver: permission is not granted to the role"},
      {auth::ErrAuthNotEnabled(), StatusCode::FAILED_PRECONDITION,
       "etcdserver: authentication is not enabled"},
      {auth::ErrInvalidAuthToken(), StatusCode::UNAUTHENTICATED, "etcdserver: invalid auth token"},
      {auth::ErrInvalidAuthMgmt(), StatusCode::INVALID_ARGUMENT,
       "etcdserver: invalid auth management"},
      {auth::ErrAuthOldRevision(), StatusCode::INVALID_ARGUMENT,
       "etcdserver: revision of auth store is old"},
  };
}

// cppetcd's own answers where etcd 3.4 has no mapping (kept as they were).
std::vector<Case> CppetcdCases() {
  return {
      // etcd 3.5's sort check, answered as the other request errors.
      {server::ErrInvalidSortOption(), StatusCode::INVALID_ARGUMENT,
       "etcdserver: invalid sort option"},
      // etcd 3.4 sends this one as UNKNOWN; cppetcd as UNAVAILABLE.
      {server::ErrTimeoutLeaderTransfer(), StatusCode::UNAVAILABLE,
       "etcdserver: request timed out, leader transfer took too long"},
  };
}

TEST(ErrorsTest, MapsEveryEtcdErrorToEtcdsStatus) {
  for (const auto& cases : {EtcdCases(), CppetcdCases()}) {
    for (const Case& c : cases) {
      ASSERT_NE(util::ErrorCodeOf(c.internal), util::ErrorCode::kNone) << c.internal;
      grpc::Status got = ToGrpcStatus(c.internal);
      EXPECT_EQ(got.error_code(), c.code) << c.internal;
      EXPECT_EQ(got.error_message(), c.message) << c.internal;
      EXPECT_TRUE(got.error_details().empty());
    }
  }
}

TEST(ErrorsTest, TableHasExactlyTheCasesAbove) {
  std::set<util::ErrorCode> expected;
  for (const auto& cases : {EtcdCases(), CppetcdCases()}) {
    for (const Case& c : cases) expected.insert(util::ErrorCodeOf(c.internal));
  }
  expected.insert(util::ErrorCode::kWatchCanceled);  // GrpcWatchCanceled, below
  std::set<util::ErrorCode> table;
  for (const ErrorMapping& row : ErrorTable()) {
    EXPECT_TRUE(table.insert(row.error).second) << util::ErrorCodeName(row.error);
    EXPECT_TRUE(row.grpc_message.starts_with("etcdserver: ")) << row.grpc_message;
    EXPECT_NE(row.code, StatusCode::OK);
    EXPECT_EQ(EtcdGrpcError(row.error)->grpc_message, row.grpc_message);
  }
  EXPECT_EQ(table, expected);
  EXPECT_FALSE(EtcdGrpcError(util::ErrorCode::kNone).has_value());
}

// The point of typed errors: text that looks like an etcd error, without the
// type, is not that error.
TEST(ErrorsTest, UntypedLookAlikesPassThrough) {
  for (const auto& cases : {EtcdCases(), CppetcdCases()}) {
    for (const Case& c : cases) {
      const absl::Status look_alike(c.internal.code(), c.internal.message());
      grpc::Status got = ToGrpcStatus(look_alike);
      EXPECT_EQ(static_cast<int>(got.error_code()), static_cast<int>(c.internal.code()));
      EXPECT_EQ(got.error_message(), std::string(c.internal.message()));
      // Even etcd's own gRPC text, or a cause wrapped in context.
      const absl::Status grpc_text(absl::StatusCode::kUnknown, c.message);
      EXPECT_EQ(ToGrpcStatus(grpc_text).error_code(), StatusCode::UNKNOWN) << c.message;
      EXPECT_EQ(ToGrpcStatus(grpc_text).error_message(), c.message);
    }
  }
  grpc::Status wrapped = ToGrpcStatus(
      absl::OutOfRangeError("range at 3: mvcc: required revision has been compacted"));
  EXPECT_EQ(wrapped.error_message(), "range at 3: mvcc: required revision has been compacted");
  // And the modules' predicates do not accept the look-alikes either.
  EXPECT_FALSE(mvcc::IsCompacted(absl::OutOfRangeError("mvcc: required revision has been compacted")));
  EXPECT_FALSE(lease::IsLeaseNotFound(absl::NotFoundError("lease not found")));
  EXPECT_FALSE(auth::IsErrPermissionDenied(absl::PermissionDeniedError("auth: permission denied")));
  EXPECT_FALSE(server::IsNotLeader(absl::FailedPreconditionError("etcdserver: not leader")));
  EXPECT_FALSE(auth::IsAuthError(absl::UnauthenticatedError("auth: invalid auth token")));
  EXPECT_TRUE(auth::IsAuthError(auth::ErrInvalidAuthToken()));
  EXPECT_FALSE(auth::IsAuthError(server::ErrNoLeader()));
}

TEST(ErrorsTest, TypedErrorsWithoutEtcdAnswerPassThrough) {
  for (const absl::Status& s :
       {mvcc::ErrWatcherNotExist(), mvcc::ErrTooManyWatchers(), lease::ErrNotPrimary(),
        auth::ErrNoPasswordUser(), auth::ErrInvalidAuthOpts(), server::ErrMemberRemoved(),
        server::ErrUnimplemented("x"), raft::ErrProposalDropped()}) {
    grpc::Status got = ToGrpcStatus(s);
    EXPECT_EQ(static_cast<int>(got.error_code()), static_cast<int>(s.code())) << s;
    EXPECT_EQ(got.error_message(), std::string(s.message())) << s;
  }
  // etcd 3.4 answers the no-password user's attempt as UNKNOWN with the text.
  EXPECT_EQ(ToGrpcStatus(auth::ErrNoPasswordUser()).error_code(), StatusCode::UNKNOWN);
  EXPECT_EQ(ToGrpcStatus(server::ErrUnimplemented("x")).error_message(),
            "etcdserver: x is not implemented yet");
}

TEST(ErrorsTest, OkAndUnknownErrors) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  grpc::Status unknown = ToGrpcStatus(absl::InternalError("disk on fire"));
  EXPECT_EQ(unknown.error_code(), StatusCode::INTERNAL);
  EXPECT_EQ(unknown.error_message(), "disk on fire");
  EXPECT_EQ(ToGrpcStatus(absl::DeadlineExceededError("deadline")).error_code(),
            StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(ToGrpcStatus(absl::CancelledError("context canceled")).error_code(),
            StatusCode::CANCELLED);
}

TEST(ErrorsTest, ApiStatuses) {
  EXPECT_EQ(GrpcNoLeader().error_code(), StatusCode::UNAVAILABLE);
  EXPECT_EQ(GrpcNoLeader().error_message(), "etcdserver: no leader");
  EXPECT_EQ(GrpcNotForLearner().error_code(), StatusCode::UNAVAILABLE);
  EXPECT_EQ(GrpcNotForLearner().error_message(), "etcdserver: rpc not supported for learner");
  EXPECT_EQ(GrpcWatchCanceled().error_code(), StatusCode::CANCELLED);
  EXPECT_EQ(GrpcWatchCanceled().error_message(), "etcdserver: watch canceled");
  EXPECT_EQ(GrpcRequestTooLarge().error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(GrpcRequestTooLarge().error_message(), "etcdserver: request is too large");
}

}  // namespace
}  // namespace cppetcd::api
