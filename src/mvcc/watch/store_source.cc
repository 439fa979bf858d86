// WatchableStore over mvcc::Store: the WatchSource adapter.
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

#include "cppetcd/mvcc/kvstore.h"
#include "cppetcd/mvcc/watchable_store.h"
#include "src/mvcc/watch/watcher.h"

namespace cppetcd::mvcc {

class WatchableStore::SourceAdapter final : public WatchSource {
 public:
  explicit SourceAdapter(Store* store) : store_(store) {}
  int64_t Rev() const override { return store_->Rev(); }
  int64_t CompactRev() const override { return store_->CompactRev(); }
  void SetCommitObserver(CommitObserver observer) override {
    store_->SetCommitObserver(std::move(observer));
  }
  absl::Status ReadEvents(int64_t from_rev, int64_t to_rev, size_t max_events,
                          absl::FunctionRef<void(const mvccpb::Event&)> fn) const override {
    return store_->ReadEvents(from_rev, to_rev, max_events, fn);
  }
  absl::StatusOr<std::optional<mvccpb::KeyValue>> Get(std::string_view key,
                                                      int64_t rev) const override {
    RangeOptions options;
    options.rev = rev;
    options.limit = 1;
    auto r = store_->Range(key, "", options);
    if (!r.ok()) return r.status();
    if (r->kvs.empty()) return std::optional<mvccpb::KeyValue>();
    return std::optional<mvccpb::KeyValue>(std::move(r->kvs.front()));
  }

 private:
  Store* store_;
};

WatchableStore::WatchableStore(Store* store, WatchOptions options)
    : owned_source_(std::make_unique<SourceAdapter>(store)),
      source_(owned_source_.get()),
      options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : util::SystemClock::Get()) {
  Init();
}

}  // namespace cppetcd::mvcc
