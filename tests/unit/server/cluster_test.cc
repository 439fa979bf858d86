// Clusters of real EtcdServer members in one process, connected by the
// in-memory transport (mem_transport.h): elections, replication, leader
// stop and crash, partitions, membership changes, snapshots to a new
// member, leadership transfer and lease calls routed to the leader.
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

#include "absl/strings/str_cat.h"
#include "cppetcd/auth/credentials.h"
#include "cppetcd/auth/errors.h"
#include "cppetcd/auth/store.h"
#include "cppetcd/lease/lessor.h"
#include "cppetcd/server/errors.h"
#include "cppetcd/server/etcd_server.h"
#include "cppetcd/util/clock.h"
#include "cppetcd/util/fault_injection_env.h"
#include "cppetcd/util/log.h"
#include "tests/unit/server/server_test_util.h"
#include "mem_transport.h"

namespace cppetcd::server {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using testing::MemHub;
using testing::MemTransport;


// Generous bounds: the suite also runs under TSan, several times slower.
constexpr auto kCallTimeout = 20s;
constexpr auto kConverge = 20s;

template <class Resp>
absl::StatusOr<Resp> Call(const std::function<void(Done<Resp>)>& fn) {
  return test_util::Call<Resp>(fn, kCallTimeout);
}

bool PollUntil(const std::function<bool()>& cond, std::chrono::milliseconds timeout = kConverge) {
  return test_util::PollUntil(cond, timeout);
}

struct Member {
  std::string name;
  std::string url;
  std::string dir;
  util::CapturedLog log = util::NewCapturedLog();
  std::shared_ptr<MemTransport> transport;
  std::unique_ptr<EtcdServer> server;
};

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cppetcd_cluster_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    hub_ = std::make_unique<MemHub>();
  }

  void TearDown() override {
    if (HasFailure()) DumpLogs();
    // Followers first, so the leader does not hand leadership around.
    for (auto& m : members_) {
      if (m->server != nullptr && !m->server->Metrics().is_leader.load()) m->server.reset();
    }
    for (auto& m : members_) m->server.reset();
    members_.clear();
    hub_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  void DumpLogs() {
    for (auto& m : members_) {
      auto lines = m->log.Lines();
      const size_t from = lines.size() > 60 ? lines.size() - 60 : 0;
      fprintf(stderr, "---- log of %s (last %zu of %zu lines)\n", m->name.c_str(),
              lines.size() - from, lines.size());
      for (size_t i = from; i < lines.size(); ++i) {
        fprintf(stderr, "[%s] %s\n", m->name.c_str(), lines[i].c_str());
      }
    }
  }

  static bool Logged(Member* m, std::string_view text) {
    for (const auto& line : m->log.Lines()) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  }

  static std::string UrlOf(const std::string& name) { return absl::StrCat("http://", name, ":2380"); }

  Member* NewMember(const std::string& name) {
    auto m = std::make_unique<Member>();
    m->name = name;
    m->url = UrlOf(name);
    m->dir = root_ + "/" + name;
    members_.push_back(std::move(m));
    return members_.back().get();
  }

  ServerConfig Config(Member* m, const std::vector<std::string>& cluster_names) {
    ServerConfig c;
    c.name = m->name;
    c.data_dir = m->dir;
    for (const auto& n : cluster_names) c.initial_cluster[n] = {UrlOf(n)};
    c.heartbeat_interval = 10ms;
    c.election_timeout = 150ms;
    c.request_timeout = 3s;
    c.advertise_client_urls = {absl::StrCat("http://", m->name, ":2379")};
    c.logger = util::Logger("etcdserver", m->log.sink);
    return c;
  }

  // Creates and starts the member's server on a fresh transport.
  absl::Status StartMember(Member* m, ServerConfig c) {
    m->transport = hub_->NewTransport(m->url);
    c.transport = m->transport;
    auto s = EtcdServer::Create(std::move(c));
    if (!s.ok()) return s.status();
    m->server = std::move(*s);
    return m->server->Start();
  }

  // Starts members m0..m{n-1} as a new cluster and waits until each has
  // published itself (which needs a leader).
  void StartCluster(int n, const std::function<void(ServerConfig&)>& tweak = {}) {
    std::vector<std::string> names;
    for (int i = 0; i < n; ++i) names.push_back(absl::StrCat("m", i));
    for (const auto& name : names) {
      Member* m = NewMember(name);
      ServerConfig c = Config(m, names);
      if (tweak) tweak(c);
      ASSERT_TRUE(StartMember(m, std::move(c)).ok()) << name;
    }
    for (auto& m : members_) ASSERT_TRUE(m->server->WaitReady(kConverge)) << m->name;
  }

  Member* ByName(const std::string& name) {
    for (auto& m : members_) {
      if (m->name == name) return m.get();
    }
    return nullptr;
  }

  std::vector<Member*> Running() {
    std::vector<Member*> out;
    for (auto& m : members_) {
      if (m->server != nullptr) out.push_back(m.get());
    }
    return out;
  }

  uint64_t LeaderSeenBy(Member* m) {
    auto st = Call<etcdserverpb::StatusResponse>([&](Done<etcdserverpb::StatusResponse> d) {
      m->server->Status(etcdserverpb::StatusRequest(), std::move(d));
    });
    return st.ok() ? st->leader() : 0;
  }

  // Waits until every member of `among` sees the same leader, one of them.
  Member* WaitLeader(std::vector<Member*> among = {}) {
    if (among.empty()) among = Running();
    Member* leader = nullptr;
    PollUntil([&] {
      leader = nullptr;
      uint64_t id = 0;
      for (Member* m : among) {
        const uint64_t l = LeaderSeenBy(m);
        if (l == 0 || (id != 0 && l != id)) return false;
        id = l;
      }
      for (Member* m : among) {
        if (m->server->MemberId() == id && m->server->Metrics().is_leader.load()) leader = m;
      }
      return leader != nullptr;
    });
    return leader;
  }

  Member* SomeFollower(Member* leader, std::vector<Member*> among = {}) {
    if (among.empty()) among = Running();
    for (Member* m : among) {
      if (m != leader) return m;
    }
    return nullptr;
  }

  absl::StatusOr<etcdserverpb::PutResponse> Put(
      Member* m, const std::string& k, const std::string& v, int64_t lease = 0,
      const auth::Credentials& caller = auth::kNoCredentials) {
    etcdserverpb::PutRequest req;
    req.set_key(k);
    req.set_value(v);
    req.set_lease(lease);
    return Call<etcdserverpb::PutResponse>(
        [&](Done<etcdserverpb::PutResponse> d) { m->server->Put(caller, req, std::move(d)); });
  }

  absl::StatusOr<etcdserverpb::RangeResponse> Get(
      Member* m, const std::string& k, bool serializable = false, const std::string& end = "",
      const auth::Credentials& caller = auth::kNoCredentials) {
    etcdserverpb::RangeRequest req;
    req.set_key(k);
    req.set_range_end(end);
    req.set_serializable(serializable);
    return Call<etcdserverpb::RangeResponse>(
        [&](Done<etcdserverpb::RangeResponse> d) { m->server->Range(caller, req, std::move(d)); });
  }

  // The value of `k` read on `m` ("<none>" if absent, "<error: ...>" on errors).
  std::string Value(Member* m, const std::string& k, bool serializable = false,
                    const auth::Credentials& caller = auth::kNoCredentials) {
    auto r = Get(m, k, serializable, "", caller);
    if (!r.ok()) return absl::StrCat("<error: ", r.status().ToString(), ">");
    if (r->kvs_size() != 1) return "<none>";
    return r->kvs(0).value();
  }

  // Number of keys under "key/" seen by a serializable read on `m`.
  int64_t CountKeys(Member* m) {
    etcdserverpb::RangeRequest req;
    req.set_key("key/");
    req.set_range_end("key0");
    req.set_serializable(true);
    req.set_count_only(true);
    auto r = Call<etcdserverpb::RangeResponse>([&](Done<etcdserverpb::RangeResponse> d) {
      m->server->Range(auth::kNoCredentials, req, std::move(d));
    });
    return r.ok() ? r->count() : -1;
  }

  absl::StatusOr<etcdserverpb::MemberAddResponse> MemberAdd(Member* via, const std::string& url,
                                                            bool learner = false) {
    etcdserverpb::MemberAddRequest req;
    req.add_peerurls(url);
    req.set_islearner(learner);
    return Call<etcdserverpb::MemberAddResponse>([&](Done<etcdserverpb::MemberAddResponse> d) {
      via->server->MemberAdd(auth::kNoCredentials, req, std::move(d));
    });
  }

  absl::StatusOr<etcdserverpb::MemberRemoveResponse> MemberRemove(Member* via, uint64_t id) {
    etcdserverpb::MemberRemoveRequest req;
    req.set_id(id);
    return Call<etcdserverpb::MemberRemoveResponse>(
        [&](Done<etcdserverpb::MemberRemoveResponse> d) {
          via->server->MemberRemove(auth::kNoCredentials, req, std::move(d));
        });
  }

  absl::StatusOr<etcdserverpb::MemberListResponse> MemberList(Member* via) {
    return Call<etcdserverpb::MemberListResponse>(
        [&](Done<etcdserverpb::MemberListResponse> d) {
          via->server->MemberList(etcdserverpb::MemberListRequest(), std::move(d));
        });
  }

  absl::StatusOr<etcdserverpb::MoveLeaderResponse> MoveLeader(Member* via, uint64_t target) {
    etcdserverpb::MoveLeaderRequest req;
    req.set_targetid(target);
    return Call<etcdserverpb::MoveLeaderResponse>(
        [&](Done<etcdserverpb::MoveLeaderResponse> d) {
          via->server->MoveLeader(req, std::move(d));
        });
  }

  // Starts `name` as a member joining the running cluster (after MemberAdd
  // of its URL): --initial-cluster lists the members plus itself,
  // --initial-cluster-state=existing.
  Member* StartJoiner(const std::string& name, const std::function<void(ServerConfig&)>& tweak = {}) {
    std::vector<std::string> names;
    for (Member* m : Running()) names.push_back(m->name);
    names.push_back(name);
    // The joiner takes the cluster from whichever member answers first:
    // every member must have applied the addition (etcd has the same race).
    for (Member* m : Running()) {
      EXPECT_TRUE(PollUntil([&] {
        auto ml = MemberList(m);
        if (!ml.ok()) return false;
        for (const auto& x : ml->members()) {
          for (const auto& u : x.peerurls()) {
            if (u == UrlOf(name)) return true;
          }
        }
        return false;
      })) << m->name << " does not list " << name;
    }
    Member* j = NewMember(name);
    ServerConfig c = Config(j, names);
    c.initial_cluster_state = ServerConfig::ClusterState::kExisting;
    if (tweak) tweak(c);
    absl::Status s = StartMember(j, std::move(c));
    EXPECT_TRUE(s.ok()) << s;
    return s.ok() ? j : nullptr;
  }

  std::string root_;
  std::unique_ptr<MemHub> hub_;
  std::vector<std::unique_ptr<Member>> members_;
};

// ---------------------------------------------------------------------------

TEST_F(ClusterTest, ElectsOneLeaderAndReplicatesThroughFollower) {
  StartCluster(3);
  Member* leader = WaitLeader();
  ASSERT_NE(leader, nullptr);
  int leaders = 0;
  for (Member* m : Running()) leaders += m->server->Metrics().is_leader.load() ? 1 : 0;
  EXPECT_EQ(leaders, 1);
  // Every member shares the cluster ID and lists the three members.
  for (Member* m : Running()) {
    EXPECT_EQ(m->server->ClusterId(), leader->server->ClusterId());
    auto ml = MemberList(m);
    ASSERT_TRUE(ml.ok()) << ml.status();
    EXPECT_EQ(ml->members_size(), 3);
  }

  Member* follower = SomeFollower(leader);
  auto p = Put(follower, "foo", "bar");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->header().member_id(), follower->server->MemberId());
  for (Member* m : Running()) {
    auto r = Get(m, "foo");
    ASSERT_TRUE(r.ok()) << m->name << ": " << r.status();
    ASSERT_EQ(r->kvs_size(), 1) << m->name;
    EXPECT_EQ(r->kvs(0).value(), "bar");
    EXPECT_EQ(r->header().revision(), p->header().revision()) << m->name;
  }
  EXPECT_GT(hub_->Delivered(), 0u);
}

TEST_F(ClusterTest, GracefulLeaderStopHandsOverLeadership) {
  StartCluster(3);
  Member* leader = WaitLeader();
  ASSERT_NE(leader, nullptr);
  ASSERT_TRUE(Put(leader, "before", "1").ok());
  const uint64_t old_id = leader->server->MemberId();
  leader->server->Stop();

  std::vector<Member*> rest;
  for (Member* m : Running()) {
    if (m != leader) rest.push_back(m);
  }
  Member* next = WaitLeader(rest);
  ASSERT_NE(next, nullptr);
  EXPECT_NE(next->server->MemberId(), old_id);
  // Handed over before stopping, not left to an election.
  EXPECT_TRUE(Logged(leader, "leadership transfer finished"));
  for (Member* m : rest) {
    auto p = Put(m, absl::StrCat("after/", m->name), "2");
    ASSERT_TRUE(p.ok()) << m->name << ": " << p.status();
  }
  for (Member* m : rest) {
    EXPECT_EQ(Value(m, "before"), "1");
    for (Member* w : rest) EXPECT_EQ(Value(m, absl::StrCat("after/", w->name)), "2");
  }
  // The stopped member answers ErrStopped.
  auto r = Get(leader, "before");
  EXPECT_TRUE(IsStopped(r.status())) << r.status();
}

TEST_F(ClusterTest, LeaderCrashKeepsAcknowledgedWritesAndRestartCatchesUp) {
  StartCluster(3);
  Member* leader = WaitLeader();
  ASSERT_NE(leader, nullptr);
  constexpr int kKeys = 10;
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(Put(SomeFollower(leader), absl::StrCat("key/", i), "v").ok());
  }
  const uint64_t old_id = leader->server->MemberId();
  leader->server->CrashForTesting();
  leader->server.reset();

  Member* next = WaitLeader();
  ASSERT_NE(next, nullptr);
  EXPECT_NE(next->server->MemberId(), old_id);
  for (Member* m : Running()) {
    for (int i = 0; i < kKeys; ++i) EXPECT_EQ(Value(m, absl::StrCat("key/", i)), "v") << m->name;
  }
  ASSERT_TRUE(Put(next, "key/after-crash", "w").ok());

  // The crashed member restarts from its data dir and catches up.
  std::vector<std::string> names = {"m0", "m1", "m2"};
  ASSERT_TRUE(StartMember(leader, Config(leader, names)).ok());
  EXPECT_EQ(leader->server->MemberId(), old_id);
  ASSERT_TRUE(leader->server->WaitReady(kConverge));
  EXPECT_TRUE(PollUntil([&] { return Value(leader, "key/after-crash", true) == "w"; }));
  EXPECT_EQ(Value(leader, "key/after-crash"), "w");
  EXPECT_EQ(CountKeys(leader), kKeys + 1);
}

TEST_F(ClusterTest, PartitionedMemberCannotReadLinearizablyAndCatchesUpAfterHeal) {
  StartCluster(3, [](ServerConfig& c) { c.request_timeout = 1500ms; });
  Member* leader = WaitLeader();
  ASSERT_NE(leader, nullptr);
  Member* lonely = SomeFollower(leader);
  std::vector<Member*> majority;
  for (Member* m : Running()) {
    if (m != lonely) majority.push_back(m);
  }
  ASSERT_TRUE(Put(leader, "k", "1").ok());
  EXPECT_TRUE(PollUntil([&] { return Value(lonely, "k", true) == "1"; }));

  hub_->Isolate(lonely->url);
  EXPECT_FALSE(hub_->Connected(lonely->url, leader->url));
  // The majority keeps writing (it may re-elect meanwhile).
  for (int i = 0; i < 5; ++i) {
    auto p = Put(majority[i % 2], "k", absl::StrCat("v", i));
    ASSERT_TRUE(p.ok()) << p.status();
  }
  auto r = Get(lonely, "k");
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(IsTimeout(r.status()) || IsNoLeader(r.status())) << r.status();
  EXPECT_EQ(Value(lonely, "k", /*serializable=*/true), "1");  // stale but served

  hub_->Heal();
  EXPECT_TRUE(PollUntil([&] { return Value(lonely, "k", true) == "v4"; }));
  EXPECT_EQ(Value(lonely, "k"), "v4");
  ASSERT_NE(WaitLeader(), nullptr);
}

TEST_F(ClusterTest, MemberAddJoinRemove) {
  StartCluster(3);
  Member* leader = WaitLeader();
  ASSERT_NE(leader, nullptr);
  Member* follower = SomeFollower(leader);
  ASSERT_TRUE(Put(leader, "key/a", "1").ok());

  // Strict reconfiguration check: a voter the member cannot reach makes
  // the cluster unhealthy for a change.
  Member* other = nullptr;
  for (Member* m : Running()) {
    if (m != leader && m != follower) other = m;
  }
  hub_->Partition({follower->url}, {other->url});
  auto bad = MemberAdd(follower, UrlOf("m3"));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kUnavailable) << bad.status();
  EXPECT_EQ(bad.status().message(), ErrUnhealthy().message());
  hub_->Heal();
  ASSERT_NE(WaitLeader(), nullptr);

  auto add = MemberAdd(follower, UrlOf("m3"));
  ASSERT_TRUE(add.ok()) << add.status();
  const uint64_t new_id = add->member().id();
  EXPECT_EQ(add->members_size(), 4);
  EXPECT_TRUE(add->member().name().empty());
  // The same URL again: refused at once where the first add is applied,
  // else (the same ID within the same second) when applied, as etcd does.
  auto dup = MemberAdd(follower, UrlOf("m3"));
  EXPECT_EQ(dup.status().message(), ErrPeerUrlExists().message()) << dup.status();
  dup = MemberAdd(leader, UrlOf("m3"));
  EXPECT_TRUE(dup.status().message() == ErrPeerUrlExists().message() ||
              dup.status().message() == ErrIdExists().message())
      << dup.status();

  Member* joiner = StartJoiner("m3");
  ASSERT_NE(joiner, nullptr);
  EXPECT_EQ(joiner->server->MemberId(), new_id);
  EXPECT_EQ(joiner->server->ClusterId(), leader->server->ClusterId());
  ASSERT_TRUE(joiner->server->WaitReady(kConverge));
  EXPECT_TRUE(PollUntil([&] { return Value(joiner, "key/a", true) == "1"; }));
  ASSERT_TRUE(Put(joiner, "key/b", "2").ok());
  EXPECT_EQ(Value(leader, "key/b"), "2");
  // Published: every member knows the joiner's name.
  EXPECT_TRUE(PollUntil([&] {
    auto ml = MemberList(leader);
    if (!ml.ok()) return false;
    for (const auto& m : ml->members()) {
      if (m.id() == new_id) return m.name() == "m3";
    }
    return false;
  }));

  auto rm = MemberRemove(leader, new_id);
  ASSERT_TRUE(rm.ok()) << rm.status();
  EXPECT_EQ(rm->members_size(), 3);
  EXPECT_TRUE(PollUntil([&] { return joiner->server->StopRequested(); }));
  joiner->server->Stop();
  // Its raft traffic is refused from now on, and it cannot be removed twice.
  raftpb::Message hb;
  hb.set_type(raftpb::MsgHeartbeatResp);
  hb.set_from(new_id);
  hb.set_to(leader->server->MemberId());
  hb.set_term(1);
  EXPECT_TRUE(IsMemberRemoved(hub_->ProcessAt(leader->url, hb)));
  auto again = MemberRemove(leader, new_id);
  EXPECT_EQ(again.status().message(), ErrIdRemoved().message()) << again.status();

  // The three remaining members still work.
  for (Member* m : {leader, follower, other}) {
    ASSERT_TRUE(Put(m, absl::StrCat("key/after/", m->name), "x").ok()) << m->name;
  }
}

// Peer URLs are any bytes on the wire (etcd's Go strings). As etcd's
// url.Parse and URL.String: a byte above ASCII is kept percent-escaped (so
// a member record is always ASCII), a control character is refused.
TEST_F(ClusterTest, PeerUrlBytesAboveAsciiAreEscapedAsEtcdDoes) {
  StartCluster(1);
  Member* leader = WaitLeader();
  ASSERT_NE(leader, nullptr);
  auto ctl = MemberAdd(leader, "http://h\x01:1", /*learner=*/true);
  EXPECT_EQ(ctl.status().message(), ErrInvalidPeerUrls().message()) << ctl.status();
  auto add = MemberAdd(leader, "http://\xff\xc3\xa9:1", /*learner=*/true);
  ASSERT_TRUE(add.ok()) << add.status();
  ASSERT_EQ(add->member().peerurls_size(), 1);
  EXPECT_EQ(add->member().peerurls(0), "http://%FF%C3%A9:1");
  auto dup = MemberAdd(leader, "http://%FF%C3%A9:1", /*learner=*/true);
  EXPECT_EQ(dup.status().message(), ErrPeerUrlExists().message()) << dup.status();
  auto ml = MemberList(leader);
  ASSERT_TRUE(ml.ok()) << ml.status();
  EXPECT_EQ(ml->members_size(), 2);
}

TEST_F(ClusterTest, StrictReconfigCheckNeedsLongConnectedPeers) {
  // Links count as connected only from when they came up: all are younger
  // than etcd's 5 s health interval here.
  MemHub::Options opts;
  opts.active_since_age = 0ms;
  hub_ = std::make_unique<MemHub>(opts);
  StartCluster(3);
  Member* leader = WaitLeader();
  ASSERT_NE(leader, nullptr);
  Member* follower = SomeFollower(leader);

  auto add = MemberAdd(leader, UrlOf("m3"));
  EXPECT_EQ(add.status().message(), ErrUnhealthy().message()) << add.status();
  auto rm = MemberRemove(leader, follower->server->MemberId());
  EXPECT_EQ(rm.status().message(), ErrUnhealthy().message()) << rm.status();
  // Learners too (etcd mayAddMember checks connectivity for any member).
  auto learner = MemberAdd(leader, UrlOf("m3"), /*learner=*/true);
  EXPECT_EQ(learner.status().message(), ErrUnhealthy().message()) << learner.status();

  // A member that is down may be removed.
  hub_->SetDown(follower->url, true);
  EXPECT_FALSE(leader->transport->ActiveSince(follower->server->MemberId()).has_value());
  rm = MemberRemove(leader, follower->server->MemberId());
  ASSERT_TRUE(rm.ok()) << rm.status();
  EXPECT_EQ(rm->members_size(), 2);
  hub_->SetDown(follower->url, false);
  EXPECT_TRUE(PollUntil([&] { return follower->server->StopRequested(); }));
}

// The leader's copy of the backend for a snapshot goes through its Env: a
// copy that cannot be created is reported to raft as a failed snapshot,
// the file is not left behind, and a later attempt brings the member up to
// date.
TEST_F(ClusterTest, SnapshotCopyFailureOnTheLeaderIsRetried) {
  static util::FaultInjectionEnv env(util::Env::Default());  // outlives the members
  auto tweak = [](ServerConfig& c) {
    c.snapshot_count = 20;
    c.snapshot_catchup_entries = 5;
    c.env = &env;
  };
  StartCluster(3, tweak);
  Member* leader = WaitLeader();
  ASSERT_NE(leader, nullptr);
  constexpr int kKeys = 60;
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(Put(leader, absl::StrCat("key/", i), "v").ok()) << i;
  }
  Member* follower = SomeFollower(leader);
  auto add = MemberAdd(follower, UrlOf("m3"), /*learner=*/true);
  ASSERT_TRUE(add.ok()) << add.status();
  env.FailCalls(util::FaultInjectionEnv::Call::kOpen, 2, EIO, ".snap.db.send");
  Member* learner = StartJoiner("m3", tweak);
  ASSERT_NE(learner, nullptr);
  EXPECT_TRUE(PollUntil([&] { return CountKeys(learner) == kKeys; })) << CountKeys(learner);
  bool failed_logged = false;
  for (auto& m : members_) failed_logged |= Logged(m.get(), "failed to create snapshot file to send");
  EXPECT_TRUE(failed_logged);
  // No copy is left behind (the transport removes a sent one once done).
  EXPECT_TRUE(PollUntil([&] {
    for (auto& m : members_) {
      std::error_code ec;
      for (const auto& f : std::filesystem::directory_iterator(m->dir + "/member/snap", ec)) {
        if (f.path().string().find(".snap.db.send") != std::string::npos) return false;
      }
    }
    return true;
  }));
}

TEST_F(ClusterTest, LearnerCatchesUpThroughSnapshotAndIsPromoted) {
  auto small_log = [](ServerConfig& c) {
    c.snapshot_count = 20;
    c.snapshot_catchup_entries = 5;
  };
  StartCluster(3, small_log);
  Member* leader = WaitLeader();
  ASSERT_NE(leader, nullptr);
  // Writes in flight together, so that this stays quick under TSan.
  constexpr int kKeys = 100;
  std::vector<std::future<absl::StatusOr<etcdserverpb::PutResponse>>> puts;
  for (int i = 0; i < kKeys; ++i) {
    auto p = std::make_shared<std::promise<absl::StatusOr<etcdserverpb::PutResponse>>>();
    puts.push_back(p->get_future());
    etcdserverpb::PutRequest req;
    req.set_key(absl::StrCat("key/", i));
    req.set_value(std::string(100, 'v'));
    Running()[i % 3]->server->Put(
        auth::kNoCredentials, req,
        [p](absl::StatusOr<etcdserverpb::PutResponse> r) { p->set_value(std::move(r)); });
  }
  for (auto& f : puts) {
    ASSERT_EQ(f.wait_for(kCallTimeout), std::future_status::ready);
    auto r = f.get();
    ASSERT_TRUE(r.ok()) << r.status();
  }

  Member* follower = SomeFollower(leader);
  auto add = MemberAdd(follower, UrlOf("m3"), /*learner=*/true);
  ASSERT_TRUE(add.ok()) << add.status();
  const uint64_t learner_id = add->member().id();
  EXPECT_TRUE(add->member().islearner());
  // One learner at a time (asked where the first one is applied already).
  auto second = MemberAdd(follower, UrlOf("m4"), /*learner=*/true);
  EXPECT_EQ(second.status().message(), ErrTooManyLearners().message()) << second.status();

  const uint64_t snaps_before = hub_->SnapshotsDelivered();
  Member* learner = StartJoiner("m3", small_log);
  ASSERT_NE(learner, nullptr);
  EXPECT_TRUE(PollUntil([&] { return CountKeys(learner) == kKeys; })) << CountKeys(learner);
  EXPECT_GT(hub_->SnapshotsDelivered(), snaps_before);
  // (Logged right after the data became visible.)
  EXPECT_TRUE(PollUntil([&] { return Logged(learner, "applied snapshot"); }));
  EXPECT_EQ(Value(learner, "key/42", true), std::string(100, 'v'));
  ASSERT_TRUE(learner->server->WaitReady(kConverge));

  // Promotion through a follower is decided by the leader; retried while
  // the learner is not yet in sync.
  etcdserverpb::MemberPromoteRequest preq;
  preq.set_id(learner_id);
  absl::StatusOr<etcdserverpb::MemberPromoteResponse> promoted;
  EXPECT_TRUE(PollUntil([&] {
    promoted = Call<etcdserverpb::MemberPromoteResponse>(
        [&](Done<etcdserverpb::MemberPromoteResponse> d) {
          follower->server->MemberPromote(auth::kNoCredentials, preq, std::move(d));
        });
    return promoted.ok() || promoted.status().message() != ErrLearnerNotReady().message();
  }));
  ASSERT_TRUE(promoted.ok()) << promoted.status();
  for (const auto& m : promoted->members()) EXPECT_FALSE(m.islearner()) << m.name();
  EXPECT_EQ(promoted->members_size(), 4);
  // A voter now, once it applied its promotion: it takes part in commits
  // and serves writes and linearizable reads.
  EXPECT_TRUE(PollUntil([&] {
    auto ml = MemberList(learner);
    if (!ml.ok()) return false;
    for (const auto& m : ml->members()) {
      if (m.id() == learner_id) return !m.islearner();
    }
    return false;
  }));
  auto put = Put(learner, "key/from-learner", "y");
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(Value(leader, "key/from-learner"), "y");
  EXPECT_EQ(Value(learner, "key/0"), std::string(100, 'v'));
}

// etcd checks the learner limit again when the conf change is applied
// (membership.ValidateConfigurationChange): a second learner proposed
// through a member that has not applied the first one yet must still fail.
TEST_F(ClusterTest, SecondLearnerRefusedEvenWhereFirstIsNotAppliedYet) {
  StartCluster(3);
  Member* leader = WaitLeader();
  ASSERT_NE(leader, nullptr);
  Member* follower = SomeFollower(leader);
  using AddResult = absl::StatusOr<etcdserverpb::MemberAddResponse>;
  auto first = std::make_shared<std::promise<AddResult>>();
  auto second = std::make_shared<std::promise<AddResult>>();
  auto first_f = first->get_future();
  auto second_f = second->get_future();
  etcdserverpb::MemberAddRequest req;
  req.add_peerurls(UrlOf("l0"));
  req.set_islearner(true);
  etcdserverpb::MemberAddRequest req2 = req;
  req2.set_peerurls(0, UrlOf("l1"));
  // The second add starts at the leader the moment the first is answered
  // by the follower (where it is applied; on the leader maybe not yet).
  EtcdServer* lead = leader->server.get();
  follower->server->MemberAdd(auth::kNoCredentials, req, [=](AddResult r) {
    first->set_value(std::move(r));
    lead->MemberAdd(auth::kNoCredentials, req2,
                    [second](AddResult r2) { second->set_value(std::move(r2)); });
  });
  ASSERT_EQ(first_f.wait_for(kCallTimeout), std::future_status::ready);
  AddResult r1 = first_f.get();
  ASSERT_TRUE(r1.ok()) << r1.status();
  ASSERT_EQ(second_f.wait_for(kCallTimeout), std::future_status::ready);
  AddResult r2 = second_f.get();
  // ErrTooManyLearners, or (as etcd) a timeout when raft dropped the second
  // conf change because the first was still pending.
  EXPECT_FALSE(r2.ok()) << "a second learner was added";
  if (!r2.ok()) {
    EXPECT_TRUE(r2.status().message() == ErrTooManyLearners().message() ||
                IsTimeout(r2.status()))
        << r2.status();
  }
  for (Member* m : Running()) {
    int learners = 0;
    EXPECT_TRUE(PollUntil([&] {
      auto ml = MemberList(m);
      if (!ml.ok()) return false;
      learners = 0;
      for (const auto& x : ml->members()) learners += x.islearner() ? 1 : 0;
      return learners >= 1;
    }));
    EXPECT_EQ(learners, 1) << m->name;
  }
}

TEST_F(ClusterTest, MoveLeaderAndLeaseCallsRoutedToLeader) {
  StartCluster(3);
  Member* leader = WaitLeader();
  ASSERT_NE(leader, nullptr);
  Member* target = SomeFollower(leader);

  auto not_leader = MoveLeader(target, leader->server->MemberId());
  EXPECT_TRUE(IsNotLeader(not_leader.status())) << not_leader.status();
  auto moved = MoveLeader(leader, target->server->MemberId());
  ASSERT_TRUE(moved.ok()) << moved.status();
  Member* now = WaitLeader();
  ASSERT_EQ(now, target);

  // Lease granted on the leader; keep-alive and TTL through a follower.
  Member* follower = SomeFollower(now);
  etcdserverpb::LeaseGrantRequest greq;
  greq.set_ttl(30);
  auto granted =
      Call<etcdserverpb::LeaseGrantResponse>([&](Done<etcdserverpb::LeaseGrantResponse> d) {
        now->server->LeaseGrant(auth::kNoCredentials, greq, std::move(d));
      });
  ASSERT_TRUE(granted.ok()) << granted.status();
  const int64_t lease_id = granted->id();
  // Through the leader: it answers TTL queries from its own applied state.
  ASSERT_TRUE(Put(now, "leased", "v", lease_id).ok());

  auto renewed = Call<int64_t>(
      [&](Done<int64_t> d) { follower->server->LeaseRenew(lease_id, std::move(d)); });
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_EQ(*renewed, 30);

  etcdserverpb::LeaseTimeToLiveRequest treq;
  treq.set_id(lease_id);
  treq.set_keys(true);
  auto ttl = Call<etcdserverpb::LeaseTimeToLiveResponse>(
      [&](Done<etcdserverpb::LeaseTimeToLiveResponse> d) {
        follower->server->LeaseTimeToLive(treq, std::move(d));
      });
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_EQ(ttl->grantedttl(), 30);
  EXPECT_GT(ttl->ttl(), 0);
  EXPECT_LE(ttl->ttl(), 30);
  ASSERT_EQ(ttl->keys_size(), 1);
  EXPECT_EQ(ttl->keys(0), "leased");
  EXPECT_EQ(ttl->header().member_id(), follower->server->MemberId());

  // Unknown leases: the leader's answers travel back unchanged.
  auto missing = Call<int64_t>(
      [&](Done<int64_t> d) { follower->server->LeaseRenew(lease_id + 1, std::move(d)); });
  EXPECT_TRUE(lease::IsLeaseNotFound(missing.status())) << missing.status();
  treq.set_id(lease_id + 1);
  auto gone = Call<etcdserverpb::LeaseTimeToLiveResponse>(
      [&](Done<etcdserverpb::LeaseTimeToLiveResponse> d) {
        follower->server->LeaseTimeToLive(treq, std::move(d));
      });
  ASSERT_TRUE(gone.ok()) << gone.status();
  EXPECT_EQ(gone->ttl(), -1);
}

// Auth through raft on every member: users and roles made through one
// member, a simple token issued through a follower, then used on every
// member (etcd InternalAuthenticateRequest); writes are checked at apply.
TEST_F(ClusterTest, AuthStateAndSimpleTokensReachEveryMember) {
  StartCluster(3, [](ServerConfig& c) { c.bcrypt_cost = 4; });
  Member* leader = WaitLeader();
  ASSERT_NE(leader, nullptr);
  Member* follower = SomeFollower(leader);
  ASSERT_NE(follower, nullptr);
  auto add_user = [&](Member* m, const std::string& name, const std::string& pw) {
    etcdserverpb::AuthUserAddRequest r;
    r.set_name(name);
    r.set_password(pw);
    return Call<etcdserverpb::AuthUserAddResponse>([&](Done<etcdserverpb::AuthUserAddResponse> d) {
      m->server->UserAdd(auth::kNoCredentials, r, std::move(d));
    });
  };
  auto grant = [&](Member* m, const std::string& user, const std::string& role) {
    etcdserverpb::AuthUserGrantRoleRequest r;
    r.set_user(user);
    r.set_role(role);
    return Call<etcdserverpb::AuthUserGrantRoleResponse>(
        [&](Done<etcdserverpb::AuthUserGrantRoleResponse> d) {
          m->server->UserGrantRole(auth::kNoCredentials, r, std::move(d));
        });
  };
  ASSERT_TRUE(add_user(leader, "root", "rootpw").ok());
  ASSERT_TRUE(grant(follower, "root", "root").ok());
  ASSERT_TRUE(add_user(follower, "u", "upw").ok());
  etcdserverpb::AuthRoleAddRequest ra;
  ra.set_name("w");
  ASSERT_TRUE(Call<etcdserverpb::AuthRoleAddResponse>([&](Done<etcdserverpb::AuthRoleAddResponse> d) {
                leader->server->RoleAdd(auth::kNoCredentials, ra, std::move(d));
              }).ok());
  etcdserverpb::AuthRoleGrantPermissionRequest gp;
  gp.set_name("w");
  gp.mutable_perm()->set_permtype(authpb::Permission::READWRITE);
  gp.mutable_perm()->set_key("key/");
  gp.mutable_perm()->set_range_end("key0");
  ASSERT_TRUE(Call<etcdserverpb::AuthRoleGrantPermissionResponse>(
                  [&](Done<etcdserverpb::AuthRoleGrantPermissionResponse> d) {
                    leader->server->RoleGrantPermission(auth::kNoCredentials, gp, std::move(d));
                  })
                  .ok());
  ASSERT_TRUE(grant(leader, "u", "w").ok());
  etcdserverpb::AuthEnableRequest en;
  ASSERT_TRUE(Call<etcdserverpb::AuthEnableResponse>([&](Done<etcdserverpb::AuthEnableResponse> d) {
                follower->server->AuthEnable(auth::kNoCredentials, en, std::move(d));
              }).ok());

  etcdserverpb::AuthenticateRequest login;
  login.set_name("u");
  login.set_password("upw");
  auto tok = Call<etcdserverpb::AuthenticateResponse>(
      [&](Done<etcdserverpb::AuthenticateResponse> d) {
        follower->server->Authenticate(auth::kNoCredentials, login, std::move(d));
      });
  ASSERT_TRUE(tok.ok()) << tok.status();
  auth::Credentials creds;
  creds.token = tok->token();
  int i = 0;
  for (Member* m : Running()) {
    const std::string key = absl::StrCat("key/", i++);
    EXPECT_TRUE(Put(m, key, "v", 0, creds).ok()) << m->name;
    EXPECT_EQ(Value(m, key, false, creds), "v") << m->name;
    EXPECT_TRUE(auth::IsErrPermissionDenied(Put(m, "other", "v", 0, creds).status())) << m->name;
    EXPECT_TRUE(m->server->AuthStore()->IsEnabled());
  }
  // No credentials: refused everywhere.
  for (Member* m : Running()) {
    EXPECT_TRUE(auth::IsUserEmpty(Put(m, "key/x", "v").status())) << m->name;
  }
  const uint64_t rev = leader->server->AuthStore()->Revision();
  for (Member* m : Running()) {
    EXPECT_TRUE(PollUntil([&] { return m->server->AuthStore()->Revision() == rev; }));
  }
}

// ---------------------------------------------------------------------------
// Lease checkpoints (etcd 3.4 --experimental-enable-lease-checkpoint[-persist]).

using ManualClock = test_util::AtomicManualClock;

class LeaseCheckpointClusterTest : public ClusterTest {
 protected:
  static constexpr int64_t kTtl = 100;
  static constexpr auto kInterval = 10s;

  // Members m0..m2 on one manual clock, checkpointing every 10 s if asked.
  void Start(bool checkpoint, bool persist) {
    checkpoint_ = checkpoint;
    persist_ = persist;
    StartCluster(3, [this](ServerConfig& c) { Tweak(c); });
  }
  void Tweak(ServerConfig& c) {
    c.clock = &clock_;
    c.lease_checkpoint = checkpoint_;
    c.lease_checkpoint_persist = persist_;
    c.lease_checkpoint_interval = kInterval;
  }
  int64_t Grant(Member* via) {
    etcdserverpb::LeaseGrantRequest req;
    req.set_ttl(kTtl);
    auto r = Call<etcdserverpb::LeaseGrantResponse>([&](Done<etcdserverpb::LeaseGrantResponse> d) {
      via->server->LeaseGrant(auth::kNoCredentials, req, std::move(d));
    });
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->id() : 0;
  }
  // The TTL the leader reports (any member routes the call to it).
  int64_t TimeToLive(Member* via, int64_t id) {
    etcdserverpb::LeaseTimeToLiveRequest req;
    req.set_id(id);
    auto r = Call<etcdserverpb::LeaseTimeToLiveResponse>(
        [&](Done<etcdserverpb::LeaseTimeToLiveResponse> d) {
          via->server->LeaseTimeToLive(req, std::move(d));
        });
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return -2;
    EXPECT_EQ(r->grantedttl(), kTtl);
    return r->ttl();
  }
  // Waits until every running member has applied `n` lease checkpoints.
  bool WaitCheckpointsApplied(uint64_t n) {
    return PollUntil([&] {
      for (Member* m : Running()) {
        if (m->server->Metrics().lease_checkpoints_applied.load() < n) return false;
      }
      return true;
    });
  }
  // Hands leadership to `target` and returns it once every member agrees.
  Member* MoveTo(Member* target) {
    Member* leader = WaitLeader();
    if (leader == nullptr) return nullptr;
    if (leader != target) {
      auto moved = MoveLeader(leader, target->server->MemberId());
      EXPECT_TRUE(moved.ok()) << moved.status();
    }
    return WaitLeader();
  }
  Member* OtherFollower(Member* leader, Member* not_this) {
    for (Member* m : Running()) {
      if (m != leader && m != not_this) return m;
    }
    return nullptr;
  }

  ManualClock clock_;
  bool checkpoint_ = false;
  bool persist_ = false;
};

// Without the flag a new leader grants every lease its full TTL again, and
// no checkpoint is ever proposed (etcd 3.4's default).
TEST_F(LeaseCheckpointClusterTest, WithoutCheckpointsNewLeaderGrantsTheFullTtl) {
  Start(/*checkpoint=*/false, /*persist=*/false);
  Member* leader = WaitLeader();
  ASSERT_NE(leader, nullptr);
  const int64_t id = Grant(leader);
  ASSERT_NE(id, 0);
  EXPECT_EQ(TimeToLive(leader, id), kTtl);  // the manual clock has not moved
  clock_.Advance(30s);
  EXPECT_EQ(TimeToLive(leader, id), 70);
  Member* next = MoveTo(SomeFollower(leader));
  ASSERT_NE(next, nullptr);
  ASSERT_NE(next, leader);
  // Promote: full TTL plus the election timeout (150 ms), truncated.
  EXPECT_EQ(TimeToLive(leader, id), kTtl);
  for (Member* m : Running()) {
    EXPECT_EQ(m->server->Metrics().lease_checkpoint_proposals.load(), 0u) << m->name;
    EXPECT_EQ(m->server->Metrics().lease_checkpoints_applied.load(), 0u) << m->name;
  }
}

// With checkpoints the leader proposes the remaining TTL (70 s after 30 s
// of a 100 s lease); the next leader continues from it. A keep-alive resets
// it through raft on every member, so the leader after that grants the full
// TTL again.
TEST_F(LeaseCheckpointClusterTest, NewLeaderContinuesFromTheCheckpoint) {
  Start(/*checkpoint=*/true, /*persist=*/false);
  Member* leader = WaitLeader();
  ASSERT_NE(leader, nullptr);
  const int64_t id = Grant(leader);
  ASSERT_NE(id, 0);
  clock_.Advance(30s);
  ASSERT_TRUE(WaitCheckpointsApplied(1));
  EXPECT_EQ(leader->server->Metrics().lease_checkpoint_proposals.load(), 1u);

  Member* next = MoveTo(SomeFollower(leader));
  ASSERT_NE(next, nullptr);
  ASSERT_NE(next, leader);
  EXPECT_EQ(TimeToLive(leader, id), 70);  // 70 s + 150 ms, truncated

  // Keep-alive through a follower: reset {id, 0} through raft, then renewed.
  auto renewed = Call<int64_t>([&](Done<int64_t> d) { leader->server->LeaseRenew(id, std::move(d)); });
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_EQ(*renewed, kTtl);
  ASSERT_TRUE(WaitCheckpointsApplied(2));
  EXPECT_EQ(TimeToLive(next, id), kTtl);
  // A second keep-alive has nothing to reset: no entry.
  renewed = Call<int64_t>([&](Done<int64_t> d) { next->server->LeaseRenew(id, std::move(d)); });
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  Member* third = MoveTo(OtherFollower(next, leader));
  ASSERT_NE(third, nullptr);
  EXPECT_EQ(TimeToLive(third, id), kTtl);
  for (Member* m : Running()) {
    EXPECT_EQ(m->server->Metrics().lease_checkpoints_applied.load(), 2u) << m->name;
  }
}

// With -persist the checkpoint is in the lease's record: a member restarted
// and then made leader still continues from it. Without, a restart forgets
// it (as etcd 3.4): the restarted leader grants the full TTL.

class LeaseCheckpointRestartTest : public LeaseCheckpointClusterTest,
                                   public ::testing::WithParamInterface<bool> {};

TEST_P(LeaseCheckpointRestartTest, RestartedMemberContinuesFromThePersistedCheckpoint) {
  const bool persist = GetParam();
  Start(/*checkpoint=*/true, persist);
  Member* leader = WaitLeader();
  ASSERT_NE(leader, nullptr);
  const int64_t id = Grant(leader);
  ASSERT_NE(id, 0);
  clock_.Advance(30s);
  ASSERT_TRUE(WaitCheckpointsApplied(1));

  Member* restarted = SomeFollower(leader);
  const uint64_t restarted_id = restarted->server->MemberId();
  restarted->server.reset();  // graceful stop
  ServerConfig c = Config(restarted, {"m0", "m1", "m2"});
  Tweak(c);
  ASSERT_TRUE(StartMember(restarted, std::move(c)).ok());
  ASSERT_EQ(restarted->server->MemberId(), restarted_id);
  ASSERT_TRUE(restarted->server->WaitReady(kConverge));
  // The restart replayed nothing: the checkpoint comes from the backend.
  EXPECT_EQ(restarted->server->Metrics().lease_checkpoints_applied.load(), 0u);

  Member* next = MoveTo(restarted);
  ASSERT_EQ(next, restarted);
  EXPECT_EQ(TimeToLive(leader, id), persist ? 70 : kTtl);
}

INSTANTIATE_TEST_SUITE_P(Persist, LeaseCheckpointRestartTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? std::string("Persist") : std::string("NoPersist");
                         });

}  // namespace
}  // namespace cppetcd::server
