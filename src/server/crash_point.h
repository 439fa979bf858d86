// Named crash points for crash-recovery tests: CPPETCD_CRASH_POINT("name")
// kills the process (_exit(99), no flushing, as SIGKILL would) when the
// environment variable CPPETCD_CRASH_POINT equals "name". Compiled only when
// CPPETCD_ENABLE_CRASH_POINTS is defined (test builds); otherwise no code.
#ifndef CPPETCD_SRC_SERVER_CRASH_POINT_H_
#define CPPETCD_SRC_SERVER_CRASH_POINT_H_

#ifdef CPPETCD_ENABLE_CRASH_POINTS
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace cppetcd::server {
inline const char* ArmedCrashPoint() {
  static const char* armed = std::getenv("CPPETCD_CRASH_POINT");
  return armed;
}
}  // namespace cppetcd::server

#define CPPETCD_CRASH_POINT(name)                                                   \
  do {                                                                              \
    const char* armed_ = ::cppetcd::server::ArmedCrashPoint();                      \
    if (armed_ != nullptr && std::strcmp(armed_, name) == 0) ::_exit(99);           \
  } while (0)
#else
#define CPPETCD_CRASH_POINT(name) \
  do {                            \
  } while (0)
#endif

#endif  // CPPETCD_SRC_SERVER_CRASH_POINT_H_
