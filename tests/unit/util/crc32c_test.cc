#include "cppetcd/util/crc32c.h"

#include <string>

#include "gtest/gtest.h"

namespace cppetcd::util {
namespace {

// Bit-at-a-time reference implementation to check the sliced tables.
uint32_t NaiveCrc32c(const std::string& s) {
  uint32_t c = ~0u;
  for (unsigned char b : s) {
    c ^= b;
    for (int i = 0; i < 8; ++i) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
  }
  return ~c;
}

TEST(Crc32cTest, KnownValues) {
  // RFC 3720 B.4 and the common check value.
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  EXPECT_EQ(Crc32c(""), 0u);
}

TEST(Crc32cTest, MatchesNaiveOnAllLengthsAndOffsets) {
  std::string data;
  for (int i = 0; i < 100; ++i) data.push_back(static_cast<char>(i * 37 + 11));
  for (size_t off = 0; off < 9; ++off) {
    for (size_t len = 0; off + len <= data.size(); ++len) {
      std::string s = data.substr(off, len);
      ASSERT_EQ(Crc32c(s), NaiveCrc32c(s)) << "off=" << off << " len=" << len;
    }
  }
}

TEST(Crc32cTest, ExtendChains) {
  std::string a = "hello, ", b = "world and a longer tail to cross eight bytes";
  EXPECT_EQ(Crc32cExtend(Crc32c(a), b.data(), b.size()), Crc32c(a + b));
  EXPECT_NE(Crc32c(a + b), Crc32c(b + a));
}

}  // namespace
}  // namespace cppetcd::util
