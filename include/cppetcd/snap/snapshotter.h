// Raft snapshot files (etcd's snap package model). Each snapshot is one file
// `<term:016x>-<index:016x>.snap` in the snapshot directory holding a
// serialized snappb.Snapshot{crc, data = serialized raftpb.Snapshot}; see
// docs/formats-wal.md.
//
// Thread-safety: a Snapshotter may be used from several threads; the file
// operations are independent (each file is written by temp + rename).
#ifndef CPPETCD_SNAP_SNAPSHOTTER_H_
#define CPPETCD_SNAP_SNAPSHOTTER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppetcd/util/env.h"
#include "cppetcd/util/log.h"
#include "cppetcd/wal/wal.h"
#include "raftpb/raft.pb.h"

namespace cppetcd::snap {

// The file name of the snapshot at (term, index).
std::string SnapFileName(uint64_t term, uint64_t index);

class Snapshotter {
 public:
  // `env` must outlive this object; `dir` must exist.
  Snapshotter(util::Env* env, std::string dir, util::Logger logger = util::Logger("snap"));

  // Writes `snapshot` durably (temp file, fsync, rename, fsync of the
  // directory). InvalidArgument for an empty snapshot (metadata.index 0).
  absl::Status SaveSnap(const raftpb::Snapshot& snapshot);

  // The newest snapshot whose CRC checks. A corrupt file is renamed to
  // `<name>.broken` with a warning and the next older one is tried.
  // NotFound if none is left.
  absl::StatusOr<raftpb::Snapshot> Load();

  // Like Load, but only snapshots whose (term, index) is one of `walsnaps`
  // (the WAL's snapshot markers, Wal::ValidSnapshotEntries) qualify.
  absl::StatusOr<raftpb::Snapshot> LoadNewestAvailable(const std::vector<wal::WalSnapshot>& walsnaps);

  // Removes all but the newest `keep` snapshot files (etcd --max-snapshots;
  // the newest one is always kept) and stale `.tmp` files of interrupted
  // saves, then fsyncs the directory.
  absl::Status Purge(size_t keep);

  // Names of the snapshot files, newest (highest term, then index) first.
  absl::StatusOr<std::vector<std::string>> SnapNames() const;

  const std::string& dir() const { return dir_; }

 private:
  // Reads and checks one file; DataLoss if its CRC or encoding is wrong.
  absl::StatusOr<raftpb::Snapshot> Read(const std::string& name) const;
  absl::StatusOr<raftpb::Snapshot> LoadMatching(const std::vector<wal::WalSnapshot>* walsnaps);

  util::Env* const env_;
  const std::string dir_;
  util::Logger logger_;
};

// Errors and predicate: no usable snapshot file (etcd: ErrNoSnapshot).
absl::Status ErrNoSnapshot();
bool IsNoSnapshot(const absl::Status& status);

}  // namespace cppetcd::snap

#endif  // CPPETCD_SNAP_SNAPSHOTTER_H_
