// Fuzz target: one WAL segment's bytes through the record scanner
// (wal::ScanSegment), as the last segment (torn-tail rules) and as an inner
// one. Invariants: no crash; on success the records lie inside the data, in
// order, and valid_end is within it.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.h"
#include "src/wal/record_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  for (bool is_last : {true, false}) {
    auto scan = cppetcd::wal::ScanSegment(in, "0000000000000000-0000000000000000.wal", is_last);
    if (!scan.ok()) continue;
    FUZZ_CHECK(scan->valid_end <= in.size(), "valid_end past the data");
    uint64_t prev = 0;
    for (const auto& r : scan->records) {
      FUZZ_CHECK(r.offset >= prev && r.offset < in.size(), "record offset out of order");
      FUZZ_CHECK(r.payload.data() >= in.data() &&
                     r.payload.data() + r.payload.size() <= in.data() + in.size(),
                 "payload outside the segment");
      prev = r.offset;
    }
    if (!is_last) FUZZ_CHECK(!scan->torn, "an inner segment judged torn");
  }
  return 0;
}
