// Fuzz target: an etcd (bbolt) database file through storage::BboltReader,
// as `cppetcd snapshot status|restore` reads an etcd snapshot: FromBytes,
// ListBuckets, then ForEach over every bucket. Invariants: no crash, no
// unbounded work (page cycles, huge counts); every key and value lies inside
// the file's bytes or is empty.
#include <cstdint>
#include <string>
#include <string_view>

#include "cppetcd/storage/bbolt_reader.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cppetcd;
  auto r = storage::BboltReader::FromBytes(std::string(reinterpret_cast<const char*>(data), size));
  if (!r.ok()) return 0;
  (void)(*r)->SizeBytes();
  auto names = (*r)->ListBuckets();
  if (!names.ok()) return 0;
  size_t visited = 0;
  for (const std::string& name : *names) {
    absl::Status s = (*r)->ForEach(name, [&](std::string_view k, std::string_view v, bool) {
      FUZZ_CHECK(k.size() <= size && v.size() <= size, "key or value larger than the file");
      ++visited;
      return true;
    });
    (void)s;
  }
  // Each entry takes at least one leaf element (16 bytes) of some page.
  FUZZ_CHECK(visited <= size, "more entries than the file can hold");
  return 0;
}
