// A small linearizability check of one register (a single key) on a single
// member: concurrent writers and readers, each on its own connection; the
// history is checked with the revisions the server returns.
//
// A write's revision orders it among all writes (etcd: one revision per
// Put). A read R returns the value and mod_revision of some write W. R is
// linearizable only if
//   (1) W is a real write with that value, invoked before R returned, and
//   (2) no write acknowledged before R was invoked has a larger revision
//       than W (R must not return a value older than a completed write).
// With read-your-writes and monotonic reads per client as special cases.
#include <algorithm>
#include <atomic>
#include <iostream>
#include <iterator>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "gtest/gtest.h"
#include "harness.h"

namespace cppetcd::integration {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::seconds;

constexpr int kWriters = 4;
constexpr int kReaders = 4;
constexpr int kWritesPerWriter = 100;
constexpr int kReadsPerReader = 200;
const char kKey[] = "lin/register";

struct WriteOp {
  std::string value;
  Clock::time_point invoked, returned;
  int64_t revision = 0;  // 0: not acknowledged
};

struct ReadOp {
  Clock::time_point invoked, returned;
  bool ok = false;
  bool found = false;
  std::string value;
  int64_t mod_revision = 0;
};

TEST(LinearizabilityTest, SingleRegisterUnderConcurrentClients) {
  CPPETCD_REQUIRE_SERVER();
  TempDir tmp;
  ServerProcess::Options o;
  o.data_dir = tmp.path() + "/data";
  auto started = ServerProcess::Start(o);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<ServerProcess> server = std::move(*started);

  std::vector<std::vector<WriteOp>> writes(kWriters);
  std::vector<std::vector<ReadOp>> reads(kReaders + kWriters);
  std::atomic<int> writers_done{0};
  std::vector<std::thread> threads;

  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      auto kv = etcdserverpb::KV::NewStub(server->NewChannel());
      // Read-your-writes: a second connection reads right after each ack.
      auto kv_read = etcdserverpb::KV::NewStub(server->NewChannel());
      for (int i = 0; i < kWritesPerWriter; ++i) {
        WriteOp op;
        op.value = absl::StrCat("w", w, "-", i);
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
        etcdserverpb::PutRequest req;
        req.set_key(kKey);
        req.set_value(op.value);
        etcdserverpb::PutResponse resp;
        op.invoked = Clock::now();
        grpc::Status st = kv->Put(&ctx, req, &resp);
        op.returned = Clock::now();
        if (st.ok()) op.revision = resp.header().revision();
        writes[w].push_back(op);
        if (i % 4 == 0) {
          ReadOp r;
          grpc::ClientContext rctx;
          rctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
          etcdserverpb::RangeRequest rreq;
          rreq.set_key(kKey);
          etcdserverpb::RangeResponse rresp;
          r.invoked = Clock::now();
          grpc::Status rst = kv_read->Range(&rctx, rreq, &rresp);
          r.returned = Clock::now();
          r.ok = rst.ok();
          if (r.ok && rresp.kvs_size() > 0) {
            r.found = true;
            r.value = rresp.kvs(0).value();
            r.mod_revision = rresp.kvs(0).mod_revision();
          }
          reads[kReaders + w].push_back(r);
        }
      }
      writers_done.fetch_add(1);
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&, r] {
      auto kv = etcdserverpb::KV::NewStub(server->NewChannel());
      for (int i = 0; i < kReadsPerReader && writers_done.load() < kWriters; ++i) {
        ReadOp op;
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
        etcdserverpb::RangeRequest req;
        req.set_key(kKey);
        etcdserverpb::RangeResponse resp;
        op.invoked = Clock::now();
        grpc::Status st = kv->Range(&ctx, req, &resp);
        op.returned = Clock::now();
        op.ok = st.ok();
        if (op.ok && resp.kvs_size() > 0) {
          op.found = true;
          op.value = resp.kvs(0).value();
          op.mod_revision = resp.kvs(0).mod_revision();
        }
        reads[r].push_back(op);
      }
    });
  }
  for (auto& t : threads) t.join();

  // Index writes by revision.
  std::map<int64_t, const WriteOp*> by_rev;
  int acked = 0;
  for (const auto& ws : writes) {
    for (const auto& w : ws) {
      ASSERT_NE(w.revision, 0) << "write " << w.value << " failed on a healthy server";
      ++acked;
      auto [it, inserted] = by_rev.emplace(w.revision, &w);
      EXPECT_TRUE(inserted) << "two writes acknowledged at revision " << w.revision;
    }
  }
  ASSERT_EQ(acked, kWriters * kWritesPerWriter);

  // For the check below: acknowledged writes sorted by return time, with the
  // running maximum revision.
  std::vector<std::pair<Clock::time_point, int64_t>> acks;
  for (const auto& ws : writes) {
    for (const auto& w : ws) acks.emplace_back(w.returned, w.revision);
  }
  std::sort(acks.begin(), acks.end());
  for (size_t i = 1; i < acks.size(); ++i) {
    acks[i].second = std::max(acks[i].second, acks[i - 1].second);
  }
  auto max_rev_acked_before = [&](Clock::time_point t) -> int64_t {
    auto it = std::lower_bound(acks.begin(), acks.end(), std::make_pair(t, int64_t{-1}));
    return it == acks.begin() ? 0 : std::prev(it)->second;
  };

  int checked = 0, violations = 0;
  for (size_t c = 0; c < reads.size(); ++c) {
    int64_t last_seen = 0;
    for (const auto& r : reads[c]) {
      ASSERT_TRUE(r.ok) << "read failed on a healthy server";
      ++checked;
      const int64_t floor = max_rev_acked_before(r.invoked);
      const int64_t got = r.found ? r.mod_revision : 0;
      if (got < floor) {
        if (++violations <= 5) {
          ADD_FAILURE() << "stale read on client " << c << ": mod_revision " << got
                        << " but revision " << floor << " was acknowledged before the read began";
        }
      }
      if (got < last_seen) {
        ADD_FAILURE() << "non-monotonic reads on client " << c << ": " << last_seen << " then "
                      << got;
      }
      last_seen = got;
      if (!r.found) continue;
      auto it = by_rev.find(r.mod_revision);
      if (it == by_rev.end()) {
        ADD_FAILURE() << "read returned revision " << r.mod_revision << " no write produced";
        continue;
      }
      EXPECT_EQ(it->second->value, r.value) << "revision " << r.mod_revision;
      EXPECT_LT(it->second->invoked, r.returned)
          << "read saw write " << it->second->value << " before it was sent";
    }
  }
  EXPECT_EQ(violations, 0);
  EXPECT_GT(checked, kWriters * kWritesPerWriter / 4);
  std::cout << "checked " << checked << " reads against " << acked << " writes\n";
}

}  // namespace
}  // namespace cppetcd::integration
