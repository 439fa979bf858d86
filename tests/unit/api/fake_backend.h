// An in-memory ServerBackend for the api tests: enough KV, lease and watch
// behaviour to drive the gRPC services without a real server.
#ifndef CPPETCD_TESTS_UNIT_API_FAKE_BACKEND_H_
#define CPPETCD_TESTS_UNIT_API_FAKE_BACKEND_H_

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cppetcd/api/backend.h"

namespace cppetcd::api::testing {

class FakeWatchStream;

class FakeBackend final : public ServerBackend {
 public:
  FakeBackend() = default;
  ~FakeBackend() override;

  void Range(const auth::Credentials& caller, const etcdserverpb::RangeRequest& req,
             Done<etcdserverpb::RangeResponse> done) override;
  void Put(const auth::Credentials& caller,
           const etcdserverpb::PutRequest& req, Done<etcdserverpb::PutResponse> done) override;
  void DeleteRange(const auth::Credentials& caller, const etcdserverpb::DeleteRangeRequest& req,
                   Done<etcdserverpb::DeleteRangeResponse> done) override;
  void Txn(const auth::Credentials& caller,
           const etcdserverpb::TxnRequest& req, Done<etcdserverpb::TxnResponse> done) override;
  void Compact(const auth::Credentials& caller, const etcdserverpb::CompactionRequest& req,
               Done<etcdserverpb::CompactionResponse> done) override;
  void LeaseGrant(const auth::Credentials& caller, const etcdserverpb::LeaseGrantRequest& req,
                  Done<etcdserverpb::LeaseGrantResponse> done) override;
  void LeaseRevoke(const auth::Credentials& caller, const etcdserverpb::LeaseRevokeRequest& req,
                   Done<etcdserverpb::LeaseRevokeResponse> done) override;
  void LeaseRenew(int64_t id, Done<int64_t> done) override;
  void LeaseTimeToLive(const etcdserverpb::LeaseTimeToLiveRequest& req,
                       Done<etcdserverpb::LeaseTimeToLiveResponse> done) override;
  void LeaseLeases(const etcdserverpb::LeaseLeasesRequest& req,
                   Done<etcdserverpb::LeaseLeasesResponse> done) override;
  void MemberList(const etcdserverpb::MemberListRequest& req,
                  Done<etcdserverpb::MemberListResponse> done) override;
  void Status(const etcdserverpb::StatusRequest& req,
              Done<etcdserverpb::StatusResponse> done) override;
  // Writes SnapshotBytes() bytes of a fixed pattern, counting what the fd
  // took in SnapshotBytesWritten().
  absl::Status SnapshotBackend(int fd) override;
  absl::StatusOr<uint64_t> SnapshotSize(std::string_view head) override;
  void SetSnapshotBytes(size_t n) { snapshot_bytes_ = n; }
  size_t SnapshotBytes() const { return snapshot_bytes_.load(); }
  size_t SnapshotBytesWritten() const { return snapshot_written_.load(); }
  void FillHeader(etcdserverpb::ResponseHeader* header) const override;
  bool HasLeader() const override { return has_leader_.load(); }
  std::unique_ptr<WatchStreamBackend> NewWatchStream(std::function<void()> notify) override;
  int64_t MaxRequestBytes() const override { return max_request_bytes_; }

  void SetHasLeader(bool v) { has_leader_.store(v); }
  static constexpr size_t kSnapshotBytes = 100 * 1000;
  void SetMaxRequestBytes(int64_t v) { max_request_bytes_ = v; }
  int64_t Rev() const;
  int64_t CompactRev() const;
  // Events with revision >= from, oldest first.
  std::vector<mvccpb::Event> History(int64_t from) const;
  void Unregister(FakeWatchStream* s);
  // Watch create requests the API layer has handed to any watch stream.
  int64_t WatchCreates() const { return watch_creates_.load(); }
  void CountWatchCreate() { watch_creates_.fetch_add(1); }
  size_t StreamCount() const {
    std::lock_guard<std::mutex> lock(mu_);
    return streams_.size();
  }

  static constexpr uint64_t kClusterId = 0xcdf818194e3a8c32;
  static constexpr uint64_t kMemberId = 0x8e9e05c52164694d;

 private:
  void PublishLocked(const std::vector<mvccpb::Event>& events);
  int64_t PutLocked(const std::string& key, const std::string& value, int64_t lease)
     ;

  std::atomic<bool> has_leader_{true};
  std::atomic<int64_t> watch_creates_{0};
  std::atomic<size_t> snapshot_bytes_{kSnapshotBytes};
  std::atomic<size_t> snapshot_written_{0};
  int64_t max_request_bytes_ = 1536 * 1024;
  mutable std::mutex mu_;
  int64_t rev_ = 1;
  int64_t compact_rev_ = 0;
  std::map<std::string, mvccpb::KeyValue> kvs_;
  std::vector<mvccpb::Event> history_;
  std::map<int64_t, int64_t> leases_;  // id -> TTL seconds
  int64_t next_lease_ = 1000;
  std::vector<FakeWatchStream*> streams_;
};

}  // namespace cppetcd::api::testing

#endif  // CPPETCD_TESTS_UNIT_API_FAKE_BACKEND_H_
