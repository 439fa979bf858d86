// Helpers shared by the fuzz targets: a scratch directory per process, input
// splitting, and a check that aborts (so libFuzzer reports it) when an
// invariant of the code under test is broken.
#ifndef CPPETCD_TESTS_FUZZ_FUZZ_UTIL_H_
#define CPPETCD_TESTS_FUZZ_FUZZ_UTIL_H_

#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "cppetcd/util/log.h"

namespace cppetcd::fuzz {

// Aborts with a message when `cond` is false: a finding.
#define FUZZ_CHECK(cond, what)                                                        \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s: %s\n", __FILE__, __LINE__, \
                   #cond, std::string(what).c_str());                                 \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)

// A directory of its own for this process under /dev/shm (tmpfs: fsync is
// cheap) or $TMPDIR; removed at exit.
inline const std::string& ScratchDir() {
  static const std::string* dir = [] {
    std::string base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    if (const char* t = getenv("CPPETCD_FUZZ_TMPDIR"); t != nullptr && *t != '\0') base = t;
    std::string tmpl = base + "/cppetcd-fuzz-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    auto* d = new std::string(tmpl);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(ScratchDir(), ec);
    });
    return d;
  }();
  return *dir;
}

// An empty directory `name` inside ScratchDir() (emptied if it exists).
inline std::string FreshDir(const std::string& name) {
  const std::string d = ScratchDir() + "/" + name;
  std::error_code ec;
  std::filesystem::remove_all(d, ec);
  std::filesystem::create_directories(d);
  return d;
}

// Splits `data` at every occurrence of `sep` (the fuzz dictionaries carry
// the separator, so mutations can add and remove parts).
inline std::vector<std::string_view> Split(std::string_view data, std::string_view sep) {
  std::vector<std::string_view> parts;
  size_t pos = 0;
  while (true) {
    const size_t next = data.find(sep, pos);
    if (next == std::string_view::npos) {
      parts.push_back(data.substr(pos));
      return parts;
    }
    parts.push_back(data.substr(pos, next - pos));
    pos = next + sep.size();
  }
}

// Log output off unless CPPETCD_FUZZ_LOG is set (a fuzzer runs millions of
// inputs; the logs would dominate).
inline void QuietLogs() {
  if (getenv("CPPETCD_FUZZ_LOG") == nullptr) util::SetLogLevel(util::LogLevel::kFatal);
}

// Reads a little-endian integer from the front of `*in`, consuming it;
// 0 when `*in` is too short.
template <class T>
T TakeInt(std::string_view* in) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T) && !in->empty(); ++i) {
    v |= static_cast<T>(static_cast<uint8_t>(in->front())) << (8 * i);
    in->remove_prefix(1);
  }
  return v;
}

}  // namespace cppetcd::fuzz

#endif  // CPPETCD_TESTS_FUZZ_FUZZ_UTIL_H_
