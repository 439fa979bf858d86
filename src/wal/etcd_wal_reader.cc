// Decoder of etcd's WAL (see cppetcd/wal/etcd_wal.h). Facts from etcd 3.4's
// wal package: frames of a little-endian length word (low 56 bits: size; top
// byte 0x80 | padding when padded to 8 bytes) and a walpb.Record; CRC-32C
// chained over record data, restarted by the CRC record at each segment head;
// a zero length word is preallocated space; a frame that fails in the last
// segment and has an all-zero 512-byte sector is a torn write.
#include "cppetcd/wal/etcd_wal.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cppetcd/util/crc32c.h"
#include "src/wal/segment_name.h"
#include "walpb/etcd.pb.h"
#include "walpb/record.pb.h"

namespace cppetcd::wal {
namespace {

constexpr uint64_t kFrameWordBytes = 8;
constexpr uint64_t kSectorBytes = 512;  // etcd minSectorSize
constexpr uint64_t kSizeMask = (uint64_t{1} << 56) - 1;

uint64_t LoadLe64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

bool AllZero(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == 0; });
}

// etcd's isTornEntry: the frame body [begin, end) of the file, split at
// 512-byte sector boundaries of the file, has a piece that is all zeros (a
// sector the disk never got).
bool HasZeroSector(std::string_view data, uint64_t begin, uint64_t end) {
  for (uint64_t at = begin; at < end;) {
    const uint64_t stop = std::min(end, (at / kSectorBytes + 1) * kSectorBytes);
    if (AllZero(data.substr(at, stop - at))) return true;
    at = stop;
  }
  return false;
}

absl::Status Damage(std::string_view name, uint64_t offset, std::string_view what) {
  return absl::DataLossError(
      absl::StrCat("wal: ", std::string(what), " in etcd WAL segment ", std::string(name), " at offset ", offset));
}

template <class Message>
absl::Status Parse(const EtcdRecord& r, std::string_view segment, std::string_view what, Message* m) {
  if (m->ParseFromString(r.data)) return absl::OkStatus();
  return Damage(segment, r.offset, absl::StrCat("undecodable ", std::string(what), " record"));
}

// Scans segments names[first..] of `dir` in order, chaining the CRC across
// them, and hands every record to `fn`. The last segment's torn tail is
// reported in `*torn`/`*torn_reason`.
template <class Fn>
absl::Status Walk(util::Env* env, const std::string& dir, const std::vector<std::string>& names, size_t first,
                  Fn&& fn, bool* torn, std::string* torn_reason) {
  std::optional<uint32_t> crc;
  for (size_t i = first; i < names.size(); ++i) {
    const std::string path = util::JoinPath(dir, names[i]);
    auto size = env->FileSize(path);
    if (!size.ok()) return size.status();
    if (*size > kEtcdMaxSegmentBytes) {
      return absl::DataLossError(absl::StrCat("wal: etcd WAL segment ", path, " is ", *size,
                                              " bytes, more than the ", kEtcdMaxSegmentBytes, " a segment can be"));
    }
    auto data = env->ReadFileToString(path);
    if (!data.ok()) return data.status();
    const bool is_last = i + 1 == names.size();
    auto scan = ScanEtcdSegment(*data, path, crc, is_last);
    if (!scan.ok()) return scan.status();
    for (const EtcdRecord& r : scan->records) {
      if (absl::Status s = fn(r, path); !s.ok()) return s;
    }
    // A segment without records (an all-zero last one) leaves the chain as it was.
    if (!scan->records.empty()) crc = scan->crc;
    if (scan->torn) {
      *torn = true;
      *torn_reason = absl::StrCat(path, " at offset ", scan->valid_end, ": ", scan->torn_reason);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<EtcdSegmentScan> ScanEtcdSegment(std::string_view data, std::string_view name,
                                                std::optional<uint32_t> prev_crc, bool is_last) {
  EtcdSegmentScan out;
  uint32_t crc = 0;
  uint64_t off = 0;
  auto end_torn = [&](std::string reason) {
    out.torn = true;
    out.torn_reason = std::move(reason);
  };
  while (off < data.size()) {
    if (data.size() - off < kFrameWordBytes) {
      if (AllZero(data.substr(off))) break;
      if (!is_last) return Damage(name, off, "file ends inside a length word");
      end_torn("the file ends inside a length word");
      break;
    }
    const uint64_t word = LoadLe64(data.data() + off);
    if (word == 0) {  // the end of what was written: preallocated zeros follow
      if (!AllZero(data.substr(off))) {
        if (!is_last) return Damage(name, off, "non-zero bytes after the end of the records");
        end_torn("non-zero bytes after a zero length word");
      }
      break;
    }
    const uint8_t top = static_cast<uint8_t>(word >> 56);
    const uint64_t rec_bytes = word & kSizeMask;
    uint64_t pad_bytes = 0;
    if (top != 0) {
      if ((top & 0xF8) != 0x80 || (top & 0x07) == 0) return Damage(name, off, "invalid frame length word");
      pad_bytes = top & 0x07;
    }
    if (rec_bytes + pad_bytes >= kEtcdMaxRecordBytes) {
      return Damage(name, off,
                    absl::StrCat("wal: max entry size limit exceeded (a ", rec_bytes, "-byte record)"));
    }
    const uint64_t body = off + kFrameWordBytes;
    const uint64_t frame_end = body + rec_bytes + pad_bytes;
    if (frame_end > data.size()) {
      if (!is_last) return Damage(name, off, "file ends inside a record");
      end_torn("the file ends inside a record");
      break;
    }
    walpb::EtcdRecord pb;
    std::string problem;
    if (!pb.ParseFromArray(data.data() + body, static_cast<int>(rec_bytes))) {
      problem = "undecodable record";
    } else if (pb.type() == kEtcdCrcType) {
      if (!out.records.empty()) return Damage(name, off, "CRC record past the segment head");
      if (prev_crc.has_value() && pb.crc() != *prev_crc) {
        return Damage(name, off,
                      absl::StrCat("wal: crc mismatch (the segment head carries ", pb.crc(),
                                   ", the previous segment ended at ", *prev_crc, ")"));
      }
    } else if (util::Crc32cExtend(crc, pb.data().data(), pb.data().size()) != pb.crc()) {
      problem = "wal: crc mismatch";
    }
    if (!problem.empty()) {
      if (is_last && HasZeroSector(data, body, frame_end)) {
        end_torn(absl::StrCat(problem, " in a record with a zero sector (torn write)"));
        break;
      }
      return Damage(name, off, problem);
    }
    if (out.records.empty() && pb.type() != kEtcdCrcType) {
      return Damage(name, off, "segment does not start with a CRC record");
    }
    crc = pb.type() == kEtcdCrcType ? pb.crc() : util::Crc32cExtend(crc, pb.data().data(), pb.data().size());
    EtcdRecord r;
    r.type = pb.type();
    r.crc = pb.crc();
    r.data = std::move(*pb.mutable_data());
    r.offset = off;
    out.records.push_back(std::move(r));
    off = frame_end;
    out.valid_end = off;
    out.crc = crc;
  }
  return out;
}

absl::StatusOr<EtcdWalContents> ReadEtcdWal(util::Env* env, const std::string& dir, WalSnapshot start) {
  auto names = ListSegments(env, dir);
  if (!names.ok()) return names.status();
  if (names->empty()) return absl::NotFoundError(absl::StrCat("wal: no etcd WAL segment in ", dir));
  const int first = SearchSegment(*names, start.index);
  if (first < 0) {
    return absl::NotFoundError(absl::StrCat("wal: file not found: no segment of ", dir, " holds index ",
                                            start.index, " (the first is ", names->front(), ")"));
  }
  EtcdWalContents out;
  bool have_metadata = false;
  bool matched = false;
  auto on_record = [&](const EtcdRecord& r, const std::string& segment) -> absl::Status {
    switch (r.type) {
      case kEtcdEntryType: {
        raftpb::Entry e;
        if (absl::Status s = Parse(r, segment, "entry", &e); !s.ok()) return s;
        if (e.index() <= start.index) return absl::OkStatus();
        // etcd's rule: an entry at a known index replaces it and all after
        // it (a new leader overwrote an uncommitted tail).
        const uint64_t keep = e.index() - start.index - 1;
        if (keep > out.entries.size()) {
          return absl::FailedPreconditionError(
              absl::StrCat("wal: slice bounds out of range: entry ", e.index(), " in ", segment, " at offset ",
                           r.offset, " follows entry ", start.index + out.entries.size()));
        }
        out.entries.resize(keep);
        out.entries.push_back(std::move(e));
        return absl::OkStatus();
      }
      case kEtcdStateType:
        return Parse(r, segment, "hard state", &out.hard_state);
      case kEtcdMetadataType:
        if (have_metadata && r.data != out.metadata) {
          return absl::FailedPreconditionError(
              absl::StrCat("wal: conflicting metadata found in ", segment, " at offset ", r.offset));
        }
        out.metadata = r.data;
        have_metadata = true;
        return absl::OkStatus();
      case kEtcdCrcType:
        return absl::OkStatus();  // checked by the scan
      case kEtcdSnapshotType: {
        walpb::Snapshot m;
        if (absl::Status s = Parse(r, segment, "snapshot", &m); !s.ok()) return s;
        out.snapshots.push_back(WalSnapshot{m.index(), m.term()});
        if (m.index() == start.index) {
          if (m.term() != start.term) {
            return absl::FailedPreconditionError(
                absl::StrCat("wal: snapshot mismatch: the marker at index ", m.index(), " in ", segment,
                             " has term ", m.term(), ", expected ", start.term));
          }
          matched = true;
        }
        return absl::OkStatus();
      }
      default:
        return Damage(segment, r.offset, absl::StrCat("unexpected block type ", r.type));
    }
  };
  if (absl::Status s = Walk(env, dir, *names, static_cast<size_t>(first), on_record, &out.torn, &out.torn_reason);
      !s.ok()) {
    return s;
  }
  if (!have_metadata) return absl::FailedPreconditionError(absl::StrCat("wal: no metadata record in ", dir));
  walpb::EtcdMetadata md;
  if (!md.ParseFromString(out.metadata)) {
    return absl::DataLossError(absl::StrCat("wal: undecodable metadata record in ", dir));
  }
  out.member_id = md.node_id();
  out.cluster_id = md.cluster_id();
  if (!matched) {
    return absl::FailedPreconditionError(absl::StrCat("wal: snapshot not found: no marker (index ", start.index,
                                                      ", term ", start.term, ") in ", dir));
  }
  out.segments.assign(names->begin() + first, names->end());
  return out;
}

absl::StatusOr<std::vector<WalSnapshot>> EtcdWalValidSnapshots(util::Env* env, const std::string& dir) {
  auto names = ListSegments(env, dir);
  if (!names.ok()) return names.status();
  if (names->empty()) return absl::NotFoundError(absl::StrCat("wal: no etcd WAL segment in ", dir));
  std::vector<WalSnapshot> snaps;
  raftpb::HardState state;
  auto on_record = [&](const EtcdRecord& r, const std::string& segment) -> absl::Status {
    switch (r.type) {
      case kEtcdSnapshotType: {
        walpb::Snapshot m;
        if (absl::Status s = Parse(r, segment, "snapshot", &m); !s.ok()) return s;
        snaps.push_back(WalSnapshot{m.index(), m.term()});
        return absl::OkStatus();
      }
      case kEtcdStateType:
        return Parse(r, segment, "hard state", &state);
      case kEtcdEntryType:
      case kEtcdMetadataType:
      case kEtcdCrcType:
        return absl::OkStatus();
      default:
        return Damage(segment, r.offset, absl::StrCat("unexpected block type ", r.type));
    }
  };
  bool torn = false;
  std::string torn_reason;
  if (absl::Status s = Walk(env, dir, *names, 0, on_record, &torn, &torn_reason); !s.ok()) return s;
  // A marker past the commit names a snapshot raft may not have committed.
  std::erase_if(snaps, [&](const WalSnapshot& s) { return s.index > state.commit(); });
  return snaps;
}

absl::StatusOr<WalFormat> DetectWalFormat(util::Env* env, const std::string& dir) {
  if (!env->IsDirectory(dir)) return WalFormat::kNone;
  auto children = env->GetChildren(dir);
  if (!children.ok()) return children.status();
  std::string first;
  for (const std::string& c : *children) {  // sorted; names are fixed width
    uint64_t seq, index;
    if (ParseSegmentName(c, &seq, &index)) {
      first = c;
      break;
    }
  }
  if (first.empty()) return WalFormat::kNone;
  const std::string path = util::JoinPath(dir, first);
  auto file = env->NewSequentialFile(path);
  if (!file.ok()) return file.status();
  std::string head;
  if (absl::Status s = (*file)->Read(64, &head); !s.ok()) return s;
  // etcd: a length word below 2^32 (bytes 4..6 zero), then a CRC record.
  if (head.size() >= kFrameWordBytes) {
    const uint64_t word = LoadLe64(head.data());
    const uint64_t rec_bytes = word & kSizeMask;
    const uint8_t top = static_cast<uint8_t>(word >> 56);
    const bool top_ok = top == 0 || ((top & 0xF8) == 0x80 && (top & 0x07) != 0);
    if (top_ok && rec_bytes > 0 && kFrameWordBytes + rec_bytes <= head.size()) {
      walpb::EtcdRecord pb;
      if (pb.ParseFromArray(head.data() + kFrameWordBytes, static_cast<int>(rec_bytes)) &&
          pb.type() == kEtcdCrcType) {
        return WalFormat::kEtcd;
      }
    }
  }
  // cppetcd: {length u32, type u8 = CRC, pad u8, reserved u16 = 0, crc u32,
  // header_crc u32 = Crc32c(bytes 0..12)}.
  if (head.size() >= 16 && static_cast<uint8_t>(head[4]) == walpb::CRC && head[6] == 0 && head[7] == 0) {
    uint32_t header_crc = 0;
    for (int i = 3; i >= 0; --i) header_crc = (header_crc << 8) | static_cast<uint8_t>(head[12 + i]);
    if (util::Crc32c(head.data(), 12) == header_crc) return WalFormat::kCppetcd;
  }
  return absl::DataLossError(
      absl::StrCat("wal: ", path, " starts with neither an etcd nor a cppetcd WAL segment head"));
}

}  // namespace cppetcd::wal
