// Request checks the api layer runs before proposing a KV request: etcd 3.4's
// v3rpc checks (etcdserver/api/v3rpc/key.go) with the same errors. Every
// error is InvalidArgument with etcd's exact client-visible message and a
// typed code (the api maps it), and has a predicate.
//
// Thread-safety: pure functions.
#ifndef CPPETCD_SERVER_VALIDATE_H_
#define CPPETCD_SERVER_VALIDATE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "etcdserverpb/rpc.pb.h"

namespace cppetcd::server {

// etcd's --max-txn-ops default.
inline constexpr int64_t kDefaultMaxTxnOps = 128;

// The validation (and applier) errors: InvalidArgument, typed
// (util/error.h), with etcd's messages:
//   ErrEmptyKey          "etcdserver: key is not provided"
//   ErrKeyNotFound       "etcdserver: key not found" (empty txn op;
//                        ignore_value/ignore_lease on a missing key, raised
//                        by the applier)
//   ErrValueProvided     "etcdserver: value is provided" (ignore_value with a
//                        value)
//   ErrLeaseProvided     "etcdserver: lease is provided" (ignore_lease with a
//                        lease)
//   ErrTooManyOps        "etcdserver: too many operations in txn request"
//   ErrDuplicateKey      "etcdserver: duplicate key given in txn request"
//   ErrInvalidSortOption "etcdserver: invalid sort option" (sort order or
//                        target outside its enum; etcd 3.5's check)
absl::Status ErrEmptyKey();
absl::Status ErrKeyNotFound();
absl::Status ErrValueProvided();
absl::Status ErrLeaseProvided();
absl::Status ErrTooManyOps();
absl::Status ErrDuplicateKey();
absl::Status ErrInvalidSortOption();
bool IsEmptyKey(const absl::Status& s);
bool IsKeyNotFound(const absl::Status& s);
bool IsValueProvided(const absl::Status& s);
bool IsLeaseProvided(const absl::Status& s);
bool IsTooManyOps(const absl::Status& s);
bool IsDuplicateKey(const absl::Status& s);
bool IsInvalidSortOption(const absl::Status& s);

// etcd checkRangeRequest / checkDeleteRequest: key must be non-empty. A
// Range's sort_order and sort_target must be values of their enums
// (ErrInvalidSortOption). Everything else is served as etcd serves it: a
// range_end before the key is an empty range, a revision <= 0 the current
// one, a future revision ErrFutureRev from the read, a negative limit none.
absl::Status ValidateRange(const etcdserverpb::RangeRequest& r);
// etcd lessor.Grant's TTL check, made before proposing: ttl_seconds above
// lease::kMaxLeaseTtlSeconds (9e9 s, so TTL x 1000 ms stays far inside
// int64) is lease::ErrLeaseTTLTooLarge ("too large lease TTL"). A TTL <= 0 is
// raised to the minimum TTL at apply; the ID may be any nonzero int64 (0:
// the server picks one), as in etcd.
absl::Status ValidateLeaseGrant(const etcdserverpb::LeaseGrantRequest& r);
absl::Status ValidateDeleteRange(const etcdserverpb::DeleteRangeRequest& r);
// etcd checkPutRequest: non-empty key; no value with ignore_value; no lease
// with ignore_lease.
absl::Status ValidatePut(const etcdserverpb::PutRequest& r);
// etcd checkTxnRequest + checkIntervals: the largest of (compares, success
// ops, failure ops) at most max_txn_ops, nested txns bounded by what is left;
// non-empty compare keys; each op valid (an op with no request:
// ErrKeyNotFound); then, per branch, no key put twice and no put inside a
// deleted range, across nested txns (a put in both the success and failure
// branches of one nested txn is allowed; overlapping deletes are allowed).
// A compare's target or result outside its enum passes, as in etcd 3.4: the
// applier compares such a target as equal and such a result as true.
absl::Status ValidateTxn(const etcdserverpb::TxnRequest& r,
                         int64_t max_txn_ops = kDefaultMaxTxnOps);

}  // namespace cppetcd::server

#endif  // CPPETCD_SERVER_VALIDATE_H_
