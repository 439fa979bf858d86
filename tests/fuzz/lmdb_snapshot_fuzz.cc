// Fuzz target: an LMDB database file from outside (a raft snapshot's
// database sent by the leader, a `cppetcd snapshot restore` input) through
// storage::CheckLmdbFile, the check that runs before LMDB maps such a file.
// A file that passes is then used as cppetcd uses it: imported with
// Backend::ReplaceContentsFrom into a live backend (which must keep
// serving), and opened as a backend of its own that takes a write (the
// restore path). LMDB itself is not instrumented: a file the check lets
// through that LMDB mishandles shows up as a crash or a hang here.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "cppetcd/storage/backend.h"
#include "cppetcd/storage/lmdb_check.h"
#include "fuzz_util.h"

namespace {

cppetcd::storage::Backend* LiveBackend() {
  static cppetcd::storage::Backend* be = [] {
    cppetcd::storage::BackendOptions o;
    auto b = cppetcd::storage::Backend::Open(cppetcd::fuzz::FreshDir("live") + "/db", o);
    FUZZ_CHECK(b.ok(), b.status().ToString());
    return b->release();
  }();
  return be;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cppetcd;
  static const bool quiet = (fuzz::QuietLogs(), true);
  (void)quiet;
  const std::string in(reinterpret_cast<const char*>(data), size);
  const absl::Status bytes_ok = storage::CheckLmdbBytes(in);

  const std::string dir = fuzz::FreshDir("snapdb");
  const std::string path = dir + "/db";
  std::ofstream(path, std::ios::binary).write(in.data(), static_cast<std::streamsize>(in.size()));
  const absl::Status file_ok = storage::CheckLmdbFile(path);
  FUZZ_CHECK(file_ok.ok() == bytes_ok.ok(), "file and byte checks disagree: " + file_ok.ToString());

  storage::Backend* live = LiveBackend();
  absl::Status s = live->ReplaceContentsFrom(path);
  FUZZ_CHECK(!s.ok() || file_ok.ok(), "imported a file the check refused");
  // The live backend keeps serving whatever the import did.
  {
    auto w = live->BeginWrite();
    FUZZ_CHECK(w.ok(), w.status().ToString());
    FUZZ_CHECK((*w)->Put(storage::kKeyBucket, "fuzz-key", "v").ok(), "put");
    FUZZ_CHECK((*w)->Commit().ok(), "commit");
    auto r = live->BeginRead();
    FUZZ_CHECK(r.ok(), r.status().ToString());
    auto v = (*r)->Get(storage::kKeyBucket, "fuzz-key");
    FUZZ_CHECK(v.ok(), "get after import: " + v.status().ToString());
  }
  if (!file_ok.ok()) return 0;

  // The restore path: the file becomes a data dir's backend.
  storage::BackendOptions o;
  auto be = storage::Backend::Open(path, o);
  if (be.ok()) {
    auto w = (*be)->BeginWrite();
    if (w.ok()) {
      (void)(*w)->Put(storage::kKeyBucket, "restored", "v");
      (void)(*w)->Commit();
    }
    auto r = (*be)->BeginRead();
    if (r.ok()) {
      (void)(*r)->Scan(storage::kKeyBucket, "", "", [](std::string_view, std::string_view) { return true; });
    }
  }
  return 0;
}
