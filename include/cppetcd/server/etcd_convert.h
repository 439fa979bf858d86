// The one-time conversion of an etcd 3.4 data dir into cppetcd's formats at
// start-up (docs/formats-wal.md, "Stage 2: conversion at start-up";
// docs/operations.md, "Starting from an etcd data dir").
//
// What is made from the etcd `member` dir (read by storage::ReadEtcdDataDir):
//   backend   the bbolt db imported into LMDB (ImportEtcdBackend: keys with
//             their revisions, leases, auth, alarms, cluster version, the
//             consistent index), the members as serverpb.MemberRecord
//   snapshot  a cppetcd .snap at etcd's snapshot (term, index, conf state),
//             data empty as cppetcd's own snapshots
//   WAL       metadata with etcd's member and cluster IDs, the snapshot
//             marker, every entry after the snapshot (translated, below),
//             etcd's last hard state (term, vote, commit)
// Entries: etcd's v3 payloads (etcdserverpb.InternalRaftRequest) have
// cppetcd's field numbers and are kept byte for byte; etcd's v2 member
// attribute updates (PUT /0/members/<id>/attributes) become cppetcd's
// member_attributes request; v2 cluster version updates (PUT /0/version)
// become empty entries (cppetcd runs 3.4 and keeps the version in the
// backend); ConfChange contexts (etcd's member JSON) become MemberRecords.
// Any other payload at or below the consistent index (already in the
// backend, skipped at apply on every member) becomes an empty entry; above
// it, conversion is refused: the data dir is left as it is.
//
// Crash safety: the new member dir is built in `<data-dir>/member.cppetcd-
// convert`, synced, re-read and checked, marked complete; then the etcd
// `member` is renamed to `member.etcd-backup` and the new one to `member`.
// PrepareDataDir first finishes (both renames done up to the marker) or
// discards (no marker) a conversion that was interrupted.
//
// Thread-safety: call before the server opens the data dir, from one thread.
#ifndef CPPETCD_SERVER_ETCD_CONVERT_H_
#define CPPETCD_SERVER_ETCD_CONVERT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "cppetcd/util/env.h"
#include "cppetcd/util/log.h"

namespace cppetcd::server {

inline constexpr char kConvertTempDirName[] = "member.cppetcd-convert";
inline constexpr char kEtcdBackupDirName[] = "member.etcd-backup";
inline constexpr char kConvertDoneMarker[] = "CONVERTED";

struct ConvertStats {
  bool converted = false;       // an etcd data dir was converted now
  bool resumed = false;         // an interrupted conversion was finished
  bool discarded_temp = false;  // an unfinished temp dir was removed
  uint64_t member_id = 0;
  uint64_t cluster_id = 0;
  int64_t revision = 0;         // the backend's newest revision
  uint64_t keys = 0;            // records in the key bucket (revisions)
  uint64_t leases = 0;
  uint64_t users = 0;
  uint64_t roles = 0;
  uint64_t members = 0;
  uint64_t entries = 0;              // written to the WAL
  uint64_t entries_kept = 0;         // v3 and empty payloads, as they were
  uint64_t entries_attributes = 0;   // v2 attribute updates translated
  uint64_t entries_version = 0;      // v2 cluster version updates emptied
  uint64_t entries_conf_change = 0;  // ConfChange contexts translated
  uint64_t entries_blanked = 0;      // other payloads at/below the consistent index
  uint64_t entries_to_apply = 0;     // committed, above the consistent index
  uint64_t entries_uncommitted = 0;  // after the commit index
};

// Readies `data_dir` (`wal_dir` empty: `<data_dir>/member/wal`) for the
// server: finishes or discards an interrupted conversion, then converts an
// etcd data dir (storage::DetectDataDirFormat == kEtcd). Nothing to do for
// an empty or cppetcd dir. Errors (the etcd dir is left untouched):
// FailedPrecondition for a mixed dir (DetectDataDirFormat's message), a
// separate --wal-dir, an existing backup dir, or an entry above the
// consistent index that cannot be translated (the message says to start
// etcd once more so that it applies its log); the readers' and writers'
// errors otherwise. Steps are logged on `log`.
absl::StatusOr<ConvertStats> PrepareDataDir(util::Env* env, const std::string& data_dir,
                                            const std::string& wal_dir, const util::Logger& log);

}  // namespace cppetcd::server

#endif  // CPPETCD_SERVER_ETCD_CONVERT_H_
