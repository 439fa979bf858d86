// `cppetcd snapshot status|restore`: etcdctl 3.4's offline snapshot
// commands (same flags, output and error texts) for snapshots of cppetcd
// (an LMDB copy of the backend, Maintenance.Snapshot) and of etcd 3.4 (a
// bbolt file, imported into a cppetcd backend on restore). Both may carry
// etcd's integrity trailer: the SHA-256 of the content, appended when the
// file size modulo 512 is 32.
#ifndef CPPETCD_SRC_CMD_SNAPSHOT_CMD_H_
#define CPPETCD_SRC_CMD_SNAPSHOT_CMD_H_

#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cppetcd::cmd {

// etcd clientv3/snapshot Status.
struct SnapshotStatus {
  uint32_t hash = 0;        // CRC-32C over bucket names, keys and values in order
  int64_t revision = 0;     // main revision of the last record of the `key` bucket
  int64_t total_keys = 0;   // records in all buckets
  int64_t total_size = 0;   // bytes (bbolt: pages in use; LMDB: file without trailer)
};

// Computes the status of the snapshot file at `path` (either format). The
// file is not modified. NotFound if missing; InvalidArgument if neither
// format; DataLoss if corrupt.
absl::StatusOr<SnapshotStatus> ComputeSnapshotStatus(const std::string& path);

// `status` printed as etcdctl -w `format` ("simple", "table", "json",
// "fields"); each ends with a newline. InvalidArgument for other formats.
absl::StatusOr<std::string> FormatSnapshotStatus(const SnapshotStatus& status,
                                                 std::string_view format);

// etcdctl snapshot restore flags (defaults as etcdctl's).
struct RestoreOptions {
  std::string snapshot_path;
  std::string name = "default";
  std::string data_dir;  // empty: <name>.etcd
  std::string wal_dir;   // empty: <data_dir>/member/wal
  std::string initial_cluster = "default=http://localhost:2380";
  std::string initial_cluster_token = "etcd-cluster";
  std::string initial_advertise_peer_urls = "http://localhost:2380";
  bool skip_hash_check = false;
};

// Builds a new member data dir from a snapshot, as etcd's restore: the
// backend (<data_dir>/member/snap/db) holds the snapshot's data with the
// members replaced by the new cluster's and consistent index N (the member
// count); the WAL holds metadata {member ID, cluster ID}, N AddNode conf
// change entries at term 1, HardState{term 1, vote first ID, commit N} and a
// snapshot marker {N, 1} matching a raft snapshot file with the voters.
// Errors (etcd's texts): InvalidArgument for bad flags, AlreadyExists for an
// existing data or WAL dir, FailedPrecondition for a missing or wrong hash.
absl::Status RestoreSnapshot(const RestoreOptions& options);

// The subcommand: `args` are the words after "snapshot" (status FILE [-w F]
// | restore FILE [flags]). Output to `out`, errors ("Error: ...") to `err`.
// Returns etcdctl's exit code (0; 1 on failure; 4 for an unsupported -w;
// 128 on bad arguments).
int RunSnapshotCommand(const std::vector<std::string>& args, std::ostream& out,
                       std::ostream& err);

}  // namespace cppetcd::cmd

#endif  // CPPETCD_SRC_CMD_SNAPSHOT_CMD_H_
