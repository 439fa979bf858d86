// The mvcc module's errors. The api layer maps them to gRPC codes and adds
// etcd's "etcdserver: " prefix.
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
