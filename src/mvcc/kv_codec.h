// Private helper of the mvcc store: a light decoder of the serialized
// mvccpb::KeyValue fields the index rebuild needs (no copy of the value).
#ifndef CPPETCD_SRC_MVCC_KV_CODEC_H_
#define CPPETCD_SRC_MVCC_KV_CODEC_H_

#include <cstdint>
#include <string_view>

namespace cppetcd::mvcc::internal {

// The KeyValue fields other than the value. `key` points into the input.
struct KvMeta {
  std::string_view key;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

// Decodes the protobuf wire form of mvccpb::KeyValue (field numbers of
// proto/mvccpb/kv.proto). False on malformed input.
bool DecodeKvMeta(std::string_view data, KvMeta* out);

}  // namespace cppetcd::mvcc::internal

#endif  // CPPETCD_SRC_MVCC_KV_CODEC_H_
