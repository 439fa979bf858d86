#include "faults.h"

#include <signal.h>

#include <algorithm>
#include <iostream>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "history_io.h"

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

int FaultInjector::Leader() {
  auto leader = cluster_->WaitForLeader(milliseconds(3000));
  return leader.ok() ? *leader : -1;
}

absl::StatusOr<std::vector<FaultRecord>> FaultInjector::Run(
    const std::vector<ScheduledFault>& schedule, milliseconds window) {
  std::vector<FaultRecord> records;
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
    records.push_back(rec);
    const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - begin) - offset;
    std::cout << "  [" << offset.count() << " ms] " << FaultName(f.kind) << " "
              << (rec.injected ? rec.member : "skipped") << " hold " << f.hold.count()
              << " ms, recovered after " << took.count() << " ms"
              << (rec.note.empty() ? "" : " (" + rec.note + ")") << std::endl;
    if (!s.ok()) return s;
  }
  return records;
}

absl::Status FaultInjector::Apply(const ScheduledFault& f, FaultRecord* rec) {
  const int n = cluster_->size();
  int target = f.target % n;
  const bool on_leader = f.kind == FaultKind::kKillLeader || f.kind == FaultKind::kPauseLeader ||
                         f.kind == FaultKind::kIsolateLeader;
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

absl::Status FaultInjector::HealAll(milliseconds timeout) {
  cluster_->HealAll();
  for (int i : paused_) {
    if (cluster_->member(i).running()) ::kill(cluster_->member(i).pid(), SIGCONT);
  }
  paused_.clear();
  for (int i = 0; i < cluster_->size(); ++i) {
    cluster_->member(i).proxy()->SetMode(integration::FaultProxy::Mode::kPass);
  }
  absl::Status s = cluster_->RestartAll();
  if (!s.ok()) return s;
  auto leader = cluster_->WaitForLeader(timeout);
  return leader.status();
}

}  // namespace cppetcd::robustness
