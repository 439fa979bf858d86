// Read-only access to etcd's snapshot files (etcd 3.4/3.5
// `member/snap/<term:016x>-<index:016x>.snap`), for migrating an etcd data
// dir. A file is a serialized snappb.Snapshot{crc, data} where crc is the
// CRC-32C of data and data a serialized raftpb.Snapshot (metadata index,
// term, conf state; its data is etcd's v2 store as JSON, kept as bytes).
// Unlike etcd's snapshotter (and snapshotter.h) nothing is renamed: a broken
// file is reported and skipped. Format facts: docs/formats-wal.md.
//
// Thread-safety: free functions; safe to call concurrently.
#ifndef CPPETCD_SNAP_ETCD_SNAP_H_
#define CPPETCD_SNAP_ETCD_SNAP_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cppetcd/util/env.h"
#include "cppetcd/wal/wal.h"
#include "raftpb/raft.pb.h"

namespace cppetcd::snap {

// Largest .snap file read (its v2 store holds little in a v3 cluster).
inline constexpr uint64_t kEtcdMaxSnapFileBytes = uint64_t{1} << 30;

// Reads and checks one file as etcd's snap.Read does: DataLoss naming the
// path when it is empty, undecodable, has empty data or a zero CRC (etcd's
// "empty snapshot"), or its CRC does not match; ResourceExhausted past
// kEtcdMaxSnapFileBytes; the Env's error for I/O.
absl::StatusOr<raftpb::Snapshot> ReadEtcdSnapFile(util::Env* env, const std::string& path);

struct EtcdSnapChoice {
  std::optional<raftpb::Snapshot> snapshot;  // none: no usable file (etcd starts without one)
  std::string file;                          // the chosen file's name, when there is one
  std::vector<std::string> skipped;          // "<name>: <why>" for newer files passed over
};

// etcd's LoadNewestAvailable: the newest `*.snap` file of `dir` (names in
// reverse byte order) that reads cleanly and whose (term, index) is one of
// `markers` (the WAL's valid snapshot markers). Files that fail to read or
// match no marker are listed in `skipped`. NotFound if `dir` is missing.
absl::StatusOr<EtcdSnapChoice> LoadNewestEtcdSnap(util::Env* env, const std::string& dir,
                                                 const std::vector<wal::WalSnapshot>& markers);

}  // namespace cppetcd::snap

#endif  // CPPETCD_SNAP_ETCD_SNAP_H_
