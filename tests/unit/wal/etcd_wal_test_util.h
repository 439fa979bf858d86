// A test-only writer of etcd-format WAL segments (the framing facts of
// docs/formats-wal.md, "etcd's formats"), for building good and damaged
// segments by hand. Not a WAL: no files, no sync.
#ifndef CPPETCD_TESTS_UNIT_WAL_ETCD_WAL_TEST_UTIL_H_
#define CPPETCD_TESTS_UNIT_WAL_ETCD_WAL_TEST_UTIL_H_

#include <cstdint>
#include <string>

#include "cppetcd/util/crc32c.h"
#include "cppetcd/wal/etcd_wal.h"
#include "raftpb/raft.pb.h"
#include "walpb/etcd.pb.h"
#include "walpb/record.pb.h"

namespace cppetcd::wal::testing {

// Builds one segment's bytes. `crc` is the running CRC, carried from one
// segment to the next with NextSegment.
class EtcdSegmentBuilder {
 public:
  // A segment whose head CRC record carries `prev_crc` (0 for the first).
  explicit EtcdSegmentBuilder(uint32_t prev_crc = 0) : crc_(prev_crc) { Frame(kEtcdCrcType, "", prev_crc); }

  EtcdSegmentBuilder& Metadata(uint64_t member_id, uint64_t cluster_id) {
    walpb::EtcdMetadata md;
    md.set_node_id(member_id);
    md.set_cluster_id(cluster_id);
    return Data(kEtcdMetadataType, md.SerializeAsString());
  }
  EtcdSegmentBuilder& Entry(uint64_t index, uint64_t term, std::string data = "x") {
    raftpb::Entry e;
    e.set_index(index);
    e.set_term(term);
    e.set_data(std::move(data));
    return Data(kEtcdEntryType, e.SerializeAsString());
  }
  EtcdSegmentBuilder& State(uint64_t term, uint64_t vote, uint64_t commit) {
    raftpb::HardState hs;
    hs.set_term(term);
    hs.set_vote(vote);
    hs.set_commit(commit);
    return Data(kEtcdStateType, hs.SerializeAsString());
  }
  EtcdSegmentBuilder& Snapshot(uint64_t index, uint64_t term) {
    walpb::Snapshot s;
    s.set_index(index);
    s.set_term(term);
    return Data(kEtcdSnapshotType, s.SerializeAsString());
  }
  // A record of any type whose data extends the CRC chain.
  EtcdSegmentBuilder& Data(int64_t type, const std::string& data) {
    crc_ = util::Crc32cExtend(crc_, data.data(), data.size());
    Frame(type, data, crc_);
    return *this;
  }
  // Zeros after the records, as etcd's preallocation leaves them.
  EtcdSegmentBuilder& Preallocate(size_t size_bytes) {
    if (bytes_.size() < size_bytes) bytes_.resize(size_bytes, '\0');
    return *this;
  }

  const std::string& bytes() const { return bytes_; }
  uint32_t crc() const { return crc_; }
  // Offset where the next frame would start (the end of the last record).
  size_t size() const { return bytes_.size(); }

 private:
  void Frame(int64_t type, const std::string& data, uint32_t crc) {
    walpb::EtcdRecord r;
    r.set_type(type);
    r.set_crc(crc);
    r.set_data(data);
    std::string body = r.SerializeAsString();
    const size_t pad = (8 - body.size() % 8) % 8;
    uint64_t word = body.size();
    if (pad != 0) word |= (uint64_t{0x80} | pad) << 56;
    for (int i = 0; i < 8; ++i) bytes_.push_back(static_cast<char>(word >> (8 * i)));
    bytes_ += body;
    bytes_.append(pad, '\0');
  }

  uint32_t crc_;
  std::string bytes_;
};

}  // namespace cppetcd::wal::testing

#endif  // CPPETCD_TESTS_UNIT_WAL_ETCD_WAL_TEST_UTIL_H_
