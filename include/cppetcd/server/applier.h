// The applier: etcd 3.4's applierV3backend (etcdserver/apply.go) for KV and
// lease requests. It turns one committed InternalRaftRequest into changes of
// the mvcc store and the lessor inside the apply loop's backend write txn,
// and serves reads (Range, read-only Txn) off the apply loop.
//
// Semantics reproduced from etcd: Range's limit/more/count with sorting and
// revision filters, Put's prev_kv/ignore_value/ignore_lease, DeleteRange's
// prev_kvs, Txn compares (ranged, missing keys), nested txns at one revision
// with all checks before any write, LeaseRevoke deleting the lease's keys at
// one revision. Request shape checks are in validate.h (run by the api).
#ifndef CPPETCD_SERVER_APPLIER_H_
#define CPPETCD_SERVER_APPLIER_H_

#include <cstdint>
#include <future>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppetcd/lease/lessor.h"
#include "cppetcd/mvcc/kvstore.h"
#include "cppetcd/util/log.h"
#include "etcdserverpb/rpc.pb.h"
#include "serverpb/internal.pb.h"

namespace google::protobuf {
class Message;
}

namespace cppetcd::server {

// mvcc::LeaseObserver over the lessor: the store tells it which keys carry
// which lease (on put, delete and index rebuild). Pass it to Store::Open
// after Lessor::Recover. Thread-safe as the lessor.
class LessorLeaseObserver final : public mvcc::LeaseObserver {
 public:
  explicit LessorLeaseObserver(lease::Lessor* lessor) : lessor_(lessor) {}
  void Attach(std::string_view key, int64_t lease) override { lessor_->Attach(lease, key); }
  void Detach(std::string_view key, int64_t lease) override { lessor_->Detach(lease, key); }

 private:
  lease::Lessor* lessor_;
};

// A Range answer in protobuf wire form, header apart: what
// Applier::RangeEncoded gives and the gRPC layer sends without parsing.
struct EncodedRange {
  // The header as Range's (revision set; the server fills the rest).
  etcdserverpb::ResponseHeader header;
  // RangeResponse's other fields (kvs, more, count) in wire form: the
  // serialized header followed by body is the serialized RangeResponse.
  std::string body;
};

struct ApplierOptions {
  util::Logger logger{"apply"};
};

// The outcome of applying one request.
struct ApplyResult {
  using Response =
      std::variant<std::monostate, etcdserverpb::RangeResponse, etcdserverpb::PutResponse,
                   etcdserverpb::DeleteRangeResponse, etcdserverpb::TxnResponse,
                   etcdserverpb::CompactionResponse, etcdserverpb::LeaseGrantResponse,
                   etcdserverpb::LeaseRevokeResponse, etcdserverpb::LeaseCheckpointResponse>;
  // The response (meaningful when error is OK). header.revision is set as
  // etcd sets it (the store revision after the request); the server fills
  // cluster_id, member_id and raft_term.
  Response response;
  // The request's error (then nothing was written): lease::ErrLeaseNotFound,
  // lease::ErrLeaseExists, lease::ErrLeaseTTLTooLarge, ErrKeyNotFound
  // (validate.h), mvcc::ErrCompacted / ErrFutureRev, or a backend error
  // (fatal for the apply loop: the write txn may hold partial changes).
  absl::Status error;
  // Compaction only: completes when the compaction is physically done.
  std::optional<std::shared_future<absl::Status>> compaction_done;
  // The request is none of those the applier handles (member attributes,
  // alarms, auth...): the server applies it itself.
  bool unhandled = false;

  // The response message, or nullptr for monostate (to fill the header).
  google::protobuf::Message* message();
};

class Applier {
 public:
  // `store` and `lessor` must outlive the applier.
  Applier(mvcc::Store* store, lease::Lessor* lessor, ApplierOptions options = {});

  // Applies a committed request (range, put, delete_range, txn, compaction,
  // lease_grant, lease_revoke or lease_checkpoint) within the apply loop's
  // write txn `btx`;
  // the caller commits btx and calls Store::OnCommit. A failed request
  // writes nothing. Apply loop only.
  ApplyResult Apply(storage::WriteTxn* btx, const serverpb::InternalRaftRequest& r);

  // etcd v3 API Range on the published store: revision (0 = current), limit
  // with more, count (every key of the range at that revision, whatever the
  // limit and the revision filters), sort_order/sort_target (sorting or
  // min/max filters fetch the whole range, filter, sort, then truncate),
  // keys_only, count_only. Errors: mvcc::ErrCompacted, mvcc::ErrFutureRev.
  // Any thread.
  absl::StatusOr<etcdserverpb::RangeResponse> Range(const etcdserverpb::RangeRequest& r) const;

  // Range's answer in wire form, the same bytes as Range's response
  // serialized. Without sorting, revision filters or keys_only (a plain
  // LIST), the store's records are copied once into body with no parsed
  // copy; otherwise Range's response is serialized. `size_hint`: the
  // expected body size in bytes (EstimateRangeBytes), reserved up front.
  // Errors as Range. Any thread.
  absl::StatusOr<EncodedRange> RangeEncoded(const etcdserverpb::RangeRequest& r,
                                            uint64_t size_hint = 0) const;

  // An estimate, in bytes, of the serialized size of Range's answer to `r`,
  // from the key index and the stored record sizes (no parse, no copy):
  // exact for a plain LIST at an unchanged store, an upper bound with
  // keys_only, sorting or filters (every record of the range counted), a
  // small constant for count_only. Errors as Range. Any thread.
  absl::StatusOr<uint64_t> EstimateRangeBytes(const etcdserverpb::RangeRequest& r) const;

  // A txn whose success and failure ops are all ranges (nested txns are not
  // read-only, as etcd's isTxnReadonly), evaluated at one published revision
  // (compares and ranges with revision 0 read at it; header revisions are
  // it). InvalidArgument when the txn writes. Any thread.
  absl::StatusOr<etcdserverpb::TxnResponse> ReadOnlyTxn(const etcdserverpb::TxnRequest& r) const;

  // etcd isTxnReadonly: every success and failure op is a range.
  static bool IsTxnReadOnly(const etcdserverpb::TxnRequest& r);

 private:
  ApplyResult ApplyPut(storage::WriteTxn* btx, const etcdserverpb::PutRequest& r);
  ApplyResult ApplyDeleteRange(storage::WriteTxn* btx, const etcdserverpb::DeleteRangeRequest& r);
  ApplyResult ApplyTxn(storage::WriteTxn* btx, const etcdserverpb::TxnRequest& r);
  ApplyResult ApplyCompaction(storage::WriteTxn* btx, const etcdserverpb::CompactionRequest& r);
  ApplyResult ApplyLeaseGrant(storage::WriteTxn* btx, const etcdserverpb::LeaseGrantRequest& r);
  ApplyResult ApplyLeaseRevoke(storage::WriteTxn* btx, const etcdserverpb::LeaseRevokeRequest& r);
  // etcd applierV3backend.LeaseCheckpoint: each checkpoint in order; those of
  // unknown leases are no-ops, so only a backend fault fails it.
  ApplyResult ApplyLeaseCheckpoint(storage::WriteTxn* btx,
                                   const etcdserverpb::LeaseCheckpointRequest& r);
  // The store revision including changes not yet published (apply loop).
  int64_t CurrentRev(storage::WriteTxn* btx);

  mvcc::Store* store_;
  lease::Lessor* lessor_;
  ApplierOptions options_;
};

}  // namespace cppetcd::server

#endif  // CPPETCD_SERVER_APPLIER_H_
