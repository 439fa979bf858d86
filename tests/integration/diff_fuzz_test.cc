// Differential request fuzzer: one seeded random sequence of valid and
// invalid requests (KV, Lease, Auth, Watch, Maintenance) is sent, request by
// request, to a fresh single-member etcd 3.4 (the reference) and a fresh
// single-member server under test, both with --max-request-bytes 64 KiB.
// Every unary request goes through a generic (ByteBuffer) call, so that raw
// unknown-field bytes can be appended to a serialized request. Responses are
// normalised (header cluster_id, member_id and raft_term dropped; remaining
// lease TTLs within a tolerance; hash-ordered lists sorted) and compared field
// by field; errors by gRPC code and exact message. At the end: auth is
// enabled with root, and the final state (whole keyspace with revisions,
// leases, users, roles, alarms) is compared, again after the server under
// test was stopped and restarted on its data dir.
//
// Differences that exist by design are listed in AllowedDifference() with
// the reason (and in docs/testing.md); any other difference fails the test
// and prints the seed, the step and both responses.
//
// By hand:
//   CPPETCD_DIFF_FUZZ_SEED=<n> CPPETCD_DIFF_FUZZ_REQUESTS=<count> diff_fuzz_test
// With CPPETCD_TEST_SERVER=/usr/bin/etcd it compares etcd with itself, which
// proves the normalisation leaves no spurious differences.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/unknown_field_set.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "normalize.h"

namespace cppetcd::integration {
namespace {

using google::protobuf::Message;
using Clock = std::chrono::steady_clock;
namespace pb = etcdserverpb;

constexpr int64_t kMaxRequestBytes = 64 * 1024;
constexpr int kDefaultRequests = 1500;
constexpr uint64_t kDefaultSeed = 20261206;
constexpr int kMaxReportedDiffs = 10;
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t kMaxLeaseTtl = 9000000000;  // etcd's MaxLeaseTTL (seconds)
const char kRootPassword[] = "root-pw";

uint64_t EnvU64(const char* name, uint64_t def) {
  const char* s = std::getenv(name);
  return s != nullptr && *s != '\0' ? std::strtoull(s, nullptr, 10) : def;
}

// Text of a message with long strings cut (values up to a few MiB).
std::string Brief(const Message& m, int max_len = 2000) {
  std::string s;
  google::protobuf::TextFormat::Printer p;
  p.SetSingleLineMode(true);
  p.SetUseUtf8StringEscaping(false);
  p.SetTruncateStringFieldLongerThan(96);
  p.PrintToString(m, &s);
  if (static_cast<int>(s.size()) > max_len) s = s.substr(0, max_len) + "...";
  return s;
}

std::string Multi(const Message& m) {
  std::string s;
  google::protobuf::TextFormat::Printer p;
  p.SetTruncateStringFieldLongerThan(96);
  p.PrintToString(m, &s);
  if (s.size() > 6000) s = s.substr(0, 6000) + "...\n";
  return s;
}

// ------------------------------------------------------------ normalisation

// NormalizeResponse (normalize.h) clears what may legitimately differ.

// ------------------------------------------------------------ raw calls

struct Reply {
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::string message;
  std::string bytes;  // the serialized response (OK only)
};

struct Node {
  std::string name;
  std::unique_ptr<ServerProcess> server;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<grpc::GenericStub> generic;
  std::string token;  // auth token once auth is enabled

  void Connect() {
    channel = server->NewChannel();
    generic = std::make_unique<grpc::GenericStub>(channel);
  }

  // One unary call with `payload` as the request bytes.
  Reply Call(const std::string& method, const std::string& payload, bool with_token = true,
             const std::string& forced_token = "") {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!forced_token.empty()) {
      ctx.AddMetadata("token", forced_token);
    } else if (with_token && !token.empty()) {
      ctx.AddMetadata("token", token);
    }
    grpc::Slice slice(payload);
    grpc::ByteBuffer req(&slice, 1);
    grpc::CompletionQueue cq;
    auto call = generic->PrepareUnaryCall(&ctx, method, req, &cq);
    call->StartCall();
    grpc::ByteBuffer resp;
    grpc::Status status;
    call->Finish(&resp, &status, reinterpret_cast<void*>(1));
    void* tag = nullptr;
    bool ok = false;
    cq.Next(&tag, &ok);
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    Reply r;
    r.code = status.error_code();
    r.message = status.error_message();
    if (status.ok()) {
      std::vector<grpc::Slice> slices;
      (void)resp.Dump(&slices);
      for (const auto& s : slices) r.bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    return r;
  }

  // True while the process exists and is not a zombie.
  bool Alive() const {
    if (server == nullptr || !server->running()) return false;
    std::ifstream stat("/proc/" + std::to_string(server->pid()) + "/stat");
    std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    auto paren = content.rfind(')');
    return paren != std::string::npos && paren + 2 < content.size() && content[paren + 2] != 'Z';
  }
};

// Method paths.
std::string Kv(const char* m) { return absl::StrCat("/etcdserverpb.KV/", m); }
std::string LeaseM(const char* m) { return absl::StrCat("/etcdserverpb.Lease/", m); }
std::string AuthM(const char* m) { return absl::StrCat("/etcdserverpb.Auth/", m); }
std::string MaintM(const char* m) { return absl::StrCat("/etcdserverpb.Maintenance/", m); }

// ------------------------------------------------------------ the fuzzer

// One request of the sequence.
struct Request {
  std::string label;           // "Put", "Range", ... (for the outcome histogram)
  std::string method;          // gRPC method path
  std::unique_ptr<Message> req;
  const Message* response_type = nullptr;  // default instance of the response
  std::string suffix;          // raw bytes appended to the serialized request
  bool with_token = true;      // send the node's auth token (if any)
  bool read_only = false;      // changes no state (Range and the like)
  std::string forced_token;    // sent instead of the node's token (e.g. a bogus one)
};

struct Compared {
  Reply ref;
  Reply sut;
  std::unique_ptr<Message> ref_resp;  // parsed, normalised (OK and parseable only)
  std::unique_ptr<Message> sut_resp;
};

class DiffFuzzTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CPPETCD_REQUIRE_SERVER();
    if (access(ReferenceEtcdBinary().c_str(), X_OK) != 0) {
      GTEST_SKIP() << "reference etcd not found at " << ReferenceEtcdBinary();
    }
    ref_.name = "etcd";
    sut_.name = "server";
    ASSERT_NO_FATAL_FAILURE(StartNode(ReferenceEtcdBinary(), "ref", &ref_));
    ASSERT_NO_FATAL_FAILURE(StartNode(ServerBinary(), "sut", &sut_));
  }

  void StartNode(const std::string& binary, const std::string& name, Node* node) {
    ServerProcess::Options o;
    o.binary = binary;
    o.name = name;
    o.data_dir = tmp_.path() + "/" + name;
    o.extra_flags = {"--max-request-bytes", std::to_string(kMaxRequestBytes)};
    auto s = ServerProcess::Start(o);
    ASSERT_TRUE(s.ok()) << binary << ": " << s.status();
    node->server = std::move(*s);
    node->Connect();
  }

  // ---------------------------------------------------------- comparison

  // A by-design difference between etcd and the server under test, or ""
  // when the two outcomes must be equal. Each entry says why.
  static std::string AllowedDifference(const Request& r, const Reply& a, const Reply& b) {
    // A request larger than the gRPC receive limit (max-request-bytes plus
    // etcd's 512 KiB framing allowance) is refused by the gRPC library
    // before any etcd code runs: Go's grpc says "grpc: received message
    // larger than max (N vs. M)", C++'s "Received message larger than max
    // (N vs. M)". Same code; the text is the library's.
    if (a.code == grpc::StatusCode::RESOURCE_EXHAUSTED && b.code == a.code &&
        a.message.find("larger than max") != std::string::npos &&
        b.message.find("larger than max") != std::string::npos) {
      return "gRPC library message for an oversized request";
    }
    // A request whose bytes are not a valid protobuf (a truncated field) is
    // refused before any etcd code runs: Go's grpc answers INTERNAL "grpc:
    // error unmarshalling request: <decoder error>", the C++ callback API
    // (grpcpp server_callback_handlers.h) UNIMPLEMENTED with no message.
    if (!r.suffix.empty() && a.code == grpc::StatusCode::INTERNAL &&
        a.message.find("grpc: error unmarshalling request") != std::string::npos &&
        b.code == grpc::StatusCode::UNIMPLEMENTED && b.message.empty()) {
      return "gRPC library answer to an undecodable request";
    }
    // Range decodes its own request (a raw method, for its one-copy answer)
    // and answers as etcd does, INTERNAL "grpc: error unmarshalling request:
    // ...", with its own words for what is wrong.
    if (!r.suffix.empty() && a.code == grpc::StatusCode::INTERNAL && b.code == a.code &&
        absl::StartsWith(a.message, "grpc: error unmarshalling request: ") &&
        absl::StartsWith(b.message, "grpc: error unmarshalling request: ")) {
      return "decoder's words for an undecodable request";
    }
    // A known field sent with the wrong wire type: gogo-proto (etcd) fails
    // the decode, C++ protobuf keeps it as an unknown field and the request
    // goes on (to whatever answer it gets). Only sent with read-only
    // requests (see UnknownSuffix).
    if (r.read_only && !r.suffix.empty() && a.code == grpc::StatusCode::INTERNAL &&
        a.message.find("wrong wireType") != std::string::npos) {
      return "protobuf decoders: a known field with the wrong wire type";
    }
    // A Range with a sort order or target outside its enum: etcd 3.4 does
    // not sort for an unknown order (and panics for an unknown target with a
    // known order, see DoServerOnly); cppetcd may refuse it before anything
    // else with etcd 3.5's InvalidArgument "etcdserver: invalid sort
    // option". Only plain Ranges (no state change) get unknown sort options:
    // inside a txn the refusal would make the states differ.
    if (r.req->GetDescriptor() == pb::RangeRequest::descriptor() &&
        b.code == grpc::StatusCode::INVALID_ARGUMENT &&
        b.message == "etcdserver: invalid sort option") {
      const auto& q = static_cast<const pb::RangeRequest&>(*r.req);
      if (!pb::RangeRequest::SortOrder_IsValid(q.sort_order()) ||
          !pb::RangeRequest::SortTarget_IsValid(q.sort_target())) {
        return "unknown sort option refused (etcd 3.5's check)";
      }
    }
    return "";
  }

  // Go's sort.Sort (etcd's Range with a sort_target other than KEY) is not
  // stable: kvs with equal sort values come back in an order that depends
  // on Go's algorithm (insertion sort up to 12 elements, pdqsort beyond);
  // cppetcd keeps them in key order. By design only the order among equal
  // values may differ: both responses get their ties put in key order, and
  // when the limit cut the result (more), the last group of ties (whose
  // members may differ) is dropped from both. Returns true if it changed
  // anything.
  static bool CanonicalTies(const pb::RangeRequest& q, pb::RangeResponse* a,
                            pb::RangeResponse* b) {
    if (q.sort_target() == pb::RangeRequest::KEY) return false;
    if (q.sort_order() != pb::RangeRequest::NONE && q.sort_order() != pb::RangeRequest::ASCEND &&
        q.sort_order() != pb::RangeRequest::DESCEND) {
      return false;  // etcd does not sort
    }
    auto value = [&](const mvccpb::KeyValue& kv) -> std::string {
      auto num = [](int64_t v) {
        std::string s(8, '\0');
        uint64_t u = static_cast<uint64_t>(v) ^ (uint64_t{1} << 63);
        for (int i = 7; i >= 0; --i, u >>= 8) s[i] = static_cast<char>(u & 0xff);
        return s;
      };
      switch (q.sort_target()) {
        case pb::RangeRequest::VERSION:
          return num(kv.version());
        case pb::RangeRequest::CREATE:
          return num(kv.create_revision());
        case pb::RangeRequest::MOD:
          return num(kv.mod_revision());
        default:
          return kv.value();
      }
    };
    bool changed = false;
    for (pb::RangeResponse* r : {a, b}) {
      auto* kvs = r->mutable_kvs();
      std::vector<mvccpb::KeyValue> v(kvs->begin(), kvs->end());
      std::vector<mvccpb::KeyValue> sorted = v;
      // Groups stay where they are; only the order inside a group changes.
      for (size_t i = 0; i < sorted.size();) {
        size_t j = i + 1;
        while (j < sorted.size() && value(sorted[j]) == value(sorted[i])) ++j;
        std::sort(sorted.begin() + static_cast<std::ptrdiff_t>(i),
                  sorted.begin() + static_cast<std::ptrdiff_t>(j),
                  [](const auto& x, const auto& y) { return x.key() < y.key(); });
        if (j == sorted.size() && r->more() && i > 0) {
          sorted.resize(i);  // the cut group
        } else if (j == sorted.size() && r->more()) {
          sorted.clear();
        }
        i = j;
      }
      for (size_t i = 0; i < v.size() && !changed; ++i) {
        changed = i >= sorted.size() || v[i].key() != sorted[i].key();
      }
      kvs->Clear();
      for (auto& kv : sorted) *kvs->Add() = std::move(kv);
    }
    return changed;
  }

  // The same for the ranges of a txn's chosen branches.
  static bool CanonicalTxnTies(const pb::TxnRequest& q, pb::TxnResponse* a, pb::TxnResponse* b) {
    if (a->succeeded() != b->succeeded() || a->responses_size() != b->responses_size()) {
      return false;
    }
    const auto& ops = a->succeeded() ? q.success() : q.failure();
    bool changed = false;
    for (int i = 0; i < ops.size() && i < a->responses_size(); ++i) {
      auto* ra = a->mutable_responses(i);
      auto* rb = b->mutable_responses(i);
      if (ops[i].has_request_range() && ra->has_response_range() && rb->has_response_range()) {
        changed |= CanonicalTies(ops[i].request_range(), ra->mutable_response_range(),
                                 rb->mutable_response_range());
      } else if (ops[i].has_request_txn() && ra->has_response_txn() && rb->has_response_txn()) {
        changed |= CanonicalTxnTies(ops[i].request_txn(), ra->mutable_response_txn(),
                                    rb->mutable_response_txn());
      }
    }
    return changed;
  }

  // Sends `r` to both nodes, compares, and returns both outcomes.
  Compared Send(const Request& r,
                const std::function<void(Message*, Message*)>& fixup = nullptr) {
    ++step_;
    std::string payload = r.req->SerializeAsString() + r.suffix;
    Compared c;
    c.ref = ref_.Call(r.method, payload, r.with_token, r.forced_token);
    c.sut = sut_.Call(r.method, payload, r.with_token, r.forced_token);
    if (verbose_) {
      std::cout << "step " << step_ << ": " << r.label << " " << Brief(*r.req, 400)
                << (r.suffix.empty() ? "" : " +suffix") << " -> " << c.ref.code << " "
                << c.ref.message.substr(0, 80) << "\n";
    }
    ++outcomes_[absl::StrCat(r.label, " ", c.ref.code == grpc::StatusCode::OK
                                               ? std::string("OK")
                                               : c.ref.message.substr(0, 80))];
    if (c.sut.code == grpc::StatusCode::UNAVAILABLE ||
        c.sut.code == grpc::StatusCode::DEADLINE_EXCEEDED) {
      if (!sut_.Alive()) sut_died_ = true;
    }
    std::string diff;
    if (c.ref.code != c.sut.code || c.ref.message != c.sut.message) {
      std::string why = AllowedDifference(r, c.ref, c.sut);
      if (why.empty()) {
        diff = absl::StrCat("status: etcd ", c.ref.code, " \"", c.ref.message, "\" vs server ",
                            c.sut.code, " \"", c.sut.message, "\"");
      } else {
        ++allowed_[why];
      }
    } else if (c.ref.code == grpc::StatusCode::OK) {
      diff = CompareBytes(*r.response_type, r.req.get(), c.ref.bytes, c.sut.bytes, fixup, &c);
    }
    if (!diff.empty()) Report(absl::StrCat(r.label, " ", Brief(*r.req),
                                           r.suffix.empty() ? "" : " + unknown-field bytes"),
                              diff);
    if (c.ref_resp != nullptr) {
      const auto* f = c.ref_resp->GetDescriptor()->FindFieldByName("header");
      if (f != nullptr && c.ref_resp->GetReflection()->HasField(*c.ref_resp, f)) {
        const auto& h = static_cast<const pb::ResponseHeader&>(
            c.ref_resp->GetReflection()->GetMessage(*c.ref_resp, f));
        if (h.revision() > rev_) rev_ = h.revision();
      }
    }
    return c;
  }

  // Parses and compares two OK responses; "" when equal after normalising.
  std::string CompareBytes(const Message& type, const Message* request, const std::string& a_bytes,
                           const std::string& b_bytes,
                           const std::function<void(Message*, Message*)>& fixup, Compared* c) {
    std::unique_ptr<Message> a(type.New());
    std::unique_ptr<Message> b(type.New());
    const bool a_ok = a->ParseFromString(a_bytes);
    const bool b_ok = b->ParseFromString(b_bytes);
    if (!a_ok || !b_ok) {
      // Not parseable by C++ protobuf (e.g. invalid UTF-8 in a proto3
      // string that Go's gogo-proto does not check): compare the raw fields
      // without the header (field 1).
      if (a_ok != b_ok) {
        return absl::StrCat("response parses as ", type.GetTypeName(), ": etcd ", a_ok,
                            " server ", b_ok);
      }
      return CompareRaw(a_bytes, b_bytes);
    }
    if (fixup) fixup(a.get(), b.get());
    if (request != nullptr && type.GetTypeName() == "etcdserverpb.RangeResponse" &&
        CanonicalTies(static_cast<const pb::RangeRequest&>(*request),
                      static_cast<pb::RangeResponse*>(a.get()),
                      static_cast<pb::RangeResponse*>(b.get()))) {
      ++allowed_["order of kvs with equal sort values (Go's unstable sort)"];
    }
    if (request != nullptr && type.GetTypeName() == "etcdserverpb.TxnResponse" &&
        CanonicalTxnTies(static_cast<const pb::TxnRequest&>(*request),
                         static_cast<pb::TxnResponse*>(a.get()),
                         static_cast<pb::TxnResponse*>(b.get()))) {
      ++allowed_["order of kvs with equal sort values (Go's unstable sort)"];
    }
    const auto* hf = a->GetDescriptor()->FindFieldByName("header");
    if (hf != nullptr && !a->GetReflection()->HasField(*a, hf) &&
        b->GetReflection()->HasField(*b, hf) &&
        (type.GetTypeName() == "etcdserverpb.AlarmResponse" ||
         type.GetTypeName() == "etcdserverpb.DefragmentResponse")) {
      // etcd 3.4 leaves the header of Alarm and Defragment responses unset
      // (its maintenance server does not fill it; etcd 3.5 does); cppetcd
      // fills it like every other response's.
      b->GetReflection()->ClearField(b.get(), hf);
      ++allowed_["etcd 3.4 sends no header in Alarm/Defragment responses"];
    }
    NormalizeResponse(a.get());
    NormalizeResponse(b.get());
    google::protobuf::util::MessageDifferencer d;
    std::string report;
    d.ReportDifferencesToString(&report);
    std::string diff;
    if (!d.Compare(*a, *b)) {
      if (report.size() > 3000) report = report.substr(0, 3000) + "...\n";
      diff = absl::StrCat(report, "--- etcd ---\n", Multi(*a), "--- server ---\n", Multi(*b));
    }
    c->ref_resp = std::move(a);
    c->sut_resp = std::move(b);
    return diff;
  }

  static std::string CompareRaw(const std::string& a_bytes, const std::string& b_bytes) {
    auto strip = [](const std::string& bytes) {
      google::protobuf::UnknownFieldSet set;
      if (!set.ParseFromString(bytes)) return std::string("<unparseable>");
      google::protobuf::UnknownFieldSet out;
      for (int i = 0; i < set.field_count(); ++i) {
        if (set.field(i).number() != 1) out.AddField(set.field(i));
      }
      std::string s;
      out.SerializeToString(&s);
      return s;
    };
    std::string a = strip(a_bytes), b = strip(b_bytes);
    if (a == b) return "";
    return absl::StrCat("raw responses differ (", a.size(), " vs ", b.size(), " bytes)");
  }

  void Report(const std::string& what, const std::string& diff) {
    ++diffs_;
    if (diffs_ <= kMaxReportedDiffs) {
      ADD_FAILURE() << "seed " << seed_ << " step " << step_ << ": " << what << "\n" << diff;
    }
  }

  // ---------------------------------------------------------- generators

  size_t Uniform(size_t lo, size_t hi) {
    return std::uniform_int_distribution<size_t>(lo, hi)(rng_);
  }
  int64_t UniformI(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }
  bool Chance(int percent) { return Uniform(1, 100) <= static_cast<size_t>(percent); }
  template <class T>
  const T& Pick(const std::vector<T>& v) {
    return v[Uniform(0, v.size() - 1)];
  }

  // Keys cluster under a few prefixes so that ranges, prefixes and compares
  // hit existing keys; some are binary, with NUL and 0xff bytes.
  std::string Key() {
    static const std::vector<std::string> keys = {
        "a", "a/1", "a/2", "a/3/x", "b", "b/1", "foo", "foo1", "z", std::string(1, '\0'),
        std::string("\0a", 2), std::string("k\0z", 3), "\xff", "\xff\xff", "\x7f", "\xc3\x28",
        "x", std::string(300, 'L')};
    return Pick(keys);
  }

  static std::string PrefixEnd(std::string k) {
    while (!k.empty()) {
      if (static_cast<unsigned char>(k.back()) < 0xff) {
        k.back() = static_cast<char>(k.back() + 1);
        return k;
      }
      k.pop_back();
    }
    return std::string(1, '\0');
  }

  // key/range_end: single key, prefix, explicit (maybe inverted) range,
  // from-key ("\0"), up to "\xff", everything, empty key.
  void KeyRange(std::string* key, std::string* end) {
    *key = Key();
    switch (Uniform(0, 9)) {
      case 0:
      case 1:
      case 2:
        end->clear();
        break;
      case 3:
        *end = PrefixEnd(*key);
        break;
      case 4:
        *end = Key();  // maybe inverted or empty
        break;
      case 5:
        *end = std::string(1, '\0');  // from key
        break;
      case 6:
        *end = "\xff";
        break;
      case 7:
        *key = std::string(1, '\0');
        *end = std::string(1, '\0');  // everything
        break;
      case 8:
        *end = *key;  // [key, key): empty range
        break;
      case 9:
        if (Chance(30)) key->clear();  // no key
        *end = Chance(50) ? std::string(1, '\0') : "";
        break;
    }
  }

  std::string Value() {
    switch (Uniform(0, 19)) {
      case 0:
        return "";
      case 1:
        return std::string(1, static_cast<char>(Uniform(0, 255)));
      case 2:
        return std::string("v\0w\xff", 4);
      case 3:
        return std::string(static_cast<size_t>(Uniform(1000, 5000)), 'V');
      default: {
        std::string v;
        for (size_t i = Uniform(1, 6); i > 0; --i) v.push_back(static_cast<char>('a' + Uniform(0, 3)));
        return v;
      }
    }
  }

  // Lease ids used for long-lived leases (TTL far above the run time, so
  // that expiry, whose timing differs between servers, never matters).
  const std::vector<int64_t> kLongLeaseIds = {1, 2, 0x77, 0x1001, -3, kI64Max};
  // Lease ids used for leases with a short TTL: revoked at once.
  const std::vector<int64_t> kShortLeaseIds = {0x5001, -0x5001, kI64Min};

  int64_t Lease() {
    if (Chance(55)) return 0;
    if (Chance(8)) return Pick<int64_t>({0xdead, -1, kI64Min, 0x5001});  // never granted (long)
    return Pick(kLongLeaseIds);
  }

  int64_t Revision() {
    switch (Uniform(0, 12)) {
      case 0:
      case 1:
      case 2:
      case 3:
        return 0;
      case 4:
        return rev_;
      case 5:
        return rev_ + 1;  // future
      case 6:
        return Pick<int64_t>({-1, kI64Min, kI64Max, rev_ + 1000});
      case 7:
        return compact_rev_ > 0 ? compact_rev_ : 1;  // oldest readable
      case 8:
        return compact_rev_ > 1 ? compact_rev_ - 1 : 1;  // compacted
      default:
        return UniformI(1, std::max<int64_t>(1, rev_));
    }
  }

  // in_txn: no unknown sort options (see AllowedDifference).
  pb::RangeRequest RandomRange(bool in_txn = false) {
    pb::RangeRequest r;
    KeyRange(r.mutable_key(), r.mutable_range_end());
    if (Chance(30)) r.set_limit(Pick<int64_t>({1, 2, 3, 5, 0, -1, kI64Min, kI64Max}));
    if (Chance(40)) r.set_revision(Revision());
    if (Chance(25)) {
      const int64_t unknown = Pick<int64_t>({3, 7, -1});
      const int64_t known = UniformI(0, 2);
      r.set_sort_order(static_cast<pb::RangeRequest::SortOrder>(
          Chance(90) || in_txn ? known : unknown));
    }
    if (Chance(25)) r.set_sort_target(static_cast<pb::RangeRequest::SortTarget>(UniformI(0, 4)));
    // etcd 3.4 dereferences a nil sorter (and the whole process panics) for
    // an unknown sort_target unless the sort_order is unknown too (then it
    // does not sort): unknown targets are only sent with unknown orders.
    if (Chance(3) && !in_txn) {
      r.set_sort_order(static_cast<pb::RangeRequest::SortOrder>(Pick<int64_t>({3, 7, -1})));
      r.set_sort_target(static_cast<pb::RangeRequest::SortTarget>(Pick<int64_t>({5, 9, -2})));
    }
    if (Chance(20)) r.set_serializable(true);
    if (Chance(15)) r.set_keys_only(true);
    if (Chance(10)) r.set_count_only(true);
    auto rv = [&] { return Chance(85) ? UniformI(0, rev_ + 1) : Pick<int64_t>({-1, kI64Max, kI64Min}); };
    if (Chance(8)) r.set_min_mod_revision(rv());
    if (Chance(8)) r.set_max_mod_revision(rv());
    if (Chance(8)) r.set_min_create_revision(rv());
    if (Chance(8)) r.set_max_create_revision(rv());
    return r;
  }

  pb::PutRequest RandomPut() {
    pb::PutRequest p;
    p.set_key(Chance(2) ? "" : Key());
    p.set_value(Value());
    p.set_lease(Lease());
    p.set_prev_kv(Chance(40));
    if (Chance(6)) {
      p.set_ignore_value(true);
      if (Chance(80)) p.clear_value();
    }
    if (Chance(6)) {
      p.set_ignore_lease(true);
      if (Chance(80)) p.set_lease(0);
    }
    return p;
  }

  pb::DeleteRangeRequest RandomDelete() {
    pb::DeleteRangeRequest d;
    KeyRange(d.mutable_key(), d.mutable_range_end());
    d.set_prev_kv(Chance(50));
    return d;
  }

  pb::Compare RandomCompare() {
    pb::Compare c;
    c.set_key(Key());
    if (Chance(15)) {
      std::string key = c.key();
      KeyRange(&key, c.mutable_range_end());  // ranged compare
      c.set_key(key);
    }
    c.set_result(static_cast<pb::Compare::CompareResult>(Chance(95) ? UniformI(0, 3)
                                                                    : Pick<int64_t>({4, -1})));
    c.set_target(static_cast<pb::Compare::CompareTarget>(Chance(95) ? UniformI(0, 4)
                                                                    : Pick<int64_t>({5, -1})));
    auto rv = [&] { return Chance(90) ? UniformI(0, rev_ + 1) : Pick<int64_t>({-1, kI64Max}); };
    switch (Uniform(0, 9) == 0 ? Uniform(0, 4) : static_cast<size_t>(c.target())) {
      case pb::Compare::VERSION:
        c.set_version(Chance(90) ? UniformI(0, 3) : Pick<int64_t>({-1, kI64Max}));
        break;
      case pb::Compare::CREATE:
        c.set_create_revision(rv());
        break;
      case pb::Compare::MOD:
        c.set_mod_revision(rv());
        break;
      case pb::Compare::VALUE:
        c.set_value(Value());
        break;
      case pb::Compare::LEASE:
        c.set_lease(Lease());
        break;
      default:
        break;
    }
    return c;
  }

  pb::RequestOp RandomRequestOp(int depth) {
    pb::RequestOp op;
    switch (Uniform(0, depth < 2 ? 4 : 2)) {
      case 0:
        *op.mutable_request_range() = RandomRange(/*in_txn=*/true);
        break;
      case 1:
        *op.mutable_request_put() = RandomPut();
        break;
      case 2:
        *op.mutable_request_delete_range() = RandomDelete();
        break;
      default:
        *op.mutable_request_txn() = RandomTxn(depth + 1);
        break;
    }
    return op;
  }

  pb::TxnRequest RandomTxn(int depth) {
    pb::TxnRequest t;
    for (size_t i = Uniform(0, 3); i > 0; --i) *t.add_compare() = RandomCompare();
    for (size_t i = Uniform(0, 3); i > 0; --i) *t.add_success() = RandomRequestOp(depth);
    for (size_t i = Uniform(0, 2); i > 0; --i) *t.add_failure() = RandomRequestOp(depth);
    if (depth == 0 && Chance(3)) t.add_success();  // an empty RequestOp
    return t;
  }

  // Raw bytes appended to a serialized request: unknown fields of every
  // wire type (which both servers must ignore), and rarely a known field
  // with the wrong wire type or a truncated field (malformed).
  std::string UnknownSuffix(bool read_only) {
    auto varint = [](uint64_t v) {
      std::string s;
      while (v >= 0x80) {
        s.push_back(static_cast<char>((v & 0x7f) | 0x80));
        v >>= 7;
      }
      s.push_back(static_cast<char>(v));
      return s;
    };
    switch (Uniform(0, 5)) {
      case 0:
        return varint((1000u << 3) | 0) + varint(12345);
      case 1:
        return varint((99u << 3) | 2) + varint(3) + "xyz";
      case 2:
        return varint((77u << 3) | 1) + std::string(8, '\x5a');
      case 3:
        return varint((536870911u << 3) | 5) + std::string(4, '\x01');  // largest field number
      case 4:
        // Field 1 as a varint: Go rejects, C++ keeps it as unknown (an
        // allowed difference), so only where no state changes.
        if (read_only && Chance(30)) return varint((1u << 3) | 0) + varint(7);
        return varint((50u << 3) | 2) + varint(10) + "abc";  // truncated length
      default:
        return varint((20u << 3) | 0) + varint(~0ull);  // 10-byte varint
    }
  }

  // ---------------------------------------------------------- requests

  template <class Resp, class Req>
  Request Make(const char* label, std::string method, const Req& req) {
    Request r;
    r.label = label;
    r.method = std::move(method);
    r.req = std::make_unique<Req>(req);
    r.response_type = &Resp::default_instance();
    r.read_only = std::is_same_v<Req, pb::RangeRequest> || std::is_same_v<Req, pb::StatusRequest> ||
                  std::is_same_v<Req, pb::LeaseLeasesRequest> ||
                  std::is_same_v<Req, pb::LeaseTimeToLiveRequest> ||
                  std::is_same_v<Req, pb::AuthUserListRequest> ||
                  std::is_same_v<Req, pb::AuthRoleListRequest>;
    if (Chance(4)) r.suffix = UnknownSuffix(r.read_only);
    return r;
  }

  Compared DoRange(const pb::RangeRequest& q) {
    return Send(Make<pb::RangeResponse>("Range", Kv("Range"), q));
  }
  Compared DoPut(const pb::PutRequest& q) {
    return Send(Make<pb::PutResponse>("Put", Kv("Put"), q));
  }
  Compared DoDelete(const pb::DeleteRangeRequest& q) {
    return Send(Make<pb::DeleteRangeResponse>("DeleteRange", Kv("DeleteRange"), q));
  }
  Compared DoTxn(pb::TxnRequest q) {
    // A put with ignore_value/ignore_lease after a delete of its key makes
    // etcd 3.4 panic (see DoServerOnly): such puts lose their ignore flags.
    std::vector<std::pair<std::string, std::string>> deletes;
    CollectDeletes(q, &deletes);
    if (!deletes.empty()) ClearIgnoreFlags(deletes, &q);
    return Send(Make<pb::TxnResponse>("Txn", Kv("Txn"), q));
  }

  // Every delete range of a txn, nested txns included.
  static void CollectDeletes(const pb::TxnRequest& q,
                             std::vector<std::pair<std::string, std::string>>* deletes) {
    for (const auto* ops : {&q.success(), &q.failure()}) {
      for (const auto& op : *ops) {
        if (op.has_request_delete_range()) {
          deletes->emplace_back(op.request_delete_range().key(),
                                op.request_delete_range().range_end());
        } else if (op.has_request_txn()) {
          CollectDeletes(op.request_txn(), deletes);
        }
      }
    }
  }

  static void ClearIgnoreFlags(const std::vector<std::pair<std::string, std::string>>& deletes,
                               pb::TxnRequest* q) {
    for (auto* ops : {q->mutable_success(), q->mutable_failure()}) {
      for (auto& op : *ops) {
        if (op.has_request_put()) {
          auto* p = op.mutable_request_put();
          for (const auto& [dk, de] : deletes) {
            if (InRange(p->key(), dk, de)) {
              p->set_ignore_value(false);
              p->set_ignore_lease(false);
            }
          }
        } else if (op.has_request_txn()) {
          ClearIgnoreFlags(deletes, op.mutable_request_txn());
        }
      }
    }
  }

  void DoCompact() {
    pb::CompactionRequest q;
    switch (Uniform(0, 5)) {
      case 0:
        q.set_revision(rev_ + 1);  // future
        break;
      case 1:
        q.set_revision(compact_rev_);  // already compacted (or 0)
        break;
      case 2:
        q.set_revision(Pick<int64_t>({0, -1, kI64Max, kI64Min}));
        break;
      default:
        q.set_revision(UniformI(std::max<int64_t>(1, rev_ - 10), rev_));
        break;
    }
    q.set_physical(Chance(30));
    Compared c = Send(Make<pb::CompactionResponse>("Compact", Kv("Compact"), q));
    if (c.ref.code == grpc::StatusCode::OK) compact_rev_ = std::max(compact_rev_, q.revision());
  }

  // Sizes around --max-request-bytes: just under (accepted), just over
  // (etcd's "request is too large"), far over (the gRPC limit).
  void DoSizedPut() {
    pb::PutRequest p;
    p.set_key(Chance(50) ? "big" : std::string(Uniform(1, 3000), 'K'));
    int64_t size = 0;
    switch (Uniform(0, 3)) {
      case 0:
        size = kMaxRequestBytes - 512 - static_cast<int64_t>(p.key().size());
        break;
      case 1:
        size = kMaxRequestBytes + 1;
        break;
      case 2:
        size = kMaxRequestBytes + 64 * 1024;
        break;
      default:
        size = kMaxRequestBytes + 600 * 1024;  // past max + 512 KiB framing
        break;
    }
    p.set_value(std::string(static_cast<size_t>(size), 'S'));
    p.set_prev_kv(Chance(30));
    if (Chance(30)) {
      pb::TxnRequest t;
      *t.add_success()->mutable_request_put() = p;
      DoTxn(t);
    } else {
      DoPut(p);
    }
  }

  void DoLeaseGrantLong() {
    pb::LeaseGrantRequest q;
    q.set_id(Chance(90) ? Pick(kLongLeaseIds) : 0);
    q.set_ttl(Pick<int64_t>({3600, 7200, 86400, kMaxLeaseTtl, kMaxLeaseTtl + 1, kI64Max}));
    GrantAndMaybeRevoke(q, /*revoke=*/q.id() == 0);
  }

  // Short or negative TTLs (raised to etcd's minimum TTL) and server-chosen
  // ids: revoked again at once, before expiry (whose timing differs) can
  // matter.
  void DoLeaseGrantShort() {
    pb::LeaseGrantRequest q;
    q.set_id(Chance(80) ? Pick(kShortLeaseIds) : 0);
    q.set_ttl(Pick<int64_t>({-5, 0, 1, 2, kI64Min}));
    GrantAndMaybeRevoke(q, /*revoke=*/true);
  }

  void GrantAndMaybeRevoke(const pb::LeaseGrantRequest& q, bool revoke) {
    Compared c = Send(Make<pb::LeaseGrantResponse>("LeaseGrant", LeaseM("LeaseGrant"), q),
                      [&](Message* a, Message* b) {
                        if (q.id() == 0) {  // server-chosen ids differ by design
                          static_cast<pb::LeaseGrantResponse*>(a)->clear_id();
                          static_cast<pb::LeaseGrantResponse*>(b)->clear_id();
                        }
                      });
    if (!revoke || c.ref.code != grpc::StatusCode::OK || c.sut.code != grpc::StatusCode::OK) {
      return;
    }
    pb::LeaseGrantResponse ga, gb;
    ga.ParseFromString(c.ref.bytes);
    gb.ParseFromString(c.sut.bytes);
    if (q.id() != 0) {
      pb::LeaseRevokeRequest rq;
      rq.set_id(q.id());
      Request r = Make<pb::LeaseRevokeResponse>("LeaseRevoke", LeaseM("LeaseRevoke"), rq);
      r.suffix.clear();  // an undecodable revoke would leave the lease to expire (timing)
      Send(r);
      return;
    }
    for (auto [node, id] : {std::pair<Node*, int64_t>{&ref_, ga.id()}, {&sut_, gb.id()}}) {
      pb::LeaseRevokeRequest rq;
      rq.set_id(id);
      Reply r = node->Call(LeaseM("LeaseRevoke"), rq.SerializeAsString());
      EXPECT_EQ(r.code, grpc::StatusCode::OK) << node->name << ": " << r.message;
    }
  }

  void DoLeaseRevoke() {
    pb::LeaseRevokeRequest q;
    q.set_id(Lease());
    Send(Make<pb::LeaseRevokeResponse>("LeaseRevoke", LeaseM("LeaseRevoke"), q));
  }

  static void TtlTolerance(Message* a, Message* b) {
    auto* x = static_cast<pb::LeaseTimeToLiveResponse*>(a);
    auto* y = static_cast<pb::LeaseTimeToLiveResponse*>(b);
    // Remaining seconds depend on when each server granted the lease.
    if (x->ttl() >= 0 && y->ttl() >= 0 && std::llabs(x->ttl() - y->ttl()) <= 2) {
      y->set_ttl(x->ttl());
    }
  }

  void DoLeaseTimeToLive() {
    pb::LeaseTimeToLiveRequest q;
    q.set_id(Lease());
    q.set_keys(Chance(60));
    Send(Make<pb::LeaseTimeToLiveResponse>("LeaseTimeToLive", LeaseM("LeaseTimeToLive"), q),
         TtlTolerance);
  }

  void DoLeaseLeases() {
    Send(Make<pb::LeaseLeasesResponse>("LeaseLeases", LeaseM("LeaseLeases"),
                                       pb::LeaseLeasesRequest()));
  }

  // User and role names: ordinary, empty, with NUL bytes, 600 bytes, and
  // not valid UTF-8 (etcd takes any bytes in these proto3 `string` fields;
  // cppetcd declares them `bytes`).
  // CPPETCD_DIFF_FUZZ_LONG_NAME sets the long names' length (default 600).
  std::string Name(bool user) {
    static const size_t long_name = EnvU64("CPPETCD_DIFF_FUZZ_LONG_NAME", 600);
    static const std::vector<std::string> users = {
        "u1", "u2", "alice", "", std::string("n\0ul", 4), std::string(long_name, 'u'),
        std::string(1, '\0'), "with space", "\xe2\x82\xac", "\xff\xfeu", "\xe2\x82"};
    static const std::vector<std::string> roles = {
        "r1", "r2", "root", "", std::string("r\0le", 4), std::string(long_name, 'r'),
        std::string(1, '\0'), "\xe2\x82\xac", "\xc3\x28", "r\xed\xa0\x80"};
    return Pick(user ? users : roles);
  }

  // Passwords: mostly "pw", rarely not valid UTF-8.
  std::string Password() { return Chance(85) ? "pw" : "p\xff\xc3w"; }

  void DoAuth() {
    switch (Uniform(0, 15)) {
      case 0: {
        pb::AuthUserAddRequest q;
        q.set_name(Name(true));
        // bcrypt at etcd's cost makes a password slow: mostly none.
        if (Chance(75)) {
          q.mutable_options()->set_no_password(true);
          if (Chance(10)) q.set_password("ignored");
        } else {
          q.set_password(Chance(20) ? "" : Password());
        }
        Send(Make<pb::AuthUserAddResponse>("UserAdd", AuthM("UserAdd"), q));
        break;
      }
      case 1: {
        pb::AuthUserGetRequest q;
        q.set_name(Name(true));
        Send(Make<pb::AuthUserGetResponse>("UserGet", AuthM("UserGet"), q));
        break;
      }
      case 2:
        Send(Make<pb::AuthUserListResponse>("UserList", AuthM("UserList"),
                                            pb::AuthUserListRequest()));
        break;
      case 3: {
        pb::AuthUserDeleteRequest q;
        q.set_name(Name(true));
        Send(Make<pb::AuthUserDeleteResponse>("UserDelete", AuthM("UserDelete"), q));
        break;
      }
      case 4: {
        pb::AuthUserGrantRoleRequest q;
        q.set_user(Name(true));
        q.set_role(Name(false));
        Send(Make<pb::AuthUserGrantRoleResponse>("UserGrantRole", AuthM("UserGrantRole"), q));
        break;
      }
      case 5: {
        pb::AuthUserRevokeRoleRequest q;
        q.set_name(Name(true));
        q.set_role(Name(false));
        Send(Make<pb::AuthUserRevokeRoleResponse>("UserRevokeRole", AuthM("UserRevokeRole"), q));
        break;
      }
      case 6: {
        pb::AuthRoleAddRequest q;
        q.set_name(Name(false));
        Send(Make<pb::AuthRoleAddResponse>("RoleAdd", AuthM("RoleAdd"), q));
        break;
      }
      case 7: {
        pb::AuthRoleGetRequest q;
        q.set_role(Name(false));
        Send(Make<pb::AuthRoleGetResponse>("RoleGet", AuthM("RoleGet"), q));
        break;
      }
      case 8:
        Send(Make<pb::AuthRoleListResponse>("RoleList", AuthM("RoleList"),
                                            pb::AuthRoleListRequest()));
        break;
      case 9: {
        pb::AuthRoleDeleteRequest q;
        q.set_role(Name(false));
        Send(Make<pb::AuthRoleDeleteResponse>("RoleDelete", AuthM("RoleDelete"), q));
        break;
      }
      case 10:
      case 11: {
        pb::AuthRoleGrantPermissionRequest q;
        q.set_name(Name(false));
        auto* perm = q.mutable_perm();
        perm->set_permtype(static_cast<authpb::Permission::Type>(
            Chance(90) ? UniformI(0, 2) : Pick<int64_t>({3, -1})));
        KeyRange(perm->mutable_key(), perm->mutable_range_end());
        Send(Make<pb::AuthRoleGrantPermissionResponse>("RoleGrantPermission",
                                                       AuthM("RoleGrantPermission"), q));
        break;
      }
      case 12: {
        pb::AuthRoleRevokePermissionRequest q;
        q.set_role(Name(false));
        KeyRange(q.mutable_key(), q.mutable_range_end());
        Send(Make<pb::AuthRoleRevokePermissionResponse>("RoleRevokePermission",
                                                        AuthM("RoleRevokePermission"), q));
        break;
      }
      case 13: {
        pb::AuthUserChangePasswordRequest q;
        q.set_name(Name(true));
        q.set_password(Chance(50) ? "" : Chance(80) ? "pw2" : Password());
        Send(Make<pb::AuthUserChangePasswordResponse>("UserChangePassword",
                                                      AuthM("UserChangePassword"), q));
        break;
      }
      case 14: {
        // No root user exists during the random phase: this fails.
        if (Chance(50)) {
          Send(Make<pb::AuthEnableResponse>("AuthEnable", AuthM("AuthEnable"),
                                            pb::AuthEnableRequest()));
        } else {
          Send(Make<pb::AuthDisableResponse>("AuthDisable", AuthM("AuthDisable"),
                                             pb::AuthDisableRequest()));
        }
        break;
      }
      default: {
        pb::AuthenticateRequest q;
        q.set_name(Name(true));
        q.set_password(Password());
        Send(Make<pb::AuthenticateResponse>("Authenticate", AuthM("Authenticate"), q),
             [](Message* a, Message* b) {
               static_cast<pb::AuthenticateResponse*>(a)->clear_token();
               static_cast<pb::AuthenticateResponse*>(b)->clear_token();
             });
        break;
      }
    }
  }

  void DoMaintenance() {
    switch (Uniform(0, 4)) {
      case 0:
      case 1:
        Send(Make<pb::StatusResponse>("Status", MaintM("Status"), pb::StatusRequest()));
        break;
      case 2: {
        pb::AlarmRequest q;
        // GET or DEACTIVATE (ACTIVATE would stop writes; an unknown action
        // makes etcd 3.4 panic: see DoServerOnly).
        q.set_action(static_cast<pb::AlarmRequest::AlarmAction>(Chance(80) ? 0 : 2));
        q.set_alarm(static_cast<pb::AlarmType>(Chance(70) ? 0 : Pick<int64_t>({1, 2, 7})));
        if (Chance(20)) q.set_memberid(0x1234);
        Send(Make<pb::AlarmResponse>("Alarm", MaintM("Alarm"), q));
        break;
      }
      case 3:
        Send(Make<pb::DefragmentResponse>("Defragment", MaintM("Defragment"),
                                          pb::DefragmentRequest()));
        break;
      default:
        // Hash and HashKV differ by design (different storage encodings):
        // not sent.
        Send(Make<pb::StatusResponse>("Status", MaintM("Status"), pb::StatusRequest()));
        break;
    }
  }

  // ---------------------------------------------------------- watch

  // Collects one node's watch stream on a thread, so that the test can wait
  // for a condition under a deadline.
  class WatchStream {
   public:
    explicit WatchStream(Node& node, const std::string& forced_token = "")
        : stub_(node.channel) {
      ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      if (!forced_token.empty()) {
        ctx_.AddMetadata("token", forced_token);
      } else if (!node.token.empty()) {
        ctx_.AddMetadata("token", node.token);
      }
      stream_ = stub_.Watch(&ctx_);
      reader_ = std::thread([this] {
        pb::WatchResponse resp;
        for (int i = 0; i < 100000 && stream_->Read(&resp); ++i) {
          std::lock_guard<std::mutex> l(mu_);
          responses_.push_back(resp);
          cv_.notify_all();
        }
        std::lock_guard<std::mutex> l(mu_);
        ended_ = true;
        cv_.notify_all();
      });
    }
    ~WatchStream() {
      ctx_.TryCancel();
      reader_.join();
      stream_->Finish();
    }
    bool Write(const pb::WatchRequest& r) { return stream_->Write(r); }
    // Waits until `pred(responses)` holds or the deadline passes.
    bool WaitFor(const std::function<bool(const std::vector<pb::WatchResponse>&)>& pred,
                 std::chrono::milliseconds timeout) {
      std::unique_lock<std::mutex> l(mu_);
      return cv_.wait_for(l, timeout, [&] { return pred(responses_) || ended_; }) &&
             pred(responses_);
    }
    std::vector<pb::WatchResponse> Responses() {
      std::lock_guard<std::mutex> l(mu_);
      return responses_;
    }

   private:
    pb::Watch::Stub stub_;
    grpc::ClientContext ctx_;
    std::unique_ptr<grpc::ClientReaderWriter<pb::WatchRequest, pb::WatchResponse>> stream_;
    std::thread reader_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<pb::WatchResponse> responses_;
    bool ended_ = false;
  };

  struct WatchSpec {
    pb::WatchCreateRequest create;
    std::string marker_key;  // a key inside the range
    bool noput = false, nodelete = false;
  };

  pb::WatchCreateRequest RandomWatchCreate() {
    pb::WatchCreateRequest c;
    KeyRange(c.mutable_key(), c.mutable_range_end());
    switch (Uniform(0, 9)) {
      case 0:
      case 1:
      case 2:
        c.set_start_revision(0);
        break;
      case 3:
        c.set_start_revision(UniformI(std::max<int64_t>(1, rev_ - 20), rev_));
        break;
      case 4:
        c.set_start_revision(compact_rev_ > 1 ? compact_rev_ - 1 : 1);  // compacted
        break;
      case 5:
        c.set_start_revision(rev_ + Pick<int64_t>({1, 2, 3}));  // near future
        break;
      case 6:
        // Not -1 before any compaction: etcd takes it as an unsynced start
        // whose first catch-up reads nothing (a negative revision encodes as
        // a huge key) and then resumes after the current revision, so which
        // events it gets depends on when its 100 ms sync runs. Below the
        // compact revision (-1 before any) it is canceled, deterministically.
        c.set_start_revision(Pick<int64_t>({kI64Max, rev_ + 100000,
                                            compact_rev_ > 0 ? -1 : -2, kI64Min}));
        break;
      default:
        c.set_start_revision(std::max<int64_t>(1, compact_rev_));
        break;
    }
    if (Chance(20)) c.add_filters(pb::WatchCreateRequest::NOPUT);
    if (Chance(20)) c.add_filters(pb::WatchCreateRequest::NODELETE);
    if (Chance(3)) c.add_filters(static_cast<pb::WatchCreateRequest::FilterType>(5));
    c.set_prev_kv(Chance(40));
    if (Chance(10)) c.set_watch_id(Pick<int64_t>({1, 2, 100, -5}));
    if (Chance(10)) c.set_fragment(true);
    return c;
  }

  static bool InRange(const std::string& key, const std::string& start, const std::string& end) {
    const std::string k0 = start.empty() ? std::string(1, '\0') : start;
    if (end.empty()) return key == k0;
    if (end == std::string(1, '\0')) return key >= k0;
    return key >= k0 && key < end;
  }

  // Per watch (in creation order): the control responses and the events up
  // to the final one expected, as text.
  struct WatchTranscript {
    std::vector<std::string> control;
    std::vector<pb::WatchResponse> events;  // one per watch, events only
  };

  // One watch step: 1-3 watches on one stream per node, a few writes, one
  // marker write per watch inside its range; collect until each watch saw
  // the last marker event it can see (or was canceled), then maybe cancel
  // one watch.
  void DoWatch() {
    ++step_;
    std::vector<WatchSpec> specs(Uniform(1, 3));
    for (auto& s : specs) {
      s.create = RandomWatchCreate();
      for (int f : s.create.filters()) {
        if (f == pb::WatchCreateRequest::NOPUT) s.noput = true;
        if (f == pb::WatchCreateRequest::NODELETE) s.nodelete = true;
      }
      s.marker_key = s.create.key().empty() ? std::string(1, '\0') : s.create.key();
    }
    const int64_t created_at = rev_;
    WatchStream a(ref_), b(sut_);
    for (const auto& s : specs) {
      pb::WatchRequest r;
      *r.mutable_create_request() = s.create;
      a.Write(r);
      b.Write(r);
    }
    // Every create answered (created or canceled) on the reference.
    auto created = [&](const std::vector<pb::WatchResponse>& rs) {
      size_t n = 0;
      for (const auto& r : rs) n += r.created() ? 1 : 0;
      return n >= specs.size();
    };
    a.WaitFor(created, std::chrono::seconds(5));
    b.WaitFor(created, std::chrono::seconds(5));
    for (size_t i = Uniform(0, 3); i > 0; --i) {
      if (Chance(50)) {
        DoPut(RandomPut());
      } else if (Chance(50)) {
        DoDelete(RandomDelete());
      } else {
        DoTxn(RandomTxn(0));
      }
    }
    // Marker writes: (key, is_delete, revision).
    struct Marker {
      std::string key;
      bool del;
      int64_t rev;
    };
    std::vector<Marker> markers;
    for (size_t i = 0; i < specs.size(); ++i) {
      const auto& s = specs[i];
      if (s.marker_key.size() > 1000) continue;
      pb::PutRequest p;
      p.set_key(s.marker_key);
      p.set_value(absl::StrCat("marker", step_, "/", i));
      Compared c = DoPut(p);
      if (c.ref.code == grpc::StatusCode::OK) markers.push_back({p.key(), false, rev_});
      if (s.noput) {
        pb::DeleteRangeRequest d;
        d.set_key(s.marker_key);
        Compared cd = DoDelete(d);
        if (cd.ref.code == grpc::StatusCode::OK) markers.push_back({d.key(), true, rev_});
      }
    }
    // The last marker event each watch can see (0: none).
    std::vector<int64_t> final_rev(specs.size(), 0);
    for (size_t i = 0; i < specs.size(); ++i) {
      const auto& c = specs[i].create;
      const int64_t start = c.start_revision() == 0 ? created_at + 1 : c.start_revision();
      for (const auto& m : markers) {
        if (!InRange(m.key, c.key(), c.range_end())) continue;
        if (m.del ? specs[i].nodelete : specs[i].noput) continue;
        if (m.rev < start) continue;
        final_rev[i] = std::max(final_rev[i], m.rev);
      }
    }
    // Watch ids by creation order, from one node's responses.
    auto ids_of = [&](const std::vector<pb::WatchResponse>& rs) {
      std::vector<int64_t> ids;
      for (const auto& r : rs) {
        if (r.created() && ids.size() < specs.size()) ids.push_back(r.watch_id());
      }
      return ids;
    };
    auto done = [&](const std::vector<pb::WatchResponse>& rs) {
      std::vector<int64_t> ids = ids_of(rs);
      if (ids.size() < specs.size()) return false;
      for (size_t i = 0; i < specs.size(); ++i) {
        if (final_rev[i] == 0) continue;
        bool finished = false;
        for (const auto& r : rs) {
          if (r.watch_id() != ids[i]) continue;
          if (r.canceled()) finished = true;
          for (const auto& e : r.events()) {
            if (e.kv().mod_revision() >= final_rev[i]) finished = true;
          }
        }
        if (!finished) return false;
      }
      return true;
    };
    const bool a_done = a.WaitFor(done, std::chrono::seconds(5));
    const bool b_done = b.WaitFor(done, std::chrono::seconds(5));
    // Watches with nothing to wait for: a short grace for stray events.
    bool any_open = false;
    for (int64_t f : final_rev) any_open |= f == 0;
    if (any_open) {
      a.WaitFor([](const auto&) { return false; }, std::chrono::milliseconds(150));
      b.WaitFor([](const auto&) { return false; }, std::chrono::milliseconds(150));
    }
    // Cancel one watch and wait for the canceled response.
    int cancel_index = -1;
    if (Chance(40)) {
      cancel_index = static_cast<int>(Uniform(0, specs.size() - 1));
      // Only a watch that is open and quiet on etcd: one canceled by a
      // compaction (asynchronously) or still catching up would race.
      std::vector<int64_t> ref_ids = ids_of(a.Responses());
      bool quiet = static_cast<int>(ref_ids.size()) > cancel_index && final_rev[cancel_index] != 0;
      for (const auto& r : a.Responses()) {
        if (quiet && r.watch_id() == ref_ids[cancel_index] && r.canceled()) quiet = false;
      }
      if (!quiet || !a_done) cancel_index = -1;
    }
    if (cancel_index >= 0) {
      for (auto* s : {&a, &b}) {
        std::vector<int64_t> ids = ids_of(s->Responses());
        if (static_cast<int>(ids.size()) <= cancel_index || ids[cancel_index] < 0) continue;
        const int64_t id = ids[cancel_index];
        pb::WatchRequest r;
        r.mutable_cancel_request()->set_watch_id(id);
        s->Write(r);
        s->WaitFor(
            [&](const std::vector<pb::WatchResponse>& rs) {
              for (const auto& x : rs) {
                if (x.watch_id() == id && x.canceled()) return true;
              }
              return false;
            },
            std::chrono::seconds(3));
      }
    }
    WatchTranscript ta = Transcript(specs, final_rev, a.Responses());
    WatchTranscript tb = Transcript(specs, final_rev, b.Responses());
    // A watch from exactly the compact revision: etcd 3.4 deletes the
    // tombstones at that revision from its backend, but its watchers read
    // through a buffer that does not see deletes until the backend's next
    // commit (every 100 ms), so right after a Compact etcd may or may not
    // send a DELETE event at the compact revision. cppetcd does not (etcd's
    // settled answer). Such events are dropped from both sides.
    for (size_t i = 0; i < specs.size(); ++i) {
      if (compact_rev_ <= 0 || specs[i].create.start_revision() != compact_rev_) continue;
      for (WatchTranscript* t : {&ta, &tb}) {
        auto* ev = t->events[i].mutable_events();
        const int before = ev->size();
        ev->erase(std::remove_if(ev->begin(), ev->end(),
                                 [&](const mvccpb::Event& e) {
                                   return e.type() == mvccpb::Event::DELETE &&
                                          e.kv().mod_revision() == compact_rev_;
                                 }),
                  ev->end());
        if (ev->size() != before) {
          ++allowed_["etcd 3.4: tombstone at the compact revision seen by a new watch"];
        }
      }
    }
    std::string diff;
    if (a_done != b_done) diff += absl::StrCat("finished: etcd ", a_done, " server ", b_done, "\n");
    if (ta.control != tb.control) {
      diff += "control responses differ:\n--- etcd ---\n";
      for (const auto& l : ta.control) diff += l + "\n";
      diff += "--- server ---\n";
      for (const auto& l : tb.control) diff += l + "\n";
    }
    for (size_t i = 0; i < specs.size(); ++i) {
      google::protobuf::util::MessageDifferencer d;
      std::string report;
      d.ReportDifferencesToString(&report);
      if (!d.Compare(ta.events[i], tb.events[i])) {
        diff += absl::StrCat("watch #", i, " events differ:\n", report.substr(0, 3000),
                             "--- etcd ---\n", Multi(ta.events[i]), "--- server ---\n",
                             Multi(tb.events[i]));
      }
    }
    std::string what = "Watch";
    for (const auto& s : specs) what += " {" + Brief(s.create, 400) + "}";
    if (cancel_index >= 0) what += absl::StrCat(" cancel #", cancel_index);
    if (!diff.empty()) Report(what, diff);
    if (verbose_) std::cout << "step " << step_ << ": " << what << "\n";
    ++outcomes_[a_done ? "Watch done" : "Watch timed out"];
    for (const auto& l : ta.control) {
      ++outcomes_["Watch " + l.substr(l.find(' ') + 1, 60)];
    }
  }

  // Control responses as text (watch ids, created, canceled, compact
  // revision, reason) and, per watch, its events up to its final marker.
  WatchTranscript Transcript(const std::vector<WatchSpec>& specs,
                             const std::vector<int64_t>& final_rev,
                             const std::vector<pb::WatchResponse>& rs) {
    WatchTranscript t;
    t.events.resize(specs.size());
    std::vector<int64_t> ids;
    for (const auto& r : rs) {
      if (r.created() && ids.size() < specs.size()) ids.push_back(r.watch_id());
      if (r.created() || r.canceled() || r.compact_revision() != 0 ||
          !r.cancel_reason().empty()) {
        t.control.push_back(absl::StrCat("id=", r.watch_id(), " created=", r.created(),
                                         " canceled=", r.canceled(), " compact_revision=",
                                         r.compact_revision(), " reason=\"", r.cancel_reason(),
                                         "\" events=", r.events_size()));
      }
    }
    // Responses of different watches on one stream interleave by timing
    // (etcd cancels a compacted watch from its 100 ms sync loop): keep each
    // watch's own order only.
    std::stable_sort(t.control.begin(), t.control.end(),
                     [](const std::string& x, const std::string& y) {
                       return std::strtoll(x.c_str() + 3, nullptr, 10) <
                              std::strtoll(y.c_str() + 3, nullptr, 10);
                     });
    for (size_t i = 0; i < specs.size() && i < ids.size(); ++i) {
      bool past_final = false;
      for (const auto& r : rs) {
        if (r.watch_id() != ids[i] || past_final) continue;
        for (const auto& e : r.events()) {
          if (past_final) break;
          *t.events[i].add_events() = e;
          if (final_rev[i] != 0 && e.kv().mod_revision() >= final_rev[i]) past_final = true;
        }
      }
    }
    return t;
  }

  // ---------------------------------------------------------- invalid

  // Requests with edge values that the generators above do not produce.
  void DoEdge() {
    switch (Uniform(0, 7)) {
      case 0: {
        pb::TxnRequest t;  // too many operations (etcd's default limit: 128)
        for (int i = 0; i < 129; ++i) {
          t.add_success()->mutable_request_range()->set_key("k" + std::to_string(i));
        }
        DoTxn(t);
        break;
      }
      case 1: {
        pb::TxnRequest t;  // exactly the limit
        for (int i = 0; i < 128; ++i) {
          t.add_success()->mutable_request_put()->set_key("t/" + std::to_string(i));
        }
        DoTxn(t);
        break;
      }
      case 2: {
        pb::TxnRequest t;  // duplicate key among puts, maybe across branches
        t.add_success()->mutable_request_put()->set_key("a");
        (Chance(50) ? t.add_success() : t.add_failure())->mutable_request_put()->set_key("a");
        DoTxn(t);
        break;
      }
      case 3: {
        pb::TxnRequest t;  // put overlapping a delete range, maybe nested
        auto* d = t.add_success()->mutable_request_delete_range();
        d->set_key("a");
        d->set_range_end(Chance(50) ? "b" : std::string(1, '\0'));
        if (Chance(50)) {
          t.add_success()->mutable_request_put()->set_key("a/1");
        } else {
          t.add_success()->mutable_request_txn()->add_success()->mutable_request_put()->set_key(
              "a/2");
        }
        DoTxn(t);
        break;
      }
      case 4: {
        pb::PutRequest p;  // ignore_value on a missing key
        p.set_key(absl::StrCat("missing-", Uniform(0, 1000000)));
        p.set_ignore_value(true);
        DoPut(p);
        break;
      }
      case 5: {
        pb::PutRequest p;  // key of 1 byte, value empty, prev_kv
        p.set_key(std::string(1, static_cast<char>(Uniform(0, 255))));
        p.set_prev_kv(true);
        DoPut(p);
        break;
      }
      case 6:
        DoSizedPut();
        break;
      default: {
        pb::RangeRequest r;  // the whole keyspace at a random revision
        r.set_key(std::string(1, '\0'));
        r.set_range_end(std::string(1, '\0'));
        r.set_revision(Revision());
        DoRange(r);
        break;
      }
    }
  }

  // Requests that make etcd 3.4 itself crash (a nil dereference panics the
  // whole process), so there is nothing to compare with: sent to the server
  // under test only, which must answer (any status) and stay up.
  //  - Range with an unknown sort_target and sort_order ASCEND, DESCEND or
  //    NONE (NONE means ASCEND for a target other than KEY): etcd sorts with
  //    a nil sorter (etcdserver/apply.go, applierV3backend.Range).
  //  - Alarm with an unknown action: etcd's applier answers nil and the
  //    response marshalling dereferences it.
  //  - A Txn whose put with ignore_value or ignore_lease follows a delete of
  //    its existing key (etcd checks the put against the state before the
  //    txn, then its apply panics with "unexpected error during txn", again
  //    on every restart). Random txns lose such ignore flags (DoTxn).
  void DoServerOnly() {
    ++step_;
    if (IsReferenceEtcd(ServerBinary())) return;  // etcd compared with itself
    Request r;
    if (Chance(30)) {
      // The key exists, then one txn deletes it and puts it with
      // ignore_value or ignore_lease: the server must refuse the txn (etcd
      // 3.4's api lets it through and its apply panics) and write nothing,
      // which the Range after it checks against etcd.
      pb::PutRequest put;
      put.set_key("ignore/k");
      put.set_value("v");
      DoPut(put);
      pb::TxnRequest t;
      pb::TxnRequest* inner = Chance(50) ? &t : t.add_success()->mutable_request_txn();
      inner->add_success()->mutable_request_delete_range()->set_key(
          Chance(50) ? "ignore/k" : "ignore/");
      if (inner->success(0).request_delete_range().key() == "ignore/") {
        inner->mutable_success(0)->mutable_request_delete_range()->set_range_end("ignore0");
      }
      auto* p = (Chance(50) ? inner : t.add_success()->mutable_request_txn())
                    ->add_success()
                    ->mutable_request_put();
      p->set_key("ignore/k");
      if (Chance(50)) {
        p->set_ignore_value(true);
      } else {
        p->set_value("w");
        p->set_ignore_lease(true);
      }
      Reply reply = sut_.Call(Kv("Txn"), t.SerializeAsString());
      ++outcomes_[absl::StrCat("Txn(server only) ", reply.code == grpc::StatusCode::OK
                                                        ? std::string("OK")
                                                        : reply.message.substr(0, 80))];
      if (reply.code == grpc::StatusCode::OK || !sut_.Alive()) {
        Report(absl::StrCat("Txn(server only) ", Brief(t)),
               absl::StrCat("the server must refuse it and stay up: ", reply.code, " ",
                            reply.message, sut_.Alive() ? "" : " (the server died)"));
        if (!sut_.Alive()) sut_died_ = true;
        return;
      }
      pb::RangeRequest check;
      check.set_key("ignore/k");
      DoRange(check);
      return;
    }
    if (Chance(50)) {
      pb::RangeRequest q = RandomRange();
      q.set_sort_order(static_cast<pb::RangeRequest::SortOrder>(UniformI(0, 2)));
      q.set_sort_target(static_cast<pb::RangeRequest::SortTarget>(Pick<int64_t>({5, 9, -2})));
      if (Chance(30)) {
        pb::TxnRequest t;
        *t.add_success()->mutable_request_range() = q;
        r = Make<pb::TxnResponse>("Txn(server only)", Kv("Txn"), t);
      } else {
        r = Make<pb::RangeResponse>("Range(server only)", Kv("Range"), q);
      }
    } else {
      pb::AlarmRequest q;
      q.set_action(static_cast<pb::AlarmRequest::AlarmAction>(Pick<int64_t>({3, 4, -1})));
      q.set_alarm(static_cast<pb::AlarmType>(UniformI(0, 2)));
      r = Make<pb::AlarmResponse>("Alarm(server only)", MaintM("Alarm"), q);
    }
    SendServerOnly(std::move(r));
  }

  void SendServerOnly(Request r) {
    if (IsReferenceEtcd(ServerBinary())) return;  // etcd compared with itself
    Reply reply = sut_.Call(r.method, r.req->SerializeAsString() + r.suffix, r.with_token);
    ++outcomes_[absl::StrCat(r.label, " ", reply.code == grpc::StatusCode::OK
                                               ? std::string("OK")
                                               : reply.message.substr(0, 80))];
    if (reply.code == grpc::StatusCode::UNAVAILABLE ||
        reply.code == grpc::StatusCode::DEADLINE_EXCEEDED || !sut_.Alive()) {
      Report(absl::StrCat(r.label, " ", Brief(*r.req)),
             absl::StrCat("the server under test did not answer: ", reply.code, " ",
                          reply.message));
      if (!sut_.Alive()) sut_died_ = true;
    }
  }

  // ---------------------------------------------------------- sequence

  void RandomStep() {
    const size_t pick = Uniform(0, 99);
    if (pick < 20) {
      DoPut(RandomPut());
    } else if (pick < 36) {
      DoRange(RandomRange());
    } else if (pick < 43) {
      DoDelete(RandomDelete());
    } else if (pick < 58) {
      DoTxn(RandomTxn(0));
    } else if (pick < 61) {
      DoCompact();
    } else if (pick < 64) {
      DoLeaseGrantLong();
    } else if (pick < 65) {
      DoLeaseGrantShort();
    } else if (pick < 67) {
      DoLeaseRevoke();
    } else if (pick < 70) {
      DoLeaseTimeToLive();
    } else if (pick < 71) {
      DoLeaseLeases();
    } else if (pick < 81) {
      DoAuth();
    } else if (pick < 85) {
      DoWatch();
    } else if (pick < 87) {
      DoMaintenance();
    } else if (pick < 88) {
      DoServerOnly();
    } else {
      DoEdge();
    }
  }

  // Creates root with the root role and enables auth on both; then every
  // node authenticates as root. Returns false if etcd refused.
  bool EnableAuth() {
    pb::AuthUserAddRequest add;
    add.set_name("root");
    add.set_password(kRootPassword);
    Send(Make<pb::AuthUserAddResponse>("UserAdd", AuthM("UserAdd"), add));
    pb::AuthUserGrantRoleRequest grant;
    grant.set_user("root");
    grant.set_role("root");
    Send(Make<pb::AuthUserGrantRoleResponse>("UserGrantRole", AuthM("UserGrantRole"), grant));
    Request en = Make<pb::AuthEnableResponse>("AuthEnable", AuthM("AuthEnable"),
                                              pb::AuthEnableRequest());
    en.suffix.clear();
    Compared c = Send(en);
    if (c.ref.code != grpc::StatusCode::OK) return false;
    for (Node* n : {&ref_, &sut_}) EXPECT_TRUE(Authenticate(n)) << n->name;
    return true;
  }

  // True if auth is enabled on etcd; then both nodes get fresh tokens.
  bool RefreshTokens() {
    pb::AuthenticateRequest q;
    q.set_name("root");
    q.set_password(kRootPassword);
    Reply r = ref_.Call(AuthM("Authenticate"), q.SerializeAsString(), false);
    if (r.code != grpc::StatusCode::OK) {
      ref_.token.clear();
      sut_.token.clear();
      return false;
    }
    for (Node* n : {&ref_, &sut_}) EXPECT_TRUE(Authenticate(n)) << n->name;
    return true;
  }

  static bool Authenticate(Node* n) {
    pb::AuthenticateRequest q;
    q.set_name("root");
    q.set_password(kRootPassword);
    Reply r = n->Call(AuthM("Authenticate"), q.SerializeAsString(), false);
    pb::AuthenticateResponse resp;
    if (r.code != grpc::StatusCode::OK || !resp.ParseFromString(r.bytes)) {
      ADD_FAILURE() << n->name << " Authenticate: " << r.code << " " << r.message;
      return false;
    }
    n->token = resp.token();
    return true;
  }

  // With auth on: a few requests without a token or with a bogus one, and
  // some as root.
  void AfterAuthSteps(int n) {
    std::vector<Request> bogus;
    bogus.push_back(Make<pb::RangeResponse>("Range(bogus token)", Kv("Range"), RandomRange()));
    bogus.push_back(Make<pb::PutResponse>("Put(bogus token)", Kv("Put"), RandomPut()));
    bogus.push_back(Make<pb::AlarmResponse>("Alarm(bogus token)", MaintM("Alarm"),
                                            pb::AlarmRequest()));
    bogus.push_back(Make<pb::AuthUserListResponse>("UserList(bogus token)", AuthM("UserList"),
                                                   pb::AuthUserListRequest()));
    bogus.push_back(Make<pb::LeaseGrantResponse>("LeaseGrant(bogus token)",
                                                 LeaseM("LeaseGrant"), pb::LeaseGrantRequest()));
    bogus.push_back(Make<pb::StatusResponse>("Status(bogus token)", MaintM("Status"),
                                             pb::StatusRequest()));
    for (auto& r : bogus) {
      r.forced_token = "bogus.token";
      r.suffix.clear();
      Send(r);
    }
    {
      // A watch with a bogus token: created and canceled at once, with
      // etcd's reason text.
      ++step_;
      pb::WatchRequest w;
      w.mutable_create_request()->set_key("a");
      std::vector<std::string> reasons;
      for (Node* n : {&ref_, &sut_}) {
        WatchStream ws(*n, "bogus.token");
        ws.Write(w);
        ws.WaitFor([](const auto& rs) { return !rs.empty(); }, std::chrono::seconds(5));
        auto rs = ws.Responses();
        reasons.push_back(rs.empty() ? "<none>"
                                     : absl::StrCat(rs[0].watch_id(), " ", rs[0].created(), " ",
                                                    rs[0].canceled(), " ", rs[0].cancel_reason()));
      }
      if (reasons[0] != reasons[1]) {
        Report("Watch(bogus token)", absl::StrCat("etcd: ", reasons[0], "\nserver: ", reasons[1]));
      }
    }
    for (int i = 0; i < n; ++i) {
      if (Chance(30)) {
        Request r = Chance(50) ? Make<pb::RangeResponse>("Range(no token)", Kv("Range"),
                                                         RandomRange())
                               : Make<pb::PutResponse>("Put(no token)", Kv("Put"), RandomPut());
        r.with_token = false;
        Send(r);
      } else {
        RandomStep();
      }
    }
  }

  // The final state: every key with revisions, leases, users and roles
  // (each read in full), alarms.
  void CompareFinalState(const std::string& when) {
    const int before = diffs_;
    pb::RangeRequest all;
    all.set_key(std::string(1, '\0'));
    all.set_range_end(std::string(1, '\0'));
    Request r = Make<pb::RangeResponse>("Final Range", Kv("Range"), all);
    r.suffix.clear();
    Send(r);
    Request l = Make<pb::LeaseLeasesResponse>("Final LeaseLeases", LeaseM("LeaseLeases"),
                                              pb::LeaseLeasesRequest());
    l.suffix.clear();
    Compared leases = Send(l);
    if (leases.ref_resp != nullptr) {
      for (const auto& le : static_cast<pb::LeaseLeasesResponse&>(*leases.ref_resp).leases()) {
        pb::LeaseTimeToLiveRequest q;
        q.set_id(le.id());
        q.set_keys(true);
        Request t = Make<pb::LeaseTimeToLiveResponse>("Final LeaseTimeToLive",
                                                      LeaseM("LeaseTimeToLive"), q);
        t.suffix.clear();
        Send(t, [&](Message* a, Message* b) {
          if (when != "at the end") {
            // After the restart a lease's remaining time starts over (etcd
            // does the same on a leader change): granted TTL and keys only.
            static_cast<pb::LeaseTimeToLiveResponse*>(a)->clear_ttl();
            static_cast<pb::LeaseTimeToLiveResponse*>(b)->clear_ttl();
          } else {
            TtlTolerance(a, b);
          }
        });
      }
    }
    Request ul = Make<pb::AuthUserListResponse>("Final UserList", AuthM("UserList"),
                                                pb::AuthUserListRequest());
    ul.suffix.clear();
    Compared users = Send(ul);
    if (users.ref_resp != nullptr) {
      for (const auto& u : static_cast<pb::AuthUserListResponse&>(*users.ref_resp).users()) {
        pb::AuthUserGetRequest q;
        q.set_name(u);
        Request g = Make<pb::AuthUserGetResponse>("Final UserGet", AuthM("UserGet"), q);
        g.suffix.clear();
        Send(g);
      }
    }
    Request rl = Make<pb::AuthRoleListResponse>("Final RoleList", AuthM("RoleList"),
                                                pb::AuthRoleListRequest());
    rl.suffix.clear();
    Compared roles = Send(rl);
    if (roles.ref_resp != nullptr) {
      for (const auto& name : static_cast<pb::AuthRoleListResponse&>(*roles.ref_resp).roles()) {
        pb::AuthRoleGetRequest q;
        q.set_role(name);
        Request g = Make<pb::AuthRoleGetResponse>("Final RoleGet", AuthM("RoleGet"), q);
        g.suffix.clear();
        Send(g);
      }
    }
    Request al = Make<pb::AlarmResponse>("Final Alarm", MaintM("Alarm"), pb::AlarmRequest());
    al.suffix.clear();
    Send(al);
    EXPECT_EQ(diffs_, before) << "final state differs " << when;
  }

  TempDir tmp_;
  Node ref_;
  Node sut_;
  std::mt19937_64 rng_;
  uint64_t seed_ = 0;
  int64_t rev_ = 1;          // newest revision seen from the reference
  int64_t compact_rev_ = 0;  // newest compaction accepted by the reference
  int step_ = 0;
  int diffs_ = 0;
  bool sut_died_ = false;
  // CPPETCD_DIFF_FUZZ_VERBOSE=1: print every request and etcd's status.
  const bool verbose_ = EnvU64("CPPETCD_DIFF_FUZZ_VERBOSE", 0) != 0;
  std::map<std::string, int> outcomes_;  // "<rpc> <OK or error>" -> count (reference)
  std::map<std::string, int> allowed_;   // by-design differences seen -> count
};

TEST_F(DiffFuzzTest, RandomRequestsMatchEtcd) {
  seed_ = EnvU64("CPPETCD_DIFF_FUZZ_SEED", kDefaultSeed);
  const int requests = static_cast<int>(EnvU64("CPPETCD_DIFF_FUZZ_REQUESTS", kDefaultRequests));
  std::cout << "diff fuzz seed " << seed_ << ", " << requests
            << " requests (replay: CPPETCD_DIFF_FUZZ_SEED=" << seed_
            << " CPPETCD_DIFF_FUZZ_REQUESTS=" << requests << ")\n";
  rng_.seed(seed_);
  const auto start = Clock::now();
  while (step_ < requests && diffs_ <= kMaxReportedDiffs && !sut_died_) {
    RandomStep();
  }
  ASSERT_FALSE(sut_died_) << "seed " << seed_ << ": the server under test died at step "
                          << step_;
  bool auth = EnableAuth();
  AfterAuthSteps(auth ? 40 : 0);
  // The random steps may have disabled (or re-enabled) auth, which drops
  // every token: authenticate again if auth is on.
  auth = RefreshTokens();
  CompareFinalState("at the end");
  ASSERT_TRUE(sut_.Alive()) << "the server under test died";

  // Stop by PID, start again on the same data dir: the same final state.
  CommandResult stopped = sut_.server->Terminate();
  EXPECT_FALSE(stopped.timed_out);
  if (auth) {
    sut_.server->mutable_options().ready_user = "root";
    sut_.server->mutable_options().ready_password = kRootPassword;
  }
  absl::Status restarted = sut_.server->Restart();
  ASSERT_TRUE(restarted.ok()) << restarted;
  sut_.Connect();
  if (auth) {
    ASSERT_TRUE(Authenticate(&sut_));
  }
  CompareFinalState("after restarting the server under test");

  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::cout << step_ << " requests in " << seconds << " s; outcomes (etcd):\n";
  for (const auto& [k, n] : outcomes_) std::cout << "  " << n << "  " << k << "\n";
  std::cout << "by-design differences seen:\n";
  for (const auto& [k, n] : allowed_) std::cout << "  " << n << "  " << k << "\n";
  EXPECT_EQ(diffs_, 0) << "seed " << seed_ << ": " << diffs_ << " differing responses";
}

}  // namespace
}  // namespace cppetcd::integration
