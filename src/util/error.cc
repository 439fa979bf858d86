#include "cppetcd/util/error.h"

#include <string>

#include "absl/strings/cord.h"

namespace cppetcd::util {
namespace {

struct Entry {
  ErrorCode code;
  std::string_view name;
};

const std::vector<Entry>& Entries() {
  static const auto* entries = new std::vector<Entry>{
#define CPPETCD_ERROR_ENTRY(Name) {ErrorCode::k##Name, #Name},
      CPPETCD_ERROR_CODES(CPPETCD_ERROR_ENTRY)
#undef CPPETCD_ERROR_ENTRY
  };
  return *entries;
}

absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace

const std::vector<ErrorCode>& AllErrorCodes() {
  static const auto* codes = [] {
    auto* v = new std::vector<ErrorCode>();
    for (const Entry& e : Entries()) v->push_back(e.code);
    return v;
  }();
  return *codes;
}

std::string_view ErrorCodeName(ErrorCode code) {
  if (code == ErrorCode::kNone) return "None";
  // Enumerators are consecutive from 1 in the order of Entries().
  const auto i = static_cast<size_t>(code) - 1;
  if (static_cast<int32_t>(code) < 1 || i >= Entries().size()) return "";
  return Entries()[i].name;
}

ErrorCode ErrorCodeFromName(std::string_view name) {
  for (const Entry& e : Entries()) {
    if (e.name == name) return e.code;
  }
  return ErrorCode::kNone;
}

absl::Status MakeError(absl::StatusCode code, ErrorCode error, std::string_view message) {
  absl::Status s(code, AbslView(message));
  if (!s.ok() && error != ErrorCode::kNone) {
    s.SetPayload(AbslView(kErrorCodeUrl), absl::Cord(AbslView(ErrorCodeName(error))));
  }
  return s;
}

ErrorCode ErrorCodeOf(const absl::Status& s) {
  if (s.ok()) return ErrorCode::kNone;
  auto payload = s.GetPayload(AbslView(kErrorCodeUrl));
  if (!payload.has_value()) return ErrorCode::kNone;
  const std::string name(*payload);
  return ErrorCodeFromName(name);
}

absl::Status CopyStatus(const absl::Status& s) {
  if (s.ok()) return absl::OkStatus();
  absl::Status copy(s.code(), std::string(s.message()));
  s.ForEachPayload([&copy](absl::string_view url, const absl::Cord& payload) {
    copy.SetPayload(std::string(url), absl::Cord(std::string(payload)));
  });
  return copy;
}

}  // namespace cppetcd::util
