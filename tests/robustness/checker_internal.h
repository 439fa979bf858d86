// Helpers shared by the robustness checkers (not part of the checker API).
//
// Thread-safety: pure functions.
#ifndef CPPETCD_TESTS_ROBUSTNESS_CHECKER_INTERNAL_H_
#define CPPETCD_TESTS_ROBUSTNESS_CHECKER_INTERNAL_H_

#include <string>
#include <string_view>

#include "history.h"

namespace cppetcd::robustness::internal {

// etcd v3 API range semantics: range_end empty = the single key `key`;
// range_end "\0" = every key >= key; otherwise the half-open [key, range_end).
// Keys compare as unsigned bytes.
bool InRange(std::string_view candidate, std::string_view key, std::string_view range_end);

// A key or value for a report: C-escaped, at most ~40 characters.
std::string Printable(std::string_view bytes);

// "#12 put(k1=v3) rev 17 [ok]" and the like, for reports.
std::string Describe(const Operation& op);

const char* OpKindName(OpKind kind);

}  // namespace cppetcd::robustness::internal

#endif  // CPPETCD_TESTS_ROBUSTNESS_CHECKER_INTERNAL_H_
