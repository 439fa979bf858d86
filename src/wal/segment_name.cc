#include "src/wal/segment_name.h"

#include <cinttypes>
#include <cstdio>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace cppetcd::wal {

std::string SegmentName(uint64_t seq, uint64_t index) { return absl::StrFormat("%016x-%016x.wal", seq, index); }

bool ParseSegmentName(std::string_view name, uint64_t* seq, uint64_t* index) {
  // 16 hex digits, '-', 16 hex digits, ".wal"
  if (name.size() != 37 || name[16] != '-' || !name.ends_with(".wal")) return false;
  auto hex = [](std::string_view s, uint64_t* v) {
    for (char c : s) {
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c)) || absl::ascii_isupper(static_cast<unsigned char>(c)))
        return false;
    }
    return absl::SimpleHexAtoi(absl::string_view(s.data(), s.size()), v);
  };
  return hex(name.substr(0, 16), seq) && hex(name.substr(17, 16), index);
}

absl::StatusOr<std::vector<std::string>> ListSegments(util::Env* env, const std::string& dir) {
  auto children = env->GetChildren(dir);
  if (!children.ok()) return children.status();
  std::vector<std::string> names;
  uint64_t prev_seq = 0, prev_index = 0;
  for (const std::string& c : *children) {  // sorted, and names are fixed width
    uint64_t seq, index;
    if (!ParseSegmentName(c, &seq, &index)) continue;
    if (!names.empty() && (seq != prev_seq + 1 || index < prev_index)) {
      return absl::FailedPreconditionError(
          absl::StrCat("wal: segment ", c, " does not follow ", names.back(), " in ", dir));
    }
    names.push_back(c);
    prev_seq = seq;
    prev_index = index;
  }
  return names;
}

int SearchSegment(const std::vector<std::string>& names, uint64_t index) {
  for (int i = static_cast<int>(names.size()) - 1; i >= 0; --i) {
    uint64_t seq, first;
    if (ParseSegmentName(names[i], &seq, &first) && first <= index) return i;
  }
  return -1;
}

}  // namespace cppetcd::wal
