#include "cppetcd/api/errors.h"

#include <string>

#include "absl/container/flat_hash_map.h"

namespace cppetcd::api {
namespace {

using grpc::StatusCode;

// Internal message (etcd's Go error text of the module that raises it) on the
// left, etcd 3.4's gRPC answer (rpctypes/error.go, v3rpc/util.go) on the right.
// Rows whose internal text already is the gRPC text are raised that way by the
// server and request validation.
const std::vector<ErrorMapping>& Table() {
  static const auto* table = new std::vector<ErrorMapping>{
      // Request validation (server/validate.h).
      {"etcdserver: key is not provided", StatusCode::INVALID_ARGUMENT,
       "etcdserver: key is not provided"},
      {"etcdserver: value is provided", StatusCode::INVALID_ARGUMENT,
       "etcdserver: value is provided"},
      {"etcdserver: lease is provided", StatusCode::INVALID_ARGUMENT,
       "etcdserver: lease is provided"},
      {"etcdserver: too many operations in txn request", StatusCode::INVALID_ARGUMENT,
       "etcdserver: too many operations in txn request"},
      {"etcdserver: duplicate key given in txn request", StatusCode::INVALID_ARGUMENT,
       "etcdserver: duplicate key given in txn request"},
      {"etcdserver: invalid sort option", StatusCode::INVALID_ARGUMENT,
       "etcdserver: invalid sort option"},
      // mvcc.
      {"mvcc: required revision has been compacted", StatusCode::OUT_OF_RANGE,
       "etcdserver: mvcc: required revision has been compacted"},
      {"mvcc: required revision is a future revision", StatusCode::OUT_OF_RANGE,
       "etcdserver: mvcc: required revision is a future revision"},
      // Server.
      {"etcdserver: no space", StatusCode::RESOURCE_EXHAUSTED,
       "etcdserver: mvcc: database space exceeded"},
      {"etcdserver: request is too large", StatusCode::INVALID_ARGUMENT,
       "etcdserver: request is too large"},
      {"etcdserver: too many requests", StatusCode::RESOURCE_EXHAUSTED,
       "etcdserver: too many requests"},
      {"etcdserver: no leader", StatusCode::UNAVAILABLE, "etcdserver: no leader"},
      {"etcdserver: not leader", StatusCode::FAILED_PRECONDITION, "etcdserver: not leader"},
      {"etcdserver: leader changed", StatusCode::UNAVAILABLE, "etcdserver: leader changed"},
      {"etcdserver: not capable", StatusCode::UNAVAILABLE, "etcdserver: not capable"},
      {"etcdserver: server stopped", StatusCode::UNAVAILABLE, "etcdserver: server stopped"},
      {"etcdserver: request timed out", StatusCode::UNAVAILABLE, "etcdserver: request timed out"},
      {"etcdserver: request timed out, possibly due to previous leader failure",
       StatusCode::UNAVAILABLE,
       "etcdserver: request timed out, possibly due to previous leader failure"},
      {"etcdserver: request timed out, possibly due to connection lost", StatusCode::UNAVAILABLE,
       "etcdserver: request timed out, possibly due to connection lost"},
      {"etcdserver: request timed out, waiting for the applied index took too long",
       StatusCode::UNAVAILABLE,
       "etcdserver: request timed out, waiting for the applied index took too long"},
      {"etcdserver: unhealthy cluster", StatusCode::UNAVAILABLE, "etcdserver: unhealthy cluster"},
      {"etcdserver: key not found", StatusCode::INVALID_ARGUMENT, "etcdserver: key not found"},
      {"etcdserver: corrupt cluster", StatusCode::DATA_LOSS, "etcdserver: corrupt cluster"},
      {"etcdserver: bad leader transferee", StatusCode::FAILED_PRECONDITION,
       "etcdserver: bad leader transferee"},
      {"etcdserver: request timed out, leader transfer took too long", StatusCode::UNAVAILABLE,
       "etcdserver: request timed out, leader transfer took too long"},
      {"etcdserver: rpc not supported for learner", StatusCode::UNAVAILABLE,
       "etcdserver: rpc not supported for learner"},
      {"etcdserver: re-configuration failed due to not enough started members",
       StatusCode::FAILED_PRECONDITION,
       "etcdserver: re-configuration failed due to not enough started members"},
      {"etcdserver: can only promote a learner member which is in sync with leader",
       StatusCode::FAILED_PRECONDITION,
       "etcdserver: can only promote a learner member which is in sync with leader"},
      // Lease.
      {"lease not found", StatusCode::NOT_FOUND, "etcdserver: requested lease not found"},
      {"lease already exists", StatusCode::FAILED_PRECONDITION,
       "etcdserver: lease already exists"},
      {"too large lease TTL", StatusCode::OUT_OF_RANGE, "etcdserver: too large lease TTL"},
      // Membership.
      {"membership: ID removed", StatusCode::NOT_FOUND, "etcdserver: member not found"},
      {"membership: ID not found", StatusCode::NOT_FOUND, "etcdserver: member not found"},
      {"membership: ID exists", StatusCode::FAILED_PRECONDITION,
       "etcdserver: member ID already exist"},
      {"membership: peerURL exists", StatusCode::FAILED_PRECONDITION,
       "etcdserver: Peer URLs already exists"},
      {"membership: can only promote a learner member", StatusCode::FAILED_PRECONDITION,
       "etcdserver: can only promote a learner member"},
      {"membership: too many learner members in cluster", StatusCode::FAILED_PRECONDITION,
       "etcdserver: too many learner members in cluster"},
      {"etcdserver: given member URLs are invalid", StatusCode::INVALID_ARGUMENT,
       "etcdserver: given member URLs are invalid"},
      // Auth.
      {"auth: root user does not exist", StatusCode::FAILED_PRECONDITION,
       "etcdserver: root user does not exist"},
      {"auth: root user does not have root role", StatusCode::FAILED_PRECONDITION,
       "etcdserver: root user does not have root role"},
      {"auth: user already exists", StatusCode::FAILED_PRECONDITION,
       "etcdserver: user name already exists"},
      {"auth: user name is empty", StatusCode::INVALID_ARGUMENT, "etcdserver: user name is empty"},
      {"auth: user not found", StatusCode::FAILED_PRECONDITION, "etcdserver: user name not found"},
      {"auth: role already exists", StatusCode::FAILED_PRECONDITION,
       "etcdserver: role name already exists"},
      {"auth: role not found", StatusCode::FAILED_PRECONDITION, "etcdserver: role name not found"},
      {"auth: role name is empty", StatusCode::INVALID_ARGUMENT, "etcdserver: role name is empty"},
      {"auth: authentication failed, invalid user ID or password", StatusCode::INVALID_ARGUMENT,
       "etcdserver: authentication failed, invalid user ID or password"},
      {"auth: permission denied", StatusCode::PERMISSION_DENIED, "etcdserver: permission denied"},
      {"auth: role is not granted to the user", StatusCode::FAILED_PRECONDITION,
       "etcdserver: role is not granted to the user"},
      {"auth: permission is not granted to the role", StatusCode::FAILED_PRECONDITION,
       "etcdserver: permission is not granted to the role"},
      {"auth: authentication is not enabled", StatusCode::FAILED_PRECONDITION,
       "etcdserver: authentication is not enabled"},
      {"auth: invalid auth token", StatusCode::UNAUTHENTICATED, "etcdserver: invalid auth token"},
      {"auth: invalid auth management", StatusCode::INVALID_ARGUMENT,
       "etcdserver: invalid auth management"},
      {"auth: revision in header is old", StatusCode::INVALID_ARGUMENT,
       "etcdserver: revision of auth store is old"},
      // Streams.
      {"etcdserver: watch canceled", StatusCode::CANCELLED, "etcdserver: watch canceled"},
  };
  return *table;
}

// Index by internal message and by gRPC message; internal wins.
const absl::flat_hash_map<std::string_view, const ErrorMapping*>& Index() {
  static const auto* index = [] {
    auto* m = new absl::flat_hash_map<std::string_view, const ErrorMapping*>();
    for (const ErrorMapping& row : Table()) m->emplace(row.grpc_message, &row);
    for (const ErrorMapping& row : Table()) (*m)[row.internal_message] = &row;
    return m;
  }();
  return *index;
}

grpc::Status FromRow(std::string_view grpc_message) {
  const ErrorMapping* row = Index().at(grpc_message);
  return grpc::Status(row->code, std::string(row->grpc_message));
}

}  // namespace

const std::vector<ErrorMapping>& ErrorTable() { return Table(); }

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // Debian's Abseil has its own string_view type.
  const std::string_view message(status.message().data(), status.message().size());
  auto it = Index().find(message);
  if (it != Index().end()) {
    return grpc::Status(it->second->code, std::string(it->second->grpc_message));
  }
  // An error wrapped with context ("...: mvcc: required revision has been
  // compacted") still maps by its known cause.
  for (const ErrorMapping& row : Table()) {
    if (message.find(row.internal_message) != std::string_view::npos) {
      return grpc::Status(row.code, std::string(row.grpc_message));
    }
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(message));
}

grpc::Status GrpcNoLeader() { return FromRow("etcdserver: no leader"); }
grpc::Status GrpcNotForLearner() { return FromRow("etcdserver: rpc not supported for learner"); }
grpc::Status GrpcWatchCanceled() { return FromRow("etcdserver: watch canceled"); }
grpc::Status GrpcRequestTooLarge() { return FromRow("etcdserver: request is too large"); }

}  // namespace cppetcd::api
