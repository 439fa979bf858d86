// A tiny in-memory cluster for raft unit tests: MemoryStorage per node, a
// message queue delivered by hand, and filters (cut links, drop types).
#ifndef CPPETCD_TESTS_UNIT_RAFT_TEST_CLUSTER_H_
#define CPPETCD_TESTS_UNIT_RAFT_TEST_CLUSTER_H_

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "cppetcd/raft/peer_message.h"
#include "cppetcd/raft/raw_node.h"
#include "cppetcd/raft/storage.h"
#include "gtest/gtest.h"
#include "raft_core.h"

namespace cppetcd::raft::testing {

struct TestNode {
  std::unique_ptr<MemoryStorage> storage;
  std::unique_ptr<RawNode> node;
  std::vector<raftpb::Entry> applied;  // committed entries, in order
  std::vector<ReadState> reads;
  Raft* raft() { return node->raft_for_test(); }
};

inline Config DefaultConfig(uint64_t id, Storage* s) {
  Config c;
  c.id = id;
  c.storage = s;
  c.election_tick = 10;
  c.heartbeat_tick = 1;
  c.max_size_per_msg = kNoLimit;
  c.max_inflight_msgs = 256;
  c.random_seed = 42;
  return c;
}

class TestCluster {
 public:
  using Tweak = std::function<void(Config*)>;

  // Creates and bootstraps voters `ids` (every node knows all of them) and
  // learners `learners`.
  // With `bootstrap`, voters start from RawNode::Bootstrap (ConfChange
  // entries 1..n, so nodes added later can replay the log from index 1);
  // otherwise from a snapshot at index 1 holding the ConfState.
  explicit TestCluster(std::vector<uint64_t> ids, Tweak tweak = nullptr, std::vector<uint64_t> learners = {},
                       bool bootstrap = false)
      : tweak_(std::move(tweak)) {
    if (bootstrap) {
      std::vector<Peer> peers;
      for (uint64_t id : ids) peers.push_back({id, ""});
      for (uint64_t id : ids) {
        AddEmptyNode(id);
        EXPECT_TRUE(nodes_[id].node->Bootstrap(peers).ok());
      }
    } else {
      for (uint64_t id : ids) AddNode(id, ids, learners);
      for (uint64_t id : learners) AddNode(id, ids, learners);
    }
    Stabilize();
  }

  void AddNode(uint64_t id, const std::vector<uint64_t>& voters, const std::vector<uint64_t>& learners) {
    auto& n = nodes_[id];
    n.storage = std::make_unique<MemoryStorage>();
    raftpb::Snapshot snap;
    snap.mutable_metadata()->set_index(1);
    snap.mutable_metadata()->set_term(1);
    for (uint64_t v : voters) snap.mutable_metadata()->mutable_conf_state()->add_voters(v);
    for (uint64_t l : learners) snap.mutable_metadata()->mutable_conf_state()->add_learners(l);
    EXPECT_TRUE(n.storage->ApplySnapshot(snap).ok());
    Config c = DefaultConfig(id, n.storage.get());
    c.random_seed = 42 + id;
    if (tweak_) tweak_(&c);
    auto rn = RawNode::Create(c);
    EXPECT_TRUE(rn.ok()) << rn.status();
    n.node = *std::move(rn);
  }

  // Adds a node that starts empty (to be added by a conf change).
  void AddEmptyNode(uint64_t id) {
    auto& n = nodes_[id];
    n.storage = std::make_unique<MemoryStorage>();
    Config c = DefaultConfig(id, n.storage.get());
    c.random_seed = 42 + id;
    if (tweak_) tweak_(&c);
    auto rn = RawNode::Create(c);
    EXPECT_TRUE(rn.ok()) << rn.status();
    n.node = *std::move(rn);
  }

  // Simulates a crash and restart: the node is rebuilt from its storage
  // (unpersisted state is lost; applied restarts at the snapshot).
  void Restart(uint64_t id) {
    auto& n = nodes_.at(id);
    Config c = DefaultConfig(id, n.storage.get());
    c.random_seed = 4242 + id;
    if (tweak_) tweak_(&c);
    auto rn = RawNode::Create(c);
    EXPECT_TRUE(rn.ok()) << rn.status();
    n.node = *std::move(rn);
  }

  TestNode& operator[](uint64_t id) { return nodes_.at(id); }
  Raft* raft(uint64_t id) { return nodes_.at(id).raft(); }

  // Handles one Ready of node id: persist, queue messages, apply.
  bool ProcessReady(uint64_t id) {
    auto& n = nodes_.at(id);
    if (!n.node->HasReady()) return false;
    Ready rd = n.node->GetReady();
    if (!IsEmptySnapshot(rd.snapshot)) {
      EXPECT_TRUE(n.storage->ApplySnapshot(rd.snapshot).ok());
    }
    EXPECT_TRUE(n.storage->Append(rd.entries).ok());
    if (!IsEmptyHardState(rd.hard_state)) n.storage->SetHardState(rd.hard_state);
    for (auto& m : rd.messages) Enqueue(std::move(m));
    for (const auto& e : rd.committed_entries) {
      n.applied.push_back(e);
      if (e.type() == raftpb::EntryConfChange) {
        raftpb::ConfChange cc;
        cc.ParseFromString(e.data());
        n.node->ApplyConfChange(cc);
      } else if (e.type() == raftpb::EntryConfChangeV2) {
        raftpb::ConfChangeV2 cc;
        cc.ParseFromString(e.data());
        n.node->ApplyConfChange(cc);
      }
    }
    for (auto& r : rd.read_states) n.reads.push_back(r);
    n.node->Advance(rd);
    return true;
  }

  void Enqueue(raftpb::Message m) {
    if (observer) observer(m);
    if (Dropped(m)) return;
    queue_.push_back(std::move(m));
  }

  bool Dropped(const raftpb::Message& m) const {
    if (drop_filter && drop_filter(m)) return true;
    if (ignored_.count(m.type())) return true;
    if (cut_.count({m.from(), m.to()}) || cut_.count({m.to(), m.from()})) return true;
    if (isolated_.count(m.from()) || isolated_.count(m.to())) return true;
    return !nodes_.count(m.to()) || down_.count(m.to());
  }

  // Processes Readies and delivers messages until nothing is left.
  void Stabilize(int max_rounds = 10000) {
    for (int round = 0; round < max_rounds; ++round) {
      bool progress = false;
      for (auto& [id, n] : nodes_) {
        if (down_.count(id)) continue;
        progress |= ProcessReady(id);
      }
      while (!queue_.empty()) {
        raftpb::Message m = std::move(queue_.front());
        queue_.pop_front();
        if (Dropped(m)) continue;
        // Whatever else Step answers, a message a node made is never
        // refused as invalid (the peer-message check has no false positives).
        absl::Status s = nodes_.at(m.to()).node->Step(m);
        EXPECT_FALSE(IsInvalidPeerMessage(s)) << s << " " << m.ShortDebugString();
        progress = true;
      }
      if (!progress) return;
    }
    ADD_FAILURE() << "cluster did not stabilize";
  }

  void Campaign(uint64_t id) {
    EXPECT_TRUE(nodes_.at(id).node->Campaign().ok());
    Stabilize();
  }

  // Ticks a node n times, stabilising after each tick.
  void Tick(uint64_t id, int n) {
    for (int i = 0; i < n; ++i) {
      nodes_.at(id).node->Tick();
      Stabilize();
    }
  }
  // Ticks all live nodes together n times.
  void TickAll(int n) {
    for (int i = 0; i < n; ++i) {
      for (auto& [id, node] : nodes_) {
        if (!down_.count(id)) node.node->Tick();
      }
      Stabilize();
    }
  }

  uint64_t Leader() {
    for (auto& [id, n] : nodes_) {
      if (!down_.count(id) && !isolated_.count(id) && n.raft()->state() == StateType::kLeader) return id;
    }
    return kNone;
  }

  void Cut(uint64_t a, uint64_t b) { cut_.insert({a, b}); }
  void Isolate(uint64_t id) { isolated_.insert(id); }
  void Ignore(raftpb::MessageType t) { ignored_.insert(t); }
  void Down(uint64_t id) { down_.insert(id); }
  void Recover() {
    drop_filter = nullptr;
    cut_.clear();
    isolated_.clear();
    ignored_.clear();
    down_.clear();
  }
  std::deque<raftpb::Message>& queue() { return queue_; }

  std::map<uint64_t, TestNode> nodes_;
  // Sees every message sent (before filtering); drops those it returns true for.
  std::function<void(const raftpb::Message&)> observer;
  std::function<bool(const raftpb::Message&)> drop_filter;

 private:
  Tweak tweak_;
  std::deque<raftpb::Message> queue_;
  std::set<std::pair<uint64_t, uint64_t>> cut_;
  std::set<uint64_t> isolated_;
  std::set<uint64_t> down_;
  std::set<int> ignored_;
};

}  // namespace cppetcd::raft::testing

#endif  // CPPETCD_TESTS_UNIT_RAFT_TEST_CLUSTER_H_
