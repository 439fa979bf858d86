// The one table that turns the modules' absl::Status errors into the gRPC
// status etcd 3.4 sends (code and exact message). etcdctl and the client
// libraries recognise errors by these texts, so they must match
// etcdserver/api/v3rpc/rpctypes byte for byte.
#ifndef CPPETCD_API_ERRORS_H_
#define CPPETCD_API_ERRORS_H_

#include <string_view>
#include <vector>

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace cppetcd::api {

// One row of the table: an internal error (recognised by its message, which
// the modules keep equal to etcd's Go error text, e.g. "mvcc: required
// revision has been compacted") and the gRPC status etcd answers with.
struct ErrorMapping {
  std::string_view internal_message;
  grpc::StatusCode code;
  std::string_view grpc_message;
};

// The whole table, for tests and documentation.
const std::vector<ErrorMapping>& ErrorTable();

// Maps an error to etcd's gRPC status. A status whose message is an
// internal message of the table, or already one of etcd's gRPC messages, gets
// that row's code and message; Cancelled/DeadlineExceeded keep their code;
// anything else keeps its code number (absl and gRPC share them) and message.
// OK maps to OK.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Statuses the api layer produces itself.
grpc::Status GrpcNoLeader();           // UNAVAILABLE "etcdserver: no leader"
grpc::Status GrpcNotForLearner();      // UNAVAILABLE "etcdserver: rpc not supported for learner"
grpc::Status GrpcWatchCanceled();      // CANCELLED "etcdserver: watch canceled"
grpc::Status GrpcRequestTooLarge();    // INVALID_ARGUMENT "etcdserver: request is too large"

}  // namespace cppetcd::api

#endif  // CPPETCD_API_ERRORS_H_
