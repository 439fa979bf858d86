// CheckLinearizability: a Wing-Gong-Lowe search per independent part of the
// history, against a model of etcd's key space.
//
// Steps:
//  1. Global checks that need no search: two writes reporting the same
//     revision; revisions against real time (an operation invoked after
//     another completed must not report a smaller revision, nor an equal one
//     if it is a write); reads whose result contradicts themselves (a kv
//     outside the requested range, unsorted, mod_revision above the header).
//  2. Serializable reads: each returned value was written to that key by some
//     write (not failed) invoked before the read completed.
//  3. The other operations (failed ones dropped, unknown-outcome reads
//     dropped) are split by union-find over the keys they touch; a Range
//     touches every key of its interval used anywhere in the history.
//  4. Per part, WGL: repeatedly pick an operation whose invoke precedes every
//     pending completion, apply it to the model, and backtrack on a
//     contradiction; (set of linearized ops, model state) pairs already seen
//     are not explored again. Unknown-outcome operations have no completion
//     and need not be linearized at all.
//
// Model state per key: present or not, the value, the mod_revision if known
// (from the write's response or a later read), and the lease. Plus one
// number per part, `floor`: a lower bound of etcd's global revision at the
// current point of the linearization (largest revision any linearized
// operation reported). Writes with a known revision must be above it, reads
// at or above it. Revisions are only compared when both are known from
// responses; the model never invents a revision.
//
// Assumes the key space starts empty and that the history holds every
// write to the keys it reads, except deletes by lease revoke or expiry: a
// key put with a lease may vanish at any time after the Put.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <numeric>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "checker.h"
#include "checker_internal.h"

namespace cppetcd::robustness {
namespace {

using internal::Describe;
using internal::InRange;
using internal::Printable;

bool IsRead(const Operation& op) { return op.kind == OpKind::kGet || op.kind == OpKind::kRange; }

// True if `op` (outcome kOk) wrote a revision: Put, a succeeded CAS, a
// Delete that deleted the key.
bool WroteRevision(const Operation& op) {
  if (op.outcome != Outcome::kOk) return false;
  switch (op.kind) {
    case OpKind::kPut: return true;
    case OpKind::kTxnCas: return op.succeeded;
    case OpKind::kDelete: return op.deleted > 0;
    default: return false;
  }
}

// --- the model -------------------------------------------------------------

struct Slot {
  int32_t value = -1;        // interned value id; -1 = key absent
  int64_t mod_revision = 0;  // 0 = not known
  int64_t lease = 0;

  bool operator==(const Slot&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const Slot& s) {
    return H::combine(std::move(h), s.value, s.mod_revision, s.lease);
  }
};

struct ModelState {
  std::vector<Slot> slots;  // one per key of the part, in key order
  int64_t floor = 0;        // see the file comment

  bool operator==(const ModelState&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const ModelState& s) {
    return H::combine(std::move(h), s.slots, s.floor);
  }
};

struct RangeItem {
  int slot = 0;
  int32_t value = -1;
  int64_t mod_revision = 0;
  int64_t lease = 0;
};

// One operation of a part, with keys and values resolved to slot and value
// ids.
struct PartOp {
  const Operation* op = nullptr;
  bool required = false;  // must be linearized (outcome kOk, or see Simplify)
  int64_t complete_ns = kNeverCompleted;  // latest linearization point if required
  int slot = -1;          // point operations
  int lo = 0, hi = 0;     // kRange: slots [lo, hi)
  int32_t value = -1;     // kPut / kTxnCas: written value
  int32_t expected = -1;  // kTxnCas
  std::vector<RangeItem> items;  // kGet (0 or 1 item) and kRange results
};

// Applies `p` to `s`; false if the operation's result contradicts the state.
bool Apply(const PartOp& p, ModelState& s) {
  const Operation& op = *p.op;
  const bool ok = op.outcome == Outcome::kOk;
  const int64_t rev = ok ? op.revision : 0;
  auto write = [&](int slot, int32_t value, int64_t lease) {
    if (rev != 0) {
      if (rev <= s.floor) return false;
      s.floor = rev;
    }
    s.slots[slot] = Slot{value, rev, lease};
    return true;
  };
  auto observe = [&]() {  // an operation that read the store at revision `rev`
    if (rev != 0) {
      if (rev < s.floor) return false;
      s.floor = rev;
    }
    return true;
  };
  auto check_item = [&](const RangeItem& item) {
    Slot& slot = s.slots[item.slot];
    if (slot.value != item.value || slot.lease != item.lease) return false;
    if (item.mod_revision != 0) {
      if (slot.mod_revision != 0 && slot.mod_revision != item.mod_revision) return false;
      slot.mod_revision = item.mod_revision;  // learnt: later reads must agree
      s.floor = std::max(s.floor, item.mod_revision);
    }
    return true;
  };
  switch (op.kind) {
    case OpKind::kPut:
      return write(p.slot, p.value, op.lease);
    case OpKind::kDelete: {
      const bool present = s.slots[p.slot].value >= 0;
      if (!ok) {
        s.slots[p.slot] = Slot{};
        return true;
      }
      if (present != (op.deleted > 0)) return false;
      if (!present) return observe();
      return write(p.slot, -1, 0) && (s.slots[p.slot] = Slot{}, true);
    }
    case OpKind::kTxnCas: {
      const Slot& slot = s.slots[p.slot];
      const bool compare = op.expect_absent ? slot.value < 0 : slot.value == p.expected && slot.value >= 0;
      if (!ok) {
        if (compare) s.slots[p.slot] = Slot{p.value, 0, 0};
        return true;
      }
      if (compare != op.succeeded) return false;
      if (!compare) return observe();
      return write(p.slot, p.value, 0);
    }
    case OpKind::kGet:
      if (!observe()) return false;
      if (p.items.empty()) return s.slots[p.slot].value < 0;
      return check_item(p.items[0]);
    case OpKind::kRange: {
      if (!observe()) return false;
      size_t next = 0;
      for (int i = p.lo; i < p.hi; ++i) {
        if (s.slots[i].value < 0) {
          if (next < p.items.size() && p.items[next].slot == i) return false;
          continue;
        }
        if (next >= p.items.size() || p.items[next].slot != i) return false;
        if (!check_item(p.items[next])) return false;
        ++next;
      }
      return next == p.items.size();
    }
  }
  return false;
}

// --- WGL search ------------------------------------------------------------

struct CacheEntry {
  std::vector<uint64_t> linearized;  // bitset over the part's ops
  ModelState state;

  bool operator==(const CacheEntry&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const CacheEntry& e) {
    return H::combine(std::move(h), e.linearized, e.state);
  }
};

enum class SearchResult { kLinearizable, kNotLinearizable, kBudget };

struct SearchOutcome {
  SearchResult result = SearchResult::kLinearizable;
  int64_t states = 0;
  std::vector<int> best_prefix;  // part op indices of the longest prefix
  ModelState best_state;
  int stuck = -1;                // op that could not follow best_prefix
  std::string budget_reason;
};

struct Entry {
  int op = 0;
  bool is_call = true;
  int64_t time = 0;
  int ret = -1;  // call: index of its return entry; -1 if optional
};

SearchOutcome Search(const std::vector<PartOp>& ops, size_t num_slots,
                     const LinearizabilityOptions& options) {
  SearchOutcome out;
  const int n = static_cast<int>(ops.size());
  std::vector<Entry> entries;
  entries.reserve(2 * n);
  for (int i = 0; i < n; ++i) {
    entries.push_back(Entry{i, true, ops[i].op->invoke_ns, -1});
    // A completion before the invoke (a hand-edited history) is read as a
    // completion at the invoke.
    if (ops[i].required) {
      entries.push_back(Entry{i, false, std::max(ops[i].complete_ns, ops[i].op->invoke_ns), -1});
    }
  }
  // Calls before returns at equal times: touching operations count as
  // concurrent, which can only make the check more lenient, never wrong.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    if (a.time != b.time) return a.time < b.time;
    if (a.is_call != b.is_call) return a.is_call;
    return a.op < b.op;
  });
  const int num_entries = static_cast<int>(entries.size());
  {
    std::vector<int> call_of(n, -1);
    for (int e = 0; e < num_entries; ++e) {
      if (entries[e].is_call) {
        call_of[entries[e].op] = e;
      } else {
        entries[call_of[entries[e].op]].ret = e;
      }
    }
  }
  // Doubly linked list over entries; node num_entries is the sentinel.
  const int sentinel = num_entries;
  std::vector<int> next(num_entries + 1), prev(num_entries + 1);
  for (int e = 0; e <= num_entries; ++e) {
    next[e] = e == num_entries ? 0 : e + 1;
    prev[e] = e == 0 ? num_entries : e - 1;
  }
  if (num_entries == 0) next[sentinel] = prev[sentinel] = sentinel;
  auto unlink = [&](int e) {
    next[prev[e]] = next[e];
    prev[next[e]] = prev[e];
  };
  auto relink = [&](int e) {
    next[prev[e]] = e;
    prev[next[e]] = e;
  };

  int required_left = 0;
  for (const PartOp& p : ops) required_left += p.required ? 1 : 0;

  struct Frame {
    int call = 0;
    ModelState state;
  };
  std::vector<Frame> stack;
  ModelState state;
  state.slots.resize(num_slots);
  std::vector<uint64_t> linearized((n + 63) / 64, 0);
  absl::flat_hash_set<CacheEntry> cache;
  const int64_t entry_bytes =
      static_cast<int64_t>(linearized.size() * 8 + num_slots * sizeof(Slot) + 96);
  const auto deadline = std::chrono::steady_clock::now() + options.max_time_per_part;
  int best_depth = -1;
  auto record_best = [&]() {
    if (static_cast<int>(stack.size()) <= best_depth) return;
    best_depth = static_cast<int>(stack.size());
    out.best_prefix.clear();
    for (const Frame& f : stack) out.best_prefix.push_back(entries[f.call].op);
    out.best_state = state;
    out.stuck = -1;
  };
  record_best();

  int cur = next[sentinel];
  for (int64_t iteration = 0;; ++iteration) {
    if (required_left == 0) {
      out.result = SearchResult::kLinearizable;
      break;
    }
    if ((iteration & 1023) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        out.result = SearchResult::kBudget;
        out.budget_reason = absl::StrCat("time budget of ", options.max_time_per_part.count(),
                                         " ms exhausted");
        break;
      }
    }
    if (cur != sentinel && entries[cur].is_call) {
      const int i = entries[cur].op;
      ModelState next_state = state;
      // An optional operation that changes nothing now is as good as one
      // never linearized: skip it.
      if (Apply(ops[i], next_state) && (ops[i].required || !(next_state == state))) {
        linearized[i / 64] |= uint64_t{1} << (i % 64);
        if (cache.insert(CacheEntry{linearized, next_state}).second) {
          out.states = static_cast<int64_t>(cache.size());
          if (out.states > options.max_states_per_part ||
              out.states * entry_bytes > options.max_cache_bytes_per_part) {
            out.result = SearchResult::kBudget;
            out.budget_reason = absl::StrCat("state budget exhausted (", out.states, " states)");
            break;
          }
          stack.push_back(Frame{cur, std::move(state)});
          state = std::move(next_state);
          unlink(cur);
          if (entries[cur].ret >= 0) unlink(entries[cur].ret);
          if (ops[i].required) --required_left;
          record_best();
          cur = next[sentinel];
          continue;
        }
        linearized[i / 64] &= ~(uint64_t{1} << (i % 64));
      }
      cur = next[cur];
      continue;
    }
    // A completion whose operation is not linearized yet (or the end of the
    // list): this branch is dead, undo the last choice.
    if (static_cast<int>(stack.size()) == best_depth && out.stuck < 0 && cur != sentinel) {
      out.stuck = entries[cur].op;
    }
    if (stack.empty()) {
      out.result = SearchResult::kNotLinearizable;
      break;
    }
    Frame f = std::move(stack.back());
    stack.pop_back();
    const int i = entries[f.call].op;
    if (entries[f.call].ret >= 0) relink(entries[f.call].ret);
    relink(f.call);
    linearized[i / 64] &= ~(uint64_t{1} << (i % 64));
    if (ops[i].required) ++required_left;
    state = std::move(f.state);
    cur = next[f.call];
  }
  out.states = static_cast<int64_t>(cache.size());
  return out;
}

// A first, cheaper search problem for a part. Optional (unknown-outcome)
// writes are what makes WGL slow: each may be linearized anywhere. Here
//  - an optional Put/CAS whose (key, value) no read of the part returned
//    (nor a succeeded CAS compared) is dropped (as if it never took effect);
//  - an optional Put/CAS whose (key, value) some read returned, and which is
//    the only write of that value to that key, becomes required, due by the
//    earliest completion of such a read.
// Any linearization of the simplified problem is one of the original (a
// dropped op "never" took effect; a forced one took effect in its window),
// so a pass here is a pass. With drop_unobserved the converse fails (a
// dropped write may be what a failed CAS or a delete needed), so a failure
// proves nothing; without it the problem is equivalent: in every valid
// linearization of the original the only writer of a value a read returned
// precedes that read.
std::vector<PartOp> Simplify(const std::vector<PartOp>& ops, bool drop_unobserved) {
  // (slot, value) -> earliest completion of a read returning it.
  std::map<std::pair<int, int32_t>, int64_t> observed;
  std::map<std::pair<int, int32_t>, int> writers;
  for (const PartOp& p : ops) {
    const OpKind kind = p.op->kind;
    if (kind == OpKind::kPut || kind == OpKind::kTxnCas) ++writers[{p.slot, p.value}];
    if (!p.required) continue;
    auto observe = [&](int slot, int32_t value) {
      auto [it, inserted] = observed.emplace(std::make_pair(slot, value), p.complete_ns);
      if (!inserted) it->second = std::min(it->second, p.complete_ns);
    };
    for (const RangeItem& item : p.items) observe(item.slot, item.value);
    // A CAS that succeeded on `expected` saw that value too.
    if (kind == OpKind::kTxnCas && p.op->succeeded && !p.op->expect_absent) observe(p.slot, p.expected);
  }
  std::vector<PartOp> out;
  out.reserve(ops.size());
  for (const PartOp& p : ops) {
    const OpKind kind = p.op->kind;
    if (p.required || (kind != OpKind::kPut && kind != OpKind::kTxnCas)) {
      out.push_back(p);
      continue;
    }
    auto seen = observed.find({p.slot, p.value});
    if (seen == observed.end()) {
      if (!drop_unobserved) out.push_back(p);
      continue;
    }
    PartOp forced = p;
    if (writers[{p.slot, p.value}] == 1 && seen->second >= p.op->invoke_ns) {
      forced.required = true;
      forced.complete_ns = seen->second;
    }
    out.push_back(std::move(forced));
  }
  return out;
}

// --- partitioning ----------------------------------------------------------

class UnionFind {
 public:
  explicit UnionFind(size_t n) : parent_(n) { std::iota(parent_.begin(), parent_.end(), 0); }
  size_t Find(size_t x) {
    while (parent_[x] != x) {
      parent_[x] = parent_[parent_[x]];
      x = parent_[x];
    }
    return x;
  }
  void Union(size_t a, size_t b) { parent_[Find(a)] = Find(b); }

 private:
  std::vector<size_t> parent_;  // parent_[x] == x for a root
};

// The result keys of a read (kvs of a Range, found of a Get).
std::vector<const KeyValue*> ResultKvs(const Operation& op) {
  std::vector<const KeyValue*> out;
  if (op.kind == OpKind::kGet && op.found.has_value()) out.push_back(&*op.found);
  if (op.kind == OpKind::kRange) {
    for (const KeyValue& kv : op.kvs) out.push_back(&kv);
  }
  return out;
}

// Checks of one read's result that need no other operation.
void CheckReadSelfConsistent(const Operation& op, std::vector<std::string>* problems) {
  // (Not a conditional expression: that would make a temporary std::string.)
  std::string_view range_end;
  if (op.kind == OpKind::kRange) range_end = op.range_end;
  const std::vector<const KeyValue*> kvs = ResultKvs(op);
  for (size_t j = 0; j < kvs.size(); ++j) {
    const KeyValue& kv = *kvs[j];
    if (!InRange(kv.key, op.key, range_end)) {
      problems->push_back(absl::StrCat(Describe(op), ": returned key ", Printable(kv.key),
                                       " outside the requested range"));
    }
    if (j > 0 && !(kvs[j - 1]->key < kv.key)) {
      problems->push_back(absl::StrCat(Describe(op), ": result not sorted by key or has duplicates at ",
                                       Printable(kv.key)));
    }
    if (op.revision != 0 && kv.mod_revision > op.revision) {
      problems->push_back(absl::StrCat(Describe(op), ": key ", Printable(kv.key), " has mod_revision ",
                                       kv.mod_revision, " above the header revision ",
                                       op.revision));
    }
  }
}

// Any read: every returned value was written to its key by a non-failed
// write invoked before the read completed, with a matching revision when
// both are known. (The only check of serializable reads; for linearizable
// ones a quick necessary condition before the search.)
void CheckReadOfWrittenValue(const Operation& read, const std::vector<const Operation*>& writes_by_key_sorted,
                           std::vector<std::string>* problems) {
  for (const KeyValue* kv : ResultKvs(read)) {
    bool matched = false;
    auto it = std::lower_bound(writes_by_key_sorted.begin(), writes_by_key_sorted.end(), kv->key,
                               [](const Operation* w, const std::string& key) { return w->key < key; });
    for (; it != writes_by_key_sorted.end() && (*it)->key == kv->key && !matched; ++it) {
      const Operation& w = **it;
      if (w.value != kv->value || w.invoke_ns > read.complete_ns) continue;
      if (w.kind == OpKind::kTxnCas && w.outcome == Outcome::kOk && !w.succeeded) continue;
      const int64_t w_rev = w.outcome == Outcome::kOk ? w.revision : 0;
      if (w_rev != 0 && kv->mod_revision != 0 && w_rev != kv->mod_revision) continue;
      matched = true;
    }
    if (!matched) {
      problems->push_back(absl::StrCat(Describe(read), ": returned ", Printable(kv->key), "=",
                                       Printable(kv->value), "@", kv->mod_revision,
                                       ", which no write to that key produced"));
    }
  }
}

// Revision order against real time, over all linearizable operations with a
// known revision: if A completed before B was invoked then B's revision is
// >= A's, and > A's if B is a write.
void CheckRevisionsAgainstRealTime(const std::vector<const Operation*>& ops,
                                   std::vector<std::string>* problems) {
  std::vector<const Operation*> by_complete = ops, by_invoke = ops;
  std::sort(by_complete.begin(), by_complete.end(),
            [](const Operation* a, const Operation* b) { return a->complete_ns < b->complete_ns; });
  std::sort(by_invoke.begin(), by_invoke.end(),
            [](const Operation* a, const Operation* b) { return a->invoke_ns < b->invoke_ns; });
  const Operation* max_done = nullptr;  // completed op with the largest revision so far
  size_t c = 0;
  constexpr size_t kMaxReports = 20;
  size_t reports = 0;
  for (const Operation* b : by_invoke) {
    while (c < by_complete.size() && by_complete[c]->complete_ns < b->invoke_ns) {
      if (max_done == nullptr || by_complete[c]->revision > max_done->revision) max_done = by_complete[c];
      ++c;
    }
    if (max_done == nullptr) continue;
    const bool write = WroteRevision(*b);
    if (b->revision < max_done->revision || (write && b->revision == max_done->revision)) {
      if (++reports > kMaxReports) break;
      problems->push_back(absl::StrCat(Describe(*b), " was invoked after ", Describe(*max_done),
                                       " completed but reports ", write ? "write " : "",
                                       "revision ", b->revision,
                                       write ? " <= " : " < ", max_done->revision,
                                       " (revisions must follow real time)"));
    }
  }
}

// Linearizable reads: a returned kv's mod_revision is at least the revision
// of every write to that key that completed before the read was invoked (a
// key's mod_revision only grows; once deleted it is absent, not older).
void CheckStaleModRevisions(const History& history, std::vector<std::string>* problems) {
  struct Done {
    int64_t complete_ns;
    const Operation* op;  // the largest revision completed so far (prefix max)
  };
  std::map<std::string, std::vector<Done>> by_key;
  for (const Operation& op : history.operations) {
    if (WroteRevision(op) && op.revision != 0) by_key[op.key].push_back(Done{op.complete_ns, &op});
  }
  for (auto& [key, done] : by_key) {
    std::sort(done.begin(), done.end(),
              [](const Done& a, const Done& b) { return a.complete_ns < b.complete_ns; });
    for (size_t i = 1; i < done.size(); ++i) {
      if (done[i].op->revision < done[i - 1].op->revision) done[i].op = done[i - 1].op;
    }
  }
  constexpr size_t kMaxReports = 20;
  size_t reports = 0;
  for (const Operation& read : history.operations) {
    if (read.outcome != Outcome::kOk || read.serializable || !IsRead(read)) continue;
    for (const KeyValue* kv : ResultKvs(read)) {
      auto it = by_key.find(kv->key);
      if (kv->mod_revision == 0 || it == by_key.end()) continue;
      const std::vector<Done>& done = it->second;
      auto after = std::lower_bound(done.begin(), done.end(), read.invoke_ns,
                                    [](const Done& d, int64_t t) { return d.complete_ns < t; });
      if (after == done.begin()) continue;
      const Operation& latest = *std::prev(after)->op;
      if (latest.revision > kv->mod_revision && ++reports <= kMaxReports) {
        problems->push_back(absl::StrCat(Describe(read), ": stale read of ", Printable(kv->key), " at mod_revision ",
                                         kv->mod_revision, " although ", Describe(latest),
                                         " completed before the read was invoked"));
      }
    }
  }
}

std::string DescribeSlot(const Slot& slot, const std::vector<std::string>& values) {
  if (slot.value < 0) return "absent";
  return absl::StrCat(Printable(values[slot.value]), "@",
                      slot.mod_revision == 0 ? std::string("?") : absl::StrCat(slot.mod_revision),
                      slot.lease != 0 ? absl::StrCat(" lease ", slot.lease) : std::string());
}

}  // namespace

CheckReport CheckLinearizability(const History& history, const LinearizabilityOptions& options) {
  CheckReport report;
  std::vector<std::string> violations;
  std::vector<std::string> inconclusive;

  // Step 1 and 2: global checks.
  std::vector<const Operation*> writes;  // non-failed Put and CAS, by key
  std::vector<const Operation*> relevant;  // linearizable ops kept for the search
  std::vector<const Operation*> with_revision;
  absl::flat_hash_map<int64_t, const Operation*> write_revisions;
  for (const Operation& op : history.operations) {
    if (op.outcome == Outcome::kFailed) continue;
    if ((op.kind == OpKind::kPut || op.kind == OpKind::kTxnCas)) writes.push_back(&op);
    if (op.outcome == Outcome::kOk) {
      if (IsRead(op)) CheckReadSelfConsistent(op, &violations);
      if (WroteRevision(op) && op.revision != 0) {
        auto [it, inserted] = write_revisions.emplace(op.revision, &op);
        if (!inserted) {
          violations.push_back(absl::StrCat(Describe(*it->second), " and ", Describe(op),
                                            " both report write revision ", op.revision));
        }
      }
      if (op.revision != 0 && !op.serializable) with_revision.push_back(&op);
    }
    if (IsRead(op) && (op.serializable || op.outcome != Outcome::kOk)) continue;
    relevant.push_back(&op);
  }
  // A key put with a lease disappears when the lease is revoked or expires,
  // which no KV operation records: each such Put gets an unknown-outcome
  // Delete of its key, invoked with it (it may take effect any time after,
  // or never). The lease checker covers the other direction.
  std::vector<Operation> lease_deletes;
  for (const Operation& op : history.operations) {
    if (op.kind == OpKind::kPut && op.lease != 0 && op.outcome != Outcome::kFailed) {
      Operation del;
      del.id = op.id;
      del.client = op.client;
      del.kind = OpKind::kDelete;
      del.key = op.key;
      del.invoke_ns = op.invoke_ns;
      del.complete_ns = kNeverCompleted;
      del.outcome = Outcome::kUnknown;
      del.error = absl::StrCat("implied by lease ", op.lease);
      lease_deletes.push_back(std::move(del));
    }
  }
  for (const Operation& del : lease_deletes) relevant.push_back(&del);  // no reallocation after this
  CheckRevisionsAgainstRealTime(with_revision, &violations);
  CheckStaleModRevisions(history, &violations);
  std::stable_sort(writes.begin(), writes.end(),
                   [](const Operation* a, const Operation* b) { return a->key < b->key; });
  for (const Operation& op : history.operations) {
    if (op.outcome == Outcome::kOk && IsRead(op)) {
      CheckReadOfWrittenValue(op, writes, &violations);
    }
  }

  // Step 3: partition.
  std::vector<std::string> keys;
  for (const Operation* op : relevant) {
    if (op->kind != OpKind::kRange) keys.push_back(op->key);
    for (const KeyValue* kv : ResultKvs(*op)) keys.push_back(kv->key);
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  auto key_index = [&](const std::string& key) {
    return static_cast<size_t>(std::lower_bound(keys.begin(), keys.end(), key) - keys.begin());
  };
  const size_t n = relevant.size();
  UnionFind uf(n + keys.size());
  for (size_t i = 0; i < n; ++i) {
    const Operation& op = *relevant[i];
    if (op.kind != OpKind::kRange) {
      uf.Union(i, n + key_index(op.key));
      continue;
    }
    for (size_t k = key_index(op.key); k < keys.size(); ++k) {
      if (!InRange(keys[k], op.key, op.range_end)) break;
      uf.Union(i, n + k);
    }
  }
  std::map<size_t, std::vector<size_t>> parts_by_root;  // root -> relevant indices (id order)
  for (size_t i = 0; i < n; ++i) parts_by_root[uf.Find(i)].push_back(i);
  std::vector<std::vector<size_t>> parts;
  for (auto& [root, members] : parts_by_root) parts.push_back(std::move(members));
  std::sort(parts.begin(), parts.end(),
            [&](const auto& a, const auto& b) { return relevant[a[0]]->id < relevant[b[0]]->id; });
  report.parts = static_cast<int64_t>(parts.size());
  report.operations_checked = static_cast<int64_t>(relevant.size());

  // Step 4: search each part.
  for (size_t part_number = 0; part_number < parts.size(); ++part_number) {
    const std::vector<size_t>& members = parts[part_number];
    std::vector<size_t> part_keys;  // global key indices, sorted
    for (size_t i : members) {
      const Operation& op = *relevant[i];
      if (op.kind != OpKind::kRange) part_keys.push_back(key_index(op.key));
      for (const KeyValue* kv : ResultKvs(op)) part_keys.push_back(key_index(kv->key));
      if (op.kind == OpKind::kRange) {
        for (size_t k = key_index(op.key); k < keys.size() && InRange(keys[k], op.key, op.range_end); ++k) {
          part_keys.push_back(k);
        }
      }
    }
    std::sort(part_keys.begin(), part_keys.end());
    part_keys.erase(std::unique(part_keys.begin(), part_keys.end()), part_keys.end());
    auto slot_of = [&](const std::string& key) {
      return static_cast<int>(std::lower_bound(part_keys.begin(), part_keys.end(), key_index(key)) -
                              part_keys.begin());
    };
    std::vector<std::string> values;
    absl::flat_hash_map<std::string, int32_t> value_ids;
    auto intern = [&](const std::string& v) {
      auto [it, inserted] = value_ids.emplace(v, static_cast<int32_t>(values.size()));
      if (inserted) values.push_back(v);
      return it->second;
    };
    std::vector<PartOp> ops;
    bool malformed = false;
    for (size_t i : members) {
      const Operation& op = *relevant[i];
      PartOp p;
      p.op = &op;
      p.required = op.outcome == Outcome::kOk;
      p.complete_ns = op.complete_ns;
      if (op.kind != OpKind::kRange) p.slot = slot_of(op.key);
      if (op.kind == OpKind::kPut || op.kind == OpKind::kTxnCas) p.value = intern(op.value);
      if (op.kind == OpKind::kTxnCas && !op.expect_absent) p.expected = intern(op.expected);
      if (op.kind == OpKind::kRange) {
        p.lo = static_cast<int>(part_keys.size());
        p.hi = 0;
        for (size_t s = 0; s < part_keys.size(); ++s) {
          if (InRange(keys[part_keys[s]], op.key, op.range_end)) {
            p.lo = std::min(p.lo, static_cast<int>(s));
            p.hi = std::max(p.hi, static_cast<int>(s) + 1);
          }
        }
        if (p.hi < p.lo) p.lo = p.hi = 0;
      }
      for (const KeyValue* kv : ResultKvs(op)) {
        p.items.push_back(RangeItem{slot_of(kv->key), intern(kv->value), kv->mod_revision, kv->lease});
        if (op.kind == OpKind::kGet && kv->key != op.key) malformed = true;
      }
      ops.push_back(std::move(p));
    }
    std::vector<std::string> key_names;
    for (size_t k = 0; k < part_keys.size() && k < 4; ++k) key_names.push_back(Printable(keys[part_keys[k]]));
    if (part_keys.size() > 4) key_names.push_back(absl::StrCat("... ", part_keys.size(), " keys"));
    const std::string part_name = absl::StrCat("part ", part_number + 1, " (keys ",
                                               absl::StrJoin(key_names, ", "), "; ", ops.size(), " ops)");
    if (malformed) {
      violations.push_back(absl::StrCat(part_name, ": a get returned a different key than it asked for"));
      continue;
    }
    // Why a search failed: the longest prefix and the op that could not follow.
    auto explain = [&](const SearchOutcome& result, const std::vector<PartOp>& searched) {
      std::string text = absl::StrCat("longest linearizable prefix has ", result.best_prefix.size(),
                                       " of ", searched.size(), " ops");
      if (!result.best_prefix.empty()) {
        std::vector<std::string> tail;
        size_t from = result.best_prefix.size() > 3 ? result.best_prefix.size() - 3 : 0;
        for (size_t j = from; j < result.best_prefix.size(); ++j) {
          tail.push_back(Describe(*searched[result.best_prefix[j]].op));
        }
        absl::StrAppend(&text, ", ending ", absl::StrJoin(tail, "; "));
      }
      if (result.stuck >= 0) {
        const PartOp& stuck = searched[result.stuck];
        absl::StrAppend(&text, "; then ", Describe(*stuck.op), " cannot be linearized");
        if (stuck.slot >= 0 && stuck.slot < static_cast<int>(result.best_state.slots.size())) {
          absl::StrAppend(&text, " (model has ", Printable(stuck.op->key), " = ",
                          DescribeSlot(result.best_state.slots[stuck.slot], values), ")");
        }
      }
      return text;
    };
    const std::vector<PartOp> simplified = Simplify(ops, /*drop_unobserved=*/true);
    std::optional<SearchOutcome> first;
    if (simplified.size() != ops.size() ||
        !std::equal(simplified.begin(), simplified.end(), ops.begin(),
                    [](const PartOp& a, const PartOp& b) { return a.required == b.required; })) {
      // A heuristic: worth a tenth of the budget, as proving it has no
      // solution is wasted work.
      LinearizabilityOptions quick = options;
      quick.max_states_per_part = std::min<int64_t>(options.max_states_per_part / 10, 200'000);
      quick.max_time_per_part = options.max_time_per_part / 10;
      quick.max_cache_bytes_per_part = options.max_cache_bytes_per_part / 10;
      first = Search(simplified, part_keys.size(), quick);
      if (first->result == SearchResult::kLinearizable) continue;
    }
    // The exact problem, with observed unknown writes forced (equivalent).
    const std::vector<PartOp> exact = Simplify(ops, /*drop_unobserved=*/false);
    SearchOutcome result = Search(exact, part_keys.size(), options);
    if (result.result == SearchResult::kLinearizable) continue;
    if (result.result == SearchResult::kBudget) {
      std::string text = absl::StrCat(part_name, ": inconclusive, ", result.budget_reason,
                                       "; longest linearizable prefix so far ",
                                       result.best_prefix.size(), " ops");
      if (first.has_value() && first->result == SearchResult::kNotLinearizable) {
        absl::StrAppend(&text, "; a lead: assuming the ", ops.size() - simplified.size(),
                        " unknown-outcome writes whose values no read returned never took effect, ",
                        explain(*first, simplified));
      }
      inconclusive.push_back(std::move(text));
      continue;
    }
    std::string text = absl::StrCat(part_name, ": not linearizable; ", explain(result, exact));
    violations.push_back(std::move(text));
  }

  report.problems = std::move(violations);
  if (!report.problems.empty()) {
    report.verdict = Verdict::kViolation;
  } else if (!inconclusive.empty()) {
    report.verdict = Verdict::kInconclusive;
  }
  for (std::string& s : inconclusive) report.problems.push_back(std::move(s));
  return report;
}

}  // namespace cppetcd::robustness
