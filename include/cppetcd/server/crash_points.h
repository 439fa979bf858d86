// Named crash points for crash-recovery tests. The server marks places where
// a crash is interesting (CPPETCD_CRASH_POINT("raft_before_save"), ...: the
// names are listed in docs/testing.md); they do nothing unless a crash hook
// is installed. Only the test executable `cppetcd-crashtest` installs one
// (it dies with _exit(99) at the point named by $CPPETCD_CRASH_POINT), so the
// shipped `cppetcd` cannot be made to die through its environment.
//
// Thread-safety: SetCrashHook before the server starts; CrashPoint from any
// thread.
#ifndef CPPETCD_SERVER_CRASH_POINTS_H_
#define CPPETCD_SERVER_CRASH_POINTS_H_

namespace cppetcd::server {

// Called with the point's name at every crash point once installed.
using CrashHook = void (*)(const char* name);

// Installs `hook` (nullptr: none, the default).
void SetCrashHook(CrashHook hook);

// Calls the installed hook, if any, with `name`.
void CrashPoint(const char* name);

}  // namespace cppetcd::server

#endif  // CPPETCD_SERVER_CRASH_POINTS_H_
