// The seam between the server's raft loop and the peer network. The
// transport module (a later issue) implements it over gRPC streams; a
// single-member cluster uses NoopTransport.
#ifndef CPPETCD_SERVER_TRANSPORT_H_
#define CPPETCD_SERVER_TRANSPORT_H_

#include <vector>

#include "raftpb/raft.pb.h"

namespace cppetcd::server {

class Transport {
 public:
  virtual ~Transport() = default;
  // Sends raft messages to their `to` members, best effort and without
  // blocking (a lost message is recovered by raft). Called on the raft loop
  // after the Ready's state is durable (persist-before-send).
  virtual void Send(std::vector<raftpb::Message> messages) = 0;
};

// Drops every message: the only member has no one to talk to.
class NoopTransport final : public Transport {
 public:
  void Send(std::vector<raftpb::Message>) override {}
};

}  // namespace cppetcd::server

#endif  // CPPETCD_SERVER_TRANSPORT_H_
