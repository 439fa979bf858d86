// Summary of an etcd data dir (see cppetcd/storage/etcd_data_dir.h).
#include "cppetcd/storage/etcd_data_dir.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cppetcd/snap/etcd_snap.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/storage/bbolt_reader.h"
#include "cppetcd/wal/etcd_wal.h"

namespace cppetcd::storage {
namespace {

constexpr uint32_t kLmdbMagic = 0xBEEFC0DE;  // mm_magic, after the 16-byte page header

enum class DbFormat { kNone, kBbolt, kLmdb };

std::string WalDir(const std::string& data_dir, const std::string& wal_dir) {
  return wal_dir.empty() ? util::JoinPath(data_dir, "member/wal") : wal_dir;
}

std::string SnapDir(const std::string& data_dir) { return util::JoinPath(data_dir, "member/snap"); }

absl::StatusOr<DbFormat> DetectDbFormat(util::Env* env, const std::string& path) {
  if (!env->FileExists(path)) return DbFormat::kNone;
  auto file = env->NewSequentialFile(path);
  if (!file.ok()) return file.status();
  std::string head;
  if (absl::Status s = (*file)->Read(32, &head); !s.ok()) return s;
  if (LooksLikeBbolt(head)) return DbFormat::kBbolt;
  if (head.size() >= 20) {
    uint32_t magic;
    std::memcpy(&magic, head.data() + 16, 4);
    if (magic == kLmdbMagic) return DbFormat::kLmdb;
  }
  return absl::DataLossError(absl::StrCat(path, " is neither a bbolt nor an LMDB database"));
}

// Keys of the members buckets are IDs in hex (etcd types.ID.String()).
absl::StatusOr<uint64_t> MemberKey(std::string_view key) {
  uint64_t id = 0;
  const bool hex_digits = std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
  if (key.empty() || key.size() > 16 || !hex_digits || !absl::SimpleHexAtoi(std::string(key), &id)) {
    return absl::DataLossError(absl::StrCat("etcd backend: member key \"", absl::CHexEscape(std::string(key)),
                                            "\" is not a hex member ID"));
  }
  return id;
}

// `key` names the member in errors; `id` is 0 when the JSON's "id" is the
// only source of the ID (a ConfChange context).
absl::StatusOr<EtcdMember> ParseMemberJson(std::string_view key, uint64_t id,
                                           std::string_view value) {
  EtcdMember m;
  m.id = id;
  m.json = std::string(value);
  const nlohmann::json j = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](std::string_view why) {
    return absl::DataLossError(absl::StrCat("etcd backend: member ", std::string(key), ": ", std::string(why)));
  };
  if (!j.is_object()) return bad("value is not a JSON object");
  auto strings = [&](const char* field, std::vector<std::string>* out) -> bool {
    auto it = j.find(field);
    if (it == j.end() || it->is_null()) return true;
    if (!it->is_array()) return false;
    for (const auto& u : *it) {
      if (!u.is_string()) return false;
      out->push_back(u.get<std::string>());
    }
    return true;
  };
  if (!strings("peerURLs", &m.peer_urls)) return bad("peerURLs is not a list of strings");
  if (!strings("clientURLs", &m.client_urls)) return bad("clientURLs is not a list of strings");
  if (auto it = j.find("name"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) return bad("name is not a string");
    m.name = it->get<std::string>();
  }
  if (auto it = j.find("isLearner"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) return bad("isLearner is not a boolean");
    m.is_learner = it->get<bool>();
  }
  if (auto it = j.find("id"); it != j.end()) {
    if (!it->is_number_unsigned()) return bad("id is not an unsigned number");
    if (id == 0) m.id = it->get<uint64_t>();
    if (it->get<uint64_t>() != m.id) return bad("id differs from the key");
  }
  return m;
}

absl::StatusOr<EtcdMember> ParseMember(std::string_view key, std::string_view value) {
  auto id = MemberKey(key);
  if (!id.ok()) return id.status();
  return ParseMemberJson(key, *id, value);
}

absl::Status ReadBackend(util::Env* env, const std::string& path, EtcdDataDir* out) {
  auto db = BboltReader::Open(path, env);
  if (!db.ok()) {
    return absl::Status(db.status().code(), absl::StrCat(path, ": ", db.status().message()));
  }
  out->db_path = path;
  out->db = std::shared_ptr<const BboltReader>(std::move(*db));
  absl::Status inner;
  absl::Status s = out->db->ForEach("meta", [&](std::string_view k, std::string_view v, bool) {
    if (k != "consistent_index") return true;
    if (v.size() != 8) {
      inner = absl::DataLossError(absl::StrCat(path, ": meta consistent_index is ", v.size(), " bytes, not 8"));
      return false;
    }
    out->consistent_index = GetBigEndian64(v.data());
    return true;
  });
  if (!s.ok() && !absl::IsNotFound(s)) return s;
  if (!inner.ok()) return inner;
  s = out->db->ForEach("members", [&](std::string_view k, std::string_view v, bool is_bucket) {
    if (is_bucket) return true;
    auto m = ParseMember(k, v);
    if (!m.ok()) {
      inner = m.status();
      return false;
    }
    out->members.push_back(*std::move(m));
    return true;
  });
  if (!s.ok() && !absl::IsNotFound(s)) return s;
  if (!inner.ok()) return inner;
  s = out->db->ForEach("members_removed", [&](std::string_view k, std::string_view, bool is_bucket) {
    if (is_bucket) return true;
    auto id = MemberKey(k);
    if (!id.ok()) {
      inner = id.status();
      return false;
    }
    out->removed_member_ids.push_back(*id);
    return true;
  });
  if (!s.ok() && !absl::IsNotFound(s)) return s;
  if (!inner.ok()) return inner;
  std::sort(out->members.begin(), out->members.end(),
            [](const EtcdMember& a, const EtcdMember& b) { return a.id < b.id; });
  std::sort(out->removed_member_ids.begin(), out->removed_member_ids.end());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DataDirFormat> DetectDataDirFormat(util::Env* env, const std::string& data_dir,
                                                  const std::string& wal_dir) {
  auto wal = wal::DetectWalFormat(env, WalDir(data_dir, wal_dir));
  if (!wal.ok()) return wal.status();
  const std::string db_path = util::JoinPath(SnapDir(data_dir), "db");
  auto db = DetectDbFormat(env, db_path);
  if (!db.ok()) return db.status();
  switch (*wal) {
    case wal::WalFormat::kNone:
      if (*db == DbFormat::kBbolt) {
        return absl::FailedPreconditionError(
            absl::StrCat(db_path, " is an etcd (bbolt) backend but ", WalDir(data_dir, wal_dir),
                         " has no WAL segments"));
      }
      return DataDirFormat::kNone;
    case wal::WalFormat::kEtcd:
      if (*db == DbFormat::kLmdb) {
        return absl::FailedPreconditionError(absl::StrCat(
            "mixed data dir: ", WalDir(data_dir, wal_dir), " is etcd's WAL but ", db_path, " is cppetcd's LMDB"));
      }
      return DataDirFormat::kEtcd;
    case wal::WalFormat::kCppetcd:
      if (*db == DbFormat::kBbolt) {
        return absl::FailedPreconditionError(absl::StrCat(
            "mixed data dir: ", WalDir(data_dir, wal_dir), " is cppetcd's WAL but ", db_path, " is etcd's bbolt"));
      }
      return DataDirFormat::kCppetcd;
  }
  return absl::InternalError("unreachable");
}

absl::StatusOr<EtcdDataDir> ReadEtcdDataDir(util::Env* env, const std::string& data_dir, const std::string& wal_dir) {
  auto format = DetectDataDirFormat(env, data_dir, wal_dir);
  if (!format.ok()) return format.status();
  if (*format != DataDirFormat::kEtcd) {
    return absl::FailedPreconditionError(absl::StrCat(data_dir, " is not an etcd data dir"));
  }
  const std::string wdir = WalDir(data_dir, wal_dir);
  const std::string sdir = SnapDir(data_dir);
  EtcdDataDir out;

  auto markers = wal::EtcdWalValidSnapshots(env, wdir);
  if (!markers.ok()) return markers.status();
  out.wal_snapshots = *markers;
  wal::WalSnapshot start;
  if (env->IsDirectory(sdir)) {
    auto choice = snap::LoadNewestEtcdSnap(env, sdir, *markers);
    if (!choice.ok()) return choice.status();
    out.skipped_snapshot_files = std::move(choice->skipped);
    if (choice->snapshot.has_value()) {
      start = wal::WalSnapshot{choice->snapshot->metadata().index(), choice->snapshot->metadata().term()};
      out.snapshot = std::move(choice->snapshot);
      out.snapshot_file = std::move(choice->file);
    }
  }

  auto log = wal::ReadEtcdWal(env, wdir, start);
  if (!log.ok()) return log.status();
  out.member_id = log->member_id;
  out.cluster_id = log->cluster_id;
  out.hard_state = log->hard_state;
  out.entries = std::move(log->entries);
  out.wal_torn = log->torn;
  out.wal_torn_reason = std::move(log->torn_reason);
  out.wal_segments = std::move(log->segments);
  out.last_index = out.entries.empty() ? start.index : out.entries.back().index();
  if (out.hard_state.commit() > out.last_index) {
    return absl::FailedPreconditionError(absl::StrCat("etcd data dir ", data_dir, ": commit ",
                                                      out.hard_state.commit(), " is out of range [last index ",
                                                      out.last_index, "]: the WAL lost entries"));
  }

  const std::string db_path = util::JoinPath(sdir, "db");
  if (env->FileExists(db_path)) {
    if (absl::Status s = ReadBackend(env, db_path, &out); !s.ok()) return s;
  }
  if (out.snapshot.has_value() && out.consistent_index < start.index) {
    // etcd's recoverSnapshotBackend: a backend behind the snapshot is
    // replaced by the snapshot's database received from the leader.
    const std::string snap_db = util::JoinPath(sdir, absl::StrFormat("%016x.snap.db", start.index));
    if (!env->FileExists(snap_db)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "etcd data dir ", data_dir, ": the backend's consistent index ", out.consistent_index,
          " is behind the snapshot at ", start.index, " and ", snap_db, " does not exist"));
    }
    out.db_path.clear();
    out.db.reset();
    out.consistent_index = 0;
    out.members.clear();
    out.removed_member_ids.clear();
    if (absl::Status s = ReadBackend(env, snap_db, &out); !s.ok()) return s;
  }
  return out;
}

absl::StatusOr<EtcdMember> ParseEtcdMemberJson(std::string_view json) {
  auto m = ParseMemberJson("(conf change context)", 0, json);
  if (!m.ok()) return m.status();
  if (m->id == 0) return absl::DataLossError("etcd member JSON has no id");
  return m;
}

}  // namespace cppetcd::storage
