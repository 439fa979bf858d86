// An in-memory peer network for tests that run several EtcdServer members
// in one process (so the cluster code paths run under ASan and TSan, which
// the gRPC transport cannot: Debian's gRPC is not instrumented).
//
// A MemHub is the network; it makes one MemTransport per member endpoint,
// named by the member's peer URL (e.g. "http://m0:2380": only an identifier
// here). A member's transport maps peer IDs to URLs from AddPeer/UpdatePeer,
// as the real transport does before it dials, and the hub delivers to the
// endpoint registered under that URL.
//
//  - Raft messages: Send queues them on the hub (bounded per destination);
//    one hub thread delivers them in order to the destination's
//    PeerHandler::Process. A refusal with PermissionDenied (the sender was
//    removed) is told to the sender's OnLocalMemberRemoved. Undeliverable
//    messages (link cut, member down or gone) are dropped and reported
//    through the sender's unreachable callback.
//  - Snapshots: SendSnapshot copies the file to the receiver's
//    SnapshotDbPath(index) (via ".tmp" and a rename), calls Process(msg),
//    then completes with OK; the source file is removed either way.
//  - Forwarded calls (LeaseRenew, LeaseTimeToLive, MemberPromote) run the
//    target's handler method on a hub call thread, answer Unavailable at
//    once when the link is down and DeadlineExceeded after `timeout`.
//  - FetchClusterInfo answers the ClusterInfo() of the first reachable
//    member among the URLs.
//  - ActiveSince: for a live link, the time it came up minus the hub's
//    `active_since_age` (default one hour, so etcd's 5 s health interval is
//    met at once; 0 makes freshly started or healed links count as new).
//
// Faults: Partition cuts every link between two sets of URLs (both
// directions; queued messages are dropped at delivery), Isolate cuts one
// URL from all others, Heal restores every link, SetDown takes an endpoint
// off the network without stopping its server.
//
// Lifetimes: the servers must be destroyed (or at least their transports
// stopped) before the hub. After MemTransport::Stop returns, no handler
// method and no completion callback of that transport runs any more;
// completions still pending then get Unavailable on Stop's thread.
//
// Thread-safety: every method of MemHub and MemTransport may be called from
// any thread.
#ifndef CPPETCD_TESTS_UNIT_SERVER_MEM_TRANSPORT_H_
#define CPPETCD_TESTS_UNIT_SERVER_MEM_TRANSPORT_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "cppetcd/server/transport.h"

namespace cppetcd::server::testing {

class MemHub;
class MemExecutor;

class MemTransport final : public Transport,
                           public std::enable_shared_from_this<MemTransport> {
 public:
  MemTransport(MemHub* hub, std::string url);
  ~MemTransport() override;

  MemTransport(const MemTransport&) = delete;
  MemTransport& operator=(const MemTransport&) = delete;

  // This endpoint's peer URL.
  const std::string& Url() const { return url_; }

  // ---- Transport
  void SetHandler(PeerHandler* handler) override;
  void Stop() override;
  void Send(std::vector<raftpb::Message> messages) override;
  void SendSnapshot(raftpb::Message msg, std::string db_path,
                    absl::AnyInvocable<void(absl::Status) &&> done) override;
  void AddPeer(uint64_t id, const std::vector<std::string>& peer_urls) override;
  void UpdatePeer(uint64_t id, const std::vector<std::string>& peer_urls) override;
  void RemovePeer(uint64_t id) override;
  std::optional<std::chrono::steady_clock::time_point> ActiveSince(uint64_t id) override;
  void SetUnreachableCallback(absl::AnyInvocable<void(uint64_t id)> cb) override;
  void LeaseRenew(uint64_t to, int64_t lease_id, std::chrono::milliseconds timeout,
                  PeerDone<int64_t> done) override;
  void LeaseTimeToLive(uint64_t to, const etcdserverpb::LeaseTimeToLiveRequest& req,
                       std::chrono::milliseconds timeout,
                       PeerDone<etcdserverpb::LeaseTimeToLiveResponse> done) override;
  void MemberPromote(uint64_t to, const etcdserverpb::MemberPromoteRequest& req,
                     std::chrono::milliseconds timeout,
                     PeerDone<etcdserverpb::MemberPromoteResponse> done) override;
  absl::StatusOr<serverpb::ClusterInfo> FetchClusterInfo(
      const std::vector<std::string>& peer_urls, std::chrono::milliseconds timeout) override;

  // The peer IDs currently known (AddPeer minus RemovePeer), for tests.
  std::vector<uint64_t> PeerIds() const;

  // A completion that has not run yet; Stop fails it.
  class Pending {
   public:
    virtual ~Pending() = default;
    virtual void Fail(absl::Status s) = 0;
    uint64_t token = 0;  // set by AddPending
  };

 private:
  friend class MemHub;
  template <class Arg>
  friend class OnceDone;

  // Pins the endpoint for a handler call or a completion: false once
  // stopped (or before SetHandler). Every true must be paired with Unpin.
  bool Pin();
  void Unpin();
  // The registered handler; only valid while pinned.
  PeerHandler* handler() const;
  bool Live() const;  // has a handler and is not stopped
  std::optional<std::string> UrlOf(uint64_t id) const;
  void ReportUnreachable(uint64_t id);  // pins itself
  // Registers `p` for Stop; false when already stopped.
  bool AddPending(std::shared_ptr<Pending> p);
  void ForgetPending(uint64_t token);
  // Runs `call(handler, done)` on the target's handler on a hub call thread.
  template <class T, class Call>
  void Forward(uint64_t to, std::chrono::milliseconds timeout, PeerDone<T> done, Call call);

  MemHub* const hub_;
  const std::string url_;

  mutable std::mutex mu_;
  std::condition_variable pins_cv_;
  PeerHandler* handler_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  int pins_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, std::vector<std::string>> peers_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::shared_ptr<Pending>> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t next_token_ ABSL_GUARDED_BY(mu_) = 1;

  std::mutex cb_mu_;  // held while the unreachable callback runs
  absl::AnyInvocable<void(uint64_t)> unreachable_cb_ ABSL_GUARDED_BY(cb_mu_);
};

class MemHub {
 public:
  struct Options {
    // How long a link counts as connected already when it comes up (see
    // ActiveSince above).
    std::chrono::milliseconds active_since_age{std::chrono::hours(1)};
    // Messages queued per destination before further ones are dropped.
    size_t queue_limit = 4096;
  };

  MemHub();
  explicit MemHub(Options options);
  // Stops the hub's threads; queued deliveries are dropped.
  ~MemHub();

  MemHub(const MemHub&) = delete;
  MemHub& operator=(const MemHub&) = delete;

  // A new endpoint at `url`; it replaces an earlier one with the same URL
  // (a restarted member gets a fresh transport). The endpoint is up.
  std::shared_ptr<MemTransport> NewTransport(const std::string& url);

  // Cuts every link between a URL in `a` and a URL in `b`.
  void Partition(const std::vector<std::string>& a, const std::vector<std::string>& b);
  // Cuts `url` from every other endpoint (present or future).
  void Isolate(const std::string& url);
  // Restores every cut link (not SetDown).
  void Heal();
  // Takes the endpoint at `url` off the network (down) or back.
  void SetDown(const std::string& url, bool down);
  // Whether messages between `a` and `b` get through now (both ways).
  bool Connected(const std::string& a, const std::string& b) const;

  // Test hook: hands `m` to the PeerHandler at `url` as if a peer sent it
  // and returns Process's answer (Unavailable if nothing is there).
  absl::Status ProcessAt(const std::string& url, raftpb::Message m);

  // Counters.
  uint64_t Delivered() const { return delivered_.load(); }
  uint64_t Dropped() const { return dropped_.load(); }
  uint64_t SnapshotsDelivered() const { return snapshots_.load(); }
  uint64_t RemovedRefusals() const { return refusals_.load(); }

 private:
  friend class MemTransport;

  std::shared_ptr<MemTransport> Find(const std::string& url) const;
  // Link state under mu_.
  bool ConnectedLocked(const std::string& a, const std::string& b) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<std::chrono::steady_clock::time_point> LinkUpSince(const std::string& from,
                                                                   const std::string& to) const;
  void Enqueue(std::shared_ptr<MemTransport> from, const std::string& to_url,
               std::vector<raftpb::Message> msgs);
  void DeliverSnapshot(std::shared_ptr<MemTransport> from, raftpb::Message msg,
                       std::string db_path, absl::AnyInvocable<void(absl::Status) &&> done);

  const Options options_;

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<MemTransport>> endpoints_ ABSL_GUARDED_BY(mu_);
  // Cut links as ordered (min, max) URL pairs; isolated URLs.
  std::set<std::pair<std::string, std::string>> cut_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> isolated_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> down_ ABSL_GUARDED_BY(mu_);
  // When each endpoint came (back) up, when links were last healed (a Heal
  // renews every link).
  std::map<std::string, std::chrono::steady_clock::time_point> up_since_ ABSL_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point healed_at_ ABSL_GUARDED_BY(mu_);
  // Messages waiting for the delivery thread, per destination URL.
  std::map<std::string, size_t> queued_per_dest_ ABSL_GUARDED_BY(mu_);

  std::atomic<uint64_t> delivered_{0};
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> snapshots_{0};
  std::atomic<uint64_t> refusals_{0};

  // Raft messages and timeouts; forwarded calls and snapshots.
  std::unique_ptr<MemExecutor> deliver_;
  std::unique_ptr<MemExecutor> calls_;
};

}  // namespace cppetcd::server::testing

#endif  // CPPETCD_TESTS_UNIT_SERVER_MEM_TRANSPORT_H_
