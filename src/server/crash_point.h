// CPPETCD_CRASH_POINT("name"): a named crash point (see
// include/cppetcd/server/crash_points.h); a no-op unless a test executable
// installed a crash hook.
#ifndef CPPETCD_SRC_SERVER_CRASH_POINT_H_
#define CPPETCD_SRC_SERVER_CRASH_POINT_H_

#include "cppetcd/server/crash_points.h"

#define CPPETCD_CRASH_POINT(name) ::cppetcd::server::CrashPoint(name)

#endif  // CPPETCD_SRC_SERVER_CRASH_POINT_H_
