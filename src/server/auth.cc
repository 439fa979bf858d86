// EtcdServer auth: the Auth service calls (proposed through raft, applied
// here against the AuthStore), the caller's identity from the current
// credentials, and the permission checks of etcd 3.4's authApplierV3 that
// every member repeats at apply time.
#include "server_impl.h"

#include "cppetcd/auth/credentials.h"
#include "cppetcd/auth/errors.h"

namespace cppetcd::server {
namespace {

// How long a member waits to apply the entry behind a simple token it does
// not know yet (the token was issued through another member).
constexpr milliseconds kTokenIndexWait{2000};
// Authenticate retries when the auth store changed between the password
// check and the token's creation (etcd retries without bound).
constexpr int kAuthenticateAttempts = 5;

auth::AuthInfo HeaderAuthInfo(const serverpb::InternalRaftRequest& r) {
  return auth::AuthInfo{r.header().username(), r.header().auth_revision()};
}

// etcd needAdminPermission.
bool NeedsAdmin(const serverpb::InternalRaftRequest& r) {
  return r.has_auth_enable() || r.has_auth_disable() || r.has_auth_user_add() ||
         r.has_auth_user_delete() || r.has_auth_user_change_password() ||
         r.has_auth_user_grant_role() || r.has_auth_user_revoke_role() ||
         r.has_auth_role_add() || r.has_auth_role_grant_permission() ||
         r.has_auth_role_revoke_permission() || r.has_auth_role_delete() ||
         r.has_auth_user_list() || r.has_auth_role_list();
}

template <class Resp>
std::shared_ptr<google::protobuf::Message> Empty() {
  return std::make_shared<Resp>();
}

}  // namespace

absl::Status EtcdServer::Impl::OpenAuthStore() {
  auth::TokenProviderOptions topts;
  topts.clock = clock_;
  topts.simple_ttl = cfg_.auth_token_ttl;
  topts.wait_applied = [this](uint64_t index) { return WaitApplied(index, kTokenIndexWait); };
  topts.logger = lg_.WithComponent("auth");
  auto tp = auth::NewTokenProvider(cfg_.auth_token, std::move(topts));
  if (!tp.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("failed to create token provider: ", tp.status().message()));
  }
  auth::AuthStoreOptions aopts;
  aopts.token_provider = std::move(*tp);
  aopts.bcrypt_cost = cfg_.bcrypt_cost;
  aopts.logger = lg_.WithComponent("auth");
  auto st = auth::AuthStore::Open(backend_.get(), std::move(aopts));
  if (!st.ok()) return st.status();
  auth_ = std::move(*st);
  return absl::OkStatus();
}

bool EtcdServer::Impl::WaitApplied(uint64_t index, milliseconds timeout) {
  util::MutexLock l(&applied_mu_);
  if (std::this_thread::get_id() == apply_thread_id_.load(std::memory_order_relaxed)) {
    // A waiter's callback on the apply thread runs before its batch
    // commits (ApplyBatch): waiting here would stall that commit. Entries of
    // the batch being answered are applied in memory already.
    return applied_index_ >= index || replied_index_.load(std::memory_order_relaxed) >= index;
  }
  return timer_clock_->WaitUntil(&applied_cv_, &applied_mu_, timer_clock_->Now() + timeout,
                                 [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(applied_mu_) {
                                   return applied_index_ >= index || Stopping();
                                 }) &&
         applied_index_ >= index;
}

absl::StatusOr<auth::AuthInfo> EtcdServer::Impl::CallerAuthInfo(
    const auth::Credentials& caller) const {
  if (auth_ == nullptr) return auth::AuthInfo{};
  if (caller.token.has_value()) return auth_->AuthInfoFromToken(*caller.token);
  if (caller.common_name.has_value() && !caller.common_name->empty()) {
    return auth_->AuthInfoFromCommonName(*caller.common_name);
  }
  return auth::AuthInfo{};
}

absl::Status EtcdServer::Impl::StampCaller(const auth::Credentials& caller,
                                           serverpb::InternalRaftRequest* r) const {
  absl::StatusOr<auth::AuthInfo> ai = CallerAuthInfo(caller);
  if (!ai.ok()) return ai.status();
  r->mutable_header()->set_username(ai->username);
  r->mutable_header()->set_auth_revision(ai->revision);
  return absl::OkStatus();
}

void EtcdServer::Impl::StampRoot(serverpb::InternalRaftRequest* r) const {
  if (auth_ == nullptr) return;
  r->mutable_header()->set_username(std::string(auth::kRootUser));
  r->mutable_header()->set_auth_revision(auth_->Revision());
}

absl::Status EtcdServer::Impl::CheckAtApply(const serverpb::InternalRaftRequest& r) {
  if (!auth_->IsEnabled()) return absl::OkStatus();
  const auth::AuthInfo ai = HeaderAuthInfo(r);
  // A lease's keys must all be writable to revoke it or attach more to it.
  auto check_lease_keys = [&](int64_t id) -> absl::Status {
    if (id == lease::kNoLease) return absl::OkStatus();
    std::optional<lease::LeaseInfo> info = lessor_->Lookup(id);
    if (!info.has_value()) return absl::OkStatus();
    for (const auto& k : info->keys) {
      if (auto s = auth_->IsPutPermitted(ai, k); !s.ok()) return s;
    }
    return absl::OkStatus();
  };
  if (r.has_put()) {
    if (auto s = auth_->IsPutPermitted(ai, r.put().key()); !s.ok()) return s;
    if (auto s = check_lease_keys(r.put().lease()); !s.ok()) return s;
    if (r.put().prev_kv()) return auth_->IsRangePermitted(ai, r.put().key(), "");
  } else if (r.has_delete_range()) {
    const auto& d = r.delete_range();
    if (auto s = auth_->IsDeleteRangePermitted(ai, d.key(), d.range_end()); !s.ok()) return s;
    if (d.prev_kv()) return auth_->IsRangePermitted(ai, d.key(), d.range_end());
  } else if (r.has_txn()) {
    return auth_->IsTxnPermitted(ai, r.txn());
  } else if (r.has_range()) {
    return auth_->IsRangePermitted(ai, r.range().key(), r.range().range_end());
  } else if (r.has_lease_revoke()) {
    return check_lease_keys(r.lease_revoke().id());
  }
  return absl::OkStatus();
}

bool EtcdServer::Impl::ApplyAuthRequest(storage::WriteTxn* btx, const raftpb::Entry& e,
                                        const serverpb::InternalRaftRequest& r, Outcome* o) {
  const auth::AuthInfo ai = HeaderAuthInfo(r);
  if (NeedsAdmin(r)) {
    if (auto s = auth_->IsAdminPermitted(ai); !s.ok()) {
      o->status = s;
      return true;
    }
  }
  // A change runs in a savepoint: an error after some of its writes (a
  // record LMDB refuses) drops them, and the store's memory is untouched
  // until all its writes succeeded (see auth/store.h).
  const bool changes = NeedsAdmin(r) && !r.has_auth_user_list() && !r.has_auth_role_list();
  if (changes) {
    if (auto sp = btx->BeginNested(); !sp.ok()) {
      lg_.Fatal("failed to begin a backend savepoint", {{"index", e.index()}, {"error", sp.ToString()}});
    }
  }
  absl::Status s;
  if (r.has_authenticate()) {
    auto tok = auth_->Authenticate(r.authenticate().name(), r.authenticate().simple_token(),
                                   e.index());
    if (tok.ok()) {
      auto resp = std::make_shared<etcdserverpb::AuthenticateResponse>();
      resp->set_token(*tok);
      o->auth_response = resp;
    }
    s = tok.status();
  } else if (r.has_auth_enable()) {
    s = auth_->AuthEnable(btx);
    o->auth_response = Empty<etcdserverpb::AuthEnableResponse>();
  } else if (r.has_auth_disable()) {
    s = auth_->AuthDisable(btx);
    o->auth_response = Empty<etcdserverpb::AuthDisableResponse>();
  } else if (r.has_auth_user_add()) {
    s = auth_->UserAdd(btx, r.auth_user_add());
    o->auth_response = Empty<etcdserverpb::AuthUserAddResponse>();
  } else if (r.has_auth_user_delete()) {
    s = auth_->UserDelete(btx, r.auth_user_delete());
    o->auth_response = Empty<etcdserverpb::AuthUserDeleteResponse>();
  } else if (r.has_auth_user_change_password()) {
    s = auth_->UserChangePassword(btx, r.auth_user_change_password());
    o->auth_response = Empty<etcdserverpb::AuthUserChangePasswordResponse>();
  } else if (r.has_auth_user_grant_role()) {
    s = auth_->UserGrantRole(btx, r.auth_user_grant_role());
    o->auth_response = Empty<etcdserverpb::AuthUserGrantRoleResponse>();
  } else if (r.has_auth_user_revoke_role()) {
    s = auth_->UserRevokeRole(btx, r.auth_user_revoke_role());
    o->auth_response = Empty<etcdserverpb::AuthUserRevokeRoleResponse>();
  } else if (r.has_auth_role_add()) {
    s = auth_->RoleAdd(btx, r.auth_role_add());
    o->auth_response = Empty<etcdserverpb::AuthRoleAddResponse>();
  } else if (r.has_auth_role_delete()) {
    s = auth_->RoleDelete(btx, r.auth_role_delete());
    o->auth_response = Empty<etcdserverpb::AuthRoleDeleteResponse>();
  } else if (r.has_auth_role_grant_permission()) {
    s = auth_->RoleGrantPermission(btx, r.auth_role_grant_permission());
    o->auth_response = Empty<etcdserverpb::AuthRoleGrantPermissionResponse>();
  } else if (r.has_auth_role_revoke_permission()) {
    s = auth_->RoleRevokePermission(btx, r.auth_role_revoke_permission());
    o->auth_response = Empty<etcdserverpb::AuthRoleRevokePermissionResponse>();
  } else if (r.has_auth_user_list()) {
    o->auth_response = std::make_shared<etcdserverpb::AuthUserListResponse>(auth_->UserList());
  } else if (r.has_auth_role_list()) {
    o->auth_response = std::make_shared<etcdserverpb::AuthRoleListResponse>(auth_->RoleList());
  } else if (r.has_auth_user_get()) {
    // An admin, or the user asking about itself.
    if (auto a = auth_->IsAdminPermitted(ai); !a.ok() && r.auth_user_get().name() != ai.username) {
      s = a;
    } else {
      auto got = auth_->UserGet(r.auth_user_get().name());
      s = got.status();
      if (got.ok()) {
        o->auth_response = std::make_shared<etcdserverpb::AuthUserGetResponse>(std::move(*got));
      }
    }
  } else if (r.has_auth_role_get()) {
    // An admin, or a user holding the role.
    if (auto a = auth_->IsAdminPermitted(ai);
        !a.ok() && !auth_->HasRole(ai.username, r.auth_role_get().role())) {
      s = a;
    } else {
      auto got = auth_->RoleGet(r.auth_role_get().role());
      s = got.status();
      if (got.ok()) {
        o->auth_response = std::make_shared<etcdserverpb::AuthRoleGetResponse>(std::move(*got));
      }
    }
  } else {
    return false;
  }
  if (changes) {
    if (auto sp = btx->EndNested(/*keep=*/s.ok()); !sp.ok()) {
      lg_.Fatal("failed to end a backend savepoint", {{"index", e.index()}, {"error", sp.ToString()}});
    }
    // Only a change writes: a storage fault there (not the entry's doing,
    // maybe not other members') stops this member. Authenticate's errors
    // (a token signing failure) are the client's result.
    if (!s.ok() && (s.code() == absl::StatusCode::kInternal ||
                    s.code() == absl::StatusCode::kDataLoss ||
                    s.code() == absl::StatusCode::kResourceExhausted)) {
      lg_.Fatal("failed to apply auth request: local storage fault",
                {{"index", e.index()}, {"error", s.ToString()}});
    }
  }
  if (!s.ok()) o->auth_response.reset();
  o->status = std::move(s);
  return true;
}

template <class Resp>
void EtcdServer::Impl::ProposeAuth(const auth::Credentials& caller,
                                   serverpb::InternalRaftRequest r, Done<Resp> done) {
  if (self_learner_.load()) return std::move(done)(ErrNotSupportedForLearner());
  if (Stopping()) return std::move(done)(ErrStopped());
  if (auto s = StampCaller(caller, &r); !s.ok()) return std::move(done)(std::move(s));
  Propose(std::move(r), [this, done = std::move(done)](Outcome o) mutable {
    if (!o.status.ok()) return std::move(done)(std::move(o.status));
    Resp resp;
    if (auto* m = dynamic_cast<Resp*>(o.auth_response.get())) resp = std::move(*m);
    FillHeaderImpl(resp.mutable_header(), true);
    std::move(done)(std::move(resp));
  });
}

void EtcdServer::Impl::AuthenticateAttempt(etcdserverpb::AuthenticateRequest req,
                                           int attempts_left,
                                           Done<etcdserverpb::AuthenticateResponse> done) {
  absl::StatusOr<uint64_t> checked = auth_->CheckPassword(req.name(), req.password());
  if (!checked.ok()) {
    if (!auth::IsAuthNotEnabled(checked.status())) {
      lg_.Warn("invalid authentication was requested",
               {{"user", req.name()}, {"error", checked.status().ToString()}});
    }
    return std::move(done)(checked.status());
  }
  serverpb::InternalRaftRequest r;
  r.mutable_authenticate()->set_name(req.name());
  r.mutable_authenticate()->set_simple_token(auth_->Tokens()->GenTokenPrefix());
  const uint64_t rev = *checked;
  Propose(std::move(r), [this, req = std::move(req), rev, attempts_left,
                         done = std::move(done)](Outcome o) mutable {
    if (!o.status.ok()) return std::move(done)(std::move(o.status));
    if (rev != auth_->Revision() && attempts_left > 1) {
      // The user may have changed since its password was checked.
      lg_.Info("revision when password checked became stale; retrying");
      return AuthenticateAttempt(std::move(req), attempts_left - 1, std::move(done));
    }
    etcdserverpb::AuthenticateResponse resp;
    if (auto* m = dynamic_cast<etcdserverpb::AuthenticateResponse*>(o.auth_response.get())) {
      resp = std::move(*m);
    }
    FillHeaderImpl(resp.mutable_header(), true);
    std::move(done)(std::move(resp));
  });
}

// ---------------------------------------------------------------------------
// EtcdServer facade.

auth::AuthStore* EtcdServer::AuthStore() { return impl_->auth_.get(); }

absl::Status EtcdServer::AuthorizeAdmin(const auth::Credentials& caller) {
  if (impl_->auth_ == nullptr) return ErrStopped();
  absl::StatusOr<auth::AuthInfo> ai = impl_->CallerAuthInfo(caller);
  if (!ai.ok()) return ai.status();
  return impl_->auth_->IsAdminPermitted(*ai);
}

absl::Status EtcdServer::AuthorizeRange(const auth::Credentials& caller, const std::string& key,
                                        const std::string& range_end) {
  if (impl_->auth_ == nullptr) return ErrStopped();
  absl::StatusOr<auth::AuthInfo> ai = impl_->CallerAuthInfo(caller);
  if (!ai.ok()) return ai.status();
  return impl_->auth_->IsRangePermitted(*ai, key, range_end);
}

void EtcdServer::Authenticate(const auth::Credentials& /*caller: anybody may*/,
                              const etcdserverpb::AuthenticateRequest& req,
                              Done<etcdserverpb::AuthenticateResponse> done) {
  if (impl_->self_learner_.load()) return std::move(done)(ErrNotSupportedForLearner());
  if (impl_->Stopping()) return std::move(done)(ErrStopped());
  impl_->AuthenticateAttempt(req, kAuthenticateAttempts, std::move(done));
}

#define CPPETCD_AUTH_CALL(Method, Field, Req, Resp)                                     \
  void EtcdServer::Method(const auth::Credentials& caller, const etcdserverpb::Req& req, \
                          Done<etcdserverpb::Resp> done) {                               \
    serverpb::InternalRaftRequest r;                                                     \
    *r.mutable_##Field() = req;                                                          \
    impl_->ProposeAuth<etcdserverpb::Resp>(caller, std::move(r), std::move(done));      \
  }

CPPETCD_AUTH_CALL(AuthEnable, auth_enable, AuthEnableRequest, AuthEnableResponse)
CPPETCD_AUTH_CALL(AuthDisable, auth_disable, AuthDisableRequest, AuthDisableResponse)
CPPETCD_AUTH_CALL(UserGet, auth_user_get, AuthUserGetRequest, AuthUserGetResponse)
CPPETCD_AUTH_CALL(UserList, auth_user_list, AuthUserListRequest, AuthUserListResponse)
CPPETCD_AUTH_CALL(UserDelete, auth_user_delete, AuthUserDeleteRequest, AuthUserDeleteResponse)
CPPETCD_AUTH_CALL(UserGrantRole, auth_user_grant_role, AuthUserGrantRoleRequest,
                  AuthUserGrantRoleResponse)
CPPETCD_AUTH_CALL(UserRevokeRole, auth_user_revoke_role, AuthUserRevokeRoleRequest,
                  AuthUserRevokeRoleResponse)
CPPETCD_AUTH_CALL(RoleAdd, auth_role_add, AuthRoleAddRequest, AuthRoleAddResponse)
CPPETCD_AUTH_CALL(RoleGet, auth_role_get, AuthRoleGetRequest, AuthRoleGetResponse)
CPPETCD_AUTH_CALL(RoleList, auth_role_list, AuthRoleListRequest, AuthRoleListResponse)
CPPETCD_AUTH_CALL(RoleDelete, auth_role_delete, AuthRoleDeleteRequest, AuthRoleDeleteResponse)
CPPETCD_AUTH_CALL(RoleGrantPermission, auth_role_grant_permission,
                  AuthRoleGrantPermissionRequest, AuthRoleGrantPermissionResponse)
CPPETCD_AUTH_CALL(RoleRevokePermission, auth_role_revoke_permission,
                  AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse)
#undef CPPETCD_AUTH_CALL

void EtcdServer::UserAdd(const auth::Credentials& caller,
                         const etcdserverpb::AuthUserAddRequest& req,
                         Done<etcdserverpb::AuthUserAddResponse> done) {
  serverpb::InternalRaftRequest r;
  *r.mutable_auth_user_add() = req;
  if (!(req.has_options() && req.options().no_password())) {
    // Only the hash travels through raft (see AuthStore::UserAdd).
    absl::StatusOr<std::string> h = impl_->auth_->HashPassword(req.password());
    if (!h.ok()) return std::move(done)(h.status());
    r.mutable_auth_user_add()->set_password(*h);
  } else {
    r.mutable_auth_user_add()->clear_password();
  }
  impl_->ProposeAuth<etcdserverpb::AuthUserAddResponse>(caller, std::move(r), std::move(done));
}

void EtcdServer::UserChangePassword(const auth::Credentials& caller,
                                    const etcdserverpb::AuthUserChangePasswordRequest& req,
                                    Done<etcdserverpb::AuthUserChangePasswordResponse> done) {
  serverpb::InternalRaftRequest r;
  *r.mutable_auth_user_change_password() = req;
  absl::StatusOr<std::string> h = impl_->auth_->HashPassword(req.password());
  if (!h.ok()) return std::move(done)(h.status());
  r.mutable_auth_user_change_password()->set_password(*h);
  impl_->ProposeAuth<etcdserverpb::AuthUserChangePasswordResponse>(caller, std::move(r),
                                                                   std::move(done));
}

}  // namespace cppetcd::server
