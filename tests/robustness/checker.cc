// CheckAll: the three checkers of checker.h in one report.
#include "checker.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace cppetcd::robustness {

CheckReport CheckAll(const History& history) {
  CheckReport all;
  auto merge = [&all](const char* name, CheckReport r) {
    for (std::string& p : r.problems) all.problems.push_back(absl::StrCat(name, ": ", p));
    all.operations_checked += r.operations_checked;
    all.parts += r.parts;
    if (r.verdict == Verdict::kViolation) {
      all.verdict = Verdict::kViolation;
    } else if (r.verdict == Verdict::kInconclusive && all.verdict == Verdict::kOk) {
      all.verdict = Verdict::kInconclusive;
    }
  };
  merge("linearizability", CheckLinearizability(history));
  merge("watch", CheckWatches(history));
  merge("lease", CheckLeases(history));
  return all;
}

}  // namespace cppetcd::robustness
