// EtcdServer with auth (etcd 3.4 semantics): Auth calls through raft, the
// caller passed with each request, checks on reads at once and on writes at
// apply, state kept across a restart.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

#include "cppetcd/auth/credentials.h"
#include "cppetcd/auth/errors.h"
#include "cppetcd/auth/store.h"
#include "cppetcd/server/etcd_server.h"
#include "cppetcd/util/log.h"
#include "tests/unit/server/server_test_util.h"

namespace cppetcd::server {
namespace {

using namespace std::chrono_literals;
using test_util::Call;
using test_util::PollUntil;
namespace pb = etcdserverpb;


// Calls server_->Method(caller, req, done) and waits for the result.
#define SERVER_CALL(caller, Method, Req, Resp, req) \
  Call<pb::Resp>([&](Done<pb::Resp> d) { server_->Method(caller, req, std::move(d)); })

const auth::Credentials& kNobody = auth::kNoCredentials;

class AuthServerTest : public test_util::SingleServerTest {
 protected:
  absl::Status AddUser(const std::string& name, const std::string& pw) {
    pb::AuthUserAddRequest r;
    r.set_name(name);
    r.set_password(pw);
    return SERVER_CALL(kNobody, UserAdd, AuthUserAddRequest, AuthUserAddResponse, r).status();
  }
  absl::Status GrantRole(const std::string& user, const std::string& role) {
    pb::AuthUserGrantRoleRequest r;
    r.set_user(user);
    r.set_role(role);
    return SERVER_CALL(kNobody, UserGrantRole, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse,
                       r)
        .status();
  }
  absl::StatusOr<std::string> Login(const std::string& user, const std::string& pw) {
    pb::AuthenticateRequest r;
    r.set_name(user);
    r.set_password(pw);
    auto resp = SERVER_CALL(kNobody, Authenticate, AuthenticateRequest, AuthenticateResponse, r);
    if (!resp.ok()) return resp.status();
    return resp->token();
  }
  absl::Status Put(const auth::Credentials& caller, const std::string& k, const std::string& v) {
    pb::PutRequest r;
    r.set_key(k);
    r.set_value(v);
    return SERVER_CALL(caller, Put, PutRequest, PutResponse, r).status();
  }
  // Linearizable: served on the server's read thread.
  absl::Status Get(const auth::Credentials& caller, const std::string& k) {
    pb::RangeRequest r;
    r.set_key(k);
    return SERVER_CALL(caller, Range, RangeRequest, RangeResponse, r).status();
  }
  static auth::Credentials Token(const std::string& t) {
    auth::Credentials c;
    c.token = t;
    return c;
  }

  // root/root, role rw with readwrite on prefix "a/", user u with it; enabled.
  void SetUpAndEnable() {
    ASSERT_TRUE(AddUser("root", "rootpw").ok());
    ASSERT_TRUE(GrantRole("root", "root").ok());
    pb::AuthRoleAddRequest ra;
    ra.set_name("rw");
    ASSERT_TRUE(SERVER_CALL(kNobody, RoleAdd, AuthRoleAddRequest, AuthRoleAddResponse, ra).ok());
    pb::AuthRoleGrantPermissionRequest gp;
    gp.set_name("rw");
    gp.mutable_perm()->set_permtype(authpb::Permission::READWRITE);
    gp.mutable_perm()->set_key("a/");
    gp.mutable_perm()->set_range_end("a0");
    ASSERT_TRUE(SERVER_CALL(kNobody, RoleGrantPermission, AuthRoleGrantPermissionRequest,
                            AuthRoleGrantPermissionResponse, gp)
                    .ok());
    ASSERT_TRUE(AddUser("u", "upw").ok());
    ASSERT_TRUE(GrantRole("u", "rw").ok());
    pb::AuthEnableRequest en;
    ASSERT_TRUE(SERVER_CALL(kNobody, AuthEnable, AuthEnableRequest, AuthEnableResponse, en).ok());
  }

};

TEST_F(AuthServerTest, EnableNeedsRoot) {
  StartServer();
  pb::AuthEnableRequest en;
  EXPECT_EQ(SERVER_CALL(kNobody, AuthEnable, AuthEnableRequest, AuthEnableResponse, en)
                .status()
                .message(),
            "auth: root user does not exist");
  pb::AuthenticateRequest login;
  EXPECT_TRUE(auth::IsAuthNotEnabled(
      SERVER_CALL(kNobody, Authenticate, AuthenticateRequest, AuthenticateResponse, login)
          .status()));
}

TEST_F(AuthServerTest, CallersAreCheckedOnReadsAndAtApply) {
  StartServer();
  SetUpAndEnable();
  EXPECT_TRUE(auth::IsUserEmpty(Put(kNobody, "a/1", "x")));
  EXPECT_TRUE(auth::IsUserEmpty(Get(kNobody, "a/1")));
  EXPECT_EQ(Login("u", "bad").status().message(),
            "auth: authentication failed, invalid user ID or password");
  auto tok = Login("u", "upw");
  ASSERT_TRUE(tok.ok()) << tok.status();
  {
    const auth::Credentials u = Token(*tok);
    EXPECT_TRUE(Put(u, "a/1", "x").ok());
    EXPECT_TRUE(Get(u, "a/1").ok());
    EXPECT_TRUE(auth::IsErrPermissionDenied(Put(u, "b", "x")));
    EXPECT_TRUE(auth::IsErrPermissionDenied(Get(u, "b")));
    EXPECT_TRUE(auth::IsErrPermissionDenied(server_->AuthorizeAdmin(u)));
    EXPECT_TRUE(auth::IsErrPermissionDenied(server_->AuthorizeRange(u, "b", "")));
    EXPECT_TRUE(server_->AuthorizeRange(u, "a/1", "").ok());
    pb::AuthUserListRequest ul;
    EXPECT_TRUE(auth::IsErrPermissionDenied(
        SERVER_CALL(u, UserList, AuthUserListRequest, AuthUserListResponse, ul).status()));
    // A user may read itself.
    pb::AuthUserGetRequest ug;
    ug.set_name("u");
    auto got = SERVER_CALL(u, UserGet, AuthUserGetRequest, AuthUserGetResponse, ug);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->roles(0), "rw");
  }
  EXPECT_TRUE(auth::IsInvalidAuthToken(Get(Token("nosuch.1"), "a/1")));
  auto root_tok = Login("root", "rootpw");
  ASSERT_TRUE(root_tok.ok());
  const auth::Credentials root = Token(*root_tok);
  EXPECT_TRUE(Put(root, "b", "x").ok());
  EXPECT_TRUE(server_->AuthorizeAdmin(root).ok());
  EXPECT_TRUE(auth::IsUserEmpty(server_->AuthorizeAdmin(kNobody)));
  pb::AuthUserDeleteRequest del;
  del.set_name("root");
  EXPECT_EQ(SERVER_CALL(root, UserDelete, AuthUserDeleteRequest, AuthUserDeleteResponse, del)
                .status()
                .message(),
            "auth: invalid auth management");
  // A TLS client CN names a user too (tokens first).
  auth::Credentials cn;
  cn.common_name = "u";
  EXPECT_TRUE(Put(cn, "a/2", "y").ok());
  EXPECT_TRUE(auth::IsErrPermissionDenied(Put(cn, "b", "y")));
  auth::Credentials token_and_cn = root;
  token_and_cn.common_name = "u";
  EXPECT_TRUE(Put(token_and_cn, "b", "y").ok());
}

// The caller is a value carried with the request, not state of the thread
// that makes the call: requests of different users, interleaved on several
// threads, each checked on the server's own threads (linearizable reads on
// the read thread, writes at apply), and a request made from inside another
// request's completion (a server thread), are each checked as their own
// caller.
TEST_F(AuthServerTest, CallerTravelsWithTheRequestAcrossThreads) {
  StartServer();
  SetUpAndEnable();
  auto u_tok = Login("u", "upw");
  auto root_tok = Login("root", "rootpw");
  ASSERT_TRUE(u_tok.ok() && root_tok.ok());
  const auth::Credentials callers[] = {Token(*u_tok), Token(*root_tok), kNobody};
  // u: no permission on "b"; root: all; nobody: no user.
  auto expect = [](int who, const absl::Status& s) {
    switch (who) {
      case 0: return auth::IsErrPermissionDenied(s);
      case 1: return s.ok();
      default: return auth::IsUserEmpty(s);
    }
  };
  constexpr int kThreads = 4;
  constexpr int kRounds = 6;  // per thread: 2 calls each, bounded in count
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        const int who = (t + i) % 3;
        if (!expect(who, Put(callers[who], "b", "v"))) ++wrong;
        if (!expect(who, Get(callers[who], "b"))) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);

  // From root's completion, on a server thread, a read as u.
  auto nested = std::make_shared<std::promise<absl::Status>>();
  auto nested_f = nested->get_future();
  const auth::Credentials u = callers[0];
  pb::PutRequest p;
  p.set_key("b");
  p.set_value("w");
  server_->Put(callers[1], p, [this, u, nested](absl::StatusOr<pb::PutResponse> r) {
    if (!r.ok()) return nested->set_value(r.status());
    pb::RangeRequest get;
    get.set_key("b");
    server_->Range(u, get, [nested](absl::StatusOr<pb::RangeResponse> got) {
      nested->set_value(got.status());
    });
  });
  ASSERT_EQ(nested_f.wait_for(test_util::kCallTimeout), std::future_status::ready);
  EXPECT_TRUE(auth::IsErrPermissionDenied(nested_f.get()));
}

// The server revokes expired leases as root (etcd WithRoot), whoever
// attached keys to them.
TEST_F(AuthServerTest, ExpiredLeasesAreRevokedWithAuthEnabled) {
  StartServer();
  SetUpAndEnable();
  auto tok = Login("u", "upw");
  ASSERT_TRUE(tok.ok());
  const auth::Credentials u = Token(*tok);
  pb::LeaseGrantRequest g;
  g.set_ttl(1);
  auto lease = SERVER_CALL(u, LeaseGrant, LeaseGrantRequest, LeaseGrantResponse, g);
  ASSERT_TRUE(lease.ok()) << lease.status();
  pb::PutRequest p;
  p.set_key("a/leased");
  p.set_value("v");
  p.set_lease(lease->id());
  ASSERT_TRUE(SERVER_CALL(u, Put, PutRequest, PutResponse, p).ok());
  pb::RangeRequest r;
  r.set_key("a/leased");
  bool gone = false;
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  while (!gone && std::chrono::steady_clock::now() < deadline) {
    auto got = SERVER_CALL(u, Range, RangeRequest, RangeResponse, r);
    ASSERT_TRUE(got.ok()) << got.status();
    gone = got->kvs_size() == 0;
    if (!gone) std::this_thread::sleep_for(50ms);  // poll interval
  }
  EXPECT_TRUE(gone);
}

TEST_F(AuthServerTest, PasswordsTravelHashedAndStateSurvivesRestart) {
  StartServer();
  SetUpAndEnable();
  auth::AuthStore* as = server_->AuthStore();
  const uint64_t rev = as->Revision();
  server_->Stop();
  server_.reset();
  StartServer();
  as = server_->AuthStore();
  EXPECT_TRUE(as->IsEnabled());
  EXPECT_EQ(as->Revision(), rev);
  EXPECT_TRUE(Login("u", "upw").ok());
  // The WAL holds bcrypt hashes, never the clear password.
  bool clear_text_found = false;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir_ + "/data/member/wal")) {
    std::ifstream in(e.path(), std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (data.find("rootpw") != std::string::npos) clear_text_found = true;
  }
  EXPECT_FALSE(clear_text_found);
}

// Names and passwords that are not valid UTF-8 (etcd takes any bytes) go
// through raft in every auth entry (the request, InternalAuthenticateRequest,
// the caller's name in the header) and are replayed from the WAL.
TEST_F(AuthServerTest, NamesThatAreNotUtf8GoThroughRaftAndRestart) {
  StartServer();
  const std::string user = "\xff\xfeu", role = "\xc3\x28", pw = "p\xff";
  ASSERT_TRUE(AddUser("root", "rootpw").ok());
  ASSERT_TRUE(GrantRole("root", "root").ok());
  ASSERT_TRUE(AddUser(user, pw).ok());
  pb::AuthRoleAddRequest ra;
  ra.set_name(role);
  ASSERT_TRUE(SERVER_CALL(kNobody, RoleAdd, AuthRoleAddRequest, AuthRoleAddResponse, ra).ok());
  pb::AuthRoleGrantPermissionRequest gp;
  gp.set_name(role);
  gp.mutable_perm()->set_permtype(authpb::Permission::READWRITE);
  gp.mutable_perm()->set_key("a/");
  gp.mutable_perm()->set_range_end("a0");
  ASSERT_TRUE(SERVER_CALL(kNobody, RoleGrantPermission, AuthRoleGrantPermissionRequest,
                          AuthRoleGrantPermissionResponse, gp)
                  .ok());
  ASSERT_TRUE(GrantRole(user, role).ok());
  pb::AuthEnableRequest en;
  ASSERT_TRUE(SERVER_CALL(kNobody, AuthEnable, AuthEnableRequest, AuthEnableResponse, en).ok());
  auto check = [&] {
    EXPECT_FALSE(Login(user, "p\xef\xbf\xbd").ok());
    auto tok = Login(user, pw);
    ASSERT_TRUE(tok.ok()) << tok.status();
    const auth::Credentials creds = Token(*tok);
    EXPECT_TRUE(Put(creds, "a/1", "x").ok());  // applied as this user
    EXPECT_TRUE(auth::IsErrPermissionDenied(Put(creds, "b", "x")));
    pb::AuthUserGetRequest ug;
    ug.set_name(user);
    auto got = SERVER_CALL(creds, UserGet, AuthUserGetRequest, AuthUserGetResponse, ug);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->roles_size(), 1);
    EXPECT_EQ(got->roles(0), role);
  };
  check();
  server_->Stop();
  server_.reset();
  StartServer();
  check();
}

}  // namespace
}  // namespace cppetcd::server
