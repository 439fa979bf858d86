// `etcdctl lock` and `etcdctl elect` against a real server. etcdctl 3.4 runs
// the clientv3/concurrency recipes itself (lease session, queue key
// "<name>/<lease hex>", Txn, Range by create revision, Watch for deletes),
// so these tests check that the KV, Lease and Watch services give those
// recipes what they need; the Election and Lock gRPC services have their own
// tests in tests/unit/api/election_lock_test.cc. Every expectation here was
// first checked against /usr/bin/etcd (CPPETCD_TEST_SERVER=/usr/bin/etcd).
#include <signal.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "harness.h"

namespace cppetcd::integration {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class ElectLockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CPPETCD_REQUIRE_SERVER();
    ServerProcess::Options o;
    o.data_dir = tmp_.path() + "/data";
    auto s = ServerProcess::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    kv_ = etcdserverpb::KV::NewStub(server_->NewChannel());
  }

  std::unique_ptr<BackgroundCommand> Start(const std::vector<std::string>& args) {
    auto cmd = StartEtcdctl(server_->ClientEndpoint(), args, tmp_.path());
    EXPECT_TRUE(cmd.ok()) << cmd.status();
    return cmd.ok() ? std::move(*cmd) : nullptr;
  }

  // Keys under "<name>/"; -1 on error.
  int64_t CountPrefix(const std::string& name) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(5));
    etcdserverpb::RangeRequest req;
    req.set_key(name + "/");
    req.set_range_end(name + "0");
    req.set_count_only(true);
    etcdserverpb::RangeResponse resp;
    if (!kv_->Range(&ctx, req, &resp).ok()) return -1;
    return resp.count();
  }

  static bool Has(BackgroundCommand* cmd, const std::string& what, milliseconds timeout) {
    return cmd->WaitForStdout([&](const std::string& out) { return absl::StrContains(out, what); },
                              timeout);
  }

  // Sends SIGINT: etcdctl then unlocks (or resigns) and exits.
  static void Interrupt(BackgroundCommand* cmd) { ::kill(cmd->pid(), SIGINT); }

  TempDir tmp_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
};

TEST_F(ElectLockTest, SecondLockWaitsUntilTheFirstIsReleased) {
  auto first = Start({"lock", "mylock"});
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(Has(first.get(), "mylock/", seconds(10))) << first->Stderr();

  auto second = Start({"lock", "mylock"});
  ASSERT_NE(second, nullptr);
  // The second holder has queued its key but prints nothing: it waits.
  ASSERT_TRUE(PollUntil([&] { return CountPrefix("mylock") == 2; }, seconds(10)));
  EXPECT_FALSE(Has(second.get(), "mylock/", milliseconds(300)));

  // SIGINT: the first unlocks; the second gets the lock.
  Interrupt(first.get());
  ASSERT_TRUE(Has(second.get(), "mylock/", seconds(10))) << second->Stderr();
  EXPECT_NE(first->Stdout(), second->Stdout());  // different lease, different key
  Interrupt(second.get());
  EXPECT_TRUE(PollUntil([&] { return CountPrefix("mylock") == 0; }, seconds(10)));
}

TEST_F(ElectLockTest, KilledLockHolderReleasesWhenItsLeaseExpires) {
  auto first = Start({"lock", "--ttl", "2", "mylock"});
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(Has(first.get(), "mylock/", seconds(10))) << first->Stderr();
  auto second = Start({"lock", "mylock"});
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(PollUntil([&] { return CountPrefix("mylock") == 2; }, seconds(10)));
  first->Kill();  // no unlock: the key goes with the 2 s lease
  ASSERT_TRUE(Has(second.get(), "mylock/", seconds(15))) << second->Stderr();
  Interrupt(second.get());
}

TEST_F(ElectLockTest, LockRunsACommandWhileHoldingTheLock) {
  CommandResult r = Etcdctl(server_->ClientEndpoint(),
                            {"lock", "mylock", "--", "/bin/sh", "-c", "echo held $ETCD_LOCK_KEY"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StartsWith(r.out, "held mylock/")) << r.out;
  EXPECT_EQ(CountPrefix("mylock"), 0);
}

TEST_F(ElectLockTest, ElectionLeaderObserverAndHandOver) {
  auto p1 = Start({"elect", "myelection", "p1"});
  ASSERT_NE(p1, nullptr);
  ASSERT_TRUE(Has(p1.get(), "\np1\n", seconds(10))) << p1->Stderr();
  EXPECT_TRUE(absl::StartsWith(p1->Stdout(), "myelection/")) << p1->Stdout();

  auto observer = Start({"elect", "-l", "myelection"});
  ASSERT_NE(observer, nullptr);
  ASSERT_TRUE(Has(observer.get(), "\np1\n", seconds(10))) << observer->Stderr();

  auto p2 = Start({"elect", "myelection", "p2"});
  ASSERT_NE(p2, nullptr);
  ASSERT_TRUE(PollUntil([&] { return CountPrefix("myelection") == 2; }, seconds(10)));
  EXPECT_FALSE(Has(p2.get(), "p2", milliseconds(300)));

  // p1 resigns on SIGINT: p2 leads and the observer sees it.
  Interrupt(p1.get());
  ASSERT_TRUE(Has(p2.get(), "\np2\n", seconds(10))) << p2->Stderr();
  ASSERT_TRUE(Has(observer.get(), "\np2\n", seconds(10))) << observer->Stderr();
  const std::string out = observer->Stdout();
  EXPECT_LT(out.find("\np1\n"), out.find("\np2\n"));
  Interrupt(p2.get());
  EXPECT_TRUE(PollUntil([&] { return CountPrefix("myelection") == 0; }, seconds(10)));
  Interrupt(observer.get());
}

}  // namespace
}  // namespace cppetcd::integration
