#include "normalize.h"

#include <algorithm>

#include "etcdserverpb/rpc.pb.h"

namespace cppetcd::integration {

void NormalizeResponse(google::protobuf::Message* m) {
  namespace pb = etcdserverpb;
  const auto* desc = m->GetDescriptor();
  const auto* refl = m->GetReflection();
  const std::string& name = desc->full_name();
  if (name == "etcdserverpb.ResponseHeader") {
    auto* h = static_cast<pb::ResponseHeader*>(m);
    h->clear_cluster_id();
    h->clear_member_id();
    h->clear_raft_term();
    return;
  }
  if (name == "etcdserverpb.LeaseTimeToLiveResponse") {
    auto* r = static_cast<pb::LeaseTimeToLiveResponse*>(m);
    std::sort(r->mutable_keys()->begin(), r->mutable_keys()->end());
  } else if (name == "etcdserverpb.LeaseLeasesResponse") {
    auto* r = static_cast<pb::LeaseLeasesResponse*>(m);
    std::sort(r->mutable_leases()->begin(), r->mutable_leases()->end(),
              [](const auto& x, const auto& y) { return x.id() < y.id(); });
  } else if (name == "etcdserverpb.StatusResponse") {
    auto* r = static_cast<pb::StatusResponse*>(m);
    r->set_leader(r->leader() != 0 && r->leader() == r->header().member_id() ? 1 : 0);
    r->clear_dbsize();
    r->clear_dbsizeinuse();
    r->clear_raftindex();
    r->clear_raftterm();
    r->clear_raftappliedindex();
  } else if (name == "etcdserverpb.AlarmResponse") {
    for (auto& a : *static_cast<pb::AlarmResponse*>(m)->mutable_alarms()) a.clear_memberid();
  }
  for (int i = 0; i < desc->field_count(); ++i) {
    const auto* f = desc->field(i);
    if (f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->is_repeated()) {
      for (int j = 0; j < refl->FieldSize(*m, f); ++j) {
        NormalizeResponse(refl->MutableRepeatedMessage(m, f, j));
      }
    } else if (refl->HasField(*m, f)) {
      NormalizeResponse(refl->MutableMessage(m, f));
    }
  }
}

}  // namespace cppetcd::integration
