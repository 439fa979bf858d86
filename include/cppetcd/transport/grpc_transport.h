// server::Transport over cppetcd's own gRPC service peerpb.Peer (the role
// of etcd 3.4 etcdserver/api/rafthttp): one long-lived client stream of
// MessageBatches per peer for raft messages, a chunked stream per snapshot,
// and unary calls for what followers forward to the leader.
//
// Sending side: each peer has a bounded queue and a sender thread that
// connects (exponential backoff between attempts), opens Peer.Stream and
// writes everything queued as batches of at most max_batch_bytes. When a
// stream breaks or a peer cannot be reached, its queued messages are dropped
// and the unreachable callback is called (at most about once per
// min_backoff). Send never blocks; a slow or dead peer delays nobody else.
//
// Receiving side: the gRPC server calls the PeerHandler; a stream or
// snapshot from another cluster is refused (FAILED_PRECONDITION, "cluster ID
// mismatch"), and before SetHandler or after Stop every call is UNAVAILABLE.
//
// Thread-safety: every method may be called from any thread.
#ifndef CPPETCD_TRANSPORT_GRPC_TRANSPORT_H_
#define CPPETCD_TRANSPORT_GRPC_TRANSPORT_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppetcd/server/transport.h"
#include "cppetcd/util/env.h"
#include "cppetcd/util/clock.h"
#include "cppetcd/util/histogram.h"
#include "cppetcd/util/log.h"
#include "cppetcd/util/tls.h"

namespace grpc {
class ServerCredentials;
class ChannelCredentials;
}  // namespace grpc

namespace cppetcd::transport {

struct TransportOptions {
  // The local member's ID (log fields, stream metadata). 0: taken from the
  // handler's MemberId() once SetHandler is called.
  uint64_t member_id = 0;
  // --listen-peer-urls: "http://host:port" (port 0: the OS picks one, see
  // BoundUrls). "https://" needs server_credentials.
  std::vector<std::string> listen_peer_urls;
  util::Logger logger{"rafthttp"};
  // Per peer: messages waiting to be written; beyond this Send drops them
  // and reports the peer unreachable (etcd: streamBufSize 4096).
  size_t max_queued_messages_per_peer = 4096;
  // Upper bound of one MessageBatch (a single larger message goes alone).
  size_t max_batch_bytes = 4 << 20;
  // Size of the data part of each snapshot chunk.
  size_t snapshot_chunk_bytes = 1 << 20;
  // Wait between connection attempts to a peer: doubles from min to max,
  // back to min after a successful connection. Also given to gRPC as its
  // channels' reconnect backoff.
  std::chrono::milliseconds min_backoff{100};
  std::chrono::milliseconds max_backoff{2000};
  // How long one connection attempt (TCP and HTTP/2 handshakes) may take
  // before it counts as failed (a black-holed peer); also gRPC's minimum
  // connect timeout for the channels.
  std::chrono::milliseconds connect_timeout{1000};
  // HTTP/2 keepalive on peer connections: a silent peer is dropped after
  // about keepalive_time + keepalive_timeout.
  std::chrono::milliseconds keepalive_time{2000};
  std::chrono::milliseconds keepalive_timeout{2000};
  // Interval of the round-trip probes (PeerRoundTripTimes); 0: none.
  std::chrono::milliseconds rtt_probe_interval{2000};
  // Longest one batch write on a raft stream may block (flow control, a
  // peer that stopped reading, a wait stuck inside gRPC) before the stream
  // is cancelled and reconnected (etcd's ConnWriteTimeout, 5 s); 0: none.
  std::chrono::milliseconds write_timeout{5000};
  // Optional: called with (peer ID, seconds) for each successful probe, on
  // the prober thread (e.g. api::PeerRttMetrics::Observe); must not block.
  std::function<void(uint64_t peer_id, double seconds)> on_peer_rtt;
  // TLS for https:// URLs (listen and peers; http:// ones stay plain), e.g.
  // from NewPeerCredentials. Null: "https://" URLs are refused.
  std::shared_ptr<grpc::ServerCredentials> server_credentials;
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials;
  // etcd's peer TLSInfo.ServerName: when not empty, the name an https
  // peer's certificate is checked against (and sent as SNI) instead of the
  // peer URL's host; set by DNS discovery (cmd/dns_discovery.h).
  std::string tls_server_name;
  // Files: snapshots received (written at the handler's SnapshotDbPath via
  // "<path>.tmp", synced, renamed, directory synced) and sent (read, then
  // removed). Null: util::Env::Default(). Must outlive the transport.
  util::Env* env = nullptr;
  // Reconnect backoff, the probe period, unreachable reports and
  // ActiveSince (which the server compares with its timer_clock: pass the
  // same clock); null: SystemClock. What times gRPC itself (call deadlines,
  // connect and write timeouts, round trips) stays on the real clock.
  util::Clock* clock = nullptr;
};

// gRPC credentials for the peer port from --peer-cert-file, --peer-key-file,
// --peer-trusted-ca-file, --peer-client-cert-auth, --peer-crl-file (etcd
// 3.4 rafthttp): the server presents the certificate and, with
// client_cert_auth, requires and verifies the peer's client certificate
// against the CA; the channel presents the same certificate as its client
// certificate and verifies the server against the CA (host name included),
// or against the system's roots when no CA is given (as Go's client). Only
// a self-signed certificate (--peer-auto-tls) with no CA skips server
// verification, as etcd does. With info.crl_file (needs a CA) both directions refuse a
// certificate the CRLs revoke; the CRLs are written as hashed files into
// `crl_directory` (gRPC reads them from there; start-up only).
// With `files_directory`, the certificate, key and CA files are looked at
// again every second: a changed set that passes util::ValidateTlsInfo (the
// key matches the certificate, the CA parses) is copied into that directory
// (key and certificate as one file, each file replaced by rename) and gRPC's
// file watcher gives it to new connections on both sides; a set that does
// not pass leaves the last good one in use, logged ("cannot reload the peer
// TLS certificate files"). Without it, or for the server side of
// client_cert_auth without a CA, the files are read here only.
// allowed_cn / allowed_hostname (--peer-cert-allowed-cn,
// --peer-cert-allowed-hostname; util::CheckCertificateIdentity) are checked
// as etcd 3.4 does, on both sides when a connection is set up: the dialing
// member refuses a server certificate that fails them, and with
// client_cert_auth the listener refuses such a client certificate; the
// connection ends before any call and the refusing member logs "rejected
// connection" with "client certificate authentication failed" (through
// `logger`, rate-limited). Errors of util::ValidateTlsInfo; InvalidArgument
// for a CRL without a CA.
struct PeerCredentials {
  std::shared_ptr<grpc::ServerCredentials> server;
  std::shared_ptr<grpc::ChannelCredentials> channel;
  // Keeps the files of `files_directory` up to date (a thread); keep it
  // alive as long as the credentials are in use.
  std::shared_ptr<void> files;
};
absl::StatusOr<PeerCredentials> NewPeerCredentials(
    const util::TlsInfo& info, const std::string& crl_directory = "",
    const std::string& files_directory = "", util::Logger logger = util::GetLogger("rafthttp"));

// The server side of NewPeerCredentials (same files mirror, reload, CRL
// directory, client-certificate and allowed-hostname checks) for gRPC
// listening on the gRPC-only client URLs (--listen-client-http-urls set),
// from the client flags (--cert-file, --key-file, --trusted-ca-file,
// --client-cert-auth, --client-crl-file, --client-cert-allowed-hostname);
// errors name those flags, log lines say "client". `channel` stays null.
// Calls on such a connection see the client's address in
// ServerContext::peer() and, with a verified client certificate, its CN as
// the auth context's "x509_common_name".
// Both this and NewPeerCredentials set SSL_MODE_RELEASE_BUFFERS on every
// OpenSSL SSL object the process creates from then on (gRPC's included):
// an idle TLS connection keeps no record buffers (issue 12).
absl::StatusOr<PeerCredentials> NewClientServerCredentials(const util::TlsInfo& info,
                                                           const std::string& crl_directory,
                                                           const std::string& files_directory,
                                                           util::Logger logger);

// Counters of one peer's outgoing raft stream (monotonic since AddPeer).
struct PeerStats {
  uint64_t sent_messages = 0;
  uint64_t sent_batches = 0;
  uint64_t sent_bytes = 0;     // serialized MessageBatch bytes
  uint64_t dropped_messages = 0;
  uint64_t stream_attempts = 0;  // connection attempts (first one included)
  uint64_t write_timeouts = 0;   // streams cancelled after write_timeout
};

class GrpcTransport final : public server::Transport {
 public:
  // Validates the options (URL syntax, sizes); starts nothing.
  // InvalidArgument on a malformed URL or zero sizes.
  static absl::StatusOr<std::unique_ptr<GrpcTransport>> Create(TransportOptions options);

  ~GrpcTransport() override;  // Stop()s

  // Starts the gRPC server on every listen URL. Errors: Unavailable with
  // etcd's wording, e.g. "listen tcp 127.0.0.1:2380: bind: address already
  // in use"; InvalidArgument for https without server_credentials;
  // FailedPrecondition if called twice or after Stop.
  absl::Status Listen();

  // "http://host:port" per listen URL with the actual port (after Listen;
  // empty before).
  std::vector<std::string> BoundUrls() const;

  // Counters of the stream to `id`; nullopt for an unknown peer.
  std::optional<PeerStats> Stats(uint64_t id) const;

  // Peer round-trip times (etcd_network_peer_round_trip_time_seconds
  // {To="<peer id hex>"}): every rtt_probe_interval each peer gets a Probe
  // call, timed in seconds into a histogram with etcd's buckets (0.0001 s
  // doubling, 16 buckets). Snapshot per current peer ID; failed probes are
  // not observed. Thread-safe.
  std::map<uint64_t, util::HistogramSnapshot> PeerRoundTripTimes() const;

  // ---- server::Transport (semantics in cppetcd/server/transport.h).
  // Notes: Stop() must not be called from inside a PeerHandler method (it
  // waits for those to return). SendSnapshot after Stop calls `done`
  // inline with Unavailable; otherwise `done` runs on the snapshot thread.
  void SetHandler(server::PeerHandler* handler) override;
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
                  server::PeerDone<int64_t> done) override;
  void LeaseTimeToLive(uint64_t to, const etcdserverpb::LeaseTimeToLiveRequest& req,
                       std::chrono::milliseconds timeout,
                       server::PeerDone<etcdserverpb::LeaseTimeToLiveResponse> done) override;
  // Member `to`'s HashKV at `revision` (peer RPC HashKV), for corrupt checks.
  void HashKV(uint64_t to, int64_t revision, std::chrono::milliseconds timeout,
              server::PeerDone<etcdserverpb::HashKVResponse> done) override;
  void MemberPromote(uint64_t to, const etcdserverpb::MemberPromoteRequest& req,
                     std::chrono::milliseconds timeout,
                     server::PeerDone<etcdserverpb::MemberPromoteResponse> done) override;
  absl::StatusOr<serverpb::ClusterInfo> FetchClusterInfo(
      const std::vector<std::string>& peer_urls, std::chrono::milliseconds timeout) override;

  class Impl;

 private:
  explicit GrpcTransport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "http://host:port" -> "host:port" (the gRPC target), "unix://p" ->
// "unix:p"; `secure` tells whether the scheme was https or unixs.
// InvalidArgument for other schemes, a missing port or a path.
struct PeerUrl {
  std::string target;  // gRPC's: "host:port", or "unix:<path>"
  std::string host;
  int port = 0;
  bool secure = false;  // https:// or unixs://
  // unix:// and unixs:// (etcd 3.4): the socket's path is the URL's host
  // part, relative to the working directory ("unix://localhost:2380": the
  // file "localhost:2380"); empty for TCP.
  std::string unix_path;
};
absl::StatusOr<PeerUrl> ParsePeerUrl(const std::string& url);

}  // namespace cppetcd::transport

#endif  // CPPETCD_TRANSPORT_GRPC_TRANSPORT_H_
