// Read-only summary of an etcd 3.4/3.5 data dir (`member/wal` in etcd's WAL
// format, `member/snap/*.snap` and the bbolt backend `member/snap/db`), the
// input of the one-time conversion to cppetcd's formats. Nothing in the etcd
// dir is written, renamed or locked: the etcd process must be stopped (the
// reader cannot tell a live WAL from a stopped one).
//
// It lives in storage, the lowest module that sees all three parts (wal and
// snap below it for etcd's log and snapshot files, its own bbolt reader for
// the backend), so that server and cmd can convert from it.
//
// The reading follows etcd's restart path (etcdserver/server.go, storage.go):
// the WAL's valid snapshot markers, the newest readable .snap file with one
// of them, the WAL from that marker on; the backend's consistent index must
// reach the snapshot (else etcd opens `<index:016x>.snap.db`, and so does
// this reader). Format facts: docs/formats-wal.md, "etcd's formats".
//
// Memory: the WAL one segment at a time, the entries after the snapshot,
// the chosen .snap file, and the whole backend file while its meta and
// members buckets are read (BboltReader loads the file).
//
// Thread-safety: free functions; safe to call concurrently.
#ifndef CPPETCD_STORAGE_ETCD_DATA_DIR_H_
#define CPPETCD_STORAGE_ETCD_DATA_DIR_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "cppetcd/storage/bbolt_reader.h"
#include "cppetcd/util/env.h"
#include "cppetcd/wal/wal.h"
#include "raftpb/raft.pb.h"

namespace cppetcd::storage {

enum class DataDirFormat {
  kNone,     // no WAL segments and no bbolt backend: nothing to convert
  kCppetcd,  // cppetcd's WAL (and LMDB backend, if any)
  kEtcd,     // etcd's WAL (and bbolt backend, if any)
};

// Which implementation wrote the data dir, from the head of the first WAL
// segment (wal::DetectWalFormat) and the magic of `member/snap/db` (bbolt or
// LMDB). `wal_dir` empty means `<data_dir>/member/wal` (etcd's --wal-dir).
// FailedPrecondition when the two disagree (a half-converted or mixed dir)
// or a bbolt backend has no WAL; DataLoss when a segment or the db is of
// neither format.
absl::StatusOr<DataDirFormat> DetectDataDirFormat(util::Env* env, const std::string& data_dir,
                                                  const std::string& wal_dir = "");

// A member record of the backend's `members` bucket: key the member ID in
// hex, value etcd's membership JSON {"id","peerURLs","name","clientURLs",
// "isLearner"}.
struct EtcdMember {
  uint64_t id = 0;  // from the key
  std::string name;
  std::vector<std::string> peer_urls;
  std::vector<std::string> client_urls;
  bool is_learner = false;
  std::string json;  // the stored value, verbatim
};

// Parses etcd's member JSON as carried in a ConfChange's context (the ID
// from its "id" field). DataLoss if it is not such a JSON object or has no
// non-zero id.
absl::StatusOr<EtcdMember> ParseEtcdMemberJson(std::string_view json);

struct EtcdDataDir {
  uint64_t member_id = 0;   // from the WAL metadata
  uint64_t cluster_id = 0;
  raftpb::HardState hard_state;  // the last one in the WAL
  // The snapshot etcd would restart from, if any: metadata (index, term,
  // conf state) and data (etcd's v2 store JSON, as bytes).
  std::optional<raftpb::Snapshot> snapshot;
  std::string snapshot_file;               // its name in member/snap
  std::vector<std::string> skipped_snapshot_files;  // "<name>: <why>"
  std::vector<wal::WalSnapshot> wal_snapshots;  // valid markers, log order
  std::vector<raftpb::Entry> entries;      // after the snapshot index (or 1..)
  uint64_t last_index = 0;                 // last entry's index, else the snapshot's
  bool wal_torn = false;                   // the last segment ends in a torn write
  std::string wal_torn_reason;
  std::vector<std::string> wal_segments;   // names of the segments read

  // The backend (member/snap/db, or the `.snap.db` etcd would swap in).
  std::string db_path;                     // empty when there is no backend
  // That backend as read here (the whole file in memory), for the caller
  // to import from without reading it again; null when db_path is empty.
  std::shared_ptr<const BboltReader> db;
  uint64_t consistent_index = 0;           // meta bucket `consistent_index` (0 if absent)
  std::vector<EtcdMember> members;         // `members` bucket, by ID
  std::vector<uint64_t> removed_member_ids;  // `members_removed` bucket
};

// Reads the etcd data dir at `data_dir` (WAL in `wal_dir`, or
// `<data_dir>/member/wal` when empty). FailedPrecondition if it is not an
// etcd data dir (DetectDataDirFormat), if the backend is behind the snapshot
// and no `.snap.db` for it exists, or if the hard state's commit is past the
// last index (etcd's "commit out of range"); the wal/snap/bbolt readers'
// errors (DataLoss naming the file and offset) otherwise.
absl::StatusOr<EtcdDataDir> ReadEtcdDataDir(util::Env* env, const std::string& data_dir,
                                            const std::string& wal_dir = "");

}  // namespace cppetcd::storage

#endif  // CPPETCD_STORAGE_ETCD_DATA_DIR_H_
