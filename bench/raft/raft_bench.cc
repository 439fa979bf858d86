// raft_bench: throughput of the raft state machine alone (no I/O): a 3-node
// cluster in memory where the leader takes proposals; every Ready is
// persisted to MemoryStorage and its messages stepped into the peers.
// Reports messages stepped per second and heap allocations per entry
// (counted by replacing the global operator new in this binary).
#include <atomic>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <new>
#include <string>

#include "benchmark/benchmark.h"
#include "cppetcd/raft/raw_node.h"
#include "cppetcd/raft/storage.h"

namespace {
std::atomic<uint64_t> g_allocs{0};
}  // namespace

void* operator new(std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
// The replacement new allocates with malloc, so free is the matching call.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace cppetcd::raft {
namespace {

struct Cluster {
  std::map<uint64_t, std::unique_ptr<MemoryStorage>> storage;
  std::map<uint64_t, std::unique_ptr<RawNode>> nodes;
  std::deque<raftpb::Message> queue;
  uint64_t stepped = 0;

  explicit Cluster(int n) {
    std::vector<Peer> peers;
    for (int i = 1; i <= n; ++i) peers.push_back({static_cast<uint64_t>(i), ""});
    for (const auto& p : peers) {
      storage[p.id] = std::make_unique<MemoryStorage>();
      Config c;
      c.id = p.id;
      c.storage = storage[p.id].get();
      c.max_inflight_msgs = 256;
      c.max_size_per_msg = 1 << 20;
      c.random_seed = p.id;
      nodes[p.id] = *RawNode::Create(c);
      (void)nodes[p.id]->Bootstrap(peers);
    }
    Settle();
    (void)nodes[1]->Campaign();
    Settle();
  }

  void Settle() {
    for (int round = 0; round < 1000; ++round) {
      bool any = false;
      for (auto& [id, n] : nodes) {
        while (n->HasReady()) {
          any = true;
          Ready rd = n->GetReady();
          (void)storage[id]->Append(rd.entries);
          if (!IsEmptyHardState(rd.hard_state)) storage[id]->SetHardState(rd.hard_state);
          for (auto& m : rd.messages) queue.push_back(std::move(m));
          for (const auto& e : rd.committed_entries) {
            if (e.type() == raftpb::EntryConfChange) {
              raftpb::ConfChange cc;
              cc.ParseFromString(e.data());
              n->ApplyConfChange(cc);
            }
          }
          n->Advance(rd);
        }
      }
      while (!queue.empty()) {
        raftpb::Message m = std::move(queue.front());
        queue.pop_front();
        (void)nodes[m.to()]->Step(m);
        ++stepped;
        any = true;
      }
      if (!any) return;
    }
  }

  // Keeps the logs short so memory stays flat over long runs.
  void Compact() {
    for (auto& [id, s] : storage) {
      uint64_t applied = nodes[id]->GetStatus().applied;
      auto first = s->FirstIndex();
      if (first.ok() && applied > *first + 1000) (void)s->Compact(applied - 500);
    }
  }
};

// Proposals of `batch` entries of 128 bytes at the leader of a 3-node cluster.
void BM_LeaderProposals(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  Cluster c(3);
  std::string payload(128, 'x');
  uint64_t entries = 0;
  uint64_t start_stepped = c.stepped;
  uint64_t allocs_before = g_allocs.load();
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) (void)c.nodes[1]->Propose(payload);
    c.Settle();
    entries += static_cast<uint64_t>(batch);
    if (entries % 4096 < static_cast<uint64_t>(batch)) c.Compact();
  }
  uint64_t allocs = g_allocs.load() - allocs_before;
  uint64_t stepped = c.stepped - start_stepped;
  state.SetItemsProcessed(static_cast<int64_t>(stepped));
  state.counters["msgs_per_s"] = benchmark::Counter(static_cast<double>(stepped), benchmark::Counter::kIsRate);
  state.counters["entries_per_s"] = benchmark::Counter(static_cast<double>(entries), benchmark::Counter::kIsRate);
  state.counters["allocs_per_entry"] = entries ? static_cast<double>(allocs) / static_cast<double>(entries) : 0;
}
BENCHMARK(BM_LeaderProposals)->Arg(1)->Arg(16)->Arg(128);

// Heartbeat rounds of an idle 3-node leader (tick + responses).
void BM_HeartbeatRound(benchmark::State& state) {
  Cluster c(3);
  uint64_t start_stepped = c.stepped;
  for (auto _ : state) {
    c.nodes[1]->Tick();
    c.Settle();
  }
  state.SetItemsProcessed(static_cast<int64_t>(c.stepped - start_stepped));
}
BENCHMARK(BM_HeartbeatRound);

}  // namespace
}  // namespace cppetcd::raft

BENCHMARK_MAIN();
