// Maintenance.Snapshot (etcd 3.4 v3rpc/maintenance.go). Descriptors here are
// a pipe's ends (outside util::Env). The backend, as an
// etcd bbolt database (ServerBackend::SnapshotBackend, so that etcdctl
// snapshot status/restore and etcd open it), is written into a pipe on a
// thread of its own and streamed as it comes, in
// 32 KiB blobs with remaining_bytes counting down, followed by one blob
// holding the SHA-256 of everything sent (etcdctl checks it on restore).
//
// Bounds (docs/design.md, "Resource bounds"): no copy of the database is
// kept; a stream holds at most its head (kSnapshotHeadBytes, read first to
// learn the total size), kSnapshotQueuedChunks blobs and the pipe's buffer,
// and the copy waits on the pipe while the client reads slowly. At most
// kMaxConcurrentSnapshots streams run at once; more are refused with
// "etcdserver: too many requests".
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "cppetcd/util/mutex.h"
#include "src/api/services.h"

namespace cppetcd::api {
namespace {

constexpr size_t kSnapshotChunkBytes = 32 * 1024;  // etcd snapshotSendBufferSize
constexpr size_t kSnapshotQueuedChunks = 8;        // blobs read ahead of the client

// Reads up to n bytes (fewer only at EOF). -1 on error.
ssize_t ReadFull(int fd, char* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return static_cast<ssize_t>(got);
}

class SnapshotReactor final : public grpc::ServerWriteReactor<etcdserverpb::SnapshotResponse>,
                              public std::enable_shared_from_this<SnapshotReactor> {
 public:
  SnapshotReactor(ServerBackend* backend, util::Logger logger,
                  std::shared_ptr<std::atomic<int>> active)
      : backend_(backend),
        logger_(std::move(logger)),
        active_(std::move(active)),
        sha_(EVP_MD_CTX_new()) {}
  ~SnapshotReactor() override {
    if (read_fd_ >= 0) ::close(read_fd_);
    EVP_MD_CTX_free(sha_);
    active_->fetch_sub(1);
  }

  void Begin(std::shared_ptr<SnapshotReactor> self) {
    self_ = std::move(self);
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      gate_.RequestFinish(this, grpc::Status(grpc::StatusCode::INTERNAL,
                                             "cannot create a snapshot pipe"));
      return;
    }
    read_fd_ = fds[0];
    // The copier fills the pipe (blocking while it is full); the reader
    // drains it into the bounded queue.
    std::thread([keep = shared_from_this(), fd = fds[1]] { keep->Copy(fd); }).detach();
    std::thread([keep = shared_from_this()] { keep->Produce(); }).detach();
  }

  void OnWriteDone(bool ok) override {
    auto keep = shared_from_this();
    {
      util::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) cancelled_ = true;
    }
    cv_.SignalAll();
    if (!ok) {
      gate_.RequestFinish(this, grpc::Status(grpc::StatusCode::CANCELLED, "snapshot send failed"));
      return;
    }
    TrySend();
  }

  void OnCancel() override {
    auto keep = shared_from_this();
    {
      util::MutexLock lock(&mu_);
      cancelled_ = true;
    }
    cv_.SignalAll();
    gate_.RequestFinish(this, grpc::Status(grpc::StatusCode::CANCELLED, "context canceled"));
  }

  void OnDone() override { self_.reset(); }

 private:
  void Copy(int fd) {
    absl::Status st = backend_->SnapshotBackend(fd);
    ::close(fd);
    {
      util::MutexLock lock(&mu_);
      copy_status_ = std::move(st);
      copy_done_ = true;
    }
    cv_.SignalAll();
  }

  // Reader thread: head, size, blobs, checksum.
  void Produce() {
    std::string head(ServerBackend::kSnapshotHeadBytes, '\0');
    const ssize_t n = ReadFull(read_fd_, head.data(), head.size());
    if (n < 0) return Fail(grpc::Status(grpc::StatusCode::INTERNAL, "snapshot pipe read failed"));
    head.resize(static_cast<size_t>(n));
    const bool whole = head.size() < ServerBackend::kSnapshotHeadBytes;
    uint64_t total = head.size();
    if (!whole) {
      absl::StatusOr<uint64_t> size = backend_->SnapshotSize(head);
      if (!size.ok()) {
        // A failed copy explains a short or broken head better.
        absl::Status copy = DrainAndWaitForCopy();
        return Fail(ToGrpcStatus(copy.ok() ? size.status() : copy));
      }
      total = *size;
    }
    EVP_DigestInit_ex(sha_, EVP_sha256(), nullptr);
    logger_.Info("sending database snapshot to client", {{"total-bytes", total}});
    uint64_t sent = 0;
    auto push_blob = [&](std::string blob) {
      sent += blob.size();
      EVP_DigestUpdate(sha_, blob.data(), blob.size());
      etcdserverpb::SnapshotResponse r;
      r.set_remaining_bytes(total >= sent ? total - sent : 0);
      r.set_blob(std::move(blob));
      return Push(std::move(r));
    };
    for (size_t off = 0; off < head.size(); off += kSnapshotChunkBytes) {
      if (!push_blob(head.substr(off, kSnapshotChunkBytes))) return (void)DrainAndWaitForCopy();
    }
    head.clear();
    head.shrink_to_fit();
    while (!whole) {
      std::string blob(kSnapshotChunkBytes, '\0');
      const ssize_t got = ReadFull(read_fd_, blob.data(), blob.size());
      if (got < 0) {
        (void)DrainAndWaitForCopy();
        return Fail(grpc::Status(grpc::StatusCode::INTERNAL, "snapshot pipe read failed"));
      }
      if (got == 0) break;
      blob.resize(static_cast<size_t>(got));
      if (!push_blob(std::move(blob))) return (void)DrainAndWaitForCopy();
    }
    if (absl::Status copy = DrainAndWaitForCopy(); !copy.ok()) return Fail(ToGrpcStatus(copy));
    if (sent != total) {
      return Fail(grpc::Status(grpc::StatusCode::INTERNAL, "snapshot size changed while sent"));
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(sha_, digest, &len);
    logger_.Info("sending database sha256 checksum to client",
                 {{"total-bytes", total}, {"checksum-size", static_cast<uint64_t>(len)}});
    etcdserverpb::SnapshotResponse sum;
    sum.set_blob(std::string(reinterpret_cast<const char*>(digest), len));
    if (!Push(std::move(sum))) return;
    {
      util::MutexLock lock(&mu_);
      produced_all_ = true;
      total_ = total;
    }
    TrySend();
  }

  // Queues a response, waiting while the queue is full. False if the
  // stream was cancelled.
  bool Push(etcdserverpb::SnapshotResponse r) {
    {
      util::MutexLock lock(&mu_);
      cv_.Wait(&mu_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return cancelled_ || queue_.size() < kSnapshotQueuedChunks;
      });
      if (cancelled_) return false;
      queue_.push_back(std::move(r));
    }
    TrySend();
    return true;
  }

  // Reads the pipe to its end (so the copier never blocks on it) and waits
  // for the copy's result.
  absl::Status DrainAndWaitForCopy() {
    std::string sink(kSnapshotChunkBytes, '\0');
    while (ReadFull(read_fd_, sink.data(), sink.size()) > 0) {
    }
    util::MutexLock lock(&mu_);
    cv_.Wait(&mu_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return copy_done_; });
    return copy_status_;
  }

  void Fail(grpc::Status st) {
    {
      util::MutexLock lock(&mu_);
      cancelled_ = true;
    }
    gate_.RequestFinish(this, std::move(st));
  }

  // Starts the next write if none is in flight; finishes after the last.
  void TrySend() {
    bool finish = false;
    uint64_t total = 0;
    {
      util::MutexLock lock(&mu_);
      if (writing_ || cancelled_) return;
      if (queue_.empty()) {
        if (!produced_all_ || finished_) return;
        finished_ = finish = true;
        total = total_;
      } else {
        current_ = std::move(queue_.front());
        queue_.pop_front();
        writing_ = true;
      }
    }
    cv_.SignalAll();  // room in the queue
    if (finish) {
      logger_.Info("sent database snapshot to client", {{"total-bytes", total}});
      gate_.RequestFinish(this, grpc::Status::OK);
      return;
    }
    if (gate_.BeginStart()) {
      StartWrite(&current_);
      gate_.EndStart(this);
    }
  }

  ServerBackend* const backend_;
  util::Logger logger_;
  const std::shared_ptr<std::atomic<int>> active_;  // running snapshot streams
  EVP_MD_CTX* const sha_;                           // reader thread
  int read_fd_ = -1;                                // reader thread after Begin
  StreamGate gate_;

  util::Mutex mu_;
  util::CondVar cv_;
  std::deque<etcdserverpb::SnapshotResponse> queue_ ABSL_GUARDED_BY(mu_);  // <= kSnapshotQueuedChunks
  etcdserverpb::SnapshotResponse current_;  // the write in flight (set with writing_)
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;     // client gone or stream failed: stop producing
  bool produced_all_ ABSL_GUARDED_BY(mu_) = false;  // the checksum is queued
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t total_ ABSL_GUARDED_BY(mu_) = 0;
  bool copy_done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status copy_status_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<SnapshotReactor> self_;  // released in OnDone
};

// Finishes a snapshot stream at once (a learner serves none).
class RejectedSnapshot final : public grpc::ServerWriteReactor<etcdserverpb::SnapshotResponse> {
 public:
  explicit RejectedSnapshot(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<etcdserverpb::SnapshotResponse>* MaintenanceService::Snapshot(
    grpc::CallbackServerContext* context, const etcdserverpb::SnapshotRequest* req) {
  (void)req;
  if (backend_->IsLearner()) return new RejectedSnapshot(GrpcNotForLearner());
  // etcd: a snapshot needs role root when auth is enabled.
  if (absl::Status s = backend_->AuthorizeAdmin(CallCredentials(context)); !s.ok()) {
    return new RejectedSnapshot(grpc::Status(grpc::StatusCode::UNKNOWN, std::string(s.message())));
  }
  if (active_snapshots_->fetch_add(1) >= kMaxConcurrentSnapshots) {
    active_snapshots_->fetch_sub(1);
    return new RejectedSnapshot(
        grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "etcdserver: too many requests"));
  }
  auto reactor = std::make_shared<SnapshotReactor>(backend_, util::GetLogger("etcdserver"),
                                                   active_snapshots_);
  reactor->Begin(reactor);
  return reactor.get();
}

}  // namespace cppetcd::api
