// cppetcd backend -> etcd 3.4 bbolt buckets (see etcd_backend_export.h).
#include "cppetcd/server/etcd_backend_export.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "authpb/auth.pb.h"
#include "cppetcd/auth/store.h"
#include "serverpb/internal.pb.h"

namespace cppetcd::server {
namespace {

constexpr std::string_view kClusterVersionKey = "clusterVersion";
constexpr std::string_view kClusterVersionValue = "3.4.0";

// etcd's buckets in bbolt's (bytewise) order.
constexpr std::string_view kEtcdBuckets[] = {
    storage::kAlarmBucket,   storage::kAuthBucket,    storage::kAuthRolesBucket,
    storage::kAuthUsersBucket, storage::kClusterBucket, storage::kKeyBucket,
    storage::kLeaseBucket,   storage::kMembersBucket, storage::kMembersRemovedBucket,
    storage::kMetaBucket};

// Go strconv.FormatUint(id, 16): etcd's types.ID.String(), its member key.
std::string IdKey(uint64_t id) { return absl::StrFormat("%x", id); }

// cppetcd's member key (%016x) back to the id.
absl::StatusOr<uint64_t> ParseIdKey(std::string_view k) {
  uint64_t id = 0;
  const auto [end, ec] = std::from_chars(k.data(), k.data() + k.size(), id, 16);
  if (k.empty() || k.size() > 16 || ec != std::errc() || end != k.data() + k.size()) {
    return absl::DataLossError(absl::StrCat("bad member key \"", std::string(k), "\""));
  }
  return id;
}

// Appends Go encoding/json's quoting of `s` (HTML-safe escaping of <, >, &;
// U+2028/U+2029 escaped; invalid UTF-8 replaced by U+FFFD).
void AppendJsonString(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c == '"' || c == '\\') {
        out->push_back('\\');
        out->push_back(static_cast<char>(c));
      } else if (c == '\n') {
        out->append("\\n");
      } else if (c == '\r') {
        out->append("\\r");
      } else if (c == '\t') {
        out->append("\\t");
      } else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
        out->append("\\u00");
        out->push_back(kHex[c >> 4]);
        out->push_back(kHex[c & 0xf]);
      } else {
        out->push_back(static_cast<char>(c));
      }
      ++i;
      continue;
    }
    // A UTF-8 sequence: its length and whether it is valid (shortest form,
    // no surrogates, at most U+10FFFF).
    size_t n = 0;
    uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 2, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 3, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4, cp = c & 0x07;
    }
    bool ok = n != 0 && i + n <= s.size();
    for (size_t j = 1; ok && j < n; ++j) {
      const auto cc = static_cast<unsigned char>(s[i + j]);
      ok = (cc & 0xC0) == 0x80;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (ok) {
      ok = !(n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) &&
           !(n == 4 && (cp < 0x10000 || cp > 0x10FFFF));
    }
    if (!ok) {
      out->append("\\ufffd");
      ++i;
      continue;
    }
    if (cp == 0x2028 || cp == 0x2029) {
      out->append(cp == 0x2028 ? "\\u2028" : "\\u2029");
    } else {
      out->append(s.substr(i, n));
    }
    i += n;
  }
  out->push_back('"');
}

void AppendJsonStrings(std::string* out, const std::vector<std::string>& v) {
  if (v.empty()) {  // Go marshals a nil slice as null
    out->append("null");
    return;
  }
  out->push_back('[');
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out->push_back(',');
    AppendJsonString(out, v[i]);
  }
  out->push_back(']');
}

// Copies bucket `name` as stored.
absl::Status CopyBucket(storage::ReadTxn* rtx, storage::BboltWriter* w, std::string_view name) {
  absl::Status err;
  absl::Status s = rtx->Scan(name, "", "", [&](std::string_view k, std::string_view v) {
    err = w->Put(k, v);
    return err.ok();
  });
  return s.ok() ? err : s;
}

absl::Status WriteMeta(storage::ReadTxn* rtx, storage::BboltWriter* w) {
  absl::Status err;
  absl::Status s = rtx->Scan(storage::kMetaBucket, "", "", [&](std::string_view k, std::string_view v) {
    if ((k == "scheduledCompactRev" || k == "finishedCompactRev") && v.size() == 8) {
      // etcd's revToBytes(revision{main}): main, '_', sub 0.
      std::string rev(17, '\0');
      std::memcpy(rev.data(), v.data(), 8);
      rev[8] = '_';
      err = w->Put(k, rev);
    } else {
      err = w->Put(k, v);
    }
    return err.ok();
  });
  return s.ok() ? err : s;
}

// Writes `kvs` (a map, so sorted by key as the writer needs) into the open
// bucket.
template <class SortedMap>
absl::Status PutAll(const SortedMap& kvs, storage::BboltWriter* w) {
  for (const auto& [k, v] : kvs) {
    if (absl::Status p = w->Put(k, v); !p.ok()) return p;
  }
  return absl::OkStatus();
}

absl::Status WriteCluster(storage::ReadTxn* rtx, storage::BboltWriter* w) {
  std::map<std::string, std::string, std::less<>> kvs;  // a handful of entries
  absl::Status s = rtx->Scan(storage::kClusterBucket, "", "",
                             [&](std::string_view k, std::string_view v) {
                               kvs.emplace(std::string(k), std::string(v));
                               return true;
                             });
  if (!s.ok()) return s;
  kvs.emplace(std::string(kClusterVersionKey), std::string(kClusterVersionValue));
  return PutAll(kvs, w);
}

absl::Status WriteMembers(storage::ReadTxn* rtx, storage::BboltWriter* w) {
  std::map<std::string, std::string> kvs;  // etcd key -> JSON; one per member
  absl::Status bad;
  absl::Status s = rtx->Scan(storage::kMembersBucket, "", "", [&](std::string_view k,
                                                                  std::string_view v) {
    serverpb::MemberRecord m;
    if (!m.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
      bad = absl::DataLossError(absl::StrCat("undecodable member record ", std::string(k)));
      return false;
    }
    kvs[IdKey(m.id())] = EtcdMemberJson(
        m.id(), {m.peer_urls().begin(), m.peer_urls().end()}, m.is_learner(), m.name(),
        {m.client_urls().begin(), m.client_urls().end()});
    return true;
  });
  if (!s.ok()) return s;
  if (!bad.ok()) return bad;
  return PutAll(kvs, w);
}

absl::Status WriteMembersRemoved(storage::ReadTxn* rtx, storage::BboltWriter* w) {
  std::map<std::string, std::string> kvs;
  absl::Status bad;
  absl::Status s = rtx->Scan(storage::kMembersRemovedBucket, "", "",
                             [&](std::string_view k, std::string_view v) {
                               auto id = ParseIdKey(k);
                               if (!id.ok()) {
                                 bad = id.status();
                                 return false;
                               }
                               kvs[IdKey(*id)] = std::string(v);
                               return true;
                             });
  if (!s.ok()) return s;
  if (!bad.ok()) return bad;
  return PutAll(kvs, w);
}

// The name-keyed auth bucket merged with its hashed twin, by full name.
template <class Record>
absl::Status WriteAuthRecords(storage::ReadTxn* rtx, storage::BboltWriter* w,
                              std::string_view bucket, std::string_view hashed_bucket) {
  std::vector<std::pair<std::string, std::string>> hashed;  // (name, key in hashed_bucket)
  absl::Status bad;
  absl::Status s = rtx->Scan(hashed_bucket, "", "", [&](std::string_view k, std::string_view v) {
    Record r;
    if (!r.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
      bad = absl::DataLossError(
          absl::StrCat("undecodable record in ", std::string(hashed_bucket)));
      return false;
    }
    hashed.emplace_back(r.name(), std::string(k));
    return true;
  });
  if (!s.ok()) return s;
  if (!bad.ok()) return bad;
  std::sort(hashed.begin(), hashed.end());
  size_t next = 0;
  // Writes the hashed records whose names sort before `limit` (all of them
  // when `all`).
  auto flush_hashed = [&](std::string_view limit, bool all) -> absl::Status {
    for (; next < hashed.size() && (all || std::string_view(hashed[next].first) < limit); ++next) {
      auto v = rtx->Get(hashed_bucket, hashed[next].second);
      if (!v.ok()) return v.status();
      if (!v->has_value()) return absl::DataLossError("hashed auth record vanished");
      if (absl::Status p = w->Put(hashed[next].first, **v); !p.ok()) return p;
    }
    return absl::OkStatus();
  };
  absl::Status err;
  s = rtx->Scan(bucket, "", "", [&](std::string_view k, std::string_view v) {
    err = flush_hashed(k, false);
    if (err.ok()) err = w->Put(k, v);
    return err.ok();
  });
  if (!s.ok()) return s;
  if (!err.ok()) return err;
  return flush_hashed({}, true);
}

}  // namespace

std::string EtcdMemberJson(uint64_t id, const std::vector<std::string>& peer_urls,
                           bool is_learner, const std::string& name,
                           const std::vector<std::string>& client_urls) {
  std::string out = absl::StrCat("{\"id\":", id, ",\"peerURLs\":");
  AppendJsonStrings(&out, peer_urls);
  if (is_learner) out.append(",\"isLearner\":true");
  if (!name.empty()) {
    out.append(",\"name\":");
    AppendJsonString(&out, name);
  }
  if (!client_urls.empty()) {
    out.append(",\"clientURLs\":");
    AppendJsonStrings(&out, client_urls);
  }
  out.push_back('}');
  return out;
}

absl::Status ExportEtcdBackend(storage::ReadTxn* rtx, storage::BboltWriter* w) {
  for (std::string_view bucket : kEtcdBuckets) {
    if (absl::Status s = w->BeginBucket(bucket); !s.ok()) return s;
    absl::Status s;
    if (bucket == storage::kMetaBucket) {
      s = WriteMeta(rtx, w);
    } else if (bucket == storage::kClusterBucket) {
      s = WriteCluster(rtx, w);
    } else if (bucket == storage::kMembersBucket) {
      s = WriteMembers(rtx, w);
    } else if (bucket == storage::kMembersRemovedBucket) {
      s = WriteMembersRemoved(rtx, w);
    } else if (bucket == storage::kAuthUsersBucket) {
      s = WriteAuthRecords<authpb::User>(rtx, w, bucket, storage::kAuthUsersHashedBucket);
    } else if (bucket == storage::kAuthRolesBucket) {
      s = WriteAuthRecords<authpb::Role>(rtx, w, bucket, storage::kAuthRolesHashedBucket);
    } else {
      s = CopyBucket(rtx, w, bucket);
    }
    if (!s.ok()) return s;
    if (absl::Status e = w->EndBucket(); !e.ok()) return e;
  }
  return absl::OkStatus();
}

absl::Status ImportEtcdBackend(const storage::BboltReader& bolt, storage::Backend* be,
                               const util::Logger& log) {
  auto names = bolt.ListBuckets();
  if (!names.ok()) return names.status();
  auto wtx = be->BeginWrite();
  if (!wtx.ok()) return wtx.status();
  for (const std::string& name : *names) {
    if (name == storage::kMembersBucket || name == storage::kMembersRemovedBucket) continue;
    if (std::find(std::begin(storage::kAllBuckets), std::end(storage::kAllBuckets), name) ==
        std::end(storage::kAllBuckets)) {
      log.Warn("skipping unknown bucket", {{"bucket", name}});
      continue;
    }
    absl::Status err;
    auto s = bolt.ForEach(name, [&](std::string_view k, std::string_view v, bool is_bucket) {
      if (is_bucket) return true;
      std::string value(v);
      if (name == storage::kMetaBucket &&
          (k == "scheduledCompactRev" || k == "finishedCompactRev") && v.size() >= 8) {
        value = std::string(v.substr(0, 8));  // etcd's 17-byte revision -> 8-byte main
      }
      if (name == storage::kAuthUsersBucket || name == storage::kAuthRolesBucket) {
        // bbolt takes names LMDB cannot key on: the auth store's layout.
        err = auth::PutAuthRecord(wtx->get(), name, k, value);
      } else {
        err = (*wtx)->Put(name, k, value);
      }
      return err.ok();
    });
    if (!s.ok()) return s;
    if (!err.ok()) return err;
  }
  return (*wtx)->Commit();
}

}  // namespace cppetcd::server
