// The Election and Lock services over a real single-member EtcdServer (temp
// data dir, loopback port picked by the OS), driven through generated stubs.
//
// To check the expectations against etcd 3.4 itself, start etcd and run
//   CPPETCD_ELECTION_TEST_ENDPOINT=127.0.0.1:2379 api_test --gtest_filter='ElectionLock*'
// The tests then talk to that endpoint instead of the in-process server.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "cppetcd/api/etcd_server_backend.h"
#include "cppetcd/api/grpc_server.h"
#include "cppetcd/server/etcd_server.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "v3electionpb/v3election.grpc.pb.h"
#include "v3lockpb/v3lock.grpc.pb.h"

namespace cppetcd::api {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// See grpc_server_test.cc: real gRPC calls are skipped in TSan builds.
#if defined(__SANITIZE_THREAD__)
constexpr bool kSkipGrpcTests = true;
#else
constexpr bool kSkipGrpcTests = false;
#endif

constexpr auto kRpcDeadline = seconds(10);

// Polls `cond` every 10 ms until it holds or `timeout` passes.
bool PollUntil(const std::function<bool()>& cond, milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
}

class ElectionLockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kSkipGrpcTests) GTEST_SKIP() << "gRPC is not TSan-instrumented here";
    std::string endpoint;
    if (const char* ext = std::getenv("CPPETCD_ELECTION_TEST_ENDPOINT"); ext && *ext) {
      endpoint = ext;
    } else {
      StartInProcessServer();
      if (HasFatalFailure()) return;
      endpoint = "127.0.0.1:" + std::to_string(api_->Ports()[0]);
    }
    auto channel = grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials());
    kv_ = etcdserverpb::KV::NewStub(channel);
    lease_ = etcdserverpb::Lease::NewStub(channel);
    election_ = v3electionpb::Election::NewStub(channel);
    lock_ = v3lockpb::Lock::NewStub(channel);
    // Distinct names per test, so an external server can be reused.
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    name_ = std::string("elt-") + info->name() + "-" +
            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  }

  void StartInProcessServer() {
    char tmpl[] = "/tmp/cppetcd-elect-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    server::ServerConfig config;
    config.name = "elect-test";
    config.data_dir = dir_ + "/data";
    config.initial_cluster = {{"elect-test", {"http://127.0.0.1:0"}}};
    config.heartbeat_interval = milliseconds(10);
    config.election_timeout = milliseconds(100);
    auto created = server::EtcdServer::Create(std::move(config));
    ASSERT_TRUE(created.ok()) << created.status();
    server_ = std::move(*created);
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_TRUE(server_->WaitReady(seconds(20)));
    backend_ = NewEtcdServerBackend(server_.get());
    ApiServerOptions options;
    options.listen_addresses = {"127.0.0.1:0"};
    auto api = ApiServer::Start(backend_.get(), std::move(options));
    ASSERT_TRUE(api.ok()) << api.status();
    api_ = std::move(*api);
  }

  void TearDown() override {
    if (api_) api_->Shutdown(milliseconds(100));
    api_.reset();
    backend_.reset();
    if (server_) server_->Stop();
    server_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  static void SetDeadline(grpc::ClientContext* ctx) {
    ctx->set_deadline(std::chrono::system_clock::now() + kRpcDeadline);
  }

  int64_t Grant(int64_t ttl_seconds = 60) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    etcdserverpb::LeaseGrantRequest req;
    req.set_ttl(ttl_seconds);
    etcdserverpb::LeaseGrantResponse resp;
    grpc::Status st = lease_->LeaseGrant(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp.id();
  }

  void Revoke(int64_t lease) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    etcdserverpb::LeaseRevokeRequest req;
    req.set_id(lease);
    etcdserverpb::LeaseRevokeResponse resp;
    ASSERT_TRUE(lease_->LeaseRevoke(&ctx, req, &resp).ok());
  }

  // Keys under "<name>/", in key order; -1 on error.
  int64_t CountPrefix(const std::string& name) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    etcdserverpb::RangeRequest req;
    req.set_key(name + "/");
    req.set_range_end(name + "0");  // '/' + 1
    req.set_count_only(true);
    etcdserverpb::RangeResponse resp;
    if (!kv_->Range(&ctx, req, &resp).ok()) return -1;
    return resp.count();
  }

  grpc::Status Lock(const std::string& name, int64_t lease, v3lockpb::LockResponse* resp,
                    grpc::ClientContext* ctx = nullptr) {
    grpc::ClientContext own;
    if (ctx == nullptr) {
      ctx = &own;
      SetDeadline(ctx);
    }
    v3lockpb::LockRequest req;
    req.set_name(name);
    req.set_lease(lease);
    return lock_->Lock(ctx, req, resp);
  }

  grpc::Status Unlock(const std::string& key) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v3lockpb::UnlockRequest req;
    req.set_key(key);
    v3lockpb::UnlockResponse resp;
    return lock_->Unlock(&ctx, req, &resp);
  }

  grpc::Status Campaign(const std::string& name, int64_t lease, const std::string& value,
                        v3electionpb::CampaignResponse* resp, grpc::ClientContext* ctx = nullptr) {
    grpc::ClientContext own;
    if (ctx == nullptr) {
      ctx = &own;
      SetDeadline(ctx);
    }
    v3electionpb::CampaignRequest req;
    req.set_name(name);
    req.set_lease(lease);
    req.set_value(value);
    return election_->Campaign(ctx, req, resp);
  }

  grpc::Status Leader(const std::string& name, v3electionpb::LeaderResponse* resp) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v3electionpb::LeaderRequest req;
    req.set_name(name);
    return election_->Leader(&ctx, req, resp);
  }

  grpc::Status Proclaim(const v3electionpb::LeaderKey& leader, const std::string& value) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v3electionpb::ProclaimRequest req;
    *req.mutable_leader() = leader;
    req.set_value(value);
    v3electionpb::ProclaimResponse resp;
    return election_->Proclaim(&ctx, req, &resp);
  }

  grpc::Status Resign(const v3electionpb::LeaderKey& leader) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v3electionpb::ResignRequest req;
    *req.mutable_leader() = leader;
    v3electionpb::ResignResponse resp;
    return election_->Resign(&ctx, req, &resp);
  }

  static std::string Hex(int64_t v) {
    char buf[17];
    std::snprintf(buf, sizeof(buf), "%llx", static_cast<unsigned long long>(v));
    return buf;
  }

  std::string dir_;
  std::unique_ptr<server::EtcdServer> server_;
  std::unique_ptr<ServerBackend> backend_;
  std::unique_ptr<ApiServer> api_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_;
  std::unique_ptr<v3electionpb::Election::Stub> election_;
  std::unique_ptr<v3lockpb::Lock::Stub> lock_;
  std::string name_;
};

TEST_F(ElectionLockTest, LockIsExclusiveUntilUnlock) {
  const int64_t l1 = Grant();
  const int64_t l2 = Grant();
  v3lockpb::LockResponse first;
  ASSERT_TRUE(Lock(name_, l1, &first).ok());
  EXPECT_EQ(first.key(), name_ + "/" + Hex(l1));
  EXPECT_GT(first.header().revision(), 0);
  EXPECT_NE(first.header().cluster_id(), 0u);

  auto second = std::async(std::launch::async, [&] {
    v3lockpb::LockResponse resp;
    grpc::Status st = Lock(name_, l2, &resp);
    return std::make_pair(st, resp);
  });
  // The waiter's key is in the queue, yet it does not hold the lock.
  ASSERT_TRUE(PollUntil([&] { return CountPrefix(name_) == 2; }, seconds(5)));
  EXPECT_EQ(second.wait_for(milliseconds(100)), std::future_status::timeout);

  ASSERT_TRUE(Unlock(first.key()).ok());
  ASSERT_EQ(second.wait_for(seconds(5)), std::future_status::ready);
  auto [st, resp] = second.get();
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.key(), name_ + "/" + Hex(l2));
  EXPECT_GT(resp.header().revision(), first.header().revision());
  ASSERT_TRUE(Unlock(resp.key()).ok());
  EXPECT_EQ(CountPrefix(name_), 0);
}

TEST_F(ElectionLockTest, LockWaitersAreServedInQueueOrder) {
  constexpr int kWaiters = 3;
  const int64_t holder_lease = Grant();
  v3lockpb::LockResponse holder;
  ASSERT_TRUE(Lock(name_, holder_lease, &holder).ok());
  std::vector<std::future<std::pair<grpc::Status, v3lockpb::LockResponse>>> waiters;
  std::vector<int64_t> leases;
  for (int i = 0; i < kWaiters; ++i) {
    leases.push_back(Grant());
    const int64_t lease = leases.back();
    waiters.push_back(std::async(std::launch::async, [this, lease] {
      v3lockpb::LockResponse resp;
      grpc::Status st = Lock(name_, lease, &resp);
      return std::make_pair(st, resp);
    }));
    // Queue them one at a time so their create revisions are in order.
    ASSERT_TRUE(PollUntil([&] { return CountPrefix(name_) == i + 2; }, seconds(5)));
  }
  std::string previous = holder.key();
  for (int i = 0; i < kWaiters; ++i) {
    for (int j = i + 1; j < kWaiters; ++j) {
      EXPECT_EQ(waiters[j].wait_for(milliseconds(0)), std::future_status::timeout) << j;
    }
    ASSERT_TRUE(Unlock(previous).ok());
    ASSERT_EQ(waiters[i].wait_for(seconds(5)), std::future_status::ready) << i;
    auto [st, resp] = waiters[i].get();
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(resp.key(), name_ + "/" + Hex(leases[i]));
    previous = resp.key();
  }
  ASSERT_TRUE(Unlock(previous).ok());
  EXPECT_EQ(CountPrefix(name_), 0);
}

TEST_F(ElectionLockTest, LockWaiterGetsLockWhenHoldersLeaseIsRevoked) {
  const int64_t l1 = Grant();
  const int64_t l2 = Grant();
  v3lockpb::LockResponse first;
  ASSERT_TRUE(Lock(name_, l1, &first).ok());
  auto second = std::async(std::launch::async, [&] {
    v3lockpb::LockResponse resp;
    return Lock(name_, l2, &resp);
  });
  ASSERT_TRUE(PollUntil([&] { return CountPrefix(name_) == 2; }, seconds(5)));
  Revoke(l1);
  ASSERT_EQ(second.wait_for(seconds(5)), std::future_status::ready);
  EXPECT_TRUE(second.get().ok());
  Revoke(l2);
}

TEST_F(ElectionLockTest, CancelledLockReleasesItsKey) {
  const int64_t l1 = Grant();
  const int64_t l2 = Grant();
  v3lockpb::LockResponse first;
  ASSERT_TRUE(Lock(name_, l1, &first).ok());
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  auto second = std::async(std::launch::async, [&] {
    v3lockpb::LockResponse resp;
    return Lock(name_, l2, &resp, &ctx);
  });
  ASSERT_TRUE(PollUntil([&] { return CountPrefix(name_) == 2; }, seconds(5)));
  ctx.TryCancel();
  ASSERT_EQ(second.wait_for(seconds(5)), std::future_status::ready);
  EXPECT_EQ(second.get().error_code(), grpc::StatusCode::CANCELLED);
  // The abandoned waiter's key goes away; the holder keeps the lock.
  EXPECT_TRUE(PollUntil([&] { return CountPrefix(name_) == 1; }, seconds(5)));
  ASSERT_TRUE(Unlock(first.key()).ok());
}

TEST_F(ElectionLockTest, LockErrorsAndLeaseZero) {
  v3lockpb::LockResponse resp;
  grpc::Status st = Lock(name_, /*lease=*/0x7eadbeef1234, &resp);
  // etcd's services pass backend errors on with code UNKNOWN.
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNKNOWN);
  EXPECT_EQ(st.error_message(), "etcdserver: requested lease not found");

  // Lease 0: the service grants a session lease of its own.
  ASSERT_TRUE(Lock(name_, 0, &resp).ok());
  const std::string prefix = name_ + "/";
  ASSERT_EQ(resp.key().substr(0, prefix.size()), prefix);
  const int64_t lease = std::stoll(resp.key().substr(prefix.size()), nullptr, 16);
  EXPECT_NE(lease, 0);
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    etcdserverpb::LeaseTimeToLiveRequest req;
    req.set_id(lease);
    etcdserverpb::LeaseTimeToLiveResponse ttl;
    ASSERT_TRUE(lease_->LeaseTimeToLive(&ctx, req, &ttl).ok());
    EXPECT_EQ(ttl.grantedttl(), 60);
  }
  Revoke(lease);
  // Unlocking a key that does not exist is not an error.
  EXPECT_TRUE(Unlock(name_ + "/nothing").ok());
}

TEST_F(ElectionLockTest, CampaignLeaderProclaimResign) {
  v3electionpb::LeaderResponse leader;
  grpc::Status st = Leader(name_, &leader);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNKNOWN);
  EXPECT_EQ(st.error_message(), "election: no leader");

  const int64_t l1 = Grant();
  const int64_t l2 = Grant();
  v3electionpb::CampaignResponse c1;
  ASSERT_TRUE(Campaign(name_, l1, "p1", &c1).ok());
  EXPECT_EQ(c1.leader().name(), name_);
  EXPECT_EQ(c1.leader().key(), name_ + "/" + Hex(l1));
  EXPECT_EQ(c1.leader().lease(), l1);
  EXPECT_EQ(c1.leader().rev(), c1.header().revision());

  ASSERT_TRUE(Leader(name_, &leader).ok());
  EXPECT_EQ(leader.kv().key(), c1.leader().key());
  EXPECT_EQ(leader.kv().value(), "p1");

  auto second = std::async(std::launch::async, [&] {
    v3electionpb::CampaignResponse resp;
    grpc::Status s = Campaign(name_, l2, "p2", &resp);
    return std::make_pair(s, resp);
  });
  ASSERT_TRUE(PollUntil([&] { return CountPrefix(name_) == 2; }, seconds(5)));
  EXPECT_EQ(second.wait_for(milliseconds(100)), std::future_status::timeout);

  ASSERT_TRUE(Proclaim(c1.leader(), "p1b").ok());
  ASSERT_TRUE(Leader(name_, &leader).ok());
  EXPECT_EQ(leader.kv().value(), "p1b");

  v3electionpb::LeaderKey stale = c1.leader();
  stale.set_rev(stale.rev() + 1000);
  st = Proclaim(stale, "x");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNKNOWN);
  EXPECT_EQ(st.error_message(), "election: not leader");
  // A stale Resign deletes nothing and does not fail.
  EXPECT_TRUE(Resign(stale).ok());
  EXPECT_EQ(CountPrefix(name_), 2);

  ASSERT_TRUE(Resign(c1.leader()).ok());
  ASSERT_EQ(second.wait_for(seconds(5)), std::future_status::ready);
  auto [s2, c2] = second.get();
  ASSERT_TRUE(s2.ok()) << s2.error_message();
  EXPECT_EQ(c2.leader().key(), name_ + "/" + Hex(l2));
  ASSERT_TRUE(Leader(name_, &leader).ok());
  EXPECT_EQ(leader.kv().value(), "p2");
  ASSERT_TRUE(Resign(c2.leader()).ok());
}

TEST_F(ElectionLockTest, MissingLeaderKeyAndRecampaign) {
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v3electionpb::ResignRequest req;
    v3electionpb::ResignResponse resp;
    grpc::Status st = election_->Resign(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNKNOWN);
    EXPECT_EQ(st.error_message(), "\"leader\" field must be provided");
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v3electionpb::ProclaimRequest req;
    v3electionpb::ProclaimResponse resp;
    grpc::Status st = election_->Proclaim(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNKNOWN);
    EXPECT_EQ(st.error_message(), "\"leader\" field must be provided");
  }
  // Campaigning again with the same lease keeps the place and takes the new
  // value.
  const int64_t l1 = Grant();
  v3electionpb::CampaignResponse a;
  v3electionpb::CampaignResponse b;
  ASSERT_TRUE(Campaign(name_, l1, "v1", &a).ok());
  ASSERT_TRUE(Campaign(name_, l1, "v2", &b).ok());
  EXPECT_EQ(a.leader().rev(), b.leader().rev());
  v3electionpb::LeaderResponse leader;
  ASSERT_TRUE(Leader(name_, &leader).ok());
  EXPECT_EQ(leader.kv().value(), "v2");
  Revoke(l1);
}

TEST_F(ElectionLockTest, CancelledCampaignReleasesItsKey) {
  const int64_t l1 = Grant();
  const int64_t l2 = Grant();
  v3electionpb::CampaignResponse c1;
  ASSERT_TRUE(Campaign(name_, l1, "p1", &c1).ok());
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  auto second = std::async(std::launch::async, [&] {
    v3electionpb::CampaignResponse resp;
    return Campaign(name_, l2, "p2", &resp, &ctx);
  });
  ASSERT_TRUE(PollUntil([&] { return CountPrefix(name_) == 2; }, seconds(5)));
  ctx.TryCancel();
  ASSERT_EQ(second.wait_for(seconds(5)), std::future_status::ready);
  EXPECT_EQ(second.get().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(PollUntil([&] { return CountPrefix(name_) == 1; }, seconds(5)));
  Revoke(l1);
  Revoke(l2);
}

TEST_F(ElectionLockTest, ObserveStreamsLeaderChanges) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v3electionpb::LeaderRequest req;
  req.set_name(name_);
  auto reader = election_->Observe(&ctx, req);

  const int64_t l1 = Grant();
  const int64_t l2 = Grant();
  v3electionpb::CampaignResponse c1;
  ASSERT_TRUE(Campaign(name_, l1, "p1", &c1).ok());
  v3electionpb::LeaderResponse got;
  ASSERT_TRUE(reader->Read(&got));
  EXPECT_EQ(got.kv().key(), c1.leader().key());
  EXPECT_EQ(got.kv().value(), "p1");
  EXPECT_GT(got.header().revision(), 0);

  ASSERT_TRUE(Proclaim(c1.leader(), "p1b").ok());
  ASSERT_TRUE(reader->Read(&got));
  EXPECT_EQ(got.kv().value(), "p1b");

  // A second candidate does not change the leader; its resignation of the
  // first does.
  auto second = std::async(std::launch::async, [&] {
    v3electionpb::CampaignResponse resp;
    return Campaign(name_, l2, "p2", &resp);
  });
  ASSERT_TRUE(PollUntil([&] { return CountPrefix(name_) == 2; }, seconds(5)));
  ASSERT_TRUE(Resign(c1.leader()).ok());
  ASSERT_TRUE(reader->Read(&got));
  EXPECT_EQ(got.kv().key(), name_ + "/" + Hex(l2));
  EXPECT_EQ(got.kv().value(), "p2");
  ASSERT_EQ(second.wait_for(seconds(5)), std::future_status::ready);
  EXPECT_TRUE(second.get().ok());

  ctx.TryCancel();
  while (reader->Read(&got)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  Revoke(l1);
  Revoke(l2);
}

}  // namespace
}  // namespace cppetcd::api
