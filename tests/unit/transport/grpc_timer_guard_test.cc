// GrpcTimerGuard: gRPC timers keep firing after the wall clock steps back.
//
// The step is made with libfaketime in a child process (this binary re-run
// with LD_PRELOAD): its wall clock reads +3600 s while gRPC's timer thread goes
// to sleep, then +0 again, which is what a process sees when NTP steps a clock
// back by an hour. An alarm due 300 ms later (on the monotonic clock) must
// fire within 3 s. Without the guard it does not (the timer thread sleeps for
// the hour): the second test shows the hazard is real on this gRPC, so the
// first can fail.
#include "cppetcd/transport/grpc_timer_guard.h"

#include <grpc/support/time.h>
#include <grpcpp/alarm.h>
#include <grpcpp/completion_queue.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

extern char** environ;

namespace cppetcd::transport {
namespace {

using std::chrono::milliseconds;

// Debian's gRPC and Abseil are not TSan-instrumented (as in
// grpc_transport_test.cc): the tests that run gRPC skip themselves in TSan
// builds; the ASan build runs them.
#if defined(__SANITIZE_THREAD__)
#define SKIP_UNDER_TSAN() GTEST_SKIP() << "gRPC is not TSan-instrumented here"
#else
#define SKIP_UNDER_TSAN() (void)0
#endif

constexpr char kChildEnv[] = "CPPETCD_TIMER_GUARD_CHILD";  // "guard" or "bare"
constexpr char kClockEnv[] = "CPPETCD_TIMER_GUARD_CLOCK";  // libfaketime's file
constexpr int kFired = 0, kStalled = 3, kSetupFailed = 4;

std::string FakeTimeLibrary() {
  for (const char* p : {"/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                        "/usr/lib/faketime/libfaketime.so.1"}) {
    if (::access(p, R_OK) == 0) return p;
  }
  return "";
}

// The ASan or TSan runtime this process runs with (from /proc/self/maps), or "".
std::string SanitizerRuntime() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    const size_t slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    if (path.find("/libasan.so") != std::string::npos ||
        path.find("/libtsan.so") != std::string::npos) {
      return path;
    }
  }
  return "";
}

bool WriteClock(const std::string& path, const char* offset) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << offset << "\n";
    if (!f) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

// The child's scenario; exits the process with kFired / kStalled.
[[noreturn]] void RunChild(bool guarded, const std::string& clock) {
  GrpcTimerGuard guard;
  if (guarded && !guard.Start(milliseconds(200)).ok()) ::_exit(kSetupFailed);
  grpc::CompletionQueue cq;
  if (!WriteClock(clock, "+3600s")) ::_exit(kSetupFailed);
  // Due in 300 ms on the monotonic clock. Setting it wakes gRPC's timer thread,
  // which goes back to sleep with a deadline taken from the jumped wall clock.
  grpc::Alarm alarm;
  gpr_timespec due = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(300, GPR_TIMESPAN));
  int tag = 0;
  alarm.Set(&cq, due, &tag);
  std::this_thread::sleep_for(milliseconds(100));
  if (!WriteClock(clock, "+0")) ::_exit(kSetupFailed);  // the step back
  void* got = nullptr;
  bool ok = false;
  gpr_timespec limit = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(3000, GPR_TIMESPAN));
  grpc::CompletionQueue::NextStatus s = cq.AsyncNext(&got, &ok, limit);
  const int code = s == grpc::CompletionQueue::GOT_EVENT && got == &tag ? kFired : kStalled;
  alarm.Cancel();
  std::fflush(stdout);
  ::_exit(code);
}

TEST(GrpcTimerGuardChild, Scenario) {
  SKIP_UNDER_TSAN();
  const char* mode = ::getenv(kChildEnv);
  const char* clock = ::getenv(kClockEnv);
  if (mode == nullptr || clock == nullptr) GTEST_SKIP() << "runs only as the child of the tests below";
  RunChild(std::string(mode) == "guard", clock);
}

// Runs the scenario in a child under libfaketime; returns its exit code, or -1.
int RunScenario(const std::string& mode) {
  const std::string lib = FakeTimeLibrary();
  char dir_tmpl[] = "/tmp/timer-guard-XXXXXX";
  if (::mkdtemp(dir_tmpl) == nullptr) return -1;
  const std::string clock = std::string(dir_tmpl) + "/clock";
  if (!WriteClock(clock, "+0")) return -1;
  std::vector<std::string> env_s;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string(*e).rfind("LD_PRELOAD=", 0) != 0) env_s.emplace_back(*e);
  }
  // A sanitizer build's runtime must stay first in the library list.
  const std::string runtime = SanitizerRuntime();
  env_s.push_back("LD_PRELOAD=" + (runtime.empty() ? lib : runtime + ":" + lib));
  env_s.push_back("FAKETIME_TIMESTAMP_FILE=" + clock);
  env_s.push_back("FAKETIME_NO_CACHE=1");
  env_s.push_back("DONT_FAKE_MONOTONIC=1");
  env_s.push_back(std::string(kChildEnv) + "=" + mode);
  env_s.push_back(std::string(kClockEnv) + "=" + clock);
  std::vector<char*> envp;
  for (auto& s : env_s) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string self = "/proc/self/exe", filter = "--gtest_filter=GrpcTimerGuardChild.Scenario";
  char* argv[] = {self.data(), filter.data(), nullptr};
  pid_t pid;
  if (::posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv, envp.data()) != 0) return -1;
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::unlink(clock.c_str());
  ::rmdir(dir_tmpl);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(GrpcTimerGuardTest, TimersFireAfterTheWallClockStepsBack) {
  SKIP_UNDER_TSAN();
  if (FakeTimeLibrary().empty()) GTEST_SKIP() << "libfaketime not installed";
  EXPECT_EQ(RunScenario("guard"), kFired);
}

TEST(GrpcTimerGuardTest, WithoutTheGuardTheTimersStall) {
  SKIP_UNDER_TSAN();
  if (FakeTimeLibrary().empty()) GTEST_SKIP() << "libfaketime not installed";
  const int code = RunScenario("bare");
  if (code == kFired) GTEST_SKIP() << "this gRPC's timers survive a step back without the guard";
  EXPECT_EQ(code, kStalled);
}

TEST(GrpcTimerGuardTest, StartValidatesAndStopIsIdempotent) {
  SKIP_UNDER_TSAN();
  GrpcTimerGuard g;
  EXPECT_EQ(g.Start(milliseconds(0)).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(g.Start(milliseconds(10)).ok());
  EXPECT_EQ(g.Start(milliseconds(10)).code(), absl::StatusCode::kFailedPrecondition);
  for (int i = 0; i < 200 && g.kicks() < 2; ++i) std::this_thread::sleep_for(milliseconds(10));
  EXPECT_GE(g.kicks(), 2u);
  g.Stop();
  g.Stop();
  ASSERT_TRUE(g.Start(milliseconds(10)).ok());  // restartable
}

}  // namespace
}  // namespace cppetcd::transport
