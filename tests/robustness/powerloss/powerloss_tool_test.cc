// Tests of the power-loss fault itself (interposer + crash tool) with
// ordinary programs as the writers: /bin/sh redirections (open with O_TRUNC,
// write, no sync) and dd conv=fsync (write, fsync). `all` must undo exactly
// the unsynced changes and remove files whose directory was never fsynced.
// The slow-fsync delay ($CPPETCD_POWERLOSS_FSYNC_DELAY_FILE) must hold up
// each fsync by the file's milliseconds, and nothing when the file says 0.
// A record torn by a SIGKILL, in the middle of a log that other processes
// went on appending to, must be skipped; a torn record followed by more
// records of its own process is a bad log.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "undo_log.h"

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
    CommandResult r = RunApply(mode);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }
  CommandResult RunApply(const std::string& mode) {
    return RunCommand({CPPETCD_POWERLOSS_APPLY, log_, "--mode", mode, "--seed", "1"}, "", {},
                      seconds(30));
  }
  // Start offsets of the log's records (walking the headers).
  std::vector<size_t> RecordOffsets() {
    const std::string log = Slurp(log_);
    std::vector<size_t> out;
    size_t pos = 0;
    while (pos + sizeof(powerloss::RecordHeader) <= log.size()) {
      powerloss::RecordHeader h;
      std::memcpy(&h, log.data() + pos, sizeof(h));
      if (h.magic != powerloss::kRecordMagic) break;
      out.push_back(pos);
      pos += sizeof(h) + h.payload_bytes;
    }
    return out;
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

// A SIGKILL cut the last record of one process short; another process then
// appended to the same log. The torn record is skipped, everything around it
// is applied.
TEST_F(PowerLossTool, TornRecordOfAKilledProcessIsSkipped) {
  Spit(dir_ + "/a", "a durable\n");
  Spit(dir_ + "/b", "b durable\n");
  Sh("printf 'a lost' > " + dir_ + "/a");
  const size_t before = Slurp(log_).size();
  Sh("printf 'x' >> " + dir_ + "/a");  // the process that will "die" mid-record
  std::vector<size_t> offsets = RecordOffsets();
  ASSERT_GE(offsets.size(), 2u);
  const size_t last = offsets.back();
  ASSERT_GE(last, before);
  const size_t full = Slurp(log_).size();
  // Cut the last record inside its header, then inside its payload.
  for (size_t cut : {last + 20, full - 1}) {
    SCOPED_TRACE(cut);
    ASSERT_LT(cut, full);
    ASSERT_EQ(::truncate(log_.c_str(), static_cast<off_t>(cut)), 0);
    Sh("printf 'b lost' > " + dir_ + "/b");
    CommandResult r = RunApply("all");
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("torn_records=1"), std::string::npos) << r.out;
    EXPECT_EQ(Slurp(dir_ + "/a"), "a durable\n");
    EXPECT_EQ(Slurp(dir_ + "/b"), "b durable\n");
    // Rebuild the same log for the next cut.
    ASSERT_EQ(::truncate(log_.c_str(), static_cast<off_t>(before)), 0);
    Sh("printf 'a lost' > " + dir_ + "/a");
    ASSERT_EQ(::truncate(log_.c_str(), static_cast<off_t>(before)), 0);
    Sh("printf 'x' >> " + dir_ + "/a");
    ASSERT_EQ(Slurp(log_).size(), full);
  }
}

// Planted: damage that is not a SIGKILL's cut must not be skipped silently:
// a record cut short in the middle of its own process's records, a flipped
// header byte, a flipped payload byte.
TEST_F(PowerLossTool, DamageThatIsNotATornTailIsABadLog) {
  Spit(dir_ + "/a", "a durable\n");
  Sh("printf 'one' > " + dir_ + "/a; printf 'two' >> " + dir_ + "/a");
  const std::vector<size_t> offsets = RecordOffsets();
  ASSERT_GE(offsets.size(), 4u);
  const std::string good = Slurp(log_);
  size_t with_payload = 0;  // a middle record with a payload (the old bytes)
  for (size_t i = 1; i + 1 < offsets.size(); ++i) {
    if (offsets[i + 1] - offsets[i] > sizeof(powerloss::RecordHeader)) with_payload = i;
  }
  ASSERT_NE(with_payload, 0u) << "no middle record with a payload";
  const size_t at = offsets[with_payload], end = offsets[with_payload + 1];
  struct Case {
    const char* name;
    std::string log;
    const char* message;
  };
  std::string cut = good, header = good, payload = good;
  cut.erase(end - 1, 1);  // the record loses its last byte; its process goes on
  header[at + 30] ^= 0x5a;
  payload[end - 1] ^= 0x5a;
  for (const Case& c : {Case{"cut", cut, "after its own torn record"},
                        Case{"header", header, "not a torn one"},
                        Case{"payload", payload, "not a torn one"}}) {
    SCOPED_TRACE(c.name);
    Spit(log_, c.log);
    CommandResult r = RunApply("all");
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
  }
  Spit(log_, good);
  Apply("all");
  EXPECT_EQ(Slurp(dir_ + "/a"), "a durable\n");
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
