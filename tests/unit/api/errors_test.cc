#include "cppetcd/api/errors.h"

#include <set>
#include <string>

#include <gtest/gtest.h>

#include "absl/status/status.h"

namespace cppetcd::api {
namespace {

struct Case {
  absl::Status internal;
  grpc::StatusCode code;
  std::string message;
};

// The texts etcd 3.4 sends (rpctypes/error.go); clients match on them.
TEST(ErrorsTest, MapsInternalErrorsToEtcdStatuses) {
  const Case cases[] = {
      {absl::OutOfRangeError("mvcc: required revision has been compacted"),
       grpc::StatusCode::OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"},
      {absl::OutOfRangeError("mvcc: required revision is a future revision"),
       grpc::StatusCode::OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision"},
      {absl::NotFoundError("lease not found"), grpc::StatusCode::NOT_FOUND,
       "etcdserver: requested lease not found"},
      {absl::AlreadyExistsError("lease already exists"), grpc::StatusCode::FAILED_PRECONDITION,
       "etcdserver: lease already exists"},
      {absl::OutOfRangeError("too large lease TTL"), grpc::StatusCode::OUT_OF_RANGE,
       "etcdserver: too large lease TTL"},
      {absl::InvalidArgumentError("etcdserver: key is not provided"),
       grpc::StatusCode::INVALID_ARGUMENT, "etcdserver: key is not provided"},
      {absl::InvalidArgumentError("etcdserver: duplicate key given in txn request"),
       grpc::StatusCode::INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request"},
      {absl::InvalidArgumentError("etcdserver: too many operations in txn request"),
       grpc::StatusCode::INVALID_ARGUMENT, "etcdserver: too many operations in txn request"},
      {absl::ResourceExhaustedError("etcdserver: no space"), grpc::StatusCode::RESOURCE_EXHAUSTED,
       "etcdserver: mvcc: database space exceeded"},
      {absl::ResourceExhaustedError("etcdserver: mvcc: database space exceeded"),
       grpc::StatusCode::RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded"},
      {absl::InvalidArgumentError("etcdserver: request is too large"),
       grpc::StatusCode::INVALID_ARGUMENT, "etcdserver: request is too large"},
      {absl::ResourceExhaustedError("etcdserver: too many requests"),
       grpc::StatusCode::RESOURCE_EXHAUSTED, "etcdserver: too many requests"},
      {absl::UnavailableError("etcdserver: request timed out"), grpc::StatusCode::UNAVAILABLE,
       "etcdserver: request timed out"},
      {absl::UnavailableError("etcdserver: no leader"), grpc::StatusCode::UNAVAILABLE,
       "etcdserver: no leader"},
      {absl::UnavailableError("etcdserver: server stopped"), grpc::StatusCode::UNAVAILABLE,
       "etcdserver: server stopped"},
      {absl::InvalidArgumentError("etcdserver: key not found"), grpc::StatusCode::INVALID_ARGUMENT,
       "etcdserver: key not found"},
      {absl::FailedPreconditionError("etcdserver: bad leader transferee"),
       grpc::StatusCode::FAILED_PRECONDITION, "etcdserver: bad leader transferee"},
      {absl::NotFoundError("membership: ID not found"), grpc::StatusCode::NOT_FOUND,
       "etcdserver: member not found"},
      {absl::FailedPreconditionError("auth: revision in header is old"),
       grpc::StatusCode::INVALID_ARGUMENT, "etcdserver: revision of auth store is old"},
      // Wrapped with context: still recognised by its cause.
      {absl::OutOfRangeError("range at 3: mvcc: required revision has been compacted"),
       grpc::StatusCode::OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"},
  };
  for (const Case& c : cases) {
    grpc::Status got = ToGrpcStatus(c.internal);
    EXPECT_EQ(got.error_code(), c.code) << c.internal;
    EXPECT_EQ(got.error_message(), c.message) << c.internal;
  }
}

TEST(ErrorsTest, OkAndUnknownErrors) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  grpc::Status unknown = ToGrpcStatus(absl::InternalError("disk on fire"));
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(unknown.error_message(), "disk on fire");
  grpc::Status unimpl = ToGrpcStatus(absl::UnimplementedError("etcdserver: x is not implemented yet"));
  EXPECT_EQ(unimpl.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(ToGrpcStatus(absl::DeadlineExceededError("deadline")).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST(ErrorsTest, ApiStatuses) {
  EXPECT_EQ(GrpcNoLeader().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(GrpcNoLeader().error_message(), "etcdserver: no leader");
  EXPECT_EQ(GrpcWatchCanceled().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(GrpcRequestTooLarge().error_message(), "etcdserver: request is too large");
}

TEST(ErrorsTest, TableIsConsistent) {
  std::set<std::string_view> internal;
  for (const ErrorMapping& row : ErrorTable()) {
    EXPECT_TRUE(internal.insert(row.internal_message).second) << row.internal_message;
    EXPECT_TRUE(row.grpc_message.starts_with("etcdserver: ")) << row.grpc_message;
    EXPECT_NE(row.code, grpc::StatusCode::OK);
    // Every row maps its own gRPC text to itself (idempotent mapping).
    grpc::Status again = ToGrpcStatus(absl::UnknownError(std::string(row.grpc_message)));
    EXPECT_EQ(again.error_message(), row.grpc_message);
  }
}

}  // namespace
}  // namespace cppetcd::api
