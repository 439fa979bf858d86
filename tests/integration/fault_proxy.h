// A fault-injecting TCP proxy for cluster integration tests: listens on a
// loopback port the OS picks and forwards every accepted connection to a
// target port on 127.0.0.1. A member advertises the proxy's port as its peer
// URL and listens on the real one, so the proxy sees every connection other
// members open INTO that member; switching its mode cuts that traffic.
//
// Thread-safety: all public methods are thread-safe; one internal thread
// moves the bytes.
#ifndef CPPETCD_TESTS_INTEGRATION_FAULT_PROXY_H_
#define CPPETCD_TESTS_INTEGRATION_FAULT_PROXY_H_

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"

namespace cppetcd::integration {

class FaultProxy {
 public:
  enum class Mode {
    // Bytes flow both ways.
    kPass,
    // Connections are accepted and kept open, but every byte in either
    // direction is read and dropped (a silent network partition: peers see
    // no error, only timeouts). New connections are accepted but never
    // connected upstream.
    kBlackhole,
    // Every open connection is reset (RST) and new ones are accepted and
    // reset at once (like a crashed host or a firewall REJECT).
    kReset,
  };

  // Listens on 127.0.0.1:<free port> and forwards to 127.0.0.1:target_port.
  static absl::StatusOr<std::unique_ptr<FaultProxy>> Start(int target_port);
  // Stops the thread and closes every socket.
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  int port() const { return port_; }
  int target_port() const { return target_port_; }

  // Switches the mode. Leaving kBlackhole resets every connection open at
  // that moment (their byte streams lost data, so they cannot be resumed);
  // the peers then reconnect through the proxy.
  void SetMode(Mode mode);
  Mode mode() const;

  // Treats every connection opened by one of `pids` (found through
  // /proc/net/tcp and /proc/<pid>/fd, so whatever the transport) as
  // blackholed, both ways, whatever the mode; an empty list lifts that.
  // Together with kBlackhole on the member's own proxy this cuts a member
  // off in both directions, even though all members share 127.0.0.1.
  // Connections that stop being cut are reset, as when leaving kBlackhole.
  void SetBlockedSources(std::vector<pid_t> pids);

  // Holds every chunk of bytes read (either direction) for `delay` plus a
  // uniform random [0, jitter] before forwarding it; chunks of one
  // connection keep their order (it is TCP), chunks of different
  // connections may overtake each other. Zero and zero (the default): no
  // delay. Applies to bytes read from now on.
  void SetDelay(std::chrono::milliseconds delay, std::chrono::milliseconds jitter = {});
  // A lossy link on a byte stream: each chunk read (either direction) resets
  // its connection with probability `per_mille` / 1000 (the dialer must
  // reconnect, as after lost segments broke the stream). 0 (the default):
  // never. Range [0, 1000].
  void SetResetPerMille(int per_mille);

  // Connections reset by SetResetPerMille so far.
  int64_t lossy_resets() const { return lossy_resets_.load(); }
  // Connections accepted so far (for tests of the proxy itself).
  int64_t accepted() const { return accepted_.load(); }
  // Bytes dropped while blackholed.
  int64_t dropped_bytes() const { return dropped_.load(); }

 private:
  FaultProxy() = default;
  void Loop();

  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  int port_ = 0;
  int target_port_ = 0;
  mutable std::mutex mu_;
  Mode mode_ ABSL_GUARDED_BY(mu_) = Mode::kPass;
  std::vector<pid_t> blocked_ ABSL_GUARDED_BY(mu_);
  uint64_t mode_epoch_ ABSL_GUARDED_BY(mu_) = 0;  // bumped by every change
  std::chrono::milliseconds delay_ ABSL_GUARDED_BY(mu_){0};
  std::chrono::milliseconds jitter_ ABSL_GUARDED_BY(mu_){0};
  int reset_per_mille_ ABSL_GUARDED_BY(mu_) = 0;  // [0, 1000]
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> accepted_{0};
  std::atomic<int64_t> dropped_{0};
  std::atomic<int64_t> lossy_resets_{0};
  std::thread thread_;
};

}  // namespace cppetcd::integration

#endif  // CPPETCD_TESTS_INTEGRATION_FAULT_PROXY_H_
