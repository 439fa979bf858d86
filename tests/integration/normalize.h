// Response normalisation for tests that compare two servers (etcd 3.4 and
// the server under test) answer by answer: differential_test and
// diff_fuzz_test.
//
// NormalizeResponse clears, in place and recursively, what two members of
// equal state may legitimately answer differently:
//  - ResponseHeader: cluster_id, member_id, raft_term (revision is kept);
//  - orders a server takes from a hash map: LeaseTimeToLiveResponse keys
//    (sorted), LeaseLeasesResponse leases (sorted by id);
//  - StatusResponse: keeps header revision, version, errors and learner
//    flag; leader becomes 1 if the member is the leader, else 0; database
//    sizes, raft index/term and applied index are cleared (each
//    implementation's bookkeeping differs);
//  - AlarmResponse: each alarm's member id.
// Everything else is compared as sent.
//
// Thread-safety: pure function of its argument.
#ifndef CPPETCD_TESTS_INTEGRATION_NORMALIZE_H_
#define CPPETCD_TESTS_INTEGRATION_NORMALIZE_H_

#include "google/protobuf/message.h"

namespace cppetcd::integration {

void NormalizeResponse(google::protobuf::Message* m);

}  // namespace cppetcd::integration

#endif  // CPPETCD_TESTS_INTEGRATION_NORMALIZE_H_
