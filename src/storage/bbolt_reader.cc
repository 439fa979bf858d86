// Read-only bbolt page walker (see include/cppetcd/storage/bbolt_reader.h
// for the format facts it relies on).
#include "cppetcd/storage/bbolt_reader.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bbolt_format.h"

namespace cppetcd::storage {
namespace {

using bbolt::kPageHeaderBytes;
using bbolt::kElementBytes;
using bbolt::kBucketHeaderBytes;
using bbolt::kBranchPageFlag;
using bbolt::kLeafPageFlag;
using bbolt::kBucketLeafFlag;
using bbolt::Le16;
using bbolt::Le32;
using bbolt::Le64;
using bbolt::Fnv1a64;

constexpr int kMaxDepth = 64;

absl::Status Corrupt(std::string_view what) {
  return absl::DataLossError(absl::StrCat("bbolt: corrupt database: ", std::string(what)));
}

}  // namespace

bool LooksLikeBbolt(std::string_view head) {
  return head.size() >= kPageHeaderBytes + 4 && Le32(head.data() + kPageHeaderBytes) == kBboltMagic;
}

absl::StatusOr<uint64_t> BboltSizeFromHead(std::string_view head) {
  if (!LooksLikeBbolt(head) || head.size() < kPageHeaderBytes + 64) {
    return absl::InvalidArgumentError("not a bbolt database");
  }
  const uint32_t ps = Le32(head.data() + kPageHeaderBytes + 8);
  bool found = false;
  uint64_t best_txid = 0, size = 0;
  for (uint64_t m = 0; m < 2; ++m) {
    const uint64_t off = m * ps;
    if (ps < 1024 || ps > 65536 || off + kPageHeaderBytes + 64 > head.size()) continue;
    const char* meta = head.data() + off + kPageHeaderBytes;
    if (Le32(meta) != kBboltMagic || Le32(meta + 4) != 2 || Le32(meta + 8) != ps) continue;
    if (Fnv1a64(meta, 56) != Le64(meta + 56)) continue;
    const uint64_t txid = Le64(meta + 48);
    if (found && txid <= best_txid) continue;
    if (Le64(meta + 40) > (uint64_t{1} << 47) / ps) continue;  // no real file is that large
    found = true;
    best_txid = txid;
    size = Le64(meta + 40) * ps;
  }
  if (!found) return absl::InvalidArgumentError("bbolt: no valid meta page");
  return size;
}

// One tree walk: a page is a byte range (in data_ or inside an inline
// bucket value); the walk visits leaf elements in key order.
// A page is entered at most once per walk: a B+tree shares no pages, so a
// page reached again is a cycle or a corrupt reference, and the walk's work
// stays bounded by the file's size.
struct BboltReader::Walk {
  explicit Walk(const BboltReader* reader)
      : r(reader), pages_in_file(reader->data_.size() / reader->page_size_), seen(pages_in_file) {}

  const BboltReader* r;
  const uint64_t pages_in_file;  // whole pages in the file
  std::vector<bool> seen;        // by page id
  using Fn = absl::FunctionRef<bool(std::string_view, std::string_view, bool)>;

  absl::StatusOr<std::string_view> PageAt(uint64_t id) {
    // Compare page counts, never byte offsets: id * page_size can overflow.
    if (id < 2 || id >= r->pgid_ || id >= pages_in_file) {
      return Corrupt(absl::StrCat("page ", id, " out of range"));
    }
    if (seen[id]) return Corrupt(absl::StrCat("page ", id, " reached twice"));
    seen[id] = true;
    const uint64_t ps = r->page_size_;
    const char* p = r->data_.data() + id * ps;
    const uint64_t overflow = Le32(p + 12);
    if (overflow >= pages_in_file - id) return Corrupt(absl::StrCat("page ", id, " overflows"));
    return std::string_view(p, (overflow + 1) * ps);
  }

  // Visits `page`; returns false if fn asked to stop.
  absl::StatusOr<bool> Visit(std::string_view page, int depth, Fn fn) {
    if (depth > kMaxDepth) return Corrupt("tree too deep");
    if (page.size() < kPageHeaderBytes) return Corrupt("short page");
    const uint16_t flags = Le16(page.data() + 8);
    const uint16_t count = Le16(page.data() + 10);
    if (kPageHeaderBytes + size_t{count} * kElementBytes > page.size()) {
      return Corrupt("element table past the page end");
    }
    for (size_t i = 0; i < count; ++i) {
      const size_t at = kPageHeaderBytes + i * kElementBytes;
      const char* e = page.data() + at;
      if (flags & kBranchPageFlag) {
        const uint64_t child = Le64(e + 8);
        auto p = PageAt(child);
        if (!p.ok()) return p.status();
        auto more = Visit(*p, depth + 1, fn);
        if (!more.ok() || !*more) return more;
      } else if (flags & kLeafPageFlag) {
        const uint32_t eflags = Le32(e);
        const size_t pos = Le32(e + 4), ksize = Le32(e + 8), vsize = Le32(e + 12);
        if (at + pos + ksize + vsize > page.size()) return Corrupt("leaf element past the page end");
        std::string_view k(e + pos, ksize);
        std::string_view v(e + pos + ksize, vsize);
        const bool is_bucket = (eflags & kBucketLeafFlag) != 0;
        if (!fn(k, is_bucket ? std::string_view() : v, is_bucket)) return false;
      } else {
        return Corrupt(absl::StrCat("unexpected page flags ", flags));
      }
    }
    return true;
  }

  // Visits the bucket whose stored value (header + inline page) is `value`.
  absl::StatusOr<bool> VisitBucket(std::string_view value, Fn fn) {
    if (value.size() < kBucketHeaderBytes) return Corrupt("short bucket header");
    const uint64_t root = Le64(value.data());
    if (root == 0) return Visit(value.substr(kBucketHeaderBytes), 0, fn);
    auto p = PageAt(root);
    if (!p.ok()) return p.status();
    return Visit(*p, 0, fn);
  }
};

absl::StatusOr<std::unique_ptr<BboltReader>> BboltReader::Open(const std::string& path,
                                                               util::Env* env) {
  if (env == nullptr) env = util::Env::Default();
  auto bytes = env->ReadFileToString(path);
  if (absl::IsNotFound(bytes.status())) {
    return absl::NotFoundError(absl::StrCat("open ", path, ": no such file or directory"));
  }
  if (!bytes.ok()) return bytes.status();
  return FromBytes(*std::move(bytes));
}

absl::StatusOr<std::unique_ptr<BboltReader>> BboltReader::FromBytes(std::string bytes) {
  if (!LooksLikeBbolt(bytes)) return absl::InvalidArgumentError("not a bbolt database");
  // The first meta page must be whole before its page size is read.
  if (bytes.size() < kPageHeaderBytes + 64) return Corrupt("no valid meta page");
  std::unique_ptr<BboltReader> r(new BboltReader());
  r->data_ = std::move(bytes);
  const uint32_t ps0 = Le32(r->data_.data() + kPageHeaderBytes + 8);
  bool found = false;
  for (uint64_t m = 0; m < 2; ++m) {
    const uint64_t off = m * ps0;
    if (ps0 < 1024 || off + kPageHeaderBytes + 64 > r->data_.size()) continue;
    const char* meta = r->data_.data() + off + kPageHeaderBytes;
    if (Le32(meta) != kBboltMagic || Le32(meta + 4) != 2) continue;
    if (Fnv1a64(meta, 56) != Le64(meta + 56)) continue;
    // Every page below the high-water mark is in the file (a snapshot holds
    // them all); this also keeps pgid * page_size from overflowing.
    if (Le32(meta + 8) != ps0 || Le64(meta + 40) > r->data_.size() / ps0) continue;
    const uint64_t txid = Le64(meta + 48);
    if (found && txid <= r->txid_) continue;
    found = true;
    r->page_size_ = Le32(meta + 8);
    r->root_ = Le64(meta + 16);
    r->pgid_ = Le64(meta + 40);
    r->txid_ = txid;
  }
  if (!found || r->page_size_ != ps0) return Corrupt("no valid meta page");
  return r;
}

absl::StatusOr<std::vector<std::string>> BboltReader::ListBuckets() const {
  std::vector<std::string> out;
  Walk w(this);
  auto p = w.PageAt(root_);
  if (!p.ok()) return p.status();
  auto done = w.Visit(*p, 0, [&](std::string_view k, std::string_view, bool is_bucket) {
    if (is_bucket) out.emplace_back(k);
    return true;
  });
  if (!done.ok()) return done.status();
  return out;
}

absl::Status BboltReader::ForEach(
    std::string_view bucket,
    absl::FunctionRef<bool(std::string_view, std::string_view, bool)> fn) const {
  Walk w(this);
  auto p = w.PageAt(root_);
  if (!p.ok()) return p.status();
  // Find the bucket's raw value (the walk passes an empty value for
  // buckets, so look the element up again by hand).
  std::string_view value;
  bool found = false;
  auto find = [&](std::string_view page, int depth, auto&& self) -> absl::Status {
    if (depth > kMaxDepth) return Corrupt("tree too deep");
    if (page.size() < kPageHeaderBytes) return Corrupt("short page");
    const uint16_t flags = Le16(page.data() + 8);
    const uint16_t count = Le16(page.data() + 10);
    if (kPageHeaderBytes + size_t{count} * kElementBytes > page.size()) {
      return Corrupt("element table past the page end");
    }
    for (size_t i = 0; i < count && !found; ++i) {
      const size_t at = kPageHeaderBytes + i * kElementBytes;
      const char* e = page.data() + at;
      if (flags & kBranchPageFlag) {
        auto c = w.PageAt(Le64(e + 8));
        if (!c.ok()) return c.status();
        if (auto s = self(*c, depth + 1, self); !s.ok()) return s;
      } else if (flags & kLeafPageFlag) {
        const size_t pos = Le32(e + 4), ksize = Le32(e + 8), vsize = Le32(e + 12);
        if (at + pos + ksize + vsize > page.size()) return Corrupt("leaf element past the page end");
        if ((Le32(e) & kBucketLeafFlag) && std::string_view(e + pos, ksize) == bucket) {
          value = std::string_view(e + pos + ksize, vsize);
          found = true;
        }
      } else {
        return Corrupt("unexpected page flags");
      }
    }
    return absl::OkStatus();
  };
  if (auto s = find(*p, 0, find); !s.ok()) return s;
  if (!found) return absl::NotFoundError(absl::StrCat("bbolt: no bucket \"", std::string(bucket), "\""));
  Walk bw(this);
  auto done = bw.VisitBucket(value, fn);
  return done.ok() ? absl::OkStatus() : done.status();
}

}  // namespace cppetcd::storage
