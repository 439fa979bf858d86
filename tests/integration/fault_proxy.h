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
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> accepted_{0};
  std::atomic<int64_t> dropped_{0};
  std::thread thread_;
};

}  // namespace cppetcd::integration

#endif  // CPPETCD_TESTS_INTEGRATION_FAULT_PROXY_H_
