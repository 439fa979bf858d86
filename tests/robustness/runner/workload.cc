#include "workload.h"

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cluster_harness.h"

namespace cppetcd::robustness {
namespace {

using std::chrono::milliseconds;

// Loop bounds: no client runs more operations than this in one run.
constexpr int64_t kMaxOpsPerClient = 1'000'000;
constexpr int kMaxWatchReconnects = 10'000;

using integration::PrefixEnd;  // cluster_harness.h

KeyValue FromPb(const mvccpb::KeyValue& kv) {
  KeyValue out;
  out.key = kv.key();
  out.value = kv.value();
  out.mod_revision = kv.mod_revision();
  out.create_revision = kv.create_revision();
  out.version = kv.version();
  out.lease = kv.lease();
  return out;
}

void SetDeadline(grpc::ClientContext* ctx, milliseconds timeout) {
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
}

// Sleeps `d` in small steps, returning early once `stop` is set.
void SleepUnless(const std::atomic<bool>& stop, milliseconds d) {
  const auto end = std::chrono::steady_clock::now() + d;
  for (int i = 0; i < 100000 && !stop.load(); ++i) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= end) return;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(end - now,
                                                                              milliseconds(20)));
  }
}

}  // namespace

std::vector<std::string> KvKeys() {
  std::vector<std::string> keys;
  for (const std::string& g : KvGroupPrefixes()) {
    for (int i = 0; i < 4; ++i) keys.push_back(absl::StrCat(g, i));
  }
  return keys;
}

std::vector<std::string> KvGroupPrefixes() {
  return {absl::StrCat(kKvPrefix, "a/"), absl::StrCat(kKvPrefix, "b/")};
}

std::shared_ptr<grpc::Channel> NewClientChannel(const std::string& endpoint) {
  static std::atomic<int> counter{0};
  grpc::ChannelArguments args;
  // A distinct argument keeps the channel off any shared subchannel.
  args.SetInt("cppetcd.robustness.channel", counter.fetch_add(1));
  // Reconnect quickly after a member restarts: 100 ms, backing off to 1 s.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // gRPC takes this one as the minimum time a connection attempt is given
  // (its MIN_CONNECT_TIMEOUT), not as a backoff: at 100 ms, an attempt whose
  // first SYN needed a retransmit (1 s) could never complete, and a channel
  // stayed down long after its member was back ("tcp handshaker shutdown").
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 5000);
  return grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
}

Outcome ClassifyStatus(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
      return Outcome::kOk;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::UNIMPLEMENTED:
    case grpc::StatusCode::OUT_OF_RANGE:
      return Outcome::kFailed;
    case grpc::StatusCode::UNAVAILABLE:
      // gRPC's pick failure on a channel without a ready connection; the
      // server's own Unavailable errors start with "etcdserver:".
      return absl::StartsWith(status.error_message(), "failed to connect to all addresses")
                 ? Outcome::kFailed
                 : Outcome::kUnknown;
    default:
      return Outcome::kUnknown;
  }
}

Workload::Workload(Config config, HistoryRecorder* recorder)
    : config_(std::move(config)), recorder_(recorder) {
  for (const std::string& ep : config_.endpoints) {
    channels_.push_back(NewClientChannel(ep));
    kv_stubs_.push_back(etcdserverpb::KV::NewStub(channels_.back()));
  }
}

Workload::~Workload() {
  StopClients();
  JoinClients();
  StopWatchers();
}

void Workload::Start() {
  const int base = config_.kv_clients;
  for (int w = 0; w < config_.watch_clients; ++w) {
    watch_slots_.push_back(std::make_unique<WatchSlot>());
  }
  for (int w = 0; w < config_.watch_clients; ++w) {
    watch_threads_.emplace_back([this, w] { WatchLoop(w); });
  }
  for (int c = 0; c < config_.kv_clients; ++c) {
    client_threads_.emplace_back([this, c] { KvClientLoop(c); });
  }
  if (config_.lease_client) {
    client_threads_.emplace_back([this, base] { LeaseLoop(base); });
  }
}

void Workload::StopClients() { stop_clients_.store(true); }

void Workload::JoinClients() {
  for (auto& t : client_threads_) {
    if (t.joinable()) t.join();
  }
}

etcdserverpb::KV::Stub* Workload::KvStub(int member) { return kv_stubs_.at(member).get(); }

Outcome Workload::DoKv(Operation op, int member, etcdserverpb::KV::Stub* stub, Operation* result) {
  attempted_.fetch_add(1);
  op.member = member;
  const int64_t id = recorder_->Invoke(op);
  op.id = id;
  grpc::ClientContext ctx;
  SetDeadline(&ctx, config_.op_timeout);
  grpc::Status st;
  switch (op.kind) {
    case OpKind::kPut: {
      etcdserverpb::PutRequest req;
      req.set_key(op.key);
      req.set_value(op.value);
      req.set_lease(op.lease);
      etcdserverpb::PutResponse resp;
      st = stub->Put(&ctx, req, &resp);
      if (st.ok()) op.revision = resp.header().revision();
      break;
    }
    case OpKind::kGet:
    case OpKind::kRange: {
      etcdserverpb::RangeRequest req;
      req.set_key(op.key);
      if (op.kind == OpKind::kRange) req.set_range_end(op.range_end);
      req.set_serializable(op.serializable);
      etcdserverpb::RangeResponse resp;
      st = stub->Range(&ctx, req, &resp);
      if (st.ok()) {
        op.revision = resp.header().revision();
        if (op.kind == OpKind::kGet) {
          if (resp.kvs_size() > 0) op.found = FromPb(resp.kvs(0));
        } else {
          for (const auto& kv : resp.kvs()) op.kvs.push_back(FromPb(kv));
        }
      }
      break;
    }
    case OpKind::kDelete: {
      etcdserverpb::DeleteRangeRequest req;
      req.set_key(op.key);
      etcdserverpb::DeleteRangeResponse resp;
      st = stub->DeleteRange(&ctx, req, &resp);
      if (st.ok()) {
        op.revision = resp.header().revision();
        op.deleted = resp.deleted();
      }
      break;
    }
    case OpKind::kTxnCas: {
      etcdserverpb::TxnRequest req;
      auto* cmp = req.add_compare();
      cmp->set_key(op.key);
      cmp->set_result(etcdserverpb::Compare::EQUAL);
      if (op.expect_absent) {
        cmp->set_target(etcdserverpb::Compare::CREATE);
        cmp->set_create_revision(0);
      } else {
        cmp->set_target(etcdserverpb::Compare::VALUE);
        cmp->set_value(op.expected);
      }
      auto* put = req.add_success()->mutable_request_put();
      put->set_key(op.key);
      put->set_value(op.value);
      etcdserverpb::TxnResponse resp;
      st = stub->Txn(&ctx, req, &resp);
      if (st.ok()) {
        op.revision = resp.header().revision();
        op.succeeded = resp.succeeded();
      }
      break;
    }
  }
  op.outcome = ClassifyStatus(st);
  if (op.outcome == Outcome::kUnknown) {
    op.complete_ns = kNeverCompleted;
  } else {
    op.complete_ns = MonotonicNowNs();
  }
  if (!st.ok()) op.error = absl::StrCat(static_cast<int>(st.error_code()), ": ", st.error_message());
  recorder_->Complete(id, op);
  if (result != nullptr) *result = op;
  return op.outcome;
}

void Workload::KvClientLoop(int client) {
  std::mt19937_64 rng(config_.seed * 1000003 + static_cast<uint64_t>(client) * 7919 + 1);
  const std::vector<std::string> keys = KvKeys();
  const std::vector<std::string> groups = KvGroupPrefixes();
  const int members = static_cast<int>(config_.endpoints.size());
  int member = static_cast<int>((config_.seed + client) % members);
  // The last value this client saw per key (nullopt: absent), for CAS.
  std::map<std::string, std::optional<std::string>> seen;
  int64_t writes = 0;
  for (int64_t n = 0; n < kMaxOpsPerClient && !stop_clients_.load(); ++n) {
    Operation op;
    op.client = client;
    const int dice = static_cast<int>(rng() % 100);
    op.key = keys[rng() % keys.size()];
    if (dice < 30) {
      op.kind = OpKind::kPut;
      op.value = absl::StrCat("c", client, "-", ++writes);
    } else if (dice < 55) {
      op.kind = OpKind::kGet;
    } else if (dice < 65) {
      op.kind = OpKind::kGet;
      op.serializable = true;
    } else if (dice < 75) {
      op.kind = OpKind::kDelete;
    } else if (dice < 90) {
      op.kind = OpKind::kTxnCas;
      op.value = absl::StrCat("c", client, "-", ++writes);
      auto it = seen.find(op.key);
      if (it == seen.end() || !it->second.has_value()) {
        op.expect_absent = true;
      } else {
        op.expected = *it->second;
      }
    } else {
      op.kind = OpKind::kRange;
      op.key = groups[rng() % groups.size()];
      op.range_end = PrefixEnd(op.key);
      op.serializable = rng() % 10 < 3;
    }
    Operation done;
    const Outcome outcome = DoKv(op, member, KvStub(member), &done);
    if (outcome == Outcome::kOk) {
      if (done.kind == OpKind::kGet) {
        seen[done.key] = done.found ? std::optional<std::string>(done.found->value) : std::nullopt;
      } else if (done.kind == OpKind::kPut) {
        seen[done.key] = done.value;
      } else if (done.kind == OpKind::kDelete) {
        seen[done.key] = std::nullopt;
      } else if (done.kind == OpKind::kTxnCas && done.succeeded) {
        seen[done.key] = done.value;
      }
    } else {
      // The member may be down or cut off (an unknown outcome, or a call
      // never sent for want of a connection): try the next one.
      member = (member + 1) % members;
      SleepUnless(stop_clients_, milliseconds(20));
    }
  }
}

void Workload::LeaseLoop(int client) {
  std::mt19937_64 rng(config_.seed * 999983 + 17);
  const int members = static_cast<int>(config_.endpoints.size());
  int member = static_cast<int>(config_.seed % members);
  auto next_member = [&] { member = (member + 1) % members; };
  for (int64_t n = 1; n < kMaxOpsPerClient && !stop_clients_.load(); ++n) {
    auto lease_stub = etcdserverpb::Lease::NewStub(channels_.at(member));
    // Grant.
    LeaseOperation grant;
    grant.client = client;
    grant.kind = LeaseOpKind::kGrant;
    grant.ttl_seconds = 2 + static_cast<int64_t>(rng() % 3);  // 2..4 s
    attempted_.fetch_add(1);
    const int64_t gid = recorder_->InvokeLease(grant);
    grant.id = gid;
    etcdserverpb::LeaseGrantResponse gresp;
    grpc::Status st;
    {
      grpc::ClientContext ctx;
      SetDeadline(&ctx, config_.op_timeout);
      etcdserverpb::LeaseGrantRequest req;
      req.set_ttl(grant.ttl_seconds);
      st = lease_stub->LeaseGrant(&ctx, req, &gresp);
    }
    grant.outcome = ClassifyStatus(st);
    if (st.ok() && gresp.error().empty()) {
      grant.lease = gresp.id();
      grant.ttl_seconds = gresp.ttl();
      grant.complete_ns = MonotonicNowNs();
    } else {
      if (st.ok()) grant.outcome = Outcome::kFailed;
      grant.complete_ns = grant.outcome == Outcome::kUnknown ? kNeverCompleted : MonotonicNowNs();
      grant.error = st.ok() ? gresp.error() : st.error_message();
    }
    recorder_->CompleteLease(gid, grant);
    if (grant.outcome != Outcome::kOk) {
      next_member();
      SleepUnless(stop_clients_, milliseconds(100));
      continue;
    }
    const int64_t lease = grant.lease;
    // Put a key with the lease.
    Operation put;
    put.client = client;
    put.kind = OpKind::kPut;
    put.key = absl::StrCat(kLeasePrefix, n);
    put.value = absl::StrCat("l", n);
    put.lease = lease;
    DoKv(put, member, KvStub(member), nullptr);
    // The revoke or expiry below deletes the key without a KV request; the
    // linearizability checker wants every write of a key it checks, so the
    // deletion is recorded as a Delete of unknown outcome from here on (it
    // may take effect at any later time, or never). CheckLeases judges
    // whether the key is really gone after the revoke or expiry.
    Operation gone;
    gone.client = client;
    gone.kind = OpKind::kDelete;
    gone.key = put.key;
    gone.member = member;
    gone.error = "synthetic: deleted by the lease's revoke or expiry";
    recorder_->Complete(recorder_->Invoke(gone), gone);
    // Keep-alives, 300 ms apart.
    const int keepalives = static_cast<int>(rng() % 4);
    for (int k = 0; k < keepalives && !stop_clients_.load(); ++k) {
      SleepUnless(stop_clients_, milliseconds(300));
      LeaseOperation ka;
      ka.client = client;
      ka.kind = LeaseOpKind::kKeepAlive;
      ka.lease = lease;
      attempted_.fetch_add(1);
      const int64_t kid = recorder_->InvokeLease(ka);
      ka.id = kid;
      grpc::ClientContext ctx;
      SetDeadline(&ctx, config_.op_timeout);
      auto stream = lease_stub->LeaseKeepAlive(&ctx);
      etcdserverpb::LeaseKeepAliveRequest req;
      req.set_id(lease);
      etcdserverpb::LeaseKeepAliveResponse resp;
      const bool got = stream->Write(req) && stream->Read(&resp);
      stream->WritesDone();
      ctx.TryCancel();
      grpc::Status fst = stream->Finish();
      if (got) {
        ka.outcome = Outcome::kOk;
        ka.complete_ns = MonotonicNowNs();
        ka.ttl_seconds = resp.ttl();  // <= 0: expired (not a renewal)
      } else {
        ka.outcome = Outcome::kUnknown;
        ka.error = fst.error_message();
      }
      recorder_->CompleteLease(kid, ka);
      if (!got) break;
    }
    // Revoke (most of the time), or let it expire and ask for its TTL.
    const bool revoke = rng() % 4 != 0;
    LeaseOperation end;
    end.client = client;
    end.lease = lease;
    if (revoke) {
      end.kind = LeaseOpKind::kRevoke;
      attempted_.fetch_add(1);
      const int64_t rid = recorder_->InvokeLease(end);
      end.id = rid;
      grpc::ClientContext ctx;
      SetDeadline(&ctx, config_.op_timeout);
      etcdserverpb::LeaseRevokeRequest req;
      req.set_id(lease);
      etcdserverpb::LeaseRevokeResponse resp;
      st = lease_stub->LeaseRevoke(&ctx, req, &resp);
      end.outcome = ClassifyStatus(st);
      end.complete_ns = end.outcome == Outcome::kUnknown ? kNeverCompleted : MonotonicNowNs();
      if (!st.ok()) end.error = st.error_message();
      recorder_->CompleteLease(rid, end);
    } else {
      SleepUnless(stop_clients_, milliseconds(grant.ttl_seconds * 1000 + 1000));
      // Asks up to 4 times, 500 ms apart, until the lease is gone.
      for (int attempt = 0; attempt < 4 && !stop_clients_.load(); ++attempt) {
        LeaseOperation ask;
        ask.client = client;
        ask.lease = lease;
        ask.kind = LeaseOpKind::kExpired;
        attempted_.fetch_add(1);
        const int64_t eid = recorder_->InvokeLease(ask);
        ask.id = eid;
        grpc::ClientContext ctx;
        SetDeadline(&ctx, config_.op_timeout);
        etcdserverpb::LeaseTimeToLiveRequest req;
        req.set_id(lease);
        etcdserverpb::LeaseTimeToLiveResponse resp;
        st = lease_stub->LeaseTimeToLive(&ctx, req, &resp);
        // No such lease (revoked on expiry, keys deleted): TTL -1, or
        // etcd's "requested lease not found" (NotFound).
        const bool gone = (st.ok() && resp.ttl() == -1) ||
                          st.error_code() == grpc::StatusCode::NOT_FOUND;
        if (gone) {
          ask.outcome = Outcome::kOk;
          ask.not_found = true;
          ask.ttl_seconds = st.ok() ? resp.ttl() : -1;
        } else {
          // TTL >= 0: the lease still exists. TTL 0 means "expiring": the
          // leader has not yet committed the revoke that deletes its keys,
          // so it is no expiry report (nor is no answer).
          ask.outcome = st.ok() ? Outcome::kFailed : Outcome::kUnknown;
          ask.ttl_seconds = st.ok() ? resp.ttl() : 0;
          ask.error = st.ok() ? absl::StrCat("lease still exists, TTL ", resp.ttl())
                              : st.error_message();
        }
        recorder_->CompleteLease(eid, ask);
        if (gone) break;
        SleepUnless(stop_clients_, milliseconds(500));
      }
    }
    // Read the key back (linearizable): gone once revoked or expired.
    Operation get;
    get.client = client;
    get.kind = OpKind::kGet;
    get.key = put.key;
    if (DoKv(get, member, KvStub(member), nullptr) != Outcome::kOk) next_member();
  }
}

void Workload::WatchLoop(int watcher) {
  WatchSlot& slot = *watch_slots_.at(watcher);
  const int members = static_cast<int>(config_.endpoints.size());
  int member = static_cast<int>((config_.seed + watcher + 1) % members);
  const std::string key = kKvPrefix;
  const std::string range_end = PrefixEnd(key);
  int64_t next_revision = 1;  // everything from the start (no compaction here)
  int64_t resumes = 0;
  const int client = 1000 + watcher;
  for (int attempt = 0; attempt < kMaxWatchReconnects && !stop_watchers_.load(); ++attempt) {
    WatchRecord rec;
    rec.client = client;
    rec.key = key;
    rec.range_end = range_end;
    rec.start_revision = next_revision;
    rec.resumes = resumes;
    rec.member = member;
    const int64_t wid = recorder_->AddWatch(rec);
    auto stub = etcdserverpb::Watch::NewStub(channels_.at(member));
    grpc::ClientContext ctx;
    {
      std::lock_guard<std::mutex> l(slot.mu);
      if (stop_watchers_.load()) break;
      slot.ctx = &ctx;
    }
    auto stream = stub->Watch(&ctx);
    etcdserverpb::WatchRequest req;
    auto* create = req.mutable_create_request();
    create->set_key(key);
    create->set_range_end(range_end);
    create->set_start_revision(next_revision);
    if (stream->Write(req)) {
      etcdserverpb::WatchResponse resp;
      for (int64_t r = 0; r < kMaxOpsPerClient && stream->Read(&resp); ++r) {
        WatchResponseRecord out;
        out.watch = wid;
        out.time_ns = MonotonicNowNs();
        out.header_revision = resp.header().revision();
        out.canceled = resp.canceled();
        out.compact_revision = resp.compact_revision();
        for (const auto& ev : resp.events()) {
          WatchEvent e;
          e.is_delete = ev.type() == mvccpb::Event::DELETE;
          e.kv = FromPb(ev.kv());
          next_revision = std::max(next_revision, e.kv.mod_revision + 1);
          out.events.push_back(std::move(e));
        }
        recorder_->AddWatchResponse(std::move(out));
        slot.seen_revision.store(next_revision - 1);
        if (resp.canceled()) break;
      }
    }
    {
      std::lock_guard<std::mutex> l(slot.mu);
      slot.ctx = nullptr;
    }
    ctx.TryCancel();
    stream->Finish();
    resumes = wid;
    member = (member + 1) % members;
    SleepUnless(stop_watchers_, milliseconds(100));
  }
}

int64_t Workload::FinalReads(int member, int attempts) {
  const int client = 2000;
  const int members = static_cast<int>(config_.endpoints.size());
  // After a failure, the next attempt goes to the next member on a new
  // channel: a channel that failed may still be backing off, and the final
  // reads need one answer, from any member (all are linearizable).
  auto retry = [&](const Operation& op) {
    Operation done;
    int target = member;
    std::unique_ptr<etcdserverpb::KV::Stub> fresh;
    for (int a = 0; a < attempts; ++a) {
      etcdserverpb::KV::Stub* stub = fresh != nullptr ? fresh.get() : KvStub(target);
      if (DoKv(op, target, stub, &done) == Outcome::kOk) return done;
      target = (target + 1) % members;
      fresh = etcdserverpb::KV::NewStub(NewClientChannel(config_.endpoints[target]));
      std::this_thread::sleep_for(milliseconds(200));
    }
    return done;
  };
  Operation sentinel;
  sentinel.client = client;
  sentinel.kind = OpKind::kPut;
  sentinel.key = kSentinelKey;
  sentinel.value = "end";
  Operation put = retry(sentinel);
  for (const std::string& k : KvKeys()) {
    Operation get;
    get.client = client;
    get.kind = OpKind::kGet;
    get.key = k;
    retry(get);
  }
  for (const std::string& g : KvGroupPrefixes()) {
    Operation range;
    range.client = client;
    range.kind = OpKind::kRange;
    range.key = g;
    range.range_end = PrefixEnd(g);
    retry(range);
  }
  return put.outcome == Outcome::kOk ? put.revision : 0;
}

std::vector<std::string> Workload::WaitWatchersCaughtUp(int64_t revision,
                                                        std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<std::string> behind;
  for (int i = 0; i < 100000; ++i) {
    behind.clear();
    for (size_t w = 0; w < watch_slots_.size(); ++w) {
      const int64_t seen = watch_slots_[w]->seen_revision.load();
      if (seen < revision) {
        behind.push_back(absl::StrCat("watcher ", w, " at revision ", seen, " < ", revision));
      }
    }
    if (behind.empty() || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return behind;
}

void Workload::StopWatchers() {
  stop_watchers_.store(true);
  for (auto& slot : watch_slots_) {
    std::lock_guard<std::mutex> l(slot->mu);
    if (slot->ctx != nullptr) slot->ctx->TryCancel();
  }
  for (auto& t : watch_threads_) {
    if (t.joinable()) t.join();
  }
}

}  // namespace cppetcd::robustness
