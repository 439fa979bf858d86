#include "cppetcd/server/validate.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "cppetcd/lease/lessor.h"
#include "cppetcd/util/error.h"

namespace cppetcd::server {
namespace {

using etcdserverpb::RequestOp;
using etcdserverpb::TxnRequest;

RequestOp PutOp(std::string key) {
  RequestOp op;
  op.mutable_request_put()->set_key(std::move(key));
  return op;
}
RequestOp DelOp(std::string key, std::string end = "") {
  RequestOp op;
  op.mutable_request_delete_range()->set_key(std::move(key));
  op.mutable_request_delete_range()->set_range_end(std::move(end));
  return op;
}
RequestOp RangeOp(std::string key) {
  RequestOp op;
  op.mutable_request_range()->set_key(std::move(key));
  return op;
}
RequestOp TxnOp(std::vector<RequestOp> success, std::vector<RequestOp> failure = {}) {
  RequestOp op;
  for (auto& o : success) *op.mutable_request_txn()->add_success() = std::move(o);
  for (auto& o : failure) *op.mutable_request_txn()->add_failure() = std::move(o);
  return op;
}
TxnRequest Txn(std::vector<RequestOp> success, std::vector<RequestOp> failure = {}) {
  TxnRequest t;
  for (auto& o : success) *t.add_success() = std::move(o);
  for (auto& o : failure) *t.add_failure() = std::move(o);
  return t;
}

TEST(ValidateTest, Messages) {
  EXPECT_EQ(ErrEmptyKey().message(), "etcdserver: key is not provided");
  EXPECT_EQ(ErrKeyNotFound().message(), "etcdserver: key not found");
  EXPECT_EQ(ErrValueProvided().message(), "etcdserver: value is provided");
  EXPECT_EQ(ErrLeaseProvided().message(), "etcdserver: lease is provided");
  EXPECT_EQ(ErrTooManyOps().message(), "etcdserver: too many operations in txn request");
  EXPECT_EQ(ErrDuplicateKey().message(), "etcdserver: duplicate key given in txn request");
  for (auto s : {ErrEmptyKey(), ErrKeyNotFound(), ErrValueProvided(), ErrLeaseProvided(),
                 ErrTooManyOps(), ErrDuplicateKey()}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(util::ErrorCodeOf(s), util::ErrorCode::kNone) << s;
  }
  // The text alone is not the error.
  EXPECT_FALSE(IsKeyNotFound(absl::InvalidArgumentError("etcdserver: key not found")));
  EXPECT_TRUE(IsDuplicateKey(ErrDuplicateKey()));
  EXPECT_FALSE(IsDuplicateKey(ErrTooManyOps()));
}

TEST(ValidateTest, SingleRequests) {
  etcdserverpb::RangeRequest rr;
  EXPECT_TRUE(IsEmptyKey(ValidateRange(rr)));
  rr.set_key("a");
  EXPECT_TRUE(ValidateRange(rr).ok());

  etcdserverpb::DeleteRangeRequest dr;
  EXPECT_TRUE(IsEmptyKey(ValidateDeleteRange(dr)));
  dr.set_key("a");
  EXPECT_TRUE(ValidateDeleteRange(dr).ok());

  etcdserverpb::PutRequest p;
  p.set_value("v");
  EXPECT_TRUE(IsEmptyKey(ValidatePut(p)));
  p.set_key("k");
  EXPECT_TRUE(ValidatePut(p).ok());
  p.set_ignore_value(true);
  EXPECT_TRUE(IsValueProvided(ValidatePut(p)));
  p.clear_value();
  EXPECT_TRUE(ValidatePut(p).ok());
  p.set_ignore_lease(true);
  p.set_lease(5);
  EXPECT_TRUE(IsLeaseProvided(ValidatePut(p)));
  p.set_lease(0);
  EXPECT_TRUE(ValidatePut(p).ok());
}

TEST(ValidateTest, TooManyOps) {
  TxnRequest t;
  for (int i = 0; i < 4; ++i) *t.add_success() = PutOp("k" + std::to_string(i));
  EXPECT_TRUE(ValidateTxn(t, 4).ok());
  EXPECT_TRUE(IsTooManyOps(ValidateTxn(t, 3)));
  // The bound is the largest of compares, success and failure, not the sum.
  for (int i = 0; i < 4; ++i) {
    auto* c = t.add_compare();
    c->set_key("c");
    *t.add_failure() = RangeOp("r");
  }
  EXPECT_TRUE(ValidateTxn(t, 4).ok());
  // Nested txns get what is left: 4 - 4 = 0 here.
  *t.mutable_success(0) = TxnOp({PutOp("x")});
  EXPECT_TRUE(IsTooManyOps(ValidateTxn(t, 4)));
  EXPECT_TRUE(ValidateTxn(t, 5).ok());
  EXPECT_TRUE(ValidateTxn(Txn(std::vector<RequestOp>(128, RangeOp("a")))).ok());
  EXPECT_TRUE(IsTooManyOps(ValidateTxn(Txn(std::vector<RequestOp>(129, RangeOp("a"))))));
}

TEST(ValidateTest, TxnShape) {
  TxnRequest t = Txn({PutOp("a")});
  t.add_compare();  // no key
  EXPECT_TRUE(IsEmptyKey(ValidateTxn(t)));
  EXPECT_TRUE(IsEmptyKey(ValidateTxn(Txn({PutOp("")}))));
  EXPECT_TRUE(IsEmptyKey(ValidateTxn(Txn({}, {RangeOp("")}))));
  EXPECT_TRUE(IsEmptyKey(ValidateTxn(Txn({TxnOp({DelOp("")})}))));
  EXPECT_TRUE(IsKeyNotFound(ValidateTxn(Txn({RequestOp()}))));
  EXPECT_TRUE(ValidateTxn(Txn({})).ok());
}

struct DupCase {
  const char* name;
  TxnRequest txn;
  bool duplicate;
};

TEST(ValidateTest, DuplicateKeys) {
  const std::vector<DupCase> cases = {
      {"distinct puts", Txn({PutOp("a"), PutOp("b")}), false},
      {"same put twice", Txn({PutOp("a"), PutOp("a")}), true},
      {"same put in failure", Txn({}, {PutOp("a"), PutOp("a")}), true},
      {"success and failure may share", Txn({PutOp("a")}, {PutOp("a")}), false},
      {"put and delete of a key", Txn({DelOp("a"), PutOp("a")}), true},
      {"put before delete of a key", Txn({PutOp("a"), DelOp("a")}), true},
      {"put inside a deleted range", Txn({DelOp("a", "c"), PutOp("b")}), true},
      {"put at the range end", Txn({DelOp("a", "c"), PutOp("c")}), false},
      {"put at the range start", Txn({DelOp("a", "c"), PutOp("a")}), true},
      // "\0" (from key) sorts before the key: etcd's interval is empty.
      {"from-key delete is not checked", Txn({DelOp("a", std::string(1, '\0')), PutOp("b")}),
       false},
      {"overlapping deletes are fine", Txn({DelOp("a", "c"), DelOp("b", "d")}), false},
      {"same delete twice is fine", Txn({DelOp("a"), DelOp("a")}), false},
      {"ranges never conflict", Txn({RangeOp("a"), PutOp("a"), RangeOp("a")}), false},
      {"nested put vs outer put", Txn({PutOp("a"), TxnOp({PutOp("a")})}), true},
      {"nested put vs outer delete", Txn({DelOp("a", "z"), TxnOp({PutOp("b")})}), true},
      {"nested delete vs outer put", Txn({PutOp("b"), TxnOp({DelOp("a", "z")})}), true},
      {"nested then and else share a key", Txn({TxnOp({PutOp("a")}, {PutOp("a")})}), false},
      {"two nested txns put one key", Txn({TxnOp({PutOp("a")}), TxnOp({PutOp("a")})}), true},
      {"two nested txns, else branch", Txn({TxnOp({PutOp("a")}), TxnOp({}, {PutOp("a")})}),
       true},
      {"dup inside a nested branch", Txn({TxnOp({PutOp("a"), PutOp("a")})}), true},
      // Deletes of earlier nested txns count for later ones, not the reverse
      // (etcd's order of accumulation).
      {"nested delete then nested put", Txn({TxnOp({DelOp("a", "c")}), TxnOp({PutOp("b")})}),
       true},
      {"nested put then nested delete", Txn({TxnOp({PutOp("b")}), TxnOp({DelOp("a", "c")})}),
       false},
      {"deep nesting", Txn({PutOp("k"), TxnOp({TxnOp({TxnOp({PutOp("k")})})})}), true},
      {"dup in failure only", Txn({PutOp("a")}, {PutOp("b"), DelOp("b")}), true},
  };
  for (const auto& c : cases) {
    absl::Status s = ValidateTxn(c.txn);
    if (c.duplicate) {
      EXPECT_TRUE(IsDuplicateKey(s)) << c.name << ": " << s;
    } else {
      EXPECT_TRUE(s.ok()) << c.name << ": " << s;
    }
  }
}


// The door checks of single requests, against etcd (3.4, and 3.5 for the
// sort options): what is refused and with which error, and what passes to
// be answered by the read or the applier.
TEST(ValidateTest, DoorChecksTable) {
  using etcdserverpb::RangeRequest;
  struct Case {
    const char* name;
    std::function<void(RangeRequest*)> shape;
    std::function<bool(const absl::Status&)> expect;
  };
  auto ok = [](const absl::Status& s) { return s.ok(); };
  const std::vector<Case> cases = {
      {"plain key", [](RangeRequest*) {}, ok},
      {"empty key", [](RangeRequest* r) { r->clear_key(); }, IsEmptyKey},
      {"range end before key", [](RangeRequest* r) { r->set_range_end("0"); }, ok},
      {"negative revision", [](RangeRequest* r) { r->set_revision(-5); }, ok},
      {"huge revision", [](RangeRequest* r) { r->set_revision(INT64_MAX); }, ok},
      {"negative limit", [](RangeRequest* r) { r->set_limit(-3); }, ok},
      {"huge limit", [](RangeRequest* r) { r->set_limit(INT64_MAX); }, ok},
      {"negative min mod revision", [](RangeRequest* r) { r->set_min_mod_revision(-1); }, ok},
      {"descend by value",
       [](RangeRequest* r) {
         r->set_sort_order(RangeRequest::DESCEND);
         r->set_sort_target(RangeRequest::VALUE);
       },
       ok},
      {"unknown sort order",
       [](RangeRequest* r) { r->set_sort_order(static_cast<RangeRequest::SortOrder>(99)); },
       IsInvalidSortOption},
      {"negative sort order",
       [](RangeRequest* r) { r->set_sort_order(static_cast<RangeRequest::SortOrder>(-1)); },
       IsInvalidSortOption},
      {"unknown sort target",
       [](RangeRequest* r) { r->set_sort_target(static_cast<RangeRequest::SortTarget>(5)); },
       IsInvalidSortOption},
      {"unknown sort target, ascending",
       [](RangeRequest* r) {
         r->set_sort_order(RangeRequest::ASCEND);
         r->set_sort_target(static_cast<RangeRequest::SortTarget>(INT32_MAX));
       },
       IsInvalidSortOption},
  };
  for (const Case& c : cases) {
    RangeRequest r;
    r.set_key("a");
    c.shape(&r);
    absl::Status s = ValidateRange(r);
    EXPECT_TRUE(c.expect(s)) << c.name << ": " << s;
    // The same request inside a txn (either branch) gets the same answer.
    RequestOp op;
    *op.mutable_request_range() = r;
    absl::Status in_txn = ValidateTxn(Txn({}, {op}));
    EXPECT_EQ(in_txn, s) << c.name;
  }
  EXPECT_EQ(ErrInvalidSortOption().message(), "etcdserver: invalid sort option");
  EXPECT_EQ(ErrInvalidSortOption().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ValidateTest, LeaseGrantTable) {
  struct Case {
    int64_t id;
    int64_t ttl;
    bool too_large;
  };
  const std::vector<Case> cases = {
      {0, 10, false},
      {5, lease::kMaxLeaseTtlSeconds, false},      // etcd grants 9e9 s
      {5, lease::kMaxLeaseTtlSeconds + 1, true},   // "too large lease TTL"
      {0, INT64_MAX, true},
      {-7, -10, false},  // negative TTL: raised to the minimum at apply
      {INT64_MIN, 0, false},
      {INT64_MAX, INT64_MIN, false},
  };
  for (const Case& c : cases) {
    etcdserverpb::LeaseGrantRequest r;
    r.set_id(c.id);
    r.set_ttl(c.ttl);
    absl::Status s = ValidateLeaseGrant(r);
    if (c.too_large) {
      EXPECT_TRUE(lease::IsLeaseTTLTooLarge(s)) << c.id << " " << c.ttl << ": " << s;
    } else {
      EXPECT_TRUE(s.ok()) << c.id << " " << c.ttl << ": " << s;
    }
  }
  static_assert(lease::kMaxLeaseTtlSeconds <= INT64_MAX / 1000, "TTL in ms fits in int64");
}

// proto3 enums are open: compares with targets and results outside their
// enums pass the door, as in etcd 3.4 (the applier evaluates them).
TEST(ValidateTest, UnknownCompareEnumsPass) {
  TxnRequest t = Txn({PutOp("a")});
  auto* c = t.add_compare();
  c->set_key("a");
  c->set_target(static_cast<etcdserverpb::Compare::CompareTarget>(9));
  c->set_result(static_cast<etcdserverpb::Compare::CompareResult>(-4));
  EXPECT_TRUE(ValidateTxn(t).ok());
}

}  // namespace
}  // namespace cppetcd::server
