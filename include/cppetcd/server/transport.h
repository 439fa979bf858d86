// The seam between a member's server and the peer network (etcd 3.4
// etcdserver/api/rafthttp, with cppetcd's own gRPC peer service instead of
// etcd's HTTP streams).
//
//  - Transport: what the server calls (implemented by the transport module
//    over gRPC; NoopTransport for a lone member and unit tests).
//  - PeerHandler: what the transport calls when something arrives from a
//    peer (implemented by EtcdServer).
//
// Peers are identified by member ID; a peer's URLs are its advertised peer
// URLs (the member's peerURLs). Errors that travel between members keep
// their absl::StatusCode and message unchanged (the api layer maps them to
// etcd's gRPC errors by code and message).
#ifndef CPPETCD_SERVER_TRANSPORT_H_
#define CPPETCD_SERVER_TRANSPORT_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "etcdserverpb/rpc.pb.h"
#include "raftpb/raft.pb.h"
#include "serverpb/internal.pb.h"

namespace cppetcd::server {

// Completion of an asynchronous peer call; runs exactly once, on a
// transport thread (or inline for immediate errors). Must not block.
template <class T>
using PeerDone = absl::AnyInvocable<void(absl::StatusOr<T>) &&>;

// Called by the transport for what peers send. Every method may be called
// from any transport thread, concurrently; none may block for long.
class PeerHandler {
 public:
  virtual ~PeerHandler() = default;

  // The local member's cluster ID: a peer whose stream carries another
  // cluster ID is refused (etcd: "request cluster ID mismatch").
  virtual uint64_t ClusterId() const = 0;
  virtual uint64_t MemberId() const = 0;

  // A raft message from member `m.from()`. Returns ErrMemberRemoved-like
  // status (absl::StatusCode::kPermissionDenied) when the sender was removed
  // from the cluster: the transport then tells the sender so (which stops
  // it). Other errors are logged by the transport and the message dropped.
  virtual absl::Status Process(raftpb::Message m) = 0;

  // Where a received snapshot's backend file goes: the transport writes the
  // chunks to `path + ".tmp"`, fsyncs, renames to `path`, then calls
  // Process(msg) with the MsgSnap. `snapshot_index` is the raft snapshot's
  // index (msg.snapshot().metadata().index()).
  virtual std::string SnapshotDbPath(uint64_t snapshot_index) const = 0;

  // The sending side learned from a peer that this member was removed from
  // the cluster (etcd: "the member has been permanently removed from the
  // cluster"); the server stops itself.
  virtual void OnLocalMemberRemoved() = 0;

  // ---- Calls other members forward to the leader (etcd 3.4 sends these over
  // peer HTTP). Answered with the same results and errors as the local
  // EtcdServer methods.
  virtual void LeaseRenew(int64_t lease_id, PeerDone<int64_t> done) = 0;
  virtual void LeaseTimeToLive(const etcdserverpb::LeaseTimeToLiveRequest& req,
                               PeerDone<etcdserverpb::LeaseTimeToLiveResponse> done) = 0;
  virtual void MemberPromote(const etcdserverpb::MemberPromoteRequest& req,
                             PeerDone<etcdserverpb::MemberPromoteResponse> done) = 0;

  // The local view of the cluster, for a member joining with
  // --initial-cluster-state=existing (etcd GET /members on a peer URL).
  virtual serverpb::ClusterInfo ClusterInfo() const = 0;

  // etcd's peer /members/hashkv: this member's HashKV at `revision` (0:
  // current), for corruption checks; ErrCompacted / ErrFutureRev as HashKV.
  virtual void HashKV(int64_t revision, PeerDone<etcdserverpb::HashKVResponse> done) {
    (void)revision;
    std::move(done)(absl::UnimplementedError("HashKV"));
  }
};

class Transport {
 public:
  virtual ~Transport() = default;

  // Registers the handler for incoming traffic. Called once by the server
  // before any other method; `handler` outlives the transport's use of it
  // (until Stop returns).
  virtual void SetHandler(PeerHandler* handler) { (void)handler; }

  // Stops all streams and calls; afterwards no handler method is called.
  // Idempotent. Called by the server's Stop.
  virtual void Stop() {}

  // Sends raft messages to their `to` members, best effort and never
  // blocking (a lost message is recovered by raft): each peer has a bounded
  // queue; when it is full, messages are dropped and the peer reported
  // unreachable through the `unreachable` callback set below. Called on the
  // raft loop after the Ready's state is durable (persist-before-send).
  // MsgSnap is never passed here (see SendSnapshot).
  virtual void Send(std::vector<raftpb::Message> messages) = 0;

  // Streams a MsgSnap `msg` and then the file `db_path` (a consistent copy
  // of the backend) in chunks to msg.to(); `done` gets OK once the peer has
  // stored the file and accepted the message, or the error. The transport
  // removes `db_path` when done. Never blocks the caller.
  virtual void SendSnapshot(raftpb::Message msg, std::string db_path,
                            absl::AnyInvocable<void(absl::Status) &&> done) {
    (void)msg;
    std::move(done)(absl::UnavailableError("no peer transport"));
  }

  // Peer set, kept in step with the applied membership. Unknown IDs in
  // Update/Remove are ignored; AddPeer of a known ID updates its URLs.
  virtual void AddPeer(uint64_t id, const std::vector<std::string>& peer_urls) {
    (void)id;
    (void)peer_urls;
  }
  virtual void UpdatePeer(uint64_t id, const std::vector<std::string>& peer_urls) {
    (void)id;
    (void)peer_urls;
  }
  virtual void RemovePeer(uint64_t id) { (void)id; }

  // Since when the outgoing stream to `id` has been continuously connected
  // (etcd rafthttp ActiveSince), nullopt if it is not connected now. Used by
  // the reconfiguration safety checks.
  virtual std::optional<std::chrono::steady_clock::time_point> ActiveSince(uint64_t id) {
    (void)id;
    return std::nullopt;
  }

  // Set once by the server: called (from a transport thread) when messages
  // to `id` could not be delivered, so raft can ReportUnreachable.
  virtual void SetUnreachableCallback(absl::AnyInvocable<void(uint64_t id)> cb) { (void)cb; }

  // ---- Forwarded calls to member `to` (the leader); errors keep their code
  // and message. Unavailable when the peer cannot be reached in `timeout`.
  virtual void LeaseRenew(uint64_t to, int64_t lease_id, std::chrono::milliseconds timeout,
                          PeerDone<int64_t> done) {
    (void)to;
    (void)lease_id;
    (void)timeout;
    std::move(done)(absl::UnavailableError("no peer transport"));
  }
  virtual void LeaseTimeToLive(uint64_t to, const etcdserverpb::LeaseTimeToLiveRequest& req,
                               std::chrono::milliseconds timeout,
                               PeerDone<etcdserverpb::LeaseTimeToLiveResponse> done) {
    (void)to;
    (void)req;
    (void)timeout;
    std::move(done)(absl::UnavailableError("no peer transport"));
  }
  virtual void MemberPromote(uint64_t to, const etcdserverpb::MemberPromoteRequest& req,
                             std::chrono::milliseconds timeout,
                             PeerDone<etcdserverpb::MemberPromoteResponse> done) {
    (void)to;
    (void)req;
    (void)timeout;
    std::move(done)(absl::UnavailableError("no peer transport"));
  }
  // Member `to`'s HashKV at `revision` (PeerHandler::HashKV over the peer
  // network), for the corruption checks.
  virtual void HashKV(uint64_t to, int64_t revision, std::chrono::milliseconds timeout,
                      PeerDone<etcdserverpb::HashKVResponse> done) {
    (void)to;
    (void)revision;
    (void)timeout;
    std::move(done)(absl::UnimplementedError("peer HashKV"));
  }

  // Asks the members at `peer_urls` (tried in order, each within `timeout`)
  // for their cluster view; the first answer wins. Blocking; used at
  // start-up by a member joining with --initial-cluster-state=existing.
  virtual absl::StatusOr<serverpb::ClusterInfo> FetchClusterInfo(
      const std::vector<std::string>& peer_urls, std::chrono::milliseconds timeout) {
    (void)peer_urls;
    (void)timeout;
    return absl::UnavailableError("no peer transport");
  }
};

// Drops every message: the only member has no one to talk to.
class NoopTransport final : public Transport {
 public:
  void Send(std::vector<raftpb::Message>) override {}
};

}  // namespace cppetcd::server

#endif  // CPPETCD_SERVER_TRANSPORT_H_
