// JSON Lines format of a History (see history_io.h). One object per line:
//   {"type":"op","id":7,"client":2,"kind":"put","key_b64":"..","value_b64":"..",
//    "lease":0,"invoke_ns":..,"complete_ns":..,"outcome":"ok","revision":12,...}
//   {"type":"lease_op","id":8,"kind":"grant|keep_alive|revoke|expired",...}
//   {"type":"watch","watch":1,"key_b64":"..","range_end_b64":"..",...}
//   {"type":"watch_response","watch":1,"header_revision":..,"events":[
//      {"is_delete":false,"kv":{"key_b64":..,"value_b64":..,"mod_revision":..}}]}
// Every byte string is base64 (field name ends in "_b64"); numbers are JSON
// integers (complete_ns of an unanswered operation is INT64_MAX). A missing
// field reads as its default; a field of the wrong type is an error.
#include "history_io.h"

#include <time.h>

#include <algorithm>
#include <fstream>
#include <string_view>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace cppetcd::robustness {
namespace {

using Json = nlohmann::json;

const char* KindName(OpKind kind) {
  switch (kind) {
    case OpKind::kPut: return "put";
    case OpKind::kGet: return "get";
    case OpKind::kDelete: return "delete";
    case OpKind::kTxnCas: return "txn_cas";
    case OpKind::kRange: return "range";
  }
  return "?";
}

const char* LeaseKindName(LeaseOpKind kind) {
  switch (kind) {
    case LeaseOpKind::kGrant: return "grant";
    case LeaseOpKind::kKeepAlive: return "keep_alive";
    case LeaseOpKind::kRevoke: return "revoke";
    case LeaseOpKind::kExpired: return "expired";
  }
  return "?";
}

const char* OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kOk: return "ok";
    case Outcome::kFailed: return "failed";
    case Outcome::kUnknown: return "unknown";
  }
  return "?";
}

std::string B64(const std::string& s) { return absl::Base64Escape(s); }

Json KvToJson(const KeyValue& kv) {
  return Json{{"key_b64", B64(kv.key)},
              {"value_b64", B64(kv.value)},
              {"mod_revision", kv.mod_revision},
              {"create_revision", kv.create_revision},
              {"version", kv.version},
              {"lease", kv.lease}};
}

Json OpToJson(const Operation& op) {
  Json j{{"type", "op"},
         {"id", op.id},
         {"client", op.client},
         {"kind", KindName(op.kind)},
         {"key_b64", B64(op.key)},
         {"invoke_ns", op.invoke_ns},
         {"complete_ns", op.complete_ns},
         {"outcome", OutcomeName(op.outcome)},
         {"revision", op.revision},
         {"member", op.member}};
  if (!op.range_end.empty()) j["range_end_b64"] = B64(op.range_end);
  if (op.kind == OpKind::kPut || op.kind == OpKind::kTxnCas) j["value_b64"] = B64(op.value);
  if (op.kind == OpKind::kTxnCas) {
    j["expected_b64"] = B64(op.expected);
    j["expect_absent"] = op.expect_absent;
    j["succeeded"] = op.succeeded;
  }
  if (op.lease != 0) j["lease"] = op.lease;
  if (op.serializable) j["serializable"] = true;
  if (!op.error.empty()) j["error"] = op.error;
  if (op.kind == OpKind::kDelete) j["deleted"] = op.deleted;
  if (op.found.has_value()) j["found"] = KvToJson(*op.found);
  if (!op.kvs.empty()) {
    Json arr = Json::array();
    for (const KeyValue& kv : op.kvs) arr.push_back(KvToJson(kv));
    j["kvs"] = std::move(arr);
  }
  return j;
}

Json LeaseOpToJson(const LeaseOperation& op) {
  Json j{{"type", "lease_op"},
         {"id", op.id},
         {"client", op.client},
         {"kind", LeaseKindName(op.kind)},
         {"lease", op.lease},
         {"ttl_seconds", op.ttl_seconds},
         {"invoke_ns", op.invoke_ns},
         {"complete_ns", op.complete_ns},
         {"outcome", OutcomeName(op.outcome)}};
  if (!op.error.empty()) j["error"] = op.error;
  if (op.not_found) j["not_found"] = true;
  return j;
}

Json WatchToJson(const WatchRecord& w) {
  Json j{{"type", "watch"},
         {"watch", w.watch},
         {"client", w.client},
         {"key_b64", B64(w.key)},
         {"start_revision", w.start_revision},
         {"resumes", w.resumes},
         {"member", w.member}};
  if (!w.range_end.empty()) j["range_end_b64"] = B64(w.range_end);
  return j;
}

Json WatchResponseToJson(const WatchResponseRecord& r) {
  Json events = Json::array();
  for (const WatchEvent& e : r.events) {
    events.push_back(Json{{"is_delete", e.is_delete}, {"kv", KvToJson(e.kv)}});
  }
  Json j{{"type", "watch_response"},
         {"watch", r.watch},
         {"time_ns", r.time_ns},
         {"header_revision", r.header_revision},
         {"events", std::move(events)}};
  if (r.canceled) j["canceled"] = true;
  if (r.compact_revision != 0) j["compact_revision"] = r.compact_revision;
  return j;
}

// Field readers: a missing field leaves `out` unchanged; a wrong type is an
// error naming the field. Not thread-safe (plain functions of a Json).
absl::Status ReadInt(const Json& j, const char* name, int64_t* out) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number_integer()) {
    return absl::InvalidArgumentError(absl::StrCat("field \"", name, "\" is not an integer"));
  }
  *out = it->get<int64_t>();
  return absl::OkStatus();
}

absl::Status ReadInt(const Json& j, const char* name, int* out) {
  int64_t v = *out;
  absl::Status s = ReadInt(j, name, &v);
  if (!s.ok()) return s;
  *out = static_cast<int>(v);
  return absl::OkStatus();
}

absl::Status ReadBool(const Json& j, const char* name, bool* out) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) {
    return absl::InvalidArgumentError(absl::StrCat("field \"", name, "\" is not a boolean"));
  }
  *out = it->get<bool>();
  return absl::OkStatus();
}

absl::Status ReadString(const Json& j, const char* name, std::string* out) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("field \"", name, "\" is not a string"));
  }
  *out = it->get<std::string>();
  return absl::OkStatus();
}

absl::Status ReadB64(const Json& j, const char* name, std::string* out) {
  std::string encoded;
  bool present = j.contains(name);
  absl::Status s = ReadString(j, name, &encoded);
  if (!s.ok() || !present) return s;
  if (!absl::Base64Unescape(encoded, out)) {
    return absl::InvalidArgumentError(absl::StrCat("field \"", name, "\" is not base64"));
  }
  return absl::OkStatus();
}

#define CPPETCD_RETURN_IF_ERROR(expr)      \
  do {                                      \
    absl::Status status_ = (expr);          \
    if (!status_.ok()) return status_;      \
  } while (0)

absl::Status ReadOutcome(const Json& j, Outcome* out) {
  std::string name = "unknown";
  CPPETCD_RETURN_IF_ERROR(ReadString(j, "outcome", &name));
  if (name == "ok") {
    *out = Outcome::kOk;
  } else if (name == "failed") {
    *out = Outcome::kFailed;
  } else if (name == "unknown") {
    *out = Outcome::kUnknown;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown outcome \"", name, "\""));
  }
  return absl::OkStatus();
}

absl::Status KvFromJson(const Json& j, KeyValue* kv) {
  if (!j.is_object()) return absl::InvalidArgumentError("key-value is not an object");
  CPPETCD_RETURN_IF_ERROR(ReadB64(j, "key_b64", &kv->key));
  CPPETCD_RETURN_IF_ERROR(ReadB64(j, "value_b64", &kv->value));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "mod_revision", &kv->mod_revision));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "create_revision", &kv->create_revision));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "version", &kv->version));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "lease", &kv->lease));
  return absl::OkStatus();
}

absl::Status OpFromJson(const Json& j, Operation* op) {
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "id", &op->id));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "client", &op->client));
  std::string kind;
  CPPETCD_RETURN_IF_ERROR(ReadString(j, "kind", &kind));
  if (kind == "put") {
    op->kind = OpKind::kPut;
  } else if (kind == "get") {
    op->kind = OpKind::kGet;
  } else if (kind == "delete") {
    op->kind = OpKind::kDelete;
  } else if (kind == "txn_cas") {
    op->kind = OpKind::kTxnCas;
  } else if (kind == "range") {
    op->kind = OpKind::kRange;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown op kind \"", kind, "\""));
  }
  CPPETCD_RETURN_IF_ERROR(ReadB64(j, "key_b64", &op->key));
  CPPETCD_RETURN_IF_ERROR(ReadB64(j, "range_end_b64", &op->range_end));
  CPPETCD_RETURN_IF_ERROR(ReadB64(j, "value_b64", &op->value));
  CPPETCD_RETURN_IF_ERROR(ReadB64(j, "expected_b64", &op->expected));
  CPPETCD_RETURN_IF_ERROR(ReadBool(j, "expect_absent", &op->expect_absent));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "lease", &op->lease));
  CPPETCD_RETURN_IF_ERROR(ReadBool(j, "serializable", &op->serializable));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "invoke_ns", &op->invoke_ns));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "complete_ns", &op->complete_ns));
  CPPETCD_RETURN_IF_ERROR(ReadOutcome(j, &op->outcome));
  CPPETCD_RETURN_IF_ERROR(ReadString(j, "error", &op->error));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "revision", &op->revision));
  CPPETCD_RETURN_IF_ERROR(ReadBool(j, "succeeded", &op->succeeded));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "deleted", &op->deleted));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "member", &op->member));
  if (auto it = j.find("found"); it != j.end() && !it->is_null()) {
    KeyValue kv;
    CPPETCD_RETURN_IF_ERROR(KvFromJson(*it, &kv));
    op->found = std::move(kv);
  }
  if (auto it = j.find("kvs"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) return absl::InvalidArgumentError("field \"kvs\" is not an array");
    for (const Json& e : *it) {
      KeyValue kv;
      CPPETCD_RETURN_IF_ERROR(KvFromJson(e, &kv));
      op->kvs.push_back(std::move(kv));
    }
  }
  return absl::OkStatus();
}

absl::Status LeaseOpFromJson(const Json& j, LeaseOperation* op) {
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "id", &op->id));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "client", &op->client));
  std::string kind;
  CPPETCD_RETURN_IF_ERROR(ReadString(j, "kind", &kind));
  if (kind == "grant") {
    op->kind = LeaseOpKind::kGrant;
  } else if (kind == "keep_alive") {
    op->kind = LeaseOpKind::kKeepAlive;
  } else if (kind == "revoke") {
    op->kind = LeaseOpKind::kRevoke;
  } else if (kind == "expired") {
    op->kind = LeaseOpKind::kExpired;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown lease op kind \"", kind, "\""));
  }
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "lease", &op->lease));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "ttl_seconds", &op->ttl_seconds));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "invoke_ns", &op->invoke_ns));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "complete_ns", &op->complete_ns));
  CPPETCD_RETURN_IF_ERROR(ReadOutcome(j, &op->outcome));
  CPPETCD_RETURN_IF_ERROR(ReadString(j, "error", &op->error));
  CPPETCD_RETURN_IF_ERROR(ReadBool(j, "not_found", &op->not_found));
  return absl::OkStatus();
}

absl::Status WatchFromJson(const Json& j, WatchRecord* w) {
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "watch", &w->watch));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "client", &w->client));
  CPPETCD_RETURN_IF_ERROR(ReadB64(j, "key_b64", &w->key));
  CPPETCD_RETURN_IF_ERROR(ReadB64(j, "range_end_b64", &w->range_end));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "start_revision", &w->start_revision));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "resumes", &w->resumes));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "member", &w->member));
  return absl::OkStatus();
}

absl::Status WatchResponseFromJson(const Json& j, WatchResponseRecord* r) {
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "watch", &r->watch));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "time_ns", &r->time_ns));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "header_revision", &r->header_revision));
  CPPETCD_RETURN_IF_ERROR(ReadBool(j, "canceled", &r->canceled));
  CPPETCD_RETURN_IF_ERROR(ReadInt(j, "compact_revision", &r->compact_revision));
  if (auto it = j.find("events"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) return absl::InvalidArgumentError("field \"events\" is not an array");
    for (const Json& e : *it) {
      if (!e.is_object()) return absl::InvalidArgumentError("event is not an object");
      WatchEvent event;
      CPPETCD_RETURN_IF_ERROR(ReadBool(e, "is_delete", &event.is_delete));
      if (auto kv = e.find("kv"); kv != e.end() && !kv->is_null()) {
        CPPETCD_RETURN_IF_ERROR(KvFromJson(*kv, &event.kv));
      }
      r->events.push_back(std::move(event));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseLine(const std::string& line, History* history) {
  Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("not valid JSON");
  if (!j.is_object()) return absl::InvalidArgumentError("not a JSON object");
  std::string type;
  CPPETCD_RETURN_IF_ERROR(ReadString(j, "type", &type));
  if (type == "op") {
    Operation op;
    CPPETCD_RETURN_IF_ERROR(OpFromJson(j, &op));
    history->operations.push_back(std::move(op));
  } else if (type == "lease_op") {
    LeaseOperation op;
    CPPETCD_RETURN_IF_ERROR(LeaseOpFromJson(j, &op));
    history->lease_operations.push_back(std::move(op));
  } else if (type == "watch") {
    WatchRecord w;
    CPPETCD_RETURN_IF_ERROR(WatchFromJson(j, &w));
    history->watches.push_back(std::move(w));
  } else if (type == "watch_response") {
    WatchResponseRecord r;
    CPPETCD_RETURN_IF_ERROR(WatchResponseFromJson(j, &r));
    history->watch_responses.push_back(std::move(r));
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown record type \"", type, "\""));
  }
  return absl::OkStatus();
}

std::string Dump(const Json& j) {
  // Error texts may hold bytes that are not UTF-8; replace them rather than
  // throw.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace

int64_t MonotonicNowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

absl::Status WriteHistory(const History& history, const std::string& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::UnavailableError(absl::StrCat("cannot open ", path, " for writing"));
  for (const WatchRecord& w : history.watches) out << Dump(WatchToJson(w)) << '\n';
  for (const Operation& op : history.operations) out << Dump(OpToJson(op)) << '\n';
  for (const LeaseOperation& op : history.lease_operations) {
    out << Dump(LeaseOpToJson(op)) << '\n';
  }
  for (const WatchResponseRecord& r : history.watch_responses) {
    out << Dump(WatchResponseToJson(r)) << '\n';
  }
  out.flush();
  if (!out) return absl::DataLossError(absl::StrCat("write to ", path, " failed"));
  return absl::OkStatus();
}

absl::StatusOr<History> ReadHistory(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  History history;
  std::string line;
  int64_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    absl::Status s = ParseLine(line, &history);
    if (!s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_number, ": ", s.message()));
    }
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat("read of ", path, " failed"));
  return history;
}

int64_t HistoryRecorder::Invoke(Operation op) {
  std::lock_guard<std::mutex> lock(mu_);
  // The time is taken under the lock so that ids increase with invoke_ns.
  op.id = next_id_++;
  op.invoke_ns = MonotonicNowNs();
  op.complete_ns = kNeverCompleted;
  op.outcome = Outcome::kUnknown;
  history_.operations.push_back(std::move(op));
  return history_.operations.back().id;
}

void HistoryRecorder::Complete(int64_t id, const Operation& result) {
  int64_t now = MonotonicNowNs();
  std::lock_guard<std::mutex> lock(mu_);
  auto& ops = history_.operations;
  auto it = std::lower_bound(ops.begin(), ops.end(), id,
                             [](const Operation& op, int64_t v) { return op.id < v; });
  if (it == ops.end() || it->id != id) return;
  it->outcome = result.outcome;
  it->error = result.error;
  it->complete_ns = result.outcome == Outcome::kUnknown ? kNeverCompleted : now;
  it->revision = result.revision;
  it->succeeded = result.succeeded;
  it->deleted = result.deleted;
  it->found = result.found;
  it->kvs = result.kvs;
  it->member = result.member;
}

int64_t HistoryRecorder::InvokeLease(LeaseOperation op) {
  std::lock_guard<std::mutex> lock(mu_);
  op.id = next_id_++;
  op.invoke_ns = MonotonicNowNs();
  op.complete_ns = kNeverCompleted;
  op.outcome = Outcome::kUnknown;
  history_.lease_operations.push_back(std::move(op));
  return history_.lease_operations.back().id;
}

void HistoryRecorder::CompleteLease(int64_t id, const LeaseOperation& result) {
  int64_t now = MonotonicNowNs();
  std::lock_guard<std::mutex> lock(mu_);
  auto& ops = history_.lease_operations;
  auto it = std::lower_bound(ops.begin(), ops.end(), id,
                             [](const LeaseOperation& op, int64_t v) { return op.id < v; });
  if (it == ops.end() || it->id != id) return;
  it->outcome = result.outcome;
  it->error = result.error;
  it->complete_ns = result.outcome == Outcome::kUnknown ? kNeverCompleted : now;
  it->lease = result.lease != 0 ? result.lease : it->lease;
  it->ttl_seconds = result.ttl_seconds;
  it->not_found = result.not_found;
}

int64_t HistoryRecorder::AddWatch(WatchRecord watch) {
  std::lock_guard<std::mutex> lock(mu_);
  watch.watch = next_watch_++;
  history_.watches.push_back(std::move(watch));
  return history_.watches.back().watch;
}

void HistoryRecorder::AddWatchResponse(WatchResponseRecord response) {
  std::lock_guard<std::mutex> lock(mu_);
  history_.watch_responses.push_back(std::move(response));
}

History HistoryRecorder::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return history_;
}

}  // namespace cppetcd::robustness
