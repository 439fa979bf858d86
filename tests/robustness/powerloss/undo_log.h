// The power-loss undo log: the record format shared by the LD_PRELOAD
// interposer (powerloss_preload.cc), which appends records, and the crash
// tool (powerloss_apply.cc), which reads them after the process was killed.
//
// The log is a sequence of records, each one write() of a fixed header and
// `payload_bytes` bytes of payload, in host byte order (the tool runs on the
// machine that wrote it). Files are identified by (dev, ino), so several
// processes may append to one log (O_APPEND; one write() per record).
//
// A SIGKILL can cut a record short: the kernel ends a write() to a regular
// file early, at a page boundary, when a fatal signal is pending. Later
// processes sharing the log (or the next incarnation of the same member)
// append after the torn record, so it can sit in the middle of the log. Each
// record therefore carries two CRC-32Cs (header, payload); the reader skips a
// record that fails them and resumes at the next whole one. A torn record
// announces a change that never started (the record is written before the
// change), so skipping it is exact, as long as its process wrote nothing
// after it — which the reader checks.
//
//   kFile      a tracked file was opened. a = size at open (bytes), b = 1 if
//              this open created it, payload = its absolute path.
//   kWrite     bytes [a, a+b) are about to be written; c = file size before.
//              payload = the previous bytes of [a, min(a+b, c)), or empty
//              with kFlagOldZero when they were all zero.
//              kFlagDurable: written through an O_DSYNC/O_SYNC descriptor.
//   kTruncate  the size changes from c to a (ftruncate, O_TRUNC, fallocate);
//              payload = previous bytes of [a, c) when shrinking (or empty
//              with kFlagOldZero).
//   kSync      fsync/fdatasync of the file: every earlier record of it is
//              durable; a = size at the sync.
//   kDirSync   fsync of a directory; payload = its absolute path.
//   kRename    payload = "<old>\0<new>"; (dev, ino) = the file renamed, or
//              b = 1 and (0, 0) for a directory (every path below moves).
//   kUnlink    payload = the path; (dev, ino) = the file removed.
#ifndef CPPETCD_TESTS_ROBUSTNESS_POWERLOSS_UNDO_LOG_H_
#define CPPETCD_TESTS_ROBUSTNESS_POWERLOSS_UNDO_LOG_H_

#include <cstdint>

namespace cppetcd::powerloss {

inline constexpr uint32_t kRecordMagic = 0x504c5752;  // "PLWR"

enum RecordType : uint8_t {
  kFile = 1,
  kWrite = 2,
  kTruncate = 3,
  kSync = 4,
  kDirSync = 5,
  kRename = 6,
  kUnlink = 7,
};

inline constexpr uint8_t kFlagOldZero = 1;  // previous bytes were all zero
inline constexpr uint8_t kFlagDurable = 2;  // write through an O_DSYNC fd

struct RecordHeader {
  uint32_t magic = kRecordMagic;
  uint8_t type = 0;
  uint8_t flags = 0;
  uint16_t reserved = 0;
  uint32_t payload_bytes = 0;
  uint32_t pid = 0;  // the writing process (diagnostics)
  uint64_t dev = 0;
  uint64_t ino = 0;
  uint64_t a = 0;
  uint64_t b = 0;
  uint64_t c = 0;
  uint32_t payload_crc = 0;  // CRC-32C of the payload
  uint32_t header_crc = 0;   // CRC-32C of this header with header_crc = 0
};
static_assert(sizeof(RecordHeader) == 64);

// The page size of the `random` crash mode (bytes).
inline constexpr uint64_t kPageBytes = 4096;

}  // namespace cppetcd::powerloss

#endif  // CPPETCD_TESTS_ROBUSTNESS_POWERLOSS_UNDO_LOG_H_
