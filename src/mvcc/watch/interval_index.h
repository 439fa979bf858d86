// IntervalIndex: which watchers watch a given key. Private to the watch side.
//
// Items watch a single key, a half-open range [key, end), or every key >=
// key. Single keys live in a hash map. Identical ranges share one group, and
// the distinct ranges are cut into elementary segments at their boundaries:
// segments_[b] lists the groups covering [b, next boundary). A lookup is one
// map search plus the matching items, so the commit path's fan-out costs
// O(log ranges + matches), not O(watchers). Adding or removing a distinct
// range touches the segments it covers (rare next to lookups).
//
// Not thread-safe; the owner locks.
#ifndef CPPETCD_SRC_MVCC_WATCH_INTERVAL_INDEX_H_
#define CPPETCD_SRC_MVCC_WATCH_INTERVAL_INDEX_H_

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"

namespace cppetcd::mvcc::watch_internal {

// The key range of a watcher. end empty and !to_end = the single key `key`.
struct KeyRange {
  std::string key;
  std::string end;      // exclusive; meaningful when !to_end
  bool to_end = false;  // every key >= key
  bool IsSingle() const { return !to_end && end.empty(); }
  bool Contains(std::string_view k) const {
    if (IsSingle()) return k == key;
    return k >= key && (to_end || k < end);
  }
};

template <class T>
class IntervalIndex {
 public:
  IntervalIndex() = default;
  IntervalIndex(const IntervalIndex&) = delete;
  IntervalIndex& operator=(const IntervalIndex&) = delete;

  // Adds `item` watching `r`. An item is added at most once.
  void Add(const KeyRange& r, T* item) {
    ++size_;
    if (r.IsSingle()) {
      singles_[r.key].insert(item);
      return;
    }
    auto [it, inserted] = groups_.try_emplace(GroupKey(r));
    Group& g = it->second;
    g.items.insert(item);
    if (!inserted) return;
    g.range = r;
    SplitAt(r.key);
    if (!r.to_end) SplitAt(r.end);
    for (auto s = segments_.find(r.key); s != segments_.end() && InRange(r, s->first); ++s) {
      auto& v = s->second;
      v.insert(std::lower_bound(v.begin(), v.end(), &g), &g);
    }
  }

  // Removes `item` previously added with `r`. False if it was not there.
  bool Remove(const KeyRange& r, T* item) {
    if (r.IsSingle()) {
      auto it = singles_.find(r.key);
      if (it == singles_.end() || it->second.erase(item) == 0) return false;
      if (it->second.empty()) singles_.erase(it);
      --size_;
      return true;
    }
    auto it = groups_.find(GroupKey(r));
    if (it == groups_.end() || it->second.items.erase(item) == 0) return false;
    --size_;
    if (!it->second.items.empty()) return true;
    Group* g = &it->second;
    for (auto s = segments_.find(r.key); s != segments_.end() && InRange(r, s->first); ++s) {
      auto& v = s->second;
      auto pos = std::lower_bound(v.begin(), v.end(), g);
      if (pos != v.end() && *pos == g) v.erase(pos);
    }
    groups_.erase(it);
    MergeAt(r.key);
    if (!r.to_end) MergeAt(r.end);
    return true;
  }

  // Calls fn(T*) once for each item whose range contains `key`.
  template <class Fn>
  void ForEachMatch(std::string_view key, Fn&& fn) const {
    if (auto it = singles_.find(absl::string_view(key.data(), key.size())); it != singles_.end()) {
      for (T* item : it->second) fn(item);
    }
    if (segments_.empty()) return;
    auto s = segments_.upper_bound(key);
    if (s == segments_.begin()) return;
    --s;
    for (const Group* g : s->second) {
      for (T* item : g->items) fn(item);
    }
  }

  // True if some item's range contains `key`.
  bool ContainsKey(std::string_view key) const {
    bool found = false;
    ForEachMatch(key, [&](T*) { found = true; });
    return found;
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Elementary segments kept (for tests: merged back when ranges go).
  size_t SegmentCount() const { return segments_.size(); }

 private:
  struct Group {
    KeyRange range;
    absl::flat_hash_set<T*> items;
  };
  using GroupKeyT = std::tuple<std::string, bool, std::string>;
  static GroupKeyT GroupKey(const KeyRange& r) {
    return {r.key, r.to_end, r.to_end ? std::string() : r.end};
  }
  static bool InRange(const KeyRange& r, const std::string& boundary) {
    return r.to_end || boundary < r.end;
  }

  // Ensures a boundary at b; the new segment inherits the covering groups.
  void SplitAt(const std::string& b) {
    auto it = segments_.lower_bound(b);
    if (it != segments_.end() && it->first == b) return;
    std::vector<const Group*> cover;
    if (it != segments_.begin()) cover = std::prev(it)->second;
    segments_.emplace_hint(it, b, std::move(cover));
  }

  // Drops boundary b when it no longer separates different coverings.
  void MergeAt(const std::string& b) {
    auto it = segments_.find(b);
    if (it == segments_.end()) return;
    if (it == segments_.begin()) {
      if (it->second.empty()) segments_.erase(it);
      return;
    }
    if (std::prev(it)->second == it->second) segments_.erase(it);
  }

  size_t size_ = 0;
  absl::flat_hash_map<std::string, absl::flat_hash_set<T*>> singles_;
  std::map<GroupKeyT, Group> groups_;  // node-based: Group addresses are stable
  std::map<std::string, std::vector<const Group*>, std::less<>> segments_;  // sorted vectors
};

}  // namespace cppetcd::mvcc::watch_internal

#endif  // CPPETCD_SRC_MVCC_WATCH_INTERVAL_INDEX_H_
