// systemd readiness notification (sd_notify(3), Type=notify services).
//
// The service manager passes a datagram socket in $NOTIFY_SOCKET: a file
// system path ("/run/systemd/notify") or, when it starts with '@', a Linux
// abstract socket name. The daemon sends newline-separated VAR=value
// assignments to it ("READY=1", "STOPPING=1", "STATUS=..."). The protocol is
// stable and documented by systemd, so it is spoken here directly: no link
// dependency on libsystemd (etcd 3.4 does the same through go-systemd).
#ifndef CPPETCD_UTIL_SD_NOTIFY_H_
#define CPPETCD_UTIL_SD_NOTIFY_H_

#include <string_view>

#include "absl/status/statusor.h"

namespace cppetcd::util {

// Sends `state` (e.g. "READY=1\nSTATUS=serving") as one datagram to the
// socket named by `notify_socket` (the value $NOTIFY_SOCKET would hold).
// Returns false without sending when `notify_socket` is empty (not started
// by a service manager): that is not an error. Errors: InvalidArgument for
// an address that is neither absolute nor abstract or is too long for
// sockaddr_un; Unavailable when the socket cannot be reached (errno text in
// the message). Thread-safe; opens and closes its own socket per call.
absl::StatusOr<bool> SdNotifyTo(std::string_view notify_socket, std::string_view state);

// SdNotifyTo($NOTIFY_SOCKET, state). The variable is left set, so later
// notifications (STOPPING=1) reach the manager too. Thread-safe as long as
// nobody modifies the environment concurrently.
absl::StatusOr<bool> SdNotify(std::string_view state);

}  // namespace cppetcd::util

#endif  // CPPETCD_UTIL_SD_NOTIFY_H_
