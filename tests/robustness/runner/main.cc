// cppetcd-robustness: the fault harness's command line. See runner.h and
// docs/testing.md ("Fault harness").
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
  return cppetcd::robustness::RunAll(*options);
}
