#include "cppetcd/server/applier.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "google/protobuf/io/coded_stream.h"
#include "cppetcd/mvcc/txn_metrics.h"
#include "cppetcd/server/validate.h"

namespace cppetcd::server {
namespace {

using etcdserverpb::Compare;
using etcdserverpb::RangeRequest;
using etcdserverpb::RangeResponse;
using etcdserverpb::RequestOp;
using etcdserverpb::TxnRequest;
using etcdserverpb::TxnResponse;
using mvccpb::KeyValue;

// A read of the store: the published store, or a write txn's view.
using ReadFn = std::function<absl::StatusOr<mvcc::RangeResult>(
    std::string_view key, std::string_view end, mvcc::RangeOptions options)>;

// etcd applierV3backend.Range over `read`. pinned_rev > 0: the read view's
// revision (read-only txn): revision 0 reads there, later ones are future
// revisions, and the header revision is pinned_rev.
absl::StatusOr<RangeResponse> RangeWith(const ReadFn& read, const RangeRequest& r,
                                        int64_t pinned_rev) {
  const bool filtered = r.min_mod_revision() != 0 || r.max_mod_revision() != 0 ||
                        r.min_create_revision() != 0 || r.max_create_revision() != 0;
  int64_t limit = std::max<int64_t>(r.limit(), 0);
  // Sorting or filtering needs the whole range before truncating. Like etcd,
  // only an explicit sort order counts here: a non-KEY sort_target with order
  // NONE sorts (ascending) just the limit + 1 keys fetched in key order.
  if (r.sort_order() != RangeRequest::NONE || filtered) limit = 0;
  // One extra to tell whether there are more (INT64_MAX has no room for it
  // and needs none).
  if (limit > 0 && limit < std::numeric_limits<int64_t>::max()) ++limit;

  mvcc::RangeOptions opts;
  opts.limit = limit;
  opts.rev = r.revision() > 0 ? r.revision() : pinned_rev;
  opts.count_only = r.count_only();
  if (pinned_rev > 0 && r.revision() > pinned_rev) return mvcc::ErrFutureRev();
  absl::StatusOr<mvcc::RangeResult> rr = read(r.key(), r.range_end(), opts);
  if (!rr.ok()) return rr.status();
  std::vector<KeyValue>& kvs = rr->kvs;

  auto prune = [&kvs](auto&& drop) {
    kvs.erase(std::remove_if(kvs.begin(), kvs.end(), drop), kvs.end());
  };
  if (r.max_mod_revision() != 0) {
    prune([&](const KeyValue& kv) { return kv.mod_revision() > r.max_mod_revision(); });
  }
  if (r.min_mod_revision() != 0) {
    prune([&](const KeyValue& kv) { return kv.mod_revision() < r.min_mod_revision(); });
  }
  if (r.max_create_revision() != 0) {
    prune([&](const KeyValue& kv) { return kv.create_revision() > r.max_create_revision(); });
  }
  if (r.min_create_revision() != 0) {
    prune([&](const KeyValue& kv) { return kv.create_revision() < r.min_create_revision(); });
  }

  RangeRequest::SortOrder order = r.sort_order();
  // The store returns key order: ascending by key needs no sort, and any
  // other target with no order means ascending.
  if (r.sort_target() != RangeRequest::KEY && order == RangeRequest::NONE) {
    order = RangeRequest::ASCEND;
  }
  if (order == RangeRequest::ASCEND || order == RangeRequest::DESCEND) {
    std::function<bool(const KeyValue&, const KeyValue&)> less;
    switch (r.sort_target()) {
      case RangeRequest::VERSION:
        less = [](const KeyValue& a, const KeyValue& b) { return a.version() < b.version(); };
        break;
      case RangeRequest::CREATE:
        less = [](const KeyValue& a, const KeyValue& b) {
          return a.create_revision() < b.create_revision();
        };
        break;
      case RangeRequest::MOD:
        less = [](const KeyValue& a, const KeyValue& b) {
          return a.mod_revision() < b.mod_revision();
        };
        break;
      case RangeRequest::VALUE:
        less = [](const KeyValue& a, const KeyValue& b) { return a.value() < b.value(); };
        break;
      default:
        less = [](const KeyValue& a, const KeyValue& b) { return a.key() < b.key(); };
        break;
    }
    // Stable: equal elements stay in key order (what etcd's sort gives for
    // the small results it sorts by insertion).
    if (order == RangeRequest::ASCEND) {
      std::stable_sort(kvs.begin(), kvs.end(), less);
    } else {
      std::stable_sort(kvs.begin(), kvs.end(),
                       [&less](const KeyValue& a, const KeyValue& b) { return less(b, a); });
    }
  }

  RangeResponse resp;
  if (r.limit() > 0 && static_cast<int64_t>(kvs.size()) > r.limit()) {
    kvs.resize(static_cast<size_t>(r.limit()));
    resp.set_more(true);
  }
  resp.mutable_header()->set_revision(pinned_rev > 0 ? pinned_rev : rr->rev);
  resp.set_count(rr->count);
  resp.mutable_kvs()->Reserve(static_cast<int>(kvs.size()));
  for (KeyValue& kv : kvs) {
    if (r.keys_only()) kv.clear_value();
    *resp.add_kvs() = std::move(kv);
  }
  return resp;
}

int CompareInt(int64_t a, int64_t b) { return a < b ? -1 : (a > b ? 1 : 0); }

// etcd compareKV: a target value not given (or given for another target)
// compares as 0 / "".
bool CompareKV(const Compare& c, const KeyValue& kv) {
  int result = 0;
  switch (c.target()) {
    case Compare::VALUE: {
      const int cmp = kv.value().compare(c.value());
      result = cmp < 0 ? -1 : (cmp > 0 ? 1 : 0);
      break;
    }
    case Compare::CREATE:
      result = CompareInt(kv.create_revision(), c.create_revision());
      break;
    case Compare::MOD:
      result = CompareInt(kv.mod_revision(), c.mod_revision());
      break;
    case Compare::VERSION:
      result = CompareInt(kv.version(), c.version());
      break;
    case Compare::LEASE:
      result = CompareInt(kv.lease(), c.lease());
      break;
    default:
      break;
  }
  switch (c.result()) {
    case Compare::EQUAL:
      return result == 0;
    case Compare::NOT_EQUAL:
      return result != 0;
    case Compare::GREATER:
      return result > 0;
    case Compare::LESS:
      return result < 0;
    default:
      return true;
  }
}

// The compare results of a txn and of the nested txns on its chosen branch.
struct TxnPlan {
  bool succeeded = false;
  std::vector<TxnPlan> nested;  // one per txn op of the chosen branch, in order
};

const google::protobuf::RepeatedPtrField<RequestOp>& Branch(const TxnRequest& r,
                                                            const TxnPlan& plan) {
  return plan.succeeded ? r.success() : r.failure();
}

// Evaluates a txn over one read view and, for write txns, one mvcc::TxnWrite.
class TxnRunner {
 public:
  TxnRunner(ReadFn read, mvcc::TxnWrite* tw, lease::Lessor* lessor, int64_t pinned_rev)
      : read_(std::move(read)), tw_(tw), lessor_(lessor), pinned_rev_(pinned_rev) {}
  void set_first_rev(int64_t rev) { first_rev_ = rev; }
  // Where the ranges, puts and deletes run from now on are counted (etcd's
  // metricsTxnWrite); null: not counted.
  void set_counts(mvcc::TxnOpCounts* counts) { counts_ = counts; }

  // etcd compareToPath (run before any write).
  absl::StatusOr<TxnPlan> Plan(const TxnRequest& r) {
    TxnPlan plan;
    plan.succeeded = true;
    for (const Compare& c : r.compare()) {
      absl::StatusOr<bool> ok = ApplyCompare(c);
      if (!ok.ok()) return ok.status();
      if (!*ok) {
        plan.succeeded = false;
        break;
      }
    }
    for (const RequestOp& op : Branch(r, plan)) {
      if (!op.has_request_txn()) continue;
      absl::StatusOr<TxnPlan> sub = Plan(op.request_txn());
      if (!sub.ok()) return sub.status();
      plan.nested.push_back(std::move(*sub));
    }
    return plan;
  }

  // etcd checkRequestPut over the chosen ops: leases exist, keys of
  // ignore_value/ignore_lease puts exist (in the state before the txn).
  // Beyond etcd: such a put must also find its key after the txn's earlier
  // ops (a delete of it first fails the put in the middle of the txn, which
  // etcd's api refuses as a duplicate key and its apply panics on): checked
  // here too, so that a failing txn writes nothing.
  absl::Status CheckPuts(const TxnRequest& r, const TxnPlan& plan) {
    std::vector<Effect> effects;
    return CheckPutsIn(r, plan, &effects);
  }

  // etcd checkRequestRange: a range at a future or compacted revision fails
  // the whole txn before any write. Probed with a count-only read, which
  // gives exactly the store's own errors.
  absl::Status CheckRanges(const TxnRequest& r, const TxnPlan& plan) {
    size_t next = 0;
    for (const RequestOp& op : Branch(r, plan)) {
      if (op.has_request_txn()) {
        if (auto s = CheckRanges(op.request_txn(), plan.nested[next++]); !s.ok()) return s;
        continue;
      }
      if (!op.has_request_range() || op.request_range().revision() == 0) continue;
      const auto& rq = op.request_range();
      // etcd compares a negative revision with the read view's first
      // revision (the compact revision, -1 before any compaction) only.
      if (rq.revision() < 0) {
        if (rq.revision() < first_rev_) return mvcc::ErrCompacted();
        continue;
      }
      if (pinned_rev_ > 0 && rq.revision() > pinned_rev_) return mvcc::ErrFutureRev();
      mvcc::RangeOptions o;
      o.rev = rq.revision();
      o.count_only = true;
      absl::StatusOr<mvcc::RangeResult> rr = read_(rq.key(), rq.range_end(), o);
      if (!rr.ok()) return rr.status();
    }
    return absl::OkStatus();
  }

  // etcd applyTxn: runs the chosen ops in order, filling `resp`.
  absl::Status Run(const TxnRequest& r, const TxnPlan& plan, TxnResponse* resp) {
    resp->set_succeeded(plan.succeeded);
    size_t next = 0;
    for (const RequestOp& op : Branch(r, plan)) {
      etcdserverpb::ResponseOp* out = resp->add_responses();
      switch (op.request_case()) {
        case RequestOp::kRequestRange: {
          absl::StatusOr<RangeResponse> rr = RangeWith(
              [this](std::string_view k, std::string_view e, mvcc::RangeOptions o) {
                return CountedRead(k, e, o);
              },
              op.request_range(), pinned_rev_);
          if (!rr.ok()) return rr.status();
          *out->mutable_response_range() = std::move(*rr);
          break;
        }
        case RequestOp::kRequestPut: {
          absl::StatusOr<etcdserverpb::PutResponse> pr = Put(op.request_put());
          if (!pr.ok()) return pr.status();
          *out->mutable_response_put() = std::move(*pr);
          break;
        }
        case RequestOp::kRequestDeleteRange: {
          absl::StatusOr<etcdserverpb::DeleteRangeResponse> dr =
              DeleteRange(op.request_delete_range());
          if (!dr.ok()) return dr.status();
          *out->mutable_response_delete_range() = std::move(*dr);
          break;
        }
        case RequestOp::kRequestTxn: {
          TxnResponse* sub = out->mutable_response_txn();
          // Nested responses carry an empty header, as etcd's.
          sub->mutable_header();
          if (auto s = Run(op.request_txn(), plan.nested[next++], sub); !s.ok()) return s;
          break;
        }
        default:
          break;  // an empty op (rejected by validation): empty response
      }
    }
    return absl::OkStatus();
  }

  // etcd applierV3backend.Put within tw_; leases are checked by the caller.
  absl::StatusOr<etcdserverpb::PutResponse> Put(const etcdserverpb::PutRequest& p) {
    if (tw_ == nullptr) return absl::InvalidArgumentError("put in a read-only txn");
    etcdserverpb::PutResponse resp;
    std::string value = p.value();
    int64_t lease_id = p.lease();
    if (p.ignore_value() || p.ignore_lease() || p.prev_kv()) {
      if (counts_ != nullptr) ++counts_->ranges;
      absl::StatusOr<mvcc::RangeResult> rr = tw_->Range(p.key(), "", {});
      if (!rr.ok()) return rr.status();
      if ((p.ignore_value() || p.ignore_lease()) && rr->kvs.empty()) return ErrKeyNotFound();
      if (!rr->kvs.empty()) {
        if (p.ignore_value()) value = rr->kvs[0].value();
        if (p.ignore_lease()) lease_id = rr->kvs[0].lease();
        if (p.prev_kv()) *resp.mutable_prev_kv() = std::move(rr->kvs[0]);
      }
    }
    if (counts_ != nullptr) ++counts_->puts;
    tw_->Put(p.key(), value, lease_id);
    resp.mutable_header()->set_revision(tw_->Rev());
    return resp;
  }

  // etcd applierV3backend.DeleteRange within tw_.
  absl::StatusOr<etcdserverpb::DeleteRangeResponse> DeleteRange(
      const etcdserverpb::DeleteRangeRequest& d) {
    if (tw_ == nullptr) return absl::InvalidArgumentError("delete in a read-only txn");
    etcdserverpb::DeleteRangeResponse resp;
    if (d.prev_kv()) {
      if (counts_ != nullptr) ++counts_->ranges;
      absl::StatusOr<mvcc::RangeResult> rr = tw_->Range(d.key(), d.range_end(), {});
      if (!rr.ok()) return rr.status();
      for (KeyValue& kv : rr->kvs) *resp.add_prev_kvs() = std::move(kv);
    }
    if (counts_ != nullptr) ++counts_->deletes;
    resp.set_deleted(tw_->DeleteRange(d.key(), d.range_end()));
    resp.mutable_header()->set_revision(tw_->Rev());
    return resp;
  }

 private:
  // A read that etcd runs through its mvcc txn, so that it counts as a range
  // (CheckRanges' probes are not: etcd checks revisions without reading).
  absl::StatusOr<mvcc::RangeResult> CountedRead(std::string_view key, std::string_view end,
                                                mvcc::RangeOptions o) {
    if (counts_ != nullptr) ++counts_->ranges;
    return read_(key, end, o);
  }

  // etcd applyCompare: every key of the range must satisfy the compare; an
  // empty range compares as one missing key (all zero), except that a VALUE
  // compare on missing keys is false.
  absl::StatusOr<bool> ApplyCompare(const Compare& c) {
    mvcc::RangeOptions o;
    o.rev = pinned_rev_;
    absl::StatusOr<mvcc::RangeResult> rr = CountedRead(c.key(), c.range_end(), o);
    if (!rr.ok()) return rr.status();
    if (rr->kvs.empty()) {
      if (c.target() == Compare::VALUE) return false;
      return CompareKV(c, KeyValue());
    }
    for (const KeyValue& kv : rr->kvs) {
      if (!CompareKV(c, kv)) return false;
    }
    return true;
  }

  // A write of the txn so far, in op order: a put of `key` (end unset) or a
  // delete of the range [key, end) (end "" = key alone, "\0" = from key on).
  struct Effect {
    std::string_view key;
    std::optional<std::string_view> end;
  };

  static bool DeleteCovers(const Effect& d, std::string_view key) {
    if (d.end->empty()) return key == d.key;
    if (*d.end == std::string_view("\0", 1)) return key >= d.key;
    return key >= d.key && key < *d.end;
  }

  absl::Status CheckPutsIn(const TxnRequest& r, const TxnPlan& plan, std::vector<Effect>* effects) {
    size_t next = 0;
    for (const RequestOp& op : Branch(r, plan)) {
      if (op.has_request_txn()) {
        if (auto s = CheckPutsIn(op.request_txn(), plan.nested[next++], effects); !s.ok()) {
          return s;
        }
        continue;
      }
      if (op.has_request_delete_range()) {
        const auto& d = op.request_delete_range();
        effects->push_back({d.key(), std::string_view(d.range_end())});
        continue;
      }
      if (!op.has_request_put()) continue;
      const auto& p = op.request_put();
      if (p.ignore_value() || p.ignore_lease()) {
        mvcc::RangeOptions o;
        o.count_only = true;
        absl::StatusOr<mvcc::RangeResult> rr = CountedRead(p.key(), "", o);
        if (!rr.ok()) return rr.status();
        if (rr->count == 0) return ErrKeyNotFound();
        // The latest earlier write of the txn touching the key decides.
        for (auto it = effects->rbegin(); it != effects->rend(); ++it) {
          if (!it->end.has_value()) {
            if (it->key == p.key()) break;  // put again: it exists
          } else if (DeleteCovers(*it, p.key())) {
            return ErrKeyNotFound();
          }
        }
      }
      if (p.lease() != lease::kNoLease && !lessor_->Exists(p.lease())) {
        return lease::ErrLeaseNotFound();
      }
      effects->push_back({p.key(), std::nullopt});
    }
    return absl::OkStatus();
  }

  ReadFn read_;
  mvcc::TxnWrite* tw_;  // null: read-only
  lease::Lessor* lessor_;
  int64_t pinned_rev_;  // > 0: the read view's revision (read-only txn)
  int64_t first_rev_ = -1;  // etcd's FirstRev: the compact revision, -1 before any
  mvcc::TxnOpCounts* counts_ = nullptr;
};

ApplyResult Failed(absl::Status s) {
  ApplyResult r;
  r.error = std::move(s);
  return r;
}

}  // namespace

google::protobuf::Message* ApplyResult::message() {
  return std::visit(
      [](auto& m) -> google::protobuf::Message* {
        if constexpr (std::is_same_v<std::decay_t<decltype(m)>, std::monostate>) {
          return nullptr;
        } else {
          return &m;
        }
      },
      response);
}

Applier::Applier(mvcc::Store* store, lease::Lessor* lessor, ApplierOptions options)
    : store_(store), lessor_(lessor), options_(std::move(options)) {}

bool Applier::IsTxnReadOnly(const TxnRequest& r) {
  auto all_ranges = [](const auto& ops) {
    return std::all_of(ops.begin(), ops.end(),
                       [](const RequestOp& op) { return op.has_request_range(); });
  };
  return all_ranges(r.success()) && all_ranges(r.failure());
}

ApplyResult Applier::Apply(storage::WriteTxn* btx, const serverpb::InternalRaftRequest& r) {
  ApplyResult res;
  if (r.has_range()) {
    auto tw = store_->Write(btx);
    mvcc::TxnOpCounts counts;
    ReadFn read = [&tw, &counts](std::string_view k, std::string_view e, mvcc::RangeOptions o) {
      ++counts.ranges;
      return tw->Range(k, e, o);
    };
    absl::StatusOr<RangeResponse> rr = RangeWith(read, r.range(), 0);
    tw->End();
    mvcc::TxnMetrics::Global().Add(counts);
    if (!rr.ok()) return Failed(rr.status());
    res.response = std::move(*rr);
  } else if (r.has_put()) {
    res = ApplyPut(btx, r.put());
  } else if (r.has_delete_range()) {
    res = ApplyDeleteRange(btx, r.delete_range());
  } else if (r.has_txn()) {
    res = ApplyTxn(btx, r.txn());
  } else if (r.has_compaction()) {
    res = ApplyCompaction(btx, r.compaction());
  } else if (r.has_lease_grant()) {
    res = ApplyLeaseGrant(btx, r.lease_grant());
  } else if (r.has_lease_revoke()) {
    res = ApplyLeaseRevoke(btx, r.lease_revoke());
  } else if (r.has_lease_checkpoint()) {
    res = ApplyLeaseCheckpoint(btx, r.lease_checkpoint());
  } else {
    res.unhandled = true;
  }
  if (!res.error.ok()) {
    options_.logger.Debug("failed to apply request",
                          {{"request-id", r.header().id()}, {"error", res.error.ToString()}});
  }
  return res;
}

ApplyResult Applier::ApplyPut(storage::WriteTxn* btx, const etcdserverpb::PutRequest& p) {
  if (p.lease() != lease::kNoLease && !lessor_->Exists(p.lease())) {
    return Failed(lease::ErrLeaseNotFound());
  }
  auto tw = store_->Write(btx);
  TxnRunner runner(nullptr, tw.get(), lessor_, 0);
  mvcc::TxnOpCounts counts;
  runner.set_counts(&counts);
  absl::StatusOr<etcdserverpb::PutResponse> pr = runner.Put(p);
  tw->End();
  mvcc::TxnMetrics::Global().Add(counts);
  if (!pr.ok()) return Failed(pr.status());
  ApplyResult res;
  res.response = std::move(*pr);
  return res;
}

ApplyResult Applier::ApplyDeleteRange(storage::WriteTxn* btx,
                                      const etcdserverpb::DeleteRangeRequest& d) {
  auto tw = store_->Write(btx);
  TxnRunner runner(nullptr, tw.get(), lessor_, 0);
  mvcc::TxnOpCounts counts;
  runner.set_counts(&counts);
  absl::StatusOr<etcdserverpb::DeleteRangeResponse> dr = runner.DeleteRange(d);
  tw->End();
  mvcc::TxnMetrics::Global().Add(counts);
  if (!dr.ok()) return Failed(dr.status());
  ApplyResult res;
  res.response = std::move(*dr);
  return res;
}

ApplyResult Applier::ApplyTxn(storage::WriteTxn* btx, const TxnRequest& r) {
  auto tw = store_->Write(btx);
  mvcc::TxnWrite* raw = tw.get();
  ReadFn read = [raw](std::string_view k, std::string_view e, mvcc::RangeOptions o) {
    return raw->Range(k, e, o);
  };
  TxnRunner runner(read, raw, lessor_, 0);
  runner.set_first_rev(store_->CompactRev());
  // etcd 3.4 applierV3backend.Txn runs the compares and checks in a read txn
  // and, for a write txn, the ops in a write txn: two txns for its metrics.
  const bool is_write = !IsTxnReadOnly(r);
  mvcc::TxnOpCounts read_counts, write_counts;
  runner.set_counts(&read_counts);
  auto end_read = [&read_counts] { mvcc::TxnMetrics::Global().Add(read_counts); };
  // Every check runs before the first write, so a failed txn writes nothing.
  absl::StatusOr<TxnPlan> plan = runner.Plan(r);
  if (!plan.ok()) {
    end_read();
    return Failed(plan.status());
  }
  if (is_write) {
    if (auto s = runner.CheckPuts(r, *plan); !s.ok()) {
      end_read();
      return Failed(s);
    }
  }
  if (auto s = runner.CheckRanges(r, *plan); !s.ok()) {
    end_read();
    return Failed(s);
  }
  if (is_write) {
    end_read();
    runner.set_counts(&write_counts);
  }
  auto end_ops = [&] { mvcc::TxnMetrics::Global().Add(is_write ? write_counts : read_counts); };

  TxnResponse resp;
  absl::Status s = runner.Run(r, *plan, &resp);
  if (!s.ok()) {
    // After the checks only a failed read of the backend gets here (etcd
    // panics here); the txn may have written, so report it as an internal
    // error: a local fault for the server.
    options_.logger.Error("unexpected error during txn", {{"error", s.ToString()}});
    tw->End();
    end_ops();
    return Failed(absl::InternalError("unexpected error during txn: " + s.ToString()));
  }
  resp.mutable_header()->set_revision(tw->Rev());
  tw->End();
  end_ops();
  ApplyResult res;
  res.response = std::move(resp);
  return res;
}

ApplyResult Applier::ApplyCompaction(storage::WriteTxn* btx,
                                     const etcdserverpb::CompactionRequest& c) {
  absl::StatusOr<std::shared_future<absl::Status>> done = store_->Compact(btx, c.revision());
  if (!done.ok()) return Failed(done.status());
  ApplyResult res;
  etcdserverpb::CompactionResponse resp;
  // etcd reads the revision for the answer with a one-key range.
  mvcc::TxnMetrics::Global().Add({.ranges = 1});
  resp.mutable_header()->set_revision(CurrentRev(btx));
  res.response = std::move(resp);
  res.compaction_done = std::move(*done);
  return res;
}

ApplyResult Applier::ApplyLeaseGrant(storage::WriteTxn* btx,
                                     const etcdserverpb::LeaseGrantRequest& g) {
  absl::StatusOr<lease::LeaseInfo> info = lessor_->Grant(btx, g.id(), g.ttl());
  if (!info.ok()) return Failed(info.status());
  etcdserverpb::LeaseGrantResponse resp;
  resp.set_id(info->id);
  resp.set_ttl(info->ttl_seconds);
  resp.mutable_header()->set_revision(CurrentRev(btx));
  ApplyResult res;
  res.response = std::move(resp);
  return res;
}

ApplyResult Applier::ApplyLeaseRevoke(storage::WriteTxn* btx,
                                      const etcdserverpb::LeaseRevokeRequest& r) {
  absl::StatusOr<std::vector<std::string>> keys = lessor_->Revoke(btx, r.id());
  if (!keys.ok()) return Failed(keys.status());
  // All the lease's keys go in one revision, in sorted order so that every
  // member writes identical history.
  auto tw = store_->Write(btx);
  for (const std::string& k : *keys) tw->DeleteRange(k, "");
  const int64_t rev = tw->Rev();
  tw->End();
  mvcc::TxnMetrics::Global().Add({.deletes = keys->size()});
  etcdserverpb::LeaseRevokeResponse resp;
  resp.mutable_header()->set_revision(rev);
  ApplyResult res;
  res.response = std::move(resp);
  return res;
}

ApplyResult Applier::ApplyLeaseCheckpoint(storage::WriteTxn* btx,
                                          const etcdserverpb::LeaseCheckpointRequest& r) {
  for (const etcdserverpb::LeaseCheckpoint& c : r.checkpoints()) {
    if (absl::Status s = lessor_->Checkpoint(btx, c.id(), c.remaining_ttl()); !s.ok()) {
      return Failed(s);
    }
  }
  etcdserverpb::LeaseCheckpointResponse resp;
  resp.mutable_header()->set_revision(CurrentRev(btx));
  ApplyResult res;
  res.response = std::move(resp);
  return res;
}

int64_t Applier::CurrentRev(storage::WriteTxn* btx) {
  auto tw = store_->Write(btx);
  const int64_t rev = tw->Rev();
  tw->End();
  return rev;
}

absl::StatusOr<RangeResponse> Applier::Range(const RangeRequest& r) const {
  mvcc::TxnOpCounts counts;
  ReadFn read = [this, &counts](std::string_view k, std::string_view e, mvcc::RangeOptions o) {
    ++counts.ranges;
    return store_->Range(k, e, o);
  };
  absl::StatusOr<RangeResponse> resp = RangeWith(read, r, 0);
  mvcc::TxnMetrics::Global().Add(counts);
  return resp;
}

namespace {

using google::protobuf::io::CodedOutputStream;

// Wire tags of RangeResponse: kvs (field 2, length-delimited), more (3,
// varint), count (4, varint).
constexpr uint8_t kKvsTag = (2 << 3) | 2;
constexpr uint8_t kMoreTag = (3 << 3) | 0;
constexpr uint8_t kCountTag = (4 << 3) | 0;
// Room for a header and the more/count fields.
constexpr uint64_t kRangeOverheadBytes = 128;

void AppendVarint(std::string* out, uint64_t v) {
  uint8_t buf[10];
  uint8_t* end = CodedOutputStream::WriteVarint64ToArray(v, buf);
  out->append(reinterpret_cast<const char*>(buf), static_cast<size_t>(end - buf));
}

uint64_t KvFieldBytes(size_t record_size) {
  return 1 + CodedOutputStream::VarintSize64(record_size) + record_size;
}

// Range options of RangeWith before filters and sorting: the range's limit
// (+1 to tell whether there are more), or all of it when it is to be sorted
// or filtered.
mvcc::RangeOptions StoreOptions(const RangeRequest& r, bool whole) {
  int64_t limit = whole ? 0 : std::max<int64_t>(r.limit(), 0);
  if (limit > 0 && limit < std::numeric_limits<int64_t>::max()) ++limit;
  mvcc::RangeOptions opts;
  opts.limit = limit;
  opts.rev = r.revision() > 0 ? r.revision() : 0;
  opts.count_only = r.count_only();
  return opts;
}

// RangeWith reads the whole range (then truncates) when it sorts by an
// explicit order or filters by revisions.
bool ReadsWhole(const RangeRequest& r) {
  return r.min_mod_revision() != 0 || r.max_mod_revision() != 0 ||
         r.min_create_revision() != 0 || r.max_create_revision() != 0 ||
         r.sort_order() != RangeRequest::NONE;
}

// The answer is not the store's records in key order.
bool SortsOrFilters(const RangeRequest& r) {
  return r.min_mod_revision() != 0 || r.max_mod_revision() != 0 ||
         r.min_create_revision() != 0 || r.max_create_revision() != 0 ||
         r.sort_order() != RangeRequest::NONE || r.sort_target() != RangeRequest::KEY;
}

}  // namespace

absl::StatusOr<EncodedRange> Applier::RangeEncoded(const RangeRequest& r,
                                                   uint64_t size_hint) const {
  EncodedRange out;
  if (SortsOrFilters(r) || r.keys_only()) {
    absl::StatusOr<RangeResponse> resp = Range(r);
    if (!resp.ok()) return resp.status();
    out.header = std::move(*resp->mutable_header());
    resp->clear_header();
    resp->SerializeToString(&out.body);
    return out;
  }
  // A plain range: the stored records are KeyValues in wire form already.
  const int64_t max_kvs = r.limit() > 0 ? r.limit() : std::numeric_limits<int64_t>::max();
  int64_t n = 0;
  bool more = false;
  out.body.reserve(size_hint);
  absl::StatusOr<mvcc::RangeResult> rr =
      store_->RangeStored(r.key(), r.range_end(), StoreOptions(r, /*whole=*/false),
                          [&](std::string_view record) {
                            if (n >= max_kvs) {
                              more = true;
                              return;
                            }
                            out.body.push_back(static_cast<char>(kKvsTag));
                            AppendVarint(&out.body, record.size());
                            out.body.append(record);
                            ++n;
                          });
  mvcc::TxnMetrics::Global().Add({.ranges = 1});
  if (!rr.ok()) return rr.status();
  if (more) {
    out.body.push_back(static_cast<char>(kMoreTag));
    out.body.push_back(1);
  }
  if (rr->count != 0) {
    out.body.push_back(static_cast<char>(kCountTag));
    AppendVarint(&out.body, static_cast<uint64_t>(rr->count));
  }
  out.header.set_revision(rr->rev);
  return out;
}

absl::StatusOr<uint64_t> Applier::EstimateRangeBytes(const RangeRequest& r) const {
  if (r.count_only()) return kRangeOverheadBytes;
  uint64_t bytes = kRangeOverheadBytes;
  absl::StatusOr<mvcc::RangeResult> rr = store_->RangeStored(
      r.key(), r.range_end(), StoreOptions(r, ReadsWhole(r)),
      [&bytes](std::string_view record) { bytes += KvFieldBytes(record.size()); });
  if (!rr.ok()) return rr.status();
  return bytes;
}

absl::StatusOr<TxnResponse> Applier::ReadOnlyTxn(const TxnRequest& r) const {
  if (!IsTxnReadOnly(r)) return absl::InvalidArgumentError("ReadOnlyTxn: the txn writes");
  const int64_t rev = store_->Rev();
  ReadFn read = [this](std::string_view k, std::string_view e, mvcc::RangeOptions o) {
    return store_->Range(k, e, o);
  };
  TxnRunner runner(read, nullptr, lessor_, rev);
  runner.set_first_rev(store_->CompactRev());
  mvcc::TxnOpCounts counts;  // one read txn (etcd applierV3backend.Txn)
  runner.set_counts(&counts);
  auto run = [&]() -> absl::StatusOr<TxnResponse> {
    absl::StatusOr<TxnPlan> plan = runner.Plan(r);
    if (!plan.ok()) return plan.status();
    if (auto s = runner.CheckRanges(r, *plan); !s.ok()) return s;
    TxnResponse resp;
    if (auto s = runner.Run(r, *plan, &resp); !s.ok()) return s;
    resp.mutable_header()->set_revision(rev);
    return resp;
  };
  absl::StatusOr<TxnResponse> resp = run();
  mvcc::TxnMetrics::Global().Add(counts);
  return resp;
}

}  // namespace cppetcd::server
