// The mvcc module's errors, typed (util/error.h): the predicates test the
// code, never the text. The api layer maps them to gRPC codes and etcd's
// "etcdserver: ..." messages.
#ifndef CPPETCD_MVCC_ERRORS_H_
#define CPPETCD_MVCC_ERRORS_H_

#include "absl/status/status.h"

namespace cppetcd::mvcc {

// OutOfRange "mvcc: required revision has been compacted".
absl::Status ErrCompacted();
// OutOfRange "mvcc: required revision is a future revision".
absl::Status ErrFutureRev();

bool IsCompacted(const absl::Status& status);
bool IsFutureRev(const absl::Status& status);

}  // namespace cppetcd::mvcc

#endif  // CPPETCD_MVCC_ERRORS_H_
