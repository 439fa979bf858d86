// Scripted scenarios: tests/testdata/raft/*.txt hold commands ("> cmd") each
// followed by the output it must produce. Regenerate the expected output with
// CPPETCD_RAFT_REWRITE=1 and review the diff like code.
//
// Commands (every command stabilizes the cluster afterwards):
//   cluster <ids...> [prevote] [checkquorum] [bootstrap]
//   campaign <id> | propose <id> <data> | read <id> <ctx> | transfer <id> <to>
//   tick <id> <n> | tickall <n> | isolate <id> | cut <a> <b> | recover
//   restart <id> | addnode <id> | confchange <id> <v|l|r><node>... [joint|explicit|leave]
//   status            one line per node
//   reads <id>        ReadStates received by a node
//   applied <id>      data of the normal entries a node applied
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "raft_core.h"
#include "test_cluster.h"

#ifndef CPPETCD_RAFT_TESTDATA_DIR
#define CPPETCD_RAFT_TESTDATA_DIR "tests/testdata/raft"
#endif

namespace cppetcd::raft {
namespace {

using testing::TestCluster;

class Interpreter {
 public:
  std::string Run(const std::string& line) {
    std::vector<std::string> a = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (a.empty()) return "";
    const std::string& cmd = a[0];
    auto id = [&](size_t i) -> uint64_t { return i < a.size() ? std::stoull(a[i]) : 0; };
    std::string out;
    if (cmd == "cluster") {
      std::vector<uint64_t> ids;
      bool pre_vote = false, check_quorum = false, bootstrap = false;
      for (size_t i = 1; i < a.size(); ++i) {
        if (a[i] == "prevote") {
          pre_vote = true;
        } else if (a[i] == "checkquorum") {
          check_quorum = true;
        } else if (a[i] == "bootstrap") {
          bootstrap = true;
        } else {
          ids.push_back(std::stoull(a[i]));
        }
      }
      c_ = std::make_unique<TestCluster>(
          ids,
          [=](Config* cfg) {
            cfg->pre_vote = pre_vote;
            cfg->check_quorum = check_quorum;
          },
          std::vector<uint64_t>{}, bootstrap);
      return "";
    }
    if (!c_) return "error: no cluster\n";
    TestCluster& c = *c_;
    if (cmd == "campaign") {
      absl::Status s = c[id(1)].node->Campaign();
      if (!s.ok()) out = absl::StrCat("error: ", s.message(), "\n");
    } else if (cmd == "propose") {
      absl::Status s = c[id(1)].node->Propose(a.size() > 2 ? a[2] : "");
      if (!s.ok()) out = absl::StrCat("error: ", s.message(), "\n");
    } else if (cmd == "read") {
      c[id(1)].node->ReadIndex(a.size() > 2 ? a[2] : "");
    } else if (cmd == "transfer") {
      c[id(1)].node->TransferLeader(id(2));
    } else if (cmd == "tick") {
      c.Tick(id(1), static_cast<int>(id(2)));
    } else if (cmd == "tickall") {
      c.TickAll(static_cast<int>(id(1)));
    } else if (cmd == "isolate") {
      c.Isolate(id(1));
    } else if (cmd == "cut") {
      c.Cut(id(1), id(2));
    } else if (cmd == "recover") {
      c.Recover();
    } else if (cmd == "restart") {
      c.Restart(id(1));
    } else if (cmd == "addnode") {
      c.AddEmptyNode(id(1));
    } else if (cmd == "confchange") {
      raftpb::ConfChangeV2 cc;
      for (size_t i = 2; i < a.size(); ++i) {
        if (a[i] == "joint") {
          cc.set_transition(raftpb::ConfChangeTransitionJointImplicit);
        } else if (a[i] == "explicit") {
          cc.set_transition(raftpb::ConfChangeTransitionJointExplicit);
        } else if (a[i] == "leave") {
          // empty change
        } else {
          auto* ch = cc.add_changes();
          ch->set_node_id(std::stoull(a[i].substr(1)));
          ch->set_type(a[i][0] == 'v'   ? raftpb::ConfChangeAddNode
                       : a[i][0] == 'l' ? raftpb::ConfChangeAddLearnerNode
                                        : raftpb::ConfChangeRemoveNode);
        }
      }
      absl::Status s = c[id(1)].node->ProposeConfChange(cc);
      if (!s.ok()) out = absl::StrCat("error: ", s.message(), "\n");
    } else if (cmd == "status") {
      c.Stabilize();
      for (auto& [nid, n] : c.nodes_) {
        Raft* r = n.raft();
        absl::StrAppend(&out, nid, ": ", StateTypeName(r->state()), " term=", r->term(), " lead=", r->lead(),
                        " commit=", r->log().committed(), " last=", r->log().LastIndex(),
                        " conf=", r->tracker().config.Describe(), "\n");
      }
      return out;
    } else if (cmd == "reads") {
      for (const auto& rs : c[id(1)].reads) absl::StrAppend(&out, rs.request_ctx, "@", rs.index, "\n");
      if (c[id(1)].reads.empty()) out = "(none)\n";
      return out;
    } else if (cmd == "applied") {
      std::vector<std::string> data;
      for (const auto& e : c[id(1)].applied) {
        if (e.type() == raftpb::EntryNormal && !e.data().empty()) data.push_back(e.data());
      }
      return absl::StrCat(data.empty() ? "(none)" : absl::StrJoin(data, " "), "\n");
    } else {
      return absl::StrCat("error: unknown command ", cmd, "\n");
    }
    c.Stabilize();
    return out;
  }

 private:
  std::unique_ptr<TestCluster> c_;
};

TEST(ScenarioTest, ScriptsProduceExpectedOutput) {
  namespace fs = std::filesystem;
  const bool rewrite = std::getenv("CPPETCD_RAFT_REWRITE") != nullptr;
  int files = 0;
  for (const auto& entry : fs::directory_iterator(CPPETCD_RAFT_TESTDATA_DIR)) {
    if (entry.path().extension() != ".txt") continue;
    ++files;
    std::ifstream in(entry.path());
    std::string line, expected, actual, rewritten;
    Interpreter interp;
    while (std::getline(in, line)) {
      if (line.rfind("> ", 0) == 0) {
        std::string out = interp.Run(line.substr(2));
        actual += line + "\n" + out;
        rewritten += line + "\n" + out;
        expected += line + "\n";
      } else if (line.empty() || line[0] == '#') {
        actual += line + "\n";
        rewritten += line + "\n";
        expected += line + "\n";
      } else {
        expected += line + "\n";
      }
    }
    if (rewrite) {
      std::ofstream(entry.path()) << rewritten;
    } else {
      EXPECT_EQ(actual, expected) << entry.path() << " (rerun with CPPETCD_RAFT_REWRITE=1 to regenerate)";
    }
  }
  EXPECT_GT(files, 0);
}

}  // namespace
}  // namespace cppetcd::raft
