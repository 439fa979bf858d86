#include "src/wal/record_reader.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cppetcd/util/crc32c.h"
#include "src/wal/record_writer.h"

namespace cppetcd::wal {
namespace {

// Writes become durable in sectors of this size (at least); a torn write
// leaves whole sectors unwritten, which read as zeros.
constexpr uint64_t kSectorSize = 512;

uint32_t GetLe32(const char* p) {
  const auto* u = reinterpret_cast<const uint8_t*>(p);
  return uint32_t{u[0]} | (uint32_t{u[1]} << 8) | (uint32_t{u[2]} << 16) | (uint32_t{u[3]} << 24);
}

bool AllZero(std::string_view s) { return std::all_of(s.begin(), s.end(), [](char c) { return c == 0; }); }

struct Header {
  uint32_t length;
  walpb::RecordType type;
  uint32_t pad;
  uint32_t crc;
};

// A header whose own checksum and fields are consistent.
bool ParseHeader(std::string_view h, Header* out) {
  if (util::Crc32c(h.data(), 12) != GetLe32(h.data() + 12)) return false;
  out->length = GetLe32(h.data());
  int type = static_cast<uint8_t>(h[4]);
  out->pad = static_cast<uint8_t>(h[5]);
  out->crc = GetLe32(h.data() + 8);
  if (type < walpb::METADATA || type > walpb::CRC || h[6] != 0 || h[7] != 0) return false;
  if (out->pad != (kRecordAlign - (kRecordHeaderSize + out->length) % kRecordAlign) % kRecordAlign) return false;
  out->type = static_cast<walpb::RecordType>(type);
  return true;
}

// Offset of the first plausible record header at or after `from` (8-byte
// aligned), or npos. Used to tell a torn tail (nothing valid follows) from
// corruption in the middle of the log.
uint64_t FindValidHeader(std::string_view data, uint64_t from) {
  Header h;
  for (uint64_t p = from; p + kRecordHeaderSize <= data.size(); p += kRecordAlign) {
    std::string_view hdr = data.substr(p, kRecordHeaderSize);
    if (AllZero(hdr)) continue;
    if (ParseHeader(hdr, &h) && p + kRecordHeaderSize + h.length + h.pad <= data.size()) return p;
  }
  return std::string_view::npos;
}

// True if some sector-aligned piece of [begin, end) is all zeros.
bool HasZeroSector(std::string_view data, uint64_t begin, uint64_t end) {
  for (uint64_t s = begin; s < end;) {
    uint64_t next = std::min(end, (s / kSectorSize + 1) * kSectorSize);
    if (AllZero(data.substr(s, next - s))) return true;
    s = next;
  }
  return false;
}

// Offset from which `data` holds only zeros (data.size() if its last byte is
// not zero).
uint64_t ZeroFrom(std::string_view data) {
  uint64_t z = data.size();
  while (z > 0 && data[z - 1] == 0) --z;
  return z;
}

}  // namespace

absl::StatusOr<SegmentScan> ScanSegment(std::string_view data, const std::string& name, bool is_last) {
  SegmentScan scan;
  uint64_t off = 0;
  auto corrupt = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("wal: corrupt record in ", name, " at offset ", off, ": ", why));
  };
  // Ends the scan at `off`. `torn_possible`: the damage looks like a torn
  // write (short or zero-filled); it is accepted only in the last segment.
  // `lost_sector`: the damage is a sector (or a sector's end) of zeros. A
  // power loss writes the pages written since the last fsync back in any
  // order, so such a sector may be followed by valid records; none of them
  // was fsynced (an fsync would have made the lost sector durable too), so
  // none was acknowledged and they go with the torn tail. Any other damage
  // followed by a valid record is corruption in the middle of the log.
  auto stop = [&](bool torn_possible, absl::string_view why, bool lost_sector = false) -> absl::Status {
    scan.valid_end = off;
    std::string_view rest = data.substr(off);
    if (AllZero(rest)) return absl::OkStatus();
    if (!is_last || !torn_possible) return corrupt(why);
    if (uint64_t p = FindValidHeader(data, off + kRecordAlign); p != std::string_view::npos && !lost_sector) {
      return corrupt(absl::StrCat(why, ", followed by a valid record at offset ", p));
    }
    scan.torn = true;
    scan.torn_reason = std::string(why);
    return absl::OkStatus();
  };

  while (off < data.size()) {
    if (data.size() - off < kRecordHeaderSize) {
      if (absl::Status s = stop(true, "partial record header"); !s.ok()) return s;
      break;
    }
    std::string_view hdr = data.substr(off, kRecordHeaderSize);
    if (AllZero(hdr)) {
      // End of written data in preallocated space; anything non-zero after
      // it is a torn write of the next record (its first sector lost).
      const uint64_t sector_end = std::min<uint64_t>(data.size(), (off / kSectorSize + 1) * kSectorSize);
      const bool lost_sector = AllZero(data.substr(off, sector_end - off));
      if (absl::Status s = stop(true, "zero header before non-zero data", lost_sector); !s.ok()) return s;
      break;
    }
    Header h;
    if (!ParseHeader(hdr, &h)) {
      // A header split by a sector boundary may be half written.
      bool half_zero = (off + 8) % kSectorSize == 0 && (AllZero(hdr.substr(0, 8)) || AllZero(hdr.substr(8)));
      bool torn = half_zero || ZeroFrom(data) < off + kRecordHeaderSize;
      if (absl::Status s = stop(torn, "bad record header", half_zero); !s.ok()) return s;
      break;
    }
    const uint64_t end = off + kRecordHeaderSize + h.length + h.pad;
    if (end > data.size()) {
      if (absl::Status s = stop(true, "record cut short"); !s.ok()) return s;
      break;
    }
    std::string_view payload = data.substr(off + kRecordHeaderSize, h.length);
    if (!AllZero(data.substr(off + kRecordHeaderSize + h.length, h.pad))) return corrupt("non-zero padding");
    if ((off == 0) != (h.type == walpb::CRC)) return corrupt("CRC record not at the segment head");
    uint32_t prev = scan.crc;
    if (h.type == walpb::CRC) {
      walpb::Crc c;
      if (!c.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) return corrupt("bad CRC record");
      prev = c.crc();
      scan.head_crc = c.crc();
    }
    uint32_t crc = util::Crc32cExtend(prev, hdr.data(), 8);
    crc = util::Crc32cExtend(crc, payload.data(), payload.size());
    if (crc != h.crc) {
      const bool lost_sector = HasZeroSector(data, off, end);
      bool torn = lost_sector || ZeroFrom(data) < off + kRecordHeaderSize + h.length;
      if (absl::Status s = stop(torn, "CRC mismatch", lost_sector); !s.ok()) return s;
      break;
    }
    scan.records.push_back(Record{h.type, payload, off});
    scan.crc = crc;
    off = end;
    scan.valid_end = off;
  }
  return scan;
}

}  // namespace cppetcd::wal
