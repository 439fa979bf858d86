// The HTTP gateway's server loop. Descriptors here are sockets, eventfds and
// epoll: no file-system access (outside util::Env).
#include "cppetcd/api/http_server.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <limits>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/type.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/type_resolver.h>
#include <google/protobuf/util/type_resolver_util.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <microhttpd.h>

#include "absl/cleanup/cleanup.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cppetcd/api/errors.h"
#include "cppetcd/util/mutex.h"
#include "cppetcd/util/utf8.h"
#include "cppetcdpb/options.pb.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "src/api/gateway_range_json.h"
#include "v3electionpb/v3election.grpc.pb.h"
#include "v3lockpb/v3lock.grpc.pb.h"

namespace cppetcd::api {

// ---- JSON helpers

absl::StatusOr<std::vector<std::string_view>> SplitJsonValues(std::string_view body) {
  std::vector<std::string_view> out;
  size_t i = 0;
  const size_t n = body.size();
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (true) {
    while (i < n && is_space(body[i])) ++i;
    if (i == n) return out;
    if (body[i] != '{' && body[i] != '[') {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid character '", std::string(1, body[i]), "' looking for beginning of value"));
    }
    const size_t start = i;
    int depth = 0;
    bool in_string = false;
    for (; i < n; ++i) {
      const char c = body[i];
      if (in_string) {
        if (c == '\\') {
          ++i;
        } else if (c == '"') {
          in_string = false;
        }
        continue;
      }
      if (c == '"') {
        in_string = true;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) break;
      }
    }
    if (i >= n) return absl::InvalidArgumentError("unexpected EOF");
    ++i;
    out.push_back(body.substr(start, i - start));
  }
}

int HttpStatusFromGrpcCode(int code) {
  switch (static_cast<grpc::StatusCode>(code)) {
    case grpc::StatusCode::OK:
      return 200;
    case grpc::StatusCode::CANCELLED:
      return 408;
    case grpc::StatusCode::UNKNOWN:
      return 500;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return 400;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 504;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
      return 409;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::UNAUTHENTICATED:
      return 401;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return 412;
    case grpc::StatusCode::ABORTED:
      return 409;
    case grpc::StatusCode::OUT_OF_RANGE:
      return 400;
    case grpc::StatusCode::UNIMPLEMENTED:
      return 501;
    case grpc::StatusCode::INTERNAL:
      return 500;
    case grpc::StatusCode::UNAVAILABLE:
      return 503;
    case grpc::StatusCode::DATA_LOSS:
      return 500;
    default:
      return 500;
  }
}

namespace {

// A JSON string literal (quotes included).
std::string JsonQuote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

const char* HttpStatusText(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 412:
      return "Precondition Failed";
    case 429:
      return "Too Many Requests";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Internal Server Error";
  }
}

}  // namespace

std::string GatewayErrorJson(int grpc_code, std::string_view message) {
  const std::string m = JsonQuote(message);
  return absl::StrCat("{\"error\":", m, ",\"message\":", m, ",\"code\":", grpc_code, "}");
}

bool IsGatewayJsonString(const google::protobuf::FieldDescriptor& field) {
  return field.type() == google::protobuf::FieldDescriptor::TYPE_BYTES &&
         field.options().GetExtension(cppetcdpb::json_string);
}

namespace {

constexpr std::string_view kReplacementUtf8 = "\xEF\xBF\xBD";  // U+FFFD

// The value of the four hex digits at s[i..i+4), or -1.
int Hex4(std::string_view s, size_t i) {
  if (i + 4 > s.size()) return -1;
  int v = 0;
  for (size_t k = i; k < i + 4; ++k) {
    const char c = s[k];
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return -1;
    }
    v = v * 16 + d;
  }
  return v;
}

// Reports the json_string fields as TYPE_STRING to protobuf's JSON
// conversion (their binary encoding is the same as a string's), everything
// else as the generated descriptors say. Resolved types are cached: at most
// one entry per generated message type (the gateway converts only those).
class GatewayTypeResolver final : public google::protobuf::util::TypeResolver {
 public:
  GatewayTypeResolver()
      : pool_(google::protobuf::DescriptorPool::generated_pool()),
        inner_(google::protobuf::util::NewTypeResolverForDescriptorPool(kTypeUrlPrefix, pool_)) {}

  google::protobuf::util::Status ResolveMessageType(const std::string& type_url,
                                                    google::protobuf::Type* type) override {
    {
      util::MutexLock l(&mu_);
      if (auto it = cache_.find(type_url); it != cache_.end()) {
        *type = it->second;
        return google::protobuf::util::Status();
      }
    }
    google::protobuf::util::Status st = inner_->ResolveMessageType(type_url, type);
    if (!st.ok()) return st;
    if (const google::protobuf::Descriptor* d = pool_->FindMessageTypeByName(type->name())) {
      for (google::protobuf::Field& f : *type->mutable_fields()) {
        const google::protobuf::FieldDescriptor* fd = d->FindFieldByNumber(f.number());
        if (fd != nullptr && IsGatewayJsonString(*fd)) {
          f.set_kind(google::protobuf::Field::TYPE_STRING);
        }
      }
    }
    util::MutexLock l(&mu_);
    cache_.emplace(type_url, *type);
    return st;
  }

  google::protobuf::util::Status ResolveEnumType(const std::string& type_url,
                                                 google::protobuf::Enum* enum_type) override {
    return inner_->ResolveEnumType(type_url, enum_type);
  }

  static constexpr char kTypeUrlPrefix[] = "type.googleapis.com";

 private:
  const google::protobuf::DescriptorPool* const pool_;
  const std::unique_ptr<google::protobuf::util::TypeResolver> inner_;
  util::Mutex mu_;
  absl::flat_hash_map<std::string, google::protobuf::Type> cache_ ABSL_GUARDED_BY(mu_);
};

GatewayTypeResolver& GatewayResolver() {
  static auto* r = new GatewayTypeResolver();  // never destroyed: used by any thread until exit
  return *r;
}

std::string GatewayTypeUrl(const google::protobuf::Message& message) {
  return absl::StrCat(GatewayTypeResolver::kTypeUrlPrefix, "/",
                      message.GetDescriptor()->full_name());
}

// Whether a message of type `d` can hold a json_string field, itself or in
// a sub-message (computed once per type).
bool HoldsJsonStrings(const google::protobuf::Descriptor* d) {
  static util::Mutex mu;
  static auto* cache = new absl::flat_hash_map<const google::protobuf::Descriptor*, bool>();
  {
    util::MutexLock l(&mu);
    if (auto it = cache->find(d); it != cache->end()) return it->second;
  }
  absl::flat_hash_set<const google::protobuf::Descriptor*> seen;
  std::vector<const google::protobuf::Descriptor*> todo = {d};
  bool holds = false;
  while (!todo.empty() && !holds) {
    const google::protobuf::Descriptor* t = todo.back();
    todo.pop_back();
    if (!seen.insert(t).second) continue;
    for (int i = 0; i < t->field_count() && !holds; ++i) {
      const google::protobuf::FieldDescriptor* f = t->field(i);
      holds = IsGatewayJsonString(*f);
      if (f->message_type() != nullptr) todo.push_back(f->message_type());
    }
  }
  util::MutexLock l(&mu);
  cache->emplace(d, holds);
  return holds;
}

// Replaces the json_string values of `m` and its sub-messages that are not
// valid UTF-8 by CoerceToUtf8's.
void CoerceJsonStrings(google::protobuf::Message* m) {
  const google::protobuf::Descriptor* d = m->GetDescriptor();
  const google::protobuf::Reflection* r = m->GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = d->field(i);
    if (IsGatewayJsonString(*f)) {
      if (f->is_repeated()) {
        for (int k = 0; k < r->FieldSize(*m, f); ++k) {
          std::string v = r->GetRepeatedString(*m, f, k);
          std::string c = util::CoerceToUtf8(v);
          if (c != v) r->SetRepeatedString(m, f, k, std::move(c));
        }
      } else {
        std::string v = r->GetString(*m, f);
        std::string c = util::CoerceToUtf8(v);
        if (c != v) r->SetString(m, f, std::move(c));
      }
    } else if (f->message_type() != nullptr && HoldsJsonStrings(f->message_type())) {
      if (f->is_repeated()) {
        for (int k = 0; k < r->FieldSize(*m, f); ++k) {
          CoerceJsonStrings(r->MutableRepeatedMessage(m, f, k));
        }
      } else if (r->HasField(*m, f)) {
        CoerceJsonStrings(r->MutableMessage(m, f));
      }
    }
  }
}

}  // namespace

std::optional<std::string> CoerceJsonToUtf8(std::string_view json) {
  std::string out;
  size_t copied = 0;  // json[0, copied) is in `out`
  bool changed = false;
  const auto replace = [&](size_t begin, size_t end, std::string_view with) {
    out.append(json.data() + copied, begin - copied);
    out += with;
    copied = end;
    changed = true;
  };
  bool in_string = false;
  for (size_t i = 0; i < json.size();) {
    const unsigned char c = static_cast<unsigned char>(json[i]);
    if (c >= 0x80) {
      const size_t n = util::Utf8SequenceLength(json.substr(i));
      if (n == 0) {
        replace(i, i + 1, kReplacementUtf8);
        ++i;
      } else {
        i += n;
      }
      continue;
    }
    if (!in_string) {
      if (c == '"') in_string = true;
      ++i;
      continue;
    }
    if (c == '"') {
      in_string = false;
      ++i;
      continue;
    }
    if (c != '\\') {
      ++i;
      continue;
    }
    if (i + 1 >= json.size() || json[i + 1] != 'u') {
      i += 2;  // a two-character escape (or a truncated one: the parser says)
      continue;
    }
    const int cp = Hex4(json, i + 2);
    if (cp < 0xD800 || cp > 0xDFFF) {  // not a surrogate, or not four hex digits
      i += 2;
      continue;
    }
    if (cp <= 0xDBFF && i + 12 <= json.size() && json[i + 6] == '\\' && json[i + 7] == 'u') {
      const int low = Hex4(json, i + 8);
      if (low >= 0xDC00 && low <= 0xDFFF) {  // a valid pair
        i += 12;
        continue;
      }
    }
    replace(i, i + 6, "\\ufffd");
    i += 6;
  }
  if (!changed) return std::nullopt;
  out.append(json.data() + copied, json.size() - copied);
  return out;
}

std::string MessageToGatewayJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.always_print_primitive_fields = false;
  options.preserve_proto_field_names = true;
  std::string out;
  if (!HoldsJsonStrings(message.GetDescriptor())) {
    // KV, Watch, Lease...: protobuf's own (faster) path, as before.
    (void)google::protobuf::util::MessageToJsonString(message, &out, options);
    return out;
  }
  // Auth and Member messages (small): through the resolver, with the
  // names made valid UTF-8 first.
  std::unique_ptr<google::protobuf::Message> m(message.New());
  m->CopyFrom(message);
  CoerceJsonStrings(m.get());
  (void)google::protobuf::util::BinaryToJsonString(&GatewayResolver(), GatewayTypeUrl(*m),
                                                   m->SerializeAsString(), &out, options);
  return out;
}

absl::Status GatewayJsonToMessage(std::string_view json, google::protobuf::Message* message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  const std::optional<std::string> coerced = CoerceJsonToUtf8(json);
  if (coerced) json = *coerced;
  const google::protobuf::StringPiece piece(json.data(), json.size());
  if (!HoldsJsonStrings(message->GetDescriptor())) {
    auto st = google::protobuf::util::JsonStringToMessage(piece, message, options);
    if (!st.ok()) return absl::InvalidArgumentError(std::string(st.message()));
    return absl::OkStatus();
  }
  std::string binary;
  auto st = google::protobuf::util::JsonToBinaryString(
      &GatewayResolver(), GatewayTypeUrl(*message), piece, &binary, options);
  if (!st.ok()) return absl::InvalidArgumentError(std::string(st.message()));
  if (!message->ParseFromString(binary)) {
    return absl::InvalidArgumentError("the JSON does not map to a valid request");
  }
  return absl::OkStatus();
}

namespace {

constexpr char kJson[] = "application/json";
constexpr char kText[] = "text/plain; charset=utf-8";

// ---- Serving handed-over connections with libmicrohttpd
//
// Why libmicrohttpd (issue 12 item 2; docs/design.md): the gateway needs an
// HTTP/1.1 server that takes connections it did not accept itself (the
// listener sniffs gRPC from HTTP and terminates TLS), multiplexes them on a
// few threads, lets a request wait without holding a thread and pulls a
// streamed reply only when the socket takes more. Debian's libmicrohttpd
// does all four through its C API (MHD_add_connection, an internal epoll
// thread pool, suspend/resume, callback responses), is small and
// long-maintained (GNU), and adds no framework the rest of the code must
// follow; Boost.Beast would need our own connection loop on Asio,
// libevent's evhttp cannot suspend a request without owning its socket
// loop, and nghttp2's asio server is HTTP/2 only.

// MHD's threads (an epoll loop each) serving every HTTP connection.
constexpr unsigned kHttpThreads = 2;
// Memory MHD gives a connection for its request line, headers and I/O
// buffers (MHD's default): a request whose headers do not fit is refused
// (431).
constexpr size_t kConnectionMemoryBytes = 32 * 1024;
// /health and /readyz checks queued for the health thread at once; more
// are answered 503 at once.
constexpr size_t kMaxQueuedHealthChecks = 64;
// How long Shutdown waits for the suspended requests to be resumed (their
// calls cancelled) before it stops MHD.
constexpr std::chrono::seconds kResumeWait{10};

// One reply of a plain (not streamed) request.
struct Reply {
  int status = 200;
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // A streamed gateway reply: the exchange's stream (the other fields are
  // unused).
  bool stream = false;
  // A Range answer written as JSON piece by piece (replaces `body`).
  std::shared_ptr<RangeJsonWriter> range;
};

Reply TextReply(int status, std::string body) {
  return Reply{status, kText, std::move(body), {}};
}

Reply GrpcErrorReply(const grpc::Status& st) {
  const int code = static_cast<int>(st.error_code());
  return Reply{HttpStatusFromGrpcCode(code), kJson, GatewayErrorJson(code, st.error_message()),
               {}};
}

Reply ParseErrorReply(const absl::Status& st) {
  return Reply{400, kJson,
               GatewayErrorJson(static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT),
                                std::string(st.message())),
               {}};
}

Reply ShuttingDownReply() {
  return GrpcErrorReply(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down"));
}

Reply NotFoundReply() { return TextReply(404, "404 page not found\n"); }

// What the listener said of a connection (HttpServer::AddConnection), kept
// as MHD's socket context of the connection while it lives.
struct ConnectionInfo {
  HttpPeer peer;
  HttpRoutes routes = HttpRoutes::kMetrics;
};

class Exchange;
class StreamOutput;

// Notices clients that leave while their request is suspended: MHD does
// not watch a suspended connection's socket, so the socket is put in this
// epoll set (EPOLLRDHUP: the client's FIN; HUP and ERR: reset or both
// sides shut) for as long as it is suspended, and the request is told
// (Exchange::ClientGone), which cancels its gRPC call. One thread.
class DepartureWatch {
 public:
  absl::Status Start() {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (epfd_ < 0 || wake_fd_ < 0) {
      return absl::InternalError(absl::StrCat("epoll: ", std::strerror(errno)));
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_fd_;
    ::epoll_ctl(epfd_, EPOLL_CTL_ADD, wake_fd_, &ev);
    thread_ = std::thread([this] { Run(); });
    return absl::OkStatus();
  }

  ~DepartureWatch() { Stop(); }

  void Stop() {
    if (thread_.joinable()) {
      stop_.store(true);
      const uint64_t one = 1;
      (void)!::write(wake_fd_, &one, sizeof(one));
      thread_.join();
    }
    if (epfd_ >= 0) ::close(epfd_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
    epfd_ = wake_fd_ = -1;
    util::MutexLock l(&mu_);
    watched_.clear();
  }

  // `fd` stays open until Remove (the connection is suspended meanwhile).
  void Add(int fd, std::shared_ptr<Exchange> exchange) {
    util::MutexLock l(&mu_);
    if (epfd_ < 0) return;
    epoll_event ev{};
    ev.events = EPOLLRDHUP;
    ev.data.fd = fd;
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) == 0) watched_[fd] = std::move(exchange);
  }

  void Remove(int fd) {
    util::MutexLock l(&mu_);
    if (watched_.erase(fd) > 0) ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
  }

 private:
  void Run();

  int epfd_ = -1;
  int wake_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  util::Mutex mu_;
  absl::flat_hash_map<int, std::shared_ptr<Exchange>> watched_ ABSL_GUARDED_BY(mu_);
};

// One HTTP request from its first byte to the end of its reply, shared by
// MHD's callbacks, the gRPC callbacks and the threads that wake it. While
// its answer is not there the connection is suspended (MHD does not touch
// it); Wake resumes it and MHD calls the request's handler (or the reply's
// reader) again, which looks at what changed.
class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(MHD_Connection* connection, int fd, const ConnectionInfo* info, DepartureWatch* watch)
      : connection_(connection), fd_(fd), info_(info), watch_(watch) {}

  MHD_Connection* connection() const { return connection_; }
  const ConnectionInfo& info() const { return *info_; }

  // The request as received (MHD thread only until dispatched).
  std::string method, path, body;
  bool body_too_large = false;
  bool dispatched = false;
  // Headers added to every reply (CORS).
  std::vector<std::pair<std::string, std::string>> extra_headers;
  // A gateway stream, once its call started (Reply::stream).
  std::shared_ptr<StreamOutput> stream;
  bool one_reply_each = false;
  size_t expected_replies = 0;

  // MHD thread, in a handler or reader: suspends the connection unless a
  // Wake came since the last call (then false: look again). True:
  // suspended; return from the callback.
  bool Suspend() {
    util::MutexLock l(&mu_);
    if (woken_ || closed_) {
      woken_ = false;
      return false;
    }
    suspended_ = true;
    {
      util::MutexLock c(count_mu_);
      ++*suspended_count_;
    }
    watch_->Add(fd_, shared_from_this());
    MHD_suspend_connection(connection_);
    return true;
  }

  // Any thread: something the request waits for happened.
  void Wake() {
    {
      util::MutexLock l(&mu_);
      woken_ = true;
      if (!suspended_ || closed_) return;
      suspended_ = false;
      watch_->Remove(fd_);
    }
    // Outside mu_ (MHD takes its own locks): the connection stays suspended,
    // so alive, until this resume.
    MHD_resume_connection(connection_);
    util::MutexLock c(count_mu_);
    if (--*suspended_count_ == 0) suspended_idle_->SignalAll();
  }

  // Suspensions are counted in `count` (guarded by `mu`), which Shutdown
  // waits to reach zero before it stops MHD (stopping MHD with a suspended
  // connection is not allowed).
  void CountSuspensionsIn(util::Mutex* mu, int* count, util::CondVar* idle) {
    count_mu_ = mu;
    suspended_count_ = count;
    suspended_idle_ = idle;
  }

  // Sets the answer of a request that waited (any thread) and wakes it.
  void Finish(Reply reply) {
    {
      util::MutexLock l(&mu_);
      reply_ = std::move(reply);
    }
    Wake();
  }
  std::optional<Reply> TakeReply() {
    util::MutexLock l(&mu_);
    return std::exchange(reply_, std::nullopt);
  }

  // What to do when the client leaves or MHD ends the request (cancels
  // the gRPC call); replaced by the next.
  void OnCancel(std::function<void()> cancel) {
    bool now = false;
    {
      util::MutexLock l(&mu_);
      now = gone_ || closed_;
      if (!now) cancel_ = cancel;
    }
    if (now) cancel();
  }

  // DepartureWatch: the client has gone while the request was suspended.
  void ClientGone() {
    std::function<void()> cancel;
    {
      util::MutexLock l(&mu_);
      gone_ = true;
      cancel = std::move(cancel_);
    }
    if (cancel) cancel();
    Wake();
  }
  bool Gone() {
    util::MutexLock l(&mu_);
    return gone_ || closed_;
  }

  // MHD ended the request (NOTIFY_COMPLETED): no more resumes.
  void Closed() {
    std::function<void()> cancel;
    {
      util::MutexLock l(&mu_);
      closed_ = true;
      cancel = std::move(cancel_);
    }
    if (cancel) cancel();
  }

 private:
  MHD_Connection* const connection_;
  const int fd_;
  const ConnectionInfo* const info_;
  DepartureWatch* const watch_;
  util::Mutex* count_mu_ = nullptr;
  int* suspended_count_ = nullptr;
  util::CondVar* suspended_idle_ = nullptr;
  util::Mutex mu_;
  bool suspended_ ABSL_GUARDED_BY(mu_) = false;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  bool gone_ ABSL_GUARDED_BY(mu_) = false;    // the client left while suspended
  bool closed_ ABSL_GUARDED_BY(mu_) = false;  // MHD is done with it
  std::optional<Reply> reply_ ABSL_GUARDED_BY(mu_);
  std::function<void()> cancel_ ABSL_GUARDED_BY(mu_);
};

void DepartureWatch::Run() {
  epoll_event events[64];
  while (!stop_.load()) {
    const int n = ::epoll_wait(epfd_, events, 64, -1);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == wake_fd_) continue;
      std::shared_ptr<Exchange> gone;
      {
        util::MutexLock l(&mu_);
        auto it = watched_.find(fd);
        if (it == watched_.end()) continue;
        gone = std::move(it->second);
        watched_.erase(it);
        ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);  // reported once
      }
      gone->ClientGone();
    }
  }
}

// What the gateway forwards from HTTP headers (grpc-gateway's defaults):
// Authorization as "authorization", Grpc-Metadata-<K> as <k>.
void ForwardMetadata(MHD_Connection* connection, grpc::ClientContext* ctx) {
  MHD_get_connection_values(
      connection, MHD_HEADER_KIND,
      [](void* cls, MHD_ValueKind, const char* key, const char* value) -> MHD_Result {
        auto* c = static_cast<grpc::ClientContext*>(cls);
        const std::string lower = absl::AsciiStrToLower(key);
        const std::string v = value == nullptr ? "" : value;
        if (lower == "authorization") {
          c->AddMetadata("authorization", v);
        } else if (absl::StartsWith(lower, "grpc-metadata-") && lower.size() > 14) {
          c->AddMetadata(lower.substr(14), v);
        }
        return MHD_YES;
      },
      ctx);
}

std::string Header(MHD_Connection* connection, const char* name) {
  const char* v = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, name);
  return v == nullptr ? "" : v;
}

// Every value of the query parameter `name`; `present` tells whether it
// appears at all (also without a value: "?verbose").
std::vector<std::string> QueryValues(MHD_Connection* connection, const std::string& name,
                                     bool* present) {
  struct Ctx {
    const std::string* name;
    std::vector<std::string> values;
    bool present = false;
  } ctx{&name, {}, false};
  MHD_get_connection_values(
      connection, MHD_GET_ARGUMENT_KIND,
      [](void* cls, MHD_ValueKind, const char* key, const char* value) -> MHD_Result {
        auto* c = static_cast<Ctx*>(cls);
        if (key != nullptr && *c->name == key) {
          c->present = true;
          if (value != nullptr) c->values.emplace_back(value);
        }
        return MHD_YES;
      },
      &ctx);
  if (present != nullptr) *present = ctx.present;
  return ctx.values;
}

// The gateway's calls in flight, cancelled at shutdown: some wait without
// bound (v3lock Lock, v3election Campaign).
//
// It also bounds how many run at once, as etcd's does: etcd's gateway
// reaches its own gRPC server over one HTTP/2 connection, whose
// MAX_CONCURRENT_STREAMS is --max-concurrent-streams, so while that many
// gateway calls (streams included) are open, the next one waits for one of
// them to end (etcd e2e TestV3Curl_MaxStreams_*). A waiting call holds no
// thread: it is a starter in a FIFO, run by whoever frees a slot.
class CallRegistry {
 public:
  // Starts a call that holds a slot: granted true with a slot (returns
  // whether a call started and holds it; false gives the slot to the next
  // waiter), granted false when the registry is cancelled (no slot).
  using Starter = std::function<bool(bool granted)>;

  void SetMaxCalls(uint64_t n) {
    util::MutexLock lock(&mu_);
    max_calls_ = n == 0 ? 1 : n;
  }

  // Runs `start` at once when a slot is free, else when one frees (first
  // come, first served); with granted=false at once when cancelled.
  void Acquire(Starter start) {
    {
      util::MutexLock lock(&mu_);
      if (!cancelled_ && slots_taken_ >= max_calls_) {
        waiters_.push_back(std::move(start));
        return;
      }
      if (!cancelled_) ++slots_taken_;
    }
    if (!Cancelled()) {
      if (!start(true)) Release();
    } else {
      start(false);
    }
  }

  // A call that held a slot has ended: the slot goes to the first waiter
  // that starts a call.
  void Release() {
    while (true) {
      Starter next;
      {
        util::MutexLock lock(&mu_);
        if (cancelled_ || waiters_.empty()) {
          --slots_taken_;
          return;
        }
        next = std::move(waiters_.front());
        waiters_.pop_front();
      }
      if (next(true)) return;
    }
  }

  bool Cancelled() {
    util::MutexLock lock(&mu_);
    return cancelled_;
  }

  // False once cancelled: the call must not start. Each call added ends
  // with End.
  bool Add(grpc::ClientContext* ctx) {
    util::MutexLock lock(&mu_);
    if (cancelled_) return false;
    calls_.insert(ctx);
    return true;
  }

  // A call added has ended (its last touch of its exchange done): its slot
  // is released.
  void End(grpc::ClientContext* ctx) {
    {
      util::MutexLock lock(&mu_);
      calls_.erase(ctx);
      ++ending_;
    }
    Release();
    util::MutexLock lock(&mu_);
    if (--ending_ == 0 && calls_.empty()) idle_.SignalAll();
  }

  void CancelAll() {
    std::deque<Starter> waiters;
    {
      util::MutexLock lock(&mu_);
      cancelled_ = true;
      for (grpc::ClientContext* c : calls_) c->TryCancel();
      waiters.swap(waiters_);
    }
    for (Starter& w : waiters) w(false);
  }

  // After CancelAll: waits until every call has ended. False at the
  // deadline.
  bool WaitIdle(std::chrono::milliseconds timeout) {
    util::MutexLock lock(&mu_);
    return idle_.WaitFor(&mu_, timeout, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return calls_.empty() && ending_ == 0;
    });
  }

 private:
  util::Mutex mu_;
  util::CondVar idle_;
  std::set<grpc::ClientContext*> calls_ ABSL_GUARDED_BY(mu_);
  int ending_ ABSL_GUARDED_BY(mu_) = 0;  // End calls in progress
  std::deque<Starter> waiters_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t max_calls_ ABSL_GUARDED_BY(mu_) = UINT64_MAX;
  uint64_t slots_taken_ ABSL_GUARDED_BY(mu_) = 0;
};

// A method of a stub's async() interface (Async is Stub::async, deduced:
// clang does not take `Stub::async` as a type, the stub's async() member
// function hides it).
template <class Async, class Req, class Resp>
using AsyncUnary = void (Async::*)(grpc::ClientContext*, const Req*, Resp*,
                                   std::function<void(grpc::Status)>);

// Starts a unary gateway call for `exchange` (its body is the request) and
// finishes the exchange with its reply. Never blocks.
using UnaryHandler = std::function<void(const std::shared_ptr<Exchange>& exchange)>;

template <class Stub, class Async, class Req, class Resp>
UnaryHandler Unary(CallRegistry* calls, std::shared_ptr<Stub> stub,
                   AsyncUnary<Async, Req, Resp> method) {
  return [calls, stub, method](const std::shared_ptr<Exchange>& ex) {
    struct Call {
      grpc::ClientContext ctx;
      Req req;
      Resp resp;
    };
    auto call = std::make_shared<Call>();
    if (!ex->body.empty()) {
      if (absl::Status st = GatewayJsonToMessage(ex->body, &call->req); !st.ok()) {
        ex->Finish(ParseErrorReply(st));
        return;
      }
    }
    ForwardMetadata(ex->connection(), &call->ctx);
    // The client leaving (or MHD ending the request) cancels the call,
    // waiting for a slot or running.
    ex->OnCancel([call] { call->ctx.TryCancel(); });
    calls->Acquire([calls, stub, method, call, ex](bool granted) {
      if (!granted) {
        ex->Finish(ShuttingDownReply());
        return false;
      }
      if (ex->Gone()) {
        ex->Wake();
        return false;  // the client left while waiting: the slot goes on
      }
      if (!calls->Add(&call->ctx)) {
        ex->Finish(ShuttingDownReply());
        return false;
      }
      ((*stub->async()).*method)(&call->ctx, &call->req, &call->resp,
                                 [calls, call, ex](grpc::Status st) {
                                   Reply reply;
                                   if (!st.ok()) {
                                     reply = GrpcErrorReply(st);
                                   } else {
                                     reply.content_type = kJson;
                                     reply.body = MessageToGatewayJson(call->resp);
                                     reply.headers.emplace_back("Grpc-Metadata-Content-Type",
                                                                "application/grpc");
                                   }
                                   ex->Finish(std::move(reply));
                                   calls->End(&call->ctx);
                                 });
      return true;
    });
  };
}

// The reply of a Range answer (its serialized bytes) as a JSON writer.
Reply RangeReplyOf(grpc::ByteBuffer response) {
  absl::StatusOr<std::unique_ptr<RangeJsonWriter>> w = RangeJsonWriter::Create(std::move(response));
  if (!w.ok()) {
    return GrpcErrorReply(grpc::Status(grpc::StatusCode::INTERNAL, std::string(w.status().message())));
  }
  Reply reply;
  reply.content_type = kJson;
  reply.range = std::move(*w);
  reply.headers.emplace_back("Grpc-Metadata-Content-Type", "application/grpc");
  return reply;
}

// /v3/kv/range: a unary call through the generic stub, so the answer stays
// the serialized bytes the server built (on the in-process channel, the
// server's own slices, which hold the answer's Range budget charge); the
// reply is written from them as JSON piece by piece (RangeJsonWriter) while
// the client takes it, and the bytes and the charge go when the last piece
// is out or the connection ends.
UnaryHandler RangeUnary(CallRegistry* calls, std::shared_ptr<grpc::GenericStub> stub) {
  return [calls, stub](const std::shared_ptr<Exchange>& ex) {
    struct Call {
      grpc::ClientContext ctx;
      grpc::ByteBuffer req;
      grpc::ByteBuffer resp;
    };
    auto call = std::make_shared<Call>();
    etcdserverpb::RangeRequest req;
    if (!ex->body.empty()) {
      if (absl::Status st = GatewayJsonToMessage(ex->body, &req); !st.ok()) {
        ex->Finish(ParseErrorReply(st));
        return;
      }
    }
    const grpc::Slice slice(req.SerializeAsString());
    call->req = grpc::ByteBuffer(&slice, 1);
    ForwardMetadata(ex->connection(), &call->ctx);
    ex->OnCancel([call] { call->ctx.TryCancel(); });
    calls->Acquire([calls, stub, call, ex](bool granted) {
      if (!granted) {
        ex->Finish(ShuttingDownReply());
        return false;
      }
      if (ex->Gone()) {
        ex->Wake();
        return false;
      }
      if (!calls->Add(&call->ctx)) {
        ex->Finish(ShuttingDownReply());
        return false;
      }
      stub->UnaryCall(&call->ctx, "/etcdserverpb.KV/Range", grpc::StubOptions(), &call->req,
                      &call->resp, [calls, call, ex](grpc::Status st) {
                        ex->Finish(st.ok() ? RangeReplyOf(std::move(call->resp))
                                           : GrpcErrorReply(st));
                        calls->End(&call->ctx);
                      });
      return true;
    });
  };
}

// The response side of a gateway stream: responses as JSON, queued for the
// HTTP connection, and the call's end. The queue is bounded
// (kGatewayStreamQueue*): when it fills, the bridge stops reading from the
// gRPC call until the connection has taken what is queued, so a slow HTTP
// reader holds back the gRPC stream (and through its flow control the
// server's watch, keep-alive or snapshot) instead of growing this queue.
// MHD takes from the queue only when the client's socket takes more bytes.
class StreamOutput {
 public:
  explicit StreamOutput(std::shared_ptr<std::atomic<int64_t>> queued_bytes_gauge)
      : gauge_(std::move(queued_bytes_gauge)) {}
  virtual ~StreamOutput() { gauge_->fetch_sub(static_cast<int64_t>(queued_bytes_)); }

  grpc::ClientContext* context() { return &ctx_; }

  // Called (any thread) when a response is queued or the call ends; and,
  // once, when the call has ended. Set before the call starts.
  void SetCallbacks(std::function<void()> on_output, std::function<void()> on_done) {
    on_output_ = std::move(on_output);
    on_done_ = std::move(on_done);
  }

  // Queues a response. False: the queue is full; the caller must not read
  // the next one until ResumeRead is called.
  bool Push(std::string json) {
    bool room = true;
    {
      util::MutexLock lock(&mu_);
      queued_bytes_ += json.size();
      gauge_->fetch_add(static_cast<int64_t>(json.size()));
      queue_.push_back(std::move(json));
      ++received_;
      if (queue_.size() >= kGatewayStreamQueueResponses ||
          queued_bytes_ >= kGatewayStreamQueueBytes) {
        paused_ = true;
        room = false;
      }
    }
    if (on_output_) on_output_();
    return room;
  }

  void Finish(const grpc::Status& status) {
    {
      util::MutexLock lock(&mu_);
      done_ = true;
      status_ = status;
    }
    if (on_output_) on_output_();
    if (on_done_) on_done_();
  }

  // Takes the queued responses without waiting; `finished` and `status`
  // tell whether the call is over, `received` how many responses arrived
  // in all. Restarts reading if a full queue paused it.
  std::vector<std::string> Take(bool* finished, grpc::Status* status, size_t* received) {
    std::vector<std::string> out;
    bool resume = false;
    {
      util::MutexLock lock(&mu_);
      out.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
      queue_.clear();
      gauge_->fetch_sub(static_cast<int64_t>(queued_bytes_));
      queued_bytes_ = 0;
      *finished = done_;
      *status = status_;
      *received = received_;
      resume = std::exchange(paused_, false);
    }
    if (resume) ResumeRead();
    return out;
  }

  // Cancels the call if still running; never waits (the bridge keeps
  // itself alive until its OnDone).
  void Cancel() {
    ctx_.TryCancel();
    bool resume = false;
    {
      util::MutexLock lock(&mu_);
      resume = std::exchange(paused_, false);
    }
    // A paused call holds its end (see ResumeRead): the read fails at once
    // on the cancelled call and lets it end.
    if (resume) ResumeRead();
  }

 protected:
  // Starts the next read of the gRPC call after a pause and releases the
  // hold its OnReadDone took (a hold keeps OnDone from running while no
  // read is in flight, so the read may start from this thread).
  virtual void ResumeRead() = 0;

 private:
  grpc::ClientContext ctx_;
  // The server's total of queued bytes (shared: a bridge may end after the server).
  const std::shared_ptr<std::atomic<int64_t>> gauge_;
  std::function<void()> on_output_, on_done_;  // set before the call starts
  util::Mutex mu_;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);  // JSON of responses not yet written
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;        // their size
  bool paused_ ABSL_GUARDED_BY(mu_) = false;            // no read in flight: queue was full
  size_t received_ ABSL_GUARDED_BY(mu_) = 0;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

// A bidirectional gateway stream: the requests of the HTTP body are written
// in order, responses are queued as they arrive. Keeps itself alive from
// Begin until OnDone.
template <class Req, class Resp>
class BidiBridge : public grpc::ClientBidiReactor<Req, Resp>,
                   public StreamOutput,
                   public std::enable_shared_from_this<BidiBridge<Req, Resp>> {
 public:
  BidiBridge(std::vector<Req> requests, std::shared_ptr<std::atomic<int64_t>> gauge)
      : StreamOutput(std::move(gauge)), requests_(std::move(requests)) {}

  // After the stub registered the reactor.
  void Begin() {
    self_ = this->shared_from_this();
    this->StartRead(&incoming_);
    if (!requests_.empty()) this->StartWrite(&requests_[0]);
    this->StartCall();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return;
    if (++next_write_ < requests_.size()) this->StartWrite(&requests_[next_write_]);
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    this->AddHold();  // taken before Push: a full queue may resume at once
    if (Push(MessageToGatewayJson(incoming_))) {
      this->StartRead(&incoming_);
      this->RemoveHold();
    }
  }
  void OnDone(const grpc::Status& status) override {
    Finish(status);
    std::shared_ptr<BidiBridge> last = std::move(self_);  // may free this on return
  }

 protected:
  void ResumeRead() override {
    this->StartRead(&incoming_);
    this->RemoveHold();
  }

 private:
  std::vector<Req> requests_;
  size_t next_write_ = 0;  // reactor callbacks only
  Resp incoming_;
  std::shared_ptr<BidiBridge> self_;
};

// A server-streaming gateway call (Maintenance.Snapshot, Election.Observe):
// one request, responses queued as they arrive. Alive from Begin until
// OnDone.
template <class Req, class Resp>
class ReadBridge : public grpc::ClientReadReactor<Resp>,
                   public StreamOutput,
                   public std::enable_shared_from_this<ReadBridge<Req, Resp>> {
 public:
  ReadBridge(Req request, std::shared_ptr<std::atomic<int64_t>> gauge)
      : StreamOutput(std::move(gauge)), request_(std::move(request)) {}

  const Req* request() const { return &request_; }

  void Begin() {
    self_ = this->shared_from_this();
    this->StartRead(&incoming_);
    this->StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    this->AddHold();  // taken before Push: a full queue may resume at once
    if (Push(MessageToGatewayJson(incoming_))) {
      this->StartRead(&incoming_);
      this->RemoveHold();
    }
  }
  void OnDone(const grpc::Status& status) override {
    Finish(status);
    std::shared_ptr<ReadBridge> last = std::move(self_);
  }

 protected:
  void ResumeRead() override {
    this->StartRead(&incoming_);
    this->RemoveHold();
  }

 private:
  const Req request_;
  Resp incoming_;
  std::shared_ptr<ReadBridge> self_;
};

// grpc-gateway's error chunk of a stream that failed after it started.
std::string StreamErrorChunk(const grpc::Status& st) {
  const int code = static_cast<int>(st.error_code());
  const int http = HttpStatusFromGrpcCode(code);
  return absl::StrCat("{\"error\":{\"grpc_code\":", code, ",\"http_code\":", http,
                      ",\"message\":", JsonQuote(st.error_message()), ",\"http_status\":",
                      JsonQuote(HttpStatusText(http)), "}}\n");
}

// A streamed gateway reply (MHD_create_response_from_callback, chunked):
// MHD asks for bytes only when the client's socket takes more; each
// response is one line {"result":...}. With nothing queued the connection
// is suspended until the bridge queues more or ends.
struct StreamReply {
  std::shared_ptr<StreamOutput> output;
  std::shared_ptr<Exchange> exchange;
  const std::atomic<bool>* stopping;
  bool one_reply_each = false;  // ends after `expected` responses (keep-alive)
  size_t expected = 0;
  std::string pending;  // taken from the queue, not yet given to MHD: [off, size)
  size_t off = 0;
  bool ended = false;

  ~StreamReply() { output->Cancel(); }

  static ssize_t Read(void* cls, uint64_t, char* buf, size_t max) {
    auto* s = static_cast<StreamReply*>(cls);
    while (true) {
      if (s->off < s->pending.size()) {
        const size_t n = std::min(max, s->pending.size() - s->off);
        std::memcpy(buf, s->pending.data() + s->off, n);
        s->off += n;
        return static_cast<ssize_t>(n);
      }
      s->pending.clear();
      s->off = 0;
      if (s->ended) return MHD_CONTENT_READER_END_OF_STREAM;
      if (s->exchange->Gone()) return MHD_CONTENT_READER_END_WITH_ERROR;
      bool finished = false;
      grpc::Status status;
      size_t received = 0;
      for (const std::string& c : s->output->Take(&finished, &status, &received)) {
        absl::StrAppend(&s->pending, "{\"result\":", c, "}\n");
      }
      if (finished) {
        if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
          s->pending += StreamErrorChunk(status);
        }
        s->ended = true;
      } else if (s->one_reply_each && received >= s->expected) {
        s->ended = true;
        s->output->Cancel();
      } else if (s->stopping->load()) {
        s->ended = true;
      }
      if (!s->pending.empty() || s->ended) continue;
      if (!s->exchange->Suspend()) continue;
      return 0;  // resumed by the bridge (StreamOutput's on_output)
    }
  }

  static void Free(void* cls) { delete static_cast<StreamReply*>(cls); }
};

// Runs /health and /readyz checks, which wait for the backend (up to the
// health timeout per step), off MHD's threads: one thread, a bounded queue.
class HealthWorker {
 public:
  // A check: run(true) computes and answers; run(false) answers without
  // checking (shutting down).
  using Task = std::function<void(bool run)>;

  void Start() {
    thread_ = std::thread([this] { Run(); });
  }

  // False (task not taken) when the queue is full or the worker stopped.
  bool Post(Task t) {
    {
      util::MutexLock l(&mu_);
      if (stopped_ || tasks_.size() >= kMaxQueuedHealthChecks) return false;
      tasks_.push_back(std::move(t));
    }
    cv_.Signal();
    return true;
  }

  void Stop() {
    std::deque<Task> left;
    {
      util::MutexLock l(&mu_);
      stopped_ = true;
    }
    cv_.SignalAll();
    if (thread_.joinable()) thread_.join();
    {
      util::MutexLock l(&mu_);
      left.swap(tasks_);
    }
    for (Task& t : left) t(false);
  }

 private:
  void Run() {
    while (true) {
      Task t;
      {
        util::MutexLock l(&mu_);
        cv_.Wait(&mu_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopped_ || !tasks_.empty();
        });
        if (stopped_) return;
        t = std::move(tasks_.front());
        tasks_.pop_front();
      }
      t(true);
    }
  }

  util::Mutex mu_;
  util::CondVar cv_;
  std::deque<Task> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// The block MHD asks a RangeJsonWriter to fill at a time: the JSON of a
// Range answer held outside the answer's own bytes is this plus one
// key-value.
constexpr size_t kRangeJsonBlockBytes = 64 * 1024;

// MHD's reader of a Range reply (MHD_create_response_from_callback): called
// when the client's socket takes more; freed (with the answer's bytes and
// budget charge) when MHD is done with the response, the client gone or
// timed out included.
struct RangeReply {
  std::shared_ptr<RangeJsonWriter> writer;

  static ssize_t Read(void* cls, uint64_t pos, char* buf, size_t max) {
    RangeJsonWriter& w = *static_cast<RangeReply*>(cls)->writer;
    if (pos != w.written()) return MHD_CONTENT_READER_END_WITH_ERROR;
    const int64_t n = w.Read(buf, max);
    if (n <= 0) return MHD_CONTENT_READER_END_WITH_ERROR;  // short of size(): a bug
    return static_cast<ssize_t>(n);
  }
  static void Free(void* cls) { delete static_cast<RangeReply*>(cls); }
};

MHD_Result QueueReply(MHD_Connection* connection, const Reply& r,
                      const std::vector<std::pair<std::string, std::string>>& extra) {
  MHD_Response* resp = nullptr;
  if (r.range != nullptr) {
    auto* reader = new RangeReply{r.range};
    const size_t block = static_cast<size_t>(
        std::clamp<uint64_t>(r.range->size(), 1, kRangeJsonBlockBytes));
    resp = MHD_create_response_from_callback(r.range->size(), block, &RangeReply::Read, reader,
                                             &RangeReply::Free);
    if (resp == nullptr) delete reader;
  } else {
    resp = MHD_create_response_from_buffer(r.body.size(), const_cast<char*>(r.body.data()),
                                           MHD_RESPMEM_MUST_COPY);
  }
  if (resp == nullptr) return MHD_NO;
  for (const auto& [k, v] : extra) MHD_add_response_header(resp, k.c_str(), v.c_str());
  for (const auto& [k, v] : r.headers) MHD_add_response_header(resp, k.c_str(), v.c_str());
  if (!r.content_type.empty()) {
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r.content_type.c_str());
  }
  const MHD_Result ret = MHD_queue_response(connection, static_cast<unsigned>(r.status), resp);
  MHD_destroy_response(resp);
  return ret;
}

}  // namespace

// ---- HttpServer::Impl

class HttpServer::Impl {
 public:
  explicit Impl(HttpServerOptions options) : options_(std::move(options)) {}

  ~Impl() { Shutdown(); }

  absl::Status Init() {
    if (options_.backend == nullptr) return absl::InvalidArgumentError("HttpServer: no backend");
    calls_.SetMaxCalls(options_.max_concurrent_streams);
    if (options_.gateway_channel != nullptr) BuildGateway();
    if (absl::Status st = watch_.Start(); !st.ok()) return st;
    health_.Start();
    const unsigned flags = MHD_USE_NO_LISTEN_SOCKET | MHD_USE_EPOLL_INTERNAL_THREAD |
                           MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    daemon_ = MHD_start_daemon(
        flags, 0, nullptr, nullptr, &Impl::OnRequest, this,
        MHD_OPTION_NOTIFY_CONNECTION, &Impl::OnConnection, this,
        MHD_OPTION_NOTIFY_COMPLETED, &Impl::OnCompleted, this,
        MHD_OPTION_THREAD_POOL_SIZE, kHttpThreads,
        MHD_OPTION_CONNECTION_LIMIT,
        static_cast<unsigned>(std::max<size_t>(options_.max_connections, kHttpThreads)),
        MHD_OPTION_CONNECTION_TIMEOUT, static_cast<unsigned>(options_.idle_timeout.count()),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemoryBytes,
        MHD_OPTION_EXTERNAL_LOGGER, &Impl::OnLog, this, MHD_OPTION_END);
    if (daemon_ == nullptr) {
      health_.Stop();
      watch_.Stop();
      return absl::InternalError("cannot start the HTTP server (libmicrohttpd)");
    }
    return absl::OkStatus();
  }

  void AddConnection(int fd, const HttpPeer& peer, HttpRoutes routes) {
    uint64_t id = 0;
    {
      util::MutexLock l(&mu_);
      if (stopping_.load() || daemon_ == nullptr) {
        ::close(fd);
        return;
      }
      id = ++next_pending_;
      pending_[fd] = {id, ConnectionInfo{peer, routes}};
      ++adding_;
    }
    // The identity waits under the descriptor number until MHD's
    // NOTIFY_CONNECTION attaches it to the connection.
    const MHD_Result added = MHD_add_connection(
        daemon_, fd, reinterpret_cast<const sockaddr*>(&peer.remote), peer.remote_len);
    util::MutexLock l(&mu_);
    if (added != MHD_YES) {  // MHD closed the socket
      auto it = pending_.find(fd);
      if (it != pending_.end() && it->second.first == id) pending_.erase(it);
      options_.logger.Warn("too many HTTP connections or no memory; closing",
                           {{"error", std::strerror(errno)}});
    }
    if (--adding_ == 0) adding_idle_.SignalAll();
  }

  void Shutdown() {
    {
      util::MutexLock l(&mu_);
      if (stopping_.exchange(true)) return;
      adding_idle_.Wait(&mu_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return adding_ == 0; });
    }
    // Every waiting request is answered and resumed: calls cancelled (their
    // completions resume their requests, streams end), slot waiters and
    // health checks answered. MHD must not be stopped with a connection
    // suspended.
    calls_.CancelAll();
    if (!calls_.WaitIdle(kResumeWait)) {
      options_.logger.Error("gateway calls still running at shutdown");
    }
    health_.Stop();
    {
      util::MutexLock l(&suspend_mu_);
      if (!suspended_idle_.WaitFor(&suspend_mu_, kResumeWait,
                                   [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(suspend_mu_) {
                                     return suspended_ == 0;
                                   })) {
        options_.logger.Error("HTTP requests still suspended at shutdown",
                              {{"suspended", suspended_}});
      }
    }
    if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
    daemon_ = nullptr;
    watch_.Stop();
  }

  int64_t StreamQueuedBytes() const { return stream_queued_bytes_->load(); }

 private:
  struct GatewayStubs {
    std::shared_ptr<etcdserverpb::Watch::Stub> watch;
    std::shared_ptr<etcdserverpb::Lease::Stub> lease;
    std::shared_ptr<etcdserverpb::Maintenance::Stub> maintenance;
    std::shared_ptr<v3electionpb::Election::Stub> election;
  };

  // ---- MHD callbacks

  static void OnLog(void* cls, const char* fmt, va_list ap) {
    char buf[512];
    std::vsnprintf(buf, sizeof(buf), fmt, ap);
    std::string text = buf;
    while (!text.empty() && text.back() == '\n') text.pop_back();
    static_cast<Impl*>(cls)->options_.logger.Debug("libmicrohttpd", {{"message", text}});
  }

  static void OnConnection(void* cls, MHD_Connection* connection, void** socket_context,
                           MHD_ConnectionNotificationCode code) {
    auto* self = static_cast<Impl*>(cls);
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
      delete static_cast<ConnectionInfo*>(*socket_context);
      *socket_context = nullptr;
      return;
    }
    auto info = std::make_unique<ConnectionInfo>();
    const MHD_ConnectionInfo* fd_info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    util::MutexLock l(&self->mu_);
    if (fd_info != nullptr) {
      auto it = self->pending_.find(fd_info->connect_fd);
      if (it != self->pending_.end()) {
        *info = std::move(it->second.second);
        self->pending_.erase(it);
      }
    }
    // Without its record (cannot happen) the connection gets the metrics
    // routes only and counts as plain text: the least it could be.
    *socket_context = info.release();
  }

  static void OnCompleted(void*, MHD_Connection*, void** req_cls,
                          MHD_RequestTerminationCode) {
    auto* holder = static_cast<std::shared_ptr<Exchange>*>(*req_cls);
    if (holder == nullptr) return;
    (*holder)->Closed();  // cancels a call still running for it
    delete holder;
    *req_cls = nullptr;
  }

  static MHD_Result OnRequest(void* cls, MHD_Connection* connection, const char* url,
                              const char* method, const char*, const char* upload_data,
                              size_t* upload_data_size, void** req_cls) {
    auto* self = static_cast<Impl*>(cls);
    auto* holder = static_cast<std::shared_ptr<Exchange>*>(*req_cls);
    if (holder == nullptr) {
      const MHD_ConnectionInfo* ci =
          MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
      const MHD_ConnectionInfo* fi =
          MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
      static const ConnectionInfo kUnknown;
      const ConnectionInfo* info =
          ci != nullptr && ci->socket_context != nullptr
              ? static_cast<const ConnectionInfo*>(ci->socket_context)
              : &kUnknown;
      auto ex = std::make_shared<Exchange>(connection, fi != nullptr ? fi->connect_fd : -1, info,
                                           &self->watch_);
      ex->CountSuspensionsIn(&self->suspend_mu_, &self->suspended_, &self->suspended_idle_);
      ex->method = method;
      ex->path = url;
      *req_cls = new std::shared_ptr<Exchange>(ex);
      // A declared body over the limit is refused before any of it is read.
      const std::string length = Header(connection, MHD_HTTP_HEADER_CONTENT_LENGTH);
      uint64_t declared = 0;
      if (!length.empty() && absl::SimpleAtoi(length, &declared) &&
          declared > self->options_.max_body_bytes) {
        return QueueReply(connection, TextReply(413, "Payload Too Large"), {});
      }
      return MHD_YES;
    }
    const std::shared_ptr<Exchange>& ex = *holder;
    if (*upload_data_size > 0) {
      if (ex->body.size() + *upload_data_size > self->options_.max_body_bytes) {
        ex->body_too_large = true;  // the rest is read and dropped
        std::string().swap(ex->body);
      } else if (!ex->body_too_large) {
        ex->body.append(upload_data, *upload_data_size);
      }
      *upload_data_size = 0;
      return MHD_YES;
    }
    if (ex->body_too_large) return QueueReply(connection, TextReply(413, "Payload Too Large"), {});
    if (!ex->dispatched) {
      ex->dispatched = true;
      if (std::optional<Reply> now = self->Dispatch(ex)) {
        return QueueReply(connection, *now, ex->extra_headers);
      }
    }
    // The request waits for its answer (a gateway call, a health check).
    while (true) {
      if (std::optional<Reply> r = ex->TakeReply()) {
        if (r->stream) return self->QueueStream(ex);
        return QueueReply(connection, *r, ex->extra_headers);
      }
      if (ex->Gone()) return MHD_NO;  // the client left: close
      if (ex->Suspend()) return MHD_YES;
    }
  }

  // ---- Routing

  // The reply of a request answered at once, or nullopt when it waits
  // (then the exchange is finished later, from another thread).
  std::optional<Reply> Dispatch(const std::shared_ptr<Exchange>& ex) {
    const bool full = ex->info().routes == HttpRoutes::kAll;
    if (full) {
      if (std::optional<Reply> refused = AccessControl(ex)) return refused;
    } else {
      ex->extra_headers = CorsHeaders("*");
    }
    const std::string& m = ex->method;
    const std::string& p = ex->path;
    if (m == "OPTIONS") return Reply{200, "", "", {}};
    if (m == "GET" || m == "HEAD") {
      if (p == "/health" || p == "/readyz") {
        if (!StartHealthCheck(ex, p == "/readyz")) {
          return TextReply(503, "too many health checks\n");
        }
        return std::nullopt;
      }
      if (p == "/livez") return TextReply(200, "ok");
      if (p == "/metrics") {
        if (options_.metrics == nullptr) return NotFoundReply();
        return Reply{200, "text/plain; version=0.0.4; charset=utf-8", options_.metrics->Render(),
                     {}};
      }
    }
    if (!full) return NotFoundReply();
    if (m == "GET" && p == "/version") {
      return Reply{200, kJson,
                   absl::StrCat("{\"etcdserver\":", JsonQuote(options_.server_version),
                                ",\"etcdcluster\":", JsonQuote(options_.cluster_version), "}"),
                   {}};
    }
    std::string rest;
    if (absl::StartsWith(p, "/v3/")) {
      rest = p.substr(4);
    } else if (absl::StartsWith(p, "/v3beta/")) {
      rest = p.substr(8);
    } else {
      return NotFoundReply();
    }
    if (options_.gateway_channel == nullptr) return NotFoundReply();
    if (m == "GET") return TextReply(405, "Method Not Allowed\n");
    if (m != "POST" && m != "PUT") return NotFoundReply();
    if (stopping_.load()) return TextReply(404, "Not Found\n");
    return Gateway(ex, rest);
  }

  static std::vector<std::pair<std::string, std::string>> CorsHeaders(const std::string& origin) {
    return {
        {"Access-Control-Allow-Headers", "accept, content-type, authorization"},
        {"Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"},
        {"Access-Control-Allow-Origin", origin},
    };
  }

  static bool Listed(const std::vector<std::string>& list, const std::string& value) {
    if (list.empty()) return true;  // etcd's default, "*"
    for (const std::string& v : list) {
      if (v == "*" || v == value) return true;
    }
    return false;
  }

  // The host part of a Host header value ("h", "h:port", "[v6]:port").
  static std::string HostName(const std::string& host) {
    if (!host.empty() && host.front() == '[') {
      const size_t close = host.find(']');
      return close == std::string::npos ? host : host.substr(1, close - 1);
    }
    const size_t colon = host.find(':');
    if (colon != std::string::npos && host.find(':', colon + 1) == std::string::npos) {
      return host.substr(0, colon);
    }
    return host;
  }

  // etcd's access control on client URLs: --host-whitelist on plain-text
  // connections (421, against DNS rebinding), then --cors (headers kept in
  // the exchange for its reply). A reply when the request is refused.
  std::optional<Reply> AccessControl(const std::shared_ptr<Exchange>& ex) {
    MHD_Connection* c = ex->connection();
    if (!ex->info().peer.tls) {
      const std::string host = HostName(Header(c, MHD_HTTP_HEADER_HOST));
      if (!Listed(options_.host_whitelist, host)) {
        options_.logger.Warn("rejecting HTTP request to prevent DNS rebinding attacks",
                             {{"host", host}});
        Reply r = TextReply(421, absl::StrCat("the Host header \"", host,
                                              "\" is not in --host-whitelist; connect over TLS "
                                              "or add the host with --host-whitelist\n"));
        r.headers.emplace_back("X-Content-Type-Options", "nosniff");
        return r;
      }
    }
    const std::string origin = Header(c, "Origin");
    if (Listed(options_.cors_origins, "*")) {  // "*" listed, or nothing (etcd's default)
      ex->extra_headers = CorsHeaders("*");
    } else if (!origin.empty() && Listed(options_.cors_origins, origin)) {
      ex->extra_headers = CorsHeaders(origin);
    }
    return std::nullopt;
  }

  // ---- health

  // Runs an asynchronous backend call and waits up to the health timeout.
  template <class Resp, class Call>
  std::optional<absl::StatusOr<Resp>> Await(Call call) {
    struct Shared {
      util::Mutex mu;
      util::CondVar cv;
      std::optional<absl::StatusOr<Resp>> result;
    };
    auto shared = std::make_shared<Shared>();
    call([shared](absl::StatusOr<Resp> r) {
      util::MutexLock lock(&shared->mu);
      shared->result = std::move(r);
      shared->cv.SignalAll();
    });
    util::MutexLock lock(&shared->mu);
    shared->cv.WaitFor(&shared->mu, options_.health_timeout, [&] { return shared->result.has_value(); });
    return shared->result;
  }

  // etcd 3.4's checkHealth: an active alarm (unless excluded), no leader or
  // a failed linearizable read make the member unhealthy. Returns the reason.
  std::optional<std::string> Unhealthy(const std::vector<std::string>& excluded_alarms,
                                       bool corrupt_only) {
    ServerBackend* b = options_.backend;
    etcdserverpb::AlarmRequest areq;
    areq.set_action(etcdserverpb::AlarmRequest::GET);
    auto alarms = Await<etcdserverpb::AlarmResponse>(
        [&](auto done) { b->Alarm(auth::kNoCredentials, areq, std::move(done)); });
    if (alarms.has_value() && alarms->ok()) {
      for (const auto& a : (*alarms)->alarms()) {
        const std::string name = etcdserverpb::AlarmType_Name(a.alarm());
        if (corrupt_only && a.alarm() != etcdserverpb::CORRUPT) continue;
        bool skip = false;
        for (const auto& e : excluded_alarms) skip = skip || e == name;
        if (!skip) return absl::StrCat("alarm activated: ", name);
      }
    }
    if (!b->HasLeader()) return std::string("etcdserver: no leader");
    etcdserverpb::RangeRequest rreq;
    rreq.set_key("health");
    rreq.set_count_only(true);
    auto range = Await<etcdserverpb::RangeResponse>(
        [&](auto done) { b->Range(auth::kNoCredentials, rreq, std::move(done)); });
    if (!range.has_value()) return std::string("etcdserver: request timed out");
    if (!range->ok()) {
      // Without credentials the read may be refused when auth is enabled:
      // that still proves a working server.
      const grpc::StatusCode code = ToGrpcStatus(range->status()).error_code();
      if (code != grpc::StatusCode::PERMISSION_DENIED &&
          code != grpc::StatusCode::UNAUTHENTICATED &&
          code != grpc::StatusCode::INVALID_ARGUMENT &&
          code != grpc::StatusCode::FAILED_PRECONDITION) {
        return std::string(range->status().message());
      }
    }
    return std::nullopt;
  }

  // /health (etcd 3.4) or /readyz (etcd 3.5) on the health thread; false
  // when its queue is full.
  bool StartHealthCheck(const std::shared_ptr<Exchange>& ex, bool readyz) {
    std::vector<std::string> excluded;
    bool verbose = false;
    if (readyz) {
      QueryValues(ex->connection(), "verbose", &verbose);
    } else {
      for (std::string& v : QueryValues(ex->connection(), "exclude", nullptr)) {
        if (!v.empty()) excluded.push_back(std::move(v));
      }
    }
    return health_.Post([this, ex, readyz, verbose, excluded](bool run) {
      if (!run) {
        ex->Finish(TextReply(503, "server is shutting down\n"));
        return;
      }
      ex->Finish(readyz ? Readyz(verbose) : Health(excluded));
    });
  }

  Reply Health(const std::vector<std::string>& excluded) {
    if (auto reason = Unhealthy(excluded, false); reason.has_value()) {
      options_.logger.Warn("/health error", {{"reason", *reason}, {"status-code", 503}});
      return TextReply(503, "{\"health\":\"false\"}\n");
    }
    return TextReply(200, "{\"health\":\"true\"}");
  }

  // etcd 3.5's /readyz: plain "ok", or the failed check and 503.
  Reply Readyz(bool verbose) {
    if (auto reason = Unhealthy({}, true); reason.has_value()) {
      return TextReply(503, absl::StrCat("[-]linearizable_read failed: ", *reason,
                                         "\nreadyz check failed\n"));
    }
    return TextReply(200, verbose ? "[+]data_corruption ok\n[+]serializable_read ok\n"
                                    "[+]linearizable_read ok\nok\n"
                                  : "ok");
  }

  // ---- gateway

  void BuildGateway() {
    const std::shared_ptr<grpc::Channel>& ch = options_.gateway_channel;
    std::shared_ptr<etcdserverpb::KV::Stub> kv = etcdserverpb::KV::NewStub(ch);
    std::shared_ptr<etcdserverpb::Lease::Stub> lease = etcdserverpb::Lease::NewStub(ch);
    std::shared_ptr<etcdserverpb::Cluster::Stub> cluster = etcdserverpb::Cluster::NewStub(ch);
    std::shared_ptr<etcdserverpb::Maintenance::Stub> maint =
        etcdserverpb::Maintenance::NewStub(ch);
    std::shared_ptr<etcdserverpb::Auth::Stub> auth = etcdserverpb::Auth::NewStub(ch);
    std::shared_ptr<v3lockpb::Lock::Stub> lock = v3lockpb::Lock::NewStub(ch);
    std::shared_ptr<v3electionpb::Election::Stub> election = v3electionpb::Election::NewStub(ch);
    stubs_.watch = etcdserverpb::Watch::NewStub(ch);
    stubs_.lease = lease;
    stubs_.maintenance = maint;
    stubs_.election = election;
    using KV = etcdserverpb::KV::Stub;
    using L = etcdserverpb::Lease::Stub;
    using C = etcdserverpb::Cluster::Stub;
    using M = etcdserverpb::Maintenance::Stub;
    using A = etcdserverpb::Auth::Stub;
    auto& u = unary_;
    u["kv/range"] = RangeUnary(&calls_, std::make_shared<grpc::GenericStub>(ch));
    u["kv/put"] = Unary(&calls_, kv, &KV::async::Put);
    u["kv/deleterange"] = Unary(&calls_, kv, &KV::async::DeleteRange);
    u["kv/txn"] = Unary(&calls_, kv, &KV::async::Txn);
    u["kv/compaction"] = Unary(&calls_, kv, &KV::async::Compact);
    u["lease/grant"] = Unary(&calls_, lease, &L::async::LeaseGrant);
    u["lease/revoke"] = u["kv/lease/revoke"] = Unary(&calls_, lease, &L::async::LeaseRevoke);
    u["lease/timetolive"] = u["kv/lease/timetolive"] = Unary(&calls_, lease, &L::async::LeaseTimeToLive);
    u["lease/leases"] = u["kv/lease/leases"] = Unary(&calls_, lease, &L::async::LeaseLeases);
    u["cluster/member/add"] = Unary(&calls_, cluster, &C::async::MemberAdd);
    u["cluster/member/remove"] = Unary(&calls_, cluster, &C::async::MemberRemove);
    u["cluster/member/update"] = Unary(&calls_, cluster, &C::async::MemberUpdate);
    u["cluster/member/list"] = Unary(&calls_, cluster, &C::async::MemberList);
    u["cluster/member/promote"] = Unary(&calls_, cluster, &C::async::MemberPromote);
    u["maintenance/alarm"] = Unary(&calls_, maint, &M::async::Alarm);
    u["maintenance/status"] = Unary(&calls_, maint, &M::async::Status);
    u["maintenance/defragment"] = Unary(&calls_, maint, &M::async::Defragment);
    // etcd's gateway maps both Hash and HashKV to /v3/maintenance/hash; the
    // first registration (Hash) wins there.
    u["maintenance/hash"] = Unary(&calls_, maint, &M::async::Hash);
    u["maintenance/transfer-leadership"] = Unary(&calls_, maint, &M::async::MoveLeader);
    u["auth/enable"] = Unary(&calls_, auth, &A::async::AuthEnable);
    u["auth/disable"] = Unary(&calls_, auth, &A::async::AuthDisable);
    u["auth/authenticate"] = Unary(&calls_, auth, &A::async::Authenticate);
    u["auth/user/add"] = Unary(&calls_, auth, &A::async::UserAdd);
    u["auth/user/get"] = Unary(&calls_, auth, &A::async::UserGet);
    u["auth/user/list"] = Unary(&calls_, auth, &A::async::UserList);
    u["auth/user/delete"] = Unary(&calls_, auth, &A::async::UserDelete);
    u["auth/user/changepw"] = Unary(&calls_, auth, &A::async::UserChangePassword);
    u["auth/user/grant"] = Unary(&calls_, auth, &A::async::UserGrantRole);
    u["auth/user/revoke"] = Unary(&calls_, auth, &A::async::UserRevokeRole);
    u["auth/role/add"] = Unary(&calls_, auth, &A::async::RoleAdd);
    u["auth/role/get"] = Unary(&calls_, auth, &A::async::RoleGet);
    u["auth/role/list"] = Unary(&calls_, auth, &A::async::RoleList);
    u["auth/role/delete"] = Unary(&calls_, auth, &A::async::RoleDelete);
    u["auth/role/grant"] = Unary(&calls_, auth, &A::async::RoleGrantPermission);
    u["auth/role/revoke"] = Unary(&calls_, auth, &A::async::RoleRevokePermission);
    u["lock/lock"] = Unary(&calls_, lock, &v3lockpb::Lock::Stub::async::Lock);
    u["lock/unlock"] = Unary(&calls_, lock, &v3lockpb::Lock::Stub::async::Unlock);
    using E = v3electionpb::Election::Stub;
    u["election/campaign"] = Unary(&calls_, election, &E::async::Campaign);
    u["election/proclaim"] = Unary(&calls_, election, &E::async::Proclaim);
    u["election/leader"] = Unary(&calls_, election, &E::async::Leader);
    u["election/resign"] = Unary(&calls_, election, &E::async::Resign);
  }


  // POST /v3/<path>: a reply now, or nullopt when the call started (or
  // waits for a slot) and will finish the exchange.
  std::optional<Reply> Gateway(const std::shared_ptr<Exchange>& ex, const std::string& path) {
    if (path == "watch") {
      return Stream<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>(
          ex, /*one_reply_each=*/false, [this](grpc::ClientContext* ctx, auto* reactor) {
            stubs_.watch->async()->Watch(ctx, reactor);
          });
    }
    if (path == "maintenance/snapshot") {
      return ServerStream<etcdserverpb::SnapshotRequest, etcdserverpb::SnapshotResponse>(
          ex, [this](grpc::ClientContext* ctx, const auto* r, auto* reactor) {
            stubs_.maintenance->async()->Snapshot(ctx, r, reactor);
          });
    }
    if (path == "election/observe") {
      return ServerStream<v3electionpb::LeaderRequest, v3electionpb::LeaderResponse>(
          ex, [this](grpc::ClientContext* ctx, const auto* r, auto* reactor) {
            stubs_.election->async()->Observe(ctx, r, reactor);
          });
    }
    if (path == "lease/keepalive") {
      return Stream<etcdserverpb::LeaseKeepAliveRequest, etcdserverpb::LeaseKeepAliveResponse>(
          ex, /*one_reply_each=*/true, [this](grpc::ClientContext* ctx, auto* reactor) {
            stubs_.lease->async()->LeaseKeepAlive(ctx, reactor);
          });
    }
    auto it = unary_.find(path);
    if (it == unary_.end()) return TextReply(404, "Not Found\n");
    it->second(ex);
    return std::nullopt;
  }

  // A gateway stream: every JSON value of the body is one request; each
  // response is written as a chunk {"result":...} plus a newline. With
  // `one_reply_each` (keep-alive) the stream ends after one response per
  // request, as etcd's ends when the request body does; otherwise (watch) it
  // lasts until the client leaves or the call ends.
  template <class Req, class Resp, class StartFn>
  std::optional<Reply> Stream(const std::shared_ptr<Exchange>& ex, bool one_reply_each,
                              StartFn start) {
    absl::StatusOr<std::vector<std::string_view>> values = SplitJsonValues(ex->body);
    if (!values.ok()) return ParseErrorReply(values.status());
    std::vector<Req> requests;
    for (std::string_view v : *values) {
      Req r;
      if (absl::Status st = GatewayJsonToMessage(v, &r); !st.ok()) return ParseErrorReply(st);
      requests.push_back(std::move(r));
    }
    ex->one_reply_each = one_reply_each;
    ex->expected_replies = requests.size();
    auto bridge =
        std::make_shared<BidiBridge<Req, Resp>>(std::move(requests), stream_queued_bytes_);
    StartStream(ex, bridge, [bridge, start] {
      start(bridge->context(), bridge.get());
      bridge->Begin();
    });
    return std::nullopt;
  }

  // A server-streaming gateway call: the body is its one request.
  template <class Req, class Resp, class StartFn>
  std::optional<Reply> ServerStream(const std::shared_ptr<Exchange>& ex, StartFn start) {
    Req req;
    if (!ex->body.empty()) {
      if (absl::Status st = GatewayJsonToMessage(ex->body, &req); !st.ok()) {
        return ParseErrorReply(st);
      }
    }
    auto bridge = std::make_shared<ReadBridge<Req, Resp>>(std::move(req), stream_queued_bytes_);
    StartStream(ex, bridge, [bridge, start] {
      start(bridge->context(), bridge->request(), bridge.get());
      bridge->Begin();
    });
    return std::nullopt;
  }

  // Starts a stream's call once it has a slot (CallRegistry), then the
  // exchange queues the streamed reply (QueueStream). The slot is freed
  // when the call ends.
  void StartStream(const std::shared_ptr<Exchange>& ex, std::shared_ptr<StreamOutput> output,
                   std::function<void()> begin) {
    ForwardMetadata(ex->connection(), output->context());
    ex->OnCancel([output] { output->Cancel(); });
    calls_.Acquire([this, ex, output, begin](bool granted) {
      if (!granted) {
        ex->Finish(ShuttingDownReply());
        return false;
      }
      if (ex->Gone()) {
        ex->Wake();
        return false;
      }
      grpc::ClientContext* ctx = output->context();
      if (!calls_.Add(ctx)) {
        ex->Finish(ShuttingDownReply());
        return false;
      }
      std::weak_ptr<Exchange> weak = ex;
      output->SetCallbacks(
          [weak] {
            if (auto e = weak.lock()) e->Wake();
          },
          [this, ctx] { calls_.End(ctx); });
      ex->stream = output;
      Reply r;
      r.stream = true;
      ex->Finish(std::move(r));
      begin();
      return true;
    });
  }

  // Queues the chunked reply of a started stream (MHD thread).
  MHD_Result QueueStream(const std::shared_ptr<Exchange>& ex) {
    auto* reply = new StreamReply;
    reply->output = ex->stream;
    reply->exchange = ex;
    reply->stopping = &stopping_;
    reply->one_reply_each = ex->one_reply_each;
    reply->expected = ex->expected_replies;
    // The block size bounds one Read: at most one such piece of a queued
    // response is held by MHD at a time.
    MHD_Response* resp = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, 16 * 1024, &StreamReply::Read, reply, &StreamReply::Free);
    if (resp == nullptr) {
      delete reply;
      return MHD_NO;
    }
    for (const auto& [k, v] : ex->extra_headers) {
      MHD_add_response_header(resp, k.c_str(), v.c_str());
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, kJson);
    MHD_add_response_header(resp, "Grpc-Metadata-Content-Type", "application/grpc");
    const MHD_Result ret = MHD_queue_response(ex->connection(), MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
  }

  HttpServerOptions options_;
  std::atomic<bool> stopping_{false};  // set once, by Shutdown
  // Over every gateway stream's queue.
  const std::shared_ptr<std::atomic<int64_t>> stream_queued_bytes_ =
      std::make_shared<std::atomic<int64_t>>(0);
  MHD_Daemon* daemon_ = nullptr;
  DepartureWatch watch_;
  HealthWorker health_;
  // Connections handed over and not yet attached by MHD: their identity by
  // descriptor number (with an id, so a late failure removes only its own).
  util::Mutex mu_;
  util::CondVar adding_idle_;
  absl::flat_hash_map<int, std::pair<uint64_t, ConnectionInfo>> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t next_pending_ ABSL_GUARDED_BY(mu_) = 0;
  int adding_ ABSL_GUARDED_BY(mu_) = 0;  // AddConnection calls in MHD_add_connection
  // Requests suspended now (Exchange::Suspend, Wake).
  util::Mutex suspend_mu_;
  util::CondVar suspended_idle_;
  int suspended_ ABSL_GUARDED_BY(suspend_mu_) = 0;
  GatewayStubs stubs_;
  CallRegistry calls_;
  std::map<std::string, UnaryHandler> unary_;
};

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  if (absl::Status st = impl->Init(); !st.ok()) return st;
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpServer::~HttpServer() { Shutdown(); }

void HttpServer::AddConnection(int fd, const HttpPeer& peer, HttpRoutes routes) {
  impl_->AddConnection(fd, peer, routes);
}

int64_t HttpServer::StreamQueuedBytes() const { return impl_->StreamQueuedBytes(); }

void HttpServer::Shutdown() { impl_->Shutdown(); }

}  // namespace cppetcd::api
