// The command-line reader the benchmark tools share (cppetcd-bench,
// watch-scale-bench): "--flag value" and "--flag=value", integers checked
// against a range, comma lists. Any error calls the tool's `usage` callback,
// which prints and exits. Header-only; not thread-safe (main thread).
#ifndef CPPETCD_BENCH_FLAG_PARSER_H_
#define CPPETCD_BENCH_FLAG_PARSER_H_

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace cppetcd::bench {

// Splits `s` on `sep`; "" gives one empty element, as Go's strings.Split.
inline std::vector<std::string> SplitList(const std::string& s, char sep) {
  std::vector<std::string> out;
  for (size_t start = 0;;) {
    const size_t p = s.find(sep, start);
    out.push_back(s.substr(start, p - start));
    if (p == std::string::npos) break;
    start = p + 1;
  }
  return out;
}

class FlagParser {
 public:
  using Usage = void (*)(const char* msg);  // must not return

  FlagParser(int argc, char** argv, Usage usage) : argc_(argc), argv_(argv), usage_(usage) {}

  // Advances to the next argument; false at the end. name() is the
  // argument without any "=value" part.
  bool Next() {
    if (++i_ >= argc_) return false;
    name_ = argv_[i_];
    inline_value_.reset();
    if (name_.rfind("--", 0) == 0) {
      if (const size_t eq = name_.find('='); eq != std::string::npos) {
        inline_value_ = name_.substr(eq + 1);
        name_.resize(eq);
      }
    }
    return true;
  }
  const std::string& name() const { return name_; }
  bool IsFlag() const { return name_.rfind("--", 0) == 0 || name_ == "-h"; }

  // The current flag's value: after '=' or the next argument.
  std::string Value() {
    if (inline_value_) return *inline_value_;
    if (i_ + 1 >= argc_) Fail("missing value for " + name_);
    return argv_[++i_];
  }

  // The value as an integer in [min, max].
  int64_t Int(int64_t min, int64_t max) {
    const std::string v = Value();
    char* end = nullptr;
    const long long n = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || n < min || n > max) Fail("bad value for " + name_ + ": " + v);
    return n;
  }

  [[noreturn]] void Fail(const std::string& msg) {
    usage_(msg.c_str());
    std::abort();  // usage_ exits; never reached
  }

 private:
  int argc_;
  char** argv_;
  Usage usage_;
  int i_ = 0;
  std::string name_;
  std::optional<std::string> inline_value_;
};

}  // namespace cppetcd::bench

#endif  // CPPETCD_BENCH_FLAG_PARSER_H_
