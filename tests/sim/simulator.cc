#include "simulator.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cppetcd/raft/raw_node.h"
#include "cppetcd/raft/storage.h"
#include "raft_core.h"

namespace cppetcd::raft::sim {
namespace {

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 0x9e3779b97f4a7c15ULL + 0x1234567ULL) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t Uniform(uint64_t n) { return n == 0 ? 0 : Next() % n; }
  bool Chance(double p) { return static_cast<double>(Next() >> 11) * 0x1.0p-53 < p; }

 private:
  uint64_t s_;
};

uint64_t HashEntry(uint64_t h, const raftpb::Entry& e) {
  auto mix = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 0x100000001b3ULL;
    }
  };
  mix(e.index());
  mix(e.term());
  mix(static_cast<uint64_t>(e.type()));
  for (unsigned char c : e.data()) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

const char* MsgName(raftpb::MessageType t) { return raftpb::MessageType_Name(t).c_str(); }

struct SimNode {
  uint64_t id = 0;
  std::unique_ptr<MemoryStorage> storage;  // the durable log and HardState
  std::unique_ptr<RawNode> rn;             // null while crashed
  Config cfg;
  bool removed = false;  // removed from the config by a committed change
  bool was_member = false;
  // Durable application state.
  uint64_t applied = 0;
  uint64_t hash = 0xcbf29ce484222325ULL;
  raftpb::ConfState cs;
  // Volatile per incarnation.
  uint64_t seen_commit = 0;
  Raft* raft() { return rn->raft_for_test(); }
};

struct InFlight {
  uint64_t deliver_at;
  raftpb::Message m;
};

class Simulation {
 public:
  explicit Simulation(const Options& o) : opts_(o), rng_(o.seed) {}

  Result Run();

 private:
  void Trace(std::string s) {
    if (!opts_.verbose && result_.trace.size() >= 4000) {
      result_.trace.erase(result_.trace.begin(), result_.trace.begin() + 2000);
    }
    result_.trace.push_back(absl::StrCat("[t", now_, "] ", s));
  }
  void Fail(std::string why) {
    if (!result_.ok) return;
    result_.ok = false;
    result_.error = std::move(why);
    Trace(absl::StrCat("FAILED: ", result_.error));
  }

  SimNode& AddNode(uint64_t id);
  void StartNode(SimNode& n);
  void Crash(SimNode& n);
  void ProcessReady(SimNode& n);
  void Send(raftpb::Message m);
  bool Reachable(uint64_t a, uint64_t b) const;
  void DeliverSome(int count, bool only_due);
  void Deliver(InFlight f);
  void TickAll();
  void ProcessAll(double p);
  SimNode* Leader();
  void Propose();
  void ReadIndex();
  void ConfChange();
  void Transfer();
  void Partition();
  void Compact();
  void CheckInvariants();
  void CheckLogMatching(SimNode& a, SimNode& b);
  bool Converged(std::string* why);

  Options opts_;
  Rng rng_;
  Result result_;
  uint64_t now_ = 0;
  uint64_t next_id_ = 0;
  uint64_t seq_ = 0;
  std::map<uint64_t, SimNode> nodes_;
  std::vector<InFlight> net_;
  std::map<uint64_t, int> group_;  // partition group per node; empty = healed
  double drop_ = 0, dup_ = 0;
  int max_delay_ = 0;
  bool pre_vote_ = false, check_quorum_ = false;
  int spares_left_ = 3;

  // Checker state.
  std::map<uint64_t, uint64_t> leader_of_term_;
  std::map<uint64_t, uint64_t> applied_hash_;     // index -> state hash after it
  std::map<uint64_t, uint64_t> committed_term_;   // index -> entry term
  std::map<uint64_t, uint64_t> commit_at_term_;   // index -> term it was first seen committed
  uint64_t max_committed_ = 0;
  std::map<std::string, uint64_t> read_required_;  // ctx -> min acceptable index
};

SimNode& Simulation::AddNode(uint64_t id) {
  SimNode& n = nodes_[id];
  n.id = id;
  n.storage = std::make_unique<MemoryStorage>();
  n.cfg.id = id;
  n.cfg.storage = n.storage.get();
  n.cfg.election_tick = 10;
  n.cfg.heartbeat_tick = 1;
  n.cfg.pre_vote = pre_vote_;
  n.cfg.check_quorum = check_quorum_;
  n.cfg.max_size_per_msg = rng_.Chance(0.5) ? 64 : 4096;
  n.cfg.max_inflight_msgs = static_cast<int>(1 + rng_.Uniform(8));
  n.cfg.max_uncommitted_entries_size = rng_.Chance(0.3) ? 200 : 0;
  n.cfg.max_committed_size_per_ready = rng_.Chance(0.3) ? 100 : 0;
  n.cfg.random_seed = opts_.seed;
  StartNode(n);
  return n;
}

void Simulation::StartNode(SimNode& n) {
  // The application's state survives only as the latest snapshot (like a
  // server rebuilding from its snapshot): raft restores membership from the
  // snapshot's ConfState, so later conf changes must be applied again.
  auto snap = n.storage->Snapshot();
  if (snap.ok()) {
    n.applied = snap->metadata().index();
    n.hash = 0xcbf29ce484222325ULL;
    if (snap->data().size() == 8) std::memcpy(&n.hash, snap->data().data(), 8);
    n.cs = snap->metadata().conf_state();
  }
  n.cfg.applied = n.applied;
  n.cfg.random_seed = n.cfg.random_seed * 31 + 7;  // a new incarnation draws new timeouts
  auto rn = RawNode::Create(n.cfg);
  if (!rn.ok()) {
    Fail(absl::StrCat("restart of ", n.id, " failed: ", rn.status().ToString()));
    return;
  }
  n.rn = *std::move(rn);
  n.seen_commit = n.raft()->log().committed();
}

void Simulation::Crash(SimNode& n) {
  Trace(absl::StrCat("crash ", n.id, " (unpersisted state lost)"));
  n.rn.reset();
  ++result_.crashes;
}

bool Simulation::Reachable(uint64_t a, uint64_t b) const {
  if (group_.empty()) return true;
  auto ia = group_.find(a), ib = group_.find(b);
  int ga = ia == group_.end() ? 0 : ia->second;
  int gb = ib == group_.end() ? 0 : ib->second;
  return ga == gb;
}

void Simulation::Send(raftpb::Message m) {
  if (drop_ > 0 && rng_.Chance(drop_) && m.type() != raftpb::MsgSnap) {
    Trace(absl::StrCat("drop ", MsgName(m.type()), " ", m.from(), "->", m.to()));
    return;
  }
  int copies = (dup_ > 0 && rng_.Chance(dup_)) ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    net_.push_back({now_ + rng_.Uniform(static_cast<uint64_t>(max_delay_) + 1), m});
  }
}

void Simulation::Deliver(InFlight f) {
  raftpb::Message& m = f.m;
  auto it = nodes_.find(m.to());
  bool ok = it != nodes_.end() && it->second.rn != nullptr && Reachable(m.from(), m.to());
  auto sender = nodes_.find(m.from());
  bool sender_up = sender != nodes_.end() && sender->second.rn != nullptr;
  if (!ok) {
    if (m.type() == raftpb::MsgSnap && sender_up) sender->second.rn->ReportSnapshot(m.to(), SnapshotStatus::kFailure);
    if (sender_up && rng_.Chance(0.3)) sender->second.rn->ReportUnreachable(m.to());
    return;
  }
  if (opts_.verbose || m.type() == raftpb::MsgSnap || m.type() == raftpb::MsgVote || m.type() == raftpb::MsgTimeoutNow) {
    Trace(absl::StrCat("deliver ", MsgName(m.type()), " ", m.from(), "->", m.to(), " term=", m.term(),
                       " index=", m.index(), " log_term=", m.log_term(), " commit=", m.commit(),
                       " ents=", m.entries_size(), m.reject() ? " reject" : ""));
  }
  (void)it->second.rn->Step(m);
  if (m.type() == raftpb::MsgSnap && sender_up) sender->second.rn->ReportSnapshot(m.to(), SnapshotStatus::kFinish);
}

void Simulation::DeliverSome(int count, bool only_due) {
  for (int i = 0; i < count; ++i) {
    std::vector<size_t> due;
    for (size_t k = 0; k < net_.size(); ++k) {
      if (!only_due || net_[k].deliver_at <= now_) due.push_back(k);
    }
    if (due.empty()) return;
    size_t k = due[rng_.Uniform(due.size())];  // any due message: reordering
    InFlight f = std::move(net_[k]);
    net_.erase(net_.begin() + static_cast<ptrdiff_t>(k));
    Deliver(std::move(f));
  }
}

void Simulation::TickAll() {
  ++now_;
  for (auto& [id, n] : nodes_) {
    if (n.rn) n.rn->Tick();
  }
}

void Simulation::ProcessReady(SimNode& n) {
  if (!n.rn || !n.rn->HasReady()) return;
  Ready rd = n.rn->GetReady();
  // 1. Persist (snapshot, entries, hard state) before anything leaves.
  if (!IsEmptySnapshot(rd.snapshot)) {
    auto s = n.storage->ApplySnapshot(rd.snapshot);
    if (!s.ok()) Fail(absl::StrCat(n.id, ": ApplySnapshot: ", s.ToString()));
  }
  if (auto s = n.storage->Append(rd.entries); !s.ok()) Fail(absl::StrCat(n.id, ": Append: ", s.ToString()));
  if (!IsEmptyHardState(rd.hard_state)) {
    auto prev = n.storage->InitialState();
    if (prev.ok()) {
      const auto& ph = prev->first;
      if (rd.hard_state.term() < ph.term()) Fail(absl::StrCat(n.id, ": persisted term went back"));
      if (rd.hard_state.commit() < ph.commit()) Fail(absl::StrCat(n.id, ": persisted commit went back"));
      if (rd.hard_state.term() == ph.term() && ph.vote() != kNone && rd.hard_state.vote() != ph.vote()) {
        Fail(absl::StrCat(n.id, ": changed vote within term ", ph.term()));
      }
    }
    n.storage->SetHardState(rd.hard_state);
  }
  if (rd.soft_state && rd.soft_state->raft_state == StateType::kLeader) {
    ++result_.elections;
    Trace(absl::StrCat(n.id, " became leader term=", n.raft()->term()));
  }
  // 2. Send. Like a server, attach a fresh snapshot of the applied state to
  // MsgSnap (the stored one may predate the target's membership).
  for (auto& m : rd.messages) {
    if (m.type() == raftpb::MsgSnap) {
      if (n.applied > m.snapshot().metadata().index()) {
        std::string data(8, '\0');
        std::memcpy(data.data(), &n.hash, 8);
        auto fresh = n.storage->CreateSnapshot(n.applied, &n.cs, data);
        if (fresh.ok()) *m.mutable_snapshot() = *fresh;
      }
    }
    Send(std::move(m));
  }
  // 3. Apply.
  if (!IsEmptySnapshot(rd.snapshot)) {
    const auto& md = rd.snapshot.metadata();
    uint64_t h = 0;
    if (rd.snapshot.data().size() == 8) std::memcpy(&h, rd.snapshot.data().data(), 8);
    auto it = applied_hash_.find(md.index());
    if (it != applied_hash_.end() && it->second != h) Fail(absl::StrCat(n.id, ": snapshot state differs at ", md.index()));
    if (md.index() < n.applied) Fail(absl::StrCat(n.id, ": snapshot moves applied back"));
    n.applied = md.index();
    n.hash = h;
    n.cs = md.conf_state();
    ++result_.snapshots_applied;
    Trace(absl::StrCat(n.id, " applied snapshot index=", md.index(), " term=", md.term()));
  }
  for (const auto& e : rd.committed_entries) {
    if (e.index() != n.applied + 1) {
      Fail(absl::StrCat(n.id, ": applied index ", e.index(), " after ", n.applied));
      break;
    }
    n.hash = HashEntry(n.hash, e);
    n.applied = e.index();
    auto [it, inserted] = applied_hash_.emplace(e.index(), n.hash);
    if (!inserted && it->second != n.hash) {
      Fail(absl::StrCat("state machine safety: ", n.id, " applied a different entry at index ", e.index()));
    }
    if (e.type() == raftpb::EntryConfChange || e.type() == raftpb::EntryConfChangeV2) {
      raftpb::ConfChangeV2 cc;
      if (e.type() == raftpb::EntryConfChange) {
        raftpb::ConfChange v1;
        v1.ParseFromString(e.data());
        cc = ToV2(v1);
      } else {
        cc.ParseFromString(e.data());
      }
      n.cs = n.rn->ApplyConfChange(cc);
      ++result_.conf_changes_applied;
      if (opts_.verbose) Trace(absl::StrCat(n.id, " applied conf change [", DescribeConfChange(cc), "] at ", e.index()));
      bool member = false;
      for (auto* set : {&n.cs.voters(), &n.cs.learners(), &n.cs.voters_outgoing()}) {
        for (uint64_t v : *set) member = member || v == n.id;
      }
      // A node that applied its own removal stays out (IDs are never reused).
      bool removes_self = false;
      for (const auto& c : cc.changes()) {
        removes_self = removes_self || (c.type() == raftpb::ConfChangeRemoveNode && c.node_id() == n.id);
      }
      if (removes_self && !member) n.removed = true;
    }
  }
  for (const auto& rs : rd.read_states) {
    auto it = read_required_.find(rs.request_ctx);
    if (it == read_required_.end()) continue;  // duplicate answer
    if (rs.index < it->second) {
      Fail(absl::StrCat("stale read: ", n.id, " answered ReadIndex ", rs.request_ctx, " with index ", rs.index,
                        " < committed-before-request ", it->second));
    }
    ++result_.reads_answered;
    read_required_.erase(it);
  }
  n.rn->Advance(rd);
}

void Simulation::ProcessAll(double p) {
  for (auto& [id, n] : nodes_) {
    if (n.rn && rng_.Chance(p)) ProcessReady(n);
  }
}

SimNode* Simulation::Leader() {
  SimNode* best = nullptr;
  for (auto& [id, n] : nodes_) {
    if (!n.rn || n.raft()->state() != StateType::kLeader) continue;
    if (best == nullptr || n.raft()->term() > best->raft()->term()) best = &n;
  }
  return best;
}

void Simulation::Propose() {
  std::vector<SimNode*> up;
  for (auto& [id, n] : nodes_) {
    if (n.rn && !n.removed) up.push_back(&n);
  }
  if (up.empty()) return;
  SimNode* n = up[rng_.Uniform(up.size())];
  std::string data = absl::StrCat("p", ++seq_, std::string(rng_.Uniform(40), 'x'));
  absl::Status s = n->rn->Propose(data);
  if (opts_.verbose) Trace(absl::StrCat("propose at ", n->id, ": ", s.ok() ? "ok" : s.ToString()));
}

void Simulation::ReadIndex() {
  std::vector<SimNode*> up;
  for (auto& [id, n] : nodes_) {
    if (n.rn && !n.removed) up.push_back(&n);
  }
  if (up.empty()) return;
  SimNode* n = up[rng_.Uniform(up.size())];
  std::string ctx = absl::StrCat("r", ++seq_);
  // Every index committed anywhere so far must be visible to this read.
  read_required_[ctx] = max_committed_;
  n->rn->ReadIndex(ctx);
  Trace(absl::StrCat("read index ", ctx, " at ", n->id, " (must be >= ", max_committed_, ")"));
}

void Simulation::ConfChange() {
  SimNode* l = Leader();
  if (l == nullptr) return;
  raftpb::ConfState cs = l->raft()->tracker().ConfState();
  std::vector<uint64_t> voters(cs.voters().begin(), cs.voters().end());
  std::vector<uint64_t> learners(cs.learners().begin(), cs.learners().end());
  raftpb::ConfChangeV2 cc;
  bool v1 = false;
  raftpb::ConfChange c1;
  if (cs.voters_outgoing_size() > 0) {
    if (cs.auto_leave()) return;
    // Leave an explicit joint config.
  } else {
    auto add = [&](raftpb::ConfChangeType t, uint64_t id) {
      auto* c = cc.add_changes();
      c->set_type(t);
      c->set_node_id(id);
    };
    auto new_id = [&]() -> uint64_t {
      if (spares_left_ == 0) return 0;
      --spares_left_;
      uint64_t id = next_id_++;
      AddNode(id);
      return id;
    };
    switch (rng_.Uniform(7)) {
      case 0:
      case 1: {  // add a voter
        uint64_t id = new_id();
        if (id == 0) return;
        add(raftpb::ConfChangeAddNode, id);
        break;
      }
      case 2: {  // add a learner
        uint64_t id = new_id();
        if (id == 0) return;
        add(raftpb::ConfChangeAddLearnerNode, id);
        break;
      }
      case 3:  // promote a learner
        if (learners.empty()) return;
        add(raftpb::ConfChangeAddNode, learners[rng_.Uniform(learners.size())]);
        break;
      case 4:  // remove a voter or learner
        // Removing or demoting a voter of a two-voter cluster can leave it
        // without a leader for good if the other voter misses the commit
        // (a known Raft/etcd hazard); the simulator does not do that.
        if (voters.size() <= 2 && learners.empty()) return;
        if (!learners.empty() && (voters.size() <= 2 || rng_.Chance(0.3))) {
          add(raftpb::ConfChangeRemoveNode, learners[rng_.Uniform(learners.size())]);
        } else {
          add(raftpb::ConfChangeRemoveNode, voters[rng_.Uniform(voters.size())]);
        }
        break;
      case 5:  // demote a voter
        if (voters.size() <= 2) return;
        add(raftpb::ConfChangeAddLearnerNode, voters[rng_.Uniform(voters.size())]);
        break;
      case 6: {  // joint: swap a voter for a new one
        if (voters.size() <= 2) return;
        uint64_t id = new_id();
        if (id == 0) return;
        add(raftpb::ConfChangeAddNode, id);
        add(raftpb::ConfChangeRemoveNode, voters[rng_.Uniform(voters.size())]);
        break;
      }
    }
    uint64_t t = rng_.Uniform(3);
    cc.set_transition(static_cast<raftpb::ConfChangeTransition>(t));
    if (cc.changes_size() == 1 && t == 0 && rng_.Chance(0.5)) {
      v1 = true;
      c1.set_type(cc.changes(0).type());
      c1.set_node_id(cc.changes(0).node_id());
      c1.set_id(seq_++);
    }
  }
  absl::Status s = v1 ? l->rn->ProposeConfChange(c1) : l->rn->ProposeConfChange(cc);
  Trace(absl::StrCat("propose conf change at ", l->id, " [", DescribeConfChange(cc), "] transition=", cc.transition(),
                     v1 ? " (v1)" : "", ": ", s.ok() ? "ok" : s.ToString()));
}

void Simulation::Transfer() {
  SimNode* l = Leader();
  if (l == nullptr) return;
  auto voters = l->raft()->tracker().VoterNodes();
  uint64_t to = voters[rng_.Uniform(voters.size())];
  Trace(absl::StrCat("transfer leader ", l->id, " -> ", to));
  l->rn->TransferLeader(to);
}

void Simulation::Partition() {
  group_.clear();
  SimNode* l = Leader();
  if (l != nullptr && rng_.Chance(0.6)) {
    // Cut the leader off with a minority: the classic stale-leader setup.
    for (auto& [id, n] : nodes_) group_[id] = 0;
    group_[l->id] = 1;
    if (nodes_.size() >= 5 && rng_.Chance(0.5)) {
      auto it = nodes_.begin();
      std::advance(it, static_cast<ptrdiff_t>(rng_.Uniform(nodes_.size())));
      group_[it->first] = 1;
    }
  } else {
    for (auto& [id, n] : nodes_) group_[id] = static_cast<int>(rng_.Uniform(2));
  }
  std::vector<std::string> parts;
  for (auto& [id, g] : group_) parts.push_back(absl::StrCat(id, ":", g));
  Trace(absl::StrCat("partition ", absl::StrJoin(parts, " ")));
}

void Simulation::Compact() {
  std::vector<SimNode*> up;
  for (auto& [id, n] : nodes_) {
    if (n.rn && n.applied > 0) up.push_back(&n);
  }
  if (up.empty()) return;
  SimNode* n = up[rng_.Uniform(up.size())];
  auto first = n->storage->FirstIndex();
  if (!first.ok() || n->applied < *first) return;
  uint64_t idx = n->applied;
  std::string data(8, '\0');
  std::memcpy(data.data(), &n->hash, 8);
  auto snap = n->storage->CreateSnapshot(idx, &n->cs, data);
  if (!snap.ok()) return;
  uint64_t keep = rng_.Uniform(4);
  if (idx > keep + *first) {
    (void)n->storage->Compact(idx - keep);
    Trace(absl::StrCat("compact ", n->id, " snapshot=", idx, " compact=", idx - keep));
  }
}

void Simulation::CheckLogMatching(SimNode& a, SimNode& b) {
  const RaftLog& la = a.raft()->log();
  const RaftLog& lb = b.raft()->log();
  uint64_t lo = std::max(la.FirstIndex(), lb.FirstIndex());
  uint64_t hi = std::min(la.LastIndex(), lb.LastIndex());
  bool matched = false;
  for (uint64_t i = hi; i >= lo && i > 0; --i) {
    uint64_t ta = la.ZeroTermOnErr(i), tb = lb.ZeroTermOnErr(i);
    if (ta == tb) {
      matched = true;
    } else if (matched) {
      Fail(absl::StrCat("log matching: ", a.id, " and ", b.id, " agree at a later index but differ at ", i));
      return;
    }
  }
}

void Simulation::CheckInvariants() {
  for (auto& [id, n] : nodes_) {
    if (!n.rn) continue;
    Raft* r = n.raft();
    if (r->state() == StateType::kLeader) {
      auto [it, inserted] = leader_of_term_.emplace(r->term(), id);
      if (!inserted && it->second != id) {
        Fail(absl::StrCat("election safety: two leaders in term ", r->term(), ": ", it->second, " and ", id));
      }
    }
    uint64_t c = r->log().committed();
    if (c < n.seen_commit) Fail(absl::StrCat(id, ": commit went back from ", n.seen_commit, " to ", c));
    if (r->log().applied() > c) Fail(absl::StrCat(id, ": applied past commit"));
    for (uint64_t i = std::max(n.seen_commit + 1, r->log().FirstIndex()); i <= c; ++i) {
      uint64_t t = r->log().ZeroTermOnErr(i);
      auto [it, inserted] = committed_term_.emplace(i, t);
      if (!inserted && it->second != t) {
        Fail(absl::StrCat("committed entry differs: index ", i, " term ", t, " at ", id, " vs ", it->second));
      }
      auto [ct, ins2] = commit_at_term_.emplace(i, r->term());
      if (!ins2) ct->second = std::min(ct->second, r->term());
    }
    n.seen_commit = std::max(n.seen_commit, c);
    max_committed_ = std::max(max_committed_, c);
  }
  // Leader completeness (§5.4): a leader of term T holds every entry
  // committed in a term before T.
  for (auto& [id, n] : nodes_) {
    if (!n.rn || n.raft()->state() != StateType::kLeader) continue;
    Raft* r = n.raft();
    for (auto it = committed_term_.lower_bound(r->log().FirstIndex()); it != committed_term_.end(); ++it) {
      if (commit_at_term_[it->first] >= r->term()) continue;
      if (it->first > r->log().LastIndex() || r->log().ZeroTermOnErr(it->first) != it->second) {
        Fail(absl::StrCat("leader completeness: leader ", id, " of term ", r->term(), " lacks committed entry ",
                          it->first));
        break;
      }
    }
  }
  std::vector<SimNode*> up;
  for (auto& [id, n] : nodes_) {
    if (n.rn) up.push_back(&n);
  }
  for (size_t i = 0; i < up.size(); ++i) {
    for (size_t j = i + 1; j < up.size(); ++j) CheckLogMatching(*up[i], *up[j]);
  }
}

bool Simulation::Converged(std::string* why) {
  SimNode* l = Leader();
  if (l == nullptr) {
    *why = "no leader";
    return false;
  }
  raftpb::ConfState cs = l->raft()->tracker().ConfState();
  if (l->raft()->log().committed() < max_committed_) {
    *why = absl::StrCat("leader ", l->id, " commit ", l->raft()->log().committed(), " < ", max_committed_);
    return false;
  }
  std::set<uint64_t> members;
  for (auto* set : {&cs.voters(), &cs.learners(), &cs.voters_outgoing()}) members.insert(set->begin(), set->end());
  for (uint64_t id : members) {
    SimNode& n = nodes_.at(id);
    if (n.applied < max_committed_) {
      *why = absl::StrCat("member ", id, " applied ", n.applied, " < committed ", max_committed_, "; leader ", l->id,
                          " term ", l->raft()->term(), " conf ", l->raft()->tracker().config.Describe(), " progress ");
      for (const auto& [pid, pr] : l->raft()->tracker().progress) absl::StrAppend(why, pid, ":{", pr.Describe(), "} ");
      if (n.rn) {
        absl::StrAppend(why, " member state ", StateTypeName(n.raft()->state()), " term ", n.raft()->term(), " lead ",
                        n.raft()->lead(), " log ", n.raft()->log().Describe(), " last ", n.raft()->log().LastIndex());
      } else {
        absl::StrAppend(why, " member down");
      }
      return false;
    }
  }
  return true;
}

Result Simulation::Run() {
  pre_vote_ = rng_.Chance(0.5);
  check_quorum_ = rng_.Chance(0.5);
  drop_ = rng_.Chance(0.5) ? 0.05 * static_cast<double>(rng_.Uniform(4)) : 0;
  dup_ = rng_.Chance(0.3) ? 0.05 : 0;
  max_delay_ = static_cast<int>(rng_.Uniform(4));
  Trace(absl::StrCat("seed=", opts_.seed, " nodes=", opts_.nodes, " pre_vote=", pre_vote_, " check_quorum=",
                     check_quorum_, " drop=", drop_, " dup=", dup_, " max_delay=", max_delay_));
  std::vector<Peer> peers;
  for (int i = 1; i <= opts_.nodes; ++i) peers.push_back({static_cast<uint64_t>(i), ""});
  next_id_ = static_cast<uint64_t>(opts_.nodes) + 1;
  if (!opts_.conf_changes) spares_left_ = 0;
  for (const auto& p : peers) {
    SimNode& n = AddNode(p.id);
    if (auto s = n.rn->Bootstrap(peers); !s.ok()) Fail(s.ToString());
  }
  ProcessAll(1.0);

  for (int step = 0; step < opts_.steps && result_.ok; ++step) {
    uint64_t r = rng_.Uniform(1000);
    if (r < 350) {
      DeliverSome(1 + static_cast<int>(rng_.Uniform(3)), true);
    } else if (r < 600) {
      TickAll();
    } else if (r < 760) {
      Propose();
    } else if (r < 810) {
      ReadIndex();
    } else if (r < 835) {
      if (opts_.conf_changes) ConfChange();
    } else if (r < 850) {
      Transfer();
    } else if (r < 862) {
      Partition();
    } else if (r < 895) {
      if (!group_.empty() && rng_.Chance(0.4)) {  // partitions last a while
        Trace("heal");
        group_.clear();
      }
    } else if (r < 902) {
      // Crash a live node, keeping a majority of the initial nodes up.
      int down = 0;
      std::vector<SimNode*> up;
      for (auto& [id, n] : nodes_) {
        if (!n.rn) ++down;
        if (n.rn) up.push_back(&n);
      }
      if (down < std::max(1, (opts_.nodes - 1) / 2) && !up.empty()) Crash(*up[rng_.Uniform(up.size())]);
    } else if (r < 935) {
      std::vector<SimNode*> crashed;
      for (auto& [id, n] : nodes_) {
        if (!n.rn) crashed.push_back(&n);
      }
      if (!crashed.empty()) {
        SimNode* n = crashed[rng_.Uniform(crashed.size())];
        StartNode(*n);
        Trace(absl::StrCat("restart ", n->id, " applied=", n->applied));
      }
    } else if (r < 965) {
      Compact();
    } else {
      DeliverSome(static_cast<int>(net_.size()), false);  // flush: everything arrives
    }
    ProcessAll(0.9);
    CheckInvariants();
  }
  if (!result_.ok) return result_;

  // Healing phase: no faults, every node up except removed ones.
  Trace("heal all; restart all; stop faults");
  group_.clear();
  drop_ = 0;
  dup_ = 0;
  for (auto& [id, n] : nodes_) {
    // Removed nodes stay up too: a removed leader must hand over first.
    if (!n.rn) StartNode(n);
  }
  std::string why;
  bool done = false;
  for (int t = 0; t < 3000 && result_.ok && !done; ++t) {
    TickAll();
    for (int round = 0; round < 50 && (!net_.empty() || round == 0); ++round) {
      ProcessAll(1.0);
      DeliverSome(static_cast<int>(net_.size()), false);
      ProcessAll(1.0);
      CheckInvariants();
    }
    // Keep proposing now and then so a new leader commits in its term.
    if (t % 20 == 10) Propose();
    done = Converged(&why);
  }
  if (result_.ok && !done) Fail(absl::StrCat("did not converge after healing: ", why));
  result_.committed = max_committed_;
  if (result_.ok) {
    // Pending reads at the end may be dropped; that is allowed.
    Trace(absl::StrCat("ok: committed=", max_committed_, " elections=", result_.elections));
  }
  return result_;
}

}  // namespace

Result RunScenario(const Options& opts) {
  Simulation s(opts);
  return s.Run();
}

}  // namespace cppetcd::raft::sim
