// cppetcd-robustness: the fault harness's command line. See runner.h and
// docs/testing.md ("Fault harness").
#include <sched.h>
#include <sys/mount.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "runner.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") {
      std::cout << cppetcd::robustness::Usage();
      return 0;
    }
  }
  auto options = cppetcd::robustness::ParseRunnerArgs(args);
  if (!options.ok()) {
    std::cerr << options.status().message() << "\n";
    return 2;
  }
  // The enospc fault mounts a tmpfs per data dir. In a private mount
  // namespace (entered before any thread exists: unshare(CLONE_NEWNS) needs
  // an unshared fs struct) they vanish with this process and its members,
  // even if it is killed; elsewhere they are unmounted on the way out.
  const auto& kinds = options->faults;
  if (std::find(kinds.begin(), kinds.end(), cppetcd::robustness::FaultKind::kEnospc) !=
      kinds.end()) {
    if (::unshare(CLONE_NEWNS) != 0 ||
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      std::cerr << "no private mount namespace (" << std::strerror(errno)
                << "); tmpfs data dirs are unmounted at the end of each run\n";
    }
  }
  return cppetcd::robustness::RunAll(*options);
}
