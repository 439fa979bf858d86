// Runs the runbooks of docs/operations.md, as written, against real server
// processes (cppetcd, or etcd 3.4 with CPPETCD_TEST_SERVER=/usr/bin/etcd),
// the real etcdctl, openssl and curl.
//
// A runbook is a sequence of ```sh blocks tagged in their info string:
//   ```sh runbook=NAME [host=H ...] [expect="text" | expect='text' ...]
// A block runs once per host= (default: the admin workstation), under bash
// with `set -euo pipefail`, after tests/integration/runbook/sandbox.sh
// (hostname, systemctl, scp stand-ins; see there) and, on the admin host,
// after the `runbook=site` blocks (the site's ETCDCTL_* settings). Each
// expect= text must appear in the block's output (stdout or stderr). Addresses 192.168.1.N and
// paths under /etc, /var and /srv are rewritten into a per-test loopback
// /24 and per-host roots under a temporary directory, so one machine plays
// every host; 127.0.0.1:PORT becomes the host's own loopback address (bare
// 127.0.0.1, as in a certificate's SANs, stays). Each test runs a chain of runbooks on a fresh sandbox and kills
// every server it started, by PID, at the end.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "harness.h"

#ifndef CPPETCD_SOURCE_DIR
#error "CPPETCD_SOURCE_DIR must point at the source tree (docs/operations.md)"
#endif

namespace cppetcd::integration {
namespace {

namespace fs = std::filesystem;

struct Block {
  int line = 0;  // 1-based line of the opening fence in the document
  std::string runbook;
  std::vector<std::string> hosts;    // empty: the admin workstation
  std::vector<std::string> expects;  // texts stdout must contain
  std::string code;
};

// Splits an info string into key=value attributes; values may be quoted
// with double or single quotes (no escapes).
std::multimap<std::string, std::string> ParseAttributes(const std::string& info) {
  std::multimap<std::string, std::string> attrs;
  size_t i = 0;
  while (i < info.size()) {
    while (i < info.size() && info[i] == ' ') ++i;
    size_t eq = info.find('=', i);
    size_t sp = info.find(' ', i);
    if (eq == std::string::npos || (sp != std::string::npos && sp < eq)) {
      i = sp == std::string::npos ? info.size() : sp;  // a bare word: ignored
      continue;
    }
    std::string key = info.substr(i, eq - i);
    std::string value;
    i = eq + 1;
    if (i < info.size() && (info[i] == '"' || info[i] == '\'')) {
      size_t close = info.find(info[i], i + 1);
      if (close == std::string::npos) close = info.size();
      value = info.substr(i + 1, close - i - 1);
      i = close + 1;
    } else {
      size_t end = info.find(' ', i);
      if (end == std::string::npos) end = info.size();
      value = info.substr(i, end - i);
      i = end;
    }
    attrs.emplace(std::move(key), std::move(value));
  }
  return attrs;
}

std::vector<Block> ParseRunbooks(const std::string& path) {
  std::ifstream in(path);
  std::vector<Block> blocks;
  std::string line;
  int n = 0;
  std::optional<Block> open;
  bool in_other_fence = false;
  while (std::getline(in, line)) {
    ++n;
    if (open.has_value()) {
      if (line.rfind("```", 0) == 0) {
        blocks.push_back(*std::move(open));
        open.reset();
      } else {
        open->code += line + "\n";
      }
      continue;
    }
    if (line.rfind("```", 0) != 0) continue;
    if (in_other_fence) {
      in_other_fence = false;
      continue;
    }
    const std::string info = line.substr(3);
    if (info.rfind("sh ", 0) != 0 || info.find("runbook=") == std::string::npos) {
      in_other_fence = true;
      continue;
    }
    Block b;
    b.line = n;
    for (const auto& [k, v] : ParseAttributes(info.substr(3))) {
      if (k == "runbook") b.runbook = v;
      if (k == "host") b.hosts.push_back(v);
      if (k == "expect") b.expects.push_back(v);
    }
    open = std::move(b);
  }
  return blocks;
}

// Rewrites the production addresses and paths of a block into the sandbox.
// `loopback` is the host's stand-in for 127.0.0.1.
std::string Rewrite(const std::string& code, const std::string& net, const std::string& loopback,
                    const std::string& host_root) {
  std::string out =
      absl::StrReplaceAll(code, {{"192.168.1.", net + "."}, {"127.0.0.1:", loopback + ":"}});
  std::string result;
  for (size_t i = 0; i < out.size(); ++i) {
    const bool boundary =
        i == 0 || std::string_view(" \t\n=:\"'(<>,;|").find(out[i - 1]) != std::string_view::npos;
    if (boundary && out[i] == '/') {
      absl::string_view rest(out.data() + i, out.size() - i);
      if (absl::StartsWith(rest, "/etc/") || absl::StartsWith(rest, "/var/") ||
          absl::StartsWith(rest, "/srv/")) {
        result += host_root;
      }
    }
    result += out[i];
  }
  return result;
}

class RunbookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (ServerBinary().empty()) GTEST_SKIP() << "no server binary";
    doc_ = std::string(CPPETCD_SOURCE_DIR) + "/docs/operations.md";
    blocks_ = ParseRunbooks(doc_);
    ASSERT_FALSE(blocks_.empty()) << "no runbook blocks in " << doc_;
    sandbox_ = tmp_.path();
    // A loopback /24 of this run's own: 127.A.B.0 with A, B from the PID
    // and a random draw (127.0.0.0/8 is loopback as a whole on Linux).
    std::mt19937 rng(static_cast<uint32_t>(getpid()) ^
                     static_cast<uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
    net_ = absl::StrCat("127.", 100 + rng() % 100, ".", 1 + rng() % 250);
    // bin/: `cppetcd` is the server under test. With etcd as the server, its
    // `snapshot` subcommands are etcdctl's (as etcd users run them).
    const std::string bin = sandbox_ + "/bin";
    fs::create_directories(bin);
    const std::string server = ServerBinary();
    if (IsReferenceEtcd(server)) {
      std::ofstream w(bin + "/cppetcd");
      w << "#!/bin/bash\nif [ \"${1:-}\" = snapshot ]; then exec " << EtcdctlBinary()
        << " \"$@\"; fi\nexec " << server << " \"$@\"\n";
      w.close();
      fs::permissions(bin + "/cppetcd", fs::perms::owner_all);
    } else {
      fs::create_symlink(server, bin + "/cppetcd");
    }
    const std::string etcdctl = EtcdctlBinary();
    if (etcdctl != "/usr/bin/etcdctl") fs::create_symlink(etcdctl, bin + "/etcdctl");
    path_ = bin + ":/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
  }

  void TearDown() override {
    // Kill every server the runbooks started, by PID.
    if (sandbox_.empty()) return;
    for (const char* host : {"admin", "etcd1", "etcd2", "etcd3", "etcd4"}) {
      std::ifstream in(sandbox_ + "/" + host + "/cppetcd.pid");
      pid_t pid = 0;
      if (in >> pid && pid > 0) {
        kill(pid, SIGKILL);
        // Not our child (started by a finished bash): poll until it is gone.
        for (int i = 0; i < 100 && kill(pid, 0) == 0; ++i) {
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      }
    }
  }

  std::string HostRoot(const std::string& host) const { return sandbox_ + "/" + host; }
  // The host's stand-in for 127.0.0.1: 127.A.B.(100+N) for etcdN, .110 for admin.
  std::string Loopback(const std::string& host) const {
    const int n = absl::StartsWith(host, "etcd") ? std::stoi(host.substr(4)) : 10;
    return absl::StrCat(net_, ".", 100 + n);
  }

  // The last lines of every host's server log, for failure messages.
  std::string LogTails() const {
    std::string out;
    for (const char* host : {"etcd1", "etcd2", "etcd3", "etcd4"}) {
      std::ifstream in(HostRoot(host) + "/cppetcd.log");
      if (!in) continue;
      std::vector<std::string> lines;
      std::string l;
      while (std::getline(in, l)) lines.push_back(l);
      const size_t from = lines.size() > 15 ? lines.size() - 15 : 0;
      absl::StrAppend(&out, "--- ", host, " log tail:\n");
      for (size_t i = from; i < lines.size(); ++i) absl::StrAppend(&out, lines[i], "\n");
    }
    return out;
  }

  // Runs the blocks of `runbooks`, in document order within each runbook,
  // runbook after runbook. Stops at the first failing block.
  void RunRunbooks(const std::vector<std::string>& runbooks) {
    std::string site;
    for (const Block& b : blocks_) {
      if (b.runbook == "site") site += b.code;
    }
    for (const std::string& name : runbooks) {
      int count = 0;
      for (const Block& b : blocks_) {
        if (b.runbook != name) continue;
        ++count;
        std::vector<std::string> hosts = b.hosts;
        if (hosts.empty()) hosts.push_back("admin");
        for (const std::string& host : hosts) {
          RunBlock(b, host, site);
          if (HasFatalFailure() || HasFailure()) return;
        }
      }
      ASSERT_GT(count, 0) << "runbook '" << name << "' has no blocks in " << doc_;
    }
  }

  void RunBlock(const Block& b, const std::string& host, const std::string& site) {
    const std::string root = HostRoot(host);
    // What every Debian host has (the package adds /var/lib/cppetcd).
    for (const char* d : {"/root", "/etc/default", "/etc/systemd/system", "/var/lib/cppetcd",
                          "/var/backups", "/srv"}) {
      fs::create_directories(root + d);
    }
    std::string script = absl::StrCat(
        "set -euo pipefail\n", "source ", CPPETCD_SOURCE_DIR,
        "/tests/integration/runbook/sandbox.sh\n", "cd \"$HOME\"\n",
        host == "admin" ? Rewrite(site, net_, Loopback(host), root) : "",
        Rewrite(b.code, net_, Loopback(host), root));
    const std::string file = absl::StrCat(sandbox_, "/block-", b.line, "-", host, ".sh");
    std::ofstream(file) << script;
    CommandResult r = RunCommand({"/bin/bash", file}, "",
                                 {"SANDBOX=" + sandbox_, "RUNBOOK_HOST=" + host,
                                  "RUNBOOK_NET=" + net_, "HOME=" + root + "/root",
                                  "PATH=" + path_, "ETCDCTL_API=3"},
                                 std::chrono::seconds(150));
    const std::string where = absl::StrCat(doc_, ":", b.line, " (runbook ", b.runbook,
                                           ", host ", host, ")");
    ASSERT_TRUE(r.exit_code == 0 && !r.timed_out)
        << where << " failed: exit " << r.exit_code << (r.timed_out ? " (timed out)" : "")
        << "\n--- script " << file << "\n--- stdout:\n"
        << r.out << "--- stderr:\n"
        << r.err << LogTails();
    for (const std::string& e : b.expects) {
      // etcdctl prints some results (endpoint health) on stderr.
      EXPECT_TRUE(absl::StrContains(r.out, e) || absl::StrContains(r.err, e))
          << where << ": output lacks \"" << e << "\"\n--- stdout:\n"
          << r.out << "--- stderr:\n"
          << r.err;
    }
  }

  TempDir tmp_;
  std::string doc_;
  std::vector<Block> blocks_;
  std::string sandbox_;
  std::string net_;
  std::string path_;
};

TEST(RunbookParseTest, AttributesAndRewrite) {
  auto attrs = ParseAttributes(
      R"(runbook=backup host=etcd1 host=etcd2 expect="is healthy" x expect='"a":"b"')");
  EXPECT_EQ(attrs.count("host"), 2u);
  auto expects = attrs.equal_range("expect");
  ASSERT_EQ(std::distance(expects.first, expects.second), 2);
  EXPECT_EQ(expects.first->second, "is healthy");
  EXPECT_EQ(std::next(expects.first)->second, R"("a":"b")");
  EXPECT_EQ(attrs.find("runbook")->second, "backup");
  EXPECT_EQ(Rewrite("a --data-dir=/var/lib/x root@192.168.1.12:/etc/p /usr/bin/y http://127.0.0.1:1\n",
                    "127.1.2", "127.1.2.111", "/s/h"),
            "a --data-dir=/s/h/var/lib/x root@127.1.2.12:/s/h/etc/p /usr/bin/y http://127.1.2.111:1\n");
}

TEST(RunbookParseTest, EveryRunbookOfTheDocumentIsTested) {
  // The runbooks the tests below run; a runbook added to the document must
  // be added here (and so gets run).
  const std::set<std::string> tested = {"site",        "pki",         "cluster",
                                        "health",      "auth",        "backup",
                                        "restore",     "members",     "force-new-cluster",
                                        "maintenance", "nospace",     "monitoring"};
  std::set<std::string> in_doc;
  for (const Block& b : ParseRunbooks(std::string(CPPETCD_SOURCE_DIR) + "/docs/operations.md")) {
    in_doc.insert(b.runbook);
  }
  for (const std::string& r : in_doc) EXPECT_TRUE(tested.count(r)) << r << " is not tested";
  for (const std::string& r : tested) EXPECT_TRUE(in_doc.count(r)) << r << " is not in the doc";
}

TEST_F(RunbookTest, TlsClusterHealthAndMonitoring) {
  RunRunbooks({"pki", "cluster", "health", "monitoring"});
}

TEST_F(RunbookTest, Auth) { RunRunbooks({"pki", "cluster", "auth"}); }

TEST_F(RunbookTest, BackupAndRestoreWholeCluster) {
  RunRunbooks({"pki", "cluster", "backup", "restore"});
}

TEST_F(RunbookTest, MemberAddRemoveReplace) { RunRunbooks({"pki", "cluster", "members"}); }

TEST_F(RunbookTest, ForceNewCluster) { RunRunbooks({"pki", "cluster", "force-new-cluster"}); }

TEST_F(RunbookTest, CompactionAndDefrag) { RunRunbooks({"pki", "cluster", "maintenance"}); }

TEST_F(RunbookTest, NospaceAlarmRecovery) { RunRunbooks({"pki", "cluster", "nospace"}); }

}  // namespace
}  // namespace cppetcd::integration
