// Writer of a fresh, compact bbolt database file (the backend format of
// etcd 3.4; go.etcd.io/bbolt 1.3) from sorted streams, so that cppetcd's
// Maintenance.Snapshot is what `etcdctl snapshot status|restore` and etcd
// itself open. The format facts are listed atop bbolt_reader.h; this writer
// produces:
//
//   page 0, 1   meta pages (flags 0x04), identical but for their page id,
//               txid 1, checksum FNV-1a 64 of the meta's first 56 bytes
//   page 2      the freelist (flags 0x10), empty: every page is in use
//   page 3..    leaf (0x02) and branch (0x01) pages of each bucket's B+tree,
//               filled as full as a page allows, written bottom-up as the
//               sorted entries arrive; an element larger than a page gets a
//               page of its own with overflow pages; a branch element's key
//               is its child's first key
//   last pages  the root bucket's tree (bucket name -> bucket header)
//
// A bucket with no sub-bucket whose leaf fits in page_size/4 bytes is
// stored inline in its parent (header {root 0, sequence 0} then the leaf
// page, id 0), as bbolt does; any other bucket has its own pages. Buckets
// nest to any depth. The file is exactly pgid x page_size bytes (bbolt's
// Tx.Size()), written sequentially except the two meta pages, which are
// written last: a file cut short by a crash has no valid meta page.
//
// Memory: one page under construction per tree level of each open bucket
// (a level holds at most one page of elements, or one element larger than a
// page), plus a write buffer; never the whole database.
//
// Usage: BeginBucket(name), Put(key, value)... (nested BeginBucket/EndBucket
// allowed), EndBucket(); repeat; Finish(). Within one bucket, keys and
// sub-bucket names share one namespace and must arrive in strictly
// increasing bytewise order. Errors: InvalidArgument for a call out of
// order, an empty key, or a key / value past bbolt's limits (the writer
// stays usable); Internal for a write error (the writer is then unusable).
// Not thread-safe.
#ifndef CPPETCD_STORAGE_BBOLT_WRITER_H_
#define CPPETCD_STORAGE_BBOLT_WRITER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppetcd/util/env.h"

namespace cppetcd::storage {

// bbolt's limits: MaxKeySize, MaxValueSize.
inline constexpr size_t kBboltMaxKeyBytes = 32768;
inline constexpr size_t kBboltMaxValueBytes = (size_t{1} << 31) - 2;

struct BboltWriterOptions {
  // Power of two in [1024, 65536]; bbolt's default is the OS page size
  // (4096 on the hosts etcd runs on).
  uint32_t page_size = 4096;
  // Bytes buffered before a write(2); at least one page.
  size_t write_buffer_bytes = 1 << 20;
};

class BboltWriter {
 public:
  // Writes to `fd` from offset 0 (an empty file opened for writing; the
  // writer does not close it). InvalidArgument for a bad page size.
  static absl::StatusOr<std::unique_ptr<BboltWriter>> Create(int fd,
                                                             BboltWriterOptions options = {});
  // The same over a util::Env file (written with RandomRWFile::Write; not
  // closed; must outlive the writer).
  static absl::StatusOr<std::unique_ptr<BboltWriter>> Create(util::RandomRWFile* file,
                                                             BboltWriterOptions options = {});
  ~BboltWriter();
  BboltWriter(const BboltWriter&) = delete;
  BboltWriter& operator=(const BboltWriter&) = delete;

  // Opens bucket `name` inside the bucket open now (the root at depth 0).
  absl::Status BeginBucket(std::string_view name);
  // Adds key -> value to the bucket open now (none open: InvalidArgument).
  absl::Status Put(std::string_view key, std::string_view value);
  // Closes the bucket open now and stores it in its parent.
  absl::Status EndBucket();
  // Closes the root bucket and writes the meta pages (no fsync: the caller
  // syncs if the file is to outlive a crash). Every bucket must be closed.
  // Returns the file size in bytes (pgid x page_size).
  absl::StatusOr<uint64_t> Finish();

  // Pages allocated so far (the next page id).
  uint64_t pages() const { return next_pgid_; }

 private:
  struct Tree;
  BboltWriter(int fd, util::RandomRWFile* file, BboltWriterOptions options);
  // Writes `n` bytes at `offset` to file_ or fd_.
  absl::Status WriteAt(const char* p, size_t n, uint64_t offset);
  // Writes `bytes` (whole pages) as the pages starting at the next page id;
  // returns that id.
  absl::StatusOr<uint64_t> WritePages(std::string_view bytes);
  absl::Status FlushBuffer();
  absl::Status CheckUsable() const;
  // Adds an element to level `level` of `t` (0: leaf; `child` for a branch
  // element), first writing that level's page when it would not fit.
  absl::Status AddElement(Tree& t, size_t level, uint32_t flags, uint64_t child,
                          std::string_view key, std::string_view value);
  // Writes level `level`'s page of `t` and adds its first key to the level
  // above.
  absl::Status FlushLevel(Tree& t, size_t level);
  // Writes what is left of `t`; returns its bucket value (header, plus the
  // leaf page when inlined).
  absl::StatusOr<std::string> CloseTree(Tree& t, bool may_inline);

  const int fd_;                    // -1 when writing to file_
  util::RandomRWFile* const file_;  // null when writing to fd_
  const BboltWriterOptions options_;
  uint64_t next_pgid_ = 3;  // 0, 1: meta; 2: freelist
  std::string buffer_;      // pages not yet written, starting at buffer_pgid_
  uint64_t buffer_pgid_ = 0;
  absl::Status broken_;     // first write error
  bool finished_ = false;
  std::vector<std::unique_ptr<Tree>> open_;  // open_[0]: the root bucket
};

}  // namespace cppetcd::storage

#endif  // CPPETCD_STORAGE_BBOLT_WRITER_H_
