#include "cppetcd/auth/range_perm.h"

#include <algorithm>

namespace cppetcd::auth {
namespace {

// Interval ends compare with "" as +infinity.
bool EndLess(std::string_view a, std::string_view b) {
  if (a.empty()) return false;
  if (b.empty()) return true;
  return a < b;
}

}  // namespace

void KeyIntervalSet::Add(std::string begin, std::string end) {
  if (!end.empty() && end <= begin) return;
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(ivs_.size() + 1);
  bool placed = false;
  for (auto& iv : ivs_) {
    // iv entirely before the new interval (and not touching it).
    if (!iv.second.empty() && iv.second < begin) {
      out.push_back(std::move(iv));
      continue;
    }
    // iv entirely after the new interval (and not touching it).
    if (!end.empty() && end < iv.first) {
      if (!placed) {
        out.emplace_back(begin, end);
        placed = true;
      }
      out.push_back(std::move(iv));
      continue;
    }
    // Overlapping or adjacent: absorb into the new interval.
    if (iv.first < begin) begin = iv.first;
    if (EndLess(end, iv.second)) end = iv.second;
  }
  if (!placed) out.emplace_back(std::move(begin), std::move(end));
  ivs_ = std::move(out);
}

bool KeyIntervalSet::ContainsRange(std::string_view begin, std::string_view end) const {
  // The last interval starting at or before `begin`.
  auto it = std::upper_bound(ivs_.begin(), ivs_.end(), begin,
                             [](std::string_view k, const auto& iv) { return k < iv.first; });
  if (it == ivs_.begin()) return false;
  --it;
  // Merged intervals never touch, so one interval must hold all of it.
  if (!it->second.empty() && it->second <= begin) return false;
  return !EndLess(it->second, end);
}

bool KeyIntervalSet::ContainsKey(std::string_view key) const {
  std::string end(key);
  end.push_back('\0');
  return ContainsRange(key, end);
}

void AddPermission(const authpb::Permission& perm, UnifiedPerms* perms) {
  std::string end;
  if (perm.range_end().empty()) {
    end = perm.key() + std::string(1, '\0');
  } else if (perm.range_end() != std::string(1, '\0')) {
    end = perm.range_end();
  }
  switch (perm.permtype()) {
    case authpb::Permission::READWRITE:
      perms->read.Add(perm.key(), end);
      perms->write.Add(perm.key(), end);
      break;
    case authpb::Permission::READ:
      perms->read.Add(perm.key(), end);
      break;
    case authpb::Permission::WRITE:
      perms->write.Add(perm.key(), end);
      break;
    default:
      break;
  }
}

bool PermitsRange(const UnifiedPerms& perms, std::string_view key, std::string_view range_end,
                  authpb::Permission::Type type) {
  const KeyIntervalSet& set = type == authpb::Permission::WRITE ? perms.write : perms.read;
  if (range_end.empty()) return set.ContainsKey(key);
  if (range_end == std::string_view("\0", 1)) return set.ContainsRange(key, "");
  return set.ContainsRange(key, range_end);
}

}  // namespace cppetcd::auth
