// Apply is total: an entry's own error is the client's result, the same on
// every member, and never stops the member (nor, replayed from the WAL,
// stops it again at every start). Names longer than an LMDB key (etcd 3.4
// takes them) used to stop the member with MDB_BAD_VALSIZE; a txn failing
// after its first write used to stop it as an internal error.
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "cppetcd/server/etcd_server.h"
#include "cppetcd/util/log.h"
#include "tests/unit/server/server_test_util.h"

namespace cppetcd::server {
namespace {

using namespace std::chrono_literals;
using test_util::Call;
using test_util::PollUntil;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
namespace pb = etcdserverpb;


// Calls without a client: auth stays disabled in these tests.
#define SERVER_CALL(Method, Resp, req) \
  Call<pb::Resp>(                      \
      [&](Done<pb::Resp> d) { server_->Method(auth::kNoCredentials, req, std::move(d)); })

class ApplyTotalTest : public test_util::SingleServerTest {
 protected:
  absl::Status AddUser(const std::string& name) {
    pb::AuthUserAddRequest r;
    r.set_name(name);
    r.set_password("pw");
    return SERVER_CALL(UserAdd, AuthUserAddResponse, r).status();
  }
  absl::Status AddRole(const std::string& name) {
    pb::AuthRoleAddRequest r;
    r.set_name(name);
    return SERVER_CALL(RoleAdd, AuthRoleAddResponse, r).status();
  }
  absl::Status GrantRole(const std::string& user, const std::string& role) {
    pb::AuthUserGrantRoleRequest r;
    r.set_user(user);
    r.set_role(role);
    return SERVER_CALL(UserGrantRole, AuthUserGrantRoleResponse, r).status();
  }
  absl::Status GrantPerm(const std::string& role, const std::string& key) {
    pb::AuthRoleGrantPermissionRequest r;
    r.set_name(role);
    r.mutable_perm()->set_permtype(authpb::Permission::READWRITE);
    r.mutable_perm()->set_key(key);
    return SERVER_CALL(RoleGrantPermission, AuthRoleGrantPermissionResponse, r).status();
  }
  absl::StatusOr<std::vector<std::string>> Users() {
    pb::AuthUserListRequest r;
    auto resp = SERVER_CALL(UserList, AuthUserListResponse, r);
    if (!resp.ok()) return resp.status();
    return std::vector<std::string>(resp->users().begin(), resp->users().end());
  }
  absl::StatusOr<std::vector<std::string>> Roles() {
    pb::AuthRoleListRequest r;
    auto resp = SERVER_CALL(RoleList, AuthRoleListResponse, r);
    if (!resp.ok()) return resp.status();
    return std::vector<std::string>(resp->roles().begin(), resp->roles().end());
  }
  absl::StatusOr<pb::PutResponse> Put(const std::string& k, const std::string& v) {
    pb::PutRequest r;
    r.set_key(k);
    r.set_value(v);
    return SERVER_CALL(Put, PutResponse, r);
  }
  absl::StatusOr<pb::RangeResponse> Get(const std::string& k) {
    pb::RangeRequest r;
    r.set_key(k);
    return SERVER_CALL(Range, RangeResponse, r);
  }

};

class ApplyLongNameTest : public ApplyTotalTest, public ::testing::WithParamInterface<size_t> {};

TEST_P(ApplyLongNameTest, LongUserAndRoleNamesApplyAndSurviveRestarts) {
  const size_t n = GetParam();
  const std::string user = "m" + std::string(n - 1, 'u');
  const std::string role = "m" + std::string(n - 1, 'r');
  StartServer();
  ASSERT_TRUE(AddUser("a").ok());
  ASSERT_TRUE(AddUser(user).ok());
  ASSERT_TRUE(AddUser("z").ok());
  ASSERT_TRUE(AddRole(role).ok());
  ASSERT_TRUE(AddRole("a").ok());
  ASSERT_TRUE(GrantRole(user, role).ok());
  ASSERT_TRUE(GrantRole("a", role).ok());
  ASSERT_TRUE(GrantPerm(role, std::string(n, 'k')).ok());
  EXPECT_EQ(AddUser(user).message(), "auth: user already exists");
  EXPECT_EQ(AddUser("").message(), "auth: user name is empty");
  EXPECT_EQ(AddRole("").message(), "auth: role name is empty");

  auto check = [&](const char* when) {
    SCOPED_TRACE(when);
    auto users = Users();
    ASSERT_TRUE(users.ok()) << users.status();
    EXPECT_THAT(*users, ElementsAre("a", user, "z"));
    auto roles = Roles();
    ASSERT_TRUE(roles.ok()) << roles.status();
    EXPECT_THAT(*roles, ElementsAre("a", role));
    pb::AuthUserGetRequest ug;
    ug.set_name(user);
    auto got = SERVER_CALL(UserGet, AuthUserGetResponse, ug);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_THAT(got->roles(), ElementsAre(role));
    pb::AuthRoleGetRequest rg;
    rg.set_role(role);
    auto perms = SERVER_CALL(RoleGet, AuthRoleGetResponse, rg);
    ASSERT_TRUE(perms.ok()) << perms.status();
    ASSERT_EQ(perms->perm_size(), 1);
    EXPECT_EQ(perms->perm(0).key().size(), n);
    EXPECT_TRUE(Put("after", when).ok());
  };
  check("applied");
  StartServer();
  check("restarted");

  pb::AuthRoleDeleteRequest rd;
  rd.set_role(role);
  ASSERT_TRUE(SERVER_CALL(RoleDelete, AuthRoleDeleteResponse, rd).ok());
  pb::AuthUserDeleteRequest ud;
  ud.set_name(user);
  ASSERT_TRUE(SERVER_CALL(UserDelete, AuthUserDeleteResponse, ud).ok());
  StartServer();
  EXPECT_THAT(*Users(), ElementsAre("a", "z"));
  EXPECT_THAT(*Roles(), ElementsAre("a"));
  pb::AuthUserGetRequest ag;
  ag.set_name("a");
  auto a = SERVER_CALL(UserGet, AuthUserGetResponse, ag);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_THAT(a->roles(), IsEmpty());
  EXPECT_TRUE(Put("end", "x").ok());
}

INSTANTIATE_TEST_SUITE_P(Lengths, ApplyLongNameTest,
                         ::testing::Values(600, 70 * 1024, 100 * 1024));

// A txn whose later op fails after an earlier op would have written:
// rejected before any write, with the same error on every member; the entry
// leaves nothing behind, the member keeps applying (also after a restart,
// which replays the entry from the WAL if the backend had not kept it).
TEST_F(ApplyTotalTest, EntryFailingMidTxnLeavesNothingAndNextEntriesApply) {
  StartServer();
  auto first = Put("k", "v");
  ASSERT_TRUE(first.ok()) << first.status();
  const int64_t rev = first->header().revision();
  pb::TxnRequest t;
  auto* put = t.add_success()->mutable_request_put();
  put->set_key("other");
  put->set_value("x");
  t.add_success()->mutable_request_delete_range()->set_key("k");
  auto* keep = t.add_success()->mutable_request_put();
  keep->set_key("k");
  keep->set_ignore_value(true);
  auto res = SERVER_CALL(Txn, TxnResponse, t);
  EXPECT_EQ(res.status().message(), "etcdserver: key not found");
  auto next = Put("k2", "v2");
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->header().revision(), rev + 1);
  auto check = [&]() {
    auto k = Get("k");
    ASSERT_TRUE(k.ok());
    ASSERT_EQ(k->kvs_size(), 1);
    EXPECT_EQ(k->kvs(0).value(), "v");
    EXPECT_EQ(k->kvs(0).mod_revision(), rev);
    auto other = Get("other");
    ASSERT_TRUE(other.ok());
    EXPECT_EQ(other->kvs_size(), 0);
  };
  check();
  StartServer();
  check();
  EXPECT_TRUE(Put("k3", "v3").ok());
}

}  // namespace
}  // namespace cppetcd::server
