#include "cppetcd/mvcc/revision.h"

#include "cppetcd/storage/backend.h"

namespace cppetcd::mvcc {

void EncodeRevision(Revision rev, char* out) {
  storage::PutBigEndian64(static_cast<uint64_t>(rev.main), out);
  out[8] = '_';
  storage::PutBigEndian64(static_cast<uint64_t>(rev.sub), out + 9);
}

std::string RevisionKey(Revision rev, bool tombstone) {
  std::string s(tombstone ? kMarkedRevisionBytes : kRevisionBytes, '\0');
  EncodeRevision(rev, s.data());
  if (tombstone) s[kRevisionBytes] = kTombstoneMark;
  return s;
}

Revision DecodeRevision(std::string_view key) {
  return Revision{static_cast<int64_t>(storage::GetBigEndian64(key.data())),
                  static_cast<int64_t>(storage::GetBigEndian64(key.data() + 9))};
}

bool IsTombstoneKey(std::string_view key) {
  return key.size() == kMarkedRevisionBytes && key[kRevisionBytes] == kTombstoneMark;
}

}  // namespace cppetcd::mvcc
