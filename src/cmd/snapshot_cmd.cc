// `cppetcd snapshot status|restore` (see snapshot_cmd.h). Procedure of the
// restore: etcd 3.4 clientv3/snapshot v3Manager.Restore (saveDB, then
// saveWALAndSnap), with cppetcd's data-dir formats (docs/formats-*.md).
#include "snapshot_cmd.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cppetcd/auth/store.h"
#include "cppetcd/server/etcd_backend_export.h"
#include "cppetcd/server/etcd_server.h"
#include "cppetcd/snap/snapshotter.h"
#include "cppetcd/storage/backend.h"
#include "cppetcd/storage/bbolt_reader.h"
#include "cppetcd/storage/lmdb_check.h"
#include "cppetcd/util/crc32c.h"
#include "cppetcd/util/env.h"
#include "cppetcd/util/log.h"
#include "cppetcd/wal/wal.h"
#include "raftpb/raft.pb.h"
#include "serverpb/internal.pb.h"

namespace cppetcd::cmd {
namespace {

namespace fs = std::filesystem;

constexpr size_t kShaSize = 32;
constexpr uint32_t kLmdbMagic = 0xBEEFC0DE;
constexpr int kExitError = 1;
constexpr int kExitBadFeature = 4;
constexpr int kExitBadArgs = 128;
constexpr char kConsistentIndexKey[] = "consistent_index";

enum class Format { kLmdb, kBbolt };

// etcd hasChecksum: the trailer is present iff size % 512 == 32.
bool HasChecksum(uint64_t size) { return size % 512 == kShaSize; }

absl::StatusOr<Format> DetectFormat(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("stat ", path, ": no such file or directory"));
  char head[32] = {};
  in.read(head, sizeof(head));
  std::string_view h(head, static_cast<size_t>(in.gcount()));
  if (storage::LooksLikeBbolt(h)) return Format::kBbolt;
  if (h.size() >= 20) {
    uint32_t magic;
    std::memcpy(&magic, h.data() + 16, 4);
    if (magic == kLmdbMagic) return Format::kLmdb;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": not a snapshot (neither an LMDB nor a bbolt database)"));
}

// Go's %v of a byte slice: "[1 2 3]".
std::string GoBytes(const unsigned char* p, size_t n) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < n; ++i) parts.push_back(absl::StrCat(p[i]));
  return absl::StrCat("[", absl::StrJoin(parts, " "), "]");
}

// Copies `src` to `dst` without the integrity trailer, checking it unless
// `skip_hash_check` (etcd saveDB's rules and messages).
absl::Status CopyVerified(const std::string& src, const std::string& dst, bool skip_hash_check,
                          bool* had_hash) {
  std::ifstream in(src, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("open ", src, ": no such file or directory"));
  std::error_code ec;
  const uint64_t size = fs::file_size(src, ec);
  if (ec) return absl::InternalError(absl::StrCat("stat ", src, ": ", ec.message()));
  const bool has_hash = HasChecksum(size);
  *had_hash = has_hash;
  if (!has_hash && !skip_hash_check) {
    return absl::FailedPreconditionError("snapshot missing hash but --skip-hash-check=false");
  }
  std::ofstream out(dst, std::ios::binary | std::ios::trunc);
  if (!out) return absl::InternalError(absl::StrCat("open ", dst, " for writing failed"));
  EVP_MD_CTX* sha = EVP_MD_CTX_new();
  EVP_DigestInit_ex(sha, EVP_sha256(), nullptr);
  uint64_t left = has_hash ? size - kShaSize : size;
  std::vector<char> buf(1 << 20);
  while (left > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
    in.read(buf.data(), static_cast<std::streamsize>(n));
    if (static_cast<size_t>(in.gcount()) != n) {
      EVP_MD_CTX_free(sha);
      return absl::DataLossError(absl::StrCat("read ", src, ": unexpected end of file"));
    }
    EVP_DigestUpdate(sha, buf.data(), n);
    out.write(buf.data(), static_cast<std::streamsize>(n));
    left -= n;
  }
  unsigned char got[EVP_MAX_MD_SIZE];
  unsigned int got_len = 0;
  EVP_DigestFinal_ex(sha, got, &got_len);
  EVP_MD_CTX_free(sha);
  out.flush();
  if (!out) return absl::InternalError(absl::StrCat("write ", dst, " failed"));
  out.close();
  if (has_hash && !skip_hash_check) {
    unsigned char want[kShaSize];
    in.read(reinterpret_cast<char*>(want), kShaSize);
    if (static_cast<size_t>(in.gcount()) != kShaSize) {
      return absl::DataLossError(absl::StrCat("read ", src, ": unexpected end of file"));
    }
    if (got_len != kShaSize || std::memcmp(want, got, kShaSize) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "expected sha256 ", GoBytes(want, kShaSize), ", got ", GoBytes(got, got_len)));
    }
  }
  return absl::OkStatus();
}

// A directory under $TMPDIR removed on destruction.
class ScratchDir {
 public:
  ScratchDir() {
    const char* t = getenv("TMPDIR");
    std::string tmpl = absl::StrCat(t != nullptr && *t != '\0' ? t : "/tmp", "/cppetcd-snap-XXXXXX");
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<std::string_view> SortedBuckets() {
  std::vector<std::string_view> b(std::begin(storage::kAllBuckets), std::end(storage::kAllBuckets));
  std::sort(b.begin(), b.end());
  return b;
}

// Accumulates etcd's status over (bucket, key, value) in order.
struct StatusAccumulator {
  SnapshotStatus st;
  void Bucket(std::string_view name) { st.hash = util::Crc32cExtend(st.hash, name.data(), name.size()); }
  void Record(std::string_view bucket, std::string_view k, std::string_view v) {
    st.hash = util::Crc32cExtend(st.hash, k.data(), k.size());
    st.hash = util::Crc32cExtend(st.hash, v.data(), v.size());
    if (bucket == storage::kKeyBucket && k.size() >= 8) {
      st.revision = static_cast<int64_t>(storage::GetBigEndian64(k.data()));
    }
    ++st.total_keys;
  }
};

// etcd humanize.Bytes (SI).
std::string HumanBytes(uint64_t s) {
  if (s < 10) return absl::StrCat(s, " B");
  const char* sizes[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
  const double e = std::floor(std::log(static_cast<double>(s)) / std::log(1000.0));
  const double val = std::floor(static_cast<double>(s) / std::pow(1000.0, e) * 10 + 0.5) / 10;
  // Two calls: clang checks StrFormat's format at compile time and refuses
  // one chosen at run time.
  const char* unit = sizes[static_cast<int>(e)];
  return val < 10 ? absl::StrFormat("%.1f %s", val, unit) : absl::StrFormat("%.0f %s", val, unit);
}

// Go tablewriter's centre padding (extra space on the right).
std::string Centre(const std::string& s, size_t width) {
  const size_t gap = width - s.size();
  return std::string(gap / 2, ' ') + s + std::string(gap - gap / 2, ' ');
}

struct NewMember {
  uint64_t id;
  serverpb::MemberRecord record;
};

}  // namespace

absl::StatusOr<SnapshotStatus> ComputeSnapshotStatus(const std::string& path) {
  auto format = DetectFormat(path);
  if (!format.ok()) return format.status();
  StatusAccumulator acc;
  if (*format == Format::kBbolt) {
    auto bolt = storage::BboltReader::Open(path);
    if (!bolt.ok()) return bolt.status();
    auto names = (*bolt)->ListBuckets();
    if (!names.ok()) return names.status();
    for (const std::string& name : *names) {
      acc.Bucket(name);
      auto s = (*bolt)->ForEach(name, [&](std::string_view k, std::string_view v, bool) {
        acc.Record(name, k, v);
        return true;
      });
      if (!s.ok()) return s;
    }
    acc.st.total_size = (*bolt)->SizeBytes();
    return acc.st;
  }
  ScratchDir scratch;
  if (scratch.path().empty()) return absl::InternalError("cannot create a temporary directory");
  const std::string copy = scratch.path() + "/db";
  bool had_hash = false;
  if (auto s = CopyVerified(path, copy, /*skip_hash_check=*/true, &had_hash); !s.ok()) return s;
  std::error_code ec;
  acc.st.total_size = static_cast<int64_t>(fs::file_size(copy, ec));
  if (auto s = storage::CheckLmdbFile(copy); !s.ok()) return s;
  storage::BackendOptions bopts;
  bopts.logger = util::GetLogger("backend");
  auto be = storage::Backend::Open(copy, bopts);
  if (!be.ok()) return be.status();
  auto rtx = (*be)->BeginRead();
  if (!rtx.ok()) return rtx.status();
  for (std::string_view name : SortedBuckets()) {
    if (storage::IsCppetcdOnlyBucket(name)) {
      auto n = (*rtx)->Count(name);
      if (!n.ok()) return n.status();
      if (*n == 0) continue;  // hash as etcd's layout (see kCppetcdOnlyBuckets)
    }
    acc.Bucket(name);
    auto s = (*rtx)->Scan(name, "", "", [&](std::string_view k, std::string_view v) {
      acc.Record(name, k, v);
      return true;
    });
    if (!s.ok()) return s;
  }
  return acc.st;
}

absl::StatusOr<std::string> FormatSnapshotStatus(const SnapshotStatus& st, std::string_view format) {
  const std::string hash = absl::StrFormat("%x", st.hash);
  const std::string size = HumanBytes(static_cast<uint64_t>(st.total_size));
  if (format == "simple") {
    return absl::StrCat(hash, ", ", st.revision, ", ", st.total_keys, ", ", size, "\n");
  }
  if (format == "json") {
    return absl::StrCat("{\"hash\":", st.hash, ",\"revision\":", st.revision,
                        ",\"totalKey\":", st.total_keys, ",\"totalSize\":", st.total_size, "}\n");
  }
  if (format == "fields") {
    return absl::StrCat("\"Hash\" : ", st.hash, "\n\"Revision\" : ", st.revision,
                        "\n\"Keys\" : ", st.total_keys, "\n\"Size\" : ", st.total_size, "\n");
  }
  if (format == "table") {
    const std::vector<std::string> hdr = {"HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"};
    const std::vector<std::string> row = {hash, absl::StrCat(st.revision),
                                          absl::StrCat(st.total_keys), size};
    std::string sep = "+", head = "|", line = "|";
    for (size_t i = 0; i < hdr.size(); ++i) {
      const size_t w = std::max(hdr[i].size(), row[i].size());
      sep += std::string(w + 2, '-') + "+";
      head += " " + Centre(hdr[i], w) + " |";
      line += " " + std::string(w - row[i].size(), ' ') + row[i] + " |";
    }
    return absl::StrCat(sep, "\n", head, "\n", sep, "\n", line, "\n", sep, "\n");
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown output format \"", std::string(format), "\""));
}

absl::Status RestoreSnapshot(const RestoreOptions& o) {
  // The new cluster (etcd types.NewURLsMap + VerifyBootstrap).
  std::map<std::string, std::vector<std::string>> cluster;
  for (absl::string_view item : absl::StrSplit(o.initial_cluster, ',', absl::SkipEmpty())) {
    std::vector<std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    if (kv.size() != 2 || kv[0].empty() || !absl::StrContains(kv[1], "://")) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid --initial-cluster entry \"", std::string(item), "\""));
    }
    cluster[kv[0]].push_back(kv[1]);
  }
  if (cluster.empty()) return absl::InvalidArgumentError("initial cluster unset");
  {
    std::vector<std::string> all;
    for (auto& [n, urls] : cluster) all.insert(all.end(), urls.begin(), urls.end());
    std::sort(all.begin(), all.end());
    if (std::adjacent_find(all.begin(), all.end()) != all.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("initial cluster ", o.initial_cluster, " has duplicate url"));
    }
  }
  auto self = cluster.find(o.name);
  if (self == cluster.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "couldn't find local name \"", o.name, "\" in the initial cluster configuration"));
  }
  {
    std::vector<std::string> adv = absl::StrSplit(o.initial_advertise_peer_urls, ',',
                                                  absl::SkipEmpty());
    std::vector<std::string> mine = self->second;
    std::sort(adv.begin(), adv.end());
    std::sort(mine.begin(), mine.end());
    if (adv != mine) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--initial-cluster has ", o.name, "=", absl::StrJoin(mine, ","),
          " but missing from --initial-advertise-peer-urls=", absl::StrJoin(adv, ","),
          " (failed to resolve urls: URLs do not match)"));
    }
  }
  std::vector<NewMember> members;
  for (const auto& [name, urls] : cluster) {
    NewMember m;
    m.id = server::ComputeMemberId(urls, o.initial_cluster_token);
    m.record.set_id(m.id);
    m.record.set_name(name);
    std::vector<std::string> sorted = urls;
    std::sort(sorted.begin(), sorted.end());
    for (const auto& u : sorted) m.record.add_peer_urls(u);
    members.push_back(std::move(m));
  }
  std::sort(members.begin(), members.end(),
            [](const NewMember& a, const NewMember& b) { return a.id < b.id; });
  std::vector<uint64_t> ids;
  for (const auto& m : members) ids.push_back(m.id);
  const uint64_t cluster_id = server::ComputeClusterId(ids);
  const uint64_t self_id = server::ComputeMemberId(self->second, o.initial_cluster_token);

  const std::string data_dir = o.data_dir.empty() ? o.name + ".etcd" : o.data_dir;
  if (fs::exists(data_dir)) return absl::AlreadyExistsError(absl::StrCat("data-dir \"", data_dir, "\" exists"));
  std::string wal_dir = o.wal_dir;
  if (wal_dir.empty()) {
    wal_dir = data_dir + "/member/wal";
  } else if (fs::exists(wal_dir)) {
    return absl::AlreadyExistsError(absl::StrCat("wal-dir \"", wal_dir, "\" exists"));
  }
  const std::string snap_dir = data_dir + "/member/snap";
  const std::string db_path = snap_dir + "/db";
  util::Logger lg = util::GetLogger("snapshot");
  lg.Info("restoring snapshot", {{"path", o.snapshot_path},
                                 {"wal-dir", wal_dir},
                                 {"data-dir", data_dir},
                                 {"snap-dir", snap_dir}});
  auto format = DetectFormat(o.snapshot_path);
  if (!format.ok()) return format.status();
  // Neither directory existed: on failure, remove what was made so that
  // the command can be run again.
  struct Cleanup {
    std::vector<std::string> dirs;
    bool done = false;
    ~Cleanup() {
      std::error_code ignored;
      if (!done) {
        for (const auto& d : dirs) fs::remove_all(d, ignored);
      }
    }
  } cleanup{{data_dir, wal_dir}};
  std::error_code ec;
  fs::create_directories(snap_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("mkdir ", snap_dir, ": ", ec.message()));

  // saveDB: the backend with the snapshot's data.
  const std::string staged = snap_dir + "/db.restore";
  bool had_hash = false;
  if (auto s = CopyVerified(o.snapshot_path, staged, o.skip_hash_check, &had_hash); !s.ok()) {
    fs::remove(staged, ec);
    return s;
  }
  std::unique_ptr<storage::BboltReader> bolt;
  if (*format == Format::kBbolt) {
    auto r = storage::BboltReader::Open(staged);
    fs::remove(staged, ec);
    if (!r.ok()) return r.status();
    bolt = std::move(*r);
  } else {
    if (auto s = storage::CheckLmdbFile(staged); !s.ok()) {
      fs::remove(staged, ec);
      return s;
    }
    fs::rename(staged, db_path, ec);
    if (ec) return absl::InternalError(absl::StrCat("rename ", staged, ": ", ec.message()));
  }
  const uint64_t commit = members.size();
  {
    storage::BackendOptions bopts;
    bopts.logger = util::GetLogger("backend");
    auto be = storage::Backend::Open(db_path, bopts);
    if (!be.ok()) return be.status();
    if (bolt != nullptr) {
      if (auto s = server::ImportEtcdBackend(*bolt, be->get(), lg); !s.ok()) return s;
      bolt.reset();
    }
    auto wtx = (*be)->BeginWrite();
    if (!wtx.ok()) return wtx.status();
    for (std::string_view bucket : {storage::kMembersBucket, storage::kMembersRemovedBucket}) {
      std::vector<std::string> keys;
      auto s = (*wtx)->Scan(bucket, "", "", [&](std::string_view k, std::string_view) {
        keys.emplace_back(k);
        return true;
      });
      if (!s.ok()) return s;
      for (const auto& k : keys) {
        if (auto d = (*wtx)->Delete(bucket, k); !d.ok()) return d;
      }
    }
    for (const auto& m : members) {
      if (auto s = (*wtx)->Put(storage::kMembersBucket, absl::StrFormat("%016x", m.id),
                               m.record.SerializeAsString());
          !s.ok()) {
        return s;
      }
    }
    if (auto s = (*wtx)->Put(storage::kMetaBucket, kConsistentIndexKey,
                             storage::EncodeBigEndian64(commit));
        !s.ok()) {
      return s;
    }
    if (auto s = (*wtx)->Commit(); !s.ok()) return s;
    if (auto s = (*be)->Sync(); !s.ok()) return s;
  }

  // saveWALAndSnap: the raft log of a cluster whose first N entries (the
  // AddNode conf changes) are committed and covered by a snapshot.
  util::Env* env = util::Env::Default();
  serverpb::WalMetadata md;
  md.set_member_id(self_id);
  md.set_cluster_id(cluster_id);
  wal::Options wopts;
  wopts.logger = util::GetLogger("wal");
  auto w = wal::Wal::Create(env, wal_dir, md.SerializeAsString(), wopts);
  if (!w.ok()) return w.status();
  std::vector<raftpb::Entry> entries;
  raftpb::ConfState cs;
  for (size_t i = 0; i < members.size(); ++i) {
    raftpb::ConfChange cc;
    cc.set_type(raftpb::ConfChangeAddNode);
    cc.set_node_id(members[i].id);
    cc.set_context(members[i].record.SerializeAsString());
    raftpb::Entry e;
    e.set_type(raftpb::EntryConfChange);
    e.set_term(1);
    e.set_index(i + 1);
    e.set_data(cc.SerializeAsString());
    entries.push_back(std::move(e));
    cs.add_voters(members[i].id);
  }
  raftpb::HardState hs;
  hs.set_term(1);
  hs.set_vote(members[0].id);
  hs.set_commit(commit);
  if (auto s = (*w)->Save(hs, entries, /*must_sync=*/true); !s.ok()) return s;
  raftpb::Snapshot snapshot;
  snapshot.mutable_metadata()->set_index(commit);
  snapshot.mutable_metadata()->set_term(1);
  *snapshot.mutable_metadata()->mutable_conf_state() = cs;
  snap::Snapshotter snapshotter(env, snap_dir, util::GetLogger("snap"));
  if (auto s = snapshotter.SaveSnap(snapshot); !s.ok()) return s;
  if (auto s = (*w)->SaveSnapshot({commit, 1}); !s.ok()) return s;
  if (auto s = (*w)->Close(); !s.ok()) return s;
  cleanup.done = true;
  lg.Info("restored snapshot", {{"path", o.snapshot_path},
                                {"wal-dir", wal_dir},
                                {"data-dir", data_dir},
                                {"snap-dir", snap_dir}});
  return absl::OkStatus();
}

int RunSnapshotCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  auto fail = [&](int code, const std::string& msg) {
    err << "Error: " << msg << "\n";
    return code;
  };
  if (args.empty() || (args[0] != "status" && args[0] != "restore")) {
    return fail(kExitBadArgs,
                "usage: cppetcd snapshot status FILE [-w simple|table|json|fields] | "
                "cppetcd snapshot restore FILE [--name] [--data-dir] [--wal-dir] "
                "[--initial-cluster] [--initial-cluster-token] [--initial-advertise-peer-urls] "
                "[--skip-hash-check] (`snapshot save` is online: use etcdctl)");
  }
  const bool restore = args[0] == "restore";
  std::vector<std::string> files;
  std::string write_out = "simple";
  RestoreOptions ro;
  std::map<std::string, std::string*> string_flags = {{"write-out", &write_out},
                                                      {"w", &write_out}};
  if (restore) {
    string_flags.insert({{"name", &ro.name},
                         {"data-dir", &ro.data_dir},
                         {"wal-dir", &ro.wal_dir},
                         {"initial-cluster", &ro.initial_cluster},
                         {"initial-cluster-token", &ro.initial_cluster_token},
                         {"initial-advertise-peer-urls", &ro.initial_advertise_peer_urls}});
  }
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() < 2 || a[0] != '-') {
      files.push_back(a);
      continue;
    }
    std::string name = a.substr(a[1] == '-' ? 2 : 1);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (restore && name == "skip-hash-check") {
      if (!value || *value == "true") {
        ro.skip_hash_check = true;
      } else if (*value == "false") {
        ro.skip_hash_check = false;
      } else {
        return fail(kExitBadArgs, absl::StrCat("invalid argument \"", *value,
                                               "\" for \"--skip-hash-check\" flag"));
      }
      continue;
    }
    auto f = string_flags.find(name);
    if (f == string_flags.end()) return fail(kExitBadArgs, absl::StrCat("unknown flag: ", a));
    if (!value) {
      if (i + 1 >= args.size()) {
        return fail(kExitBadArgs, absl::StrCat("flag needs an argument: ", a));
      }
      value = args[++i];
    }
    *f->second = *value;
  }
  if (files.size() != 1) {
    return fail(kExitBadArgs, absl::StrCat("snapshot ", args[0], " requires exactly one argument"));
  }
  if (!restore) {
    auto st = ComputeSnapshotStatus(files[0]);
    if (!st.ok()) return fail(kExitError, std::string(st.status().message()));
    auto text = FormatSnapshotStatus(*st, write_out);
    if (!text.ok()) return fail(kExitBadFeature, "unsupported output format");
    out << *text;
    return 0;
  }
  ro.snapshot_path = files[0];
  util::InitLogging(util::LogLevel::kInfo, "stderr");
  if (auto s = RestoreSnapshot(ro); !s.ok()) return fail(kExitError, std::string(s.message()));
  return 0;
}

}  // namespace cppetcd::cmd
