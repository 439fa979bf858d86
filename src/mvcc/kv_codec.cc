#include "kv_codec.h"

namespace cppetcd::mvcc::internal {
namespace {

bool ReadVarint(const char*& p, const char* end, uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64 && p < end; shift += 7) {
    uint8_t b = static_cast<uint8_t>(*p++);
    result |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return false;
}

}  // namespace

bool DecodeKvMeta(std::string_view data, KvMeta* out) {
  *out = KvMeta();
  const char* p = data.data();
  const char* end = p + data.size();
  while (p < end) {
    uint64_t tag;
    if (!ReadVarint(p, end, &tag)) return false;
    const uint32_t field = static_cast<uint32_t>(tag >> 3);
    const uint32_t wire = static_cast<uint32_t>(tag & 7);
    if (wire == 0) {
      uint64_t v;
      if (!ReadVarint(p, end, &v)) return false;
      switch (field) {
        case 2: out->create_revision = static_cast<int64_t>(v); break;
        case 3: out->mod_revision = static_cast<int64_t>(v); break;
        case 4: out->version = static_cast<int64_t>(v); break;
        case 6: out->lease = static_cast<int64_t>(v); break;
        default: break;
      }
    } else if (wire == 2) {
      uint64_t len;
      if (!ReadVarint(p, end, &len) || len > static_cast<uint64_t>(end - p)) return false;
      if (field == 1) out->key = std::string_view(p, len);
      p += len;
    } else if (wire == 1) {
      if (end - p < 8) return false;
      p += 8;
    } else if (wire == 5) {
      if (end - p < 4) return false;
      p += 4;
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace cppetcd::mvcc::internal
