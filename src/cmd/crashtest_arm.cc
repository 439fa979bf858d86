// Linked only into `cppetcd-crashtest` (a test executable, never installed):
// arms the server's named crash points. The process dies with _exit(99) (no
// flushing, as a SIGKILL would) at the point named by $CPPETCD_CRASH_POINT.
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "cppetcd/server/crash_points.h"

namespace {

const char* g_armed = nullptr;

void DieAtArmedPoint(const char* name) {
  if (std::strcmp(name, g_armed) == 0) ::_exit(99);
}

struct Arm {
  Arm() {
    g_armed = std::getenv("CPPETCD_CRASH_POINT");
    if (g_armed != nullptr && *g_armed != '\0') cppetcd::server::SetCrashHook(&DieAtArmedPoint);
  }
} arm;

}  // namespace
