// Writes the seed corpora of the fuzz targets from files and messages the
// project itself makes (WAL segments, snapshot files, LMDB snapshot
// databases, raft messages, client requests). Usage:
//   fuzz_make_corpus <tests/fuzz/corpus>
// (tests/fuzz/gen_corpus.sh runs it, then adds the bbolt seeds from etcd.)
// Seeds are small (a few KB); re-running rewrites the same files.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "cppetcd/snap/snapshotter.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/util/env.h"
#include "cppetcd/wal/wal.h"
#include "etcdserverpb/rpc.pb.h"
#include "peerpb/peer.pb.h"
#include "raftpb/raft.pb.h"
#include "tests/unit/wal/etcd_wal_test_util.h"

namespace {

using namespace cppetcd;
namespace fs = std::filesystem;

std::string root;

void Write(const std::string& target, const std::string& name, const std::string& bytes) {
  const std::string dir = root + "/" + target;
  fs::create_directories(dir);
  std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
}

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A segment without its preallocated zero tail (kept 8-byte aligned).
std::string TrimZeros(std::string s) {
  size_t n = s.size();
  while (n > 0 && s[n - 1] == '\0') --n;
  n = (n + 7) / 8 * 8;
  s.resize(std::min(n, s.size()));
  return s;
}

std::string Scratch(const std::string& name) {
  std::string d = fs::temp_directory_path().string() + "/cppetcd-make-corpus-" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

raftpb::Entry Entry(uint64_t index, uint64_t term, std::string data) {
  raftpb::Entry e;
  e.set_index(index);
  e.set_term(term);
  e.set_data(std::move(data));
  return e;
}

raftpb::HardState Hs(uint64_t term, uint64_t vote, uint64_t commit) {
  raftpb::HardState hs;
  hs.set_term(term);
  hs.set_vote(vote);
  hs.set_commit(commit);
  return hs;
}

// WAL segments: one log with a snapshot marker, cut into several segments.
void WalSeeds() {
  const std::string dir = Scratch("wal") + "/wal";
  wal::Options o;
  o.segment_size_bytes = 512;  // cut often
  auto w = wal::Wal::Create(util::Env::Default(), dir, "metadata:member=1", o);
  if (!w.ok()) std::abort();
  (void)(*w)->Save(Hs(1, 1, 1), {Entry(1, 1, "put a=1"), Entry(2, 1, "put b=2")}, true);
  (void)(*w)->SaveSnapshot(wal::WalSnapshot{2, 1});
  (void)(*w)->Save(Hs(2, 1, 3), {Entry(3, 2, std::string(300, 'x'))}, true);
  (void)(*w)->Save(Hs(2, 1, 4), {Entry(4, 2, "put c=3"), Entry(3, 2, "overwrite")}, true);
  auto names = (*w)->SegmentNames();
  (void)(*w)->Close();
  std::vector<std::string> segs;
  for (const auto& n : names) segs.push_back(TrimZeros(Read(dir + "/" + n)));
  for (size_t i = 0; i < segs.size(); ++i) Write("wal_segment", absl::StrCat("segment-", i), segs[i]);
  // wal_dir: mode byte, then {index byte, bytes} parts joined by the separator.
  for (int mode = 0; mode < 2; ++mode) {
    std::string in(1, static_cast<char>(mode));
    for (size_t i = 0; i < segs.size(); ++i) {
      if (i > 0) in += "\nSEGMENT\n";
      uint64_t index = 0;
      if (i > 0) sscanf(names[i].c_str() + 17, "%16lx", &index);
      in += static_cast<char>(index);
      in += segs[i];
    }
    Write("wal_dir", absl::StrCat("log-mode", mode), in);
  }
  std::string one(1, '\0');
  one += '\0';
  one += segs[0];
  Write("wal_dir", "first-segment-only", one);
}

// etcd-format WAL (etcd_wal): two chained segments with markers, a leader
// overwrite and a torn tail, in the wal_dir input layout. The seed from a
// real etcd's WAL is added by gen_corpus.sh.
void EtcdWalSeeds() {
  wal::testing::EtcdSegmentBuilder s0;
  s0.Metadata(0xbdae9bbc11dd390dULL, 0xd1cf3db3e1cba16aULL).Snapshot(0, 0);
  for (uint64_t i = 1; i <= 4; ++i) s0.Entry(i, 1, absl::StrCat("put k", i)).State(1, 1, i);
  s0.Snapshot(3, 1);
  wal::testing::EtcdSegmentBuilder s1(s0.crc());
  s1.Metadata(0xbdae9bbc11dd390dULL, 0xd1cf3db3e1cba16aULL).State(1, 1, 4);
  s1.Entry(5, 1, std::string(600, 'v')).Entry(5, 2, "overwrite").State(2, 0, 5);
  for (int mode = 0; mode < 2; ++mode) {
    std::string in(1, static_cast<char>(mode));
    in += '\0';
    in += s0.bytes();
    in += "\nSEGMENT\n";
    in += '\5';
    in += s1.bytes();
    Write("etcd_wal", absl::StrCat("two-segments-mode", mode), in);
  }
  std::string torn(2, '\0');
  torn += s0.bytes().substr(0, s0.size() - 13);
  Write("etcd_wal", "torn-tail", torn);
}

void SnapSeeds() {
  const std::string dir = Scratch("snap");
  snap::Snapshotter ss(util::Env::Default(), dir);
  raftpb::Snapshot s;
  s.mutable_metadata()->set_index(7);
  s.mutable_metadata()->set_term(2);
  s.mutable_metadata()->mutable_conf_state()->add_voters(1);
  s.mutable_metadata()->mutable_conf_state()->add_voters(2);
  s.mutable_metadata()->mutable_conf_state()->add_learners(3);
  s.set_data("snapshot-data");
  if (!ss.SaveSnap(s).ok()) std::abort();
  Write("snap_file", "term2-index7", Read(dir + "/" + snap::SnapFileName(2, 7)));
}

void LmdbSeeds() {
  for (int variant = 0; variant < 2; ++variant) {
    const std::string dir = Scratch("lmdb");
    storage::BackendOptions o;
    auto be = storage::Backend::Open(dir + "/db", o);
    if (!be.ok()) std::abort();
    {
      auto w = (*be)->BeginWrite();
      (void)(*w)->Put(storage::kKeyBucket, "k1", "v1");
      if (variant == 1) {
        (void)(*w)->Put(storage::kKeyBucket, "k2", std::string(5000, 'v'));  // overflow pages
        (void)(*w)->Put(storage::kMetaBucket, "consistent_index", "\0\0\0\0\0\0\0\x09");
        (void)(*w)->Put(storage::kLeaseBucket, "l1", "lease");
      }
      (void)(*w)->Commit();
    }
    const std::string copy = dir + "/copy";
    const int fd = ::open(copy.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (!(*be)->CopyTo(fd).ok()) std::abort();
    ::close(fd);
    Write("lmdb_snapshot", absl::StrCat("copy-", variant), Read(copy));
  }
}

raftpb::Message Msg(raftpb::MessageType t, uint64_t from, uint64_t to, uint64_t term) {
  raftpb::Message m;
  m.set_type(t);
  m.set_from(from);
  m.set_to(to);
  m.set_term(term);
  return m;
}

void PeerSeeds() {
  auto batch = [](uint64_t to, std::vector<raftpb::Message> ms) {
    peerpb::MessageBatch b;
    b.set_cluster_id(0x1234);
    b.set_from(ms.empty() ? 1 : ms[0].from());
    b.set_to(to);
    for (auto& m : ms) *b.add_messages() = std::move(m);
    return b.SerializeAsString();
  };
  raftpb::Message app = Msg(raftpb::MsgApp, 1, 2, 2);
  app.set_index(4);
  app.set_log_term(2);
  app.set_commit(5);
  *app.add_entries() = Entry(5, 2, "e5");
  *app.add_entries() = Entry(6, 2, "e6");
  Write("peer_message", "append", batch(2, {app}));
  raftpb::Message hb = Msg(raftpb::MsgHeartbeat, 1, 3, 2);
  hb.set_commit(4);
  Write("peer_message", "heartbeat", batch(3, {hb}));
  raftpb::Message vote = Msg(raftpb::MsgVote, 2, 1, 3);
  vote.set_index(4);
  vote.set_log_term(2);
  raftpb::Message prevote = Msg(raftpb::MsgPreVote, 3, 1, 3);
  prevote.set_index(9);
  prevote.set_log_term(2);
  Write("peer_message", "votes", batch(1, {vote, prevote}));
  raftpb::Message resp = Msg(raftpb::MsgAppResp, 2, 1, 2);
  resp.set_index(4);
  raftpb::Message rej = Msg(raftpb::MsgAppResp, 3, 1, 2);
  rej.set_index(4);
  rej.set_reject(true);
  rej.set_reject_hint(2);
  rej.set_log_term(1);
  raftpb::Message hbr = Msg(raftpb::MsgHeartbeatResp, 3, 1, 2);
  Write("peer_message", "responses", batch(1, {resp, rej, hbr}));
  raftpb::Message snap = Msg(raftpb::MsgSnap, 1, 2, 2);
  snap.mutable_snapshot()->mutable_metadata()->set_index(20);
  snap.mutable_snapshot()->mutable_metadata()->set_term(2);
  snap.mutable_snapshot()->mutable_metadata()->mutable_conf_state()->add_voters(1);
  snap.mutable_snapshot()->mutable_metadata()->mutable_conf_state()->add_voters(2);
  snap.mutable_snapshot()->mutable_metadata()->mutable_conf_state()->add_voters(3);
  Write("peer_message", "snapshot", batch(2, {snap}));
  raftpb::Message prop = Msg(raftpb::MsgProp, 2, 1, 0);
  *prop.add_entries() = Entry(0, 0, "proposal");
  raftpb::Message ri = Msg(raftpb::MsgReadIndex, 3, 1, 0);
  *ri.add_entries() = Entry(0, 0, "ctx");
  raftpb::Message tl = Msg(raftpb::MsgTransferLeader, 2, 1, 2);
  raftpb::Message tn = Msg(raftpb::MsgTimeoutNow, 1, 2, 2);
  Write("peer_message", "forwarded", batch(1, {prop, ri, tl}));
  Write("peer_message", "timeout-now", batch(2, {tn}));
}

// server_requests: ops {kind u8, length u16 LE, payload}.
std::string Op(uint8_t kind, const google::protobuf::Message& m) {
  const std::string p = m.SerializeAsString();
  std::string out(1, static_cast<char>(kind));
  out += static_cast<char>(p.size() & 0xff);
  out += static_cast<char>(p.size() >> 8);
  return out + p;
}

void ServerSeeds() {
  using namespace etcdserverpb;
  PutRequest put;
  put.set_key("foo");
  put.set_value("bar");
  RangeRequest range;
  range.set_key("a");
  range.set_range_end("z");
  range.set_limit(10);
  DeleteRangeRequest del;
  del.set_key("foo");
  del.set_prev_kv(true);
  Write("server_requests", "kv", Op(1, put) + Op(0, range) + Op(2, del));
  TxnRequest txn;
  auto* cmp = txn.add_compare();
  cmp->set_key("foo");
  cmp->set_target(Compare::VERSION);
  cmp->set_result(Compare::EQUAL);
  cmp->set_version(0);
  *txn.add_success()->mutable_request_put() = put;
  *txn.add_failure()->mutable_request_range() = range;
  auto* nested = txn.add_success()->mutable_request_txn();
  *nested->add_success()->mutable_request_delete_range() = del;
  Write("server_requests", "txn", Op(3, txn));
  LeaseGrantRequest grant;
  grant.set_ttl(60);
  grant.set_id(77);
  PutRequest lput = put;
  lput.set_lease(77);
  LeaseRevokeRequest revoke;
  revoke.set_id(77);
  std::string renew = "\x07\x08";
  renew += '\0';
  renew += std::string("\x4d\0\0\0\0\0\0\0", 8);
  Write("server_requests", "lease", Op(5, grant) + Op(1, lput) + renew + Op(6, revoke));
  CompactionRequest compact;
  compact.set_revision(2);
  compact.set_physical(true);
  AlarmRequest alarm;
  alarm.set_action(AlarmRequest::ACTIVATE);
  alarm.set_alarm(NOSPACE);
  Write("server_requests", "maintenance", Op(4, compact) + Op(10, alarm) + Op(11, StatusRequest()));
  AuthUserAddRequest user;
  user.set_name("root");
  user.set_password("pw");
  AuthRoleAddRequest role;
  role.set_name("root");
  AuthUserGrantRoleRequest gr;
  gr.set_user("root");
  gr.set_role("root");
  AuthRoleGrantPermissionRequest perm;
  perm.set_name("root");
  perm.mutable_perm()->set_key("a");
  perm.mutable_perm()->set_range_end("b");
  perm.mutable_perm()->set_permtype(authpb::Permission::READWRITE);
  Write("server_requests", "auth",
        Op(18, user) + Op(25, role) + Op(23, gr) + Op(29, perm) + Op(15, AuthEnableRequest()) +
            Op(0x80 | 1, put) + Op(0x80 | 16, AuthDisableRequest()));
  // Names and a password that are not valid UTF-8 (etcd takes any bytes).
  AuthUserAddRequest odd_user;
  odd_user.set_name("\xff\xfeu");
  odd_user.set_password("p\xff");
  AuthRoleAddRequest odd_role;
  odd_role.set_name("\xc3\x28");
  AuthUserGrantRoleRequest odd_grant;
  odd_grant.set_user(odd_user.name());
  odd_grant.set_role(odd_role.name());
  AuthUserGetRequest odd_get;
  odd_get.set_name(odd_user.name());
  AuthenticateRequest odd_login;
  odd_login.set_name(odd_user.name());
  odd_login.set_password(odd_user.password());
  Write("server_requests", "auth-names-not-utf8",
        Op(18, odd_user) + Op(25, odd_role) + Op(23, odd_grant) + Op(19, odd_get) +
            Op(27, AuthRoleListRequest()) + Op(17, odd_login));
  MemberAddRequest madd;
  madd.add_peerurls("http://127.0.0.1:12380");
  madd.set_islearner(true);
  Write("server_requests", "members", Op(31, madd) + Op(35, MemberListRequest()));
  WatchCreateRequest watch;
  watch.set_key("a");
  watch.set_range_end("b");
  watch.set_start_revision(1);
  watch.set_prev_kv(true);
  Write("server_requests", "watch", Op(36, watch));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  root = argv[1];
  WalSeeds();
  EtcdWalSeeds();
  SnapSeeds();
  LmdbSeeds();
  PeerSeeds();
  ServerSeeds();
  std::printf("seeds written under %s\n", root.c_str());
  return 0;
}
