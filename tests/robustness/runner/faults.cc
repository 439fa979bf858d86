#include "faults.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <algorithm>
#include <iostream>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "history_io.h"
#include "netns.h"

namespace cppetcd::robustness {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

struct Named {
  FaultKind kind;
  const char* name;
};
constexpr Named kNames[] = {
    {FaultKind::kKill, "kill"},
    {FaultKind::kKillLeader, "kill-leader"},
    {FaultKind::kPauseLeader, "pause-leader"},
    {FaultKind::kPartition, "partition"},
    {FaultKind::kIsolateLeader, "isolate-leader"},
    {FaultKind::kResetPeer, "reset-peer"},
    {FaultKind::kReplace, "replace"},
    {FaultKind::kSlowPeer, "slow-peer"},
    {FaultKind::kLossyPeer, "lossy-peer"},
    {FaultKind::kEnospc, "enospc"},
    {FaultKind::kClockJump, "clock-jump"},
    {FaultKind::kPowerLoss, "power-loss"},
    {FaultKind::kPowerLossAll, "power-loss-all"},
    {FaultKind::kSlowFsync, "slow-fsync"},
    {FaultKind::kNftPartition, "nft-partition"},
    {FaultKind::kNftOneWay, "nft-oneway"},
    {FaultKind::kNftIsolateLeader, "nft-isolate-leader"},
};

}  // namespace

std::string FaultName(FaultKind kind) {
  for (const Named& n : kNames) {
    if (n.kind == kind) return n.name;
  }
  return "?";
}

std::optional<FaultKind> ParseFaultName(const std::string& name) {
  for (const Named& n : kNames) {
    if (name == n.name) return n.kind;
  }
  return std::nullopt;
}

std::vector<FaultKind> AllFaultKinds() {
  std::vector<FaultKind> out;
  for (const Named& n : kNames) out.push_back(n.kind);
  return out;
}

bool KindWorksIn(FaultKind kind, NetMode mode) {
  switch (kind) {
    case FaultKind::kPartition:
    case FaultKind::kIsolateLeader:
    case FaultKind::kResetPeer:
    case FaultKind::kSlowPeer:
    case FaultKind::kLossyPeer:
      return mode == NetMode::kProxy;
    case FaultKind::kNftPartition:
    case FaultKind::kNftOneWay:
    case FaultKind::kNftIsolateLeader:
      return mode == NetMode::kNetns;
    default:
      return true;
  }
}

std::vector<FaultKind> FaultKindsFor(NetMode mode) {
  std::vector<FaultKind> out;
  for (FaultKind k : AllFaultKinds()) {
    if (KindWorksIn(k, mode)) out.push_back(k);
  }
  return out;
}

std::vector<int> MembersOf(int mask, int members) {
  std::vector<int> out;
  for (int i = 0; i < members && i < 31; ++i) {
    if ((mask >> i) & 1) out.push_back(i);
  }
  return out;
}

std::vector<ScheduledFault> MakeSchedule(uint64_t seed, int members,
                                         const std::vector<FaultKind>& kinds,
                                         milliseconds window) {
  std::vector<ScheduledFault> out;
  if (kinds.empty() || members <= 0) return out;
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + 0xFA17);
  std::vector<FaultKind> order = kinds;
  std::shuffle(order.begin(), order.end(), rng);
  milliseconds t(300 + static_cast<int64_t>(rng() % 700));
  for (size_t i = 0; i < 1000 && t < window; ++i) {
    ScheduledFault f;
    f.kind = order[i % order.size()];
    f.target = static_cast<int>(rng() % members);
    f.start = t;
    switch (f.kind) {
      case FaultKind::kKill:
      case FaultKind::kKillLeader:
        f.hold = milliseconds(300 + rng() % 1700);
        break;
      case FaultKind::kPauseLeader:
        // Longer than the election timeout (500 ms) most of the time.
        f.hold = milliseconds(400 + rng() % 2100);
        break;
      case FaultKind::kReplace:
        f.hold = milliseconds(200 + rng() % 800);
        break;
      case FaultKind::kSlowPeer:
        f.hold = milliseconds(1500 + rng() % 2500);
        f.param = 50 + static_cast<int>(rng() % 251);
        f.jitter_ms = static_cast<int>(rng() % 101);
        break;
      case FaultKind::kLossyPeer:
        f.hold = milliseconds(1500 + rng() % 2500);
        f.param = 10 + static_cast<int>(rng() % 91);
        break;
      case FaultKind::kEnospc:
        f.hold = milliseconds(1000 + rng() % 2000);
        break;
      case FaultKind::kClockJump: {
        f.hold = milliseconds(2000 + rng() % 3000);
        static constexpr int kOffsets[] = {-3600, -600, -30, 30, 600, 3600};
        f.param = kOffsets[rng() % 6];
        break;
      }
      case FaultKind::kPowerLoss:
      case FaultKind::kPowerLossAll:
        f.hold = milliseconds(300 + rng() % 1700);
        f.param = static_cast<int>(rng() % 1'000'000'000);
        break;
      case FaultKind::kSlowFsync:
        f.hold = milliseconds(1500 + rng() % 2500);
        f.param = 50 + static_cast<int>(rng() % 451);
        break;
      case FaultKind::kNftPartition:
      case FaultKind::kNftOneWay: {
        f.hold = milliseconds(800 + rng() % 2200);
        // A minority for the partition (the rest keeps a quorum); any
        // proper subset for the one-way cut.
        const int most = f.kind == FaultKind::kNftPartition ? std::max(1, (members - 1) / 2)
                                                            : std::max(1, members - 1);
        const int size = 1 + static_cast<int>(rng() % static_cast<uint64_t>(most));
        std::vector<int> order(static_cast<size_t>(members));
        for (int i = 0; i < members; ++i) order[static_cast<size_t>(i)] = i;
        std::shuffle(order.begin(), order.end(), rng);
        for (int i = 0; i < size && i < members; ++i) f.param |= 1 << order[static_cast<size_t>(i)];
        break;
      }
      default:
        f.hold = milliseconds(800 + rng() % 2200);
        break;
    }
    out.push_back(f);
    // Room for recovery (a restart takes ~1 s) before the next fault.
    t += f.hold + milliseconds(700 + rng() % 800);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<TmpfsDataDirs>> TmpfsDataDirs::Mount(
    const std::vector<std::string>& dirs, int size_mib) {
  std::unique_ptr<TmpfsDataDirs> t(new TmpfsDataDirs());
  t->size_mib_ = size_mib;
  for (const std::string& d : dirs) {
    std::error_code ec;
    std::filesystem::create_directories(d, ec);
    const std::string opts = absl::StrCat("size=", size_mib, "m,mode=0700");
    if (::mount("tmpfs", d.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) != 0) {
      return absl::PermissionDeniedError(
          absl::StrCat("mount tmpfs on ", d, ": ", std::strerror(errno)));
    }
    t->dirs_.push_back(d);
  }
  return t;
}

TmpfsDataDirs::~TmpfsDataDirs() {
  for (const std::string& d : dirs_) {
    Free(d);
    ::umount2(d.c_str(), MNT_DETACH);
  }
}

bool TmpfsDataDirs::Mounted(const std::string& dir) const {
  return std::find(dirs_.begin(), dirs_.end(), dir) != dirs_.end();
}

absl::StatusOr<int64_t> TmpfsDataDirs::Fill(const std::string& dir) {
  const std::string path = dir + "/ballast";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_APPEND, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", path, ": ", std::strerror(errno)));
  const std::string chunk(1 << 20, 'x');
  int64_t written = 0;
  // Bounded: the mount holds size_mib_ MiB.
  for (int i = 0; i < size_mib_ + 16; ++i) {
    ssize_t n = ::write(fd, chunk.data(), chunk.size());
    if (n <= 0) break;  // ENOSPC
    written += n;
  }
  // The last partial pages: small writes until nothing fits.
  for (int i = 0; i < 1024; ++i) {
    ssize_t n = ::write(fd, chunk.data(), 4096);
    if (n <= 0) break;
    written += n;
  }
  ::close(fd);
  return written;
}

void TmpfsDataDirs::Free(const std::string& dir) { ::unlink((dir + "/ballast").c_str()); }

void TmpfsDataDirs::FreeAll() {
  for (const std::string& d : dirs_) Free(d);
}

std::string FaketimeLibrary() {
  for (const char* p : {"/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                        "/usr/lib/faketime/libfaketime.so.1"}) {
    if (::access(p, R_OK) == 0) return p;
  }
  return "";
}

absl::Status SetClockOffset(const std::string& dir, const std::string& name,
                            const std::string& offset) {
  // Replaced by rename so libfaketime never reads a half-written file.
  const std::string path = absl::StrCat(dir, "/clock.", name);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << offset << "\n";
    if (!out) return absl::InternalError("write " + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("rename ", tmp, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ClockWrapper(const std::string& dir, const std::string& server,
                                         const std::vector<std::string>& names) {
  const std::string lib = FaketimeLibrary();
  if (lib.empty()) return absl::NotFoundError("libfaketime not installed");
  for (const std::string& n : names) {
    if (absl::Status s = SetClockOffset(dir, n, "+0"); !s.ok()) return s;
  }
  const std::string path = dir + "/cppetcd-faketime";
  {
    std::ofstream out(path, std::ios::trunc);
    out << "#!/bin/sh\n"
        << "# cppetcd-robustness: the server with a fakeable wall clock.\n"
        << "name=; prev=\n"
        << "for a in \"$@\"; do\n"
        << "  case \"$a\" in --name=*) name=${a#--name=} ;; esac\n"
        << "  [ \"$prev\" = --name ] && name=$a\n"
        << "  prev=$a\n"
        << "done\n"
        // Appended: another wrapper (the power-loss interposer) may have set
        // it already, and replacing it silently disabled that fault.
        << "export LD_PRELOAD=" << lib << "${LD_PRELOAD:+:$LD_PRELOAD}\n"
        << "export FAKETIME_TIMESTAMP_FILE=" << dir << "/clock.$name\n"
        << "export FAKETIME_CACHE_DURATION=1 DONT_FAKE_MONOTONIC=1\n"
        << "exec " << server << " \"$@\"\n";
    if (!out) return absl::InternalError("write " + path);
  }
  ::chmod(path.c_str(), 0755);
  return path;
}

std::string PowerLossLibrary() {
#ifdef CPPETCD_POWERLOSS_LIB
  if (::access(CPPETCD_POWERLOSS_LIB, R_OK) == 0) return CPPETCD_POWERLOSS_LIB;
#endif
  return "";
}

std::string PowerLossApplyTool() {
#ifdef CPPETCD_POWERLOSS_APPLY
  if (::access(CPPETCD_POWERLOSS_APPLY, X_OK) == 0) return CPPETCD_POWERLOSS_APPLY;
#endif
  return "";
}

std::string PowerLossLog(const std::string& dir, const std::string& name) {
  return absl::StrCat(dir, "/powerloss.", name, ".log");
}

absl::Status SetFsyncDelay(const std::string& dir, const std::string& name, int delay_ms) {
  // Replaced by rename so the interposer never reads a half-written file.
  const std::string path = absl::StrCat(dir, "/fsync-delay.", name);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << delay_ms << "\n";
    if (!out) return absl::InternalError("write " + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("rename ", tmp, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> PowerLossWrapper(const std::string& dir, const std::string& server,
                                             const std::vector<std::string>& names,
                                             bool undo_logs, bool fsync_delay) {
  const std::string lib = PowerLossLibrary();
  if (lib.empty()) return absl::NotFoundError("power-loss interposer not built");
  if (undo_logs && PowerLossApplyTool().empty()) {
    return absl::NotFoundError("cppetcd-powerloss-apply not built");
  }
  if (fsync_delay) {
    for (const std::string& n : names) {
      if (absl::Status s = SetFsyncDelay(dir, n, 0); !s.ok()) return s;
    }
  }
  const std::string path = dir + "/cppetcd-powerloss";
  {
    std::ofstream out(path, std::ios::trunc);
    out << "#!/bin/sh\n"
        << "# cppetcd-robustness: the server under the power-loss interposer.\n"
        << "name=; data=; prev=\n"
        << "for a in \"$@\"; do\n"
        << "  case \"$a\" in --name=*) name=${a#--name=} ;; --data-dir=*) data=${a#--data-dir=} ;; esac\n"
        << "  [ \"$prev\" = --name ] && name=$a\n"
        << "  [ \"$prev\" = --data-dir ] && data=$a\n"
        << "  prev=$a\n"
        << "done\n";
    if (undo_logs) {
      out << "export CPPETCD_POWERLOSS_DIR=\"$data\"\n"
          << "export CPPETCD_POWERLOSS_LOG=" << dir << "/powerloss.$name.log\n";
    }
    if (fsync_delay) {
      out << "export CPPETCD_POWERLOSS_FSYNC_DELAY_FILE=" << dir << "/fsync-delay.$name\n";
    }
    out << "export LD_PRELOAD=" << lib << "${LD_PRELOAD:+:$LD_PRELOAD}\n"
        << "exec " << server << " \"$@\"\n";
    if (!out) return absl::InternalError("write " + path);
  }
  ::chmod(path.c_str(), 0755);
  return path;
}

// Whether process `pid` has a shared object whose path contains `lib`
// mapped: a fault that works through a preloaded library must not turn
// silently into a weaker one (a power loss into a plain SIGKILL) when the
// library was not loaded.
static absl::Status RequireLoaded(pid_t pid, const std::string& lib, const std::string& fault) {
  std::ifstream maps(absl::StrCat("/proc/", pid, "/maps"));
  std::string line;
  for (int i = 0; i < 1'000'000 && std::getline(maps, line); ++i) {
    if (line.find(lib) != std::string::npos) return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      absl::StrCat(fault, ": ", lib, " is not loaded in process ", pid));
}

absl::Status FaultInjector::PowerLoss(const std::vector<int>& targets, const ScheduledFault& f,
                                      FaultRecord* rec) {
  std::vector<std::pair<int, pid_t>> killed;
  for (int t : targets) {
    integration::ClusterMember& m = cluster_->member(t);
    if (!m.running()) continue;
    if (absl::Status s = RequireLoaded(m.pid(), "libcppetcd_powerloss", "power-loss"); !s.ok()) {
      return s;
    }
    killed.emplace_back(t, m.pid());
  }
  // All at once first (power-loss-all: no member gets to write after
  // another lost power), then the crash tool on each log.
  for (const auto& k : killed) ::kill(k.second, SIGKILL);
  for (const auto& k : killed) cluster_->member(k.first).Kill();  // reaps
  std::vector<std::string> notes;
  for (const auto& [t, pid] : killed) {
    const std::string log = PowerLossLog(powerloss_dir_, cluster_->member(t).name());
    const uint64_t seed = static_cast<uint64_t>(f.param) * 16 + static_cast<uint64_t>(t);
    integration::CommandResult r = integration::RunCommand(
        {PowerLossApplyTool(), log, "--mode", "random", "--seed", absl::StrCat(seed), "--pid",
         absl::StrCat(pid)},
        "", {}, std::chrono::seconds(120));
    std::string out = r.out;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    notes.push_back(absl::StrCat(cluster_->member(t).name(), ": ", out));
    if (r.exit_code != 0) {
      rec->note = absl::StrJoin(notes, "; ");
      return absl::InternalError(absl::StrCat("cppetcd-powerloss-apply ", log, " exited ",
                                              r.exit_code, ": ", r.out, r.err));
    }
    // The records are spent; the restarted process appends its own.
    if (::truncate(log.c_str(), 0) != 0) notes.back() += " (log not emptied)";
  }
  rec->note = absl::StrCat("apply seed ", f.param, "; ", absl::StrJoin(notes, "; "));
  std::this_thread::sleep_for(f.hold);
  // Several members: all spawned before any is waited for (one alone has
  // no quorum and would never serve).
  if (killed.size() > 1) return cluster_->RestartAll();
  for (const auto& k : killed) {
    if (absl::Status s = cluster_->Restart(k.first); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status FaultInjector::FillDisk(int target, milliseconds hold, FaultRecord* rec) {
  integration::ClusterMember& m = cluster_->member(target);
  if (tmpfs_ == nullptr || !tmpfs_->Mounted(m.data_dir())) {
    rec->injected = false;
    rec->note = "data dir not on a tmpfs; skipped";
    return absl::OkStatus();
  }
  auto filled = tmpfs_->Fill(m.data_dir());
  if (!filled.ok()) return filled.status();
  std::this_thread::sleep_for(hold);
  tmpfs_->Free(m.data_dir());
  // A member whose WAL or backend write fails on the full disk stops, as etcd
  // does. One whose failing write was under way when the space came back
  // exits just after (seed 62005: 150 ms later, at load 25), so the grace
  // period: every exited member is restarted, whenever it went.
  bool exited = m.Exited();
  for (int i = 0; i < 20 && !exited; ++i) {
    std::this_thread::sleep_for(milliseconds(100));
    exited = m.Exited();
  }
  rec->note = absl::StrCat("filled ", *filled >> 20, " MiB; member ",
                           exited ? "exited, restarted" : "kept running");
  if (exited) return cluster_->Restart(target);
  return absl::OkStatus();
}

int FaultInjector::Leader() {
  auto leader = cluster_->WaitForLeader(milliseconds(3000));
  return leader.ok() ? *leader : -1;
}

absl::Status FaultInjector::Run(const std::vector<ScheduledFault>& schedule, milliseconds window,
                                std::vector<FaultRecord>* records) {
  const auto begin = Clock::now();
  for (const ScheduledFault& f : schedule) {
    if (f.start >= window) break;
    const auto at = begin + f.start;
    if (Clock::now() >= begin + window) break;
    if (Clock::now() < at) std::this_thread::sleep_for(at - Clock::now());
    FaultRecord rec;
    rec.kind = f.kind;
    const auto offset = std::chrono::duration_cast<milliseconds>(Clock::now() - begin);
    absl::Status s = Apply(f, &rec);
    records->push_back(rec);
    const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - begin) - offset;
    std::cout << "  [" << offset.count() << " ms] " << FaultName(f.kind) << " "
              << (rec.injected ? rec.member : "skipped") << " hold " << f.hold.count()
              << " ms, recovered after " << took.count() << " ms"
              << (rec.note.empty() ? "" : " (" + rec.note + ")") << std::endl;
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status FaultInjector::Apply(const ScheduledFault& f, FaultRecord* rec) {
  if (std::find(skip_.begin(), skip_.end(), f.kind) != skip_.end()) {
    rec->note = "--skip; not injected";
    return absl::OkStatus();
  }
  const int n = cluster_->size();
  int target = f.target % n;
  if (f.kind == FaultKind::kNftPartition || f.kind == FaultKind::kNftOneWay) {
    return NftCut(f, -1, rec);
  }
  const bool on_leader = f.kind == FaultKind::kKillLeader || f.kind == FaultKind::kPauseLeader ||
                         f.kind == FaultKind::kIsolateLeader ||
                         f.kind == FaultKind::kNftIsolateLeader;
  int leader = -1;
  if (on_leader || f.kind == FaultKind::kReplace) leader = Leader();
  if (on_leader) {
    if (leader < 0) {
      rec->note = "no agreed leader; skipped";
      return absl::OkStatus();
    }
    target = leader;
  }
  if (f.kind == FaultKind::kReplace && target == leader) target = (target + 1) % n;
  integration::ClusterMember& m = cluster_->member(target);
  if (!KindWorksIn(f.kind, NetMode::kNetns) && m.proxy() == nullptr) {
    rec->note = "needs the peer proxies (--net proxy); skipped";
    return absl::OkStatus();
  }
  if (!m.running()) {
    rec->note = m.name() + " not running; skipped";
    return absl::OkStatus();
  }
  rec->member = m.name();
  rec->start_ns = MonotonicNowNs();
  rec->injected = true;
  absl::Status status;
  switch (f.kind) {
    case FaultKind::kKill:
    case FaultKind::kKillLeader:
      m.Kill();
      std::this_thread::sleep_for(f.hold);
      status = cluster_->Restart(target);
      break;
    case FaultKind::kPauseLeader:
      ::kill(m.pid(), SIGSTOP);
      paused_.insert(target);
      std::this_thread::sleep_for(f.hold);
      ::kill(m.pid(), SIGCONT);
      paused_.erase(target);
      break;
    case FaultKind::kPartition:
    case FaultKind::kIsolateLeader:
      status = cluster_->Isolate(target);
      std::this_thread::sleep_for(f.hold);
      cluster_->HealAll();
      break;
    case FaultKind::kResetPeer:
      m.proxy()->SetMode(integration::FaultProxy::Mode::kReset);
      std::this_thread::sleep_for(f.hold);
      m.proxy()->SetMode(integration::FaultProxy::Mode::kPass);
      break;
    case FaultKind::kSlowPeer:
      rec->note = absl::StrCat("delay ", f.param, " ms + jitter ", f.jitter_ms, " ms");
      m.proxy()->SetDelay(milliseconds(f.param), milliseconds(f.jitter_ms));
      std::this_thread::sleep_for(f.hold);
      m.proxy()->SetDelay(milliseconds(0));
      break;
    case FaultKind::kLossyPeer:
      rec->note = absl::StrCat(f.param, " resets per mille chunks");
      m.proxy()->SetResetPerMille(f.param);
      std::this_thread::sleep_for(f.hold);
      m.proxy()->SetResetPerMille(0);
      rec->note += absl::StrCat(", ", m.proxy()->lossy_resets(), " resets so far");
      break;
    case FaultKind::kEnospc:
      status = FillDisk(target, f.hold, rec);
      break;
    case FaultKind::kClockJump:
      if (clock_dir_.empty()) {
        rec->injected = false;
        rec->note = "libfaketime not installed; skipped";
        return absl::OkStatus();
      }
      rec->note = absl::StrCat("wall clock ", f.param > 0 ? "+" : "", f.param, " s");
      if (m.running()) status = RequireLoaded(m.pid(), "libfaketime", "clock-jump");
      if (!status.ok()) break;
      status = SetClockOffset(clock_dir_, m.name(), absl::StrCat(f.param > 0 ? "+" : "", f.param, "s"));
      if (!status.ok()) break;
      std::this_thread::sleep_for(f.hold);
      status = SetClockOffset(clock_dir_, m.name(), "+0");
      break;
    case FaultKind::kPowerLoss:
    case FaultKind::kPowerLossAll: {
      if (powerloss_dir_.empty()) {
        rec->injected = false;
        rec->note = "power-loss interposer not built; skipped";
        return absl::OkStatus();
      }
      std::vector<int> targets = {target};
      if (f.kind == FaultKind::kPowerLossAll) {
        targets = cluster_->Running();
        rec->member = "all";
      }
      status = PowerLoss(targets, f, rec);
      break;
    }
    case FaultKind::kSlowFsync:
      if (fsync_delay_dir_.empty()) {
        rec->injected = false;
        rec->note = "power-loss interposer not built; skipped";
        return absl::OkStatus();
      }
      rec->note = absl::StrCat("fsync delay ", f.param, " ms");
      if (m.running()) status = RequireLoaded(m.pid(), "libcppetcd_powerloss", "slow-fsync");
      if (!status.ok()) break;
      status = SetFsyncDelay(fsync_delay_dir_, m.name(), f.param);
      if (!status.ok()) break;
      std::this_thread::sleep_for(f.hold);
      status = SetFsyncDelay(fsync_delay_dir_, m.name(), 0);
      break;
    case FaultKind::kNftPartition:
    case FaultKind::kNftOneWay:
    case FaultKind::kNftIsolateLeader:
      status = NftCut(f, target, rec);
      if (!rec->injected) return status;
      break;
    case FaultKind::kReplace: {
      auto id = cluster_->MemberId(target);
      if (!id.ok()) {
        rec->note = "member id: " + std::string(id.status().message()) + "; skipped";
        rec->injected = false;
        return absl::OkStatus();
      }
      std::vector<std::string> others;
      for (int i : cluster_->Running()) {
        if (i != target) others.push_back(cluster_->member(i).ClientEndpoint());
      }
      const std::string via = absl::StrJoin(others, ",");
      status = cluster_->RemoveMember(*id, via);
      if (!status.ok()) break;
      m.Kill();  // removed members stop by themselves; make sure
      std::this_thread::sleep_for(f.hold);
      auto added = cluster_->AddMember(m.name(), /*learner=*/false, via, nullptr,
                                       /*reuse_slot=*/true);
      status = added.status();
      break;
    }
  }
  rec->end_ns = MonotonicNowNs();
  if (!status.ok()) {
    rec->note = std::string(status.message()).substr(0, 300);
    return absl::InternalError(
        absl::StrCat(FaultName(f.kind), " on ", m.name(), ": ", status.message()));
  }
  return absl::OkStatus();
}

absl::Status FaultInjector::NftCut(const ScheduledFault& f, int leader, FaultRecord* rec) {
  if (net_ == nullptr) {
    rec->injected = false;
    rec->note = "needs --net netns; skipped";
    return absl::OkStatus();
  }
  const int n = cluster_->size();
  auto names = [&](const std::vector<int>& v) {
    std::vector<std::string> out;
    for (int i : v) out.push_back(cluster_->member(i).name());
    return absl::StrJoin(out, ",");
  };
  std::vector<NetCut> cuts;
  std::string what;
  if (f.kind == FaultKind::kNftIsolateLeader) {
    cuts = IsolateMember(leader, n);
    rec->member = cluster_->member(leader).name();
    what = "cut off from every member, both ways";
  } else {
    const std::vector<int> a = MembersOf(f.param, n);
    std::vector<int> b;
    for (int i = 0; i < n; ++i) {
      if (std::find(a.begin(), a.end(), i) == a.end()) b.push_back(i);
    }
    if (a.empty() || b.empty()) {
      rec->injected = false;
      rec->note = absl::StrCat("set ", f.param, " leaves a side empty; skipped");
      return absl::OkStatus();
    }
    const bool full = f.kind == FaultKind::kNftPartition;
    cuts = full ? FullPartition(a, b) : OneWay(a, b);
    rec->member = absl::StrCat(names(a), full ? "|" : "->", names(b));
    what = full ? "partitioned, both ways" : "one way dropped, the other kept";
  }
  rec->start_ns = MonotonicNowNs();
  rec->injected = true;
  auto set = net_->SetCuts(cuts);
  if (!set.ok()) {
    rec->end_ns = MonotonicNowNs();
    rec->note = std::string(set.status().message()).substr(0, 300);
    return absl::InternalError(absl::StrCat(FaultName(f.kind), ": ", set.status().message()));
  }
  std::this_thread::sleep_for(f.hold);
  auto dropped = net_->Heal();
  rec->end_ns = MonotonicNowNs();
  if (!dropped.ok()) {
    rec->note = std::string(dropped.status().message()).substr(0, 300);
    return absl::InternalError(absl::StrCat(FaultName(f.kind), " heal: ", dropped.status().message()));
  }
  rec->note = absl::StrCat(what, "; ", *dropped, " packets dropped");
  return absl::OkStatus();
}

absl::Status FaultInjector::HealAll(milliseconds timeout) {
  cluster_->HealAll();
  if (net_ != nullptr) {
    if (auto healed = net_->Heal(); !healed.ok()) return healed.status();
  }
  for (int i : paused_) {
    if (cluster_->member(i).running()) ::kill(cluster_->member(i).pid(), SIGCONT);
  }
  paused_.clear();
  for (int i = 0; i < cluster_->size(); ++i) {
    integration::FaultProxy* proxy = cluster_->member(i).proxy();
    if (proxy == nullptr) continue;
    proxy->SetMode(integration::FaultProxy::Mode::kPass);
    proxy->SetDelay(milliseconds(0));
    proxy->SetResetPerMille(0);
  }
  if (tmpfs_ != nullptr) tmpfs_->FreeAll();
  if (!fsync_delay_dir_.empty()) {
    for (int i = 0; i < cluster_->size(); ++i) {
      SetFsyncDelay(fsync_delay_dir_, cluster_->member(i).name(), 0).IgnoreError();
    }
  }
  absl::Status s = cluster_->RestartAll();
  if (!s.ok()) return s;
  auto leader = cluster_->WaitForLeader(timeout);
  return leader.status();
}

}  // namespace cppetcd::robustness
