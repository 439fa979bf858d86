#include "cppetcd/api/http_server.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdlib>
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
#include <grpcpp/grpcpp.h>
#include <httplib.h>

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

// ---- Serving a handed-over connection

// How long a kept-alive connection may wait for its next request, and how
// many requests it may carry (then the last reply says "Connection: close").
constexpr std::chrono::seconds kKeepAliveTimeout{30};
constexpr size_t kKeepAliveMaxRequests = 10000;
// Bounds of one read or write while a request is read or a reply written
// (httplib's defaults).
constexpr std::chrono::seconds kReadTimeout{5};
constexpr std::chrono::seconds kWriteTimeout{5};

// httplib's request handling without its listening socket: the routes of a
// Server, fed one request at a time from a ConnectionStream.
class RouteTable : public httplib::Server {
 public:
  // httplib takes an invalid listening socket for "shutting down" (streamed
  // replies stop); there is none here, so mark it running until Stop.
  RouteTable() { svr_sock_ = std::numeric_limits<int>::max(); }

  // Reads one request from `strm` and writes its reply (httplib's step of a
  // kept-alive connection). False when the connection cannot go on.
  bool ProcessRequest(httplib::Stream& strm, bool close_connection, bool* connection_closed) {
    return process_request(strm, close_connection, *connection_closed, nullptr);
  }

  // Streamed replies end after their current chunk.
  void Stop() { svr_sock_ = INVALID_SOCKET; }
};

// An HttpConnection as httplib's Stream: buffered reads (httplib reads
// request lines a byte at a time), each read and write bounded by its
// timeout and cut short by `cancel_fd`.
class ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(HttpConnection& conn, int cancel_fd) : conn_(conn), cancel_fd_(cancel_fd) {}

  // Waits up to `timeout` for the first bytes of the next request. False at
  // the end of the stream, on an error, a timeout or cancellation.
  bool WaitForRequest(std::chrono::milliseconds timeout) {
    if (pos_ < len_) return true;
    return Fill(HttpConnection::Clock::now() + timeout) > 0;
  }

  // Reads wait by themselves (up to kReadTimeout).
  bool is_readable() const override { return true; }
  // False once the client has gone: a streamed reply (watch) stops.
  bool is_writable() const override { return conn_.PeerAlive(); }

  ssize_t read(char* ptr, size_t size) override {
    if (pos_ == len_) {
      const ssize_t n = Fill(HttpConnection::Clock::now() + kReadTimeout);
      if (n <= 0) return n;
    }
    const size_t n = std::min(size, len_ - pos_);
    std::memcpy(ptr, buf_.data() + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    return conn_.Write(ptr, size, HttpConnection::Clock::now() + kWriteTimeout, cancel_fd_);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    conn_.RemoteAddress(&ip, &port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    conn_.LocalAddress(&ip, &port);
  }
  // No descriptor httplib may select() on: readiness is this stream's own.
  socket_t socket() const override { return INVALID_SOCKET; }

 private:
  ssize_t Fill(HttpConnection::Clock::time_point deadline) {
    const ssize_t n = conn_.Read(buf_.data(), buf_.size(), deadline, cancel_fd_);
    pos_ = 0;
    len_ = n > 0 ? static_cast<size_t>(n) : 0;
    return n;
  }

  HttpConnection& conn_;
  const int cancel_fd_;
  std::array<char, 16 * 1024> buf_;
  size_t pos_ = 0;  // buf_[pos_, len_) is read and not yet consumed
  size_t len_ = 0;
};

// ---- Gateway calls

void WriteGrpcError(httplib::Response& res, const grpc::Status& st) {
  const int code = static_cast<int>(st.error_code());
  res.status = HttpStatusFromGrpcCode(code);
  res.set_content(GatewayErrorJson(code, st.error_message()), kJson);
}

void WriteParseError(httplib::Response& res, const absl::Status& st) {
  res.status = 400;
  res.set_content(GatewayErrorJson(static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT),
                                   std::string(st.message())),
                  kJson);
}

// What the gateway forwards from HTTP headers (grpc-gateway's defaults):
// Authorization as "authorization", Grpc-Metadata-<K> as <k>.
void ForwardMetadata(const httplib::Request& req, grpc::ClientContext* ctx) {
  for (const auto& [name, value] : req.headers) {
    const std::string lower = absl::AsciiStrToLower(name);
    if (lower == "authorization") {
      ctx->AddMetadata("authorization", value);
    } else if (absl::StartsWith(lower, "grpc-metadata-") && lower.size() > 14) {
      ctx->AddMetadata(lower.substr(14), value);
    }
  }
}

using UnaryHandler = std::function<void(const httplib::Request&, httplib::Response&)>;

// The HTTP connection whose request this thread is serving (set by
// ServeConnection for its duration), so that a gateway call waiting for a
// free slot notices that its client has gone.
thread_local HttpConnection* t_serving = nullptr;

// The gateway's calls in flight, cancelled at shutdown: some wait without
// bound (v3lock Lock, v3election Campaign) and would hold their connection
// thread, which Shutdown joins, until the gRPC server goes.
//
// It also bounds how many run at once, as etcd's does: etcd's gateway
// reaches its own gRPC server over one HTTP/2 connection, whose
// MAX_CONCURRENT_STREAMS is --max-concurrent-streams, so while that many
// gateway calls (streams included) are open, the next one waits for one of
// them to end (etcd e2e TestV3Curl_MaxStreams_*).
class CallRegistry {
 public:
  void SetMaxCalls(uint64_t n) {
    util::MutexLock lock(&mu_);
    max_calls_ = n == 0 ? 1 : n;
  }
  // Takes a slot, waiting while every slot is taken. False (no slot) once
  // cancelled or once the HTTP client being served on this thread has gone.
  bool AcquireSlot() {
    HttpConnection* const conn = t_serving;
    util::MutexLock lock(&mu_);
    while (!cancelled_ && slots_taken_ >= max_calls_) {
      slot_freed_.WaitFor(&mu_, std::chrono::milliseconds(200));
      if (conn != nullptr && !conn->PeerAlive()) return false;
    }
    if (cancelled_) return false;
    ++slots_taken_;
    return true;
  }
  void ReleaseSlot() {
    {
      util::MutexLock lock(&mu_);
      --slots_taken_;
    }
    slot_freed_.Signal();
  }
  // A slot held until the returned object is destroyed; null when
  // AcquireSlot failed.
  std::shared_ptr<void> Slot() {
    if (!AcquireSlot()) return nullptr;
    return std::shared_ptr<void>(this, [](CallRegistry* r) { r->ReleaseSlot(); });
  }

  // False once cancelled: the call must not start.
  bool Add(grpc::ClientContext* ctx) {
    util::MutexLock lock(&mu_);
    if (cancelled_) return false;
    calls_.insert(ctx);
    return true;
  }
  void Remove(grpc::ClientContext* ctx) {
    util::MutexLock lock(&mu_);
    calls_.erase(ctx);
  }
  void CancelAll() {
    {
      util::MutexLock lock(&mu_);
      cancelled_ = true;
      for (grpc::ClientContext* c : calls_) c->TryCancel();
    }
    slot_freed_.SignalAll();
  }

 private:
  util::Mutex mu_;
  util::CondVar slot_freed_;
  std::set<grpc::ClientContext*> calls_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t max_calls_ ABSL_GUARDED_BY(mu_) = UINT64_MAX;
  uint64_t slots_taken_ ABSL_GUARDED_BY(mu_) = 0;
};

void WriteNoSlot(httplib::Response& res) {
  WriteGrpcError(res, grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down"));
}

template <class Stub, class Req, class Resp>
UnaryHandler Unary(CallRegistry* calls, std::shared_ptr<Stub> stub,
                   grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*)) {
  return [calls, stub, method](const httplib::Request& http_req, httplib::Response& res) {
    Req req;
    if (!http_req.body.empty()) {
      if (absl::Status st = GatewayJsonToMessage(http_req.body, &req); !st.ok()) {
        WriteParseError(res, st);
        return;
      }
    }
    const std::shared_ptr<void> slot = calls->Slot();
    if (slot == nullptr) {  // shutting down, or the client left while waiting
      WriteNoSlot(res);
      return;
    }
    grpc::ClientContext ctx;
    ForwardMetadata(http_req, &ctx);
    Resp resp;
    if (!calls->Add(&ctx)) {
      WriteGrpcError(res, grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down"));
      return;
    }
    grpc::Status st = ((*stub).*method)(&ctx, req, &resp);
    calls->Remove(&ctx);
    if (!st.ok()) {
      WriteGrpcError(res, st);
      return;
    }
    res.set_header("Grpc-Metadata-Content-Type", "application/grpc");
    res.set_content(MessageToGatewayJson(resp), kJson);
  };
}

// The response side of a gateway stream: responses as JSON, queued for the
// HTTP connection's thread, and the call's end. The queue is bounded
// (kGatewayStreamQueue*): when it fills, the bridge stops reading from the
// gRPC call until the connection's thread has taken what is queued, so a
// slow HTTP reader holds back the gRPC stream (and through its flow control
// the server's watch, keep-alive or snapshot) instead of growing this queue.
class StreamOutput {
 public:
  explicit StreamOutput(std::atomic<int64_t>* queued_bytes_gauge)
      : gauge_(queued_bytes_gauge) {}
  virtual ~StreamOutput() { gauge_->fetch_sub(static_cast<int64_t>(queued_bytes_)); }
  grpc::ClientContext* context() { return &ctx_; }

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
    cv_.SignalAll();
    return room;
  }
  void Finish(const grpc::Status& status) {
    {
      util::MutexLock lock(&mu_);
      done_ = true;
      status_ = status;
    }
    cv_.SignalAll();
  }

  // Waits up to `timeout` for output. Returns the queued responses; `finished`
  // and `status` tell whether the call is over, `received` how many
  // responses arrived in all. Restarts reading if a full queue paused it.
  std::vector<std::string> Wait(std::chrono::milliseconds timeout, bool* finished,
                                grpc::Status* status, size_t* received) {
    std::vector<std::string> out;
    bool resume = false;
    {
      util::MutexLock lock(&mu_);
      cv_.WaitFor(&mu_, timeout, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || done_; });
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

  // Cancels the call if still running and waits for its end.
  void CancelAndWait() {
    ctx_.TryCancel();
    bool resume = false;
    {
      util::MutexLock lock(&mu_);
      resume = std::exchange(paused_, false);
    }
    // A paused call holds its end (see ResumeRead): the read fails at once
    // on the cancelled call and lets it end.
    if (resume) ResumeRead();
    util::MutexLock lock(&mu_);
    cv_.Wait(&mu_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_; });
  }

 protected:
  // Starts the next read of the gRPC call after a pause and releases the
  // hold its OnReadDone took (a hold keeps OnDone from running while no
  // read is in flight, so the read may start from this thread).
  virtual void ResumeRead() = 0;

 private:
  grpc::ClientContext ctx_;
  std::atomic<int64_t>* const gauge_;  // the server's total of queued bytes
  util::Mutex mu_;
  util::CondVar cv_;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);  // JSON of responses not yet written
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;        // their size
  bool paused_ ABSL_GUARDED_BY(mu_) = false;            // no read in flight: queue was full
  size_t received_ ABSL_GUARDED_BY(mu_) = 0;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

// A bidirectional gateway stream: the requests of the HTTP body are written
// in order, responses are queued as they arrive.
template <class Req, class Resp>
class BidiBridge : public grpc::ClientBidiReactor<Req, Resp>, public StreamOutput {
 public:
  BidiBridge(std::vector<Req> requests, std::atomic<int64_t>* gauge)
      : StreamOutput(gauge), requests_(std::move(requests)) {}

  // After the stub registered the reactor.
  void Begin() {
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
  void OnDone(const grpc::Status& status) override { Finish(status); }

 protected:
  void ResumeRead() override {
    this->StartRead(&incoming_);
    this->RemoveHold();
  }

 private:
  std::vector<Req> requests_;
  size_t next_write_ = 0;  // reactor callbacks only
  Resp incoming_;
};

// A server-streaming gateway call (Maintenance.Snapshot, Election.Observe):
// one request, responses queued as they arrive.
template <class Req, class Resp>
class ReadBridge : public grpc::ClientReadReactor<Resp>, public StreamOutput {
 public:
  ReadBridge(Req request, std::atomic<int64_t>* gauge)
      : StreamOutput(gauge), request_(std::move(request)) {}
  const Req* request() const { return &request_; }

  void Begin() {
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
  void OnDone(const grpc::Status& status) override { Finish(status); }

 protected:
  void ResumeRead() override {
    this->StartRead(&incoming_);
    this->RemoveHold();
  }

 private:
  const Req request_;
  Resp incoming_;
};

// grpc-gateway's error chunk of a stream that failed after it started.
std::string StreamErrorChunk(const grpc::Status& st) {
  const int code = static_cast<int>(st.error_code());
  const int http = HttpStatusFromGrpcCode(code);
  return absl::StrCat("{\"error\":{\"grpc_code\":", code, ",\"http_code\":", http,
                      ",\"message\":", JsonQuote(st.error_message()), ",\"http_status\":",
                      JsonQuote(HttpStatusText(http)), "}}\n");
}

}  // namespace

// ---- HttpServer::Impl

class HttpServer::Impl {
 public:
  explicit Impl(HttpServerOptions options) : options_(std::move(options)) {}
  ~Impl() {
    Shutdown();
    CloseCancelFd();
  }

  absl::Status Init() {
    if (options_.backend == nullptr) return absl::InvalidArgumentError("HttpServer: no backend");
    cancel_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (cancel_fd_ < 0) return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));
    calls_.SetMaxCalls(options_.max_concurrent_streams);
    if (options_.gateway_channel != nullptr) BuildGateway();
    all_routes_ = NewRouteTable(/*full=*/true, /*tls=*/false);
    all_routes_tls_ = NewRouteTable(/*full=*/true, /*tls=*/true);
    metrics_routes_ = NewRouteTable(/*full=*/false, /*tls=*/false);
    return absl::OkStatus();
  }

  void ServeConnection(HttpConnection& conn, HttpRoutes routes) {
    {
      util::MutexLock l(&connections_mu_);
      if (stopping_.load()) return;
      ++connections_;
    }
    RouteTable& table = routes == HttpRoutes::kMetrics ? *metrics_routes_
                        : conn.Tls()                   ? *all_routes_tls_
                                                       : *all_routes_;
    ConnectionStream stream(conn, cancel_fd_);
    t_serving = &conn;
    absl::Cleanup not_serving = [] { t_serving = nullptr; };
    for (size_t n = 1; n <= kKeepAliveMaxRequests && !stopping_.load(); ++n) {
      if (!stream.WaitForRequest(kKeepAliveTimeout)) break;
      bool closed = false;
      if (!table.ProcessRequest(stream, n == kKeepAliveMaxRequests, &closed) || closed) break;
    }
    util::MutexLock l(&connections_mu_);
    if (--connections_ == 0) connections_idle_.SignalAll();
  }

  void Shutdown() {
    {
      util::MutexLock l(&connections_mu_);
      if (stopping_.exchange(true)) return;
    }
    calls_.CancelAll();
    if (all_routes_ != nullptr) all_routes_->Stop();
    if (all_routes_tls_ != nullptr) all_routes_tls_->Stop();
    if (metrics_routes_ != nullptr) metrics_routes_->Stop();
    if (cancel_fd_ >= 0) {
      const uint64_t one = 1;
      (void)!::write(cancel_fd_, &one, sizeof(one));
    }
    util::MutexLock l(&connections_mu_);
    connections_idle_.Wait(&connections_mu_,
                           [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(connections_mu_) { return connections_ == 0; });
  }

  void CloseCancelFd() {
    if (cancel_fd_ >= 0) ::close(cancel_fd_);
    cancel_fd_ = -1;
  }

  int64_t StreamQueuedBytes() const { return stream_queued_bytes_.load(); }

 private:
  struct GatewayStubs {
    std::shared_ptr<etcdserverpb::Watch::Stub> watch;
    std::shared_ptr<etcdserverpb::Lease::Stub> lease;
    std::shared_ptr<etcdserverpb::Maintenance::Stub> maintenance;
    std::shared_ptr<v3electionpb::Election::Stub> election;
  };

  // `tls`: the table for connections the listener terminated TLS for (no
  // Host check there, as in etcd).
  std::unique_ptr<RouteTable> NewRouteTable(bool full, bool tls) {
    auto table = std::make_unique<RouteTable>();
    table->set_payload_max_length(options_.max_body_bytes);
    // Client routes add CORS headers per request (--cors); the metrics
    // routes always allow every origin.
    if (!full) table->set_default_headers(CorsHeaders("*"));
    Routes(*table, full, tls);
    return table;
  }

  static httplib::Headers CorsHeaders(const std::string& origin) {
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
  // connections (421, against DNS rebinding), then --cors. True when the
  // request was answered here.
  bool AccessControl(const httplib::Request& req, httplib::Response& res, bool tls) {
    if (!tls) {
      const std::string host = HostName(req.get_header_value("Host"));
      if (!Listed(options_.host_whitelist, host)) {
        options_.logger.Warn("rejecting HTTP request to prevent DNS rebinding attacks",
                             {{"host", host}});
        res.status = 421;
        res.set_header("X-Content-Type-Options", "nosniff");
        res.set_content(absl::StrCat("the Host header \"", host,
                                     "\" is not in --host-whitelist; connect over TLS or add "
                                     "the host with --host-whitelist\n"),
                        "text/plain; charset=utf-8");
        return true;
      }
    }
    const std::string origin = req.get_header_value("Origin");
    if (Listed(options_.cors_origins, "*")) {  // "*" listed, or nothing (etcd's default)
      for (const auto& [k, v] : CorsHeaders("*")) res.set_header(k, v);
    } else if (!origin.empty() && Listed(options_.cors_origins, origin)) {
      for (const auto& [k, v] : CorsHeaders(origin)) res.set_header(k, v);
    }
    return false;
  }

  void Routes(httplib::Server& s, bool full, bool tls) {
    // etcd does not compress; the library would gzip JSON for clients that
    // accept it, which breaks line-by-line stream readers.
    s.set_pre_routing_handler([this, full, tls](const httplib::Request& req,
                                                httplib::Response& res) {
      if (full && AccessControl(req, res, tls)) return httplib::Server::HandlerResponse::Handled;
      auto& mutable_req = const_cast<httplib::Request&>(req);
      mutable_req.headers.erase("Accept-Encoding");
      // HTTP/1.1: a request with neither Content-Length nor chunked framing
      // has an empty body (`curl -X POST .../v3/maintenance/status`); the
      // library would refuse it.
      if (!req.has_header("Content-Length") && !req.has_header("Transfer-Encoding")) {
        mutable_req.headers.emplace("Content-Length", "0");
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    s.Options(".*", [](const httplib::Request&, httplib::Response& res) { res.status = 200; });
    s.Get("/health", [this](const httplib::Request& req, httplib::Response& res) {
      Health(req, res);
    });
    s.Get("/livez", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("ok", "text/plain; charset=utf-8");
    });
    s.Get("/readyz", [this](const httplib::Request& req, httplib::Response& res) {
      Readyz(req, res);
    });
    s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      if (options_.metrics == nullptr) {
        NotFound(res);
        return;
      }
      res.set_content(options_.metrics->Render(), "text/plain; version=0.0.4; charset=utf-8");
    });
    if (!full) return;
    s.Get("/version", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(absl::StrCat("{\"etcdserver\":", JsonQuote(options_.server_version),
                                   ",\"etcdcluster\":", JsonQuote(options_.cluster_version), "}"),
                      kJson);
    });
    const std::string v3 = "/v3(?:beta)?/(.*)";
    s.Post(v3, [this](const httplib::Request& req, httplib::Response& res) { Gateway(req, res); });
    s.Put(v3, [this](const httplib::Request& req, httplib::Response& res) { Gateway(req, res); });
    s.Get(v3, [this](const httplib::Request&, httplib::Response& res) {
      if (options_.gateway_channel == nullptr) {
        NotFound(res);
        return;
      }
      res.status = 405;
      res.set_content("Method Not Allowed\n", "text/plain; charset=utf-8");
    });
  }

  static void NotFound(httplib::Response& res) {
    res.status = 404;
    res.set_content("404 page not found\n", "text/plain; charset=utf-8");
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

  void Health(const httplib::Request& req, httplib::Response& res) {
    std::vector<std::string> excluded;
    for (auto [it, end] = req.params.equal_range("exclude"); it != end; ++it) {
      if (!it->second.empty()) excluded.push_back(it->second);
    }
    if (auto reason = Unhealthy(excluded, false); reason.has_value()) {
      options_.logger.Warn("/health error", {{"reason", *reason}, {"status-code", 503}});
      res.status = 503;
      res.set_content("{\"health\":\"false\"}\n", "text/plain; charset=utf-8");
      return;
    }
    res.set_content("{\"health\":\"true\"}", "text/plain; charset=utf-8");
  }

  // etcd 3.5's /readyz: plain "ok", or the failed check and 503.
  void Readyz(const httplib::Request& req, httplib::Response& res) {
    const bool verbose = req.has_param("verbose");
    if (auto reason = Unhealthy({}, true); reason.has_value()) {
      res.status = 503;
      res.set_content(absl::StrCat("[-]linearizable_read failed: ", *reason,
                                   "\nreadyz check failed\n"),
                      "text/plain; charset=utf-8");
      return;
    }
    res.set_content(verbose ? "[+]data_corruption ok\n[+]serializable_read ok\n"
                              "[+]linearizable_read ok\nok\n"
                            : "ok",
                    "text/plain; charset=utf-8");
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
    u["kv/range"] = Unary(&calls_, kv, &KV::Range);
    u["kv/put"] = Unary(&calls_, kv, &KV::Put);
    u["kv/deleterange"] = Unary(&calls_, kv, &KV::DeleteRange);
    u["kv/txn"] = Unary(&calls_, kv, &KV::Txn);
    u["kv/compaction"] = Unary(&calls_, kv, &KV::Compact);
    u["lease/grant"] = Unary(&calls_, lease, &L::LeaseGrant);
    u["lease/revoke"] = u["kv/lease/revoke"] = Unary(&calls_, lease, &L::LeaseRevoke);
    u["lease/timetolive"] = u["kv/lease/timetolive"] = Unary(&calls_, lease, &L::LeaseTimeToLive);
    u["lease/leases"] = u["kv/lease/leases"] = Unary(&calls_, lease, &L::LeaseLeases);
    u["cluster/member/add"] = Unary(&calls_, cluster, &C::MemberAdd);
    u["cluster/member/remove"] = Unary(&calls_, cluster, &C::MemberRemove);
    u["cluster/member/update"] = Unary(&calls_, cluster, &C::MemberUpdate);
    u["cluster/member/list"] = Unary(&calls_, cluster, &C::MemberList);
    u["cluster/member/promote"] = Unary(&calls_, cluster, &C::MemberPromote);
    u["maintenance/alarm"] = Unary(&calls_, maint, &M::Alarm);
    u["maintenance/status"] = Unary(&calls_, maint, &M::Status);
    u["maintenance/defragment"] = Unary(&calls_, maint, &M::Defragment);
    // etcd's gateway maps both Hash and HashKV to /v3/maintenance/hash; the
    // first registration (Hash) wins there.
    u["maintenance/hash"] = Unary(&calls_, maint, &M::Hash);
    u["maintenance/transfer-leadership"] = Unary(&calls_, maint, &M::MoveLeader);
    u["auth/enable"] = Unary(&calls_, auth, &A::AuthEnable);
    u["auth/disable"] = Unary(&calls_, auth, &A::AuthDisable);
    u["auth/authenticate"] = Unary(&calls_, auth, &A::Authenticate);
    u["auth/user/add"] = Unary(&calls_, auth, &A::UserAdd);
    u["auth/user/get"] = Unary(&calls_, auth, &A::UserGet);
    u["auth/user/list"] = Unary(&calls_, auth, &A::UserList);
    u["auth/user/delete"] = Unary(&calls_, auth, &A::UserDelete);
    u["auth/user/changepw"] = Unary(&calls_, auth, &A::UserChangePassword);
    u["auth/user/grant"] = Unary(&calls_, auth, &A::UserGrantRole);
    u["auth/user/revoke"] = Unary(&calls_, auth, &A::UserRevokeRole);
    u["auth/role/add"] = Unary(&calls_, auth, &A::RoleAdd);
    u["auth/role/get"] = Unary(&calls_, auth, &A::RoleGet);
    u["auth/role/list"] = Unary(&calls_, auth, &A::RoleList);
    u["auth/role/delete"] = Unary(&calls_, auth, &A::RoleDelete);
    u["auth/role/grant"] = Unary(&calls_, auth, &A::RoleGrantPermission);
    u["auth/role/revoke"] = Unary(&calls_, auth, &A::RoleRevokePermission);
    u["lock/lock"] = Unary(&calls_, lock, &v3lockpb::Lock::Stub::Lock);
    u["lock/unlock"] = Unary(&calls_, lock, &v3lockpb::Lock::Stub::Unlock);
    using E = v3electionpb::Election::Stub;
    u["election/campaign"] = Unary(&calls_, election, &E::Campaign);
    u["election/proclaim"] = Unary(&calls_, election, &E::Proclaim);
    u["election/leader"] = Unary(&calls_, election, &E::Leader);
    u["election/resign"] = Unary(&calls_, election, &E::Resign);
  }

  void Gateway(const httplib::Request& req, httplib::Response& res) {
    if (options_.gateway_channel == nullptr) {  // etcd --enable-grpc-gateway=false
      NotFound(res);
      return;
    }
    if (stopping_.load()) {
      res.status = 404;
      res.set_content("Not Found\n", "text/plain; charset=utf-8");
      return;
    }
    const std::string path = req.matches.size() > 1 ? req.matches[1].str() : "";
    if (path == "watch") {
      Stream<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>(
          req, res, /*one_reply_each=*/false,
          [this](grpc::ClientContext* ctx, auto* reactor) {
            stubs_.watch->async()->Watch(ctx, reactor);
          });
      return;
    }
    if (path == "maintenance/snapshot") {
      ServerStream<etcdserverpb::SnapshotRequest, etcdserverpb::SnapshotResponse>(
          req, res, [this](grpc::ClientContext* ctx, const auto* r, auto* reactor) {
            stubs_.maintenance->async()->Snapshot(ctx, r, reactor);
          });
      return;
    }
    if (path == "election/observe") {
      ServerStream<v3electionpb::LeaderRequest, v3electionpb::LeaderResponse>(
          req, res, [this](grpc::ClientContext* ctx, const auto* r, auto* reactor) {
            stubs_.election->async()->Observe(ctx, r, reactor);
          });
      return;
    }
    if (path == "lease/keepalive") {
      Stream<etcdserverpb::LeaseKeepAliveRequest, etcdserverpb::LeaseKeepAliveResponse>(
          req, res, /*one_reply_each=*/true,
          [this](grpc::ClientContext* ctx, auto* reactor) {
            stubs_.lease->async()->LeaseKeepAlive(ctx, reactor);
          });
      return;
    }
    auto it = unary_.find(path);
    if (it == unary_.end()) {
      res.status = 404;
      res.set_content("Not Found\n", "text/plain; charset=utf-8");
      return;
    }
    it->second(req, res);
  }

  // A gateway stream: every JSON value of the body is one request; each
  // response is written as a chunk {"result":...} plus a newline. With
  // `one_reply_each` (keep-alive) the stream ends after one response per
  // request, as etcd's ends when the request body does; otherwise (watch) it
  // lasts until the client leaves or the call ends.
  template <class Req, class Resp, class StartFn>
  void Stream(const httplib::Request& http_req, httplib::Response& res, bool one_reply_each,
              StartFn start) {
    absl::StatusOr<std::vector<std::string_view>> values = SplitJsonValues(http_req.body);
    if (!values.ok()) {
      WriteParseError(res, values.status());
      return;
    }
    std::vector<Req> requests;
    for (std::string_view v : *values) {
      Req r;
      if (absl::Status st = GatewayJsonToMessage(v, &r); !st.ok()) {
        WriteParseError(res, st);
        return;
      }
      requests.push_back(std::move(r));
    }
    const size_t expected = requests.size();
    std::shared_ptr<void> slot = calls_.Slot();
    if (slot == nullptr) return WriteNoSlot(res);
    auto bridge =
        std::make_shared<BidiBridge<Req, Resp>>(std::move(requests), &stream_queued_bytes_);
    ForwardMetadata(http_req, bridge->context());
    start(bridge->context(), bridge.get());
    bridge->Begin();
    Serve(res, bridge, std::move(slot), one_reply_each, expected);
  }

  // A server-streaming gateway call: the body is its one request.
  template <class Req, class Resp, class StartFn>
  void ServerStream(const httplib::Request& http_req, httplib::Response& res, StartFn start) {
    Req req;
    if (!http_req.body.empty()) {
      if (absl::Status st = GatewayJsonToMessage(http_req.body, &req); !st.ok()) {
        WriteParseError(res, st);
        return;
      }
    }
    std::shared_ptr<void> slot = calls_.Slot();
    if (slot == nullptr) return WriteNoSlot(res);
    auto bridge = std::make_shared<ReadBridge<Req, Resp>>(std::move(req), &stream_queued_bytes_);
    ForwardMetadata(http_req, bridge->context());
    start(bridge->context(), bridge->request(), bridge.get());
    bridge->Begin();
    Serve(res, bridge, std::move(slot), false, 0);
  }

  // Writes a started stream's responses as chunks until it ends, the client
  // leaves or the server stops; the call is cancelled and awaited when the
  // response is released, and then its slot (CallRegistry) is freed.
  template <class Bridge>
  void Serve(httplib::Response& res, std::shared_ptr<Bridge> bridge, std::shared_ptr<void> slot,
             bool one_reply_each, size_t expected) {
    res.set_header("Grpc-Metadata-Content-Type", "application/grpc");
    res.set_chunked_content_provider(
        kJson,
        [this, bridge, one_reply_each, expected](size_t, httplib::DataSink& sink) {
          while (true) {
            // is_writable: false once the client has gone (ConnectionStream).
            if (stopping_.load() || !sink.is_writable()) return false;
            bool finished = false;
            grpc::Status status;
            size_t received = 0;
            std::vector<std::string> chunks =
                bridge->Wait(std::chrono::milliseconds(500), &finished, &status, &received);
            for (const std::string& c : chunks) {
              const std::string line = absl::StrCat("{\"result\":", c, "}\n");
              if (!sink.write(line.data(), line.size())) return false;
            }
            if (finished) {
              if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
                const std::string e = StreamErrorChunk(status);
                sink.write(e.data(), e.size());
              }
              sink.done();
              return true;
            }
            if (one_reply_each && received >= expected) {
              sink.done();
              return true;
            }
            if (!chunks.empty()) return true;
          }
        },
        [bridge, slot = std::move(slot)](bool) mutable {
          bridge->CancelAndWait();
          slot.reset();
        });
  }

  HttpServerOptions options_;
  std::atomic<bool> stopping_{false};  // set once, under connections_mu_
  std::atomic<int64_t> stream_queued_bytes_{0};  // over every gateway stream's queue
  std::unique_ptr<RouteTable> all_routes_;      // HttpRoutes::kAll, plain text
  std::unique_ptr<RouteTable> all_routes_tls_;  // HttpRoutes::kAll over TLS
  std::unique_ptr<RouteTable> metrics_routes_;  // HttpRoutes::kMetrics
  int cancel_fd_ = -1;  // eventfd, readable once Shutdown starts: connections end
  util::Mutex connections_mu_;
  util::CondVar connections_idle_;
  int connections_ ABSL_GUARDED_BY(connections_mu_) = 0;  // in ServeConnection now
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
void HttpServer::ServeConnection(HttpConnection& connection, HttpRoutes routes) {
  impl_->ServeConnection(connection, routes);
}
int64_t HttpServer::StreamQueuedBytes() const { return impl_->StreamQueuedBytes(); }
void HttpServer::Shutdown() { impl_->Shutdown(); }

}  // namespace cppetcd::api
