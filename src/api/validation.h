// Request checks the api runs before handing a request to the server (etcd
// 3.4 v3rpc/key.go). Errors carry etcd's gRPC messages; map with
// ToGrpcStatus.
#ifndef CPPETCD_SRC_API_VALIDATION_H_
#define CPPETCD_SRC_API_VALIDATION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "etcdserverpb/rpc.pb.h"

namespace cppetcd::api {

absl::Status ValidateRange(const etcdserverpb::RangeRequest& req);
absl::Status ValidatePut(const etcdserverpb::PutRequest& req);
absl::Status ValidateDeleteRange(const etcdserverpb::DeleteRangeRequest& req);
// Op count, empty keys and overlapping puts/deletes (duplicate keys).
absl::Status ValidateTxn(const etcdserverpb::TxnRequest& req, uint32_t max_txn_ops);

}  // namespace cppetcd::api

#endif  // CPPETCD_SRC_API_VALIDATION_H_
