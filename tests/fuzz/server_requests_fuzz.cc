// Fuzz target: client requests through validation and apply of an
// in-process single-member server (EtcdServer, as tests/unit/server builds
// it), one server for the whole process. The input is a sequence of ops,
// each {kind u8, length u16 LE, payload}: the kind picks the request type
// (KV, Txn, Lease, Auth, Cluster, Maintenance, Watch creation), the payload
// is that request's protobuf bytes; bit 7 of the kind makes the call as TLS
// client CN "root". Invariants: every call completes (no hang); the member
// keeps serving: after each input, a Put then a linearizable Get of a fresh
// value succeed (as root, after deactivating any alarm the input raised).
// Nothing is reset between inputs: the state grows as in a real member.
#include <unistd.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <string_view>

#include "cppetcd/auth/credentials.h"
#include "cppetcd/mvcc/watchable_store.h"
#include "cppetcd/server/etcd_server.h"
#include "fuzz_util.h"

namespace {

using namespace cppetcd;
using namespace std::chrono_literals;
using namespace etcdserverpb;

constexpr auto kCallTimeout = 60s;  // request_timeout (2 s) + defragmentation
constexpr size_t kMaxOps = 12;

server::EtcdServer* Server() {
  static server::EtcdServer* s = [] {
    fuzz::QuietLogs();
    server::ServerConfig c;
    c.name = "default";
    c.data_dir = fuzz::FreshDir("server") + "/data";
    c.heartbeat_interval = 10ms;
    c.election_timeout = 50ms;
    c.request_timeout = 2s;
    c.bcrypt_cost = 4;  // bcrypt's minimum: UserAdd hashes on the calling thread
    c.advertise_client_urls = {"http://127.0.0.1:2379"};
    c.quota_backend_bytes = 64 << 20;
    auto srv = server::EtcdServer::Create(std::move(c));
    FUZZ_CHECK(srv.ok(), srv.status().ToString());
    FUZZ_CHECK((*srv)->Start().ok(), "start");
    FUZZ_CHECK((*srv)->WaitReady(std::chrono::milliseconds(10000)), "ready");
    return srv->release();  // lives for the process (libFuzzer exits without teardown)
  }();
  return s;
}

// Runs one asynchronous call and waits for its Done.
template <class Resp>
absl::StatusOr<Resp> Call(const std::function<void(server::Done<Resp>)>& fn, std::string_view what) {
  auto p = std::make_shared<std::promise<absl::StatusOr<Resp>>>();
  auto f = p->get_future();
  fn([p](absl::StatusOr<Resp> r) { p->set_value(std::move(r)); });
  FUZZ_CHECK(f.wait_for(kCallTimeout) == std::future_status::ready,
             std::string(what) + " did not complete");
  return f.get();
}

// Parses the payload as Req and calls (server->*method)(caller, req, done).
template <class Req, class Resp>
void Do(const auth::Credentials& caller,
        void (server::EtcdServer::*method)(const auth::Credentials&, const Req&,
                                           server::Done<Resp>),
        std::string_view payload, std::string_view what) {
  Req req;
  if (!req.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) return;
  server::EtcdServer* s = Server();
  (void)Call<Resp>([&](server::Done<Resp> d) { (s->*method)(caller, req, std::move(d)); }, what);
}

// The same for calls the server does not check against a caller.
template <class Req, class Resp>
void Do(const auth::Credentials& /*caller*/,
        void (server::EtcdServer::*method)(const Req&, server::Done<Resp>),
        std::string_view payload, std::string_view what) {
  Req req;
  if (!req.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) return;
  server::EtcdServer* s = Server();
  (void)Call<Resp>([&](server::Done<Resp> d) { (s->*method)(req, std::move(d)); }, what);
}

// Root by its TLS client CN (ops with the high bit set and the final check).
const auth::Credentials kRoot{std::nullopt, std::string("root")};

void RunOp(uint8_t kind, std::string_view payload, const auth::Credentials& caller) {
  server::EtcdServer* s = Server();
  using S = server::EtcdServer;
  switch ((kind & 0x7f) % 38) {
    case 0: return Do(caller, &S::Range, payload, "Range");
    case 1: return Do(caller, &S::Put, payload, "Put");
    case 2: return Do(caller, &S::DeleteRange, payload, "DeleteRange");
    case 3: return Do(caller, &S::Txn, payload, "Txn");
    case 4: return Do(caller, &S::Compact, payload, "Compact");
    case 5: return Do(caller, &S::LeaseGrant, payload, "LeaseGrant");
    case 6: return Do(caller, &S::LeaseRevoke, payload, "LeaseRevoke");
    case 7: {
      std::string_view in = payload;
      const int64_t id = fuzz::TakeInt<int64_t>(&in);
      (void)Call<int64_t>([&](server::Done<int64_t> d) { s->LeaseRenew(id, std::move(d)); },
                          "LeaseRenew");
      return;
    }
    case 8: return Do(caller, &S::LeaseTimeToLive, payload, "LeaseTimeToLive");
    case 9: return Do(caller, &S::LeaseLeases, payload, "LeaseLeases");
    case 10: return Do(caller, &S::Alarm, payload, "Alarm");
    case 11: return Do(caller, &S::Status, payload, "Status");
    case 12: return Do(caller, &S::HashKV, payload, "HashKV");
    case 13: return Do(caller, &S::Hash, payload, "Hash");
    case 14: return Do(caller, &S::MoveLeader, payload, "MoveLeader");
    case 15: return Do(caller, &S::AuthEnable, payload, "AuthEnable");
    case 16: return Do(caller, &S::AuthDisable, payload, "AuthDisable");
    case 17: return Do(caller, &S::Authenticate, payload, "Authenticate");
    case 18: return Do(caller, &S::UserAdd, payload, "UserAdd");
    case 19: return Do(caller, &S::UserGet, payload, "UserGet");
    case 20: return Do(caller, &S::UserList, payload, "UserList");
    case 21: return Do(caller, &S::UserDelete, payload, "UserDelete");
    case 22: return Do(caller, &S::UserChangePassword, payload, "UserChangePassword");
    case 23: return Do(caller, &S::UserGrantRole, payload, "UserGrantRole");
    case 24: return Do(caller, &S::UserRevokeRole, payload, "UserRevokeRole");
    case 25: return Do(caller, &S::RoleAdd, payload, "RoleAdd");
    case 26: return Do(caller, &S::RoleGet, payload, "RoleGet");
    case 27: return Do(caller, &S::RoleList, payload, "RoleList");
    case 28: return Do(caller, &S::RoleDelete, payload, "RoleDelete");
    case 29: return Do(caller, &S::RoleGrantPermission, payload, "RoleGrantPermission");
    case 30: return Do(caller, &S::RoleRevokePermission, payload, "RoleRevokePermission");
    case 31: return Do(caller, &S::MemberAdd, payload, "MemberAdd");
    case 32: return Do(caller, &S::MemberRemove, payload, "MemberRemove");
    case 33: return Do(caller, &S::MemberUpdate, payload, "MemberUpdate");
    case 34: return Do(caller, &S::MemberPromote, payload, "MemberPromote");
    case 35: return Do(caller, &S::MemberList, payload, "MemberList");
    case 36: {
      WatchCreateRequest req;
      if (!req.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) return;
      if (absl::Status a = s->AuthorizeRange(caller, req.key(), req.range_end()); !a.ok()) return;
      auto ws = s->Watchable()->NewWatchStream([] {});
      bool no_put = false, no_delete = false;
      for (int f : req.filters()) {
        no_put = no_put || f == WatchCreateRequest::NOPUT;
        no_delete = no_delete || f == WatchCreateRequest::NODELETE;
      }
      auto id = ws->Watch(req.watch_id(), req.key(), req.range_end(), req.start_revision(), no_put,
                          no_delete, req.prev_kv(), req.progress_notify());
      if (id.ok()) (void)ws->Cancel(*id);
      return;
    }
    default: return Do(caller, &S::Defragment, payload, "Defragment");
  }
}

// The member keeps serving: a fresh value is written and read back.
void CheckServing() {
  server::EtcdServer* s = Server();
  auto alarms = Call<AlarmResponse>(
      [&](server::Done<AlarmResponse> d) {
        AlarmRequest req;
        req.set_action(AlarmRequest::GET);
        s->Alarm(kRoot, req, std::move(d));
      },
      "Alarm GET");
  FUZZ_CHECK(alarms.ok(), "alarm list: " + alarms.status().ToString());
  for (const AlarmMember& a : alarms->alarms()) {
    AlarmRequest req;
    req.set_action(AlarmRequest::DEACTIVATE);
    req.set_memberid(a.memberid());
    req.set_alarm(a.alarm());
    auto r = Call<AlarmResponse>(
        [&](server::Done<AlarmResponse> d) { s->Alarm(kRoot, req, std::move(d)); },
        "Alarm DEACTIVATE");
    FUZZ_CHECK(r.ok(), "alarm deactivate: " + r.status().ToString());
  }
  static uint64_t n = 0;
  const std::string value = "v" + std::to_string(++n);
  PutRequest put;
  put.set_key("fuzz/serving");
  put.set_value(value);
  auto p = Call<PutResponse>(
      [&](server::Done<PutResponse> d) { s->Put(kRoot, put, std::move(d)); }, "Put");
  FUZZ_CHECK(p.ok(), "the member stopped serving writes: " + p.status().ToString());
  RangeRequest get;
  get.set_key("fuzz/serving");
  auto g = Call<RangeResponse>(
      [&](server::Done<RangeResponse> d) { s->Range(kRoot, get, std::move(d)); },
      "Range");
  FUZZ_CHECK(g.ok(), "the member stopped serving reads: " + g.status().ToString());
  FUZZ_CHECK(g->kvs_size() == 1 && g->kvs(0).value() == value, "read back another value");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  for (size_t i = 0; i < kMaxOps && !in.empty(); ++i) {
    const uint8_t kind = fuzz::TakeInt<uint8_t>(&in);
    const size_t len = std::min<size_t>(fuzz::TakeInt<uint16_t>(&in), in.size());
    const std::string_view payload = in.substr(0, len);
    in.remove_prefix(len);
    RunOp(kind, payload, (kind & 0x80) != 0 ? kRoot : auth::kNoCredentials);
  }
  CheckServing();
  return 0;
}
