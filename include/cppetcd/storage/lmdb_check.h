// Structural check of an LMDB database file received from outside (a raft
// snapshot's database from the leader, `cppetcd snapshot restore` input)
// before LMDB maps it. LMDB trusts its file: a page number past the end, a
// node offset outside its page or a page cycle makes it read out of its map
// or loop. The check walks both meta pages' trees with every access
// bounds-checked and accepts only what cppetcd's backend writes:
//
//  - the page size is this host's; the size is a whole number of pages, at
//    least 2;
//  - both meta pages (0 and 1) carry LMDB's magic 0xBEEFC0DE and data
//    version 1, a txnid of their parity (or 0) and a last page inside the
//    file;
//  - every page of the main tree, the named sub-databases it lists
//    (F_SUBDATA, no DUPSORT) and the free-page tree is a branch or leaf page
//    (overflow pages only behind F_BIGDATA values) numbered as its position,
//    lies at or below the last page, is reached exactly once (no cycles, no
//    sharing), with consistent lower/upper bounds, nodes inside the page,
//    keys of 1..511 bytes in strictly ascending LMDB order within each page
//    and inside the range their parent branch gives them, leaves all at the
//    tree's recorded depth (at most 32); the main database holds only
//    sub-database records;
//  - free-page lists name pages in [2, last page] that no tree uses.
//
// Format facts: LMDB 0.9 (liblmdb) on 64-bit little-endian hosts: 16-byte
// page header {pgno u64, pad u16, flags u16, lower u16, upper u16 | pages
// u32}, 8-byte node header {lo u16, hi u16, flags u16, ksize u16}, 48-byte
// database record {pad u32, flags u16, depth u16, branch, leaf, overflow,
// entries, root: u64}, meta {magic, version: u32, address, mapsize: u64,
// free db, main db, last_pg, txnid: u64} after the page header.
#ifndef CPPETCD_STORAGE_LMDB_CHECK_H_
#define CPPETCD_STORAGE_LMDB_CHECK_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace cppetcd::storage {

// OK if `bytes` (a whole database file) passes the check above; DataLoss
// naming what is wrong otherwise. Reads only `bytes`; any thread.
absl::Status CheckLmdbBytes(std::string_view bytes);

// CheckLmdbBytes over the file at `path` (mapped read-only for the check).
// NotFound if it does not exist.
absl::Status CheckLmdbFile(const std::string& path);

}  // namespace cppetcd::storage

#endif  // CPPETCD_STORAGE_LMDB_CHECK_H_
