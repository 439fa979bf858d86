#include "alarm_store.h"

namespace cppetcd::server {
namespace {

etcdserverpb::AlarmMember MakeAlarm(uint64_t member, int type) {
  etcdserverpb::AlarmMember am;
  am.set_memberid(member);
  am.set_alarm(static_cast<etcdserverpb::AlarmType>(type));
  return am;
}

}  // namespace

const char* AlarmName(etcdserverpb::AlarmType t) {
  switch (t) {
    case etcdserverpb::NOSPACE:
      return "NOSPACE";
    case etcdserverpb::CORRUPT:
      return "CORRUPT";
    default:
      return "NONE";
  }
}

absl::Status AlarmStore::Load(storage::ReadTxn* rtx) {
  util::MutexLock l(&mu_);
  active_.clear();
  absl::Status s = rtx->Scan(storage::kAlarmBucket, "", "",
                             [&](std::string_view k, std::string_view)
                                 ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                                   etcdserverpb::AlarmMember am;
                                   if (am.ParseFromArray(k.data(), static_cast<int>(k.size()))) {
                                     active_.insert({am.memberid(), static_cast<int>(am.alarm())});
                                   }
                                   return true;
                                 });
  UpdateFlagsLocked();
  return s;
}

void AlarmStore::UpdateFlagsLocked() {
  bool any_nospace = false;
  bool any_corrupt = false;
  for (const auto& [m, t] : active_) {
    any_nospace |= t == etcdserverpb::NOSPACE;
    any_corrupt |= t == etcdserverpb::CORRUPT;
  }
  nospace_.store(any_nospace, std::memory_order_release);
  corrupt_.store(any_corrupt, std::memory_order_release);
}

absl::StatusOr<etcdserverpb::AlarmResponse> AlarmStore::Apply(
    storage::WriteTxn* btx, const etcdserverpb::AlarmRequest& ar) {
  etcdserverpb::AlarmResponse resp;
  const std::pair<uint64_t, int> alarm{ar.memberid(), static_cast<int>(ar.alarm())};
  const etcdserverpb::AlarmMember am = MakeAlarm(alarm.first, alarm.second);
  util::MutexLock l(&mu_);
  switch (ar.action()) {
    case etcdserverpb::AlarmRequest::GET:
      for (const auto& [m, t] : active_) {
        if (ar.alarm() != etcdserverpb::NONE && t != ar.alarm()) continue;
        *resp.add_alarms() = MakeAlarm(m, t);
      }
      break;
    case etcdserverpb::AlarmRequest::ACTIVATE:
      if (ar.alarm() == etcdserverpb::NONE) break;
      if (!active_.contains(alarm)) {
        if (auto s = btx->Put(storage::kAlarmBucket, am.SerializeAsString(), ""); !s.ok()) {
          return s;
        }
        active_.insert(alarm);
        UpdateFlagsLocked();
        lg_.Warn("alarm raised",
                 {{"alarm", AlarmName(ar.alarm())}, {"from", util::IdToHex(ar.memberid())}});
      }
      // etcd AlarmStore.Activate returns the alarm, new or already active.
      *resp.add_alarms() = am;
      break;
    case etcdserverpb::AlarmRequest::DEACTIVATE:
      if (!active_.contains(alarm)) break;
      if (auto s = btx->Delete(storage::kAlarmBucket, am.SerializeAsString()); !s.ok()) return s;
      active_.erase(alarm);
      UpdateFlagsLocked();
      *resp.add_alarms() = am;
      lg_.Warn("alarm disarmed",
               {{"alarm", AlarmName(ar.alarm())}, {"from", util::IdToHex(ar.memberid())}});
      break;
    default:
      break;
  }
  return resp;
}

std::vector<etcdserverpb::AlarmMember> AlarmStore::List(etcdserverpb::AlarmType type) const {
  std::vector<etcdserverpb::AlarmMember> out;
  util::MutexLock l(&mu_);
  for (const auto& [m, t] : active_) {
    if (type != etcdserverpb::NONE && t != type) continue;
    out.push_back(MakeAlarm(m, t));
  }
  return out;
}

}  // namespace cppetcd::server
