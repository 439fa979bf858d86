#include "cppetcd/auth/store.h"

#include <openssl/sha.h>

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "cppetcd/auth/bcrypt.h"
#include "cppetcd/auth/errors.h"
#include "cppetcd/storage/backend.h"

namespace cppetcd::auth {
namespace {

constexpr std::string_view kEnableFlagKey = "authEnabled";
constexpr std::string_view kRevisionKey = "authRevision";
constexpr char kEnabled[] = {1};
constexpr char kDisabled[] = {0};

bool HasRootRole(const authpb::User& u) {
  return std::binary_search(u.roles().begin(), u.roles().end(), kRootRole);
}

std::string NameHash(std::string_view name) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(name.data()), name.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

// Where the record of `name` lives: (bucket, key). `bucket` is
// kAuthUsersBucket or kAuthRolesBucket.
std::pair<std::string_view, std::string> RecordLocation(std::string_view bucket,
                                                        std::string_view name) {
  if (name.size() <= storage::kMaxKeyBytes) return {bucket, std::string(name)};
  return {bucket == storage::kAuthUsersBucket ? storage::kAuthUsersHashedBucket
                                              : storage::kAuthRolesHashedBucket,
          NameHash(name)};
}

// A short prefix of a name for error messages and logs (names go up to the
// request size limit).
std::string ShortName(std::string_view name) {
  constexpr size_t kShown = 64;
  if (name.size() <= kShown) return std::string(name);
  return absl::StrCat(std::string(name.substr(0, kShown)), "... (", name.size(), " bytes)");
}

std::string Hex(std::string_view bytes) {
  return absl::BytesToHexString(absl::string_view(bytes.data(), bytes.size()));
}

// Loads every record of `bucket` (a name-keyed one) and of its hashed twin
// into `out`, checking that each record sits where RecordLocation puts it.
template <class Record>
absl::Status LoadRecords(storage::ReadTxn* rtx, std::string_view bucket,
                         std::string_view hashed_bucket, std::string_view what,
                         std::map<std::string, Record, std::less<>>* out) {
  absl::Status bad = absl::OkStatus();
  for (std::string_view b : {bucket, hashed_bucket}) {
    auto s = rtx->Scan(b, "", "", [&](std::string_view k, std::string_view v) {
      Record r;
      if (!r.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
        bad = absl::DataLossError(absl::StrCat("undecodable ", std::string(what), " record ",
                                               b == bucket ? ShortName(k) : Hex(k)));
        return false;
      }
      if (b == hashed_bucket &&
          (r.name().size() <= storage::kMaxKeyBytes || NameHash(r.name()) != k)) {
        bad = absl::DataLossError(absl::StrCat(std::string(what), " record ", Hex(k), " in ",
                                               std::string(b), " does not match its name ",
                                               ShortName(r.name())));
        return false;
      }
      std::string name = b == bucket ? std::string(k) : r.name();
      out->emplace(std::move(name), std::move(r));
      return true;
    });
    if (!s.ok()) return s;
    if (!bad.ok()) return bad;
  }
  return absl::OkStatus();
}


}  // namespace

AuthStore::AuthStore(storage::Backend* backend, AuthStoreOptions options)
    : backend_(backend),
      bcrypt_cost_(options.bcrypt_cost >= kBcryptMinCost && options.bcrypt_cost <= kBcryptMaxCost
                       ? options.bcrypt_cost
                       : kBcryptDefaultCost),
      tokens_(options.token_provider != nullptr
                  ? std::move(options.token_provider)
                  : *NewTokenProvider("", TokenProviderOptions{})),
      lg_(std::move(options.logger)) {}

absl::StatusOr<std::unique_ptr<AuthStore>> AuthStore::Open(storage::Backend* backend,
                                                           AuthStoreOptions options) {
  if (options.bcrypt_cost < kBcryptMinCost || options.bcrypt_cost > kBcryptMaxCost) {
    options.logger.Warn("use default bcrypt cost instead of the invalid value",
                        {{"min-cost", kBcryptMinCost},
                         {"max-cost", kBcryptMaxCost},
                         {"default-cost", kBcryptDefaultCost},
                         {"given-cost", options.bcrypt_cost}});
  }
  std::unique_ptr<AuthStore> as(new AuthStore(backend, std::move(options)));
  auto wtx = backend->BeginWrite();
  if (!wtx.ok()) return wtx.status();
  {
    util::MutexLock l(&as->mu_);
    if (auto s = as->LoadLocked(wtx->get()); !s.ok()) return s;
    if (as->revision_ == 0) {
      if (auto s = as->CommitRevisionLocked(wtx->get()); !s.ok()) return s;
    }
  }
  if (auto s = (*wtx)->Commit(); !s.ok()) return s;
  if (as->IsEnabled()) as->tokens_->Enable();
  return as;
}

absl::Status AuthStore::Recover(storage::ReadTxn* rtx) {
  bool enabled;
  {
    util::MutexLock l(&mu_);
    if (auto s = LoadLocked(rtx); !s.ok()) return s;
    enabled = enabled_;
  }
  if (enabled) {
    tokens_->Enable();
  } else {
    tokens_->Disable();
  }
  return absl::OkStatus();
}

absl::Status AuthStore::LoadLocked(storage::ReadTxn* rtx) {
  enabled_ = false;
  revision_ = 0;
  users_.clear();
  roles_.clear();
  perm_cache_.clear();
  auto en = rtx->Get(storage::kAuthBucket, kEnableFlagKey);
  if (!en.ok()) return en.status();
  enabled_ = en->has_value() && (*en)->size() == 1 && (**en)[0] == 1;
  auto rev = rtx->Get(storage::kAuthBucket, kRevisionKey);
  if (!rev.ok()) return rev.status();
  if (rev->has_value() && (*rev)->size() == 8) revision_ = storage::GetBigEndian64((*rev)->data());
  if (auto s = LoadRecords(rtx, storage::kAuthUsersBucket, storage::kAuthUsersHashedBucket,
                           "user", &users_);
      !s.ok()) {
    return s;
  }
  return LoadRecords(rtx, storage::kAuthRolesBucket, storage::kAuthRolesHashedBucket, "role",
                     &roles_);
}

absl::Status PutAuthRecord(storage::WriteTxn* btx, std::string_view bucket, std::string_view name,
                           std::string_view record) {
  if (bucket != storage::kAuthUsersBucket && bucket != storage::kAuthRolesBucket) {
    return absl::InvalidArgumentError(absl::StrCat("auth: not an auth record bucket: ", std::string(bucket)));
  }
  if (name.empty()) {
    return bucket == storage::kAuthUsersBucket ? ErrUserEmpty() : ErrRoleEmpty();
  }
  auto [b, key] = RecordLocation(bucket, name);
  return btx->Put(b, key, record);
}

absl::Status AuthStore::DeleteRecord(storage::WriteTxn* btx, std::string_view bucket,
                                     std::string_view name) {
  auto [b, key] = RecordLocation(bucket, name);
  return btx->Delete(b, key);
}

bool AuthStore::IsEnabled() const {
  util::MutexLock l(&mu_);
  return enabled_;
}

uint64_t AuthStore::Revision() const {
  util::MutexLock l(&mu_);
  return revision_;
}

absl::StatusOr<std::string> AuthStore::HashPassword(std::string_view password) const {
  return BcryptHash(password, bcrypt_cost_);
}

absl::Status AuthStore::WriteRevisionLocked(storage::WriteTxn* btx) {
  return btx->Put(storage::kAuthBucket, kRevisionKey, storage::EncodeBigEndian64(revision_ + 1));
}

void AuthStore::BumpRevisionLocked() {
  ++revision_;
  perm_cache_.clear();
}

absl::Status AuthStore::CommitRevisionLocked(storage::WriteTxn* btx) {
  if (auto s = WriteRevisionLocked(btx); !s.ok()) return s;
  BumpRevisionLocked();
  return absl::OkStatus();
}

absl::Status AuthStore::WriteUser(storage::WriteTxn* btx, const authpb::User& u) {
  return PutAuthRecord(btx, storage::kAuthUsersBucket, u.name(), u.SerializeAsString());
}

absl::Status AuthStore::WriteRole(storage::WriteTxn* btx, const authpb::Role& r) {
  return PutAuthRecord(btx, storage::kAuthRolesBucket, r.name(), r.SerializeAsString());
}

absl::Status AuthStore::AuthEnable(storage::WriteTxn* btx) {
  {
    util::MutexLock l(&mu_);
    if (enabled_) {
      lg_.Info("authentication is already enabled; ignored auth enable request");
      return absl::OkStatus();
    }
    auto it = users_.find(kRootUser);
    if (it == users_.end()) return ErrRootUserNotExist();
    if (!HasRootRole(it->second)) return ErrRootRoleNotExist();
    if (auto s = btx->Put(storage::kAuthBucket, kEnableFlagKey, std::string_view(kEnabled, 1));
        !s.ok()) {
      return s;
    }
    // etcd leaves the revision as it is here.
    enabled_ = true;
    perm_cache_.clear();
  }
  tokens_->Enable();
  lg_.Info("enabled authentication");
  return absl::OkStatus();
}

absl::Status AuthStore::AuthDisable(storage::WriteTxn* btx) {
  {
    util::MutexLock l(&mu_);
    if (!enabled_) return absl::OkStatus();
    if (auto s = btx->Put(storage::kAuthBucket, kEnableFlagKey, std::string_view(kDisabled, 1));
        !s.ok()) {
      return s;
    }
    if (auto s = WriteRevisionLocked(btx); !s.ok()) return s;
    BumpRevisionLocked();
    enabled_ = false;
  }
  tokens_->Disable();
  lg_.Info("disabled authentication");
  return absl::OkStatus();
}

absl::Status AuthStore::UserAdd(storage::WriteTxn* btx,
                                const etcdserverpb::AuthUserAddRequest& req) {
  if (req.name().empty()) return ErrUserEmpty();
  util::MutexLock l(&mu_);
  if (users_.count(req.name()) > 0) return ErrUserAlreadyExist();
  authpb::User u;
  u.set_name(req.name());
  const bool no_password = req.has_options() && req.options().no_password();
  if (!no_password) u.set_password(req.password());
  u.mutable_options()->set_no_password(no_password);
  if (auto s = WriteUser(btx, u); !s.ok()) return s;
  if (auto s = WriteRevisionLocked(btx); !s.ok()) return s;
  users_.emplace(req.name(), std::move(u));
  BumpRevisionLocked();
  lg_.Info("added a user", {{"user-name", ShortName(req.name())}});
  return absl::OkStatus();
}

absl::Status AuthStore::UserDelete(storage::WriteTxn* btx,
                                   const etcdserverpb::AuthUserDeleteRequest& req) {
  {
    util::MutexLock l(&mu_);
    if (enabled_ && req.name() == kRootUser) {
      lg_.Warn("cannot delete 'root' user", {{"user-name", req.name()}});
      return ErrInvalidAuthMgmt();
    }
    auto it = users_.find(req.name());
    if (it == users_.end()) return ErrUserNotFound();
    if (auto s = DeleteRecord(btx, storage::kAuthUsersBucket, req.name()); !s.ok()) return s;
    if (auto s = WriteRevisionLocked(btx); !s.ok()) return s;
    users_.erase(it);
    BumpRevisionLocked();
  }
  tokens_->InvalidateUser(req.name());
  lg_.Info("deleted a user", {{"user-name", ShortName(req.name())}});
  return absl::OkStatus();
}

absl::Status AuthStore::UserChangePassword(
    storage::WriteTxn* btx, const etcdserverpb::AuthUserChangePasswordRequest& req) {
  {
    util::MutexLock l(&mu_);
    auto it = users_.find(req.name());
    if (it == users_.end()) return ErrUserNotFound();
    authpb::User u = it->second;
    u.set_password(req.password());
    if (auto s = WriteUser(btx, u); !s.ok()) return s;
    if (auto s = WriteRevisionLocked(btx); !s.ok()) return s;
    it->second = std::move(u);
    BumpRevisionLocked();
  }
  tokens_->InvalidateUser(req.name());
  lg_.Info("changed a password of a user", {{"user-name", ShortName(req.name())}});
  return absl::OkStatus();
}

absl::Status AuthStore::UserGrantRole(storage::WriteTxn* btx,
                                      const etcdserverpb::AuthUserGrantRoleRequest& req) {
  util::MutexLock l(&mu_);
  auto it = users_.find(req.user());
  if (it == users_.end()) return ErrUserNotFound();
  if (req.role() != kRootRole && roles_.count(req.role()) == 0) return ErrRoleNotFound();
  authpb::User u = it->second;
  std::vector<std::string> roles(u.roles().begin(), u.roles().end());
  auto pos = std::lower_bound(roles.begin(), roles.end(), req.role());
  if (pos != roles.end() && *pos == req.role()) {
    lg_.Warn("ignored grant role request to a user",
             {{"user-name", ShortName(req.user())}, {"role-name", ShortName(req.role())}});
    return absl::OkStatus();
  }
  roles.insert(pos, req.role());
  u.clear_roles();
  for (auto& r : roles) u.add_roles(std::move(r));
  if (auto s = WriteUser(btx, u); !s.ok()) return s;
  if (auto s = WriteRevisionLocked(btx); !s.ok()) return s;
  it->second = std::move(u);
  BumpRevisionLocked();
  lg_.Info("granted a role to a user",
           {{"user-name", ShortName(req.user())}, {"role-name", ShortName(req.role())}});
  return absl::OkStatus();
}

absl::Status AuthStore::UserRevokeRole(storage::WriteTxn* btx,
                                       const etcdserverpb::AuthUserRevokeRoleRequest& req) {
  util::MutexLock l(&mu_);
  if (enabled_ && req.name() == kRootUser && req.role() == kRootRole) {
    lg_.Warn("'root' user cannot revoke 'root' role");
    return ErrInvalidAuthMgmt();
  }
  auto it = users_.find(req.name());
  if (it == users_.end()) return ErrUserNotFound();
  authpb::User u = it->second;
  u.clear_roles();
  for (const auto& r : it->second.roles()) {
    if (r != req.role()) u.add_roles(r);
  }
  if (u.roles_size() == it->second.roles_size()) return ErrRoleNotGranted();
  if (auto s = WriteUser(btx, u); !s.ok()) return s;
  if (auto s = WriteRevisionLocked(btx); !s.ok()) return s;
  it->second = std::move(u);
  BumpRevisionLocked();
  lg_.Info("revoked a role from a user",
           {{"user-name", ShortName(req.name())}, {"role-name", ShortName(req.role())}});
  return absl::OkStatus();
}

absl::Status AuthStore::RoleAdd(storage::WriteTxn* btx,
                                const etcdserverpb::AuthRoleAddRequest& req) {
  if (req.name().empty()) return ErrRoleEmpty();
  util::MutexLock l(&mu_);
  if (roles_.count(req.name()) > 0) return ErrRoleAlreadyExist();
  authpb::Role r;
  r.set_name(req.name());
  if (auto s = WriteRole(btx, r); !s.ok()) return s;
  if (auto s = WriteRevisionLocked(btx); !s.ok()) return s;
  roles_.emplace(req.name(), std::move(r));
  BumpRevisionLocked();
  lg_.Info("created a role", {{"role-name", ShortName(req.name())}});
  return absl::OkStatus();
}

absl::Status AuthStore::RoleDelete(storage::WriteTxn* btx,
                                   const etcdserverpb::AuthRoleDeleteRequest& req) {
  util::MutexLock l(&mu_);
  if (enabled_ && req.role() == kRootRole) {
    lg_.Warn("cannot delete 'root' role", {{"role-name", req.role()}});
    return ErrInvalidAuthMgmt();
  }
  auto role_it = roles_.find(req.role());
  if (role_it == roles_.end()) return ErrRoleNotFound();
  if (auto s = DeleteRecord(btx, storage::kAuthRolesBucket, req.role()); !s.ok()) return s;
  std::vector<authpb::User> changed;
  for (const auto& [name, user] : users_) {
    if (std::find(user.roles().begin(), user.roles().end(), req.role()) == user.roles().end()) {
      continue;
    }
    authpb::User u = user;
    u.clear_roles();
    for (const auto& r : user.roles()) {
      if (r != req.role()) u.add_roles(r);
    }
    changed.push_back(std::move(u));
  }
  for (const auto& u : changed) {
    if (auto s = WriteUser(btx, u); !s.ok()) return s;
  }
  if (auto s = WriteRevisionLocked(btx); !s.ok()) return s;
  roles_.erase(role_it);
  for (auto& u : changed) users_[u.name()] = std::move(u);
  BumpRevisionLocked();
  lg_.Info("deleted a role", {{"role-name", ShortName(req.role())}});
  return absl::OkStatus();
}

absl::Status AuthStore::RoleGrantPermission(
    storage::WriteTxn* btx, const etcdserverpb::AuthRoleGrantPermissionRequest& req) {
  util::MutexLock l(&mu_);
  auto it = roles_.find(req.name());
  if (it == roles_.end()) return ErrRoleNotFound();
  authpb::Role r = it->second;
  // etcd 3.4's rule, kept for compatibility: the permissions are sorted by
  // key alone, and only the first one whose key is >= the granted key is a
  // candidate for an update. If it has another range end, the grant is
  // appended even when an entry with the same key and range end exists
  // further on; RoleGet then lists both and the permission check takes
  // their union, as in etcd.
  auto* perms = r.mutable_keypermission();
  auto first = std::lower_bound(perms->begin(), perms->end(), req.perm().key(),
                                [](const authpb::Permission& p, const std::string& key) {
                                  return p.key() < key;
                                });
  const bool updated = first != perms->end() && first->key() == req.perm().key() &&
                       first->range_end() == req.perm().range_end();
  if (updated) {
    first->set_permtype(req.perm().permtype());
  } else {
    *r.add_keypermission() = req.perm();
    std::stable_sort(r.mutable_keypermission()->begin(), r.mutable_keypermission()->end(),
                     [](const authpb::Permission& a, const authpb::Permission& b) {
                       return a.key() < b.key();
                     });
  }
  if (auto s = WriteRole(btx, r); !s.ok()) return s;
  if (auto s = WriteRevisionLocked(btx); !s.ok()) return s;
  it->second = std::move(r);
  BumpRevisionLocked();
  lg_.Info("granted/updated a permission to a user",
           {{"role-name", ShortName(req.name())},
            {"key", ShortName(req.perm().key())},
            {"range-end", ShortName(req.perm().range_end())},
            {"permission-type", authpb::Permission::Type_Name(req.perm().permtype())}});
  return absl::OkStatus();
}

absl::Status AuthStore::RoleRevokePermission(
    storage::WriteTxn* btx, const etcdserverpb::AuthRoleRevokePermissionRequest& req) {
  util::MutexLock l(&mu_);
  auto it = roles_.find(req.role());
  if (it == roles_.end()) return ErrRoleNotFound();
  authpb::Role r;
  r.set_name(it->second.name());
  for (const auto& p : it->second.keypermission()) {
    if (p.key() != req.key() || p.range_end() != req.range_end()) *r.add_keypermission() = p;
  }
  if (r.keypermission_size() == it->second.keypermission_size()) return ErrPermissionNotGranted();
  if (auto s = WriteRole(btx, r); !s.ok()) return s;
  if (auto s = WriteRevisionLocked(btx); !s.ok()) return s;
  it->second = std::move(r);
  BumpRevisionLocked();
  lg_.Info("revoked a permission on range", {{"role-name", ShortName(req.role())},
                                              {"key", ShortName(req.key())},
                                              {"range-end", ShortName(req.range_end())}});
  return absl::OkStatus();
}

absl::StatusOr<std::string> AuthStore::Authenticate(std::string_view name, std::string_view prefix,
                                                    uint64_t index) {
  uint64_t rev;
  {
    util::MutexLock l(&mu_);
    if (!enabled_) return ErrAuthNotEnabled();
    auto it = users_.find(name);
    if (it == users_.end()) return ErrAuthFailed();
    if (it->second.options().no_password()) return ErrNoPasswordUser();
    rev = revision_;
  }
  absl::StatusOr<std::string> token = tokens_->Assign(name, rev, prefix, index);
  if (token.ok()) lg_.Debug("authenticated a user", {{"user-name", name}});
  return token;
}

absl::StatusOr<etcdserverpb::AuthUserGetResponse> AuthStore::UserGet(std::string_view name) const {
  util::MutexLock l(&mu_);
  auto it = users_.find(name);
  if (it == users_.end()) return ErrUserNotFound();
  etcdserverpb::AuthUserGetResponse resp;
  for (const auto& r : it->second.roles()) resp.add_roles(r);
  return resp;
}

etcdserverpb::AuthUserListResponse AuthStore::UserList() const {
  util::MutexLock l(&mu_);
  etcdserverpb::AuthUserListResponse resp;
  for (const auto& [name, u] : users_) resp.add_users(name);
  return resp;
}

absl::StatusOr<etcdserverpb::AuthRoleGetResponse> AuthStore::RoleGet(std::string_view role) const {
  util::MutexLock l(&mu_);
  auto it = roles_.find(role);
  if (it == roles_.end()) return ErrRoleNotFound();
  etcdserverpb::AuthRoleGetResponse resp;
  for (const auto& p : it->second.keypermission()) *resp.add_perm() = p;
  return resp;
}

etcdserverpb::AuthRoleListResponse AuthStore::RoleList() const {
  util::MutexLock l(&mu_);
  etcdserverpb::AuthRoleListResponse resp;
  for (const auto& [name, r] : roles_) resp.add_roles(name);
  return resp;
}

bool AuthStore::HasRole(std::string_view user, std::string_view role) const {
  util::MutexLock l(&mu_);
  auto it = users_.find(user);
  if (it == users_.end()) return false;
  return std::find(it->second.roles().begin(), it->second.roles().end(), role) !=
         it->second.roles().end();
}

absl::StatusOr<uint64_t> AuthStore::CheckPassword(std::string_view name,
                                                  std::string_view password) const {
  std::string hash;
  uint64_t rev;
  {
    util::MutexLock l(&mu_);
    if (!enabled_) return ErrAuthNotEnabled();
    auto it = users_.find(name);
    if (it == users_.end()) return ErrAuthFailed();
    if (it->second.options().no_password()) return ErrNoPasswordUser();
    hash = it->second.password();
    rev = revision_;
  }
  // bcrypt is slow on purpose: outside the lock.
  if (!BcryptCheck(hash, password)) {
    lg_.Info("invalid password", {{"user-name", name}});
    return ErrAuthFailed();
  }
  return rev;
}

absl::StatusOr<AuthInfo> AuthStore::AuthInfoFromToken(std::string_view token) const {
  std::optional<AuthInfo> info = tokens_->Info(token, Revision());
  if (!info.has_value()) {
    lg_.Warn("invalid auth token");
    return ErrInvalidAuthToken();
  }
  return *info;
}

AuthInfo AuthStore::AuthInfoFromCommonName(std::string_view cn) const {
  return AuthInfo{std::string(cn), Revision()};
}

std::shared_ptr<const UnifiedPerms> AuthStore::PermsLocked(const authpb::User& u) const {
  auto it = perm_cache_.find(u.name());
  if (it != perm_cache_.end()) return it->second;
  auto perms = std::make_shared<UnifiedPerms>();
  for (const auto& role_name : u.roles()) {
    auto r = roles_.find(role_name);
    if (r == roles_.end()) continue;
    for (const auto& p : r->second.keypermission()) AddPermission(p, perms.get());
  }
  perm_cache_[u.name()] = perms;
  return perms;
}

absl::Status AuthStore::IsOpPermitted(const AuthInfo& who, std::string_view key,
                                      std::string_view range_end,
                                      authpb::Permission::Type type) const {
  util::MutexLock l(&mu_);
  if (!enabled_) return absl::OkStatus();
  if (who.revision == 0) return ErrUserEmpty();
  if (who.revision < revision_) {
    lg_.Warn("request auth revision is less than current node auth revision",
             {{"current-revision", revision_}, {"request-revision", who.revision}});
    return ErrAuthOldRevision();
  }
  auto it = users_.find(who.username);
  if (it == users_.end()) {
    lg_.Error("cannot find a user for permission check", {{"user-name", who.username}});
    return ErrPermissionDenied();
  }
  if (HasRootRole(it->second)) return absl::OkStatus();
  if (PermitsRange(*PermsLocked(it->second), key, range_end, type)) return absl::OkStatus();
  return ErrPermissionDenied();
}

absl::Status AuthStore::IsRangePermitted(const AuthInfo& who, std::string_view key,
                                         std::string_view range_end) const {
  return IsOpPermitted(who, key, range_end, authpb::Permission::READ);
}

absl::Status AuthStore::IsPutPermitted(const AuthInfo& who, std::string_view key) const {
  return IsOpPermitted(who, key, "", authpb::Permission::WRITE);
}

absl::Status AuthStore::IsDeleteRangePermitted(const AuthInfo& who, std::string_view key,
                                               std::string_view range_end) const {
  return IsOpPermitted(who, key, range_end, authpb::Permission::WRITE);
}

absl::Status AuthStore::IsAdminPermitted(const AuthInfo& who) const {
  util::MutexLock l(&mu_);
  if (!enabled_) return absl::OkStatus();
  if (who.username.empty()) return ErrUserEmpty();
  auto it = users_.find(who.username);
  if (it == users_.end()) return ErrUserNotFound();
  if (!HasRootRole(it->second)) return ErrPermissionDenied();
  return absl::OkStatus();
}

absl::Status AuthStore::IsTxnPermitted(const AuthInfo& who,
                                       const etcdserverpb::TxnRequest& txn) const {
  for (const auto& c : txn.compare()) {
    if (auto s = IsRangePermitted(who, c.key(), c.range_end()); !s.ok()) return s;
  }
  for (const auto* ops : {&txn.success(), &txn.failure()}) {
    for (const auto& op : *ops) {
      absl::Status s;
      if (op.has_request_range()) {
        s = IsRangePermitted(who, op.request_range().key(), op.request_range().range_end());
      } else if (op.has_request_put()) {
        s = IsPutPermitted(who, op.request_put().key());
      } else if (op.has_request_delete_range()) {
        const auto& d = op.request_delete_range();
        if (d.prev_kv()) s = IsRangePermitted(who, d.key(), d.range_end());
        if (s.ok()) s = IsDeleteRangePermitted(who, d.key(), d.range_end());
      } else if (op.has_request_txn()) {
        s = IsTxnPermitted(who, op.request_txn());
      }
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace cppetcd::auth
