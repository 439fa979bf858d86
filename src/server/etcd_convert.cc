// etcd data dir -> cppetcd data dir at start-up (see etcd_convert.h).
#include "cppetcd/server/etcd_convert.h"

#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/unknown_field_set.h>
#include <google/protobuf/wire_format_lite.h>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "crash_point.h"
#include "cppetcd/server/etcd_backend_export.h"
#include "cppetcd/snap/snapshotter.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/storage/bbolt_reader.h"
#include "cppetcd/storage/etcd_data_dir.h"
#include "cppetcd/util/log.h"
#include "cppetcd/wal/wal.h"
#include "raftpb/raft.pb.h"
#include "serverpb/internal.pb.h"
#include "walpb/etcd.pb.h"

namespace cppetcd::server {
namespace {

using google::protobuf::internal::WireFormatLite;

constexpr char kConsistentIndexKey[] = "consistent_index";
// etcdserverpb.InternalRaftRequest's v2 field (a pb.Request), absent from
// cppetcd's InternalRaftRequest.
constexpr int kV2Field = 2;
// etcd 3.5's membership requests in InternalRaftRequest, unknown to cppetcd's:
// cluster_version_set, cluster_member_attr_set, downgrade_info_set.
constexpr int kClusterVersionSetField = 1300;
constexpr int kClusterMemberAttrSetField = 1301;
constexpr int kDowngradeInfoSetField = 1302;

// The fields of etcd's v2 pb.Request the conversion looks at.
struct V2Request {
  std::string method;  // field 2
  std::string path;    // field 3
  std::string val;     // field 4
};

// Decodes a v2 pb.Request (any field other than 2..4 is skipped).
std::optional<V2Request> DecodeV2Request(std::string_view b) {
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(b.data()),
                                            static_cast<int>(b.size()));
  V2Request r;
  for (;;) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) {
      if (in.CurrentPosition() != static_cast<int>(b.size())) return std::nullopt;
      return r;
    }
    const int field = WireFormatLite::GetTagFieldNumber(tag);
    const auto type = WireFormatLite::GetTagWireType(tag);
    if (field >= 2 && field <= 4 && type == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      uint32_t len = 0;
      std::string s;
      if (!in.ReadVarint32(&len) || !in.ReadString(&s, static_cast<int>(len))) return std::nullopt;
      (field == 2 ? r.method : field == 3 ? r.path : r.val) = std::move(s);
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      return std::nullopt;
    }
  }
}

// The bytes of top-level field `field` (length-delimited) among `req`'s
// unknown fields, if any.
std::optional<std::string> UnknownBytes(const serverpb::InternalRaftRequest& req, int field) {
  const auto& u = req.GetReflection()->GetUnknownFields(req);
  for (int i = 0; i < u.field_count(); ++i) {
    if (u.field(i).number() == field &&
        u.field(i).type() == google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) {
      return u.field(i).length_delimited();
    }
  }
  return std::nullopt;
}

enum class Translation { kKept, kAttributes, kVersion, kConfChange, kUntranslatable };

// etcd's v2 request -> cppetcd's payload (empty: a no-op entry).
Translation TranslateV2(const V2Request& v2, std::string* out, std::string* why) {
  if (v2.method == "PUT" && v2.path == "/0/version") {
    out->clear();
    return Translation::kVersion;
  }
  constexpr std::string_view kPrefix = "/0/members/";
  constexpr std::string_view kSuffix = "/attributes";
  std::string_view p = v2.path;
  if (v2.method == "PUT" && p.starts_with(kPrefix) && p.ends_with(kSuffix) && p.size() > kPrefix.size() + kSuffix.size()) {
    std::string_view hex = p.substr(kPrefix.size(), p.size() - kPrefix.size() - kSuffix.size());
    uint64_t id = 0;
    const nlohmann::json j = nlohmann::json::parse(v2.val, nullptr, /*allow_exceptions=*/false);
    if (absl::SimpleHexAtoi(absl::string_view(hex.data(), hex.size()), &id) && id != 0 && j.is_object()) {
      serverpb::InternalRaftRequest req;
      auto* ma = req.mutable_member_attributes();
      ma->set_member_id(id);
      bool ok = true;
      if (auto it = j.find("name"); it != j.end() && !it->is_null()) {
        ok = ok && it->is_string();
        if (it->is_string()) ma->set_name(it->get<std::string>());
      }
      if (auto it = j.find("clientURLs"); it != j.end() && !it->is_null()) {
        ok = ok && it->is_array();
        if (it->is_array()) {
          for (const auto& u : *it) {
            if (!u.is_string()) {
              ok = false;
              break;
            }
            ma->add_client_urls(u.get<std::string>());
          }
        }
      }
      if (ok) {
        *out = req.SerializeAsString();
        return Translation::kAttributes;
      }
    }
  }
  *why = absl::StrCat("a v2 ", v2.method, " ", v2.path, " request");
  return Translation::kUntranslatable;
}

// etcd 3.5's membership requests (InternalRaftRequest field `field`):
// member attributes become cppetcd's member_attributes request; the cluster
// version and downgrade info (cppetcd has neither) become no-op entries, as
// etcd 3.4's v2 cluster version entries do.
Translation TranslateEtcd35(const serverpb::InternalRaftRequest& req, int field,
                            raftpb::Entry* e, std::string* why) {
  if (field == kClusterVersionSetField || field == kDowngradeInfoSetField) {
    if (!UnknownBytes(req, field).has_value()) return Translation::kUntranslatable;
    e->clear_data();
    return Translation::kVersion;
  }
  if (field != kClusterMemberAttrSetField) return Translation::kUntranslatable;
  auto bytes = UnknownBytes(req, field);
  walpb::EtcdClusterMemberAttrSetRequest in;
  if (!bytes.has_value() || !in.ParseFromString(*bytes) || in.member_id() == 0) {
    *why = "an etcd 3.5 member attributes request that does not decode";
    return Translation::kUntranslatable;
  }
  serverpb::InternalRaftRequest out;
  auto* ma = out.mutable_member_attributes();
  ma->set_member_id(in.member_id());
  ma->set_name(in.member_attributes().name());
  for (const auto& u : in.member_attributes().client_urls()) ma->add_client_urls(u);
  e->set_data(out.SerializeAsString());
  return Translation::kAttributes;
}

// One entry's payload in cppetcd's form (`e` is changed in place unless the
// result is kUntranslatable).
Translation TranslateEntry(raftpb::Entry* e, std::string* why) {
  switch (e->type()) {
    case raftpb::EntryNormal: {
      if (e->data().empty()) return Translation::kKept;
      serverpb::InternalRaftRequest req;
      if (req.ParseFromString(e->data())) {
        auto v2 = UnknownBytes(req, kV2Field);
        if (!v2.has_value()) {
          const auto& unknown = req.GetReflection()->GetUnknownFields(req);
          if (unknown.empty()) return Translation::kKept;
          if (unknown.field_count() == 1) {
            if (Translation t = TranslateEtcd35(req, unknown.field(0).number(), e, why);
                t != Translation::kUntranslatable) {
              return t;
            }
          }
          if (why->empty()) *why = "a request of a kind cppetcd does not know";
          return Translation::kUntranslatable;
        }
        auto r = DecodeV2Request(*v2);
        if (!r.has_value()) break;
        std::string out;
        Translation t = TranslateV2(*r, &out, why);
        if (t != Translation::kUntranslatable) e->set_data(out);
        return t;
      }
      // etcd 3.4 proposes v2 requests (member attributes, cluster version)
      // as a bare pb.Request.
      auto r = DecodeV2Request(e->data());
      if (!r.has_value() || r->method.empty()) break;
      std::string out;
      Translation t = TranslateV2(*r, &out, why);
      if (t != Translation::kUntranslatable) e->set_data(out);
      return t;
    }
    case raftpb::EntryConfChange: {
      raftpb::ConfChange cc;
      if (!cc.ParseFromString(e->data())) break;
      if (cc.context().empty()) return Translation::kKept;
      auto m = storage::ParseEtcdMemberJson(cc.context());
      if (!m.ok()) {
        *why = absl::StrCat("a conf change whose context is not etcd's member JSON (",
                            m.status().message(), ")");
        return Translation::kUntranslatable;
      }
      serverpb::MemberRecord rec;
      rec.set_id(m->id);
      rec.set_name(m->name);
      for (const auto& u : m->peer_urls) rec.add_peer_urls(u);
      for (const auto& u : m->client_urls) rec.add_client_urls(u);
      rec.set_is_learner(m->is_learner);
      cc.set_context(rec.SerializeAsString());
      e->set_data(cc.SerializeAsString());
      return Translation::kConfChange;
    }
    case raftpb::EntryConfChangeV2:
      *why = "a ConfChangeV2 (etcd 3.4 writes none)";
      return Translation::kUntranslatable;
    default:
      break;
  }
  if (why->empty()) *why = "a payload that does not decode";
  return Translation::kUntranslatable;
}

absl::Status Annotate(const absl::Status& s, std::string_view what) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(std::string(what), ": ", s.message()));
}

// Builds the cppetcd member dir in `tmp` from `d` (entries already translated).
absl::Status BuildMemberDir(util::Env* env, const storage::EtcdDataDir& d,
                            const std::vector<raftpb::Entry>& entries, const std::string& tmp,
                            const util::Logger& log) {
  const std::string snap_dir = tmp + "/snap";
  if (auto s = env->CreateDirAll(snap_dir); !s.ok()) return s;
  if (d.db != nullptr) {
    storage::BackendOptions bopts;
    bopts.logger = log.WithComponent("backend");
    bopts.env = env;
    auto be = storage::Backend::Open(snap_dir + "/db", bopts);
    if (!be.ok()) return be.status();
    if (auto s = ImportEtcdBackend(*d.db, be->get(), log); !s.ok()) return s;
    auto wtx = (*be)->BeginWrite();
    if (!wtx.ok()) return wtx.status();
    for (const auto& m : d.members) {
      serverpb::MemberRecord rec;
      rec.set_id(m.id);
      rec.set_name(m.name);
      for (const auto& u : m.peer_urls) rec.add_peer_urls(u);
      for (const auto& u : m.client_urls) rec.add_client_urls(u);
      rec.set_is_learner(m.is_learner);
      if (auto s = (*wtx)->Put(storage::kMembersBucket, absl::StrFormat("%016x", m.id),
                               rec.SerializeAsString());
          !s.ok()) {
        return s;
      }
    }
    for (uint64_t id : d.removed_member_ids) {
      if (auto s = (*wtx)->Put(storage::kMembersRemovedBucket, absl::StrFormat("%016x", id),
                               "removed");
          !s.ok()) {
        return s;
      }
    }
    if (auto s = (*wtx)->Commit(); !s.ok()) return s;
    if (auto s = (*be)->Sync(); !s.ok()) return s;
  }
  wal::WalSnapshot at;
  if (d.snapshot.has_value()) {
    raftpb::Snapshot snap;
    *snap.mutable_metadata() = d.snapshot->metadata();
    snap::Snapshotter snapshotter(env, snap_dir, log.WithComponent("snap"));
    if (auto s = snapshotter.SaveSnap(snap); !s.ok()) return s;
    at = {snap.metadata().index(), snap.metadata().term()};
  }
  serverpb::WalMetadata md;
  md.set_member_id(d.member_id);
  md.set_cluster_id(d.cluster_id);
  wal::Options wopts;
  wopts.logger = log.WithComponent("wal");
  auto w = wal::Wal::Create(env, tmp + "/wal", md.SerializeAsString(), wopts);
  if (!w.ok()) return w.status();
  if (at.index != 0) {
    if (auto s = (*w)->SaveSnapshot(at); !s.ok()) return s;
  }
  if (auto s = (*w)->Save(d.hard_state, entries, /*must_sync=*/true); !s.ok()) return s;
  if (auto s = (*w)->Close(); !s.ok()) return s;
  if (auto s = env->SyncDir(snap_dir); !s.ok()) return s;
  if (auto s = env->SyncDir(tmp); !s.ok()) return s;
  return absl::OkStatus();
}

// Re-reads the built dir and checks it against the etcd dir; fills the
// counts of `st`.
absl::Status Verify(util::Env* env, const storage::EtcdDataDir& d,
                    const std::vector<raftpb::Entry>& entries, const std::string& tmp,
                    const util::Logger& log, ConvertStats* st) {
  auto fail = [](std::string what) {
    return absl::DataLossError(absl::StrCat("converted data dir check failed: ", what));
  };
  if (d.db != nullptr) {
    // The source as read once by ReadEtcdDataDir; the target is re-opened.
    uint64_t bolt_keys = 0;
    int64_t bolt_rev = 0;
    {
      auto s = d.db->ForEach(storage::kKeyBucket, [&](std::string_view k, std::string_view, bool b) {
        if (b) return true;
        ++bolt_keys;
        if (k.size() >= 8) bolt_rev = static_cast<int64_t>(storage::GetBigEndian64(k.data()));
        return true;
      });
      if (!s.ok() && !absl::IsNotFound(s)) return s;
    }
    storage::BackendOptions bopts;
    bopts.logger = log.WithComponent("backend");
    bopts.env = env;
    auto be = storage::Backend::Open(tmp + "/snap/db", bopts);
    if (!be.ok()) return be.status();
    auto rtx = (*be)->BeginRead();
    if (!rtx.ok()) return rtx.status();
    auto ci = (*rtx)->Get(storage::kMetaBucket, kConsistentIndexKey);
    if (!ci.ok()) return ci.status();
    const uint64_t got_ci =
        ci->has_value() && (*ci)->size() == 8 ? storage::GetBigEndian64((*ci)->data()) : 0;
    if (got_ci != d.consistent_index) {
      return fail(absl::StrCat("consistent index ", got_ci, ", etcd's ", d.consistent_index));
    }
    auto count = [&](std::string_view bucket, uint64_t* out) {
      auto n = (*rtx)->Count(bucket);
      if (!n.ok()) return n.status();
      *out = *n;
      return absl::OkStatus();
    };
    if (auto s = count(storage::kKeyBucket, &st->keys); !s.ok()) return s;
    if (auto s = count(storage::kLeaseBucket, &st->leases); !s.ok()) return s;
    if (auto s = count(storage::kAuthUsersBucket, &st->users); !s.ok()) return s;
    if (auto s = count(storage::kAuthRolesBucket, &st->roles); !s.ok()) return s;
    if (auto s = count(storage::kMembersBucket, &st->members); !s.ok()) return s;
    auto s = (*rtx)->ScanReverse(storage::kKeyBucket, "", "", [&](std::string_view k, std::string_view) {
      if (k.size() >= 8) st->revision = static_cast<int64_t>(storage::GetBigEndian64(k.data()));
      return false;
    });
    if (!s.ok()) return s;
    if (st->keys != bolt_keys || st->revision != bolt_rev) {
      return fail(absl::StrCat(st->keys, " key records at revision ", st->revision, ", etcd's ",
                               bolt_keys, " at ", bolt_rev));
    }
    if (st->members != d.members.size()) {
      return fail(absl::StrCat(st->members, " members, etcd's ", d.members.size()));
    }
  }
  wal::Options wopts;
  wopts.logger = log.WithComponent("wal");
  wal::WalSnapshot at;
  if (d.snapshot.has_value()) at = {d.snapshot->metadata().index(), d.snapshot->metadata().term()};
  auto w = wal::Wal::Open(env, tmp + "/wal", at, wopts);
  if (!w.ok()) return w.status();
  auto rr = (*w)->ReadAll();
  if (!rr.ok()) return rr.status();
  serverpb::WalMetadata md;
  if (!md.ParseFromString(rr->metadata) || md.member_id() != d.member_id ||
      md.cluster_id() != d.cluster_id) {
    return fail("WAL metadata does not name etcd's member and cluster");
  }
  if (rr->entries.size() != entries.size() || rr->hard_state.term() != d.hard_state.term() ||
      rr->hard_state.vote() != d.hard_state.vote() ||
      rr->hard_state.commit() != d.hard_state.commit()) {
    return fail(absl::StrCat("WAL has ", rr->entries.size(), " entries and commit ",
                             rr->hard_state.commit(), ", expected ", entries.size(), " and ",
                             d.hard_state.commit()));
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    if (rr->entries[i].index() != entries[i].index() || rr->entries[i].term() != entries[i].term() ||
        rr->entries[i].data() != entries[i].data()) {
      return fail(absl::StrCat("WAL entry ", entries[i].index(), " differs"));
    }
  }
  return (*w)->Close();
}

absl::StatusOr<ConvertStats> Convert(util::Env* env, const std::string& data_dir,
                                     const util::Logger& log) {
  const std::string member = data_dir + "/member";
  const std::string tmp = data_dir + "/" + kConvertTempDirName;
  const std::string backup = data_dir + "/" + kEtcdBackupDirName;
  if (env->FileExists(backup)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot convert the etcd data dir: ", backup,
        " exists (a backup of an earlier conversion); move it away first"));
  }
  auto d = storage::ReadEtcdDataDir(env, data_dir);
  if (!d.ok()) return Annotate(d.status(), "cannot read the etcd data dir");
  ConvertStats st;
  st.member_id = d->member_id;
  st.cluster_id = d->cluster_id;
  const uint64_t snap_index = d->snapshot.has_value() ? d->snapshot->metadata().index() : 0;
  log.Info("converting etcd data dir",
           {{"data-dir", data_dir},
            {"local-member-id", util::IdToHex(d->member_id)},
            {"cluster-id", util::IdToHex(d->cluster_id)},
            {"term", d->hard_state.term()},
            {"vote", util::IdToHex(d->hard_state.vote())},
            {"commit-index", d->hard_state.commit()},
            {"last-index", d->last_index},
            {"consistent-index", d->consistent_index},
            {"snapshot-index", snap_index},
            {"members", d->members.size()}});
  if (d->wal_torn) {
    // etcd itself cuts a torn last record on open (it was never synced).
    log.Warn("etcd WAL ends in a torn write; converting the records before it",
             {{"reason", d->wal_torn_reason}});
  }
  if (d->snapshot.has_value()) {
    // etcd's v2 store (JSON): keys under /1 are v2 API data, which cppetcd
    // (no v2 API) does not carry over.
    const nlohmann::json v2 = nlohmann::json::parse(d->snapshot->data(), nullptr, false);
    if (v2.is_object() && v2.contains("Root")) {
      const auto& root = v2["Root"];
      if (root.is_object() && root.contains("Children") && root["Children"].is_object() &&
          root["Children"].contains("1")) {
        const auto& user = root["Children"]["1"];
        if (user.is_object() && user.contains("Children") && user["Children"].is_object() &&
            !user["Children"].empty()) {
          log.Warn("etcd's v2 store holds v2 API keys; cppetcd has no v2 API and does not "
                   "convert them",
                   {{"top-level-keys", static_cast<uint64_t>(user["Children"].size())}});
        }
      }
    }
  }
  std::vector<raftpb::Entry> entries = d->entries;
  for (auto& e : entries) {
    std::string why;
    switch (TranslateEntry(&e, &why)) {
      case Translation::kKept: ++st.entries_kept; break;
      case Translation::kAttributes: ++st.entries_attributes; break;
      case Translation::kVersion: ++st.entries_version; break;
      case Translation::kConfChange: ++st.entries_conf_change; break;
      case Translation::kUntranslatable:
        if (e.index() > d->consistent_index) {
          return absl::FailedPreconditionError(absl::StrCat(
              "cannot convert the etcd data dir: raft entry ", e.index(), " (term ", e.term(),
              ", ", e.index() <= d->hard_state.commit() ? "committed" : "not committed",
              ") is ", why, " above the backend's consistent index ", d->consistent_index,
              ", which cppetcd cannot apply; start etcd once more on this data dir with "
              "--snapshot-count=1 until it logs \"saved snapshot\" (it then records all it "
              "applied), stop it, and start cppetcd again (the data dir is unchanged)"));
        }
        // In the backend already and skipped at apply on every member.
        if (e.type() == raftpb::EntryConfChange) {
          raftpb::ConfChange cc;
          (void)cc.ParseFromString(e.data());
          cc.clear_context();
          e.set_data(cc.SerializeAsString());
        } else {
          e.set_type(raftpb::EntryNormal);
          e.clear_data();
        }
        ++st.entries_blanked;
        log.Info("emptied an applied etcd entry cppetcd cannot decode",
                 {{"index", e.index()}, {"what", why}});
        break;
    }
  }
  st.entries = entries.size();
  for (const auto& e : entries) {
    if (e.index() > d->hard_state.commit()) {
      ++st.entries_uncommitted;
    } else if (e.index() > d->consistent_index) {
      ++st.entries_to_apply;
    }
  }
  if (auto s = BuildMemberDir(env, *d, entries, tmp, log); !s.ok()) {
    return Annotate(s, absl::StrCat("cannot build the converted member dir in ", tmp));
  }
  CPPETCD_CRASH_POINT("convert_after_build");
  if (auto s = Verify(env, *d, entries, tmp, log, &st); !s.ok()) return s;
  if (auto s = util::WriteFileAtomically(env, tmp + "/" + kConvertDoneMarker, "etcd 3.4\n");
      !s.ok()) {
    return s;
  }
  if (auto s = env->SyncDir(tmp); !s.ok()) return s;
  CPPETCD_CRASH_POINT("convert_before_backup_rename");
  if (auto s = env->RenameFile(member, backup); !s.ok()) return s;
  if (auto s = env->SyncDir(data_dir); !s.ok()) return s;
  CPPETCD_CRASH_POINT("convert_between_renames");
  if (auto s = env->RenameFile(tmp, member); !s.ok()) return s;
  if (auto s = env->SyncDir(data_dir); !s.ok()) return s;
  (void)env->RemoveFile(member + "/" + kConvertDoneMarker);
  st.converted = true;
  log.Info("converted etcd data dir",
           {{"data-dir", data_dir},
            {"backup", backup},
            {"local-member-id", util::IdToHex(st.member_id)},
            {"cluster-id", util::IdToHex(st.cluster_id)},
            {"revision", st.revision},
            {"key-records", st.keys},
            {"leases", st.leases},
            {"users", st.users},
            {"roles", st.roles},
            {"members", st.members},
            {"entries", st.entries},
            {"entries-kept", st.entries_kept},
            {"entries-member-attributes", st.entries_attributes},
            {"entries-cluster-version", st.entries_version},
            {"entries-conf-change", st.entries_conf_change},
            {"entries-emptied", st.entries_blanked},
            {"entries-committed-to-apply", st.entries_to_apply},
            {"entries-uncommitted", st.entries_uncommitted}});
  return st;
}

}  // namespace

absl::StatusOr<ConvertStats> PrepareDataDir(util::Env* env, const std::string& data_dir,
                                            const std::string& wal_dir, const util::Logger& log) {
  ConvertStats st;
  const std::string member = data_dir + "/member";
  const std::string tmp = data_dir + "/" + kConvertTempDirName;
  if (env->IsDirectory(tmp)) {
    if (env->FileExists(tmp + "/" + kConvertDoneMarker) && !env->FileExists(member)) {
      // Interrupted between the two renames: the new dir is complete (and
      // the only copy left if the backup was moved away meanwhile).
      log.Info("finishing an interrupted etcd data dir conversion", {{"data-dir", data_dir}});
      if (auto s = env->RenameFile(tmp, member); !s.ok()) return s;
      if (auto s = env->SyncDir(data_dir); !s.ok()) return s;
      (void)env->RemoveFile(member + "/" + kConvertDoneMarker);
      st.resumed = true;
    } else {
      // Interrupted before the etcd dir was moved: start over from it.
      log.Info("discarding an unfinished etcd data dir conversion", {{"path", tmp}});
      if (auto s = env->RemoveAll(tmp); !s.ok()) return s;
      if (auto s = env->SyncDir(data_dir); !s.ok()) return s;
      st.discarded_temp = true;
    }
  }
  auto format = storage::DetectDataDirFormat(env, data_dir, wal_dir);
  if (!format.ok()) return format.status();
  if (*format != storage::DataDirFormat::kEtcd) return st;
  if (!wal_dir.empty() && wal_dir != member + "/wal") {
    return absl::FailedPreconditionError(
        "cannot convert an etcd data dir with a separate --wal-dir: move the WAL to "
        "<data-dir>/member/wal and start without --wal-dir");
  }
  auto c = Convert(env, data_dir, log);
  if (!c.ok()) return c.status();
  c->discarded_temp = st.discarded_temp;
  return c;
}

}  // namespace cppetcd::server
