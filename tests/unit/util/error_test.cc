#include "cppetcd/util/error.h"

#include <set>
#include <string>
#include <thread>

#include <gtest/gtest.h>

namespace cppetcd::util {
namespace {

TEST(ErrorTest, MakeErrorCarriesCodeMessageAndType) {
  absl::Status s = MakeError(absl::StatusCode::kOutOfRange, ErrorCode::kCompacted,
                             "mvcc: required revision has been compacted");
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(s.message(), "mvcc: required revision has been compacted");
  EXPECT_EQ(ErrorCodeOf(s), ErrorCode::kCompacted);
  EXPECT_TRUE(HasErrorCode(s, ErrorCode::kCompacted));
  EXPECT_FALSE(HasErrorCode(s, ErrorCode::kFutureRev));
}

TEST(ErrorTest, TextAloneIsNoType) {
  // Same code and text as ErrCompacted, but made without a type.
  absl::Status s = absl::OutOfRangeError("mvcc: required revision has been compacted");
  EXPECT_EQ(ErrorCodeOf(s), ErrorCode::kNone);
  EXPECT_FALSE(HasErrorCode(s, ErrorCode::kCompacted));
  EXPECT_EQ(ErrorCodeOf(absl::OkStatus()), ErrorCode::kNone);
  EXPECT_FALSE(HasErrorCode(absl::OkStatus(), ErrorCode::kNone));
}

TEST(ErrorTest, TypeSurvivesCopiesAndIsComparedByEquality) {
  absl::Status a = MakeError(absl::StatusCode::kNotFound, ErrorCode::kLeaseNotFound, "lease not found");
  absl::Status b = a;  // NOLINT: a copy on purpose
  absl::Status c = CopyStatus(a);
  EXPECT_EQ(ErrorCodeOf(b), ErrorCode::kLeaseNotFound);
  EXPECT_EQ(ErrorCodeOf(c), ErrorCode::kLeaseNotFound);
  EXPECT_EQ(a, c);
  // absl::Status equality includes payloads: text alone is a different error.
  EXPECT_NE(a, absl::NotFoundError("lease not found"));
  EXPECT_TRUE(CopyStatus(absl::OkStatus()).ok());
}

TEST(ErrorTest, CopiesAreIndependentAcrossThreads) {
  const absl::Status shared = MakeError(absl::StatusCode::kUnavailable, ErrorCode::kTimeout, "t");
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([copy = CopyStatus(shared)] {
      for (int j = 0; j < 100; ++j) EXPECT_EQ(ErrorCodeOf(copy), ErrorCode::kTimeout);
    });
  }
  for (auto& t : threads) t.join();
}

TEST(ErrorTest, NamesAreUniqueAndRoundTrip) {
  std::set<std::string_view> names;
  int32_t expected = 1;
  for (ErrorCode code : AllErrorCodes()) {
    EXPECT_EQ(static_cast<int32_t>(code), expected++);
    std::string_view name = ErrorCodeName(code);
    EXPECT_FALSE(name.empty());
    EXPECT_TRUE(names.insert(name).second) << name;
    EXPECT_EQ(ErrorCodeFromName(name), code) << name;
  }
  EXPECT_EQ(ErrorCodeName(ErrorCode::kNone), "None");
  EXPECT_EQ(ErrorCodeName(static_cast<ErrorCode>(100000)), "");
  EXPECT_EQ(ErrorCodeFromName("NoSuchError"), ErrorCode::kNone);
  EXPECT_EQ(ErrorCodeFromName("None"), ErrorCode::kNone);
  // Names are part of the member-to-member protocol: pin a few.
  EXPECT_EQ(ErrorCodeName(ErrorCode::kCompacted), "Compacted");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kLeaseNotFound), "LeaseNotFound");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kNotLeader), "NotLeader");
}

TEST(ErrorTest, UnknownPayloadNameIsNoType) {
  absl::Status s = absl::InternalError("x");
  s.SetPayload(std::string(kErrorCodeUrl), absl::Cord("FromANewerMember"));
  EXPECT_EQ(ErrorCodeOf(s), ErrorCode::kNone);
}

}  // namespace
}  // namespace cppetcd::util
