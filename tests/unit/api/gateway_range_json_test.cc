// RangeJsonWriter: the streamed JSON of a serialized RangeResponse against
// the one-shot encoder (MessageToGatewayJson) on random responses, split
// into random slices and read in random pieces.
#include "src/api/gateway_range_json.h"

#include <atomic>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <grpcpp/support/slice.h>

#include "cppetcd/api/http_server.h"
#include "etcdserverpb/rpc.pb.h"

namespace cppetcd::api {
namespace {

std::string RandomBytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

int64_t RandomInt64(std::mt19937_64& rng) {
  switch (rng() % 5) {
    case 0:
      return 0;
    case 1:
      return static_cast<int64_t>(rng() % 1000);
    case 2:
      return -static_cast<int64_t>(rng() % 1000) - 1;
    case 3:
      return static_cast<int64_t>(rng());  // any, both signs
    default:
      return rng() % 2 == 0 ? INT64_MAX : INT64_MIN;
  }
}

size_t RandomSize(std::mt19937_64& rng) {
  switch (rng() % 6) {
    case 0:
      return 0;
    case 1:
      return 1 + rng() % 3;  // every base64 padding
    case 2:
      return rng() % 64;
    case 3:
      return rng() % 2048;
    case 4:
      return rng() % 20 == 0 ? 200 * 1024 + rng() % 5 : rng() % 100;  // sometimes large
    default:
      return 5;
  }
}

etcdserverpb::RangeResponse RandomResponse(std::mt19937_64& rng) {
  etcdserverpb::RangeResponse r;
  if (rng() % 8 != 0) {
    etcdserverpb::ResponseHeader* h = r.mutable_header();  // sometimes all zero
    if (rng() % 4 != 0) h->set_cluster_id(rng());
    if (rng() % 4 != 0) h->set_member_id(rng());
    if (rng() % 4 != 0) h->set_revision(RandomInt64(rng));
    if (rng() % 4 != 0) h->set_raft_term(rng() % 100);
  }
  const bool count_only = rng() % 6 == 0;
  const int kvs = count_only ? 0 : static_cast<int>(rng() % 4 == 0 ? 0 : rng() % 40);
  for (int i = 0; i < kvs; ++i) {
    mvccpb::KeyValue* kv = r.add_kvs();
    kv->set_key(RandomBytes(rng, rng() % 10 == 0 ? 0 : RandomSize(rng)));
    kv->set_create_revision(RandomInt64(rng));
    kv->set_mod_revision(RandomInt64(rng));
    kv->set_version(RandomInt64(rng));
    kv->set_value(RandomBytes(rng, RandomSize(rng)));
    kv->set_lease(RandomInt64(rng));
  }
  r.set_more(rng() % 3 == 0);
  r.set_count(rng() % 5 == 0 ? 0 : RandomInt64(rng));
  return r;
}

// `bytes` as a ByteBuffer of random slices (a field may straddle two).
grpc::ByteBuffer RandomSlices(std::mt19937_64& rng, const std::string& bytes) {
  std::vector<grpc::Slice> slices;
  size_t off = 0;
  while (off < bytes.size()) {
    const size_t n = std::min<size_t>(bytes.size() - off, 1 + rng() % (rng() % 2 ? 7 : 70000));
    slices.emplace_back(bytes.data() + off, n);
    off += n;
  }
  if (slices.empty()) return grpc::ByteBuffer();
  return grpc::ByteBuffer(slices.data(), slices.size());
}

std::string ReadAll(std::mt19937_64& rng, RangeJsonWriter& w) {
  std::string out;
  std::vector<char> buf(100000);
  for (int guard = 0; guard < 10000000; ++guard) {
    const size_t max = 1 + rng() % (rng() % 2 ? 16 : buf.size());
    const int64_t n = w.Read(buf.data(), max);
    EXPECT_GE(n, 0);
    if (n <= 0) break;
    EXPECT_LE(static_cast<size_t>(n), max);
    out.append(buf.data(), static_cast<size_t>(n));
  }
  return out;
}

TEST(RangeJsonWriterTest, StreamedOutputEqualsTheOneShotEncoderOnRandomResponses) {
  const uint64_t seed = std::random_device{}();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  int with_kvs = 0, empty = 0, large = 0;
  for (int iter = 0; iter < 300; ++iter) {
    SCOPED_TRACE(iter);
    const etcdserverpb::RangeResponse r = RandomResponse(rng);
    const std::string want = MessageToGatewayJson(r);
    auto w = RangeJsonWriter::Create(RandomSlices(rng, r.SerializeAsString()));
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_EQ((*w)->size(), want.size());
    const std::string got = ReadAll(rng, **w);
    ASSERT_EQ(got, want);
    EXPECT_EQ((*w)->written(), want.size());
    char c;
    EXPECT_EQ((*w)->Read(&c, 1), 0);  // the end stays the end
    with_kvs += r.kvs_size() > 0;
    empty += r.kvs_size() == 0;
    large += want.size() > 200 * 1024;
  }
  // The random cases covered what they are meant to.
  EXPECT_GT(with_kvs, 50);
  EXPECT_GT(empty, 20);
  EXPECT_GT(large, 5);
}

TEST(RangeJsonWriterTest, FixedShapes) {
  struct Case {
    etcdserverpb::RangeResponse r;
    std::string want;
  };
  std::vector<Case> cases(5);
  cases[0].want = "{}";  // nothing at all (no header)
  cases[1].r.mutable_header();
  cases[1].want = "{\"header\":{}}";
  cases[2].r.set_count(7);  // count_only
  cases[2].r.mutable_header()->set_revision(3);
  cases[2].want = "{\"header\":{\"revision\":\"3\"},\"count\":\"7\"}";
  cases[3].r.set_more(true);
  cases[3].r.add_kvs();
  cases[3].want = "{\"kvs\":[{}],\"more\":true}";
  auto* kv = cases[4].r.add_kvs();
  kv->set_key("foo");
  kv->set_lease(-5);
  cases[4].r.add_kvs()->set_value("ab");
  cases[4].want = "{\"kvs\":[{\"key\":\"Zm9v\",\"lease\":\"-5\"},{\"value\":\"YWI=\"}]}";
  std::mt19937_64 rng(1);
  for (Case& c : cases) {
    SCOPED_TRACE(c.want);
    ASSERT_EQ(MessageToGatewayJson(c.r), c.want);  // the one-shot agrees
    auto w = RangeJsonWriter::Create(RandomSlices(rng, c.r.SerializeAsString()));
    ASSERT_TRUE(w.ok());
    EXPECT_EQ((*w)->size(), c.want.size());
    EXPECT_EQ(ReadAll(rng, **w), c.want);
  }
}

TEST(RangeJsonWriterTest, MalformedBytesAreRefused) {
  for (const std::string& bad : {std::string("\x12\x05" "ab", 4), std::string("\x12"),
                                 std::string("\x0a\x02\x08", 3), std::string("\xff\xff")}) {
    const grpc::Slice s(bad);
    auto w = RangeJsonWriter::Create(grpc::ByteBuffer(&s, 1));
    EXPECT_FALSE(w.ok()) << w.status();
  }
}

// The response's bytes (with what they carry: on the gateway, the Range
// budget's charge) go as soon as the last byte is out, before the writer.
TEST(RangeJsonWriterTest, ReleasesTheResponseAfterTheLastByte) {
  etcdserverpb::RangeResponse r;
  r.mutable_header()->set_revision(9);
  for (int i = 0; i < 100; ++i) r.add_kvs()->set_value(std::string(1000, 'x'));
  r.set_count(100);
  struct Owned {
    std::string bytes;
    std::atomic<bool>* freed;
  };
  std::atomic<bool> freed{false};
  auto* owned = new Owned{r.SerializeAsString(), &freed};
  {
    grpc::Slice slice(owned->bytes.data(), owned->bytes.size(),
                      [](void* p) {
                        auto* o = static_cast<Owned*>(p);
                        o->freed->store(true);
                        delete o;
                      },
                      owned);
    auto w = RangeJsonWriter::Create(grpc::ByteBuffer(&slice, 1));
    ASSERT_TRUE(w.ok());
    slice = grpc::Slice();
    EXPECT_FALSE(freed.load());
    std::vector<char> buf((*w)->size());
    ASSERT_EQ((*w)->Read(buf.data(), 5000), 5000);
    EXPECT_FALSE(freed.load());  // key-values still to come
    const int64_t rest = static_cast<int64_t>(buf.size()) - 5000;
    ASSERT_EQ((*w)->Read(buf.data(), buf.size()), rest);
    EXPECT_TRUE(freed.load());
  }
}

}  // namespace
}  // namespace cppetcd::api
