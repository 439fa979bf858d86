// The process wiring of `cppetcd`: from parsed flags to a running member
// (EtcdServer plus the client gRPC server) until SIGTERM or SIGINT.
#ifndef CPPETCD_SRC_CMD_RUN_H_
#define CPPETCD_SRC_CMD_RUN_H_

#include "absl/status/statusor.h"
#include "cppetcd/api/grpc_server.h"
#include "cppetcd/cmd/flags.h"
#include "cppetcd/server/etcd_server.h"

namespace cppetcd::cmd {

// The member configuration for `config` (finalized by the flags layer).
// InvalidArgument for a bad --initial-cluster.
absl::StatusOr<server::ServerConfig> ToServerConfig(const EtcdConfig& config);

// The client gRPC server options for `config`: no listen address (the
// ClientListener hands connections over), or with --listen-client-http-urls
// one per --listen-client-urls entry, which gRPC then serves itself (Run
// adds the TLS credentials of the https/unixs ones).
absl::StatusOr<api::ApiServerOptions> ToApiServerOptions(const EtcdConfig& config);

// Starts the member and serves clients until SIGTERM or SIGINT, then stops
// gracefully. With --discovery-srv, a member without a WAL first takes its
// initial cluster from DNS SRV records (cmd/dns_discovery.h). Logging must be initialised. Returns the exit code: 0 after a
// signal, 1 when start-up fails (the reason is logged).
int Run(const EtcdConfig& config);

}  // namespace cppetcd::cmd

#endif  // CPPETCD_SRC_CMD_RUN_H_
