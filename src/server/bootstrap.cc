// EtcdServer bootstrap and shutdown: Create (config checks, initial members,
// IDs, data-dir layout), opening or bootstrapping the WAL, snapshot, backend
// and raft node, Start (the state machines and the four threads) and Stop.
// Create and Start run on the caller's thread, before any loop; Stop on the
// caller's thread (or the destructor's), after which it joins the loops.
#include "server_impl.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"

namespace cppetcd::server {
namespace {

constexpr int64_t kDefaultQuotaBytes = int64_t{2} << 30;
constexpr char kDefaultPeerUrl[] = "http://localhost:2380";

std::string HumanBytes(int64_t n) {
  // etcd's humanize.Bytes (SI units, one decimal).
  const char* units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1000 && u < 5) {
    v /= 1000;
    ++u;
  }
  if (u == 0) return absl::StrCat(n, " B");
  return absl::StrFormat("%.1f %s", v, units[u]);
}

// Parses --auto-compaction-retention: a Go duration ("1h", "30m", "90s",
// "1h30m") or a plain number of hours ("1", "0.5"). 0 disables.
absl::StatusOr<milliseconds> ParseRetentionPeriod(const std::string& s) {
  if (s.empty()) return milliseconds(0);
  double hours = 0;
  if (absl::SimpleAtod(s, &hours)) {
    return milliseconds(static_cast<int64_t>(hours * 3600.0 * 1000.0));
  }
  absl::Duration d;
  if (!absl::ParseDuration(s, &d)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid auto-compaction-retention \"", s, "\""));
  }
  return milliseconds(absl::ToInt64Milliseconds(d));
}

}  // namespace

// ---------------------------------------------------------------------------
// Construction and start-up.

EtcdServer::Impl::Impl(ServerConfig cfg)
    : cfg_(std::move(cfg)),
      lg_(cfg_.logger),
      clock_(cfg_.clock != nullptr ? cfg_.clock : util::SystemClock::Get()),
      timer_clock_(cfg_.timer_clock != nullptr ? cfg_.timer_clock : util::SystemClock::Get()),
      env_(cfg_.env != nullptr ? cfg_.env : util::Env::Default()),
      transport_(cfg_.transport != nullptr ? cfg_.transport : std::make_shared<NoopTransport>()),
      waits_(std::make_unique<WaitRegistry>(WaitRegistry::Options{
          timer_clock_, cfg_.request_timeout, cfg_.max_pending_proposals, &metrics_})),
      reads_(std::make_unique<ReadIndexQueue>(cfg_.max_pending_reads)) {
  raft_logger_ = lg_.WithComponent("raft");
}

EtcdServer::Impl::~Impl() { Stop(/*graceful=*/true); }

absl::StatusOr<std::unique_ptr<EtcdServer>> EtcdServer::Create(ServerConfig config) {
  if (config.data_dir.empty()) return absl::InvalidArgumentError("data dir is required");
  if (config.name.empty()) return absl::InvalidArgumentError("member name is required");
  if (config.heartbeat_interval.count() <= 0 ||
      config.election_timeout < 5 * config.heartbeat_interval) {
    return absl::InvalidArgumentError(
        "election timeout must be at least 5 times the heartbeat interval");
  }
  if (config.initial_cluster.empty()) config.initial_cluster[config.name] = {kDefaultPeerUrl};
  if (!config.initial_cluster.contains(config.name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "couldn't find local name \"", config.name, "\" in the initial cluster configuration"));
  }
  auto impl = std::make_unique<Impl>(std::move(config));
  const ServerConfig& c = impl->cfg_;
  std::vector<uint64_t> ids;
  std::vector<serverpb::MemberRecord> initial_members;
  for (const auto& [name, urls] : c.initial_cluster) {
    serverpb::MemberRecord m;
    m.set_id(ComputeMemberId(urls, c.initial_cluster_token));
    if (m.id() == 0) return absl::InvalidArgumentError("cannot use 0 as member id");
    if (std::find(ids.begin(), ids.end(), m.id()) != ids.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("member exists with identical ID ", util::IdToHex(m.id())));
    }
    ids.push_back(m.id());
    m.set_name(name);
    for (const auto& u : urls) m.add_peer_urls(u);
    std::sort(m.mutable_peer_urls()->begin(), m.mutable_peer_urls()->end());
    if (name == c.name) {
      impl->member_id_ = m.id();
      impl->peer_urls_.assign(m.peer_urls().begin(), m.peer_urls().end());
    }
    initial_members.push_back(std::move(m));
  }
  impl->membership_.SetInitialMembers(std::move(initial_members));
  impl->cluster_id_ = ComputeClusterId(ids);
  if (!c.initial_advertise_peer_urls.empty()) {
    std::vector<std::string> adv = c.initial_advertise_peer_urls;
    std::sort(adv.begin(), adv.end());
    if (adv != impl->peer_urls_) {
      // etcd: --initial-cluster must list this member with its advertised URLs.
      return absl::InvalidArgumentError(absl::StrCat(
          "--initial-cluster has ", c.name, "=", absl::StrJoin(impl->peer_urls_, ","),
          " but missing from --initial-advertise-peer-urls=", absl::StrJoin(adv, ","),
          " (failed to resolve urls: URLs do not match)"));
    }
  }
  impl->member_dir_ = c.data_dir + "/member";
  impl->wal_dir_ = c.wal_dir.empty() ? impl->member_dir_ + "/wal" : c.wal_dir;
  impl->snap_dir_ = impl->member_dir_ + "/snap";
  impl->InitMaintenance();
  impl->db_path_ = impl->snap_dir_ + "/db";
  impl->quota_bytes_ = c.quota_backend_bytes == 0 ? kDefaultQuotaBytes : c.quota_backend_bytes;
  if (!c.auto_compaction_retention.empty() && c.auto_compaction_retention != "0") {
    if (c.auto_compaction_mode == "revision") {
      int64_t n = 0;
      if (!absl::SimpleAtoi(c.auto_compaction_retention, &n) || n < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "invalid auto-compaction-retention \"", c.auto_compaction_retention, "\""));
      }
      impl->compaction_revisions_ = n;
    } else if (c.auto_compaction_mode == "periodic" || c.auto_compaction_mode.empty()) {
      auto p = ParseRetentionPeriod(c.auto_compaction_retention);
      if (!p.ok()) return p.status();
      impl->compaction_period_ = *p;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown auto-compaction-mode \"", c.auto_compaction_mode, "\""));
    }
  }
  return std::unique_ptr<EtcdServer>(new EtcdServer(std::move(impl)));
}

absl::Status EtcdServer::Impl::OpenOrBootstrap() {
  const bool have_wal = wal::Wal::Exists(env_, wal_dir_);
  wal::Options wopts;
  wopts.logger = lg_.WithComponent("wal");
  wopts.clock = timer_clock_;
  wopts.on_fsync = [this](std::chrono::nanoseconds d) {
    metrics_.wal_fsyncs.fetch_add(1, std::memory_order_relaxed);
    metrics_.wal_fsync_total_ns.fetch_add(d.count(), std::memory_order_relaxed);
    metrics_.wal_fsync_seconds.Observe(std::chrono::duration<double>(d).count());
  };
  if (auto s = env_->CreateDirAll(snap_dir_); !s.ok()) return s;
  snapshotter_ = std::make_unique<snap::Snapshotter>(env_, snap_dir_, lg_.WithComponent("snap"));
  raft_storage_ = std::make_unique<raft::MemoryStorage>();

  // The backend first: a restart needs its consistent index.
  auto t0 = timer_clock_->Now();
  storage::BackendOptions bopts;
  bopts.logger = lg_.WithComponent("backend");
  bopts.env = env_;
  bopts.clock = timer_clock_;
  if (quota_bytes_ > 0) {
    bopts.map_size_bytes = std::max<uint64_t>(bopts.map_size_bytes,
                                              static_cast<uint64_t>(quota_bytes_) * 2);
  }
  auto be = storage::Backend::Open(db_path_, bopts);
  if (!be.ok()) return be.status();
  backend_ = std::move(*be);
  lg_.Info("opened backend db",
           {{"path", db_path_},
            {"took", absl::StrCat(std::chrono::duration_cast<std::chrono::microseconds>(
                                      timer_clock_->Now() - t0)
                                      .count(),
                                  "µs")}});

  raft::Config rc;
  rc.election_tick = static_cast<int>(cfg_.election_timeout / cfg_.heartbeat_interval);
  rc.heartbeat_tick = 1;
  rc.storage = raft_storage_.get();
  rc.max_size_per_msg = 1024 * 1024;
  rc.max_inflight_msgs = 4096 / 8;
  rc.max_uncommitted_entries_size = 1 << 30;
  rc.check_quorum = true;
  rc.pre_vote = cfg_.pre_vote;
  rc.random_seed = static_cast<uint64_t>(clock_->WallMillis()) ^ member_id_.load();
  rc.logger = &raft_logger_;

  if (!have_wal) {
    serverpb::WalMetadata md;
    const bool join = cfg_.initial_cluster_state == ServerConfig::ClusterState::kExisting;
    if (join) {
      if (auto s = JoinExistingCluster(&md); !s.ok()) return s;
    } else {
      md.set_member_id(member_id_);
      md.set_cluster_id(cluster_id_);
    }
    auto w = wal::Wal::Create(env_, wal_dir_, md.SerializeAsString(), wopts);
    if (!w.ok()) return w.status();
    wal_ = std::move(*w);
    rc.id = member_id_;
    lg_.Info("starting local member", {{"local-member-id", util::IdToHex(member_id_)},
                                       {"cluster-id", util::IdToHex(cluster_id_)}});
    auto node = raft::RawNode::Create(rc);
    if (!node.ok()) return node.status();
    node_ = std::move(*node);
    // A joining member starts with an empty log and configuration: the
    // leader sends it the log (or a snapshot) including its own addition.
    if (join) return absl::OkStatus();
    std::vector<raft::Peer> peers;
    for (const auto& m : membership_.InitialMembers()) {
      peers.push_back(raft::Peer{m.id(), m.SerializeAsString()});
    }
    if (auto s = node_->Bootstrap(peers); !s.ok()) return s;
    return absl::OkStatus();
  }

  // Restart: newest snapshot the WAL knows of, then the WAL after it.
  auto walsnaps = wal::Wal::ValidSnapshotEntries(env_, wal_dir_);
  if (!walsnaps.ok()) return walsnaps.status();
  raftpb::Snapshot snapshot;
  auto loaded = snapshotter_->LoadNewestAvailable(*walsnaps);
  if (loaded.ok()) {
    snapshot = std::move(*loaded);
    lg_.Info("recovered v2 store from snapshot",
             {{"snapshot-index", snapshot.metadata().index()}});
  } else if (!absl::IsNotFound(loaded.status()) && !snap::IsNoSnapshot(loaded.status())) {
    return loaded.status();
  }
  wal::WalSnapshot at{snapshot.metadata().index(), snapshot.metadata().term()};
  auto w = wal::Wal::Open(env_, wal_dir_, at, wopts);
  if (!w.ok()) return w.status();
  wal_ = std::move(*w);
  auto rr = wal_->ReadAll();
  if (!rr.ok()) return rr.status();
  serverpb::WalMetadata md;
  if (!md.ParseFromString(rr->metadata) || md.member_id() == 0) {
    return absl::DataLossError("WAL metadata is not a member/cluster ID record");
  }
  if (md.member_id() != member_id_) {
    lg_.Warn("member ID in the WAL differs from the configured one; using the WAL's",
             {{"wal-member-id", util::IdToHex(md.member_id())},
              {"configured-member-id", util::IdToHex(member_id_)}});
  }
  member_id_ = md.member_id();
  cluster_id_ = md.cluster_id();
  if (!raft::IsEmptySnapshot(snapshot)) {
    if (auto s = raft_storage_->ApplySnapshot(snapshot); !s.ok()) return s;
    snapshot_index_ = snapshot.metadata().index();
    snapshot_term_ = snapshot.metadata().term();
    last_snapshot_index_raft_ = snapshot_index_;
  }
  if (cfg_.force_new_cluster) {
    if (auto s = ForceNewCluster(&rr->hard_state, &rr->entries, snapshot); !s.ok()) return s;
  }
  raft_storage_->SetHardState(rr->hard_state);
  if (auto s = raft_storage_->Append(rr->entries); !s.ok()) return s;
  lg_.Info("restarting local member", {{"cluster-id", util::IdToHex(cluster_id_)},
                                       {"local-member-id", util::IdToHex(member_id_)},
                                       {"commit-index", rr->hard_state.commit()}});
  rc.id = member_id_;
  // Raft hands back every committed entry after the snapshot: conf changes
  // rebuild its configuration, the apply loop skips what the backend has.
  rc.applied = snapshot.metadata().index();
  auto node = raft::RawNode::Create(rc);
  if (!node.ok()) return node.status();
  node_ = std::move(*node);
  term_ = rr->hard_state.term();
  commit_index_ = rr->hard_state.commit();
  return absl::OkStatus();
}

absl::Status EtcdServer::Impl::JoinExistingCluster(serverpb::WalMetadata* md) {
  // etcd GetClusterFromRemotePeers + ValidateClusterAndAssignIDs: ask the
  // other members listed in --initial-cluster for the cluster, check that it
  // has exactly the members listed (by peer URLs) and take its IDs.
  const std::vector<serverpb::MemberRecord> initial_members = membership_.InitialMembers();
  std::vector<std::string> urls;
  for (const auto& m : initial_members) {
    if (m.id() == member_id_.load()) continue;
    for (const auto& u : m.peer_urls()) urls.push_back(u);
  }
  if (urls.empty()) {
    return absl::InvalidArgumentError(
        "cannot join an existing cluster: --initial-cluster lists no other member");
  }
  auto info = transport_->FetchClusterInfo(urls, std::chrono::seconds(2));
  if (!info.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "cannot fetch cluster info from peer urls: ", std::string(info.status().message())));
  }
  if (static_cast<size_t>(info->members_size()) != initial_members.size()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "error validating peerURLs: member count is unequal (local ", initial_members.size(),
        ", remote ", info->members_size(), ")"));
  }
  std::vector<serverpb::MemberRecord> assigned;
  for (const auto& local : initial_members) {
    std::vector<std::string> lu(local.peer_urls().begin(), local.peer_urls().end());
    const serverpb::MemberRecord* match = nullptr;
    for (const auto& remote : info->members()) {
      std::vector<std::string> ru(remote.peer_urls().begin(), remote.peer_urls().end());
      std::sort(ru.begin(), ru.end());
      if (ru == lu) match = &remote;
    }
    if (match == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "error validating peerURLs: unmatched member while checking PeerURLs (",
          local.name(), "=", absl::StrJoin(lu, ","), " is not a member of the remote cluster)"));
    }
    serverpb::MemberRecord m = *match;
    if (local.id() == member_id_.load()) member_id_ = m.id();
    assigned.push_back(std::move(m));
  }
  for (uint64_t id : info->removed_ids()) {
    if (id == member_id_.load()) return ErrMemberRemoved();
  }
  cluster_id_ = info->cluster_id();
  membership_.SetInitialMembers(std::move(assigned));
  md->set_member_id(member_id_);
  md->set_cluster_id(cluster_id_);
  lg_.Info("joining an existing cluster", {{"cluster-id", util::IdToHex(cluster_id_)},
                                           {"local-member-id", util::IdToHex(member_id_)},
                                           {"remote-member-id", util::IdToHex(info->member_id())}});
  return absl::OkStatus();
}

absl::Status EtcdServer::Impl::ForceNewCluster(raftpb::HardState* hs,
                                               std::vector<raftpb::Entry>* entries,
                                               const raftpb::Snapshot& snapshot) {
  // etcd restartAsStandaloneNode: drop the uncommitted tail, then commit
  // conf changes that remove every other member (and add this one if the
  // log never did), so this member restarts as a one-member cluster that
  // keeps its data.
  const uint64_t self = member_id_.load();
  while (!entries->empty() && entries->back().index() > hs->commit()) entries->pop_back();
  std::set<uint64_t> ids;
  for (uint64_t id : snapshot.metadata().conf_state().voters()) ids.insert(id);
  for (uint64_t id : snapshot.metadata().conf_state().learners()) ids.insert(id);
  for (const auto& e : *entries) {
    if (e.type() == raftpb::EntryConfChange) {
      raftpb::ConfChange cc;
      if (!cc.ParseFromString(e.data())) continue;
      if (cc.type() == raftpb::ConfChangeRemoveNode) {
        ids.erase(cc.node_id());
      } else if (cc.type() == raftpb::ConfChangeAddNode ||
                 cc.type() == raftpb::ConfChangeAddLearnerNode) {
        ids.insert(cc.node_id());
      }
    } else if (e.type() == raftpb::EntryConfChangeV2) {
      raftpb::ConfChangeV2 cc;
      if (!cc.ParseFromString(e.data())) continue;
      for (const auto& c : cc.changes()) {
        if (c.type() == raftpb::ConfChangeRemoveNode) {
          ids.erase(c.node_id());
        } else if (c.type() == raftpb::ConfChangeAddNode ||
                   c.type() == raftpb::ConfChangeAddLearnerNode) {
          ids.insert(c.node_id());
        }
      }
    }
  }
  uint64_t index = entries->empty() ? snapshot.metadata().index() : entries->back().index();
  std::vector<raftpb::Entry> added;
  auto append = [&](const raftpb::ConfChange& cc) {
    raftpb::Entry e;
    e.set_type(raftpb::EntryConfChange);
    e.set_term(hs->term());
    e.set_index(++index);
    e.set_data(cc.SerializeAsString());
    added.push_back(e);
  };
  for (uint64_t id : ids) {
    if (id == self) continue;
    raftpb::ConfChange cc;
    cc.set_type(raftpb::ConfChangeRemoveNode);
    cc.set_node_id(id);
    append(cc);
  }
  if (!ids.contains(self)) {
    raftpb::ConfChange cc;
    cc.set_type(raftpb::ConfChangeAddNode);
    cc.set_node_id(self);
    serverpb::MemberRecord m;
    m.set_id(self);
    m.set_name(cfg_.name);
    for (const auto& u : peer_urls_) m.add_peer_urls(u);
    cc.set_context(m.SerializeAsString());
    append(cc);
  }
  hs->set_commit(index);
  if (auto s = wal_->Save(*hs, added, /*must_sync=*/true); !s.ok()) return s;
  for (auto& e : added) entries->push_back(std::move(e));
  lg_.Info("forcing restart member", {{"cluster-id", util::IdToHex(cluster_id_)},
                                      {"local-member-id", util::IdToHex(self)},
                                      {"commit-index", hs->commit()},
                                      {"removed-members", static_cast<uint64_t>(ids.size() -
                                                                              (ids.contains(self) ? 1 : 0))}});
  return absl::OkStatus();
}

absl::Status EtcdServer::Impl::LoadMembersAndAlarms() {
  auto rtx = backend_->BeginRead();
  if (!rtx.ok()) return rtx.status();
  if (auto s = membership_.Load(rtx->get(), member_id_.load()); !s.ok()) return s;
  return alarm_store_.Load(rtx->get());
}

absl::Status EtcdServer::Impl::Start() {
  if (started_.exchange(true)) return absl::FailedPreconditionError("server already started");
  std::vector<std::string> initial_cluster;
  for (const auto& m : membership_.InitialMembers()) {
    for (const auto& u : m.peer_urls()) initial_cluster.push_back(absl::StrCat(m.name(), "=", u));
  }
  lg_.Info("starting an etcd server",
           {{"etcd-version", kServerVersion},
            {"name", cfg_.name},
            {"data-dir", cfg_.data_dir},
            {"wal-dir", cfg_.wal_dir},
            {"member-dir", member_dir_},
            {"member-initialized", wal::Wal::Exists(env_, wal_dir_)},
            {"snapshot-count", cfg_.snapshot_count},
            {"heartbeat-interval", DurationString(cfg_.heartbeat_interval)},
            {"election-timeout", DurationString(cfg_.election_timeout)},
            {"advertise-client-urls", cfg_.advertise_client_urls},
            {"initial-cluster", initial_cluster},
            {"initial-cluster-state",
             cfg_.initial_cluster_state == ServerConfig::ClusterState::kNew ? "new" : "existing"},
            {"initial-cluster-token", cfg_.initial_cluster_token},
            {"quota-size-bytes", quota_bytes_},
            {"pre-vote", cfg_.pre_vote},
            {"auto-compaction-mode", cfg_.auto_compaction_mode},
            {"auto-compaction-retention", cfg_.auto_compaction_retention},
            {"enable-lease-checkpoint", cfg_.lease_checkpoint},
            {"enable-lease-checkpoint-persist", cfg_.lease_checkpoint_persist}});
  if (auto s = env_->CreateDirAll(member_dir_); !s.ok()) return s;
  if (auto s = OpenOrBootstrap(); !s.ok()) return s;

  // Lessor, then the store (its index rebuild attaches keys to leases).
  lease::LessorOptions lopts;
  const int election_ticks = static_cast<int>(cfg_.election_timeout / cfg_.heartbeat_interval);
  const double min_ttl = (3 * election_ticks / 2) * (cfg_.heartbeat_interval.count() / 1000.0);
  lopts.min_ttl_seconds = static_cast<int64_t>(std::ceil(min_ttl));
  lopts.clock = clock_;
  lopts.logger = lg_.WithComponent("lease");
  lopts.checkpointing = cfg_.lease_checkpoint;
  lopts.checkpoint_interval = cfg_.lease_checkpoint_interval;
  lopts.checkpoint_persist = cfg_.lease_checkpoint_persist;
  lessor_ = std::make_unique<lease::Lessor>(lopts);
  auto read_consistent_index = [this]() -> absl::Status {
    auto rtx = backend_->BeginRead();
    if (!rtx.ok()) return rtx.status();
    auto ci = (*rtx)->Get(storage::kMetaBucket, kConsistentIndexKey);
    if (!ci.ok()) return ci.status();
    if (ci->has_value() && (*ci)->size() == 8) {
      consistent_index_ = storage::GetBigEndian64((*ci)->data());
    }
    return absl::OkStatus();
  };
  if (auto s = read_consistent_index(); !s.ok()) return s;
  if (consistent_index_ < snapshot_index_) {
    // A snapshot from the leader was saved but its backend not yet
    // installed when the member stopped (etcd openSnapshotBackend).
    const std::string path = SnapshotDbPath(snapshot_index_);
    if (env_->FileExists(path)) {
      lg_.Info("restoring backend from received snapshot", {{"path", path},
                                                             {"snapshot-index", snapshot_index_}});
      if (auto s = RestoreBackendFrom(path); !s.ok()) return s;
      if (auto s = read_consistent_index(); !s.ok()) return s;
      (void)env_->RemoveFile(path);
    }
  }
  {
    auto rtx = backend_->BeginRead();
    if (!rtx.ok()) return rtx.status();
    if (auto s = lessor_->Recover(rtx->get()); !s.ok()) return s;
  }
  lease_observer_ = std::make_unique<LessorLeaseObserver>(lessor_.get());
  mvcc::StoreOptions sopts;
  sopts.logger = lg_.WithComponent("mvcc");
  sopts.lease_observer = lease_observer_.get();
  auto st = mvcc::Store::Open(backend_.get(), sopts);
  if (!st.ok()) return st.status();
  store_ = std::move(*st);
  mvcc::WatchOptions wopts;
  wopts.logger = lg_.WithComponent("mvcc-watch");
  watchable_ = std::make_unique<mvcc::WatchableStore>(store_.get(), wopts);
  ApplierOptions aopts;
  aopts.logger = lg_.WithComponent("apply");
  applier_ = std::make_unique<Applier>(store_.get(), lessor_.get(), aopts);
  if (auto s = OpenAuthStore(); !s.ok()) return s;
  if (auto s = LoadMembersAndAlarms(); !s.ok()) return s;
  if (consistent_index_ < snapshot_index_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "backend consistent index ", consistent_index_, " is behind the raft snapshot at ",
        snapshot_index_, "; the backend was lost"));
  }
  applied_.Publish(std::max(consistent_index_, snapshot_index_));
  idgen_ = std::make_unique<IdGenerator>(member_id_, clock_->WallMillis());
  transport_->SetHandler(this);
  transport_->SetUnreachableCallback([this](uint64_t id) {
    PostRaftTask([this, id] { node_->ReportUnreachable(id); });
  });
  SyncTransportPeers();

  if (quota_bytes_ > 0) {
    if (cfg_.quota_backend_bytes == 0) {
      lg_.Info("enabled backend quota with default value",
               {{"quota-name", "v3-applier"},
                {"quota-size-bytes", quota_bytes_},
                {"quota-size", HumanBytes(quota_bytes_)}});
    } else {
      lg_.Info("enabled backend quota", {{"quota-name", "v3-applier"},
                                         {"quota-size-bytes", quota_bytes_},
                                         {"quota-size", HumanBytes(quota_bytes_)}});
    }
  }
  lg_.Info("starting etcd server", {{"local-member-id", util::IdToHex(member_id_)},
                                    {"local-server-version", kServerVersion},
                                    {"cluster-version", "to_be_decided"}});
  MaybeFastForwardTicks();
  raft_thread_ = std::thread([this] { RaftLoop(); });
  apply_thread_ = std::thread([this] { ApplyLoop(); });
  read_thread_ = std::thread([this] { ReadLoop(); });
  if (compaction_period_.count() > 0) {
    lg_.Info("starting auto periodic compaction",
             {{"compact-period", DurationString(compaction_period_)}});
  } else if (compaction_revisions_ > 0) {
    lg_.Info("starting auto revision compaction",
             {{"revision-compaction-retention", compaction_revisions_}});
  }
  if (compaction_period_.count() > 0) {
    periodic_compactor_ =
        std::make_unique<PeriodicCompactor>(compaction_period_, clock_->Now(), store_->Rev());
  } else if (compaction_revisions_ > 0) {
    revision_compactor_ = std::make_unique<RevisionCompactor>(compaction_revisions_, clock_->Now());
  }
  hk_thread_ = std::thread([this] { HousekeepingLoop(); });
  return absl::OkStatus();
}

void EtcdServer::Impl::Stop(bool graceful) {
  if (!started_.load() || stopped_.exchange(true)) return;
  if (graceful && !stop_requested_.load()) TransferLeadershipOnStop();
  stopping_ = true;
  applied_.Stop();  // the waits on the applied index end (they did on stopping_)
  StopMaintenance();  // waits for a running defragmentation
  {
    util::MutexLock l(&hk_mu_);
    hk_stop_ = true;
    hk_cv_.Signal();
  }
  if (hk_thread_.joinable()) hk_thread_.join();
  reads_->Stop();
  if (read_thread_.joinable()) read_thread_.join();
  {
    util::MutexLock l(&raft_mu_);
    raft_stop_ = true;
    raft_cv_.Signal();
  }
  if (raft_thread_.joinable()) raft_thread_.join();
  // No more handler calls after this; then the snapshot senders finish.
  transport_->Stop();
  {
    std::vector<std::thread> senders;
    {
      util::MutexLock l(&senders_mu_);
      senders.swap(snapshot_senders_);
    }
    for (auto& t : senders) t.join();
  }
  {
    util::MutexLock l(&apply_mu_);
    apply_stop_ = true;
    apply_drain_ = graceful;
    apply_cv_.Signal();
  }
  if (apply_thread_.joinable()) apply_thread_.join();

  // Whatever still waits will never complete.
  waits_->FailAll();

  if (lessor_) lessor_->Demote();
  if (graceful) {
    if (backend_) {
      if (auto s = backend_->Sync(); !s.ok()) lg_.Error("failed to sync backend", {{"error", s.ToString()}});
    }
    if (wal_) {
      if (auto s = wal_->Close(); !s.ok()) lg_.Error("failed to close WAL", {{"error", s.ToString()}});
    }
  }
  // Tear down in dependency order.
  applier_.reset();
  watchable_.reset();
  store_.reset();
  lease_observer_.reset();
  lessor_.reset();
  node_.reset();
  wal_.reset();
  backend_.reset();
  if (graceful) lg_.Info("stopped etcd server", {{"local-member-id", util::IdToHex(member_id_)}});
}

}  // namespace cppetcd::server
