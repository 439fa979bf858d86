// Structured logging: one JSON object per line, shaped like etcd's zap output
// ({"level":"info","ts":"...","caller":"...","msg":"...",<fields>}) so that
// operators' scripts that wait for etcd's milestone messages keep working.
//
// Thread-safety: Logger is a small value type; all methods are safe to call
// from any thread (the sink serialises lines).
#ifndef CPPETCD_UTIL_LOG_H_
#define CPPETCD_UTIL_LOG_H_

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace spdlog {
class logger;
}

namespace cppetcd::util {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kFatal = 4 };

// Parses etcd's --log-level values: debug, info, warn, error, panic, fatal.
std::optional<LogLevel> ParseLogLevel(std::string_view name);

// One key/value pair of a log line. Strings are copied; numbers and bools are
// written as JSON numbers and booleans.
struct LogField {
  using Value = std::variant<int64_t, uint64_t, double, bool, std::string>;
  LogField(std::string_view k, int v) : key(k), value(int64_t{v}) {}
  LogField(std::string_view k, long v) : key(k), value(int64_t{v}) {}
  LogField(std::string_view k, long long v) : key(k), value(int64_t{v}) {}
  LogField(std::string_view k, unsigned v) : key(k), value(uint64_t{v}) {}
  LogField(std::string_view k, unsigned long v) : key(k), value(uint64_t{v}) {}
  LogField(std::string_view k, unsigned long long v) : key(k), value(uint64_t{v}) {}
  LogField(std::string_view k, double v) : key(k), value(v) {}
  LogField(std::string_view k, bool v) : key(k), value(v) {}
  LogField(std::string_view k, std::string_view v) : key(k), value(std::string(v)) {}
  LogField(std::string_view k, const char* v) : key(k), value(std::string(v)) {}
  LogField(std::string_view k, const std::string& v) : key(k), value(v) {}
  // A list of strings, written as a JSON array of strings.
  LogField(std::string_view k, const std::vector<std::string>& v);

  std::string key;
  Value value;
  bool raw_json = false;  // value is a preformatted JSON fragment
};

using LogFields = std::initializer_list<LogField>;

// Hex form etcd uses for member and cluster IDs in logs ("8e9e05c52164694d").
std::string IdToHex(uint64_t id);

class Logger {
 public:
  // A logger whose lines carry caller=`component`. With no sink it uses the
  // process-wide sink set by InitLogging (stderr by default).
  explicit Logger(std::string component = "cppetcd",
                  std::shared_ptr<spdlog::logger> sink = nullptr);

  // A logger writing to the same sink with another caller name.
  Logger WithComponent(std::string component) const;

  void Debug(std::string_view msg, LogFields fields = {}) const;
  void Info(std::string_view msg, LogFields fields = {}) const;
  void Warn(std::string_view msg, LogFields fields = {}) const;
  void Error(std::string_view msg, LogFields fields = {}) const;
  // Logs at fatal level, flushes and aborts the process.
  [[noreturn]] void Fatal(std::string_view msg, LogFields fields = {}) const;

  void Log(LogLevel level, std::string_view msg, LogFields fields) const;
  bool Enabled(LogLevel level) const;

  // The JSON line (without newline) that Log would write; exposed for tests.
  std::string Format(LogLevel level, std::string_view msg, LogFields fields) const;

 private:
  std::string component_;
  std::shared_ptr<spdlog::logger> sink_;
};

// Configures the process-wide sink: `output` is "stderr" (default),
// "stdout" or a file path; lines below `level` are dropped. Call once from
// main before starting threads.
void InitLogging(LogLevel level, std::string_view output = "stderr");

// Process-wide minimum level (default info); used by loggers without a sink.
void SetLogLevel(LogLevel level);

// A logger on the process-wide sink with caller=`component`.
Logger GetLogger(std::string component);

// A sink that keeps lines in memory, for tests that assert on log output.
struct CapturedLog {
  std::shared_ptr<spdlog::logger> sink;
  // Lines logged so far.
  std::vector<std::string> Lines() const;
  std::shared_ptr<void> impl;
};
CapturedLog NewCapturedLog();

}  // namespace cppetcd::util

#endif  // CPPETCD_UTIL_LOG_H_
