#include "read_only.h"

namespace cppetcd::raft {

void ReadOnly::AddRequest(uint64_t index, const raftpb::Message& m) {
  std::string ctx = m.entries(0).data();
  if (pending_.count(ctx)) return;
  ReadIndexStatus st;
  st.req = m;
  st.index = index;
  pending_.emplace(ctx, std::move(st));
  queue_.push_back(std::move(ctx));
}

const std::map<uint64_t, bool>* ReadOnly::RecvAck(uint64_t id, const std::string& ctx) {
  auto it = pending_.find(ctx);
  if (it == pending_.end()) return nullptr;
  it->second.acks[id] = true;
  return &it->second.acks;
}

std::vector<ReadIndexStatus> ReadOnly::Advance(const std::string& ctx) {
  std::vector<ReadIndexStatus> out;
  size_t i = 0;
  bool found = false;
  for (; i < queue_.size(); ++i) {
    if (queue_[i] == ctx) {
      found = true;
      break;
    }
  }
  if (!found) return out;
  for (size_t k = 0; k <= i; ++k) {
    auto it = pending_.find(queue_.front());
    out.push_back(std::move(it->second));
    pending_.erase(it);
    queue_.pop_front();
  }
  return out;
}

std::string ReadOnly::LastPendingRequestCtx() const { return queue_.empty() ? std::string() : queue_.back(); }

}  // namespace cppetcd::raft
