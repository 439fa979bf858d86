// The runner's own tests (no server): the fault schedule is a pure function
// of the seed, flags round-trip through replay.args, and the planted stale
// read is a violation the checker reports.
#include "runner.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "checker.h"
#include "faults.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "history.h"
#include "workload.h"

namespace cppetcd::robustness {
namespace {

using std::chrono::milliseconds;

std::string Describe(const std::vector<ScheduledFault>& s) {
  std::vector<std::string> parts;
  for (const ScheduledFault& f : s) {
    parts.push_back(absl::StrCat(FaultName(f.kind), "@", f.start.count(), "+", f.hold.count(),
                                 "/m", f.target, "/", f.param, "/", f.jitter_ms));
  }
  return absl::StrJoin(parts, " ");
}

TEST(ScheduleTest, SameSeedSameScheduleOtherSeedOther) {
  const auto kinds = AllFaultKinds();
  const auto a = MakeSchedule(42, 3, kinds, milliseconds(20'000));
  const auto b = MakeSchedule(42, 3, kinds, milliseconds(20'000));
  const auto c = MakeSchedule(43, 3, kinds, milliseconds(20'000));
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(Describe(a), Describe(b));
  EXPECT_NE(Describe(a), Describe(c));
}

TEST(ScheduleTest, InsideTheWindowInOrderAndCyclingThroughTheKinds) {
  const std::vector<FaultKind> kinds = {FaultKind::kKill, FaultKind::kPauseLeader,
                                        FaultKind::kPartition};
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    const auto s = MakeSchedule(seed, 5, kinds, milliseconds(15'000));
    ASSERT_GE(s.size(), 3u) << seed;
    std::set<FaultKind> first_three;
    for (size_t i = 0; i < s.size(); ++i) {
      EXPECT_LT(s[i].start, milliseconds(15'000));
      EXPECT_GE(s[i].target, 0);
      EXPECT_LT(s[i].target, 5);
      EXPECT_GT(s[i].hold, milliseconds(0));
      if (i > 0) {
        EXPECT_GE(s[i].start, s[i - 1].start + s[i - 1].hold) << seed;
      }
      if (i < 3) first_three.insert(s[i].kind);
    }
    EXPECT_EQ(first_three.size(), 3u) << "seed " << seed << ": " << Describe(s);
  }
  EXPECT_TRUE(MakeSchedule(1, 3, {}, milliseconds(15'000)).empty());
}

TEST(FaultNameTest, RoundTrips) {
  for (FaultKind k : AllFaultKinds()) {
    auto parsed = ParseFaultName(FaultName(k));
    ASSERT_TRUE(parsed.has_value()) << FaultName(k);
    EXPECT_EQ(*parsed, k);
  }
  EXPECT_FALSE(ParseFaultName("meteor").has_value());
}

// The power-loss wrapper gives each member its own undo log (outside its
// data dir) and fsync delay file, and keeps an LD_PRELOAD it was given.
TEST(PowerLossWrapperTest, PerMemberLogAndDelayFile) {
  if (PowerLossLibrary().empty() || PowerLossApplyTool().empty()) {
    GTEST_SKIP() << "power-loss interposer not built";
  }
  const std::string dir =
      (std::filesystem::temp_directory_path() / absl::StrCat("rb-powerloss-", ::getpid())).string();
  std::filesystem::create_directories(dir);
  auto wrapper = PowerLossWrapper(dir, "/bin/echo", {"m0", "m1"}, true, true);
  ASSERT_TRUE(wrapper.ok()) << wrapper.status();
  std::ifstream delay0(dir + "/fsync-delay.m0");
  int ms = -1;
  delay0 >> ms;
  EXPECT_EQ(ms, 0);
  ASSERT_TRUE(SetFsyncDelay(dir, "m1", 250).ok());
  std::ifstream delay1(dir + "/fsync-delay.m1");
  delay1 >> ms;
  EXPECT_EQ(ms, 250);
  std::stringstream script;
  script << std::ifstream(*wrapper).rdbuf();
  EXPECT_THAT(script.str(), ::testing::HasSubstr("CPPETCD_POWERLOSS_DIR=\"$data\""));
  EXPECT_THAT(script.str(), ::testing::HasSubstr(dir + "/powerloss.$name.log"));
  EXPECT_THAT(script.str(), ::testing::HasSubstr(dir + "/fsync-delay.$name"));
  EXPECT_THAT(script.str(), ::testing::HasSubstr("${LD_PRELOAD:+:$LD_PRELOAD}"));
  EXPECT_EQ(PowerLossLog(dir, "m0"), dir + "/powerloss.m0.log");
  std::filesystem::remove_all(dir);
}

// Both preloading wrappers chained as the runner chains them (power-loss
// outside, clock inside): the server must end up with both libraries. The
// clock wrapper once replaced LD_PRELOAD, so every power loss of a run that
// also had clock jumps was a plain SIGKILL.
TEST(WrapperChainTest, ServerGetsBothPreloadedLibraries) {
  if (PowerLossLibrary().empty() || FaketimeLibrary().empty()) {
    GTEST_SKIP() << "power-loss interposer or libfaketime missing";
  }
  const std::string dir =
      (std::filesystem::temp_directory_path() / absl::StrCat("rb-chain-", ::getpid())).string();
  std::filesystem::create_directories(dir + "/m0.data");
  const std::string printer = dir + "/print-preload";
  {
    std::ofstream out(printer);
    out << "#!/bin/sh\necho \"$LD_PRELOAD\"\n";
  }
  ASSERT_EQ(::chmod(printer.c_str(), 0755), 0);
  auto clock = ClockWrapper(dir, printer, {"m0"});
  ASSERT_TRUE(clock.ok()) << clock.status();
  auto outer = PowerLossWrapper(dir, *clock, {"m0"}, true, true);
  ASSERT_TRUE(outer.ok()) << outer.status();
  const std::string cmd = absl::StrCat(*outer, " --name m0 --data-dir ", dir, "/m0.data");
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[4096] = {0};
  const size_t n = std::fread(buf, 1, sizeof(buf) - 1, p);
  ::pclose(p);
  const std::string preload(buf, n);
  EXPECT_THAT(preload, ::testing::HasSubstr(PowerLossLibrary()));
  EXPECT_THAT(preload, ::testing::HasSubstr(FaketimeLibrary()));
  std::filesystem::remove_all(dir);
}

TEST(RunnerArgsTest, ParsesAndRejects) {
  auto o = ParseRunnerArgs({"--seed", "7", "--runs=3", "--members", "5", "--faults",
                            "kill,pause-leader", "--duration-ms=2000", "--clients", "2"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->seed, 7u);
  EXPECT_EQ(o->runs, 3);
  EXPECT_EQ(o->members, 5);
  EXPECT_THAT(o->faults, ::testing::ElementsAre(FaultKind::kKill, FaultKind::kPauseLeader));
  EXPECT_EQ(o->duration, milliseconds(2000));
  EXPECT_EQ(o->clients, 2);
  EXPECT_FALSE(ParseRunnerArgs({"--members", "4"}).ok());
  EXPECT_FALSE(ParseRunnerArgs({"--faults", "kill,meteor"}).ok());
  EXPECT_FALSE(ParseRunnerArgs({"--seed"}).ok());
  EXPECT_FALSE(ParseRunnerArgs({"--frobnicate"}).ok());
  EXPECT_FALSE(ParseRunnerArgs({"--plant", "lost-write"}).ok());
  auto none = ParseRunnerArgs({"--faults", "none"});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->faults.empty());
}

TEST(RunnerArgsTest, ReplayReadsTheSavedFlagsAndRunsOneSeed) {
  RunnerOptions saved;
  saved.members = 5;
  saved.faults = {FaultKind::kReplace, FaultKind::kEnospc};
  saved.duration = milliseconds(3000);
  saved.clients = 6;
  saved.plant = "stale-read";
  const std::string dir =
      (std::filesystem::temp_directory_path() / absl::StrCat("rb-replay-", ::getpid())).string();
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/replay.args") << absl::StrJoin(ReplayArgs(saved, 99), "\n") << "\n";
  auto o = ParseRunnerArgs({"--replay", dir, "--out", "/tmp/x"});
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->seed, 99u);
  EXPECT_EQ(o->runs, 1);
  EXPECT_EQ(o->members, 5);
  EXPECT_EQ(o->faults, saved.faults);
  EXPECT_EQ(o->duration, saved.duration);
  EXPECT_EQ(o->clients, 6);
  EXPECT_EQ(o->plant, "stale-read");
  EXPECT_EQ(o->out, "/tmp/x");
  auto by_seed = ParseRunnerArgs({"--replay", "12", "--runs", "5"});
  ASSERT_TRUE(by_seed.ok());
  EXPECT_EQ(by_seed->seed, 12u);
  EXPECT_EQ(by_seed->runs, 1);
  EXPECT_FALSE(ParseRunnerArgs({"--replay", "/nonexistent/dir"}).ok());
}

Operation Op(int64_t id, OpKind kind, const std::string& key, const std::string& value,
             int64_t invoke, int64_t complete, int64_t revision) {
  Operation op;
  op.id = id;
  op.client = static_cast<int>(id);
  op.kind = kind;
  op.key = key;
  op.value = kind == OpKind::kPut ? value : "";
  op.invoke_ns = invoke;
  op.complete_ns = complete;
  op.outcome = Outcome::kOk;
  op.revision = revision;
  if (kind == OpKind::kGet) op.found = KeyValue{key, value, revision, 2, 2, 0};
  return op;
}

// Only gRPC's own "no connection" Unavailable is a call that was never sent;
// any other Unavailable (a connection lost mid-call, the server's own) may
// have been applied.
TEST(ClassifyStatusTest, OnlyANeverSentCallIsAFailureAmongUnavailables) {
  using grpc::Status;
  using grpc::StatusCode;
  EXPECT_EQ(ClassifyStatus(Status::OK), Outcome::kOk);
  EXPECT_EQ(ClassifyStatus(Status(StatusCode::UNAVAILABLE,
                                  "failed to connect to all addresses; last error: UNKNOWN: "
                                  "ipv4:127.0.0.1:1: Failed to connect to remote host: "
                                  "Connection refused")),
            Outcome::kFailed);
  EXPECT_EQ(ClassifyStatus(Status(StatusCode::UNAVAILABLE, "Socket closed")), Outcome::kUnknown);
  EXPECT_EQ(ClassifyStatus(Status(StatusCode::UNAVAILABLE, "etcdserver: leader changed")),
            Outcome::kUnknown);
  EXPECT_EQ(ClassifyStatus(Status(StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded")),
            Outcome::kUnknown);
  EXPECT_EQ(ClassifyStatus(Status(StatusCode::INVALID_ARGUMENT, "etcdserver: key is not provided")),
            Outcome::kFailed);
}

TEST(PlantStaleReadTest, PlantedReadIsAViolationTheCheckerReports) {
  History h;
  h.operations.push_back(Op(1, OpKind::kPut, "k", "v1", 10, 20, 2));
  h.operations.push_back(Op(2, OpKind::kPut, "k", "v2", 30, 40, 3));
  h.operations.push_back(Op(3, OpKind::kGet, "k", "v2", 50, 60, 3));
  h.operations[2].found->version = 2;
  h.operations[2].found->create_revision = 2;
  EXPECT_EQ(CheckLinearizability(h).verdict, Verdict::kOk);
  const std::string planted = PlantStaleRead(&h);
  EXPECT_THAT(planted, ::testing::HasSubstr("op 3"));
  ASSERT_TRUE(h.operations[2].found.has_value());
  EXPECT_EQ(h.operations[2].found->value, "v1");
  EXPECT_EQ(CheckLinearizability(h).verdict, Verdict::kViolation);
}

TEST(PlantStaleReadTest, NothingToPlantWithoutAnOlderCompletedWrite) {
  History h;
  h.operations.push_back(Op(1, OpKind::kPut, "k", "v1", 10, 40, 2));
  h.operations.push_back(Op(2, OpKind::kPut, "k", "v2", 30, 45, 3));  // concurrent with 1
  h.operations.push_back(Op(3, OpKind::kGet, "k", "v2", 50, 60, 3));
  EXPECT_EQ(PlantStaleRead(&h), "");
  EXPECT_EQ(h.operations[2].found->value, "v2");
}

}  // namespace
}  // namespace cppetcd::robustness
