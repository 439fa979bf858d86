// Fuzz target: a .snap file (snappb.Snapshot{crc, data = raftpb.Snapshot})
// through snap::Snapshotter, as a member loads it at start: Load (newest
// good file; a bad one is renamed *.broken) and LoadNewestAvailable with the
// file's own (term, index) as the WAL's marker. Invariant: no crash; a
// loaded snapshot is the one named by the file.
#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>

#include "cppetcd/snap/snapshotter.h"
#include "cppetcd/util/env.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cppetcd;
  static const bool quiet = (fuzz::QuietLogs(), true);
  (void)quiet;
  const std::string dir = fuzz::FreshDir("snap");
  const std::string name = snap::SnapFileName(2, 7);
  std::ofstream(dir + "/" + name, std::ios::binary)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));

  snap::Snapshotter ss(util::Env::Default(), dir);
  auto s1 = ss.LoadNewestAvailable({wal::WalSnapshot{7, 2}});
  if (s1.ok()) {
    FUZZ_CHECK(s1->metadata().index() == 7 && s1->metadata().term() == 2,
               "loaded a snapshot that does not match its file name");
  }
  auto s2 = ss.Load();
  if (s2.ok()) {
    FUZZ_CHECK(s2->metadata().index() == 7 && s2->metadata().term() == 2,
               "loaded a snapshot that does not match its file name");
  }
  return 0;
}
