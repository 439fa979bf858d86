#include "cppetcd/server/crash_points.h"

#include <atomic>

namespace cppetcd::server {
namespace {
std::atomic<CrashHook> g_hook{nullptr};
}  // namespace

void SetCrashHook(CrashHook hook) { g_hook.store(hook, std::memory_order_release); }

void CrashPoint(const char* name) {
  if (CrashHook hook = g_hook.load(std::memory_order_acquire); hook != nullptr) hook(name);
}

}  // namespace cppetcd::server
