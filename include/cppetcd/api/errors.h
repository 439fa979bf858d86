// The one mapping from the modules' typed errors (util/error.h) to the gRPC
// status etcd 3.4 sends (code and exact message). etcdctl and the client
// libraries recognise errors by these texts, so they must match
// etcdserver/api/v3rpc/rpctypes byte for byte. Only the typed code decides:
// a status without one passes through whatever its message says.
#ifndef CPPETCD_API_ERRORS_H_
#define CPPETCD_API_ERRORS_H_

#include <optional>
#include <string_view>
#include <vector>

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "cppetcd/util/error.h"

namespace cppetcd::api {

// etcd's gRPC answer to one typed error.
struct ErrorMapping {
  util::ErrorCode error;
  grpc::StatusCode code;
  std::string_view grpc_message;  // starts with "etcdserver: "
};

// etcd's answer to `error`, or nullopt for codes etcd has no gRPC error for
// (raft, snap, watch internals, kNoPasswordUser, ...): those pass through.
std::optional<ErrorMapping> EtcdGrpcError(util::ErrorCode error);

// Every code that has an answer, in util::AllErrorCodes() order (tests and
// documentation).
const std::vector<ErrorMapping>& ErrorTable();

// Maps an error to etcd's gRPC status: a typed error with an etcd answer gets
// that answer; anything else keeps its code number (absl and gRPC share
// them) and message. OK maps to OK.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Statuses the api layer produces itself.
grpc::Status GrpcNoLeader();           // UNAVAILABLE "etcdserver: no leader"
grpc::Status GrpcNotForLearner();      // UNAVAILABLE "etcdserver: rpc not supported for learner"
grpc::Status GrpcWatchCanceled();      // CANCELLED "etcdserver: watch canceled"
grpc::Status GrpcRequestTooLarge();    // INVALID_ARGUMENT "etcdserver: request is too large"

}  // namespace cppetcd::api

#endif  // CPPETCD_API_ERRORS_H_
