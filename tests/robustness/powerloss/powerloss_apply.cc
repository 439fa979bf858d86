// cppetcd-powerloss-apply <log> [--seed S] [--mode all|random] [--pid P]
//
// The crash tool of the power-loss fault: run after the process that wrote
// the undo log (LD_PRELOAD libcppetcd_powerloss.so) was SIGKILLed, it turns
// the files into what a disk could hold after a power loss at that moment.
//
//   all     every change not made durable is undone, newest first: each file
//           is as of its last fsync/fdatasync (O_DSYNC writes are kept).
//   random  (seeded) each 4096-byte page of a file that has unsynced changes
//           is independently left at one of its versions since the file's
//           last sync (the durable one, any intermediate one, or the newest:
//           the disk wrote some dirty pages back and not others, in any
//           order), and the file size is one of its sizes since that sync.
//
// In both modes a file created since the last fsync of its directory is
// removed (`all`) or removed with probability 1/2 (`random`). Renames and
// unlinks are taken as durable at once. --pid: only the records of that
// process (several processes sharing one log: a power loss of one of them). Prints one summary line. Exit 0 on
// success, 1 on a bad log, 2 on usage errors. Torn records (a SIGKILL during
// the record's write; undo_log.h) are skipped: the change each announces had
// not started.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cppetcd/util/crc32c.h"
#include "undo_log.h"

namespace cppetcd::powerloss {
namespace {

// One change not yet durable.
struct Op {
  uint8_t type = 0;        // kWrite or kTruncate
  bool durable = false;    // O_DSYNC write
  bool old_zero = false;   // previous bytes all zero (old empty)
  uint64_t a = 0, b = 0, c = 0;  // as in the record
  std::string old;

  uint64_t SizeAfter() const { return type == kWrite ? std::max(c, a + b) : a; }
};

struct FileState {
  std::string path;
  bool created = false;            // created under the log
  bool creation_durable = true;    // its directory was fsynced since
  bool dropped = false;            // unlinked or replaced
  uint64_t durable_size = 0;
  std::vector<Op> pending;         // since the last sync, oldest first
};

using Key = std::pair<uint64_t, uint64_t>;  // (dev, ino)

std::string Parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos || slash == 0 ? "/" : path.substr(0, slash);
}

// Whether the bytes at `p` (of `avail`) start with an intact header (the
// payload may be cut short or damaged): then the header's pid is known.
bool IntactHeaderAt(const char* p, size_t avail, RecordHeader* h) {
  if (avail < sizeof(RecordHeader)) return false;
  std::memcpy(h, p, sizeof(*h));
  if (h->magic != kRecordMagic) return false;
  RecordHeader z = *h;
  z.header_crc = 0;
  return util::Crc32c(&z, sizeof(z)) == h->header_crc;
}

// Whether the bytes at `p` (of `avail`) are one whole, intact record.
bool WholeRecordAt(const char* p, size_t avail, RecordHeader* h) {
  if (!IntactHeaderAt(p, avail, h)) return false;
  if (avail - sizeof(RecordHeader) < h->payload_bytes) return false;
  return util::Crc32c(p + sizeof(RecordHeader), h->payload_bytes) == h->payload_crc;
}

struct LogStats {
  size_t records = 0;  // of the process applied (all processes without --pid)
  size_t torn = 0;     // torn records skipped (undo_log.h)
};

// Reads the log into per-file states; false on a malformed log: an
// unknown record type, a damaged record that is not a prefix of a whole one,
// or a process that wrote records after one of its own torn records (torn
// for some reason other than its writer's death).
bool ReadLog(const std::string& log_path, uint32_t only_pid, std::map<Key, FileState>* files,
             LogStats* stats) {
  std::string data;
  {
    std::ifstream in(log_path, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "powerloss-apply: open %s: %s\n", log_path.c_str(), std::strerror(errno));
      return false;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    data = std::move(ss).str();
  }
  std::map<uint32_t, size_t> torn_at;  // pid -> offset of its torn record
  size_t pos = 0;
  while (pos < data.size()) {
    RecordHeader h;
    if (!WholeRecordAt(data.data() + pos, data.size() - pos, &h)) {
      // Resume at the next whole record (none: this was the last one).
      size_t next = pos + 1;
      while (next < data.size() && !WholeRecordAt(data.data() + next, data.size() - next, &h)) {
        const void* m = std::memchr(data.data() + next + 1, static_cast<int>(kRecordMagic & 0xFF),
                                    data.size() - next - 1);
        next = m == nullptr ? data.size() : static_cast<size_t>(static_cast<const char*>(m) - data.data());
      }
      // A torn record is a prefix of one: shorter than its header (the
      // header is cut) or than header + payload (the header is intact and
      // names its writer). Anything else is damage, not a death.
      RecordHeader th;
      const bool header = IntactHeaderAt(data.data() + pos, data.size() - pos, &th);
      const size_t length = next - pos;
      if (header ? length >= sizeof(RecordHeader) + th.payload_bytes : length >= sizeof(RecordHeader)) {
        std::fprintf(stderr, "powerloss-apply: damaged record at offset %zu (%zu bytes; not a torn one)\n",
                     pos, length);
        return false;
      }
      if (header) torn_at.emplace(th.pid, pos);
      ++stats->torn;
      pos = next;
      continue;
    }
    std::string payload(data.data() + pos + sizeof(RecordHeader), h.payload_bytes);
    if (auto t = torn_at.find(h.pid); t != torn_at.end()) {
      std::fprintf(stderr,
                   "powerloss-apply: process %u wrote a record at offset %zu after its own torn "
                   "record at offset %zu\n",
                   h.pid, pos, t->second);
      return false;
    }
    pos += sizeof(RecordHeader) + h.payload_bytes;
    if (only_pid != 0 && h.pid != only_pid) continue;
    ++stats->records;
    const Key key{h.dev, h.ino};
    switch (h.type) {
      case kFile: {
        auto it = files->find(key);
        if (it == files->end() || it->second.dropped) {
          FileState s;
          s.created = h.b == 1;
          s.creation_durable = !s.created;
          s.durable_size = s.created ? 0 : h.a;
          (*files)[key] = std::move(s);
        }
        (*files)[key].path = payload;
        break;
      }
      case kWrite:
      case kTruncate: {
        auto it = files->find(key);
        if (it == files->end() || it->second.dropped) break;  // not opened under the log
        Op op;
        op.type = h.type;
        op.durable = (h.flags & kFlagDurable) != 0;
        op.old_zero = (h.flags & kFlagOldZero) != 0;
        op.a = h.a;
        op.b = h.b;
        op.c = h.c;
        op.old = std::move(payload);
        it->second.pending.push_back(std::move(op));
        break;
      }
      case kSync: {
        auto it = files->find(key);
        if (it == files->end()) break;
        it->second.pending.clear();
        it->second.durable_size = h.a;
        break;
      }
      case kDirSync:
        for (auto& [k, s] : *files) {
          if (!s.creation_durable && Parent(s.path) == payload) s.creation_durable = true;
        }
        break;
      case kRename: {
        const size_t nul = payload.find('\0');
        if (nul == std::string::npos) break;
        const std::string from = payload.substr(0, nul), to = payload.substr(nul + 1);
        if (h.b == 1) {  // a directory: move the paths below it
          for (auto& [k, s] : *files) {
            if (s.path.size() > from.size() && s.path.compare(0, from.size(), from) == 0 &&
                s.path[from.size()] == '/') {
              s.path = to + s.path.substr(from.size());
            }
          }
          break;
        }
        for (auto& [k, s] : *files) {
          if (k != key && !s.dropped && s.path == to) s.dropped = true;
        }
        auto it = files->find(key);
        if (it != files->end()) it->second.path = to;
        break;
      }
      case kUnlink: {
        auto it = files->find(key);
        if (it != files->end()) it->second.dropped = true;
        break;
      }
      default:
        std::fprintf(stderr, "powerloss-apply: unknown record type %u\n", h.type);
        return false;
    }
  }
  return true;
}

// The bytes op held in [from, to) before it ran (zeros past its old size).
std::string OldBytes(const Op& op, uint64_t from, uint64_t to) {
  std::string out(to - from, '\0');
  const uint64_t base = op.a;  // old bytes start at a for both record types
  for (uint64_t i = from; i < to; ++i) {
    if (op.old_zero || i >= op.c) continue;
    const uint64_t j = i - base;
    if (j < op.old.size()) out[i - from] = op.old[j];
  }
  return out;
}

// The byte range of file content an op changed: [first, second).
std::pair<uint64_t, uint64_t> Touched(const Op& op) {
  if (op.type == kWrite) return {op.a, op.a + op.b};
  if (op.a < op.c) return {op.a, op.c};  // shrinking truncate
  return {0, 0};
}

struct Stats {
  size_t files = 0, ops = 0, pages_rolled_back = 0, removed = 0;
};

bool ApplyFile(FileState& s, bool random, std::mt19937_64& rng, Stats* stats) {
  ++stats->files;
  if (s.created && !s.creation_durable && (!random || (rng() & 1) == 0)) {
    if (::unlink(s.path.c_str()) != 0 && errno != ENOENT) {
      std::fprintf(stderr, "powerloss-apply: unlink %s: %s\n", s.path.c_str(), std::strerror(errno));
      return false;
    }
    ++stats->removed;
    return true;
  }
  if (s.pending.empty()) return true;
  stats->ops += s.pending.size();
  const int fd = ::open(s.path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    std::fprintf(stderr, "powerloss-apply: open %s: %s\n", s.path.c_str(), std::strerror(errno));
    return false;
  }
  // Pages -> indexes of the ops touching them, oldest first.
  std::map<uint64_t, std::vector<size_t>> pages;
  size_t last_durable = 0;  // ops before this index are kept (size choice)
  for (size_t i = 0; i < s.pending.size(); ++i) {
    const Op& op = s.pending[i];
    if (op.durable) last_durable = i + 1;
    auto [from, to] = Touched(op);
    for (uint64_t p = from / kPageBytes; from < to && p * kPageBytes < to; ++p) pages[p].push_back(i);
  }
  bool ok = true;
  for (auto& [page, idx] : pages) {
    // Keep at least every op up to the page's last durable one.
    size_t lowest = 0;
    for (size_t k = 0; k < idx.size(); ++k) {
      if (s.pending[idx[k]].durable) lowest = k + 1;
    }
    const size_t cut = random ? lowest + rng() % (idx.size() - lowest + 1) : lowest;
    if (cut < idx.size()) ++stats->pages_rolled_back;
    const uint64_t pstart = page * kPageBytes, pend = pstart + kPageBytes;
    for (size_t k = idx.size(); k > cut; --k) {
      const Op& op = s.pending[idx[k - 1]];
      auto [from, to] = Touched(op);
      from = std::max(from, pstart);
      to = std::min(to, pend);
      if (from >= to) continue;
      const std::string bytes = OldBytes(op, from, to);
      if (::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(from)) !=
          static_cast<ssize_t>(bytes.size())) {
        std::fprintf(stderr, "powerloss-apply: pwrite %s: %s\n", s.path.c_str(), std::strerror(errno));
        ok = false;
      }
    }
  }
  // The size: one of the versions since the last sync (or durable write).
  std::vector<uint64_t> sizes;
  sizes.push_back(last_durable == 0 ? s.durable_size : s.pending[last_durable - 1].SizeAfter());
  for (size_t i = last_durable; i < s.pending.size(); ++i) sizes.push_back(s.pending[i].SizeAfter());
  const uint64_t size = random ? sizes[rng() % sizes.size()] : sizes[0];
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    std::fprintf(stderr, "powerloss-apply: ftruncate %s: %s\n", s.path.c_str(), std::strerror(errno));
    ok = false;
  }
  if (::fsync(fd) != 0) ok = false;
  ::close(fd);
  return ok;
}

int Main(int argc, char** argv) {
  std::string log_path, mode = "all";
  uint64_t seed = 1;
  uint32_t only_pid = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seed" && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--pid" && i + 1 < argc) {
      only_pid = static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 10));
    } else if (a == "--mode" && i + 1 < argc) {
      mode = argv[++i];
    } else if (log_path.empty() && a.rfind("--", 0) != 0) {
      log_path = a;
    } else {
      log_path.clear();
      break;
    }
  }
  if (log_path.empty() || (mode != "all" && mode != "random")) {
    std::fprintf(stderr, "usage: cppetcd-powerloss-apply <log> [--seed S] [--mode all|random] [--pid P]\n");
    return 2;
  }
  std::map<Key, FileState> files;
  LogStats log_stats;
  if (!ReadLog(log_path, only_pid, &files, &log_stats)) return 1;
  std::mt19937_64 rng(seed);
  Stats stats;
  bool ok = true;
  for (auto& [key, s] : files) {
    if (s.dropped) continue;
    ok = ApplyFile(s, mode == "random", rng, &stats) && ok;
  }
  std::printf(
      "powerloss-apply: mode=%s seed=%llu records=%zu torn_records=%zu files=%zu "
      "unsynced_ops=%zu pages_rolled_back=%zu files_removed=%zu\n",
      mode.c_str(), static_cast<unsigned long long>(seed), log_stats.records, log_stats.torn,
      stats.files, stats.ops,
      stats.pages_rolled_back, stats.removed);
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace cppetcd::powerloss

int main(int argc, char** argv) { return cppetcd::powerloss::Main(argc, argv); }
