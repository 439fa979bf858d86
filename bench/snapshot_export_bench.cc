// Cost of Maintenance.Snapshot's two formats on one backend (docs/
// benchmarks.md, "Snapshot"): the LMDB copy (Backend::CopyTo) and the etcd
// bbolt export (ExportEtcdBackend + BboltWriter), each writing a file.
//
//   snapshot-export-bench fill  <db> <megabytes>   a store of 1 KiB values
//   snapshot-export-bench lmdb  <db> <out>         LMDB copy
//   snapshot-export-bench bbolt <db> <out>         etcd bbolt file
//
// Prints wall time, output bytes and the peak anonymous and file-backed
// resident memory (RssAnon / RssFile, sampled every 10 ms; file-backed
// pages are LMDB's map and are shared with the page cache).
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <thread>

#include "cppetcd/server/etcd_backend_export.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/storage/bbolt_writer.h"
#include "mvccpb/kv.pb.h"

namespace {

using cppetcd::storage::Backend;

// RssAnon and RssFile of this process, KiB.
std::pair<int64_t, int64_t> Rss() {
  std::ifstream in("/proc/self/status");
  std::string line;
  int64_t anon = 0, file = 0;
  while (std::getline(in, line)) {
    if (line.rfind("RssAnon:", 0) == 0) anon = std::stoll(line.substr(8));
    if (line.rfind("RssFile:", 0) == 0) file = std::stoll(line.substr(8));
  }
  return {anon, file};
}

struct PeakSampler {
  std::atomic<bool> stop{false};
  std::atomic<int64_t> anon{0}, file{0};
  std::thread t{[this] {
    while (!stop.load()) {
      auto [a, f] = Rss();
      if (a > anon.load()) anon = a;
      if (f > file.load()) file = f;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }};
  ~PeakSampler() {
    stop = true;
    t.join();
  }
};

std::string RevKey(int64_t main) {
  std::string k(17, '_');
  cppetcd::storage::PutBigEndian64(static_cast<uint64_t>(main), k.data());
  cppetcd::storage::PutBigEndian64(0, k.data() + 9);
  return k;
}

int Fill(const std::string& path, int64_t megabytes) {
  cppetcd::storage::BackendOptions o;
  o.sync_mode = cppetcd::storage::SyncMode::kNoSync;
  o.map_size_bytes = static_cast<uint64_t>(megabytes) * 3 << 20;
  auto be = Backend::Open(path, o);
  if (!be.ok()) {
    std::cerr << be.status() << "\n";
    return 1;
  }
  std::mt19937_64 rng(1);
  std::string value(1024, '\0');
  const int64_t n = megabytes * 1024 * 1024 / (1024 + 80);
  for (int64_t rev = 1; rev <= n;) {
    auto w = (*be)->BeginWrite();
    if (!w.ok()) return 1;
    for (int i = 0; i < 10000 && rev <= n; ++i, ++rev) {
      for (size_t j = 0; j < value.size(); j += 8) {
        const uint64_t r = rng();
        std::memcpy(value.data() + j, &r, 8);
      }
      mvccpb::KeyValue kv;
      char key[40];
      std::snprintf(key, sizeof key, "/registry/bench/%08lld", static_cast<long long>(rev % 100000));
      kv.set_key(key);
      kv.set_create_revision(rev);
      kv.set_mod_revision(rev);
      kv.set_version(1);
      kv.set_value(value);
      if (!(*w)->Append("key", RevKey(rev), kv.SerializeAsString()).ok()) return 1;
    }
    if (!(*w)->Put("meta", "consistent_index", cppetcd::storage::EncodeBigEndian64(rev)).ok()) {
      return 1;
    }
    if (!(*w)->Commit().ok()) return 1;
  }
  if (!(*be)->Sync().ok()) return 1;
  std::printf("filled %lld revisions, file %lld bytes\n", static_cast<long long>(n),
              static_cast<long long>((*be)->SizeBytes()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s fill|lmdb|bbolt <db> <megabytes|out>\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1], db = argv[2];
  if (mode == "fill") return Fill(db, std::stoll(argv[3]));
  cppetcd::storage::BackendOptions o;
  o.map_size_bytes = 64ull << 30;
  auto be = Backend::Open(db, o);
  if (!be.ok()) {
    std::cerr << be.status() << "\n";
    return 1;
  }
  const int fd = ::open(argv[3], O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) return 1;
  const auto before = Rss();
  absl::Status st;
  auto start = std::chrono::steady_clock::now();
  {
    PeakSampler peak;
    if (mode == "lmdb") {
      st = (*be)->CopyTo(fd);
    } else {
      auto rtx = (*be)->BeginRead();
      auto w = cppetcd::storage::BboltWriter::Create(fd);
      st = rtx.ok() ? cppetcd::server::ExportEtcdBackend(rtx->get(), w->get()) : rtx.status();
      if (st.ok()) st = (*w)->Finish().status();
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const off_t size = ::lseek(fd, 0, SEEK_END);
    std::printf("%s: %.2f s, %lld bytes, peak RssAnon %lld KiB (before %lld), peak RssFile %lld KiB\n",
                mode.c_str(), secs, static_cast<long long>(size),
                static_cast<long long>(peak.anon.load()), static_cast<long long>(before.first),
                static_cast<long long>(peak.file.load()));
  }
  ::close(fd);
  if (!st.ok()) {
    std::cerr << st << "\n";
    return 1;
  }
  return 0;
}
