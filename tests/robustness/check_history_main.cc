// cppetcd-check-history <history.jsonl>: reads a robustness history
// (history_io.h), runs the linearizability, watch and lease checkers and
// prints a summary with every problem found.
// Exit code: 0 all checkers passed, 1 a violation, 2 inconclusive or error.
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "checker.h"
#include "history_io.h"

namespace {

using cppetcd::robustness::CheckReport;
using cppetcd::robustness::Verdict;

const char* VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kOk: return "ok";
    case Verdict::kViolation: return "VIOLATION";
    case Verdict::kInconclusive: return "inconclusive";
  }
  return "?";
}

void Print(const char* name, const CheckReport& r) {
  std::printf("%-16s %-12s checked %lld", name, VerdictName(r.verdict),
              static_cast<long long>(r.operations_checked));
  if (r.parts != 0) std::printf(", %lld parts", static_cast<long long>(r.parts));
  std::printf(", %zu problems\n", r.problems.size());
  for (const std::string& p : r.problems) std::printf("  %s\n", p.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <history.jsonl>\n", argv[0]);
    return 2;
  }
  auto history = cppetcd::robustness::ReadHistory(argv[1]);
  if (!history.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(history.status().message()).c_str());
    return 2;
  }
  std::printf("history %s: %zu operations, %zu lease operations, %zu watches, %zu watch responses\n",
              argv[1], history->operations.size(), history->lease_operations.size(),
              history->watches.size(), history->watch_responses.size());
  const CheckReport lin = cppetcd::robustness::CheckLinearizability(*history);
  const CheckReport watch = cppetcd::robustness::CheckWatches(*history);
  const CheckReport lease = cppetcd::robustness::CheckLeases(*history);
  Print("linearizability", lin);
  Print("watch", watch);
  Print("lease", lease);
  Verdict overall = Verdict::kOk;
  for (const CheckReport* r : {&lin, &watch, &lease}) {
    if (r->verdict == Verdict::kViolation) overall = Verdict::kViolation;
    if (r->verdict == Verdict::kInconclusive && overall == Verdict::kOk) overall = Verdict::kInconclusive;
  }
  std::printf("verdict: %s\n", VerdictName(overall));
  switch (overall) {
    case Verdict::kOk: return 0;
    case Verdict::kViolation: return 1;
    case Verdict::kInconclusive: return 2;
  }
  return 2;
}
