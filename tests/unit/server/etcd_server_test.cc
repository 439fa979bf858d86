#include "cppetcd/server/etcd_server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "gtest/gtest.h"

#include "cppetcd/lease/lessor.h"
#include "cppetcd/mvcc/errors.h"
#include "cppetcd/mvcc/kvstore.h"
#include "cppetcd/server/errors.h"
#include "cppetcd/util/clock.h"
#include "cppetcd/util/log.h"
#include "tests/unit/server/server_test_util.h"

namespace cppetcd::server {
namespace {

using namespace std::chrono_literals;
using test_util::Call;
using test_util::PollUntil;
namespace fs = std::filesystem;

using TestClock = test_util::AtomicManualClock;



class ServerTest : public test_util::SingleServerTest {
 protected:
  absl::StatusOr<etcdserverpb::PutResponse> Put(const std::string& k, const std::string& v,
                                                int64_t lease = 0) {
    etcdserverpb::PutRequest req;
    req.set_key(k);
    req.set_value(v);
    req.set_lease(lease);
    return Call<etcdserverpb::PutResponse>([&](Done<etcdserverpb::PutResponse> d) {
      server_->Put(auth::kNoCredentials, req, std::move(d));
    });
  }
  absl::StatusOr<etcdserverpb::RangeResponse> Get(const std::string& k, bool serializable = false,
                                                  int64_t rev = 0, std::string end = "") {
    etcdserverpb::RangeRequest req;
    req.set_key(k);
    req.set_range_end(end);
    req.set_serializable(serializable);
    req.set_revision(rev);
    return Call<etcdserverpb::RangeResponse>([&](Done<etcdserverpb::RangeResponse> d) {
      server_->Range(auth::kNoCredentials, req, std::move(d));
    });
  }
  std::string Value(const std::string& k) {
    auto r = Get(k);
    if (!r.ok() || r->kvs_size() != 1) return "<none>";
    return r->kvs(0).value();
  }
  absl::StatusOr<etcdserverpb::AlarmResponse> Alarms() {
    etcdserverpb::AlarmRequest req;
    req.set_action(etcdserverpb::AlarmRequest::GET);
    return Call<etcdserverpb::AlarmResponse>([&](Done<etcdserverpb::AlarmResponse> d) {
      server_->Alarm(auth::kNoCredentials, req, std::move(d));
    });
  }

};

TEST_F(ServerTest, PutRangeDeleteTxn) {
  StartServer();
  auto p1 = Put("foo", "bar");
  ASSERT_TRUE(p1.ok()) << p1.status();
  EXPECT_EQ(p1->header().revision(), 2);
  EXPECT_EQ(p1->header().member_id(), server_->MemberId());
  EXPECT_EQ(p1->header().cluster_id(), server_->ClusterId());
  EXPECT_GT(p1->header().raft_term(), 0u);

  auto r = Get("foo");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->kvs_size(), 1);
  EXPECT_EQ(r->kvs(0).value(), "bar");
  EXPECT_EQ(r->header().revision(), 2);
  auto rs = Get("foo", /*serializable=*/true);
  ASSERT_TRUE(rs.ok());
  EXPECT_EQ(rs->kvs_size(), 1);

  etcdserverpb::TxnRequest txn;
  auto* cmp = txn.add_compare();
  cmp->set_key("foo");
  cmp->set_target(etcdserverpb::Compare::VALUE);
  cmp->set_result(etcdserverpb::Compare::EQUAL);
  cmp->set_value("bar");
  auto* put = txn.add_success()->mutable_request_put();
  put->set_key("foo");
  put->set_value("baz");
  auto t = Call<etcdserverpb::TxnResponse>([&](Done<etcdserverpb::TxnResponse> d) {
    server_->Txn(auth::kNoCredentials, txn, std::move(d));
  });
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(t->succeeded());
  EXPECT_EQ(Value("foo"), "baz");

  // A read-only txn goes the read path.
  etcdserverpb::TxnRequest ro;
  ro.add_success()->mutable_request_range()->set_key("foo");
  auto tr = Call<etcdserverpb::TxnResponse>([&](Done<etcdserverpb::TxnResponse> d) {
    server_->Txn(auth::kNoCredentials, ro, std::move(d));
  });
  ASSERT_TRUE(tr.ok()) << tr.status();
  ASSERT_EQ(tr->responses_size(), 1);
  EXPECT_EQ(tr->responses(0).response_range().kvs(0).value(), "baz");

  etcdserverpb::DeleteRangeRequest del;
  del.set_key("foo");
  auto dr = Call<etcdserverpb::DeleteRangeResponse>([&](Done<etcdserverpb::DeleteRangeResponse> d) {
    server_->DeleteRange(auth::kNoCredentials, del, std::move(d));
  });
  ASSERT_TRUE(dr.ok()) << dr.status();
  EXPECT_EQ(dr->deleted(), 1);
  EXPECT_EQ(Value("foo"), "<none>");
}

// Replies to writes go out before their backend commit (apply_loop.cc):
// every local read after a reply must still see the write. Without
// AwaitRepliedWrites a serializable read at the put's revision would fail as
// a future revision while the commit's fdatasync runs.
TEST_F(ServerTest, ReadsAfterAReplySeeTheWrite) {
  StartServer();
  for (int i = 0; i < 200; ++i) {
    const std::string k = "ryw/" + std::to_string(i);
    auto p = Put(k, "v" + std::to_string(i));
    ASSERT_TRUE(p.ok()) << p.status();
    const int64_t rev = p->header().revision();
    auto at = Get(k, /*serializable=*/true, rev);
    ASSERT_TRUE(at.ok()) << "put " << i << " at revision " << rev << ": " << at.status();
    ASSERT_EQ(at->kvs_size(), 1) << i;
    EXPECT_EQ(at->kvs(0).value(), "v" + std::to_string(i));
    EXPECT_GE(at->header().revision(), rev);
    auto p2 = Put(k + "/b", "w");
    ASSERT_TRUE(p2.ok()) << p2.status();
    server_->AwaitRepliedWrites();
    ASSERT_GE(server_->Store()->Rev(), p2->header().revision()) << i;
  }
}

TEST_F(ServerTest, DefaultMemberIdAndMemberList) {
  StartServer();
  EXPECT_EQ(util::IdToHex(server_->MemberId()), "8e9e05c52164694d");
  EXPECT_EQ(util::IdToHex(server_->ClusterId()), "cdf818194e3a8c32");
  auto ml = Call<etcdserverpb::MemberListResponse>([&](Done<etcdserverpb::MemberListResponse> d) {
    server_->MemberList({}, std::move(d));
  });
  ASSERT_TRUE(ml.ok());
  ASSERT_EQ(ml->members_size(), 1);
  EXPECT_EQ(ml->members(0).id(), server_->MemberId());
  EXPECT_EQ(ml->members(0).name(), "default");
  ASSERT_EQ(ml->members(0).peerurls_size(), 1);
  EXPECT_EQ(ml->members(0).peerurls(0), "http://localhost:2380");
  ASSERT_EQ(ml->members(0).clienturls_size(), 1);
  EXPECT_EQ(ml->members(0).clienturls(0), "http://127.0.0.1:2379");

  auto st = Call<etcdserverpb::StatusResponse>(
      [&](Done<etcdserverpb::StatusResponse> d) { server_->Status({}, std::move(d)); });
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->version(), "3.4.23");
  EXPECT_EQ(st->leader(), server_->MemberId());
  EXPECT_GE(st->raftindex(), st->raftappliedindex());
  EXPECT_GT(st->raftappliedindex(), 0u);
  EXPECT_GT(st->dbsize(), 0);

  bool published = false;
  for (const auto& line : log_.Lines()) {
    published |= line.find("published local member to cluster through raft") != std::string::npos;
  }
  EXPECT_TRUE(published);
}

TEST_F(ServerTest, RestartKeepsDataAndRevision) {
  StartServer();
  ASSERT_TRUE(Put("a", "1").ok());
  ASSERT_TRUE(Put("b", "2").ok());
  auto p = Put("a", "3");
  ASSERT_TRUE(p.ok());
  const int64_t rev = p->header().revision();
  server_->Stop();
  server_.reset();

  StartServer();
  EXPECT_EQ(Value("a"), "3");
  EXPECT_EQ(Value("b"), "2");
  auto r = Get("a");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->header().revision(), rev);
  auto p2 = Put("c", "4");
  ASSERT_TRUE(p2.ok());
  EXPECT_EQ(p2->header().revision(), rev + 1);
}

TEST_F(ServerTest, CrashWithoutStopLosesNoAcknowledgedWrite) {
  StartServer();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(Put("k" + std::to_string(i), std::to_string(i)).ok());
  server_->CrashForTesting();
  server_.reset();
  StartServer();
  for (int i = 0; i < 20; ++i) EXPECT_EQ(Value("k" + std::to_string(i)), std::to_string(i));
}

// A child process writes keys and reports each acknowledged one through a
// pipe; it is SIGKILLed mid-stream. Every acknowledged write must be there
// after a restart.
TEST_F(ServerTest, SigkillLosesNoAcknowledgedWrite) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    auto s = EtcdServer::Create(Config());
    if (!s.ok() || !(*s)->Start().ok() || !(*s)->WaitReady(10s)) ::_exit(2);
    server_ = std::move(*s);
    for (int32_t i = 0; i < 100000; ++i) {
      if (!Put("kill" + std::to_string(i), std::to_string(i)).ok()) ::_exit(3);
      if (::write(fds[1], &i, sizeof i) != sizeof i) ::_exit(4);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  int32_t last = -1, v = 0;
  while (last < 40 && ::read(fds[0], &v, sizeof v) == sizeof v) last = v;
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  while (::read(fds[0], &v, sizeof v) == sizeof v) last = v;  // acks sent before the kill
  ::close(fds[0]);
  ASSERT_GE(last, 40) << "child exit status " << status;
  StartServer();
  for (int32_t i = 0; i <= last; ++i) {
    ASSERT_EQ(Value("kill" + std::to_string(i)), std::to_string(i)) << i << " of " << last;
  }
}

TEST_F(ServerTest, ReplaysWalOverStaleBackend) {
  StartServer();
  ASSERT_TRUE(Put("x", "1").ok());
  // A consistent copy of the backend as of now; later writes live only in
  // the WAL once the copy replaces the database.
  const std::string copy = dir_ + "/db.copy";
  int fd = ::open(copy.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(server_->SnapshotBackend(fd, EtcdServer::SnapshotFormat::kLmdb).ok());
  ::close(fd);
  ASSERT_TRUE(Put("y", "2").ok());
  auto last = Put("x", "3");
  ASSERT_TRUE(last.ok());
  server_->Stop();
  server_.reset();
  const std::string db = dir_ + "/data/member/snap/db";
  fs::copy_file(copy, db, fs::copy_options::overwrite_existing);

  StartServer();
  EXPECT_EQ(Value("x"), "3");
  EXPECT_EQ(Value("y"), "2");
  auto r = Get("x");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->header().revision(), last->header().revision());
}

TEST_F(ServerTest, SnapshotCountTriggersSnapshotAndRestartWorks) {
  ServerConfig c = Config();
  c.snapshot_count = 10;
  StartServer(c);
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(Put("s" + std::to_string(i), "v").ok());
  ASSERT_TRUE(PollUntil([&] {
    for (const auto& e : fs::directory_iterator(dir_ + "/data/member/snap")) {
      if (e.path().extension() == ".snap") return true;
    }
    return false;
  }));
  server_->Stop();
  server_.reset();
  StartServer(c);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(Value("s" + std::to_string(i)), "v");
  EXPECT_TRUE(Put("after", "1").ok());
}

TEST_F(ServerTest, LeaseExpiryDeletesKeys) {
  TestClock clock;
  ServerConfig c = Config();
  c.clock = &clock;
  StartServer(c);
  etcdserverpb::LeaseGrantRequest g;
  g.set_ttl(5);
  auto lg = Call<etcdserverpb::LeaseGrantResponse>([&](Done<etcdserverpb::LeaseGrantResponse> d) {
    server_->LeaseGrant(auth::kNoCredentials, g, std::move(d));
  });
  ASSERT_TRUE(lg.ok()) << lg.status();
  ASSERT_GT(lg->id(), 0);
  EXPECT_EQ(lg->ttl(), 5);
  ASSERT_TRUE(Put("leased", "v", lg->id()).ok());

  etcdserverpb::LeaseTimeToLiveRequest ttl_req;
  ttl_req.set_id(lg->id());
  ttl_req.set_keys(true);
  auto ttl = Call<etcdserverpb::LeaseTimeToLiveResponse>(
      [&](Done<etcdserverpb::LeaseTimeToLiveResponse> d) {
        server_->LeaseTimeToLive(ttl_req, std::move(d));
      });
  ASSERT_TRUE(ttl.ok());
  EXPECT_EQ(ttl->grantedttl(), 5);
  ASSERT_EQ(ttl->keys_size(), 1);
  EXPECT_EQ(ttl->keys(0), "leased");

  auto renewed = Call<int64_t>([&](Done<int64_t> d) { server_->LeaseRenew(lg->id(), std::move(d)); });
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_EQ(*renewed, 5);

  auto leases = Call<etcdserverpb::LeaseLeasesResponse>(
      [&](Done<etcdserverpb::LeaseLeasesResponse> d) { server_->LeaseLeases({}, std::move(d)); });
  ASSERT_TRUE(leases.ok());
  EXPECT_EQ(leases->leases_size(), 1);

  clock.Advance(10s);
  ASSERT_TRUE(PollUntil([&] { return Value("leased") == "<none>"; }));
  auto gone = Call<etcdserverpb::LeaseTimeToLiveResponse>(
      [&](Done<etcdserverpb::LeaseTimeToLiveResponse> d) {
        server_->LeaseTimeToLive(ttl_req, std::move(d));
      });
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(gone->ttl(), -1);
}

TEST_F(ServerTest, LeaseRevokeDeletesKeys) {
  StartServer();
  etcdserverpb::LeaseGrantRequest g;
  g.set_ttl(100);
  g.set_id(42);
  auto lg = Call<etcdserverpb::LeaseGrantResponse>([&](Done<etcdserverpb::LeaseGrantResponse> d) {
    server_->LeaseGrant(auth::kNoCredentials, g, std::move(d));
  });
  ASSERT_TRUE(lg.ok()) << lg.status();
  EXPECT_EQ(lg->id(), 42);
  ASSERT_TRUE(Put("k", "v", 42).ok());
  etcdserverpb::LeaseRevokeRequest rv;
  rv.set_id(42);
  auto r = Call<etcdserverpb::LeaseRevokeResponse>([&](Done<etcdserverpb::LeaseRevokeResponse> d) {
    server_->LeaseRevoke(auth::kNoCredentials, rv, std::move(d));
  });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Value("k"), "<none>");
  auto again =
      Call<etcdserverpb::LeaseRevokeResponse>([&](Done<etcdserverpb::LeaseRevokeResponse> d) {
        server_->LeaseRevoke(auth::kNoCredentials, rv, std::move(d));
      });
  EXPECT_TRUE(lease::IsLeaseNotFound(again.status())) << again.status();
}

TEST_F(ServerTest, CompactionPhysical) {
  StartServer();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Put("c", std::to_string(i)).ok());  // revs 2..6
  etcdserverpb::CompactionRequest cr;
  cr.set_revision(4);
  cr.set_physical(true);
  auto c = Call<etcdserverpb::CompactionResponse>([&](Done<etcdserverpb::CompactionResponse> d) {
    server_->Compact(auth::kNoCredentials, cr, std::move(d));
  });
  ASSERT_TRUE(c.ok()) << c.status();
  auto old = Get("c", false, 3);
  EXPECT_TRUE(mvcc::IsCompacted(old.status())) << old.status();
  auto at4 = Get("c", false, 4);
  ASSERT_TRUE(at4.ok()) << at4.status();
  EXPECT_EQ(at4->kvs(0).value(), "2");
  auto again =
      Call<etcdserverpb::CompactionResponse>([&](Done<etcdserverpb::CompactionResponse> d) {
        server_->Compact(auth::kNoCredentials, cr, std::move(d));
      });
  EXPECT_TRUE(mvcc::IsCompacted(again.status())) << again.status();
}

TEST_F(ServerTest, QuotaRaisesPersistentNoSpaceAlarm) {
  ServerConfig c = Config();
  c.quota_backend_bytes = 1;  // every write is over quota
  StartServer(c);
  auto p = Put("big", "value");
  EXPECT_TRUE(IsNoSpace(p.status())) << p.status();
  ASSERT_TRUE(PollUntil([&] {
    auto a = Alarms();
    return a.ok() && a->alarms_size() == 1;
  }));
  auto a = Alarms();
  EXPECT_EQ(a->alarms(0).alarm(), etcdserverpb::NOSPACE);
  EXPECT_EQ(a->alarms(0).memberid(), server_->MemberId());
  // Reads and deletes still work.
  EXPECT_TRUE(Get("big").ok());
  etcdserverpb::DeleteRangeRequest del;
  del.set_key("big");
  EXPECT_TRUE(Call<etcdserverpb::DeleteRangeResponse>([&](Done<etcdserverpb::DeleteRangeResponse> d) {
                server_->DeleteRange(auth::kNoCredentials, del, std::move(d));
              }).ok());
  // A txn that only deletes adds nothing (etcd's quota cost 0); one that puts
  // is refused.
  etcdserverpb::TxnRequest del_txn;
  del_txn.add_success()->mutable_request_delete_range()->set_key("big");
  EXPECT_TRUE(Call<etcdserverpb::TxnResponse>([&](Done<etcdserverpb::TxnResponse> d) {
                server_->Txn(auth::kNoCredentials, del_txn, std::move(d));
              }).ok());
  etcdserverpb::TxnRequest put_txn;
  put_txn.add_success()->mutable_request_put()->set_key("big");
  EXPECT_TRUE(IsNoSpace(Call<etcdserverpb::TxnResponse>([&](Done<etcdserverpb::TxnResponse> d) {
                          server_->Txn(auth::kNoCredentials, put_txn, std::move(d));
                        }).status()));
  auto st = Call<etcdserverpb::StatusResponse>(
      [&](Done<etcdserverpb::StatusResponse> d) { server_->Status({}, std::move(d)); });
  ASSERT_TRUE(st.ok());
  ASSERT_EQ(st->errors_size(), 1);
  EXPECT_NE(st->errors(0).find("alarm:NOSPACE"), std::string::npos);

  // The alarm survives a restart; with a normal quota, disarming it lets
  // writes through again.
  server_->Stop();
  server_.reset();
  c.quota_backend_bytes = 0;
  StartServer(c);
  a = Alarms();
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->alarms_size(), 1);
  EXPECT_TRUE(IsNoSpace(Put("big", "value").status()));
  etcdserverpb::AlarmRequest dis;
  dis.set_action(etcdserverpb::AlarmRequest::DEACTIVATE);
  dis.set_memberid(server_->MemberId());
  dis.set_alarm(etcdserverpb::NOSPACE);
  auto d = Call<etcdserverpb::AlarmResponse>([&](Done<etcdserverpb::AlarmResponse> done) {
    server_->Alarm(auth::kNoCredentials, dis, std::move(done));
  });
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->alarms_size(), 1);
  EXPECT_TRUE(Put("big", "value").ok());
}

TEST_F(ServerTest, AutoCompactionRevisionMode) {
  TestClock clock;
  ServerConfig c = Config();
  c.clock = &clock;
  c.auto_compaction_mode = "revision";
  c.auto_compaction_retention = "2";
  StartServer(c);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Put("ac", std::to_string(i)).ok());  // revs 2..6
  // A put is answered before its batch's commit publishes the revision that
  // the compactor samples: wait for it, or the compactor may take 5 (and
  // compact to 3, retrying only 5 minutes later).
  ASSERT_TRUE(PollUntil([&] { return server_->Store()->Rev() == 6; }));
  clock.Advance(std::chrono::minutes(6));
  EXPECT_TRUE(PollUntil([&] { return server_->Store()->CompactRev() == 4; }))
      << server_->Store()->CompactRev();
}

TEST_F(ServerTest, RequestTooLarge) {
  ServerConfig c = Config();
  c.max_request_bytes = 1024;
  StartServer(c);
  auto p = Put("k", std::string(2000, 'x'));
  EXPECT_TRUE(IsRequestTooLarge(p.status())) << p.status();
  EXPECT_TRUE(Put("k", "small").ok());
}

TEST_F(ServerTest, StoppedServerRejects) {
  StartServer();
  server_->Stop();
  EXPECT_TRUE(IsStopped(Put("k", "v").status()));
  EXPECT_TRUE(IsStopped(Get("k").status()));
}

TEST_F(ServerTest, ConcurrentWritersAndLinearizableReaders) {
  StartServer();
  constexpr int kThreads = 4, kPerThread = 25;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string k = "t" + std::to_string(t) + "-" + std::to_string(i);
        if (!Put(k, k).ok()) failures++;
        // Read-your-writes through ReadIndex.
        if (Value(k) != k) failures++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto r = Get("t", false, 0, "u");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->count(), kThreads * kPerThread);
  EXPECT_EQ(r->header().revision(), 1 + kThreads * kPerThread);
}


// Resource bound: proposal waiters. A flood of asynchronous puts, far more
// than max_pending_proposals, is answered "too many requests" past the
// bound; the server never holds more waiters than the bound, and serves a
// put and a get afterwards.
TEST_F(ServerTest, ProposalFloodIsBoundedByPendingProposals) {
  ServerConfig c = Config();
  c.max_pending_proposals = 32;
  StartServer(c);
  constexpr int kFlood = 4000;
  std::atomic<int> ok{0}, too_many{0}, other{0}, done{0};
  for (int i = 0; i < kFlood; ++i) {
    etcdserverpb::PutRequest req;
    req.set_key("flood/" + std::to_string(i));
    req.set_value(std::string(100, 'v'));
    server_->Put(auth::kNoCredentials, req, [&](absl::StatusOr<etcdserverpb::PutResponse> r) {
      if (r.ok()) {
        ok++;
      } else if (IsTooManyRequests(r.status())) {
        too_many++;
      } else {
        other++;
      }
      done++;
    });
  }
  ASSERT_TRUE(PollUntil([&] { return done.load() == kFlood; }, 30s)) << done.load();
  EXPECT_GT(too_many.load(), 0) << "the flood never reached the bound";
  EXPECT_GT(ok.load(), 0);
  EXPECT_EQ(other.load(), 0);
  EXPECT_LE(server_->Metrics().proposals_pending_peak.load(), 32);
  ASSERT_TRUE(Put("after", "flood").ok());
  EXPECT_EQ(Value("after"), "flood");
}

// Resource bound: bytes queued for the raft loop. Without a leader (the
// second member of the initial cluster never starts) proposals wait in the
// raft loop; past max_queued_proposal_bytes they are refused at once, and
// serializable reads are still served.
TEST_F(ServerTest, ProposalsWithoutLeaderAreBoundedByQueuedBytes) {
  ServerConfig c = Config();
  c.initial_cluster = {{"default", {"http://127.0.0.1:1"}}, {"absent", {"http://127.0.0.1:2"}}};
  c.initial_advertise_peer_urls = {"http://127.0.0.1:1"};
  c.max_queued_proposal_bytes = 1u << 20;
  c.request_timeout = 60s;
  auto created = EtcdServer::Create(std::move(c));
  ASSERT_TRUE(created.ok()) << created.status();
  server_ = std::move(*created);
  ASSERT_TRUE(server_->Start().ok());
  constexpr int kFlood = 64;  // 64 x 64 KiB = 4 MiB offered
  std::atomic<int> too_many{0}, done{0};
  for (int i = 0; i < kFlood; ++i) {
    etcdserverpb::PutRequest req;
    req.set_key("held/" + std::to_string(i));
    req.set_value(std::string(64 << 10, 'v'));
    server_->Put(auth::kNoCredentials, req, [&](absl::StatusOr<etcdserverpb::PutResponse> r) {
      if (IsTooManyRequests(r.status())) too_many++;
      done++;
    });
  }
  // Every proposal past 1 MiB is refused at once; the rest wait for a leader.
  ASSERT_TRUE(PollUntil([&] { return too_many.load() >= kFlood - 16; }, 10s)) << too_many.load();
  EXPECT_LE(server_->Metrics().proposals_queued_bytes.load(), uint64_t{1} << 20);
  EXPECT_FALSE(server_->Metrics().has_leader.load());
  auto r = Get("held/0", /*serializable=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->count(), 0);
  server_.reset();  // fails the held ones
  EXPECT_EQ(done.load(), kFlood);
}

// Resource bound: linearizable reads waiting for a ReadIndex round. Without
// a leader none completes; past max_pending_reads (plus the batch the read
// loop holds) they are refused at once, and serializable reads are served.
TEST_F(ServerTest, LinearizableReadsWithoutLeaderAreBounded) {
  ServerConfig c = Config();
  c.initial_cluster = {{"default", {"http://127.0.0.1:1"}}, {"absent", {"http://127.0.0.1:2"}}};
  c.initial_advertise_peer_urls = {"http://127.0.0.1:1"};
  c.max_pending_reads = 8;
  c.request_timeout = 60s;
  auto created = EtcdServer::Create(std::move(c));
  ASSERT_TRUE(created.ok()) << created.status();
  server_ = std::move(*created);
  ASSERT_TRUE(server_->Start().ok());
  constexpr int kFlood = 200;
  std::atomic<int> too_many{0}, done{0};
  for (int i = 0; i < kFlood; ++i) {
    etcdserverpb::RangeRequest req;
    req.set_key("k");
    server_->Range(auth::kNoCredentials, req, [&](absl::StatusOr<etcdserverpb::RangeResponse> r) {
      if (IsTooManyRequests(r.status())) too_many++;
      done++;
    });
  }
  // At most 8 wait in the queue and 8 in the round the read loop holds.
  ASSERT_TRUE(PollUntil([&] { return too_many.load() >= kFlood - 16; }, 10s)) << too_many.load();
  auto r = Get("k", /*serializable=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  server_.reset();  // fails the waiting ones
  EXPECT_EQ(done.load(), kFlood);
}

// Every timer of the server on one manual clock (ServerConfig::clock and
// timer_clock both, as a simulation runs it). Raft ticks only when the clock
// moves: real time passing elects no leader. Then a lease expires once the
// clock passes its TTL and not before, with no real wait for the TTL.
TEST_F(ServerTest, ServerOnOneManualClockRunsOnlyAsTheClockMoves) {
  TestClock clock;
  // The server's threads wait on the clock: the server goes first, on
  // every way out of the test.
  absl::Cleanup stop_server = [this] { server_.reset(); };
  ServerConfig c = Config();
  c.clock = &clock;
  c.timer_clock = &clock;
  auto created = EtcdServer::Create(std::move(c));
  ASSERT_TRUE(created.ok()) << created.status();
  server_ = std::move(*created);
  ASSERT_TRUE(server_->Start().ok());
  // 20 heartbeat intervals of real time, the clock still: no election (a
  // lone voter fast-forwards to one tick short of its election timeout).
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(server_->Metrics().has_leader.load());
  EXPECT_FALSE(server_->IsReady());
  // A heartbeat interval per step (bounded) until it leads and has published.
  for (int i = 0; i < 2000 && !server_->IsReady(); ++i) {
    clock.Advance(10ms);
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_TRUE(server_->IsReady());
  ASSERT_TRUE(server_->Metrics().has_leader.load());

  etcdserverpb::LeaseGrantRequest g;
  g.set_ttl(5);
  auto lg = Call<etcdserverpb::LeaseGrantResponse>([&](Done<etcdserverpb::LeaseGrantResponse> d) {
    server_->LeaseGrant(auth::kNoCredentials, g, std::move(d));
  });
  ASSERT_TRUE(lg.ok()) << lg.status();
  const auto granted = clock.Now();
  ASSERT_TRUE(Put("leased", "v", lg->id()).ok());
  // 4.5 s of the clock in steps: the lease holds.
  for (int i = 0; i < 45; ++i) {
    clock.Advance(100ms);
    std::this_thread::sleep_for(1ms);
  }
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(Value("leased"), "v");
  // On past the TTL: revoked (the expiry check runs every 500 ms of clock).
  for (int i = 0; i < 600 && Value("leased") != "<none>"; ++i) {
    clock.Advance(100ms);
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(Value("leased"), "<none>");
  EXPECT_GE(clock.Now() - granted, 5s);
}

// A request's deadline runs on the timer clock: a forwarded keep-alive with
// no leader (the second member never starts) retries until request_timeout
// (an hour here) has passed on the clock, then fails with a timeout; no real
// hour goes by.
TEST_F(ServerTest, ForwardedRequestTimesOutOnTheTimerClock) {
  TestClock clock;
  ServerConfig c = Config();
  c.initial_cluster = {{"default", {"http://127.0.0.1:1"}}, {"absent", {"http://127.0.0.1:2"}}};
  c.initial_advertise_peer_urls = {"http://127.0.0.1:1"};
  c.request_timeout = std::chrono::hours(1);
  absl::Cleanup stop_server = [this] { server_.reset(); };
  c.clock = &clock;
  c.timer_clock = &clock;
  auto created = EtcdServer::Create(std::move(c));
  ASSERT_TRUE(created.ok()) << created.status();
  server_ = std::move(*created);
  ASSERT_TRUE(server_->Start().ok());

  auto result = std::make_shared<std::promise<absl::StatusOr<int64_t>>>();
  auto f = result->get_future();
  const auto sent = clock.Now();
  server_->LeaseRenew(42, [result](absl::StatusOr<int64_t> r) { result->set_value(std::move(r)); });
  // 59 minutes of the clock in steps: still retrying.
  for (int i = 0; i < 59; ++i) {
    clock.Advance(std::chrono::minutes(1));
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(f.wait_for(50ms), std::future_status::timeout);
  // On past the hour: the timeout.
  for (int i = 0; i < 200 && f.wait_for(1ms) != std::future_status::ready; ++i) {
    clock.Advance(10s);
  }
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  auto r = f.get();
  EXPECT_TRUE(IsTimeout(r.status())) << r.status();
  EXPECT_GE(clock.Now() - sent, std::chrono::hours(1) - 100ms);
  EXPECT_FALSE(server_->Metrics().has_leader.load());
}

}  // namespace
}  // namespace cppetcd::server
