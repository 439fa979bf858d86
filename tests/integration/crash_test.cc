// Crash tests: a write load from several client threads, the server killed
// with SIGKILL at a random moment, restarted on the same data dir; every
// write the server acknowledged must be there with its value and revision.
// Also a graceful SIGTERM stop, after which all data must be kept.
//
// Replay the kill points of one run: CPPETCD_CRASH_SEED=<seed>.
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "gtest/gtest.h"
#include "harness.h"

namespace cppetcd::integration {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int kWriters = 4;
constexpr int kKeysPerWriter = 16;  // each writer cycles over its own keys
constexpr int kRounds = 3;

// What one writer did to one key in one round: writes to a key carry
// increasing sequence numbers, so after a crash the key must hold a value
// written at or after the last acknowledged one, and no later than the last
// attempted one.
struct KeyHistory {
  int64_t last_acked_seq = -1;
  int64_t last_acked_rev = 0;
  int64_t last_attempted_seq = -1;
};

// What a key must hold once verified after a restart (and forever after,
// since no round writes another round's keys).
struct Expected {
  std::string value;
  int64_t mod_revision = 0;
};

class CrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CPPETCD_REQUIRE_SERVER();
    ServerProcess::Options o;
    o.data_dir = tmp_.path() + "/data";
    auto s = ServerProcess::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }

  static std::string KeyOf(int round, int writer, int k) {
    return absl::StrCat("crash/r", round, "/w", writer, "/k", k);
  }

  // Range of one key on a fresh channel; nullopt-like empty kvs if missing.
  etcdserverpb::RangeResponse Get(etcdserverpb::KV::Stub* kv, const std::string& key,
                                  const std::string& range_end = "") {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
    etcdserverpb::RangeRequest req;
    req.set_key(key);
    req.set_range_end(range_end);
    etcdserverpb::RangeResponse resp;
    grpc::Status st = kv->Range(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << key << ": " << st.error_message();
    return resp;
  }

  TempDir tmp_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(CrashTest, AcknowledgedWritesSurviveSigkill) {
  uint64_t seed = std::random_device{}();
  if (const char* s = std::getenv("CPPETCD_CRASH_SEED"); s != nullptr && *s != '\0') {
    seed = std::strtoull(s, nullptr, 10);
  }
  std::cout << "crash seed " << seed << " (replay: CPPETCD_CRASH_SEED=" << seed << ")\n";
  std::mt19937_64 rng(seed);

  std::map<std::string, Expected> expected;  // keys of finished rounds
  int64_t max_acked_rev = 0;

  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round, ", seed ", seed));
    std::atomic<bool> stop{false};
    std::atomic<int64_t> acked{0};
    std::vector<std::vector<KeyHistory>> history(kWriters,
                                                 std::vector<KeyHistory>(kKeysPerWriter));
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) {
      writers.emplace_back([&, w] {
        auto kv = etcdserverpb::KV::NewStub(server_->NewChannel());
        // Bounded: a writer stops on the first error (the kill) or at the
        // cap, whichever comes first.
        for (int64_t seq = 0; seq < 100000 && !stop.load(); ++seq) {
          const int k = static_cast<int>(seq % kKeysPerWriter);
          KeyHistory& h = history[w][k];
          h.last_attempted_seq = seq;
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() + seconds(5));
          etcdserverpb::PutRequest req;
          req.set_key(KeyOf(round, w, k));
          req.set_value(absl::StrCat(seq));
          etcdserverpb::PutResponse resp;
          if (!kv->Put(&ctx, req, &resp).ok()) break;
          h.last_acked_seq = seq;
          h.last_acked_rev = resp.header().revision();
          acked.fetch_add(1);
        }
      });
    }
    // Kill after a random number of acknowledged writes (a moment that
    // varies from run to run, without sleeping for it).
    const int64_t kill_after = std::uniform_int_distribution<int64_t>(50, 400)(rng);
    const bool reached =
        PollUntil([&] { return acked.load() >= kill_after; }, seconds(60));
    server_->Kill();
    stop.store(true);
    for (auto& t : writers) t.join();
    ASSERT_TRUE(reached) << "only " << acked.load() << " writes acknowledged before the deadline";
    std::cout << "round " << round << ": killed after " << acked.load()
              << " acknowledged writes (target " << kill_after << ")\n";

    ASSERT_TRUE(server_->Restart().ok()) << "restart failed";
    auto kv = etcdserverpb::KV::NewStub(server_->NewChannel());

    // Acknowledged revisions are distinct: one Put, one revision.
    std::set<int64_t> revs;
    int64_t round_acked = 0;
    for (int w = 0; w < kWriters; ++w) {
      for (int k = 0; k < kKeysPerWriter; ++k) {
        const KeyHistory& h = history[w][k];
        if (h.last_acked_seq >= 0) {
          EXPECT_TRUE(revs.insert(h.last_acked_rev).second)
              << "revision " << h.last_acked_rev << " acknowledged twice";
          max_acked_rev = std::max(max_acked_rev, h.last_acked_rev);
          ++round_acked;
        }
        const std::string key = KeyOf(round, w, k);
        etcdserverpb::RangeResponse r = Get(kv.get(), key);
        if (r.kvs_size() == 0) {
          EXPECT_EQ(h.last_acked_seq, -1) << key << " lost: acknowledged seq "
                                          << h.last_acked_seq << " at revision "
                                          << h.last_acked_rev;
          continue;
        }
        const auto& got = r.kvs(0);
        int64_t seq = -1;
        ASSERT_TRUE(absl::SimpleAtoi(got.value(), &seq)) << key << " = " << got.value();
        EXPECT_EQ(seq % kKeysPerWriter, k) << key << " holds another key's write: " << seq;
        EXPECT_GE(seq, h.last_acked_seq) << key << ": an acknowledged write was lost";
        EXPECT_LE(seq, h.last_attempted_seq) << key << ": value never written";
        if (seq == h.last_acked_seq) {
          EXPECT_EQ(got.mod_revision(), h.last_acked_rev)
              << key << ": revision differs from the acknowledged one";
        } else {
          EXPECT_GT(got.mod_revision(), h.last_acked_rev) << key;
        }
        expected[key] = Expected{got.value(), got.mod_revision()};
      }
    }
    EXPECT_GT(round_acked, 0);

    // Earlier rounds' keys are unchanged, and nothing else exists.
    etcdserverpb::RangeResponse all = Get(kv.get(), "crash/", "crash0");
    EXPECT_GE(all.header().revision(), max_acked_rev) << "store revision went back";
    EXPECT_EQ(static_cast<size_t>(all.kvs_size()), expected.size());
    for (const auto& got : all.kvs()) {
      auto it = expected.find(got.key());
      if (it == expected.end()) {
        ADD_FAILURE() << "unexpected key " << got.key();
        continue;
      }
      EXPECT_EQ(got.value(), it->second.value) << got.key();
      EXPECT_EQ(got.mod_revision(), it->second.mod_revision) << got.key();
    }

    // The revision keeps counting up from where it was.
    {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
      etcdserverpb::PutRequest req;
      req.set_key("probe");
      req.set_value(absl::StrCat(round));
      etcdserverpb::PutResponse resp;
      ASSERT_TRUE(kv->Put(&ctx, req, &resp).ok());
      EXPECT_EQ(resp.header().revision(), all.header().revision() + 1);
    }
  }
}

TEST_F(CrashTest, SigtermStopsCleanlyAndKeepsData) {
  auto kv = etcdserverpb::KV::NewStub(server_->NewChannel());
  int64_t last_rev = 0;
  for (int i = 0; i < 50; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
    etcdserverpb::PutRequest req;
    req.set_key(absl::StrCat("graceful/", i));
    req.set_value(absl::StrCat("v", i));
    etcdserverpb::PutResponse resp;
    ASSERT_TRUE(kv->Put(&ctx, req, &resp).ok());
    last_rev = resp.header().revision();
  }
  CommandResult r = server_->Terminate(seconds(20));
  EXPECT_FALSE(r.timed_out) << "server ignored SIGTERM for 20 s";
  if (IsReferenceEtcd(server_->options().binary)) {
    // etcd runs its shutdown handlers, then re-raises the signal.
    EXPECT_EQ(r.term_signal, SIGTERM);
  } else {
    EXPECT_EQ(r.term_signal, 0) << "killed by signal " << r.term_signal;
    EXPECT_EQ(r.exit_code, 0);
  }

  ASSERT_TRUE(server_->Restart().ok());
  kv = etcdserverpb::KV::NewStub(server_->NewChannel());
  etcdserverpb::RangeResponse all = Get(kv.get(), "graceful/", "graceful0");
  EXPECT_EQ(all.header().revision(), last_rev);
  ASSERT_EQ(all.kvs_size(), 50);
  std::set<std::string> values;
  for (const auto& got : all.kvs()) values.insert(got.value());
  for (int i = 0; i < 50; ++i) EXPECT_EQ(values.count(absl::StrCat("v", i)), 1u) << i;
}

TEST_F(CrashTest, LeasesAndAttachedKeysSurviveSigkill) {
  auto channel = server_->NewChannel();
  auto lease = etcdserverpb::Lease::NewStub(channel);
  auto kv = etcdserverpb::KV::NewStub(channel);
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
    etcdserverpb::LeaseGrantRequest req;
    req.set_id(0x5151);
    req.set_ttl(100);
    etcdserverpb::LeaseGrantResponse resp;
    ASSERT_TRUE(lease->LeaseGrant(&ctx, req, &resp).ok());
  }
  for (const char* key : {"leased/a", "leased/b"}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
    etcdserverpb::PutRequest req;
    req.set_key(key);
    req.set_value("v");
    req.set_lease(0x5151);
    etcdserverpb::PutResponse resp;
    ASSERT_TRUE(kv->Put(&ctx, req, &resp).ok());
  }
  server_->Kill();
  ASSERT_TRUE(server_->Restart().ok());
  channel = server_->NewChannel();
  lease = etcdserverpb::Lease::NewStub(channel);
  kv = etcdserverpb::KV::NewStub(channel);

  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
  etcdserverpb::LeaseTimeToLiveRequest req;
  req.set_id(0x5151);
  req.set_keys(true);
  etcdserverpb::LeaseTimeToLiveResponse resp;
  grpc::Status st = lease->LeaseTimeToLive(&ctx, req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.id(), 0x5151);
  EXPECT_EQ(resp.grantedttl(), 100);
  EXPECT_GT(resp.ttl(), 0);
  EXPECT_LE(resp.ttl(), 100);
  std::set<std::string> keys(resp.keys().begin(), resp.keys().end());
  EXPECT_EQ(keys, (std::set<std::string>{"leased/a", "leased/b"}));
  etcdserverpb::RangeResponse r = Get(kv.get(), "leased/", "leased0");
  ASSERT_EQ(r.kvs_size(), 2);
  EXPECT_EQ(r.kvs(0).lease(), 0x5151);
  EXPECT_EQ(r.kvs(1).lease(), 0x5151);
}

}  // namespace
}  // namespace cppetcd::integration
