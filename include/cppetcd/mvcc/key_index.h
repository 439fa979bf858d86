// The in-memory key index: for every key, the revisions at which it changed,
// grouped in generations (created -> modified ... -> tombstone). Semantics
// are etcd 3.4's keyIndex/treeIndex (mvcc/key_index.go, mvcc/index.go).
#ifndef CPPETCD_MVCC_KEY_INDEX_H_
#define CPPETCD_MVCC_KEY_INDEX_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "cppetcd/mvcc/revision.h"
#include "cppetcd/mvcc/rw_mutex.h"

namespace cppetcd::mvcc {

// The set of revisions a compaction keeps (etcd's "available" map).
using RevisionSet = absl::flat_hash_set<Revision>;

// One life of a key: from its creating put to its tombstone (the last
// revision of every generation but the newest is a tombstone). Empty
// (revs.empty()) only as the newest generation, after a tombstone.
struct Generation {
  int64_t version = 0;       // number of puts in this generation (kept across compaction)
  Revision created;          // the revision that created this generation
  std::vector<Revision> revs;  // ascending
  // Equal histories. `created.sub` is not compared: an index rebuilt after
  // compaction knows only the stored create_revision (main), as etcd's.
  bool operator==(const Generation& o) const {
    return version == o.version && created.main == o.created.main && revs == o.revs;
  }
};

// What Get returns: the key's state at a revision.
struct KeyAt {
  Revision modified;  // the newest revision <= atRev
  Revision created;   // the generation's creating revision
  int64_t version = 0;
};

// The history of one key. Not thread-safe (TreeIndex locks).
class KeyIndex {
 public:
  KeyIndex() = default;

  // Records a put at `rev`; rev must exceed every recorded revision (aborts
  // otherwise, as etcd panics).
  void Put(Revision rev);
  // Starts the key's history from a stored record (index rebuild after
  // compaction): a generation created at `created` with `version` puts whose
  // newest is `modified`. The index must be empty.
  void Restore(Revision created, Revision modified, int64_t version);
  // Records a delete at `rev` and starts a new empty generation. False (and no
  // change) when the key is not live.
  bool Tombstone(Revision rev);
  // The key's state at `at_rev`, or nullopt when it did not exist then.
  std::optional<KeyAt> Get(int64_t at_rev) const;
  // Revisions with main >= `rev`, ascending, at most one per main revision
  // (the newest); starts in the generation that was live at `rev`.
  std::vector<Revision> Since(int64_t rev) const;
  // Drops history not needed to read at revisions >= at_rev; adds the kept
  // revisions <= at_rev to `available`. The index may become empty.
  void Compact(int64_t at_rev, RevisionSet* available);
  // Adds to `available` what Compact(at_rev) would keep, without changing.
  void Keep(int64_t at_rev, RevisionSet* available) const;

  // Empty: no history at all (a single empty generation, or none).
  bool IsEmpty() const;
  // True when the newest generation is non-empty (the key exists now).
  bool IsLive() const { return !generations_.empty() && !generations_.back().revs.empty(); }
  Revision modified() const { return modified_; }
  const std::vector<Generation>& generations() const { return generations_; }
  // The lease attached by the newest put (0 none); maintained by the Store.
  int64_t lease() const { return lease_; }
  void set_lease(int64_t lease) { lease_ = lease; }

  bool operator==(const KeyIndex& o) const {
    return modified_ == o.modified_ && generations_ == o.generations_;
  }

 private:
  // Index of the generation and revision at which compaction at at_rev cuts.
  std::pair<size_t, ptrdiff_t> DoCompact(int64_t at_rev, RevisionSet* available) const;
  const Generation* FindGeneration(int64_t rev) const;

  Revision modified_;
  std::vector<Generation> generations_;
  int64_t lease_ = 0;
};

// The index of all keys: an ordered map key -> KeyIndex under a
// reader/writer lock. Reads (Get, Range, Revisions, RangeSince, Keep) take it
// shared; writes take it exclusively. Thread-safe.
//
// Key ranges: `end` empty = the single key `key`; `end` == "\0" (one NUL
// byte) = every key >= key; otherwise [key, end).
class TreeIndex {
 public:
  TreeIndex() = default;

  // Records a put of `key` at `rev` with `lease` (0 none). When `prev` is
  // given it gets the key's state just before (nullopt if not live) and
  // *prev_lease its lease: one lookup for the store's put path.
  void Put(std::string_view key, Revision rev, int64_t lease = 0,
           std::optional<KeyAt>* prev = nullptr, int64_t* prev_lease = nullptr);
  // Records a delete; false when the key is not live. *lease (optional) gets
  // the lease the key had.
  bool Tombstone(std::string_view key, Revision rev, int64_t* lease = nullptr);
  // Index rebuild: the record at `rev` of `key` (a put with the stored
  // create revision, version and lease, or a tombstone), in revision order.
  // A key's first record restores its generation (etcd's restore).
  void RestoreRecord(std::string_view key, Revision rev, bool tombstone, int64_t create_main,
                     int64_t version, int64_t lease);
  // The key's state at at_rev; *lease (optional) gets the live key's lease.
  std::optional<KeyAt> Get(std::string_view key, int64_t at_rev, int64_t* lease = nullptr) const;

  // Calls fn(key, state) for each key in the range that existed at at_rev, in
  // key order, under the read lock (fn must not call back into the index).
  // fn returns false to stop.
  void Visit(std::string_view key, std::string_view end, int64_t at_rev,
             absl::FunctionRef<bool(const std::string& key, const KeyAt& at)> fn) const;
  // Keys (optional) and their revisions at at_rev, in key order.
  void Range(std::string_view key, std::string_view end, int64_t at_rev,
             std::vector<std::string>* keys, std::vector<Revision>* revs) const;
  // Revisions at at_rev in key order, at most `limit` (0 = all), and returns
  // the total number of matching keys. *compact_rev (optional) gets the
  // compact revision seen under the same lock: the result is valid only
  // when at_rev >= it.
  int64_t Revisions(std::string_view key, std::string_view end, int64_t at_rev, size_t limit,
                    std::vector<Revision>* revs, int64_t* compact_rev = nullptr) const;
  // Number of keys in the range that existed at at_rev (compact_rev as above).
  int64_t CountRevisions(std::string_view key, std::string_view end, int64_t at_rev,
                         int64_t* compact_rev = nullptr) const;
  // Revisions with main >= rev of the keys in the range, ascending.
  std::vector<Revision> RangeSince(std::string_view key, std::string_view end, int64_t rev) const;
  // Compacts every key at `rev` (the lock is released every `chunk_keys`
  // keys so readers and writers progress) and returns the kept revisions.
  RevisionSet Compact(int64_t rev, size_t chunk_keys = 10000);
  // What Compact(rev) would keep, without changing anything.
  RevisionSet Keep(int64_t rev) const;

  // The compact revision readers must respect (-1 = none). Set before the
  // index is compacted at it; reads below it are invalid from then on.
  void SetCompactRev(int64_t rev);
  int64_t CompactRev() const;

  // Calls fn(key, lease) for every live key with a lease.
  void ForEachLeased(absl::FunctionRef<void(const std::string& key, int64_t lease)> fn) const;

  size_t Size() const;
  // Deep equality (tests).
  bool Equals(const TreeIndex& other) const;

 private:
  using Tree = absl::btree_map<std::string, KeyIndex, std::less<>>;
  // Calls fn for each entry in the key range (end rules above).
  template <typename Fn>
  void ForRange(std::string_view key, std::string_view end, Fn&& fn) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  mutable RwMutex mu_;
  Tree tree_ ABSL_GUARDED_BY(mu_);
  int64_t compact_rev_ ABSL_GUARDED_BY(mu_) = -1;
};

}  // namespace cppetcd::mvcc

#endif  // CPPETCD_MVCC_KEY_INDEX_H_
