#include "cppetcd/util/log.h"

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <sstream>

#include "absl/strings/str_format.h"
#include "cppetcd/util/mutex.h"
#include "cppetcd/util/utf8.h"
#include "spdlog/sinks/basic_file_sink.h"
#include "spdlog/details/null_mutex.h"
#include "spdlog/sinks/base_sink.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace cppetcd::util {
namespace {

Mutex g_mu;
std::shared_ptr<spdlog::logger> g_sink ABSL_GUARDED_BY(g_mu);
LogLevel g_level ABSL_GUARDED_BY(g_mu) = LogLevel::kInfo;

std::shared_ptr<spdlog::logger> MakeSink(std::string_view output) {
  std::shared_ptr<spdlog::logger> l;
  if (output.empty() || output == "stderr" || output == "default") {
    l = std::make_shared<spdlog::logger>("cppetcd",
                                         std::make_shared<spdlog::sinks::stderr_sink_mt>());
  } else if (output == "stdout") {
    l = std::make_shared<spdlog::logger>("cppetcd",
                                         std::make_shared<spdlog::sinks::stdout_sink_mt>());
  } else {
    l = std::make_shared<spdlog::logger>(
        "cppetcd", std::make_shared<spdlog::sinks::basic_file_sink_mt>(std::string(output)));
  }
  l->set_pattern("%v");
  l->set_level(spdlog::level::trace);
  l->flush_on(spdlog::level::trace);
  return l;
}

std::shared_ptr<spdlog::logger> DefaultSink() {
  MutexLock lock(&g_mu);
  if (!g_sink) g_sink = MakeSink("stderr");
  return g_sink;
}

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
    case LogLevel::kFatal: return "fatal";
  }
  return "info";
}

// Bytes that are not valid UTF-8 (a client may choose any bytes for a
// user or role name) are written as \ufffd, as etcd's zap does.
void AppendJsonString(std::string* out, std::string_view s) {
  out->push_back('"');
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const size_t n = Utf8SequenceLength(s.substr(i));
      if (n == 0) {
        out->append("\\ufffd");
      } else {
        out->append(s.substr(i, n));
        i += n - 1;
      }
      continue;
    }
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (c < 0x20) {
          out->append(absl::StrFormat("\\u%04x", c));
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

std::string Timestamp() {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

}  // namespace

LogField::LogField(std::string_view k, const std::vector<std::string>& v) : key(k) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out.push_back(',');
    AppendJsonString(&out, v[i]);
  }
  out.push_back(']');
  value = std::move(out);
  raw_json = true;
}

std::optional<LogLevel> ParseLogLevel(std::string_view name) {
  if (name == "debug") return LogLevel::kDebug;
  if (name == "info") return LogLevel::kInfo;
  if (name == "warn" || name == "warning") return LogLevel::kWarn;
  if (name == "error") return LogLevel::kError;
  if (name == "panic" || name == "fatal" || name == "dpanic") return LogLevel::kFatal;
  return std::nullopt;
}

std::string IdToHex(uint64_t id) { return absl::StrFormat("%x", id); }

Logger::Logger(std::string component, std::shared_ptr<spdlog::logger> sink)
    : component_(std::move(component)), sink_(std::move(sink)) {}

Logger Logger::WithComponent(std::string component) const {
  return Logger(std::move(component), sink_);
}

bool Logger::Enabled(LogLevel level) const {
  if (sink_) return true;
  MutexLock lock(&g_mu);
  return level >= g_level;
}

std::string Logger::Format(LogLevel level, std::string_view msg, LogFields fields) const {
  std::string line;
  line.reserve(128 + msg.size());
  line.append("{\"level\":\"").append(LevelName(level)).append("\",\"ts\":\"");
  line.append(Timestamp()).append("\",\"caller\":");
  AppendJsonString(&line, component_);
  line.append(",\"msg\":");
  AppendJsonString(&line, msg);
  for (const LogField& f : fields) {
    line.push_back(',');
    AppendJsonString(&line, f.key);
    line.push_back(':');
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::string>) {
            if (f.raw_json) {
              line.append(v);
            } else {
              AppendJsonString(&line, v);
            }
          } else if constexpr (std::is_same_v<T, bool>) {
            line.append(v ? "true" : "false");
          } else if constexpr (std::is_same_v<T, double>) {
            line.append(absl::StrFormat("%g", v));
          } else {
            line.append(std::to_string(v));
          }
        },
        f.value);
  }
  line.push_back('}');
  return line;
}

void Logger::Log(LogLevel level, std::string_view msg, LogFields fields) const {
  if (!Enabled(level)) return;
  std::shared_ptr<spdlog::logger> sink = sink_ ? sink_ : DefaultSink();
  sink->log(spdlog::level::info, "{}", Format(level, msg, fields));
}

void Logger::Debug(std::string_view msg, LogFields fields) const { Log(LogLevel::kDebug, msg, fields); }
void Logger::Info(std::string_view msg, LogFields fields) const { Log(LogLevel::kInfo, msg, fields); }
void Logger::Warn(std::string_view msg, LogFields fields) const { Log(LogLevel::kWarn, msg, fields); }
void Logger::Error(std::string_view msg, LogFields fields) const { Log(LogLevel::kError, msg, fields); }
void Logger::Fatal(std::string_view msg, LogFields fields) const {
  Log(LogLevel::kFatal, msg, fields);
  std::shared_ptr<spdlog::logger> sink = sink_ ? sink_ : DefaultSink();
  sink->flush();
  std::abort();
}

void InitLogging(LogLevel level, std::string_view output) {
  auto sink = MakeSink(output);
  MutexLock lock(&g_mu);
  g_sink = std::move(sink);
  g_level = level;
}

void SetLogLevel(LogLevel level) {
  MutexLock lock(&g_mu);
  g_level = level;
}

Logger GetLogger(std::string component) { return Logger(std::move(component)); }

namespace {
// Captured text and its lock. The sink below appends under this same lock,
// so Lines() never reads the buffer while spdlog writes it (an
// ostream_sink_mt would guard the stream with its own, different mutex).
struct CapturedState {
  Mutex mu;
  std::string text ABSL_GUARDED_BY(mu);
};

class CapturingSink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
 public:
  explicit CapturingSink(std::shared_ptr<CapturedState> st) : st_(std::move(st)) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    MutexLock lock(&st_->mu);
    st_->text.append(formatted.data(), formatted.size());
  }
  void flush_() override {}

 private:
  std::shared_ptr<CapturedState> st_;
};
}  // namespace

std::vector<std::string> CapturedLog::Lines() const {
  auto* st = static_cast<CapturedState*>(impl.get());
  std::string all;
  {
    MutexLock lock(&st->mu);
    all = st->text;
  }
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < all.size()) {
    size_t nl = all.find('\n', pos);
    if (nl == std::string::npos) nl = all.size();
    out.push_back(all.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

CapturedLog NewCapturedLog() {
  auto st = std::make_shared<CapturedState>();
  auto l = std::make_shared<spdlog::logger>("captured", std::make_shared<CapturingSink>(st));
  l->set_pattern("%v");
  l->set_level(spdlog::level::trace);
  CapturedLog c;
  c.sink = l;
  c.impl = st;
  return c;
}

}  // namespace cppetcd::util
