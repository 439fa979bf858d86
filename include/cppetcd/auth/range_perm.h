// The key ranges a user may read and write, merged over all its roles
// (etcd 3.4 auth/range_perm_cache.go): the permission cache behind
// AuthStore's checks.
#ifndef CPPETCD_AUTH_RANGE_PERM_H_
#define CPPETCD_AUTH_RANGE_PERM_H_

#include <string>
#include <string_view>
#include <vector>

#include "authpb/auth.pb.h"

namespace cppetcd::auth {

// A set of keys as sorted, disjoint, non-adjacent half-open intervals
// [begin, end); end "" means no upper bound.
class KeyIntervalSet {
 public:
  // Adds [begin, end) (end "" = unbounded). Empty intervals are ignored.
  void Add(std::string begin, std::string end);
  // Whether `key` is in the set.
  bool ContainsKey(std::string_view key) const;
  // Whether every key of [begin, end) is (end "" = unbounded).
  bool ContainsRange(std::string_view begin, std::string_view end) const;
  // The merged intervals, in order (for tests).
  const std::vector<std::pair<std::string, std::string>>& Intervals() const { return ivs_; }

 private:
  std::vector<std::pair<std::string, std::string>> ivs_;
};

struct UnifiedPerms {
  KeyIntervalSet read;
  KeyIntervalSet write;
};

// Adds one role permission: key with range_end "" is the single key,
// range_end "\0" is every key >= key, else [key, range_end).
void AddPermission(const authpb::Permission& perm, UnifiedPerms* perms);

// Whether `perms` allow `type` (READ or WRITE) on a request's key range: a
// single key when range_end is "", every key >= key when range_end is "\0",
// else [key, range_end). Any thread (const).
bool PermitsRange(const UnifiedPerms& perms, std::string_view key, std::string_view range_end,
                  authpb::Permission::Type type);

}  // namespace cppetcd::auth

#endif  // CPPETCD_AUTH_RANGE_PERM_H_
