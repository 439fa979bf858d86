// Reads the records of consecutive segments, checking the CRC chain across
// segment boundaries. Shared by Wal::ReadAll and Wal::ValidSnapshotEntries.
#ifndef CPPETCD_SRC_WAL_LOG_READER_H_
#define CPPETCD_SRC_WAL_LOG_READER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "cppetcd/util/env.h"
#include "src/wal/record_reader.h"

namespace cppetcd::wal {

struct LogTail {
  uint32_t crc = 0;          // chained crc after the last good record
  uint64_t valid_end = 0;    // end of good data in the last segment
  uint64_t file_size = 0;    // size of the last segment file
  bool torn = false;         // the last segment ends with a torn write
  std::string torn_reason;
};

// Scans names[start..] in `dir` and calls `fn` for every record in order
// (`segment` is the file name, for error messages). Stops at the first error
// of `fn` or of decoding (DataLoss, with file and offset).
absl::Status ReadLog(util::Env* env, const std::string& dir, const std::vector<std::string>& names, size_t start,
                     absl::FunctionRef<absl::Status(const Record& record, const std::string& segment)> fn,
                     LogTail* tail);

}  // namespace cppetcd::wal

#endif  // CPPETCD_SRC_WAL_LOG_READER_H_
