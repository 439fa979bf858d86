// The ServerBackend of a real member: forwards to server::EtcdServer and its
// mvcc::WatchableStore.
#ifndef CPPETCD_API_ETCD_SERVER_BACKEND_H_
#define CPPETCD_API_ETCD_SERVER_BACKEND_H_

#include <memory>

#include "cppetcd/api/backend.h"

namespace cppetcd::server {
class EtcdServer;
}

namespace cppetcd::api {

// `server` must be started and outlive the backend (and the ApiServer over it).
std::unique_ptr<ServerBackend> NewEtcdServerBackend(server::EtcdServer* server);

}  // namespace cppetcd::api

#endif  // CPPETCD_API_ETCD_SERVER_BACKEND_H_
