// Differential test: one seeded random sequence of KV and lease requests is
// sent, request by request, to a fresh reference etcd (/usr/bin/etcd) and a
// fresh server under test, through the generated gRPC stubs. Responses must
// match field by field (response headers: revision only), and so must error
// codes and messages.
//
// Replay one seed: CPPETCD_DIFF_SEED=<seed> differential_test.
// With CPPETCD_TEST_SERVER=/usr/bin/etcd this compares etcd with itself,
// which proves the normalisation leaves no spurious differences.
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "normalize.h"

namespace cppetcd::integration {
namespace {

using etcdserverpb::Compare;
using etcdserverpb::RangeRequest;
using etcdserverpb::RequestOp;
using etcdserverpb::TxnRequest;
using google::protobuf::Message;

constexpr int kOpsPerSeed = 300;
constexpr int kMaxReportedDiffs = 8;

// Keys cluster under a few prefixes so that ranges, prefixes and txn
// compares hit existing keys often.
const std::vector<std::string> kKeys = {"a", "a/1", "a/2", "a/3", "a/3/x", "b", "b/1",
                                        "c", "foo", "foo1", "z", "zz"};
// Explicit lease ids (so both servers agree on them).
const std::vector<int64_t> kLeaseIds = {0x1001, 0x1002, 0x1003, 0x1004, 0x77};

std::string Text(const Message& m) {
  std::string s;
  google::protobuf::TextFormat::Printer p;
  p.SetUseUtf8StringEscaping(true);
  p.PrintToString(m, &s);
  return s;
}

// Outcome of one call: status and (if OK) the response.
struct Outcome {
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::string message;
  std::unique_ptr<Message> response;
};

struct Node {
  std::unique_ptr<ServerProcess> server;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
};

class DifferentialTest : public ::testing::TestWithParam<uint64_t> {
 protected:
  void SetUp() override {
    CPPETCD_REQUIRE_SERVER();
    if (access(ReferenceEtcdBinary().c_str(), X_OK) != 0) {
      GTEST_SKIP() << "reference etcd not found at " << ReferenceEtcdBinary();
    }
    ASSERT_NO_FATAL_FAILURE(StartNode(ReferenceEtcdBinary(), "ref", &ref_));
    ASSERT_NO_FATAL_FAILURE(StartNode(ServerBinary(), "sut", &sut_));
  }

  void StartNode(const std::string& binary, const std::string& name, Node* node) {
    ServerProcess::Options o;
    o.binary = binary;
    o.name = name;
    o.data_dir = tmp_.path() + "/" + name;
    auto s = ServerProcess::Start(o);
    ASSERT_TRUE(s.ok()) << binary << ": " << s.status();
    node->server = std::move(*s);
    node->channel = node->server->NewChannel();
    node->kv = etcdserverpb::KV::NewStub(node->channel);
    node->lease = etcdserverpb::Lease::NewStub(node->channel);
  }

  template <class Resp, class Fn>
  static Outcome Call(Fn fn) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    auto resp = std::make_unique<Resp>();
    grpc::Status st = fn(&ctx, resp.get());
    Outcome o;
    o.code = st.error_code();
    o.message = st.error_message();
    if (st.ok()) o.response = std::move(resp);
    return o;
  }

  // Runs `fn(node)` on both nodes and compares. Returns the reference
  // outcome.
  template <class Resp>
  Outcome Both(const std::string& what,
               const std::function<grpc::Status(Node&, grpc::ClientContext*, Resp*)>& fn,
               const std::function<void(Resp*, Resp*)>& fixup = nullptr) {
    Outcome a = Call<Resp>([&](grpc::ClientContext* c, Resp* r) { return fn(ref_, c, r); });
    Outcome b = Call<Resp>([&](grpc::ClientContext* c, Resp* r) { return fn(sut_, c, r); });
    ++op_index_;
    ++outcomes_[absl::StrCat(what.substr(0, what.find(' ')), " ", a.code == grpc::StatusCode::OK
                                                                      ? std::string("OK")
                                                                      : a.message)];
    std::string diff;
    if (a.code != b.code || a.message != b.message) {
      diff = absl::StrCat("status: etcd ", a.code, " \"", a.message, "\" vs server ", b.code,
                          " \"", b.message, "\"");
    } else if (a.response != nullptr) {
      auto* ra = static_cast<Resp*>(a.response.get());
      auto* rb = static_cast<Resp*>(b.response.get());
      Resp na = *ra, nb = *rb;
      if (fixup) fixup(&na, &nb);
      NormalizeResponse(&na);
      NormalizeResponse(&nb);
      google::protobuf::util::MessageDifferencer d;
      std::string report;
      d.ReportDifferencesToString(&report);
      if (!d.Compare(na, nb)) {
        diff = absl::StrCat(report, "--- etcd ---\n", Text(na), "--- server ---\n", Text(nb));
      }
    }
    if (b.code == grpc::StatusCode::UNAVAILABLE || b.code == grpc::StatusCode::DEADLINE_EXCEEDED) {
      ++sut_unreachable_;  // a dead or hung server: stop early (see RunSequence)
    }
    if (!diff.empty()) {
      ++diffs_;
      if (diffs_ <= kMaxReportedDiffs) {
        ADD_FAILURE() << "seed " << seed_ << " op #" << op_index_ << ": " << what << "\n"
                      << diff;
      }
    }
    if (a.code == grpc::StatusCode::OK) {
      if (auto* h = HeaderOf(*a.response); h != nullptr && h->revision() > 0) {
        rev_ = h->revision();
      }
    }
    return a;
  }

  static const etcdserverpb::ResponseHeader* HeaderOf(const Message& m) {
    const auto* f = m.GetDescriptor()->FindFieldByName("header");
    if (f == nullptr || !m.GetReflection()->HasField(m, f)) return nullptr;
    return static_cast<const etcdserverpb::ResponseHeader*>(
        &m.GetReflection()->GetMessage(m, f));
  }

  // ------------------------------------------------------------ generators
  const std::string& Key() { return kKeys[Uniform(0, kKeys.size() - 1)]; }
  size_t Uniform(size_t lo, size_t hi) { return std::uniform_int_distribution<size_t>(lo, hi)(rng_); }
  bool Chance(int percent) { return Uniform(1, 100) <= static_cast<size_t>(percent); }

  std::string Value() {
    std::string v;
    size_t n = Uniform(0, 6);
    for (size_t i = 0; i < n; ++i) v.push_back(static_cast<char>('a' + Uniform(0, 3)));
    if (Chance(3)) v.push_back('\0');  // values are bytes
    return v;
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

  // key/range_end: single key, prefix, explicit range, from-key.
  void KeyRange(std::string* key, std::string* end) {
    *key = Key();
    switch (Uniform(0, 5)) {
      case 0:
      case 1:
        end->clear();
        break;
      case 2:
        *end = PrefixEnd(*key);
        break;
      case 3:
        *end = Key();
        break;
      case 4:
        *end = std::string(1, '\0');  // from key
        break;
      case 5:
        if (Chance(50)) {
          *key = std::string(1, '\0');
          *end = std::string(1, '\0');  // everything
        } else {
          *end = PrefixEnd(*key);
        }
        break;
    }
  }

  int64_t Lease() {
    if (Chance(60)) return 0;
    if (Chance(5)) return 0xdead;  // never granted
    return kLeaseIds[Uniform(0, kLeaseIds.size() - 1)];
  }

  int64_t Revision() {
    if (Chance(60)) return 0;
    int64_t lo = Chance(25) ? 1 : std::max<int64_t>(1, rev_ - 6);
    return static_cast<int64_t>(Uniform(static_cast<size_t>(lo), static_cast<size_t>(rev_ + 2)));
  }

  RangeRequest RandomRange(bool in_txn) {
    RangeRequest r;
    KeyRange(r.mutable_key(), r.mutable_range_end());
    if (Chance(30)) r.set_limit(static_cast<int64_t>(Uniform(1, 4)));
    if (!in_txn) r.set_revision(Revision());
    if (Chance(25)) r.set_sort_order(static_cast<RangeRequest::SortOrder>(Uniform(0, 2)));
    if (Chance(25)) r.set_sort_target(static_cast<RangeRequest::SortTarget>(Uniform(0, 4)));
    if (Chance(20)) r.set_serializable(true);
    if (Chance(15)) r.set_keys_only(true);
    if (Chance(10)) r.set_count_only(true);
    if (Chance(8)) r.set_min_mod_revision(static_cast<int64_t>(Uniform(1, rev_ + 1)));
    if (Chance(8)) r.set_max_mod_revision(static_cast<int64_t>(Uniform(1, rev_ + 1)));
    if (Chance(8)) r.set_min_create_revision(static_cast<int64_t>(Uniform(1, rev_ + 1)));
    if (Chance(8)) r.set_max_create_revision(static_cast<int64_t>(Uniform(1, rev_ + 1)));
    return r;
  }

  etcdserverpb::PutRequest RandomPut() {
    etcdserverpb::PutRequest p;
    p.set_key(Key());
    p.set_value(Value());
    p.set_lease(Lease());
    p.set_prev_kv(Chance(40));
    if (Chance(5)) p.set_ignore_value(true), p.clear_value();
    if (Chance(5)) p.set_ignore_lease(true), p.set_lease(0);
    return p;
  }

  etcdserverpb::DeleteRangeRequest RandomDelete() {
    etcdserverpb::DeleteRangeRequest d;
    KeyRange(d.mutable_key(), d.mutable_range_end());
    d.set_prev_kv(Chance(50));
    return d;
  }

  Compare RandomCompare() {
    Compare c;
    c.set_key(Key());
    if (Chance(10)) c.set_range_end(PrefixEnd(c.key()));
    c.set_result(static_cast<Compare::CompareResult>(Uniform(0, 3)));
    c.set_target(static_cast<Compare::CompareTarget>(Uniform(0, 4)));
    switch (c.target()) {
      case Compare::VERSION:
        c.set_version(static_cast<int64_t>(Uniform(0, 3)));
        break;
      case Compare::CREATE:
        c.set_create_revision(static_cast<int64_t>(Uniform(0, rev_ + 1)));
        break;
      case Compare::MOD:
        c.set_mod_revision(static_cast<int64_t>(Uniform(0, rev_ + 1)));
        break;
      case Compare::VALUE:
        c.set_value(Value());
        break;
      case Compare::LEASE:
        c.set_lease(Lease());
        break;
      default:
        break;
    }
    return c;
  }

  RequestOp RandomRequestOp(int depth) {
    RequestOp op;
    switch (Uniform(0, depth > 0 ? 2 : 3)) {
      case 0:
        *op.mutable_request_range() = RandomRange(/*in_txn=*/true);
        break;
      case 1:
        *op.mutable_request_put() = RandomPut();
        break;
      case 2:
        *op.mutable_request_delete_range() = RandomDelete();
        break;
      case 3:
        *op.mutable_request_txn() = RandomTxn(depth + 1);
        break;
    }
    return op;
  }

  TxnRequest RandomTxn(int depth) {
    TxnRequest t;
    for (size_t i = Uniform(0, 3); i > 0; --i) *t.add_compare() = RandomCompare();
    for (size_t i = Uniform(0, 3); i > 0; --i) *t.add_success() = RandomRequestOp(depth);
    for (size_t i = Uniform(0, 2); i > 0; --i) *t.add_failure() = RandomRequestOp(depth);
    return t;
  }

  // ------------------------------------------------------------ operations
  void DoRange(const RangeRequest& req) {
    Both<etcdserverpb::RangeResponse>(
        "Range " + req.ShortDebugString(),
        [&](Node& n, grpc::ClientContext* c, etcdserverpb::RangeResponse* r) {
          return n.kv->Range(c, req, r);
        });
  }
  void DoPut(const etcdserverpb::PutRequest& req) {
    Both<etcdserverpb::PutResponse>(
        "Put " + req.ShortDebugString(),
        [&](Node& n, grpc::ClientContext* c, etcdserverpb::PutResponse* r) {
          return n.kv->Put(c, req, r);
        });
  }
  void DoDelete(const etcdserverpb::DeleteRangeRequest& req) {
    Both<etcdserverpb::DeleteRangeResponse>(
        "DeleteRange " + req.ShortDebugString(),
        [&](Node& n, grpc::ClientContext* c, etcdserverpb::DeleteRangeResponse* r) {
          return n.kv->DeleteRange(c, req, r);
        });
  }
  void DoTxn(const TxnRequest& req) {
    Both<etcdserverpb::TxnResponse>(
        "Txn " + req.ShortDebugString(),
        [&](Node& n, grpc::ClientContext* c, etcdserverpb::TxnResponse* r) {
          return n.kv->Txn(c, req, r);
        });
  }
  void DoCompact(int64_t rev, bool physical) {
    etcdserverpb::CompactionRequest req;
    req.set_revision(rev);
    req.set_physical(physical);
    Both<etcdserverpb::CompactionResponse>(
        "Compact " + req.ShortDebugString(),
        [&](Node& n, grpc::ClientContext* c, etcdserverpb::CompactionResponse* r) {
          return n.kv->Compact(c, req, r);
        });
  }
  void DoLeaseGrant(int64_t id, int64_t ttl) {
    etcdserverpb::LeaseGrantRequest req;
    req.set_id(id);
    req.set_ttl(ttl);
    int64_t sut_id = 0;
    Outcome ref = Both<etcdserverpb::LeaseGrantResponse>(
        "LeaseGrant " + req.ShortDebugString(),
        [&](Node& n, grpc::ClientContext* c, etcdserverpb::LeaseGrantResponse* r) {
          return n.lease->LeaseGrant(c, req, r);
        },
        [&](etcdserverpb::LeaseGrantResponse* a, etcdserverpb::LeaseGrantResponse* b) {
          if (id == 0) {  // server-chosen ids differ by design
            sut_id = b->id();
            EXPECT_NE(a->id(), 0);
            EXPECT_NE(b->id(), 0);
            a->clear_id();
            b->clear_id();
          }
        });
    if (id == 0 && ref.code == grpc::StatusCode::OK) {
      // Revoke the server-chosen leases again so the id sets stay equal.
      auto ref_id = static_cast<etcdserverpb::LeaseGrantResponse*>(ref.response.get())->id();
      for (auto [node, lid] : {std::pair<Node*, int64_t>{&ref_, ref_id}, {&sut_, sut_id}}) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        etcdserverpb::LeaseRevokeRequest rr;
        rr.set_id(lid);
        etcdserverpb::LeaseRevokeResponse resp;
        grpc::Status st = node->lease->LeaseRevoke(&ctx, rr, &resp);
        EXPECT_TRUE(st.ok()) << st.error_message();
      }
    }
  }
  void DoLeaseRevoke(int64_t id) {
    etcdserverpb::LeaseRevokeRequest req;
    req.set_id(id);
    Both<etcdserverpb::LeaseRevokeResponse>(
        "LeaseRevoke " + req.ShortDebugString(),
        [&](Node& n, grpc::ClientContext* c, etcdserverpb::LeaseRevokeResponse* r) {
          return n.lease->LeaseRevoke(c, req, r);
        });
  }
  void DoLeaseTimeToLive(int64_t id, bool keys) {
    etcdserverpb::LeaseTimeToLiveRequest req;
    req.set_id(id);
    req.set_keys(keys);
    Both<etcdserverpb::LeaseTimeToLiveResponse>(
        "LeaseTimeToLive " + req.ShortDebugString(),
        [&](Node& n, grpc::ClientContext* c, etcdserverpb::LeaseTimeToLiveResponse* r) {
          return n.lease->LeaseTimeToLive(c, req, r);
        },
        [&](etcdserverpb::LeaseTimeToLiveResponse* a, etcdserverpb::LeaseTimeToLiveResponse* b) {
          // Remaining seconds depend on when each server granted the lease.
          if (std::llabs(a->ttl() - b->ttl()) <= 2) b->set_ttl(a->ttl());
        });
  }
  void DoLeaseLeases() {
    etcdserverpb::LeaseLeasesRequest req;
    Both<etcdserverpb::LeaseLeasesResponse>(
        "LeaseLeases", [&](Node& n, grpc::ClientContext* c, etcdserverpb::LeaseLeasesResponse* r) {
          return n.lease->LeaseLeases(c, req, r);
        });
  }

  // Requests etcd rejects before they reach the store.
  void DoInvalid() {
    switch (Uniform(0, 7)) {
      case 0: {
        etcdserverpb::PutRequest p;
        p.set_value("x");
        DoPut(p);  // empty key
        break;
      }
      case 1: {
        RangeRequest r;
        DoRange(r);  // empty key
        break;
      }
      case 2: {
        etcdserverpb::DeleteRangeRequest d;
        DoDelete(d);  // empty key
        break;
      }
      case 3: {
        TxnRequest t;  // too many operations
        for (int i = 0; i < 129; ++i) {
          t.add_success()->mutable_request_range()->set_key("k" + std::to_string(i));
        }
        DoTxn(t);
        break;
      }
      case 4: {
        TxnRequest t;  // duplicate key among puts
        auto* p1 = t.add_success()->mutable_request_put();
        p1->set_key("a");
        auto* p2 = t.add_success()->mutable_request_put();
        p2->set_key("a");
        DoTxn(t);
        break;
      }
      case 5: {
        TxnRequest t;  // put overlapping a delete range
        auto* d = t.add_success()->mutable_request_delete_range();
        d->set_key("a");
        d->set_range_end("b");
        t.add_success()->mutable_request_put()->set_key("a/1");
        DoTxn(t);
        break;
      }
      case 6: {
        etcdserverpb::PutRequest p;  // ignore_value with a value
        p.set_key("a");
        p.set_value("v");
        p.set_ignore_value(true);
        DoPut(p);
        break;
      }
      case 7: {
        RangeRequest r;  // negative limit is treated as none? ask both
        r.set_key("a");
        r.set_range_end(std::string(1, '\0'));
        r.set_limit(-1);
        DoRange(r);
        break;
      }
    }
  }


  // The history a watch from `start_rev` replays, as seen by one node: the
  // non-event responses (created, canceled, compact_revision; headers
  // dropped) and the flattened events (servers may batch events into
  // responses differently). Ends at the event for `end_key` or when the
  // watch is canceled; bounded by a 5 s deadline and 10000 responses.
  struct WatchHistory {
    std::vector<std::string> control;
    etcdserverpb::WatchResponse events;  // only `events` is used
    std::string error;
  };
  static WatchHistory ReplayWatch(Node& n, int64_t start_rev, bool prev_kv,
                                  const std::string& end_key) {
    WatchHistory h;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    etcdserverpb::Watch::Stub watch(n.channel);
    auto stream = watch.Watch(&ctx);
    etcdserverpb::WatchRequest req;
    auto* c = req.mutable_create_request();
    c->set_key(std::string(1, '\0'));
    c->set_range_end(std::string(1, '\0'));
    c->set_start_revision(start_rev);
    c->set_prev_kv(prev_kv);
    if (!stream->Write(req)) {
      h.error = "write failed";
      return h;
    }
    etcdserverpb::WatchResponse resp;
    bool done = false;
    for (int i = 0; i < 10000 && !done && stream->Read(&resp); ++i) {
      if (resp.events_size() == 0 || resp.created() || resp.canceled()) {
        h.control.push_back(absl::StrCat("watch_id=", resp.watch_id(), " created=", resp.created(),
                                         " canceled=", resp.canceled(),
                                         " compact_revision=", resp.compact_revision(),
                                         " cancel_reason=", resp.cancel_reason(),
                                         " events=", resp.events_size()));
      }
      for (const auto& e : resp.events()) {
        *h.events.add_events() = e;
        if (e.kv().key() == end_key) done = true;
      }
      if (resp.canceled()) done = true;
    }
    if (!done) h.error = "watch ended before the end marker";
    ctx.TryCancel();
    stream->WritesDone();
    stream->Finish();
    return h;
  }

  void DoWatchReplay(int64_t start_rev, bool prev_kv, const std::string& end_key) {
    ++op_index_;
    WatchHistory a = ReplayWatch(ref_, start_rev, prev_kv, end_key);
    WatchHistory b = ReplayWatch(sut_, start_rev, prev_kv, end_key);
    std::string diff;
    if (a.error != b.error) diff += absl::StrCat("etcd: '", a.error, "' server: '", b.error, "'\n");
    if (a.control != b.control) {
      diff += "control responses differ:\n--- etcd ---\n";
      for (const auto& l : a.control) diff += l + "\n";
      diff += "--- server ---\n";
      for (const auto& l : b.control) diff += l + "\n";
    }
    google::protobuf::util::MessageDifferencer d;
    std::string report;
    d.ReportDifferencesToString(&report);
    if (!d.Compare(a.events, b.events)) diff += "events differ:\n" + report;
    if (!diff.empty()) {
      ++diffs_;
      if (diffs_ <= kMaxReportedDiffs) {
        ADD_FAILURE() << "seed " << seed_ << " op #" << op_index_ << ": Watch from revision "
                      << start_rev << (prev_kv ? " with prev_kv" : "") << "\n" << diff;
      }
    }
    const bool canceled = !a.control.empty() && a.control.back().find("canceled=1") !=
                                                    std::string::npos;
    ++outcomes_[absl::StrCat("Watch ", !a.error.empty() ? a.error
                                       : canceled       ? "canceled (compacted)"
                                                        : "OK")];
    outcomes_["Watch events replayed"] += a.events.events_size();
  }

  // Replays recent history through watches (a few start revisions, some
  // maybe compacted) up to a marker write.
  void WatchCheckpoint(bool from_start) {
    etcdserverpb::PutRequest marker;
    marker.set_key("zz-watch-end");
    marker.set_value(absl::StrCat("end", op_index_));
    DoPut(marker);
    std::vector<int64_t> starts = {std::max<int64_t>(1, rev_ - 30),
                                   std::max<int64_t>(1, rev_ - 10)};
    if (from_start) starts.push_back(1);
    for (int64_t start : starts) DoWatchReplay(start, Chance(50), marker.key());
  }

  void RunSequence(int ops) {
    for (int i = 0; i < ops && diffs_ <= kMaxReportedDiffs && sut_unreachable_ < 3; ++i) {
      if (i % 60 == 59) WatchCheckpoint(/*from_start=*/false);
      size_t pick = Uniform(0, 99);
      if (pick < 28) {
        DoPut(RandomPut());
      } else if (pick < 48) {
        DoRange(RandomRange(false));
      } else if (pick < 58) {
        DoDelete(RandomDelete());
      } else if (pick < 76) {
        DoTxn(RandomTxn(0));
      } else if (pick < 79) {
        int64_t lo = std::max<int64_t>(1, rev_ - 8);
        DoCompact(static_cast<int64_t>(Uniform(static_cast<size_t>(lo),
                                               static_cast<size_t>(rev_ + 1))),
                  Chance(30));
      } else if (pick < 85) {
        // TTLs stay far above the test's run time so that no lease expires
        // (expiry times differ between the two servers); server-chosen ids
        // are revoked at once, so they may use etcd's below-minimum TTL.
        const int64_t ttls[] = {60, 120, 300};
        if (Chance(12)) {
          DoLeaseGrant(0, Chance(50) ? 1 : 60);
        } else {
          DoLeaseGrant(kLeaseIds[Uniform(0, kLeaseIds.size() - 1)],
                       ttls[Uniform(0, 2)] * (Chance(90) ? 1 : 60));
        }
      } else if (pick < 88) {
        DoLeaseRevoke(Lease());
      } else if (pick < 92) {
        DoLeaseTimeToLive(Lease(), Chance(60));
      } else if (pick < 94) {
        DoLeaseLeases();
      } else {
        DoInvalid();
      }
    }
    WatchCheckpoint(/*from_start=*/true);
    // Whole keyspace at the end.
    RangeRequest all;
    all.set_key(std::string(1, '\0'));
    all.set_range_end(std::string(1, '\0'));
    DoRange(all);
    DoLeaseLeases();
  }

  TempDir tmp_;
  Node ref_;
  Node sut_;
  std::mt19937_64 rng_;
  uint64_t seed_ = 0;
  int64_t rev_ = 1;  // newest revision seen from the reference
  int op_index_ = 0;
  int diffs_ = 0;
  int sut_unreachable_ = 0;  // calls the server under test did not answer
  std::map<std::string, int> outcomes_;  // "<rpc> <OK or error message>" -> count
};

TEST_P(DifferentialTest, RandomOperationsMatchEtcd) {
  // Parameter 0 stands for a fresh random seed, drawn when the test runs
  // (CTest names tests by parameter at discovery time).
  const uint64_t seed = seed_ = GetParam() != 0 ? GetParam() : std::random_device{}();
  std::cout << "differential seed " << seed << " (replay: CPPETCD_DIFF_SEED=" << seed << ")\n";
  rng_.seed(seed);
  RunSequence(kOpsPerSeed);
  std::cout << "outcomes (etcd):\n";
  for (const auto& [k, n] : outcomes_) std::cout << "  " << n << "  " << k << "\n";
  EXPECT_EQ(diffs_, 0) << "seed " << seed << ": " << diffs_ << " differing responses";
  EXPECT_LT(sut_unreachable_, 3) << "the server under test stopped answering";
}

std::vector<uint64_t> Seeds() {
  if (const char* s = std::getenv("CPPETCD_DIFF_SEED"); s != nullptr && *s != '\0') {
    return {std::strtoull(s, nullptr, 10)};
  }
  return {1, 2, 3, 20240601, 0};
}

INSTANTIATE_TEST_SUITE_P(Seeds, DifferentialTest, ::testing::ValuesIn(Seeds()));

}  // namespace
}  // namespace cppetcd::integration
