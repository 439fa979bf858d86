#include "src/api/gateway_range_json.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include "absl/strings/str_cat.h"
#include "cppetcd/api/http_server.h"

namespace cppetcd::api {

namespace {

using google::protobuf::internal::WireFormatLite;

// RangeResponse's fields (rpc.proto).
constexpr int kHeaderField = 1;
constexpr int kKvsField = 2;
constexpr int kMoreField = 3;
constexpr int kCountField = 4;

constexpr char kBase64Chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// RFC 4648 base64 with padding, as protobuf's JSON printer writes bytes.
void AppendBase64(std::string_view in, std::string* out) {
  const size_t start = out->size();
  out->resize(start + (in.size() + 2) / 3 * 4);
  char* p = out->data() + start;
  const auto* s = reinterpret_cast<const unsigned char*>(in.data());
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t v = (uint32_t{s[i]} << 16) | (uint32_t{s[i + 1]} << 8) | s[i + 2];
    *p++ = kBase64Chars[v >> 18];
    *p++ = kBase64Chars[(v >> 12) & 63];
    *p++ = kBase64Chars[(v >> 6) & 63];
    *p++ = kBase64Chars[v & 63];
  }
  if (i + 1 == in.size()) {
    const uint32_t v = uint32_t{s[i]} << 16;
    *p++ = kBase64Chars[v >> 18];
    *p++ = kBase64Chars[(v >> 12) & 63];
    *p++ = '=';
    *p++ = '=';
  } else if (i + 2 == in.size()) {
    const uint32_t v = (uint32_t{s[i]} << 16) | (uint32_t{s[i + 1]} << 8);
    *p++ = kBase64Chars[v >> 18];
    *p++ = kBase64Chars[(v >> 12) & 63];
    *p++ = kBase64Chars[(v >> 6) & 63];
    *p++ = '=';
  }
}

uint64_t DecimalSize(int64_t v) {
  uint64_t u = v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  uint64_t n = v < 0 ? 2 : 1;
  while (u >= 10) {
    u /= 10;
    ++n;
  }
  return n;
}

// ,"name":"<base64>" or ,"name":"<decimal>"; the comma unless first.
uint64_t FieldSize(std::string_view name, uint64_t value_size, bool* first) {
  const uint64_t comma = *first ? 0 : 1;
  *first = false;
  return comma + name.size() + 3 + value_size + 2;  // "name": + "value"
}

void AppendFieldName(std::string_view name, bool* first, std::string* out) {
  if (!*first) out->push_back(',');
  *first = false;
  out->push_back('"');
  out->append(name);
  out->append("\":\"");
}

// Reads one length-delimited field's contents as `message` (merged, as the
// parser merges repeated occurrences of a message field).
bool ReadMessage(google::protobuf::io::CodedInputStream* in, google::protobuf::MessageLite* m) {
  uint32_t length = 0;
  if (!in->ReadVarint32(&length)) return false;
  const auto limit = in->PushLimit(static_cast<int>(length));
  const bool ok = m->MergePartialFromCodedStream(in) && in->ConsumedEntireMessage();
  in->PopLimit(limit);
  return ok;
}

}  // namespace

// The serialized response read from its first byte (over its slices, no
// copy). The stream reader must outlive the coded stream.
struct RangeJsonWriter::Cursor {
  explicit Cursor(grpc::ByteBuffer* buffer) : reader(buffer), in(&reader) {}
  grpc::ProtoBufferReader reader;
  google::protobuf::io::CodedInputStream in;
};

// The fields of a KeyValue in the gateway's order (grpc-gateway prints
// them by field number; zero and empty ones are left out by the callers):
// `bytes(name, value)` for the base64 fields, `number(name, value)` for the
// int64 ones. The writer and its size pre-pass both walk this one list, so
// the Content-Length always matches the bytes written.
namespace {
template <class Bytes, class Number>
void ForEachKeyValueField(const mvccpb::KeyValue& kv, Bytes&& bytes, Number&& number) {
  bytes("key", kv.key());
  number("create_revision", kv.create_revision());
  number("mod_revision", kv.mod_revision());
  number("version", kv.version());
  bytes("value", kv.value());
  number("lease", kv.lease());
}
}  // namespace

void RangeJsonWriter::AppendKeyValueJson(const mvccpb::KeyValue& kv, std::string* out) {
  out->push_back('{');
  bool first = true;
  auto bytes = [&](std::string_view name, const std::string& v) {
    if (v.empty()) return;
    AppendFieldName(name, &first, out);
    AppendBase64(v, out);
    out->push_back('"');
  };
  auto number = [&](std::string_view name, int64_t v) {
    if (v == 0) return;
    AppendFieldName(name, &first, out);
    absl::StrAppend(out, v);
    out->push_back('"');
  };
  ForEachKeyValueField(kv, bytes, number);
  out->push_back('}');
}

uint64_t RangeJsonWriter::KeyValueJsonSize(const mvccpb::KeyValue& kv) {
  uint64_t n = 2;  // {}
  bool first = true;
  auto bytes = [&](std::string_view name, const std::string& v) {
    if (!v.empty()) n += FieldSize(name, (v.size() + 2) / 3 * 4, &first);
  };
  auto number = [&](std::string_view name, int64_t v) {
    if (v != 0) n += FieldSize(name, DecimalSize(v), &first);
  };
  ForEachKeyValueField(kv, bytes, number);
  return n;
}

RangeJsonWriter::RangeJsonWriter() = default;
RangeJsonWriter::~RangeJsonWriter() = default;

absl::StatusOr<std::unique_ptr<RangeJsonWriter>> RangeJsonWriter::Create(
    grpc::ByteBuffer response) {
  std::unique_ptr<RangeJsonWriter> w(new RangeJsonWriter());
  w->response_ = std::move(response);
  uint64_t kvs_bytes = 0;  // the kvs' JSON, commas included
  if (w->response_.Valid()) {
    Cursor scan(&w->response_);
    google::protobuf::io::CodedInputStream& in = scan.in;
    mvccpb::KeyValue kv;
    while (const uint32_t tag = in.ReadTag()) {
      const int field = WireFormatLite::GetTagFieldNumber(tag);
      const auto type = WireFormatLite::GetTagWireType(tag);
      bool ok = true;
      if (field == kHeaderField && type == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
        w->has_header_ = true;
        ok = ReadMessage(&in, &w->header_);
      } else if (field == kKvsField && type == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
        kv.Clear();
        ok = ReadMessage(&in, &kv);
        kvs_bytes += KeyValueJsonSize(kv) + (w->kvs_ == 0 ? 0 : 1);
        ++w->kvs_;
      } else if (field == kMoreField && type == WireFormatLite::WIRETYPE_VARINT) {
        uint64_t v = 0;
        ok = in.ReadVarint64(&v);
        w->more_ = v != 0;
      } else if (field == kCountField && type == WireFormatLite::WIRETYPE_VARINT) {
        uint64_t v = 0;
        ok = in.ReadVarint64(&v);
        w->count_ = static_cast<int64_t>(v);
      } else {
        ok = WireFormatLite::SkipField(&in, tag);
      }
      if (!ok) return absl::InvalidArgumentError("not a valid RangeResponse");
    }
    if (!in.ConsumedEntireMessage()) {
      return absl::InvalidArgumentError("not a valid RangeResponse");
    }
  }
  // {"header":H,"kvs":[...],"more":true,"count":"N"}, each part optional.
  uint64_t size = 2;
  int parts = 0;
  if (w->has_header_) {
    size += 9 + MessageToGatewayJson(w->header_).size();  // "header":
    ++parts;
  }
  if (w->kvs_ > 0) {
    size += 7 + kvs_bytes + 1;  // "kvs":[ ... ]
    ++parts;
  }
  if (w->more_) {
    size += 11;  // "more":true
    ++parts;
  }
  if (w->count_ != 0) {
    size += 10 + DecimalSize(w->count_);  // "count":"N"
    ++parts;
  }
  if (parts > 1) size += static_cast<uint64_t>(parts - 1);
  w->size_ = size;
  return w;
}

bool RangeJsonWriter::Produce() {
  switch (stage_) {
    case Stage::kHead: {
      pending_.assign(1, '{');  // assign(1, c): GCC 12 warns (-Wrestrict, a false positive) on = "{"
      if (has_header_) absl::StrAppend(&pending_, "\"header\":", MessageToGatewayJson(header_));
      if (kvs_ > 0) {
        if (has_header_) pending_ += ',';
        pending_ += "\"kvs\":[";
        cursor_ = std::make_unique<Cursor>(&response_);
        stage_ = Stage::kKvs;
      } else {
        stage_ = Stage::kTail;
      }
      return true;
    }
    case Stage::kKvs: {
      google::protobuf::io::CodedInputStream& in = cursor_->in;
      while (const uint32_t tag = in.ReadTag()) {
        if (WireFormatLite::GetTagFieldNumber(tag) != kKvsField ||
            WireFormatLite::GetTagWireType(tag) != WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
          if (!WireFormatLite::SkipField(&in, tag)) return false;
          continue;
        }
        kv_.Clear();
        if (!ReadMessage(&in, &kv_)) return false;
        if (kvs_out_ > 0) pending_ += ',';
        AppendKeyValueJson(kv_, &pending_);
        if (++kvs_out_ == kvs_) {
          pending_ += ']';
          stage_ = Stage::kTail;
        }
        return true;
      }
      return false;  // fewer key-values than the scan counted
    }
    case Stage::kTail: {
      bool first = !has_header_ && kvs_ == 0;
      if (more_) {
        if (!first) pending_ += ',';
        first = false;
        pending_ += "\"more\":true";
      }
      if (count_ != 0) {
        if (!first) pending_ += ',';
        absl::StrAppend(&pending_, "\"count\":\"", count_, "\"");
      }
      pending_ += '}';
      stage_ = Stage::kDone;
      // Everything is produced: the response (and its budget charge) goes.
      cursor_.reset();
      response_.Clear();
      return true;
    }
    case Stage::kDone:
      return true;
  }
  return false;
}

int64_t RangeJsonWriter::Read(char* buf, size_t max) {
  size_t n = 0;
  while (n < max) {
    if (pending_off_ == pending_.size()) {
      pending_.clear();
      pending_off_ = 0;
      if (stage_ == Stage::kDone) break;
      if (!Produce()) return -1;
      continue;
    }
    const size_t k = std::min(max - n, pending_.size() - pending_off_);
    std::memcpy(buf + n, pending_.data() + pending_off_, k);
    pending_off_ += k;
    n += k;
  }
  written_ += n;
  if (written_ > size_) return -1;
  return static_cast<int64_t>(n);
}

}  // namespace cppetcd::api
