// EtcdServer membership changes (etcd 3.4 etcdserver/server.go AddMember,
// RemoveMember, UpdateMember, PromoteMember and membership/cluster.go's
// checks): requests are checked against the applied membership, proposed as
// raft ConfChange entries (one at a time, as raft allows) and answered once
// applied. Any thread. The membership itself, its validation at apply and
// its buckets are membership_store.h's.
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "server_impl.h"

namespace cppetcd::server {
namespace {

// A peer must have been connected this long for a change to count it as
// healthy (etcd HealthInterval).
constexpr milliseconds kHealthInterval{5000};

// "http(s)://host:port" or "unix(s)://host:port" with nothing after the
// port (etcd types.NewURLs).
bool ValidPeerUrl(const std::string& u) {
  std::string_view rest;
  if (u.starts_with("http://") || u.starts_with("unix://")) {
    rest = std::string_view(u).substr(7);
  } else if (u.starts_with("https://") || u.starts_with("unixs://")) {
    rest = std::string_view(u).substr(8);
  } else {
    return false;
  }
  const size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  const std::string_view port = rest.substr(colon + 1);
  if (port.empty() || port.size() > 5) return false;
  for (char c : port) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return rest.find('/') == std::string_view::npos;
}

absl::StatusOr<std::vector<std::string>> CheckPeerUrls(
    const google::protobuf::RepeatedPtrField<std::string>& urls) {
  if (urls.empty()) return ErrInvalidPeerUrls();
  std::vector<std::string> out;
  out.reserve(urls.size());
  for (const auto& u : urls) {
    // As Go's url.Parse and URL.String in etcd: a control character is
    // refused, a byte above ASCII (any bytes come in: the field is `bytes`)
    // is kept percent-escaped, so that a stored URL is always ASCII.
    std::string norm;
    for (unsigned char c : u) {
      if (c < 0x20 || c == 0x7f) return ErrInvalidPeerUrls();
      if (c >= 0x80) {
        constexpr char kHex[] = "0123456789ABCDEF";
        norm += '%';
        norm += kHex[c >> 4];
        norm += kHex[c & 0xF];
      } else {
        norm += static_cast<char>(c);
      }
    }
    if (!ValidPeerUrl(norm)) return ErrInvalidPeerUrls();
    out.push_back(std::move(norm));
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

// The answer to a membership change once applied: the header and the
// members after it (etcd's Member*Response all carry the member list). As
// in etcd 3.4's cluster API, the header has no revision.
template <class Resp>
Waiter EtcdServer::Impl::AnswerWithMembers(Done<Resp> done,
                                           absl::AnyInvocable<void(Resp*)> fill) {
  return [this, done = std::move(done), fill = std::move(fill)](Outcome o) mutable {
    if (!o.status.ok()) return std::move(done)(std::move(o.status));
    Resp resp;
    FillHeaderImpl(resp.mutable_header(), /*set_revision=*/false);
    if (fill) fill(&resp);
    for (auto& x : membership_.List()) *resp.add_members() = std::move(x);
    std::move(done)(std::move(resp));
  };
}

void EtcdServer::Impl::ProposeConfChange(raftpb::ConfChange cc, Waiter w) {
  if (Stopping()) return std::move(w)(Outcome{ErrStopped(), {}, std::nullopt});
  const uint64_t id = idgen_->Next();
  cc.set_id(id);
  if (!waits_->Register(id, std::move(w), WaitRegistry::Bound::kExempt).ok()) return;
  bool posted = false;
  {
    util::MutexLock l(&raft_mu_);
    if (!raft_stop_) {
      posted = true;
      raft_tasks_.push_back([this, cc, id] {
        if (lead_.load() == raft::kNone) {
          CompleteWaiter(id, Outcome{ErrNoLeader(), {}, std::nullopt});
          return;
        }
        absl::Status s = node_->ProposeConfChange(cc);
        if (!s.ok()) {
          CompleteWaiter(id, Outcome{raft::IsProposalDropped(s) ? ErrTooManyRequests() : s, {},
                                     std::nullopt});
        }
      });
      raft_cv_.Signal();
    }
  }
  if (!posted) CompleteWaiter(id, Outcome{ErrStopped(), {}, std::nullopt});
}

void EtcdServer::Impl::MemberAdd(const etcdserverpb::MemberAddRequest& req,
                                 Done<etcdserverpb::MemberAddResponse> done) {
  if (Stopping()) return std::move(done)(ErrStopped());
  auto urls = CheckPeerUrls(req.peerurls());
  if (!urls.ok()) return std::move(done)(urls.status());
  const auto now = timer_clock_->Now();
  serverpb::MemberRecord m;
  m.set_id(ComputeMemberId(*urls, cfg_.initial_cluster_token, clock_->WallMillis() / 1000));
  for (const auto& u : *urls) m.add_peer_urls(u);
  m.set_is_learner(req.islearner());
  {
    const MemberMap members = membership_.Members();
    if (PeerUrlsTaken(members, *urls, raft::kNone)) {
      return std::move(done)(ErrPeerUrlExists());
    }
    if (members.contains(m.id())) {
      return std::move(done)(ErrIdExists());
    }
    size_t learners = 0, voters = 0, started = 0;
    for (const auto& [id, other] : members) {
      if (other.is_learner()) {
        ++learners;
        continue;
      }
      ++voters;
      if (!other.name().empty()) ++started;
    }
    if (req.islearner() && learners >= kMaxLearners) {
      // etcd 3.4 allows one learner at a time.
      return std::move(done)(ErrTooManyLearners());
    }
    if (cfg_.strict_reconfig_check) {
      // The new voter counts as not started: the started ones must still
      // be a quorum of the grown cluster (IsReadyToAddVotingMember).
      const size_t n = voters + 1;
      const bool single_to_two = started == 1 && n == 2;
      if (!req.islearner() && !single_to_two && started < n / 2 + 1) {
        lg_.Warn("rejecting member add; started member will be less than quorum",
                 {{"local-member-id", util::IdToHex(member_id_)}});
        return std::move(done)(ErrNotEnoughStartedMembers());
      }
      for (const auto& [id, other] : members) {
        if (other.is_learner() || id == member_id_.load()) continue;
        auto since = transport_->ActiveSince(id);
        if (!since.has_value() || *since > now - kHealthInterval) {
          lg_.Warn("rejecting member add request; local member has not been connected to all "
                   "peers, reconfigure breaks active quorum",
                   {{"local-member-id", util::IdToHex(member_id_)},
                    {"requested-member-add", util::IdToHex(m.id())}});
          return std::move(done)(ErrUnhealthy());
        }
      }
    }
  }
  raftpb::ConfChange cc;
  cc.set_type(req.islearner() ? raftpb::ConfChangeAddLearnerNode : raftpb::ConfChangeAddNode);
  cc.set_node_id(m.id());
  cc.set_context(m.SerializeAsString());
  ProposeConfChange(std::move(cc),
                    AnswerWithMembers<etcdserverpb::MemberAddResponse>(
                        std::move(done), [m](etcdserverpb::MemberAddResponse* resp) {
                          *resp->mutable_member() = ToMemberPb(m);
                        }));
}

void EtcdServer::Impl::MemberRemove(const etcdserverpb::MemberRemoveRequest& req,
                                    Done<etcdserverpb::MemberRemoveResponse> done) {
  if (Stopping()) return std::move(done)(ErrStopped());
  const uint64_t id = req.id();
  const auto now = timer_clock_->Now();
  {
    const MemberMap members = membership_.Members();
    auto it = members.find(id);
    if (it == members.end()) {
      return std::move(done)(membership_.MissingMemberError(id));
    }
    if (cfg_.strict_reconfig_check && !it->second.is_learner()) {
      // IsReadyToRemoveVotingMember: the started voters left must be a
      // quorum of the shrunk cluster.
      size_t n = 0, started = 0;
      for (const auto& [mid, other] : members) {
        if (other.is_learner() || mid == id) continue;
        ++n;
        if (!other.name().empty()) ++started;
      }
      if (started < n / 2 + 1) {
        return std::move(done)(ErrNotEnoughStartedMembers());
      }
      // A member that is down is safe to remove; otherwise the connected
      // voters minus this one must still be a quorum.
      const bool peer_down = id != member_id_.load() && !transport_->ActiveSince(id).has_value();
      if (!peer_down) {
        size_t voters = 0, active = 0;
        for (const auto& [mid, other] : members) {
          if (other.is_learner()) continue;
          ++voters;
          if (mid == member_id_.load()) {
            ++active;
            continue;
          }
          auto since = transport_->ActiveSince(mid);
          if (since.has_value() && *since <= now - kHealthInterval) ++active;
        }
        if (active < 1 + 1 + (voters - 1) / 2) {
          lg_.Warn("rejecting member remove request; local member has not been connected to all "
                   "peers, reconfigure breaks active quorum",
                   {{"local-member-id", util::IdToHex(member_id_)},
                    {"requested-member-remove", util::IdToHex(id)}});
          return std::move(done)(ErrUnhealthy());
        }
      }
    }
  }
  raftpb::ConfChange cc;
  cc.set_type(raftpb::ConfChangeRemoveNode);
  cc.set_node_id(id);
  ProposeConfChange(std::move(cc),
                    AnswerWithMembers<etcdserverpb::MemberRemoveResponse>(std::move(done), nullptr));
}

void EtcdServer::Impl::MemberUpdate(const etcdserverpb::MemberUpdateRequest& req,
                                    Done<etcdserverpb::MemberUpdateResponse> done) {
  if (Stopping()) return std::move(done)(ErrStopped());
  auto urls = CheckPeerUrls(req.peerurls());
  if (!urls.ok()) return std::move(done)(urls.status());
  serverpb::MemberRecord m;
  {
    const MemberMap members = membership_.Members();
    auto it = members.find(req.id());
    if (it == members.end()) {
      return std::move(done)(membership_.MissingMemberError(req.id()));
    }
    if (PeerUrlsTaken(members, *urls, req.id())) {
      return std::move(done)(ErrPeerUrlExists());
    }
    m = it->second;
  }
  m.clear_peer_urls();
  for (const auto& u : *urls) m.add_peer_urls(u);
  raftpb::ConfChange cc;
  cc.set_type(raftpb::ConfChangeUpdateNode);
  cc.set_node_id(m.id());
  cc.set_context(m.SerializeAsString());
  ProposeConfChange(std::move(cc),
                    AnswerWithMembers<etcdserverpb::MemberUpdateResponse>(std::move(done), nullptr));
}

void EtcdServer::Impl::LocalPromote(const etcdserverpb::MemberPromoteRequest& req,
                                    Done<etcdserverpb::MemberPromoteResponse> done) {
  // On the leader (etcd: only the leader knows whether the learner caught up).
  if (Stopping()) return std::move(done)(ErrStopped());
  serverpb::MemberRecord m;
  {
    const MemberMap members = membership_.Members();
    auto it = members.find(req.id());
    if (it == members.end()) {
      return std::move(done)(membership_.MissingMemberError(req.id()));
    }
    if (!it->second.is_learner()) {
      return std::move(done)(ErrMemberNotLearner());
    }
    m = it->second;
    if (cfg_.strict_reconfig_check) {
      size_t n = 1, started = m.name().empty() ? 0 : 1;
      for (const auto& [id, other] : members) {
        if (other.is_learner()) continue;
        ++n;
        if (!other.name().empty()) ++started;
      }
      if (started < n / 2 + 1) {
        return std::move(done)(ErrNotEnoughStartedMembers());
      }
    }
  }
  // The learner must hold at least 90% of the leader's log (etcd
  // isLearnerReady).
  auto st = RaftStatus(milliseconds(1000));
  if (!st.has_value()) return std::move(done)(ErrTimeout());
  if (st->soft_state.raft_state != raft::StateType::kLeader) return std::move(done)(ErrNotLeader());
  const auto leader = st->progress.find(member_id_.load());
  const auto learner = st->progress.find(m.id());
  if (leader == st->progress.end() || learner == st->progress.end() ||
      static_cast<double>(learner->second.match) <
          static_cast<double>(leader->second.match) * 0.9) {
    return std::move(done)(ErrLearnerNotReady());
  }
  m.set_is_learner(false);
  raftpb::ConfChange cc;
  cc.set_type(raftpb::ConfChangeAddNode);
  cc.set_node_id(m.id());
  cc.set_context(m.SerializeAsString());
  ProposeConfChange(std::move(cc),
                    AnswerWithMembers<etcdserverpb::MemberPromoteResponse>(std::move(done), nullptr));
}

}  // namespace cppetcd::server
