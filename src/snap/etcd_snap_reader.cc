// Reader of etcd's .snap files (see cppetcd/snap/etcd_snap.h). Facts from
// etcd 3.4's etcdserver/api/snap: snappb.Snapshot{crc = CRC-32C(data), data};
// files that are empty, have no data or a zero crc are "empty snapshots";
// names are tried in reverse sorted order; the restart path takes the newest
// whose (term, index) is a WAL snapshot marker at or below the commit.
#include "cppetcd/snap/etcd_snap.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cppetcd/util/crc32c.h"
#include "snappb/snap.pb.h"

namespace cppetcd::snap {

absl::StatusOr<raftpb::Snapshot> ReadEtcdSnapFile(util::Env* env, const std::string& path) {
  auto size = env->FileSize(path);
  if (!size.ok()) return size.status();
  if (*size > kEtcdMaxSnapFileBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("snap: ", path, " is ", *size, " bytes, more than the ", kEtcdMaxSnapFileBytes, " read"));
  }
  auto bytes = env->ReadFileToString(path);
  if (!bytes.ok()) return bytes.status();
  if (bytes->empty()) return absl::DataLossError(absl::StrCat("snap: empty snapshot: ", path, " is empty"));
  snappb::Snapshot file;
  if (!file.ParseFromString(*bytes)) {
    return absl::DataLossError(absl::StrCat("snap: ", path, " is not a snappb.Snapshot"));
  }
  if (file.data().empty() || file.crc() == 0) {
    return absl::DataLossError(absl::StrCat("snap: empty snapshot: ", path, " has no data or a zero crc"));
  }
  const uint32_t crc = util::Crc32c(file.data());
  if (crc != file.crc()) {
    return absl::DataLossError(
        absl::StrCat("snap: crc mismatch in ", path, ": stored ", file.crc(), ", computed ", crc));
  }
  raftpb::Snapshot snapshot;
  if (!snapshot.ParseFromString(file.data())) {
    return absl::DataLossError(absl::StrCat("snap: ", path, " does not hold a raftpb.Snapshot"));
  }
  return snapshot;
}

absl::StatusOr<EtcdSnapChoice> LoadNewestEtcdSnap(util::Env* env, const std::string& dir,
                                                 const std::vector<wal::WalSnapshot>& markers) {
  auto children = env->GetChildren(dir);
  if (!children.ok()) return children.status();
  std::vector<std::string> names;
  for (const std::string& c : *children) {
    if (c.size() > 5 && c.ends_with(".snap")) names.push_back(c);
  }
  std::sort(names.rbegin(), names.rend());
  EtcdSnapChoice out;
  for (const std::string& name : names) {
    auto s = ReadEtcdSnapFile(env, util::JoinPath(dir, name));
    if (!s.ok()) {
      out.skipped.push_back(absl::StrCat(name, ": ", s.status().message()));
      continue;
    }
    const auto& md = s->metadata();
    const bool marked = std::any_of(markers.begin(), markers.end(), [&](const wal::WalSnapshot& m) {
      return m.index == md.index() && m.term == md.term();
    });
    if (!marked) {
      out.skipped.push_back(absl::StrCat(name, ": no WAL snapshot marker (index ", md.index(), ", term ",
                                         md.term(), ") at or below the commit"));
      continue;
    }
    out.snapshot = *std::move(s);
    out.file = name;
    return out;
  }
  return out;
}

}  // namespace cppetcd::snap
