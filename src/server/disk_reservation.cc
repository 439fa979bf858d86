#include "disk_reservation.h"

#include "absl/strings/str_cat.h"

namespace cppetcd::server {

absl::Status DiskReservation::Reserve(std::string_view what, uint64_t bytes) {
  absl::StatusOr<uint64_t> free = env_->FreeSpaceBytes(dir_);
  const uint64_t reserved_before = reserved_bytes_.fetch_add(bytes);
  if (!free.ok()) {
    lg_.Warn("cannot read the free disk space; copying the backend anyway",
             {{"path", dir_}, {"error", free.status().ToString()}});
    return absl::OkStatus();
  }
  const uint64_t need = bytes + reserved_before + headroom_bytes_;
  if (*free >= need) return absl::OkStatus();
  Release(bytes);
  lg_.Warn("not enough free disk space for a copy of the backend; refusing it",
           {{"what", std::string(what)},
            {"path", dir_},
            {"free-bytes", *free},
            {"copy-estimate-bytes", bytes},
            {"other-copies-bytes", reserved_before},
            {"headroom-bytes", headroom_bytes_}});
  return absl::ResourceExhaustedError(absl::StrCat(
      "etcdserver: not enough free disk space for ", std::string(what), ": ", *free,
      " bytes free in ", dir_, ", ", need, " needed (the copy, other copies running, and ",
      headroom_bytes_, " kept for the WAL)"));
}

}  // namespace cppetcd::server
