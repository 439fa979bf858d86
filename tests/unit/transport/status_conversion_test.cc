// The conversion of errors between members (src/transport/impl.h): the
// typed code and any other payload survive ToGrpc then FromGrpc.
#include <string>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "cppetcd/util/error.h"
#include "peerpb/peer.pb.h"
#include "src/transport/impl.h"

namespace cppetcd::transport {
namespace {

TEST(StatusConversionTest, TypedErrorRoundTrips) {
  const absl::Status typed = util::MakeError(absl::StatusCode::kFailedPrecondition,
                                             util::ErrorCode::kNotLeader, "etcdserver: not leader");
  const grpc::Status wire = ToGrpc(typed);
  EXPECT_EQ(wire.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(wire.error_message(), "etcdserver: not leader");
  // The details read as google.rpc.Status (code, message, Any-like details).
  peerpb::StatusDetails details;
  ASSERT_TRUE(details.ParseFromString(wire.error_details()));
  EXPECT_EQ(details.code(), static_cast<int32_t>(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(details.message(), "etcdserver: not leader");
  ASSERT_EQ(details.details_size(), 1);
  EXPECT_EQ(details.details(0).type_url(), std::string(util::kErrorCodeUrl));
  EXPECT_EQ(details.details(0).value(), "NotLeader");

  const absl::Status back = FromGrpc(wire);
  EXPECT_EQ(back, typed);  // code, message and payloads
  EXPECT_TRUE(util::HasErrorCode(back, util::ErrorCode::kNotLeader));
}

TEST(StatusConversionTest, OtherPayloadsTravelToo) {
  absl::Status s = util::MakeError(absl::StatusCode::kNotFound, util::ErrorCode::kLeaseNotFound,
                                   "lease not found");
  s.SetPayload("type.example/extra", absl::Cord(std::string("\0\1\2", 3)));
  EXPECT_EQ(FromGrpc(ToGrpc(s)), s);
}

TEST(StatusConversionTest, UntypedStaysUntyped) {
  const absl::Status plain = absl::NotFoundError("lease not found");
  const grpc::Status wire = ToGrpc(plain);
  EXPECT_TRUE(wire.error_details().empty());
  const absl::Status back = FromGrpc(wire);
  EXPECT_EQ(back, plain);
  EXPECT_EQ(util::ErrorCodeOf(back), util::ErrorCode::kNone);
  // A status from elsewhere with etcd's text is still not typed.
  EXPECT_EQ(util::ErrorCodeOf(FromGrpc(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                                    "etcdserver: requested lease not found"))),
            util::ErrorCode::kNone);
}

TEST(StatusConversionTest, GarbageDetailsAreIgnored) {
  const absl::Status back =
      FromGrpc(grpc::Status(grpc::StatusCode::UNAVAILABLE, "x", std::string("\xff\xff\xff", 3)));
  EXPECT_EQ(back.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(back.message(), "x");
  EXPECT_EQ(util::ErrorCodeOf(back), util::ErrorCode::kNone);
}

TEST(StatusConversionTest, Ok) {
  EXPECT_TRUE(ToGrpc(absl::OkStatus()).ok());
  EXPECT_TRUE(FromGrpc(grpc::Status::OK).ok());
}

}  // namespace
}  // namespace cppetcd::transport
