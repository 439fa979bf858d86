#include "cppetcd/lease/lessor.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_format.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/util/error.h"
#include "leasepb/lease.pb.h"

namespace cppetcd::lease {
namespace {

constexpr char kMsgNotFound[] = "lease not found";
constexpr char kMsgExists[] = "lease already exists";
constexpr char kMsgTTLTooLarge[] = "too large lease TTL";
constexpr char kMsgNotPrimary[] = "not a primary lessor";

std::string LeaseKey(int64_t id) {
  std::string key(8, '\0');
  auto u = static_cast<uint64_t>(id);
  for (int i = 7; i >= 0; --i) {
    key[i] = static_cast<char>(u & 0xff);
    u >>= 8;
  }
  return key;
}

}  // namespace

using util::ErrorCode;

absl::Status ErrLeaseNotFound() {
  return util::MakeError(absl::StatusCode::kNotFound, ErrorCode::kLeaseNotFound, kMsgNotFound);
}
absl::Status ErrLeaseExists() {
  return util::MakeError(absl::StatusCode::kAlreadyExists, ErrorCode::kLeaseExists, kMsgExists);
}
absl::Status ErrLeaseTTLTooLarge() {
  return util::MakeError(absl::StatusCode::kOutOfRange, ErrorCode::kLeaseTTLTooLarge,
                         kMsgTTLTooLarge);
}
absl::Status ErrNotPrimary() {
  return util::MakeError(absl::StatusCode::kFailedPrecondition, ErrorCode::kNotPrimary,
                         kMsgNotPrimary);
}
bool IsLeaseNotFound(const absl::Status& s) {
  return util::HasErrorCode(s, ErrorCode::kLeaseNotFound);
}
bool IsLeaseExists(const absl::Status& s) { return util::HasErrorCode(s, ErrorCode::kLeaseExists); }
bool IsLeaseTTLTooLarge(const absl::Status& s) {
  return util::HasErrorCode(s, ErrorCode::kLeaseTTLTooLarge);
}
bool IsNotPrimary(const absl::Status& s) { return util::HasErrorCode(s, ErrorCode::kNotPrimary); }

Lessor::Lessor(LessorOptions options)
    : min_ttl_seconds_(options.min_ttl_seconds),
      clock_(options.clock != nullptr ? options.clock : util::SystemClock::Get()),
      logger_(std::move(options.logger)),
      checkpointing_(options.checkpointing),
      checkpoint_interval_(options.checkpoint_interval.count() > 0 ? options.checkpoint_interval
                                                                   : kDefaultCheckpointInterval),
      checkpoint_persist_(options.checkpoint_persist) {}

absl::StatusOr<std::unordered_map<int64_t, Lessor::Lease>> Lessor::Load(
    storage::ReadTxn* txn) const {
  std::unordered_map<int64_t, Lease> loaded;
  absl::Status decode_error;
  absl::Status s = txn->Scan(
      storage::kLeaseBucket, "", "", [&](std::string_view key, std::string_view value) {
        leasepb::Lease pb;
        if (key.size() != 8 || !pb.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          decode_error = absl::DataLossError(
              absl::StrFormat("lease: undecodable lease record (key size %d)", key.size()));
          return false;
        }
        Lease l;
        l.id = pb.id();
        l.ttl_seconds = std::max(pb.ttl(), min_ttl_seconds_);
        l.remaining_ttl_seconds = pb.remainingttl();
        loaded[l.id] = std::move(l);
        return true;
      });
  if (!s.ok()) return s;
  if (!decode_error.ok()) return decode_error;
  return loaded;
}

absl::Status Lessor::Restore(storage::ReadTxn* txn) {
  auto loaded = Load(txn);
  if (!loaded.ok()) return loaded.status();
  util::WriterMutexLock lock(&mu_);
  const size_t dropped = leases_.size();
  leases_ = *std::move(loaded);  // the old leases go with their keys
  heap_ = {};
  checkpoint_heap_ = {};
  if (primary_) PromoteLocked(std::chrono::milliseconds(0));
  logger_.Info("restored leases from a snapshot",
               {{"dropped", dropped}, {"count", leases_.size()}, {"primary", primary_}});
  return absl::OkStatus();
}

absl::Status Lessor::Recover(storage::ReadTxn* txn) {
  auto loaded_or = Load(txn);
  if (!loaded_or.ok()) return loaded_or.status();
  std::unordered_map<int64_t, Lease> loaded = *std::move(loaded_or);

  util::WriterMutexLock lock(&mu_);
  leases_ = std::move(loaded);
  heap_ = {};
  checkpoint_heap_ = {};
  // Recovered leases never expire until Promote, even if this lessor was
  // primary before (etcd: initAndRecover sets every expiry to forever).
  if (primary_) {
    const TimePoint now = clock_->Now();
    for (auto& [id, l] : leases_) {
      RefreshLocked(l, now, std::chrono::nanoseconds(0));
      ScheduleCheckpointLocked(l, now);
    }
  }
  logger_.Info("recovered leases", {{"count", leases_.size()}});
  return absl::OkStatus();
}

absl::StatusOr<LeaseInfo> Lessor::Grant(storage::WriteTxn* txn, int64_t id, int64_t ttl_seconds) {
  if (id == kNoLease) return ErrLeaseNotFound();
  if (ttl_seconds > kMaxLeaseTtlSeconds) return ErrLeaseTTLTooLarge();

  util::WriterMutexLock lock(&mu_);
  if (leases_.contains(id)) return ErrLeaseExists();
  Lease l;
  l.id = id;
  l.ttl_seconds = std::max(ttl_seconds, min_ttl_seconds_);

  if (absl::Status s = PersistLocked(txn, l); !s.ok()) return s;
  const TimePoint now = clock_->Now();
  Lease& stored = leases_[id] = std::move(l);
  if (primary_) {
    RefreshLocked(stored, now, std::chrono::nanoseconds(0));
    ScheduleCheckpointLocked(stored, now);
  }
  return InfoLocked(stored, now);
}

absl::Status Lessor::PersistLocked(storage::WriteTxn* txn, const Lease& l) {
  leasepb::Lease pb;
  pb.set_id(l.id);
  pb.set_ttl(l.ttl_seconds);
  pb.set_remainingttl(l.remaining_ttl_seconds);  // 0 is not encoded, as etcd's
  return txn->Put(storage::kLeaseBucket, LeaseKey(l.id), pb.SerializeAsString());
}

absl::Status Lessor::Checkpoint(storage::WriteTxn* txn, int64_t id,
                                int64_t remaining_ttl_seconds) {
  util::WriterMutexLock lock(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return absl::OkStatus();  // revoked since: nothing to keep
  Lease& l = it->second;
  const int64_t before = l.remaining_ttl_seconds;
  l.remaining_ttl_seconds = remaining_ttl_seconds;
  if (checkpoint_persist_) {
    if (absl::Status s = PersistLocked(txn, l); !s.ok()) {
      l.remaining_ttl_seconds = before;
      return s;
    }
  }
  if (primary_) ScheduleCheckpointLocked(l, clock_->Now(), /*keep_scheduled=*/true);
  return absl::OkStatus();
}

std::vector<LeaseCheckpoint> Lessor::DueCheckpoints(size_t max) {
  std::vector<LeaseCheckpoint> out;
  util::WriterMutexLock lock(&mu_);
  if (!primary_ || !checkpointing_) return out;
  const TimePoint now = clock_->Now();
  while (out.size() < max && !checkpoint_heap_.empty()) {
    const HeapItem top = checkpoint_heap_.top();
    auto it = leases_.find(top.id);
    if (it == leases_.end() || it->second.checkpoint_time != top.time) {
      checkpoint_heap_.pop();  // revoked or rescheduled since
      continue;
    }
    if (top.time > now) break;
    checkpoint_heap_.pop();
    Lease& l = it->second;
    l.checkpoint_time.reset();
    if (!l.expiry.has_value() || *l.expiry <= now) continue;  // expired: being revoked
    // Whole seconds, rounded up: a checkpoint never shortens a lease.
    const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(*l.expiry - now);
    constexpr int64_t kNanosPerSecond = 1'000'000'000;
    const int64_t remaining = left.count() / kNanosPerSecond +
                              (left.count() % kNanosPerSecond != 0 ? 1 : 0);
    // Scheduled again whether or not this one is proposed (see the header).
    ScheduleCheckpointLocked(l, now);
    if (remaining >= l.ttl_seconds) continue;  // renewed since: nothing to keep
    out.push_back(LeaseCheckpoint{l.id, remaining});
  }
  return out;
}

bool Lessor::NeedsCheckpointReset(int64_t id) const {
  if (!checkpointing_) return false;
  util::ReaderMutexLock lock(&mu_);
  auto it = leases_.find(id);
  return it != leases_.end() && it->second.remaining_ttl_seconds > 0;
}

absl::StatusOr<std::vector<std::string>> Lessor::Revoke(storage::WriteTxn* txn, int64_t id) {
  util::WriterMutexLock lock(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return ErrLeaseNotFound();
  if (absl::Status s = txn->Delete(storage::kLeaseBucket, LeaseKey(id)); !s.ok()) return s;
  // std::set keeps the keys sorted: every member deletes them in one order.
  std::vector<std::string> keys(it->second.keys.begin(), it->second.keys.end());
  leases_.erase(it);  // its heap item, if any, becomes stale
  return keys;
}

void Lessor::Attach(int64_t id, std::string_view key) {
  util::WriterMutexLock lock(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return;
  it->second.keys.emplace(key);
}

void Lessor::Detach(int64_t id, std::string_view key) {
  util::WriterMutexLock lock(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return;
  auto k = it->second.keys.find(key);
  if (k != it->second.keys.end()) it->second.keys.erase(k);
}

absl::StatusOr<int64_t> Lessor::Renew(int64_t id) {
  util::WriterMutexLock lock(&mu_);
  if (!primary_) return ErrNotPrimary();
  auto it = leases_.find(id);
  if (it == leases_.end()) return ErrLeaseNotFound();
  Lease& l = it->second;
  const TimePoint now = clock_->Now();
  // etcd makes a renewal of an expired lease wait for its revocation and then
  // fail; the revocation is already on its way, so fail at once.
  if (l.expiry.has_value() && *l.expiry <= now) return ErrLeaseNotFound();
  l.remaining_ttl_seconds = 0;
  RefreshLocked(l, now, std::chrono::nanoseconds(0));
  return l.ttl_seconds;
}

std::optional<LeaseInfo> Lessor::Lookup(int64_t id) const {
  util::ReaderMutexLock lock(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return std::nullopt;
  return InfoLocked(it->second, clock_->Now());
}

std::vector<LeaseInfo> Lessor::Leases() const {
  std::vector<std::pair<TimePoint, LeaseInfo>> all;
  {
    util::ReaderMutexLock lock(&mu_);
    const TimePoint now = clock_->Now();
    all.reserve(leases_.size());
    for (const auto& [id, l] : leases_) {
      all.emplace_back(l.expiry.value_or(TimePoint::max()), InfoLocked(l, now));
    }
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : a.second.id < b.second.id;
  });
  std::vector<LeaseInfo> out;
  out.reserve(all.size());
  for (auto& [t, info] : all) out.push_back(std::move(info));
  return out;
}

bool Lessor::Exists(int64_t id) const {
  util::ReaderMutexLock lock(&mu_);
  return leases_.contains(id);
}

void Lessor::Promote(std::chrono::milliseconds extend) {
  util::WriterMutexLock lock(&mu_);
  primary_ = true;
  PromoteLocked(extend);
}

void Lessor::PromoteLocked(std::chrono::milliseconds extend) {
  heap_ = {};
  checkpoint_heap_ = {};
  const TimePoint now = clock_->Now();
  for (auto& [id, l] : leases_) {
    RefreshLocked(l, now, extend);
    ScheduleCheckpointLocked(l, now);
  }
  if (leases_.size() < static_cast<size_t>(kLeaseRevokeRate)) return;

  // Many leases would expire together after a restart or failover: push the
  // excess of each one-second window later so that revocations do not pile
  // up (the same spreading as etcd's Promote).
  std::vector<Lease*> by_expiry;
  by_expiry.reserve(leases_.size());
  for (auto& [id, l] : leases_) by_expiry.push_back(&l);
  std::sort(by_expiry.begin(), by_expiry.end(), [](const Lease* a, const Lease* b) {
    return *a->expiry != *b->expiry ? *a->expiry < *b->expiry : a->id < b->id;
  });
  using Nanos = std::chrono::nanoseconds;
  constexpr Nanos kSecond = std::chrono::seconds(1);
  const int64_t target_per_second = (3 * kLeaseRevokeRate) / 4;
  Nanos base_window = *by_expiry.front()->expiry - now;
  Nanos next_window = base_window + kSecond;
  int64_t expires = 0;
  for (Lease* l : by_expiry) {
    const Nanos remaining = *l->expiry - now;
    if (remaining > next_window) {
      base_window = remaining;
      next_window = base_window + kSecond;
      expires = 1;
      continue;
    }
    ++expires;
    if (expires <= target_per_second) continue;
    double rate_delay = static_cast<double>(kSecond.count()) *
                        (static_cast<double>(expires) / static_cast<double>(target_per_second));
    rate_delay -= static_cast<double>((remaining - base_window).count());
    const Nanos delay(static_cast<int64_t>(rate_delay));
    next_window = base_window + delay;
    RefreshLocked(*l, now, delay + extend);
  }
}

void Lessor::Demote() {
  util::WriterMutexLock lock(&mu_);
  primary_ = false;
  heap_ = {};
  checkpoint_heap_ = {};
  for (auto& [id, l] : leases_) {
    l.expiry.reset();
    l.heap_time.reset();
    l.checkpoint_time.reset();
  }
}

bool Lessor::IsPrimary() const {
  util::ReaderMutexLock lock(&mu_);
  return primary_;
}

std::vector<int64_t> Lessor::ExpiredLeases(size_t max) {
  std::vector<int64_t> out;
  util::WriterMutexLock lock(&mu_);
  if (!primary_) return out;
  const TimePoint now = clock_->Now();
  while (out.size() < max && !heap_.empty()) {
    const HeapItem top = heap_.top();
    auto it = leases_.find(top.id);
    if (it == leases_.end() || it->second.heap_time != top.time) {
      heap_.pop();  // revoked or rescheduled since this item was pushed
      continue;
    }
    if (top.time > now) break;
    heap_.pop();
    Lease& l = it->second;
    // Offer it again later in case the revocation is lost (leader change).
    ScheduleLocked(l, now + kExpiredLeaseRetryInterval);
    if (l.expiry.has_value() && *l.expiry <= now) out.push_back(l.id);
  }
  return out;
}

size_t Lessor::Size() const {
  util::ReaderMutexLock lock(&mu_);
  return leases_.size();
}

void Lessor::RefreshLocked(Lease& l, TimePoint now, std::chrono::nanoseconds extend) {
  const int64_t ttl = l.remaining_ttl_seconds > 0 ? l.remaining_ttl_seconds : l.ttl_seconds;
  // Saturate: a TTL near kMaxLeaseTtlSeconds plus `now` would overflow the
  // clock's int64 nanoseconds.
  const auto ttl_d = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::seconds(std::min<int64_t>(ttl, kMaxLeaseTtlSeconds)));
  const auto headroom = TimePoint::max() - now - std::chrono::hours(24);
  const auto total = ttl_d + std::max(extend, std::chrono::nanoseconds(0));
  const TimePoint expiry = total >= headroom ? TimePoint::max() - std::chrono::hours(24) : now + total;
  l.expiry = expiry;
  ScheduleLocked(l, expiry);
}

void Lessor::ScheduleLocked(Lease& l, TimePoint time) {
  l.heap_time = time;
  heap_.push(HeapItem{time, l.id});
}

void Lessor::ScheduleCheckpointLocked(Lease& l, TimePoint now, bool keep_scheduled) {
  if (!checkpointing_) return;
  if (keep_scheduled && l.checkpoint_time.has_value()) return;
  const int64_t ttl = l.remaining_ttl_seconds > 0 ? l.remaining_ttl_seconds : l.ttl_seconds;
  // etcd compares with the interval in whole seconds.
  const int64_t interval_seconds =
      std::chrono::duration_cast<std::chrono::seconds>(checkpoint_interval_).count();
  if (ttl <= interval_seconds) return;
  const TimePoint at = now + checkpoint_interval_;
  l.checkpoint_time = at;
  checkpoint_heap_.push(HeapItem{at, l.id});
}

LeaseInfo Lessor::InfoLocked(const Lease& l, TimePoint now) const {
  LeaseInfo info;
  info.id = l.id;
  info.ttl_seconds = l.ttl_seconds;
  if (l.expiry.has_value()) {
    const auto left = *l.expiry - now;
    info.remaining_seconds =
        left <= left.zero() ? 0 : std::chrono::duration_cast<std::chrono::seconds>(left).count();
  } else {
    info.remaining_seconds = -1;
  }
  info.keys.assign(l.keys.begin(), l.keys.end());
  info.checkpointed_ttl_seconds = std::max<int64_t>(l.remaining_ttl_seconds, 0);
  return info;
}

}  // namespace cppetcd::lease
