#include "checker_internal.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace cppetcd::robustness::internal {

bool InRange(std::string_view candidate, std::string_view key, std::string_view range_end) {
  if (range_end.empty()) return candidate == key;
  if (candidate < key) return false;
  if (range_end == std::string_view("\0", 1)) return true;
  return candidate < range_end;
}

std::string Printable(std::string_view bytes) {
  constexpr size_t kMax = 40;
  std::string out = absl::CHexEscape(absl::string_view(bytes.data(), std::min(bytes.size(), kMax)));
  if (bytes.size() > kMax) absl::StrAppend(&out, "...(", bytes.size(), " bytes)");
  return out;
}

const char* OpKindName(OpKind kind) {
  switch (kind) {
    case OpKind::kPut: return "put";
    case OpKind::kGet: return "get";
    case OpKind::kDelete: return "delete";
    case OpKind::kTxnCas: return "cas";
    case OpKind::kRange: return "range";
  }
  return "?";
}

std::string Describe(const Operation& op) {
  std::string s = absl::StrCat("#", op.id, " ", OpKindName(op.kind), "(", Printable(op.key));
  switch (op.kind) {
    case OpKind::kPut:
      absl::StrAppend(&s, "=", Printable(op.value));
      if (op.lease != 0) absl::StrAppend(&s, " lease ", op.lease);
      break;
    case OpKind::kTxnCas:
      absl::StrAppend(&s, op.expect_absent ? " absent" : absl::StrCat(" ==", Printable(op.expected)),
                      " -> ", Printable(op.value));
      break;
    case OpKind::kRange:
      absl::StrAppend(&s, "..", Printable(op.range_end));
      break;
    default:
      break;
  }
  absl::StrAppend(&s, ")");
  if (op.serializable) absl::StrAppend(&s, " serializable");
  switch (op.outcome) {
    case Outcome::kOk:
      switch (op.kind) {
        case OpKind::kGet:
          if (op.found.has_value()) {
            absl::StrAppend(&s, " -> ", Printable(op.found->value), "@", op.found->mod_revision);
          } else {
            absl::StrAppend(&s, " -> absent");
          }
          break;
        case OpKind::kDelete:
          absl::StrAppend(&s, " -> deleted ", op.deleted);
          break;
        case OpKind::kTxnCas:
          absl::StrAppend(&s, op.succeeded ? " -> succeeded" : " -> not succeeded");
          break;
        case OpKind::kRange:
          absl::StrAppend(&s, " -> ", op.kvs.size(), " kvs");
          break;
        default:
          break;
      }
      absl::StrAppend(&s, " rev ", op.revision, " [ok]");
      break;
    case Outcome::kFailed:
      absl::StrAppend(&s, " [failed]");
      break;
    case Outcome::kUnknown:
      absl::StrAppend(&s, " [unknown]");
      break;
  }
  return s;
}

}  // namespace cppetcd::robustness::internal
