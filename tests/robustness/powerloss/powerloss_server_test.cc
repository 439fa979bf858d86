// Real-server power-loss tests: cppetcd under the power-loss interposer
// (LD_PRELOAD, CPPETCD_POWERLOSS_DIR = its data dir), a put load from
// several gRPC clients, SIGKILL at a seeded moment, the crash tool's
// `random` mode (unsynced writes lost page by page, in WAL and LMDB file
// alike), restart without the interposer: the member must start and every
// acknowledged put must be there with its value; a full Range must walk
// every key.
//
// Single member (seeds 1..3); 3-member cluster: one member loses power
// (the others go on), and all members lose power at once (acknowledged =
// fsynced on a quorum, so everything acknowledged must survive).
//
// Replay one seed: CPPETCD_POWERLOSS_SEED=<seed>; keep the files:
// CPPETCD_TEST_KEEP_TMP=1.
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "cluster_harness.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "gtest/gtest.h"
#include "harness.h"

namespace cppetcd::integration {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int kWriters = 6;

std::vector<uint64_t> Seeds(int n) {
  if (const char* s = std::getenv("CPPETCD_POWERLOSS_SEED"); s != nullptr && *s != '\0') {
    return {std::strtoull(s, nullptr, 10)};
  }
  std::vector<uint64_t> out;
  for (int i = 1; i <= n; ++i) out.push_back(static_cast<uint64_t>(i));
  return out;
}

// Children spawned while this lives run under the interposer.
class PreloadEnv {
 public:
  PreloadEnv(const std::string& dir, const std::string& log) {
    ::setenv("CPPETCD_POWERLOSS_DIR", dir.c_str(), 1);
    ::setenv("CPPETCD_POWERLOSS_LOG", log.c_str(), 1);
    ::setenv("LD_PRELOAD", CPPETCD_POWERLOSS_LIB, 1);
  }
  ~PreloadEnv() {
    ::unsetenv("LD_PRELOAD");
    ::unsetenv("CPPETCD_POWERLOSS_DIR");
    ::unsetenv("CPPETCD_POWERLOSS_LOG");
  }
  PreloadEnv(const PreloadEnv&) = delete;
  PreloadEnv& operator=(const PreloadEnv&) = delete;
};

// Puts from kWriters threads (each on its own channel, round-robin over
// `endpoints`) until Stop(); remembers every acknowledged put.
class PutLoad {
 public:
  explicit PutLoad(std::vector<std::shared_ptr<grpc::Channel>> channels) {
    for (int w = 0; w < kWriters; ++w) {
      auto ch = channels[static_cast<size_t>(w) % channels.size()];
      threads_.emplace_back([this, w, ch] { Run(w, ch); });
    }
  }
  ~PutLoad() { Stop(); }
  void Stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  std::map<std::string, std::string> Acked() {
    std::lock_guard<std::mutex> l(mu_);
    return acked_;
  }

 private:
  void Run(int w, std::shared_ptr<grpc::Channel> ch) {
    auto kv = etcdserverpb::KV::NewStub(ch);
    for (int seq = 0; seq < 1000000 && !stop_; ++seq) {
      const std::string key = absl::StrCat("pl/w", w, "/", seq);
      const std::string value = absl::StrCat("v", seq, "-", std::string(64 + seq % 300, 'a' + w));
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + seconds(3));
      etcdserverpb::PutRequest req;
      req.set_key(key);
      req.set_value(value);
      etcdserverpb::PutResponse resp;
      if (kv->Put(&ctx, req, &resp).ok()) {
        std::lock_guard<std::mutex> l(mu_);
        acked_[key] = value;
      } else if (stop_) {
        break;
      }
    }
  }

  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::map<std::string, std::string> acked_;
};

// Checks every acknowledged put through `ch` and walks all keys.
void ExpectAcked(const std::shared_ptr<grpc::Channel>& ch,
                 const std::map<std::string, std::string>& acked, const std::string& what) {
  auto kv = etcdserverpb::KV::NewStub(ch);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + seconds(30));
  etcdserverpb::RangeRequest req;
  req.set_key("pl/");
  req.set_range_end("pl0");
  etcdserverpb::RangeResponse resp;
  grpc::Status st = kv->Range(&ctx, req, &resp);
  ASSERT_TRUE(st.ok()) << what << ": range: " << st.error_message();
  std::map<std::string, std::string> have;
  for (const auto& k : resp.kvs()) have[k.key()] = k.value();
  EXPECT_EQ(static_cast<size_t>(resp.count()), have.size()) << what;
  size_t missing = 0;
  for (const auto& [k, v] : acked) {
    auto it = have.find(k);
    if (it == have.end() || it->second != v) {
      if (++missing <= 5) ADD_FAILURE() << what << ": acknowledged put " << k << " lost or changed";
    }
  }
  EXPECT_EQ(missing, 0u) << what << ": " << missing << " of " << acked.size()
                         << " acknowledged puts lost";
  std::cout << what << ": " << acked.size() << " acknowledged puts, " << have.size()
            << " keys after restart, " << missing << " lost" << std::endl;
}

CommandResult Apply(const std::string& log, uint64_t seed, pid_t pid = 0) {
  std::vector<std::string> argv = {CPPETCD_POWERLOSS_APPLY, log, "--mode", "random", "--seed",
                                   absl::StrCat(seed)};
  if (pid > 0) {
    argv.push_back("--pid");
    argv.push_back(absl::StrCat(pid));
  }
  CommandResult r = RunCommand(argv, "", {}, seconds(60));
  std::cout << r.out << r.err;
  return r;
}

milliseconds LoadTime(uint64_t seed) {
  std::mt19937_64 rng(seed * 104729);
  return milliseconds(700 + rng() % 1800);
}

TEST(PowerLossServer, SingleMember) {
  CPPETCD_REQUIRE_SERVER();
  for (uint64_t seed : Seeds(3)) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    TempDir tmp;
    const std::string data = tmp.path() + "/data", log = tmp.path() + "/undo.log";
    ASSERT_EQ(::mkdir(data.c_str(), 0700), 0);
    ServerProcess::Options o;
    o.data_dir = data;
    o.extra_flags = {"--snapshot-count=500"};
    std::unique_ptr<ServerProcess> server;
    {
      PreloadEnv env(data, log);
      auto s = ServerProcess::Start(o);
      ASSERT_TRUE(s.ok()) << s.status();
      server = std::move(*s);
    }
    PutLoad load({server->NewChannel(), server->NewChannel()});
    std::this_thread::sleep_for(LoadTime(seed));
    server->Kill();
    load.Stop();
    const auto acked = load.Acked();
    ASSERT_GT(acked.size(), 0u);
    ASSERT_EQ(Apply(log, seed).exit_code, 0);
    absl::Status st = server->Restart();
    ASSERT_TRUE(st.ok()) << "restart after power loss: " << st << "\n" << server->ReadLog();
    ExpectAcked(server->NewChannel(), acked, absl::StrCat("single member, seed ", seed));
  }
}

class PowerLossCluster : public ::testing::Test {
 protected:
  void StartCluster(const std::string& base, const std::string& log) {
    PreloadEnv env(base, log);
    Cluster::Options o;
    o.extra_flags = {"--snapshot-count=500"};
    auto c = Cluster::Start(o, base);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
  }
  std::vector<std::shared_ptr<grpc::Channel>> Channels() {
    std::vector<std::shared_ptr<grpc::Channel>> out;
    for (int i = 0; i < cluster_->size(); ++i) out.push_back(cluster_->member(i).NewChannel());
    return out;
  }
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(PowerLossCluster, OneMemberLosesPower) {
  CPPETCD_REQUIRE_SERVER();
  const uint64_t seed = Seeds(1).front();
  TempDir tmp;
  // The members stop before their directory is removed, on every way out.
  absl::Cleanup stop = [this] { cluster_.reset(); };
  const std::string base = tmp.path() + "/c", log = tmp.path() + "/undo.log";
  ASSERT_EQ(::mkdir(base.c_str(), 0700), 0);
  StartCluster(base, log);
  if (HasFatalFailure()) return;
  auto leader = cluster_->WaitForLeader(seconds(20));
  ASSERT_TRUE(leader.ok()) << leader.status();
  // The member that loses power: a follower for even seeds, the leader for odd.
  const int victim = seed % 2 == 1 ? *leader : (*leader + 1) % cluster_->size();
  const int survivor = (victim + 1) % cluster_->size();
  PutLoad load({cluster_->member(survivor).NewChannel()});
  std::this_thread::sleep_for(LoadTime(seed));
  const pid_t pid = cluster_->member(victim).pid();
  cluster_->member(victim).Kill();
  ASSERT_EQ(Apply(log, seed, pid).exit_code, 0);
  std::this_thread::sleep_for(milliseconds(500));  // the others go on meanwhile
  load.Stop();
  const auto acked = load.Acked();
  ASSERT_GT(acked.size(), 0u);
  absl::Status st = cluster_->Restart(victim);
  ASSERT_TRUE(st.ok()) << "restart after power loss: " << st << "\n"
                       << cluster_->member(victim).ReadLog();
  // Linearizable reads through the restarted member: it must have caught up
  // with everything, and its own store must not be corrupt.
  ExpectAcked(cluster_->member(victim).NewChannel(), acked,
              absl::StrCat("cluster, member ", victim, " lost power, seed ", seed));
}

TEST_F(PowerLossCluster, AllMembersLosePower) {
  CPPETCD_REQUIRE_SERVER();
  for (uint64_t seed : Seeds(2)) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    TempDir tmp;
    absl::Cleanup stop = [this] { cluster_.reset(); };
    const std::string base = tmp.path() + "/c", log = tmp.path() + "/undo.log";
    ASSERT_EQ(::mkdir(base.c_str(), 0700), 0);
    StartCluster(base, log);
    if (HasFatalFailure()) return;
    PutLoad load(Channels());
    std::this_thread::sleep_for(LoadTime(seed));
    for (int i = 0; i < cluster_->size(); ++i) cluster_->member(i).Kill();
    load.Stop();
    const auto acked = load.Acked();
    ASSERT_GT(acked.size(), 0u);
    ASSERT_EQ(Apply(log, seed).exit_code, 0);
    absl::Status st = cluster_->RestartAll();
    if (!st.ok()) {
      for (int i = 0; i < cluster_->size(); ++i) {
        const std::string l = cluster_->member(i).ReadLog();
        std::cout << "member " << i << " log tail:\n"
                  << l.substr(l.size() > 4000 ? l.size() - 4000 : 0) << std::endl;
      }
    }
    ASSERT_TRUE(st.ok()) << "restart after power loss: " << st;
    ASSERT_TRUE(cluster_->WaitForLeader(seconds(20)).ok());
    for (int i = 0; i < cluster_->size(); ++i) {
      ExpectAcked(cluster_->member(i).NewChannel(), acked,
                  absl::StrCat("cluster, all lost power, seed ", seed, ", via member ", i));
    }
  }
}

}  // namespace
}  // namespace cppetcd::integration
