#include "cppetcd/api/client_identity.h"

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "cppetcd/util/mutex.h"

namespace cppetcd::api {
namespace {

struct Registry {
  util::Mutex mu;
  absl::flat_hash_map<std::string, std::string> names ABSL_GUARDED_BY(mu);
};

Registry& GetRegistry() {
  static Registry* r = new Registry;
  return *r;
}

}  // namespace

void SetClientCommonName(std::string grpc_peer, std::string common_name) {
  Registry& r = GetRegistry();
  util::MutexLock lock(&r.mu);
  r.names[std::move(grpc_peer)] = std::move(common_name);
}

void ClearClientCommonName(std::string_view grpc_peer) {
  Registry& r = GetRegistry();
  util::MutexLock lock(&r.mu);
  r.names.erase(std::string(grpc_peer));
}

std::optional<std::string> ClientCommonName(std::string_view grpc_peer) {
  Registry& r = GetRegistry();
  util::MutexLock lock(&r.mu);
  auto it = r.names.find(std::string(grpc_peer));
  if (it == r.names.end()) return std::nullopt;
  return it->second;
}

}  // namespace cppetcd::api
