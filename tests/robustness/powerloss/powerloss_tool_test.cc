// Tests of the power-loss fault itself (interposer + crash tool) with
// ordinary programs as the writers: /bin/sh redirections (open with O_TRUNC,
// write, no sync) and dd conv=fsync (write, fsync). `all` must undo exactly
// the unsynced changes and remove files whose directory was never fsynced.
// The slow-fsync delay ($CPPETCD_POWERLOSS_FSYNC_DELAY_FILE) must hold up
// each fsync by the file's milliseconds, and nothing when the file says 0.
#include <sys/stat.h>

#include <chrono>

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "harness.h"

namespace cppetcd::integration {
namespace {

using std::chrono::seconds;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void Spit(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

class PowerLossTool : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path() + "/d";
    log_ = tmp_.path() + "/undo.log";
    ASSERT_EQ(::mkdir(dir_.c_str(), 0700), 0);
  }
  // Runs `script` with /bin/sh under the interposer.
  void Sh(const std::string& script) {
    CommandResult r = RunCommand({"/bin/sh", "-c", script}, "",
                                 {absl::StrCat("LD_PRELOAD=", CPPETCD_POWERLOSS_LIB),
                                  "CPPETCD_POWERLOSS_DIR=" + dir_, "CPPETCD_POWERLOSS_LOG=" + log_},
                                 seconds(30));
    ASSERT_EQ(r.exit_code, 0) << script << ": " << r.err;
  }
  void Apply(const std::string& mode) {
    CommandResult r = RunCommand({CPPETCD_POWERLOSS_APPLY, log_, "--mode", mode, "--seed", "1"},
                                 "", {}, seconds(30));
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }
  TempDir tmp_;
  std::string dir_, log_;
};

TEST_F(PowerLossTool, UnsyncedOverwriteIsUndone) {
  Spit(dir_ + "/a", "durable contents\n");  // before the interposer: durable
  Sh("printf 'lost' > " + dir_ + "/a");      // O_TRUNC + write, no fsync
  EXPECT_EQ(Slurp(dir_ + "/a"), "lost");
  Apply("all");
  EXPECT_EQ(Slurp(dir_ + "/a"), "durable contents\n");
}

TEST_F(PowerLossTool, FsyncedWriteIsKept) {
  Spit(dir_ + "/a", std::string(10000, 'x'));
  Sh("printf 'kept' | dd of=" + dir_ + "/a conv=fsync,notrunc status=none");
  Sh("printf 'gone' | dd of=" + dir_ + "/a bs=1 seek=8192 conv=notrunc status=none");
  Apply("all");
  const std::string got = Slurp(dir_ + "/a");
  ASSERT_EQ(got.size(), 10000u);
  EXPECT_EQ(got.substr(0, 4), "kept");
  EXPECT_EQ(got.substr(8192, 4), "xxxx");
}

TEST_F(PowerLossTool, CreationWithoutDirectoryFsyncIsUndone) {
  Sh("printf 'new' | dd of=" + dir_ + "/b conv=fsync status=none");
  Apply("all");
  struct stat st;
  EXPECT_NE(::stat((dir_ + "/b").c_str(), &st), 0) << "file survived without a directory fsync";
}

TEST_F(PowerLossTool, RandomKeepsEachPageAtSomeVersion) {
  Spit(dir_ + "/a", std::string(3 * 4096, 'o'));
  Sh("printf '%4096s%4096s%4096s' | tr ' ' n | dd of=" + dir_ + "/a bs=4096 iflag=fullblock conv=notrunc status=none");
  Apply("random");
  const std::string got = Slurp(dir_ + "/a");
  ASSERT_EQ(got.size(), 3u * 4096);
  for (int p = 0; p < 3; ++p) {
    const std::string page = got.substr(p * 4096, 4096);
    EXPECT_TRUE(page == std::string(4096, 'o') || page == std::string(4096, 'n')) << "page " << p;
  }
}

// Runs `syncs` dd conv=fsync writes under the interposer with the delay file
// `delay_file` (no undo log) and returns the wall time.
std::chrono::milliseconds TimedSyncs(const std::string& dir, const std::string& delay_file,
                                     int syncs) {
  const auto start = std::chrono::steady_clock::now();
  CommandResult r = RunCommand(
      {"/bin/sh", "-c",
       absl::StrCat("for i in $(seq ", syncs, "); do printf x | dd of=", dir,
                    "/s conv=fsync status=none || exit 1; done")},
      "",
      {absl::StrCat("LD_PRELOAD=", CPPETCD_POWERLOSS_LIB),
       "CPPETCD_POWERLOSS_FSYNC_DELAY_FILE=" + delay_file},
      seconds(30));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start);
}

TEST_F(PowerLossTool, FsyncDelayFromFile) {
  const std::string delay = tmp_.path() + "/delay";
  Spit(delay, "300\n");
  // Three processes, one fsync each (dd conv=fsync): at least 3 x 300 ms.
  EXPECT_GE(TimedSyncs(dir_, delay, 3).count(), 900);
  Spit(delay, "0\n");
  EXPECT_LT(TimedSyncs(dir_, delay, 3).count(), 900);
  // A missing file means no delay.
  EXPECT_LT(TimedSyncs(dir_, tmp_.path() + "/absent", 3).count(), 900);
}

}  // namespace
}  // namespace cppetcd::integration
