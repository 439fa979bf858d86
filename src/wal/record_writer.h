// Encoding of one WAL record; the format is described in record_writer.cc
// and docs/formats-wal.md.
#ifndef CPPETCD_SRC_WAL_RECORD_WRITER_H_
#define CPPETCD_SRC_WAL_RECORD_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "walpb/record.pb.h"

namespace cppetcd::wal {

inline constexpr size_t kRecordHeaderSize = 16;
inline constexpr size_t kRecordAlign = 8;
// Largest payload a record may carry (the length field is 32 bits; this
// leaves room for the header and padding).
inline constexpr uint64_t kMaxRecordPayload = (uint64_t{1} << 32) - 64;

// Appends the record (header, payload, zero padding) to `out` and advances
// the running CRC `*crc`. For a CRC record, `*crc` must equal the value its
// payload carries.
void AppendRecord(walpb::RecordType type, std::string_view payload, uint32_t* crc, std::string* out);

// The three records every segment starts with: CRC (running CRC `*crc`),
// METADATA, and HARD_STATE when `hard_state` is not empty.
void AppendSegmentHead(std::string_view metadata, const std::string& hard_state_bytes, uint32_t* crc,
                       std::string* out);

}  // namespace cppetcd::wal

#endif  // CPPETCD_SRC_WAL_RECORD_WRITER_H_
