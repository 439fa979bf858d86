// The gRPC services over a real single-member EtcdServer (temp data dir,
// loopback port picked by the OS), driven through generated stubs.
#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "cppetcd/api/etcd_server_backend.h"
#include "cppetcd/api/grpc_server.h"
#include "cppetcd/api/range_budget.h"
#include "cppetcd/server/etcd_server.h"
#include "cppetcd/storage/bbolt_reader.h"
#include "etcdserverpb/rpc.grpc.pb.h"

namespace cppetcd::api {
namespace {

using std::chrono::milliseconds;

// See grpc_server_test.cc: real gRPC calls are skipped in TSan builds.
#if defined(__SANITIZE_THREAD__)
constexpr bool kSkipGrpcTests = true;
#else
constexpr bool kSkipGrpcTests = false;
#endif

class EtcdServerApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kSkipGrpcTests) GTEST_SKIP() << "gRPC is not TSan-instrumented here";
    char tmpl[] = "/tmp/cppetcd-api-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    server::ServerConfig config;
    config.name = "api-test";
    config.data_dir = dir_ + "/data";
    config.initial_cluster = {{"api-test", {"http://127.0.0.1:0"}}};
    config.heartbeat_interval = milliseconds(10);
    config.election_timeout = milliseconds(100);
    auto created = server::EtcdServer::Create(std::move(config));
    ASSERT_TRUE(created.ok()) << created.status();
    server_ = std::move(*created);
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_TRUE(server_->WaitReady(std::chrono::seconds(20)));
    backend_ = NewEtcdServerBackend(server_.get());
    ApiServerOptions options;
    options.listen_addresses = {"127.0.0.1:0"};
    options.range_budget = range_budget_;
    auto api = ApiServer::Start(backend_.get(), std::move(options));
    ASSERT_TRUE(api.ok()) << api.status();
    api_ = std::move(*api);
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(api_->Ports()[0]),
                                       grpc::InsecureChannelCredentials());
    kv_ = etcdserverpb::KV::NewStub(channel);
    watch_ = etcdserverpb::Watch::NewStub(channel);
    lease_ = etcdserverpb::Lease::NewStub(channel);
    cluster_ = etcdserverpb::Cluster::NewStub(channel);
    maintenance_ = etcdserverpb::Maintenance::NewStub(channel);
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

  static void SetDeadline(grpc::ClientContext* ctx) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  }

  void ExpectHeader(const etcdserverpb::ResponseHeader& h) {
    EXPECT_EQ(h.cluster_id(), server_->ClusterId());
    EXPECT_EQ(h.member_id(), server_->MemberId());
    EXPECT_GT(h.raft_term(), 0u);
    EXPECT_GT(h.revision(), 0);
  }

  // etcd 3.4's Cluster service header: no revision (v3rpc ClusterServer.header).
  void ExpectClusterHeader(const etcdserverpb::ResponseHeader& h) {
    EXPECT_EQ(h.cluster_id(), server_->ClusterId());
    EXPECT_EQ(h.member_id(), server_->MemberId());
    EXPECT_GT(h.raft_term(), 0u);
    EXPECT_EQ(h.revision(), 0);
  }

  grpc::Status Put(const std::string& key, const std::string& value, int64_t lease = 0,
                   etcdserverpb::PutResponse* out = nullptr) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    etcdserverpb::PutRequest req;
    req.set_key(key);
    req.set_value(value);
    req.set_lease(lease);
    etcdserverpb::PutResponse resp;
    return kv_->Put(&ctx, req, out ? out : &resp);
  }

  std::string dir_;
  std::shared_ptr<RangeBudget> range_budget_;  // null: the default budget
  std::unique_ptr<server::EtcdServer> server_;
  std::unique_ptr<ServerBackend> backend_;
  std::unique_ptr<ApiServer> api_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch_;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_;
  std::unique_ptr<etcdserverpb::Cluster::Stub> cluster_;
  std::unique_ptr<etcdserverpb::Maintenance::Stub> maintenance_;
};

TEST_F(EtcdServerApiTest, KvRoundTripAndErrors) {
  etcdserverpb::PutResponse put;
  ASSERT_TRUE(Put("foo", "bar", 0, &put).ok());
  ExpectHeader(put.header());
  const int64_t put_rev = put.header().revision();

  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    etcdserverpb::RangeRequest req;
    req.set_key("foo");
    etcdserverpb::RangeResponse resp;
    ASSERT_TRUE(kv_->Range(&ctx, req, &resp).ok());
    ExpectHeader(resp.header());
    ASSERT_EQ(resp.kvs_size(), 1);
    EXPECT_EQ(resp.kvs(0).value(), "bar");
    EXPECT_EQ(resp.kvs(0).mod_revision(), put_rev);
  }
  {
    etcdserverpb::TxnRequest req;
    auto* c = req.add_compare();
    c->set_key("foo");
    c->set_target(etcdserverpb::Compare::VALUE);
    c->set_result(etcdserverpb::Compare::EQUAL);
    c->set_value("bar");
    req.add_success()->mutable_request_put()->set_key("txn");
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    etcdserverpb::TxnResponse resp;
    ASSERT_TRUE(kv_->Txn(&ctx, req, &resp).ok());
    EXPECT_TRUE(resp.succeeded());
    ExpectHeader(resp.header());
  }
  {
    // Duplicate keys in one txn branch.
    etcdserverpb::TxnRequest req;
    req.add_success()->mutable_request_put()->set_key("dup");
    req.add_success()->mutable_request_put()->set_key("dup");
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    etcdserverpb::TxnResponse resp;
    grpc::Status st = kv_->Txn(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(st.error_message(), "etcdserver: duplicate key given in txn request");
  }
  {
    grpc::Status st = Put("", "x");
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(st.error_message(), "etcdserver: key is not provided");
  }
  {
    grpc::Status st = Put("k", "v", /*lease=*/0x1234);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(st.error_message(), "etcdserver: requested lease not found");
  }
  // Compaction, then a read below it.
  ASSERT_TRUE(Put("foo", "baz").ok());
  etcdserverpb::PutResponse last;
  ASSERT_TRUE(Put("foo", "qux", 0, &last).ok());
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    etcdserverpb::CompactionRequest req;
    req.set_revision(last.header().revision());
    req.set_physical(true);
    etcdserverpb::CompactionResponse resp;
    ASSERT_TRUE(kv_->Compact(&ctx, req, &resp).ok());
    ExpectHeader(resp.header());
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    etcdserverpb::RangeRequest req;
    req.set_key("foo");
    req.set_revision(put_rev);
    etcdserverpb::RangeResponse resp;
    grpc::Status st = kv_->Range(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::OUT_OF_RANGE);
    EXPECT_EQ(st.error_message(), "etcdserver: mvcc: required revision has been compacted");
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    etcdserverpb::DeleteRangeRequest req;
    req.set_key("foo");
    etcdserverpb::DeleteRangeResponse resp;
    ASSERT_TRUE(kv_->DeleteRange(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.deleted(), 1);
  }
}

TEST_F(EtcdServerApiTest, WatchLiveAndFromHistory) {
  etcdserverpb::PutResponse first;
  ASSERT_TRUE(Put("w/a", "1", 0, &first).ok());

  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  auto stream = watch_->Watch(&ctx);
  etcdserverpb::WatchRequest req;
  auto* c = req.mutable_create_request();
  c->set_key("w/");
  c->set_range_end("w0");
  c->set_start_revision(first.header().revision());
  c->set_prev_kv(true);
  ASSERT_TRUE(stream->Write(req));
  etcdserverpb::WatchResponse created;
  ASSERT_TRUE(stream->Read(&created));
  EXPECT_TRUE(created.created());
  ExpectHeader(created.header());

  // History first (the put before the watch), then a live put.
  etcdserverpb::WatchResponse history;
  ASSERT_TRUE(stream->Read(&history));
  ASSERT_EQ(history.events_size(), 1);
  EXPECT_EQ(history.events(0).kv().key(), "w/a");

  ASSERT_TRUE(Put("w/a", "2").ok());
  etcdserverpb::WatchResponse live;
  ASSERT_TRUE(stream->Read(&live));
  ASSERT_EQ(live.events_size(), 1);
  EXPECT_EQ(live.events(0).kv().value(), "2");
  EXPECT_EQ(live.events(0).prev_kv().value(), "1");
  EXPECT_EQ(live.header().revision(), live.events(0).kv().mod_revision());

  etcdserverpb::WatchRequest cancel;
  cancel.mutable_cancel_request()->set_watch_id(created.watch_id());
  ASSERT_TRUE(stream->Write(cancel));
  etcdserverpb::WatchResponse canceled;
  ASSERT_TRUE(stream->Read(&canceled));
  EXPECT_TRUE(canceled.canceled());
  ctx.TryCancel();
  stream->Finish();
}

TEST_F(EtcdServerApiTest, LeaseLifecycle) {
  grpc::ClientContext gctx;
  SetDeadline(&gctx);
  etcdserverpb::LeaseGrantRequest greq;
  greq.set_ttl(60);
  etcdserverpb::LeaseGrantResponse grant;
  ASSERT_TRUE(lease_->LeaseGrant(&gctx, greq, &grant).ok());
  ExpectHeader(grant.header());
  ASSERT_TRUE(Put("leased", "v", grant.id()).ok());

  grpc::ClientContext kctx;
  SetDeadline(&kctx);
  auto ka = lease_->LeaseKeepAlive(&kctx);
  etcdserverpb::LeaseKeepAliveRequest kreq;
  kreq.set_id(grant.id());
  ASSERT_TRUE(ka->Write(kreq));
  etcdserverpb::LeaseKeepAliveResponse kresp;
  ASSERT_TRUE(ka->Read(&kresp));
  EXPECT_EQ(kresp.id(), grant.id());
  EXPECT_GT(kresp.ttl(), 0);
  ExpectHeader(kresp.header());
  ka->WritesDone();
  EXPECT_TRUE(ka->Finish().ok());

  grpc::ClientContext tctx;
  SetDeadline(&tctx);
  etcdserverpb::LeaseTimeToLiveRequest treq;
  treq.set_id(grant.id());
  treq.set_keys(true);
  etcdserverpb::LeaseTimeToLiveResponse ttl;
  ASSERT_TRUE(lease_->LeaseTimeToLive(&tctx, treq, &ttl).ok());
  EXPECT_EQ(ttl.grantedttl(), 60);
  ASSERT_EQ(ttl.keys_size(), 1);
  EXPECT_EQ(ttl.keys(0), "leased");

  grpc::ClientContext rctx;
  SetDeadline(&rctx);
  etcdserverpb::LeaseRevokeRequest rreq;
  rreq.set_id(grant.id());
  etcdserverpb::LeaseRevokeResponse revoke;
  ASSERT_TRUE(lease_->LeaseRevoke(&rctx, rreq, &revoke).ok());
  ExpectHeader(revoke.header());

  grpc::ClientContext tctx2;
  SetDeadline(&tctx2);
  ASSERT_TRUE(lease_->LeaseTimeToLive(&tctx2, treq, &ttl).ok());
  EXPECT_EQ(ttl.ttl(), -1);
}

TEST_F(EtcdServerApiTest, Snapshot) {
  ASSERT_TRUE(Put("snap", "v").ok());
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  auto reader = maintenance_->Snapshot(&ctx, {});
  etcdserverpb::SnapshotResponse resp;
  uint64_t bytes = 0;
  int messages = 0;
  std::string head;
  uint64_t announced = 0;  // the first message's blob + remaining_bytes
  while (reader->Read(&resp)) {
    if (messages == 0) {
      head = resp.blob();
      announced = resp.blob().size() + resp.remaining_bytes();
    }
    bytes += resp.blob().size();
    ++messages;
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_GE(messages, 2);
  EXPECT_GT(bytes, 32u);
  // etcd's format: a bbolt file of whole 4 KiB pages, its size announced
  // up front, then the 32-byte SHA-256.
  EXPECT_TRUE(storage::LooksLikeBbolt(head));
  EXPECT_EQ(announced + 32, bytes);
  EXPECT_EQ(announced % 4096, 0u);
  auto size = storage::BboltSizeFromHead(head);
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(*size, announced);
}

TEST_F(EtcdServerApiTest, StatusAndMembers) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  etcdserverpb::StatusResponse status;
  ASSERT_TRUE(maintenance_->Status(&ctx, {}, &status).ok());
  ExpectHeader(status.header());
  EXPECT_EQ(status.version(), "3.4.23");
  EXPECT_EQ(status.leader(), server_->MemberId());

  grpc::ClientContext mctx;
  SetDeadline(&mctx);
  etcdserverpb::MemberListResponse members;
  ASSERT_TRUE(cluster_->MemberList(&mctx, {}, &members).ok());
  ExpectClusterHeader(members.header());
  ASSERT_EQ(members.members_size(), 1);
  EXPECT_EQ(members.members(0).id(), server_->MemberId());
}

// The bound on Range answers in flight (range_budget.h), over real gRPC
// calls: a small budget, answers larger than it.
class RangeBudgetApiTest : public EtcdServerApiTest {
 protected:
  static constexpr uint64_t kLimit = 64 << 10;
  static constexpr int kKeys = 48;
  static constexpr size_t kValueBytes = 4096;

  void SetUp() override {
    range_budget_ = std::make_shared<RangeBudget>(kLimit, max_queued_);
    EtcdServerApiTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    for (int i = 0; i < kKeys; ++i) {
      grpc::ClientContext ctx;
      SetDeadline(&ctx);
      etcdserverpb::PutRequest put;
      put.set_key(Key(i));
      put.set_value(Value(i));
      etcdserverpb::PutResponse resp;
      ASSERT_TRUE(kv_->Put(&ctx, put, &resp).ok());
    }
  }

  size_t max_queued_ = RangeBudget::kDefaultMaxQueued;

  static std::string Key(int i) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "big/%03d", i);
    return buf;
  }
  static std::string Value(int i) { return std::string(kValueBytes, static_cast<char>('a' + i % 26)); }

  template <class Pred>
  static bool Eventually(Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(milliseconds(2));
    }
    return pred();
  }
};

TEST_F(RangeBudgetApiTest, LargeRangesQueueAndAllSucceed) {
  RangeBudget& budget = api_->range_budget();
  ASSERT_EQ(&budget, range_budget_.get());
  // Hold the whole budget, as answers in flight would: every range queues.
  const RangeBudget::Ticket held = budget.NewTicket();
  ASSERT_EQ(budget.Acquire(held, kLimit, [] {}), RangeBudget::Admission::kAdmitted);

  struct Call {
    etcdserverpb::RangeRequest req;
    etcdserverpb::RangeResponse resp;
    grpc::ClientContext ctx;
    grpc::Status status;
  };
  constexpr int kCalls = 8;
  std::vector<std::unique_ptr<Call>> calls;
  for (int i = 0; i < kCalls; ++i) {
    auto c = std::make_unique<Call>();
    c->req.set_key("big/");
    c->req.set_range_end("big0");  // every key: ~200 KiB, over the bound
    c->req.set_serializable(i % 2 == 1);
    if (i == 5) c->req.set_limit(3);
    if (i == 6) {
      c->req.set_key(Key(7));
      c->req.clear_range_end();
    }
    if (i == 7) c->req.set_count_only(true);
    SetDeadline(&c->ctx);
    calls.push_back(std::move(c));
  }
  std::atomic<int> done{0};
  for (auto& c : calls) {
    Call* p = c.get();
    kv_->async()->Range(&p->ctx, &p->req, &p->resp, [p, &done](grpc::Status st) {
      p->status = std::move(st);
      done.fetch_add(1);
    });
  }
  ASSERT_TRUE(Eventually([&] { return budget.GetStats().queued == kCalls; }))
      << budget.GetStats().queued;
  EXPECT_EQ(done.load(), 0);
  budget.Release(kLimit);
  ASSERT_TRUE(Eventually([&] { return done.load() == kCalls; }));

  for (int i = 0; i < kCalls; ++i) {
    SCOPED_TRACE(i);
    const Call& c = *calls[static_cast<size_t>(i)];
    ASSERT_TRUE(c.status.ok()) << c.status.error_message();
    ExpectHeader(c.resp.header());
    if (i == 6) {
      ASSERT_EQ(c.resp.kvs_size(), 1);
      EXPECT_EQ(c.resp.kvs(0).key(), Key(7));
      EXPECT_EQ(c.resp.kvs(0).value(), Value(7));
      EXPECT_EQ(c.resp.count(), 1);
      continue;
    }
    EXPECT_EQ(c.resp.count(), kKeys);
    if (i == 7) {
      EXPECT_EQ(c.resp.kvs_size(), 0);
      continue;
    }
    const int want = i == 5 ? 3 : kKeys;
    EXPECT_EQ(c.resp.more(), i == 5);
    ASSERT_EQ(c.resp.kvs_size(), want);
    for (int k = 0; k < want; ++k) {
      EXPECT_EQ(c.resp.kvs(k).key(), Key(k));
      EXPECT_EQ(c.resp.kvs(k).value(), Value(k));
      EXPECT_EQ(c.resp.kvs(k).version(), 1);
    }
  }
  // Every charge returns once gRPC is done with the calls.
  ASSERT_TRUE(Eventually([&] { return budget.GetStats().in_flight == 0; }));
  const RangeBudget::Stats s = budget.GetStats();
  EXPECT_EQ(s.in_flight_bytes, 0u);
  EXPECT_EQ(s.queued, 0u);
  EXPECT_GE(s.queued_total, static_cast<uint64_t>(kCalls));
  EXPECT_EQ(s.peak_queued, static_cast<uint64_t>(kCalls));
  // Full ranges ran alone; only the small ones shared the budget.
  EXPECT_LE(s.peak_shared_in_flight_bytes, kLimit);
}

// The budget's wait queue is bounded (range_budget.h): past it a Range or
// read-only Txn fails at once as etcd's overloaded server answers,
// ResourceExhausted "etcdserver: too many requests"; those that waited are
// served once the budget frees.
class RangeBudgetQueueBoundTest : public RangeBudgetApiTest {
 protected:
  static constexpr size_t kMaxQueued = 3;
  RangeBudgetQueueBoundTest() { max_queued_ = kMaxQueued; }
};

TEST_F(RangeBudgetQueueBoundTest, CallsPastTheQueueBoundAreRefusedAsTooManyRequests) {
  RangeBudget& budget = api_->range_budget();
  const RangeBudget::Ticket held = budget.NewTicket();
  ASSERT_EQ(budget.Acquire(held, kLimit, [] {}), RangeBudget::Admission::kAdmitted);
  struct Call {
    etcdserverpb::RangeRequest req;
    etcdserverpb::RangeResponse resp;
    grpc::ClientContext ctx;
    grpc::Status status;
    std::atomic<bool> done{false};
  };
  constexpr size_t kCalls = kMaxQueued + 2;
  std::vector<std::unique_ptr<Call>> calls;
  for (size_t i = 0; i < kCalls; ++i) {
    auto c = std::make_unique<Call>();
    c->req.set_key("big/");
    c->req.set_range_end("big0");
    SetDeadline(&c->ctx);
    Call* p = c.get();
    calls.push_back(std::move(c));
    kv_->async()->Range(&p->ctx, &p->req, &p->resp, [p](grpc::Status st) {
      p->status = std::move(st);
      p->done = true;
    });
    // One at a time, so which ones wait is known.
    if (i < kMaxQueued) {
      ASSERT_TRUE(Eventually([&] { return budget.GetStats().queued == i + 1; }));
    } else {
      ASSERT_TRUE(Eventually([&] { return p->done.load(); }));
      EXPECT_EQ(p->status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
      EXPECT_EQ(p->status.error_message(), "etcdserver: too many requests");
    }
  }
  // A read-only Txn waits in the same queue: refused too.
  etcdserverpb::TxnRequest read;
  read.add_success()->mutable_request_range()->set_key(Key(0));
  grpc::ClientContext txn_ctx;
  SetDeadline(&txn_ctx);
  etcdserverpb::TxnResponse txn_resp;
  grpc::Status txn_status = kv_->Txn(&txn_ctx, read, &txn_resp);
  EXPECT_EQ(txn_status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  RangeBudget::Stats s = budget.GetStats();
  EXPECT_EQ(s.queued, kMaxQueued);
  EXPECT_EQ(s.refused_total, kCalls - kMaxQueued + 1);
  EXPECT_GT(s.queued_held_bytes, 0u);
  for (size_t i = 0; i < kMaxQueued; ++i) EXPECT_FALSE(calls[i]->done.load());

  budget.Release(kLimit);
  for (size_t i = 0; i < kMaxQueued; ++i) {
    SCOPED_TRACE(i);
    Call* p = calls[i].get();
    ASSERT_TRUE(Eventually([&] { return p->done.load(); }));
    ASSERT_TRUE(p->status.ok()) << p->status.error_message();
    EXPECT_EQ(p->resp.kvs_size(), kKeys);
  }
  ASSERT_TRUE(Eventually([&] { return budget.GetStats().in_flight == 0; }));
  s = budget.GetStats();
  EXPECT_EQ(s.queued_held_bytes, 0u);
  EXPECT_EQ(s.in_flight_bytes, 0u);
}

TEST_F(RangeBudgetApiTest, QueuedRangeLeavesTheQueueWhenItsClientGivesUp) {
  RangeBudget& budget = api_->range_budget();
  const RangeBudget::Ticket held = budget.NewTicket();
  ASSERT_EQ(budget.Acquire(held, kLimit, [] {}), RangeBudget::Admission::kAdmitted);
  const uint64_t admitted_before = budget.GetStats().admitted_total;
  etcdserverpb::RangeRequest req;
  req.set_key("big/");
  req.set_range_end("big0");

  {  // A deadline passes while queued.
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + milliseconds(300));
    etcdserverpb::RangeResponse resp;
    grpc::Status st = kv_->Range(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    ASSERT_TRUE(Eventually([&] { return budget.GetStats().queued == 0; }));
  }
  {  // The client cancels while queued.
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    etcdserverpb::RangeResponse resp;
    std::atomic<bool> finished{false};
    grpc::Status st;
    kv_->async()->Range(&ctx, &req, &resp, [&](grpc::Status s) {
      st = std::move(s);
      finished = true;
    });
    ASSERT_TRUE(Eventually([&] { return budget.GetStats().queued == 1; }));
    ctx.TryCancel();
    ASSERT_TRUE(Eventually([&] { return finished.load(); }));
    EXPECT_EQ(st.error_code(), grpc::StatusCode::CANCELLED);
    ASSERT_TRUE(Eventually([&] { return budget.GetStats().queued == 0; }));
  }
  // Neither was ever admitted, nor holds anything.
  RangeBudget::Stats s = budget.GetStats();
  EXPECT_EQ(s.admitted_total, admitted_before);
  EXPECT_EQ(s.in_flight, 1u);
  EXPECT_EQ(s.in_flight_bytes, kLimit);
  budget.Release(kLimit);

  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  etcdserverpb::RangeResponse resp;
  ASSERT_TRUE(kv_->Range(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.kvs_size(), kKeys);
  ASSERT_TRUE(Eventually([&] { return budget.GetStats().in_flight == 0; }));
}

TEST_F(RangeBudgetApiTest, ReadOnlyTxnWaitsForTheBudgetAndWritesDoNot) {
  RangeBudget& budget = api_->range_budget();
  const RangeBudget::Ticket held = budget.NewTicket();
  ASSERT_EQ(budget.Acquire(held, kLimit, [] {}), RangeBudget::Admission::kAdmitted);

  etcdserverpb::TxnRequest read;
  etcdserverpb::RangeRequest* all = read.add_success()->mutable_request_range();
  all->set_key("big/");
  all->set_range_end("big0");
  grpc::ClientContext read_ctx;
  SetDeadline(&read_ctx);
  etcdserverpb::TxnResponse read_resp;
  std::atomic<bool> read_done{false};
  grpc::Status read_status;
  kv_->async()->Txn(&read_ctx, &read, &read_resp, [&](grpc::Status st) {
    read_status = std::move(st);
    read_done = true;
  });
  ASSERT_TRUE(Eventually([&] { return budget.GetStats().queued == 1; }));

  // A txn that writes is not held back, range op or not.
  etcdserverpb::TxnRequest write;
  write.add_success()->mutable_request_put()->set_key("other");
  write.add_success()->mutable_request_range()->set_key(Key(0));
  grpc::ClientContext write_ctx;
  SetDeadline(&write_ctx);
  etcdserverpb::TxnResponse write_resp;
  ASSERT_TRUE(kv_->Txn(&write_ctx, write, &write_resp).ok());
  ASSERT_EQ(write_resp.responses_size(), 2);
  EXPECT_EQ(write_resp.responses(1).response_range().kvs_size(), 1);
  EXPECT_FALSE(read_done.load());

  budget.Release(kLimit);
  ASSERT_TRUE(Eventually([&] { return read_done.load(); }));
  ASSERT_TRUE(read_status.ok()) << read_status.error_message();
  ASSERT_EQ(read_resp.responses_size(), 1);
  const etcdserverpb::RangeResponse& got = read_resp.responses(0).response_range();
  ASSERT_EQ(got.kvs_size(), kKeys);
  for (int k = 0; k < kKeys; ++k) EXPECT_EQ(got.kvs(k).value(), Value(k));
  ASSERT_TRUE(Eventually([&] { return budget.GetStats().in_flight == 0; }));
  EXPECT_EQ(budget.GetStats().in_flight_bytes, 0u);
}

}  // namespace
}  // namespace cppetcd::api
