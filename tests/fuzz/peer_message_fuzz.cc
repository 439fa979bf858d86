// Fuzz target: what arrives on the peer port's raft stream. The input is a
// serialized peerpb.MessageBatch (the stream's frame, decoded as the
// transport does); its messages go through the transport's batch check
// (addressed to the receiving member), the server's filter
// (server::CheckPeerMessage) and RawNode::Step of one member of a small
// in-memory 3-member cluster that has elected member 1 and committed a few
// entries. The cluster then runs on (ticks, message delivery, Ready
// handling) for a bounded number of rounds. Invariants: no abort: a corrupt
// or hostile message is refused (raft::ErrInvalidPeerMessage) or handled,
// never a crash of the member; during set-up, no message the cluster makes
// itself is refused as invalid (the filter has no false positives).
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "cppetcd/raft/raw_node.h"
#include "cppetcd/raft/peer_message.h"
#include "cppetcd/raft/storage.h"
#include "cppetcd/server/peer_check.h"
#include "fuzz_util.h"
#include "peerpb/peer.pb.h"

namespace {

using namespace cppetcd;

constexpr uint64_t kMembers = 3;

struct Member {
  raft::MemoryStorage storage;
  std::unique_ptr<raft::RawNode> node;
};

class Cluster {
 public:
  Cluster() {
    for (uint64_t id = 1; id <= kMembers; ++id) {
      auto m = std::make_unique<Member>();
      raft::Config cfg;
      cfg.id = id;
      cfg.storage = &m->storage;
      cfg.election_tick = 10;
      cfg.heartbeat_tick = 1;
      cfg.check_quorum = true;
      cfg.pre_vote = true;
      cfg.random_seed = id;
      auto n = raft::RawNode::Create(cfg);
      FUZZ_CHECK(n.ok(), n.status().ToString());
      m->node = std::move(*n);
      std::vector<raft::Peer> peers;
      for (uint64_t p = 1; p <= kMembers; ++p) peers.push_back(raft::Peer{p, ""});
      FUZZ_CHECK(m->node->Bootstrap(peers).ok(), "bootstrap");
      members_.push_back(std::move(m));
    }
  }

  raft::RawNode* node(uint64_t id) { return members_[id - 1]->node.get(); }

  // Handles every Ready and delivers the messages, `rounds` times, ticking
  // every member `tick_every` rounds (0: never). `strict`: a message the
  // cluster made must not be refused as invalid.
  void Run(int rounds, int tick_every, bool strict) {
    for (int r = 0; r < rounds; ++r) {
      if (tick_every > 0 && r % tick_every == 0) {
        for (auto& m : members_) m->node->Tick();
      }
      for (auto& m : members_) HandleReady(m.get());
      size_t n = queue_.size();
      if (n == 0 && tick_every == 0) return;
      while (n-- > 0) {
        raftpb::Message msg = std::move(queue_.front());
        queue_.pop_front();
        if (msg.to() < 1 || msg.to() > kMembers) continue;
        absl::Status s = node(msg.to())->Step(msg);
        if (strict) {
          FUZZ_CHECK(!raft::IsInvalidPeerMessage(s),
                     "a message the cluster made was refused: " + s.ToString() + " " +
                         msg.ShortDebugString());
        }
      }
    }
  }

 private:
  void HandleReady(Member* m) {
    for (int i = 0; i < 16 && m->node->HasReady(); ++i) {
      raft::Ready rd = m->node->GetReady();
      if (!raft::IsEmptySnapshot(rd.snapshot)) (void)m->storage.ApplySnapshot(rd.snapshot);
      absl::Status s = m->storage.Append(rd.entries);
      FUZZ_CHECK(s.ok(), "storage append of a Ready's entries: " + s.ToString());
      if (!raft::IsEmptyHardState(rd.hard_state)) m->storage.SetHardState(rd.hard_state);
      for (auto& msg : rd.messages) queue_.push_back(std::move(msg));
      for (const auto& e : rd.committed_entries) {
        if (e.type() == raftpb::EntryConfChange) {
          raftpb::ConfChange cc;
          if (cc.ParseFromString(e.data())) m->node->ApplyConfChange(cc);
        } else if (e.type() == raftpb::EntryConfChangeV2) {
          raftpb::ConfChangeV2 cc;
          if (cc.ParseFromString(e.data())) m->node->ApplyConfChange(cc);
        }
      }
      m->node->Advance(rd);
    }
  }

  std::vector<std::unique_ptr<Member>> members_;
  std::deque<raftpb::Message> queue_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool quiet = (fuzz::QuietLogs(), true);
  (void)quiet;
  peerpb::MessageBatch batch;
  if (!batch.ParseFromArray(data, static_cast<int>(size))) return 0;
  if (batch.messages_size() > 64) return 0;  // the frame size limit bounds a batch

  Cluster c;
  c.Run(4, 0, true);  // bootstrap entries
  FUZZ_CHECK(c.node(1)->Campaign().ok(), "campaign");
  c.Run(50, 0, true);
  for (int i = 0; i < 3; ++i) (void)c.node(1)->Propose("entry-" + std::to_string(i));
  c.Run(50, 0, true);

  // The transport: a batch for another member is refused whole.
  const uint64_t local = batch.to();
  if (local < 1 || local > kMembers) return 0;
  auto is_member = [](uint64_t id) { return id >= 1 && id <= kMembers; };
  for (const raftpb::Message& m : batch.messages()) {
    if (!server::CheckPeerMessage(m, local, is_member).ok()) continue;
    (void)c.node(local)->Step(m);
  }
  c.Run(60, 3, false);
  (void)c.node(1)->Propose("after");
  c.Run(60, 3, false);
  return 0;
}
