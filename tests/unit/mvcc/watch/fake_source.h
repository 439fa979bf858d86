// An in-memory WatchSource for watch tests: every Put/Delete/Txn is one
// revision, published and handed to the commit observer like Store::OnCommit.
#ifndef CPPETCD_TESTS_UNIT_MVCC_WATCH_FAKE_SOURCE_H_
#define CPPETCD_TESTS_UNIT_MVCC_WATCH_FAKE_SOURCE_H_

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <mutex>

#include "absl/base/thread_annotations.h"
#include "cppetcd/mvcc/errors.h"
#include "cppetcd/mvcc/watchable_store.h"

namespace cppetcd::mvcc::testing {

class FakeSource : public WatchSource {
 public:
  struct Op {
    bool del = false;
    std::string key;
    std::string value;
  };

  int64_t Rev() const override {
    std::lock_guard<std::mutex> l(mu_);
    return rev_;
  }
  int64_t CompactRev() const override {
    std::lock_guard<std::mutex> l(mu_);
    return compact_rev_;
  }
  void SetCommitObserver(CommitObserver observer) override {
    std::lock_guard<std::mutex> l(observer_mu_);
    observer_ = std::move(observer);
  }
  absl::Status ReadEvents(int64_t from_rev, int64_t to_rev, size_t max_events,
                          absl::FunctionRef<void(const mvccpb::Event&)> fn) const override {
    std::vector<mvccpb::Event> out;
    {
      std::lock_guard<std::mutex> l(mu_);
      ++read_calls_;
      if (from_rev < compact_rev_) {
        return ErrCompacted();
      }
      int64_t stop_after = -1;
      for (const mvccpb::Event& ev : history_) {
        int64_t r = ev.kv().mod_revision();
        if (r < from_rev) continue;
        if (r > to_rev || r > rev_) break;
        if (stop_after >= 0 && r > stop_after) break;
        out.push_back(ev);
        if (max_events != 0 && out.size() >= max_events && stop_after < 0) stop_after = r;
      }
    }
    for (const auto& ev : out) fn(ev);
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<mvccpb::KeyValue>> Get(std::string_view key,
                                                      int64_t rev) const override {
    std::lock_guard<std::mutex> l(mu_);
    if (rev < compact_rev_) {
      return ErrCompacted();
    }
    std::optional<mvccpb::KeyValue> found;
    for (const mvccpb::Event& ev : history_) {
      if (ev.kv().mod_revision() > rev) break;
      if (ev.kv().key() != key) continue;
      if (ev.type() == mvccpb::Event::DELETE) {
        found.reset();
      } else {
        found = ev.kv();
      }
    }
    return found;
  }

  // One revision with all `ops`; returns it.
  int64_t Txn(const std::vector<Op>& ops) {
    std::vector<mvccpb::Event> events;
    int64_t rev;
    {
      std::lock_guard<std::mutex> l(mu_);
      rev = rev_ + 1;
      for (const Op& op : ops) {
        mvccpb::Event ev;
        auto live = live_.find(op.key);
        if (op.del) {
          if (live == live_.end()) continue;
          ev.set_type(mvccpb::Event::DELETE);
          ev.mutable_kv()->set_key(op.key);
          ev.mutable_kv()->set_mod_revision(rev);
          live_.erase(live);
        } else {
          mvccpb::KeyValue kv;
          kv.set_key(op.key);
          kv.set_value(op.value);
          kv.set_mod_revision(rev);
          if (live == live_.end()) {
            kv.set_create_revision(rev);
            kv.set_version(1);
          } else {
            kv.set_create_revision(live->second.create_revision());
            kv.set_version(live->second.version() + 1);
          }
          live_[op.key] = kv;
          ev.set_type(mvccpb::Event::PUT);
          *ev.mutable_kv() = kv;
        }
        events.push_back(ev);
        history_.push_back(std::move(ev));
      }
      if (events.empty()) return rev_;
      rev_ = rev;
    }
    // As Store::OnCommit: published, then observed, on the writer's thread.
    std::lock_guard<std::mutex> l(observer_mu_);
    if (observer_) observer_(rev, events);
    return rev;
  }
  int64_t Put(const std::string& key, const std::string& value) {
    return Txn({Op{false, key, value}});
  }
  int64_t Delete(const std::string& key) { return Txn({Op{true, key, ""}}); }

  // Drops history below `rev` (watchers below it are canceled).
  void Compact(int64_t rev) {
    std::lock_guard<std::mutex> l(mu_);
    compact_rev_ = rev;
    std::vector<mvccpb::Event> kept;
    for (auto& ev : history_) {
      if (ev.kv().mod_revision() >= rev) kept.push_back(std::move(ev));
    }
    history_ = std::move(kept);
  }

  int ReadCalls() const {
    std::lock_guard<std::mutex> l(mu_);
    return read_calls_;
  }

 private:
  mutable std::mutex mu_;
  int64_t rev_ ABSL_GUARDED_BY(mu_) = 1;  // as Store: 1 for an empty store
  int64_t compact_rev_ ABSL_GUARDED_BY(mu_) = -1;
  std::vector<mvccpb::Event> history_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, mvccpb::KeyValue> live_ ABSL_GUARDED_BY(mu_);
  mutable int read_calls_ ABSL_GUARDED_BY(mu_) = 0;

  std::mutex observer_mu_;  // the "apply thread": one writer at a time
  CommitObserver observer_ ABSL_GUARDED_BY(observer_mu_);
};

}  // namespace cppetcd::mvcc::testing

#endif  // CPPETCD_TESTS_UNIT_MVCC_WATCH_FAKE_SOURCE_H_
