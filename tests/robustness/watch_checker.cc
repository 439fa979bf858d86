// CheckWatches: etcd's watch guarantees, per watch and across watches.
//
// Per watch, over its responses in arrival order:
//  - every event's key is in the watched range and its revision is at or
//    above the watch's start;
//  - revisions never go down (out of order), no (key, mod_revision) twice
//    (duplicate), a revision appears in one response only (split), and no
//    event is above its response's header revision;
//  - an event at a revision that a KV operation of the history reports as
//    its write must be that write (key, put or delete, value, lease); a put
//    event at any other revision must carry a value some write (not failed)
//    put to that key;
//  - no gaps: every write of the history with outcome kOk and a known
//    revision, to a key in range, with start <= revision <= the highest
//    header revision the watch received, is among the watch's events --
//    unless the watch was canceled as compacted.
//  - a resumed watch starts at or before the revision after the one its
//    predecessor provably covered (its last event, or the highest header it
//    saw when its gap check covered that); the gap check of the resumed
//    watch starts there, so a skipped revision is reported as a gap too.
// Across watches: two events for the same (key, mod_revision) agree.
//
// Start of a watch opened "from now" (start_revision 0): the first
// response's header revision + 1 if it carries no events (etcd's "created"
// response), else the first event's revision.
//
// Not checked: events of revisions no operation of the history reports
// (e.g. deletes by lease expiry) beyond value plausibility; progress
// notifications; etcd's catch-up batching (a catch-up response carrying
// more than 1000 revisions has the then-current header, so a run that ends
// right after one could be reported as a gap -- not seen with small runs).
#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "checker.h"
#include "checker_internal.h"

namespace cppetcd::robustness {
namespace {

using internal::Describe;
using internal::InRange;
using internal::Printable;

// What a write of the history did at its revision.
struct ExpectedEvent {
  const Operation* op = nullptr;
  bool is_delete = false;
  std::string key;
  std::string value;
  int64_t lease = 0;
};

std::optional<ExpectedEvent> EventOf(const Operation& op) {
  if (op.outcome != Outcome::kOk || op.revision == 0) return std::nullopt;
  switch (op.kind) {
    case OpKind::kPut:
      return ExpectedEvent{&op, false, op.key, op.value, op.lease};
    case OpKind::kTxnCas:
      if (!op.succeeded) return std::nullopt;
      return ExpectedEvent{&op, false, op.key, op.value, 0};
    case OpKind::kDelete:
      if (op.deleted == 0) return std::nullopt;
      return ExpectedEvent{&op, true, op.key, "", 0};
    default:
      return std::nullopt;
  }
}

std::string DescribeEvent(const WatchEvent& e) {
  if (e.is_delete) return absl::StrCat("delete(", Printable(e.kv.key), ")@", e.kv.mod_revision);
  return absl::StrCat("put(", Printable(e.kv.key), "=", Printable(e.kv.value), ")@",
                      e.kv.mod_revision, e.kv.lease != 0 ? absl::StrCat(" lease ", e.kv.lease) : "");
}

struct WatchSummary {
  const WatchRecord* watch = nullptr;
  std::vector<const WatchResponseRecord*> responses;  // arrival order
  int64_t last_event_revision = 0;                    // 0 = no events
  int64_t first_event_revision = 0;
  int64_t max_header = 0;
  bool compacted = false;
  std::optional<int64_t> effective_start;  // first revision the watch must cover
};

constexpr int kMaxReportsPerWatch = 8;

}  // namespace

CheckReport CheckWatches(const History& history) {
  CheckReport report;
  std::vector<std::string>& problems = report.problems;
  bool malformed = false;

  std::map<int64_t, ExpectedEvent> writes_by_revision;
  std::map<std::string, std::set<std::string>> values_by_key;  // non-failed Put/CAS values
  for (const Operation& op : history.operations) {
    if (op.outcome != Outcome::kFailed && (op.kind == OpKind::kPut || op.kind == OpKind::kTxnCas)) {
      values_by_key[op.key].insert(op.value);
    }
    if (auto e = EventOf(op)) writes_by_revision.emplace(op.revision, std::move(*e));
  }

  std::map<int64_t, WatchSummary> watches;
  for (const WatchRecord& w : history.watches) {
    if (!watches.emplace(w.watch, WatchSummary{&w}).second) {
      problems.push_back(absl::StrCat("watch ", w.watch, " recorded twice"));
      malformed = true;
    }
  }
  for (const WatchResponseRecord& r : history.watch_responses) {
    auto it = watches.find(r.watch);
    if (it == watches.end()) {
      problems.push_back(absl::StrCat("response for unrecorded watch ", r.watch));
      malformed = true;
      continue;
    }
    WatchSummary& s = it->second;
    s.responses.push_back(&r);
    s.max_header = std::max(s.max_header, r.header_revision);
    if (r.canceled && r.compact_revision != 0) s.compacted = true;
    for (const WatchEvent& e : r.events) {
      if (s.first_event_revision == 0) s.first_event_revision = e.kv.mod_revision;
      s.last_event_revision = std::max(s.last_event_revision, e.kv.mod_revision);
    }
  }

  // Effective starts: own start revision, else derived; for a resumed watch
  // no later than where its predecessor stopped. Watches are visited in id
  // order, so a predecessor (a smaller id) is done before its successor.
  std::vector<std::string> violations;
  auto own_start = [](const WatchSummary& s) -> std::optional<int64_t> {
    if (s.watch->start_revision != 0) return s.watch->start_revision;
    if (!s.responses.empty() && s.responses[0]->events.empty() && !s.responses[0]->canceled) {
      return s.responses[0]->header_revision + 1;
    }
    if (s.first_event_revision != 0) return s.first_event_revision;
    return std::nullopt;
  };
  // The revision up to which `p` provably delivered every event: its last
  // event, or the highest header it saw if its gap check covers that.
  auto covered = [](const WatchSummary& p) -> std::optional<int64_t> {
    int64_t c = p.last_event_revision;
    if (!p.compacted && p.effective_start.has_value()) c = std::max(c, p.max_header);
    if (c == 0) return std::nullopt;
    return c;
  };
  for (auto& [id, s] : watches) {
    std::optional<int64_t> start = own_start(s);
    if (s.watch->resumes != 0) {
      auto pred = watches.find(s.watch->resumes);
      if (pred == watches.end() || pred->first == id) {
        problems.push_back(absl::StrCat("watch ", id, " resumes unrecorded watch ", s.watch->resumes));
        malformed = true;
      } else {
        const WatchSummary& p = pred->second;
        std::optional<int64_t> expected = p.effective_start;
        if (std::optional<int64_t> c = covered(p)) {
          expected = *c + 1;
          if (s.watch->start_revision == 0 || s.watch->start_revision > *expected) {
            violations.push_back(absl::StrCat(
                "watch ", id, " resumes watch ", p.watch->watch, " which delivered everything up to revision ",
                *c, " (last event at ", p.last_event_revision, ") but starts at ",
                s.watch->start_revision == 0 ? std::string("the current revision")
                                             : absl::StrCat("revision ", s.watch->start_revision),
                " (expected ", *expected, " or earlier)"));
          }
        }
        if (expected.has_value()) start = start.has_value() ? std::min(*start, *expected) : expected;
      }
    }
    s.effective_start = start;
  }

  // Per-watch order, content and gap checks; cross-watch agreement.
  struct Seen {
    int64_t watch;
    WatchEvent event;
  };
  std::map<std::pair<std::string, int64_t>, Seen> seen_global;
  for (auto& [id, s] : watches) {
    const WatchRecord& w = *s.watch;
    int reports = 0;
    auto report_problem = [&](std::string text) {
      if (++reports <= kMaxReportsPerWatch) violations.push_back(std::move(text));
    };
    std::set<std::pair<std::string, int64_t>> seen;  // (key, mod_revision)
    int64_t prev_revision = 0;
    size_t prev_revision_response = 0;
    for (size_t ri = 0; ri < s.responses.size(); ++ri) {
      const WatchResponseRecord& r = *s.responses[ri];
      for (const WatchEvent& e : r.events) {
        const int64_t rev = e.kv.mod_revision;
        const std::string where = absl::StrCat("watch ", id, " response ", ri + 1, ": event ", DescribeEvent(e));
        if (!seen.emplace(e.kv.key, rev).second) {
          report_problem(absl::StrCat(where, " is a duplicate"));
          continue;
        }
        if (!InRange(e.kv.key, w.key, w.range_end)) {
          report_problem(absl::StrCat(where, " is outside the watched range"));
        }
        if (s.effective_start.has_value() && rev < *s.effective_start) {
          report_problem(absl::StrCat(where, " is below the watch's start revision ", *s.effective_start));
        }
        if (r.header_revision != 0 && rev > r.header_revision) {
          report_problem(absl::StrCat(where, " is above the response's header revision ", r.header_revision));
        }
        if (rev < prev_revision) {
          report_problem(absl::StrCat(where, " is out of order (after revision ", prev_revision, ")"));
        } else if (rev == prev_revision && ri != prev_revision_response) {
          report_problem(absl::StrCat(where, ": revision ", rev, " is split across responses ",
                                      prev_revision_response + 1, " and ", ri + 1));
        }
        if (rev >= prev_revision) {
          prev_revision = rev;
          prev_revision_response = ri;
        }
        // Content against the KV history.
        if (auto it = writes_by_revision.find(rev); it != writes_by_revision.end()) {
          const ExpectedEvent& x = it->second;
          if (x.key != e.kv.key || x.is_delete != e.is_delete ||
              (!x.is_delete && (x.value != e.kv.value || x.lease != e.kv.lease))) {
            report_problem(absl::StrCat(where, " does not match the write at that revision: ",
                                        Describe(*x.op)));
          }
        } else if (!e.is_delete) {
          auto v = values_by_key.find(e.kv.key);
          if (v == values_by_key.end() || !v->second.contains(e.kv.value)) {
            report_problem(absl::StrCat(where, " carries a value never written to that key"));
          }
        }
        // Agreement with other watches.
        auto [git, inserted] = seen_global.emplace(std::make_pair(e.kv.key, rev), Seen{id, e});
        if (!inserted && git->second.watch != id) {
          const WatchEvent& o = git->second.event;
          if (o.is_delete != e.is_delete || (!e.is_delete && (o.kv.value != e.kv.value || o.kv.lease != e.kv.lease))) {
            report_problem(absl::StrCat(where, " disagrees with watch ", git->second.watch,
                                        " which saw ", DescribeEvent(o)));
          }
        }
      }
    }
    // Gaps.
    if (s.compacted || !s.effective_start.has_value()) continue;
    for (auto it = writes_by_revision.lower_bound(*s.effective_start);
         it != writes_by_revision.end() && it->first <= s.max_header; ++it) {
      const ExpectedEvent& x = it->second;
      if (!InRange(x.key, w.key, w.range_end)) continue;
      if (seen.contains({x.key, it->first})) continue;
      report_problem(absl::StrCat("watch ", id, " (from revision ", *s.effective_start,
                                  ", saw headers up to ", s.max_header, ") missed revision ", it->first,
                                  ": ", Describe(*x.op)));
    }
    if (reports > kMaxReportsPerWatch) {
      violations.push_back(absl::StrCat("watch ", id, ": ", reports - kMaxReportsPerWatch,
                                        " more problems not listed"));
    }
    report.operations_checked += static_cast<int64_t>(s.responses.size());
  }

  if (!violations.empty()) {
    report.verdict = Verdict::kViolation;
  } else if (malformed) {
    report.verdict = Verdict::kInconclusive;
  }
  for (std::string& v : violations) problems.push_back(std::move(v));
  return report;
}

}  // namespace cppetcd::robustness
