#include "cppetcd/server/validate.h"

#include <algorithm>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cppetcd/lease/lessor.h"
#include "cppetcd/util/error.h"

namespace cppetcd::server {
namespace {

using util::ErrorCode;

absl::Status Invalid(ErrorCode error, std::string_view message) {
  return util::MakeError(absl::StatusCode::kInvalidArgument, error, message);
}

// A deleted key range as etcd's interval check sees it: [begin, end) where an
// empty end is +infinity and a single-key delete is [key, key + "\0").
// A range_end that sorts before the key (e.g. "\0", "from key") is an empty
// interval there, so it never conflicts with a put: kept as etcd does.
struct DelInterval {
  std::string begin;
  std::string end;
  bool single = false;  // [begin, begin + "\0")
  bool Contains(std::string_view k) const {
    if (single) return k == begin;
    return begin <= k && (end.empty() || k < end);
  }
};

struct Intervals {
  std::set<std::string, std::less<>> puts;
  std::vector<DelInterval> dels;
  bool Deleted(std::string_view k) const {
    return std::any_of(dels.begin(), dels.end(), [&](const DelInterval& d) { return d.Contains(k); });
  }
};

// Puts and deletes of one branch (ops), including nested txns. A put may not
// repeat a key put earlier in the branch nor fall inside a deleted range.
absl::Status CheckIntervals(const google::protobuf::RepeatedPtrField<etcdserverpb::RequestOp>& ops,
                            Intervals* out) {
  Intervals here;
  for (const auto& op : ops) {
    if (!op.has_request_delete_range()) continue;
    const auto& d = op.request_delete_range();
    if (d.range_end().empty()) {
      here.dels.push_back(DelInterval{d.key(), "", true});
    } else {
      here.dels.push_back(DelInterval{d.key(), d.range_end(), false});
    }
  }
  for (const auto& op : ops) {
    if (!op.has_request_txn()) continue;
    Intervals then_branch, else_branch;
    if (auto s = CheckIntervals(op.request_txn().success(), &then_branch); !s.ok()) return s;
    if (auto s = CheckIntervals(op.request_txn().failure(), &else_branch); !s.ok()) return s;
    for (const auto& k : then_branch.puts) {
      if (here.puts.contains(k) || here.Deleted(k)) return ErrDuplicateKey();
      here.puts.insert(k);
    }
    for (const auto& k : else_branch.puts) {
      // Only one of the nested txn's branches runs: the same key in both is fine.
      if (here.puts.contains(k) && !then_branch.puts.contains(k)) return ErrDuplicateKey();
      if (here.Deleted(k)) return ErrDuplicateKey();
      here.puts.insert(k);
    }
    for (auto& d : then_branch.dels) here.dels.push_back(std::move(d));
    for (auto& d : else_branch.dels) here.dels.push_back(std::move(d));
  }
  for (const auto& op : ops) {
    if (!op.has_request_put()) continue;
    const std::string& k = op.request_put().key();
    if (here.puts.contains(k) || here.Deleted(k)) return ErrDuplicateKey();
    here.puts.insert(k);
  }
  *out = std::move(here);
  return absl::OkStatus();
}

absl::Status CheckTxn(const etcdserverpb::TxnRequest& r, int64_t max_txn_ops);

absl::Status CheckOp(const etcdserverpb::RequestOp& op, int64_t max_txn_ops) {
  switch (op.request_case()) {
    case etcdserverpb::RequestOp::kRequestRange:
      return ValidateRange(op.request_range());
    case etcdserverpb::RequestOp::kRequestPut:
      return ValidatePut(op.request_put());
    case etcdserverpb::RequestOp::kRequestDeleteRange:
      return ValidateDeleteRange(op.request_delete_range());
    case etcdserverpb::RequestOp::kRequestTxn:
      return CheckTxn(op.request_txn(), max_txn_ops);
    default:
      return ErrKeyNotFound();  // an op with no request (etcd answers so)
  }
}

absl::Status CheckTxn(const etcdserverpb::TxnRequest& r, int64_t max_txn_ops) {
  const int64_t opc = std::max<int64_t>(
      {r.compare_size(), r.success_size(), r.failure_size()});
  if (opc > max_txn_ops) return ErrTooManyOps();
  for (const auto& c : r.compare()) {
    if (c.key().empty()) return ErrEmptyKey();
  }
  for (const auto& op : r.success()) {
    if (auto s = CheckOp(op, max_txn_ops - opc); !s.ok()) return s;
  }
  for (const auto& op : r.failure()) {
    if (auto s = CheckOp(op, max_txn_ops - opc); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ErrEmptyKey() {
  return Invalid(ErrorCode::kEmptyKey, "etcdserver: key is not provided");
}
absl::Status ErrKeyNotFound() {
  return Invalid(ErrorCode::kKeyNotFound, "etcdserver: key not found");
}
absl::Status ErrValueProvided() {
  return Invalid(ErrorCode::kValueProvided, "etcdserver: value is provided");
}
absl::Status ErrLeaseProvided() {
  return Invalid(ErrorCode::kLeaseProvided, "etcdserver: lease is provided");
}
absl::Status ErrTooManyOps() {
  return Invalid(ErrorCode::kTooManyOps, "etcdserver: too many operations in txn request");
}
absl::Status ErrDuplicateKey() {
  return Invalid(ErrorCode::kDuplicateKey, "etcdserver: duplicate key given in txn request");
}
absl::Status ErrInvalidSortOption() {
  return Invalid(ErrorCode::kInvalidSortOption, "etcdserver: invalid sort option");
}
bool IsEmptyKey(const absl::Status& s) { return util::HasErrorCode(s, ErrorCode::kEmptyKey); }
bool IsKeyNotFound(const absl::Status& s) {
  return util::HasErrorCode(s, ErrorCode::kKeyNotFound);
}
bool IsValueProvided(const absl::Status& s) {
  return util::HasErrorCode(s, ErrorCode::kValueProvided);
}
bool IsLeaseProvided(const absl::Status& s) {
  return util::HasErrorCode(s, ErrorCode::kLeaseProvided);
}
bool IsTooManyOps(const absl::Status& s) { return util::HasErrorCode(s, ErrorCode::kTooManyOps); }
bool IsDuplicateKey(const absl::Status& s) {
  return util::HasErrorCode(s, ErrorCode::kDuplicateKey);
}
bool IsInvalidSortOption(const absl::Status& s) {
  return util::HasErrorCode(s, ErrorCode::kInvalidSortOption);
}

absl::Status ValidateRange(const etcdserverpb::RangeRequest& r) {
  if (r.key().empty()) return ErrEmptyKey();
  // proto3 enums are open: a value outside the enum arrives as is. etcd 3.4
  // sorts nothing for an unknown order and panics on an unknown target (in
  // apply, for a txn); etcd 3.5 refuses both here, and so do we.
  if (!etcdserverpb::RangeRequest::SortOrder_IsValid(r.sort_order()) ||
      !etcdserverpb::RangeRequest::SortTarget_IsValid(r.sort_target())) {
    return ErrInvalidSortOption();
  }
  return absl::OkStatus();
}

absl::Status ValidateLeaseGrant(const etcdserverpb::LeaseGrantRequest& r) {
  if (r.ttl() > lease::kMaxLeaseTtlSeconds) return lease::ErrLeaseTTLTooLarge();
  return absl::OkStatus();
}

absl::Status ValidateDeleteRange(const etcdserverpb::DeleteRangeRequest& r) {
  if (r.key().empty()) return ErrEmptyKey();
  return absl::OkStatus();
}

absl::Status ValidatePut(const etcdserverpb::PutRequest& r) {
  if (r.key().empty()) return ErrEmptyKey();
  if (r.ignore_value() && !r.value().empty()) return ErrValueProvided();
  if (r.ignore_lease() && r.lease() != 0) return ErrLeaseProvided();
  return absl::OkStatus();
}

absl::Status ValidateTxn(const etcdserverpb::TxnRequest& r, int64_t max_txn_ops) {
  if (auto s = CheckTxn(r, max_txn_ops); !s.ok()) return s;
  // After the shape checks, so that the overlap search never runs on an
  // oversized request.
  Intervals ignored;
  if (auto s = CheckIntervals(r.success(), &ignored); !s.ok()) return s;
  return CheckIntervals(r.failure(), &ignored);
}

}  // namespace cppetcd::server
