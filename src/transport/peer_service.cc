// The receiving side: peerpb.Peer over the PeerHandler (callback API).
// Files (received snapshots) go through the transport's util::Env.
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cppetcd/util/crc32c.h"
#include "cppetcd/util/env.h"
#include "src/transport/impl.h"

namespace cppetcd::transport {
namespace {

using Impl = GrpcTransport::Impl;

const grpc::Status kNoHandler(grpc::StatusCode::UNAVAILABLE, "peer transport is not serving");

// The sender's cluster ID from the call metadata; nullopt when absent.
std::optional<uint64_t> MetadataUint(const grpc::CallbackServerContext* ctx, const char* key) {
  const auto& md = ctx->client_metadata();
  auto it = md.find(key);
  if (it == md.end()) return std::nullopt;
  uint64_t v = 0;
  if (!absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &v)) {
    return std::nullopt;
  }
  return v;
}

// OK when `remote` matches the local cluster ID; otherwise logs
// (rate-limited) and returns FAILED_PRECONDITION. Absent or 0 means "not
// known yet" (a joining member) and passes unless `strict` (raft batches and
// snapshot chunks always carry the sender's cluster ID).
grpc::Status CheckCluster(Impl* impl, const Impl::HandlerRef& h, std::optional<uint64_t> remote,
                          std::optional<uint64_t> from, bool strict = false) {
  if (!strict && (!remote.has_value() || *remote == 0)) return grpc::Status::OK;
  if (!remote.has_value()) remote = 0;
  const uint64_t local = h->ClusterId();
  if (*remote == local) return grpc::Status::OK;
  const std::string remote_hex = util::IdToHex(*remote);
  if (impl->log_limiter().Allow("recv-cluster-mismatch-" + remote_hex)) {
    impl->logger().Error("request cluster ID mismatch",
                         {{"local-member-id", impl->LocalIdHex()},
                          {"local-member-cluster-id", util::IdToHex(local)},
                          {"remote-peer-id", util::IdToHex(from.value_or(0))},
                          {"remote-peer-cluster-id", remote_hex}});
  }
  return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                      absl::StrCat("cluster ID mismatch: local ", util::IdToHex(local),
                                   ", remote ", remote_hex));
}

// ---- Raft stream: Process each message of each batch, in order.
class StreamReactor final : public grpc::ServerReadReactor<peerpb::MessageBatch> {
 public:
  StreamReactor(Impl* impl, grpc::CallbackServerContext* ctx) : impl_(impl) {
    Impl::HandlerRef h = impl_->AcquireHandler();
    if (!h) {
      Finish(kNoHandler);
      return;
    }
    from_ = MetadataUint(ctx, kFromKey).value_or(0);
    grpc::Status st = CheckCluster(impl_, h, MetadataUint(ctx, kClusterIdKey), from_);
    if (!st.ok()) {
      Finish(st);
      return;
    }
    ctx->AddInitialMetadata(kAcceptedKey, "1");
    StartSendInitialMetadata();
    impl_->logger().Debug("accepted raft stream from remote peer",
                          {{"local-member-id", impl_->LocalIdHex()},
                           {"remote-peer-id", util::IdToHex(from_)}});
    StartRead(&batch_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The sender closed or cancelled the stream.
      Finish(grpc::Status::OK);
      return;
    }
    grpc::Status st = ProcessBatch();
    if (!st.ok()) {
      Finish(st);
      return;
    }
    batch_.Clear();
    StartRead(&batch_);
  }

  void OnSendInitialMetadataDone(bool) override {}
  void OnDone() override { delete this; }

 private:
  grpc::Status ProcessBatch() {
    Impl::HandlerRef h = impl_->AcquireHandler();
    if (!h) return kNoHandler;
    grpc::Status st = CheckCluster(impl_, h, batch_.cluster_id(), batch_.from(), /*strict=*/true);
    if (!st.ok()) return st;
    const uint64_t local = h->MemberId();
    if (batch_.to() != 0 && local != 0 && batch_.to() != local) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat("member ID mismatch: local ", util::IdToHex(local),
                                       ", stream to ", util::IdToHex(batch_.to())));
    }
    for (raftpb::Message& m : *batch_.mutable_messages()) {
      const uint64_t sender = m.from();
      absl::Status ps = h->Process(std::move(m));
      if (ps.ok()) continue;
      if (ps.code() == absl::StatusCode::kPermissionDenied) {
        impl_->logger().Warn("rejected stream from remote peer because it was removed",
                             {{"local-member-id", impl_->LocalIdHex()},
                              {"remote-peer-id", util::IdToHex(sender)}});
        return ToGrpc(ps);
      }
      if (impl_->log_limiter().Allow("process-failed-" + util::IdToHex(sender))) {
        impl_->logger().Warn("failed to process Raft message",
                             {{"local-member-id", impl_->LocalIdHex()},
                              {"remote-peer-id", util::IdToHex(sender)},
                              {"error", std::string(ps.message())}});
      }
    }
    return grpc::Status::OK;
  }

  Impl* const impl_;
  uint64_t from_ = 0;
  peerpb::MessageBatch batch_;
};

// ---- Snapshot: header chunk, then data chunks into `path`.tmp; renamed to
// `path` and handed to Process only when every byte arrived intact.
class SnapshotReactor final : public grpc::ServerReadReactor<peerpb::SnapshotChunk> {
 public:
  SnapshotReactor(Impl* impl, grpc::CallbackServerContext* ctx, peerpb::SnapshotResult* result)
      : impl_(impl), result_(result) {
    Impl::HandlerRef h = impl_->AcquireHandler();
    if (!h) {
      Finish(kNoHandler);
      return;
    }
    from_ = MetadataUint(ctx, kFromKey).value_or(0);
    grpc::Status st = CheckCluster(impl_, h, MetadataUint(ctx, kClusterIdKey), from_);
    if (!st.ok()) {
      Finish(st);
      return;
    }
    StartRead(&chunk_);
  }

  ~SnapshotReactor() override { Discard(); }

  void OnReadDone(bool ok) override {
    grpc::Status st = ok ? OnChunk() : Complete();
    if (!ok || !st.ok()) {
      if (!st.ok()) {
        Discard();
        impl_->logger().Warn("failed to receive database snapshot",
                             {{"local-member-id", impl_->LocalIdHex()},
                              {"remote-peer-id", util::IdToHex(from_)},
                              {"error", st.error_message()}});
      }
      Finish(st);
      return;
    }
    chunk_.Clear();
    StartRead(&chunk_);
  }

  void OnDone() override { delete this; }

 private:
  grpc::Status OnChunk() {
    Impl::HandlerRef h = impl_->AcquireHandler();
    if (!h) return kNoHandler;
    grpc::Status st = CheckCluster(impl_, h, chunk_.cluster_id(), from_, /*strict=*/true);
    if (!st.ok()) return st;
    if (!header_seen_) {
      header_seen_ = true;
      if (!chunk_.has_message() || chunk_.message().type() != raftpb::MsgSnap) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "snapshot stream must start with a MsgSnap header");
      }
      msg_ = chunk_.message();
      total_bytes_ = chunk_.total_bytes();
      if (from_ == 0) from_ = msg_.from();
      path_ = h->SnapshotDbPath(msg_.snapshot().metadata().index());
      tmp_path_ = path_ + ".tmp";
      auto file = impl_->env()->NewWritableFile(tmp_path_);
      if (!file.ok()) return ToGrpc(file.status());
      file_ = *std::move(file);
      impl_->logger().Info("receiving database snapshot",
                           {{"local-member-id", impl_->LocalIdHex()},
                            {"remote-snapshot-sender-id", util::IdToHex(from_)},
                            {"incoming-snapshot-index", msg_.snapshot().metadata().index()},
                            {"incoming-snapshot-message-size-bytes", msg_.ByteSizeLong()},
                            {"incoming-snapshot-size-bytes", total_bytes_}});
    }
    const std::string& data = chunk_.data();
    if (data.empty()) return grpc::Status::OK;
    if (util::Crc32c(data) != chunk_.crc32c()) {
      return grpc::Status(grpc::StatusCode::DATA_LOSS,
                          absl::StrCat("snapshot chunk checksum mismatch at offset ", received_));
    }
    if (received_ + data.size() > total_bytes_) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("snapshot larger than announced ", total_bytes_, " bytes"));
    }
    if (absl::Status ws = file_->Append(data); !ws.ok()) return ToGrpc(ws);
    received_ += data.size();
    return grpc::Status::OK;
  }

  // The stream ended (sender's WritesDone, or cancellation).
  grpc::Status Complete() {
    if (!header_seen_) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "empty snapshot stream");
    }
    if (received_ != total_bytes_) {
      return grpc::Status(grpc::StatusCode::DATA_LOSS,
                          absl::StrCat("snapshot transfer incomplete: received ", received_,
                                       " of ", total_bytes_, " bytes"));
    }
    // Durable under its final name before raft hears of it: temp file,
    // sync, rename, directory sync. Any failure drops the file (Discard)
    // and fails the transfer; the sender retries with a new snapshot.
    util::Env* env = impl_->env();
    absl::Status fs = file_->Sync();
    if (absl::Status cs = file_->Close(); fs.ok()) fs = cs;
    file_.reset();
    if (fs.ok()) fs = env->RenameFile(tmp_path_, path_);
    if (!fs.ok()) return ToGrpc(fs);
    tmp_path_.clear();
    if (absl::Status ds = env->SyncDir(util::DirName(path_)); !ds.ok()) {
      // Complete, but its name might not survive a crash: not accepted.
      env->RemoveFile(path_).IgnoreError();
      return ToGrpc(ds);
    }
    Impl::HandlerRef h = impl_->AcquireHandler();
    if (!h) return kNoHandler;
    const uint64_t index = msg_.snapshot().metadata().index();
    absl::Status ps = h->Process(std::move(msg_));
    if (!ps.ok()) return ToGrpc(ps);
    result_->set_received_bytes(received_);
    impl_->logger().Info("received and saved database snapshot",
                         {{"local-member-id", impl_->LocalIdHex()},
                          {"remote-snapshot-sender-id", util::IdToHex(from_)},
                          {"incoming-snapshot-index", index},
                          {"incoming-snapshot-size-bytes", received_},
                          {"path", path_}});
    return grpc::Status::OK;
  }

  // Drops a partial file (nothing of a broken transfer stays behind).
  void Discard() {
    if (file_ != nullptr) {
      file_->Close().IgnoreError();
      file_.reset();
    }
    if (!tmp_path_.empty()) {
      impl_->env()->RemoveFile(tmp_path_).IgnoreError();
      tmp_path_.clear();
    }
  }

  Impl* const impl_;
  peerpb::SnapshotResult* const result_;
  uint64_t from_ = 0;
  peerpb::SnapshotChunk chunk_;
  bool header_seen_ = false;
  raftpb::Message msg_;
  uint64_t total_bytes_ = 0;
  uint64_t received_ = 0;
  std::string path_;
  std::string tmp_path_;  // non-empty while a partial file exists
  std::unique_ptr<util::WritableFile> file_;  // open while receiving
};

// ---- Forwarded unary calls answered by the handler's PeerDone, possibly
// on another thread, possibly after the call was cancelled.
template <class Resp>
class ForwardReactor final : public grpc::ServerUnaryReactor {
 public:
  struct State {
    util::Mutex mu;
    bool finished ABSL_GUARDED_BY(mu) = false;
    ForwardReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
    Resp* response ABSL_GUARDED_BY(mu) = nullptr;
  };

  explicit ForwardReactor(Resp* response) : state_(std::make_shared<State>()) {
    util::MutexLock l(&state_->mu);
    state_->reactor = this;
    state_->response = response;
  }

  std::shared_ptr<State> state() const { return state_; }

  // Answers once; later answers (after a cancellation) are ignored.
  template <class Fill>
  static void Answer(const std::shared_ptr<State>& s, grpc::Status st, Fill fill) {
    util::MutexLock l(&s->mu);
    if (s->finished) return;
    s->finished = true;
    if (st.ok()) fill(s->response);
    s->reactor->Finish(st);
  }

  void OnCancel() override {
    Answer(state_, grpc::Status(grpc::StatusCode::CANCELLED, "peer call cancelled"),
           [](Resp*) {});
  }
  void OnDone() override { delete this; }

 private:
  std::shared_ptr<State> state_;
};

class PeerService final : public peerpb::Peer::CallbackService {
 public:
  explicit PeerService(Impl* impl) : impl_(impl) {}

  grpc::ServerReadReactor<peerpb::MessageBatch>* Stream(grpc::CallbackServerContext* ctx,
                                                        peerpb::StreamResult*) override {
    return new StreamReactor(impl_, ctx);
  }

  grpc::ServerReadReactor<peerpb::SnapshotChunk>* Snapshot(
      grpc::CallbackServerContext* ctx, peerpb::SnapshotResult* result) override {
    return new SnapshotReactor(impl_, ctx, result);
  }

  grpc::ServerUnaryReactor* ClusterInfo(grpc::CallbackServerContext* ctx,
                                        const peerpb::ClusterInfoRequest* req,
                                        serverpb::ClusterInfo* resp) override {
    auto* reactor = ctx->DefaultReactor();
    Impl::HandlerRef h = impl_->AcquireHandler();
    if (!h) {
      reactor->Finish(kNoHandler);
      return reactor;
    }
    grpc::Status st = CheckCluster(impl_, h, req->cluster_id(), MetadataUint(ctx, kFromKey));
    if (st.ok()) *resp = h->ClusterInfo();
    reactor->Finish(st);
    return reactor;
  }

  grpc::ServerUnaryReactor* LeaseRenew(grpc::CallbackServerContext* ctx,
                                       const peerpb::LeaseRenewRequest* req,
                                       peerpb::LeaseRenewResponse* resp) override {
    using R = ForwardReactor<peerpb::LeaseRenewResponse>;
    auto* reactor = new R(resp);
    Impl::HandlerRef h = Admit(ctx, req->cluster_id(), reactor);
    if (!h) return reactor;
    h->LeaseRenew(req->lease_id(), [s = reactor->state()](absl::StatusOr<int64_t> r) {
      R::Answer(s, ToGrpc(r.status()), [&](peerpb::LeaseRenewResponse* out) { out->set_ttl(*r); });
    });
    return reactor;
  }

  grpc::ServerUnaryReactor* LeaseTimeToLive(grpc::CallbackServerContext* ctx,
                                            const etcdserverpb::LeaseTimeToLiveRequest* req,
                                            etcdserverpb::LeaseTimeToLiveResponse* resp) override {
    using R = ForwardReactor<etcdserverpb::LeaseTimeToLiveResponse>;
    auto* reactor = new R(resp);
    Impl::HandlerRef h = Admit(ctx, 0, reactor);
    if (!h) return reactor;
    h->LeaseTimeToLive(*req, [s = reactor->state()](
                                 absl::StatusOr<etcdserverpb::LeaseTimeToLiveResponse> r) {
      R::Answer(s, ToGrpc(r.status()),
                [&](etcdserverpb::LeaseTimeToLiveResponse* out) { *out = std::move(*r); });
    });
    return reactor;
  }

  grpc::ServerUnaryReactor* Probe(grpc::CallbackServerContext* ctx, const peerpb::ProbeRequest*,
                                  peerpb::ProbeResponse*) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* HashKV(grpc::CallbackServerContext* ctx,
                                   const etcdserverpb::HashKVRequest* req,
                                   etcdserverpb::HashKVResponse* resp) override {
    using R = ForwardReactor<etcdserverpb::HashKVResponse>;
    auto* reactor = new R(resp);
    Impl::HandlerRef h = Admit(ctx, 0, reactor);
    if (!h) return reactor;
    h->HashKV(req->revision(),
              [s = reactor->state()](absl::StatusOr<etcdserverpb::HashKVResponse> r) {
                R::Answer(s, ToGrpc(r.status()),
                          [&](etcdserverpb::HashKVResponse* out) { *out = std::move(*r); });
              });
    return reactor;
  }

  grpc::ServerUnaryReactor* MemberPromote(grpc::CallbackServerContext* ctx,
                                          const etcdserverpb::MemberPromoteRequest* req,
                                          etcdserverpb::MemberPromoteResponse* resp) override {
    using R = ForwardReactor<etcdserverpb::MemberPromoteResponse>;
    auto* reactor = new R(resp);
    Impl::HandlerRef h = Admit(ctx, 0, reactor);
    if (!h) return reactor;
    h->MemberPromote(*req, [s = reactor->state()](
                               absl::StatusOr<etcdserverpb::MemberPromoteResponse> r) {
      R::Answer(s, ToGrpc(r.status()),
                [&](etcdserverpb::MemberPromoteResponse* out) { *out = std::move(*r); });
    });
    return reactor;
  }

 private:
  // The handler if the call may proceed; otherwise the call is answered.
  template <class R>
  Impl::HandlerRef Admit(grpc::CallbackServerContext* ctx, uint64_t body_cluster_id, R* reactor) {
    Impl::HandlerRef h = impl_->AcquireHandler();
    if (!h) {
      R::Answer(reactor->state(), kNoHandler, [](auto*) {});
      return Impl::HandlerRef();
    }
    std::optional<uint64_t> remote = MetadataUint(ctx, kClusterIdKey);
    if (body_cluster_id != 0) remote = body_cluster_id;
    grpc::Status st = CheckCluster(impl_, h, remote, MetadataUint(ctx, kFromKey));
    if (!st.ok()) {
      R::Answer(reactor->state(), st, [](auto*) {});
      return Impl::HandlerRef();
    }
    return h;
  }

  Impl* const impl_;
};

}  // namespace

std::unique_ptr<peerpb::Peer::CallbackService> NewPeerService(GrpcTransport::Impl* impl) {
  return std::make_unique<PeerService>(impl);
}

}  // namespace cppetcd::transport
