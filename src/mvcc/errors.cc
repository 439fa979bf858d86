#include "cppetcd/mvcc/errors.h"

#include <string>
#include <string_view>

namespace cppetcd::mvcc {
namespace {
constexpr std::string_view kCompactedMsg = "mvcc: required revision has been compacted";
constexpr std::string_view kFutureRevMsg = "mvcc: required revision is a future revision";
}  // namespace

absl::Status ErrCompacted() { return absl::OutOfRangeError(std::string(kCompactedMsg)); }
absl::Status ErrFutureRev() { return absl::OutOfRangeError(std::string(kFutureRevMsg)); }

bool IsCompacted(const absl::Status& status) {
  return status.code() == absl::StatusCode::kOutOfRange && std::string_view(status.message().data(), status.message().size()) == kCompactedMsg;
}
bool IsFutureRev(const absl::Status& status) {
  return status.code() == absl::StatusCode::kOutOfRange && std::string_view(status.message().data(), status.message().size()) == kFutureRevMsg;
}

}  // namespace cppetcd::mvcc
