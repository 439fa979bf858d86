// Maintenance.Snapshot (etcd 3.4 v3rpc/maintenance.go): the backend copied
// to an anonymous temp file on a short-lived thread (the copy blocks), then
// streamed in 32 KiB blobs with remaining_bytes counting down, followed by
// one blob holding the SHA-256 of everything sent (etcdctl checks it on
// restore).
#include <openssl/evp.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "src/api/services.h"

namespace cppetcd::api {
namespace {

constexpr size_t kSnapshotChunkBytes = 32 * 1024;  // etcd snapshotSendBufferSize

class SnapshotReactor final : public grpc::ServerWriteReactor<etcdserverpb::SnapshotResponse>,
                              public std::enable_shared_from_this<SnapshotReactor> {
 public:
  SnapshotReactor(ServerBackend* backend, util::Logger logger)
      : backend_(backend), logger_(std::move(logger)), sha_(EVP_MD_CTX_new()) {}
  ~SnapshotReactor() override {
    if (file_ != nullptr) std::fclose(file_);
    EVP_MD_CTX_free(sha_);
  }

  void Begin(std::shared_ptr<SnapshotReactor> self) {
    self_ = std::move(self);
    std::thread([keep = shared_from_this()] { keep->Produce(); }).detach();
  }

  void OnWriteDone(bool ok) override {
    auto keep = shared_from_this();
    if (!ok) {
      gate_.RequestFinish(this, grpc::Status(grpc::StatusCode::CANCELLED, "snapshot send failed"));
      return;
    }
    SendNext();
  }

  void OnCancel() override {
    auto keep = shared_from_this();
    gate_.RequestFinish(this, grpc::Status(grpc::StatusCode::CANCELLED, "context canceled"));
  }

  void OnDone() override { self_.reset(); }

 private:
  void Produce() {
    file_ = std::tmpfile();
    if (file_ == nullptr) {
      gate_.RequestFinish(this, grpc::Status(grpc::StatusCode::INTERNAL,
                                             "cannot create a temporary snapshot file"));
      return;
    }
    absl::Status st = backend_->SnapshotBackend(fileno(file_));
    if (!st.ok()) {
      gate_.RequestFinish(this, ToGrpcStatus(st));
      return;
    }
    std::fseek(file_, 0, SEEK_END);
    total_ = static_cast<uint64_t>(std::ftell(file_));
    std::rewind(file_);
    EVP_DigestInit_ex(sha_, EVP_sha256(), nullptr);
    logger_.Info("sending database snapshot to client", {{"total-bytes", total_}});
    SendNext();
  }

  // Queues the next blob, the checksum after the last one, then finishes.
  void SendNext() {
    response_.Clear();
    if (sent_ < total_) {
      std::string blob(std::min<uint64_t>(kSnapshotChunkBytes, total_ - sent_), '\0');
      size_t n = std::fread(blob.data(), 1, blob.size(), file_);
      if (n == 0) {
        gate_.RequestFinish(this, grpc::Status(grpc::StatusCode::INTERNAL,
                                               "short read of the snapshot file"));
        return;
      }
      blob.resize(n);
      sent_ += n;
      EVP_DigestUpdate(sha_, blob.data(), n);
      response_.set_remaining_bytes(total_ - sent_);
      response_.set_blob(std::move(blob));
    } else if (!checksum_sent_) {
      unsigned char digest[EVP_MAX_MD_SIZE];
      unsigned int len = 0;
      EVP_DigestFinal_ex(sha_, digest, &len);
      checksum_sent_ = true;
      logger_.Info("sending database sha256 checksum to client",
                   {{"total-bytes", total_}, {"checksum-size", static_cast<uint64_t>(len)}});
      response_.set_blob(std::string(reinterpret_cast<const char*>(digest), len));
    } else {
      logger_.Info("sent database snapshot to client", {{"total-bytes", total_}});
      gate_.RequestFinish(this, grpc::Status::OK);
      return;
    }
    if (gate_.BeginStart()) {
      StartWrite(&response_);
      gate_.EndStart(this);
    }
  }

  ServerBackend* const backend_;
  util::Logger logger_;
  EVP_MD_CTX* const sha_;
  StreamGate gate_;
  // The fields below are touched by one step at a time: the producer thread,
  // then each OnWriteDone in turn.
  std::FILE* file_ = nullptr;
  uint64_t total_ = 0;
  uint64_t sent_ = 0;
  bool checksum_sent_ = false;
  etcdserverpb::SnapshotResponse response_;  // the write in flight
  std::shared_ptr<SnapshotReactor> self_;    // released in OnDone
};

}  // namespace

namespace {

// Finishes a snapshot stream at once (a learner serves none).
class RejectedSnapshot final : public grpc::ServerWriteReactor<etcdserverpb::SnapshotResponse> {
 public:
  explicit RejectedSnapshot(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<etcdserverpb::SnapshotResponse>* MaintenanceService::Snapshot(
    grpc::CallbackServerContext* context, const etcdserverpb::SnapshotRequest* req) {
  if (backend_->IsLearner()) return new RejectedSnapshot(GrpcNotForLearner());
  {
    // etcd: a snapshot needs role root when auth is enabled.
    auth::ScopedCredentials creds(CallCredentials(context));
    if (absl::Status s = backend_->AuthorizeAdmin(); !s.ok()) {
      return new RejectedSnapshot(grpc::Status(grpc::StatusCode::UNKNOWN, std::string(s.message())));
    }
  }
  auto reactor = std::make_shared<SnapshotReactor>(backend_, util::GetLogger("etcdserver"));
  reactor->Begin(reactor);
  return reactor.get();
}

}  // namespace cppetcd::api
