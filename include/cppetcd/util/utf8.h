// UTF-8 checks for bytes that clients choose (user and role names, member
// URLs): etcd, written in Go, takes any bytes where its protos say
// `string`, and its JSON output (grpc-gateway, zap logs) writes the bytes
// that are not valid UTF-8 as U+FFFD. Pure functions; any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace cppetcd::util {

// Length (1 to 4) of the valid UTF-8 sequence at the start of `s`, or 0
// when `s` is empty or its first byte does not start one. Go's
// utf8.DecodeRune rules: no overlong forms, no surrogates (U+D800 to
// U+DFFF), nothing above U+10FFFF.
size_t Utf8SequenceLength(std::string_view s);

// Whether all of `s` is valid UTF-8.
bool IsValidUtf8(std::string_view s);

// `s` with each byte that does not belong to a valid UTF-8 sequence
// replaced by U+FFFD (Go's rule: one U+FFFD per such byte).
std::string CoerceToUtf8(std::string_view s);

}  // namespace cppetcd::util
