// Snapshot file format: the file `<term:016x>-<index:016x>.snap` holds one
// serialized snappb.Snapshot {crc = CRC-32C of data, data = serialized
// raftpb.Snapshot}. Files are written to `<name>.tmp`, fsynced, renamed and
// the directory fsynced, so a name only ever refers to a complete file. A
// file that fails its check is renamed to `<name>.broken` and skipped.
#include "cppetcd/snap/snapshotter.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cppetcd/util/crc32c.h"
#include "cppetcd/util/error.h"
#include "snappb/snap.pb.h"

namespace cppetcd::snap {
namespace {

constexpr std::string_view kSuffix = ".snap";
constexpr std::string_view kNoSnapshotMessage = "snap: no available snapshot";

// Parses `<term:016x>-<index:016x>.snap`.
bool ParseSnapName(std::string_view name, uint64_t* term, uint64_t* index) {
  if (name.size() != 33 + kSuffix.size() || name[16] != '-' || !name.ends_with(kSuffix)) return false;
  auto hex = [](std::string_view s, uint64_t* v) {
    for (char c : s) {
      if (!absl::ascii_isdigit(static_cast<unsigned char>(c)) && (c < 'a' || c > 'f')) return false;
    }
    return absl::SimpleHexAtoi(absl::string_view(s.data(), s.size()), v);
  };
  return hex(name.substr(0, 16), term) && hex(name.substr(17, 16), index);
}

}  // namespace

absl::Status ErrNoSnapshot() {
  return util::MakeError(absl::StatusCode::kNotFound, util::ErrorCode::kNoSnapshot,
                         kNoSnapshotMessage);
}
bool IsNoSnapshot(const absl::Status& status) {
  return util::HasErrorCode(status, util::ErrorCode::kNoSnapshot);
}

std::string SnapFileName(uint64_t term, uint64_t index) { return absl::StrFormat("%016x-%016x.snap", term, index); }

Snapshotter::Snapshotter(util::Env* env, std::string dir, util::Logger logger)
    : env_(env), dir_(std::move(dir)), logger_(std::move(logger)) {}

absl::Status Snapshotter::SaveSnap(const raftpb::Snapshot& snapshot) {
  if (snapshot.metadata().index() == 0) return absl::InvalidArgumentError("snap: empty snapshot");
  snappb::Snapshot file;
  file.set_data(snapshot.SerializeAsString());
  file.set_crc(util::Crc32c(file.data()));
  const std::string path =
      util::JoinPath(dir_, SnapFileName(snapshot.metadata().term(), snapshot.metadata().index()));
  return util::WriteFileAtomically(env_, path, file.SerializeAsString());
}

absl::StatusOr<std::vector<std::string>> Snapshotter::SnapNames() const {
  auto children = env_->GetChildren(dir_);
  if (!children.ok()) return children.status();
  std::vector<std::string> names;
  uint64_t term, index;
  for (const std::string& c : *children) {
    if (ParseSnapName(c, &term, &index)) names.push_back(c);
  }
  // Fixed-width hex: name order is (term, index) order.
  std::sort(names.rbegin(), names.rend());
  return names;
}

absl::Status Snapshotter::Purge(size_t keep) {
  auto names = SnapNames();
  if (!names.ok()) return names.status();
  std::vector<std::string> doomed;
  for (size_t i = std::max<size_t>(keep, 1); i < names->size(); ++i) doomed.push_back((*names)[i]);
  auto children = env_->GetChildren(dir_);
  if (!children.ok()) return children.status();
  uint64_t term, index;
  for (const std::string& c : *children) {
    if (c.ends_with(".tmp") && ParseSnapName(std::string_view(c).substr(0, c.size() - 4), &term, &index)) {
      doomed.push_back(c);
    }
  }
  if (doomed.empty()) return absl::OkStatus();
  for (const std::string& name : doomed) {
    const std::string path = util::JoinPath(dir_, name);
    if (absl::Status s = env_->RemoveFile(path); !s.ok()) return s;
    logger_.Info("removed old snapshot file", {{"path", path}});
  }
  return env_->SyncDir(dir_);
}

absl::StatusOr<raftpb::Snapshot> Snapshotter::Read(const std::string& name) const {
  const std::string path = util::JoinPath(dir_, name);
  auto bytes = env_->ReadFileToString(path);
  if (!bytes.ok()) return bytes.status();
  snappb::Snapshot file;
  if (bytes->empty() || !file.ParseFromString(*bytes)) {
    return absl::DataLossError(absl::StrCat("snap: undecodable snapshot file ", path));
  }
  if (util::Crc32c(file.data()) != file.crc()) {
    return absl::DataLossError(absl::StrCat("snap: CRC mismatch in ", path));
  }
  raftpb::Snapshot snapshot;
  if (!snapshot.ParseFromString(file.data())) {
    return absl::DataLossError(absl::StrCat("snap: undecodable raft snapshot in ", path));
  }
  uint64_t term, index;
  ParseSnapName(name, &term, &index);
  if (snapshot.metadata().term() != term || snapshot.metadata().index() != index) {
    return absl::DataLossError(absl::StrCat("snap: ", path, " holds the snapshot at term ",
                                            snapshot.metadata().term(), " index ", snapshot.metadata().index()));
  }
  return snapshot;
}

absl::StatusOr<raftpb::Snapshot> Snapshotter::LoadMatching(const std::vector<wal::WalSnapshot>* walsnaps) {
  auto names = SnapNames();
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    uint64_t term, index;
    ParseSnapName(name, &term, &index);
    if (walsnaps != nullptr &&
        std::find(walsnaps->begin(), walsnaps->end(), wal::WalSnapshot{index, term}) == walsnaps->end()) {
      continue;
    }
    auto snapshot = Read(name);
    if (snapshot.ok()) return snapshot;
    if (!absl::IsDataLoss(snapshot.status())) return snapshot.status();
    const std::string path = util::JoinPath(dir_, name);
    logger_.Warn("failed to read a snapshot file; renaming it to .broken",
                 {{"path", path}, {"error", snapshot.status().ToString()}});
    if (absl::Status s = env_->RenameFile(path, path + ".broken"); !s.ok()) {
      logger_.Warn("failed to rename a broken snapshot file", {{"path", path}, {"error", s.ToString()}});
    }
  }
  return ErrNoSnapshot();
}

absl::StatusOr<raftpb::Snapshot> Snapshotter::Load() { return LoadMatching(nullptr); }

absl::StatusOr<raftpb::Snapshot> Snapshotter::LoadNewestAvailable(const std::vector<wal::WalSnapshot>& walsnaps) {
  return LoadMatching(&walsnaps);
}

}  // namespace cppetcd::snap
