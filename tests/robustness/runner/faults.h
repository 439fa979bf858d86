// The robustness runner's fault schedule and injector. A schedule is a list
// of faults, each with a start offset from the beginning of the fault window
// and a hold time, drawn from the run's seed alone (same seed, same kinds,
// same targets, same times). The injector applies them one at a time to a
// real cluster (cluster_harness.h) with a FaultProxy on every peer port:
// injects, holds, recovers. A "leader" target is resolved when the fault
// starts (whoever leads then).
//
// Thread-safety: FaultInjector drives the Cluster and must be used from the
// thread that owns the Cluster.
#ifndef CPPETCD_TESTS_ROBUSTNESS_RUNNER_FAULTS_H_
#define CPPETCD_TESTS_ROBUSTNESS_RUNNER_FAULTS_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cluster_harness.h"

namespace cppetcd::robustness {

enum class FaultKind {
  kKill,           // SIGKILL a random member; restart it after the hold
  kKillLeader,     // SIGKILL the leader; restart it after the hold
  kPauseLeader,    // SIGSTOP the leader; SIGCONT after the hold
  kPartition,      // cut a random member off from all peers, both ways
  kIsolateLeader,  // the same for the leader
  kResetPeer,      // one-way: connections into a random member's peer
                   // port are reset and refused; its own dials still work
  kReplace,        // remove a random non-leader member, add it back with a
                   // fresh data dir (etcdctl member remove / add)
  kSlowPeer,       // a random member's peer links (through its proxy) delay
                   // every chunk by 50..300 ms plus 0..100 ms jitter
  kLossyPeer,      // a random member's peer connections are reset at
                   // 1..10 % of chunks (lost segments break the stream)
  kEnospc,         // a random member's data dir (its own size-limited
                   // tmpfs) is filled up; freed after the hold, the member
                   // restarted if it exited
  kClockJump,      // a random member's wall clock (CLOCK_REALTIME, through
                   // libfaketime) jumps by -1 h .. +1 h; back after the hold
  kPowerLoss,      // a random member loses power: SIGKILL, then its writes
                   // not yet fsynced are dropped (page by page, seeded;
                   // cppetcd-powerloss-apply --mode random) in the WAL and
                   // the LMDB file alike; restarted after the hold
  kPowerLossAll,   // the same for every member at once
  kSlowFsync,      // a random member's fsync/fdatasync each sleep
                   // 50..500 ms first (the interposer's delay file)
  // --net netns only (netns.h): nftables drops between the members'
  // network namespaces.
  kNftPartition,      // a seeded minority (1..(n-1)/2 members) and the
                      // rest cut off from each other, both ways
  kNftOneWay,         // packets from a seeded set A (1..n-1 members) to
                      // the rest dropped; the other way kept
  kNftIsolateLeader,  // the leader cut off from every other member
};

// "kill", "kill-leader", "pause-leader", "partition", "isolate-leader",
// "reset-peer", "replace", "slow-peer", "lossy-peer", "enospc", "clock-jump",
// "power-loss", "power-loss-all", "slow-fsync", "nft-partition", "nft-oneway",
// "nft-isolate-leader".
std::string FaultName(FaultKind kind);
std::optional<FaultKind> ParseFaultName(const std::string& name);
std::vector<FaultKind> AllFaultKinds();

// How members reach each other: through a FaultProxy on every peer port,
// on loopback (the default), or each member in its own network namespace
// with nftables between them (netns.h).
enum class NetMode { kProxy, kNetns };
// Whether `kind` can be injected in `mode` (proxy kinds need the proxies,
// nft kinds the namespaces; the rest work in both).
bool KindWorksIn(FaultKind kind, NetMode mode);
// AllFaultKinds() that work in `mode`, in the same order.
std::vector<FaultKind> FaultKindsFor(NetMode mode);
// The members in bit i of `mask` (i < members), ascending.
std::vector<int> MembersOf(int mask, int members);

struct ScheduledFault {
  FaultKind kind = FaultKind::kKill;
  int target = 0;  // member index for non-leader kinds
  std::chrono::milliseconds start{0};  // offset in the fault window
  std::chrono::milliseconds hold{0};   // how long the fault lasts
  int param = 0;  // kSlowPeer: delay ms; kLossyPeer: resets per mille;
                  // kClockJump: offset in seconds; kPowerLoss(All): the
                  // crash tool's seed; kSlowFsync: delay ms;
                  // kNftPartition: the minority, kNftOneWay: the set whose
                  // packets are dropped (bit i = member i)
  int jitter_ms = 0;  // kSlowPeer
};

// Faults for a window of `window` on `members` members, kinds cycling
// through a seeded shuffle of `kinds` so that a run covers as many kinds as
// fit. Pure function of its arguments.
std::vector<ScheduledFault> MakeSchedule(uint64_t seed, int members,
                                         const std::vector<FaultKind>& kinds,
                                         std::chrono::milliseconds window);

// What happened to one scheduled fault.
struct FaultRecord {
  FaultKind kind = FaultKind::kKill;
  std::string member;       // the member it hit ("" if skipped)
  int64_t start_ns = 0;     // MonotonicNowNs() at injection
  int64_t end_ns = 0;       // at recovery
  bool injected = false;
  std::string note;         // why skipped, or recovery problems
};

// Size-limited tmpfs mounts for members' data dirs, for the ENOSPC fault.
// Mounted before the cluster starts (needs CAP_SYS_ADMIN); unmounted
// (detached) on destruction, which must come after the members stopped.
// Not thread-safe.
class TmpfsDataDirs {
 public:
  static absl::StatusOr<std::unique_ptr<TmpfsDataDirs>> Mount(const std::vector<std::string>& dirs,
                                                              int size_mib);
  ~TmpfsDataDirs();
  TmpfsDataDirs(const TmpfsDataDirs&) = delete;
  TmpfsDataDirs& operator=(const TmpfsDataDirs&) = delete;

  bool Mounted(const std::string& dir) const;
  // Writes a ballast file into `dir` until the tmpfs is full; returns the
  // bytes written.
  absl::StatusOr<int64_t> Fill(const std::string& dir);
  // Removes the ballast of `dir` / of every mount.
  void Free(const std::string& dir);
  void FreeAll();

 private:
  TmpfsDataDirs() = default;
  std::vector<std::string> dirs_;  // mounted
  int size_mib_ = 0;
};

// libfaketime's preload library, or "" if it is not installed.
std::string FaketimeLibrary();
// Writes `dir`/cppetcd-faketime, a wrapper that runs `server` with
// libfaketime preloaded, faking only CLOCK_REALTIME (the monotonic clock is
// real) by the offset in `dir`/clock.<--name> (re-read every second), and
// creates those files ("+0") for `names`. Returns the wrapper's path.
absl::StatusOr<std::string> ClockWrapper(const std::string& dir, const std::string& server,
                                         const std::vector<std::string>& names);
// Sets member `name`'s wall-clock offset (e.g. "+3600s", "+0").
absl::Status SetClockOffset(const std::string& dir, const std::string& name,
                            const std::string& offset);

// The power-loss interposer (libcppetcd_powerloss.so) and its crash tool, or
// "" if they were not built (sanitizer builds).
std::string PowerLossLibrary();
std::string PowerLossApplyTool();
// Writes `dir`/cppetcd-powerloss, a wrapper that runs `server` (which may be
// the ClockWrapper) with the interposer added to LD_PRELOAD. With
// `undo_logs`: CPPETCD_POWERLOSS_DIR is the member's --data-dir and its
// undo log PowerLossLog(dir, name). With `fsync_delay`: the member's
// fsync delay file is `dir`/fsync-delay.<name>, created "0" for `names`.
// Returns the wrapper's path.
absl::StatusOr<std::string> PowerLossWrapper(const std::string& dir, const std::string& server,
                                             const std::vector<std::string>& names,
                                             bool undo_logs, bool fsync_delay);
std::string PowerLossLog(const std::string& dir, const std::string& name);
// Sets member `name`'s fsync delay (0 = none); seen within 100 ms.
absl::Status SetFsyncDelay(const std::string& dir, const std::string& name, int delay_ms);

class NetnsNetwork;

class FaultInjector {
 public:
  explicit FaultInjector(integration::Cluster* cluster) : cluster_(cluster) {}
  // Where kEnospc can act (null: it is skipped).
  void set_tmpfs(TmpfsDataDirs* tmpfs) { tmpfs_ = tmpfs; }
  // Where the members' libfaketime offset files are (clock.<member name>,
  // see ClockWrapper); "" = kClockJump is skipped.
  void set_clock_dir(std::string dir) { clock_dir_ = std::move(dir); }
  // Where the members' undo logs and fsync delay files are (see
  // PowerLossWrapper); "" = kPowerLoss(All) / kSlowFsync are skipped.
  void set_powerloss_dir(std::string dir) { powerloss_dir_ = std::move(dir); }
  void set_fsync_delay_dir(std::string dir) { fsync_delay_dir_ = std::move(dir); }
  // The members' namespaces (--net netns); null: nft kinds are skipped.
  void set_netns(NetnsNetwork* net) { net_ = net; }
  // Kinds to leave out (recorded as skipped) without changing the schedule.
  void set_skip(std::vector<FaultKind> kinds) { skip_ = std::move(kinds); }

  // Runs `schedule` from now; a fault whose start is past `window` is not
  // begun. Appends to `records` one record per fault begun or skipped, the
  // failed one included. A recovery that fails (member does not restart)
  // is an error and ends the schedule.
  absl::Status Run(const std::vector<ScheduledFault>& schedule, std::chrono::milliseconds window,
                   std::vector<FaultRecord>* records);
  // Undoes everything: heals the proxies or the nft rules, SIGCONTs paused
  // members, restarts stopped ones, and waits for an agreed leader.
  absl::Status HealAll(std::chrono::milliseconds timeout);

 private:
  absl::Status Apply(const ScheduledFault& fault, FaultRecord* record);
  absl::Status FillDisk(int target, std::chrono::milliseconds hold, FaultRecord* record);
  // kNftPartition / kNftOneWay / kNftIsolateLeader (`leader` for the last).
  absl::Status NftCut(const ScheduledFault& fault, int leader, FaultRecord* record);
  // SIGKILLs `targets`, runs the crash tool on each one's undo log (then
  // empties it), sleeps `hold`, restarts them.
  absl::Status PowerLoss(const std::vector<int>& targets, const ScheduledFault& fault,
                         FaultRecord* record);
  // The leader's index among running members, or -1 if none agreed within
  // 3 s.
  int Leader();

  integration::Cluster* cluster_;
  std::set<int> paused_;  // members stopped with SIGSTOP
  TmpfsDataDirs* tmpfs_ = nullptr;
  std::string clock_dir_;
  std::string powerloss_dir_;
  std::string fsync_delay_dir_;
  std::vector<FaultKind> skip_;
  NetnsNetwork* net_ = nullptr;
};

}  // namespace cppetcd::robustness

#endif  // CPPETCD_TESTS_ROBUSTNESS_RUNNER_FAULTS_H_
