// Failure tests on a 3-member cluster: the leader killed with SIGKILL under
// a write load (failover time, no acknowledged write lost), and a member cut
// off by a blackholed peer proxy (no writes, no stale linearizable reads,
// serializable reads still answered, catch-up after healing).
#include <signal.h>

#include <atomic>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cluster_harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cppetcd::integration {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

class ClusterFailoverTest : public ::testing::Test {
 protected:
  void SetUp() override { CPPETCD_REQUIRE_SERVER(); }

  std::unique_ptr<Cluster> StartCluster(Cluster::Options o) {
    auto c = Cluster::Start(std::move(o), tmp_.path());
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  TempDir tmp_;
};

// Every key of `acked` on member `m`, read linearizably (or serializably,
// polled until complete), with the acknowledged value and revision.
void ExpectAllAcked(ClusterMember& m, const std::map<std::string, int64_t>& acked,
                    bool serializable) {
  auto kv = etcdserverpb::KV::NewStub(m.NewChannel());
  etcdserverpb::RangeResponse resp;
  const bool complete = PollUntil(
      [&] {
        resp.Clear();
        return GetKey(kv.get(), "load/", serializable, seconds(3), &resp, PrefixEnd("load/"))
                   .ok() &&
               (!serializable || resp.kvs_size() >= static_cast<int>(acked.size()));
      },
      seconds(serializable ? 15 : 10));
  ASSERT_TRUE(complete) << m.name() << " has " << resp.kvs_size() << " of " << acked.size()
                        << " acknowledged keys";
  std::map<std::string, int64_t> got;
  for (const auto& kvp : resp.kvs()) got[kvp.key()] = kvp.mod_revision();
  int missing = 0;
  for (const auto& [key, rev] : acked) {
    auto it = got.find(key);
    if (it == got.end()) {
      if (++missing <= 5) ADD_FAILURE() << m.name() << " lost acknowledged " << key;
      continue;
    }
    EXPECT_EQ(it->second, rev) << m.name() << " " << key;
  }
  EXPECT_EQ(missing, 0) << m.name();
}

// kill -9 of the leader while clients write unique keys through every
// member: a new leader within a few election timeouts, and every
// acknowledged write on the survivors and on the killed member once it is
// back.
TEST_F(ClusterFailoverTest, KillLeaderUnderWriteLoad) {
  auto c = StartCluster({.size = 3});
  ASSERT_NE(c, nullptr);
  auto leader = c->WaitForLeader(seconds(20));
  ASSERT_TRUE(leader.ok()) << leader.status();

  std::mutex mu;
  std::map<std::string, int64_t> acked;  // key -> mod revision
  std::atomic<int64_t> acked_count{0};
  std::atomic<int64_t> acked_after_kill{0};
  std::atomic<bool> killed{false};
  std::atomic<bool> stop{false};
  std::atomic<int64_t> first_ack_after_kill_ns{0};
  Clock::time_point kill_time;
  std::vector<std::thread> writers;
  for (int w = 0; w < c->size(); ++w) {
    writers.emplace_back([&, w] {
      auto kv = etcdserverpb::KV::NewStub(c->member(w).NewChannel());
      for (int seq = 0; seq < 20000 && !stop.load(); ++seq) {
        const std::string key = absl::StrCat("load/w", w, "/", seq);
        const bool after_kill = killed.load();
        etcdserverpb::PutResponse resp;
        grpc::Status st = PutKey(kv.get(), key, "v", seconds(2), &resp);
        if (!st.ok()) {
          // The killed member's writer stops; the others back off a little.
          if (w == *leader && killed.load()) return;
          std::this_thread::sleep_for(milliseconds(10));  // back-off, not a wait
          continue;
        }
        {
          std::lock_guard<std::mutex> lock(mu);
          acked[key] = resp.header().revision();
        }
        acked_count.fetch_add(1);
        if (after_kill) {
          if (acked_after_kill.fetch_add(1) == 0) {
            first_ack_after_kill_ns.store(
                std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - kill_time)
                    .count());
          }
        }
      }
    });
  }
  auto join = [&] {
    stop.store(true);
    for (auto& t : writers) t.join();
  };
  const bool loaded = PollUntil([&] { return acked_count.load() >= 150; }, seconds(30));
  kill_time = Clock::now();
  killed.store(true);
  c->member(*leader).Kill();
  std::vector<int> survivors;
  for (int i = 0; i < c->size(); ++i) {
    if (i != *leader) survivors.push_back(i);
  }
  auto new_leader = c->WaitForLeader(seconds(15), survivors);
  const double election_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - kill_time).count();
  const bool resumed = PollUntil([&] { return acked_after_kill.load() >= 100; }, seconds(20));
  join();
  ASSERT_TRUE(loaded) << "only " << acked_count.load() << " writes before the kill";
  ASSERT_TRUE(new_leader.ok()) << new_leader.status();
  ASSERT_TRUE(resumed) << "only " << acked_after_kill.load() << " writes after the kill";
  const double failover_ms = first_ack_after_kill_ns.load() / 1e6;
  std::cout << "failover: new leader " << c->member(*new_leader).name() << " agreed after "
            << election_ms << " ms; first acknowledged put after the kill at " << failover_ms
            << " ms (election timeout " << c->options().election_ms << " ms); " << acked.size()
            << " acknowledged writes\n";
  EXPECT_LT(election_ms, 10.0 * c->options().election_ms + 2000);

  for (int i : survivors) ExpectAllAcked(c->member(i), acked, /*serializable=*/false);
  ASSERT_TRUE(c->Restart(*leader).ok());
  ExpectAllAcked(c->member(*leader), acked, /*serializable=*/true);
  ExpectAllAcked(c->member(*leader), acked, /*serializable=*/false);
}

// A follower cut off by the peer proxies (blackholed both ways: the
// minority side of a partition): writes through it time out, a linearizable read through it
// errors instead of returning the value the majority has overwritten,
// serializable reads still answer; the majority keeps writing; once healed
// the member catches up.
// With `isolate_leader`, the member cut off is the leader: it must step
// down (check quorum) and serve neither writes nor linearizable reads while
// the majority elects a new leader.
void PartitionScenario(Cluster* c, bool isolate_leader) {
  auto leader = c->WaitForLeader(seconds(20));
  ASSERT_TRUE(leader.ok()) << leader.status();
  const int iso = isolate_leader ? *leader : (*leader + 1) % c->size();
  const int a = (iso + 1) % c->size();  // the majority
  const int b = (iso + 2) % c->size();
  auto kv_iso = etcdserverpb::KV::NewStub(c->member(iso).NewChannel());
  auto kv_a = etcdserverpb::KV::NewStub(c->member(a).NewChannel());
  auto kv_b = etcdserverpb::KV::NewStub(c->member(b).NewChannel());
  ASSERT_TRUE(PutKey(kv_a.get(), "part/x", "old", seconds(5)).ok());
  // The isolated member has applied "old" before the cut.
  ASSERT_TRUE(PollUntil(
      [&] {
        etcdserverpb::RangeResponse r;
        return GetKey(kv_iso.get(), "part/x", true, seconds(2), &r).ok() && r.kvs_size() == 1;
      },
      seconds(10)));

  ASSERT_TRUE(c->Isolate(iso).ok());
  std::cout << "isolated " << c->member(iso).name() << " (leader was " << c->member(*leader).name()
            << ")\n";

  // The majority keeps writing: the new value and a few more keys. A first
  // write may wait for the leader to notice the cut, or for an election;
  // retry under a deadline.
  const auto cut_time = Clock::now();
  ASSERT_TRUE(
      PollUntil([&] { return PutKey(kv_b.get(), "part/x", "new", seconds(1)).ok(); }, seconds(15)));
  std::cout << "majority wrote after "
            << std::chrono::duration_cast<milliseconds>(Clock::now() - cut_time).count() << " ms\n";
  if (isolate_leader) {
    auto new_leader = c->WaitForLeader(seconds(10), {a, b});
    ASSERT_TRUE(new_leader.ok()) << new_leader.status();
  }
  for (int k = 0; k < 20; ++k) {
    ASSERT_TRUE(PollUntil(
        [&] { return PutKey(kv_a.get(), absl::StrCat("part/more/", k), "v", seconds(3)).ok(); },
        seconds(10)));
  }

  // Write through the isolated member: no acknowledgement.
  grpc::Status w = PutKey(kv_iso.get(), "part/iso", "never", seconds(2));
  EXPECT_FALSE(w.ok()) << "write through the isolated member was acknowledged";
  // Linearizable read there: an error, never "old".
  etcdserverpb::RangeResponse r;
  grpc::Status lr = GetKey(kv_iso.get(), "part/x", false, seconds(2), &r);
  if (lr.ok()) {
    ASSERT_EQ(r.kvs_size(), 1);
    EXPECT_NE(r.kvs(0).value(), "old") << "stale linearizable read at the isolated member";
    ADD_FAILURE() << "linearizable read at the isolated member answered: " << r.kvs(0).value();
  }
  // etcdctl agrees (its default is linearizable).
  CommandResult get = Etcdctl(c->member(iso).ClientEndpoint(), {"get", "part/x"}, "",
                              seconds(4));  // --command-timeout=2s
  EXPECT_NE(get.exit_code, 0) << get.out;
  EXPECT_THAT(get.out, ::testing::Not(::testing::HasSubstr("old")));
  // Serializable: answers, from its own (old) state.
  r.Clear();
  grpc::Status sr = GetKey(kv_iso.get(), "part/x", true, seconds(3), &r);
  ASSERT_TRUE(sr.ok()) << sr.error_message();
  ASSERT_EQ(r.kvs_size(), 1);
  EXPECT_EQ(r.kvs(0).value(), "old");
  CommandResult sget = Etcdctl(c->member(iso).ClientEndpoint(),
                               {"get", "part/x", "--consistency=s", "--print-value-only"});
  EXPECT_EQ(sget.out, "old\n");

  // Heal: the member catches up and serves linearizable reads again.
  c->HealAll();
  auto kv_iso2 = etcdserverpb::KV::NewStub(c->member(iso).NewChannel());
  EXPECT_TRUE(PollUntil(
      [&] {
        etcdserverpb::RangeResponse rr;
        if (!GetKey(kv_iso2.get(), "part/", false, seconds(2), &rr, PrefixEnd("part/")).ok() ||
            rr.kvs_size() < 21) {
          return false;
        }
        for (const auto& kv : rr.kvs()) {
          if (kv.key() == "part/x") return kv.value() == "new";
        }
        return false;
      },
      seconds(20)))
      << "isolated member did not catch up after healing";
  auto healed_leader = c->WaitForLeader(seconds(10));
  EXPECT_TRUE(healed_leader.ok()) << healed_leader.status();
  EXPECT_TRUE(PollUntil([&] { return PutKey(kv_iso2.get(), "part/after", "ok", seconds(3)).ok(); },
                        seconds(10)));
}

TEST_F(ClusterFailoverTest, PartitionedMemberServesNoStaleLinearizableReads) {
  auto c = StartCluster({.size = 3, .proxies = true});
  ASSERT_NE(c, nullptr);
  PartitionScenario(c.get(), /*isolate_leader=*/false);
}

TEST_F(ClusterFailoverTest, PartitionedLeaderStepsDownAndServesNoStaleReads) {
  auto c = StartCluster({.size = 3, .proxies = true});
  ASSERT_NE(c, nullptr);
  PartitionScenario(c.get(), /*isolate_leader=*/true);
}

// A watch served by a follower keeps delivering events across the
// leader's death: events of writes committed under the new leader arrive
// on the same etcdctl watch, in order, none lost.
TEST_F(ClusterFailoverTest, WatchOnFollowerSurvivesLeaderKill) {
  auto c = StartCluster({.size = 3});
  ASSERT_NE(c, nullptr);
  auto leader = c->WaitForLeader(seconds(20));
  ASSERT_TRUE(leader.ok()) << leader.status();
  const int s1 = (*leader + 1) % 3, s2 = (*leader + 2) % 3;
  auto watch =
      StartEtcdctl(c->member(s1).ClientEndpoint(), {"watch", "--prefix", "watch/"}, tmp_.path());
  ASSERT_TRUE(watch.ok()) << watch.status();
  auto kv = etcdserverpb::KV::NewStub(c->member(s2).NewChannel());
  // The watch is in place once a put made after starting it shows up.
  ASSERT_TRUE(PollUntil(
      [&] {
        return PutKey(kv.get(), "watch/0", "v0", seconds(2)).ok() &&
               (*watch)->WaitForStdout(
                   [](const std::string& out) { return out.find("watch/0") != std::string::npos; },
                   milliseconds(500));
      },
      seconds(10)));
  c->member(*leader).Kill();
  ASSERT_TRUE(c->WaitForLeader(seconds(15), {s1, s2}).ok());
  for (int k = 1; k <= 5; ++k) {
    ASSERT_TRUE(PollUntil(
        [&] {
          return PutKey(kv.get(), absl::StrCat("watch/", k), absl::StrCat("v", k), seconds(2)).ok();
        },
        seconds(10)));
  }
  const bool got = (*watch)->WaitForStdout(
      [](const std::string& out) { return out.find("PUT\nwatch/5\nv5\n") != std::string::npos; },
      seconds(10));
  const std::string out = (*watch)->Stdout();
  ASSERT_TRUE(got) << "watch output:\n" << out << "\nstderr:\n" << (*watch)->Stderr();
  // Every event, in order (a put retried after a timeout may have been
  // committed twice, so repeats are allowed).
  size_t pos = 0;
  for (int k = 1; k <= 5; ++k) {
    const std::string event = absl::StrCat("PUT\nwatch/", k, "\nv", k, "\n");
    pos = out.find(event, pos);
    ASSERT_NE(pos, std::string::npos) << "missing or out of order: watch/" << k << "\n" << out;
    pos += event.size();
  }
}

// Leases across a leader failover: the new leader takes over keep-alives
// and expiry (an attached key disappears once keep-alives stop), and a
// revoke through a follower deletes the attached key.
TEST_F(ClusterFailoverTest, LeasesSurviveLeaderKill) {
  auto c = StartCluster({.size = 3});
  ASSERT_NE(c, nullptr);
  auto leader = c->WaitForLeader(seconds(20));
  ASSERT_TRUE(leader.ok()) << leader.status();
  const int s1 = (*leader + 1) % 3, s2 = (*leader + 2) % 3;
  const std::string ep1 = c->member(s1).ClientEndpoint();
  const std::string ep2 = c->member(s2).ClientEndpoint();
  auto grant = [&](int ttl) {
    CommandResult r = Etcdctl(ep1, {"lease", "grant", absl::StrCat(ttl)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    // "lease <hex id> granted with TTL(<n>s)"
    std::vector<std::string> words = absl::StrSplit(r.out, ' ');
    EXPECT_EQ(words.size(), 5u) << r.out;
    return words.size() > 1 ? words[1] : std::string();
  };
  const std::string expiring = grant(5);
  const std::string revoked = grant(60);
  ASSERT_FALSE(expiring.empty());
  ASSERT_FALSE(revoked.empty());
  ASSERT_EQ(Etcdctl(ep1, {"put", "--lease=" + expiring, "lease/expiring", "v"}).exit_code, 0);
  ASSERT_EQ(Etcdctl(ep1, {"put", "--lease=" + revoked, "lease/revoked", "v"}).exit_code, 0);

  c->member(*leader).Kill();
  ASSERT_TRUE(c->WaitForLeader(seconds(15), {s1, s2}).ok());
  CommandResult ka;
  EXPECT_TRUE(PollUntil(
      [&] {
        ka = Etcdctl(ep2, {"lease", "keep-alive", "--once", expiring}, "", seconds(4));
        return ka.exit_code == 0;
      },
      seconds(10)))
      << ka.out << ka.err;
  EXPECT_EQ(ka.out, absl::StrCat("lease ", expiring, " keepalived with TTL(5)\n"));
  CommandResult ttl = Etcdctl(ep1, {"lease", "timetolive", revoked});
  EXPECT_THAT(ttl.out,
              ::testing::HasSubstr(absl::StrCat("lease ", revoked, " granted with TTL(60s)")));

  // No more keep-alives: the new leader expires it (TTL plus the
  // extension a new leader grants).
  auto kv = etcdserverpb::KV::NewStub(c->member(s1).NewChannel());
  EXPECT_TRUE(PollUntil(
      [&] {
        etcdserverpb::RangeResponse r;
        return GetKey(kv.get(), "lease/expiring", false, seconds(2), &r).ok() && r.kvs_size() == 0;
      },
      seconds(20)))
      << "the key of an expired lease is still there";

  CommandResult rv = Etcdctl(ep2, {"lease", "revoke", revoked});
  EXPECT_EQ(rv.exit_code, 0) << rv.err;
  EXPECT_EQ(rv.out, absl::StrCat("lease ", revoked, " revoked\n"));
  etcdserverpb::RangeResponse r;
  ASSERT_TRUE(GetKey(kv.get(), "lease/revoked", false, seconds(2), &r).ok());
  EXPECT_EQ(r.kvs_size(), 0);
}

// The runbook's fault-tolerance table: 5 members tolerate 2 failures (the
// leader among them), not 3; with quorum back, writes resume.
TEST_F(ClusterFailoverTest, FiveMembersTolerateTwoFailures) {
  auto c = StartCluster({.size = 5});
  ASSERT_NE(c, nullptr);
  auto leader = c->WaitForLeader(seconds(20));
  ASSERT_TRUE(leader.ok()) << leader.status();
  const int l = *leader;
  const int f1 = (l + 1) % 5, f2 = (l + 2) % 5, s1 = (l + 3) % 5, s2 = (l + 4) % 5;
  auto kv = etcdserverpb::KV::NewStub(c->member(s1).NewChannel());
  ASSERT_TRUE(PutKey(kv.get(), "quorum/0", "v", seconds(5)).ok());

  c->member(l).Kill();
  c->member(f1).Kill();
  auto new_leader = c->WaitForLeader(seconds(15), {f2, s1, s2});
  ASSERT_TRUE(new_leader.ok()) << new_leader.status();
  EXPECT_TRUE(
      PollUntil([&] { return PutKey(kv.get(), "quorum/1", "v", seconds(2)).ok(); }, seconds(10)))
      << "3 of 5 members could not commit";

  c->member(f2).Kill();  // 2 of 5 left: no quorum
  grpc::Status w = PutKey(kv.get(), "quorum/2", "v", seconds(2));
  EXPECT_FALSE(w.ok()) << "a write was acknowledged by 2 of 5 members";
  etcdserverpb::RangeResponse r;
  EXPECT_FALSE(GetKey(kv.get(), "quorum/", false, seconds(2), &r, PrefixEnd("quorum/")).ok())
      << "a linearizable read was served without quorum";
  r.Clear();
  ASSERT_TRUE(GetKey(kv.get(), "quorum/", true, seconds(2), &r, PrefixEnd("quorum/")).ok());
  EXPECT_GE(r.kvs_size(), 2);

  ASSERT_TRUE(c->Restart(f2).ok());  // quorum again (Restart waits until it serves)
  EXPECT_TRUE(
      PollUntil([&] { return PutKey(kv.get(), "quorum/3", "v", seconds(2)).ok(); }, seconds(10)));
  ASSERT_TRUE(c->RestartAll().ok());
  ASSERT_TRUE(c->WaitForLeader(seconds(15)).ok());
  for (int i = 0; i < 5; ++i) {
    auto kvi = etcdserverpb::KV::NewStub(c->member(i).NewChannel());
    etcdserverpb::RangeResponse all;
    ASSERT_TRUE(GetKey(kvi.get(), "quorum/1", false, seconds(5), &all).ok());
    EXPECT_EQ(all.kvs_size(), 1) << c->member(i).name();
    all.Clear();
    ASSERT_TRUE(GetKey(kvi.get(), "quorum/3", false, seconds(5), &all).ok());
    EXPECT_EQ(all.kvs_size(), 1) << c->member(i).name();
  }
}

}  // namespace
}  // namespace cppetcd::integration
