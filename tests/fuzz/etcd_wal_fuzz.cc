// Fuzz target: etcd's WAL format (wal/etcd_wal.h), read to migrate an etcd
// data dir. After one mode byte, the input is split at "\nSEGMENT\n" into up
// to 4 segment files; each part's first byte picks the raft index in the
// segment's name. Every part goes through wal::ScanEtcdSegment as the last
// and as an inner segment, then the directory through EtcdWalValidSnapshots
// and ReadEtcdWal from {0,0} or (odd mode byte) the newest valid marker.
// Invariants: no crash, no allocation past the record bound; a scan's
// records lie inside the data in order, start with a CRC record and carry a
// CRC chain that checks; an inner segment is never judged torn and ends only
// in zeros; ReadEtcdWal's entries are contiguous from the marker on and the
// marker it started from is among those it read.
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/str_format.h"
#include "cppetcd/util/crc32c.h"
#include "cppetcd/util/env.h"
#include "cppetcd/wal/etcd_wal.h"
#include "fuzz_util.h"

namespace {

constexpr size_t kMaxSegments = 4;

void CheckScan(std::string_view in, bool is_last, std::optional<uint32_t> prev) {
  using namespace cppetcd;
  auto scan = wal::ScanEtcdSegment(in, "fuzz.wal", prev, is_last);
  if (!scan.ok()) return;
  FUZZ_CHECK(scan->valid_end <= in.size(), "valid_end past the data");
  if (!is_last) FUZZ_CHECK(!scan->torn, "an inner segment judged torn");
  if (!scan->torn) {
    for (size_t i = scan->valid_end; i < in.size(); ++i) FUZZ_CHECK(in[i] == 0, "non-zero bytes after the records");
  }
  uint64_t next = 0;
  uint32_t crc = 0;
  for (size_t i = 0; i < scan->records.size(); ++i) {
    const auto& r = scan->records[i];
    FUZZ_CHECK(r.offset >= next && r.offset + 8 + r.data.size() <= scan->valid_end, "record outside the data");
    FUZZ_CHECK(r.data.size() < wal::kEtcdMaxRecordBytes, "record past the bound");
    FUZZ_CHECK((i == 0) == (r.type == wal::kEtcdCrcType), "CRC record not exactly at the head");
    if (r.type == wal::kEtcdCrcType) {
      if (prev.has_value()) FUZZ_CHECK(r.crc == *prev, "chain start not checked");
      crc = r.crc;
    } else {
      crc = util::Crc32cExtend(crc, r.data.data(), r.data.size());
      FUZZ_CHECK(crc == r.crc, "a record whose CRC does not chain");
    }
    next = r.offset + 8;
  }
  if (!scan->records.empty()) FUZZ_CHECK(crc == scan->crc, "running CRC differs");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cppetcd;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (in.empty()) return 0;
  const uint8_t mode = static_cast<uint8_t>(in.front());
  in.remove_prefix(1);
  auto parts = fuzz::Split(in, "\nSEGMENT\n");
  if (parts.size() > kMaxSegments) parts.resize(kMaxSegments);

  const std::string dir = fuzz::FreshDir("etcd_wal");
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string_view p = parts[i];
    const uint64_t index = p.empty() ? 0 : static_cast<uint8_t>(p.front());
    if (!p.empty()) p.remove_prefix(1);
    CheckScan(p, /*is_last=*/true, std::nullopt);
    CheckScan(p, /*is_last=*/false, std::nullopt);
    CheckScan(p, /*is_last=*/true, uint32_t{0});
    const std::string name = absl::StrFormat("%s/%016x-%016x.wal", dir, i, index);
    std::ofstream(name, std::ios::binary).write(p.data(), static_cast<std::streamsize>(p.size()));
  }

  util::Env* env = util::Env::Default();
  wal::WalSnapshot at;
  auto snaps = wal::EtcdWalValidSnapshots(env, dir);
  if (snaps.ok() && (mode & 1) != 0 && !snaps->empty()) at = snaps->back();
  auto r = wal::ReadEtcdWal(env, dir, at);
  if (!r.ok()) return 0;
  uint64_t next = at.index + 1;
  for (const auto& e : r->entries) FUZZ_CHECK(e.index() == next++, "entries not contiguous from the marker");
  bool found = false;
  for (const auto& m : r->snapshots) found = found || m == at;
  FUZZ_CHECK(found, "read succeeded without the start marker");
  return 0;
}
