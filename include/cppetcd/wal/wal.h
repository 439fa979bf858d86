// The write-ahead log of raft entries, hard states and snapshot markers
// (etcd's WAL model; own on-disk format, see docs/formats-wal.md and
// src/wal/record_writer.cc).
//
// A WAL is a directory of segment files `<seq:016x>-<index:016x>.wal`; seq
// counts from 0, index is the first raft index the segment may hold. Each
// segment starts with a CRC record (the running checksum of the log so far),
// the metadata and, from the second segment on, the latest hard state; then
// entry, hard state and snapshot records follow. Every record's CRC-32C is
// chained over the previous one, so records cannot be reordered or spliced
// in from elsewhere. Segments are preallocated; a new one is cut when the
// current one exceeds Options.segment_size_bytes.
//
// Life cycle: Create (new log) or Open + ReadAll (existing log), then Save /
// SaveSnapshot / ReleaseLockTo from one thread, then Close. The WAL holds a
// flock on its directory while open.
//
// Thread-safety: a Wal is used by one thread at a time (the server's raft
// loop); the static functions are thread-safe.
#ifndef CPPETCD_WAL_WAL_H_
#define CPPETCD_WAL_WAL_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppetcd/util/clock.h"
#include "cppetcd/util/env.h"
#include "cppetcd/util/log.h"
#include "raftpb/raft.pb.h"

namespace cppetcd::wal {

// A snapshot marker: the snapshot at (index, term) was saved. {0, 0} is the
// empty marker written at Create.
struct WalSnapshot {
  uint64_t index = 0;
  uint64_t term = 0;
  friend bool operator==(const WalSnapshot&, const WalSnapshot&) = default;
};

// What ReadAll recovers.
struct ReadResult {
  std::string metadata;            // the bytes given at Create
  raftpb::HardState hard_state;    // the last one saved (all zero if none)
  std::vector<raftpb::Entry> entries;  // contiguous, from at.index+1
};

struct Options {
  // A new segment is cut when the current one grows past this; also the
  // preallocation size of each segment.
  uint64_t segment_size_bytes = 64 << 20;
  util::Logger logger{"wal"};
  // Called after each fsync of a segment with its latency (metrics hook,
  // etcd's wal_fsync_duration_seconds). Runs on the caller's thread.
  std::function<void(std::chrono::nanoseconds)> on_fsync;
  // Times each fsync (on_fsync, the slow-fsync warning); null: SystemClock.
  util::Clock* clock = nullptr;
};

class Wal {
 public:
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // True if `dir` holds at least one segment file.
  static bool Exists(util::Env* env, const std::string& dir);

  // Creates a new WAL in `dir` (missing or empty; parents are created) with
  // `metadata` and the empty snapshot marker {0,0}. Built in `dir`.tmp,
  // synced, then renamed into place, so a crash leaves no half-made WAL.
  // AlreadyExists if `dir` holds segments. The result is ready for Save.
  static absl::StatusOr<std::unique_ptr<Wal>> Create(util::Env* env, std::string dir,
                                                     std::string metadata, Options options);

  // Opens an existing WAL to read it from the snapshot marker `at` (the
  // snapshot the caller loaded; {0,0} when none). Call ReadAll next.
  // NotFound if no segment exists; Unavailable if another process holds it;
  // FailedPrecondition if the segment names are not a contiguous sequence.
  static absl::StatusOr<std::unique_ptr<Wal>> Open(util::Env* env, std::string dir, WalSnapshot at,
                                                   Options options);

  // Reads every record from the segment that may hold `at` to the end.
  // Returns the metadata, the last hard state and the entries after
  // at.index; an entry at an index already read replaces it and all after
  // it. A torn last record of the last segment (cut short or zero-filled) is
  // truncated away with a warning and appending continues there.
  // Errors: DataLoss (with file and offset) for a CRC mismatch or garbage
  // anywhere else; NotFound if `at` is not {0,0} and its marker is absent;
  // FailedPrecondition for a marker with another term, conflicting metadata
  // or a gap in the entries. Call once, after Open and before Save.
  absl::StatusOr<ReadResult> ReadAll();

  // Appends `entries` then `hard_state` (skipped when all zero) in one write;
  // fsyncs once if `must_sync` (group commit: one call per raft Ready). Cuts
  // a new segment when the current one is full. An error (e.g. EIO, ENOSPC
  // from the Env) leaves the WAL unusable: every later call fails with it.
  absl::Status Save(const raftpb::HardState& hard_state, const std::vector<raftpb::Entry>& entries,
                    bool must_sync);

  // Appends a snapshot marker and fsyncs.
  absl::Status SaveSnapshot(const WalSnapshot& snapshot);

  // Removes the segments that hold only entries below `index` (never the
  // last segment nor the one that may hold `index`) and fsyncs the
  // directory. Call after the snapshot at `index` and the backend are
  // durable.
  absl::Status ReleaseLockTo(uint64_t index);

  // Syncs and closes the tail segment and releases the directory lock.
  absl::Status Close();

  // The snapshot markers in the WAL at `dir` whose index is at most the
  // commit of the last hard state (the ones a snapshot file may match),
  // oldest first. Reads without locking or repairing; a torn tail ends the
  // read. DataLoss for corruption elsewhere. (etcd: ValidSnapshotEntries.)
  static absl::StatusOr<std::vector<WalSnapshot>> ValidSnapshotEntries(util::Env* env,
                                                                       const std::string& dir);

  // Segment file names currently in the WAL (sorted), for tests and tools.
  std::vector<std::string> SegmentNames() const;
  // The index of the last entry saved or read (0 if none).
  uint64_t LastIndex() const { return last_index_; }

 private:
  Wal(util::Env* env, std::string dir, Options options);

  absl::Status CheckWritable() const;
  // Writes encoded records at the end of the tail segment.
  absl::Status AppendToTail(std::string_view bytes);
  absl::Status SyncTail();
  // Closes the full tail segment and starts the next one.
  absl::Status Cut();
  // Opens the last segment for appending after `valid_end`, dropping what
  // follows, and preallocates it.
  absl::Status OpenTail(uint64_t valid_end);
  // Records a write/sync failure: every later call returns it.
  absl::Status Fail(absl::Status s);

  util::Env* const env_;
  const std::string dir_;
  Options options_;
  WalSnapshot at_;                           // Open's marker
  size_t start_ = 0;                         // segments_[start_] is where ReadAll starts
  bool read_done_ = false;                   // ReadAll ran (or Create)
  std::vector<std::string> segments_;        // names, oldest first
  std::unique_ptr<util::WritableFile> tail_; // the last segment, open for append
  std::unique_ptr<util::FileLock> lock_;
  std::string metadata_;
  raftpb::HardState hard_state_;             // last saved/read, repeated at segment heads
  uint32_t crc_ = 0;                         // running CRC after the last record
  uint64_t last_index_ = 0;
  absl::Status failed_;                      // sticky error after a failed write/sync
};

}  // namespace cppetcd::wal

#endif  // CPPETCD_WAL_WAL_H_
