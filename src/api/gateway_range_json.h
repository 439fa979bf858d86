// The JSON gateway's answer to /v3/kv/range, written piece by piece from
// the serialized RangeResponse (issue 14 item 2: a LIST through the gateway
// costs about the size of its answer once, not a parsed copy plus a whole
// JSON copy). The text is byte for byte what MessageToGatewayJson prints
// for the parsed response (etcd 3.4's gateway JSON: int64 as strings, bytes
// as base64, zero values omitted, fields in declaration order).
#ifndef CPPETCD_SRC_API_GATEWAY_RANGE_JSON_H_
#define CPPETCD_SRC_API_GATEWAY_RANGE_JSON_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <grpcpp/support/byte_buffer.h>

#include "absl/status/statusor.h"
#include "etcdserverpb/rpc.pb.h"

namespace cppetcd::api {

// Thread-compatible: one thread at a time (the HTTP thread that serves the
// connection, after the gRPC thread that created it handed it over).
class RangeJsonWriter {
 public:
  // Takes the serialized RangeResponse as gRPC received it. On the gateway's
  // in-process channel its slices are the server's own (no copy), and they
  // carry the Range budget charge of the answer (kv_service.cc): the charge
  // stays until the writer has produced its last byte or is destroyed.
  // Scans the response once to learn the JSON's size (nothing is copied
  // but one key-value at a time). InvalidArgument when the bytes are not a
  // RangeResponse.
  static absl::StatusOr<std::unique_ptr<RangeJsonWriter>> Create(grpc::ByteBuffer response);
  ~RangeJsonWriter();
  RangeJsonWriter(const RangeJsonWriter&) = delete;
  RangeJsonWriter& operator=(const RangeJsonWriter&) = delete;

  // Bytes of the whole JSON text.
  uint64_t size() const { return size_; }
  // Bytes handed out by Read so far (<= size()).
  uint64_t written() const { return written_; }
  // Copies the next up to `max` bytes of the text into `buf` and returns
  // how many (0 only at the end). Holds at most one key-value's JSON beyond
  // what it hands out. -1 if the bytes turned out malformed (cannot happen
  // after Create succeeded on them).
  int64_t Read(char* buf, size_t max);

  // The JSON of one key-value, as the gateway prints it.
  static void AppendKeyValueJson(const mvccpb::KeyValue& kv, std::string* out);
  // Its size, without building it.
  static uint64_t KeyValueJsonSize(const mvccpb::KeyValue& kv);

 private:
  struct Cursor;
  RangeJsonWriter();
  // Appends the next piece of text to pending_; false on malformed bytes.
  bool Produce();

  grpc::ByteBuffer response_;     // released when the last byte is out
  std::unique_ptr<Cursor> cursor_;  // over response_'s kvs (pass 2)
  etcdserverpb::ResponseHeader header_;
  bool has_header_ = false;
  bool more_ = false;
  int64_t count_ = 0;
  uint64_t kvs_ = 0;      // key-values in the response
  uint64_t kvs_out_ = 0;  // key-values written so far
  uint64_t size_ = 0;
  uint64_t written_ = 0;
  enum class Stage { kHead, kKvs, kTail, kDone } stage_ = Stage::kHead;
  mvccpb::KeyValue kv_;   // scratch: the key-value being written
  std::string scratch_;   // scratch: base64 of one value
  std::string pending_;   // produced, not yet read: [pending_off_, size)
  size_t pending_off_ = 0;
};

}  // namespace cppetcd::api

#endif  // CPPETCD_SRC_API_GATEWAY_RANGE_JSON_H_
