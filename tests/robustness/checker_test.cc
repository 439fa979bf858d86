// Tests of the robustness history checkers and the history file format:
// valid histories pass, planted violations are caught, and a seeded random
// test checks the linearizability checker against an in-test model (valid
// histories pass; one mutated read fails).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "checker.h"
#include "history.h"
#include "history_io.h"

namespace cppetcd::robustness {
namespace {

using ::testing::HasSubstr;

// --- builders ----------------------------------------------------------------

Operation Op(OpKind kind, int64_t id, std::string key, int64_t invoke, int64_t complete) {
  Operation op;
  op.id = id;
  op.client = static_cast<int>(id % 7);
  op.kind = kind;
  op.key = std::move(key);
  op.invoke_ns = invoke;
  op.complete_ns = complete;
  op.outcome = Outcome::kOk;
  return op;
}

Operation Put(int64_t id, std::string key, std::string value, int64_t invoke, int64_t complete,
              int64_t revision) {
  Operation op = Op(OpKind::kPut, id, std::move(key), invoke, complete);
  op.value = std::move(value);
  op.revision = revision;
  return op;
}

KeyValue Kv(std::string key, std::string value, int64_t mod_revision, int64_t lease = 0) {
  KeyValue kv;
  kv.key = std::move(key);
  kv.value = std::move(value);
  kv.mod_revision = mod_revision;
  kv.lease = lease;
  return kv;
}

// A Get that found `value` at `mod_revision` (nullopt value = absent).
Operation Get(int64_t id, std::string key, int64_t invoke, int64_t complete,
              std::optional<std::string> value, int64_t mod_revision, int64_t header) {
  Operation op = Op(OpKind::kGet, id, key, invoke, complete);
  if (value.has_value()) op.found = Kv(key, *value, mod_revision);
  op.revision = header;
  return op;
}

Operation Delete(int64_t id, std::string key, int64_t invoke, int64_t complete, int64_t deleted,
                 int64_t revision) {
  Operation op = Op(OpKind::kDelete, id, std::move(key), invoke, complete);
  op.deleted = deleted;
  op.revision = revision;
  return op;
}

// CAS: if key == expected (nullopt: key absent) then put value.
Operation Cas(int64_t id, std::string key, std::optional<std::string> expected, std::string value,
              int64_t invoke, int64_t complete, bool succeeded, int64_t revision) {
  Operation op = Op(OpKind::kTxnCas, id, std::move(key), invoke, complete);
  op.expect_absent = !expected.has_value();
  op.expected = expected.value_or("");
  op.value = std::move(value);
  op.succeeded = succeeded;
  op.revision = revision;
  return op;
}

Operation Range(int64_t id, std::string key, std::string range_end, int64_t invoke,
                int64_t complete, std::vector<KeyValue> kvs, int64_t header) {
  Operation op = Op(OpKind::kRange, id, std::move(key), invoke, complete);
  op.range_end = std::move(range_end);
  op.kvs = std::move(kvs);
  op.revision = header;
  return op;
}

Operation Unknown(Operation op) {
  op.outcome = Outcome::kUnknown;
  op.complete_ns = kNeverCompleted;
  op.revision = 0;
  op.error = "deadline exceeded";
  return op;
}

std::string Problems(const CheckReport& r) { return absl::StrJoin(r.problems, "\n"); }

#define EXPECT_VERDICT(report, v) \
  EXPECT_EQ((report).verdict, (v)) << Problems(report)

// --- linearizability: valid histories ---------------------------------------

TEST(LinearizabilityTest, EmptyHistoryPasses) {
  History h;
  CheckReport r = CheckLinearizability(h);
  EXPECT_VERDICT(r, Verdict::kOk);
  EXPECT_EQ(r.parts, 0);
}

TEST(LinearizabilityTest, SequentialPutGetDeletePasses) {
  History h;
  h.operations = {
      Get(1, "a", 0, 5, std::nullopt, 0, 1),
      Put(2, "a", "1", 10, 20, 2),
      Get(3, "a", 30, 40, "1", 2, 2),
      Put(4, "a", "2", 50, 60, 3),
      Get(5, "a", 70, 80, "2", 3, 3),
      Delete(6, "a", 90, 100, 1, 4),
      Get(7, "a", 110, 120, std::nullopt, 0, 4),
      Delete(8, "a", 130, 140, 0, 4),
  };
  CheckReport r = CheckLinearizability(h);
  EXPECT_VERDICT(r, Verdict::kOk);
  EXPECT_EQ(r.operations_checked, 8);
  EXPECT_EQ(r.parts, 1);
}

TEST(LinearizabilityTest, ConcurrentOverlappingOperationsPass) {
  History h;
  // Two overlapping puts; the later-completing read sees the one that
  // linearized second (put 3 took revision 2 although invoked later). A read
  // concurrent with both sees the first.
  h.operations = {
      Put(1, "a", "x", 0, 100, 3),
      Put(2, "a", "y", 10, 50, 2),
      Get(3, "a", 20, 60, "y", 2, 2),
      Get(4, "a", 110, 120, "x", 3, 3),
      Put(5, "b", "1", 0, 30, 1),
      Get(6, "b", 5, 200, "1", 1, 3),
  };
  CheckReport r = CheckLinearizability(h);
  EXPECT_VERDICT(r, Verdict::kOk);
  EXPECT_EQ(r.parts, 2);
}

TEST(LinearizabilityTest, UnknownPutThatTookEffectPasses) {
  History h;
  h.operations = {
      Put(1, "a", "1", 0, 10, 2),
      Unknown(Put(2, "a", "2", 20, 0, 0)),
      Get(3, "a", 100, 110, "2", 3, 3),
      Get(4, "a", 120, 130, "2", 3, 3),
  };
  EXPECT_VERDICT(CheckLinearizability(h), Verdict::kOk);
}

TEST(LinearizabilityTest, UnknownPutThatDidNotTakeEffectPasses) {
  History h;
  h.operations = {
      Put(1, "a", "1", 0, 10, 2),
      Unknown(Put(2, "a", "2", 20, 0, 0)),
      Get(3, "a", 100, 110, "1", 2, 2),
      Put(4, "a", "3", 120, 130, 3),
      Get(5, "a", 140, 150, "3", 3, 3),
  };
  EXPECT_VERDICT(CheckLinearizability(h), Verdict::kOk);
}

TEST(LinearizabilityTest, UnknownPutSeenThenOverwrittenPasses) {
  History h;
  // The unknown put takes effect late: after put 3, visible to read 4.
  h.operations = {
      Put(1, "a", "1", 0, 10, 2),
      Unknown(Put(2, "a", "2", 20, 0, 0)),
      Put(3, "a", "3", 30, 40, 3),
      Get(4, "a", 50, 60, "2", 4, 4),
  };
  EXPECT_VERDICT(CheckLinearizability(h), Verdict::kOk);
}

TEST(LinearizabilityTest, FailedOperationsAreIgnored) {
  History h;
  Operation failed = Put(2, "a", "2", 20, 30, 0);
  failed.outcome = Outcome::kFailed;
  h.operations = {Put(1, "a", "1", 0, 10, 2), failed, Get(3, "a", 40, 50, "1", 2, 2)};
  EXPECT_VERDICT(CheckLinearizability(h), Verdict::kOk);
}

TEST(LinearizabilityTest, CasSuccessAndFailurePass) {
  History h;
  h.operations = {
      Cas(1, "a", std::nullopt, "1", 0, 10, true, 2),   // absent -> 1
      Cas(2, "a", std::nullopt, "x", 20, 30, false, 2),  // not absent any more
      Cas(3, "a", "1", "2", 40, 50, true, 3),
      Cas(4, "a", "1", "9", 60, 70, false, 3),
      Get(5, "a", 80, 90, "2", 3, 3),
      // Two racing CAS from the same expected value: exactly one wins.
      Cas(6, "a", "2", "p", 100, 200, true, 4),
      Cas(7, "a", "2", "q", 100, 200, false, 4),
      Get(8, "a", 210, 220, "p", 4, 4),
  };
  EXPECT_VERDICT(CheckLinearizability(h), Verdict::kOk);
}

TEST(LinearizabilityTest, UnknownCasEitherWayPasses) {
  History took;
  took.operations = {
      Put(1, "a", "1", 0, 10, 2),
      Unknown(Cas(2, "a", "1", "2", 20, 0, false, 0)),
      Get(3, "a", 100, 110, "2", 3, 3),
  };
  EXPECT_VERDICT(CheckLinearizability(took), Verdict::kOk);
  History did_not;
  did_not.operations = {
      Put(1, "a", "1", 0, 10, 2),
      Unknown(Cas(2, "a", "1", "2", 20, 0, false, 0)),
      Get(3, "a", 100, 110, "1", 2, 2),
  };
  EXPECT_VERDICT(CheckLinearizability(did_not), Verdict::kOk);
}

TEST(LinearizabilityTest, RangesPass) {
  History h;
  h.operations = {
      Put(1, "k1", "a", 0, 10, 2),
      Put(2, "k2", "b", 20, 30, 3),
      Range(3, "k", "l", 40, 50, {Kv("k1", "a", 2), Kv("k2", "b", 3)}, 3),
      Put(4, "k3", "c", 60, 100, 4),
      // Concurrent with put 4: either result is fine.
      Range(5, "k", "l", 70, 80, {Kv("k1", "a", 2), Kv("k2", "b", 3)}, 3),
      Range(6, "k", "l", 70, 90, {Kv("k1", "a", 2), Kv("k2", "b", 3), Kv("k3", "c", 4)}, 4),
      Delete(7, "k1", 110, 120, 1, 5),
      Range(8, "k2", std::string("\0", 1), 130, 140, {Kv("k2", "b", 3), Kv("k3", "c", 4)}, 5),
      Range(9, "k", "l", 150, 160, {Kv("k2", "b", 3), Kv("k3", "c", 4)}, 5),
      Range(10, "z", "zz", 150, 160, {}, 5),
  };
  CheckReport r = CheckLinearizability(h);
  EXPECT_VERDICT(r, Verdict::kOk);
  EXPECT_EQ(r.parts, 2);  // k1..k3 with their ranges; the empty range alone
}

TEST(LinearizabilityTest, KeyWithALeaseMayVanish) {
  History h;
  Operation put = Put(1, "a", "1", 0, 10, 2);
  put.lease = 5;
  Operation get = Get(2, "a", 20, 30, "1", 2, 2);
  get.found->lease = 5;
  // Revoked or expired by now: no KV operation says so.
  h.operations = {put, get, Get(3, "a", 40, 50, std::nullopt, 0, 3)};
  EXPECT_VERDICT(CheckLinearizability(h), Verdict::kOk);
  // Without a lease the same history is a lost write.
  h.operations[0].lease = 0;
  h.operations[1].found->lease = 0;
  EXPECT_VERDICT(CheckLinearizability(h), Verdict::kViolation);
  // A vanished key does not come back.
  h.operations[0].lease = 5;
  h.operations[1].found->lease = 5;
  h.operations.push_back(Get(4, "a", 60, 70, "1", 2, 3));
  EXPECT_VERDICT(CheckLinearizability(h), Verdict::kViolation);
}

TEST(LinearizabilityTest, SerializableReadOfAWrittenValuePasses) {
  History h;
  Operation stale = Get(3, "a", 40, 50, "1", 2, 2);
  stale.serializable = true;  // stale but allowed for a serializable read
  h.operations = {Put(1, "a", "1", 0, 10, 2), Put(2, "a", "2", 20, 30, 3), stale};
  EXPECT_VERDICT(CheckLinearizability(h), Verdict::kOk);
}

// --- linearizability: planted violations ------------------------------------

TEST(LinearizabilityTest, StaleReadIsCaught) {
  History h;
  h.operations = {
      Put(1, "a", "1", 0, 10, 2),
      Put(2, "a", "2", 20, 30, 3),
      Get(3, "a", 40, 50, "1", 2, 3),
  };
  CheckReport r = CheckLinearizability(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("#3 get"));
}

TEST(LinearizabilityTest, StaleReadWithoutRevisionsIsCaught) {
  History h;  // only values: the model alone must catch it
  h.operations = {
      Put(1, "a", "1", 0, 10, 0),
      Put(2, "a", "2", 20, 30, 0),
      Get(3, "a", 40, 50, "1", 0, 0),
  };
  CheckReport r = CheckLinearizability(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("longest linearizable prefix has 2 of 3"));
  EXPECT_THAT(Problems(r), HasSubstr("#3 get(a) -> 1"));
}

TEST(LinearizabilityTest, LostWriteIsCaught) {
  History h;
  // Put 2 was acknowledged but a later read sees the older value, and a
  // later read on another client sees it absent of put 2 as well.
  h.operations = {
      Put(1, "a", "old", 0, 10, 0),
      Put(2, "a", "new", 20, 30, 0),
      Get(3, "a", 40, 50, "old", 0, 0),
      Get(4, "a", 60, 70, "old", 0, 0),
  };
  CheckReport r = CheckLinearizability(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
}

TEST(LinearizabilityTest, ReadOfNeverWrittenValueIsCaught) {
  History h;
  h.operations = {Put(1, "a", "1", 0, 10, 2), Get(2, "a", 20, 30, "ghost", 2, 2)};
  EXPECT_VERDICT(CheckLinearizability(h), Verdict::kViolation);
  Operation serializable = Get(2, "a", 20, 30, "ghost", 2, 2);
  serializable.serializable = true;
  h.operations = {Put(1, "a", "1", 0, 10, 2), serializable};
  CheckReport r = CheckLinearizability(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("no write to that key produced"));
}

TEST(LinearizabilityTest, ReadOfAbsentKeyAfterPutIsCaught) {
  History h;
  h.operations = {Put(1, "a", "1", 0, 10, 0), Get(2, "a", 20, 30, std::nullopt, 0, 0)};
  EXPECT_VERDICT(CheckLinearizability(h), Verdict::kViolation);
}

TEST(LinearizabilityTest, CasThatSucceededAgainstAFalseCompareIsCaught) {
  History h;
  h.operations = {
      Put(1, "a", "1", 0, 10, 0),
      Cas(2, "a", "other", "2", 20, 30, true, 0),
  };
  CheckReport r = CheckLinearizability(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("#2 cas"));
}

TEST(LinearizabilityTest, CasThatFailedAgainstATrueCompareIsCaught) {
  History h;
  h.operations = {
      Put(1, "a", "1", 0, 10, 0),
      Cas(2, "a", "1", "2", 20, 30, false, 0),
  };
  EXPECT_VERDICT(CheckLinearizability(h), Verdict::kViolation);
}

TEST(LinearizabilityTest, RangeMissingAKeyIsCaught) {
  History h;
  h.operations = {
      Put(1, "k1", "a", 0, 10, 0),
      Put(2, "k2", "b", 20, 30, 0),
      Range(3, "k", "l", 40, 50, {Kv("k2", "b", 0)}, 0),
  };
  EXPECT_VERDICT(CheckLinearizability(h), Verdict::kViolation);
}

TEST(LinearizabilityTest, RangeResultOutsideRangeIsCaught) {
  History h;
  h.operations = {
      Put(1, "k1", "a", 0, 10, 2),
      Range(2, "k2", "k3", 40, 50, {Kv("k1", "a", 2)}, 2),
  };
  CheckReport r = CheckLinearizability(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("outside the requested range"));
}

TEST(LinearizabilityTest, ModRevisionOfAnotherPutIsCaught) {
  History h;  // same value written twice: the read names the first put's revision
  h.operations = {
      Put(1, "a", "v", 0, 10, 2),
      Put(2, "a", "v", 20, 30, 3),
      Get(3, "a", 40, 50, "v", 2, 3),
  };
  EXPECT_VERDICT(CheckLinearizability(h), Verdict::kViolation);
}

TEST(LinearizabilityTest, RevisionGoingBackInRealTimeIsCaught) {
  History h;  // different keys, so only the global revision order links them
  h.operations = {
      Put(1, "a", "1", 0, 10, 5),
      Put(2, "b", "1", 20, 30, 4),
  };
  CheckReport r = CheckLinearizability(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("revisions must follow real time"));
}

TEST(LinearizabilityTest, DuplicateWriteRevisionIsCaught) {
  History h;
  h.operations = {Put(1, "a", "1", 0, 10, 5), Put(2, "b", "1", 0, 10, 5)};
  CheckReport r = CheckLinearizability(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("both report write revision 5"));
}

TEST(LinearizabilityTest, BudgetExhaustedIsInconclusiveNotPass) {
  History h;
  // Twelve concurrent unknown puts; reads then see u3, u5 and u3 again,
  // which no order explains (each value is written once). Only the search
  // can tell, and with a tiny budget it cannot finish.
  for (int i = 0; i < 12; ++i) {
    h.operations.push_back(Unknown(Put(i + 1, "a", absl::StrCat("u", i), i, 0, 0)));
  }
  h.operations.push_back(Get(13, "a", 100, 110, "u3", 0, 0));
  h.operations.push_back(Get(14, "a", 120, 130, "u5", 0, 0));
  h.operations.push_back(Get(15, "a", 140, 150, "u3", 0, 0));
  LinearizabilityOptions options;
  options.max_states_per_part = 20;
  CheckReport r = CheckLinearizability(h, options);
  EXPECT_VERDICT(r, Verdict::kInconclusive);
  EXPECT_THAT(Problems(r), HasSubstr("inconclusive"));
  // With the default budget the search finishes and finds the violation.
  r = CheckLinearizability(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("#15 get"));
  // Without the third read it is linearizable.
  h.operations.pop_back();
  EXPECT_VERDICT(CheckLinearizability(h), Verdict::kOk);
}

// --- linearizability: random histories against an in-test model ------------

struct RandomHistory {
  History history;
  std::vector<size_t> reads;  // indices of ok, linearizable Gets
};

// A sequential execution on a map with revisions; each operation's invoke
// and complete are drawn around its point in the sequence, so operations
// overlap at random. Some writes get outcome kUnknown (half of them took
// effect). Values are unique per write.
struct GenerateOptions {
  int min_ops = 10;
  int max_ops = 30;
  int unknown_one_in = 10;  // 1 in N writes has outcome kUnknown
  int max_window = 40;      // an op extends up to this far from its point
                            // (points are 20 apart)
};

RandomHistory GenerateHistory(uint32_t seed, const GenerateOptions& options = {}) {
  std::mt19937 rng(seed);
  auto uniform = [&rng](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const std::vector<std::string> keys = {"a", "b", "c"};
  std::map<std::string, KeyValue> store;
  int64_t revision = 1;
  RandomHistory out;
  const int count = uniform(options.min_ops, options.max_ops);
  const int window = uniform(0, options.max_window);
  for (int i = 0; i < count; ++i) {
    const int64_t point = 100 + 20 * i;
    const std::string key = keys[uniform(0, 2)];
    Operation op;
    op.invoke_ns = point - uniform(0, window);
    op.complete_ns = point + uniform(0, window);
    op.outcome = Outcome::kOk;
    op.key = key;
    const bool unknown = uniform(0, options.unknown_one_in - 1) == 0;
    const bool applies = !unknown || uniform(0, 1) == 0;
    auto do_put = [&](const std::string& value) {
      if (!applies) return;
      ++revision;
      KeyValue kv = Kv(key, value, revision);
      store[key] = kv;
      op.revision = revision;
    };
    switch (uniform(0, 5)) {
      case 0:
      case 1:
        op.kind = OpKind::kPut;
        op.value = absl::StrCat("v", seed, "-", i);
        do_put(op.value);
        break;
      case 2: {
        op.kind = OpKind::kTxnCas;
        op.value = absl::StrCat("c", seed, "-", i);
        auto it = store.find(key);
        if (uniform(0, 1) == 0 || it == store.end()) {
          op.expect_absent = true;
        } else {
          op.expected = uniform(0, 2) == 0 ? std::string("nope") : it->second.value;
        }
        const bool compare = op.expect_absent ? it == store.end()
                                              : it != store.end() && it->second.value == op.expected;
        op.succeeded = compare;
        if (compare) {
          do_put(op.value);
        } else {
          op.revision = revision;
        }
        break;
      }
      case 3: {
        op.kind = OpKind::kDelete;
        auto it = store.find(key);
        op.deleted = it != store.end() ? 1 : 0;
        if (it != store.end() && applies) {
          store.erase(it);
          ++revision;
        }
        op.revision = revision;
        break;
      }
      case 4: {
        op.kind = OpKind::kGet;
        auto it = store.find(key);
        if (it != store.end()) op.found = it->second;
        op.revision = revision;
        break;
      }
      case 5: {
        op.kind = OpKind::kRange;
        op.key = "a";
        op.range_end = "c";  // a and b
        for (const auto& [k, kv] : store) {
          if (k >= "a" && k < "c") op.kvs.push_back(kv);
        }
        op.revision = revision;
        break;
      }
    }
    if (unknown && op.kind != OpKind::kGet && op.kind != OpKind::kRange) {
      op = Unknown(std::move(op));
    }
    out.history.operations.push_back(std::move(op));
  }
  std::stable_sort(out.history.operations.begin(), out.history.operations.end(),
                   [](const Operation& a, const Operation& b) { return a.invoke_ns < b.invoke_ns; });
  for (size_t i = 0; i < out.history.operations.size(); ++i) {
    Operation& op = out.history.operations[i];
    op.id = static_cast<int64_t>(i + 1);
    if (op.kind == OpKind::kGet && op.outcome == Outcome::kOk) out.reads.push_back(i);
  }
  return out;
}

TEST(LinearizabilityRandomTest, GeneratedHistoriesPassAndMutatedReadsFail) {
  constexpr uint32_t kSeeds = 300;
  int mutated = 0;
  for (uint32_t seed = 1; seed <= kSeeds; ++seed) {
    RandomHistory rh = GenerateHistory(seed);
    CheckReport ok = CheckLinearizability(rh.history);
    ASSERT_EQ(ok.verdict, Verdict::kOk) << "seed " << seed << "\n" << Problems(ok);
    if (rh.reads.empty()) continue;
    // Mutate one read to a value never written (with and without its
    // revision): no linearization can explain it.
    std::mt19937 rng(seed * 7919);
    Operation& read = rh.history.operations[rh.reads[rng() % rh.reads.size()]];
    if (read.found.has_value() && rng() % 2 == 0) {
      read.found->value += "-mutated";
    } else {
      read.found = Kv(read.key, "never-written", 0);
    }
    CheckReport bad = CheckLinearizability(rh.history);
    ASSERT_EQ(bad.verdict, Verdict::kViolation) << "seed " << seed << " mutated " << read.id;
    ++mutated;
  }
  EXPECT_GT(mutated, kSeeds / 2);
}

TEST(LinearizabilityRandomTest, LargeHistoriesWithManyUnknownWritesFinish) {
  // ~10 operations in flight, 1 in 5 writes unanswered: the search must
  // still finish well inside its budget.
  GenerateOptions options;
  options.min_ops = 1000;
  options.max_ops = 1500;
  options.unknown_one_in = 5;
  options.max_window = 100;
  for (uint32_t seed = 1; seed <= 5; ++seed) {
    RandomHistory rh = GenerateHistory(seed, options);
    const auto start = std::chrono::steady_clock::now();
    CheckReport ok = CheckLinearizability(rh.history);
    ASSERT_EQ(ok.verdict, Verdict::kOk) << "seed " << seed << "\n" << Problems(ok);
    std::printf("seed %u: %zu ops checked in %lld ms\n", seed, rh.history.operations.size(),
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::steady_clock::now() - start)
                                           .count()));
    // A read of a value never written is caught by the quick checks before
    // any search, so a short search budget does not hide it.
    Operation& read = rh.history.operations[rh.reads[rh.reads.size() / 2]];
    read.found = Kv(read.key, "never-written", 0);
    LinearizabilityOptions short_budget;
    short_budget.max_time_per_part = std::chrono::milliseconds(500);
    CheckReport bad = CheckLinearizability(rh.history, short_budget);
    ASSERT_EQ(bad.verdict, Verdict::kViolation) << "seed " << seed << "\n" << Problems(bad);
  }
}

TEST(LinearizabilityRandomTest, StaleReadMutationsFail) {
  // A read changed to return a write that was certainly overwritten before
  // the read began (another write to the key started after it completed and
  // completed before the read): never linearizable, values being unique.
  int mutated = 0;
  for (uint32_t seed = 1; seed <= 300; ++seed) {
    RandomHistory rh = GenerateHistory(seed);
    auto& ops = rh.history.operations;
    bool done = false;
    for (size_t r = 0; r < rh.reads.size() && !done; ++r) {
      Operation& read = ops[rh.reads[r]];
      for (const Operation& w : ops) {
        if (done) break;
        if (w.key != read.key || w.outcome != Outcome::kOk || w.kind != OpKind::kPut) continue;
        for (const Operation& w2 : ops) {
          if (w2.key != read.key || w2.outcome != Outcome::kOk || w2.invoke_ns <= w.complete_ns ||
              w2.complete_ns >= read.invoke_ns || &w2 == &w) {
            continue;
          }
          const bool w2_writes = w2.kind == OpKind::kPut || w2.kind == OpKind::kDelete ||
                                 (w2.kind == OpKind::kTxnCas && w2.succeeded);
          if (!w2_writes || (w2.kind == OpKind::kDelete && w2.deleted == 0)) continue;
          read.found = Kv(read.key, w.value, w.revision);
          done = true;
          break;
        }
      }
    }
    if (!done) continue;
    ++mutated;
    CheckReport bad = CheckLinearizability(rh.history);
    ASSERT_EQ(bad.verdict, Verdict::kViolation) << "seed " << seed;
  }
  EXPECT_GT(mutated, 20);
}

// --- watches ----------------------------------------------------------------

WatchEvent PutEvent(std::string key, std::string value, int64_t revision, int64_t lease = 0) {
  WatchEvent e;
  e.kv = Kv(std::move(key), std::move(value), revision, lease);
  return e;
}

WatchEvent DeleteEvent(std::string key, int64_t revision) {
  WatchEvent e;
  e.is_delete = true;
  e.kv.key = std::move(key);
  e.kv.mod_revision = revision;
  return e;
}

WatchRecord Watch(int64_t id, std::string key, std::string range_end, int64_t start,
                  int64_t resumes = 0) {
  WatchRecord w;
  w.watch = id;
  w.key = std::move(key);
  w.range_end = std::move(range_end);
  w.start_revision = start;
  w.resumes = resumes;
  return w;
}

WatchResponseRecord Response(int64_t watch, int64_t header, std::vector<WatchEvent> events) {
  WatchResponseRecord r;
  r.watch = watch;
  r.header_revision = header;
  r.events = std::move(events);
  return r;
}

// Writes at revisions 2..5 on keys a, b, a, a(delete).
History WatchBase() {
  History h;
  h.operations = {
      Put(1, "a", "1", 0, 10, 2),
      Put(2, "b", "1", 20, 30, 3),
      Put(3, "a", "2", 40, 50, 4),
      Delete(4, "a", 60, 70, 1, 5),
  };
  return h;
}

TEST(WatchCheckerTest, ValidWatchesPass) {
  History h = WatchBase();
  h.watches = {Watch(1, "a", "", 2), Watch(2, "a", "c", 1), Watch(3, "a", "", 0)};
  h.watch_responses = {
      Response(1, 2, {PutEvent("a", "1", 2)}),
      Response(2, 3, {PutEvent("a", "1", 2), PutEvent("b", "1", 3)}),
      Response(3, 3, {}),  // created at revision 3
      Response(1, 4, {PutEvent("a", "2", 4)}),
      Response(2, 5, {PutEvent("a", "2", 4), DeleteEvent("a", 5)}),
      Response(3, 5, {PutEvent("a", "2", 4)}),
      Response(3, 5, {DeleteEvent("a", 5)}),
      Response(1, 5, {DeleteEvent("a", 5)}),
  };
  CheckReport r = CheckWatches(h);
  EXPECT_VERDICT(r, Verdict::kOk);
}

TEST(WatchCheckerTest, ValidResumedWatchPasses) {
  History h = WatchBase();
  h.watches = {Watch(1, "a", "", 2), Watch(2, "a", "", 4, /*resumes=*/1)};
  h.watch_responses = {
      Response(1, 3, {PutEvent("a", "1", 2)}),
      Response(2, 5, {PutEvent("a", "2", 4), DeleteEvent("a", 5)}),
  };
  EXPECT_VERDICT(CheckWatches(h), Verdict::kOk);
}

TEST(WatchCheckerTest, CompactedWatchIsNotCheckedForGaps) {
  History h = WatchBase();
  h.watches = {Watch(1, "a", "", 2)};
  WatchResponseRecord canceled = Response(1, 5, {});
  canceled.canceled = true;
  canceled.compact_revision = 4;
  h.watch_responses = {canceled};
  EXPECT_VERDICT(CheckWatches(h), Verdict::kOk);
}

TEST(WatchCheckerTest, DuplicatedEventIsCaught) {
  History h = WatchBase();
  h.watches = {Watch(1, "a", "", 2)};
  h.watch_responses = {
      Response(1, 2, {PutEvent("a", "1", 2)}),
      Response(1, 4, {PutEvent("a", "1", 2), PutEvent("a", "2", 4)}),
  };
  CheckReport r = CheckWatches(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("duplicate"));
}

TEST(WatchCheckerTest, GapIsCaught) {
  History h = WatchBase();
  h.watches = {Watch(1, "a", "", 2)};
  h.watch_responses = {
      Response(1, 2, {PutEvent("a", "1", 2)}),
      Response(1, 5, {DeleteEvent("a", 5)}),  // revision 4 missing
  };
  CheckReport r = CheckWatches(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("missed revision 4"));
}

TEST(WatchCheckerTest, GapAtTheTailBelowTheHeaderIsCaught) {
  History h = WatchBase();
  h.watches = {Watch(1, "a", "", 2)};
  h.watch_responses = {Response(1, 2, {PutEvent("a", "1", 2)}), Response(1, 5, {})};
  CheckReport r = CheckWatches(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("missed revision 4"));
  EXPECT_THAT(Problems(r), HasSubstr("missed revision 5"));
}

TEST(WatchCheckerTest, GapInAWatchFromNowIsCaught) {
  History h = WatchBase();
  // Opened "from now" at revision 3 (its created response); revision 4 lost.
  h.watches = {Watch(1, "a", "", 0)};
  h.watch_responses = {Response(1, 3, {}), Response(1, 5, {DeleteEvent("a", 5)})};
  CheckReport r = CheckWatches(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("missed revision 4"));
  EXPECT_THAT(Problems(r), Not(HasSubstr("missed revision 2")));
}

TEST(WatchCheckerTest, RevisionSplitAcrossResponsesIsCaught) {
  History h;
  // One revision with two events (a multi-key txn not in the KV history).
  h.operations = {Put(1, "a", "1", 0, 10, 0), Put(2, "b", "1", 0, 10, 0)};
  h.watches = {Watch(1, "a", "c", 2)};
  h.watch_responses = {
      Response(1, 2, {PutEvent("a", "1", 2)}),
      Response(1, 2, {PutEvent("b", "1", 2)}),
  };
  CheckReport r = CheckWatches(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("split across responses"));
  // The same two events in one response are fine.
  h.watch_responses = {Response(1, 2, {PutEvent("a", "1", 2), PutEvent("b", "1", 2)})};
  EXPECT_VERDICT(CheckWatches(h), Verdict::kOk);
}

TEST(WatchCheckerTest, OutOfOrderEventsAreCaught) {
  History h = WatchBase();
  h.watches = {Watch(1, "a", "", 2)};
  h.watch_responses = {
      Response(1, 4, {PutEvent("a", "2", 4)}),
      Response(1, 4, {PutEvent("a", "1", 2)}),
      Response(1, 5, {DeleteEvent("a", 5)}),
  };
  CheckReport r = CheckWatches(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("out of order"));
}

TEST(WatchCheckerTest, ResumedWatchThatSkipsARevisionIsCaught) {
  History h = WatchBase();
  // Watch 1 stopped after revision 2; watch 2 resumes it but from 5.
  h.watches = {Watch(1, "a", "", 2), Watch(2, "a", "", 5, /*resumes=*/1)};
  h.watch_responses = {
      Response(1, 2, {PutEvent("a", "1", 2)}),
      Response(2, 5, {DeleteEvent("a", 5)}),
  };
  CheckReport r = CheckWatches(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("expected 3 or earlier"));
  EXPECT_THAT(Problems(r), HasSubstr("missed revision 4"));
}

TEST(WatchCheckerTest, EventNotMatchingTheWriteIsCaught) {
  History h = WatchBase();
  h.watches = {Watch(1, "a", "", 4)};
  h.watch_responses = {Response(1, 5, {PutEvent("a", "wrong", 4), DeleteEvent("a", 5)})};
  CheckReport r = CheckWatches(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("does not match the write"));
}

TEST(WatchCheckerTest, WatchesThatDisagreeAreCaught) {
  History h;
  // Revision 7 is not in the KV history (unknown-outcome puts), so only
  // the cross-watch rule can tell.
  h.operations = {Unknown(Put(1, "a", "x", 0, 0, 0)), Unknown(Put(2, "a", "y", 0, 0, 0))};
  h.watches = {Watch(1, "a", "", 7), Watch(2, "a", "", 7)};
  h.watch_responses = {Response(1, 7, {PutEvent("a", "x", 7)}), Response(2, 7, {PutEvent("a", "y", 7)})};
  CheckReport r = CheckWatches(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("disagrees with watch 1"));
}

// --- leases -----------------------------------------------------------------

LeaseOperation LeaseOp(int64_t id, LeaseOpKind kind, int64_t lease, int64_t ttl_seconds,
                       int64_t invoke, int64_t complete) {
  LeaseOperation op;
  op.id = id;
  op.kind = kind;
  op.lease = lease;
  op.ttl_seconds = ttl_seconds;
  op.invoke_ns = invoke;
  op.complete_ns = complete;
  op.outcome = Outcome::kOk;
  return op;
}

TEST(LeaseCheckerTest, KeyOfRevokedLeaseReadAfterRevokeIsCaught) {
  History h;
  Operation put = Put(2, "a", "1", 20, 30, 2);
  put.lease = 77;
  Operation get_after = Get(4, "a", 60, 70, "1", 2, 2);
  h.operations = {put, Get(3, "a", 35, 38, "1", 2, 2), get_after};
  h.lease_operations = {LeaseOp(1, LeaseOpKind::kGrant, 77, 10, 0, 10),
                        LeaseOp(5, LeaseOpKind::kRevoke, 77, 0, 40, 50)};
  CheckReport r = CheckLeases(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("#4 get"));
  EXPECT_THAT(Problems(r), Not(HasSubstr("#3 get")));
  // With the lease field in the returned kv, no inference is needed.
  h.operations[2].found->lease = 77;
  h.operations[2].found->value = "other";
  EXPECT_VERDICT(CheckLeases(h), Verdict::kViolation);
}

TEST(LeaseCheckerTest, KeyReadAfterLeaseReportedNotFoundIsCaught) {
  History h;
  Operation put = Put(2, "a", "1", 20, 30, 2);
  put.lease = 77;
  h.operations = {put, Get(4, "a", 60, 70, "1", 2, 2)};
  LeaseOperation expired = LeaseOp(5, LeaseOpKind::kExpired, 77, 0, 40, 50);
  h.lease_operations = {expired};
  // TTL <= 0 of a lease that still exists: etcd may still be revoking it.
  EXPECT_VERDICT(CheckLeases(h), Verdict::kOk);
  h.lease_operations[0].not_found = true;
  CheckReport r = CheckLeases(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("#4 get"));
}

TEST(LeaseCheckerTest, ReadsBeforeRevokeAndAbsentAfterPass) {
  History h;
  Operation put = Put(2, "a", "1", 20, 30, 2);
  put.lease = 77;
  Operation during = Get(3, "a", 45, 60, "1", 2, 2);  // concurrent with the revoke
  during.found->lease = 77;
  h.operations = {put, during, Get(4, "a", 60, 70, std::nullopt, 0, 3)};
  h.lease_operations = {LeaseOp(1, LeaseOpKind::kGrant, 77, 10, 0, 10),
                        LeaseOp(5, LeaseOpKind::kRevoke, 77, 0, 40, 50)};
  EXPECT_VERDICT(CheckLeases(h), Verdict::kOk);
}

TEST(LeaseCheckerTest, EarlyExpiryIsCaught) {
  constexpr int64_t kSecond = 1'000'000'000;
  History h;
  h.lease_operations = {
      LeaseOp(1, LeaseOpKind::kGrant, 9, 5, 0, kSecond / 10),
      LeaseOp(2, LeaseOpKind::kKeepAlive, 9, 5, 3 * kSecond, 3 * kSecond + 1000),
      LeaseOp(3, LeaseOpKind::kExpired, 9, 0, 5 * kSecond, 5 * kSecond + 1000),
  };
  CheckReport r = CheckLeases(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("#3 expired"));
  // Reported after the keep-alive's TTL ran out: fine.
  h.lease_operations[2].invoke_ns = 8 * kSecond;
  h.lease_operations[2].complete_ns = 8 * kSecond + 1000;
  EXPECT_VERDICT(CheckLeases(h), Verdict::kOk);
  // Revoked first: an early "expired" is expected.
  h.lease_operations[2].invoke_ns = 4 * kSecond;
  h.lease_operations[2].complete_ns = 4 * kSecond + 1000;
  h.lease_operations.push_back(LeaseOp(4, LeaseOpKind::kRevoke, 9, 0, 3 * kSecond + 2000, 4 * kSecond));
  EXPECT_VERDICT(CheckLeases(h), Verdict::kOk);
}

// --- CheckAll ---------------------------------------------------------------

TEST(CheckAllTest, PrefixesProblemsWithTheChecker) {
  History h = WatchBase();
  h.operations.push_back(Get(5, "a", 100, 110, "2", 4, 5));  // stale: a was deleted
  h.watches = {Watch(1, "a", "", 2)};
  h.watch_responses = {Response(1, 5, {PutEvent("a", "1", 2)})};
  CheckReport r = CheckAll(h);
  EXPECT_VERDICT(r, Verdict::kViolation);
  EXPECT_THAT(Problems(r), HasSubstr("linearizability: "));
  EXPECT_THAT(Problems(r), HasSubstr("watch: "));
  EXPECT_EQ(CheckAll(WatchBase()).verdict, Verdict::kOk);
}

// --- history files ----------------------------------------------------------

std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/", name, "-", ::getpid(), ".jsonl");
}

TEST(HistoryIoTest, RoundTripKeepsEverythingIncludingBinaryKeys) {
  History h;
  const std::string binary_key("k\0\xff\n\"", 5);
  Operation put = Put(1, binary_key, std::string("\x80\x00v", 3), 5, 9, 2);
  put.lease = 42;
  put.member = 2;
  Operation range = Range(2, std::string("\0", 1), std::string("\0", 1), 10, 20,
                          {Kv(binary_key, std::string("\x80\x00v", 3), 2, 42)}, 2);
  range.serializable = true;
  Operation cas = Unknown(Cas(3, "c", std::nullopt, "x", 30, 0, false, 0));
  cas.error = std::string("bad bytes \xff\xfe", 12);  // not UTF-8
  Operation get = Get(4, binary_key, 40, 50, std::string("\x80\x00v", 3), 2, 2);
  get.found->create_revision = 2;
  get.found->version = 1;
  h.operations = {put, range, cas, get, Delete(5, "d", 60, 70, 0, 2)};
  LeaseOperation expired = LeaseOp(7, LeaseOpKind::kExpired, 42, 0, 95, 99);
  expired.not_found = true;
  h.lease_operations = {LeaseOp(6, LeaseOpKind::kKeepAlive, 42, 7, 80, 90), expired};
  h.watches = {Watch(1, binary_key, std::string("\0", 1), 2, 0), Watch(2, "a", "", 3, 1)};
  WatchResponseRecord resp = Response(1, 2, {PutEvent(binary_key, "v", 2, 42), DeleteEvent("z", 3)});
  resp.canceled = true;
  resp.compact_revision = 1;
  resp.time_ns = 123;
  h.watch_responses = {resp};

  const std::string path = TempPath("roundtrip");
  ASSERT_TRUE(WriteHistory(h, path).ok());
  absl::StatusOr<History> back = ReadHistory(path);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->operations.size(), 5u);
  EXPECT_EQ(back->operations[0].key, binary_key);
  EXPECT_EQ(back->operations[0].value, std::string("\x80\x00v", 3));
  EXPECT_EQ(back->operations[0].lease, 42);
  EXPECT_EQ(back->operations[0].member, 2);
  EXPECT_EQ(back->operations[0].revision, 2);
  EXPECT_EQ(back->operations[1].range_end, std::string("\0", 1));
  EXPECT_TRUE(back->operations[1].serializable);
  ASSERT_EQ(back->operations[1].kvs.size(), 1u);
  EXPECT_EQ(back->operations[1].kvs[0], range.kvs[0]);
  EXPECT_EQ(back->operations[2].outcome, Outcome::kUnknown);
  EXPECT_EQ(back->operations[2].complete_ns, kNeverCompleted);
  EXPECT_TRUE(back->operations[2].expect_absent);
  EXPECT_EQ(back->operations[2].kind, OpKind::kTxnCas);
  ASSERT_TRUE(back->operations[3].found.has_value());
  EXPECT_EQ(*back->operations[3].found, *get.found);
  EXPECT_EQ(back->operations[4].kind, OpKind::kDelete);
  ASSERT_EQ(back->lease_operations.size(), 2u);
  EXPECT_EQ(back->lease_operations[0].kind, LeaseOpKind::kKeepAlive);
  EXPECT_EQ(back->lease_operations[0].ttl_seconds, 7);
  EXPECT_FALSE(back->lease_operations[0].not_found);
  EXPECT_TRUE(back->lease_operations[1].not_found);
  ASSERT_EQ(back->watches.size(), 2u);
  EXPECT_EQ(back->watches[0].key, binary_key);
  EXPECT_EQ(back->watches[1].resumes, 1);
  ASSERT_EQ(back->watch_responses.size(), 1u);
  const WatchResponseRecord& r = back->watch_responses[0];
  EXPECT_TRUE(r.canceled);
  EXPECT_EQ(r.compact_revision, 1);
  EXPECT_EQ(r.time_ns, 123);
  ASSERT_EQ(r.events.size(), 2u);
  EXPECT_EQ(r.events[0].kv, resp.events[0].kv);
  EXPECT_TRUE(r.events[1].is_delete);
  // Writing what was read gives the same file.
  const std::string path2 = TempPath("roundtrip2");
  ASSERT_TRUE(WriteHistory(*back, path2).ok());
  std::ifstream a(path), b(path2);
  std::string text_a((std::istreambuf_iterator<char>(a)), std::istreambuf_iterator<char>());
  std::string text_b((std::istreambuf_iterator<char>(b)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text_a, text_b);
  std::remove(path.c_str());
  std::remove(path2.c_str());
}

TEST(HistoryIoTest, ErrorsNameTheBadLine) {
  const std::string path = TempPath("bad");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{not json", "not valid JSON"},
      {R"({"type":"op","kind":"frobnicate"})", "unknown op kind"},
      {R"({"type":"op","kind":"put","key_b64":"!!!"})", "key_b64"},
      {R"({"type":"op","kind":"put","revision":"7"})", "revision"},
      {R"({"type":"mystery"})", "unknown record type"},
      {R"([1,2])", "not a JSON object"},
  };
  for (const auto& [line, expected] : cases) {
    {
      std::ofstream out(path, std::ios::trunc);
      out << R"({"type":"watch","watch":1,"key_b64":"YQ=="})" << "\n\n"
          << R"({"type":"op","kind":"get","key_b64":"YQ==","extra_field":1})" << "\n"
          << line << "\n";
    }
    absl::StatusOr<History> h = ReadHistory(path);
    ASSERT_FALSE(h.ok()) << line;
    EXPECT_THAT(std::string(h.status().message()), HasSubstr(":4: ")) << line;
    EXPECT_THAT(std::string(h.status().message()), HasSubstr(expected)) << line;
  }
  std::remove(path.c_str());
  EXPECT_FALSE(ReadHistory(path).ok());
}

TEST(HistoryIoTest, RecorderAssignsIdsInInvokeOrderAndCompletes) {
  HistoryRecorder recorder;
  Operation put;
  put.kind = OpKind::kPut;
  put.key = "a";
  put.value = "1";
  const int64_t id1 = recorder.Invoke(put);
  LeaseOperation grant;
  grant.kind = LeaseOpKind::kGrant;
  const int64_t id2 = recorder.InvokeLease(grant);
  const int64_t id3 = recorder.Invoke(put);
  EXPECT_LT(id1, id2);
  EXPECT_LT(id2, id3);
  Operation result;
  result.outcome = Outcome::kOk;
  result.revision = 2;
  recorder.Complete(id1, result);
  LeaseOperation granted;
  granted.outcome = Outcome::kOk;
  granted.lease = 99;
  granted.ttl_seconds = 5;
  recorder.CompleteLease(id2, granted);
  const int64_t w = recorder.AddWatch(Watch(0, "a", "", 1));
  recorder.AddWatchResponse(Response(w, 2, {PutEvent("a", "1", 2)}));
  History h = recorder.Snapshot();
  ASSERT_EQ(h.operations.size(), 2u);
  EXPECT_EQ(h.operations[0].outcome, Outcome::kOk);
  EXPECT_EQ(h.operations[0].revision, 2);
  EXPECT_EQ(h.operations[0].value, "1");
  EXPECT_GE(h.operations[0].complete_ns, h.operations[0].invoke_ns);
  EXPECT_LE(h.operations[0].invoke_ns, h.operations[1].invoke_ns);
  EXPECT_EQ(h.operations[1].outcome, Outcome::kUnknown);
  EXPECT_EQ(h.operations[1].complete_ns, kNeverCompleted);
  ASSERT_EQ(h.lease_operations.size(), 1u);
  EXPECT_EQ(h.lease_operations[0].lease, 99);
  EXPECT_EQ(h.lease_operations[0].ttl_seconds, 5);
  ASSERT_EQ(h.watches.size(), 1u);
  EXPECT_EQ(h.watches[0].watch, w);
  EXPECT_EQ(h.watch_responses.size(), 1u);
  EXPECT_EQ(CheckAll(h).verdict, Verdict::kOk) << Problems(CheckAll(h));
}

}  // namespace
}  // namespace cppetcd::robustness
