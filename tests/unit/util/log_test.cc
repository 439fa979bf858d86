#include "cppetcd/util/log.h"

#include <string>

#include "gtest/gtest.h"

namespace cppetcd::util {
namespace {

TEST(LogTest, FormatsEtcdLikeJsonLine) {
  CapturedLog cap = NewCapturedLog();
  Logger log("etcdserver", cap.sink);
  log.Info("ready to serve client requests", {{"address", "127.0.0.1:2379"}, {"term", 3}});
  auto lines = cap.Lines();
  ASSERT_EQ(lines.size(), 1u);
  const std::string& l = lines[0];
  EXPECT_EQ(l.rfind("{\"level\":\"info\",\"ts\":\"", 0), 0u) << l;
  EXPECT_NE(l.find("\"caller\":\"etcdserver\",\"msg\":\"ready to serve client requests\","
                   "\"address\":\"127.0.0.1:2379\",\"term\":3}"),
            std::string::npos)
      << l;
}

TEST(LogTest, EscapesControlCharactersAndQuotes) {
  Logger log("x", NewCapturedLog().sink);
  std::string line = log.Format(LogLevel::kWarn, "a\"b\n", {{"k", std::string("\x01")}});
  EXPECT_NE(line.find("\"msg\":\"a\\\"b\\n\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"k\":\"\\u0001\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"level\":\"warn\""), std::string::npos) << line;
}

// A user name may be any bytes: the line stays valid JSON, as zap's.
TEST(LogTest, BytesThatAreNotUtf8AreReplacementCharacters) {
  Logger log("x", NewCapturedLog().sink);
  std::string line =
      log.Format(LogLevel::kInfo, "m", {{"user-name", std::string("\xff\xc3\xa9u\xe2\x82")}});
  EXPECT_NE(line.find("\"user-name\":\"\\ufffd\xc3\xa9u\\ufffd\\ufffd\""), std::string::npos)
      << line;
}

TEST(LogTest, ParsesEtcdLevelNames) {
  EXPECT_EQ(ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(ParseLogLevel("warn"), LogLevel::kWarn);
  EXPECT_EQ(ParseLogLevel("panic"), LogLevel::kFatal);
  EXPECT_EQ(ParseLogLevel("verbose"), std::nullopt);
}

TEST(LogTest, IdsInHex) { EXPECT_EQ(IdToHex(0x8e9e05c52164694dULL), "8e9e05c52164694d"); }

}  // namespace
}  // namespace cppetcd::util
