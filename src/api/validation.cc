#include "src/api/validation.h"

namespace cppetcd::api {
namespace {

absl::Status EmptyKey() { return absl::InvalidArgumentError("etcdserver: key is not provided"); }

}  // namespace

// Interim checks until server/validate.h lands: the single-request checks
// only (the duplicate-key interval check comes with validate.h).
absl::Status ValidateRange(const etcdserverpb::RangeRequest& req) {
  return req.key().empty() ? EmptyKey() : absl::OkStatus();
}

absl::Status ValidatePut(const etcdserverpb::PutRequest& req) {
  if (req.key().empty()) return EmptyKey();
  if (req.ignore_value() && !req.value().empty()) {
    return absl::InvalidArgumentError("etcdserver: value is provided");
  }
  if (req.ignore_lease() && req.lease() != 0) {
    return absl::InvalidArgumentError("etcdserver: lease is provided");
  }
  return absl::OkStatus();
}

absl::Status ValidateDeleteRange(const etcdserverpb::DeleteRangeRequest& req) {
  return req.key().empty() ? EmptyKey() : absl::OkStatus();
}

absl::Status ValidateTxn(const etcdserverpb::TxnRequest& req, uint32_t max_txn_ops) {
  size_t ops = std::max({req.compare_size(), req.success_size(), req.failure_size()});
  if (ops > max_txn_ops) {
    return absl::InvalidArgumentError("etcdserver: too many operations in txn request");
  }
  for (const auto& c : req.compare()) {
    if (c.key().empty()) return EmptyKey();
  }
  return absl::OkStatus();
}

}  // namespace cppetcd::api
