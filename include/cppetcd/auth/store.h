// AuthStore: etcd 3.4's authentication and authorization state
// (auth/store.go) over the storage backend.
//
// Persistence, as etcd's bbolt buckets (so snapshots migrated from etcd keep
// their users): bucket "auth" holds "authEnabled" (one byte, 1 or 0) and
// "authRevision" (8 bytes big-endian, starts at 1, +1 on every change);
// "authUsers" maps a user name to an authpb.User (password = bcrypt hash,
// roles sorted); "authRoles" maps a role name to an authpb.Role (permissions
// sorted by key). Everything is also held in memory: checks never touch the
// backend. Names longer than LMDB's key limit (storage::kMaxKeyBytes; etcd
// takes up to bbolt's 32 KiB, and nothing but the request size bounds them)
// go instead to "authUsersHashed" / "authRolesHashed", keyed by the 32-byte
// SHA-256 of the name; the record holds the full name, checked against the
// key when loading (DataLoss on a mismatch). Lists come from the in-memory
// maps, sorted bytewise by name whichever bucket a record is in, as etcd's.
//
// Atomicity: a mutation writes all its records first and changes memory
// only once every write succeeded. On an error it returns with memory
// untouched; the caller must then drop the txn's writes made by the call
// (WriteTxn savepoint), as the server's apply loop does.
//
// Rules (etcd): enabling needs user "root" holding role "root"; while
// enabled, user root cannot be deleted nor lose role root and role root
// cannot be deleted (ErrInvalidAuthMgmt); role root grants everything and
// need not exist as a record; granting a role a user already has, or the
// same permission again, succeeds.
//
// Threads: mutations (the Apply* calls with a WriteTxn) run on the server's
// apply loop only; every other method is thread-safe and may run
// concurrently with them.
#ifndef CPPETCD_AUTH_STORE_H_
#define CPPETCD_AUTH_STORE_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "authpb/auth.pb.h"
#include "cppetcd/auth/range_perm.h"
#include "cppetcd/auth/token.h"
#include "cppetcd/util/log.h"
#include "cppetcd/util/mutex.h"
#include "etcdserverpb/rpc.pb.h"

namespace cppetcd::storage {
class Backend;
class ReadTxn;
class WriteTxn;
}  // namespace cppetcd::storage

namespace cppetcd::auth {

inline constexpr std::string_view kRootUser = "root";
inline constexpr std::string_view kRootRole = "root";

struct AuthStoreOptions {
  // Token provider (NewTokenProvider); null: no tokens (--auth-token "").
  std::unique_ptr<TokenProvider> token_provider;
  // --bcrypt-cost; outside 4..31 the default 10 is used (as etcd).
  int bcrypt_cost = 10;
  util::Logger logger{"auth"};
};

class AuthStore {
 public:
  // Loads the auth state from `backend`, creating the revision record
  // (revision 1) if there is none, in a write txn of its own: call before
  // the apply loop writes. `backend` must outlive the store.
  static absl::StatusOr<std::unique_ptr<AuthStore>> Open(storage::Backend* backend,
                                                         AuthStoreOptions options);

  // Reloads everything from `rtx` (the backend was replaced by a snapshot).
  // Apply loop only.
  absl::Status Recover(storage::ReadTxn* rtx);

  bool IsEnabled() const;
  uint64_t Revision() const;
  int BcryptCost() const { return bcrypt_cost_; }
  TokenProvider* Tokens() const { return tokens_.get(); }

  // bcrypt hash of `password` at the store's cost (done by the proposing
  // member: raft requests carry hashes, never clear passwords).
  absl::StatusOr<std::string> HashPassword(std::string_view password) const;

  // ---- Mutations (apply loop; written into `btx`, which the caller commits).
  // Each successful change bumps the revision; errors change nothing.
  absl::Status AuthEnable(storage::WriteTxn* btx);   // ErrRootUserNotExist, ErrRootRoleNotExist
  absl::Status AuthDisable(storage::WriteTxn* btx);  // no-op when disabled
  // `req.password()` is the bcrypt hash (HashPassword), or ignored with
  // options.no_password. ErrUserEmpty, ErrUserAlreadyExist.
  absl::Status UserAdd(storage::WriteTxn* btx, const etcdserverpb::AuthUserAddRequest& req);
  absl::Status UserDelete(storage::WriteTxn* btx, const etcdserverpb::AuthUserDeleteRequest& req);
  // `req.password()` is the bcrypt hash. Drops the user's simple tokens.
  absl::Status UserChangePassword(storage::WriteTxn* btx,
                                  const etcdserverpb::AuthUserChangePasswordRequest& req);
  absl::Status UserGrantRole(storage::WriteTxn* btx,
                             const etcdserverpb::AuthUserGrantRoleRequest& req);
  absl::Status UserRevokeRole(storage::WriteTxn* btx,
                              const etcdserverpb::AuthUserRevokeRoleRequest& req);
  absl::Status RoleAdd(storage::WriteTxn* btx, const etcdserverpb::AuthRoleAddRequest& req);
  absl::Status RoleDelete(storage::WriteTxn* btx, const etcdserverpb::AuthRoleDeleteRequest& req);
  absl::Status RoleGrantPermission(storage::WriteTxn* btx,
                                   const etcdserverpb::AuthRoleGrantPermissionRequest& req);
  absl::Status RoleRevokePermission(storage::WriteTxn* btx,
                                    const etcdserverpb::AuthRoleRevokePermissionRequest& req);
  // Apply of an Authenticate entry at raft `index` with the proposer's
  // simple-token `prefix`: a token for `name`. ErrAuthNotEnabled,
  // ErrAuthFailed (no such user, or a no-password user). Writes nothing.
  absl::StatusOr<std::string> Authenticate(std::string_view name, std::string_view prefix,
                                           uint64_t index);

  // ---- Reads.
  absl::StatusOr<etcdserverpb::AuthUserGetResponse> UserGet(std::string_view name) const;
  etcdserverpb::AuthUserListResponse UserList() const;  // sorted names
  absl::StatusOr<etcdserverpb::AuthRoleGetResponse> RoleGet(std::string_view role) const;
  etcdserverpb::AuthRoleListResponse RoleList() const;
  bool HasRole(std::string_view user, std::string_view role) const;

  // ---- Checks (etcd AuthStore).
  // Verifies a password: the auth revision it was checked at.
  // ErrAuthNotEnabled, ErrAuthFailed (unknown user, wrong password,
  // no-password user).
  absl::StatusOr<uint64_t> CheckPassword(std::string_view name, std::string_view password) const;
  // The caller behind a token; ErrInvalidAuthToken if unknown or expired.
  absl::StatusOr<AuthInfo> AuthInfoFromToken(std::string_view token) const;
  // The caller named by a TLS client certificate's CN, at the current revision.
  AuthInfo AuthInfoFromCommonName(std::string_view cn) const;
  // OK when auth is disabled. Otherwise: ErrUserEmpty (revision 0, no
  // credentials), ErrAuthOldRevision (credentials older than the store),
  // ErrPermissionDenied. key/range_end as in a RangeRequest.
  absl::Status IsRangePermitted(const AuthInfo& who, std::string_view key,
                                std::string_view range_end) const;
  absl::Status IsPutPermitted(const AuthInfo& who, std::string_view key) const;
  absl::Status IsDeleteRangePermitted(const AuthInfo& who, std::string_view key,
                                      std::string_view range_end) const;
  // Root role required: ErrUserEmpty, ErrUserNotFound, ErrPermissionDenied.
  absl::Status IsAdminPermitted(const AuthInfo& who) const;
  // etcd checkTxnAuth: read permission on every compare's range and every
  // range op, write on puts and deletes (and read for prev_kv deletes),
  // nested txns included.
  absl::Status IsTxnPermitted(const AuthInfo& who, const etcdserverpb::TxnRequest& txn) const;

 private:
  AuthStore(storage::Backend* backend, AuthStoreOptions options);
  absl::Status LoadLocked(storage::ReadTxn* rtx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes and bumps the revision (WriteRevisionLocked then BumpRevisionLocked).
  absl::Status CommitRevisionLocked(storage::WriteTxn* btx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes revision_ + 1 (memory unchanged).
  absl::Status WriteRevisionLocked(storage::WriteTxn* btx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // In memory: revision_ + 1, permission cache dropped.
  void BumpRevisionLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Write a record where its name puts it (memory unchanged).
  static absl::Status WriteUser(storage::WriteTxn* btx, const authpb::User& u);
  static absl::Status WriteRole(storage::WriteTxn* btx, const authpb::Role& r);
  static absl::Status DeleteRecord(storage::WriteTxn* btx, std::string_view bucket,
                                   std::string_view name);
  absl::Status IsOpPermitted(const AuthInfo& who, std::string_view key, std::string_view range_end,
                             authpb::Permission::Type type) const;
  std::shared_ptr<const UnifiedPerms> PermsLocked(const authpb::User& u) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  storage::Backend* const backend_;
  const int bcrypt_cost_;
  const std::unique_ptr<TokenProvider> tokens_;
  util::Logger lg_;

  mutable util::Mutex mu_;
  bool enabled_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, authpb::User, std::less<>> users_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, authpb::Role, std::less<>> roles_ ABSL_GUARDED_BY(mu_);
  // Merged permissions per user, built on first use, dropped on any change.
  mutable std::map<std::string, std::shared_ptr<const UnifiedPerms>, std::less<>> perm_cache_
      ABSL_GUARDED_BY(mu_);
};

// Writes an auth record (a serialized authpb.User or authpb.Role) for
// `name` where AuthStore keeps it: `bucket` is storage::kAuthUsersBucket or
// kAuthRolesBucket, and a name too long for an LMDB key goes to that
// bucket's hashed twin (see the file comment). For importing etcd data.
// Errors: ErrUserEmpty / ErrRoleEmpty for an empty name, InvalidArgument for
// another bucket, the backend's errors.
absl::Status PutAuthRecord(storage::WriteTxn* btx, std::string_view bucket, std::string_view name,
                           std::string_view record);

}  // namespace cppetcd::auth

#endif  // CPPETCD_AUTH_STORE_H_
