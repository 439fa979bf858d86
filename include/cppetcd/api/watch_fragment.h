// Splitting of large watch responses (etcd v3 API: WatchCreateRequest.fragment).
#ifndef CPPETCD_API_WATCH_FRAGMENT_H_
#define CPPETCD_API_WATCH_FRAGMENT_H_

#include <cstddef>
#include <vector>

#include "etcdserverpb/rpc.pb.h"

namespace cppetcd::api {

// Splits `response` into consecutive responses whose serialized size stays
// below `max_bytes` where possible (a single event larger than that travels
// alone). Every piece keeps header, watch_id and the other fields; all but
// the last carry fragment=true. A response already below `max_bytes`, or
// with fewer than two events, comes back whole (etcd 3.4 sendFragments).
std::vector<etcdserverpb::WatchResponse> FragmentWatchResponse(
    const etcdserverpb::WatchResponse& response, size_t max_bytes);

}  // namespace cppetcd::api

#endif  // CPPETCD_API_WATCH_FRAGMENT_H_
