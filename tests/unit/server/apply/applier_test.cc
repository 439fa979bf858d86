#include "cppetcd/server/applier.h"

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "cppetcd/mvcc/errors.h"
#include "cppetcd/server/validate.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/util/clock.h"

namespace cppetcd::server {
namespace {

using etcdserverpb::Compare;
using etcdserverpb::RangeRequest;
using etcdserverpb::RequestOp;
using etcdserverpb::TxnRequest;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;

const std::string kFromKey(1, '\0');

std::vector<std::string> Keys(const google::protobuf::RepeatedPtrField<mvccpb::KeyValue>& kvs) {
  std::vector<std::string> out;
  for (const auto& kv : kvs) out.push_back(kv.key());
  return out;
}

class ApplierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "applier_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    storage::BackendOptions bopts;
    bopts.map_size_bytes = 64 << 20;
    auto b = storage::Backend::Open((std::filesystem::path(dir_) / "db").string(), bopts);
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = std::move(*b);
    lease::LessorOptions lopts;
    lopts.min_ttl_seconds = 1;
    lopts.clock = &clock_;
    lessor_ = std::make_unique<lease::Lessor>(lopts);
    observer_ = std::make_unique<LessorLeaseObserver>(lessor_.get());
    mvcc::StoreOptions sopts;
    sopts.lease_observer = observer_.get();
    auto s = mvcc::Store::Open(backend_.get(), sopts);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
    applier_ = std::make_unique<Applier>(store_.get(), lessor_.get());
  }
  void TearDown() override {
    applier_.reset();
    store_.reset();
    backend_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Applies one request in its own backend txn, as the apply loop does.
  ApplyResult Apply(const serverpb::InternalRaftRequest& r) {
    auto btx = backend_->BeginWrite();
    EXPECT_TRUE(btx.ok());
    ApplyResult res = applier_->Apply(btx->get(), r);
    EXPECT_TRUE((*btx)->Commit().ok());
    store_->OnCommit();
    return res;
  }
  ApplyResult Put(std::string key, std::string value, int64_t lease = 0) {
    serverpb::InternalRaftRequest r;
    r.mutable_put()->set_key(std::move(key));
    r.mutable_put()->set_value(std::move(value));
    r.mutable_put()->set_lease(lease);
    return Apply(r);
  }
  ApplyResult PutReq(const etcdserverpb::PutRequest& p) {
    serverpb::InternalRaftRequest r;
    *r.mutable_put() = p;
    return Apply(r);
  }
  ApplyResult Delete(std::string key, std::string end = "", bool prev_kv = false) {
    serverpb::InternalRaftRequest r;
    r.mutable_delete_range()->set_key(std::move(key));
    r.mutable_delete_range()->set_range_end(std::move(end));
    r.mutable_delete_range()->set_prev_kv(prev_kv);
    return Apply(r);
  }
  ApplyResult Txn(const TxnRequest& t) {
    serverpb::InternalRaftRequest r;
    *r.mutable_txn() = t;
    return Apply(r);
  }
  ApplyResult Grant(int64_t id, int64_t ttl) {
    serverpb::InternalRaftRequest r;
    r.mutable_lease_grant()->set_id(id);
    r.mutable_lease_grant()->set_ttl(ttl);
    return Apply(r);
  }
  ApplyResult Revoke(int64_t id) {
    serverpb::InternalRaftRequest r;
    r.mutable_lease_revoke()->set_id(id);
    return Apply(r);
  }
  ApplyResult Compact(int64_t rev) {
    serverpb::InternalRaftRequest r;
    r.mutable_compaction()->set_revision(rev);
    return Apply(r);
  }
  mvccpb::KeyValue Get(const std::string& key) {
    RangeRequest r;
    r.set_key(key);
    auto resp = applier_->Range(r);
    EXPECT_TRUE(resp.ok()) << resp.status();
    if (!resp.ok() || resp->kvs_size() == 0) return {};
    return resp->kvs(0);
  }

  // RangeEncoded gives Range's answer byte for byte (header then body), and
  // EstimateRangeBytes is at least its size (exact for a plain range).
  void ExpectEncodedAsRange(const RangeRequest& req) {
    auto resp = applier_->Range(req);
    ASSERT_TRUE(resp.ok()) << resp.status();
    auto enc = applier_->RangeEncoded(req);
    ASSERT_TRUE(enc.ok()) << enc.status();
    etcdserverpb::RangeResponse head;
    *head.mutable_header() = enc->header;
    EXPECT_EQ(head.SerializeAsString() + enc->body, resp->SerializeAsString());
    auto estimate = applier_->EstimateRangeBytes(req);
    ASSERT_TRUE(estimate.ok()) << estimate.status();
    EXPECT_GE(*estimate, resp->ByteSizeLong());
    const bool plain = !req.keys_only() && !req.count_only() &&
                       req.sort_order() == RangeRequest::NONE &&
                       req.sort_target() == RangeRequest::KEY && req.min_mod_revision() == 0 &&
                       req.max_mod_revision() == 0 && req.min_create_revision() == 0 &&
                       req.max_create_revision() == 0;
    if (plain && !resp->more()) {
      // The records counted are the answer's kvs, plus room for the rest.
      EXPECT_LE(*estimate, resp->ByteSizeLong() + 128);
    }
  }

  // a(create 2, mod 5, version 2, "va2"), b(3, 3, 1, "vb"), c(4, 4, 1, "vc"),
  // d(6, 6, 1, "vd"), foo(7, 7, 1, "x"); store revision 7.
  void Seed() {
    ASSERT_TRUE(Put("a", "va1").error.ok());
    ASSERT_TRUE(Put("b", "vb").error.ok());
    ASSERT_TRUE(Put("c", "vc").error.ok());
    ASSERT_TRUE(Put("a", "va2").error.ok());
    ASSERT_TRUE(Put("d", "vd").error.ok());
    ASSERT_TRUE(Put("foo", "x").error.ok());
    ASSERT_EQ(store_->Rev(), 7);
  }

  std::string dir_;
  util::FakeClock clock_;
  std::unique_ptr<storage::Backend> backend_;
  std::unique_ptr<lease::Lessor> lessor_;
  std::unique_ptr<LessorLeaseObserver> observer_;
  std::unique_ptr<mvcc::Store> store_;
  std::unique_ptr<Applier> applier_;
};

RangeRequest R(std::string key, std::string end = "") {
  RangeRequest r;
  r.set_key(std::move(key));
  r.set_range_end(std::move(end));
  return r;
}

struct RangeCase {
  const char* name;
  RangeRequest req;
  std::vector<std::string> keys;
  bool more;
  int64_t count;
};

TEST_F(ApplierTest, RangeTable) {
  Seed();
  auto with = [](RangeRequest r, auto&& f) {
    f(r);
    return r;
  };
  const std::vector<RangeCase> cases = {
      {"single key", R("a"), {"a"}, false, 1},
      {"missing key", R("zz"), {}, false, 0},
      {"half-open range", R("a", "c"), {"a", "b"}, false, 2},
      {"from key", R("a", kFromKey), {"a", "b", "c", "d", "foo"}, false, 5},
      {"from a later key", R("c", kFromKey), {"c", "d", "foo"}, false, 3},
      {"limit below count",
       with(R("a", kFromKey), [](auto& r) { r.set_limit(2); }), {"a", "b"}, true, 5},
      {"limit equal to count", with(R("a", kFromKey), [](auto& r) { r.set_limit(5); }),
       {"a", "b", "c", "d", "foo"}, false, 5},
      {"limit above count", with(R("a", kFromKey), [](auto& r) { r.set_limit(6); }),
       {"a", "b", "c", "d", "foo"}, false, 5},
      {"limit in a range", with(R("b", "d"), [](auto& r) { r.set_limit(1); }), {"b"}, true, 2},
      {"at an old revision", with(R("a", kFromKey), [](auto& r) { r.set_revision(4); }),
       {"a", "b", "c"}, false, 3},
      {"sort key descend with limit", with(R("a", kFromKey),
                                           [](auto& r) {
                                             r.set_sort_order(RangeRequest::DESCEND);
                                             r.set_limit(2);
                                           }),
       {"foo", "d"}, true, 5},
      {"sort key ascend", with(R("a", kFromKey),
                               [](auto& r) { r.set_sort_order(RangeRequest::ASCEND); }),
       {"a", "b", "c", "d", "foo"}, false, 5},
      {"sort mod ascend", with(R("a", kFromKey),
                               [](auto& r) {
                                 r.set_sort_order(RangeRequest::ASCEND);
                                 r.set_sort_target(RangeRequest::MOD);
                               }),
       {"b", "c", "a", "d", "foo"}, false, 5},
      {"sort mod ascend limit 2 (whole range sorted)", with(R("a", kFromKey),
                                                             [](auto& r) {
                                                               r.set_sort_order(RangeRequest::ASCEND);
                                                               r.set_sort_target(RangeRequest::MOD);
                                                               r.set_limit(2);
                                                             }),
       {"b", "c"}, true, 5},
      // etcd quirk: target MOD with order NONE sorts ascending, but only the
      // limit + 1 keys fetched in key order (a, b) -> b, a -> b.
      {"sort mod, order none, limit 1", with(R("a", kFromKey),
                                             [](auto& r) {
                                               r.set_sort_target(RangeRequest::MOD);
                                               r.set_limit(1);
                                             }),
       {"b"}, true, 5},
      {"sort create descend", with(R("a", kFromKey),
                                   [](auto& r) {
                                     r.set_sort_order(RangeRequest::DESCEND);
                                     r.set_sort_target(RangeRequest::CREATE);
                                   }),
       {"foo", "d", "c", "b", "a"}, false, 5},
      {"sort version descend (ties in key order)", with(R("a", kFromKey),
                                                        [](auto& r) {
                                                          r.set_sort_order(RangeRequest::DESCEND);
                                                          r.set_sort_target(RangeRequest::VERSION);
                                                        }),
       {"a", "b", "c", "d", "foo"}, false, 5},
      {"sort version ascend (ties in key order)", with(R("a", kFromKey),
                                                       [](auto& r) {
                                                         r.set_sort_order(RangeRequest::ASCEND);
                                                         r.set_sort_target(RangeRequest::VERSION);
                                                       }),
       {"b", "c", "d", "foo", "a"}, false, 5},
      {"sort value descend", with(R("a", kFromKey),
                                  [](auto& r) {
                                    r.set_sort_order(RangeRequest::DESCEND);
                                    r.set_sort_target(RangeRequest::VALUE);
                                  }),
       {"foo", "d", "c", "b", "a"}, false, 5},
      // Filters prune kvs but count keeps every key of the range.
      {"min mod revision", with(R("a", kFromKey), [](auto& r) { r.set_min_mod_revision(5); }),
       {"a", "d", "foo"}, false, 5},
      {"max mod revision", with(R("a", kFromKey), [](auto& r) { r.set_max_mod_revision(4); }),
       {"b", "c"}, false, 5},
      {"create revision window", with(R("a", kFromKey),
                                      [](auto& r) {
                                        r.set_min_create_revision(3);
                                        r.set_max_create_revision(6);
                                      }),
       {"b", "c", "d"}, false, 5},
      {"filter then limit", with(R("a", kFromKey),
                                 [](auto& r) {
                                   r.set_min_mod_revision(5);
                                   r.set_limit(1);
                                 }),
       {"a"}, true, 5},
      {"filter leaving exactly limit", with(R("a", kFromKey),
                                            [](auto& r) {
                                              r.set_min_mod_revision(6);
                                              r.set_limit(2);
                                            }),
       {"d", "foo"}, false, 5},
      {"count only", with(R("a", kFromKey), [](auto& r) { r.set_count_only(true); }), {}, false,
       5},
      {"count only with limit", with(R("a", kFromKey),
                                     [](auto& r) {
                                       r.set_count_only(true);
                                       r.set_limit(2);
                                     }),
       {}, false, 5},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto resp = applier_->Range(c.req);
    ASSERT_TRUE(resp.ok()) << resp.status();
    EXPECT_THAT(Keys(resp->kvs()), ElementsAreArray(c.keys));
    EXPECT_EQ(resp->more(), c.more);
    EXPECT_EQ(resp->count(), c.count);
    EXPECT_EQ(resp->header().revision(), 7);
    ExpectEncodedAsRange(c.req);
    RangeRequest keys_only = c.req;
    keys_only.set_keys_only(true);
    ExpectEncodedAsRange(keys_only);
  }
}

// etcd sorts the whole range only for an explicit sort order (or filters):
// a non-KEY target with order NONE sorts just the limit + 1 keys fetched in
// key order, so the key with the smallest mod revision can be missed.
TEST_F(ApplierTest, RangeSortTargetWithoutOrderSortsOnlyTheFetchedKeys) {
  ASSERT_TRUE(Put("z", "1").error.ok());  // mod 2
  ASSERT_TRUE(Put("a", "1").error.ok());  // mod 3
  ASSERT_TRUE(Put("b", "1").error.ok());  // mod 4
  RangeRequest r = R("a", kFromKey);
  r.set_sort_target(RangeRequest::MOD);
  r.set_limit(1);
  auto resp = applier_->Range(r);
  ASSERT_TRUE(resp.ok());
  EXPECT_THAT(Keys(resp->kvs()), ElementsAre("a"));
  EXPECT_TRUE(resp->more());
  r.set_sort_order(RangeRequest::ASCEND);
  resp = applier_->Range(r);
  ASSERT_TRUE(resp.ok());
  EXPECT_THAT(Keys(resp->kvs()), ElementsAre("z"));
  r.set_sort_order(RangeRequest::NONE);
  r.set_limit(0);
  resp = applier_->Range(r);
  ASSERT_TRUE(resp.ok());
  EXPECT_THAT(Keys(resp->kvs()), ElementsAre("z", "a", "b"));
}

TEST_F(ApplierTest, RangeValuesKeysOnlyAndErrors) {
  Seed();
  mvccpb::KeyValue a = Get("a");
  EXPECT_EQ(a.value(), "va2");
  EXPECT_EQ(a.create_revision(), 2);
  EXPECT_EQ(a.mod_revision(), 5);
  EXPECT_EQ(a.version(), 2);

  RangeRequest old = R("a");
  old.set_revision(4);
  auto r = applier_->Range(old);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->kvs_size(), 1);
  EXPECT_EQ(r->kvs(0).value(), "va1");
  EXPECT_EQ(r->kvs(0).mod_revision(), 2);

  RangeRequest ko = R("a", kFromKey);
  ko.set_keys_only(true);
  r = applier_->Range(ko);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->kvs_size(), 5);
  for (const auto& kv : r->kvs()) {
    EXPECT_TRUE(kv.value().empty());
    EXPECT_GT(kv.mod_revision(), 0);
  }

  RangeRequest future = R("a");
  future.set_revision(8);
  EXPECT_TRUE(mvcc::IsFutureRev(applier_->Range(future).status()));
  EXPECT_TRUE(mvcc::IsFutureRev(applier_->RangeEncoded(future).status()));
  EXPECT_TRUE(mvcc::IsFutureRev(applier_->EstimateRangeBytes(future).status()));

  ApplyResult c = Compact(4);
  ASSERT_TRUE(c.error.ok()) << c.error;
  ASSERT_TRUE(c.compaction_done.has_value());
  EXPECT_EQ(std::get<etcdserverpb::CompactionResponse>(c.response).header().revision(), 7);
  EXPECT_TRUE(c.compaction_done->get().ok());
  RangeRequest compacted = R("a");
  compacted.set_revision(3);
  EXPECT_TRUE(mvcc::IsCompacted(applier_->Range(compacted).status()));
  EXPECT_TRUE(mvcc::IsCompacted(applier_->RangeEncoded(compacted).status()));
  compacted.set_revision(4);
  ExpectEncodedAsRange(compacted);
  EXPECT_TRUE(applier_->Range(compacted).ok());
  EXPECT_TRUE(mvcc::IsCompacted(Compact(3).error));
  EXPECT_TRUE(mvcc::IsFutureRev(Compact(100).error));
}

TEST_F(ApplierTest, PutShapes) {
  ApplyResult r = Put("k", "v1");
  ASSERT_TRUE(r.error.ok());
  EXPECT_EQ(std::get<etcdserverpb::PutResponse>(r.response).header().revision(), 2);
  EXPECT_FALSE(std::get<etcdserverpb::PutResponse>(r.response).has_prev_kv());

  etcdserverpb::PutRequest p;
  p.set_key("k");
  p.set_value("v2");
  p.set_prev_kv(true);
  r = PutReq(p);
  ASSERT_TRUE(r.error.ok());
  const auto& pr = std::get<etcdserverpb::PutResponse>(r.response);
  EXPECT_EQ(pr.header().revision(), 3);
  EXPECT_EQ(pr.prev_kv().value(), "v1");
  EXPECT_EQ(pr.prev_kv().mod_revision(), 2);

  // prev_kv on a new key: none.
  p.set_key("new");
  r = PutReq(p);
  ASSERT_TRUE(r.error.ok());
  EXPECT_FALSE(std::get<etcdserverpb::PutResponse>(r.response).has_prev_kv());

  // ignore_value on a missing key: "etcdserver: key not found", nothing written.
  etcdserverpb::PutRequest iv;
  iv.set_key("missing");
  iv.set_ignore_value(true);
  r = PutReq(iv);
  EXPECT_TRUE(IsKeyNotFound(r.error)) << r.error;
  EXPECT_EQ(store_->Rev(), 4);
  iv.set_ignore_value(false);
  iv.set_ignore_lease(true);
  EXPECT_TRUE(IsKeyNotFound(PutReq(iv).error));

  // Lease attach, then ignore_value keeps the value, ignore_lease the lease.
  ASSERT_TRUE(Grant(100, 60).error.ok());
  r = Put("k", "v3", 100);
  ASSERT_TRUE(r.error.ok());
  EXPECT_EQ(Get("k").lease(), 100);
  EXPECT_THAT(lessor_->Lookup(100)->keys, ElementsAre("k"));

  etcdserverpb::PutRequest keep_value;
  keep_value.set_key("k");
  keep_value.set_ignore_value(true);  // lease 0: detached
  r = PutReq(keep_value);
  ASSERT_TRUE(r.error.ok());
  EXPECT_EQ(Get("k").value(), "v3");
  EXPECT_EQ(Get("k").lease(), 0);
  EXPECT_THAT(lessor_->Lookup(100)->keys, IsEmpty());

  ASSERT_TRUE(Put("k", "v4", 100).error.ok());
  etcdserverpb::PutRequest keep_lease;
  keep_lease.set_key("k");
  keep_lease.set_value("v5");
  keep_lease.set_ignore_lease(true);
  ASSERT_TRUE(PutReq(keep_lease).error.ok());
  EXPECT_EQ(Get("k").value(), "v5");
  EXPECT_EQ(Get("k").lease(), 100);
  EXPECT_EQ(Get("k").version(), 6);
  EXPECT_THAT(lessor_->Lookup(100)->keys, ElementsAre("k"));

  // Unknown lease: error, nothing written.
  const int64_t rev = store_->Rev();
  r = Put("x", "y", 555);
  EXPECT_TRUE(lease::IsLeaseNotFound(r.error));
  EXPECT_EQ(store_->Rev(), rev);
}

TEST_F(ApplierTest, DeleteRangeShapes) {
  Seed();
  ApplyResult r = Delete("zz");
  ASSERT_TRUE(r.error.ok());
  const auto& none = std::get<etcdserverpb::DeleteRangeResponse>(r.response);
  EXPECT_EQ(none.deleted(), 0);
  EXPECT_EQ(none.header().revision(), 7);  // nothing deleted: revision unchanged

  r = Delete("a", "c", /*prev_kv=*/true);
  ASSERT_TRUE(r.error.ok());
  const auto& dr = std::get<etcdserverpb::DeleteRangeResponse>(r.response);
  EXPECT_EQ(dr.deleted(), 2);
  EXPECT_EQ(dr.header().revision(), 8);
  EXPECT_THAT(Keys(dr.prev_kvs()), ElementsAre("a", "b"));
  EXPECT_EQ(dr.prev_kvs(0).value(), "va2");

  r = Delete("c", kFromKey);
  ASSERT_TRUE(r.error.ok());
  EXPECT_EQ(std::get<etcdserverpb::DeleteRangeResponse>(r.response).deleted(), 3);
  EXPECT_TRUE(std::get<etcdserverpb::DeleteRangeResponse>(r.response).prev_kvs().empty());
  EXPECT_EQ(store_->Rev(), 9);
  auto all = applier_->Range(R("a", kFromKey));
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->count(), 0);
}

Compare Cmp(std::string key, Compare::CompareTarget target, Compare::CompareResult result) {
  Compare c;
  c.set_key(std::move(key));
  c.set_target(target);
  c.set_result(result);
  return c;
}
Compare CmpVersion(std::string key, Compare::CompareResult res, int64_t v) {
  Compare c = Cmp(std::move(key), Compare::VERSION, res);
  c.set_version(v);
  return c;
}
Compare CmpValue(std::string key, Compare::CompareResult res, std::string v) {
  Compare c = Cmp(std::move(key), Compare::VALUE, res);
  c.set_value(std::move(v));
  return c;
}
Compare CmpCreate(std::string key, Compare::CompareResult res, int64_t v) {
  Compare c = Cmp(std::move(key), Compare::CREATE, res);
  c.set_create_revision(v);
  return c;
}
Compare CmpMod(std::string key, Compare::CompareResult res, int64_t v) {
  Compare c = Cmp(std::move(key), Compare::MOD, res);
  c.set_mod_revision(v);
  return c;
}
Compare CmpLease(std::string key, Compare::CompareResult res, int64_t v) {
  Compare c = Cmp(std::move(key), Compare::LEASE, res);
  c.set_lease(v);
  return c;
}
Compare WithEnd(Compare c, std::string end) {
  c.set_range_end(std::move(end));
  return c;
}

struct CompareCase {
  const char* name;
  Compare cmp;
  bool holds;
};

TEST_F(ApplierTest, CompareTable) {
  Seed();  // a: create 2, mod 5, version 2, "va2"; b..d version 1
  ASSERT_TRUE(Grant(9, 60).error.ok());
  ASSERT_TRUE(Put("l", "lv", 9).error.ok());  // rev 8
  const std::vector<CompareCase> cases = {
      {"version equal", CmpVersion("a", Compare::EQUAL, 2), true},
      {"version not equal", CmpVersion("a", Compare::NOT_EQUAL, 2), false},
      {"version greater", CmpVersion("a", Compare::GREATER, 1), true},
      {"version less", CmpVersion("a", Compare::LESS, 2), false},
      {"create equal", CmpCreate("a", Compare::EQUAL, 2), true},
      {"create less", CmpCreate("a", Compare::LESS, 3), true},
      {"mod equal", CmpMod("a", Compare::EQUAL, 5), true},
      {"mod greater", CmpMod("a", Compare::GREATER, 5), false},
      {"value equal", CmpValue("a", Compare::EQUAL, "va2"), true},
      {"value greater (bytewise)", CmpValue("a", Compare::GREATER, "va1"), true},
      {"value less", CmpValue("a", Compare::LESS, "vb"), true},
      {"value not equal", CmpValue("a", Compare::NOT_EQUAL, "va2"), false},
      {"lease equal", CmpLease("l", Compare::EQUAL, 9), true},
      {"lease of a key without lease", CmpLease("a", Compare::EQUAL, 0), true},
      // A missing key compares as zero for version/create/mod/lease...
      {"missing: version 0", CmpVersion("nope", Compare::EQUAL, 0), true},
      {"missing: create 0", CmpCreate("nope", Compare::EQUAL, 0), true},
      {"missing: mod less 1", CmpMod("nope", Compare::LESS, 1), true},
      {"missing: lease 0", CmpLease("nope", Compare::EQUAL, 0), true},
      {"missing: version greater 0", CmpVersion("nope", Compare::GREATER, 0), false},
      // ...but any VALUE compare on it fails.
      {"missing: value equal empty", CmpValue("nope", Compare::EQUAL, ""), false},
      {"missing: value not equal", CmpValue("nope", Compare::NOT_EQUAL, "x"), false},
      // Ranged: every key must satisfy.
      {"range all version 1", WithEnd(CmpVersion("b", Compare::EQUAL, 1), "e"), true},
      {"range one fails", WithEnd(CmpVersion("a", Compare::EQUAL, 1), "e"), false},
      {"range mod greater", WithEnd(CmpMod("b", Compare::GREATER, 2), kFromKey), true},
      {"empty range compares as missing", WithEnd(CmpVersion("x", Compare::EQUAL, 0), "y"),
       true},
      {"empty range value", WithEnd(CmpValue("x", Compare::EQUAL, ""), "y"), false},
      // A target value given for another target compares as 0.
      {"mismatched union", [] {
         Compare c = Cmp("a", Compare::VERSION, Compare::EQUAL);
         c.set_mod_revision(2);
         return c;
       }(),
       false},
      {"value with no target value is empty", Cmp("a", Compare::VALUE, Compare::GREATER), true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    TxnRequest t;
    *t.add_compare() = c.cmp;
    ApplyResult r = Txn(t);
    ASSERT_TRUE(r.error.ok()) << r.error;
    EXPECT_EQ(std::get<etcdserverpb::TxnResponse>(r.response).succeeded(), c.holds);
    // The read-only path agrees.
    auto ro = applier_->ReadOnlyTxn(t);
    ASSERT_TRUE(ro.ok()) << ro.status();
    EXPECT_EQ(ro->succeeded(), c.holds);
  }
  EXPECT_EQ(store_->Rev(), 8);  // compare-only txns write nothing
}

RequestOp PutOp(std::string key, std::string value, int64_t lease = 0) {
  RequestOp op;
  op.mutable_request_put()->set_key(std::move(key));
  op.mutable_request_put()->set_value(std::move(value));
  op.mutable_request_put()->set_lease(lease);
  return op;
}
RequestOp DelOp(std::string key, std::string end = "") {
  RequestOp op;
  op.mutable_request_delete_range()->set_key(std::move(key));
  op.mutable_request_delete_range()->set_range_end(std::move(end));
  op.mutable_request_delete_range()->set_prev_kv(true);
  return op;
}
RequestOp RangeOp(std::string key, std::string end = "", int64_t rev = 0) {
  RequestOp op;
  op.mutable_request_range()->set_key(std::move(key));
  op.mutable_request_range()->set_range_end(std::move(end));
  op.mutable_request_range()->set_revision(rev);
  return op;
}

TEST_F(ApplierTest, TxnOpsAtOneRevisionSeeEarlierWrites) {
  Seed();
  TxnRequest t;
  *t.add_compare() = CmpValue("a", Compare::EQUAL, "va2");
  *t.add_success() = PutOp("n1", "1");
  *t.add_success() = RangeOp("n1");
  *t.add_success() = DelOp("b");
  *t.add_success() = RangeOp("a", kFromKey);
  *t.add_success() = PutOp("n2", "2");
  *t.add_failure() = PutOp("fail", "x");
  ApplyResult r = Txn(t);
  ASSERT_TRUE(r.error.ok()) << r.error;
  const auto& resp = std::get<etcdserverpb::TxnResponse>(r.response);
  EXPECT_TRUE(resp.succeeded());
  EXPECT_EQ(resp.header().revision(), 8);
  ASSERT_EQ(resp.responses_size(), 5);
  EXPECT_EQ(resp.responses(0).response_put().header().revision(), 8);
  ASSERT_EQ(resp.responses(1).response_range().kvs_size(), 1);
  EXPECT_EQ(resp.responses(1).response_range().kvs(0).value(), "1");
  EXPECT_EQ(resp.responses(1).response_range().kvs(0).mod_revision(), 8);
  EXPECT_EQ(resp.responses(1).response_range().header().revision(), 8);
  EXPECT_EQ(resp.responses(2).response_delete_range().deleted(), 1);
  EXPECT_EQ(resp.responses(2).response_delete_range().prev_kvs(0).value(), "vb");
  EXPECT_THAT(Keys(resp.responses(3).response_range().kvs()),
              ElementsAre("a", "c", "d", "foo", "n1"));
  EXPECT_EQ(resp.responses(4).response_put().header().revision(), 8);
  EXPECT_EQ(store_->Rev(), 8);
  EXPECT_EQ(Get("n2").mod_revision(), 8);
  EXPECT_EQ(Get("n1").create_revision(), 8);

  // The failure branch.
  TxnRequest f;
  *f.add_compare() = CmpVersion("a", Compare::EQUAL, 99);
  *f.add_success() = PutOp("s", "1");
  *f.add_failure() = PutOp("f", "1");
  *f.add_failure() = RangeOp("f");
  r = Txn(f);
  ASSERT_TRUE(r.error.ok());
  const auto& fr = std::get<etcdserverpb::TxnResponse>(r.response);
  EXPECT_FALSE(fr.succeeded());
  ASSERT_EQ(fr.responses_size(), 2);
  EXPECT_TRUE(fr.responses(0).has_response_put());
  EXPECT_EQ(fr.responses(1).response_range().count(), 1);
  EXPECT_EQ(Get("s").key(), "");
  EXPECT_EQ(Get("f").value(), "1");
  EXPECT_EQ(fr.header().revision(), 9);

  // A txn that writes nothing keeps the revision.
  TxnRequest empty;
  r = Txn(empty);
  ASSERT_TRUE(r.error.ok());
  EXPECT_TRUE(std::get<etcdserverpb::TxnResponse>(r.response).succeeded());
  EXPECT_EQ(std::get<etcdserverpb::TxnResponse>(r.response).header().revision(), 9);
}

TEST_F(ApplierTest, NestedTxns) {
  Seed();
  TxnRequest inner_ok;
  *inner_ok.add_compare() = CmpVersion("a", Compare::EQUAL, 2);
  *inner_ok.add_success() = PutOp("in1", "x");
  TxnRequest inner_fail;
  *inner_fail.add_compare() = CmpVersion("a", Compare::EQUAL, 3);
  *inner_fail.add_success() = PutOp("never", "x");
  *inner_fail.add_failure() = PutOp("in2", "y");
  *inner_fail.add_failure() = RangeOp("in1");

  TxnRequest t;
  *t.add_success() = PutOp("out", "o");
  RequestOp op1;
  *op1.mutable_request_txn() = inner_ok;
  *t.add_success() = op1;
  RequestOp op2;
  *op2.mutable_request_txn() = inner_fail;
  *t.add_success() = op2;
  ApplyResult r = Txn(t);
  ASSERT_TRUE(r.error.ok()) << r.error;
  const auto& resp = std::get<etcdserverpb::TxnResponse>(r.response);
  ASSERT_EQ(resp.responses_size(), 3);
  EXPECT_TRUE(resp.responses(1).response_txn().succeeded());
  EXPECT_EQ(resp.responses(1).response_txn().responses_size(), 1);
  const auto& nf = resp.responses(2).response_txn();
  EXPECT_FALSE(nf.succeeded());
  ASSERT_EQ(nf.responses_size(), 2);
  EXPECT_EQ(nf.responses(1).response_range().kvs(0).value(), "x");  // sees in1
  EXPECT_EQ(resp.header().revision(), 8);
  EXPECT_EQ(Get("in1").mod_revision(), 8);
  EXPECT_EQ(Get("in2").mod_revision(), 8);
  EXPECT_EQ(Get("never").key(), "");
}

TEST_F(ApplierTest, TxnChecksBeforeAnyWrite) {
  Seed();
  // An unknown lease anywhere on the chosen path fails the whole txn.
  TxnRequest t;
  *t.add_success() = PutOp("x1", "1");
  *t.add_success() = PutOp("x2", "2", 777);
  ApplyResult r = Txn(t);
  EXPECT_TRUE(lease::IsLeaseNotFound(r.error)) << r.error;
  EXPECT_EQ(store_->Rev(), 7);
  EXPECT_EQ(Get("x1").key(), "");

  // ...even nested; but not on the branch not taken.
  TxnRequest nested;
  RequestOp nop;
  *nop.mutable_request_txn()->add_success() = PutOp("y", "1", 777);
  *nested.add_success() = PutOp("x1", "1");
  *nested.add_success() = nop;
  EXPECT_TRUE(lease::IsLeaseNotFound(Txn(nested).error));
  EXPECT_EQ(store_->Rev(), 7);
  TxnRequest other_branch = t;
  *other_branch.add_compare() = CmpVersion("a", Compare::EQUAL, 99);
  *other_branch.add_failure() = PutOp("z", "1");
  r = Txn(other_branch);
  ASSERT_TRUE(r.error.ok());
  EXPECT_EQ(store_->Rev(), 8);

  // ignore_value on a key missing before the txn.
  TxnRequest iv;
  *iv.add_success() = PutOp("w", "1");
  RequestOp ivop;
  ivop.mutable_request_put()->set_key("missing");
  ivop.mutable_request_put()->set_ignore_value(true);
  *iv.add_success() = ivop;
  EXPECT_TRUE(IsKeyNotFound(Txn(iv).error));
  EXPECT_EQ(store_->Rev(), 8);

  // A range at a future or compacted revision.
  TxnRequest fut;
  *fut.add_success() = PutOp("w", "1");
  *fut.add_success() = RangeOp("a", "", 9);  // 9 is this txn's own revision
  EXPECT_TRUE(mvcc::IsFutureRev(Txn(fut).error));
  EXPECT_EQ(store_->Rev(), 8);
  // A negative revision is compared with the compact revision only (etcd's
  // checkRequestRange; -1 before any compaction). Found by diff_fuzz_test.
  TxnRequest neg1;
  *neg1.add_success() = RangeOp("a", "", -1);
  EXPECT_TRUE(Txn(neg1).error.ok());
  TxnRequest neg2;
  *neg2.add_success() = RangeOp("a", "", -2);
  EXPECT_TRUE(mvcc::IsCompacted(Txn(neg2).error));
  ApplyResult c = Compact(5);
  ASSERT_TRUE(c.error.ok());
  ASSERT_TRUE(c.compaction_done->get().ok());
  TxnRequest old;
  *old.add_success() = PutOp("w", "1");
  *old.add_success() = RangeOp("a", "", 4);
  EXPECT_TRUE(mvcc::IsCompacted(Txn(old).error));
  EXPECT_EQ(store_->Rev(), 8);
  TxnRequest neg;
  *neg.add_success() = PutOp("w", "1");
  *neg.add_success() = RangeOp("a", "", -1);
  EXPECT_TRUE(mvcc::IsCompacted(Txn(neg).error));
  EXPECT_EQ(store_->Rev(), 8);
  // At the compact revision itself: fine.
  TxnRequest at;
  *at.add_success() = PutOp("w", "1");
  *at.add_success() = RangeOp("a", "", 5);
  r = Txn(at);
  ASSERT_TRUE(r.error.ok()) << r.error;
  EXPECT_EQ(std::get<etcdserverpb::TxnResponse>(r.response).responses(1).response_range()
                .kvs(0).value(), "va2");
}

// A put keeping the value (or lease) of a key the same txn deleted first
// used to fail in the middle of the txn, after the delete was written (etcd
// panics there): every member then stopped. It fails before any write now.
TEST_F(ApplierTest, TxnPutIgnoringValueOfAKeyItDeletedFailsBeforeAnyWrite) {
  Seed();
  auto ignore_value = [](std::string key) {
    RequestOp op;
    op.mutable_request_put()->set_key(std::move(key));
    op.mutable_request_put()->set_ignore_value(true);
    return op;
  };
  auto ignore_lease = [](std::string key) {
    RequestOp op;
    op.mutable_request_put()->set_key(std::move(key));
    op.mutable_request_put()->set_value("nv");
    op.mutable_request_put()->set_ignore_lease(true);
    return op;
  };
  struct Case {
    const char* name;
    std::vector<RequestOp> ops;
  };
  RequestOp nested_del;
  *nested_del.mutable_request_txn()->add_success() = DelOp("a");
  const Case cases[] = {
      {"delete the key", {PutOp("x", "1"), DelOp("a"), ignore_value("a")}},
      {"delete a range holding it", {DelOp("a", "c"), ignore_value("b")}},
      {"delete from a key on", {DelOp("b", std::string(1, '\0')), ignore_lease("foo")}},
      {"delete in a nested txn", {nested_del, ignore_value("a")}},
      {"put, delete, then keep", {PutOp("a", "n"), DelOp("a"), ignore_value("a")}},
  };
  for (const Case& c : cases) {
    TxnRequest t;
    for (const RequestOp& op : c.ops) *t.add_success() = op;
    ApplyResult r = Txn(t);
    EXPECT_TRUE(IsKeyNotFound(r.error)) << c.name << ": " << r.error;
    EXPECT_EQ(store_->Rev(), 7) << c.name;
    EXPECT_EQ(Get("a").value(), "va2") << c.name;
    EXPECT_EQ(Get("a").mod_revision(), 5) << c.name;
    EXPECT_EQ(Get("b").value(), "vb") << c.name;
    EXPECT_EQ(Get("x").key(), "") << c.name;
  }
  // Put again after the delete: the key exists when the ignoring put runs...
  // but etcd checks the state before the txn, where it existed: fine.
  TxnRequest again;
  *again.add_success() = DelOp("a");
  *again.add_success() = PutOp("a", "back");
  *again.add_success() = ignore_lease("a");
  ApplyResult r = Txn(again);
  ASSERT_TRUE(r.error.ok()) << r.error;
  EXPECT_EQ(store_->Rev(), 8);
  EXPECT_EQ(Get("a").value(), "nv");
  // A delete of another key, or of a range not holding it, does not matter.
  TxnRequest other;
  *other.add_success() = DelOp("c");
  *other.add_success() = DelOp("d", "f");
  *other.add_success() = ignore_value("b");
  r = Txn(other);
  ASSERT_TRUE(r.error.ok()) << r.error;
  EXPECT_EQ(Get("b").value(), "vb");
  EXPECT_EQ(Get("c").key(), "");
}

TEST_F(ApplierTest, ReadOnlyTxn) {
  Seed();
  TxnRequest t;
  *t.add_compare() = CmpMod("a", Compare::EQUAL, 5);
  *t.add_success() = RangeOp("a", kFromKey);
  *t.add_success() = RangeOp("a", "", 3);
  *t.add_failure() = RangeOp("b");
  EXPECT_TRUE(Applier::IsTxnReadOnly(t));
  auto r = applier_->ReadOnlyTxn(t);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->succeeded());
  EXPECT_EQ(r->header().revision(), 7);
  ASSERT_EQ(r->responses_size(), 2);
  EXPECT_EQ(r->responses(0).response_range().count(), 5);
  EXPECT_EQ(r->responses(0).response_range().header().revision(), 7);
  EXPECT_EQ(r->responses(1).response_range().kvs(0).value(), "va1");

  TxnRequest fut;
  *fut.add_success() = RangeOp("a", "", 8);
  EXPECT_TRUE(mvcc::IsFutureRev(applier_->ReadOnlyTxn(fut).status()));

  TxnRequest writes;
  *writes.add_success() = PutOp("x", "y");
  EXPECT_FALSE(Applier::IsTxnReadOnly(writes));
  EXPECT_FALSE(applier_->ReadOnlyTxn(writes).ok());
  TxnRequest nested;
  nested.add_success()->mutable_request_txn();
  EXPECT_FALSE(Applier::IsTxnReadOnly(nested));
}

TEST_F(ApplierTest, LeaseGrantAndRevoke) {
  ApplyResult g = Grant(42, 30);
  ASSERT_TRUE(g.error.ok()) << g.error;
  const auto& gr = std::get<etcdserverpb::LeaseGrantResponse>(g.response);
  EXPECT_EQ(gr.id(), 42);
  EXPECT_EQ(gr.ttl(), 30);
  EXPECT_EQ(gr.header().revision(), 1);
  EXPECT_TRUE(lease::IsLeaseExists(Grant(42, 30).error));
  EXPECT_TRUE(lease::IsLeaseTTLTooLarge(Grant(43, lease::kMaxLeaseTtlSeconds + 1).error));

  ASSERT_TRUE(Put("k1", "v", 42).error.ok());  // 2
  ASSERT_TRUE(Put("k2", "v", 42).error.ok());  // 3
  ASSERT_TRUE(Put("k3", "v").error.ok());      // 4
  ASSERT_TRUE(Put("k4", "v", 42).error.ok());  // 5
  ASSERT_TRUE(Put("k4", "v").error.ok());      // 6: detached
  EXPECT_THAT(lessor_->Lookup(42)->keys, ElementsAre("k1", "k2"));

  ApplyResult rv = Revoke(42);
  ASSERT_TRUE(rv.error.ok()) << rv.error;
  // Both keys deleted at one revision.
  EXPECT_EQ(std::get<etcdserverpb::LeaseRevokeResponse>(rv.response).header().revision(), 7);
  EXPECT_EQ(store_->Rev(), 7);
  auto left = applier_->Range(R("k", "l"));
  ASSERT_TRUE(left.ok());
  EXPECT_THAT(Keys(left->kvs()), ElementsAre("k3", "k4"));
  EXPECT_FALSE(lessor_->Exists(42));
  EXPECT_TRUE(lease::IsLeaseNotFound(Revoke(42).error));

  // A lease with no keys: the revision does not move.
  ASSERT_TRUE(Grant(50, 10).error.ok());
  rv = Revoke(50);
  ASSERT_TRUE(rv.error.ok());
  EXPECT_EQ(std::get<etcdserverpb::LeaseRevokeResponse>(rv.response).header().revision(), 7);
}

// etcd applierV3backend.LeaseCheckpoint: checkpoints of unknown leases are
// no-ops, the others are kept; the entry succeeds either way (apply is total).
TEST_F(ApplierTest, LeaseCheckpointOfUnknownLeaseIsANoOp) {
  ASSERT_TRUE(Grant(42, 100).error.ok());
  ASSERT_TRUE(Put("k", "v").error.ok());
  serverpb::InternalRaftRequest r;
  auto* cp = r.mutable_lease_checkpoint()->add_checkpoints();
  cp->set_id(7);  // never granted
  cp->set_remaining_ttl(30);
  cp = r.mutable_lease_checkpoint()->add_checkpoints();
  cp->set_id(42);
  cp->set_remaining_ttl(60);
  ApplyResult res = Apply(r);
  ASSERT_TRUE(res.error.ok()) << res.error;
  EXPECT_FALSE(res.unhandled);
  ASSERT_NE(res.message(), nullptr);
  EXPECT_EQ(res.message()->GetTypeName(), "etcdserverpb.LeaseCheckpointResponse");
  EXPECT_EQ(std::get<etcdserverpb::LeaseCheckpointResponse>(res.response).header().revision(), 2);
  EXPECT_FALSE(lessor_->Exists(7));
  EXPECT_EQ(lessor_->Lookup(42)->checkpointed_ttl_seconds, 60);
  EXPECT_EQ(store_->Rev(), 2);  // the store does not move
  // An empty request and a checkpoint of a revoked lease: no-ops as well.
  ASSERT_TRUE(Revoke(42).error.ok());
  EXPECT_TRUE(Apply(r).error.ok());
  serverpb::InternalRaftRequest empty;
  empty.mutable_lease_checkpoint();
  EXPECT_TRUE(Apply(empty).error.ok());
}

TEST_F(ApplierTest, UnhandledRequests) {
  serverpb::InternalRaftRequest r;
  r.mutable_alarm();
  ApplyResult res = Apply(r);
  EXPECT_TRUE(res.unhandled);
  EXPECT_EQ(res.message(), nullptr);
  ApplyResult put = Put("a", "b");
  ASSERT_NE(put.message(), nullptr);
  EXPECT_EQ(put.message()->GetTypeName(), "etcdserverpb.PutResponse");
}

}  // namespace
}  // namespace cppetcd::server
