// Decoding of one WAL segment's records, with the torn-tail rules.
#ifndef CPPETCD_SRC_WAL_RECORD_READER_H_
#define CPPETCD_SRC_WAL_RECORD_READER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "walpb/record.pb.h"

namespace cppetcd::wal {

struct Record {
  walpb::RecordType type;
  std::string_view payload;  // a view into the scanned segment data
  uint64_t offset;           // of the record header in the segment
};

struct SegmentScan {
  std::vector<Record> records;
  uint64_t valid_end = 0;   // offset just past the last good record
  bool torn = false;        // non-zero bytes after valid_end (a torn write)
  std::string torn_reason;  // why the tail was judged torn
  uint32_t crc = 0;         // chained crc of the last record (0 if none)
  uint32_t head_crc = 0;    // the value carried by the segment's CRC record
};

// Decodes `data`, the content of segment file `name`. The first record must
// be a CRC record, which starts the chain. In the last segment (`is_last`)
// a damaged record ends the log as a torn write when the damage looks like
// an unfinished write: the record is cut short by the end of the file, its
// header is all zeros, one of its 512-byte sectors is all zeros, or the
// zeros that fill the rest of the file begin inside its header or payload;
// and no valid record header follows, unless the damage is a lost sector
// (zeros to a sector's end, or a whole zero sector), which a power loss can
// leave before later unsynced records. Any other damage, and any damage in
// other segments (where only zeros may follow the last record), is DataLoss
// naming `name` and the offset.
absl::StatusOr<SegmentScan> ScanSegment(std::string_view data, const std::string& name, bool is_last);

}  // namespace cppetcd::wal

#endif  // CPPETCD_SRC_WAL_RECORD_READER_H_
