// bbolt's on-disk layout, shared by the reader and the writer
// (include/cppetcd/storage/bbolt_reader.h, bbolt_writer.h): page and element
// sizes, page and element flags, and little-endian field access (x86-64 and
// arm64 hosts, as bbolt's own files). Facts from bbolt's public page format.
#ifndef CPPETCD_SRC_STORAGE_BBOLT_FORMAT_H_
#define CPPETCD_SRC_STORAGE_BBOLT_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace cppetcd::storage::bbolt {

inline constexpr size_t kPageHeaderBytes = 16;    // id u64, flags u16, count u16, overflow u32
inline constexpr size_t kElementBytes = 16;       // leaf and branch elements alike
inline constexpr size_t kBucketHeaderBytes = 16;  // root u64, sequence u64
inline constexpr size_t kMetaBytes = 64;
inline constexpr uint16_t kBranchPageFlag = 0x01;
inline constexpr uint16_t kLeafPageFlag = 0x02;
inline constexpr uint16_t kMetaPageFlag = 0x04;
inline constexpr uint16_t kFreelistPageFlag = 0x10;
inline constexpr uint32_t kBucketLeafFlag = 0x01;  // a leaf element that is a bucket
inline constexpr uint32_t kVersion = 2;

inline uint16_t Le16(const char* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t Le32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t Le64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline void Put16(char* p, uint16_t v) { std::memcpy(p, &v, 2); }
inline void Put32(char* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void Put64(char* p, uint64_t v) { std::memcpy(p, &v, 8); }

// FNV-1a (64-bit): the checksum of a meta page's first 56 bytes.
inline uint64_t Fnv1a64(const char* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(p[i]);
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace cppetcd::storage::bbolt

#endif  // CPPETCD_SRC_STORAGE_BBOLT_FORMAT_H_
