// Fuzz target: a whole WAL directory from fuzzed bytes. After one mode byte,
// the input is split at "\nSEGMENT\n" into up to 4 segment files; each
// part's first byte picks the raft index in the segment's name (seq counts
// 0, 1, ...). Then, as a member does at start: Wal::ValidSnapshotEntries,
// Wal::Open(at) + ReadAll, with `at` {0,0} or (odd mode byte) the newest
// valid snapshot marker. When ReadAll succeeds (possibly truncating a torn
// tail), the WAL must take a new entry and read back after a reopen with
// that entry last: what recovery leaves is a valid log.
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>

#include "absl/strings/str_format.h"
#include "cppetcd/util/env.h"
#include "cppetcd/wal/wal.h"
#include "fuzz_util.h"

namespace {

constexpr size_t kMaxSegments = 4;

cppetcd::wal::Options SmallSegments() {
  cppetcd::wal::Options o;
  o.segment_size_bytes = 16 << 10;  // preallocation per opened tail
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cppetcd;
  static const bool quiet = (fuzz::QuietLogs(), true);
  (void)quiet;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (in.empty()) return 0;
  const uint8_t mode = static_cast<uint8_t>(in.front());
  in.remove_prefix(1);
  auto parts = fuzz::Split(in, "\nSEGMENT\n");
  if (parts.size() > kMaxSegments) parts.resize(kMaxSegments);

  const std::string dir = fuzz::FreshDir("wal");
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string_view p = parts[i];
    const uint64_t index = p.empty() ? 0 : static_cast<uint8_t>(p.front());
    if (!p.empty()) p.remove_prefix(1);
    const std::string name = absl::StrFormat("%s/%016x-%016x.wal", dir, i, index);
    std::ofstream(name, std::ios::binary).write(p.data(), static_cast<std::streamsize>(p.size()));
  }

  util::Env* env = util::Env::Default();
  wal::WalSnapshot at;
  auto snaps = wal::Wal::ValidSnapshotEntries(env, dir);
  if (snaps.ok() && (mode & 1) != 0 && !snaps->empty()) at = snaps->back();

  auto w = wal::Wal::Open(env, dir, at, SmallSegments());
  if (!w.ok()) return 0;
  auto r = (*w)->ReadAll();
  if (!r.ok()) return 0;

  // Recovery succeeded: the log must be writable and read back.
  const uint64_t next = (*w)->LastIndex() + 1;
  raftpb::Entry e;
  e.set_index(next);
  e.set_term(std::max<uint64_t>(r->hard_state.term(), 1));
  e.set_data("fuzz");
  raftpb::HardState hs = r->hard_state;
  if (hs.term() < e.term()) hs.set_term(e.term());
  absl::Status s = (*w)->Save(hs, {e}, /*must_sync=*/true);
  FUZZ_CHECK(s.ok(), "Save after a successful ReadAll: " + s.ToString());
  s = (*w)->Close();
  FUZZ_CHECK(s.ok(), "Close: " + s.ToString());
  w->reset();

  auto w2 = wal::Wal::Open(env, dir, at, SmallSegments());
  FUZZ_CHECK(w2.ok(), "reopen after recovery: " + w2.status().ToString());
  auto r2 = (*w2)->ReadAll();
  FUZZ_CHECK(r2.ok(), "ReadAll after recovery and Save: " + r2.status().ToString());
  FUZZ_CHECK(!r2->entries.empty() && r2->entries.back().index() == next &&
                 r2->entries.back().data() == "fuzz",
             "the saved entry is not the last one read back");
  FUZZ_CHECK(r2->metadata == r->metadata, "metadata changed by recovery");
  return 0;
}
