// Errors of the auth module. Each carries a typed code (util/error.h), which
// the predicates below test, and etcd 3.4's auth package text (auth/store.go)
// for display; api/errors.cc maps the code to etcd's gRPC status (code and
// "etcdserver: ..." message) that etcdctl and the client libraries match.
#ifndef CPPETCD_AUTH_ERRORS_H_
#define CPPETCD_AUTH_ERRORS_H_

#include "absl/status/status.h"

namespace cppetcd::auth {

absl::Status ErrRootUserNotExist();      // "auth: root user does not exist"
absl::Status ErrRootRoleNotExist();      // "auth: root user does not have root role"
absl::Status ErrUserAlreadyExist();      // "auth: user already exists"
absl::Status ErrUserEmpty();             // "auth: user name is empty"
absl::Status ErrUserNotFound();          // "auth: user not found"
absl::Status ErrRoleAlreadyExist();      // "auth: role already exists"
absl::Status ErrRoleNotFound();          // "auth: role not found"
absl::Status ErrRoleEmpty();             // "auth: role name is empty"
absl::Status ErrAuthFailed();            // "auth: authentication failed, invalid user ID or password"
// "auth: authentication failed, password was given for no password user";
// etcd 3.4 has no gRPC mapping for it: clients see UNKNOWN with this text.
absl::Status ErrNoPasswordUser();
absl::Status ErrPermissionDenied();      // "auth: permission denied"
absl::Status ErrRoleNotGranted();        // "auth: role is not granted to the user"
absl::Status ErrPermissionNotGranted();  // "auth: permission is not granted to the role"
absl::Status ErrAuthNotEnabled();        // "auth: authentication is not enabled"
absl::Status ErrAuthOldRevision();       // "auth: revision in header is old"
absl::Status ErrInvalidAuthToken();      // "auth: invalid auth token"
absl::Status ErrInvalidAuthOpts();       // "auth: invalid auth options"
absl::Status ErrInvalidAuthMgmt();       // "auth: invalid auth management"
absl::Status ErrInvalidAuthMethod();     // "auth: invalid auth signature method"
absl::Status ErrMissingKey();            // "auth: missing key data"
absl::Status ErrVerifyOnly();            // "auth: token signing attempted with verify-only key"

bool IsErrPermissionDenied(const absl::Status& s);
bool IsInvalidAuthToken(const absl::Status& s);
bool IsAuthOldRevision(const absl::Status& s);
bool IsUserEmpty(const absl::Status& s);
bool IsAuthNotEnabled(const absl::Status& s);
// Any of the errors above (etcd: an error of the auth package).
bool IsAuthError(const absl::Status& s);

}  // namespace cppetcd::auth

#endif  // CPPETCD_AUTH_ERRORS_H_
