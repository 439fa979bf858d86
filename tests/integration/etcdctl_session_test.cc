// etcdctl sessions taken from operators' runbooks (tests/../seeds): each test
// runs the real etcdctl 3.4 against a fresh single-member server and asserts
// the exact stdout/stderr that etcdctl prints for etcd 3.4.23 (ids, timings
// and client log lines normalised). Every expectation here was first checked
// against /usr/bin/etcd (CPPETCD_TEST_SERVER=/usr/bin/etcd).
#include <filesystem>
#include <future>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "nlohmann/json.hpp"

namespace cppetcd::integration {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

class EtcdctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CPPETCD_REQUIRE_SERVER();
    ServerProcess::Options o;
    o.data_dir = tmp_.path() + "/data";
    auto s = ServerProcess::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }

  CommandResult Ctl(const std::vector<std::string>& args, const std::string& stdin_data = "") {
    return Etcdctl(server_->ClientEndpoint(), args, stdin_data);
  }

  // Runs etcdctl and expects exit 0, exactly `out` on stdout and nothing but
  // client log lines on stderr.
  void ExpectOut(const std::vector<std::string>& args, const std::string& out,
                 const std::string& stdin_data = "") {
    CommandResult r = Ctl(args, stdin_data);
    EXPECT_EQ(r.exit_code, 0) << Describe(args, r);
    EXPECT_EQ(r.out, out) << Describe(args, r);
    EXPECT_EQ(StripClientLogLines(r.err), "") << Describe(args, r);
  }

  // Runs etcdctl and expects `exit_code`, empty stdout and exactly `err` on
  // stderr once client log lines are removed.
  void ExpectErr(const std::vector<std::string>& args, const std::string& err, int exit_code = 1,
                 const std::string& stdin_data = "") {
    CommandResult r = Ctl(args, stdin_data);
    EXPECT_EQ(r.exit_code, exit_code) << Describe(args, r);
    EXPECT_EQ(r.out, "") << Describe(args, r);
    EXPECT_EQ(StripClientLogLines(r.err), err) << Describe(args, r);
  }

  static std::string Describe(const std::vector<std::string>& args, const CommandResult& r) {
    return absl::StrCat("etcdctl ", absl::StrJoin(args, " "), "\nexit ", r.exit_code,
                        " signal ", r.term_signal, r.timed_out ? " (timed out)" : "",
                        "\n--- stdout ---\n", r.out, "\n--- stderr ---\n", r.err);
  }

  // The store revision, from `get -w json` on a missing key.
  int64_t CurrentRevision() {
    CommandResult r = Ctl({"get", "cppetcd-no-such-key", "-w", "json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    if (j.is_discarded()) {
      ADD_FAILURE() << "not JSON: " << r.out;
      return -1;
    }
    return j["header"]["revision"].get<int64_t>();
  }

  // Grants a lease with `ttl` seconds and returns its id in hex as printed.
  std::string GrantLease(int ttl) {
    CommandResult r = Ctl({"lease", "grant", std::to_string(ttl)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::smatch m;
    static const std::regex kGranted("^lease ([0-9a-f]{16}) granted with TTL\\((\\d+)s\\)\n$");
    if (!std::regex_match(r.out, m, kGranted)) {
      ADD_FAILURE() << "unexpected lease grant output: " << r.out;
      return "";
    }
    EXPECT_EQ(m[2].str(), std::to_string(ttl));
    return m[1].str();
  }

  TempDir tmp_;
  std::unique_ptr<ServerProcess> server_;
};

// Table output (-w table): every line has the same width, borders are
// +---+---+, and the cells are returned trimmed, row by row (borders dropped).
std::vector<std::vector<std::string>> ParseTable(const std::string& out) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> lines = SplitLines(out);
  if (lines.empty()) {
    ADD_FAILURE() << "empty table";
    return rows;
  }
  static const std::regex kBorder("^\\+(-+\\+)+$");
  for (const auto& line : lines) {
    EXPECT_EQ(line.size(), lines[0].size()) << "ragged table:\n" << out;
    if (line[0] == '+') {
      EXPECT_TRUE(std::regex_match(line, kBorder)) << line;
      continue;
    }
    EXPECT_EQ(line.front(), '|') << line;
    EXPECT_EQ(line.back(), '|') << line;
    std::vector<std::string> cells = absl::StrSplit(line.substr(1, line.size() - 2), '|');
    for (auto& c : cells) {
      EXPECT_EQ(c.front(), ' ') << line;
      EXPECT_EQ(c.back(), ' ') << line;
      c = std::string(absl::StripAsciiWhitespace(c));
    }
    rows.push_back(std::move(cells));
  }
  return rows;
}

// Seed session: put, get, overwrite, delete.
TEST_F(EtcdctlTest, PutGetOverwriteDelete) {
  ExpectOut({"put", "/name", "tom"}, "OK\n");
  ExpectOut({"get", "/name"}, "/name\ntom\n");
  ExpectOut({"put", "/name", "curry"}, "OK\n");
  ExpectOut({"get", "/name"}, "/name\ncurry\n");
  ExpectOut({"del", "/name"}, "1\n");
  ExpectOut({"get", "/name"}, "");
  ExpectOut({"del", "/name"}, "0\n");
}

TEST_F(EtcdctlTest, PutPrevKvAndSerializableGet) {
  ExpectOut({"put", "/k", "v1"}, "OK\n");
  ExpectOut({"put", "/k", "v2", "--prev-kv"}, "OK\n/k\nv1\n");
  ExpectOut({"get", "/k", "--consistency", "s"}, "/k\nv2\n");
  ExpectOut({"put", "/k2", "x"}, "OK\n");
  ExpectOut({"del", "/k", "--from-key"}, "2\n");
  ExpectOut({"get", "", "--from-key"}, "");
}

TEST_F(EtcdctlTest, ValuesWithSpacesAndEmptyValue) {
  ExpectOut({"put", "/data", "data v1"}, "OK\n");
  ExpectOut({"get", "/data"}, "/data\ndata v1\n");
  ExpectOut({"put", "/empty", ""}, "OK\n");
  ExpectOut({"get", "/empty"}, "/empty\n\n");
  ExpectOut({"get", "/data", "--print-value-only"}, "data v1\n");
}

TEST_F(EtcdctlTest, PutEmptyKeyIsRejected) {
  ExpectErr({"put", "", "x"}, "Error: etcdserver: key is not provided\n");
}

// Seed session: list every key under "/" (Kubernetes' /registry layout).
TEST_F(EtcdctlTest, GetPrefixKeysOnly) {
  ExpectOut({"put", "/registry/pods/kube-system/calico-node-57htk", "p"}, "OK\n");
  ExpectOut({"put", "/registry/namespaces/default", "n1"}, "OK\n");
  ExpectOut({"put", "/registry/namespaces/kube-system", "n2"}, "OK\n");
  ExpectOut({"put", "/calico/ipam/v2/config", "c"}, "OK\n");
  ExpectOut({"put", "other", "o"}, "OK\n");
  ExpectOut({"get", "/", "--prefix", "--keys-only"},
            "/calico/ipam/v2/config\n\n"
            "/registry/namespaces/default\n\n"
            "/registry/namespaces/kube-system\n\n"
            "/registry/pods/kube-system/calico-node-57htk\n\n");
  ExpectOut({"get", "/registry/namespaces", "--prefix", "--keys-only"},
            "/registry/namespaces/default\n\n/registry/namespaces/kube-system\n\n");
  ExpectOut({"get", "/registry/namespaces", "--prefix"},
            "/registry/namespaces/default\nn1\n/registry/namespaces/kube-system\nn2\n");
}

TEST_F(EtcdctlTest, GetPrefixLimitAndSort) {
  for (const char* k : {"/a", "/b", "/c", "/d"}) {
    ExpectOut({"put", k, std::string("v") + k}, "OK\n");
  }
  ExpectOut({"get", "/", "--prefix", "--limit", "2"}, "/a\nv/a\n/b\nv/b\n");
  ExpectOut({"get", "/", "--prefix", "--limit", "2", "--sort-by", "KEY", "--order", "DESCEND"},
            "/d\nv/d\n/c\nv/c\n");
  ExpectOut({"get", "/b", "/d"}, "/b\nv/b\n/c\nv/c\n");
  ExpectOut({"get", "/c", "--from-key", "--keys-only"}, "/c\n\n/d\n\n");
  CommandResult r = Ctl({"get", "/", "--prefix", "--limit", "2", "-w", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["count"], 4);
  EXPECT_EQ(j["more"], true);
  EXPECT_EQ(j["kvs"].size(), 2u);
}

TEST_F(EtcdctlTest, GetAtRevision) {
  const int64_t base = CurrentRevision();
  ExpectOut({"put", "foo", "bar1"}, "OK\n");
  ExpectOut({"put", "foo", "bar2"}, "OK\n");
  ExpectOut({"put", "foo", "bar3"}, "OK\n");
  ExpectOut({"get", "foo", "--rev", std::to_string(base)}, "");
  ExpectOut({"get", "foo", "--rev", std::to_string(base + 1)}, "foo\nbar1\n");
  ExpectOut({"get", "foo", "--rev", std::to_string(base + 2)}, "foo\nbar2\n");
  ExpectOut({"get", "foo"}, "foo\nbar3\n");
  ExpectErr({"get", "foo", "--rev", std::to_string(base + 100)},
            "Error: etcdserver: mvcc: required revision is a future revision\n");
}

// Seed session: `get -w json` (e.g. /registry/namespaces/kube-system).
TEST_F(EtcdctlTest, GetJsonFields) {
  const int64_t base = CurrentRevision();
  ExpectOut({"put", "/registry/namespaces/kube-system", "ns"}, "OK\n");
  ExpectOut({"put", "/registry/namespaces/kube-system", "ns2"}, "OK\n");
  CommandResult r = Ctl({"get", "/registry/namespaces/kube-system", "-w", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  std::set<std::string> top;
  for (auto& [k, v] : j.items()) top.insert(k);
  EXPECT_EQ(top, (std::set<std::string>{"header", "kvs", "count"})) << r.out;
  std::set<std::string> header;
  for (auto& [k, v] : j["header"].items()) header.insert(k);
  EXPECT_EQ(header, (std::set<std::string>{"cluster_id", "member_id", "revision", "raft_term"}));
  EXPECT_EQ(j["header"]["revision"], base + 2);
  EXPECT_EQ(j["count"], 1);
  ASSERT_EQ(j["kvs"].size(), 1u);
  const auto& kv = j["kvs"][0];
  std::set<std::string> kv_fields;
  for (auto& [k, v] : kv.items()) kv_fields.insert(k);
  EXPECT_EQ(kv_fields, (std::set<std::string>{"key", "create_revision", "mod_revision", "version",
                                              "value"}));
  EXPECT_EQ(kv["key"], "L3JlZ2lzdHJ5L25hbWVzcGFjZXMva3ViZS1zeXN0ZW0=");  // base64
  EXPECT_EQ(kv["value"], "bnMy");                                        // "ns2"
  EXPECT_EQ(kv["create_revision"], base + 1);
  EXPECT_EQ(kv["mod_revision"], base + 2);
  EXPECT_EQ(kv["version"], 2);

  r = Ctl({"put", "k2", "v", "-w", "json"});
  ASSERT_EQ(r.exit_code, 0);
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["header"]["revision"], base + 3);
  EXPECT_FALSE(j.contains("prev_kv"));
  r = Ctl({"del", "k2", "-w", "json"});
  ASSERT_EQ(r.exit_code, 0);
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["header"]["revision"], base + 4);
  EXPECT_EQ(j["deleted"], 1);
}

// Seed session: watch a key in one terminal while another writes it.
TEST_F(EtcdctlTest, WatchSeesPutsAndDelete) {
  auto w = StartEtcdctl(server_->ClientEndpoint(), {"watch", "--prefix", "/data"}, tmp_.path());
  ASSERT_TRUE(w.ok()) << w.status();
  // The watch is registered at some unknown moment: write a sentinel until
  // it shows up, then run the session.
  bool seen = false;
  for (int i = 0; i < 50 && !seen; ++i) {
    ExpectOut({"put", "/data/sentinel", std::to_string(i)}, "OK\n");
    seen = (*w)->WaitForStdout([](const std::string& s) { return !s.empty(); },
                               std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(seen) << (*w)->Stderr();
  ASSERT_TRUE((*w)->WaitForStdout(
      [](const std::string& s) { return s.find("/data/sentinel\n") != std::string::npos &&
                                        s.back() == '\n' && SplitLines(s).size() % 3 == 0; },
      std::chrono::seconds(5)));
  const std::string before = (*w)->Stdout();
  ExpectOut({"put", "/data", "data v1"}, "OK\n");
  ExpectOut({"put", "/data", "data v2"}, "OK\n");
  ExpectOut({"del", "/data"}, "1\n");
  const std::string want = "PUT\n/data\ndata v1\nPUT\n/data\ndata v2\nDELETE\n/data\n\n";
  EXPECT_TRUE((*w)->WaitForStdout(
      [&](const std::string& s) { return s.size() >= before.size() + want.size(); },
      std::chrono::seconds(10)));
  std::string out = (*w)->Stdout();
  ASSERT_GE(out.size(), before.size());
  EXPECT_EQ(out.substr(before.size()), want) << "whole watch output:\n" << out;
  EXPECT_EQ(StripClientLogLines((*w)->Stderr()), "");
}

TEST_F(EtcdctlTest, WatchFromRevisionCatchesUp) {
  const int64_t base = CurrentRevision();
  ExpectOut({"put", "k", "v1"}, "OK\n");
  ExpectOut({"put", "k", "v2"}, "OK\n");
  ExpectOut({"del", "k"}, "1\n");
  ExpectOut({"put", "k", "v3"}, "OK\n");
  auto w = StartEtcdctl(server_->ClientEndpoint(),
                        {"watch", "k", "--rev", std::to_string(base + 2)}, tmp_.path());
  ASSERT_TRUE(w.ok());
  const std::string want = "PUT\nk\nv2\nDELETE\nk\n\nPUT\nk\nv3\n";
  EXPECT_TRUE((*w)->WaitForStdout([&](const std::string& s) { return s.size() >= want.size(); },
                                  std::chrono::seconds(10)));
  EXPECT_EQ((*w)->Stdout(), want);

  auto p = StartEtcdctl(server_->ClientEndpoint(),
                        {"watch", "k", "--prev-kv", "--rev", std::to_string(base + 2)},
                        tmp_.path());
  ASSERT_TRUE(p.ok());
  const std::string want_prev = "PUT\nk\nv1\nk\nv2\nDELETE\nk\nv2\nk\n\nPUT\nk\nv3\n";
  EXPECT_TRUE((*p)->WaitForStdout(
      [&](const std::string& s) { return s.size() >= want_prev.size(); },
      std::chrono::seconds(10)));
  EXPECT_EQ((*p)->Stdout(), want_prev);
}

TEST_F(EtcdctlTest, WatchBelowCompactionIsCanceled) {
  ExpectOut({"put", "k", "v1"}, "OK\n");
  ExpectOut({"put", "k", "v2"}, "OK\n");
  const int64_t rev = CurrentRevision();
  ExpectOut({"compaction", std::to_string(rev)}, absl::StrCat("compacted revision ", rev, "\n"));
  CommandResult r = RunCommand({EtcdctlBinary(), "--endpoints", server_->ClientEndpoint(),
                                "watch", "k", "--rev", "2"},
                               "", {"ETCDCTL_API=3"}, std::chrono::seconds(10));
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(StripClientLogLines(r.err),
            "watch was canceled (etcdserver: mvcc: required revision has been compacted)\n"
            "Error: watch is canceled by the server\n");
}

TEST_F(EtcdctlTest, LeaseSession) {
  const std::string id = GrantLease(60);
  ASSERT_FALSE(id.empty());
  ExpectOut({"put", "--lease", id, "/l1", "v"}, "OK\n");
  ExpectOut({"put", "--lease=" + id, "/l2", "w"}, "OK\n");

  CommandResult r = Ctl({"lease", "timetolive", "--keys", id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_match(
      r.out, m,
      std::regex("^lease ([0-9a-f]{16}) granted with TTL\\(60s\\), remaining\\((\\d+)s\\), "
                 "attached keys\\(\\[(/l1 /l2|/l2 /l1)\\]\\)\n$")))
      << r.out;
  EXPECT_EQ(m[1].str(), id);
  EXPECT_GE(std::stoi(m[2].str()), 50);
  EXPECT_LE(std::stoi(m[2].str()), 60);

  r = Ctl({"lease", "timetolive", id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::regex_match(
      r.out, std::regex("^lease " + id + " granted with TTL\\(60s\\), remaining\\(\\d+s\\)\n$")))
      << r.out;

  ExpectOut({"lease", "keep-alive", "--once", id},
            absl::StrCat("lease ", id, " keepalived with TTL(60)\n"));

  const std::string id2 = GrantLease(120);
  r = Ctl({"lease", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> lines = SplitLines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_EQ(lines[0], "found 2 leases");
  EXPECT_EQ(std::set<std::string>(lines.begin() + 1, lines.end()),
            (std::set<std::string>{id, id2}));

  ExpectOut({"lease", "revoke", id}, absl::StrCat("lease ", id, " revoked\n"));
  ExpectOut({"get", "/l", "--prefix"}, "");
  ExpectOut({"lease", "timetolive", id}, absl::StrCat("lease ", id, " already expired\n"));
  ExpectOut({"lease", "list"}, absl::StrCat("found 1 leases\n", id2, "\n"));
}

TEST_F(EtcdctlTest, LeaseBelowMinimumTtlIsRaised) {
  CommandResult r = Ctl({"lease", "grant", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // etcd's minimum TTL with the default 1 s election timeout is 2 s
  // (ceil(1.5 * election timeout)).
  EXPECT_TRUE(std::regex_match(r.out, std::regex("^lease [0-9a-f]{16} granted with TTL\\(2s\\)\n$")))
      << r.out;
}

TEST_F(EtcdctlTest, LeaseErrors) {
  ExpectErr({"put", "--lease=1234", "x", "y"}, "Error: etcdserver: requested lease not found\n");
  ExpectErr({"lease", "revoke", "1234"},
            "Error: failed to revoke lease (etcdserver: requested lease not found)\n");
  ExpectOut({"lease", "timetolive", "1234"}, "lease 0000000000001234 already expired\n");
}

// `etcdctl txn` reads compares, success ops and failure ops from stdin,
// each block ended by an empty line.
TEST_F(EtcdctlTest, TxnFromStdin) {
  ExpectOut({"put", "/a", "1"}, "OK\n");
  ExpectOut({"put", "/b", "2"}, "OK\n");
  ExpectOut({"txn"}, "SUCCESS\n\nOK\n\n/b\n2\n",
            "value(\"/a\") = \"1\"\n\nput /a 10\nget /b\n\nput /a 99\n\n");
  ExpectOut({"get", "/a"}, "/a\n10\n");
  ExpectOut({"txn"}, "FAILURE\n\n/a\n10\n",
            "mod(\"/a\") > \"100\"\n\nput /x 1\n\nget /a\n\n");
  ExpectOut({"get", "/x"}, "");
  ExpectOut({"txn"}, "SUCCESS\n\n1\n\nOK\n",
            "version(\"/a\") = \"2\"\ncreate(\"/b\") > \"0\"\n\ndel /b\nput /c 3\n\n\n");
  const int64_t rev = CurrentRevision();
  CommandResult r = Ctl({"txn", "-w", "json"}, "create(\"nx\") = \"0\"\n\nput nx 1\n\n\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["succeeded"], true);
  EXPECT_EQ(j["header"]["revision"], rev + 1);
  EXPECT_EQ(j["responses"][0]["Response"]["ResponsePut"]["header"]["revision"], rev + 1)
      << r.out;
  ExpectErr({"txn"}, "Error: etcdserver: duplicate key given in txn request\n", 1,
            "\n\nput k 1\nput k 2\n\n\n");
}

// Seed session: compact to the current revision, then reads below it fail.
TEST_F(EtcdctlTest, CompactionThenOldRevision) {
  const int64_t base = CurrentRevision();
  ExpectOut({"put", "foo", "1"}, "OK\n");
  ExpectOut({"put", "foo", "2"}, "OK\n");
  ExpectOut({"put", "foo", "3"}, "OK\n");
  ExpectOut({"compaction", std::to_string(base + 2)},
            absl::StrCat("compacted revision ", base + 2, "\n"));
  ExpectErr({"get", "foo", "--rev", std::to_string(base + 1)},
            "Error: etcdserver: mvcc: required revision has been compacted\n");
  ExpectOut({"get", "foo", "--rev", std::to_string(base + 2)}, "foo\n2\n");
  ExpectOut({"get", "foo"}, "foo\n3\n");
  ExpectErr({"compaction", std::to_string(base + 1)},
            "Error: etcdserver: mvcc: required revision has been compacted\n");
  ExpectErr({"compaction", std::to_string(base + 100)},
            "Error: etcdserver: mvcc: required revision is a future revision\n");
  // The seeds' maintenance script: revision from `endpoint status -w json`,
  // then `compact` (etcdctl accepts the prefix).
  CommandResult r = Ctl({"endpoint", "status", "-w", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  const int64_t rev = j[0]["Status"]["header"]["revision"].get<int64_t>();
  EXPECT_EQ(rev, base + 3);
  ExpectOut({"compact", std::to_string(rev)}, absl::StrCat("compacted revision ", rev, "\n"));
}

TEST_F(EtcdctlTest, DeletePrefix) {
  for (const char* k : {"/registry/events/default/a.1", "/registry/events/default/a.2",
                        "/registry/events/kube-system/b.1", "/registry/pods/x"}) {
    ExpectOut({"put", k, "e"}, "OK\n");
  }
  ExpectOut({"del", "/registry/events/", "--prefix"}, "3\n");
  ExpectOut({"get", "/registry", "--prefix", "--keys-only"}, "/registry/pods/x\n\n");
  ExpectOut({"del", "/registry/events/", "--prefix"}, "0\n");
  ExpectOut({"put", "/p", "old"}, "OK\n");
  ExpectOut({"del", "/p", "--prev-kv"}, "1\n/p\nold\n");
}

// Seed sessions: `endpoint health`, `endpoint status -w table`,
// `member list -w table`, `alarm list`, `defrag`.
TEST_F(EtcdctlTest, EndpointHealthAndStatus) {
  const std::string ep = server_->ClientEndpoint();
  CommandResult r = Ctl({"endpoint", "health"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "");
  // etcdctl 3.4 prints the health line on stderr.
  EXPECT_TRUE(std::regex_match(
      StripClientLogLines(r.err),
      std::regex("^" + std::regex_replace(ep, std::regex("\\."), "\\.") +
                 " is healthy: successfully committed proposal: took = [0-9.]+(ns|µs|ms|s)\n$")))
      << r.err;

  r = Ctl({"endpoint", "status", "-w", "table"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto rows = ParseTable(r.out);
  ASSERT_EQ(rows.size(), 2u) << r.out;
  EXPECT_THAT(rows[0], ElementsAre("ENDPOINT", "ID", "VERSION", "DB SIZE", "IS LEADER",
                                   "IS LEARNER", "RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX",
                                   "ERRORS"));
  ASSERT_EQ(rows[1].size(), 10u);
  EXPECT_EQ(rows[1][0], ep);
  EXPECT_THAT(rows[1][1], MatchesRegex("[0-9a-f]+"));
  EXPECT_EQ(rows[1][2], "3.4.23");
  EXPECT_THAT(rows[1][3], MatchesRegex("[0-9.]+ [kMG]?B"));
  EXPECT_EQ(rows[1][4], "true");
  EXPECT_EQ(rows[1][5], "false");
  EXPECT_THAT(rows[1][6], MatchesRegex("[1-9][0-9]*"));
  EXPECT_THAT(rows[1][7], MatchesRegex("[1-9][0-9]*"));
  EXPECT_EQ(rows[1][8], rows[1][7]);
  EXPECT_EQ(rows[1][9], "");

  r = Ctl({"member", "list", "-w", "table"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  rows = ParseTable(r.out);
  ASSERT_EQ(rows.size(), 2u) << r.out;
  EXPECT_THAT(rows[0],
              ElementsAre("ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"));
  EXPECT_THAT(rows[1],
              ElementsAre(MatchesRegex("[0-9a-f]+"), "started", "integ",
                          absl::StrCat("http://127.0.0.1:", server_->peer_port()),
                          absl::StrCat("http://", ep), "false"));

  r = Ctl({"member", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::regex_match(
      r.out, std::regex(absl::StrCat("^[0-9a-f]+, started, integ, http://127\\.0\\.0\\.1:",
                                     server_->peer_port(), ", http://",
                                     std::regex_replace(ep, std::regex("\\."), "\\."),
                                     ", false\n$"))))
      << r.out;

  // The member id is the same in `member list` and `endpoint status`.
  CommandResult st = Ctl({"endpoint", "status"});
  ASSERT_EQ(st.exit_code, 0) << st.err;
  EXPECT_EQ(SplitLines(st.out).size(), 1u) << st.out;
  EXPECT_THAT(st.out, HasSubstr(", " + r.out.substr(0, r.out.find(',')) + ", 3.4.23, "));

  ExpectOut({"alarm", "list"}, "");
  ExpectOut({"defrag"}, absl::StrCat("Finished defragmenting etcd member[", ep, "]\n"));
}

// etcd 3.4's cluster API fills the header with cluster id, member id and
// raft term but no revision: `member list -w json` has no "revision" key,
// while a KV answer of the same server has one.
TEST_F(EtcdctlTest, MemberListHeaderHasNoRevision) {
  ExpectOut({"put", "k", "v"}, "OK\n");
  CommandResult r = Ctl({"member", "list", "-w", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(j.is_object()) << r.out;
  ASSERT_TRUE(j.contains("header")) << r.out;
  EXPECT_FALSE(j["header"].contains("revision")) << r.out;
  EXPECT_TRUE(j["header"].contains("cluster_id")) << r.out;
  EXPECT_TRUE(j["header"].contains("member_id")) << r.out;
  EXPECT_TRUE(j["header"].contains("raft_term")) << r.out;

  r = Ctl({"get", "k", "-w", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j["header"]["revision"], 2) << r.out;

  // The same through the gRPC stub.
  auto stub = etcdserverpb::Cluster::NewStub(server_->NewChannel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  etcdserverpb::MemberListResponse resp;
  grpc::Status st = stub->MemberList(&ctx, etcdserverpb::MemberListRequest(), &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.header().revision(), 0);
  EXPECT_NE(resp.header().cluster_id(), 0u);
  EXPECT_NE(resp.header().member_id(), 0u);
  EXPECT_GT(resp.header().raft_term(), 0u);
}

// grpc.health.v1.Health/Check("") through a generic stub (hand-encoded:
// the request is empty, the response is field 1, the status enum). etcd 3.4
// registers the standard health service with "" SERVING (v3rpc/grpc.go).
TEST_F(EtcdctlTest, GrpcHealthCheckIsServing) {
  grpc::GenericStub stub(server_->NewChannel());
  grpc::ByteBuffer request;
  {
    grpc::Slice empty("");
    request = grpc::ByteBuffer(&empty, 1);
  }
  grpc::ByteBuffer reply;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &reply,
                 [&done](grpc::Status st) { done.set_value(std::move(st)); });
  grpc::Status st = done.get_future().get();
  ASSERT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(reply.Dump(&slices).ok());
  std::string body;
  for (const grpc::Slice& s : slices) body.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_EQ(body, std::string("\x08\x01", 2));  // SERVING
}

// Seed session: `snapshot save` on a single endpoint.
TEST_F(EtcdctlTest, SnapshotSave) {
  ExpectOut({"put", "/registry/x", "1"}, "OK\n");
  const std::string path = tmp_.path() + "/etcd.db";
  CommandResult r = Ctl({"snapshot", "save", path});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, absl::StrCat("Snapshot saved at ", path, "\n"));
  EXPECT_EQ(StripClientLogLines(r.err), "");
  std::error_code ec;
  EXPECT_GT(std::filesystem::file_size(path, ec), 0u) << ec.message();
}

}  // namespace
}  // namespace cppetcd::integration
