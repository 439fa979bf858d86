// Deterministic simulation of a Raft cluster (cppetcd::raft) over a simulated
// network and clock. Everything random comes from one seed, so a failing
// scenario replays exactly with the same seed and options.
//
// Faults: message drop, delay, duplication, reordering, partitions and heal,
// crashes (unsynced state lost: a node's RawNode is discarded; only what it
// persisted from Ready before Advance survives) and restarts, log compaction
// with snapshots. Workload: proposals, ReadIndex, conf changes (voters,
// learners, promotions, joint consensus) and leader transfers.
//
// Checked after every step: at most one leader per term (§5.2); log matching
// (§5.3); leader completeness (§5.4); state machine safety (§5.4.3: no two
// nodes apply different entries at one index); commit and applied never go
// back; linearizable ReadIndex (a returned index >= every index committed
// before the request). At the end, with the network healed and every node
// up: every committed entry is applied on all live members.
#ifndef CPPETCD_TESTS_SIM_SIMULATOR_H_
#define CPPETCD_TESTS_SIM_SIMULATOR_H_

#include <cstdint>
#include <string>
#include <vector>

namespace cppetcd::raft::sim {

struct Options {
  int nodes = 3;          // initial voters: 1, 3, 5 or 7
  uint64_t seed = 1;
  int steps = 500;        // random steps before the healing phase
  bool verbose = false;   // keep the full trace (else the last lines)
  bool conf_changes = true;
};

struct Result {
  bool ok = true;
  std::string error;               // first broken invariant
  std::vector<std::string> trace;  // events, oldest first
  // Counters for the report.
  int elections = 0;
  uint64_t committed = 0;
  int reads_answered = 0;
  int conf_changes_applied = 0;
  int snapshots_applied = 0;
  int crashes = 0;
};

Result RunScenario(const Options& opts);

}  // namespace cppetcd::raft::sim

#endif  // CPPETCD_TESTS_SIM_SIMULATOR_H_
