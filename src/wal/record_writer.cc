// WAL record format (all integers little-endian; records start on 8-byte
// boundaries of the segment file):
//
//   offset size  field
//   0      4     length      payload length in bytes
//   4      1     type        walpb::RecordType, 1..5 (0 never written)
//   5      1     pad         zero bytes after the payload, 0..7, so that the
//                            record ends on an 8-byte boundary
//   6      2     reserved    zero
//   8      4     crc         CRC-32C of bytes [0,8) and the payload, chained:
//                            Crc32cExtend(previous record's crc, ...)
//   12     4     header_crc  CRC-32C of bytes [0,12), not chained
//   16     length payload
//          pad   zeros
//
// The chain starts in each segment at its first record, a CRC record whose
// payload (walpb.Crc) carries the crc of the last record of the previous
// segment (0 in the first segment); its own crc extends that value. A reader
// checks the value against the previous segment, so a record or a segment
// from another log (or another place) does not verify.
//
// header_crc lets a reader trust the length before reading the payload: a
// corrupt header in the middle of a segment is told apart from a torn write,
// which leaves the tail short or zero-filled (preallocated space reads as
// zeros, and an all-zero header is never written).
#include "src/wal/record_writer.h"

#include <array>

#include "cppetcd/util/crc32c.h"

namespace cppetcd::wal {
namespace {

void PutLe32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
  p[2] = static_cast<uint8_t>(v >> 16);
  p[3] = static_cast<uint8_t>(v >> 24);
}

}  // namespace

void AppendRecord(walpb::RecordType type, std::string_view payload, uint32_t* crc, std::string* out) {
  const size_t unpadded = kRecordHeaderSize + payload.size();
  const size_t pad = (kRecordAlign - unpadded % kRecordAlign) % kRecordAlign;
  std::array<uint8_t, kRecordHeaderSize> h{};
  PutLe32(h.data(), static_cast<uint32_t>(payload.size()));
  h[4] = static_cast<uint8_t>(type);
  h[5] = static_cast<uint8_t>(pad);
  uint32_t c = util::Crc32cExtend(*crc, h.data(), 8);
  c = util::Crc32cExtend(c, payload.data(), payload.size());
  PutLe32(h.data() + 8, c);
  PutLe32(h.data() + 12, util::Crc32c(h.data(), 12));
  out->append(reinterpret_cast<const char*>(h.data()), h.size());
  out->append(payload);
  out->append(pad, '\0');
  *crc = c;
}

void AppendSegmentHead(std::string_view metadata, const std::string& hard_state_bytes, uint32_t* crc,
                       std::string* out) {
  walpb::Crc head;
  head.set_crc(*crc);
  AppendRecord(walpb::CRC, head.SerializeAsString(), crc, out);
  AppendRecord(walpb::METADATA, metadata, crc, out);
  if (!hard_state_bytes.empty()) AppendRecord(walpb::HARD_STATE, hard_state_bytes, crc, out);
}

}  // namespace cppetcd::wal
