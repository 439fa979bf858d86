// The LMDB file check (see include/cppetcd/storage/lmdb_check.h for what is
// checked and the format facts it relies on). CheckLmdbFile opens and maps
// the file directly, not through util::Env: it must see the very bytes LMDB
// is about to map, and the Env has no mmap.
#include "cppetcd/storage/lmdb_check.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace cppetcd::storage {
namespace {

constexpr uint32_t kMagic = 0xBEEFC0DE;
constexpr uint32_t kDataVersion = 1;
constexpr size_t kPageHeader = 16;
constexpr size_t kNodeHeader = 8;
constexpr size_t kDbRecord = 48;
constexpr size_t kMetaSize = 8 + 8 + 8 + 2 * kDbRecord + 8 + 8;
constexpr uint64_t kInvalidPage = ~uint64_t{0};
constexpr int kMaxDepth = 32;  // LMDB's cursor stack

// Page flags.
constexpr uint16_t kBranch = 0x01;
constexpr uint16_t kLeaf = 0x02;
constexpr uint16_t kOverflow = 0x04;
// Node flags.
constexpr uint16_t kBigData = 0x01;
constexpr uint16_t kSubData = 0x02;
// Database flags cppetcd never sets (DUPSORT and its variants).
constexpr uint16_t kDupFlags = 0x04 | 0x10 | 0x20 | 0x40;

uint16_t Get16(const char* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
uint32_t Get32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t Get64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

absl::Status Bad(std::string_view what) {
  return absl::DataLossError(absl::StrCat("storage: not a valid database file: ", std::string(what)));
}

struct DbRecord {
  uint16_t flags = 0;
  uint16_t depth = 0;
  uint64_t root = kInvalidPage;
};

DbRecord ParseDb(const char* p) {
  DbRecord d;
  d.flags = Get16(p + 4);
  d.depth = Get16(p + 6);
  d.root = Get64(p + 40);
  return d;
}

class Checker {
 public:
  Checker(std::string_view file, uint64_t page_size, uint64_t last_page)
      : file_(file), ps_(page_size), last_(last_page), used_(last_page + 1, false) {}

  // Walks the tree of `db`. `kind`: 0 main, 1 sub-database, 2 free pages.
  absl::Status Tree(const DbRecord& db, int kind, std::string_view name) {
    if (db.root == kInvalidPage) {
      if (db.depth != 0) return Bad(absl::StrCat("empty database ", std::string(name), " with a depth"));
      return absl::OkStatus();
    }
    if ((db.flags & kDupFlags) != 0) return Bad(absl::StrCat("database ", std::string(name), " has DUPSORT flags"));
    if (db.depth == 0 || db.depth > kMaxDepth) {
      return Bad(absl::StrCat("database ", std::string(name), " depth ", db.depth));
    }
    return Page(db.root, 1, db.depth, kind, name, nullptr, nullptr);
  }

  // Pages named free by the free-page tree, checked against the trees.
  absl::Status FreeListsDisjoint() const {
    for (uint64_t p : free_pages_) {
      if (p < 2 || p > last_) return Bad(absl::StrCat("free page ", p, " out of range"));
      if (used_[p]) return Bad(absl::StrCat("page ", p, " is both free and in use"));
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Claim(uint64_t pgno, uint64_t count) {
    if (pgno < 2 || pgno > last_ || count == 0 || count > last_ - pgno + 1) {
      return Bad(absl::StrCat("page ", pgno, " (+", count, ") out of range"));
    }
    for (uint64_t i = 0; i < count; ++i) {
      if (used_[pgno + i]) return Bad(absl::StrCat("page ", pgno + i, " reached twice"));
      used_[pgno + i] = true;
    }
    return absl::OkStatus();
  }

  const char* PagePtr(uint64_t pgno) const { return file_.data() + pgno * ps_; }

  // LMDB's key order: bytes then length (mdb_cmp_memn); the free-page
  // database's keys are native 64-bit integers (MDB_INTEGERKEY).
  static int Compare(int kind, std::string_view a, std::string_view b) {
    if (kind == 2 && a.size() == 8 && b.size() == 8) {
      const uint64_t x = Get64(a.data()), y = Get64(b.data());
      return x < y ? -1 : x > y ? 1 : 0;
    }
    return a.compare(b);
  }

  // Checks page `pgno` at `depth` (1 = root) of a tree whose leaves are at
  // `want_depth`; its keys must lie in [*lo, *hi) (null: unbounded) and
  // ascend strictly (LMDB's search and cursor steps rely on the order).
  absl::Status Page(uint64_t pgno, int depth, int want_depth, int kind, std::string_view name,
                    const std::string_view* lo, const std::string_view* hi) {
    if (absl::Status s = Claim(pgno, 1); !s.ok()) return s;
    const char* p = PagePtr(pgno);
    if (Get64(p) != pgno) return Bad(absl::StrCat("page ", pgno, " carries number ", Get64(p)));
    const uint16_t flags = Get16(p + 10);
    const uint16_t lower = Get16(p + 12);
    const uint16_t upper = Get16(p + 14);
    if (flags != kBranch && flags != kLeaf) {
      return Bad(absl::StrCat("page ", pgno, " has flags ", flags));
    }
    if (lower < kPageHeader || lower > upper || upper > ps_ || (lower - kPageHeader) % 2 != 0) {
      return Bad(absl::StrCat("page ", pgno, " bounds ", lower, "/", upper));
    }
    const size_t nkeys = (lower - kPageHeader) / 2;
    const bool leaf = flags == kLeaf;
    if (leaf != (depth == want_depth)) {
      return Bad(absl::StrCat("page ", pgno, " at depth ", depth, " of ", want_depth));
    }
    if (nkeys == 0 || (!leaf && nkeys < 2 && depth > 1)) {
      return Bad(absl::StrCat("page ", pgno, " has ", nkeys, " keys"));
    }
    struct Node {
      const char* n;
      uint64_t lo, hi, flags;
      std::string_view key;
    };
    std::vector<Node> nodes;
    nodes.reserve(nkeys);
    for (size_t i = 0; i < nkeys; ++i) {
      const uint64_t off = Get16(p + kPageHeader + 2 * i);
      if (off < upper || off + kNodeHeader > ps_) {
        return Bad(absl::StrCat("page ", pgno, " node ", i, " at ", off));
      }
      const char* n = p + off;
      const uint64_t ksize = Get16(n + 6);
      if (off + kNodeHeader + ksize > ps_) {
        return Bad(absl::StrCat("page ", pgno, " node ", i, " key overflows"));
      }
      Node node{n, Get16(n), Get16(n + 2), Get16(n + 4), std::string_view(n + kNodeHeader, ksize)};
      // A branch's first key is not used (its child holds everything below
      // the second key); every other key is checked.
      if (leaf || i > 0) {
        const size_t max_key = 511;  // LMDB's default maximum key size
        if (node.key.empty() || node.key.size() > max_key || (kind == 2 && node.key.size() != 8)) {
          return Bad(absl::StrCat("page ", pgno, " node ", i, " key of ", node.key.size(), " bytes"));
        }
        if ((lo != nullptr && Compare(kind, node.key, *lo) < 0) ||
            (hi != nullptr && Compare(kind, node.key, *hi) >= 0) ||
            ((leaf ? i > 0 : i > 1) && Compare(kind, nodes.back().key, node.key) >= 0)) {
          return Bad(absl::StrCat("page ", pgno, " node ", i, " key out of order"));
        }
      }
      nodes.push_back(node);
    }
    for (size_t i = 0; i < nkeys; ++i) {
      const Node& nd = nodes[i];
      const uint64_t key_end = static_cast<uint64_t>(nd.key.data() + nd.key.size() - p);
      if (!leaf) {
        const uint64_t child = nd.lo | (nd.hi << 16) | (nd.flags << 32);
        const std::string_view* child_lo = i == 0 ? lo : &nodes[i].key;
        const std::string_view* child_hi = i + 1 < nkeys ? &nodes[i + 1].key : hi;
        if (absl::Status s = Page(child, depth + 1, want_depth, kind, name, child_lo, child_hi); !s.ok()) {
          return s;
        }
        continue;
      }
      const uint64_t dsize = nd.lo | (nd.hi << 16);
      const std::string_view key = nd.key;
      std::string_view value;
      if (kind == 0 && nd.flags != kSubData) {
        // cppetcd's main database holds only its buckets.
        return Bad(absl::StrCat("page ", pgno, " node ", i, " of the main database is not a bucket"));
      }
      if (nd.flags == 0) {
        if (key_end + dsize > ps_) return Bad(absl::StrCat("page ", pgno, " node ", i, " value overflows"));
        value = std::string_view(nd.n + kNodeHeader + key.size(), dsize);
      } else if (nd.flags == kBigData) {
        if (key_end + 8 > ps_) return Bad(absl::StrCat("page ", pgno, " node ", i, " overflows"));
        const uint64_t opg = Get64(nd.n + kNodeHeader + key.size());
        if (opg < 2 || opg > last_) return Bad(absl::StrCat("overflow page ", opg, " out of range"));
        const char* op = PagePtr(opg);
        const uint64_t pages = Get32(op + 12);
        if (Get64(op) != opg || Get16(op + 10) != kOverflow) {
          return Bad(absl::StrCat("page ", opg, " is not an overflow page"));
        }
        if (absl::Status s = Claim(opg, pages); !s.ok()) return s;
        if (dsize > pages * ps_ - kPageHeader) {
          return Bad(absl::StrCat("value of ", dsize, " bytes in ", pages, " overflow pages"));
        }
        value = std::string_view(op + kPageHeader, dsize);
      } else if (nd.flags == kSubData && kind == 0) {
        if (dsize != kDbRecord || key_end + dsize > ps_) {
          return Bad(absl::StrCat("page ", pgno, " node ", i, " bad sub-database record"));
        }
        const DbRecord sub = ParseDb(nd.n + kNodeHeader + key.size());
        if (absl::Status s = Tree(sub, 1, key); !s.ok()) return s;
        continue;
      } else {
        return Bad(absl::StrCat("page ", pgno, " node ", i, " has flags ", nd.flags));
      }
      if (kind == 2) {
        // A free-page list: {count, pgno...} (u64 each).
        if (value.size() < 8 || value.size() % 8 != 0 || Get64(value.data()) != value.size() / 8 - 1) {
          return Bad(absl::StrCat("free-page list on page ", pgno, " is malformed"));
        }
        for (size_t j = 8; j < value.size(); j += 8) free_pages_.push_back(Get64(value.data() + j));
      }
    }
    return absl::OkStatus();
  }

  const std::string_view file_;
  const uint64_t ps_;
  const uint64_t last_;
  std::vector<bool> used_;
  std::vector<uint64_t> free_pages_;
};

}  // namespace

absl::Status CheckLmdbBytes(std::string_view bytes) {
  if (bytes.size() < kPageHeader + kMetaSize) return Bad("too short");
  // The page size is recorded in meta page 0 (the free database's pad).
  const char* m0 = bytes.data() + kPageHeader;
  // LMDB writes with the OS page size; a file from another page size would
  // be read with this host's (and is not cppetcd's anyway).
  const uint64_t ps = Get32(m0 + 24);
  if (ps != static_cast<uint64_t>(::sysconf(_SC_PAGESIZE))) return Bad(absl::StrCat("page size ", ps));
  if (bytes.size() % ps != 0 || bytes.size() / ps < 2) {
    return Bad(absl::StrCat("size ", bytes.size(), " is not a whole number of ", ps, "-byte pages"));
  }
  const uint64_t pages = bytes.size() / ps;
  const char* metas[2];
  for (int i = 0; i < 2; ++i) {
    const char* page = bytes.data() + i * ps;
    const char* m = page + kPageHeader;
    if (Get32(m) != kMagic) return Bad(absl::StrCat("meta page ", i, " has no LMDB magic"));
    if (Get32(m + 4) != kDataVersion) return Bad(absl::StrCat("meta page ", i, " version ", Get32(m + 4)));
    if (Get32(m + 24) != ps) return Bad(absl::StrCat("meta page ", i, " page size differs"));
    // The free database's flags field holds the environment's persistent
    // flags; a fixed-address map (MDB_FIXEDMAP) is never cppetcd's.
    if ((Get16(m + 28) & 0x01) != 0) {
      return Bad(absl::StrCat("meta page ", i, " environment flags ", Get16(m + 28)));
    }
    // LMDB writes transaction t's meta into page t % 2 (0 when the file is
    // new): a writer takes the page of the next txnid to be the older one.
    const uint64_t txnid = Get64(m + 128);
    if (txnid != 0 && txnid % 2 != static_cast<uint64_t>(i)) {
      return Bad(absl::StrCat("meta page ", i, " holds txnid ", txnid));
    }
    metas[i] = m;
  }
  // Both metas are checked: readers use the newer one, and LMDB may fall
  // back to the older one (its tree is intact until the next commit).
  for (int i = 0; i < 2; ++i) {
    const char* m = metas[i];
    const uint64_t last = Get64(m + 120);
    if (last < 1 || last >= pages) {
      return Bad(absl::StrCat("meta page ", i, " last page ", last, " but the file has ", pages, " pages"));
    }
    Checker c(bytes, ps, last);
    if (absl::Status s = c.Tree(ParseDb(m + 24 + kDbRecord), 0, "main"); !s.ok()) return s;
    DbRecord free_db = ParseDb(m + 24);
    free_db.flags = 0;  // INTEGERKEY
    if (absl::Status s = c.Tree(free_db, 2, "free"); !s.ok()) return s;
    if (absl::Status s = c.FreeListsDisjoint(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status CheckLmdbFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    std::string msg = absl::StrCat("open ", path, ": ", std::strerror(e));
    return e == ENOENT ? absl::NotFoundError(msg) : absl::InternalError(msg);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return absl::InternalError(absl::StrCat("stat ", path, ": ", std::strerror(e)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Bad(absl::StrCat(path, " is not a regular file"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return Bad(absl::StrCat(path, " is empty"));
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return absl::InternalError(absl::StrCat("mmap ", path, ": ", std::strerror(errno)));
  absl::Status s = CheckLmdbBytes(std::string_view(static_cast<const char*>(map), size));
  ::munmap(map, size);
  if (!s.ok()) return absl::DataLossError(absl::StrCat(path, ": ", s.message()));
  return s;
}

}  // namespace cppetcd::storage
