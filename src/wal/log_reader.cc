#include "src/wal/log_reader.h"

#include "absl/strings/str_cat.h"

namespace cppetcd::wal {

absl::Status ReadLog(util::Env* env, const std::string& dir, const std::vector<std::string>& names, size_t start,
                     absl::FunctionRef<absl::Status(const Record& record, const std::string& segment)> fn,
                     LogTail* tail) {
  for (size_t i = start; i < names.size(); ++i) {
    const bool is_last = i + 1 == names.size();
    const std::string path = util::JoinPath(dir, names[i]);
    auto data = env->ReadFileToString(path);
    if (!data.ok()) return data.status();
    auto scan = ScanSegment(*data, path, is_last);
    if (!scan.ok()) return scan.status();
    if (scan->records.empty()) {
      // Segments are made whole (temp file + rename) before they appear, so
      // even the last one starts with its head records.
      return absl::DataLossError(absl::StrCat("wal: segment ", path, " has no records"));
    }
    // The first segment read starts the chain; later ones must continue it.
    if (i > start && scan->head_crc != tail->crc) {
      return absl::DataLossError(absl::StrCat("wal: CRC chain broken at the head of ", path, ": expected ",
                                              tail->crc, ", found ", scan->head_crc));
    }
    for (const Record& r : scan->records) {
      if (absl::Status s = fn(r, path); !s.ok()) return s;
    }
    tail->crc = scan->crc;
    if (is_last) {
      tail->valid_end = scan->valid_end;
      tail->file_size = data->size();
      tail->torn = scan->torn;
      tail->torn_reason = scan->torn_reason;
    }
  }
  return absl::OkStatus();
}

}  // namespace cppetcd::wal
