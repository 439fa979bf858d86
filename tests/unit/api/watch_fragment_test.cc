#include "cppetcd/api/watch_fragment.h"

#include <string>

#include <gtest/gtest.h>

namespace cppetcd::api {
namespace {

etcdserverpb::WatchResponse ResponseWithEvents(int n, size_t value_bytes) {
  etcdserverpb::WatchResponse r;
  r.mutable_header()->set_revision(42);
  r.set_watch_id(3);
  for (int i = 0; i < n; ++i) {
    auto* e = r.add_events();
    e->mutable_kv()->set_key("key" + std::to_string(i));
    e->mutable_kv()->set_value(std::string(value_bytes, 'v'));
  }
  return r;
}

TEST(WatchFragmentTest, SmallResponseIsWhole) {
  auto r = ResponseWithEvents(3, 10);
  auto out = FragmentWatchResponse(r, 1 << 20);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].fragment());
  EXPECT_EQ(out[0].events_size(), 3);
}

TEST(WatchFragmentTest, SingleHugeEventIsWhole) {
  auto r = ResponseWithEvents(1, 5000);
  auto out = FragmentWatchResponse(r, 100);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].fragment());
}

TEST(WatchFragmentTest, SplitsKeepingOrderAndMarksAllButLast) {
  auto r = ResponseWithEvents(10, 100);
  const size_t max = 350;
  auto out = FragmentWatchResponse(r, max);
  ASSERT_GT(out.size(), 1u);
  int next = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i].fragment(), i + 1 < out.size());
    EXPECT_EQ(out[i].watch_id(), 3);
    EXPECT_EQ(out[i].header().revision(), 42);
    ASSERT_GE(out[i].events_size(), 1);
    if (out[i].events_size() > 1) {
      EXPECT_LT(out[i].ByteSizeLong(), max);
    }
    for (const auto& e : out[i].events()) EXPECT_EQ(e.kv().key(), "key" + std::to_string(next++));
  }
  EXPECT_EQ(next, 10);
}

}  // namespace
}  // namespace cppetcd::api
