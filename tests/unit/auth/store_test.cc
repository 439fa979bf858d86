#include "cppetcd/auth/store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "cppetcd/auth/bcrypt.h"
#include "cppetcd/auth/errors.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/util/clock.h"

namespace cppetcd::auth {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const std::string kFromKey(1, '\0');

bool IsErrorMessage(const absl::Status& s, const std::string& msg) {
  return !s.ok() && std::string(s.message()) == msg;
}

class AuthStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "auth_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    OpenAll();
  }
  void TearDown() override {
    store_.reset();
    backend_.reset();
    std::filesystem::remove_all(dir_);
  }
  void OpenAll() {
    store_.reset();
    backend_.reset();
    storage::BackendOptions opts;
    opts.map_size_bytes = 64 << 20;
    // Fails the fail_at_-th write to fail_bucket_ from now on (1 = the next).
    opts.write_fault = [this](std::string_view bucket, std::string_view) {
      if (fail_at_ > 0 && bucket == fail_bucket_ && --fail_at_ == 0) {
        return absl::InvalidArgumentError("injected write fault");
      }
      return absl::OkStatus();
    };
    auto b = storage::Backend::Open((std::filesystem::path(dir_) / "db").string(), opts);
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = std::move(*b);
    TokenProviderOptions topts;
    topts.clock = &clock_;
    auto tp = NewTokenProvider("simple", topts);
    ASSERT_TRUE(tp.ok()) << tp.status();
    AuthStoreOptions o;
    o.token_provider = std::move(*tp);
    o.bcrypt_cost = 4;
    auto st = AuthStore::Open(backend_.get(), std::move(o));
    ASSERT_TRUE(st.ok()) << st.status();
    store_ = std::move(*st);
  }
  // Runs one mutation in a write txn, committed when it succeeds.
  absl::Status Do(const std::function<absl::Status(storage::WriteTxn*)>& fn) {
    auto tx = backend_->BeginWrite();
    if (!tx.ok()) return tx.status();
    absl::Status s = fn(tx->get());
    if (s.ok()) return (*tx)->Commit();
    return s;
  }
  absl::Status AddUser(const std::string& name, const std::string& pw) {
    etcdserverpb::AuthUserAddRequest r;
    r.set_name(name);
    auto h = store_->HashPassword(pw);
    if (!h.ok()) return h.status();
    r.set_password(*h);
    return Do([&](storage::WriteTxn* t) { return store_->UserAdd(t, r); });
  }
  absl::Status AddRole(const std::string& name) {
    etcdserverpb::AuthRoleAddRequest r;
    r.set_name(name);
    return Do([&](storage::WriteTxn* t) { return store_->RoleAdd(t, r); });
  }
  absl::Status Grant(const std::string& user, const std::string& role) {
    etcdserverpb::AuthUserGrantRoleRequest r;
    r.set_user(user);
    r.set_role(role);
    return Do([&](storage::WriteTxn* t) { return store_->UserGrantRole(t, r); });
  }
  absl::Status Revoke(const std::string& user, const std::string& role) {
    etcdserverpb::AuthUserRevokeRoleRequest r;
    r.set_name(user);
    r.set_role(role);
    return Do([&](storage::WriteTxn* t) { return store_->UserRevokeRole(t, r); });
  }
  absl::Status GrantPerm(const std::string& role, authpb::Permission::Type t, std::string key,
                         std::string end) {
    etcdserverpb::AuthRoleGrantPermissionRequest r;
    r.set_name(role);
    r.mutable_perm()->set_permtype(t);
    r.mutable_perm()->set_key(std::move(key));
    r.mutable_perm()->set_range_end(std::move(end));
    return Do([&](storage::WriteTxn* tx) { return store_->RoleGrantPermission(tx, r); });
  }
  absl::Status Enable() {
    return Do([&](storage::WriteTxn* t) { return store_->AuthEnable(t); });
  }
  absl::Status Disable() {
    return Do([&](storage::WriteTxn* t) { return store_->AuthDisable(t); });
  }
  void SetUpRootAndEnable() {
    ASSERT_TRUE(AddUser("root", "rootpw").ok());
    ASSERT_TRUE(Grant("root", "root").ok());
    ASSERT_TRUE(Enable().ok());
  }
  AuthInfo Who(const std::string& user) { return AuthInfo{user, store_->Revision()}; }

  std::string dir_;
  util::FakeClock clock_;
  std::unique_ptr<storage::Backend> backend_;
  std::unique_ptr<AuthStore> store_;
  int fail_at_ = 0;
  std::string fail_bucket_;
};

TEST_F(AuthStoreTest, FreshStoreStartsAtRevisionOneDisabled) {
  EXPECT_EQ(store_->Revision(), 1u);
  EXPECT_FALSE(store_->IsEnabled());
  // Disabled: everything is permitted, even without a user.
  EXPECT_TRUE(store_->IsPutPermitted(AuthInfo{}, "k").ok());
  EXPECT_TRUE(store_->IsAdminPermitted(AuthInfo{}).ok());
  EXPECT_TRUE(IsAuthNotEnabled(store_->CheckPassword("root", "x").status()));
}

TEST_F(AuthStoreTest, EnableNeedsRootUserWithRootRole) {
  EXPECT_EQ(Enable().message(), "auth: root user does not exist");
  ASSERT_TRUE(AddUser("root", "pw").ok());
  EXPECT_EQ(Enable().message(), "auth: root user does not have root role");
  // Role root need not exist as a record to be granted.
  ASSERT_TRUE(Grant("root", "root").ok());
  const uint64_t rev = store_->Revision();
  ASSERT_TRUE(Enable().ok());
  EXPECT_TRUE(store_->IsEnabled());
  EXPECT_EQ(store_->Revision(), rev);  // etcd: enable keeps the revision
  EXPECT_TRUE(Enable().ok());          // already enabled: ignored
  ASSERT_TRUE(Disable().ok());
  EXPECT_EQ(store_->Revision(), rev + 1);
}

TEST_F(AuthStoreTest, RevisionBumpsOnEveryChange) {
  uint64_t rev = store_->Revision();
  ASSERT_TRUE(AddUser("u", "pw").ok());
  EXPECT_EQ(store_->Revision(), ++rev);
  ASSERT_TRUE(AddRole("r").ok());
  EXPECT_EQ(store_->Revision(), ++rev);
  ASSERT_TRUE(Grant("u", "r").ok());
  EXPECT_EQ(store_->Revision(), ++rev);
  ASSERT_TRUE(Grant("u", "r").ok());  // already granted: no change
  EXPECT_EQ(store_->Revision(), rev);
  ASSERT_TRUE(GrantPerm("r", authpb::Permission::READ, "a", "").ok());
  EXPECT_EQ(store_->Revision(), ++rev);
  EXPECT_FALSE(AddUser("u", "pw").ok());  // errors change nothing
  EXPECT_EQ(store_->Revision(), rev);
}

TEST_F(AuthStoreTest, UserAndRoleErrors) {
  EXPECT_EQ(AddUser("", "x").message(), "auth: user name is empty");
  ASSERT_TRUE(AddUser("u", "x").ok());
  EXPECT_EQ(AddUser("u", "x").message(), "auth: user already exists");
  EXPECT_EQ(AddRole("").message(), "auth: role name is empty");
  ASSERT_TRUE(AddRole("r").ok());
  EXPECT_EQ(AddRole("r").message(), "auth: role already exists");
  EXPECT_EQ(Grant("nobody", "r").message(), "auth: user not found");
  EXPECT_EQ(Grant("u", "nope").message(), "auth: role not found");
  EXPECT_EQ(Revoke("u", "r").message(), "auth: role is not granted to the user");
  etcdserverpb::AuthRoleRevokePermissionRequest rp;
  rp.set_role("r");
  rp.set_key("a");
  EXPECT_EQ(Do([&](storage::WriteTxn* t) { return store_->RoleRevokePermission(t, rp); }).message(),
            "auth: permission is not granted to the role");
  EXPECT_EQ(store_->UserGet("zz").status().message(), "auth: user not found");
  EXPECT_EQ(store_->RoleGet("zz").status().message(), "auth: role not found");
}

TEST_F(AuthStoreTest, RootRulesWhileEnabled) {
  SetUpRootAndEnable();
  EXPECT_EQ(Revoke("root", "root").message(), "auth: invalid auth management");
  etcdserverpb::AuthUserDeleteRequest ud;
  ud.set_name("root");
  EXPECT_EQ(Do([&](storage::WriteTxn* t) { return store_->UserDelete(t, ud); }).message(),
            "auth: invalid auth management");
  etcdserverpb::AuthRoleDeleteRequest rd;
  rd.set_role("root");
  EXPECT_EQ(Do([&](storage::WriteTxn* t) { return store_->RoleDelete(t, rd); }).message(),
            "auth: invalid auth management");
  ASSERT_TRUE(Disable().ok());
  EXPECT_TRUE(Revoke("root", "root").ok());
}

TEST_F(AuthStoreTest, PermissionsAndCacheFollowChanges) {
  SetUpRootAndEnable();
  ASSERT_TRUE(AddUser("alice", "pw").ok());
  ASSERT_TRUE(AddRole("reader").ok());
  ASSERT_TRUE(GrantPerm("reader", authpb::Permission::READ, "app/", "app0").ok());
  ASSERT_TRUE(Grant("alice", "reader").ok());
  EXPECT_TRUE(store_->IsRangePermitted(Who("alice"), "app/x", "").ok());
  EXPECT_TRUE(store_->IsRangePermitted(Who("alice"), "app/", "app0").ok());
  EXPECT_TRUE(IsErrPermissionDenied(store_->IsRangePermitted(Who("alice"), "other", "")));
  EXPECT_TRUE(IsErrPermissionDenied(store_->IsPutPermitted(Who("alice"), "app/x")));
  EXPECT_TRUE(IsErrPermissionDenied(store_->IsAdminPermitted(Who("alice"))));
  // Upgrade the same permission to READWRITE.
  ASSERT_TRUE(GrantPerm("reader", authpb::Permission::READWRITE, "app/", "app0").ok());
  EXPECT_TRUE(store_->IsPutPermitted(Who("alice"), "app/x").ok());
  auto rg = store_->RoleGet("reader");
  ASSERT_TRUE(rg.ok());
  ASSERT_EQ(rg->perm_size(), 1);
  EXPECT_EQ(rg->perm(0).permtype(), authpb::Permission::READWRITE);
  // Root can do anything; no user at all cannot.
  EXPECT_TRUE(store_->IsDeleteRangePermitted(Who("root"), "", kFromKey).ok());
  EXPECT_TRUE(store_->IsAdminPermitted(Who("root")).ok());
  EXPECT_TRUE(IsUserEmpty(store_->IsPutPermitted(AuthInfo{}, "k")));
  EXPECT_TRUE(IsUserEmpty(store_->IsAdminPermitted(AuthInfo{})));
  EXPECT_EQ(store_->IsAdminPermitted(Who("ghost")).message(), "auth: user not found");
  // Credentials from before a change are stale.
  const AuthInfo old = Who("alice");
  ASSERT_TRUE(AddRole("other").ok());
  EXPECT_TRUE(IsAuthOldRevision(store_->IsRangePermitted(old, "app/x", "")));
  // Deleting the role takes it from the user.
  etcdserverpb::AuthRoleDeleteRequest rd;
  rd.set_role("reader");
  ASSERT_TRUE(Do([&](storage::WriteTxn* t) { return store_->RoleDelete(t, rd); }).ok());
  EXPECT_THAT(store_->UserGet("alice")->roles(), IsEmpty());
  EXPECT_TRUE(IsErrPermissionDenied(store_->IsRangePermitted(Who("alice"), "app/x", "")));
}

// etcd 3.4's grant rule (auth/store.go RoleGrantPermission, checked against
// a running etcd 3.4 by the differential fuzzer): only the first permission
// whose key is >= the granted key may be updated. Here that is (k, k1), so
// granting (k, k5) again appends a second (k, k5) entry instead of
// updating the first one; both are listed and the check unions them.
TEST_F(AuthStoreTest, GrantUpdatesOnlyTheFirstPermissionOfItsKeyAsEtcdDoes) {
  SetUpRootAndEnable();
  ASSERT_TRUE(AddUser("alice", "pw").ok());
  ASSERT_TRUE(AddRole("r").ok());
  ASSERT_TRUE(Grant("alice", "r").ok());
  ASSERT_TRUE(GrantPerm("r", authpb::Permission::READ, "k", "k5").ok());
  ASSERT_TRUE(GrantPerm("r", authpb::Permission::READ, "a", "b").ok());
  // The same key and range end first in the list: updated in place.
  ASSERT_TRUE(GrantPerm("r", authpb::Permission::WRITE, "k", "k5").ok());
  auto rg = store_->RoleGet("r");
  ASSERT_TRUE(rg.ok());
  ASSERT_EQ(rg->perm_size(), 2);
  EXPECT_EQ(rg->perm(1).permtype(), authpb::Permission::WRITE);
  EXPECT_TRUE(IsErrPermissionDenied(store_->IsRangePermitted(Who("alice"), "k2", "")));
  // Another range end for the same key, sorted before (k, k5) (stable sort
  // by key keeps insertion order among equal keys; put it first by
  // revoking and re-granting (k, k5)).
  etcdserverpb::AuthRoleRevokePermissionRequest rv;
  rv.set_role("r");
  rv.set_key("k");
  rv.set_range_end("k5");
  ASSERT_TRUE(Do([&](storage::WriteTxn* t) { return store_->RoleRevokePermission(t, rv); }).ok());
  ASSERT_TRUE(GrantPerm("r", authpb::Permission::READ, "k", "k1").ok());
  ASSERT_TRUE(GrantPerm("r", authpb::Permission::READ, "k", "k5").ok());
  // Now (k, k1) is the first entry of key k: granting (k, k5) appends.
  ASSERT_TRUE(GrantPerm("r", authpb::Permission::WRITE, "k", "k5").ok());
  rg = store_->RoleGet("r");
  ASSERT_TRUE(rg.ok());
  ASSERT_EQ(rg->perm_size(), 4);
  EXPECT_EQ(rg->perm(0).key(), "a");
  EXPECT_EQ(rg->perm(1).range_end(), "k1");
  EXPECT_EQ(rg->perm(2).range_end(), "k5");
  EXPECT_EQ(rg->perm(2).permtype(), authpb::Permission::READ);
  EXPECT_EQ(rg->perm(3).range_end(), "k5");
  EXPECT_EQ(rg->perm(3).permtype(), authpb::Permission::WRITE);
  // The union: k2 is readable (entry 2) and writable (entry 3).
  EXPECT_TRUE(store_->IsRangePermitted(Who("alice"), "k2", "").ok());
  EXPECT_TRUE(store_->IsPutPermitted(Who("alice"), "k2").ok());
  // Revoking (k, k5) removes both entries, as etcd does.
  ASSERT_TRUE(Do([&](storage::WriteTxn* t) { return store_->RoleRevokePermission(t, rv); }).ok());
  rg = store_->RoleGet("r");
  ASSERT_TRUE(rg.ok());
  EXPECT_EQ(rg->perm_size(), 2);
  EXPECT_TRUE(IsErrPermissionDenied(store_->IsPutPermitted(Who("alice"), "k2")));
}

TEST_F(AuthStoreTest, TxnChecksEveryPart) {
  SetUpRootAndEnable();
  ASSERT_TRUE(AddUser("bob", "pw").ok());
  ASSERT_TRUE(AddRole("rw").ok());
  ASSERT_TRUE(GrantPerm("rw", authpb::Permission::READWRITE, "a", "").ok());
  ASSERT_TRUE(GrantPerm("rw", authpb::Permission::READ, "b", "").ok());
  ASSERT_TRUE(Grant("bob", "rw").ok());
  etcdserverpb::TxnRequest t;
  auto* c = t.add_compare();
  c->set_key("b");
  t.add_success()->mutable_request_put()->set_key("a");
  t.add_failure()->mutable_request_range()->set_key("b");
  EXPECT_TRUE(store_->IsTxnPermitted(Who("bob"), t).ok());
  t.add_failure()->mutable_request_delete_range()->set_key("b");
  EXPECT_TRUE(IsErrPermissionDenied(store_->IsTxnPermitted(Who("bob"), t)));
  etcdserverpb::TxnRequest nested;
  nested.add_success()->mutable_request_txn()->add_success()->mutable_request_put()->set_key("c");
  EXPECT_TRUE(IsErrPermissionDenied(store_->IsTxnPermitted(Who("bob"), nested)));
}

TEST_F(AuthStoreTest, PasswordsAndTokens) {
  SetUpRootAndEnable();
  ASSERT_TRUE(AddUser("carol", "pw1").ok());
  auto rev = store_->CheckPassword("carol", "pw1");
  ASSERT_TRUE(rev.ok()) << rev.status();
  EXPECT_EQ(*rev, store_->Revision());
  EXPECT_EQ(store_->CheckPassword("carol", "bad").status().message(),
            "auth: authentication failed, invalid user ID or password");
  EXPECT_FALSE(store_->CheckPassword("nobody", "pw1").ok());
  const std::string prefix = store_->Tokens()->GenTokenPrefix();
  auto tok = store_->Authenticate("carol", prefix, 42);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ(*tok, prefix + ".42");
  auto who = store_->AuthInfoFromToken(*tok);
  ASSERT_TRUE(who.ok());
  EXPECT_EQ(who->username, "carol");
  EXPECT_EQ(who->revision, store_->Revision());
  EXPECT_TRUE(IsInvalidAuthToken(store_->AuthInfoFromToken("bogus.1").status()));
  // A password change invalidates the user's tokens.
  etcdserverpb::AuthUserChangePasswordRequest cp;
  cp.set_name("carol");
  cp.set_password(*store_->HashPassword("pw2"));
  ASSERT_TRUE(Do([&](storage::WriteTxn* t) { return store_->UserChangePassword(t, cp); }).ok());
  EXPECT_TRUE(IsInvalidAuthToken(store_->AuthInfoFromToken(*tok).status()));
  EXPECT_TRUE(store_->CheckPassword("carol", "pw2").ok());
  // No-password users cannot authenticate with a password.
  etcdserverpb::AuthUserAddRequest np;
  np.set_name("cert-only");
  np.mutable_options()->set_no_password(true);
  ASSERT_TRUE(Do([&](storage::WriteTxn* t) { return store_->UserAdd(t, np); }).ok());
  // etcd's own error (no gRPC mapping: UNKNOWN with this text).
  const std::string no_pw = "auth: authentication failed, password was given for no password user";
  EXPECT_EQ(store_->CheckPassword("cert-only", "").status().message(), no_pw);
  EXPECT_EQ(store_->CheckPassword("cert-only", "").status().code(), absl::StatusCode::kUnknown);
  EXPECT_EQ(store_->Authenticate("cert-only", prefix, 43).status().message(), no_pw);
  // Disable forgets every token.
  auto tok2 = store_->Authenticate("carol", store_->Tokens()->GenTokenPrefix(), 44);
  ASSERT_TRUE(tok2.ok());
  ASSERT_TRUE(Disable().ok());
  EXPECT_TRUE(IsInvalidAuthToken(store_->AuthInfoFromToken(*tok2).status()));
  EXPECT_TRUE(IsAuthNotEnabled(store_->Authenticate("carol", prefix, 45).status()));
}

TEST_F(AuthStoreTest, StateSurvivesReopenInEtcdEncoding) {
  SetUpRootAndEnable();
  ASSERT_TRUE(AddRole("r").ok());
  ASSERT_TRUE(GrantPerm("r", authpb::Permission::WRITE, "k", kFromKey).ok());
  const uint64_t rev = store_->Revision();
  OpenAll();
  EXPECT_TRUE(store_->IsEnabled());
  EXPECT_EQ(store_->Revision(), rev);
  EXPECT_THAT(store_->UserList().users(), ElementsAre("root"));
  EXPECT_THAT(store_->RoleList().roles(), ElementsAre("r"));
  EXPECT_TRUE(store_->CheckPassword("root", "rootpw").ok());
  // The raw records are etcd's.
  auto rtx = backend_->BeginRead();
  ASSERT_TRUE(rtx.ok());
  auto en = (*rtx)->Get(storage::kAuthBucket, "authEnabled");
  ASSERT_TRUE(en.ok() && en->has_value());
  EXPECT_EQ(std::string(**en), std::string(1, '\x01'));
  auto rv = (*rtx)->Get(storage::kAuthBucket, "authRevision");
  ASSERT_TRUE(rv.ok() && rv->has_value());
  EXPECT_EQ(std::string(**rv), storage::EncodeBigEndian64(rev));
  auto u = (*rtx)->Get(storage::kAuthUsersBucket, "root");
  ASSERT_TRUE(u.ok() && u->has_value());
  authpb::User user;
  ASSERT_TRUE(user.ParseFromArray((*u)->data(), static_cast<int>((*u)->size())));
  EXPECT_THAT(user.roles(), ElementsAre("root"));
  EXPECT_TRUE(BcryptCheck(user.password(), "rootpw"));
}

TEST_F(AuthStoreTest, ImportsUsersWrittenByEtcd) {
  // A user record as etcd 3.4 writes it, with a Go-made hash.
  authpb::User u;
  u.set_name("gopher");
  u.set_password("$2a$10$XajjQvNhvvRt5GSeFk1xFeyqRrsxkhBkUiQeg0dt.wU1qD4aFDcga");
  u.add_roles("root");
  {
    auto tx = backend_->BeginWrite();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE((*tx)->Put(storage::kAuthUsersBucket, "gopher", u.SerializeAsString()).ok());
    ASSERT_TRUE((*tx)->Put(storage::kAuthBucket, "authEnabled", std::string(1, '\x01')).ok());
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  auto rtx = backend_->BeginRead();
  ASSERT_TRUE(rtx.ok());
  ASSERT_TRUE(store_->Recover(rtx->get()).ok());
  EXPECT_TRUE(store_->IsEnabled());
  EXPECT_TRUE(store_->CheckPassword("gopher", "allmine").ok());
  EXPECT_FALSE(store_->CheckPassword("gopher", "notmine").ok());
}

// Names longer than an LMDB key (etcd 3.4 takes them): a 600-byte user
// name used to fail the apply with MDB_BAD_VALSIZE and stop the member on
// every replay.
class AuthStoreLongNameTest : public AuthStoreTest,
                              public ::testing::WithParamInterface<size_t> {};

TEST_P(AuthStoreLongNameTest, UsersAndRolesOfAnyNameLength) {
  const size_t n = GetParam();
  // Bytewise order: "a" < long user "b..." < "c"; same for the roles.
  const std::string user = "b" + std::string(n - 1, 'u');
  const std::string role = "b" + std::string(n - 1, 'r');
  const std::string big_key(100 * 1024, 'k');
  ASSERT_TRUE(AddUser("c", "pc").ok());
  ASSERT_TRUE(AddUser(user, "pw").ok());
  ASSERT_TRUE(AddUser("a", "pa").ok());
  ASSERT_TRUE(AddRole("c").ok());
  ASSERT_TRUE(AddRole(role).ok());
  ASSERT_TRUE(AddRole("a").ok());
  EXPECT_TRUE(IsErrorMessage(AddUser(user, "again"), "auth: user already exists"));
  EXPECT_TRUE(IsErrorMessage(AddRole(role), "auth: role already exists"));
  ASSERT_TRUE(Grant(user, role).ok());
  ASSERT_TRUE(Grant(user, "a").ok());
  ASSERT_TRUE(Grant("a", role).ok());
  ASSERT_TRUE(GrantPerm(role, authpb::Permission::READWRITE, big_key, "").ok());
  ASSERT_TRUE(GrantPerm(role, authpb::Permission::READ, "x", "y").ok());

  auto check = [&](const char* when) {
    SCOPED_TRACE(when);
    EXPECT_THAT(store_->UserList().users(), ElementsAre("a", user, "c"));
    EXPECT_THAT(store_->RoleList().roles(), ElementsAre("a", role, "c"));
    auto ug = store_->UserGet(user);
    ASSERT_TRUE(ug.ok()) << ug.status();
    EXPECT_THAT(ug->roles(), ElementsAre("a", role));
    auto ag = store_->UserGet("a");
    ASSERT_TRUE(ag.ok());
    EXPECT_THAT(ag->roles(), ElementsAre(role));
    auto rg = store_->RoleGet(role);
    ASSERT_TRUE(rg.ok()) << rg.status();
    ASSERT_EQ(rg->perm_size(), 2);
    EXPECT_EQ(rg->perm(0).key(), big_key);
    EXPECT_EQ(rg->perm(1).key(), "x");
    EXPECT_TRUE(store_->HasRole(user, role));
  };
  check("applied");
  OpenAll();
  check("reopened");
  {
    auto rtx = backend_->BeginRead();
    ASSERT_TRUE(rtx.ok());
    ASSERT_TRUE(store_->Recover(rtx->get()).ok());
  }
  check("recovered");

  // Where the records are: by name up to the key limit, else by hash.
  {
    auto rtx = backend_->BeginRead();
    ASSERT_TRUE(rtx.ok());
    auto users = (*rtx)->Count(storage::kAuthUsersBucket);
    auto hashed = (*rtx)->Count(storage::kAuthUsersHashedBucket);
    ASSERT_TRUE(users.ok() && hashed.ok());
    EXPECT_EQ(*users, n <= storage::kMaxKeyBytes ? 3u : 2u);
    EXPECT_EQ(*hashed, n <= storage::kMaxKeyBytes ? 0u : 1u);
  }

  // Permissions follow, with auth on.
  SetUpRootAndEnable();
  EXPECT_TRUE(store_->IsPutPermitted(Who(user), big_key).ok());
  EXPECT_TRUE(store_->IsRangePermitted(Who(user), "x", "").ok());
  EXPECT_TRUE(IsErrPermissionDenied(store_->IsPutPermitted(Who(user), "x")));
  EXPECT_TRUE(store_->CheckPassword(user, "pw").ok());
  ASSERT_TRUE(Disable().ok());

  ASSERT_TRUE(Revoke(user, "a").ok());
  etcdserverpb::AuthRoleRevokePermissionRequest rp;
  rp.set_role(role);
  rp.set_key("x");
  rp.set_range_end("y");
  ASSERT_TRUE(Do([&](storage::WriteTxn* t) { return store_->RoleRevokePermission(t, rp); }).ok());
  etcdserverpb::AuthUserChangePasswordRequest cp;
  cp.set_name(user);
  cp.set_password(*store_->HashPassword("pw2"));
  ASSERT_TRUE(Do([&](storage::WriteTxn* t) { return store_->UserChangePassword(t, cp); }).ok());
  // Deleting the role takes it from every user holding it.
  etcdserverpb::AuthRoleDeleteRequest rd;
  rd.set_role(role);
  ASSERT_TRUE(Do([&](storage::WriteTxn* t) { return store_->RoleDelete(t, rd); }).ok());
  EXPECT_THAT(store_->RoleList().roles(), ElementsAre("a", "c"));
  EXPECT_THAT(store_->UserGet(user)->roles(), IsEmpty());
  EXPECT_THAT(store_->UserGet("a")->roles(), IsEmpty());
  OpenAll();
  EXPECT_THAT(store_->RoleList().roles(), ElementsAre("a", "c"));
  EXPECT_THAT(store_->UserGet(user)->roles(), IsEmpty());
  etcdserverpb::AuthUserDeleteRequest ud;
  ud.set_name(user);
  ASSERT_TRUE(Do([&](storage::WriteTxn* t) { return store_->UserDelete(t, ud); }).ok());
  EXPECT_TRUE(IsErrorMessage(store_->UserGet(user).status(), "auth: user not found"));
  OpenAll();
  EXPECT_THAT(store_->UserList().users(), ElementsAre("a", "c", "root"));
  auto rtx = backend_->BeginRead();
  ASSERT_TRUE(rtx.ok());
  EXPECT_EQ(*(*rtx)->Count(storage::kAuthUsersHashedBucket), 0u);
  EXPECT_EQ(*(*rtx)->Count(storage::kAuthRolesHashedBucket), 0u);
}

// The backend's bucket copies (defragmentation; a raft snapshot's database
// replacing the contents) carry the hashed buckets along.
TEST_P(AuthStoreLongNameTest, SurviveDefragmentAndSnapshotReplace) {
  const std::string user(GetParam(), 'u');
  const std::string role(GetParam(), 'r');
  ASSERT_TRUE(AddUser(user, "pw").ok());
  ASSERT_TRUE(AddRole(role).ok());
  ASSERT_TRUE(Grant(user, role).ok());
  auto check = [&](const char* when) {
    SCOPED_TRACE(when);
    EXPECT_THAT(store_->UserList().users(), ElementsAre(user));
    EXPECT_THAT(store_->RoleList().roles(), ElementsAre(role));
    EXPECT_TRUE(store_->HasRole(user, role));
  };
  ASSERT_TRUE(backend_->Defragment().ok());
  {
    auto rtx = backend_->BeginRead();
    ASSERT_TRUE(rtx.ok());
    ASSERT_TRUE(store_->Recover(rtx->get()).ok());
  }
  check("defragmented");
  const std::string copy = (std::filesystem::path(dir_) / "copy.db").string();
  {
    int fd = ::open(copy.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(backend_->CopyTo(fd).ok());
    ::close(fd);
  }
  // Empty the store, then take the copy's contents as a snapshot install does.
  etcdserverpb::AuthUserDeleteRequest ud;
  ud.set_name(user);
  ASSERT_TRUE(Do([&](storage::WriteTxn* t) { return store_->UserDelete(t, ud); }).ok());
  EXPECT_THAT(store_->UserList().users(), IsEmpty());
  ASSERT_TRUE(backend_->ReplaceContentsFrom(copy).ok());
  {
    auto rtx = backend_->BeginRead();
    ASSERT_TRUE(rtx.ok());
    ASSERT_TRUE(store_->Recover(rtx->get()).ok());
  }
  check("replaced");
}

INSTANTIATE_TEST_SUITE_P(Lengths, AuthStoreLongNameTest,
                         ::testing::Values(storage::kMaxKeyBytes, storage::kMaxKeyBytes + 1, 600,
                                           70 * 1024, 100 * 1024));

// etcd takes any bytes as user and role names and passwords (Go strings);
// so does cppetcd (the fields are `bytes` in its protos). A user record
// holding a role name that is not valid UTF-8 must load again on restart.
TEST_F(AuthStoreTest, NamesAndPasswordsThatAreNotUtf8) {
  const std::string user = "\xff\xfeu";
  const std::string role = "\xc3\x28";
  const std::string pw = "p\xff\xc3w";
  ASSERT_TRUE(AddUser(user, pw).ok());
  ASSERT_TRUE(AddUser("a", "pa").ok());
  ASSERT_TRUE(AddRole(role).ok());
  ASSERT_TRUE(AddRole("r\xed\xa0\x80").ok());  // an encoded surrogate
  ASSERT_TRUE(Grant(user, role).ok());
  ASSERT_TRUE(Grant("a", role).ok());
  ASSERT_TRUE(Grant(user, "r\xed\xa0\x80").ok());
  ASSERT_TRUE(GrantPerm(role, authpb::Permission::READ, "k", "l").ok());
  auto check = [&](const char* when) {
    SCOPED_TRACE(when);
    EXPECT_THAT(store_->UserList().users(), ElementsAre("a", user));  // bytewise order
    EXPECT_THAT(store_->RoleList().roles(), ElementsAre("r\xed\xa0\x80", role));
    auto ug = store_->UserGet(user);
    ASSERT_TRUE(ug.ok()) << ug.status();
    EXPECT_THAT(ug->roles(), ElementsAre("r\xed\xa0\x80", role));
    EXPECT_TRUE(store_->HasRole("a", role));
    auto rg = store_->RoleGet(role);
    ASSERT_TRUE(rg.ok()) << rg.status();
    ASSERT_EQ(rg->perm_size(), 1);
  };
  check("applied");
  OpenAll();
  check("reopened");
  {
    auto rtx = backend_->BeginRead();
    ASSERT_TRUE(rtx.ok());
    auto u = (*rtx)->Get(storage::kAuthUsersBucket, user);
    ASSERT_TRUE(u.ok() && u->has_value());
    authpb::User rec;
    ASSERT_TRUE(rec.ParseFromArray((*u)->data(), static_cast<int>((*u)->size())));
    EXPECT_EQ(rec.name(), user);
    EXPECT_THAT(rec.roles(), ElementsAre("r\xed\xa0\x80", role));
  }
  SetUpRootAndEnable();
  EXPECT_TRUE(store_->CheckPassword(user, pw).ok());
  EXPECT_FALSE(store_->CheckPassword(user, "p\xef\xbf\xbd\xef\xbf\xbdw").ok());
  EXPECT_TRUE(store_->IsRangePermitted(Who(user), "k", "").ok());
  EXPECT_TRUE(IsErrPermissionDenied(store_->IsPutPermitted(Who(user), "k")));
  ASSERT_TRUE(Disable().ok());
  ASSERT_TRUE(Revoke(user, role).ok());
  etcdserverpb::AuthRoleDeleteRequest rd;
  rd.set_role("r\xed\xa0\x80");
  ASSERT_TRUE(Do([&](storage::WriteTxn* t) { return store_->RoleDelete(t, rd); }).ok());
  OpenAll();
  EXPECT_THAT(store_->UserGet(user)->roles(), IsEmpty());
  EXPECT_THAT(store_->RoleList().roles(), ::testing::Contains(role));
  EXPECT_THAT(store_->RoleList().roles(), ::testing::Not(::testing::Contains("r\xed\xa0\x80")));
}

TEST_F(AuthStoreTest, EmptyNamesGetEtcdErrors) {
  EXPECT_TRUE(IsErrorMessage(AddUser("", "pw"), "auth: user name is empty"));
  EXPECT_TRUE(IsErrorMessage(AddRole(""), "auth: role name is empty"));
  EXPECT_EQ(store_->Revision(), 1u);
}

TEST_F(AuthStoreTest, HashedRecordMustMatchItsName) {
  authpb::Role r;
  r.set_name(std::string(600, 'r'));
  {
    auto tx = backend_->BeginWrite();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE((*tx)->Put(storage::kAuthRolesHashedBucket, std::string(32, 'h'),
                           r.SerializeAsString())
                    .ok());
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  auto rtx = backend_->BeginRead();
  ASSERT_TRUE(rtx.ok());
  EXPECT_EQ(store_->Recover(rtx->get()).code(), absl::StatusCode::kDataLoss);
}

TEST_F(AuthStoreTest, PutAuthRecordPlacesLongNamesByHash) {
  authpb::User u;
  u.set_name(std::string(40000, 'g'));  // bbolt (etcd) takes it
  {
    auto tx = backend_->BeginWrite();
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(
        PutAuthRecord(tx->get(), storage::kAuthUsersBucket, u.name(), u.SerializeAsString()).ok());
    EXPECT_TRUE(IsErrorMessage(
        PutAuthRecord(tx->get(), storage::kAuthRolesBucket, "", ""), "auth: role name is empty"));
    EXPECT_EQ(PutAuthRecord(tx->get(), storage::kKeyBucket, "k", "").code(),
              absl::StatusCode::kInvalidArgument);
    ASSERT_TRUE((*tx)->Commit().ok());
  }
  auto rtx = backend_->BeginRead();
  ASSERT_TRUE(rtx.ok());
  ASSERT_TRUE(store_->Recover(rtx->get()).ok());
  EXPECT_THAT(store_->UserList().users(), ElementsAre(u.name()));
}

// The apply loop's sequence for one auth entry among others in a batch: an
// earlier entry's write, then the entry in a savepoint. The entry fails at
// its third record write (after two succeeded): its writes are dropped, the
// store's memory is as before, the earlier write stays, and the next entry
// applies on the same txn.
TEST_F(AuthStoreTest, EntryFailingMidApplyLeavesNothingBehind) {
  ASSERT_TRUE(AddRole("r").ok());
  for (const char* u : {"u1", "u2", "u3"}) {
    ASSERT_TRUE(AddUser(u, "pw").ok());
    ASSERT_TRUE(Grant(u, "r").ok());
  }
  const uint64_t rev = store_->Revision();
  auto tx = backend_->BeginWrite();
  ASSERT_TRUE(tx.ok());
  storage::WriteTxn* t = tx->get();
  ASSERT_TRUE(t->Put(storage::kMetaBucket, "earlier", "entry").ok());
  // Role r's delete rewrites u1, u2, u3: the third rewrite fails.
  fail_bucket_ = std::string(storage::kAuthUsersBucket);
  fail_at_ = 3;
  ASSERT_TRUE(t->BeginNested().ok());
  etcdserverpb::AuthRoleDeleteRequest rd;
  rd.set_role("r");
  absl::Status s = store_->RoleDelete(t, rd);
  EXPECT_TRUE(IsErrorMessage(s, "injected write fault")) << s;
  EXPECT_TRUE(t->NestedWrote());  // the role's delete and two rewrites
  ASSERT_TRUE(t->EndNested(false).ok());
  auto unchanged = [&](const char* when) {
    SCOPED_TRACE(when);
    EXPECT_EQ(store_->Revision(), rev);
    EXPECT_THAT(store_->RoleList().roles(), ElementsAre("r"));
    for (const char* u : {"u1", "u2", "u3"}) EXPECT_TRUE(store_->HasRole(u, "r")) << u;
  };
  unchanged("in memory");
  {
    auto r = t->Get(storage::kAuthRolesBucket, "r");
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->has_value());
  }
  // The next entry.
  etcdserverpb::AuthUserDeleteRequest ud;
  ud.set_name("u3");
  ASSERT_TRUE(t->BeginNested().ok());
  ASSERT_TRUE(store_->UserDelete(t, ud).ok());
  ASSERT_TRUE(t->EndNested(true).ok());
  ASSERT_TRUE(t->Commit().ok());
  tx->reset();
  OpenAll();
  EXPECT_EQ(store_->Revision(), rev + 1);
  EXPECT_THAT(store_->RoleList().roles(), ElementsAre("r"));
  EXPECT_THAT(store_->UserList().users(), ElementsAre("u1", "u2"));
  EXPECT_TRUE(store_->HasRole("u1", "r"));
  EXPECT_TRUE(store_->HasRole("u2", "r"));
  auto rtx = backend_->BeginRead();
  ASSERT_TRUE(rtx.ok());
  EXPECT_EQ(**(*rtx)->Get(storage::kMetaBucket, "earlier"), "entry");
}

}  // namespace
}  // namespace cppetcd::auth
