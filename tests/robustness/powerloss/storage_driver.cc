// powerloss_storage_driver: a storage-level workload for the power-loss
// fault (see powerloss_storage_test.cc).
//
//   run:    powerloss_storage_driver run --db PATH --progress FILE
//               --sync nosync|nometasync|full [--txns N] [--sync-every K]
//   verify: powerloss_storage_driver verify --db PATH --progress FILE
//               --sync nosync|nometasync|full
//
// `run` opens a Backend in the given LMDB mode and commits txns 1..N of a
// deterministic workload (txn t: 1..24 puts and deletes over 3000 keys of
// the key bucket, values 8..600 bytes and now and then 2..9 KiB, so pages
// split, merge, overflow and are reused), each also setting meta/"txn" to t
// (8 bytes big-endian, as the server's consistent index). After each commit
// returns it appends "c <t>\n" to the progress file; in nosync mode it calls
// Backend::Sync() every K txns and appends "s <t>\n" after it returns. The
// progress file is written with plain write() outside the interposed
// directory, so it survives a SIGKILL.
//
// `verify` (after the kill and the crash tool) opens the Backend, walks every
// bucket with a cursor, reads meta/"txn" = t and checks that the key bucket
// equals the workload's state after txn t exactly, and that t lies in
// [floor, last committed + 1], where floor is what the mode promises to keep:
// nosync the last synced txn, nometasync the last committed - 1 (LMDB: a
// system crash may undo the last committed transaction), full the last
// committed. Prints "OK t=..." (exit 0) or "CORRUPT: ..." (exit 1); LMDB
// reading a broken page may also crash it (the test counts that as corrupt).
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "cppetcd/storage/backend.h"

namespace cppetcd::powerloss {
namespace {

constexpr int kKeys = 3000;
constexpr std::string_view kTxnKey = "txn";

struct Flags {
  std::string command, db, progress, sync = "nometasync";
  uint64_t txns = 20000;
  uint64_t sync_every = 100;
};

// One operation of the workload: a put (value non-empty) or a delete.
struct WorkOp {
  std::string key;
  std::string value;  // empty: delete
};

// The operations of txn t (1-based); deterministic.
std::vector<WorkOp> TxnOps(uint64_t t) {
  std::mt19937_64 rng(t * 0x9E3779B97F4A7C15ull + 17);
  std::vector<WorkOp> ops(1 + rng() % 24);
  for (auto& op : ops) {
    char key[16];
    std::snprintf(key, sizeof(key), "k%05d", static_cast<int>(rng() % kKeys));
    op.key = key;
    if (rng() % 4 == 0) continue;  // delete
    const size_t len = rng() % 40 == 0 ? 2048 + rng() % 7000 : 8 + rng() % 593;
    op.value.resize(len);
    const uint64_t fill = rng();
    for (size_t i = 0; i < len; ++i) op.value[i] = static_cast<char>('a' + (fill + i * 7 + t) % 26);
  }
  return ops;
}

storage::BackendOptions Options(const std::string& sync) {
  storage::BackendOptions o;
  o.map_size_bytes = 1ull << 30;
  o.sync_mode = sync == "nosync"       ? storage::SyncMode::kNoSync
                : sync == "full"       ? storage::SyncMode::kFull
                                       : storage::SyncMode::kNoMetaSync;
  return o;
}

void Progress(int fd, char what, uint64_t t) {
  const std::string line = absl::StrCat(std::string(1, what), " ", t, "\n");
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::abort();
}

int Run(const Flags& f) {
  auto be = storage::Backend::Open(f.db, Options(f.sync));
  if (!be.ok()) {
    std::fprintf(stderr, "open: %s\n", be.status().ToString().c_str());
    return 2;
  }
  const int pfd = ::open(f.progress.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (pfd < 0) return 2;
  for (uint64_t t = 1; t <= f.txns; ++t) {
    auto tx = (*be)->BeginWrite();
    if (!tx.ok()) return 2;
    for (const WorkOp& op : TxnOps(t)) {
      absl::Status s = op.value.empty() ? (*tx)->Delete(storage::kKeyBucket, op.key)
                                        : (*tx)->Put(storage::kKeyBucket, op.key, op.value);
      if (!s.ok()) return 2;
    }
    if (!(*tx)->Put(storage::kMetaBucket, kTxnKey, storage::EncodeBigEndian64(t)).ok()) return 2;
    if (auto s = (*tx)->Commit(); !s.ok()) {
      std::fprintf(stderr, "commit: %s\n", s.ToString().c_str());
      return 2;
    }
    Progress(pfd, 'c', t);
    if (f.sync == "nosync" && t % f.sync_every == 0) {
      if (!(*be)->Sync().ok()) return 2;
      Progress(pfd, 's', t);
    }
  }
  return 0;
}

int Corrupt(const std::string& what) {
  std::printf("CORRUPT: %s\n", what.c_str());
  return 1;
}

int Verify(const Flags& f) {
  uint64_t committed = 0, synced = 0;
  {
    std::ifstream in(f.progress);
    std::string line;
    while (std::getline(in, line)) {
      if (line.size() < 3) continue;
      const uint64_t t = std::strtoull(line.c_str() + 2, nullptr, 10);
      (line[0] == 'c' ? committed : synced) = t;
    }
  }
  const uint64_t floor = f.sync == "nosync"     ? synced
                         : f.sync == "full"     ? committed
                         : committed > 0 ? committed - 1 : 0;
  auto be = storage::Backend::Open(f.db, Options(f.sync));
  if (!be.ok()) return Corrupt(absl::StrCat("open: ", be.status().ToString()));
  auto rtx = (*be)->BeginRead();
  if (!rtx.ok()) return Corrupt(absl::StrCat("begin read: ", rtx.status().ToString()));
  // Every bucket walked in full, both directions.
  for (std::string_view bucket : storage::kAllBuckets) {
    uint64_t fwd = 0, rev = 0;
    absl::Status s = (*rtx)->Scan(bucket, "", "", [&](std::string_view, std::string_view) {
      ++fwd;
      return true;
    });
    if (s.ok()) {
      s = (*rtx)->ScanReverse(bucket, "", "", [&](std::string_view, std::string_view) {
        ++rev;
        return true;
      });
    }
    if (!s.ok()) return Corrupt(absl::StrCat("walk ", std::string(bucket), ": ", s.ToString()));
    auto count = (*rtx)->Count(bucket);
    if (!count.ok() || *count != fwd || fwd != rev) {
      return Corrupt(absl::StrCat("bucket ", std::string(bucket), ": count ", count.ok() ? *count : 0,
                                  " forward ", fwd, " reverse ", rev));
    }
  }
  uint64_t t = 0;
  auto v = (*rtx)->Get(storage::kMetaBucket, kTxnKey);
  if (!v.ok()) return Corrupt(absl::StrCat("get txn: ", v.status().ToString()));
  if (v->has_value()) {
    if ((*v)->size() != 8) return Corrupt("meta/txn is not 8 bytes");
    t = storage::GetBigEndian64((*v)->data());
  }
  if (t < floor || t > committed + 1) {
    return Corrupt(absl::StrCat("stored txn ", t, " outside [", floor, ", ", committed + 1,
                                "] (committed ", committed, ", synced ", synced, ")"));
  }
  std::map<std::string, std::string> model;
  for (uint64_t i = 1; i <= t; ++i) {
    for (const WorkOp& op : TxnOps(i)) {
      if (op.value.empty()) {
        model.erase(op.key);
      } else {
        model[op.key] = op.value;
      }
    }
  }
  auto it = model.begin();
  std::string mismatch;
  absl::Status s = (*rtx)->Scan(storage::kKeyBucket, "", "", [&](std::string_view k, std::string_view val) {
    if (it == model.end() || it->first != k || it->second != val) {
      mismatch = absl::StrCat("key bucket differs from the state after txn ", t, " at key ", std::string(k),
                              it == model.end() ? " (extra key)" : it->first != k ? " (key)" : " (value)");
      return false;
    }
    ++it;
    return true;
  });
  if (!s.ok()) return Corrupt(s.ToString());
  if (!mismatch.empty()) return Corrupt(mismatch);
  if (it != model.end()) return Corrupt(absl::StrCat("key ", it->first, " missing (txn ", t, ")"));
  std::printf("OK t=%llu floor=%llu committed=%llu keys=%zu\n", static_cast<unsigned long long>(t),
              static_cast<unsigned long long>(floor), static_cast<unsigned long long>(committed),
              model.size());
  return 0;
}

int Main(int argc, char** argv) {
  Flags f;
  if (argc < 2) return 2;
  f.command = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--db") {
      f.db = v;
    } else if (k == "--progress") {
      f.progress = v;
    } else if (k == "--sync") {
      f.sync = v;
    } else if (k == "--txns") {
      f.txns = std::strtoull(v.c_str(), nullptr, 10);
    } else if (k == "--sync-every") {
      f.sync_every = std::strtoull(v.c_str(), nullptr, 10);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  if (f.db.empty() || f.progress.empty() || f.sync_every == 0) return 2;
  if (f.command == "run") return Run(f);
  if (f.command == "verify") return Verify(f);
  return 2;
}

}  // namespace
}  // namespace cppetcd::powerloss

int main(int argc, char** argv) { return cppetcd::powerloss::Main(argc, argv); }
