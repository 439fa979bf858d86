// CRC-32C (Castagnoli polynomial 0x1EDC6F41, reflected 0x82F63B78), the
// checksum of WAL records and snapshot files. Table-driven, slicing-by-8.
#ifndef CPPETCD_UTIL_CRC32C_H_
#define CPPETCD_UTIL_CRC32C_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace cppetcd::util {

// The CRC-32C of `crc`'s input followed by the `n` bytes at `p`: chaining
// Crc32cExtend(Crc32c(a), b) equals Crc32c(a ++ b). Crc32cExtend(0, p, n) is
// Crc32c(p, n). Pure function; thread-safe.
uint32_t Crc32cExtend(uint32_t crc, const void* p, size_t n);

// CRC-32C of `n` bytes at `p` (standard check value: Crc32c("123456789") is
// 0xE3069283).
inline uint32_t Crc32c(const void* p, size_t n) { return Crc32cExtend(0, p, n); }
inline uint32_t Crc32c(std::string_view s) { return Crc32cExtend(0, s.data(), s.size()); }

}  // namespace cppetcd::util

#endif  // CPPETCD_UTIL_CRC32C_H_
