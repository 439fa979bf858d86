// Read-only reader of a bbolt database file (the backend format of etcd 3.4),
// used to import an etcd snapshot (`cppetcd snapshot status|restore` on a
// file written by `etcdctl snapshot save` or copied from an etcd data dir).
//
// Layout facts used (bbolt's public on-disk format): pages of `page_size`
// bytes, each with a 16-byte header {id u64, flags u16, count u16, overflow
// u32} (little-endian); pages 0 and 1 are meta pages {magic 0xED0CDAED,
// version 2, page_size, flags, root bucket {root, sequence}, freelist, pgid,
// txid, checksum FNV-1a 64 of the 56 bytes before it}, the valid one with the
// higher txid wins; a B+tree of branch pages (elements {pos u32, ksize u32,
// pgid u64}) and leaf pages (elements {flags u32, pos u32, ksize u32,
// vsize u32}, flag 1 = sub-bucket); a bucket value is {root u64, sequence u64}
// followed, when root is 0, by an inline leaf page.
//
// The whole file is read into memory at Open. Every page access is bounds
// checked: a corrupt file yields DataLoss, never a crash. Not thread-safe to
// mutate (it never mutates); const methods may run concurrently.
#ifndef CPPETCD_STORAGE_BBOLT_READER_H_
#define CPPETCD_STORAGE_BBOLT_READER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppetcd/util/env.h"

namespace cppetcd::storage {

inline constexpr uint32_t kBboltMagic = 0xED0CDAED;

// True if `head` (the first bytes of a file, at least 20) starts with a bbolt
// meta page (magic at offset 16).
bool LooksLikeBbolt(std::string_view head);

// The size of a bbolt file from its first bytes (its two meta pages, so
// 2 x 64 KiB always does): high-water page id x page size of the valid meta
// with the higher txid, which is the whole file for a file written by
// BboltWriter or by bbolt's Tx.WriteTo. InvalidArgument if `head` is not a
// bbolt file or has no valid meta page.
absl::StatusOr<uint64_t> BboltSizeFromHead(std::string_view head);

class BboltReader {
 public:
  // Reads and validates the file at `path`; trailing bytes past the last
  // page (e.g. etcd's 32-byte SHA-256 snapshot trailer) are ignored.
  // NotFound if missing; InvalidArgument if it is not a bbolt file; DataLoss
  // if neither meta page is valid. Read through `env` (null:
  // util::Env::Default()).
  static absl::StatusOr<std::unique_ptr<BboltReader>> Open(const std::string& path,
                                                           util::Env* env = nullptr);
  // As Open, over bytes already in memory.
  static absl::StatusOr<std::unique_ptr<BboltReader>> FromBytes(std::string bytes);

  uint32_t page_size() const { return page_size_; }
  uint64_t txid() const { return txid_; }
  // bbolt's Tx.Size(): high-water page id times the page size (bytes).
  int64_t SizeBytes() const { return static_cast<int64_t>(pgid_) * page_size_; }

  // Names of the top-level buckets, in byte order.
  absl::StatusOr<std::vector<std::string>> ListBuckets() const;

  // Calls fn(key, value) for each entry of the top-level bucket `bucket` in
  // key order (bbolt Bucket.ForEach: a nested bucket shows as its name with
  // an empty value, `is_bucket` true). fn returns false to stop.
  // NotFound if there is no such bucket; DataLoss on corruption.
  absl::Status ForEach(
      std::string_view bucket,
      absl::FunctionRef<bool(std::string_view key, std::string_view value, bool is_bucket)> fn)
      const;

 private:
  BboltReader() = default;
  struct Walk;

  std::string data_;
  uint32_t page_size_ = 0;
  uint64_t root_ = 0;
  uint64_t pgid_ = 0;
  uint64_t txid_ = 0;
};

}  // namespace cppetcd::storage

#endif  // CPPETCD_STORAGE_BBOLT_READER_H_
