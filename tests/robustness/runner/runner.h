// One robustness run and a series of them: start a real cppetcd cluster
// (cluster_harness.h, a FaultProxy on every peer port), drive it with the
// Workload's clients while the FaultInjector applies the seeded schedule,
// heal, read every key back, check that every member is healthy and that
// the members agree, and check the recorded history (checker.h).
//
// Thread-safety: RunOne and RunAll are called from one thread.
#ifndef CPPETCD_TESTS_ROBUSTNESS_RUNNER_RUNNER_H_
#define CPPETCD_TESTS_ROBUSTNESS_RUNNER_RUNNER_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "faults.h"
#include "history.h"

namespace cppetcd::robustness {

struct RunnerOptions {
  uint64_t seed = 1;
  int runs = 1;      // seeds seed .. seed + runs - 1
  int members = 3;   // 3 or 5
  // Peer proxies on loopback, or a network namespace per member with
  // nftables between them (netns.h; needs root).
  NetMode net = NetMode::kProxy;
  // The kinds of --faults; "all" (the default) means FaultKindsFor(net).
  std::vector<FaultKind> faults = FaultKindsFor(NetMode::kProxy);
  // Kinds kept in the schedule (so it stays the seed's) but not injected:
  // to find which fault of a failing replay matters.
  std::vector<FaultKind> skip;
  std::chrono::milliseconds duration{10'000};  // fault window per run
  int clients = 4;   // KV clients (plus 2 watchers and 1 lease client)
  std::string out = "/tmp/cppetcd-robustness";  // failed runs: <out>/seed-<S>/
  // "stale-read": plant a stale Get result in the history before checking
  // (proves the harness can fail). "" = none.
  std::string plant;
  // Exit 0 only if the checkers found a violation in every run (for the
  // planted self-test).
  bool expect_violation = false;
  std::string binary;  // "" = $CPPETCD_TEST_SERVER or the built cppetcd
  bool print_schedule = false;  // print each seed's fault schedule, run nothing
  // Fail (exit 1) unless every kind in `faults` was injected at least once
  // over the runs (CI: the fixed seeds must cover their kinds).
  bool require_all_kinds = false;
};

// Parses argv (without argv[0]); --replay DIR reads DIR/replay.args first.
// Errors name the bad flag; a kind listed in --faults that does not work in
// the --net mode is an error (`all` takes those that do).
absl::StatusOr<RunnerOptions> ParseRunnerArgs(const std::vector<std::string>& args);
// The flags that reproduce one run of `options` with seed `seed`.
std::vector<std::string> ReplayArgs(const RunnerOptions& options, uint64_t seed);
std::string Usage();

struct RunResult {
  uint64_t seed = 0;
  bool passed = false;
  bool infrastructure_error = false;  // the cluster did not start etc.
  std::map<std::string, int> faults_by_kind;  // injected faults
  int64_t operations = 0;         // KV + lease operations recorded
  int64_t operations_checked = 0;
  int64_t watch_responses = 0;
  int violations = 0;          // all problems: checkers and health checks
  int checker_violations = 0;  // those the history checkers found
  int inconclusive = 0;
  std::vector<std::string> problems;
  std::chrono::milliseconds wall{0};
  std::string saved_dir;  // where the history and logs went, if saved
};

// The planted bug of --plant stale-read: replaces one linearizable Get
// result that saw the value of write P2 with the value of an older write P1
// of the same key, where P1 completed before P2 was invoked and P2
// completed before the Get was invoked, so no linearization can explain it.
// Prefers the latest such Get. Returns a description naming the operation
// ids, or "" if the history has no such Get (nothing changed).
std::string PlantStaleRead(History* history);

RunResult RunOne(const RunnerOptions& options, uint64_t seed);
// Runs every seed, prints a line per run and the summary; returns the exit
// code (0 ok, 1 violation or unhealthy member, 2 infrastructure error,
// kExitUnsupported (77) when --net netns cannot be had here: not root, no
// ip/nft, no namespaces). With --net netns, first removes what crashed
// runs of this tool left behind (CleanStaleNetns).
int RunAll(const RunnerOptions& options);

}  // namespace cppetcd::robustness

#endif  // CPPETCD_TESTS_ROBUSTNESS_RUNNER_RUNNER_H_
