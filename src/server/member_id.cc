// etcd-compatible member and cluster IDs (see etcd_server.h).
#include <openssl/sha.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cppetcd/server/etcd_server.h"

namespace cppetcd::server {
namespace {

uint64_t FirstEightBytesBigEndian(const unsigned char* digest) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | digest[i];
  return v;
}

}  // namespace

uint64_t ComputeMemberId(std::vector<std::string> peer_urls, std::string_view token,
                         std::optional<int64_t> unix_seconds) {
  std::sort(peer_urls.begin(), peer_urls.end());
  std::string b;
  for (const auto& u : peer_urls) b += u;
  b.append(token);
  if (unix_seconds.has_value()) b += std::to_string(*unix_seconds);
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(b.data()), b.size(), digest);
  return FirstEightBytesBigEndian(digest);
}

uint64_t ComputeClusterId(std::vector<uint64_t> member_ids) {
  std::sort(member_ids.begin(), member_ids.end());
  std::string b;
  for (uint64_t id : member_ids) {
    for (int shift = 56; shift >= 0; shift -= 8) b.push_back(static_cast<char>((id >> shift) & 0xff));
  }
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(b.data()), b.size(), digest);
  return FirstEightBytesBigEndian(digest);
}

}  // namespace cppetcd::server
