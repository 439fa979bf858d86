// KeyIndex and TreeIndex: etcd 3.4's keyIndex/treeIndex rules
// (mvcc/key_index.go, mvcc/index.go), re-implemented.
#include "cppetcd/mvcc/key_index.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace cppetcd::mvcc {
namespace {

[[noreturn]] void Die(const char* what, Revision a, Revision b) {
  std::fprintf(stderr, "mvcc: key index invariant broken: %s (%lld,%lld) vs (%lld,%lld)\n", what,
               static_cast<long long>(a.main), static_cast<long long>(a.sub),
               static_cast<long long>(b.main), static_cast<long long>(b.sub));
  std::abort();
}

bool IsAllFromKey(std::string_view end) { return end.size() == 1 && end[0] == '\0'; }

}  // namespace

// ---- KeyIndex ----

void KeyIndex::Put(Revision rev) {
  if (!(rev > modified_)) Die("put with a revision not above modified", rev, modified_);
  if (generations_.empty()) generations_.emplace_back();
  Generation& g = generations_.back();
  if (g.revs.empty()) g.created = rev;
  g.revs.push_back(rev);
  g.version++;
  modified_ = rev;
}

void KeyIndex::Restore(Revision created, Revision modified, int64_t version) {
  if (!generations_.empty()) Die("restore on a non-empty key index", created, modified);
  modified_ = modified;
  generations_.push_back(Generation{version, created, {modified}});
}

bool KeyIndex::Tombstone(Revision rev) {
  if (IsEmpty() || generations_.back().revs.empty()) return false;
  Put(rev);
  generations_.emplace_back();
  lease_ = 0;
  return true;
}

bool KeyIndex::IsEmpty() const {
  return generations_.empty() || (generations_.size() == 1 && generations_[0].revs.empty());
}

const Generation* KeyIndex::FindGeneration(int64_t rev) const {
  const ptrdiff_t last = static_cast<ptrdiff_t>(generations_.size()) - 1;
  for (ptrdiff_t cg = last; cg >= 0; --cg) {
    const Generation& g = generations_[cg];
    if (g.revs.empty()) continue;
    // A finished generation whose tombstone is at or below rev: the key did
    // not exist at rev (newer generations start above rev).
    if (cg != last && g.revs.back().main <= rev) return nullptr;
    if (g.revs.front().main <= rev) return &g;
  }
  return nullptr;
}

std::optional<KeyAt> KeyIndex::Get(int64_t at_rev) const {
  if (IsEmpty()) return std::nullopt;
  const Generation* g = FindGeneration(at_rev);
  if (g == nullptr) return std::nullopt;
  // Newest revision with main <= at_rev.
  auto it = std::upper_bound(g->revs.begin(), g->revs.end(), at_rev,
                             [](int64_t r, const Revision& x) { return r < x.main; });
  if (it == g->revs.begin()) return std::nullopt;
  size_t n = static_cast<size_t>(it - g->revs.begin()) - 1;
  return KeyAt{g->revs[n], g->created,
               g->version - static_cast<int64_t>(g->revs.size() - n - 1)};
}

std::vector<Revision> KeyIndex::Since(int64_t rev) const {
  std::vector<Revision> out;
  if (IsEmpty()) return out;
  const Revision since{rev, 0};
  size_t gi = generations_.size() - 1;
  for (; gi > 0; --gi) {
    const Generation& g = generations_[gi];
    if (g.revs.empty()) continue;
    if (since > g.created) break;
  }
  int64_t last = 0;
  for (; gi < generations_.size(); ++gi) {
    for (const Revision& r : generations_[gi].revs) {
      if (since > r) continue;
      if (r.main == last) {
        out.back() = r;  // keep only the newest sub revision of a main revision
        continue;
      }
      out.push_back(r);
      last = r.main;
    }
  }
  return out;
}

std::pair<size_t, ptrdiff_t> KeyIndex::DoCompact(int64_t at_rev, RevisionSet* available) const {
  size_t gen_idx = 0;
  // Skip generations that ended (tombstone) at or below at_rev.
  while (gen_idx + 1 < generations_.size()) {
    if (generations_[gen_idx].revs.back().main > at_rev) break;
    ++gen_idx;
  }
  const Generation& g = generations_[gen_idx];
  ptrdiff_t rev_idx = -1;
  for (ptrdiff_t i = static_cast<ptrdiff_t>(g.revs.size()) - 1; i >= 0; --i) {
    if (g.revs[i].main <= at_rev) {
      available->insert(g.revs[i]);
      rev_idx = i;
      break;
    }
  }
  return {gen_idx, rev_idx};
}

void KeyIndex::Compact(int64_t at_rev, RevisionSet* available) {
  if (IsEmpty()) return;
  auto [gen_idx, rev_idx] = DoCompact(at_rev, available);
  Generation& g = generations_[gen_idx];
  if (!g.revs.empty()) {
    if (rev_idx > 0) g.revs.erase(g.revs.begin(), g.revs.begin() + rev_idx);
    // Only the tombstone of a finished generation remains: drop it too.
    if (g.revs.size() == 1 && gen_idx != generations_.size() - 1) {
      available->erase(g.revs[0]);
      ++gen_idx;
    }
  }
  generations_.erase(generations_.begin(), generations_.begin() + gen_idx);
}

void KeyIndex::Keep(int64_t at_rev, RevisionSet* available) const {
  if (IsEmpty()) return;
  auto [gen_idx, rev_idx] = DoCompact(at_rev, available);
  const Generation& g = generations_[gen_idx];
  if (!g.revs.empty() && rev_idx == static_cast<ptrdiff_t>(g.revs.size()) - 1 &&
      gen_idx != generations_.size() - 1) {
    available->erase(g.revs[rev_idx]);  // a tombstone is not kept
  }
}

// ---- TreeIndex ----

template <typename Fn>
void TreeIndex::ForRange(std::string_view key, std::string_view end, Fn&& fn) const {
  if (end.empty()) {
    auto it = tree_.find(key);
    if (it != tree_.end()) fn(it->first, it->second);
    return;
  }
  const bool unbounded = IsAllFromKey(end);
  for (auto it = tree_.lower_bound(key); it != tree_.end(); ++it) {
    if (!unbounded && std::string_view(it->first) >= end) break;
    if (!fn(it->first, it->second)) break;
  }
}

void TreeIndex::Put(std::string_view key, Revision rev, int64_t lease,
                    std::optional<KeyAt>* prev, int64_t* prev_lease) {
  WriterLock l(&mu_);
  auto it = tree_.find(key);
  if (it == tree_.end()) {
    it = tree_.emplace(std::string(key), KeyIndex()).first;
    if (prev != nullptr) prev->reset();
  } else if (prev != nullptr) {
    *prev = it->second.Get(rev.main);
    if (prev_lease != nullptr) *prev_lease = *prev ? it->second.lease() : 0;
  }
  it->second.Put(rev);
  it->second.set_lease(lease);
}

bool TreeIndex::Tombstone(std::string_view key, Revision rev, int64_t* lease) {
  WriterLock l(&mu_);
  auto it = tree_.find(key);
  if (it == tree_.end()) return false;
  int64_t old = it->second.lease();
  if (!it->second.Tombstone(rev)) return false;
  if (lease != nullptr) *lease = old;
  return true;
}

void TreeIndex::RestoreRecord(std::string_view key, Revision rev, bool tombstone,
                              int64_t create_main, int64_t version, int64_t lease) {
  WriterLock l(&mu_);
  auto it = tree_.find(key);
  if (it != tree_.end()) {
    if (tombstone) {
      it->second.Tombstone(rev);
    } else {
      it->second.Put(rev);
      it->second.set_lease(lease);
    }
    return;
  }
  // A key whose older history was compacted away: its first record is a
  // tombstone (nothing to restore) or a put that starts the generation.
  if (tombstone) return;
  KeyIndex ki;
  ki.Restore(Revision{create_main, 0}, rev, version);
  ki.set_lease(lease);
  tree_.emplace(std::string(key), std::move(ki));
}

std::optional<KeyAt> TreeIndex::Get(std::string_view key, int64_t at_rev, int64_t* lease) const {
  ReaderLock l(&mu_);
  auto it = tree_.find(key);
  if (it == tree_.end()) return std::nullopt;
  if (lease != nullptr) *lease = it->second.IsLive() ? it->second.lease() : 0;
  return it->second.Get(at_rev);
}

void TreeIndex::Visit(std::string_view key, std::string_view end, int64_t at_rev,
                      absl::FunctionRef<bool(const std::string&, const KeyAt&)> fn) const {
  ReaderLock l(&mu_);
  ForRange(key, end, [&](const std::string& k, const KeyIndex& ki) {
    auto at = ki.Get(at_rev);
    if (!at) return true;
    return fn(k, *at);
  });
}

void TreeIndex::Range(std::string_view key, std::string_view end, int64_t at_rev,
                      std::vector<std::string>* keys, std::vector<Revision>* revs) const {
  ReaderLock l(&mu_);
  ForRange(key, end, [&](const std::string& k, const KeyIndex& ki) {
    auto at = ki.Get(at_rev);
    if (at) {
      if (keys != nullptr) keys->push_back(k);
      if (revs != nullptr) revs->push_back(at->modified);
    }
    return true;
  });
}

int64_t TreeIndex::Revisions(std::string_view key, std::string_view end, int64_t at_rev,
                             size_t limit, std::vector<Revision>* revs,
                             int64_t* compact_rev) const {
  ReaderLock l(&mu_);
  if (compact_rev != nullptr) *compact_rev = compact_rev_;
  int64_t count = 0;
  ForRange(key, end, [&](const std::string&, const KeyIndex& ki) {
    auto at = ki.Get(at_rev);
    if (at) {
      if (limit == 0 || static_cast<size_t>(count) < limit) revs->push_back(at->modified);
      ++count;
    }
    return true;
  });
  return count;
}

int64_t TreeIndex::CountRevisions(std::string_view key, std::string_view end, int64_t at_rev,
                                  int64_t* compact_rev) const {
  ReaderLock l(&mu_);
  if (compact_rev != nullptr) *compact_rev = compact_rev_;
  int64_t count = 0;
  ForRange(key, end, [&](const std::string&, const KeyIndex& ki) {
    if (ki.Get(at_rev)) ++count;
    return true;
  });
  return count;
}

std::vector<Revision> TreeIndex::RangeSince(std::string_view key, std::string_view end,
                                            int64_t rev) const {
  ReaderLock l(&mu_);
  std::vector<Revision> out;
  ForRange(key, end, [&](const std::string&, const KeyIndex& ki) {
    auto s = ki.Since(rev);
    out.insert(out.end(), s.begin(), s.end());
    return true;
  });
  if (!end.empty()) std::sort(out.begin(), out.end());
  return out;
}

RevisionSet TreeIndex::Compact(int64_t rev, size_t chunk_keys) {
  RevisionSet available;
  if (chunk_keys == 0) chunk_keys = 1;
  std::string next;  // first key of the next chunk
  bool first = true;
  while (true) {
    WriterLock l(&mu_);
    auto it = first ? tree_.begin() : tree_.lower_bound(next);
    first = false;
    for (size_t n = 0; n < chunk_keys && it != tree_.end(); ++n) {
      it->second.Compact(rev, &available);
      if (it->second.IsEmpty()) {
        it = tree_.erase(it);
      } else {
        ++it;
      }
    }
    if (it == tree_.end()) break;
    next = it->first;
  }
  return available;
}

RevisionSet TreeIndex::Keep(int64_t rev) const {
  RevisionSet available;
  ReaderLock l(&mu_);
  for (const auto& [k, ki] : tree_) ki.Keep(rev, &available);
  return available;
}

void TreeIndex::SetCompactRev(int64_t rev) {
  WriterLock l(&mu_);
  compact_rev_ = rev;
}

int64_t TreeIndex::CompactRev() const {
  ReaderLock l(&mu_);
  return compact_rev_;
}

void TreeIndex::ForEachLeased(
    absl::FunctionRef<void(const std::string& key, int64_t lease)> fn) const {
  ReaderLock l(&mu_);
  for (const auto& [k, ki] : tree_) {
    if (ki.IsLive() && ki.lease() != 0) fn(k, ki.lease());
  }
}

size_t TreeIndex::Size() const {
  ReaderLock l(&mu_);
  return tree_.size();
}

bool TreeIndex::Equals(const TreeIndex& other) const {
  if (this == &other) return true;
  ReaderLock l1(&mu_);
  ReaderLock l2(&other.mu_);
  if (tree_.size() != other.tree_.size()) return false;
  for (auto a = tree_.begin(), b = other.tree_.begin(); a != tree_.end(); ++a, ++b) {
    if (a->first != b->first || !(a->second == b->second)) return false;
  }
  return true;
}

}  // namespace cppetcd::mvcc
