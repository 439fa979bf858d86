// Disk room for client-requested copies of the backend (a Maintenance.Snapshot
// stream in bbolt format, an online defragmentation): each copy reserves its
// estimated size before it starts and releases it when done, so copies that
// run at once do not together fill the data dir's file system and starve the
// WAL. cppetcd's own guard; etcd 3.4 copies without checking.
//
// Rule: Reserve(bytes) succeeds iff free >= bytes + reserved + headroom,
// where free is env->FreeSpaceBytes(dir) now, reserved the bytes of the copies
// already holding a reservation and headroom the bytes always left for the
// WAL (ServerConfig::disk_headroom_bytes). When the free space cannot be read
// the copy goes ahead (reserved, with a warning).
//
// Invariant: ReservedBytes() == the sum of the successful Reserve()s not yet
// Release()d; a refused Reserve leaves it unchanged. Release(b) must match a
// successful Reserve(b).
//
// Thread-safety: thread-safe (one atomic counter; the free-space read and
// the reservation are not one atomic step, so two copies racing may both
// see the same free space, as before this type existed).
#ifndef CPPETCD_SRC_SERVER_DISK_RESERVATION_H_
#define CPPETCD_SRC_SERVER_DISK_RESERVATION_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "cppetcd/util/env.h"
#include "cppetcd/util/log.h"

namespace cppetcd::server {

class DiskReservation {
 public:
  // `env` (not owned, outlives this) reads the free space of `dir`;
  // `headroom_bytes` are never handed to a copy.
  DiskReservation(util::Env* env, std::string dir, uint64_t headroom_bytes, util::Logger logger)
      : env_(env), dir_(std::move(dir)), headroom_bytes_(headroom_bytes), lg_(std::move(logger)) {}
  DiskReservation(const DiskReservation&) = delete;
  DiskReservation& operator=(const DiskReservation&) = delete;

  // Reserves `bytes` for a copy described by `what` ("a snapshot"). OK: the
  // bytes stay reserved until Release(bytes). ResourceExhausted (message
  // naming `what`, the free bytes, the dir and the bytes needed): refused,
  // nothing reserved.
  absl::Status Reserve(std::string_view what, uint64_t bytes);
  void Release(uint64_t bytes) { reserved_bytes_.fetch_sub(bytes); }

  uint64_t ReservedBytes() const { return reserved_bytes_.load(); }

 private:
  util::Env* const env_;
  const std::string dir_;
  const uint64_t headroom_bytes_;
  util::Logger lg_;
  std::atomic<uint64_t> reserved_bytes_{0};  // sum of the live reservations
};

}  // namespace cppetcd::server

#endif  // CPPETCD_SRC_SERVER_DISK_RESERVATION_H_
