#include "cppetcd/auth/errors.h"

namespace cppetcd::auth {
namespace {

constexpr char kPermissionDenied[] = "auth: permission denied";
constexpr char kInvalidAuthToken[] = "auth: invalid auth token";
constexpr char kAuthOldRevision[] = "auth: revision in header is old";
constexpr char kUserEmpty[] = "auth: user name is empty";
constexpr char kAuthNotEnabled[] = "auth: authentication is not enabled";

bool HasMessage(const absl::Status& s, const char* msg) { return !s.ok() && s.message() == msg; }

}  // namespace

absl::Status ErrRootUserNotExist() {
  return absl::FailedPreconditionError("auth: root user does not exist");
}
absl::Status ErrRootRoleNotExist() {
  return absl::FailedPreconditionError("auth: root user does not have root role");
}
absl::Status ErrUserAlreadyExist() { return absl::AlreadyExistsError("auth: user already exists"); }
absl::Status ErrUserEmpty() { return absl::InvalidArgumentError(kUserEmpty); }
absl::Status ErrUserNotFound() { return absl::NotFoundError("auth: user not found"); }
absl::Status ErrRoleAlreadyExist() { return absl::AlreadyExistsError("auth: role already exists"); }
absl::Status ErrRoleNotFound() { return absl::NotFoundError("auth: role not found"); }
absl::Status ErrRoleEmpty() { return absl::InvalidArgumentError("auth: role name is empty"); }
absl::Status ErrAuthFailed() {
  return absl::InvalidArgumentError("auth: authentication failed, invalid user ID or password");
}
absl::Status ErrNoPasswordUser() {
  return absl::UnknownError("auth: authentication failed, password was given for no password user");
}
absl::Status ErrPermissionDenied() { return absl::PermissionDeniedError(kPermissionDenied); }
absl::Status ErrRoleNotGranted() {
  return absl::FailedPreconditionError("auth: role is not granted to the user");
}
absl::Status ErrPermissionNotGranted() {
  return absl::FailedPreconditionError("auth: permission is not granted to the role");
}
absl::Status ErrAuthNotEnabled() { return absl::FailedPreconditionError(kAuthNotEnabled); }
absl::Status ErrAuthOldRevision() { return absl::InvalidArgumentError(kAuthOldRevision); }
absl::Status ErrInvalidAuthToken() { return absl::UnauthenticatedError(kInvalidAuthToken); }
absl::Status ErrInvalidAuthOpts() { return absl::InvalidArgumentError("auth: invalid auth options"); }
absl::Status ErrInvalidAuthMgmt() {
  return absl::InvalidArgumentError("auth: invalid auth management");
}
absl::Status ErrInvalidAuthMethod() {
  return absl::InvalidArgumentError("auth: invalid auth signature method");
}
absl::Status ErrMissingKey() { return absl::InvalidArgumentError("auth: missing key data"); }
absl::Status ErrVerifyOnly() {
  return absl::FailedPreconditionError("auth: token signing attempted with verify-only key");
}

bool IsErrPermissionDenied(const absl::Status& s) { return HasMessage(s, kPermissionDenied); }
bool IsInvalidAuthToken(const absl::Status& s) { return HasMessage(s, kInvalidAuthToken); }
bool IsAuthOldRevision(const absl::Status& s) { return HasMessage(s, kAuthOldRevision); }
bool IsUserEmpty(const absl::Status& s) { return HasMessage(s, kUserEmpty); }
bool IsAuthNotEnabled(const absl::Status& s) { return HasMessage(s, kAuthNotEnabled); }

}  // namespace cppetcd::auth
