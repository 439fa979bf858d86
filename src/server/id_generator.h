// Request IDs unique per member across restarts (etcd pkg/idutil): the low
// 16 bits of the member ID, then 40 bits of the start time in milliseconds,
// then an 8-bit counter that may carry into the timestamp. IDs from one
// generator never repeat; a restart more than 1 ms later starts past them.
#ifndef CPPETCD_SRC_SERVER_ID_GENERATOR_H_
#define CPPETCD_SRC_SERVER_ID_GENERATOR_H_

#include <atomic>
#include <cstdint>

namespace cppetcd::server {

class IdGenerator {
 public:
  IdGenerator(uint64_t member_id, int64_t now_unix_ms)
      : prefix_((member_id & 0xffff) << kSuffixBits),
        suffix_((static_cast<uint64_t>(now_unix_ms) & ((uint64_t{1} << kTimestampBits) - 1))
                << kCounterBits) {}

  // Thread-safe.
  uint64_t Next() {
    uint64_t s = suffix_.fetch_add(1, std::memory_order_relaxed) + 1;
    return prefix_ | (s & ((uint64_t{1} << kSuffixBits) - 1));
  }

 private:
  static constexpr int kTimestampBits = 40;
  static constexpr int kCounterBits = 8;
  static constexpr int kSuffixBits = kTimestampBits + kCounterBits;
  const uint64_t prefix_;
  std::atomic<uint64_t> suffix_;
};

}  // namespace cppetcd::server

#endif  // CPPETCD_SRC_SERVER_ID_GENERATOR_H_
