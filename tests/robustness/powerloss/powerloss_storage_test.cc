// Storage-level power-loss test: the LMDB backend under the power-loss
// interposer, killed (SIGKILL) at a seeded write inside its commits, the
// crash tool's `random` mode (page-granular loss of unsynced writes), then
// an integrity and content check (powerloss_storage_driver verify).
//
// - MDB_NOMETASYNC (the server's mode) and LMDB's full sync must pass for
//   every seed: the tree opens, every bucket walks, the contents equal the
//   workload after some txn no older than the mode promises.
// - MDB_NOSYNC must be caught: at least one of the seeds ends corrupt (or
//   older than its last Sync()). This shows the check can fail.
//
// Replay one seed: CPPETCD_POWERLOSS_SEED=<seed> (only that seed runs);
// keep the files: CPPETCD_TEST_KEEP_TMP=1.
#include <signal.h>
#include <sys/stat.h>

#include <cstdlib>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "harness.h"

namespace cppetcd::integration {
namespace {

using std::chrono::seconds;

// Seeds per mode; the NOSYNC case found corruption within these on the
// development machine (see docs/reliability.md for the counts).
constexpr int kSeeds = 12;

struct SeedResult {
  bool corrupt = false;
  std::string detail;
};

std::vector<uint64_t> Seeds() {
  if (const char* s = std::getenv("CPPETCD_POWERLOSS_SEED"); s != nullptr && *s != '\0') {
    return {std::strtoull(s, nullptr, 10)};
  }
  std::vector<uint64_t> out;
  for (int i = 1; i <= kSeeds; ++i) out.push_back(static_cast<uint64_t>(i));
  return out;
}

// One run: workload killed at a seeded tracked write, random undo, verify.
SeedResult RunSeed(const std::string& mode, uint64_t seed) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/data";
  EXPECT_EQ(::mkdir(dir.c_str(), 0700), 0);
  const std::string db = dir + "/db", log = tmp.path() + "/undo.log",
                    progress = tmp.path() + "/progress";
  // Kill somewhere in the first ~3000 tracked writes (a few hundred txns),
  // after at least a few Sync() calls of the NOSYNC run.
  std::mt19937_64 rng(seed * 7919 + (mode == "nosync" ? 1 : 2));
  const uint64_t kill_at = 1000 + rng() % 3000;
  CommandResult run = RunCommand(
      {CPPETCD_POWERLOSS_DRIVER, "run", "--db", db, "--progress", progress, "--sync", mode,
       "--sync-every", "50"},
      "",
      {absl::StrCat("LD_PRELOAD=", CPPETCD_POWERLOSS_LIB), "CPPETCD_POWERLOSS_DIR=" + dir,
       "CPPETCD_POWERLOSS_LOG=" + log, absl::StrCat("CPPETCD_POWERLOSS_KILL_AT=", kill_at)},
      seconds(60));
  EXPECT_EQ(run.term_signal, SIGKILL) << "the driver was not killed at write " << kill_at
                                      << " (exit " << run.exit_code << "): " << run.err;
  CommandResult apply = RunCommand(
      {CPPETCD_POWERLOSS_APPLY, log, "--mode", "random", "--seed", absl::StrCat(seed)}, "", {},
      seconds(60));
  EXPECT_EQ(apply.exit_code, 0) << apply.out << apply.err;
  CommandResult verify = RunCommand(
      {CPPETCD_POWERLOSS_DRIVER, "verify", "--db", db, "--progress", progress, "--sync", mode}, "",
      {}, seconds(60));
  SeedResult r;
  r.corrupt = verify.exit_code != 0;
  r.detail = absl::StrCat("kill_at=", kill_at, " | ", apply.out, verify.out, verify.err,
                          verify.term_signal != 0 ? absl::StrCat("verify died of signal ", verify.term_signal)
                                                  : "");
  std::cout << mode << " seed " << seed << ": " << (r.corrupt ? "CORRUPT " : "ok ") << r.detail
            << std::endl;
  return r;
}

TEST(PowerLossStorage, NoMetaSyncSurvivesEverySeed) {
  for (uint64_t seed : Seeds()) {
    SeedResult r = RunSeed("nometasync", seed);
    EXPECT_FALSE(r.corrupt) << "seed " << seed << ": " << r.detail;
  }
}

TEST(PowerLossStorage, FullSyncSurvivesEverySeed) {
  for (uint64_t seed : Seeds()) {
    if (seed > 4) break;  // the slower mode: fewer seeds
    SeedResult r = RunSeed("full", seed);
    EXPECT_FALSE(r.corrupt) << "seed " << seed << ": " << r.detail;
  }
}

TEST(PowerLossStorage, NoSyncIsCaught) {
  int corrupt = 0;
  const auto seeds = Seeds();
  for (uint64_t seed : seeds) corrupt += RunSeed("nosync", seed).corrupt ? 1 : 0;
  std::cout << "MDB_NOSYNC: " << corrupt << " of " << seeds.size() << " seeds corrupt" << std::endl;
  if (seeds.size() > 1) {
    EXPECT_GT(corrupt, 0) << "the power-loss check did not catch MDB_NOSYNC in " << seeds.size()
                          << " seeds";
  }
}

}  // namespace
}  // namespace cppetcd::integration
