#include "cppetcd/mvcc/errors.h"

#include "cppetcd/util/error.h"

namespace cppetcd::mvcc {

using util::ErrorCode;

absl::Status ErrCompacted() {
  return util::MakeError(absl::StatusCode::kOutOfRange, ErrorCode::kCompacted,
                         "mvcc: required revision has been compacted");
}
absl::Status ErrFutureRev() {
  return util::MakeError(absl::StatusCode::kOutOfRange, ErrorCode::kFutureRev,
                         "mvcc: required revision is a future revision");
}

bool IsCompacted(const absl::Status& status) {
  return util::HasErrorCode(status, ErrorCode::kCompacted);
}
bool IsFutureRev(const absl::Status& status) {
  return util::HasErrorCode(status, ErrorCode::kFutureRev);
}

}  // namespace cppetcd::mvcc
