// bbolt file writer: bottom-up bulk load of sorted entries (format and
// layout in include/cppetcd/storage/bbolt_writer.h).
#include "cppetcd/storage/bbolt_writer.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "bbolt_format.h"
#include "cppetcd/storage/bbolt_reader.h"

namespace cppetcd::storage {
namespace {

using bbolt::kPageHeaderBytes;
using bbolt::kElementBytes;
using bbolt::kBucketHeaderBytes;
using bbolt::kMetaBytes;
using bbolt::kBranchPageFlag;
using bbolt::kLeafPageFlag;
using bbolt::kMetaPageFlag;
using bbolt::kFreelistPageFlag;
using bbolt::kBucketLeafFlag;
using bbolt::kVersion;
using bbolt::Put16;
using bbolt::Put32;
using bbolt::Put64;
using bbolt::Fnv1a64;

constexpr uint64_t kTxid = 1;

absl::Status PwriteAll(int fd, const char* p, size_t n, uint64_t offset) {
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return absl::InternalError(absl::StrCat("bbolt writer: write: ", std::strerror(errno)));
    p += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return absl::OkStatus();
}

// One element of a page under construction. Its key (and a leaf's value)
// are in Node::data, back to back in element order.
struct Element {
  uint32_t flags = 0;  // leaf: kBucketLeafFlag for a sub-bucket
  uint32_t key_size = 0;
  uint32_t value_size = 0;  // leaf only
  uint64_t child = 0;       // branch only
};

// A page under construction at one level of a tree.
struct Node {
  std::vector<Element> elements;
  std::string data;
  size_t size_bytes = kPageHeaderBytes;  // header + elements + data

  bool empty() const { return elements.empty(); }
  void Clear() {
    elements.clear();
    data.clear();
    size_bytes = kPageHeaderBytes;
  }
  // The page image: `id` in its header; padded to whole pages unless
  // page_size is 0 (an inline bucket's page, exactly size_bytes long).
  std::string Render(uint64_t id, bool leaf, uint32_t page_size) const {
    size_t total = size_bytes;
    uint32_t overflow = 0;
    if (page_size != 0) {
      const size_t pages = (size_bytes + page_size - 1) / page_size;
      total = pages * page_size;
      overflow = static_cast<uint32_t>(pages - 1);
    }
    std::string out(total, '\0');
    char* p = out.data();
    Put64(p, id);
    Put16(p + 8, leaf ? kLeafPageFlag : kBranchPageFlag);
    Put16(p + 10, static_cast<uint16_t>(elements.size()));
    Put32(p + 12, overflow);
    size_t data_at = kPageHeaderBytes + kElementBytes * elements.size();
    std::memcpy(p + data_at, data.data(), data.size());
    for (size_t i = 0; i < elements.size(); ++i) {
      const Element& e = elements[i];
      const size_t at = kPageHeaderBytes + kElementBytes * i;
      // pos counts from the element itself to its key.
      const auto pos = static_cast<uint32_t>(data_at - at);
      if (leaf) {
        Put32(p + at, e.flags);
        Put32(p + at + 4, pos);
        Put32(p + at + 8, e.key_size);
        Put32(p + at + 12, e.value_size);
        data_at += size_t{e.key_size} + e.value_size;
      } else {
        Put32(p + at, pos);
        Put32(p + at + 4, e.key_size);
        Put64(p + at + 8, e.child);
        data_at += e.key_size;
      }
    }
    return out;
  }
};

}  // namespace

// The B+tree of one open bucket: levels_[0] collects leaf elements; when a
// level's page is full it is written and its first key goes up a level.
struct BboltWriter::Tree {
  std::string name;  // in the parent (empty for the root bucket)
  std::vector<Node> levels{1};
  std::vector<bool> wrote{false};  // by level: a page of it was written
  bool has_subbucket = false;
  bool any_key = false;
  std::string last_key;  // the greatest key or sub-bucket name so far

  absl::Status CheckNext(std::string_view key) const {
    if (key.empty()) return absl::InvalidArgumentError("bbolt writer: empty key");
    if (key.size() > kBboltMaxKeyBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("bbolt writer: key of ", key.size(), " bytes (max ", kBboltMaxKeyBytes, ")"));
    }
    if (any_key && key <= std::string_view(last_key)) {
      return absl::InvalidArgumentError("bbolt writer: keys out of order");
    }
    return absl::OkStatus();
  }
};

BboltWriter::BboltWriter(int fd, util::RandomRWFile* file, BboltWriterOptions options)
    : fd_(fd), file_(file), options_(options) {
  buffer_pgid_ = next_pgid_;
  open_.push_back(std::make_unique<Tree>());
}

BboltWriter::~BboltWriter() = default;

namespace {

// InvalidArgument for a bad page size; raises the buffer to one page.
absl::Status CheckOptions(BboltWriterOptions* options) {
  const uint32_t ps = options->page_size;
  if (ps < 1024 || ps > 65536 || (ps & (ps - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("bbolt writer: bad page size ", ps));
  }
  if (options->write_buffer_bytes < ps) options->write_buffer_bytes = ps;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<BboltWriter>> BboltWriter::Create(int fd,
                                                                 BboltWriterOptions options) {
  if (absl::Status s = CheckOptions(&options); !s.ok()) return s;
  return std::unique_ptr<BboltWriter>(new BboltWriter(fd, nullptr, options));
}

absl::StatusOr<std::unique_ptr<BboltWriter>> BboltWriter::Create(util::RandomRWFile* file,
                                                                 BboltWriterOptions options) {
  if (absl::Status s = CheckOptions(&options); !s.ok()) return s;
  return std::unique_ptr<BboltWriter>(new BboltWriter(-1, file, options));
}

absl::Status BboltWriter::WriteAt(const char* p, size_t n, uint64_t offset) {
  if (file_ == nullptr) return PwriteAll(fd_, p, n, offset);
  absl::Status s = file_->Write(offset, std::string_view(p, n));
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat("bbolt writer: ", s.message()));
}

absl::Status BboltWriter::CheckUsable() const {
  if (!broken_.ok()) return broken_;
  if (finished_) return absl::FailedPreconditionError("bbolt writer: already finished");
  return absl::OkStatus();
}

absl::Status BboltWriter::FlushBuffer() {
  if (buffer_.empty()) return absl::OkStatus();
  absl::Status s =
      WriteAt(buffer_.data(), buffer_.size(), buffer_pgid_ * options_.page_size);
  if (!s.ok()) {
    broken_ = s;
    return s;
  }
  buffer_.clear();
  buffer_pgid_ = next_pgid_;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> BboltWriter::WritePages(std::string_view bytes) {
  const uint64_t id = next_pgid_;
  buffer_.append(bytes);
  next_pgid_ += bytes.size() / options_.page_size;
  if (buffer_.size() >= options_.write_buffer_bytes) {
    if (absl::Status s = FlushBuffer(); !s.ok()) return s;
  }
  return id;
}

absl::Status BboltWriter::AddElement(Tree& t, size_t level, uint32_t flags, uint64_t child,
                                     std::string_view key, std::string_view value) {
  const bool leaf = level == 0;
  const size_t add = kElementBytes + key.size() + value.size();
  // A leaf page may hold a single element; a branch page holds at least two
  // (bbolt's minKeysPerPage), else keys larger than a page would stack one
  // branch level on another without end.
  const size_t min_elements = leaf ? 1 : 2;
  if (t.levels[level].elements.size() >= min_elements &&
      t.levels[level].size_bytes + add > options_.page_size) {
    if (absl::Status s = FlushLevel(t, level); !s.ok()) return s;
  }
  Node& n = t.levels[level];
  Element e;
  e.flags = flags;
  e.key_size = static_cast<uint32_t>(key.size());
  e.value_size = static_cast<uint32_t>(value.size());
  e.child = child;
  n.elements.push_back(e);
  n.data.append(key);
  if (leaf) n.data.append(value);
  n.size_bytes += add;
  return absl::OkStatus();
}

absl::Status BboltWriter::FlushLevel(Tree& t, size_t level) {
  std::string first_key;
  uint64_t id = 0;
  {
    Node& n = t.levels[level];
    const std::string page = n.Render(next_pgid_, level == 0, options_.page_size);
    absl::StatusOr<uint64_t> written = WritePages(page);
    if (!written.ok()) return written.status();
    id = *written;
    first_key = n.data.substr(0, n.elements[0].key_size);
    n.Clear();
  }
  t.wrote[level] = true;
  if (t.levels.size() == level + 1) {
    t.levels.emplace_back();
    t.wrote.push_back(false);
  }
  // Recursion depth is bounded by the tree height.
  return AddElement(t, level + 1, 0, id, first_key, {});
}

absl::StatusOr<std::string> BboltWriter::CloseTree(Tree& t, bool may_inline) {
  std::string header(kBucketHeaderBytes, '\0');  // {root, sequence 0}
  if (may_inline && !t.has_subbucket && t.levels.size() == 1 && !t.wrote[0] &&
      t.levels[0].size_bytes <= options_.page_size / 4) {
    return header + t.levels[0].Render(0, /*leaf=*/true, /*page_size=*/0);
  }
  for (size_t level = 0;; ++level) {
    if (level + 1 == t.levels.size()) {
      // The top level: no page of it was written (a write adds a level),
      // so its one page is the root.
      absl::StatusOr<uint64_t> root =
          WritePages(t.levels[level].Render(next_pgid_, level == 0, options_.page_size));
      if (!root.ok()) return root.status();
      Put64(header.data(), *root);
      return header;
    }
    // Not the top: a page was written here, and elements added since then.
    if (!t.levels[level].empty()) {
      if (absl::Status s = FlushLevel(t, level); !s.ok()) return s;
    }
  }
}

absl::Status BboltWriter::BeginBucket(std::string_view name) {
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  Tree& parent = *open_.back();
  if (absl::Status s = parent.CheckNext(name); !s.ok()) return s;
  parent.any_key = true;
  parent.last_key.assign(name);
  parent.has_subbucket = true;
  auto t = std::make_unique<Tree>();
  t->name.assign(name);
  open_.push_back(std::move(t));
  return absl::OkStatus();
}

absl::Status BboltWriter::Put(std::string_view key, std::string_view value) {
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  if (open_.size() < 2) return absl::InvalidArgumentError("bbolt writer: Put outside a bucket");
  Tree& t = *open_.back();
  if (absl::Status s = t.CheckNext(key); !s.ok()) return s;
  if (value.size() > kBboltMaxValueBytes) {
    return absl::InvalidArgumentError(absl::StrCat("bbolt writer: value of ", value.size(), " bytes"));
  }
  t.any_key = true;
  t.last_key.assign(key);
  return AddElement(t, 0, 0, 0, key, value);
}

absl::Status BboltWriter::EndBucket() {
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  if (open_.size() < 2) return absl::InvalidArgumentError("bbolt writer: no bucket open");
  std::unique_ptr<Tree> t = std::move(open_.back());
  open_.pop_back();
  absl::StatusOr<std::string> value = CloseTree(*t, /*may_inline=*/true);
  if (!value.ok()) return value.status();
  return AddElement(*open_.back(), 0, kBucketLeafFlag, 0, t->name, *value);
}

absl::StatusOr<uint64_t> BboltWriter::Finish() {
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  if (open_.size() != 1) return absl::InvalidArgumentError("bbolt writer: a bucket is still open");
  // The root bucket always has a page of its own (meta.root is a page id).
  absl::StatusOr<std::string> root = CloseTree(*open_[0], /*may_inline=*/false);
  if (!root.ok()) return root.status();
  if (absl::Status s = FlushBuffer(); !s.ok()) return s;
  const uint32_t ps = options_.page_size;
  // Pages 0..2: two meta pages and the empty freelist.
  std::string head(size_t{3} * ps, '\0');
  for (uint64_t m = 0; m < 2; ++m) {
    char* p = head.data() + m * ps;
    Put64(p, m);
    Put16(p + 8, kMetaPageFlag);
    char* meta = p + kPageHeaderBytes;
    Put32(meta, kBboltMagic);
    Put32(meta + 4, kVersion);
    Put32(meta + 8, ps);
    Put32(meta + 12, 0);                     // flags
    std::memcpy(meta + 16, root->data(), 16);  // root bucket {root, sequence}
    Put64(meta + 32, 2);                     // freelist page
    Put64(meta + 40, next_pgid_);            // high-water mark
    Put64(meta + 48, kTxid);
    Put64(meta + 56, Fnv1a64(meta, kMetaBytes - 8));
  }
  char* fl = head.data() + 2 * ps;
  Put64(fl, 2);
  Put16(fl + 8, kFreelistPageFlag);
  if (absl::Status s = WriteAt(head.data(), head.size(), 0); !s.ok()) {
    broken_ = s;
    return s;
  }
  finished_ = true;
  return next_pgid_ * ps;
}

}  // namespace cppetcd::storage
