#include "cppetcd/api/errors.h"

#include <string>

namespace cppetcd::api {
namespace {

using grpc::StatusCode;
using util::ErrorCode;

grpc::Status FromCode(ErrorCode error) {
  const std::optional<ErrorMapping> m = EtcdGrpcError(error);
  return grpc::Status(m->code, std::string(m->grpc_message));
}

}  // namespace

// etcd 3.4's answers (rpctypes/error.go, v3rpc/util.go toGRPCErrorMap).
// Every code is listed, so that -Wswitch flags a new one without an entry.
std::optional<ErrorMapping> EtcdGrpcError(ErrorCode error) {
  auto to = [error](StatusCode code, std::string_view message) {
    return std::optional<ErrorMapping>(ErrorMapping{error, code, message});
  };
  switch (error) {
    // Request validation (server/validate.h).
    case ErrorCode::kEmptyKey:
      return to(StatusCode::INVALID_ARGUMENT, "etcdserver: key is not provided");
    case ErrorCode::kKeyNotFound:
      return to(StatusCode::INVALID_ARGUMENT, "etcdserver: key not found");
    case ErrorCode::kValueProvided:
      return to(StatusCode::INVALID_ARGUMENT, "etcdserver: value is provided");
    case ErrorCode::kLeaseProvided:
      return to(StatusCode::INVALID_ARGUMENT, "etcdserver: lease is provided");
    case ErrorCode::kTooManyOps:
      return to(StatusCode::INVALID_ARGUMENT, "etcdserver: too many operations in txn request");
    case ErrorCode::kDuplicateKey:
      return to(StatusCode::INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request");
    case ErrorCode::kInvalidSortOption:
      return to(StatusCode::INVALID_ARGUMENT, "etcdserver: invalid sort option");
    // mvcc.
    case ErrorCode::kCompacted:
      return to(StatusCode::OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted");
    case ErrorCode::kFutureRev:
      return to(StatusCode::OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision");
    // Lease.
    case ErrorCode::kLeaseNotFound:
      return to(StatusCode::NOT_FOUND, "etcdserver: requested lease not found");
    case ErrorCode::kLeaseExists:
      return to(StatusCode::FAILED_PRECONDITION, "etcdserver: lease already exists");
    case ErrorCode::kLeaseTTLTooLarge:
      return to(StatusCode::OUT_OF_RANGE, "etcdserver: too large lease TTL");
    // Auth.
    case ErrorCode::kRootUserNotExist:
      return to(StatusCode::FAILED_PRECONDITION, "etcdserver: root user does not exist");
    case ErrorCode::kRootRoleNotExist:
      return to(StatusCode::FAILED_PRECONDITION, "etcdserver: root user does not have root role");
    case ErrorCode::kUserAlreadyExist:
      return to(StatusCode::FAILED_PRECONDITION, "etcdserver: user name already exists");
    case ErrorCode::kUserEmpty:
      return to(StatusCode::INVALID_ARGUMENT, "etcdserver: user name is empty");
    case ErrorCode::kUserNotFound:
      return to(StatusCode::FAILED_PRECONDITION, "etcdserver: user name not found");
    case ErrorCode::kRoleAlreadyExist:
      return to(StatusCode::FAILED_PRECONDITION, "etcdserver: role name already exists");
    case ErrorCode::kRoleNotFound:
      return to(StatusCode::FAILED_PRECONDITION, "etcdserver: role name not found");
    case ErrorCode::kRoleEmpty:
      return to(StatusCode::INVALID_ARGUMENT, "etcdserver: role name is empty");
    case ErrorCode::kAuthFailed:
      return to(StatusCode::INVALID_ARGUMENT,
                "etcdserver: authentication failed, invalid user ID or password");
    case ErrorCode::kPermissionDenied:
      return to(StatusCode::PERMISSION_DENIED, "etcdserver: permission denied");
    case ErrorCode::kRoleNotGranted:
      return to(StatusCode::FAILED_PRECONDITION, "etcdserver: role is not granted to the user");
    case ErrorCode::kPermissionNotGranted:
      return to(StatusCode::FAILED_PRECONDITION,
                "etcdserver: permission is not granted to the role");
    case ErrorCode::kAuthNotEnabled:
      return to(StatusCode::FAILED_PRECONDITION, "etcdserver: authentication is not enabled");
    case ErrorCode::kInvalidAuthToken:
      return to(StatusCode::UNAUTHENTICATED, "etcdserver: invalid auth token");
    case ErrorCode::kInvalidAuthMgmt:
      return to(StatusCode::INVALID_ARGUMENT, "etcdserver: invalid auth management");
    case ErrorCode::kAuthOldRevision:
      return to(StatusCode::INVALID_ARGUMENT, "etcdserver: revision of auth store is old");
    // Server.
    case ErrorCode::kNoSpace:
      return to(StatusCode::RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded");
    case ErrorCode::kRequestTooLarge:
      return to(StatusCode::INVALID_ARGUMENT, "etcdserver: request is too large");
    case ErrorCode::kTooManyRequests:
      return to(StatusCode::RESOURCE_EXHAUSTED, "etcdserver: too many requests");
    case ErrorCode::kNoLeader:
      return to(StatusCode::UNAVAILABLE, "etcdserver: no leader");
    case ErrorCode::kNotLeader:
      return to(StatusCode::FAILED_PRECONDITION, "etcdserver: not leader");
    case ErrorCode::kLeaderChanged:
      return to(StatusCode::UNAVAILABLE, "etcdserver: leader changed");
    case ErrorCode::kNotCapable:
      return to(StatusCode::UNAVAILABLE, "etcdserver: not capable");
    case ErrorCode::kStopped:
      return to(StatusCode::UNAVAILABLE, "etcdserver: server stopped");
    case ErrorCode::kTimeout:
      return to(StatusCode::UNAVAILABLE, "etcdserver: request timed out");
    case ErrorCode::kTimeoutDueToLeaderFail:
      return to(StatusCode::UNAVAILABLE,
                "etcdserver: request timed out, possibly due to previous leader failure");
    case ErrorCode::kTimeoutDueToConnectionLost:
      return to(StatusCode::UNAVAILABLE,
                "etcdserver: request timed out, possibly due to connection lost");
    case ErrorCode::kTimeoutWaitAppliedIndex:
      return to(StatusCode::UNAVAILABLE,
                "etcdserver: request timed out, waiting for the applied index took too long");
    case ErrorCode::kUnhealthy:
      return to(StatusCode::UNAVAILABLE, "etcdserver: unhealthy cluster");
    case ErrorCode::kCorrupt:
      return to(StatusCode::DATA_LOSS, "etcdserver: corrupt cluster");
    case ErrorCode::kBadLeaderTransferee:
      return to(StatusCode::FAILED_PRECONDITION, "etcdserver: bad leader transferee");
    case ErrorCode::kTimeoutLeaderTransfer:
      return to(StatusCode::UNAVAILABLE,
                "etcdserver: request timed out, leader transfer took too long");
    case ErrorCode::kNotSupportedForLearner:
      return to(StatusCode::UNAVAILABLE, "etcdserver: rpc not supported for learner");
    case ErrorCode::kNotEnoughStartedMembers:
      return to(StatusCode::FAILED_PRECONDITION,
                "etcdserver: re-configuration failed due to not enough started members");
    case ErrorCode::kLearnerNotReady:
      return to(StatusCode::FAILED_PRECONDITION,
                "etcdserver: can only promote a learner member which is in sync with leader");
    case ErrorCode::kInvalidPeerUrls:
      return to(StatusCode::INVALID_ARGUMENT, "etcdserver: given member URLs are invalid");
    // Membership.
    case ErrorCode::kMemberNotFound:
    case ErrorCode::kIdRemoved:
      return to(StatusCode::NOT_FOUND, "etcdserver: member not found");
    case ErrorCode::kIdExists:
      return to(StatusCode::FAILED_PRECONDITION, "etcdserver: member ID already exist");
    case ErrorCode::kPeerUrlExists:
      return to(StatusCode::FAILED_PRECONDITION, "etcdserver: Peer URLs already exists");
    case ErrorCode::kMemberNotLearner:
      return to(StatusCode::FAILED_PRECONDITION, "etcdserver: can only promote a learner member");
    case ErrorCode::kTooManyLearners:
      return to(StatusCode::FAILED_PRECONDITION,
                "etcdserver: too many learner members in cluster");
    // Streams.
    case ErrorCode::kWatchCanceled:
      return to(StatusCode::CANCELLED, "etcdserver: watch canceled");
    // No etcd gRPC error: the status keeps its code and text (internal
    // errors that reach no client, or cppetcd's own answers).
    case ErrorCode::kNone:
    case ErrorCode::kWatcherNotExist:
    case ErrorCode::kEmptyWatcherRange:
    case ErrorCode::kWatcherDuplicateID:
    case ErrorCode::kTooManyWatchers:
    case ErrorCode::kWatchStreamClosed:
    case ErrorCode::kNotPrimary:
    case ErrorCode::kNoPasswordUser:
    case ErrorCode::kInvalidAuthOpts:
    case ErrorCode::kInvalidAuthMethod:
    case ErrorCode::kMissingKey:
    case ErrorCode::kVerifyOnly:
    case ErrorCode::kUnimplemented:
    case ErrorCode::kMemberRemoved:
    case ErrorCode::kRaftCompacted:
    case ErrorCode::kSnapOutOfDate:
    case ErrorCode::kRaftUnavailable:
    case ErrorCode::kSnapshotTemporarilyUnavailable:
    case ErrorCode::kProposalDropped:
    case ErrorCode::kStepLocalMsg:
    case ErrorCode::kStepPeerNotFound:
    case ErrorCode::kInvalidPeerMessage:
    case ErrorCode::kNoSnapshot:
    case ErrorCode::kFlagNotDefined:
      return std::nullopt;
  }
  return std::nullopt;
}

const std::vector<ErrorMapping>& ErrorTable() {
  static const auto* table = [] {
    auto* rows = new std::vector<ErrorMapping>();
    for (ErrorCode e : util::AllErrorCodes()) {
      if (std::optional<ErrorMapping> m = EtcdGrpcError(e)) rows->push_back(*m);
    }
    return rows;
  }();
  return *table;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  if (std::optional<ErrorMapping> m = EtcdGrpcError(util::ErrorCodeOf(status))) {
    return grpc::Status(m->code, std::string(m->grpc_message));
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

grpc::Status GrpcNoLeader() { return FromCode(ErrorCode::kNoLeader); }
grpc::Status GrpcNotForLearner() { return FromCode(ErrorCode::kNotSupportedForLearner); }
grpc::Status GrpcWatchCanceled() { return FromCode(ErrorCode::kWatchCanceled); }
grpc::Status GrpcRequestTooLarge() { return FromCode(ErrorCode::kRequestTooLarge); }

}  // namespace cppetcd::api
