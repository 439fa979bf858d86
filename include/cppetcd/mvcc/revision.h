// Revisions: etcd's {main, sub} pair. `main` is the store revision of one
// write request (all its changes share it); `sub` numbers the changes inside
// that request from 0. In the key bucket a revision is the 17-byte key
// main (8 bytes big-endian) '_' sub (8 bytes big-endian), followed by one 't'
// byte when the entry is a tombstone (see docs/formats-mvcc.md).
#ifndef CPPETCD_MVCC_REVISION_H_
#define CPPETCD_MVCC_REVISION_H_

#include <compare>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace cppetcd::mvcc {

struct Revision {
  int64_t main = 0;
  int64_t sub = 0;
  friend auto operator<=>(const Revision&, const Revision&) = default;
  friend bool operator==(const Revision&, const Revision&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const Revision& r) {
    return H::combine(std::move(h), r.main, r.sub);
  }
};

inline constexpr size_t kRevisionBytes = 17;        // main '_' sub
inline constexpr size_t kMarkedRevisionBytes = 18;  // plus the tombstone mark
inline constexpr char kTombstoneMark = 't';

// Writes the 17-byte key of `rev` to out[0..16].
void EncodeRevision(Revision rev, char* out);
// The key bucket key of `rev` (18 bytes when `tombstone`).
std::string RevisionKey(Revision rev, bool tombstone = false);
// Parses the first 17 bytes of a key bucket key. `key` must hold >= 17 bytes.
Revision DecodeRevision(std::string_view key);
// True for an 18-byte key ending in the tombstone mark.
bool IsTombstoneKey(std::string_view key);

}  // namespace cppetcd::mvcc

#endif  // CPPETCD_MVCC_REVISION_H_
