// Test harness for real-process integration tests: a server binary (cppetcd
// or, to validate the tests themselves, etcd 3.4) started on loopback ports
// the OS picks, driven through etcdctl or the generated gRPC stubs.
//
// Every wait in here polls a condition under a deadline; every loop is
// bounded in count and time. Processes are stopped by PID only.
//
// Thread-safety: ServerProcess and BackgroundCommand are not thread-safe;
// the free functions are.
#ifndef CPPETCD_TESTS_INTEGRATION_HARNESS_H_
#define CPPETCD_TESTS_INTEGRATION_HARNESS_H_

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace cppetcd::integration {

// The server binary under test: $CPPETCD_TEST_SERVER if set and non-empty,
// else the `cppetcd` target's path compiled in (CPPETCD_DEFAULT_SERVER),
// else "" (tests then GTEST_SKIP; see CPPETCD_REQUIRE_SERVER below).
std::string ServerBinary();

// `cppetcd-crashtest` (cppetcd with its named crash points armed by
// $CPPETCD_CRASH_POINT; include/cppetcd/server/crash_points.h), or "" when
// not built.
std::string CrashTestServerBinary();

// True when `binary`'s file name is "etcd" (the reference implementation);
// used only where etcd's documented behaviour differs from cppetcd's
// specification (e.g. etcd re-raises SIGTERM instead of exiting 0).
bool IsReferenceEtcd(const std::string& binary);

// Path of etcdctl: $CPPETCD_TEST_ETCDCTL or /usr/bin/etcdctl.
std::string EtcdctlBinary();

// Path of the reference etcd: $CPPETCD_TEST_ETCD or /usr/bin/etcd.
std::string ReferenceEtcdBinary();

// A free TCP port on 127.0.0.1, found by binding a random port below the
// kernel's ephemeral range (so no outgoing connection can take it later)
// and releasing it; port 0 if that range is too small. Another process may
// still take it before it is used: callers retry on a bind failure.
absl::StatusOr<int> PickFreePort();

// A fresh directory under $TMPDIR (or /tmp), removed recursively on
// destruction unless $CPPETCD_TEST_KEEP_TMP is set.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Outcome of a finished child process.
struct CommandResult {
  int exit_code = -1;    // exit status; -1 if killed by a signal
  int term_signal = 0;   // the signal that ended it, 0 if it exited
  bool timed_out = false;  // killed by the harness at the deadline
  std::string out;       // all of stdout
  std::string err;       // all of stderr
};

// Runs argv[0] (an absolute path) with `stdin_data` on stdin, collecting
// stdout and stderr; kills it (SIGKILL, by PID) at `timeout`. `env` entries
// ("NAME=value") are added to (and override) the inherited environment.
CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& stdin_data,
                         const std::vector<std::string>& env, std::chrono::milliseconds timeout);

// Runs `etcdctl --endpoints <endpoint> --command-timeout=<t> <args...>` with
// ETCDCTL_API=3.
CommandResult Etcdctl(const std::string& endpoint, const std::vector<std::string>& args,
                      const std::string& stdin_data = "",
                      std::chrono::milliseconds timeout = std::chrono::seconds(15));

// etcdctl's stderr without its client-side JSON log lines ({"level":...}),
// which carry timestamps and random client ids.
std::string StripClientLogLines(const std::string& err);

// A child process running in the background with stdout and stderr sent to
// files; killed (SIGKILL, by PID) and reaped on destruction.
class BackgroundCommand {
 public:
  static absl::StatusOr<std::unique_ptr<BackgroundCommand>> Start(
      const std::vector<std::string>& argv, const std::vector<std::string>& env,
      const std::string& output_dir);
  ~BackgroundCommand();
  // Polls stdout until `pred(stdout so far)` holds; false at the deadline.
  bool WaitForStdout(const std::function<bool(const std::string&)>& pred,
                     std::chrono::milliseconds timeout);
  std::string Stdout() const;
  std::string Stderr() const;
  pid_t pid() const { return pid_; }
  // Sends SIGKILL and reaps. Idempotent.
  void Kill();

 private:
  BackgroundCommand() = default;
  pid_t pid_ = -1;
  std::string out_path_;
  std::string err_path_;
};

// Starts `etcdctl --endpoints <endpoint> <args...>` in the background (for
// `watch`).
absl::StatusOr<std::unique_ptr<BackgroundCommand>> StartEtcdctl(
    const std::string& endpoint, const std::vector<std::string>& args, const std::string& output_dir);

// One single-member server process with etcd-style flags. Stopped (SIGTERM,
// then SIGKILL after a deadline) and reaped on destruction, even when the
// test failed; its log is printed when the test has failed.
class ServerProcess {
 public:
  struct Options {
    std::string binary;       // default ServerBinary()
    std::string name = "integ";
    std::string data_dir;     // required; reused by Restart
    std::string log_path;     // default <data_dir>/../<name>.log
    std::vector<std::string> extra_flags;
    std::chrono::milliseconds ready_timeout = std::chrono::seconds(30);
    // When auth is enabled in the data dir (e.g. before a Restart): the
    // readiness probe authenticates as this user first. Empty: no auth.
    std::string ready_user;
    std::string ready_password;
  };

  // Picks ports, spawns the server and waits until a linearizable Range
  // succeeds. Retries with new ports (up to 3 times) if the process exits
  // before it is ready (e.g. a port was taken). On error the log tail is in
  // the message.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(Options options);
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // "127.0.0.1:<client port>"
  std::string ClientEndpoint() const;
  int client_port() const { return client_port_; }
  int peer_port() const { return peer_port_; }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  const Options& options() const { return options_; }
  Options& mutable_options() { return options_; }

  // A new channel to the client endpoint (insecure; its own connection).
  std::shared_ptr<grpc::Channel> NewChannel() const;

  // Sends SIGKILL and reaps.
  void Kill();
  // Sends SIGTERM and waits up to `timeout` for the exit; SIGKILL after.
  // Returns how the process ended.
  CommandResult Terminate(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // Starts the process again on the same ports and data dir and waits for
  // readiness. Requires !running().
  absl::Status Restart();

  // The whole log written so far by the server (stdout and stderr).
  std::string ReadLog() const;
  // Peak resident set size (VmHWM) in KiB from /proc/<pid>/status; -1 if
  // unavailable.
  int64_t PeakRssKib() const;

 private:
  explicit ServerProcess(Options options) : options_(std::move(options)) {}
  absl::Status Spawn();
  absl::Status WaitReady();
  std::optional<CommandResult> ReapIfExited();

  Options options_;
  int client_port_ = 0;
  int peer_port_ = 0;
  pid_t pid_ = -1;
};

// Waits until a linearizable Range on `endpoint` succeeds.
absl::Status WaitForServing(const std::string& endpoint, std::chrono::milliseconds timeout);

// Polls `cond` (about every 20 ms) until it holds or `timeout` passes.
bool PollUntil(const std::function<bool()>& cond, std::chrono::milliseconds timeout);

// Replaces every run of 16 lower-case hex digits (member, cluster and lease
// ids) with "<ID>".
std::string NormalizeIds(const std::string& s);

// Splits on '\n'; a trailing newline does not yield an empty last element.
std::vector<std::string> SplitLines(const std::string& s);

}  // namespace cppetcd::integration

// Skips the current test when no server binary is known.
#define CPPETCD_REQUIRE_SERVER()                                                     \
  do {                                                                               \
    if (::cppetcd::integration::ServerBinary().empty()) {                            \
      GTEST_SKIP() << "no server binary: set CPPETCD_TEST_SERVER (e.g. /usr/bin/etcd) " \
                      "or build the cppetcd target";                                 \
    }                                                                                \
  } while (0)

#endif  // CPPETCD_TESTS_INTEGRATION_HARNESS_H_
