// CheckLeases: two simple, sound rules.
//
// 1. Gone means gone. Let gone(L) be the earliest complete_ns of an ok
//    Revoke of lease L, or of an ok Expired report for L with not_found
//    (etcd answers a keep-alive of an expired lease only once its revoke is
//    applied; a TimeToLive with TTL <= 0 may precede it). A linearizable
//    Get/Range (outcome ok) invoked after gone(L) must not return a key
//    attached to L: a kv whose lease field is L, or a kv that is provably
//    the value of a Put with lease L (the Put's known revision equals the
//    kv's mod_revision, or the value was put to that key by that Put only).
// 2. Not early. A Grant or KeepAlive answered (ok) with TTL T > 0, invoked
//    at t, means the lease lives at least until t + T seconds (the server
//    renewed it no earlier than t). An Expired report for L that completed
//    before t + T - kExpiryTolerance, with no Revoke of L invoked before
//    the report completed, is a violation.
//    kExpiryTolerance = 1 s: clock-rate differences between the harness and
//    the members and TTL rounding in responses.
//
// Not checked: that a lease does expire once its TTL ran out without
// keep-alives (timing of expiry is not bounded by etcd); serializable reads
// (a lagging member may still serve the key); keys attached by Txn (the
// history's CAS carries no lease); watch delete events on expiry (see the
// watch checker); leases of unknown-outcome Grants.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "checker.h"
#include "checker_internal.h"

namespace cppetcd::robustness {
namespace {

using internal::Describe;
using internal::Printable;

constexpr int64_t kExpiryToleranceNs = 1'000'000'000;

const char* LeaseKindName(LeaseOpKind kind) {
  switch (kind) {
    case LeaseOpKind::kGrant: return "grant";
    case LeaseOpKind::kKeepAlive: return "keep-alive";
    case LeaseOpKind::kRevoke: return "revoke";
    case LeaseOpKind::kExpired: return "expired";
  }
  return "?";
}

std::string DescribeLeaseOp(const LeaseOperation& op) {
  return absl::StrCat("#", op.id, " ", LeaseKindName(op.kind), "(lease ", op.lease, ") ttl ",
                      op.ttl_seconds, "s");
}

}  // namespace

CheckReport CheckLeases(const History& history) {
  CheckReport report;
  std::vector<std::string>& problems = report.problems;

  // gone(L) and the op that proves it.
  std::map<int64_t, const LeaseOperation*> gone;
  for (const LeaseOperation& op : history.lease_operations) {
    if (op.outcome != Outcome::kOk || op.lease == 0) continue;
    if (op.kind != LeaseOpKind::kRevoke && !(op.kind == LeaseOpKind::kExpired && op.not_found)) {
      continue;
    }
    auto [it, inserted] = gone.emplace(op.lease, &op);
    if (!inserted && op.complete_ns < it->second->complete_ns) it->second = &op;
  }

  // Puts by key, to identify which Put a returned kv came from.
  std::map<std::string, std::vector<const Operation*>> writes_by_key;
  for (const Operation& op : history.operations) {
    if (op.outcome == Outcome::kFailed) continue;
    if (op.kind == OpKind::kPut || op.kind == OpKind::kTxnCas) writes_by_key[op.key].push_back(&op);
  }
  // The lease a returned kv provably carries, 0 if unknown.
  auto lease_of = [&](const KeyValue& kv) -> int64_t {
    if (kv.lease != 0) return kv.lease;
    auto it = writes_by_key.find(kv.key);
    if (it == writes_by_key.end()) return 0;
    const Operation* only = nullptr;
    int same_value = 0;
    for (const Operation* w : it->second) {
      if (w->outcome == Outcome::kOk && w->revision != 0 && kv.mod_revision != 0 &&
          w->revision == kv.mod_revision && !(w->kind == OpKind::kTxnCas && !w->succeeded)) {
        return w->kind == OpKind::kPut ? w->lease : 0;
      }
      if (w->value == kv.value) {
        ++same_value;
        only = w;
      }
    }
    if (same_value == 1 && only->kind == OpKind::kPut) return only->lease;
    return 0;
  };

  int64_t checked = 0;
  for (const Operation& op : history.operations) {
    if (op.outcome != Outcome::kOk || op.serializable) continue;
    std::vector<const KeyValue*> kvs;
    if (op.kind == OpKind::kGet && op.found.has_value()) kvs.push_back(&*op.found);
    if (op.kind == OpKind::kRange) {
      for (const KeyValue& kv : op.kvs) kvs.push_back(&kv);
    }
    for (const KeyValue* kv : kvs) {
      ++checked;
      const int64_t lease = lease_of(*kv);
      if (lease == 0) continue;
      auto g = gone.find(lease);
      if (g == gone.end() || op.invoke_ns <= g->second->complete_ns) continue;
      problems.push_back(absl::StrCat(Describe(op), " returned ", Printable(kv->key),
                                      " attached to lease ", lease, " after ",
                                      DescribeLeaseOp(*g->second), " completed"));
    }
  }

  // Not early: the latest lower bound on each lease's life.
  std::map<int64_t, std::vector<const LeaseOperation*>> renewals;
  std::map<int64_t, std::vector<const LeaseOperation*>> revokes;  // any outcome
  for (const LeaseOperation& op : history.lease_operations) {
    if (op.kind == LeaseOpKind::kRevoke) revokes[op.lease].push_back(&op);
    if ((op.kind == LeaseOpKind::kGrant || op.kind == LeaseOpKind::kKeepAlive) &&
        op.outcome == Outcome::kOk && op.ttl_seconds > 0) {
      renewals[op.lease].push_back(&op);
    }
  }
  for (const LeaseOperation& op : history.lease_operations) {
    if (op.kind != LeaseOpKind::kExpired || op.outcome != Outcome::kOk) continue;
    ++checked;
    bool revoked = false;
    for (const LeaseOperation* r : revokes[op.lease]) revoked |= r->invoke_ns < op.complete_ns;
    if (revoked) continue;
    for (const LeaseOperation* k : renewals[op.lease]) {
      const int64_t lives_until = k->invoke_ns + k->ttl_seconds * 1'000'000'000;
      if (op.complete_ns < lives_until - kExpiryToleranceNs) {
        problems.push_back(absl::StrCat(
            DescribeLeaseOp(op), " reported the lease expired ",
            (lives_until - op.complete_ns) / 1'000'000, " ms before the TTL of ", DescribeLeaseOp(*k),
            " could have run out (tolerance ", kExpiryToleranceNs / 1'000'000, " ms)"));
        break;
      }
    }
  }
  report.operations_checked = checked;
  if (!problems.empty()) report.verdict = Verdict::kViolation;
  return report;
}

}  // namespace cppetcd::robustness
