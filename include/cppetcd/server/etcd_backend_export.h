// Export of cppetcd's backend as etcd 3.4's (Maintenance.Snapshot): the
// LMDB buckets, converted where cppetcd's layout differs from etcd's, fed in
// etcd's bucket and key order to a bbolt writer.
//
// What is written (etcd 3.4 bucket contents; docs/operations.md, "Backup"):
//   alarm, auth, key, lease   as stored (same encodings as etcd)
//   authUsers, authRoles      name -> authpb record; records whose names are
//                             too long for an LMDB key (authUsersHashed /
//                             authRolesHashed, keyed by SHA-256) are merged
//                             back under their full names
//   cluster                   as stored, plus "clusterVersion" -> "3.4.0"
//                             when absent (etcd writes it once a leader
//                             decides the version; cppetcd runs 3.4)
//   members                   hex id without padding -> etcd's JSON member
//                             {"id","peerURLs","isLearner","name","clientURLs"}
//                             (cppetcd stores serverpb.MemberRecord under
//                             %016x)
//   members_removed           hex id without padding -> "removed"
//   meta                      consistent_index as stored; scheduledCompactRev
//                             and finishedCompactRev as etcd's 17-byte
//                             revision (main, '_', sub 0) instead of 8 bytes
// cppetcd-only buckets are not written.
//
// Memory: entries stream from the read transaction to the writer; only the
// members buckets (one entry per member) and the hashed auth names are held.
#ifndef CPPETCD_SERVER_ETCD_BACKEND_EXPORT_H_
#define CPPETCD_SERVER_ETCD_BACKEND_EXPORT_H_

#include <string>

#include "absl/status/status.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/storage/bbolt_reader.h"
#include "cppetcd/storage/bbolt_writer.h"
#include "cppetcd/util/log.h"

namespace cppetcd::server {

// Writes every etcd bucket of `rtx`'s snapshot into `writer` (no bucket may
// be open in it; the caller calls Finish). Errors: the read txn's or the
// writer's; DataLoss for a record that does not decode (a member, a hashed
// auth record). Not thread-safe (one txn, one writer).
absl::Status ExportEtcdBackend(storage::ReadTxn* rtx, storage::BboltWriter* writer);

// The import direction (`cppetcd snapshot restore` of an etcd snapshot, and
// the start-up conversion of an etcd data dir, etcd_convert.h): copies every
// bucket of an etcd bbolt backend into `be` in one write transaction, with
// the same encodings except scheduledCompactRev / finishedCompactRev (etcd's
// 17-byte revision -> 8-byte main) and the auth records (auth::PutAuthRecord's
// layout). The members buckets are not copied (etcd's JSON is not cppetcd's
// record: the caller writes them); unknown buckets are skipped with a
// warning on `log`. Errors: the reader's or the backend's. Not thread-safe.
absl::Status ImportEtcdBackend(const storage::BboltReader& bolt, storage::Backend* be,
                               const util::Logger& log);

// Go's encoding/json of etcd's membership.Member (exposed for tests).
std::string EtcdMemberJson(uint64_t id, const std::vector<std::string>& peer_urls,
                           bool is_learner, const std::string& name,
                           const std::vector<std::string>& client_urls);

}  // namespace cppetcd::server

#endif  // CPPETCD_SERVER_ETCD_BACKEND_EXPORT_H_
