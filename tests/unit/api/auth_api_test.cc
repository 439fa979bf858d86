// The Auth service and the caller's credentials through real gRPC calls to
// an ApiServer over a single-member EtcdServer with auth enabled: the token
// metadata ("token", or "authorization" from the HTTP gateway) reaches the
// KV and Lock services, including the Lock service's later steps on its
// executor thread.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "cppetcd/api/etcd_server_backend.h"
#include "cppetcd/api/grpc_server.h"
#include "cppetcd/server/etcd_server.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "v3lockpb/v3lock.grpc.pb.h"

namespace cppetcd::api {
namespace {

using std::chrono::milliseconds;

#if defined(__SANITIZE_THREAD__)
constexpr bool kSkipGrpcTests = true;  // gRPC is not TSan-instrumented here
#else
constexpr bool kSkipGrpcTests = false;
#endif

class AuthApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kSkipGrpcTests) GTEST_SKIP() << "gRPC is not TSan-instrumented here";
    char tmpl[] = "/tmp/cppetcd-auth-api-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    server::ServerConfig config;
    config.name = "auth-api-test";
    config.data_dir = dir_ + "/data";
    config.initial_cluster = {{"auth-api-test", {"http://127.0.0.1:0"}}};
    config.heartbeat_interval = milliseconds(10);
    config.election_timeout = milliseconds(100);
    config.bcrypt_cost = 4;
    auto created = server::EtcdServer::Create(std::move(config));
    ASSERT_TRUE(created.ok()) << created.status();
    server_ = std::move(*created);
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_TRUE(server_->WaitReady(std::chrono::seconds(20)));
    backend_ = NewEtcdServerBackend(server_.get());
    ApiServerOptions options;
    options.listen_addresses = {"127.0.0.1:0"};
    auto api = ApiServer::Start(backend_.get(), std::move(options));
    ASSERT_TRUE(api.ok()) << api.status();
    api_ = std::move(*api);
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(api_->Ports()[0]),
                                       grpc::InsecureChannelCredentials());
    kv_ = etcdserverpb::KV::NewStub(channel);
    auth_ = etcdserverpb::Auth::NewStub(channel);
    lease_ = etcdserverpb::Lease::NewStub(channel);
    lock_ = v3lockpb::Lock::NewStub(channel);
  }
  void TearDown() override {
    if (api_) api_->Shutdown(milliseconds(100));
    api_.reset();
    backend_.reset();
    if (server_) server_->Stop();
    server_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // A client context with a deadline and, if given, a token under `key`.
  static std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token = "",
                                                  const std::string& key = "token") {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!token.empty()) ctx->AddMetadata(key, token);
    return ctx;
  }

  template <class Req, class Resp, class Stub, class Method>
  grpc::Status Do(Stub* stub, Method method, const Req& req, const std::string& token = "") {
    auto ctx = Ctx(token);
    Resp resp;
    return (stub->*method)(ctx.get(), req, &resp);
  }

  std::string Login(const std::string& user, const std::string& pw) {
    etcdserverpb::AuthenticateRequest req;
    req.set_name(user);
    req.set_password(pw);
    etcdserverpb::AuthenticateResponse resp;
    auto ctx = Ctx();
    grpc::Status s = auth_->Authenticate(ctx.get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.token();
  }

  // root (role root) and user "locker" with readwrite on prefix "locks/".
  void SetUpAndEnable() {
    using etcdserverpb::Auth;
    etcdserverpb::AuthUserAddRequest ua;
    ua.set_name("root");
    ua.set_password("rootpw");
    ASSERT_TRUE((Do<etcdserverpb::AuthUserAddRequest, etcdserverpb::AuthUserAddResponse>(
                     auth_.get(), &Auth::Stub::UserAdd, ua))
                    .ok());
    ua.set_name("locker");
    ua.set_password("lockpw");
    ASSERT_TRUE((Do<etcdserverpb::AuthUserAddRequest, etcdserverpb::AuthUserAddResponse>(
                     auth_.get(), &Auth::Stub::UserAdd, ua))
                    .ok());
    etcdserverpb::AuthRoleAddRequest ra;
    ra.set_name("lockers");
    ASSERT_TRUE((Do<etcdserverpb::AuthRoleAddRequest, etcdserverpb::AuthRoleAddResponse>(
                     auth_.get(), &Auth::Stub::RoleAdd, ra))
                    .ok());
    etcdserverpb::AuthRoleGrantPermissionRequest gp;
    gp.set_name("lockers");
    gp.mutable_perm()->set_permtype(authpb::Permission::READWRITE);
    gp.mutable_perm()->set_key("locks/");
    gp.mutable_perm()->set_range_end("locks0");
    ASSERT_TRUE((Do<etcdserverpb::AuthRoleGrantPermissionRequest,
                    etcdserverpb::AuthRoleGrantPermissionResponse>(
                     auth_.get(), &Auth::Stub::RoleGrantPermission, gp))
                    .ok());
    for (auto [user, role] : {std::pair{"root", "root"}, std::pair{"locker", "lockers"}}) {
      etcdserverpb::AuthUserGrantRoleRequest g;
      g.set_user(user);
      g.set_role(role);
      ASSERT_TRUE((Do<etcdserverpb::AuthUserGrantRoleRequest,
                      etcdserverpb::AuthUserGrantRoleResponse>(
                       auth_.get(), &Auth::Stub::UserGrantRole, g))
                      .ok());
    }
    ASSERT_TRUE((Do<etcdserverpb::AuthEnableRequest, etcdserverpb::AuthEnableResponse>(
                     auth_.get(), &Auth::Stub::AuthEnable, etcdserverpb::AuthEnableRequest()))
                    .ok());
  }

  std::string dir_;
  std::unique_ptr<server::EtcdServer> server_;
  std::unique_ptr<ServerBackend> backend_;
  std::unique_ptr<ApiServer> api_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Auth::Stub> auth_;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_;
  std::unique_ptr<v3lockpb::Lock::Stub> lock_;
};

TEST_F(AuthApiTest, TokensFromEitherMetadataKey) {
  SetUpAndEnable();
  const std::string token = Login("locker", "lockpw");
  etcdserverpb::PutRequest put;
  put.set_key("locks/a");
  put.set_value("v");
  etcdserverpb::PutResponse resp;
  auto none = Ctx();
  grpc::Status s = kv_->Put(none.get(), put, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "etcdserver: user name is empty");
  auto with_token = Ctx(token);
  EXPECT_TRUE(kv_->Put(with_token.get(), put, &resp).ok());
  auto gateway = Ctx(token, "authorization");
  EXPECT_TRUE(kv_->Put(gateway.get(), put, &resp).ok());
  put.set_key("elsewhere");
  auto denied = Ctx(token);
  s = kv_->Put(denied.get(), put, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(s.error_message(), "etcdserver: permission denied");
}

TEST_F(AuthApiTest, LockServiceActsAsTheCaller) {
  SetUpAndEnable();
  const std::string token = Login("locker", "lockpw");
  etcdserverpb::LeaseGrantRequest lg;
  lg.set_ttl(30);
  etcdserverpb::LeaseGrantResponse lease;
  auto lctx = Ctx(token);
  ASSERT_TRUE(lease_->LeaseGrant(lctx.get(), lg, &lease).ok());

  v3lockpb::LockRequest req;
  req.set_name("locks/l1");
  req.set_lease(lease.id());
  v3lockpb::LockResponse resp;
  auto ok_ctx = Ctx(token);
  grpc::Status s = lock_->Lock(ok_ctx.get(), req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.key().rfind("locks/l1/", 0), 0u) << resp.key();

  // Without credentials the lock's writes are refused.
  req.set_name("locks/l2");
  auto anon = Ctx();
  s = lock_->Lock(anon.get(), req, &resp);
  EXPECT_FALSE(s.ok());
  // Outside the user's keys too.
  req.set_name("other");
  auto outside = Ctx(token);
  s = lock_->Lock(outside.get(), req, &resp);
  EXPECT_FALSE(s.ok());

  v3lockpb::UnlockRequest un;
  un.set_key(resp.key().empty() ? "locks/l1/x" : resp.key());
  v3lockpb::UnlockResponse unresp;
  auto uctx = Ctx(token);
  EXPECT_TRUE(lock_->Unlock(uctx.get(), un, &unresp).ok());
}

}  // namespace
}  // namespace cppetcd::api
