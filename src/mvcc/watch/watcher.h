// Watcher state and watcher groups shared by WatchableStore and WatchStream.
// Private to the watch side.
#ifndef CPPETCD_SRC_MVCC_WATCH_WATCHER_H_
#define CPPETCD_SRC_MVCC_WATCH_WATCHER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "mvccpb/kv.pb.h"
#include "src/mvcc/watch/interval_index.h"

namespace cppetcd::mvcc {
class WatchStream;
}

namespace cppetcd::mvcc::watch_internal {

enum class WatcherState {
  kSynced,    // in Groups::synced; fed by the commit observer
  kUnsynced,  // in Groups::unsynced; waits for the catch-up thread
  kSyncing,   // taken by a catch-up round (no group holds it)
  kRemoved,   // canceled or compacted; dropped by whoever holds it
};

// All fields are guarded by the WatchableStore mutex.
struct Watcher {
  WatchStream* stream = nullptr;
  int64_t id = 0;
  KeyRange range;
  bool no_put = false;
  bool no_delete = false;
  bool prev_kv = false;
  bool progress_notify = false;
  // The first revision not yet queued for this watcher: every matching event
  // below it was queued exactly once. Only grows.
  int64_t next_rev = 0;
  WatcherState state = WatcherState::kUnsynced;
  bool events_since_progress = false;  // for ProgressNotifyAll

  // Keeps only the event types the watcher asked for.
  bool Wants(const mvccpb::Event& ev) const {
    if (ev.type() == mvccpb::Event::PUT) return !no_put;
    return !no_delete;
  }
};

struct Groups {
  IntervalIndex<Watcher> synced;
  // Unsynced watchers, owned here while they wait (insertion order is not
  // needed: each round takes up to max_watchers_per_sync of them).
  absl::flat_hash_map<Watcher*, std::shared_ptr<Watcher>> unsynced;
  size_t syncing = 0;  // watchers taken by the current catch-up round
};

}  // namespace cppetcd::mvcc::watch_internal

#endif  // CPPETCD_SRC_MVCC_WATCH_WATCHER_H_
