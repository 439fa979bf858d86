// Read-only decoder of etcd's own WAL (etcd 3.4/3.5 `member/wal`), for
// migrating an etcd data dir to cppetcd. It never writes, repairs or locks
// the directory. cppetcd's own WAL (wal.h) has another format; both name
// their segments `<seq:016x>-<index:016x>.wal`, DetectWalFormat tells them
// apart. Format facts: docs/formats-wal.md, "etcd's formats".
//
// An etcd segment is a sequence of frames: an 8-byte little-endian length
// word (low 56 bits: record size; top byte 0, or 0x80 | padding 1..7) then a
// serialized walpb.EtcdRecord{type, crc, data} and the padding zeros. The
// CRC-32C chain runs over the `data` of every record but CRC records; each
// segment starts with a CRC record carrying the running value at the end of
// the previous segment. A zero length word ends a segment's records.
//
// Errors: DataLoss naming the segment file and the frame's offset for any
// damage except a torn tail of the last segment; FailedPrecondition for a
// log that decodes but breaks etcd's rules (conflicting metadata, an entry
// past the next index, snapshot marker missing or of another term);
// NotFound when there is no segment to read; the Env's error for I/O.
//
// Memory: ReadEtcdWal and EtcdWalValidSnapshots hold one segment file at a
// time (at most kEtcdMaxSegmentBytes) plus what they return.
//
// Thread-safety: free functions on values; safe to call concurrently.
#ifndef CPPETCD_WAL_ETCD_WAL_H_
#define CPPETCD_WAL_ETCD_WAL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "cppetcd/util/env.h"
#include "cppetcd/wal/wal.h"
#include "raftpb/raft.pb.h"

namespace cppetcd::wal {

// etcd's record types (etcd wal.go).
inline constexpr int64_t kEtcdMetadataType = 1;  // etcdserverpb.Metadata
inline constexpr int64_t kEtcdEntryType = 2;     // raftpb.Entry
inline constexpr int64_t kEtcdStateType = 3;     // raftpb.HardState
inline constexpr int64_t kEtcdCrcType = 4;       // chain start, no data
inline constexpr int64_t kEtcdSnapshotType = 5;  // walpb.Snapshot marker

// etcd's bound on one record (decoder.go maxWALEntrySizeLimit): a length
// word at or past it is refused before anything is allocated.
inline constexpr uint64_t kEtcdMaxRecordBytes = 10 << 20;
// Largest segment file read (etcd cuts at 64 MB; one record may overrun it).
inline constexpr uint64_t kEtcdMaxSegmentBytes = 256 << 20;

// One decoded, CRC-checked record.
struct EtcdRecord {
  int64_t type = 0;     // one of kEtcd*Type
  uint32_t crc = 0;     // as stored (for a CRC record: the chain's start)
  std::string data;     // the payload
  uint64_t offset = 0;  // of the frame's length word in the segment
};

struct EtcdSegmentScan {
  std::vector<EtcdRecord> records;  // in file order
  uint64_t valid_end = 0;           // offset just past the last good frame
  bool torn = false;                // non-zero bytes past valid_end were dropped
  std::string torn_reason;          // why, when torn
  uint32_t crc = 0;                 // running CRC after the last record
};

// Decodes the bytes of one etcd segment named `name` (for messages).
// `prev_crc` is the running CRC at the end of the segment read before it,
// which its head CRC record must carry; nullopt for the first segment read
// (its head starts the chain unchecked, as etcd does after older segments
// were purged). The first record must be a CRC record, and no other may be.
// In the last segment (`is_last`) a torn write ends the log: the file ends
// inside a length word or frame, or a frame that fails to decode or to match
// its CRC has a 512-byte sector (by file offset) that is all zeros (etcd's
// isTornEntry). Any other damage, and any damage in other segments, is
// DataLoss naming `name` and the offset.
absl::StatusOr<EtcdSegmentScan> ScanEtcdSegment(std::string_view data, std::string_view name,
                                                std::optional<uint32_t> prev_crc, bool is_last);

// What an etcd WAL holds from a snapshot marker on (etcd's OpenForRead +
// ReadAll, without its repair).
struct EtcdWalContents {
  uint64_t member_id = 0;   // etcdserverpb.Metadata.NodeID
  uint64_t cluster_id = 0;  // etcdserverpb.Metadata.ClusterID
  std::string metadata;     // the raw metadata record (equal in every segment)
  raftpb::HardState hard_state;           // the last one read (zero if none)
  std::vector<WalSnapshot> snapshots;     // markers read, in log order
  std::vector<raftpb::Entry> entries;     // indexes start.index+1.. contiguous
  std::vector<std::string> segments;      // names of the segments read
  bool torn = false;          // the last segment ended in a torn write
  std::string torn_reason;    // "<file> at offset N: why" when torn
};

// Reads the etcd WAL in `dir` from `start` (the snapshot the caller will
// restore; {0,0} for none), as etcd's restart does: from the last segment
// whose first index is <= start.index on; entries at or below start.index
// are skipped and an entry at a known index replaces it and all later ones.
// The marker `start` must be present with the same term. NotFound if no
// segment can hold start.index.
absl::StatusOr<EtcdWalContents> ReadEtcdWal(util::Env* env, const std::string& dir, WalSnapshot start);

// etcd's ValidSnapshotEntries: the snapshot markers of all segments whose
// index is at most the commit of the last hard state, in log order.
absl::StatusOr<std::vector<WalSnapshot>> EtcdWalValidSnapshots(util::Env* env, const std::string& dir);

enum class WalFormat {
  kNone,     // no segment files (or no directory)
  kCppetcd,  // cppetcd's own (wal.h)
  kEtcd,     // etcd's
};

// The format of the WAL in `dir`, from the head of its first segment: an
// etcd segment starts with a length word whose bytes 4..6 are zero and a
// CRC record (type 4); a cppetcd one with a record header whose byte 4 is
// the CRC type (5) and whose header CRC checks, so no file is both.
// DataLoss naming the file if the first segment is neither.
absl::StatusOr<WalFormat> DetectWalFormat(util::Env* env, const std::string& dir);

}  // namespace cppetcd::wal

#endif  // CPPETCD_WAL_ETCD_WAL_H_
