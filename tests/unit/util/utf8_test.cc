#include "cppetcd/util/utf8.h"

#include <string>

#include "gtest/gtest.h"

namespace cppetcd::util {
namespace {

const std::string kR = "\xef\xbf\xbd";  // U+FFFD

TEST(Utf8Test, SequenceLengthsAsGo) {
  EXPECT_EQ(Utf8SequenceLength(""), 0u);
  EXPECT_EQ(Utf8SequenceLength(std::string(1, '\0')), 1u);
  EXPECT_EQ(Utf8SequenceLength("\xc3\xa9"), 2u);
  EXPECT_EQ(Utf8SequenceLength("\xe2\x82\xac"), 3u);
  EXPECT_EQ(Utf8SequenceLength("\xf0\x9f\x98\x80"), 4u);
  EXPECT_EQ(Utf8SequenceLength("\xf4\x8f\xbf\xbf"), 4u);  // U+10FFFF
  EXPECT_EQ(Utf8SequenceLength("\xed\x9f\xbf"), 3u);      // U+D7FF
  EXPECT_EQ(Utf8SequenceLength("\xed\xa0\x80"), 0u);      // U+D800
  EXPECT_EQ(Utf8SequenceLength("\xc0\xaf"), 0u);          // overlong
  EXPECT_EQ(Utf8SequenceLength("\xe0\x9f\xbf"), 0u);      // overlong
  EXPECT_EQ(Utf8SequenceLength("\xf0\x8f\xbf\xbf"), 0u);  // overlong
  EXPECT_EQ(Utf8SequenceLength("\xf4\x90\x80\x80"), 0u);  // above U+10FFFF
  EXPECT_EQ(Utf8SequenceLength("\x80"), 0u);
  EXPECT_EQ(Utf8SequenceLength("\xff"), 0u);
  EXPECT_EQ(Utf8SequenceLength("\xe2\x82"), 0u);  // truncated
  EXPECT_TRUE(IsValidUtf8("plain \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("a\xff"));
}

TEST(Utf8Test, CoerceReplacesEachBadByte) {
  EXPECT_EQ(CoerceToUtf8("plain \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"),
            "plain \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
  EXPECT_EQ(CoerceToUtf8("\xe2\x82" "a"), kR + kR + "a");
  EXPECT_EQ(CoerceToUtf8("\xc0\xaf"), kR + kR);
  EXPECT_EQ(CoerceToUtf8("\xed\xa0\x80"), kR + kR + kR);
  EXPECT_EQ(CoerceToUtf8("\xf4\x90\x80\x80"), kR + kR + kR + kR);
  EXPECT_EQ(CoerceToUtf8("\xf0\x9f\x98"), kR + kR + kR);
  EXPECT_EQ(CoerceToUtf8(std::string("\0\x80", 2)), std::string("\0", 1) + kR);
  EXPECT_EQ(CoerceToUtf8("\xff\xfeu"), kR + kR + "u");
}

}  // namespace
}  // namespace cppetcd::util
