// Names of WAL segment files: `<seq:016x>-<index:016x>.wal`.
#ifndef CPPETCD_SRC_WAL_SEGMENT_NAME_H_
#define CPPETCD_SRC_WAL_SEGMENT_NAME_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "cppetcd/util/env.h"

namespace cppetcd::wal {

std::string SegmentName(uint64_t seq, uint64_t index);
// False if `name` is not a segment name.
bool ParseSegmentName(std::string_view name, uint64_t* seq, uint64_t* index);

// The segment names in `dir`, oldest first; other files are ignored.
// FailedPrecondition if the sequence numbers are not consecutive or the
// first raft indexes go down.
absl::StatusOr<std::vector<std::string>> ListSegments(util::Env* env, const std::string& dir);

// Position in `names` of the last segment whose first index is <= `index`,
// or -1 if there is none.
int SearchSegment(const std::vector<std::string>& names, uint64_t index);

}  // namespace cppetcd::wal

#endif  // CPPETCD_SRC_WAL_SEGMENT_NAME_H_
