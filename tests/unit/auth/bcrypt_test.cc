#include "cppetcd/auth/bcrypt.h"

#include "gtest/gtest.h"

namespace cppetcd::auth {
namespace {

TEST(BcryptTest, RoundTripWithGoLabel) {
  auto h = BcryptHash("s3cret", 4);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->substr(0, 7), "$2a$04$");
  EXPECT_EQ(h->size(), 60u);
  EXPECT_TRUE(BcryptCheck(*h, "s3cret"));
  EXPECT_FALSE(BcryptCheck(*h, "s3cret2"));
  EXPECT_FALSE(BcryptCheck(*h, ""));
}

TEST(BcryptTest, SaltsDiffer) {
  auto a = BcryptHash("pw", 4);
  auto b = BcryptHash("pw", 4);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
}

// Vectors made by Go's golang.org/x/crypto/bcrypt (its own test data).
TEST(BcryptTest, VerifiesGoHashes) {
  EXPECT_TRUE(BcryptCheck("$2a$10$XajjQvNhvvRt5GSeFk1xFeyqRrsxkhBkUiQeg0dt.wU1qD4aFDcga", "allmine"));
  EXPECT_FALSE(BcryptCheck("$2a$10$XajjQvNhvvRt5GSeFk1xFeyqRrsxkhBkUiQeg0dt.wU1qD4aFDcga", "allyours"));
  EXPECT_TRUE(BcryptCheck("$2a$10$LK9XRuhNxHHCvjX3tdkRKei1QiCDUKrJRhZv7WWZPuQGRUM92rOUa", "passw0rd"));
}

TEST(BcryptTest, RejectsMalformedHashesAndCosts) {
  EXPECT_FALSE(BcryptCheck("$2a$10$fooo", "x"));
  EXPECT_FALSE(BcryptCheck("", ""));
  EXPECT_FALSE(BcryptCheck("$1$abcdefgh$0123456789012345678901", "x"));
  EXPECT_FALSE(BcryptHash("x", 3).ok());
  EXPECT_FALSE(BcryptHash("x", 32).ok());
}

}  // namespace
}  // namespace cppetcd::auth
