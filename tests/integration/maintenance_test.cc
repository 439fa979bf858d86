// Maintenance end to end on a 3-member cluster, driven by etcdctl as the
// operators' runbook does: `defrag --cluster` under a concurrent write load
// (no request fails; the longest write stall is reported), `endpoint hashkv
// --cluster` equal after writes, compaction and defragmentation, the NOSPACE
// alarm at a small quota recovered by compaction + defrag + disarm (and
// etcd's e2e TestCtlV3Alarm at a 13-page quota), and
// CORRUPT detection on a member whose data was altered while it was stopped.
// Runs against etcd 3.4 as well (CPPETCD_TEST_SERVER=/usr/bin/etcd).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cluster_harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness.h"

namespace cppetcd::integration {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

constexpr auto kTimeout = std::chrono::seconds(30);

CommandResult Ctl(const std::string& ep, const std::vector<std::string>& args) {
  return Etcdctl(ep, args, "", kTimeout);
}

// `etcdctl endpoint hashkv --cluster`: the hash of each member.
std::vector<std::string> HashKvs(const std::string& ep) {
  CommandResult r = Ctl(ep, {"endpoint", "hashkv", "--cluster"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> hashes;
  for (const std::string& line : SplitLines(r.out)) {
    // "<endpoint>, <hash>"
    size_t comma = line.find(", ");
    if (comma != std::string::npos) hashes.push_back(line.substr(comma + 2));
  }
  return hashes;
}

int64_t CurrentRevision(const std::string& ep) {
  CommandResult r = Ctl(ep, {"get", "nosuchkey-rev", "-w", "fields"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const std::string& line : SplitLines(r.out)) {
    if (line.rfind("\"Revision\" : ", 0) == 0) return std::stoll(line.substr(13));
  }
  return 0;
}

int64_t DbSize(ClusterMember& m) {
  auto st = m.Status();
  return st.ok() ? st->dbsize() : -1;
}

// Puts many ~1 KB values and deletes most of them: free pages to reclaim.
void Churn(const std::string& ep, int n) {
  std::string big(1000, 'x');
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(Ctl(ep, {"put", absl::StrCat("churn", i % 20), big}).exit_code, 0);
  }
}

TEST(MaintenanceTest, DefragClusterUnderWriteLoadFailsNoRequestAndKeepsHashesEqual) {
  CPPETCD_REQUIRE_SERVER();
  TempDir dir;
  auto c = Cluster::Start(Cluster::Options{}, dir.path());
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string ep = (*c)->member(0).ClientEndpoint();
  Churn(ep, 60);

  // A writer on its own connection, one put at a time, until told to stop.
  std::atomic<bool> stop{false};
  std::atomic<int> failed{0}, written{0};
  std::atomic<int64_t> max_stall_us{0};
  std::string first_error;
  std::thread writer([&] {
    auto stub = etcdserverpb::KV::NewStub((*c)->member(1).NewChannel());
    for (int i = 0; i < 20000 && !stop.load(); ++i) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      etcdserverpb::PutRequest req;
      req.set_key(absl::StrCat("load", i % 200));
      req.set_value(std::string(500, 'a' + i % 26));
      etcdserverpb::PutResponse resp;
      auto start = std::chrono::steady_clock::now();
      grpc::Status s = stub->Put(&ctx, req, &resp);
      int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(
                       std::chrono::steady_clock::now() - start)
                       .count();
      if (!s.ok()) {
        if (failed.fetch_add(1) == 0) first_error = s.error_message();
      } else {
        ++written;
      }
      int64_t prev = max_stall_us.load();
      while (us > prev && !max_stall_us.compare_exchange_weak(prev, us)) {
      }
    }
  });
  ASSERT_TRUE(PollUntil([&] { return written.load() >= 50; }, kTimeout));
  const int64_t size_before = DbSize((*c)->member(0));
  for (int round = 0; round < 2; ++round) {
    CommandResult r = Ctl(ep, {"defrag", "--cluster"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 3) << r.out;
    EXPECT_THAT(r.out, HasSubstr("Finished defragmenting etcd member["));
  }
  const int written_during = written.load();
  stop = true;
  writer.join();
  EXPECT_EQ(failed.load(), 0) << first_error;
  std::fprintf(stderr,
               "[maintenance] defrag --cluster x2 under load: %d puts, longest put %.1f ms, "
               "db size of member 0 before %lld after %lld bytes\n",
               written_during, max_stall_us.load() / 1000.0, static_cast<long long>(size_before),
               static_cast<long long>(DbSize((*c)->member(0))));

  // Same data everywhere, also after a compaction and another defrag.
  ASSERT_EQ(Ctl(ep, {"put", "barrier", "1"}).exit_code, 0);
  auto equal_hashes = [&] {
    std::vector<std::string> h = HashKvs(ep);
    return h.size() == 3 && std::set<std::string>(h.begin(), h.end()).size() == 1;
  };
  EXPECT_TRUE(PollUntil(equal_hashes, kTimeout)) << Ctl(ep, {"endpoint", "hashkv", "--cluster"}).out;
  ASSERT_EQ(Ctl(ep, {"compact", std::to_string(CurrentRevision(ep))}).exit_code, 0);
  ASSERT_EQ(Ctl(ep, {"defrag", "--cluster"}).exit_code, 0);
  ASSERT_EQ(Ctl(ep, {"put", "barrier", "2"}).exit_code, 0);
  EXPECT_TRUE(PollUntil(equal_hashes, kTimeout)) << Ctl(ep, {"endpoint", "hashkv", "--cluster"}).out;
}

TEST(MaintenanceTest, NospaceAlarmRecoveredByCompactDefragDisarm) {
  CPPETCD_REQUIRE_SERVER();
  TempDir dir;
  Cluster::Options opts;
  opts.extra_flags = {"--quota-backend-bytes=3000000"};
  auto c = Cluster::Start(opts, dir.path());
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string ep = (*c)->member(0).ClientEndpoint();
  const std::string value(100000, 'v');
  CommandResult full;
  for (int i = 0; i < 200; ++i) {
    full = Ctl(ep, {"put", absl::StrCat("big", i % 4), value});
    if (full.exit_code != 0) break;
  }
  ASSERT_NE(full.exit_code, 0) << "quota never reached";
  EXPECT_THAT(StripClientLogLines(full.err),
              HasSubstr("Error: etcdserver: mvcc: database space exceeded"));

  // Alarms in any order (etcd lists them from a Go map); member 0's is
  // there, and the other members' own ones if their files are over the
  // quota too (it depends on their page allocation).
  auto sorted_lines = [](const std::string& s) {
    std::vector<std::string> lines = SplitLines(s);
    std::sort(lines.begin(), lines.end());
    return lines;
  };
  std::set<std::string> member_alarms;
  for (int i = 0; i < 3; ++i) {
    auto id = (*c).get()->MemberId(i);
    ASSERT_TRUE(id.ok());
    member_alarms.insert(absl::StrCat("memberID:", *id, " alarm:NOSPACE "));
  }
  auto id0 = (*c).get()->MemberId(0);
  auto check_listed = [&](const std::vector<std::string>& lines) {
    EXPECT_THAT(lines, ::testing::Contains(absl::StrCat("memberID:", *id0, " alarm:NOSPACE ")));
    for (const std::string& line : lines) EXPECT_EQ(member_alarms.count(line), 1u) << line;
  };
  CommandResult list = Ctl(ep, {"alarm", "list"});
  EXPECT_EQ(list.exit_code, 0);
  check_listed(sorted_lines(list.out));
  // Writes fail on every member; reads and deletes still work (etcd 3.4).
  EXPECT_NE(Ctl((*c)->member(2).ClientEndpoint(), {"put", "small", "x"}).exit_code, 0);
  CommandResult get = Ctl(ep, {"get", "big1", "--print-value-only"});
  EXPECT_EQ(get.exit_code, 0);
  EXPECT_EQ(get.out, value + "\n");
  EXPECT_EQ(Ctl(ep, {"del", "big3"}).out, "1\n");

  // The runbook: compact, defrag every member, disarm.
  const int64_t size_before = DbSize((*c)->member(0));
  CommandResult compact = Ctl(ep, {"compact", std::to_string(CurrentRevision(ep))});
  EXPECT_EQ(compact.exit_code, 0) << compact.err;
  EXPECT_THAT(compact.out, MatchesRegex("compacted revision [0-9]+\n"));
  CommandResult defrag = Ctl(ep, {"defrag", "--cluster"});
  EXPECT_EQ(defrag.exit_code, 0) << defrag.err;
  const int64_t size_after = DbSize((*c)->member(0));
  std::fprintf(stderr, "[maintenance] NOSPACE: db size %lld -> %lld bytes after defrag\n",
               static_cast<long long>(size_before), static_cast<long long>(size_after));
  EXPECT_LT(size_after, size_before);
  std::vector<std::string> listed = sorted_lines(Ctl(ep, {"alarm", "list"}).out);
  check_listed(listed);
  CommandResult disarm = Ctl(ep, {"alarm", "disarm"});
  EXPECT_EQ(disarm.exit_code, 0) << disarm.err;
  EXPECT_EQ(sorted_lines(disarm.out), listed) << disarm.out;
  EXPECT_EQ(Ctl(ep, {"alarm", "list"}).out, "");
  CommandResult put = Ctl(ep, {"put", "small", "x"});
  EXPECT_EQ(put.exit_code, 0) << put.err;
  EXPECT_EQ(put.out, "OK\n");
}

// etcd 3.4's e2e TestCtlV3Alarm: a fresh cluster with a 13-page quota
// (53248 bytes, "the boltdb minimum working set is six pages") takes a
// small put, then 4 KiB puts until NOSPACE; the alarm is listed, /health is
// false, puts fail; after compaction (physical), defrag and disarm a small
// put succeeds. etcd takes three 4 KiB puts here; cppetcd two (its quota
// counts LMDB's pages in use: docs/operations.md, runbook 10).
TEST(MaintenanceTest, EtcdE2eAlarmScenarioAtThirteenPageQuota) {
  CPPETCD_REQUIRE_SERVER();
  TempDir dir;
  Cluster::Options opts;
  opts.extra_flags = {absl::StrCat("--quota-backend-bytes=", 13 * 4096)};
  auto c = Cluster::Start(opts, dir.path());
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string ep = (*c)->member(0).ClientEndpoint();
  CommandResult small = Ctl(ep, {"put", "1st_test", std::string(64, 'a')});
  ASSERT_EQ(small.exit_code, 0) << small.err;
  ASSERT_EQ(small.out, "OK\n");
  const std::string page(4096, 'b');
  CommandResult full;
  int accepted = 0;
  for (int i = 0; i < 40; ++i) {
    full = Ctl(ep, {"put", "2nd_test", page});
    if (full.exit_code != 0) break;
    ++accepted;
  }
  std::fprintf(stderr, "[maintenance] 13-page quota: %d puts of 4 KiB accepted\n", accepted);
  ASSERT_NE(full.exit_code, 0) << "quota never reached";
  EXPECT_THAT(StripClientLogLines(full.err),
              HasSubstr("Error: etcdserver: mvcc: database space exceeded"));
  EXPECT_GE(accepted, 1);
  auto id0 = (*c).get()->MemberId(0);
  ASSERT_TRUE(id0.ok());
  EXPECT_THAT(Ctl(ep, {"alarm", "list"}).out,
              HasSubstr(absl::StrCat("memberID:", *id0, " alarm:NOSPACE")));
  CommandResult health =
      RunCommand({"/usr/bin/curl", "-s", absl::StrCat("http://", ep, "/health")}, "", {}, kTimeout);
  EXPECT_EQ(health.out, "{\"health\":\"false\"}\n");
  CommandResult third = Ctl(ep, {"put", "3rd_test", std::string(64, 'a')});
  EXPECT_NE(third.exit_code, 0);
  EXPECT_THAT(StripClientLogLines(third.err), HasSubstr("database space exceeded"));
  CommandResult compact =
      Ctl(ep, {"compact", std::to_string(CurrentRevision(ep)), "--physical"});
  EXPECT_EQ(compact.exit_code, 0) << compact.err;
  CommandResult defrag = Ctl(ep, {"defrag", "--cluster"});
  EXPECT_EQ(defrag.exit_code, 0) << defrag.err;
  CommandResult disarm = Ctl(ep, {"alarm", "disarm"});
  EXPECT_EQ(disarm.exit_code, 0) << disarm.err;
  EXPECT_THAT(disarm.out, HasSubstr("alarm:NOSPACE"));
  CommandResult fourth = Ctl(ep, {"put", "4th_test", std::string(64, 'a')});
  EXPECT_EQ(fourth.exit_code, 0) << fourth.err;
  EXPECT_EQ(fourth.out, "OK\n");
}

// Overwrites every occurrence of `from` in the file with `to` (same length):
// neither LMDB nor bbolt checksum their data pages, so this alters a stored
// value the way a disk fault would.
int AlterFile(const std::string& path, const std::string& from, const std::string& to) {
  std::ifstream in(path, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  int n = 0;
  for (size_t pos = data.find(from); pos != std::string::npos; pos = data.find(from, pos + 1)) {
    data.replace(pos, to.size(), to);
    ++n;
  }
  std::ofstream out(path, std::ios::binary | std::ios::in | std::ios::out);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  return n;
}

TEST(MaintenanceTest, CorruptionDetectedAtStartAndByThePeriodicCheck) {
  CPPETCD_REQUIRE_SERVER();
  TempDir dir;
  Cluster::Options opts;
  opts.extra_flags = {"--experimental-corrupt-check-time=1s"};
  auto c = Cluster::Start(opts, dir.path());
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string ep = (*c)->member(0).ClientEndpoint();
  const std::string original = "corrupt-check-value-AAAAAAAAAAAA";
  const std::string altered = "corrupt-check-value-BBBBBBBBBBBB";
  ASSERT_EQ(Ctl(ep, {"put", "victim", original}).exit_code, 0);
  ASSERT_EQ(Ctl(ep, {"put", "other", "1"}).exit_code, 0);
  // Every member has applied both puts.
  auto hashes_equal = [&] {
    std::vector<std::string> h = HashKvs(ep);
    return h.size() == 3 && std::set<std::string>(h.begin(), h.end()).size() == 1;
  };
  ASSERT_TRUE(PollUntil(hashes_equal, kTimeout));

  ClusterMember& m = (*c)->member(2);
  m.Terminate();
  ASSERT_GT(AlterFile(m.data_dir() + "/member/snap/db", original, altered), 0);

  // With the initial check the altered member refuses to start. (etcd
  // 3.4.23 does not: its start-up check compares with no peer and passes;
  // later etcd versions refuse, as cppetcd does.)
  std::vector<std::string> args = m.args();
  if (!IsReferenceEtcd(ServerBinary())) {
    std::vector<std::string> checked = args;
    checked.push_back("--experimental-initial-corrupt-check=true");
    m.set_args(checked);
    ASSERT_TRUE(m.Spawn().ok());
    ASSERT_TRUE(PollUntil([&] { return m.Exited(); }, kTimeout)) << m.ReadLog();
    EXPECT_THAT(m.ReadLog(), HasSubstr("found data inconsistency with peers"));
  }

  // Without it, it starts, and the leader's periodic check raises CORRUPT.
  m.set_args(args);
  ASSERT_TRUE(m.Spawn().ok());
  ASSERT_TRUE(m.WaitServing(kTimeout, /*serializable=*/true).ok());
  // Raised for member 0, which etcdctl leaves out (a zero field).
  ASSERT_TRUE(PollUntil([&] { return Ctl(ep, {"alarm", "list"}).out == "alarm:CORRUPT \n"; },
                        kTimeout))
      << Ctl(ep, {"alarm", "list"}).out;
  CommandResult put = Ctl(ep, {"put", "after", "x"});
  EXPECT_NE(put.exit_code, 0);
  EXPECT_THAT(StripClientLogLines(put.err), HasSubstr("Error: etcdserver: corrupt cluster"));
  // Reads still work (etcd 3.4 serves ranges outside the corrupt applier).
  CommandResult get = Ctl(ep, {"get", "other", "--print-value-only"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "1\n");
}

// A real crash (the named crash points of include/cppetcd/server/
// crash_points.h, armed in cppetcd-crashtest through the environment the
// child inherits) just before and just after the defragmentation's rename:
// the member restarts with all its data.
TEST(MaintenanceTest, CrashDuringDefragLeavesAUsableDatabase) {
  CPPETCD_REQUIRE_SERVER();
  if (IsReferenceEtcd(ServerBinary())) GTEST_SKIP() << "cppetcd's crash points";
  if (CrashTestServerBinary().empty()) GTEST_SKIP() << "cppetcd-crashtest not built";
  for (const char* step : {"defrag_before_rename", "defrag_after_rename"}) {
    SCOPED_TRACE(step);
    TempDir dir;
    ServerProcess::Options opts;
    opts.binary = CrashTestServerBinary();
    opts.data_dir = dir.path() + "/data";
    ::setenv("CPPETCD_CRASH_POINT", step, 1);
    auto server = ServerProcess::Start(opts);
    ::unsetenv("CPPETCD_CRASH_POINT");
    ASSERT_TRUE(server.ok()) << server.status();
    const std::string ep = (*server)->ClientEndpoint();
    Churn(ep, 40);
    ASSERT_EQ(Ctl(ep, {"put", "last", "value"}).exit_code, 0);
    EXPECT_NE(Ctl(ep, {"defrag"}).exit_code, 0);  // the member died under it
    CommandResult ended = (*server)->Terminate(std::chrono::seconds(10));
    EXPECT_EQ(ended.exit_code, 99) << "crash point not reached";
    ASSERT_TRUE((*server)->Restart().ok()) << (*server)->ReadLog();
    CommandResult get = Ctl(ep, {"get", "last", "--print-value-only"});
    EXPECT_EQ(get.out, "value\n") << get.err;
    CommandResult count = Ctl(ep, {"get", "churn", "--prefix", "--keys-only"});
    EXPECT_EQ(SplitLines(count.out).size() / 2, 20u) << count.out;  // key + blank line each
    // And it defragments fine now.
    EXPECT_EQ(Ctl(ep, {"defrag"}).exit_code, 0);
    ASSERT_EQ(Ctl(ep, {"put", "after", "1"}).exit_code, 0);
  }
}

// The shipped binary has no armed crash points: the same environment
// variable that kills cppetcd-crashtest at the defragmentation's rename
// does nothing to cppetcd.
TEST(MaintenanceTest, ShippedBinaryIgnoresTheCrashPointVariable) {
  CPPETCD_REQUIRE_SERVER();
  if (IsReferenceEtcd(ServerBinary())) GTEST_SKIP() << "cppetcd's crash points";
  TempDir dir;
  ServerProcess::Options opts;
  opts.data_dir = dir.path() + "/data";
  ::setenv("CPPETCD_CRASH_POINT", "defrag_before_rename", 1);
  auto server = ServerProcess::Start(opts);
  ::unsetenv("CPPETCD_CRASH_POINT");
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string ep = (*server)->ClientEndpoint();
  ASSERT_EQ(Ctl(ep, {"put", "k", "v"}).exit_code, 0);
  CommandResult defrag = Ctl(ep, {"defrag"});
  EXPECT_EQ(defrag.exit_code, 0) << defrag.err;
  EXPECT_EQ(Ctl(ep, {"get", "k", "--print-value-only"}).out, "v\n");
}

}  // namespace
}  // namespace cppetcd::integration
