#include "cppetcd/auth/errors.h"

#include "cppetcd/util/error.h"

namespace cppetcd::auth {
namespace {

using util::ErrorCode;

absl::Status Make(absl::StatusCode code, ErrorCode error, std::string_view message) {
  return util::MakeError(code, error, message);
}

}  // namespace

absl::Status ErrRootUserNotExist() {
  return Make(absl::StatusCode::kFailedPrecondition, ErrorCode::kRootUserNotExist,
              "auth: root user does not exist");
}
absl::Status ErrRootRoleNotExist() {
  return Make(absl::StatusCode::kFailedPrecondition, ErrorCode::kRootRoleNotExist,
              "auth: root user does not have root role");
}
absl::Status ErrUserAlreadyExist() {
  return Make(absl::StatusCode::kAlreadyExists, ErrorCode::kUserAlreadyExist,
              "auth: user already exists");
}
absl::Status ErrUserEmpty() {
  return Make(absl::StatusCode::kInvalidArgument, ErrorCode::kUserEmpty,
              "auth: user name is empty");
}
absl::Status ErrUserNotFound() {
  return Make(absl::StatusCode::kNotFound, ErrorCode::kUserNotFound, "auth: user not found");
}
absl::Status ErrRoleAlreadyExist() {
  return Make(absl::StatusCode::kAlreadyExists, ErrorCode::kRoleAlreadyExist,
              "auth: role already exists");
}
absl::Status ErrRoleNotFound() {
  return Make(absl::StatusCode::kNotFound, ErrorCode::kRoleNotFound, "auth: role not found");
}
absl::Status ErrRoleEmpty() {
  return Make(absl::StatusCode::kInvalidArgument, ErrorCode::kRoleEmpty,
              "auth: role name is empty");
}
absl::Status ErrAuthFailed() {
  return Make(absl::StatusCode::kInvalidArgument, ErrorCode::kAuthFailed,
              "auth: authentication failed, invalid user ID or password");
}
absl::Status ErrNoPasswordUser() {
  return Make(absl::StatusCode::kUnknown, ErrorCode::kNoPasswordUser,
              "auth: authentication failed, password was given for no password user");
}
absl::Status ErrPermissionDenied() {
  return Make(absl::StatusCode::kPermissionDenied, ErrorCode::kPermissionDenied,
              "auth: permission denied");
}
absl::Status ErrRoleNotGranted() {
  return Make(absl::StatusCode::kFailedPrecondition, ErrorCode::kRoleNotGranted,
              "auth: role is not granted to the user");
}
absl::Status ErrPermissionNotGranted() {
  return Make(absl::StatusCode::kFailedPrecondition, ErrorCode::kPermissionNotGranted,
              "auth: permission is not granted to the role");
}
absl::Status ErrAuthNotEnabled() {
  return Make(absl::StatusCode::kFailedPrecondition, ErrorCode::kAuthNotEnabled,
              "auth: authentication is not enabled");
}
absl::Status ErrAuthOldRevision() {
  return Make(absl::StatusCode::kInvalidArgument, ErrorCode::kAuthOldRevision,
              "auth: revision in header is old");
}
absl::Status ErrInvalidAuthToken() {
  return Make(absl::StatusCode::kUnauthenticated, ErrorCode::kInvalidAuthToken,
              "auth: invalid auth token");
}
absl::Status ErrInvalidAuthOpts() {
  return Make(absl::StatusCode::kInvalidArgument, ErrorCode::kInvalidAuthOpts,
              "auth: invalid auth options");
}
absl::Status ErrInvalidAuthMgmt() {
  return Make(absl::StatusCode::kInvalidArgument, ErrorCode::kInvalidAuthMgmt,
              "auth: invalid auth management");
}
absl::Status ErrInvalidAuthMethod() {
  return Make(absl::StatusCode::kInvalidArgument, ErrorCode::kInvalidAuthMethod,
              "auth: invalid auth signature method");
}
absl::Status ErrMissingKey() {
  return Make(absl::StatusCode::kInvalidArgument, ErrorCode::kMissingKey,
              "auth: missing key data");
}
absl::Status ErrVerifyOnly() {
  return Make(absl::StatusCode::kFailedPrecondition, ErrorCode::kVerifyOnly,
              "auth: token signing attempted with verify-only key");
}

bool IsErrPermissionDenied(const absl::Status& s) {
  return util::HasErrorCode(s, ErrorCode::kPermissionDenied);
}
bool IsInvalidAuthToken(const absl::Status& s) {
  return util::HasErrorCode(s, ErrorCode::kInvalidAuthToken);
}
bool IsAuthOldRevision(const absl::Status& s) {
  return util::HasErrorCode(s, ErrorCode::kAuthOldRevision);
}
bool IsUserEmpty(const absl::Status& s) { return util::HasErrorCode(s, ErrorCode::kUserEmpty); }
bool IsAuthNotEnabled(const absl::Status& s) {
  return util::HasErrorCode(s, ErrorCode::kAuthNotEnabled);
}

bool IsAuthError(const absl::Status& s) {
  switch (util::ErrorCodeOf(s)) {
    case ErrorCode::kRootUserNotExist:
    case ErrorCode::kRootRoleNotExist:
    case ErrorCode::kUserAlreadyExist:
    case ErrorCode::kUserEmpty:
    case ErrorCode::kUserNotFound:
    case ErrorCode::kRoleAlreadyExist:
    case ErrorCode::kRoleNotFound:
    case ErrorCode::kRoleEmpty:
    case ErrorCode::kAuthFailed:
    case ErrorCode::kNoPasswordUser:
    case ErrorCode::kPermissionDenied:
    case ErrorCode::kRoleNotGranted:
    case ErrorCode::kPermissionNotGranted:
    case ErrorCode::kAuthNotEnabled:
    case ErrorCode::kAuthOldRevision:
    case ErrorCode::kInvalidAuthToken:
    case ErrorCode::kInvalidAuthOpts:
    case ErrorCode::kInvalidAuthMgmt:
    case ErrorCode::kInvalidAuthMethod:
    case ErrorCode::kMissingKey:
    case ErrorCode::kVerifyOnly:
      return true;
    default:
      return false;
  }
}

}  // namespace cppetcd::auth
