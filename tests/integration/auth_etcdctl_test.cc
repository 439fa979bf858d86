// Authentication and authorization with the real etcdctl (etcd 3.4 auth):
// users, roles, key-range permissions, `auth enable/disable`, `--user`,
// etcd's error texts, persistence across a restart, simple tokens shared
// by the members through raft, and JWT tokens signed with OpenSSL keys.
// Validated against etcd 3.4 with CPPETCD_TEST_SERVER=/usr/bin/etcd.

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cluster_harness.h"
#include "test_certs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cppetcd::integration {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override { CPPETCD_REQUIRE_SERVER(); }

  std::unique_ptr<Cluster> StartCluster(int size, std::vector<std::string> flags = {}) {
    Cluster::Options o;
    o.size = size;
    o.extra_flags = std::move(flags);
    auto c = Cluster::Start(std::move(o), tmp_.path());
    EXPECT_TRUE(c.ok()) << c.status();
    if (c.ok()) {
      EXPECT_TRUE((*c)->WaitForLeader(seconds(20)).ok());
    }
    return c.ok() ? std::move(*c) : nullptr;
  }

  // Runs etcdctl and expects success; returns stdout.
  static std::string Ok(const std::string& ep, const std::vector<std::string>& args) {
    CommandResult r = Etcdctl(ep, args);
    EXPECT_EQ(r.exit_code, 0) << absl::StrJoin(args, " ") << "\n" << r.out << r.err;
    return r.out;
  }
  // Runs etcdctl and expects failure; returns stderr without client logs.
  static std::string Fails(const std::string& ep, const std::vector<std::string>& args) {
    CommandResult r = Etcdctl(ep, args);
    EXPECT_NE(r.exit_code, 0) << absl::StrJoin(args, " ") << "\n" << r.out;
    return StripClientLogLines(r.err);
  }

  // root with role root, role `reader` reading prefix app/, user alice with it.
  static void SetUpUsersAndEnable(const std::string& ep) {
    EXPECT_EQ(Ok(ep, {"user", "add", "root:rootpw"}), "User root created\n");
    EXPECT_EQ(Ok(ep, {"role", "add", "reader"}), "Role reader created\n");
    EXPECT_EQ(Ok(ep, {"role", "grant-permission", "reader", "--prefix=true", "read", "app/"}),
              "Role reader updated\n");
    EXPECT_EQ(Ok(ep, {"user", "add", "alice:alicepw"}), "User alice created\n");
    EXPECT_EQ(Ok(ep, {"user", "grant-role", "alice", "reader"}),
              "Role reader is granted to user alice\n");
    // etcdctl creates role root and grants it when enable says it is missing.
    EXPECT_EQ(Ok(ep, {"auth", "enable"}), "Authentication Enabled\n");
  }

  TempDir tmp_;
};

TEST_F(AuthTest, UsersRolesPermissionsAndErrors) {
  auto c = StartCluster(1);
  ASSERT_NE(c, nullptr);
  const std::string ep = c->member(0).ClientEndpoint();
  EXPECT_EQ(Fails(ep, {"auth", "enable"}), "Error: etcdserver: root user does not exist\n");
  SetUpUsersAndEnable(ep);

  const std::vector<std::string> root = {"--user", "root:rootpw"};
  auto as = [](std::vector<std::string> who, std::vector<std::string> args) {
    who.insert(who.end(), args.begin(), args.end());
    return who;
  };
  EXPECT_EQ(Ok(ep, as(root, {"put", "app/x", "1"})), "OK\n");
  EXPECT_EQ(Ok(ep, as(root, {"user", "list"})), "alice\nroot\n");
  EXPECT_EQ(Ok(ep, as(root, {"role", "list"})), "reader\nroot\n");
  EXPECT_EQ(Ok(ep, as(root, {"role", "get", "reader"})),
            "Role reader\nKV Read:\n\t[app/, app0) (prefix app/)\nKV Write:\n");
  EXPECT_EQ(Ok(ep, as(root, {"user", "get", "alice"})), "User: alice\nRoles: reader\n");

  // alice reads her prefix, cannot write it nor read elsewhere.
  const std::vector<std::string> alice = {"--user", "alice:alicepw"};
  EXPECT_EQ(Ok(ep, as(alice, {"get", "app/x"})), "app/x\n1\n");
  EXPECT_EQ(Ok(ep, as(alice, {"get", "app/", "--prefix"})), "app/x\n1\n");
  EXPECT_EQ(Fails(ep, as(alice, {"put", "app/x", "2"})), "Error: etcdserver: permission denied\n");
  EXPECT_EQ(Fails(ep, as(alice, {"get", "other"})), "Error: etcdserver: permission denied\n");
  EXPECT_EQ(Fails(ep, as(alice, {"del", "app/x"})), "Error: etcdserver: permission denied\n");
  EXPECT_EQ(Fails(ep, as(alice, {"user", "list"})), "Error: etcdserver: permission denied\n");
  // A user may read itself and its roles.
  EXPECT_EQ(Ok(ep, as(alice, {"user", "get", "alice"})), "User: alice\nRoles: reader\n");
  // Maintenance needs root (etcd answers with the bare auth error).
  EXPECT_THAT(Fails(ep, as(alice, {"defrag"})), HasSubstr("auth: permission denied"));
  EXPECT_THAT(Fails(ep, as(alice, {"member", "add", "x", "--peer-urls=http://127.0.0.1:1"})),
              HasSubstr("etcdserver: permission denied"));
  // A watch outside the permitted range is cancelled at creation.
  CommandResult w = Etcdctl(ep, as(alice, {"watch", "other"}), "", seconds(10));
  EXPECT_NE(w.exit_code, 0);
  EXPECT_THAT(w.out + w.err, HasSubstr("etcdserver: permission denied"));

  // Wrong password, unknown user, no user at all.
  EXPECT_EQ(Fails(ep, {"--user", "alice:wrong", "get", "app/x"}),
            "Error: etcdserver: authentication failed, invalid user ID or password\n");
  EXPECT_EQ(Fails(ep, {"--user", "bob:x", "get", "app/x"}),
            "Error: etcdserver: authentication failed, invalid user ID or password\n");
  EXPECT_EQ(Fails(ep, {"get", "app/x"}), "Error: etcdserver: user name is empty\n");
  EXPECT_EQ(Fails(ep, {"put", "k", "v"}), "Error: etcdserver: user name is empty\n");

  // Root rules while enabled.
  EXPECT_EQ(Fails(ep, as(root, {"user", "delete", "root"})),
            "Error: etcdserver: invalid auth management\n");
  EXPECT_EQ(Fails(ep, as(root, {"user", "revoke-role", "root", "root"})),
            "Error: etcdserver: invalid auth management\n");
  EXPECT_EQ(Fails(ep, as(root, {"role", "delete", "root"})),
            "Error: etcdserver: invalid auth management\n");
  EXPECT_EQ(Fails(ep, as(root, {"user", "add", "alice:x"})),
            "Error: etcdserver: user name already exists\n");
  EXPECT_EQ(Fails(ep, as(root, {"user", "grant-role", "alice", "nope"})),
            "Error: etcdserver: role name not found\n");

  // Granting write turns alice into a writer at once (her next token).
  EXPECT_EQ(Ok(ep, as(root, {"role", "grant-permission", "reader", "--prefix=true", "readwrite",
                             "app/"})),
            "Role reader updated\n");
  EXPECT_EQ(Ok(ep, as(alice, {"put", "app/x", "2"})), "OK\n");
  // A password change: the old one fails, the new one works.
  CommandResult pw = Etcdctl(ep, as(root, {"user", "passwd", "alice", "--interactive=false"}),
                             "newpw\n");
  EXPECT_EQ(pw.exit_code, 0) << pw.err;
  EXPECT_EQ(pw.out, "Password updated\n");
  EXPECT_EQ(Fails(ep, as(alice, {"get", "app/x"})),
            "Error: etcdserver: authentication failed, invalid user ID or password\n");
  EXPECT_EQ(Ok(ep, {"--user", "alice:newpw", "get", "app/x", "--print-value-only"}), "2\n");

  // Disabled again: anyone may do anything.
  EXPECT_EQ(Ok(ep, as(root, {"auth", "disable"})), "Authentication Disabled\n");
  EXPECT_EQ(Ok(ep, {"put", "k", "v"}), "OK\n");
  EXPECT_EQ(Ok(ep, {"--user", "root:rootpw", "get", "k"}), "k\nv\n");
}

TEST_F(AuthTest, RestartKeepsUsersAndEnabledState) {
  auto c = StartCluster(1);
  ASSERT_NE(c, nullptr);
  const std::string ep = c->member(0).ClientEndpoint();
  SetUpUsersAndEnable(ep);
  EXPECT_EQ(Ok(ep, {"--user", "root:rootpw", "put", "app/y", "v"}), "OK\n");
  ClusterMember& m = c->member(0);
  m.Terminate();
  ASSERT_TRUE(m.Spawn().ok());
  // Ready once root can read (a request without a user is refused now).
  ASSERT_TRUE(PollUntil(
      [&] {
        return Etcdctl(ep, {"--user", "root:rootpw", "get", "app/y"}, "", seconds(3)).exit_code ==
               0;
      },
      seconds(30)));
  EXPECT_EQ(Ok(ep, {"--user", "alice:alicepw", "get", "app/y", "--print-value-only"}), "v\n");
  EXPECT_EQ(Fails(ep, {"get", "app/y"}), "Error: etcdserver: user name is empty\n");
  EXPECT_EQ(Ok(ep, {"--user", "root:rootpw", "user", "list"}), "alice\nroot\n");
  EXPECT_EQ(Fails(ep, {"--user", "alice:alicepw", "put", "app/y", "w"}),
            "Error: etcdserver: permission denied\n");
}

// etcd takes any bytes as user and role names and passwords; etcdctl (Go)
// passes its arguments' bytes through. cppetcd declares those proto fields
// `bytes` so that it does too (C++ protobuf refuses a `string` that is not
// valid UTF-8). They survive a restart.
TEST_F(AuthTest, NamesThatAreNotUtf8) {
  auto c = StartCluster(1);
  ASSERT_NE(c, nullptr);
  const std::string ep = c->member(0).ClientEndpoint();
  const std::string user = "\xff\xfeu", role = "\xc3\x28";
  EXPECT_EQ(Ok(ep, {"user", "add", user, "--new-user-password=p\xff"}),
            "User " + user + " created\n");
  EXPECT_EQ(Ok(ep, {"role", "add", role}), "Role " + role + " created\n");
  EXPECT_EQ(Ok(ep, {"role", "grant-permission", role, "--prefix=true", "readwrite", "app/"}),
            "Role " + role + " updated\n");
  EXPECT_EQ(Ok(ep, {"user", "grant-role", user, role}),
            "Role " + role + " is granted to user " + user + "\n");
  EXPECT_EQ(Fails(ep, {"user", "grant-role", user, "\xc3"}),
            "Error: etcdserver: role name not found\n");
  EXPECT_EQ(Ok(ep, {"user", "add", "root:rootpw"}), "User root created\n");
  EXPECT_EQ(Ok(ep, {"auth", "enable"}), "Authentication Enabled\n");
  const std::vector<std::string> as_user = {"--user", user + ":p\xff"};
  auto with = [](std::vector<std::string> who, std::vector<std::string> args) {
    who.insert(who.end(), args.begin(), args.end());
    return who;
  };
  EXPECT_EQ(Ok(ep, with(as_user, {"put", "app/\xfe", "v"})), "OK\n");
  EXPECT_EQ(Fails(ep, with(as_user, {"put", "x", "v"})), "Error: etcdserver: permission denied\n");
  EXPECT_EQ(Fails(ep, {"--user", user + ":p\xef\xbf\xbd", "get", "app/"}),
            "Error: etcdserver: authentication failed, invalid user ID or password\n");
  const std::vector<std::string> root = {"--user", "root:rootpw"};
  auto check = [&] {
    EXPECT_EQ(Ok(ep, with(root, {"user", "get", user})),
              "User: " + user + "\nRoles: " + role + "\n");
    EXPECT_EQ(Ok(ep, with(root, {"role", "list"})), "root\n" + role + "\n");
    EXPECT_EQ(Ok(ep, with(root, {"user", "list"})), "root\n" + user + "\n");
    EXPECT_EQ(Ok(ep, with(as_user, {"get", "app/\xfe", "--print-value-only"})), "v\n");
  };
  check();
  ClusterMember& m = c->member(0);
  m.Terminate();
  ASSERT_TRUE(m.Spawn().ok());
  ASSERT_TRUE(PollUntil(
      [&] { return Etcdctl(ep, with(root, {"get", "app/"}), "", seconds(3)).exit_code == 0; },
      seconds(30)));
  check();
  EXPECT_EQ(Ok(ep, with(root, {"user", "revoke-role", user, role})),
            "Role " + role + " is revoked from user " + user + "\n");
  EXPECT_EQ(Ok(ep, with(root, {"role", "delete", role})), "Role " + role + " deleted\n");
  EXPECT_EQ(Ok(ep, with(root, {"user", "delete", user})), "User " + user + " deleted\n");
}

// Authenticates through `via` with the gRPC API; returns the token.
std::string Authenticate(ClusterMember& via, const std::string& user, const std::string& pw) {
  auto stub = etcdserverpb::Auth::NewStub(via.NewChannel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
  etcdserverpb::AuthenticateRequest req;
  req.set_name(user);
  req.set_password(pw);
  etcdserverpb::AuthenticateResponse resp;
  grpc::Status s = stub->Authenticate(&ctx, req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return resp.token();
}

// A Range on `at` with `token` in the metadata under `key` ("token" as
// clientv3 sends it, "authorization" as the HTTP gateway does).
grpc::Status RangeWithToken(ClusterMember& at, const std::string& token, const std::string& key,
                            const std::string& md_key = "token") {
  auto stub = etcdserverpb::KV::NewStub(at.NewChannel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
  ctx.AddMetadata(md_key, token);
  etcdserverpb::RangeRequest req;
  req.set_key(key);
  etcdserverpb::RangeResponse resp;
  return stub->Range(&ctx, req, &resp);
}

TEST_F(AuthTest, SimpleTokenWorksOnEveryMember) {
  auto c = StartCluster(3);
  ASSERT_NE(c, nullptr);
  const std::string ep = c->member(0).ClientEndpoint();
  SetUpUsersAndEnable(ep);
  const std::string token = Authenticate(c->member(1), "alice", "alicepw");
  EXPECT_THAT(token, ::testing::MatchesRegex("[a-zA-Z]{16}\\.[0-9]+"));
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    EXPECT_TRUE(RangeWithToken(c->member(i), token, "app/a").ok());
    grpc::Status denied = RangeWithToken(c->member(i), token, "zzz");
    EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(denied.error_message(), "etcdserver: permission denied");
  }
  EXPECT_TRUE(RangeWithToken(c->member(2), token, "app/a", "authorization").ok());
  grpc::Status bad = RangeWithToken(c->member(0), "abcdefghijklmnop.1", "app/a");
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(bad.error_message(), "etcdserver: invalid auth token");
  // etcdctl against every member at once.
  EXPECT_EQ(Ok(c->RunningEndpoints(), {"--user", "root:rootpw", "put", "app/z", "1"}), "OK\n");
}

TEST_F(AuthTest, JwtTokens) {
  const std::string key = tmp_.path() + "/jwt.key", pub = tmp_.path() + "/jwt.pub";
  CommandResult gen = RunCommand({"/usr/bin/openssl", "genrsa", "-out", key, "2048"}, "", {},
                                 seconds(60));
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  CommandResult out = RunCommand({"/usr/bin/openssl", "rsa", "-in", key, "-pubout", "-out", pub},
                                 "", {}, seconds(30));
  ASSERT_EQ(out.exit_code, 0) << out.err;
  auto c = StartCluster(
      2, {absl::StrCat("--auth-token=jwt,pub-key=", pub, ",priv-key=", key, ",sign-method=RS256")});
  ASSERT_NE(c, nullptr);
  const std::string ep = c->member(0).ClientEndpoint();
  SetUpUsersAndEnable(ep);
  EXPECT_EQ(Ok(ep, {"--user", "root:rootpw", "put", "app/j", "v"}), "OK\n");
  EXPECT_EQ(Ok(ep, {"--user", "alice:alicepw", "get", "app/j", "--print-value-only"}), "v\n");
  const std::string token = Authenticate(c->member(0), "alice", "alicepw");
  EXPECT_EQ(std::count(token.begin(), token.end(), '.'), 2) << token;
  EXPECT_TRUE(RangeWithToken(c->member(1), token, "app/j").ok());
  // Change a signature character that carries data bits only (the last one
  // also holds padding bits a decoder may ignore).
  std::string forged = token;
  char& ch = forged[forged.size() - 10];
  ch = ch == 'A' ? 'B' : 'A';
  EXPECT_EQ(RangeWithToken(c->member(1), forged, "app/j").error_message(),
            "etcdserver: invalid auth token");
  // A JWT names the auth revision it was issued at: any auth change makes
  // it stale (clients then authenticate again).
  EXPECT_EQ(Ok(ep, {"--user", "root:rootpw", "role", "add", "extra"}), "Role extra created\n");
  grpc::Status stale = RangeWithToken(c->member(1), token, "app/j");
  EXPECT_EQ(stale.error_message(), "etcdserver: revision of auth store is old");
  // A user name that is not valid UTF-8: JSON cannot carry its bytes, so the
  // token names U+FFFD instead (Go's encoding/json in etcd; nlohmann's
  // dump used to throw here), a user that does not exist.
  const std::string odd = "\xff\xfeu";
  EXPECT_EQ(Ok(ep, {"--user", "root:rootpw", "user", "add", odd, "--new-user-password=p"}),
            "User " + odd + " created\n");
  EXPECT_EQ(Ok(ep, {"--user", "root:rootpw", "user", "grant-role", odd, "reader"}),
            "Role reader is granted to user " + odd + "\n");
  EXPECT_EQ(Fails(ep, {"--user", odd + ":p", "get", "app/j"}),
            "Error: etcdserver: permission denied\n");
  EXPECT_EQ(Fails(ep, {"--user", odd + ":p", "user", "get", odd}),
            "Error: etcdserver: user name not found\n");
}

// etcd --client-cert-auth: a call without a token is made as the user
// named by the verified client certificate's CN; a token still wins.
TEST_F(AuthTest, ClientCertificateCommonNameIsTheUser) {
  auto certs = MakeTestCerts(tmp_.path() + "/certs", {"root", "alice"});
  ASSERT_TRUE(certs.ok()) << certs.status();
  auto port = PickFreePort();
  auto peer = PickFreePort();
  ASSERT_TRUE(port.ok() && peer.ok());
  const std::string client_url = absl::StrCat("https://127.0.0.1:", *port);
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", *peer);
  const std::string out_dir = tmp_.path() + "/cn";
  std::filesystem::create_directories(out_dir);
  auto proc = BackgroundCommand::Start(
      {ServerBinary(), "--name", "s", "--data-dir", out_dir + "/data", "--listen-client-urls",
       client_url, "--advertise-client-urls", client_url, "--listen-peer-urls", peer_url,
       "--initial-advertise-peer-urls", peer_url, "--initial-cluster", "s=" + peer_url,
       "--cert-file", certs->server.cert, "--key-file", certs->server.key, "--trusted-ca-file",
       certs->ca, "--client-cert-auth"},
      {}, out_dir);
  ASSERT_TRUE(proc.ok()) << proc.status();
  const std::string ep = absl::StrCat("127.0.0.1:", *port);
  auto tls = [&](const std::string& cn) {
    return std::vector<std::string>{"--cacert=" + certs->ca, "--cert=" + certs->Client(cn).cert,
                                    "--key=" + certs->Client(cn).key};
  };
  auto ctl = [&](const std::string& cn, const std::vector<std::string>& args) {
    std::vector<std::string> all = tls(cn);
    all.insert(all.end(), args.begin(), args.end());
    return Etcdctl(ep, all, "", seconds(10));
  };
  ASSERT_TRUE(PollUntil([&] { return ctl("root", {"endpoint", "health"}).exit_code == 0; },
                        seconds(30)))
      << (*proc)->Stderr();
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"user", "add", "root:rootpw"},
                                             {"role", "add", "reader"},
                                             {"role", "grant-permission", "reader",
                                              "--prefix=true", "read", "app/"},
                                             {"user", "add", "alice:alicepw"},
                                             {"user", "grant-role", "alice", "reader"},
                                             {"auth", "enable"}}) {
    CommandResult r = ctl("root", args);
    ASSERT_EQ(r.exit_code, 0) << absl::StrJoin(args, " ") << r.err;
  }
  // CN root: every right, without a password.
  CommandResult put = ctl("root", {"put", "app/x", "1"});
  EXPECT_EQ(put.exit_code, 0) << put.err;
  EXPECT_EQ(ctl("root", {"user", "list"}).out, "alice\nroot\n");
  // CN alice: reads her prefix, nothing more.
  CommandResult get = ctl("alice", {"get", "app/x", "--print-value-only"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "1\n");
  CommandResult denied = ctl("alice", {"put", "app/x", "2"});
  EXPECT_NE(denied.exit_code, 0);
  EXPECT_EQ(StripClientLogLines(denied.err), "Error: etcdserver: permission denied\n");
  // A token (from --user) is used before the certificate's CN.
  CommandResult as_alice = ctl("root", {"--user", "alice:alicepw", "put", "app/x", "3"});
  EXPECT_NE(as_alice.exit_code, 0);
  EXPECT_EQ(StripClientLogLines(as_alice.err), "Error: etcdserver: permission denied\n");
}

}  // namespace
}  // namespace cppetcd::integration
