// raft-sim: runs seeded random Raft cluster scenarios and checks safety and
// liveness invariants (see simulator.h).
//   raft-sim --nodes N --seeds K --steps S [--seed X] [--verbose]
// Runs seeds X..X+K-1 (X defaults to 1). For a failure it prints the seed
// and the event trace. Last line: "<passed> passed, <failed> failed".
// Exit status 1 on any failure.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "simulator.h"

int main(int argc, char** argv) {
  cppetcd::raft::sim::Options opts;
  uint64_t first_seed = 1;
  int seeds = 100;
  bool quiet = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value for %s\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--nodes") {
      opts.nodes = std::atoi(next());
    } else if (a == "--seeds") {
      seeds = std::atoi(next());
    } else if (a == "--steps") {
      opts.steps = std::atoi(next());
    } else if (a == "--seed") {
      first_seed = std::strtoull(next(), nullptr, 10);
    } else if (a == "--verbose") {
      opts.verbose = true;
    } else if (a == "--quiet") {
      quiet = true;
    } else if (a == "--no-conf-changes") {
      opts.conf_changes = false;
    } else {
      std::fprintf(stderr,
                   "usage: raft-sim --nodes N --seeds K --steps S [--seed X] [--verbose] [--quiet] "
                   "[--no-conf-changes]\n");
      return 2;
    }
  }
  if (opts.nodes < 1 || seeds < 0 || opts.steps < 0) {
    std::fprintf(stderr, "invalid arguments\n");
    return 2;
  }
  int passed = 0, failed = 0;
  auto start = std::chrono::steady_clock::now();
  for (int k = 0; k < seeds; ++k) {
    opts.seed = first_seed + static_cast<uint64_t>(k);
    auto res = cppetcd::raft::sim::RunScenario(opts);
    if (res.ok) {
      ++passed;
      if (opts.verbose) {
        for (const auto& line : res.trace) std::printf("%s\n", line.c_str());
      }
      if (!quiet) {
        std::printf("seed %llu ok: committed=%llu elections=%d reads=%d confchanges=%d snapshots=%d crashes=%d\n",
                    static_cast<unsigned long long>(opts.seed), static_cast<unsigned long long>(res.committed),
                    res.elections, res.reads_answered, res.conf_changes_applied, res.snapshots_applied, res.crashes);
      }
    } else {
      ++failed;
      std::printf("FAIL seed %llu (nodes=%d steps=%d): %s\n", static_cast<unsigned long long>(opts.seed), opts.nodes,
                  opts.steps, res.error.c_str());
      size_t from = opts.verbose || res.trace.size() < 400 ? 0 : res.trace.size() - 400;
      for (size_t i = from; i < res.trace.size(); ++i) std::printf("  %s\n", res.trace[i].c_str());
      std::printf("replay: raft-sim --nodes %d --seeds 1 --steps %d --seed %llu --verbose\n", opts.nodes, opts.steps,
                  static_cast<unsigned long long>(opts.seed));
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("raft-sim: nodes=%d steps=%d: %d seeds in %.2f s (%.0f seeds/min)\n", opts.nodes, opts.steps, seeds,
              secs, secs > 0 ? seeds * 60.0 / secs : 0.0);
  std::printf("%d passed, %d failed\n", passed, failed);
  std::fflush(stdout);
  return failed == 0 ? 0 : 1;
}
