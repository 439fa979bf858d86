// sd_notify: a datagram to $NOTIFY_SOCKET (a socket, not a file: outside
// util::Env).
#include "cppetcd/util/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace cppetcd::util {

absl::StatusOr<bool> SdNotifyTo(std::string_view notify_socket, std::string_view state) {
  if (notify_socket.empty()) return false;
  // Debian's Abseil has its own string_view: messages take a std::string.
  const std::string name(notify_socket);
  const bool abstract = notify_socket.front() == '@';
  if (!abstract && notify_socket.front() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("NOTIFY_SOCKET \"", name, "\" is neither a path nor an abstract name"));
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  // A path needs its terminating NUL inside sun_path; an abstract name does
  // not (its length is carried by the address length instead).
  const size_t max_len = sizeof(addr.sun_path) - (abstract ? 0 : 1);
  if (notify_socket.size() > max_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("NOTIFY_SOCKET \"", name, "\" is longer than ", max_len, " bytes"));
  }
  std::memcpy(addr.sun_path, notify_socket.data(), notify_socket.size());
  if (abstract) addr.sun_path[0] = '\0';
  const socklen_t addr_len =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + notify_socket.size());

  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("sd_notify: socket: ", std::strerror(errno)));
  }
  ssize_t sent = -1;
  for (int attempt = 0; attempt < 100; ++attempt) {
    sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                    reinterpret_cast<const sockaddr*>(&addr), addr_len);
    if (sent >= 0 || errno != EINTR) break;
  }
  const int send_errno = errno;
  ::close(fd);
  if (sent < 0) {
    return absl::UnavailableError(
        absl::StrCat("sd_notify: send to ", name, ": ", std::strerror(send_errno)));
  }
  if (static_cast<size_t>(sent) != state.size()) {
    return absl::UnavailableError(absl::StrCat("sd_notify: short send to ", name));
  }
  return true;
}

absl::StatusOr<bool> SdNotify(std::string_view state) {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  return SdNotifyTo(socket == nullptr ? std::string_view() : std::string_view(socket), state);
}

}  // namespace cppetcd::util
